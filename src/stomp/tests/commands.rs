//! Heart-beats, commands, colons.

use super::*;

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

/// A malformed frame is answered once its header block is whole, so that its ERROR carries
/// the receipt it asked for (found by the whole-server fuzzer: a receipt line split across two
/// WebSocket messages gave `receipt-id:` with an empty value).
#[test]
fn receipts_of_malformed_frames_are_whole_lines() {
    let lim = Limits::default();
    assert!(!parse::head_settled(b"FROB\nreceipt:", &lim));
    assert!(!parse::head_settled(b"FROB\nreceipt:r-1\n", &lim));
    assert!(parse::head_settled(b"FROB\nreceipt:r-1\n\n", &lim));
    assert!(parse::head_settled(b"FROB\r\nreceipt:r-1\r\n\r\n", &lim));
    assert!(
        parse::head_settled(b"FROB\nx\0", &lim),
        "a NUL ends the frame"
    );
    let small = Limits {
        max_headers: 1,
        max_header_line: 8,
        ..lim
    };
    assert!(
        parse::head_settled(&[b'x'; 30], &small),
        "a line past its bound: answer now"
    );
    assert!(!parse::head_settled(b"FROB\nabc", &small));
    assert!(
        parse::head_settled(b"FROB\na:1\nb:2\nc:3\n", &small),
        "more lines than a header block holds"
    );
    assert_eq!(parse::find_receipt(b"FROB\nreceipt:", 1024), None);
    assert_eq!(parse::find_receipt(b"FROB\nreceipt:r-", 1024), None);
    assert_eq!(
        parse::find_receipt(b"FROB\nreceipt:r-1\n", 1024),
        Some(&b"r-1"[..])
    );
}
