//! Destinations and subscriptions. No threads, no I/O: a reactor owns one [`Router`] for its
//! own connections; the shared [`Directory`] only says which reactors have subscribers for a
//! destination, so a message crosses to another reactor at most once.

mod directory;
mod message;
pub mod queue;
pub mod wildcard;

pub use directory::{Directory, MAX_REACTORS};
pub use message::{encode_shared, encode_shared_as, MsgId, Published};
pub use queue::{ConsumerKey, Delivery, Overflow, QMsg, Queue};

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use slab::Slab;

use crate::session::AckMode;
use crate::stomp::{escape, Version};
use crate::ws;
use wildcard::Trie;

/// One subscription, as the router sees it.
#[derive(Debug, Clone)]
pub struct Subscriber {
    /// The connection (reactor-local token).
    pub conn: usize,
    /// Raw STOMP id.
    pub id: Box<str>,
    pub ack: AckMode,
    pub version: Version,
    /// Frames go inside WebSocket messages.
    pub ws: bool,
    /// `MESSAGE\nsubscription:<id>\n`, encoded once at subscribe time.
    pub prefix: Box<[u8]>,
}

impl Subscriber {
    pub fn new(conn: usize, id: &str, ack: AckMode, version: Version, ws: bool) -> Self {
        let mut p = b"MESSAGE\nsubscription:".to_vec();
        if version == Version::V1_0 {
            p.extend_from_slice(id.as_bytes());
        } else {
            escape::escape_into(&mut p, id.as_bytes());
        }
        p.push(b'\n');
        Subscriber {
            conn,
            id: id.into(),
            ack,
            version,
            ws,
            prefix: p.into_boxed_slice(),
        }
    }
}

/// Where deliveries go. The server writes into connection queues; benches use a mock.
pub trait Sink {
    /// Queue the `head` parts (small: copied) then `shared` (referenced, not copied) for `conn`.
    fn deliver(&mut self, conn: usize, head: &[&[u8]], shared: &Arc<[u8]>);

    /// A queue delivery: never dropped. It is queued only if `conn` has outbound room, and then
    /// the answer says at which offset of the connection's output it ends (so the queue can be
    /// told once it is written).
    fn deliver_queued(&mut self, conn: usize, head: &[&[u8]], shared: &Arc<[u8]>) -> Queued {
        self.deliver(conn, head, shared);
        Queued::At(0)
    }
}

/// What became of a queue delivery at its consumer's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// Queued; it ends at this offset of the connection's output.
    At(u64),
    /// No outbound room: not queued (the queue takes it back).
    Full,
    /// The connection is gone or closing (its consumer's removal requeues it).
    Gone,
}

#[derive(Debug)]
struct Dest {
    subs: Vec<Subscriber>,
    /// Reactors with exact subscribers (shared with the directory).
    mask: Arc<AtomicU64>,
    /// Reactors with matching wildcard subscribers, and the pattern generation it was
    /// computed at.
    wild: (u64, u64),
}

/// How a destination is routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestKind {
    /// `/queue/...`: each message to one consumer.
    Queue,
    /// A `/topic/` subscription with `*` or `#` words.
    Pattern,
    /// Everything else: every subscriber gets every message.
    Topic,
}

/// Which of `n` places (reactors, workers) a name goes to: FNV-1a of its bytes, so the answer
/// is the same on every thread and every run.
pub fn spread(name: &str, n: usize) -> usize {
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    (h % n.max(1) as u64) as usize
}

pub fn kind(destination: &str) -> DestKind {
    if destination.starts_with("/queue/") {
        DestKind::Queue
    } else if wildcard::is_pattern(destination) {
        DestKind::Pattern
    } else {
        DestKind::Topic
    }
}

/// Queue settings.
#[derive(Debug, Clone, Copy)]
pub struct QueueConfig {
    /// Messages waiting in one queue.
    pub max_messages: usize,
    /// Bytes of the messages waiting in one queue.
    pub max_bytes: usize,
    /// Queues in the broker (a SEND that would make one more is refused).
    pub max_queues: usize,
    pub overflow: Overflow,
    /// Bytes in flight to one consumer before it waits (the server sets half the outbound
    /// bound; at least one message always goes).
    pub window: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            max_messages: 100_000,
            max_bytes: 64 << 20,
            max_queues: 10_000,
            overflow: Overflow::Reject,
            window: 2 << 20,
        }
    }
}

/// A local consumer of a queue (which may live on another reactor).
#[derive(Debug)]
pub struct QSub {
    pub sub: Subscriber,
    pub queue: Arc<str>,
    pub gen: u32,
    /// Deliveries not yet acked, in order (client modes only; bounded by the prefetch).
    unacked: VecDeque<u64>,
    /// Auto mode: deliveries queued on the connection and where in its output each ends, until
    /// written (bounded by the prefetch).
    marks: VecDeque<(u64, u64)>,
    /// A delivery was handed back for want of room: the home waits for a resume.
    paused: bool,
}

impl QSub {
    /// Auto mode: the last delivery queued on the connection and not yet reported written.
    pub fn last_queued(&self) -> Option<u64> {
        self.marks.back().map(|(d, _)| *d)
    }
}

/// Work for a queue's home reactor.
#[derive(Debug)]
pub enum QueueOp {
    Enqueue {
        queue: Arc<str>,
        msg: QMsg,
        /// Who sent it: (reactor, connection), for the RECEIPT or the ERROR if refused.
        origin: (u16, usize),
        /// The SEND's receipt id, answered once the queue has accepted the message.
        receipt: Option<Box<str>>,
    },
    /// An auto-mode consumer's connection wrote its deliveries up to `up_to`.
    Written {
        queue: Arc<str>,
        key: ConsumerKey,
        up_to: u64,
    },
    /// A delivery its consumer's connection had no room for: back to the queue, and the
    /// consumer waits for `Resume`.
    Return {
        queue: Arc<str>,
        key: ConsumerKey,
        delivery: u64,
    },
    /// The consumer's connection drained: deliveries may flow again.
    Resume {
        queue: Arc<str>,
        key: ConsumerKey,
    },
    AddConsumer {
        queue: Arc<str>,
        key: ConsumerKey,
        ack: AckMode,
        prefetch: usize,
    },
    RemoveConsumer {
        queue: Arc<str>,
        key: ConsumerKey,
    },
    Ack {
        queue: Arc<str>,
        key: ConsumerKey,
        delivery: u64,
        nack: bool,
    },
}

impl QueueOp {
    pub fn queue(&self) -> &Arc<str> {
        match self {
            QueueOp::Enqueue { queue, .. }
            | QueueOp::Written { queue, .. }
            | QueueOp::Return { queue, .. }
            | QueueOp::Resume { queue, .. }
            | QueueOp::AddConsumer { queue, .. }
            | QueueOp::RemoveConsumer { queue, .. }
            | QueueOp::Ack { queue, .. } => queue,
        }
    }
}

/// What the home says to a queue SEND's sender: a RECEIPT (if asked for) or an ERROR.
#[derive(Debug)]
pub struct EnqueueVerdict {
    pub origin: (u16, usize),
    pub receipt: Option<Box<str>>,
    /// Why the queue refused the message (`None`: accepted).
    pub refused: Option<&'static str>,
}

/// A reactor's routing state: its own connections' subscriptions, the queues it is home to,
/// and its view of the shared directory.
#[derive(Debug)]
pub struct Router {
    reactor: usize,
    reactors: usize,
    directory: Arc<Directory>,
    dests: HashMap<Box<str>, Dest>,
    patterns: Trie<Vec<Subscriber>>,
    qsubs: Slab<QSub>,
    qgen: u32,
    queues: HashMap<Arc<str>, Queue>,
    queue_cfg: QueueConfig,
    seq: u64,
    pattern_sub_count: usize,
    /// Exact topic subscriptions here, and destinations with at least one: kept as they change,
    /// since metrics read them every loop turn (counting the cache would cost a walk of it).
    topic_sub_count: usize,
    live_dests: usize,
    /// Messages queues homed here refused when full (`reject`) or dropped to make room
    /// (`drop-oldest`), for metrics: a refused SEND gets an ERROR, but a message from the
    /// embedding API has nobody to tell.
    queue_rejected: u64,
    queue_dropped: u64,
}

/// Destinations cached without local subscribers before the cache is pruned.
const MAX_CACHED: usize = 65_536;

impl Router {
    pub fn new(reactor: usize, directory: Arc<Directory>) -> Self {
        Router::with_config(reactor, 1, directory, QueueConfig::default())
    }

    pub fn with_config(
        reactor: usize,
        reactors: usize,
        directory: Arc<Directory>,
        queue_cfg: QueueConfig,
    ) -> Self {
        Router {
            reactor,
            reactors: reactors.max(1),
            directory,
            dests: HashMap::new(),
            patterns: Trie::default(),
            qsubs: Slab::new(),
            qgen: 0,
            queues: HashMap::new(),
            queue_cfg,
            seq: 0,
            pattern_sub_count: 0,
            topic_sub_count: 0,
            live_dests: 0,
            queue_rejected: 0,
            queue_dropped: 0,
        }
    }

    fn bit(&self) -> u64 {
        1u64 << (self.reactor % MAX_REACTORS)
    }

    /// Add a topic subscriber (exact or wildcard). The directory knows this reactor has
    /// subscribers before this returns, so a publish that starts afterwards on any reactor
    /// reaches it.
    pub fn subscribe(&mut self, destination: &str, sub: Subscriber) {
        let bit = self.bit();
        if kind(destination) == DestKind::Pattern {
            let subs = self.patterns.entry(destination, Vec::new);
            if subs.is_empty() {
                self.directory.add_pattern(destination, bit);
            }
            subs.push(sub);
            self.pattern_sub_count += 1;
            return;
        }
        let d = dest_in(&mut self.dests, &self.directory, destination);
        if d.subs.is_empty() {
            d.mask.fetch_or(bit, Ordering::SeqCst);
            self.live_dests += 1;
        }
        d.subs.push(sub);
        self.topic_sub_count += 1;
    }

    /// Remove one topic subscription of `conn` by id.
    pub fn unsubscribe(&mut self, destination: &str, conn: usize, id: &str) {
        let bit = self.bit();
        if kind(destination) == DestKind::Pattern {
            if let Some(subs) = self.patterns.get_mut(destination) {
                let before = subs.len();
                subs.retain(|s| !(s.conn == conn && *s.id == *id));
                self.pattern_sub_count -= before - subs.len();
                if subs.is_empty() {
                    self.patterns.remove(destination);
                    self.directory.remove_pattern(destination, bit);
                }
            }
            return;
        }
        if let Some(d) = self.dests.get_mut(destination) {
            if let Some(i) = d.subs.iter().position(|s| s.conn == conn && *s.id == *id) {
                // Keep the order of the remaining subscribers.
                d.subs.remove(i);
                self.topic_sub_count -= 1;
                if d.subs.is_empty() {
                    d.mask.fetch_and(!bit, Ordering::SeqCst);
                    self.live_dests -= 1;
                }
            }
        }
    }

    /// Local exact subscribers of a destination.
    pub fn local(&self, destination: &str) -> &[Subscriber] {
        self.dests
            .get(destination)
            .map(|d| d.subs.as_slice())
            .unwrap_or_default()
    }

    /// Reactors (bitmask) with subscribers for `destination`, other than this one.
    pub fn remote_mask(&mut self, destination: &str) -> u64 {
        let bit = self.bit();
        // Borrowed beside the cache, not cloned: an Arc clone per publish would bounce its
        // shared counter between the reactors.
        let dir = &*self.directory;
        let d = dest_in(&mut self.dests, dir, destination);
        let mut mask = d.mask.load(Ordering::SeqCst);
        if dir.has_patterns() {
            let gen = dir.pattern_generation();
            if d.wild.0 != gen {
                d.wild = (gen, dir.pattern_mask(destination));
            }
            mask |= d.wild.1;
        }
        mask & !bit
    }

    /// Deliver to every local subscriber of `msg.destination`, exact and wildcard.
    pub fn deliver_local(&self, msg: &Published, sink: &mut impl Sink) -> usize {
        let subs = self.local(&msg.destination);
        for s in subs {
            deliver(s, msg, sink);
        }
        let mut n = subs.len();
        if !self.patterns.is_empty() {
            self.patterns.for_each_match(&msg.destination, |subs| {
                for s in subs {
                    deliver(s, msg, sink);
                }
                n += subs.len();
            });
        }
        n
    }

    // ---- queues ----

    /// The reactor that owns a queue.
    pub fn home_of(&self, queue: &str) -> usize {
        spread(queue, self.reactors)
    }

    /// The next message sequence number for a queue message published here.
    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        ((self.reactor as u64) << 48) | self.seq
    }

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

    /// (subscriptions, destinations) held here, for metrics. Counts topic and queue
    /// subscriptions of this reactor's connections, and destinations with local subscribers or
    /// homed queues.
    pub fn sizes(&self) -> (usize, usize) {
        let dests = self.live_dests + self.patterns.len() + self.queues.len();
        (
            self.topic_sub_count + self.pattern_sub_count + self.qsubs.len(),
            dests,
        )
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
    /// sender comes back: `Some((origin, receipt, accepted))`.
    pub fn apply(&mut self, op: QueueOp, out: &mut Vec<Delivery>) -> Option<EnqueueVerdict> {
        let cfg = self.queue_cfg;
        let name = Arc::clone(op.queue());
        let q = match self.queues.entry(Arc::clone(&name)) {
            Entry::Occupied(e) => e.into_mut(),
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
        }
        q.dispatch(out);
        if q.is_idle() {
            self.queues.remove(&name);
            self.directory.queue_removed();
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
        let k = if s.ws {
            let op = if d.msg.payload.text {
                ws::Opcode::Text
            } else {
                ws::Opcode::Binary
            };
            ws::encode_header(&mut h, true, op, len as u64, None)
        } else {
            0
        };
        let wsh = h.get(..k).unwrap_or_default();
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

/// An ack id: `Some((slot, gen, delivery))` for a queue delivery (`q<slot>.<gen>.<delivery>`),
/// `None` for a well-formed topic message id (`m<reactor>-<seq>`, not tracked).
fn parse_qid(id: &str) -> Result<Option<(u64, u64, u64)>, String> {
    if let Some(rest) = id.strip_prefix('q') {
        let mut it = rest.split('.').map(|p| p.parse::<u64>().ok());
        return match (it.next(), it.next(), it.next(), it.next()) {
            (Some(Some(slot)), Some(Some(gen)), Some(Some(delivery)), None) => {
                Ok(Some((slot, gen, delivery)))
            }
            _ => Err(format!("unknown ack id '{id}'")),
        };
    }
    let topic_id = id
        .strip_prefix('m')
        .and_then(|r| r.split_once('-'))
        .is_some_and(|(a, b)| a.parse::<u64>().is_ok() && b.parse::<u64>().is_ok());
    if topic_id {
        Ok(None)
    } else {
        Err(format!("unknown ack id '{id}'"))
    }
}

/// Take what an ACK/NACK of `delivery` covers out of a consumer's unacked list: that delivery,
/// or in `client` mode every one up to it (cumulative).
fn settle_unacked(
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

/// The cached entry of a destination, created (with its directory cell) if missing.
fn dest_in<'a>(
    dests: &'a mut HashMap<Box<str>, Dest>,
    directory: &Directory,
    destination: &str,
) -> &'a mut Dest {
    if !dests.contains_key(destination) {
        if dests.len() >= MAX_CACHED {
            dests.retain(|_, d| !d.subs.is_empty());
        }
        let mask = directory.entry(destination);
        dests.insert(
            destination.into(),
            Dest {
                subs: Vec::new(),
                mask,
                wild: (u64::MAX, 0),
            },
        );
    }
    // Just inserted if it was missing.
    dests.get_mut(destination).unwrap_or_else(|| unreachable!())
}

/// `q<slot>.<gen>.<delivery>`: the message-id and ack id of a queue delivery.
fn format_qid(buf: &mut [u8; 64], slot: u32, gen: u32, delivery: u64) -> usize {
    let mut n = 0;
    let mut put = |b: u8| {
        if let Some(x) = buf.get_mut(n) {
            *x = b;
            n += 1;
        }
    };
    put(b'q');
    for (i, v) in [slot as u64, gen as u64, delivery].into_iter().enumerate() {
        if i > 0 {
            put(b'.');
        }
        let mut digits = [0u8; 20];
        let mut k = digits.len();
        let mut v = v;
        loop {
            k -= 1;
            if let Some(d) = digits.get_mut(k) {
                *d = b'0' + (v % 10) as u8;
            }
            v /= 10;
            if v == 0 || k == 0 {
                break;
            }
        }
        for &d in digits.get(k..).unwrap_or_default() {
            put(d);
        }
    }
    n
}

/// One delivery: a small per-subscriber head (WebSocket header, MESSAGE, subscription, ack)
/// next to the shared part. Allocates nothing; the head is copied once, into the queue.
#[inline]
pub fn deliver(s: &Subscriber, msg: &Published, sink: &mut impl Sink) {
    let shared = msg.shared_for(s.version);
    let ack = s.ack != AckMode::Auto && s.version == Version::V1_2;
    let id = msg.id.as_bytes();
    let ack_len = if ack { 5 + id.len() } else { 0 };
    let mut h = [0u8; ws::frame::MAX_HEADER_LEN];
    let k = if s.ws {
        let op = if msg.text {
            ws::Opcode::Text
        } else {
            ws::Opcode::Binary
        };
        let len = s.prefix.len() + ack_len + shared.len();
        ws::encode_header(&mut h, true, op, len as u64, None)
    } else {
        0
    };
    let wsh = h.get(..k).unwrap_or_default();
    if ack {
        sink.deliver(s.conn, &[wsh, &s.prefix, b"ack:", id, b"\n"], shared);
    } else {
        sink.deliver(s.conn, &[wsh, &s.prefix], shared);
    }
}
