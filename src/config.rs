//! Server configuration: every limit the reactors enforce, with production defaults.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

use crate::app::AppConfig;
use crate::auth::AclHandle;
use crate::router::QueueConfig;
use crate::session::SessionConfig;
use crate::stomp::Limits;
use crate::ws::HandshakeConfig;

/// What happens to a subscriber whose outbound queue is over `max_outbound`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowConsumer {
    /// ERROR "slow consumer", then close (default).
    Close,
    /// Drop new topic messages for it (counted) until it catches up.
    Drop,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// WebSocket listener (`/ws` for STOMP, `/echo` with `echo`).
    pub listen: Option<SocketAddr>,
    /// STOMP over plain TCP listener.
    pub tcp_listen: Option<SocketAddr>,
    /// Prometheus `/metrics` and `/healthz` listener (`None` here; the binary's default is
    /// 127.0.0.1:9100).
    pub metrics_listen: Option<SocketAddr>,
    /// Connections open at once, over all listeners; past it new ones are refused (HTTP 503 or
    /// STOMP ERROR) and counted.
    pub max_connections: usize,
    /// Connections open at once from one source IP address (0: no per-IP limit).
    pub max_connections_per_ip: usize,
    /// Reactor threads (default: available cores).
    pub reactors: usize,
    /// Serve the WebSocket echo endpoint at `/echo`.
    pub echo: bool,
    /// Largest WebSocket frame payload accepted.
    pub max_frame_size: u64,
    /// Largest WebSocket message accepted, over all its fragments.
    pub max_message_size: u64,
    /// Opening handshake limits, subprotocols and origin allowlist, and permessage-deflate's
    /// offer (`handshake.deflate`; `None`: compression off).
    pub handshake: HandshakeConfig,
    /// How sessions that agreed to permessage-deflate are sent compressed messages.
    pub compression: crate::server::compress::CompressionConfig,
    /// The SockJS endpoint (HTTP fallback for clients without WebSocket) on the WebSocket
    /// listener; `None`: off.
    pub sockjs: Option<crate::sockjs::SockjsConfig>,
    /// The admin API and web console (`None`: off).
    pub admin: Option<AdminConfig>,
    /// A handshake not complete within this is closed.
    pub handshake_timeout: Duration,
    /// After a Close is sent, how long to wait for the peer's Close or EOF.
    pub close_timeout: Duration,
    /// On shutdown, how long pending output may take to flush.
    pub shutdown_timeout: Duration,
    /// Size of each pooled read buffer (at least 1 KiB). WebSocket frames up to this size are
    /// parsed in place; larger ones are streamed into a per-message buffer.
    pub read_buffer_size: usize,
    /// Pooled buffers kept free per reactor.
    pub pool_buffers: usize,
    /// Bytes read from one connection per readiness event before others get a turn.
    pub read_budget: usize,
    /// Outbound bytes queued for one connection: an echo connection over it stops being read
    /// (backpressure); a STOMP subscriber over it is a slow consumer and is closed.
    pub max_outbound: usize,
    /// STOMP frame limits (header count, header line, body).
    pub stomp_limits: Limits,
    /// STOMP session settings (heart-beats, subscriptions per session).
    pub session: SessionConfig,
    /// A client silent for this many times its negotiated heart-beat interval is closed.
    pub heartbeat_grace: u32,
    /// Queue bounds and overflow policy.
    pub queues: QueueConfig,
    /// Slow-consumer policy (see `max_outbound`).
    pub slow_consumer: SlowConsumer,
    /// Application and user destinations (set by [`crate::BrokerBuilder`]).
    pub app: Option<Arc<AppConfig>>,
    /// TLS on the WebSocket listener (`wss://`) and/or the TCP listener.
    pub tls: Option<TlsConfig>,
    /// Per-user read/write rules on destinations; `None`: everything is allowed.
    pub acl: Option<Arc<AclHandle>>,
    /// Threads verifying passwords (argon2), off the reactors.
    pub auth_workers: usize,
    /// Password checks one source address may have queued or running (0: no bound); past it
    /// its logins are refused with ERROR at once.
    pub auth_pending_per_ip: usize,
    /// Memory (bytes) above which connections that publish are not read from until it falls
    /// (0: no mark). Default: 40% of the machine's memory.
    pub memory_high_watermark: usize,
    /// Cluster mode: join other nodes through NATS (`None`: standalone).
    pub cluster: Option<crate::cluster::ClusterConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 61614))),
            tcp_listen: Some(SocketAddr::from(([127, 0, 0, 1], 61613))),
            // The binary listens on 127.0.0.1:9100 by default; embedded servers opt in.
            metrics_listen: None,
            max_connections: 1_000_000,
            // A public broker: one address (a NAT, an attacker) cannot take every slot.
            max_connections_per_ip: 1000,
            reactors: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            echo: false,
            // A stomp.max_body (4 MiB) body and up to 1 MiB of headers in one frame.
            max_frame_size: 5 * 1024 * 1024,
            max_message_size: 5 * 1024 * 1024,
            handshake: HandshakeConfig::default(),
            compression: Default::default(),
            sockjs: Some(Default::default()),
            admin: None,
            handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(5),
            read_buffer_size: 16 * 1024,
            // 1 MiB of 16 KiB buffers a reactor keeps between bursts: enough for the
            // connections busy at once in a turn; past it buffers are allocated and freed. (256
            // kept 4 MiB per reactor: 400 B per session at 10,000 idle sessions, issue 21.)
            pool_buffers: 64,
            read_budget: 256 * 1024,
            max_outbound: 4 * 1024 * 1024,
            stomp_limits: Limits::default(),
            session: SessionConfig::default(),
            heartbeat_grace: 2,
            queues: QueueConfig::default(),
            slow_consumer: SlowConsumer::Close,
            app: None,
            tls: None,
            acl: None,
            auth_workers: 2,
            auth_pending_per_ip: 4,
            memory_high_watermark: crate::memory::default_high_watermark(),
            cluster: None,
        }
    }
}

/// The admin API and web console: on its own listener, or on the metrics listener.
#[derive(Clone, Default)]
pub struct AdminConfig {
    /// Its own listener (`None`: served on the metrics listener).
    pub listen: Option<SocketAddr>,
    /// Its own listener speaks TLS with this (HTTP Basic is accepted only then).
    pub tls: Option<Arc<ServerConfig>>,
    /// The bearer token that opens the API (`None`: none does).
    pub token: Option<String>,
    /// Users file: users with the `admin` role open the API with HTTP Basic (over TLS).
    pub users: Option<Arc<crate::auth::PasswordAuth>>,
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("listen", &self.listen)
            .field("tls", &self.tls.is_some())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("users", &self.users.is_some())
            .finish()
    }
}

/// TLS for the listeners.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub server: Arc<ServerConfig>,
    /// `wss://` on the WebSocket listener.
    pub ws: bool,
    /// STOMP over TLS on the TCP listener.
    pub tcp: bool,
}

impl TlsConfig {
    /// A server configuration from a PEM certificate chain and a PEM private key.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .map_err(|e| format!("{}: {e}", cert.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: {e}", cert.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: no certificate found", cert.display()));
        }
        let key =
            PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
        Self::from_der(certs, key)
    }

    /// A server configuration from DER certificates and key (tests, embedding).
    pub fn from_der(
        certs: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Arc<ServerConfig>, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let cfg = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| e.to_string())?;
        Ok(Arc::new(cfg))
    }
}
