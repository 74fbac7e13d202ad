//! Sans-IO SockJS 0.3.3: the fallback for clients that cannot open a WebSocket. The client
//! (`sockjs-client`) opens a session with a receiving request (a long poll, an HTTP stream, an
//! event stream, an htmlfile iframe, or a WebSocket) and sends with `xhr_send`; the server
//! answers with frames:
//!
//! ```text
//!  o              the session is open
//!  h              heart-beat (no receiving request may stay silent for long)
//!  a["m1","m2"]   messages, each a JSON string
//!  c[3000,"Go away!"]   the session is closed (served to every later receiving request)
//! ```
//!
//! This module turns paths into [`Route`]s, messages into frames and frames into each
//! transport's bytes ([`Wire`]), and reads what clients send ([`json::read_messages`]). It
//! knows nothing of sockets, sessions' lifetimes or threads: those are the server's
//! (`server::conn::sockjs`).
//!
//! Left out on purpose: the JSONP transports (`jsonp`, `jsonp_send`; answered 404) and the
//! pre-RFC 6455 WebSocket drafts (hixie-76, hybi-07/10).

pub mod http;
pub mod json;

use std::time::Duration;

/// SockJS endpoint settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SockjsConfig {
    /// The endpoint's path prefix on the WebSocket listener (e.g. `/sockjs`).
    pub prefix: String,
    /// A heart-beat frame is sent on a receiving request silent this long.
    pub heartbeat: Duration,
    /// A session with no receiving request for this long is closed (and a closed one is
    /// forgotten).
    pub disconnect_delay: Duration,
    /// A streaming response ends (the client opens another) after this many bytes of frames.
    pub response_limit: usize,
    /// Largest request body (`xhr_send`).
    pub max_body: usize,
    /// Sessions open at once over the whole server (each also counts as a connection).
    pub max_sessions: usize,
    /// The `websocket` transport is offered (`/info` says so).
    pub websocket: bool,
    /// `/info` says `cookie_needed` and responses set `JSESSIONID` (for sticky load balancers).
    pub cookie_needed: bool,
    /// Where the iframe page loads `sockjs-client` from.
    pub client_url: String,
}

impl Default for SockjsConfig {
    fn default() -> Self {
        SockjsConfig {
            prefix: "/sockjs".into(),
            heartbeat: Duration::from_secs(25),
            disconnect_delay: Duration::from_secs(5),
            response_limit: 128 * 1024,
            max_body: 256 * 1024,
            max_sessions: 100_000,
            websocket: true,
            cookie_needed: false,
            client_url: "https://cdn.jsdelivr.net/npm/sockjs-client@1/dist/sockjs.min.js".into(),
        }
    }
}

/// What a session runs behind the SockJS framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// A STOMP session (the endpoint).
    Stomp,
    /// Echo every message back (the protocol test suite's `echo` services).
    Echo,
    /// Close every session as soon as it opens (the test suite's `close` service).
    Close,
}

/// One mounted service: its prefix and options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub prefix: String,
    pub service: Service,
    pub websocket: bool,
    pub cookie_needed: bool,
}

/// The services a server mounts: the STOMP endpoint, and with the echo endpoint on, the four
/// the protocol test suite expects under `/sockjs-test`.
pub fn mounts(cfg: &SockjsConfig, echo: bool) -> Vec<Mount> {
    let mut m = vec![Mount {
        prefix: cfg.prefix.trim_end_matches('/').to_string(),
        service: Service::Stomp,
        websocket: cfg.websocket,
        cookie_needed: cfg.cookie_needed,
    }];
    if echo {
        let t = |name: &str, service, websocket, cookie_needed| Mount {
            prefix: format!("/sockjs-test/{name}"),
            service,
            websocket,
            cookie_needed,
        };
        m.push(t("echo", Service::Echo, true, false));
        m.push(t("close", Service::Close, true, false));
        m.push(t("disabled_websocket_echo", Service::Echo, false, false));
        m.push(t("cookie_needed_echo", Service::Echo, true, true));
    }
    m
}

/// The mount a path falls under, and the rest of the path.
pub fn find_mount<'m, 'p>(mounts: &'m [Mount], path: &'p str) -> Option<(&'m Mount, &'p str)> {
    mounts.iter().find_map(|m| {
        let rest = path.strip_prefix(m.prefix.as_str())?;
        (rest.is_empty() || rest.starts_with('/')).then_some((m, rest))
    })
}

/// The session transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Websocket,
    /// Long polling: one frame per response.
    Xhr,
    XhrSend,
    XhrStreaming,
    EventSource,
    HtmlFile,
}

impl Transport {
    /// The method the transport's requests use.
    pub fn method(self) -> &'static str {
        match self {
            Transport::Websocket | Transport::EventSource | Transport::HtmlFile => "GET",
            Transport::Xhr | Transport::XhrSend | Transport::XhrStreaming => "POST",
        }
    }

    /// Answered with CORS headers and a preflight (`OPTIONS`).
    pub fn xhr(self) -> bool {
        matches!(
            self,
            Transport::Xhr | Transport::XhrSend | Transport::XhrStreaming
        )
    }
}

/// Where a request under a mount goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// `/`: "Welcome to SockJS!".
    Greeting,
    /// `/iframe.html` (and versioned names).
    Iframe,
    /// `/info`.
    Info,
    /// `/websocket`: a plain WebSocket, no SockJS framing.
    RawWebsocket,
    /// `/<server>/<session>/<transport>`.
    Session {
        session: &'a str,
        transport: Transport,
    },
    NotFound,
}

/// Route the path below a mount (query string removed).
pub fn route(rest: &str) -> Route<'_> {
    match rest {
        "" | "/" => return Route::Greeting,
        "/info" => return Route::Info,
        "/websocket" => return Route::RawWebsocket,
        _ => {}
    }
    if let Some(name) = rest
        .strip_prefix("/iframe")
        .and_then(|r| r.strip_suffix(".html"))
    {
        let ok = name.is_empty()
            || (name.starts_with('-')
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b)));
        return if ok { Route::Iframe } else { Route::NotFound };
    }
    let mut parts = rest.strip_prefix('/').unwrap_or("").split('/');
    let (Some(server), Some(session), Some(transport), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Route::NotFound;
    };
    let valid = |s: &str| !s.is_empty() && !s.contains('.');
    if !valid(server) || !valid(session) {
        return Route::NotFound;
    }
    let transport = match transport {
        "websocket" => Transport::Websocket,
        "xhr" => Transport::Xhr,
        "xhr_send" => Transport::XhrSend,
        "xhr_streaming" => Transport::XhrStreaming,
        "eventsource" => Transport::EventSource,
        "htmlfile" => Transport::HtmlFile,
        _ => return Route::NotFound,
    };
    Route::Session { session, transport }
}

/// The greeting's body.
pub const GREETING: &[u8] = b"Welcome to SockJS!\n";
/// Open frame.
pub const OPEN: &[u8] = b"o";
/// Heart-beat frame.
pub const HEARTBEAT: &[u8] = b"h";
/// The close frame sent to a second receiving request on a session.
pub const ANOTHER_CONNECTION: &[u8] = b"c[2010,\"Another connection still open\"]";

/// Append a close frame.
pub fn write_close(out: &mut Vec<u8>, code: u16, reason: &str) {
    out.extend_from_slice(format!("c[{code},").as_bytes());
    json::write_string(out, reason.as_bytes(), false);
    out.push(b']');
}

/// An `a[...]` frame being written: [`Messages::push`] each message, then
/// [`Messages::finish`].
pub struct Messages<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
}

impl<'o> Messages<'o> {
    pub fn new(out: &'o mut Vec<u8>) -> Self {
        out.extend_from_slice(b"a[");
        Messages { out, first: true }
    }

    pub fn push(&mut self, msg: &[u8]) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        json::write_string(self.out, msg, false);
    }

    pub fn finish(self) {
        self.out.push(b']');
    }
}

/// How frames travel on a receiving request's response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// `frame\n` (xhr polling and streaming).
    Lines,
    /// `data: frame\r\n\r\n`.
    EventSource,
    /// `<script>\np("frame");\n</script>\r\n`.
    HtmlFile,
}

impl Wire {
    pub fn of(t: Transport) -> Wire {
        match t {
            Transport::EventSource => Wire::EventSource,
            Transport::HtmlFile => Wire::HtmlFile,
            _ => Wire::Lines,
        }
    }

    /// Append `frame` as this wire carries it.
    pub fn write(self, out: &mut Vec<u8>, frame: &[u8]) {
        match self {
            Wire::Lines => {
                out.extend_from_slice(frame);
                out.push(b'\n');
            }
            Wire::EventSource => {
                // sockjs-client URI-decodes each data line: `%` goes as `%25`. (CR, LF and NUL
                // never appear raw: frames are JSON, where they are escaped.)
                out.extend_from_slice(b"data: ");
                for part in frame.split_inclusive(|b| *b == b'%') {
                    match part.strip_suffix(b"%") {
                        Some(p) => {
                            out.extend_from_slice(p);
                            out.extend_from_slice(b"%25");
                        }
                        None => out.extend_from_slice(part),
                    }
                }
                out.extend_from_slice(b"\r\n\r\n");
            }
            Wire::HtmlFile => {
                out.extend_from_slice(b"<script>\np(");
                json::write_string(out, frame, true);
                out.extend_from_slice(b");\n</script>\r\n");
            }
        }
    }
}

/// The bytes a streaming response starts with, before any frame: 2 KiB of `h` for
/// xhr-streaming (browsers deliver nothing of a response before its first 2 KiB or so), a
/// blank line for an event stream, the page for htmlfile (with the callback, padded past
/// 1 KiB for the same reason).
pub fn write_prelude(out: &mut Vec<u8>, t: Transport, callback: &str) {
    match t {
        Transport::XhrStreaming => {
            out.resize(out.len() + 2048, b'h');
            out.push(b'\n');
        }
        Transport::EventSource => out.extend_from_slice(b"\r\n"),
        Transport::HtmlFile => {
            let start = out.len();
            out.extend_from_slice(HTMLFILE_HEAD.replace("{{callback}}", callback).as_bytes());
            let pad = 1024usize.saturating_sub(out.len() - start) + 14;
            out.resize(out.len() + pad, b' ');
            out.extend_from_slice(b"\r\n\r\n");
        }
        _ => {}
    }
}

/// A callback name for htmlfile: letters, digits, `_` and `.`, so nothing can be injected
/// into the page.
pub fn valid_callback(c: &str) -> bool {
    !c.is_empty()
        && c.len() <= 256
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

/// Decode `%XX` escapes of a query value (the htmlfile callback, the admin API's parameters);
/// `None` if malformed.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

const HTMLFILE_HEAD: &str = r#"<!doctype html>
<html><head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
</head><body><h2>Don't panic!</h2>
  <script>
    document.domain = document.domain;
    var c = parent.{{callback}};
    c.start();
    function p(d) {c.message(d);};
    window.onload = function() {c.stop();};
  </script>"#;

/// The iframe page (for transports that need same-origin tricks), loading the client from
/// `client_url`.
pub fn iframe_page(client_url: &str) -> String {
    format!(
        r#"<!DOCTYPE html>
<html>
<head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
  <script>
    document.domain = document.domain;
    _sockjs_onload = function(){{SockJS.bootstrap_iframe();}};
  </script>
  <script src="{}"></script>
</head>
<body>
  <h2>Don't panic!</h2>
  <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>
</body>
</html>"#,
        client_url.replace('"', "%22")
    )
}

/// The `/info` body.
pub fn info_body(websocket: bool, cookie_needed: bool, entropy: u32) -> String {
    format!(
        r#"{{"websocket":{websocket},"cookie_needed":{cookie_needed},"origins":["*:*"],"entropy":{entropy}}}"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_route_as_the_protocol_says() {
        assert_eq!(route(""), Route::Greeting);
        assert_eq!(route("/"), Route::Greeting);
        assert_eq!(route("/info"), Route::Info);
        assert_eq!(route("/websocket"), Route::RawWebsocket);
        for ok in [
            "/iframe.html",
            "/iframe-a.html",
            "/iframe-.html",
            "/iframe-0.1.2abc-dirty.2144.html",
        ] {
            assert_eq!(route(ok), Route::Iframe, "{ok}");
        }
        for bad in [
            "/iframe.htm",
            "/iframe",
            "/IFRAME.HTML",
            "/iframe.HTML",
            "/iframe-/.html",
            "/a",
            "//",
            "/a/a",
            "/a/a/",
        ] {
            assert_eq!(route(bad), Route::NotFound, "{bad}");
        }
        assert_eq!(
            route("/000/abc/xhr_streaming"),
            Route::Session {
                session: "abc",
                transport: Transport::XhrStreaming
            }
        );
        for bad in [
            "///xhr",
            "/a./a/xhr",
            "/a/a./xhr",
            "/./././xhr",
            "/a/a/jsonp",
            "/a/a/xhr/x",
        ] {
            assert_eq!(route(bad), Route::NotFound, "{bad}");
        }
    }

    #[test]
    fn mounts_match_whole_segments() {
        let m = mounts(&SockjsConfig::default(), true);
        assert_eq!(
            find_mount(&m, "/sockjs/info").map(|(m, r)| (m.service, r)),
            Some((Service::Stomp, "/info"))
        );
        assert_eq!(find_mount(&m, "/sockjs").map(|(_, r)| r), Some(""));
        assert!(find_mount(&m, "/sockjsx").is_none());
        assert_eq!(
            find_mount(&m, "/sockjs-test/close/a/b/xhr").map(|(m, _)| m.service),
            Some(Service::Close)
        );
        assert!(find_mount(
            &mounts(&SockjsConfig::default(), false),
            "/sockjs-test/echo"
        )
        .is_none());
    }

    #[test]
    fn frames_and_wires() {
        let mut f = Vec::new();
        let mut m = Messages::new(&mut f);
        m.push(b"x");
        m.push(b"SEND\n\n\"\0");
        m.finish();
        assert_eq!(f, br#"a["x","SEND\n\n\"\u0000"]"#);
        let mut out = Vec::new();
        Wire::HtmlFile.write(&mut out, br#"a["x"]"#);
        assert_eq!(out, b"<script>\np(\"a[\\\"x\\\"]\");\n</script>\r\n");
        let mut out = Vec::new();
        Wire::EventSource.write(&mut out, b"o");
        assert_eq!(out, b"data: o\r\n\r\n");
        let mut out = Vec::new();
        Wire::EventSource.write(&mut out, br#"a["100% %41"]"#);
        assert_eq!(out, b"data: a[\"100%25 %2541\"]\r\n\r\n");
        let mut c = Vec::new();
        write_close(&mut c, 3000, "Go away!");
        assert_eq!(c, br#"c[3000,"Go away!"]"#);
    }

    #[test]
    fn preludes() {
        let mut out = Vec::new();
        write_prelude(&mut out, Transport::XhrStreaming, "");
        assert_eq!(out.len(), 2049);
        let mut out = Vec::new();
        write_prelude(&mut out, Transport::HtmlFile, "callback");
        let s = String::from_utf8(out).unwrap();
        assert!(s.len() > 1024 && s.contains("var c = parent.callback;"));
        assert!(valid_callback("a.b_c1") && !valid_callback("a(1)") && !valid_callback(""));
        assert_eq!(percent_decode("%63allback").as_deref(), Some("callback"));
        assert_eq!(percent_decode("%6"), None);
    }
}
