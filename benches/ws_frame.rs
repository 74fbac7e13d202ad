//! Frame decoding and unmasking throughput.
//!
//! `parse_*`: a stream of masked text frames (client to server), decoded into messages by our
//! sans-IO [`Decoder`] and by tungstenite 0.24 in the server role, from the same bytes:
//!
//! - `stompbox`: the whole stream is already in the buffer (the copy that refreshes the buffer,
//!   needed because unmasking is in place, is outside the timing). Lower bound.
//! - `stompbox_4k_reads`: the stream is copied into a read buffer 4 KiB at a time inside the
//!   timing, the way a socket read loop works, so frames straddle reads and take the streaming
//!   path. This is the like-for-like comparison with tungstenite, which reads 4 KiB chunks from
//!   its `Read` stream into its own buffer.
//! - `tungstenite`: `WebSocket::from_raw_socket(.., Role::Server, ..)` over an in-memory
//!   stream, `read()` once per message: header parse, unmask, UTF-8 check, an owned `Message`.
//!
//! `unmask`: the 16-bytes-at-a-time [`apply_mask`] against the byte-at-a-time reference.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::io::{self, Read, Write};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use stompbox::ws::mask::{apply_mask, apply_mask_plain};
use stompbox::ws::{write_frame, Decoder, DecoderConfig, Event, Opcode};
use tungstenite::protocol::Role;
use tungstenite::{Message, WebSocket};

/// Socket-sized reads, the same chunk size tungstenite reads with.
const READ_CHUNK: usize = 4096;

/// `n` masked text frames of `len` ASCII bytes each, with a different mask per frame.
fn masked_stream(n: usize, len: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
    let mut wire = Vec::with_capacity(n * (len + 14));
    for i in 0..n as u32 {
        let mask = i.wrapping_mul(0x9E37_79B9).to_be_bytes();
        write_frame(&mut wire, true, Opcode::Text, &payload, Some(mask));
    }
    wire
}

fn decoder() -> Decoder {
    Decoder::new(DecoderConfig::server(1 << 20, 1 << 20))
}

/// Decode every frame of a stream that is wholly in `buf`; returns the payload bytes seen.
fn decode_all(dec: &mut Decoder, buf: &mut [u8]) -> usize {
    let mut pos = 0;
    let mut bytes = 0;
    while pos < buf.len() {
        let Ok((used, ev)) = dec.decode(&mut buf[pos..]) else {
            panic!("decode error at {pos}");
        };
        if let Some(Event::Message { payload, .. }) = ev {
            bytes += black_box(payload).len();
        }
        assert!(used > 0, "stalled at {pos}");
        pos += used;
    }
    bytes
}

/// Decode `wire` as if it arrived in 4 KiB socket reads into `buf` (which holds one read plus
/// whatever the decoder left unconsumed: at most a frame header or a control frame).
fn decode_in_reads(dec: &mut Decoder, wire: &[u8], buf: &mut [u8]) -> usize {
    let mut src = wire;
    let (mut start, mut end) = (0, 0);
    let mut bytes = 0;
    while !src.is_empty() {
        buf.copy_within(start..end, 0);
        end -= start;
        start = 0;
        let n = READ_CHUNK.min(src.len());
        buf[end..end + n].copy_from_slice(&src[..n]);
        src = &src[n..];
        end += n;
        loop {
            let Ok((used, ev)) = dec.decode(&mut buf[start..end]) else {
                panic!("decode error");
            };
            start += used;
            match ev {
                Some(Event::Message { payload, .. }) => bytes += black_box(payload).len(),
                Some(_) => {}
                None if used == 0 => break,
                None => {}
            }
        }
    }
    bytes
}

/// An in-memory socket for tungstenite: reads come from a slice, writes are discarded.
struct MemStream<'a> {
    input: &'a [u8],
}

impl Read for MemStream<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.input.read(out)
    }
}

impl Write for MemStream<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn tungstenite_read_all(ws: &mut WebSocket<MemStream<'_>>, frames: usize) -> usize {
    let mut bytes = 0;
    for _ in 0..frames {
        match ws.read() {
            Ok(Message::Text(s)) => bytes += black_box(s).len(),
            other => panic!("tungstenite: {other:?}"),
        }
    }
    bytes
}

fn bench_parse(c: &mut Criterion, name: &str, frames: usize, len: usize) {
    let wire = masked_stream(frames, len);
    let expected = frames * len;
    // Both parsers agree on the stream before anything is timed.
    assert_eq!(decode_all(&mut decoder(), &mut wire.clone()), expected);
    let mut read_buf = vec![0u8; READ_CHUNK + 256];
    assert_eq!(
        decode_in_reads(&mut decoder(), &wire, &mut read_buf),
        expected
    );
    let mut ws = WebSocket::from_raw_socket(MemStream { input: &wire }, Role::Server, None);
    assert_eq!(tungstenite_read_all(&mut ws, frames), expected);

    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Bytes(wire.len() as u64));
    g.sample_size(20);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    let batch = if wire.len() > 1 << 20 {
        BatchSize::PerIteration
    } else {
        BatchSize::SmallInput
    };
    g.bench_function("stompbox", |b| {
        let mut dec = decoder();
        b.iter_batched_ref(|| wire.clone(), |buf| decode_all(&mut dec, buf), batch)
    });
    g.bench_function("stompbox_4k_reads", |b| {
        let mut dec = decoder();
        let mut buf = vec![0u8; READ_CHUNK + 256];
        b.iter(|| decode_in_reads(&mut dec, black_box(&wire), &mut buf))
    });
    g.bench_function("tungstenite", |b| {
        b.iter_batched_ref(
            || WebSocket::from_raw_socket(MemStream { input: &wire }, Role::Server, None),
            |ws| tungstenite_read_all(ws, frames),
            batch,
        )
    });
    g.finish();
}

fn parse(c: &mut Criterion) {
    bench_parse(c, "parse_64B_masked", 1000, 64);
    bench_parse(c, "parse_16KiB_masked", 256, 16 * 1024);
}

fn unmask(c: &mut Criterion) {
    let mut g = c.benchmark_group("unmask");
    g.sample_size(20);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    for (label, len) in [("64B", 64), ("1KiB", 1024), ("64KiB", 64 * 1024)] {
        let mut buf: Vec<u8> = (0..len).map(|i| i as u8).collect();
        g.throughput(Throughput::Bytes(len as u64));
        // Masking twice is the identity, so the buffer can be reused without a refresh.
        g.bench_function(format!("apply_mask/{label}"), |b| {
            b.iter(|| apply_mask(black_box(&mut buf), black_box(mask), 0))
        });
        g.bench_function(format!("apply_mask_plain/{label}"), |b| {
            b.iter(|| apply_mask_plain(black_box(&mut buf), black_box(mask), 0))
        });
    }
    g.finish();
}

criterion_group!(benches, parse, unmask);
criterion_main!(benches);
