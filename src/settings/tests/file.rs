//! The TOML file: every option, defaults, round trips, and errors that name the option.

use super::*;

#[test]
fn full_file_sets_every_option() {
    let s = parse(&full_text()).unwrap();
    assert_eq!(s, full());
    // Not one option was left at its default.
    let (d, f) = (flatten(&Settings::default()), flatten(&s));
    assert_eq!(d.keys().collect::<Vec<_>>(), f.keys().collect::<Vec<_>>());
    for (k, v) in &d {
        assert_ne!(Some(v), f.get(k), "{k} is at its default in FULL");
    }
}

#[test]
fn full_file_maps_onto_config() {
    let c = parse(&full_text()).unwrap().to_config().unwrap();
    assert_eq!(c.listen, Some("0.0.0.0:8080".parse().unwrap()));
    assert_eq!(c.tcp_listen, Some("0.0.0.0:7613".parse().unwrap()));
    let tls = c.tls.as_ref().unwrap();
    assert!(tls.ws && tls.tcp);
    let acl = c.acl.as_ref().unwrap().current();
    assert!(acl.allows(Some("alice"), crate::auth::Perm::Write, "/topic/chat.x"));
    assert!(!acl.allows(Some("bob"), crate::auth::Perm::Write, "/topic/chat.x"));
    let auth = &c.session.authenticator;
    assert!(auth.authenticate(Some("alice"), Some("secret"), None));
    assert!(!auth.authenticate(Some("alice"), Some("wrong"), None));
    assert!(auth.authenticate(None, None, None), "anonymous = true");
    assert_eq!(c.metrics_listen, Some("127.0.0.1:9999".parse().unwrap()));
    assert_eq!((c.max_connections, c.max_connections_per_ip), (5000, 50));
    assert_eq!(c.reactors, 3);
    assert!(c.echo);
    assert_eq!((c.max_frame_size, c.max_message_size), (65536, 1 << 20));
    assert_eq!(c.handshake.max_request_bytes, 4096);
    assert_eq!(c.handshake.protocols, vec!["v12.stomp".to_owned()]);
    assert_eq!(
        c.handshake.allowed_origins,
        Some(vec![
            "https://app.example.com".to_owned(),
            "http://localhost:3000".to_owned()
        ])
    );
    assert_eq!(c.handshake_timeout, Duration::from_secs(3));
    assert_eq!(c.close_timeout, Duration::from_millis(1500));
    assert_eq!(c.shutdown_timeout, Duration::from_secs(60));
    assert_eq!(
        (c.read_buffer_size, c.pool_buffers, c.read_budget),
        (8192, 32, 65536)
    );
    assert_eq!(c.max_outbound, 1 << 20);
    assert_eq!(c.slow_consumer, SlowConsumer::Drop);
    assert_eq!(
        (
            c.stomp_limits.max_headers,
            c.stomp_limits.max_header_line,
            c.stomp_limits.max_body
        ),
        (32, 2048, 512 * 1024)
    );
    assert_eq!(c.session.heartbeat, (5000, 0));
    assert_eq!(c.session.min_heartbeat, 250);
    assert_eq!(c.heartbeat_grace, 3);
    assert_eq!(c.session.max_subscriptions, 64);
    assert_eq!(
        (c.session.default_prefetch, c.session.max_prefetch),
        (10, 500)
    );
    assert_eq!(
        (c.session.max_transactions, c.session.max_tx_frames),
        (0, 100)
    );
    assert_eq!(c.session.server_name, "broker-1");
    assert_eq!(c.queues.max_messages, 1000);
    assert_eq!(c.queues.overflow, Overflow::DropOldest);
    // Back again: nothing lost.
    let mut back = Settings::from_config(&c);
    back.log_level = full().log_level;
    back.log_format = full().log_format;
    back.tls.cert = full().tls.cert;
    back.tls.key = full().tls.key;
    back.auth = full().auth;
    // A SockJS endpoint that is off keeps no settings in `Config`: checked on below.
    back.sockjs = full().sockjs;
    assert_eq!(back, full());
    let mut on = full();
    on.sockjs.enabled = true;
    let c = on.to_config().unwrap();
    let j = c.sockjs.as_ref().unwrap();
    assert_eq!(
        (j.prefix.as_str(), j.response_limit, j.max_body),
        ("/fallback", 65536, 4096)
    );
    assert_eq!(Settings::from_config(&c).sockjs, on.sockjs);
}

#[test]
fn defaults_are_configs_defaults_plus_the_metrics_listener() {
    let s = Settings::default();
    assert_eq!(s.log_level, LogFilter::new(LevelFilter::Info));
    assert_eq!(s.listen.websocket.to_string(), "127.0.0.1:61614");
    assert_eq!(s.listen.tcp.to_string(), "127.0.0.1:61613");
    assert_eq!(s.listen.metrics.to_string(), "127.0.0.1:9100");
    assert!((1..=MAX_REACTORS).contains(&s.reactors));
    s.validate().unwrap();

    let c = s.to_config().unwrap();
    let d = Config::default();
    assert_eq!(d.metrics_listen, None);
    assert_eq!(c.metrics_listen, Some(DEFAULT_METRICS_LISTEN));
    let mut same = Settings::from_config(&c);
    same.listen.metrics = Listener::from_addr(d.metrics_listen);
    same.reactors = d.reactors;
    assert_eq!(same, Settings::from_config(&d));
    assert_eq!(c.session.server_name, d.session.server_name);
    assert_eq!(c.handshake.allowed_origins, None);
}

#[test]
fn missing_keys_keep_their_defaults() {
    assert_eq!(parse("").unwrap(), Settings::default());
    let s = parse("[stomp]\nmax_body = 100\n").unwrap();
    let mut want = Settings::default();
    want.stomp.max_body = 100;
    assert_eq!(s, want);
}

#[test]
fn print_config_output_reads_back_unchanged() {
    for s in [Settings::default(), full()] {
        let text = s.to_toml().unwrap();
        assert_eq!(parse(&text).unwrap(), s, "{text}");
    }
    let text = Settings::default().to_toml().unwrap();
    for section in [
        "[listen]",
        "[connections]",
        "[websocket]",
        "[stomp]",
        "[heartbeat]",
        "[session]",
        "[outbound]",
        "[queues]",
        "[buffers]",
        "[timeouts]",
    ] {
        assert!(text.contains(section), "{section} missing from\n{text}");
    }
    assert!(text.contains("handshake = \"10s\""), "{text}");
    assert!(text.contains("metrics = \"127.0.0.1:9100\""), "{text}");
}

#[test]
fn file_errors_name_the_option() {
    let cases: &[(&str, &str, &str)] = &[
        ("reactors = \"two\"", "reactors", "invalid type: string \"two\", expected usize (line 1)"),
        ("reactors = -1", "reactors", "(line 1)"),
        ("[timeouts]\nhandshake = \"10\"", "timeouts.handshake", "`10` is not a duration: write a number and a unit (250ms, 10s, 5m, 1h) (line 2)"),
        ("[timeouts]\nclose = 5", "timeouts.close", "invalid type: integer `5`, expected a string (line 2)"),
        ("[listen]\ntcp = \"localhost\"", "listen.tcp", "`localhost` is not an address (IP:PORT, e.g. 127.0.0.1:61613) or `off` (line 2)"),
        ("[outbound]\nslow_consumer = \"kill\"", "outbound.slow_consumer", "unknown variant `kill`, expected `close` or `drop`"),
        ("[queues]\noverflow = \"drop_oldest\"", "queues.overflow", "unknown variant `drop_oldest`, expected `reject` or `drop-oldest`"),
        ("log_level = \"verbose\"", "log_level", "`verbose` is not a log level (error, warn, info, debug, trace or off)"),
        ("[heartbeat]\ngrace = 5000000000", "heartbeat.grace", "(line 2)"),
        ("[stomp]\nmax_bdy = 1", "stomp.max_bdy", "unknown field `max_bdy`, expected one of `max_headers`, `max_header_line`, `max_body` (line 2)"),
        ("listen = \"127.0.0.1:1\"", "listen", "invalid type: string \"127.0.0.1:1\", expected struct ListenSettings (line 1)"),
        ("[listen]\nwebsocket = \"127.0.0.1:1\"\n[listen]\n", "test.toml", "line 3, column 2: duplicate key: `[listen]`"),
        ("reactors = ", "test.toml", "line 1, column 12: "),
    ];
    for (text, option, message) in cases {
        let err = parse(text).unwrap_err();
        assert_eq!(err.problems.len(), 1, "{text}");
        let p = &err.problems[0];
        assert_eq!(p.option, *option, "{text}: {p:?}");
        assert!(p.message.contains(message), "{text}: {p:?}");
    }
}

#[test]
fn unreadable_file_and_bad_rust_log_are_named() {
    let missing = std::env::temp_dir().join("stompbox-no-such-config.toml");
    let err = load(&cli(&["--config", missing.to_str().unwrap()]), None).unwrap_err();
    assert!(err.to_string().starts_with(&format!(
        "invalid configuration: {}: cannot read: ",
        missing.display()
    )));
    let err = load(&cli(&[]), Some("loud")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid configuration: RUST_LOG: `loud` is not a log level (error, warn, info, debug, trace or off)"
    );
    // Flags are checked too, after they are applied.
    let err = load(&cli(&["--reactors", "0"]), None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid configuration: reactors: must be between 1 and 64"
    );
}

#[test]
fn tls_files_are_read_and_named() {
    let (cert, key) = pem_files();
    let mut s = Settings {
        tls: TlsSettings {
            cert: cert.clone(),
            key: key.clone(),
            websocket: true,
            tcp: false,
            admin: false,
        },
        ..Settings::default()
    };
    let tls = s.to_config().unwrap().tls.unwrap();
    assert!(tls.ws && !tls.tcp);

    let missing = std::env::temp_dir().join("stompbox-no-such-cert.pem");
    s.tls.cert = missing.clone();
    let err = s.to_config().unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "invalid configuration: tls.cert: cannot read {}: ",
            missing.display()
        )),
        "{err}"
    );

    let junk = temp_file("not a certificate\n");
    s.tls.cert = cert.clone();
    s.tls.key = junk.clone();
    let err = s.to_config().unwrap_err().to_string();
    assert!(err.starts_with("invalid configuration: tls.key: "), "{err}");
    s.tls.cert = junk.clone();
    s.tls.key = key.clone();
    let err = s.to_config().unwrap_err().to_string();
    assert!(
        err.starts_with("invalid configuration: tls.cert: "),
        "{err}"
    );
    std::fs::remove_file(junk).unwrap();
}

#[test]
fn auth_files_are_read_and_named() {
    let (users, acl) = auth_files();
    let mut s = Settings {
        auth: AuthSettings {
            users_file: users.clone(),
            anonymous: false,
            acl_file: acl.clone(),
            ..AuthSettings::default()
        },
        ..Settings::default()
    };
    let built = s.build().unwrap();
    let u = built.users.unwrap();
    assert_eq!(u.reload(users).unwrap(), 1);
    assert!(!built
        .config
        .session
        .authenticator
        .authenticate(None, None, None));
    assert!(built.config.acl.is_some());

    let missing = std::env::temp_dir().join("stompbox-no-such-users.txt");
    s.auth.users_file = missing.clone();
    let err = s.to_config().unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "invalid configuration: auth.users_file: {}: ",
            missing.display()
        )),
        "{err}"
    );
    let junk = temp_file("alice:not-a-hash\n");
    s.auth.users_file = junk.clone();
    let err = s.to_config().unwrap_err().to_string();
    assert!(
        err.contains("auth.users_file: ") && err.contains("line 1"),
        "{err}"
    );
    s.auth.users_file = users.clone();
    s.auth.acl_file = junk.clone();
    let err = s.to_config().unwrap_err().to_string();
    assert!(
        err.starts_with("invalid configuration: auth.acl_file: "),
        "{err}"
    );
    std::fs::remove_file(junk).unwrap();
}

/// The README's example file holds the defaults (`--print-config`'s output), but for the two
/// the machine decides (reactors: its cores; the memory mark: 40 % of its RAM).
#[test]
fn readme_example_file_is_the_default_configuration() {
    let readme = include_str!("../../../README.md");
    let options = &readme[readme.find("## Options").unwrap()..];
    let start = options.find("```toml\n").unwrap() + "```toml\n".len();
    let example = &options[start..start + options[start..].find("```").unwrap()];
    let s = parse(example).unwrap();
    let mut defaults = Settings {
        reactors: s.reactors,
        ..Settings::default()
    };
    defaults.memory.high_watermark = s.memory.high_watermark;
    let (readme_keys, default_keys) = (flatten(&s), flatten(&defaults));
    for (key, value) in &default_keys {
        assert_eq!(
            readme_keys.get(key),
            Some(value),
            "README's example file: `{key}` is not the default"
        );
    }
    assert_eq!(s, defaults);
}

#[test]
fn readme_example_file_is_valid_and_shows_every_key() {
    let readme = include_str!("../../../README.md");
    let options = &readme[readme.find("## Options").unwrap()..];
    let start = options.find("```toml\n").unwrap() + "```toml\n".len();
    let example = &options[start..start + options[start..].find("```").unwrap()];
    let s = parse(example).unwrap();
    s.to_config().unwrap();
    for key in flatten(&Settings::default()).keys() {
        let name = key.rsplit('.').next().unwrap();
        assert!(
            example
                .lines()
                .any(|l| l.split_once('=').is_some_and(|(k, _)| k.trim() == name)),
            "README's example file lacks `{key}`"
        );
    }
}
