//! What the operations tests share (issue 6, split by behaviour in issue 14): the serialising
//! lock, sockets the standard library cannot make, frames and clients, metrics scrapes, the
//! real binary as a child process, and paced publishing with counting subscribers.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// A prelude for the operations tests: not every file uses every name.
#![allow(unused_imports)]
#![allow(dead_code)]

pub use std::collections::HashMap;
pub use std::io::{ErrorKind, Read, Write};
pub use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
pub use std::path::PathBuf;
pub use std::process::{Child, Command, ExitStatus, Stdio};
pub use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
pub use std::sync::{Arc, Condvar, Mutex, OnceLock, RwLock};
pub use std::thread::JoinHandle;
pub use std::time::{Duration, Instant};

pub use crate::common::stomp::{connect_to, frame, tcp_stream, Client, End, Frame, TIMEOUT};
pub use stompbox::config::SlowConsumer;
pub use stompbox::ServerHandle;

/// Timing-sensitive tests hold it for writing; every other test for reading.
pub static SERIAL: RwLock<()> = RwLock::new(());

pub fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    SERIAL.read().unwrap_or_else(|p| p.into_inner())
}

pub fn exclusive() -> std::sync::RwLockWriteGuard<'static, ()> {
    SERIAL.write().unwrap_or_else(|p| p.into_inner())
}

// ---------------------------------------------------------------------------------------------
// Sockets the standard library cannot make: a chosen source address (127.0.0.2) and a tiny
// receive buffer set before connect (so the window the peer sees is small from the start).

#[allow(unsafe_code)]
pub mod sys {
    use std::ffi::c_void;
    use std::io;
    use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
    use std::os::fd::{FromRawFd, OwnedFd};

    const AF_INET: i32 = 2;
    const SOCK_STREAM: i32 = 1;
    const SOCK_CLOEXEC: i32 = 0o2_000_000;
    const SOL_SOCKET: i32 = 1;
    const SO_RCVBUF: i32 = 8;
    const SIGTERM: i32 = 15;

    #[repr(C)]
    struct SockaddrIn {
        sin_family: u16,
        sin_port: u16,
        sin_addr: [u8; 4],
        sin_zero: [u8; 8],
    }

    extern "C" {
        fn socket(domain: i32, ty: i32, protocol: i32) -> i32;
        fn setsockopt(fd: i32, level: i32, name: i32, value: *const c_void, len: u32) -> i32;
        fn bind(fd: i32, addr: *const SockaddrIn, len: u32) -> i32;
        fn connect(fd: i32, addr: *const SockaddrIn, len: u32) -> i32;
        fn kill(pid: i32, sig: i32) -> i32;
    }

    fn sockaddr(a: SocketAddrV4) -> SockaddrIn {
        SockaddrIn {
            sin_family: AF_INET as u16,
            sin_port: a.port().to_be(),
            sin_addr: a.ip().octets(),
            sin_zero: [0; 8],
        }
    }

    const LEN: u32 = std::mem::size_of::<SockaddrIn>() as u32;

    /// A blocking TCP connection to `dst`, from `src` (any port) if given, with `SO_RCVBUF`
    /// set before the handshake if given.
    pub fn connect_tcp(
        dst: SocketAddrV4,
        src: Option<Ipv4Addr>,
        rcvbuf: Option<i32>,
    ) -> io::Result<TcpStream> {
        // SAFETY: plain system calls on a descriptor this function creates and owns; every
        // pointer passed points to a live local of the size given.
        unsafe {
            let fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            let owned = OwnedFd::from_raw_fd(fd);
            if let Some(n) = rcvbuf {
                let v: i32 = n;
                let p = &v as *const i32 as *const c_void;
                if setsockopt(fd, SOL_SOCKET, SO_RCVBUF, p, 4) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if let Some(ip) = src {
                let a = sockaddr(SocketAddrV4::new(ip, 0));
                if bind(fd, &a, LEN) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            let d = sockaddr(dst);
            if connect(fd, &d, LEN) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(TcpStream::from(owned))
        }
    }

    pub fn sigterm(pid: u32) -> io::Result<()> {
        // SAFETY: kill(2) with a pid of a child this test spawned.
        if unsafe { kill(pid as i32, SIGTERM) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

pub fn v4(a: SocketAddr) -> SocketAddrV4 {
    match a {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => panic!("IPv4 loopback expected, got {a}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Frames and clients: the shared raw client ([`crate::common::stomp::Client`], reads blocking up to
// [`TIMEOUT`] each), plus what only this file needs.

pub fn send_frame(dest: &str, body: &[u8], receipt: Option<&str>) -> Vec<u8> {
    let len = body.len().to_string();
    let mut h = vec![("destination", dest), ("content-length", len.as_str())];
    if let Some(r) = receipt {
        h.push(("receipt", r));
    }
    frame("SEND", &h, body)
}

pub const CONNECT12: &[u8] = b"CONNECT\naccept-version:1.2\nhost:localhost\nheart-beat:0,0\n\n\0";

pub trait OpsClient: Sized {
    fn stomp(self) -> Self;
    fn stomp_tcp(addr: SocketAddr) -> Self;
    fn stomp_ws(addr: SocketAddr) -> Self;
    fn subscribe(&mut self, dest: &str, id: &str);
    fn publish(&mut self, dest: &str, body: &[u8], receipt: Option<&str>);
    fn expect_closed(&mut self, ws_code: u16);
}

impl OpsClient for Client {
    /// A STOMP 1.2 session without heart-beats.
    fn stomp(mut self) -> Client {
        self.connected(CONNECT12);
        self
    }

    fn stomp_tcp(addr: SocketAddr) -> Client {
        Client::connect_tcp(addr).stomp()
    }

    fn stomp_ws(addr: SocketAddr) -> Client {
        Client::connect_ws(addr).stomp()
    }

    fn subscribe(&mut self, dest: &str, id: &str) {
        let r = format!("sub-{id}");
        self.send(&frame(
            "SUBSCRIBE",
            &[("destination", dest), ("id", id), ("receipt", &r)],
            b"",
        ));
        self.expect_receipt(&r);
    }

    fn publish(&mut self, dest: &str, body: &[u8], receipt: Option<&str>) {
        self.send(&send_frame(dest, body, receipt));
    }

    /// After the last frame: TCP EOF; or WebSocket Close `ws_code`, then EOF.
    fn expect_closed(&mut self, ws_code: u16) {
        let end = self.next_frame();
        if self.is_ws() {
            assert!(
                matches!(end, Err(End::Close(Some(c))) if c == ws_code),
                "WebSocket: expected Close {ws_code}, got {end:?}"
            );
            let after = self.fill();
            assert_eq!(after, Err(End::Eof), "WebSocket: EOF after the Close");
        } else {
            assert!(
                matches!(end, Err(End::Eof)),
                "TCP: expected EOF, got {end:?}"
            );
        }
    }
}

/// Messages numbered in their body (`<n>:` first), as [`expect_numbered`] checks.
pub fn numbered(i: u64, pad: usize) -> Vec<u8> {
    let mut b = format!("{i:08}:").into_bytes();
    b.resize(b.len() + pad, b'x');
    b
}

pub fn number_of(f: &Frame) -> u64 {
    let s = std::str::from_utf8(&f.body[..8.min(f.body.len())]).unwrap_or("");
    s.parse()
        .unwrap_or_else(|_| panic!("not a numbered message: {f:?}"))
}

/// `n` MESSAGE frames for `dest` numbered 0..n in order.
pub fn expect_numbered(c: &mut Client, dest: &str, n: u64) {
    for i in 0..n {
        let f = c.expect("MESSAGE");
        assert_eq!(f.h("destination"), dest, "{f:?}");
        assert_eq!(number_of(&f), i, "{f:?}");
    }
}

/// Poll `f` every 10 ms until it returns Some, or give up after `limit`.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------------------------
// Metrics: Prometheus text into `name{labels}` → value.

pub struct Metrics {
    pub text: String,
    pub values: HashMap<String, f64>,
}

impl Metrics {
    pub fn parse(text: String) -> Metrics {
        let mut values = HashMap::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (k, v) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("bad metrics line {line:?}"));
            let v: f64 = v
                .parse()
                .unwrap_or_else(|_| panic!("bad metrics value in {line:?}"));
            values.insert(k.to_string(), v);
        }
        Metrics { text, values }
    }

    pub fn get(&self, key: &str) -> f64 {
        *self
            .values
            .get(key)
            .unwrap_or_else(|| panic!("no metric {key} in\n{}", self.text))
    }

    pub fn u(&self, key: &str) -> u64 {
        self.get(key) as u64
    }

    /// Sum of every series of a metric name (all label sets).
    pub fn sum(&self, name: &str) -> f64 {
        let prefix = format!("{name}{{");
        self.values
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| v)
            .sum()
    }
}

pub fn metrics_of(h: &ServerHandle) -> Metrics {
    Metrics::parse(h.metrics())
}

/// Poll the handle's metrics until `ok`, or return the last scrape after 5 s.
pub fn settle(h: &ServerHandle, ok: impl Fn(&Metrics) -> bool) -> Metrics {
    let mut last = metrics_of(h);
    let end = Instant::now() + TIMEOUT;
    while !ok(&last) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
        last = metrics_of(h);
    }
    last
}

/// One HTTP/1.1 GET; returns (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = connect_to(addr);
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let text = String::from_utf8_lossy(&resp).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {text:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    (status, body.to_string())
}

pub fn scrape(addr: SocketAddr) -> Metrics {
    let (status, body) = http_get(addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    Metrics::parse(body)
}

// ---------------------------------------------------------------------------------------------
// The binary as a child process.

pub fn bin_help() -> &'static str {
    static HELP: OnceLock<String> = OnceLock::new();
    HELP.get_or_init(|| {
        let out = Command::new(env!("CARGO_BIN_EXE_stompbox"))
            .arg("--help")
            .output()
            .expect("run stompbox --help");
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
}

/// Whether the binary has a flag (whole word, as `--help` lists it).
pub fn has_flag(flag: &str) -> bool {
    bin_help()
        .split(|c: char| c.is_whitespace() || c == ',' || c == '=')
        .any(|w| w == flag)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub struct Broker {
    pub child: Child,
    pub ws: SocketAddr,
    pub tcp: SocketAddr,
    pub metrics: Option<SocketAddr>,
    pub log: PathBuf,
}

pub static LOGS: AtomicU64 = AtomicU64::new(0);

impl Broker {
    /// Start the binary with 2 reactors on fresh loopback ports, under `ulimit -n nofile` if
    /// given, with `extra` flags, and wait until its listeners answer.
    pub fn spawn(nofile: Option<u32>, extra: &[String]) -> Broker {
        Broker::spawn_under(nofile.map(|n| format!("ulimit -n {n}")), extra)
    }

    /// [`Broker::spawn`] under a shell `ulimit` command (e.g. `ulimit -Sn 512`: the soft
    /// limit only).
    pub fn spawn_under(ulimit: Option<String>, extra: &[String]) -> Broker {
        let bin = env!("CARGO_BIN_EXE_stompbox");
        let mut last_log = String::new();
        for _ in 0..3 {
            let ws: SocketAddr = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let tcp: SocketAddr = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let mut args = vec![
                "--listen".to_string(),
                ws.to_string(),
                "--tcp-listen".to_string(),
                tcp.to_string(),
                "--reactors".to_string(),
                "2".to_string(),
            ];
            // When the binary serves metrics it must not take the shared default port.
            let metrics = has_flag("--metrics-listen")
                .then(|| SocketAddr::from(([127, 0, 0, 1], free_port())));
            if let Some(m) = metrics {
                args.push("--metrics-listen".to_string());
                args.push(m.to_string());
            }
            args.extend_from_slice(extra);
            let log = std::env::temp_dir().join(format!(
                "stompbox-operations-{}-{}.log",
                std::process::id(),
                LOGS.fetch_add(1, Ordering::Relaxed)
            ));
            let err = std::fs::File::create(&log).expect("log file");
            let mut cmd = match &ulimit {
                Some(u) => {
                    let mut c = Command::new("sh");
                    c.arg("-c")
                        .arg(format!("{u} && exec \"$0\" \"$@\""))
                        .arg(bin);
                    c
                }
                None => Command::new(bin),
            };
            let child = cmd
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(err)
                .spawn()
                .expect("spawn stompbox");
            let mut b = Broker {
                child,
                ws,
                tcp,
                metrics,
                log,
            };
            let up = wait_for(TIMEOUT, || {
                if b.exited().is_some() {
                    return Some(false);
                }
                let ok = [b.ws, b.tcp]
                    .iter()
                    .chain(b.metrics.iter())
                    .all(|a| TcpStream::connect_timeout(a, Duration::from_millis(200)).is_ok());
                ok.then_some(true)
            });
            if up == Some(true) {
                return b;
            }
            last_log = b.log_text();
            // A port taken between our probe and the broker's bind: try others.
        }
        panic!("stompbox did not start; its stderr:\n{last_log}");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn status_kib(&self, field: &str) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("/proc/<pid>/status");
        s.lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/<pid>/status"))
    }

    pub fn rss_kib(&self) -> u64 {
        self.status_kib("RssAnon:")
    }

    /// utime + stime, in clock ticks (USER_HZ, 100 per second on Linux).
    pub fn cpu_ticks(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .expect("/proc/<pid>/stat");
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = &s[s.rfind(')').expect("stat format") + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        // rest[0] is field 3 (state): utime is field 14, stime field 15.
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    }

    /// Descriptors open below `limit` (an inherited descriptor numbered above a lowered limit
    /// takes no slot under it).
    pub fn fds_below(&self, limit: usize) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("/proc/<pid>/fd")
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<usize>().ok())
            .filter(|&fd| fd < limit)
            .count()
    }

    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        wait_for(limit, || self.exited())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

// ---------------------------------------------------------------------------------------------
// Paced publishing and counting subscribers: the publisher keeps at most `window` messages
// ahead of the fast subscriber, so the fast one is never itself over the outbound bound (it
// reads as fast as it can; the window only stops the test's publisher from outrunning it).

#[derive(Default)]
pub struct Progress {
    pub received: Mutex<u64>,
    pub cv: Condvar,
}

impl Progress {
    pub fn add(&self, n: u64) {
        let mut r = self.received.lock().unwrap();
        *r += n;
        self.cv.notify_all();
    }
}

/// A subscriber on raw TCP counting MESSAGE frames by their NUL terminators (bodies hold no
/// NUL) until `n`; returns the count and when the n-th arrived.
pub fn spawn_counter(
    mut s: TcpStream,
    leftover: Vec<u8>,
    n: u64,
    p: Arc<Progress>,
) -> JoinHandle<(u64, Instant)> {
    std::thread::spawn(move || {
        let mut count = memchr::memchr_iter(0, &leftover).count() as u64;
        p.add(count);
        let mut buf = vec![0u8; 256 * 1024];
        while count < n {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => {
                    let c = memchr::memchr_iter(0, &buf[..k]).count() as u64;
                    count += c;
                    p.add(c);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let at = Instant::now();
        // Wake a publisher waiting on a window that will never open.
        p.add(0);
        (count, at)
    })
}

/// Publish `n` copies of `msg` (one SEND frame) in batches, at most `window` ahead of `p`.
/// Returns when the publishing started. Panics if the subscriber stalls for 5 s.
pub fn publish_paced(
    publisher: &mut TcpStream,
    msg: &[u8],
    n: u64,
    window: u64,
    p: &Progress,
) -> Instant {
    const BATCH: u64 = 256;
    let batch: Vec<u8> = msg.repeat(BATCH as usize);
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < n {
        let k = BATCH.min(n - sent);
        let mut r = p.received.lock().unwrap();
        while sent + k > *r + window {
            let before = *r;
            let (g, to) = p.cv.wait_timeout(r, TIMEOUT).unwrap();
            r = g;
            assert!(
                !(to.timed_out() && *r == before),
                "the fast subscriber stalled at {before} of {n} (sent {sent})"
            );
        }
        drop(r);
        publisher
            .write_all(&batch[..(k as usize) * msg.len()])
            .expect("publish");
        sent += k;
    }
    start
}

/// A raw TCP STOMP subscriber to `dest`, subscribed (receipt seen), with `SO_RCVBUF` if given.
pub fn raw_subscriber(addr: SocketAddr, dest: &str, rcvbuf: Option<i32>) -> (TcpStream, Vec<u8>) {
    let s = sys::connect_tcp(v4(addr), None, rcvbuf).expect("connect");
    let mut c = Client::from_tcp(s).stomp();
    c.subscribe(dest, "0");
    c.into_tcp()
}

/// Read whatever a slow subscriber has coming until EOF, reset or 5 s of silence. Returns the
/// ERROR frames found and how the stream ended.
pub fn drain(s: TcpStream, leftover: Vec<u8>) -> (Vec<Frame>, u64, End) {
    let mut c = Client::from_tcp(s);
    c.buf = leftover;
    let mut errors = Vec::new();
    let mut messages = 0;
    loop {
        match c.next_frame() {
            Ok(f) if f.command == "MESSAGE" => messages += 1,
            Ok(f) => errors.push(f),
            Err(e) => return (errors, messages, e),
        }
    }
}
