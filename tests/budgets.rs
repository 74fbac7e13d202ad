//! Budgets in bytes, not counts (issue 13): what one client can make the broker hold is
//! bounded in bytes per transaction, per queue and in the number of queues, and a frame larger
//! than the limits is refused before it is buffered; and each limit is what it says (issue 14:
//! `stomp.max_headers`). Each test failed before its bound
//! existed. (The broker-wide memory high-water mark needs the binary's counting allocator: it
//! is tested in `memory.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::stomp::{Addrs, Client, Kind, BOTH};
use stompbox::ServerHandle;

const CONNECT12: &str = "CONNECT\naccept-version:1.2\nhost:localhost\nheart-beat:0,0\n\n\0";

fn server(f: impl FnOnce(&mut stompbox::Config)) -> (ServerHandle, Addrs) {
    let (h, ws) = common::server_with(|c| {
        c.reactors = 2;
        f(c);
    });
    let tcp = h.tcp_addr().expect("tcp listener");
    (h, Addrs { ws, tcp })
}

fn client(a: Addrs, kind: Kind) -> Client {
    let mut c = Client::open(a, kind);
    let f = c.connected(CONNECT12.as_bytes());
    c.set_version(f.h("version"));
    c
}

fn send(c: &mut Client, dest: &str, body: &[u8], extra: &[(&str, &str)]) -> String {
    let r = c.next_receipt_id();
    let mut h = vec![("destination", dest), ("receipt", &r)];
    h.extend_from_slice(extra);
    c.send_frame("SEND", &h, body);
    r
}

/// An ERROR naming `what`, then the connection closes.
fn expect_refusal(c: &mut Client, what: &str) {
    let f = c.expect("ERROR");
    assert!(f.h("message").contains(what), "{f:?}");
    assert!(c.next_frame().is_err(), "closed after the ERROR");
}

/// One open transaction held 300 x 1 MB before: now at most `session.max_tx_bytes`.
#[test]
fn a_transaction_holds_at_most_its_bytes() {
    let (h, a) = server(|c| c.session.max_tx_bytes = 64 * 1024);
    for kind in BOTH {
        let mut c = client(a, kind);
        c.send_frame("BEGIN", &[("transaction", "t"), ("receipt", "b")], b"");
        c.expect_receipt("b");
        let body = vec![b'x'; 40 * 1024];
        let r = send(&mut c, "/topic/tx", &body, &[("transaction", "t")]);
        c.expect_receipt(&r);
        send(&mut c, "/topic/tx", &body, &[("transaction", "t")]);
        expect_refusal(&mut c, "transaction 't' would hold more than 65536 bytes");
    }
    h.shutdown().unwrap();
}

/// One queue held 300 x 1 MB before: now at most `queues.max_bytes` waiting, under either
/// overflow policy.
#[test]
fn a_queue_holds_at_most_its_bytes() {
    let (h, a) = server(|c| c.queues.max_bytes = 100 * 1024);
    let body = vec![b'q'; 30 * 1024];
    for kind in BOTH {
        let q = format!("/queue/bytes-{kind:?}");
        let mut p = client(a, kind);
        for _ in 0..3 {
            let r = send(&mut p, &q, &body, &[]);
            p.expect_receipt(&r);
        }
        // A fourth 30 KiB message would make 120 KiB waiting.
        send(&mut p, &q, &body, &[]);
        expect_refusal(&mut p, "queue full");
        // The three are still there, whole.
        let mut c = client(a, kind);
        let r = c.next_receipt_id();
        c.send_frame(
            "SUBSCRIBE",
            &[("destination", &q), ("id", "1"), ("receipt", &r)],
            b"",
        );
        c.expect_receipt(&r);
        for _ in 0..3 {
            assert_eq!(c.msg().body.len(), body.len());
        }
    }
    h.shutdown().unwrap();
    let (h, a) = server(|c| {
        c.queues.max_bytes = 100 * 1024;
        c.queues.overflow = stompbox::router::Overflow::DropOldest;
    });
    let mut p = client(a, Kind::Tcp);
    for i in 0..5u8 {
        let r = send(&mut p, "/queue/drop", &vec![b'0' + i; 30 * 1024], &[]);
        p.expect_receipt(&r);
    }
    let mut c = client(a, Kind::Tcp);
    c.send_frame(
        "SUBSCRIBE",
        &[("destination", "/queue/drop"), ("id", "1")],
        b"",
    );
    let kept: Vec<u8> = (0..3).map(|_| c.msg().body[0]).collect();
    assert_eq!(
        kept, b"234",
        "the oldest two were dropped to stay within 100 KiB"
    );
    h.shutdown().unwrap();
}

/// 100,000 distinct queues added 47 MB before: now a SEND that would make one queue more than
/// `queues.max_queues` is refused; consumed (forgotten) queues make room again.
#[test]
fn the_number_of_queues_is_bounded() {
    let (h, a) = server(|c| c.queues.max_queues = 10);
    let mut p = client(a, Kind::Tcp);
    for i in 0..10 {
        let r = send(&mut p, &format!("/queue/many-{i}"), b"x", &[]);
        p.expect_receipt(&r);
    }
    send(&mut p, "/queue/many-10", b"x", &[]);
    expect_refusal(&mut p, "too many queues");
    // Existing queues still take messages.
    let mut p = client(a, Kind::Ws);
    let r = send(&mut p, "/queue/many-3", b"y", &[]);
    p.expect_receipt(&r);
    // Draining one makes room for another.
    let mut c = client(a, Kind::Tcp);
    c.send_frame(
        "SUBSCRIBE",
        &[("destination", "/queue/many-0"), ("id", "1")],
        b"",
    );
    c.msg();
    c.send_frame("UNSUBSCRIBE", &[("id", "1"), ("receipt", "u")], b"");
    c.expect_receipt("u");
    let ok = (0..50).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut p = client(a, Kind::Tcp);
        let r = send(&mut p, "/queue/many-new", b"z", &[]);
        p.next_frame()
            .is_ok_and(|f| f.get("receipt-id") == Some(r.as_str()))
    });
    assert!(ok, "a forgotten queue's place is free again");
    h.shutdown().unwrap();
}

/// A frame larger than the limits is refused when its header says so, before its body is
/// buffered: 20 half-sent 16 MiB WebSocket frames held 333 MB before (16 MiB was the default);
/// the default now is 5 MiB, and a frame announcing more gets ERROR and close 1009 at once.
#[test]
fn an_oversized_websocket_frame_is_refused_before_it_is_buffered() {
    let (h, a) = server(|_| {});
    let defaults = stompbox::Config::default();
    assert_eq!(defaults.max_frame_size, 5 << 20);
    assert_eq!(defaults.stomp_limits.max_body, 4 << 20);
    let mut ws = common::Raw::open(a.ws, "/ws");
    // A binary frame header announcing 6 MiB, masked, and only a few bytes of it.
    let mut head = vec![0x82u8, 0x80 | 127];
    head.extend_from_slice(&(6u64 << 20).to_be_bytes());
    head.extend_from_slice(&[1, 2, 3, 4]);
    head.extend_from_slice(b"SEND\n");
    ws.send(&head);
    let (_, _, err) = ws.frame().expect("an ERROR first");
    assert!(
        err.starts_with(b"ERROR\nmessage:frame too big\n"),
        "{err:?}"
    );
    ws.expect_close(1009);
    h.shutdown().unwrap();
}

/// `stomp.max_headers` is what it says (issue 14): 64 headers pass at the default of 64, the
/// 65th is refused, and a configuration above the parser's 64 slots is refused at start
/// (before, up to 4096 was accepted and never honoured).
#[test]
fn max_headers_is_the_limit_it_says() {
    let mut over = stompbox::Config {
        listen: None,
        tcp_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..Default::default()
    };
    over.stomp_limits.max_headers = 100;
    let err = stompbox::start(over).err().expect("refused");
    assert!(err.to_string().contains("max_headers"), "{err}");

    let (h, a) = server(|c| c.stomp_limits.max_headers = 64);
    let names: Vec<String> = (0..64).map(|i| format!("h{i}")).collect();
    for (n, ok) in [(62, true), (63, false)] {
        let mut c = client(a, Kind::Tcp);
        let mut hs: Vec<(&str, &str)> = vec![("destination", "/topic/many-headers")];
        hs.extend(names.iter().take(n).map(|k| (k.as_str(), "v")));
        hs.push(("receipt", "r"));
        // n custom headers + destination + receipt: 64, then 65.
        c.send_frame("SEND", &hs, b"");
        if ok {
            c.expect_receipt("r");
        } else {
            expect_refusal(&mut c, "too many headers");
        }
    }
    h.shutdown().unwrap();
}
