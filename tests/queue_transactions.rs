//! Transactions end to end: COMMIT in order, ABORT and DISCONNECT drop, ACK/NACK at COMMIT,
//! errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/queues.rs"]
mod queues;

use queues::*;

// ---------------------------------------------------------------------------------------------
// 4. Transactions.

/// The numbers of the next `k` MESSAGEs, sorted.
fn next_ns(c: &mut Client, k: usize) -> Vec<u32> {
    let mut v: Vec<u32> = (0..k).map(|_| c.msg().n()).collect();
    v.sort_unstable();
    v
}

#[test]
fn commit_delivers_all_in_order_abort_and_disconnect_deliver_none() {
    let srv = server(3, |_| {});
    for kind in BOTH {
        let q = format!("/queue/tx-{kind:?}");
        let q = q.as_str();
        let t = format!("/topic/tx-{kind:?}");
        let t = t.as_str();
        let mut c = srv.client(kind);
        c.subscribe(q, "q", &[]);
        c.subscribe(t, "t", &[]);
        let mut p = srv.client(other(kind));
        let mut outside = srv.client(kind);

        // A transaction killed with the connection: never delivered.
        let mut gone = srv.client(kind);
        gone.call("BEGIN", &[("transaction", "tk")]);
        gone.send_n(q, 900, &[("transaction", "tk")]);
        gone.send_n(t, 901, &[("transaction", "tk")]);
        gone.sync();
        gone.kill();

        // Commit: nothing before COMMIT (a later plain SEND overtakes), all of it after, in
        // order.
        p.call("BEGIN", &[("transaction", "t1")]);
        for n in 1..=5 {
            p.send_n(q, n, &[("transaction", "t1")]);
        }
        p.send_n(t, 6, &[("transaction", "t1")]);
        p.sync();
        outside.send_n(q, 100, &[]);
        outside.send_n(t, 101, &[]);
        // Queue and topic messages take different paths: only per-destination order holds.
        assert_eq!(next_ns(&mut c, 2), vec![100, 101]);
        p.call("COMMIT", &[("transaction", "t1")]);
        let mut q_got = Vec::new();
        let mut t_got = Vec::new();
        for _ in 0..6 {
            let f = c.msg();
            if f.h("destination") == q {
                q_got.push(f.n());
            } else {
                t_got.push(f.n());
            }
        }
        assert_eq!(q_got, vec![1, 2, 3, 4, 5]);
        assert_eq!(t_got, vec![6]);

        // Abort: none of it.
        p.call("BEGIN", &[("transaction", "t2")]);
        for n in 7..=9 {
            p.send_n(q, n, &[("transaction", "t2")]);
        }
        p.send_n(t, 10, &[("transaction", "t2")]);
        p.call("ABORT", &[("transaction", "t2")]);
        p.send_n(q, 11, &[]);
        p.send_n(t, 12, &[]);
        assert_eq!(next_ns(&mut c, 2), vec![11, 12]);

        // Disconnect with an open transaction: none of it.
        p.call("BEGIN", &[("transaction", "t3")]);
        p.send_n(q, 912, &[("transaction", "t3")]);
        p.send_n(t, 913, &[("transaction", "t3")]);
        p.disconnect();
        outside.send_n(q, 14, &[]);
        outside.send_n(t, 15, &[]);
        assert_eq!(next_ns(&mut c, 2), vec![14, 15]);

        // A transaction name can be reused once ended; two may be open at once.
        let mut p = srv.client(kind);
        p.call("BEGIN", &[("transaction", "t1")]);
        p.call("BEGIN", &[("transaction", "t2")]);
        p.send_n(q, 16, &[("transaction", "t2")]);
        p.send_n(q, 17, &[("transaction", "t1")]);
        p.call("COMMIT", &[("transaction", "t1")]);
        c.msg_n(q, 17);
        p.call("COMMIT", &[("transaction", "t2")]);
        c.msg_n(q, 16);
        // (The killed connection's messages 900/901 never came: they would have been ahead.)
    }
    srv.stop();
}

#[test]
fn ack_inside_a_transaction_takes_effect_only_at_commit() {
    let srv = server(3, |_| {});
    for kind in BOTH {
        let q = format!("/queue/tx-ack-{kind:?}");
        let q = q.as_str();
        let home = srv.home(q);
        let mut c = srv.client_on(kind, home + 1);
        c.subscribe(q, "c", &[("ack", "client-individual")]);
        let mut p = srv.client_on(other(kind), home + 2);
        for n in 1..=4 {
            p.send_n(q, n, &[]);
        }
        let got: Vec<Frame> = (1..=4).map(|n| c.msg_n(q, n)).collect();
        // 1: acked in an aborted transaction -> not acked.
        c.call("BEGIN", &[("transaction", "a")]);
        c.ack_frame("ACK", &got[0], &[("transaction", "a")]);
        c.call("ABORT", &[("transaction", "a")]);
        // 2: acked in a committed transaction -> acked.
        c.call("BEGIN", &[("transaction", "b")]);
        c.ack_frame("ACK", &got[1], &[("transaction", "b")]);
        c.call("COMMIT", &[("transaction", "b")]);
        // 3: NACKed in a transaction left open at disconnect -> not NACKed, not acked.
        // 4: acked in that same open transaction -> not acked.
        c.call("BEGIN", &[("transaction", "open")]);
        c.ack_frame("NACK", &got[2], &[("transaction", "open")]);
        c.ack_frame("ACK", &got[3], &[("transaction", "open")]);
        c.disconnect();
        let mut d = srv.client_on(kind, home + 2);
        d.subscribe(q, "d", &[("ack", "client-individual")]);
        for n in [1, 3, 4] {
            let f = d.msg_n(q, n);
            assert!(f.redelivered(), "{f:?}");
            d.ack(&f);
        }
        p.send_n(q, 5, &[]);
        d.msg_n(q, 5);
    }
    srv.stop();
}

#[test]
fn a_nack_inside_a_committed_transaction_redelivers() {
    let srv = server(2, |_| {});
    let q = "/queue/tx-nack";
    let mut c = srv.client(Kind::Ws);
    c.subscribe(q, "c", &[("ack", "client-individual")]);
    let mut p = srv.client(Kind::Tcp);
    p.send_n(q, 1, &[]);
    p.send_n(q, 2, &[]);
    let m1 = c.msg_n(q, 1);
    let m2 = c.msg_n(q, 2);
    c.call("BEGIN", &[("transaction", "x")]);
    c.ack_frame("NACK", &m1, &[("transaction", "x")]);
    c.ack_frame("ACK", &m2, &[("transaction", "x")]);
    c.call("COMMIT", &[("transaction", "x")]);
    let f = c.msg_n(q, 1);
    assert!(f.redelivered(), "{f:?}");
    c.ack_sync(&f);
    p.send_n(q, 3, &[]);
    c.msg_n(q, 3);
    srv.stop();
}

/// A command and its headers.
type Cmd<'a> = (&'a str, &'a [(&'a str, &'a str)]);

#[test]
fn unknown_duplicate_and_oversized_transactions_are_errors() {
    let srv = server(2, |c| c.session.max_tx_frames = 3);
    let q = "/queue/tx-errors";
    for kind in BOTH {
        let cases: &[(&[Cmd], &str)] = &[
            (
                &[("SEND", &[("destination", q), ("transaction", "nope")])],
                "unknown transaction 'nope'",
            ),
            (
                &[("ACK", &[("id", "q1.1.1"), ("transaction", "nope")])],
                "unknown transaction 'nope'",
            ),
            (
                &[("COMMIT", &[("transaction", "nope")])],
                "unknown transaction 'nope'",
            ),
            (
                &[("ABORT", &[("transaction", "nope")])],
                "unknown transaction 'nope'",
            ),
            (
                &[
                    ("BEGIN", &[("transaction", "t")]),
                    ("BEGIN", &[("transaction", "t")]),
                ],
                "transaction 't' already begun",
            ),
            (
                &[
                    ("BEGIN", &[("transaction", "t")]),
                    ("COMMIT", &[("transaction", "t")]),
                    ("COMMIT", &[("transaction", "t")]),
                ],
                "unknown transaction 't'",
            ),
        ];
        for (frames, err) in cases {
            let mut c = srv.client(kind);
            for (cmd, h) in *frames {
                c.send_frame(cmd, h, b"");
            }
            c.expect_error(err);
        }
        // A bound on frames per transaction; what it held is dropped.
        let mut c = srv.client(kind);
        c.call("BEGIN", &[("transaction", "big")]);
        for n in 1..=4 {
            c.send_n(q, n, &[("transaction", "big")]);
        }
        c.expect_error("too many frames in transaction 'big'");
        let mut d = srv.client(kind);
        d.subscribe(q, "d", &[]);
        let mut p = srv.client(kind);
        p.send_n(q, 5, &[]);
        d.msg_n(q, 5);
        d.unsubscribe("d");
    }
    srv.stop();
}
