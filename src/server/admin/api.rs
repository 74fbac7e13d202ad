//! The admin API's endpoints: who may call them, what each answers, and the jobs that gather
//! answers from the reactors. No sockets here: [`super::http`] reads requests and writes
//! responses.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::login::{Busy, Logins};
use super::{parse_conn_id, Answer, Ask, ConnRow, Filter, QueueRow, Replies, Reply, What};
use crate::config::AdminConfig;
use crate::server::mailbox::{Mail, Mailbox};
use crate::server::metrics::Stats;

/// Rows of a connections page at most, and by default.
const MAX_PAGE: usize = 1000;
const DEFAULT_PAGE: usize = 100;
/// Destinations of each kind listed at most.
const MAX_DESTINATIONS: usize = 10_000;
/// Destinations whose last count is kept for their rates.
const MAX_RATED: usize = 100_000;
/// Addresses whose failed Basic logins are remembered.
const MAX_LOCKED: usize = 10_000;

/// A request, as far as the API needs it.
pub struct Request<'a> {
    pub method: &'a str,
    /// The path without the query.
    pub path: &'a str,
    pub query: &'a str,
    pub authorization: Option<&'a str>,
    pub body: &'a [u8],
    /// It came over TLS.
    pub tls: bool,
    pub peer: Option<IpAddr>,
    /// The user whose HTTP Basic credentials in this very request the login worker found
    /// good (the request is handled again once it has).
    pub verified: Option<&'a str>,
}

/// An answer: status, JSON body.
pub type Response = (u16, String);

/// What a request turned into.
pub enum Outcome {
    Done(Response),
    /// Waiting for the reactors; `on_reply` finishes it.
    Pending(Job),
}

/// A request waiting for reactors (or for the login worker).
pub struct Job {
    kind: JobKind,
    /// Answers still expected (for asks sent to every reactor at once).
    waiting: usize,
}

enum JobKind {
    /// Its HTTP Basic credentials are being checked.
    Login {
        user: String,
        method: String,
        path: String,
    },
    Connections {
        limit: usize,
        filter: Arc<Filter>,
        /// Only this reactor (`reactor=`).
        only: Option<usize>,
        rows: Vec<ConnRow>,
    },
    Connection,
    Close {
        id: String,
        who: String,
        reason: String,
    },
    Destinations {
        limit: usize,
        topics: HashMap<String, (u64, u64)>,
        queues: Vec<QueueRow>,
    },
    Purge {
        queue: String,
        who: String,
        /// The home reactor's answer: messages it held (`None`: no such queue there), and
        /// whether the bridge answers too.
        held: Option<(Option<u64>, bool)>,
        /// The bridge's answer (JetStream store).
        stream: Option<Result<u64, String>>,
    },
}

/// Who called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Token,
    User(String),
}

impl Principal {
    fn name(&self) -> String {
        match self {
            Principal::Token => "token".to_string(),
            Principal::User(u) => u.clone(),
        }
    }
}

/// Totals sampled once a second, for rates.
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    messages_in: u64,
    messages_out: u64,
    bytes_in: u64,
    bytes_out: u64,
}

pub struct Api {
    cfg: AdminConfig,
    stats: Arc<Stats>,
    reactors: Vec<Mailbox>,
    replies: Replies,
    started: Instant,
    /// The last two samples of the totals, and of each reactor's CPU time.
    sample: Option<(Instant, Totals, Vec<f64>)>,
    rates: Totals,
    rates_dt: f64,
    cpu_percent: Vec<f64>,
    /// Per reactor: its loop turns when last sampled, and when that count last moved (an idle
    /// reactor has had no long turn lately, whatever its last window said).
    turns_seen: Vec<(u64, Instant)>,
    /// Per destination: (messages, when counted, rate then).
    dest_rates: HashMap<String, (u64, Instant, f64)>,
    /// Addresses refused Basic logins until then.
    locked: HashMap<IpAddr, Instant>,
    /// Refused calls: when one was last logged, and how many since.
    refusals: (Option<Instant>, u64),
    /// HTTP Basic checks off this thread (with a users file).
    logins: Option<Logins>,
}

/// Why a request is not let in yet.
enum Denied {
    /// Refused with this answer.
    Refused(Response),
    /// Its HTTP Basic credentials need checking (argon2): off this thread.
    Check { user: String, pass: String },
}

/// Refused calls are logged at most this often (each with the count since the last).
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

fn error(status: u16, message: impl Into<String>) -> Response {
    (status, json!({ "error": message.into() }).to_string())
}

fn ok(v: Value) -> Response {
    (200, v.to_string())
}

/// `a` and `b` are equal, in time that depends only on their lengths.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Query parameters, percent-decoded (`+` as a space); a malformed one is taken as it is.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        crate::sockjs::percent_decode(&s).unwrap_or(s)
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn param<'q>(pairs: &'q [(String, String)], name: &str) -> Option<&'q str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// CPU seconds a thread has used, from `/proc/self/task/<tid>/stat` (utime + stime).
fn thread_cpu_seconds(tid: u64) -> Option<f64> {
    if tid == 0 {
        return None;
    }
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: fields count after its end.
    let rest = text.get(text.rfind(')')? + 2..)?;
    let mut f = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    // USER_HZ is 100 on Linux whatever the kernel's tick.
    Some((utime + stime) as f64 / 100.0)
}

impl Api {
    pub fn new(
        cfg: AdminConfig,
        stats: Arc<Stats>,
        reactors: Vec<Mailbox>,
        replies: Replies,
    ) -> Self {
        let n = stats.reactors.len();
        let logins = cfg.users.as_ref().and_then(|users| {
            Logins::start(Arc::clone(users), replies.clone())
                .map_err(|e| log::error!("admin: no login thread ({e}): HTTP Basic refused"))
                .ok()
        });
        Api {
            cfg,
            stats,
            reactors,
            replies,
            started: Instant::now(),
            sample: None,
            rates: Totals::default(),
            rates_dt: 0.0,
            cpu_percent: vec![0.0; n],
            turns_seen: vec![(0, Instant::now()); n],
            dest_rates: HashMap::new(),
            locked: HashMap::new(),
            refusals: (None, 0),
            logins,
        }
    }

    /// Sample the totals and the reactors' CPU time (at most once a second): the rates.
    pub fn tick(&mut self, now: Instant) {
        if let Some((at, _, _)) = &self.sample {
            if now.duration_since(*at) < Duration::from_secs(1) {
                return;
            }
        }
        let mut t = Totals::default();
        let mut cpu = Vec::with_capacity(self.stats.reactors.len());
        for (r, seen) in self.stats.reactors.iter().zip(&mut self.turns_seen) {
            let turns = r.loop_turns.load(Ordering::Relaxed);
            if turns != seen.0 {
                *seen = (turns, now);
            }
            t.messages_in += r.messages_in.load(Ordering::Relaxed);
            t.messages_out += r.messages_out.load(Ordering::Relaxed);
            t.bytes_in += r.bytes_in.load(Ordering::Relaxed);
            t.bytes_out += r.bytes_out.load(Ordering::Relaxed);
            cpu.push(thread_cpu_seconds(r.tid.load(Ordering::Relaxed)).unwrap_or(0.0));
        }
        if let Some((at, before, cpu_before)) = &self.sample {
            let dt = now.duration_since(*at).as_secs_f64().max(1e-3);
            let rate = |a: u64, b: u64| (a.saturating_sub(b)) as f64 / dt;
            self.rates = Totals {
                messages_in: rate(t.messages_in, before.messages_in) as u64,
                messages_out: rate(t.messages_out, before.messages_out) as u64,
                bytes_in: rate(t.bytes_in, before.bytes_in) as u64,
                bytes_out: rate(t.bytes_out, before.bytes_out) as u64,
            };
            self.rates_dt = dt;
            self.cpu_percent = cpu
                .iter()
                .zip(cpu_before)
                .map(|(a, b)| ((a - b) / dt * 100.0).max(0.0))
                .collect();
        }
        self.sample = Some((now, t, cpu));
    }

    /// Check the caller's credentials: a token, or HTTP Basic verified before (cached) or by
    /// the login worker for this request; other Basic logins are to be checked.
    fn authorize(&mut self, req: &Request<'_>, now: Instant) -> Result<Principal, Denied> {
        let refuse = |status, message: &str| Err(Denied::Refused(error(status, message)));
        let Some(auth) = req.authorization else {
            return refuse(401, "credentials required (Authorization: Bearer <token>)");
        };
        let (scheme, cred) = auth.trim().split_once(' ').unwrap_or((auth, ""));
        let cred = cred.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            return match &self.cfg.token {
                Some(t) if same(t.as_bytes(), cred.as_bytes()) => Ok(Principal::Token),
                _ => refuse(401, "the bearer token is not the admin token"),
            };
        }
        if !scheme.eq_ignore_ascii_case("basic") {
            return refuse(401, "unsupported authorization scheme");
        }
        if !req.tls {
            return refuse(
                401,
                "HTTP Basic is accepted over TLS only (listen.admin with tls.admin)",
            );
        }
        let Some(users) = self.cfg.users.clone() else {
            return refuse(401, "no users file: HTTP Basic is not available");
        };
        if let Some(until) = req.peer.and_then(|ip| self.locked.get(&ip)) {
            if now < *until {
                return refuse(429, "too many failed logins: try again later");
            }
        }
        use base64::Engine;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(cred)
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        let Some((user, pass)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
            return refuse(401, "malformed Basic credentials");
        };
        use crate::session::{AuthCheck, Authenticator};
        let known = req.verified == Some(user)
            || (!user.is_empty() && users.check(Some(user), Some(pass), None) == AuthCheck::Allow);
        if !known {
            return Err(Denied::Check {
                user: user.to_string(),
                pass: pass.to_string(),
            });
        }
        if !users.has_role(user, "admin") {
            return refuse(403, &format!("user {user} lacks the admin role"));
        }
        Ok(Principal::User(user.to_string()))
    }

    /// The login worker answered for `ip`: remember a failure (later logins from there are
    /// refused for a while) or forget earlier ones. Called for every answer, whether or not
    /// its client is still there.
    pub fn login_settled(&mut self, ip: Option<IpAddr>, good: bool, now: Instant) {
        if let Some(l) = &mut self.logins {
            l.done(ip);
        }
        let Some(users) = &self.cfg.users else {
            return;
        };
        use crate::session::Authenticator;
        let delay = users.failure_delay(ip, good);
        let Some(ip) = ip else {
            return;
        };
        if good {
            self.locked.remove(&ip);
            return;
        }
        if self.locked.len() >= MAX_LOCKED {
            self.locked.retain(|_, t| *t > now);
        }
        if self.locked.len() < MAX_LOCKED {
            self.locked.insert(ip, now + delay);
        }
    }

    /// The login worker's verdict for a waiting request: `Ok(user)` to handle the request
    /// again as that user, or the refusal to send.
    pub fn login_checked(
        &mut self,
        job: Job,
        peer: Option<IpAddr>,
        good: bool,
        now: Instant,
    ) -> Result<String, Response> {
        let JobKind::Login { user, method, path } = job.kind else {
            return Err(error(500, "the login worker answered another question"));
        };
        if good {
            return Ok(user);
        }
        let r = error(401, "bad user or password");
        self.note_refusal(&method, &path, peer, &r, now);
        Err(r)
    }

    /// Log a refused call (401, 403, 429), at most every [`REFUSAL_LOG_EVERY`].
    fn note_refusal(
        &mut self,
        method: &str,
        path: &str,
        peer: Option<IpAddr>,
        (status, body): &Response,
        now: Instant,
    ) {
        self.refusals.1 += 1;
        if self
            .refusals
            .0
            .is_some_and(|t| now.duration_since(t) < REFUSAL_LOG_EVERY)
        {
            return;
        }
        let peer = peer.map_or("?".to_string(), |p| p.to_string());
        log::warn!(
            "admin: refused {method} {path} from {peer} ({status} {body}; {} refused since the last report)",
            self.refusals.1
        );
        self.refusals = (Some(now), 0);
    }

    /// Send `what` to reactor `r`: `false` if its mailbox is full or gone.
    fn ask(&self, r: usize, id: u64, what: What) -> bool {
        let Some(m) = self.reactors.get(r) else {
            return false;
        };
        let ask = Box::new(Ask {
            id,
            what,
            to: self.replies.clone(),
        });
        if m.tx.try_send(Mail::Admin(ask)).is_err() {
            return false;
        }
        m.wake();
        true
    }

    fn busy() -> Outcome {
        Outcome::Done(error(503, "a reactor's mailbox is full: try again"))
    }

    /// Handle a request under `/api/`; `id` names the asks it sends.
    pub fn handle(&mut self, req: &Request<'_>, id: u64, now: Instant) -> Outcome {
        let who = match self.authorize(req, now) {
            Ok(p) => p,
            Err(Denied::Check { user, pass }) => {
                return self.check_login(req, id, user, &pass, now)
            }
            Err(Denied::Refused(r)) => {
                self.note_refusal(req.method, req.path, req.peer, &r, now);
                return Outcome::Done(r);
            }
        };
        // Who made a mutating call, as its log line says.
        let by = match req.peer {
            Some(ip) => format!("{} from {ip}", who.name()),
            None => who.name(),
        };
        let pairs = query_pairs(req.query);
        let route = req.path.strip_prefix("/api").unwrap_or(req.path);
        let segs: Vec<&str> = route.split('/').filter(|s| !s.is_empty()).collect();
        let get = req.method == "GET";
        let post = req.method == "POST";
        match (segs.as_slice(), get, post) {
            (["whoami"], true, _) => Outcome::Done(ok(json!({
                "user": who.name(),
                "method": if who == Principal::Token { "bearer" } else { "basic" },
                "tls": req.tls,
            }))),
            (["overview"], true, _) => Outcome::Done(ok(self.overview(now))),
            (["reactors"], true, _) => Outcome::Done(ok(self.reactors_json())),
            (["nodes"], true, _) => Outcome::Done(ok(self.nodes())),
            (["connections"], true, _) => self.connections(&pairs, id),
            (["connections", cid], true, _) => match parse_conn_id(cid) {
                Some((r, token)) if r < self.reactors.len() => {
                    self.one(r, id, What::Connection { token }, JobKind::Connection)
                }
                _ => Outcome::Done(error(404, "no such connection")),
            },
            (["connections", cid, "close"], _, true) => {
                let reason = serde_json::from_slice::<Value>(req.body)
                    .ok()
                    .and_then(|v| v.get("reason").and_then(|r| r.as_str()).map(String::from))
                    .or_else(|| param(&pairs, "reason").map(String::from))
                    .unwrap_or_default();
                // One line of printable text, bounded: it goes into a STOMP header.
                let reason: String = reason
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(200)
                    .collect();
                let reason = if reason.trim().is_empty() {
                    "no reason given".to_string()
                } else {
                    reason
                };
                match parse_conn_id(cid) {
                    Some((r, token)) if r < self.reactors.len() => {
                        let kind = JobKind::Close {
                            id: cid.to_string(),
                            who: by,
                            reason: reason.clone(),
                        };
                        self.one(r, id, What::Close { token, reason }, kind)
                    }
                    _ => Outcome::Done(error(404, "no such connection")),
                }
            }
            (["destinations"], true, _) => {
                let limit = param(&pairs, "limit")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(1000)
                    .clamp(1, MAX_DESTINATIONS);
                for r in 0..self.reactors.len() {
                    if !self.ask(r, id, What::Destinations { limit }) {
                        return Self::busy();
                    }
                }
                Outcome::Pending(Job {
                    kind: JobKind::Destinations {
                        limit,
                        topics: HashMap::new(),
                        queues: Vec::new(),
                    },
                    waiting: self.reactors.len(),
                })
            }
            (["queues", "purge"], _, true) => {
                let Some(name) = param(&pairs, "name") else {
                    return Outcome::Done(error(400, "name= (the queue) is required"));
                };
                if crate::router::kind(name) != crate::router::DestKind::Queue {
                    return Outcome::Done(error(400, format!("{name} is not a queue")));
                }
                let home = crate::router::spread(name, self.reactors.len());
                let kind = JobKind::Purge {
                    queue: name.to_string(),
                    who: by,
                    held: None,
                    stream: None,
                };
                let what = What::Purge {
                    queue: name.to_string(),
                };
                self.one(home, id, what, kind)
            }
            (
                ["whoami"]
                | ["overview"]
                | ["reactors"]
                | ["nodes"]
                | ["connections"]
                | ["connections", _]
                | ["destinations"],
                false,
                _,
            )
            | (["connections", _, "close"] | ["queues", "purge"], _, false) => {
                Outcome::Done(error(405, "method not allowed"))
            }
            _ => Outcome::Done(error(404, "no such endpoint")),
        }
    }

    /// Hand a request's HTTP Basic credentials to the login worker; the request waits.
    fn check_login(
        &mut self,
        req: &Request<'_>,
        id: u64,
        user: String,
        pass: &str,
        now: Instant,
    ) -> Outcome {
        let queued = match &mut self.logins {
            Some(l) => l.submit(id, req.peer, &user, pass),
            None => Err(Busy::Full),
        };
        let refused = match queued {
            Ok(()) => {
                let kind = JobKind::Login {
                    user,
                    method: req.method.to_string(),
                    path: req.path.to_string(),
                };
                return Outcome::Pending(Job { kind, waiting: 1 });
            }
            Err(Busy::Address) => error(429, "a login from this address is being checked"),
            Err(Busy::Full) => error(503, "too many logins being checked: try again"),
        };
        self.note_refusal(req.method, req.path, req.peer, &refused, now);
        Outcome::Done(refused)
    }

    fn one(&mut self, r: usize, id: u64, what: What, kind: JobKind) -> Outcome {
        if !self.ask(r, id, what) {
            return Self::busy();
        }
        Outcome::Pending(Job { kind, waiting: 1 })
    }

    fn connections(&mut self, pairs: &[(String, String)], id: u64) -> Outcome {
        let limit = param(pairs, "limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(DEFAULT_PAGE)
            .clamp(1, MAX_PAGE);
        let only = match param(pairs, "reactor").map(str::parse::<usize>) {
            None => None,
            Some(Ok(r)) if r < self.reactors.len() => Some(r),
            Some(_) => return Outcome::Done(error(400, "reactor= names no reactor")),
        };
        let filter = Arc::new(Filter {
            q: param(pairs, "q").map(String::from),
            user: param(pairs, "user").map(String::from),
            protocol: param(pairs, "protocol").map(String::from),
        });
        // The cursor: `<reactor>:<slot>`.
        let (mut r, mut from) = match param(pairs, "cursor") {
            None => (only.unwrap_or(0), 0),
            Some(c) => match c
                .split_once(':')
                .and_then(|(r, s)| Some((r.parse().ok()?, s.parse().ok()?)))
            {
                Some(at) => at,
                None => return Outcome::Done(error(400, "malformed cursor")),
            },
        };
        match only {
            // A cursor before the reactor asked for starts at its beginning; past it, the
            // listing is over.
            Some(o) if r < o => (r, from) = (o, 0),
            Some(o) if r > o => r = self.reactors.len(),
            _ => {}
        }
        if r >= self.reactors.len() {
            return Outcome::Done(ok(json!({
                "connections": [], "next": null, "total": self.stats.limits.live(),
            })));
        }
        let what = What::Connections {
            from,
            limit,
            filter: Arc::clone(&filter),
        };
        let kind = JobKind::Connections {
            limit,
            filter,
            only,
            rows: Vec::new(),
        };
        self.one(r, id, what, kind)
    }

    /// A reactor answered for `job`: the response when the job is done (it may ask again).
    pub fn on_reply(&mut self, job: &mut Job, reply: Reply, id: u64) -> Option<Response> {
        job.waiting = job.waiting.saturating_sub(1);
        match (&mut job.kind, reply.answer) {
            (
                JobKind::Connections {
                    limit,
                    filter,
                    only,
                    rows,
                },
                Answer::Connections {
                    rows: mut got,
                    next,
                },
            ) => {
                let now = Instant::now();
                rows.extend(got.drain(..).map(|c| c.row(reply.reactor, now)));
                let at = match next {
                    Some(slot) => Some((reply.reactor, slot)),
                    None if only.is_none() && reply.reactor + 1 < self.reactors.len() => {
                        Some((reply.reactor + 1, 0))
                    }
                    None => None,
                };
                let cursor = at.map(|(r, s)| format!("{r}:{s}"));
                match at {
                    Some((r, from)) if rows.len() < *limit => {
                        let what = What::Connections {
                            from,
                            limit: *limit - rows.len(),
                            filter: Arc::clone(filter),
                        };
                        if !self.ask(r, id, what) {
                            return Some(error(503, "a reactor's mailbox is full: try again"));
                        }
                        job.waiting = 1;
                        None
                    }
                    _ => Some(ok(json!({
                        "connections": rows,
                        "next": cursor,
                        "total": self.stats.limits.live(),
                    }))),
                }
            }
            (JobKind::Connection, Answer::Connection(found)) => Some(match found {
                Some(d) => {
                    let (info, subscriptions_list) = *d;
                    ok(json!(super::ConnDetail {
                        row: info.row(reply.reactor, Instant::now()),
                        subscriptions_list,
                    }))
                }
                None => error(404, "no such connection"),
            }),
            (JobKind::Close { id, who, reason }, Answer::Closed(closed)) => Some(if closed {
                log::info!("admin: {who} closed connection {id} ({reason})");
                ok(json!({ "closed": id }))
            } else {
                error(404, "no such connection")
            }),
            (
                JobKind::Destinations {
                    limit,
                    topics,
                    queues,
                },
                Answer::Destinations {
                    topics: t,
                    queues: mut q,
                },
            ) => {
                for row in t {
                    let e = topics.entry(row.name).or_default();
                    e.0 += row.subscribers;
                    e.1 += row.messages;
                }
                queues.append(&mut q);
                if job.waiting > 0 {
                    return None;
                }
                Some(ok(self.destinations(*limit, topics, queues)))
            }
            (JobKind::Purge { held: h @ None, .. }, Answer::Purged { held, stream }) => {
                *h = Some((held, stream));
                Self::purged(&job.kind)
            }
            (
                JobKind::Purge {
                    stream: s @ None, ..
                },
                Answer::StreamPurged(r),
            ) => {
                *s = Some(r);
                Self::purged(&job.kind)
            }
            _ => Some(error(500, "a reactor answered another question")),
        }
    }

    /// A purge's answer, once the reactor (and with the JetStream store, the bridge) answered.
    fn purged(kind: &JobKind) -> Option<Response> {
        let JobKind::Purge {
            queue,
            who,
            held: Some((held, wants_stream)),
            stream,
        } = kind
        else {
            return None;
        };
        let (n, m) = match (held, wants_stream, stream) {
            (None, false, _) => {
                return Some(error(
                    404,
                    format!("no queue {queue} (or nothing held for it)"),
                ));
            }
            (_, true, None) => return None,
            (_, true, Some(Err(e))) => {
                log::warn!("admin: {who} purged queue {queue}: the JetStream stream was not ({e})");
                return Some(error(
                    502,
                    format!("purging the JetStream stream failed: {e}"),
                ));
            }
            (held, true, Some(Ok(m))) => (held.unwrap_or(0), Some(*m)),
            (Some(n), false, _) => (*n, None),
        };
        match m {
            Some(m) => log::info!(
                "admin: {who} purged queue {queue} ({n} messages held here, {m} in JetStream)"
            ),
            None => log::info!("admin: {who} purged queue {queue} ({n} messages)"),
        }
        Some(ok(
            json!({ "queue": queue, "purged": n, "stream_purged": m }),
        ))
    }

    /// The rate of a destination's count since it was last asked for (at least half a second
    /// before; between, the last rate stands).
    fn rate(&mut self, key: String, count: u64, now: Instant) -> f64 {
        if self.dest_rates.len() >= MAX_RATED && !self.dest_rates.contains_key(&key) {
            self.dest_rates.clear();
        }
        let e = self.dest_rates.entry(key).or_insert((count, now, 0.0));
        let dt = now.duration_since(e.1).as_secs_f64();
        if dt >= 0.5 {
            *e = (count, now, count.saturating_sub(e.0) as f64 / dt);
        }
        e.2
    }

    fn destinations(
        &mut self,
        limit: usize,
        topics: &mut HashMap<String, (u64, u64)>,
        queues: &mut [QueueRow],
    ) -> Value {
        let now = Instant::now();
        let mut t: Vec<(String, u64, u64)> = topics.drain().map(|(n, (s, m))| (n, s, m)).collect();
        t.sort_unstable_by(|a, b| (b.1, b.2, &a.0).cmp(&(a.1, a.2, &b.0)));
        let truncated = t.len() > limit || queues.len() > limit;
        t.truncate(limit);
        queues.sort_unstable_by(|a, b| b.ready.cmp(&a.ready).then_with(|| a.name.cmp(&b.name)));
        let topics: Vec<Value> = t
            .into_iter()
            .map(|(name, subscribers, messages)| {
                let rate = self.rate(format!("t{name}"), messages, now);
                json!({ "name": name, "subscribers": subscribers, "messages": messages, "rate": rate })
            })
            .collect();
        let queues: Vec<Value> = queues
            .iter()
            .take(limit)
            .map(|q| {
                let rate = self.rate(format!("q{}", q.name), q.messages, now);
                json!({
                    "name": q.name, "ready": q.ready, "unacked": q.unacked,
                    "consumers": q.consumers, "messages": q.messages, "rate": rate,
                })
            })
            .collect();
        json!({ "topics": topics, "queues": queues, "truncated": truncated })
    }

    fn overview(&mut self, now: Instant) -> Value {
        self.tick(now);
        let mut c = crate::server::metrics::Counters::default();
        for r in &self.stats.reactors {
            let s = r.snapshot();
            c.conns_ws += s.conns_ws;
            c.conns_tcp += s.conns_tcp;
            c.conns_sockjs += s.conns_sockjs;
            c.subscriptions += s.subscriptions;
            c.destinations += s.destinations;
            c.messages_in += s.messages_in;
            c.messages_out += s.messages_out;
            c.bytes_in += s.bytes_in;
            c.bytes_out += s.bytes_out;
            c.queues += s.queues;
            c.queue_ready += s.queue_ready;
            c.queue_unacked += s.queue_unacked;
            c.queue_consumers += s.queue_consumers;
            c.slow_closes += s.slow_closes;
            c.errors_stomp += s.errors_stomp;
            c.errors_ws += s.errors_ws;
        }
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "revision": env!("BUILD_REVISION"),
            "node": self.stats.cluster.as_ref().map(|c| c.node.clone()),
            "uptime_seconds": now.duration_since(self.started).as_secs_f64(),
            "reactors": self.stats.reactors.len(),
            "connections": {
                "total": c.conns_ws + c.conns_tcp + c.conns_sockjs,
                "websocket": c.conns_ws, "tcp": c.conns_tcp, "sockjs": c.conns_sockjs,
            },
            "subscriptions": c.subscriptions,
            "destinations": c.destinations,
            "messages_in": c.messages_in,
            "messages_out": c.messages_out,
            "bytes_in": c.bytes_in,
            "bytes_out": c.bytes_out,
            "rates": {
                "messages_in": self.rates.messages_in,
                "messages_out": self.rates.messages_out,
                "bytes_in": self.rates.bytes_in,
                "bytes_out": self.rates.bytes_out,
                "seconds": self.rates_dt,
            },
            "queues": {
                "count": c.queues, "ready": c.queue_ready,
                "unacked": c.queue_unacked, "consumers": c.queue_consumers,
            },
            "slow_consumer_closes": c.slow_closes,
            "errors": c.errors_stomp + c.errors_ws,
        })
    }

    fn reactors_json(&mut self) -> Value {
        let now = Instant::now();
        self.tick(now);
        // No turn for two windows: no long turn lately.
        let seen = &self.turns_seen;
        let quiet = |i: usize| {
            seen.get(i).is_some_and(|(_, at)| {
                now.duration_since(*at) > 2 * crate::server::metrics::TURN_WINDOW
            })
        };
        let rows: Vec<Value> = self
            .stats
            .reactors
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let s = r.snapshot();
                let turns = s.loop_turns.max(1);
                json!({
                    "id": i,
                    "connections": s.conns_ws + s.conns_tcp + s.conns_sockjs,
                    "subscriptions": s.subscriptions,
                    "loop_turns": s.loop_turns,
                    "turn_avg_us": s.loop_nanos as f64 / turns as f64 / 1000.0,
                    "turn_max_us": if quiet(i) { 0.0 } else { s.loop_recent_max_nanos as f64 / 1000.0 },
                    "turn_max_since_start_us": s.loop_max_nanos as f64 / 1000.0,
                    "cpu_seconds": thread_cpu_seconds(r.tid.load(Ordering::Relaxed)),
                    "cpu_percent": self.cpu_percent.get(i).copied().unwrap_or(0.0),
                    "messages_in": s.messages_in,
                    "messages_out": s.messages_out,
                })
            })
            .collect();
        json!({ "reactors": rows })
    }

    fn nodes(&self) -> Value {
        let Some(c) = &self.stats.cluster else {
            return json!({ "cluster": false, "nodes": [] });
        };
        let mut nodes = vec![json!({
            "name": c.node,
            "self": true,
            "up": c.up.load(Ordering::Relaxed),
            "connections": self.stats.limits.live(),
            "version": env!("CARGO_PKG_VERSION"),
            "last_seen_seconds": 0.0,
        })];
        let now = Instant::now();
        for (name, peer) in c.peers() {
            nodes.push(json!({
                "name": name,
                "self": false,
                "up": now.duration_since(peer.seen) < crate::server::bridge::PEER_EXPIRY,
                "connections": peer.connections,
                "version": peer.version,
                "last_seen_seconds": now.duration_since(peer.seen).as_secs_f64(),
            }));
        }
        json!({ "cluster": true, "nodes": nodes })
    }
}
