//! Password checks off the reactors: a small fixed pool of threads running argon2, fed fairly.
//!
//! Jobs wait in one lane per source address and the workers take the lanes in turn, so a
//! login waits behind at most one check per other address, however many logins one address
//! has sent. One address has at most `per_ip` checks queued or running; past that its logins
//! are refused at once. A failed check's penalty delay is not slept here: the answer carries
//! it and the connection's reactor holds the answer on its timer wheel, so no worker is ever
//! held by an attacker's penalty.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::mailbox::{Mail, Mailbox};

/// One CONNECT whose credentials need slow checking.
pub struct AuthJob {
    pub login: Option<String>,
    pub passcode: Option<String>,
    pub host: Option<String>,
    pub ip: Option<IpAddr>,
    /// The connection to answer.
    pub origin: crate::router::Origin,
}

/// Why a check was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The pool's queue is full (or the server is stopping).
    Full,
    /// This address already has its share of checks queued or running.
    Address,
}

impl Refused {
    /// The ERROR message a refused login gets.
    pub fn message(self) -> &'static str {
        match self {
            Refused::Full => "busy: authentication is saturated",
            Refused::Address => "busy: too many logins in progress from this address",
        }
    }
}

#[derive(Default)]
struct Lane {
    jobs: VecDeque<AuthJob>,
    running: usize,
}

#[derive(Default)]
struct Waiting {
    lanes: HashMap<Option<IpAddr>, Lane>,
    /// Addresses with queued jobs, in the order the workers serve them.
    turn: VecDeque<Option<IpAddr>>,
    queued: usize,
    closed: bool,
}

struct Shared {
    state: Mutex<Waiting>,
    ready: Condvar,
    capacity: usize,
    per_ip: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Waiting> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next job, taking the addresses in turn; `None` once the pool is closed.
    fn next(&self) -> Option<AuthJob> {
        let mut guard = self.lock();
        loop {
            let w = &mut *guard;
            if w.closed {
                return None;
            }
            while let Some(ip) = w.turn.pop_front() {
                let Some(lane) = w.lanes.get_mut(&ip) else {
                    continue;
                };
                let Some(job) = lane.jobs.pop_front() else {
                    continue;
                };
                lane.running += 1;
                if !lane.jobs.is_empty() {
                    w.turn.push_back(ip);
                }
                w.queued -= 1;
                return Some(job);
            }
            guard = self.ready.wait(guard).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn finished(&self, ip: Option<IpAddr>) {
        let mut w = self.lock();
        if let Some(lane) = w.lanes.get_mut(&ip) {
            lane.running = lane.running.saturating_sub(1);
            if lane.running == 0 && lane.jobs.is_empty() {
                w.lanes.remove(&ip);
            }
        }
    }
}

/// Closes the pool when the last [`AuthPool`] handle is dropped (the reactors are gone).
struct Closer(Arc<Shared>);

impl Drop for Closer {
    fn drop(&mut self) {
        self.0.lock().closed = true;
        self.0.ready.notify_all();
    }
}

/// Threads that run password checks (argon2 takes tens of milliseconds) off the reactors.
#[derive(Clone)]
pub struct AuthPool {
    shared: Arc<Shared>,
    _closer: Arc<Closer>,
}

impl AuthPool {
    /// `threads` workers; at most `capacity` checks queued, `per_ip` (0: no bound) per
    /// source address queued or running.
    pub fn start(
        threads: usize,
        capacity: usize,
        per_ip: usize,
        auth: Arc<dyn crate::session::Authenticator>,
        reactors: Vec<Mailbox>,
    ) -> std::io::Result<(AuthPool, Vec<std::thread::JoinHandle<std::io::Result<()>>>)> {
        let shared = Arc::new(Shared {
            state: Mutex::new(Waiting::default()),
            ready: Condvar::new(),
            capacity: capacity.max(1),
            per_ip,
        });
        let mut handles = Vec::new();
        for i in 0..threads.max(1) {
            let shared = Arc::clone(&shared);
            let auth = Arc::clone(&auth);
            let reactors = reactors.clone();
            handles.push(
                std::thread::Builder::new()
                    .name(format!("auth-{i}"))
                    .spawn(move || {
                        while let Some(job) = shared.next() {
                            let ok = catch_unwind(AssertUnwindSafe(|| {
                                auth.authenticate(
                                    job.login.as_deref(),
                                    job.passcode.as_deref(),
                                    job.host.as_deref(),
                                )
                            }))
                            .unwrap_or(false);
                            // Repeated failures from one address are answered more slowly;
                            // the reactor holds the answer, not this thread.
                            let delay = auth.failure_delay(job.ip, ok);
                            shared.finished(job.ip);
                            let to = job.origin;
                            if let Some(mb) = reactors.get(to.reactor) {
                                if mb.tx.send(Mail::AuthDone(to.token, ok, delay)).is_ok() {
                                    mb.wake();
                                }
                            }
                        }
                        Ok(())
                    })?,
            );
        }
        let closer = Arc::new(Closer(Arc::clone(&shared)));
        Ok((
            AuthPool {
                shared,
                _closer: closer,
            },
            handles,
        ))
    }

    /// Queue a check.
    pub fn submit(&self, job: AuthJob) -> Result<(), Refused> {
        let mut guard = self.shared.lock();
        let w = &mut *guard;
        if w.closed || w.queued >= self.shared.capacity {
            return Err(Refused::Full);
        }
        let lane = w.lanes.entry(job.ip).or_default();
        if self.shared.per_ip > 0 && lane.jobs.len() + lane.running >= self.shared.per_ip {
            return Err(Refused::Address);
        }
        if lane.jobs.is_empty() {
            w.turn.push_back(job.ip);
        }
        lane.jobs.push_back(job);
        w.queued += 1;
        drop(guard);
        self.shared.ready.notify_one();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(ip: u8, n: usize) -> AuthJob {
        AuthJob {
            login: Some(format!("u{n}")),
            passcode: None,
            host: None,
            ip: Some(IpAddr::from([127, 0, 0, ip])),
            origin: crate::router::Origin {
                reactor: 0,
                token: n,
            },
        }
    }

    fn pool(capacity: usize, per_ip: usize) -> AuthPool {
        let shared = Arc::new(Shared {
            state: Mutex::new(Waiting::default()),
            ready: Condvar::new(),
            capacity,
            per_ip,
        });
        AuthPool {
            _closer: Arc::new(Closer(Arc::clone(&shared))),
            shared,
        }
    }

    #[test]
    fn addresses_are_served_in_turn() {
        let p = pool(100, 0);
        for n in 0..5 {
            p.submit(job(2, n)).unwrap();
        }
        p.submit(job(3, 10)).unwrap();
        p.submit(job(4, 20)).unwrap();
        let order: Vec<usize> = (0..7)
            .map(|_| p.shared.next().unwrap().origin.token)
            .collect();
        // The flooding address gets one turn, then the others, then the rest of its jobs.
        assert_eq!(order, [0, 10, 20, 1, 2, 3, 4]);
    }

    #[test]
    fn one_address_has_a_bounded_share() {
        let p = pool(100, 2);
        p.submit(job(2, 0)).unwrap();
        p.submit(job(2, 1)).unwrap();
        assert_eq!(p.submit(job(2, 2)).err(), Some(Refused::Address));
        assert!(
            p.submit(job(3, 3)).is_ok(),
            "other addresses are not affected"
        );
        // Running still counts; finishing frees the share.
        let j = p.shared.next().unwrap();
        assert_eq!(p.submit(job(2, 4)).err(), Some(Refused::Address));
        p.shared.finished(j.ip);
        assert!(p.submit(job(2, 5)).is_ok());
    }

    #[test]
    fn the_queue_is_bounded_and_closes() {
        let p = pool(2, 0);
        p.submit(job(2, 0)).unwrap();
        p.submit(job(3, 1)).unwrap();
        assert_eq!(p.submit(job(4, 2)).err(), Some(Refused::Full));
        let shared = Arc::clone(&p.shared);
        drop(p);
        assert!(shared.next().is_none(), "closed: workers stop");
    }
}
