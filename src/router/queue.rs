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
    /// Messages accepted since the queue was made.
    pub enqueued: u64,
    /// Record what leaves for good (acked, or written in auto mode) in `settled`: a queue whose
    /// messages live in JetStream must acknowledge each one there.
    track_settled: bool,
    settled: Vec<u64>,
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
            enqueued: 0,
            track_settled: false,
            settled: Vec::new(),
        }
    }

    /// Record the `seq` of every message that leaves for good (see [`Queue::take_settled`]).
    pub fn tracking_settled(mut self) -> Self {
        self.track_settled = true;
        self
    }

    /// The `seq`s of the messages that left for good since last asked (tracking queues only).
    pub fn take_settled(&mut self) -> std::vec::Drain<'_, u64> {
        self.settled.drain(..)
    }

    /// Deliveries the consumers could take now (prefetch less what they hold), not counting
    /// paused ones.
    pub fn free_credit(&self) -> usize {
        self.consumers
            .iter()
            .filter(|c| !c.paused)
            .map(|c| c.prefetch.saturating_sub(c.inflight.len()))
            .sum()
    }

    /// Take every waiting message out (a store-backed queue without consumers gives them back).
    pub fn drain_ready(&mut self) -> Vec<QMsg> {
        self.ready_bytes = 0;
        self.ready.drain(..).map(|(m, _)| m).collect()
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
        self.enqueued += 1;
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
        let track = self.track_settled;
        let Some(c) = self.consumers.iter_mut().find(|c| c.key == key) else {
            return;
        };
        if c.ack != AckMode::Auto {
            return;
        }
        if track {
            let mut done = Vec::new();
            c.take_through(up_to, Some(&mut done));
            self.settled.extend(done.iter().map(|m| m.seq));
        } else {
            c.take_through(up_to, None);
        }
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
        let track = self.track_settled;
        let c = self
            .consumers
            .iter_mut()
            .find(|c| c.key == key)
            .ok_or(AckError::UnknownConsumer)?;
        if c.position(delivery).is_none() {
            return Err(AckError::UnknownDelivery);
        }
        let collect = keep || track;
        let mut taken = Vec::new();
        if c.ack == AckMode::Client {
            c.take_through(delivery, collect.then_some(&mut taken));
        } else if let Some(m) = c.take(delivery) {
            if collect {
                taken.push(m);
            }
        }
        if track && !keep {
            self.settled.extend(taken.drain(..).map(|m| m.seq));
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
mod tests;
