//! Acknowledgements end to end: NACK, unsubscribe, client and client-individual modes, unknown
//! ids, 1.0/1.1 message ids, auto mode, topics in client modes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/queues.rs"]
mod queues;

use queues::*;

// ---------------------------------------------------------------------------------------------
// 3. Acknowledgements.

#[test]
fn nack_redelivers_to_another_consumer_marked_redelivered() {
    let srv = server(3, |_| {});
    for kind in BOTH {
        let q = format!("/queue/nack-{kind:?}");
        let q = q.as_str();
        let home = srv.home(q);
        // A and B off the home: their frames reach it through its mailbox, in order.
        let mut a = srv.client_on(kind, home + 1);
        a.subscribe(q, "a", &[("ack", "client-individual")]);
        let mut p = srv.client_on(Kind::Tcp, home);
        p.send_n(q, 1, &[]);
        let f = a.msg_n(q, 1);
        assert!(!f.redelivered(), "{f:?}");
        // Alone, a NACKed message comes back to the same consumer.
        a.nack_sync(&f);
        let f = a.msg_n(q, 1);
        assert!(f.redelivered(), "{f:?}");
        // With another consumer, it goes there.
        let mut b = srv.client_on(other(kind), home + 2);
        b.subscribe(q, "b", &[("ack", "client-individual")]);
        a.nack(&f);
        let g = b.msg_n(q, 1);
        assert!(g.redelivered(), "{g:?}");
        assert_eq!(g.h("subscription"), "b");
        b.ack_sync(&g);
        // A did not get it again: its next message is a new one.
        p.send_n(q, 2, &[]);
        p.send_n(q, 3, &[]);
        let fa = a.msg();
        let fb = b.msg();
        let mut ns = [fa.n(), fb.n()];
        ns.sort_unstable();
        assert_eq!(ns, [2, 3], "{fa:?} {fb:?}");
        assert!(!fa.redelivered() && !fb.redelivered());
        a.ack(&fa);
        b.ack(&fb);
        a.disconnect();
        b.disconnect();
    }
    srv.stop();
}

#[test]
fn unsubscribe_requeues_unacked_messages_as_redelivered() {
    let srv = server(2, |_| {});
    let q = "/queue/unsub";
    let mut a = srv.client(Kind::Ws);
    a.subscribe(q, "a", &[("ack", "client-individual")]);
    let mut p = srv.client(Kind::Tcp);
    for n in 1..=4 {
        p.send_n(q, n, &[]);
    }
    let got: Vec<Frame> = (1..=4).map(|n| a.msg_n(q, n)).collect();
    a.ack_sync(&got[1]);
    a.unsubscribe("a");
    let mut b = srv.client(Kind::Tcp);
    b.subscribe(q, "b", &[("ack", "client-individual")]);
    for n in [1, 3, 4] {
        let f = b.msg_n(q, n);
        assert!(f.redelivered(), "{f:?}");
        b.ack(&f);
    }
    p.send_n(q, 5, &[]);
    b.msg_n(q, 5);
    // The subscription is gone: its ack ids are no longer valid.
    a.ack_frame("ACK", &got[0], &[]);
    a.expect_error("unknown ack id");
    srv.stop();
}

#[test]
fn client_mode_acks_and_nacks_cumulatively() {
    let srv = server(2, |_| {});
    let q = "/queue/cumulative";
    let mut c = srv.client(Kind::Tcp);
    c.subscribe(q, "c", &[("ack", "client"), ("prefetch-count", "10")]);
    let mut p = srv.client(Kind::Ws);
    for n in 1..=8 {
        p.send_n(q, n, &[]);
    }
    let got: Vec<Frame> = (1..=8).map(|n| c.msg_n(q, n)).collect();
    // ACK of the 3rd acks 1..3.
    c.ack_sync(&got[2]);
    // NACK of the 5th gives back 4 and 5 (to C, the only consumer), marked.
    c.nack_sync(&got[4]);
    let r4 = c.msg_n(q, 4);
    let r5 = c.msg_n(q, 5);
    assert!(r4.redelivered() && r5.redelivered(), "{r4:?} {r5:?}");
    // C still holds 6, 7, 8 (first delivery) and 4, 5 (second). Acking the 2nd is an error
    // (already acked by the cumulative ACK); the ERROR ends C and what it held goes back.
    c.ack_frame("ACK", &got[1], &[]);
    c.expect_error("unknown ack id");
    let mut d = srv.client(Kind::Ws);
    d.subscribe(q, "d", &[("ack", "client-individual")]);
    let mut ns: Vec<u32> = (0..5)
        .map(|_| {
            let f = d.msg();
            assert!(f.redelivered(), "{f:?}");
            d.ack(&f);
            f.n()
        })
        .collect();
    ns.sort_unstable();
    assert_eq!(ns, vec![4, 5, 6, 7, 8]);
    p.send_n(q, 9, &[]);
    d.msg_n(q, 9);
    srv.stop();
}

#[test]
fn unknown_ack_ids_are_errors() {
    let srv = server(2, |_| {});
    let q = "/queue/unknown-ack";
    for kind in BOTH {
        // Not an id at all; a well-formed id never handed out; NACK too.
        for (cmd, id) in [("ACK", "bogus"), ("ACK", "q77.3.9"), ("NACK", "zzz")] {
            let mut c = srv.client(kind);
            c.subscribe(q, "s", &[("ack", "client-individual")]);
            c.send_frame(cmd, &[("id", id)], b"");
            let e = c.expect_error("unknown ack id");
            assert!(e.h("message").contains(id), "{e:?}");
        }
    }
    // An id is valid only on the connection it was delivered on.
    let mut a = srv.client(Kind::Tcp);
    a.subscribe(q, "s", &[("ack", "client-individual")]);
    let mut p = srv.client(Kind::Ws);
    p.send_n(q, 1, &[]);
    let f = a.msg_n(q, 1);
    let mut b = srv.client(Kind::Tcp);
    b.subscribe(q, "s", &[("ack", "client-individual")]);
    b.send_frame("ACK", &[("id", f.h("ack"))], b"");
    b.expect_error("unknown ack id");
    // A's own ACK works, once.
    a.ack_sync(&f);
    a.ack(&f);
    a.expect_error("unknown ack id");
    // It was acked: nothing comes back.
    let mut d = srv.client(Kind::Tcp);
    d.subscribe(q, "d", &[]);
    p.send_n(q, 2, &[]);
    d.msg_n(q, 2);
    srv.stop();
}

/// STOMP 1.2: an ERROR caused by a frame with a `receipt` header carries `receipt-id`.
#[test]
fn an_unknown_ack_id_error_names_the_receipt() {
    let srv = server(2, |_| {});
    let mut c = srv.client(Kind::Tcp);
    c.subscribe("/queue/x", "s", &[("ack", "client-individual")]);
    c.send_frame("ACK", &[("id", "bogus"), ("receipt", "ack-1")], b"");
    let e = c.expect("ERROR");
    assert_eq!(e.get("receipt-id"), Some("ack-1"), "{e:?}");
    srv.stop();
}

#[test]
fn stomp_1_1_and_1_0_ack_by_message_id() {
    let srv = server(2, |_| {});
    for (connect, version) in [(CONNECT11, "1.1"), (CONNECT10, "1.0")] {
        for kind in BOTH {
            let q = format!("/queue/v{version}-{kind:?}");
            let q = q.as_str();
            let mut c = Client::connect(srv.a, kind, connect);
            assert_eq!(c.version, version);
            c.subscribe(q, "old", &[("ack", "client-individual")]);
            let mut p = srv.client(other(kind));
            for n in 1..=3 {
                p.send_n(q, n, &[]);
            }
            let got: Vec<Frame> = (1..=3).map(|n| c.msg_n(q, n)).collect();
            for f in &got {
                check_queue_message(f, version, true);
            }
            c.ack_sync(&got[0]);
            if version == "1.1" {
                // NACK exists from 1.1: back to the only consumer, marked.
                c.nack_sync(&got[1]);
                let f = c.msg_n(q, 2);
                assert!(f.redelivered(), "{f:?}");
                c.ack_sync(&f);
            } else {
                c.ack_sync(&got[1]);
            }
            // 3 is not acked: it comes back to the next consumer; 1 and 2 do not.
            c.disconnect();
            let mut d = srv.client(kind);
            d.subscribe(q, "d", &[]);
            let f = d.msg_n(q, 3);
            assert!(f.redelivered(), "{f:?}");
            p.send_n(q, 4, &[]);
            d.msg_n(q, 4);
        }
    }
    srv.stop();
}

#[test]
fn auto_mode_needs_no_ack() {
    let srv = server(2, |_| {});
    for kind in BOTH {
        let q = format!("/queue/auto-{kind:?}");
        let q = q.as_str();
        let mut c = srv.client(kind);
        // No ack header: auto.
        c.subscribe(q, "a", &[]);
        let mut p = srv.client(other(kind));
        for n in 1..=5 {
            p.send_n(q, n, &[]);
        }
        for n in 1..=5 {
            let f = c.msg_n(q, n);
            check_queue_message(&f, "1.2", false);
        }
        // Gone without a single ACK: nothing comes back. (A clean DISCONNECT: after an abrupt
        // close the server could still hand the next message to the dead auto consumer.)
        c.disconnect();
        let mut d = srv.client(kind);
        d.subscribe(q, "d", &[("ack", "auto")]);
        p.send_n(q, 6, &[]);
        d.msg_n(q, 6);
    }
    srv.stop();
}

/// A message the home dispatched to an auto-mode consumer that left before it got there was
/// never sent to anyone: it must not be lost.
///
/// Regression: auto-mode deliveries are not kept in flight at the home, and a delivery that
/// reached the consumer's reactor after the consumer left used to be dropped (hundreds lost per
/// run). It is now handed back to the front of the queue.
#[test]
fn an_auto_consumer_leaving_mid_stream_loses_nothing_it_did_not_receive() {
    let srv = server(2, |_| {});
    let q = "/queue/auto-leave";
    let home = srv.home(q);
    let total = 3000u32;
    // B acks everything it gets; A (off the home, so deliveries to it are in transit for a
    // while) subscribes and unsubscribes over and over while the stream flows.
    let mut b = srv.client_on(Kind::Tcp, home);
    b.subscribe(
        q,
        "b",
        &[("ack", "client-individual"), ("prefetch-count", "10000")],
    );
    let mut a = srv.client_on(Kind::Tcp, home + 1);
    let mut p = srv.client_on(Kind::Tcp, home + 1);
    let producer = std::thread::spawn(move || {
        for n in 1..=total {
            p.send_n(q, n, &[]);
            if n % 200 == 0 {
                p.sync();
            }
        }
        p.disconnect();
    });
    let got_b = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let (gb, st) = (Arc::clone(&got_b), Arc::clone(&stop));
    let consumer_b = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !st.load(Ordering::SeqCst) && Instant::now() < deadline {
            if let Some(f) = b.next_within(POLL).expect("B connection") {
                assert_eq!(f.command, "MESSAGE", "{f:?}");
                b.ack(&f);
                gb.lock().unwrap().push(f.n());
            }
        }
        b.disconnect();
    });
    let mut got_a = Vec::new();
    for round in 0..40 {
        a.subscribe(q, "a", &[("ack", "auto")]);
        for _ in 0..10 {
            match a.next_within(Duration::from_millis(200)).expect("A") {
                Some(f) => got_a.push(f.n()),
                None => break,
            }
        }
        // Everything delivered to this subscription comes before the receipt.
        a.unsubscribe("a");
        got_a.extend(a.pending.drain(..).map(|f| f.n()));
        if round % 8 == 7 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    producer.join().expect("producer");
    // Wait until B has everything A did not get (or it stops coming).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = (0, Instant::now());
    loop {
        let nb = got_b.lock().unwrap().len();
        if nb + got_a.len() >= total as usize || Instant::now() > deadline {
            break;
        }
        if nb != last.0 {
            last = (nb, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(2) {
            break;
        }
        std::thread::sleep(POLL);
    }
    stop.store(true, Ordering::SeqCst);
    consumer_b.join().expect("consumer B");
    let mut count: HashMap<u32, usize> = HashMap::new();
    for n in got_a.iter().chain(got_b.lock().unwrap().iter()) {
        *count.entry(*n).or_default() += 1;
    }
    let missing: Vec<u32> = (1..=total).filter(|n| !count.contains_key(n)).collect();
    let twice: Vec<u32> = (1..=total)
        .filter(|n| count.get(n).is_some_and(|c| *c > 1))
        .collect();
    assert!(
        missing.is_empty() && twice.is_empty(),
        "A got {}, B got {}; lost {} {:?}; twice {:?}",
        got_a.len(),
        count.len() - got_a.len(),
        missing.len(),
        &missing[..missing.len().min(20)],
        &twice[..twice.len().min(20)]
    );
    drop(a);
    srv.stop();
}

#[test]
fn topic_subscriptions_in_client_modes_accept_ack_and_nack_without_redelivery() {
    let srv = server(2, |_| {});
    let t = "/topic/acked";
    for mode in ["client-individual", "client"] {
        let mut c = srv.client(Kind::Ws);
        c.subscribe(t, "t", &[("ack", mode)]);
        let mut p = srv.client(Kind::Tcp);
        p.send_n(t, 1, &[]);
        let f = c.msg_n(t, 1);
        assert_eq!(f.get("ack"), Some(f.h("message-id")), "{f:?}");
        assert!(f.h("message-id").starts_with('m'), "{f:?}");
        c.ack_sync(&f);
        p.send_n(t, 2, &[]);
        let f = c.msg_n(t, 2);
        c.nack_sync(&f);
        // No redelivery: the next message is 3.
        p.send_n(t, 3, &[]);
        let f = c.msg_n(t, 3);
        assert!(!f.redelivered(), "{f:?}");
        // Leaving without acking 3 redelivers nothing either (topics keep nothing).
        c.disconnect();
    }
    srv.stop();
}
