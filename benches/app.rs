//! Application destinations end to end over loopback sockets, in process: one TCP publisher
//! SENDs a batch of messages to `/app/...`; the handler (inline on the reactor, or on the
//! worker pool) publishes each to `/topic/bench`; N TCP subscribers each receive the whole
//! batch. Timed: from the publisher's write to the last subscriber's last MESSAGE. The same
//! batch SENT straight to the topic (no handler) is the baseline.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use stompbox::Config;
use stompbox::{Broker, BrokerBuilder};

/// Messages per timed batch.
const BATCH: usize = 100;
/// Body size of each message.
const BODY: usize = 64;

struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn connect(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut c = Conn {
            s,
            buf: vec![0; 1 << 16],
        };
        c.s.write_all(b"CONNECT\naccept-version:1.2\nhost:bench\nheart-beat:0,0\n\n\0")
            .unwrap();
        c.frames(1); // CONNECTED
        c
    }

    /// Read until `n` frames have ended (bodies hold no NUL, so one NUL is one frame).
    fn frames(&mut self, n: usize) {
        let mut seen = 0;
        while seen < n {
            let k = self.s.read(&mut self.buf).expect("read (10 s timeout)");
            assert!(k > 0, "broker closed the connection");
            seen += self.buf[..k].iter().filter(|&&b| b == 0).count();
        }
        assert_eq!(seen, n, "more frames than expected");
    }
}

fn broker() -> Broker {
    let config = Config {
        listen: None,
        tcp_listen: Some("127.0.0.1:0".parse().unwrap()),
        reactors: 2,
        ..Config::default()
    };
    BrokerBuilder::new(config)
        .inline_handler("/inline/{room}", |req, ctx| {
            ctx.publish("/topic/bench", &[("content-type", "text/plain")], req.body);
            Ok(())
        })
        .handler("/pool/{room}", |req, ctx| {
            ctx.publish("/topic/bench", &[("content-type", "text/plain")], req.body);
            Ok(())
        })
        .start()
        .unwrap()
}

fn batch(destination: &str) -> Vec<u8> {
    let body = vec![b'x'; BODY];
    let mut one = format!(
        "SEND\ndestination:{destination}\ncontent-type:text/plain\ncontent-length:{BODY}\n\n"
    )
    .into_bytes();
    one.extend_from_slice(&body);
    one.push(0);
    one.repeat(BATCH)
}

fn app_fanout(c: &mut Criterion) {
    let mut g = c.benchmark_group("app_send_to_subscribers");
    g.sample_size(20);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    let b = broker();
    let addr = b.tcp_addr().unwrap();
    let mut publisher = Conn::connect(addr);
    let mut subs: Vec<Conn> = Vec::new();
    for n in [1usize, 100] {
        while subs.len() < n {
            let mut s = Conn::connect(addr);
            let id = subs.len();
            s.s.write_all(
                format!("SUBSCRIBE\ndestination:/topic/bench\nid:{id}\nreceipt:r\n\n\0").as_bytes(),
            )
            .unwrap();
            s.frames(1); // RECEIPT
            subs.push(s);
        }
        g.throughput(Throughput::Elements((BATCH * n) as u64));
        for (name, dest) in [
            ("topic_direct", "/topic/bench"),
            ("inline", "/app/inline/1"),
            ("pool", "/app/pool/1"),
        ] {
            let bytes = batch(dest);
            g.bench_with_input(BenchmarkId::new(name, n), &n, |bench, _| {
                bench.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let t = Instant::now();
                        publisher.s.write_all(&bytes).unwrap();
                        for s in subs.iter_mut() {
                            s.frames(BATCH);
                        }
                        total += t.elapsed();
                    }
                    total
                })
            });
        }
    }
    g.finish();
    drop(subs);
    drop(publisher);
    b.shutdown().unwrap();
}

criterion_group!(benches, app_fanout);
criterion_main!(benches);
