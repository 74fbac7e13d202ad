//! Open-loop rate control: a publisher at `rate` messages per second owes `floor(elapsed * rate)`
//! messages at any instant, less what it has sent. Time is passed in (nanoseconds since the run's
//! epoch), so the arithmetic is tested without a clock.

/// Paces one sender. `rate == 0.0` means as fast as possible (bounded by `burst` per call).
#[derive(Debug, Clone)]
pub struct Pacer {
    start_ns: u64,
    rate: f64,
    sent: u64,
    /// Most messages released by one call: a sender that fell behind catches up gradually
    /// instead of writing one huge burst.
    burst: u64,
    /// Times the schedule was reset because the sender was more than a second behind.
    pub resets: u64,
}

/// How far behind (in seconds of schedule) a sender may fall before its schedule is reset.
const MAX_LAG_S: f64 = 1.0;

impl Pacer {
    pub fn new(start_ns: u64, rate: f64, burst: u64) -> Self {
        Pacer {
            start_ns,
            rate: if rate.is_finite() && rate > 0.0 {
                rate
            } else {
                0.0
            },
            sent: 0,
            burst: burst.max(1),
            resets: 0,
        }
    }

    pub fn unlimited(&self) -> bool {
        self.rate == 0.0
    }

    /// Messages the sender may send now.
    pub fn due(&mut self, now_ns: u64) -> u64 {
        if self.unlimited() {
            return self.burst;
        }
        let elapsed = now_ns.saturating_sub(self.start_ns) as f64 / 1e9;
        // The epsilon absorbs rounding at exactly the due instant (see `next_due_ns`).
        let owed = (elapsed * self.rate + 1e-6).floor() as u64;
        let mut behind = owed.saturating_sub(self.sent);
        if behind as f64 > self.rate * MAX_LAG_S && behind > self.burst {
            // Too far behind to catch up without distorting the run: start a fresh schedule.
            self.resets += 1;
            self.start_ns = now_ns;
            self.sent = 0;
            behind = 0;
        }
        behind.min(self.burst)
    }

    /// Record `n` messages sent.
    pub fn sent(&mut self, n: u64) {
        self.sent += n;
    }

    /// When the next message is owed (for the poll timeout); `None` when unlimited.
    pub fn next_due_ns(&self) -> Option<u64> {
        if self.unlimited() {
            return None;
        }
        let next = (self.sent + 1) as f64 / self.rate;
        Some(self.start_ns + (next * 1e9).ceil() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn releases_floor_of_elapsed_times_rate() {
        let mut p = Pacer::new(10 * S, 1000.0, 10_000);
        assert_eq!(p.due(10 * S), 0);
        assert_eq!(p.due(10 * S + S / 1000), 1);
        assert_eq!(p.due(10 * S + S / 2), 500);
        p.sent(500);
        assert_eq!(p.due(10 * S + S / 2), 0);
        assert_eq!(p.due(11 * S), 500);
        p.sent(400);
        assert_eq!(p.due(11 * S), 100, "what was not sent stays owed");
    }

    #[test]
    fn a_second_at_rate_sends_rate_messages() {
        // Drive it like a reactor would, waking at the next due time.
        for rate in [1.0, 7.0, 333.0, 10_000.0] {
            let mut p = Pacer::new(0, rate, 1_000_000);
            let mut total = 0;
            let mut now = 0;
            let mut wakes = 0;
            while now <= S {
                let n = p.due(now);
                p.sent(n);
                total += n;
                now = p.next_due_ns().unwrap();
                wakes += 1;
                assert!(wakes < 100_000);
            }
            assert_eq!(total, rate as u64, "rate {rate}");
        }
    }

    #[test]
    fn burst_caps_catch_up() {
        let mut p = Pacer::new(0, 1000.0, 50);
        assert_eq!(p.due(S / 2), 50);
        p.sent(50);
        assert_eq!(p.due(S / 2), 50);
    }

    #[test]
    fn falling_far_behind_resets_the_schedule() {
        let mut p = Pacer::new(0, 100.0, 10);
        assert_eq!(p.due(5 * S), 0);
        assert_eq!(p.resets, 1);
        assert_eq!(p.due(5 * S + S / 10), 10);
    }

    #[test]
    fn zero_rate_is_unlimited_up_to_burst() {
        let mut p = Pacer::new(0, 0.0, 64);
        assert!(p.unlimited());
        assert_eq!(p.due(0), 64);
        p.sent(64);
        assert_eq!(p.due(0), 64);
        assert_eq!(p.next_due_ns(), None);
        assert!(Pacer::new(0, f64::NAN, 1).unlimited());
    }
}
