//! Queue dispatch end to end (round-robin, prefetch, waiting messages, bounds): the real server
//! with 2-4 reactors, driven by raw TCP sockets (hand-made STOMP bytes, read back with the small
//! frame reader in `common/stomp.rs`, deliberately not stompbox's parser) and `tungstenite` over
//! WebSocket (`/ws`, subprotocol `v12.stomp`).
//!
//! Reactor placement is deterministic: the acceptor hands connections to reactors in turn, and
//! the server names sessions `s<reactor>-<n>`, so [`Srv::client_on`] can put a client on the
//! reactor a test needs. A queue lives on one "home" reactor ([`Srv::home`]); tests that depend
//! on the order in which two clients' frames reach the home keep those clients off it, so both
//! frames travel through the home's (FIFO) mailbox.
//!
//! Every read is bounded (sockets poll every [`POLL`]; a frame that does not come within
//! [`TIMEOUT`] fails the test). "Nothing else arrived" is proved with a sentinel sent after the
//! thing that must not arrive (a queue is FIFO: anything left over would come first), or by
//! counting (each queue message goes to exactly one consumer), never by waiting for silence.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/queues.rs"]
mod queues;

use queues::*;

// ---------------------------------------------------------------------------------------------
// 2. Dispatch: round-robin, prefetch, waiting messages, bounds.

#[test]
fn round_robin_gives_each_consumer_on_each_reactor_an_equal_share() {
    let srv = server(4, |_| {});
    let q = "/queue/rr";
    let home = srv.home(q);
    let mut cons: Vec<(Client, &str)> = Vec::new();
    for r in 0..4 {
        let kind = if r % 2 == 0 { Kind::Tcp } else { Kind::Ws };
        let mut c = srv.client_on(kind, r);
        let mode = if r < 2 { "auto" } else { "client-individual" };
        c.subscribe(q, "rr", &[("ack", mode), ("prefetch-count", "1000")]);
        cons.push((c, mode));
    }
    // The producer is off the home reactor, so its SENDs reach the home after every
    // AddConsumer (one FIFO mailbox).
    let mut p = srv.client_on(Kind::Tcp, home + 1);
    for n in 1..=400 {
        p.send_n(q, n, &[]);
    }
    let mut residues = HashSet::new();
    for (c, mode) in &mut cons {
        let got: Vec<u32> = (0..100)
            .map(|_| {
                let f = c.msg();
                check_queue_message(&f, "1.2", *mode != "auto");
                assert!(!f.redelivered(), "{f:?}");
                if *mode != "auto" {
                    c.ack(&f);
                }
                f.n()
            })
            .collect();
        // In order, and exactly every 4th message.
        assert!(
            got.windows(2).all(|w| w[1] == w[0] + 4),
            "reactor {}: {got:?}",
            c.reactor()
        );
        residues.insert(got[0] % 4);
    }
    assert_eq!(residues.len(), 4, "the four consumers took turns");
    // 400 messages, 100 each: nobody got more. And the rotation goes on.
    for n in 401..=404 {
        p.send_n(q, n, &[]);
    }
    let mut next: Vec<u32> = cons.iter_mut().map(|(c, _)| c.msg().n()).collect();
    next.sort_unstable();
    assert_eq!(next, vec![401, 402, 403, 404]);
    drop((cons, p));
    srv.stop();
}

#[test]
fn prefetch_count_caps_unacked_messages_in_flight() {
    let srv = server(3, |c| c.session.default_prefetch = 3);
    let q = "/queue/prefetch";
    let home = srv.home(q);
    let mut a = srv.client_on(Kind::Tcp, home + 1);
    a.subscribe(
        q,
        "a",
        &[("ack", "client-individual"), ("prefetch-count", "2")],
    );
    let mut p = srv.client_on(Kind::Ws, home + 2);
    for n in 1..=6 {
        p.send_n(q, n, &[]);
    }
    p.sync();
    let m1 = a.msg_n(q, 1);
    let m2 = a.msg_n(q, 2);
    // One ACK frees one slot: exactly one more.
    a.ack_sync(&m1);
    let m3 = a.msg_n(q, 3);
    // A second consumer takes everything A may not have: 4, 5, 6. Had A been sent more than
    // its 2 unacked, B would not get all three.
    let mut b = srv.client_on(Kind::Tcp, home + 1);
    b.subscribe(q, "b", &[("ack", "auto")]);
    for n in 4..=6 {
        b.msg_n(q, n);
    }
    // A still holds 2: the next message goes to B.
    p.send_n(q, 7, &[]);
    b.msg_n(q, 7);
    // Once A acks both, it takes messages again.
    a.ack(&m2);
    a.ack_sync(&m3);
    b.unsubscribe("b");
    p.send_n(q, 8, &[]);
    a.msg_n(q, 8);

    // Without prefetch-count: the configured default (3 here).
    let q2 = "/queue/prefetch-default";
    let home2 = srv.home(q2);
    let mut c = srv.client_on(Kind::Ws, home2 + 1);
    c.subscribe(q2, "c", &[("ack", "client")]);
    let mut p = srv.client_on(Kind::Tcp, home2 + 2);
    for n in 1..=5 {
        p.send_n(q2, n, &[]);
    }
    let got: Vec<Frame> = (1..=3).map(|n| c.msg_n(q2, n)).collect();
    let mut d = srv.client_on(Kind::Tcp, home2 + 1);
    d.subscribe(q2, "d", &[]);
    d.msg_n(q2, 4);
    d.msg_n(q2, 5);
    // A cumulative ACK of the third frees all three.
    c.ack_sync(&got[2]);
    d.unsubscribe("d");
    for n in 6..=8 {
        p.send_n(q2, n, &[]);
    }
    for n in 6..=8 {
        c.msg_n(q2, n);
    }
    drop((a, b, c, d, p));
    srv.stop();
}

#[test]
fn messages_sent_with_no_consumer_wait_and_are_delivered_in_order() {
    let srv = server(3, |_| {});
    for kind in BOTH {
        let q = format!("/queue/wait-{kind:?}");
        let q = q.as_str();
        let mut p = srv.client(kind);
        for n in 1..=20 {
            p.send_n(q, n, &[("x-kept", "yes")]);
        }
        p.sync();
        // Subscribe on another reactor, later.
        let mut c = srv.client_on(kind, p.reactor() + 1);
        c.subscribe(q, "w", &[("ack", "client-individual")]);
        let got: Vec<Frame> = (1..=20).map(|n| c.msg_n(q, n)).collect();
        for f in &got {
            check_queue_message(f, "1.2", true);
            assert!(!f.redelivered(), "{f:?}");
            assert_eq!(f.h("subscription"), "w");
            assert_eq!(f.h("x-kept"), "yes", "sender headers kept: {f:?}");
        }
        // Ack half, leave cleanly: the other half goes back, marked, in order.
        for f in &got[..10] {
            c.ack(f);
        }
        let late = c.disconnect();
        assert!(late.is_empty(), "{late:?}");
        let mut d = srv.client_on(other(kind), p.reactor() + 2);
        d.subscribe(q, "w2", &[("ack", "client-individual")]);
        for n in 11..=20 {
            let f = d.msg_n(q, n);
            assert!(f.redelivered(), "{f:?}");
            d.ack(&f);
        }
        p.send_n(q, 21, &[]);
        let f = d.msg_n(q, 21);
        assert!(!f.redelivered(), "{f:?}");
    }
    srv.stop();
}

fn bounded(overflow: Overflow) -> Srv {
    server(2, |c| {
        c.queues = QueueConfig {
            max_messages: 3,
            overflow,
            ..QueueConfig::default()
        }
    })
}

#[test]
fn a_full_queue_with_reject_refuses_the_send_with_an_error() {
    if jetstream() {
        // The in-memory store's bounds; JetStream's stream has its own.
        eprintln!("memory store only");
        return;
    }
    let srv = bounded(Overflow::Reject);
    for kind in BOTH {
        let q = format!("/queue/full-{kind:?}");
        let q = q.as_str();
        let mut p = srv.client(kind);
        for n in 1..=3 {
            p.send_n(q, n, &[]);
        }
        p.send_n(q, 4, &[]);
        p.expect_error("queue full: message refused");
        // The three accepted ones are there; the fourth is not.
        let mut c = srv.client(other(kind));
        c.subscribe(q, "c", &[]);
        for n in 1..=3 {
            c.msg_n(q, n);
        }
        let mut p2 = srv.client(kind);
        p2.send_n(q, 5, &[]);
        c.msg_n(q, 5);
    }
    srv.stop();
}

/// A RECEIPT means the frame was processed; a refused SEND must not get one.
///
/// Regression: the RECEIPT used to be written when the SEND was parsed, before the queue's
/// home had accepted it, and the later ERROR carried no `receipt-id`. The home now answers
/// both.
#[test]
fn a_refused_send_gets_no_receipt_and_its_error_names_the_receipt() {
    if jetstream() {
        // The in-memory store's bounds; JetStream's stream has its own.
        eprintln!("memory store only");
        return;
    }
    let srv = bounded(Overflow::Reject);
    let q = "/queue/full-receipt";
    let mut p = srv.client(Kind::Tcp);
    for n in 1..=3 {
        p.send_n(q, n, &[]);
    }
    p.send_n(q, 4, &[("receipt", "send-4")]);
    let f = p.recv();
    assert_eq!(f.command, "ERROR", "no RECEIPT for a refused SEND: {f:?}");
    assert_eq!(f.get("receipt-id"), Some("send-4"), "{f:?}");
    srv.stop();
}

#[test]
fn a_full_queue_with_drop_oldest_drops_the_oldest() {
    if jetstream() {
        // The in-memory store's bounds; JetStream's stream has its own.
        eprintln!("memory store only");
        return;
    }
    let srv = bounded(Overflow::DropOldest);
    for kind in BOTH {
        let q = format!("/queue/drop-{kind:?}");
        let q = q.as_str();
        // Both off the home: the SENDs reach it before the SUBSCRIBE (one FIFO mailbox).
        let home = srv.home(q);
        let mut p = srv.client_on(kind, home + 1);
        for n in 1..=5 {
            p.send_n(q, n, &[]);
        }
        // No error: the sender stays connected.
        p.sync();
        let mut c = srv.client_on(other(kind), home + 1);
        c.subscribe(q, "c", &[("ack", "client-individual")]);
        for n in 3..=5 {
            let f = c.msg_n(q, n);
            c.ack(&f);
        }
        p.send_n(q, 6, &[]);
        c.msg_n(q, 6);
    }
    srv.stop();
}
