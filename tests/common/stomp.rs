//! The raw STOMP test client shared by the integration tests: frames built by hand, read back
//! with the small parser below (deliberately not stompbox's decoder), over a plain TCP socket or
//! `tungstenite` on `/ws` (subprotocol `v12.stomp`).
//!
//! File-specific helpers (ACK/NACK, metrics, close checks, ...) stay in the test files, on top
//! of [`Client`].

use std::collections::VecDeque;
use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use tungstenite::Message;

/// The longest any single read may block (and, for a [`Client::polling`] client, the longest
/// [`Client::recv`] waits for one frame).
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// Socket read timeout of a [`Client::polling`] client: how often a waiting reader looks at the
/// clock.
pub const POLL: Duration = Duration::from_millis(20);

pub type Ws = tungstenite::WebSocket<TcpStream>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tcp,
    Ws,
}

pub const BOTH: [Kind; 2] = [Kind::Tcp, Kind::Ws];

/// A server's two STOMP listeners.
#[derive(Debug, Clone, Copy)]
pub struct Addrs {
    pub ws: SocketAddr,
    pub tcp: SocketAddr,
}

/// The reactor a session lives on, from the server's `s<reactor>-<n>` session ids.
pub fn reactor_of(session: &str) -> usize {
    session
        .strip_prefix('s')
        .and_then(|s| s.split_once('-'))
        .and_then(|(r, _)| r.parse().ok())
        .unwrap_or_else(|| panic!("session id {session:?} is not s<reactor>-<n>"))
}

// ---------------------------------------------------------------------------------------------
// Frames: building (raw bytes) and reading (our own small parser).

/// Header escaping as the client's version defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Esc {
    /// STOMP 1.0: none.
    None,
    /// STOMP 1.1: `\n`, `\c`, `\\`.
    V11,
    /// STOMP 1.2: also `\r`.
    V12,
}

impl Esc {
    /// The escaping of a negotiated version.
    pub fn of_version(v: &str) -> Esc {
        match v {
            "1.0" => Esc::None,
            "1.1" => Esc::V11,
            _ => Esc::V12,
        }
    }
}

/// STOMP 1.1/1.2 header escaping.
pub fn esc(v: &str) -> String {
    let mut o = String::new();
    for c in v.chars() {
        match c {
            '\r' => o.push_str("\\r"),
            '\n' => o.push_str("\\n"),
            ':' => o.push_str("\\c"),
            '\\' => o.push_str("\\\\"),
            c => o.push(c),
        }
    }
    o
}

/// Undo header escaping as `esc` defines it; an escape undefined there fails the test.
pub fn unesc(v: &str, esc: Esc) -> String {
    let mut o = String::new();
    let mut it = v.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            o.push(c);
            continue;
        }
        o.push(match it.next() {
            Some('r') if esc == Esc::V12 => '\r',
            Some('n') => '\n',
            Some('c') => ':',
            Some('\\') => '\\',
            other => panic!("server sent an escape \\{other:?} undefined in {esc:?}: {v:?}"),
        });
    }
    o
}

/// A frame on the wire: `headers` are written as given (already escaped); no content-length is
/// added.
pub fn frame(cmd: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut v = cmd.as_bytes().to_vec();
    v.push(b'\n');
    for (k, val) in headers {
        v.extend_from_slice(k.as_bytes());
        v.push(b':');
        v.extend_from_slice(val.as_bytes());
        v.push(b'\n');
    }
    v.push(b'\n');
    v.extend_from_slice(body);
    v.push(0);
    v
}

#[derive(Clone)]
pub struct Frame {
    pub command: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = &self.body[..self.body.len().min(300)];
        write!(
            f,
            "{} {:?} body({} bytes)={:?}",
            self.command,
            self.headers,
            self.body.len(),
            String::from_utf8_lossy(shown)
        )
    }
}

impl Frame {
    /// First value of a header (STOMP 1.2: repeated headers keep the first).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A header that must be there.
    pub fn h(&self, name: &str) -> &str {
        self.get(name)
            .unwrap_or_else(|| panic!("no {name:?} header in {self:?}"))
    }

    pub fn count(&self, name: &str) -> usize {
        self.headers.iter().filter(|(k, _)| k == name).count()
    }

    /// The body, which must be UTF-8.
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap_or_else(|_| panic!("UTF-8 body: {self:?}"))
    }
}

pub fn trim_cr(l: &[u8]) -> &[u8] {
    l.strip_suffix(b"\r").unwrap_or(l)
}

/// One frame from the start of `buf` (no leading EOLs), or None if incomplete. Headers are
/// unescaped as `esc` says, except CONNECTED's (never escaped). Only server commands are
/// accepted.
pub fn parse_frame(buf: &[u8], esc: Esc) -> Option<(Frame, usize)> {
    let nl = buf.iter().position(|&b| b == b'\n')?;
    let command = String::from_utf8(trim_cr(&buf[..nl]).to_vec()).expect("UTF-8 command");
    assert!(
        matches!(
            command.as_str(),
            "CONNECTED" | "MESSAGE" | "RECEIPT" | "ERROR"
        ),
        "server sent a non-server command {command:?}: {:?}",
        String::from_utf8_lossy(&buf[..buf.len().min(300)])
    );
    let esc = if command == "CONNECTED" {
        Esc::None
    } else {
        esc
    };
    let mut pos = nl + 1;
    let mut headers = Vec::new();
    loop {
        let rel = buf[pos..].iter().position(|&b| b == b'\n')?;
        let line = trim_cr(&buf[pos..pos + rel]);
        pos += rel + 1;
        if line.is_empty() {
            break;
        }
        let s = std::str::from_utf8(line).expect("UTF-8 header line");
        let (k, v) = s
            .split_once(':')
            .unwrap_or_else(|| panic!("header line without colon: {s:?}"));
        headers.push(if esc == Esc::None {
            (k.to_string(), v.to_string())
        } else {
            (unesc(k, esc), unesc(v, esc))
        });
    }
    let len = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map(|(_, v)| {
            v.parse::<usize>()
                .unwrap_or_else(|_| panic!("bad content-length {v:?}"))
        });
    let (body, used) = match len {
        Some(n) => {
            if buf.len() < pos + n + 1 {
                return None;
            }
            assert_eq!(buf[pos + n], 0, "{command}: body not followed by NUL");
            (buf[pos..pos + n].to_vec(), pos + n + 1)
        }
        None => {
            let z = buf[pos..].iter().position(|&b| b == 0)?;
            (buf[pos..pos + z].to_vec(), pos + z + 1)
        }
    };
    Some((
        Frame {
            command,
            headers,
            body,
        },
        used,
    ))
}

// ---------------------------------------------------------------------------------------------
// Sockets.

/// Read and write timeouts of [`TIMEOUT`], no Nagle.
pub fn tcp_stream(s: TcpStream) -> TcpStream {
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.set_write_timeout(Some(TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// A TCP connection set up by [`tcp_stream`].
pub fn connect_to(addr: SocketAddr) -> TcpStream {
    tcp_stream(
        TcpStream::connect_timeout(&addr, TIMEOUT)
            .unwrap_or_else(|e| panic!("connect {addr}: {e}")),
    )
}

/// A WebSocket upgrade on `/ws` with subprotocol `v12.stomp` over `s`; the server must answer
/// 101 and choose `v12.stomp`.
pub fn ws_upgrade(s: TcpStream, addr: SocketAddr) -> Ws {
    let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("v12.stomp"),
    );
    let (ws, resp) = match tungstenite::client(req, s) {
        Ok(x) => x,
        Err(e) => panic!("WebSocket handshake with {addr} failed: {e}"),
    };
    assert_eq!(resp.status(), 101);
    assert_eq!(
        resp.headers()
            .get("Sec-WebSocket-Protocol")
            .map(|v| v.as_bytes()),
        Some(&b"v12.stomp"[..])
    );
    ws
}

/// A WebSocket client socket on `addr`'s `/ws` ([`connect_to`] then [`ws_upgrade`]).
pub fn ws_socket(addr: SocketAddr) -> Ws {
    ws_upgrade(connect_to(addr), addr)
}

// ---------------------------------------------------------------------------------------------
// The client.

pub enum Io {
    Tcp(TcpStream),
    Ws(Box<Ws>),
}

/// Why reading stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// Clean EOF (for WebSocket: after the close handshake, or reading on after it).
    Eof,
    /// TCP reset.
    Reset,
    /// A WebSocket Close frame with this code.
    Close(Option<u16>),
    /// EOF on WebSocket without a Close frame.
    WsNoClose,
    /// Any other WebSocket protocol error.
    Protocol(String),
    /// The socket's read timeout passed with nothing read.
    Timeout,
    /// Any other read error.
    Other(String),
}

pub struct Client {
    pub io: Io,
    /// Bytes read and not yet parsed.
    pub buf: Vec<u8>,
    /// How headers are escaped (from the negotiated version).
    pub esc: Esc,
    /// EOL heart-beats seen between frames.
    pub eols: usize,
    /// Frames read ahead while waiting for something else, handed out first, in arrival order.
    pub pending: VecDeque<Frame>,
    pub session: String,
    pub version: String,
    /// Receipt ids handed out by [`Client::next_receipt_id`].
    pub receipts: u64,
    /// Polling socket (see [`Client::polling`]).
    polls: bool,
}

impl Client {
    /// A client on a transport; no STOMP frame sent yet, 1.2 escaping until told otherwise.
    pub fn new(io: Io) -> Client {
        Client {
            io,
            buf: Vec::new(),
            esc: Esc::V12,
            eols: 0,
            pending: VecDeque::new(),
            session: String::new(),
            version: String::new(),
            receipts: 0,
            polls: false,
        }
    }

    /// Over a TCP socket (set up by [`tcp_stream`] here).
    pub fn from_tcp(s: TcpStream) -> Client {
        Client::new(Io::Tcp(tcp_stream(s)))
    }

    /// A WebSocket upgrade over `s` to `addr`.
    pub fn from_ws(s: TcpStream, addr: SocketAddr) -> Client {
        Client::new(Io::Ws(Box::new(ws_upgrade(tcp_stream(s), addr))))
    }

    /// The transport only: TCP to `addr`.
    pub fn connect_tcp(addr: SocketAddr) -> Client {
        Client::from_tcp(connect_to(addr))
    }

    /// The transport only: WebSocket to `addr`'s `/ws`.
    pub fn connect_ws(addr: SocketAddr) -> Client {
        Client::from_ws(connect_to(addr), addr)
    }

    /// The transport only, to the server's listener for `kind`.
    pub fn open(a: Addrs, kind: Kind) -> Client {
        match kind {
            Kind::Tcp => Client::connect_tcp(a.tcp),
            Kind::Ws => Client::connect_ws(a.ws),
        }
    }

    /// Make reads poll: the socket times out every [`POLL`], [`Client::next_within`] looks at
    /// its deadline in between, and [`Client::recv`] waits up to [`TIMEOUT`] for a frame in all
    /// (instead of up to [`TIMEOUT`] for each read).
    pub fn polling(mut self) -> Client {
        let s = match &self.io {
            Io::Tcp(s) => s,
            Io::Ws(w) => w.get_ref(),
        };
        s.set_read_timeout(Some(POLL)).unwrap();
        self.polls = true;
        self
    }

    /// Adopt a negotiated version: its header escaping.
    pub fn set_version(&mut self, v: &str) {
        self.version = v.to_string();
        self.esc = Esc::of_version(v);
    }

    pub fn kind(&self) -> Kind {
        match self.io {
            Io::Tcp(_) => Kind::Tcp,
            Io::Ws(_) => Kind::Ws,
        }
    }

    pub fn is_ws(&self) -> bool {
        self.kind() == Kind::Ws
    }

    pub fn ws(&mut self) -> &mut Ws {
        match &mut self.io {
            Io::Ws(w) => w,
            Io::Tcp(_) => panic!("not a WebSocket client"),
        }
    }

    pub fn tcp(&mut self) -> &mut TcpStream {
        match &mut self.io {
            Io::Tcp(s) => s,
            Io::Ws(_) => panic!("not a TCP client"),
        }
    }

    /// The TCP socket and what was read but not parsed yet.
    pub fn into_tcp(self) -> (TcpStream, Vec<u8>) {
        match self.io {
            Io::Tcp(s) => (s, self.buf),
            Io::Ws(_) => panic!("not a TCP client"),
        }
    }

    /// Raw bytes: as they are on TCP; one WebSocket message (text when UTF-8) on WebSocket.
    pub fn try_send(&mut self, b: &[u8]) -> Result<(), String> {
        match &mut self.io {
            Io::Tcp(s) => s.write_all(b).map_err(|e| format!("TCP write: {e}")),
            Io::Ws(w) => {
                let m = match std::str::from_utf8(b) {
                    Ok(s) => Message::text(s),
                    Err(_) => Message::binary(b.to_vec()),
                };
                w.send(m).map_err(|e| format!("WebSocket send: {e}"))
            }
        }
    }

    pub fn send(&mut self, b: &[u8]) {
        if let Err(e) = self.try_send(b) {
            panic!("send failed: {e}");
        }
    }

    /// [`frame`] (headers as given, no content-length added), sent.
    pub fn send_frame(&mut self, cmd: &str, headers: &[(&str, &str)], body: &[u8]) {
        self.send(&frame(cmd, headers, body));
    }

    /// A fresh receipt id.
    pub fn next_receipt_id(&mut self) -> String {
        self.receipts += 1;
        format!("r{}", self.receipts)
    }

    /// One read into the buffer: Ok when bytes arrived, else why not (never panics).
    pub fn fill(&mut self) -> Result<(), End> {
        match &mut self.io {
            Io::Tcp(s) => {
                let mut tmp = vec![0u8; 65536];
                loop {
                    return match s.read(&mut tmp) {
                        Ok(0) => Err(End::Eof),
                        Ok(n) => {
                            self.buf.extend_from_slice(&tmp[..n]);
                            Ok(())
                        }
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(e) if e.kind() == ErrorKind::ConnectionReset => Err(End::Reset),
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                        {
                            Err(End::Timeout)
                        }
                        Err(e) => Err(End::Other(e.to_string())),
                    };
                }
            }
            Io::Ws(w) => loop {
                return match w.read() {
                    Ok(Message::Text(t)) => {
                        self.buf.extend_from_slice(t.as_bytes());
                        Ok(())
                    }
                    Ok(Message::Binary(b)) => {
                        self.buf.extend_from_slice(&b);
                        Ok(())
                    }
                    Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => continue,
                    Ok(Message::Close(cf)) => Err(End::Close(cf.map(|c| u16::from(c.code)))),
                    Err(
                        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed,
                    ) => Err(End::Eof),
                    Err(tungstenite::Error::Protocol(
                        tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                    )) => Err(End::WsNoClose),
                    Err(tungstenite::Error::Protocol(e)) => Err(End::Protocol(e.to_string())),
                    Err(tungstenite::Error::Io(e))
                        if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                    {
                        Err(End::Timeout)
                    }
                    Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::ConnectionReset => {
                        Err(End::Reset)
                    }
                    Err(e) => Err(End::Other(e.to_string())),
                };
            },
        }
    }

    /// A complete frame from the buffer, after skipping (and counting) EOL heart-beats: `\n`
    /// or `\r\n`.
    pub fn take_frame(&mut self) -> Option<Frame> {
        let mut skip = 0;
        loop {
            match &self.buf[skip..] {
                [b'\n', ..] => skip += 1,
                [b'\r', b'\n', ..] => skip += 2,
                _ => break,
            }
            self.eols += 1;
        }
        self.buf.drain(..skip);
        let (f, used) = parse_frame(&self.buf, self.esc)?;
        self.buf.drain(..used);
        Some(f)
    }

    /// The next frame (a read-ahead one first), or why the connection ended; a read that times
    /// out ends the wait with [`End::Timeout`].
    pub fn next_frame(&mut self) -> Result<Frame, End> {
        if let Some(f) = self.pending.pop_front() {
            return Ok(f);
        }
        loop {
            if let Some(f) = self.take_frame() {
                return Ok(f);
            }
            self.fill()?;
        }
    }

    /// The next frame within `within` (None if none came), or why the connection ended. Read
    /// timeouts only make it look at the clock.
    pub fn next_within(&mut self, within: Duration) -> Result<Option<Frame>, End> {
        if let Some(f) = self.pending.pop_front() {
            return Ok(Some(f));
        }
        let deadline = Instant::now() + within;
        loop {
            if let Some(f) = self.take_frame() {
                return Ok(Some(f));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            match self.fill() {
                Ok(()) | Err(End::Timeout) => {}
                Err(e) => return Err(e),
            }
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "{:?} client {} (buffered {:?})",
            self.kind(),
            self.session,
            String::from_utf8_lossy(&self.buf[..self.buf.len().min(300)])
        )
    }

    /// The next frame; the connection ending, or no frame within [`TIMEOUT`], fails the test.
    pub fn recv(&mut self) -> Frame {
        let got = if self.polls {
            self.next_within(TIMEOUT)
        } else {
            self.next_frame().map(Some)
        };
        match got {
            Ok(Some(f)) => f,
            Ok(None) => panic!("no frame within {TIMEOUT:?}: {}", self.describe()),
            Err(e) => panic!(
                "connection ended ({e:?}) while waiting for a frame: {}",
                self.describe()
            ),
        }
    }

    pub fn expect(&mut self, command: &str) -> Frame {
        let f = self.recv();
        assert_eq!(f.command, command, "{}: {f:?}", self.describe());
        f
    }

    pub fn msg(&mut self) -> Frame {
        self.expect("MESSAGE")
    }

    pub fn expect_receipt(&mut self, id: &str) {
        let f = self.expect("RECEIPT");
        assert_eq!(f.h("receipt-id"), id, "{f:?}");
    }

    /// Send CONNECT/STOMP bytes and expect CONNECTED (nothing adopted from it).
    pub fn connected(&mut self, connect: &[u8]) -> Frame {
        self.send(connect);
        self.expect("CONNECTED")
    }
}
