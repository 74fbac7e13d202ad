//! permessage-deflate on the client's side with plain zlib (flate2), as a browser does it
//! (RFC 7692 §7.2): the tests' own codec, independent of the broker's composition of stored
//! block and shared segment.

use flate2::{Compress, Decompress, FlushCompress, FlushDecompress};

/// What a sync flush ends with, off the wire and put back before inflating.
pub const TAIL: [u8; 4] = [0, 0, 0xff, 0xff];

/// `data` as one compressed message's payload: sync-flushed, the tail removed. `z` keeps its
/// window (context takeover) unless the caller resets it first.
pub fn compress(z: &mut Compress, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 64);
    let mut input = data;
    loop {
        out.reserve(1024);
        let before = z.total_in();
        if z.compress_vec(input, &mut out, FlushCompress::Sync)
            .is_err()
        {
            break;
        }
        input = input
            .get((z.total_in() - before) as usize..)
            .unwrap_or_default();
        if input.is_empty() && out.len() < out.capacity() {
            break;
        }
    }
    if out.ends_with(&TAIL) {
        out.truncate(out.len() - TAIL.len());
    }
    out
}

/// A compressed message's payload, inflated with `z`'s window (at most 64 MiB of it).
pub fn inflate(z: &mut Decompress, data: &[u8]) -> Result<Vec<u8>, String> {
    let mut input = data.to_vec();
    input.extend_from_slice(&TAIL);
    let mut out = Vec::with_capacity(data.len() * 4 + 256);
    let mut rest: &[u8] = &input;
    loop {
        let before = z.total_in();
        z.decompress_vec(rest, &mut out, FlushDecompress::Sync)
            .map_err(|e| format!("a compressed message does not inflate: {e}"))?;
        rest = rest
            .get((z.total_in() - before) as usize..)
            .unwrap_or_default();
        if rest.is_empty() && out.len() < out.capacity() {
            return Ok(out);
        }
        if out.len() > 64 << 20 {
            return Err("a compressed message inflates past 64 MiB".into());
        }
        out.reserve(out.capacity().max(1024));
    }
}
