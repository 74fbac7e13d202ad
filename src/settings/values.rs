//! Values shared by the file and the flags: listeners (`off` or an address), durations with
//! units, policies by name, and the log filter.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use clap::ValueEnum;
use log::LevelFilter;
use serde::{Deserialize, Serialize};

/// A listener: `IP:PORT`, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Listener {
    Off,
    On(SocketAddr),
}

impl Listener {
    pub fn addr(self) -> Option<SocketAddr> {
        match self {
            Listener::Off => None,
            Listener::On(a) => Some(a),
        }
    }

    pub(super) fn from_addr(addr: Option<SocketAddr>) -> Self {
        addr.map_or(Listener::Off, Listener::On)
    }
}

impl FromStr for Listener {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("off") {
            return Ok(Listener::Off);
        }
        s.parse().map(Listener::On).map_err(|_| {
            format!("`{s}` is not an address (IP:PORT, e.g. 127.0.0.1:61613) or `off`")
        })
    }
}

impl fmt::Display for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listener::Off => f.write_str("off"),
            Listener::On(a) => write!(f, "{a}"),
        }
    }
}

impl TryFrom<String> for Listener {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Listener> for String {
    fn from(l: Listener) -> String {
        l.to_string()
    }
}

/// A duration in whole milliseconds, written with a unit: `250ms`, `10s`, `5m`, `1h` (or `0`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Dur(Duration);

impl Dur {
    pub const fn from_millis(ms: u64) -> Self {
        Dur(Duration::from_millis(ms))
    }

    pub fn get(self) -> Duration {
        self.0
    }

    /// Whole milliseconds (saturating; validation keeps them within a day).
    pub fn millis(self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }

    pub(super) fn from_duration(d: Duration) -> Self {
        Dur::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

impl FromStr for Dur {
    type Err = String;

    /// `humantime`'s grammar: `250ms`, `10s`, `5m`, `1h`, `1h 30m`, `2days`; `0` alone too.
    /// Whole milliseconds only.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s == "0" {
            return Ok(Dur::from_millis(0));
        }
        let d = humantime::parse_duration(s).map_err(|_| {
            format!("`{s}` is not a duration: write a number and a unit (250ms, 10s, 5m, 1h)")
        })?;
        if d.subsec_nanos() % 1_000_000 != 0 {
            return Err(format!("`{s}`: durations are whole milliseconds"));
        }
        u64::try_from(d.as_millis())
            .map(Dur::from_millis)
            .map_err(|_| format!("`{s}` is too long"))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.millis();
        match ms {
            0 => f.write_str("0s"),
            _ if ms.is_multiple_of(3_600_000) => write!(f, "{}h", ms / 3_600_000),
            _ if ms.is_multiple_of(60_000) => write!(f, "{}m", ms / 60_000),
            _ if ms.is_multiple_of(1_000) => write!(f, "{}s", ms / 1_000),
            _ => write!(f, "{ms}ms"),
        }
    }
}

impl fmt::Debug for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl TryFrom<String> for Dur {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Dur> for String {
    fn from(d: Dur) -> String {
        d.to_string()
    }
}

/// What happens to a subscriber whose outbound queue is full (see [`crate::config::SlowConsumer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SlowConsumerPolicy {
    /// ERROR "slow consumer", then close.
    Close,
    /// Drop new topic messages for it (counted) until it catches up.
    Drop,
}

/// What a full queue does with another message (see [`crate::router::Overflow`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum QueueOverflow {
    /// Refuse the SEND with an ERROR.
    Reject,
    /// Drop the oldest waiting message (counted).
    DropOldest,
}

/// Where queued messages live (see [`crate::router::QueueStore`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum QueueStoreKind {
    /// In this process's memory.
    Memory,
    /// In NATS JetStream.
    Jetstream,
}

/// A log filter: a level (`error`, `warn`, `info`, `debug`, `trace` or `off`), optionally with
/// `target=level` directives, as in `RUST_LOG`: `info,stompbox::server=debug`. Read and
/// applied by tracing-subscriber's `EnvFilter`; a bare word must be a level, so a typo
/// (`loud`) is refused rather than taken for a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LogFilter(String);

impl LogFilter {
    pub fn new(level: LevelFilter) -> Self {
        LogFilter(level.as_str().to_ascii_lowercase())
    }

    /// The filter for tracing-subscriber (checked when this was made).
    pub fn env_filter(&self) -> tracing_subscriber::EnvFilter {
        tracing_subscriber::EnvFilter::builder().parse_lossy(&self.0)
    }
}

impl Default for LogFilter {
    fn default() -> Self {
        LogFilter::new(LevelFilter::Info)
    }
}

fn parse_level(s: &str) -> Result<LevelFilter, String> {
    s.parse()
        .map_err(|_| format!("`{s}` is not a log level (error, warn, info, debug, trace or off)"))
}

impl FromStr for LogFilter {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            parts.push(match part.split_once('=') {
                Some((target, level)) => {
                    let target = target.trim();
                    if target.is_empty() || target.contains(char::is_whitespace) {
                        return Err(format!("`{part}`: expected TARGET=LEVEL"));
                    }
                    let level = parse_level(level.trim())?;
                    format!("{target}={}", level.as_str().to_ascii_lowercase())
                }
                None => parse_level(part)?.as_str().to_ascii_lowercase(),
            });
        }
        if parts.is_empty() {
            return Ok(LogFilter::default());
        }
        let text = parts.join(",");
        tracing_subscriber::EnvFilter::builder()
            .parse(&text)
            .map_err(|e| format!("`{s}`: {e}"))?;
        Ok(LogFilter(text))
    }
}

impl fmt::Display for LogFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for LogFilter {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<LogFilter> for String {
    fn from(l: LogFilter) -> String {
        l.0
    }
}

/// How log lines are written: one line of text, or one JSON object per line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}
