//! A work queue, sans-IO: each message goes to exactly one consumer, round-robin; unacked
//! messages go back to the queue (marked redelivered) on NACK or when their consumer leaves.
//! One reactor (the queue's home) owns each queue, so this needs no locks.
//!
//! A message leaves the queue only when its consumer is done with it: acked (`client`,
//! `client-individual`) or, in `auto` mode, written to the consumer's socket. Until then it is
//! in flight, owned by the queue. Deliveries are paced by credit: at most `prefetch` messages
//! and about `window` bytes in flight per consumer, and none while the consumer's connection
//! has no outbound room (it hands the delivery back and pauses until it drains).

use std::collections::VecDeque;

use super::Published;
use crate::session::AckMode;

/// Identifies a consumer: its reactor, its slot there, and the slot's generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConsumerKey {
    pub reactor: u16,
    pub slot: u32,
    pub gen: u32,
}

/// A queued message: the frozen shared part of its MESSAGE frame (everything after the
/// per-delivery headers) and whether it was delivered before.
#[derive(Debug, Clone)]
pub struct QMsg {
    /// Stable identity of the message across redeliveries.
    pub seq: u64,
    pub payload: Published,
    pub redelivered: bool,
}

/// One dispatch decision.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub consumer: ConsumerKey,
    /// Unique per delivery in this queue (acks name it).
    pub delivery: u64,
    pub msg: QMsg,
}

/// What to do when a queue is full and another message arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Refuse the SEND with an ERROR.
    Reject,
    /// Drop the oldest waiting message (counted).
    DropOldest,
}

#[derive(Debug)]
struct Consumer {
    key: ConsumerKey,
    ack: AckMode,
    prefetch: usize,
    /// Delivered, not yet acked (or, in auto mode, not yet written), in delivery order
    /// (delivery numbers only grow, so it stays sorted; settled mostly from the front, and
    /// reused without allocating once it has grown to the prefetch).
    inflight: VecDeque<(u64, QMsg)>,
    /// Bytes of the messages in flight.
    inflight_bytes: usize,
    /// Its connection had no outbound room: nothing more until it says it drained.
    paused: bool,
}

impl Consumer {
    fn has_credit(&self, window: usize) -> bool {
        !self.paused
            && self.inflight.len() < self.prefetch
            && (self.inflight.is_empty() || self.inflight_bytes < window)
    }

    /// Take one delivery out of flight.
    /// Where a delivery sits in flight (the list is sorted by delivery number).
    fn position(&self, delivery: u64) -> Option<usize> {
        self.inflight
            .binary_search_by_key(&delivery, |(d, _)| *d)
            .ok()
    }

    fn take(&mut self, delivery: u64) -> Option<QMsg> {
        let i = self.position(delivery)?;
        let (_, m) = self.inflight.remove(i)?;
        self.inflight_bytes = self.inflight_bytes.saturating_sub(m.size());
        Some(m)
    }

    /// Take every delivery up to `delivery` out of flight, oldest first, into `keep` if given.
    fn take_through(&mut self, delivery: u64, mut keep: Option<&mut Vec<QMsg>>) {
        while let Some((d, _)) = self.inflight.front() {
            if *d > delivery {
                break;
            }
            let Some((_, m)) = self.inflight.pop_front() else {
                break;
            };
            self.inflight_bytes = self.inflight_bytes.saturating_sub(m.size());
            if let Some(k) = keep.as_deref_mut() {
                k.push(m);
            }
        }
    }
}

impl QMsg {
    /// What a delivery of it costs a connection, roughly (its shared part).
    pub fn size(&self) -> usize {
        self.payload.shared.len()
    }
}

/// The queue holds its maximum of waiting messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueFull;

/// Why an ACK or NACK was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckError {
    UnknownConsumer,
    UnknownDelivery,
}

#[derive(Debug)]
pub struct Queue {
    /// Waiting messages; a requeued one remembers whom to avoid.
    ready: VecDeque<(QMsg, Option<ConsumerKey>)>,
    consumers: Vec<Consumer>,
    cursor: usize,
    next_delivery: u64,
    max_ready: usize,
    /// Bytes of the waiting messages, and their bound.
    ready_bytes: usize,
    max_bytes: usize,
    overflow: Overflow,
    /// Bytes in flight per consumer before it waits (at least one message always goes).
    window: usize,
    /// Messages handed back in a row (by [`Queue::returned`]) sit at the front in the order
    /// they come back: the next one goes after them.
    returned_run: usize,
    /// Messages dropped by `DropOldest`.
    pub dropped: u64,
}

impl Queue {
    pub fn new(max_ready: usize, overflow: Overflow) -> Self {
        Queue::with_window(max_ready, overflow, usize::MAX)
    }

    pub fn with_window(max_ready: usize, overflow: Overflow, window: usize) -> Self {
        Queue {
            ready: VecDeque::new(),
            consumers: Vec::new(),
            cursor: 0,
            next_delivery: 0,
            max_ready,
            ready_bytes: 0,
            max_bytes: usize::MAX,
            overflow,
            window: window.max(1),
            returned_run: 0,
            dropped: 0,
        }
    }

    /// At most `max_bytes` of waiting messages (a message larger than that is never taken).
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// Bytes of the waiting messages.
    pub fn ready_bytes(&self) -> usize {
        self.ready_bytes
    }

    /// Bytes the queue holds: waiting and in flight.
    pub fn held_bytes(&self) -> usize {
        self.ready_bytes
            + self
                .consumers
                .iter()
                .map(|c| c.inflight_bytes)
                .sum::<usize>()
    }

    /// Put a message among the waiting ones at `at` (the front, the back, or after the
    /// handed-back run), counting its bytes.
    fn push_ready(&mut self, at: usize, m: QMsg, avoid: Option<ConsumerKey>) {
        self.ready_bytes += m.size();
        if at == 0 {
            self.ready.push_front((m, avoid));
        } else if at >= self.ready.len() {
            self.ready.push_back((m, avoid));
        } else {
            self.ready.insert(at, (m, avoid));
        }
    }

    fn take_ready(&mut self, at: usize) -> Option<QMsg> {
        let (m, _) = if at == 0 {
            self.ready.pop_front()?
        } else {
            self.ready.remove(at)?
        };
        self.ready_bytes = self.ready_bytes.saturating_sub(m.size());
        Some(m)
    }

    pub fn inflight_len(&self) -> usize {
        self.consumers.iter().map(|c| c.inflight.len()).sum()
    }

    pub fn consumer_count(&self) -> usize {
        self.consumers.len()
    }

    /// Nothing waiting, nothing in flight, nobody consuming: the queue can be forgotten.
    pub fn is_idle(&self) -> bool {
        self.ready.is_empty() && self.consumers.is_empty()
    }

    /// Accept a message, or refuse it when full (in messages or bytes) under `Reject`. A
    /// message larger than the whole byte bound is refused under either policy.
    pub fn enqueue(&mut self, msg: QMsg) -> Result<(), QueueFull> {
        let size = msg.size();
        if size > self.max_bytes {
            return Err(QueueFull);
        }
        while self.ready.len() >= self.max_ready
            || self.ready_bytes.saturating_add(size) > self.max_bytes
        {
            match self.overflow {
                Overflow::Reject => return Err(QueueFull),
                Overflow::DropOldest => {
                    if self.take_ready(0).is_none() {
                        break;
                    }
                    self.dropped += 1;
                }
            }
        }
        self.push_ready(self.ready.len(), msg, None);
        Ok(())
    }

    pub fn add_consumer(&mut self, key: ConsumerKey, ack: AckMode, prefetch: usize) {
        if self.consumers.iter().any(|c| c.key == key) {
            return;
        }
        self.consumers.push(Consumer {
            key,
            ack,
            prefetch: prefetch.max(1),
            inflight: VecDeque::new(),
            inflight_bytes: 0,
            paused: false,
        });
    }

    /// Remove a consumer; its unacked messages go back to the front of the queue, in the order
    /// they were delivered, marked redelivered.
    pub fn remove_consumer(&mut self, key: ConsumerKey) {
        let Some(i) = self.consumers.iter().position(|c| c.key == key) else {
            return;
        };
        let c = self.consumers.remove(i);
        if self.cursor > i {
            self.cursor -= 1;
        }
        for (_, mut m) in c.inflight.into_iter().rev() {
            m.redelivered = true;
            self.push_ready(0, m, None);
        }
        self.returned_run = 0;
    }

    fn consumer_mut(&mut self, key: ConsumerKey) -> Option<&mut Consumer> {
        self.consumers.iter_mut().find(|c| c.key == key)
    }

    /// An auto-mode consumer's connection wrote every delivery up to `up_to`: they are done.
    pub fn written(&mut self, key: ConsumerKey, up_to: u64) {
        let Some(c) = self.consumer_mut(key) else {
            return;
        };
        if c.ack != AckMode::Auto {
            return;
        }
        c.take_through(up_to, None);
    }

    /// A delivery found its consumer's connection without outbound room: it comes back to the
    /// front of the queue as it was (it was never sent), and the consumer waits for
    /// [`Queue::resume`]. Unknown (already requeued by the consumer's removal): nothing to do.
    pub fn returned(&mut self, key: ConsumerKey, delivery: u64) {
        let Some(c) = self.consumer_mut(key) else {
            return;
        };
        c.paused = true;
        if let Some(m) = c.take(delivery) {
            // A connection hands back its deliveries oldest first: keep that order.
            let at = self.returned_run.min(self.ready.len());
            self.push_ready(at, m, None);
            self.returned_run += 1;
        }
    }

    /// The consumer's connection has room again.
    pub fn resume(&mut self, key: ConsumerKey) {
        if let Some(c) = self.consumer_mut(key) {
            c.paused = false;
        }
    }

    /// Take out of flight what an ACK or NACK of `delivery` covers: that delivery, or in
    /// `client` mode every delivery to this consumer up to it (cumulative). The messages are
    /// returned only when `keep` (NACK); an ACK drops them without collecting (no allocation).
    fn settle(
        &mut self,
        key: ConsumerKey,
        delivery: u64,
        keep: bool,
    ) -> Result<Vec<QMsg>, AckError> {
        let c = self.consumer_mut(key).ok_or(AckError::UnknownConsumer)?;
        if c.position(delivery).is_none() {
            return Err(AckError::UnknownDelivery);
        }
        let mut taken = Vec::new();
        if c.ack == AckMode::Client {
            c.take_through(delivery, keep.then_some(&mut taken));
        } else if let Some(m) = c.take(delivery) {
            if keep {
                taken.push(m);
            }
        }
        Ok(taken)
    }

    /// ACK one delivery, or (cumulative, `client` mode) every delivery to this consumer up to it.
    pub fn ack(&mut self, key: ConsumerKey, delivery: u64) -> Result<(), AckError> {
        self.settle(key, delivery, false).map(drop)
    }

    /// NACK: like ACK in what it covers, but the messages go back to the queue, redelivered,
    /// preferably to another consumer.
    pub fn nack(&mut self, key: ConsumerKey, delivery: u64) -> Result<(), AckError> {
        let taken = self.settle(key, delivery, true)?;
        for mut m in taken.into_iter().rev() {
            m.redelivered = true;
            self.push_ready(0, m, Some(key));
        }
        self.returned_run = 0;
        Ok(())
    }

    /// Hand out waiting messages to consumers with credit, round-robin. A NACKed message goes
    /// to another consumer when one has credit; when only the consumer that NACKed it has
    /// credit, that consumer gets the next message that is not avoiding it (looking a bounded
    /// way ahead), or, failing that, the message itself: nothing waits while credit exists.
    pub fn dispatch(&mut self, out: &mut Vec<Delivery>) {
        const LOOK_AHEAD: usize = 64;
        let window = self.window;
        while !self.ready.is_empty() {
            let n = self.consumers.len();
            let Some(i) = (0..n)
                .map(|k| (self.cursor + k) % n)
                .find(|&i| self.consumers.get(i).is_some_and(|c| c.has_credit(window)))
            else {
                return;
            };
            let Some(key) = self.consumers.get(i).map(|c| c.key) else {
                return;
            };
            let (i, pos) = match self
                .ready
                .iter()
                .take(LOOK_AHEAD)
                .position(|(_, avoid)| *avoid != Some(key))
            {
                Some(pos) => (i, pos),
                // Everything near the front avoids this consumer: give the front message to
                // another consumer with credit if there is one, else to this one after all.
                None => {
                    let other = (1..n)
                        .map(|k| (i + k) % n)
                        .find(|&j| self.consumers.get(j).is_some_and(|c| c.has_credit(window)));
                    (other.unwrap_or(i), 0)
                }
            };
            if i >= self.consumers.len() {
                return;
            }
            let Some(msg) = self.take_ready(pos) else {
                return;
            };
            let Some(c) = self.consumers.get_mut(i) else {
                return;
            };
            self.returned_run = 0;
            self.cursor = (i + 1) % n;
            self.next_delivery += 1;
            let delivery = self.next_delivery;
            c.inflight_bytes += msg.size();
            c.inflight.push_back((delivery, msg.clone()));
            out.push(Delivery {
                consumer: c.key,
                delivery,
                msg,
            });
        }
    }
}

#[cfg(test)]
mod tests {
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
}
