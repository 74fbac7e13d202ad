//! A reactor thread: one `mio::Poll`, its connections in a `Slab`, a subscription table, a
//! timer wheel and a buffer pool. The loop: poll; handle readiness (fanning out what each
//! connection published right after it); read again whoever hit the read budget; fire timers;
//! send each other reactor its batch of messages (one wake-up per batch); flush every
//! connection with output once; drop the dead.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TrySendError};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use super::buf::BufPool;
use super::conn::{Conn, Ctx, Kind, Next};
use super::mailbox::{Batch, Mail, Mailbox, Verdict};
use super::slots::{live, split, token, ConnSink, Slot};
use super::timer::TimerWheel;
use std::net::IpAddr;

use super::metrics::{ConnLimits, Counters, ReactorStats};
use crate::config::{Config, SlowConsumer};
use crate::router::{Delivery, Origin, Published, QueueOp, Router};
use crate::ws::code;

/// The token of the reactor's waker; connection tokens never reach it.
pub const WAKER: Token = Token(usize::MAX);

/// The timer wheel's resolution: heart-beats and timeouts fire at most this late (heart-beat
/// intervals go down to `heartbeat.min`, 100 ms by default).
const TIMER_TICK: Duration = Duration::from_millis(20);

fn access_generation(cfg: &Config) -> (u64, u64) {
    (
        cfg.acl.as_deref().map_or(0, |a| a.generation()),
        cfg.session.authenticator.generation(),
    )
}

/// The [`Ctx`] a connection runs with, borrowed field by field from the reactor (a macro, so
/// the slab stays borrowable beside it).
macro_rules! conn_ctx {
    ($r:ident, $token:expr, $now:expr, $peer:expr) => {
        Ctx {
            cfg: &$r.cfg,
            pool: &mut $r.pool,
            now: $now,
            token: $token,
            reactor: $r.id,
            router: &mut $r.router,
            outbox: &mut $r.outbox,
            qops: &mut $r.qops,
            scratch: &mut $r.scratch,
            enc: &mut $r.enc,
            seq: &mut $r.seq,
            sessions: &mut $r.sessions,
            counters: &mut $r.counters,
            zip: &mut $r.zip,
            inflated: 0,
            workers: $r.workers.as_ref(),
            auth: $r.auth.as_ref(),
            peer: $peer,
            memory_alarm: $r.memory_alarm,
            queue_busy: $r.queue_busy,
            sjs: &mut $r.sjs,
        }
    };
}

/// A [`ConnSink`] over the reactor's connections (a macro, so the router stays borrowable).
macro_rules! conn_sink {
    ($r:ident) => {
        ConnSink {
            conns: &mut $r.conns,
            pool: &mut $r.pool,
            dirty: &mut $r.dirty,
            overflow: &mut $r.overflow,
            max_outbound: $r.cfg.max_outbound,
            drop_policy: $r.cfg.slow_consumer == SlowConsumer::Drop,
            counters: &mut $r.counters,
            zip: &mut $r.zip,
        }
    };
}

// After the macros above, which they use.
mod admin;
mod sockjs;

pub struct Reactor {
    id: usize,
    cfg: Arc<Config>,
    poll: Poll,
    inbox: Receiver<Mail>,
    woken: Arc<AtomicBool>,
    shutdown: Arc<AtomicBool>,
    peers: Vec<Mailbox>,
    conns: Slab<Slot>,
    next_gen: u32,
    pool: BufPool,
    wheel: TimerWheel,
    router: Router,
    /// Connections with output to flush this turn (duplicates are harmless).
    dirty: Vec<Token>,
    /// Connections that hit the read budget.
    ready_again: Vec<Token>,
    overflow: Vec<Token>,
    fired: Vec<(usize, u64)>,
    outbox: Vec<Published>,
    qops: Vec<QueueOp>,
    deliveries: Vec<Delivery>,
    /// Deliveries for consumers here, out of a queue operation applied here.
    local_deliveries: Vec<Delivery>,
    /// Per peer reactor: what to send it at the end of this turn.
    batches: Vec<Batch>,
    now: Instant,
    scratch: Vec<u8>,
    enc: Vec<u8>,
    seq: u64,
    sessions: u64,
    /// [`Reactor::fan_out`] is running: a nested call leaves its work to the running one.
    fanning: bool,
    /// (ACL generation, users generation) the live sessions were last checked against.
    access_gen: (u64, u64),
    counters: Counters,
    /// permessage-deflate: compressors, segments of the messages being fanned out, inflater.
    zip: super::compress::Compression,
    stats: Arc<ReactorStats>,
    limits: Arc<ConnLimits>,
    workers: Option<super::apps::Pool>,
    auth: Option<super::authpool::AuthPool>,
    memory: Arc<crate::memory::MemoryState>,
    /// The memory alarm as of this loop turn.
    memory_alarm: bool,
    /// Cluster mode: this reactor's end of the NATS bridge.
    cluster: Option<super::bridge::Uplink>,
    /// Messages from other nodes were left for the next turn (the turn's budget ran out).
    cluster_more: bool,
    /// JetStream queue store: queue SENDs the bridge had no room for yet, oldest first, each
    /// with the time it gives up. While any wait, connections whose next frame is a queue SEND
    /// are not read (flow control, as for the memory mark).
    js_waiting: std::collections::VecDeque<(super::bridge::QueueSend, Instant)>,
    /// Bytes of the messages in `js_waiting`.
    js_waiting_bytes: usize,
    /// Publishers were held for the queue store as of this turn.
    queue_busy: bool,
    /// When the messages held for the JetStream store were last said to be in progress.
    js_keepalive: Instant,
    /// When the queue gauges were last computed.
    gauges_at: Instant,
    /// SockJS: mounts, scratch and the calls connections make.
    sjs: super::conn::SjsCtx,
    /// SockJS sessions homed here, by id.
    sjs_ids: std::collections::HashMap<Box<str>, Token>,
    /// A SockJS frame being pumped.
    scratch_frame: Vec<u8>,
    /// SockJS sessions refused, for the log (rate-limited).
    sjs_refusals: super::metrics::RefusalLog,
    /// When each topic message delivered to a subscriber here this turn was received (the
    /// delivery-latency histogram, observed once the turn's writes are done).
    delivered: Vec<Instant>,
    /// The longest turn lately.
    turn_window: super::metrics::RecentMax,
}

/// How often the queue gauges (a walk of the queues homed here) are refreshed.
const GAUGES_EVERY: Duration = Duration::from_millis(250);

/// Queue SENDs a reactor holds for the store at most, in number and in bytes (past either they
/// are refused at once).
const JS_WAITING_MAX: usize = 65_536;
const JS_WAITING_MAX_BYTES: usize = 64 << 20;
/// How long messages taken from JetStream wait on a node whose last consumer of their queue
/// left, for one to come back, before they are given back to JetStream.
const JS_ORPHAN_GRACE: Duration = Duration::from_secs(5);
/// How long a queue SEND may wait for room at the store before it is refused.
const JS_WAITING_WAIT: Duration = Duration::from_secs(5);

/// Messages from other nodes delivered in one loop turn, at most (the rest wait a turn, so one
/// burst cannot stretch a turn without bound).
const CLUSTER_BUDGET: usize = 4096;
/// How soon a reactor retries interest changes the bridge had no room for.
const CLUSTER_RETRY: Duration = Duration::from_millis(10);

/// Shared things a reactor is built with.
pub struct Shared {
    pub shutdown: Arc<AtomicBool>,
    pub stats: Arc<ReactorStats>,
    pub limits: Arc<ConnLimits>,
    /// The application worker pool, when application destinations are configured.
    pub pool: Option<super::apps::Pool>,
    /// Where slow credential checks run.
    pub auth: Option<super::authpool::AuthPool>,
    /// The memory high-water mark's alarm.
    pub memory: Arc<crate::memory::MemoryState>,
    /// Cluster mode: this reactor's end of the NATS bridge.
    pub cluster: Option<super::bridge::Uplink>,
}

impl Reactor {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: usize,
        cfg: Arc<Config>,
        poll: Poll,
        inbox: Receiver<Mail>,
        woken: Arc<AtomicBool>,
        shared: Shared,
        router: Router,
        peers: Vec<Mailbox>,
    ) -> Self {
        let pool = BufPool::new(cfg.read_buffer_size, cfg.pool_buffers);
        let n = peers.len();
        Reactor {
            id,
            poll,
            inbox,
            woken,
            shutdown: shared.shutdown,
            peers,
            conns: Slab::new(),
            next_gen: 0,
            pool,
            wheel: TimerWheel::new(TIMER_TICK, Instant::now()),
            router,
            dirty: Vec::new(),
            ready_again: Vec::new(),
            overflow: Vec::new(),
            fired: Vec::new(),
            outbox: Vec::new(),
            qops: Vec::new(),
            deliveries: Vec::new(),
            local_deliveries: Vec::new(),
            batches: (0..n).map(|_| Batch::default()).collect(),
            now: Instant::now(),
            scratch: Vec::new(),
            enc: Vec::new(),
            seq: 0,
            sessions: 0,
            fanning: false,
            access_gen: access_generation(&cfg),
            counters: Counters::default(),
            zip: super::compress::Compression::new(cfg.compression),
            stats: shared.stats,
            limits: shared.limits,
            workers: shared.pool,
            auth: shared.auth,
            memory: shared.memory,
            memory_alarm: false,
            cluster: shared.cluster,
            cluster_more: false,
            js_waiting: std::collections::VecDeque::new(),
            js_waiting_bytes: 0,
            queue_busy: false,
            js_keepalive: Instant::now(),
            gauges_at: Instant::now(),
            sjs: super::conn::SjsCtx::new(
                cfg.sockjs
                    .as_ref()
                    .map(|c| crate::sockjs::mounts(c, cfg.echo))
                    .unwrap_or_default(),
                n,
            ),
            sjs_ids: Default::default(),
            scratch_frame: Vec::new(),
            delivered: Vec::new(),
            turn_window: super::metrics::RecentMax::new(Instant::now()),
            sjs_refusals: Default::default(),
            cfg,
        }
    }

    pub fn run(mut self) -> io::Result<()> {
        self.stats.tid.store(thread_id(), Ordering::Relaxed);
        let mut events = Events::with_capacity(1024);
        let mut shutdown_deadline: Option<Instant> = None;
        loop {
            let pending = self.batches.iter().any(|b| !b.is_empty());
            let busy = !self.ready_again.is_empty() || !self.dirty.is_empty() || pending;
            let timeout = if busy || self.cluster_more {
                Some(Duration::ZERO)
            } else if self.cluster.as_ref().is_some_and(|c| c.has_waiting())
                || !self.js_waiting.is_empty()
            {
                Some(
                    self.wheel
                        .timeout()
                        .map_or(CLUSTER_RETRY, |t| t.min(CLUSTER_RETRY)),
                )
            } else if self.router.js_held() > 0 {
                // Wake for the keep-alive of held queue messages.
                let every = self.cfg.queues.ack_wait / 4;
                Some(self.wheel.timeout().map_or(every, |t| t.min(every)))
            } else if self.router.queue_count() > 0 {
                // Queues homed here: their gauges stay fresh (a turn every GAUGES_EVERY).
                Some(
                    self.wheel
                        .timeout()
                        .map_or(GAUGES_EVERY, |t| t.min(GAUGES_EVERY)),
                )
            } else {
                self.wheel.timeout()
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            let now = Instant::now();
            self.now = now;
            let alarm = self.memory.alarm();
            let busy = !self.js_waiting.is_empty();
            if (self.memory_alarm || self.queue_busy) && !alarm && !busy {
                self.unblock_publishers();
            }
            self.memory_alarm = alarm;
            self.queue_busy = busy;
            for ev in events.iter() {
                if ev.token() == WAKER {
                    self.woken.store(false, Ordering::Release);
                    self.drain_inbox(now);
                    continue;
                }
                if ev.is_writable() {
                    if let Some(s) = self.slot(ev.token()) {
                        s.conn.writable();
                    }
                    self.dirty.push(ev.token());
                }
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    self.read(ev.token(), now);
                }
            }
            for t in std::mem::take(&mut self.ready_again) {
                self.read(t, now);
            }
            self.deliver_from_cluster();
            self.fire_timers(now);
            self.recheck_access(now);
            if shutdown_deadline.is_none() && self.shutdown.load(Ordering::Acquire) {
                shutdown_deadline = Some(now + self.cfg.shutdown_timeout);
                // Messages other reactors sent before the shutdown (whose senders may hold
                // RECEIPTs for them) are delivered before the sessions are closed.
                self.drain_inbox(now);
                self.close_all(now);
            }
            self.send_batches();
            // The cached segments hold their messages: let them go with the turn.
            self.zip.clear();
            self.end_turn_cluster();
            self.handle_overflow(now);
            self.flush_dirty(now);
            self.observe_deliveries();
            self.publish_stats(now);
            if let Some(d) = shutdown_deadline {
                // SockJS sessions with nothing left to say wait for no one.
                let idle_sessions = self
                    .conns
                    .iter()
                    .all(|(_, s)| s.conn.kind() == Kind::Sockjs && !s.conn.wants_flush());
                if self.conns.is_empty() || idle_sessions || now >= d {
                    return Ok(());
                }
            }
        }
    }

    /// Cluster mode: deliver what other nodes published (up to a turn's budget).
    fn deliver_from_cluster(&mut self) {
        let Some(up) = &mut self.cluster else {
            return;
        };
        let mut sink = conn_sink!(self);
        let mut n = 0;
        while n < CLUSTER_BUDGET {
            let Some(d) = up.recv() else {
                break;
            };
            let before = sink.counters.messages_out;
            self.router.deliver_cluster(&d.msg, &d.via, &mut sink);
            if sink.counters.messages_out > before {
                // Received from NATS this turn.
                self.delivered.push(self.now);
            }
            n += 1;
        }
        self.cluster_more = n == CLUSTER_BUDGET;
    }

    /// JetStream queue store: a queue SEND goes to the bridge, which answers its sender once
    /// JetStream has stored it; refused at once when the bridge is that far behind.
    fn send_to_queue_store(
        &mut self,
        queue: &str,
        payload: &Arc<[u8]>,
        origin: Origin,
        receipt: Option<Box<str>>,
        now: Instant,
    ) {
        let Some(subject) = self.router.subject_of(queue).map(Arc::clone) else {
            self.verdict(
                Token(origin.token),
                receipt,
                Some("destination too long for the cluster"),
                now,
            );
            return;
        };
        let send = super::bridge::QueueSend {
            subject,
            payload: Arc::clone(payload),
            reactor: origin.reactor,
            token: origin.token,
            receipt,
        };
        // Straight on when nothing waits (in order: never past what does).
        let send = match (&mut self.cluster, self.js_waiting.is_empty()) {
            (Some(up), true) => match up.queue_send(send) {
                Ok(()) => return,
                Err(send) => send,
            },
            _ => send,
        };
        if self.js_waiting.len() < JS_WAITING_MAX
            && self.js_waiting_bytes + send.payload.len() <= JS_WAITING_MAX_BYTES
        {
            self.js_waiting_bytes += send.payload.len();
            self.js_waiting.push_back((send, now + JS_WAITING_WAIT));
        } else {
            self.refuse_queue_send(send, "queue store busy: message not stored", now);
        }
    }

    /// A queue SEND that cannot reach the store: ERROR to its sender, counted.
    fn refuse_queue_send(
        &mut self,
        send: super::bridge::QueueSend,
        why: &'static str,
        now: Instant,
    ) {
        if let Some(up) = &self.cluster {
            up.queue_failed();
        }
        self.verdict(Token(send.token), send.receipt, Some(why), now);
    }

    /// Queue SENDs held for the store: on to the bridge while it has room; those past their
    /// time are refused.
    fn flush_js_waiting(&mut self, now: Instant) {
        while let Some((send, deadline)) = self.js_waiting.pop_front() {
            self.js_waiting_bytes = self.js_waiting_bytes.saturating_sub(send.payload.len());
            if deadline <= now {
                self.refuse_queue_send(send, "queue store did not take the message in time", now);
                continue;
            }
            let Some(up) = &mut self.cluster else {
                return;
            };
            if let Err(send) = up.queue_send(send) {
                self.js_waiting_bytes += send.payload.len();
                self.js_waiting.push_front((send, deadline));
                break;
            }
        }
    }

    /// Cluster mode, end of a turn: pass interest changes on and ring the bridge once.
    fn end_turn_cluster(&mut self) {
        if !self.js_waiting.is_empty() {
            self.flush_js_waiting(self.now);
        }
        // Held messages stay this node's: JetStream hears they are in progress four times per
        // ack wait, however long a consumer takes (as with the in-memory queues); a queue left
        // without local consumers gives back what it holds after a grace.
        if self.router.js_held() > 0
            && self.now.duration_since(self.js_keepalive) >= self.cfg.queues.ack_wait / 4
        {
            self.router.js_keepalive();
            let grace = (self.cfg.queues.ack_wait / 2).min(JS_ORPHAN_GRACE);
            self.router.js_release(self.now, grace);
            self.js_keepalive = self.now;
        }
        let Some(up) = &mut self.cluster else {
            return;
        };
        if let Some(changes) = self.router.interest_changes() {
            if !changes.is_empty() {
                up.interest(changes);
            }
        }
        up.end_turn();
    }

    /// The memory alarm is off: connections stopped for it are read again.
    fn unblock_publishers(&mut self) {
        for (i, s) in self.conns.iter_mut() {
            if s.conn.take_memory_blocked() {
                self.ready_again.push(token(i, s.gen));
            }
        }
    }

    /// The topic messages delivered this turn were written (as far as the sockets took them):
    /// their time inside the broker, into the histogram.
    fn observe_deliveries(&mut self) {
        if self.delivered.is_empty() {
            return;
        }
        let done = Instant::now();
        for t in self.delivered.drain(..) {
            let nanos =
                u64::try_from(done.saturating_duration_since(t).as_nanos()).unwrap_or(u64::MAX);
            self.counters
                .delivery_hist
                .observe(&super::metrics::DELIVERY_BUCKETS, nanos);
        }
    }

    /// Once per loop turn: copy the counters where scrapes can read them.
    fn publish_stats(&mut self, started: Instant) {
        let c = &mut self.counters;
        let busy = started.elapsed().as_nanos() as u64;
        c.loop_turns += 1;
        c.loop_nanos += busy;
        c.loop_max_nanos = c.loop_max_nanos.max(busy);
        c.loop_recent_max_nanos = self.turn_window.observe(self.now, busy);
        c.turn_hist.observe(&super::metrics::TURN_BUCKETS, busy);
        let (subs, dests) = self.router.sizes();
        c.subscriptions = subs as u64;
        (c.queue_rejected, c.queue_dropped) = self.router.queue_losses();
        c.destinations = dests as u64;
        c.queues = self.router.queue_count() as u64;
        (c.deflate_segments, c.deflate_bytes_in, c.deflate_bytes_out) =
            (self.zip.segments, self.zip.bytes_in, self.zip.bytes_out);
        if self.now.duration_since(self.gauges_at) >= GAUGES_EVERY {
            self.gauges_at = self.now;
            let (ready, unacked, consumers) = self.router.queue_gauges();
            (c.queue_ready, c.queue_unacked, c.queue_consumers) =
                (ready as u64, unacked as u64, consumers as u64);
            // The deepest queues by name, at most the configured number.
            let mut list = Vec::new();
            self.router.queue_details(&mut list);
            list.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            list.truncate(self.cfg.queues.metrics_labels);
            let gauges = list
                .into_iter()
                .map(
                    |(name, ready, unacked, consumers)| super::metrics::QueueGauge {
                        name,
                        ready,
                        unacked,
                        consumers,
                    },
                )
                .collect();
            *self
                .stats
                .queue_list
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = gauges;
        }
        self.stats.publish(c);
    }

    fn slot(&mut self, t: Token) -> Option<&mut Slot> {
        live(&mut self.conns, t)
    }

    fn drain_inbox(&mut self, now: Instant) {
        while let Ok(mail) = self.inbox.try_recv() {
            match mail {
                Mail::Accepted(sock, kind, admitted) => self.add(sock, kind, admitted, now),
                Mail::Adopt(conn) => self.adopt(conn, now),
                Mail::Batch(b) => self.receive(b, now),
                Mail::Admin(ask) => self.admin(*ask, now),
                Mail::External(msgs) => {
                    let mut ctx_msgs = msgs;
                    self.external(&mut ctx_msgs, now);
                }
                Mail::AuthDone(token, ok, delay) => {
                    let t = Token(token);
                    if let Some(next) = self.with_conn(t, now, |c, _| c.auth_done(ok, delay, now)) {
                        self.after(t, next, false);
                    }
                }
                Mail::QueueVerdict(v) => self.verdict(Token(v.token), v.receipt, v.refused, now),
                Mail::JsPulled { queue, msgs, asked } => {
                    let msgs = msgs
                        .into_iter()
                        .map(|(payload, reply, redelivered)| {
                            let msg = crate::router::QMsg {
                                seq: self.router.next_seq(),
                                payload,
                                redelivered,
                            };
                            (msg, reply)
                        })
                        .collect();
                    self.apply_queue_op(QueueOp::Pulled { queue, msgs, asked }, now);
                    self.fan_out(now);
                }
                Mail::ClusterReady(token, receipt, upto) => {
                    self.router.cluster_confirmed(upto);
                    self.verdict(Token(token), Some(receipt), None, now);
                }
                Mail::AppDone(done) => {
                    let t = Token(done.token);
                    if let Some(out) = self.with_conn(t, now, |c, ctx| {
                        c.app_done(ctx, done);
                        c.wants_flush()
                    }) {
                        self.fan_out(now);
                        self.after(t, Next::Idle, out);
                    }
                }
            }
        }
    }

    /// Messages from outside the reactors: encoded and routed like a SEND here.
    fn external(&mut self, msgs: &mut Vec<crate::app::Outgoing>, now: Instant) {
        let mut enc = std::mem::take(&mut self.enc);
        for m in msgs.drain(..) {
            let msg = super::conn::encode_outgoing(&m, &self.router, &mut self.seq, &mut enc);
            self.counters.messages_in += 1;
            if self.router.cluster_refuses(&msg.destination).is_some() {
                // Cluster mode: no node-local queue behind the cluster's back. Counted.
                self.counters.queue_rejected += 1;
            } else if crate::router::kind(&msg.destination) == crate::router::DestKind::Queue {
                let seq = self.router.next_seq();
                self.qops.push(QueueOp::Enqueue {
                    queue: Arc::clone(&msg.destination),
                    msg: crate::router::QMsg {
                        seq,
                        payload: msg,
                        redelivered: false,
                    },
                    // Published from outside any connection: nobody to answer.
                    origin: Origin {
                        reactor: self.id,
                        token: usize::MAX,
                    },
                    receipt: None,
                });
            } else {
                self.outbox.push(msg);
            }
        }
        self.enc = enc;
        self.fan_out(now);
    }

    /// A peer's batch: queue work first (this is the home), then deliveries and errors for
    /// connections here, then topic messages.
    fn receive(&mut self, b: Batch, now: Instant) {
        for op in b.qops {
            self.apply_queue_op(op, now);
        }
        let mut deliveries = b.deliveries;
        self.deliver_queued(&mut deliveries);
        for v in b.verdicts {
            self.verdict(Token(v.token), v.receipt, v.refused, now);
        }
        for m in &b.publish {
            let before = self.counters.messages_out;
            let mut sink = conn_sink!(self);
            self.router.deliver_local(m, &mut sink);
            if let Some(t) = m.received.filter(|_| self.counters.messages_out > before) {
                self.delivered.push(t);
            }
        }
        // Deliveries handed back for want of room go home.
        self.fan_out(now);
    }

    /// Apply an op to a queue homed here and hand out what it dispatches.
    fn apply_queue_op(&mut self, op: QueueOp, now: Instant) {
        let mut out = std::mem::take(&mut self.deliveries);
        if let Some(v) = self.router.apply(op, &mut out) {
            let Origin { reactor, token } = v.origin;
            if reactor == self.id {
                self.verdict(Token(token), v.receipt, v.refused, now);
            } else if let Some(b) = self.batches.get_mut(reactor) {
                b.verdicts.push(Verdict {
                    token,
                    receipt: v.receipt,
                    refused: v.refused,
                });
            }
        }
        // Reused, not allocated per operation (taken: a delivery can requeue and come back here).
        let mut local = std::mem::take(&mut self.local_deliveries);
        for d in out.drain(..) {
            let r = d.consumer.reactor as usize;
            if r == self.id {
                local.push(d);
            } else if let Some(b) = self.batches.get_mut(r) {
                b.deliveries.push(d);
            }
        }
        self.deliveries = out;
        self.deliver_queued(&mut local);
        self.local_deliveries = local;
    }

    /// Deliveries from a queue's home to consumers on this reactor. What a connection has no
    /// room for goes back to its queue as a `Return` op, routed by the caller's `fan_out`
    /// (never from here: a returned message may be dispatched again to the same consumer, and
    /// handling that here would recurse).
    fn deliver_queued(&mut self, deliveries: &mut Vec<Delivery>) {
        let mut sink = conn_sink!(self);
        for d in deliveries.drain(..) {
            self.router.deliver_queued(&d, &mut sink, &mut self.qops);
        }
    }

    /// The home's answer to a queue SEND from a connection here: its RECEIPT, or an ERROR
    /// (with the receipt id) when the queue refused it.
    fn verdict(
        &mut self,
        t: Token,
        receipt: Option<Box<str>>,
        refused: Option<&'static str>,
        now: Instant,
    ) {
        if let Some(out) = self.with_conn(t, now, |c, ctx| {
            c.queue_verdict(ctx, receipt, refused);
            c.wants_flush()
        }) {
            self.fan_out(now);
            self.after(t, Next::Idle, out);
        }
    }

    fn add(&mut self, sock: TcpStream, kind: Kind, admitted: Option<IpAddr>, now: Instant) {
        let dropped = |limits: &ConnLimits| {
            limits.socket_closed();
            if let Some(ip) = admitted {
                limits.release(ip);
            }
        };
        if self.shutdown.load(Ordering::Acquire) {
            dropped(&self.limits);
            return;
        }
        let entry = self.conns.vacant_entry();
        let idx = entry.key();
        if idx > 0xFFFF_FFFF {
            dropped(&self.limits);
            return;
        }
        self.next_gen = self.next_gen.wrapping_add(1);
        let gen = self.next_gen;
        let tok = token(idx, gen);
        let mut conn = Conn::new(
            sock,
            kind,
            &self.cfg,
            now,
            &mut self.sessions,
            self.id,
            admitted,
        );
        let registered = conn.socket().is_some_and(|sock| {
            self.poll
                .registry()
                .register(sock, tok, Interest::READABLE)
                .is_ok()
        });
        if !registered {
            dropped(&self.limits);
            return;
        }
        if log::log_enabled!(log::Level::Debug) {
            log::debug!(
                "reactor {}: {kind} connection from {}",
                self.id,
                peer_of(&mut conn)
            );
        }
        // A connection refused by the limits is answered and closed, but it is not open in
        // the gauges (nor counted against the limits it was refused by).
        let open = u64::from(admitted.is_some());
        match kind {
            Kind::Ws => {
                self.counters.conns_ws += open;
                self.counters.accepted_ws += 1;
            }
            Kind::Tcp => {
                self.counters.conns_tcp += open;
                self.counters.accepted_tcp += 1;
            }
            Kind::Sockjs => {}
        }
        entry.insert(Slot { conn, gen });
        if admitted.is_none() {
            self.with_conn(tok, now, |c, ctx| c.refuse_limit(ctx));
            self.dirty.push(tok);
        }
        self.rearm_timer(tok);
        // Bytes may already be waiting (edge-triggered: the event could predate registration).
        self.ready_again.push(tok);
    }

    /// Run `f` on a connection with a context borrowed from the reactor.
    fn with_conn<R>(
        &mut self,
        t: Token,
        now: Instant,
        f: impl FnOnce(&mut Conn, &mut Ctx<'_>) -> R,
    ) -> Option<R> {
        let s = live(&mut self.conns, t)?;
        let mut ctx = conn_ctx!(self, t.0, now, s.conn.admitted());
        Some(f(&mut s.conn, &mut ctx))
    }

    fn read(&mut self, t: Token, now: Instant) {
        let Some((next, out)) =
            self.with_conn(t, now, |c, ctx| (c.on_readable(ctx), c.wants_flush()))
        else {
            return;
        };
        self.fan_out(now);
        self.after(t, next, out);
    }

    /// Deliver what the last connection published: topic messages locally now and to other
    /// reactors in this turn's batches; queue work to each queue's home.
    fn fan_out(&mut self, now: Instant) {
        if self.fanning {
            return;
        }
        self.fanning = true;
        while !self.outbox.is_empty() || !self.qops.is_empty() {
            self.fan_out_once(now);
        }
        self.fanning = false;
    }

    /// One pass over the outbox and the queue work pending now. Queue work can make more (a
    /// delivery handed back, a consumer closed by a verdict): [`Reactor::fan_out`] loops.
    fn fan_out_once(&mut self, now: Instant) {
        if !self.outbox.is_empty() {
            let mut outbox = std::mem::take(&mut self.outbox);
            for msg in outbox.drain(..) {
                let before = self.counters.messages_out;
                let mut sink = conn_sink!(self);
                self.router.deliver_local(&msg, &mut sink);
                if let Some(t) = msg.received.filter(|_| self.counters.messages_out > before) {
                    self.delivered.push(t);
                }
                let (mut mask, subject) = self.router.remote(&msg.destination);
                if let (Some(up), Some(subject)) = (&mut self.cluster, subject) {
                    up.publish(subject, &msg.shared);
                }
                while mask != 0 {
                    let r = mask.trailing_zeros() as usize;
                    mask &= mask - 1;
                    if let Some(b) = self.batches.get_mut(r) {
                        b.publish.push(msg.clone());
                    }
                }
            }
            self.outbox = outbox;
        }
        let mut ops = std::mem::take(&mut self.qops);
        for op in ops.drain(..) {
            let op = match op {
                QueueOp::Enqueue {
                    queue,
                    msg,
                    origin,
                    receipt,
                } if self.router.js_queues() => {
                    self.send_to_queue_store(&queue, &msg.payload.shared, origin, receipt, now);
                    continue;
                }
                op => op,
            };
            let home = self.router.home_of(op.queue());
            if home == self.id {
                self.apply_queue_op(op, now);
            } else if let Some(b) = self.batches.get_mut(home) {
                b.qops.push(op);
            }
        }
        // Keep the buffer (no allocation per turn) unless new work arrived meanwhile.
        if self.qops.is_empty() {
            self.qops = ops;
        }
    }

    /// One channel message and at most one wake-up per peer reactor per turn. A full mailbox
    /// keeps the batch for the next turn (the loop then polls without sleeping).
    fn send_batches(&mut self) {
        for (r, batch) in self.batches.iter_mut().enumerate() {
            if batch.is_empty() {
                continue;
            }
            let Some(peer) = self.peers.get(r) else {
                *batch = Batch::default();
                continue;
            };
            let b = std::mem::take(batch);
            match peer.tx.try_send(Mail::Batch(b)) {
                Ok(()) => peer.wake(),
                Err(TrySendError::Full(Mail::Batch(b))) => {
                    *batch = b;
                    peer.wake();
                }
                Err(_) => {}
            }
        }
    }

    fn after(&mut self, t: Token, next: Next, has_output: bool) {
        if self.sjs.call.is_some() || !self.sjs.lost.is_empty() {
            let now = self.now;
            self.sjs_settle(t, now);
        }
        match next {
            Next::Idle => {}
            Next::ReadAgain => self.ready_again.push(t),
            Next::Close => {
                self.remove(t);
                return;
            }
        }
        if has_output {
            self.dirty.push(t);
        }
        self.rearm_timer(t);
    }

    fn rearm_timer(&mut self, t: Token) {
        let grace = self.cfg.heartbeat_grace;
        let Some(s) = live(&mut self.conns, t) else {
            return;
        };
        if let Some(d) = s.conn.next_deadline(grace) {
            let want = self.wheel.tick_of(d);
            if s.conn.timer_entry().is_none_or(|at| want < at) {
                s.conn.set_timer_entry(Some(self.wheel.schedule(t.0, d)));
            }
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        self.wheel.advance(now, &mut self.fired);
        let fired = std::mem::take(&mut self.fired);
        for &(key, tick) in &fired {
            let t = Token(key);
            let Some(s) = self.slot(t) else { continue };
            if s.conn.timer_entry() != Some(tick) {
                continue; // stale entry
            }
            s.conn.set_timer_entry(None);
            let Some((next, out)) =
                self.with_conn(t, now, |c, ctx| (c.on_timer(ctx), c.wants_flush()))
            else {
                continue;
            };
            self.fan_out(now);
            self.after(t, next, out);
        }
        self.fired = fired;
        self.fired.clear();
    }

    /// After a reload of the users or the ACL (two atomic loads per turn to notice), every
    /// live session is checked again: access that was revoked ends (see
    /// [`Conn::recheck_access`]).
    fn recheck_access(&mut self, now: Instant) {
        let gens = access_generation(&self.cfg);
        if gens == self.access_gen {
            return;
        }
        self.access_gen = gens;
        let acl = self.cfg.acl.as_deref().map(|a| a.current());
        self.for_each_conn(now, |c, ctx| c.recheck_access(ctx, acl.as_deref()));
    }

    /// Run `f` on every connection (routing what it publishes); one that `f` says has new
    /// output is flushed this turn and its timer rearmed.
    fn for_each_conn(&mut self, now: Instant, mut f: impl FnMut(&mut Conn, &mut Ctx<'_>) -> bool) {
        let keys: Vec<Token> = self.conns.iter().map(|(i, s)| token(i, s.gen)).collect();
        for t in keys {
            if let Some(out) = self.with_conn(t, now, &mut f) {
                self.fan_out(now);
                if out {
                    self.after(t, Next::Idle, true);
                }
            }
        }
    }

    /// Subscribers over their outbound bound: ERROR "slow consumer", then close.
    fn handle_overflow(&mut self, now: Instant) {
        for t in std::mem::take(&mut self.overflow) {
            if let Some(out) = self.with_conn(t, now, |c, ctx| {
                // Over the bound by at most the frame being written and the ERROR.
                let dropped = c.fail_slow_consumer(ctx) as u64;
                // Counted as sent when queued (nearly all MESSAGEs): they never will be.
                ctx.counters.messages_out = ctx.counters.messages_out.saturating_sub(dropped);
                c.wants_flush()
            }) {
                self.fan_out(now);
                self.after(t, Next::Idle, out);
            }
        }
    }

    fn flush_dirty(&mut self, now: Instant) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for &t in &dirty {
            let Some(s) = live(&mut self.conns, t) else {
                continue;
            };
            if s.conn.sjs().is_some() {
                // A SockJS session: its frames go onto its receiver.
                self.sjs_pump(t, now);
                continue;
            }
            let carrying = s.conn.carrier_of();
            let Some((res, was_blocked, blocked)) = self.with_conn(t, now, |c, ctx| {
                let was = c.write_blocked();
                let r = c.flush(ctx);
                (r, was, c.write_blocked())
            }) else {
                continue;
            };
            let next = res.unwrap_or(Next::Close);
            if next != Next::Close && blocked != was_blocked {
                let interest = if blocked {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                if let Some(sock) = live(&mut self.conns, t).and_then(|s| s.conn.socket()) {
                    let _ = self.poll.registry().reregister(sock, t, interest);
                }
            }
            // A carrier with room again takes more of its session's frames.
            if let Some(session) = carrying {
                if next != Next::Close
                    && live(&mut self.conns, t).is_some_and(|s| s.conn.carrier_has_room())
                {
                    self.sjs_pump(Token(session), now);
                }
            }
            // Queue consumers report what was written (and resume once drained).
            self.fan_out(now);
            self.after(t, next, false);
        }
        // Connections that got output while these were flushed are flushed next turn.
        dirty.clear();
        dirty.append(&mut self.dirty);
        self.dirty = dirty;
    }

    fn close_all(&mut self, now: Instant) {
        self.for_each_conn(now, |c, ctx| {
            c.start_close(ctx, code::GOING_AWAY, "server shutting down");
            true
        });
    }

    fn remove(&mut self, t: Token) {
        let (idx, gen) = split(t);
        if self.conns.get(idx).is_none_or(|s| s.gen != gen) {
            return;
        }
        // For the log: who it was (the session's id is gone with its subscriptions).
        let gone = log::log_enabled!(log::Level::Debug)
            .then(|| live(&mut self.conns, t))
            .flatten()
            .map(|s| {
                let who = match s.conn.stomp() {
                    Some(st) => format!(" (session {})", st.session.id),
                    None => String::new(),
                };
                format!(
                    "{} connection from {}{who}",
                    s.conn.kind(),
                    peer_of(&mut s.conn)
                )
            });
        // Subscriptions go first (queue consumers' unacked messages are requeued).
        let now = self.now;
        self.with_conn(t, now, |c, ctx| c.drop_session(ctx));
        self.fan_out(now);
        let mut s = self.conns.remove(idx);
        if let Some(sock) = s.conn.socket() {
            let _ = self.poll.registry().deregister(sock);
        }
        s.conn.release_output(&mut self.pool);
        let open = u64::from(s.conn.admitted().is_some());
        match s.conn.kind() {
            Kind::Ws => self.counters.conns_ws -= open,
            Kind::Tcp => self.counters.conns_tcp -= open,
            Kind::Sockjs => self.counters.conns_sockjs -= 1,
        }
        if s.conn.kind() == Kind::Sockjs {
            if let Some(ip) = s.conn.admitted() {
                self.limits.release_session(ip);
            }
            self.sjs_gone(t, &s.conn, now);
        } else {
            self.limits.socket_closed();
            if let Some(ip) = s.conn.admitted() {
                self.limits.release(ip);
            }
            if let Some(session) = s.conn.carrier_of() {
                self.sjs.lost.push((session, t.0));
                self.sjs_settle(t, now);
            }
        }
        if let Some(line) = gone {
            log::debug!("reactor {}: {line} closed", self.id);
        }
    }
}

/// A connection's peer for the log: its address, or what it is when it has none.
fn peer_of(conn: &mut Conn) -> String {
    match conn.socket().map(|s| s.peer_addr()) {
        Some(Ok(a)) => a.to_string(),
        Some(Err(_)) => "a peer gone".to_string(),
        None => match conn.admitted() {
            Some(ip) => format!("{ip} (SockJS session)"),
            None => "a SockJS session".to_string(),
        },
    }
}

/// This thread's id in `/proc` (0 if unknown): `/proc/thread-self` links to
/// `<pid>/task/<tid>`.
fn thread_id() -> u64 {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name()?.to_str()?.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Per-connection memory is part of the product: keep the slab entry small. Buffers are
    /// pooled and absent while idle, so this is most of what an idle connection costs.
    #[test]
    fn idle_connection_footprint() {
        let slot = std::mem::size_of::<Slot>();
        let decoder = std::mem::size_of::<crate::ws::Decoder>();
        let stomp = std::mem::size_of::<super::super::conn::StompState>();
        eprintln!("slot {slot} B, ws decoder {decoder} B, stomp state {stomp} B");
        // mio's TcpStream carries its selector's id in debug builds (16 bytes, 4 in release).
        let limit = if cfg!(debug_assertions) { 328 } else { 320 };
        assert!(slot <= limit, "slot grew to {slot} bytes");
        assert!(decoder <= 128, "decoder grew to {decoder} bytes");
    }
}
