//! `loadtest`: the bundled load tool for stompbox and any STOMP-over-WebSocket broker.
//!
//! Built on stompbox's own client-side codecs (`ws::client` for the handshake, `ws::Decoder`
//! in the client role, `stomp::parse`/`write_frame`) and on mio reactor threads, not an async
//! runtime, so one process drives as many connections as its open-file limit allows.
//!
//! - [`engine`]: reactor threads and the phase driver (setup, warm-up, run, drain, hold, close).
//! - [`multi`]: `--processes N`, one run over several load-generator processes, merged.
//! - [`conn`]: one connection's state machine.
//! - [`rate`]: open-loop pacing. [`stats`]: HdrHistogram latencies. [`body`]: the timestamp.
//! - [`scenario`]: connect, fanout, broadcast, queue, sweep, and the comparison table.
//! - [`report`]: the human table, JSON and the self-contained HTML page.

#![forbid(unsafe_code)]

pub mod body;
pub mod cli;
pub mod conn;
pub mod engine;
pub mod multi;
pub mod progress;
pub mod rate;
pub mod report;
pub mod scenario;
pub mod stats;
pub mod sys;
pub mod target;
pub mod verdict;

use cli::{Cli, Cmd, Common};
use report::Report;

/// Run one scenario (not `table`), without writing any file.
pub fn run_scenario(cli: &Cli) -> Result<Report, String> {
    match &cli.cmd {
        Cmd::Connect(a) => scenario::connect::run(a),
        Cmd::Fanout(a) => scenario::fanout::run(a),
        Cmd::Broadcast(a) => scenario::broadcast::run(a),
        Cmd::Queue(a) => scenario::queue::run(a),
        Cmd::Sweep(a) => scenario::sweep::run(a),
        Cmd::Table(_) => Err("table is not a scenario".into()),
    }
}

/// Whether this process is one child of a `--processes` run (it prints only protocol lines).
pub fn is_child(cli: &Cli) -> bool {
    common(cli).is_some_and(|c| c.child.is_some())
}

fn common(cli: &Cli) -> Option<&Common> {
    match &cli.cmd {
        Cmd::Connect(a) => Some(&a.common),
        Cmd::Fanout(a) => Some(&a.common),
        Cmd::Broadcast(a) => Some(&a.common),
        Cmd::Queue(a) => Some(&a.common),
        Cmd::Sweep(_) | Cmd::Table(_) => None,
    }
}

/// Write `--json` and `--report` files, if asked for.
pub fn write_outputs(cli: &Cli, r: &Report) -> Result<(), String> {
    let (json, html) = match (&cli.cmd, common(cli)) {
        (Cmd::Sweep(s), _) => (s.json.clone(), s.report.clone()),
        (_, Some(c)) => (c.json.clone(), c.report.clone()),
        _ => (None, None),
    };
    if let Some(p) = json {
        std::fs::write(&p, report::json::to_string(r) + "\n")
            .map_err(|e| format!("{}: {e}", p.display()))?;
    }
    if let Some(p) = html {
        std::fs::write(&p, report::html::render(r)).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    Ok(())
}
