//! Property tests.

use super::*;

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
