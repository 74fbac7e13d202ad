//! The specification's example frames.

use super::*;

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
