use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use clap::Parser;
use log::LevelFilter;

use super::*;

mod file;
mod flags;
mod mapping;
mod validation;
mod values;

/// Every option, none at its default.
const FULL: &str = r#"
log_level = "warn,stompbox::server=debug"
log_format = "json"
reactors = 3
echo = true

[listen]
websocket = "0.0.0.0:8080"
tcp = "0.0.0.0:7613"
metrics = "127.0.0.1:9999"
admin = "127.0.0.1:9443"

[connections]
max = 5000
max_per_ip = 50

[websocket]
max_frame_size = 65536
max_message_size = 1048576
max_handshake_size = 4096
subprotocols = ["v12.stomp"]
allowed_origins = ["https://app.example.com", "http://localhost:3000"]

[websocket.compression]
enabled = true
min_size = 100
level = 6
server_max_window_bits = 12
client_max_window_bits = 10
server_no_context_takeover = false
client_no_context_takeover = false

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
store = "jetstream"
replicas = 3
ack_wait = "5s"
metrics_labels = 7

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
admin = true

[auth]
users_file = "@USERS@"
anonymous = true
acl_file = "@ACL@"
workers = 3
max_pending_per_ip = 7
max_hash_memory = 32768

[cluster]
nats = ["nats://127.0.0.1:4222", "nats://127.0.0.1:4223"]
node_name = "edge-1"
subject_prefix = "sbx.prod"
user = "node"
password = "pw"
token = "tok"
credentials = "node.creds"
tls_ca = "ca.pem"
tls_cert = "node.pem"
tls_key = "node.key"
require_tls = true
max_pending = 1000
max_pending_bytes = 1048576

[sockjs]
enabled = false
prefix = "/fallback"
heartbeat = "20s"
disconnect_delay = "7s"
response_limit = 65536
max_body = 4096
max_sessions = 999
websocket = false
cookie_needed = true
client_url = "/js/sockjs.min.js"

[admin]
enabled = true
token = "0123456789abcdef-token"
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
        log_format: LogFormat::Json,
        reactors: 3,
        echo: true,
        listen: ListenSettings {
            websocket: Listener::On("0.0.0.0:8080".parse().unwrap()),
            tcp: Listener::On("0.0.0.0:7613".parse().unwrap()),
            metrics: Listener::On("127.0.0.1:9999".parse().unwrap()),
            admin: Listener::On("127.0.0.1:9443".parse().unwrap()),
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
            compression: CompressionSettings {
                enabled: true,
                min_size: 100,
                level: 6,
                server_max_window_bits: 12,
                client_max_window_bits: 10,
                server_no_context_takeover: false,
                client_no_context_takeover: false,
            },
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
            store: QueueStoreKind::Jetstream,
            replicas: 3,
            ack_wait: Dur::from_millis(5000),
            metrics_labels: 7,
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
            admin: true,
        },
        auth: AuthSettings {
            users_file: auth_files().0.clone(),
            anonymous: true,
            acl_file: auth_files().1.clone(),
            workers: 3,
            max_pending_per_ip: 7,
            max_hash_memory: 32768,
        },
        cluster: ClusterSettings {
            nats: vec![
                "nats://127.0.0.1:4222".into(),
                "nats://127.0.0.1:4223".into(),
            ],
            node_name: "edge-1".into(),
            subject_prefix: "sbx.prod".into(),
            user: "node".into(),
            password: "pw".into(),
            token: "tok".into(),
            credentials: "node.creds".into(),
            tls_ca: "ca.pem".into(),
            tls_cert: "node.pem".into(),
            tls_key: "node.key".into(),
            require_tls: true,
            max_pending: 1000,
            max_pending_bytes: 1 << 20,
        },
        sockjs: SockjsSettings {
            enabled: false,
            prefix: "/fallback".into(),
            heartbeat: Dur::from_millis(20_000),
            disconnect_delay: Dur::from_millis(7_000),
            response_limit: 65536,
            max_body: 4096,
            max_sessions: 999,
            websocket: false,
            cookie_needed: true,
            client_url: "/js/sockjs.min.js".into(),
        },
        admin: AdminSettings {
            enabled: true,
            token: "0123456789abcdef-token".into(),
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
    // Tables nest (`websocket.compression.level`): walk them with a stack, not recursion.
    let mut stack: Vec<(String, toml::Table)> = vec![(String::new(), table)];
    while let Some((prefix, t)) = stack.pop() {
        for (k, v) in t {
            let key = if prefix.is_empty() {
                k
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::Table(t) => stack.push((key, t)),
                v => {
                    out.insert(key, v);
                }
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
