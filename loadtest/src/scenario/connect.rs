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
            target: 0,
        },
        n,
    );
    super::place(&mut plan, c);
    let sources = assign_sources(&mut plan, c);
    let o = super::execute(&plan, c)?;
    let mut r = Report::new("connect", &c.url.join(","));
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
    super::setup_report(&mut r, &o);
    super::nodes_report(&mut r, &plan, &o);
    Ok(r)
}
