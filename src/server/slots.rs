//! The reactor's connections: slab slots with a generation, the tokens that name them (stale
//! ones recognised), and [`ConnSink`], through which the router queues deliveries on them.

use std::sync::Arc;

use mio::Token;
use slab::Slab;

use super::buf::BufPool;
use super::conn::Conn;
use super::metrics::Counters;
use crate::router::{Queued, Sink};

/// A connection in the reactor's slab, with the generation its tokens carry.
pub struct Slot {
    pub conn: Conn,
    pub gen: u32,
}

/// Token = generation (high 32 bits) | slab index (low 32 bits), so a stale event for a reused
/// slot is recognised and ignored.
pub fn token(idx: usize, gen: u32) -> Token {
    Token(((gen as usize) << 32) | (idx & 0xFFFF_FFFF))
}

pub fn split(t: Token) -> (usize, u32) {
    (t.0 & 0xFFFF_FFFF, (t.0 >> 32) as u32)
}

/// The connection a token names, if it is still the one the token was made for (a slot reused
/// since has another generation).
pub fn live(conns: &mut Slab<Slot>, t: Token) -> Option<&mut Slot> {
    let (idx, gen) = split(t);
    conns.get_mut(idx).filter(|s| s.gen == gen)
}

/// Deliveries into connection queues.
pub struct ConnSink<'a> {
    pub conns: &'a mut Slab<Slot>,
    pub pool: &'a mut BufPool,
    pub dirty: &'a mut Vec<Token>,
    pub overflow: &'a mut Vec<Token>,
    pub max_outbound: usize,
    /// Topic deliveries to a subscriber over its bound are dropped (policy drop) rather than
    /// closing it. Queue deliveries are never dropped.
    pub drop_policy: bool,
    pub counters: &'a mut Counters,
}

impl Sink for ConnSink<'_> {
    #[inline]
    fn deliver(&mut self, conn: usize, head: &[&[u8]], shared: &Arc<[u8]>) {
        let Some(s) = live(self.conns, Token(conn)) else {
            return;
        };
        let c = &mut s.conn;
        if c.overflowed {
            return;
        }
        if self.drop_policy && c.out.footprint() > self.max_outbound {
            self.counters.slow_drops += 1;
            return;
        }
        if c.out.is_empty() {
            self.dirty.push(Token(conn));
        }
        c.out.push_parts(self.pool, head);
        c.out.push_shared(shared);
        self.counters.messages_out += 1;
        if !self.drop_policy && c.out.footprint() > self.max_outbound {
            c.overflowed = true;
            self.counters.slow_closes += 1;
            self.overflow.push(Token(conn));
        }
    }

    /// Queue deliveries are paced, never dropped: one goes out only while the connection has
    /// room under its bound (under either slow-consumer policy); otherwise its queue takes it
    /// back until the connection drains.
    #[inline]
    fn deliver_queued(&mut self, conn: usize, head: &[&[u8]], shared: &Arc<[u8]>) -> Queued {
        let Some(s) = live(self.conns, Token(conn)) else {
            return Queued::Gone;
        };
        let c = &mut s.conn;
        if c.overflowed {
            return Queued::Gone;
        }
        c.queue_pending = true;
        if c.out.footprint() > self.max_outbound {
            return Queued::Full;
        }
        if c.out.is_empty() {
            self.dirty.push(Token(conn));
        }
        c.out.push_parts(self.pool, head);
        c.out.push_shared(shared);
        self.counters.messages_out += 1;
        Queued::At(c.out.queued_total())
    }
}
