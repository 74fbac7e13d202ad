//! A reactor's permessage-deflate state: the compressors that make the shared segments of its
//! deliveries (one per window size in use), a small cache of the segments of the messages being
//! fanned out, and the inflater shared by sessions that agreed `client_no_context_takeover`.
//!
//! A topic message fanned out to N compressing subscribers is deflated once per reactor and
//! window size, not N times: each subscriber's MESSAGE is the WebSocket header (RSV1 set), a
//! stored DEFLATE block holding its head (`MESSAGE`, `subscription`, `ack`), and the shared
//! segment, referenced like the uncompressed shared part (see [`crate::ws::deflate`]).

use std::sync::Arc;

use crate::ws::deflate::{stored_header, Deflater, Inflater};
use crate::ws::{self, Opcode};

/// What the server does with compression once a session agreed to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressionConfig {
    /// DEFLATE level for the server's messages, 0 (stored) to 9.
    pub level: u32,
    /// Messages (their shared part) smaller than this go uncompressed, RSV1 clear.
    pub min_size: usize,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        CompressionConfig {
            level: 1,
            min_size: 256,
        }
    }
}

/// Segments cached at once: a message's encodings (1.0, 1.1, 1.2) times window sizes in use.
const CACHED: usize = 4;

/// Most parts the STOMP head of a delivery may have to be compressed (a queue delivery's has
/// eight, after its frame header); a head of more goes uncompressed.
pub const MAX_HEAD_PARTS: usize = 14;

#[derive(Debug)]
struct Cached {
    /// The shared part this is the segment of (held, so its address is not reused meanwhile).
    src: Arc<[u8]>,
    bits: u8,
    /// `None`: compressing did not make it smaller; it goes uncompressed.
    segment: Option<Arc<[u8]>>,
}

/// A reactor's compression state (see the module's documentation).
#[derive(Debug)]
pub struct Compression {
    cfg: CompressionConfig,
    /// Compressors by window bits, 9..=15, made when first needed.
    deflaters: [Option<Deflater>; 7],
    cache: [Option<Cached>; CACHED],
    next: usize,
    scratch: Vec<u8>,
    /// For sessions without client context takeover (reset after each message).
    inflater: Option<Inflater>,
    /// Segments made, and their bytes before and after (for metrics).
    pub segments: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// A delivery's parts, compressed: the new frame header and stored-block header, to go before
/// the head's other parts, and the segment that replaces the shared part.
pub struct Compressed<'a> {
    pub header: [u8; ws::frame::MAX_HEADER_LEN],
    pub header_len: usize,
    pub stored: [u8; 5],
    /// In the cache (borrowed: the queue takes the one reference it needs).
    pub segment: &'a Arc<[u8]>,
}

impl Compression {
    pub fn new(cfg: CompressionConfig) -> Self {
        Compression {
            cfg,
            deflaters: Default::default(),
            cache: Default::default(),
            next: 0,
            scratch: Vec::new(),
            inflater: None,
            segments: 0,
            bytes_in: 0,
            bytes_out: 0,
        }
    }

    /// The shared inflater for a session without client context takeover.
    pub fn shared_inflater(&mut self) -> &mut Inflater {
        self.inflater.get_or_insert_with(|| Inflater::new(false))
    }

    /// The compressed form of a WebSocket delivery `head` (`head[0]` is its frame header, the
    /// rest the STOMP head) + `shared`, for a session that compresses with `bits` window bits;
    /// `None` to send it as it is (small, a head over 64 KiB, or not smaller compressed).
    pub fn compress(
        &mut self,
        head: &[&[u8]],
        shared: &Arc<[u8]>,
        bits: u8,
    ) -> Option<Compressed<'_>> {
        if shared.len() < self.cfg.min_size {
            return None;
        }
        let (wsh, rest) = head.split_first()?;
        // The compressed head is the new frame header, the stored block's, and these parts.
        if rest.len() > MAX_HEAD_PARTS {
            return None;
        }
        let opcode = match wsh.first().map(|b| b & 0x0F) {
            Some(0x1) => Opcode::Text,
            Some(0x2) => Opcode::Binary,
            _ => return None,
        };
        let head_len: usize = rest.iter().map(|p| p.len()).sum();
        let stored_len = u16::try_from(head_len).ok()?;
        let slot = self.segment(shared, bits)?;
        let segment = self.cache.get(slot)?.as_ref()?.segment.as_ref()?;
        let len = 5 + head_len + segment.len();
        let mut header = [0u8; ws::frame::MAX_HEADER_LEN];
        let header_len = ws::encode_header(&mut header, true, opcode, len as u64, None);
        if let Some(b0) = header.first_mut() {
            *b0 |= 0x40; // RSV1: compressed (RFC 7692 §6)
        }
        Some(Compressed {
            header,
            header_len,
            stored: stored_header(stored_len),
            segment,
        })
    }

    /// The cache slot of the segment of `shared` for `bits`, found or made now.
    fn segment(&mut self, shared: &Arc<[u8]>, bits: u8) -> Option<usize> {
        let bits = bits.clamp(9, 15);
        if let Some(i) = self.cache.iter().position(|c| {
            c.as_ref()
                .is_some_and(|c| c.bits == bits && Arc::ptr_eq(&c.src, shared))
        }) {
            return Some(i);
        }
        let d = deflater(&mut self.deflaters, self.cfg.level, bits)?;
        self.scratch.clear();
        let made = d.segment(shared, &mut self.scratch);
        // Worth it only if the stored-block header and the segment are smaller than the part.
        let segment = (made && self.scratch.len() + 5 < shared.len())
            .then(|| Arc::<[u8]>::from(self.scratch.as_slice()));
        if let Some(s) = &segment {
            self.segments += 1;
            self.bytes_in += shared.len() as u64;
            self.bytes_out += s.len() as u64;
        }
        if self.scratch.capacity() > 1 << 20 {
            self.scratch = Vec::new();
        }
        let slot = self.next % CACHED;
        self.next = self.next.wrapping_add(1);
        *self.cache.get_mut(slot)? = Some(Cached {
            src: shared.clone(),
            bits,
            segment,
        });
        Some(slot)
    }

    /// Forget the cached segments (end of a fan-out: the messages they belong to may go).
    pub fn clear(&mut self) {
        if self.next != 0 {
            self.cache = Default::default();
            self.next = 0;
        }
    }

    /// Compress a whole message (the echo endpoint's replies): the first bytes in a stored
    /// block, the rest as a segment, as a topic delivery is made. `false`: send it as it is.
    pub fn compress_whole(&mut self, payload: &[u8], bits: u8, out: &mut Vec<u8>) -> bool {
        if payload.len() < self.cfg.min_size {
            return false;
        }
        let Some(d) = deflater(&mut self.deflaters, self.cfg.level, bits) else {
            return false;
        };
        let (head, rest) = payload.split_at(payload.len().min(16));
        let start = out.len();
        if ws::deflate::compress_message(d, head, rest, out) && out.len() - start < payload.len() {
            return true;
        }
        // Not smaller compressed: it goes as it is.
        out.truncate(start);
        false
    }
}

/// The compressor for a window of `bits` (9-15, clamped), made when first needed.
fn deflater(deflaters: &mut [Option<Deflater>; 7], level: u32, bits: u8) -> Option<&mut Deflater> {
    let bits = bits.clamp(9, 15);
    let d = deflaters.get_mut(usize::from(bits - 9))?;
    Some(d.get_or_insert_with(|| Deflater::new(level, bits)))
}

/// Run `queue` with `head` and `shared` as they go to a connection: compressed for a session
/// that agreed to permessage-deflate with window `bits` (when worth it), else as they are.
/// `head[0]` of a WebSocket delivery is its frame header ([`crate::router::frame_head`]).
#[inline]
pub fn with_compression<R>(
    zip: &mut Compression,
    bits: Option<u8>,
    head: &[&[u8]],
    shared: &Arc<[u8]>,
    queue: impl FnOnce(&[&[u8]], &Arc<[u8]>) -> R,
) -> R {
    let Some(z) = bits.and_then(|b| zip.compress(head, shared, b)) else {
        return queue(head, shared);
    };
    // `compress` took only heads whose parts all fit here (every byte the lengths count).
    let mut parts: [&[u8]; MAX_HEAD_PARTS + 2] = [&[]; MAX_HEAD_PARTS + 2];
    let rest = head.get(1..).unwrap_or_default();
    let [a, b, tail @ ..] = &mut parts;
    *a = z.header.get(..z.header_len).unwrap_or_default();
    *b = &z.stored;
    for (d, s) in tail.iter_mut().zip(rest) {
        *d = s;
    }
    queue(parts.get(..rest.len() + 2).unwrap_or_default(), z.segment)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_part_is_compressed_once_per_window_size() {
        let mut c = Compression::new(CompressionConfig::default());
        let shared: Arc<[u8]> = Arc::from(
            b"destination:/topic/a\ncontent-length:300\n\n"
                .iter()
                .chain([b'x'; 300].iter())
                .copied()
                .collect::<Vec<u8>>(),
        );
        let mut h = [0u8; ws::frame::MAX_HEADER_LEN];
        let n = ws::encode_header(&mut h, true, Opcode::Text, 999, None);
        let head: [&[u8]; 2] = [&h[..n], b"MESSAGE\nsubscription:1\n"];
        let a = c.compress(&head, &shared, 15).unwrap();
        let (a_header, a_len, a_seg) = (a.header, a.header_len, a.segment.clone());
        let b = c.compress(&head, &shared, 15).unwrap().segment.clone();
        assert!(Arc::ptr_eq(&a_seg, &b));
        assert_eq!(c.segments, 1);
        let d = c.compress(&head, &shared, 10).unwrap().segment.clone();
        assert!(!Arc::ptr_eq(&a_seg, &d));
        assert_eq!(c.segments, 2);
        // The frame: RSV1 and a length covering the stored block and the segment.
        let hdr = ws::parse_header(&a_header[..a_len]).unwrap().unwrap();
        assert!(hdr.rsv1 && hdr.fin && hdr.opcode == Opcode::Text);
        assert_eq!(hdr.payload_len as usize, 5 + head[1].len() + a_seg.len());
        // A head of many parts (a queue delivery has nine with the frame header): all of them
        // go out, and the lengths count exactly those bytes; past the bound, uncompressed.
        let many: Vec<&[u8]> = std::iter::once(&h[..n])
            .chain((0..MAX_HEAD_PARTS).map(|_| &b"k:v\n"[..]))
            .collect();
        let mut queued = Vec::new();
        with_compression(&mut c, Some(15), &many, &shared, |parts, seg| {
            queued = parts.concat();
            queued.extend_from_slice(seg);
        });
        let hdr = ws::parse_header(&queued).unwrap().unwrap();
        assert!(hdr.rsv1);
        assert_eq!(hdr.header_len + hdr.payload_len as usize, queued.len());
        let mut out = Vec::new();
        ws::deflate::Inflater::new(false)
            .inflate(&queued[hdr.header_len..], &mut out, 1 << 20)
            .unwrap();
        assert_eq!(
            out,
            [b"k:v\n".repeat(MAX_HEAD_PARTS), shared.to_vec()].concat()
        );
        let too_many: Vec<&[u8]> = std::iter::once(&h[..n])
            .chain((0..=MAX_HEAD_PARTS).map(|_| &b"k:v\n"[..]))
            .collect();
        assert!(c.compress(&too_many, &shared, 15).is_none());
        // Small parts and incompressible ones go as they are.
        let small: Arc<[u8]> = Arc::from(&b"tiny"[..]);
        assert!(c.compress(&head, &small, 15).is_none());
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let noise: Arc<[u8]> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect::<Vec<u8>>()
            .into();
        assert!(c.compress(&head, &noise, 15).is_none());
    }
}
