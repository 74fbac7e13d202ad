//! The acceptor thread: one `mio::Poll` over the listeners; each accepted socket goes to the
//! next reactor in turn, through its mailbox.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};

use super::conn::Kind;
use super::reactor::{Mail, Mailbox};

pub const STOP: Token = Token(usize::MAX);

/// After EMFILE/ENFILE, retry accepting after this long instead of spinning.
const BACKOFF: Duration = Duration::from_millis(50);

pub struct Acceptor {
    pub poll: Poll,
    pub listeners: Vec<(TcpListener, Kind)>,
    pub reactors: Vec<Mailbox>,
    pub shutdown: Arc<AtomicBool>,
}

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
            // Accept on every listener each turn: cheap, and a backoff retry needs it anyway.
            for (l, kind) in &self.listeners {
                loop {
                    match l.accept() {
                        Ok((sock, _peer)) => {
                            let _ = sock.set_nodelay(true);
                            if self.reactors.is_empty() {
                                break;
                            }
                            let mb = &self.reactors[next % self.reactors.len()];
                            next = next.wrapping_add(1);
                            if mb.tx.try_send(Mail::Accepted(sock, *kind)).is_ok() {
                                mb.wake();
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            // EMFILE/ENFILE and friends: leave the backlog alone and retry
                            // shortly, so we neither spin nor stall.
                            let _ = e;
                            backoff = true;
                            break;
                        }
                    }
                }
            }
        }
    }
}
