//! One connection: its socket, read buffer, outbound queue and protocol phase. The reactor calls
//! [`Conn::on_readable`], [`Conn::flush`] and [`Conn::on_timer`]; protocol work is delegated to
//! the sans-IO `ws`, `stomp` and `session` modules.
//!
//! This file is the transport: reading, flushing (TLS included), timers, pausing and the close.
//! Beside it: `websocket.rs` (the upgrade request and WebSocket frames), `broker.rs` (STOMP
//! frames and what they do), `app.rs` (application and user destinations), `holds.rs` (what
//! holds input back, and what ends a session from outside), `reply.rs` (RECEIPT, ERROR, Close),
//! `sockjs.rs` (SockJS requests, sessions and the requests that carry their frames).
//!
//! # Lifecycle
//!
//! ```text
//!  WebSocket listener:  Handshake ──upgrade──▶ Open { ws: Some, app } ──┐
//!                           │ refusal, static file                      │ ERROR, Close sent,
//!                           ▼                                           │ Close received,
//!  TCP listener:          Linger ◀──────────── Open { ws: None, app } ◀─┘ DISCONNECT, EOF
//!                           │ EOF read and output written, or the close timeout
//!                           ▼
//!                        removed by the reactor (Next::Close)
//! ```
//!
//! - `Handshake`: the HTTP request is read (`timeouts.handshake`); only `websocket.rs` leaves
//!   it, to `Open` or (refused, or a static file served) to `Linger`.
//! - `Open`: frames flow. A STOMP session starts unconnected, with the handshake timeout again
//!   for its CONNECT; a CONNECT needing a password check holds input until the answer (and a
//!   failed login's delay); CONNECTED clears the deadline and starts heart-beats. Input may be
//!   held back (`paused` over the outbound bound, `holds.rs`), never dropped.
//! - `Linger`: nothing more will be said; queued output is flushed, the write side shut, input
//!   discarded until EOF or `timeouts.close`. Entered only through [`Conn::linger`] (from an
//!   ERROR's close flow, a WebSocket close either way, EOF, a refusal or shutdown).
//! - `Carrier`: a SockJS receiving request attached to its session (see `sockjs.rs`: a
//!   SockJS session is a connection without a socket, in `Open` or, once closed, `Linger`
//!   until its disconnect delay; its HTTP requests are `Handshake` connections answered with
//!   keep-alive, one of which at a time carries its frames).
//! - Only the connection moves itself between phases; the reactor asks through
//!   [`Conn::start_close`] (shutdown), [`Conn::stomp_fail`] (slow consumer) and
//!   [`Conn::recheck_access`], and removes the connection when a call returns `Next::Close`.

use std::io::{self, Read};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use mio::net::TcpStream;

use super::buf::BufPool;
use super::metrics::Counters;
use super::outq::OutQueue;
use crate::config::Config;
use std::sync::Arc;

use crate::app::{AppConfig, Outgoing, SessionInfo};
use crate::router::{
    encode_shared_as, kind, ConsumerKey, DestKind, Framing, Published, QMsg, QueueOp, Router,
    Subscriber,
};
use crate::session::{Action, Cause, Due, Liveness, Session, SessionId, StompError, Subscription};
use crate::stomp::{self, Header, ParseError, Parsed, Version};
use crate::ws::{self, code, Decoder, DecoderConfig, Event, Opcode, Refusal, Status};

mod admin;
mod app;
mod broker;
mod deliver;
mod holds;
mod reply;
mod sockjs;
mod websocket;

pub use app::encode_outgoing;
use app::*;
pub use broker::drop_subscription;
use broker::*;
pub use deliver::TopicDelivery;
use reply::*;
pub use sockjs::{SjsAnswer, SjsCall, SjsCtx, SjsFrame, SjsSession};

/// Which listener accepted the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// HTTP upgrade to WebSocket first.
    Ws,
    /// STOMP straight away.
    Tcp,
    /// A SockJS session: no socket of its own; its frames travel on its carriers (the
    /// WebSocket listener's HTTP connections).
    Sockjs,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Ws => "WebSocket",
            Kind::Tcp => "TCP",
            Kind::Sockjs => "SockJS",
        })
    }
}

#[derive(Debug)]
struct WsState {
    codec: Box<WsCodec>,
    /// Our Close is queued; we wait for the peer's.
    close_sent: bool,
}

/// A WebSocket session's codec state, boxed to keep the slab entry small (the deflate pointer
/// fits the decoder's allocation size class, so it costs no memory).
#[derive(Debug)]
struct WsCodec {
    decoder: Decoder,
    /// permessage-deflate, when agreed in the handshake.
    deflate: Option<Box<WsDeflate>>,
}

/// A session's side of permessage-deflate. The server keeps no compressor state (see
/// [`crate::ws::deflate`]); the inflater is the session's own only with client context takeover
/// (made at its first compressed message), else the reactor's shared one.
#[derive(Debug)]
struct WsDeflate {
    agreed: crate::ws::deflate::Agreed,
    inflater: Option<Box<crate::ws::deflate::Inflater>>,
}

impl WsDeflate {
    /// Inflate one compressed message onto `out` (at most `limit` bytes).
    fn inflate(
        &mut self,
        payload: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
        zip: &mut crate::server::compress::Compression,
    ) -> Result<(), ws::WsError> {
        if self.agreed.client_no_context_takeover {
            return zip.shared_inflater().inflate(payload, out, limit);
        }
        let bits = self.agreed.client_max_window_bits;
        self.inflater
            .get_or_insert_with(|| Box::new(crate::ws::deflate::Inflater::with_window(true, bits)))
            .inflate(payload, out, limit)
    }
}

#[derive(Debug)]
pub struct StompState {
    pub session: Session<TxOp>,
    /// When the session began (the upgrade, or the TCP accept), and the bytes read for it:
    /// for the admin API (here rather than in every slab entry).
    opened: Instant,
    bytes_in: u64,
    /// A STOMP frame split across WebSocket messages (empty otherwise).
    stash: Vec<u8>,
    /// A CONNECT is waiting for a slow credentials check; nothing is read meanwhile.
    auth_pending: bool,
    /// The check has answered, but (a failed login's penalty) the CONNECT is handled again
    /// only at this time.
    auth_hold: Option<Instant>,
    /// Input stopped by the memory alarm (at a SEND, or in a large partial frame) until the
    /// reactor sees the alarm clear.
    memory_blocked: bool,
    /// The ACL rules this session last used, with their generation.
    acl: Option<(u64, Arc<crate::auth::Acl>)>,
    /// Input stopped before an UNSUBSCRIBE or DISCONNECT so that what the session published
    /// before it is routed first (a SEND and an UNSUBSCRIBE in one read: the SEND still
    /// reaches the subscription).
    fan_out_first: bool,
}

#[derive(Debug)]
enum App {
    Echo,
    Stomp(Box<StompState>),
}

#[derive(Debug)]
enum Phase {
    /// Reading the HTTP upgrade request.
    Handshake,
    /// Frames flow: WebSocket (`ws` is set) or plain TCP.
    Open { ws: Option<WsState>, app: App },
    /// Nothing more to say: flush, half-close, discard input until EOF or the deadline.
    Linger,
    /// A SockJS receiving request attached to its session (`sockjs.rs`).
    Carrier(Box<sockjs::Carrier>),
}

/// What the reactor should do next with the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Wait for the next readiness event.
    Idle,
    /// The read budget ran out with data possibly left: read again this loop turn.
    ReadAgain,
    /// Remove the connection.
    Close,
}

/// Everything a connection borrows from its reactor while it runs.
pub struct Ctx<'a> {
    pub cfg: &'a Config,
    pub pool: &'a mut BufPool,
    pub now: Instant,
    /// The connection's token (for subscriptions).
    pub token: usize,
    pub reactor: usize,
    pub router: &'a mut Router,
    /// Messages published while handling input; the reactor fans them out right after.
    pub outbox: &'a mut Vec<Published>,
    /// Work for queues (wherever their home is); the reactor routes it right after.
    pub qops: &'a mut Vec<QueueOp>,
    /// Reused scratch for replies.
    pub scratch: &'a mut Vec<u8>,
    /// Reused scratch for encoding published messages.
    pub enc: &'a mut Vec<u8>,
    /// Reactor-wide message sequence number.
    pub seq: &'a mut u64,
    /// Reactor-wide session counter.
    pub sessions: &'a mut u64,
    /// The reactor's metrics.
    pub counters: &'a mut Counters,
    /// The reactor's permessage-deflate state.
    pub zip: &'a mut crate::server::compress::Compression,
    /// Bytes inflated from this connection's compressed messages since the read budget last
    /// counted them: they count against it like bytes read, so a client whose small messages
    /// inflate to large ones gets no longer turns than one sending them as they are.
    pub inflated: usize,
    /// The application worker pool.
    pub workers: Option<&'a crate::server::apps::Pool>,
    /// Where slow credential checks run.
    pub auth: Option<&'a crate::server::authpool::AuthPool>,
    /// SockJS: the mounts, and what a request asks of the reactor.
    pub sjs: &'a mut SjsCtx,
    /// The peer's address (for failed-login slow-down).
    pub peer: Option<std::net::IpAddr>,
    /// Memory is above the high-water mark: publishers are not read from.
    pub memory_alarm: bool,
    /// Queue SENDs are waiting for room at the JetStream store: queue publishers are not read.
    pub queue_busy: bool,
}

impl Ctx<'_> {
    /// This connection, as answers from other threads address it.
    pub fn origin(&self) -> crate::router::Origin {
        crate::router::Origin {
            reactor: self.reactor,
            token: self.token,
        }
    }
}

#[derive(Debug)]
pub struct Conn {
    /// `None` for a SockJS session (its carriers hold the sockets).
    sock: Option<TcpStream>,
    kind: Kind,
    /// TLS state when the listener serves TLS.
    tls: Option<Box<rustls::ServerConnection>>,
    /// The peer's address, when it counts against the connection limits.
    admitted: Option<std::net::IpAddr>,
    rbuf: Vec<u8>,
    rstart: usize,
    phase: Phase,
    out: OutQueue,
    /// When the current phase (handshake, close, linger) times out.
    phase_deadline: Option<Instant>,
    /// The wheel tick of this connection's live timer entry.
    timer_at: Option<u64>,
    /// Writable interest is registered (a write would block).
    write_blocked: bool,
    /// Reads are paused because the outbound queue is over its bound: a client that does not
    /// read what it asks for (RECEIPTs, PONGs, echoes) is not read from either.
    paused: bool,
    /// Queue deliveries here wait to be reported written, or a consumer waits for room.
    queue_pending: bool,
    /// Over the outbound bound as a subscriber: deliveries stop, the connection is closing.
    overflowed: bool,
    read_closed: bool,
    write_closed: bool,
    /// Heart-beats: when the client last spoke, when we last wrote, what is due.
    live: Liveness,
    /// A SockJS session's state.
    sjs: Option<Box<SjsSession>>,
}

impl Conn {
    pub fn new(
        sock: TcpStream,
        kind: Kind,
        cfg: &Config,
        now: Instant,
        sessions: &mut u64,
        reactor: usize,
        admitted: Option<std::net::IpAddr>,
    ) -> Self {
        let (phase, deadline) = match kind {
            Kind::Ws => (Phase::Handshake, Some(now + cfg.handshake_timeout)),
            Kind::Tcp | Kind::Sockjs => (
                Phase::Open {
                    ws: None,
                    app: App::Stomp(new_stomp(sessions, reactor, now)),
                },
                // A TCP client has the handshake timeout to send CONNECT.
                Some(now + cfg.handshake_timeout),
            ),
        };
        let tls = cfg.tls.as_ref().and_then(|t| {
            let on = match kind {
                Kind::Ws => t.ws,
                Kind::Tcp => t.tcp,
                Kind::Sockjs => false,
            };
            on.then(|| rustls::ServerConnection::new(Arc::clone(&t.server)))
        });
        // A TLS listener never falls back to plaintext: if the TLS state cannot be made, the
        // connection is closed at once.
        let (tls, phase, deadline) = match tls {
            None => (None, phase, deadline),
            Some(Ok(c)) => (Some(Box::new(c)), phase, deadline),
            Some(Err(_)) => (None, Phase::Linger, Some(now)),
        };
        Conn {
            sock: Some(sock),
            kind,
            tls,
            admitted,
            rbuf: Vec::new(),
            rstart: 0,
            phase,
            out: OutQueue::default(),
            phase_deadline: deadline,
            timer_at: None,
            write_blocked: false,
            paused: false,
            queue_pending: false,
            overflowed: false,
            read_closed: false,
            write_closed: false,
            live: Liveness::new(now),
            sjs: None,
        }
    }

    /// The STOMP session, if this is a STOMP connection.
    pub fn stomp(&self) -> Option<&StompState> {
        match &self.phase {
            Phase::Open {
                app: App::Stomp(s), ..
            } => Some(s),
            _ => None,
        }
    }

    fn stomp_mut(&mut self) -> Option<&mut StompState> {
        match &mut self.phase {
            Phase::Open {
                app: App::Stomp(s), ..
            } => Some(s),
            _ => None,
        }
    }

    /// Anything to write: queued frames, or TLS records (handshake, alerts).
    pub fn wants_flush(&self) -> bool {
        !self.out.is_empty()
            || self.tls.as_ref().is_some_and(|t| t.wants_write())
            || self.sjs_pending()
    }

    /// How this connection's STOMP frames travel.
    fn framing(&self) -> Framing {
        match self.phase {
            Phase::Open { ws: Some(_), .. } | Phase::Handshake => Framing::WebSocket,
            _ => Framing::Tcp,
        }
    }

    /// The earliest time the timer should look at this connection.
    pub fn next_deadline(&self, grace: u32) -> Option<Instant> {
        let beats = self.live.next_deadline(grace);
        let held = self.stomp().and_then(|s| s.auth_hold);
        [self.phase_deadline, beats, held, self.sjs_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Read until WouldBlock, EOF or the budget, processing as bytes arrive.
    pub fn on_readable(&mut self, ctx: &mut Ctx<'_>) -> Next {
        let mut budget = ctx.cfg.read_budget;
        if self.auth_pending() || self.memory_blocked() {
            return Next::Idle;
        }
        if self.sock.is_none() {
            return self.sjs_readable(ctx);
        }
        if let Phase::Open {
            ws,
            app: App::Stomp(st),
        } = &mut self.phase
        {
            // The reactor has routed what was published before this read was stopped.
            st.fan_out_first = false;
            if ws.is_some() && !st.stash.is_empty() {
                // A CONNECT held back for a credentials check, or frames held back while the
                // output was over its bound, and what followed them.
                let flow = stomp_ws_message(st, &[], ctx, &mut self.out);
                if let Some(f) = flow {
                    self.apply_flow(ctx, f);
                }
                // Over the bound again: wait for the next drain (which reads again).
                self.pause_if_over(ctx);
            }
        }
        if !self.paused && self.rstart < self.rbuf.len() {
            // Bytes left over from before a pause.
            self.process(ctx);
            self.recycle(ctx);
            if let Some(next) = self.inflated_a_budget(ctx) {
                return next;
            }
        }
        loop {
            if self.fan_out_first() {
                return Next::ReadAgain;
            }
            if self.paused || self.read_closed || self.auth_pending() || self.memory_blocked() {
                return Next::Idle;
            }
            if self.block_large_partial(ctx) {
                return Next::Idle;
            }
            if self.rbuf.capacity() == 0 {
                self.rbuf = ctx.pool.get();
            }
            if self.rbuf.len() == self.rbuf.capacity() {
                // A frame larger than the buffer (STOMP over TCP); the parser's limits bound it.
                let limit = ctx.cfg.stomp_limits.max_frame_bytes();
                if matches!(self.phase, Phase::Open { ws: None, .. }) && self.rbuf.len() < limit {
                    let grow = self.rbuf.len().min(limit - self.rbuf.len()).max(1);
                    self.rbuf.reserve_exact(grow);
                } else {
                    self.refuse(ctx, Refusal::too_large());
                    return self.after_io(ctx);
                }
            }
            let filled = self.rbuf.len();
            let cap = self.rbuf.capacity();
            self.rbuf.resize(cap, 0);
            let buf = self.rbuf.get_mut(filled..).unwrap_or_default();
            let Some(sock) = self.sock.as_mut() else {
                return Next::Idle;
            };
            let res = match &mut self.tls {
                Some(t) => super::tls::read(t, sock, buf),
                None => sock.read(buf),
            };
            let n = match res {
                Ok(n) => n,
                Err(e) => {
                    self.rbuf.truncate(filled);
                    match e.kind() {
                        io::ErrorKind::WouldBlock => {
                            self.recycle(ctx);
                            return self.after_io(ctx);
                        }
                        io::ErrorKind::Interrupted => continue,
                        _ => return Next::Close,
                    }
                }
            };
            self.rbuf.truncate(filled + n);
            if n == 0 {
                // The peer is done sending. Whatever is queued is still sent, then we close.
                self.read_closed = true;
                if !matches!(self.phase, Phase::Linger) {
                    self.linger(ctx);
                }
                self.recycle(ctx);
                return self.after_io(ctx);
            }
            self.live.read(ctx.now);
            ctx.counters.bytes_in += n as u64;
            if let Some(st) = self.stomp_mut() {
                st.bytes_in += n as u64;
            }
            self.process(ctx);
            self.recycle(ctx);
            if let Some(next) = self.inflated_a_budget(ctx) {
                return next;
            }
            budget = budget
                .saturating_sub(n)
                .saturating_sub(std::mem::take(&mut ctx.inflated));
            if budget == 0 {
                return match self.after_io(ctx) {
                    Next::Idle => Next::ReadAgain,
                    other => other,
                };
            }
        }
    }

    /// Compressed messages inflated to a whole read budget: processing stopped with frames left
    /// in the buffer, and nothing more is read until they are handled, on a later turn (as a
    /// budget run out does).
    fn inflated_a_budget(&mut self, ctx: &mut Ctx<'_>) -> Option<Next> {
        if ctx.inflated < ctx.cfg.read_budget {
            return None;
        }
        ctx.inflated = 0;
        Some(match self.after_io(ctx) {
            Next::Idle => Next::ReadAgain,
            other => other,
        })
    }

    /// Give the read buffer back when it is empty; otherwise move the unread tail to the front.
    fn recycle(&mut self, ctx: &mut Ctx<'_>) {
        if self.rstart >= self.rbuf.len() {
            self.rstart = 0;
            if self.rbuf.capacity() > 0 {
                ctx.pool.put(std::mem::take(&mut self.rbuf));
            }
        } else if self.rstart > 0 {
            self.rbuf.drain(..self.rstart);
            self.rstart = 0;
        }
    }

    /// Decide what happens after reads or writes: close when everything is done.
    fn after_io(&mut self, ctx: &mut Ctx<'_>) -> Next {
        if self.paused && self.out.footprint() <= ctx.cfg.max_outbound / 2 {
            self.paused = false;
            return Next::ReadAgain;
        }
        let done = matches!(self.phase, Phase::Linger) || self.read_closed;
        let flushed = !self.wants_flush();
        let Some(sock) = self.sock.as_mut() else {
            // A SockJS session stays until its disconnect delay.
            return Next::Idle;
        };
        if done && flushed {
            if self.read_closed {
                return Next::Close;
            }
            if !self.write_closed {
                self.write_closed = true;
                if let Some(t) = &mut self.tls {
                    t.send_close_notify();
                    let _ = t.write_tls(sock);
                }
                let _ = sock.shutdown(Shutdown::Write);
                self.phase_deadline = Some(ctx.now + ctx.cfg.close_timeout);
            }
        }
        Next::Idle
    }

    /// Flush queued output. Called once per loop turn for each connection with output.
    pub fn flush(&mut self, ctx: &mut Ctx<'_>) -> io::Result<Next> {
        let written_before = self.out.written_total();
        let Some(sock) = self.sock.as_mut() else {
            return Ok(self.after_io(ctx));
        };
        if let Some(t) = &mut self.tls {
            if !self.write_blocked && (!self.out.is_empty() || t.wants_write()) {
                let done = super::tls::flush(
                    t,
                    sock,
                    &mut self.out,
                    ctx.pool,
                    &mut ctx.counters.bytes_out,
                )?;
                self.write_blocked = !done;
                self.live.wrote(ctx.now);
            }
        } else if !self.out.is_empty() && !self.write_blocked {
            let before = self.out.len();
            let done = self.out.write_to(sock, ctx.pool)?;
            ctx.counters.bytes_out += (before - self.out.len()) as u64;
            self.write_blocked = !done;
            self.live.wrote(ctx.now);
        }
        if self.paused && self.out.written_total() > written_before {
            // Not read from while paused, but it reads: it is alive (heart-beats).
            self.live.read(ctx.now);
        }
        if self.queue_pending {
            self.queue_written(ctx);
        }
        Ok(self.after_io(ctx))
    }

    /// Tell each queue consumer of this session how far its output is written: auto-mode
    /// deliveries are done once written, and a consumer paused for want of room resumes.
    fn queue_written(&mut self, ctx: &mut Ctx<'_>) {
        let written = self.out.written_total();
        let room = self.out.footprint() <= ctx.cfg.max_outbound / 2;
        let mut pending = false;
        if let Some(st) = self.stomp() {
            for h in st.session.subscriptions().iter().filter_map(|s| s.handle) {
                let router = &mut *ctx.router;
                if let Some(k) = unpack_key(h, |slot| router.qsub_gen(slot)) {
                    pending |= router.after_write(k.slot, k.gen, written, room, ctx.qops);
                }
            }
        }
        self.queue_pending = pending;
    }

    /// Deadlines: phase timeouts end the connection; heart-beats are sent or checked.
    pub fn on_timer(&mut self, ctx: &mut Ctx<'_>) -> Next {
        let now = ctx.now;
        if self.phase_deadline.is_some_and(|d| d <= now) {
            return Next::Close;
        }
        if let Some(next) = self.sjs_timer(now) {
            return next;
        }
        if let Some(next) = self.release_auth(now) {
            return next;
        }
        if self.memory_blocked() {
            // Not read from by the server's choice: its silence proves nothing.
            self.live.read(now);
        }
        match self
            .live
            .due(now, ctx.cfg.heartbeat_grace, self.out.is_empty())
        {
            Due::Silent => {
                ctx.counters.heartbeat_timeouts += 1;
                self.stomp_fail(
                    ctx,
                    &StompError::new("heart-beat timeout: no data from client"),
                );
            }
            Due::Beat => {
                let framing = self.framing();
                self.push_stomp(ctx, b"\n", framing);
            }
            Due::Nothing => {}
        }
        Next::Idle
    }

    /// Handle what is in the read buffer, as the connection's phase says.
    fn process(&mut self, ctx: &mut Ctx<'_>) {
        loop {
            if self.paused || self.auth_pending() || self.fan_out_first() || self.memory_blocked() {
                return;
            }
            if self.rstart >= self.rbuf.len() {
                return;
            }
            let go_on = match &mut self.phase {
                Phase::Handshake => self.handshake(ctx),
                Phase::Open { ws: Some(_), .. } => self.ws_input(ctx),
                Phase::Open { ws: None, app } => {
                    let App::Stomp(st) = app else { return };
                    let input = self.rbuf.get(self.rstart..).unwrap_or_default();
                    let (used, flow) = stomp_input(st, input, ctx, &mut self.out, Framing::Tcp);
                    self.rstart += used;
                    if let Some(f) = flow {
                        self.apply_flow(ctx, f);
                    }
                    self.pause_if_over(ctx);
                    false
                }
                Phase::Linger => {
                    self.rstart = self.rbuf.len();
                    false
                }
                Phase::Carrier(_) => self.carrier_input(ctx),
            };
            if !go_on || ctx.sjs.call.is_some() {
                return;
            }
        }
    }

    /// Every byte queued for the connection counts against its bound, replies included: past
    /// it, nothing more is read until the peer has read enough (backpressure).
    fn pause_if_over(&mut self, ctx: &Ctx<'_>) {
        if self.out.footprint() > ctx.cfg.max_outbound {
            self.paused = true;
        }
    }

    fn apply_flow(&mut self, ctx: &mut Ctx<'_>, flow: Flow) {
        match flow {
            Flow::Connected { send_ms, recv_ms } => {
                self.phase_deadline = None;
                self.live.start(send_ms, recv_ms, ctx.now);
            }
            Flow::Close { error } => {
                if self.framing() == Framing::WebSocket {
                    let code = if error {
                        code::PROTOCOL_ERROR
                    } else {
                        code::NORMAL
                    };
                    if let Phase::Open { ws: Some(w), .. } = &mut self.phase {
                        w.close_sent = true;
                    }
                    write_close(&mut self.out, ctx.pool, code, "");
                }
                // After a DISCONNECT the output is flushed before the close, so what was queued
                // for an auto-mode consumer is as good as written; after an error it goes back.
                self.linger_settling(ctx, !error);
            }
        }
    }

    /// Stop reading frames; keep the STOMP state (subscriptions are dropped on removal).
    fn linger(&mut self, ctx: &mut Ctx<'_>) {
        self.linger_settling(ctx, false);
    }

    /// [`Conn::linger`]; with `written`, auto-mode queue deliveries already queued count as
    /// written (see [`drop_subscription`]).
    fn linger_settling(&mut self, ctx: &mut Ctx<'_>, written: bool) {
        if let (Some(sock), true) = (
            self.sock.as_mut(),
            self.queue_pending && self.tls.is_none() && !self.write_blocked,
        ) {
            // Write what is queued now: auto-mode queue deliveries that reach the socket before
            // the close are done; the rest go back to their queues (redelivered).
            let before = self.out.len();
            if self.out.write_to(sock, ctx.pool).is_ok() {
                ctx.counters.bytes_out += (before - self.out.len()) as u64;
            }
            self.queue_written(ctx);
        }
        if let Phase::Carrier(c) = &self.phase {
            ctx.sjs.lost.push((c.session(), ctx.token));
        }
        self.rstart = self.rbuf.len();
        self.live.stop();
        self.phase_deadline = Some(ctx.now + ctx.cfg.close_timeout);
        self.phase = match std::mem::replace(&mut self.phase, Phase::Linger) {
            Phase::Open {
                app: App::Stomp(s), ..
            } => {
                // Subscriptions stop now (unacked queue messages go back to their queues);
                // open transactions are dropped with the session.
                for sub in s.session.subscriptions() {
                    drop_subscription(sub, written, ctx);
                }
                Phase::Linger
            }
            _ => Phase::Linger,
        };
        self.sjs_closing(ctx);
    }

    fn push_stomp(&mut self, ctx: &mut Ctx<'_>, bytes: &[u8], framing: Framing) {
        push_frame(&mut self.out, ctx.pool, bytes, framing);
    }

    fn refuse(&mut self, ctx: &mut Ctx<'_>, refusal: Refusal) {
        ctx.counters.errors_handshake += 1;
        let buf = self.out.own_buf(ctx.pool);
        let before = buf.len();
        refusal.write(buf);
        self.out.commit(before);
        self.phase = Phase::Linger;
        self.rstart = self.rbuf.len();
        self.phase_deadline = Some(ctx.now + ctx.cfg.close_timeout);
    }

    /// Refuse a connection over the limits: HTTP 503 or STOMP ERROR, then close.
    pub fn refuse_limit(&mut self, ctx: &mut Ctx<'_>) {
        let reason = "too many connections";
        match self.kind {
            Kind::Ws => self.refuse(ctx, Refusal::unavailable(reason)),
            Kind::Tcp | Kind::Sockjs => {
                let err = StompError::new(reason);
                write_error(&mut self.out, ctx, Version::V1_2, &err, Framing::Tcp);
                self.linger(ctx);
            }
        }
        ctx.counters.refused += 1;
    }

    /// Begin a server-initiated close (shutdown): STOMP ERROR, then WebSocket Close `code`.
    pub fn start_close(&mut self, ctx: &mut Ctx<'_>, close_code: u16, reason: &str) {
        match &mut self.phase {
            Phase::Open { ws, app } => {
                if let App::Stomp(st) = app {
                    let err = StompError::new(reason.to_string());
                    let framing = match ws {
                        Some(_) => Framing::WebSocket,
                        None => Framing::Tcp,
                    };
                    write_error(&mut self.out, ctx, st.session.version, &err, framing);
                }
                match ws {
                    Some(w) if !w.close_sent => {
                        w.close_sent = true;
                        write_close(&mut self.out, ctx.pool, close_code, reason);
                    }
                    _ => {}
                }
                if ws.is_none() {
                    self.linger(ctx);
                } else {
                    self.phase_deadline = Some(ctx.now + ctx.cfg.close_timeout);
                }
            }
            Phase::Linger => {}
            Phase::Carrier(_) => self.carry_end(ctx),
            Phase::Handshake => self.refuse(ctx, Refusal::unavailable("server shutting down")),
        }
    }
}
