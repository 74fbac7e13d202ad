//! TLS (rustls) between a connection's socket and its plaintext buffers, without blocking:
//! handshakes and records are processed as bytes arrive, on the reactor.

use std::io::{self, Read, Write};

use mio::net::TcpStream;
use rustls::ServerConnection;

pub use crate::config::TlsConfig;

/// Plaintext bytes moved into rustls per flush pass before its records go to the socket: keeps
/// rustls's buffer small while the outbound queue holds the backlog.
const CHUNK: usize = 64 * 1024;

/// Read plaintext into `buf`: `Ok(0)` is the end of the stream (close_notify, or the peer
/// closed), `WouldBlock` means wait for readiness.
pub fn read(tls: &mut ServerConnection, sock: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match tls.reader().read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            // The peer closed without close_notify: treat as the end of the stream.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
            Err(e) => return Err(e),
        }
        match tls.read_tls(sock) {
            Ok(0) => return Ok(0),
            Ok(_) => {}
            Err(e) => return Err(e),
        }
        if let Err(e) = tls.process_new_packets() {
            // Best effort: send the alert rustls queued, then fail the connection.
            let _ = tls.write_tls(sock);
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
    }
}

/// Accepts at most `left` bytes, then says WouldBlock (and never returns `Ok(0)`).
struct Limited<'a> {
    inner: rustls::Writer<'a>,
    left: usize,
}

impl Write for Limited<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let take = buf.len().min(self.left);
        match self.inner.write(buf.get(..take).unwrap_or_default()) {
            Ok(0) if take > 0 => Err(io::ErrorKind::WouldBlock.into()),
            Ok(n) => {
                self.left -= n;
                Ok(n)
            }
            Err(e) => Err(e),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Move queued plaintext through rustls to the socket. `Ok(false)`: the socket would block
/// (wait for writable); `Ok(true)`: nothing more can go now (all out, or the handshake is
/// still running and the rest goes once it completes).
pub fn flush(
    tls: &mut ServerConnection,
    sock: &mut TcpStream,
    out: &mut super::outq::OutQueue,
    pool: &mut super::buf::BufPool,
    written: &mut u64,
) -> io::Result<bool> {
    loop {
        if tls.wants_write() {
            match tls.write_tls(sock) {
                Ok(n) => *written += n as u64,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            continue;
        }
        if out.is_empty() || tls.is_handshaking() {
            return Ok(true);
        }
        let mut w = Limited {
            inner: tls.writer(),
            left: CHUNK,
        };
        out.write_to(&mut w, pool)?;
    }
}
