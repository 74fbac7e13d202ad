//! `--json FILE`: the report as one JSON object, and back (for comparison tables).

use serde_json::{json, Map, Value};

use super::{LatencyRow, Metric, Node, Report, Sample};
use crate::stats::Summary;

fn summary(s: &Summary) -> Value {
    json!({
        "count": s.count,
        "min_us": s.min_us,
        "mean_us": s.mean_us,
        "p50_us": s.p50_us,
        "p90_us": s.p90_us,
        "p99_us": s.p99_us,
        "p99_9_us": s.p999_us,
        "max_us": s.max_us,
        "curve": s.curve.iter().map(|(p, v)| json!([p, v])).collect::<Vec<_>>(),
    })
}

pub fn to_value(r: &Report) -> Value {
    let mut params = Map::new();
    for (k, v) in &r.params {
        params.insert(k.clone(), Value::String(v.clone()));
    }
    let mut metrics = Map::new();
    let mut units = Map::new();
    let mut labels = Map::new();
    for m in &r.metrics {
        metrics.insert(m.key.clone(), json!(finite(m.value)));
        units.insert(m.key.clone(), json!(m.unit));
        labels.insert(m.key.clone(), json!(m.label));
    }
    let mut lat = Map::new();
    for l in &r.latencies {
        let mut v = summary(&l.summary);
        if let Some(o) = v.as_object_mut() {
            o.insert("label".into(), json!(l.label));
        }
        lat.insert(l.key.clone(), v);
    }
    let series: Vec<Value> = r
        .series
        .iter()
        .map(|s| {
            json!({"t": s.t, "published_per_s": s.published, "delivered_per_s": s.delivered,
                   "sessions": s.sessions, "broker_cpu_pct": s.broker_cpu_pct,
                   "broker_rss_mib": s.broker_rss_mib})
        })
        .collect();
    let mut v = json!({
        "tool": concat!("loadtest ", env!("CARGO_PKG_VERSION")),
        "scenario": r.scenario,
        "url": r.url,
        "unix_time": r.unix_time,
        "params": params,
        "metrics": metrics,
        "units": units,
        "labels": labels,
        "latency": lat,
        "series": series,
        "failures": r.failures,
        "warnings": r.warnings,
    });
    if let (Some((head, rows)), Some(o)) = (&r.table, v.as_object_mut()) {
        o.insert("table".into(), json!({"header": head, "rows": rows}));
    }
    if let (false, Some(o)) = (r.nodes.is_empty(), v.as_object_mut()) {
        let nodes: Vec<Value> = r
            .nodes
            .iter()
            .map(|n| {
                let mut m = Map::new();
                let mut u = Map::new();
                let mut l = Map::new();
                for x in &n.metrics {
                    m.insert(x.key.clone(), json!(finite(x.value)));
                    u.insert(x.key.clone(), json!(x.unit));
                    l.insert(x.key.clone(), json!(x.label));
                }
                json!({"url": n.url, "metrics": m, "units": u, "labels": l})
            })
            .collect();
        o.insert("nodes".into(), Value::Array(nodes));
    }
    v
}

/// JSON has no NaN or infinity.
fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

pub fn to_string(r: &Report) -> String {
    serde_json::to_string_pretty(&to_value(r)).unwrap_or_default()
}

fn f(v: &Value, k: &str) -> f64 {
    v.get(k).and_then(Value::as_f64).unwrap_or(0.0)
}

/// `metrics` with their `units` and `labels`, in the order the JSON object keeps them.
fn metrics_of(v: &Value) -> Vec<Metric> {
    let units = v.get("units");
    let labels = v.get("labels");
    let mut out = Vec::new();
    if let Some(m) = v.get("metrics").and_then(Value::as_object) {
        for (k, x) in m {
            let unit = match units.and_then(|u| u.get(k)).and_then(Value::as_str) {
                Some(u) => intern_unit(u),
                None => "",
            };
            out.push(Metric {
                key: k.clone(),
                label: labels
                    .and_then(|l| l.get(k))
                    .and_then(Value::as_str)
                    .unwrap_or(k)
                    .to_string(),
                value: x.as_f64().unwrap_or(f64::NAN),
                unit,
            });
        }
    }
    out
}

/// Read a report written by [`to_string`].
pub fn from_str(s: &str) -> Result<Report, String> {
    let v: Value = serde_json::from_str(s).map_err(|e| e.to_string())?;
    let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let mut r = Report::new(&text("scenario"), &text("url"));
    r.unix_time = v.get("unix_time").and_then(Value::as_u64).unwrap_or(0);
    if let Some(p) = v.get("params").and_then(Value::as_object) {
        for (k, x) in p {
            r.param(k, x.as_str().unwrap_or(""));
        }
    }
    r.metrics = metrics_of(&v);
    if let Some(a) = v.get("nodes").and_then(Value::as_array) {
        for n in a {
            r.nodes.push(Node {
                url: n.get("url").and_then(Value::as_str).unwrap_or("").into(),
                metrics: metrics_of(n),
            });
        }
    }
    if let Some(l) = v.get("latency").and_then(Value::as_object) {
        for (k, x) in l {
            r.latencies.push(LatencyRow {
                key: k.clone(),
                label: x.get("label").and_then(Value::as_str).unwrap_or(k).into(),
                summary: Summary {
                    count: x.get("count").and_then(Value::as_u64).unwrap_or(0),
                    min_us: f(x, "min_us"),
                    mean_us: f(x, "mean_us"),
                    p50_us: f(x, "p50_us"),
                    p90_us: f(x, "p90_us"),
                    p99_us: f(x, "p99_us"),
                    p999_us: f(x, "p99_9_us"),
                    max_us: f(x, "max_us"),
                    curve: x
                        .get("curve")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(|p| Some((p.get(0)?.as_f64()?, p.get(1)?.as_f64()?)))
                                .collect()
                        })
                        .unwrap_or_default(),
                },
            });
        }
    }
    if let Some(s) = v.get("series").and_then(Value::as_array) {
        for x in s {
            r.series.push(Sample {
                t: f(x, "t"),
                published: f(x, "published_per_s"),
                delivered: f(x, "delivered_per_s"),
                sessions: x.get("sessions").and_then(Value::as_u64).unwrap_or(0),
                broker_cpu_pct: x.get("broker_cpu_pct").and_then(Value::as_f64),
                broker_rss_mib: x.get("broker_rss_mib").and_then(Value::as_f64),
            });
        }
    }
    if let Some(m) = v.get("failures").and_then(Value::as_object) {
        for (k, x) in m {
            r.failures.insert(k.clone(), x.as_u64().unwrap_or(0));
        }
    }
    if let Some(w) = v.get("warnings").and_then(Value::as_array) {
        r.warnings = w
            .iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect();
    }
    Ok(r)
}

/// Units are a small fixed set; map a parsed one back to its static string.
fn intern_unit(u: &str) -> &'static str {
    const UNITS: &[&str] = &[
        "msg/s",
        "msgs",
        "sessions",
        "sessions/s",
        "s",
        "ms",
        "%",
        "bytes",
        "MiB",
        "x",
        "deliveries",
        "broadcasts",
        "us",
    ];
    UNITS.iter().find(|x| **x == u).copied().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample;

    #[test]
    fn round_trips() {
        let r = sample();
        let s = to_string(&r);
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["scenario"], "fanout");
        assert_eq!(v["metrics"]["delivered_per_s"], 1_234_567.0);
        assert_eq!(v["units"]["delivered_per_s"], "msg/s");
        assert_eq!(v["params"]["note"], "<b>&\"quoted\"</b>");
        assert_eq!(v["latency"]["e2e"]["count"], 1000);
        assert_eq!(v["series"].as_array().unwrap().len(), 5);
        assert_eq!(v["failures"]["timeout: TCP connect"], 3);
        let back = from_str(&s).unwrap();
        assert_eq!(back.get("delivered_per_s"), Some(1_234_567.0));
        assert_eq!(back.latencies[0].summary, r.latencies[0].summary);
        assert_eq!(back.series, r.series);
        assert_eq!(back.failures, r.failures);
        assert_eq!(back.warnings, r.warnings);
    }

    #[test]
    fn nodes_round_trip() {
        let r = crate::report::tests::with_nodes();
        let s = to_string(&r);
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["nodes"][1]["url"], "ws://127.0.0.1:2/ws");
        assert_eq!(v["nodes"][1]["metrics"]["sessions"], 51.0);
        let back = from_str(&s).unwrap();
        assert_eq!(back.nodes.len(), 2);
        assert_eq!(back.nodes[1].url, r.nodes[1].url);
        assert_eq!(back.nodes[0].metrics.len(), 2);
        assert!(!to_string(&sample()).contains("\"nodes\""));
    }

    #[test]
    fn non_finite_numbers_become_null() {
        let mut r = sample();
        r.metric("ratio", "ratio", f64::INFINITY, "x");
        let v: Value = serde_json::from_str(&to_string(&r)).unwrap();
        assert!(v["metrics"]["ratio"].is_null());
        assert!(from_str(&to_string(&r))
            .unwrap()
            .get("ratio")
            .unwrap()
            .is_nan());
        assert!(from_str("{").is_err());
    }
}
