//! The HTTP thread: `/metrics` (OpenMetrics), `/healthz`, `/readyz` on the metrics listener,
//! and the admin API (`/api/`) and console (`/console/`) on the admin listener (its own, TLS
//! or not, or the metrics listener). HTTP/1.1, one request per connection, non-blocking: many
//! clients at once, a slow one does not hold the others (each has [`CLIENT_DEADLINE`]);
//! nothing here touches a reactor but its mailbox and doorbell.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use rustls::ServerConnection;

use super::api::{Api, Job, Outcome, Request, Response};
use super::{Answer, Replies, Reply};
use crate::config::AdminConfig;
use crate::server::mailbox::Mailbox;
use crate::server::metrics::Stats;

const STOP: Token = Token(usize::MAX);
const METRICS: Token = Token(usize::MAX - 1);
const ADMIN: Token = Token(usize::MAX - 2);

/// Clients served at once per listener (more wait in its listen backlog): clients holding
/// the admin listener's slots do not keep scrapes off the metrics listener, nor the reverse.
const MAX_CLIENTS: usize = 64;
/// A client must send its request and read the answer within this.
const CLIENT_DEADLINE: Duration = Duration::from_secs(5);
/// `/readyz` waits this long for every reactor to turn.
const READY_WAIT: Duration = Duration::from_millis(1000);
/// Largest request head and body.
const MAX_REQUEST: usize = 16 * 1024;
/// Answers from the reactors in flight at most (per client, one ask per reactor).
const REPLIES_BOUND: usize = 4096;

/// The console: one page, shipped in the binary.
const CONSOLE: &str = include_str!("console.html");
/// What the console may load: itself, and API calls to its origin.
const CONSOLE_CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

pub struct HttpServer {
    poll: Poll,
    metrics: Option<TcpListener>,
    /// The admin listener and its TLS, when the API has its own.
    admin: Option<(TcpListener, Option<Arc<rustls::ServerConfig>>)>,
    stats: Arc<Stats>,
    shutdown: Arc<AtomicBool>,
    /// The reactors' mailboxes (set before `run`): `/readyz` rings them and waits for a turn;
    /// the API asks them.
    pub reactors: Vec<Mailbox>,
    api: Option<Api>,
    admin_cfg: Option<AdminConfig>,
    replies: Receiver<Reply>,
    replies_tx: Replies,
    seq: u64,
    /// Clients open on the metrics listener and on the admin listener, and whether each
    /// stopped accepting at the limit.
    open: [usize; 2],
    saturated: [bool; 2],
}

/// What a server bound: the thread's state, its doorbell, the metrics and admin addresses.
pub struct Bound {
    pub server: HttpServer,
    pub waker: Arc<Waker>,
    pub metrics: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
}

enum Wait {
    None,
    /// `/readyz`: each reactor's turn count when asked, and when to give up.
    Ready(Vec<u64>, Instant),
    /// An API call waiting for reactors or the login worker: its ask id, and its request
    /// head's length (to handle it again once its login is checked).
    Job(u64, Job, usize),
}

/// One client connection.
struct Client {
    sock: TcpStream,
    tls: Option<Box<ServerConnection>>,
    /// Accepted where the admin API is served.
    admin: bool,
    /// Accepted on the admin listener (1) or the metrics one (0).
    side: usize,
    req: Vec<u8>,
    resp: Vec<u8>,
    sent: usize,
    /// TLS: the close_notify after the answer is queued.
    notified: bool,
    deadline: Instant,
    wait: Wait,
}

impl HttpServer {
    /// Where answers for the admin API go (the bridge answers JetStream purges there).
    pub fn replies(&self) -> Replies {
        self.replies_tx.clone()
    }

    /// Bind the metrics listener and the admin one (if the API has its own).
    pub fn bind(
        metrics: Option<SocketAddr>,
        admin: Option<AdminConfig>,
        stats: Arc<Stats>,
        shutdown: Arc<AtomicBool>,
    ) -> io::Result<Bound> {
        let poll = Poll::new()?;
        let listen = |addr: SocketAddr, option: &str, token| -> io::Result<TcpListener> {
            let mut l = TcpListener::bind(addr)
                .map_err(|e| io::Error::new(e.kind(), format!("{option} {addr}: {e}")))?;
            poll.registry()
                .register(&mut l, token, Interest::READABLE)?;
            Ok(l)
        };
        let metrics = metrics
            .map(|a| listen(a, "listen.metrics", METRICS))
            .transpose()?;
        let admin_l = match admin
            .as_ref()
            .and_then(|a| a.listen.map(|l| (l, a.tls.clone())))
        {
            Some((addr, tls)) => Some((listen(addr, "listen.admin", ADMIN)?, tls)),
            None => None,
        };
        let metrics_addr = metrics.as_ref().map(|l| l.local_addr()).transpose()?;
        let admin_addr = match (&admin, &admin_l) {
            (_, Some((l, _))) => Some(l.local_addr()?),
            (Some(_), None) => metrics_addr,
            (None, None) => None,
        };
        let waker = Arc::new(Waker::new(poll.registry(), STOP)?);
        let (tx, replies) = crossbeam_channel::bounded(REPLIES_BOUND);
        let replies_tx = Replies {
            tx,
            waker: Arc::clone(&waker),
        };
        Ok(Bound {
            server: HttpServer {
                poll,
                metrics,
                admin: admin_l,
                stats,
                shutdown,
                reactors: Vec::new(),
                api: None,
                admin_cfg: admin,
                replies,
                replies_tx,
                seq: 0,
                open: [0, 0],
                saturated: [false, false],
            },
            waker,
            metrics: metrics_addr,
            admin: admin_addr,
        })
    }

    pub fn run(mut self) -> io::Result<()> {
        if let Some(cfg) = self.admin_cfg.take() {
            self.api = Some(Api::new(
                cfg,
                Arc::clone(&self.stats),
                self.reactors.clone(),
                self.replies_tx.clone(),
            ));
        }
        let mut events = Events::with_capacity(64);
        let mut clients: slab::Slab<Client> = slab::Slab::new();
        loop {
            // Clients waiting on reactors are checked often; the API samples its rates each
            // second.
            let timeout = if !clients.is_empty() {
                Some(Duration::from_millis(20))
            } else if self.api.is_some() {
                Some(Duration::from_secs(1))
            } else {
                None
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            if self.shutdown.load(Ordering::Acquire) {
                return Ok(());
            }
            let now = Instant::now();
            if let Some(api) = &mut self.api {
                api.tick(now);
            }
            for ev in events.iter() {
                match ev.token() {
                    STOP => {}
                    METRICS => self.accept(&mut clients, false, now),
                    ADMIN => self.accept(&mut clients, true, now),
                    Token(k) => self.step(&mut clients, k, now),
                }
            }
            while let Ok(reply) = self.replies.try_recv() {
                self.on_reply(&mut clients, reply, now);
            }
            // Deadlines, and `/readyz` waits (reactors are checked every pass).
            let keys: Vec<usize> = clients.iter().map(|(k, _)| k).collect();
            for k in keys {
                let Some(c) = clients.get_mut(k) else {
                    continue;
                };
                if now >= c.deadline {
                    if matches!(c.wait, Wait::Job(..)) {
                        // The reactors (or the login check) took too long: say so, with a
                        // moment to write it.
                        c.wait = Wait::None;
                        c.answer_json((504, error_json("no answer in time: try again")));
                        c.deadline = now + Duration::from_secs(1);
                        self.step(&mut clients, k, now);
                    } else {
                        self.drop_client(&mut clients, k);
                    }
                } else if matches!(c.wait, Wait::Ready(..)) {
                    self.step(&mut clients, k, now);
                }
            }
            for side in 0..2 {
                if self.saturated[side] && self.open[side] < MAX_CLIENTS {
                    self.saturated[side] = false;
                    self.accept(&mut clients, side == 1, now);
                }
            }
        }
    }

    fn accept(&mut self, clients: &mut slab::Slab<Client>, admin_listener: bool, now: Instant) {
        let (listener, tls) = if admin_listener {
            match &self.admin {
                Some((l, t)) => (l, t.clone()),
                None => return,
            }
        } else {
            match &self.metrics {
                Some(l) => (l, None),
                None => return,
            }
        };
        // The metrics listener serves the API too when it has no listener of its own.
        let admin = self.api.is_some() && (admin_listener || self.admin.is_none());
        let side = usize::from(admin_listener);
        let mut open = self.open[side];
        loop {
            if open >= MAX_CLIENTS {
                // Full: what waits in the backlog is taken when a client leaves (edge-triggered
                // readiness would not say it again).
                self.saturated[side] = true;
                break;
            }
            match listener.accept() {
                Ok((mut sock, _)) => {
                    let tls = match &tls {
                        None => None,
                        Some(cfg) => match ServerConnection::new(Arc::clone(cfg)) {
                            Ok(c) => Some(Box::new(c)),
                            Err(_) => continue,
                        },
                    };
                    let entry = clients.vacant_entry();
                    let token = Token(entry.key());
                    if self
                        .poll
                        .registry()
                        .register(&mut sock, token, Interest::READABLE | Interest::WRITABLE)
                        .is_ok()
                    {
                        entry.insert(Client {
                            sock,
                            tls,
                            admin,
                            side,
                            req: Vec::new(),
                            resp: Vec::new(),
                            sent: 0,
                            notified: false,
                            deadline: now + CLIENT_DEADLINE,
                            wait: Wait::None,
                        });
                        open += 1;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        self.open[side] = open;
    }

    fn drop_client(&mut self, clients: &mut slab::Slab<Client>, k: usize) {
        if let Some(mut c) = clients.try_remove(k) {
            self.open[c.side] -= 1;
            let _ = self.poll.registry().deregister(&mut c.sock);
        }
    }

    fn on_reply(&mut self, clients: &mut slab::Slab<Client>, reply: Reply, now: Instant) {
        let Some(api) = self.api.as_mut() else {
            return;
        };
        if let Answer::Login { ip, good } = reply.answer {
            // Counted whether or not the client waited for it.
            api.login_settled(ip, good, now);
        }
        // An ask id is the client's slab key (high bits) and a sequence number.
        let k = (reply.id >> 32) as usize;
        let Some(c) = clients.get_mut(k) else {
            return;
        };
        if !matches!(&c.wait, Wait::Job(id, ..) if *id == reply.id) {
            return;
        }
        let Wait::Job(id, mut job, head_len) = std::mem::replace(&mut c.wait, Wait::None) else {
            return;
        };
        let resp = if let Answer::Login { good, .. } = reply.answer {
            let peer = c.sock.peer_addr().ok().map(|a| a.ip());
            match api.login_checked(job, peer, good, now) {
                Ok(user) => {
                    // Good: the request is handled again as that user.
                    self.seq += 1;
                    let id = ((k as u64) << 32) | (self.seq & 0xFFFF_FFFF);
                    self.answer(c, head_len, id, now, Some(&user));
                    if !matches!(c.wait, Wait::None) {
                        return;
                    }
                    self.step(clients, k, now);
                    return;
                }
                Err(resp) => resp,
            }
        } else {
            match api.on_reply(&mut job, reply, id) {
                Some(resp) => resp,
                None => {
                    c.wait = Wait::Job(id, job, head_len);
                    return;
                }
            }
        };
        c.answer_json(resp);
        self.step(clients, k, now);
    }

    /// Read, answer, write: the client is dropped when it is done or broken.
    fn step(&mut self, clients: &mut slab::Slab<Client>, k: usize, now: Instant) {
        let Some(c) = clients.get_mut(k) else {
            return;
        };
        if matches!(c.wait, Wait::Ready(..)) {
            self.check_ready(c, now);
        }
        let done = match c.io() {
            Ok(Some(head_len)) => {
                self.seq += 1;
                let id = ((k as u64) << 32) | (self.seq & 0xFFFF_FFFF);
                self.answer(c, head_len, id, now, None);
                c.write().unwrap_or(true)
            }
            Ok(None) => c.write().unwrap_or(true),
            Err(()) => true,
        };
        if done {
            self.drop_client(clients, k);
        }
    }

    /// Answer a whole request (its head is `head_len` bytes of `c.req`); `verified`: the user
    /// the login worker found its HTTP Basic credentials good for.
    fn answer(
        &mut self,
        c: &mut Client,
        head_len: usize,
        id: u64,
        now: Instant,
        verified: Option<&str>,
    ) {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        let (method, target) = match req.parse(&c.req) {
            Ok(_) => (
                req.method.unwrap_or("").to_string(),
                req.path.unwrap_or("").to_string(),
            ),
            Err(_) => {
                c.answer(
                    "400 Bad Request",
                    "text/plain; charset=utf-8",
                    b"bad request\n",
                    &[],
                );
                return;
            }
        };
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        if c.admin && (path == "/api" || path.starts_with("/api/")) {
            let authorization = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("authorization"))
                .and_then(|h| std::str::from_utf8(h.value).ok());
            let r = Request {
                method: &method,
                path,
                query,
                authorization,
                body: c.req.get(head_len..).unwrap_or_default(),
                tls: c.tls.is_some(),
                peer: c.sock.peer_addr().ok().map(|a| a.ip()),
                verified,
            };
            let Some(api) = self.api.as_mut() else {
                return;
            };
            match api.handle(&r, id, now) {
                Outcome::Done(resp) => c.answer_json(resp),
                Outcome::Pending(job) => c.wait = Wait::Job(id, job, head_len),
            }
            return;
        }
        let get = method == "GET";
        match path {
            "/console/" | "/console/index.html" if c.admin && get => c.answer(
                "200 OK",
                "text/html; charset=utf-8",
                CONSOLE.as_bytes(),
                &[
                    ("Content-Security-Policy", CONSOLE_CSP),
                    ("X-Content-Type-Options", "nosniff"),
                    ("X-Frame-Options", "DENY"),
                    ("Referrer-Policy", "no-referrer"),
                    ("Cache-Control", "no-cache"),
                ],
            ),
            "/" | "/console" if c.admin && get => c.answer(
                "301 Moved Permanently",
                "text/plain; charset=utf-8",
                b"the console is at /console/\n",
                &[("Location", "/console/")],
            ),
            "/metrics" if get && self.metrics.is_some() => c.answer(
                "200 OK",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                self.stats.render().as_bytes(),
                &[],
            ),
            "/healthz" if get => c.answer(
                "200 OK",
                "text/plain; charset=utf-8",
                self.stats.health().as_bytes(),
                &[],
            ),
            "/readyz" if get => {
                let turns = self
                    .stats
                    .reactors
                    .iter()
                    .map(|r| r.loop_turns.load(Ordering::Relaxed))
                    .collect();
                for r in &self.reactors {
                    r.wake();
                }
                c.wait = Wait::Ready(turns, now + READY_WAIT);
            }
            _ => c.answer(
                "404 Not Found",
                "text/plain; charset=utf-8",
                if c.admin {
                    b"try /api/overview or /console/\n".as_slice()
                } else {
                    b"try /metrics, /healthz or /readyz\n".as_slice()
                },
                &[],
            ),
        }
    }

    fn check_ready(&self, c: &mut Client, now: Instant) {
        let Wait::Ready(before, until) = &c.wait else {
            return;
        };
        let (ready, why) = self.stats.readiness(before);
        if ready || now >= *until {
            let status = if ready {
                "200 OK"
            } else {
                "503 Service Unavailable"
            };
            c.wait = Wait::None;
            c.answer(status, "text/plain; charset=utf-8", why.as_bytes(), &[]);
        }
    }
}

fn error_json(message: &str) -> String {
    serde_json::json!({ "error": message }).to_string()
}

fn status_line(code: u16) -> &'static str {
    match code {
        200 => "200 OK",
        400 => "400 Bad Request",
        401 => "401 Unauthorized",
        403 => "403 Forbidden",
        404 => "404 Not Found",
        405 => "405 Method Not Allowed",
        429 => "429 Too Many Requests",
        502 => "502 Bad Gateway",
        503 => "503 Service Unavailable",
        504 => "504 Gateway Timeout",
        _ => "500 Internal Server Error",
    }
}

impl Client {
    /// Read (and, with TLS, handshake): `Ok(Some(head length))` once a whole request is in
    /// and not yet answered, `Ok(None)` to wait, `Err` when the client is done or broken.
    fn io(&mut self) -> Result<Option<usize>, ()> {
        // Answered, or waiting for the reactors: nothing more is read.
        if !self.resp.is_empty() || !matches!(self.wait, Wait::None) {
            return Ok(None);
        }
        let mut buf = [0u8; 4096];
        let mut eof = false;
        loop {
            let r = match &mut self.tls {
                Some(t) => {
                    let r = crate::server::tls::read(t, &mut self.sock, &mut buf);
                    // Handshake records go out as they are made.
                    while t.wants_write() {
                        match t.write_tls(&mut self.sock) {
                            Ok(_) => {}
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(_) => return Err(()),
                        }
                    }
                    r
                }
                None => self.sock.read(&mut buf),
            };
            match r {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    self.req.extend_from_slice(buf.get(..n).unwrap_or_default());
                    if self.req.len() > MAX_REQUEST {
                        return Err(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Err(()),
            }
        }
        let Some(head_end) = self.req.windows(4).position(|w| w == b"\r\n\r\n") else {
            // A client that closed before its request was whole is gone.
            return if eof { Err(()) } else { Ok(None) };
        };
        let head_len = head_end + 4;
        let body_len = content_length(self.req.get(..head_len).unwrap_or_default());
        if self.req.len() < head_len + body_len {
            return if eof { Err(()) } else { Ok(None) };
        }
        Ok(Some(head_len))
    }

    /// Write the answer: `Ok(true)` once all is written (the client is done).
    fn write(&mut self) -> Result<bool, ()> {
        if self.resp.is_empty() {
            return Ok(false);
        }
        if let Some(t) = &mut self.tls {
            while self.sent < self.resp.len() {
                match t
                    .writer()
                    .write(self.resp.get(self.sent..).unwrap_or_default())
                {
                    Ok(0) => break,
                    Ok(n) => self.sent += n,
                    Err(_) => return Err(()),
                }
            }
            if self.sent >= self.resp.len() && !self.notified {
                self.notified = true;
                t.send_close_notify();
            }
            while t.wants_write() {
                match t.write_tls(&mut self.sock) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return Err(()),
                }
            }
            if self.sent < self.resp.len() {
                return Ok(false);
            }
        } else {
            while self.sent < self.resp.len() {
                match self
                    .sock
                    .write(self.resp.get(self.sent..).unwrap_or_default())
                {
                    Ok(0) => return Err(()),
                    Ok(n) => self.sent += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => return Err(()),
                }
            }
        }
        let _ = self.sock.shutdown(std::net::Shutdown::Write);
        Ok(true)
    }

    fn answer(&mut self, status: &str, ctype: &str, body: &[u8], extra: &[(&str, &str)]) {
        let mut head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        for (k, v) in extra {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let mut resp = head.into_bytes();
        resp.extend_from_slice(body);
        self.resp = resp;
        self.sent = 0;
    }

    fn answer_json(&mut self, (code, body): Response) {
        let mut extra = vec![("Cache-Control", "no-store")];
        match code {
            // Bearer only: a Basic challenge would make browsers pop up their own login box
            // over the console's.
            401 => extra.push(("WWW-Authenticate", "Bearer realm=\"stompbox admin\"")),
            // Failed logins are slowed down by up to 5 s.
            429 => extra.push(("Retry-After", "5")),
            503 => extra.push(("Retry-After", "1")),
            _ => {}
        }
        self.answer(
            status_line(code),
            "application/json",
            body.as_bytes(),
            &extra,
        );
    }
}

/// A request head's `Content-Length` (0 when absent or malformed: such a body is not read).
fn content_length(head: &[u8]) -> usize {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    if req.parse(head).is_err() {
        return 0;
    }
    req.headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}
