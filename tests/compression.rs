//! permessage-deflate (RFC 7692) end to end: negotiation, compressed deliveries (one shared
//! segment after a per-subscriber stored block) inflated by an ordinary zlib inflater the way a
//! browser does, compressed client messages (whole, fragmented, with and without context
//! takeover), and the limits: a small message that inflates past `max_message_size` gets close
//! 1009, bad DEFLATE data 1007.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/ops.rs"]
mod ops;

use common::stomp::{frame, parse_frame, Esc, Frame};
use common::{raw_frame, upgrade_request, zlib, Raw};
use flate2::{Compress, Compression, Decompress};
use std::net::SocketAddr;

/// A client of its own: raw frames, zlib both ways as RFC 7692 describes, one inflater for the
/// session (it never resets: valid whatever the server announced).
struct Zc {
    raw: Raw,
    /// The `Sec-WebSocket-Extensions` answer (empty: none).
    agreed: String,
    inflate: Decompress,
    deflate: Compress,
    /// Reset the compressor before each message (client_no_context_takeover agreed).
    reset: bool,
}

impl Zc {
    fn open(addr: SocketAddr, offer: &str) -> Zc {
        let mut raw = Raw::connect(addr);
        let extra = if offer.is_empty() {
            String::new()
        } else {
            format!("Sec-WebSocket-Extensions: {offer}\r\n")
        };
        raw.send(upgrade_request("/ws", &extra).as_bytes());
        let head = raw.read_http_head();
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        let agreed = head
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Extensions: "))
            .unwrap_or_default()
            .to_string();
        Zc {
            raw,
            reset: agreed.contains("client_no_context_takeover"),
            agreed,
            inflate: Decompress::new_with_window_bits(false, 15),
            deflate: Compress::new_with_window_bits(Compression::default(), false, 15),
        }
    }

    /// The compressed payload of `data` (the sync flush's tail removed).
    fn compress(&mut self, data: &[u8]) -> Vec<u8> {
        if self.reset {
            self.deflate.reset();
        }
        zlib::compress(&mut self.deflate, data)
    }

    /// Send a STOMP frame as one compressed text message in `pieces` fragments.
    fn send_compressed(&mut self, f: &[u8], pieces: usize) {
        let z = self.compress(f);
        let step = z.len().div_ceil(pieces).max(1);
        let chunks: Vec<&[u8]> = z.chunks(step).collect();
        for (i, c) in chunks.iter().enumerate() {
            let fin = if i + 1 == chunks.len() { 0x80 } else { 0 };
            let b0 = fin | if i == 0 { 0x40 | 0x1 } else { 0x0 };
            self.raw
                .send(&raw_frame(b0, c, Some([0x11, 0x22, 0x33, 0x44])));
        }
    }

    fn send_plain(&mut self, f: &[u8]) {
        self.raw.send(&common::masked(true, 1, f));
    }

    /// The next data message, inflated if compressed: (compressed?, bytes).
    fn message(&mut self) -> (bool, Vec<u8>) {
        loop {
            let (b0, payload) = self.raw.frame_b0().expect("a frame");
            match b0 & 0x0f {
                0x1 | 0x2 => {
                    assert_eq!(b0 & 0x80, 0x80, "the server does not fragment");
                    if b0 & 0x40 == 0 {
                        return (false, payload);
                    }
                    let out = zlib::inflate(&mut self.inflate, &payload).unwrap();
                    return (true, out);
                }
                0x9 | 0xA => continue,
                op => panic!("unexpected opcode {op}: {payload:?}"),
            }
        }
    }

    fn stomp(&mut self) -> (bool, Frame) {
        let (z, bytes) = self.message();
        let (f, _) = parse_frame(&bytes, Esc::V12).expect("a whole frame");
        (z, f)
    }

    /// CONNECT (STOMP 1.2), sent as it is; CONNECTED expected.
    fn connect(&mut self) {
        self.send_plain(&frame(
            "CONNECT",
            &[("accept-version", "1.2"), ("host", "/")],
            b"",
        ));
        assert_eq!(self.stomp().1.command, "CONNECTED");
    }

    fn connect_and_subscribe(&mut self, dest: &str) {
        self.connect();
        self.send_plain(&frame(
            "SUBSCRIBE",
            &[("id", "s1"), ("destination", dest), ("receipt", "r1")],
            b"",
        ));
        assert_eq!(self.stomp().1.command, "RECEIPT");
    }
}

/// Scrape `/metrics` until `ready` says so (at most 3 s): reactors publish their counters at
/// the end of a loop turn, possibly just after the clients got what the turn sent.
fn scrape_until(addr: SocketAddr, ready: impl Fn(&ops::Metrics) -> bool) -> ops::Metrics {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let m = ops::scrape(addr);
        if ready(&m) || std::time::Instant::now() > deadline {
            return m;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn server(f: impl FnOnce(&mut stompbox::Config)) -> (stompbox::ServerHandle, SocketAddr) {
    common::server_with(|c| {
        c.handshake.deflate = Some(stompbox::ws::deflate::DeflateConfig::default());
        f(c);
    })
}

/// A JSON body of about 1 KiB that compresses well.
fn json(n: usize) -> Vec<u8> {
    let items: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"id":{i},"user":"user-{}","text":"hello from the chat room"}}"#,
                i % 7
            )
        })
        .collect();
    format!("[{}]", items.join(",")).into_bytes()
}

#[test]
fn compressed_deliveries_inflate_to_what_plain_subscribers_get() {
    let (h, addr) = server(|c| {
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        // One reactor: every subscriber shares its segments.
        c.reactors = 1;
    });
    let mut a = Zc::open(addr, "permessage-deflate; client_max_window_bits");
    assert_eq!(
        a.agreed,
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    );
    let mut b = Zc::open(addr, "permessage-deflate; server_max_window_bits=10");
    assert!(
        b.agreed.contains("server_max_window_bits=10"),
        "{}",
        b.agreed
    );
    let mut c = Zc::open(addr, "");
    assert_eq!(c.agreed, "");
    let mut p = Zc::open(addr, "");
    for z in [&mut a, &mut b, &mut c] {
        z.connect_and_subscribe("/topic/json");
    }
    p.connect_and_subscribe("/topic/other");
    let big = json(20);
    assert!(big.len() > 1000);
    let bodies: [(&str, Vec<u8>); 3] = [
        ("application/json", big.clone()),
        ("text/plain", b"short".to_vec()),
        (
            "application/octet-stream",
            (0..600u32).map(|i| (i % 251) as u8).collect(),
        ),
    ];
    for round in 0..3 {
        for (ct, body) in &bodies {
            p.raw.send(&common::masked(
                true,
                2,
                &frame(
                    "SEND",
                    &[
                        ("destination", "/topic/json"),
                        ("content-type", ct),
                        ("x-round", &round.to_string()),
                        ("content-length", &body.len().to_string()),
                    ],
                    body,
                ),
            ));
            let (cz, plain) = c.stomp();
            assert!(!cz);
            assert_eq!(&plain.body, body);
            for z in [&mut a, &mut b] {
                let (compressed, f) = z.stomp();
                // Under min_size (256 bytes with headers): as it is; otherwise compressed, and
                // the same frame a plain subscriber gets.
                assert_eq!(compressed, body.len() > 100, "{ct} round {round}");
                assert_eq!(f.headers, plain.headers);
                assert_eq!(&f.body, body);
            }
        }
    }
    // And the other way: a compressed SEND, whole and in fragments, reaches everyone.
    for pieces in [1, 3] {
        a.send_compressed(
            &frame("SEND", &[("destination", "/topic/json")], &big),
            pieces,
        );
        for z in [&mut a, &mut b, &mut c] {
            assert_eq!(z.stomp().1.body, big);
        }
    }
    // Per compressed message, one segment per window size (a: 15 bits, b: 10), however many
    // subscribers: 3 rounds x 2 compressible bodies x 2 window sizes, and 2 x 2 for the
    // compressed SENDs delivered back.
    // (The reactor publishes its counters at the end of a loop turn, which may come just
    // after the clients have their messages: wait for them.)
    let m = scrape_until(h.metrics_addr().expect("metrics listener"), |m| {
        m.u("stompbox_deflate_segments_total") >= 3 * 2 * 2 + 2 * 2
            && m.u("stompbox_inflated_total") >= 2
    });
    assert_eq!(
        m.u("stompbox_deflate_segments_total"),
        3 * 2 * 2 + 2 * 2,
        "{}",
        m.text
    );
    assert!(
        m.u("stompbox_deflate_bytes_total{stage=\"after\"}") * 3
            < m.u("stompbox_deflate_bytes_total{stage=\"before\"}")
    );
    assert_eq!(m.u("stompbox_inflated_total"), 2);
}

#[test]
fn a_clients_context_is_kept_when_agreed() {
    let (_h, addr) = server(|c| {
        if let Some(d) = c.handshake.deflate.as_mut() {
            d.client_no_context_takeover = false;
        }
    });
    let mut a = Zc::open(addr, "permessage-deflate");
    assert_eq!(a.agreed, "permessage-deflate; server_no_context_takeover");
    assert!(!a.reset);
    a.connect_and_subscribe("/topic/t");
    // The same SEND three times: the second and third refer back into the first.
    let send = frame("SEND", &[("destination", "/topic/t")], &json(4));
    let first = a.compress(&send);
    let second = a.compress(&send);
    assert!(
        second.len() < first.len() / 4,
        "{} {}",
        first.len(),
        second.len()
    );
    a.deflate.reset();
    for _ in 0..3 {
        a.send_compressed(&send, 2);
        assert_eq!(a.stomp().1.body, json(4));
    }
}

#[test]
fn a_compressed_bomb_is_refused_with_1009_and_bad_data_with_1007() {
    let (_h, addr) = server(|c| c.max_message_size = 64 * 1024);
    let mut a = Zc::open(addr, "permessage-deflate");
    a.connect_and_subscribe("/topic/t");
    // 8 MiB of zeros in ~8 KiB: refused once inflated past 64 KiB.
    let bomb = frame("SEND", &[("destination", "/topic/t")], &vec![b'0'; 8 << 20]);
    a.send_compressed(&bomb, 1);
    let (z, err) = a.stomp();
    assert!(!z);
    assert_eq!(err.command, "ERROR");
    assert_eq!(err.h("message"), "message too big");
    a.raw.expect_close(1009);

    let mut b = Zc::open(addr, "permessage-deflate");
    b.connect_and_subscribe("/topic/t");
    b.raw
        .send(&raw_frame(0xC1, &[0xff; 40], Some([1, 2, 3, 4])));
    assert_eq!(b.stomp().1.h("message"), "invalid compressed data");
    b.raw.expect_close(1007);

    // RSV1 on a session that did not agree to compression: 1002.
    let mut c = Zc::open(addr, "");
    c.connect_and_subscribe("/topic/t");
    c.raw.send(&raw_frame(0xC1, &[0x00], Some([1, 2, 3, 4])));
    assert_eq!(c.stomp().1.h("message"), "reserved bits set");
    c.raw.expect_close(1002);
}

#[test]
fn negotiation_refusals_and_compression_off() {
    let (_h, addr) = server(|_| {});
    // A malformed extension header fails the handshake.
    let mut r = Raw::connect(addr);
    r.send(
        upgrade_request(
            "/ws",
            "Sec-WebSocket-Extensions: permessage-deflate; x=\"\r\n",
        )
        .as_bytes(),
    );
    assert!(r.read_http_head().starts_with("HTTP/1.1 400 "));
    // An offer the server cannot honour is declined; the next one is taken.
    let z = Zc::open(
        addr,
        "permessage-deflate; server_max_window_bits=8, permessage-deflate; client_max_window_bits=12",
    );
    assert_eq!(
        z.agreed,
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=12"
    );
    // Compression off (the default): nothing agreed, whatever is offered.
    let (_h2, addr2) = common::server_with(|_| {});
    let z = Zc::open(addr2, "permessage-deflate; client_max_window_bits");
    assert_eq!(z.agreed, "");
}

#[test]
fn the_echo_endpoint_answers_compressed() {
    let (_h, addr) = server(|_| {});
    let mut r = Raw::connect(addr);
    r.send(upgrade_request("/echo", "Sec-WebSocket-Extensions: permessage-deflate\r\n").as_bytes());
    assert!(r.read_http_head().contains("permessage-deflate"));
    let mut z = Zc {
        raw: r,
        agreed: String::new(),
        inflate: Decompress::new_with_window_bits(false, 15),
        deflate: Compress::new_with_window_bits(Compression::default(), false, 15),
        reset: true,
    };
    let body = json(8);
    for pieces in [1, 4] {
        z.send_compressed(&body, pieces);
        assert_eq!(z.message(), (true, body.clone()));
    }
    z.send_plain(b"tiny");
    assert_eq!(z.message(), (false, b"tiny".to_vec()));
}

/// An independent RFC 7692 implementation (ratchet, with its deflate extension) as publisher
/// and subscriber: compressed SENDs in, compressed MESSAGEs out, bodies intact.
#[test]
fn an_independent_deflate_client_publishes_and_subscribes() {
    use bytes::BytesMut;
    use ratchet_rs::deflate::DeflateExtProvider;
    use ratchet_rs::{Message, PayloadType, SubprotocolRegistry, WebSocketConfig};

    let (h, addr) = server(|c| c.metrics_listen = Some("127.0.0.1:0".parse().unwrap()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let body = json(40);
    let received = rt.block_on(async {
        let open = || async {
            let s = tokio::net::TcpStream::connect(addr).await.unwrap();
            ratchet_rs::subscribe_with(
                WebSocketConfig::default(),
                s,
                format!("ws://{addr}/ws"),
                &DeflateExtProvider::default(),
                SubprotocolRegistry::new(["v12.stomp"]).unwrap(),
            )
            .await
            .unwrap()
            .into_websocket()
        };
        let mut sub = open().await;
        let mut publ = open().await;
        let mut buf = BytesMut::new();
        let connect = frame("CONNECT", &[("accept-version", "1.2"), ("host", "/")], b"");
        for ws in [&mut sub, &mut publ] {
            ws.write(&connect, PayloadType::Text).await.unwrap();
            buf.clear();
            assert!(matches!(ws.read(&mut buf).await.unwrap(), Message::Text));
            assert!(buf.starts_with(b"CONNECTED\n"));
        }
        sub.write(
            &frame(
                "SUBSCRIBE",
                &[("id", "1"), ("destination", "/topic/r"), ("receipt", "s")],
                b"",
            ),
            PayloadType::Text,
        )
        .await
        .unwrap();
        buf.clear();
        sub.read(&mut buf).await.unwrap();
        assert!(buf.starts_with(b"RECEIPT\n"));
        let mut got = Vec::new();
        for i in 0..3 {
            let mut b = body.clone();
            b.extend_from_slice(format!(" #{i}").as_bytes());
            publ.write(
                &frame("SEND", &[("destination", "/topic/r")], &b),
                PayloadType::Text,
            )
            .await
            .unwrap();
            buf.clear();
            assert!(matches!(sub.read(&mut buf).await.unwrap(), Message::Text));
            let (f, _) = parse_frame(&buf, Esc::V12).expect("a MESSAGE");
            got.push((f.command, f.body, b));
        }
        got
    });
    for (command, got, sent) in received {
        assert_eq!(command, "MESSAGE");
        assert_eq!(got, sent);
    }
    // It was compressed both ways: the CONNECTs, SUBSCRIBE and SENDs inflated, the three
    // MESSAGEs deflated.
    let m = scrape_until(h.metrics_addr().expect("metrics"), |m| {
        m.u("stompbox_deflate_segments_total") >= 3 && m.u("stompbox_inflated_total") >= 6
    });
    assert!(m.u("stompbox_inflated_total") >= 6, "{}", m.text);
    assert_eq!(m.u("stompbox_deflate_segments_total"), 3);
}

/// A queue delivery's head has more parts (message-id, ack, redelivered): compressed, every one
/// of them arrives, and the frame's lengths count them (the whole-server fuzzer found a head cut
/// short here once).
#[test]
fn queue_deliveries_are_compressed_with_their_whole_head() {
    let (_h, addr) = server(|_| {});
    let mut a = Zc::open(addr, "permessage-deflate");
    a.connect();
    a.send_plain(&frame(
        "SUBSCRIBE",
        &[
            ("id", "q"),
            ("destination", "/queue/z"),
            ("ack", "client-individual"),
            ("receipt", "r"),
        ],
        b"",
    ));
    assert_eq!(a.stomp().1.command, "RECEIPT");
    let mut p = Zc::open(addr, "");
    p.connect();
    let body = json(20);
    p.send_plain(&frame("SEND", &[("destination", "/queue/z")], &body));
    let (z, m) = a.stomp();
    assert!(z);
    assert_eq!(m.command, "MESSAGE");
    assert_eq!(m.h("subscription"), "q");
    assert_eq!(m.h("ack"), m.h("message-id"));
    assert_eq!(m.get("redelivered"), None);
    assert_eq!(m.body, body);
    // NACKed: back with redelivered:true, the head's last part.
    a.send_plain(&frame("NACK", &[("id", m.h("ack"))], b""));
    let (z, m) = a.stomp();
    assert!(z);
    assert_eq!(m.h("redelivered"), "true");
    assert_eq!(m.h("ack"), m.h("message-id"));
    assert_eq!(m.body, body);
    a.send_plain(&frame(
        "ACK",
        &[("id", m.h("ack")), ("receipt", "done")],
        b"",
    ));
    assert_eq!(a.stomp().1.h("receipt-id"), "done");
}

/// Small compressed messages that inflate to large ones count against the read budget by
/// their inflated size: a pipelined burst of them is handled over several turns, and every
/// one still arrives, in order (the rest wait in the read buffer; nothing is refused).
#[test]
fn inflated_bytes_count_against_the_read_budget() {
    let (_h, addr) = server(|c| {
        c.read_budget = 64 * 1024;
        c.reactors = 1;
    });
    let mut sub = Zc::open(addr, "");
    sub.connect_and_subscribe("/topic/big");
    let mut p = Zc::open(addr, "permessage-deflate");
    p.connect();
    // 20 SENDs of ~100 KiB each (a few hundred bytes compressed), in one write.
    let mut burst = Vec::new();
    for i in 0..20 {
        let body = format!("{i:03}").repeat(34_000).into_bytes();
        let z = p.compress(&frame("SEND", &[("destination", "/topic/big")], &body));
        burst.extend(raw_frame(0xC1, &z, Some([9, 8, 7, 6])));
    }
    assert!(burst.len() < 20 * 2048, "{}", burst.len());
    p.raw.send(&burst);
    for i in 0..20 {
        let (_, f) = sub.stomp();
        assert_eq!(f.command, "MESSAGE");
        assert_eq!(f.body.len(), 102_000);
        assert!(
            f.body.starts_with(format!("{i:03}").as_bytes()),
            "message {i} out of order"
        );
    }
}
