//! # stompbox
//!
//! A multi-threaded STOMP 1.0/1.1/1.2 broker over WebSocket (RFC 6455) and TCP.
//!
//! ```text
//!  listeners ──▶ acceptor thread ──(crossbeam channel + mio Waker, round-robin)──┐
//!                                                                               ▼
//!  ┌────────────────────── reactor thread (one per core) ──────────────────────────┐
//!  │ mio::Poll · Slab<Conn> · timer wheel · buffer pool · Router (local subs)      │
//!  │  read ─▶ ws::Decoder ─▶ stomp::parse ─▶ session::Session ─▶ Action           │
//!  │                                  publish ─▶ router: local subscribers        │
//!  │                                          └─▶ Directory mask: other reactors  │
//!  │  per turn: one batch + one wake-up per peer reactor; one writev per dirty conn│
//!  └───────────────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! Dependencies point one way, down this list, with no circle:
//!
//! ```text
//!  embed ──▶ server ──▶ config ──▶ cluster, app, auth ──▶ router, session, memory ──▶ stomp, ws
//!  settings ─────────────▶ config
//! ```
//!
//! [`session`] uses [`stomp`]; [`router`] uses the session's subscription types and the
//! encoders; [`config`] gathers the limits of every layer; [`server`] uses them all and is the
//! only module that touches sockets, threads, channels or the clock; [`embed`] starts a server
//! with an application's handlers.
//!
//! - [`ws`]: sans-IO WebSocket: handshake, frames, masking, UTF-8, close codes.
//! - [`stomp`]: sans-IO STOMP codec: zero-copy parser, encoder, escaping, heart-beats.
//! - [`sockjs`]: sans-IO SockJS 0.3.3 (the HTTP fallback): routes, frames, transports' wires.
//! - [`session`]: one STOMP session's protocol state machine.
//! - [`router`]: destinations, subscriptions, the cross-reactor directory, fan-out, queues,
//!   wildcards.
//! - [`app`]: application and user destinations, and the embedding API
//!   ([`BrokerBuilder`], in [`embed`]).
//! - [`auth`]: the users file (argon2id) and per-user ACLs.
//! - [`server`]: the acceptor and reactor threads (mio), TLS, metrics, worker pools.
//! - [`config`]: every limit, with defaults; [`settings`]: the file and flags that fill it.
//! - [`memory`]: the broker-wide memory high-water mark (what is measured, the alarm).
//! - [`cluster`]: cluster mode over NATS: its settings and the wire format (the subject
//!   mapping and each reactor's interest are the router's; the NATS connection is the
//!   server's bridge thread).

#![forbid(unsafe_code)]

pub mod app;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod embed;
pub mod memory;
pub mod router;
pub mod server;
pub mod session;
pub mod settings;
pub mod sockjs;
pub mod stomp;
pub mod ws;

/// The version and the git revision it was built from: `0.1.0 (1a2b3c4d5e6f)`.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("BUILD_REVISION"), ")");

pub use config::Config;
pub use embed::{Broker, BrokerBuilder};
pub use server::{start, ServerHandle};
