//! A work queue, sans-IO: each message goes to exactly one consumer, round-robin; unacked
//! messages go back to the queue (marked redelivered) on NACK or when their consumer leaves.
//! One reactor (the queue's home) owns each queue, so this needs no locks.

use std::collections::{BTreeMap, VecDeque};

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
    /// The home keeps it in flight until acked (client modes). An untracked (auto-mode)
    /// delivery that finds its consumer gone must be handed back with [`Queue::give_back`].
    pub tracked: bool,
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
    /// Delivered, not yet acked, in delivery order.
    inflight: BTreeMap<u64, QMsg>,
}

impl Consumer {
    fn has_credit(&self) -> bool {
        self.ack == AckMode::Auto || self.inflight.len() < self.prefetch
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
    overflow: Overflow,
    /// Messages dropped by `DropOldest`.
    pub dropped: u64,
}

impl Queue {
    pub fn new(max_ready: usize, overflow: Overflow) -> Self {
        Queue {
            ready: VecDeque::new(),
            consumers: Vec::new(),
            cursor: 0,
            next_delivery: 0,
            max_ready,
            overflow,
            dropped: 0,
        }
    }

    pub fn ready_len(&self) -> usize {
        self.ready.len()
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

    /// Accept a message, or refuse it when full under `Reject`.
    pub fn enqueue(&mut self, msg: QMsg) -> Result<(), QueueFull> {
        if self.ready.len() >= self.max_ready {
            match self.overflow {
                Overflow::Reject => return Err(QueueFull),
                Overflow::DropOldest => {
                    self.ready.pop_front();
                    self.dropped += 1;
                }
            }
        }
        self.ready.push_back((msg, None));
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
            inflight: BTreeMap::new(),
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
            self.ready.push_front((m, None));
        }
    }

    /// An auto-mode delivery that never reached its consumer (it left while the delivery was
    /// on its way): back to the front of the queue, unchanged (it was never received).
    pub fn give_back(&mut self, msg: QMsg) {
        self.ready.push_front((msg, None));
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
        let c = self
            .consumers
            .iter_mut()
            .find(|c| c.key == key)
            .ok_or(AckError::UnknownConsumer)?;
        if !c.inflight.contains_key(&delivery) {
            return Err(AckError::UnknownDelivery);
        }
        let taken = if c.ack == AckMode::Client {
            let rest = c.inflight.split_off(&(delivery + 1));
            let done = std::mem::replace(&mut c.inflight, rest);
            if !keep {
                return Ok(Vec::new());
            }
            done.into_values().collect()
        } else {
            let done = c.inflight.remove(&delivery);
            if !keep {
                return Ok(Vec::new());
            }
            done.into_iter().collect()
        };
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
            self.ready.push_front((m, Some(key)));
        }
        Ok(())
    }

    /// Hand out waiting messages to consumers with credit, round-robin. A NACKed message goes
    /// to another consumer when one has credit; when only the consumer that NACKed it has
    /// credit, that consumer gets the next message that is not avoiding it (looking a bounded
    /// way ahead), or, failing that, the message itself: nothing waits while credit exists.
    pub fn dispatch(&mut self, out: &mut Vec<Delivery>) {
        const LOOK_AHEAD: usize = 64;
        while !self.ready.is_empty() {
            let n = self.consumers.len();
            let Some(i) = (0..n)
                .map(|k| (self.cursor + k) % n)
                .find(|&i| self.consumers.get(i).is_some_and(Consumer::has_credit))
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
                        .find(|&j| self.consumers.get(j).is_some_and(Consumer::has_credit));
                    (other.unwrap_or(i), 0)
                }
            };
            let Some(c) = self.consumers.get_mut(i) else {
                return;
            };
            let Some((msg, _)) = self.ready.remove(pos) else {
                return;
            };
            self.cursor = (i + 1) % n;
            self.next_delivery += 1;
            let delivery = self.next_delivery;
            if c.ack != AckMode::Auto {
                c.inflight.insert(delivery, msg.clone());
            }
            out.push(Delivery {
                consumer: c.key,
                delivery,
                msg,
                tracked: c.ack != AckMode::Auto,
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
        q.add_consumer(key(1), AckMode::Auto, 1);
        let mut out = Vec::new();
        q.dispatch(&mut out);
        assert_eq!(
            out.iter().map(|d| d.msg.seq).collect::<Vec<_>>(),
            vec![2, 3]
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Subscribe(u32, u8, usize),
        Send,
        Ack(usize),
        Nack(usize),
        Unsubscribe(u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u32..4, 0u8..3, 1usize..4).prop_map(|(c, m, p)| Op::Subscribe(c, m, p)),
            Just(Op::Send),
            Just(Op::Send),
            any::<usize>().prop_map(Op::Ack),
            any::<usize>().prop_map(Op::Nack),
            (0u32..4).prop_map(Op::Unsubscribe),
        ]
    }

    proptest! {
        /// Against a plain model: every message sent is, at every step, exactly once either
        /// waiting or in flight until acked (auto-mode deliveries count as acked); nothing
        /// acked comes back; a message delivered a second time is marked redelivered; prefetch
        /// is never exceeded; and once consumers with credit exist, nothing waits.
        #[test]
        fn model(ops in prop::collection::vec(op(), 1..200)) {
            let mut q = Queue::new(10_000, Overflow::Reject);
            let mut next = 0u64;
            let mut done: HashSet<u64> = HashSet::new();
            let mut delivered_before: HashSet<u64> = HashSet::new();
            // consumer -> (mode, prefetch, inflight deliveries in order: (delivery, seq))
            // consumer -> (mode, prefetch, inflight (delivery, seq) in order)
            type Model = HashMap<u32, (AckMode, usize, Vec<(u64, u64)>)>;
            let mut model: Model = HashMap::new();
            let modes = [AckMode::Auto, AckMode::Client, AckMode::ClientIndividual];
            for op in ops {
                match op {
                    Op::Subscribe(c, m, p) => {
                        if let std::collections::hash_map::Entry::Vacant(e) = model.entry(c) {
                            q.add_consumer(key(c), modes[m as usize], p);
                            e.insert((modes[m as usize], p, Vec::new()));
                        }
                    }
                    Op::Send => {
                        next += 1;
                        q.enqueue(msg(next)).unwrap();
                    }
                    Op::Ack(i) | Op::Nack(i) => {
                        let mut all: Vec<(u32, u64, u64)> = model
                            .iter()
                            .flat_map(|(c, (_, _, v))| v.iter().map(move |(d, s)| (*c, *d, *s)))
                            .collect();
                        all.sort_unstable();
                        if all.is_empty() { continue; }
                        let (c, d, _) = all[i % all.len()];
                        let entry = model.get_mut(&c).unwrap();
                        let covered: Vec<(u64, u64)> = if entry.0 == AckMode::Client {
                            entry.2.iter().copied().filter(|(x, _)| *x <= d).collect()
                        } else {
                            entry.2.iter().copied().filter(|(x, _)| *x == d).collect()
                        };
                        entry.2.retain(|x| !covered.contains(x));
                        if matches!(op, Op::Ack(_)) {
                            q.ack(key(c), d).unwrap();
                            for (_, s) in covered { done.insert(s); }
                        } else {
                            q.nack(key(c), d).unwrap();
                        }
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
                    prop_assert!(!done.contains(&s), "acked message {s} delivered again");
                    prop_assert_eq!(d.msg.redelivered, delivered_before.contains(&s), "redelivered flag of {}", s);
                    delivered_before.insert(s);
                    let entry = model.get_mut(&d.consumer.slot).unwrap();
                    if entry.0 == AckMode::Auto {
                        done.insert(s);
                    } else {
                        entry.2.push((d.delivery, s));
                        prop_assert!(entry.2.len() <= entry.1, "prefetch exceeded");
                    }
                }
                // Conservation: every message not done is waiting or in flight, exactly once.
                let inflight: usize = model.values().map(|(_, _, v)| v.len()).sum();
                prop_assert_eq!(q.inflight_len(), inflight);
                prop_assert_eq!(q.ready_len() + inflight + done.len(), next as usize);
                let credit = model.values().any(|(m, p, v)| *m == AckMode::Auto || v.len() < *p);
                if credit {
                    prop_assert_eq!(q.ready_len(), 0, "messages wait while consumers have credit");
                }
            }
        }
    }
}
