//! The command line: every option of the file as a flag, each naming its key.

use std::path::PathBuf;

use clap::Parser;

use super::{
    Dur, Listener, LogFilter, LogFormat, QueueOverflow, QueueStoreKind, Settings,
    SlowConsumerPolicy,
};

/// A STOMP 1.0/1.1/1.2 broker over WebSocket and TCP.
///
/// Options come from the defaults, then `--config FILE` (TOML), then `RUST_LOG` (log filter
/// only), then these flags. Each flag names its key in the file. `--print-config` prints the
/// effective configuration as a file.
#[derive(Debug, Default, Clone, Parser)]
#[command(name = "stompbox", version = crate::VERSION, about, long_about = None)]
pub struct Cli {
    /// Read options from this TOML file (flags override it).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the effective configuration as TOML (usable with --config) and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Log filter: error, warn, info, debug, trace or off, optionally with TARGET=LEVEL
    /// directives; overrides RUST_LOG [file: log_level]
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<LogFilter>,
    /// Log lines as text or JSON (one object per line) [file: log_format]
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Reactor threads, 1 to 64 (default: available cores) [file: reactors]
    #[arg(long, value_name = "N")]
    pub reactors: Option<usize>,
    /// Serve a WebSocket echo endpoint at /echo [file: echo]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true")]
    pub echo: Option<bool>,

    /// WebSocket listener (STOMP at /ws), or off [file: listen.websocket]
    #[arg(long, value_name = "ADDR", help_heading = "Listeners")]
    pub listen: Option<Listener>,
    /// STOMP over TCP listener, or off [file: listen.tcp]
    #[arg(long, value_name = "ADDR", help_heading = "Listeners")]
    pub tcp_listen: Option<Listener>,
    /// Prometheus /metrics and /healthz listener, or off [file: listen.metrics]
    #[arg(long, value_name = "ADDR", help_heading = "Listeners")]
    pub metrics_listen: Option<Listener>,
    /// Admin API and console listener, or off to serve them on the metrics listener
    /// [file: listen.admin]
    #[arg(long, value_name = "ADDR", help_heading = "Listeners")]
    pub admin_listen: Option<Listener>,
    /// Same as --listen off
    #[arg(long, conflicts_with = "listen", help_heading = "Listeners")]
    pub no_ws: bool,
    /// Same as --tcp-listen off
    #[arg(long, conflicts_with = "tcp_listen", help_heading = "Listeners")]
    pub no_tcp: bool,
    /// Same as --metrics-listen off
    #[arg(long, conflicts_with = "metrics_listen", help_heading = "Listeners")]
    pub no_metrics: bool,

    /// Connections open at once, over all listeners [file: connections.max]
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub max_connections: Option<usize>,
    /// Connections open at once from one IP, 0: no limit [file: connections.max_per_ip]
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub max_connections_per_ip: Option<usize>,
    /// Largest WebSocket frame payload, bytes [file: websocket.max_frame_size]
    #[arg(long, value_name = "BYTES", help_heading = "Limits")]
    pub max_frame_size: Option<u64>,
    /// Largest WebSocket message, bytes [file: websocket.max_message_size]
    #[arg(long, value_name = "BYTES", help_heading = "Limits")]
    pub max_message_size: Option<u64>,
    /// Largest opening-handshake request, bytes [file: websocket.max_handshake_size]
    #[arg(long, value_name = "BYTES", help_heading = "Limits")]
    pub max_handshake_size: Option<usize>,
    /// Headers per STOMP frame [file: stomp.max_headers]
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub max_headers: Option<usize>,
    /// Longest STOMP command or header line, bytes [file: stomp.max_header_line]
    #[arg(long, value_name = "BYTES", help_heading = "Limits")]
    pub max_header_line: Option<usize>,
    /// Largest STOMP body, bytes [file: stomp.max_body]
    #[arg(long, value_name = "BYTES", help_heading = "Limits")]
    pub max_body: Option<usize>,
    /// Outbound bytes queued per connection [file: outbound.max_bytes]
    #[arg(long, value_name = "BYTES", help_heading = "Limits")]
    pub max_outbound: Option<usize>,
    /// Past --max-outbound: close (ERROR "slow consumer") or drop its new topic messages
    /// [file: outbound.slow_consumer]
    #[arg(long, value_name = "POLICY", help_heading = "Limits")]
    pub slow_consumer: Option<SlowConsumerPolicy>,
    /// Messages waiting in one queue [file: queues.max_messages]
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub queue_max_messages: Option<usize>,
    /// Bytes of the messages waiting in one queue [file: queues.max_bytes]
    #[arg(long, value_name = "BYTES", help_heading = "Limits")]
    pub queue_max_bytes: Option<usize>,
    /// Queues in the broker; a SEND making one more is refused [file: queues.max_queues]
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub max_queues: Option<usize>,
    /// Join a cluster through NATS: seed URLs (repeatable or comma-separated)
    /// [file: cluster.nats]
    #[arg(
        long = "cluster",
        value_name = "NATS_URL",
        value_delimiter = ',',
        help_heading = "Cluster"
    )]
    pub cluster: Option<Vec<String>>,
    /// This node's name in the cluster (default: random) [file: cluster.node_name]
    #[arg(long, value_name = "NAME", help_heading = "Cluster")]
    pub node_name: Option<String>,
    /// Prefix of the NATS subjects [file: cluster.subject_prefix]
    #[arg(long, value_name = "PREFIX", help_heading = "Cluster")]
    pub cluster_subject_prefix: Option<String>,
    /// NATS user (with --cluster-password) [file: cluster.user]
    #[arg(long, value_name = "USER", help_heading = "Cluster")]
    pub cluster_user: Option<String>,
    /// NATS password [file: cluster.password]
    #[arg(long, value_name = "PASSWORD", help_heading = "Cluster")]
    pub cluster_password: Option<String>,
    /// NATS token [file: cluster.token]
    #[arg(long, value_name = "TOKEN", help_heading = "Cluster")]
    pub cluster_token: Option<String>,
    /// NATS .creds file [file: cluster.credentials]
    #[arg(long, value_name = "FILE", help_heading = "Cluster")]
    pub cluster_credentials: Option<PathBuf>,
    /// CA certificate to trust for NATS's TLS, PEM [file: cluster.tls_ca]
    #[arg(long, value_name = "FILE", help_heading = "Cluster")]
    pub cluster_tls_ca: Option<PathBuf>,
    /// Client certificate for NATS's TLS, PEM [file: cluster.tls_cert]
    #[arg(long, value_name = "FILE", help_heading = "Cluster")]
    pub cluster_tls_cert: Option<PathBuf>,
    /// Client key for NATS's TLS, PEM [file: cluster.tls_key]
    #[arg(long, value_name = "FILE", help_heading = "Cluster")]
    pub cluster_tls_key: Option<PathBuf>,
    /// Refuse a NATS connection without TLS [file: cluster.require_tls]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", help_heading = "Cluster")]
    pub cluster_require_tls: Option<bool>,
    /// Messages waiting to cross each way; past it topic messages are dropped and counted
    /// [file: cluster.max_pending]
    #[arg(long, value_name = "N", help_heading = "Cluster")]
    pub cluster_max_pending: Option<usize>,
    /// Bytes of the messages waiting to cross each way [file: cluster.max_pending_bytes]
    #[arg(long, value_name = "BYTES", help_heading = "Cluster")]
    pub cluster_max_pending_bytes: Option<usize>,
    /// Memory in use above which publishers are not read from; 0: no mark
    /// [file: memory.high_watermark]
    #[arg(long, value_name = "BYTES", help_heading = "Limits")]
    pub memory_high_watermark: Option<u64>,
    /// Where queued messages live: memory, or jetstream (durable; needs --cluster)
    /// [file: queues.store]
    #[arg(long, value_name = "STORE", help_heading = "Limits")]
    pub queue_store: Option<QueueStoreKind>,
    /// JetStream: the queue stream's replicas [file: queues.replicas]
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub queue_replicas: Option<usize>,
    /// JetStream: unacknowledged this long, a message is handed out again
    /// [file: queues.ack_wait]
    #[arg(long, value_name = "DURATION", help_heading = "Limits")]
    pub queue_ack_wait: Option<Dur>,
    /// Queues /metrics reports by name at most (the deepest) [file: queues.metrics_labels]
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub queue_metrics_labels: Option<usize>,
    /// A full queue: reject the SEND or drop its oldest message [file: queues.overflow]
    #[arg(long, value_name = "POLICY", help_heading = "Limits")]
    pub queue_overflow: Option<QueueOverflow>,

    /// WebSocket subprotocols in order of preference, comma-separated
    /// [file: websocket.subprotocols]
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        help_heading = "WebSocket"
    )]
    pub subprotocols: Option<Vec<String>>,
    /// Allowed Origin (repeatable or comma-separated; none: any origin)
    /// [file: websocket.allowed_origins]
    #[arg(
        long = "allow-origin",
        value_name = "ORIGIN",
        value_delimiter = ',',
        help_heading = "WebSocket"
    )]
    pub allow_origin: Option<Vec<String>>,
    /// Offer permessage-deflate (RFC 7692) [file: websocket.compression.enabled]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", help_heading = "WebSocket")]
    pub compression: Option<bool>,
    /// Messages smaller than this go uncompressed, bytes [file: websocket.compression.min_size]
    #[arg(long, value_name = "BYTES", help_heading = "WebSocket")]
    pub compression_min_size: Option<usize>,
    /// DEFLATE level, 0-9 [file: websocket.compression.level]
    #[arg(long, value_name = "N", help_heading = "WebSocket")]
    pub compression_level: Option<u32>,
    /// Largest window the server compresses with, 9-15 bits
    /// [file: websocket.compression.server_max_window_bits]
    #[arg(long, value_name = "BITS", help_heading = "WebSocket")]
    pub compression_server_max_window_bits: Option<u8>,
    /// Largest window clients are asked to use, 8-15 bits
    /// [file: websocket.compression.client_max_window_bits]
    #[arg(long, value_name = "BITS", help_heading = "WebSocket")]
    pub compression_client_max_window_bits: Option<u8>,
    /// Announce that the server keeps no context between messages
    /// [file: websocket.compression.server_no_context_takeover]
    #[arg(long, value_name = "BOOL", help_heading = "WebSocket")]
    pub compression_server_no_context_takeover: Option<bool>,
    /// Ask clients to compress each message on its own
    /// [file: websocket.compression.client_no_context_takeover]
    #[arg(long, value_name = "BOOL", help_heading = "WebSocket")]
    pub compression_client_no_context_takeover: Option<bool>,

    /// Serve the admin API (/api/) and web console (/console/) [file: admin.enabled]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", help_heading = "Admin")]
    pub admin: Option<bool>,
    /// Bearer token that opens the admin API (prefer STOMPBOX_ADMIN_TOKEN or the file: a
    /// flag shows in the process list) [file: admin.token]
    #[arg(long, value_name = "TOKEN", help_heading = "Admin")]
    pub admin_token: Option<String>,

    /// Serve SockJS on the WebSocket listener [file: sockjs.enabled]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", help_heading = "SockJS")]
    pub sockjs: Option<bool>,
    /// SockJS path prefix, e.g. /sockjs [file: sockjs.prefix]
    #[arg(long, value_name = "PATH", help_heading = "SockJS")]
    pub sockjs_prefix: Option<String>,
    /// Heart-beat frame on a silent receiving request, e.g. 25s [file: sockjs.heartbeat]
    #[arg(long, value_name = "DURATION", help_heading = "SockJS")]
    pub sockjs_heartbeat: Option<Dur>,
    /// A session with no receiving request this long is closed [file: sockjs.disconnect_delay]
    #[arg(long, value_name = "DURATION", help_heading = "SockJS")]
    pub sockjs_disconnect_delay: Option<Dur>,
    /// A streaming response ends after this many bytes [file: sockjs.response_limit]
    #[arg(long, value_name = "BYTES", help_heading = "SockJS")]
    pub sockjs_response_limit: Option<usize>,
    /// Largest xhr_send body, bytes [file: sockjs.max_body]
    #[arg(long, value_name = "BYTES", help_heading = "SockJS")]
    pub sockjs_max_body: Option<usize>,
    /// SockJS sessions open at once [file: sockjs.max_sessions]
    #[arg(long, value_name = "N", help_heading = "SockJS")]
    pub sockjs_max_sessions: Option<usize>,
    /// Offer SockJS's websocket transport [file: sockjs.websocket]
    #[arg(long, value_name = "BOOL", help_heading = "SockJS")]
    pub sockjs_websocket: Option<bool>,
    /// Set a JSESSIONID cookie for sticky load balancers [file: sockjs.cookie_needed]
    #[arg(long, value_name = "BOOL", help_heading = "SockJS")]
    pub sockjs_cookie_needed: Option<bool>,
    /// Where the iframe page loads sockjs-client from [file: sockjs.client_url]
    #[arg(long, value_name = "URL", help_heading = "SockJS")]
    pub sockjs_client_url: Option<String>,

    /// Heart-beat the server can send, e.g. 10s; 0: never [file: heartbeat.send]
    #[arg(
        long,
        value_name = "DURATION",
        help_heading = "Heart-beats and timeouts"
    )]
    pub heartbeat_send: Option<Dur>,
    /// Heart-beat the server wants to receive; 0: never [file: heartbeat.receive]
    #[arg(
        long,
        value_name = "DURATION",
        help_heading = "Heart-beats and timeouts"
    )]
    pub heartbeat_receive: Option<Dur>,
    /// Shortest heart-beat interval agreed to [file: heartbeat.min]
    #[arg(
        long,
        value_name = "DURATION",
        help_heading = "Heart-beats and timeouts"
    )]
    pub heartbeat_min: Option<Dur>,
    /// Silent heart-beat intervals before a client is closed [file: heartbeat.grace]
    #[arg(long, value_name = "N", help_heading = "Heart-beats and timeouts")]
    pub heartbeat_grace: Option<u32>,
    /// To complete the handshake, then to send CONNECT [file: timeouts.handshake]
    #[arg(
        long,
        value_name = "DURATION",
        help_heading = "Heart-beats and timeouts"
    )]
    pub handshake_timeout: Option<Dur>,
    /// After a close is sent, to wait for the peer's [file: timeouts.close]
    #[arg(
        long,
        value_name = "DURATION",
        help_heading = "Heart-beats and timeouts"
    )]
    pub close_timeout: Option<Dur>,
    /// On SIGTERM/SIGINT, for pending output to flush [file: timeouts.shutdown]
    #[arg(
        long,
        value_name = "DURATION",
        help_heading = "Heart-beats and timeouts"
    )]
    pub shutdown_timeout: Option<Dur>,

    /// Subscriptions per session [file: session.max_subscriptions]
    #[arg(long, value_name = "N", help_heading = "Sessions")]
    pub max_subscriptions: Option<usize>,
    /// Words in a wildcard subscription [file: session.max_pattern_words]
    #[arg(long, value_name = "N", help_heading = "Sessions")]
    pub max_pattern_words: Option<usize>,
    /// Queue prefetch without prefetch-count [file: session.default_prefetch]
    #[arg(long, value_name = "N", help_heading = "Sessions")]
    pub default_prefetch: Option<usize>,
    /// Largest prefetch-count [file: session.max_prefetch]
    #[arg(long, value_name = "N", help_heading = "Sessions")]
    pub max_prefetch: Option<usize>,
    /// Open transactions per session [file: session.max_transactions]
    #[arg(long, value_name = "N", help_heading = "Sessions")]
    pub max_transactions: Option<usize>,
    /// Frames buffered per transaction [file: session.max_tx_frames]
    #[arg(long, value_name = "N", help_heading = "Sessions")]
    pub max_tx_frames: Option<usize>,
    /// Bytes buffered per transaction [file: session.max_tx_bytes]
    #[arg(long, value_name = "BYTES", help_heading = "Sessions")]
    pub max_tx_bytes: Option<usize>,
    /// The server header of CONNECTED [file: session.server_name]
    #[arg(long, value_name = "NAME", help_heading = "Sessions")]
    pub server_name: Option<String>,

    /// Pooled read buffer size, bytes [file: buffers.read_buffer_size]
    #[arg(long, value_name = "BYTES", help_heading = "Buffers")]
    pub read_buffer_size: Option<usize>,
    /// Free read buffers kept per reactor [file: buffers.pool_buffers]
    #[arg(long, value_name = "N", help_heading = "Buffers")]
    pub pool_buffers: Option<usize>,
    /// Bytes read from one connection per readiness event [file: buffers.read_budget]
    #[arg(long, value_name = "BYTES", help_heading = "Buffers")]
    pub read_budget: Option<usize>,

    /// TLS certificate chain, PEM [file: tls.cert]
    #[arg(long, value_name = "FILE", help_heading = "TLS")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key, PEM [file: tls.key]
    #[arg(long, value_name = "FILE", help_heading = "TLS")]
    pub tls_key: Option<PathBuf>,
    /// wss:// on the WebSocket listener [file: tls.websocket]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", help_heading = "TLS")]
    pub tls_ws: Option<bool>,
    /// STOMP over TLS on the TCP listener [file: tls.tcp]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", help_heading = "TLS")]
    pub tls_tcp: Option<bool>,
    /// HTTPS on the admin listener [file: tls.admin]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", help_heading = "TLS")]
    pub tls_admin: Option<bool>,

    /// Users file, name:argon2id-hash per line; none: any login [file: auth.users_file]
    #[arg(long, value_name = "FILE", help_heading = "Security")]
    pub users_file: Option<PathBuf>,
    /// With a users file, also accept CONNECT without a login [file: auth.anonymous]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", help_heading = "Security")]
    pub anonymous: Option<bool>,
    /// ACL file, `<user|anonymous|*> <read|write|readwrite> <pattern>` per line
    /// [file: auth.acl_file]
    #[arg(long, value_name = "FILE", help_heading = "Security")]
    pub acl_file: Option<PathBuf>,
    /// Threads verifying passwords [file: auth.workers]
    #[arg(long, value_name = "N", help_heading = "Security")]
    pub auth_workers: Option<usize>,
    /// Password checks queued or running per source address; 0: no bound
    /// [file: auth.max_pending_per_ip]
    #[arg(long, value_name = "N", help_heading = "Security")]
    pub auth_max_pending_per_ip: Option<usize>,
    /// The most memory a users-file hash may ask argon2 for, KiB [file: auth.max_hash_memory]
    #[arg(long, value_name = "KIB", help_heading = "Security")]
    pub max_hash_memory: Option<u32>,
    /// Read a passcode from stdin, print its argon2id hash for the users file, and exit
    #[arg(long, help_heading = "Security")]
    pub hash_password: bool,
}

fn set<T>(slot: &mut T, flag: Option<T>) {
    if let Some(v) = flag {
        *slot = v;
    }
}

impl Cli {
    /// Apply the flags given over `s` (a flag not given leaves its option alone).
    pub fn apply(&self, s: &mut Settings) {
        let c = self.clone();
        set(&mut s.log_level, c.log_level);
        set(&mut s.log_format, c.log_format);
        set(&mut s.reactors, c.reactors);
        let non_empty = |v: Vec<String>| v.into_iter().filter(|x| !x.is_empty()).collect();
        set(&mut s.echo, c.echo);
        set(&mut s.listen.websocket, c.listen);
        set(&mut s.listen.tcp, c.tcp_listen);
        set(&mut s.listen.metrics, c.metrics_listen);
        set(&mut s.listen.admin, c.admin_listen);
        set(&mut s.admin.enabled, c.admin);
        set(&mut s.admin.token, c.admin_token);
        set(&mut s.listen.websocket, c.no_ws.then_some(Listener::Off));
        set(&mut s.listen.tcp, c.no_tcp.then_some(Listener::Off));
        set(&mut s.listen.metrics, c.no_metrics.then_some(Listener::Off));
        set(&mut s.connections.max, c.max_connections);
        set(&mut s.connections.max_per_ip, c.max_connections_per_ip);
        set(&mut s.websocket.max_frame_size, c.max_frame_size);
        set(&mut s.websocket.max_message_size, c.max_message_size);
        set(&mut s.websocket.max_handshake_size, c.max_handshake_size);
        let z = &mut s.websocket.compression;
        set(&mut z.enabled, c.compression);
        set(&mut z.min_size, c.compression_min_size);
        set(&mut z.level, c.compression_level);
        set(
            &mut z.server_max_window_bits,
            c.compression_server_max_window_bits,
        );
        set(
            &mut z.client_max_window_bits,
            c.compression_client_max_window_bits,
        );
        set(
            &mut z.server_no_context_takeover,
            c.compression_server_no_context_takeover,
        );
        set(
            &mut z.client_no_context_takeover,
            c.compression_client_no_context_takeover,
        );
        let j = &mut s.sockjs;
        set(&mut j.enabled, c.sockjs);
        set(&mut j.prefix, c.sockjs_prefix);
        set(&mut j.heartbeat, c.sockjs_heartbeat);
        set(&mut j.disconnect_delay, c.sockjs_disconnect_delay);
        set(&mut j.response_limit, c.sockjs_response_limit);
        set(&mut j.max_body, c.sockjs_max_body);
        set(&mut j.max_sessions, c.sockjs_max_sessions);
        set(&mut j.websocket, c.sockjs_websocket);
        set(&mut j.cookie_needed, c.sockjs_cookie_needed);
        set(&mut j.client_url, c.sockjs_client_url);
        set(&mut s.stomp.max_headers, c.max_headers);
        set(&mut s.stomp.max_header_line, c.max_header_line);
        set(&mut s.stomp.max_body, c.max_body);
        set(&mut s.outbound.max_bytes, c.max_outbound);
        set(&mut s.outbound.slow_consumer, c.slow_consumer);
        set(&mut s.queues.max_messages, c.queue_max_messages);
        set(&mut s.queues.max_bytes, c.queue_max_bytes);
        set(&mut s.queues.max_queues, c.max_queues);
        set(&mut s.memory.high_watermark, c.memory_high_watermark);
        set(&mut s.cluster.nats, c.cluster.map(non_empty));
        set(&mut s.cluster.node_name, c.node_name);
        set(&mut s.cluster.subject_prefix, c.cluster_subject_prefix);
        set(&mut s.cluster.user, c.cluster_user);
        set(&mut s.cluster.password, c.cluster_password);
        set(&mut s.cluster.token, c.cluster_token);
        set(&mut s.cluster.credentials, c.cluster_credentials);
        set(&mut s.cluster.tls_ca, c.cluster_tls_ca);
        set(&mut s.cluster.tls_cert, c.cluster_tls_cert);
        set(&mut s.cluster.tls_key, c.cluster_tls_key);
        set(&mut s.cluster.require_tls, c.cluster_require_tls);
        set(&mut s.cluster.max_pending, c.cluster_max_pending);
        set(
            &mut s.cluster.max_pending_bytes,
            c.cluster_max_pending_bytes,
        );
        set(&mut s.queues.overflow, c.queue_overflow);
        set(&mut s.queues.store, c.queue_store);
        set(&mut s.queues.replicas, c.queue_replicas);
        set(&mut s.queues.ack_wait, c.queue_ack_wait);
        set(&mut s.queues.metrics_labels, c.queue_metrics_labels);
        set(&mut s.websocket.subprotocols, c.subprotocols.map(non_empty));
        set(
            &mut s.websocket.allowed_origins,
            c.allow_origin.map(non_empty),
        );
        set(&mut s.heartbeat.send, c.heartbeat_send);
        set(&mut s.heartbeat.receive, c.heartbeat_receive);
        set(&mut s.heartbeat.min, c.heartbeat_min);
        set(&mut s.heartbeat.grace, c.heartbeat_grace);
        set(&mut s.timeouts.handshake, c.handshake_timeout);
        set(&mut s.timeouts.close, c.close_timeout);
        set(&mut s.timeouts.shutdown, c.shutdown_timeout);
        set(&mut s.session.max_subscriptions, c.max_subscriptions);
        set(&mut s.session.max_pattern_words, c.max_pattern_words);
        set(&mut s.session.default_prefetch, c.default_prefetch);
        set(&mut s.session.max_prefetch, c.max_prefetch);
        set(&mut s.session.max_transactions, c.max_transactions);
        set(&mut s.session.max_tx_frames, c.max_tx_frames);
        set(&mut s.session.max_tx_bytes, c.max_tx_bytes);
        set(&mut s.session.server_name, c.server_name);
        set(&mut s.buffers.read_buffer_size, c.read_buffer_size);
        set(&mut s.buffers.pool_buffers, c.pool_buffers);
        set(&mut s.buffers.read_budget, c.read_budget);
        set(&mut s.tls.cert, c.tls_cert);
        set(&mut s.tls.key, c.tls_key);
        set(&mut s.tls.websocket, c.tls_ws);
        set(&mut s.tls.tcp, c.tls_tcp);
        set(&mut s.tls.admin, c.tls_admin);
        set(&mut s.auth.users_file, c.users_file);
        set(&mut s.auth.anonymous, c.anonymous);
        set(&mut s.auth.acl_file, c.acl_file);
        set(&mut s.auth.workers, c.auth_workers);
        set(&mut s.auth.max_pending_per_ip, c.auth_max_pending_per_ip);
        set(&mut s.auth.max_hash_memory, c.max_hash_memory);
    }
}
