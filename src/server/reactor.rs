//! A reactor thread: one `mio::Poll`, its connections in a `Slab`, a timer wheel and a buffer
//! pool. The loop: poll; handle readiness; read again whoever hit the read budget; fire timers;
//! flush every connection with output once; drop the dead.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use super::buf::BufPool;
use super::conn::{Conn, Ctx, Next};
use super::timer::TimerWheel;
use crate::config::Config;
use crate::ws::code;

/// The token of the reactor's waker; connection tokens never reach it.
pub const WAKER: Token = Token(usize::MAX);

/// Messages to a reactor.
#[derive(Debug)]
pub enum Mail {
    Accepted(TcpStream),
}

/// The sending side of a reactor's mailbox: a bounded channel plus one wake-up per batch.
#[derive(Debug, Clone)]
pub struct Mailbox {
    pub tx: crossbeam_channel::Sender<Mail>,
    pub waker: Arc<Waker>,
    pub woken: Arc<AtomicBool>,
}

impl Mailbox {
    /// Ring the doorbell unless a wake-up is already pending.
    pub fn wake(&self) {
        if !self.woken.swap(true, Ordering::AcqRel) {
            let _ = self.waker.wake();
        }
    }
}

struct Slot {
    conn: Conn,
    gen: u32,
}

/// Token = generation (high 32 bits) | slab index (low 32 bits), so a stale event for a reused
/// slot is recognised and ignored.
fn token(idx: usize, gen: u32) -> Token {
    Token(((gen as usize) << 32) | (idx & 0xFFFF_FFFF))
}

fn split(t: Token) -> (usize, u32) {
    (t.0 & 0xFFFF_FFFF, (t.0 >> 32) as u32)
}

pub struct Reactor {
    cfg: Arc<Config>,
    poll: Poll,
    inbox: Receiver<Mail>,
    woken: Arc<AtomicBool>,
    shutdown: Arc<AtomicBool>,
    conns: Slab<Slot>,
    next_gen: u32,
    pool: BufPool,
    wheel: TimerWheel,
    /// Connections with output to flush this turn (tokens; duplicates are harmless).
    dirty: Vec<Token>,
    /// Connections that hit the read budget.
    ready_again: Vec<Token>,
    fired: Vec<(usize, u64)>,
}

impl Reactor {
    pub fn new(
        cfg: Arc<Config>,
        poll: Poll,
        inbox: Receiver<Mail>,
        woken: Arc<AtomicBool>,
        shutdown: Arc<AtomicBool>,
    ) -> Self {
        let pool = BufPool::new(cfg.read_buffer_size, cfg.pool_buffers);
        Reactor {
            poll,
            inbox,
            woken,
            shutdown,
            conns: Slab::new(),
            next_gen: 0,
            pool,
            wheel: TimerWheel::new(Duration::from_millis(20), Instant::now()),
            dirty: Vec::new(),
            ready_again: Vec::new(),
            fired: Vec::new(),
            cfg,
        }
    }

    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut shutdown_deadline: Option<Instant> = None;
        loop {
            let timeout = if !self.ready_again.is_empty() {
                Some(Duration::ZERO)
            } else {
                self.wheel.timeout()
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            let now = Instant::now();
            for ev in events.iter() {
                if ev.token() == WAKER {
                    self.woken.store(false, Ordering::Release);
                    self.drain_inbox(now);
                    continue;
                }
                if ev.is_writable() {
                    if let Some(s) = self.slot(ev.token()) {
                        s.conn.write_blocked = false;
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
            self.fire_timers(now);
            if shutdown_deadline.is_none() && self.shutdown.load(Ordering::Acquire) {
                shutdown_deadline = Some(now + self.cfg.shutdown_timeout);
                self.close_all(now);
            }
            self.flush_dirty(now);
            if let Some(d) = shutdown_deadline {
                if self.conns.is_empty() || now >= d {
                    return Ok(());
                }
            }
        }
    }

    fn slot(&mut self, t: Token) -> Option<&mut Slot> {
        let (idx, gen) = split(t);
        self.conns.get_mut(idx).filter(|s| s.gen == gen)
    }

    fn drain_inbox(&mut self, now: Instant) {
        while let Ok(mail) = self.inbox.try_recv() {
            match mail {
                Mail::Accepted(sock) => self.add(sock, now),
            }
        }
    }

    fn add(&mut self, sock: TcpStream, now: Instant) {
        if self.shutdown.load(Ordering::Acquire) {
            return;
        }
        let entry = self.conns.vacant_entry();
        let idx = entry.key();
        if idx > 0xFFFF_FFFF {
            return;
        }
        self.next_gen = self.next_gen.wrapping_add(1);
        let gen = self.next_gen;
        let tok = token(idx, gen);
        let mut conn = Conn::new(sock, &self.cfg, now);
        if self
            .poll
            .registry()
            .register(&mut conn.sock, tok, Interest::READABLE)
            .is_err()
        {
            return;
        }
        if let Some(d) = conn.deadline {
            conn.timer_at = Some(self.wheel.schedule(tok.0, d));
        }
        entry.insert(Slot { conn, gen });
        // Bytes may already be waiting (edge-triggered: the event could predate registration).
        self.ready_again.push(tok);
    }

    fn ctx(&mut self, now: Instant) -> (Ctx<'_>, &mut Slab<Slot>) {
        (
            Ctx {
                cfg: &self.cfg,
                pool: &mut self.pool,
                now,
            },
            &mut self.conns,
        )
    }

    fn read(&mut self, t: Token, now: Instant) {
        let (idx, gen) = split(t);
        let (mut ctx, conns) = self.ctx(now);
        let Some(s) = conns.get_mut(idx).filter(|s| s.gen == gen) else {
            return;
        };
        let next = s.conn.on_readable(&mut ctx);
        let has_output = !s.conn.out.is_empty();
        self.after(t, next, has_output);
    }

    fn after(&mut self, t: Token, next: Next, has_output: bool) {
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
        let (idx, gen) = split(t);
        let Some(s) = self.conns.get_mut(idx).filter(|s| s.gen == gen) else {
            return;
        };
        if let Some(d) = s.conn.deadline {
            let want = self.wheel.tick_of(d);
            if s.conn.timer_at.is_none_or(|at| want < at) {
                s.conn.timer_at = Some(self.wheel.schedule(t.0, d));
            }
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        self.wheel.advance(now, &mut self.fired);
        let fired = std::mem::take(&mut self.fired);
        for &(key, tick) in &fired {
            let t = Token(key);
            let Some(s) = self.slot(t) else { continue };
            if s.conn.timer_at != Some(tick) {
                continue; // stale entry
            }
            s.conn.timer_at = None;
            let next = s.conn.on_timer(now);
            let out = !s.conn.out.is_empty();
            self.after(t, next, out);
        }
        self.fired = fired;
        self.fired.clear();
    }

    fn flush_dirty(&mut self, now: Instant) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for &t in &dirty {
            let (idx, gen) = split(t);
            let mut ctx = Ctx {
                cfg: &self.cfg,
                pool: &mut self.pool,
                now,
            };
            let Some(s) = self.conns.get_mut(idx).filter(|s| s.gen == gen) else {
                continue;
            };
            let was_blocked = s.conn.write_blocked;
            let res = s.conn.flush(&mut ctx);
            let blocked = s.conn.write_blocked;
            let next = match res {
                Ok(n) => n,
                Err(_) => Next::Close,
            };
            if next != Next::Close && blocked != was_blocked {
                let interest = if blocked {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                let _ = self
                    .poll
                    .registry()
                    .reregister(&mut s.conn.sock, t, interest);
            }
            self.after(t, next, false);
        }
        dirty.clear();
        self.dirty = dirty;
    }

    fn close_all(&mut self, now: Instant) {
        let keys: Vec<Token> = self.conns.iter().map(|(i, s)| token(i, s.gen)).collect();
        for t in keys {
            let (idx, gen) = split(t);
            let (mut ctx, conns) = self.ctx(now);
            if let Some(s) = conns.get_mut(idx).filter(|s| s.gen == gen) {
                s.conn
                    .start_close(&mut ctx, code::GOING_AWAY, "server shutting down");
                self.dirty.push(t);
                self.rearm_timer(t);
            }
        }
    }

    fn remove(&mut self, t: Token) {
        let (idx, gen) = split(t);
        if self.conns.get(idx).is_some_and(|s| s.gen == gen) {
            let mut s = self.conns.remove(idx);
            let _ = self.poll.registry().deregister(&mut s.conn.sock);
            s.conn.out.release(&mut self.pool);
        }
    }
}
