//! Every `Config` field has an option (or is code-only), and the file sets each.

use super::*;

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
    "handshake.deflate",
    "compression.level",
    "compression.min_size",
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
    "queues.metrics_labels",
    "memory_high_watermark",
    "queues.overflow",
    "queues.store",
    "queues.replicas",
    "queues.ack_wait",
    "slow_consumer",
    "tls",
    "acl",
    "session.authenticator",
    "auth_workers",
    "auth_pending_per_ip",
    "cluster",
    "sockjs",
    "admin",
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
