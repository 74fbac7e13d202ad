//! Reactor threads (one mio `Poll` each) that drive the connections of a [`Plan`], and the
//! main-thread driver that moves every thread through the run's phases, samples counters for
//! the live status line and the throughput series, and merges the threads' results.
//!
//! ```text
//! main: Setup ──all ready──▶ Run (warm-up, then measured) ──▶ Drain ──▶ Hold ──▶ Close ──▶ join
//!         │ phase (atomic)                 ▲ counters (atomics, flushed once per loop turn)
//!         ▼                                │
//! reactor threads: poll → read/parse/record → publish what the pacer and window allow → flush
//! ```

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::body::Stamp;
use crate::conn::{Conn, ConnSpec, Publisher, State};
use crate::multi::ChildLink;
use crate::progress::Progress;
use crate::stats::{merge_failures, Failures, Latency};
use crate::sys;
use crate::target::Target;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Connect,
    Fanout,
    Broadcast,
    Queue,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Connect => "connect",
            Mode::Fanout => "fanout",
            Mode::Broadcast => "broadcast",
            Mode::Queue => "queue",
        }
    }
}

/// STOMP session settings.
#[derive(Debug, Clone)]
pub struct StompOpts {
    pub login: Option<String>,
    pub passcode: Option<String>,
    /// CONNECT `host` (the virtual host).
    pub host: String,
    pub accept_version: &'static str,
    /// WebSocket subprotocols offered.
    pub protocols: Vec<&'static str>,
    /// Offer permessage-deflate.
    pub deflate: bool,
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct Plan {
    pub mode: Mode,
    /// Broker endpoints (nodes); every connection names one.
    pub targets: Vec<Target>,
    pub stomp: StompOpts,
    pub dests: Vec<String>,
    pub specs: Vec<ConnSpec>,
    pub threads: usize,
    /// Sessions being set up at once, over all threads.
    pub concurrency: usize,
    pub setup_timeout: Duration,
    pub warmup: Duration,
    pub duration: Duration,
    pub drain: Duration,
    pub hold: Duration,
    pub close_timeout: Duration,
    /// A ready connection that has sent nothing for this long sends a WebSocket ping
    /// (zero: never).
    pub keepalive: Duration,
    /// A publisher pauses while more than `window` deliveries per ready subscriber are owed
    /// (0: no window).
    pub window: u64,
    pub body_size: usize,
    /// SENDs carry `persistent:true`.
    pub persistent: bool,
    /// Queue consumers NACK every Nth first delivery (0: never).
    pub nack_every: u64,
    /// Broker processes to measure (memory, CPU); with several targets, one per target.
    pub server_pids: Vec<u32>,
    pub progress: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Phase {
    Setup = 0,
    Run = 1,
    Drain = 2,
    Hold = 3,
    Close = 4,
    Abort = 5,
}

impl Phase {
    fn from_u8(v: u8) -> Phase {
        match v {
            0 => Phase::Setup,
            1 => Phase::Run,
            2 => Phase::Drain,
            3 => Phase::Hold,
            4 => Phase::Close,
            _ => Phase::Abort,
        }
    }
}

/// Counters every thread adds to, once per loop turn.
#[derive(Debug, Default)]
pub struct Counters {
    pub ready: AtomicU64,
    pub failed: AtomicU64,
    /// Ready sessions lost before the close phase.
    pub dropped: AtomicU64,
    pub closed_clean: AtomicU64,
    pub published: AtomicU64,
    /// Deliveries owed for what was published (fan-out of each message).
    pub expected: AtomicU64,
    pub delivered: AtomicU64,
    pub acked: AtomicU64,
    pub redelivered: AtomicU64,
    /// Deliveries refused with NACK (queue `--nack-every`).
    pub nacked: AtomicU64,
    /// Deliveries owed to this process's subscribers for its own publishes, and those of them
    /// received: the publish window's view (equal to expected/delivered in one process).
    pub own_expected: AtomicU64,
    pub own_delivered: AtomicU64,
}

/// A snapshot of [`Counters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snap {
    pub ready: u64,
    pub failed: u64,
    pub dropped: u64,
    pub closed_clean: u64,
    pub published: u64,
    pub expected: u64,
    pub delivered: u64,
    pub acked: u64,
    pub redelivered: u64,
    pub nacked: u64,
    pub own_expected: u64,
    pub own_delivered: u64,
}

impl Counters {
    pub fn snap(&self) -> Snap {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Snap {
            ready: l(&self.ready),
            failed: l(&self.failed),
            dropped: l(&self.dropped),
            closed_clean: l(&self.closed_clean),
            published: l(&self.published),
            expected: l(&self.expected),
            delivered: l(&self.delivered),
            acked: l(&self.acked),
            redelivered: l(&self.redelivered),
            nacked: l(&self.nacked),
            own_expected: l(&self.own_expected),
            own_delivered: l(&self.own_delivered),
        }
    }

    fn add(&self, d: &Snap) {
        let a = |c: &AtomicU64, v: u64| {
            if v > 0 {
                c.fetch_add(v, Ordering::Relaxed);
            }
        };
        a(&self.ready, d.ready);
        a(&self.failed, d.failed);
        a(&self.dropped, d.dropped);
        a(&self.closed_clean, d.closed_clean);
        a(&self.published, d.published);
        a(&self.expected, d.expected);
        a(&self.delivered, d.delivered);
        a(&self.acked, d.acked);
        a(&self.redelivered, d.redelivered);
        a(&self.nacked, d.nacked);
        a(&self.own_expected, d.own_expected);
        a(&self.own_delivered, d.own_delivered);
    }
}

/// State shared by the driver and the reactor threads.
pub struct Shared {
    pub epoch: Instant,
    phase: AtomicU8,
    /// Messages sent before this (ns since `epoch`) are warm-up: not in the latency figures.
    pub warmup_end_ns: AtomicU64,
    pub c: Counters,
    /// Ready subscribers per destination (a message's expected fan-out).
    pub dest_ready: Vec<AtomicU32>,
    /// Each reactor thread's CPU time so far, µs.
    pub thread_cpu_us: Vec<AtomicU64>,
    /// Publishers that reached their message cap.
    pub pubs_done: AtomicU64,
    /// Per target: sessions ready, ready sessions lost, deliveries received, subscribers
    /// ready.
    pub nodes: Vec<[AtomicU64; 4]>,
    /// Subscribers per destination over every process of a `--processes` run (from the
    /// parent's go): what a publish owes in all, when `global` is set.
    pub global_fan: Vec<AtomicU32>,
    pub global: AtomicBool,
    /// Publisher ids this process runs (index: id).
    pub own_pubs: Vec<bool>,
}

impl Shared {
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }

    fn set_phase(&self, p: Phase) {
        self.phase.store(p as u8, Ordering::Release);
    }

    /// Whether this is one process of several (expected fan-out from the parent's counts).
    pub fn global(&self) -> bool {
        self.global.load(Ordering::Relaxed)
    }

    /// Per-target counters now.
    pub fn node_snaps(&self) -> Vec<NodeSnap> {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        self.nodes
            .iter()
            .map(|n| NodeSnap {
                ready: l(&n[0]),
                dropped: l(&n[1]),
                delivered: l(&n[2]),
                subs: l(&n[3]),
            })
            .collect()
    }
}

/// One target's counters at some moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeSnap {
    pub ready: u64,
    pub dropped: u64,
    pub delivered: u64,
    /// Subscribers ready (sessions less publishers).
    pub subs: u64,
}

/// Per-thread state the connections record into.
pub struct Ctx<'a> {
    pub plan: &'a Plan,
    pub shared: &'a Shared,
    pub now_ns: u64,
    warmup_end_ns: u64,
    pub scratch: Vec<u8>,
    rng: u64,
    d: Snap,
    /// Per target, since the last flush: [ready, dropped, delivered, subscribers ready].
    dn: Vec<[u64; 4]>,
    pub out: ThreadOut,
}

impl Ctx<'_> {
    pub fn touch(&mut self) {
        self.now_ns = self.shared.now_ns();
    }

    /// A fresh masking key (xorshift: masks need only be unpredictable to intermediaries).
    pub fn mask(&mut self) -> [u8; 4] {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng as u32).to_ne_bytes()
    }

    pub fn upgraded(&mut self, started_ns: u64) {
        self.out
            .upgrade
            .record(self.now_ns.saturating_sub(started_ns));
    }

    pub fn sent_one(&mut self, dest: usize) {
        self.d.published += 1;
        let fan = |v: &Vec<AtomicU32>| v.get(dest).map_or(0, |a| a.load(Ordering::Relaxed) as u64);
        let local = match self.plan.mode {
            Mode::Queue => 1,
            _ => fan(&self.shared.dest_ready),
        };
        self.d.own_expected += local;
        self.d.expected += if self.plan.mode != Mode::Queue && self.shared.global() {
            fan(&self.shared.global_fan)
        } else {
            local
        };
    }

    pub fn received(&mut self, target: usize, stamp: Option<Stamp>, redelivered: bool) {
        self.d.delivered += 1;
        if let Some(n) = self.dn.get_mut(target) {
            n[2] += 1;
        }
        if redelivered {
            self.d.redelivered += 1;
        }
        let own = match stamp {
            _ if !self.shared.global() => true,
            Some(s) => self.shared.own_pubs.get(s.src as usize) == Some(&true),
            None => false,
        };
        if own {
            self.d.own_delivered += 1;
        }
        let Some(s) = stamp else { return };
        let lat = self.now_ns.saturating_sub(s.ts_ns);
        let measured = s.ts_ns >= self.warmup_end_ns;
        if measured {
            self.out.e2e.record(lat);
        }
        let bcast = self.plan.mode == Mode::Broadcast;
        if let Some(n) = self.out.nodes.get_mut(target) {
            if measured {
                n.e2e.record(lat);
            }
            if bcast {
                let e = n.bcast.entry(s.seq).or_insert((0, 0));
                e.0 += 1;
                e.1 = e.1.max(lat);
            }
        }
        match self.plan.mode {
            Mode::Broadcast => {
                let e = self.out.bcast.entry(s.seq).or_insert((0, 0));
                e.0 += 1;
                e.1 = e.1.max(lat);
            }
            Mode::Queue => self.out.ids.push((s.src as u64) << 40 | s.seq),
            _ => {}
        }
    }

    /// A delivery refused with NACK: it counts towards the window (it arrived) but not as
    /// received; the broker owes it again.
    pub fn nacked(&mut self) {
        self.d.delivered += 1;
        self.d.expected += 1;
        self.d.own_delivered += 1;
        self.d.own_expected += 1;
        self.d.nacked += 1;
    }

    pub fn acked(&mut self) {
        self.d.acked += 1;
    }

    fn fail(&mut self, cause: String, was_ready: bool, target: usize) {
        if was_ready {
            self.d.dropped += 1;
            if let Some(n) = self.dn.get_mut(target) {
                n[1] += 1;
            }
            *self
                .out
                .failures
                .entry(format!("after ready: {cause}"))
                .or_default() += 1;
        } else {
            self.d.failed += 1;
            *self.out.failures.entry(cause).or_default() += 1;
        }
    }

    fn flush_counters(&mut self) {
        self.shared.c.add(&self.d);
        self.d = Snap::default();
        for (d, a) in self.dn.iter_mut().zip(&self.shared.nodes) {
            for (v, c) in d.iter_mut().zip(a) {
                if *v > 0 {
                    c.fetch_add(*v, Ordering::Relaxed);
                    *v = 0;
                }
            }
        }
    }

    /// Deliveries still owed for this process's publishes to its own subscribers, as this
    /// thread sees them (in one process: every delivery owed).
    fn inflight(&self) -> u64 {
        let s = &self.shared.c;
        (s.own_expected.load(Ordering::Relaxed) + self.d.own_expected)
            .saturating_sub(s.own_delivered.load(Ordering::Relaxed) + self.d.own_delivered)
    }
}

/// What a reactor thread hands back.
#[derive(Debug, Default)]
pub struct ThreadOut {
    pub e2e: Latency,
    pub setup: Latency,
    pub upgrade: Latency,
    pub failures: Failures,
    /// Broadcast: seq → (receivers, slowest latency ns).
    pub bcast: HashMap<u64, (u32, u64)>,
    /// Queue: ids of every message received (source << 40 | seq), duplicates included.
    pub ids: Vec<u64>,
    pub cpu: Duration,
    pub pacer_resets: u64,
    /// Per target (only when there are several): latencies and broadcasts of its receivers.
    pub nodes: Vec<NodeOut>,
}

/// What the receivers on one target saw.
#[derive(Debug, Default, Clone)]
pub struct NodeOut {
    pub e2e: Latency,
    /// Broadcast: seq → (receivers on this target, slowest latency ns).
    pub bcast: HashMap<u64, (u32, u64)>,
}

impl NodeOut {
    pub fn merge(&mut self, o: NodeOut) {
        self.e2e.merge(&o.e2e);
        merge_bcast(&mut self.bcast, o.bcast);
    }
}

/// Broadcast results of two sets of receivers: receivers add up, the slowest is kept.
pub fn merge_bcast(into: &mut HashMap<u64, (u32, u64)>, from: HashMap<u64, (u32, u64)>) {
    for (seq, (n, lat)) in from {
        let e = into.entry(seq).or_insert((0, 0));
        e.0 += n;
        e.1 = e.1.max(lat);
    }
}

impl ThreadOut {
    /// Add another thread's results to these (broadcasts: receivers summed, slowest kept).
    pub fn merge(&mut self, o: ThreadOut) {
        self.e2e.merge(&o.e2e);
        self.setup.merge(&o.setup);
        self.upgrade.merge(&o.upgrade);
        merge_failures(&mut self.failures, &o.failures);
        merge_bcast(&mut self.bcast, o.bcast);
        self.ids.extend(o.ids);
        self.cpu += o.cpu;
        self.pacer_resets += o.pacer_resets;
        if self.nodes.len() < o.nodes.len() {
            self.nodes.resize_with(o.nodes.len(), NodeOut::default);
        }
        for (a, b) in self.nodes.iter_mut().zip(o.nodes) {
            a.merge(b);
        }
    }
}

/// Messages one publisher may send per loop turn when unpaced.
const BURST: u64 = 64;

fn reactor(
    idx: usize,
    plan: &Plan,
    shared: &Shared,
    specs: Vec<ConnSpec>,
    conc: usize,
) -> io::Result<ThreadOut> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut conns: Slab<(Conn, Option<Publisher>)> = Slab::with_capacity(specs.len());
    let mut todo = specs.into_iter();
    let mut setting_up = 0usize;
    let mut tb = vec![0u8; 256 * 1024];
    let mut more: Vec<usize> = Vec::new();
    let mut ctx = Ctx {
        plan,
        shared,
        now_ns: shared.now_ns(),
        warmup_end_ns: u64::MAX,
        scratch: Vec::with_capacity(4096),
        rng: 0x9E37_79B9_7F4A_7C15 ^ ((idx as u64 + 1) << 32) ^ shared.now_ns(),
        d: Snap::default(),
        dn: vec![[0; 4]; plan.targets.len()],
        out: ThreadOut {
            nodes: if plan.targets.len() > 1 {
                (0..plan.targets.len())
                    .map(|_| NodeOut::default())
                    .collect()
            } else {
                Vec::new()
            },
            ..ThreadOut::default()
        },
    };
    let mut close_started = false;
    let mut close_deadline = u64::MAX;
    let mut last_check = 0u64;
    let mut pubs_started = false;
    let setup_ns = plan.setup_timeout.as_nanos() as u64;
    loop {
        let phase = shared.phase();
        ctx.touch();
        if phase == Phase::Abort {
            break;
        }
        if phase != Phase::Setup {
            let left = todo.len() as u64;
            if left > 0 {
                ctx.d.failed += left;
                *ctx.out
                    .failures
                    .entry("not started: setup phase over".into())
                    .or_default() += left;
                todo = Vec::new().into_iter();
            }
        }
        if phase == Phase::Setup {
            while setting_up < conc {
                let Some(spec) = todo.next() else { break };
                let target = spec.target;
                let Some(addr) = plan.targets.get(target).map(|t| t.addr) else {
                    ctx.fail("no such target".into(), false, target);
                    continue;
                };
                match Conn::open(addr, spec, ctx.now_ns) {
                    Ok(mut c) => {
                        c.deadline_ns = ctx.now_ns + setup_ns;
                        let entry = conns.vacant_entry();
                        let key = entry.key();
                        poll.registry().register(
                            c.source(),
                            Token(key),
                            Interest::READABLE | Interest::WRITABLE,
                        )?;
                        entry.insert((c, None));
                        setting_up += 1;
                    }
                    Err(e) => ctx.fail(
                        format!("tcp connect: {}", crate::conn::io_cause(&e)),
                        false,
                        target,
                    ),
                }
            }
        }
        if phase >= Phase::Run && !pubs_started {
            pubs_started = true;
            ctx.warmup_end_ns = shared.warmup_end_ns.load(Ordering::Acquire);
            let start = ctx.now_ns;
            for (_, (c, p)) in conns.iter_mut() {
                if let (Some(ps), State::Ready) = (&c.spec.publ, c.state) {
                    let burst = if ps.rate > 0.0 { 1024 } else { BURST };
                    *p = Some(Publisher::new(ps, start, burst));
                }
            }
        }
        if phase >= Phase::Close && !close_started {
            close_started = true;
            close_deadline = ctx.now_ns + plan.close_timeout.as_nanos() as u64;
            let keys: Vec<usize> = conns.iter().map(|(k, _)| k).collect();
            for k in keys {
                if let Some((c, _)) = conns.get_mut(k) {
                    let was_setup = c.state.in_setup();
                    let r = c.begin_close(&mut ctx);
                    if was_setup {
                        setting_up = setting_up.saturating_sub(1);
                    }
                    finish(&mut conns, &mut poll, k, r, &mut ctx);
                }
            }
        }
        if close_started && (conns.is_empty() || ctx.now_ns > close_deadline) {
            for (_, (c, _)) in conns.iter() {
                let cause = if c.state.in_setup() {
                    "setup not finished at close"
                } else {
                    "close timeout"
                };
                *ctx.out.failures.entry(cause.into()).or_default() += 1;
            }
            break;
        }

        // Publish before polling, so a paced publisher's next due time sets the timeout.
        let mut next_due = u64::MAX;
        let mut busy = false;
        if phase == Phase::Run {
            let room = if plan.window == 0 {
                u64::MAX
            } else {
                let subs: u64 = shared
                    .dest_ready
                    .iter()
                    .map(|a| a.load(Ordering::Relaxed) as u64)
                    .sum();
                let cap = plan.window.saturating_mul(subs.max(1));
                cap.saturating_sub(ctx.inflight())
            };
            let fan = (ctx.shared.c.expected.load(Ordering::Relaxed) + ctx.d.expected)
                .checked_div(ctx.shared.c.published.load(Ordering::Relaxed) + ctx.d.published)
                .unwrap_or(1)
                .max(1);
            let mut msgs_room = room / fan;
            let mut broken = Vec::new();
            for (k, (c, p)) in conns.iter_mut() {
                let Some(publ) = p.as_mut() else { continue };
                let sent = c.publish(publ, msgs_room, &mut ctx);
                msgs_room = msgs_room.saturating_sub(sent);
                if sent > 0 {
                    if let Err(e) = c.flush() {
                        broken.push((k, e));
                        continue;
                    }
                }
                let cap = c.spec.publ.as_ref().and_then(|s| s.cap);
                if cap.is_some_and(|cap| publ.seq >= cap) {
                    shared.pubs_done.fetch_add(1, Ordering::Relaxed);
                    ctx.out.pacer_resets += publ.pacer.resets;
                    *p = None;
                    continue;
                }
                match publ.pacer.next_due_ns() {
                    Some(t) => next_due = next_due.min(t),
                    None if c.backlog() < crate::conn::MAX_BACKLOG && msgs_room > 0 => busy = true,
                    None => {}
                }
            }
            for (k, e) in broken {
                finish(&mut conns, &mut poll, k, Err(e), &mut ctx);
            }
            if room == 0 {
                // Window full: look again soon (deliveries arrive on other threads too).
                next_due = next_due.min(ctx.now_ns + 200_000);
            }
        }
        ctx.flush_counters();

        let timeout = if busy || !more.is_empty() {
            Duration::ZERO
        } else if next_due != u64::MAX {
            Duration::from_nanos(next_due.saturating_sub(shared.now_ns()).min(20_000_000))
        } else {
            Duration::from_millis(20)
        };
        match poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        ctx.touch();
        let mut ready_list: Vec<(usize, bool, bool)> = events
            .iter()
            .map(|e| {
                (
                    e.token().0,
                    e.is_writable(),
                    e.is_readable() || e.is_read_closed() || e.is_error(),
                )
            })
            .collect();
        for k in more.drain(..) {
            ready_list.push((k, false, true));
        }
        for (k, w, r) in ready_list {
            let Some((c, p)) = conns.get_mut(k) else {
                continue;
            };
            let was_setup = c.state.in_setup();
            let mut res = Ok(());
            if w {
                res = c.on_writable(&mut ctx);
            }
            if r && res.is_ok() {
                match c.on_readable(&mut tb, &mut ctx) {
                    Ok(true) => more.push(k),
                    Ok(false) => {}
                    Err(e) => res = Err(e),
                }
            }
            if c.take_ready() {
                let now = ctx.now_ns;
                ctx.out.setup.record(now.saturating_sub(c.started_ns));
                ctx.d.ready += 1;
                if let Some(n) = ctx.dn.get_mut(c.spec.target) {
                    n[0] += 1;
                    n[3] += u64::from(c.spec.sub.is_some());
                }
                if let Some(sub) = &c.spec.sub {
                    if let Some(a) = shared.dest_ready.get(sub.dest) {
                        a.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if phase >= Phase::Run {
                    // Late joiners publish too.
                    if let Some(ps) = &c.spec.publ {
                        *p = Some(Publisher::new(ps, now, BURST));
                    }
                }
            }
            let Some((c, _)) = conns.get(k) else { continue };
            if was_setup && (!c.state.in_setup() || res.is_err()) {
                setting_up = setting_up.saturating_sub(1);
            }
            finish(&mut conns, &mut poll, k, res, &mut ctx);
        }

        // Deadlines, ten times a second.
        if ctx.now_ns.saturating_sub(last_check) > 100_000_000 {
            last_check = ctx.now_ns;
            let late: Vec<usize> = conns
                .iter()
                .filter(|(_, (c, _))| c.state.in_setup() && ctx.now_ns > c.deadline_ns)
                .map(|(k, _)| k)
                .collect();
            for k in late {
                let cause = match conns.get(k).map(|(c, _)| c.state) {
                    Some(State::TcpConnecting) => "timeout: TCP connect",
                    Some(State::Upgrading) => "timeout: WebSocket handshake",
                    Some(State::StompConnecting) => "timeout: STOMP CONNECTED",
                    _ => "timeout: SUBSCRIBE receipt",
                };
                setting_up = setting_up.saturating_sub(1);
                finish(&mut conns, &mut poll, k, Err(cause.into()), &mut ctx);
            }
            if !plan.keepalive.is_zero() {
                let idle = plan.keepalive.as_nanos() as u64;
                let mut broken = Vec::new();
                for (k, (c, _)) in conns.iter_mut() {
                    if c.take_wrote() {
                        c.last_tx_ns = ctx.now_ns;
                    } else if ctx.now_ns.saturating_sub(c.last_tx_ns) > idle {
                        if let Err(e) = c.keepalive(&mut ctx) {
                            broken.push((k, e));
                        }
                    }
                }
                for (k, e) in broken {
                    finish(&mut conns, &mut poll, k, Err(e), &mut ctx);
                }
            }
            if let Some(a) = shared.thread_cpu_us.get(idx) {
                a.store(sys::thread_cpu().as_micros() as u64, Ordering::Relaxed);
            }
        }
    }
    ctx.flush_counters();
    for (_, (_, p)) in conns.iter() {
        if let Some(p) = p {
            ctx.out.pacer_resets += p.pacer.resets;
        }
    }
    ctx.out.cpu = sys::thread_cpu();
    if let Some(a) = shared.thread_cpu_us.get(idx) {
        a.store(ctx.out.cpu.as_micros() as u64, Ordering::Relaxed);
    }
    Ok(ctx.out)
}

/// After an event: drop the connection if it failed or finished.
fn finish(
    conns: &mut Slab<(Conn, Option<Publisher>)>,
    poll: &mut Poll,
    k: usize,
    res: Result<(), String>,
    ctx: &mut Ctx<'_>,
) {
    let Some((c, _)) = conns.get_mut(k) else {
        return;
    };
    let done = match res {
        Err(cause) => {
            let was_ready = !c.state.in_setup();
            let closing = matches!(
                c.state,
                State::Disconnecting | State::WsClosing | State::Done
            ) && ctx.shared.phase() >= Phase::Close;
            if closing {
                *ctx.out
                    .failures
                    .entry(format!("while closing: {cause}"))
                    .or_default() += 1;
            } else {
                ctx.fail(cause, was_ready, c.spec.target);
            }
            true
        }
        Ok(()) => c.state == State::Done,
    };
    if done {
        let _ = c.flush();
        if c.closed_clean() {
            ctx.d.closed_clean += 1;
        }
        if let Some((mut c, p)) = conns.try_remove(k) {
            if let Some(p) = p {
                ctx.out.pacer_resets += p.pacer.resets;
            }
            let _ = poll.registry().deregister(c.source());
        }
    }
}

/// One broker process's figures (`--server-pid`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BrokerOut {
    pub pid: u32,
    /// CPU seconds over the measured window (connect: over the setup phase).
    pub cpu_s: Option<f64>,
    /// The same as % of one core.
    pub cpu_pct: Option<f64>,
    pub rss_before: Option<u64>,
    pub rss_after: Option<u64>,
}

/// Broker figures from readings at the window's two ends (CPU) and before and after setup
/// (memory).
pub fn brokers_out(
    pids: &[u32],
    rss: (&[Option<u64>], &[Option<u64>]),
    cpu: (&[Option<Duration>], &[Option<Duration>]),
    wall_s: f64,
) -> Vec<BrokerOut> {
    let wall = wall_s.max(1e-9);
    pids.iter()
        .enumerate()
        .map(|(i, &pid)| {
            let cpu_s = match (cpu.0.get(i), cpu.1.get(i)) {
                (Some(Some(a)), Some(Some(b))) => Some(b.saturating_sub(*a).as_secs_f64()),
                _ => None,
            };
            BrokerOut {
                pid,
                cpu_s,
                cpu_pct: cpu_s.map(|c| c / wall * 100.0),
                rss_before: rss.0.get(i).copied().flatten(),
                rss_after: rss.1.get(i).copied().flatten(),
            }
        })
        .collect()
}

/// What the driver saw, for the scenario to turn into a report.
#[derive(Debug, Default)]
pub struct Outcome {
    pub total: usize,
    pub setup_s: f64,
    pub measured_s: f64,
    /// Counters at the start and end of the measured window, and at the end.
    pub at_start: Snap,
    pub at_end: Snap,
    pub last: Snap,
    /// The same per target.
    pub nodes_start: Vec<NodeSnap>,
    pub nodes_end: Vec<NodeSnap>,
    pub nodes_last: Vec<NodeSnap>,
    pub drained: bool,
    /// Every reactor thread's results, merged.
    pub threads: ThreadOut,
    pub ready_subs: u64,
    /// Per-second (published, delivered, ready) over the measured window.
    pub series: Vec<(f64, f64, u64)>,
    /// With `--server-pid`: per second, at the same points, the brokers' CPU (% of one core)
    /// and resident memory (MiB), summed over them.
    pub broker_series: Vec<(f64, f64)>,
    /// Tool CPU over the measured window (connect: over setup), % of one core.
    pub cpu_pct: f64,
    pub max_thread_pct: f64,
    /// Every `--server-pid`, in order.
    pub brokers: Vec<BrokerOut>,
    /// Over all brokers: CPU (% of one core), memory before and after setup.
    pub broker_cpu_pct: Option<f64>,
    pub rss_before: Option<u64>,
    pub rss_after: Option<u64>,
    pub warnings: Vec<String>,
}

impl Outcome {
    /// Set the whole-broker figures from [`Outcome::brokers`] (sums; none if any is missing).
    pub fn broker_totals(&mut self) {
        let b = &self.brokers;
        let sum_f = |f: &dyn Fn(&BrokerOut) -> Option<f64>| -> Option<f64> {
            if b.is_empty() {
                return None;
            }
            b.iter().map(f).sum()
        };
        let sum_u = |f: &dyn Fn(&BrokerOut) -> Option<u64>| -> Option<u64> {
            if b.is_empty() {
                return None;
            }
            b.iter().map(f).sum()
        };
        self.broker_cpu_pct = sum_f(&|x| x.cpu_pct);
        self.rss_before = sum_u(&|x| x.rss_before);
        self.rss_after = sum_u(&|x| x.rss_after);
    }
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

/// Run a plan to the end. `link`: this is one process of a `--processes` run, which sets up,
/// then waits for the parent's go (and its start time, so every process measures the same
/// window), and drains until the parent says every process has what it is owed.
pub fn run(plan: Plan, mut link: Option<&mut ChildLink>) -> Result<Outcome, String> {
    let threads = plan.threads.max(1);
    let mut own_pubs = Vec::new();
    for p in plan.specs.iter().filter_map(|s| s.publ.as_ref()) {
        let i = p.id as usize;
        if own_pubs.len() <= i {
            own_pubs.resize(i + 1, false);
        }
        if let Some(b) = own_pubs.get_mut(i) {
            *b = true;
        }
    }
    let shared = Arc::new(Shared {
        epoch: link.as_ref().map_or_else(Instant::now, |l| l.epoch),
        phase: AtomicU8::new(Phase::Setup as u8),
        warmup_end_ns: AtomicU64::new(u64::MAX),
        c: Counters::default(),
        dest_ready: plan.dests.iter().map(|_| AtomicU32::new(0)).collect(),
        thread_cpu_us: (0..threads).map(|_| AtomicU64::new(0)).collect(),
        pubs_done: AtomicU64::new(0),
        nodes: plan.targets.iter().map(|_| Default::default()).collect(),
        global_fan: plan.dests.iter().map(|_| AtomicU32::new(0)).collect(),
        global: AtomicBool::new(false),
        own_pubs,
    });
    let total = plan.specs.len();
    let n_pubs = plan.specs.iter().filter(|s| s.publ.is_some()).count() as u64;
    let mut per: Vec<Vec<ConnSpec>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, s) in plan.specs.iter().enumerate() {
        if let Some(v) = per.get_mut(i % threads) {
            v.push(s.clone());
        }
    }
    let conc = plan.concurrency.max(1).div_ceil(threads);
    let plan = Arc::new(plan);
    let pids = plan.server_pids.clone();
    let rss_before: Vec<Option<u64>> = pids.iter().map(|&p| sys::rss_bytes(p)).collect();
    let mut handles = Vec::new();
    for (i, specs) in per.into_iter().enumerate() {
        let (p, s) = (Arc::clone(&plan), Arc::clone(&shared));
        handles.push(
            std::thread::Builder::new()
                .name(format!("loadtest-{i}"))
                .spawn(move || reactor(i, &p, &s, specs, conc))
                .map_err(|e| format!("cannot start a reactor thread: {e}"))?,
        );
    }
    let abort = |handles: Vec<std::thread::JoinHandle<io::Result<ThreadOut>>>| {
        shared.set_phase(Phase::Abort);
        let mut all = ThreadOut::default();
        for h in handles {
            if let Ok(Ok(o)) = h.join() {
                all.merge(o);
            }
        }
        all
    };
    let mut prog = Progress::new(plan.mode.name(), plan.progress, total);
    type CpuSnap = (Instant, Duration, Vec<u64>, Vec<Option<Duration>>);
    let cpu_snap = |s: &Shared| -> CpuSnap {
        (
            Instant::now(),
            sys::process_cpu(),
            s.thread_cpu_us
                .iter()
                .map(|a| a.load(Ordering::Relaxed))
                .collect(),
            pids.iter().map(|&p| sys::process_cpu_of(p)).collect(),
        )
    };
    let tick = Duration::from_millis(250);
    let mut warnings = Vec::new();

    // Setup.
    let t0 = Instant::now();
    let cpu0 = cpu_snap(&shared);
    // Every session has its own deadline, so the phase makes progress at least once per
    // setup timeout; it ends when all are ready or failed, or when progress stops.
    let stall = plan.setup_timeout + Duration::from_secs(1);
    let mut progress_at = (Instant::now(), 0u64);
    loop {
        let s = shared.c.snap();
        prog.update("setup", t0.elapsed(), &s, None);
        if let Some(l) = link.as_deref_mut() {
            l.note(&format!("setup {} {}", s.ready, s.failed), false);
            if l.gone() {
                abort(handles);
                return Err("the parent process went away".into());
            }
        }
        if s.ready + s.failed >= total as u64 {
            break;
        }
        if s.ready + s.failed != progress_at.1 {
            progress_at = (Instant::now(), s.ready + s.failed);
        } else if progress_at.0.elapsed() > stall {
            warnings.push(format!(
                "setup stalled: {} of {total} sessions neither ready nor failed after {:.0} s",
                total as u64 - s.ready - s.failed,
                stall.as_secs_f64()
            ));
            break;
        }
        std::thread::sleep(tick / 5);
    }
    let setup_s = t0.elapsed().as_secs_f64();
    let cpu1 = cpu_snap(&shared);
    let after_setup = shared.c.snap();
    // The broker's memory with every session set up and idle: after a moment to settle (a
    // broker may still be finishing the last subscriptions), before any message flows.
    let settle = Duration::from_millis(500);
    let rss_after: Vec<Option<u64>> = if !pids.is_empty() && after_setup.ready > 0 {
        let hold_end = Instant::now() + settle;
        while Instant::now() < hold_end {
            prog.update("settle", t0.elapsed(), &shared.c.snap(), None);
            sleep_until((Instant::now() + tick / 5).min(hold_end));
        }
        pids.iter().map(|&p| sys::rss_bytes(p)).collect()
    } else {
        pids.iter().map(|_| None).collect()
    };
    let local_fan: Vec<u64> = shared
        .dest_ready
        .iter()
        .map(|a| a.load(Ordering::Relaxed) as u64)
        .collect();
    let ready_subs: u64 = local_fan.iter().sum();
    if after_setup.ready == 0 {
        let all = abort(handles);
        prog.finish();
        return Err(format!(
            "no session could be set up ({} failed): {:?}",
            after_setup.failed, all.failures
        ));
    }
    let nodes_setup = shared.node_snaps();

    // One of several processes: wait for the parent's go and its start time.
    let mut run_start = Instant::now();
    if let Some(l) = link.as_deref_mut() {
        let wait = plan.setup_timeout * 4 + Duration::from_secs(60);
        match l.ready(&local_fan, wait) {
            Ok(go) => {
                for (a, v) in shared.global_fan.iter().zip(&go.fan) {
                    a.store((*v).min(u32::MAX as u64) as u32, Ordering::Relaxed);
                }
                shared.global.store(true, Ordering::Release);
                run_start = shared.epoch + Duration::from_nanos(go.start_ns);
                sleep_until(run_start);
                run_start = run_start.max(Instant::now());
            }
            Err(e) => {
                abort(handles);
                return Err(e);
            }
        }
    }

    let mut series = Vec::new();
    let mut broker_series = Vec::new();
    // The brokers' CPU at the last sample (for the per-second CPU share).
    let broker_cpu = || -> Option<Duration> {
        pids.iter()
            .map(|&p| sys::process_cpu_of(p))
            .sum::<Option<Duration>>()
    };
    let broker_rss =
        || -> Option<u64> { pids.iter().map(|&p| sys::rss_bytes(p)).sum::<Option<u64>>() };
    let mut broker_prev = (Instant::now(), broker_cpu());
    let mut at_start = after_setup;
    let mut at_end = after_setup;
    let mut nodes_start = nodes_setup.clone();
    let mut nodes_end = nodes_setup;
    let mut measured_s = 0.0;
    let mut drained = true;
    let (mut w0, mut w1) = (cpu0.clone(), cpu1.clone());
    let mut gone = false;
    if plan.mode != Mode::Connect {
        let warm_end = run_start + plan.warmup;
        shared.warmup_end_ns.store(
            (run_start.saturating_duration_since(shared.epoch) + plan.warmup).as_nanos() as u64,
            Ordering::Release,
        );
        shared.set_phase(Phase::Run);
        while Instant::now() < warm_end {
            prog.update("warm-up", run_start.elapsed(), &shared.c.snap(), None);
            std::thread::sleep(tick.min(warm_end.saturating_duration_since(Instant::now())));
        }
        at_start = shared.c.snap();
        nodes_start = shared.node_snaps();
        w0 = cpu_snap(&shared);
        let end = warm_end + plan.duration;
        let mut prev = at_start;
        let mut next_sample = warm_end + Duration::from_secs(1);
        let mut last_rates = None;
        loop {
            let now = Instant::now();
            if now >= next_sample || now >= end {
                let s = shared.c.snap();
                let dt = 1.0_f64;
                let r = (
                    (s.published - prev.published) as f64 / dt,
                    (s.delivered - prev.delivered) as f64 / dt,
                );
                if now >= next_sample {
                    series.push((r.0, r.1, s.ready - s.dropped));
                    if !pids.is_empty() {
                        let cpu = broker_cpu();
                        let pct = match (cpu, broker_prev.1) {
                            (Some(c), Some(p)) => {
                                let dt = now.duration_since(broker_prev.0).as_secs_f64().max(1e-3);
                                c.saturating_sub(p).as_secs_f64() / dt * 100.0
                            }
                            _ => f64::NAN,
                        };
                        let rss = broker_rss().map_or(f64::NAN, |b| b as f64 / 1048576.0);
                        broker_series.push((pct, rss));
                        broker_prev = (now, cpu);
                    }
                    last_rates = Some(r);
                    prev = s;
                    next_sample += Duration::from_secs(1);
                }
            }
            if now >= end || (n_pubs > 0 && shared.pubs_done.load(Ordering::Relaxed) >= n_pubs) {
                break;
            }
            if let Some(l) = link.as_deref_mut() {
                let s = shared.c.snap();
                l.note(
                    &format!(
                        "run {} {} {} {}",
                        s.ready, s.dropped, s.published, s.delivered
                    ),
                    false,
                );
                if l.gone() {
                    gone = true;
                    break;
                }
            }
            prog.update("run", run_start.elapsed(), &shared.c.snap(), last_rates);
            sleep_until((now + tick).min(end).min(next_sample));
        }
        at_end = shared.c.snap();
        nodes_end = shared.node_snaps();
        w1 = cpu_snap(&shared);
        measured_s = w1.0.duration_since(w0.0).as_secs_f64();
        shared.set_phase(Phase::Drain);
        let drain_end = Instant::now() + plan.drain;
        loop {
            let s = shared.c.snap();
            prog.update("drain", run_start.elapsed(), &s, None);
            if let Some(l) = link.as_deref_mut() {
                // The parent sums every process's figures and says when all is delivered;
                // a little past the drain time each process stops on its own.
                l.note(&format!("drain {} {}", s.expected, s.delivered), false);
                if l.closed() || Instant::now() >= drain_end + Duration::from_secs(3) {
                    break;
                }
                if l.gone() {
                    gone = true;
                    break;
                }
            } else if s.delivered >= s.expected || Instant::now() >= drain_end {
                drained = s.delivered >= s.expected;
                break;
            }
            std::thread::sleep(tick / 5);
        }
    }
    if gone {
        abort(handles);
        prog.finish();
        return Err("the parent process went away".into());
    }
    if plan.mode == Mode::Connect {
        shared.set_phase(Phase::Hold);
        // The settle before the memory reading counts as part of the hold.
        let hold_end = run_start + plan.hold.saturating_sub(settle);
        while Instant::now() < hold_end {
            prog.update("hold", t0.elapsed(), &shared.c.snap(), None);
            sleep_until((Instant::now() + tick).min(hold_end));
        }
    }
    shared.set_phase(Phase::Close);
    let close_start = Instant::now();
    while handles.iter().any(|h| !h.is_finished())
        && close_start.elapsed() < plan.close_timeout + Duration::from_secs(2)
    {
        prog.update("close", t0.elapsed(), &shared.c.snap(), None);
        std::thread::sleep(tick / 5);
    }
    if handles.iter().any(|h| !h.is_finished()) {
        shared.set_phase(Phase::Abort);
    }
    prog.finish();
    let mut out = Outcome {
        total,
        setup_s,
        measured_s,
        at_start,
        at_end,
        last: shared.c.snap(),
        nodes_start,
        nodes_end,
        nodes_last: Vec::new(),
        drained,
        threads: ThreadOut::default(),
        ready_subs,
        series,
        broker_series,
        ..Outcome::default()
    };
    for h in handles {
        match h.join() {
            Ok(Ok(o)) => out.threads.merge(o),
            Ok(Err(e)) => warnings.push(format!("a reactor thread failed: {e}")),
            Err(_) => warnings.push("a reactor thread panicked".into()),
        }
    }
    out.last = shared.c.snap();
    out.nodes_last = shared.node_snaps();
    // CPU over the measured window (connect: over the setup phase).
    let (a, b) = if plan.mode == Mode::Connect {
        (cpu0, cpu1)
    } else {
        (w0, w1)
    };
    let wall = b.0.duration_since(a.0).as_secs_f64().max(1e-9);
    out.cpu_pct = (b.1.saturating_sub(a.1)).as_secs_f64() / wall * 100.0;
    out.max_thread_pct =
        b.2.iter()
            .zip(a.2.iter())
            .map(|(x, y)| x.saturating_sub(*y) as f64 / 1e6 / wall * 100.0)
            .fold(0.0, f64::max);
    out.brokers = brokers_out(&pids, (&rss_before, &rss_after), (&a.3, &b.3), wall);
    out.broker_totals();
    if out.max_thread_pct >= 90.0 {
        warnings.push(format!(
            "the load tool was saturated: a reactor thread used {:.0}% of a core, so these \
             figures measure the tool as much as the broker (try --threads {} on a machine with \
             spare cores)",
            out.max_thread_pct,
            threads + 1
        ));
    }
    if out.threads.pacer_resets > 0 {
        warnings.push(format!(
            "publishers fell more than a second behind their target rate {} times: the rate \
             asked for was not reached",
            out.threads.pacer_resets
        ));
    }
    out.warnings = warnings;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::ThreadOut;

    #[test]
    fn thread_results_merge() {
        let mut a = ThreadOut::default();
        a.e2e.record(1_000);
        a.bcast.insert(7, (3, 500));
        a.ids.push(1);
        a.failures.insert("timeout".into(), 1);
        a.pacer_resets = 1;
        let mut b = ThreadOut::default();
        b.e2e.record(2_000);
        b.bcast.insert(7, (2, 900));
        b.bcast.insert(8, (1, 100));
        b.ids.push(2);
        b.failures.insert("timeout".into(), 2);
        b.pacer_resets = 2;
        a.merge(b);
        assert_eq!(a.e2e.count(), 2);
        // A broadcast's receivers add up across threads; its slowest latency is the max.
        assert_eq!(a.bcast.get(&7), Some(&(5, 900)));
        assert_eq!(a.bcast.get(&8), Some(&(1, 100)));
        assert_eq!(a.ids, vec![1, 2]);
        assert_eq!(a.failures.get("timeout"), Some(&3));
        assert_eq!(a.pacer_resets, 3);
    }
}
