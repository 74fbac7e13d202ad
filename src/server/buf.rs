//! Per-reactor buffer pool. A connection takes a buffer when it has bytes to hold and gives it
//! back as soon as it is empty, so an idle connection holds no buffer at all. Running out is not
//! an error: past the pool's bound buffers are simply allocated and freed.
//!
//! The pool also keeps the outbound queues' segment lists (see [`super::outq`]): an idle
//! connection holds none of those either.

use std::collections::VecDeque;

use super::outq::Seg;

#[derive(Debug)]
pub struct BufPool {
    free: Vec<Vec<u8>>,
    size: usize,
    max_free: usize,
    segs: Vec<VecDeque<Seg>>,
}

impl BufPool {
    pub fn new(size: usize, max_free: usize) -> Self {
        BufPool {
            free: Vec::new(),
            size,
            max_free,
            segs: Vec::new(),
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
