//! The client side of the opening handshake (RFC 6455 §4.1): write the upgrade request, then
//! parse and check the server's answer. Sans-IO, like the server side: the caller owns the
//! buffers, the socket and the randomness (a key is made from 16 bytes it passes in;
//! [`random_nonce`] is there for callers without a random source of their own).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use super::handshake::{accept_key, Status};

/// Most headers looked at in one response.
const MAX_HEADERS: usize = 32;

/// What to ask for.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The `Host` header (`host` or `host:port`).
    pub host: &'a str,
    /// The request target, e.g. `/ws`.
    pub path: &'a str,
    /// Subprotocols offered, in the client's order of preference (may be empty).
    pub protocols: &'a [&'a str],
    /// `Sec-WebSocket-Extensions` offered (e.g. `permessage-deflate`), if any.
    pub extensions: Option<&'a str>,
}

/// The `Sec-WebSocket-Key` for a 16-byte nonce (§4.1: "a randomly selected 16-byte value that
/// has been base64-encoded").
pub fn encode_key(nonce: [u8; 16]) -> String {
    B64.encode(nonce)
}

/// 16 unpredictable bytes from the standard library's per-process random hash keys, mixed with
/// a counter so two calls never repeat. Good enough for a handshake nonce (RFC 6455 §10.3 only
/// needs it to be unpredictable to intermediaries), not for cryptography.
pub fn random_nonce() -> [u8; 16] {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut out = [0u8; 16];
    for (i, chunk) in out.chunks_exact_mut(8).enumerate() {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(n);
        h.write_usize(i);
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    out
}

/// Append the upgrade request (§4.1 items 1-12) for `key` (see [`encode_key`]).
pub fn write_request(out: &mut Vec<u8>, req: &Request<'_>, key: &str) {
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(req.path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(req.host.as_bytes());
    out.extend_from_slice(
        b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ",
    );
    out.extend_from_slice(key.as_bytes());
    if !req.protocols.is_empty() {
        out.extend_from_slice(b"\r\nSec-WebSocket-Protocol: ");
        for (i, p) in req.protocols.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(p.as_bytes());
        }
    }
    if let Some(e) = req.extensions {
        out.extend_from_slice(b"\r\nSec-WebSocket-Extensions: ");
        out.extend_from_slice(e.as_bytes());
    }
    out.extend_from_slice(b"\r\n\r\n");
}

/// A server's 101 that passed every check. The protocol borrows the response bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted<'a> {
    /// The subprotocol the server chose (one of those offered), if any.
    pub protocol: Option<&'a str>,
    /// permessage-deflate as the server agreed to it (only when the request offered it).
    pub deflate: Option<crate::ws::deflate::Agreed>,
    /// Bytes of the response; anything after them is already WebSocket frames.
    pub consumed: usize,
}

/// Why the handshake failed (§4.1: "the client MUST _Fail the WebSocket Connection_").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientError {
    /// Not an HTTP/1.1 response.
    Malformed,
    /// The response head is larger than the caller allows.
    TooLarge,
    /// A status other than 101 (e.g. 404, 503).
    Status(u16),
    /// No `Upgrade: websocket`.
    NoUpgrade,
    /// No `Connection: Upgrade`.
    NoConnection,
    /// `Sec-WebSocket-Accept` missing or not the value for our key.
    BadAccept,
    /// The server chose a subprotocol that was not offered, or chose one when none was.
    BadProtocol,
    /// The server answered with an extension we did not ask for.
    UnexpectedExtension,
}

impl ClientError {
    /// A short, stable label (for counting failures by cause).
    pub fn label(self) -> &'static str {
        match self {
            ClientError::Malformed => "malformed HTTP response",
            ClientError::TooLarge => "HTTP response too large",
            ClientError::Status(_) => "HTTP status other than 101",
            ClientError::NoUpgrade => "no Upgrade: websocket",
            ClientError::NoConnection => "no Connection: Upgrade",
            ClientError::BadAccept => "wrong Sec-WebSocket-Accept",
            ClientError::BadProtocol => "subprotocol not offered",
            ClientError::UnexpectedExtension => "extension not offered",
        }
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Status(s) => write!(f, "HTTP status {s} (expected 101)"),
            e => f.write_str(e.label()),
        }
    }
}

impl std::error::Error for ClientError {}

fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Parse the server's response to a request sent with `key` offering `offered`, from the start
/// of `buf`. `Partial` until the blank line has arrived (up to `max_bytes`).
pub fn parse_response<'a>(
    buf: &'a [u8],
    key: &str,
    offered: &[&str],
    max_bytes: usize,
) -> Result<Status<Accepted<'a>>, ClientError> {
    parse_response_with(buf, key, offered, false, max_bytes)
}

/// [`parse_response`] for a request that offered permessage-deflate (`deflate_offered`): the
/// server's answer, if any, must be one permessage-deflate response (RFC 7692 §5.1).
pub fn parse_response_with<'a>(
    buf: &'a [u8],
    key: &str,
    offered: &[&str],
    deflate_offered: bool,
    max_bytes: usize,
) -> Result<Status<Accepted<'a>>, ClientError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let consumed = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= max_bytes => {
            return Err(ClientError::TooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(Status::Partial),
        Err(_) => return Err(ClientError::Malformed),
    };
    if consumed > max_bytes {
        return Err(ClientError::TooLarge);
    }
    if resp.version != Some(1) {
        return Err(ClientError::Malformed);
    }
    match resp.code {
        Some(101) => {}
        Some(c) => return Err(ClientError::Status(c)),
        None => return Err(ClientError::Malformed),
    }
    let (mut upgrade, mut connection, mut accept, mut protocol) = (false, false, None, None);
    let mut deflate = None;
    for h in resp.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("upgrade") {
            upgrade |= has_token(h.value, "websocket");
        } else if name.eq_ignore_ascii_case("connection") {
            connection |= has_token(h.value, "upgrade");
        } else if name.eq_ignore_ascii_case("sec-websocket-accept") {
            accept.get_or_insert(h.value);
        } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
            if protocol.is_some() {
                // §4.1 item 6: a single value from the list we sent.
                return Err(ClientError::BadProtocol);
            }
            protocol = Some(h.value);
        } else if name.eq_ignore_ascii_case("sec-websocket-extensions")
            && !h.value.trim_ascii().is_empty()
        {
            // The server's response is itself a valid offer, and the server's parameters are
            // whatever it says: read them back as an offer to a server that allows anything.
            let v = std::str::from_utf8(h.value).map_err(|_| ClientError::UnexpectedExtension)?;
            let any = crate::ws::deflate::DeflateConfig {
                server_max_window_bits: 15,
                client_max_window_bits: 15,
                server_no_context_takeover: false,
                client_no_context_takeover: false,
            };
            match crate::ws::deflate::negotiate(&[v], &any) {
                Ok(Some(a)) if deflate_offered && deflate.is_none() => deflate = Some(a),
                _ => return Err(ClientError::UnexpectedExtension),
            }
        }
    }
    if !upgrade {
        return Err(ClientError::NoUpgrade);
    }
    if !connection {
        return Err(ClientError::NoConnection);
    }
    if accept.map(|a| a.trim_ascii()) != Some(accept_key(key).as_bytes()) {
        return Err(ClientError::BadAccept);
    }
    let protocol = match protocol {
        None => None,
        Some(p) => {
            let p = std::str::from_utf8(p.trim_ascii()).map_err(|_| ClientError::BadProtocol)?;
            if !offered.contains(&p) {
                return Err(ClientError::BadProtocol);
            }
            Some(p)
        }
    };
    Ok(Status::Complete(Accepted {
        protocol,
        deflate,
        consumed,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::super::handshake::{parse_request, write_accept, HandshakeConfig};
    use super::*;

    /// RFC 6455 §1.3's example key and accept value.
    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const OK: &str = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: v12.stomp\r\n\r\n";
    const OFFER: &[&str] = &["v12.stomp", "v11.stomp"];

    fn parse(resp: &str) -> Result<Status<Accepted<'_>>, ClientError> {
        parse_response(resp.as_bytes(), KEY, OFFER, 8192)
    }

    #[test]
    fn rfc_example_key_is_base64_of_the_sample_nonce() {
        assert_eq!(encode_key(*b"the sample nonce"), KEY);
    }

    #[test]
    fn nonces_differ() {
        let a = random_nonce();
        let b = random_nonce();
        assert_ne!(a, b);
        assert_eq!(B64.decode(encode_key(a)).unwrap().len(), 16);
    }

    #[test]
    fn request_is_accepted_by_our_server_side() {
        let mut out = Vec::new();
        let req = Request {
            host: "127.0.0.1:61614",
            path: "/ws",
            protocols: &["v10.stomp", "v12.stomp"],
            extensions: None,
        };
        write_request(&mut out, &req, KEY);
        let Ok(Status::Complete(u)) = parse_request(&out, &HandshakeConfig::default()) else {
            panic!("server side refused {:?}", String::from_utf8_lossy(&out))
        };
        assert_eq!((u.path, u.key, u.protocol), ("/ws", KEY, Some("v12.stomp")));
        assert_eq!(u.consumed, out.len());
        // And its answer passes the client's checks.
        let mut resp = Vec::new();
        write_accept(&mut resp, u.key, u.protocol, None);
        let Ok(Status::Complete(a)) = parse_response(&resp, KEY, req.protocols, 8192) else {
            panic!("client side refused")
        };
        assert_eq!(a.protocol, Some("v12.stomp"));
        assert_eq!(a.consumed, resp.len());
    }

    #[test]
    fn partial_at_every_split_then_complete() {
        for n in 0..OK.len() {
            assert_eq!(parse(&OK[..n]), Ok(Status::Partial), "prefix {n}");
        }
        let with_frame = format!("{OK}\u{81}\u{0}");
        let Ok(Status::Complete(a)) = parse(&with_frame) else {
            panic!()
        };
        assert_eq!(a.consumed, OK.len());
        assert_eq!(a.protocol, Some("v12.stomp"));
    }

    #[test]
    fn failures() {
        let cases: &[(String, ClientError)] = &[
            (
                OK.replace("101 Switching Protocols", "404 Not Found"),
                ClientError::Status(404),
            ),
            (OK.replace("HTTP/1.1", "HTTP/1.0"), ClientError::Malformed),
            (
                OK.replace("Upgrade: websocket\r\n", ""),
                ClientError::NoUpgrade,
            ),
            (
                OK.replace("Connection: Upgrade", "Connection: close"),
                ClientError::NoConnection,
            ),
            (
                OK.replace(
                    "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
                    "AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                ),
                ClientError::BadAccept,
            ),
            (
                OK.replace("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n", ""),
                ClientError::BadAccept,
            ),
            (
                OK.replace("v12.stomp", "v10.stomp"),
                ClientError::BadProtocol,
            ),
            (
                OK.replace(
                    "\r\n\r\n",
                    "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
                ),
                ClientError::UnexpectedExtension,
            ),
            ("SSH-2.0-OpenSSH\r\n\r\n".into(), ClientError::Malformed),
        ];
        for (resp, want) in cases {
            assert_eq!(parse(resp), Err(*want), "{resp:?}");
        }
        // Header names and tokens are case-insensitive; no subprotocol is fine when none chosen.
        let relaxed = OK
            .replace("Upgrade: websocket", "upgrade: WebSocket")
            .replace("Connection: Upgrade", "connection: keep-alive, upgrade")
            .replace("Sec-WebSocket-Protocol: v12.stomp\r\n", "");
        let Ok(Status::Complete(a)) = parse(&relaxed) else {
            panic!()
        };
        assert_eq!(a.protocol, None);
        let big = format!("HTTP/1.1 101 OK\r\nX: {}\r\n", "a".repeat(100));
        assert_eq!(
            parse_response(big.as_bytes(), KEY, OFFER, 64),
            Err(ClientError::TooLarge)
        );
    }
}
