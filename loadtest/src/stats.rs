//! Latency histograms (HdrHistogram, nanoseconds, 3 significant digits), merged across reactor
//! threads at the end of a run, and the summaries the reports print.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

/// Highest latency tracked: longer ones are clamped (and still counted).
const MAX_NS: u64 = 120 * 1_000_000_000;

/// One latency distribution.
#[derive(Debug, Clone)]
pub struct Latency {
    h: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Latency::new()
    }
}

impl Latency {
    pub fn new() -> Self {
        // 1 ns .. 120 s at 3 significant digits: fixed size, no growth while recording.
        let h = Histogram::new_with_bounds(1, MAX_NS, 3)
            .unwrap_or_else(|_| unreachable!("constant bounds are valid"));
        Latency { h }
    }

    #[inline]
    pub fn record(&mut self, ns: u64) {
        self.h.saturating_record(ns.clamp(1, MAX_NS));
    }

    /// Add every value of `other` (same bounds, so this cannot fail).
    pub fn merge(&mut self, other: &Latency) {
        // Both were made by `new` with the same bounds: `add` only fails on a range mismatch.
        let _ = self.h.add(&other.h);
    }

    /// Every recorded bucket as (a value in it, count): with [`Latency::from_buckets`], how
    /// one process hands its distribution to another without losing anything a merge needs.
    pub fn buckets(&self) -> Vec<(u64, u64)> {
        self.h
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect()
    }

    /// A distribution from [`Latency::buckets`] (values out of range are clamped).
    pub fn from_buckets(b: &[(u64, u64)]) -> Latency {
        let mut l = Latency::new();
        for &(v, n) in b {
            let _ = l.h.record_n(v.clamp(1, MAX_NS), n);
        }
        l
    }

    pub fn count(&self) -> u64 {
        self.h.len()
    }

    /// The value at `q` (0..=100) in nanoseconds; 0 when empty.
    pub fn percentile_ns(&self, q: f64) -> u64 {
        if self.h.is_empty() {
            return 0;
        }
        self.h.value_at_percentile(q)
    }

    pub fn max_ns(&self) -> u64 {
        if self.h.is_empty() {
            0
        } else {
            self.h.max()
        }
    }

    pub fn summary(&self) -> Summary {
        let us = |ns: u64| ns as f64 / 1000.0;
        Summary {
            count: self.count(),
            min_us: if self.h.is_empty() {
                0.0
            } else {
                us(self.h.min())
            },
            mean_us: if self.h.is_empty() {
                0.0
            } else {
                self.h.mean() / 1000.0
            },
            p50_us: us(self.percentile_ns(50.0)),
            p90_us: us(self.percentile_ns(90.0)),
            p99_us: us(self.percentile_ns(99.0)),
            p999_us: us(self.percentile_ns(99.9)),
            max_us: us(self.max_ns()),
            curve: CURVE
                .iter()
                .map(|&q| (q, us(self.percentile_ns(q))))
                .collect(),
        }
    }
}

/// Percentiles sampled for the latency curve (log-spaced towards the tail, as HdrHistogram
/// plots are).
pub const CURVE: &[f64] = &[
    0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.999, 100.0,
];

/// What reports print about one distribution; times in microseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub count: u64,
    pub min_us: f64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    /// (percentile, latency in µs) pairs at [`CURVE`].
    pub curve: Vec<(f64, f64)>,
}

/// Failures by cause, merged across threads.
pub type Failures = BTreeMap<String, u64>;

pub fn merge_failures(into: &mut Failures, from: &Failures) {
    for (k, v) in from {
        *into.entry(k.clone()).or_default() += v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_equals_recording_everything_in_one() {
        let mut a = Latency::new();
        let mut b = Latency::new();
        let mut all = Latency::new();
        for i in 1..=10_000u64 {
            let v = i * 997 % 50_000 + 1_000;
            if i % 3 == 0 {
                a.record(v);
            } else {
                b.record(v);
            }
            all.record(v);
        }
        b.record(7_000_000_000);
        all.record(7_000_000_000);
        let mut m = Latency::new();
        m.merge(&a);
        m.merge(&b);
        assert_eq!(m.count(), all.count());
        assert_eq!(m.summary(), all.summary());
        assert!(m.max_ns() >= 6_990_000_000);
    }

    #[test]
    fn buckets_round_trip_exactly() {
        let mut a = Latency::new();
        for i in 1..=5_000u64 {
            a.record(i * 7919 % 3_000_000 + 500);
        }
        a.record(90_000_000_000);
        let b = Latency::from_buckets(&a.buckets());
        assert_eq!(b.count(), a.count());
        assert_eq!(b.summary(), a.summary());
        let mut m = Latency::new();
        m.merge(&b);
        m.merge(&Latency::from_buckets(&a.buckets()));
        assert_eq!(m.count(), 2 * a.count());
        assert_eq!(m.percentile_ns(99.0), a.percentile_ns(99.0));
    }

    #[test]
    fn percentiles_are_within_three_digits() {
        let mut h = Latency::new();
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        let s = h.summary();
        assert_eq!(s.count, 1000);
        assert!((s.p50_us - 500.0).abs() <= 0.5, "{}", s.p50_us);
        assert!((s.p99_us - 990.0).abs() <= 1.0, "{}", s.p99_us);
        assert!((s.max_us - 1000.0).abs() <= 1.0);
        assert_eq!(s.curve.len(), CURVE.len());
        assert!(s.curve.windows(2).all(|w| w[0].1 <= w[1].1));
    }

    #[test]
    fn empty_and_out_of_range() {
        let s = Latency::new().summary();
        assert_eq!((s.count, s.p99_us, s.max_us), (0, 0.0, 0.0));
        let mut h = Latency::new();
        h.record(0);
        h.record(u64::MAX);
        assert_eq!(h.count(), 2);
    }

    #[test]
    fn failures_add_up() {
        let mut a = Failures::new();
        a.insert("x".into(), 2);
        let mut b = Failures::new();
        b.insert("x".into(), 3);
        b.insert("y".into(), 1);
        merge_failures(&mut a, &b);
        assert_eq!(a.get("x"), Some(&5));
        assert_eq!(a.get("y"), Some(&1));
    }
}
