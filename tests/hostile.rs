//! Regression tests for what one hostile or careless client could do to the whole broker: abort
//! it, stall it, exhaust its memory, lose other users' messages, or forge frames. Each test is
//! named after the defect and failed before its fix.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::stomp::{frame, Addrs, Client, Kind, BOTH};
use stompbox::ServerHandle;

const CONNECT12: &str = "CONNECT\naccept-version:1.2\nhost:localhost\nheart-beat:0,0\n\n\0";

fn server(reactors: usize, f: impl FnOnce(&mut stompbox::Config)) -> (ServerHandle, Addrs) {
    let (h, ws) = common::server_with(|c| {
        c.reactors = reactors;
        f(c);
    });
    let tcp = h.tcp_addr().expect("tcp listener");
    (h, Addrs { ws, tcp })
}

/// A STOMP 1.2 session (no heart-beats) whose reads poll.
fn client(a: Addrs, kind: Kind) -> Client {
    let mut c = Client::open(a, kind).polling();
    let f = c.connected(CONNECT12.as_bytes());
    c.session = f.h("session").to_string();
    c.set_version(f.h("version"));
    c
}

/// SUBSCRIBE with a receipt, waited for.
fn subscribe(c: &mut Client, dest: &str, id: &str, extra: &[(&str, &str)]) {
    let r = c.next_receipt_id();
    let mut h = vec![("destination", dest), ("id", id), ("receipt", &r)];
    h.extend_from_slice(extra);
    c.send_frame("SUBSCRIBE", &h, b"");
    c.expect_receipt(&r);
}

/// Queue a sentinel on `q`, then return what a fresh consumer receives before it (the
/// sentinel excluded): whatever was left in the queue.
fn left_before_sentinel(a: Addrs, q: &str) -> Vec<Vec<u8>> {
    let mut p = client(a, Kind::Tcp);
    p.send_frame("SEND", &[("destination", q), ("receipt", "s")], b"sentinel");
    p.expect_receipt("s");
    let mut d = client(a, Kind::Tcp);
    subscribe(&mut d, q, "d", &[]);
    let mut left = Vec::new();
    loop {
        let m = d.msg();
        if m.body == b"sentinel" {
            return left;
        }
        left.push(m.body);
    }
}

/// Defect: a NUL in a header value ended the frame for every reader downstream, so a SEND with
/// `x:a\0MESSAGE\n...` reached subscribers as two frames, the second forged. Now the SEND is a
/// protocol error: ERROR (with a message), connection closed, nothing delivered.
#[test]
fn nul_in_header_cannot_forge_a_frame() {
    let (h, a) = server(2, |_| {});
    for kind in BOTH {
        let mut sub = client(a, Kind::Tcp);
        subscribe(&mut sub, "/topic/forge", "1", &[]);
        let mut evil = client(a, kind);
        let mut wire = b"SEND\ndestination:/topic/forge\nx:a\0MESSAGE\nsubscription:1\nmessage-id:forged\ndestination:/topic/forge\n\nforged body\0".to_vec();
        wire.extend_from_slice(b"\n\nreal body\0");
        evil.send(&wire);
        let e = evil.expect("ERROR");
        assert!(e.h("message").contains("NUL"), "{e:?}");
        assert!(evil.next_within(Duration::from_secs(5)).is_err(), "closed");
        // The next message the subscriber sees is a legitimate one: nothing was forged.
        let mut good = client(a, Kind::Tcp);
        good.send(&frame("SEND", &[("destination", "/topic/forge")], b"legit"));
        let m = sub.msg();
        assert_eq!(m.body, b"legit", "{m:?}");
        // A bare CR in a 1.2 header is refused the same way.
        let mut cr = client(a, kind);
        cr.send(b"SEND\ndestination:/topic/forge\nx:a\rb\n\nbody\0");
        let e = cr.expect("ERROR");
        assert!(e.h("message").contains("CR"), "{e:?}");
    }
    h.shutdown().unwrap();
}

/// The longest loop turn any reactor has had, from the metrics.
fn max_turn(h: &ServerHandle) -> f64 {
    h.metrics()
        .lines()
        .filter(|l| l.starts_with("stompbox_reactor_loop_turn_max_seconds"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, f64::max)
}

/// Defect: `SUBSCRIBE /topic/#.#.#...` (K words) then a SEND to a K-word destination stalled
/// the reactors for ~K^3 steps (5.4 s at K=1,500, 89 s at K=4,000). Consecutive `#` collapse
/// into one trie node and the walk de-duplicates in O(1): with the word limit raised out of the
/// way, K=4,000 and a pattern of 100 distinct `#` nodes publish within an ordinary turn.
#[test]
fn wildcard_pattern_cannot_stall_a_reactor() {
    let (h, a) = server(2, |c| c.session.max_pattern_words = 5000);
    let mut sub = client(a, Kind::Tcp);
    let hashes = vec!["#"; 4000].join(".");
    subscribe(&mut sub, &format!("/topic/{hashes}"), "1", &[]);
    let spaced = vec!["#.a"; 100].join(".");
    subscribe(&mut sub, &format!("/topic/{spaced}"), "2", &[]);
    let mut publ = client(a, Kind::Tcp);
    for words in [4000, 200] {
        let dest = format!("/topic/{}", vec!["a"; words].join("."));
        publ.send(&frame(
            "SEND",
            &[("destination", &dest), ("receipt", "r")],
            b"x",
        ));
        publ.expect_receipt("r");
    }
    let mut got: Vec<String> = (0..3)
        .map(|_| sub.msg().h("subscription").to_string())
        .collect();
    got.sort();
    assert_eq!(got, ["1", "1", "2"], "4,000 words match 1; 200 match both");
    let turn = max_turn(&h);
    assert!(turn < 1.0, "a reactor turn took {turn} s");
    h.shutdown().unwrap();
}

/// Wildcard patterns are bounded in words (`session.max_pattern_words`, consecutive `#` counted
/// once): a longer one is refused with an ERROR.
#[test]
fn wildcard_pattern_over_the_word_limit_is_refused() {
    let (h, a) = server(1, |c| c.session.max_pattern_words = 8);
    let mut c = client(a, Kind::Tcp);
    // 8 words after `#.#.#` collapses: accepted.
    subscribe(&mut c, "/topic/#.#.#.a.*.b.c.d.e.f", "ok", &[]);
    c.send_frame(
        "SUBSCRIBE",
        &[("destination", "/topic/a.b.c.d.e.f.g.h.*"), ("id", "2")],
        b"",
    );
    let e = c.expect("ERROR");
    assert!(e.h("message").contains("9 words"), "{e:?}");
    h.shutdown().unwrap();
}

/// Defect: COMMIT applied a transaction's frames one by one and stopped at the first bad one:
/// `SEND m1; ACK id:bogus; SEND m2; COMMIT` got an ERROR, but m1 had been delivered. Now the
/// whole transaction is checked first: nothing of it happens.
#[test]
fn commit_is_all_or_nothing() {
    let (h, a) = server(2, |_| {});
    for kind in BOTH {
        let mut sub = client(a, Kind::Tcp);
        subscribe(&mut sub, "/topic/tx", "1", &[]);
        let mut c = client(a, kind);
        c.send_frame("BEGIN", &[("transaction", "t")], b"");
        c.send_frame(
            "SEND",
            &[("destination", "/topic/tx"), ("transaction", "t")],
            b"m1",
        );
        c.send_frame("ACK", &[("id", "bogus"), ("transaction", "t")], b"");
        c.send_frame(
            "SEND",
            &[("destination", "/topic/tx"), ("transaction", "t")],
            b"m2",
        );
        c.send_frame("COMMIT", &[("transaction", "t"), ("receipt", "c")], b"");
        let e = c.expect("ERROR");
        assert!(e.h("message").contains("not committed"), "{e:?}");
        assert_eq!(e.h("receipt-id"), "c");
        // The subscriber's next message is one sent after: neither m1 nor m2 went out.
        let mut other = client(a, Kind::Tcp);
        other.send_frame("SEND", &[("destination", "/topic/tx")], b"after");
        assert_eq!(sub.msg().body, b"after");
    }
    // A queue ACK in a refused transaction is not applied either: the message is still unacked
    // and comes back (redelivered) when the session is closed.
    let mut cons = client(a, Kind::Tcp);
    subscribe(
        &mut cons,
        "/queue/txq",
        "q",
        &[("ack", "client-individual")],
    );
    let mut p = client(a, Kind::Ws);
    p.send_frame(
        "SEND",
        &[("destination", "/queue/txq"), ("receipt", "s")],
        b"job",
    );
    p.expect_receipt("s");
    let m = cons.msg();
    let id = m.h("ack").to_string();
    cons.send_frame("BEGIN", &[("transaction", "t")], b"");
    cons.send_frame("ACK", &[("id", &id), ("transaction", "t")], b"");
    cons.send_frame("ACK", &[("id", &id), ("transaction", "t")], b"");
    cons.send_frame("COMMIT", &[("transaction", "t")], b"");
    let e = cons.expect("ERROR");
    assert!(e.h("message").contains("already acked"), "{e:?}");
    let mut again = client(a, Kind::Tcp);
    subscribe(
        &mut again,
        "/queue/txq",
        "q2",
        &[("ack", "client-individual")],
    );
    let m2 = again.msg();
    assert_eq!(m2.body, b"job");
    assert_eq!(m2.h("redelivered"), "true");
    h.shutdown().unwrap();
}

/// Defect: SUBSCRIBE ack:auto to a queue, then SEND to it and UNSUBSCRIBE in one write: the
/// delivery found its consumer gone, was handed back, dispatched to the same (not yet removed)
/// consumer, handed back... recursively, until the reactor's stack overflowed and the process
/// aborted (stomp.py's CLI test suite does this). The message is neither lost nor duplicated:
/// it reaches the consumer before the UNSUBSCRIBE's RECEIPT (always when the queue lives on
/// the consumer's reactor: what the session published is routed before its UNSUBSCRIBE is
/// handled), or, when its queue's home had already dispatched it to the leaving consumer, it
/// stays queued for the next one. A topic subscription gets the SEND before its UNSUBSCRIBE.
#[test]
fn send_and_unsubscribe_in_one_write_do_not_abort() {
    for reactors in [1, 2] {
        let (h, a) = server(reactors, |_| {});
        for (n, kind) in BOTH.into_iter().enumerate() {
            let q = format!("/queue/testfile{n}");
            let mut c = client(a, kind);
            c.send_frame(
                "SUBSCRIBE",
                &[("destination", &q), ("ack", "auto"), ("id", "1")],
                b"",
            );
            let mut wire = frame(
                "SEND",
                &[("destination", &q), ("content-length", "14")],
                b"this is a test",
            );
            wire.extend(frame(
                "UNSUBSCRIBE",
                &[("destination", &q), ("id", "1"), ("receipt", "u")],
                b"",
            ));
            c.send(&wire);
            let mut got = 0;
            loop {
                let f = c.recv();
                match f.command.as_str() {
                    "MESSAGE" => got += 1,
                    "RECEIPT" => break,
                    other => panic!("{other}: {f:?}"),
                }
            }
            if reactors == 1 {
                assert_eq!(got, 1, "delivered before the UNSUBSCRIBE");
            }
            let left = left_before_sentinel(a, &q);
            assert_eq!(
                got + left.len(),
                1,
                "exactly once: {got} delivered, left {left:?} ({reactors} reactors)"
            );
            // A topic: the SEND before the UNSUBSCRIBE reaches the subscription.
            let t = format!("/topic/testfile{n}");
            subscribe(&mut c, &t, "t", &[]);
            let mut wire = frame("SEND", &[("destination", &t)], b"topic");
            wire.extend(frame("UNSUBSCRIBE", &[("id", "t"), ("receipt", "tu")], b""));
            c.send(&wire);
            assert_eq!(c.msg().body, b"topic");
            c.expect_receipt("tu");
        }
        h.shutdown().expect("no reactor died");
    }
}

/// `n` messages of `size` bytes queued on `q` (numbered in an `n` header), every 100th and the
/// last with a receipt, all receipts awaited.
fn queue_backlog(a: Addrs, q: &str, n: usize, size: usize) {
    let mut p = client(a, Kind::Tcp);
    let body = vec![b'x'; size];
    let mut receipts = Vec::new();
    for i in 0..n {
        let num = i.to_string();
        let r = format!("r{i}");
        let mut h = vec![("destination", q), ("n", num.as_str())];
        if i % 100 == 99 || i + 1 == n {
            h.push(("receipt", &r));
            receipts.push(r.clone());
        }
        p.send(&frame("SEND", &h, &body));
    }
    for r in receipts {
        p.expect_receipt(&r);
    }
}

/// Defect: a backlog larger than the outbound bound was pushed to an auto-ack consumer at
/// once: it overran `outbound.max_bytes`, got ERROR "slow consumer" after ~1/3 of it, and the
/// rest was gone for every later consumer (with `slow_consumer = "drop"`: dropped). Queue
/// deliveries are paced by the consumer's outbound room and leave the queue only once written
/// (auto) or acked: a consumer reading as fast as it can gets all of them, in order, under
/// either policy; one that stalls first loses nothing either.
#[test]
fn a_queue_backlog_is_paced_not_lost() {
    use stompbox::config::SlowConsumer;
    for policy in [SlowConsumer::Close, SlowConsumer::Drop] {
        let (h, a) = server(2, |c| {
            c.max_outbound = 64 * 1024;
            c.slow_consumer = policy;
        });
        for (k, kind) in BOTH.into_iter().enumerate() {
            let q = format!("/queue/backlog{k}");
            let n = 1000;
            queue_backlog(a, &q, n, 1024);
            let mut c = client(a, kind);
            subscribe(&mut c, &q, "1", &[("ack", "auto")]);
            if k == 1 {
                // A reader that stalls first: its socket buffers fill, then it reads.
                std::thread::sleep(Duration::from_millis(500));
            }
            for i in 0..n {
                let m = c.msg();
                assert_eq!(m.h("n"), i.to_string(), "{policy:?} {kind:?}");
                assert_eq!(m.body.len(), 1024);
            }
        }
        h.shutdown().unwrap();
    }
}

/// A consumer that leaves mid-backlog (abruptly, acking as it goes) takes nothing with it:
/// every message is acked by it or received by the next consumer, and a repeat is marked
/// redelivered. (In auto mode a message is done once written to the consumer's socket.)
#[test]
fn a_queue_backlog_survives_a_consumer_that_leaves() {
    let (h, a) = server(2, |c| c.max_outbound = 64 * 1024);
    let q = "/queue/leaver";
    let n = 1000;
    queue_backlog(a, q, n, 1024);
    let mut seen = std::collections::HashMap::<String, usize>::new();
    let mut first = client(a, Kind::Tcp);
    subscribe(&mut first, q, "1", &[("ack", "client-individual")]);
    for _ in 0..200 {
        let m = first.msg();
        *seen.entry(m.h("n").to_string()).or_default() += 1;
        first.send_frame("ACK", &[("id", m.h("ack"))], b"");
    }
    drop(first);
    let mut second = client(a, Kind::Ws);
    subscribe(&mut second, q, "2", &[]);
    while seen.len() < n {
        let m = second.msg();
        let count = seen.entry(m.h("n").to_string()).or_default();
        *count += 1;
        assert!(
            *count == 1 || m.get("redelivered") == Some("true"),
            "a repeat without redelivered: {m:?}"
        );
    }
    h.shutdown().unwrap();
}

/// Writes the frames `next(i)` makes, one after another, without reading, until the peer stops
/// taking bytes for a second or `cap` bytes went out. Returns the bytes written, the frames
/// started and the unwritten rest of the last one.
fn flood(
    s: &mut std::net::TcpStream,
    mut next: impl FnMut(usize) -> Vec<u8>,
    cap: usize,
) -> (usize, usize, Vec<u8>) {
    use std::io::Write;
    s.set_nonblocking(true).unwrap();
    let mut total = 0;
    let mut frames = 0;
    let mut cur: Vec<u8> = Vec::new();
    let mut stalled_since = None;
    while total < cap {
        if cur.is_empty() {
            cur = next(frames);
            frames += 1;
        }
        match s.write(&cur) {
            Ok(n) => {
                total += n;
                cur.drain(..n);
                stalled_since = None;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let since = *stalled_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() > Duration::from_secs(1) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("write: {e}"),
        }
    }
    s.set_nonblocking(false).unwrap();
    (total, frames, cur)
}

/// Defect: `outbound.max_bytes` bounded deliveries only. A TCP client that never read and
/// repeated `SEND receipt:<8,000 bytes>` grew the broker by 400 MB in 2 s; a WebSocket client
/// sending PINGs did the same with PONGs. Every byte queued for a connection counts: past the
/// bound the broker stops reading from it, so the flooder's writes stall after about the
/// bound plus the kernel's socket buffers, while other sessions are served as usual.
#[test]
fn replies_count_against_the_outbound_bound() {
    let (h, a) = server(2, |c| c.max_outbound = 64 * 1024);
    let cap = 64 << 20;
    // RECEIPTs over TCP, each SEND asking for its own (8,000 bytes long).
    let mut c = client(a, Kind::Tcp);
    let receipt = |i: usize| format!("{i:08}{}", "r".repeat(7992));
    let send = |i: usize| {
        frame(
            "SEND",
            &[("destination", "/topic/nobody"), ("receipt", &receipt(i))],
            b"",
        )
    };
    let (written, sends, mut rest) = flood(c.tcp(), send, cap);
    assert!(
        written < cap,
        "RECEIPT flood never stalled: {written} bytes taken"
    );
    // PONGs over WebSocket.
    let mut w = common::Raw::open(a.ws, "/ws");
    let ping = common::masked(true, 9, &[b'p'; 125]);
    let (pinged, _, _) = flood(&mut w.s, |_| ping.clone(), cap);
    assert!(
        pinged < cap,
        "PING flood never stalled: {pinged} bytes taken"
    );
    // Others are still served promptly.
    let mut s = client(a, Kind::Tcp);
    subscribe(&mut s, "/topic/still", "1", &[]);
    s.send_frame("SEND", &[("destination", "/topic/still")], b"ok");
    assert_eq!(s.msg().body, b"ok");
    // The flooder that starts reading gets every RECEIPT it asked for, in order: one per
    // SEND, the one cut short by the stall included once it is finished.
    let mut sock = c.tcp().try_clone().unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        let mut all = Vec::new();
        let _ = sock.read_to_end(&mut all);
        all
    });
    rest.extend(frame("DISCONNECT", &[("receipt", "bye")], b""));
    {
        use std::io::Write;
        let t = c.tcp();
        t.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
        t.write_all(&rest).unwrap();
    }
    let all = reader.join().unwrap();
    let text = String::from_utf8_lossy(&all);
    let ids: Vec<&str> = text
        .split("receipt-id:")
        .skip(1)
        .map(|r| r.get(..8).unwrap_or(r))
        .collect();
    let want: Vec<String> = (0..sends).map(|i| format!("{i:08}")).collect();
    assert_eq!(ids.len(), sends + 1, "one RECEIPT per SEND, then bye");
    assert!(
        ids[..sends].iter().zip(&want).all(|(a, b)| a == b),
        "in order"
    );
    assert_eq!(ids[sends], "bye\n\n\0");
    h.shutdown().unwrap();
}

/// A counter from the metrics, summed over its series.
fn counter(h: &ServerHandle, name: &str) -> f64 {
    h.metrics()
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A subscriber closed as a slow consumer (policy close) reads whole frames and then the
/// ERROR: the queue is cut back to the frame being written before the ERROR is queued
/// (`server::outq` has the byte-exact regression test of the cut).
#[test]
fn slow_consumer_sees_whole_frames_then_the_error() {
    let (h, a) = server(2, |c| {
        c.max_outbound = 256 * 1024;
        c.close_timeout = Duration::from_secs(10);
    });
    for kind in BOTH {
        let before = counter(&h, "stompbox_slow_consumer_closes_total");
        let mut sub = client(a, kind);
        subscribe(&mut sub, "/topic/firehose", "1", &[]);
        let mut p = client(a, Kind::Tcp);
        let body = vec![b'b'; 64 * 1024];
        let mut sent = 0;
        while counter(&h, "stompbox_slow_consumer_closes_total") == before {
            assert!(sent < 2000, "never closed as a slow consumer");
            p.send_frame("SEND", &[("destination", "/topic/firehose")], &body);
            sent += 1;
            // Slowly enough that the broker writes as it goes (the socket buffers fill first).
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut messages = 0;
        let last = loop {
            let f = sub.recv();
            if f.command != "MESSAGE" {
                break f;
            }
            assert_eq!(f.body.len(), body.len(), "whole frames only");
            messages += 1;
        };
        assert_eq!(last.command, "ERROR", "{last:?}");
        assert!(last.h("message").contains("slow consumer"), "{last:?}");
        assert!(messages < sent, "{messages} of {sent}");
        eprintln!("{kind:?}: {messages} of {sent} before the ERROR");
    }
    h.shutdown().unwrap();
}

/// Found by the stateful fuzzer (`tests/server_fuzz.rs`) in the backpressure above: frames of
/// a WebSocket message held back while the output was over its bound were resumed once, went
/// over the bound again without pausing, and then waited for socket input that never came (a
/// DISCONNECT among them was never handled). One message of 100 SENDs with long receipts and a
/// DISCONNECT: every RECEIPT arrives, in order, and the connection ends.
#[test]
fn held_back_frames_of_a_websocket_message_are_all_handled() {
    let (h, a) = server(1, |c| c.max_outbound = 64 * 1024);
    let mut c = client(a, Kind::Ws);
    let mut wire = Vec::new();
    for i in 0..100 {
        let r = format!("{i:03}{}", "r".repeat(7000));
        wire.extend(frame(
            "SEND",
            &[("destination", "/topic/nobody"), ("receipt", &r)],
            b"",
        ));
    }
    wire.extend(frame("DISCONNECT", &[("receipt", "bye")], b""));
    c.send(&wire);
    for i in 0..100 {
        let f = c.expect("RECEIPT");
        assert_eq!(&f.h("receipt-id")[..3], format!("{i:03}"));
    }
    c.expect_receipt("bye");
    assert!(c.next_within(Duration::from_secs(5)).is_err(), "closed");
    h.shutdown().unwrap();
}

/// Found by the stateful fuzzer: an auto-mode delivery queued on a connection whose DISCONNECT
/// was handled before the output was flushed went back to its queue (marked redelivered) even
/// though the flush after a DISCONNECT writes it: the consumer got it, and so did the next one.
/// Deliveries queued before a DISCONNECT count as written.
#[test]
fn auto_delivery_before_disconnect_is_not_redelivered() {
    let (h, a) = server(1, |_| {});
    for kind in BOTH {
        let q = format!("/queue/own-{kind:?}");
        let mut c = client(a, kind);
        subscribe(&mut c, &q, "1", &[("ack", "auto")]);
        let mut wire = frame("SEND", &[("destination", &q)], b"once");
        wire.extend(frame("DISCONNECT", &[("receipt", "bye")], b""));
        c.send(&wire);
        assert_eq!(c.msg().body, b"once");
        c.expect_receipt("bye");
        let left = left_before_sentinel(a, &q);
        assert!(left.is_empty(), "redelivered: {left:?}");
    }
    h.shutdown().unwrap();
}

/// A header line past its bound is answered at once, not after the server has read as much as
/// a whole header block may hold (a malformed frame otherwise waits for its header block to
/// arrive, so that its ERROR can carry the frame's receipt). Found reading the change that
/// added that wait: a client streaming one endless header line made the server read ~540 KB
/// before answering.
#[test]
fn an_endless_header_line_is_refused_at_its_bound() {
    let (h, a) = server(2, |_| {});
    for kind in BOTH {
        let mut c = client(a, kind);
        let mut wire = b"SEND\ndestination:/topic/x\nx-long:".to_vec();
        // Past the 8 KiB line bound, far short of a header block (66 lines of 8 KiB).
        wire.extend(std::iter::repeat_n(b'a', 16 * 1024));
        c.send(&wire);
        let f = c.expect("ERROR");
        assert!(f.h("message").contains("too long"), "{kind:?}: {f:?}");
    }
    h.shutdown().unwrap();
}
