//! The admin API and web console (`/api/`, `/console/`), served by the metrics thread: what it
//! asks the reactors ([`Ask`]) and what they answer ([`Reply`]).
//!
//! A reactor answers between loop turns and each answer is bounded: a page of connections
//! scans at most [`SCAN`] slab slots, so listing 100,000 connections is many short asks, never
//! one long turn. Nothing here is on the per-message path.

pub mod api;
pub mod http;
pub mod login;

use std::sync::Arc;

use crossbeam_channel::Sender;
use mio::Waker;
use serde::Serialize;

/// Slab slots one connections ask looks at, at most: a row costs one to two microseconds (its
/// peer address is a system call), so an ask adds at most about half a millisecond to a
/// reactor's turn (`loadtest/admin-listing.sh`).
pub const SCAN: usize = 256;

/// Where a reactor sends its answer: the admin thread's channel and doorbell.
#[derive(Debug, Clone)]
pub struct Replies {
    pub tx: Sender<Reply>,
    pub waker: Arc<Waker>,
}

impl Replies {
    /// Send an answer (never blocks: a full channel drops it, and the caller times out).
    pub fn send(&self, reply: Reply) {
        if self.tx.try_send(reply).is_ok() {
            let _ = self.waker.wake();
        }
    }
}

/// A question for one reactor.
#[derive(Debug)]
pub struct Ask {
    /// The admin thread's request this belongs to.
    pub id: u64,
    pub what: What,
    pub to: Replies,
}

#[derive(Debug)]
pub enum What {
    /// Connections from slab slot `from` on, at most `limit` matching `filter`.
    Connections {
        from: usize,
        limit: usize,
        filter: Arc<Filter>,
    },
    /// One connection, with its subscriptions.
    Connection { token: usize },
    /// Close a connection: the client gets an ERROR with `reason`.
    Close { token: usize, reason: String },
    /// Topics with subscribers or messages here, and the queues homed here.
    Destinations { limit: usize },
    /// Drop the waiting messages of a queue homed here.
    Purge { queue: String },
}

/// Which connections a listing shows.
#[derive(Debug, Default)]
pub struct Filter {
    /// A substring of the id, peer, user or session id.
    pub q: Option<String>,
    pub user: Option<String>,
    /// `WebSocket`, `TCP` or `SockJS` (any case).
    pub protocol: Option<String>,
}

impl Filter {
    /// Does connection `c` of reactor `reactor` match? `scratch` is reused for the text a
    /// substring is looked for in (nothing is allocated per connection).
    pub fn matches(&self, reactor: usize, c: &ConnInfo, scratch: &mut String) -> bool {
        use std::fmt::Write;
        if let Some(u) = &self.user {
            if c.user.as_deref() != Some(u.as_str()) {
                return false;
            }
        }
        if let Some(p) = &self.protocol {
            if !c.protocol.eq_ignore_ascii_case(p) {
                return false;
            }
        }
        let Some(q) = &self.q else {
            return true;
        };
        scratch.clear();
        let _ = write!(scratch, "{reactor}-{}", c.token);
        if let Some(p) = &c.peer {
            let _ = write!(scratch, "\n{p}");
        }
        if let Some(s) = &c.session {
            let _ = write!(scratch, "\n{}", s.as_str());
        }
        scratch.contains(q.as_str()) || c.user.as_deref().is_some_and(|u| u.contains(q.as_str()))
    }
}

/// A connection as a reactor reports it: numbers and small copies; the admin thread makes
/// the strings ([`ConnInfo::row`]).
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub token: usize,
    /// The socket's peer, or (a SockJS session) the address its requests come from.
    pub peer: Option<Peer>,
    pub user: Option<String>,
    pub protocol: &'static str,
    pub tls: bool,
    pub stomp: Option<&'static str>,
    pub state: &'static str,
    pub session: Option<crate::session::SessionId>,
    pub subscriptions: usize,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub outbound_bytes: usize,
    pub opened: Option<std::time::Instant>,
}

#[derive(Debug, Clone, Copy)]
pub enum Peer {
    Socket(std::net::SocketAddr),
    Ip(std::net::IpAddr),
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Socket(a) => a.fmt(f),
            Peer::Ip(ip) => ip.fmt(f),
        }
    }
}

impl ConnInfo {
    pub fn row(self, reactor: usize, now: std::time::Instant) -> ConnRow {
        ConnRow {
            id: conn_id(reactor, self.token),
            reactor,
            peer: self.peer.map(|p| p.to_string()),
            user: self.user,
            protocol: self.protocol,
            tls: self.tls,
            stomp: self.stomp,
            state: self.state,
            session: self.session.map(|s| s.as_str().to_string()),
            subscriptions: self.subscriptions,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            outbound_bytes: self.outbound_bytes,
            age_seconds: self
                .opened
                .map(|o| now.saturating_duration_since(o).as_secs_f64()),
        }
    }
}

/// A reactor's answer (or the login worker's, [`login`]).
#[derive(Debug)]
pub struct Reply {
    pub id: u64,
    pub reactor: usize,
    pub answer: Answer,
}

#[derive(Debug)]
pub enum Answer {
    /// Connections, and the slot to go on from (`None`: the reactor's slab is done).
    Connections {
        rows: Vec<ConnInfo>,
        next: Option<usize>,
    },
    Connection(Option<Box<(ConnInfo, Vec<SubRow>)>>),
    /// Whether the connection was there to close.
    Closed(bool),
    Destinations {
        topics: Vec<TopicRow>,
        queues: Vec<QueueRow>,
    },
    /// Messages dropped here (`None`: no such queue here), and whether the bridge purges the
    /// JetStream stream too (it answers with [`Answer::StreamPurged`]).
    Purged {
        held: Option<u64>,
        stream: bool,
    },
    /// Not a reactor's: the bridge's count of messages purged from the JetStream stream.
    StreamPurged(Result<u64, String>),
    /// Not a reactor's: the login worker's verdict on a request's HTTP Basic credentials.
    Login {
        ip: Option<std::net::IpAddr>,
        good: bool,
    },
}

/// One connection, as the API lists it.
#[derive(Debug, Clone, Serialize)]
pub struct ConnRow {
    /// `<reactor>-<token>`: stable for the connection's life, never reused.
    pub id: String,
    pub reactor: usize,
    pub peer: Option<String>,
    pub user: Option<String>,
    pub protocol: &'static str,
    pub tls: bool,
    pub stomp: Option<&'static str>,
    pub state: &'static str,
    pub session: Option<String>,
    pub subscriptions: usize,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub outbound_bytes: usize,
    pub age_seconds: Option<f64>,
}

/// One connection with its subscriptions.
#[derive(Debug, Clone, Serialize)]
pub struct ConnDetail {
    #[serde(flatten)]
    pub row: ConnRow,
    pub subscriptions_list: Vec<SubRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SubRow {
    pub id: String,
    pub destination: String,
    pub ack: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct TopicRow {
    pub name: String,
    pub subscribers: u64,
    /// Messages published to it (on the reactors that published them).
    pub messages: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueueRow {
    pub name: String,
    pub ready: u64,
    pub unacked: u64,
    pub consumers: u64,
    /// Messages enqueued since the queue was made.
    pub messages: u64,
}

/// A connection id: `<reactor>-<token>`.
pub fn conn_id(reactor: usize, token: usize) -> String {
    format!("{reactor}-{token}")
}

/// The reactor and token of a connection id.
pub fn parse_conn_id(id: &str) -> Option<(usize, usize)> {
    let (r, t) = id.split_once('-')?;
    Some((r.parse().ok()?, t.parse().ok()?))
}
