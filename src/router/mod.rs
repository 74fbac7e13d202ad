//! Destinations and subscriptions. No threads, no I/O: a reactor owns one [`Router`] for its
//! own connections; the shared [`Directory`] only says which reactors have subscribers for a
//! destination, so a message crosses to another reactor at most once.

mod directory;
mod message;
pub mod queue;

pub use directory::{Directory, MAX_REACTORS};
pub use message::{encode_shared, MsgId, Published};

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::session::AckMode;
use crate::stomp::{escape, Version};
use crate::ws;

/// One subscription, as the router sees it.
#[derive(Debug, Clone)]
pub struct Subscriber {
    /// The connection (reactor-local token).
    pub conn: usize,
    /// Raw STOMP id.
    pub id: Box<str>,
    pub ack: AckMode,
    pub version: Version,
    /// Frames go inside WebSocket messages.
    pub ws: bool,
    /// `MESSAGE\nsubscription:<id>\n`, encoded once at subscribe time.
    prefix: Box<[u8]>,
}

impl Subscriber {
    pub fn new(conn: usize, id: &str, ack: AckMode, version: Version, ws: bool) -> Self {
        let mut p = b"MESSAGE\nsubscription:".to_vec();
        if version == Version::V1_0 {
            p.extend_from_slice(id.as_bytes());
        } else {
            escape::escape_into(&mut p, id.as_bytes());
        }
        p.push(b'\n');
        Subscriber {
            conn,
            id: id.into(),
            ack,
            version,
            ws,
            prefix: p.into_boxed_slice(),
        }
    }
}

/// Where deliveries go. The server writes into connection queues; benches use a mock.
pub trait Sink {
    /// Queue the `head` parts (small: copied) then `shared` (referenced, not copied) for `conn`.
    fn deliver(&mut self, conn: usize, head: &[&[u8]], shared: &Arc<[u8]>);
}

#[derive(Debug)]
struct Dest {
    subs: Vec<Subscriber>,
    /// Reactors with subscribers (shared with the directory).
    mask: Arc<AtomicU64>,
}

/// A reactor's subscription table.
#[derive(Debug)]
pub struct Router {
    reactor: usize,
    directory: Arc<Directory>,
    dests: HashMap<Box<str>, Dest>,
}

/// Destinations cached without local subscribers before the cache is pruned.
const MAX_CACHED: usize = 65_536;

impl Router {
    pub fn new(reactor: usize, directory: Arc<Directory>) -> Self {
        Router {
            reactor,
            directory,
            dests: HashMap::new(),
        }
    }

    fn bit(&self) -> u64 {
        1u64 << (self.reactor % MAX_REACTORS)
    }

    fn dest(&mut self, destination: &str) -> &mut Dest {
        if !self.dests.contains_key(destination) {
            if self.dests.len() >= MAX_CACHED {
                self.dests.retain(|_, d| !d.subs.is_empty());
            }
            let mask = self.directory.entry(destination);
            self.dests.insert(
                destination.into(),
                Dest {
                    subs: Vec::new(),
                    mask,
                },
            );
        }
        // Just inserted if it was missing.
        self.dests
            .get_mut(destination)
            .unwrap_or_else(|| unreachable!())
    }

    /// Add a subscriber. The directory knows this reactor has subscribers before this returns,
    /// so a publish that starts afterwards on any reactor reaches it.
    pub fn subscribe(&mut self, destination: &str, sub: Subscriber) {
        let bit = self.bit();
        let d = self.dest(destination);
        if d.subs.is_empty() {
            d.mask.fetch_or(bit, Ordering::SeqCst);
        }
        d.subs.push(sub);
    }

    /// Remove one subscription of `conn` by id.
    pub fn unsubscribe(&mut self, destination: &str, conn: usize, id: &str) {
        let bit = self.bit();
        if let Some(d) = self.dests.get_mut(destination) {
            if let Some(i) = d.subs.iter().position(|s| s.conn == conn && *s.id == *id) {
                // Keep order among the remaining subscribers (fairness is not order-sensitive,
                // but stable order keeps deliveries predictable).
                d.subs.remove(i);
            }
            if d.subs.is_empty() {
                d.mask.fetch_and(!bit, Ordering::SeqCst);
            }
        }
    }

    /// Local subscribers of a destination.
    pub fn local(&self, destination: &str) -> &[Subscriber] {
        self.dests
            .get(destination)
            .map(|d| d.subs.as_slice())
            .unwrap_or_default()
    }

    /// Reactors (bitmask) with subscribers for `destination`, other than this one.
    pub fn remote_mask(&mut self, destination: &str) -> u64 {
        let bit = self.bit();
        self.dest(destination).mask.load(Ordering::SeqCst) & !bit
    }

    /// Deliver to every local subscriber of `msg.destination`.
    pub fn deliver_local(&self, msg: &Published, sink: &mut impl Sink) -> usize {
        let subs = self.local(&msg.destination);
        for s in subs {
            deliver(s, msg, sink);
        }
        subs.len()
    }
}

/// One delivery: a small per-subscriber head (WebSocket header, MESSAGE, subscription, ack)
/// next to the shared part. Allocates nothing; the head is copied once, into the queue.
#[inline]
pub fn deliver(s: &Subscriber, msg: &Published, sink: &mut impl Sink) {
    let shared = msg.shared_for(s.version);
    let ack = s.ack != AckMode::Auto && s.version == Version::V1_2;
    let id = msg.id.as_bytes();
    let ack_len = if ack { 5 + id.len() } else { 0 };
    let mut h = [0u8; ws::frame::MAX_HEADER_LEN];
    let k = if s.ws {
        let op = if msg.text {
            ws::Opcode::Text
        } else {
            ws::Opcode::Binary
        };
        let len = s.prefix.len() + ack_len + shared.len();
        ws::encode_header(&mut h, true, op, len as u64, None)
    } else {
        0
    };
    let wsh = h.get(..k).unwrap_or_default();
    if ack {
        sink.deliver(s.conn, &[wsh, &s.prefix, b"ack:", id, b"\n"], shared);
    } else {
        sink.deliver(s.conn, &[wsh, &s.prefix], shared);
    }
}
