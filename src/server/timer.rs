//! A per-reactor hashed timer wheel. Connections keep their own deadlines; the wheel only says
//! when to look at a connection again. An entry carries the tick it was scheduled for, so the
//! connection can tell a current entry from a stale one: no removal, no heap timer per
//! connection, O(1) to schedule.

use std::time::{Duration, Instant};

const SLOTS: usize = 512;

#[derive(Debug)]
pub struct TimerWheel {
    slots: Vec<Vec<(usize, u64)>>,
    tick: Duration,
    start: Instant,
    /// Next tick to process.
    current: u64,
    count: usize,
}

impl TimerWheel {
    pub fn new(tick: Duration, now: Instant) -> Self {
        TimerWheel {
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            tick,
            start: now,
            current: 0,
            count: 0,
        }
    }

    /// The tick a deadline falls in (rounded up, so a timer never fires early).
    pub fn tick_of(&self, at: Instant) -> u64 {
        let d = at.saturating_duration_since(self.start);
        let t = d.as_nanos().div_ceil(self.tick.as_nanos().max(1));
        (t as u64).max(self.current)
    }

    /// Schedule `key` at `at`; returns the tick to remember for staleness checks.
    pub fn schedule(&mut self, key: usize, at: Instant) -> u64 {
        let tick = self.tick_of(at);
        if let Some(slot) = self.slots.get_mut((tick % SLOTS as u64) as usize) {
            slot.push((key, tick));
            self.count += 1;
        }
        tick
    }

    /// How long poll may sleep before the next tick with work could be due.
    pub fn timeout(&self) -> Option<Duration> {
        (self.count > 0).then_some(self.tick)
    }

    /// Collect every `(key, tick)` due at `now` into `fired`.
    pub fn advance(&mut self, now: Instant, fired: &mut Vec<(usize, u64)>) {
        let now_tick =
            now.saturating_duration_since(self.start).as_nanos() / self.tick.as_nanos().max(1);
        let now_tick = now_tick as u64;
        if self.count == 0 {
            self.current = now_tick + 1;
            return;
        }
        // Past a full revolution every slot is visited once.
        let last = now_tick.min(self.current + SLOTS as u64 - 1);
        while self.current <= last {
            if let Some(slot) = self.slots.get_mut((self.current % SLOTS as u64) as usize) {
                let before = slot.len();
                slot.retain(|&(k, t)| {
                    if t <= now_tick {
                        fired.push((k, t));
                        false
                    } else {
                        true
                    }
                });
                self.count -= before - slot.len();
            }
            self.current += 1;
        }
        self.current = now_tick + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_on_time_never_early_and_across_revolutions() {
        let t0 = Instant::now();
        let tick = Duration::from_millis(10);
        let mut w = TimerWheel::new(tick, t0);
        let a = w.schedule(1, t0 + Duration::from_millis(25));
        let b = w.schedule(2, t0 + Duration::from_secs(30)); // several revolutions away
        let mut fired = Vec::new();
        w.advance(t0 + Duration::from_millis(20), &mut fired);
        assert!(fired.is_empty());
        w.advance(t0 + Duration::from_millis(30), &mut fired);
        assert_eq!(fired, vec![(1, a)]);
        fired.clear();
        w.advance(t0 + Duration::from_secs(29), &mut fired);
        assert!(fired.is_empty());
        w.advance(t0 + Duration::from_millis(30_001), &mut fired);
        assert_eq!(fired, vec![(2, b)]);
        assert_eq!(w.timeout(), None);
    }
}
