//! Durable queues on NATS JetStream (issue 16), end to end: stompbox nodes with
//! `queues.store = jetstream` and a real `nats-server -js` the tests start on free loopback
//! ports with its store in a temp dir. Clients are the raw STOMP client of `common/stomp.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/nats.rs"]
mod nats;
#[path = "common/ops.rs"]
mod ops;

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use common::stomp::{frame, Client, Frame};
use nats::Nats;
use ops::{wait_for, Metrics, OpsClient};
use stompbox::router::QueueStore;
use stompbox::{Broker, BrokerBuilder, Config};

const LONG: Duration = Duration::from_secs(15);

/// A JetStream store directory of its own, removed at the end.
struct StoreDir(PathBuf);

impl StoreDir {
    fn new(name: &str) -> StoreDir {
        let d = std::env::temp_dir().join(format!("stompbox-js-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        StoreDir(d)
    }

    fn nats(&self) -> Nats {
        Nats::start_with(&["-js", "-sd", self.0.to_str().unwrap()])
    }
}

impl Drop for StoreDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn node(nats: &Nats, name: &str, ack_wait: Duration) -> Broker {
    let mut cfg = Config {
        cluster: Some(nats::joined(&[nats.url()], name)),
        ..common::test_config()
    };
    cfg.queues.store = QueueStore::JetStream;
    cfg.queues.ack_wait = ack_wait;
    let b = BrokerBuilder::new(cfg).start().expect("node starts");
    let up = wait_for(LONG, || {
        (Metrics::parse(b.metrics()).u("stompbox_cluster_up") == 1).then_some(())
    });
    assert!(up.is_some(), "node never connected to NATS");
    b
}

fn anon(b: &Broker) -> Client {
    Client::stomp_tcp(b.tcp_addr().unwrap()).polling()
}

fn subscribe(c: &mut Client, dest: &str, id: &str, ack: &str, prefetch: usize) {
    let p = prefetch.to_string();
    let r = format!("sub-{id}");
    c.send(&frame(
        "SUBSCRIBE",
        &[
            ("destination", dest),
            ("id", id),
            ("ack", ack),
            ("prefetch-count", &p),
            ("receipt", &r),
        ],
        b"",
    ));
    c.expect_receipt(&r);
}

/// SEND `n` numbered messages with receipts, waiting for each RECEIPT in the end.
fn produce(c: &mut Client, dest: &str, from: u64, n: u64) {
    for i in from..from + n {
        let r = format!("p{i}");
        c.send(&ops::send_frame(dest, &ops::numbered(i, 8), Some(&r)));
    }
    for i in from..from + n {
        c.expect_receipt(&format!("p{i}"));
    }
}

fn ack(c: &mut Client, f: &Frame) {
    c.send(&frame("ACK", &[("id", f.h("ack"))], b""));
}

#[test]
fn a_receipted_send_is_stored_and_each_message_is_delivered_once_then_acked_away() {
    let dir = StoreDir::new("once");
    let nats = dir.nats();
    let a = node(&nats, "a", Duration::from_secs(30));
    let mut p = anon(&a);
    produce(&mut p, "/queue/jobs", 0, 200);
    // Stored before the RECEIPTs: all 200 are in JetStream, none consumed yet.
    assert_eq!(nats.stored(), 200);
    let mut c = anon(&a);
    subscribe(&mut c, "/queue/jobs", "s", "client-individual", 10);
    let mut held = None;
    for i in 0..200 {
        let f = c.msg();
        assert_eq!(ops::number_of(&f), i, "{f:?}");
        assert!(f.get("redelivered").is_none(), "{f:?}");
        if i == 199 {
            held = Some(f);
        } else {
            ack(&mut c, &f);
        }
    }
    // The gauges: one consumer, one message delivered and not acked.
    let m = wait_for(LONG, || {
        let m = Metrics::parse(a.metrics());
        (m.u("stompbox_queue_messages{state=\"unacked\"}") == 1).then_some(m)
    })
    .unwrap_or_else(|| panic!("{}", a.metrics()));
    assert_eq!(m.u("stompbox_queue_consumers"), 1);
    assert_eq!(m.u("stompbox_queue_store_stored_total"), 200);
    assert_eq!(m.u("stompbox_queue_store_pulled_total"), 200);
    assert_eq!(m.u("stompbox_queue_store_failed_total"), 0);
    ack(&mut c, &held.unwrap());
    let gone = wait_for(LONG, || (nats.stored() == 0).then_some(()));
    assert!(
        gone.is_some(),
        "acked messages leave JetStream: {}",
        nats.stored()
    );
    assert!(c.next_within(Duration::from_millis(300)).unwrap().is_none());
    a.shutdown().unwrap();
}

#[test]
fn queued_messages_survive_a_restart_of_every_node_and_nats() {
    let dir = StoreDir::new("restart");
    let mut nats = dir.nats();
    let n = 10_000;
    {
        let a = node(&nats, "a", Duration::from_secs(30));
        let mut p = anon(&a);
        produce(&mut p, "/queue/durable", 0, n);
        a.shutdown().unwrap();
    }
    nats.restart();
    let b = node(&nats, "b", Duration::from_secs(30));
    // The depth JetStream reports, in the node's metrics.
    let depth = wait_for(LONG, || {
        let m = Metrics::parse(b.metrics());
        (m.u("stompbox_queue_store_messages") == n).then_some(())
    });
    assert!(depth.is_some(), "{}", b.metrics());
    let mut c = anon(&b);
    subscribe(&mut c, "/queue/durable", "s", "client", 500);
    for i in 0..n {
        let f = c.msg();
        assert_eq!(ops::number_of(&f), i, "in order after the restart");
        if i % 100 == 99 || i == n - 1 {
            ack(&mut c, &f);
        }
    }
    let gone = wait_for(LONG, || (nats.stored() == 0).then_some(()));
    assert!(gone.is_some(), "{}", nats.stored());
    b.shutdown().unwrap();
}

#[test]
fn consumers_on_two_nodes_share_a_queue_each_message_once() {
    let dir = StoreDir::new("share");
    let nats = dir.nats();
    let (a, b) = (
        node(&nats, "a", Duration::from_secs(30)),
        node(&nats, "b", Duration::from_secs(30)),
    );
    let mut ca = anon(&a);
    subscribe(&mut ca, "/queue/shared", "s", "auto", 5);
    let mut cb = anon(&b);
    subscribe(&mut cb, "/queue/shared", "s", "auto", 5);
    let n = 400;
    let mut p = anon(&a);
    produce(&mut p, "/queue/shared", 0, n);
    let mut seen = HashSet::new();
    let mut from = [0u64; 2];
    while seen.len() < n as usize {
        let mut any = false;
        for (k, c) in [&mut ca, &mut cb].into_iter().enumerate() {
            if let Ok(Some(f)) = c.next_within(Duration::from_millis(50)) {
                assert!(seen.insert(ops::number_of(&f)), "delivered twice: {f:?}");
                from[k] += 1;
                any = true;
            }
        }
        assert!(any || seen.len() == n as usize || wait_for(LONG, || Some(())).is_some());
    }
    assert!(from[0] > 0 && from[1] > 0, "both nodes consumed: {from:?}");
    for c in [&mut ca, &mut cb] {
        assert!(c.next_within(Duration::from_millis(300)).unwrap().is_none());
    }
    for x in [a, b] {
        x.shutdown().unwrap();
    }
}

#[test]
fn nacked_and_abandoned_messages_come_back_flagged_redelivered() {
    let dir = StoreDir::new("nack");
    let nats = dir.nats();
    let a = node(&nats, "a", Duration::from_secs(30));
    let mut p = anon(&a);
    produce(&mut p, "/queue/retry", 0, 3);
    let mut c = anon(&a);
    subscribe(&mut c, "/queue/retry", "s", "client-individual", 1);
    let f = c.msg();
    assert_eq!(ops::number_of(&f), 0);
    c.send(&frame("NACK", &[("id", f.h("ack"))], b""));
    let f = c.msg();
    assert_eq!(ops::number_of(&f), 0, "NACKed: comes back");
    assert_eq!(f.h("redelivered"), "true");
    ack(&mut c, &f);
    let f = c.msg();
    assert_eq!(ops::number_of(&f), 1);
    // Leave without acking: the next consumer gets it, flagged.
    drop(c);
    let mut d = anon(&a);
    subscribe(&mut d, "/queue/retry", "s", "client-individual", 5);
    let f = d.msg();
    assert_eq!(ops::number_of(&f), 1, "{f:?}");
    assert_eq!(f.h("redelivered"), "true", "{f:?}");
    ack(&mut d, &f);
    let f = d.msg();
    assert_eq!(ops::number_of(&f), 2);
    ack(&mut d, &f);
    let gone = wait_for(LONG, || (nats.stored() == 0).then_some(()));
    assert!(gone.is_some(), "{}", nats.stored());
    a.shutdown().unwrap();
}

#[test]
fn a_message_held_longer_than_the_ack_wait_stays_with_its_consumer() {
    let dir = StoreDir::new("held");
    let nats = dir.nats();
    let wait = Duration::from_millis(800);
    let (a, b) = (node(&nats, "a", wait), node(&nats, "b", wait));
    let mut p = anon(&a);
    produce(&mut p, "/queue/slow", 0, 1);
    let mut slow = anon(&a);
    subscribe(&mut slow, "/queue/slow", "s", "client-individual", 1);
    let f = slow.msg();
    assert_eq!(ops::number_of(&f), 0);
    // Another node's consumer, idle: it must not get the message while `slow` holds it, for
    // several ack waits (the holder's node says "in progress" to JetStream).
    let mut other = anon(&b);
    subscribe(&mut other, "/queue/slow", "s", "client-individual", 1);
    let got = other.next_within(wait * 4).unwrap();
    assert!(got.is_none(), "handed out again while held: {got:?}");
    ack(&mut slow, &f);
    let gone = wait_for(LONG, || (nats.stored() == 0).then_some(()));
    assert!(gone.is_some(), "{}", nats.stored());
    for x in [a, b] {
        x.shutdown().unwrap();
    }
}

/// One delivery a consumer saw: the message number, whether flagged redelivered, and when.
type Seen = (u64, bool, std::time::Instant);

/// A consumer on its own thread: acks everything it gets (client-individual), records it,
/// until `stop` and idle, or its connection ends (its node was killed).
fn consume(
    mut c: Client,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Vec<Seen>> {
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        loop {
            match c.next_within(Duration::from_millis(100)) {
                Ok(Some(f)) if f.command == "MESSAGE" => {
                    seen.push((
                        ops::number_of(&f),
                        f.get("redelivered") == Some("true"),
                        std::time::Instant::now(),
                    ));
                    if c.try_send(&frame("ACK", &[("id", f.h("ack"))], b""))
                        .is_err()
                    {
                        return seen;
                    }
                }
                Ok(Some(f)) => panic!("consumer got {f:?}"),
                Ok(None) if stop.load(std::sync::atomic::Ordering::Acquire) => return seen,
                Ok(None) => {}
                Err(_) => return seen,
            }
        }
    })
}

#[test]
fn no_receipted_message_is_lost_when_a_node_is_killed_and_nats_restarts() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let dir = StoreDir::new("kill");
    let mut nats = dir.nats();
    let wait = Duration::from_secs(2);
    let (a, b) = (node(&nats, "a", wait), node(&nats, "b", wait));
    let mut k = ops::Broker::spawn(
        None,
        &[
            "--cluster".into(),
            nats.url(),
            "--node-name".into(),
            "k".into(),
            "--queue-store".into(),
            "jetstream".into(),
            "--queue-ack-wait".into(),
            "2s".into(),
        ],
    );
    let q = "/queue/work";
    let stop = Arc::new(AtomicBool::new(false));
    let mut consumers = Vec::new();
    for addr in [a.tcp_addr().unwrap(), b.tcp_addr().unwrap(), k.tcp] {
        let mut c = Client::stomp_tcp(addr).polling();
        subscribe(&mut c, q, "w", "client-individual", 20);
        consumers.push(consume(c, Arc::clone(&stop)));
    }
    let n = 20_000u64;
    let window = 200u64;
    let mut confirmed = HashSet::new();
    let mut p = anon(&a);
    let (mut killed, mut restarted) = (false, false);
    let mut i = 0;
    while i < n {
        let end = (i + window).min(n);
        for j in i..end {
            let r = format!("p{j}");
            let _ = p.try_send(&ops::send_frame(q, &ops::numbered(j, 8), Some(&r)));
        }
        for _ in i..end {
            match p.next_within(Duration::from_secs(10)) {
                Ok(Some(f)) if f.command == "RECEIPT" => {
                    let id = f.h("receipt-id");
                    confirmed.insert(id[1..].parse::<u64>().unwrap());
                }
                // Not stored (NATS away): ERROR, and the connection ends; start another.
                _ => {
                    p = anon(&a);
                    break;
                }
            }
        }
        i = end;
        if !killed && confirmed.len() >= 5_000 {
            k.child.kill().unwrap();
            k.child.wait().unwrap();
            killed = true;
        }
        if !restarted && confirmed.len() >= 10_000 {
            // As an operator restarts it (SIGTERM). NATS 2.9 writes consumer state lazily: one
            // killed with SIGKILL can forget recent deliveries and acks (see README).
            nats.restart();
            restarted = true;
        }
    }
    assert!(killed && restarted);
    assert!(
        confirmed.len() as u64 > n / 2,
        "most were stored: {}",
        confirmed.len()
    );
    // Wait until JetStream holds nothing (everything acked), then stop the consumers.
    let drained = wait_for(Duration::from_secs(60), || {
        (nats.stored() == 0).then_some(())
    });
    stop.store(true, Ordering::Release);
    let mut seen: Vec<Seen> = consumers
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    if drained.is_none() {
        let q = |b: &Broker| -> String {
            b.metrics()
                .lines()
                .filter(|l| l.contains("queue") && !l.starts_with('#'))
                .collect::<Vec<_>>()
                .join("\n")
        };
        panic!(
            "JetStream still holds {}\nnode a:\n{}\nnode b:\n{}\njsz: {}",
            nats.stored(),
            q(&a),
            q(&b),
            nats.monitor("/jsz?consumers=true")
        );
    }
    seen.sort_by_key(|s| s.2);
    let mut first = HashSet::new();
    for (m, redelivered, _) in &seen {
        if !first.insert(*m) {
            assert!(
                *redelivered,
                "message {m} repeated without redelivered:true"
            );
        }
    }
    let lost: Vec<&u64> = confirmed.iter().filter(|m| !first.contains(*m)).collect();
    assert!(
        lost.is_empty(),
        "{} receipted messages never delivered: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    for x in [a, b] {
        x.shutdown().unwrap();
    }
}

#[test]
fn with_jetstream_away_a_queue_send_waits_a_bounded_time_then_gets_an_error() {
    let dir = StoreDir::new("away");
    let mut nats = dir.nats();
    let a = node(&nats, "a", Duration::from_secs(30));
    let mut p = anon(&a);
    produce(&mut p, "/queue/away", 0, 1);
    nats.stop();
    let down = wait_for(LONG, || {
        (Metrics::parse(a.metrics()).u("stompbox_cluster_up") == 0).then_some(())
    });
    assert!(down.is_some());
    let started = std::time::Instant::now();
    p.send(&ops::send_frame("/queue/away", b"lost?", Some("r1")));
    let f = p
        .next_within(Duration::from_secs(20))
        .unwrap()
        .expect("an answer");
    assert_eq!(f.command, "ERROR", "{f:?}");
    assert_eq!(f.h("receipt-id"), "r1", "{f:?}");
    assert!(f.h("message").contains("not stored"), "{f:?}");
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "{:?}",
        started.elapsed()
    );
    let m = Metrics::parse(a.metrics());
    assert!(m.u("stompbox_queue_store_failed_total") >= 1, "{}", m.text);
    // Back: SENDs are stored again, and what was stored before is still there.
    nats.restart();
    let up = wait_for(LONG, || {
        (Metrics::parse(a.metrics()).u("stompbox_cluster_up") == 1).then_some(())
    });
    assert!(up.is_some());
    let mut p = anon(&a);
    produce(&mut p, "/queue/away", 1, 1);
    let mut c = anon(&a);
    subscribe(&mut c, "/queue/away", "s", "auto", 10);
    assert_eq!(ops::number_of(&c.msg()), 0);
    assert_eq!(ops::number_of(&c.msg()), 1);
    a.shutdown().unwrap();
}
