//! `broadcast`: S subscribers on one topic, one publish per interval; for each broadcast the
//! time until the last subscriber has it (as in the websocket-shootout broadcast test).

use crate::body;
use crate::cli::BroadcastArgs;
use crate::conn::{Ack, ConnSpec, PubSpec, SubSpec};
use crate::engine::Mode;
use crate::report::Report;
use crate::stats::Latency;

use super::{assign_sources, base_plan, common_report, fit_connections};

pub fn run(a: &BroadcastArgs) -> Result<Report, String> {
    let c = &a.common;
    let mut plan = base_plan(c, Mode::Broadcast)?;
    let (total, clamp) = fit_connections(a.subscribers + 1, c.processes);
    let subs = total.saturating_sub(1);
    let interval = if a.interval_ms.is_finite() && a.interval_ms >= 1.0 {
        a.interval_ms
    } else {
        return Err("--interval-ms must be at least 1".into());
    };
    plan.body_size = a.body_size.max(body::MIN_BODY);
    plan.dests = vec![format!("/topic/{}-broadcast", c.prefix)];
    let sub = ConnSpec {
        sub: Some(SubSpec {
            dest: 0,
            ack: Ack::Auto,
            prefetch: 0,
        }),
        publ: None,
        src: None,
        target: 0,
    };
    plan.specs = super::repeat(sub, subs);
    plan.specs.push(ConnSpec {
        sub: None,
        publ: Some(PubSpec {
            id: 0,
            dests: vec![0],
            rate: 1000.0 / interval,
            cap: None,
        }),
        src: None,
        target: 0,
    });
    super::place(&mut plan, c);
    let sources = assign_sources(&mut plan, c);
    let o = super::execute(&plan, c)?;
    let mut r = Report::new("broadcast", &c.url.join(","));
    r.param("subscribers", subs);
    r.param("interval_ms", interval);
    r.param("body_size", plan.body_size);
    if let Some(s) = &sources {
        r.param("sources", s);
    }
    common_report(&mut r, &plan, &o, c);
    r.warnings.extend(clamp);
    // Broadcasts sent in the measured window: the publisher's sequence numbers from the
    // warm-up's end on.
    let first = o.at_start.published;
    let last = o.at_end.published;
    let mut last_rx = Latency::new();
    let (mut complete, mut partial) = (0u64, 0u64);
    let want = o.ready_subs.saturating_sub(o.last.dropped) as u32;
    for seq in first..last {
        match o.threads.bcast.get(&seq) {
            Some((n, lat)) if *n >= want => {
                complete += 1;
                last_rx.record(*lat);
            }
            _ => partial += 1,
        }
    }
    r.metric(
        "broadcasts",
        "broadcasts measured",
        (last - first) as f64,
        "broadcasts",
    );
    r.metric(
        "broadcasts_complete",
        "reached every subscriber",
        complete as f64,
        "broadcasts",
    );
    r.metric(
        "broadcasts_partial",
        "missed by some subscriber",
        partial as f64,
        "broadcasts",
    );
    let s = last_rx.summary();
    r.metric("last_p50_ms", "last receiver p50", s.p50_us / 1e3, "ms");
    r.metric("last_p99_ms", "last receiver p99", s.p99_us / 1e3, "ms");
    r.metric(
        "delivered_per_s",
        "delivered",
        super::rate(o.at_start.delivered, o.at_end.delivered, o.measured_s),
        "msg/s",
    );
    r.metric(
        "loss",
        "not delivered by the end of the drain",
        o.last.expected.saturating_sub(o.last.delivered) as f64,
        "deliveries",
    );
    super::setup_report(&mut r, &o);
    r.latency("last", "last receiver (per broadcast)", s);
    r.latency("e2e", "every delivery", o.threads.e2e.summary());
    super::nodes_report(&mut r, &plan, &o);
    Ok(r)
}
