//! Whether a run passed: `--fail-if` thresholds on its metrics (`sessions_failed>0`,
//! `p99_ms>50`, `delivered_per_s<1e6`), and a run where most sessions failed never passes.
//! `loadtest` exits 1 when one fails, so CI can gate on it.

use crate::report::Report;

/// One `--fail-if` condition: a metric, a comparison, a number.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub key: String,
    pub op: &'static str,
    pub value: f64,
}

const OPS: [&str; 6] = [">=", "<=", "==", "!=", ">", "<"];

/// Other names for report keys: `failed_sessions` for `sessions_failed`.
fn canonical(key: &str) -> &str {
    match key {
        "failed_sessions" => "sessions_failed",
        "dropped_sessions" => "sessions_dropped",
        k => k,
    }
}

impl std::str::FromStr for Condition {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (at, op) = OPS
            .iter()
            .filter_map(|op| s.find(op).map(|i| (i, *op)))
            .min_by_key(|(i, op)| (*i, std::cmp::Reverse(op.len())))
            .ok_or_else(|| format!("`{s}`: expected METRIC<OP>NUMBER, OP one of {OPS:?}"))?;
        let key = s[..at].trim();
        let value = s[at + op.len()..].trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(format!("`{s}`: no metric name before {op}"));
        }
        let value: f64 = value
            .parse()
            .map_err(|_| format!("`{s}`: `{value}` is not a number"))?;
        Ok(Condition {
            key: canonical(key).to_string(),
            op,
            value,
        })
    }
}

/// A report's value for `key`: a metric, or a latency percentile of its first distribution
/// (`p50_ms`, `p99_ms`, `p999_ms`, `max_ms`).
pub fn value_of(r: &Report, key: &str) -> Option<f64> {
    if let Some(v) = r.get(key) {
        return Some(v);
    }
    let s = &r.latencies.first()?.summary;
    match key {
        "p50_ms" => Some(s.p50_us / 1e3),
        "p99_ms" => Some(s.p99_us / 1e3),
        "p999_ms" => Some(s.p999_us / 1e3),
        "max_ms" => Some(s.max_us / 1e3),
        _ => None,
    }
}

impl Condition {
    /// `Some(reason)` when the condition holds (the run fails); an unknown metric fails too.
    pub fn failed(&self, r: &Report) -> Option<String> {
        let Some(v) = value_of(r, &self.key) else {
            let known: Vec<&str> = r.metrics.iter().map(|m| m.key.as_str()).collect();
            return Some(format!(
                "--fail-if {}: no metric {} in this run (it has: {}, p50_ms, p99_ms, p999_ms, max_ms)",
                self, self.key, known.join(", ")
            ));
        };
        let holds = match self.op {
            ">" => v > self.value,
            "<" => v < self.value,
            ">=" => v >= self.value,
            "<=" => v <= self.value,
            "==" => v == self.value,
            _ => v != self.value,
        };
        holds.then(|| format!("--fail-if {self}: {} is {v}", self.key))
    }
}

impl std::fmt::Display for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}{}", self.key, self.op, self.value)
    }
}

/// Why the run failed, if it did: every condition that holds, and most sessions failing.
pub fn failures(r: &Report, conditions: &[Condition]) -> Vec<String> {
    let mut out: Vec<String> = conditions.iter().filter_map(|c| c.failed(r)).collect();
    let failed = r.get("sessions_failed").unwrap_or(0.0);
    let ready = r.get("sessions_ready").unwrap_or(0.0);
    if failed > 0.0 && failed >= ready {
        out.push(format!(
            "most sessions failed ({failed} failed, {ready} ready): the run measured nothing"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(metrics: &[(&str, f64)]) -> Report {
        let mut r = Report::new("fanout", "ws://x");
        for (k, v) in metrics {
            r.metric(k, k, *v, "");
        }
        r
    }

    #[test]
    fn conditions_parse() {
        let c: Condition = "failed_sessions>0".parse().unwrap();
        assert_eq!(
            (c.key.as_str(), c.op, c.value),
            ("sessions_failed", ">", 0.0)
        );
        let c: Condition = "delivered_per_s < 1e6".parse().unwrap();
        assert_eq!(
            (c.key.as_str(), c.op, c.value),
            ("delivered_per_s", "<", 1e6)
        );
        let c: Condition = "p99_ms>=50".parse().unwrap();
        assert_eq!(c.op, ">=");
        for bad in ["p99_ms", ">5", "x>y", "a b>1"] {
            assert!(bad.parse::<Condition>().is_err(), "{bad}");
        }
    }

    #[test]
    fn runs_fail_on_thresholds_and_on_most_sessions_failing() {
        let r = report(&[
            ("sessions_ready", 100.0),
            ("sessions_failed", 2.0),
            ("delivered_per_s", 5e5),
        ]);
        let c = |s: &str| s.parse::<Condition>().unwrap();
        assert_eq!(failures(&r, &[c("delivered_per_s<1e6")]).len(), 1);
        assert!(failures(&r, &[c("delivered_per_s<1e5")]).is_empty());
        assert_eq!(failures(&r, &[c("failed_sessions>0")]).len(), 1);
        assert!(failures(&r, &[c("nonexistent>1")])[0].contains("no metric"));
        let bad = report(&[("sessions_ready", 3.0), ("sessions_failed", 97.0)]);
        assert!(failures(&bad, &[])[0].contains("most sessions failed"));
    }
}
