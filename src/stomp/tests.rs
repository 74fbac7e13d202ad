//! Codec tests (spec examples, split-at-every-byte, round trips).
//!
//! The spec examples are the frames printed in the STOMP 1.2 specification
//! (<https://stomp.github.io/stomp-specification-1.2.html>), with `^@` written as `\0`.

use proptest::collection::vec;
use proptest::prelude::*;

use super::escape::{escape_into, unescape};
use super::heartbeat;
use super::*;

const V10: Version = Version::V1_0;
const V11: Version = Version::V1_1;
const V12: Version = Version::V1_2;
const VERSIONS: [Version; 3] = [V10, V11, V12];

const COMMANDS: [Command; 15] = [
    Command::Connect,
    Command::Stomp,
    Command::Send,
    Command::Subscribe,
    Command::Unsubscribe,
    Command::Ack,
    Command::Nack,
    Command::Begin,
    Command::Commit,
    Command::Abort,
    Command::Disconnect,
    Command::Connected,
    Command::Message,
    Command::Receipt,
    Command::Error,
];

/// A parsed frame copied out of the input: headers raw, as on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Owned {
    command: Command,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body: Vec<u8>,
    escaped: bool,
}

impl Owned {
    fn of(f: &FrameRef<'_>) -> Owned {
        Owned {
            command: f.command,
            headers: f
                .headers
                .iter()
                .map(|h| (h.name.to_vec(), h.value.to_vec()))
                .collect(),
            body: f.body.to_vec(),
            escaped: f.escaped,
        }
    }

    /// Header names and values with escapes decoded (if the frame escapes).
    fn decoded(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let dec = |b: &[u8]| match (self.escaped, unescape(b)) {
            (false, _) => b.to_vec(),
            (true, Ok(d)) => d.into_owned(),
            (true, Err(_)) => panic!("parsed header with a bad escape: {b:?}"),
        };
        self.headers.iter().map(|(n, v)| (dec(n), dec(v))).collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Out {
    Frame(Owned, usize),
    Heartbeat(usize),
    Partial,
}

fn parse_with(buf: &[u8], version: Version, limits: &Limits) -> Result<Out, ParseError> {
    let mut slots = [Header::default(); 64];
    Ok(match parse(buf, &mut slots, version, limits)? {
        Parsed::Frame(f, used) => Out::Frame(Owned::of(&f), used),
        Parsed::Heartbeat(n) => Out::Heartbeat(n),
        Parsed::Partial => Out::Partial,
    })
}

fn parse_out(buf: &[u8], version: Version) -> Result<Out, ParseError> {
    parse_with(buf, version, &Limits::default())
}

/// Parse exactly one whole frame that uses all of `buf` and hand it to `check`.
fn with_frame<R>(buf: &[u8], version: Version, check: impl FnOnce(&FrameRef<'_>) -> R) -> R {
    let mut slots = [Header::default(); 64];
    match parse(buf, &mut slots, version, &Limits::default()) {
        Ok(Parsed::Frame(f, used)) => {
            assert_eq!(used, buf.len(), "frame did not use the whole input");
            check(&f)
        }
        other => panic!("expected a frame from {buf:?}, got {other:?}"),
    }
}

fn err(buf: &[u8], version: Version, limits: &Limits) -> ParseError {
    match parse_with(buf, version, limits) {
        Err(e) => e,
        Ok(o) => panic!("expected an error from {buf:?}, got {o:?}"),
    }
}

/// Consume everything parseable from `buf`: (frames, heart-beat bytes, bytes consumed).
fn drive(
    buf: &[u8],
    version: Version,
    limits: &Limits,
) -> Result<(Vec<Owned>, usize, usize), ParseError> {
    let (mut frames, mut beats, mut pos) = (Vec::new(), 0, 0);
    loop {
        let rest = buf.get(pos..).unwrap_or_default();
        match parse_with(rest, version, limits)? {
            Out::Frame(f, used) => {
                assert!(
                    used > 0 && used <= rest.len(),
                    "used {used} of {}",
                    rest.len()
                );
                frames.push(f);
                pos += used;
            }
            Out::Heartbeat(n) => {
                assert!(n > 0 && n <= rest.len(), "heart-beat {n} of {}", rest.len());
                beats += n;
                pos += n;
            }
            Out::Partial => return Ok((frames, beats, pos)),
        }
    }
}

/// Split checks for input = `lead` EOL bytes followed by exactly one frame:
/// - every strict prefix parses as `Partial`, or as `Heartbeat` of the leading EOLs only;
/// - the input fed as two reads split at every byte gives the same frame as the whole input.
fn check_splits(input: &[u8], lead: usize, version: Version, limits: &Limits) -> Owned {
    let whole = match drive(input, version, limits) {
        Ok((frames, beats, used)) => {
            assert_eq!((frames.len(), beats, used), (1, lead, input.len()));
            frames.into_iter().next()
        }
        Err(e) => panic!("{e:?} from {input:?}"),
    };
    let Some(whole) = whole else {
        panic!("no frame");
    };
    for k in 0..input.len() {
        let prefix = input.get(..k).unwrap_or_default();
        match parse_with(prefix, version, limits) {
            Ok(Out::Partial) => {}
            Ok(Out::Heartbeat(n)) => {
                assert!(
                    n <= lead && n <= k,
                    "prefix {k}: heart-beat {n} beyond {lead} EOLs"
                );
                assert!(prefix.iter().take(n).all(|b| matches!(b, b'\r' | b'\n')));
            }
            other => panic!("prefix {k} of {input:?}: {other:?}"),
        }
        // As a socket would deliver it: the first k bytes, then the rest appended.
        let (f1, b1, used1) = match drive(prefix, version, limits) {
            Ok(r) => r,
            Err(e) => panic!("prefix {k}: {e:?}"),
        };
        assert!(f1.is_empty(), "prefix {k} gave a frame");
        assert!(used1 <= lead);
        let rest = input.get(used1..).unwrap_or_default();
        let (f2, b2, used2) = match drive(rest, version, limits) {
            Ok(r) => r,
            Err(e) => panic!("after split {k}: {e:?}"),
        };
        assert_eq!(b1 + b2, lead);
        assert_eq!(used1 + used2, input.len());
        assert_eq!(f2, vec![whole.clone()], "split at {k}");
    }
    whole
}

fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// ---------------------------------------------------------------------------------------------
// The specification's example frames.

/// (frame, command, headers in order, body).
type Example = (
    &'static [u8],
    Command,
    &'static [(&'static str, &'static str)],
    &'static [u8],
);

const ERROR_BODY: &[u8] = b"The message:\n-----\nMESSAGE\ndestined:/queue/a\nreceipt:message-12345\n\nHello queue a!\n-----\nDid not contain a destination header, which is REQUIRED\nfor message propagation.\n";

// The specification prints `content-length:171` for this body, which is 170 bytes as printed;
// the frame here carries the true length.
const ERROR_FRAME: &[u8] = b"ERROR\nreceipt-id:message-12345\ncontent-type:text/plain\ncontent-length:170\nmessage:malformed frame received\n\nThe message:\n-----\nMESSAGE\ndestined:/queue/a\nreceipt:message-12345\n\nHello queue a!\n-----\nDid not contain a destination header, which is REQUIRED\nfor message propagation.\n\0";

const EXAMPLES: &[Example] = &[
    (
        b"CONNECT\naccept-version:1.2\nhost:stomp.github.org\n\n\0",
        Command::Connect,
        &[("accept-version", "1.2"), ("host", "stomp.github.org")],
        b"",
    ),
    (
        b"STOMP\naccept-version:1.2\nhost:stomp.github.org\n\n\0",
        Command::Stomp,
        &[("accept-version", "1.2"), ("host", "stomp.github.org")],
        b"",
    ),
    (
        b"CONNECT\naccept-version:1.0,1.1,2.0\nhost:stomp.github.org\n\n\0",
        Command::Connect,
        &[("accept-version", "1.0,1.1,2.0"), ("host", "stomp.github.org")],
        b"",
    ),
    (
        b"CONNECTED\nversion:1.2\n\n\0",
        Command::Connected,
        &[("version", "1.2")],
        b"",
    ),
    (
        b"CONNECTED\nversion:1.1\n\n\0",
        Command::Connected,
        &[("version", "1.1")],
        b"",
    ),
    (
        b"ERROR\nversion:1.2,2.1\ncontent-type:text/plain\n\nSupported protocol versions are 1.2 2.1\0",
        Command::Error,
        &[("version", "1.2,2.1"), ("content-type", "text/plain")],
        b"Supported protocol versions are 1.2 2.1",
    ),
    (
        b"CONNECT\naccept-version:1.2\nhost:stomp.github.org\nheart-beat:4000,1000\n\n\0",
        Command::Connect,
        &[
            ("accept-version", "1.2"),
            ("host", "stomp.github.org"),
            ("heart-beat", "4000,1000"),
        ],
        b"",
    ),
    (
        b"CONNECTED\nversion:1.2\nheart-beat:10000,10000\n\n\0",
        Command::Connected,
        &[("version", "1.2"), ("heart-beat", "10000,10000")],
        b"",
    ),
    (
        b"SEND\ndestination:/queue/a\ncontent-type:text/plain\n\nhello queue a\n\0",
        Command::Send,
        &[("destination", "/queue/a"), ("content-type", "text/plain")],
        b"hello queue a\n",
    ),
    (
        b"SEND\ndestination:/queue/a\nreceipt:message-12345\n\nhello queue a\0",
        Command::Send,
        &[("destination", "/queue/a"), ("receipt", "message-12345")],
        b"hello queue a",
    ),
    (
        b"SEND\ndestination:/queue/a\ntransaction:tx1\ncontent-type:text/plain\n\nhello queue a\0",
        Command::Send,
        &[
            ("destination", "/queue/a"),
            ("transaction", "tx1"),
            ("content-type", "text/plain"),
        ],
        b"hello queue a",
    ),
    (
        b"SUBSCRIBE\nid:0\ndestination:/queue/foo\nack:client\n\n\0",
        Command::Subscribe,
        &[("id", "0"), ("destination", "/queue/foo"), ("ack", "client")],
        b"",
    ),
    (
        b"UNSUBSCRIBE\nid:0\n\n\0",
        Command::Unsubscribe,
        &[("id", "0")],
        b"",
    ),
    (
        b"ACK\nid:12345\ntransaction:tx1\n\n\0",
        Command::Ack,
        &[("id", "12345"), ("transaction", "tx1")],
        b"",
    ),
    (
        b"NACK\nid:12345\ntransaction:tx1\n\n\0",
        Command::Nack,
        &[("id", "12345"), ("transaction", "tx1")],
        b"",
    ),
    (
        b"BEGIN\ntransaction:tx1\n\n\0",
        Command::Begin,
        &[("transaction", "tx1")],
        b"",
    ),
    (
        b"COMMIT\ntransaction:tx1\n\n\0",
        Command::Commit,
        &[("transaction", "tx1")],
        b"",
    ),
    (
        b"ABORT\ntransaction:tx1\n\n\0",
        Command::Abort,
        &[("transaction", "tx1")],
        b"",
    ),
    (
        b"DISCONNECT\nreceipt:77\n\n\0",
        Command::Disconnect,
        &[("receipt", "77")],
        b"",
    ),
    (
        b"RECEIPT\nreceipt-id:77\n\n\0",
        Command::Receipt,
        &[("receipt-id", "77")],
        b"",
    ),
    (
        b"RECEIPT\nreceipt-id:message-12345\n\n\0",
        Command::Receipt,
        &[("receipt-id", "message-12345")],
        b"",
    ),
    (
        b"MESSAGE\nsubscription:0\nmessage-id:007\ndestination:/queue/a\ncontent-type:text/plain\n\nhello queue a\0",
        Command::Message,
        &[
            ("subscription", "0"),
            ("message-id", "007"),
            ("destination", "/queue/a"),
            ("content-type", "text/plain"),
        ],
        b"hello queue a",
    ),
    (
        b"ERROR\nreceipt-id:message-12345\ncontent-type:text/plain\ncontent-length:170\nmessage:malformed frame received\n\nThe message:\n-----\nMESSAGE\ndestined:/queue/a\nreceipt:message-12345\n\nHello queue a!\n-----\nDid not contain a destination header, which is REQUIRED\nfor message propagation.\n\0",
        Command::Error,
        &[
            ("receipt-id", "message-12345"),
            ("content-type", "text/plain"),
            ("content-length", "170"),
            ("message", "malformed frame received"),
        ],
        ERROR_BODY,
    ),
];

fn check_example((wire, command, headers, body): &Example, version: Version) {
    with_frame(wire, version, |f| {
        assert_eq!(f.command, *command, "{}", s(wire));
        assert_eq!(f.body, *body, "{}", s(wire));
        let got: Vec<(String, String)> =
            f.headers.iter().map(|h| (s(h.name), s(h.value))).collect();
        let want: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        assert_eq!(got, want, "{}", s(wire));
        for (n, v) in *headers {
            assert_eq!(f.header(n).as_deref(), Some(*v), "{n} in {}", s(wire));
        }
        assert_eq!(f.header("no-such-header"), None);
    });
}

#[test]
fn spec_examples_parse() {
    for ex in EXAMPLES {
        for v in VERSIONS {
            check_example(ex, v);
        }
    }
}

#[test]
fn spec_examples_with_crlf() {
    for ex in EXAMPLES {
        let (wire, ..) = ex;
        // Every EOL of the command and headers (up to the blank line) becomes CRLF.
        let Some(end) = wire.windows(2).position(|w| w == b"\n\n") else {
            panic!("no blank line in {}", s(wire));
        };
        let mut crlf = Vec::new();
        for &b in wire.get(..end + 2).unwrap_or_default() {
            if b == b'\n' {
                crlf.push(b'\r');
            }
            crlf.push(b);
        }
        crlf.extend_from_slice(wire.get(end + 2..).unwrap_or_default());
        let leaked: &'static [u8] = Box::leak(crlf.into_boxed_slice());
        check_example(&(leaked, ex.1, ex.2, ex.3), V12);
    }
}

#[test]
fn spec_examples_split_at_every_byte() {
    for (wire, ..) in EXAMPLES {
        for v in VERSIONS {
            check_splits(wire, 0, v, &Limits::default());
        }
        // With heart-beats before it, in both EOL styles.
        let mut input = b"\n\r\n\n".to_vec();
        input.extend_from_slice(wire);
        check_splits(&input, 4, V12, &Limits::default());
    }
}

#[test]
fn spec_examples_back_to_back() {
    let mut stream = Vec::new();
    for (wire, ..) in EXAMPLES {
        stream.extend_from_slice(wire);
        stream.extend_from_slice(b"\n");
    }
    let Ok((frames, beats, used)) = drive(&stream, V12, &Limits::default()) else {
        panic!("stream failed");
    };
    assert_eq!(
        (frames.len(), beats, used),
        (EXAMPLES.len(), EXAMPLES.len(), stream.len())
    );
    for (f, (_, command, headers, body)) in frames.iter().zip(EXAMPLES) {
        assert_eq!(f.command, *command);
        assert_eq!(f.headers.len(), headers.len());
        assert_eq!(f.body, *body);
    }
}

#[test]
fn spec_heart_beat_headers() {
    with_frame(EXAMPLES[6].0, V12, |f| {
        let Some(hb) = f.header("heart-beat") else {
            panic!("no heart-beat");
        };
        let client = heartbeat::parse_header(&hb);
        assert_eq!(client, Some((4000, 1000)));
        // The client sends every max(cx, sy); the server honours the client's ask, at least
        // every sx, never below the floor.
        let server = (10_000, 10_000);
        assert_eq!(
            heartbeat::negotiate((4000, 1000), server, 100),
            (1000, 10_000)
        );
        assert_eq!(heartbeat::negotiate((0, 0), server, 100), (0, 0));
        assert_eq!(
            heartbeat::negotiate((4000, 20_000), (1000, 0), 100),
            (1000, 0)
        );
    });
    with_frame(EXAMPLES[7].0, V12, |f| {
        assert_eq!(f.header("heart-beat").as_deref(), Some("10000,10000"));
    });
}

#[test]
fn error_example_body_is_content_length() {
    with_frame(ERROR_FRAME, V12, |f| {
        assert_eq!(f.body.len(), 170);
        assert_eq!(f.header("content-length").as_deref(), Some("170"));
        assert_eq!(
            f.header("message").as_deref(),
            Some("malformed frame received")
        );
    });
}

// ---------------------------------------------------------------------------------------------
// Headers, line endings, escaping.

#[test]
fn repeated_header_keeps_first_value() {
    // The spec's "Repeated Header Entries" example.
    let wire = b"MESSAGE\nfoo:World\nfoo:Hello\n\n\0";
    for v in VERSIONS {
        with_frame(wire, v, |f| {
            assert_eq!(f.header("foo").as_deref(), Some("World"));
            assert_eq!(f.raw("foo"), Some(&b"World"[..]));
            assert_eq!(f.headers.len(), 2);
            assert_eq!(f.headers[1].value, b"Hello");
        });
    }
    // An escaped name matches its unescaped form, and the first match still wins.
    with_frame(b"SEND\na\\cb:1\na:b:2\n\n\0", V12, |f| {
        assert_eq!(f.header("a:b").as_deref(), Some("1"));
        assert_eq!(f.header("a").as_deref(), Some("b:2"));
    });
}

#[test]
fn lf_and_crlf_line_endings() {
    let lf = b"SEND\ndestination:/q\nreceipt:r1\n\nbody\0";
    let crlf = b"SEND\r\ndestination:/q\r\nreceipt:r1\r\n\r\nbody\0";
    let mixed = b"SEND\r\ndestination:/q\nreceipt:r1\r\n\nbody\0";
    for v in VERSIONS {
        let want = parse_out(lf, v);
        for wire in [&crlf[..], &mixed[..]] {
            match (parse_out(wire, v), &want) {
                (Ok(Out::Frame(f, used)), Ok(Out::Frame(w, _))) => {
                    assert_eq!(&f, w);
                    assert_eq!(used, wire.len());
                }
                other => panic!("{other:?}"),
            }
        }
    }
    // Only the CR right before the LF belongs to the EOL; a CR inside a value stays (1.0).
    with_frame(b"SEND\na:x\ry\r\r\n\n\0", V10, |f| {
        assert_eq!(f.raw("a"), Some(&b"x\ry\r"[..]));
    });
    // A body is never touched: CRLF in it stays.
    with_frame(b"SEND\r\n\r\n\r\nx\r\n\0", V12, |f| {
        assert_eq!(f.body, b"\r\nx\r\n");
    });
}

#[test]
fn escapes_decoded_in_1_2() {
    let wire = b"SEND\ndestination:/a\\cb\\nc\\rd\\\\e\nk\\\\\\c:v\n\n\0";
    with_frame(wire, V12, |f| {
        assert!(f.escaped);
        assert_eq!(f.header("destination").as_deref(), Some("/a:b\nc\rd\\e"));
        assert_eq!(f.header("k\\:").as_deref(), Some("v"));
        // raw() is as on the wire.
        assert_eq!(f.raw("destination"), Some(&b"/a\\cb\\nc\\rd\\\\e"[..]));
    });
    // 1.1 defines \n, \c and \\ too.
    with_frame(b"MESSAGE\nx:a\\nb\\cc\\\\d\n\n\0", V11, |f| {
        assert_eq!(f.header("x").as_deref(), Some("a\nb:c\\d"));
    });
}

#[test]
fn undefined_escape_is_an_error() {
    let lim = Limits::default();
    for v in [V11, V12] {
        for wire in [
            &b"SEND\ndestination:a\\tb\n\n\0"[..],
            b"SEND\nd\\t:x\n\n\0",
            b"SEND\ndestination:trailing\\\n\n\0",
            b"MESSAGE\nx:\\\\\\q\n\n\0",
            b"SEND\nx:\\C\n\n\0",
        ] {
            assert_eq!(err(wire, v, &lim), ParseError::BadEscape, "{}", s(wire));
        }
    }
    // Detected as soon as the header line is complete, before the frame is.
    assert_eq!(
        err(b"SEND\ndestination:a\\tb\n", V12, &lim),
        ParseError::BadEscape
    );
}

/// Regression (frame forgery): a NUL inside a header value ended the frame for every reader
/// downstream, so `x:a\0MESSAGE\n...` was passed on as a second, forged frame. A NUL in a header
/// line is refused in every version, wherever it sits in the line.
#[test]
fn nul_in_a_header_is_an_error() {
    let lim = Limits::default();
    for v in [V10, V11, V12] {
        for wire in [
            &b"SEND\ndestination:/topic/x\nx:a\0MESSAGE\nsubscription:1\n\nforged\0\n\nreal\0"[..],
            b"SEND\nx\0y:v\n\n\0",
            b"SEND\ndestination:/topic/x\0\n\n\0",
            b"CONNECT\naccept-version:1.2\0\n\n\0",
        ] {
            assert_eq!(err(wire, v, &lim), ParseError::NulInHeader, "{}", s(wire));
        }
    }
    // As soon as the line is complete, before the frame is.
    assert_eq!(err(b"SEND\nx:a\0b\n", V12, &lim), ParseError::NulInHeader);
}

/// STOMP 1.2 escapes CR as `\r`; a CR inside a header line that is not its CRLF is refused.
/// 1.0 and 1.1 keep it as part of the value, and CONNECT is never escaped.
#[test]
fn bare_cr_in_a_1_2_header_is_an_error() {
    let lim = Limits::default();
    for wire in [
        &b"SEND\ndestination:/topic/x\rMESSAGE\n\n\0"[..],
        b"SEND\na\rb:v\r\n\n\0",
        b"SEND\na:x\r\r\n\n\0",
    ] {
        assert_eq!(err(wire, V12, &lim), ParseError::BareCr, "{}", s(wire));
        assert!(parse_with(wire, V11, &lim).is_ok(), "{}", s(wire));
    }
    assert!(parse_with(b"CONNECT\nhost:a\rb\n\n\0", V12, &lim).is_ok());
    // CRLF line endings stay fine.
    with_frame(b"SEND\r\na:b\r\n\r\n\0", V12, |f| {
        assert_eq!(f.raw("a"), Some(&b"b"[..]))
    });
}

#[test]
fn backslashes_are_literal_in_1_0() {
    let wire = b"SEND\ndestination:a\\tb\\cc\\nd\\\\\na\\c:1\n\n\0";
    with_frame(wire, V10, |f| {
        assert!(!f.escaped);
        assert_eq!(
            f.header("destination").as_deref(),
            Some("a\\tb\\cc\\nd\\\\")
        );
        assert_eq!(f.header("a\\c").as_deref(), Some("1"));
        assert_eq!(f.header("a:"), None);
    });
}

#[test]
fn connect_headers_are_never_unescaped() {
    for v in VERSIONS {
        with_frame(b"CONNECT\nlogin:a\\cb\npasscode:p\\t\\\\\n\n\0", v, |f| {
            assert!(!f.escaped);
            assert_eq!(f.header("login").as_deref(), Some("a\\cb"));
            assert_eq!(f.header("passcode").as_deref(), Some("p\\t\\\\"));
        });
        with_frame(b"CONNECTED\nserver:x\\ny\n\n\0", v, |f| {
            assert!(!f.escaped);
            assert_eq!(f.header("server").as_deref(), Some("x\\ny"));
        });
    }
    // STOMP is not CONNECT: it escapes in 1.1+ like any other frame.
    assert_eq!(
        err(b"STOMP\nlogin:p\\t\n\n\0", V12, &Limits::default()),
        ParseError::BadEscape
    );
}

#[test]
fn colon_splits_name_from_value() {
    with_frame(
        b"SEND\nurl:http://x:80/a\n:empty-name\nempty-value:\n\n\0",
        V12,
        |f| {
            assert_eq!(f.header("url").as_deref(), Some("http://x:80/a"));
            assert_eq!(f.header("").as_deref(), Some("empty-name"));
            assert_eq!(f.header("empty-value").as_deref(), Some(""));
        },
    );
    // Spaces are part of names and values (1.2 does not trim).
    with_frame(b"SEND\n a : b \n\n\0", V12, |f| {
        assert_eq!(f.header(" a ").as_deref(), Some(" b "));
        assert_eq!(f.header("a"), None);
    });
}

#[test]
fn non_utf8_header_is_none_but_raw_works() {
    with_frame(b"SEND\nx:\xff\xfe\n\n\0", V12, |f| {
        assert_eq!(f.header("x"), None);
        assert_eq!(f.raw("x"), Some(&b"\xff\xfe"[..]));
    });
}

// ---------------------------------------------------------------------------------------------
// Bodies and content-length.

#[test]
fn content_length_body_may_contain_nul() {
    let wire = b"SEND\ndestination:/q\ncontent-length:7\n\na\0b\0\0c\0\0";
    with_frame(wire, V12, |f| assert_eq!(f.body, b"a\0b\0\0c\0"));
    // Followed by another frame: uses exactly its own bytes.
    let mut two = wire.to_vec();
    two.extend_from_slice(b"SEND\n\n\0");
    match parse_out(&two, V12) {
        Ok(Out::Frame(f, used)) => {
            assert_eq!(used, wire.len());
            assert_eq!(f.body, b"a\0b\0\0c\0");
        }
        other => panic!("{other:?}"),
    }
    // Zero length.
    with_frame(b"SEND\ncontent-length:0\n\n\0", V12, |f| {
        assert!(f.body.is_empty())
    });
    // Until the NUL after the body arrives, it is partial, NUL bytes in the body or not.
    assert_eq!(
        parse_out(b"SEND\ncontent-length:3\n\n\0\0\0", V12),
        Ok(Out::Partial)
    );
}

#[test]
fn body_without_content_length_ends_at_first_nul() {
    let wire = b"SEND\ndestination:/q\n\nab\0cd\0";
    match parse_out(wire, V12) {
        Ok(Out::Frame(f, used)) => {
            assert_eq!(f.body, b"ab");
            assert_eq!(used, b"SEND\ndestination:/q\n\nab\0".len());
        }
        other => panic!("{other:?}"),
    }
    with_frame(b"SEND\n\n\0", V12, |f| {
        assert!(f.body.is_empty());
        assert!(f.headers.is_empty());
    });
    assert_eq!(parse_out(b"SEND\n\nabc", V12), Ok(Out::Partial));
}

#[test]
fn content_length_not_followed_by_nul() {
    let lim = Limits::default();
    assert_eq!(
        err(b"SEND\ncontent-length:2\n\nabc\0", V12, &lim),
        ParseError::MissingNul
    );
    assert_eq!(
        err(b"SEND\ncontent-length:0\n\nx", V12, &lim),
        ParseError::MissingNul
    );
    // Known as soon as the byte after the body is there.
    assert_eq!(
        err(b"SEND\ncontent-length:1\n\nab", V10, &lim),
        ParseError::MissingNul
    );
}

#[test]
fn bad_content_length_values() {
    let lim = Limits::default();
    for v in [
        "",
        "abc",
        "-1",
        "+3",
        "1.5",
        "0x10",
        "1 2",
        "3a",
        "\u{663}", // an Arabic-Indic digit
        "99999999999999999999",
        "18446744073709551616", // u64::MAX + 1
    ] {
        let wire = format!("SEND\ncontent-length:{v}\n\nabc\0");
        assert_eq!(
            err(wire.as_bytes(), V12, &lim),
            ParseError::BadContentLength,
            "content-length:{v:?}"
        );
        // Even before the body arrives.
        let head = format!("SEND\ncontent-length:{v}\n");
        assert_eq!(
            err(head.as_bytes(), V12, &lim),
            ParseError::BadContentLength
        );
    }
    // A huge but well-formed length is too large, not malformed.
    assert_eq!(
        err(b"SEND\ncontent-length:9999999999999999999\n\n", V12, &lim),
        ParseError::BodyTooLarge
    );
    // Spaces and tabs around the digits are tolerated; other whitespace is not. (A CR gets in
    // as `content-length:7\r\r\n`: the line's CRLF is stripped, leaving `7\r`.)
    with_frame(b"SEND\ncontent-length: 3\t\n\nabc\0", V12, |f| {
        assert_eq!(f.body, b"abc")
    });
    // (In 1.2 that CR is a bare CR, refused as such; 1.1 has no `\r` escape.)
    assert_eq!(
        err(b"SEND\ncontent-length:3\r\r\n\nabc\0", V11, &lim),
        ParseError::BadContentLength
    );
    for wire in [
        &b"SEND\ncontent-length:\x0c3\n\nabc\0"[..],
        b"SEND\ncontent-length:\t\n\n\0",
    ] {
        assert_eq!(
            err(wire, V12, &lim),
            ParseError::BadContentLength,
            "{}",
            s(wire)
        );
    }
    // Leading zeros are fine.
    with_frame(b"SEND\ncontent-length:003\n\nabc\0", V12, |f| {
        assert_eq!(f.body, b"abc")
    });
}

#[test]
fn repeated_content_length_first_wins() {
    with_frame(
        b"SEND\ncontent-length:3\ncontent-length:1\n\nabc\0",
        V12,
        |f| {
            assert_eq!(f.body, b"abc");
            assert_eq!(f.header("content-length").as_deref(), Some("3"));
        },
    );
    with_frame(
        b"SEND\ncontent-length:1\ncontent-length:junk\n\na\0",
        V12,
        |f| {
            assert_eq!(f.body, b"a");
        },
    );
}

// ---------------------------------------------------------------------------------------------
// Limits.

fn small() -> Limits {
    Limits {
        max_headers: 3,
        max_header_line: 16,
        max_body: 8,
    }
}

#[test]
fn too_many_headers() {
    let lim = small();
    let ok = b"SEND\na:1\nb:2\nc:3\n\n\0";
    assert!(matches!(parse_with(ok, V12, &lim), Ok(Out::Frame(..))));
    let wire = b"SEND\na:1\nb:2\nc:3\nd:4\n\n\0";
    assert_eq!(err(wire, V12, &lim), ParseError::TooManyHeaders);
    // On partial input, as soon as the extra header line is complete.
    assert_eq!(
        err(b"SEND\na:1\nb:2\nc:3\nd:4\n", V12, &lim),
        ParseError::TooManyHeaders
    );
    assert_eq!(
        parse_with(b"SEND\na:1\nb:2\nc:3\nd:4", V12, &lim),
        Ok(Out::Partial)
    );
    // The caller's header array is a limit too.
    let mut two = [Header::default(); 2];
    assert_eq!(
        parse(ok, &mut two, V12, &Limits::default()),
        Err(ParseError::TooManyHeaders)
    );
}

#[test]
fn header_line_too_long() {
    let lim = small(); // 16 bytes per line, EOL not counted.
    let l16 = "h:45678901234567";
    let l17 = "h:456789012345678";
    assert_eq!((l16.len(), l17.len()), (16, 17));
    for eol in ["\n", "\r\n"] {
        let ok = format!("SEND{eol}{l16}{eol}{eol}\0");
        assert!(
            matches!(parse_with(ok.as_bytes(), V12, &lim), Ok(Out::Frame(..))),
            "{ok:?}"
        );
        let bad = format!("SEND{eol}{l17}{eol}{eol}\0");
        assert_eq!(err(bad.as_bytes(), V12, &lim), ParseError::HeaderTooLong);
        // Every prefix of the longest allowed line (CR included) is partial.
        check_splits(ok.as_bytes(), 0, V12, &lim);
    }
    // The command line is limited too.
    let long_cmd = [b'S'; 17];
    assert_eq!(err(&long_cmd, V12, &lim), ParseError::HeaderTooLong);
}

#[test]
fn header_line_too_long_while_partial() {
    let lim = small();
    // A line that never ends must fail once it is past the limit, not stay partial forever.
    let mut buf = b"SEND\n".to_vec();
    let mut failed_at = None;
    for i in 0..1000 {
        buf.push(b'a');
        match parse_with(&buf, V12, &lim) {
            Ok(Out::Partial) => {}
            Err(ParseError::HeaderTooLong) => {
                failed_at = Some(i + 1);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(failed_at, Some(17));
    // Exactly the limit plus a CR is still partial (the CR may be half of a CRLF) ...
    let at_limit_cr = b"SEND\nh:45678901234567\r";
    assert_eq!(parse_with(at_limit_cr, V12, &lim), Ok(Out::Partial));
    // ... but not when the CR is followed by anything but LF.
    assert_eq!(
        err(b"SEND\nh:45678901234567\rx", V12, &lim),
        ParseError::HeaderTooLong
    );
    assert_eq!(
        err(b"SEND\nh:45678901234567\r\r", V12, &lim),
        ParseError::HeaderTooLong
    );
    // The command line, partial.
    assert_eq!(parse_with(&[b'X'; 16], V12, &lim), Ok(Out::Partial));
    assert_eq!(err(&[b'X'; 17], V12, &lim), ParseError::HeaderTooLong);
}

#[test]
fn body_too_large() {
    let lim = small(); // 8-byte bodies.
    with_frame_lim(b"SEND\ncontent-length:8\n\n12345678\0", &lim);
    with_frame_lim(b"SEND\n\n12345678\0", &lim);
    // With content-length: refused from the header alone.
    assert_eq!(
        err(b"SEND\ncontent-length:9\n\n123456789\0", V12, &lim),
        ParseError::BodyTooLarge
    );
    assert_eq!(
        err(b"SEND\ncontent-length:9\n", V12, &lim),
        ParseError::BodyTooLarge
    );
    // Without: refused once more than the limit has arrived with no NUL.
    assert_eq!(
        err(b"SEND\n\n123456789\0", V12, &lim),
        ParseError::BodyTooLarge
    );
    assert_eq!(parse_with(b"SEND\n\n12345678", V12, &lim), Ok(Out::Partial));
    assert_eq!(
        err(b"SEND\n\n123456789", V12, &lim),
        ParseError::BodyTooLarge
    );
}

fn with_frame_lim(wire: &[u8], lim: &Limits) {
    match parse_with(wire, V12, lim) {
        Ok(Out::Frame(_, used)) => assert_eq!(used, wire.len()),
        other => panic!("{}: {other:?}", s(wire)),
    }
}

#[test]
fn frame_at_every_limit_fits_max_frame_bytes() {
    let lim = small();
    // Longest command line is the limit too, but commands are short: pad the headers instead.
    let mut wire = b"SEND\r\n".to_vec();
    for i in 0..lim.max_headers {
        let mut line = format!("h{i}:");
        while line.len() < lim.max_header_line {
            line.push('v');
        }
        wire.extend_from_slice(line.as_bytes());
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"\r\n");
    wire.extend_from_slice(&[b'b'; 8]);
    wire.push(0);
    with_frame_lim(&wire, &lim);
    assert!(wire.len() <= lim.max_frame_bytes());
}

// ---------------------------------------------------------------------------------------------
// Heart-beats, commands, colons.

#[test]
fn heartbeat_eols() {
    assert_eq!(parse_out(b"\n", V12), Ok(Out::Heartbeat(1)));
    assert_eq!(parse_out(b"\r\n", V12), Ok(Out::Heartbeat(2)));
    assert_eq!(parse_out(b"\n\r\n\n\r\n", V11), Ok(Out::Heartbeat(6)));
    assert_eq!(parse_out(b"\r", V12), Ok(Out::Partial));
    assert_eq!(parse_out(b"\n\r", V12), Ok(Out::Heartbeat(1)));
    assert_eq!(parse_out(b"", V12), Ok(Out::Partial));
    // Before a frame: the EOLs first, then the frame.
    let wire = b"\n\r\nSEND\n\n\0\n\nACK\nid:1\n\n\0\r\n";
    assert_eq!(parse_out(wire, V12), Ok(Out::Heartbeat(3)));
    let Ok((frames, beats, used)) = drive(wire, V12, &Limits::default()) else {
        panic!("drive failed");
    };
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[0].command, Command::Send);
    assert_eq!(frames[1].command, Command::Ack);
    assert_eq!((beats, used), (3 + 2 + 2, wire.len()));
    // A CR that is not part of a CRLF is not a heart-beat.
    assert_eq!(
        err(b"\rSEND\n\n\0", V12, &Limits::default()),
        ParseError::UnknownCommand
    );
}

#[test]
fn unknown_command() {
    let lim = Limits::default();
    for wire in [
        &b"FOO\n\n\0"[..],
        b"send\n\n\0",
        b"SEND \n\n\0",
        b" SEND\n\n\0",
        b"SENDX\n\n\0",
        b"\0\n",
        b"MESSAGE\0\n",
    ] {
        assert_eq!(
            err(wire, V12, &lim),
            ParseError::UnknownCommand,
            "{}",
            s(wire)
        );
    }
    // Reported when the command line is complete, even if nothing else is there.
    assert_eq!(err(b"FOO\n", V12, &lim), ParseError::UnknownCommand);
    assert_eq!(parse_out(b"FOO", V12), Ok(Out::Partial));
}

#[test]
fn missing_colon() {
    let lim = Limits::default();
    for v in VERSIONS {
        assert_eq!(
            err(b"SEND\nnocolon\n\n\0", v, &lim),
            ParseError::MissingColon
        );
        assert_eq!(
            err(b"SEND\ndestination:/q\nbad\r\n", v, &lim),
            ParseError::MissingColon
        );
    }
    // 1.2: an escaped colon is not a separator.
    assert_eq!(
        err(b"SEND\na\\cb\n\n\0", V12, &lim),
        ParseError::MissingColon
    );
}

#[test]
fn error_messages_are_distinct() {
    let all = [
        ParseError::UnknownCommand,
        ParseError::MissingColon,
        ParseError::BadEscape,
        ParseError::TooManyHeaders,
        ParseError::HeaderTooLong,
        ParseError::BodyTooLarge,
        ParseError::BadContentLength,
        ParseError::MissingNul,
    ];
    let msgs: std::collections::HashSet<_> = all.iter().map(|e| e.to_string()).collect();
    assert_eq!(msgs.len(), all.len());
}

// ---------------------------------------------------------------------------------------------
// Encoding.

#[test]
fn write_frame_escapes_and_adds_content_length() {
    let mut out = Vec::new();
    write_frame(
        &mut out,
        V12,
        Command::Message,
        &[("a:b", "x\ny\rz\\")],
        b"hi\0",
    );
    assert_eq!(
        out,
        b"MESSAGE\na\\cb:x\\ny\\rz\\\\\ncontent-length:3\n\nhi\0\0"
    );
    // CONNECTED and 1.0 are written raw; an empty body gets no content-length.
    out.clear();
    write_frame(&mut out, V12, Command::Connected, &[("server", "a:b")], b"");
    assert_eq!(out, b"CONNECTED\nserver:a:b\n\n\0");
    out.clear();
    write_frame(&mut out, V10, Command::Send, &[("k", "a\\b")], b"");
    assert_eq!(out, b"SEND\nk:a\\b\n\n\0");
    // A caller's content-length is not duplicated.
    out.clear();
    write_frame(
        &mut out,
        V12,
        Command::Send,
        &[("content-length", "2")],
        b"ab",
    );
    assert_eq!(out, b"SEND\ncontent-length:2\n\nab\0");
}

#[test]
fn unescaped_eols_cannot_break_the_frame() {
    // A 1.2 client's header forwarded to a 1.0 subscriber (or a CONNECTED value) with EOLs in
    // it: written raw, they would end the header and inject others.
    for (v, cmd) in [
        (V10, Command::Message),
        (V12, Command::Connected),
        (V11, Command::Connect),
    ] {
        let mut out = Vec::new();
        write_frame(
            &mut out,
            v,
            cmd,
            &[("x", "1\r\ninjected:yes\n\nbody"), ("a\nb", "2")],
            b"",
        );
        with_frame(&out, v, |f| {
            assert_eq!(f.command, cmd);
            assert_eq!(f.headers.len(), 2);
            assert_eq!(f.header("x").as_deref(), Some("1  injected:yes  body"));
            assert_eq!(f.header("a b").as_deref(), Some("2"));
            assert_eq!(f.header("injected"), None);
            assert!(f.body.is_empty());
        });
    }
}

#[test]
fn write_error_parses() {
    for v in VERSIONS {
        let mut out = Vec::new();
        write_error(&mut out, v, "bad: frame\nreally", Some("r:1"));
        with_frame(&out, v, |f| {
            assert_eq!(f.command, Command::Error);
            // 1.0 cannot carry an EOL in a header: it becomes a space.
            let message = if v == V10 {
                "bad: frame really"
            } else {
                "bad: frame\nreally"
            };
            assert_eq!(f.header("message").as_deref(), Some(message));
            assert_eq!(f.header("receipt-id").as_deref(), Some("r:1"));
            assert_eq!(f.header("content-type").as_deref(), Some("text/plain"));
            assert_eq!(f.body, b"bad: frame\nreally");
        });
        out.clear();
        write_error(&mut out, v, "oops", None);
        with_frame(&out, v, |f| {
            assert_eq!(f.header("message").as_deref(), Some("oops"));
            assert_eq!(f.header("receipt-id"), None);
        });
    }
}

#[test]
fn push_usize_digits() {
    for n in [0, 7, 10, 99, 100, 12_345, u32::MAX as usize, usize::MAX] {
        let mut out = b"x".to_vec();
        push_usize(&mut out, n);
        assert_eq!(out, format!("x{n}").into_bytes());
    }
}

// ---------------------------------------------------------------------------------------------
// Property tests.

/// Text biased towards the bytes escaping cares about; any UTF-8 otherwise.
fn text(max: usize) -> impl Strategy<Value = String> {
    vec(
        prop_oneof![
            6 => any::<char>(),
            2 => proptest::char::range('a', 'z'),
            1 => Just(':'),
            1 => Just('\n'),
            1 => Just('\r'),
            1 => Just('\\'),
        ],
        0..max,
    )
    // A NUL cannot be sent in a header (the parser refuses it; the encoder turns it into a space).
    .prop_map(|c| c.into_iter().filter(|&c| c != '\0').collect())
}

fn name() -> impl Strategy<Value = String> {
    text(12).prop_filter("non-empty, not content-length", |n| {
        !n.is_empty() && n != "content-length"
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    vec(prop_oneof![1 => Just(0u8), 4 => any::<u8>()], 0..300)
}

fn command() -> impl Strategy<Value = Command> {
    proptest::sample::select(&COMMANDS[..])
}

fn version() -> impl Strategy<Value = Version> {
    proptest::sample::select(&VERSIONS[..])
}

/// Check a parsed frame against what was written: headers in order (plus the content-length
/// write_frame adds), `header()` finding each name's first value, and the body.
fn check_round_trip(
    f: &FrameRef<'_>,
    command: Command,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<(), TestCaseError> {
    prop_assert_eq!(f.command, command);
    prop_assert_eq!(f.body, body);
    let mut want: Vec<(String, String)> = headers.to_vec();
    if !body.is_empty() {
        want.push(("content-length".into(), body.len().to_string()));
    }
    prop_assert_eq!(f.headers.len(), want.len());
    for (h, (n, v)) in f.headers.iter().zip(&want) {
        let (hn, hv) = if f.escaped {
            match (unescape(h.name), unescape(h.value)) {
                (Ok(a), Ok(b)) => (a.into_owned(), b.into_owned()),
                _ => return Err(TestCaseError::fail("bad escape in a parsed header")),
            }
        } else {
            (h.name.to_vec(), h.value.to_vec())
        };
        prop_assert_eq!(hn, n.as_bytes());
        prop_assert_eq!(hv, v.as_bytes());
    }
    for (n, _) in &want {
        let first = want.iter().find(|(m, _)| m == n).map(|(_, v)| v.as_str());
        let got = f.header(n);
        prop_assert_eq!(got.as_deref(), first, "header {:?}", n);
    }
    Ok(())
}

/// Name and value as they may be written unescaped (1.0, CONNECT, CONNECTED): no EOL in
/// either, no colon in the name.
fn unescapable(n: &str, v: &str) -> (String, String) {
    let mut n: String = n
        .chars()
        .filter(|c| !matches!(c, ':' | '\n' | '\r'))
        .collect();
    if n.is_empty() || n == "content-length" {
        n.insert(0, 'x');
    }
    let v = v.chars().filter(|c| !matches!(c, '\n' | '\r')).collect();
    (n, v)
}

/// (wire, leading EOL bytes, command, decoded headers, body).
type Built = (Vec<u8>, usize, Command, Vec<(Vec<u8>, Vec<u8>)>, Vec<u8>);

/// A frame built byte by byte (not with write_frame): LF or CRLF per line, optional
/// content-length, heart-beats before it. Returns (wire, leading EOL bytes, expected frame with
/// decoded headers).
fn build(
    version: Version,
    command: Command,
    headers: &[(String, String)],
    body: &[u8],
    with_len: bool,
    crlf: &[bool],
    lead: &[bool],
) -> Built {
    let escaped = version != V10 && command.escapes_headers();
    let mut crlf = crlf.iter().cycle();
    let mut eol = |w: &mut Vec<u8>| {
        if crlf.next().copied().unwrap_or(false) {
            w.push(b'\r');
        }
        w.push(b'\n');
    };
    let mut wire = Vec::new();
    for &c in lead {
        wire.extend_from_slice(if c { b"\r\n" } else { b"\n" });
    }
    let lead = wire.len();
    wire.extend_from_slice(command.as_str().as_bytes());
    eol(&mut wire);
    let mut want = Vec::new();
    for (n, v) in headers {
        let (n, v) = if escaped {
            (n.clone(), v.clone())
        } else {
            unescapable(n, v)
        };
        if escaped {
            escape_into(&mut wire, n.as_bytes());
            wire.push(b':');
            escape_into(&mut wire, v.as_bytes());
        } else {
            wire.extend_from_slice(n.as_bytes());
            wire.push(b':');
            wire.extend_from_slice(v.as_bytes());
        }
        eol(&mut wire);
        want.push((n.into_bytes(), v.into_bytes()));
    }
    let body: Vec<u8> = if with_len {
        let len = body.len().to_string();
        wire.extend_from_slice(b"content-length:");
        wire.extend_from_slice(len.as_bytes());
        eol(&mut wire);
        want.push((b"content-length".to_vec(), len.into_bytes()));
        body.to_vec()
    } else {
        body.iter().copied().filter(|&b| b != 0).collect()
    };
    eol(&mut wire);
    wire.extend_from_slice(&body);
    wire.push(0);
    (wire, lead, command, want, body)
}

/// Starts for arbitrary input, so it gets past the command line often.
const PREFIXES: &[&[u8]] = &[b"", b"SEND\n", b"MESSAGE\na:b\n", b"\n"];

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// (a) Random frames split at every byte boundary.
    #[test]
    fn random_frames_split_at_every_byte(
        version in version(),
        command in command(),
        headers in vec((name(), text(12)), 0..6),
        body in vec(prop_oneof![1 => Just(0u8), 4 => any::<u8>()], 0..64),
        with_len in any::<bool>(),
        crlf in vec(any::<bool>(), 1..8),
        lead in vec(any::<bool>(), 0..3),
    ) {
        let (wire, lead, command, want, body) =
            build(version, command, &headers, &body, with_len, &crlf, &lead);
        let got = check_splits(&wire, lead, version, &Limits::default());
        prop_assert_eq!(got.command, command);
        prop_assert_eq!(&got.body, &body);
        prop_assert_eq!(got.escaped, version != V10 && command.escapes_headers());
        prop_assert_eq!(got.decoded(), want);
    }

    /// (b) write_frame then parse, STOMP 1.2: any UTF-8 names and values, any binary body.
    #[test]
    fn write_parse_round_trip_1_2(
        command in command().prop_filter("escaping", |c| c.escapes_headers()),
        headers in vec((name(), text(24)), 0..8),
        body in body(),
    ) {
        let pairs: Vec<(&str, &str)> =
            headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let mut wire = Vec::new();
        write_frame(&mut wire, V12, command, &pairs, &body);
        let mut slots = [Header::default(); 64];
        match parse(&wire, &mut slots, V12, &Limits::default()) {
            Ok(Parsed::Frame(f, used)) => {
                prop_assert_eq!(used, wire.len());
                prop_assert!(f.escaped);
                check_round_trip(&f, command, &headers, &body)?;
            }
            other => return Err(TestCaseError::fail(format!("{other:?}"))),
        }
    }

    /// write_frame then parse for every version and command; headers restricted to what can be
    /// written unescaped where the frame does not escape.
    #[test]
    fn write_parse_round_trip_any_version(
        version in version(),
        command in command(),
        headers in vec((name(), text(24)), 0..8),
        body in body(),
        next in body(),
    ) {
        let escaped = version != V10 && command.escapes_headers();
        let headers: Vec<(String, String)> = if escaped {
            headers
        } else {
            headers.iter().map(|(n, v)| unescapable(n, v)).collect()
        };
        let pairs: Vec<(&str, &str)> =
            headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let mut wire = Vec::new();
        write_frame(&mut wire, version, command, &pairs, &body);
        let len = wire.len();
        // Whatever follows the frame does not change it.
        wire.extend_from_slice(&next);
        let mut slots = [Header::default(); 64];
        match parse(&wire, &mut slots, version, &Limits::default()) {
            Ok(Parsed::Frame(f, used)) => {
                prop_assert_eq!(used, len);
                prop_assert_eq!(f.escaped, escaped);
                check_round_trip(&f, command, &headers, &body)?;
            }
            other => return Err(TestCaseError::fail(format!("{other:?}"))),
        }
    }

    /// Arbitrary bytes: never a panic, never more consumed than given, and any limit error on a
    /// prefix is an error (not a frame) on the whole input too.
    #[test]
    fn arbitrary_bytes_never_overrun(
        version in version(),
        data in vec(prop_oneof![
            4 => any::<u8>(),
            2 => Just(b'\n'),
            1 => Just(b':'),
            1 => Just(0u8),
            1 => Just(b'\\'),
        ], 0..200),
        prefix in proptest::sample::select(PREFIXES),
    ) {
        let mut buf = prefix.to_vec();
        buf.extend_from_slice(&data);
        let lim = small();
        let mut pos = 0;
        while pos < buf.len() {
            let rest = buf.get(pos..).unwrap_or_default();
            match parse_with(rest, version, &lim) {
                Ok(Out::Frame(f, used)) => {
                    prop_assert!(used > 0 && used <= rest.len());
                    prop_assert!(f.headers.len() <= lim.max_headers);
                    prop_assert!(f.body.len() <= lim.max_body);
                    pos += used;
                }
                Ok(Out::Heartbeat(n)) => {
                    prop_assert!(n > 0 && n <= rest.len());
                    pos += n;
                }
                Ok(Out::Partial) => {
                    prop_assert!(rest.len() <= lim.max_frame_bytes());
                    break;
                }
                Err(_) => break,
            }
        }
    }
}
