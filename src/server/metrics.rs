//! Counters and the Prometheus endpoint.
//!
//! Each reactor counts in plain integers on its own stack of work and publishes them once per
//! loop turn into its own [`ReactorStats`] (relaxed stores to atomics that only it writes), so
//! nothing is shared on the per-message path. A scrape sums the reactors.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What one reactor counts. Plain integers, owned by the reactor thread.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    pub conns_ws: u64,
    pub conns_tcp: u64,
    /// SockJS sessions (their HTTP requests are counted as `ws` connections).
    pub conns_sockjs: u64,
    pub accepted_ws: u64,
    pub accepted_tcp: u64,
    pub accepted_sockjs: u64,
    /// SockJS sessions refused (`sockjs.max_sessions`, or the connection limits).
    pub sjs_refused: u64,
    pub subscriptions: u64,
    pub destinations: u64,
    pub messages_in: u64,
    pub messages_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub slow_drops: u64,
    pub slow_closes: u64,
    pub errors_stomp: u64,
    pub errors_ws: u64,
    pub errors_handshake: u64,
    pub heartbeat_timeouts: u64,
    pub refused: u64,
    pub app_busy: u64,
    pub queue_rejected: u64,
    pub queue_dropped: u64,
    /// Queues homed on this reactor: messages waiting, delivered and not yet acked, consumers
    /// (gauges, refreshed a few times a second).
    pub queue_ready: u64,
    pub queue_unacked: u64,
    pub queue_consumers: u64,
    /// Queues homed on this reactor.
    pub queues: u64,
    /// Times a connection's input was stopped by the memory alarm.
    pub memory_blocked: u64,
    /// STOMP errors by cause (the ERROR that ends a session), in `Cause::ALL` order.
    pub stomp_protocol: u64,
    pub stomp_limit: u64,
    pub stomp_access: u64,
    pub stomp_refused: u64,
    pub stomp_app: u64,
    pub loop_turns: u64,
    pub loop_nanos: u64,
    pub loop_max_nanos: u64,
    /// The longest loop turn of the last [`TURN_WINDOW`] to two of them (as of the last turn).
    pub loop_recent_max_nanos: u64,
    /// permessage-deflate: shared segments made, their bytes before and after, and compressed
    /// messages received (inflated).
    pub deflate_segments: u64,
    pub deflate_bytes_in: u64,
    pub deflate_bytes_out: u64,
    pub inflated: u64,
    /// Loop turns by busy time, and WebSocket handshakes by duration.
    pub turn_hist: Hist,
    pub handshake_hist: Hist,
    /// Topic messages delivered here: from receipt to the end of the turn that wrote them.
    pub delivery_hist: Hist,
}

/// How often a kind of refusal is logged at most (the counters count every one).
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Refusals of one kind, logged at most every [`REFUSAL_LOG_EVERY`] with how many there were.
#[derive(Debug, Default)]
pub(crate) struct RefusalLog {
    last: Option<std::time::Instant>,
    unlogged: u64,
}

impl RefusalLog {
    pub(crate) fn note(&mut self, why: std::fmt::Arguments<'_>) {
        self.unlogged += 1;
        let now = std::time::Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < REFUSAL_LOG_EVERY)
        {
            return;
        }
        log::warn!(
            "refusing connections: {why} ({} refused since the last report; the \
             stompbox_connections_refused_total counter has them all)",
            self.unlogged
        );
        self.unlogged = 0;
        self.last = Some(now);
    }
}

/// One queue's gauges, by name.
#[derive(Debug, Clone)]
pub struct QueueGauge {
    pub name: Arc<str>,
    pub ready: u64,
    pub unacked: u64,
    pub consumers: u64,
}

/// The window of a reactor's recent longest turn ([`Counters::loop_recent_max_nanos`]).
pub const TURN_WINDOW: Duration = Duration::from_secs(10);

/// The largest value seen in the current window of [`TURN_WINDOW`] and the one before: the
/// largest of the last one to two windows, as of the last value seen.
#[derive(Debug, Clone, Copy)]
pub struct RecentMax {
    began: Instant,
    this: u64,
    before: u64,
}

impl RecentMax {
    pub fn new(now: Instant) -> Self {
        RecentMax {
            began: now,
            this: 0,
            before: 0,
        }
    }

    /// Count `v` seen at `now`; the recent largest.
    pub fn observe(&mut self, now: Instant, v: u64) -> u64 {
        let age = now.saturating_duration_since(self.began);
        if age >= 2 * TURN_WINDOW {
            // Quiet for a whole window: nothing of it is left.
            (self.began, self.before, self.this) = (now, 0, 0);
        } else if age >= TURN_WINDOW {
            (self.began, self.before, self.this) = (now, self.this, 0);
        }
        self.this = self.this.max(v);
        self.this.max(self.before)
    }
}

/// Upper bounds (seconds) of the loop-turn histogram's buckets.
pub const TURN_BUCKETS: [f64; 12] = [
    10e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 50e-3, 100e-3, 1.0,
];
/// Upper bounds (seconds) of the handshake histogram's buckets.
pub const HANDSHAKE_BUCKETS: [f64; 10] = [
    1e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1.0, 5.0,
];

/// Upper bounds (seconds) of the delivery-latency histogram's buckets.
pub const DELIVERY_BUCKETS: [f64; 14] = [
    10e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3,
    1.0,
];

/// Bucket slots a histogram has at most (its bounds, then +Inf).
const HIST_SLOTS: usize = 16;

/// A histogram a reactor keeps in plain integers: per bucket (not cumulative; the last slot
/// past the bounds is +Inf), the sum in nanoseconds, the count.
#[derive(Debug, Default, Clone)]
pub struct Hist {
    pub counts: [u64; HIST_SLOTS],
    pub sum_nanos: u64,
    pub count: u64,
}

impl Hist {
    /// Count one observation of `nanos` against `bounds` (seconds).
    #[inline]
    pub fn observe(&mut self, bounds: &[f64], nanos: u64) {
        let secs = nanos as f64 * 1e-9;
        let i = bounds
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(bounds.len())
            .min(HIST_SLOTS - 1);
        if let Some(c) = self.counts.get_mut(i) {
            *c += 1;
        }
        self.sum_nanos = self.sum_nanos.wrapping_add(nanos);
        self.count += 1;
    }
}

/// [`Hist`] as the reactor publishes it.
#[derive(Debug, Default)]
pub struct HistCells {
    counts: [AtomicU64; HIST_SLOTS],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl HistCells {
    fn publish(&self, h: &Hist) {
        for (cell, v) in self.counts.iter().zip(h.counts.iter()) {
            cell.store(*v, Ordering::Relaxed);
        }
        self.sum_nanos.store(h.sum_nanos, Ordering::Relaxed);
        self.count.store(h.count, Ordering::Relaxed);
    }

    fn snapshot(&self) -> Hist {
        let mut h = Hist {
            sum_nanos: self.sum_nanos.load(Ordering::Relaxed),
            count: self.count.load(Ordering::Relaxed),
            ..Hist::default()
        };
        for (v, cell) in h.counts.iter_mut().zip(self.counts.iter()) {
            *v = cell.load(Ordering::Relaxed);
        }
        h
    }
}

impl Counters {
    /// A session ended with an ERROR for `cause` (also `errors_total{kind="stomp"}`).
    pub fn stomp_error(&mut self, cause: crate::session::Cause) {
        use crate::session::Cause;
        self.errors_stomp += 1;
        *match cause {
            Cause::Protocol => &mut self.stomp_protocol,
            Cause::Limit => &mut self.stomp_limit,
            Cause::Access => &mut self.stomp_access,
            Cause::Refused => &mut self.stomp_refused,
            Cause::App => &mut self.stomp_app,
        } += 1;
    }

    pub(super) fn stomp_errors(&self, cause: crate::session::Cause) -> u64 {
        use crate::session::Cause;
        match cause {
            Cause::Protocol => self.stomp_protocol,
            Cause::Limit => self.stomp_limit,
            Cause::Access => self.stomp_access,
            Cause::Refused => self.stomp_refused,
            Cause::App => self.stomp_app,
        }
    }
}

macro_rules! stats {
    ($($f:ident),* $(,)?) => {
        /// A reactor's published counters: written by that reactor only, read by scrapes.
        #[derive(Debug, Default)]
        pub struct ReactorStats {
            $(pub $f: AtomicU64,)*
            turn_hist: HistCells,
            handshake_hist: HistCells,
            delivery_hist: HistCells,
            /// The deepest queues homed on the reactor, refreshed a few times a second (a lock
            /// the reactor takes then, never per message).
            pub queue_list: Mutex<Vec<QueueGauge>>,
            /// The reactor thread's id (for its CPU time in `/proc`), set when it starts.
            pub tid: AtomicU64,
        }

        impl ReactorStats {
            /// Publish the reactor's counters (once per loop turn).
            pub fn publish(&self, c: &Counters) {
                $(self.$f.store(c.$f, Ordering::Relaxed);)*
                self.turn_hist.publish(&c.turn_hist);
                self.handshake_hist.publish(&c.handshake_hist);
                self.delivery_hist.publish(&c.delivery_hist);
            }

            pub fn snapshot(&self) -> Counters {
                Counters {
                    $($f: self.$f.load(Ordering::Relaxed),)*
                    turn_hist: self.turn_hist.snapshot(),
                    handshake_hist: self.handshake_hist.snapshot(),
                    delivery_hist: self.delivery_hist.snapshot(),
                }
            }
        }
    };
}

stats!(
    conns_ws,
    conns_tcp,
    conns_sockjs,
    accepted_ws,
    accepted_tcp,
    accepted_sockjs,
    sjs_refused,
    subscriptions,
    destinations,
    messages_in,
    messages_out,
    bytes_in,
    bytes_out,
    slow_drops,
    slow_closes,
    errors_stomp,
    errors_ws,
    errors_handshake,
    heartbeat_timeouts,
    refused,
    app_busy,
    queue_rejected,
    queue_dropped,
    queue_ready,
    queue_unacked,
    queue_consumers,
    queues,
    memory_blocked,
    stomp_protocol,
    stomp_limit,
    stomp_access,
    stomp_refused,
    stomp_app,
    loop_turns,
    loop_nanos,
    loop_max_nanos,
    loop_recent_max_nanos,
    deflate_segments,
    deflate_bytes_in,
    deflate_bytes_out,
    inflated,
);

/// Connections refused before reaching a reactor, by reason.
#[derive(Debug, Default)]
pub struct AcceptStats {
    pub refused_limit: AtomicU64,
    pub refused_per_ip: AtomicU64,
    pub refused_fd_limit: AtomicU64,
}

/// The connection limits, shared by the acceptor (admits) and the reactors (release).
#[derive(Debug)]
pub struct ConnLimits {
    max: usize,
    max_per_ip: usize,
    live: AtomicU64,
    per_ip: Mutex<std::collections::HashMap<IpAddr, u32>>,
    /// Sockets the reactors hold, admitted or refused (a refused one stays until its answer
    /// is sent), and how many they may hold: the descriptors left once the reserve for the
    /// metrics listener and the like is set aside.
    sockets: AtomicU64,
    fd_cap: AtomicU64,
    /// SockJS sessions open (each also counts in `live` and against its address).
    sjs_sessions: AtomicU64,
}

/// Why a connection is refused at accept time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Limit,
    PerIp,
    /// No descriptor to spare: closed at once, unanswered.
    FdLimit,
}

impl ConnLimits {
    pub fn new(max: usize, max_per_ip: usize) -> Self {
        ConnLimits {
            max,
            max_per_ip,
            live: AtomicU64::new(0),
            per_ip: Mutex::new(Default::default()),
            sockets: AtomicU64::new(0),
            fd_cap: AtomicU64::new(u64::MAX),
            sjs_sessions: AtomicU64::new(0),
        }
    }

    /// At most `n` sockets held by the reactors.
    pub fn set_fd_cap(&self, n: usize) {
        self.fd_cap.store(n as u64, Ordering::Release);
    }

    /// A socket goes to a reactor (admitted or to be answered): `false` when the descriptors
    /// are spoken for and it must be closed at once instead.
    pub fn take_socket(&self) -> bool {
        let cap = self.fd_cap.load(Ordering::Acquire);
        self.sockets
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < cap).then_some(n + 1)
            })
            .is_ok()
    }

    /// A reactor closed a socket it held.
    pub fn socket_closed(&self) {
        let _ = self
            .sockets
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// Admit a connection from `ip`, or say why not. Called per accepted socket.
    pub fn admit(&self, ip: IpAddr) -> Result<(), Refused> {
        if !self.take_socket() {
            return Err(Refused::FdLimit);
        }
        if self.live.load(Ordering::Acquire) >= self.max as u64 {
            return Err(Refused::Limit);
        }
        if self.max_per_ip > 0 {
            let mut m = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            let n = m.entry(ip).or_insert(0);
            if *n as usize >= self.max_per_ip {
                return Err(Refused::PerIp);
            }
            *n += 1;
        }
        self.live.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Admit a SockJS session from `ip` (no socket of its own: it counts as a connection,
    /// against the address's limit, and against `max_sessions`).
    pub fn admit_session(&self, ip: IpAddr, max_sessions: usize) -> Result<(), Refused> {
        let taken = self
            .sjs_sessions
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max_sessions as u64).then_some(n + 1)
            })
            .is_ok();
        if !taken {
            return Err(Refused::Limit);
        }
        let refused = if self.live.load(Ordering::Acquire) >= self.max as u64 {
            Some(Refused::Limit)
        } else if self.max_per_ip > 0 {
            let mut m = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            let n = m.entry(ip).or_insert(0);
            if *n as usize >= self.max_per_ip {
                Some(Refused::PerIp)
            } else {
                *n += 1;
                None
            }
        } else {
            None
        };
        if let Some(r) = refused {
            self.sjs_sessions.fetch_sub(1, Ordering::AcqRel);
            return Err(r);
        }
        self.live.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// A session admitted by [`ConnLimits::admit_session`] ended.
    pub fn release_session(&self, ip: IpAddr) {
        self.sjs_sessions.fetch_sub(1, Ordering::AcqRel);
        self.release(ip);
    }

    /// A connection admitted by [`ConnLimits::admit`] closed.
    pub fn release(&self, ip: IpAddr) {
        self.live.fetch_sub(1, Ordering::AcqRel);
        if self.max_per_ip > 0 {
            let mut m = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = m.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&ip);
                }
            }
        }
    }

    /// `connections.max`.
    pub fn max(&self) -> usize {
        self.max
    }

    /// `connections.max_per_ip` (0: none).
    pub fn max_per_ip(&self) -> usize {
        self.max_per_ip
    }

    pub fn live(&self) -> u64 {
        self.live.load(Ordering::Acquire)
    }
}

/// Everything a scrape reads.
#[derive(Debug)]
pub struct Stats {
    pub reactors: Vec<Arc<ReactorStats>>,
    pub accept: Arc<AcceptStats>,
    pub limits: Arc<ConnLimits>,
    pub memory: Arc<crate::memory::MemoryState>,
    /// Cluster mode: the NATS link.
    pub cluster: Option<Arc<super::bridge::ClusterStats>>,
    /// Queues reported by name at most.
    pub queue_labels: usize,
}

impl Stats {
    /// `/healthz`: the node is up (always 200: a node whose cluster link is down still serves
    /// its own clients), and, in cluster mode, the link's state.
    pub fn health(&self) -> String {
        match &self.cluster {
            None => "ok\n".to_string(),
            Some(c) => format!(
                "ok\ncluster: {} node={} reconnects={} published={} received={} dropped={}\n",
                if c.up.load(Ordering::Relaxed) {
                    "up"
                } else {
                    "down"
                },
                c.node,
                c.reconnects(),
                c.published.load(Ordering::Relaxed),
                c.received.load(Ordering::Relaxed),
                super::bridge::Dropped::ALL
                    .iter()
                    .map(|&d| c.dropped(d))
                    .sum::<u64>(),
            ),
        }
    }

    /// `/readyz`: every reactor has turned since `before` (its turn counts when asked; the
    /// reactors were woken then), and in cluster mode the NATS link is up. The listeners are
    /// bound before any of this starts. The answer's body says what is not ready.
    pub fn readiness(&self, before: &[u64]) -> (bool, String) {
        let mut problems = Vec::new();
        for (i, (r, b)) in self.reactors.iter().zip(before).enumerate() {
            if r.loop_turns.load(Ordering::Relaxed) <= *b {
                problems.push(format!("reactor {i} has not turned"));
            }
        }
        if let Some(c) = &self.cluster {
            if !c.up.load(Ordering::Relaxed) {
                problems.push("cluster: the NATS link is down".to_string());
            }
        }
        if problems.is_empty() {
            (true, "ready\n".to_string())
        } else {
            (false, format!("not ready: {}\n", problems.join("; ")))
        }
    }

    /// The OpenMetrics text of the metrics (see [`super::exposition`]).
    pub fn render(self: &Arc<Self>) -> String {
        super::exposition::render(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recent_max_covers_one_to_two_windows() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut m = RecentMax::new(t0);
        assert_eq!(m.observe(at(1), 500), 500);
        assert_eq!(m.observe(at(2), 20), 500);
        // The next window still shows the last one's largest...
        assert_eq!(m.observe(at(11), 30), 500);
        assert_eq!(m.observe(at(15), 40), 500);
        // ... and the one after that forgets it.
        assert_eq!(m.observe(at(22), 10), 40);
        // Quiet for two windows: nothing old is left.
        assert_eq!(m.observe(at(60), 7), 7);
        assert_eq!(m.observe(at(61), 3), 7);
    }
}
