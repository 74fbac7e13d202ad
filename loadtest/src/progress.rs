//! The live status line on stderr: refreshed in place on a terminal, one line a second
//! otherwise (so logs stay readable).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::engine::Snap;

pub struct Progress {
    name: &'static str,
    on: bool,
    tty: bool,
    total: usize,
    last: Option<Instant>,
    drew: bool,
}

/// `1234567` → `1.23M`.
pub fn si(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.2}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

impl Progress {
    pub fn new(name: &'static str, on: bool, total: usize) -> Self {
        Progress {
            name,
            on,
            tty: std::io::stderr().is_terminal(),
            total,
            last: None,
            drew: false,
        }
    }

    pub fn update(&mut self, phase: &str, t: Duration, s: &Snap, rates: Option<(f64, f64)>) {
        if !self.on {
            return;
        }
        let every = if self.tty {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(1)
        };
        if self.last.is_some_and(|l| l.elapsed() < every) {
            return;
        }
        self.last = Some(Instant::now());
        let mut line = format!(
            "[{} {:>7} {:6.1}s] sessions {}/{} failed {} dropped {}",
            self.name,
            phase,
            t.as_secs_f64(),
            s.ready.saturating_sub(s.dropped + s.closed_clean),
            self.total,
            s.failed,
            s.dropped
        );
        if let Some((p, d)) = rates {
            line.push_str(&format!(" | pub {}/s del {}/s", si(p), si(d)));
        } else if s.published > 0 {
            line.push_str(&format!(
                " | pub {} del {}",
                si(s.published as f64),
                si(s.delivered as f64)
            ));
        }
        let mut e = std::io::stderr().lock();
        if self.tty {
            let _ = write!(e, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(e, "{line}");
        }
        let _ = e.flush();
        self.drew = true;
    }

    pub fn finish(&mut self) {
        if self.on && self.tty && self.drew {
            let _ = writeln!(std::io::stderr());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn si_units() {
        assert_eq!(si(12.0), "12");
        assert_eq!(si(12_345.0), "12.3k");
        assert_eq!(si(1_234_567.0), "1.23M");
        assert_eq!(si(2.5e9), "2.50G");
    }
}
