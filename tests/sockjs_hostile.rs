//! The SockJS endpoint under hostile clients: seeded random sequences of requests over many
//! connections — receiving requests on a handful of shared session ids (stalled readers among
//! them), `xhr_send` with valid STOMP, broken and deeply nested JSON, invalid UTF-8 and lone
//! surrogates, requests cut at random points and sent in pieces, pipelined requests never
//! read, junk, aborted streams, the WebSocket transport with junk messages — with invariants:
//!
//! - no abort: every server thread is alive at the end (the handle joins them cleanly);
//! - still correct: after each seed, a fresh SockJS session gets exactly what a WebSocket
//!   client publishes, in order, and the other way;
//! - bounded: once the clients are gone and the disconnect delay has passed, no session and no
//!   connection is left (nothing leaks), and the longest reactor loop turn stays short.
//!
//! A failing seed is printed; `STOMPBOX_SOCKJS_SEED=<n>` replays it alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/ops.rs"]
mod ops;

use common::stomp::{frame, parse_frame, Client, Esc};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use stompbox::sockjs::SockjsConfig;

/// xorshift64*: the whole run follows from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    /// Up to `max` random bytes.
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max);
        (0..n).map(|_| self.next() as u8).collect()
    }
}

const IDS: [&str; 6] = ["s0", "s1", "s2", "s3", "s4", "s5"];

fn stomp(cmd: &str, headers: &[(&str, &str)], body: &str) -> String {
    String::from_utf8(frame(cmd, headers, body.as_bytes())).unwrap()
}

/// A random payload for `xhr_send`: mostly plausible, often not.
fn payload(r: &mut Rng) -> Vec<u8> {
    let frames = [
        stomp("CONNECT", &[("accept-version", "1.2"), ("host", "/")], ""),
        stomp("SUBSCRIBE", &[("id", "1"), ("destination", "/topic/h")], ""),
        stomp(
            "SUBSCRIBE",
            &[("id", "2"), ("destination", "/queue/h"), ("ack", "client")],
            "",
        ),
        stomp("SEND", &[("destination", "/topic/h")], "x"),
        stomp(
            "SEND",
            &[("destination", "/queue/h"), ("receipt", "r")],
            "q",
        ),
        stomp("UNSUBSCRIBE", &[("id", "1")], ""),
        stomp("DISCONNECT", &[("receipt", "bye")], ""),
        "\n".to_string(),
        "GARBAGE\n\n\0".to_string(),
    ];
    match r.below(10) {
        0..=4 => {
            let n = 1 + r.below(4);
            let v: Vec<&String> = (0..n).map(|_| &frames[r.below(frames.len())]).collect();
            serde_json::to_vec(&v).unwrap()
        }
        5 => format!("[{}]", "[".repeat(r.below(20_000))).into_bytes(),
        6 => {
            let mut b = b"[\"".to_vec();
            b.extend(r.bytes(200));
            b.extend_from_slice(b"\"]");
            b
        }
        7 => br#"["\ud800\udbff\u0000\u2028", "\uZZZZ"]"#.to_vec(),
        8 => {
            // A SEND split across messages, and a frame larger than a message.
            let big = stomp(
                "SEND",
                &[("destination", "/topic/h")],
                &"y".repeat(r.below(70_000)),
            );
            let (a, b) = big.split_at(big.len() / 2);
            serde_json::to_vec(&[a, b]).unwrap()
        }
        _ => r.bytes(64),
    }
}

/// What the driver holds open.
struct Open {
    s: TcpStream,
    /// Read it (a stalled reader never is).
    reads: bool,
}

fn connect(addr: SocketAddr) -> Option<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(5))).ok()?;
    s.set_write_timeout(Some(Duration::from_millis(200))).ok()?;
    Some(s)
}

fn request(method: &str, path: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut v = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n{extra}\r\n",
        body.len()
    )
    .into_bytes();
    v.extend_from_slice(body);
    v
}

/// Write `bytes` in random pieces (a read split for the server).
fn write_split(s: &mut TcpStream, bytes: &[u8], r: &mut Rng) {
    let mut at = 0;
    while at < bytes.len() {
        let n = (1 + r.below(bytes.len() - at)).min(bytes.len() - at);
        if s.write_all(&bytes[at..at + n]).is_err() {
            return;
        }
        at += n;
        if r.chance(20) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn drain(s: &mut TcpStream) {
    let mut buf = [0u8; 65536];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
    }
}

fn step(addr: SocketAddr, r: &mut Rng, open: &mut Vec<Open>) {
    let id = if r.chance(90) {
        IDS[r.below(IDS.len())].to_string()
    } else {
        format!("x{}", r.next())
    };
    match r.below(11) {
        0 | 1 => {
            let transport = ["xhr", "xhr_streaming", "eventsource", "htmlfile?c=cb"][r.below(4)];
            let method = if transport.starts_with("xhr") {
                "POST"
            } else {
                "GET"
            };
            if let Some(mut s) = connect(addr) {
                let req = request(method, &format!("/sockjs/000/{id}/{transport}"), "", b"");
                write_split(&mut s, &req, r);
                open.push(Open {
                    s,
                    reads: r.chance(70),
                });
            }
        }
        2..=4 => {
            if let Some(mut s) = connect(addr) {
                let body = payload(r);
                let req = request("POST", &format!("/sockjs/000/{id}/xhr_send"), "", &body);
                write_split(&mut s, &req, r);
                open.push(Open { s, reads: true });
            }
        }
        5 => {
            // Pipelined requests nobody reads.
            if let Some(mut s) = connect(addr) {
                let one = request("GET", "/sockjs/info", "", b"");
                let n = r.below(300);
                let _ = s.write_all(&one.repeat(n));
                open.push(Open { s, reads: false });
            }
        }
        6 => {
            // A request cut short, junk, or an oversized head; then hold or leave.
            if let Some(mut s) = connect(addr) {
                let junk: Vec<u8> = match r.below(4) {
                    0 => request("POST", &format!("/sockjs/000/{id}/xhr_send"), "", b"[\"abc")
                        [..30]
                        .to_vec(),
                    1 => r.bytes(2000),
                    2 => format!("GET /sockjs/{} HTTP/1.1\r\n", "a".repeat(20_000)).into_bytes(),
                    _ => request(
                        "POST",
                        "/sockjs/000/a/xhr_send",
                        "Content-Length: 99999999\r\n",
                        b"",
                    ),
                };
                let _ = s.write_all(&junk);
                if r.chance(50) {
                    open.push(Open {
                        s,
                        reads: r.chance(50),
                    });
                }
            }
        }
        7 => {
            // The WebSocket transport with junk or STOMP in its messages.
            let url = format!("ws://{addr}/sockjs/000/{id}/websocket");
            let sock = connect(addr);
            if let Some(s) = &sock {
                let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
            }
            let handshake = sock.map(|s| tungstenite::client(url, s).map_err(|_| ()));
            if let Some(Ok((mut ws, _))) = handshake {
                let _ = ws
                    .get_mut()
                    .set_read_timeout(Some(Duration::from_millis(5)));
                for _ in 0..r.below(4) {
                    let p = payload(r);
                    let m = match String::from_utf8(p) {
                        Ok(t) => tungstenite::Message::text(t),
                        Err(e) => tungstenite::Message::binary(e.into_bytes()),
                    };
                    let _ = ws.send(m);
                }
                let _ = ws.read();
                if r.chance(50) {
                    let _ = ws.close(None);
                }
            }
        }
        8 => {
            if !open.is_empty() {
                open.swap_remove(r.below(open.len()));
            }
        }
        _ => {
            // Read a few of the readers.
            for _ in 0..4 {
                if open.is_empty() {
                    break;
                }
                let i = r.below(open.len());
                if open[i].reads {
                    drain(&mut open[i].s);
                }
            }
        }
    }
}

/// A fresh SockJS session and a WebSocket client exchange messages exactly, in order.
fn canary(addr: SocketAddr, tag: &str) {
    let post = |path: &str, body: &[u8]| -> (u16, Vec<u8>) {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&request("POST", path, "Connection: close\r\n", body))
            .unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).unwrap();
        let p = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let status = std::str::from_utf8(&all[9..12]).unwrap().parse().unwrap();
        (status, all[p + 4..].to_vec())
    };
    let base = format!("/sockjs/000/canary-{tag}");
    assert_eq!(post(&format!("{base}/xhr"), b"").1, b"o\n");
    let dest = format!("/topic/canary.{tag}");
    let frames = [
        stomp("CONNECT", &[("accept-version", "1.2"), ("host", "/")], ""),
        stomp(
            "SUBSCRIBE",
            &[("id", "c"), ("destination", &dest), ("receipt", "ok")],
            "",
        ),
    ];
    assert_eq!(
        post(
            &format!("{base}/xhr_send"),
            &serde_json::to_vec(&frames).unwrap()
        )
        .0,
        204
    );
    let mut got = Vec::new();
    let mut ws: Option<Client> = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut sent = false;
    while got.len() < 22 {
        assert!(Instant::now() < deadline, "canary {tag}: got {got:?}");
        let (status, body) = post(&format!("{base}/xhr"), b"");
        assert_eq!(status, 200);
        let text = String::from_utf8(body).unwrap();
        if let Some(a) = text.trim_end().strip_prefix('a') {
            let msgs: Vec<String> = serde_json::from_str(a).unwrap();
            for m in msgs.iter().filter(|m| m.as_str() != "\n") {
                let f = parse_frame(m.as_bytes(), Esc::V12).unwrap().0;
                got.push(format!("{} {}", f.command, f.text()));
            }
        }
        if got.len() >= 2 && !sent {
            sent = true;
            let mut c = Client::connect_ws(addr);
            c.connected(&frame(
                "CONNECT",
                &[("accept-version", "1.2"), ("host", "/")],
                b"",
            ));
            for i in 0..20 {
                c.send_frame(
                    "SEND",
                    &[("destination", &dest)],
                    format!("m{i}").as_bytes(),
                );
            }
            ws = Some(c);
        }
    }
    let want: Vec<String> = ["CONNECTED ", "RECEIPT "]
        .iter()
        .map(|s| s.to_string())
        .chain((0..20).map(|i| format!("MESSAGE m{i}")))
        .collect();
    assert_eq!(got, want, "canary {tag}");
    drop(ws);
}

#[test]
fn hostile_sockjs_clients_cannot_abort_stall_or_bloat_the_server() {
    let _g = ops::exclusive();
    let (h, addr) = common::server_with(|c| {
        c.reactors = 2;
        c.max_outbound = 256 * 1024;
        c.sockjs = Some(SockjsConfig {
            disconnect_delay: Duration::from_millis(500),
            heartbeat: Duration::from_millis(300),
            response_limit: 8 * 1024,
            max_body: 64 * 1024,
            ..SockjsConfig::default()
        });
    });
    let seeds: Vec<u64> = match std::env::var("STOMPBOX_SOCKJS_SEED") {
        Ok(s) => vec![s.parse().unwrap()],
        Err(_) => {
            let base = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64;
            (0..4)
                .map(|i| base.wrapping_add(i * 0x9E37_79B9) | 1)
                .collect()
        }
    };
    for seed in seeds {
        eprintln!("seed {seed} (STOMPBOX_SOCKJS_SEED={seed} to replay)");
        let mut r = Rng(seed);
        let mut open = Vec::new();
        let t = Instant::now();
        let mut steps = 0;
        for _ in 0..800 {
            steps += 1;
            step(addr, &mut r, &mut open);
            if open.len() > 96 {
                open.remove(0);
            }
            if t.elapsed() > Duration::from_secs(6) {
                break;
            }
        }
        eprintln!("  {steps} steps in {:?}", t.elapsed());
        canary(addr, &format!("{seed}"));
        open.clear();
    }
    // Everyone gone: after the disconnect delay (and the close timeout) nothing is left.
    let m = ops::settle(&h, |m| {
        m.get("stompbox_connections{transport=\"sockjs\"}") == 0.0
            && m.get("stompbox_connections{transport=\"ws\"}") == 0.0
    });
    assert_eq!(
        m.get("stompbox_connections{transport=\"sockjs\"}"),
        0.0,
        "sessions leaked"
    );
    assert_eq!(
        m.get("stompbox_connections{transport=\"ws\"}"),
        0.0,
        "connections leaked"
    );
    for i in 0..2 {
        let turn = m.get(&format!(
            "stompbox_reactor_loop_turn_max_seconds{{reactor=\"{i}\"}}"
        ));
        assert!(turn < 0.5, "reactor {i}: a loop turn took {turn} s");
    }
    h.shutdown()
        .expect("every server thread alive and ending cleanly");
}
