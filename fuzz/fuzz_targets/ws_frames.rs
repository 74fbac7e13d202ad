//! The server-side frame decoder on arbitrary bytes, with small limits: never panics, never
//! consumes more than it was given, never hands out more than the limits allow, and always makes
//! progress or asks for more input. With permessage-deflate (the cut byte's top bit), compressed
//! messages inflate within the message limit or fail.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stompbox::ws::deflate::Inflater;
use stompbox::ws::{Decoder, DecoderConfig, Event};

const MAX_FRAME: u64 = 256;
const MAX_MESSAGE: u64 = 1024;

fuzz_target!(|data: &[u8]| {
    // The first byte picks how the input is cut into reads, so partial frames are exercised.
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let read = usize::from(cut % 64) + 1;
    let mut buf = rest.to_vec();
    let deflate = cut & 0x80 != 0;
    let mut dec = Decoder::new(DecoderConfig {
        deflate,
        ..DecoderConfig::server(MAX_FRAME, MAX_MESSAGE)
    });
    let mut inflater = Inflater::new(cut & 0x40 != 0);
    let (mut pos, mut avail) = (0, 0);
    while pos < buf.len() {
        avail = (avail + read).min(buf.len());
        loop {
            let remaining = avail - pos;
            let Some(input) = buf.get_mut(pos..avail) else {
                panic!("bad window {pos}..{avail}");
            };
            let (used, ev) = match dec.decode(input) {
                Ok(r) => r,
                // A protocol error ends the connection: nothing more to decode.
                Err(e) => {
                    assert!((1000..=1011).contains(&e.close_code()));
                    return;
                }
            };
            assert!(used <= remaining, "consumed {used} of {remaining}");
            assert!(used > 0 || ev.is_none(), "an event without progress");
            match ev {
                Some(Event::Message { text, payload }) => {
                    assert!(payload.len() as u64 <= MAX_MESSAGE);
                    if text {
                        assert!(std::str::from_utf8(payload).is_ok());
                    }
                }
                Some(Event::Compressed { payload, .. }) => {
                    assert!(deflate);
                    let mut out = Vec::new();
                    if inflater.inflate(payload, &mut out, MAX_MESSAGE as usize).is_ok() {
                        assert!(out.len() as u64 <= MAX_MESSAGE);
                    } else {
                        return;
                    }
                }
                Some(Event::Ping(p) | Event::Pong(p)) => assert!(p.len() <= 125),
                Some(Event::Close(c)) => {
                    if let Some((_, reason)) = c {
                        assert!(reason.len() <= 123);
                    }
                }
                None if used == 0 => break,
                None => {}
            }
            pos += used;
            if pos == avail {
                break;
            }
        }
        if avail == buf.len() {
            break;
        }
    }
});
