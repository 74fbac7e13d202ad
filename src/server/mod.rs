//! The only part of stompbox that touches sockets, threads, channels and the clock.
//!
//! ```text
//!             ┌──────────── acceptor thread ────────────┐
//!  listeners ─┤ mio::Poll: accept → round-robin mailbox │
//!             └──────┬──────────────────┬───────────────┘
//!                    │ crossbeam + Waker│
//!            ┌───────▼──────┐    ┌──────▼───────┐
//!            │  reactor 0   │ …  │  reactor N-1 │   each: Poll, Slab<Conn>, timer wheel,
//!            └──────┬───────┘    └──────┬───────┘   buffer pool, per-turn flush
//!                   │ cluster mode: bounded crossbeam channels both ways, Notify up, Waker down
//!            ┌──────▼───────────────────▼───────┐
//!            │ cluster bridge thread (bridge.rs)│  one NATS connection (async-nats, its own
//!            └──────────────────────────────────┘  current-thread tokio runtime)
//! ```

mod acceptor;
pub mod admin;
pub mod apps;
pub mod authpool;
pub mod bridge;
pub mod buf;
pub mod compress;
mod conn;
mod exposition;
pub mod mailbox;
pub mod metrics;
pub mod outq;
mod reactor;
mod slots;
#[doc(hidden)]
pub mod testing;
pub mod timer;
pub mod tls;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use mio::net::TcpListener;
use mio::{Poll, Waker};

use crate::config::Config;
use crate::memory::MemoryState;
use crate::router::{Directory, QueueConfig, Router, MAX_REACTORS};
use acceptor::Acceptor;

/// Credential checks waiting for a worker, over all addresses.
const AUTH_QUEUE: usize = 1024;
/// Descriptors the connections may not take: for `/metrics` scrapes (answered while clients
/// have taken everything else), re-reading the users and ACL files, and the like.
const FD_RESERVE: usize = 16;

/// How many sockets the reactors may hold: the open-file limit, less what is open now (the
/// listeners, polls, wakers, standard streams) and [`FD_RESERVE`]. `None` without a limit.
fn socket_budget() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let soft: usize = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()?;
    let open = std::fs::read_dir("/proc/self/fd").ok()?.count();
    Some(soft.saturating_sub(open + FD_RESERVE))
}

/// How often memory is measured against the high-water mark.
const MEMORY_SAMPLE: std::time::Duration = std::time::Duration::from_millis(50);
use conn::Kind;
use mailbox::Mailbox;
use metrics::{AcceptStats, ConnLimits, ReactorStats, Stats};
use reactor::{Reactor, Shared, WAKER};

pub use apps::Publisher;

/// Mail queued per reactor before the acceptor drops new sockets (backpressure, not growth).
const MAILBOX_BOUND: usize = 65_536;

/// A running server. Dropping it does not stop it; call [`ServerHandle::shutdown`].
pub struct ServerHandle {
    ws_addr: Option<SocketAddr>,
    tcp_addr: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    stats: Arc<Stats>,
    metrics_waker: Option<Arc<Waker>>,
    /// Cluster mode: rings the bridge thread (to see the shutdown flag at once).
    bridge: Option<Arc<tokio::sync::Notify>>,
    publisher: Publisher,
    shutdown: Arc<AtomicBool>,
    acceptor_waker: Arc<Waker>,
    reactor_wakers: Vec<Mailbox>,
    threads: Vec<JoinHandle<io::Result<()>>>,
}

impl ServerHandle {
    /// The bound WebSocket address (useful with port 0).
    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.ws_addr
    }

    /// The bound STOMP-over-TCP address.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// Publishes into the broker from any thread.
    pub fn publisher(&self) -> Publisher {
        self.publisher.clone()
    }

    /// The bound metrics address.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Where the admin API and console are served (their own listener, or the metrics one).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The Prometheus text of the server's metrics right now.
    pub fn metrics(&self) -> String {
        self.stats.render()
    }

    /// A cheap, cloneable trigger for shutdown (e.g. from a signal thread).
    pub fn trigger(&self) -> ShutdownTrigger {
        ShutdownTrigger {
            shutdown: Arc::clone(&self.shutdown),
            acceptor: Arc::clone(&self.acceptor_waker),
            reactors: self.reactor_wakers.clone(),
            metrics: self.metrics_waker.clone(),
            bridge: self.bridge.clone(),
        }
    }

    /// Stop accepting, close every connection (WebSocket close 1001), flush, and join.
    pub fn shutdown(self) -> io::Result<()> {
        self.trigger().fire();
        self.wait()
    }

    /// Wait for the server threads to end (after a trigger fired).
    pub fn wait(self) -> io::Result<()> {
        let mut result = Ok(());
        for t in self.threads {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(e),
                Err(_) => result = Err(io::Error::other("server thread panicked")),
            }
        }
        result
    }
}

#[derive(Clone)]
pub struct ShutdownTrigger {
    shutdown: Arc<AtomicBool>,
    acceptor: Arc<Waker>,
    reactors: Vec<Mailbox>,
    metrics: Option<Arc<Waker>>,
    bridge: Option<Arc<tokio::sync::Notify>>,
}

impl ShutdownTrigger {
    pub fn fire(&self) {
        self.shutdown.store(true, Ordering::Release);
        let _ = self.acceptor.wake();
        for r in &self.reactors {
            let _ = r.waker.wake();
        }
        if let Some(m) = &self.metrics {
            let _ = m.wake();
        }
        if let Some(b) = &self.bridge {
            b.notify_one();
        }
    }
}

/// Pending connections the kernel may hold per listener (it caps this at `somaxconn`).
const LISTEN_BACKLOG: i32 = 4096;

/// Bind a non-blocking listener with a backlog for connection storms (std and mio use 128).
/// [`bind`], an error naming the listener's option and address ("listen.tcp
/// 0.0.0.0:61613: Address already in use").
fn bind_named(option: &str, addr: SocketAddr) -> io::Result<TcpListener> {
    bind(addr).map_err(|e| io::Error::new(e.kind(), format!("{option} {addr}: {e}")))
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let std = std::net::TcpListener::bind(addr)?;
    let sock = socket2::Socket::from(std);
    sock.listen(LISTEN_BACKLOG)?;
    sock.set_nonblocking(true)?;
    Ok(TcpListener::from_std(sock.into()))
}

/// Bind the listeners and start the acceptor and reactor threads.
pub fn start(cfg: Config) -> io::Result<ServerHandle> {
    let cfg = Arc::new(cfg);
    let shutdown = Arc::new(AtomicBool::new(false));
    if cfg.read_buffer_size < 1024 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "read_buffer_size must be at least 1024",
        ));
    }
    if cfg.stomp_limits.max_headers > crate::stomp::MAX_HEADERS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "stomp_limits.max_headers: at most {} (the parser's header slots)",
                crate::stomp::MAX_HEADERS
            ),
        ));
    }
    if cfg.reactors > MAX_REACTORS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("at most {MAX_REACTORS} reactors"),
        ));
    }
    let mut listeners = Vec::new();
    let mut ws_addr = None;
    let mut tcp_addr = None;
    if let Some(addr) = cfg.listen {
        let l = bind_named("listen.websocket", addr)?;
        ws_addr = Some(l.local_addr()?);
        listeners.push((l, Kind::Ws));
    }
    if let Some(addr) = cfg.tcp_listen {
        let l = bind_named("listen.tcp", addr)?;
        tcp_addr = Some(l.local_addr()?);
        listeners.push((l, Kind::Tcp));
    }
    // Bind everything before any thread starts, so a bad address starts nothing.
    let stats_shutdown = Arc::clone(&shutdown);
    let directory = Arc::new(Directory::new());
    let limits = Arc::new(ConnLimits::new(
        cfg.max_connections,
        cfg.max_connections_per_ip,
    ));
    let accept_stats = Arc::new(AcceptStats::default());
    let reactor_stats: Vec<Arc<ReactorStats>> = (0..cfg.reactors.max(1))
        .map(|_| Arc::new(ReactorStats::default()))
        .collect();
    let memory = Arc::new(MemoryState::new(cfg.memory_high_watermark));
    let cluster_stats = cfg.cluster.as_ref().map(|c| {
        let mut s = bridge::ClusterStats::new(&c.node_name);
        s.limits = Some(Arc::clone(&limits));
        Arc::new(s)
    });
    let stats = Arc::new(Stats {
        reactors: reactor_stats.clone(),
        accept: Arc::clone(&accept_stats),
        limits: Arc::clone(&limits),
        memory: Arc::clone(&memory),
        cluster: cluster_stats.clone(),
        queue_labels: cfg.queues.metrics_labels,
    });
    let http = if cfg.metrics_listen.is_some() || cfg.admin.is_some() {
        Some(admin::http::HttpServer::bind(
            cfg.metrics_listen,
            cfg.admin.clone(),
            Arc::clone(&stats),
            stats_shutdown,
        )?)
    } else {
        None
    };
    let mut mailboxes = Vec::new();
    let mut parts = Vec::new();
    for _ in 0..cfg.reactors.max(1) {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (tx, rx) = crossbeam_channel::bounded(MAILBOX_BOUND);
        let woken = Arc::new(AtomicBool::new(false));
        mailboxes.push(Mailbox {
            tx,
            waker,
            woken: Arc::clone(&woken),
        });
        parts.push((poll, rx, woken));
    }
    let mut threads = Vec::new();
    let (bridge, mut uplinks) = match &cfg.cluster {
        Some(c) => {
            let stats = cluster_stats.clone().unwrap_or_default();
            let admin = http.as_ref().map(|h| h.server.replies());
            let (b, ups) = bridge::start(
                c,
                &cfg.queues,
                &mailboxes,
                stats,
                admin,
                Arc::clone(&shutdown),
            )?;
            (Some(b), ups.into_iter().map(Some).collect())
        }
        None => (None, Vec::new()),
    };
    let id_suffix = cfg.cluster.as_ref().map(|c| {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        crate::cluster::id_suffix(&c.node_name, started)
    });
    let user_prefix = cfg
        .app
        .as_ref()
        .map(|a| a.user_prefix.clone())
        .unwrap_or_else(|| crate::app::DEFAULT_USER_PREFIX.into());
    let publisher = Publisher {
        reactors: mailboxes.clone(),
        user_prefix,
    };
    let (pool, workers) = match &cfg.app {
        Some(app) => {
            let (pool, handles) = apps::Pool::start(app.workers, app.queue, publisher.clone())?;
            (Some(pool), handles)
        }
        None => (None, Vec::new()),
    };
    let (auth_pool, auth_workers) = authpool::AuthPool::start(
        cfg.auth_workers,
        AUTH_QUEUE,
        cfg.auth_pending_per_ip,
        Arc::clone(&cfg.session.authenticator),
        mailboxes.clone(),
    )?;
    for (i, (poll, rx, woken)) in parts.into_iter().enumerate() {
        let mut router = Router::with_config(
            i,
            cfg.reactors.max(1),
            Arc::clone(&directory),
            QueueConfig {
                // A consumer's deliveries in flight stay within half its outbound bound.
                window: cfg.max_outbound / 2,
                ..cfg.queues
            },
        );
        if let (Some(c), Some(suffix)) = (&cfg.cluster, &id_suffix) {
            router = router.clustered(&c.subject_prefix, suffix.as_bytes());
        }
        let reactor = Reactor::new(
            i,
            Arc::clone(&cfg),
            poll,
            rx,
            woken,
            Shared {
                shutdown: Arc::clone(&shutdown),
                stats: Arc::clone(&reactor_stats[i]),
                limits: Arc::clone(&limits),
                pool: pool.clone(),
                auth: Some(auth_pool.clone()),
                memory: Arc::clone(&memory),
                cluster: uplinks.get_mut(i).and_then(Option::take),
            },
            router,
            mailboxes.clone(),
        );
        threads.push(
            std::thread::Builder::new()
                .name(format!("reactor-{i}"))
                .spawn(move || reactor.run())?,
        );
    }
    {
        let (memory, shutdown, reactors) = (memory, Arc::clone(&shutdown), mailboxes.clone());
        threads.push(
            std::thread::Builder::new()
                .name("memory".into())
                .spawn(move || {
                    while !shutdown.load(Ordering::Acquire) {
                        if memory.sample(crate::memory::in_use()) == Some(false) {
                            // Blocked publishers wait for their reactor to see the change.
                            for r in &reactors {
                                r.wake();
                            }
                        }
                        std::thread::sleep(MEMORY_SAMPLE);
                    }
                    Ok(())
                })?,
        );
    }
    let poll = Poll::new()?;
    let acceptor_waker = Arc::new(Waker::new(poll.registry(), acceptor::STOP)?);
    // Every descriptor the server needs is open now: the rest, less a reserve, is for sockets.
    if let Some(n) = socket_budget() {
        limits.set_fd_cap(n);
    }
    let acceptor = Acceptor {
        poll,
        listeners,
        reactors: mailboxes.clone(),
        shutdown: Arc::clone(&shutdown),
        limits,
        stats: accept_stats,
    };
    threads.push(
        std::thread::Builder::new()
            .name("acceptor".into())
            .spawn(move || acceptor.run())?,
    );
    let (metrics_addr, admin_addr, metrics_waker) = match http {
        Some(b) => {
            let mut server = b.server;
            server.reactors = mailboxes.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("metrics".into())
                    .spawn(move || server.run())?,
            );
            (b.metrics, b.admin, Some(b.waker))
        }
        None => (None, None, None),
    };
    // Workers end when the reactors (holding the pool's sender) are gone.
    drop(pool);
    drop(auth_pool);
    threads.extend(workers);
    threads.extend(auth_workers);
    let bridge = bridge.map(|b| {
        threads.push(b.thread);
        b.notify
    });
    Ok(ServerHandle {
        publisher,
        ws_addr,
        tcp_addr,
        metrics_addr,
        admin_addr,
        stats,
        metrics_waker,
        bridge,
        shutdown,
        acceptor_waker,
        reactor_wakers: mailboxes,
        threads,
    })
}
