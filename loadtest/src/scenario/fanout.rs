//! `fanout`: P publishers, S subscribers over T topics; published and delivered per second,
//! loss, end-to-end latency.

use crate::body;
use crate::cli::FanoutArgs;
use crate::conn::{Ack, ConnSpec, PubSpec, SubSpec};
use crate::engine::Mode;
use crate::report::Report;

use super::{assign_sources, base_plan, common_report, fit_connections, rate};

pub fn run(a: &FanoutArgs) -> Result<Report, String> {
    let c = &a.common;
    let mut plan = base_plan(c, Mode::Fanout)?;
    let topics = a.topics.max(1);
    let pubs = a.publishers.max(1);
    let (total, clamp) = fit_connections(a.subscribers + pubs, c.processes);
    let subs = total.saturating_sub(pubs);
    plan.body_size = a.body_size.max(body::MIN_BODY);
    plan.window = a.window;
    plan.dests = (0..topics)
        .map(|t| format!("/topic/{}-{t}", c.prefix))
        .collect();
    // Subscribers first, so they are ready before anyone publishes.
    for i in 0..subs {
        plan.specs.push(ConnSpec {
            sub: Some(SubSpec {
                dest: i % topics,
                ack: Ack::Auto,
                prefetch: 0,
            }),
            publ: None,
            src: None,
            target: 0,
        });
    }
    for p in 0..pubs {
        plan.specs.push(ConnSpec {
            sub: None,
            publ: Some(PubSpec {
                id: p as u32,
                // Publisher p starts at topic p and takes every topic in turn.
                dests: (0..topics).map(|k| (p + k) % topics).collect(),
                rate: a.rate / pubs as f64,
                cap: a.messages.map(|m| m.div_ceil(pubs as u64)),
            }),
            src: None,
            target: 0,
        });
    }
    super::place(&mut plan, c);
    let sources = assign_sources(&mut plan, c);
    let o = super::execute(&plan, c)?;
    let mut r = Report::new("fanout", &c.url.join(","));
    r.param("publishers", pubs);
    r.param("subscribers", subs);
    r.param("topics", topics);
    r.param("body_size", plan.body_size);
    r.param(
        "rate",
        if a.rate > 0.0 {
            a.rate.to_string()
        } else {
            "max".into()
        },
    );
    r.param("window", a.window);
    if let Some(m) = a.messages {
        r.param("messages", m);
    }
    if let Some(s) = &sources {
        r.param("sources", s);
    }
    common_report(&mut r, &plan, &o, c);
    r.warnings.extend(clamp);
    r.metric(
        "published_per_s",
        "published",
        rate(o.at_start.published, o.at_end.published, o.measured_s),
        "msg/s",
    );
    r.metric(
        "delivered_per_s",
        "delivered",
        rate(o.at_start.delivered, o.at_end.delivered, o.measured_s),
        "msg/s",
    );
    let loss = o.last.expected.saturating_sub(o.last.delivered);
    r.metric(
        "published",
        "published in all",
        o.last.published as f64,
        "msgs",
    );
    r.metric(
        "expected",
        "deliveries expected",
        o.last.expected as f64,
        "deliveries",
    );
    r.metric(
        "delivered",
        "deliveries received",
        o.last.delivered as f64,
        "deliveries",
    );
    r.metric(
        "loss",
        "not delivered by the end of the drain",
        loss as f64,
        "deliveries",
    );
    r.metric("measured_s", "measured for", o.measured_s, "s");
    if !o.drained && loss > 0 {
        r.warnings.push(format!(
            "{loss} deliveries had not arrived {} s after publishing stopped",
            c.drain
        ));
    }
    r.latency(
        "e2e",
        "end-to-end (publish to deliver)",
        o.threads.e2e.summary(),
    );
    super::nodes_report(&mut r, &plan, &o);
    Ok(r)
}
