//! One connection: its socket, read buffer, outbound queue and protocol phase. The reactor calls
//! [`Conn::on_readable`], [`Conn::flush`] and [`Conn::on_timer`]; everything protocol-specific is
//! delegated to the sans-IO `ws` codec.

use std::io::{self, Read};
use std::net::Shutdown;
use std::time::Instant;

use mio::net::TcpStream;

use super::buf::BufPool;
use super::outq::OutQueue;
use crate::config::Config;
use crate::ws::{self, Decoder, DecoderConfig, Event, Opcode, Refusal, Status};

/// What a WebSocket connection is for, chosen by the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Echo,
}

#[derive(Debug)]
enum Phase {
    /// Reading the HTTP upgrade request.
    Handshake,
    /// WebSocket frames flow. `close_sent`: our Close is queued, we wait for the peer's.
    Open {
        decoder: Box<Decoder>,
        endpoint: Endpoint,
        close_sent: bool,
    },
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
}

#[derive(Debug)]
pub struct Conn {
    pub sock: TcpStream,
    rbuf: Vec<u8>,
    rstart: usize,
    phase: Phase,
    pub out: OutQueue,
    /// When the current phase times out.
    pub deadline: Option<Instant>,
    /// The wheel tick of this connection's live timer entry.
    pub timer_at: Option<u64>,
    /// Writable interest is registered (a write would block).
    pub write_blocked: bool,
    /// Reads are paused because the outbound queue is over its bound.
    pub paused: bool,
    /// Peer sent EOF.
    read_closed: bool,
    /// We half-closed (shutdown write) after the last byte.
    write_closed: bool,
}

impl Conn {
    pub fn new(sock: TcpStream, cfg: &Config, now: Instant) -> Self {
        Conn {
            sock,
            rbuf: Vec::new(),
            rstart: 0,
            phase: Phase::Handshake,
            out: OutQueue::default(),
            deadline: Some(now + cfg.handshake_timeout),
            timer_at: None,
            write_blocked: false,
            paused: false,
            read_closed: false,
            write_closed: false,
        }
    }

    /// Read until WouldBlock, EOF or the budget, processing as bytes arrive.
    pub fn on_readable(&mut self, ctx: &mut Ctx<'_>) -> Next {
        let mut budget = ctx.cfg.read_budget;
        loop {
            if self.paused || self.read_closed {
                return Next::Idle;
            }
            if self.rbuf.capacity() == 0 {
                self.rbuf = ctx.pool.get();
            }
            if self.rbuf.len() == self.rbuf.capacity() {
                // Full and nothing consumable: only possible while reading a handshake over the
                // buffer size, which the handshake limit refuses first. Refuse anyway.
                self.refuse(ctx, Refusal::too_large());
                return self.after_io(ctx);
            }
            let filled = self.rbuf.len();
            let cap = self.rbuf.capacity();
            self.rbuf.resize(cap, 0);
            let res = self
                .sock
                .read(self.rbuf.get_mut(filled..).unwrap_or_default());
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
                self.read_closed = true;
                self.on_eof();
                self.recycle(ctx);
                return self.after_io(ctx);
            }
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

    fn on_eof(&mut self) {
        // A peer that goes away without a Close: nothing left to send it except what is queued.
        if !matches!(self.phase, Phase::Linger) {
            self.phase = Phase::Linger;
        }
    }

    /// Decide what happens after reads or writes: close when everything is done.
    fn after_io(&mut self, ctx: &mut Ctx<'_>) -> Next {
        if self.paused && self.out.len() <= ctx.cfg.max_outbound / 2 {
            self.paused = false;
            return Next::ReadAgain;
        }
        if matches!(self.phase, Phase::Linger) && self.out.is_empty() {
            if !self.write_closed {
                self.write_closed = true;
                let _ = self.sock.shutdown(Shutdown::Write);
                if !self.read_closed {
                    self.deadline = Some(ctx.now + ctx.cfg.close_timeout);
                }
            }
            if self.read_closed {
                return Next::Close;
            }
        }
        Next::Idle
    }

    /// Flush queued output. Called once per loop turn for each connection with output.
    pub fn flush(&mut self, ctx: &mut Ctx<'_>) -> io::Result<Next> {
        if !self.out.is_empty() && !self.write_blocked {
            let done = self.out.write_to(&mut self.sock, ctx.pool)?;
            self.write_blocked = !done;
        }
        Ok(self.after_io(ctx))
    }

    /// The deadline passed: handshake, close or linger timeout all end the connection.
    pub fn on_timer(&mut self, now: Instant) -> Next {
        match self.deadline {
            Some(d) if d <= now => Next::Close,
            _ => Next::Idle,
        }
    }

    fn process(&mut self, ctx: &mut Ctx<'_>) {
        loop {
            let input = self.rbuf.get_mut(self.rstart..).unwrap_or_default();
            if input.is_empty() {
                return;
            }
            match &mut self.phase {
                Phase::Handshake => match ws::parse_request(input, &ctx.cfg.handshake) {
                    Ok(Status::Partial) => return,
                    Ok(Status::Complete(up)) => {
                        let endpoint = match up.path {
                            "/echo" if ctx.cfg.echo => Endpoint::Echo,
                            _ => {
                                let used = up.consumed;
                                self.rstart += used;
                                self.refuse(ctx, Refusal::not_found());
                                return;
                            }
                        };
                        let protocol = match endpoint {
                            Endpoint::Echo => None,
                        };
                        let buf = self.out.own_buf(ctx.pool);
                        let before = buf.len();
                        ws::write_accept(buf, up.key, protocol);
                        self.out.commit(before);
                        self.rstart += up.consumed;
                        self.deadline = None;
                        self.phase = Phase::Open {
                            decoder: Box::new(Decoder::new(DecoderConfig::server(
                                ctx.cfg.max_frame_size,
                                ctx.cfg.max_message_size,
                            ))),
                            endpoint,
                            close_sent: false,
                        };
                    }
                    Err(refusal) => {
                        self.refuse(ctx, refusal);
                        return;
                    }
                },
                Phase::Open {
                    decoder,
                    endpoint,
                    close_sent,
                } => {
                    let (used, ev) = match decoder.decode(input) {
                        Ok(r) => r,
                        Err(e) => {
                            if !*close_sent {
                                write_close(&mut self.out, ctx.pool, e.close_code(), e.reason());
                            }
                            self.phase = Phase::Linger;
                            self.rstart = self.rbuf.len();
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
                    match ev {
                        Event::Message { text, payload } => {
                            if !*close_sent {
                                match endpoint {
                                    Endpoint::Echo => {
                                        let op = if text { Opcode::Text } else { Opcode::Binary };
                                        let buf = self.out.own_buf(ctx.pool);
                                        let before = buf.len();
                                        ws::write_frame(buf, true, op, payload, None);
                                        self.out.commit(before);
                                        if self.out.len() > ctx.cfg.max_outbound {
                                            self.paused = true;
                                        }
                                    }
                                }
                            }
                        }
                        Event::Ping(p) => {
                            if !*close_sent {
                                let buf = self.out.own_buf(ctx.pool);
                                let before = buf.len();
                                ws::write_frame(buf, true, Opcode::Pong, p, None);
                                self.out.commit(before);
                            }
                        }
                        Event::Pong(_) => {}
                        Event::Close(c) => {
                            if !*close_sent {
                                // §5.5.1: echo the status code we received.
                                let buf = self.out.own_buf(ctx.pool);
                                let before = buf.len();
                                match c {
                                    Some((code, _)) => ws::write_close(buf, code, "", None),
                                    None => ws::write_frame(buf, true, Opcode::Close, &[], None),
                                }
                                self.out.commit(before);
                            }
                            self.phase = Phase::Linger;
                            self.rstart = self.rbuf.len();
                            return;
                        }
                    }
                    if self.paused {
                        return;
                    }
                }
                Phase::Linger => {
                    self.rstart = self.rbuf.len();
                    return;
                }
            }
        }
    }

    fn refuse(&mut self, ctx: &mut Ctx<'_>, refusal: Refusal) {
        let buf = self.out.own_buf(ctx.pool);
        let before = buf.len();
        refusal.write(buf);
        self.out.commit(before);
        self.phase = Phase::Linger;
        self.rstart = self.rbuf.len();
        self.deadline = Some(ctx.now + ctx.cfg.close_timeout);
    }

    /// Begin a server-initiated close (e.g. shutdown): send Close `code`, then wait for the
    /// peer's Close up to the close timeout.
    pub fn start_close(&mut self, ctx: &mut Ctx<'_>, code: u16, reason: &str) {
        match &mut self.phase {
            Phase::Open { close_sent, .. } if !*close_sent => {
                *close_sent = true;
                write_close(&mut self.out, ctx.pool, code, reason);
                self.deadline = Some(ctx.now + ctx.cfg.close_timeout);
            }
            Phase::Open { .. } | Phase::Linger => {}
            Phase::Handshake => {
                self.refuse(ctx, Refusal::unavailable("server shutting down"));
            }
        }
    }
}

fn write_close(out: &mut OutQueue, pool: &mut BufPool, code: u16, reason: &str) {
    let buf = out.own_buf(pool);
    let before = buf.len();
    ws::write_close(buf, code, reason, None);
    out.commit(before);
}
