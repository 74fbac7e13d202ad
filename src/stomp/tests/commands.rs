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
