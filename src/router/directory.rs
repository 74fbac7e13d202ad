//! The shared directory: destination -> bitmask of reactors with subscribers.
//!
//! The map itself is touched only the first time a reactor meets a destination (a mutex, off
//! the hot path); after that each reactor holds the destination's `Arc<AtomicU64>` and reads it
//! with one atomic load per publish.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

/// Reactors are numbered into a 64-bit mask.
pub const MAX_REACTORS: usize = 64;

#[derive(Debug, Default)]
pub struct Directory {
    map: Mutex<HashMap<Box<str>, Arc<AtomicU64>>>,
}

impl Directory {
    pub fn new() -> Self {
        Self::default()
    }

    /// The mask cell for a destination, created empty if new.
    pub fn entry(&self, destination: &str) -> Arc<AtomicU64> {
        let mut map = match self.map.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(e) = map.get(destination) {
            return Arc::clone(e);
        }
        // Drop cells nobody holds any more before growing.
        if map.len() >= 1 << 16 {
            map.retain(|_, v| Arc::strong_count(v) > 1);
        }
        let e = Arc::new(AtomicU64::new(0));
        map.insert(destination.into(), Arc::clone(&e));
        e
    }
}
