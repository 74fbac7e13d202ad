//! `sweep`: start stompbox with `--reactors 1..=N`, run one scenario against each, print a
//! table and name the best setting: how to pick a thread count for a deployment.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use clap::Parser;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::cli::{Cli, Cmd, SweepArgs};
use crate::report::{fmt_num, Report};

/// A broker started for one setting.
enum Broker {
    Child(Child),
    InProc(Box<stompbox::ServerHandle>),
}

impl Broker {
    fn stop(self) {
        match self {
            Broker::Child(mut c) => {
                let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
                for _ in 0..100 {
                    if let Ok(Some(_)) = c.try_wait() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                let _ = c.kill();
                let _ = c.wait();
            }
            Broker::InProc(h) => {
                let _ = h.shutdown();
            }
        }
    }
}

fn default_binary() -> Option<PathBuf> {
    let me = std::env::current_exe().ok()?;
    let p = me.with_file_name("stompbox");
    p.exists().then_some(p)
}

fn start(
    bin: &Option<PathBuf>,
    cpus: &Option<String>,
    reactors: usize,
) -> Result<(Broker, SocketAddr, Option<u32>), String> {
    let Some(bin) = bin else {
        let h = stompbox::start(stompbox::Config {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            tcp_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            reactors,
            ..stompbox::Config::default()
        })
        .map_err(|e| format!("cannot start stompbox in process: {e}"))?;
        let addr = h
            .ws_addr()
            .ok_or("in-process stompbox has no WebSocket address")?;
        return Ok((Broker::InProc(Box::new(h)), addr, None));
    };
    let mut cmd = match cpus {
        Some(list) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(list).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--tcp-listen",
        "127.0.0.1:0",
        // Every session comes from 127.0.0.1: no per-address limit.
        "--max-connections-per-ip",
        "0",
        "--reactors",
    ])
    .arg(reactors.to_string())
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    let stderr = child.stderr.take().ok_or("no stderr from stompbox")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("ws://").nth(1) {
                let addr = rest.split('/').next().unwrap_or("").to_string();
                let _ = tx.send(addr);
            }
        }
    });
    let addr = match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(a) => a,
        Err(_) => {
            Broker::Child(child).stop();
            return Err("stompbox did not report its address within 10 s".into());
        }
    };
    let addr: SocketAddr = addr
        .parse()
        .map_err(|_| format!("stompbox printed an address I cannot read: {addr}"))?;
    let pid = child.id();
    Ok((Broker::Child(child), addr, Some(pid)))
}

/// The headline metric of each scenario, and whether higher is better.
pub fn headline(scenario: &str) -> (&'static str, bool) {
    match scenario {
        "connect" => ("connect_rate", true),
        "broadcast" => ("last_p99_ms", false),
        "queue" => ("consumed_per_s", true),
        _ => ("delivered_per_s", true),
    }
}

/// Index of the best value (ties: the fewest reactors, i.e. the first).
pub fn best(values: &[f64], higher_is_better: bool) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, &v) in values.iter().enumerate() {
        if !v.is_finite() {
            continue;
        }
        let better = match best {
            None => true,
            Some((_, b)) if higher_is_better => v > b * 1.02,
            Some((_, b)) => v < b * 0.98,
        };
        if better {
            best = Some((i, v));
        }
    }
    best.map(|b| b.0)
}

pub fn run(a: &SweepArgs) -> Result<Report, String> {
    let max = a
        .max_reactors
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, 64);
    let bin = match a.stompbox.as_deref() {
        Some("inproc") => None,
        Some(p) => Some(PathBuf::from(p)),
        None => default_binary(),
    };
    let mut argv = vec!["loadtest".to_string()];
    if a.scenario.is_empty() {
        argv.extend(["fanout", "-s", "100", "--duration", "3"].map(String::from));
    } else {
        argv.extend(a.scenario.iter().cloned());
    }
    let base = Cli::try_parse_from(&argv).map_err(|e| e.to_string())?;
    let name = match &base.cmd {
        Cmd::Connect(_) => "connect",
        Cmd::Fanout(_) => "fanout",
        Cmd::Broadcast(_) => "broadcast",
        Cmd::Queue(_) => "queue",
        Cmd::Sweep(_) | Cmd::Table(_) => {
            return Err("sweep runs connect, fanout, broadcast or queue".into())
        }
    };
    let (default_key, default_higher) = headline(name);
    let key = a.metric.clone().unwrap_or_else(|| default_key.to_string());
    let higher = if a.metric.is_some() {
        !key.contains("_ms") && !key.contains("latency")
    } else {
        default_higher
    };
    let mut rows = Vec::new();
    let mut values = Vec::new();
    let mut last = None;
    for n in 1..=max {
        let (broker, addr, pid) = start(&bin, &a.broker_cpus, n)?;
        let mut cli = base.clone();
        let common = match &mut cli.cmd {
            Cmd::Connect(x) => &mut x.common,
            Cmd::Fanout(x) => &mut x.common,
            Cmd::Broadcast(x) => &mut x.common,
            Cmd::Queue(x) => &mut x.common,
            Cmd::Sweep(_) | Cmd::Table(_) => unreachable!("checked above"),
        };
        if common.processes > 1 {
            return Err("sweep runs its scenario in one process (no --processes)".into());
        }
        common.url = vec![format!("ws://{addr}/ws")];
        common.publisher_url = None;
        common.server_pid = pid.into_iter().collect();
        common.json = None;
        common.report = None;
        eprintln!("sweep: --reactors {n} ({})", common.url.join(","));
        let res = crate::run_scenario(&cli);
        broker.stop();
        let r = res?;
        let v = r.get(&key).unwrap_or(f64::NAN);
        values.push(v);
        let p99 = r
            .latencies
            .first()
            .map_or(f64::NAN, |l| l.summary.p99_us / 1e3);
        rows.push(vec![
            n.to_string(),
            fmt_num(v),
            format!("{p99:.3}"),
            format!("{:.0}", r.get("tool_cpu_pct").unwrap_or(f64::NAN)),
            r.get("broker_cpu_pct")
                .map_or("-".into(), |b| format!("{b:.0}")),
            r.warnings.len().to_string(),
        ]);
        last = Some(r);
    }
    let mut r = Report::new("sweep", &format!("stompbox --reactors 1..={max}"));
    r.param("scenario", argv[1..].join(" "));
    r.param("metric", &key);
    r.param(
        "broker",
        bin.as_ref()
            .map_or("in process".into(), |b| b.display().to_string()),
    );
    if let Some(c) = &a.broker_cpus {
        r.param("broker_cpus", c);
    }
    r.table = Some((
        vec![
            "reactors".into(),
            key.clone(),
            "p99 ms".into(),
            "tool cpu %".into(),
            "broker cpu %".into(),
            "warnings".into(),
        ],
        rows,
    ));
    if let Some(b) = best(&values, higher) {
        r.metric("best_reactors", "best --reactors", (b + 1) as f64, "");
        r.metric("best_value", &format!("best {key}"), values[b], "");
        for (i, v) in values.iter().enumerate() {
            r.metric(
                &format!("reactors_{}", i + 1),
                &format!("{key} at --reactors {}", i + 1),
                *v,
                "",
            );
        }
    }
    if bin.is_none() {
        r.warnings.push(
            "the broker ran inside the load tool's process: they share its CPU, so use the \
             stompbox binary (--stompbox PATH) for figures to deploy by"
                .into(),
        );
    }
    if let Some(l) = last {
        r.warnings
            .extend(l.warnings.into_iter().filter(|w| w.contains("saturated")));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_setting_needs_a_clear_win() {
        assert_eq!(best(&[100.0, 150.0, 151.0], true), Some(1));
        assert_eq!(
            best(&[100.0, 101.0], true),
            Some(0),
            "within 2%: fewer reactors"
        );
        assert_eq!(best(&[5.0, 2.0, 3.0], false), Some(1));
        assert_eq!(best(&[f64::NAN, 1.0], true), Some(1));
        assert_eq!(best(&[], true), None);
        assert_eq!(headline("broadcast"), ("last_p99_ms", false));
    }
}
