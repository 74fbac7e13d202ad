//! `table NAME=DIR ...`: the JSON results of the same scenarios from several runs (e.g. one
//! per broker), side by side, with the ratio of the first to the second.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use crate::report::{fmt_num, json, Report};

fn load(dir: &Path) -> Result<Vec<(String, Report)>, String> {
    let mut out = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for e in rd.flatten() {
        let p = e.path();
        if p.extension().and_then(|x| x.to_str()) != Some("json") {
            continue;
        }
        let name = p
            .file_stem()
            .and_then(|x| x.to_str())
            .unwrap_or("")
            .to_string();
        let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        out.push((
            name,
            json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?,
        ));
    }
    Ok(out)
}

/// Keys worth comparing, in order.
const KEYS: &[&str] = &[
    "sessions_ready",
    "sessions_failed",
    "connect_rate",
    "broker_bytes_per_session",
    "broker_rss_after_mib",
    "published_per_s",
    "delivered_per_s",
    "sent_per_s",
    "consumed_per_s",
    "loss",
    "duplicates",
    "broadcasts_complete",
    "last_p50_ms",
    "last_p99_ms",
    "tool_cpu_pct",
    "broker_cpu_pct",
];

pub fn render(runs: &[(String, Vec<(String, Report)>)]) -> String {
    let mut names = BTreeSet::new();
    for (_, rs) in runs {
        for (n, _) in rs {
            names.insert(n.clone());
        }
    }
    let mut s = String::new();
    let head: Vec<&str> = runs.iter().map(|(n, _)| n.as_str()).collect();
    let ratio = runs.len() == 2;
    let _ = write!(s, "| scenario | metric |");
    for h in &head {
        let _ = write!(s, " {h} |");
    }
    if ratio {
        let _ = write!(s, " {} / {} |", head[0], head[1]);
    }
    s.push('\n');
    s.push_str("|---|---|");
    for _ in &head {
        s.push_str("---:|");
    }
    if ratio {
        s.push_str("---:|");
    }
    s.push('\n');
    for name in &names {
        let reports: Vec<Option<&Report>> = runs
            .iter()
            .map(|(_, rs)| rs.iter().find(|(n, _)| n == name).map(|(_, r)| r))
            .collect();
        let mut rows: Vec<(String, Vec<Option<f64>>)> = Vec::new();
        for k in KEYS {
            let vals: Vec<Option<f64>> = reports.iter().map(|r| r.and_then(|r| r.get(k))).collect();
            if vals.iter().any(Option::is_some) {
                let label = reports
                    .iter()
                    .flatten()
                    .find_map(|r| r.metrics.iter().find(|m| m.key == *k))
                    .map(|m| format!("{} ({})", m.label, m.unit))
                    .unwrap_or_else(|| k.to_string());
                rows.push((label, vals));
            }
        }
        for lk in ["e2e", "ready"] {
            let vals: Vec<Option<f64>> = reports
                .iter()
                .map(|r| {
                    r.and_then(|r| r.latencies.iter().find(|l| l.key == lk))
                        .filter(|l| l.summary.count > 0)
                        .map(|l| l.summary.p99_us / 1e3)
                })
                .collect();
            if vals.iter().any(Option::is_some) {
                rows.push((format!("{lk} latency p99 (ms)"), vals));
            }
        }
        for (label, vals) in rows {
            let _ = write!(s, "| {name} | {label} |");
            for v in &vals {
                let _ = write!(s, " {} |", v.map_or("-".into(), fmt_num));
            }
            if ratio {
                let r = match (
                    vals.first().copied().flatten(),
                    vals.get(1).copied().flatten(),
                ) {
                    (Some(a), Some(b)) if b != 0.0 => ratio_text(a / b),
                    _ => "-".into(),
                };
                let _ = write!(s, " {r} |");
            }
            s.push('\n');
        }
    }
    s
}

/// A ratio with two decimals, or as "1/N" when it is under 0.1 (0.00 would hide it).
fn ratio_text(r: f64) -> String {
    if r > 0.0 && r < 0.1 {
        format!("1/{}", fmt_num((1.0 / r).round()))
    } else {
        format!("{r:.2}")
    }
}

pub fn run(pairs: &[String]) -> Result<String, String> {
    let mut runs = Vec::new();
    for p in pairs {
        let (name, dir) = p
            .split_once('=')
            .ok_or_else(|| format!("{p}: expected NAME=DIR"))?;
        runs.push((name.to_string(), load(Path::new(dir))?));
    }
    Ok(render(&runs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample;

    #[test]
    fn side_by_side_with_ratio() {
        let a = sample();
        let mut b = sample();
        b.metrics[0].value = 123_456.7;
        let t = render(&[
            ("stompbox".into(), vec![("fanout-1".into(), a)]),
            ("rabbitmq".into(), vec![("fanout-1".into(), b)]),
        ]);
        assert!(
            t.contains("| scenario | metric | stompbox | rabbitmq | stompbox / rabbitmq |"),
            "{t}"
        );
        assert!(
            t.contains("| fanout-1 | delivered (msg/s) | 1,234,567 | 123,457 | 10.00 |"),
            "{t}"
        );
        assert!(t.contains("e2e latency p99 (ms)"));
    }

    #[test]
    fn small_ratios_read_as_one_in_n() {
        assert_eq!(ratio_text(0.5), "0.50");
        assert_eq!(ratio_text(0.1), "0.10");
        assert_eq!(ratio_text(1.0 / 124.0), "1/124");
        assert_eq!(ratio_text(0.0), "0.00");
        assert_eq!(ratio_text(96.0), "96.00");
    }
}
