//! Destinations and subscriptions. No threads, no I/O: a reactor owns one [`Router`] for its
//! own connections; the shared [`Directory`] only says which reactors have subscribers for a
//! destination, so a message crosses to another reactor at most once.

mod directory;
pub mod interest;
mod message;
pub mod queue;
mod queued;
pub mod subject;
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
/// How a connection's STOMP frames travel: each inside one WebSocket message, or as they are
/// over TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    WebSocket,
    Tcp,
}

#[derive(Debug, Clone)]
pub struct Subscriber {
    /// The connection (reactor-local token).
    pub conn: usize,
    pub ack: AckMode,
    pub version: Version,
    /// How frames travel to it.
    pub framing: Framing,
    /// `MESSAGE\nsubscription:<id>\n`, encoded once at subscribe time: the only copy of the
    /// id the router keeps (see [`Subscriber::is`]).
    pub prefix: Box<[u8]>,
}

/// What every subscriber's prefix starts with.
const PREFIX_HEAD: &[u8] = b"MESSAGE\nsubscription:";

impl Subscriber {
    pub fn new(conn: usize, id: &str, ack: AckMode, version: Version, framing: Framing) -> Self {
        let mut p = Vec::with_capacity(PREFIX_HEAD.len() + id.len() + 1);
        p.extend_from_slice(PREFIX_HEAD);
        encode_id(&mut p, id, version);
        p.push(b'\n');
        Subscriber {
            conn,
            ack,
            version,
            framing,
            prefix: p.into_boxed_slice(),
        }
    }

    /// Is this `conn`'s subscription `id`? (Read back from the prefix; unsubscribing is rare
    /// enough to encode the id again for it.)
    pub fn is(&self, conn: usize, id: &str) -> bool {
        if self.conn != conn {
            return false;
        }
        let mut want = Vec::with_capacity(id.len() + 4);
        encode_id(&mut want, id, self.version);
        let stored = self
            .prefix
            .get(PREFIX_HEAD.len()..self.prefix.len().saturating_sub(1))
            .unwrap_or_default();
        stored == want.as_slice()
    }
}

/// A subscription id as its MESSAGE header value: raw for 1.0, escaped for 1.1 and 1.2.
fn encode_id(out: &mut Vec<u8>, id: &str, version: Version) {
    if version == Version::V1_0 {
        out.extend_from_slice(id.as_bytes());
    } else {
        escape::escape_into(out, id.as_bytes());
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
    /// Cluster mode: the destination's NATS subject (`None`: standalone, or too long).
    subject: Option<Arc<str>>,
    /// Reactors with exact subscribers (shared with the directory).
    mask: Arc<AtomicU64>,
    /// Reactors with matching wildcard subscribers, and the pattern generation it was
    /// computed at.
    wild: (u64, u64),
    /// Messages published to it here (for the admin API).
    published: u64,
}

/// The subscribers of one wildcard pattern (patterns that normalise alike share one).
#[derive(Debug, Default)]
struct PatternSubs {
    subs: Vec<Subscriber>,
    /// The pattern as first subscribed (for the admin API).
    name: Option<Arc<str>>,
    /// Cluster mode: the NATS subjects that cover the pattern.
    covers: Box<[Arc<str>]>,
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
    (fnv1a(name) % n.max(1) as u64) as usize
}

/// FNV-1a of a name's bytes: the same on every thread, run and node.
pub fn fnv1a(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// A connection anywhere in the broker: its reactor and its token there (what an answer from
/// another thread is addressed to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    pub reactor: usize,
    pub token: usize,
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
    /// Where queued messages live.
    pub store: QueueStore,
    /// JetStream: the stream's replicas (1, or up to the NATS cluster's size).
    pub replicas: usize,
    /// JetStream: how long a delivered message may go unacknowledged before JetStream hands it
    /// out again (what a node that died held comes back after this).
    pub ack_wait: std::time::Duration,
    /// `/metrics` reports this many queues by name at most (the deepest): label cardinality
    /// stays bounded whatever the clients name.
    pub metrics_labels: usize,
}

/// Where queued messages live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueStore {
    /// In the home reactor's memory (standalone only; lost with the process).
    Memory,
    /// In a NATS JetStream stream (file storage): durable, shared by every node.
    JetStream,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            max_messages: 100_000,
            max_bytes: 64 << 20,
            max_queues: 10_000,
            overflow: Overflow::Reject,
            window: 2 << 20,
            store: QueueStore::Memory,
            replicas: 1,
            ack_wait: std::time::Duration::from_secs(30),
            metrics_labels: 100,
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
        /// Who sent it, for the RECEIPT or the ERROR if refused.
        origin: Origin,
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
    /// JetStream queue store: messages this home asked JetStream for (`asked` of them), each
    /// with the reply subject that acknowledges it there.
    Pulled {
        queue: Arc<str>,
        msgs: Vec<(QMsg, Box<str>)>,
        asked: usize,
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
            | QueueOp::Ack { queue, .. }
            | QueueOp::Pulled { queue, .. } => queue,
        }
    }
}

/// What the home says to a queue SEND's sender: a RECEIPT (if asked for) or an ERROR.
#[derive(Debug)]
pub struct EnqueueVerdict {
    pub origin: Origin,
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
    /// By name; the names are shared with the sessions subscribed (see [`Router::subscribe`]).
    dests: HashMap<Arc<str>, Dest>,
    patterns: Trie<PatternSubs>,
    /// Cluster mode: the NATS subjects this reactor's subscribers need.
    cluster: Option<interest::Interest>,
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
    /// JetStream queue store: per message taken from JetStream (by its `seq`), the reply
    /// subject that acknowledges it; and per queue, messages asked for and not yet arrived.
    js_replies: HashMap<u64, Box<str>>,
    js_asked: HashMap<Arc<str>, usize>,
    /// Queues homed here that lost their last consumer with messages waiting, and since when.
    js_orphaned: HashMap<Arc<str>, std::time::Instant>,
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
            cluster: None,
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
            js_replies: HashMap::new(),
            js_asked: HashMap::new(),
            js_orphaned: HashMap::new(),
        }
    }

    /// Cluster mode: destinations get NATS subjects under `prefix`, and message ids made here
    /// end in `id_suffix`.
    pub fn clustered(mut self, prefix: &str, id_suffix: &[u8]) -> Self {
        self.cluster = Some(interest::Interest::new(prefix, id_suffix));
        self
    }

    /// The id of topic message number `seq` published here.
    pub fn msg_id(&self, seq: u64) -> MsgId {
        match &self.cluster {
            Some(c) => MsgId::with_node(self.reactor, seq, c.id_suffix()),
            None => MsgId::new(self.reactor, seq),
        }
    }

    /// Cluster mode: why a destination cannot be used (queues need the JetStream store; a
    /// destination whose subject would be too long cannot cross).
    pub fn cluster_refuses(&self, destination: &str) -> Option<&'static str> {
        let c = self.cluster.as_ref()?;
        if kind(destination) == DestKind::Queue && !self.js_queues() {
            return Some("queues are not available in cluster mode");
        }
        let too_long = match kind(destination) {
            DestKind::Pattern => c.covers(destination).is_empty(),
            _ => c.too_long(destination),
        };
        too_long.then_some("destination too long for the cluster")
    }

    /// Queues live in JetStream (a SEND to a queue goes to the bridge, not to its home here).
    pub fn js_queues(&self) -> bool {
        self.queue_cfg.store == QueueStore::JetStream && self.cluster.is_some()
    }

    /// The NATS subject of a destination (cached with it; `None` standalone or too long).
    pub fn subject_of(&mut self, destination: &str) -> Option<&Arc<str>> {
        let d = dest_in(&mut self.dests, &self.directory, &self.cluster, destination);
        d.subject.as_ref()
    }

    /// Cluster mode: the subjects this reactor started or stopped needing since last taken,
    /// and the RECEIPTs waiting for them.
    pub fn interest_changes(&mut self) -> Option<&mut Vec<interest::Change>> {
        self.cluster.as_mut().map(|c| c.changes())
    }

    /// Cluster mode: if NATS may not yet have a subject that the subscription to `route` needs,
    /// answer its `receipt` once it has (`true`); otherwise (and standalone) answer it now.
    pub fn ready_after_interest(&mut self, route: &str, token: usize, receipt: Box<str>) -> bool {
        let Some(c) = &mut self.cluster else {
            return false;
        };
        let unsettled = if kind(route) == DestKind::Pattern {
            self.patterns
                .get_mut(route)
                .is_some_and(|p| p.covers.iter().any(|s| c.unsettled(s)))
        } else {
            self.dests
                .get(route)
                .and_then(|d| d.subject.as_deref())
                .is_some_and(|s| c.unsettled(s))
        };
        if unsettled {
            c.ready(token, receipt);
        }
        unsettled
    }

    /// Cluster mode: NATS has every subject this reactor asked for up to `upto`.
    pub fn cluster_confirmed(&mut self, upto: u64) {
        if let Some(c) = &mut self.cluster {
            c.confirm(upto);
        }
    }

    /// Cluster mode: NATS subjects this reactor's subscribers need.
    pub fn interest_len(&self) -> usize {
        self.cluster.as_ref().map_or(0, |c| c.len())
    }

    fn bit(&self) -> u64 {
        1u64 << (self.reactor % MAX_REACTORS)
    }

    /// Add a topic subscriber (exact or wildcard). The directory knows this reactor has
    /// subscribers before this returns, so a publish that starts afterwards on any reactor
    /// reaches it.
    /// Add a topic subscription. For an exact destination, returns the router's copy of its
    /// name, for the session to keep instead of one of its own (one string for every
    /// subscriber of a destination).
    pub fn subscribe(&mut self, destination: &str, sub: Subscriber) -> Option<Arc<str>> {
        let bit = self.bit();
        if kind(destination) == DestKind::Pattern {
            let p = self.patterns.entry(destination, PatternSubs::default);
            if p.name.is_none() {
                p.name = Some(Arc::from(destination));
            }
            if p.subs.is_empty() {
                self.directory.add_pattern(destination, bit);
                if let Some(c) = &mut self.cluster {
                    p.covers = c.covers(destination);
                    for s in p.covers.iter() {
                        c.add(s);
                    }
                }
            }
            p.subs.push(sub);
            self.pattern_sub_count += 1;
            return None;
        }
        let d = dest_in(&mut self.dests, &self.directory, &self.cluster, destination);
        if d.subs.is_empty() {
            d.mask.fetch_or(bit, Ordering::SeqCst);
            self.live_dests += 1;
            if let (Some(c), Some(s)) = (&mut self.cluster, &d.subject) {
                c.add(s);
            }
        }
        if d.subs.is_empty() {
            // Many destinations have one subscriber: room for one, not four.
            d.subs.reserve_exact(1);
        }
        d.subs.push(sub);
        self.topic_sub_count += 1;
        self.dests
            .get_key_value(destination)
            .map(|(name, _)| Arc::clone(name))
    }

    /// Remove one topic subscription of `conn` by id.
    pub fn unsubscribe(&mut self, destination: &str, conn: usize, id: &str) {
        let bit = self.bit();
        if kind(destination) == DestKind::Pattern {
            if let Some(p) = self.patterns.get_mut(destination) {
                let before = p.subs.len();
                p.subs.retain(|s| !s.is(conn, id));
                self.pattern_sub_count -= before - p.subs.len();
                if p.subs.is_empty() {
                    if let Some(p) = self.patterns.remove(destination) {
                        if let Some(c) = &mut self.cluster {
                            for s in p.covers.iter() {
                                c.remove(s);
                            }
                        }
                    }
                    self.directory.remove_pattern(destination, bit);
                }
            }
            return;
        }
        if let Some(d) = self.dests.get_mut(destination) {
            if let Some(i) = d.subs.iter().position(|s| s.is(conn, id)) {
                // Keep the order of the remaining subscribers.
                d.subs.remove(i);
                self.topic_sub_count -= 1;
                if d.subs.is_empty() {
                    d.mask.fetch_and(!bit, Ordering::SeqCst);
                    self.live_dests -= 1;
                    if let (Some(c), Some(s)) = (&mut self.cluster, &d.subject) {
                        c.remove(s);
                    }
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
        self.remote(destination).0
    }

    /// [`Router::remote_mask`], and in cluster mode the destination's NATS subject (cached with
    /// the destination: nothing is allocated per publish).
    pub fn remote(&mut self, destination: &str) -> (u64, Option<&Arc<str>>) {
        let bit = self.bit();
        // Borrowed beside the cache, not cloned: an Arc clone per publish would bounce its
        // shared counter between the reactors.
        let dir = &*self.directory;
        let d = dest_in(&mut self.dests, dir, &self.cluster, destination);
        d.published += 1;
        let mut mask = d.mask.load(Ordering::SeqCst);
        if dir.has_patterns() {
            let gen = dir.pattern_generation();
            if d.wild.0 != gen {
                d.wild = (gen, dir.pattern_mask(destination));
            }
            mask |= d.wild.1;
        }
        (mask & !bit, d.subject.as_ref())
    }

    /// Deliver to every local subscriber of `msg.destination`, exact and wildcard.
    pub fn deliver_local(&self, msg: &Published, sink: &mut impl Sink) -> usize {
        let subs = self.local(&msg.destination);
        for s in subs {
            deliver(s, msg, sink);
        }
        let mut n = subs.len();
        if !self.patterns.is_empty() {
            self.patterns.for_each_match(&msg.destination, |p| {
                for s in &p.subs {
                    deliver(s, msg, sink);
                }
                n += p.subs.len();
            });
        }
        n
    }

    /// Deliver a message another node published, which arrived through this node's NATS
    /// subscription to `via`: to the exact subscribers of its destination if `via` is that
    /// destination's own subject, and to the matching patterns that `via` covers. Each local
    /// subscription gets it once however many of the node's NATS subscriptions it matched.
    pub fn deliver_cluster(&self, msg: &Published, via: &str, sink: &mut impl Sink) -> usize {
        let mut n = 0;
        if !crate::router::subject::is_wildcard(via) {
            let subs = self.local(&msg.destination);
            for s in subs {
                deliver(s, msg, sink);
            }
            n += subs.len();
        }
        if !self.patterns.is_empty() {
            self.patterns.for_each_match(&msg.destination, |p| {
                if p.covers.iter().any(|c| **c == *via) {
                    for s in &p.subs {
                        deliver(s, msg, sink);
                    }
                    n += p.subs.len();
                }
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

    /// Topics known here, for the admin API: `f(name, local subscribers, messages published
    /// here)` for each exact destination with subscribers or messages, then each wildcard
    /// pattern with subscribers (published 0). A walk of the cache: not per turn.
    pub fn visit_topics(&self, mut f: impl FnMut(&Arc<str>, usize, u64)) {
        for (name, d) in &self.dests {
            if !d.subs.is_empty() || d.published > 0 {
                f(name, d.subs.len(), d.published);
            }
        }
        self.patterns.visit(|p| {
            if let (Some(name), false) = (&p.name, p.subs.is_empty()) {
                f(name, p.subs.len(), 0);
            }
        });
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
}

/// The cached entry of a destination, created (with its directory cell) if missing.
fn dest_in<'a>(
    dests: &'a mut HashMap<Arc<str>, Dest>,
    directory: &Directory,
    cluster: &Option<interest::Interest>,
    destination: &str,
) -> &'a mut Dest {
    if !dests.contains_key(destination) {
        if dests.len() >= MAX_CACHED {
            dests.retain(|_, d| !d.subs.is_empty());
        }
        // One copy of the name for this entry and the directory's key.
        let name: Arc<str> = Arc::from(destination);
        let mask = directory.entry(&name);
        dests.insert(
            name,
            Dest {
                subs: Vec::new(),
                subject: cluster.as_ref().and_then(|c| c.subject(destination)),
                mask,
                wild: (u64::MAX, 0),
                published: 0,
            },
        );
    }
    // Just inserted if it was missing.
    dests.get_mut(destination).unwrap_or_else(|| unreachable!())
}

/// One delivery: a small per-subscriber head (WebSocket header, MESSAGE, subscription, ack)
/// next to the shared part. Allocates nothing; the head is copied once, into the queue.
///
/// (See [`frame_head`] for what goes before a MESSAGE of `len` bytes on a WebSocket.)
#[inline]
pub fn deliver(s: &Subscriber, msg: &Published, sink: &mut impl Sink) {
    let shared = msg.shared_for(s.version);
    let ack = s.ack != AckMode::Auto && s.version == Version::V1_2;
    let id = msg.id.as_bytes();
    let ack_len = if ack { 5 + id.len() } else { 0 };
    let mut h = [0u8; ws::frame::MAX_HEADER_LEN];
    let len = s.prefix.len() + ack_len + shared.len();
    let wsh = frame_head(&mut h, s.framing, msg.text, len);
    if ack {
        sink.deliver(s.conn, &[wsh, &s.prefix, b"ack:", id, b"\n"], shared);
    } else {
        sink.deliver(s.conn, &[wsh, &s.prefix], shared);
    }
}

/// What goes before a MESSAGE of `len` bytes for a subscriber: on a WebSocket, the header of
/// the one message that carries it (text when the frame is UTF-8, else binary); over TCP,
/// nothing. Written into `h`, returned as the slice to send.
#[inline]
pub(crate) fn frame_head(
    h: &mut [u8; ws::frame::MAX_HEADER_LEN],
    framing: Framing,
    text: bool,
    len: usize,
) -> &[u8] {
    let k = match framing {
        Framing::WebSocket => {
            let op = if text {
                ws::Opcode::Text
            } else {
                ws::Opcode::Binary
            };
            ws::encode_header(h, true, op, len as u64, None)
        }
        Framing::Tcp => 0,
    };
    h.get(..k).unwrap_or_default()
}
