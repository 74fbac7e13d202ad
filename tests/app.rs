//! Application destinations, user destinations and the embedding API (issue 8), end to end: an
//! in-process broker from [`BrokerBuilder`] on 127.0.0.1:0 with two reactors, driven by independent
//! clients — raw TCP sockets writing hand-made STOMP frames (read back with the small parser in
//! `common/stomp.rs`, not stompbox's) and `tungstenite` over WebSocket — and the `chat` example run
//! as its own process.
//!
//! Every read has a bounded timeout ([`TIMEOUT`]); "nothing else arrived" is checked with a
//! sentinel sent after the thing that must not arrive, never by waiting for silence. Session
//! ids are `s<reactor>-<n>`, which tells which reactor a connection landed on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use common::stomp::{self, reactor_of, End, Frame, Kind, TIMEOUT};
use stompbox::app::AppError;
use stompbox::Config;
use stompbox::{Broker, BrokerBuilder};

fn config() -> Config {
    common::test_config()
}

fn builder() -> BrokerBuilder {
    BrokerBuilder::new(config())
}

/// Shut down and check every server thread (reactors, workers) ended cleanly.
fn stop(b: Broker) {
    b.shutdown().expect("broker threads end cleanly");
}

/// A metric's value from the Prometheus text (unlabelled series).
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in metrics:\n{text}"))
}

// ---------------------------------------------------------------------------------------------
// Frames and clients: the shared raw client ([`common::stomp::Client`], reads blocking up to
// [`TIMEOUT`] each) in a wrapper that adds a content-length to every SEND.

/// A frame on the wire; headers written as given, plus a content-length for the body of a SEND.
fn frame(cmd: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    if cmd != "SEND" {
        return stomp::frame(cmd, headers, body);
    }
    let len = body.len().to_string();
    let mut h = headers.to_vec();
    h.push(("content-length", &len));
    stomp::frame(cmd, &h, body)
}

struct Client(stomp::Client);

impl Deref for Client {
    type Target = stomp::Client;

    fn deref(&self) -> &stomp::Client {
        &self.0
    }
}

impl DerefMut for Client {
    fn deref_mut(&mut self) -> &mut stomp::Client {
        &mut self.0
    }
}

impl Client {
    /// A STOMP 1.2 session (no heart-beats), with `login` if given.
    fn connect(b: &Broker, kind: Kind, login: Option<&str>) -> Client {
        let c = match kind {
            Kind::Tcp => stomp::Client::connect_tcp(b.tcp_addr().expect("tcp addr")),
            Kind::Ws => stomp::Client::connect_ws(b.ws_addr().expect("ws addr")),
        };
        Client::handshake(c, login)
    }

    fn handshake(c: stomp::Client, login: Option<&str>) -> Client {
        let mut c = Client(c);
        let mut connect = String::from("CONNECT\naccept-version:1.2\nhost:localhost\n");
        connect.push_str("heart-beat:0,0\n");
        if let Some(l) = login {
            connect.push_str(&format!("login:{l}\npasscode:pw\n"));
        }
        connect.push_str("\n\0");
        let f = c.connected(connect.as_bytes());
        assert_eq!(f.h("version"), "1.2");
        c.session = f.h("session").to_string();
        c
    }

    /// A session on a different reactor than `other` (extra connections are opened and dropped).
    fn connect_away_from(b: &Broker, kind: Kind, login: Option<&str>, other: &str) -> Client {
        for _ in 0..8 {
            let c = Client::connect(b, kind, login);
            if reactor_of(&c.session) != reactor_of(other) {
                return c;
            }
        }
        panic!(
            "no connection landed away from reactor {}",
            reactor_of(other)
        );
    }

    /// A session on the same reactor as `other`.
    fn connect_beside(b: &Broker, kind: Kind, login: Option<&str>, other: &str) -> Client {
        for _ in 0..8 {
            let c = Client::connect(b, kind, login);
            if reactor_of(&c.session) == reactor_of(other) {
                return c;
            }
        }
        panic!("no connection landed on reactor {}", reactor_of(other));
    }

    fn reactor(&self) -> usize {
        reactor_of(&self.session)
    }

    /// [`frame`] (a SEND gets a content-length), sent.
    fn send_frame(&mut self, cmd: &str, headers: &[(&str, &str)], body: &[u8]) {
        self.send(&frame(cmd, headers, body));
    }

    /// SEND `body` to `dest` with `extra` headers.
    fn publish(&mut self, dest: &str, extra: &[(&str, &str)], body: &[u8]) {
        let mut h = vec![("destination", dest)];
        h.extend_from_slice(extra);
        self.send_frame("SEND", &h, body);
    }

    /// SUBSCRIBE and wait for its receipt.
    fn subscribe(&mut self, dest: &str, id: &str) {
        let rid = format!("sub-{id}");
        self.send_frame(
            "SUBSCRIBE",
            &[("destination", dest), ("id", id), ("receipt", &rid)],
            b"",
        );
        self.expect_receipt(&rid);
    }

    /// The next frame, or None when the connection ended (EOF, reset, WebSocket close or
    /// protocol error); a read timeout or any other read error fails the test.
    fn next(&mut self) -> Option<Frame> {
        match self.next_frame() {
            Ok(f) => Some(f),
            Err(End::Eof | End::Reset | End::Close(_) | End::WsNoClose | End::Protocol(_)) => None,
            Err(e @ (End::Timeout | End::Other(_))) => {
                panic!("read failed ({e:?}) after {TIMEOUT:?}: {}", self.describe())
            }
        }
    }

    /// An ERROR whose message contains `needle`, then the end of the connection.
    fn expect_error(&mut self, needle: &str) -> Frame {
        let f = self.expect("ERROR");
        let all = format!("{} {}", f.h("message"), f.text());
        assert!(all.contains(needle), "{needle:?} not in {f:?}");
        assert!(
            self.next().is_none(),
            "session {} should end after ERROR",
            self.session
        );
        f
    }
}

/// A topic round trip: `from` publishes, `to` (subscribed as `sub`) receives it.
fn round_trip(from: &mut Client, to: &mut Client, dest: &str, body: &str) {
    from.publish(dest, &[], body.as_bytes());
    let m = to.msg();
    assert_eq!(m.h("destination"), dest, "{m:?}");
    assert_eq!(m.text(), body, "{m:?}");
}

// ---------------------------------------------------------------------------------------------
// Routing

/// A handler that publishes what it saw to `/topic/seen`: the pattern's name, the variables,
/// the destination, a header, the session and the body.
fn seen(
    name: &'static str,
) -> impl Fn(&stompbox::app::AppRequest<'_>, &mut stompbox::app::AppContext) -> Result<(), AppError>
       + Send
       + Sync
       + 'static {
    move |req, ctx| {
        let vars: Vec<String> = req.vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let body = format!(
            "{name}|{}|{}|tag={}|receipt={}|login={}|id={}|{}",
            vars.join(","),
            req.destination,
            req.header("x-tag").unwrap_or("-"),
            req.header("receipt").unwrap_or("-"),
            req.session.login.as_deref().unwrap_or("-"),
            req.session.id,
            String::from_utf8_lossy(req.body),
        );
        ctx.publish("/topic/seen", &[("x-handler", name)], body.as_bytes());
        Ok(())
    }
}

#[test]
fn routing_table_path_variables_and_best_match() {
    let b = builder()
        .app_prefixes(&["/app", "/svc/"])
        .handler("/chat/{room}", seen("room"))
        .inline_handler("/chat/{room}/history", seen("history"))
        .handler("/chat/lobby", seen("lobby"))
        .handler("/{a}/{b}", seen("ab"))
        .handler("/orders/{id}/items/{item}", seen("item"))
        // Equal literal counts: the first registered wins.
        .handler("/tie/{x}/end", seen("tie-first"))
        .handler("/tie/{x}/{y}", seen("tie-fewer"))
        .handler("/{p}/mid/end", seen("tie-second"))
        .start()
        .unwrap();
    for kind in [Kind::Tcp, Kind::Ws] {
        let mut c = Client::connect(&b, kind, Some("carol"));
        c.subscribe("/topic/seen", "s");
        let session = c.session.clone();
        let cases: &[(&str, &str)] = &[
            ("/app/chat/5", "room|room=5|/app/chat/5"),
            ("/app/chat/lobby", "lobby||/app/chat/lobby"),
            ("/app/chat/5/history", "history|room=5|/app/chat/5/history"),
            ("/app/x/y", "ab|a=x,b=y|/app/x/y"),
            (
                "/app/orders/17/items/ab-3",
                "item|id=17,item=ab-3|/app/orders/17/items/ab-3",
            ),
            ("/app/tie/q/end", "tie-first|x=q|/app/tie/q/end"),
            ("/app/tie/q/other", "tie-fewer|x=q,y=other|/app/tie/q/other"),
            ("/app/zz/mid/end", "tie-second|p=zz|/app/zz/mid/end"),
            // The second prefix (registered with a trailing slash).
            ("/svc/chat/9", "room|room=9|/svc/chat/9"),
            // Empty segments are ignored, like the pattern's.
            ("/app//chat//6", "room|room=6|/app//chat//6"),
            // Unicode in a variable.
            ("/app/chat/κόσμε", "room|room=κόσμε|/app/chat/κόσμε"),
        ];
        for (i, (dest, want)) in cases.iter().enumerate() {
            let body = format!("body {i}");
            let rid = format!("r{i}");
            c.publish(dest, &[("x-tag", "t"), ("receipt", &rid)], body.as_bytes());
            let mut got_msg = None;
            let mut got_receipt = false;
            while got_msg.is_none() || !got_receipt {
                let f = c.recv();
                match f.command.as_str() {
                    "MESSAGE" => got_msg = Some(f),
                    "RECEIPT" => {
                        assert_eq!(f.h("receipt-id"), rid, "{f:?}");
                        got_receipt = true;
                    }
                    _ => panic!("{kind:?} {dest}: {f:?}"),
                }
            }
            let m = got_msg.unwrap();
            let want = format!("{want}|tag=t|receipt=-|login=carol|id={session}|{body}");
            assert_eq!(m.text(), want, "{kind:?} {dest}");
            assert_eq!(m.h("destination"), "/topic/seen");
            assert_eq!(m.h("subscription"), "s");
            assert!(m.get("x-handler").is_some(), "{m:?}");
        }
        // A destination that only starts with a prefix's letters is an ordinary topic.
        c.subscribe("/application/x", "plain");
        let mut p = c.another(&b);
        round_trip(&mut p, &mut c, "/application/x", "not routed");
    }
    stop(b);
}

impl Client {
    /// Another anonymous session on the same transport.
    fn another(&self, b: &Broker) -> Client {
        let kind = if self.is_ws() { Kind::Ws } else { Kind::Tcp };
        Client::connect(b, kind, None)
    }
}

#[test]
fn send_without_handler_gets_error_naming_the_destination() {
    let b = builder()
        .handler("/chat/{room}", seen("room"))
        .subscribe_handler("/state", |_| Ok(None))
        .start()
        .unwrap();
    for kind in [Kind::Tcp, Kind::Ws] {
        let mut other = Client::connect(&b, kind, None);
        other.subscribe("/topic/seen", "s");
        for dest in [
            "/app/nothing/here",
            "/app/chat",
            "/app/chat/5/extra",
            "/app",
            // A subscribe mapping is not a SEND handler.
            "/app/state",
        ] {
            let mut c = Client::connect(&b, kind, None);
            c.publish(dest, &[("receipt", "r-none")], b"x");
            let e = c.expect_error(dest);
            assert_eq!(e.get("receipt-id"), Some("r-none"), "{e:?}");
        }
        // SUBSCRIBE to an application destination without a subscribe handler.
        let mut c = Client::connect(&b, kind, None);
        c.send_frame(
            "SUBSCRIBE",
            &[("destination", "/app/chat/5"), ("id", "1")],
            b"",
        );
        c.expect_error("/app/chat/5");
        // An application SEND inside a transaction is refused.
        let mut c = Client::connect(&b, kind, None);
        c.send_frame("BEGIN", &[("transaction", "t1")], b"");
        c.publish("/app/chat/5", &[("transaction", "t1")], b"x");
        c.expect_error("transaction");
        // Everyone else is unaffected.
        let mut p = Client::connect(&b, kind, None);
        p.publish("/app/chat/1", &[], b"still here");
        assert!(other.msg().text().ends_with("|still here"));
    }
    stop(b);
}

#[test]
fn handler_error_is_an_error_for_that_session_only() {
    let b = builder()
        .handler("/chat/{room}", |req, ctx| {
            let room = req.var("room").unwrap();
            if room == "13" {
                return Err(AppError::new(format!("room {room} is unlucky")));
            }
            ctx.publish(&format!("/topic/chat/{room}"), &[], req.body);
            Ok(())
        })
        .inline_handler("/inline/{room}", |req, _| {
            Err(AppError::new(format!("inline refuses {}", req.destination)))
        })
        .start()
        .unwrap();
    for kind in [Kind::Tcp, Kind::Ws] {
        let mut sub = Client::connect(&b, kind, None);
        sub.subscribe("/topic/chat/1", "s");
        let mut publisher = Client::connect_away_from(&b, kind, None, &sub.session);
        let mut bad = Client::connect_beside(&b, kind, None, &sub.session);
        bad.subscribe("/topic/chat/1", "s");
        publisher.publish("/app/chat/1", &[], b"before");
        assert_eq!(sub.msg().text(), "before");
        assert_eq!(bad.msg().text(), "before");

        bad.publish("/app/chat/13", &[("receipt", "r13")], b"x");
        let e = bad.expect_error("room 13 is unlucky");
        assert_eq!(e.get("receipt-id"), Some("r13"));

        let mut bad2 = Client::connect(&b, kind, None);
        bad2.publish("/app/inline/4", &[("receipt", "ri")], b"x");
        let e = bad2.expect_error("inline refuses /app/inline/4");
        assert_eq!(e.get("receipt-id"), Some("ri"));

        // The others carry on; the subscriber got no ERROR in between.
        publisher.publish("/app/chat/1", &[], b"after");
        assert_eq!(sub.msg().text(), "after");
        publisher.publish("/app/chat/1", &[("receipt", "ok")], b"with receipt");
        publisher.expect_receipt("ok");
        assert_eq!(sub.msg().text(), "with receipt");
    }
    stop(b);
}

#[test]
fn handler_panic_is_an_error_and_the_broker_goes_on() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c2 = Arc::clone(&calls);
    let b = builder()
        // One worker: it must survive the panic for the next SEND to be handled at all.
        .workers(1, 8)
        .handler("/boom/{n}", move |req, ctx| {
            c2.fetch_add(1, Ordering::SeqCst);
            if req.body == b"panic" {
                panic!("handler panics on purpose");
            }
            ctx.publish("/topic/boom", &[], req.body);
            Ok(())
        })
        .inline_handler("/inline-boom", |req, ctx| {
            if req.body == b"panic" {
                panic!("inline handler panics on purpose");
            }
            ctx.publish("/topic/boom", &[], req.body);
            Ok(())
        })
        .start()
        .unwrap();
    let mut sub = Client::connect(&b, Kind::Tcp, None);
    sub.subscribe("/topic/boom", "s");
    for (dest, kind) in [
        ("/app/boom/1", Kind::Tcp),
        ("/app/boom/2", Kind::Ws),
        ("/app/inline-boom", Kind::Tcp),
        ("/app/inline-boom", Kind::Ws),
    ] {
        // Land the panicking session on the subscriber's reactor (inline handlers run there).
        let mut c = Client::connect_beside(&b, kind, None, &sub.session);
        c.publish(dest, &[("receipt", "rp")], b"panic");
        let e = c.expect_error(dest);
        assert!(e.h("message").contains("panicked"), "{e:?}");
        assert_eq!(e.get("receipt-id"), Some("rp"));
        // Same handler, same reactor, next SEND: works.
        let mut p = Client::connect_beside(&b, kind, None, &sub.session);
        p.publish(dest, &[], b"fine");
        assert_eq!(sub.msg().text(), "fine");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    // No server thread died: a clean shutdown joins them all.
    stop(b);
}

#[test]
fn busy_pool_answers_error_busy() {
    let (started_tx, started) = mpsc::channel::<()>();
    let (release, release_rx) = mpsc::channel::<()>();
    let started_tx = Mutex::new(started_tx);
    let release_rx = Mutex::new(release_rx);
    let b = builder()
        .workers(1, 1)
        .handler("/block", move |_, _| {
            started_tx.lock().unwrap().send(()).unwrap();
            // Bounded: a broken test never hangs a worker for long.
            let _ = release_rx
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(10));
            Ok(())
        })
        .handler("/quick", |req, ctx| {
            ctx.publish("/topic/quick", &[], req.body);
            Ok(())
        })
        .start()
        .unwrap();
    let before = metric(&b.metrics(), "stompbox_app_busy_total");
    assert_eq!(before, 0);
    // A's SEND occupies the only worker.
    let mut a = Client::connect(&b, Kind::Tcp, None);
    a.publish("/app/block", &[("receipt", "ra")], b"");
    started.recv_timeout(TIMEOUT).expect("handler started");
    // B's first SEND fills the queue (1); its second one, in the same write, is refused.
    let mut bb = Client::connect(&b, Kind::Ws, None);
    let mut two = frame(
        "SEND",
        &[("destination", "/app/block"), ("receipt", "q")],
        b"",
    );
    two.extend(frame(
        "SEND",
        &[("destination", "/app/quick"), ("receipt", "over")],
        b"",
    ));
    bb.send(&two);
    let e = bb.expect_error("busy");
    assert_eq!(e.get("receipt-id"), Some("over"), "{e:?}");
    // Topics are not affected by a full pool.
    let mut s = Client::connect(&b, Kind::Tcp, None);
    s.subscribe("/topic/t", "t");
    let mut p = Client::connect(&b, Kind::Ws, None);
    round_trip(&mut p, &mut s, "/topic/t", "topics flow");
    // Release both blocked jobs: A gets its receipt; the queue drains.
    release.send(()).unwrap();
    a.expect_receipt("ra");
    started.recv_timeout(TIMEOUT).expect("queued job ran");
    release.send(()).unwrap();
    s.subscribe("/topic/quick", "q");
    p.publish("/app/quick", &[("receipt", "rq")], b"works again");
    p.expect_receipt("rq");
    assert_eq!(s.msg().text(), "works again");
    // The refusal is counted (metrics are published once per reactor turn: poll briefly).
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let n = metric(&b.metrics(), "stompbox_app_busy_total");
        if n == 1 {
            break;
        }
        assert!(n < 1 && Instant::now() < deadline, "app_busy_total = {n}");
        std::thread::sleep(Duration::from_millis(10));
    }
    stop(b);
}

#[test]
fn inline_and_pool_handlers_both_work() {
    fn on_thread(
        name: &'static str,
    ) -> impl Fn(
        &stompbox::app::AppRequest<'_>,
        &mut stompbox::app::AppContext,
    ) -> Result<(), AppError>
           + Send
           + Sync
           + 'static {
        move |req, ctx| {
            let thread = std::thread::current().name().unwrap_or("?").to_string();
            let mut body = req.body.to_vec();
            body.extend_from_slice(b"!");
            ctx.publish(
                &format!("/topic/{name}"),
                &[("content-type", "text/plain"), ("x-thread", &thread)],
                &body,
            );
            Ok(())
        }
    }
    let b = builder()
        .handler("/pool", on_thread("pool"))
        .inline_handler("/inline", on_thread("inline"))
        .start()
        .unwrap();
    for kind in [Kind::Tcp, Kind::Ws] {
        let mut s = Client::connect(&b, kind, None);
        s.subscribe("/topic/pool", "p");
        s.subscribe("/topic/inline", "i");
        let mut p = Client::connect_away_from(&b, kind, None, &s.session);
        // Binary with NULs survives both paths (content-length framed).
        let body = b"a\0b\xffc";
        for (dest, sub, thread) in [
            ("/app/pool", "p", "app-worker-"),
            ("/app/inline", "i", "reactor-"),
        ] {
            p.publish(dest, &[("receipt", dest)], body);
            p.expect_receipt(dest);
            let m = s.msg();
            assert_eq!(m.h("subscription"), sub);
            assert_eq!(m.h("content-type"), "text/plain");
            assert_eq!(m.body, b"a\0b\xffc!", "{m:?}");
            assert!(m.h("x-thread").starts_with(thread), "{m:?}");
            if dest == "/app/inline" {
                // Inline: on the reactor that read the frame.
                assert_eq!(m.h("x-thread"), format!("reactor-{}", p.reactor()));
            }
        }
    }
    stop(b);
}

#[test]
fn subscribe_mapping_answers_once_to_that_subscriber_only() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c2 = Arc::clone(&calls);
    let b = builder()
        .subscribe_handler("/state/{key}", move |req| {
            let n = c2.fetch_add(1, Ordering::SeqCst) + 1;
            match req.var("key") {
                Some("none") => Ok(None),
                Some("bad") => Err(AppError::new("no such state")),
                Some(k) => Ok(Some((
                    vec![
                        ("content-type".into(), "application/json".into()),
                        ("x-key".into(), k.into()),
                        // The broker's own headers win over the handler's.
                        ("subscription".into(), "forged".into()),
                    ],
                    format!(
                        "{{\"key\":\"{k}\",\"n\":{n},\"user\":\"{}\"}}",
                        req.session.user()
                    )
                    .into_bytes(),
                ))),
                None => unreachable!(),
            }
        })
        .start()
        .unwrap();
    let mut a = Client::connect(&b, Kind::Tcp, Some("alice"));
    let mut other = Client::connect(&b, Kind::Ws, Some("alice"));
    other.subscribe("/topic/sentinel", "sent");

    a.send_frame(
        "SUBSCRIBE",
        &[
            ("destination", "/app/state/9"),
            ("id", "st"),
            ("receipt", "r1"),
        ],
        b"",
    );
    let m = a.msg();
    assert_eq!(m.h("subscription"), "st");
    assert_eq!(m.h("destination"), "/app/state/9");
    assert!(!m.h("message-id").is_empty());
    assert_eq!(m.h("content-type"), "application/json");
    assert_eq!(m.h("x-key"), "9");
    assert_eq!(m.text(), r#"{"key":"9","n":1,"user":"alice"}"#);
    // The RECEIPT comes after the answer.
    a.expect_receipt("r1");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // No broker subscription was created: only the sentinel topic subscription exists.
    a.subscribe("/topic/sentinel", "sa");
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let n = metric(&b.metrics(), "stompbox_subscriptions");
        if n >= 2 {
            assert_eq!(n, 2, "the /app subscription must not be routed");
            break;
        }
        assert!(Instant::now() < deadline, "subscriptions stuck at {n}");
        std::thread::sleep(Duration::from_millis(10));
    }
    // A message published to the /app destination reaches nobody; the other session of the
    // same user got nothing either (its next frame is the sentinel).
    b.publish("/app/state/9", &[], b"must not arrive");
    a.publish("/topic/sentinel", &[], b"sentinel");
    assert_eq!(a.msg().text(), "sentinel");
    assert_eq!(other.msg().text(), "sentinel");

    // A second SUBSCRIBE runs the handler again, for that subscriber only.
    a.subscribe_answer(
        "/app/state/abc",
        "st2",
        r#"{"key":"abc","n":2,"user":"alice"}"#,
    );
    // None: just the receipt. Unsubscribing from a mapping is fine.
    a.subscribe("/app/state/none", "st3");
    a.send_frame("UNSUBSCRIBE", &[("id", "st"), ("receipt", "u")], b"");
    a.expect_receipt("u");
    // An anonymous subscriber is named by its session id.
    let mut anon = Client::connect(&b, Kind::Ws, None);
    let want = format!(r#"{{"key":"k","n":4,"user":"{}"}}"#, anon.session);
    anon.subscribe_answer("/app/state/k", "x", &want);
    // An error from a subscribe handler: ERROR for that session.
    anon.send_frame(
        "SUBSCRIBE",
        &[
            ("destination", "/app/state/bad"),
            ("id", "y"),
            ("receipt", "rb"),
        ],
        b"",
    );
    let e = anon.expect_error("no such state");
    assert_eq!(e.get("receipt-id"), Some("rb"));
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    // Nothing was sent to the other session meanwhile.
    a.publish("/topic/sentinel", &[], b"sentinel 2");
    assert_eq!(other.msg().text(), "sentinel 2");
    stop(b);
}

impl Client {
    /// SUBSCRIBE to a subscribe mapping: its one MESSAGE, then the receipt.
    fn subscribe_answer(&mut self, dest: &str, id: &str, body: &str) {
        self.send_frame(
            "SUBSCRIBE",
            &[("destination", dest), ("id", id), ("receipt", "ra")],
            b"",
        );
        let m = self.msg();
        assert_eq!(m.h("subscription"), id);
        assert_eq!(m.h("destination"), dest);
        assert_eq!(m.text(), body);
        self.expect_receipt("ra");
    }
}

// ---------------------------------------------------------------------------------------------
// User destinations

#[test]
fn user_destinations_reach_every_session_of_the_user_on_any_reactor() {
    let b = builder()
        .handler("/whoami", |req, ctx| {
            let text = format!("you are {}", req.session.user());
            ctx.reply("/queue/x", &[("x-from", "handler")], text.as_bytes());
            Ok(())
        })
        .inline_handler("/tell/{user}", |req, ctx| {
            let to = req.var("user").unwrap();
            ctx.send_to_user(to, "/queue/x", &[], req.body);
            Ok(())
        })
        .start()
        .unwrap();
    let mut a1 = Client::connect(&b, Kind::Tcp, Some("alice"));
    let mut a2 = Client::connect_away_from(&b, Kind::Ws, Some("alice"), &a1.session);
    assert_ne!(a1.reactor(), a2.reactor());
    let mut bob = Client::connect(&b, Kind::Tcp, Some("bob"));
    let mut anon = Client::connect(&b, Kind::Ws, None);
    let mut eve = Client::connect(&b, Kind::Tcp, Some("eve"));
    for (c, id) in [
        (&mut a1, "u"),
        (&mut a2, "u"),
        (&mut bob, "u"),
        (&mut anon, "u"),
        (&mut eve, "u"),
    ] {
        c.subscribe("/user/queue/x", id);
    }
    let expect_user_msg = |c: &mut Client, body: &str| {
        let m = c.msg();
        assert_eq!(m.h("destination"), "/user/queue/x", "{m:?}");
        assert_eq!(m.h("subscription"), "u");
        assert_eq!(m.text(), body, "session {}", c.session);
        m
    };

    // Broker::send_to_user from the embedding application's thread.
    let h = std::thread::scope(|s| {
        s.spawn(|| b.send_to_user("alice", "/queue/x", &[("x-k", "v")], b"for alice"))
            .join()
    });
    h.unwrap();
    for c in [&mut a1, &mut a2] {
        assert_eq!(expect_user_msg(c, "for alice").h("x-k"), "v");
    }
    // ctx.reply from alice's session: both of alice's sessions.
    a1.publish("/app/whoami", &[], b"");
    for c in [&mut a1, &mut a2] {
        assert_eq!(expect_user_msg(c, "you are alice").h("x-from"), "handler");
    }
    // ctx.send_to_user from another user's handler.
    bob.publish("/app/tell/alice", &[], b"hi alice, bob here");
    for c in [&mut a1, &mut a2] {
        expect_user_msg(c, "hi alice, bob here");
    }
    // A client may SEND to a user's internal destination directly.
    bob.publish("/user/alice/queue/x", &[], b"direct");
    for c in [&mut a1, &mut a2] {
        expect_user_msg(c, "direct");
    }
    // An anonymous session is addressed by its session id.
    b.send_to_user(&anon.session, "/queue/x", &[], b"for the anonymous one");
    expect_user_msg(&mut anon, "for the anonymous one");
    anon.publish("/app/whoami", &[], b"");
    let you = format!("you are {}", anon.session);
    expect_user_msg(&mut anon, &you);

    // Nothing of the above reached bob, eve or the anonymous session: their next message is
    // the sentinel sent to them now.
    for (c, user) in [(&mut bob, "bob".to_string()), (&mut eve, "eve".to_string())] {
        b.send_to_user(&user, "/queue/x", &[], b"sentinel");
        expect_user_msg(c, "sentinel");
    }
    let anon_id = anon.session.clone();
    b.send_to_user(&anon_id, "/queue/x", &[], b"sentinel");
    expect_user_msg(&mut anon, "sentinel");
    // Another queue of the same user is a different destination.
    a2.subscribe("/user/queue/other", "o");
    b.send_to_user("alice", "/queue/other", &[], b"other");
    let m = a2.msg();
    assert_eq!(
        (m.h("destination"), m.h("subscription"), m.text()),
        ("/user/queue/other", "o", "other")
    );
    // After UNSUBSCRIBE, a session no longer receives its user's messages; the other does.
    a1.send_frame("UNSUBSCRIBE", &[("id", "u"), ("receipt", "gone")], b"");
    a1.expect_receipt("gone");
    b.send_to_user("alice", "/queue/x", &[], b"only a2");
    expect_user_msg(&mut a2, "only a2");
    a1.subscribe("/topic/s", "s");
    b.publish("/topic/s", &[], b"a1 sentinel");
    assert_eq!(a1.msg().text(), "a1 sentinel");
    stop(b);
}

#[test]
fn a_user_cannot_subscribe_to_another_users_destination() {
    let b = builder().start().unwrap();
    let mut alice = Client::connect(&b, Kind::Tcp, Some("alice"));
    alice.subscribe("/user/queue/x", "u");
    let mut eve = Client::connect_beside(&b, Kind::Tcp, Some("eve"), &alice.session);
    eve.subscribe("/user/queue/x", "own");
    eve.send_frame(
        "SUBSCRIBE",
        &[
            ("destination", "/user/alice/queue/x"),
            ("id", "spy"),
            ("receipt", "spy"),
        ],
        b"",
    );
    let f = eve.recv();
    if f.command == "ERROR" {
        return stop(b); // refused outright: fine
    }
    assert_eq!(f.command, "RECEIPT", "{f:?}");
    b.send_to_user("alice", "/queue/x", &[], b"secret");
    assert_eq!(alice.msg().text(), "secret");
    b.send_to_user("eve", "/queue/x", &[], b"sentinel");
    let m = eve.msg();
    assert_eq!(
        (m.h("subscription"), m.text()),
        ("own", "sentinel"),
        "eve read alice's user destination"
    );
    stop(b);
}

#[test]
fn custom_user_and_app_prefixes() {
    let b = builder()
        .app_prefixes(&["/rpc"])
        .user_prefix("/me")
        .handler("/ping", |_, ctx| {
            ctx.reply("/queue/pong", &[], b"pong");
            Ok(())
        })
        .start()
        .unwrap();
    let mut c = Client::connect(&b, Kind::Ws, Some("zed"));
    c.subscribe("/me/queue/pong", "p");
    c.publish("/rpc/ping", &[], b"");
    let m = c.msg();
    assert_eq!((m.h("destination"), m.text()), ("/me/queue/pong", "pong"));
    // /app is an ordinary destination now.
    c.subscribe("/app/ping", "plain");
    c.publish("/app/ping", &[], b"plain topic");
    let m = c.msg();
    assert_eq!((m.h("subscription"), m.text()), ("plain", "plain topic"));
    stop(b);
}

// ---------------------------------------------------------------------------------------------
// Receipts, publishing from outside, blocking handlers

#[test]
fn pool_send_receipt_comes_after_the_handler_returned() {
    let done = Arc::new(AtomicUsize::new(0));
    let d2 = Arc::clone(&done);
    let b = builder()
        .handler("/slow/{n}", move |req, ctx| {
            std::thread::sleep(Duration::from_millis(150));
            ctx.publish("/topic/slow", &[], req.body);
            d2.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .start()
        .unwrap();
    for kind in [Kind::Tcp, Kind::Ws] {
        let mut c = Client::connect(&b, kind, None);
        c.subscribe("/topic/slow", "s");
        let before = done.load(Ordering::SeqCst);
        let t0 = Instant::now();
        c.publish("/app/slow/1", &[("receipt", "r")], b"x");
        // RECEIPT and MESSAGE in either order; the handler had returned before the RECEIPT.
        let mut receipt = false;
        let mut message = false;
        while !(receipt && message) {
            let f = c.recv();
            match f.command.as_str() {
                "RECEIPT" => {
                    assert_eq!(f.h("receipt-id"), "r");
                    assert_eq!(
                        done.load(Ordering::SeqCst),
                        before + 1,
                        "RECEIPT before the handler returned"
                    );
                    assert!(t0.elapsed() >= Duration::from_millis(150));
                    receipt = true;
                }
                "MESSAGE" => message = true,
                _ => panic!("{f:?}"),
            }
        }
        // No receipt was asked: none comes (the next frame is a sentinel's receipt).
        c.publish("/app/slow/2", &[], b"y");
        assert_eq!(c.msg().text(), "y");
        c.send_frame("UNSUBSCRIBE", &[("id", "s"), ("receipt", "u")], b"");
        c.expect_receipt("u");
    }
    stop(b);
}

/// SENDs from one session to an application destination are handled in the order sent, so a
/// handler that publishes what it gets keeps the publisher's order (as topics do).
#[test]
fn pool_handlers_keep_one_sessions_order() {
    let b = builder()
        .workers(4, 64)
        .handler("/ordered", |req, ctx| {
            // Earlier messages take longer: a pool that runs them side by side reorders them.
            let n: u64 = std::str::from_utf8(req.body).unwrap().parse().unwrap();
            std::thread::sleep(Duration::from_millis(5 * (8 - n % 8)));
            ctx.publish("/topic/ordered", &[], req.body);
            Ok(())
        })
        .start()
        .unwrap();
    let mut s = Client::connect(&b, Kind::Tcp, None);
    s.subscribe("/topic/ordered", "o");
    let mut p = Client::connect(&b, Kind::Tcp, None);
    for i in 0..16 {
        p.publish("/app/ordered", &[], i.to_string().as_bytes());
    }
    let got: Vec<String> = (0..16).map(|_| s.msg().text().to_string()).collect();
    let want: Vec<String> = (0..16).map(|i: i32| i.to_string()).collect();
    assert_eq!(got, want, "one session's application SENDs were reordered");
    stop(b);
}

#[test]
fn broker_publish_from_another_thread_reaches_subscribers() {
    let b = builder().start().unwrap();
    let mut s1 = Client::connect(&b, Kind::Tcp, None);
    let mut s2 = Client::connect_away_from(&b, Kind::Ws, None, &s1.session);
    for c in [&mut s1, &mut s2] {
        c.subscribe("/topic/news", "n");
    }
    s2.subscribe("/queue/jobs", "j");
    let broker = &b;
    std::thread::scope(|sc| {
        sc.spawn(move || {
            for i in 0..200 {
                broker.publish(
                    "/topic/news",
                    &[("content-type", "text/plain"), ("x-i", &i.to_string())],
                    format!("news {i}").as_bytes(),
                );
                if i % 50 == 0 {
                    broker.publish("/queue/jobs", &[], format!("job {i}").as_bytes());
                }
            }
        });
    });
    for c in [&mut s1, &mut s2] {
        let (mut news, mut jobs) = (Vec::new(), Vec::new());
        while news.len() < 200 || (c.is_ws() && jobs.len() < 4) {
            let m = c.msg();
            assert!(!m.h("message-id").is_empty());
            match m.h("destination") {
                "/topic/news" => {
                    assert_eq!(m.h("subscription"), "n");
                    assert_eq!(m.h("content-type"), "text/plain");
                    assert_eq!(
                        m.h("x-i"),
                        news.len().to_string(),
                        "in order from one thread"
                    );
                    assert_eq!(m.text(), format!("news {}", news.len()));
                    news.push(());
                }
                "/queue/jobs" => {
                    assert_eq!(m.h("subscription"), "j");
                    jobs.push(m.text().to_string());
                }
                _ => panic!("{m:?}"),
            }
        }
        if c.is_ws() {
            assert_eq!(jobs, ["job 0", "job 50", "job 100", "job 150"]);
        }
    }
    stop(b);
}

/// The acceptance test: handlers sleeping 1 s on every pool worker do not delay topic
/// deliveries between other sessions (nor the sleeping sender's own).
#[test]
fn blocking_handler_does_not_delay_topic_deliveries() {
    let (started_tx, started) = mpsc::channel::<()>();
    let started_tx = Mutex::new(started_tx);
    let finished = Arc::new(AtomicBool::new(false));
    let f2 = Arc::clone(&finished);
    let b = builder()
        .workers(2, 16)
        .handler("/sleep", move |_, _| {
            started_tx.lock().unwrap().send(()).unwrap();
            std::thread::sleep(Duration::from_secs(1));
            f2.store(true, Ordering::SeqCst);
            Ok(())
        })
        .inline_handler("/echo", |req, ctx| {
            ctx.publish("/topic/fast", &[], req.body);
            Ok(())
        })
        .start()
        .unwrap();
    // Sender of the sleeping SENDs, and two sessions on different reactors.
    let mut sleeper = Client::connect(&b, Kind::Tcp, None);
    sleeper.subscribe("/topic/fast", "f");
    let mut subscriber = Client::connect_beside(&b, Kind::Ws, None, &sleeper.session);
    subscriber.subscribe("/topic/fast", "f");
    let mut publisher = Client::connect_away_from(&b, Kind::Tcp, None, &sleeper.session);

    let t_send = Instant::now();
    // One session's SENDs run in order on one worker (per-session order), so one sleeps.
    sleeper.publish("/app/sleep", &[("receipt", "z0")], b"");
    started
        .recv_timeout(TIMEOUT)
        .expect("the sleeping handler starts");
    // A worker is asleep now.
    let t0 = Instant::now();
    let mut worst = Duration::ZERO;
    for i in 0..20 {
        let t = Instant::now();
        let body = format!("m{i}");
        if i % 2 == 0 {
            round_trip(&mut publisher, &mut subscriber, "/topic/fast", &body);
        } else {
            // Inline application handlers keep working too.
            publisher.publish("/app/echo", &[], body.as_bytes());
            assert_eq!(subscriber.msg().text(), body);
        }
        worst = worst.max(t.elapsed());
        assert_eq!(sleeper.msg().text(), body);
    }
    let took = t0.elapsed();
    assert!(
        !finished.load(Ordering::SeqCst),
        "the handlers finished before the deliveries did ({took:?})"
    );
    assert!(
        worst < Duration::from_millis(250),
        "a topic round trip took {worst:?} while handlers slept"
    );
    eprintln!("20 round trips in {took:?} (worst {worst:?}) while a worker slept");
    // Its receipt comes when it returns, not before.
    assert_eq!(sleeper.expect("RECEIPT").h("receipt-id"), "z0");
    assert!(t_send.elapsed() >= Duration::from_secs(1));
    assert!(finished.load(Ordering::SeqCst));
    stop(b);
}

#[test]
fn pool_job_for_a_closed_session_reaches_no_one_else() {
    // One reactor: the next connection reuses the closed one's slab slot.
    let (started_tx, started) = mpsc::channel::<()>();
    let (release, release_rx) = mpsc::channel::<()>();
    let started_tx = Mutex::new(started_tx);
    let release_rx = Mutex::new(release_rx);
    let b = BrokerBuilder::new(Config {
        reactors: 1,
        ..config()
    })
    .workers(1, 4)
    .handler("/fail", move |_, _| {
        started_tx.lock().unwrap().send(()).unwrap();
        let _ = release_rx
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(10));
        Err(AppError::new("late failure"))
    })
    .subscribe_handler("/late", |_| Ok(Some((Vec::new(), b"late answer".to_vec()))))
    .start()
    .unwrap();
    let mut gone = Client::connect(&b, Kind::Tcp, None);
    gone.publish("/app/fail", &[("receipt", "late")], b"");
    started.recv_timeout(TIMEOUT).unwrap();
    gone.send_frame("DISCONNECT", &[("receipt", "bye")], b"");
    gone.expect_receipt("bye");
    assert!(gone.next().is_none());
    drop(gone);
    std::thread::sleep(Duration::from_millis(50));
    let mut next = Client::connect(&b, Kind::Tcp, None);
    next.subscribe("/topic/t", "t");
    release.send(()).unwrap();
    // The failed job's ERROR must not reach the new session.
    std::thread::sleep(Duration::from_millis(100));
    b.publish("/topic/t", &[], b"still open");
    let f = next.recv();
    assert_eq!(
        (f.command.as_str(), f.text()),
        ("MESSAGE", "still open"),
        "{f:?}"
    );
    stop(b);
}

// ---------------------------------------------------------------------------------------------
// The chat example, as its own process

/// The `chat` example binary, built (debug) if needed.
fn chat_binary() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bin = target.join("debug").join("examples").join("chat");
    // Always ask cargo: a no-op when fresh, and never a stale binary.
    let t0 = Instant::now();
    let mut child = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", "stompbox", "--example", "chat"])
        .current_dir(&root)
        .stdin(Stdio::null())
        .spawn()
        .expect("run cargo build --example chat");
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("cargo build --example chat took over 600 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "cargo build --example chat: {status}");
    eprintln!("cargo build --example chat: {:?}", t0.elapsed());
    assert!(bin.exists(), "no {}", bin.display());
    bin
}

/// Kills the example if the test fails before stopping it.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Start the chat example on a free port; returns it and its address (from its log line).
fn start_chat() -> (Proc, SocketAddr) {
    let mut child = Command::new(chat_binary())
        .args(["--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the chat example");
    let stderr = child.stderr.take().unwrap();
    let proc = Proc(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix("chat: open http://") {
                let addr = rest.split('/').next().unwrap_or_default().to_string();
                let _ = tx.send(addr);
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the chat example prints its address");
    (proc, addr.parse().expect("a socket address"))
}

/// A plain HTTP GET: (status line, headers, body).
fn http_get(addr: SocketAddr, path: &str) -> (String, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: test\r\n\r\n"
    )
    .unwrap();
    let mut all = Vec::new();
    let mut tmp = [0u8; 65536];
    loop {
        match s.read(&mut tmp) {
            Ok(0) => break,
            Ok(n) => all.extend_from_slice(&tmp[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("GET {path}: {e}"),
        }
        // Stop at Content-Length (the server also closes).
        if let Some(p) = all.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&all[..p]).to_string();
            let len = head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            });
            if len.is_some_and(|n| all.len() >= p + 4 + n) {
                break;
            }
        }
    }
    let p = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP head");
    let head = String::from_utf8_lossy(&all[..p]).to_string();
    let (status, headers) = head.split_once("\r\n").unwrap_or((&head, ""));
    (
        status.to_string(),
        headers.to_string(),
        all[p + 4..].to_vec(),
    )
}

/// A minimal JSON reader for the chat's bodies (objects, arrays, strings, numbers).
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Obj(Vec<(String, Json)>),
    Arr(Vec<Json>),
    Str(String),
    Num(f64),
}

impl Json {
    fn parse(s: &str) -> Json {
        let chars: Vec<char> = s.chars().collect();
        let mut i = 0;
        let v = json_value(&chars, &mut i);
        skip_ws(&chars, &mut i);
        assert_eq!(i, chars.len(), "trailing data in {s:?}");
        v
    }

    fn get(&self, k: &str) -> &Json {
        match self {
            Json::Obj(m) => m
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v)
                .unwrap_or_else(|| panic!("no {k:?} in {self:?}")),
            _ => panic!("not an object: {self:?}"),
        }
    }

    fn str(&self) -> &str {
        match self {
            Json::Str(s) => s,
            _ => panic!("not a string: {self:?}"),
        }
    }
}

fn skip_ws(c: &[char], i: &mut usize) {
    while c.get(*i).is_some_and(|c| c.is_whitespace()) {
        *i += 1;
    }
}

fn json_value(c: &[char], i: &mut usize) -> Json {
    skip_ws(c, i);
    match c.get(*i) {
        Some('{') => {
            *i += 1;
            let mut m = Vec::new();
            skip_ws(c, i);
            if c.get(*i) == Some(&'}') {
                *i += 1;
                return Json::Obj(m);
            }
            loop {
                skip_ws(c, i);
                let Json::Str(k) = json_value(c, i) else {
                    panic!("object key is not a string")
                };
                skip_ws(c, i);
                assert_eq!(c.get(*i), Some(&':'));
                *i += 1;
                m.push((k, json_value(c, i)));
                skip_ws(c, i);
                match c.get(*i) {
                    Some(',') => *i += 1,
                    Some('}') => {
                        *i += 1;
                        return Json::Obj(m);
                    }
                    other => panic!("bad object at {other:?}"),
                }
            }
        }
        Some('[') => {
            *i += 1;
            let mut v = Vec::new();
            skip_ws(c, i);
            if c.get(*i) == Some(&']') {
                *i += 1;
                return Json::Arr(v);
            }
            loop {
                v.push(json_value(c, i));
                skip_ws(c, i);
                match c.get(*i) {
                    Some(',') => *i += 1,
                    Some(']') => {
                        *i += 1;
                        return Json::Arr(v);
                    }
                    other => panic!("bad array at {other:?}"),
                }
            }
        }
        Some('"') => {
            *i += 1;
            let mut s = String::new();
            loop {
                let ch = *c.get(*i).expect("unterminated string");
                *i += 1;
                match ch {
                    '"' => return Json::Str(s),
                    '\\' => {
                        let e = *c.get(*i).expect("escape");
                        *i += 1;
                        s.push(match e {
                            '"' => '"',
                            '\\' => '\\',
                            '/' => '/',
                            'n' => '\n',
                            'r' => '\r',
                            't' => '\t',
                            'b' => '\u{8}',
                            'f' => '\u{c}',
                            'u' => {
                                let hex: String = c[*i..*i + 4].iter().collect();
                                *i += 4;
                                char::from_u32(u32::from_str_radix(&hex, 16).unwrap())
                                    .expect("a scalar value")
                            }
                            other => panic!("bad escape \\{other}"),
                        });
                    }
                    ch if (ch as u32) < 0x20 => panic!("raw control character in a string"),
                    ch => s.push(ch),
                }
            }
        }
        Some(ch) if *ch == '-' || ch.is_ascii_digit() => {
            let start = *i;
            while c
                .get(*i)
                .is_some_and(|c| c.is_ascii_digit() || "+-.eE".contains(*c))
            {
                *i += 1;
            }
            let n: String = c[start..*i].iter().collect();
            Json::Num(n.parse().expect("a number"))
        }
        other => panic!("unexpected {other:?}"),
    }
}

fn chat_client(addr: SocketAddr, login: Option<&str>) -> Client {
    Client::handshake(stomp::Client::connect_ws(addr), login)
}

fn chat_line(room: &str, from: &str, text: &str) -> Json {
    Json::Obj(vec![
        ("room".into(), Json::Str(room.into())),
        ("from".into(), Json::Str(from.into())),
        ("text".into(), Json::Str(text.into())),
    ])
}

#[test]
fn chat_example_end_to_end() {
    let (mut proc, addr) = start_chat();
    let t0 = Instant::now();

    // The page and the script it loads.
    let (status, headers, body) = http_get(addr, "/?room=5&name=alice");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("content-type: text/html"),
        "{headers}"
    );
    let page = String::from_utf8(body).unwrap();
    assert!(page.contains("<script src=\"/stomp.umd.min.js\"></script>"));
    assert!(page.contains("/app/chat/${room}/history") && page.contains("/topic/chat/${room}"));
    let (status, headers, js) = http_get(addr, "/stomp.umd.min.js");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(headers.contains("application/javascript"), "{headers}");
    assert_eq!(
        js,
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/chat/stomp.umd.min.js"
        ))
        .unwrap()
    );
    let (status, _, _) = http_get(addr, "/nothing-here");
    assert!(!status.contains(" 200 "), "{status}");

    // Two users in room 5, one in room 6.
    let mut alice = chat_client(addr, Some("alice"));
    let mut bob = chat_client(addr, Some("bob"));
    let mut other_room = chat_client(addr, None);
    alice.subscribe("/topic/chat/5", "room");
    bob.subscribe("/topic/chat/5", "room");
    other_room.subscribe("/topic/chat/6", "room");
    // Empty history is an empty JSON array.
    other_room.send_frame(
        "SUBSCRIBE",
        &[("destination", "/app/chat/6/history"), ("id", "h")],
        b"",
    );
    let h = other_room.msg();
    assert_eq!(h.h("subscription"), "h");
    assert_eq!(Json::parse(h.text()), Json::Arr(vec![]));

    let texts: Vec<String> = (0..25)
        .map(|i| match i {
            0 => "hello \"bob\"\n\tκόσμε 😀 \\ {}".to_string(),
            n => format!("line {n}"),
        })
        .collect();
    for (i, t) in texts.iter().enumerate() {
        let rid = format!("s{i}");
        alice.publish("/app/chat/5", &[("receipt", &rid)], t.as_bytes());
        let want = chat_line("5", "alice", t);
        // alice: the MESSAGE and her RECEIPT, in either order; bob: the MESSAGE.
        let mut receipt = false;
        let mut got = None;
        while got.is_none() || !receipt {
            let f = alice.recv();
            match f.command.as_str() {
                "RECEIPT" => {
                    assert_eq!(f.h("receipt-id"), rid);
                    receipt = true;
                }
                "MESSAGE" => got = Some(f),
                _ => panic!("{f:?}"),
            }
        }
        for m in [got.unwrap(), bob.msg()] {
            assert_eq!(m.h("destination"), "/topic/chat/5");
            assert_eq!(m.h("subscription"), "room");
            assert_eq!(m.h("content-type"), "application/json");
            assert_eq!(Json::parse(m.text()), want, "{m:?}");
        }
    }
    // An anonymous sender is named by its session id.
    let mut anon = chat_client(addr, None);
    anon.publish("/app/chat/5", &[], b"who am I");
    let m = bob.msg();
    assert_eq!(
        Json::parse(m.text()),
        chat_line("5", &anon.session, "who am I")
    );
    assert_eq!(
        Json::parse(alice.msg().text()).get("text").str(),
        "who am I"
    );

    // History: the last 20 lines of room 5, oldest first, to the new subscriber only.
    let mut late = chat_client(addr, Some("carol"));
    late.send_frame(
        "SUBSCRIBE",
        &[
            ("destination", "/app/chat/5/history"),
            ("id", "hist"),
            ("receipt", "rh"),
        ],
        b"",
    );
    let h = late.msg();
    assert_eq!(h.h("subscription"), "hist");
    assert_eq!(h.h("destination"), "/app/chat/5/history");
    assert_eq!(h.h("content-type"), "application/json");
    late.expect_receipt("rh");
    let Json::Arr(lines) = Json::parse(h.text()) else {
        panic!("history is not an array: {h:?}")
    };
    assert_eq!(lines.len(), 20);
    let mut want: Vec<Json> = texts[6..]
        .iter()
        .map(|t| chat_line("5", "alice", t))
        .collect();
    want.push(chat_line("5", &anon.session, "who am I"));
    assert_eq!(lines, want);
    // Room 6 saw nothing of room 5.
    other_room.publish("/app/chat/6", &[], b"room six");
    let m = other_room.msg();
    assert_eq!(
        Json::parse(m.text()),
        chat_line("6", &other_room.session, "room six")
    );

    // A non-UTF-8 body: ERROR for that session, the others chat on.
    let mut rude = chat_client(addr, Some("rude"));
    rude.publish("/app/chat/5", &[("receipt", "bin")], b"\xff\xfe");
    let e = rude.expect_error("UTF-8");
    assert_eq!(e.get("receipt-id"), Some("bin"));
    bob.publish("/app/chat/5", &[], b"still here");
    for c in [&mut alice, &mut bob] {
        let m = c.msg();
        assert_eq!(Json::parse(m.text()), chat_line("5", "bob", "still here"));
    }

    // SIGTERM: graceful stop, exit 0. The sessions still open are told (ERROR, then close).
    drop((alice, anon, late, other_room, rude));
    let pid = proc.0.id().to_string();
    let st = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill -TERM");
    assert!(st.success());
    let f = bob.recv();
    assert_eq!(f.command, "ERROR", "{f:?}");
    assert!(bob.next().is_none());
    drop(bob);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = proc.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "chat still running 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "chat exited with {status}");
    eprintln!("chat example driven and stopped in {:?}", t0.elapsed());
}

/// A message the embedding API publishes to a full queue (overflow `reject`) has no session to
/// get the ERROR: it is counted in `stompbox_queue_rejected_total`, and the queue keeps what
/// it accepted.
#[test]
fn api_publishes_refused_by_a_full_queue_are_counted() {
    use stompbox::router::{Overflow, QueueConfig};
    let b = BrokerBuilder::new(Config {
        queues: QueueConfig {
            max_messages: 2,
            overflow: Overflow::Reject,
            ..QueueConfig::default()
        },
        ..config()
    })
    .start()
    .unwrap();
    assert_eq!(metric(&b.metrics(), "stompbox_queue_rejected_total"), 0);
    for n in 0..5 {
        b.publish("/queue/api-full", &[], format!("m{n}").as_bytes());
    }
    // Metrics are published once per reactor turn: poll briefly.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let n = metric(&b.metrics(), "stompbox_queue_rejected_total");
        if n == 3 {
            break;
        }
        assert!(
            n < 3 && Instant::now() < deadline,
            "queue_rejected_total = {n}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(metric(&b.metrics(), "stompbox_queue_dropped_total"), 0);
    let mut c = Client::connect(&b, Kind::Tcp, None);
    c.subscribe("/queue/api-full", "q");
    assert_eq!(c.msg().text(), "m0");
    assert_eq!(c.msg().text(), "m1");
    stop(b);
}
