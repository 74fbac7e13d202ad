//! What the operating system tells: open-file limits, our own CPU time, a broker's memory and
//! CPU time (from `/proc`).

use std::time::Duration;

use nix::sys::resource::{getrlimit, getrusage, setrlimit, Resource, UsageWho};

/// Raise the open-file soft limit to the hard limit. Returns (soft now, hard).
pub fn raise_nofile() -> (u64, u64) {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return (1024, 1024);
    };
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return (hard, hard);
    }
    (soft, hard)
}

fn usage(who: UsageWho) -> Duration {
    match getrusage(who) {
        Ok(u) => {
            let us = |t: nix::sys::time::TimeVal| {
                Duration::from_secs(t.tv_sec().max(0) as u64)
                    + Duration::from_micros(t.tv_usec().max(0) as u64)
            };
            us(u.user_time()) + us(u.system_time())
        }
        Err(_) => Duration::ZERO,
    }
}

/// CPU time (user + system) of the calling thread.
pub fn thread_cpu() -> Duration {
    usage(UsageWho::RUSAGE_THREAD)
}

/// CPU time of this whole process.
pub fn process_cpu() -> Duration {
    usage(UsageWho::RUSAGE_SELF)
}

/// Resident set size of a process, bytes (`VmRSS` in `/proc/PID/status`).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Clock ticks per second in `/proc/PID/stat` (USER_HZ; 100 on every Linux architecture that
/// matters).
const TICKS_PER_S: u64 = 100;

/// CPU time (user + system, all threads) of a process.
pub fn process_cpu_of(pid: u32) -> Option<Duration> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: fields count from after it.
    let rest = s.get(s.rfind(')')? + 1..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3 of stat(5), so utime (14) and stime (15) are at 11 and 12.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 1000 / TICKS_PER_S))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let pid = std::process::id();
        assert!(rss_bytes(pid).unwrap_or(0) > 0);
        // Burn a little CPU so the counters move.
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(process_cpu() > Duration::ZERO);
        assert!(process_cpu_of(pid).is_some());
        assert!(rss_bytes(u32::MAX).is_none());
        let (soft, hard) = raise_nofile();
        assert!(soft <= hard);
    }
}
