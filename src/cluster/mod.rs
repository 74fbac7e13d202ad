//! Cluster mode: several stompbox nodes as one broker, exchanging topic messages through NATS.
//! Sans-IO, like [`crate::ws`] and [`crate::stomp`]: what a message looks like on NATS
//! ([`wire`]) and the settings. The subject mapping is the router's
//! ([`crate::router::subject`]), as is each reactor's interest ([`crate::router::interest`]);
//! the NATS connection itself is the bridge thread's (`server::bridge`).
//!
//! ```text
//!  reactor ─SEND─▶ local subscribers (as standalone)
//!     │      └──▶ other reactors (Directory mask, as standalone)
//!     └─ once per message, bounded channel ─▶ bridge thread ─PUB <subject>─▶ NATS
//!  NATS ─MSG (on a subject some reactor needs)─▶ bridge: decode once ─▶ each reactor that
//!        needs that subject (bounded channel + Waker) ─▶ Router::deliver_cluster
//!  reactor: subject needed / no longer needed ─▶ bridge: SUB / UNSUB (one per subject per node)
//! ```

pub mod wire;

use std::path::PathBuf;

/// How a node joins a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// NATS seed URLs (`nats://host:port`); the client fails over between them.
    pub servers: Vec<String>,
    /// This node's name: in logs, metrics and every message id made here. Names must differ
    /// between nodes.
    pub node_name: String,
    /// Subjects start with this (so several clusters can share one NATS).
    pub subject_prefix: String,
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    /// A NATS `.creds` file (JWT and nkey seed).
    pub credentials: Option<PathBuf>,
    /// TLS to NATS: the CA to trust, a client certificate and key, whether TLS is required.
    pub tls_ca: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub require_tls: bool,
    /// Messages waiting to go up to NATS, and waiting for each reactor after coming down;
    /// past either bound a topic message is dropped and counted.
    pub max_pending: usize,
    /// Bytes of those messages (the same bound, in bytes).
    pub max_pending_bytes: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            servers: Vec::new(),
            node_name: default_node_name(),
            subject_prefix: "stompbox".into(),
            user: None,
            password: None,
            token: None,
            credentials: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            require_tls: false,
            max_pending: 65_536,
            max_pending_bytes: 64 << 20,
        }
    }
}

/// The longest node name (it goes into every message id).
pub const MAX_NODE_NAME: usize = 40;

/// Whether a node name is usable: 1 to [`MAX_NODE_NAME`] of `A-Z a-z 0-9 - _`.
pub fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NODE_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A name for a node that was given none: `node-` and 8 random hex digits.
pub fn default_node_name() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    format!("node-{:08x}", h.finish() as u32)
}

/// What follows `m<reactor>-<seq>` in the ids of messages made on this node:
/// `@<name>-<start time in hex seconds>`, so ids stay unique across nodes and restarts.
pub fn id_suffix(node_name: &str, started_unix_secs: u64) -> String {
    format!("@{node_name}-{started_unix_secs:x}")
}
