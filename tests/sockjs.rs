//! SockJS end to end: every transport (xhr polling, xhr_send, xhr_streaming, eventsource,
//! htmlfile, the websocket transport, raw /websocket) carrying STOMP to and from ordinary
//! WebSocket clients; the frames (o, h, a, c) and the timeouts (heart-beat, disconnect delay);
//! a second receiving request, an aborted one, the response limit; and the bounds (sessions,
//! body, a session's input, a receiver that does not read). The client side is written here
//! (HTTP by hand, JSON by serde_json), not with stompbox's code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/ops.rs"]
mod ops;

use common::stomp::{frame, parse_frame, Client, Esc, Frame};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use stompbox::sockjs::SockjsConfig;

fn server(f: impl FnOnce(&mut SockjsConfig)) -> (stompbox::ServerHandle, SocketAddr) {
    common::server_with(|c| {
        let mut j = SockjsConfig::default();
        f(&mut j);
        c.sockjs = Some(j);
    })
}

/// A response: status, headers (names lower-cased), body.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn h(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }
}

/// One HTTP connection, read by hand.
struct Http {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Http {
    fn open(addr: SocketAddr) -> Http {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Http { s, buf: Vec::new() }
    }

    fn send(&mut self, method: &str, path: &str, headers: &str, body: &[u8]) {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n{headers}\r\n",
            body.len()
        );
        self.s.write_all(head.as_bytes()).unwrap();
        self.s.write_all(body).unwrap();
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

    fn head(&mut self) -> (u16, Vec<(String, String)>) {
        loop {
            if let Some(p) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8(self.buf[..p].to_vec()).unwrap();
                self.buf.drain(..p + 4);
                let mut lines = head.split("\r\n");
                let status = lines
                    .next()
                    .unwrap()
                    .split(' ')
                    .nth(1)
                    .unwrap()
                    .parse()
                    .unwrap();
                let headers = lines
                    .map(|l| {
                        let (k, v) = l.split_once(": ").unwrap();
                        (k.to_ascii_lowercase(), v.to_string())
                    })
                    .collect();
                return (status, headers);
            }
            assert!(self.fill(), "connection ended before the head");
        }
    }

    /// A whole response (Content-Length).
    fn response(&mut self) -> Resp {
        let (status, headers) = self.head();
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map(|(_, v)| v.parse().unwrap())
            .expect("content-length");
        while self.buf.len() < len {
            assert!(self.fill(), "body cut short");
        }
        let body = self.buf.drain(..len).collect();
        Resp {
            status,
            headers,
            body,
        }
    }

    /// One chunk of a chunked body (empty: the last).
    fn chunk(&mut self) -> Vec<u8> {
        loop {
            if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let n = usize::from_str_radix(std::str::from_utf8(&self.buf[..p]).unwrap(), 16)
                    .unwrap();
                if self.buf.len() >= p + 2 + n + 2 {
                    let data = self.buf[p + 2..p + 2 + n].to_vec();
                    assert_eq!(&self.buf[p + 2 + n..p + 4 + n], b"\r\n");
                    self.buf.drain(..p + 4 + n);
                    return data;
                }
            }
            assert!(self.fill(), "stream ended inside a chunk");
        }
    }
}

fn call(addr: SocketAddr, method: &str, path: &str, headers: &str, body: &[u8]) -> Resp {
    let mut h = Http::open(addr);
    h.send(method, path, headers, body);
    h.response()
}

/// The messages of an `a[...]` frame, decoded by serde_json.
fn messages(frame: &[u8]) -> Vec<String> {
    let f = std::str::from_utf8(frame).unwrap().trim_end();
    let a = f
        .strip_prefix('a')
        .unwrap_or_else(|| panic!("not a message frame: {f}"));
    serde_json::from_str(a).unwrap()
}

/// STOMP frames from SockJS messages (each message one frame, or a heart-beat EOL).
fn stomp_frames(msgs: &[String]) -> Vec<Frame> {
    msgs.iter()
        .filter(|m| m.as_str() != "\n")
        .map(|m| {
            parse_frame(m.as_bytes(), Esc::V12)
                .expect("a whole STOMP frame")
                .0
        })
        .collect()
}

fn payload(frames: &[&[u8]]) -> Vec<u8> {
    let v: Vec<String> = frames
        .iter()
        .map(|f| String::from_utf8(f.to_vec()).unwrap())
        .collect();
    serde_json::to_vec(&v).unwrap()
}

/// A STOMP client over xhr polling and xhr_send.
struct Poller {
    addr: SocketAddr,
    base: String,
    /// Frames polled but not handed out yet.
    got: std::collections::VecDeque<Frame>,
}

impl Poller {
    fn open(addr: SocketAddr, prefix: &str, id: &str) -> Poller {
        let base = format!("{prefix}/000/{id}");
        let r = call(addr, "POST", &format!("{base}/xhr"), "", b"");
        assert_eq!((r.status, r.text()), (200, "o\n"));
        Poller {
            addr,
            base,
            got: Default::default(),
        }
    }

    fn send(&self, frames: &[&[u8]]) {
        let r = call(
            self.addr,
            "POST",
            &format!("{}/xhr_send", self.base),
            "",
            &payload(frames),
        );
        assert_eq!(r.status, 204, "{r:?}");
    }

    fn poll(&self) -> Vec<u8> {
        let r = call(self.addr, "POST", &format!("{}/xhr", self.base), "", b"");
        assert_eq!(r.status, 200);
        r.body
    }

    fn recv(&mut self) -> Frame {
        while self.got.is_empty() {
            let f = self.poll();
            if f == b"h\n" {
                continue;
            }
            self.got.extend(stomp_frames(&messages(&f)));
        }
        self.got.pop_front().unwrap()
    }
}

fn connect_frame() -> Vec<u8> {
    frame("CONNECT", &[("accept-version", "1.2"), ("host", "/")], b"")
}

fn ws_client(addr: SocketAddr) -> Client {
    let mut c = Client::connect_ws(addr);
    c.connected(&connect_frame());
    c
}

fn subscribe(c: &mut Client, dest: &str) {
    c.send_frame(
        "SUBSCRIBE",
        &[("id", "0"), ("destination", dest), ("receipt", "s")],
        b"",
    );
    c.expect_receipt("s");
}

#[test]
fn stomp_over_xhr_polling_to_and_from_websocket_clients() {
    let (_h, addr) = server(|_| {});
    let mut p = Poller::open(addr, "/sockjs", "poll-1");
    p.send(&[&connect_frame()]);
    assert_eq!(p.recv().command, "CONNECTED");
    p.send(&[&frame(
        "SUBSCRIBE",
        &[("id", "a"), ("destination", "/topic/t"), ("receipt", "r1")],
        b"",
    )]);
    let r = p.recv();
    assert_eq!((r.command.as_str(), r.h("receipt-id")), ("RECEIPT", "r1"));
    // A WebSocket client publishes; the SockJS session gets it. Quotes, newlines, non-ASCII
    // and U+2028 go through JSON and back.
    let mut ws = ws_client(addr);
    subscribe(&mut ws, "/topic/back");
    let body = "hé \"quoted\"\nline\u{2028}end";
    ws.send_frame("SEND", &[("destination", "/topic/t")], body.as_bytes());
    let m = p.recv();
    assert_eq!((m.command.as_str(), m.text()), ("MESSAGE", body));
    // The SockJS session publishes; the WebSocket client gets it.
    p.send(&[&frame(
        "SEND",
        &[("destination", "/topic/back")],
        "from sockjs ✓".as_bytes(),
    )]);
    assert_eq!(ws.msg().text(), "from sockjs ✓");
    // DISCONNECT with a receipt: the RECEIPT, then the close frame on every later poll.
    p.send(&[&frame("DISCONNECT", &[("receipt", "bye")], b"")]);
    let r = p.recv();
    assert_eq!((r.command.as_str(), r.h("receipt-id")), ("RECEIPT", "bye"));
    assert_eq!(p.poll(), b"c[3000,\"Go away!\"]\n");
    assert_eq!(p.poll(), b"c[3000,\"Go away!\"]\n");
}

#[test]
fn several_frames_in_one_send_and_one_message_per_frame_back() {
    let (_h, addr) = server(|_| {});
    let mut p = Poller::open(addr, "/sockjs", "multi");
    let sub = frame(
        "SUBSCRIBE",
        &[("id", "a"), ("destination", "/topic/m")],
        b"",
    );
    let sends: Vec<Vec<u8>> = (0..5)
        .map(|i| {
            frame(
                "SEND",
                &[("destination", "/topic/m")],
                format!("m{i}").as_bytes(),
            )
        })
        .collect();
    let connect = connect_frame();
    let mut all: Vec<&[u8]> = vec![&connect, &sub];
    all.extend(sends.iter().map(Vec::as_slice));
    p.send(&all);
    assert_eq!(p.recv().command, "CONNECTED");
    for i in 0..5 {
        assert_eq!(p.recv().text(), format!("m{i}"));
    }
}

/// A streaming receiver: the response head, then frames as they come.
struct Stream {
    http: Http,
    chunked: bool,
    transport: &'static str,
}

impl Stream {
    fn open(
        addr: SocketAddr,
        base: &str,
        transport: &'static str,
        http10: bool,
    ) -> (Stream, u16, Vec<(String, String)>) {
        let mut http = Http::open(addr);
        let method = if transport == "xhr_streaming" {
            "POST"
        } else {
            "GET"
        };
        let query = if transport == "htmlfile" {
            "?c=cb.x"
        } else {
            ""
        };
        let version = if http10 { "HTTP/1.0" } else { "HTTP/1.1" };
        let req = format!("{method} {base}/{transport}{query} {version}\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n");
        http.s.write_all(req.as_bytes()).unwrap();
        let (status, headers) = http.head();
        let chunked = headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v == "chunked");
        (
            Stream {
                http,
                chunked,
                transport,
            },
            status,
            headers,
        )
    }

    /// The next piece the server wrote (one chunk, or what one read gave).
    fn piece(&mut self) -> Vec<u8> {
        if self.chunked {
            return self.http.chunk();
        }
        if self.http.buf.is_empty() {
            assert!(self.http.fill(), "stream ended");
        }
        std::mem::take(&mut self.http.buf)
    }

    /// The next frame, unwrapped from the transport's framing.
    fn frame(&mut self) -> String {
        let p = String::from_utf8(self.piece()).unwrap();
        match self.transport {
            "xhr_streaming" => p.strip_suffix('\n').unwrap().to_string(),
            "eventsource" => p
                .strip_prefix("data: ")
                .unwrap()
                .strip_suffix("\r\n\r\n")
                .unwrap()
                .to_string(),
            "htmlfile" => {
                let js = p
                    .strip_prefix("<script>\np(")
                    .unwrap()
                    .strip_suffix(");\n</script>\r\n")
                    .unwrap();
                serde_json::from_str::<String>(js).unwrap()
            }
            t => panic!("{t}"),
        }
    }
}

#[test]
fn every_streaming_transport_carries_stomp_and_ends_at_the_response_limit() {
    let (_h, addr) = server(|j| j.response_limit = 4096);
    for (i, transport) in ["xhr_streaming", "eventsource", "htmlfile"]
        .into_iter()
        .enumerate()
    {
        let base = format!("/sockjs/000/stream-{i}");
        let (mut s, status, headers) = Stream::open(addr, &base, transport, false);
        assert_eq!(status, 200, "{transport}");
        let ctype = headers
            .iter()
            .find(|(k, _)| k == "content-type")
            .unwrap()
            .1
            .clone();
        let want = match transport {
            "xhr_streaming" => "application/javascript; charset=UTF-8",
            "eventsource" => "text/event-stream; charset=UTF-8",
            _ => "text/html; charset=UTF-8",
        };
        assert_eq!(ctype, want);
        assert!(s.chunked, "HTTP/1.1 streams are chunked");
        let prelude = String::from_utf8(s.piece()).unwrap();
        match transport {
            "xhr_streaming" => assert_eq!(prelude, format!("{}\n", "h".repeat(2048))),
            "eventsource" => assert_eq!(prelude, "\r\n"),
            _ => {
                assert!(prelude.contains("var c = parent.cb.x;"), "{prelude}");
                assert!(prelude.len() > 1024);
            }
        }
        assert_eq!(s.frame(), "o");
        let send = |frames: &[&[u8]]| {
            let r = call(
                addr,
                "POST",
                &format!("{base}/xhr_send"),
                "",
                &payload(frames),
            );
            assert_eq!(r.status, 204);
        };
        send(&[
            &connect_frame(),
            &frame(
                "SUBSCRIBE",
                &[("id", "s"), ("destination", "/topic/st")],
                b"",
            ),
        ]);
        let f = stomp_frames(&messages(s.frame().as_bytes()));
        assert_eq!(f[0].command, "CONNECTED");
        // A message holding </script> cannot end the htmlfile page's script element.
        let mut ws = ws_client(addr);
        let evil = "</script><script>alert(1)</script>";
        ws.send_frame("SEND", &[("destination", "/topic/st")], evil.as_bytes());
        let mut got = Vec::new();
        while got.is_empty() {
            got = stomp_frames(&messages(s.frame().as_bytes()));
        }
        assert_eq!(got[0].text(), evil);
        // Past the response limit (4 KiB of frames) the response ends; the session lives on.
        let big = "x".repeat(3000);
        ws.send_frame("SEND", &[("destination", "/topic/st")], big.as_bytes());
        ws.send_frame("SEND", &[("destination", "/topic/st")], big.as_bytes());
        let mut bodies = Vec::new();
        let mut n = 0;
        loop {
            let p = s.piece();
            if p.is_empty() {
                break;
            }
            s.http.buf.splice(
                0..0,
                format!("{:x}\r\n", p.len())
                    .bytes()
                    .chain(p)
                    .chain(*b"\r\n"),
            );
            let fr = s.frame();
            if fr.starts_with('a') {
                bodies.extend(
                    stomp_frames(&messages(fr.as_bytes()))
                        .iter()
                        .map(|f| f.text().len()),
                );
            }
            n += 1;
            assert!(n < 10, "the response did not end");
        }
        // The response ended; the connection stays for the next request (keep-alive).
        assert!(s.http.buf.is_empty());
        // The next receiving request picks up where it ended.
        let (mut s2, _, _) = Stream::open(addr, &base, transport, false);
        s2.piece();
        while bodies.len() < 2 {
            let fr = s2.frame();
            if fr == "h" {
                continue;
            }
            bodies.extend(
                stomp_frames(&messages(fr.as_bytes()))
                    .into_iter()
                    .map(|f| f.text().len()),
            );
        }
        assert!(bodies.iter().all(|&l| l == 3000), "{bodies:?}");
    }
}

#[test]
fn http10_streams_are_not_chunked_and_close_at_the_end() {
    let (_h, addr) = server(|j| j.response_limit = 2048);
    let base = "/sockjs/000/h10";
    let (mut s, status, headers) = Stream::open(addr, base, "xhr_streaming", true);
    assert_eq!(status, 200);
    assert!(!s.chunked);
    assert!(headers.iter().all(|(k, _)| k != "content-length"));
    let big = "y".repeat(3000);
    let r = call(
        addr,
        "POST",
        &format!("{base}/xhr_send"),
        "",
        &payload(&[
            &connect_frame(),
            &frame(
                "SUBSCRIBE",
                &[("id", "0"), ("destination", "/topic/h10")],
                b"",
            ),
            &frame("SEND", &[("destination", "/topic/h10")], big.as_bytes()),
        ]),
    );
    assert_eq!(r.status, 204);
    // Past the limit the server ends the response by closing the connection.
    let t = Instant::now();
    while s.http.fill() {}
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "not closed by the server"
    );
    let all = String::from_utf8(std::mem::take(&mut s.http.buf)).unwrap();
    assert!(all.starts_with(&"h".repeat(2048)));
    assert!(all[2049..].starts_with("o\n"), "{}", &all[2049..]);
    assert!(
        all.contains(&big),
        "the message that crossed the limit is sent whole"
    );
}

#[test]
fn the_websocket_transport_frames_messages_and_closes() {
    let (_h, addr) = server(|_| {});
    let url = format!("ws://{addr}/sockjs/000/wsid/websocket");
    let (mut ws, _) = tungstenite::connect(url).unwrap();
    match ws.read().unwrap() {
        tungstenite::Message::Text(t) => assert_eq!(t.as_str(), "o"),
        m => panic!("{m:?}"),
    }
    let connect = String::from_utf8(connect_frame()).unwrap();
    ws.send(tungstenite::Message::text(
        serde_json::to_string(&vec![connect]).unwrap(),
    ))
    .unwrap();
    let t = match ws.read().unwrap() {
        tungstenite::Message::Text(t) => t.to_string(),
        m => panic!("{m:?}"),
    };
    assert_eq!(
        stomp_frames(&messages(t.as_bytes()))[0].command,
        "CONNECTED"
    );
    // A single JSON string is one message too; an empty message is ignored.
    ws.send(tungstenite::Message::text("")).unwrap();
    let sub = String::from_utf8(frame(
        "SUBSCRIBE",
        &[("id", "1"), ("destination", "/topic/w"), ("receipt", "k")],
        b"",
    ))
    .unwrap();
    ws.send(tungstenite::Message::text(
        serde_json::to_string(&sub).unwrap(),
    ))
    .unwrap();
    let t = match ws.read().unwrap() {
        tungstenite::Message::Text(t) => t.to_string(),
        m => panic!("{m:?}"),
    };
    assert_eq!(
        stomp_frames(&messages(t.as_bytes()))[0].h("receipt-id"),
        "k"
    );
    let mut other = ws_client(addr);
    other.send_frame(
        "SEND",
        &[("destination", "/topic/w")],
        b"to the sockjs websocket",
    );
    let t = match ws.read().unwrap() {
        tungstenite::Message::Text(t) => t.to_string(),
        m => panic!("{m:?}"),
    };
    assert_eq!(
        stomp_frames(&messages(t.as_bytes()))[0].text(),
        "to the sockjs websocket"
    );
    // Broken JSON ends the connection abruptly.
    ws.send(tungstenite::Message::text("[\"a")).unwrap();
    loop {
        match ws.read() {
            Ok(tungstenite::Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

#[test]
fn raw_websocket_under_the_prefix_is_plain_stomp() {
    let (_h, addr) = server(|_| {});
    let url = format!("ws://{addr}/sockjs/websocket");
    let (mut ws, _) = tungstenite::connect(url).unwrap();
    ws.send(tungstenite::Message::text(
        String::from_utf8(connect_frame()).unwrap(),
    ))
    .unwrap();
    match ws.read().unwrap() {
        tungstenite::Message::Text(t) => assert!(t.starts_with("CONNECTED\n"), "{t}"),
        m => panic!("{m:?}"),
    }
}

#[test]
fn heartbeats_a_second_receiver_and_the_disconnect_delay() {
    let (_h, addr) = server(|j| {
        j.heartbeat = Duration::from_millis(300);
        j.disconnect_delay = Duration::from_millis(400);
    });
    let base = "/sockjs/000/beats";
    let (mut s, _, _) = Stream::open(addr, base, "xhr_streaming", false);
    s.piece();
    assert_eq!(s.frame(), "o");
    let t = Instant::now();
    assert_eq!(s.frame(), "h");
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    // A second receiving request while one is attached: told so, and ended.
    let r = call(addr, "POST", &format!("{base}/xhr"), "", b"");
    assert_eq!(r.text(), "c[2010,\"Another connection still open\"]\n");
    // The first still works.
    call(
        addr,
        "POST",
        &format!("{base}/xhr_send"),
        "",
        &payload(&[&connect_frame()]),
    );
    assert_eq!(
        stomp_frames(&messages(s.frame().as_bytes()))[0].command,
        "CONNECTED"
    );
    // Aborted by the client: the session closes ("Connection interrupted").
    drop(s);
    std::thread::sleep(Duration::from_millis(100));
    let r = call(addr, "POST", &format!("{base}/xhr"), "", b"");
    assert_eq!(r.text(), "c[1002,\"Connection interrupted\"]\n");
    // A session with no receiving request is gone after the disconnect delay.
    let p = Poller::open(addr, "/sockjs", "idle");
    p.send(&[&connect_frame()]);
    std::thread::sleep(Duration::from_millis(1000));
    let r = call(
        addr,
        "POST",
        "/sockjs/000/idle/xhr_send",
        "",
        &payload(&[b"\n"]),
    );
    assert_eq!(r.status, 404);
}

#[test]
fn sessions_spread_over_reactors_and_each_request_finds_its_own() {
    let (_h, addr) = common::server_with(|c| {
        c.reactors = 4;
        c.sockjs = Some(SockjsConfig::default());
    });
    let mut ws = ws_client(addr);
    let mut ps: Vec<Poller> = (0..16)
        .map(|i| {
            let p = Poller::open(addr, "/sockjs", &format!("spread-{i}"));
            p.send(&[
                &connect_frame(),
                &frame(
                    "SUBSCRIBE",
                    &[("id", "0"), ("destination", "/topic/all"), ("receipt", "r")],
                    b"",
                ),
            ]);
            p
        })
        .collect();
    for p in &mut ps {
        assert_eq!(p.recv().command, "CONNECTED");
        assert_eq!(p.recv().command, "RECEIPT");
    }
    ws.send_frame("SEND", &[("destination", "/topic/all")], b"everyone");
    for p in &mut ps {
        assert_eq!(p.recv().text(), "everyone");
    }
}

#[test]
fn info_greeting_iframe_cors_and_refusals() {
    let (_h, addr) = server(|_| {});
    let r = call(
        addr,
        "GET",
        "/sockjs/info",
        "Origin: http://app.example\r\n",
        b"",
    );
    assert_eq!(r.status, 200);
    let info: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(info["websocket"], true);
    assert_eq!(
        r.h("access-control-allow-origin"),
        Some("http://app.example")
    );
    assert_eq!(r.h("access-control-allow-credentials"), Some("true"));
    let r = call(addr, "GET", "/sockjs", "", b"");
    assert_eq!(r.text(), "Welcome to SockJS!\n");
    let r = call(
        addr,
        "OPTIONS",
        "/sockjs/000/x/xhr",
        "Access-Control-Request-Headers: a, b\r\n",
        b"",
    );
    assert_eq!(
        (r.status, r.h("access-control-allow-methods")),
        (204, Some("OPTIONS, POST"))
    );
    assert_eq!(r.h("access-control-allow-headers"), Some("a, b"));
    let r = call(addr, "GET", "/sockjs/iframe.html", "", b"");
    assert_eq!(r.status, 200);
    let etag = r.h("etag").unwrap().to_string();
    let r = call(
        addr,
        "GET",
        "/sockjs/iframe.html",
        &format!("If-None-Match: {etag}\r\n"),
        b"",
    );
    assert_eq!(r.status, 304);
    for (method, path, status) in [
        ("GET", "/sockjs/a/a", 404),
        ("GET", "/sockjs/0/0/jsonp", 404),
        ("GET", "/sockjs/0/x/xhr", 405),
        ("GET", "/sockjs/0/x/htmlfile", 500),
        ("GET", "/sockjs/0/x/htmlfile?c=alert(1)", 500),
        ("POST", "/sockjs/0/nope/xhr_send", 404),
        ("GET", "/sockjs/0/0/websocket", 400),
    ] {
        assert_eq!(
            call(addr, method, path, "", b"[\"x\"]").status,
            status,
            "{method} {path}"
        );
    }
    // Bad payloads.
    Poller::open(addr, "/sockjs", "bad");
    for (body, why) in [
        (&b"[\"x"[..], "Broken JSON encoding."),
        (b"", "Payload expected."),
        (b"[1]", "Broken JSON encoding."),
    ] {
        let r = call(addr, "POST", "/sockjs/000/bad/xhr_send", "", body);
        assert_eq!((r.status, r.text()), (500, why));
    }
    // A body over the limit, a chunked body.
    let big = vec![b'x'; 300 * 1024];
    let mut h = Http::open(addr);
    h.send("POST", "/sockjs/000/bad/xhr_send", "", &big[..10]);
    let _ = h;
    let r = call(addr, "POST", "/sockjs/000/bad/xhr_send", "", &big);
    assert_eq!(r.status, 413);
    let mut h = Http::open(addr);
    h.s.write_all(b"POST /sockjs/000/bad/xhr_send HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    assert_eq!(h.response().status, 411);
    // Keep-alive: several requests on one connection, answered in order.
    let mut h = Http::open(addr);
    for _ in 0..3 {
        h.send("GET", "/sockjs/info", "", b"");
        assert_eq!(h.response().status, 200);
    }
}

#[test]
fn the_origin_allowlist_applies_to_sockjs() {
    let (_h, addr) = common::server_with(|c| {
        c.handshake.allowed_origins = Some(vec!["https://good.example".into()]);
    });
    let r = call(
        addr,
        "GET",
        "/sockjs/info",
        "Origin: https://evil.example\r\n",
        b"",
    );
    assert_eq!(r.status, 403);
    let r = call(
        addr,
        "POST",
        "/sockjs/000/o/xhr",
        "Origin: https://evil.example\r\n",
        b"",
    );
    assert_eq!(r.status, 403);
    let r = call(
        addr,
        "GET",
        "/sockjs/info",
        "Origin: https://good.example\r\n",
        b"",
    );
    assert_eq!(r.status, 200);
}

#[test]
fn sessions_are_bounded_and_count_as_connections() {
    let (h, addr) = server(|j| j.max_sessions = 3);
    let _ps: Vec<Poller> = (0..3)
        .map(|i| Poller::open(addr, "/sockjs", &format!("b{i}")))
        .collect();
    let r = call(addr, "POST", "/sockjs/000/b3/xhr", "", b"");
    assert_eq!(r.status, 503);
    let m = ops::settle(&h, |m| {
        m.get("stompbox_connections{transport=\"sockjs\"}") == 3.0
    });
    assert_eq!(m.get("stompbox_connections{transport=\"sockjs\"}"), 3.0);
    let refused = "stompbox_connections_refused_total{reason=\"sockjs_sessions\"}";
    let m = ops::settle(&h, |m| m.get(refused) == 1.0);
    assert_eq!(m.get(refused), 1.0);
}

/// A SockJS session is a STOMP session like any: the users file's password check (answered
/// off the reactor, the CONNECT held meanwhile) and the ACL apply.
#[test]
fn logins_and_the_acl_apply_to_sockjs_sessions() {
    use stompbox::auth::{hash_password, Acl, AclHandle, PasswordAuth};
    let mut users = std::collections::HashMap::new();
    users.insert("alice".to_string(), hash_password("secret").unwrap());
    let acl = Acl::parse("alice read /topic/ok\nalice write /topic/ok\n").unwrap();
    let (_h, addr) = common::server_with(|c| {
        c.session.authenticator = std::sync::Arc::new(PasswordAuth::new(users, false));
        c.acl = Some(std::sync::Arc::new(AclHandle::new(acl)));
    });
    let login = |l: &str, p: &str| {
        frame(
            "CONNECT",
            &[
                ("accept-version", "1.2"),
                ("host", "/"),
                ("login", l),
                ("passcode", p),
            ],
            b"",
        )
    };
    let mut bad = Poller::open(addr, "/sockjs", "auth-bad");
    bad.send(&[&login("alice", "wrong")]);
    assert_eq!(bad.recv().command, "ERROR");
    let mut good = Poller::open(addr, "/sockjs", "auth-good");
    good.send(&[&login("alice", "secret")]);
    assert_eq!(good.recv().command, "CONNECTED");
    good.send(&[&frame(
        "SUBSCRIBE",
        &[
            ("id", "1"),
            ("destination", "/topic/secret"),
            ("receipt", "r"),
        ],
        b"",
    )]);
    let e = good.recv();
    assert_eq!(e.command, "ERROR", "{e:?}");
    assert_eq!(good.poll(), b"c[3000,\"Go away!\"]\n");
}

#[test]
fn cookie_needed_sets_jsessionid_and_says_so_in_info() {
    let (_h, addr) = server(|j| j.cookie_needed = true);
    let r = call(addr, "GET", "/sockjs/info", "", b"");
    let info: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(info["cookie_needed"], true);
    assert_eq!(r.h("set-cookie"), None);
    let r = call(addr, "POST", "/sockjs/000/ck/xhr", "", b"");
    assert_eq!(r.h("set-cookie"), Some("JSESSIONID=dummy; path=/"));
    let r = call(
        addr,
        "POST",
        "/sockjs/000/ck2/xhr",
        "Cookie: a=1; JSESSIONID=abc\r\n",
        b"",
    );
    assert_eq!(r.h("set-cookie"), Some("JSESSIONID=abc; path=/"));
    let r = call(
        addr,
        "POST",
        "/sockjs/000/ck3/xhr",
        "Cookie: JSESSIONID=a,Domain=x\r\n",
        b"",
    );
    assert_eq!(r.h("set-cookie"), Some("JSESSIONID=dummy; path=/"));
}

#[test]
fn the_sockjs_endpoint_can_be_turned_off() {
    let (_h, addr) = common::server_with(|c| c.sockjs = None);
    let r = call(addr, "GET", "/sockjs/info", "", b"");
    assert_ne!(r.status, 200);
}

/// A receiver that does not read: the session's output goes over its bound and the
/// slow-consumer policy closes it, as for any connection; memory stays bounded.
#[test]
fn a_receiver_that_does_not_read_is_a_slow_consumer() {
    let (h, addr) = common::server_with(|c| {
        c.max_outbound = 256 * 1024;
        c.sockjs = Some(SockjsConfig::default());
    });
    let base = "/sockjs/000/slow";
    let (mut s, _, _) = Stream::open(addr, base, "xhr_streaming", false);
    s.piece();
    assert_eq!(s.frame(), "o");
    call(
        addr,
        "POST",
        &format!("{base}/xhr_send"),
        "",
        &payload(&[
            &connect_frame(),
            &frame(
                "SUBSCRIBE",
                &[
                    ("id", "0"),
                    ("destination", "/topic/flood"),
                    ("receipt", "r"),
                ],
                b"",
            ),
        ]),
    );
    while !s.frame().contains("RECEIPT") {}
    // Now stop reading, and publish far more than the bounds (socket buffers included).
    let mut ws = ws_client(addr);
    let body = vec![b'z'; 16 * 1024];
    for _ in 0..2000 {
        ws.send_frame("SEND", &[("destination", "/topic/flood")], &body);
    }
    ws.send_frame("DISCONNECT", &[("receipt", "done")], b"");
    ws.expect_receipt("done");
    let t = Instant::now();
    loop {
        let m = ops::metrics_of(&h);
        if m.get("stompbox_slow_consumer_closes_total") >= 1.0 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "never closed as a slow consumer"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(s);
}

#[test]
fn the_admin_api_lists_and_closes_a_sockjs_session() {
    const TOKEN: &str = "sockjs-admin-token-0123456789";
    let (h, addr) = common::server_with(|c| {
        c.sockjs = Some(SockjsConfig::default());
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        c.admin = Some(stompbox::config::AdminConfig {
            token: Some(TOKEN.to_string()),
            ..Default::default()
        });
    });
    let admin = h.admin_addr().unwrap();
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    let api = |method: &str, path: &str, body: &[u8]| {
        let r = call(admin, method, path, &auth, body);
        assert_eq!(r.status, 200, "{method} {path}: {}", r.text());
        serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()
    };
    let mut p = Poller::open(addr, "/sockjs", "admin-closes-me");
    p.send(&[&frame(
        "CONNECT",
        &[("accept-version", "1.2"), ("host", "/"), ("login", "sj")],
        b"",
    )]);
    let connected = p.recv();
    assert_eq!(connected.command, "CONNECTED");
    // Listed as a SockJS session, with its user, and the address its requests come from.
    let rows = api("GET", "/api/connections?protocol=sockjs", b"")["connections"].clone();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(row["protocol"], "SockJS");
    assert_eq!(row["user"], "sj");
    assert_eq!(row["session"], connected.h("session"), "the STOMP session");
    assert_eq!(row["peer"], "127.0.0.1");
    let id = row["id"].as_str().unwrap().to_string();
    // Closed: the client gets the ERROR, then the SockJS close frame.
    let closed = api(
        "POST",
        &format!("/api/connections/{id}/close"),
        br#"{"reason":"maintenance"}"#,
    );
    assert_eq!(closed["closed"], id.as_str());
    let e = p.recv();
    assert_eq!(e.command, "ERROR", "{e:?}");
    assert!(
        e.h("message")
            .contains("closed by an administrator: maintenance"),
        "{e:?}"
    );
    assert_eq!(p.poll(), b"c[3000,\"Go away!\"]\n");
    // Listed as closing while it answers later polls with the close frame, then gone.
    let v = api("GET", "/api/connections?protocol=sockjs", b"");
    if let Some(row) = v["connections"].as_array().unwrap().first() {
        assert_eq!(row["state"], "closing", "{row}");
    }
    let gone = ops::wait_for(Duration::from_secs(10), || {
        let v = api("GET", "/api/connections?protocol=sockjs", b"");
        v["connections"]
            .as_array()
            .unwrap()
            .is_empty()
            .then_some(())
    });
    assert!(gone.is_some(), "the session is still listed");
}
