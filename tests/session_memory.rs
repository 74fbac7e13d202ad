//! What an idle, subscribed WebSocket session holds on the heap (issue 21): every allocation of
//! every thread is counted while 2,000 sessions connect and subscribe to a running in-process
//! broker (one reactor), and the blocks and bytes still held afterwards are divided by the
//! sessions. This file holds one test, so nothing else allocates in the process meanwhile; its
//! client sockets read into stack buffers and hold no heap.
//!
//! The broker is warmed first: 2,000 sessions connect, subscribe and leave, so its slab, its
//! pools and its maps have grown to their size and the measured sessions only take what each
//! one holds. The slab entry (`Slot`, allocated up front by the slab's growth) and, for a
//! shared destination, the subscriber's entry in the destination's list are added by size.
#![allow(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/counting.rs"]
mod counting;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const N: usize = 2_000;
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// A masked client text frame, written into `out` (no heap: the test's sockets hold none).
fn masked(out: &mut [u8], payload: &[u8]) -> usize {
    let mask = [1u8, 2, 3, 4];
    out[0] = 0x81;
    let mut n = 2;
    if payload.len() < 126 {
        out[1] = 0x80 | payload.len() as u8;
    } else {
        out[1] = 0x80 | 126;
        out[2..4].copy_from_slice(&(payload.len() as u16).to_be_bytes());
        n = 4;
    }
    out[n..n + 4].copy_from_slice(&mask);
    n += 4;
    for (i, b) in payload.iter().enumerate() {
        out[n + i] = b ^ mask[i % 4];
    }
    n + payload.len()
}

/// Upgrade, CONNECT, and `subs` SUBSCRIBEs (ids `sub-0`.., destinations `dest` then
/// `dest-1`..; the last one with a receipt); returns once the RECEIPT is in.
fn session_with(addr: SocketAddr, dest: &str, subs: usize) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 1024];
    let mut w = std::io::Cursor::new(&mut buf[..]);
    write!(
        w,
        "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: v12.stomp\r\n\r\n"
    )
    .unwrap();
    let n = w.position() as usize;
    s.write_all(&buf[..n]).unwrap();
    let mut frames = [0u8; 512];
    let at = masked(&mut frames, b"CONNECT\naccept-version:1.2\nhost:/\n\n\0");
    s.write_all(&frames[..at]).unwrap();
    for j in 0..subs {
        let mut stomp = [0u8; 256];
        let mut w = std::io::Cursor::new(&mut stomp[..]);
        let receipt = if j + 1 == subs { "receipt:r\n" } else { "" };
        if j == 0 {
            write!(w, "SUBSCRIBE\nid:sub-0\ndestination:{dest}\n{receipt}\n\0").unwrap();
        } else {
            write!(
                w,
                "SUBSCRIBE\nid:sub-{j}\ndestination:{dest}-{j}\n{receipt}\n\0"
            )
            .unwrap();
        }
        let k = w.position() as usize;
        let at = masked(&mut frames, &stomp[..k]);
        s.write_all(&frames[..at]).unwrap();
    }
    // Read until the RECEIPT: its frame is the last one the server sends.
    let mut got = [0u8; 2048];
    let mut len = 0;
    while !got[..len].windows(13).any(|w| w == b"receipt-id:r\n") {
        let n = s.read(&mut got[len..]).unwrap();
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&got[..len]));
        len += n;
        assert!(len < got.len());
    }
    s
}

fn settle() -> (isize, isize) {
    std::thread::sleep(Duration::from_millis(300));
    counting::live_heap()
}

/// Heap blocks and bytes per session for `dests(i)` as session i's destination.
fn per_session(dests: impl Fn(usize) -> String) -> (f64, f64) {
    per_session_with(N, 1, dests)
}

/// [`per_session`] for `n` sessions of `subs` subscriptions each.
fn per_session_with(n: usize, subs: usize, dests: impl Fn(usize) -> String) -> (f64, f64) {
    let h = stompbox::start(stompbox::Config {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        tcp_listen: None,
        reactors: 1,
        max_connections_per_ip: 0,
        ..stompbox::Config::default()
    })
    .expect("server starts");
    let addr = h.ws_addr().unwrap();
    let mut socks: Vec<TcpStream> = Vec::with_capacity(2 * n);
    // Warm up: the slab, pools and maps grow, then the sessions go.
    for i in 0..n {
        socks.push(session_with(addr, &dests(n + i), subs));
    }
    socks.clear();
    std::thread::sleep(Duration::from_millis(500));
    let (b0, bytes0) = settle();
    for i in 0..n {
        socks.push(session_with(addr, &dests(i), subs));
    }
    let (b1, bytes1) = settle();
    drop(socks);
    h.shutdown().unwrap();
    (
        (b1 - b0) as f64 / n as f64,
        (bytes1 - bytes0) as f64 / n as f64,
    )
}

#[test]
fn an_idle_subscribed_session_holds_few_blocks() {
    let slot = stompbox::server::testing::slot_size();
    let subscriber = std::mem::size_of::<stompbox::router::Subscriber>();
    let (shared_blocks, shared_bytes) = per_session(|_| "/topic/chat/room/0001".to_string());
    let (own_blocks, own_bytes) = per_session(|i| format!("/topic/chat/room/{:04}", i % 10_000));
    // 100 subscriptions a session, on destinations shared by every session: per subscription.
    let (many_blocks, many_bytes) =
        per_session_with(200, 100, |_| "/topic/chat/room/0001".to_string());
    let per_sub_blocks = (many_blocks - shared_blocks) / 99.0;
    let per_sub_bytes = (many_bytes - shared_bytes) / 99.0 + subscriber as f64;
    println!("slab entry {slot} B, subscriber entry {subscriber} B");
    println!(
        "100 subscriptions a session: {per_sub_blocks:.2} blocks, {per_sub_bytes:.0} B per extra subscription (heap + subscriber entry)"
    );
    println!(
        "shared destination: {shared_blocks:.2} blocks, {:.0} B per session (heap {shared_bytes:.0} + slot + subscriber entry)",
        shared_bytes + (slot + subscriber) as f64
    );
    println!(
        "own destination: {own_blocks:.2} blocks, {:.0} B per session (heap {own_bytes:.0} + slot)",
        own_bytes + slot as f64
    );
    // Issue 21's figures (BENCHMARKS.md, "Memory per session"): 6 blocks per session on a
    // shared destination (WebSocket codec, STOMP state, the subscription list, its id and
    // destination, the router's MESSAGE prefix), 4 more for a destination of its own (its name shared by the router and the directory); 9 and 13
    // before. A regression past them fails here.
    assert!(shared_blocks < 6.5, "{shared_blocks} blocks per session");
    assert!(own_blocks < 10.5, "{own_blocks} blocks per session");
    assert!(
        shared_bytes < 460.0,
        "{shared_bytes} heap bytes per session"
    );
    // mio's TcpStream carries its selector's id in debug builds (12 bytes more than release).
    let slot_limit = if cfg!(debug_assertions) { 328 } else { 320 };
    assert!(slot <= slot_limit, "slab entry {slot} B");
    assert!(
        per_sub_blocks < 3.5,
        "{per_sub_blocks} blocks per subscription"
    );
    assert!(subscriber <= 32, "subscriber entry {subscriber} B");
}
