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

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let bad =
            || format!("`{s}` is not a duration: write a number and a unit (250ms, 10s, 5m, 1h)");
        if s == "0" {
            return Ok(Dur::from_millis(0));
        }
        let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (digits, unit) = s.split_at(split);
        let n: u64 = digits.parse().map_err(|_| bad())?;
        let scale: u64 = match unit.trim() {
            "ms" => 1,
            "s" => 1_000,
            "m" | "min" => 60_000,
            "h" => 3_600_000,
            _ => return Err(bad()),
        };
        n.checked_mul(scale)
            .map(Dur::from_millis)
            .ok_or_else(|| format!("`{s}` is too long"))
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
/// `target=level` directives, as in `RUST_LOG`: `info,stompbox::server=debug`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LogFilter {
    default: LevelFilter,
    /// (module path prefix, level); the longest matching prefix wins.
    directives: Vec<(String, LevelFilter)>,
}

impl LogFilter {
    pub fn new(level: LevelFilter) -> Self {
        LogFilter {
            default: level,
            directives: Vec::new(),
        }
    }

    /// The most verbose level any target may log at (for `log::set_max_level`).
    pub fn max_level(&self) -> LevelFilter {
        self.directives
            .iter()
            .map(|d| d.1)
            .fold(self.default, Ord::max)
    }

    /// The level for a record's target (a module path such as `stompbox::server::conn`).
    pub fn level_for(&self, target: &str) -> LevelFilter {
        self.directives
            .iter()
            .filter(|(prefix, _)| {
                target == prefix
                    || (target.starts_with(prefix.as_str())
                        && target[prefix.len()..].starts_with("::"))
            })
            .max_by_key(|(prefix, _)| prefix.len())
            .map_or(self.default, |d| d.1)
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
        let mut filter = LogFilter::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                Some((target, level)) => {
                    let target = target.trim();
                    if target.is_empty() || target.contains(char::is_whitespace) {
                        return Err(format!("`{part}`: expected TARGET=LEVEL"));
                    }
                    let level = parse_level(level.trim())?;
                    filter.directives.retain(|d| d.0 != target);
                    filter.directives.push((target.to_owned(), level));
                }
                None => filter.default = parse_level(part)?,
            }
        }
        Ok(filter)
    }
}

impl fmt::Display for LogFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.default.as_str().to_ascii_lowercase())?;
        for (target, level) in &self.directives {
            write!(f, ",{target}={}", level.as_str().to_ascii_lowercase())?;
        }
        Ok(())
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
        l.to_string()
    }
}
