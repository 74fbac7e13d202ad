//! Bodies and content-length.

use super::*;

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
