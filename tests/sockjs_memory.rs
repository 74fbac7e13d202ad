//! What an idle, subscribed SockJS xhr-streaming session holds on the heap: every allocation of
//! every thread is counted while 1,000 sessions open a stream, CONNECT and SUBSCRIBE through
//! `xhr_send` on a running in-process broker (one reactor), and what is still held afterwards
//! is divided by the sessions (as `tests/session_memory.rs` does for WebSocket sessions). One
//! test in this file, so nothing else allocates meanwhile; the client reads into stack buffers.
//!
//! A session is two slab entries (the socketless session and its attached receiving request)
//! besides what is counted here: added by size.
#![allow(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/counting.rs"]
mod counting;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const N: usize = 1_000;

/// Read from `s` into `buf` (from `len`) until `needle` is in it.
fn read_until(s: &mut TcpStream, buf: &mut [u8], mut len: usize, needle: &[u8]) -> usize {
    while !buf[..len].windows(needle.len()).any(|w| w == needle) {
        let n = s.read(&mut buf[len..]).unwrap();
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&buf[..len]));
        len += n;
        assert!(
            len < buf.len(),
            "{:?}",
            String::from_utf8_lossy(&buf[..len])
        );
    }
    len
}

/// An xhr-streaming session `i` (id `m<i>`), connected and subscribed; its stream is returned.
fn session(addr: SocketAddr, i: usize) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = [0u8; 512];
    let mut w = std::io::Cursor::new(&mut req[..]);
    write!(
        w,
        "POST /sockjs/000/m{i}/xhr_streaming HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let n = w.position() as usize;
    s.write_all(&req[..n]).unwrap();
    let mut got = [0u8; 4096];
    read_until(&mut s, &mut got, 0, b"\r\no\n\r\n");
    let mut send = TcpStream::connect(addr).unwrap();
    send.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let body = r#"["CONNECT\naccept-version:1.2\nhost:/\n\n\u0000","SUBSCRIBE\nid:0\ndestination:/topic/chat/room/0001\nreceipt:r\n\n\u0000"]"#;
    let mut w = std::io::Cursor::new(&mut req[..]);
    write!(
        w,
        "POST /sockjs/000/m{i}/xhr_send HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let n = w.position() as usize;
    send.write_all(&req[..n]).unwrap();
    let mut answer = [0u8; 1024];
    read_until(&mut send, &mut answer, 0, b"204 No Content");
    read_until(&mut s, &mut got, 0, b"receipt-id:r");
    s
}

fn settle() -> (isize, isize) {
    std::thread::sleep(Duration::from_millis(400));
    counting::live_heap()
}

#[test]
fn an_idle_xhr_streaming_session_holds_little() {
    let h = stompbox::start(stompbox::Config {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        tcp_listen: None,
        reactors: 1,
        max_connections_per_ip: 0,
        close_timeout: Duration::from_millis(100),
        ..stompbox::Config::default()
    })
    .expect("server starts");
    let addr = h.ws_addr().unwrap();
    let mut socks: Vec<TcpStream> = Vec::with_capacity(2 * N);
    // Warm up: the slab, pools and maps grow, then the sessions go (their streams end, and
    // the disconnect delay passes).
    for i in 0..N {
        socks.push(session(addr, N + i));
    }
    socks.clear();
    std::thread::sleep(Duration::from_millis(6_000));
    let (b0, bytes0) = settle();
    for i in 0..N {
        socks.push(session(addr, i));
    }
    let (b1, bytes1) = settle();
    drop(socks);
    h.shutdown().unwrap();
    let blocks = (b1 - b0) as f64 / N as f64;
    let bytes = (bytes1 - bytes0) as f64 / N as f64;
    let slot = stompbox::server::testing::slot_size();
    println!(
        "xhr-streaming session: {blocks:.2} blocks, {bytes:.0} heap bytes, {:.0} B with its two slab entries",
        bytes + 2.0 * slot as f64
    );
    // No buffer stays with an idle session or its receiving request (a read buffer kept by
    // the receiver was 16 KiB a session).
    assert!(bytes < 700.0, "{bytes} heap bytes per session");
    assert!(blocks < 9.5, "{blocks} blocks per session");
}
