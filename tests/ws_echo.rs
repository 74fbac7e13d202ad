//! The WebSocket server end to end: the echo endpoint driven by tungstenite (an independent
//! implementation) and by raw sockets for everything malformed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use tungstenite::Message;

type Ws = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>;

fn tung(addr: std::net::SocketAddr) -> Ws {
    let (ws, resp) = tungstenite::connect(format!("ws://{addr}/echo")).expect("connects");
    assert_eq!(resp.status(), 101);
    ws
}

#[test]
fn tungstenite_echoes_text_binary_and_every_length_encoding() {
    let (srv, addr) = echo_server();
    let mut ws = tung(addr);
    for len in [0usize, 1, 125, 126, 200, 65535, 65536, 70_000] {
        let text: String = (0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect();
        ws.send(Message::text(text.clone())).unwrap();
        assert_eq!(ws.read().unwrap(), Message::text(text));
        let bin: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        ws.send(Message::binary(bin.clone())).unwrap();
        assert_eq!(ws.read().unwrap(), Message::binary(bin));
    }
    ws.send(Message::text("κόσμε 😀")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("κόσμε 😀"));
    ws.close(None).unwrap();
    srv.shutdown().unwrap();
}

#[test]
fn one_mebibyte_message_both_ways() {
    let (srv, addr) = echo_server();
    let mut ws = tung(addr);
    let big: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    ws.send(Message::binary(big.clone())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::binary(big));
    srv.shutdown().unwrap();
}

#[test]
fn sixteen_mebibytes_in_many_fragments() {
    // Larger than the default message limit (5 MiB): the operator raised it.
    let (srv, addr) = common::server_with(|c| c.max_message_size = 16 << 20);
    let mut r = Raw::open(addr, "/echo");
    let chunk = vec![b'x'; 1 << 16];
    let n = 256; // 256 x 64 KiB = 16 MiB, the configured message limit
    let writer = {
        let mut s = r.s.try_clone().unwrap();
        let chunk = chunk.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            for i in 0..n {
                let op = if i == 0 { 1 } else { 0 };
                s.write_all(&masked(i == n - 1, op, &chunk)).unwrap();
            }
        })
    };
    let (fin, op, payload) = r.frame().expect("echo");
    writer.join().unwrap();
    assert!(fin);
    assert_eq!(op, 1);
    assert_eq!(payload.len(), n << 16);
    assert!(payload.iter().all(|b| *b == b'x'));
    srv.shutdown().unwrap();
}

#[test]
fn fragmented_message_with_interleaved_pings() {
    let (srv, addr) = echo_server();
    let mut r = Raw::open(addr, "/echo");
    let mut w = masked(false, 1, b"frag1 ");
    w.extend(masked(true, 9, b"ping-1"));
    w.extend(masked(false, 0, b"frag2 "));
    w.extend(masked(true, 9, b"ping-2"));
    w.extend(masked(true, 10, b"unsolicited pong"));
    w.extend(masked(true, 0, b"frag3"));
    // Send it a few bytes at a time to exercise partial frames too.
    for piece in w.chunks(5) {
        r.send(piece);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(r.frame(), Some((true, 10, b"ping-1".to_vec())));
    assert_eq!(r.frame(), Some((true, 10, b"ping-2".to_vec())));
    assert_eq!(r.frame(), Some((true, 1, b"frag1 frag2 frag3".to_vec())));
    r.send(&masked(true, 8, &1000u16.to_be_bytes()));
    assert_eq!(r.frame(), Some((true, 8, 1000u16.to_be_bytes().to_vec())));
    assert!(r.frame().is_none());
    srv.shutdown().unwrap();
}

#[test]
fn bytes_in_the_same_packet_as_the_handshake_are_kept() {
    let (srv, addr) = echo_server();
    let mut r = Raw::connect(addr);
    let mut w = upgrade_request("/echo", "").into_bytes();
    w.extend(masked(true, 2, b"early"));
    r.send(&w);
    assert!(r.read_http_head().starts_with("HTTP/1.1 101"));
    assert_eq!(r.frame(), Some((true, 2, b"early".to_vec())));
    srv.shutdown().unwrap();
}

#[test]
fn every_protocol_error_gets_its_close_code() {
    let (srv, addr) = server_with(|c| {
        c.max_frame_size = 1000;
        c.max_message_size = 1500;
    });
    let long = vec![b'a'; 126];
    let mut top_bit = vec![0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0];
    top_bit.extend_from_slice(&[1, 2, 3, 4]);
    let mut frag_then_new = masked(false, 1, b"a");
    frag_then_new.extend(masked(true, 1, b"b"));
    let mut too_big_msg = masked(false, 2, &[0; 1000]);
    too_big_msg.extend(masked(true, 0, &[0; 600]));
    let mut bad_utf8_frag = masked(false, 1, "κόσμε".as_bytes());
    bad_utf8_frag.extend(masked(false, 0, &[0xed, 0xa0, 0x80]));
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "rsv1",
            raw_frame(0x80 | 0x40 | 1, b"x", Some([1, 2, 3, 4])),
            1002,
        ),
        (
            "rsv3",
            raw_frame(0x80 | 0x10 | 2, b"x", Some([1, 2, 3, 4])),
            1002,
        ),
        ("opcode 3", raw_frame(0x83, b"", Some([1, 2, 3, 4])), 1002),
        ("opcode 11", raw_frame(0x8B, b"", Some([1, 2, 3, 4])), 1002),
        ("unmasked", raw_frame(0x81, b"hello", None), 1002),
        ("ping 126", masked(true, 9, &long), 1002),
        ("fragmented ping", masked(false, 9, b"x"), 1002),
        ("lone continuation", masked(true, 0, b"x"), 1002),
        ("new message inside fragmented", frag_then_new, 1002),
        ("64-bit length top bit", top_bit, 1002),
        ("1-byte close", masked(true, 8, &[3]), 1002),
        ("close 1005", masked(true, 8, &1005u16.to_be_bytes()), 1002),
        ("close 999", masked(true, 8, &999u16.to_be_bytes()), 1002),
        ("close 2000", masked(true, 8, &2000u16.to_be_bytes()), 1002),
        (
            "invalid utf8 text",
            masked(true, 1, &[0xce, 0xba, 0xff]),
            1007,
        ),
        ("invalid utf8 fragment", bad_utf8_frag, 1007),
        (
            "invalid utf8 close reason",
            masked(true, 8, &[3, 0xe8, 0xff, 0xfe]),
            1007,
        ),
        ("frame too big", masked(true, 2, &[0; 1001]), 1009),
        ("message too big", too_big_msg, 1009),
    ];
    for (name, bytes, code) in cases {
        let mut r = Raw::open(addr, "/echo");
        r.send(&bytes);
        let (_, op, payload) = r.frame().unwrap_or_else(|| panic!("{name}: no close"));
        assert_eq!(op, 8, "{name}");
        assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), code, "{name}");
        assert!(r.frame().is_none(), "{name}: connection must end");
    }
    // Other connections are untouched: one opened before the errors still echoes.
    let mut ws = tung(addr);
    ws.send(Message::text("still here")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("still here"));
    srv.shutdown().unwrap();
}

#[test]
fn valid_close_codes_are_echoed() {
    let (srv, addr) = echo_server();
    for code in [1000u16, 1001, 1003, 1007, 1011, 3000, 4999] {
        let mut r = Raw::open(addr, "/echo");
        let mut p = code.to_be_bytes().to_vec();
        p.extend_from_slice("bye ☺".as_bytes());
        r.send(&masked(true, 8, &p));
        let (_, op, payload) = r.frame().expect("close reply");
        assert_eq!(op, 8);
        assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), code);
        assert!(r.frame().is_none());
    }
    // An empty close gets an empty close.
    let mut r = Raw::open(addr, "/echo");
    r.send(&masked(true, 8, b""));
    assert_eq!(r.frame(), Some((true, 8, vec![])));
    assert!(r.frame().is_none());
    srv.shutdown().unwrap();
}

fn refusal(addr: std::net::SocketAddr, req: &str) -> (u16, String) {
    let mut r = Raw::connect(addr);
    r.send(req.as_bytes());
    let all = r.read_to_end();
    let status = all
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, all)
}

#[test]
fn every_handshake_refusal_is_a_complete_http_response() {
    let (srv, addr) = server_with(|c| {
        c.handshake.allowed_origins = Some(vec!["https://good.example".into()]);
    });
    let good = upgrade_request("/echo", "");
    let cases = [
        (good.replace("GET", "POST"), 405),
        (good.replace("HTTP/1.1", "HTTP/1.0"), 400),
        (good.replace("Host: localhost\r\n", ""), 400),
        (good.replace("Upgrade: websocket\r\n", ""), 426),
        (
            good.replace("Connection: Upgrade", "Connection: close"),
            400,
        ),
        (good.replace("Version: 13", "Version: 12"), 426),
        (good.replace(KEY, "c2hvcnQ="), 400),
        (upgrade_request("/nope", ""), 404),
        (
            upgrade_request("/echo", "Origin: https://evil.example\r\n"),
            403,
        ),
        (
            upgrade_request("/echo", &format!("X-Big: {}\r\n", "b".repeat(9000))),
            431,
        ),
        ("\x16\x03\x01 not http\r\n\r\n".to_string(), 400),
    ];
    for (req, want) in cases {
        let (status, all) = refusal(addr, &req);
        assert_eq!(status, want, "{all}");
        let (head, body) = all.split_once("\r\n\r\n").expect("complete head");
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{all}"
        );
        if want == 426 {
            assert!(head.contains("Sec-WebSocket-Version: 13"), "{all}");
        }
    }
    let mut r = Raw::connect(addr);
    r.send(upgrade_request("/echo", "Origin: https://good.example\r\n").as_bytes());
    assert!(
        r.read_http_head().starts_with("HTTP/1.1 101 "),
        "allowed origin upgrades"
    );
    srv.shutdown().unwrap();
}

/// Clients pass tokens in the query string (`/ws?access_token=...`) and some add a trailing
/// slash: both reach the STOMP endpoint (they were 404).
#[test]
fn the_stomp_endpoint_takes_a_query_string_and_a_trailing_slash() {
    let (h, addr) = echo_server();
    for path in ["/ws?access_token=abc.def", "/ws/", "/stomp/?x=1"] {
        let mut r = Raw::open(addr, path);
        r.send(&masked(
            true,
            1,
            b"CONNECT\naccept-version:1.2\nhost:/\n\n\0",
        ));
        let (_, op, payload) = r.frame().expect("CONNECTED");
        assert_eq!(op, 1, "{path}");
        assert!(payload.starts_with(b"CONNECTED\n"), "{path}: {payload:?}");
    }
    let (status, _) = refusal(addr, &upgrade_request("/wsx?a", ""));
    assert_eq!(status, 404);
    h.shutdown().unwrap();
}

#[test]
fn a_stalled_handshake_is_closed_after_the_timeout() {
    let (srv, addr) = server_with(|c| c.handshake_timeout = Duration::from_millis(300));
    let mut r = Raw::connect(addr);
    r.send(b"GET /echo HTTP/1.1\r\nHost: x\r\n");
    let t = Instant::now();
    assert!(r.is_eof());
    assert!(t.elapsed() < Duration::from_secs(5));
    srv.shutdown().unwrap();
}

#[test]
fn shutdown_sends_going_away() {
    let (srv, addr) = echo_server();
    let mut conns: Vec<Raw> = (0..4).map(|_| Raw::open(addr, "/echo")).collect();
    for r in &mut conns {
        r.send(&masked(true, 1, b"hi"));
        assert_eq!(r.frame(), Some((true, 1, b"hi".to_vec())));
    }
    let t = std::thread::spawn(move || srv.shutdown());
    for r in &mut conns {
        r.expect_close(1001);
    }
    t.join().unwrap().unwrap();
}

#[test]
fn a_thousand_concurrent_connections_over_several_reactors() {
    let (srv, addr) = server_with(|c| c.reactors = 4);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let mut socks: Vec<Ws> = (0..250).map(|_| tung(addr)).collect();
                for (i, ws) in socks.iter_mut().enumerate() {
                    ws.send(Message::text(format!("{t}-{i}"))).unwrap();
                }
                for (i, ws) in socks.iter_mut().enumerate() {
                    assert_eq!(ws.read().unwrap(), Message::text(format!("{t}-{i}")));
                }
                socks
            })
        })
        .collect();
    let all: Vec<Vec<Ws>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(all.iter().map(Vec::len).sum::<usize>(), 1000);
    drop(all);
    srv.shutdown().unwrap();
}
