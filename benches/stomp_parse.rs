//! STOMP frame parsing throughput: a buffer of 1000 concatenated frames, parsed front to back
//! with `stomp::parse` the way a connection's read buffer is (a fresh 64-slot header array per
//! frame, as `server::conn` does; STOMP 1.2, so header escapes are checked).
//!
//! - `send_64B`: SEND with destination, content-type, content-length and a 64-byte body.
//! - `message_1KiB`: MESSAGE with 5 headers (subscription, message-id, destination,
//!   content-type, content-length) and a 1 KiB body.
//!
//! Each is measured twice, the same work reported as frames/s (`frames`) and as bytes/s of
//! wire (`bytes`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use stompbox::stomp::{parse, write_frame, Command, Header, Limits, Parsed, Version};

const FRAMES: usize = 1000;

fn body(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

fn send_stream() -> Vec<u8> {
    let body = body(64);
    let mut wire = Vec::new();
    for _ in 0..FRAMES {
        write_frame(
            &mut wire,
            Version::V1_2,
            Command::Send,
            &[
                ("destination", "/topic/bench.prices"),
                ("content-type", "text/plain"),
            ],
            &body,
        );
    }
    wire
}

fn message_stream() -> Vec<u8> {
    let body = body(1024);
    let mut wire = Vec::new();
    for i in 0..FRAMES {
        let id = format!("m-{i}");
        write_frame(
            &mut wire,
            Version::V1_2,
            Command::Message,
            &[
                ("subscription", "sub-0"),
                ("message-id", &id),
                ("destination", "/topic/bench.prices"),
                ("content-type", "application/octet-stream"),
            ],
            &body,
        );
    }
    wire
}

/// Parse every frame in `buf`; returns (frames, body bytes).
fn parse_all(buf: &[u8], limits: &Limits) -> (usize, usize) {
    let (mut pos, mut frames, mut bytes) = (0, 0, 0);
    while pos < buf.len() {
        let mut headers = [Header::default(); 64];
        match parse(&buf[pos..], &mut headers, Version::V1_2, limits) {
            Ok(Parsed::Frame(f, used)) => {
                let f = black_box(f);
                frames += 1;
                bytes += f.body.len();
                pos += used;
            }
            Ok(Parsed::Heartbeat(n)) => pos += n,
            other => panic!("at {pos}: {other:?}"),
        }
    }
    (frames, bytes)
}

fn bench_stream(c: &mut Criterion, name: &str, wire: &[u8], body_len: usize) {
    let limits = Limits::default();
    assert_eq!(parse_all(wire, &limits), (FRAMES, FRAMES * body_len));
    // Every frame carries the headers it was written with.
    let mut headers = [Header::default(); 64];
    match parse(wire, &mut headers, Version::V1_2, &limits) {
        Ok(Parsed::Frame(f, _)) => {
            assert_eq!(
                f.header("destination").as_deref(),
                Some("/topic/bench.prices")
            );
            let len = body_len.to_string();
            assert_eq!(f.header("content-length").as_deref(), Some(len.as_str()));
        }
        other => panic!("{other:?}"),
    }

    let mut g = c.benchmark_group(name);
    g.sample_size(30);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(FRAMES as u64));
    g.bench_function("frames", |b| b.iter(|| parse_all(black_box(wire), &limits)));
    g.throughput(Throughput::Bytes(wire.len() as u64));
    g.bench_function("bytes", |b| b.iter(|| parse_all(black_box(wire), &limits)));
    g.finish();
}

fn stomp_parse(c: &mut Criterion) {
    bench_stream(c, "stomp_parse/send_64B", &send_stream(), 64);
    bench_stream(c, "stomp_parse/message_1KiB", &message_stream(), 1024);
}

criterion_group!(benches, stomp_parse);
criterion_main!(benches);
