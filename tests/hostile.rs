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
