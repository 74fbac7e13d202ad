//! How much memory the broker holds, and the high-water mark above which it stops reading from
//! publishers (flow control, as RabbitMQ's memory alarm blocks publishing connections).
//!
//! The measure is the heap in use when the program counts its allocations (the binary's
//! global allocator does, and registers itself with [`set_meter`]): it falls as soon as
//! messages are freed. Without a meter (a server embedded in another program) the process's
//! resident set from `/proc/self/status` stands in, which allocators give back more slowly.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

static METER: OnceLock<fn() -> usize> = OnceLock::new();

/// Measure memory with `meter` (bytes of heap in use) rather than the resident set: the binary
/// registers its counting allocator here before starting the server. Only the first call
/// counts.
pub fn set_meter(meter: fn() -> usize) {
    let _ = METER.set(meter);
}

/// Heap bytes in use, when a meter is registered.
pub fn allocated() -> Option<usize> {
    METER.get().map(|m| m())
}

/// The process's resident set, from `/proc/self/status`.
pub fn resident() -> Option<usize> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: usize = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// The memory the high-water mark is compared with: the meter's heap, else resident set.
pub fn in_use() -> usize {
    allocated().or_else(resident).unwrap_or(0)
}

/// The default high-water mark: 40% of the machine's memory (RabbitMQ's default), or 1 GiB
/// when `/proc/meminfo` cannot be read.
pub fn default_high_watermark() -> usize {
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<usize>()
            .ok()
    });
    match total {
        Some(kib) => kib / 10 * 4 * 1024,
        None => 1 << 30,
    }
}

/// What the monitor measured, shared with the reactors (which read `alarm` once per loop turn)
/// and the metrics.
#[derive(Debug, Default)]
pub struct MemoryState {
    /// Bytes in use at the last sample.
    pub used: AtomicUsize,
    /// Above the high-water mark: publishers are not read from.
    pub alarm: AtomicBool,
    /// Times the alarm went on.
    pub alarms: AtomicU64,
    /// The mark, bytes (0: no mark).
    pub high_watermark: usize,
}

impl MemoryState {
    pub fn new(high_watermark: usize) -> Self {
        MemoryState {
            high_watermark,
            ..Default::default()
        }
    }

    pub fn alarm(&self) -> bool {
        self.alarm.load(Ordering::Acquire)
    }

    /// Record a sample; `Some(on)` when the alarm changed. It goes on above the mark and off
    /// below 90% of it, so that publishers let go near the mark do not flap it on and off.
    pub fn sample(&self, used: usize) -> Option<bool> {
        self.used.store(used, Ordering::Relaxed);
        let mark = self.high_watermark;
        let over = if self.alarm() {
            used > mark / 10 * 9
        } else {
            used > mark
        };
        let over = mark > 0 && over;
        if self.alarm.swap(over, Ordering::AcqRel) == over {
            return None;
        }
        if over {
            self.alarms.fetch_add(1, Ordering::Relaxed);
            log::warn!(
                "memory alarm: {} MiB in use, above the high-water mark of {} MiB: connections \
                 that publish are not read from until it falls",
                used >> 20,
                self.high_watermark >> 20
            );
        } else {
            log::info!(
                "memory alarm cleared: {} MiB in use, below 90% of the high-water mark of {} MiB",
                used >> 20,
                self.high_watermark >> 20
            );
        }
        Some(over)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alarm_follows_the_mark() {
        let m = MemoryState::new(1000);
        assert_eq!(m.sample(500), None);
        assert_eq!(m.sample(1001), Some(true));
        assert!(m.alarm());
        assert_eq!(m.sample(2000), None, "still on: no second alarm");
        assert_eq!(m.sample(950), None, "on until below 90% of the mark");
        assert_eq!(m.sample(899), Some(false));
        assert_eq!(m.sample(950), None, "off until above the mark again");
        assert_eq!(m.alarms.load(Ordering::Relaxed), 1);
        let off = MemoryState::new(0);
        assert_eq!(off.sample(usize::MAX), None, "no mark, no alarm");
    }

    #[test]
    fn resident_and_default_mark_read_proc() {
        assert!(resident().is_some_and(|r| r > 0));
        assert!(default_high_watermark() > 0);
    }
}
