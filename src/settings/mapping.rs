//! Settings to and from the server's [`Config`]: every configurable field has its option here
//! (a test reads `Config`'s fields and fails for one that is neither mapped nor code-only).

use super::*;

impl Settings {
    /// The settings equivalent to a `Config` (durations truncated to milliseconds; an empty
    /// origin allowlist means any origin; TLS keeps which listeners use it, but no file path
    /// (certificate, users, ACL) can be recovered from a `Config`).
    pub fn from_config(cfg: &Config) -> Settings {
        let Config {
            listen,
            tcp_listen,
            metrics_listen,
            max_connections,
            max_connections_per_ip,
            reactors,
            echo,
            max_frame_size,
            max_message_size,
            handshake,
            compression,
            handshake_timeout,
            close_timeout,
            shutdown_timeout,
            read_buffer_size,
            pool_buffers,
            read_budget,
            max_outbound,
            stomp_limits,
            session,
            heartbeat_grace,
            queues,
            slow_consumer,
            tls,
            auth_workers,
            auth_pending_per_ip,
            memory_high_watermark,
            cluster,
            sockjs,
            admin,
            ..
        } = cfg;
        let cluster_default = crate::cluster::ClusterConfig {
            node_name: String::new(),
            ..Default::default()
        };
        let c = cluster.as_ref().unwrap_or(&cluster_default);
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        let path = |v: &Option<PathBuf>| v.clone().unwrap_or_default();
        let HandshakeConfig {
            max_request_bytes,
            protocols,
            allowed_origins,
            deflate,
            ..
        } = handshake;
        let d = deflate.unwrap_or_default();
        let Limits {
            max_headers,
            max_header_line,
            max_body,
            ..
        } = stomp_limits;
        let SessionConfig {
            heartbeat,
            min_heartbeat,
            max_subscriptions,
            max_pattern_words,
            default_prefetch,
            max_prefetch,
            max_transactions,
            max_tx_frames,
            max_tx_bytes,
            server_name,
            ..
        } = session;
        let QueueConfig {
            max_messages,
            max_bytes: queue_max_bytes,
            max_queues,
            overflow,
            store,
            replicas,
            ack_wait,
            metrics_labels,
            ..
        } = queues;
        Settings {
            log_level: LogFilter::default(),
            log_format: LogFormat::default(),
            reactors: *reactors,
            echo: *echo,
            listen: ListenSettings {
                websocket: Listener::from_addr(*listen),
                tcp: Listener::from_addr(*tcp_listen),
                metrics: Listener::from_addr(*metrics_listen),
                admin: Listener::from_addr(admin.as_ref().and_then(|a| a.listen)),
            },
            connections: ConnectionSettings {
                max: *max_connections,
                max_per_ip: *max_connections_per_ip,
            },
            websocket: WebSocketSettings {
                max_frame_size: *max_frame_size,
                max_message_size: *max_message_size,
                max_handshake_size: *max_request_bytes,
                subprotocols: protocols.clone(),
                allowed_origins: allowed_origins.clone().unwrap_or_default(),
                compression: CompressionSettings {
                    enabled: deflate.is_some(),
                    min_size: compression.min_size,
                    level: compression.level,
                    server_max_window_bits: d.server_max_window_bits,
                    client_max_window_bits: d.client_max_window_bits,
                    server_no_context_takeover: d.server_no_context_takeover,
                    client_no_context_takeover: d.client_no_context_takeover,
                },
            },
            stomp: StompSettings {
                max_headers: *max_headers,
                max_header_line: *max_header_line,
                max_body: *max_body,
            },
            heartbeat: HeartbeatSettings {
                send: Dur::from_millis(heartbeat.0),
                receive: Dur::from_millis(heartbeat.1),
                min: Dur::from_millis(*min_heartbeat),
                grace: *heartbeat_grace,
            },
            session: SessionSettings {
                max_subscriptions: *max_subscriptions,
                max_pattern_words: *max_pattern_words,
                default_prefetch: *default_prefetch,
                max_prefetch: *max_prefetch,
                max_transactions: *max_transactions,
                max_tx_frames: *max_tx_frames,
                max_tx_bytes: *max_tx_bytes,
                server_name: server_name.clone(),
            },
            outbound: OutboundSettings {
                max_bytes: *max_outbound,
                slow_consumer: match slow_consumer {
                    SlowConsumer::Close => SlowConsumerPolicy::Close,
                    SlowConsumer::Drop => SlowConsumerPolicy::Drop,
                },
            },
            queues: QueueSettings {
                max_messages: *max_messages,
                max_bytes: *queue_max_bytes,
                max_queues: *max_queues,
                overflow: match overflow {
                    Overflow::Reject => QueueOverflow::Reject,
                    Overflow::DropOldest => QueueOverflow::DropOldest,
                },
                store: match store {
                    QueueStore::Memory => QueueStoreKind::Memory,
                    QueueStore::JetStream => QueueStoreKind::Jetstream,
                },
                replicas: *replicas,
                ack_wait: Dur::from_duration(*ack_wait),
                metrics_labels: *metrics_labels,
            },
            memory: MemorySettings {
                high_watermark: *memory_high_watermark as u64,
            },
            buffers: BufferSettings {
                read_buffer_size: *read_buffer_size,
                pool_buffers: *pool_buffers,
                read_budget: *read_budget,
            },
            timeouts: TimeoutSettings {
                handshake: Dur::from_duration(*handshake_timeout),
                close: Dur::from_duration(*close_timeout),
                shutdown: Dur::from_duration(*shutdown_timeout),
            },
            tls: TlsSettings {
                cert: PathBuf::new(),
                key: PathBuf::new(),
                websocket: tls.as_ref().is_some_and(|t| t.ws),
                tcp: tls.as_ref().is_some_and(|t| t.tcp),
                admin: admin.as_ref().is_some_and(|a| a.tls.is_some()),
            },
            admin: AdminSettings {
                enabled: admin.is_some(),
                token: admin
                    .as_ref()
                    .and_then(|a| a.token.clone())
                    .unwrap_or_default(),
            },
            auth: AuthSettings {
                users_file: PathBuf::new(),
                anonymous: false,
                acl_file: PathBuf::new(),
                workers: *auth_workers,
                max_pending_per_ip: *auth_pending_per_ip,
                max_hash_memory: crate::auth::DEFAULT_MAX_HASH_MEMORY_KIB,
            },
            sockjs: {
                let j = sockjs.clone().unwrap_or_default();
                SockjsSettings {
                    enabled: sockjs.is_some(),
                    prefix: j.prefix,
                    heartbeat: Dur::from_duration(j.heartbeat),
                    disconnect_delay: Dur::from_duration(j.disconnect_delay),
                    response_limit: j.response_limit,
                    max_body: j.max_body,
                    max_sessions: j.max_sessions,
                    websocket: j.websocket,
                    cookie_needed: j.cookie_needed,
                    client_url: j.client_url,
                }
            },
            cluster: ClusterSettings {
                nats: c.servers.clone(),
                node_name: c.node_name.clone(),
                subject_prefix: c.subject_prefix.clone(),
                user: text(&c.user),
                password: text(&c.password),
                token: text(&c.token),
                credentials: path(&c.credentials),
                tls_ca: path(&c.tls_ca),
                tls_cert: path(&c.tls_cert),
                tls_key: path(&c.tls_key),
                require_tls: c.require_tls,
                max_pending: c.max_pending,
                max_pending_bytes: c.max_pending_bytes,
            },
        }
    }

    /// The cluster's settings, if any seed URL is given.
    fn cluster_config(&self) -> Option<crate::cluster::ClusterConfig> {
        let c = &self.cluster;
        if c.nats.is_empty() {
            return None;
        }
        let text = |v: &str| (!v.is_empty()).then(|| v.to_string());
        let path = |v: &PathBuf| (!v.as_os_str().is_empty()).then(|| v.clone());
        let defaults = crate::cluster::ClusterConfig::default();
        Some(crate::cluster::ClusterConfig {
            servers: c.nats.clone(),
            node_name: text(&c.node_name).unwrap_or(defaults.node_name),
            subject_prefix: c.subject_prefix.clone(),
            user: text(&c.user),
            password: text(&c.password),
            token: text(&c.token),
            credentials: path(&c.credentials),
            tls_ca: path(&c.tls_ca),
            tls_cert: path(&c.tls_cert),
            tls_key: path(&c.tls_key),
            require_tls: c.require_tls,
            max_pending: c.max_pending,
            max_pending_bytes: c.max_pending_bytes,
        })
    }

    /// Check every option and read the files it names (TLS certificate, users, ACL), then
    /// build the server's [`Config`].
    pub fn to_config(&self) -> Result<Config, ConfigError> {
        self.build().map(|b| b.config)
    }

    /// [`Settings::to_config`], keeping a handle on the users file's authenticator. What no
    /// file can set (the embedding API's application routes) keeps its default.
    // Every configurable field is set below; `..default` covers only the code-only ones, so the
    // update is needless exactly when `Config` has none.
    #[allow(clippy::needless_update)]
    pub fn build(&self) -> Result<Built, ConfigError> {
        self.validate()?;
        let s = self;
        let tls = s.tls.load()?;
        let admin_tls = tls
            .as_ref()
            .filter(|_| s.tls.admin)
            .map(|t| Arc::clone(&t.server));
        let users = s.auth.load_users()?;
        let acl = s.auth.load_acl()?;
        let authenticator = match &users {
            Some(u) => Arc::clone(u) as Arc<dyn Authenticator>,
            None => SessionConfig::default().authenticator,
        };
        let config = Config {
            listen: s.listen.websocket.addr(),
            tcp_listen: s.listen.tcp.addr(),
            metrics_listen: s.listen.metrics.addr(),
            max_connections: s.connections.max,
            max_connections_per_ip: s.connections.max_per_ip,
            reactors: s.reactors,
            echo: s.echo,
            max_frame_size: s.websocket.max_frame_size,
            max_message_size: s.websocket.max_message_size,
            handshake: HandshakeConfig {
                max_request_bytes: s.websocket.max_handshake_size,
                protocols: s.websocket.subprotocols.clone(),
                allowed_origins: if s.websocket.allowed_origins.is_empty() {
                    None
                } else {
                    Some(s.websocket.allowed_origins.clone())
                },
                deflate: {
                    let c = &s.websocket.compression;
                    c.enabled.then_some(crate::ws::deflate::DeflateConfig {
                        server_max_window_bits: c.server_max_window_bits,
                        client_max_window_bits: c.client_max_window_bits,
                        server_no_context_takeover: c.server_no_context_takeover,
                        client_no_context_takeover: c.client_no_context_takeover,
                    })
                },
            },
            compression: crate::server::compress::CompressionConfig {
                level: s.websocket.compression.level,
                min_size: s.websocket.compression.min_size,
            },
            handshake_timeout: s.timeouts.handshake.get(),
            close_timeout: s.timeouts.close.get(),
            shutdown_timeout: s.timeouts.shutdown.get(),
            read_buffer_size: s.buffers.read_buffer_size,
            pool_buffers: s.buffers.pool_buffers,
            read_budget: s.buffers.read_budget,
            max_outbound: s.outbound.max_bytes,
            stomp_limits: Limits {
                max_headers: s.stomp.max_headers,
                max_header_line: s.stomp.max_header_line,
                max_body: s.stomp.max_body,
                ..Limits::default()
            },
            session: SessionConfig {
                authenticator,
                heartbeat: (s.heartbeat.send.millis(), s.heartbeat.receive.millis()),
                min_heartbeat: s.heartbeat.min.millis(),
                max_subscriptions: s.session.max_subscriptions,
                max_pattern_words: s.session.max_pattern_words,
                default_prefetch: s.session.default_prefetch,
                max_prefetch: s.session.max_prefetch,
                max_transactions: s.session.max_transactions,
                max_tx_frames: s.session.max_tx_frames,
                max_tx_bytes: s.session.max_tx_bytes,
                server_name: s.session.server_name.clone(),
                ..SessionConfig::default()
            },
            heartbeat_grace: s.heartbeat.grace,
            queues: QueueConfig {
                max_messages: s.queues.max_messages,
                max_bytes: s.queues.max_bytes,
                max_queues: s.queues.max_queues,
                overflow: match s.queues.overflow {
                    QueueOverflow::Reject => Overflow::Reject,
                    QueueOverflow::DropOldest => Overflow::DropOldest,
                },
                store: match s.queues.store {
                    QueueStoreKind::Memory => QueueStore::Memory,
                    QueueStoreKind::Jetstream => QueueStore::JetStream,
                },
                replicas: s.queues.replicas,
                ack_wait: s.queues.ack_wait.get(),
                metrics_labels: s.queues.metrics_labels,
                ..QueueConfig::default()
            },
            slow_consumer: match s.outbound.slow_consumer {
                SlowConsumerPolicy::Close => SlowConsumer::Close,
                SlowConsumerPolicy::Drop => SlowConsumer::Drop,
            },
            tls,
            acl,
            auth_workers: s.auth.workers,
            auth_pending_per_ip: s.auth.max_pending_per_ip,
            memory_high_watermark: s.memory.high_watermark as usize,
            cluster: s.cluster_config(),
            sockjs: s.sockjs.enabled.then(|| crate::sockjs::SockjsConfig {
                prefix: s.sockjs.prefix.clone(),
                heartbeat: s.sockjs.heartbeat.get(),
                disconnect_delay: s.sockjs.disconnect_delay.get(),
                response_limit: s.sockjs.response_limit,
                max_body: s.sockjs.max_body,
                max_sessions: s.sockjs.max_sessions,
                websocket: s.sockjs.websocket,
                cookie_needed: s.sockjs.cookie_needed,
                client_url: s.sockjs.client_url.clone(),
            }),
            admin: s.admin.enabled.then(|| crate::config::AdminConfig {
                listen: s.listen.admin.addr(),
                tls: admin_tls,
                token: (!s.admin.token.is_empty()).then(|| s.admin.token.clone()),
                users: users.clone(),
            }),
            ..Config::default()
        };
        Ok(Built { config, users })
    }
}
