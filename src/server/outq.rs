//! A connection's outbound queue: small owned bytes (frame headers, per-subscriber prefixes,
//! control frames) interleaved with shared, immutable chunks (a published body, frozen once and
//! referenced by every subscriber). Flushed with vectored writes, many frames per `writev`.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::sync::Arc;

use super::buf::BufPool;
use crate::router::Sink;

/// Most slices handed to one `writev` (Linux IOV_MAX is 1024; 64 keeps the array on the stack).
const MAX_IOV: usize = 64;

#[derive(Debug)]
enum Seg {
    /// The next `len` bytes of `own`.
    Own(usize),
    /// A shared chunk, from `off`.
    Shared(Arc<[u8]>, usize),
}

#[derive(Debug, Default)]
pub struct OutQueue {
    own: Vec<u8>,
    /// Read position in `own`.
    head: usize,
    segs: VecDeque<Seg>,
    /// Bytes queued, not yet written.
    len: usize,
    /// Shared chunks queued and the bytes they hold (kept alive by this queue).
    shared: usize,
    shared_bytes: usize,
}

/// What one shared chunk costs beyond its bytes: the `Arc` header and allocator overhead.
const SHARED_OVERHEAD: usize = 64;

impl OutQueue {
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// The memory this queue holds: its buffers' capacities and the shared chunks it keeps
    /// alive (a chunk counts in full even if other queues share it: once they have written
    /// it, this queue is what holds it). This, not `len`, is what the outbound bound limits.
    pub fn footprint(&self) -> usize {
        self.own.capacity()
            + self.segs.capacity() * std::mem::size_of::<Seg>()
            + self.shared_bytes
            + self.shared * SHARED_OVERHEAD
    }

    /// Borrow the owned byte buffer to append to, taking one from the pool if needed. Call
    /// [`OutQueue::commit`] after appending.
    pub fn own_buf(&mut self, pool: &mut BufPool) -> &mut Vec<u8> {
        if self.own.capacity() == 0 {
            self.own = pool.get();
        }
        &mut self.own
    }

    /// Account for bytes appended to [`OutQueue::own_buf`] since `before` (its length then).
    pub fn commit(&mut self, before: usize) {
        let added = self.own.len().saturating_sub(before);
        if added == 0 {
            return;
        }
        self.len += added;
        match self.segs.back_mut() {
            Some(Seg::Own(n)) => *n += added,
            _ => self.segs.push_back(Seg::Own(added)),
        }
    }

    /// Append owned bytes.
    pub fn push(&mut self, pool: &mut BufPool, bytes: &[u8]) {
        let buf = self.own_buf(pool);
        let before = buf.len();
        buf.extend_from_slice(bytes);
        self.commit(before);
    }

    /// Append several owned pieces as one segment.
    #[inline]
    pub fn push_parts(&mut self, pool: &mut BufPool, parts: &[&[u8]]) {
        let buf = self.own_buf(pool);
        let before = buf.len();
        for p in parts {
            buf.extend_from_slice(p);
        }
        self.commit(before);
    }

    /// Append a shared chunk (no copy).
    pub fn push_shared(&mut self, chunk: &Arc<[u8]>) {
        if chunk.is_empty() {
            return;
        }
        self.len += chunk.len();
        self.shared += 1;
        self.shared_bytes += chunk.len();
        self.segs.push_back(Seg::Shared(Arc::clone(chunk), 0));
    }

    /// Write as much as the socket takes. `Ok(true)`: everything written; `Ok(false)`: the
    /// socket would block with bytes left.
    pub fn write_to<W: Write>(&mut self, w: &mut W, pool: &mut BufPool) -> io::Result<bool> {
        while self.len > 0 {
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let mut n_iov = 0;
            let mut pos = self.head;
            for (slot, seg) in iov.iter_mut().zip(self.segs.iter()) {
                let s: &[u8] = match seg {
                    Seg::Own(n) => {
                        let s = self.own.get(pos..pos + n).unwrap_or_default();
                        pos += n;
                        s
                    }
                    Seg::Shared(c, off) => c.get(*off..).unwrap_or_default(),
                };
                *slot = IoSlice::new(s);
                n_iov += 1;
            }
            let written = match w.write_vectored(iov.get(..n_iov).unwrap_or_default()) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.advance(written);
        }
        self.release(pool);
        Ok(true)
    }

    fn advance(&mut self, mut n: usize) {
        self.len -= n.min(self.len);
        while n > 0 {
            let Some(seg) = self.segs.front_mut() else {
                break;
            };
            match seg {
                Seg::Own(len) => {
                    let k = n.min(*len);
                    *len -= k;
                    self.head += k;
                    n -= k;
                    if *len == 0 {
                        self.segs.pop_front();
                    }
                }
                Seg::Shared(c, off) => {
                    let k = n.min(c.len() - *off);
                    *off += k;
                    n -= k;
                    if *off == c.len() {
                        self.shared -= 1;
                        self.shared_bytes -= c.len();
                        self.segs.pop_front();
                    }
                }
            }
        }
        if self.head == self.own.len() {
            self.head = 0;
            self.own.clear();
        } else if self.head > 64 * 1024 && self.head * 2 > self.own.len() {
            // Keep a slow reader's buffer from creeping: drop the written front.
            self.own.drain(..self.head);
            self.head = 0;
        }
    }

    /// Drop everything queued, keeping the buffers (benches, and a connection being reset).
    pub fn clear(&mut self) {
        self.own.clear();
        self.head = 0;
        self.segs.clear();
        self.len = 0;
        self.shared = 0;
        self.shared_bytes = 0;
    }

    /// Give an empty queue's buffer back to the pool.
    pub fn release(&mut self, pool: &mut BufPool) {
        if self.len == 0 && self.own.capacity() > 0 {
            self.head = 0;
            pool.put(std::mem::take(&mut self.own));
            if self.segs.capacity() > 64 {
                self.segs = VecDeque::new();
            }
        }
    }
}

/// A [`Sink`] over plain queues indexed by connection number: what a reactor does per delivery,
/// minus the slab lookup. Used by the fan-out bench and allocation test.
#[derive(Debug)]
pub struct QueueSink {
    pub queues: Vec<OutQueue>,
    pub pool: BufPool,
}

impl QueueSink {
    pub fn new(n: usize) -> Self {
        QueueSink {
            queues: (0..n).map(|_| OutQueue::default()).collect(),
            pool: BufPool::new(16 * 1024, n),
        }
    }
}

impl Sink for QueueSink {
    #[inline]
    fn deliver(&mut self, conn: usize, head: &[&[u8]], shared: &Arc<[u8]>) {
        if let Some(q) = self.queues.get_mut(conn) {
            q.push_parts(&mut self.pool, head);
            q.push_shared(shared);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `cap` bytes per call and then blocks once.
    struct Trickle {
        out: Vec<u8>,
        cap: usize,
        block_next: bool,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            if self.block_next {
                self.block_next = false;
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.block_next = true;
            let mut left = self.cap;
            let mut n = 0;
            for b in bufs {
                let k = b.len().min(left);
                self.out.extend_from_slice(&b[..k]);
                left -= k;
                n += k;
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn interleaved_owned_and_shared_survive_partial_writes() {
        let mut pool = BufPool::new(64, 4);
        let shared: Arc<[u8]> = Arc::from(&b"SHARED-BODY"[..]);
        let mut q = OutQueue::default();
        let mut expected = Vec::new();
        for i in 0..50u8 {
            let p = [b'p', i];
            q.push(&mut pool, &p);
            expected.extend_from_slice(&p);
            q.push_shared(&shared);
            expected.extend_from_slice(&shared);
        }
        assert_eq!(q.len(), expected.len());
        for cap in [1, 3, 7, 100] {
            let mut q2 = OutQueue::default();
            q2.push(&mut pool, b"x");
            let _ = q2;
            let mut w = Trickle {
                out: Vec::new(),
                cap,
                block_next: false,
            };
            let mut q = OutQueue::default();
            for i in 0..50u8 {
                q.push(&mut pool, &[b'p', i]);
                q.push_shared(&shared);
            }
            while !q.write_to(&mut w, &mut pool).unwrap() {}
            assert_eq!(w.out, expected, "cap {cap}");
            assert!(q.is_empty());
        }
    }
}
