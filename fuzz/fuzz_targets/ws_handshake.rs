//! The opening handshake parser on arbitrary bytes: never panics, and a complete request never
//! claims more bytes than it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stompbox::ws::handshake::Status;
use stompbox::ws::{parse_request, write_accept, HandshakeConfig};

fuzz_target!(|data: &[u8]| {
    let cfg = HandshakeConfig::default();
    match parse_request(data, &cfg) {
        Ok(Status::Complete(up)) => {
            assert!(up.consumed <= data.len());
            assert!(up.consumed <= cfg.max_request_bytes);
            if let Some(p) = up.protocol {
                assert!(cfg.protocols.iter().any(|s| s.eq_ignore_ascii_case(p)));
            }
            let mut out = Vec::new();
            write_accept(&mut out, up.key, up.protocol, None);
            assert!(out.ends_with(b"\r\n\r\n"));
        }
        Ok(Status::Partial) => assert!(data.len() < cfg.max_request_bytes),
        Err(refusal) => {
            assert!((400..600).contains(&refusal.status));
            let mut out = Vec::new();
            refusal.write(&mut out);
            assert!(out.starts_with(b"HTTP/1.1 "));
        }
    }
});
