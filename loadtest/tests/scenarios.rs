//! Every scenario for a second or so against a stompbox started by the test (in process, on
//! 127.0.0.1:0), checked for what a correct broker and a correct tool must show.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use clap::Parser;
use loadtest::cli::Cli;
use loadtest::report::{json, Report};

fn server() -> (stompbox::ServerHandle, SocketAddr) {
    let h = stompbox::start(stompbox::Config {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        tcp_listen: Some("127.0.0.1:0".parse().unwrap()),
        reactors: 2,
        ..Default::default()
    })
    .expect("stompbox starts");
    let a = h.ws_addr().expect("ws addr");
    (h, a)
}

fn run(args: &str, addr: SocketAddr) -> Report {
    let mut argv: Vec<String> = vec!["loadtest".into()];
    argv.extend(args.split_whitespace().map(String::from));
    argv.extend([
        "--url".into(),
        format!("ws://{addr}/ws"),
        "--quiet".into(),
        "--warmup".into(),
        "0.3".into(),
        "--drain".into(),
        "3".into(),
    ]);
    let cli = Cli::try_parse_from(&argv).expect("arguments parse");
    let r = loadtest::run_scenario(&cli).expect("scenario runs");
    println!("{}", r.human());
    r
}

fn m(r: &Report, k: &str) -> f64 {
    r.get(k).unwrap_or_else(|| panic!("metric {k} missing"))
}

/// Nothing lost; otherwise fail with the broker's own counts beside the report's, to tell
/// loss in the broker from loss in the client.
fn no_loss(r: &Report, h: &stompbox::ServerHandle) {
    if m(r, "loss") == 0.0 {
        return;
    }
    let counts: Vec<String> = h
        .metrics()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            ["messages_", "slow", "dropped", "outbound", "refused"]
                .iter()
                .any(|k| l.contains(k))
        })
        .map(String::from)
        .collect();
    panic!(
        "loss {}: published {}, expected {}, delivered {}, failures {:?}, warnings {:?}\nbroker:\n{}",
        m(r, "loss"),
        m(r, "published"),
        m(r, "expected"),
        m(r, "delivered"),
        r.failures,
        r.warnings,
        counts.join("\n")
    );
}

#[test]
fn connect_opens_holds_and_closes_cleanly() {
    let (h, addr) = server();
    let pid = std::process::id();
    let r = run(
        &format!("connect -n 300 --hold 0.8 --keepalive 0.2 --concurrency 50 --server-pid {pid}"),
        addr,
    );
    assert_eq!(m(&r, "sessions_ready"), 300.0);
    assert_eq!(m(&r, "sessions_failed"), 0.0);
    assert_eq!(m(&r, "sessions_closed_clean"), 300.0, "{:?}", r.failures);
    assert!(m(&r, "connect_rate") > 0.0);
    assert!(r.get("broker_bytes_per_session").is_some());
    assert_eq!(r.latencies[0].summary.count, 300);
    assert!(r.failures.is_empty(), "{:?}", r.failures);
    h.shutdown().unwrap();
}

#[test]
fn fanout_delivers_everything_with_latency_and_writes_reports() {
    let (h, addr) = server();
    let dir = std::env::temp_dir().join(format!("loadtest-fanout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let jp = dir.join("fanout.json");
    let hp = dir.join("fanout.html");
    let args = format!(
        "fanout -p 2 -s 20 -t 4 --duration 1 --rate 2000 --json {} --report {}",
        jp.display(),
        hp.display()
    );
    let cli = {
        let mut argv: Vec<String> = vec!["loadtest".into()];
        argv.extend(args.split_whitespace().map(String::from));
        argv.extend(["--url".into(), format!("ws://{addr}/ws"), "--quiet".into()]);
        argv.extend(["--warmup".into(), "0.3".into()]);
        Cli::try_parse_from(&argv).unwrap()
    };
    let r = loadtest::run_scenario(&cli).unwrap();
    loadtest::write_outputs(&cli, &r).unwrap();
    println!("{}", r.human());
    assert_eq!(m(&r, "sessions_ready"), 22.0);
    // 2000 msg/s over 4 topics of 5 subscribers: 5 deliveries per message.
    let published = m(&r, "published_per_s");
    assert!((1500.0..2500.0).contains(&published), "{published}");
    assert!((m(&r, "delivered_per_s") / published - 5.0).abs() < 0.5);
    no_loss(&r, &h);
    assert_eq!(m(&r, "expected"), m(&r, "published") * 5.0);
    let e2e = &r.latencies[0].summary;
    assert!(e2e.count > 1000 && e2e.p50_us > 0.0 && e2e.p50_us <= e2e.p99_us);
    assert!(!r.series.is_empty());
    let back = json::from_str(&std::fs::read_to_string(&jp).unwrap()).unwrap();
    assert_eq!(back.get("loss"), Some(0.0));
    let page = std::fs::read_to_string(&hp).unwrap();
    assert_eq!(page.matches("<svg ").count(), 2);
    h.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fanout_at_max_rate_loses_nothing() {
    let (h, addr) = server();
    let r = run("fanout -s 10 --duration 1 --window 200", addr);
    assert!(m(&r, "delivered_per_s") > 10_000.0);
    no_loss(&r, &h);
    assert_eq!(m(&r, "sessions_dropped"), 0.0);
    h.shutdown().unwrap();
}

#[test]
fn broadcast_reaches_every_subscriber() {
    let (h, addr) = server();
    let pid = std::process::id();
    let r = run(
        &format!("broadcast -s 200 --interval-ms 50 --duration 1 --server-pid {pid}"),
        addr,
    );
    let n = m(&r, "broadcasts");
    assert!((15.0..=25.0).contains(&n), "{n}");
    assert_eq!(m(&r, "broadcasts_complete"), n);
    assert!(m(&r, "last_p99_ms") >= m(&r, "last_p50_ms"));
    assert!(m(&r, "last_p50_ms") > 0.0);
    // The set-up phase is a connect run of its own: 200 subscribers and the publisher.
    assert!(m(&r, "connect_rate") > 0.0);
    assert!(r.get("broker_bytes_per_session").is_some());
    let ready = r
        .latencies
        .iter()
        .find(|l| l.key == "ready")
        .map(|l| l.summary.count);
    assert_eq!(ready, Some(201));
    h.shutdown().unwrap();
}

#[test]
fn queue_gives_each_message_to_one_consumer_and_acks_it() {
    let (h, addr) = server();
    let r = run(
        "queue --producers 2 --consumers 3 --duration 1 --rate 3000",
        addr,
    );
    let sent = m(&r, "sent");
    assert!(sent > 1000.0);
    assert!(
        !loadtest::scenario::queue::topic_like(&r),
        "stompbox has /queue/ semantics since the queues commit"
    );
    assert_eq!(m(&r, "unique"), sent, "every message consumed");
    assert_eq!(m(&r, "duplicates"), 0.0);
    no_loss(&r, &h);
    assert_eq!(m(&r, "acked"), m(&r, "received"));
    h.shutdown().unwrap();
}

#[test]
fn queue_nacks_are_redelivered_once_and_nothing_is_lost() {
    let (h, addr) = server();
    let r = run(
        "queue --producers 1 --consumers 2 --duration 1 --rate 2000 --nack-every 10",
        addr,
    );
    let nacked = m(&r, "nacked");
    assert!(nacked > 50.0, "{nacked}");
    // Only first deliveries are refused, so each comes back exactly once, marked.
    assert_eq!(m(&r, "redelivered"), nacked);
    assert_eq!(m(&r, "unique"), m(&r, "sent"));
    assert_eq!(m(&r, "duplicates"), 0.0);
    no_loss(&r, &h);
    h.shutdown().unwrap();
}

#[test]
fn sweep_repeats_each_setting_and_reports_median_and_spread() {
    let cli = Cli::try_parse_from([
        "loadtest",
        "sweep",
        "--stompbox",
        "inproc",
        "--max-reactors",
        "2",
        "--repeats",
        "2",
        "--",
        "fanout",
        "-s",
        "5",
        "--duration",
        "0.7",
        "--warmup",
        "0.2",
        "--quiet",
    ])
    .unwrap();
    let r = loadtest::run_scenario(&cli).unwrap();
    println!("{}", r.human());
    let (head, rows) = r.table.as_ref().unwrap();
    assert_eq!(head[1], "delivered_per_s (median)");
    assert_eq!(head[2], "spread (min – max)");
    assert_eq!(rows.len(), 2);
    assert!(m(&r, "reactors_1") > 0.0 && m(&r, "reactors_2") > 0.0);
    assert!(m(&r, "spread_reactors_1") >= 0.0);
    // Either a best setting (past the spread) or a tie is said, never both.
    let verdict = r
        .params
        .iter()
        .find(|(k, _)| k == "verdict")
        .map(|(_, v)| v.clone())
        .unwrap();
    match r.get("best_reactors") {
        Some(b) => assert!(
            verdict.contains(&format!("--reactors {b} is best")),
            "{verdict}"
        ),
        None => assert!(verdict.starts_with("tie: "), "{verdict}"),
    }
    // Each setting's warnings are kept, marked with it (the broker ran in process).
    let page = loadtest::report::html::render(&r);
    assert!(page.matches("<svg ").count() >= 1, "a sweep chart");
}

/// The real binary: the sweep finds the broker without reading its log (here silenced), and
/// `--fail-if` makes the run exit 1.
#[test]
fn sweep_finds_the_binary_broker_whatever_its_log_level_and_fail_if_fails() {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_loadtest")).with_file_name("stompbox");
    if !bin.exists() {
        eprintln!(
            "no stompbox binary beside loadtest ({}): skipped",
            bin.display()
        );
        return;
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .env("RUST_LOG", "off")
        .args(["sweep", "--stompbox"])
        .arg(&bin)
        .args([
            "--max-reactors",
            "1",
            "--repeats",
            "1",
            "--fail-if",
            "reactors_1<1e15",
        ])
        .args([
            "--",
            "fanout",
            "-s",
            "3",
            "--duration",
            "0.5",
            "--warmup",
            "0.2",
            "--quiet",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("delivered_per_s"), "{stdout}\n{stderr}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("FAILED: --fail-if"), "{stderr}");
}

#[test]
fn a_refused_connection_is_a_counted_failure_not_a_hang() {
    // Bind and drop a listener to find a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cli = Cli::try_parse_from([
        "loadtest",
        "connect",
        "-n",
        "5",
        "--quiet",
        "--url",
        &format!("ws://127.0.0.1:{port}/ws"),
    ])
    .unwrap();
    let e = loadtest::run_scenario(&cli).unwrap_err();
    assert!(e.contains("connection refused"), "{e}");
}

#[test]
fn a_wrong_path_fails_the_handshake_with_its_status() {
    let (h, addr) = server();
    let cli = Cli::try_parse_from([
        "loadtest",
        "connect",
        "-n",
        "3",
        "--quiet",
        "--url",
        &format!("ws://{addr}/nope"),
    ])
    .unwrap();
    let e = loadtest::run_scenario(&cli).unwrap_err();
    assert!(e.contains("HTTP status 404"), "{e}");
    h.shutdown().unwrap();
}

/// `--compression`: against a broker that agrees to permessage-deflate every frame is sent
/// compressed and the deliveries come back compressed (the broker's counters say so); against
/// one that does not, the same run works uncompressed.
#[test]
fn compression_is_used_where_the_broker_agrees() {
    let h = stompbox::start(stompbox::Config {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        tcp_listen: None,
        metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
        reactors: 2,
        handshake: stompbox::ws::HandshakeConfig {
            deflate: Some(stompbox::ws::deflate::DeflateConfig::default()),
            ..Default::default()
        },
        ..Default::default()
    })
    .expect("stompbox starts");
    let addr = h.ws_addr().unwrap();
    let r = run(
        "fanout -p 1 -s 10 -b 2000 --duration 1 --rate 500 --compression",
        addr,
    );
    assert_eq!(m(&r, "sessions_failed"), 0.0, "{:?}", r.failures);
    no_loss(&r, &h);
    assert!(m(&r, "delivered") >= 10.0 * 400.0);
    let metrics = http_get(h.metrics_addr().unwrap(), "/metrics");
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in {metrics}"))
    };
    // Each message compressed once per reactor, whatever the number of subscribers; each SEND
    // (and CONNECT, SUBSCRIBE, DISCONNECT) inflated.
    let segments = value("stompbox_deflate_segments_total");
    let published = m(&r, "published");
    assert!(
        segments >= published && segments <= 2.0 * published + 10.0,
        "{segments} {published}"
    );
    assert!(value("stompbox_inflated_total") >= published);
    h.shutdown().unwrap();
    // Not agreed: plain frames.
    let (h, addr) = server();
    let r = run(
        "fanout -p 1 -s 5 --duration 0.5 --rate 200 --compression",
        addr,
    );
    assert_eq!(m(&r, "sessions_failed"), 0.0, "{:?}", r.failures);
    no_loss(&r, &h);
    h.shutdown().unwrap();
}

fn http_get(addr: SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}
