//! A connection's outbound queue: small owned bytes (frame headers, per-subscriber prefixes,
//! control frames) interleaved with shared, immutable chunks (a published body, frozen once and
//! referenced by every subscriber). Flushed with vectored writes, many frames per `writev`.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::sync::Arc;

use super::buf::BufPool;

/// Most slices handed to one `writev` (Linux IOV_MAX is 1024; 64 keeps the array on the stack).
const MAX_IOV: usize = 64;

/// A run of queued bytes; `end` marks the last segment of a frame (a STOMP frame, or any
/// whole WebSocket frame or HTTP response), so the queue can be cut back to a frame boundary.
#[derive(Debug)]
pub(super) enum Seg {
    /// The next `len` bytes of `own`.
    Own(usize, bool),
    /// A shared chunk, from `off`.
    Shared(Arc<[u8]>, usize, bool),
}

impl Seg {
    fn ends_frame(&self) -> bool {
        match self {
            Seg::Own(_, end) | Seg::Shared(_, _, end) => *end,
        }
    }

    fn set_end(&mut self) {
        match self {
            Seg::Own(_, end) | Seg::Shared(_, _, end) => *end = true,
        }
    }
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
    /// Bytes ever queued and ever written (queue deliveries are settled by these offsets).
    queued_total: u64,
    written_total: u64,
    /// The last write stopped inside a frame.
    mid_frame: bool,
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

    /// Bytes ever queued: the offset at which the last queued frame ends.
    pub fn queued_total(&self) -> u64 {
        self.queued_total
    }

    /// Bytes ever written (handed to the socket or the TLS layer).
    pub fn written_total(&self) -> u64 {
        self.written_total
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
            self.own = pool.get_out();
            // Every frame starts here: the segment list comes from the pool with the buffer.
            if self.segs.capacity() == 0 {
                self.segs = pool.get_segs();
            }
        }
        &mut self.own
    }

    /// Account for one whole frame appended to [`OutQueue::own_buf`] since `before` (its
    /// length then).
    pub fn commit(&mut self, before: usize) {
        self.append_own(before, true);
    }

    fn append_own(&mut self, before: usize, end: bool) {
        let added = self.own.len().saturating_sub(before);
        if added == 0 {
            if end {
                self.end_frame();
            }
            return;
        }
        self.len += added;
        self.queued_total += added as u64;
        match self.segs.back_mut() {
            Some(Seg::Own(n, e)) if !*e => {
                *n += added;
                *e = end;
            }
            _ => self.segs.push_back(Seg::Own(added, end)),
        }
    }

    /// The frame queued last is complete.
    fn end_frame(&mut self) {
        if let Some(s) = self.segs.back_mut() {
            s.set_end();
        }
    }

    /// Append owned bytes: one whole frame.
    pub fn push(&mut self, pool: &mut BufPool, bytes: &[u8]) {
        let buf = self.own_buf(pool);
        let before = buf.len();
        buf.extend_from_slice(bytes);
        self.commit(before);
    }

    /// Append several owned pieces as one segment: the head of a frame whose shared part
    /// follows with [`OutQueue::push_shared`].
    #[inline]
    pub fn push_parts(&mut self, pool: &mut BufPool, parts: &[&[u8]]) {
        let buf = self.own_buf(pool);
        let before = buf.len();
        for p in parts {
            buf.extend_from_slice(p);
        }
        self.append_own(before, false);
    }

    /// Append a shared chunk (no copy): the end of a frame.
    pub fn push_shared(&mut self, chunk: &Arc<[u8]>) {
        if chunk.is_empty() {
            self.end_frame();
            return;
        }
        self.len += chunk.len();
        self.queued_total += chunk.len() as u64;
        self.shared += 1;
        self.shared_bytes += chunk.len();
        self.segs.push_back(Seg::Shared(Arc::clone(chunk), 0, true));
    }

    /// Drop every frame not started yet: what remains is at most the rest of the frame a write
    /// stopped inside (so the peer's stream stays whole, and what follows it is whole too).
    /// Returns how many frames were dropped.
    pub fn cut_to_frame(&mut self) -> usize {
        let keep = if self.mid_frame {
            self.segs
                .iter()
                .position(Seg::ends_frame)
                .map_or(self.segs.len(), |i| i + 1)
        } else {
            0
        };
        let mut own_kept = 0;
        let mut len = 0;
        for seg in self.segs.iter().take(keep) {
            match seg {
                Seg::Own(n, _) => {
                    own_kept += n;
                    len += n;
                }
                Seg::Shared(c, off, _) => len += c.len() - off,
            }
        }
        let mut dropped = 0;
        for seg in self.segs.drain(keep..) {
            dropped += usize::from(seg.ends_frame());
            if let Seg::Shared(c, _, _) = seg {
                self.shared -= 1;
                self.shared_bytes -= c.len();
            }
        }
        self.own.truncate(self.head + own_kept);
        self.queued_total -= (self.len - len) as u64;
        self.len = len;
        if self.len == 0 {
            self.head = 0;
            self.own.clear();
        }
        dropped
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
                    Seg::Own(n, _) => {
                        let s = self.own.get(pos..pos + n).unwrap_or_default();
                        pos += n;
                        s
                    }
                    Seg::Shared(c, off, _) => c.get(*off..).unwrap_or_default(),
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

    /// Take whole frames off the front for a transport that frames them anew (SockJS): each
    /// frame's bytes are gathered into `scratch` and handed to `each`; taking stops after the
    /// frame that reaches `max` bytes. The bytes taken count as written. Returns them.
    pub fn take_frames(
        &mut self,
        pool: &mut BufPool,
        max: usize,
        scratch: &mut Vec<u8>,
        mut each: impl FnMut(&[u8]),
    ) -> usize {
        let mut taken = 0;
        let mut pos = self.head;
        scratch.clear();
        for seg in &self.segs {
            let (bytes, end): (&[u8], bool) = match seg {
                Seg::Own(n, end) => {
                    let s = self.own.get(pos..pos + n).unwrap_or_default();
                    pos += n;
                    (s, *end)
                }
                Seg::Shared(c, off, end) => (c.get(*off..).unwrap_or_default(), *end),
            };
            scratch.extend_from_slice(bytes);
            if end {
                taken += scratch.len();
                each(scratch);
                scratch.clear();
                if taken >= max {
                    break;
                }
            }
        }
        scratch.clear();
        self.advance(taken);
        if self.len == 0 {
            self.release(pool);
        }
        taken
    }

    fn advance(&mut self, mut n: usize) {
        self.len -= n.min(self.len);
        self.written_total += n as u64;
        while n > 0 {
            let Some(seg) = self.segs.front_mut() else {
                break;
            };
            self.mid_frame = true;
            match seg {
                Seg::Own(len, end) => {
                    let k = n.min(*len);
                    *len -= k;
                    self.head += k;
                    n -= k;
                    if *len == 0 {
                        self.mid_frame = !*end;
                        self.segs.pop_front();
                    }
                }
                Seg::Shared(c, off, end) => {
                    let k = n.min(c.len() - *off);
                    *off += k;
                    n -= k;
                    if *off == c.len() {
                        self.mid_frame = !*end;
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
        self.mid_frame = false;
    }

    /// Give an empty queue's buffer and segment list back to the pool.
    pub fn release(&mut self, pool: &mut BufPool) {
        if self.len == 0 && self.own.capacity() > 0 {
            self.head = 0;
            pool.put_out(std::mem::take(&mut self.own));
        }
        if self.len == 0 && self.segs.capacity() > 0 {
            pool.put_segs(std::mem::take(&mut self.segs));
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

    fn drain(q: &mut OutQueue, w: &mut Trickle, pool: &mut BufPool) {
        while !q.write_to(w, pool).unwrap() {}
    }

    /// Regression (slow consumer closed mid-frame): before the ERROR, the queue is cut back to
    /// the frame a write stopped inside; frames not started are dropped, so the peer reads
    /// whole frames and then the ERROR.
    #[test]
    fn cut_finishes_the_frame_being_written_and_drops_the_rest() {
        let mut pool = BufPool::new(64, 4);
        let shared: Arc<[u8]> = Arc::from(&b"-BODY"[..]);
        let frames = |q: &mut OutQueue, pool: &mut BufPool| {
            for i in 0..10u8 {
                q.push_parts(pool, &[b"HEAD", &[b'0' + i]]);
                q.push_shared(&shared);
            }
        };
        // Stopped inside the first frame (7 of its 10 bytes written).
        let mut q = OutQueue::default();
        frames(&mut q, &mut pool);
        let mut w = Trickle {
            out: Vec::new(),
            cap: 7,
            block_next: false,
        };
        assert!(!q.write_to(&mut w, &mut pool).unwrap());
        assert_eq!(q.cut_to_frame(), 9);
        assert_eq!(q.len(), 3);
        q.push(&mut pool, b"ERROR");
        w.cap = 100;
        drain(&mut q, &mut w, &mut pool);
        assert_eq!(w.out, b"HEAD0-BODYERROR");
        // Stopped exactly between frames: nothing of the rest is kept.
        let mut q = OutQueue::default();
        frames(&mut q, &mut pool);
        let mut w = Trickle {
            out: Vec::new(),
            cap: 20,
            block_next: false,
        };
        assert!(!q.write_to(&mut w, &mut pool).unwrap());
        q.cut_to_frame();
        assert!(q.is_empty());
        q.push(&mut pool, b"ERROR");
        drain(&mut q, &mut w, &mut pool);
        assert_eq!(w.out, b"HEAD0-BODYHEAD1-BODYERROR");
        // Whole owned frames queued back to back stay apart: the cut keeps only the first.
        let mut q = OutQueue::default();
        q.push(&mut pool, b"AAAA");
        q.push(&mut pool, b"BBBB");
        let mut w = Trickle {
            out: Vec::new(),
            cap: 2,
            block_next: false,
        };
        assert!(!q.write_to(&mut w, &mut pool).unwrap());
        q.cut_to_frame();
        q.push(&mut pool, b"!");
        drain(&mut q, &mut w, &mut pool);
        assert_eq!(w.out, b"AAAA!");
        assert_eq!(q.written_total(), q.queued_total());
    }
}
