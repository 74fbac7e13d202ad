//! Per-reactor buffer pool. A connection takes a buffer when it has bytes to hold and gives it
//! back as soon as it is empty, so an idle connection holds no buffer at all. Running out is not
//! an error: past the pool's bound buffers are simply allocated and freed.
//!
//! Outbound buffers are pooled apart and start small ([`OUT_SIZE`]): they hold frame heads and
//! replies (published bodies are referenced, not copied), and a broadcast takes one per
//! subscriber at once, so 10,000 subscribers in one turn take 10,000 of them. The pool also
//! keeps the outbound queues' segment lists (see [`super::outq`]): an idle connection holds
//! none of those either.

use std::collections::VecDeque;

use super::outq::Seg;

#[derive(Debug)]
pub struct BufPool {
    free: Vec<Vec<u8>>,
    size: usize,
    max_free: usize,
    segs: Vec<VecDeque<Seg>>,
    out: Vec<Vec<u8>>,
}

/// An outbound buffer's first capacity: a few MESSAGE heads, a RECEIPT, a CONNECTED. It grows
/// for a connection that is sent more in one turn.
pub const OUT_SIZE: usize = 512;

/// Outbound buffers that grew past this are freed rather than kept in the pool.
const OUT_KEEP: usize = 64 * 1024;

impl BufPool {
    pub fn new(size: usize, max_free: usize) -> Self {
        BufPool {
            free: Vec::new(),
            size,
            max_free,
            segs: Vec::new(),
            out: Vec::new(),
        }
    }

    /// An empty outbound buffer (see [`OUT_SIZE`]).
    pub fn get_out(&mut self) -> Vec<u8> {
        self.out
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(OUT_SIZE))
    }

    /// Give back an outbound buffer.
    pub fn put_out(&mut self, mut buf: Vec<u8>) {
        if self.out.len() < self.max_free && buf.capacity() <= OUT_KEEP {
            buf.clear();
            self.out.push(buf);
        }
    }

    /// An empty segment list (with room, when one was given back).
    pub(super) fn get_segs(&mut self) -> VecDeque<Seg> {
        self.segs.pop().unwrap_or_default()
    }

    /// Give back an empty segment list; long ones are freed.
    pub(super) fn put_segs(&mut self, mut segs: VecDeque<Seg>) {
        if self.segs.len() < self.max_free && segs.capacity() <= 64 {
            segs.clear();
            self.segs.push(segs);
        }
    }

    /// An empty buffer with at least `size` capacity.
    pub fn get(&mut self) -> Vec<u8> {
        self.free
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.size))
    }

    /// Return a buffer. Buffers that grew well past the pool size are freed instead of kept.
    pub fn put(&mut self, mut buf: Vec<u8>) {
        if self.free.len() < self.max_free && buf.capacity() <= self.size * 4 {
            buf.clear();
            self.free.push(buf);
        }
    }
}
