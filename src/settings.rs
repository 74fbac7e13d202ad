//! The binary's configuration: defaults, then a TOML file (`--config FILE`), then `RUST_LOG`
//! (the log filter only), then command-line flags, each overriding the one before; checked and
//! mapped onto [`Config`].
//!
//! [`Settings`] mirrors every configurable field of [`Config`] in operator terms: sections,
//! `off` for a listener, durations with units (`250ms`, `10s`, `5m`), policies by name. Every
//! option is also a flag of [`Cli`], and `--print-config` prints [`Settings::to_toml`], which
//! [`Settings::from_toml`] reads back unchanged.
//!
//! An invalid value is a [`ConfigError`] naming the option as it is spelled in the file
//! (`reactors`, `timeouts.handshake`), never a panic and never a silent fix-up.
//!
//! A test reads the field names out of `Config::default()`'s `Debug` output and fails for any
//! field that is neither mapped here nor listed as settable only from code, so a field added to
//! `Config` cannot silently stay unconfigurable.

mod cli;
mod env;
mod mapping;
mod validate;
mod values;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::auth::{AclHandle, PasswordAuth};
use crate::config::TlsConfig;
use crate::config::{Config, SlowConsumer};
use crate::router::{Overflow, QueueConfig, QueueStore, MAX_REACTORS};
use crate::session::{Authenticator, SessionConfig};
use crate::stomp::Limits;
use crate::ws::HandshakeConfig;

pub use cli::Cli;
pub use values::{
    Dur, Listener, LogFilter, LogFormat, QueueOverflow, QueueStoreKind, SlowConsumerPolicy,
};

/// The binary's default metrics listener (`Config::default()` has none, for embedded servers).
pub const DEFAULT_METRICS_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9100);

/// Largest frame, message, body or outbound bound accepted: 1 GiB.
const MAX_BYTES: u64 = 1 << 30;
/// Longest timeout or heart-beat interval accepted: a day.
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

// ---------------------------------------------------------------------------------------------
// The file's shape
// ---------------------------------------------------------------------------------------------

/// Every configurable option, as the TOML file spells it. Missing keys keep their defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Log filter (`RUST_LOG` overrides the file; `--log-level` overrides both).
    pub log_level: LogFilter,
    /// How log lines are written: `text` or `json` (one object per line).
    pub log_format: LogFormat,
    /// Reactor threads (default: available cores, at most 64).
    pub reactors: usize,
    /// Serve a WebSocket echo endpoint at `/echo`.
    pub echo: bool,
    pub listen: ListenSettings,
    pub connections: ConnectionSettings,
    pub websocket: WebSocketSettings,
    pub stomp: StompSettings,
    pub heartbeat: HeartbeatSettings,
    pub session: SessionSettings,
    pub outbound: OutboundSettings,
    pub queues: QueueSettings,
    pub memory: MemorySettings,
    pub buffers: BufferSettings,
    pub timeouts: TimeoutSettings,
    pub tls: TlsSettings,
    pub auth: AuthSettings,
    pub cluster: ClusterSettings,
    pub sockjs: SockjsSettings,
    pub admin: AdminSettings,
}

/// `[listen]`: where to accept, each an address or `off`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListenSettings {
    /// STOMP over WebSocket at `/ws`.
    pub websocket: Listener,
    /// STOMP over plain TCP.
    pub tcp: Listener,
    /// Prometheus `/metrics` and `/healthz` (and the admin API when `listen.admin` is off).
    pub metrics: Listener,
    /// The admin API and console on their own listener (`off`: on the metrics listener).
    pub admin: Listener,
}

/// `[admin]`: the JSON admin API under `/api/` and the web console at `/console/`. Off unless
/// enabled; a caller needs the bearer token, or (over TLS: `tls.admin`) HTTP Basic as a
/// users-file user with the `admin` role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSettings {
    /// Serve the admin API and console.
    pub enabled: bool,
    /// Bearer token that opens the API, at least 16 characters (empty: none).
    pub token: String,
}

/// `[connections]`: admission limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionSettings {
    /// Connections open at once over all listeners.
    pub max: usize,
    /// Connections open at once from one IP address (0: no limit).
    pub max_per_ip: usize,
}

/// `[websocket]`: frame limits and the opening handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSocketSettings {
    /// Largest frame payload, bytes.
    pub max_frame_size: u64,
    /// Largest message over all its fragments, bytes.
    pub max_message_size: u64,
    /// Largest opening-handshake request, bytes.
    pub max_handshake_size: usize,
    /// Subprotocols offered, in order of preference.
    pub subprotocols: Vec<String>,
    /// `Origin` values allowed to connect; empty: any origin.
    pub allowed_origins: Vec<String>,
    /// permessage-deflate (RFC 7692).
    pub compression: CompressionSettings,
}

/// `[websocket.compression]`: permessage-deflate (RFC 7692). Off by default: it costs CPU per
/// message sent (once per message and reactor, not per subscriber) and per message received,
/// and memory per session that keeps the client's context (see README).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompressionSettings {
    /// Offer permessage-deflate to clients that ask for it.
    pub enabled: bool,
    /// Messages smaller than this (bytes, the part after the per-subscriber head) go
    /// uncompressed.
    pub min_size: usize,
    /// DEFLATE level, 0 (none) to 9 (smallest, slowest).
    pub level: u32,
    /// The largest window the server compresses with, 9 to 15 bits.
    pub server_max_window_bits: u8,
    /// The largest window clients are asked to compress with (when they allow it), 8 to 15.
    pub client_max_window_bits: u8,
    /// Tell clients the server keeps no context between messages (it never does).
    pub server_no_context_takeover: bool,
    /// Ask clients to compress each message on its own, so no session holds an inflater's
    /// window between messages.
    pub client_no_context_takeover: bool,
}

impl Default for CompressionSettings {
    fn default() -> Self {
        let d = crate::ws::deflate::DeflateConfig::default();
        let c = crate::server::compress::CompressionConfig::default();
        CompressionSettings {
            enabled: false,
            min_size: c.min_size,
            level: c.level,
            server_max_window_bits: d.server_max_window_bits,
            client_max_window_bits: d.client_max_window_bits,
            server_no_context_takeover: d.server_no_context_takeover,
            client_no_context_takeover: d.client_no_context_takeover,
        }
    }
}

/// `[stomp]`: frame limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StompSettings {
    /// Headers per frame.
    pub max_headers: usize,
    /// Longest command or header line, bytes.
    pub max_header_line: usize,
    /// Largest body, bytes.
    pub max_body: usize,
}

/// `[heartbeat]`: what the server offers in CONNECTED, and when a silent client is closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeartbeatSettings {
    /// How often the server can send heart-beats (0: never).
    pub send: Dur,
    /// How often the server wants to receive them (0: never).
    pub receive: Dur,
    /// The shortest interval the server agrees to, either way.
    pub min: Dur,
    /// A client silent for this many negotiated intervals is closed.
    pub grace: u32,
}

/// `[session]`: per-session bounds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionSettings {
    pub max_subscriptions: usize,
    /// Words in a wildcard subscription pattern (consecutive `#` count once).
    pub max_pattern_words: usize,
    /// Queue prefetch when SUBSCRIBE has no `prefetch-count`.
    pub default_prefetch: usize,
    /// The most `prefetch-count` may ask for.
    pub max_prefetch: usize,
    /// Open transactions per session (0: none).
    pub max_transactions: usize,
    /// Frames buffered per transaction.
    pub max_tx_frames: usize,
    /// Bytes buffered per transaction (headers and bodies as received).
    pub max_tx_bytes: usize,
    /// The `server` header of CONNECTED.
    pub server_name: String,
}

/// `[outbound]`: each connection's outbound bound and what happens past it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboundSettings {
    /// Outbound bytes queued per connection.
    pub max_bytes: usize,
    /// `close` or `drop`.
    pub slow_consumer: SlowConsumerPolicy,
}

/// `[queues]`: `/queue/` destinations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueSettings {
    /// Messages waiting in one queue.
    pub max_messages: usize,
    /// Bytes of the messages waiting in one queue.
    pub max_bytes: usize,
    /// Queues in the broker: a SEND that would make one more is refused.
    pub max_queues: usize,
    /// `reject` or `drop-oldest`.
    pub overflow: QueueOverflow,
    /// `memory` (this process) or `jetstream` (NATS JetStream, durable; needs `cluster.nats`).
    pub store: QueueStoreKind,
    /// JetStream: the stream's replicas.
    pub replicas: usize,
    /// JetStream: how long a delivered message may stay unacknowledged before it is handed
    /// out again.
    pub ack_wait: Dur,
    /// `/metrics` reports this many queues by name at most (the deepest).
    pub metrics_labels: usize,
}

/// `[sockjs]`: the SockJS 0.3.3 endpoint (HTTP streaming and polling for clients that cannot
/// open a WebSocket) on the WebSocket listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SockjsSettings {
    /// Serve SockJS at `prefix`.
    pub enabled: bool,
    /// The endpoint's path prefix (SockJS clients connect to `http://host:port/<prefix>`).
    pub prefix: String,
    /// A receiving request silent this long gets a heart-beat frame.
    pub heartbeat: Dur,
    /// A session with no receiving request for this long is closed.
    pub disconnect_delay: Dur,
    /// A streaming response ends after this many bytes (the client opens another), bytes.
    pub response_limit: usize,
    /// Largest request body (`xhr_send`), bytes.
    pub max_body: usize,
    /// Sessions open at once (each also counts as a connection).
    pub max_sessions: usize,
    /// Offer the `websocket` transport.
    pub websocket: bool,
    /// Set a `JSESSIONID` cookie (for load balancers with sticky sessions).
    pub cookie_needed: bool,
    /// Where the iframe page loads sockjs-client from.
    pub client_url: String,
}

/// `[cluster]`: several nodes as one broker, through NATS (no `nats` URL: standalone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSettings {
    /// NATS seed URLs, `nats://host:port` (empty: standalone, in-memory).
    pub nats: Vec<String>,
    /// This node's name, unique in the cluster (empty: a random one at start).
    pub node_name: String,
    /// Subjects start with this (several clusters can share one NATS).
    pub subject_prefix: String,
    /// NATS user and password (empty: none).
    pub user: String,
    pub password: String,
    /// NATS token (empty: none).
    pub token: String,
    /// NATS `.creds` file (empty: none).
    pub credentials: PathBuf,
    /// CA certificate to trust for NATS's TLS, PEM (empty: the system's).
    pub tls_ca: PathBuf,
    /// Client certificate and key for NATS's TLS, PEM (empty: none).
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// Refuse a NATS connection without TLS.
    pub require_tls: bool,
    /// Messages waiting to cross each way (up to NATS; down to each reactor); past it a topic
    /// message is dropped and counted.
    pub max_pending: usize,
    /// Bytes of the messages waiting to cross each way.
    pub max_pending_bytes: usize,
}

/// `[memory]`: the broker-wide high-water mark.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemorySettings {
    /// Bytes in use above which connections that publish are not read from (0: no mark).
    pub high_watermark: u64,
}

/// `[buffers]`: read buffers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BufferSettings {
    /// Size of each pooled read buffer, bytes (also bounds the handshake request).
    pub read_buffer_size: usize,
    /// Free buffers kept per reactor.
    pub pool_buffers: usize,
    /// Bytes read from one connection per readiness event.
    pub read_budget: usize,
}

/// `[timeouts]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimeoutSettings {
    /// To complete the WebSocket handshake, and then to send CONNECT.
    pub handshake: Dur,
    /// After a close is sent, to wait for the peer's.
    pub close: Dur,
    /// On SIGTERM/SIGINT, for pending output to flush.
    pub shutdown: Dur,
}

/// `[tls]`: `wss://` and STOMP over TLS, from PEM files (paths relative to the working
/// directory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// Certificate chain, PEM (empty: none).
    pub cert: PathBuf,
    /// Private key, PEM (empty: none).
    pub key: PathBuf,
    /// TLS on the WebSocket listener (`wss://`).
    pub websocket: bool,
    /// TLS on the STOMP-over-TCP listener.
    pub tcp: bool,
    /// HTTPS on the admin listener (`listen.admin`).
    pub admin: bool,
}

impl TlsSettings {
    fn on(&self) -> bool {
        self.websocket || self.tcp || self.admin
    }

    /// Read the certificate and key (the only options whose check needs the file system).
    fn load(&self) -> Result<Option<TlsConfig>, ConfigError> {
        if !self.on() {
            return Ok(None);
        }
        for (option, path) in [("tls.cert", &self.cert), ("tls.key", &self.key)] {
            std::fs::File::open(path).map_err(|e| {
                ConfigError::one(option, format!("cannot read {}: {e}", path.display()))
            })?;
        }
        let server = TlsConfig::from_pem_files(&self.cert, &self.key).map_err(|e| {
            let option = if e.starts_with(&self.key.display().to_string()) {
                "tls.key"
            } else {
                "tls.cert"
            };
            ConfigError::one(option, e)
        })?;
        Ok(Some(TlsConfig {
            server,
            ws: self.websocket,
            tcp: self.tcp,
        }))
    }
}

/// `[auth]`: who may connect and what each user may do. Both files are read again on SIGHUP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Users file, `name:argon2id-hash` per line (empty: any login, or none, is accepted).
    pub users_file: PathBuf,
    /// With a users file, also accept a CONNECT without a login.
    pub anonymous: bool,
    /// ACL file, `<user|anonymous|*> <read|write|readwrite> <pattern>` per line (empty:
    /// everything is allowed).
    pub acl_file: PathBuf,
    /// Threads verifying passwords.
    pub workers: usize,
    /// Password checks one source address may have queued or running (0: no bound).
    pub max_pending_per_ip: usize,
    /// The most memory a users-file hash may ask argon2 for, KiB.
    pub max_hash_memory: u32,
}

impl AuthSettings {
    fn load_users(&self) -> Result<Option<Arc<PasswordAuth>>, ConfigError> {
        if self.users_file.as_os_str().is_empty() {
            return Ok(None);
        }
        PasswordAuth::from_file(&self.users_file, self.anonymous, self.max_hash_memory)
            .map(|a| Some(Arc::new(a)))
            .map_err(|e| ConfigError::one("auth.users_file", e))
    }

    fn load_acl(&self) -> Result<Option<Arc<AclHandle>>, ConfigError> {
        if self.acl_file.as_os_str().is_empty() {
            return Ok(None);
        }
        AclHandle::from_file(&self.acl_file)
            .map(|a| Some(Arc::new(a)))
            .map_err(|e| ConfigError::one("auth.acl_file", e))
    }
}

/// A checked configuration, with handles on what can be reloaded while running.
pub struct Built {
    pub config: Config,
    /// The users file's authenticator (also in `config.session`), for `reload` on SIGHUP.
    pub users: Option<Arc<PasswordAuth>>,
}

impl Default for Settings {
    fn default() -> Self {
        let mut s = Settings::from_config(&Config::default());
        s.reactors = s.reactors.clamp(1, MAX_REACTORS);
        s.listen.metrics = Listener::On(DEFAULT_METRICS_LISTEN);
        s
    }
}

macro_rules! section_defaults {
    ($($ty:ident => $field:ident),* $(,)?) => {$(
        impl Default for $ty {
            fn default() -> Self {
                Settings::default().$field
            }
        }
    )*};
}

section_defaults! {
    ListenSettings => listen,
    ConnectionSettings => connections,
    WebSocketSettings => websocket,
    StompSettings => stomp,
    HeartbeatSettings => heartbeat,
    SessionSettings => session,
    OutboundSettings => outbound,
    QueueSettings => queues,
    MemorySettings => memory,
    BufferSettings => buffers,
    TimeoutSettings => timeouts,
    SockjsSettings => sockjs,
    TlsSettings => tls,
    AdminSettings => admin,
    AuthSettings => auth,
    ClusterSettings => cluster,
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// One invalid option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// As spelled in the file (`timeouts.handshake`), or `RUST_LOG`, or the file's path.
    pub option: String,
    pub message: String,
}

/// Everything wrong with a configuration; nothing should start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl ConfigError {
    fn one(option: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            problems: vec![Problem {
                option: option.into(),
                message: message.into(),
            }],
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "invalid configuration: {}: {}", p.option, p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

// ---------------------------------------------------------------------------------------------
// Reading, printing, checking, mapping
// ---------------------------------------------------------------------------------------------

impl Settings {
    /// Read a TOML document; `source` (the file's path) names syntax errors.
    pub fn from_toml(text: &str, source: &str) -> Result<Settings, ConfigError> {
        let de = toml::Deserializer::parse(text).map_err(|e| {
            let at = e.span().map(|s| line_col(text, s.start));
            let msg = e.message().trim_end();
            ConfigError::one(
                source,
                match at {
                    Some((l, c)) => {
                        let src = text.lines().nth(l - 1).unwrap_or_default().trim();
                        format!("line {l}, column {c}: {msg}: `{src}`")
                    }
                    None => msg.to_owned(),
                },
            )
        })?;
        serde_path_to_error::deserialize(de).map_err(|e| {
            let first = Settings::first_problem(text, source, e);
            env::every_problem(text, first)
        })
    }

    fn first_problem(
        text: &str,
        source: &str,
        e: serde_path_to_error::Error<toml::de::Error>,
    ) -> ConfigError {
        {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let msg = inner.message().trim_end();
            let option = if path.is_empty() || path == "." {
                source.to_owned()
            } else {
                path
            };
            ConfigError::one(
                option,
                match inner.span().map(|s| line_col(text, s.start)) {
                    Some((l, _)) => format!("{msg} (line {l})"),
                    None => msg.to_owned(),
                },
            )
        }
    }

    /// Read a TOML file.
    pub fn from_file(path: &Path) -> Result<Settings, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::one(&name, format!("cannot read: {e}")))?;
        Settings::from_toml(&text, &name)
    }

    /// The TOML document `--print-config` prints; [`Settings::from_toml`] reads it back.
    pub fn to_toml(&self) -> Result<String, String> {
        toml::to_string(self).map_err(|e| e.to_string())
    }
}

pub use env::ENV_PREFIX;

/// Defaults, then the `--config` file, then `rust_log` (the `RUST_LOG` variable, for the log
/// filter), then the flags; checked. Use [`Settings::to_config`] for the server's [`Config`].
pub fn load(cli: &Cli, rust_log: Option<&str>) -> Result<Settings, ConfigError> {
    load_with_env(cli, rust_log, []).map(|(s, _)| s)
}

/// [`load`] with the environment's `STOMPBOX_*` variables between the file and `RUST_LOG` and
/// the flags. Also returns the `STOMPBOX_*` variables that name no option.
pub fn load_with_env(
    cli: &Cli,
    rust_log: Option<&str>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(Settings, Vec<String>), ConfigError> {
    let mut s = match &cli.config {
        Some(path) => Settings::from_file(path)?,
        None => Settings::default(),
    };
    let unknown = s.apply_env(env)?;
    if let Some(filter) = rust_log.filter(|v| !v.trim().is_empty()) {
        s.log_level = filter
            .parse()
            .map_err(|e: String| ConfigError::one("RUST_LOG", e))?;
    }
    cli.apply(&mut s);
    s.validate()?;
    Ok((s, unknown))
}

#[cfg(test)]
mod tests;
