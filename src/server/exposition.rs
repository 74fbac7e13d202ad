//! `/metrics` in the OpenMetrics text format, written by `prometheus-client`. The values are
//! read at scrape time from what each reactor published at the end of its last loop turn (its
//! own atomics: nothing is shared on the per-message path) and from the process (`/proc`).
//!
//! Names follow the conventions: base units in names (`_bytes`, `_seconds`), `_total` only on
//! counters (the encoder adds it), no two families sharing a name.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::metrics::{Counters, Hist, Stats, DELIVERY_BUCKETS, HANDSHAKE_BUCKETS, TURN_BUCKETS};

/// Label pairs of one sample (none: an unlabelled metric).
type Labels = Vec<(&'static str, String)>;

fn no_labels() -> Labels {
    Vec::new()
}

/// One family: its descriptor, then a sample per row (`make` builds each value's metric).
fn family<V: Copy, M: EncodeMetric>(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    ty: MetricType,
    rows: &[(Labels, V)],
    make: fn(V) -> M,
) -> fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, ty)?;
    for (labels, v) in rows {
        if labels.is_empty() {
            return make(*v).encode(m);
        }
        make(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

fn counter(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: &[(Labels, u64)],
) -> fmt::Result {
    family(e, name, help, MetricType::Counter, rows, ConstCounter::new)
}

fn counter_f(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: &[(Labels, f64)],
) -> fmt::Result {
    family(e, name, help, MetricType::Counter, rows, ConstCounter::new)
}

fn gauge(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: &[(Labels, i64)],
) -> fmt::Result {
    family(e, name, help, MetricType::Gauge, rows, ConstGauge::new)
}

fn gauge_f(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: &[(Labels, f64)],
) -> fmt::Result {
    family(e, name, help, MetricType::Gauge, rows, ConstGauge::new)
}

/// One histogram, summed over the reactors' published bucket counts.
fn histogram(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    bounds: &[f64],
    hists: &[Hist],
) -> fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Histogram)?;
    let mut buckets: Vec<(f64, u64)> = bounds.iter().map(|&b| (b, 0)).collect();
    buckets.push((f64::MAX, 0));
    let (mut sum, mut count) = (0u64, 0u64);
    for h in hists {
        for (slot, n) in buckets.iter_mut().zip(h.counts.iter()) {
            slot.1 += n;
        }
        sum += h.sum_nanos;
        count += h.count;
    }
    m.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
        sum as f64 * 1e-9,
        count,
        &buckets,
        None,
    )
}

fn l(k: &'static str, v: impl Into<String>) -> Labels {
    vec![(k, v.into())]
}

/// The broker's own metrics (`stompbox_*`).
#[derive(Debug)]
struct BrokerCollector(Arc<Stats>);

impl Collector for BrokerCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> fmt::Result {
        let stats = &self.0;
        let snaps: Vec<Counters> = stats.reactors.iter().map(|r| r.snapshot()).collect();
        let sum = |f: fn(&Counters) -> u64| snaps.iter().map(f).sum::<u64>();
        let e = &mut e;
        let info = crate::VERSION;
        let mut m = e.encode_descriptor(
            "build",
            "The version and git revision of this binary.",
            None,
            MetricType::Info,
        )?;
        let (version, revision) = info.split_once(' ').unwrap_or((info, ""));
        m.encode_info(&vec![
            ("version", version.to_string()),
            (
                "revision",
                revision.trim_matches(|c| c == '(' || c == ')').to_string(),
            ),
        ])?;
        let by_transport = |ws: u64, tcp: u64, sockjs: u64| {
            vec![
                (l("transport", "ws"), ws as i64),
                (l("transport", "tcp"), tcp as i64),
                (l("transport", "sockjs"), sockjs as i64),
            ]
        };
        gauge(
            e,
            "connections",
            "Open connections by transport (SockJS: sessions; their HTTP requests count as ws).",
            &by_transport(
                sum(|c| c.conns_ws),
                sum(|c| c.conns_tcp),
                sum(|c| c.conns_sockjs),
            ),
        )?;
        counter(
            e,
            "connections_accepted",
            "Connections accepted by transport (SockJS: sessions opened).",
            &[
                (l("transport", "ws"), sum(|c| c.accepted_ws)),
                (l("transport", "tcp"), sum(|c| c.accepted_tcp)),
                (l("transport", "sockjs"), sum(|c| c.accepted_sockjs)),
            ],
        )?;
        let a = &stats.accept;
        let g = |x: &AtomicU64| x.load(Ordering::Relaxed);
        counter(
            e,
            "connections_refused",
            "Connections refused: over the total or per-IP limit, or out of file descriptors.",
            &[
                (l("reason", "limit"), g(&a.refused_limit)),
                (l("reason", "per_ip"), g(&a.refused_per_ip)),
                (l("reason", "fd_limit"), g(&a.refused_fd_limit)),
                (l("reason", "sockjs_sessions"), sum(|c| c.sjs_refused)),
            ],
        )?;
        gauge(
            e,
            "subscriptions",
            "Active subscriptions.",
            &[(no_labels(), sum(|c| c.subscriptions) as i64)],
        )?;
        gauge(e, "destinations", "Destinations by kind: topics and wildcard patterns with subscribers (summed over reactors), queues (each on its home reactor).", &[
            (l("kind", "topic"), sum(|c| c.destinations.saturating_sub(c.queues)) as i64),
            (l("kind", "queue"), sum(|c| c.queues) as i64),
        ])?;
        counter(
            e,
            "messages_in",
            "Messages published (SEND frames accepted).",
            &[(no_labels(), sum(|c| c.messages_in))],
        )?;
        counter(
            e,
            "messages_out",
            "Messages delivered (MESSAGE frames queued to subscribers).",
            &[(no_labels(), sum(|c| c.messages_out))],
        )?;
        counter(e, "deflate_segments", "permessage-deflate: messages compressed for sending (once per message, reactor and window size, whatever the number of subscribers).", &[(no_labels(), sum(|c| c.deflate_segments))])?;
        counter(
            e,
            "deflate_bytes",
            "permessage-deflate: bytes of the messages compressed for sending, before and after.",
            &[
                (l("stage", "before"), sum(|c| c.deflate_bytes_in)),
                (l("stage", "after"), sum(|c| c.deflate_bytes_out)),
            ],
        )?;
        counter(
            e,
            "inflated",
            "permessage-deflate: compressed messages received and inflated.",
            &[(no_labels(), sum(|c| c.inflated))],
        )?;
        counter(
            e,
            "bytes_in",
            "Bytes read from clients.",
            &[(no_labels(), sum(|c| c.bytes_in))],
        )?;
        counter(
            e,
            "bytes_out",
            "Bytes written to clients.",
            &[(no_labels(), sum(|c| c.bytes_out))],
        )?;
        counter(
            e,
            "slow_consumer_drops",
            "Topic messages dropped for subscribers over their outbound limit (policy drop).",
            &[(no_labels(), sum(|c| c.slow_drops))],
        )?;
        counter(
            e,
            "slow_consumer_closes",
            "Subscribers closed for being over their outbound limit (policy close).",
            &[(no_labels(), sum(|c| c.slow_closes))],
        )?;
        counter(e, "queue_rejected", "Messages refused by a full queue (overflow reject): SENDs answered with an ERROR, and messages published through the embedding API, which are lost.", &[(no_labels(), sum(|c| c.queue_rejected))])?;
        let mem = &stats.memory;
        gauge(
            e,
            "memory_bytes",
            "Memory in use as the high-water mark sees it (heap, or resident set when embedded).",
            &[(no_labels(), mem.used.load(Ordering::Relaxed) as i64)],
        )?;
        gauge(
            e,
            "memory_high_watermark_bytes",
            "Above this, connections that publish are not read from (0: no mark).",
            &[(no_labels(), mem.high_watermark as i64)],
        )?;
        gauge(
            e,
            "memory_alarm",
            "1 while memory is above the high-water mark.",
            &[(no_labels(), i64::from(mem.alarm()))],
        )?;
        counter(
            e,
            "memory_alarms",
            "Times memory went above the high-water mark.",
            &[(no_labels(), mem.alarms.load(Ordering::Relaxed))],
        )?;
        counter(e, "memory_blocked", "Times a connection's input was stopped by the memory alarm (at a SEND, or in a large partial frame).", &[(no_labels(), sum(|c| c.memory_blocked))])?;
        counter(
            e,
            "queue_dropped",
            "Oldest messages dropped from full queues to make room (overflow drop-oldest).",
            &[(no_labels(), sum(|c| c.queue_dropped))],
        )?;
        counter(
            e,
            "app_busy",
            "Application SENDs refused because the handler pool was full.",
            &[(no_labels(), sum(|c| c.app_busy))],
        )?;
        gauge(e, "queue_messages", "Messages in the queues homed on this node, by state (with the JetStream store: those this node has taken from JetStream).", &[
            (l("state", "ready"), sum(|c| c.queue_ready) as i64),
            (l("state", "unacked"), sum(|c| c.queue_unacked) as i64),
        ])?;
        gauge(
            e,
            "queue_consumers",
            "Consumers of the queues homed on this node.",
            &[(no_labels(), sum(|c| c.queue_consumers) as i64)],
        )?;
        // By queue: the deepest `queues.metrics_labels` of them (label cardinality bounded).
        let mut queues: Vec<super::metrics::QueueGauge> = stats
            .reactors
            .iter()
            .flat_map(|r| {
                r.queue_list
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone()
            })
            .collect();
        queues.sort_unstable_by(|a, b| b.ready.cmp(&a.ready).then_with(|| a.name.cmp(&b.name)));
        queues.truncate(stats.queue_labels);
        let by_queue = |f: fn(&super::metrics::QueueGauge) -> u64| -> Vec<(Labels, i64)> {
            queues
                .iter()
                .map(|q| (l("queue", q.name.to_string()), f(q) as i64))
                .collect()
        };
        if !queues.is_empty() {
            gauge(
                e,
                "queue_depth",
                "Messages waiting in a queue (the deepest queues.metrics_labels queues).",
                &by_queue(|q| q.ready),
            )?;
            gauge(
                e,
                "queue_unacked",
                "Messages delivered from a queue and not yet acknowledged.",
                &by_queue(|q| q.unacked),
            )?;
            gauge(
                e,
                "queue_consumer_count",
                "Consumers of a queue.",
                &by_queue(|q| q.consumers),
            )?;
        }
        counter(
            e,
            "errors",
            "Connections failed, by kind.",
            &[
                (l("kind", "stomp"), sum(|c| c.errors_stomp)),
                (l("kind", "websocket"), sum(|c| c.errors_ws)),
                (l("kind", "handshake"), sum(|c| c.errors_handshake)),
                (l("kind", "heartbeat"), sum(|c| c.heartbeat_timeouts)),
            ],
        )?;
        let causes: Vec<(Labels, u64)> = crate::session::Cause::ALL
            .iter()
            .map(|&c| {
                (
                    l("cause", c.label()),
                    snaps.iter().map(|s| s.stomp_errors(c)).sum::<u64>(),
                )
            })
            .collect();
        counter(e, "stomp_errors", "Sessions ended with a STOMP ERROR, by cause: protocol (a frame the protocol does not allow), limit (a configured bound), access (login, ACL, revoked), refused (no room: a full queue, busy pools), app (a handler failed).", &causes)?;
        if let Some(c) = &stats.cluster {
            gauge(
                e,
                "cluster_up",
                "Whether the node's NATS connection is up.",
                &[(no_labels(), i64::from(c.up.load(Ordering::Relaxed)))],
            )?;
            counter(
                e,
                "cluster_reconnects",
                "Times the node connected to NATS again after losing it.",
                &[(no_labels(), c.reconnects())],
            )?;
            counter(
                e,
                "cluster_published",
                "Topic messages published to NATS.",
                &[(no_labels(), g(&c.published))],
            )?;
            counter(
                e,
                "cluster_received",
                "Messages received from NATS (other nodes' publishes).",
                &[(no_labels(), g(&c.received))],
            )?;
            let reasons: Vec<(Labels, u64)> = super::bridge::Dropped::ALL
                .iter()
                .map(|&d| (l("reason", d.label()), c.dropped(d)))
                .collect();
            counter(
                e,
                "cluster_dropped",
                "Topic messages that did not cross between nodes, by reason.",
                &reasons,
            )?;
            gauge(e, "queue_store_messages", "Messages in the JetStream queue stream (every queue, every node; asked each second).", &[(no_labels(), g(&c.queue_depth) as i64)])?;
            counter(
                e,
                "queue_store_stored",
                "Queue messages JetStream acknowledged storing.",
                &[(no_labels(), g(&c.queue_stored))],
            )?;
            counter(
                e,
                "queue_store_failed",
                "Queue SENDs that were not stored (refused, timed out, or the store busy).",
                &[(no_labels(), g(&c.queue_failed))],
            )?;
            counter(
                e,
                "queue_store_pulled",
                "Queue messages this node took from JetStream for its consumers.",
                &[(no_labels(), g(&c.queue_pulled))],
            )?;
            gauge(
                e,
                "cluster_subscriptions",
                "NATS subscriptions the node holds (one per subject its subscribers need).",
                &[(no_labels(), c.subscriptions.load(Ordering::Relaxed) as i64)],
            )?;
        }
        let per = |f: fn(&Counters) -> u64| -> Vec<(Labels, u64)> {
            snaps
                .iter()
                .enumerate()
                .map(|(i, c)| (l("reactor", i.to_string()), f(c)))
                .collect()
        };
        let as_i64 = |v: Vec<(Labels, u64)>| -> Vec<(Labels, i64)> {
            v.into_iter().map(|(k, x)| (k, x as i64)).collect()
        };
        let secs = |v: Vec<(Labels, u64)>| -> Vec<(Labels, f64)> {
            v.into_iter().map(|(k, x)| (k, x as f64 * 1e-9)).collect()
        };
        gauge(
            e,
            "reactor_connections",
            "Open connections per reactor (SockJS sessions included).",
            &as_i64(per(|c| c.conns_ws + c.conns_tcp + c.conns_sockjs)),
        )?;
        counter(
            e,
            "reactor_loop_turns",
            "Event-loop turns per reactor.",
            &per(|c| c.loop_turns),
        )?;
        counter_f(
            e,
            "reactor_loop_busy_seconds",
            "Time spent working (not waiting in poll) per reactor.",
            &secs(per(|c| c.loop_nanos)),
        )?;
        gauge_f(
            e,
            "reactor_loop_turn_max_seconds",
            "Longest loop turn per reactor since start.",
            &secs(per(|c| c.loop_max_nanos)),
        )?;
        let turns: Vec<Hist> = snaps.iter().map(|c| c.turn_hist.clone()).collect();
        histogram(
            e,
            "reactor_loop_turn_seconds",
            "Time each event-loop turn spent working, every reactor.",
            &TURN_BUCKETS,
            &turns,
        )?;
        let ds: Vec<Hist> = snaps.iter().map(|c| c.delivery_hist.clone()).collect();
        histogram(e, "delivery_seconds", "Topic messages inside the broker: from the loop turn that received one (a SEND read, or a message from NATS) to the end of the loop turn that wrote it to its subscribers' sockets, once per message and reactor that delivered it.", &DELIVERY_BUCKETS, &ds)?;
        let hs: Vec<Hist> = snaps.iter().map(|c| c.handshake_hist.clone()).collect();
        histogram(
            e,
            "handshake_seconds",
            "WebSocket opening handshakes: from the connection's arrival to the 101 answer.",
            &HANDSHAKE_BUCKETS,
            &hs,
        )?;
        Ok(())
    }
}

/// The standard process metrics (`process_*`), read from `/proc/self`.
#[derive(Debug)]
struct ProcessCollector;

/// What `/proc/self` says, or nothing (another system).
struct Proc {
    cpu_seconds: f64,
    resident_bytes: i64,
    virtual_bytes: i64,
    threads: i64,
    start_seconds: f64,
    open_fds: i64,
    max_fds: i64,
}

fn proc_self() -> Option<Proc> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command (which may hold spaces) in parentheses: state is field 3.
    let rest = stat.rsplit_once(") ")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| -> Option<u64> { f.get(i - 3)?.parse().ok() };
    // USER_HZ is 100 on Linux (what the kernel exports in /proc whatever CONFIG_HZ is).
    let ticks = 100.0;
    let boot: f64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    let max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()?
        .lines()
        .find(|l| l.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()?;
    Some(Proc {
        cpu_seconds: (num(14)? + num(15)?) as f64 / ticks,
        threads: num(20)? as i64,
        start_seconds: boot + num(22)? as f64 / ticks,
        virtual_bytes: num(23)? as i64,
        resident_bytes: num(24)? as i64 * 4096,
        open_fds: std::fs::read_dir("/proc/self/fd").ok()?.count() as i64,
        max_fds,
    })
}

impl Collector for ProcessCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> fmt::Result {
        let Some(p) = proc_self() else {
            return Ok(());
        };
        let e = &mut e;
        counter_f(
            e,
            "cpu_seconds",
            "User and system CPU time spent, in seconds.",
            &[(no_labels(), p.cpu_seconds)],
        )?;
        gauge(
            e,
            "resident_memory_bytes",
            "Resident memory size in bytes.",
            &[(no_labels(), p.resident_bytes)],
        )?;
        gauge(
            e,
            "virtual_memory_bytes",
            "Virtual memory size in bytes.",
            &[(no_labels(), p.virtual_bytes)],
        )?;
        gauge(
            e,
            "open_fds",
            "Open file descriptors.",
            &[(no_labels(), p.open_fds)],
        )?;
        gauge(
            e,
            "max_fds",
            "The open-file limit (soft) the process runs with.",
            &[(no_labels(), p.max_fds)],
        )?;
        gauge(e, "threads", "OS threads.", &[(no_labels(), p.threads)])?;
        gauge_f(
            e,
            "start_time_seconds",
            "Start time of the process since the Unix epoch, in seconds.",
            &[(no_labels(), p.start_seconds)],
        )?;
        Ok(())
    }
}

/// The OpenMetrics text of everything: `stompbox_*` and `process_*`, ending in `# EOF`.
pub fn render(stats: &Arc<Stats>) -> String {
    let mut registry = Registry::default();
    registry
        .sub_registry_with_prefix("stompbox")
        .register_collector(Box::new(BrokerCollector(Arc::clone(stats))));
    registry
        .sub_registry_with_prefix("process")
        .register_collector(Box::new(ProcessCollector));
    let mut out = String::with_capacity(16 * 1024);
    if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
        out.clear();
        out.push_str("# EOF\n");
    }
    out
}
