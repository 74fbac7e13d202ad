//! A run's result, whatever the scenario: parameters, headline metrics, latency
//! distributions, a throughput series, failures and warnings. Printed as a human table,
//! written as JSON (`--json`) and as a self-contained HTML page (`--report`).

pub mod html;
pub mod json;

use std::fmt::Write as _;

use crate::stats::{Failures, Summary};

#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// Stable key (JSON, comparison tables).
    pub key: String,
    pub label: String,
    pub value: f64,
    pub unit: &'static str,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LatencyRow {
    pub key: String,
    pub label: String,
    pub summary: Summary,
}

/// One broker node's (one `--url`'s) figures, when a run has several.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub url: String,
    pub metrics: Vec<Metric>,
}

/// One second of the measured window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub t: f64,
    pub published: f64,
    pub delivered: f64,
    pub sessions: u64,
    /// With `--server-pid`: the brokers' CPU (% of one core) and resident memory (MiB).
    pub broker_cpu_pct: Option<f64>,
    pub broker_rss_mib: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Report {
    pub scenario: String,
    pub url: String,
    pub unix_time: u64,
    pub params: Vec<(String, String)>,
    pub metrics: Vec<Metric>,
    pub latencies: Vec<LatencyRow>,
    pub series: Vec<Sample>,
    pub failures: Failures,
    pub warnings: Vec<String>,
    /// Sweep: a header and one row per setting.
    pub table: Option<(Vec<String>, Vec<Vec<String>>)>,
    /// Several URLs: one entry per URL, in order.
    pub nodes: Vec<Node>,
}

impl Report {
    pub fn new(scenario: &str, url: &str) -> Self {
        Report {
            scenario: scenario.into(),
            url: url.into(),
            unix_time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            ..Report::default()
        }
    }

    pub fn param(&mut self, k: &str, v: impl ToString) {
        self.params.push((k.into(), v.to_string()));
    }

    pub fn metric(&mut self, key: &str, label: &str, value: f64, unit: &'static str) {
        self.metrics.push(Metric {
            key: key.into(),
            label: label.into(),
            value,
            unit,
        });
    }

    pub fn get(&self, key: &str) -> Option<f64> {
        self.metrics.iter().find(|m| m.key == key).map(|m| m.value)
    }

    pub fn latency(&mut self, key: &str, label: &str, summary: Summary) {
        self.latencies.push(LatencyRow {
            key: key.into(),
            label: label.into(),
            summary,
        });
    }

    /// The human table printed at the end of a run.
    pub fn human(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "== loadtest {} against {} ==", self.scenario, self.url);
        let params: Vec<String> = self
            .params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(s, "parameters: {}", params.join(" "));
        let w = self
            .metrics
            .iter()
            .map(|m| m.label.len())
            .max()
            .unwrap_or(0)
            .max(10);
        for m in &self.metrics {
            let _ = writeln!(s, "  {:<w$}  {:>14} {}", m.label, fmt_num(m.value), m.unit);
        }
        if !self.latencies.is_empty() {
            let _ = writeln!(
                s,
                "  {:<30} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                "latency (ms)", "count", "p50", "p90", "p99", "p99.9", "max"
            );
            for l in &self.latencies {
                let m = &l.summary;
                let _ = writeln!(
                    s,
                    "  {:<30} {:>9} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
                    l.label,
                    m.count,
                    m.p50_us / 1e3,
                    m.p90_us / 1e3,
                    m.p99_us / 1e3,
                    m.p999_us / 1e3,
                    m.max_us / 1e3
                );
            }
        }
        if let Some(first) = self.nodes.first() {
            let mut head = vec!["per node".to_string()];
            head.extend(first.metrics.iter().map(|m| m.label.clone()));
            let rows: Vec<Vec<String>> = self
                .nodes
                .iter()
                .map(|n| {
                    let mut r = vec![n.url.clone()];
                    r.extend(n.metrics.iter().map(|m| fmt_num(m.value)));
                    r
                })
                .collect();
            table(&mut s, &head, &rows);
        }
        if let Some((head, rows)) = &self.table {
            table(&mut s, head, rows);
        }
        if !self.failures.is_empty() {
            let _ = writeln!(s, "  failures by cause:");
            for (k, v) in &self.failures {
                let _ = writeln!(s, "    {v:>8}  {k}");
            }
        }
        for wrn in &self.warnings {
            let _ = writeln!(s, "WARNING: {wrn}");
        }
        s
    }
}

/// Right-aligned columns.
fn table(s: &mut String, head: &[String], rows: &[Vec<String>]) {
    let widths: Vec<usize> = (0..head.len())
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(String::len)
                .chain(head.get(i).map(String::len))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:>w$}"))
            .collect::<Vec<_>>()
            .join("  ")
    };
    let _ = writeln!(s, "  {}", line(head));
    for r in rows {
        let _ = writeln!(s, "  {}", line(r));
    }
}

/// A number with thousands separators (integers) or 2-3 significant decimals.
pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    if v.fract() == 0.0 || v.abs() >= 1000.0 {
        let n = v.round() as i64;
        let digits = n.unsigned_abs().to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        if n < 0 {
            out.insert(0, '-');
        }
        out
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::stats::Latency;

    pub fn sample() -> Report {
        let mut r = Report::new("fanout", "ws://127.0.0.1:1/ws");
        r.unix_time = 1_700_000_000;
        r.param("subscribers", 100);
        r.param("note", "<b>&\"quoted\"</b>");
        r.metric("delivered_per_s", "delivered", 1_234_567.0, "msg/s");
        r.metric("loss", "loss", 0.0, "msgs");
        let mut h = Latency::new();
        for v in 1..=1000u64 {
            h.record(v * 10_000);
        }
        r.latency("e2e", "end-to-end", h.summary());
        for t in 1..=5 {
            r.series.push(Sample {
                t: t as f64,
                published: 1000.0 * t as f64,
                delivered: 100_000.0 * t as f64,
                sessions: 101,
                broker_cpu_pct: Some(50.0 + t as f64),
                broker_rss_mib: Some(20.0),
            });
        }
        r.failures.insert("timeout: TCP connect".into(), 3);
        r.warnings.push("the load tool was saturated".into());
        r
    }

    pub fn with_nodes() -> Report {
        let mut r = sample();
        for (i, u) in ["ws://127.0.0.1:1/ws", "ws://127.0.0.1:2/ws"]
            .iter()
            .enumerate()
        {
            r.nodes.push(Node {
                url: u.to_string(),
                metrics: vec![
                    Metric {
                        key: "sessions".into(),
                        label: "sessions".into(),
                        value: 50.0 + i as f64,
                        unit: "sessions",
                    },
                    Metric {
                        key: "e2e_p99_ms".into(),
                        label: "p99 ms".into(),
                        value: 1.5,
                        unit: "ms",
                    },
                ],
            });
        }
        r
    }

    #[test]
    fn human_table_has_the_nodes() {
        let s = with_nodes().human();
        assert!(s.contains("per node"), "{s}");
        assert!(s.contains("ws://127.0.0.1:2/ws"), "{s}");
        assert!(s.contains("  51  "), "{s}");
        assert!(!sample().human().contains("per node"));
    }

    #[test]
    fn human_table_has_everything() {
        let s = sample().human();
        assert!(s.contains("1,234,567 msg/s"), "{s}");
        assert!(s.contains("end-to-end"));
        assert!(s.contains("p99.9"));
        assert!(s.contains("3  timeout: TCP connect"));
        assert!(s.contains("WARNING: the load tool was saturated"));
    }

    #[test]
    fn numbers() {
        assert_eq!(fmt_num(1234567.0), "1,234,567");
        assert_eq!(fmt_num(-1000.0), "-1,000");
        assert_eq!(fmt_num(0.5), "0.500");
        assert_eq!(fmt_num(12.34), "12.3");
        assert_eq!(fmt_num(f64::NAN), "-");
    }
}
