//! Metrics after a known scenario, and failed connections counted by kind.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/ops.rs"]
mod ops;

use ops::*;

// ---------------------------------------------------------------------------------------------
// 5. Metrics after a known scenario (in-process, scraped over HTTP)

/// `stompbox_errors_total` by kind and `stompbox_stomp_errors_total` by cause (issue 14): a
/// protocol error, a bound and a full queue count as `stomp`, each under its cause; a silent
/// client as `heartbeat` (and not also as `stomp`). Before, neither kind was ever counted.
#[test]
fn failed_connections_are_counted_by_kind() {
    let _g = shared();
    let (h, _ws) = common::server_with(|c| {
        c.reactors = 2;
        c.session.heartbeat = (100, 100);
        c.session.min_heartbeat = 10;
        c.queues.max_messages = 1;
    });
    let tcp = h.tcp_addr().unwrap();
    let mut bad = Client::stomp_tcp(tcp);
    bad.send(b"BOGUS\n\n\0");
    assert_eq!(bad.next_frame().expect("ERROR").command, "ERROR");
    let mut silent = Client::connect_tcp(tcp);
    silent.connected(b"CONNECT\naccept-version:1.2\nhost:h\nheart-beat:100,0\n\n\0");
    let f = silent.next_frame().expect("ERROR");
    assert!(f.h("message").contains("heart-beat"), "{f:?}");
    // A configured bound (65 headers, the parser holds 64), and a full queue.
    let mut many = Client::stomp_tcp(tcp);
    let mut wire = b"SEND\ndestination:/topic/x\n".to_vec();
    for i in 0..65 {
        wire.extend_from_slice(format!("h{i}:v\n").as_bytes());
    }
    wire.extend_from_slice(b"\n\0");
    many.send(&wire);
    assert!(many
        .next_frame()
        .expect("ERROR")
        .h("message")
        .contains("too many headers"));
    let mut full = Client::stomp_tcp(tcp);
    full.send(&frame("SEND", &[("destination", "/queue/one")], b"1"));
    full.send(&frame("SEND", &[("destination", "/queue/one")], b"2"));
    assert!(full
        .next_frame()
        .expect("ERROR")
        .h("message")
        .contains("queue full"));
    let want = [
        ("stompbox_errors_total{kind=\"stomp\"}", 3),
        ("stompbox_errors_total{kind=\"heartbeat\"}", 1),
        ("stompbox_stomp_errors_total{cause=\"protocol\"}", 1),
        ("stompbox_stomp_errors_total{cause=\"limit\"}", 1),
        ("stompbox_stomp_errors_total{cause=\"refused\"}", 1),
        ("stompbox_stomp_errors_total{cause=\"access\"}", 0),
        ("stompbox_stomp_errors_total{cause=\"app\"}", 0),
    ];
    let m = settle(&h, |m| want.iter().all(|(k, v)| m.u(k) == *v));
    for (k, v) in want {
        assert_eq!(m.u(k), v, "{k}\n{}", m.text);
    }
    h.shutdown().unwrap();
}

#[test]
fn metrics_after_a_known_scenario() {
    let _g = shared();
    let (h, ws) = common::server_with(|c| {
        c.reactors = 2;
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    });
    let tcp = h.tcp_addr().unwrap();
    let maddr = h.metrics_addr().expect("metrics listener");
    let dest = "/topic/metrics";

    let mut w1 = Client::stomp_ws(ws);
    let mut w2 = Client::stomp_ws(ws);
    let mut w3 = Client::stomp_ws(ws);
    let mut t1 = Client::stomp_tcp(tcp);
    let mut t2 = Client::stomp_tcp(tcp);
    w1.subscribe(dest, "w1");
    w2.subscribe(dest, "w2");
    t1.subscribe(dest, "t1");
    w3.subscribe("/topic/metrics-other", "w3");
    for i in 0..10u64 {
        let r = (i == 9).then_some("last");
        t2.publish(dest, &numbered(i, 32), r);
    }
    t2.expect_receipt("last");
    for c in [&mut w1, &mut w2, &mut t1] {
        expect_numbered(c, dest, 10);
    }

    let want: &[(&str, u64)] = &[
        ("stompbox_connections{transport=\"ws\"}", 3),
        ("stompbox_connections{transport=\"tcp\"}", 2),
        ("stompbox_connections_accepted_total{transport=\"ws\"}", 3),
        ("stompbox_connections_accepted_total{transport=\"tcp\"}", 2),
        ("stompbox_subscriptions", 4),
        ("stompbox_messages_in_total", 10),
        ("stompbox_messages_out_total", 30),
        ("stompbox_connections_refused_total{reason=\"limit\"}", 0),
        ("stompbox_connections_refused_total{reason=\"per_ip\"}", 0),
        ("stompbox_connections_refused_total{reason=\"fd_limit\"}", 0),
        ("stompbox_slow_consumer_drops_total", 0),
        ("stompbox_slow_consumer_closes_total", 0),
        ("stompbox_errors_total{kind=\"stomp\"}", 0),
        ("stompbox_errors_total{kind=\"websocket\"}", 0),
        ("stompbox_errors_total{kind=\"handshake\"}", 0),
        ("stompbox_errors_total{kind=\"heartbeat\"}", 0),
    ];
    let ok = |m: &Metrics| {
        want.iter()
            .all(|(k, v)| m.values.get(*k) == Some(&(*v as f64)))
            && m.sum("stompbox_reactor_connections") == 5.0
    };
    let end = Instant::now() + TIMEOUT;
    let mut m = scrape(maddr);
    while !ok(&m) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
        m = scrape(maddr);
    }
    for (k, v) in want {
        assert_eq!(m.u(k), *v, "{k}\n{}", m.text);
    }
    assert_eq!(m.sum("stompbox_reactor_connections"), 5.0, "{}", m.text);
    // Per reactor: both reactors report (round-robin put connections on each).
    for r in 0..2 {
        assert!(m.get(&format!("stompbox_reactor_connections{{reactor=\"{r}\"}}")) >= 1.0);
        assert!(
            m.get(&format!(
                "stompbox_reactor_loop_turns_total{{reactor=\"{r}\"}}"
            )) > 0.0
        );
    }
    let dests = m.u("stompbox_destinations{kind=\"topic\"}");
    assert!(
        dests >= 2,
        "two destinations have subscribers: {dests}\n{}",
        m.text
    );
    // Bytes: at least the 10 SEND bodies in, 30 MESSAGE bodies out.
    assert!(m.u("stompbox_bytes_in_total") >= 10 * 41, "{}", m.text);
    assert!(m.u("stompbox_bytes_out_total") >= 30 * 41, "{}", m.text);
    // Every sample belongs to a family with HELP and TYPE lines (OpenMetrics: a counter's
    // samples end in _total, a histogram's in _bucket, _count and _sum, an info's in _info).
    for line in m.text.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap();
        let family = ["_total", "_bucket", "_count", "_sum", "_info", ""]
            .iter()
            .filter_map(|suffix| name.strip_suffix(suffix))
            .find(|f| m.text.contains(&format!("# TYPE {f} ")));
        let family = family.unwrap_or_else(|| panic!("no TYPE for {name}"));
        assert!(
            m.text.contains(&format!("# HELP {family} ")),
            "no HELP for {family}"
        );
    }
    // The in-process view and the scrape agree.
    assert_eq!(metrics_of(&h).u("stompbox_messages_out_total"), 30);

    let (status, body) = http_get(maddr, "/healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, _) = http_get(maddr, "/nope");
    assert_eq!(status, 404);
    h.shutdown().unwrap();
}
