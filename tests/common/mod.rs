//! Shared helpers for the integration tests: a server on 127.0.0.1:0 and a raw-socket client
//! that writes hand-made frames and reads the server's frames with its own small parser
//! (deliberately not stompbox's decoder).
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod stomp;
pub mod zlib;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use stompbox::{Config, ServerHandle};

/// A server's configuration for tests: both listeners on 127.0.0.1:0, two reactors, short
/// close and shutdown timeouts.
pub fn test_config() -> Config {
    Config {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        tcp_listen: Some("127.0.0.1:0".parse().unwrap()),
        reactors: 2,
        // Short: tests end sessions and servers all the time, and a client that does not
        // answer a close costs the whole timeout (the timeouts themselves have their own tests).
        close_timeout: Duration::from_millis(250),
        shutdown_timeout: Duration::from_millis(500),
        ..Config::default()
    }
}

pub fn server_with(f: impl FnOnce(&mut Config)) -> (ServerHandle, SocketAddr) {
    let mut cfg = Config {
        echo: true,
        ..test_config()
    };
    f(&mut cfg);
    let h = stompbox::start(cfg).expect("server starts");
    let addr = h.ws_addr().expect("ws addr");
    (h, addr)
}

pub fn echo_server() -> (ServerHandle, SocketAddr) {
    server_with(|_| {})
}

pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

pub fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

pub struct Raw {
    pub s: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_nodelay(true).unwrap();
        Raw { s, buf: Vec::new() }
    }

    /// Connect and complete an upgrade to `path`; panics unless the answer is 101.
    pub fn open(addr: SocketAddr, path: &str) -> Raw {
        let mut r = Raw::connect(addr);
        r.send(upgrade_request(path, "").as_bytes());
        let head = r.read_http_head();
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        assert!(head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        r
    }

    pub fn send(&mut self, b: &[u8]) {
        self.s.write_all(b).unwrap();
    }

    fn fill(&mut self) -> bool {
        let mut tmp = [0u8; 65536];
        match self.s.read(&mut tmp) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                true
            }
        }
    }

    /// Read an HTTP response head (up to the blank line); the body, if any, stays buffered.
    pub fn read_http_head(&mut self) -> String {
        loop {
            if let Some(p) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..p + 4]).into_owned();
                self.buf.drain(..p + 4);
                return head;
            }
            assert!(self.fill(), "connection ended before the HTTP head");
        }
    }

    /// Read the whole response (until EOF).
    pub fn read_to_end(&mut self) -> String {
        while self.fill() {}
        String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned()
    }

    /// Next frame from the server: (fin, opcode, payload). None on EOF.
    pub fn frame(&mut self) -> Option<(bool, u8, Vec<u8>)> {
        self.frame_b0()
            .map(|(b0, payload)| (b0 & 0x80 != 0, b0 & 0x0f, payload))
    }

    /// Next frame from the server: its first byte (FIN, RSV bits, opcode) and payload.
    pub fn frame_b0(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if self.buf.len() >= 2 {
                let b0 = self.buf[0];
                let b1 = self.buf[1];
                assert_eq!(b1 & 0x80, 0, "server frames are never masked");
                let (len, hl) = match b1 & 0x7f {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => {
                        let mut a = [0u8; 8];
                        a.copy_from_slice(&self.buf[2..10]);
                        (u64::from_be_bytes(a) as usize, 10)
                    }
                    126 | 127 => (usize::MAX, 0),
                    n => (n as usize, 2),
                };
                if len != usize::MAX && self.buf.len() >= hl + len {
                    let payload = self.buf[hl..hl + len].to_vec();
                    self.buf.drain(..hl + len);
                    return Some((b0, payload));
                }
            }
            if !self.fill() {
                return None;
            }
        }
    }

    /// Expect a Close frame with `code`, then EOF.
    pub fn expect_close(&mut self, code: u16) {
        let (_, op, payload) = self.frame().expect("a close frame");
        assert_eq!(op, 8, "expected close, got opcode {op} {payload:?}");
        assert!(payload.len() >= 2);
        assert_eq!(
            u16::from_be_bytes([payload[0], payload[1]]),
            code,
            "{payload:?}"
        );
        assert!(std::str::from_utf8(&payload[2..]).is_ok());
        // Answer like a client would, then the server must close the TCP connection.
        let _ = self.s.write_all(&masked(true, 8, &payload[..2]));
        assert!(self.frame().is_none(), "connection should end after close");
    }

    pub fn is_eof(&mut self) -> bool {
        self.buf.is_empty() && !self.fill()
    }
}

/// A masked client frame.
pub fn masked(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    raw_frame(
        if fin { 0x80 } else { 0 } | opcode,
        payload,
        Some([0x12, 0x34, 0x56, 0x78]),
    )
}

/// A frame with an arbitrary first byte (to set RSV bits or reserved opcodes).
pub fn raw_frame(b0: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut v = vec![b0];
    let m = if mask.is_some() { 0x80 } else { 0 };
    let len = payload.len();
    if len < 126 {
        v.push(m | len as u8);
    } else if len <= 65535 {
        v.push(m | 126);
        v.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        v.push(m | 127);
        v.extend_from_slice(&(len as u64).to_be_bytes());
    }
    match mask {
        Some(k) => {
            v.extend_from_slice(&k);
            v.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
        None => v.extend_from_slice(payload),
    }
    v
}
