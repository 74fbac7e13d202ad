//! Several URLs and several load-generator processes, against two stompbox brokers started
//! in this test process (on 127.0.0.1:0). Two standalone brokers do not share messages, so a
//! message reaches only the subscribers on its publisher's broker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use loadtest::cli::Cli;
use loadtest::report::{json, Report};

fn server() -> (stompbox::ServerHandle, SocketAddr) {
    let h = stompbox::start(stompbox::Config {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        tcp_listen: Some("127.0.0.1:0".parse().unwrap()),
        reactors: 1,
        ..Default::default()
    })
    .expect("stompbox starts");
    let a = h.ws_addr().expect("ws addr");
    (h, a)
}

fn url(a: SocketAddr) -> String {
    format!("ws://{a}/ws")
}

/// In this process (one load-generator process).
fn run(args: &str) -> Report {
    let mut argv: Vec<String> = vec!["loadtest".into()];
    argv.extend(args.split_whitespace().map(String::from));
    argv.extend(["--quiet", "--warmup", "0.2", "--drain", "1"].map(String::from));
    let cli = Cli::try_parse_from(&argv).expect("arguments parse");
    let r = loadtest::run_scenario(&cli).expect("scenario runs");
    println!("{}", r.human());
    r
}

/// The loadtest binary (it can re-execute itself for --processes), its JSON result.
fn run_bin(args: &str) -> Report {
    let dir = std::env::temp_dir().join(format!(
        "loadtest-cluster-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let jp = dir.join("r.json");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_loadtest"));
    cmd.args(args.split_whitespace())
        .args(["--quiet", "--warmup", "0.2", "--drain", "1", "--json"])
        .arg(&jp)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("loadtest {args} took more than 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    println!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(status.success(), "loadtest {args}: {status}");
    let r = json::from_str(&std::fs::read_to_string(&jp).unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    r
}

fn m(r: &Report, k: &str) -> f64 {
    r.get(k).unwrap_or_else(|| panic!("metric {k} missing"))
}

fn nm(r: &Report, node: usize, k: &str) -> f64 {
    let n = r
        .nodes
        .get(node)
        .unwrap_or_else(|| panic!("node {node} missing"));
    n.metrics
        .iter()
        .find(|x| x.key == k)
        .unwrap_or_else(|| panic!("node {node} metric {k} missing"))
        .value
}

#[test]
fn two_urls_share_the_sessions_half_and_half() {
    let (ha, a) = server();
    let (hb, b) = server();
    let pid = std::process::id();
    // 20 subscribers alternate A, B; publisher 0 (session 20) goes to A, publisher 1 to B.
    // Each sends exactly 150, and reaches the 10 subscribers on its own broker.
    let r = run(&format!(
        "fanout -p 2 -s 20 -t 1 --rate 1000 --messages 300 --duration 3 --url {},{} \
         --server-pid {pid} --server-pid {pid}",
        url(a),
        url(b)
    ));
    assert_eq!(m(&r, "sessions_ready"), 22.0);
    assert_eq!(m(&r, "published"), 300.0);
    assert_eq!(r.nodes.len(), 2);
    assert_eq!(r.nodes[0].url, url(a));
    assert_eq!(r.nodes[1].url, url(b));
    for node in 0..2 {
        assert_eq!(nm(&r, node, "sessions"), 11.0, "{:?}", r.nodes);
        assert_eq!(nm(&r, node, "received"), 150.0 * 10.0, "{:?}", r.nodes);
        assert!(nm(&r, node, "e2e_p99_ms") > 0.0);
        assert!(nm(&r, node, "broker_cpu_pct").is_finite());
    }
    // As one broker, every message was owed to all 20: the other node's half is missing.
    assert_eq!(m(&r, "delivered"), 3000.0);
    assert_eq!(m(&r, "loss"), 3000.0);
    ha.shutdown().unwrap();
    hb.shutdown().unwrap();
}

#[test]
fn publisher_url_puts_the_publishers_on_one_node() {
    let (ha, a) = server();
    let (hb, b) = server();
    // Subscribers spread over A and B; the publisher on B reaches only B's five.
    let r = run(&format!(
        "fanout -p 1 -s 10 --rate 500 --messages 100 --duration 3 --url {},{} \
         --publisher-url {}",
        url(a),
        url(b),
        url(b)
    ));
    assert_eq!(r.nodes.len(), 2);
    assert_eq!(nm(&r, 0, "sessions"), 5.0);
    assert_eq!(nm(&r, 1, "sessions"), 6.0);
    assert_eq!(nm(&r, 0, "received"), 0.0);
    assert_eq!(nm(&r, 1, "received"), 500.0);
    ha.shutdown().unwrap();
    hb.shutdown().unwrap();
}

#[test]
fn broadcast_names_each_nodes_last_receiver() {
    let (ha, a) = server();
    let (hb, b) = server();
    // The one publisher goes to the first URL: A's subscribers all have every broadcast,
    // B's have none.
    let pid = std::process::id();
    let r = run(&format!(
        "broadcast -s 20 --interval-ms 50 --duration 0.6 --url {},{} --server-pid {pid} \
         --server-pid {pid}",
        url(a),
        url(b)
    ));
    // Every node has the same columns, whatever it could measure.
    let keys =
        |n: usize| -> Vec<String> { r.nodes[n].metrics.iter().map(|x| x.key.clone()).collect() };
    assert_eq!(keys(0), keys(1));
    assert!(nm(&r, 0, "broker_cpu_us_per_delivery").is_finite());
    assert!(nm(&r, 1, "broker_cpu_us_per_delivery").is_nan());
    let n = m(&r, "broadcasts");
    assert!(n >= 8.0, "{n}");
    assert_eq!(nm(&r, 0, "sessions"), 11.0);
    assert_eq!(nm(&r, 1, "sessions"), 10.0);
    assert_eq!(nm(&r, 0, "broadcasts_complete"), n);
    assert!(nm(&r, 0, "last_p99_ms") >= nm(&r, 0, "last_p50_ms"));
    assert!(nm(&r, 0, "last_p50_ms") > 0.0);
    assert_eq!(nm(&r, 1, "broadcasts_complete"), 0.0);
    assert_eq!(m(&r, "broadcasts_complete"), 0.0);
    ha.shutdown().unwrap();
    hb.shutdown().unwrap();
}

#[test]
fn two_processes_give_the_totals_of_one() {
    let (h, a) = server();
    let args = format!(
        "fanout -p 2 -s 20 -t 2 --rate 2000 --messages 400 --duration 3 --url {}",
        url(a)
    );
    let one = run_bin(&args);
    let two = run_bin(&format!("{args} --processes 2"));
    for r in [&one, &two] {
        assert_eq!(m(r, "sessions_ready"), 22.0);
        assert_eq!(m(r, "sessions_failed"), 0.0);
        assert_eq!(m(r, "published"), 400.0);
        // Each topic has 10 subscribers: every message is owed 10 deliveries.
        assert_eq!(m(r, "expected"), 4000.0);
        assert_eq!(m(r, "delivered"), 4000.0);
        assert_eq!(m(r, "loss"), 0.0);
    }
    assert!(two.params.iter().any(|(k, v)| k == "processes" && v == "2"));
    // Publishers and subscribers sit in different processes: their shared clock keeps the
    // latencies sane.
    let e2e = &two.latencies[0].summary;
    assert!(e2e.count > 0);
    assert!(
        e2e.p50_us > 1.0 && e2e.p99_us < 1_000_000.0,
        "{} {}",
        e2e.p50_us,
        e2e.p99_us
    );
    let c = run_bin(&format!(
        "connect -n 51 --hold 0.3 --processes 3 --url {}",
        url(a)
    ));
    assert_eq!(m(&c, "sessions_ready"), 51.0);
    assert_eq!(m(&c, "sessions_closed_clean"), 51.0);
    let setup = c.latencies.iter().find(|l| l.key == "ready").unwrap();
    assert_eq!(setup.summary.count, 51);
    h.shutdown().unwrap();
}

#[test]
fn two_processes_broadcast_over_two_urls() {
    let (ha, a) = server();
    let (hb, b) = server();
    let pid = std::process::id();
    // The publisher and every subscriber on A: the per-process receivers add up and the
    // slowest of all is each broadcast's last receiver.
    let r = run_bin(&format!(
        "broadcast -s 30 --interval-ms 50 --duration 0.6 --processes 2 --url {} \
         --server-pid {pid}",
        url(a)
    ));
    let n = m(&r, "broadcasts");
    assert!(n >= 8.0, "{n}");
    assert_eq!(m(&r, "broadcasts_complete"), n);
    assert_eq!(m(&r, "loss"), 0.0);
    assert!(r.get("broker_bytes_per_session").is_some());
    let last = r.latencies.iter().find(|l| l.key == "last").unwrap();
    assert_eq!(last.summary.count as f64, n);
    // And spread over two brokers by two processes: sessions half and half.
    let r = run_bin(&format!(
        "connect -n 40 --hold 0.3 --processes 2 --url {},{}",
        url(a),
        url(b)
    ));
    assert_eq!(nm(&r, 0, "sessions"), 20.0);
    assert_eq!(nm(&r, 1, "sessions"), 20.0);
    assert_eq!(m(&r, "sessions_closed_clean"), 40.0);
    ha.shutdown().unwrap();
    hb.shutdown().unwrap();
}

#[test]
fn a_failing_process_fails_the_run_with_its_reason() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["connect", "-n", "4", "--quiet", "--processes", "2", "--url"])
        .arg(format!("ws://127.0.0.1:{port}/ws"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("of the run failed"), "{err}");
    assert!(err.contains("connection refused"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(10));
}

#[test]
fn options_are_checked() {
    let e = |args: &[&str]| {
        let cli = Cli::try_parse_from(args).unwrap();
        loadtest::run_scenario(&cli).unwrap_err()
    };
    let u = "ws://127.0.0.1:1/ws,ws://127.0.0.1:2/ws";
    let err = e(&[
        "loadtest",
        "connect",
        "--url",
        u,
        "--server-pid",
        "1",
        "--server-pid",
        "2",
        "--server-pid",
        "3",
    ]);
    assert!(err.contains("one per URL"), "{err}");
    let err = e(&[
        "loadtest",
        "connect",
        "--url",
        "ws://127.0.0.1:1/ws,ws://192.0.2.1/ws",
    ]);
    assert!(err.contains("not a loopback"), "{err}");
    let err = e(&["loadtest", "queue", "--url", u, "--processes", "2"]);
    assert!(err.contains("one process"), "{err}");
    let err = e(&["loadtest", "connect", "-n", "2", "--processes", "3"]);
    assert!(err.contains("at least one session per process"), "{err}");
}
