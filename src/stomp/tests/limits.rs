//! Limits.

use super::*;

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
