//! The only part of stompbox that touches sockets, threads, channels and the clock.
//!
//! ```text
//!             ┌──────────── acceptor thread ────────────┐
//!  listeners ─┤ mio::Poll: accept → round-robin mailbox │
//!             └──────┬──────────────────┬───────────────┘
//!                    │ crossbeam + Waker│
//!            ┌───────▼──────┐    ┌──────▼───────┐
//!            │  reactor 0   │ …  │  reactor N-1 │   each: Poll, Slab<Conn>, timer wheel,
//!            └──────────────┘    └──────────────┘   buffer pool, per-turn flush
//! ```

mod acceptor;
pub mod buf;
mod conn;
pub mod outq;
mod reactor;
pub mod timer;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use mio::net::TcpListener;
use mio::{Poll, Waker};

use crate::config::Config;
use crate::router::{Directory, Router, MAX_REACTORS};
use acceptor::Acceptor;
use conn::Kind;
use reactor::{Mailbox, Reactor, WAKER};

/// Mail queued per reactor before the acceptor drops new sockets (backpressure, not growth).
const MAILBOX_BOUND: usize = 65_536;

/// A running server. Dropping it does not stop it; call [`ServerHandle::shutdown`].
pub struct ServerHandle {
    ws_addr: Option<SocketAddr>,
    tcp_addr: Option<SocketAddr>,
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

    /// A cheap, cloneable trigger for shutdown (e.g. from a signal thread).
    pub fn trigger(&self) -> ShutdownTrigger {
        ShutdownTrigger {
            shutdown: Arc::clone(&self.shutdown),
            acceptor: Arc::clone(&self.acceptor_waker),
            reactors: self.reactor_wakers.clone(),
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
}

impl ShutdownTrigger {
    pub fn fire(&self) {
        self.shutdown.store(true, Ordering::Release);
        let _ = self.acceptor.wake();
        for r in &self.reactors {
            let _ = r.waker.wake();
        }
    }
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
        let l = TcpListener::bind(addr)?;
        ws_addr = Some(l.local_addr()?);
        listeners.push((l, Kind::Ws));
    }
    if let Some(addr) = cfg.tcp_listen {
        let l = TcpListener::bind(addr)?;
        tcp_addr = Some(l.local_addr()?);
        listeners.push((l, Kind::Tcp));
    }
    let directory = Arc::new(Directory::new());
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
    for (i, (poll, rx, woken)) in parts.into_iter().enumerate() {
        let reactor = Reactor::new(
            i,
            Arc::clone(&cfg),
            poll,
            rx,
            woken,
            Arc::clone(&shutdown),
            Router::with_config(i, cfg.reactors.max(1), Arc::clone(&directory), cfg.queues),
            mailboxes.clone(),
        );
        threads.push(
            std::thread::Builder::new()
                .name(format!("reactor-{i}"))
                .spawn(move || reactor.run())?,
        );
    }
    let poll = Poll::new()?;
    let acceptor_waker = Arc::new(Waker::new(poll.registry(), acceptor::STOP)?);
    let acceptor = Acceptor {
        poll,
        listeners,
        reactors: mailboxes.clone(),
        shutdown: Arc::clone(&shutdown),
    };
    threads.push(
        std::thread::Builder::new()
            .name("acceptor".into())
            .spawn(move || acceptor.run())?,
    );
    Ok(ServerHandle {
        ws_addr,
        tcp_addr,
        shutdown,
        acceptor_waker,
        reactor_wakers: mailboxes,
        threads,
    })
}
