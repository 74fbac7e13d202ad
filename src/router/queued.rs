//! The router's queue side: consumers of queues on this reactor (wherever each queue's home
//! is), acknowledgements checked where the client is, operations applied to the queues homed
//! here, deliveries onto connections, and the ack ids (`<slot>.<generation>.<delivery>`) that
//! name a delivery.

use super::message::{format_qid, parse_qid};
use super::*;

impl Router {
    /// Register a local queue consumer; returns its key (to send `AddConsumer` to the home).
    pub fn add_qsub(&mut self, queue: &str, sub: Subscriber) -> ConsumerKey {
        self.qgen = self.qgen.wrapping_add(1);
        let gen = self.qgen;
        let slot = self.qsubs.insert(QSub {
            sub,
            queue: Arc::from(queue),
            gen,
            unacked: VecDeque::new(),
            marks: VecDeque::new(),
            paused: false,
        });
        ConsumerKey {
            reactor: self.reactor as u16,
            slot: slot as u32,
            gen,
        }
    }

    /// Messages refused by full queues homed here, and messages dropped from them to make
    /// room, since the start.
    pub fn queue_losses(&self) -> (u64, u64) {
        (self.queue_rejected, self.queue_dropped)
    }

    /// The generation of a queue consumer slot, if in use.
    pub fn qsub_gen(&self, slot: u32) -> Option<u32> {
        self.qsubs.get(slot as usize).map(|q| q.gen)
    }

    /// Drop a local queue consumer (its unacked messages are requeued by the home).
    pub fn remove_qsub(&mut self, key: ConsumerKey) -> Option<QSub> {
        let slot = key.slot as usize;
        if self.qsubs.get(slot).is_some_and(|q| q.gen == key.gen) {
            Some(self.qsubs.remove(slot))
        } else {
            None
        }
    }

    /// Validate an ACK/NACK id from a client of this reactor. A queue delivery id yields the
    /// op for its queue's home; a topic message id needs nothing more.
    pub fn ack(&mut self, conn: usize, id: &str, nack: bool) -> Result<Option<QueueOp>, String> {
        let Some((slot, gen, delivery)) = parse_qid(id)? else {
            return Ok(None);
        };
        let reactor = self.reactor as u16;
        let q = self.qsub_of(conn, slot, gen, id)?;
        settle_unacked(&mut q.unacked, q.sub.ack, delivery, id)?;
        Ok(Some(QueueOp::Ack {
            queue: Arc::clone(&q.queue),
            key: ConsumerKey {
                reactor,
                slot: slot as u32,
                gen: q.gen,
            },
            delivery,
            nack,
        }))
    }

    /// Would these ACK/NACK ids, applied in order, all be accepted? Nothing changes (the `&mut`
    /// is only the shared lookup's): a transaction is checked whole before any of it is applied
    /// (an id that an earlier one in the list already covers is refused, as it would be).
    pub fn check_acks<'a>(
        &mut self,
        conn: usize,
        ids: impl Iterator<Item = &'a str>,
    ) -> Result<(), String> {
        // The unacked lists the ids touch, copied on first use (a COMMIT, not a hot path).
        let mut touched: Vec<(u64, VecDeque<u64>)> = Vec::new();
        for id in ids {
            let Some((slot, gen, delivery)) = parse_qid(id)? else {
                continue;
            };
            let q = self.qsub_of(conn, slot, gen, id)?;
            let i = match touched.iter().position(|(s, _)| *s == slot) {
                Some(i) => i,
                None => {
                    touched.push((slot, q.unacked.clone()));
                    touched.len() - 1
                }
            };
            if let Some((_, unacked)) = touched.get_mut(i) {
                settle_unacked(unacked, q.sub.ack, delivery, id)?;
            }
        }
        Ok(())
    }

    fn qsub_of(&mut self, conn: usize, slot: u64, gen: u64, id: &str) -> Result<&mut QSub, String> {
        self.qsubs
            .get_mut(slot as usize)
            .filter(|q| q.gen as u64 == gen && q.sub.conn == conn)
            .ok_or_else(|| format!("unknown ack id '{id}'"))
    }

    /// Apply an op to a queue homed here; deliveries go to `out`. An enqueue's verdict for its
    /// sender comes back (its origin, receipt, and why it was refused if it was).
    pub fn apply(&mut self, op: QueueOp, out: &mut Vec<Delivery>) -> Option<EnqueueVerdict> {
        let cfg = self.queue_cfg;
        let js = self.js_queues();
        let name = Arc::clone(op.queue());
        let q = match self.queues.entry(Arc::clone(&name)) {
            Entry::Occupied(e) => e.into_mut(),
            // JetStream holds the messages (and bounds them): here is only what this node took.
            Entry::Vacant(e) if js => e.insert(
                Queue::with_window(usize::MAX, Overflow::Reject, cfg.window).tracking_settled(),
            ),
            Entry::Vacant(e) => {
                // A new queue takes one of the broker's `max_queues`; a SEND past the bound is
                // refused (a consumer's queue is always made: subscriptions are bounded).
                let bound = match op {
                    QueueOp::Enqueue { .. } => cfg.max_queues,
                    _ => usize::MAX,
                };
                if let (
                    false,
                    QueueOp::Enqueue {
                        origin, receipt, ..
                    },
                ) = (self.directory.queue_created(bound), &op)
                {
                    self.queue_rejected += 1;
                    return Some(EnqueueVerdict {
                        origin: *origin,
                        receipt: receipt.clone(),
                        refused: Some("too many queues: message refused"),
                    });
                }
                e.insert(
                    Queue::with_window(cfg.max_messages, cfg.overflow, cfg.window)
                        .with_max_bytes(cfg.max_bytes),
                )
            }
        };
        let mut result = None;
        match op {
            QueueOp::Enqueue {
                msg,
                origin,
                receipt,
                ..
            } => {
                let dropped = q.dropped;
                let accepted = q.enqueue(msg).is_ok();
                self.queue_dropped += q.dropped - dropped;
                self.queue_rejected += u64::from(!accepted);
                if !accepted || receipt.is_some() {
                    result = Some(EnqueueVerdict {
                        origin,
                        receipt,
                        refused: (!accepted).then_some("queue full: message refused"),
                    });
                }
            }
            QueueOp::Written { key, up_to, .. } => q.written(key, up_to),
            QueueOp::Return { key, delivery, .. } => q.returned(key, delivery),
            QueueOp::Resume { key, .. } => q.resume(key),
            QueueOp::AddConsumer {
                key, ack, prefetch, ..
            } => q.add_consumer(key, ack, prefetch),
            QueueOp::RemoveConsumer { key, .. } => q.remove_consumer(key),
            QueueOp::Ack {
                key,
                delivery,
                nack,
                ..
            } => {
                // Validated where the client is; a stale one (consumer gone) is harmless.
                let _ = if nack {
                    q.nack(key, delivery)
                } else {
                    q.ack(key, delivery)
                };
            }
            QueueOp::Pulled { msgs, asked, .. } => {
                if let Some(n) = self.js_asked.get_mut(&name) {
                    *n = n.saturating_sub(asked);
                    if *n == 0 {
                        self.js_asked.remove(&name);
                    }
                }
                for (msg, reply) in msgs {
                    self.js_replies.insert(msg.seq, reply);
                    let _ = q.enqueue(msg);
                }
            }
        }
        q.dispatch(out);
        if js {
            js_settle(
                q,
                &name,
                &mut self.js_replies,
                &mut self.js_asked,
                self.cluster.as_mut(),
            );
        }
        if q.is_idle() {
            self.queues.remove(&name);
            if !js {
                self.directory.queue_removed();
            }
        }
        result
    }

    /// A delivery from a queue's home to a consumer on this reactor. It is queued on the
    /// consumer's connection if that has room; otherwise a `Return` for the home goes to `ops`.
    /// A consumer that is gone needs nothing: its home requeues what it had in flight when the
    /// consumer's removal arrives.
    pub fn deliver_queued(&mut self, d: &Delivery, sink: &mut impl Sink, ops: &mut Vec<QueueOp>) {
        let Some(q) = self
            .qsubs
            .get_mut(d.consumer.slot as usize)
            .filter(|q| q.gen == d.consumer.gen)
        else {
            return;
        };
        let s = &q.sub;
        let mut idb = [0u8; 64];
        let idn = format_qid(&mut idb, d.consumer.slot, d.consumer.gen, d.delivery);
        let id = idb.get(..idn).unwrap_or_default();
        let tracked = s.ack != AckMode::Auto;
        let ack = tracked && s.version == Version::V1_2;
        let shared = d.msg.payload.shared_for(s.version);
        let redelivered: &[u8] = if d.msg.redelivered {
            b"redelivered:true\n"
        } else {
            b""
        };
        let len = s.prefix.len()
            + 12
            + id.len()
            + if ack { 5 + id.len() } else { 0 }
            + redelivered.len()
            + shared.len();
        let mut h = [0u8; ws::frame::MAX_HEADER_LEN];
        let wsh = frame_head(&mut h, s.framing, d.msg.payload.text, len);
        let (ack_k, ack_v, ack_nl): (&[u8], &[u8], &[u8]) = if ack {
            (b"ack:", id, b"\n")
        } else {
            (b"", b"", b"")
        };
        let queued = sink.deliver_queued(
            s.conn,
            &[
                wsh,
                &s.prefix,
                b"message-id:",
                id,
                b"\n",
                ack_k,
                ack_v,
                ack_nl,
                redelivered,
            ],
            shared,
        );
        match queued {
            Queued::At(_) if tracked => q.unacked.push_back(d.delivery),
            Queued::At(end) => q.marks.push_back((d.delivery, end)),
            Queued::Full => {
                q.paused = true;
                ops.push(QueueOp::Return {
                    queue: Arc::clone(&q.queue),
                    key: d.consumer,
                    delivery: d.delivery,
                });
            }
            Queued::Gone => {}
        }
    }

    /// After a write on a consumer's connection (`written`: its output offset written so far;
    /// `room`: it has drained enough to take more): tell the queue's home which auto-mode
    /// deliveries are written, and resume a paused consumer. `true` while something is left to
    /// report later.
    pub fn after_write(
        &mut self,
        slot: u32,
        gen: u32,
        written: u64,
        room: bool,
        ops: &mut Vec<QueueOp>,
    ) -> bool {
        let reactor = self.reactor as u16;
        let Some(q) = self.qsubs.get_mut(slot as usize).filter(|q| q.gen == gen) else {
            return false;
        };
        let key = ConsumerKey { reactor, slot, gen };
        let mut up_to = None;
        while let Some(&(delivery, end)) = q.marks.front() {
            if end > written {
                break;
            }
            up_to = Some(delivery);
            q.marks.pop_front();
        }
        if let Some(up_to) = up_to {
            ops.push(QueueOp::Written {
                queue: Arc::clone(&q.queue),
                key,
                up_to,
            });
        }
        if q.paused && room {
            q.paused = false;
            ops.push(QueueOp::Resume {
                queue: Arc::clone(&q.queue),
                key,
            });
        }
        !q.marks.is_empty() || q.paused
    }
}

/// Take what an ACK/NACK of `delivery` covers out of a consumer's unacked list: that delivery,
/// or in `client` mode every one up to it (cumulative).
pub(super) fn settle_unacked(
    unacked: &mut VecDeque<u64>,
    mode: AckMode,
    delivery: u64,
    id: &str,
) -> Result<(), String> {
    let pos = unacked
        .iter()
        .position(|d| *d == delivery)
        .ok_or_else(|| format!("unknown ack id '{id}' (already acked?)"))?;
    if mode == AckMode::Client {
        unacked.drain(..=pos);
    } else {
        unacked.remove(pos);
    }
    Ok(())
}

impl Router {
    /// JetStream queue store: every message this reactor holds (waiting or delivered, not yet
    /// acknowledged) is still being worked on; run more often than the ack wait.
    pub fn js_keepalive(&mut self) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        for r in self.js_replies.values() {
            c.push(interest::Change::JsProgress(r.clone()));
        }
    }

    /// Over the queues homed here: (messages waiting, delivered and not yet acked, consumers).
    /// A walk of the queues: for metrics, a few times a second, not per turn.
    /// Each queue homed here: (name, ready, unacked, consumers).
    pub fn queue_details(&self, out: &mut Vec<(Arc<str>, u64, u64, u64)>) {
        out.extend(self.queues.iter().map(|(name, q)| {
            (
                Arc::clone(name),
                q.ready_len() as u64,
                q.inflight_len() as u64,
                q.consumer_count() as u64,
            )
        }));
    }

    /// Each queue homed here for the admin API: (name, ready, unacked, consumers, enqueued).
    pub fn visit_queues(&self, mut f: impl FnMut(&Arc<str>, u64, u64, u64, u64)) {
        for (name, q) in &self.queues {
            f(
                name,
                q.ready_len() as u64,
                q.inflight_len() as u64,
                q.consumer_count() as u64,
                q.enqueued,
            );
        }
    }

    /// Drop the messages waiting in a queue homed here (not those delivered and unacked):
    /// how many (`None`: no such queue here), and whether the stream is purged too. With the
    /// JetStream store, those this node holds are acknowledged there, and the bridge asks the
    /// stream to drop the queue's others and answers the admin API's request `ask` with their
    /// count: the queue need not be held here.
    pub fn purge(&mut self, queue: &str, ask: Option<u64>) -> (Option<u64>, bool) {
        let js = self.js_queues();
        let stream = |c: &mut interest::Interest| {
            c.push(interest::Change::JsPurge {
                queue: Arc::from(queue),
                ask,
            });
        };
        let Some(q) = self.queues.get_mut(queue) else {
            if let (true, Some(c)) = (js, self.cluster.as_mut()) {
                stream(c);
                return (None, true);
            }
            return (None, false);
        };
        let msgs = q.drain_ready();
        let n = msgs.len() as u64;
        if let Some(c) = self.cluster.as_mut() {
            for m in &msgs {
                if let Some(r) = self.js_replies.remove(&m.seq) {
                    c.push(interest::Change::JsAck(r));
                }
            }
            if js {
                stream(c);
            }
        }
        let stream = js && self.cluster.is_some();
        if q.is_idle() {
            self.queues.remove(queue);
            if !js {
                self.directory.queue_removed();
            }
        }
        (Some(n), stream)
    }

    /// Queues homed here.
    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }

    pub fn queue_gauges(&self) -> (usize, usize, usize) {
        self.queues.values().fold((0, 0, 0), |(r, u, c), q| {
            (
                r + q.ready_len(),
                u + q.inflight_len(),
                c + q.consumer_count(),
            )
        })
    }

    /// JetStream queue store: queues homed here whose last consumer left with messages still
    /// waiting give them back to JetStream (for consumers on other nodes) once that is older
    /// than `grace`. `now` is the caller's clock.
    pub fn js_release(&mut self, now: std::time::Instant, grace: std::time::Duration) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let replies = &mut self.js_replies;
        self.queues.retain(|name, q| {
            if q.consumer_count() > 0 || q.ready_len() == 0 {
                self.js_orphaned.remove(name);
                return !q.is_idle();
            }
            let since = *self.js_orphaned.entry(Arc::clone(name)).or_insert(now);
            if now.duration_since(since) < grace {
                return true;
            }
            for m in q.drain_ready() {
                if let Some(r) = replies.remove(&m.seq) {
                    c.push(interest::Change::JsNak(r));
                }
            }
            self.js_orphaned.remove(name);
            false
        });
    }

    /// JetStream queue store: messages this reactor holds.
    pub fn js_held(&self) -> usize {
        self.js_replies.len()
    }
}

/// Most messages one pull asks JetStream for.
const JS_PULL_MAX: usize = 256;

/// JetStream queue store, after an op on a queue homed here: acknowledge to JetStream what
/// left for good, give back what waits with no consumer left, and ask for as many more as
/// the consumers can take.
fn js_settle(
    q: &mut Queue,
    name: &Arc<str>,
    replies: &mut HashMap<u64, Box<str>>,
    asked: &mut HashMap<Arc<str>, usize>,
    bridge: Option<&mut interest::Interest>,
) {
    let Some(bridge) = bridge else {
        return;
    };
    for seq in q.take_settled() {
        if let Some(r) = replies.remove(&seq) {
            bridge.push(interest::Change::JsAck(r));
        }
    }
    if q.consumer_count() == 0 {
        // Kept a while for a consumer of this node to come back (order and the redelivered
        // flag as with the in-memory store); then given back ([`Router::js_release`]).
        return;
    }
    let pending = asked.get(name).copied().unwrap_or(0);
    let want = q
        .free_credit()
        .saturating_sub(q.ready_len() + pending)
        .min(JS_PULL_MAX);
    if want > 0 {
        *asked.entry(Arc::clone(name)).or_insert(0) += want;
        bridge.push(interest::Change::JsPull {
            queue: Arc::clone(name),
            n: want,
        });
    }
}
