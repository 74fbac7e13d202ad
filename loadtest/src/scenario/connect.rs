//! `connect`: N sessions at a given handshake concurrency; connect rate, failures by cause,
//! handshake latency, broker memory per session; hold, then close cleanly.

use crate::cli::ConnectArgs;
use crate::conn::{Ack, ConnSpec, SubSpec};
use crate::engine::Mode;
use crate::report::Report;

use super::{assign_sources, base_plan, common_report, fit_connections, secs};

pub fn run(a: &ConnectArgs) -> Result<Report, String> {
    let c = &a.common;
    let mut plan = base_plan(c, Mode::Connect)?;
    let (n, clamp) = fit_connections(a.sessions, c.processes);
    plan.hold = secs(a.hold);
    let topics = a.topics.clamp(1, n.max(1));
    plan.dests = if topics == 1 {
        vec![format!("/topic/{}-connect", c.prefix)]
    } else {
        (0..topics)
            .map(|i| format!("/topic/{}/room/{i:04}", c.prefix))
            .collect()
    };
    plan.specs = (0..n)
        .map(|i| ConnSpec {
            sub: Some(SubSpec {
                dest: i % topics,
                ack: Ack::Auto,
                prefetch: 0,
            }),
            publ: None,
            src: None,
            target: 0,
        })
        .collect();
    super::place(&mut plan, c);
    let sources = assign_sources(&mut plan, c);
    let o = super::execute(&plan, c)?;
    let mut r = Report::new("connect", &c.url.join(","));
    r.param("sessions", a.sessions);
    r.param("hold_s", a.hold);
    r.param("topics", topics);
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
    super::setup_report(&mut r, &o);
    super::nodes_report(&mut r, &plan, &o);
    Ok(r)
}
