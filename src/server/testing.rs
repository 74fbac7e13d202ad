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
