//! Every option checked at once, each problem naming its option as the file spells it.

use super::*;

impl Settings {
    /// Every problem at once, each naming its option.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut v = Checker::default();
        let s = self;

        v.range("reactors", s.reactors as u64, 1, MAX_REACTORS as u64);

        let (ws, tcp, metrics) = (s.listen.websocket, s.listen.tcp, s.listen.metrics);
        if ws == Listener::Off && tcp == Listener::Off {
            v.fail(
                "listen",
                "listen.websocket and listen.tcp are both off: no client could connect",
            );
        }
        let named = [
            ("listen.websocket", ws.addr()),
            ("listen.tcp", tcp.addr()),
            ("listen.metrics", metrics.addr()),
            ("listen.admin", s.listen.admin.addr()),
        ];
        for (i, (name, a)) in named.iter().enumerate() {
            for (other, b) in &named[..i] {
                if let (Some(a), Some(b)) = (a, b) {
                    if same_port(*a, *b) {
                        v.fail(name, format!("{a} is already taken by {other} ({b})"));
                    }
                }
            }
        }

        v.at_least("connections.max", s.connections.max as u64, 1);

        v.range(
            "websocket.max_frame_size",
            s.websocket.max_frame_size,
            125,
            MAX_BYTES,
        );
        v.range(
            "websocket.max_message_size",
            s.websocket.max_message_size,
            1,
            MAX_BYTES,
        );
        v.at_least(
            "websocket.max_handshake_size",
            s.websocket.max_handshake_size as u64,
            256,
        );
        if s.websocket.max_handshake_size > s.buffers.read_buffer_size {
            v.fail(
                "websocket.max_handshake_size",
                format!(
                    "must not exceed buffers.read_buffer_size ({}): the request is read into one \
                     buffer",
                    s.buffers.read_buffer_size
                ),
            );
        }
        let j = &s.sockjs;
        if j.enabled {
            let p = &j.prefix;
            let ok = p.starts_with('/')
                && p.len() > 1
                && !p.ends_with('/')
                && p.bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#');
            if !ok {
                v.fail(
                    "sockjs.prefix",
                    "must be a path like /sockjs: starting with /, not ending with /, no spaces, ? or #",
                );
            }
            if ["/ws", "/stomp", "/echo"].contains(&p.as_str()) {
                v.fail(
                    "sockjs.prefix",
                    format!("{p} is the WebSocket endpoint's path"),
                );
            }
            v.at_least("sockjs.response_limit", j.response_limit as u64, 1024);
            v.range("sockjs.max_body", j.max_body as u64, 1024, MAX_BYTES);
            v.at_least("sockjs.max_sessions", j.max_sessions as u64, 1);
            if j.heartbeat.millis() < 100 {
                v.fail("sockjs.heartbeat", "must be at least 100ms");
            }
            if j.disconnect_delay.millis() < 100 {
                v.fail("sockjs.disconnect_delay", "must be at least 100ms");
            }
        }
        let z = &s.websocket.compression;
        v.range("websocket.compression.level", u64::from(z.level), 0, 9);
        // zlib cannot make an 8-bit-window stream (it silently uses 9).
        v.range(
            "websocket.compression.server_max_window_bits",
            u64::from(z.server_max_window_bits),
            9,
            15,
        );
        v.range(
            "websocket.compression.client_max_window_bits",
            u64::from(z.client_max_window_bits),
            8,
            15,
        );
        for p in &s.websocket.subprotocols {
            if p.is_empty() || !p.bytes().all(is_tchar) {
                v.fail(
                    "websocket.subprotocols",
                    format!("`{p}` is not a token (letters, digits and !#$%&'*+-.^_`|~)"),
                );
            }
        }
        for o in &s.websocket.allowed_origins {
            if o == "*" {
                v.fail(
                    "websocket.allowed_origins",
                    "`*` is not an origin: leave the list empty to allow any origin",
                );
            } else if o.is_empty() || !o.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
                v.fail(
                    "websocket.allowed_origins",
                    format!("`{o}` is not an origin (e.g. https://app.example.com)"),
                );
            }
        }

        v.range(
            "stomp.max_headers",
            s.stomp.max_headers as u64,
            1,
            crate::stomp::MAX_HEADERS as u64,
        );
        v.range(
            "stomp.max_header_line",
            s.stomp.max_header_line as u64,
            64,
            1 << 20,
        );
        v.range("stomp.max_body", s.stomp.max_body as u64, 0, MAX_BYTES);

        let hb = &s.heartbeat;
        v.duration("heartbeat.send", hb.send, Duration::ZERO);
        v.duration("heartbeat.receive", hb.receive, Duration::ZERO);
        v.duration("heartbeat.min", hb.min, Duration::ZERO);
        for (name, d) in [
            ("heartbeat.send", hb.send),
            ("heartbeat.receive", hb.receive),
        ] {
            if d.get() > Duration::ZERO && d < hb.min {
                v.fail(
                    name,
                    format!("{d} is below heartbeat.min ({}); use 0 to disable", hb.min),
                );
            }
        }
        v.range("heartbeat.grace", u64::from(hb.grace), 1, 100);

        let se = &s.session;
        v.at_least("session.max_subscriptions", se.max_subscriptions as u64, 1);
        v.range(
            "session.max_pattern_words",
            se.max_pattern_words as u64,
            1,
            1024,
        );
        v.at_least("session.default_prefetch", se.default_prefetch as u64, 1);
        if se.default_prefetch > se.max_prefetch {
            v.fail(
                "session.default_prefetch",
                format!("must not exceed session.max_prefetch ({})", se.max_prefetch),
            );
        }
        v.at_least("session.max_tx_frames", se.max_tx_frames as u64, 1);
        v.range("session.max_tx_bytes", se.max_tx_bytes as u64, 1, MAX_BYTES);
        if se.server_name.is_empty() || se.server_name.chars().any(char::is_control) {
            v.fail(
                "session.server_name",
                "must be non-empty text without control characters",
            );
        }

        v.range(
            "outbound.max_bytes",
            s.outbound.max_bytes as u64,
            1024,
            MAX_BYTES,
        );
        v.at_least("queues.max_messages", s.queues.max_messages as u64, 1);
        v.at_least("queues.max_bytes", s.queues.max_bytes as u64, 1);
        v.at_least("queues.max_queues", s.queues.max_queues as u64, 1);
        v.range(
            "queues.metrics_labels",
            s.queues.metrics_labels as u64,
            0,
            10_000,
        );
        let c = &s.cluster;
        for url in &c.nats {
            if url.parse::<async_nats::ServerAddr>().is_err() {
                v.fail(
                    "cluster.nats",
                    format!("'{url}' is not a NATS URL (nats://host:port)"),
                );
            }
        }
        if !c.node_name.is_empty() && !crate::cluster::valid_node_name(&c.node_name) {
            v.fail(
                "cluster.node_name",
                format!("1 to {} of A-Z a-z 0-9 - _", crate::cluster::MAX_NODE_NAME),
            );
        }
        if !crate::router::subject::valid_prefix(&c.subject_prefix) {
            v.fail(
                "cluster.subject_prefix",
                "NATS tokens of A-Z a-z 0-9 - _, separated by dots",
            );
        }
        if c.user.is_empty() != c.password.is_empty() {
            v.fail("cluster.user", "user and password go together");
        }
        if c.tls_cert.as_os_str().is_empty() != c.tls_key.as_os_str().is_empty() {
            v.fail("cluster.tls_cert", "tls_cert and tls_key go together");
        }
        v.at_least("cluster.max_pending", c.max_pending as u64, 1);
        if s.queues.store == QueueStoreKind::Jetstream && c.nats.is_empty() {
            v.fail(
                "queues.store",
                "jetstream needs NATS: give cluster.nats (one node is fine)",
            );
        }
        v.range("queues.replicas", s.queues.replicas as u64, 1, 5);
        v.duration(
            "queues.ack_wait",
            s.queues.ack_wait,
            Duration::from_millis(100),
        );
        v.at_least(
            "cluster.max_pending_bytes",
            c.max_pending_bytes as u64,
            1024,
        );
        if s.memory.high_watermark != 0 {
            v.range(
                "memory.high_watermark",
                s.memory.high_watermark,
                16 << 20,
                1 << 50,
            );
        }

        v.range(
            "buffers.read_buffer_size",
            s.buffers.read_buffer_size as u64,
            1024,
            64 << 20,
        );
        v.at_least("buffers.read_budget", s.buffers.read_budget as u64, 1);

        v.duration(
            "timeouts.handshake",
            s.timeouts.handshake,
            Duration::from_millis(1),
        );
        v.duration("timeouts.close", s.timeouts.close, Duration::ZERO);
        v.duration("timeouts.shutdown", s.timeouts.shutdown, Duration::ZERO);

        v.range("auth.workers", s.auth.workers as u64, 1, 64);
        // Argon2's own bounds: 8 KiB at least, and a buffer the machine could hold.
        v.range(
            "auth.max_hash_memory",
            u64::from(s.auth.max_hash_memory),
            8,
            4 << 20,
        );

        let tls = &s.tls;
        if tls.on() {
            for (option, path) in [("tls.cert", &tls.cert), ("tls.key", &tls.key)] {
                if path.as_os_str().is_empty() {
                    v.fail(
                        option,
                        "required when tls.websocket, tls.tcp or tls.admin is on",
                    );
                }
            }
        } else if !tls.cert.as_os_str().is_empty() || !tls.key.as_os_str().is_empty() {
            v.fail(
                "tls",
                "a certificate or key is set but none of tls.websocket, tls.tcp, tls.admin is on",
            );
        }
        if tls.websocket && ws == Listener::Off {
            v.fail("tls.websocket", "listen.websocket is off");
        }
        if tls.tcp && tcp == Listener::Off {
            v.fail("tls.tcp", "listen.tcp is off");
        }
        if tls.admin && s.listen.admin == Listener::Off {
            v.fail("tls.admin", "listen.admin is off");
        }

        let a = &s.admin;
        if a.enabled {
            if s.listen.admin == Listener::Off && metrics == Listener::Off {
                v.fail(
                    "admin.enabled",
                    "listen.admin and listen.metrics are both off: nowhere to serve it",
                );
            }
            let basic = tls.admin && !s.auth.users_file.as_os_str().is_empty();
            if a.token.is_empty() && !basic {
                v.fail(
                    "admin.enabled",
                    "nobody could log in: set admin.token, or auth.users_file with listen.admin \
                     and tls.admin (HTTP Basic is accepted over TLS only)",
                );
            }
        } else if s.listen.admin != Listener::Off {
            v.fail("listen.admin", "admin.enabled is off");
        }
        if !a.token.is_empty() && a.token.chars().count() < 16 {
            v.fail("admin.token", "must be at least 16 characters");
        }
        if a.token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            v.fail("admin.token", "must not hold spaces or control characters");
        }

        v.finish()
    }
}

/// Two listeners would collide: same non-zero port on the same or a wildcard address.
fn same_port(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// RFC 7230 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[derive(Default)]
struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn fail(&mut self, option: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            option: option.to_owned(),
            message: message.into(),
        });
    }

    fn at_least(&mut self, option: &str, value: u64, min: u64) {
        if value < min {
            self.fail(option, format!("must be at least {min}"));
        }
    }

    fn range(&mut self, option: &str, value: u64, min: u64, max: u64) {
        if value < min || value > max {
            self.fail(option, format!("must be between {min} and {max}"));
        }
    }

    fn duration(&mut self, option: &str, value: Dur, min: Duration) {
        if value.get() < min {
            self.fail(option, "must be more than 0");
        } else if value.get() > MAX_DURATION {
            self.fail(
                option,
                format!("must be at most {}", Dur::from_duration(MAX_DURATION)),
            );
        }
    }

    fn finish(self) -> Result<(), ConfigError> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError {
                problems: self.problems,
            })
        }
    }
}
