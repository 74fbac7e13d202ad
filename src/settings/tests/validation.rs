//! Validation: each invalid value named, all at once.

use super::*;

#[test]
fn each_invalid_value_is_named() {
    type Mutation = fn(&mut Settings);
    let table: &[(Mutation, &str)] = &[
        (|s| s.reactors = 0, "reactors: must be between 1 and 64"),
        (|s| s.reactors = 65, "reactors: must be between 1 and 64"),
        (
            |s| {
                s.listen.websocket = Listener::Off;
                s.listen.tcp = Listener::Off;
            },
            "listen: listen.websocket and listen.tcp are both off: no client could connect",
        ),
        (
            |s| s.listen.tcp = "127.0.0.1:61614".parse().unwrap(),
            "listen.tcp: 127.0.0.1:61614 is already taken by listen.websocket (127.0.0.1:61614)",
        ),
        (
            |s| s.listen.metrics = "0.0.0.0:61613".parse().unwrap(),
            "listen.metrics: 0.0.0.0:61613 is already taken by listen.tcp (127.0.0.1:61613)",
        ),
        (|s| s.connections.max = 0, "connections.max: must be at least 1"),
        (|s| s.websocket.max_frame_size = 124, "websocket.max_frame_size: must be between 125 and 1073741824"),
        (|s| s.websocket.max_frame_size = (1 << 30) + 1, "websocket.max_frame_size: must be between 125 and 1073741824"),
        (|s| s.websocket.max_message_size = 0, "websocket.max_message_size: must be between 1 and 1073741824"),
        (|s| s.websocket.max_handshake_size = 100, "websocket.max_handshake_size: must be at least 256"),
        (|s| s.websocket.compression.level = 10, "websocket.compression.level: must be between 0 and 9"),
        (|s| s.websocket.compression.server_max_window_bits = 8, "websocket.compression.server_max_window_bits: must be between 9 and 15"),
        (|s| s.websocket.compression.client_max_window_bits = 16, "websocket.compression.client_max_window_bits: must be between 8 and 15"),
        (
            |s| s.websocket.max_handshake_size = 32768,
            "websocket.max_handshake_size: must not exceed buffers.read_buffer_size (16384): the request is read into one buffer",
        ),
        (
            |s| s.websocket.subprotocols = vec!["v12 stomp".into()],
            "websocket.subprotocols: `v12 stomp` is not a token (letters, digits and !#$%&'*+-.^_`|~)",
        ),
        (
            |s| s.websocket.allowed_origins = vec!["*".into()],
            "websocket.allowed_origins: `*` is not an origin: leave the list empty to allow any origin",
        ),
        (
            |s| s.websocket.allowed_origins = vec!["".into()],
            "websocket.allowed_origins: `` is not an origin (e.g. https://app.example.com)",
        ),
        (|s| s.stomp.max_headers = 0, "stomp.max_headers: must be between 1 and 64"),
        // The parser has 64 header slots: more could be set but never honoured (issue 14).
        (|s| s.stomp.max_headers = 65, "stomp.max_headers: must be between 1 and 64"),
        (|s| s.stomp.max_header_line = 10, "stomp.max_header_line: must be between 64 and 1048576"),
        (|s| s.stomp.max_body = 2 << 30, "stomp.max_body: must be between 0 and 1073741824"),
        (|s| s.heartbeat.send = Dur::from_millis(25 * 3_600_000), "heartbeat.send: must be at most 24h"),
        (|s| s.heartbeat.receive = Dur::from_millis(50), "heartbeat.receive: 50ms is below heartbeat.min (100ms); use 0 to disable"),
        (|s| { s.heartbeat.min = Dur::from_millis(48 * 3_600_000); s.heartbeat.send = Dur::from_millis(0); s.heartbeat.receive = Dur::from_millis(0); }, "heartbeat.min: must be at most 24h"),
        (|s| s.heartbeat.grace = 0, "heartbeat.grace: must be between 1 and 100"),
        (|s| s.session.max_subscriptions = 0, "session.max_subscriptions: must be at least 1"),
        (|s| s.session.default_prefetch = 0, "session.default_prefetch: must be at least 1"),
        (|s| s.session.max_prefetch = 5, "session.default_prefetch: must not exceed session.max_prefetch (5)"),
        (|s| s.session.max_tx_frames = 0, "session.max_tx_frames: must be at least 1"),
        (|s| s.session.server_name = "a\r\nb".into(), "session.server_name: must be non-empty text without control characters"),
        (|s| s.outbound.max_bytes = 10, "outbound.max_bytes: must be between 1024 and 1073741824"),
        (|s| s.queues.max_messages = 0, "queues.max_messages: must be at least 1"),
        (|s| { s.buffers.read_buffer_size = 512; s.websocket.max_handshake_size = 512; }, "buffers.read_buffer_size: must be between 1024 and 67108864"),
        (|s| s.buffers.read_budget = 0, "buffers.read_budget: must be at least 1"),
        (|s| s.timeouts.handshake = Dur::from_millis(0), "timeouts.handshake: must be more than 0"),
        (|s| s.timeouts.close = Dur::from_millis(86_400_001), "timeouts.close: must be at most 24h"),
        (|s| s.timeouts.shutdown = Dur::from_millis(u64::MAX), "timeouts.shutdown: must be at most 24h"),
        (|s| { s.tls.tcp = true; s.tls.key = "k.pem".into(); }, "tls.cert: required when tls.websocket, tls.tcp or tls.admin is on"),
        (|s| { s.tls.websocket = true; s.tls.cert = "c.pem".into(); }, "tls.key: required when tls.websocket, tls.tcp or tls.admin is on"),
        (|s| s.tls.cert = "c.pem".into(), "tls: a certificate or key is set but none of tls.websocket, tls.tcp, tls.admin is on"),
        (
            |s| {
                s.tls = TlsSettings { cert: "c.pem".into(), key: "k.pem".into(), websocket: true, tcp: false, admin: false };
                s.listen.websocket = Listener::Off;
            },
            "tls.websocket: listen.websocket is off",
        ),
        (
            |s| {
                s.tls = TlsSettings { cert: "c.pem".into(), key: "k.pem".into(), websocket: false, tcp: true, admin: false };
                s.listen.tcp = Listener::Off;
            },
            "tls.tcp: listen.tcp is off",
        ),
        (
            |s| {
                s.tls = TlsSettings { cert: "c.pem".into(), key: "k.pem".into(), websocket: false, tcp: false, admin: true };
            },
            "tls.admin: listen.admin is off",
        ),
        (|s| s.listen.admin = "127.0.0.1:9443".parse().unwrap(), "listen.admin: admin.enabled is off"),
        (
            |s| s.admin.enabled = true,
            "admin.enabled: nobody could log in: set admin.token, or auth.users_file with listen.admin and tls.admin (HTTP Basic is accepted over TLS only)",
        ),
        (
            |s| {
                s.admin = AdminSettings { enabled: true, token: "0123456789abcdef".into() };
                s.listen.metrics = Listener::Off;
            },
            "admin.enabled: listen.admin and listen.metrics are both off: nowhere to serve it",
        ),
        (|s| s.admin.token = "short".into(), "admin.token: must be at least 16 characters"),
        (|s| s.admin.token = "0123456789abcdef ghi".into(), "admin.token: must not hold spaces or control characters"),
    ];
    for (mutate, want) in table {
        let mut s = Settings::default();
        mutate(&mut s);
        let got = problems(&s);
        let want = format!("invalid configuration: {want}");
        assert_eq!(got, vec![want.clone()], "want {want}");
        let err = s.to_config().unwrap_err();
        assert_eq!(err.to_string(), want);
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let mut s = Settings {
        reactors: 0,
        ..Settings::default()
    };
    s.connections.max = 0;
    assert_eq!(
        problems(&s),
        [
            "invalid configuration: reactors: must be between 1 and 64",
            "invalid configuration: connections.max: must be at least 1",
        ]
    );
}

#[test]
fn zero_and_wildcard_ports_are_not_conflicts() {
    let mut s = Settings {
        listen: ListenSettings {
            websocket: "127.0.0.1:0".parse().unwrap(),
            tcp: "127.0.0.1:0".parse().unwrap(),
            metrics: "0.0.0.0:0".parse().unwrap(),
            admin: Listener::Off,
        },
        ..Settings::default()
    };
    s.validate().unwrap();
    s.listen.tcp = "127.0.0.2:61614".parse().unwrap();
    s.validate().unwrap();
}
