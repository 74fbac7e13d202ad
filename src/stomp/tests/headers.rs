//! Headers, line endings, escaping.

use super::*;

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
