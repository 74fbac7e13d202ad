//! The opening handshake (RFC 6455 §4.2): parse the client's HTTP/1.1 Upgrade request, and write
//! either the 101 response or a complete refusal.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use sha1::{Digest, Sha1};

/// §1.3: the GUID appended to the key.
pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Most headers we look at in one request.
const MAX_HEADERS: usize = 64;

/// What the server accepts.
#[derive(Debug, Clone)]
pub struct HandshakeConfig {
    /// Largest request (request line + headers), in bytes.
    pub max_request_bytes: usize,
    /// Subprotocols in the server's order of preference.
    pub protocols: Vec<String>,
    /// When set, a request whose `Origin` is not listed is refused with 403.
    pub allowed_origins: Option<Vec<String>>,
    /// permessage-deflate (RFC 7692) on offer; `None`: every extension is declined and the
    /// `Sec-WebSocket-Extensions` header is not even parsed.
    pub deflate: Option<super::deflate::DeflateConfig>,
}

impl Default for HandshakeConfig {
    fn default() -> Self {
        HandshakeConfig {
            max_request_bytes: 8 * 1024,
            protocols: vec!["v12.stomp".into(), "v11.stomp".into(), "v10.stomp".into()],
            allowed_origins: None,
            deflate: None,
        }
    }
}

/// A valid upgrade request. Strings borrow the request bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade<'a> {
    pub path: &'a str,
    pub key: &'a str,
    /// The subprotocol chosen (from the server's list), if the client offered one we speak.
    pub protocol: Option<&'a str>,
    /// permessage-deflate as agreed, when the server offers it and the client asked for it.
    pub deflate: Option<super::deflate::Agreed>,
    /// Bytes of the request; anything after them already belongs to the frame layer.
    pub consumed: usize,
}

/// A refused handshake: one HTTP response, then the connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: &'static str,
}

impl Refusal {
    fn new(status: u16, reason: &'static str) -> Self {
        Refusal { status, reason }
    }

    pub fn too_large() -> Self {
        Refusal::new(431, "request too large")
    }

    pub fn not_found() -> Self {
        Refusal::new(404, "no WebSocket endpoint at this path")
    }

    pub fn unavailable(reason: &'static str) -> Self {
        Refusal::new(503, reason)
    }

    /// Append the complete HTTP response.
    pub fn write(&self, out: &mut Vec<u8>) {
        let phrase = match self.status {
            400 => "Bad Request",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            426 => "Upgrade Required",
            431 => "Request Header Fields Too Large",
            503 => "Service Unavailable",
            _ => "Error",
        };
        let extra = match self.status {
            405 => "Allow: GET\r\n",
            426 => "Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n",
            _ => "",
        };
        let head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n{}\r\n{}\n",
            self.status,
            phrase,
            self.reason.len() + 1,
            extra,
            self.reason
        );
        out.extend_from_slice(head.as_bytes());
    }
}

/// The partial-input signal: a request may arrive over several reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status<T> {
    Complete(T),
    Partial,
}

/// `Sec-WebSocket-Accept` for a key (§4.2.2 step 5.4).
pub fn accept_key(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(GUID.as_bytes());
    B64.encode(h.finalize())
}

fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Parse an upgrade request from the start of `buf`.
pub fn parse_request<'a>(
    buf: &'a [u8],
    cfg: &HandshakeConfig,
) -> Result<Status<Upgrade<'a>>, Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let consumed = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() >= cfg.max_request_bytes {
                return Err(Refusal::new(431, "request too large"));
            }
            return Ok(Status::Partial);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(Refusal::new(431, "too many headers")),
        Err(_) => return Err(Refusal::new(400, "malformed HTTP request")),
    };
    if consumed > cfg.max_request_bytes {
        return Err(Refusal::new(431, "request too large"));
    }
    if req.method != Some("GET") {
        return Err(Refusal::new(405, "only GET can upgrade to WebSocket"));
    }
    if req.version != Some(1) {
        return Err(Refusal::new(400, "HTTP/1.1 or later required"));
    }
    let path = req.path.unwrap_or("/");
    let mut host = false;
    let mut upgrade = false;
    let mut connection = false;
    let mut version = None;
    let mut key = None;
    let mut origin = None;
    let mut offered: [Option<&'a [u8]>; 8] = [None; 8];
    let mut n_offered = 0;
    let mut extensions: [&'a str; 8] = [""; 8];
    let mut n_extensions = 0;
    let mut extensions_bad = false;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            host = true;
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade |= has_token(h.value, "websocket");
        } else if name.eq_ignore_ascii_case("connection") {
            connection |= has_token(h.value, "upgrade");
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            version.get_or_insert(h.value);
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            key.get_or_insert(h.value);
        } else if name.eq_ignore_ascii_case("origin") {
            origin.get_or_insert(h.value);
        } else if name.eq_ignore_ascii_case("sec-websocket-extensions") {
            match (
                extensions.get_mut(n_extensions),
                std::str::from_utf8(h.value),
            ) {
                (Some(slot), Ok(v)) => {
                    *slot = v;
                    n_extensions += 1;
                }
                _ => extensions_bad = true,
            }
        } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
            if let Some(slot) = offered.get_mut(n_offered) {
                *slot = Some(h.value);
                n_offered += 1;
            }
        }
    }
    if !host {
        return Err(Refusal::new(400, "Host header required"));
    }
    if !upgrade {
        return Err(Refusal::new(426, "Upgrade: websocket required"));
    }
    if !connection {
        return Err(Refusal::new(400, "Connection: Upgrade required"));
    }
    match version {
        Some(v) if v.trim_ascii() == b"13" => {}
        _ => return Err(Refusal::new(426, "Sec-WebSocket-Version: 13 required")),
    }
    let key = key
        .and_then(|k| std::str::from_utf8(k.trim_ascii()).ok())
        .filter(|k| matches!(B64.decode(k), Ok(raw) if raw.len() == 16))
        .ok_or(Refusal::new(
            400,
            "Sec-WebSocket-Key must be base64 of 16 bytes",
        ))?;
    if let Some(allowed) = &cfg.allowed_origins {
        if let Some(o) = origin {
            if !allowed.iter().any(|a| a.as_bytes() == o.trim_ascii()) {
                return Err(Refusal::new(403, "origin not allowed"));
            }
        }
    }
    let offers = offered.iter().take(n_offered).flatten();
    let protocol = cfg
        .protocols
        .iter()
        .find(|p| offers.clone().any(|v| has_token(v, p)))
        .and_then(|p| {
            // Return the client's spelling, borrowed from the request.
            offered.iter().take(n_offered).flatten().find_map(|v| {
                v.split(|b| *b == b',')
                    .map(|t| t.trim_ascii())
                    .find(|t| t.eq_ignore_ascii_case(p.as_bytes()))
                    .and_then(|t| std::str::from_utf8(t).ok())
            })
        });
    // RFC 7692 §5.1 / RFC 6455 §9.1: a malformed extension header fails the handshake.
    let deflate = match &cfg.deflate {
        None => None,
        Some(_) if extensions_bad => {
            return Err(Refusal::new(
                400,
                "Sec-WebSocket-Extensions: too many or not text",
            ))
        }
        Some(d) => super::deflate::negotiate(extensions.get(..n_extensions).unwrap_or_default(), d)
            .map_err(|m| Refusal::new(400, m.0))?,
    };
    Ok(Status::Complete(Upgrade {
        path,
        key,
        protocol,
        deflate,
        consumed,
    }))
}

/// The path of a complete GET request (for serving a plain HTTP file beside the endpoint).
pub fn request_path(buf: &[u8]) -> Option<&str> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(_)) if req.method == Some("GET") => {
            req.path.map(|p| p.split('?').next().unwrap_or(p))
        }
        _ => None,
    }
}

impl Upgrade<'_> {
    /// The endpoint the request names: its path without a query string (clients pass tokens
    /// as `/ws?access_token=...`) and without a trailing `/` (`/ws/` is `/ws`).
    pub fn endpoint(&self) -> &str {
        let path = self.path.split_once('?').map_or(self.path, |(p, _)| p);
        match path.strip_suffix('/') {
            Some(p) if !p.is_empty() => p,
            _ => path,
        }
    }
}

/// Append the `101 Switching Protocols` response.
pub fn write_accept(
    out: &mut Vec<u8>,
    key: &str,
    protocol: Option<&str>,
    extensions: Option<&str>,
) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    out.extend_from_slice(accept_key(key).as_bytes());
    if let Some(p) = protocol {
        out.extend_from_slice(b"\r\nSec-WebSocket-Protocol: ");
        out.extend_from_slice(p.as_bytes());
    }
    if let Some(e) = extensions {
        out.extend_from_slice(b"\r\nSec-WebSocket-Extensions: ");
        out.extend_from_slice(e.as_bytes());
    }
    out.extend_from_slice(b"\r\n\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n";

    fn parse(req: &str) -> Result<Status<Upgrade<'_>>, Refusal> {
        parse_request(req.as_bytes(), &HandshakeConfig::default())
    }

    fn status_of(req: &str) -> u16 {
        parse(req).unwrap_err().status
    }

    #[test]
    fn rfc_1_3_accept_key() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn rfc_example_request_parses_at_every_split() {
        for n in 0..GOOD.len() {
            assert_eq!(parse(&GOOD[..n]), Ok(Status::Partial), "prefix {n}");
        }
        let Ok(Status::Complete(u)) = parse(GOOD) else {
            panic!("complete")
        };
        assert_eq!(u.path, "/chat");
        assert_eq!(u.key, "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(u.protocol, None);
        assert_eq!(u.consumed, GOOD.len());
    }

    #[test]
    fn endpoint_drops_query_and_trailing_slash() {
        for (path, want) in [
            ("/ws", "/ws"),
            ("/ws/", "/ws"),
            ("/ws?access_token=abc", "/ws"),
            ("/ws/?a=1&b=/x", "/ws"),
            ("/", "/"),
            ("/?q", "/"),
            ("/a/b/", "/a/b"),
        ] {
            let req = GOOD.replacen("/chat", path, 1);
            let Ok(Status::Complete(u)) = parse(&req) else {
                panic!("{path}")
            };
            assert_eq!(u.endpoint(), want, "{path}");
        }
    }

    #[test]
    fn bytes_after_request_are_not_consumed() {
        let with_frame = format!("{GOOD}\u{81}");
        let Ok(Status::Complete(u)) = parse(&with_frame) else {
            panic!("complete")
        };
        assert_eq!(u.consumed, GOOD.len());
    }

    #[test]
    fn subprotocol_negotiation_uses_server_preference() {
        let req = GOOD.replace("chat, superchat", "v10.stomp, v12.stomp");
        let Ok(Status::Complete(u)) = parse(&req) else {
            panic!()
        };
        assert_eq!(u.protocol, Some("v12.stomp"));
        let req = GOOD.replace(
            "Sec-WebSocket-Protocol: chat, superchat\r\n",
            "Sec-WebSocket-Protocol: v10.stomp\r\nSec-WebSocket-Protocol: v11.stomp\r\n",
        );
        let Ok(Status::Complete(u)) = parse(&req) else {
            panic!()
        };
        assert_eq!(u.protocol, Some("v11.stomp"));
        let mut out = Vec::new();
        write_accept(&mut out, u.key, u.protocol, None);
        let s = String::from_utf8(out).unwrap();
        assert!(s.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(s.ends_with("Sec-WebSocket-Protocol: v11.stomp\r\n\r\n"));
    }

    #[test]
    fn permessage_deflate_is_negotiated_only_when_offered_by_both() {
        let req = GOOD.replace(
            "Sec-WebSocket-Version",
            "Sec-WebSocket-Extensions: x-foo, permessage-deflate; client_max_window_bits\r\nSec-WebSocket-Version",
        );
        // Off: the header is not looked at.
        let Ok(Status::Complete(u)) = parse(&req) else {
            panic!()
        };
        assert_eq!(u.deflate, None);
        let on = HandshakeConfig {
            deflate: Some(crate::ws::deflate::DeflateConfig::default()),
            ..HandshakeConfig::default()
        };
        let Ok(Status::Complete(u)) = parse_request(req.as_bytes(), &on) else {
            panic!()
        };
        let agreed = u.deflate.expect("agreed");
        let mut out = Vec::new();
        write_accept(&mut out, u.key, u.protocol, Some(&agreed.response()));
        let s = String::from_utf8(out).unwrap();
        assert!(
            s.ends_with("\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n\r\n"),
            "{s}"
        );
        // Not offered by the client: nothing agreed.
        let Ok(Status::Complete(u)) = parse_request(GOOD.as_bytes(), &on) else {
            panic!()
        };
        assert_eq!(u.deflate, None);
        // A malformed header fails the handshake when compression is on, and only then.
        let bad = GOOD.replace(
            "Sec-WebSocket-Version",
            "Sec-WebSocket-Extensions: permessage-deflate; a=\"b\r\nSec-WebSocket-Version",
        );
        assert_eq!(parse_request(bad.as_bytes(), &on).unwrap_err().status, 400);
        assert!(parse(&bad).is_ok());
    }

    #[test]
    fn refusals() {
        assert_eq!(status_of(&GOOD.replace("GET", "POST")), 405);
        assert_eq!(status_of(&GOOD.replace("HTTP/1.1", "HTTP/1.0")), 400);
        assert_eq!(
            status_of(&GOOD.replace("Host: server.example.com\r\n", "")),
            400
        );
        assert_eq!(status_of(&GOOD.replace("Upgrade: websocket\r\n", "")), 426);
        assert_eq!(
            status_of(&GOOD.replace("Connection: Upgrade", "Connection: keep-alive")),
            400
        );
        assert_eq!(status_of(&GOOD.replace("Version: 13", "Version: 8")), 426);
        assert_eq!(
            status_of(&GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZQ==")),
            400
        );
        assert_eq!(
            status_of(&GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "!!")),
            400
        );
        assert_eq!(status_of("GARBAGE\0\r\n\r\n"), 400);
        // Connection lists are comma lists, compared case-insensitively.
        assert!(
            parse(&GOOD.replace("Connection: Upgrade", "Connection: keep-alive, UPGRADE")).is_ok()
        );
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(9000));
        assert_eq!(status_of(&big), 431);
        let cfg = HandshakeConfig {
            allowed_origins: Some(vec!["http://good.example".into()]),
            ..HandshakeConfig::default()
        };
        assert_eq!(
            parse_request(GOOD.as_bytes(), &cfg).unwrap_err().status,
            403
        );
    }

    #[test]
    fn refusal_is_complete_http() {
        let mut out = Vec::new();
        Refusal::new(426, "Sec-WebSocket-Version: 13 required").write(&mut out);
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(s.contains("\r\nSec-WebSocket-Version: 13\r\n"));
        let (head, body) = s.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
    }
}
