//! SockJS load bench: what a SockJS session costs the broker, and how fast a topic fans out to
//! SockJS subscribers, next to plain WebSocket sessions doing the same.
//!
//! ```sh
//! # N idle subscribed sessions; the broker's RSS before and after, and bytes per session
//! sockjs-bench idle --ws 127.0.0.1:61614 --sessions 1000 --transport xhr-streaming
//! # N subscribers on /topic/fan, one WebSocket publisher sending M messages of BYTES
//! sockjs-bench fanout --ws 127.0.0.1:61614 --subscribers 200 --transport websocket \
//!     --messages 1000 --size 256
//! ```
//!
//! Transports: `xhr-streaming` (per session one `POST .../xhr_streaming` connection that
//! receives, re-opened on the same keep-alive connection each time the response ends at the
//! server's response limit; CONNECT and SUBSCRIBE go by `xhr_send` on a small pool of
//! keep-alive connections) or `websocket` (a plain STOMP-over-WebSocket session on `/ws`, as a
//! baseline). The publisher is always a plain WebSocket session.
//!
//! One thread, one mio `Poll`; loopback only; every phase bounded in time. Prints one line per
//! run and a JSON line; exits non-zero when a session failed or a subscriber missed messages.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use stompbox::stomp::{self, Command, Header, Parsed, Version};
use stompbox::ws::{self, client, Decoder, DecoderConfig, Event, Opcode, Status};

use loadtest::sys;

const USAGE: &str = "usage:
  sockjs-bench idle   --ws HOST:PORT --sessions N --transport xhr-streaming|websocket
                      [--topics T] [--hold-secs S] [common options]
  sockjs-bench fanout --ws HOST:PORT --subscribers N --transport xhr-streaming|websocket
                      --messages M --size BYTES [--secs S] [--window W] [common options]
common options:
  --broker-pid PID      broker process for RSS/CPU (default: the process listening on the port)
  --prefix PATH         SockJS prefix (default /sockjs)
  --ws-path PATH        plain WebSocket endpoint (default /ws)
  --send-conns K        keep-alive connections for xhr_send (default 8)
  --concurrency C       sessions being set up at once (default 256)
  --setup-secs S        give up setting sessions up after S seconds (default 60)";

/// STOMP frames from the broker.
const LIMITS: stomp::Limits = stomp::Limits {
    max_headers: 32,
    max_header_line: 8192,
    max_body: 16 * 1024 * 1024,
};

/// The read buffer shared by every connection.
const READ_BUF: usize = 256 * 1024;
/// Longest HTTP response head, chunk-size line or trailer accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Longest SockJS frame accepted (a frame is one line of a streaming response).
const MAX_FRAME: usize = 16 * 1024 * 1024;
/// A publisher with this much unsent output waits for its socket.
const PUB_BACKLOG: usize = 256 * 1024;
/// Digits of the sequence number at the start of every body.
const SEQ_DIGITS: usize = 10;
/// Times an `xhr_send` is retried on a fresh connection when its keep-alive connection closed.
const SEND_RETRIES: u32 = 3;

// ------------------------------------------------------------------------------------------
// Options

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    XhrStreaming,
    Websocket,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::XhrStreaming => "xhr-streaming",
            Transport::Websocket => "websocket",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Idle,
    Fanout,
}

#[derive(Debug, Clone)]
struct Opts {
    mode: Mode,
    addr: SocketAddr,
    authority: String,
    transport: Transport,
    n: usize,
    topics: usize,
    hold: Duration,
    messages: u64,
    size: usize,
    secs: Duration,
    window: Option<u64>,
    broker_pid: Option<u32>,
    prefix: String,
    ws_path: String,
    send_conns: usize,
    concurrency: usize,
    setup: Duration,
}

fn parse() -> Result<Opts, String> {
    let mut args = std::env::args().skip(1);
    let mode = match args.next().as_deref() {
        Some("idle") => Mode::Idle,
        Some("fanout") => Mode::Fanout,
        _ => return Err(USAGE.into()),
    };
    let mut ws = None;
    let mut transport = None;
    let mut n = None;
    let mut o = Opts {
        mode,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        authority: String::new(),
        transport: Transport::Websocket,
        n: 0,
        topics: 100,
        hold: Duration::from_secs(2),
        messages: 0,
        size: 0,
        secs: Duration::from_secs(60),
        window: None,
        broker_pid: None,
        prefix: "/sockjs".into(),
        ws_path: "/ws".into(),
        send_conns: 8,
        concurrency: 256,
        setup: Duration::from_secs(60),
    };
    while let Some(a) = args.next() {
        let mut v = || args.next().ok_or(format!("{a} needs a value"));
        let num = |s: String| s.parse::<u64>().map_err(|e| format!("{a} {s}: {e}"));
        let secs = |s: String| {
            s.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0 && *x <= 86_400.0)
                .map(Duration::from_secs_f64)
                .ok_or(format!("{a} {s}: expected seconds"))
        };
        match (a.as_str(), mode) {
            ("--ws", _) => ws = Some(v()?),
            ("--transport", _) => {
                transport = Some(match v()?.as_str() {
                    "xhr-streaming" | "xhr_streaming" => Transport::XhrStreaming,
                    "websocket" | "ws" => Transport::Websocket,
                    t => return Err(format!("--transport {t}: xhr-streaming or websocket")),
                })
            }
            ("--sessions", Mode::Idle) | ("--subscribers", Mode::Fanout) => {
                n = Some(num(v()?)? as usize)
            }
            ("--topics", Mode::Idle) => o.topics = num(v()?)? as usize,
            ("--hold-secs", Mode::Idle) => o.hold = secs(v()?)?,
            ("--messages", Mode::Fanout) => o.messages = num(v()?)?,
            ("--size", Mode::Fanout) => o.size = num(v()?)? as usize,
            ("--secs", Mode::Fanout) => o.secs = secs(v()?)?,
            ("--window", Mode::Fanout) => o.window = Some(num(v()?)?),
            ("--broker-pid", _) => o.broker_pid = Some(num(v()?)? as u32),
            ("--prefix", _) => o.prefix = v()?.trim_end_matches('/').to_string(),
            ("--ws-path", _) => o.ws_path = v()?,
            ("--send-conns", _) => o.send_conns = num(v()?)? as usize,
            ("--concurrency", _) => o.concurrency = num(v()?)? as usize,
            ("--setup-secs", _) => o.setup = secs(v()?)?,
            _ => return Err(format!("unknown option {a}\n{USAGE}")),
        }
    }
    let ws = ws.ok_or(format!("--ws HOST:PORT is required\n{USAGE}"))?;
    o.transport = transport.ok_or(format!("--transport is required\n{USAGE}"))?;
    o.n = n.ok_or(format!("the number of sessions is required\n{USAGE}"))?;
    o.addr = ws
        .to_socket_addrs()
        .map_err(|e| format!("--ws {ws}: {e}"))?
        .find(|a| a.ip().is_loopback())
        .ok_or(format!(
            "--ws {ws}: not a loopback address (only 127.0.0.1/::1 are used)"
        ))?;
    o.authority = ws;
    if o.n == 0 || o.n > 19_000 {
        return Err("sessions/subscribers: 1..=19000".into());
    }
    if o.topics == 0 || o.send_conns == 0 || o.send_conns > 64 || o.concurrency == 0 {
        return Err("--topics >= 1, --send-conns 1..=64, --concurrency >= 1".into());
    }
    if mode == Mode::Fanout {
        if o.messages == 0 || o.messages > 10_000_000 {
            return Err("--messages 1..=10000000".into());
        }
        if o.size < SEQ_DIGITS || o.size > 1024 * 1024 {
            return Err(format!(
                "--size {SEQ_DIGITS}..=1048576 (the body holds a sequence number)"
            ));
        }
        if o.window == Some(0) {
            return Err("--window >= 1".into());
        }
    }
    Ok(o)
}

// ------------------------------------------------------------------------------------------
// Shared state: subscribers' progress, sends waiting for a connection, the clock

#[derive(Debug, Default, Clone)]
struct Sub {
    connected: bool,
    ready: bool,
    failed: Option<String>,
    delivered: u64,
    /// Deliveries whose sequence number was not the next one expected (gaps, duplicates).
    misordered: u64,
    next_seq: u64,
    /// xhr-streaming: responses opened for this session.
    responses: u64,
}

/// An `xhr_send` request waiting for a keep-alive connection.
struct PendingSend {
    sub: usize,
    request: Vec<u8>,
    tries: u32,
}

struct Shared {
    subs: Vec<Sub>,
    sends: VecDeque<PendingSend>,
    rng: u64,
    /// Sessions that finished setup (ready or failed) since the driver last looked.
    setup_done: usize,
    /// Fanout: subscribers (not failed) at each delivery count `0..=M`, for the slowest.
    at_count: Vec<u32>,
    slowest: u64,
    messages: u64,
    delivered: u64,
    first_send: Option<Instant>,
    /// Messages the publisher wrote.
    sent: u64,
    last_delivery: Option<Instant>,
    publisher_ready: bool,
    publisher_failed: Option<String>,
    /// Subscribers failed since the driver last looked (their connections are closed).
    dead: Vec<usize>,
    opts: Opts,
}

impl Shared {
    fn mask(&mut self) -> [u8; 4] {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng as u32).to_ne_bytes()
    }

    fn session_id(i: usize) -> String {
        format!("b{}-{i}", std::process::id())
    }

    fn destination(&self, i: usize) -> String {
        match self.opts.mode {
            Mode::Fanout => "/topic/fan".into(),
            Mode::Idle => format!("/topic/bench.{}", i % self.opts.topics),
        }
    }

    fn fail(&mut self, sub: usize, why: String) {
        let Some(s) = self.subs.get_mut(sub) else {
            return;
        };
        if s.failed.is_some() {
            return;
        }
        if !s.ready {
            self.setup_done += 1;
        }
        s.failed = Some(why);
        self.dead.push(sub);
        if let Some(c) = self.at_count.get_mut(s.delivered as usize) {
            *c = c.saturating_sub(1);
        }
        self.advance_slowest();
    }

    fn advance_slowest(&mut self) {
        while self.slowest < self.messages
            && self
                .at_count
                .get(self.slowest as usize)
                .copied()
                .unwrap_or(0)
                == 0
        {
            self.slowest += 1;
        }
    }

    /// The session's `o` frame arrived: CONNECT and SUBSCRIBE go by `xhr_send`.
    fn queue_connect(&mut self, sub: usize) {
        let connect = "CONNECT\naccept-version:1.2\nhost:/\nheart-beat:0,0\n\n\0".to_string();
        let subscribe = format!(
            "SUBSCRIBE\nid:0\ndestination:{}\nreceipt:sub\n\n\0",
            self.destination(sub)
        );
        let body = serde_json::to_string(&[connect, subscribe]).unwrap_or_default();
        let mut request = format!(
            "POST {}/000/{}/xhr_send HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain\r\n\
             Content-Length: {}\r\n\r\n",
            self.opts.prefix,
            Shared::session_id(sub),
            self.opts.authority,
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body.as_bytes());
        self.sends.push_back(PendingSend {
            sub,
            request,
            tries: 0,
        });
    }

    /// One SockJS message or WebSocket message for subscriber `sub`: STOMP frames.
    fn on_stomp(&mut self, sub: usize, payload: &[u8]) -> Result<(), String> {
        let mut rest = payload;
        while !rest.is_empty() {
            let mut hs = [Header::default(); 32];
            let used = match stomp::parse(rest, &mut hs, Version::V1_2, &LIMITS) {
                Ok(Parsed::Heartbeat(n)) => n,
                Ok(Parsed::Frame(f, used)) => {
                    match f.command {
                        Command::Message => self.delivered(sub, f.body),
                        Command::Connected => {
                            if let Some(s) = self.subs.get_mut(sub) {
                                s.connected = true;
                            }
                        }
                        Command::Receipt if f.raw("receipt-id") == Some(b"sub") => {
                            if let Some(s) = self.subs.get_mut(sub) {
                                if !s.ready && s.failed.is_none() {
                                    s.ready = true;
                                    self.setup_done += 1;
                                }
                            }
                        }
                        Command::Error => {
                            let m = f.header("message").unwrap_or_default();
                            return Err(format!(
                                "STOMP ERROR: {}",
                                m.chars().take(100).collect::<String>()
                            ));
                        }
                        _ => {}
                    }
                    used
                }
                Ok(Parsed::Partial) => return Err("STOMP frame cut short in one message".into()),
                Err(e) => return Err(format!("STOMP from server: {e}")),
            };
            rest = rest.get(used..).unwrap_or_default();
        }
        Ok(())
    }

    fn delivered(&mut self, sub: usize, body: &[u8]) {
        let seq = body
            .get(..SEQ_DIGITS)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| d.parse::<u64>().ok());
        let Some(s) = self.subs.get_mut(sub) else {
            return;
        };
        if s.failed.is_some() {
            return;
        }
        if seq != Some(s.next_seq) {
            s.misordered += 1;
        }
        s.next_seq = seq.map_or(s.next_seq + 1, |q| q + 1);
        let before = s.delivered;
        s.delivered += 1;
        self.delivered += 1;
        self.last_delivery = Some(Instant::now());
        if before < self.messages {
            if let Some(c) = self.at_count.get_mut(before as usize) {
                *c = c.saturating_sub(1);
            }
            if let Some(c) = self.at_count.get_mut(before as usize + 1) {
                *c += 1;
            }
            self.advance_slowest();
        }
    }
}

// ------------------------------------------------------------------------------------------
// Connections

/// A plain STOMP-over-WebSocket session (a subscriber, or the publisher).
struct WsConn {
    /// Subscriber index; `None`: the publisher.
    sub: Option<usize>,
    state: WsState,
    key: String,
    dec: Decoder,
    /// Publisher: messages written.
    seq: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WsState {
    Upgrading,
    Connecting,
    Subscribing,
    Ready,
}

/// The receiving request of one SockJS session (xhr-streaming), re-opened at each response end.
struct StreamConn {
    sub: usize,
    st: Chunked,
    /// The response in progress said `Connection: close`.
    close_after: bool,
    /// Part of a SockJS frame (a line of the body) not yet ended.
    line: Vec<u8>,
    opened: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunked {
    Head,
    Size,
    Data(usize),
    DataEnd,
    Trailer,
}

/// A keep-alive connection for `xhr_send`, one request at a time.
struct SendConn {
    busy: Option<PendingSend>,
    /// Body bytes of the response still to skip.
    skip: usize,
    in_body: bool,
    status: u16,
    close_after: bool,
}

enum Kind {
    Ws(Box<WsConn>),
    Stream(Box<StreamConn>),
    Send(Box<SendConn>),
}

struct Conn {
    sock: TcpStream,
    connected: bool,
    wbuf: Vec<u8>,
    wpos: usize,
    /// Bytes read but not yet used (an unfinished head, chunk-size line or WebSocket frame).
    carry: Vec<u8>,
    kind: Kind,
}

/// What a connection's event asks of the driver.
enum After {
    Fine,
    /// The connection is finished with (closed cleanly, or an idle keep-alive connection
    /// the server closed).
    Gone,
    /// The connection must be re-opened (a streaming response ended with `Connection: close`).
    Reopen,
}

fn io_err(what: &str, e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(nix::libc::ECONNREFUSED) => format!("{what}: connection refused"),
        Some(nix::libc::ECONNRESET) => format!("{what}: connection reset"),
        Some(nix::libc::EMFILE) | Some(nix::libc::ENFILE) => {
            format!("{what}: too many open files")
        }
        Some(nix::libc::EADDRNOTAVAIL) => format!("{what}: no free local port"),
        _ => format!("{what}: {e}"),
    }
}

impl Conn {
    fn open(addr: SocketAddr, kind: Kind) -> Result<Conn, String> {
        let sock = TcpStream::connect(addr).map_err(|e| io_err("connect", &e))?;
        let _ = sock.set_nodelay(true);
        Ok(Conn {
            sock,
            connected: false,
            wbuf: Vec::new(),
            wpos: 0,
            carry: Vec::new(),
            kind,
        })
    }

    fn flush(&mut self) -> Result<(), String> {
        if !self.connected {
            return Ok(());
        }
        while self.wpos < self.wbuf.len() {
            match self
                .sock
                .write(self.wbuf.get(self.wpos..).unwrap_or_default())
            {
                Ok(0) => return Err("write: connection closed".into()),
                Ok(n) => self.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_err("write", &e)),
            }
        }
        if self.wpos == self.wbuf.len() {
            self.wbuf.clear();
            self.wpos = 0;
        } else if self.wpos > 64 * 1024 {
            self.wbuf.drain(..self.wpos);
            self.wpos = 0;
        }
        Ok(())
    }

    /// The first request once the TCP connection is up.
    fn start(&mut self, sh: &mut Shared) {
        match &mut self.kind {
            Kind::Ws(w) => {
                let req = client::Request {
                    host: &sh.opts.authority,
                    path: &sh.opts.ws_path,
                    protocols: &["v12.stomp"],
                    extensions: None,
                };
                client::write_request(&mut self.wbuf, &req, &w.key);
            }
            Kind::Stream(s) => {
                write_streaming_request(&mut self.wbuf, &sh.opts, s.sub);
                if let Some(x) = sh.subs.get_mut(s.sub) {
                    x.responses += 1;
                }
            }
            Kind::Send(s) => {
                if let Some(p) = &s.busy {
                    self.wbuf.extend_from_slice(&p.request);
                }
            }
        }
    }

    fn on_event(
        &mut self,
        sh: &mut Shared,
        tb: &mut [u8],
        writable: bool,
    ) -> Result<After, String> {
        if !self.connected {
            if let Ok(Some(e)) | Err(e) = self.sock.take_error() {
                return Err(io_err("connect", &e));
            }
            match self.sock.peer_addr() {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(After::Fine),
                Err(e) => return Err(io_err("connect", &e)),
            }
            self.connected = true;
            self.start(sh);
        }
        if writable {
            self.flush()?;
        }
        let r = self.read_all(sh, tb)?;
        self.flush()?;
        Ok(r)
    }

    /// Read until the socket would block, handling what arrives.
    fn read_all(&mut self, sh: &mut Shared, tb: &mut [u8]) -> Result<After, String> {
        loop {
            let c = self.carry.len();
            let Some(head) = tb.get_mut(..c) else {
                return Err("unfinished input larger than the read buffer".into());
            };
            head.copy_from_slice(&self.carry);
            let n = match self.sock.read(tb.get_mut(c..).unwrap_or_default()) {
                Ok(0) => return self.eof(sh),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(After::Fine),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err("read", &e)),
            };
            self.carry.clear();
            let end = c + n;
            let (used, after) = self.process(sh, tb, end)?;
            if let Some(rest) = tb.get(used..end) {
                self.carry.extend_from_slice(rest);
            }
            if self.carry.capacity() > 64 * 1024 && self.carry.len() < 4096 {
                self.carry.shrink_to(4096);
            }
            if !matches!(after, After::Fine) {
                return Ok(after);
            }
        }
    }

    fn eof(&mut self, sh: &mut Shared) -> Result<After, String> {
        match &mut self.kind {
            Kind::Ws(_) => Err("closed by the server".into()),
            Kind::Stream(s) => {
                if s.st == Chunked::Head && self.carry.is_empty() && s.close_after {
                    Ok(After::Reopen)
                } else {
                    Err(format!(
                        "closed by the server during a streaming response ({:?})",
                        s.st
                    ))
                }
            }
            Kind::Send(s) => match s.busy.take() {
                // Closed before the answer: the request goes again on another connection.
                Some(mut p) if p.tries < SEND_RETRIES => {
                    p.tries += 1;
                    sh.sends.push_front(p);
                    Ok(After::Gone)
                }
                Some(p) => {
                    sh.fail(
                        p.sub,
                        "xhr_send: connection closed before the answer".into(),
                    );
                    Ok(After::Gone)
                }
                None => Ok(After::Gone),
            },
        }
    }

    /// Handle `tb[..end]`; returns the bytes used.
    fn process(
        &mut self,
        sh: &mut Shared,
        tb: &mut [u8],
        end: usize,
    ) -> Result<(usize, After), String> {
        match &mut self.kind {
            Kind::Ws(w) => {
                let used = ws_process(w, &mut self.wbuf, sh, tb, end)?;
                Ok((used, After::Fine))
            }
            Kind::Stream(s) => {
                stream_process(s, &mut self.wbuf, sh, tb.get(..end).unwrap_or_default())
            }
            Kind::Send(s) => send_process(s, sh, tb.get(..end).unwrap_or_default()),
        }
    }
}

fn write_streaming_request(out: &mut Vec<u8>, o: &Opts, sub: usize) {
    out.extend_from_slice(
        format!(
            "POST {}/000/{}/xhr_streaming HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\n\r\n",
            o.prefix,
            Shared::session_id(sub),
            o.authority
        )
        .as_bytes(),
    );
}

// ---- WebSocket ----

fn ws_send(out: &mut Vec<u8>, sh: &mut Shared, frame: &[u8]) {
    let mask = sh.mask();
    ws::write_frame(out, true, Opcode::Text, frame, Some(mask));
}

fn ws_process(
    w: &mut WsConn,
    out: &mut Vec<u8>,
    sh: &mut Shared,
    tb: &mut [u8],
    end: usize,
) -> Result<usize, String> {
    let mut pos = 0;
    if w.state == WsState::Upgrading {
        let head = tb.get(..end).unwrap_or_default();
        match client::parse_response(head, &w.key, &["v12.stomp"], MAX_HEAD) {
            Ok(Status::Partial) => return Ok(0),
            Ok(Status::Complete(a)) => pos = a.consumed,
            Err(e) => return Err(format!("WebSocket handshake: {e}")),
        }
        let mut f = Vec::new();
        stomp::write_frame(
            &mut f,
            Version::V1_2,
            Command::Connect,
            &[
                ("accept-version", "1.2"),
                ("host", "/"),
                ("heart-beat", "0,0"),
            ],
            b"",
        );
        ws_send(out, sh, &f);
        w.state = WsState::Connecting;
    }
    let WsConn {
        sub, state, dec, ..
    } = w;
    while pos < end {
        let input = tb.get_mut(pos..end).unwrap_or_default();
        let (used, ev) = dec.decode(input).map_err(|e| format!("websocket: {e:?}"))?;
        match ev {
            Some(Event::Message { payload, .. }) => match *sub {
                Some(sub) => {
                    sh.on_stomp(sub, payload)?;
                    if *state == WsState::Connecting
                        && sh.subs.get(sub).is_some_and(|s| s.connected)
                    {
                        let mut f = Vec::new();
                        let dest = sh.destination(sub);
                        stomp::write_frame(
                            &mut f,
                            Version::V1_2,
                            Command::Subscribe,
                            &[("id", "0"), ("destination", &dest), ("receipt", "sub")],
                            b"",
                        );
                        ws_send(out, sh, &f);
                        *state = WsState::Subscribing;
                    }
                    if sh.subs.get(sub).is_some_and(|s| s.ready) {
                        *state = WsState::Ready;
                    }
                }
                None => publisher_payload(state, sh, payload)?,
            },
            Some(Event::Ping(data)) => {
                let mask = sh.mask();
                ws::write_frame(out, true, Opcode::Pong, data, Some(mask));
            }
            Some(Event::Pong(_)) => {}
            Some(Event::Compressed { .. }) => return Err("websocket: compressed message".into()),
            Some(Event::Close(c)) => {
                let (code, reason) = c.unwrap_or((1005, ""));
                return Err(format!("closed by the server: websocket {code} {reason}"));
            }
            None if used == 0 => break,
            None => {}
        }
        pos += used;
    }
    Ok(pos)
}

fn publisher_payload(state: &mut WsState, sh: &mut Shared, payload: &[u8]) -> Result<(), String> {
    let mut rest = payload;
    while !rest.is_empty() {
        let mut hs = [Header::default(); 32];
        let used = match stomp::parse(rest, &mut hs, Version::V1_2, &LIMITS) {
            Ok(Parsed::Heartbeat(n)) => n,
            Ok(Parsed::Frame(f, used)) => {
                match f.command {
                    Command::Connected => {
                        *state = WsState::Ready;
                        sh.publisher_ready = true;
                    }
                    Command::Error => {
                        let m = f.header("message").unwrap_or_default();
                        return Err(format!("publisher: STOMP ERROR: {m}"));
                    }
                    _ => {}
                }
                used
            }
            Ok(Parsed::Partial) => return Err("publisher: STOMP frame cut short".into()),
            Err(e) => return Err(format!("publisher: STOMP from server: {e}")),
        };
        rest = rest.get(used..).unwrap_or_default();
    }
    Ok(())
}

// ---- xhr-streaming ----

/// A response head: status, whether the body is chunked, whether the connection closes after
/// it, `Content-Length`, and the head's length. `None` until the blank line has arrived.
struct RespHead {
    status: u16,
    chunked: bool,
    close: bool,
    length: Option<usize>,
    len: usize,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

fn parse_head(buf: &[u8]) -> Result<Option<RespHead>, String> {
    let Some(at) = find(buf, b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD {
            return Err("HTTP response head too large".into());
        }
        return Ok(None);
    };
    let text = std::str::from_utf8(buf.get(..at).unwrap_or_default())
        .map_err(|_| "HTTP response head not UTF-8".to_string())?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or(format!("malformed status line {status_line:?}"))?;
    let mut h = RespHead {
        status,
        chunked: false,
        close: version == "HTTP/1.0",
        length: None,
        len: at + 4,
    };
    for l in lines {
        let Some((name, value)) = l.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("transfer-encoding") {
            h.chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("content-length") {
            h.length = value.parse().ok();
        } else if name.eq_ignore_ascii_case("connection") {
            if value.eq_ignore_ascii_case("close") {
                h.close = true;
            } else if value.eq_ignore_ascii_case("keep-alive") {
                h.close = false;
            }
        }
    }
    Ok(Some(h))
}

fn stream_process(
    s: &mut StreamConn,
    out: &mut Vec<u8>,
    sh: &mut Shared,
    buf: &[u8],
) -> Result<(usize, After), String> {
    let mut pos = 0;
    loop {
        let rest = buf.get(pos..).unwrap_or_default();
        if rest.is_empty() {
            return Ok((pos, After::Fine));
        }
        match s.st {
            Chunked::Head => {
                let Some(h) = parse_head(rest)? else {
                    return Ok((pos, After::Fine));
                };
                if h.status != 200 {
                    let body = rest.get(h.len..).unwrap_or_default();
                    let body = String::from_utf8_lossy(
                        body.get(..body.len().min(100)).unwrap_or_default(),
                    );
                    return Err(format!("xhr_streaming: HTTP {} {}", h.status, body.trim()));
                }
                if !h.chunked {
                    return Err("xhr_streaming: response not chunked".into());
                }
                s.close_after = h.close;
                s.st = Chunked::Size;
                pos += h.len;
            }
            Chunked::Size => {
                let Some(at) = find(rest, b"\r\n") else {
                    if rest.len() > MAX_HEAD {
                        return Err("chunk-size line too long".into());
                    }
                    return Ok((pos, After::Fine));
                };
                let line = std::str::from_utf8(rest.get(..at).unwrap_or_default()).unwrap_or("");
                let hex = line.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(hex, 16)
                    .map_err(|_| format!("bad chunk size {line:?}"))?;
                if size > MAX_FRAME {
                    return Err(format!("chunk of {size} bytes"));
                }
                pos += at + 2;
                s.st = if size == 0 {
                    Chunked::Trailer
                } else {
                    Chunked::Data(size)
                };
            }
            Chunked::Data(left) => {
                let k = left.min(rest.len());
                stream_body(s, sh, rest.get(..k).unwrap_or_default())?;
                pos += k;
                s.st = if k == left {
                    Chunked::DataEnd
                } else {
                    Chunked::Data(left - k)
                };
            }
            Chunked::DataEnd => {
                match rest {
                    [b'\r', b'\n', ..] => {}
                    [b'\r'] => return Ok((pos, After::Fine)),
                    _ => return Err("chunk not followed by CRLF".into()),
                }
                pos += 2;
                s.st = Chunked::Size;
            }
            Chunked::Trailer => {
                let Some(at) = find(rest, b"\r\n") else {
                    if rest.len() > MAX_HEAD {
                        return Err("trailer line too long".into());
                    }
                    return Ok((pos, After::Fine));
                };
                pos += at + 2;
                if at == 0 {
                    // The response ended (the response limit): the next one, at once.
                    s.st = Chunked::Head;
                    if !s.line.is_empty() {
                        return Err("streaming response ended inside a frame".into());
                    }
                    if s.line.capacity() > 64 * 1024 {
                        s.line = Vec::new();
                    }
                    if s.close_after {
                        return Ok((pos, After::Reopen));
                    }
                    write_streaming_request(out, &sh.opts, s.sub);
                    if let Some(x) = sh.subs.get_mut(s.sub) {
                        x.responses += 1;
                    }
                }
            }
        }
    }
}

/// Body bytes of a streaming response: frames, one a line.
fn stream_body(s: &mut StreamConn, sh: &mut Shared, mut bytes: &[u8]) -> Result<(), String> {
    while let Some(i) = memchr::memchr(b'\n', bytes) {
        let (part, rest) = (
            bytes.get(..i).unwrap_or_default(),
            bytes.get(i + 1..).unwrap_or_default(),
        );
        if s.line.is_empty() {
            stream_frame(s, sh, part)?;
        } else {
            let mut line = std::mem::take(&mut s.line);
            line.extend_from_slice(part);
            let r = stream_frame(s, sh, &line);
            line.clear();
            s.line = line;
            r?;
        }
        bytes = rest;
    }
    if s.line.len() + bytes.len() > MAX_FRAME {
        return Err("SockJS frame too large".into());
    }
    s.line.extend_from_slice(bytes);
    Ok(())
}

fn stream_frame(s: &mut StreamConn, sh: &mut Shared, frame: &[u8]) -> Result<(), String> {
    match frame.first() {
        None => Ok(()),
        // Heart-beat, or the 2 KiB prelude.
        Some(b'h') if frame.iter().all(|b| *b == b'h') => Ok(()),
        Some(b'o') if frame.len() == 1 => {
            if !s.opened {
                s.opened = true;
                sh.queue_connect(s.sub);
            }
            Ok(())
        }
        Some(b'a') => {
            let msgs: Vec<String> = serde_json::from_slice(frame.get(1..).unwrap_or_default())
                .map_err(|e| format!("bad a[...] frame: {e}"))?;
            for m in &msgs {
                sh.on_stomp(s.sub, m.as_bytes())?;
            }
            Ok(())
        }
        Some(b'c') => Err(format!(
            "session closed: {}",
            String::from_utf8_lossy(frame.get(..frame.len().min(100)).unwrap_or_default())
        )),
        Some(_) => Err(format!(
            "unexpected SockJS frame {:?}",
            String::from_utf8_lossy(frame.get(..frame.len().min(40)).unwrap_or_default())
        )),
    }
}

// ---- xhr_send ----

fn send_process(s: &mut SendConn, sh: &mut Shared, buf: &[u8]) -> Result<(usize, After), String> {
    let mut pos = 0;
    loop {
        let rest = buf.get(pos..).unwrap_or_default();
        if s.in_body {
            let k = s.skip.min(rest.len());
            s.skip -= k;
            pos += k;
            if s.skip > 0 {
                return Ok((pos, After::Fine));
            }
            s.in_body = false;
            let Some(p) = s.busy.take() else {
                return Err("xhr_send: a response nobody asked for".into());
            };
            if s.status != 204 && s.status != 200 {
                sh.fail(p.sub, format!("xhr_send: HTTP {}", s.status));
            }
            if s.close_after {
                return Ok((pos, After::Gone));
            }
            continue;
        }
        if rest.is_empty() {
            return Ok((pos, After::Fine));
        }
        let Some(h) = parse_head(rest)? else {
            return Ok((pos, After::Fine));
        };
        if h.chunked {
            return Err("xhr_send: chunked response".into());
        }
        pos += h.len;
        s.status = h.status;
        s.close_after = h.close;
        s.skip = h.length.unwrap_or(0);
        s.in_body = true;
    }
}

// ------------------------------------------------------------------------------------------
// The driver

struct Driver {
    poll: Poll,
    conns: Vec<Option<Conn>>,
    sh: Shared,
    tb: Vec<u8>,
    /// Subscribers opened so far.
    opened: usize,
    /// Subscribers in setup now.
    in_setup: usize,
    pub_tok: usize,
    send_base: usize,
    /// Reopens of streaming connections (a response ended with `Connection: close`).
    reopens: u64,
}

impl Driver {
    fn new(o: Opts) -> Result<Driver, String> {
        let n = o.n;
        let messages = o.messages;
        let sends = o.send_conns;
        let mut at_count = Vec::new();
        if o.mode == Mode::Fanout {
            at_count = vec![0u32; messages as usize + 1];
            if let Some(c) = at_count.get_mut(0) {
                *c = n as u32;
            }
        }
        let seed = u64::from_ne_bytes(
            client::random_nonce()
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .unwrap_or([7; 8]),
        ) | 1;
        let mut conns = Vec::with_capacity(n + 1 + sends);
        conns.resize_with(n + 1 + sends, || None);
        Ok(Driver {
            poll: Poll::new().map_err(|e| e.to_string())?,
            conns,
            sh: Shared {
                subs: vec![Sub::default(); n],
                sends: VecDeque::new(),
                rng: seed,
                setup_done: 0,
                at_count,
                slowest: 0,
                messages,
                delivered: 0,
                first_send: None,
                sent: 0,
                last_delivery: None,
                publisher_ready: false,
                publisher_failed: None,
                dead: Vec::new(),
                opts: o,
            },
            tb: vec![0u8; READ_BUF],
            opened: 0,
            in_setup: 0,
            pub_tok: n,
            send_base: n + 1,
            reopens: 0,
        })
    }

    fn ws_kind(sub: Option<usize>) -> Kind {
        Kind::Ws(Box::new(WsConn {
            sub,
            state: WsState::Upgrading,
            key: client::encode_key(client::random_nonce()),
            dec: Decoder::new(DecoderConfig::client(1 << 24, 1 << 24)),
            seq: 0,
        }))
    }

    fn install(&mut self, tok: usize, kind: Kind) -> Result<(), String> {
        let mut c = Conn::open(self.sh.opts.addr, kind)?;
        self.poll
            .registry()
            .register(
                &mut c.sock,
                Token(tok),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| format!("register: {e}"))?;
        if let Some(slot) = self.conns.get_mut(tok) {
            if let Some(mut old) = slot.replace(c) {
                let _ = self.poll.registry().deregister(&mut old.sock);
            }
        }
        Ok(())
    }

    fn drop_conn(&mut self, tok: usize) {
        if let Some(mut c) = self.conns.get_mut(tok).and_then(Option::take) {
            let _ = self.poll.registry().deregister(&mut c.sock);
        }
    }

    /// Open subscribers while fewer than `--concurrency` are being set up.
    fn open_subs(&mut self) {
        while self.opened < self.sh.opts.n && self.in_setup < self.sh.opts.concurrency {
            let i = self.opened;
            self.opened += 1;
            self.in_setup += 1;
            let kind = match self.sh.opts.transport {
                Transport::Websocket => Driver::ws_kind(Some(i)),
                Transport::XhrStreaming => Kind::Stream(Box::new(StreamConn {
                    sub: i,
                    st: Chunked::Head,
                    close_after: false,
                    line: Vec::new(),
                    opened: false,
                })),
            };
            if let Err(e) = self.install(i, kind) {
                self.sh.fail(i, e);
            }
        }
    }

    /// Hand waiting `xhr_send` requests to idle keep-alive connections (opening them as
    /// needed).
    fn dispatch_sends(&mut self) {
        for k in 0..self.sh.opts.send_conns {
            if self.sh.sends.is_empty() {
                return;
            }
            let tok = self.send_base + k;
            let idle = match self.conns.get(tok) {
                Some(Some(c)) => match &c.kind {
                    Kind::Send(s) => s.busy.is_none() && c.connected,
                    _ => false,
                },
                Some(None) => {
                    // No connection: a new one takes the request once it is up.
                    let Some(p) = self.sh.sends.pop_front() else {
                        return;
                    };
                    let sub = p.sub;
                    let kind = Kind::Send(Box::new(SendConn {
                        busy: Some(p),
                        skip: 0,
                        in_body: false,
                        status: 0,
                        close_after: false,
                    }));
                    if let Err(e) = self.install(tok, kind) {
                        self.sh.fail(sub, e);
                    }
                    false
                }
                None => false,
            };
            if !idle {
                continue;
            }
            let Some(p) = self.sh.sends.pop_front() else {
                return;
            };
            let sub = p.sub;
            let r = match self.conns.get_mut(tok) {
                Some(Some(c)) => {
                    c.wbuf.extend_from_slice(&p.request);
                    if let Kind::Send(s) = &mut c.kind {
                        s.busy = Some(p);
                    }
                    c.flush()
                }
                _ => Ok(()),
            };
            if let Err(e) = r {
                // The connection is broken: the request goes again on a fresh one.
                let back = match self.conns.get_mut(tok) {
                    Some(Some(Conn {
                        kind: Kind::Send(s),
                        ..
                    })) => s.busy.take(),
                    _ => None,
                };
                self.drop_conn(tok);
                match back {
                    Some(mut p) if p.tries < SEND_RETRIES => {
                        p.tries += 1;
                        self.sh.sends.push_front(p);
                    }
                    _ => self.sh.fail(sub, e),
                }
            }
        }
    }

    /// Close the `xhr_send` connections (not needed after setup; they are not counted).
    fn close_senders(&mut self) {
        for k in 0..self.sh.opts.send_conns {
            self.drop_conn(self.send_base + k);
        }
    }

    fn poll_once(&mut self, timeout: Duration) -> Result<(), String> {
        let mut events = Events::with_capacity(1024);
        match self.poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(format!("poll: {e}")),
        }
        for ev in events.iter() {
            let tok = ev.token().0;
            let Some(Some(c)) = self.conns.get_mut(tok) else {
                continue;
            };
            let r = c.on_event(&mut self.sh, &mut self.tb, ev.is_writable());
            match r {
                Ok(After::Fine) => {}
                Ok(After::Gone) => self.drop_conn(tok),
                Ok(After::Reopen) => {
                    self.reopens += 1;
                    let kind = Kind::Stream(Box::new(StreamConn {
                        sub: tok,
                        st: Chunked::Head,
                        close_after: false,
                        line: Vec::new(),
                        opened: true,
                    }));
                    if let Err(e) = self.install(tok, kind) {
                        self.sh.fail(tok, e);
                    }
                }
                Err(e) => self.conn_failed(tok, e),
            }
        }
        for tok in std::mem::take(&mut self.sh.dead) {
            self.drop_conn(tok);
        }
        Ok(())
    }

    fn conn_failed(&mut self, tok: usize, e: String) {
        let sub_of_send = match self.conns.get_mut(tok) {
            Some(Some(Conn {
                kind: Kind::Send(s),
                ..
            })) => Some(s.busy.take()),
            _ => None,
        };
        self.drop_conn(tok);
        if tok < self.sh.opts.n {
            self.sh.fail(tok, e);
        } else if tok == self.pub_tok {
            self.sh.publisher_failed = Some(e);
        } else if let Some(Some(mut p)) = sub_of_send {
            if p.tries < SEND_RETRIES {
                p.tries += 1;
                self.sh.sends.push_front(p);
            } else {
                self.sh.fail(p.sub, e);
            }
        }
    }

    /// Account for sessions that finished setup; open more. Returns how many are in setup.
    fn setup_turn(&mut self) {
        let done = std::mem::take(&mut self.sh.setup_done);
        self.in_setup = self.in_setup.saturating_sub(done);
        self.open_subs();
        self.dispatch_sends();
    }

    /// Open every subscriber and wait until each is ready or failed (or the setup time is up).
    fn setup(&mut self) -> Result<Duration, String> {
        let t0 = Instant::now();
        let deadline = t0 + self.sh.opts.setup;
        loop {
            self.setup_turn();
            let settled = self
                .sh
                .subs
                .iter()
                .filter(|s| s.ready || s.failed.is_some())
                .count();
            if self.opened == self.sh.opts.n && settled == self.sh.opts.n {
                return Ok(t0.elapsed());
            }
            let now = Instant::now();
            if now >= deadline {
                for i in 0..self.sh.opts.n {
                    if self.sh.subs.get(i).is_some_and(|s| !s.ready) {
                        self.sh.fail(i, "not ready within --setup-secs".into());
                        self.drop_conn(i);
                    }
                }
                return Ok(t0.elapsed());
            }
            self.poll_once((deadline - now).min(Duration::from_millis(100)))?;
        }
    }

    /// Keep every connection served for `d` (heart-beats, the server's closes).
    fn serve_for(&mut self, d: Duration) -> Result<(), String> {
        let deadline = Instant::now() + d;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Ok(());
            }
            self.poll_once((deadline - now).min(Duration::from_millis(100)))?;
        }
    }

    fn ready_count(&self) -> usize {
        self.sh
            .subs
            .iter()
            .filter(|s| s.ready && s.failed.is_none())
            .count()
    }

    fn failures(&self) -> (usize, String) {
        let mut by_cause: Vec<(String, usize)> = Vec::new();
        for s in &self.sh.subs {
            if let Some(f) = &s.failed {
                match by_cause.iter_mut().find(|(c, _)| c == f) {
                    Some((_, n)) => *n += 1,
                    None => by_cause.push((f.clone(), 1)),
                }
            }
        }
        let n = by_cause.iter().map(|(_, n)| n).sum();
        by_cause.sort_by_key(|c| std::cmp::Reverse(c.1));
        let text = by_cause
            .iter()
            .take(4)
            .map(|(c, n)| format!("{n} x {c}"))
            .collect::<Vec<_>>()
            .join("; ");
        if text.contains("too many connections") {
            // An xhr-streaming session holds two of the broker's connection slots (the
            // session and its receiving request), all from 127.0.0.1.
            let need = match self.sh.opts.transport {
                Transport::XhrStreaming => 2 * self.sh.opts.n + self.sh.opts.send_conns + 1,
                Transport::Websocket => self.sh.opts.n + 1,
            };
            eprintln!(
                "sockjs-bench: the broker refused connections: start it with \
                 --max-connections-per-ip {need} or more (default 1000)"
            );
        }
        (n, text)
    }

    /// The publisher: write what the window allows.
    fn publish(&mut self, window: u64) -> Result<(), String> {
        let m = self.sh.messages;
        let size = self.sh.opts.size;
        let Some(Some(c)) = self.conns.get_mut(self.pub_tok) else {
            return Ok(());
        };
        let Kind::Ws(w) = &mut c.kind else {
            return Ok(());
        };
        if w.state != WsState::Ready {
            return Ok(());
        }
        let mut frame = Vec::with_capacity(size + 64);
        while w.seq < m && w.seq < self.sh.slowest + window && c.wbuf.len() - c.wpos < PUB_BACKLOG {
            frame.clear();
            frame.extend_from_slice(b"SEND\ndestination:/topic/fan\ncontent-length:");
            stomp::push_usize(&mut frame, size);
            frame.extend_from_slice(b"\n\n");
            frame.extend_from_slice(format!("{:0width$}", w.seq, width = SEQ_DIGITS).as_bytes());
            frame.resize(frame.len() + size - SEQ_DIGITS, b'x');
            frame.push(0);
            let mask = self.sh.mask();
            ws::write_frame(&mut c.wbuf, true, Opcode::Text, &frame, Some(mask));
            w.seq += 1;
            self.sh.sent = w.seq;
            if self.sh.first_send.is_none() {
                self.sh.first_send = Some(Instant::now());
            }
        }
        c.flush()
    }
}

// ------------------------------------------------------------------------------------------
// Broker process: found by its listening port when not given

/// The process listening on `port` (of this user), from `/proc/net/tcp{,6}` and `/proc/*/fd`.
fn find_listener(port: u16) -> Option<u32> {
    let want = format!(":{port:04X}");
    let mut inode = None;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(ino)) = (f.get(1), f.get(3), f.get(9)) else {
                continue;
            };
            if *state == "0A" && local.ends_with(&want) && *ino != "0" {
                inode = Some(format!("socket:[{ino}]"));
                break;
            }
        }
        if inode.is_some() {
            break;
        }
    }
    let inode = inode?;
    for p in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.to_str() == Some(inode.as_str())) {
                return Some(pid);
            }
        }
    }
    None
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

// ------------------------------------------------------------------------------------------
// The two runs

fn run_idle(o: Opts, pid: Option<u32>) -> Result<bool, String> {
    let n = o.n;
    let transport = o.transport;
    let mut hold = o.hold;
    let mut d = Driver::new(o)?;
    let rss_before = pid.and_then(sys::rss_bytes);
    let setup = d.setup()?;
    d.close_senders();
    if d.ready_count() > 0 {
        d.serve_for(hold)?;
    } else {
        hold = Duration::ZERO;
    }
    let rss_after = pid.and_then(sys::rss_bytes);
    let ready = d.ready_count();
    let (failed, causes) = d.failures();
    let per = match (rss_before, rss_after) {
        (Some(b), Some(a)) if ready > 0 => Some((a as i64 - b as i64) / ready as i64),
        _ => None,
    };
    let rss = match (rss_before, rss_after, per) {
        (Some(b), Some(a), Some(p)) => format!(
            "broker RSS {:.1} MiB -> {:.1} MiB, {p} B/session",
            mib(b),
            mib(a)
        ),
        _ => "broker RSS n/a (no --broker-pid, and no process found listening on the port)".into(),
    };
    println!(
        "sockjs-bench idle {}: {ready}/{n} sessions ready in {:.2} s, held {:.1} s; {rss}{}",
        transport.name(),
        setup.as_secs_f64(),
        hold.as_secs_f64(),
        if failed > 0 {
            format!("; {failed} failed: {causes}")
        } else {
            String::new()
        }
    );
    let opt = |v: Option<u64>| v.map_or("null".to_string(), |x| x.to_string());
    println!(
        "{{\"bench\":\"sockjs-bench\",\"mode\":\"idle\",\"transport\":\"{}\",\"sessions\":{n},\
         \"ready\":{ready},\"failed\":{failed},\"setup_s\":{:.3},\"hold_s\":{:.1},\
         \"rss_before\":{},\"rss_after\":{},\"bytes_per_session\":{},\"broker_pid\":{}{}}}",
        transport.name(),
        setup.as_secs_f64(),
        hold.as_secs_f64(),
        opt(rss_before),
        opt(rss_after),
        per.map_or("null".to_string(), |x| x.to_string()),
        pid.map_or("null".to_string(), |x| x.to_string()),
        if failed > 0 {
            format!(",\"failures\":{}", json_str(&causes))
        } else {
            String::new()
        }
    );
    Ok(failed == 0 && ready == n)
}

fn run_fanout(o: Opts, pid: Option<u32>) -> Result<bool, String> {
    let n = o.n;
    let m = o.messages;
    let size = o.size;
    let transport = o.transport;
    let secs = o.secs;
    // Default window: about 2 MiB of messages in flight per subscriber (half the broker's
    // default 4 MiB outbound bound, so that no subscriber is closed as a slow consumer), at
    // most 1000 messages.
    let window = o
        .window
        .unwrap_or(((2 * 1024 * 1024) / (size as u64 + 200)).clamp(8, 1000));
    let mut d = Driver::new(o)?;
    let setup = d.setup()?;
    d.close_senders();
    let ready = d.ready_count();
    if ready == 0 {
        let (_, causes) = d.failures();
        return Err(format!("no subscriber ready: {causes}"));
    }
    // The publisher.
    let kind = Driver::ws_kind(None);
    d.install(d.pub_tok, kind)?;
    let pub_deadline = Instant::now() + d.sh.opts.setup;
    while !d.sh.publisher_ready {
        if let Some(e) = &d.sh.publisher_failed {
            return Err(format!("publisher: {e}"));
        }
        if Instant::now() >= pub_deadline {
            return Err("publisher: not connected within --setup-secs".into());
        }
        d.poll_once(Duration::from_millis(100))?;
    }
    let cpu0 = sys::process_cpu();
    let bcpu0 = pid.and_then(sys::process_cpu_of);
    let t0 = Instant::now();
    let deadline = t0 + secs;
    let mut timed_out = false;
    loop {
        if let Err(e) = d.publish(window) {
            d.sh.publisher_failed = Some(e);
        }
        if d.sh.publisher_failed.is_some() {
            break;
        }
        let live = d.sh.subs.iter().filter(|s| s.failed.is_none()).count() as u64;
        if live == 0 || d.sh.slowest >= m {
            break;
        }
        let now = Instant::now();
        if now >= deadline {
            timed_out = true;
            break;
        }
        d.poll_once((deadline - now).min(Duration::from_millis(100)))?;
    }
    let cpu = sys::process_cpu().saturating_sub(cpu0);
    let bcpu = match (bcpu0, pid.and_then(sys::process_cpu_of)) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    let rss = pid.and_then(sys::rss_bytes);
    let sent = d.sh.sent;
    let expected = n as u64 * m;
    let delivered = d.sh.delivered;
    let elapsed = match (d.sh.first_send, d.sh.last_delivery) {
        (Some(a), Some(b)) if b > a => b - a,
        _ => Duration::ZERO,
    };
    let rate = if elapsed.is_zero() {
        0.0
    } else {
        delivered as f64 / elapsed.as_secs_f64()
    };
    let complete =
        d.sh.subs
            .iter()
            .filter(|s| s.failed.is_none() && s.delivered == m)
            .count();
    let short = d.sh.subs.iter().filter(|s| s.delivered < m).count();
    let extra = d.sh.subs.iter().filter(|s| s.delivered > m).count();
    let misordered: u64 = d.sh.subs.iter().map(|s| s.misordered).sum();
    let responses: u64 = d.sh.subs.iter().map(|s| s.responses).sum();
    let (failed, causes) = d.failures();
    let ok = complete == n && misordered == 0 && failed == 0 && d.sh.publisher_failed.is_none();
    let verdict = if ok {
        "every subscriber got all M".to_string()
    } else {
        let mut v = format!("INCOMPLETE: {complete}/{n} subscribers got all M");
        if short > 0 {
            v += &format!(", {short} short");
        }
        if extra > 0 {
            v += &format!(", {extra} with more than M");
        }
        if misordered > 0 {
            v += &format!(", {misordered} deliveries out of sequence");
        }
        if failed > 0 {
            v += &format!(", {failed} failed ({causes})");
        }
        if let Some(e) = &d.sh.publisher_failed {
            v += &format!(", the publisher failed ({e})");
        }
        if timed_out {
            v += &format!(", timed out after {:.1} s", secs.as_secs_f64());
        }
        v
    };
    let streams = if transport == Transport::XhrStreaming {
        format!(", {responses} xhr_streaming responses")
    } else {
        String::new()
    };
    println!(
        "sockjs-bench fanout {}: {n} subscribers x {m} msgs x {size} B: delivered {delivered}/{expected} \
         in {:.3} s = {:.0} deliveries/s ({:.1} MiB/s of bodies); {verdict}; window {window}, \
         setup {:.2} s{streams}; sent {sent}; cpu: bench {:.2} s{}",
        transport.name(),
        elapsed.as_secs_f64(),
        rate,
        rate * size as f64 / (1024.0 * 1024.0),
        setup.as_secs_f64(),
        cpu.as_secs_f64(),
        bcpu.map_or(String::new(), |c| format!(", broker {:.2} s", c.as_secs_f64())),
    );
    let opt = |v: Option<u64>| v.map_or("null".to_string(), |x| x.to_string());
    println!(
        "{{\"bench\":\"sockjs-bench\",\"mode\":\"fanout\",\"transport\":\"{}\",\"subscribers\":{n},\
         \"messages\":{m},\"size\":{size},\"window\":{window},\"sent\":{sent},\"expected\":{expected},\
         \"delivered\":{delivered},\"elapsed_s\":{:.4},\"deliveries_per_s\":{:.0},\
         \"complete_subscribers\":{complete},\"misordered\":{misordered},\"failed\":{failed},\
         \"timed_out\":{timed_out},\"setup_s\":{:.3},\"xhr_streaming_responses\":{responses},\
         \"bench_cpu_s\":{:.3},\"broker_cpu_s\":{},\"broker_rss\":{},\"ok\":{ok}{}}}",
        transport.name(),
        elapsed.as_secs_f64(),
        rate,
        setup.as_secs_f64(),
        cpu.as_secs_f64(),
        bcpu.map_or("null".to_string(), |c| format!("{:.3}", c.as_secs_f64())),
        opt(rss),
        [
            (failed > 0).then(|| format!(",\"failures\":{}", json_str(&causes))),
            d.sh.publisher_failed
                .as_ref()
                .map(|e| format!(",\"publisher_error\":{}", json_str(e))),
        ]
        .into_iter()
        .flatten()
        .collect::<String>()
    );
    Ok(ok)
}

fn main() -> ExitCode {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("sockjs-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let (soft, _hard) = sys::raise_nofile();
    let need = o.n as u64 + o.send_conns as u64 + 32;
    if soft < need {
        eprintln!(
            "sockjs-bench: {} sessions need about {need} open files; the limit is {soft}",
            o.n
        );
        return ExitCode::from(2);
    }
    let pid = o.broker_pid.or_else(|| find_listener(o.addr.port()));
    let r = match o.mode {
        Mode::Idle => run_idle(o, pid),
        Mode::Fanout => run_fanout(o, pid),
    };
    match r {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("sockjs-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
