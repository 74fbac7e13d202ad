//! The queue's unit tests and its model-based property test.

use super::*;
use proptest::prelude::*;
use std::collections::{HashMap, HashSet};

fn key(n: u32) -> ConsumerKey {
    ConsumerKey {
        reactor: 0,
        slot: n,
        gen: 1,
    }
}

fn msg(seq: u64) -> QMsg {
    QMsg {
        seq,
        payload: Published::raw("/queue/q", b"x"),
        redelivered: false,
    }
}

#[test]
fn round_robin_prefetch_and_requeue() {
    let mut q = Queue::new(100, Overflow::Reject);
    q.add_consumer(key(1), AckMode::ClientIndividual, 2);
    q.add_consumer(key(2), AckMode::ClientIndividual, 2);
    for s in 0..6 {
        q.enqueue(msg(s)).unwrap();
    }
    let mut out = Vec::new();
    q.dispatch(&mut out);
    let to: Vec<u32> = out.iter().map(|d| d.consumer.slot).collect();
    assert_eq!(
        to,
        vec![1, 2, 1, 2],
        "round-robin up to the prefetch of 2 each"
    );
    assert_eq!(q.ready_len(), 2);
    // Consumer 1 leaves: its two unacked come back first, redelivered, and go to 2 once
    // it has credit.
    q.remove_consumer(key(1));
    q.ack(key(2), out[1].delivery).unwrap();
    q.ack(key(2), out[3].delivery).unwrap();
    let mut out2 = Vec::new();
    q.dispatch(&mut out2);
    assert_eq!(out2.len(), 2);
    assert!(out2
        .iter()
        .all(|d| d.msg.redelivered && d.consumer == key(2)));
    assert_eq!(
        out2.iter().map(|d| d.msg.seq).collect::<Vec<_>>(),
        vec![out[0].msg.seq, out[2].msg.seq]
    );
    assert_eq!(q.ack(key(2), 999), Err(AckError::UnknownDelivery));
    assert_eq!(q.ack(key(7), 1), Err(AckError::UnknownConsumer));
}

#[test]
fn client_mode_acks_cumulatively_and_nack_prefers_another_consumer() {
    let mut q = Queue::new(100, Overflow::Reject);
    q.add_consumer(key(1), AckMode::Client, 10);
    for s in 0..3 {
        q.enqueue(msg(s)).unwrap();
    }
    let mut out = Vec::new();
    q.dispatch(&mut out);
    q.ack(key(1), out[1].delivery).unwrap();
    assert_eq!(q.inflight_len(), 1, "acking the 2nd acks the 1st too");
    q.add_consumer(key(2), AckMode::Client, 10);
    q.nack(key(1), out[2].delivery).unwrap();
    let mut out2 = Vec::new();
    q.dispatch(&mut out2);
    assert_eq!(out2.len(), 1);
    assert_eq!(out2[0].consumer, key(2));
    assert!(out2[0].msg.redelivered);
}

#[test]
fn bounded_with_either_policy() {
    let mut q = Queue::new(2, Overflow::Reject);
    q.enqueue(msg(1)).unwrap();
    q.enqueue(msg(2)).unwrap();
    assert!(q.enqueue(msg(3)).is_err());
    let mut q = Queue::new(2, Overflow::DropOldest);
    for s in 1..=3 {
        q.enqueue(msg(s)).unwrap();
    }
    assert_eq!(q.dropped, 1);
    q.add_consumer(key(1), AckMode::Auto, 2);
    let mut out = Vec::new();
    q.dispatch(&mut out);
    assert_eq!(
        out.iter().map(|d| d.msg.seq).collect::<Vec<_>>(),
        vec![2, 3]
    );
}

/// Issue 13: a queue's bound in bytes, under either policy, and the bytes follow the
/// messages through dispatch, return and acknowledgement.
#[test]
fn bounded_in_bytes_with_either_policy() {
    let sized = |seq: u64, n: usize| QMsg {
        seq,
        payload: Published::raw("/queue/q", &vec![b'x'; n]),
        redelivered: false,
    };
    let mut q = Queue::new(100, Overflow::Reject).with_max_bytes(1000);
    q.enqueue(sized(1, 400)).unwrap();
    q.enqueue(sized(2, 400)).unwrap();
    assert_eq!(q.ready_bytes(), 800);
    assert!(q.enqueue(sized(3, 400)).is_err(), "1200 > 1000");
    q.enqueue(sized(4, 200)).unwrap();
    assert!(q.enqueue(sized(5, 1001)).is_err(), "never fits");
    q.add_consumer(key(1), AckMode::Client, 1);
    let mut out = Vec::new();
    q.dispatch(&mut out);
    assert_eq!((q.ready_bytes(), q.held_bytes()), (600, 1000));
    q.ack(key(1), out[0].delivery).unwrap();
    assert_eq!(q.held_bytes(), 600);
    q.remove_consumer(key(1));
    assert_eq!(q.ready_bytes(), 600);

    let mut q = Queue::new(100, Overflow::DropOldest).with_max_bytes(1000);
    for s in 1..=3 {
        q.enqueue(sized(s, 400)).unwrap();
    }
    assert_eq!((q.dropped, q.ready_bytes()), (1, 800));
    assert!(
        q.enqueue(sized(9, 1001)).is_err(),
        "never fits, nothing dropped for it"
    );
    assert_eq!(q.ready_len(), 2);
}

#[derive(Debug, Clone)]
enum Op {
    Subscribe(u32, u8, usize),
    Send,
    Ack(usize),
    Nack(usize),
    /// An auto-mode consumer's connection wrote its deliveries up to the chosen one.
    Written(usize),
    /// The chosen delivery found its connection without room.
    Return(usize),
    Resume(u32),
    Unsubscribe(u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u32..4, 0u8..3, 1usize..4).prop_map(|(c, m, p)| Op::Subscribe(c, m, p)),
        Just(Op::Send),
        Just(Op::Send),
        any::<usize>().prop_map(Op::Ack),
        any::<usize>().prop_map(Op::Nack),
        any::<usize>().prop_map(Op::Written),
        any::<usize>().prop_map(Op::Return),
        (0u32..4).prop_map(Op::Resume),
        (0u32..4).prop_map(Op::Unsubscribe),
    ]
}

/// A consumer in the model: mode, prefetch, paused, in flight (delivery, seq, redelivered).
type ModelConsumer = (AckMode, usize, bool, Vec<(u64, u64, bool)>);

/// Every in-flight delivery of the model's consumers that `pick` accepts, in a stable order.
fn inflight(
    model: &HashMap<u32, ModelConsumer>,
    pick: impl Fn(AckMode) -> bool,
) -> Vec<(u32, u64, u64, bool)> {
    let mut all: Vec<(u32, u64, u64, bool)> = model
        .iter()
        .filter(|(_, c)| pick(c.0))
        .flat_map(|(c, e)| e.3.iter().map(move |(d, s, r)| (*c, *d, *s, *r)))
        .collect();
    all.sort_unstable();
    all
}

proptest! {
    /// Against a plain model: every message sent is, at every step, exactly once either
    /// waiting or in flight until acked (auto mode: until written); nothing done comes
    /// back; a message delivered a second time is marked redelivered (one handed back
    /// unsent is not); prefetch is never exceeded; a paused consumer gets nothing; and
    /// once consumers with credit exist, nothing waits.
    #[test]
    fn model(ops in prop::collection::vec(op(), 1..200)) {
        let mut q = Queue::new(10_000, Overflow::Reject);
        let mut next = 0u64;
        let mut done: HashSet<u64> = HashSet::new();
        let mut delivered_before: HashSet<u64> = HashSet::new();
        let mut model: HashMap<u32, ModelConsumer> = HashMap::new();
        let modes = [AckMode::Auto, AckMode::Client, AckMode::ClientIndividual];
        for op in ops {
            match op {
                Op::Subscribe(c, m, p) => {
                    if let std::collections::hash_map::Entry::Vacant(e) = model.entry(c) {
                        q.add_consumer(key(c), modes[m as usize], p);
                        e.insert((modes[m as usize], p, false, Vec::new()));
                    }
                }
                Op::Send => {
                    next += 1;
                    q.enqueue(msg(next)).unwrap();
                }
                Op::Ack(i) | Op::Nack(i) => {
                    let all = inflight(&model, |m| m != AckMode::Auto);
                    if all.is_empty() { continue; }
                    let (c, d, _, _) = all[i % all.len()];
                    let entry = model.get_mut(&c).unwrap();
                    let covered: Vec<(u64, u64, bool)> = if entry.0 == AckMode::Client {
                        entry.3.iter().copied().filter(|(x, _, _)| *x <= d).collect()
                    } else {
                        entry.3.iter().copied().filter(|(x, _, _)| *x == d).collect()
                    };
                    entry.3.retain(|x| !covered.contains(x));
                    if matches!(op, Op::Ack(_)) {
                        q.ack(key(c), d).unwrap();
                        for (_, s, _) in covered { done.insert(s); }
                    } else {
                        q.nack(key(c), d).unwrap();
                    }
                }
                Op::Written(i) => {
                    let all = inflight(&model, |m| m == AckMode::Auto);
                    if all.is_empty() { continue; }
                    let (c, d, _, _) = all[i % all.len()];
                    let entry = model.get_mut(&c).unwrap();
                    for (_, s, _) in entry.3.iter().filter(|(x, _, _)| *x <= d) {
                        done.insert(*s);
                    }
                    entry.3.retain(|(x, _, _)| *x > d);
                    q.written(key(c), d);
                }
                Op::Return(i) => {
                    let all = inflight(&model, |_| true);
                    if all.is_empty() { continue; }
                    let (c, d, s, redelivered) = all[i % all.len()];
                    let entry = model.get_mut(&c).unwrap();
                    entry.2 = true;
                    entry.3.retain(|(x, _, _)| *x != d);
                    if !redelivered {
                        // Never sent: its next delivery is a first one.
                        delivered_before.remove(&s);
                    }
                    q.returned(key(c), d);
                }
                Op::Resume(c) => {
                    if let Some(e) = model.get_mut(&c) {
                        e.2 = false;
                    }
                    q.resume(key(c));
                }
                Op::Unsubscribe(c) => {
                    q.remove_consumer(key(c));
                    model.remove(&c);
                }
            }
            let mut out = Vec::new();
            q.dispatch(&mut out);
            for d in out {
                let s = d.msg.seq;
                prop_assert!(!done.contains(&s), "done message {s} delivered again");
                prop_assert_eq!(d.msg.redelivered, delivered_before.contains(&s), "redelivered flag of {}", s);
                delivered_before.insert(s);
                let entry = model.get_mut(&d.consumer.slot).unwrap();
                prop_assert!(!entry.2, "delivery to a paused consumer");
                entry.3.push((d.delivery, s, d.msg.redelivered));
                prop_assert!(entry.3.len() <= entry.1, "prefetch exceeded");
            }
            // Conservation: every message not done is waiting or in flight, exactly once.
            let inflight: usize = model.values().map(|e| e.3.len()).sum();
            prop_assert_eq!(q.inflight_len(), inflight);
            prop_assert_eq!(q.ready_len() + inflight + done.len(), next as usize);
            let credit = model.values().any(|e| !e.2 && e.3.len() < e.1);
            if credit {
                prop_assert_eq!(q.ready_len(), 0, "messages wait while consumers have credit");
            }
        }
    }
}

/// Deliveries handed back by a full connection come back in their order, ahead of what was
/// waiting, and go out in that order once the consumer resumes.
#[test]
fn returned_deliveries_keep_their_order() {
    let mut q = Queue::new(100, Overflow::Reject);
    q.add_consumer(key(1), AckMode::Auto, 3);
    for s in 1..=5 {
        q.enqueue(msg(s)).unwrap();
    }
    let mut out = Vec::new();
    q.dispatch(&mut out);
    assert_eq!(out.len(), 3);
    for d in &out {
        q.returned(key(1), d.delivery);
    }
    let mut none = Vec::new();
    q.dispatch(&mut none);
    assert!(none.is_empty(), "paused");
    q.resume(key(1));
    let mut again = Vec::new();
    q.dispatch(&mut again);
    let seqs: Vec<u64> = again.iter().map(|d| d.msg.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    assert!(
        again.iter().all(|d| !d.msg.redelivered),
        "never sent: not redelivered"
    );
}

/// The byte window: a consumer with prefetch to spare still waits once about `window`
/// bytes are in flight to it (one message always goes).
#[test]
fn byte_window_paces_a_consumer() {
    let mut q = Queue::with_window(100, Overflow::Reject, 10);
    q.add_consumer(key(1), AckMode::Auto, 100);
    for s in 0..5 {
        q.enqueue(QMsg {
            seq: s,
            payload: Published::raw("/queue/q", b"123456"),
            redelivered: false,
        })
        .unwrap();
    }
    let mut out = Vec::new();
    q.dispatch(&mut out);
    assert_eq!(out.len(), 2, "6 bytes, then 12 >= 10: waits");
    q.written(key(1), out[0].delivery);
    let mut more = Vec::new();
    q.dispatch(&mut more);
    assert_eq!(more.len(), 1);
    assert_eq!(q.ready_len(), 2);
}
