//! `--report FILE.html`: one self-contained page (inline SVG and CSS, no scripts, no external
//! assets) with the run's parameters and results, the latency percentile curve and the
//! throughput over time.

use std::fmt::Write as _;

use super::{fmt_num, Report};

/// Escape text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const COLORS: &[&str] = &[
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

/// A line.
pub struct Line {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// 1, 2, 5 × 10^k steps giving about `n` ticks over `0..=max`.
pub fn nice_ticks(max: f64, n: usize) -> Vec<f64> {
    if !max.is_finite() || max <= 0.0 {
        return vec![0.0, 1.0];
    }
    let raw = max / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let count = (max / step).ceil() as usize;
    (0..=count).map(|i| i as f64 * step).collect()
}

/// An SVG line chart. `x_ticks` are (position, label); y starts at 0.
pub fn chart(title: &str, y_unit: &str, lines: &[Line], x_ticks: &[(f64, String)]) -> String {
    let w = 760.0;
    let (l, r, t) = (80.0, 24.0, 36.0);
    // The legend goes under the x axis, one line per series.
    let b = 44.0 + 18.0 * lines.len() as f64;
    let h = 300.0 + b;
    let pw = w - l - r;
    let ph = h - t - b;
    let xs = lines.iter().flat_map(|ln| ln.points.iter().map(|p| p.0));
    let x_min = xs
        .clone()
        .chain(x_ticks.iter().map(|x| x.0))
        .fold(f64::INFINITY, f64::min);
    let x_max = xs
        .chain(x_ticks.iter().map(|x| x.0))
        .fold(f64::NEG_INFINITY, f64::max);
    let (x_min, x_max) = if x_min.is_finite() && x_max > x_min {
        (x_min, x_max)
    } else {
        (0.0, 1.0)
    };
    let y_max = lines
        .iter()
        .flat_map(|ln| ln.points.iter().map(|p| p.1))
        .fold(0.0, f64::max);
    let yt = nice_ticks(y_max, 5);
    let y_top = yt.last().copied().unwrap_or(1.0).max(1e-9);
    let px = |x: f64| l + (x - x_min) / (x_max - x_min) * pw;
    let py = |y: f64| t + ph - (y / y_top) * ph;
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="{t_}">"##,
        t_ = esc(title)
    );
    let _ = write!(
        s,
        r##"<rect width="{w}" height="{h}" fill="#fff"/><text x="{l}" y="22" font-size="15" font-weight="bold">{}</text>"##,
        esc(title)
    );
    for y in &yt {
        let yy = py(*y);
        let _ = write!(
            s,
            r##"<line x1="{l}" x2="{x2}" y1="{yy:.1}" y2="{yy:.1}" stroke="#e5e5e5"/><text x="{tx}" y="{ty:.1}" font-size="11" text-anchor="end">{}</text>"##,
            esc(&fmt_num(*y)),
            x2 = l + pw,
            tx = l - 6.0,
            ty = yy + 4.0
        );
    }
    for (x, label) in x_ticks {
        let xx = px(*x);
        let _ = write!(
            s,
            r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{t}" y2="{y2}" stroke="#f0f0f0"/><text x="{xx:.1}" y="{ty}" font-size="11" text-anchor="middle">{}</text>"##,
            esc(label),
            y2 = t + ph,
            ty = t + ph + 16.0
        );
    }
    let _ = write!(
        s,
        r##"<rect x="{l}" y="{t}" width="{pw}" height="{ph}" fill="none" stroke="#888"/><text x="16" y="{my}" font-size="11" transform="rotate(-90 16 {my})" text-anchor="middle">{}</text>"##,
        esc(y_unit),
        my = t + ph / 2.0
    );
    for (i, ln) in lines.iter().enumerate() {
        let color = COLORS.get(i % COLORS.len()).copied().unwrap_or("#000");
        let pts: Vec<String> = ln
            .points
            .iter()
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .map(|p| format!("{:.1},{:.1}", px(p.0), py(p.1)))
            .collect();
        let _ = write!(
            s,
            r##"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"##,
            pts.join(" ")
        );
        for p in &pts {
            if let Some((x, y)) = p.split_once(',') {
                let _ = write!(s, r##"<circle cx="{x}" cy="{y}" r="2.5" fill="{color}"/>"##);
            }
        }
        let ly = t + ph + 34.0 + i as f64 * 18.0;
        let lx = l;
        let _ = write!(
            s,
            r##"<line x1="{lx}" x2="{lx2}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="3"/><text x="{tx}" y="{ty}" font-size="12">{}</text>"##,
            esc(&ln.name),
            lx2 = lx + 18.0,
            tx = lx + 24.0,
            ty = ly + 4.0
        );
    }
    s.push_str("</svg>");
    s
}

/// `YYYY-MM-DD HH:MM:SS UTC` for seconds since the Unix epoch (proleptic Gregorian calendar).
pub fn utc(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Percentile `p` on the "nines" axis: 0 → 0, 90 → 1, 99 → 2, 99.9 → 3 …
fn nines(p: f64) -> f64 {
    if p >= 100.0 {
        5.5
    } else {
        (-(1.0 - p / 100.0).log10()).min(5.5)
    }
}

pub fn latency_chart(r: &Report) -> String {
    let lines: Vec<super::html::Line> = r
        .latencies
        .iter()
        .filter(|l| l.summary.count > 0)
        .map(|l| Line {
            name: l.label.clone(),
            points: l
                .summary
                .curve
                .iter()
                .map(|(p, v)| (nines(*p), v / 1000.0))
                .collect(),
        })
        .collect();
    let ticks: Vec<(f64, String)> = [
        (0.0, "0%"),
        (1.0, "90%"),
        (2.0, "99%"),
        (3.0, "99.9%"),
        (4.0, "99.99%"),
        (5.0, "99.999%"),
        (5.5, "max"),
    ]
    .iter()
    .map(|(x, s)| (*x, s.to_string()))
    .collect();
    chart("Latency by percentile", "latency (ms)", &lines, &ticks)
}

pub fn throughput_chart(r: &Report) -> String {
    let lines = vec![
        Line {
            name: "published/s".into(),
            points: r.series.iter().map(|s| (s.t, s.published)).collect(),
        },
        Line {
            name: "delivered/s".into(),
            points: r.series.iter().map(|s| (s.t, s.delivered)).collect(),
        },
    ];
    let max_t = r.series.iter().map(|s| s.t).fold(0.0, f64::max);
    let ticks: Vec<(f64, String)> = nice_ticks(max_t.max(1.0), 8)
        .into_iter()
        .map(|t| (t, format!("{t}s")))
        .collect();
    chart(
        "Throughput over time",
        "messages per second",
        &lines,
        &ticks,
    )
}

/// With `--server-pid`: the brokers' CPU and resident memory per second, beside throughput.
/// Empty without them.
pub fn broker_charts(r: &Report) -> String {
    let cpu: Vec<(f64, f64)> = r
        .series
        .iter()
        .filter_map(|s| s.broker_cpu_pct.map(|c| (s.t, c)))
        .collect();
    let rss: Vec<(f64, f64)> = r
        .series
        .iter()
        .filter_map(|s| s.broker_rss_mib.map(|m| (s.t, m)))
        .collect();
    if cpu.is_empty() && rss.is_empty() {
        return String::new();
    }
    let max_t = r.series.iter().map(|s| s.t).fold(0.0, f64::max);
    let ticks: Vec<(f64, String)> = nice_ticks(max_t.max(1.0), 8)
        .into_iter()
        .map(|t| (t, format!("{t}s")))
        .collect();
    let mut out = String::new();
    if !cpu.is_empty() {
        out.push_str(&chart(
            "Broker CPU over time",
            "% of one core",
            &[Line {
                name: "broker CPU %".into(),
                points: cpu,
            }],
            &ticks,
        ));
    }
    if !rss.is_empty() {
        out.push_str(&chart(
            "Broker memory over time",
            "resident MiB",
            &[Line {
                name: "broker RSS (MiB)".into(),
                points: rss,
            }],
            &ticks,
        ));
    }
    out
}

/// Sweep: the headline metric's median and the p99 by reactor count (two charts: their units
/// differ). Empty when the report holds no per-setting figures.
pub fn sweep_charts(r: &Report) -> String {
    let series = |prefix: &str| -> Vec<(f64, f64)> {
        (1..=64)
            .map_while(|n| r.get(&format!("{prefix}{n}")).map(|v| (n as f64, v)))
            .filter(|(_, v)| v.is_finite())
            .collect()
    };
    let medians = series("reactors_");
    if medians.is_empty() {
        return String::new();
    }
    let key = r
        .params
        .iter()
        .find(|(k, _)| k == "metric")
        .map_or("metric", |(_, v)| v.as_str());
    let max_n = medians.iter().map(|p| p.0).fold(1.0, f64::max);
    let ticks: Vec<(f64, String)> = (1..=max_n as usize)
        .map(|n| (n as f64, format!("{n}")))
        .collect();
    let mut out = chart(
        &format!("{key} by --reactors (median of the runs)"),
        key,
        &[Line {
            name: format!("{key} (median)"),
            points: medians,
        }],
        &ticks,
    );
    let p99 = series("p99_ms_reactors_");
    if !p99.is_empty() {
        out.push_str(&chart(
            "p99 latency by --reactors (median of the runs)",
            "p99 (ms)",
            &[Line {
                name: "p99 ms (median)".into(),
                points: p99,
            }],
            &ticks,
        ));
    }
    out
}

/// The whole page.
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let title = format!("loadtest {} — {}", r.scenario, r.url);
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>\
         body{{font-family:sans-serif;margin:24px;color:#222;max-width:980px}}\
         table{{border-collapse:collapse;margin:8px 0 20px}}td,th{{border:1px solid #ccc;padding:3px 10px;text-align:left}}\
         td.n{{text-align:right;font-variant-numeric:tabular-nums}}.warn{{background:#fff3cd;border:1px solid #e0c36a;padding:8px;margin:8px 0}}\
         svg{{display:block;margin:8px 0 24px;border:1px solid #ddd}}</style></head><body>",
        esc(&title)
    );
    let _ = write!(
        s,
        "<h1>{}</h1><p>{} · {}</p>",
        esc(&title),
        utc(r.unix_time),
        esc(concat!("loadtest ", env!("CARGO_PKG_VERSION")))
    );
    for w in &r.warnings {
        let _ = write!(s, "<div class=\"warn\">⚠ {}</div>", esc(w));
    }
    s.push_str("<h2>Parameters</h2><table>");
    for (k, v) in &r.params {
        let _ = write!(s, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v));
    }
    s.push_str("</table><h2>Results</h2><table>");
    for m in &r.metrics {
        let _ = write!(
            s,
            "<tr><th>{}</th><td class=\"n\">{}</td><td>{}</td></tr>",
            esc(&m.label),
            esc(&fmt_num(m.value)),
            esc(m.unit)
        );
    }
    s.push_str("</table>");
    if let Some(first) = r.nodes.first() {
        s.push_str("<h2>Per node</h2><table><tr><th>URL</th>");
        for m in &first.metrics {
            let _ = write!(s, "<th>{}</th>", esc(&m.label));
        }
        s.push_str("</tr>");
        for n in &r.nodes {
            let _ = write!(s, "<tr><th>{}</th>", esc(&n.url));
            for m in &n.metrics {
                let _ = write!(s, "<td class=\"n\">{}</td>", esc(&fmt_num(m.value)));
            }
            s.push_str("</tr>");
        }
        s.push_str("</table>");
    }
    if !r.latencies.is_empty() {
        s.push_str("<h2>Latency</h2><table><tr><th>ms</th><th>count</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr>");
        for l in &r.latencies {
            let m = &l.summary;
            let _ = write!(
                s,
                "<tr><th>{}</th><td class=\"n\">{}</td>",
                esc(&l.label),
                m.count
            );
            for v in [m.p50_us, m.p90_us, m.p99_us, m.p999_us, m.max_us] {
                let _ = write!(s, "<td class=\"n\">{:.3}</td>", v / 1e3);
            }
            s.push_str("</tr>");
        }
        s.push_str("</table>");
        s.push_str(&latency_chart(r));
    }
    if !r.series.is_empty() {
        s.push_str("<h2>Throughput</h2>");
        s.push_str(&throughput_chart(r));
        s.push_str(&broker_charts(r));
    }
    if let Some((head, rows)) = &r.table {
        s.push_str("<h2>Sweep</h2><table><tr>");
        for h in head {
            let _ = write!(s, "<th>{}</th>", esc(h));
        }
        s.push_str("</tr>");
        for row in rows {
            s.push_str("<tr>");
            for c in row {
                let _ = write!(s, "<td class=\"n\">{}</td>", esc(c));
            }
            s.push_str("</tr>");
        }
        s.push_str("</table>");
        s.push_str(&sweep_charts(r));
    }
    if !r.failures.is_empty() {
        s.push_str("<h2>Failures by cause</h2><table>");
        for (k, v) in &r.failures {
            let _ = write!(s, "<tr><td>{}</td><td class=\"n\">{v}</td></tr>", esc(k));
        }
        s.push_str("</table>");
    }
    s.push_str("</body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample;

    #[test]
    fn page_is_self_contained_and_escaped() {
        let page = render(&sample());
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert_eq!(
            page.matches("<svg ").count(),
            4,
            "latency, throughput, broker CPU and broker memory charts"
        );
        assert!(page.contains("Broker CPU over time") && page.contains("Broker memory over time"));
        let mut no_broker = sample();
        for s in &mut no_broker.series {
            (s.broker_cpu_pct, s.broker_rss_mib) = (None, None);
        }
        assert_eq!(render(&no_broker).matches("<svg ").count(), 2);
        assert_eq!(
            page.matches("<svg ").count(),
            page.matches("</svg>").count()
        );
        // Nothing loaded from elsewhere: no scripts, links, images or CSS urls; the only URL
        // is the SVG namespace.
        for bad in ["<script", "<link", "<img", "url(", "src=", "href="] {
            assert!(!page.contains(bad), "{bad}");
        }
        let without_ns = page.replace("http://www.w3.org/2000/svg", "");
        assert!(!without_ns.contains("http://") && !without_ns.contains("https://"));
        // Parameters are escaped.
        assert!(page.contains("&lt;b&gt;&amp;&quot;quoted&quot;&lt;/b&gt;"));
        assert!(!page.contains("<b>&"));
        assert!(page.contains("1,234,567"));
        assert!(page.contains("timeout: TCP connect"));
    }

    #[test]
    fn a_sweep_charts_its_medians_and_p99_by_reactor_count() {
        let mut r = Report::new("sweep", "stompbox --reactors 1..=3");
        r.param("metric", "delivered_per_s");
        for n in 1..=3 {
            r.metric(&format!("reactors_{n}"), "x", 1000.0 * n as f64, "");
            r.metric(&format!("p99_ms_reactors_{n}"), "x", 2.0, "ms");
        }
        let charts = sweep_charts(&r);
        assert_eq!(charts.matches("<svg ").count(), 2);
        assert!(charts.contains("delivered_per_s by --reactors"));
        assert!(sweep_charts(&Report::new("fanout", "x")).is_empty());
    }

    #[test]
    fn tables_balance() {
        let page = render(&sample());
        for tag in ["table", "tr", "h2", "svg", "div"] {
            let open = page.matches(&format!("<{tag}>")).count()
                + page.matches(&format!("<{tag} ")).count();
            let close = page.matches(&format!("</{tag}>")).count();
            assert_eq!(open, close, "<{tag}>");
        }
    }

    #[test]
    fn ticks_and_axes() {
        assert_eq!(
            nice_ticks(95.0, 5),
            vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]
        );
        assert_eq!(nice_ticks(0.0, 5), vec![0.0, 1.0]);
        assert!((nines(99.0) - 2.0).abs() < 1e-9);
        assert_eq!(nines(100.0), 5.5);
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        // An empty report still renders (no NaN coordinates).
        let page = render(&Report::new("connect", "ws://x"));
        assert!(!page.contains("NaN"));
    }
}
