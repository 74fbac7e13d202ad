//! `connect`: N sessions at a given handshake concurrency; connect rate, failures by cause,
//! handshake latency, broker memory per session; hold, then close cleanly.

use crate::cli::ConnectArgs;
use crate::conn::{Ack, ConnSpec, SubSpec};
use crate::engine::{self, Mode};
use crate::report::Report;

use super::{assign_sources, base_plan, common_report, fit_connections, secs};

pub fn run(a: &ConnectArgs) -> Result<Report, String> {
    let c = &a.common;
    let mut plan = base_plan(c, Mode::Connect)?;
    let (n, clamp) = fit_connections(a.sessions);
    plan.hold = secs(a.hold);
    plan.dests = vec![format!("/topic/{}-connect", c.prefix)];
    plan.specs = super::repeat(
        ConnSpec {
            sub: Some(SubSpec {
                dest: 0,
                ack: Ack::Auto,
                prefetch: 0,
            }),
            publ: None,
            src: None,
        },
        n,
    );
    let sources = assign_sources(&mut plan, c);
    let o = engine::run(plan.clone())?;
    let mut r = Report::new("connect", &c.url);
    r.param("sessions", a.sessions);
    r.param("hold_s", a.hold);
    if let Some(s) = &sources {
        r.param("sources", s);
    }
    common_report(&mut r, &plan, &o, c);
    r.warnings.extend(clamp);
    r.metric(
        "sessions_requested",
        "sessions requested",
        a.sessions as f64,
        "sessions",
    );
    r.metric("setup_s", "time to set up all", o.setup_s, "s");
    r.metric(
        "connect_rate",
        "connect rate",
        super::rate(0, o.at_start.ready, o.setup_s),
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
        o.upgrade.summary(),
    );
    r.latency(
        "ready",
        "session ready (+CONNECT+SUBSCRIBE)",
        o.setup.summary(),
    );
    Ok(r)
}
