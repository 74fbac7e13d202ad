//! `queue`: producers and consumers on one queue, consumers acknowledging (client or
//! client-individual): consumed per second, latency, redeliveries, duplicates and loss.
//!
//! Written against the STOMP spec and RabbitMQ's `/queue/` semantics (each message to one
//! consumer). A broker that treats `/queue/` like a topic shows up as every consumer getting
//! every message, which the report says plainly.

use crate::body;
use crate::cli::QueueArgs;
use crate::conn::{Ack, ConnSpec, PubSpec, SubSpec};
use crate::engine::Mode;
use crate::report::Report;

use super::{assign_sources, base_plan, common_report, fit_connections, rate};

pub fn run(a: &QueueArgs) -> Result<Report, String> {
    let c = &a.common;
    let mut plan = base_plan(c, Mode::Queue)?;
    let ack = match a.ack.as_str() {
        "client" => Ack::Client,
        "client-individual" => Ack::ClientIndividual,
        "auto" => Ack::Auto,
        v => {
            return Err(format!(
                "--ack {v}: expected client, client-individual or auto"
            ))
        }
    };
    let producers = a.producers.max(1);
    let (total, clamp) = fit_connections(a.consumers.max(1) + producers, c.processes);
    let consumers = total.saturating_sub(producers).max(1);
    plan.body_size = a.body_size.max(body::MIN_BODY);
    plan.window = a.window;
    plan.nack_every = a.nack_every;
    plan.persistent = a.persistent;
    if a.nack_every > 0 && ack != Ack::ClientIndividual {
        return Err("--nack-every needs --ack client-individual".into());
    }
    // A fresh queue per run, so nothing left from an earlier run is counted.
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    plan.dests = vec![format!(
        "/queue/{}-{}-{stamp}",
        c.prefix,
        std::process::id()
    )];
    for _ in 0..consumers {
        plan.specs.push(ConnSpec {
            sub: Some(SubSpec {
                dest: 0,
                ack,
                prefetch: a.prefetch,
            }),
            publ: None,
            src: None,
            target: 0,
        });
    }
    for p in 0..producers {
        plan.specs.push(ConnSpec {
            sub: None,
            publ: Some(PubSpec {
                id: p as u32,
                dests: vec![0],
                rate: a.rate / producers as f64,
                cap: a.messages.map(|m| m.div_ceil(producers as u64)),
            }),
            src: None,
            target: 0,
        });
    }
    super::place(&mut plan, c);
    let sources = assign_sources(&mut plan, c);
    let mut o = super::execute(&plan, c)?;
    let mut r = Report::new("queue", &c.url.join(","));
    r.param("producers", producers);
    r.param("consumers", consumers);
    r.param("ack", ack.as_str());
    r.param("prefetch", a.prefetch);
    if a.persistent {
        r.param("persistent", true);
    }
    if a.nack_every > 0 {
        r.param("nack_every", a.nack_every);
    }
    r.param("body_size", plan.body_size);
    r.param(
        "rate",
        if a.rate > 0.0 {
            a.rate.to_string()
        } else {
            "max".into()
        },
    );
    r.param("destination", &plan.dests[0]);
    if let Some(s) = &sources {
        r.param("sources", s);
    }
    common_report(&mut r, &plan, &o, c);
    r.warnings.extend(clamp);
    let received = o.threads.ids.len() as u64;
    o.threads.ids.sort_unstable();
    o.threads.ids.dedup();
    let unique = o.threads.ids.len() as u64;
    let sent = o.last.published;
    r.metric(
        "sent_per_s",
        "sent",
        rate(o.at_start.published, o.at_end.published, o.measured_s),
        "msg/s",
    );
    r.metric(
        "consumed_per_s",
        "consumed",
        rate(o.at_start.delivered, o.at_end.delivered, o.measured_s),
        "msg/s",
    );
    r.metric("sent", "sent in all", sent as f64, "msgs");
    r.metric("received", "received in all", received as f64, "msgs");
    r.metric(
        "unique",
        "distinct messages received",
        unique as f64,
        "msgs",
    );
    r.metric(
        "duplicates",
        "received more than once",
        (received - unique) as f64,
        "msgs",
    );
    r.metric(
        "redelivered",
        "marked redelivered",
        o.last.redelivered as f64,
        "msgs",
    );
    r.metric("acked", "acknowledged", o.last.acked as f64, "msgs");
    r.metric("nacked", "refused with NACK", o.last.nacked as f64, "msgs");
    r.metric(
        "loss",
        "never received",
        sent.saturating_sub(unique) as f64,
        "msgs",
    );
    if consumers > 1 && sent > 0 && received >= sent * consumers as u64 {
        r.warnings.push(format!(
            "every consumer received every message ({received} deliveries of {sent} messages \
             to {consumers} consumers): this broker treats {} like a topic, without queue \
             semantics",
            plan.dests[0]
        ));
    }
    r.latency("e2e", "send to consume", o.threads.e2e.summary());
    super::nodes_report(&mut r, &plan, &o);
    Ok(r)
}

/// Did the report show topic semantics (every consumer got every message)?
pub fn topic_like(r: &Report) -> bool {
    r.warnings
        .iter()
        .any(|w| w.contains("without queue semantics"))
}
