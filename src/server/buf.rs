//! Per-reactor buffer pool. A connection takes a buffer when it has bytes to hold and gives it
//! back as soon as it is empty, so an idle connection holds no buffer at all. Running out is not
//! an error: past the pool's bound buffers are simply allocated and freed.

#[derive(Debug)]
pub struct BufPool {
    free: Vec<Vec<u8>>,
    size: usize,
    max_free: usize,
}

impl BufPool {
    pub fn new(size: usize, max_free: usize) -> Self {
        BufPool {
            free: Vec::new(),
            size,
            max_free,
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
