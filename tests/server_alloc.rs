//! Allocations per message through a whole in-process server: a producer SENDs to a topic
//! with 10 subscribers, then to a queue with one consumer (ack auto), and every allocation made
//! by any thread meanwhile is counted. This file holds one test so that nothing else runs in
//! the process while it counts; the test's own sockets read into fixed buffers and allocate
//! nothing.
//!
//! A message needs allocations of its own (its shared frame, its destination name); what this
//! guards is that nothing is allocated per message beyond them, and nothing per subscriber: a
//! scratch `Vec` per queue operation, a copy per delivery.
#![allow(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/counting.rs"]
mod counting;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use counting::count_allocs_all_threads;

const N: usize = 2_000;

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Read until `frames` more NUL-terminated frames have arrived (bodies hold no NUL); returns
/// the bytes read. Reads into `buf`: no allocation.
fn read_frames(s: &mut TcpStream, buf: &mut [u8], frames: usize) -> usize {
    let (mut seen, mut total) = (0, 0);
    while seen < frames {
        let n = s.read(buf).expect("read (10 s timeout)");
        assert!(
            n > 0,
            "the broker closed the connection after {seen} of {frames} frames"
        );
        total += n;
        seen += buf.iter().take(n).filter(|&&b| b == 0).count();
    }
    assert_eq!(seen, frames, "more frames than expected");
    total
}

/// Send `sends` (N frames) `rounds` times and wait for N frames on each reader, counting every
/// thread's allocations; returns allocations per message for each round.
fn measure(
    producer: &mut TcpStream,
    readers: &mut [TcpStream],
    sends: &[u8],
    buf: &mut [u8],
    rounds: usize,
) -> Vec<f64> {
    let mut per_message = Vec::new();
    for _ in 0..rounds {
        let (allocs, bytes) = count_allocs_all_threads(|| {
            producer.write_all(sends).unwrap();
            readers
                .iter_mut()
                .map(|r| read_frames(r, buf, N))
                .min()
                .unwrap_or(0)
        });
        assert!(bytes > N * 60, "{bytes} bytes for {N} MESSAGE frames");
        per_message.push(allocs as f64 / N as f64);
    }
    per_message
}

fn stomp_session(addr: SocketAddr, buf: &mut [u8], subscribe: Option<(&str, &str)>) -> TcpStream {
    let mut s = connect(addr);
    s.write_all(b"CONNECT\naccept-version:1.2\nhost:/\n\n\0")
        .unwrap();
    read_frames(&mut s, buf, 1);
    if let Some((id, dest)) = subscribe {
        s.write_all(format!("SUBSCRIBE\nid:{id}\ndestination:{dest}\nreceipt:r\n\n\0").as_bytes())
            .unwrap();
        read_frames(&mut s, buf, 1);
    }
    s
}

fn sends_to(dest: &str) -> Vec<u8> {
    let mut sends = Vec::new();
    for i in 0..N {
        sends.extend_from_slice(
            format!("SEND\ndestination:{dest}\ncontent-length:8\n\nmsg{i:05}\0").as_bytes(),
        );
    }
    sends
}

#[test]
fn messages_allocate_a_bounded_number_of_times_each_whatever_the_subscribers() {
    let h = stompbox::start(stompbox::Config {
        listen: None,
        tcp_listen: Some("127.0.0.1:0".parse().unwrap()),
        reactors: 1,
        ..stompbox::Config::default()
    })
    .expect("server starts");
    let addr = h.tcp_addr().expect("tcp addr");
    let mut buf = vec![0u8; 1 << 16];
    let mut producer = stomp_session(addr, &mut buf, None);

    // Topic: 10 subscribers.
    let mut subs: Vec<TcpStream> = (0..10)
        .map(|i| stomp_session(addr, &mut buf, Some((&format!("t{i}"), "/topic/alloc"))))
        .collect();
    let sends = sends_to("/topic/alloc");
    // Warm up: buffers, pools and queues exist before the count.
    measure(&mut producer, &mut subs, &sends, &mut buf, 2);
    let topic = measure(&mut producer, &mut subs, &sends, &mut buf, 3);
    eprintln!("topic, 10 subscribers: allocations per message, three rounds of {N}: {topic:?}");
    drop(subs);

    // Queue: one consumer.
    let mut consumer = [stomp_session(addr, &mut buf, Some(("q", "/queue/alloc")))];
    let sends = sends_to("/queue/alloc");
    measure(&mut producer, &mut consumer, &sends, &mut buf, 2);
    let queue = measure(&mut producer, &mut consumer, &sends, &mut buf, 3);
    eprintln!("queue: allocations per message, three rounds of {N}: {queue:?}");

    for (what, v) in [("topic", &topic), ("queue", &queue)] {
        let best = v.iter().copied().fold(f64::INFINITY, f64::min);
        assert!(
            best <= MAX_PER_MESSAGE,
            "{what}: {best} allocations per message (at most {MAX_PER_MESSAGE}): {v:?}"
        );
    }
    drop((producer, consumer));
    h.shutdown().unwrap();
}

/// Measured 2.0795 for the queue (2.0125 before queue deliveries were paced: a consumer's
/// connection now gets a prefetch window of 100 per turn, and its outbound segment list, freed
/// when it drains past 64 entries, regrows per window) and 2.055 for the topic (10
/// subscribers): the message's shared
/// frame and its destination name (`Arc`s made when the SEND is parsed), plus a few per 2,000
/// for buffers and batches per loop turn. A scratch `Vec` per queue operation (3.0125, as it
/// was) or a heap-built message id per topic message (3.055, as it was) fails this, and so
/// would anything allocated per subscriber.
const MAX_PER_MESSAGE: f64 = 2.1;
