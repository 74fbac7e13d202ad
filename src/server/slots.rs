//! The reactor's connections: slab slots with a generation, the tokens that name them (stale
//! ones recognised), and [`ConnSink`], through which the router queues deliveries on them.

use std::sync::Arc;

use mio::Token;
use slab::Slab;

use super::buf::BufPool;
use super::compress::{with_compression, Compression};
use super::conn::{Conn, TopicDelivery};
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
    /// Compressed deliveries for sessions with permessage-deflate.
    pub zip: &'a mut Compression,
}

impl Sink for ConnSink<'_> {
    #[inline]
    fn deliver(&mut self, conn: usize, head: &[&[u8]], shared: &Arc<[u8]>) {
        let Some(s) = live(self.conns, Token(conn)) else {
            return;
        };
        let (pool, max, drop) = (&mut *self.pool, self.max_outbound, self.drop_policy);
        let bits = s.conn.deflate_bits();
        let delivery = with_compression(self.zip, bits, head, shared, |h, sh| {
            s.conn.deliver_topic(pool, h, sh, max, drop)
        });
        match delivery {
            TopicDelivery::Skipped => {}
            TopicDelivery::Dropped => self.counters.slow_drops += 1,
            TopicDelivery::Queued { first, overflowed } => {
                if first {
                    self.dirty.push(Token(conn));
                }
                self.counters.messages_out += 1;
                if overflowed {
                    self.counters.slow_closes += 1;
                    self.overflow.push(Token(conn));
                }
            }
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
        let (pool, max) = (&mut *self.pool, self.max_outbound);
        let bits = s.conn.deflate_bits();
        let (queued, first) = with_compression(self.zip, bits, head, shared, |h, sh| {
            s.conn.deliver_from_queue(pool, h, sh, max)
        });
        if first {
            self.dirty.push(Token(conn));
        }
        if let Queued::At(_) = queued {
            self.counters.messages_out += 1;
        }
        queued
    }
}
