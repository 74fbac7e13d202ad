use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use clap::Parser;
use log::LevelFilter;

use super::*;

/// Every option, none at its default.
const FULL: &str = r#"
log_level = "warn,stompbox::server=debug"
reactors = 3
echo = true

[listen]
websocket = "0.0.0.0:8080"
tcp = "0.0.0.0:7613"
metrics = "127.0.0.1:9999"

[connections]
max = 5000
max_per_ip = 50

[websocket]
max_frame_size = 65536
max_message_size = 1048576
max_handshake_size = 4096
subprotocols = ["v12.stomp"]
allowed_origins = ["https://app.example.com", "http://localhost:3000"]

[stomp]
max_headers = 32
max_header_line = 2048
max_body = 524288

[heartbeat]
send = "5s"
receive = "0"
min = "250ms"
grace = 3

[session]
max_subscriptions = 64
max_pattern_words = 12
default_prefetch = 10
max_prefetch = 500
max_transactions = 0
max_tx_frames = 100
max_tx_bytes = 65536
server_name = "broker-1"

[outbound]
max_bytes = 1048576
slow_consumer = "drop"

[queues]
max_messages = 1000
max_bytes = 1048576
max_queues = 50
overflow = "drop-oldest"

[memory]
high_watermark = 536870912

[buffers]
read_buffer_size = 8192
pool_buffers = 32
read_budget = 65536

[timeouts]
handshake = "3s"
close = "1500ms"
shutdown = "1m"

[tls]
cert = "@CERT@"
key = "@KEY@"
websocket = true
tcp = true

[auth]
users_file = "@USERS@"
anonymous = true
acl_file = "@ACL@"
workers = 3
max_pending_per_ip = 7
max_hash_memory = 32768
"#;

/// A users file (alice, passcode "secret") and an ACL file, written once per test run.
fn auth_files() -> &'static (PathBuf, PathBuf) {
    static FILES: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    FILES.get_or_init(|| {
        let hash = crate::auth::hash_password("secret").unwrap();
        (
            temp_file(&format!("# users\nalice:{hash}\n")),
            temp_file("* read /topic/#\nalice readwrite /topic/chat.#\n"),
        )
    })
}

/// A self-signed certificate and its key, written once per test run: (cert, key).
fn pem_files() -> &'static (PathBuf, PathBuf) {
    static FILES: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    FILES.get_or_init(|| {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        (
            temp_file(&ck.cert.pem()),
            temp_file(&ck.signing_key.serialize_pem()),
        )
    })
}

/// FULL with the certificate's paths filled in.
fn full_text() -> String {
    let (cert, key) = pem_files();
    let (users, acl) = auth_files();
    FULL.replace("@CERT@", cert.to_str().unwrap())
        .replace("@KEY@", key.to_str().unwrap())
        .replace("@USERS@", users.to_str().unwrap())
        .replace("@ACL@", acl.to_str().unwrap())
}

fn full() -> Settings {
    Settings {
        log_level: "warn,stompbox::server=debug".parse().unwrap(),
        reactors: 3,
        echo: true,
        listen: ListenSettings {
            websocket: Listener::On("0.0.0.0:8080".parse().unwrap()),
            tcp: Listener::On("0.0.0.0:7613".parse().unwrap()),
            metrics: Listener::On("127.0.0.1:9999".parse().unwrap()),
        },
        connections: ConnectionSettings {
            max: 5000,
            max_per_ip: 50,
        },
        websocket: WebSocketSettings {
            max_frame_size: 65536,
            max_message_size: 1 << 20,
            max_handshake_size: 4096,
            subprotocols: vec!["v12.stomp".into()],
            allowed_origins: vec![
                "https://app.example.com".into(),
                "http://localhost:3000".into(),
            ],
        },
        stomp: StompSettings {
            max_headers: 32,
            max_header_line: 2048,
            max_body: 512 * 1024,
        },
        heartbeat: HeartbeatSettings {
            send: Dur::from_millis(5000),
            receive: Dur::from_millis(0),
            min: Dur::from_millis(250),
            grace: 3,
        },
        session: SessionSettings {
            max_subscriptions: 64,
            max_pattern_words: 12,
            default_prefetch: 10,
            max_prefetch: 500,
            max_transactions: 0,
            max_tx_frames: 100,
            max_tx_bytes: 65536,
            server_name: "broker-1".into(),
        },
        outbound: OutboundSettings {
            max_bytes: 1 << 20,
            slow_consumer: SlowConsumerPolicy::Drop,
        },
        queues: QueueSettings {
            max_messages: 1000,
            max_bytes: 1 << 20,
            max_queues: 50,
            overflow: QueueOverflow::DropOldest,
        },
        memory: MemorySettings {
            high_watermark: 512 << 20,
        },
        buffers: BufferSettings {
            read_buffer_size: 8192,
            pool_buffers: 32,
            read_budget: 65536,
        },
        timeouts: TimeoutSettings {
            handshake: Dur::from_millis(3000),
            close: Dur::from_millis(1500),
            shutdown: Dur::from_millis(60_000),
        },
        tls: TlsSettings {
            cert: pem_files().0.clone(),
            key: pem_files().1.clone(),
            websocket: true,
            tcp: true,
        },
        auth: AuthSettings {
            users_file: auth_files().0.clone(),
            anonymous: true,
            acl_file: auth_files().1.clone(),
            workers: 3,
            max_pending_per_ip: 7,
            max_hash_memory: 32768,
        },
    }
}

fn parse(text: &str) -> Result<Settings, ConfigError> {
    Settings::from_toml(text, "test.toml")
}

fn cli(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("stompbox").chain(args.iter().copied())).unwrap()
}

/// A file in the temp dir, unique to this test run.
fn temp_file(text: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "stompbox-settings-{}-{}.toml",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, text).unwrap();
    path
}

/// `section.key` -> value, for comparing settings option by option.
fn flatten(s: &Settings) -> BTreeMap<String, toml::Value> {
    let table: toml::Table = toml::from_str(&s.to_toml().unwrap()).unwrap();
    let mut out = BTreeMap::new();
    for (k, v) in table {
        match v {
            toml::Value::Table(t) => {
                for (k2, v2) in t {
                    out.insert(format!("{k}.{k2}"), v2);
                }
            }
            v => {
                out.insert(k, v);
            }
        }
    }
    out
}

/// The messages of a configuration's problems, as printed.
fn problems(s: &Settings) -> Vec<String> {
    match s.validate() {
        Ok(()) => Vec::new(),
        Err(e) => e.to_string().lines().map(str::to_owned).collect(),
    }
}

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
    back.tls.cert = full().tls.cert;
    back.tls.key = full().tls.key;
    back.auth = full().auth;
    assert_eq!(back, full());
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
        (
            "auth.users_file",
            &["--users-file", "users.txt"],
            r#""users.txt""#,
        ),
        ("auth.anonymous", &["--anonymous"], "true"),
        ("auth.acl_file", &["--acl-file", "acl.txt"], r#""acl.txt""#),
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
        (|s| { s.tls.tcp = true; s.tls.key = "k.pem".into(); }, "tls.cert: required when tls.websocket or tls.tcp is on"),
        (|s| { s.tls.websocket = true; s.tls.cert = "c.pem".into(); }, "tls.key: required when tls.websocket or tls.tcp is on"),
        (|s| s.tls.cert = "c.pem".into(), "tls: a certificate or key is set but neither tls.websocket nor tls.tcp is on"),
        (
            |s| {
                s.tls = TlsSettings { cert: "c.pem".into(), key: "k.pem".into(), websocket: true, tcp: false };
                s.listen.websocket = Listener::Off;
            },
            "tls.websocket: listen.websocket is off",
        ),
        (
            |s| {
                s.tls = TlsSettings { cert: "c.pem".into(), key: "k.pem".into(), websocket: false, tcp: true };
                s.listen.tcp = Listener::Off;
            },
            "tls.tcp: listen.tcp is off",
        ),
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
        },
        ..Settings::default()
    };
    s.validate().unwrap();
    s.listen.tcp = "127.0.0.2:61614".parse().unwrap();
    s.validate().unwrap();
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

#[test]
fn durations_parse_and_print() {
    for (text, ms, printed) in [
        ("0", 0, "0s"),
        ("0ms", 0, "0s"),
        ("250ms", 250, "250ms"),
        ("1500ms", 1500, "1500ms"),
        ("10s", 10_000, "10s"),
        ("90s", 90_000, "90s"),
        ("120s", 120_000, "2m"),
        ("5m", 300_000, "5m"),
        ("5min", 300_000, "5m"),
        ("1h", 3_600_000, "1h"),
        (" 2 s ", 2000, "2s"),
    ] {
        let d: Dur = text.parse().unwrap();
        assert_eq!(d.millis(), ms, "{text}");
        assert_eq!(d.to_string(), printed, "{text}");
        assert_eq!(printed.parse::<Dur>().unwrap(), d);
    }
    for bad in [
        "",
        "10",
        "s",
        "1.5s",
        "-1s",
        "10 sec",
        "99999999999999999999h",
    ] {
        assert!(bad.parse::<Dur>().is_err(), "{bad}");
    }
}

#[test]
fn listeners_parse_and_print() {
    assert_eq!("off".parse::<Listener>().unwrap(), Listener::Off);
    assert_eq!("OFF".parse::<Listener>().unwrap(), Listener::Off);
    let l: Listener = "[::1]:61613".parse().unwrap();
    assert_eq!(l.to_string(), "[::1]:61613");
    assert_eq!(l.addr(), Some("[::1]:61613".parse().unwrap()));
    for bad in ["", "61613", "localhost:61613", "127.0.0.1"] {
        assert!(bad.parse::<Listener>().is_err(), "{bad}");
    }
}

#[test]
fn log_filters_choose_the_longest_matching_target() {
    let f: LogFilter = "warn, stompbox::server=debug,stompbox::server::conn=trace,mio=off"
        .parse()
        .unwrap();
    assert_eq!(f.level_for("stompbox"), LevelFilter::Warn);
    assert_eq!(f.level_for("stompbox::server"), LevelFilter::Debug);
    assert_eq!(f.level_for("stompbox::server::reactor"), LevelFilter::Debug);
    assert_eq!(f.level_for("stompbox::server::conn"), LevelFilter::Trace);
    assert_eq!(f.level_for("stompbox::serverless"), LevelFilter::Warn);
    assert_eq!(f.level_for("mio::poll"), LevelFilter::Off);
    assert_eq!(f.max_level(), LevelFilter::Trace);
    assert_eq!(
        f.to_string(),
        "warn,stompbox::server=debug,stompbox::server::conn=trace,mio=off"
    );
    assert_eq!(f.to_string().parse::<LogFilter>().unwrap(), f);

    let f: LogFilter = "DEBUG".parse().unwrap();
    assert_eq!(
        (f.to_string().as_str(), f.max_level()),
        ("debug", LevelFilter::Debug)
    );
    let f: LogFilter = "stompbox=trace".parse().unwrap();
    assert_eq!(f.level_for("other"), LevelFilter::Info);
    assert_eq!(f.level_for("stompbox::x"), LevelFilter::Trace);
    for bad in ["loud", "=debug", "stompbox=loud", "a b=info"] {
        assert!(bad.parse::<LogFilter>().is_err(), "{bad}");
    }
}

/// Fields of `Config` (nested as `struct.field`) that no file can set.
/// Fields set from other options (`queues.window`: half of `outbound.max_bytes`).
const CODE_ONLY: &[&str] = &["app", "queues.window"];

/// Fields of `Config` that `Settings` maps.
const MAPPED: &[&str] = &[
    "listen",
    "tcp_listen",
    "metrics_listen",
    "max_connections",
    "max_connections_per_ip",
    "reactors",
    "echo",
    "max_frame_size",
    "max_message_size",
    "handshake.max_request_bytes",
    "handshake.protocols",
    "handshake.allowed_origins",
    "handshake_timeout",
    "close_timeout",
    "shutdown_timeout",
    "read_buffer_size",
    "pool_buffers",
    "read_budget",
    "max_outbound",
    "stomp_limits.max_headers",
    "stomp_limits.max_header_line",
    "stomp_limits.max_body",
    "session.heartbeat",
    "session.min_heartbeat",
    "session.max_subscriptions",
    "session.max_pattern_words",
    "session.default_prefetch",
    "session.max_prefetch",
    "session.max_transactions",
    "session.max_tx_frames",
    "session.max_tx_bytes",
    "session.server_name",
    "heartbeat_grace",
    "queues.max_messages",
    "queues.max_bytes",
    "queues.max_queues",
    "memory_high_watermark",
    "queues.overflow",
    "slow_consumer",
    "tls",
    "acl",
    "session.authenticator",
    "auth_workers",
    "auth_pending_per_ip",
];

/// `field` or `struct.field` -> its value, read from `Config`'s pretty `Debug` output.
fn config_fields(c: &Config) -> BTreeMap<String, String> {
    let text = format!("{c:#?}");
    let mut out = BTreeMap::<String, String>::new();
    let mut parent: Option<String> = None;
    let mut current: Option<String> = None;
    for line in text.lines().skip(1) {
        let t = line.trim_start();
        let indent = line.len() - t.len();
        let field = t.split_once(": ").filter(|(name, _)| {
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        });
        match (indent, field) {
            (4, Some((name, value))) => {
                let is_struct = value
                    .strip_suffix(" {")
                    .is_some_and(|ty| ty.bytes().all(|b| b.is_ascii_alphanumeric()));
                if is_struct {
                    parent = Some(name.to_owned());
                    current = None;
                } else {
                    parent = None;
                    current = Some(name.to_owned());
                    out.insert(name.to_owned(), value.to_owned());
                }
            }
            (8, Some((name, value))) if parent.is_some() => {
                let path = format!("{}.{name}", parent.as_deref().unwrap_or_default());
                out.insert(path.clone(), value.to_owned());
                current = Some(path);
            }
            _ => {
                if let Some(v) = current.as_ref().and_then(|c| out.get_mut(c)) {
                    v.push_str(t);
                }
            }
        }
    }
    out
}

#[test]
fn every_config_field_is_mapped_or_code_only() {
    let fields = config_fields(&Config::default());
    assert!(fields.len() > 30, "{fields:?}");
    for path in fields.keys() {
        assert!(
            MAPPED.contains(&path.as_str()) || CODE_ONLY.contains(&path.as_str()),
            "Config field `{path}` has no option in Settings (map it, or list it in CODE_ONLY)"
        );
    }
    for path in MAPPED {
        assert!(fields.contains_key(*path), "`{path}` is not a Config field");
    }
}

#[test]
fn every_mapped_field_is_set_from_the_file() {
    // FULL changes every option, so every mapped field must differ from the default.
    let defaults = config_fields(&Config::default());
    let set = config_fields(&full().to_config().unwrap());
    for path in MAPPED {
        assert_ne!(
            defaults.get(*path),
            set.get(*path),
            "`{path}` ignores its option"
        );
    }
    for path in CODE_ONLY {
        assert_eq!(defaults.get(*path), set.get(*path), "`{path}`");
    }
}

#[test]
fn readme_example_file_is_valid_and_shows_every_key() {
    let readme = include_str!("../../README.md");
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

#[test]
fn tls_files_are_read_and_named() {
    let (cert, key) = pem_files();
    let mut s = Settings {
        tls: TlsSettings {
            cert: cert.clone(),
            key: key.clone(),
            websocket: true,
            tcp: false,
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
