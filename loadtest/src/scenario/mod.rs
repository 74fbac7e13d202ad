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
use crate::engine::{Mode, Outcome, Plan, StompOpts};
use crate::report::{Report, Sample};
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
    })
}

/// A plan with the common options; the caller fills in destinations and connections.
pub fn base_plan(c: &Common, mode: Mode) -> Result<Plan, String> {
    if c.threads == 0 || c.threads > 256 {
        return Err("--threads must be 1..=256".into());
    }
    Ok(Plan {
        mode,
        target: Target::parse(&c.url, c.allow_remote)?,
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
        nack_every: 0,
        server_pid: c.server_pid,
        progress: !c.quiet,
    })
}

/// Raise the open-file limit and fit the connection count to it. Returns the count to use and
/// a warning when it had to be cut.
pub fn fit_connections(want: usize) -> (usize, Option<String>) {
    let (soft, hard) = sys::raise_nofile();
    let budget = target::socket_budget(soft);
    if want <= budget {
        return (want, None);
    }
    (
        budget,
        Some(format!(
            "asked for {want} connections, but this process may open only {soft} files (hard \
             limit {hard}), so it runs {budget}: raise the hard limit (as root: ulimit -Hn, or \
             LimitNOFILE= in a unit file) or run several loadtest processes"
        )),
    )
}

/// Give connections source addresses when there are more than one address's worth of ports.
pub fn assign_sources(plan: &mut Plan, c: &Common) -> Option<String> {
    let n = plan.specs.len();
    let srcs = target::source_addrs(&plan.target.addr, n, c.source_addrs)?;
    for (i, s) in plan.specs.iter_mut().enumerate() {
        s.src = srcs.get(i % srcs.len()).copied();
    }
    Some(format!(
        "{} ({} .. {})",
        srcs.len(),
        srcs.first().map(|a| a.to_string()).unwrap_or_default(),
        srcs.last().map(|a| a.to_string()).unwrap_or_default()
    ))
}

/// The parts every report shares: sessions, failures, CPU, warnings, series.
pub fn common_report(r: &mut Report, plan: &Plan, o: &Outcome, c: &Common) {
    r.param("threads", plan.threads);
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
        .map(|(i, (p, d, s))| Sample {
            t: (i + 1) as f64,
            published: *p,
            delivered: *d,
            sessions: *s,
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
