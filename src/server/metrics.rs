//! Counters and the Prometheus endpoint.
//!
//! Each reactor counts in plain integers on its own stack of work and publishes them once per
//! loop turn into its own [`ReactorStats`] (relaxed stores to atomics that only it writes), so
//! nothing is shared on the per-message path. A scrape sums the reactors.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};

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
    /// permessage-deflate: shared segments made, their bytes before and after, and compressed
    /// messages received (inflated).
    pub deflate_segments: u64,
    pub deflate_bytes_in: u64,
    pub deflate_bytes_out: u64,
    pub inflated: u64,
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

    fn stomp_errors(&self, cause: crate::session::Cause) -> u64 {
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
        }

        impl ReactorStats {
            /// Publish the reactor's counters (once per loop turn).
            pub fn publish(&self, c: &Counters) {
                $(self.$f.store(c.$f, Ordering::Relaxed);)*
            }

            pub fn snapshot(&self) -> Counters {
                Counters {
                    $($f: self.$f.load(Ordering::Relaxed),)*
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
    memory_blocked,
    stomp_protocol,
    stomp_limit,
    stomp_access,
    stomp_refused,
    stomp_app,
    loop_turns,
    loop_nanos,
    loop_max_nanos,
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

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let snaps: Vec<Counters> = self.reactors.iter().map(|r| r.snapshot()).collect();
        let sum = |f: fn(&Counters) -> u64| snaps.iter().map(f).sum::<u64>();
        let mut o = String::with_capacity(4096);
        let mut metric = |name: &str, kind: &str, help: &str, rows: &[(&str, u64)]| {
            let _ = writeln!(o, "# HELP stompbox_{name} {help}");
            let _ = writeln!(o, "# TYPE stompbox_{name} {kind}");
            for (labels, v) in rows {
                if labels.is_empty() {
                    let _ = writeln!(o, "stompbox_{name} {v}");
                } else {
                    let _ = writeln!(o, "stompbox_{name}{{{labels}}} {v}");
                }
            }
        };
        metric(
            "connections",
            "gauge",
            "Open connections by transport.",
            &[
                ("transport=\"ws\"", sum(|c| c.conns_ws)),
                ("transport=\"tcp\"", sum(|c| c.conns_tcp)),
                ("transport=\"sockjs\"", sum(|c| c.conns_sockjs)),
            ],
        );
        metric(
            "connections_total",
            "counter",
            "Connections accepted by transport.",
            &[
                ("transport=\"ws\"", sum(|c| c.accepted_ws)),
                ("transport=\"tcp\"", sum(|c| c.accepted_tcp)),
                ("transport=\"sockjs\"", sum(|c| c.accepted_sockjs)),
            ],
        );
        let a = &self.accept;
        metric(
            "connections_refused_total",
            "counter",
            "Connections refused: over the total or per-IP limit, or out of file descriptors.",
            &[
                ("reason=\"limit\"", a.refused_limit.load(Ordering::Relaxed)),
                (
                    "reason=\"per_ip\"",
                    a.refused_per_ip.load(Ordering::Relaxed),
                ),
                (
                    "reason=\"fd_limit\"",
                    a.refused_fd_limit.load(Ordering::Relaxed),
                ),
            ],
        );
        metric(
            "subscriptions",
            "gauge",
            "Active subscriptions.",
            &[("", sum(|c| c.subscriptions))],
        );
        metric(
            "destinations",
            "gauge",
            "Destinations known to the reactors (summed over reactors).",
            &[("", sum(|c| c.destinations))],
        );
        metric(
            "messages_in_total",
            "counter",
            "Messages published (SEND frames accepted).",
            &[("", sum(|c| c.messages_in))],
        );
        metric(
            "messages_out_total",
            "counter",
            "Messages delivered (MESSAGE frames queued to subscribers).",
            &[("", sum(|c| c.messages_out))],
        );
        metric(
            "deflate_segments_total",
            "counter",
            "permessage-deflate: messages compressed for sending (once per message, reactor and window size, whatever the number of subscribers).",
            &[("", sum(|c| c.deflate_segments))],
        );
        metric(
            "deflate_bytes_total",
            "counter",
            "permessage-deflate: bytes of the messages compressed for sending, before and after.",
            &[
                ("stage=\"before\"", sum(|c| c.deflate_bytes_in)),
                ("stage=\"after\"", sum(|c| c.deflate_bytes_out)),
            ],
        );
        metric(
            "inflated_total",
            "counter",
            "permessage-deflate: compressed messages received and inflated.",
            &[("", sum(|c| c.inflated))],
        );
        metric(
            "bytes_in_total",
            "counter",
            "Bytes read from clients.",
            &[("", sum(|c| c.bytes_in))],
        );
        metric(
            "bytes_out_total",
            "counter",
            "Bytes written to clients.",
            &[("", sum(|c| c.bytes_out))],
        );
        metric(
            "slow_consumer_drops_total",
            "counter",
            "Topic messages dropped for subscribers over their outbound limit (policy drop).",
            &[("", sum(|c| c.slow_drops))],
        );
        metric(
            "slow_consumer_closes_total",
            "counter",
            "Subscribers closed for being over their outbound limit (policy close).",
            &[("", sum(|c| c.slow_closes))],
        );
        metric(
            "queue_rejected_total",
            "counter",
            "Messages refused by a full queue (overflow reject): SENDs answered with an ERROR, \
             and messages published through the embedding API, which are lost.",
            &[("", sum(|c| c.queue_rejected))],
        );
        let m = &self.memory;
        metric(
            "memory_bytes",
            "gauge",
            "Memory in use as the high-water mark sees it (heap, or resident set when embedded).",
            &[("", m.used.load(Ordering::Relaxed) as u64)],
        );
        metric(
            "memory_high_watermark_bytes",
            "gauge",
            "Above this, connections that publish are not read from (0: no mark).",
            &[("", m.high_watermark as u64)],
        );
        metric(
            "memory_alarm",
            "gauge",
            "1 while memory is above the high-water mark.",
            &[("", u64::from(m.alarm()))],
        );
        metric(
            "memory_alarms_total",
            "counter",
            "Times memory went above the high-water mark.",
            &[("", m.alarms.load(Ordering::Relaxed))],
        );
        metric(
            "memory_blocked_total",
            "counter",
            "Times a connection's input was stopped by the memory alarm (at a SEND, or in a large \
             partial frame).",
            &[("", sum(|c| c.memory_blocked))],
        );
        metric(
            "queue_dropped_total",
            "counter",
            "Oldest messages dropped from full queues to make room (overflow drop-oldest).",
            &[("", sum(|c| c.queue_dropped))],
        );
        metric(
            "app_busy_total",
            "counter",
            "Application SENDs refused because the handler pool was full.",
            &[("", sum(|c| c.app_busy))],
        );
        metric(
            "queue_messages",
            "gauge",
            "Messages in the queues homed on this node, by state (with the JetStream store: those \
             this node has taken from JetStream).",
            &[
                ("state=\"ready\"", sum(|c| c.queue_ready)),
                ("state=\"unacked\"", sum(|c| c.queue_unacked)),
            ],
        );
        metric(
            "queue_consumers",
            "gauge",
            "Consumers of the queues homed on this node.",
            &[("", sum(|c| c.queue_consumers))],
        );
        metric(
            "errors_total",
            "counter",
            "Connections failed, by kind.",
            &[
                ("kind=\"stomp\"", sum(|c| c.errors_stomp)),
                ("kind=\"websocket\"", sum(|c| c.errors_ws)),
                ("kind=\"handshake\"", sum(|c| c.errors_handshake)),
                ("kind=\"heartbeat\"", sum(|c| c.heartbeat_timeouts)),
            ],
        );
        let causes: Vec<(String, u64)> = crate::session::Cause::ALL
            .iter()
            .map(|&c| {
                (
                    format!("cause=\"{}\"", c.label()),
                    snaps.iter().map(|s| s.stomp_errors(c)).sum::<u64>(),
                )
            })
            .collect();
        let cause_rows: Vec<(&str, u64)> = causes.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        metric(
            "stomp_errors_total",
            "counter",
            "Sessions ended with a STOMP ERROR, by cause: protocol (a frame the protocol does not \
             allow), limit (a configured bound), access (login, ACL, revoked), refused (no room: \
             a full queue, busy pools), app (a handler failed).",
            &cause_rows,
        );
        if let Some(c) = &self.cluster {
            let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
            metric(
                "cluster_up",
                "gauge",
                "Whether the node's NATS connection is up.",
                &[("", u64::from(c.up.load(Ordering::Relaxed)))],
            );
            metric(
                "cluster_reconnects_total",
                "counter",
                "Times the node connected to NATS again after losing it.",
                &[("", c.reconnects())],
            );
            metric(
                "cluster_published_total",
                "counter",
                "Topic messages published to NATS.",
                &[("", g(&c.published))],
            );
            metric(
                "cluster_received_total",
                "counter",
                "Messages received from NATS (other nodes' publishes).",
                &[("", g(&c.received))],
            );
            let reasons: Vec<(String, u64)> = super::bridge::Dropped::ALL
                .iter()
                .map(|&d| (format!("reason=\"{}\"", d.label()), c.dropped(d)))
                .collect();
            let rows: Vec<(&str, u64)> = reasons.iter().map(|(l, v)| (l.as_str(), *v)).collect();
            metric(
                "cluster_dropped_total",
                "counter",
                "Topic messages that did not cross between nodes, by reason.",
                &rows,
            );
            metric(
                "queue_store_messages",
                "gauge",
                "Messages in the JetStream queue stream (every queue, every node; asked each second).",
                &[("", g(&c.queue_depth))],
            );
            metric(
                "queue_store_stored_total",
                "counter",
                "Queue messages JetStream acknowledged storing.",
                &[("", g(&c.queue_stored))],
            );
            metric(
                "queue_store_failed_total",
                "counter",
                "Queue SENDs that were not stored (refused, timed out, or the store busy).",
                &[("", g(&c.queue_failed))],
            );
            metric(
                "queue_store_pulled_total",
                "counter",
                "Queue messages this node took from JetStream for its consumers.",
                &[("", g(&c.queue_pulled))],
            );
            metric(
                "cluster_subscriptions",
                "gauge",
                "NATS subscriptions the node holds (one per subject its subscribers need).",
                &[(
                    "",
                    c.subscriptions.load(std::sync::atomic::Ordering::Relaxed) as u64,
                )],
            );
        }
        let per = |f: fn(&Counters) -> u64| -> Vec<(String, u64)> {
            snaps
                .iter()
                .enumerate()
                .map(|(i, c)| (format!("reactor=\"{i}\""), f(c)))
                .collect()
        };
        let rows = |v: &Vec<(String, u64)>| -> Vec<(String, u64)> { v.clone() };
        let conns = per(|c| c.conns_ws + c.conns_tcp + c.conns_sockjs);
        let turns = per(|c| c.loop_turns);
        let nanos = per(|c| c.loop_nanos);
        let max = per(|c| c.loop_max_nanos);
        let mut metric_s =
            |name: &str, kind: &str, help: &str, v: Vec<(String, u64)>, scale: f64| {
                let _ = writeln!(o, "# HELP stompbox_{name} {help}");
                let _ = writeln!(o, "# TYPE stompbox_{name} {kind}");
                for (l, x) in v {
                    if scale == 1.0 {
                        let _ = writeln!(o, "stompbox_{name}{{{l}}} {x}");
                    } else {
                        let _ = writeln!(o, "stompbox_{name}{{{l}}} {}", x as f64 * scale);
                    }
                }
            };
        metric_s(
            "reactor_connections",
            "gauge",
            "Open connections per reactor.",
            rows(&conns),
            1.0,
        );
        metric_s(
            "reactor_loop_turns_total",
            "counter",
            "Event-loop turns per reactor.",
            rows(&turns),
            1.0,
        );
        metric_s(
            "reactor_loop_busy_seconds_total",
            "counter",
            "Time spent working (not waiting in poll) per reactor.",
            rows(&nanos),
            1e-9,
        );
        metric_s(
            "reactor_loop_turn_max_seconds",
            "gauge",
            "Longest loop turn per reactor since start.",
            rows(&max),
            1e-9,
        );
        o
    }
}

const STOP: Token = Token(usize::MAX);
const LISTENER: Token = Token(0);

/// The metrics thread: `/metrics` and `/healthz` over HTTP/1.1, one short request per
/// connection. Slow clients get 2 s; nothing here touches a reactor.
pub struct MetricsServer {
    pub poll: Poll,
    pub listener: TcpListener,
    pub stats: Arc<Stats>,
    pub shutdown: Arc<AtomicBool>,
}

impl MetricsServer {
    pub fn bind(
        addr: SocketAddr,
        stats: Arc<Stats>,
        shutdown: Arc<AtomicBool>,
    ) -> io::Result<(Self, Arc<Waker>, SocketAddr)> {
        let poll = Poll::new()?;
        let mut listener = TcpListener::bind(addr)
            .map_err(|e| io::Error::new(e.kind(), format!("listen.metrics {addr}: {e}")))?;
        let local = listener.local_addr()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), STOP)?);
        Ok((
            MetricsServer {
                poll,
                listener,
                stats,
                shutdown,
            },
            waker,
            local,
        ))
    }

    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(16);
        loop {
            if let Err(e) = self.poll.poll(&mut events, None) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            if self.shutdown.load(Ordering::Acquire) {
                return Ok(());
            }
            loop {
                match self.listener.accept() {
                    Ok((sock, _)) => {
                        // Served synchronously with timeouts: scrapes are rare and small.
                        let std: std::net::TcpStream = sock.into();
                        let _ = serve(std, &self.stats);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
        }
    }
}

fn serve(mut s: std::net::TcpStream, stats: &Stats) -> io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut buf = [0u8; 4096];
    let mut n = 0;
    while n < buf.len() {
        let k = s.read(buf.get_mut(n..).unwrap_or_default())?;
        if k == 0 {
            break;
        }
        n += k;
        if buf
            .get(..n)
            .is_some_and(|b| b.windows(4).any(|w| w == b"\r\n\r\n"))
        {
            break;
        }
    }
    let head = buf.get(..n).unwrap_or_default();
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let (status, ctype, body) = if line.starts_with(b"GET /metrics ") {
        (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            stats.render(),
        )
    } else if line.starts_with(b"GET /healthz ") {
        ("200 OK", "text/plain; charset=utf-8", stats.health())
    } else {
        (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "try /metrics or /healthz\n".to_string(),
        )
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(resp.as_bytes())?;
    let _ = s.shutdown(std::net::Shutdown::Write);
    Ok(())
}
