//! The fuzzer's client side of one connection: STOMP over raw TCP, or over a WebSocket
//! written by hand (masked frames, messages cut at random points, sometimes fragmented), read
//! in random-size chunks through strict decoders: every server byte must be a well-formed
//! WebSocket frame (unmasked, RSV 0, control frames short and final, text UTF-8, nothing after
//! a Close) holding whole STOMP frames, parsed by the test client's own parser
//! (`common::stomp::parse_frame`, not stompbox's). A decoding problem is an `Err(String)` the
//! driver reports as a broken invariant.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::common::stomp::{parse_frame, Esc, Frame};
use crate::common::{masked, raw_frame, zlib};

use super::Rng;

/// What reading produced.
#[derive(Debug)]
pub enum Ev {
    Frame(Frame),
    /// An EOL heart-beat between frames.
    Eol,
    /// A WebSocket Close frame (code).
    WsClose(Option<u16>),
    /// The stream ended: `reset` if by RST; `partial` if bytes of an unfinished frame were
    /// buffered then.
    End {
        reset: bool,
        partial: bool,
    },
}

/// permessage-deflate on a session (zlib as a browser uses it): what the session sends is
/// compressed on its own, message by message; what it receives is inflated with one window kept
/// for the session (valid whatever the server announced).
pub struct Zip {
    inflate: flate2::Decompress,
    deflate: flate2::Compress,
}

pub struct Conn {
    pub ws: bool,
    /// permessage-deflate agreed.
    zip: Option<Box<Zip>>,
    /// The message being assembled is compressed (its first frame had RSV1).
    msg_compressed: bool,
    s: TcpStream,
    /// Bytes read but not decoded yet (read while a write was blocked).
    raw: Vec<u8>,
    /// WebSocket bytes not yet a whole frame.
    wbuf: Vec<u8>,
    /// The WebSocket message being assembled: (text, payload).
    msg: Option<(bool, Vec<u8>)>,
    /// STOMP bytes not yet a whole frame.
    sbuf: Vec<u8>,
    pub esc: Esc,
    pub ended: bool,
    pub close_seen: bool,
    /// Bytes received in all.
    pub received: usize,
}

fn io_err(e: std::io::Error) -> String {
    e.to_string()
}

impl Conn {
    /// Connect (small receive buffer, so a client that stops reading backs the server up
    /// quickly) and, for WebSocket, upgrade on `/ws`.
    pub fn open(addr: SocketAddr, ws: bool, deflate: bool) -> Result<Conn, String> {
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .map_err(io_err)?;
        sock.set_recv_buffer_size(32 * 1024).map_err(io_err)?;
        sock.connect_timeout(&addr.into(), Duration::from_secs(2))
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let s: TcpStream = sock.into();
        s.set_nodelay(true).map_err(io_err)?;
        let mut c = Conn {
            ws,
            zip: None,
            msg_compressed: false,
            s,
            raw: Vec::new(),
            wbuf: Vec::new(),
            msg: None,
            sbuf: Vec::new(),
            esc: Esc::V12,
            ended: false,
            close_seen: false,
            received: 0,
        };
        if ws {
            c.s.set_read_timeout(Some(Duration::from_secs(2)))
                .map_err(io_err)?;
            let offer = if deflate {
                "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
            } else {
                ""
            };
            let req = crate::common::upgrade_request(
                "/ws",
                &format!("Sec-WebSocket-Protocol: v12.stomp, v11.stomp, v10.stomp\r\n{offer}"),
            );
            c.s.write_all(req.as_bytes()).map_err(io_err)?;
            let mut head = Vec::new();
            let mut tmp = [0u8; 1024];
            let end = loop {
                if let Some(p) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                    break p + 4;
                }
                let n = c.s.read(&mut tmp).map_err(|e| format!("upgrade: {e}"))?;
                if n == 0 {
                    return Err("upgrade: connection ended".into());
                }
                head.extend_from_slice(&tmp[..n]);
            };
            let text = String::from_utf8_lossy(&head[..end]).into_owned();
            if !text.starts_with("HTTP/1.1 101 ") || !text.contains("v12.stomp") {
                return Err(format!("upgrade refused: {text:?}"));
            }
            if text.contains("permessage-deflate") != deflate {
                return Err(format!(
                    "permessage-deflate offered: {deflate}, answer: {text:?}"
                ));
            }
            if deflate {
                c.zip = Some(Box::new(Zip {
                    inflate: flate2::Decompress::new_with_window_bits(false, 15),
                    deflate: flate2::Compress::new(flate2::Compression::fast(), false),
                }));
            }
            c.raw.extend_from_slice(&head[end..]);
        }
        c.s.set_nonblocking(true).map_err(io_err)?;
        Ok(c)
    }

    /// Close abruptly (no DISCONNECT, no WebSocket Close).
    pub fn kill(&mut self) {
        let _ = self.s.shutdown(Shutdown::Both);
        self.ended = true;
    }

    /// The bytes a write of `stomp` puts on the wire: as is on TCP; on WebSocket one or more
    /// masked messages (cut at random points when `split`), some fragmented.
    fn encode(&mut self, stomp: &[u8], split: bool, rng: &mut Rng) -> Vec<u8> {
        if !self.ws {
            return stomp.to_vec();
        }
        let mut out = Vec::new();
        for part in cut(stomp, split, rng) {
            let op = if std::str::from_utf8(part).is_ok() {
                1
            } else {
                2
            };
            // With permessage-deflate, most messages go compressed (RSV1 on the first frame).
            if let Some(z) = self.zip.as_mut().filter(|_| rng.below(4) != 0) {
                // Each message on its own, as a client without context takeover sends it.
                z.deflate.reset();
                let data = zlib::compress(&mut z.deflate, part);
                if split && data.len() > 1 && rng.below(3) == 0 {
                    let k = 1 + rng.below(data.len() as u64 - 1) as usize;
                    out.extend(raw_frame(0x40 | op, &data[..k], Some([7, 8, 9, 10])));
                    out.extend(masked(true, 0, &data[k..]));
                } else {
                    out.extend(raw_frame(0xC0 | op, &data, Some([7, 8, 9, 10])));
                }
                continue;
            }
            if split && part.len() > 1 && rng.below(3) == 0 {
                let k = 1 + rng.below(part.len() as u64 - 1) as usize;
                out.extend(masked(false, op, &part[..k]));
                out.extend(masked(true, 0, &part[k..]));
            } else {
                out.extend(masked(true, op, part));
            }
        }
        out
    }

    /// Raw WebSocket bytes (or TCP bytes) as given.
    pub fn write_raw(&mut self, bytes: &[u8], deadline: Instant) -> Result<(), String> {
        self.write_bytes(bytes, false, true, deadline, &mut Rng(1))
    }

    /// Write STOMP bytes, cut into random TCP writes when `split`. While the socket is full
    /// and `reading`, what arrives is kept for [`Conn::read`] (the server may stop reading us
    /// until we read it). `Err("timeout")` when the deadline passes.
    pub fn write(
        &mut self,
        stomp: &[u8],
        split: bool,
        reading: bool,
        deadline: Instant,
        rng: &mut Rng,
    ) -> Result<(), String> {
        let wire = self.encode(stomp, split, rng);
        self.write_bytes(&wire, split, reading, deadline, rng)
    }

    fn write_bytes(
        &mut self,
        wire: &[u8],
        split: bool,
        reading: bool,
        deadline: Instant,
        rng: &mut Rng,
    ) -> Result<(), String> {
        if self.ended {
            return Err("closed".into());
        }
        for part in cut(wire, split, rng) {
            let mut off = 0;
            while off < part.len() {
                match self.s.write(&part[off..]) {
                    Ok(n) => off += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        if Instant::now() >= deadline {
                            return Err("timeout".into());
                        }
                        if reading {
                            self.stash_input();
                        }
                        std::thread::sleep(Duration::from_micros(300));
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
        }
        Ok(())
    }

    /// Keep what can be read now (a blocked write must not deadlock against a server that
    /// waits for us to read).
    fn stash_input(&mut self) {
        let mut tmp = [0u8; 16384];
        if let Ok(n) = self.s.read(&mut tmp) {
            self.raw.extend_from_slice(&tmp[..n]);
        }
    }

    /// Read what is there (up to `budget` bytes, in chunks of random size) and decode it.
    pub fn read(&mut self, rng: &mut Rng, budget: usize, ev: &mut Vec<Ev>) -> Result<(), String> {
        if self.ended {
            return Ok(());
        }
        let stashed = std::mem::take(&mut self.raw);
        if !stashed.is_empty() {
            self.decode(&stashed, ev)?;
        }
        let mut tmp = vec![0u8; 65536];
        let mut got = 0;
        while got < budget && !self.ended {
            let max = if rng.below(4) == 0 { 16 } else { 65535 };
            let chunk = 1 + rng.below(max) as usize;
            match self.s.read(&mut tmp[..chunk]) {
                Ok(0) => self.end(false, ev),
                Ok(n) => {
                    got += n;
                    let data = tmp[..n].to_vec();
                    self.decode(&data, ev)?;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => self.end(true, ev),
                Err(e) => return Err(format!("read: {e}")),
            }
        }
        Ok(())
    }

    fn end(&mut self, reset: bool, ev: &mut Vec<Ev>) {
        self.ended = true;
        let partial = !self.wbuf.is_empty() || self.msg.is_some() || !self.sbuf.is_empty();
        ev.push(Ev::End { reset, partial });
    }

    fn decode(&mut self, data: &[u8], ev: &mut Vec<Ev>) -> Result<(), String> {
        self.received += data.len();
        if !self.ws {
            self.sbuf.extend_from_slice(data);
            return self.stomp(ev);
        }
        self.wbuf.extend_from_slice(data);
        loop {
            let b = &self.wbuf;
            if b.len() < 2 {
                return Ok(());
            }
            let (b0, b1) = (b[0], b[1]);
            if b1 & 0x80 != 0 {
                return Err("server sent a masked WebSocket frame".into());
            }
            // RSV1 only with permessage-deflate, on the first frame of a data message.
            let rsv1_ok = self.zip.is_some() && matches!(b0 & 0x0f, 1 | 2);
            if b0 & 0x30 != 0 || (b0 & 0x40 != 0 && !rsv1_ok) {
                return Err(format!("server frame with RSV bits set: {b0:#x}"));
            }
            let (len, hl) = match b1 & 0x7f {
                126 if b.len() >= 4 => (usize::from(u16::from_be_bytes([b[2], b[3]])), 4),
                127 if b.len() >= 10 => {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(&b[2..10]);
                    (u64::from_be_bytes(a) as usize, 10)
                }
                126 | 127 => return Ok(()),
                n => (usize::from(n), 2),
            };
            if (hl == 4 && len < 126) || (hl == 10 && len <= 0xffff) {
                return Err(format!("non-minimal WebSocket length {len} in {hl} bytes"));
            }
            if b.len() < hl + len {
                return Ok(());
            }
            let payload = b[hl..hl + len].to_vec();
            self.wbuf.drain(..hl + len);
            if self.close_seen {
                return Err(format!("WebSocket frame after Close: {b0:#x}"));
            }
            let (fin, op) = (b0 & 0x80 != 0, b0 & 0x0f);
            match op {
                8..=10 => {
                    if !fin || len > 125 {
                        return Err(format!("bad control frame op {op} len {len}"));
                    }
                    if op == 8 {
                        if len == 1 {
                            return Err("Close frame with a 1-byte payload".into());
                        }
                        if std::str::from_utf8(payload.get(2..).unwrap_or_default()).is_err() {
                            return Err("Close reason not UTF-8".into());
                        }
                        self.close_seen = true;
                        if self.msg.is_some() || !self.sbuf.is_empty() {
                            return Err("Close in the middle of a message".into());
                        }
                        let code = (len >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                        ev.push(Ev::WsClose(code));
                        // Answer like a client does; the server then closes the TCP stream.
                        let close = masked(true, 8, payload.get(..2).unwrap_or_default());
                        let _ = self.s.write(&close);
                    } else if op == 9 {
                        let _ = self.s.write(&masked(true, 10, &payload));
                    }
                }
                0 => match &mut self.msg {
                    Some((_, m)) => m.extend_from_slice(&payload),
                    None => return Err("continuation frame without a message".into()),
                },
                1 | 2 => {
                    if self.msg.is_some() {
                        return Err("new data frame inside a fragmented message".into());
                    }
                    self.msg = Some((op == 1, payload));
                    self.msg_compressed = b0 & 0x40 != 0;
                }
                _ => return Err(format!("reserved opcode {op}")),
            }
            if fin && op < 8 {
                if let Some((text, mut m)) = self.msg.take() {
                    if std::mem::take(&mut self.msg_compressed) {
                        let z = self.zip.as_mut().ok_or("RSV1 without deflate")?;
                        m = zlib::inflate(&mut z.inflate, &m)
                            .map_err(|e| format!("server's {e}"))?;
                    }
                    if text && std::str::from_utf8(&m).is_err() {
                        return Err("text message is not UTF-8".into());
                    }
                    self.sbuf.extend_from_slice(&m);
                    self.stomp(ev)?;
                    if !self.sbuf.is_empty() {
                        return Err(format!(
                            "WebSocket message ends inside a STOMP frame: {:?}",
                            String::from_utf8_lossy(&self.sbuf[..self.sbuf.len().min(200)])
                        ));
                    }
                }
            }
        }
    }

    fn stomp(&mut self, ev: &mut Vec<Ev>) -> Result<(), String> {
        loop {
            let mut skip = 0;
            loop {
                match &self.sbuf[skip..] {
                    [b'\n', ..] => skip += 1,
                    [b'\r', b'\n', ..] => skip += 2,
                    _ => break,
                }
                ev.push(Ev::Eol);
            }
            self.sbuf.drain(..skip);
            if self.sbuf.is_empty() {
                return Ok(());
            }
            let esc = self.esc;
            let buf = std::mem::take(&mut self.sbuf);
            let parsed = std::panic::catch_unwind(|| parse_frame(&buf, esc))
                .map_err(|p| format!("malformed STOMP from the server: {}", panic_text(&p)))?;
            match parsed {
                Some((f, used)) => {
                    self.sbuf = buf;
                    self.sbuf.drain(..used);
                    ev.push(Ev::Frame(f));
                }
                None => {
                    self.sbuf = buf;
                    return Ok(());
                }
            }
        }
    }
}

pub fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into())
}

/// `b` in one piece, or cut at 1-4 random points.
fn cut<'a>(b: &'a [u8], split: bool, rng: &mut Rng) -> Vec<&'a [u8]> {
    if !split || b.len() < 2 {
        return vec![b];
    }
    let mut points: Vec<usize> = (0..1 + rng.below(4))
        .map(|_| 1 + rng.below(b.len() as u64 - 1) as usize)
        .collect();
    points.sort_unstable();
    points.dedup();
    let mut out = Vec::new();
    let mut at = 0;
    for p in points {
        out.push(&b[at..p]);
        at = p;
    }
    out.push(&b[at..]);
    out
}

/// An unmasked client frame: a WebSocket protocol error the server must answer with a Close.
pub fn unmasked_frame() -> Vec<u8> {
    raw_frame(0x81, b"SEND\n\n\0", None)
}

/// One admin API call (bearer token, `Connection: close`, as in `tests/admin.rs`): the status
/// and the JSON body. `Err` if the API did not answer within 5 s or not in HTTP with JSON.
pub fn admin_call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, serde_json::Value), String> {
    let err = |e: std::io::Error| format!("{method} {path}: {e}");
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(err)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(err)?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        super::ADMIN_TOKEN,
        body.len()
    );
    s.write_all(req.as_bytes()).map_err(err)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(err)?;
    let text = String::from_utf8_lossy(&raw);
    let parsed = text.split_once("\r\n\r\n").and_then(|(head, body)| {
        let status = head.split(' ').nth(1)?.parse().ok()?;
        Some((status, serde_json::from_str(body).ok()?))
    });
    parsed.ok_or_else(|| format!("{method} {path}: not an HTTP answer with JSON: {text:?}"))
}

/// `s` percent-encoded for a query value.
pub fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
