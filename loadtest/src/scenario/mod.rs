//! The scenarios: each turns its options into a [`Plan`] of connections, runs it, and turns
//! the [`Outcome`] into a [`Report`].

pub mod broadcast;
pub mod connect;
pub mod fanout;
pub mod queue;
pub mod sweep;
pub mod table;

use std::time::Duration;

use crate::cli::Common;
use crate::conn::ConnSpec;
use crate::engine::{self, Mode, Outcome, Plan, StompOpts};
use crate::multi;
use crate::report::{Metric, Node, Report, Sample};
use crate::stats::Latency;
use crate::sys;
use crate::target::{self, Target};

fn secs(v: f64) -> Duration {
    Duration::from_secs_f64(if v.is_finite() && v > 0.0 { v } else { 0.0 })
}

fn stomp_opts(c: &Common) -> Result<StompOpts, String> {
    let (accept_version, protocols) = match c.stomp_version.as_str() {
        "1.2" => ("1.2", vec!["v12.stomp"]),
        "1.1" => ("1.1", vec!["v11.stomp"]),
        "1.0" => ("1.0", vec!["v10.stomp"]),
        v => return Err(format!("--stomp-version {v}: expected 1.0, 1.1 or 1.2")),
    };
    Ok(StompOpts {
        login: c.login.clone(),
        passcode: c.passcode.clone(),
        host: c.host.clone(),
        accept_version,
        protocols,
        deflate: c.compression,
    })
}

/// A plan with the common options; the caller fills in destinations and connections.
pub fn base_plan(c: &Common, mode: Mode) -> Result<Plan, String> {
    if c.threads == 0 || c.threads > 256 {
        return Err("--threads must be 1..=256".into());
    }
    let urls = urls(c);
    if urls.is_empty() {
        return Err("--url: no URL given".into());
    }
    let mut targets = Vec::new();
    for u in &urls {
        targets.push(Target::parse(u, c.allow_remote)?);
    }
    if let Some(p) = c.publisher_url.as_deref().map(str::trim) {
        if mode != Mode::Connect && !urls.iter().any(|u| u == p) {
            targets.push(Target::parse(p, c.allow_remote)?);
        }
    }
    if c.server_pid.len() > targets.len() {
        return Err(format!(
            "{} --server-pid for {} URL(s): give one per URL, in the same order",
            c.server_pid.len(),
            targets.len()
        ));
    }
    if c.processes == 0 || c.processes > 64 {
        return Err("--processes must be 1..=64".into());
    }
    Ok(Plan {
        mode,
        targets,
        stomp: stomp_opts(c)?,
        dests: Vec::new(),
        specs: Vec::new(),
        threads: c.threads,
        concurrency: c.concurrency.max(1),
        setup_timeout: secs(c.setup_timeout),
        warmup: secs(c.warmup),
        duration: secs(c.duration),
        drain: secs(c.drain),
        hold: Duration::ZERO,
        close_timeout: Duration::from_secs(10),
        keepalive: secs(c.keepalive),
        window: 0,
        body_size: 64,
        persistent: false,
        nack_every: 0,
        server_pids: c.server_pid.clone(),
        progress: !c.quiet,
    })
}

/// The `--url` list: comma-separated and/or repeated, blanks dropped.
pub fn urls(c: &Common) -> Vec<String> {
    c.url
        .iter()
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty())
        .collect()
}

/// Raise the open-file limit and fit the connection count to it (`processes` processes, each
/// with that limit). Returns the count to use and a warning when it had to be cut.
pub fn fit_connections(want: usize, processes: usize) -> (usize, Option<String>) {
    let (soft, hard) = sys::raise_nofile();
    let per = target::socket_budget(soft);
    let processes = processes.max(1);
    let budget = per.saturating_mul(processes);
    if want <= budget {
        return (want, None);
    }
    (
        budget,
        Some(format!(
            "asked for {want} connections, but each of {processes} loadtest process(es) may \
             open only {soft} files (hard limit {hard}), so it runs {budget}: raise the hard \
             limit (as root: ulimit -Hn, or LimitNOFILE= in a unit file) or use more \
             --processes (at least {})",
            want.div_ceil(per.max(1))
        )),
    )
}

/// Which target each session connects to: session i to URL i mod n, publishers to
/// `--publisher-url` when given, broadcast's one publisher to the first URL unless so.
pub fn place(plan: &mut Plan, c: &Common) {
    let n = urls(c).len().max(1);
    let pub_target = c.publisher_url.as_deref().map(str::trim).map(|p| {
        urls(c)
            .iter()
            .position(|u| u == p)
            .unwrap_or(plan.targets.len().saturating_sub(1))
    });
    let mode = plan.mode;
    for (i, s) in plan.specs.iter_mut().enumerate() {
        s.target = match (&s.publ, pub_target) {
            (Some(_), Some(t)) => t,
            (Some(_), None) if mode == Mode::Broadcast => 0,
            _ => i % n,
        };
    }
}

/// Give connections source addresses when there are more than one address's worth of ports
/// (ports are per destination, so each target is counted on its own).
pub fn assign_sources(plan: &mut Plan, c: &Common) -> Option<String> {
    let mut used = None;
    for (t, target) in plan.targets.iter().enumerate() {
        let n = plan.specs.iter().filter(|s| s.target == t).count();
        let Some(srcs) = target::source_addrs(&target.addr, n, c.source_addrs) else {
            continue;
        };
        for (j, s) in plan.specs.iter_mut().filter(|s| s.target == t).enumerate() {
            s.src = srcs.get(j % srcs.len()).copied();
        }
        if used.as_ref().is_none_or(|u: &Vec<_>| u.len() < srcs.len()) {
            used = Some(srcs);
        }
    }
    let srcs = used?;
    Some(format!(
        "{} ({} .. {})",
        srcs.len(),
        srcs.first().map(|a| a.to_string()).unwrap_or_default(),
        srcs.last().map(|a| a.to_string()).unwrap_or_default()
    ))
}

/// Run a plan: in this process, split over `--processes` children, or (with `--child`) as one
/// of those children, which hands its raw results to the parent.
pub fn execute(plan: &Plan, c: &Common) -> Result<Outcome, String> {
    if let Some(arg) = &c.child {
        let mut link = multi::ChildLink::start(arg)?;
        let mut mine = plan.clone();
        multi::share(&mut mine, link.k, link.n);
        let o = engine::run(mine, Some(&mut link))?;
        link.result(&o);
        return Ok(o);
    }
    if c.processes > 1 {
        if plan.mode == Mode::Queue {
            return Err("--processes: queue runs in one process".into());
        }
        if c.processes > plan.specs.len() {
            return Err(format!(
                "--processes {} for {} sessions: at least one session per process",
                c.processes,
                plan.specs.len()
            ));
        }
        return multi::run_parent(plan, c.processes);
    }
    engine::run(plan.clone(), None)
}

/// The parts every report shares: sessions, failures, CPU, warnings, series.
pub fn common_report(r: &mut Report, plan: &Plan, o: &Outcome, c: &Common) {
    r.param("threads", plan.threads);
    if c.processes > 1 {
        r.param("processes", c.processes);
    }
    if let Some(p) = &c.publisher_url {
        r.param("publisher_url", p);
    }
    r.param("concurrency", plan.concurrency);
    r.param("stomp_version", &c.stomp_version);
    if plan.mode != Mode::Connect {
        r.param("warmup_s", c.warmup);
        r.param("duration_s", c.duration);
    }
    r.metric(
        "sessions_ready",
        "sessions ready",
        o.at_start.ready as f64,
        "sessions",
    );
    r.metric(
        "sessions_failed",
        "sessions failed",
        o.last.failed as f64,
        "sessions",
    );
    r.metric(
        "sessions_dropped",
        "sessions lost while running",
        o.last.dropped as f64,
        "sessions",
    );
    r.metric("tool_cpu_pct", "loadtest CPU", o.cpu_pct, "%");
    r.metric(
        "tool_max_thread_cpu_pct",
        "loadtest busiest thread CPU",
        o.max_thread_pct,
        "%",
    );
    if let Some(b) = o.broker_cpu_pct {
        r.metric("broker_cpu_pct", "broker CPU", b, "%");
    }
    r.failures = o.threads.failures.clone();
    r.warnings.extend(o.warnings.iter().cloned());
    r.series = o
        .series
        .iter()
        .enumerate()
        .map(|(i, (p, d, s))| {
            let b = o.broker_series.get(i);
            let known = |x: f64| x.is_finite().then_some(x);
            Sample {
                t: (i + 1) as f64,
                published: *p,
                delivered: *d,
                sessions: *s,
                broker_cpu_pct: b.and_then(|b| known(b.0)),
                broker_rss_mib: b.and_then(|b| known(b.1)),
            }
        })
        .collect();
}

/// What setting the sessions up cost: connect rate, the broker's memory per idle session (with
/// `--server-pid`), upgrade and ready latencies. `connect` is only this; `broadcast` reports it
/// too, so one run of 10,000 sessions gives both the connect and the broadcast figures.
pub fn setup_report(r: &mut Report, o: &Outcome) {
    r.metric("setup_s", "time to set up all", o.setup_s, "s");
    r.metric(
        "connect_rate",
        "connect rate",
        rate(0, o.at_start.ready, o.setup_s),
        "sessions/s",
    );
    r.metric(
        "sessions_closed_clean",
        "sessions closed cleanly",
        o.last.closed_clean as f64,
        "sessions",
    );
    if let (Some(b), Some(after)) = (o.rss_before, o.rss_after) {
        r.metric(
            "broker_rss_before_mib",
            "broker RSS before",
            b as f64 / 1048576.0,
            "MiB",
        );
        r.metric(
            "broker_rss_after_mib",
            "broker RSS with sessions",
            after as f64 / 1048576.0,
            "MiB",
        );
        if o.at_start.ready > 0 {
            let per = after.saturating_sub(b) as f64 / o.at_start.ready as f64;
            r.metric(
                "broker_bytes_per_session",
                "broker memory per idle session",
                per,
                "bytes",
            );
            if per < 256.0 {
                r.warnings.push(format!(
                    "the broker's RSS grew by only {per:.0} bytes per session: it probably \
                     reused memory kept from earlier load, so start a fresh broker for a \
                     per-session figure"
                ));
            }
        }
    }
    r.latency(
        "upgrade",
        "TCP connect + WebSocket upgrade",
        o.threads.upgrade.summary(),
    );
    r.latency(
        "ready",
        "session ready (+CONNECT+SUBSCRIBE)",
        o.threads.setup.summary(),
    );
}

/// The per-URL breakdown (several targets only): sessions, deliveries, latency (fanout and
/// queue: every delivery; broadcast: the last receiver on that node), and with a
/// `--server-pid` per URL the broker's CPU per delivery and memory per session.
pub fn nodes_report(r: &mut Report, plan: &Plan, o: &Outcome) {
    let deliveries = o.at_end.delivered.saturating_sub(o.at_start.delivered);
    let cpu_s: Option<f64> = if o.brokers.is_empty() {
        None
    } else {
        o.brokers.iter().map(|b| b.cpu_s).sum()
    };
    if let (Some(cpu), true) = (cpu_s, plan.mode != Mode::Connect && deliveries > 0) {
        r.metric(
            "broker_cpu_us_per_delivery",
            "broker CPU per delivery",
            cpu * 1e6 / deliveries as f64,
            "us",
        );
    }
    if plan.targets.len() < 2 {
        return;
    }
    let per_node_broker = o.brokers.len() >= 2;
    for (t, target) in plan.targets.iter().enumerate() {
        let z = engine::NodeSnap::default();
        let s0 = o.nodes_start.get(t).unwrap_or(&z);
        let s1 = o.nodes_end.get(t).unwrap_or(&z);
        let sl = o.nodes_last.get(t).unwrap_or(&z);
        let mut m = Vec::new();
        let mut add = |key: &str, label: &str, value: f64, unit: &'static str| {
            m.push(Metric {
                key: key.into(),
                label: label.into(),
                value,
                unit,
            })
        };
        add("sessions", "sessions", s0.ready as f64, "sessions");
        let win = s1.delivered.saturating_sub(s0.delivered);
        if plan.mode != Mode::Connect {
            add("received", "received", sl.delivered as f64, "deliveries");
            add(
                "delivered_per_s",
                "deliveries/s",
                rate(s0.delivered, s1.delivered, o.measured_s),
                "msg/s",
            );
        }
        let node = o.threads.nodes.get(t);
        match plan.mode {
            Mode::Fanout | Mode::Queue => {
                let e = node
                    .map(|n| n.e2e.summary())
                    .unwrap_or_else(|| Latency::new().summary());
                add("e2e_p50_ms", "p50 ms", e.p50_us / 1e3, "ms");
                add("e2e_p99_ms", "p99 ms", e.p99_us / 1e3, "ms");
            }
            Mode::Broadcast => {
                // The time until the last subscriber on this node has each broadcast.
                let want = sl.subs.saturating_sub(sl.dropped) as u32;
                let mut last = Latency::new();
                let mut complete = 0u64;
                if let Some(n) = node {
                    for seq in o.at_start.published..o.at_end.published {
                        if let Some((k, lat)) = n.bcast.get(&seq) {
                            if *k >= want && want > 0 {
                                complete += 1;
                                last.record(*lat);
                            }
                        }
                    }
                }
                let s = last.summary();
                add(
                    "broadcasts_complete",
                    "complete",
                    complete as f64,
                    "broadcasts",
                );
                add("last_p50_ms", "last p50 ms", s.p50_us / 1e3, "ms");
                add("last_p99_ms", "last p99 ms", s.p99_us / 1e3, "ms");
            }
            Mode::Connect => {}
        }
        if let Some(b) = o.brokers.get(t).filter(|_| per_node_broker) {
            // Every node has the same columns: a figure that cannot be had is NaN ("-", null).
            add(
                "broker_cpu_pct",
                "broker CPU %",
                b.cpu_pct.unwrap_or(f64::NAN),
                "%",
            );
            if plan.mode != Mode::Connect {
                let per = match b.cpu_s {
                    Some(c) if win > 0 => c * 1e6 / win as f64,
                    _ => f64::NAN,
                };
                add("broker_cpu_us_per_delivery", "CPU us/delivery", per, "us");
            }
            let per = match (b.rss_before, b.rss_after) {
                (Some(x), Some(y)) if s0.ready > 0 => y.saturating_sub(x) as f64 / s0.ready as f64,
                _ => f64::NAN,
            };
            add("broker_bytes_per_session", "bytes/session", per, "bytes");
        }
        r.nodes.push(Node {
            url: target.url.clone(),
            metrics: m,
        });
    }
}

/// Per-second rate over the measured window.
pub fn rate(a: u64, b: u64, secs: f64) -> f64 {
    if secs <= 0.0 {
        return 0.0;
    }
    b.saturating_sub(a) as f64 / secs
}

/// `spec` `n` times.
pub fn repeat(spec: ConnSpec, n: usize) -> Vec<ConnSpec> {
    vec![spec; n]
}
