//! Queue dispatch with acknowledgements, and wildcard matching against many subscriptions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use stompbox::router::queue::{ConsumerKey, Overflow, QMsg, Queue};
use stompbox::router::wildcard::Trie;
use stompbox::router::Published;
use stompbox::session::AckMode;

fn key(n: u32) -> ConsumerKey {
    ConsumerKey {
        reactor: 0,
        slot: n,
        gen: 1,
    }
}

/// 1,000 messages through a queue with 10 consumers (prefetch 100): enqueue, dispatch
/// round-robin, settle each delivery: client-individual consumers ACK it; auto-mode ones report
/// it written (one cumulative Written per consumer per flush; here after every message).
fn queue_dispatch_ack(c: &mut Criterion) {
    let mut g = c.benchmark_group("queue");
    g.measurement_time(Duration::from_secs(3));
    let payload = Published::raw("/queue/bench", &[b'x'; 100]);
    const N: usize = 1000;
    g.throughput(Throughput::Elements(N as u64));
    for (name, mode) in [
        ("enqueue_dispatch_ack_1000", AckMode::ClientIndividual),
        ("enqueue_dispatch_written_auto_1000", AckMode::Auto),
    ] {
        g.bench_function(name, |b| {
            let mut q = Queue::new(100_000, Overflow::Reject);
            for i in 0..10 {
                q.add_consumer(key(i), mode, 100);
            }
            let mut out = Vec::with_capacity(N);
            let mut seq = 0;
            b.iter(|| {
                for _ in 0..N {
                    seq += 1;
                    let _ = q.enqueue(QMsg {
                        seq,
                        payload: payload.clone(),
                        redelivered: false,
                    });
                    q.dispatch(&mut out);
                    for d in out.drain(..) {
                        if mode == AckMode::Auto {
                            q.written(d.consumer, black_box(d.delivery));
                        } else {
                            let _ = black_box(q.ack(d.consumer, d.delivery));
                        }
                    }
                }
            })
        });
    }
    g.finish();
}

/// Matching one published destination against N wildcard patterns of which only 3 match:
/// the trie's cost follows the destination's words, not N.
fn wildcard_match(c: &mut Criterion) {
    let mut g = c.benchmark_group("wildcard_match");
    g.measurement_time(Duration::from_secs(3));
    for n in [1_000usize, 10_000, 100_000] {
        let mut t: Trie<u32> = Trie::default();
        for i in 0..n {
            let p = match i % 4 {
                0 => format!("/topic/stock.{i}.*"),
                1 => format!("/topic/stock.*.{i}"),
                2 => format!("/topic/news.{i}.#"),
                _ => format!("/topic/*.{i}.price"),
            };
            t.entry(&p, || i as u32);
        }
        for p in ["/topic/stock.#", "/topic/*.nyse.*", "/topic/#"] {
            t.entry(p, || 0);
        }
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::new("patterns", n), &n, |b, _| {
            b.iter(|| {
                let mut hits = 0;
                t.for_each_match(black_box("/topic/stock.nyse.acme"), |_| hits += 1);
                assert_eq!(hits, 3);
                hits
            })
        });
    }
    g.finish();
}

criterion_group!(benches, queue_dispatch_ack, wildcard_match);
criterion_main!(benches);
