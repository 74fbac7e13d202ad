//! Client-to-server masking (RFC 6455 §5.3), applied in place.
//!
//! The fast path XORs 16 bytes at a time; it is checked against [`apply_mask_plain`] at every
//! alignment and offset in the tests below.

/// XOR `buf` with `mask`, where `buf` starts at byte `offset` of the frame payload (so a payload
/// that arrives in pieces can be unmasked piece by piece).
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    let mut m = mask;
    m.rotate_left(offset % 4);
    let word = u32::from_ne_bytes(m) as u128;
    let wide = word | (word << 32) | (word << 64) | (word << 96);
    let mut chunks = buf.chunks_exact_mut(16);
    for chunk in &mut chunks {
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(chunk);
        let v = u128::from_ne_bytes(bytes) ^ wide;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    for (b, k) in chunks.into_remainder().iter_mut().zip(m.iter().cycle()) {
        *b ^= *k;
    }
}

/// The byte-at-a-time reference implementation.
pub fn apply_mask_plain(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= mask[(offset + i) % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_matches_plain_at_every_alignment_and_offset() {
        let mask = [0x6d, 0xb6, 0xb2, 0x80];
        let data: Vec<u8> = (0..200u32).map(|i| (i * 37 % 251) as u8).collect();
        for start in 0..16 {
            for len in [0usize, 1, 3, 4, 15, 16, 17, 31, 33, 64, 100, 150] {
                for offset in 0..8 {
                    let end = (start + len).min(data.len());
                    let mut a = data.clone();
                    let mut b = data.clone();
                    apply_mask(&mut a[start..end], mask, offset);
                    apply_mask_plain(&mut b[start..end], mask, offset);
                    assert_eq!(a, b, "start {start} len {len} offset {offset}");
                }
            }
        }
    }

    #[test]
    fn piecewise_equals_whole() {
        let mask = [1, 2, 3, 4];
        let data: Vec<u8> = (0..100u8).collect();
        let mut whole = data.clone();
        apply_mask(&mut whole, mask, 0);
        for split in 0..data.len() {
            let mut parts = data.clone();
            let (a, b) = parts.split_at_mut(split);
            apply_mask(a, mask, 0);
            apply_mask(b, mask, split);
            assert_eq!(parts, whole, "split {split}");
        }
    }
}
