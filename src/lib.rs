//! # stompbox
//!
//! A multi-threaded STOMP 1.0/1.1/1.2 broker over WebSocket (RFC 6455) and TCP.
//!
//! - [`ws`]: sans-IO WebSocket: handshake, frames, masking, UTF-8, close codes.
//! - [`server`]: the acceptor and reactor threads (mio), the only code that does I/O.
//! - [`config`]: every limit, with defaults.

#![forbid(unsafe_code)]

pub mod config;
pub mod router;
pub mod server;
pub mod session;
pub mod stomp;
pub mod ws;

pub use config::Config;
pub use server::{start, ServerHandle};
