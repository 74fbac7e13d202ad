//! The flags: each option has one, and flags override the file.

use super::*;

#[test]
fn flags_override_the_file_and_the_file_overrides_defaults() {
    let path = temp_file(
        "reactors = 3\nlog_level = \"debug\"\n[stomp]\nmax_body = 100\nmax_headers = 9\n",
    );
    let p = path.to_str().unwrap();

    let s = load(&cli(&["--config", p]), None).unwrap();
    assert_eq!(
        (s.reactors, s.stomp.max_body, s.stomp.max_headers),
        (3, 100, 9)
    );
    assert_eq!(
        s.stomp.max_header_line,
        Settings::default().stomp.max_header_line
    );
    assert_eq!(s.log_level.to_string(), "debug");

    let s = load(
        &cli(&["--config", p, "--reactors", "5", "--max-body", "7"]),
        None,
    )
    .unwrap();
    assert_eq!(
        (s.reactors, s.stomp.max_body, s.stomp.max_headers),
        (5, 7, 9)
    );

    // RUST_LOG beats the file, --log-level beats RUST_LOG.
    let s = load(&cli(&["--config", p]), Some("warn")).unwrap();
    assert_eq!(s.log_level.to_string(), "warn");
    let s = load(&cli(&["--config", p, "--log-level", "trace"]), Some("warn")).unwrap();
    assert_eq!(s.log_level.to_string(), "trace");
    let s = load(&cli(&["--config", p]), Some("  ")).unwrap();
    assert_eq!(s.log_level.to_string(), "debug");

    // A flag can switch off what the file switched on, and the other way round.
    let on = temp_file("echo = true\n[listen]\ntcp = \"off\"\n");
    let s = load(
        &cli(&[
            "--config",
            on.to_str().unwrap(),
            "--echo=false",
            "--tcp-listen",
            "127.0.0.1:7000",
            "--no-metrics",
        ]),
        None,
    )
    .unwrap();
    assert!(!s.echo);
    assert_eq!(s.listen.tcp.to_string(), "127.0.0.1:7000");
    assert_eq!(s.listen.metrics, Listener::Off);
    let s = load(&cli(&["--echo"]), None).unwrap();
    assert!(s.echo);

    std::fs::remove_file(path).unwrap();
    std::fs::remove_file(on).unwrap();
}

#[test]
fn every_option_has_a_flag() {
    // (file key, flag arguments, the value the key then has in --print-config).
    let table: &[(&str, &[&str], &str)] = &[
        ("log_level", &["--log-level", "debug"], r#""debug""#),
        ("reactors", &["--reactors", "7"], "7"),
        ("echo", &["--echo"], "true"),
        (
            "listen.websocket",
            &["--listen", "127.0.0.1:1"],
            r#""127.0.0.1:1""#,
        ),
        ("listen.websocket", &["--no-ws"], r#""off""#),
        (
            "listen.tcp",
            &["--tcp-listen", "127.0.0.1:2"],
            r#""127.0.0.1:2""#,
        ),
        ("listen.tcp", &["--no-tcp"], r#""off""#),
        (
            "listen.metrics",
            &["--metrics-listen", "127.0.0.1:3"],
            r#""127.0.0.1:3""#,
        ),
        ("listen.metrics", &["--no-metrics"], r#""off""#),
        (
            "listen.admin",
            &["--admin-listen", "127.0.0.1:4"],
            r#""127.0.0.1:4""#,
        ),
        ("admin.enabled", &["--admin"], "true"),
        (
            "admin.token",
            &["--admin-token", "0123456789abcdefXY"],
            r#""0123456789abcdefXY""#,
        ),
        ("connections.max", &["--max-connections", "11"], "11"),
        (
            "connections.max_per_ip",
            &["--max-connections-per-ip", "12"],
            "12",
        ),
        (
            "websocket.max_frame_size",
            &["--max-frame-size", "1000"],
            "1000",
        ),
        (
            "websocket.max_message_size",
            &["--max-message-size", "2000"],
            "2000",
        ),
        (
            "websocket.max_handshake_size",
            &["--max-handshake-size", "3000"],
            "3000",
        ),
        (
            "websocket.subprotocols",
            &["--subprotocols", "v12.stomp,v11.stomp"],
            r#"["v12.stomp", "v11.stomp"]"#,
        ),
        (
            "websocket.allowed_origins",
            &[
                "--allow-origin",
                "https://a.example",
                "--allow-origin",
                "https://b.example",
            ],
            r#"["https://a.example", "https://b.example"]"#,
        ),
        ("websocket.compression.enabled", &["--compression"], "true"),
        (
            "websocket.compression.min_size",
            &["--compression-min-size", "17"],
            "17",
        ),
        (
            "websocket.compression.level",
            &["--compression-level", "8"],
            "8",
        ),
        (
            "websocket.compression.server_max_window_bits",
            &["--compression-server-max-window-bits", "11"],
            "11",
        ),
        (
            "websocket.compression.client_max_window_bits",
            &["--compression-client-max-window-bits", "9"],
            "9",
        ),
        (
            "websocket.compression.server_no_context_takeover",
            &["--compression-server-no-context-takeover", "false"],
            "false",
        ),
        (
            "websocket.compression.client_no_context_takeover",
            &["--compression-client-no-context-takeover", "false"],
            "false",
        ),
        ("log_format", &["--log-format", "json"], r#""json""#),
        ("sockjs.enabled", &["--sockjs=false"], "false"),
        ("sockjs.prefix", &["--sockjs-prefix", "/fb"], r#""/fb""#),
        ("sockjs.heartbeat", &["--sockjs-heartbeat", "3s"], r#""3s""#),
        (
            "sockjs.disconnect_delay",
            &["--sockjs-disconnect-delay", "2s"],
            r#""2s""#,
        ),
        (
            "sockjs.response_limit",
            &["--sockjs-response-limit", "4096"],
            "4096",
        ),
        ("sockjs.max_body", &["--sockjs-max-body", "2048"], "2048"),
        ("sockjs.max_sessions", &["--sockjs-max-sessions", "7"], "7"),
        (
            "sockjs.websocket",
            &["--sockjs-websocket", "false"],
            "false",
        ),
        (
            "sockjs.cookie_needed",
            &["--sockjs-cookie-needed", "true"],
            "true",
        ),
        (
            "sockjs.client_url",
            &["--sockjs-client-url", "/s.js"],
            r#""/s.js""#,
        ),
        ("stomp.max_headers", &["--max-headers", "13"], "13"),
        (
            "stomp.max_header_line",
            &["--max-header-line", "1400"],
            "1400",
        ),
        ("stomp.max_body", &["--max-body", "15"], "15"),
        ("heartbeat.send", &["--heartbeat-send", "20s"], r#""20s""#),
        (
            "heartbeat.receive",
            &["--heartbeat-receive", "0"],
            r#""0s""#,
        ),
        ("heartbeat.min", &["--heartbeat-min", "50ms"], r#""50ms""#),
        ("heartbeat.grace", &["--heartbeat-grace", "4"], "4"),
        (
            "session.max_subscriptions",
            &["--max-subscriptions", "16"],
            "16",
        ),
        (
            "session.max_pattern_words",
            &["--max-pattern-words", "9"],
            "9",
        ),
        (
            "session.default_prefetch",
            &["--default-prefetch", "17"],
            "17",
        ),
        ("session.max_prefetch", &["--max-prefetch", "18"], "18"),
        (
            "session.max_transactions",
            &["--max-transactions", "19"],
            "19",
        ),
        ("session.max_tx_frames", &["--max-tx-frames", "20"], "20"),
        ("session.max_tx_bytes", &["--max-tx-bytes", "2000"], "2000"),
        ("queues.max_bytes", &["--queue-max-bytes", "3000"], "3000"),
        ("queues.max_queues", &["--max-queues", "24"], "24"),
        (
            "queues.metrics_labels",
            &["--queue-metrics-labels", "9"],
            "9",
        ),
        (
            "queues.store",
            &["--queue-store", "jetstream"],
            r#""jetstream""#,
        ),
        ("queues.replicas", &["--queue-replicas", "3"], "3"),
        ("queues.ack_wait", &["--queue-ack-wait", "9s"], r#""9s""#),
        (
            "memory.high_watermark",
            &["--memory-high-watermark", "0"],
            "0",
        ),
        (
            "session.server_name",
            &["--server-name", "edge"],
            r#""edge""#,
        ),
        ("outbound.max_bytes", &["--max-outbound", "2048"], "2048"),
        (
            "outbound.slow_consumer",
            &["--slow-consumer", "drop"],
            r#""drop""#,
        ),
        ("queues.max_messages", &["--queue-max-messages", "21"], "21"),
        (
            "queues.overflow",
            &["--queue-overflow", "drop-oldest"],
            r#""drop-oldest""#,
        ),
        (
            "buffers.read_buffer_size",
            &["--read-buffer-size", "4096"],
            "4096",
        ),
        ("buffers.pool_buffers", &["--pool-buffers", "22"], "22"),
        ("buffers.read_budget", &["--read-budget", "23"], "23"),
        ("auth.workers", &["--auth-workers", "5"], "5"),
        (
            "auth.max_pending_per_ip",
            &["--auth-max-pending-per-ip", "6"],
            "6",
        ),
        (
            "auth.max_hash_memory",
            &["--max-hash-memory", "9000"],
            "9000",
        ),
        (
            "timeouts.handshake",
            &["--handshake-timeout", "2s"],
            r#""2s""#,
        ),
        ("timeouts.close", &["--close-timeout", "3s"], r#""3s""#),
        (
            "timeouts.shutdown",
            &["--shutdown-timeout", "4s"],
            r#""4s""#,
        ),
        ("tls.cert", &["--tls-cert", "cert.pem"], r#""cert.pem""#),
        ("tls.key", &["--tls-key", "key.pem"], r#""key.pem""#),
        ("tls.websocket", &["--tls-ws"], "true"),
        ("tls.tcp", &["--tls-tcp=true"], "true"),
        ("tls.admin", &["--tls-admin"], "true"),
        (
            "auth.users_file",
            &["--users-file", "users.txt"],
            r#""users.txt""#,
        ),
        ("auth.anonymous", &["--anonymous"], "true"),
        ("auth.acl_file", &["--acl-file", "acl.txt"], r#""acl.txt""#),
        (
            "cluster.nats",
            &["--cluster", "nats://127.0.0.1:1,nats://127.0.0.1:2"],
            r#"["nats://127.0.0.1:1", "nats://127.0.0.1:2"]"#,
        ),
        ("cluster.node_name", &["--node-name", "n1"], r#""n1""#),
        (
            "cluster.subject_prefix",
            &["--cluster-subject-prefix", "p"],
            r#""p""#,
        ),
        ("cluster.user", &["--cluster-user", "u"], r#""u""#),
        ("cluster.password", &["--cluster-password", "p"], r#""p""#),
        ("cluster.token", &["--cluster-token", "t"], r#""t""#),
        (
            "cluster.credentials",
            &["--cluster-credentials", "n.creds"],
            r#""n.creds""#,
        ),
        (
            "cluster.tls_ca",
            &["--cluster-tls-ca", "ca.pem"],
            r#""ca.pem""#,
        ),
        (
            "cluster.tls_cert",
            &["--cluster-tls-cert", "c.pem"],
            r#""c.pem""#,
        ),
        (
            "cluster.tls_key",
            &["--cluster-tls-key", "k.pem"],
            r#""k.pem""#,
        ),
        ("cluster.require_tls", &["--cluster-require-tls"], "true"),
        ("cluster.max_pending", &["--cluster-max-pending", "9"], "9"),
        (
            "cluster.max_pending_bytes",
            &["--cluster-max-pending-bytes", "4096"],
            "4096",
        ),
    ];
    let defaults = flatten(&Settings::default());
    for (key, args, want) in table {
        let mut s = Settings::default();
        cli(args).apply(&mut s);
        let after = flatten(&s);
        let want: toml::Value =
            toml::from_str::<toml::Table>(&format!("v = {want}")).unwrap()["v"].clone();
        assert_eq!(after.get(*key), Some(&want), "{args:?}");
        for (k, v) in &defaults {
            if k != key {
                assert_eq!(after.get(k), Some(v), "{args:?} changed {k}");
            }
        }
    }
    for key in defaults.keys() {
        assert!(table.iter().any(|(k, _, _)| k == key), "{key} has no flag");
    }
}

#[test]
fn bad_flag_values_are_refused_by_the_parser() {
    for args in [
        &["--handshake-timeout", "10"][..],
        &["--listen", "nowhere"],
        &["--slow-consumer", "kill"],
        &["--log-level", "loud"],
        &["--no-tcp", "--tcp-listen", "127.0.0.1:1"],
    ] {
        let err = Cli::try_parse_from(std::iter::once("stompbox").chain(args.iter().copied()))
            .unwrap_err();
        assert_eq!(err.exit_code(), 2, "{args:?}");
    }
}

#[test]
fn cli_definition_is_consistent() {
    use clap::CommandFactory;
    Cli::command().debug_assert();
}
