//! Command-line options.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Load-test a STOMP-over-WebSocket broker (stompbox, RabbitMQ Web-STOMP, …).
///
/// Every run is bounded (--duration, counts), shows progress on stderr, prints a table on
/// stdout, and can write --json and --report (HTML). Several --url load a cluster (with a
/// per-node breakdown); --processes splits a run over several load-generator processes.
#[derive(Debug, Clone, Parser)]
#[command(name = "loadtest", version)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
    /// Exit 1 if this holds after the run: METRIC<OP>NUMBER, e.g. `sessions_failed>0`,
    /// `p99_ms>50`, `delivered_per_s<1e6` (repeatable; OP: > < >= <= == !=). A run where most
    /// sessions failed exits 1 anyway.
    #[arg(long = "fail-if", value_name = "COND", global = true)]
    pub fail_if: Vec<crate::verdict::Condition>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Cmd {
    /// Open N sessions (WebSocket + CONNECT + SUBSCRIBE), hold them, close them cleanly.
    Connect(ConnectArgs),
    /// P publishers, S subscribers over T topics: throughput, loss, end-to-end latency.
    Fanout(FanoutArgs),
    /// S subscribers on one topic, one publish per interval: time until the last one has it.
    Broadcast(BroadcastArgs),
    /// Producers and consumers on a queue with client acks: throughput, latency, redeliveries.
    Queue(QueueArgs),
    /// Start stompbox with --reactors 1..=N, run a scenario at each, name the best setting.
    Sweep(SweepArgs),
    /// Print JSON results from several runs side by side: `table NAME=DIR ...`.
    Table(TableArgs),
}

#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Broker WebSocket URL. Several (comma-separated or the flag repeated) for a cluster:
    /// session i connects to URL i mod n, and the result adds a per-URL breakdown.
    #[arg(
        long,
        value_delimiter = ',',
        num_args = 1,
        default_value = "ws://127.0.0.1:61614/ws"
    )]
    pub url: Vec<String>,
    /// Where the publishers connect (subscribers still spread over --url). Default: fanout
    /// and queue publishers spread round-robin like every session; broadcast's one publisher
    /// goes to the first --url.
    #[arg(long)]
    pub publisher_url: Option<String>,
    /// STOMP login.
    #[arg(long)]
    pub login: Option<String>,
    /// STOMP passcode.
    #[arg(long)]
    pub passcode: Option<String>,
    /// STOMP `host` header (virtual host; RabbitMQ's default is "/").
    #[arg(long, default_value = "/")]
    pub host: String,
    /// Highest STOMP version offered (1.0, 1.1 or 1.2).
    #[arg(long, default_value = "1.2")]
    pub stomp_version: String,
    /// Offer permessage-deflate (RFC 7692) as a browser does; where the broker agrees, every
    /// STOMP frame sent is compressed and compressed messages are inflated.
    #[arg(long)]
    pub compression: bool,
    /// Reactor threads in this process.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Warm-up seconds: messages sent then are not in the figures.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Seconds to wait for in-flight messages after publishing stops.
    #[arg(long, default_value_t = 3.0)]
    pub drain: f64,
    /// Sessions being set up at once.
    #[arg(long, default_value_t = 200)]
    pub concurrency: usize,
    /// Seconds one session may take to be ready (connect, upgrade, CONNECTED, receipt).
    #[arg(long, default_value_t = 20.0)]
    pub setup_timeout: f64,
    /// Seconds a session may send nothing before it sends a WebSocket ping (0: never). Some
    /// brokers close connections idle for 60 s (RabbitMQ Web-STOMP).
    #[arg(long, default_value_t = 20.0)]
    pub keepalive: f64,
    /// The broker's process id: report its memory (RSS) and CPU. With several --url, give it
    /// once per URL (same order) for per-node CPU per delivery and memory per session.
    #[arg(long)]
    pub server_pid: Vec<u32>,
    /// Load-generator processes to split the sessions over, each with its own open-file limit
    /// (45,000 sessions at 20,000 files a process need 3). This process starts N copies of
    /// itself (copy k runs sessions k, k+N, ...), starts them at one instant once all are set
    /// up, and merges their results into one report as if one process had run. connect,
    /// fanout and broadcast only; --window then watches each process's own subscribers.
    #[arg(long, default_value_t = 1)]
    pub processes: usize,
    /// Internal: run as child K of N of a --processes run (K/N/EPOCH_NS).
    #[arg(long, hide = true)]
    pub child: Option<String>,
    /// Local source addresses 127.0.0.2.. to spread connections over (0: as many as the
    /// connection count needs, ~25,000 each).
    #[arg(long, default_value_t = 0)]
    pub source_addrs: usize,
    /// Write the result as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write a self-contained HTML report.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Destination name prefix (topics are /topic/PREFIX-N, queues /queue/PREFIX-...).
    #[arg(long, default_value = "loadtest")]
    pub prefix: String,
    /// No live status line.
    #[arg(long)]
    pub quiet: bool,
    /// Allow a non-loopback target.
    #[arg(long)]
    pub allow_remote: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub common: Common,
    /// Sessions to open.
    #[arg(long, short = 'n', default_value_t = 1000)]
    pub sessions: usize,
    /// Seconds to hold them open before closing.
    #[arg(long, default_value_t = 2.0)]
    pub hold: f64,
    /// Destinations the sessions subscribe to: 1 (every session on `/topic/PREFIX-connect`),
    /// or T: session i on `/topic/PREFIX/room/NNNN` with NNNN = i mod T (T = N: one each).
    #[arg(long, short = 't', default_value_t = 1)]
    pub topics: usize,
}

#[derive(Debug, Clone, Args)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, short = 'p', default_value_t = 1)]
    pub publishers: usize,
    #[arg(long, short = 's', default_value_t = 1)]
    pub subscribers: usize,
    #[arg(long, short = 't', default_value_t = 1)]
    pub topics: usize,
    /// Body size in bytes (at least 41: the stamp).
    #[arg(long, short = 'b', default_value_t = 64)]
    pub body_size: usize,
    /// Total publish rate, messages per second (0: as fast as possible).
    #[arg(long, short = 'r', default_value_t = 0.0)]
    pub rate: f64,
    /// Most messages to publish in all (the run also ends at --duration).
    #[arg(long)]
    pub messages: Option<u64>,
    /// Deliveries per subscriber that may be in flight before publishers pause (0: no limit).
    /// Keeps a max-rate run from overrunning a broker's slow-consumer limit.
    #[arg(long, default_value_t = 1000)]
    pub window: u64,
}

#[derive(Debug, Clone, Args)]
pub struct BroadcastArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, short = 's', default_value_t = 1000)]
    pub subscribers: usize,
    /// Milliseconds between broadcasts.
    #[arg(long, default_value_t = 100.0)]
    pub interval_ms: f64,
    #[arg(long, short = 'b', default_value_t = 64)]
    pub body_size: usize,
}

#[derive(Debug, Clone, Args)]
pub struct QueueArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    #[arg(long, default_value_t = 2)]
    pub consumers: usize,
    #[arg(long, short = 'b', default_value_t = 64)]
    pub body_size: usize,
    /// Total send rate, messages per second (0: as fast as the window allows).
    #[arg(long, short = 'r', default_value_t = 0.0)]
    pub rate: f64,
    #[arg(long)]
    pub messages: Option<u64>,
    /// Unacknowledged messages per consumer before producers pause.
    #[arg(long, default_value_t = 1000)]
    pub window: u64,
    /// Ack mode: client or client-individual.
    #[arg(long, default_value = "client-individual")]
    pub ack: String,
    /// NACK every Nth first delivery, so the broker must redeliver it (0: never; needs
    /// --ack client-individual).
    #[arg(long, default_value_t = 0)]
    pub nack_every: u64,
    /// `prefetch-count` sent with SUBSCRIBE (RabbitMQ's per-consumer credit; 0: none).
    #[arg(long, default_value_t = 200)]
    pub prefetch: u32,
    /// Send with `persistent:true` (RabbitMQ then writes each message to disk; stompbox's
    /// JetStream store stores every queue message anyway).
    #[arg(long)]
    pub persistent: bool,
}

#[derive(Debug, Clone, Args)]
pub struct SweepArgs {
    /// Highest --reactors to try (default: available cores).
    #[arg(long)]
    pub max_reactors: Option<usize>,
    /// The stompbox binary, or "inproc" to run the broker inside this process (its CPU then
    /// shares the process with the tool). Default: `stompbox` beside this binary, else inproc.
    #[arg(long)]
    pub stompbox: Option<String>,
    /// Pin the broker to these CPUs (taskset list, e.g. "0").
    #[arg(long)]
    pub broker_cpus: Option<String>,
    /// The metric that names the best setting (default: the scenario's headline metric).
    #[arg(long)]
    pub metric: Option<String>,
    /// Write the sweep result as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write an HTML report.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Runs per setting, each against a fresh broker: the table shows their median and spread,
    /// and a setting is named best only if it wins by more than the spread.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// The scenario and its options, after `--` (default: fanout -s 100 --duration 3).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub scenario: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct TableArgs {
    /// NAME=DIR pairs; every DIR holds the same *.json result files.
    #[arg(required = true)]
    pub runs: Vec<String>,
}
