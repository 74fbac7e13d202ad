//! `--processes N`: one run split over N load-generator processes (each has its own open-file
//! limit), merged into one result as if one process had run it.
//!
//! The parent re-executes itself N times with `--child K/N/EPOCH`; child K runs sessions
//! K, K+N, ... of the plan (so the round-robin over URLs stays global). They talk over the
//! child's stdin and stdout, one line each:
//!
//! ```text
//! child:  setup READY FAILED      (while setting up, a few times a second)
//! child:  ready FAN0,FAN1,...     (every session set up; its subscribers per destination)
//! parent: go START_NS FAN0,...    (all are ready: start at START_NS, the fan-out in all)
//! child:  run READY DROPPED PUBLISHED DELIVERED (while running: the parent's status line)
//! child:  drain EXPECTED DELIVERED (publishing over, waiting for deliveries)
//! parent: close                   (every process has what it is owed, or the drain is over)
//! child:  result {JSON}           (its raw results: counters, histograms, broadcasts)
//! child:  error MESSAGE           (instead, when it fails)
//! ```
//!
//! Every process keeps time from the same epoch (the parent's CLOCK_MONOTONIC reading), so
//! latencies between a publisher in one process and a subscriber in another are right, and
//! every process measures the same window.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use nix::time::{clock_gettime, ClockId};
use serde_json::{json, Value};

use crate::engine::{self, Mode, NodeOut, NodeSnap, Outcome, Plan, Snap, ThreadOut};
use crate::progress::Progress;
use crate::stats::Latency;
use crate::sys;

/// CLOCK_MONOTONIC now, ns (the clock `Instant` reads, shared by every process).
pub fn mono_ns() -> Result<u64, String> {
    let t = clock_gettime(ClockId::CLOCK_MONOTONIC).map_err(|e| format!("clock_gettime: {e}"))?;
    Ok(t.tv_sec().max(0) as u64 * 1_000_000_000 + t.tv_nsec().max(0) as u64)
}

/// `K/N/EPOCH_NS` of `--child`.
pub fn parse_child(arg: &str) -> Result<(usize, usize, u64), String> {
    let mut it = arg.split('/');
    let bad = || format!("--child {arg}: expected K/N/EPOCH_NS");
    let k: usize = it.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    let n: usize = it.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    let e: u64 = it.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    if it.next().is_some() || n == 0 || k >= n {
        return Err(bad());
    }
    Ok((k, n, e))
}

/// The parent's go: when to start (ns since the shared epoch) and every process's
/// subscribers per destination, summed.
#[derive(Debug, Clone, PartialEq)]
pub struct Go {
    pub start_ns: u64,
    pub fan: Vec<u64>,
}

fn parse_list(s: &str) -> Option<Vec<u64>> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(|x| x.parse().ok())
        .collect()
}

fn list(v: &[u64]) -> String {
    v.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

/// A child's side of the conversation.
pub struct ChildLink {
    pub k: usize,
    pub n: usize,
    pub epoch: Instant,
    rx: Receiver<Option<String>>,
    last_note: Option<Instant>,
    close: bool,
    gone: bool,
}

impl ChildLink {
    /// From `--child K/N/EPOCH_NS`: the shared epoch, and a thread reading the parent's lines.
    pub fn start(arg: &str) -> Result<ChildLink, String> {
        let (k, n, epoch_mono) = parse_child(arg)?;
        let age = mono_ns()?.saturating_sub(epoch_mono);
        let now = Instant::now();
        let epoch = now.checked_sub(Duration::from_nanos(age)).unwrap_or(now);
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("loadtest-parent".into())
            .spawn(move || {
                let stdin = std::io::stdin();
                for line in stdin.lock().lines() {
                    let Ok(l) = line else { break };
                    if tx.send(Some(l)).is_err() {
                        return;
                    }
                }
                let _ = tx.send(None);
            })
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        Ok(ChildLink {
            k,
            n,
            epoch,
            rx,
            last_note: None,
            close: false,
            gone: false,
        })
    }

    fn send(line: &str) {
        let mut o = std::io::stdout().lock();
        let _ = writeln!(o, "{line}");
        let _ = o.flush();
    }

    /// Tell the parent something (at most ten times a second unless `force`).
    pub fn note(&mut self, line: &str, force: bool) {
        if force
            || self
                .last_note
                .is_none_or(|t| t.elapsed() >= Duration::from_millis(100))
        {
            Self::send(line);
            self.last_note = Some(Instant::now());
        }
    }

    fn handle(&mut self, m: Option<String>) -> Option<Go> {
        let Some(l) = m else {
            self.gone = true;
            return None;
        };
        let mut w = l.split_whitespace();
        match w.next() {
            Some("close") => self.close = true,
            Some("abort") => self.gone = true,
            Some("go") => {
                let start_ns = w.next().and_then(|v| v.parse().ok())?;
                let fan = parse_list(w.next().unwrap_or(""))?;
                return Some(Go { start_ns, fan });
            }
            _ => {}
        }
        None
    }

    fn pump(&mut self) {
        loop {
            match self.rx.try_recv() {
                Ok(m) => {
                    let _ = self.handle(m);
                }
                Err(mpsc::TryRecvError::Empty) => return,
                Err(mpsc::TryRecvError::Disconnected) => {
                    self.gone = true;
                    return;
                }
            }
        }
    }

    /// Every session is set up: say so, and wait (at most `wait`) for the go.
    pub fn ready(&mut self, fan: &[u64], wait: Duration) -> Result<Go, String> {
        self.note(&format!("ready {}", list(fan)), true);
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "no go from the parent in {:.0} s",
                    wait.as_secs_f64()
                ));
            }
            match self.rx.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(m) => {
                    if let Some(go) = self.handle(m) {
                        return Ok(go);
                    }
                    if self.gone {
                        return Err("the parent process went away".into());
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Err("the parent process went away".into())
                }
            }
        }
    }

    /// The parent said close (every process drained, or the drain time is over).
    pub fn closed(&mut self) -> bool {
        self.pump();
        self.close
    }

    /// The parent is gone or asked for an abort.
    pub fn gone(&mut self) -> bool {
        self.pump();
        self.gone
    }

    /// Hand the raw results to the parent.
    pub fn result(&mut self, o: &Outcome) {
        let v = to_json(o);
        Self::send(&format!("result {v}"));
    }
}

/// This child's share of a plan: sessions K, K+N, ... (publisher ids and targets stay global).
pub fn share(plan: &mut Plan, k: usize, n: usize) {
    let specs = std::mem::take(&mut plan.specs);
    plan.specs = specs
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % n == k)
        .map(|(_, s)| s)
        .collect();
    plan.concurrency = plan.concurrency.div_ceil(n).max(1);
    plan.server_pids.clear();
    plan.progress = false;
}

// ---- Raw results as JSON -------------------------------------------------------------------

fn snap_json(s: &Snap) -> Value {
    json!([
        s.ready,
        s.failed,
        s.dropped,
        s.closed_clean,
        s.published,
        s.expected,
        s.delivered,
        s.acked,
        s.redelivered,
        s.nacked,
        s.own_expected,
        s.own_delivered
    ])
}

fn u(v: &Value, i: usize) -> u64 {
    v.get(i).and_then(Value::as_u64).unwrap_or(0)
}

fn snap_from(v: Option<&Value>) -> Snap {
    let Some(v) = v else {
        return Snap::default();
    };
    Snap {
        ready: u(v, 0),
        failed: u(v, 1),
        dropped: u(v, 2),
        closed_clean: u(v, 3),
        published: u(v, 4),
        expected: u(v, 5),
        delivered: u(v, 6),
        acked: u(v, 7),
        redelivered: u(v, 8),
        nacked: u(v, 9),
        own_expected: u(v, 10),
        own_delivered: u(v, 11),
    }
}

fn nodes_json(n: &[NodeSnap]) -> Value {
    n.iter()
        .map(|s| json!([s.ready, s.dropped, s.delivered, s.subs]))
        .collect()
}

fn nodes_from(v: Option<&Value>) -> Vec<NodeSnap> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|x| NodeSnap {
                    ready: u(x, 0),
                    dropped: u(x, 1),
                    delivered: u(x, 2),
                    subs: u(x, 3),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn hist_json(l: &Latency) -> Value {
    l.buckets().iter().map(|(v, n)| json!([v, n])).collect()
}

fn hist_from(v: Option<&Value>) -> Latency {
    let pairs: Vec<(u64, u64)> = v
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|x| (u(x, 0), u(x, 1))).collect())
        .unwrap_or_default();
    Latency::from_buckets(&pairs)
}

fn bcast_json(b: &HashMap<u64, (u32, u64)>) -> Value {
    b.iter().map(|(s, (n, l))| json!([s, n, l])).collect()
}

fn bcast_from(v: Option<&Value>) -> HashMap<u64, (u32, u64)> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|x| (u(x, 0), (u(x, 1).min(u32::MAX as u64) as u32, u(x, 2))))
                .collect()
        })
        .unwrap_or_default()
}

/// A child's raw results (not the queue's message ids: `queue` runs in one process).
pub fn to_json(o: &Outcome) -> Value {
    let t = &o.threads;
    json!({
        "total": o.total,
        "setup_s": o.setup_s,
        "measured_s": o.measured_s,
        "at_start": snap_json(&o.at_start),
        "at_end": snap_json(&o.at_end),
        "last": snap_json(&o.last),
        "nodes_start": nodes_json(&o.nodes_start),
        "nodes_end": nodes_json(&o.nodes_end),
        "nodes_last": nodes_json(&o.nodes_last),
        "ready_subs": o.ready_subs,
        "series": o.series.iter().map(|(p, d, s)| json!([p, d, s])).collect::<Vec<_>>(),
        "broker_series": o.broker_series.iter().map(|(c, r)| json!([c, r])).collect::<Vec<_>>(),
        "cpu_pct": o.cpu_pct,
        "max_thread_pct": o.max_thread_pct,
        "warnings": o.warnings,
        "e2e": hist_json(&t.e2e),
        "setup": hist_json(&t.setup),
        "upgrade": hist_json(&t.upgrade),
        "failures": t.failures,
        "bcast": bcast_json(&t.bcast),
        "cpu_us": t.cpu.as_micros() as u64,
        "pacer_resets": t.pacer_resets,
        "nodes": t.nodes.iter().map(|n| json!({"e2e": hist_json(&n.e2e),
            "bcast": bcast_json(&n.bcast)})).collect::<Vec<_>>(),
    })
}

/// Read what [`to_json`] wrote (missing parts are empty; nothing here panics).
pub fn from_json(s: &str) -> Result<Outcome, String> {
    let v: Value = serde_json::from_str(s).map_err(|e| format!("unreadable result: {e}"))?;
    if !v.is_object() {
        return Err("unreadable result: not an object".into());
    }
    let f = |k: &str| v.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    let mut failures = crate::stats::Failures::new();
    if let Some(m) = v.get("failures").and_then(Value::as_object) {
        for (k, x) in m {
            failures.insert(k.clone(), x.as_u64().unwrap_or(0));
        }
    }
    let threads = ThreadOut {
        e2e: hist_from(v.get("e2e")),
        setup: hist_from(v.get("setup")),
        upgrade: hist_from(v.get("upgrade")),
        failures,
        bcast: bcast_from(v.get("bcast")),
        ids: Vec::new(),
        cpu: Duration::from_micros(v.get("cpu_us").and_then(Value::as_u64).unwrap_or(0)),
        pacer_resets: v.get("pacer_resets").and_then(Value::as_u64).unwrap_or(0),
        nodes: v
            .get("nodes")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|n| NodeOut {
                        e2e: hist_from(n.get("e2e")),
                        bcast: bcast_from(n.get("bcast")),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    };
    Ok(Outcome {
        total: v.get("total").and_then(Value::as_u64).unwrap_or(0) as usize,
        setup_s: f("setup_s"),
        measured_s: f("measured_s"),
        at_start: snap_from(v.get("at_start")),
        at_end: snap_from(v.get("at_end")),
        last: snap_from(v.get("last")),
        nodes_start: nodes_from(v.get("nodes_start")),
        nodes_end: nodes_from(v.get("nodes_end")),
        nodes_last: nodes_from(v.get("nodes_last")),
        drained: true,
        threads,
        ready_subs: v.get("ready_subs").and_then(Value::as_u64).unwrap_or(0),
        broker_series: v
            .get("broker_series")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|x| {
                        let g = |i: usize| x.get(i).and_then(Value::as_f64).unwrap_or(f64::NAN);
                        (g(0), g(1))
                    })
                    .collect()
            })
            .unwrap_or_default(),
        series: v
            .get("series")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|x| {
                        let g = |i: usize| x.get(i).and_then(Value::as_f64).unwrap_or(0.0);
                        (g(0), g(1), u(x, 2))
                    })
                    .collect()
            })
            .unwrap_or_default(),
        cpu_pct: f("cpu_pct"),
        max_thread_pct: f("max_thread_pct"),
        warnings: v
            .get("warnings")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default(),
        ..Outcome::default()
    })
}

fn add_snap(a: &mut Snap, b: &Snap) {
    a.ready += b.ready;
    a.failed += b.failed;
    a.dropped += b.dropped;
    a.closed_clean += b.closed_clean;
    a.published += b.published;
    a.expected += b.expected;
    a.delivered += b.delivered;
    a.acked += b.acked;
    a.redelivered += b.redelivered;
    a.nacked += b.nacked;
    a.own_expected += b.own_expected;
    a.own_delivered += b.own_delivered;
}

fn add_nodes(a: &mut Vec<NodeSnap>, b: &[NodeSnap]) {
    if a.len() < b.len() {
        a.resize(b.len(), NodeSnap::default());
    }
    for (x, y) in a.iter_mut().zip(b) {
        x.ready += y.ready;
        x.dropped += y.dropped;
        x.delivered += y.delivered;
        x.subs += y.subs;
    }
}

/// One outcome from several processes' outcomes, as if one process had run: counts add,
/// histograms merge, a broadcast's receivers add and its slowest receiver is the slowest of
/// all; times that every process shares (setup, the window) are the longest of them.
pub fn merge(outs: Vec<Outcome>) -> Outcome {
    let mut m = Outcome {
        drained: true,
        ..Outcome::default()
    };
    let series_len = outs.iter().map(|o| o.series.len()).min().unwrap_or(0);
    m.series = vec![(0.0, 0.0, 0); series_len];
    for o in outs {
        m.total += o.total;
        m.setup_s = m.setup_s.max(o.setup_s);
        m.measured_s = m.measured_s.max(o.measured_s);
        add_snap(&mut m.at_start, &o.at_start);
        add_snap(&mut m.at_end, &o.at_end);
        add_snap(&mut m.last, &o.last);
        add_nodes(&mut m.nodes_start, &o.nodes_start);
        add_nodes(&mut m.nodes_end, &o.nodes_end);
        add_nodes(&mut m.nodes_last, &o.nodes_last);
        m.ready_subs += o.ready_subs;
        // Every process watched the same brokers: one process's view is the brokers'.
        if m.broker_series.is_empty() {
            m.broker_series = o.broker_series.clone();
        }
        for (a, b) in m.series.iter_mut().zip(&o.series) {
            a.0 += b.0;
            a.1 += b.1;
            a.2 += b.2;
        }
        m.cpu_pct += o.cpu_pct;
        m.max_thread_pct = m.max_thread_pct.max(o.max_thread_pct);
        for w in o.warnings {
            if !m.warnings.contains(&w) {
                m.warnings.push(w);
            }
        }
        m.threads.merge(o.threads);
    }
    m.drained = m.last.delivered >= m.last.expected;
    m
}

// ---- The parent ----------------------------------------------------------------------------

/// The children, killed and reaped on every way out that has not finished them.
struct Kids {
    procs: Vec<Child>,
    stdins: Vec<Option<ChildStdin>>,
}

impl Kids {
    fn tell(&mut self, line: &str) -> Result<(), String> {
        for (k, s) in self.stdins.iter_mut().enumerate() {
            if let Some(s) = s {
                writeln!(s, "{line}")
                    .and_then(|_| s.flush())
                    .map_err(|e| format!("process {k} of the run: cannot write to it: {e}"))?;
            }
        }
        Ok(())
    }

    fn status(&mut self, k: usize) -> String {
        match self.procs.get_mut(k).map(|c| c.try_wait()) {
            Some(Ok(Some(st))) => st.to_string(),
            _ => "still running".into(),
        }
    }

    /// Wait up to `t` for every child to exit; kill those that do not.
    fn reap(&mut self, t: Duration) {
        self.stdins.clear();
        let end = Instant::now() + t;
        while Instant::now() < end
            && self
                .procs
                .iter_mut()
                .any(|c| matches!(c.try_wait(), Ok(None)))
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        for c in &mut self.procs {
            if matches!(c.try_wait(), Ok(None)) {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
        self.procs.clear();
    }
}

impl Drop for Kids {
    fn drop(&mut self) {
        for c in &mut self.procs {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[derive(Default, Clone)]
struct Kid {
    setup: (u64, u64),
    /// The last `run` line: ready, dropped, published, delivered.
    run: [u64; 4],
    fan: Option<Vec<u64>>,
    drain: Option<(u64, u64)>,
    result: Option<String>,
    eof: bool,
}

/// Split `plan` over `n` child processes (this binary again, with the same arguments and
/// `--child`), start them together, and merge their results.
pub fn run_parent(plan: &Plan, n: usize) -> Result<Outcome, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let epoch = Instant::now();
    let epoch_mono = mono_ns()?;
    let pids = plan.server_pids.clone();
    let cpu_all =
        || -> Vec<Option<Duration>> { pids.iter().map(|&p| sys::process_cpu_of(p)).collect() };
    let rss_all = || -> Vec<Option<u64>> { pids.iter().map(|&p| sys::rss_bytes(p)).collect() };
    let rss_before = rss_all();
    let t0 = Instant::now();
    let cpu0 = cpu_all();
    let (tx, rx) = mpsc::channel::<(usize, Option<String>)>();
    let mut kids = Kids {
        procs: Vec::new(),
        stdins: Vec::new(),
    };
    for k in 0..n {
        let mut child = Command::new(&exe)
            .args(&args)
            .arg("--child")
            .arg(format!("{k}/{n}/{epoch_mono}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start process {k} of the run: {e}"))?;
        kids.stdins.push(child.stdin.take());
        let out = child.stdout.take();
        kids.procs.push(child);
        let tx = tx.clone();
        std::thread::Builder::new()
            .name(format!("loadtest-child-{k}"))
            .spawn(move || {
                if let Some(out) = out {
                    for line in BufReader::new(out).lines() {
                        let Ok(l) = line else { break };
                        if tx.send((k, Some(l))).is_err() {
                            return;
                        }
                    }
                }
                let _ = tx.send((k, None));
            })
            .map_err(|e| format!("cannot start a thread: {e}"))?;
    }
    drop(tx);
    let total = plan.specs.len();
    let mut prog = Progress::new(plan.mode.name(), plan.progress, total);
    let mut st = vec![Kid::default(); n];

    // One line from a child; an error or an early exit ends the run.
    let take = |kids: &mut Kids, st: &mut [Kid], k: usize, m: Option<String>| {
        let Some(kid) = st.get_mut(k) else {
            return Ok(());
        };
        let Some(line) = m else {
            kid.eof = true;
            if kid.result.is_none() {
                std::thread::sleep(Duration::from_millis(100));
                return Err(format!(
                    "process {k} of the run ended without a result ({})",
                    kids.status(k)
                ));
            }
            return Ok(());
        };
        let (word, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        match word {
            "setup" => {
                let v: Vec<u64> = rest
                    .split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect();
                kid.setup = (
                    v.first().copied().unwrap_or(0),
                    v.get(1).copied().unwrap_or(0),
                );
            }
            "ready" => {
                kid.fan = Some(
                    parse_list(rest)
                        .ok_or_else(|| format!("process {k}: unreadable ready line: {line}"))?,
                );
            }
            "run" => {
                for (a, x) in kid.run.iter_mut().zip(rest.split_whitespace()) {
                    *a = x.parse().unwrap_or(*a);
                }
            }
            "drain" => {
                let v: Vec<u64> = rest
                    .split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect();
                kid.drain = Some((
                    v.first().copied().unwrap_or(0),
                    v.get(1).copied().unwrap_or(0),
                ));
            }
            "result" => kid.result = Some(rest.to_string()),
            "error" => return Err(format!("process {k} of the run failed: {rest}")),
            _ => {}
        }
        Ok::<(), String>(())
    };
    let poll = Duration::from_millis(50);

    // Setup: until every child is ready; a child that stops making progress ends the run.
    let stall = Duration::from_secs_f64(plan.setup_timeout.as_secs_f64() + 15.0);
    let mut progress_at = (Instant::now(), 0u64);
    while st.iter().any(|k| k.fan.is_none()) {
        match rx.recv_timeout(poll) {
            Ok((k, m)) => take(&mut kids, &mut st, k, m)?,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                return Err("every process of the run ended".into())
            }
        }
        let (r, f) = st
            .iter()
            .fold((0, 0), |a, k| (a.0 + k.setup.0, a.1 + k.setup.1));
        let done = st.iter().filter(|k| k.fan.is_some()).count() as u64;
        let snap = Snap {
            ready: r,
            failed: f,
            ..Snap::default()
        };
        prog.update("setup", t0.elapsed(), &snap, None);
        if r + f + done != progress_at.1 {
            progress_at = (Instant::now(), r + f + done);
        } else if progress_at.0.elapsed() > stall {
            let slow: Vec<String> = st
                .iter()
                .enumerate()
                .filter(|(_, k)| k.fan.is_none())
                .map(|(i, _)| i.to_string())
                .collect();
            return Err(format!(
                "process(es) {} of the run made no progress setting up for {:.0} s",
                slow.join(", "),
                stall.as_secs_f64()
            ));
        }
    }
    let setup_wall = t0.elapsed().as_secs_f64();
    let cpu1 = cpu_all();
    let settle = Duration::from_millis(500);
    let rss_after = if pids.is_empty() {
        Vec::new()
    } else {
        std::thread::sleep(settle);
        rss_all()
    };
    let mut fan: Vec<u64> = Vec::new();
    for k in &st {
        let f = k.fan.as_deref().unwrap_or(&[]);
        if fan.len() < f.len() {
            fan.resize(f.len(), 0);
        }
        for (a, b) in fan.iter_mut().zip(f) {
            *a += b;
        }
    }
    let start = Instant::now() + Duration::from_millis(100);
    let start_ns = start.duration_since(epoch).as_nanos() as u64;
    kids.tell(&format!("go {start_ns} {}", list(&fan)))?;

    // Run, drain, close: sample the brokers at the window's ends, say close once every
    // process has what it is owed (or the drain time is over), collect the results.
    let connect = plan.mode == Mode::Connect;
    let w0_at = start + plan.warmup;
    let w1_at = w0_at + plan.duration;
    let close_by = w1_at + plan.drain + Duration::from_secs(2);
    let hold = if connect { plan.hold } else { Duration::ZERO };
    let give_up = w1_at + plan.drain + hold + plan.close_timeout + Duration::from_secs(20);
    type Reading = Option<(Instant, Vec<Option<Duration>>)>;
    let (mut w0, mut w1): (Reading, Reading) = (None, None);
    let mut close_sent = connect;
    while st.iter().any(|k| k.result.is_none()) {
        match rx.recv_timeout(poll) {
            Ok((k, m)) => take(&mut kids, &mut st, k, m)?,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                return Err("every process of the run ended".into())
            }
        }
        let now = Instant::now();
        if !connect && w0.is_none() && now >= w0_at {
            w0 = Some((now, cpu_all()));
        }
        if !connect && w1.is_none() && now >= w1_at {
            w1 = Some((now, cpu_all()));
        }
        if !close_sent && st.iter().all(|k| k.drain.is_some()) {
            let (e, d) = st
                .iter()
                .filter_map(|k| k.drain)
                .fold((0, 0), |a, x| (a.0 + x.0, a.1 + x.1));
            if d >= e || now >= close_by {
                kids.tell("close")?;
                close_sent = true;
            }
        } else if !close_sent && now >= close_by {
            kids.tell("close")?;
            close_sent = true;
        }
        let s = st.iter().fold(Snap::default(), |mut a, k| {
            a.ready += k.run[0];
            a.dropped += k.run[1];
            a.published += k.run[2];
            a.delivered += k.run[3];
            a
        });
        let phase = if connect {
            "hold"
        } else if now < w0_at {
            "warm-up"
        } else if now < w1_at {
            "run"
        } else if !close_sent {
            "drain"
        } else {
            "close"
        };
        prog.update(phase, t0.elapsed(), &s, None);
        if now >= give_up {
            let late: Vec<String> = st
                .iter()
                .enumerate()
                .filter(|(_, k)| k.result.is_none())
                .map(|(i, _)| i.to_string())
                .collect();
            return Err(format!(
                "process(es) {} of the run gave no result in time",
                late.join(", ")
            ));
        }
    }
    prog.finish();
    kids.reap(Duration::from_secs(5));
    let mut outs = Vec::new();
    for (k, kid) in st.iter().enumerate() {
        let text = kid.result.as_deref().unwrap_or("");
        outs.push(from_json(text).map_err(|e| format!("process {k} of the run: {e}"))?);
    }
    let mut o = merge(outs);
    if connect {
        o.brokers =
            engine::brokers_out(&pids, (&rss_before, &rss_after), (&cpu0, &cpu1), setup_wall);
    } else if let (Some(a), Some(b)) = (&w0, &w1) {
        let wall = b.0.duration_since(a.0).as_secs_f64();
        o.brokers = engine::brokers_out(&pids, (&rss_before, &rss_after), (&a.1, &b.1), wall);
    }
    o.broker_totals();
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_argument() {
        assert_eq!(parse_child("1/3/12345"), Ok((1, 3, 12345)));
        assert!(parse_child("3/3/1").is_err());
        assert!(parse_child("0/0/1").is_err());
        assert!(parse_child("0/2").is_err());
        assert!(parse_child("0/2/1/4").is_err());
        assert!(parse_child("a/2/1").is_err());
    }

    fn outcome(seed: u64, seqs: &[(u64, u32, u64)]) -> Outcome {
        let mut o = Outcome {
            total: 10,
            setup_s: 1.0 + seed as f64,
            measured_s: 2.0,
            ready_subs: 9,
            series: vec![(10.0, 90.0, 10), (10.0, 90.0, 10)],
            cpu_pct: 20.0,
            max_thread_pct: 15.0 + seed as f64,
            ..Outcome::default()
        };
        o.at_start.ready = 10;
        o.last.delivered = 100 + seed;
        o.last.expected = 100 + seed;
        o.nodes_last = vec![
            NodeSnap {
                ready: 5,
                dropped: 0,
                delivered: 50,
                subs: 5,
            };
            2
        ];
        for i in 1..=1000 {
            o.threads.e2e.record(i * 1000 * (seed + 1));
        }
        for &(s, n, l) in seqs {
            o.threads.bcast.insert(s, (n, l));
        }
        o.threads.failures.insert("x".into(), seed + 1);
        o.threads.nodes = vec![NodeOut::default(), NodeOut::default()];
        o.threads.nodes[1].bcast.insert(0, (4, 7_000 + seed));
        o
    }

    #[test]
    fn results_survive_json_and_merge_as_one_run() {
        let a = outcome(0, &[(0, 5, 1_000), (1, 5, 2_000)]);
        let b = outcome(1, &[(0, 4, 3_000), (1, 4, 500)]);
        let mut all = Latency::new();
        all.merge(&a.threads.e2e);
        all.merge(&b.threads.e2e);
        let back_a = from_json(&to_json(&a).to_string()).unwrap();
        assert_eq!(back_a.threads.e2e.summary(), a.threads.e2e.summary());
        assert_eq!(back_a.last, a.last);
        assert_eq!(back_a.nodes_last, a.nodes_last);
        let back_b = from_json(&to_json(&b).to_string()).unwrap();
        let m = merge(vec![back_a, back_b]);
        assert_eq!(m.total, 20);
        assert_eq!(m.at_start.ready, 20);
        assert_eq!(m.last.delivered, 201);
        assert!(m.drained);
        assert_eq!(m.setup_s, 2.0);
        assert_eq!(m.cpu_pct, 40.0);
        assert_eq!(m.max_thread_pct, 16.0);
        assert_eq!(m.series, vec![(20.0, 180.0, 20), (20.0, 180.0, 20)]);
        assert_eq!(m.nodes_last[1].delivered, 100);
        // Histograms merge (percentiles of the union, not averages of percentiles).
        assert_eq!(m.threads.e2e.summary(), all.summary());
        // A broadcast's last receiver is the slowest over every process.
        assert_eq!(m.threads.bcast.get(&0), Some(&(9, 3_000)));
        assert_eq!(m.threads.bcast.get(&1), Some(&(9, 2_000)));
        assert_eq!(m.threads.nodes[1].bcast.get(&0), Some(&(8, 7_001)));
        assert_eq!(m.threads.failures.get("x"), Some(&3));
        assert!(from_json("[1]").is_err());
        assert!(from_json("{").is_err());
    }
}
