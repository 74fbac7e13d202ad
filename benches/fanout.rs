//! Fan-out of one published message to N local subscribers, up to the point of the write:
//! per subscriber, the head (WebSocket header, MESSAGE, subscription) is copied into its queue
//! and the shared body is referenced. Cost per extra delivery = (t(10,000) - t(1)) / 9,999.
//!
//! `fanout_deflate`: a 1 KiB JSON body to WebSocket subscribers, uncompressed (`ws`), through
//! the permessage-deflate path (`shared`: the body's segment deflated once per message, a
//! stored block with each subscriber's head), and compressed per subscriber (`naive`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use stompbox::router::Sink;
use stompbox::router::{encode_shared, Directory, Framing, MsgId, Router, Subscriber};
use stompbox::server::compress::CompressionConfig;
use stompbox::server::testing::{DeflateSink, NaiveDeflateSink, QueueSink};
use stompbox::session::AckMode;
use stompbox::stomp::{parse, Header, Limits, Parsed, Version};

fn framing(ws: bool) -> Framing {
    if ws {
        Framing::WebSocket
    } else {
        Framing::Tcp
    }
}

fn setup(n: usize, ws: bool) -> (Router, stompbox::router::Published, QueueSink) {
    setup_with(n, ws, &[b'x'; 64], "text/plain")
}

/// About 1 KiB of chat-like JSON.
fn json_body() -> Vec<u8> {
    let items: Vec<String> = (0..13)
        .map(|i| {
            format!(
                r#"{{"id":{},"user":"user-{}","room":"lobby","text":"message number {} in the room"}}"#,
                1000 + i,
                i % 5,
                i
            )
        })
        .collect();
    format!("[{}]", items.join(",")).into_bytes()
}

fn setup_with(
    n: usize,
    ws: bool,
    body: &[u8],
    content_type: &str,
) -> (Router, stompbox::router::Published, QueueSink) {
    let mut router = Router::new(0, Arc::new(Directory::new()));
    for i in 0..n {
        let id = format!("sub-{i}");
        router.subscribe(
            "/topic/bench",
            Subscriber::new(i, &id, AckMode::Auto, Version::V1_2, framing(ws)),
        );
    }
    let mut wire = format!(
        "SEND\ndestination:/topic/bench\ncontent-type:{content_type}\ncontent-length:{}\n\n",
        body.len()
    )
    .into_bytes();
    wire.extend_from_slice(body);
    wire.push(0);
    let mut hs = [Header::default(); 16];
    let Ok(Parsed::Frame(f, _)) = parse(&wire, &mut hs, Version::V1_2, &Limits::default()) else {
        panic!("bench frame parses")
    };
    let mut scratch = Vec::new();
    let msg = encode_shared(&f, "/topic/bench", Some(MsgId::new(0, 1)), &mut scratch);
    (router, msg, QueueSink::new(n))
}

fn fanout(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout");
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_secs(1));
    for ws in [true, false] {
        for n in [1usize, 100, 10_000] {
            let (router, msg, mut sink) = setup(n, ws);
            g.throughput(Throughput::Elements(n as u64));
            let name = if ws { "ws" } else { "tcp" };
            g.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let t = Instant::now();
                        black_box(router.deliver_local(black_box(&msg), &mut sink));
                        total += t.elapsed();
                        for q in &mut sink.queues {
                            q.clear();
                        }
                    }
                    total
                })
            });
        }
    }
    g.finish();
}

/// Time `router.deliver_local` of `msg` into `sink`, emptying the queues (and, through
/// `clear`, the sink's per-turn state) after each iteration.
fn time_fanout<S: Sink>(
    router: &Router,
    msg: &stompbox::router::Published,
    sink: &mut S,
    iters: u64,
    clear: impl Fn(&mut S),
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let t = Instant::now();
        black_box(router.deliver_local(black_box(msg), sink));
        total += t.elapsed();
        clear(sink);
    }
    total
}

fn fanout_deflate(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout_deflate");
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_secs(1));
    let body = json_body();
    assert!((1000..1100).contains(&body.len()), "{}", body.len());
    let clear_queues = |s: &mut QueueSink| {
        for q in &mut s.queues {
            q.clear();
        }
    };
    for n in [1usize, 100, 10_000] {
        let (router, msg, mut plain) = setup_with(n, true, &body, "application/json");
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("ws", n), &n, |b, _| {
            b.iter_custom(|iters| time_fanout(&router, &msg, &mut plain, iters, clear_queues))
        });
        let mut shared = DeflateSink::new(n, CompressionConfig::default());
        g.bench_with_input(BenchmarkId::new("shared", n), &n, |b, _| {
            b.iter_custom(|iters| {
                time_fanout(&router, &msg, &mut shared, iters, |s| {
                    clear_queues(&mut s.inner);
                    // A reactor forgets its segments every turn: each message is compressed.
                    s.zip.clear();
                })
            })
        });
        if n <= 100 {
            let mut naive = NaiveDeflateSink::new(n, CompressionConfig::default().level);
            g.bench_with_input(BenchmarkId::new("naive", n), &n, |b, _| {
                b.iter_custom(|iters| {
                    time_fanout(&router, &msg, &mut naive, iters, |s| {
                        clear_queues(&mut s.inner)
                    })
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, fanout, fanout_deflate);
criterion_main!(benches);
