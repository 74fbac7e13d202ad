//! Encoding.

use super::*;

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
