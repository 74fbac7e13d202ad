//! Cluster mode's bridge thread: the node's one NATS connection (async-nats on a
//! current-thread tokio runtime that lives only here) between the reactors and NATS.
//!
//! Reactors never wait for it. Up: a reactor puts a message on a bounded channel with
//! `try_send` (full, or over the byte bound: dropped and counted) and rings a tokio `Notify`
//! once per loop turn; interest changes go on a second channel that is never dropped from (a
//! reactor keeps what does not fit and retries). Down: the bridge decodes a message once and
//! puts it on the bounded channel of each reactor that needs its subject (full: dropped and
//! counted), then rings that reactor's mio `Waker`. One NATS subscription per subject the node
//! needs, whatever the number of reactors and local subscribers behind it; async-nats
//! reconnects, fails over between the seed URLs and re-subscribes by itself.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use futures_util::StreamExt;
use tokio::sync::Notify;

use super::mailbox::Mail;
use super::mailbox::Mailbox;
use crate::cluster::{wire, ClusterConfig};
use crate::router::interest::Change;
use crate::router::Published;

/// How often the bridge looks at the shutdown flag when nothing else wakes it.
const IDLE: Duration = Duration::from_millis(100);
/// Queue SENDs on their way to JetStream at once (waiting for the bridge, or for JetStream's
/// acknowledgement); past it a SEND is refused with an ERROR.
const JS_INFLIGHT: usize = 1024;
/// How long a queue SEND waits for JetStream to store it before it fails.
const JS_PUBLISH_WAIT: Duration = Duration::from_secs(5);
/// How long a pull waits for messages before it comes back empty (and is asked again).
const JS_PULL_WAIT: Duration = Duration::from_secs(2);

/// Messages published to NATS before the bridge lets its other tasks run.
const UP_BATCH: usize = 1024;
/// How long a SUBSCRIBE's RECEIPT waits for NATS (then it goes anyway).
const READY_WAIT: Duration = Duration::from_secs(2);
/// Interest changes waiting for the bridge (a reactor keeps the rest and retries).
const CONTROL_BOUND: usize = 4096;

/// Why a topic message did not cross (the `reason` label of `stompbox_cluster_dropped_total`).
#[derive(Debug, Clone, Copy)]
pub enum Dropped {
    /// The queue up to the bridge was full (messages or bytes).
    UpFull,
    /// NATS was not connected.
    Disconnected,
    /// NATS refused it (larger than its `max_payload`, or the connection closed meanwhile).
    Refused,
    /// A reactor's queue down from the bridge was full.
    DownFull,
    /// What arrived was not a message this mapping makes.
    Invalid,
    /// The NATS client's own buffer for a subscription overflowed (a slow bridge).
    SlowConsumer,
}

impl Dropped {
    pub const ALL: [Dropped; 6] = [
        Dropped::UpFull,
        Dropped::Disconnected,
        Dropped::Refused,
        Dropped::DownFull,
        Dropped::Invalid,
        Dropped::SlowConsumer,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Dropped::UpFull => "up_full",
            Dropped::Disconnected => "disconnected",
            Dropped::Refused => "refused",
            Dropped::DownFull => "down_full",
            Dropped::Invalid => "invalid",
            Dropped::SlowConsumer => "slow_consumer",
        }
    }
}

/// The cluster link as `/metrics` and `/healthz` show it.
#[derive(Debug, Default)]
pub struct ClusterStats {
    pub node: String,
    pub up: AtomicBool,
    pub connects: AtomicU64,
    pub disconnects: AtomicU64,
    /// Messages published to NATS, and received from it.
    pub published: AtomicU64,
    pub received: AtomicU64,
    dropped: [AtomicU64; 6],
    /// NATS subscriptions held.
    pub subscriptions: AtomicUsize,
    /// Bytes of messages waiting to go up.
    pending_up: AtomicUsize,
    /// JetStream queue store: messages stored, SENDs that failed (store busy, unavailable or
    /// refusing), messages taken for this node's consumers.
    pub queue_stored: AtomicU64,
    pub queue_failed: AtomicU64,
    pub queue_pulled: AtomicU64,
    /// Messages in the queue stream (all queues, all nodes), as JetStream last said.
    pub queue_depth: AtomicU64,
    /// This node's connections, announced to the others.
    pub limits: Option<Arc<super::metrics::ConnLimits>>,
    /// The other nodes, as their announcements said (for the admin API).
    peers: std::sync::Mutex<HashMap<String, Peer>>,
}

/// Another node, as last heard of.
#[derive(Debug, Clone)]
pub struct Peer {
    pub seen: std::time::Instant,
    pub connections: u64,
    pub version: String,
}

/// Each node announces itself this often on `<prefix>._nodes`.
const PRESENCE_EVERY: Duration = Duration::from_secs(2);
/// A node not heard of for this long is shown down; for ten times this long, forgotten.
pub const PEER_EXPIRY: Duration = Duration::from_secs(6);
/// Nodes remembered at most.
const MAX_PEERS: usize = 1024;

impl ClusterStats {
    pub fn new(node: &str) -> Self {
        ClusterStats {
            node: node.to_string(),
            ..ClusterStats::default()
        }
    }

    pub fn count_drop(&self, why: Dropped) {
        if let Some(c) = self.dropped.get(why as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn dropped(&self, why: Dropped) -> u64 {
        self.dropped
            .get(why as usize)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Connections after the first.
    pub fn reconnects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed).saturating_sub(1)
    }

    /// The other nodes heard of, by name.
    pub fn peers(&self) -> Vec<(String, Peer)> {
        let mut v: Vec<_> = self
            .peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, p)| (k.clone(), p.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// An announcement from another node (its JSON payload).
    fn heard(&self, payload: &[u8]) {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(payload) else {
            return;
        };
        let Some(name) = v.get("node").and_then(|n| n.as_str()) else {
            return;
        };
        if name == self.node || name.len() > 256 {
            return;
        }
        let now = std::time::Instant::now();
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        peers.retain(|_, p| now.duration_since(p.seen) < PEER_EXPIRY * 10);
        if peers.len() >= MAX_PEERS && !peers.contains_key(name) {
            return;
        }
        let version = v.get("version").and_then(|x| x.as_str()).unwrap_or("");
        peers.insert(
            name.to_string(),
            Peer {
                seen: now,
                connections: v.get("connections").and_then(|c| c.as_u64()).unwrap_or(0),
                version: version.chars().take(64).collect(),
            },
        );
    }
}

/// Announce this node every [`PRESENCE_EVERY`] and listen to the others' announcements.
async fn presence(client: async_nats::Client, subject: String, stats: Arc<ClusterStats>) {
    let Ok(mut sub) = client.subscribe(subject.clone()).await else {
        return;
    };
    let mut tick = tokio::time::interval(PRESENCE_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let connections = stats.limits.as_ref().map_or(0, |l| l.live());
                let me = serde_json::json!({
                    "node": stats.node,
                    "version": env!("CARGO_PKG_VERSION"),
                    "connections": connections,
                });
                let _ = client.publish(subject.clone(), me.to_string().into()).await;
            }
            msg = sub.next() => match msg {
                Some(m) => stats.heard(&m.payload),
                None => return,
            },
        }
    }
}

/// Up to the bridge.
#[derive(Debug)]
struct Up {
    subject: Arc<str>,
    payload: Arc<[u8]>,
}

/// A SEND to a queue, for JetStream; answered (RECEIPT or ERROR) to its sender once stored.
#[derive(Debug)]
pub struct QueueSend {
    pub subject: Arc<str>,
    pub payload: Arc<[u8]>,
    /// The sender: its reactor and connection.
    pub reactor: usize,
    pub token: usize,
    pub receipt: Option<Box<str>>,
}

/// A reactor's interest change (or a RECEIPT waiting for the ones before it).
#[derive(Debug)]
struct Control {
    reactor: usize,
    change: Change,
}

/// Down to a reactor: a message from another node, and the subject of the node's NATS
/// subscription it came through.
#[derive(Debug)]
pub struct Down {
    pub via: Arc<str>,
    pub msg: Published,
}

/// A reactor's end of the bridge.
pub struct Uplink {
    up: Sender<Up>,
    /// Queue SENDs for JetStream (bounded: full means the store is behind: the SEND fails).
    jsq: Sender<QueueSend>,
    control: Sender<Control>,
    notify: Arc<Notify>,
    down: Receiver<Down>,
    down_bytes: Arc<AtomicUsize>,
    stats: Arc<ClusterStats>,
    max_bytes: usize,
    reactor: usize,
    /// Interest changes not yet taken by the bridge, oldest first.
    waiting: VecDeque<Control>,
    rung: bool,
}

impl Uplink {
    /// Send a topic message up, or drop and count it.
    pub fn publish(&mut self, subject: &Arc<str>, payload: &Arc<[u8]>) {
        let n = payload.len();
        if self.stats.pending_up.fetch_add(n, Ordering::Relaxed) + n > self.max_bytes {
            self.stats.pending_up.fetch_sub(n, Ordering::Relaxed);
            self.stats.count_drop(Dropped::UpFull);
            return;
        }
        let up = Up {
            subject: Arc::clone(subject),
            payload: Arc::clone(payload),
        };
        match self.up.try_send(up) {
            Ok(()) => self.rung = true,
            Err(_) => {
                self.stats.pending_up.fetch_sub(n, Ordering::Relaxed);
                self.stats.count_drop(Dropped::UpFull);
            }
        }
    }

    /// A SEND to a queue: stored in JetStream by the bridge, which answers the sender. Given
    /// back when the bridge has that many in flight already (the reactor holds it a while).
    pub fn queue_send(&mut self, send: QueueSend) -> Result<(), QueueSend> {
        match self.jsq.try_send(send) {
            Ok(()) => {
                self.rung = true;
                Ok(())
            }
            Err(e) => Err(e.into_inner()),
        }
    }

    /// A queue SEND that never reached the store (counted with those it refused).
    pub fn queue_failed(&self) {
        self.stats.queue_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Pass the router's interest changes on (what does not fit waits here, in order). A
    /// subject given up before the bridge took the request for it cancels that request, so
    /// what waits is bounded by the subjects in use (and the RECEIPTs waiting for them), not by
    /// how often a client subscribes and unsubscribes.
    pub fn interest(&mut self, changes: &mut Vec<Change>) {
        let reactor = self.reactor;
        for change in changes.drain(..) {
            if let Change::Off(s) = &change {
                let on = self
                    .waiting
                    .iter()
                    .rposition(|c| matches!(&c.change, Change::On(x) if x == s));
                if let Some(i) = on {
                    self.waiting.remove(i);
                    continue;
                }
            }
            self.waiting.push_back(Control { reactor, change });
        }
        self.send_waiting();
    }

    fn send_waiting(&mut self) {
        while let Some(c) = self.waiting.pop_front() {
            match self.control.try_send(c) {
                Ok(()) => self.rung = true,
                Err(TrySendError::Full(c)) => {
                    self.waiting.push_front(c);
                    break;
                }
                // The bridge is gone (shutting down): nothing to tell.
                Err(TrySendError::Disconnected(_)) => self.waiting.clear(),
            }
        }
    }

    /// Interest changes still waiting for room.
    pub fn has_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// End of a loop turn: retry what waits, ring the bridge once if anything was sent.
    pub fn end_turn(&mut self) {
        if !self.waiting.is_empty() {
            self.send_waiting();
        }
        if std::mem::take(&mut self.rung) {
            self.notify.notify_one();
        }
    }

    /// The next message from another node, if any.
    pub fn recv(&mut self) -> Option<Down> {
        let d = self.down.try_recv().ok()?;
        self.down_bytes
            .fetch_sub(d.msg.shared.len(), Ordering::Relaxed);
        Some(d)
    }
}

/// A reactor as the bridge sees it.
struct Downlink {
    tx: Sender<Down>,
    bytes: Arc<AtomicUsize>,
    mailbox: Mailbox,
}

/// The running bridge: its thread, its stats, and how to stop it.
pub struct Bridge {
    pub stats: Arc<ClusterStats>,
    pub notify: Arc<Notify>,
    pub thread: JoinHandle<io::Result<()>>,
}

/// Start the bridge for `reactors` (their mailboxes, to wake them), and the reactors' ends.
pub fn start(
    cfg: &ClusterConfig,
    queues: &crate::router::QueueConfig,
    reactors: &[Mailbox],
    stats: Arc<ClusterStats>,
    admin: Option<super::admin::Replies>,
    shutdown: Arc<AtomicBool>,
) -> io::Result<(Bridge, Vec<Uplink>)> {
    // A bad seed URL stops the server from starting, not the bridge after it started.
    for s in &cfg.servers {
        s.parse::<async_nats::ServerAddr>().map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("cluster: {s}: {e}"))
        })?;
    }
    let notify = Arc::new(Notify::new());
    let (up_tx, up_rx) = crossbeam_channel::bounded(cfg.max_pending.max(1));
    let (control_tx, control_rx) = crossbeam_channel::bounded(CONTROL_BOUND);
    let (jsq_tx, jsq_rx) = crossbeam_channel::bounded(JS_INFLIGHT);
    let mut uplinks = Vec::new();
    let mut downlinks = Vec::new();
    for (i, m) in reactors.iter().enumerate() {
        let (tx, rx) = crossbeam_channel::bounded(cfg.max_pending.max(1));
        let bytes = Arc::new(AtomicUsize::new(0));
        downlinks.push(Downlink {
            tx,
            bytes: Arc::clone(&bytes),
            mailbox: m.clone(),
        });
        uplinks.push(Uplink {
            up: up_tx.clone(),
            jsq: jsq_tx.clone(),
            control: control_tx.clone(),
            notify: Arc::clone(&notify),
            down: rx,
            down_bytes: bytes,
            stats: Arc::clone(&stats),
            max_bytes: cfg.max_pending_bytes,
            reactor: i,
            waiting: VecDeque::new(),
            rung: false,
        });
    }
    let serve = Serve {
        queues: *queues,
        jsq: jsq_rx,
        cfg: cfg.clone(),
        stats: Arc::clone(&stats),
        notify: Arc::clone(&notify),
        up: up_rx,
        control: control_rx,
        downlinks: Arc::new(downlinks),
        admin,
        shutdown,
    };
    let thread = std::thread::Builder::new()
        .name("cluster".into())
        .spawn(move || serve.run())?;
    Ok((
        Bridge {
            stats,
            notify,
            thread,
        },
        uplinks,
    ))
}

/// The bridge inside its runtime.
struct Serve {
    queues: crate::router::QueueConfig,
    jsq: Receiver<QueueSend>,
    cfg: ClusterConfig,
    stats: Arc<ClusterStats>,
    notify: Arc<Notify>,
    up: Receiver<Up>,
    control: Receiver<Control>,
    downlinks: Arc<Vec<Downlink>>,
    /// The admin API's answers (a JetStream purge's count).
    admin: Option<super::admin::Replies>,
    shutdown: Arc<AtomicBool>,
}

/// One NATS subscription: the reactors that need it, and the task reading it.
struct Sub {
    mask: Rc<Cell<u64>>,
    task: tokio::task::JoinHandle<()>,
}

impl Serve {
    /// The thread's body: a current-thread runtime that lives only here.
    fn run(self) -> io::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, self.serve())
    }
}

impl Serve {
    async fn options(&self) -> io::Result<async_nats::ConnectOptions> {
        let c = &self.cfg;
        let stats = Arc::clone(&self.stats);
        let node = c.node_name.clone();
        let mut o = match &c.credentials {
            Some(path) => async_nats::ConnectOptions::with_credentials_file(path.clone()).await?,
            None => async_nats::ConnectOptions::new(),
        };
        o = o
            .name(format!("stompbox {}", c.node_name))
            .no_echo()
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(2))
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((50 * attempts as u64).min(2000))
            })
            .event_callback(move |e| {
                let stats = Arc::clone(&stats);
                let node = node.clone();
                async move {
                    match e {
                        async_nats::Event::Connected => {
                            stats.up.store(true, Ordering::Relaxed);
                            stats.connects.fetch_add(1, Ordering::Relaxed);
                            log::info!("cluster: node {node} connected to NATS");
                        }
                        async_nats::Event::Disconnected => {
                            stats.up.store(false, Ordering::Relaxed);
                            stats.disconnects.fetch_add(1, Ordering::Relaxed);
                            log::warn!(
                                "cluster: node {node} lost its NATS connection; reconnecting"
                            );
                        }
                        async_nats::Event::SlowConsumer(_) => {
                            stats.count_drop(Dropped::SlowConsumer)
                        }
                        async_nats::Event::Closed => {
                            stats.up.store(false, Ordering::Relaxed);
                        }
                        other => log::warn!("cluster: {other}"),
                    }
                }
            });
        if let (Some(u), Some(p)) = (&c.user, &c.password) {
            o = o.user_and_password(u.clone(), p.clone());
        }
        if let Some(t) = &c.token {
            o = o.token(t.clone());
        }
        if let Some(ca) = &c.tls_ca {
            o = o.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&c.tls_cert, &c.tls_key) {
            o = o.add_client_certificate(cert.clone(), key.clone());
        }
        Ok(o.require_tls(c.require_tls))
    }

    async fn serve(self) -> io::Result<()> {
        let opts = self.options().await?;
        let servers: Vec<async_nats::ServerAddr> = self
            .cfg
            .servers
            .iter()
            .map(|s| s.parse())
            .collect::<Result<_, _>>()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("cluster: {e}")))?;
        let client = async_nats::connect_with_options(servers, opts)
            .await
            .map_err(|e| io::Error::other(format!("cluster: {e}")))?;
        let mut subs: HashMap<Arc<str>, Sub> = HashMap::new();
        let presence_task = tokio::task::spawn_local(presence(
            client.clone(),
            format!("{}._nodes", self.cfg.subject_prefix),
            Arc::clone(&self.stats),
        ));
        let js = (self.queues.store == crate::router::QueueStore::JetStream)
            .then(|| async_nats::jetstream::new(client.clone()));
        let mut stream_ready = false;
        let mut depth_at = std::time::Instant::now();
        let inflight = Rc::new(Cell::new(0usize));
        let consumers: Rc<RefCell<HashMap<Arc<str>, PullConsumer>>> = Rc::default();
        let pulls: Pulls = Rc::default();
        let mut refused_logged = false;
        let mut more = false;
        while !self.shutdown.load(Ordering::Acquire) {
            if more {
                // Let the subscriptions' readers and the connection run between batches.
                tokio::task::yield_now().await;
            } else {
                let _ = tokio::time::timeout(IDLE, self.notify.notified()).await;
            }
            // Interest first: a subscription made before the messages that follow it.
            let mut ready = Vec::new();
            while let Ok(c) = self.control.try_recv() {
                match c.change {
                    Change::On(s) => self.subscribe(&client, &mut subs, s, c.reactor).await,
                    Change::Off(s) => unsubscribe(&mut subs, &s, c.reactor),
                    Change::Ready {
                        token,
                        receipt,
                        upto,
                    } => ready.push((c.reactor, token, receipt, upto)),
                    Change::JsAck(reply) => js_reply(&client, reply, "+ACK").await,
                    Change::JsNak(reply) => js_reply(&client, reply, "-NAK").await,
                    Change::JsProgress(reply) => js_reply(&client, reply, "+WPI").await,
                    Change::JsPurge { queue, ask } => {
                        let answer = ask.and_then(|id| Some((id, self.admin.clone()?)));
                        match &js {
                            Some(js) => {
                                tokio::task::spawn_local(purge(
                                    js.clone(),
                                    stream_name(&self.cfg.subject_prefix),
                                    crate::router::subject::subject(
                                        &self.cfg.subject_prefix,
                                        &queue,
                                    ),
                                    queue,
                                    answer,
                                ));
                            }
                            None => purged(answer, Err("JetStream is not available".into())),
                        }
                    }
                    Change::JsPull { queue, n } => {
                        let Some(js) = &js else {
                            continue;
                        };
                        // One pull at a time per queue, so batches arrive in order; more
                        // demand meanwhile waits for the running one to take it.
                        let mut p = pulls.borrow_mut();
                        let state = p.entry(Arc::clone(&queue)).or_default();
                        state.wanted += n;
                        if !state.running {
                            state.running = true;
                            tokio::task::spawn_local(pull(
                                js.clone(),
                                Rc::clone(&consumers),
                                Rc::clone(&pulls),
                                queue,
                                c.reactor,
                                self.fetch_context(),
                            ));
                        }
                    }
                }
            }
            if !ready.is_empty() {
                self.answer_ready(&client, ready).await;
            }
            if let Some(js) = &js {
                let connected =
                    client.connection_state() == async_nats::connection::State::Connected;
                if !stream_ready && connected {
                    stream_ready = self.ensure_stream(js).await;
                }
                if stream_ready && connected && depth_at.elapsed() >= DEPTH_EVERY {
                    depth_at = std::time::Instant::now();
                    tokio::task::spawn_local(depth(
                        js.clone(),
                        stream_name(&self.cfg.subject_prefix),
                        Arc::clone(&self.stats),
                    ));
                }
                // Queue SENDs, as many as may be in flight.
                while inflight.get() < JS_INFLIGHT {
                    let Ok(send) = self.jsq.try_recv() else {
                        break;
                    };
                    inflight.set(inflight.get() + 1);
                    tokio::task::spawn_local(store(
                        js.clone(),
                        connected,
                        send,
                        Rc::clone(&inflight),
                        Arc::clone(&self.downlinks),
                        Arc::clone(&self.stats),
                        Arc::clone(&self.notify),
                    ));
                }
            }
            self.stats
                .subscriptions
                .store(subs.len(), Ordering::Relaxed);
            let mut n = 0;
            more = false;
            while let Ok(up) = self.up.try_recv() {
                n += 1;
                if n == UP_BATCH {
                    more = true;
                }
                self.stats
                    .pending_up
                    .fetch_sub(up.payload.len(), Ordering::Relaxed);
                if client.connection_state() != async_nats::connection::State::Connected {
                    self.stats.count_drop(Dropped::Disconnected);
                    continue;
                }
                let subject = async_nats::Subject::from(&*up.subject);
                let payload = bytes::Bytes::from_owner(ArcBytes(up.payload));
                match client.publish(subject, payload).await {
                    Ok(()) => {
                        self.stats.published.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        self.stats.count_drop(Dropped::Refused);
                        if !refused_logged {
                            refused_logged = true;
                            log::warn!("cluster: NATS refused a message ({e}); counted in stompbox_cluster_dropped_total");
                        }
                    }
                }
                if more {
                    break;
                }
            }
        }
        presence_task.abort();
        for (_, s) in subs.drain() {
            s.task.abort();
        }
        let _ = tokio::time::timeout(Duration::from_millis(500), client.flush()).await;
        Ok(())
    }

    /// A reactor needs `subject`: subscribe the node unless it already is (the SUB is queued on
    /// the connection before anything asked after it, so a flush covers it).
    async fn subscribe(
        &self,
        client: &async_nats::Client,
        subs: &mut HashMap<Arc<str>, Sub>,
        subject: Arc<str>,
        reactor: usize,
    ) {
        let bit = 1u64 << (reactor % 64);
        if let Some(s) = subs.get(&subject) {
            s.mask.set(s.mask.get() | bit);
            return;
        }
        let sub = match client.subscribe(async_nats::Subject::from(&*subject)).await {
            Ok(s) => s,
            Err(e) => {
                log::warn!("cluster: cannot subscribe to {subject}: {e}");
                return;
            }
        };
        let mask = Rc::new(Cell::new(bit));
        let task = tokio::task::spawn_local(read_subscription(
            sub,
            Arc::clone(&subject),
            Rc::clone(&mask),
            self.cfg.subject_prefix.clone(),
            Arc::clone(&self.downlinks),
            Arc::clone(&self.stats),
            self.cfg.max_pending_bytes,
        ));
        subs.insert(subject, Sub { mask, task });
    }

    /// SUBSCRIBE RECEIPTs waiting for the subscriptions asked before them: one round trip to
    /// NATS answers them all. The round trip is a request to a subject nobody serves: the
    /// server answers it (no responders) only after it has taken every SUB this connection
    /// sent before it, so a publish from any node after the RECEIPT finds the subscription.
    /// (`flush` is not enough: it only writes the SUBs to the socket, and under load the server
    /// could take another node's publish first.) Without a connection there is nothing to wait
    /// for: NATS gets the subscriptions when the node reconnects, and the RECEIPTs go now.
    async fn answer_ready(
        &self,
        client: &async_nats::Client,
        ready: Vec<(usize, usize, Box<str>, u64)>,
    ) {
        let connected = client.connection_state() == async_nats::connection::State::Connected;
        if connected {
            let probe = format!("{}._sync", self.cfg.subject_prefix);
            let answered =
                tokio::time::timeout(READY_WAIT, client.request(probe, bytes::Bytes::new())).await;
            match answered {
                // No responders (the usual answer), or someone answering: either way the
                // server has taken every SUB before the request.
                Ok(Ok(_)) => {}
                Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => {}
                Ok(Err(e)) => log::warn!("cluster: NATS round trip before RECEIPTs failed: {e}"),
                Err(_) => log::warn!("cluster: NATS did not answer a round trip in {READY_WAIT:?}"),
            }
        }
        for (reactor, token, receipt, upto) in ready {
            let Some(d) = self.downlinks.get(reactor) else {
                continue;
            };
            // Never dropped: a reactor drains its mailbox every turn, so this waits briefly
            // at worst (and only this thread).
            match d
                .mailbox
                .tx
                .send_timeout(Mail::ClusterReady(token, receipt, upto), READY_WAIT)
            {
                Ok(()) => d.mailbox.wake(),
                Err(_) => {
                    log::warn!("cluster: reactor {reactor} took no RECEIPT in {READY_WAIT:?}")
                }
            }
        }
    }
}

impl Serve {
    /// The queue stream: one for all queues (a subject per queue, work-queue retention, file
    /// storage), made if missing.
    async fn ensure_stream(&self, js: &async_nats::jetstream::Context) -> bool {
        let cfg = async_nats::jetstream::stream::Config {
            name: stream_name(&self.cfg.subject_prefix),
            subjects: vec![format!(
                "{}.>",
                crate::router::subject::queue_root(&self.cfg.subject_prefix)
            )],
            retention: async_nats::jetstream::stream::RetentionPolicy::WorkQueue,
            storage: async_nats::jetstream::stream::StorageType::File,
            num_replicas: self.queues.replicas,
            ..Default::default()
        };
        match js.get_or_create_stream(cfg).await {
            Ok(_) => true,
            Err(e) => {
                log::warn!("cluster: cannot make the JetStream queue stream: {e}");
                false
            }
        }
    }

    fn fetch_context(&self) -> FetchContext {
        FetchContext {
            prefix: self.cfg.subject_prefix.clone(),
            stream: stream_name(&self.cfg.subject_prefix),
            ack_wait: self.queues.ack_wait,
            downlinks: Arc::clone(&self.downlinks),
            stats: Arc::clone(&self.stats),
        }
    }
}

type PullConsumer =
    async_nats::jetstream::consumer::Consumer<async_nats::jetstream::consumer::pull::Config>;

/// Per queue: messages its home asked for and not yet being fetched, and whether a pull task
/// is running (it takes what is wanted until nothing is).
#[derive(Debug, Default)]
struct PullState {
    wanted: usize,
    running: bool,
}

type Pulls = Rc<RefCell<HashMap<Arc<str>, PullState>>>;

/// What a pull needs besides the queue.
struct FetchContext {
    prefix: String,
    stream: String,
    ack_wait: Duration,
    downlinks: Arc<Vec<Downlink>>,
    stats: Arc<ClusterStats>,
}

/// The queue stream's name: the subject prefix in capitals, dots as underscores.
pub fn stream_name(prefix: &str) -> String {
    format!("{}_QUEUES", prefix.replace('.', "_").to_uppercase())
}

/// A queue's durable consumer, shared by every node: `q_` and a hash of the queue's name.
pub fn consumer_name(queue: &str) -> String {
    format!("q_{:016x}", crate::router::fnv1a(queue))
}

/// A queue's durable consumer idle this long is removed by JetStream.
const CONSUMER_IDLE: Duration = Duration::from_secs(3600);

/// How often the queue stream's depth is asked for (for `/metrics`).
const DEPTH_EVERY: Duration = Duration::from_secs(1);

/// An administrator's purge: drop a queue's messages from the queue stream, and say how many.
async fn purge(
    js: async_nats::jetstream::Context,
    stream: String,
    subject: Option<String>,
    queue: Arc<str>,
    answer: Option<(u64, super::admin::Replies)>,
) {
    let Some(subject) = subject else {
        return purged(answer, Err("the queue has no NATS subject".into()));
    };
    // Within the admin API's deadline for its client.
    let done = tokio::time::timeout(PURGE_WAIT, async {
        let s = js.get_stream(&stream).await?;
        s.purge()
            .filter(subject)
            .await
            .map_err(async_nats::Error::from)
    })
    .await;
    let r = match done {
        Ok(Ok(r)) => {
            log::info!(
                "cluster: purged {} messages of {queue} from JetStream",
                r.purged
            );
            Ok(r.purged)
        }
        Ok(Err(e)) => {
            log::warn!("cluster: purging {queue} from JetStream failed: {e}");
            Err(e.to_string())
        }
        Err(_) => {
            log::warn!("cluster: purging {queue} from JetStream timed out");
            Err(format!("no answer from JetStream in {PURGE_WAIT:?}"))
        }
    };
    purged(answer, r);
}

/// How long a JetStream purge may take.
const PURGE_WAIT: Duration = Duration::from_secs(3);

/// Answer the admin API's purge request, if one asked.
fn purged(answer: Option<(u64, super::admin::Replies)>, r: Result<u64, String>) {
    if let Some((id, to)) = answer {
        to.send(super::admin::Reply {
            id,
            reactor: 0,
            answer: super::admin::Answer::StreamPurged(r),
        });
    }
}

/// Ask JetStream how many messages the queue stream holds.
async fn depth(js: async_nats::jetstream::Context, name: String, stats: Arc<ClusterStats>) {
    let info = tokio::time::timeout(Duration::from_secs(2), async {
        let mut s = js.get_stream(&name).await.ok()?;
        s.info().await.ok().map(|i| i.state.messages)
    })
    .await;
    if let Ok(Some(n)) = info {
        stats.queue_depth.store(n, Ordering::Relaxed);
    }
}

/// Acknowledge (or give back) a message JetStream handed to this node.
async fn js_reply(client: &async_nats::Client, reply: Box<str>, what: &'static str) {
    let subject = async_nats::Subject::from(&*reply);
    if let Err(e) = client
        .publish(subject, bytes::Bytes::from_static(what.as_bytes()))
        .await
    {
        log::warn!("cluster: cannot acknowledge a queue message to JetStream: {e}");
    }
}

/// Store one queue SEND in JetStream and answer its sender: RECEIPT once JetStream has it, or
/// ERROR (with or without a receipt asked for: a SEND that was not stored is never silent).
async fn store(
    js: async_nats::jetstream::Context,
    connected: bool,
    send: QueueSend,
    inflight: Rc<Cell<usize>>,
    downlinks: Arc<Vec<Downlink>>,
    stats: Arc<ClusterStats>,
    notify: Arc<Notify>,
) {
    let QueueSend {
        subject,
        payload,
        reactor,
        token,
        receipt,
    } = send;
    let payload = bytes::Bytes::from_owner(ArcBytes(payload));
    // Without a connection nothing is sent (the client would buffer it and store it after the
    // sender was told it failed): the SEND fails, certainly not stored.
    let stored = if connected {
        tokio::time::timeout(JS_PUBLISH_WAIT, async {
            js.publish(async_nats::Subject::from(&*subject), payload)
                .await?
                .await
                .map_err(async_nats::Error::from)
        })
        .await
        .map_err(|_| "queue store did not confirm the message in time (it may be stored)")
    } else {
        Err("queue store unavailable: message not stored")
    };
    let refused = match stored {
        Ok(Ok(_)) => {
            stats.queue_stored.fetch_add(1, Ordering::Relaxed);
            None
        }
        Ok(Err(e)) => {
            log::debug!("cluster: JetStream did not store a queue message: {e}");
            Some("queue store refused the message: not stored")
        }
        Err(why) => Some(why),
    };
    if refused.is_some() {
        stats.queue_failed.fetch_add(1, Ordering::Relaxed);
    }
    inflight.set(inflight.get().saturating_sub(1));
    notify.notify_one();
    if receipt.is_none() && refused.is_none() {
        return;
    }
    if let Some(d) = downlinks.get(reactor) {
        let v = super::mailbox::Verdict {
            token,
            receipt,
            refused,
        };
        if d.mailbox
            .tx
            .send_timeout(Mail::QueueVerdict(v), READY_WAIT)
            .is_ok()
        {
            d.mailbox.wake();
        }
    }
}

/// Take what the home reactor `reactor` wants of `queue` from JetStream and hand it over
/// (with how many were asked, so it can ask again), one fetch after another while it wants
/// more: batches reach the home in JetStream's order.
async fn pull(
    js: async_nats::jetstream::Context,
    consumers: Rc<RefCell<HashMap<Arc<str>, PullConsumer>>>,
    pulls: Pulls,
    queue: Arc<str>,
    reactor: usize,
    cx: FetchContext,
) {
    loop {
        let n = {
            let mut p = pulls.borrow_mut();
            let Some(state) = p.get_mut(&queue) else {
                return;
            };
            if state.wanted == 0 {
                p.remove(&queue);
                return;
            }
            std::mem::take(&mut state.wanted)
        };
        let mut msgs = Vec::new();
        // A pull whose request died with the connection would wait forever for an answer that
        // cannot come: the bridge gives up on its own after the pull's time and a margin.
        let got = tokio::time::timeout(
            JS_PULL_WAIT + Duration::from_secs(3),
            fetch(&js, &consumers, &queue, n, &cx, &mut msgs),
        )
        .await
        .unwrap_or_else(|_| Err("pull timed out".into()));
        if let Err(e) = got {
            log::debug!("cluster: pull from JetStream for {queue}: {e}");
            // Not a busy loop when JetStream is away: the home asks again after this.
            consumers.borrow_mut().remove(&queue);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        cx.stats
            .queue_pulled
            .fetch_add(msgs.len() as u64, Ordering::Relaxed);
        if let Some(d) = cx.downlinks.get(reactor) {
            let mail = Mail::JsPulled {
                queue: Arc::clone(&queue),
                msgs,
                asked: n,
            };
            if d.mailbox.tx.send_timeout(mail, READY_WAIT).is_ok() {
                d.mailbox.wake();
            }
        }
    }
}

async fn fetch(
    js: &async_nats::jetstream::Context,
    consumers: &Rc<RefCell<HashMap<Arc<str>, PullConsumer>>>,
    queue: &Arc<str>,
    n: usize,
    cx: &FetchContext,
    out: &mut Vec<(Published, Box<str>, bool)>,
) -> Result<(), async_nats::Error> {
    let cached = consumers.borrow().get(queue).cloned();
    let consumer = match cached {
        Some(c) => c,
        None => {
            let subject = crate::router::subject::subject(&cx.prefix, queue)
                .ok_or("queue name too long for a subject")?;
            let stream = js.get_stream(&cx.stream).await?;
            let config = async_nats::jetstream::consumer::pull::Config {
                durable_name: Some(consumer_name(queue)),
                filter_subject: subject,
                ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
                ack_wait: cx.ack_wait,
                max_ack_pending: 65_536,
                // A queue nobody has pulled from for an hour loses its consumer (its messages
                // stay in the stream; the next SUBSCRIBE makes the consumer again), so queue
                // names a client makes up do not pile up consumers in JetStream.
                inactive_threshold: CONSUMER_IDLE,
                ..Default::default()
            };
            let c: PullConsumer = stream
                .get_or_create_consumer(&consumer_name(queue), config)
                .await?;
            consumers.borrow_mut().insert(Arc::clone(queue), c.clone());
            c
        }
    };
    let mut batch = consumer
        .fetch()
        .max_messages(n)
        .expires(JS_PULL_WAIT)
        .messages()
        .await?;
    let mut scratch = Vec::new();
    while let Some(m) = batch.next().await {
        let m = m?;
        let redelivered = m.info().is_ok_and(|i| i.delivered > 1);
        let Some(reply) = m.reply.as_ref().map(|r| Box::<str>::from(r.as_str())) else {
            continue;
        };
        match wire::decode(&cx.prefix, &m.subject, &m.payload, &mut scratch) {
            Ok(p) => out.push((p, reply, redelivered)),
            Err(_) => {
                // Not ours to deliver: out of the queue, counted.
                cx.stats.count_drop(Dropped::Invalid);
                let _ = m.ack().await;
            }
        }
    }
    Ok(())
}

/// A reactor no longer needs `subject`: the last one out unsubscribes the node.
fn unsubscribe(subs: &mut HashMap<Arc<str>, Sub>, subject: &str, reactor: usize) {
    let bit = 1u64 << (reactor % 64);
    let Some(s) = subs.get(subject) else {
        return;
    };
    let left = s.mask.get() & !bit;
    s.mask.set(left);
    if left == 0 {
        if let Some(s) = subs.remove(subject) {
            // Dropping the subscription (with the task) unsubscribes.
            s.task.abort();
        }
    }
}

/// An `Arc<[u8]>` lent to `bytes` without a copy.
struct ArcBytes(Arc<[u8]>);

impl AsRef<[u8]> for ArcBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Read one NATS subscription until aborted: decode each message once and hand it to every
/// reactor that needs the subject.
async fn read_subscription(
    mut sub: async_nats::Subscriber,
    via: Arc<str>,
    mask: Rc<Cell<u64>>,
    prefix: String,
    downlinks: Arc<Vec<Downlink>>,
    stats: Arc<ClusterStats>,
    max_bytes: usize,
) {
    let mut scratch = Vec::new();
    while let Some(m) = sub.next().await {
        stats.received.fetch_add(1, Ordering::Relaxed);
        let msg = match wire::decode(&prefix, &m.subject, &m.payload, &mut scratch) {
            Ok(msg) => msg,
            Err(_) => {
                stats.count_drop(Dropped::Invalid);
                continue;
            }
        };
        let n = msg.shared.len();
        let mut bits = mask.get();
        while bits != 0 {
            let r = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let Some(d) = downlinks.get(r) else {
                continue;
            };
            if d.bytes.fetch_add(n, Ordering::Relaxed) + n > max_bytes {
                d.bytes.fetch_sub(n, Ordering::Relaxed);
                stats.count_drop(Dropped::DownFull);
                continue;
            }
            let down = Down {
                via: Arc::clone(&via),
                msg: msg.clone(),
            };
            match d.tx.try_send(down) {
                Ok(()) => d.mailbox.wake(),
                Err(_) => {
                    d.bytes.fetch_sub(n, Ordering::Relaxed);
                    stats.count_drop(Dropped::DownFull);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uplink(control: Sender<Control>) -> Uplink {
        let (up, _) = crossbeam_channel::bounded(1);
        let (_, down) = crossbeam_channel::bounded(1);
        let (jsq, _) = crossbeam_channel::bounded(1);
        Uplink {
            up,
            jsq,
            control,
            notify: Arc::new(Notify::new()),
            down,
            down_bytes: Arc::new(AtomicUsize::new(0)),
            stats: Arc::new(ClusterStats::default()),
            max_bytes: 1 << 20,
            reactor: 0,
            waiting: VecDeque::new(),
            rung: false,
        }
    }

    #[test]
    fn interest_waiting_for_room_is_kept_in_order_and_cancelled_by_its_undoing() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let mut u = uplink(tx);
        let s = |x: &str| Arc::<str>::from(x);
        // The first fits; the rest wait. Subscribing and unsubscribing `b` over and over while
        // the bridge is busy leaves nothing behind; `c`'s RECEIPT keeps its place.
        let mut changes = vec![Change::On(s("a")), Change::On(s("c"))];
        changes.push(Change::Ready {
            token: 7,
            receipt: "r".into(),
            upto: 2,
        });
        for _ in 0..1000 {
            changes.push(Change::On(s("b")));
            changes.push(Change::Off(s("b")));
        }
        u.interest(&mut changes);
        assert_eq!(u.waiting.len(), 2, "{:?}", u.waiting);
        let mut got = Vec::new();
        while let Ok(c) = rx.try_recv() {
            got.push(c.change);
            u.end_turn();
        }
        assert_eq!(
            got,
            vec![
                Change::On(s("a")),
                Change::On(s("c")),
                Change::Ready {
                    token: 7,
                    receipt: "r".into(),
                    upto: 2
                }
            ]
        );
        assert!(!u.has_waiting());
    }
}
