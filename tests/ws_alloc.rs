//! The frame decoder does not allocate for frames that arrive whole, and a bounded number of
//! times for frames it has to reassemble.
//!
//! A counting global allocator (`common/counting.rs`, a thin wrapper over `System`) counts
//! allocations, reallocations included, made by the current thread while a measurement is open.
//! Measurements are serialized by a lock, so tests running on other threads neither add to the
//! count nor reset it.
#![allow(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use stompbox::ws::{write_frame, Decoder, DecoderConfig, Event, Opcode};

#[path = "common/counting.rs"]
mod counting;
use counting::count_allocs;

/// A socket read's worth: frames straddle reads at this size.
const READ_CHUNK: usize = 4096;

fn server() -> Decoder {
    Decoder::new(DecoderConfig::server(1 << 20, 1 << 20))
}

fn mask_for(i: usize) -> Option<[u8; 4]> {
    Some((i as u32).wrapping_mul(0x9E37_79B9).to_be_bytes())
}

/// What the decoder produced, tallied without allocating.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    text: usize,
    binary: usize,
    pings: usize,
    pongs: usize,
    payload_bytes: usize,
    /// Sum of payload bytes, weighted by position, to catch wrong unmasking.
    checksum: u64,
}

impl Tally {
    fn add(&mut self, ev: &Event<'_>) {
        let p = match ev {
            Event::Message {
                text: true,
                payload,
            } => {
                self.text += 1;
                payload
            }
            Event::Message { payload, .. } => {
                self.binary += 1;
                payload
            }
            Event::Ping(p) => {
                self.pings += 1;
                p
            }
            Event::Pong(p) => {
                self.pongs += 1;
                p
            }
            Event::Close(_) => panic!("unexpected close"),
            Event::Compressed { .. } => panic!("compressed without permessage-deflate"),
        };
        self.payload_bytes += p.len();
        for (i, b) in p.iter().enumerate() {
            self.checksum = self
                .checksum
                .wrapping_mul(31)
                .wrapping_add(u64::from(*b) ^ i as u64);
        }
    }
}

/// Decode a stream that is wholly in `buf`.
fn decode_whole(dec: &mut Decoder, buf: &mut [u8], tally: &mut Tally) {
    let mut pos = 0;
    while pos < buf.len() {
        let (used, ev) = match dec.decode(&mut buf[pos..]) {
            Ok(r) => r,
            Err(e) => panic!("decode error at {pos}: {e}"),
        };
        if let Some(ev) = &ev {
            tally.add(ev);
        }
        assert!(used > 0, "stalled at {pos}");
        pos += used;
    }
}

/// A socket read loop: `wire` arrives in 4 KiB reads, each appended to `buf` behind whatever
/// the decoder left unconsumed (at most a frame header or a control frame). Returns the number
/// of reads.
fn decode_in_reads(dec: &mut Decoder, mut wire: &[u8], buf: &mut [u8], tally: &mut Tally) -> usize {
    let (mut start, mut end, mut reads) = (0, 0, 0);
    while !wire.is_empty() {
        buf.copy_within(start..end, 0);
        end -= start;
        start = 0;
        let n = READ_CHUNK.min(wire.len());
        buf[end..end + n].copy_from_slice(&wire[..n]);
        wire = &wire[n..];
        end += n;
        reads += 1;
        loop {
            let (used, ev) = match dec.decode(&mut buf[start..end]) {
                Ok(r) => r,
                Err(e) => panic!("decode error: {e}"),
            };
            start += used;
            match ev {
                Some(ev) => tally.add(&ev),
                None if used == 0 => break,
                None => {}
            }
        }
    }
    assert_eq!(start, end, "bytes left over");
    reads
}

fn text_stream(frames: usize) -> Vec<u8> {
    let mut wire = Vec::new();
    for i in 0..frames {
        let payload: Vec<u8> = (0..64).map(|j| b'a' + ((i + j) % 26) as u8).collect();
        write_frame(&mut wire, true, Opcode::Text, &payload, mask_for(i));
    }
    wire
}

/// Small binary frames of every 7-bit length and some 16-bit ones, with a ping every 10 frames
/// and a pong every 25.
fn binary_and_pings_stream(frames: usize) -> (Vec<u8>, Tally) {
    let mut wire = Vec::new();
    let mut expected = Tally::default();
    for i in 0..frames {
        let len = if i % 50 == 49 { 126 + i % 300 } else { i % 126 };
        let payload: Vec<u8> = (0..len).map(|j| (i * 7 + j) as u8).collect();
        write_frame(&mut wire, true, Opcode::Binary, &payload, mask_for(i));
        expected.add(&Event::Message {
            text: false,
            payload: &payload,
        });
        if i % 10 == 0 {
            let p = [i as u8; 8];
            write_frame(&mut wire, true, Opcode::Ping, &p, mask_for(i + 1));
            expected.add(&Event::Ping(&p));
        }
        if i % 25 == 0 {
            write_frame(&mut wire, true, Opcode::Pong, b"", mask_for(i + 2));
            expected.add(&Event::Pong(b""));
        }
    }
    (wire, expected)
}

#[test]
fn the_counter_counts() {
    let (n, v) = count_allocs(|| black_box(Vec::<u8>::with_capacity(100)));
    assert!(n >= 1, "a Vec::with_capacity was not counted");
    drop(v);
    let (n, ()) = count_allocs(|| ());
    assert_eq!(n, 0);
}

#[test]
fn text_frames_in_one_buffer_do_not_allocate() {
    const FRAMES: usize = 10_000;
    let mut wire = text_stream(FRAMES);
    let mut dec = server();
    let mut tally = Tally::default();
    // Warm-up: the first 100 frames (70 bytes each on the wire) are not counted.
    let (head, rest) = wire.split_at_mut(100 * 70);
    decode_whole(&mut dec, head, &mut tally);
    let (allocs, ()) = count_allocs(|| decode_whole(&mut dec, rest, &mut tally));
    assert_eq!(allocs, 0, "decoding {} frames allocated", FRAMES - 100);
    assert_eq!(tally.text, FRAMES);
    assert_eq!(tally.payload_bytes, FRAMES * 64);
    assert_eq!(dec.buffered(), 0, "no frame needed reassembly");
}

#[test]
fn small_binary_frames_and_pings_in_one_buffer_do_not_allocate() {
    let (mut warm_up, _) = binary_and_pings_stream(100);
    let (mut wire, expected) = binary_and_pings_stream(5_000);
    let mut dec = server();
    decode_whole(&mut dec, &mut warm_up, &mut Tally::default());
    let mut tally = Tally::default();
    let (allocs, ()) = count_allocs(|| decode_whole(&mut dec, &mut wire, &mut tally));
    assert_eq!(allocs, 0, "decoding from one buffer allocated");
    assert_eq!(tally, expected);
    assert_eq!((tally.binary, tally.pings, tally.pongs), (5_000, 500, 200));
}

/// Frames that straddle two socket reads wait in the caller's buffer until they are whole
/// (already unmasked and validated as far as they have arrived), so they cost nothing either:
/// only frames larger than the decoder's inline limit are reassembled in its own buffer.
#[test]
fn frames_split_across_reads_do_not_allocate() {
    let mut buf = vec![0u8; READ_CHUNK + 16 * 1024];
    let text = text_stream(10_000);
    let (mixed, expected) = binary_and_pings_stream(5_000);
    for (name, wire) in [("text", &text), ("binary+pings", &mixed)] {
        let mut dec = server();
        let mut tally = Tally::default();
        let (allocs, reads) =
            count_allocs(|| decode_in_reads(&mut dec, wire, &mut buf, &mut tally));
        assert!(reads > 10, "{name}: the stream must span many reads");
        assert_eq!(allocs, 0, "{name}: {allocs} allocations over {reads} reads");
        let mut whole = Tally::default();
        decode_whole(&mut server(), &mut wire.clone(), &mut whole);
        assert_eq!(tally, whole, "{name}: reads and one buffer disagree");
        // The last message completed; the next call gives its buffer back.
        let _ = dec.decode(&mut []);
        assert_eq!(dec.buffered(), 0, "{name}: idle decoder holds memory");
    }
    let mut whole = Tally::default();
    decode_whole(&mut server(), &mut mixed.clone(), &mut whole);
    assert_eq!(whole, expected);
}

/// `frames` masked fragments of `len` bytes each, forming one text message.
fn fragmented(frames: usize, len: usize) -> Vec<u8> {
    let mut wire = Vec::new();
    for i in 0..frames {
        let op = if i == 0 {
            Opcode::Text
        } else {
            Opcode::Continuation
        };
        let payload = vec![b'x'; len];
        write_frame(&mut wire, i + 1 == frames, op, &payload, mask_for(i));
    }
    wire
}

#[test]
fn fragmented_messages_allocate_a_bounded_number_of_times() {
    let mut dec = server();
    let mut tally = Tally::default();
    // Reassembly grows its buffer geometrically: 4 x 64 bytes is at least one allocation and
    // at most a handful, every time (the buffer is not kept between messages).
    for round in 0..3 {
        let mut wire = fragmented(4, 64);
        let (allocs, ()) = count_allocs(|| decode_whole(&mut dec, &mut wire, &mut tally));
        assert!(
            (1..=4).contains(&allocs),
            "fragmented message {round}: {allocs} allocations"
        );
    }
    assert_eq!((tally.text, tally.payload_bytes), (3, 3 * 256));

    let mut wire = fragmented(2, 40 * 1024);
    let (allocs, ()) = count_allocs(|| decode_whole(&mut dec, &mut wire, &mut tally));
    assert!(
        (1..=4).contains(&allocs),
        "80 KiB message: {allocs} allocations"
    );
    assert!(dec.buffered() >= 80 * 1024);
    // The next call, with nothing to decode, gives the memory back.
    let (allocs, r) = count_allocs(|| dec.decode(&mut []).map(|(used, ev)| (used, ev.is_some())));
    assert_eq!((allocs, r), (0, Ok((0, false))));
    assert_eq!(dec.buffered(), 0);
}

/// Fan-out (issue 3): delivering a published message to 1,000 subscribers, once the queues'
/// buffers exist, allocates nothing: each delivery copies a small head into a reused buffer and
/// clones an `Arc` of the shared part. The first round (cold buffers) must allocate, which shows
/// the counter sees this path.
#[test]
fn fan_out_to_warm_queues_does_not_allocate() {
    use std::sync::Arc;
    use stompbox::router::{Directory, Framing, Published, Router, Subscriber};
    use stompbox::server::testing::QueueSink;
    use stompbox::session::AckMode;
    use stompbox::stomp::Version;

    let mut router = Router::new(0, Arc::new(Directory::new()));
    for i in 0..1000 {
        router.subscribe(
            "/topic/t",
            Subscriber::new(
                i,
                &format!("s{i}"),
                AckMode::Auto,
                Version::V1_2,
                if i % 2 == 0 {
                    Framing::WebSocket
                } else {
                    Framing::Tcp
                },
            ),
        );
    }
    let msg = Published::raw(
        "/topic/t",
        b"destination:/topic/t\ncontent-length:5\n\nhello\0",
    );
    let mut sink = QueueSink::new(1000);
    let (cold, n) = count_allocs(|| router.deliver_local(&msg, &mut sink));
    assert_eq!(n, 1000);
    assert!(cold >= 1000, "cold queues take buffers: {cold} allocations");
    for round in 0..3 {
        for q in &mut sink.queues {
            q.clear();
        }
        let (warm, n) = count_allocs(|| black_box(router.deliver_local(&msg, &mut sink)));
        assert_eq!(n, 1000);
        assert_eq!(
            warm, 0,
            "round {round}: {warm} allocations for 1,000 deliveries"
        );
    }
    assert_eq!(sink.queues[7].len(), sink.queues[9].len());
}

/// Fan-out to wildcard subscribers (issue 4) allocates nothing either, once warm: the trie walk
/// keeps its live nodes on the stack, and the other reactors' interest in the destination
/// (`remote_mask`, exact and wildcard) comes from the cached entry.
#[test]
fn fan_out_to_wildcard_subscribers_does_not_allocate() {
    use std::sync::Arc;
    use stompbox::router::{Directory, Framing, Published, Router, Subscriber};
    use stompbox::server::testing::QueueSink;
    use stompbox::session::AckMode;
    use stompbox::stomp::Version;

    let patterns = [
        "/topic/chat.room5",
        "/topic/chat.*",
        "/topic/chat.#",
        "/topic/#",
        "/topic/*.room5",
        "/topic/#.room5",
        "/topic/chat.#.#",
        "/topic/other.*",
    ];
    let directory = Arc::new(Directory::new());
    let mut router = Router::new(0, Arc::clone(&directory));
    // Another reactor with a wildcard subscription, so the remote mask has a pattern part.
    let mut peer = Router::new(1, directory);
    peer.subscribe(
        "/topic/#",
        Subscriber::new(0, "p", AckMode::Auto, Version::V1_2, Framing::Tcp),
    );
    for i in 0..800 {
        router.subscribe(
            patterns[i % patterns.len()],
            Subscriber::new(
                i,
                &format!("s{i}"),
                AckMode::Auto,
                Version::V1_2,
                Framing::Tcp,
            ),
        );
    }
    let msg = Published::raw(
        "/topic/chat.room5",
        b"destination:/topic/chat.room5\ncontent-length:5\n\nhello\0",
    );
    let want = 700; // every pattern but "/topic/other.*"
    let mut sink = QueueSink::new(800);
    let (cold, n) = count_allocs(|| router.deliver_local(&msg, &mut sink));
    assert_eq!(n, want);
    assert!(cold >= want, "cold queues take buffers: {cold} allocations");
    assert_eq!(router.remote_mask("/topic/chat.room5"), 0b10);
    for round in 0..3 {
        for q in &mut sink.queues {
            q.clear();
        }
        let (warm, (n, mask)) = count_allocs(|| {
            let n = black_box(router.deliver_local(&msg, &mut sink));
            (n, router.remote_mask(black_box("/topic/chat.room5")))
        });
        assert_eq!((n, mask), (want, 0b10));
        assert_eq!(
            warm, 0,
            "round {round}: {warm} allocations for {want} deliveries"
        );
    }
}
