//! Helpers for benches and integration tests, outside the broker's own paths.

use std::sync::Arc;

use super::buf::BufPool;
use super::outq::OutQueue;
use crate::router::Sink;

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

/// [`QueueSink`] for sessions that agreed to permessage-deflate: each delivery goes through the
/// reactor's compression path (the message's shared segment made once, a stored block with the
/// head per subscriber). Used by the fan-out bench.
#[derive(Debug)]
pub struct DeflateSink {
    pub inner: QueueSink,
    pub zip: super::compress::Compression,
}

impl DeflateSink {
    pub fn new(n: usize, cfg: super::compress::CompressionConfig) -> Self {
        DeflateSink {
            inner: QueueSink::new(n),
            zip: super::compress::Compression::new(cfg),
        }
    }
}

impl Sink for DeflateSink {
    #[inline]
    fn deliver(&mut self, conn: usize, head: &[&[u8]], shared: &Arc<[u8]>) {
        let inner = &mut self.inner;
        super::compress::with_compression(&mut self.zip, Some(15), head, shared, |h, sh| {
            inner.deliver(conn, h, sh)
        });
    }
}

/// The naive way, for comparison: every delivery compressed on its own (head and shared part,
/// one fresh DEFLATE stream per subscriber), as a server without a shared segment would.
#[derive(Debug)]
pub struct NaiveDeflateSink {
    pub inner: QueueSink,
    deflater: crate::ws::deflate::Deflater,
    scratch: Vec<u8>,
}

impl NaiveDeflateSink {
    pub fn new(n: usize, level: u32) -> Self {
        NaiveDeflateSink {
            inner: QueueSink::new(n),
            deflater: crate::ws::deflate::Deflater::new(level, 15),
            scratch: Vec::new(),
        }
    }
}

impl Sink for NaiveDeflateSink {
    fn deliver(&mut self, conn: usize, head: &[&[u8]], shared: &Arc<[u8]>) {
        let Some((_, rest)) = head.split_first() else {
            return;
        };
        self.scratch.clear();
        for p in rest {
            self.scratch.extend_from_slice(p);
        }
        self.scratch.extend_from_slice(shared);
        let mut z = Vec::with_capacity(self.scratch.len() / 2 + 64);
        if !self.deflater.segment(&self.scratch, &mut z) {
            return;
        }
        let mut h = [0u8; crate::ws::frame::MAX_HEADER_LEN];
        let n =
            crate::ws::encode_header(&mut h, true, crate::ws::Opcode::Text, z.len() as u64, None);
        h[0] |= 0x40;
        let z: Arc<[u8]> = z.into();
        self.inner
            .deliver(conn, &[h.get(..n).unwrap_or_default()], &z);
    }
}

/// Bytes of one entry in a reactor's connection slab (for the memory tests and the byte table).
pub fn slot_size() -> usize {
    std::mem::size_of::<super::slots::Slot>()
}
