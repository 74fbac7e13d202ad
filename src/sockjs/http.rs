//! The HTTP/1.x side of SockJS: one request's head read with `httparse` (the fields SockJS
//! looks at, borrowed from the buffer), and response heads written for a keep-alive or a
//! streaming answer.

use crate::ws::handshake::Status;

/// Most headers looked at in one request (more: 431).
const MAX_HEADERS: usize = 64;

/// A request refused before it reached a session: status and plain-text body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpError {
    pub status: u16,
    pub reason: &'static str,
}

impl HttpError {
    pub const fn new(status: u16, reason: &'static str) -> Self {
        HttpError { status, reason }
    }
}

/// The head of one request; strings borrow the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path without the query string.
    pub path: &'a str,
    pub query: &'a str,
    /// HTTP/1.1 (else 1.0).
    pub http11: bool,
    /// The connection may carry another request after this one's answer.
    pub keep_alive: bool,
    pub origin: Option<&'a str>,
    /// `Access-Control-Request-Headers`, to be allowed back.
    pub request_headers: Option<&'a str>,
    /// The `JSESSIONID` cookie's value.
    pub jsessionid: Option<&'a str>,
    pub if_none_match: Option<&'a str>,
    /// `Upgrade: websocket` and `Connection: upgrade` were both sent.
    pub upgrade: bool,
    pub connection_upgrade: bool,
    /// Bytes of the head.
    pub head_len: usize,
    /// Bytes of the body (`Content-Length`; a chunked body is refused).
    pub body_len: usize,
}

impl Request<'_> {
    /// The whole request's length (head and body).
    pub fn total_len(&self) -> usize {
        self.head_len + self.body_len
    }

    /// The value of query parameter `name` (not percent-decoded).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then_some(v)
        })
    }
}

fn text(v: &[u8]) -> Option<&str> {
    std::str::from_utf8(v).ok().map(str::trim)
}

fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Parse a request head from the start of `buf`: `max_head` bounds the head, `max_body` the
/// body it announces.
pub fn parse(
    buf: &[u8],
    max_head: usize,
    max_body: usize,
) -> Result<Status<Request<'_>>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= max_head => {
            return Err(HttpError::new(431, "request too large"))
        }
        Ok(httparse::Status::Partial) => return Ok(Status::Partial),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HttpError::new(431, "too many headers"))
        }
        Err(_) => return Err(HttpError::new(400, "malformed HTTP request")),
    };
    if head_len > max_head {
        return Err(HttpError::new(431, "request too large"));
    }
    let http11 = req.version == Some(1);
    let full = req.path.unwrap_or("/");
    let (path, query) = full.split_once('?').unwrap_or((full, ""));
    let mut r = Request {
        method: req.method.unwrap_or(""),
        path,
        query,
        http11,
        keep_alive: http11,
        origin: None,
        request_headers: None,
        jsessionid: None,
        if_none_match: None,
        upgrade: false,
        connection_upgrade: false,
        head_len,
        body_len: 0,
    };
    for h in req.headers.iter() {
        let (name, value) = (h.name, h.value);
        if name.eq_ignore_ascii_case("content-length") {
            let n = text(value)
                .and_then(|v| v.parse::<usize>().ok())
                .ok_or(HttpError::new(400, "bad Content-Length"))?;
            if n > max_body {
                return Err(HttpError::new(413, "request body too large"));
            }
            r.body_len = n;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HttpError::new(411, "Content-Length required"));
        } else if name.eq_ignore_ascii_case("connection") {
            if has_token(value, "close") {
                r.keep_alive = false;
            } else if has_token(value, "keep-alive") {
                r.keep_alive = true;
            }
            r.connection_upgrade |= has_token(value, "upgrade");
        } else if name.eq_ignore_ascii_case("upgrade") {
            r.upgrade |= has_token(value, "websocket");
        } else if name.eq_ignore_ascii_case("origin") {
            r.origin = text(value);
        } else if name.eq_ignore_ascii_case("access-control-request-headers") {
            r.request_headers = text(value).filter(|v| !v.is_empty());
        } else if name.eq_ignore_ascii_case("if-none-match") {
            r.if_none_match = text(value);
        } else if name.eq_ignore_ascii_case("cookie") {
            if let Some(v) = text(value) {
                r.jsessionid = r.jsessionid.or_else(|| {
                    v.split(';')
                        .filter_map(|c| c.trim().split_once('='))
                        .find(|(k, _)| *k == "JSESSIONID")
                        .map(|(_, v)| v)
                });
            }
        }
    }
    Ok(Status::Complete(r))
}

fn phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// `Content-Length`; the connection stays open for the next request when `keep_alive`.
    Length(usize),
    /// Streamed: chunked on HTTP/1.1, else until the connection closes.
    Stream { chunked: bool },
}

/// A response head being written: the status line, then headers, then [`Head::finish`].
pub struct Head<'o> {
    out: &'o mut Vec<u8>,
}

impl<'o> Head<'o> {
    pub fn new(out: &'o mut Vec<u8>, http11: bool, status: u16) -> Self {
        let v = if http11 { "HTTP/1.1" } else { "HTTP/1.0" };
        out.extend_from_slice(format!("{v} {status} {}\r\n", phrase(status)).as_bytes());
        Head { out }
    }

    pub fn header(self, name: &str, value: &str) -> Self {
        let out = self.out;
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
        Head { out }
    }

    /// `Cache-Control` for answers that must never be cached.
    pub fn no_cache(self) -> Self {
        self.header(
            "Cache-Control",
            "no-store, no-cache, must-revalidate, max-age=0",
        )
    }

    /// `Cache-Control`, `Expires` and `Access-Control-Max-Age` for a year.
    pub fn cache_a_year(self) -> Self {
        self.header("Cache-Control", "public, max-age=31536000")
            .header("Expires", "Fri, 01 Jan 2100 00:00:00 GMT")
    }

    /// CORS: the request's origin allowed back (`*` without one, or for `null`), with
    /// credentials, and the headers it asked to send.
    pub fn cors(self, req: &Request<'_>) -> Self {
        let origin = match req.origin {
            Some(o) if o != "null" && !o.is_empty() => o,
            _ => "*",
        };
        let h = self
            .header("Access-Control-Allow-Origin", origin)
            .header("Access-Control-Allow-Credentials", "true");
        match req.request_headers {
            Some(v) => h.header("Access-Control-Allow-Headers", v),
            None => h,
        }
    }

    /// End the head: the body's framing and the connection's fate.
    pub fn finish(self, body: Body, keep_alive: bool) {
        Head::finish_raw(self.out, body, keep_alive);
    }

    /// [`Head::finish`] on a head written earlier into `out` (a poll's head waits for its
    /// frame to know its length).
    pub fn finish_raw(out: &mut Vec<u8>, body: Body, keep_alive: bool) {
        match body {
            Body::Length(n) => {
                out.extend_from_slice(format!("Content-Length: {n}\r\n").as_bytes());
                if !keep_alive {
                    out.extend_from_slice(b"Connection: close\r\n");
                } else {
                    out.extend_from_slice(b"Connection: keep-alive\r\n");
                }
            }
            Body::Stream { chunked: true } => {
                out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
            }
            Body::Stream { chunked: false } => out.extend_from_slice(b"Connection: close\r\n"),
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// Append `data` as one chunk of a chunked body (nothing for empty data: that would end it).
pub fn write_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The end of a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn req(raw: &str) -> Result<Status<Request<'_>>, HttpError> {
        parse(raw.as_bytes(), 8192, 1024)
    }

    #[test]
    fn a_request_head_is_read() {
        let raw = "POST /sockjs/1/abc/xhr_send?t=1&c=cb HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nOrigin: http://a\r\nCookie: a=b; JSESSIONID=xyz\r\nAccess-Control-Request-Headers: a, b\r\n\r\n[\"a\"]";
        let Ok(Status::Complete(r)) = req(raw) else {
            panic!()
        };
        assert_eq!(
            (r.method, r.path, r.query),
            ("POST", "/sockjs/1/abc/xhr_send", "t=1&c=cb")
        );
        assert_eq!(r.query_param("c"), Some("cb"));
        assert_eq!(r.query_param("d"), None);
        assert!(r.http11 && r.keep_alive);
        assert_eq!(
            (r.origin, r.jsessionid, r.request_headers),
            (Some("http://a"), Some("xyz"), Some("a, b"))
        );
        assert_eq!(r.total_len(), raw.len());
    }

    #[test]
    fn http10_closes_unless_asked_and_11_keeps_unless_asked() {
        let Ok(Status::Complete(r)) = req("GET / HTTP/1.0\r\n\r\n") else {
            panic!()
        };
        assert!(!r.keep_alive && !r.http11);
        let Ok(Status::Complete(r)) = req("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
        else {
            panic!()
        };
        assert!(r.keep_alive);
        let Ok(Status::Complete(r)) = req("GET / HTTP/1.1\r\nConnection: close\r\n\r\n") else {
            panic!()
        };
        assert!(!r.keep_alive);
    }

    #[test]
    fn bad_requests_are_answered() {
        assert_eq!(req("GET / HTTP/1.1\r\n"), Ok(Status::Partial));
        assert_eq!(
            req("GET / HTTP/1.1\r\nContent-Length: 2000\r\n\r\n")
                .unwrap_err()
                .status,
            413
        );
        assert_eq!(
            req("GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n")
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            req("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
                .unwrap_err()
                .status,
            411
        );
        assert_eq!(req("\0\0\0\r\n\r\n").unwrap_err().status, 400);
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(9000));
        assert_eq!(req(&long).unwrap_err().status, 431);
    }

    #[test]
    fn heads_and_chunks_are_written() {
        let Ok(Status::Complete(r)) = req("GET / HTTP/1.1\r\nOrigin: null\r\n\r\n") else {
            panic!()
        };
        let mut out = Vec::new();
        Head::new(&mut out, true, 200)
            .cors(&r)
            .finish(Body::Length(3), true);
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(s.contains("Access-Control-Allow-Origin: *\r\n"));
        assert!(s.ends_with("Content-Length: 3\r\nConnection: keep-alive\r\n\r\n"));
        let mut out = Vec::new();
        write_chunk(&mut out, b"hello world, this is 30 bytes!");
        write_chunk(&mut out, b"");
        assert_eq!(out, b"1e\r\nhello world, this is 30 bytes!\r\n");
    }
}
