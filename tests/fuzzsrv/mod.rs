//! A whole-server stateful fuzzer: a [`Script`] of sessions (TCP or WebSocket) and steps
//! (CONNECT, SUBSCRIBE, SEND, ACK/NACK, transactions, stalls, floods, garbage, abrupt closes,
//! pipelined and split writes, chunked reads, sessions closed and queues purged through the
//! admin API) is run against an in-process broker with small limits, beside a reference model
//! ([`session`], [`model`]) that knows what every frame may, must and must not lead to.
//! Invariants are checked on every byte read and at the end: well-formed frames; ERROR has
//! `message`, comes only when allowed, and is the last thing before the close; the server never
//! closes without an ERROR (or cuts a frame); per-publisher order and no duplicate on topics;
//! prefetch respected; no queue message lost (unless purged) or consumed twice, redelivered
//! copies flagged; nothing from an aborted/failed transaction or refused frame delivered; topic
//! completeness for clean subscribers; a stalled session's output bounded; afterwards the
//! broker still accepts sessions, its loop turns stay short and the process memory bounded.
//!
//! Included by path from `tests/server_fuzz.rs` (proptest) and `fuzz/fuzz_targets/server.rs`
//! (cargo-fuzz), beside `tests/common`.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod model;
pub mod script;
pub mod session;
pub mod steps;
pub mod wire;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use stompbox::config::SlowConsumer;
use stompbox::router::{Overflow, QueueConfig};
use stompbox::stomp::Limits;
use stompbox::ServerHandle;

pub use script::Script;
use script::{Dest, Op};
use session::Driver;

pub const REACTORS: usize = 3;
pub const MAX_OUTBOUND: usize = 64 * 1024;
pub const QUEUE_MAX: usize = 32;
/// Bytes waiting per queue: three of the largest bodies fill it (a refusal is "queue full"
/// either way, which the model allows for every queue SEND).
pub const QUEUE_MAX_BYTES: usize = 256 * 1024;
pub const MAX_TXS: usize = 4;
pub const MAX_TX_FRAMES: usize = 16;
pub const MAX_SUBS: usize = 8;
pub const MAX_BODY: usize = 96 * 1024;
pub const MAX_HEADER_LINE: usize = 1024;
pub const MAX_HEADERS: usize = 32;
pub const DEFAULT_PREFETCH: usize = 100;
/// What a session that reads nothing may be sent past `max_outbound` (kernel socket buffers:
/// the client's 32 KiB receive buffer, doubled by Linux, and the server's send buffer).
pub const STALL_SLACK: usize = 1024 * 1024;
/// The admin API's bearer token (the scripts close sessions and purge queues through it).
pub const ADMIN_TOKEN: &str = "fuzz-admin-token";

/// splitmix64: the driver's only source of randomness (seeded by the script).
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

/// The broker under test, with limits small enough to be reached.
pub struct Server {
    pub h: ServerHandle,
    pub ws: SocketAddr,
    pub tcp: SocketAddr,
    pub admin: SocketAddr,
    runs: AtomicU64,
}

pub fn start_server() -> Server {
    let (h, ws) = crate::common::server_with(|c| {
        c.reactors = REACTORS;
        c.echo = false;
        c.max_outbound = MAX_OUTBOUND;
        c.slow_consumer = SlowConsumer::Close;
        c.queues = QueueConfig {
            max_messages: QUEUE_MAX,
            max_bytes: QUEUE_MAX_BYTES,
            overflow: Overflow::Reject,
            ..QueueConfig::default()
        };
        c.stomp_limits = Limits {
            max_headers: MAX_HEADERS,
            max_header_line: MAX_HEADER_LINE,
            max_body: MAX_BODY,
        };
        c.session.heartbeat = (250, 250);
        c.session.min_heartbeat = 100;
        c.session.max_subscriptions = MAX_SUBS;
        c.session.default_prefetch = DEFAULT_PREFETCH;
        c.session.max_transactions = MAX_TXS;
        c.session.max_tx_frames = MAX_TX_FRAMES;
        c.heartbeat_grace = 2;
        c.read_buffer_size = 4096;
        c.read_budget = 16 * 1024;
        // Longer than the harness takes to read a flood's replies back in small chunks: closed
        // earlier, a session still sending and not yet done reading gets a reset, which makes
        // its kernel drop the unread ERROR (the default is 5 s; 300 ms lost one here).
        c.close_timeout = Duration::from_millis(1500);
        c.handshake_timeout = Duration::from_secs(3);
        // permessage-deflate for the sessions that offer it, most deliveries compressed.
        c.handshake.deflate = Some(stompbox::ws::deflate::DeflateConfig::default());
        c.compression.min_size = 32;
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        c.admin = Some(stompbox::config::AdminConfig {
            token: Some(ADMIN_TOKEN.into()),
            ..Default::default()
        });
    });
    let tcp = h.tcp_addr().expect("tcp listener");
    let admin = h.admin_addr().expect("admin API");
    Server {
        h,
        ws,
        tcp,
        admin,
        runs: AtomicU64::new(0),
    }
}

impl Server {
    /// Shut down; `Err` if a server thread panicked.
    pub fn stop(self) -> Result<(), String> {
        self.h
            .shutdown()
            .map_err(|e| format!("server shutdown: {e}"))
    }
}

/// One server per process, started on first use (the proptest's and the fuzz target's).
pub fn shared() -> &'static Server {
    static S: OnceLock<Server> = OnceLock::new();
    S.get_or_init(start_server)
}

/// The process's resident memory, in bytes.
pub fn rss() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<usize>().ok())
        })
        .unwrap_or(0)
        * 1024
}

/// Sum (or max) of a metric's samples in Prometheus text.
pub fn metric(text: &str, name: &str, max: bool) -> f64 {
    let vals = text.lines().filter_map(|l| {
        let rest = l.strip_prefix(name)?;
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            return None;
        }
        l.rsplit(' ').next()?.parse::<f64>().ok()
    });
    if max {
        vals.fold(0.0, f64::max)
    } else {
        vals.sum()
    }
}

fn max_turn() -> Duration {
    let ms = std::env::var("STOMPBOX_FUZZ_MAX_TURN_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    Duration::from_millis(ms)
}

/// Run one script; `Err` lists the broken invariants.
pub fn run(server: &Server, script: &Script) -> Result<(), String> {
    let run = server.runs.fetch_add(1, Ordering::Relaxed) * 1000 + u64::from(std::process::id());
    if std::env::var_os("STOMPBOX_FUZZ_VERBOSE").is_some() {
        eprintln!("run {run}: {script:?}");
    }
    let rss0 = rss();
    let refused0 = metric(&server.h.metrics(), "stompbox_queue_rejected_total", false);
    let mut d = Driver::new(server.tcp, server.ws, server.admin, run, script);
    let res = drive(&mut d, script, server, refused0);
    d.kill_all();
    res?;
    probe(server)?;
    let m = server.h.metrics();
    let turn = metric(&m, "stompbox_reactor_loop_turn_max_seconds", true);
    if turn > max_turn().as_secs_f64() {
        return Err(format!(
            "a reactor loop turn took {turn:.3} s (bound {:?})",
            max_turn()
        ));
    }
    let rss1 = rss();
    if std::env::var_os("STOMPBOX_FUZZ_VERBOSE").is_some() {
        eprintln!("run {run}: RSS {} -> {} MiB", rss0 >> 20, rss1 >> 20);
    }
    // Growth within the script only: an absolute bound would fail every case after a leaky
    // one (the process is shared) and shrink to nothing.
    if rss1 > rss0 + 256 * 1024 * 1024 {
        return Err(format!(
            "memory: RSS {} MiB after the script, {} MiB before",
            rss1 >> 20,
            rss0 >> 20
        ));
    }
    Ok(())
}

fn drive(d: &mut Driver, script: &Script, server: &Server, refused0: f64) -> Result<(), String> {
    for (i, step) in script.steps.iter().enumerate() {
        d.step_no = i;
        d.step(step);
        d.pump(Duration::ZERO);
        if step.sync {
            d.sync(step.session, Duration::from_millis(400));
        }
        if let Op::Wait { ms } = step.op {
            d.pump(Duration::from_millis(u64::from(ms)));
        }
        d.check()?;
    }
    d.finish();
    d.check()?;
    d.drain(&[Dest::Queue(0), Dest::Queue(1)]);
    d.check()?;
    let refused = metric(&server.h.metrics(), "stompbox_queue_rejected_total", false) > refused0;
    let problems = d.final_checks(refused);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// The broker still serves: one fresh session per reactor and then some, over both listeners,
/// each CONNECTED within 2 s.
fn probe(server: &Server) -> Result<(), String> {
    for i in 0..=REACTORS {
        let ws = i % 2 == 1;
        let addr = if ws { server.ws } else { server.tcp };
        // The WebSocket probes offer permessage-deflate (the scripts use both kinds).
        let mut c = wire::Conn::open(addr, ws, ws).map_err(|e| format!("probe {i}: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut rng = Rng(i as u64);
        c.write(
            b"CONNECT\naccept-version:1.2\nhost:localhost\n\n\0",
            false,
            true,
            deadline,
            &mut rng,
        )
        .map_err(|e| format!("probe {i}: write: {e}"))?;
        let mut ev = Vec::new();
        loop {
            c.read(&mut rng, 1 << 20, &mut ev)
                .map_err(|e| format!("probe {i}: {e}"))?;
            if let Some(wire::Ev::Frame(f)) = ev.first() {
                if f.command != "CONNECTED" {
                    return Err(format!("probe {i}: got {f:?} instead of CONNECTED"));
                }
                break;
            }
            if c.ended || Instant::now() > deadline {
                return Err(format!(
                    "probe {i}: no CONNECTED within 2 s (server dead?): {ev:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        c.kill();
    }
    Ok(())
}

/// Count one event in the file `STOMPBOX_FUZZ_TALLY` names, if set (a line each; the cases run
/// in forked children, so the proptest's parent reads the counts there).
pub fn tally(what: &str) {
    use std::io::Write;
    let Some(path) = std::env::var_os("STOMPBOX_FUZZ_TALLY") else {
        return;
    };
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
    {
        let _ = f.write_all(format!("{what}\n").as_bytes());
    }
}

static FAILED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A script failed in this process (the proptest keeps shrinking past its deadline then).
pub fn failed() -> bool {
    FAILED.load(Ordering::Relaxed)
}

pub fn set_failed() {
    FAILED.store(true, Ordering::Relaxed);
}
