//! Cluster mode (issue 15), end to end: stompbox nodes (in-process brokers, and the binary as a
//! child process where a node must be killed) joined through real `nats-server` processes that
//! the tests start on free loopback ports. Clients are the raw STOMP client of
//! `common/stomp.rs` (hand-made frames, its own parser). Every wait is bounded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/nats.rs"]
mod nats;
#[path = "common/ops.rs"]
mod ops;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::stomp::{frame, Client, Frame};
use nats::Nats;
use ops::{http_get, wait_for, Metrics, OpsClient};
use stompbox::cluster::ClusterConfig;
use stompbox::router::subject;
use stompbox::{Broker, BrokerBuilder, Config};

const PREFIX: &str = "stompbox";
const LONG: Duration = Duration::from_secs(15);

fn config(servers: &[String], name: &str) -> Config {
    Config {
        cluster: Some(nats::joined(servers, name)),
        ..common::test_config()
    }
}

/// A node with an application handler: a SEND to `/app/shout/{room}` publishes the body to
/// `/topic/shouts.{room}`.
fn node(servers: &[String], name: &str) -> Broker {
    let b = BrokerBuilder::new(config(servers, name))
        .handler("/shout/{room}", |req, ctx| {
            let room = req
                .vars
                .iter()
                .find(|(k, _)| k == "room")
                .map(|(_, v)| v.as_str());
            ctx.publish(
                &format!("/topic/shouts.{}", room.unwrap_or("none")),
                &[("x-from", "handler")],
                req.body,
            );
            Ok(())
        })
        .start()
        .expect("node starts");
    wait_up(&b);
    b
}

fn metrics(b: &Broker) -> Metrics {
    Metrics::parse(b.metrics())
}

fn wait_up(b: &Broker) {
    let up = wait_for(LONG, || {
        (metrics(b).u("stompbox_cluster_up") == 1).then_some(())
    });
    assert!(
        up.is_some(),
        "node never connected to NATS:\n{}",
        b.metrics()
    );
}

fn login(b: &Broker, user: &str) -> Client {
    let mut c = Client::connect_tcp(b.tcp_addr().unwrap());
    let connect = format!(
        "CONNECT\naccept-version:1.2\nhost:localhost\nheart-beat:0,0\nlogin:{user}\npasscode:pw\n\n\0"
    );
    let f = c.connected(connect.as_bytes());
    c.session = f.h("session").to_string();
    c
}

fn anon(b: &Broker) -> Client {
    Client::stomp_tcp(b.tcp_addr().unwrap())
}

/// A SEND with a content-length, extra headers written as given (already escaped).
fn send(c: &mut Client, dest: &str, extra: &[(&str, &str)], body: &[u8]) {
    let len = body.len().to_string();
    let mut h = vec![("destination", dest), ("content-length", len.as_str())];
    h.extend_from_slice(extra);
    c.send(&frame("SEND", &h, body));
}

/// The NATS subject of `dest` (a pattern's first cover for patterns).
fn subject_of(dest: &str) -> String {
    if stompbox::router::wildcard::is_pattern(dest) {
        subject::covers(PREFIX, dest).unwrap().remove(0)
    } else {
        subject::subject(PREFIX, dest).unwrap()
    }
}

/// A SUBSCRIBE's RECEIPT came: NATS has the node's subscription already (no waiting).
fn has_interest(n: &Nats, dest: &str) {
    let subj = subject_of(dest);
    assert!(n.has_subscription(&subj), "RECEIPT before NATS had {subj}");
}

/// Wait until the NATS server lists a subscription to the subject of `dest` (after a
/// reconnect, when the node subscribes again by itself).
fn await_interest(n: &Nats, dest: &str) {
    let subj = subject_of(dest);
    let seen = wait_for(LONG, || n.has_subscription(&subj).then_some(()));
    assert!(seen.is_some(), "NATS never saw a subscription to {subj}");
}

/// Body of message `i` from publisher `p`: a binary body with NULs, a stray LF and 0xff.
fn body(p: u8, i: u32) -> Vec<u8> {
    let mut b = i.to_be_bytes().to_vec();
    b.extend_from_slice(&[p, 0, 0xff, b'\n', 0, p]);
    b
}

/// Read messages until every publisher's end marker (message `n`) came in on every
/// subscription id of `subs`; check order per publisher, bodies and headers byte for byte, and
/// return the message ids seen per subscription.
fn collect(c: &mut Client, dest: &str, subs: &[&str], pubs: &[u8], n: u32) -> Vec<String> {
    let mut next: HashMap<(String, u8), u32> = HashMap::new();
    let mut ids = Vec::new();
    let want = subs.len() * pubs.len();
    let mut done = 0;
    while done < want {
        let f: Frame = c.msg();
        assert_eq!(f.h("destination"), dest, "{f:?}");
        assert_eq!(f.h("content-type"), "application/octet-stream", "{f:?}");
        assert_eq!(f.h("x-esc"), "a:b\\c", "{f:?}");
        let sub = f.h("subscription").to_string();
        assert!(subs.contains(&sub.as_str()), "{f:?}");
        let i = u32::from_be_bytes(f.body[..4].try_into().unwrap());
        let p = f.body[4];
        assert_eq!(f.h("x-pub"), (p as char).to_string(), "{f:?}");
        assert_eq!(f.body, body(p, i), "body byte for byte");
        let e = next.entry((sub.clone(), p)).or_insert(0);
        assert_eq!(
            i, *e,
            "publisher {} on {sub}: order, no loss, no duplicate",
            p as char
        );
        *e += 1;
        ids.push(f.h("message-id").to_string());
        if i == n {
            done += 1;
        }
    }
    ids
}

#[test]
fn topics_and_wildcards_cross_nodes_exactly_once_in_order() {
    let nats = Nats::start();
    let urls = vec![nats.url()];
    let (a, b, c) = (node(&urls, "a"), node(&urls, "b"), node(&urls, "c"));
    let dest = "/topic/chat.room1";
    // b: an exact and a one-word pattern on one connection; c: `#` and exact; a: local only.
    let mut sb = anon(&b);
    sb.subscribe(dest, "exact");
    sb.subscribe("/topic/chat.*", "star");
    let mut sc = anon(&c);
    sc.subscribe("/topic/chat.#", "hash");
    sc.subscribe(dest, "exact");
    let mut sa = anon(&a);
    sa.subscribe(dest, "local");
    // The RECEIPTs said NATS has the subscriptions: publishing at once loses nothing.
    for d in [dest, "/topic/chat.*", "/topic/chat.#"] {
        has_interest(&nats, d);
    }
    let n = 200u32;
    let mut pa = anon(&a);
    let mut pb = anon(&b);
    for i in 0..=n {
        for (c, p) in [(&mut pa, b'a'), (&mut pb, b'b')] {
            let tag = (p as char).to_string();
            send(
                c,
                dest,
                &[
                    ("content-type", "application/octet-stream"),
                    ("x-pub", &tag),
                    ("x-esc", "a\\cb\\\\c"),
                ],
                &body(p, i),
            );
        }
    }
    let ids_b = collect(&mut sb, dest, &["exact", "star"], b"ab", n);
    let ids_c = collect(&mut sc, dest, &["hash", "exact"], b"ab", n);
    let ids_a = collect(&mut sa, dest, &["local"], b"ab", n);
    // One id per message, the same on every node, unique cluster-wide.
    let distinct: HashSet<&String> = ids_a.iter().collect();
    assert_eq!(
        distinct.len(),
        2 * (n as usize + 1),
        "ids unique across nodes"
    );
    for ids in [&ids_b, &ids_c] {
        let here: HashSet<&String> = ids.iter().collect();
        assert_eq!(here, distinct, "the same ids on every node");
    }
    // Published upstream once per message, not per subscriber or per node.
    for (node, name) in [(&a, "a"), (&b, "b")] {
        let m = metrics(node);
        assert_eq!(
            m.u("stompbox_cluster_published_total"),
            n as u64 + 1,
            "node {name}"
        );
        assert_eq!(m.sum("stompbox_cluster_dropped_total"), 0.0, "node {name}");
    }
    // No echo: node a received only b's messages (one NATS subscription: the exact one).
    assert_eq!(
        metrics(&a).u("stompbox_cluster_received_total"),
        n as u64 + 1
    );
    for x in [a, b, c] {
        x.shutdown().unwrap();
    }
}

#[test]
fn user_app_and_embedding_api_messages_cross_nodes() {
    let nats = Nats::start();
    let urls = vec![nats.url()];
    let (a, b, c) = (node(&urls, "a"), node(&urls, "b"), node(&urls, "c"));
    let mut bob = login(&c, "bob");
    bob.subscribe("/user/queue/inbox", "in");
    let mut carol = login(&b, "carol");
    carol.subscribe("/topic/shouts.lobby", "shouts");
    let mut dave = anon(&c);
    dave.subscribe("/topic/api", "api");

    // The embedding API on a, to bob's sessions on c.
    a.send_to_user("bob", "/queue/inbox", &[("x-k", "v")], b"hi bob");
    let f = bob.msg();
    assert_eq!(
        (f.h("destination"), f.h("x-k"), f.text()),
        ("/user/queue/inbox", "v", "hi bob")
    );
    // A client on b sends to bob's user destination by name.
    let mut alice = login(&b, "alice");
    send(&mut alice, "/user/bob/queue/inbox", &[], b"from alice");
    let f = bob.msg();
    assert_eq!(
        (f.h("destination"), f.text()),
        ("/user/queue/inbox", "from alice")
    );
    // An /app handler on a publishes; carol on b gets it.
    let mut eve = anon(&a);
    send(&mut eve, "/app/shout/lobby", &[], b"hello lobby");
    let f = carol.msg();
    assert_eq!(
        (f.h("destination"), f.h("x-from"), f.text()),
        ("/topic/shouts.lobby", "handler", "hello lobby")
    );
    // The embedding API's publish on b reaches c.
    b.publish("/topic/api", &[], b"from the api");
    assert_eq!(dave.msg().text(), "from the api");
    for x in [a, b, c] {
        x.shutdown().unwrap();
    }
}

#[test]
fn queues_are_refused_in_cluster_mode() {
    let nats = Nats::start();
    let a = node(&[nats.url()], "a");
    let mut c = anon(&a);
    c.send(&frame(
        "SUBSCRIBE",
        &[("destination", "/queue/jobs"), ("id", "q")],
        b"",
    ));
    let f = c.expect("ERROR");
    assert!(
        f.h("message")
            .contains("queues are not available in cluster mode"),
        "{f:?}"
    );
    let mut c = anon(&a);
    send(&mut c, "/queue/jobs", &[], b"x");
    let f = c.expect("ERROR");
    assert!(f.h("message").contains("queues"), "{f:?}");
    a.shutdown().unwrap();
}

#[test]
fn nodes_recover_from_a_nats_restart_without_clients_reconnecting() {
    let mut nats = Nats::start();
    let urls = vec![nats.url()];
    let (a, b) = (node(&urls, "a"), node(&urls, "b"));
    let dest = "/topic/restart";
    let mut remote = anon(&b);
    remote.subscribe(dest, "r");
    let mut local = anon(&a);
    local.subscribe(dest, "l");
    let mut p = anon(&a);
    send(&mut p, dest, &[], b"before");
    assert_eq!(remote.msg().text(), "before");
    assert_eq!(local.msg().text(), "before");

    nats.kill();
    let down = wait_for(LONG, || {
        (metrics(&a).u("stompbox_cluster_up") == 0).then_some(())
    });
    assert!(down.is_some(), "node a never saw NATS go");
    // Local delivery goes on during the outage; what could not cross is counted.
    for i in 0..10 {
        send(&mut p, dest, &[], format!("during {i}").as_bytes());
    }
    for i in 0..10 {
        assert_eq!(local.msg().text(), format!("during {i}"));
    }
    // The bridge thread counts them after the reactor has delivered locally: wait for it.
    let dropped = "stompbox_cluster_dropped_total{reason=\"disconnected\"}";
    let counted = wait_for(LONG, || (metrics(&a).get(dropped) >= 1.0).then_some(()));
    assert!(counted.is_some(), "{}", metrics(&a).text);

    nats.restart();
    wait_up(&a);
    wait_up(&b);
    // b subscribes again by itself: the same client session receives.
    await_interest(&nats, dest);
    send(&mut p, dest, &[], b"after");
    assert_eq!(local.msg().text(), "after");
    assert_eq!(remote.msg().text(), "after", "b's subscriber, same session");
    assert!(metrics(&a).u("stompbox_cluster_reconnects_total") >= 1);
    for x in [a, b] {
        x.shutdown().unwrap();
    }
}

/// Publish `probe-<k>` from `p` until `to` receives one (interest crosses NATS routes
/// asynchronously), then return.
fn probe(p: &mut Client, to: &mut Client, dest: &str) {
    let end = Instant::now() + LONG;
    let mut k = 0;
    loop {
        send(p, dest, &[], format!("probe-{k}").as_bytes());
        k += 1;
        if let Ok(Some(f)) = to.next_within(Duration::from_millis(200)) {
            assert!(f.text().starts_with("probe-"), "{f:?}");
            return;
        }
        assert!(Instant::now() < end, "nothing crossed in {LONG:?}");
    }
}

#[test]
fn a_node_fails_over_to_another_nats_in_the_cluster() {
    let mut servers = Nats::cluster(3);
    let urls: Vec<String> = servers.iter().map(Nats::url).collect();
    let (a, b) = (node(&urls, "a"), node(&urls, "b"));
    let dest = "/topic/failover";
    let mut sa = anon(&a).polling();
    sa.subscribe(dest, "s");
    let mut sb = anon(&b).polling();
    sb.subscribe(dest, "s");
    let (mut pa, mut pb) = (anon(&a), anon(&b));
    probe(&mut pa, &mut sb, dest);
    probe(&mut pb, &mut sa, dest);
    // Kill the NATS server node a is connected to.
    let i = wait_for(LONG, || {
        servers
            .iter()
            .position(|s| s.client_names().contains("\"name\":\"stompboxa\""))
    })
    .expect("node a's connection on one of the servers");
    servers[i].kill();
    let again = wait_for(LONG, || {
        let m = metrics(&a);
        (m.u("stompbox_cluster_reconnects_total") >= 1 && m.u("stompbox_cluster_up") == 1)
            .then_some(())
    });
    assert!(
        again.is_some(),
        "node a did not fail over:\n{}",
        a.metrics()
    );
    // Messages cross both ways again, same sessions.
    while sb
        .next_within(Duration::from_millis(100))
        .ok()
        .flatten()
        .is_some()
    {}
    while sa
        .next_within(Duration::from_millis(100))
        .ok()
        .flatten()
        .is_some()
    {}
    probe(&mut pa, &mut sb, dest);
    probe(&mut pb, &mut sa, dest);
    for x in [a, b] {
        x.shutdown().unwrap();
    }
}

#[test]
fn a_node_holds_one_nats_subscription_per_subject_and_drops_it_with_the_last_subscriber() {
    let nats = Nats::start();
    let a = node(&[nats.url()], "a");
    let exact = subject::subject(PREFIX, "/topic/i.x").unwrap();
    let covers = subject::covers(PREFIX, "/topic/i.#").unwrap();
    // Several sessions (over both reactors), the same destination and pattern.
    let mut clients: Vec<Client> = (0..6).map(|_| anon(&a)).collect();
    for (k, c) in clients.iter_mut().enumerate() {
        c.subscribe("/topic/i.x", "x");
        if k % 2 == 0 {
            c.subscribe("/topic/i.#", "h");
        }
    }
    for s in std::iter::once(&exact).chain(&covers) {
        let seen = wait_for(LONG, || nats.has_subscription(s).then_some(()));
        assert!(seen.is_some(), "no NATS subscription to {s}");
    }
    let connz = nats.monitor("/connz?subs=1");
    assert_eq!(
        connz.matches(&nats::json_string(&exact)).count(),
        1,
        "one NATS subscription for six subscribers: {connz}"
    );
    assert_eq!(
        metrics(&a).u("stompbox_cluster_subscriptions"),
        1 + covers.len() as u64
    );
    // Unsubscribe some, close the others: every NATS subscription goes.
    for (k, c) in clients.iter_mut().enumerate() {
        if k < 3 {
            c.send(&frame("UNSUBSCRIBE", &[("id", "x")], b""));
            if k % 2 == 0 {
                c.send(&frame("UNSUBSCRIBE", &[("id", "h"), ("receipt", "u")], b""));
                c.expect_receipt("u");
            }
        }
    }
    assert!(nats.has_subscription(&exact), "three subscribers left");
    drop(clients);
    for s in std::iter::once(&exact).chain(&covers) {
        let gone = wait_for(LONG, || (!nats.has_subscription(s)).then_some(()));
        assert!(
            gone.is_some(),
            "NATS subscription to {s} outlived its subscribers"
        );
    }
    let m = wait_for(LONG, || {
        (metrics(&a).u("stompbox_cluster_subscriptions") == 0).then_some(())
    });
    assert!(m.is_some(), "{}", a.metrics());
    a.shutdown().unwrap();
}

#[test]
fn a_node_killed_with_sigkill_leaves_the_others_unaffected() {
    let nats = Nats::start();
    let urls = vec![nats.url()];
    let (a, b) = (node(&urls, "a"), node(&urls, "b"));
    let mut k = ops::Broker::spawn(
        None,
        &[
            "--cluster".into(),
            nats.url(),
            "--node-name".into(),
            "k".into(),
        ],
    );
    let m = k.metrics.expect("the binary serves metrics");
    let up = wait_for(LONG, || {
        http_get(m, "/healthz")
            .1
            .contains("cluster: up node=k")
            .then_some(())
    });
    assert!(up.is_some(), "{}", http_get(m, "/healthz").1);
    let dest = "/topic/k";
    let mut sb = anon(&b).polling();
    sb.subscribe(dest, "s");
    let mut sk = Client::stomp_tcp(k.tcp).polling();
    sk.subscribe(dest, "s");
    let mut pk = Client::stomp_tcp(k.tcp);
    probe(&mut pk, &mut sb, dest);
    let mut pa = anon(&a);
    probe(&mut pa, &mut sk, dest);

    k.child.kill().unwrap();
    k.child.wait().unwrap();
    // a and b go on as before.
    while sb
        .next_within(Duration::from_millis(100))
        .ok()
        .flatten()
        .is_some()
    {}
    for i in 0..20 {
        send(&mut pa, dest, &[], format!("m{i}").as_bytes());
    }
    for i in 0..20 {
        assert_eq!(sb.msg().text(), format!("m{i}"));
    }
    for x in [&a, &b] {
        let m = metrics(x);
        assert_eq!(m.u("stompbox_cluster_up"), 1);
        assert_eq!(m.u("stompbox_cluster_reconnects_total"), 0);
    }
    for x in [a, b] {
        x.shutdown().unwrap();
    }
}

/// A node whose queues to and from NATS hold only `max_pending` messages.
fn small_node(servers: &[String], name: &str, max_pending: usize) -> Broker {
    let mut cfg = config(servers, name);
    if let Some(c) = &mut cfg.cluster {
        c.max_pending = max_pending;
    }
    let b = BrokerBuilder::new(cfg).start().expect("node starts");
    wait_up(&b);
    b
}

#[test]
fn past_the_bounds_topic_messages_are_dropped_and_counted_and_local_delivery_goes_on() {
    let nats = Nats::start();
    let urls = vec![nats.url()];
    let (a, b) = (small_node(&urls, "a", 4), small_node(&urls, "b", 4));
    let dest = "/topic/burst";
    let mut local = anon(&a);
    local.subscribe(dest, "l");
    let mut remote = anon(&b).polling();
    remote.subscribe(dest, "r");
    let n = 5000u64;
    let mut p = anon(&a);
    let mut burst = Vec::new();
    for i in 0..n {
        let body = ops::numbered(i, 16);
        burst.extend_from_slice(&ops::send_frame(dest, &body, None));
    }
    // One write: the reactor reads thousands of SENDs in a turn, faster than the bridge drains.
    p.send(&burst);
    ops::expect_numbered(&mut local, dest, n);
    // What crossed arrives in order; every message either crossed or was counted.
    let settled = wait_for(LONG, || {
        let (ma, mb) = (metrics(&a), metrics(&b));
        let up = ma.u("stompbox_cluster_published_total")
            + ma.u("stompbox_cluster_dropped_total{reason=\"up_full\"}");
        (up == n
            && mb.u("stompbox_cluster_received_total") == ma.u("stompbox_cluster_published_total"))
        .then_some((ma, mb))
    });
    let (ma, mb) = settled.unwrap_or_else(|| panic!("{}\n{}", a.metrics(), b.metrics()));
    let dropped_up = ma.u("stompbox_cluster_dropped_total{reason=\"up_full\"}");
    assert!(
        dropped_up > 0,
        "a burst through a 4-message queue drops: {}",
        ma.text
    );
    let crossed = mb.u("stompbox_cluster_received_total")
        - mb.u("stompbox_cluster_dropped_total{reason=\"down_full\"}");
    let mut last = None;
    for _ in 0..crossed {
        let f = remote.msg();
        let i = ops::number_of(&f);
        assert!(last.is_none_or(|l| i > l), "order kept: {i} after {last:?}");
        last = Some(i);
    }
    assert!(
        remote
            .next_within(Duration::from_millis(300))
            .unwrap()
            .is_none(),
        "no more than crossed"
    );
    for x in [a, b] {
        x.shutdown().unwrap();
    }
}

#[test]
fn after_a_subscribe_receipt_a_publish_on_another_node_arrives() {
    let nats = Nats::start();
    let urls = vec![nats.url()];
    let (a, b) = (node(&urls, "a"), node(&urls, "b"));
    let mut p = anon(&a);
    let mut s = anon(&b);
    // Fresh destinations each time: every SUBSCRIBE makes the node a new NATS subscription,
    // and the publish follows its RECEIPT at once.
    for i in 0..50 {
        let dest = format!("/topic/fresh.{i}");
        s.subscribe(&dest, &format!("s{i}"));
        send(&mut p, &dest, &[], format!("m{i}").as_bytes());
        let f = s.msg();
        assert_eq!(
            (f.h("destination"), f.text()),
            (dest.as_str(), format!("m{i}").as_str())
        );
    }
    // A SUBSCRIBE without a receipt first (its NATS subscription still on the way), then one
    // with a receipt to the same destination on another session: the RECEIPT still waits.
    let mut quiet = anon(&b);
    for i in 0..50 {
        let dest = format!("/topic/again.{i}");
        quiet.send(&frame(
            "SUBSCRIBE",
            &[("destination", &dest), ("id", "q")],
            b"",
        ));
        // Taken before anything after it on its connection: a SEND's RECEIPT (answered once
        // routed, never waiting for NATS) says so, while its NATS subscription may still be on
        // the way. (Without it, another session's RECEIPT could come first: STOMP orders a
        // connection's frames, not two connections'.)
        send(
            &mut quiet,
            "/topic/sync-point",
            &[("receipt", "taken")],
            b"",
        );
        quiet.expect_receipt("taken");
        s.subscribe(&dest, &format!("a{i}"));
        send(&mut p, &dest, &[], format!("n{i}").as_bytes());
        assert_eq!(s.msg().text(), format!("n{i}"));
        assert_eq!(quiet.msg().text(), format!("n{i}"));
        quiet.send(&frame("UNSUBSCRIBE", &[("id", "q")], b""));
    }
    for x in [a, b] {
        x.shutdown().unwrap();
    }
}

/// xorshift64*: the soak test's steps, reproducible from the seed it prints.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Read frames until the RECEIPT `id`, keeping every MESSAGE as (subscription, body).
fn until_receipt(c: &mut Client, id: &str, got: &mut Vec<(String, String)>) {
    loop {
        let f = c.recv();
        match f.command.as_str() {
            "MESSAGE" => got.push((f.h("subscription").to_string(), f.text().to_string())),
            "RECEIPT" if f.h("receipt-id") == id => return,
            _ => panic!("unexpected {f:?}"),
        }
    }
}

/// Random SUBSCRIBE, UNSUBSCRIBE, reconnect and receipted SEND steps over two nodes: each
/// subscription gets every message published while it held, in order, once, and nothing
/// published after it ended; a message published shortly before it began may also come (the
/// SEND's RECEIPT does not wait for the other node: a cross-node race STOMP allows).
#[test]
fn random_subscriptions_across_two_nodes_get_exactly_what_was_published_while_they_held() {
    const SUBS: &[&str] = &[
        "/topic/s.a",
        "/topic/s.b",
        "/topic/s.*",
        "/topic/s.#",
        "/topic/t",
    ];
    const PUBS: &[&str] = &[
        "/topic/s.a",
        "/topic/s.b",
        "/topic/s.c.d",
        "/topic/t",
        "/topic/s",
    ];
    let nats = Nats::start();
    let urls = vec![nats.url()];
    let nodes = [node(&urls, "a"), node(&urls, "b")];
    let seed = std::env::var("STOMPBOX_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64 | 1)
        });
    eprintln!("soak seed {seed} (STOMPBOX_SOAK_SEED={seed} to replay)");
    let mut rng = Rng(seed);
    let n = 6;
    let mut clients: Vec<Client> = (0..n).map(|i| anon(&nodes[i % 2]).polling()).collect();
    // Per session: the subscriptions it holds (index into SUBS), what it received.
    let mut held: Vec<HashSet<usize>> = vec![HashSet::new(); n];
    let mut got: Vec<Vec<(String, String)>> = vec![Vec::new(); n];
    // Per session and subscription: the bodies it must get, in order.
    let mut want: Vec<HashMap<String, Vec<String>>> = vec![HashMap::new(); n];
    // Per session and subscription: the steps at which it was made. And per body: where it was
    // published. A message published before a SUBSCRIBE (its SEND's RECEIPT says the broker
    // has it, not that every node has seen it) may still reach the new subscription: STOMP
    // orders one connection's frames, not two connections'; such a message is allowed, once.
    let mut made: Vec<HashMap<String, Vec<u64>>> = vec![HashMap::new(); n];
    let mut published: HashMap<String, (&str, u64)> = HashMap::new();
    let mut k = 0u64;
    for _ in 0..400 {
        let s = rng.below(n);
        let r = format!("r{k}");
        k += 1;
        match rng.below(10) {
            0..=2 => {
                let d = rng.below(SUBS.len());
                if held[s].insert(d) {
                    let id = format!("{d}");
                    made[s].entry(id.clone()).or_default().push(k);
                    let h = [
                        ("destination", SUBS[d]),
                        ("id", id.as_str()),
                        ("receipt", r.as_str()),
                    ];
                    clients[s].send(&frame("SUBSCRIBE", &h, b""));
                    until_receipt(&mut clients[s], &r, &mut got[s]);
                }
            }
            3 => {
                let d = rng.below(SUBS.len());
                if held[s].remove(&d) {
                    let id = format!("{d}");
                    let h = [("id", id.as_str()), ("receipt", r.as_str())];
                    clients[s].send(&frame("UNSUBSCRIBE", &h, b""));
                    until_receipt(&mut clients[s], &r, &mut got[s]);
                }
            }
            4 => {
                // Leave and come back on the other node: every subscription goes.
                clients[s].send(&frame("DISCONNECT", &[("receipt", r.as_str())], b""));
                until_receipt(&mut clients[s], &r, &mut got[s]);
                held[s].clear();
                clients[s] = anon(&nodes[rng.below(2)]).polling();
            }
            _ => {
                let dest = PUBS[rng.below(PUBS.len())];
                let body = format!("{s}:{k}");
                published.insert(body.clone(), (dest, k));
                // Who must get it: every subscription held now whose pattern matches.
                let mut targets = Vec::new();
                for (t, subs) in held.iter().enumerate() {
                    for &d in subs {
                        let hit = if stompbox::router::wildcard::is_pattern(SUBS[d]) {
                            stompbox::router::wildcard::matches_naive(SUBS[d], dest)
                        } else {
                            SUBS[d] == dest
                        };
                        if hit {
                            want[t].entry(d.to_string()).or_default().push(body.clone());
                            targets.push((t, d.to_string()));
                        }
                    }
                }
                // With a receipt, so the next step (on any node) follows it.
                send(
                    &mut clients[s],
                    dest,
                    &[("receipt", r.as_str())],
                    body.as_bytes(),
                );
                until_receipt(&mut clients[s], &r, &mut got[s]);
                // Settle: every target has it before the next step, so no step races a
                // message still crossing (an UNSUBSCRIBE may drop what is in flight).
                for (t, d) in targets {
                    let entry = (d, body.clone());
                    while !got[t].contains(&entry) {
                        let f = clients[t].recv();
                        assert_eq!(f.command, "MESSAGE", "seed {seed}: {f:?}");
                        got[t].push((f.h("subscription").to_string(), f.text().to_string()));
                    }
                }
            }
        }
    }
    // Every publish was settled; what still arrives is a duplicate or an allowed early one.
    for (s, c) in clients.iter_mut().enumerate() {
        while let Ok(Some(f)) = c.next_within(Duration::from_millis(300)) {
            assert_eq!(f.command, "MESSAGE", "seed {seed}: {f:?}");
            got[s].push((f.h("subscription").to_string(), f.text().to_string()));
        }
    }
    for s in 0..n {
        let mut per: HashMap<String, Vec<String>> = HashMap::new();
        let mut early_ones = HashSet::new();
        for (sub, body) in &got[s] {
            let wanted = want[s].get(sub).is_some_and(|w| w.contains(body));
            if !wanted {
                // Not owed: only a message published shortly before one of this subscription's
                // SUBSCRIBEs (within 50 steps), to a destination it matches, may come, once (a
                // second copy goes into `per` and fails the comparison).
                let d: usize = sub.parse().expect("subscription ids are SUBS indexes");
                let (dest, at) = published
                    .get(body)
                    .unwrap_or_else(|| panic!("seed {seed}: session {s} got {body}, never sent"));
                let matches = if stompbox::router::wildcard::is_pattern(SUBS[d]) {
                    stompbox::router::wildcard::matches_naive(SUBS[d], dest)
                } else {
                    SUBS[d] == *dest
                };
                let early = made[s]
                    .get(sub)
                    .is_some_and(|steps| steps.iter().any(|&m| m > *at && m <= *at + 50));
                if matches && early && early_ones.insert((sub.clone(), body.clone())) {
                    eprintln!("seed {seed}: session {s} sub {sub} got {body}, published before it");
                    continue;
                }
            }
            per.entry(sub.clone()).or_default().push(body.clone());
        }
        // Subscriptions re-made with the same id on a new connection append to the same list,
        // in time order, as `want` does.
        assert_eq!(per, want[s], "seed {seed}: session {s}");
    }
    for x in nodes {
        x.shutdown().unwrap();
    }
}

/// A node with `f` applied to its cluster settings; `None` if it never connected.
fn node_with(servers: &[String], f: impl FnOnce(&mut ClusterConfig)) -> (Broker, bool) {
    let mut cfg = config(servers, "auth");
    if let Some(c) = &mut cfg.cluster {
        f(c);
    }
    let b = BrokerBuilder::new(cfg).start().expect("node starts");
    let up = wait_for(Duration::from_secs(3), || {
        (metrics(&b).u("stompbox_cluster_up") == 1).then_some(())
    });
    (b, up.is_some())
}

#[test]
fn a_node_authenticates_to_nats_with_a_password_or_a_token() {
    let nats = Nats::start_with(&["--user", "node", "--pass", "s3cret"]);
    let urls = vec![nats.url()];
    let (good, up) = node_with(&urls, |c| {
        c.user = Some("node".into());
        c.password = Some("s3cret".into());
    });
    assert!(up, "the right password connects");
    let (bad, up) = node_with(&urls, |c| {
        c.user = Some("node".into());
        c.password = Some("wrong".into());
    });
    assert!(!up, "a wrong password does not");
    // Refused by NATS, the node still serves its own clients.
    let mut s = anon(&bad);
    s.subscribe("/topic/local", "l");
    send(&mut anon(&bad), "/topic/local", &[], b"still here");
    assert_eq!(s.msg().text(), "still here");
    for x in [good, bad] {
        x.shutdown().unwrap();
    }
    let nats = Nats::start_with(&["--auth", "tok3n"]);
    let urls = vec![nats.url()];
    let (good, up) = node_with(&urls, |c| c.token = Some("tok3n".into()));
    assert!(up, "the right token connects");
    let (bad, up) = node_with(&urls, |_| {});
    assert!(!up, "no token does not");
    for x in [good, bad] {
        x.shutdown().unwrap();
    }
}

#[test]
fn a_node_joins_nats_over_tls_and_refuses_a_certificate_it_does_not_trust() {
    let dir = std::env::temp_dir().join(format!("stompbox-nats-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, ips: &[&str]| {
        let names: Vec<String> = ips.iter().map(|s| s.to_string()).collect();
        let ck = rcgen::generate_simple_self_signed(names).unwrap();
        let (cert, key) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
        (cert, key)
    };
    let (cert, key) = write("server", &["127.0.0.1", "localhost"]);
    let (other, _) = write("other", &["127.0.0.1"]);
    let nats = Nats::start_with(&[
        "--tls",
        "--tlscert",
        cert.to_str().unwrap(),
        "--tlskey",
        key.to_str().unwrap(),
    ]);
    let urls = vec![nats.url()];
    let (a, up) = node_with(&urls, |c| {
        c.tls_ca = Some(cert.clone());
        c.require_tls = true;
    });
    assert!(up, "trusting the server's certificate: connected over TLS");
    let (b, up) = node_with(&urls, |c| {
        c.tls_ca = Some(cert.clone());
        c.require_tls = true;
        c.node_name = "b".into();
    });
    assert!(up);
    let mut s = anon(&b);
    s.subscribe("/topic/tls", "t");
    send(&mut anon(&a), "/topic/tls", &[], b"over tls");
    assert_eq!(s.msg().text(), "over tls");
    let (c, up) = node_with(&urls, |c| {
        c.tls_ca = Some(other.clone());
        c.require_tls = true;
    });
    assert!(
        !up,
        "a certificate signed by no CA it trusts: not connected"
    );
    for x in [a, b, c] {
        x.shutdown().unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn destinations_too_long_for_a_nats_subject_are_refused_with_an_error() {
    let nats = Nats::start();
    let a = node(&[nats.url()], "a");
    let long = format!("/topic/{}", "x".repeat(2100));
    let mut c = anon(&a);
    send(&mut c, &long, &[], b"x");
    let f = c.expect("ERROR");
    assert!(f.h("message").contains("too long for the cluster"), "{f:?}");
    let mut c = anon(&a);
    c.send(&frame(
        "SUBSCRIBE",
        &[("destination", &format!("{long}.#")), ("id", "p")],
        b"",
    ));
    let f = c.expect("ERROR");
    assert!(f.h("message").contains("too long for the cluster"), "{f:?}");
    // A user destination is routed by login: a long login makes a long route.
    let mut c = login(&a, &"u".repeat(2100));
    c.send(&frame(
        "SUBSCRIBE",
        &[("destination", "/user/queue/x"), ("id", "u")],
        b"",
    ));
    let f = c.expect("ERROR");
    assert!(f.h("message").contains("too long for the cluster"), "{f:?}");
    // A node with such a destination is still fine for everyone else.
    let mut s = anon(&a);
    s.subscribe("/topic/short", "s");
    send(&mut anon(&a), "/topic/short", &[], b"ok");
    assert_eq!(s.msg().text(), "ok");
    a.shutdown().unwrap();
}
