//! One connection: its socket, read buffer, outbound queue and protocol phase. The reactor calls
//! [`Conn::on_readable`], [`Conn::flush`] and [`Conn::on_timer`]; protocol work is delegated to
//! the sans-IO `ws`, `stomp` and `session` modules.

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
    encode_shared_as, kind, ConsumerKey, DestKind, MsgId, Published, QMsg, QueueOp, Router,
    Subscriber,
};
use crate::session::{Action, Session, StompError, Subscription};
use crate::stomp::{self, Header, Parsed, Version};
use crate::ws::{self, code, Decoder, DecoderConfig, Event, Opcode, Refusal, Status};

/// Which listener accepted the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// HTTP upgrade to WebSocket first.
    Ws,
    /// STOMP straight away.
    Tcp,
}

#[derive(Debug)]
struct WsState {
    decoder: Box<Decoder>,
    /// Our Close is queued; we wait for the peer's.
    close_sent: bool,
}

#[derive(Debug)]
pub struct StompState {
    pub session: Session,
    /// A STOMP frame split across WebSocket messages (empty otherwise).
    stash: Vec<u8>,
    /// Frames buffered by open transactions, applied at COMMIT.
    txs: Vec<(String, Vec<TxOp>)>,
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
    /// The application worker pool.
    pub workers: Option<&'a super::apps::Pool>,
    /// Where slow credential checks run.
    pub auth: Option<&'a super::authpool::AuthPool>,
    /// The peer's address (for failed-login slow-down).
    pub peer: Option<std::net::IpAddr>,
    /// Memory is above the high-water mark: publishers are not read from.
    pub memory_alarm: bool,
}

#[derive(Debug)]
pub struct Conn {
    pub sock: TcpStream,
    pub kind: Kind,
    /// TLS state when the listener serves TLS.
    tls: Option<Box<rustls::ServerConnection>>,
    /// The peer's address, when it counts against the connection limits.
    pub admitted: Option<std::net::IpAddr>,
    rbuf: Vec<u8>,
    rstart: usize,
    phase: Phase,
    pub out: OutQueue,
    /// When the current phase (handshake, close, linger) times out.
    phase_deadline: Option<Instant>,
    /// The wheel tick of this connection's live timer entry.
    pub timer_at: Option<u64>,
    /// Writable interest is registered (a write would block).
    pub write_blocked: bool,
    /// Reads are paused because the outbound queue is over its bound: a client that does not
    /// read what it asks for (RECEIPTs, PONGs, echoes) is not read from either.
    pub paused: bool,
    /// Queue deliveries here wait to be reported written, or a consumer waits for room.
    pub queue_pending: bool,
    /// Over the outbound bound as a subscriber: deliveries stop, the connection is closing.
    pub overflowed: bool,
    read_closed: bool,
    write_closed: bool,
    hb_send: Option<Duration>,
    hb_recv: Option<Duration>,
    last_read: Instant,
    last_write: Instant,
}

impl Conn {
    pub fn new(
        sock: TcpStream,
        kind: Kind,
        cfg: &Config,
        now: Instant,
        sessions: &mut u64,
        reactor: usize,
    ) -> Self {
        let (phase, deadline) = match kind {
            Kind::Ws => (Phase::Handshake, Some(now + cfg.handshake_timeout)),
            Kind::Tcp => (
                Phase::Open {
                    ws: None,
                    app: App::Stomp(new_stomp(sessions, reactor)),
                },
                // A TCP client has the handshake timeout to send CONNECT.
                Some(now + cfg.handshake_timeout),
            ),
        };
        let tls = cfg.tls.as_ref().and_then(|t| {
            let on = match kind {
                Kind::Ws => t.ws,
                Kind::Tcp => t.tcp,
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
            sock,
            kind,
            tls,
            admitted: None,
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
            hb_send: None,
            hb_recv: None,
            last_read: now,
            last_write: now,
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

    /// The connection is going away: drop its subscriptions (and transactions).
    pub fn drop_session(&mut self, ctx: &mut Ctx<'_>) {
        if let Phase::Open {
            app: App::Stomp(s), ..
        } = std::mem::replace(&mut self.phase, Phase::Linger)
        {
            for sub in s.session.subscriptions() {
                drop_subscription(sub, false, ctx);
            }
        }
    }

    fn auth_pending(&self) -> bool {
        self.stomp().is_some_and(|s| s.auth_pending)
    }

    fn memory_blocked(&self) -> bool {
        self.stomp().is_some_and(|s| s.memory_blocked)
    }

    /// The memory alarm cleared: `true` if this connection was stopped for it (and is no more).
    pub fn take_memory_blocked(&mut self) -> bool {
        self.stomp_mut()
            .is_some_and(|s| std::mem::replace(&mut s.memory_blocked, false))
    }

    /// Bytes of input held for frames not complete yet: the read buffer's unread part, the
    /// WebSocket message being assembled, and STOMP bytes stashed between messages.
    fn partial_input(&self) -> usize {
        let unread = self.rbuf.len().saturating_sub(self.rstart);
        let (ws, stash) = match &self.phase {
            Phase::Open { ws, app } => (
                ws.as_ref().map_or(0, |w| w.decoder.buffered()),
                match app {
                    App::Stomp(st) => st.stash.len(),
                    App::Echo => 0,
                },
            ),
            _ => (0, 0),
        };
        unread + ws + stash
    }

    /// Under the memory alarm, a connection in the middle of a large frame is not read from
    /// until the alarm clears (a small partial frame, an ACK split by the network, goes on).
    fn block_large_partial(&mut self, ctx: &mut Ctx<'_>) -> bool {
        if !ctx.memory_alarm || self.partial_input() <= ctx.cfg.read_buffer_size {
            return false;
        }
        match self.stomp_mut() {
            Some(st) => {
                st.memory_blocked = true;
                ctx.counters.memory_blocked += 1;
                true
            }
            None => false,
        }
    }

    fn fan_out_first(&self) -> bool {
        self.stomp().is_some_and(|s| s.fan_out_first)
    }

    /// A slow credentials check finished: the held-back CONNECT is handled again with the
    /// answer, after `delay` (a failed login's penalty, kept on the timer wheel).
    pub fn auth_done(&mut self, ok: bool, delay: Duration, now: Instant) -> Next {
        if let Phase::Open {
            app: App::Stomp(st),
            ..
        } = &mut self.phase
        {
            if st.auth_pending {
                st.session.preauth = Some(ok);
                if delay.is_zero() {
                    st.auth_pending = false;
                    return Next::ReadAgain;
                }
                st.auth_hold = Some(now + delay);
            }
        }
        Next::Idle
    }

    /// A held login answer whose delay is over: the CONNECT is handled again.
    fn release_auth(&mut self, now: Instant) -> Option<Next> {
        let st = self.stomp_mut()?;
        if st.auth_hold.is_some_and(|at| at <= now) {
            st.auth_hold = None;
            st.auth_pending = false;
            return Some(Next::ReadAgain);
        }
        None
    }

    /// Anything to write: queued frames, or TLS records (handshake, alerts).
    pub fn wants_flush(&self) -> bool {
        !self.out.is_empty() || self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    fn is_ws(&self) -> bool {
        matches!(
            self.phase,
            Phase::Open { ws: Some(_), .. } | Phase::Handshake
        )
    }

    /// The earliest time the timer should look at this connection.
    pub fn next_deadline(&self, grace: u32) -> Option<Instant> {
        let hb_out = self.hb_send.map(|d| self.last_write + d);
        let hb_in = self.hb_recv.map(|d| self.last_read + d * grace);
        let held = self.stomp().and_then(|s| s.auth_hold);
        [self.phase_deadline, hb_out, hb_in, held]
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
            let res = match &mut self.tls {
                Some(t) => super::tls::read(t, &mut self.sock, buf),
                None => self.sock.read(buf),
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
            self.last_read = ctx.now;
            ctx.counters.bytes_in += n as u64;
            self.process(ctx);
            self.recycle(ctx);
            budget = budget.saturating_sub(n);
            if budget == 0 {
                return match self.after_io(ctx) {
                    Next::Idle => Next::ReadAgain,
                    other => other,
                };
            }
        }
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
        if done && !self.wants_flush() {
            if self.read_closed {
                return Next::Close;
            }
            if !self.write_closed {
                self.write_closed = true;
                if let Some(t) = &mut self.tls {
                    t.send_close_notify();
                    let _ = t.write_tls(&mut self.sock);
                }
                let _ = self.sock.shutdown(Shutdown::Write);
                self.phase_deadline = Some(ctx.now + ctx.cfg.close_timeout);
            }
        }
        Next::Idle
    }

    /// Flush queued output. Called once per loop turn for each connection with output.
    pub fn flush(&mut self, ctx: &mut Ctx<'_>) -> io::Result<Next> {
        let written_before = self.out.written_total();
        if let Some(t) = &mut self.tls {
            if !self.write_blocked && (!self.out.is_empty() || t.wants_write()) {
                let done = super::tls::flush(
                    t,
                    &mut self.sock,
                    &mut self.out,
                    ctx.pool,
                    &mut ctx.counters.bytes_out,
                )?;
                self.write_blocked = !done;
                self.last_write = ctx.now;
            }
        } else if !self.out.is_empty() && !self.write_blocked {
            let before = self.out.len();
            let done = self.out.write_to(&mut self.sock, ctx.pool)?;
            ctx.counters.bytes_out += (before - self.out.len()) as u64;
            self.write_blocked = !done;
            self.last_write = ctx.now;
        }
        if self.paused && self.out.written_total() > written_before {
            // Not read from while paused, but it reads: it is alive (heart-beats).
            self.last_read = ctx.now;
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
        if let Some(next) = self.release_auth(now) {
            return next;
        }
        if self.memory_blocked() {
            // Not read from by the server's choice: its silence proves nothing.
            self.last_read = now;
        }
        if let Some(d) = self.hb_recv {
            if self.last_read + d * ctx.cfg.heartbeat_grace <= now {
                self.hb_recv = None;
                self.hb_send = None;
                ctx.counters.heartbeat_timeouts += 1;
                self.stomp_fail(
                    ctx,
                    &StompError::new("heart-beat timeout: no data from client"),
                );
                return Next::Idle;
            }
        }
        if let Some(d) = self.hb_send {
            if self.last_write + d <= now {
                // A connection that is still writing needs no heart-beat.
                if self.out.is_empty() {
                    let ws = self.is_ws();
                    self.push_stomp(ctx, b"\n", ws);
                }
                self.last_write = now;
            }
        }
        Next::Idle
    }

    fn process(&mut self, ctx: &mut Ctx<'_>) {
        loop {
            if self.paused || self.auth_pending() || self.fan_out_first() || self.memory_blocked() {
                return;
            }
            let input = self.rbuf.get_mut(self.rstart..).unwrap_or_default();
            if input.is_empty() {
                return;
            }
            match &mut self.phase {
                Phase::Handshake => match ws::parse_request(input, &ctx.cfg.handshake) {
                    Ok(Status::Partial) => return,
                    Ok(Status::Complete(up)) => {
                        let app = match up.endpoint() {
                            "/echo" if ctx.cfg.echo => App::Echo,
                            "/ws" | "/stomp" => App::Stomp(new_stomp(ctx.sessions, ctx.reactor)),
                            _ => {
                                self.refuse(ctx, Refusal::not_found());
                                return;
                            }
                        };
                        let protocol = match app {
                            App::Echo => None,
                            App::Stomp(_) => up.protocol,
                        };
                        let buf = self.out.own_buf(ctx.pool);
                        let before = buf.len();
                        ws::write_accept(buf, up.key, protocol);
                        self.out.commit(before);
                        self.rstart += up.consumed;
                        // STOMP clients get the handshake timeout again to send CONNECT.
                        self.phase_deadline = match app {
                            App::Echo => None,
                            App::Stomp(_) => Some(ctx.now + ctx.cfg.handshake_timeout),
                        };
                        self.phase = Phase::Open {
                            ws: Some(WsState {
                                decoder: Box::new(Decoder::new(DecoderConfig {
                                    max_inline: (ctx.cfg.read_buffer_size
                                        - ws::frame::MAX_HEADER_LEN)
                                        as u64,
                                    ..DecoderConfig::server(
                                        ctx.cfg.max_frame_size,
                                        ctx.cfg.max_message_size,
                                    )
                                })),
                                close_sent: false,
                            }),
                            app,
                        };
                    }
                    Err(refusal) => {
                        // A plain GET (no upgrade) for a static file the application serves.
                        if refusal.status == 426 {
                            let file = ctx.cfg.app.as_deref().and_then(|app| {
                                let path = ws::handshake::request_path(input)?;
                                app.static_files.iter().find(|f| f.path == path).cloned()
                            });
                            let has_files = ctx
                                .cfg
                                .app
                                .as_deref()
                                .is_some_and(|a| !a.static_files.is_empty());
                            if file.is_none() && has_files {
                                self.refuse(ctx, Refusal::not_found());
                                return;
                            }
                            if let Some(f) = file {
                                let buf = self.out.own_buf(ctx.pool);
                                let before = buf.len();
                                buf.extend_from_slice(
                                    format!(
                                        "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                        f.content_type,
                                        f.body.len()
                                    )
                                    .as_bytes(),
                                );
                                buf.extend_from_slice(&f.body);
                                self.out.commit(before);
                                self.rstart = self.rbuf.len();
                                self.linger(ctx);
                                return;
                            }
                        }
                        self.refuse(ctx, refusal);
                        return;
                    }
                },
                Phase::Open { ws: None, app } => {
                    let App::Stomp(st) = app else { return };
                    let (used, flow) = stomp_input(st, input, ctx, &mut self.out, false);
                    self.rstart += used;
                    if let Some(f) = flow {
                        self.apply_flow(ctx, f);
                    }
                    self.pause_if_over(ctx);
                    return;
                }
                Phase::Open { ws: Some(wss), app } => {
                    let (used, ev) = match wss.decoder.decode(input) {
                        Ok(r) => r,
                        Err(e) => {
                            ctx.counters.errors_ws += 1;
                            if !wss.close_sent {
                                if let App::Stomp(st) = app {
                                    let err = StompError::new(e.reason());
                                    write_error(&mut self.out, ctx, st.session.version, &err, true);
                                }
                                write_close(&mut self.out, ctx.pool, e.close_code(), e.reason());
                            }
                            self.linger(ctx);
                            return;
                        }
                    };
                    self.rstart += used;
                    let Some(ev) = ev else {
                        if used == 0 {
                            return;
                        }
                        continue;
                    };
                    let mut flow = None;
                    match ev {
                        Event::Message { text, payload } => {
                            if wss.close_sent {
                                continue;
                            }
                            match app {
                                App::Echo => {
                                    let op = if text { Opcode::Text } else { Opcode::Binary };
                                    let buf = self.out.own_buf(ctx.pool);
                                    let before = buf.len();
                                    ws::write_frame(buf, true, op, payload, None);
                                    self.out.commit(before);
                                }
                                App::Stomp(st) => {
                                    flow = stomp_ws_message(st, payload, ctx, &mut self.out);
                                }
                            }
                        }
                        Event::Ping(p) => {
                            if !wss.close_sent {
                                let buf = self.out.own_buf(ctx.pool);
                                let before = buf.len();
                                ws::write_frame(buf, true, Opcode::Pong, p, None);
                                self.out.commit(before);
                            }
                        }
                        Event::Pong(_) => {}
                        Event::Close(c) => {
                            if !wss.close_sent {
                                // §5.5.1: echo the status code we received.
                                let buf = self.out.own_buf(ctx.pool);
                                let before = buf.len();
                                match c {
                                    Some((code, _)) => ws::write_close(buf, code, "", None),
                                    None => ws::write_frame(buf, true, Opcode::Close, &[], None),
                                }
                                self.out.commit(before);
                            }
                            self.linger(ctx);
                            return;
                        }
                    }
                    if let Some(f) = flow {
                        self.apply_flow(ctx, f);
                    }
                    self.pause_if_over(ctx);
                }
                Phase::Linger => {
                    self.rstart = self.rbuf.len();
                    return;
                }
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
                self.hb_send = (send_ms > 0).then(|| Duration::from_millis(send_ms));
                self.hb_recv = (recv_ms > 0).then(|| Duration::from_millis(recv_ms));
            }
            Flow::Close { error } => {
                if self.is_ws() {
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
        if self.queue_pending && self.tls.is_none() && !self.write_blocked {
            // Write what is queued now: auto-mode queue deliveries that reach the socket before
            // the close are done; the rest go back to their queues (redelivered).
            let before = self.out.len();
            if self.out.write_to(&mut self.sock, ctx.pool).is_ok() {
                ctx.counters.bytes_out += (before - self.out.len()) as u64;
            }
            self.queue_written(ctx);
        }
        self.rstart = self.rbuf.len();
        self.hb_send = None;
        self.hb_recv = None;
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
    }

    /// The users or the ACL changed (a reload): a session whose user is gone, or that holds a
    /// subscription its rules no longer allow, gets an ERROR and is closed. `true` if it was.
    pub fn recheck_access(&mut self, ctx: &mut Ctx<'_>, acl: Option<&crate::auth::Acl>) -> bool {
        let Some(st) = self.stomp().filter(|s| s.session.connected) else {
            return false;
        };
        let login = st.session.login.as_deref();
        let who = login.unwrap_or("anonymous");
        let reason = if !ctx.cfg.session.authenticator.admits(login) {
            Some(format!("access revoked: {who} is no longer admitted"))
        } else {
            acl.and_then(|acl| {
                let perm = crate::auth::Perm::Read;
                st.session
                    .subscriptions()
                    .iter()
                    .find(|s| !acl.allows(login, perm, &s.destination))
                    .map(|s| {
                        format!(
                            "access revoked: {who} may no longer subscribe to '{}'",
                            s.destination
                        )
                    })
            })
        };
        let Some(reason) = reason else {
            return false;
        };
        ctx.counters.errors_stomp += 1;
        self.stomp_fail(ctx, &StompError::new(reason));
        true
    }

    /// A STOMP-level failure outside frame handling (heart-beat timeout, slow consumer,
    /// shutdown): ERROR, then close.
    pub fn stomp_fail(&mut self, ctx: &mut Ctx<'_>, err: &StompError) {
        let Some(version) = self.stomp().map(|s| s.session.version) else {
            return;
        };
        let ws = self.is_ws();
        write_error(&mut self.out, ctx, version, err, ws);
        self.apply_flow(ctx, Flow::Close { error: true });
    }

    fn push_stomp(&mut self, ctx: &mut Ctx<'_>, bytes: &[u8], ws: bool) {
        push_frame(&mut self.out, ctx.pool, bytes, ws);
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
            Kind::Tcp => {
                let err = StompError::new(reason);
                write_error(&mut self.out, ctx, Version::V1_2, &err, false);
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
                    write_error(&mut self.out, ctx, st.session.version, &err, ws.is_some());
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
            Phase::Handshake => self.refuse(ctx, Refusal::unavailable("server shutting down")),
        }
    }
}

fn new_stomp(sessions: &mut u64, reactor: usize) -> Box<StompState> {
    *sessions += 1;
    Box::new(StompState {
        session: Session::new(format!("s{reactor}-{sessions}")),
        stash: Vec::new(),
        txs: Vec::new(),
        auth_pending: false,
        auth_hold: None,
        memory_blocked: false,
        acl: None,
        fan_out_first: false,
    })
}

/// What the connection must do after STOMP input.
#[derive(Debug, Clone, Copy)]
enum Flow {
    Connected { send_ms: u64, recv_ms: u64 },
    Close { error: bool },
}

/// A whole WebSocket message of STOMP bytes: frames may span messages, so a partial frame is
/// kept in the stash (bounded by the parser's limits) until the next message completes it.
fn stomp_ws_message(
    st: &mut StompState,
    payload: &[u8],
    ctx: &mut Ctx<'_>,
    out: &mut OutQueue,
) -> Option<Flow> {
    if st.auth_pending {
        st.stash.extend_from_slice(payload);
        return None;
    }
    if st.stash.is_empty() {
        let (used, flow) = stomp_input(st, payload, ctx, out, true);
        if !matches!(flow, Some(Flow::Close { .. })) {
            st.stash
                .extend_from_slice(payload.get(used..).unwrap_or_default());
        }
        return flow;
    }
    let mut stash = std::mem::take(&mut st.stash);
    stash.extend_from_slice(payload);
    let (used, flow) = stomp_input(st, &stash, ctx, out, true);
    stash.drain(..used.min(stash.len()));
    if stash.is_empty() {
        // An idle connection holds no buffer.
        stash = Vec::new();
    }
    st.stash = stash;
    flow
}

/// Parse and handle STOMP frames from `input`. Returns the bytes consumed and, if the
/// connection must change course, how.
fn stomp_input(
    st: &mut StompState,
    input: &[u8],
    ctx: &mut Ctx<'_>,
    out: &mut OutQueue,
    ws: bool,
) -> (usize, Option<Flow>) {
    let mut pos = 0;
    let mut flow = None;
    loop {
        if out.footprint() > ctx.cfg.max_outbound {
            // The rest waits until the peer reads what it was sent.
            return (pos, flow);
        }
        let mut headers = [Header::default(); stomp::MAX_HEADERS];
        let rest = input.get(pos..).unwrap_or_default();
        let parsed = stomp::parse(
            rest,
            &mut headers,
            st.session.version,
            &ctx.cfg.stomp_limits,
        );
        let (frame, used) = match parsed {
            Ok(Parsed::Partial) => return (pos, flow),
            Ok(Parsed::Heartbeat(n)) => {
                pos += n;
                continue;
            }
            Ok(Parsed::Frame(f, used)) => {
                let leaves = matches!(
                    f.command,
                    stomp::Command::Unsubscribe | stomp::Command::Disconnect
                );
                if leaves && (!ctx.outbox.is_empty() || !ctx.qops.is_empty()) {
                    st.fan_out_first = true;
                    return (pos, flow);
                }
                (f, used)
            }
            Err(e) => {
                let mut err = StompError::new(e.message());
                err.receipt = stomp::parse::find_receipt(rest, RECEIPT_SEARCH)
                    .and_then(|r| stomp::escape::unescape(r).ok())
                    .map(|r| String::from_utf8_lossy(&r).into_owned());
                protocol_error(out, ctx, st.session.version, &err, ws);
                return (input.len(), Some(Flow::Close { error: true }));
            }
        };
        if ctx.memory_alarm && frame.command == stomp::Command::Send && st.session.connected {
            // Flow control: this SEND and what follows wait until memory falls.
            st.memory_blocked = true;
            ctx.counters.memory_blocked += 1;
            return (pos, flow);
        }
        let mut reply = std::mem::take(ctx.scratch);
        reply.clear();
        let result = match st.session.handle(&frame, &ctx.cfg.session, &mut reply) {
            Ok(Action::Authenticate {
                login,
                passcode,
                host,
            }) => {
                // Hold this CONNECT (unconsumed) until the check answers.
                let job = super::authpool::AuthJob {
                    login,
                    passcode,
                    host,
                    ip: ctx.peer,
                    origin: (ctx.reactor, ctx.token),
                };
                let refused = match ctx.auth {
                    Some(pool) => pool.submit(job).err(),
                    None => Some(super::authpool::Refused::Full),
                };
                match refused {
                    None => {
                        *ctx.scratch = reply;
                        st.auth_pending = true;
                        return (pos, flow);
                    }
                    Some(r) => Err(StompError::new(r.message())),
                }
            }
            other => other,
        };
        pos += used;
        let result =
            result.and_then(|action| apply_action(st, action, &frame, ctx, ws, &mut reply));
        match result {
            Ok(f) => {
                if f.is_some() {
                    flow = f;
                }
                if !reply.is_empty() {
                    push_frame(out, ctx.pool, &reply, ws);
                }
                *ctx.scratch = reply;
                if matches!(flow, Some(Flow::Close { .. })) {
                    return (input.len(), flow);
                }
            }
            Err(mut e) => {
                // A RECEIPT the session wrote before the server refused the frame is dropped;
                // the ERROR carries its id instead.
                *ctx.scratch = reply;
                if e.receipt.is_none() {
                    e.receipt = frame.header("receipt").map(|r| r.into_owned());
                }
                protocol_error(out, ctx, st.session.version, &e, ws);
                return (input.len(), Some(Flow::Close { error: true }));
            }
        }
    }
}

/// A buffered frame of an open transaction.
#[derive(Debug)]
enum TxOp {
    Publish(Published),
    Ack { id: String, nack: bool },
}

/// Carry out what the session decided.
fn apply_action(
    st: &mut StompState,
    action: Action<'_>,
    frame: &stomp::FrameRef<'_>,
    ctx: &mut Ctx<'_>,
    ws: bool,
    reply: &mut Vec<u8>,
) -> Result<Option<Flow>, StompError> {
    match action {
        Action::None | Action::Begin => {}
        Action::Connected { send_ms, recv_ms } => {
            return Ok(Some(Flow::Connected { send_ms, recv_ms }));
        }
        Action::Subscribe(i) => {
            if let Some(sub) = st.session.subscriptions().get(i) {
                let dest = sub.destination.to_string();
                let max = ctx.cfg.session.max_pattern_words;
                let words = crate::router::wildcard::pattern_len(&dest);
                let refused = if kind(&dest) == DestKind::Pattern && words > max {
                    Err(StompError::new(format!(
                        "wildcard subscription has {words} words, more than the {max} allowed"
                    )))
                } else {
                    acl_check(st, ctx, crate::auth::Perm::Read, &dest)
                };
                if let Err(e) = refused {
                    // The subscription must not stay in the session.
                    st.session.remove_subscription(i);
                    return Err(e);
                }
            }
            let version = st.session.version;
            let info = session_info(&st.session);
            if let Some(sub) = st.session.subscription_mut(i) {
                let s = Subscriber::new(ctx.token, &sub.id, sub.ack, version, ws);
                // The config outlives the context: no Arc clone (a shared atomic) per frame.
                let cfg: &Config = ctx.cfg;
                if let Some(app) = cfg.app.as_deref() {
                    if let Some(path) = app.strip(&sub.destination) {
                        app_subscribe(app, path, sub, frame, info, ctx, reply)?;
                        return Ok(None);
                    }
                    if app.others_user_dest(&sub.destination) {
                        // Anyone may send to /user/<name>/..., only <name> may read it.
                        let d = sub.destination.to_string();
                        st.session.remove_subscription(i);
                        return Err(StompError::new(format!(
                            "cannot subscribe to another user's destination '{d}': \
                             subscribe to {}/queue/... for your own",
                            app.user_prefix.trim_end_matches('/')
                        )));
                    }
                    if let Some(rest) = app.own_user_dest(&sub.destination) {
                        let route = crate::app::user_route(&app.user_prefix, info.user(), rest);
                        ctx.router.subscribe(&route, s);
                        sub.route = Some(route.into());
                        return Ok(None);
                    }
                }
                if kind(&sub.destination) == DestKind::Queue {
                    let key = ctx.router.add_qsub(&sub.destination, s);
                    sub.handle = Some(pack_key(key));
                    ctx.qops.push(QueueOp::AddConsumer {
                        queue: Arc::from(&*sub.destination),
                        key,
                        ack: sub.ack,
                        prefetch: sub.prefetch,
                    });
                } else {
                    ctx.router.subscribe(&sub.destination, s);
                }
            }
        }
        // The connection stays: what it queued for an auto-mode consumer will be written
        // before anything that follows, so it counts as done.
        Action::Unsubscribe(sub) => drop_subscription(&sub, true, ctx),
        Action::Publish {
            destination,
            transaction,
        } => {
            acl_check(st, ctx, crate::auth::Perm::Write, &destination)?;
            let mut shown = None;
            let cfg: &Config = ctx.cfg;
            if let Some(app) = cfg.app.as_deref() {
                if let Some(path) = app.strip(&destination) {
                    if transaction.is_some() {
                        return Err(StompError::new(
                            "application destinations cannot be used in a transaction",
                        ));
                    }
                    let info = session_info(&st.session);
                    return app_send(app, path, &destination, frame, info, ctx, reply);
                }
                shown = app.user_shown(&destination);
            }
            let id = if kind(&destination) == DestKind::Queue {
                None
            } else {
                *ctx.seq += 1;
                Some(MsgId::new(ctx.reactor, *ctx.seq))
            };
            let shown = shown.as_deref().unwrap_or(&destination);
            let msg = encode_shared_as(frame, &destination, shown, id, ctx.enc);
            ctx.counters.messages_in += 1;
            match transaction {
                Some(tx) => tx_buffer(st, &tx).push(TxOp::Publish(msg)),
                None if kind(&msg.destination) == DestKind::Queue => {
                    // The queue's home answers: RECEIPT once accepted, ERROR if refused.
                    let receipt = frame.header("receipt").map(|r| r.into());
                    if receipt.is_some() {
                        reply.clear();
                    }
                    publish_with_receipt(msg, receipt, ctx);
                }
                None => publish(msg, ctx),
            }
        }
        Action::Ack {
            id,
            nack,
            transaction,
        } => match transaction {
            Some(tx) => tx_buffer(st, &tx).push(TxOp::Ack {
                id: id.into_owned(),
                nack,
            }),
            None => ack(&id, nack, ctx)?,
        },
        Action::Commit(name) => {
            let ops = take_tx(st, &name);
            // All or nothing: every ACK/NACK is checked before anything is applied (the
            // SENDs passed their checks when they were buffered).
            let acks = ops.iter().filter_map(|op| match op {
                TxOp::Ack { id, .. } => Some(id.as_str()),
                TxOp::Publish(_) => None,
            });
            ctx.router
                .check_acks(ctx.token, acks)
                .map_err(|e| StompError::new(format!("transaction '{name}' not committed: {e}")))?;
            for op in ops {
                match op {
                    TxOp::Publish(msg) => publish(msg, ctx),
                    TxOp::Ack { id, nack } => ack(&id, nack, ctx)?,
                }
            }
        }
        Action::Abort(name) => {
            take_tx(st, &name);
        }
        Action::Disconnect => return Ok(Some(Flow::Close { error: false })),
        // Handled before the action is applied.
        Action::Authenticate { .. } => {}
    }
    Ok(None)
}

/// With an ACL configured: may this session read (SUBSCRIBE) or write (SEND) `destination`?
/// The session keeps the rules' `Arc` and re-reads them only when their generation moved.
fn acl_check(
    st: &mut StompState,
    ctx: &Ctx<'_>,
    perm: crate::auth::Perm,
    destination: &str,
) -> Result<(), StompError> {
    let Some(handle) = ctx.cfg.acl.as_deref() else {
        return Ok(());
    };
    let gen = handle.generation();
    if st.acl.as_ref().is_none_or(|(g, _)| *g != gen) {
        st.acl = Some((gen, handle.current()));
    }
    let allowed = st
        .acl
        .as_ref()
        .is_some_and(|(_, acl)| acl.allows(st.session.login.as_deref(), perm, destination));
    if allowed {
        return Ok(());
    }
    let verb = match perm {
        crate::auth::Perm::Read => "subscribe to",
        crate::auth::Perm::Write => "send to",
    };
    Err(StompError::new(format!(
        "access denied: {} may not {verb} '{destination}'",
        st.session.login.as_deref().unwrap_or("anonymous")
    )))
}

fn tx_buffer<'s>(st: &'s mut StompState, name: &str) -> &'s mut Vec<TxOp> {
    let i = match st.txs.iter().position(|(n, _)| n == name) {
        Some(i) => i,
        None => {
            st.txs.push((name.to_string(), Vec::new()));
            st.txs.len() - 1
        }
    };
    match st.txs.get_mut(i) {
        Some((_, ops)) => ops,
        None => unreachable!(),
    }
}

fn take_tx(st: &mut StompState, name: &str) -> Vec<TxOp> {
    match st.txs.iter().position(|(n, _)| n == name) {
        Some(i) => st.txs.swap_remove(i).1,
        None => Vec::new(),
    }
}

/// A topic message goes to the reactor's fan-out; a queue message to its queue's home.
fn publish(msg: Published, ctx: &mut Ctx<'_>) {
    publish_with_receipt(msg, None, ctx);
}

/// As [`publish`]; a queue message's RECEIPT (if `receipt`) is sent once its queue accepted it.
fn publish_with_receipt(msg: Published, receipt: Option<Box<str>>, ctx: &mut Ctx<'_>) {
    if kind(&msg.destination) == DestKind::Queue {
        let seq = ctx.router.next_seq();
        ctx.qops.push(QueueOp::Enqueue {
            queue: Arc::clone(&msg.destination),
            msg: QMsg {
                seq,
                payload: msg,
                redelivered: false,
            },
            origin: (ctx.reactor as u16, ctx.token),
            receipt,
        });
    } else {
        ctx.outbox.push(msg);
    }
}

fn ack(id: &str, nack: bool, ctx: &mut Ctx<'_>) -> Result<(), StompError> {
    match ctx.router.ack(ctx.token, id, nack) {
        Ok(Some(op)) => ctx.qops.push(op),
        Ok(None) => {}
        Err(e) => return Err(StompError::new(e)),
    }
    Ok(())
}

fn pack_key(k: ConsumerKey) -> u64 {
    ((k.reactor as u64) << 56) | ((k.gen as u64 & 0xFF_FFFF) << 32) | k.slot as u64
}

fn unpack_key(h: u64, gen_full: impl Fn(u32) -> Option<u32>) -> Option<ConsumerKey> {
    let slot = (h & 0xFFFF_FFFF) as u32;
    Some(ConsumerKey {
        reactor: (h >> 56) as u16,
        slot,
        gen: gen_full(slot)?,
    })
}

/// Stop routing one subscription: topics leave the table; a queue consumer is removed here and
/// at its queue's home, which requeues what it had in flight. With `written` (an UNSUBSCRIBE on
/// a connection that stays), auto-mode deliveries already queued on the connection are done:
/// they are written before anything that follows; a closing connection's go back.
pub fn drop_subscription(sub: &Subscription, written: bool, ctx: &mut Ctx<'_>) {
    if let Some(app) = ctx.cfg.app.as_deref() {
        if app.strip(&sub.destination).is_some() {
            return; // answered once by a subscribe handler; nothing routed
        }
    }
    if kind(sub.route()) != DestKind::Queue {
        ctx.router.unsubscribe(sub.route(), ctx.token, &sub.id);
        return;
    }
    let Some(h) = sub.handle else { return };
    let router = &mut *ctx.router;
    let Some(key) = unpack_key(h, |slot| router.qsub_gen(slot)) else {
        return;
    };
    if let Some(q) = ctx.router.remove_qsub(key) {
        if let Some(up_to) = q.last_queued().filter(|_| written) {
            ctx.qops.push(QueueOp::Written {
                queue: Arc::clone(&q.queue),
                key,
                up_to,
            });
        }
        ctx.qops.push(QueueOp::RemoveConsumer {
            queue: q.queue,
            key,
        });
    }
}

/// Queue a RECEIPT frame.
fn push_receipt(out: &mut OutQueue, pool: &mut BufPool, version: Version, id: &str, ws: bool) {
    let mut frame = Vec::new();
    stomp::write_frame(
        &mut frame,
        version,
        stomp::Command::Receipt,
        &[("receipt-id", id)],
        b"",
    );
    push_frame(out, pool, &frame, ws);
}

/// Queue one STOMP frame: raw on TCP, inside one WebSocket text message on WebSocket.
fn push_frame(out: &mut OutQueue, pool: &mut BufPool, bytes: &[u8], ws: bool) {
    let buf = out.own_buf(pool);
    let before = buf.len();
    if ws {
        let op = if std::str::from_utf8(bytes).is_ok() {
            Opcode::Text
        } else {
            Opcode::Binary
        };
        ws::write_frame(buf, true, op, bytes, None);
    } else {
        buf.extend_from_slice(bytes);
    }
    out.commit(before);
}

fn write_error(
    out: &mut OutQueue,
    ctx: &mut Ctx<'_>,
    version: Version,
    err: &StompError,
    ws: bool,
) {
    let mut tmp = Vec::new();
    err.write(&mut tmp, version);
    push_frame(out, ctx.pool, &tmp, ws);
}

/// The ERROR for a frame or operation of the client's that failed (the connection closes):
/// counted as `stompbox_errors_total{kind="stomp"}`.
fn protocol_error(
    out: &mut OutQueue,
    ctx: &mut Ctx<'_>,
    version: Version,
    err: &StompError,
    ws: bool,
) {
    ctx.counters.errors_stomp += 1;
    write_error(out, ctx, version, err, ws);
}

/// How far into a malformed frame its `receipt` header is looked for (the ERROR carries it).
const RECEIPT_SEARCH: usize = 64 * 1024;

fn write_close(out: &mut OutQueue, pool: &mut BufPool, code: u16, reason: &str) {
    let buf = out.own_buf(pool);
    let before = buf.len();
    ws::write_close(buf, code, reason, None);
    out.commit(before);
}

fn session_info(s: &Session) -> SessionInfo {
    SessionInfo {
        id: s.id.clone(),
        login: s.login.clone(),
    }
}

/// A frame's headers as owned pairs: first value of each name, unescaped, without the ones the
/// broker handles itself.
fn owned_headers(frame: &stomp::FrameRef<'_>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for h in frame.headers {
        let name = if frame.escaped {
            stomp::escape::unescape(h.name).unwrap_or(std::borrow::Cow::Borrowed(h.name))
        } else {
            std::borrow::Cow::Borrowed(h.name)
        };
        let name = String::from_utf8_lossy(&name).into_owned();
        if matches!(name.as_str(), "receipt" | "content-length" | "transaction")
            || out.iter().any(|(k, _)| *k == name)
        {
            continue;
        }
        if let Some(v) = frame.header(&name) {
            out.push((name, v.into_owned()));
        }
    }
    out
}

/// A SEND to an application destination: run its handler inline, or queue it for the pool
/// (whose RECEIPT then comes when the handler has returned).
fn app_send(
    app: &AppConfig,
    path: &str,
    destination: &str,
    frame: &stomp::FrameRef<'_>,
    session: SessionInfo,
    ctx: &mut Ctx<'_>,
    reply: &mut Vec<u8>,
) -> Result<Option<Flow>, StompError> {
    use crate::app::{Handler, Placement};
    let Some((route, vars)) = app.sends.find(path) else {
        return Err(StompError::new(format!(
            "no handler for destination '{destination}'"
        )));
    };
    let Handler::Send(h, placement) = &route.value else {
        return Err(StompError::new(format!(
            "no handler for destination '{destination}'"
        )));
    };
    ctx.counters.messages_in += 1;
    let headers = owned_headers(frame);
    match placement {
        Placement::Inline => {
            let req = crate::app::AppRequest {
                destination,
                vars: &vars,
                headers: &headers,
                body: frame.body,
                session: &session,
            };
            let out = super::apps::invoke_send(&**h, &req, &app.user_prefix)
                .map_err(|e| StompError::new(e.0))?;
            for m in &out {
                let msg = encode_outgoing(m, ctx.reactor, ctx.seq, ctx.enc);
                publish(msg, ctx);
            }
            Ok(None)
        }
        Placement::Pool => {
            let Some(pool) = ctx.workers else {
                return Err(StompError::new("no application worker pool"));
            };
            let job = super::apps::Job {
                kind: super::apps::JobKind::Send(std::sync::Arc::clone(h)),
                destination: destination.to_string(),
                vars,
                headers,
                body: frame.body.to_vec(),
                session,
                origin: (ctx.reactor, ctx.token),
                receipt: frame.header("receipt").map(|r| r.into_owned()),
            };
            submit(pool, job, ctx, reply)?;
            Ok(None)
        }
    }
}

/// A SUBSCRIBE to an application destination: its subscribe handler runs once on the pool and
/// its answer goes to this subscriber only; nothing is routed.
fn app_subscribe(
    app: &AppConfig,
    path: &str,
    sub: &Subscription,
    frame: &stomp::FrameRef<'_>,
    session: SessionInfo,
    ctx: &mut Ctx<'_>,
    reply: &mut Vec<u8>,
) -> Result<(), StompError> {
    use crate::app::Handler;
    let Some((route, vars)) = app.subscribes.find(path) else {
        return Err(StompError::new(format!(
            "no subscribe handler for destination '{}'",
            sub.destination
        )));
    };
    let Handler::Subscribe(h) = &route.value else {
        return Err(StompError::new("no subscribe handler"));
    };
    let Some(pool) = ctx.workers else {
        return Err(StompError::new("no application worker pool"));
    };
    let job = super::apps::Job {
        kind: super::apps::JobKind::Subscribe(std::sync::Arc::clone(h), sub.id.to_string()),
        destination: sub.destination.to_string(),
        vars,
        headers: owned_headers(frame),
        body: Vec::new(),
        session,
        origin: (ctx.reactor, ctx.token),
        receipt: frame.header("receipt").map(|r| r.into_owned()),
    };
    submit(pool, job, ctx, reply)
}

/// Queue a job on the application pool; its RECEIPT is written when the handler has returned
/// (so the one the session wrote is dropped). A full pool is an ERROR "busy" (counted).
fn submit(
    pool: &super::apps::Pool,
    job: super::apps::Job,
    ctx: &mut Ctx<'_>,
    reply: &mut Vec<u8>,
) -> Result<(), StompError> {
    if pool.submit(job).is_err() {
        ctx.counters.app_busy += 1;
        return Err(StompError::new("busy: application handlers are saturated"));
    }
    reply.clear();
    Ok(())
}

/// Encode a message from outside a frame (handlers, the embedding API).
pub fn encode_outgoing(
    m: &Outgoing,
    reactor: usize,
    seq: &mut u64,
    enc: &mut Vec<u8>,
) -> Published {
    let headers: Vec<Header<'_>> = m
        .headers
        .iter()
        .map(|(k, v)| Header {
            name: k.as_bytes(),
            value: v.as_bytes(),
        })
        .collect();
    let frame = stomp::FrameRef {
        command: stomp::Command::Send,
        headers: &headers,
        body: &m.body,
        escaped: false,
    };
    let id = if kind(&m.destination) == DestKind::Queue {
        None
    } else {
        *seq += 1;
        Some(MsgId::new(reactor, *seq))
    };
    encode_shared_as(&frame, &m.destination, &m.shown, id, enc)
}

impl Conn {
    /// A queue's home accepted (RECEIPT, if asked for) or refused (ERROR, then close) a SEND.
    pub fn queue_verdict(
        &mut self,
        ctx: &mut Ctx<'_>,
        receipt: Option<Box<str>>,
        refused: Option<&'static str>,
    ) {
        let Some((version, ws)) = self.stomp().map(|s| (s.session.version, self.is_ws())) else {
            return;
        };
        let Some(why) = refused else {
            if let Some(r) = receipt {
                push_receipt(&mut self.out, ctx.pool, version, &r, ws);
            }
            return;
        };
        let mut err = StompError::new(why);
        err.receipt = receipt.map(String::from);
        protocol_error(&mut self.out, ctx, version, &err, ws);
        self.apply_flow(ctx, Flow::Close { error: true });
    }

    /// A pool handler finished: RECEIPT, ERROR (then close), or a subscribe handler's answer.
    pub fn app_done(&mut self, ctx: &mut Ctx<'_>, done: super::apps::Done) {
        let Some((version, ws)) = self.stomp().map(|s| (s.session.version, self.is_ws())) else {
            return;
        };
        if let Some(e) = done.error {
            let mut err = StompError::new(e);
            err.receipt = done.receipt;
            protocol_error(&mut self.out, ctx, version, &err, ws);
            self.apply_flow(ctx, Flow::Close { error: true });
            return;
        }
        if let Some((sub_id, destination, headers, body)) = done.message {
            *ctx.seq += 1;
            let id = MsgId::new(ctx.reactor, *ctx.seq);
            let id = String::from_utf8_lossy(id.as_bytes()).into_owned();
            let mut h: Vec<(&str, &str)> = vec![
                ("subscription", &sub_id),
                ("destination", &destination),
                ("message-id", &id),
            ];
            for (k, v) in &headers {
                if !matches!(k.as_str(), "subscription" | "destination" | "message-id") {
                    h.push((k, v));
                }
            }
            let mut frame = Vec::new();
            stomp::write_frame(&mut frame, version, stomp::Command::Message, &h, &body);
            push_frame(&mut self.out, ctx.pool, &frame, ws);
            ctx.counters.messages_out += 1;
        }
        if let Some(r) = done.receipt {
            let mut frame = Vec::new();
            stomp::write_frame(
                &mut frame,
                version,
                stomp::Command::Receipt,
                &[("receipt-id", &r)],
                b"",
            );
            push_frame(&mut self.out, ctx.pool, &frame, ws);
        }
    }
}
