//! One client connection: TCP connect, WebSocket upgrade, STOMP CONNECT, an optional
//! SUBSCRIBE (confirmed by a receipt), then publishing and/or receiving, then a clean close
//! (DISCONNECT with a receipt, WebSocket close 1000). Built on stompbox's own client-side codecs.
//!
//! Reads go into the reactor thread's one large buffer; only the bytes of an unfinished frame
//! are kept per connection (`carry`), so ten thousand idle sessions cost little memory.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};

use mio::net::TcpStream;
use socket2::{Domain, Protocol, Socket, Type};
use stompbox::stomp::{self, Command, FrameRef, Header, Parsed, Version};
use stompbox::ws::deflate::{self, Deflater, Inflater};
use stompbox::ws::{self, client, Decoder, DecoderConfig, Event, Opcode, Status};

use crate::body;
use crate::engine::Ctx;
use crate::rate::Pacer;

/// How a subscription acknowledges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    Auto,
    Client,
    ClientIndividual,
}

impl Ack {
    pub fn as_str(self) -> &'static str {
        match self {
            Ack::Auto => "auto",
            Ack::Client => "client",
            Ack::ClientIndividual => "client-individual",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SubSpec {
    /// Index into the plan's destinations.
    pub dest: usize,
    pub ack: Ack,
    /// `prefetch-count` header (RabbitMQ's credit for client-ack subscriptions); 0: none.
    pub prefetch: u32,
}

#[derive(Debug, Clone)]
pub struct PubSpec {
    /// Written into every body, so receivers can tell publishers apart.
    pub id: u32,
    /// Destinations used in turn.
    pub dests: Vec<usize>,
    /// Messages per second for this publisher; 0: as fast as the window allows.
    pub rate: f64,
    /// Most messages this publisher sends.
    pub cap: Option<u64>,
}

/// What one connection does once it is up.
#[derive(Debug, Clone)]
pub struct ConnSpec {
    pub sub: Option<SubSpec>,
    pub publ: Option<PubSpec>,
    pub src: Option<IpAddr>,
    /// Index into the plan's targets (the broker node this session connects to).
    pub target: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    TcpConnecting,
    Upgrading,
    StompConnecting,
    Subscribing,
    Ready,
    Disconnecting,
    WsClosing,
    Done,
}

impl State {
    pub fn in_setup(self) -> bool {
        self < State::Ready
    }
}

/// STOMP frames from the broker.
const LIMITS: stomp::Limits = stomp::Limits {
    max_headers: 32,
    max_header_line: 4096,
    max_body: 16 * 1024 * 1024,
};

/// Largest HTTP response head accepted.
const MAX_RESPONSE: usize = 16 * 1024;

/// Outbound bytes above which a publisher waits for the socket to drain.
pub const MAX_BACKLOG: usize = 64 * 1024;

/// Reads from one connection per readiness event before the others get a turn.
const READS_PER_TURN: usize = 8;

pub struct Conn {
    sock: TcpStream,
    pub state: State,
    pub spec: ConnSpec,
    key: String,
    dec: Decoder,
    /// Bytes of an unfinished frame, kept between reads.
    carry: Vec<u8>,
    p: Proto,
    pub started_ns: u64,
    pub deadline_ns: u64,
    /// When we last sent anything (for keep-alive pings).
    pub last_tx_ns: u64,
}

/// The parts of a connection that frame handling changes (split from the decoder, which
/// lends out the payloads).
struct Proto {
    state: State,
    version: Version,
    wbuf: Vec<u8>,
    wpos: usize,
    spec_sub: Option<SubSpec>,
    /// The plan target this connection went to (for per-node figures).
    target: usize,
    /// First deliveries seen (for `nack_every`).
    firsts: u64,
    /// Something was written since the owner last looked (see [`Conn::take_wrote`]).
    wrote: bool,
    became_ready: bool,
    closed_clean: bool,
    /// permessage-deflate, when the broker agreed to it.
    deflate: Option<Box<Deflate>>,
}

/// A session's permessage-deflate: frames sent are compressed each on its own; messages
/// received are inflated (keeping the window unless the server said it keeps none).
struct Deflate {
    deflater: Deflater,
    inflater: Inflater,
    buf: Vec<u8>,
}

pub struct Publisher {
    pub pacer: Pacer,
    pub seq: u64,
    rr: usize,
}

impl Conn {
    /// Start a non-blocking connect (from `spec.src` when set).
    pub fn open(addr: SocketAddr, spec: ConnSpec, now_ns: u64) -> io::Result<Conn> {
        let domain = if addr.is_ipv4() {
            Domain::IPV4
        } else {
            Domain::IPV6
        };
        let s = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
        s.set_nonblocking(true)?;
        s.set_nodelay(true)?;
        if let Some(ip) = spec.src {
            s.bind(&SocketAddr::new(ip, 0).into())?;
        }
        match s.connect(&addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(nix::libc::EINPROGRESS) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        let sock = TcpStream::from_std(std::net::TcpStream::from(s));
        Ok(Conn {
            sock,
            state: State::TcpConnecting,
            key: client::encode_key(client::random_nonce()),
            dec: Decoder::new(DecoderConfig::client(1 << 24, 1 << 24)),
            carry: Vec::new(),
            p: Proto {
                state: State::TcpConnecting,
                version: Version::V1_2,
                wbuf: Vec::new(),
                wpos: 0,
                spec_sub: spec.sub.clone(),
                target: spec.target,
                firsts: 0,
                wrote: false,
                became_ready: false,
                closed_clean: false,
                deflate: None,
            },
            spec,
            started_ns: now_ns,
            deadline_ns: 0,
            last_tx_ns: now_ns,
        })
    }

    pub fn source(&mut self) -> &mut TcpStream {
        &mut self.sock
    }

    fn sync(&mut self) {
        self.state = self.p.state;
    }

    /// The connection became ready since the last call (reported once).
    pub fn take_ready(&mut self) -> bool {
        std::mem::take(&mut self.p.became_ready)
    }

    /// Whether anything was written since the last call.
    pub fn take_wrote(&mut self) -> bool {
        std::mem::take(&mut self.p.wrote)
    }

    pub fn closed_clean(&self) -> bool {
        self.p.closed_clean
    }

    pub fn version(&self) -> Version {
        self.p.version
    }

    pub fn backlog(&self) -> usize {
        self.p.wbuf.len() - self.p.wpos
    }

    pub fn on_writable(&mut self, ctx: &mut Ctx<'_>) -> Result<(), String> {
        if self.state == State::TcpConnecting {
            if let Ok(Some(e)) | Err(e) = self.sock.take_error() {
                return Err(format!("tcp connect: {}", io_cause(&e)));
            }
            match self.sock.peer_addr() {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
                Err(e) => return Err(format!("tcp connect: {}", io_cause(&e))),
            }
            let Some(t) = ctx.plan.targets.get(self.spec.target) else {
                return Err("no such target".into());
            };
            let req = client::Request {
                host: &t.authority,
                path: &t.path,
                protocols: &ctx.plan.stomp.protocols,
                extensions: ctx
                    .plan
                    .stomp
                    .deflate
                    .then_some("permessage-deflate; client_max_window_bits"),
            };
            client::write_request(&mut self.p.wbuf, &req, &self.key);
            self.p.state = State::Upgrading;
            self.sync();
        }
        self.flush()
    }

    /// A WebSocket ping, so that a subscriber that only receives is not closed as idle (e.g.
    /// RabbitMQ Web-STOMP's 60 s idle timeout counts only what the client sends).
    pub fn keepalive(&mut self, ctx: &mut Ctx<'_>) -> Result<(), String> {
        if self.state != State::Ready || self.backlog() > 0 {
            return Ok(());
        }
        let mask = ctx.mask();
        ws::write_frame(&mut self.p.wbuf, true, Opcode::Ping, b"lt", Some(mask));
        self.last_tx_ns = ctx.now_ns;
        self.flush()
    }

    pub fn flush(&mut self) -> Result<(), String> {
        let p = &mut self.p;
        while p.wpos < p.wbuf.len() {
            match self.sock.write(p.wbuf.get(p.wpos..).unwrap_or_default()) {
                Ok(0) => return Err("write: connection closed".into()),
                Ok(n) => {
                    p.wpos += n;
                    p.wrote = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("write: {}", io_cause(&e))),
            }
        }
        if p.wpos == p.wbuf.len() {
            p.wbuf.clear();
            p.wpos = 0;
        } else if p.wpos >= MAX_BACKLOG {
            p.wbuf.drain(..p.wpos);
            p.wpos = 0;
        }
        Ok(())
    }

    /// Read and handle what has arrived. `Ok(true)`: stopped at the per-turn budget with more
    /// possibly waiting.
    pub fn on_readable(&mut self, tb: &mut [u8], ctx: &mut Ctx<'_>) -> Result<bool, String> {
        if self.state == State::TcpConnecting || self.state == State::Done {
            return Ok(false);
        }
        for _ in 0..READS_PER_TURN {
            let c = self.carry.len();
            let Some(head) = tb.get_mut(..c) else {
                return Err("frame larger than the read buffer".into());
            };
            head.copy_from_slice(&self.carry);
            let n = match self.sock.read(tb.get_mut(c..).unwrap_or_default()) {
                Ok(0) => return self.eof(),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("read: {}", io_cause(&e))),
            };
            self.carry.clear();
            ctx.touch();
            let end = c + n;
            let used = self.process(tb, end, ctx);
            self.sync();
            let used = used?;
            if let Some(rest) = tb.get(used..end) {
                self.carry.extend_from_slice(rest);
            }
            if self.carry.capacity() > 64 * 1024 && self.carry.len() < 1024 {
                self.carry.shrink_to(1024);
            }
            self.flush()?;
            if self.state == State::Done {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn eof(&mut self) -> Result<bool, String> {
        match self.state {
            State::Disconnecting | State::WsClosing => {
                self.p.closed_clean = true;
                self.p.state = State::Done;
                self.sync();
                Ok(false)
            }
            State::Upgrading => Err("closed during WebSocket handshake".into()),
            s if s.in_setup() => Err("closed by server during STOMP CONNECT/SUBSCRIBE".into()),
            _ => Err("closed by server (TCP)".into()),
        }
    }

    /// Handle `tb[..end]`; returns the bytes used.
    fn process(&mut self, tb: &mut [u8], end: usize, ctx: &mut Ctx<'_>) -> Result<usize, String> {
        let mut pos = 0;
        if self.p.state == State::Upgrading {
            let head = tb.get(..end).unwrap_or_default();
            let offered = &ctx.plan.stomp.protocols;
            let deflate = ctx.plan.stomp.deflate;
            match client::parse_response_with(head, &self.key, offered, deflate, MAX_RESPONSE) {
                Ok(Status::Partial) => return Ok(0),
                Ok(Status::Complete(a)) => {
                    pos = a.consumed;
                    if let Some(agreed) = a.deflate {
                        self.dec = Decoder::new(DecoderConfig {
                            deflate: true,
                            ..DecoderConfig::client(1 << 24, 1 << 24)
                        });
                        self.p.deflate = Some(Box::new(Deflate {
                            deflater: Deflater::new(1, agreed.client_max_window_bits.max(9)),
                            inflater: Inflater::new(!agreed.server_no_context_takeover),
                            buf: Vec::new(),
                        }));
                    }
                    ctx.upgraded(self.started_ns);
                    self.p.state = State::StompConnecting;
                    self.p.send_connect(ctx);
                }
                Err(e) => return Err(format!("handshake: {e}")),
            }
        }
        let Conn { dec, p, .. } = self;
        while pos < end {
            let input = tb.get_mut(pos..end).unwrap_or_default();
            let (used, ev) = dec.decode(input).map_err(|e| format!("websocket: {e:?}"))?;
            match ev {
                Some(Event::Message { payload, .. }) => p.on_payload(payload, ctx)?,
                Some(Event::Ping(data)) => {
                    let mask = ctx.mask();
                    ws::write_frame(&mut p.wbuf, true, Opcode::Pong, data, Some(mask));
                }
                Some(Event::Pong(_)) => {}
                // The decoder reports these only with permessage-deflate, never offered here.
                Some(Event::Compressed { payload, .. }) => {
                    let Some(d) = p.deflate.as_mut() else {
                        return Err("websocket: a compressed message".into());
                    };
                    let mut out = std::mem::take(&mut d.buf);
                    out.clear();
                    d.inflater
                        .inflate(payload, &mut out, 1 << 24)
                        .map_err(|e| format!("websocket: {e}"))?;
                    let r = p.on_payload(&out, ctx);
                    if let Some(d) = p.deflate.as_mut() {
                        d.buf = out;
                    }
                    r?
                }
                Some(Event::Close(c)) => {
                    let clean = matches!(p.state, State::Disconnecting | State::WsClosing);
                    if p.state != State::WsClosing {
                        let mask = ctx.mask();
                        ws::write_close(&mut p.wbuf, 1000, "", Some(mask));
                    }
                    p.state = State::Done;
                    if clean {
                        p.closed_clean = true;
                    } else {
                        let (code, reason) = c.unwrap_or((1005, ""));
                        return Err(format!("closed by server: websocket {code} {reason}"));
                    }
                }
                None if used == 0 => break,
                None => {}
            }
            pos += used;
            if p.state == State::Done {
                break;
            }
        }
        Ok(pos)
    }

    /// Begin a clean close: DISCONNECT with a receipt (then WebSocket close on the receipt).
    pub fn begin_close(&mut self, ctx: &mut Ctx<'_>) -> Result<(), String> {
        if self.state.in_setup() {
            self.p.state = State::Done;
            self.sync();
            return Ok(());
        }
        if self.state == State::Ready {
            let mut f = std::mem::take(&mut ctx.scratch);
            f.clear();
            stomp::write_frame(
                &mut f,
                self.p.version,
                Command::Disconnect,
                &[("receipt", "bye")],
                b"",
            );
            self.p.send_stomp(&f, ctx);
            ctx.scratch = f;
            self.p.state = State::Disconnecting;
            self.sync();
        }
        self.flush()
    }

    /// Send what `publ` owes now; returns how many messages were queued.
    pub fn publish(&mut self, publ: &mut Publisher, allowed: u64, ctx: &mut Ctx<'_>) -> u64 {
        let Some(ps) = &self.spec.publ else {
            return 0;
        };
        if self.state != State::Ready || self.backlog() > MAX_BACKLOG {
            return 0;
        }
        let mut n = publ.pacer.due(ctx.now_ns).min(allowed);
        if let Some(cap) = ps.cap {
            n = n.min(cap.saturating_sub(publ.seq));
        }
        let mut frame = std::mem::take(&mut ctx.scratch);
        for _ in 0..n {
            let d = ps
                .dests
                .get(publ.rr % ps.dests.len().max(1))
                .copied()
                .unwrap_or(0);
            publ.rr += 1;
            frame.clear();
            frame.extend_from_slice(b"SEND\ndestination:");
            frame.extend_from_slice(ctx.plan.dests.get(d).map_or("", |s| s).as_bytes());
            if ctx.plan.persistent {
                frame.extend_from_slice(b"\npersistent:true");
            }
            frame.extend_from_slice(b"\ncontent-length:");
            stomp::push_usize(&mut frame, ctx.plan.body_size);
            frame.extend_from_slice(b"\n\n");
            body::write(&mut frame, ps.id, publ.seq, ctx.now_ns, ctx.plan.body_size);
            frame.push(0);
            self.p.send_stomp(&frame, ctx);
            publ.seq += 1;
            ctx.sent_one(d);
        }
        ctx.scratch = frame;
        publ.pacer.sent(n);
        n
    }
}

impl Publisher {
    pub fn new(spec: &PubSpec, start_ns: u64, burst: u64) -> Self {
        Publisher {
            pacer: Pacer::new(start_ns, spec.rate, burst),
            seq: 0,
            rr: spec.id as usize,
        }
    }
}

impl Proto {
    fn send_stomp(&mut self, frame: &[u8], ctx: &mut Ctx<'_>) {
        let mask = ctx.mask();
        if let Some(d) = self.deflate.as_mut() {
            d.buf.clear();
            // As a browser with context takeover off would: each message on its own.
            if deflate::compress_message(&mut d.deflater, b"", frame, &mut d.buf) {
                let at = self.wbuf.len();
                ws::write_frame(&mut self.wbuf, true, Opcode::Text, &d.buf, Some(mask));
                if let Some(b0) = self.wbuf.get_mut(at) {
                    *b0 |= 0x40; // RSV1: compressed
                }
                return;
            }
        }
        ws::write_frame(&mut self.wbuf, true, Opcode::Text, frame, Some(mask));
    }

    fn send_connect(&mut self, ctx: &mut Ctx<'_>) {
        let s = &ctx.plan.stomp;
        let mut h: Vec<(&str, &str)> = vec![
            ("accept-version", s.accept_version),
            ("host", &s.host),
            ("heart-beat", "0,0"),
        ];
        if let Some(l) = &s.login {
            h.push(("login", l));
        }
        if let Some(p) = &s.passcode {
            h.push(("passcode", p));
        }
        let mut f = Vec::new();
        stomp::write_frame(&mut f, Version::V1_2, Command::Connect, &h, b"");
        self.send_stomp(&f, ctx);
    }

    fn send_subscribe(&mut self, sub: &SubSpec, ctx: &mut Ctx<'_>) {
        let dest = ctx.plan.dests.get(sub.dest).map_or("", |s| s);
        let prefetch = sub.prefetch.to_string();
        let mut h: Vec<(&str, &str)> = vec![
            ("id", "0"),
            ("destination", dest),
            ("ack", sub.ack.as_str()),
            ("receipt", "sub"),
        ];
        if sub.prefetch > 0 {
            h.push(("prefetch-count", &prefetch));
        }
        let mut f = Vec::new();
        stomp::write_frame(&mut f, self.version, Command::Subscribe, &h, b"");
        self.send_stomp(&f, ctx);
    }

    fn on_payload(&mut self, payload: &[u8], ctx: &mut Ctx<'_>) -> Result<(), String> {
        let mut rest = payload;
        while !rest.is_empty() {
            let mut hs = [Header::default(); 32];
            let used = match stomp::parse(rest, &mut hs, self.version, &LIMITS) {
                Ok(Parsed::Heartbeat(n)) => n,
                Ok(Parsed::Frame(f, used)) => {
                    self.on_frame(&f, ctx)?;
                    used
                }
                Ok(Parsed::Partial) => {
                    return Err("STOMP frame split across WebSocket messages".into())
                }
                Err(e) => return Err(format!("STOMP from server: {e}")),
            };
            rest = rest.get(used..).unwrap_or_default();
        }
        Ok(())
    }

    fn on_frame(&mut self, f: &FrameRef<'_>, ctx: &mut Ctx<'_>) -> Result<(), String> {
        match f.command {
            Command::Message => self.on_message(f, ctx),
            Command::Connected if self.state == State::StompConnecting => {
                self.version = f
                    .header("version")
                    .and_then(|v| Version::parse(&v))
                    .unwrap_or(Version::V1_0);
                match self.spec_sub.clone() {
                    Some(sub) => {
                        self.state = State::Subscribing;
                        self.send_subscribe(&sub, ctx);
                    }
                    None => self.ready(),
                }
                Ok(())
            }
            Command::Receipt => {
                match f.raw("receipt-id") {
                    Some(b"sub") if self.state == State::Subscribing => self.ready(),
                    Some(b"bye") if self.state == State::Disconnecting => {
                        let mask = ctx.mask();
                        ws::write_close(&mut self.wbuf, 1000, "", Some(mask));
                        self.state = State::WsClosing;
                    }
                    _ => {}
                }
                Ok(())
            }
            Command::Error => {
                let msg = f.header("message").unwrap_or_default();
                let msg: String = msg.chars().take(80).collect();
                Err(format!("STOMP ERROR: {msg}"))
            }
            _ => Ok(()),
        }
    }

    fn ready(&mut self) {
        self.state = State::Ready;
        self.became_ready = true;
    }

    fn on_message(&mut self, f: &FrameRef<'_>, ctx: &mut Ctx<'_>) -> Result<(), String> {
        let redelivered = f.raw("redelivered") == Some(b"true");
        let ack = self.spec_sub.as_ref().map_or(Ack::Auto, |s| s.ack);
        // Refuse every Nth first delivery (client-individual only: a cumulative `client` NACK
        // would refuse everything before it too).
        let nack = ack == Ack::ClientIndividual && ctx.plan.nack_every > 0 && !redelivered && {
            self.firsts += 1;
            self.firsts.is_multiple_of(ctx.plan.nack_every)
        };
        if nack {
            ctx.nacked();
        } else {
            ctx.received(self.target, body::read(f.body), redelivered);
        }
        if ack == Ack::Auto {
            return Ok(());
        }
        let mut a = std::mem::take(&mut ctx.scratch);
        a.clear();
        a.extend_from_slice(if nack { b"NACK\n" } else { b"ACK\n" });
        if self.version == Version::V1_2 {
            a.extend_from_slice(b"id:");
            a.extend_from_slice(f.raw("ack").unwrap_or_default());
        } else {
            a.extend_from_slice(b"message-id:");
            a.extend_from_slice(f.raw("message-id").unwrap_or_default());
            if self.version == Version::V1_1 {
                a.extend_from_slice(b"\nsubscription:");
                a.extend_from_slice(f.raw("subscription").unwrap_or_default());
            }
        }
        a.extend_from_slice(b"\n\n\0");
        self.send_stomp(&a, ctx);
        ctx.scratch = a;
        if !nack {
            ctx.acked();
        }
        Ok(())
    }
}

/// A short label for an I/O error (for counting failures by cause).
pub fn io_cause(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(nix::libc::ECONNREFUSED) => "connection refused".into(),
        Some(nix::libc::ECONNRESET) => "connection reset".into(),
        Some(nix::libc::EADDRNOTAVAIL) => "no free local port (EADDRNOTAVAIL)".into(),
        Some(nix::libc::EMFILE) | Some(nix::libc::ENFILE) => "too many open files".into(),
        Some(nix::libc::ETIMEDOUT) => "timed out".into(),
        Some(nix::libc::EPIPE) => "broken pipe".into(),
        _ => format!("{:?}", e.kind()),
    }
}
