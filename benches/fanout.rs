//! Fan-out of one published message to N local subscribers, up to the point of the write:
//! per subscriber, the head (WebSocket header, MESSAGE, subscription) is copied into its queue
//! and the shared body is referenced. Cost per extra delivery = (t(10,000) - t(1)) / 9,999.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use stompbox::router::{encode_shared, Directory, Framing, MsgId, Router, Subscriber};
use stompbox::server::testing::QueueSink;
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
    let mut router = Router::new(0, Arc::new(Directory::new()));
    for i in 0..n {
        let id = format!("sub-{i}");
        router.subscribe(
            "/topic/bench",
            Subscriber::new(i, &id, AckMode::Auto, Version::V1_2, framing(ws)),
        );
    }
    let body = [b'x'; 64];
    let mut wire =
        b"SEND\ndestination:/topic/bench\ncontent-type:text/plain\ncontent-length:64\n\n".to_vec();
    wire.extend_from_slice(&body);
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

criterion_group!(benches, fanout);
criterion_main!(benches);
