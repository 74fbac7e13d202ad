//! What an operator touches first (issue 19): the open-file limit, refusals in the log, and
//! the rest of the production checklist, each checked on the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/ops.rs"]
mod ops;

use ops::*;

/// Under the usual soft limit of 1,024 (and a hard limit above it), the broker raises its soft
/// limit to the hard one, says so, and serves far more than 1,000 sessions.
#[test]
fn the_soft_open_file_limit_is_raised_to_the_hard_one() {
    let _g = exclusive();
    let hard: u64 = std::fs::read_to_string("/proc/self/limits")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4).map(str::to_owned))
        .and_then(|h| h.parse().ok())
        .unwrap_or(4096);
    assert!(
        hard > 1200,
        "the test needs a hard limit above 1,200 (have {hard})"
    );
    let b = Broker::spawn_under(Some("ulimit -Sn 256".into()), &[]);
    let log = b.log_text();
    assert!(
        log.contains(&format!("open-file limit raised from 256 to {hard}")),
        "{log}"
    );
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", b.pid())).unwrap();
    let soft: u64 = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|s| s.parse().ok())
        .unwrap();
    assert_eq!(soft, hard);
    // 600 sessions: more than the soft limit it was started with allows.
    let mut held = Vec::new();
    for _ in 0..600 {
        let mut s = TcpStream::connect(b.tcp).unwrap();
        s.write_all(b"CONNECT\naccept-version:1.2\nhost:/\n\n\0")
            .unwrap();
        held.push(s);
    }
    for s in &mut held {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 9];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"CONNECTED");
    }
}

/// `connections.max` beyond what the open-file limit allows is warned about at start.
#[test]
fn connections_max_past_the_open_file_limit_is_warned_about() {
    let _g = shared();
    let b = Broker::spawn(Some(512), &["--max-connections".into(), "100000".into()]);
    let log = b.log_text();
    assert!(
        log.contains("connections.max is 100000 but the open-file limit (512) allows about"),
        "{log}"
    );
}

/// Refusals are logged by reason, at most every 10 s per reason (with a count), not once per
/// connection.
#[test]
fn refusals_are_logged_by_reason_and_rate_limited() {
    let _g = shared();
    let b = Broker::spawn(None, &["--max-connections".into(), "3".into()]);
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(TcpStream::connect(b.tcp).unwrap());
    }
    let found = wait_for(TIMEOUT, || {
        b.log_text()
            .contains("refusing connections: connections.max (3) reached")
            .then_some(())
    });
    assert!(found.is_some(), "{}", b.log_text());
    std::thread::sleep(Duration::from_millis(300));
    let n = b.log_text().matches("refusing connections").count();
    assert_eq!(n, 1, "one line per reason and 10 s: {}", b.log_text());
}

/// `--version` names the version and the git revision the binary was built from.
#[test]
fn version_names_the_git_revision() {
    let out = Command::new(env!("CARGO_BIN_EXE_stompbox"))
        .arg("--version")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let rev = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8(o.stdout).unwrap().trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    assert_eq!(
        text.trim(),
        format!("stompbox {} ({rev})", env!("CARGO_PKG_VERSION"))
    );
}

/// A listener that cannot bind is named with its address.
#[test]
fn address_in_use_names_the_listener() {
    let _g = shared();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = Command::new(env!("CARGO_BIN_EXE_stompbox"))
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "off"])
        .args(["--tcp-listen", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(&format!(
            "listen.tcp 127.0.0.1:{port}: Address already in use"
        )),
        "{err}"
    );
}

fn print_config(env: &[(&str, &str)], args: &[&str]) -> (Option<i32>, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_stompbox"));
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.args(args).arg("--print-config").output().unwrap();
    (
        out.status.code(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// Every option can come from a `STOMPBOX_*` variable, between the file and the flags;
/// `--print-config` shows the result; every bad variable is named at once.
#[test]
fn options_come_from_the_environment_between_the_file_and_the_flags() {
    let file = std::env::temp_dir().join(format!("stompbox-env-{}.toml", std::process::id()));
    std::fs::write(&file, "reactors = 5\n[heartbeat]\nsend = \"7s\"\n").unwrap();
    let f = file.to_str().unwrap();
    let env = [
        ("STOMPBOX_REACTORS", "3"),
        ("STOMPBOX_LISTEN_WEBSOCKET", "127.0.0.1:18999"),
        ("STOMPBOX_SOCKJS_PREFIX", "/fallback"),
        ("STOMPBOX_NO_SUCH_THING", "1"),
    ];
    let (code, out, err) = print_config(&env, &["--config", f]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("\nreactors = 3\n"),
        "the variable beats the file: {out}"
    );
    assert!(
        out.contains("send = \"7s\""),
        "the file beats the defaults: {out}"
    );
    assert!(out.contains("websocket = \"127.0.0.1:18999\""), "{out}");
    assert!(out.contains("prefix = \"/fallback\""), "{out}");
    assert!(err.contains("ignoring STOMPBOX_NO_SUCH_THING"), "{err}");
    let (_, out, _) = print_config(&env, &["--config", f, "--reactors", "4"]);
    assert!(
        out.contains("\nreactors = 4\n"),
        "the flag beats the variable: {out}"
    );
    let bad = [("STOMPBOX_REACTORS", "many"), ("STOMPBOX_ECHO", "maybe")];
    let (code, _, err) = print_config(&bad, &[]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("STOMPBOX_REACTORS: `many` is not a whole number"),
        "{err}"
    );
    assert!(
        err.contains("STOMPBOX_ECHO: `maybe` is not true or false"),
        "{err}"
    );
    std::fs::remove_file(file).unwrap();
}

/// The packaging under dist/ says what operators need: a multi-stage image running as a
/// non-root user, and a unit with the open-file limit, restarts and reload by SIGHUP (CI also
/// runs `systemd-analyze verify` on the unit where it is installed).
#[test]
fn dist_has_a_container_image_and_a_systemd_unit() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let docker = std::fs::read_to_string(root.join("dist/Dockerfile")).unwrap();
    let stages = docker.lines().filter(|l| l.starts_with("FROM ")).count();
    assert!(stages >= 2, "multi-stage: {stages} stage(s)");
    let user = docker
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    assert!(
        !user.starts_with("root") && !user.starts_with('0'),
        "runs as {user}"
    );
    assert!(
        docker.contains("--ulimit nofile="),
        "the open-file limit is documented"
    );
    assert!(docker.contains("--locked"), "builds from Cargo.lock");
    let unit = std::fs::read_to_string(root.join("dist/stompbox.service")).unwrap();
    for line in [
        "LimitNOFILE=",
        "Restart=on-failure",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "User=stompbox",
    ] {
        assert!(unit.contains(line), "unit lacks {line}");
    }
}

/// Log lines come through tracing-subscriber: text by default, one JSON object per line with
/// `--log-format json`; connections are named by their peer address and transport, not by
/// Rust debug values.
#[test]
fn logs_are_text_or_json_lines_and_name_peers() {
    let _g = shared();
    let b = Broker::spawn(
        None,
        &[
            "--log-format".into(),
            "json".into(),
            "--log-level".into(),
            "debug".into(),
        ],
    );
    let s = TcpStream::connect(b.tcp).unwrap();
    let local = s.local_addr().unwrap();
    drop(s);
    let found = wait_for(TIMEOUT, || {
        b.log_text()
            .contains(&format!("TCP connection from {local} closed"))
            .then_some(())
    });
    let log = b.log_text();
    assert!(found.is_some(), "{log}");
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["target"].is_string(), "{line}");
        assert!(v["message"].is_string(), "{line}");
    }
    assert!(
        log.contains(&format!("TCP connection from {local}")),
        "{log}"
    );
    assert!(!log.contains("Token("), "{log}");
    assert!(!log.contains("Some("), "{log}");
    let text = Broker::spawn(None, &[]);
    let first = text
        .log_text()
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(
        first.contains(" INFO ") && first.contains("stompbox"),
        "{first}"
    );
    assert!(serde_json::from_str::<serde_json::Value>(&first).is_err());
}

/// `/metrics` follows the conventions tools check: one family per name (no gauge `x` beside a
/// counter `x_total`), `_total` only on counters, `_seconds`/`_bytes` units, and what operators
/// look for: build info, process metrics, histograms. (The interop script also parses it with
/// the Prometheus project's own OpenMetrics and text parsers.)
#[test]
fn metrics_follow_the_naming_conventions() {
    let _g = shared();
    let (h, ws) = common::server_with(|c| c.metrics_listen = Some("127.0.0.1:0".parse().unwrap()));
    let addr = h.metrics_addr().unwrap();
    // A handshake and a delivery, so the histograms have something.
    let _c = Client::connect_ws(ws);
    let tcp = h.tcp_addr().unwrap();
    let mut sub = Client::stomp_tcp(tcp);
    sub.subscribe("/topic/histo", "s");
    let mut publ = Client::stomp_tcp(tcp);
    publ.publish("/topic/histo", b"x", Some("r"));
    publ.expect_receipt("r");
    sub.msg();
    let m = wait_for(TIMEOUT, || {
        let m = scrape(addr);
        (m.get("stompbox_handshake_seconds_count") >= 1.0
            && m.get("stompbox_delivery_seconds_count") >= 1.0)
            .then_some(m)
    })
    .expect("the histograms count the handshake and the delivery");
    assert!(m.get("stompbox_delivery_seconds_sum") < 1.0, "{}", m.text);
    assert!(m.text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    let mut families: Vec<(String, String)> = Vec::new();
    for line in m.text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(
                !families.iter().any(|(n, _)| n == name),
                "family {name} declared twice"
            );
            families.push((name.to_string(), kind.to_string()));
        }
    }
    for (name, kind) in &families {
        assert!(
            !name.ends_with("_total"),
            "{name}: the family name carries no _total"
        );
        // A sample of another family must not take this family's names.
        for (other, _) in families.iter().filter(|(o, _)| o != name) {
            for suffix in ["_total", "_bucket", "_count", "_sum", "_info", "_created"] {
                assert_ne!(
                    format!("{name}{suffix}"),
                    *other,
                    "{other} clashes with {name} ({kind})"
                );
            }
        }
    }
    let kind = |n: &str| {
        families
            .iter()
            .find(|(f, _)| f == n)
            .map(|(_, k)| k.as_str())
    };
    assert_eq!(kind("stompbox_connections"), Some("gauge"));
    assert_eq!(kind("stompbox_connections_accepted"), Some("counter"));
    assert_eq!(kind("stompbox_build"), Some("info"));
    assert_eq!(
        kind("stompbox_reactor_loop_turn_seconds"),
        Some("histogram")
    );
    assert_eq!(kind("process_resident_memory_bytes"), Some("gauge"));
    assert_eq!(kind("process_cpu_seconds"), Some("counter"));
    assert!(m.get("process_open_fds") > 0.0 && m.get("process_max_fds") > 0.0);
    assert!(m.get("process_resident_memory_bytes") > 1e6);
    let build = m
        .values
        .keys()
        .find(|k| k.starts_with("stompbox_build_info{"))
        .expect("build info");
    assert!(
        build.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))),
        "{build}"
    );
    assert!(m.get("stompbox_reactor_loop_turn_seconds_count") > 0.0);
    assert_eq!(
        m.get("stompbox_reactor_loop_turn_seconds_bucket{le=\"+Inf\"}"),
        m.get("stompbox_reactor_loop_turn_seconds_count")
    );
}

/// One scraper that connects and never sends its request does not hold the others.
#[test]
fn a_stalled_scraper_does_not_hold_the_others() {
    let _g = shared();
    let (h, _) = common::server_with(|c| c.metrics_listen = Some("127.0.0.1:0".parse().unwrap()));
    let addr = h.metrics_addr().unwrap();
    let mut stalled = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /metr").unwrap();
        stalled.push(s);
    }
    for _ in 0..5 {
        let t = Instant::now();
        let (status, _) = http_get(addr, "/healthz");
        assert_eq!(status, 200);
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "a scrape waited {:?}",
            t.elapsed()
        );
    }
}

/// `/readyz`: ready when every reactor turns (they are woken and must answer) and, in cluster
/// mode, the NATS link is up.
#[test]
fn readyz_says_whether_the_node_can_serve() {
    let _g = shared();
    let (h, _) = common::server_with(|c| {
        c.reactors = 3;
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    });
    let (status, body) = http_get(h.metrics_addr().unwrap(), "/readyz");
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    // Cluster mode with no NATS to join: alive, not ready.
    let (h, _) = common::server_with(|c| {
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        c.cluster = Some(stompbox::cluster::ClusterConfig {
            servers: vec![format!("nats://127.0.0.1:{}", free_port())],
            ..Default::default()
        });
    });
    let addr = h.metrics_addr().unwrap();
    assert_eq!(http_get(addr, "/healthz").0, 200);
    let (status, body) = http_get(addr, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("NATS link is down"), "{body}");
}

/// Queues by name, the deepest `queues.metrics_labels` of them (label cardinality bounded
/// whatever clients name), and destinations by kind.
#[test]
fn the_deepest_queues_are_reported_by_name_within_the_bound() {
    let _g = shared();
    let (h, _) = common::server_with(|c| {
        c.queues.metrics_labels = 2;
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    });
    let mut p = Client::connect_tcp(h.tcp_addr().unwrap());
    p.connected(b"CONNECT\naccept-version:1.2\nhost:/\n\n\0");
    for (q, n) in [
        ("/queue/deep", 5),
        ("/queue/middle", 3),
        ("/queue/shallow", 1),
    ] {
        for i in 0..n {
            let last = i + 1 == n;
            let receipt = if last { "receipt:r\n" } else { "" };
            p.send(format!("SEND\ndestination:{q}\n{receipt}\nm\0").as_bytes());
            if last {
                p.expect_receipt("r");
            }
        }
    }
    let addr = h.metrics_addr().unwrap();
    let m = wait_for(TIMEOUT, || {
        let m = scrape(addr);
        let depth = |q: &str| {
            m.values
                .get(&format!("stompbox_queue_depth{{queue=\"{q}\"}}"))
                .copied()
        };
        (depth("/queue/middle") == Some(3.0) && depth("/queue/deep") == Some(5.0)).then_some(m)
    })
    .unwrap_or_else(|| panic!("{}", scrape(addr).text));
    assert_eq!(m.get("stompbox_queue_depth{queue=\"/queue/deep\"}"), 5.0);
    assert!(
        !m.text.contains("/queue/shallow"),
        "bounded to 2 queues:\n{}",
        m.text
    );
    assert_eq!(
        m.get("stompbox_queue_consumer_count{queue=\"/queue/deep\"}"),
        0.0
    );
    assert_eq!(m.get("stompbox_destinations{kind=\"queue\"}"), 3.0);
}
