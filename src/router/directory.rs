//! The shared directory: destination -> bitmask of reactors with subscribers.
//!
//! The map itself is touched only the first time a reactor meets a destination (a mutex, off
//! the hot path); after that each reactor holds the destination's `Arc<AtomicU64>` and reads it
//! with one atomic load per publish.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use super::wildcard::Trie;

/// Reactors are numbered into a 64-bit mask.
pub const MAX_REACTORS: usize = 64;

/// Wildcard subscriptions are shared differently: a trie of patterns to reactor masks behind a
/// read-write lock, with a generation number bumped on every change. Reactors cache each
/// destination's wildcard mask with the generation it was computed at, so a publish reads the
/// lock only after a pattern changed (as nats-server's sublist cache does), and not at all
/// while no wildcard subscription exists.
#[derive(Debug, Default)]
pub struct Directory {
    /// Keyed by the name the first reactor made (shared with its destination entry).
    map: Mutex<HashMap<Arc<str>, Arc<AtomicU64>>>,
    patterns: RwLock<Trie<u64>>,
    pattern_gen: AtomicU64,
    pattern_count: AtomicUsize,
    /// Queues over all reactors.
    queues: AtomicUsize,
}

impl Directory {
    pub fn new() -> Self {
        Self::default()
    }

    /// Count a new queue if fewer than `max` exist (`false`: the bound is reached, nothing
    /// counted). Off the hot path: once per queue made.
    pub fn queue_created(&self, max: usize) -> bool {
        self.queues
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// A queue was forgotten (idle: nothing waiting, nobody consuming).
    pub fn queue_removed(&self) {
        let _ = self
            .queues
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }

    /// Queues over all reactors.
    pub fn queue_count(&self) -> usize {
        self.queues.load(Ordering::SeqCst)
    }

    /// A reactor's first subscription with this pattern. Visible to every publish that starts
    /// after this returns.
    pub fn add_pattern(&self, pattern: &str, bit: u64) {
        let mut t = self.patterns.write().unwrap_or_else(|p| p.into_inner());
        *t.entry(pattern, || 0) |= bit;
        self.pattern_count.store(t.len(), Ordering::SeqCst);
        self.pattern_gen.fetch_add(1, Ordering::SeqCst);
    }

    /// A reactor's last subscription with this pattern is gone.
    pub fn remove_pattern(&self, pattern: &str, bit: u64) {
        let mut t = self.patterns.write().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = t.get_mut(pattern) {
            *m &= !bit;
            if *m == 0 {
                t.remove(pattern);
            }
        }
        self.pattern_count.store(t.len(), Ordering::SeqCst);
        self.pattern_gen.fetch_add(1, Ordering::SeqCst);
    }

    /// Are there any wildcard subscriptions at all?
    pub fn has_patterns(&self) -> bool {
        self.pattern_count.load(Ordering::SeqCst) > 0
    }

    pub fn pattern_generation(&self) -> u64 {
        self.pattern_gen.load(Ordering::SeqCst)
    }

    /// Reactors with a wildcard subscription matching `destination`.
    pub fn pattern_mask(&self, destination: &str) -> u64 {
        let t = self.patterns.read().unwrap_or_else(|p| p.into_inner());
        let mut mask = 0;
        t.for_each_match(destination, |m| mask |= *m);
        mask
    }

    /// The mask cell for a destination, created empty if new.
    pub fn entry(&self, destination: &Arc<str>) -> Arc<AtomicU64> {
        let mut map = match self.map.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(e) = map.get(&**destination) {
            return Arc::clone(e);
        }
        // Drop cells nobody holds any more before growing.
        if map.len() >= 1 << 16 {
            map.retain(|_, v| Arc::strong_count(v) > 1);
        }
        let e = Arc::new(AtomicU64::new(0));
        map.insert(Arc::clone(destination), Arc::clone(&e));
        e
    }
}
