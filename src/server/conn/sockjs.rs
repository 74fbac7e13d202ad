//! SockJS on a connection (the protocol is the sans-IO [`crate::sockjs`]). Two kinds of
//! connection take part:
//!
//! - A *session* (`sjs` set, no socket): the STOMP session (or the test suite's echo) of one
//!   SockJS session. Its outbound queue holds STOMP frames exactly as a TCP connection's does,
//!   so deliveries, the outbound bound and the slow-consumer policy are the ones every
//!   connection has. It lives on the reactor its id hashes to.
//! - A *carrier*: an HTTP connection of the WebSocket listener. Each request under a SockJS
//!   mount is read here; requests that need no session (greeting, `/info`, the iframe page,
//!   CORS preflights, refusals) are answered at once, keep-alive. A request for a session is
//!   handed to the reactor ([`SjsCall`]): moved to the session's reactor, or answered there —
//!   `xhr_send`'s messages fed to the session, a receiving request attached to it
//!   ([`Phase::Carrier`]). While attached, the reactor pumps the session's frames onto it
//!   (`a[...]`, one JSON string per STOMP frame), framed for its transport.
//!
//! ```text
//!  Handshake ──request under a mount──▶ answered (keep-alive: Handshake again)
//!      │ receiving request / websocket
//!      ▼
//!  Carrier { session } ──response limit, poll answered──▶ Handshake (keep-alive) or Linger
//!      │ EOF, error, WebSocket close: the session is told (closed: "Connection interrupted")
//!      ▼
//!    Linger
//! ```

use super::*;
use crate::sockjs::{self, http, json, Mount, Service, Transport, Wire};

/// What a request under a SockJS mount needs from the reactor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SjsCall {
    /// The session's home is another reactor: the connection moves there (its request
    /// still unread).
    Move(usize),
    /// A receiving request (or the WebSocket transport's upgrade) for session `SjsCtx::id`.
    Receive { mount: usize, transport: Transport },
    /// `xhr_send` for session `SjsCtx::id`; the messages are in `SjsCtx::data`.
    Send,
    /// Messages from a WebSocket carrier for its session, in `SjsCtx::data`.
    Feed(usize),
}

/// The reactor's SockJS scratch and the calls connections make to it.
#[derive(Debug, Default)]
pub struct SjsCtx {
    pub mounts: Vec<Mount>,
    pub reactors: usize,
    pub call: Option<SjsCall>,
    /// A carrier stopped carrying for this session (closed, or lingering).
    pub lost: Vec<(usize, usize)>,
    /// The session id of the call.
    pub id: String,
    /// Decoded messages, and where each ends.
    pub data: Vec<u8>,
    pub ends: Vec<usize>,
    /// Scratch: a frame being built, and one STOMP frame gathered from the queue.
    frame: Vec<u8>,
    one: Vec<u8>,
}

impl SjsCtx {
    pub fn new(mounts: Vec<Mount>, reactors: usize) -> Self {
        SjsCtx {
            mounts,
            reactors,
            ..Default::default()
        }
    }
}

/// How the reactor answers a [`SjsCall`] on the carrier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SjsAnswer<'a> {
    /// No such session (`xhr_send`): 404.
    NoSession,
    /// Messages taken: 204.
    Sent,
    /// Refused for want of room (the session's input, or sessions): 503.
    Full(&'static str),
    /// Receiving request attached to the session (`open`: it is new, send `o`).
    Attach { session: usize, open: bool },
    /// Receiving request answered with one frame and ended (a close frame).
    Frame(&'a [u8]),
}

/// A SockJS session's own state (on a connection with no socket).
#[derive(Debug)]
pub struct SjsSession {
    /// The id, when the session is found by it (every transport but WebSocket).
    pub id: Option<Box<str>>,
    /// The receiving request attached now.
    pub receiver: Option<usize>,
    /// Closed: the close frame every receiving request gets until the session is forgotten.
    pub closed: Option<Box<[u8]>>,
    /// The close frame went to the receiver attached now.
    close_told: bool,
    /// When the session goes with no receiver attached.
    idle_at: Option<Instant>,
    /// When a heart-beat frame is due on the receiver.
    beat_at: Instant,
    beat_due: bool,
    /// Bound to its WebSocket carrier: goes with it.
    ws_bound: bool,
    /// Echo service: messages come back.
    echo: bool,
}

/// A receiving request attached to a session.
#[derive(Debug)]
pub struct Carrier {
    session: usize,
    transport: Transport,
    /// Polling: the response head, waiting for its one frame.
    head: Vec<u8>,
    chunked: bool,
    keep_alive: bool,
    /// Bytes of frames sent on this response (streaming ends at the response limit).
    sent: usize,
    /// The WebSocket transport's codec.
    ws: Option<WsState>,
}

impl Carrier {
    pub(super) fn session(&self) -> usize {
        self.session
    }
}

/// A carrier with this much output waiting is not given more until it drains.
const CARRIER_HIGH: usize = 64 * 1024;

fn cfg_of<'c>(ctx: &Ctx<'c>) -> &'c crate::sockjs::SockjsConfig {
    static DEFAULT: std::sync::OnceLock<crate::sockjs::SockjsConfig> = std::sync::OnceLock::new();
    ctx.cfg
        .sockjs
        .as_ref()
        .unwrap_or_else(|| DEFAULT.get_or_init(Default::default))
}

/// The path of a request line already in `buf` (`METHOD SP target SP`), before the head is
/// complete.
fn request_target(buf: &[u8]) -> Option<&str> {
    let sp = buf.iter().position(|b| *b == b' ')?;
    let rest = buf.get(sp + 1..)?;
    let end = rest.iter().position(|b| *b == b' ' || *b == b'\r')?;
    let target = std::str::from_utf8(rest.get(..end)?).ok()?;
    Some(target.split_once('?').map_or(target, |(p, _)| p))
}

/// Which reactor is home to session `id`.
pub fn home_of(id: &str, reactors: usize) -> usize {
    // FNV-1a: stable across threads and runs, no key needed (the id picks only a thread).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (h % reactors.max(1) as u64) as usize
}

/// A fresh 32-bit random number for `/info`'s entropy.
fn entropy() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(N.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    h.finish() as u32
}

impl Conn {
    /// A SockJS session (no socket) for `service`.
    pub fn new_sjs_session(
        ctx: &mut Ctx<'_>,
        service: Service,
        id: Option<Box<str>>,
        admitted: Option<std::net::IpAddr>,
        ws_bound: bool,
    ) -> Conn {
        let now = ctx.now;
        let (app, closed) = match service {
            Service::Stomp => (
                App::Stomp(new_stomp(ctx.sessions, ctx.reactor, ctx.now)),
                None,
            ),
            Service::Echo => (App::Echo, None),
            Service::Close => (App::Echo, Some(close_frame(3000, "Go away!"))),
        };
        let phase = match closed {
            Some(_) => Phase::Linger,
            None => Phase::Open { ws: None, app },
        };
        Conn {
            sock: None,
            kind: Kind::Sockjs,
            tls: None,
            admitted,
            rbuf: Vec::new(),
            rstart: 0,
            phase,
            out: OutQueue::default(),
            // A STOMP session has the handshake timeout to send CONNECT.
            phase_deadline: match service {
                Service::Stomp => Some(now + ctx.cfg.handshake_timeout),
                _ => None,
            },
            timer_at: None,
            write_blocked: false,
            paused: false,
            queue_pending: false,
            overflowed: false,
            read_closed: false,
            write_closed: false,
            live: Liveness::new(now),
            sjs: Some(Box::new(SjsSession {
                id,
                receiver: None,
                closed,
                close_told: false,
                idle_at: None,
                beat_at: now + cfg_of(ctx).heartbeat,
                beat_due: false,
                ws_bound,
                echo: service == Service::Echo,
            })),
        }
    }

    /// This is a SockJS session.
    pub fn sjs(&self) -> Option<&SjsSession> {
        self.sjs.as_deref()
    }

    /// The session this connection carries for, while attached.
    pub fn carrier_of(&self) -> Option<usize> {
        match &self.phase {
            Phase::Carrier(c) => Some(c.session),
            _ => None,
        }
    }

    /// The session's id, if it is found by one.
    pub fn sjs_id(&self) -> Option<&str> {
        self.sjs.as_ref().and_then(|s| s.id.as_deref())
    }

    /// A request under a SockJS mount, if the buffer starts with one: `Some(go_on)`, as
    /// `handshake` answers.
    pub(super) fn sockjs_http(&mut self, ctx: &mut Ctx<'_>) -> Option<bool> {
        let input = self.rbuf.get(self.rstart..).unwrap_or_default();
        let target = request_target(input)?;
        let (mi, rest) = {
            let (m, rest) = sockjs::find_mount(&ctx.sjs.mounts, target)?;
            let mi = ctx.sjs.mounts.iter().position(|x| std::ptr::eq(x, m))?;
            (mi, rest.to_string())
        };
        let scfg = cfg_of(ctx);
        let max_head = ctx.cfg.handshake.max_request_bytes;
        let (head_len, total_len) = match http::parse(input, max_head, scfg.max_body) {
            Ok(Status::Partial) => return Some(false),
            Ok(Status::Complete(r)) => (r.head_len, r.total_len()),
            Err(e) => {
                self.sjs_plain(ctx, None, e.status, e.reason.as_bytes(), false);
                return Some(false);
            }
        };
        if input.len() < total_len {
            // The body is still coming: room for all of it (bounded by `max_body`).
            let want = self.rstart + total_len;
            if self.rbuf.capacity() < want {
                self.rbuf.reserve_exact(want - self.rbuf.len());
            }
            return Some(false);
        }
        // The head, copied so that the answer can be written while it is looked at.
        let head = input.get(..head_len).unwrap_or_default().to_vec();
        let Ok(Status::Complete(req)) = http::parse(&head, max_head, scfg.max_body) else {
            return Some(false);
        };
        let req = &req;
        let body_at = self.rstart + head_len..self.rstart + total_len;
        if let (Some(allowed), Some(o)) = (&ctx.cfg.handshake.allowed_origins, req.origin) {
            if o != "null" && !allowed.iter().any(|a| a == o) {
                self.sjs_plain(ctx, Some(req), 403, b"origin not allowed", false);
                return Some(false);
            }
        }
        let mount = ctx.sjs.mounts.get(mi)?.clone();
        let route = sockjs::route(&rest);
        let method = req.method;
        match route {
            sockjs::Route::NotFound => self.sjs_plain(ctx, Some(req), 404, b"Not found", true),
            sockjs::Route::Greeting if method == "GET" => {
                let mut out = Vec::new();
                http::Head::new(&mut out, req.http11, 200)
                    .header("Content-Type", "text/plain; charset=UTF-8")
                    .finish(http::Body::Length(sockjs::GREETING.len()), req.keep_alive);
                out.extend_from_slice(sockjs::GREETING);
                self.sjs_respond(ctx, req, &out);
            }
            sockjs::Route::Iframe if method == "GET" => {
                let page = sockjs::iframe_page(&scfg.client_url);
                let etag = format!("\"{:016x}\"", fnv(page.as_bytes()));
                let mut out = Vec::new();
                if req.if_none_match == Some(etag.as_str()) {
                    http::Head::new(&mut out, req.http11, 304)
                        .cache_a_year()
                        .header("ETag", &etag)
                        .finish(http::Body::Length(0), req.keep_alive);
                } else {
                    http::Head::new(&mut out, req.http11, 200)
                        .header("Content-Type", "text/html; charset=UTF-8")
                        .cache_a_year()
                        .header("ETag", &etag)
                        .finish(http::Body::Length(page.len()), req.keep_alive);
                    out.extend_from_slice(page.as_bytes());
                }
                self.sjs_respond(ctx, req, &out);
            }
            sockjs::Route::Info if method == "GET" => {
                let body = sockjs::info_body(mount.websocket, mount.cookie_needed, entropy());
                let mut out = Vec::new();
                http::Head::new(&mut out, req.http11, 200)
                    .header("Content-Type", "application/json; charset=UTF-8")
                    .no_cache()
                    .cors(req)
                    .finish(http::Body::Length(body.len()), req.keep_alive);
                out.extend_from_slice(body.as_bytes());
                self.sjs_respond(ctx, req, &out);
            }
            sockjs::Route::Info if method == "OPTIONS" => {
                self.sjs_preflight(ctx, req, "OPTIONS, GET");
            }
            sockjs::Route::Session { transport, .. } if method == "OPTIONS" && transport.xhr() => {
                self.sjs_preflight(ctx, req, "OPTIONS, POST");
            }
            sockjs::Route::Greeting | sockjs::Route::Iframe | sockjs::Route::Info => {
                self.sjs_405(ctx, req, "GET");
            }
            sockjs::Route::RawWebsocket => {
                if !mount.websocket {
                    self.sjs_plain(ctx, Some(req), 404, b"Not found", true);
                    return Some(false);
                }
                return Some(self.sjs_raw_websocket(ctx, mount.service));
            }
            sockjs::Route::Session { session, transport } => {
                if transport == Transport::Websocket && !mount.websocket {
                    self.sjs_plain(ctx, Some(req), 404, b"Not found", true);
                    return Some(false);
                }
                if method != transport.method() {
                    self.sjs_405(ctx, req, transport.method());
                    return Some(false);
                }
                if transport == Transport::Websocket {
                    if !req.upgrade {
                        let msg = b"Can \"Upgrade\" only to \"WebSocket\".";
                        self.sjs_plain(ctx, Some(req), 400, msg, false);
                        return Some(false);
                    }
                    if !req.connection_upgrade {
                        let msg = b"\"Connection\" must be \"Upgrade\".";
                        self.sjs_plain(ctx, Some(req), 400, msg, false);
                        return Some(false);
                    }
                    if let Err(refusal) = ws::parse_request(&head, &ctx.cfg.handshake) {
                        self.refuse(ctx, refusal);
                        return Some(false);
                    }
                    ctx.sjs.id.clear();
                    ctx.sjs.id.push_str(session);
                    ctx.sjs.call = Some(SjsCall::Receive {
                        mount: mi,
                        transport,
                    });
                    return Some(false);
                }
                if transport == Transport::HtmlFile {
                    let cb = req.query_param("c").and_then(sockjs::percent_decode);
                    match cb {
                        None => {
                            let msg = b"\"callback\" parameter required";
                            self.sjs_plain(ctx, Some(req), 500, msg, true);
                            return Some(false);
                        }
                        Some(c) if !sockjs::valid_callback(&c) => {
                            let msg = b"invalid \"callback\" parameter";
                            self.sjs_plain(ctx, Some(req), 500, msg, true);
                            return Some(false);
                        }
                        Some(_) => {}
                    }
                }
                let home = home_of(session, ctx.sjs.reactors);
                if home != ctx.reactor {
                    ctx.sjs.call = Some(SjsCall::Move(home));
                    return Some(false);
                }
                ctx.sjs.id.clear();
                ctx.sjs.id.push_str(session);
                if transport == Transport::XhrSend {
                    let body = self.rbuf.get(body_at).unwrap_or_default();
                    ctx.sjs.data.clear();
                    ctx.sjs.ends.clear();
                    let sjs = &mut *ctx.sjs;
                    let read = json::read_messages(body, false, &mut sjs.data, &mut sjs.ends);
                    if let Err(e) = read {
                        self.sjs_plain(ctx, Some(req), 500, e.reason().as_bytes(), true);
                        return Some(false);
                    }
                    ctx.sjs.call = Some(SjsCall::Send);
                } else {
                    ctx.sjs.call = Some(SjsCall::Receive {
                        mount: mi,
                        transport,
                    });
                }
            }
        }
        Some(false)
    }

    /// Queue `bytes` (a whole response); the request is done: the connection reads the next
    /// one (keep-alive), or lingers.
    fn sjs_respond(&mut self, ctx: &mut Ctx<'_>, req: &http::Request<'_>, bytes: &[u8]) {
        self.out.push(ctx.pool, bytes);
        self.rstart += req.total_len();
        self.sjs_request_done(ctx, req.keep_alive);
        // Pipelined requests whose answers are not read: no more is read until they are.
        self.pause_if_over(ctx);
    }

    fn sjs_request_done(&mut self, ctx: &mut Ctx<'_>, keep_alive: bool) {
        if keep_alive {
            self.phase = Phase::Handshake;
            self.phase_deadline = Some(ctx.now + ctx.cfg.handshake_timeout);
        } else {
            self.linger(ctx);
        }
    }

    /// A plain-text answer; `keep` keeps the connection for the next request when the
    /// request allows it (not after a request that could not be read).
    fn sjs_plain(
        &mut self,
        ctx: &mut Ctx<'_>,
        req: Option<&http::Request<'_>>,
        status: u16,
        body: &[u8],
        keep: bool,
    ) {
        let http11 = req.is_none_or(|r| r.http11);
        let keep_alive = keep && req.is_some_and(|r| r.keep_alive);
        let mut out = Vec::new();
        let head = http::Head::new(&mut out, http11, status)
            .header("Content-Type", "text/plain; charset=UTF-8");
        let head = match req {
            Some(r) => head.cors(r),
            None => head,
        };
        head.finish(http::Body::Length(body.len()), keep_alive);
        out.extend_from_slice(body);
        if status >= 400 {
            ctx.counters.errors_handshake += 1;
        }
        match req.filter(|_| keep_alive) {
            Some(r) => self.sjs_respond(ctx, r, &out),
            None => {
                self.out.push(ctx.pool, &out);
                self.rstart = self.rbuf.len();
                self.linger(ctx);
            }
        }
    }

    fn sjs_405(&mut self, ctx: &mut Ctx<'_>, req: &http::Request<'_>, allow: &str) {
        let mut out = Vec::new();
        http::Head::new(&mut out, req.http11, 405)
            .header("Allow", allow)
            .finish(http::Body::Length(0), req.keep_alive);
        ctx.counters.errors_handshake += 1;
        self.sjs_respond(ctx, req, &out);
    }

    fn sjs_preflight(&mut self, ctx: &mut Ctx<'_>, req: &http::Request<'_>, methods: &str) {
        let mut out = Vec::new();
        http::Head::new(&mut out, req.http11, 204)
            .cache_a_year()
            .header("Access-Control-Max-Age", "31536000")
            .header("Access-Control-Allow-Methods", methods)
            .cors(req)
            .finish(http::Body::Length(0), req.keep_alive);
        self.sjs_respond(ctx, req, &out);
    }

    /// `/websocket` under a mount: a plain WebSocket (the STOMP endpoint's, or the echo).
    fn sjs_raw_websocket(&mut self, ctx: &mut Ctx<'_>, service: Service) -> bool {
        let input = self.rbuf.get(self.rstart..).unwrap_or_default();
        let up = match ws::parse_request(input, &ctx.cfg.handshake) {
            Ok(Status::Complete(up)) => up,
            Ok(Status::Partial) => return false,
            Err(refusal) => {
                self.refuse(ctx, refusal);
                return false;
            }
        };
        let app = match service {
            Service::Stomp => App::Stomp(new_stomp(ctx.sessions, ctx.reactor, ctx.now)),
            Service::Echo | Service::Close => App::Echo,
        };
        let (key, protocol, deflate, consumed) = (
            up.key.to_string(),
            up.protocol.map(str::to_string),
            up.deflate,
            up.consumed,
        );
        let protocol = match app {
            App::Stomp(_) => protocol,
            App::Echo => None,
        };
        self.upgrade(ctx, &key, protocol.as_deref(), deflate, consumed, app);
        if service == Service::Close {
            if let Phase::Open { ws: Some(w), .. } = &mut self.phase {
                w.close_sent = true;
            }
            write_close(&mut self.out, ctx.pool, 3000, "Go away!");
            self.linger(ctx);
            return false;
        }
        true
    }

    /// The reactor's answer to this connection's [`SjsCall`]: the request still at the
    /// front of the buffer is answered (and consumed). Returns `true` if it is now attached.
    pub fn sjs_answer(&mut self, ctx: &mut Ctx<'_>, answer: SjsAnswer<'_>) -> Next {
        let next = self.sjs_answer_request(ctx, answer);
        // The request is consumed: an attached receiver holds no read buffer while it waits.
        self.recycle(ctx);
        next
    }

    fn sjs_answer_request(&mut self, ctx: &mut Ctx<'_>, answer: SjsAnswer<'_>) -> Next {
        let input = self.rbuf.get(self.rstart..).unwrap_or_default();
        let scfg = cfg_of(ctx);
        let max_head = ctx.cfg.handshake.max_request_bytes;
        let head_len = match http::parse(input, max_head, scfg.max_body) {
            Ok(Status::Complete(r)) => r.head_len,
            _ => return Next::Close,
        };
        let head = input.get(..head_len).unwrap_or_default().to_vec();
        let Ok(Status::Complete(req)) = http::parse(&head, max_head, scfg.max_body) else {
            return Next::Close;
        };
        let Some((mount, rest)) = request_target(&head)
            .and_then(|t| sockjs::find_mount(&ctx.sjs.mounts, t))
            .map(|(m, r)| (m.clone(), r.to_string()))
        else {
            return Next::Close;
        };
        let transport = match sockjs::route(&rest) {
            sockjs::Route::Session { transport, .. } => transport,
            _ => return Next::Close,
        };
        let req = &req;
        match answer {
            SjsAnswer::NoSession => self.sjs_plain(ctx, Some(req), 404, b"Not found", true),
            SjsAnswer::Full(why) => self.sjs_plain(ctx, Some(req), 503, why.as_bytes(), true),
            SjsAnswer::Sent => {
                let mut out = Vec::new();
                http::Head::new(&mut out, req.http11, 204)
                    .header("Content-Type", "text/plain; charset=UTF-8")
                    .no_cache()
                    .cors(req)
                    .finish(http::Body::Length(0), req.keep_alive);
                self.sjs_respond(ctx, req, &out);
            }
            SjsAnswer::Frame(frame) => {
                if transport == Transport::Websocket {
                    self.sjs_ws_upgrade(ctx, req.total_len());
                    self.sjs_ws_frame(ctx, frame);
                    self.sjs_ws_close(ctx);
                    return Next::Idle;
                }
                let mut carrier = self.sjs_head(ctx, req, &mount, transport);
                self.rstart += req.total_len();
                self.write_carried(ctx, &mut carrier, frame);
                if !self.end_carried(ctx, &mut carrier) {
                    return Next::Close;
                }
            }
            SjsAnswer::Attach { session, open } => {
                if transport == Transport::Websocket {
                    self.sjs_ws_upgrade(ctx, req.total_len());
                    let ws = match std::mem::replace(&mut self.phase, Phase::Linger) {
                        Phase::Open { ws, .. } => ws,
                        _ => None,
                    };
                    self.phase = Phase::Carrier(Box::new(Carrier {
                        session,
                        transport,
                        head: Vec::new(),
                        chunked: false,
                        keep_alive: false,
                        sent: 0,
                        ws,
                    }));
                    if open {
                        self.sjs_ws_frame(ctx, sockjs::OPEN);
                    }
                    return Next::Idle;
                }
                let mut carrier = self.sjs_head(ctx, req, &mount, transport);
                carrier.session = session;
                self.rstart += req.total_len();
                self.phase_deadline = None;
                if open {
                    if self.write_carried(ctx, &mut carrier, sockjs::OPEN) {
                        self.phase = Phase::Carrier(carrier);
                        return Next::Idle;
                    }
                    // A poll answered with the open frame.
                    if !self.end_carried(ctx, &mut carrier) {
                        return Next::Close;
                    }
                    return Next::ReadAgain;
                }
                self.phase = Phase::Carrier(carrier);
            }
        }
        Next::ReadAgain
    }

    /// The response head of a receiving request (written now when streaming; kept for the
    /// frame when polling).
    fn sjs_head(
        &mut self,
        ctx: &mut Ctx<'_>,
        req: &http::Request<'_>,
        mount: &Mount,
        transport: Transport,
    ) -> Box<Carrier> {
        let ctype = match transport {
            Transport::EventSource => "text/event-stream; charset=UTF-8",
            Transport::HtmlFile => "text/html; charset=UTF-8",
            _ => "application/javascript; charset=UTF-8",
        };
        let streaming = transport != Transport::Xhr;
        let chunked = streaming && req.http11;
        let mut head = Vec::new();
        // CORS on every transport: an EventSource from another origin needs it too.
        let mut h = http::Head::new(&mut head, req.http11, 200)
            .header("Content-Type", ctype)
            .no_cache()
            .cors(req);
        let cookie;
        if mount.cookie_needed {
            // The client's own id, when it is a plain token (nothing else goes back into a
            // header).
            let id = req
                .jsessionid
                .filter(|v| {
                    !v.is_empty()
                        && v.len() <= 128
                        && v.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                })
                .unwrap_or("dummy");
            cookie = format!("JSESSIONID={id}; path=/");
            h = h.header("Set-Cookie", &cookie);
        }
        let _ = h;
        let keep_alive = req.keep_alive && req.http11;
        if streaming {
            http::Head::finish_raw(&mut head, http::Body::Stream { chunked }, keep_alive);
            let cb = req
                .query_param("c")
                .and_then(sockjs::percent_decode)
                .unwrap_or_default();
            let mut prelude = Vec::new();
            sockjs::write_prelude(&mut prelude, transport, &cb);
            if chunked {
                http::write_chunk(&mut head, &prelude);
            } else {
                head.extend_from_slice(&prelude);
            }
            self.out.push(ctx.pool, &head);
            head = Vec::new();
        }
        Box::new(Carrier {
            session: usize::MAX,
            transport,
            head,
            chunked,
            keep_alive: keep_alive && (chunked || !streaming),
            sent: 0,
            ws: None,
        })
    }

    /// Write one frame on an HTTP carrier. `true` while the response goes on.
    fn write_carried(&mut self, ctx: &mut Ctx<'_>, c: &mut Carrier, frame: &[u8]) -> bool {
        let mut body = std::mem::take(&mut ctx.sjs.frame);
        body.clear();
        Wire::of(c.transport).write(&mut body, frame);
        if c.transport == Transport::Xhr {
            let mut head = std::mem::take(&mut c.head);
            http::Head::finish_raw(&mut head, http::Body::Length(body.len()), c.keep_alive);
            head.extend_from_slice(&body);
            self.out.push(ctx.pool, &head);
            ctx.sjs.frame = body;
            return false;
        }
        c.sent += body.len();
        if c.chunked {
            let buf = self.out.own_buf(ctx.pool);
            let before = buf.len();
            http::write_chunk(buf, &body);
            self.out.commit(before);
        } else {
            self.out.push(ctx.pool, &body);
        }
        ctx.sjs.frame = body;
        c.sent < cfg_of(ctx).response_limit
    }

    /// End an HTTP carrier's response: the next request may follow (keep-alive), or the
    /// connection closes. `false` if it must close at once.
    fn end_carried(&mut self, ctx: &mut Ctx<'_>, c: &mut Carrier) -> bool {
        if c.chunked {
            self.out.push(ctx.pool, http::LAST_CHUNK);
        }
        self.phase = Phase::Handshake;
        self.sjs_request_done(ctx, c.keep_alive);
        true
    }

    /// The WebSocket transport's upgrade: the 101 answer; the request (`len` bytes) is
    /// consumed.
    fn sjs_ws_upgrade(&mut self, ctx: &mut Ctx<'_>, len: usize) {
        let input = self.rbuf.get(self.rstart..).unwrap_or_default();
        let Ok(Status::Complete(up)) = ws::parse_request(input, &ctx.cfg.handshake) else {
            return;
        };
        let key = up.key.to_string();
        let deflate = up.deflate;
        self.upgrade(ctx, &key, None, deflate, len, App::Echo);
    }

    fn sjs_ws_frame(&mut self, ctx: &mut Ctx<'_>, frame: &[u8]) {
        let buf = self.out.own_buf(ctx.pool);
        let before = buf.len();
        ws::write_frame(buf, true, Opcode::Text, frame, None);
        self.out.commit(before);
    }

    fn sjs_ws_close(&mut self, ctx: &mut Ctx<'_>) {
        write_close(&mut self.out, ctx.pool, code::NORMAL, "");
        self.phase = Phase::Open {
            ws: None,
            app: App::Echo,
        };
        self.linger(ctx);
    }

    /// A carrier's frame from its session: framed for its transport. `false` when the
    /// response ended with it (the carrier is detached: polling, the response limit).
    pub fn carry(&mut self, ctx: &mut Ctx<'_>, frame: &[u8]) -> bool {
        let Phase::Carrier(c) = &mut self.phase else {
            return false;
        };
        if c.ws.is_some() {
            self.sjs_ws_frame(ctx, frame);
            return true;
        }
        let mut c = match std::mem::replace(&mut self.phase, Phase::Linger) {
            Phase::Carrier(c) => c,
            _ => return false,
        };
        if self.write_carried(ctx, &mut c, frame) {
            self.phase = Phase::Carrier(c);
            return true;
        }
        self.end_carried(ctx, &mut c);
        false
    }

    /// End the carrier's response after its session's close frame (the WebSocket closes).
    pub fn carry_end(&mut self, ctx: &mut Ctx<'_>) {
        let c = match std::mem::replace(&mut self.phase, Phase::Linger) {
            Phase::Carrier(c) => c,
            other => {
                self.phase = other;
                return;
            }
        };
        let mut c = c;
        if c.ws.is_some() {
            self.phase = Phase::Open {
                ws: c.ws.take(),
                app: App::Echo,
            };
            if let Phase::Open { ws: Some(w), .. } = &mut self.phase {
                w.close_sent = true;
            }
            write_close(&mut self.out, ctx.pool, code::NORMAL, "");
            self.linger(ctx);
            return;
        }
        self.end_carried(ctx, &mut c);
    }

    /// Frames are queued (not counting heart-beats or close frames).
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// Room on the carrier for more of its session's frames.
    pub fn carrier_has_room(&self) -> bool {
        self.out.footprint() <= CARRIER_HIGH && !self.write_blocked
    }

    /// Input on an attached carrier: WebSocket frames (messages for the session, control
    /// frames); an HTTP carrier's input is not read past its request.
    pub(super) fn carrier_input(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let Phase::Carrier(c) = &mut self.phase else {
            return false;
        };
        let session = c.session;
        let Some(wss) = c.ws.as_mut() else {
            // Nothing may follow a receiving request until its response ends; what does is
            // discarded.
            self.rstart = self.rbuf.len();
            return false;
        };
        let input = self.rbuf.get_mut(self.rstart..).unwrap_or_default();
        let (used, ev) = match wss.codec.decoder.decode(input) {
            Ok(r) => r,
            Err(e) => {
                ctx.counters.errors_ws += 1;
                write_close(&mut self.out, ctx.pool, e.close_code(), e.reason());
                ctx.sjs.lost.push((session, ctx.token));
                self.phase = Phase::Linger;
                self.linger(ctx);
                return false;
            }
        };
        self.rstart += used;
        let Some(ev) = ev else {
            return used > 0;
        };
        match ev {
            Event::Message { payload, .. } => {
                if payload.is_empty() {
                    return true;
                }
                let sjs = &mut *ctx.sjs;
                if sjs.call.is_none() {
                    sjs.data.clear();
                    sjs.ends.clear();
                }
                if json::read_messages(payload, true, &mut sjs.data, &mut sjs.ends).is_err() {
                    // Broken JSON on the WebSocket transport ends it abruptly.
                    ctx.counters.errors_ws += 1;
                    write_close(
                        &mut self.out,
                        ctx.pool,
                        code::INVALID_PAYLOAD,
                        "broken JSON",
                    );
                    ctx.sjs.lost.push((session, ctx.token));
                    self.phase = Phase::Linger;
                    self.linger(ctx);
                    return false;
                }
                ctx.sjs.call = Some(SjsCall::Feed(session));
            }
            Event::Compressed { .. } => {
                // permessage-deflate is not offered on the SockJS WebSocket transport.
                ctx.sjs.lost.push((session, ctx.token));
                write_close(&mut self.out, ctx.pool, code::PROTOCOL_ERROR, "");
                self.phase = Phase::Linger;
                self.linger(ctx);
                return false;
            }
            Event::Ping(p) => {
                let buf = self.out.own_buf(ctx.pool);
                let before = buf.len();
                ws::write_frame(buf, true, Opcode::Pong, p, None);
                self.out.commit(before);
            }
            Event::Pong(_) => {}
            Event::Close(c) => {
                let buf = self.out.own_buf(ctx.pool);
                let before = buf.len();
                match c {
                    Some((code, _)) => ws::write_close(buf, code, "", None),
                    None => ws::write_frame(buf, true, Opcode::Close, &[], None),
                }
                self.out.commit(before);
                ctx.sjs.lost.push((session, ctx.token));
                self.phase = Phase::Linger;
                self.linger(ctx);
                return false;
            }
        }
        true
    }

    // ---- the session side ----

    /// A session is "read" when held input may go on (its output drained, a credentials
    /// check answered): the STOMP bytes stashed between messages are handled.
    pub(super) fn sjs_readable(&mut self, ctx: &mut Ctx<'_>) -> Next {
        if self.paused {
            return Next::Idle;
        }
        if let Phase::Open {
            app: App::Stomp(st),
            ..
        } = &mut self.phase
        {
            st.fan_out_first = false;
            if !st.stash.is_empty() {
                let flow = stomp_message(st, &[], ctx, &mut self.out, Framing::Tcp);
                if let Some(f) = flow {
                    self.apply_flow(ctx, f);
                }
                self.pause_if_over(ctx);
            }
        }
        Next::Idle
    }

    /// Messages for this session (`xhr_send`, or its WebSocket carrier): STOMP input, or
    /// echoed. `Err` when its input is over the bound (it is held while the session's output
    /// is over its own, and a client that sends without reading is refused, not buffered).
    pub fn sjs_feed(&mut self, ctx: &mut Ctx<'_>, data: &[u8], ends: &[usize]) -> Result<(), ()> {
        let limit = cfg_of(ctx).max_body;
        let Some(sjs) = self.sjs.as_deref() else {
            return Ok(());
        };
        let echo = sjs.echo;
        self.live.read(ctx.now);
        if let Some(st) = self.stomp_mut() {
            st.bytes_in += data.len() as u64;
        }
        let mut start = 0;
        for &end in ends {
            let msg = data.get(start..end).unwrap_or_default();
            start = end;
            match &mut self.phase {
                Phase::Open {
                    app: App::Stomp(st),
                    ..
                } => {
                    if st.stash.len() > limit {
                        return Err(());
                    }
                    let flow = stomp_message(st, msg, ctx, &mut self.out, Framing::Tcp);
                    if let Some(f) = flow {
                        self.apply_flow(ctx, f);
                    }
                    self.pause_if_over(ctx);
                }
                Phase::Open { app: App::Echo, .. } if echo => {
                    if self.out.footprint() > ctx.cfg.max_outbound {
                        return Err(());
                    }
                    self.out.push(ctx.pool, msg);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Frames for the receiver: what is queued (as one `a[...]` frame of up to `max` bytes of
    /// messages), else the close frame, else a due heart-beat. `None`: nothing to send.
    pub fn sjs_next_frame(
        &mut self,
        ctx: &mut Ctx<'_>,
        max: usize,
        frame: &mut Vec<u8>,
    ) -> Option<SjsFrame> {
        frame.clear();
        if !self.out.is_empty() {
            let mut one = std::mem::take(&mut ctx.sjs.one);
            let mut m = sockjs::Messages::new(frame);
            let n = self.out.take_frames(ctx.pool, max, &mut one, |f| m.push(f));
            m.finish();
            ctx.sjs.one = one;
            ctx.counters.bytes_out += n as u64;
            self.live.wrote(ctx.now);
            if self.queue_pending {
                self.queue_written(ctx);
            }
            return Some(SjsFrame::Messages);
        }
        let sjs = self.sjs.as_deref_mut()?;
        if let Some(c) = &sjs.closed {
            if !sjs.close_told {
                sjs.close_told = true;
                frame.extend_from_slice(c);
                return Some(SjsFrame::Close);
            }
            return None;
        }
        if sjs.beat_due {
            sjs.beat_due = false;
            frame.extend_from_slice(sockjs::HEARTBEAT);
            return Some(SjsFrame::Beat);
        }
        None
    }

    /// A receiver was attached (`Some`) or went (`None`); `aborted`: it went without its
    /// response ending (the client left): the session closes, as SockJS servers do.
    pub fn sjs_receiver(&mut self, ctx: &mut Ctx<'_>, receiver: Option<usize>, aborted: bool) {
        let delay = cfg_of(ctx).disconnect_delay;
        let beat = cfg_of(ctx).heartbeat;
        let Some(sjs) = self.sjs.as_deref_mut() else {
            return;
        };
        sjs.receiver = receiver;
        sjs.close_told = false;
        match receiver {
            Some(_) => {
                sjs.idle_at = None;
                sjs.beat_at = ctx.now + beat;
            }
            None => sjs.idle_at = Some(ctx.now + delay),
        }
        if aborted && sjs.closed.is_none() {
            sjs.closed = Some(close_frame(1002, "Connection interrupted"));
            sjs.close_told = true;
            self.linger(ctx);
        }
    }

    /// A frame went to the receiver: the heart-beat clock starts again.
    pub fn sjs_wrote(&mut self, now: Instant, beat: Duration) {
        if let Some(s) = self.sjs.as_deref_mut() {
            s.beat_at = now + beat;
        }
    }

    /// The session's own deadlines: gone with no receiver, heart-beat due.
    pub(super) fn sjs_deadline(&self) -> Option<Instant> {
        let s = self.sjs.as_deref()?;
        let beat = s.receiver.map(|_| s.beat_at);
        [s.idle_at, beat].into_iter().flatten().min()
    }

    /// The session's timers: `Some(Close)` when it has gone unreceived too long.
    pub(super) fn sjs_timer(&mut self, now: Instant) -> Option<Next> {
        let s = self.sjs.as_deref_mut()?;
        if s.idle_at.is_some_and(|t| t <= now) {
            return Some(Next::Close);
        }
        if s.receiver.is_some() && s.beat_at <= now {
            s.beat_due = true;
        }
        None
    }

    /// Entering linger: a session keeps its close frame for later receiving requests until
    /// its disconnect delay.
    pub(super) fn sjs_closing(&mut self, ctx: &Ctx<'_>) {
        let delay = cfg_of(ctx).disconnect_delay;
        if let Some(s) = self.sjs.as_deref_mut() {
            s.closed
                .get_or_insert_with(|| close_frame(3000, "Go away!"));
            self.phase_deadline = None;
            s.idle_at = Some(
                s.idle_at
                    .map_or(ctx.now + delay, |t| t.min(ctx.now + delay)),
            );
            if s.receiver.is_some() {
                s.idle_at = Some(ctx.now + delay);
            }
        }
    }

    /// Something is waiting for the receiver.
    pub(super) fn sjs_pending(&self) -> bool {
        self.sjs
            .as_deref()
            .is_some_and(|s| s.beat_due || (s.closed.is_some() && !s.close_told))
    }

    /// The WebSocket transport's session: goes when its carrier goes.
    pub fn sjs_ws_bound(&self) -> bool {
        self.sjs.as_deref().is_some_and(|s| s.ws_bound)
    }
}

/// What [`Conn::sjs_next_frame`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SjsFrame {
    Messages,
    Close,
    Beat,
}

fn close_frame(code: u16, reason: &str) -> Box<[u8]> {
    let mut f = Vec::new();
    sockjs::write_close(&mut f, code, reason);
    f.into_boxed_slice()
}

fn fnv(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &x in b {
        h = (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}
