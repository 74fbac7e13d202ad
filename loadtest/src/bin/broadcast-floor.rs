//! The machine's floor for a broadcast (issue 21): W threads write one small frame to each of N
//! connected loopback sockets, another process reads them all, and the time from the first
//! write to the last byte read is what no broker can beat on this machine with W writing
//! threads: the kernel's cost per socket write (and per wake-up of the reader), times N / W.
//!
//! ```sh
//! taskset -c 0 broadcast-floor -n 10000 --writers 1 --rounds 30 --size 150 --reader-cpu 1
//! ```
//!
//! The reading side is a child process (this program with `--child`), so that each side holds
//! N sockets under the 20,000 open-file limit of one process. Both read `CLOCK_MONOTONIC`,
//! which is one clock for every process of the machine. Every loop is bounded in rounds and
//! time; only 127.0.0.1 is used.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use mio::{Events, Interest, Poll, Token};
use nix::time::{clock_gettime, ClockId};

fn now_ns() -> u64 {
    clock_gettime(ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

struct Opts {
    n: usize,
    writers: usize,
    rounds: usize,
    size: usize,
    interval: Duration,
    child: Option<SocketAddr>,
    reader_cpu: Option<String>,
}

fn parse() -> Result<Opts, String> {
    let mut o = Opts {
        n: 10_000,
        writers: 1,
        rounds: 30,
        size: 150,
        interval: Duration::from_millis(100),
        child: None,
        reader_cpu: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut v = || args.next().ok_or(format!("{a} needs a value"));
        let num = |s: String| s.parse::<usize>().map_err(|e| format!("{s}: {e}"));
        match a.as_str() {
            "-n" => o.n = num(v()?)?,
            "--writers" => o.writers = num(v()?)?,
            "--rounds" => o.rounds = num(v()?)?,
            "--size" => o.size = num(v()?)?,
            "--interval-ms" => o.interval = Duration::from_millis(num(v()?)? as u64),
            "--reader-cpu" => o.reader_cpu = Some(v()?),
            "--child" => o.child = Some(v()?.parse().map_err(|e| format!("--child: {e}"))?),
            _ => {
                return Err(
                    "usage: broadcast-floor [-n N] [--writers W] [--rounds R] [--size BYTES] \
                     [--interval-ms MS] [--reader-cpu C]"
                        .into(),
                )
            }
        }
    }
    if o.n == 0 || o.n > 19_000 || o.writers == 0 || o.writers > 64 || o.rounds == 0 {
        return Err("-n 1..=19000, --writers 1..=64, --rounds >= 1".into());
    }
    if o.rounds > 1000 || o.size == 0 || o.size > 65_536 {
        return Err("--rounds at most 1000, --size 1..=65536".into());
    }
    Ok(o)
}

/// The reading side: connect N sockets, then report when each round's last byte is read.
fn child(addr: SocketAddr, o: &Opts) -> Result<(), String> {
    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    let mut socks = Vec::with_capacity(o.n);
    for i in 0..o.n {
        let s = TcpStream::connect(addr).map_err(|e| format!("connect {i}: {e}"))?;
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
        let mut s = mio::net::TcpStream::from_std(s);
        poll.registry()
            .register(&mut s, Token(i), Interest::READABLE)
            .map_err(|e| e.to_string())?;
        socks.push(s);
    }
    let mut out = std::io::stdout();
    writeln!(out, "ready").map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())?;
    let per_round = (o.n * o.size) as u64;
    let (mut got, mut round) = (0u64, 0usize);
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    while round < o.rounds {
        if std::time::Instant::now() > deadline {
            return Err("child: no progress for 10 minutes".into());
        }
        poll.poll(&mut events, Some(Duration::from_secs(1)))
            .map_err(|e| e.to_string())?;
        for ev in events.iter() {
            let Some(s) = socks.get_mut(ev.token().0) else {
                continue;
            };
            loop {
                match s.read(&mut buf) {
                    Ok(0) => return Ok(()),
                    Ok(k) => got += k as u64,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e.to_string()),
                }
            }
        }
        while round < o.rounds && got >= per_round * (round as u64 + 1) {
            writeln!(out, "{round} {}", now_ns()).map_err(|e| e.to_string())?;
            out.flush().map_err(|e| e.to_string())?;
            round += 1;
        }
    }
    Ok(())
}

fn parent(o: &Opts) -> Result<(), String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = l.local_addr().map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // `--reader-cpu C`: the reading process on its own core (`taskset`), as a load tool would be.
    let mut cmd = match &o.reader_cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", cpu]).arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    let mut c = cmd
        .args(["--child", &addr.to_string(), "-n", &o.n.to_string()])
        .args([
            "--rounds",
            &o.rounds.to_string(),
            "--size",
            &o.size.to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("child: {e}"))?;
    let mut socks = Vec::with_capacity(o.n);
    for _ in 0..o.n {
        let (s, _) = l.accept().map_err(|e| e.to_string())?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        socks.push(s);
    }
    let mut lines = BufReader::new(c.stdout.take().ok_or("child stdout")?).lines();
    match lines.next() {
        Some(Ok(l)) if l == "ready" => {}
        other => return Err(format!("child: {other:?}")),
    }
    // The bytes of one small frame (the kernel does not look inside).
    let frame = vec![b'x'; o.size];
    let mut floors = Vec::with_capacity(o.rounds);
    let chunk = o.n.div_ceil(o.writers);
    for r in 0..o.rounds {
        std::thread::sleep(o.interval);
        let t0 = now_ns();
        std::thread::scope(|sc| {
            for part in socks.chunks_mut(chunk) {
                let frame = &frame;
                sc.spawn(move || {
                    for s in part {
                        let _ = s.write_all(frame);
                    }
                });
            }
        });
        let line = lines
            .next()
            .ok_or("child ended")?
            .map_err(|e| e.to_string())?;
        let (round, t) = line.split_once(' ').ok_or(format!("child said {line:?}"))?;
        if round.parse::<usize>().ok() != Some(r) {
            return Err(format!("child is at round {round}, expected {r}"));
        }
        let t: u64 = t.parse().map_err(|e| format!("{t}: {e}"))?;
        floors.push(t.saturating_sub(t0));
    }
    drop(socks);
    let _ = c.wait();
    floors.sort_unstable();
    let q = |p: f64| {
        let i = ((floors.len() as f64 - 1.0) * p).round() as usize;
        floors.get(i).copied().unwrap_or(0) as f64 / 1e6
    };
    println!(
        "broadcast floor: {} sockets, {} writer thread(s), {}-byte frames, {} rounds",
        o.n, o.writers, o.size, o.rounds
    );
    println!(
        "  first write to last byte read (ms): p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        q(0.5),
        q(0.9),
        q(0.99),
        q(1.0)
    );
    println!(
        "  per socket (µs, p50 x writers / sockets): {:.2}",
        q(0.5) * 1000.0 * o.writers as f64 / o.n as f64
    );
    Ok(())
}

fn main() -> ExitCode {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("broadcast-floor: {e}");
            return ExitCode::from(2);
        }
    };
    loadtest::sys::raise_nofile();
    let r = match o.child {
        Some(addr) => child(addr, &o),
        None => parent(&o),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("broadcast-floor: {e}");
            ExitCode::FAILURE
        }
    }
}
