//! Heart-beats of one connection, sans-IO: the caller says when it read and wrote and asks what
//! is due at a given time, on whatever clock it passes (the server's `Instant`s, or a test's
//! virtual one: a base instant plus durations).
//!
//! The server sends a heart-beat when it has written nothing for its send interval, and gives
//! up on a client silent for `grace` of its receive intervals (STOMP 1.2: "the other end
//! should consider the connection dead"; the grace absorbs network delay and slow timers).

use std::time::{Duration, Instant};

/// What is due at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    Nothing,
    /// Send a heart-beat (the output is idle); it counts as written.
    Beat,
    /// The client has been silent too long: heart-beats stop, the session ends.
    Silent,
}

#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    send: Option<Duration>,
    recv: Option<Duration>,
    last_read: Instant,
    last_write: Instant,
}

impl Liveness {
    /// No heart-beats yet (until CONNECTED).
    pub fn new(now: Instant) -> Self {
        Liveness {
            send: None,
            recv: None,
            last_read: now,
            last_write: now,
        }
    }

    /// CONNECTED: the negotiated intervals in ms (0: never), counted from `now`.
    pub fn start(&mut self, send_ms: u64, recv_ms: u64, now: Instant) {
        self.send = (send_ms > 0).then(|| Duration::from_millis(send_ms));
        self.recv = (recv_ms > 0).then(|| Duration::from_millis(recv_ms));
        self.last_read = now;
        self.last_write = now;
    }

    /// No more heart-beats either way (the connection is closing).
    pub fn stop(&mut self) {
        self.send = None;
        self.recv = None;
    }

    /// Bytes came from the client (or the server chose not to read it: its silence proves
    /// nothing then).
    pub fn read(&mut self, now: Instant) {
        self.last_read = now;
    }

    /// Bytes went to the client.
    pub fn wrote(&mut self, now: Instant) {
        self.last_write = now;
    }

    /// When to ask [`Liveness::due`] next.
    pub fn next_deadline(&self, grace: u32) -> Option<Instant> {
        let beat = self.send.map(|d| self.last_write + d);
        let silent = self.recv.map(|d| self.last_read + d * grace);
        beat.into_iter().chain(silent).min()
    }

    /// What is due at `now`. `output_idle`: nothing is queued (a connection still writing
    /// needs no heart-beat, but its send interval starts again all the same).
    pub fn due(&mut self, now: Instant, grace: u32, output_idle: bool) -> Due {
        if let Some(d) = self.recv {
            if self.last_read + d * grace <= now {
                self.stop();
                return Due::Silent;
            }
        }
        if let Some(d) = self.send {
            if self.last_write + d <= now {
                self.last_write = now;
                if output_idle {
                    return Due::Beat;
                }
            }
        }
        Due::Nothing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A virtual clock: `t(ms)` is the base instant plus `ms` milliseconds.
    fn clock() -> impl Fn(u64) -> Instant {
        let base = Instant::now();
        move |ms| base + Duration::from_millis(ms)
    }

    #[test]
    fn nothing_before_connected_or_when_off() {
        let t = clock();
        let mut l = Liveness::new(t(0));
        assert_eq!(l.next_deadline(2), None);
        assert_eq!(l.due(t(1_000_000), 2, true), Due::Nothing);
        l.start(0, 0, t(0));
        assert_eq!(l.next_deadline(2), None);
    }

    #[test]
    fn beats_when_idle_and_writing_postpones_them() {
        let t = clock();
        let mut l = Liveness::new(t(0));
        l.start(1000, 0, t(0));
        assert_eq!(l.next_deadline(2), Some(t(1000)));
        assert_eq!(l.due(t(999), 2, true), Due::Nothing);
        assert_eq!(l.due(t(1000), 2, true), Due::Beat);
        // Counted as written: the next one a whole interval later.
        assert_eq!(l.next_deadline(2), Some(t(2000)));
        l.wrote(t(1500));
        assert_eq!(l.due(t(2000), 2, true), Due::Nothing);
        // Due while output is still queued: no beat, and the interval starts again.
        assert_eq!(l.due(t(2500), 2, false), Due::Nothing);
        assert_eq!(l.next_deadline(2), Some(t(3500)));
    }

    #[test]
    fn a_client_silent_for_grace_intervals_is_dead() {
        let t = clock();
        let mut l = Liveness::new(t(0));
        l.start(0, 100, t(0));
        assert_eq!(l.next_deadline(3), Some(t(300)));
        l.read(t(250));
        assert_eq!(l.due(t(300), 3, true), Due::Nothing, "it spoke at 250");
        assert_eq!(l.due(t(549), 3, true), Due::Nothing);
        assert_eq!(l.due(t(550), 3, true), Due::Silent);
        // Heart-beats have stopped either way.
        assert_eq!(l.next_deadline(3), None);
        assert_eq!(l.due(t(10_000), 3, true), Due::Nothing);
    }

    #[test]
    fn the_earlier_deadline_comes_first_and_stop_ends_both() {
        let t = clock();
        let mut l = Liveness::new(t(0));
        l.start(1000, 200, t(0));
        assert_eq!(l.next_deadline(2), Some(t(400)));
        l.read(t(390));
        assert_eq!(l.next_deadline(2), Some(t(790)));
        l.read(t(700));
        assert_eq!(l.next_deadline(2), Some(t(1000)));
        l.stop();
        assert_eq!(l.next_deadline(2), None);
    }
}
