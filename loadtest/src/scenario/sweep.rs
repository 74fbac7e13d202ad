//! `sweep`: start stompbox with `--reactors 1..=N`, run one scenario against each, print a
//! table and name the best setting: how to pick a thread count for a deployment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
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
    // Ports chosen here (free now, released just before the broker binds them); the broker is
    // ready when its WebSocket port answers. Nothing is read from its log, whatever its level.
    let free = || -> Result<u16, String> {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| format!("no free loopback port: {e}"))
    };
    let (ws, tcp) = (free()?, free()?);
    let addr = SocketAddr::from(([127, 0, 0, 1], ws));
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
        &addr.to_string(),
        "--tcp-listen",
        &format!("127.0.0.1:{tcp}"),
    ])
    .args([
        "--metrics-listen",
        "off",
        // Every session comes from 127.0.0.1: no per-address limit.
        "--max-connections-per-ip",
        "0",
        "--reactors",
    ])
    .arg(reactors.to_string())
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "stompbox exited before listening on {addr}: {status}"
            ));
        }
        if std::time::Instant::now() >= deadline {
            Broker::Child(child).stop();
            return Err(format!("stompbox did not listen on {addr} within 10 s"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
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

/// One setting's runs: the headline metric's median and spread (max - min).
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Setting {
    pub fn of(values: &[f64]) -> Setting {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return Setting {
                median: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
            };
        }
        let mid = v.len() / 2;
        let median = if v.len() % 2 == 1 {
            v[mid]
        } else {
            (v[mid - 1] + v[mid]) / 2.0
        };
        Setting {
            median,
            min: v[0],
            max: v[v.len() - 1],
        }
    }

    pub fn spread(&self) -> f64 {
        self.max - self.min
    }
}

/// What the sweep concludes.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// This setting (index) wins by more than the spread of its runs and the others'.
    Best(usize),
    /// These settings (indices, the best median first) are within each other's spread.
    Tie(Vec<usize>),
    /// Nothing measured.
    None,
}

/// The best median, and whether it beats every other setting by more than the larger of the
/// two spreads; otherwise the settings within that margin tie with it.
pub fn verdict(settings: &[Setting], higher_is_better: bool) -> Verdict {
    let better = |a: f64, b: f64| if higher_is_better { a > b } else { a < b };
    let Some(best) = (0..settings.len())
        .filter(|&i| settings[i].median.is_finite())
        .reduce(|a, b| {
            if better(settings[b].median, settings[a].median) {
                b
            } else {
                a
            }
        })
    else {
        return Verdict::None;
    };
    let b = &settings[best];
    let ties: Vec<usize> = (0..settings.len())
        .filter(|&i| i != best && settings[i].median.is_finite())
        .filter(|&i| {
            let o = &settings[i];
            (b.median - o.median).abs() <= b.spread().max(o.spread())
        })
        .collect();
    if ties.is_empty() {
        Verdict::Best(best)
    } else {
        Verdict::Tie(std::iter::once(best).chain(ties).collect())
    }
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
    let repeats = a.repeats.max(1);
    let mut rows = Vec::new();
    let mut settings = Vec::new();
    let mut p99s = Vec::new();
    let mut warnings = Vec::new();
    for n in 1..=max {
        let mut values = Vec::new();
        let mut p99 = Vec::new();
        let (mut tool, mut brok) = (Vec::new(), Vec::new());
        let mut saturated = 0;
        for k in 1..=repeats {
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
                broker.stop();
                return Err("sweep runs its scenario in one process (no --processes)".into());
            }
            common.url = vec![format!("ws://{addr}/ws")];
            common.publisher_url = None;
            common.server_pid = pid.into_iter().collect();
            common.json = None;
            common.report = None;
            eprintln!(
                "sweep: --reactors {n}, run {k} of {repeats} ({})",
                common.url.join(",")
            );
            let res = crate::run_scenario(&cli);
            broker.stop();
            let r = res?;
            values.push(r.get(&key).unwrap_or(f64::NAN));
            p99.push(
                r.latencies
                    .first()
                    .map_or(f64::NAN, |l| l.summary.p99_us / 1e3),
            );
            tool.push(r.get("tool_cpu_pct").unwrap_or(f64::NAN));
            brok.push(r.get("broker_cpu_pct").unwrap_or(f64::NAN));
            if r.warnings.iter().any(|w| w.contains("saturated")) {
                saturated += 1;
            }
            // Every setting's warnings are kept, each saying where it came from.
            for w in r.warnings {
                let w = format!("--reactors {n}: {w}");
                if !warnings.contains(&w) {
                    warnings.push(w);
                }
            }
        }
        let s = Setting::of(&values);
        let p = Setting::of(&p99);
        rows.push(vec![
            n.to_string(),
            fmt_num(s.median),
            format!("{} – {}", fmt_num(s.min), fmt_num(s.max)),
            format!("{:.3}", p.median),
            format!("{:.0}", Setting::of(&tool).median),
            {
                let b = Setting::of(&brok).median;
                if b.is_finite() {
                    format!("{b:.0}")
                } else {
                    "-".into()
                }
            },
            if saturated > 0 {
                format!("SATURATED ({saturated} of {repeats})")
            } else {
                "no".into()
            },
        ]);
        p99s.push(p.median);
        settings.push(s);
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
    r.param("repeats", repeats);
    r.table = Some((
        vec![
            "reactors".into(),
            format!("{key} (median)"),
            "spread (min – max)".into(),
            "p99 ms (median)".into(),
            "tool cpu %".into(),
            "broker cpu %".into(),
            "load tool saturated".into(),
        ],
        rows,
    ));
    for (i, (s, p)) in settings.iter().zip(&p99s).enumerate() {
        r.metric(
            &format!("reactors_{}", i + 1),
            &format!("{key} at --reactors {} (median)", i + 1),
            s.median,
            "",
        );
        r.metric(
            &format!("spread_reactors_{}", i + 1),
            &format!("spread at --reactors {}", i + 1),
            s.spread(),
            "",
        );
        r.metric(
            &format!("p99_ms_reactors_{}", i + 1),
            &format!("p99 at --reactors {} (median)", i + 1),
            *p,
            "ms",
        );
    }
    match verdict(&settings, higher) {
        Verdict::Best(b) => {
            r.metric("best_reactors", "best --reactors", (b + 1) as f64, "");
            r.metric(
                "best_value",
                &format!("best {key} (median)"),
                settings[b].median,
                "",
            );
            r.param(
                "verdict",
                format!(
                    "--reactors {} is best, by more than the spread of the runs",
                    b + 1
                ),
            );
        }
        Verdict::Tie(t) => {
            let list: Vec<String> = t.iter().map(|i| (i + 1).to_string()).collect();
            r.param(
                "verdict",
                format!(
                    "tie: --reactors {} are within the spread of their runs (take the fewest, or run longer)",
                    list.join(", ")
                ),
            );
        }
        Verdict::None => r.param("verdict", "nothing measured"),
    }
    r.warnings.extend(warnings);
    if bin.is_none() {
        r.warnings.push(
            "the broker ran inside the load tool's process: they share its CPU, so use the \
             stompbox binary (--stompbox PATH) for figures to deploy by"
                .into(),
        );
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(v: &[f64]) -> Setting {
        Setting::of(v)
    }

    #[test]
    fn medians_and_spreads() {
        let s = setting(&[3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max, s.spread()), (2.0, 1.0, 3.0, 2.0));
        assert_eq!(setting(&[1.0, 2.0, 3.0, 10.0]).median, 2.5);
        assert!(setting(&[f64::NAN]).median.is_nan());
    }

    #[test]
    fn a_best_setting_is_named_only_past_the_spread() {
        // Clear win: 150 vs 100, runs within 5.
        let clear = [
            setting(&[98.0, 100.0, 102.0]),
            setting(&[148.0, 150.0, 152.0]),
        ];
        assert_eq!(verdict(&clear, true), Verdict::Best(1));
        // 105 vs 100 with runs spread over 20: a tie, best median first.
        let noisy = [
            setting(&[90.0, 100.0, 110.0]),
            setting(&[95.0, 105.0, 115.0]),
        ];
        assert_eq!(verdict(&noisy, true), Verdict::Tie(vec![1, 0]));
        // Lower is better (latency).
        let lat = [
            setting(&[5.0, 5.1, 5.2]),
            setting(&[2.0, 2.1, 2.2]),
            setting(&[3.0, 3.1, 3.2]),
        ];
        assert_eq!(verdict(&lat, false), Verdict::Best(1));
        assert_eq!(verdict(&[setting(&[f64::NAN])], true), Verdict::None);
        assert_eq!(headline("broadcast"), ("last_p99_ms", false));
    }
}
