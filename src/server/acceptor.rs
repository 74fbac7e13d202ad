//! The acceptor thread: one `mio::Poll` over the listeners; each accepted socket goes to the
//! next reactor in turn, through its mailbox, after the connection limits admit it.
//!
//! Out of file descriptors (EMFILE/ENFILE), a pending connection can neither be accepted nor
//! answered, and an edge-triggered listener would not signal it again. The acceptor keeps one
//! spare descriptor: it frees it, accepts, closes the connection at once (refused, counted),
//! and takes the spare back; when even that fails it retries after a short pause. No busy
//! loop, no crash, and every existing session keeps its sockets.

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};

use super::conn::Kind;
use super::mailbox::{Mail, Mailbox};
use super::metrics::{AcceptStats, ConnLimits, Refused};

pub const STOP: Token = Token(usize::MAX);

/// After EMFILE/ENFILE with no spare descriptor, retry accepting after this long.
const BACKOFF: Duration = Duration::from_millis(50);

pub struct Acceptor {
    pub poll: Poll,
    pub listeners: Vec<(TcpListener, Kind)>,
    pub reactors: Vec<Mailbox>,
    pub shutdown: Arc<AtomicBool>,
    pub limits: Arc<ConnLimits>,
    pub stats: Arc<AcceptStats>,
}

fn out_of_fds(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(24 /* EMFILE */) | Some(23 /* ENFILE */)
    )
}

fn spare() -> Option<File> {
    File::open("/dev/null").ok()
}

use super::metrics::RefusalLog;

impl Acceptor {
    pub fn run(mut self) -> io::Result<()> {
        for (i, (l, _)) in self.listeners.iter_mut().enumerate() {
            self.poll
                .registry()
                .register(l, Token(i), Interest::READABLE)?;
        }
        let mut events = Events::with_capacity(64);
        let mut next = 0usize;
        let mut backoff = false;
        let mut reserve = spare();
        let (mut log_limit, mut log_per_ip, mut log_fds) = Default::default();
        let (max, per_ip) = (self.limits.max(), self.limits.max_per_ip());
        loop {
            let timeout = backoff.then_some(BACKOFF);
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            if self.shutdown.load(Ordering::Acquire) {
                return Ok(());
            }
            backoff = false;
            if reserve.is_none() {
                reserve = spare();
            }
            // Accept on every listener each turn: cheap, and a backoff retry needs it anyway.
            for (l, kind) in &self.listeners {
                loop {
                    match l.accept() {
                        Ok((sock, peer)) => {
                            let _ = sock.set_nodelay(true);
                            if self.reactors.is_empty() {
                                break;
                            }
                            let admitted = match self.limits.admit(peer.ip()) {
                                Ok(()) => Some(peer.ip()),
                                Err(Refused::Limit) => {
                                    self.stats.refused_limit.fetch_add(1, Ordering::Relaxed);
                                    RefusalLog::note(
                                        &mut log_limit,
                                        format_args!("connections.max ({max}) reached"),
                                    );
                                    None
                                }
                                Err(Refused::PerIp) => {
                                    self.stats.refused_per_ip.fetch_add(1, Ordering::Relaxed);
                                    RefusalLog::note(
                                        &mut log_per_ip,
                                        format_args!(
                                            "connections.max_per_ip ({per_ip}) reached by {}",
                                            peer.ip()
                                        ),
                                    );
                                    None
                                }
                                Err(Refused::FdLimit) => {
                                    // The reserve stays free: closed now, unanswered.
                                    self.stats.refused_fd_limit.fetch_add(1, Ordering::Relaxed);
                                    RefusalLog::note(
                                        &mut log_fds,
                                        format_args!(
                                            "the open-file limit leaves no descriptor for \
                                             another socket (closed unanswered)"
                                        ),
                                    );
                                    drop(sock);
                                    continue;
                                }
                            };
                            let mb = &self.reactors[next % self.reactors.len()];
                            next = next.wrapping_add(1);
                            // A refused connection still goes to a reactor, which answers it
                            // (503 or ERROR) and reads until the peer is done, so the answer is
                            // not lost to a reset.
                            match mb.tx.try_send(Mail::Accepted(sock, *kind, admitted)) {
                                Ok(()) => mb.wake(),
                                Err(_) => {
                                    self.limits.socket_closed();
                                    if let Some(ip) = admitted {
                                        self.limits.release(ip);
                                    }
                                }
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) if out_of_fds(&e) => {
                            if reserve.take().is_some() {
                                // The spare is closed: room for one accept, closed at once.
                                // EMFILE comes before the check for a waiting connection, so
                                // only a successful accept means more may be waiting. Anything
                                // else: stop and retry after the pause (not at once: that was
                                // a busy loop while the backlog was empty).
                                let got = l.accept().map(drop);
                                reserve = spare();
                                if got.is_ok() {
                                    self.stats.refused_fd_limit.fetch_add(1, Ordering::Relaxed);
                                    if reserve.is_some() {
                                        continue;
                                    }
                                }
                                backoff = true;
                                break;
                            }
                            log::warn!("out of file descriptors: refusing new connections");
                            backoff = true;
                            break;
                        }
                        Err(e) => {
                            log::warn!("accept failed: {e}");
                            backoff = true;
                            break;
                        }
                    }
                }
            }
        }
    }
}
