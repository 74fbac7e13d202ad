//! HTTP Basic logins for the admin API, checked off the HTTP thread.
//!
//! An argon2 check takes tens of milliseconds, more with a costlier hash. Run on the HTTP
//! thread, a stream of bad logins would hold up `/metrics` scrapes, `/readyz` and every other
//! admin call. So one worker thread checks them from a short queue, and answers on the same
//! channel the reactors answer on. A login verified before is answered from the users file's
//! cache without queueing. An address has at most one check queued or running, and past the
//! queue's bound a login is refused at once (503 with Retry-After).

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use crossbeam_channel::{Sender, TrySendError};

use super::{Answer, Replies, Reply};
use crate::auth::PasswordAuth;

/// Checks queued, at most (one more may be running).
pub const QUEUE: usize = 8;

/// One login to check, for the request `id`.
struct Check {
    id: u64,
    ip: Option<IpAddr>,
    user: String,
    pass: String,
}

/// Why a login was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// A login from this address is being checked.
    Address,
    /// The queue is full.
    Full,
}

/// The worker's queue, and what it has in hand. The worker stops by itself once this is
/// dropped and its check in hand is done (it is not joined: it may be waiting to hand an
/// answer to the thread that drops this).
pub struct Logins {
    tx: Sender<Check>,
    /// Addresses with a check queued or running.
    checking: HashSet<Option<IpAddr>>,
}

impl Logins {
    /// Start the worker; it answers on `replies` with [`Answer::Login`].
    pub fn start(users: Arc<PasswordAuth>, replies: Replies) -> std::io::Result<Logins> {
        let (tx, rx) = crossbeam_channel::bounded::<Check>(QUEUE);
        std::thread::Builder::new()
            .name("admin-login".into())
            .spawn(move || {
                while let Ok(c) = rx.recv() {
                    let good = users.verify_login(&c.user, &c.pass);
                    drop(c.pass);
                    let reply = Reply {
                        id: c.id,
                        reactor: 0,
                        answer: Answer::Login { ip: c.ip, good },
                    };
                    // Waits for room rather than drop it: the HTTP thread must hear of every
                    // check to free its address (and it drains the channel every pass).
                    if replies.tx.send(reply).is_err() {
                        return;
                    }
                    let _ = replies.waker.wake();
                }
            })?;
        Ok(Logins {
            tx,
            checking: HashSet::new(),
        })
    }

    /// Queue a check of `user`'s passcode for the request `id`.
    pub fn submit(
        &mut self,
        id: u64,
        ip: Option<IpAddr>,
        user: &str,
        pass: &str,
    ) -> Result<(), Busy> {
        if self.checking.contains(&ip) {
            return Err(Busy::Address);
        }
        let check = Check {
            id,
            ip,
            user: user.to_string(),
            pass: pass.to_string(),
        };
        match self.tx.try_send(check) {
            Ok(()) => {
                self.checking.insert(ip);
                Ok(())
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(Busy::Full),
        }
    }

    /// The check for `ip` is answered: its address may send another.
    pub fn done(&mut self, ip: Option<IpAddr>) {
        self.checking.remove(&ip);
    }
}
