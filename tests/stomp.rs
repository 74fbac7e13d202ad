//! STOMP end to end: the real server with several reactors, driven by independent clients — raw TCP
//! sockets writing hand-made STOMP bytes (read back with the small frame reader in
//! `common/stomp.rs`, deliberately not stompbox's parser) and `tungstenite` over WebSocket (`/ws`,
//! subprotocol `v12.stomp`).
//!
//! Every read has a bounded timeout ([`common::stomp::TIMEOUT`]); "nothing else arrived" is checked
//! with a sentinel message sent after the thing that must not arrive, never by waiting for silence.
//!
//! Some tests check which reactor a connection landed on from its session id, which the server
//! formats as `s<reactor>-<n>`: with round-robin accepts that proves the test really crosses
//! reactors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::time::{Duration, Instant};

use common::stomp::{
    esc, frame, parse_frame, reactor_of, Addrs, Client, End, Frame, Io, Kind, BOTH,
};
use stompbox::ServerHandle;
use tungstenite::Message;

fn other(k: Kind) -> Kind {
    match k {
        Kind::Tcp => Kind::Ws,
        Kind::Ws => Kind::Tcp,
    }
}

struct Srv {
    h: ServerHandle,
    a: Addrs,
}

fn server(f: impl FnOnce(&mut stompbox::Config)) -> Srv {
    let (h, ws) = common::server_with(f);
    let tcp = h.tcp_addr().expect("tcp listener");
    Srv {
        h,
        a: Addrs { ws, tcp },
    }
}

impl Srv {
    /// Shut down and check every server thread ended cleanly (none panicked).
    fn stop(self) {
        self.h.shutdown().expect("server threads end cleanly");
    }
}

// ---------------------------------------------------------------------------------------------
// Clients: the shared raw client ([`common::stomp::Client`], reads blocking up to
// [`common::stomp::TIMEOUT`] each), plus what only this file needs.

const CONNECT12: &str = "CONNECT\naccept-version:1.2\nhost:localhost\nheart-beat:0,0\n\n\0";

trait StompClient: Sized {
    fn connect(a: Addrs, kind: Kind) -> Self;
    fn connect_with(a: Addrs, kind: Kind, connect: &str) -> (Self, Frame);
    fn handshake(&mut self, connect: &str) -> Frame;
    fn publish(&mut self, dest: &str, extra: &[(&str, &str)], body: &[u8]);
    fn subscribe(&mut self, dest: &str, id: &str);
    fn expect_closed(&mut self, ws_code: u16);
    fn ws_frame_message(&mut self) -> (bool, Frame);
}

impl StompClient for Client {
    /// A STOMP 1.2 session without heart-beats.
    fn connect(a: Addrs, kind: Kind) -> Client {
        Client::connect_with(a, kind, CONNECT12).0
    }

    fn connect_with(a: Addrs, kind: Kind, connect: &str) -> (Client, Frame) {
        let mut c = Client::open(a, kind);
        let f = c.handshake(connect);
        (c, f)
    }

    /// Send a CONNECT/STOMP frame and expect CONNECTED; adopt its version and session.
    fn handshake(&mut self, connect: &str) -> Frame {
        let f = self.connected(connect.as_bytes());
        self.set_version(f.h("version"));
        self.session = f.h("session").to_string();
        f
    }

    /// SEND with a content-length (so bodies may hold NULs) plus `extra` headers.
    fn publish(&mut self, dest: &str, extra: &[(&str, &str)], body: &[u8]) {
        let len = body.len().to_string();
        let mut h = vec![("destination", dest)];
        h.extend_from_slice(extra);
        h.push(("content-length", &len));
        self.send_frame("SEND", &h, body);
    }

    /// SUBSCRIBE (the id is escaped here) and wait for its receipt.
    fn subscribe(&mut self, dest: &str, id: &str) {
        let rid = format!("sub-{id}");
        self.send_frame(
            "SUBSCRIBE",
            &[
                ("destination", dest),
                ("id", &esc(id)),
                ("receipt", &esc(&rid)),
            ],
            b"",
        );
        self.expect_receipt(&rid);
    }

    /// After the last frame: TCP EOF; or WebSocket Close `ws_code`, then EOF.
    fn expect_closed(&mut self, ws_code: u16) {
        let kind = self.kind();
        let end = self.next_frame().map_err(|e| (e, self.buf.clone()));
        match kind {
            Kind::Tcp => assert!(
                matches!(end, Err((End::Eof, ref b)) if b.is_empty()),
                "TCP: expected a clean EOF, got {end:?}"
            ),
            Kind::Ws => {
                assert!(
                    matches!(end, Err((End::Close(Some(c)), ref b)) if c == ws_code && b.is_empty()),
                    "WebSocket: expected Close {ws_code}, got {end:?}"
                );
                let after = match self.fill() {
                    Ok(()) => Err(self.buf.clone()),
                    Err(e) => Ok(e),
                };
                assert_eq!(after, Ok(End::Eof), "WebSocket: EOF after the Close");
            }
        }
    }

    /// WebSocket only: the next message that is not a lone heart-beat, which must hold exactly
    /// one frame. Returns whether it was a text message, and the frame.
    fn ws_frame_message(&mut self) -> (bool, Frame) {
        assert!(self.buf.is_empty(), "frames already buffered");
        let esc = self.esc;
        loop {
            let (text, payload) = match self.ws().read() {
                Ok(Message::Text(t)) => (true, t.into_bytes()),
                Ok(Message::Binary(b)) => (false, b),
                Ok(Message::Ping(_) | Message::Pong(_)) => continue,
                other => panic!("expected a data message, got {other:?}"),
            };
            if payload == b"\n" || payload == b"\r\n" {
                continue;
            }
            let (f, used) = parse_frame(&payload, esc)
                .unwrap_or_else(|| panic!("incomplete frame in one message: {payload:?}"));
            assert_eq!(used, payload.len(), "one frame per message: {f:?}");
            return (text, f);
        }
    }
}

/// Delivered MESSAGE checks common to every test.
fn check_message(f: &Frame, dest: &str, sub: &str, body: &[u8]) {
    assert_eq!(f.command, "MESSAGE", "{f:?}");
    assert_eq!(f.h("destination"), dest, "{f:?}");
    assert_eq!(f.h("subscription"), sub, "{f:?}");
    assert!(!f.h("message-id").is_empty(), "{f:?}");
    for h in ["destination", "subscription", "message-id"] {
        assert_eq!(f.count(h), 1, "{h} once: {f:?}");
    }
    assert_eq!(f.body, body, "{f:?}");
}

// ---------------------------------------------------------------------------------------------
// CONNECT

#[test]
fn connect_negotiates_version_server_session_and_heart_beat() {
    let srv = server(|c| {
        c.reactors = 2;
        c.session.heartbeat = (3000, 4000);
        c.session.min_heartbeat = 100;
    });
    let mut sessions = HashSet::new();
    for kind in BOTH {
        // CONNECT, all versions offered: 1.2, and the heart-beat spec rule.
        let (mut c, f) = Client::connect_with(
            srv.a,
            kind,
            "CONNECT\naccept-version:1.0,1.1,1.2\nhost:localhost\nheart-beat:1000,5000\n\n\0",
        );
        assert_eq!(f.h("version"), "1.2", "{f:?}");
        assert!(f.h("server").starts_with("stompbox/"), "{f:?}");
        assert!(!f.h("session").is_empty());
        // Server sends every min(3000, 5000) (at least as often as asked, and at least every
        // heartbeat.send); expects every max(1000, 4000).
        assert_eq!(f.h("heart-beat"), "3000,4000", "{f:?}");
        assert!(f.body.is_empty());
        assert!(sessions.insert(c.session.clone()), "unique session ids");
        // The session works.
        c.subscribe("/topic/hello", "1");
        c.publish("/topic/hello", &[], b"hi");
        check_message(&c.msg(), "/topic/hello", "1", b"hi");

        // STOMP command, 1.1 preferred over 1.0; heart-beat 0,0 means none either way.
        let (c, f) = Client::connect_with(
            srv.a,
            kind,
            "STOMP\naccept-version:1.1,1.0\nhost:localhost\nheart-beat:0,0\n\n\0",
        );
        assert_eq!(f.h("version"), "1.1", "{f:?}");
        assert_eq!(f.h("heart-beat"), "0,0", "{f:?}");
        assert!(sessions.insert(c.session.clone()), "unique session ids");

        // Only 1.0 offered.
        let (_, f) = Client::connect_with(
            srv.a,
            kind,
            "CONNECT\naccept-version:1.0\nhost:localhost\n\n\0",
        );
        assert_eq!(f.h("version"), "1.0", "{f:?}");

        // No accept-version: 1.0, which has no heart-beating, and SUBSCRIBE needs no id.
        let (mut c, f) = Client::connect_with(
            srv.a,
            kind,
            "CONNECT\nlogin:guest\npasscode:guest\nheart-beat:100,100\n\n\0",
        );
        assert_eq!(f.h("version"), "1.0", "{f:?}");
        assert_eq!(f.get("heart-beat"), None, "{f:?}");
        assert!(sessions.insert(c.session.clone()), "unique session ids");
        c.send_frame(
            "SUBSCRIBE",
            &[("destination", "/topic/v10"), ("receipt", "r10")],
            b"",
        );
        c.expect_receipt("r10");
        c.publish("/topic/v10", &[], b"old school");
        check_message(&c.msg(), "/topic/v10", "/topic/v10", b"old school");

        // No common version: ERROR with a message, then close.
        let mut c = Client::open(srv.a, kind);
        c.send(b"CONNECT\naccept-version:2.0,3.1\nhost:localhost\n\n\0");
        let e = c.expect("ERROR");
        assert!(e.h("message").contains("version"), "{e:?}");
        c.expect_closed(1002);
    }
    srv.stop();
}

// ---------------------------------------------------------------------------------------------
// Fan-out

#[test]
fn fan_out_across_reactors_reaches_every_subscriber_exactly_once() {
    let srv = server(|c| c.reactors = 3);
    let dest = "/topic/fan";
    let mut subs: Vec<(Client, String)> = (0..6)
        .map(|i| {
            let kind = if i % 2 == 0 { Kind::Tcp } else { Kind::Ws };
            let mut c = Client::connect(srv.a, kind);
            // Ids with a colon exercise escaping both ways.
            let id = format!("sub:{i}");
            c.subscribe(dest, &id);
            (c, id)
        })
        .collect();
    let mut pubs = [
        Client::connect(srv.a, Kind::Tcp),
        Client::connect(srv.a, Kind::Ws),
    ];
    let mut sessions: Vec<&str> = subs.iter().map(|(c, _)| c.session.as_str()).collect();
    sessions.extend(pubs.iter().map(|c| c.session.as_str()));
    assert_eq!(
        sessions.iter().collect::<HashSet<_>>().len(),
        8,
        "{sessions:?}"
    );
    let reactors: HashSet<usize> = sessions.iter().map(|s| reactor_of(s)).collect();
    assert_eq!(reactors.len(), 3, "connections spread over 3 reactors");

    // Per publisher: one message with content-type and custom headers, one without.
    for (j, p) in pubs.iter_mut().enumerate() {
        let body1 = format!("payload {j} ✓ with: colons\nand lines");
        p.publish(
            dest,
            &[
                ("content-type", "text/plain;charset=utf-8"),
                ("x-custom", "hello world"),
                ("x-esc", "a\\cb\\\\c"),
                ("receipt", &format!("p{j}-1")),
            ],
            body1.as_bytes(),
        );
        p.expect_receipt(&format!("p{j}-1"));
        // No content-length: the body ends at the NUL.
        p.send_frame(
            "SEND",
            &[("destination", dest), ("x-n", &j.to_string())],
            format!("second {j}").as_bytes(),
        );
    }
    let mut ids_by_msg: HashMap<String, HashSet<String>> = HashMap::new();
    for (c, id) in &mut subs {
        let mut got: Vec<Frame> = (0..4).map(|_| c.msg()).collect();
        // Publishers are independent: order is only guaranteed per publisher.
        got.sort_by_key(|f| (f.body.starts_with(b"second"), f.body.clone()));
        let mut own_ids = HashSet::new();
        for f in &got {
            assert!(own_ids.insert(f.h("message-id").to_string()), "{f:?}");
            assert_eq!(f.get("receipt"), None, "SEND-only headers stay: {f:?}");
            if let Some(l) = f.get("content-length") {
                assert_eq!(l, f.body.len().to_string());
            }
            ids_by_msg
                .entry(String::from_utf8_lossy(&f.body).into_owned())
                .or_default()
                .insert(f.h("message-id").to_string());
        }
        for j in 0..2 {
            let f = &got[j];
            let body1 = format!("payload {j} ✓ with: colons\nand lines");
            check_message(f, dest, id, body1.as_bytes());
            assert_eq!(f.h("content-type"), "text/plain;charset=utf-8", "{f:?}");
            assert_eq!(f.count("content-type"), 1, "{f:?}");
            assert_eq!(f.h("x-custom"), "hello world", "{f:?}");
            assert_eq!(f.h("x-esc"), "a:b\\c", "{f:?}");
            let f = &got[2 + j];
            check_message(f, dest, id, format!("second {j}").as_bytes());
            assert_eq!(f.get("content-type"), None, "{f:?}");
            assert_eq!(f.h("x-n"), j.to_string(), "{f:?}");
        }
    }
    // Different messages never share an id.
    let all: Vec<&HashSet<String>> = ids_by_msg.values().collect();
    assert_eq!(all.len(), 4);
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            assert!(a.is_disjoint(b), "{ids_by_msg:?}");
        }
    }
    // Exactly once: the next thing each subscriber sees is the sentinel.
    pubs[0].publish(dest, &[], b"sentinel");
    for (c, id) in &mut subs {
        check_message(&c.msg(), dest, id, b"sentinel");
    }
    drop((subs, pubs));
    srv.stop();
}

#[test]
fn per_publisher_order_is_kept_across_reactors() {
    let srv = server(|c| c.reactors = 4);
    const N: usize = 1000;
    for pub_kind in BOTH {
        let dest = format!("/topic/order-{pub_kind:?}");
        // 4 consecutive connections on 4 reactors (round-robin): every subscriber is on a
        // different reactor from the publisher.
        let mut subs: Vec<Client> = [Kind::Tcp, Kind::Ws, other(pub_kind)]
            .into_iter()
            .map(|k| {
                let mut c = Client::connect(srv.a, k);
                c.subscribe(&dest, "o");
                c
            })
            .collect();
        let mut p = Client::connect(srv.a, pub_kind);
        let pr = reactor_of(&p.session);
        for s in &subs {
            assert_ne!(reactor_of(&s.session), pr);
        }
        match pub_kind {
            Kind::Tcp => {
                let mut all = Vec::new();
                for n in 0..N {
                    all.extend(frame(
                        "SEND",
                        &[("destination", &dest), ("seq", &n.to_string())],
                        format!("message number {n}").as_bytes(),
                    ));
                }
                p.send(&all);
            }
            Kind::Ws => {
                for n in 0..N {
                    p.send_frame(
                        "SEND",
                        &[("destination", &dest), ("seq", &n.to_string())],
                        format!("message number {n}").as_bytes(),
                    );
                }
            }
        }
        for s in &mut subs {
            for n in 0..N {
                let f = s.msg();
                assert_eq!(f.h("seq"), n.to_string(), "{:?} subscriber", s.kind());
                check_message(&f, &dest, "o", format!("message number {n}").as_bytes());
            }
        }
    }
    srv.stop();
}

#[test]
fn nothing_is_delivered_after_the_unsubscribe_receipt() {
    let srv = server(|c| c.reactors = 2);
    for kind in BOTH {
        let mut sub = Client::connect(srv.a, kind);
        let mut publ = Client::connect(srv.a, other(kind));
        assert_ne!(reactor_of(&sub.session), reactor_of(&publ.session));
        sub.subscribe("/topic/gone", "g");
        sub.subscribe("/topic/stay", "s");
        publ.publish("/topic/gone", &[], b"before");
        check_message(&sub.msg(), "/topic/gone", "g", b"before");

        sub.send_frame("UNSUBSCRIBE", &[("id", "g"), ("receipt", "u1")], b"");
        sub.expect_receipt("u1");
        for i in 0..50 {
            publ.publish("/topic/gone", &[], format!("after {i}").as_bytes());
        }
        publ.publish("/topic/stay", &[("receipt", "sent")], b"sentinel");
        publ.expect_receipt("sent");
        // Same publisher, same path: anything from /topic/gone would have come first.
        check_message(&sub.msg(), "/topic/stay", "s", b"sentinel");

        // The id is free again.
        sub.subscribe("/topic/gone", "g");
        publ.publish("/topic/gone", &[], b"again");
        check_message(&sub.msg(), "/topic/gone", "g", b"again");
    }
    srv.stop();
}

// ---------------------------------------------------------------------------------------------
// Errors

struct ErrCase {
    name: &'static str,
    /// CONNECT frame sent first (None: the bad frame comes before any CONNECT).
    connect: Option<&'static str>,
    bytes: Vec<u8>,
    /// Frames expected before the ERROR (commands, with receipt ids).
    before: Vec<&'static str>,
    message: &'static str,
    receipt: Option<&'static str>,
}

fn error_server() -> Srv {
    server(|c| {
        c.reactors = 3;
        c.stomp_limits.max_headers = 8;
        c.stomp_limits.max_header_line = 256;
        c.stomp_limits.max_body = 4096;
    })
}

fn too_many_headers(receipt: bool) -> Vec<u8> {
    let mut h: Vec<(String, String)> = Vec::new();
    if receipt {
        h.push(("receipt".into(), "r-many".into()));
    }
    h.push(("destination".into(), "/topic/e".into()));
    for i in 0..8 {
        h.push((format!("h{i}"), i.to_string()));
    }
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    frame("SEND", &h, b"x")
}

fn body_too_large(receipt: bool) -> Vec<u8> {
    let mut v = b"SEND\n".to_vec();
    if receipt {
        v.extend_from_slice(b"receipt:r-big\n");
    }
    v.extend_from_slice(b"destination:/topic/e\ncontent-length:5000\n\n");
    v.extend_from_slice(&[b'x'; 5000]);
    v.push(0);
    v
}

fn run_error_case(a: Addrs, kind: Kind, c: &ErrCase) {
    let mut cl = Client::open(a, kind);
    if let Some(connect) = c.connect {
        cl.handshake(connect);
    }
    cl.send(&c.bytes);
    for want in &c.before {
        let f = cl.recv();
        assert_eq!(
            format!("{} {}", f.command, f.get("receipt-id").unwrap_or("")),
            *want,
            "{kind:?} {}: {f:?}",
            c.name
        );
    }
    let e = cl.recv();
    assert_eq!(e.command, "ERROR", "{kind:?} {}: {e:?}", c.name);
    assert_eq!(e.count("message"), 1, "{kind:?} {}: {e:?}", c.name);
    assert!(
        e.h("message").contains(c.message),
        "{kind:?} {}: {e:?}",
        c.name
    );
    assert_eq!(e.get("receipt-id"), c.receipt, "{kind:?} {}: {e:?}", c.name);
    cl.expect_closed(1002);
}

#[test]
fn every_error_gets_an_error_frame_then_close_and_leaves_others_alone() {
    let srv = error_server();
    let mut witnesses: Vec<Client> = BOTH
        .iter()
        .map(|&k| {
            let mut c = Client::connect(srv.a, k);
            c.subscribe("/topic/witness", "w");
            c
        })
        .collect();
    let long = "l".repeat(300);
    let c11 = "CONNECT\naccept-version:1.1\nhost:localhost\n\n\0";
    let cases = vec![
        ErrCase {
            name: "frame before CONNECT",
            connect: None,
            bytes: frame(
                "SEND",
                &[("destination", "/topic/e"), ("receipt", "r-pre")],
                b"hi",
            ),
            before: vec![],
            message: "CONNECT",
            receipt: Some("r-pre"),
        },
        ErrCase {
            name: "CONNECT twice",
            connect: Some(CONNECT12),
            bytes: frame(
                "CONNECT",
                &[("accept-version", "1.2"), ("receipt", "r-twice")],
                b"",
            ),
            before: vec![],
            message: "already connected",
            receipt: Some("r-twice"),
        },
        ErrCase {
            name: "unknown command",
            connect: Some(CONNECT12),
            bytes: frame("FROB", &[("destination", "/topic/e")], b""),
            before: vec![],
            message: "unknown command",
            receipt: None,
        },
        ErrCase {
            name: "server frame from a client",
            connect: Some(CONNECT12),
            bytes: frame(
                "MESSAGE",
                &[("destination", "/topic/e"), ("receipt", "r-msg")],
                b"",
            ),
            before: vec![],
            message: "server frame",
            receipt: Some("r-msg"),
        },
        ErrCase {
            name: "SEND without destination",
            connect: Some(CONNECT12),
            bytes: frame("SEND", &[("receipt", "r-send")], b"body"),
            before: vec![],
            message: "destination",
            receipt: Some("r-send"),
        },
        ErrCase {
            name: "SUBSCRIBE without destination",
            connect: Some(CONNECT12),
            bytes: frame("SUBSCRIBE", &[("id", "1"), ("receipt", "r-sub")], b""),
            before: vec![],
            message: "destination",
            receipt: Some("r-sub"),
        },
        ErrCase {
            name: "SUBSCRIBE without id (1.2)",
            connect: Some(CONNECT12),
            bytes: frame(
                "SUBSCRIBE",
                &[("destination", "/topic/e"), ("receipt", "r-noid")],
                b"",
            ),
            before: vec![],
            message: "id",
            receipt: Some("r-noid"),
        },
        ErrCase {
            name: "SUBSCRIBE without id (1.1)",
            connect: Some(c11),
            bytes: frame(
                "SUBSCRIBE",
                &[("destination", "/topic/e"), ("receipt", "r-noid11")],
                b"",
            ),
            before: vec![],
            message: "id",
            receipt: Some("r-noid11"),
        },
        ErrCase {
            name: "duplicate subscription id",
            connect: Some(CONNECT12),
            bytes: [
                frame(
                    "SUBSCRIBE",
                    &[("id", "7"), ("destination", "/topic/e"), ("receipt", "ok")],
                    b"",
                ),
                frame(
                    "SUBSCRIBE",
                    &[
                        ("id", "7"),
                        ("destination", "/topic/f"),
                        ("receipt", "r-dup"),
                    ],
                    b"",
                ),
            ]
            .concat(),
            before: vec!["RECEIPT ok"],
            message: "duplicate subscription id",
            receipt: Some("r-dup"),
        },
        ErrCase {
            name: "UNSUBSCRIBE unknown id",
            connect: Some(CONNECT12),
            bytes: frame("UNSUBSCRIBE", &[("id", "nope"), ("receipt", "r-uns")], b""),
            before: vec![],
            message: "nope",
            receipt: Some("r-uns"),
        },
        ErrCase {
            name: "too many headers",
            connect: Some(CONNECT12),
            bytes: too_many_headers(false),
            before: vec![],
            message: "too many headers",
            receipt: None,
        },
        ErrCase {
            name: "header line too long",
            connect: Some(CONNECT12),
            bytes: frame("SEND", &[("destination", "/topic/e"), ("x", &long)], b""),
            before: vec![],
            message: "too long",
            receipt: None,
        },
        ErrCase {
            name: "body too large (content-length)",
            connect: Some(CONNECT12),
            bytes: body_too_large(false),
            before: vec![],
            message: "body too large",
            receipt: None,
        },
        ErrCase {
            name: "body too large (no content-length, no NUL yet)",
            connect: Some(CONNECT12),
            bytes: [
                &b"SEND\ndestination:/topic/e\n\n"[..],
                &vec![b'y'; 5000][..],
            ]
            .concat(),
            before: vec![],
            message: "body too large",
            receipt: None,
        },
        ErrCase {
            name: "undefined escape \\t in a 1.2 header",
            connect: Some(CONNECT12),
            bytes: frame(
                "SEND",
                &[("destination", "/topic/e"), ("x-bad", "a\\tb")],
                b"",
            ),
            before: vec![],
            message: "escape",
            receipt: None,
        },
    ];
    for kind in BOTH {
        for c in &cases {
            run_error_case(srv.a, kind, c);
        }
    }
    // The connections opened before all that are untouched.
    for w in &mut witnesses {
        w.publish("/topic/witness", &[("receipt", "still")], b"still here");
        let mut got = [w.recv(), w.recv()];
        got.sort_by(|a, b| a.command.cmp(&b.command));
        check_message(&got[0], "/topic/witness", "w", b"still here");
        assert_eq!(got[1].command, "RECEIPT");
        assert_eq!(got[1].h("receipt-id"), "still");
    }
    drop(witnesses);
    srv.stop();
}

/// STOMP 1.2: "if the frame included a receipt header, the ERROR frame SHOULD set the
/// receipt-id header". For frames rejected by the parser the header can still be read when it
/// comes before the problem.
#[test]
fn parse_errors_echo_the_receipt_id_when_the_frame_had_one() {
    let srv = error_server();
    let cases = vec![
        ErrCase {
            name: "too many headers",
            connect: Some(CONNECT12),
            bytes: too_many_headers(true),
            before: vec![],
            message: "too many headers",
            receipt: Some("r-many"),
        },
        ErrCase {
            name: "body too large",
            connect: Some(CONNECT12),
            bytes: body_too_large(true),
            before: vec![],
            message: "body too large",
            receipt: Some("r-big"),
        },
        ErrCase {
            name: "bad escape",
            connect: Some(CONNECT12),
            bytes: frame(
                "SEND",
                &[
                    ("receipt", "r-esc"),
                    ("destination", "/topic/e"),
                    ("x-bad", "a\\tb"),
                ],
                b"",
            ),
            before: vec![],
            message: "escape",
            receipt: Some("r-esc"),
        },
    ];
    for kind in BOTH {
        for c in &cases {
            run_error_case(srv.a, kind, c);
        }
    }
    srv.stop();
}

// ---------------------------------------------------------------------------------------------
// Receipts and DISCONNECT

#[test]
fn receipts_for_send_subscribe_unsubscribe_and_disconnect() {
    let srv = server(|c| c.reactors = 2);
    for kind in BOTH {
        let mut c = Client::connect(srv.a, kind);
        c.send_frame(
            "SUBSCRIBE",
            &[("destination", "/topic/r"), ("id", "x"), ("receipt", "r1")],
            b"",
        );
        c.expect_receipt("r1");
        // A receipt id that needs escaping comes back unescaped-equal.
        c.send_frame(
            "SEND",
            &[("destination", "/topic/r"), ("receipt", "r\\c2")],
            b"self",
        );
        let mut got = [c.recv(), c.recv()];
        got.sort_by(|a, b| a.command.cmp(&b.command));
        check_message(&got[0], "/topic/r", "x", b"self");
        assert_eq!(got[0].get("receipt"), None);
        assert_eq!(got[1].command, "RECEIPT", "{:?}", got[1]);
        assert_eq!(got[1].h("receipt-id"), "r:2");
        c.send_frame("UNSUBSCRIBE", &[("id", "x"), ("receipt", "r3")], b"");
        c.expect_receipt("r3");
        // Several frames in one write, with heart-beat EOLs between them.
        let mut w = frame(
            "SEND",
            &[("destination", "/topic/r"), ("receipt", "r4")],
            b"",
        );
        w.extend_from_slice(b"\n\r\n");
        w.extend(frame(
            "SEND",
            &[("destination", "/topic/r"), ("receipt", "r5")],
            b"",
        ));
        c.send(&w);
        c.expect_receipt("r4");
        c.expect_receipt("r5");
        c.send_frame("DISCONNECT", &[("receipt", "bye")], b"");
        c.expect_receipt("bye");
        c.expect_closed(1000);

        // DISCONNECT without receipt: just the close.
        let mut c = Client::connect(srv.a, kind);
        c.send_frame("DISCONNECT", &[], b"");
        c.expect_closed(1000);
    }
    srv.stop();
}

// ---------------------------------------------------------------------------------------------
// Heart-beats

fn heartbeat_server() -> Srv {
    server(|c| {
        c.reactors = 2;
        c.session.heartbeat = (100, 100);
        c.session.min_heartbeat = 10;
        // Silence is fatal after 300 ms: slack for a busy test machine, still well under 1 s.
        c.heartbeat_grace = 3;
    })
}

const CONNECT_HB: &str = "CONNECT\naccept-version:1.2\nhost:localhost\nheart-beat:100,100\n\n\0";

#[test]
fn a_silent_client_gets_an_error_then_close() {
    let srv = heartbeat_server();
    let a = srv.a;
    std::thread::scope(|s| {
        for kind in BOTH {
            s.spawn(move || {
                let (mut c, f) = Client::connect_with(a, kind, CONNECT_HB);
                assert_eq!(f.h("heart-beat"), "100,100", "{f:?}");
                let t = Instant::now();
                let e = c.expect("ERROR");
                let took = t.elapsed();
                assert!(e.h("message").contains("heart-beat"), "{e:?}");
                assert!(
                    took >= Duration::from_millis(200) && took < Duration::from_secs(1),
                    "{kind:?}: ERROR after {took:?}"
                );
                c.expect_closed(1002);
                assert!(t.elapsed() < Duration::from_millis(1500), "{kind:?}");
            });
        }
    });
    srv.stop();
}

#[test]
fn a_client_sending_eols_stays_connected() {
    let srv = heartbeat_server();
    let a = srv.a;
    std::thread::scope(|s| {
        for kind in BOTH {
            s.spawn(move || {
                let (mut c, f) = Client::connect_with(a, kind, CONNECT_HB);
                assert_eq!(f.h("heart-beat"), "100,100", "{f:?}");
                let t = Instant::now();
                let mut i = 0;
                // Past the 300 ms of silence that would end it (the timing itself is unit-tested
                // on a virtual clock in session::liveness; this is the end-to-end check).
                while t.elapsed() < Duration::from_millis(500) {
                    std::thread::sleep(Duration::from_millis(50));
                    c.send(if i % 2 == 0 { b"\n" } else { b"\r\n" });
                    i += 1;
                }
                // Still served: the first frame is the receipt, not an ERROR.
                c.send_frame(
                    "SUBSCRIBE",
                    &[
                        ("destination", "/topic/hb"),
                        ("id", "1"),
                        ("receipt", "alive"),
                    ],
                    b"",
                );
                c.expect_receipt("alive");
                // And the server kept sending its own heart-beats meanwhile.
                assert!(c.eols >= 2, "{kind:?}: only {} heart-beats", c.eols);
            });
        }
    });
    srv.stop();
}

/// Beats come as often as the client asks, down to `heartbeat.min`, also when the server's own
/// interval is longer (issue 13: the default 10 s used to win, and a client behind a proxy that
/// cuts idle connections after 5 s was cut off).
#[test]
fn the_server_sends_eol_heart_beats_when_asked() {
    let default_intervals = server(|c| c.reactors = 2);
    for srv in [heartbeat_server(), default_intervals] {
        let a = srv.a;
        std::thread::scope(|s| {
            for kind in BOTH {
                s.spawn(move || {
                    // The client sends nothing and wants a beat every 100 ms.
                    let (mut c, f) = Client::connect_with(
                        a,
                        kind,
                        "CONNECT\naccept-version:1.2\nhost:localhost\nheart-beat:0,100\n\n\0",
                    );
                    assert_eq!(f.h("heart-beat"), "100,0", "{f:?}");
                    assert!(c.buf.iter().all(|&x| x == b'\n'), "{:?}", c.buf);
                    let t = Instant::now();
                    let mut beats = c.buf.len();
                    while t.elapsed() < Duration::from_millis(400) {
                        match &mut c.io {
                            Io::Tcp(s) => {
                                let mut b = [0u8; 64];
                                let n = s.read(&mut b).expect("heart-beat bytes");
                                assert!(n > 0, "EOF");
                                assert!(b[..n].iter().all(|&x| x == b'\n'), "{:?}", &b[..n]);
                                beats += n;
                            }
                            Io::Ws(w) => {
                                let m = w.read().expect("heart-beat message");
                                assert_eq!(m, Message::text("\n"));
                                beats += 1;
                            }
                        }
                    }
                    // ~4 expected; allow for timer-wheel slack (the intervals themselves are unit-tested on
                    // a virtual clock in session::liveness).
                    assert!((2..=7).contains(&beats), "{kind:?}: {beats} beats");
                });
            }
        });
        srv.stop();
    }
}

// ---------------------------------------------------------------------------------------------
// Bodies and WebSocket framing

#[test]
fn a_one_mebibyte_body_with_nuls_is_delivered_intact() {
    let srv = server(|c| c.reactors = 2);
    let body: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    assert!(body.contains(&0) && std::str::from_utf8(&body).is_err());
    let mut subs = [
        Client::connect(srv.a, Kind::Tcp),
        Client::connect(srv.a, Kind::Ws),
    ];
    for s in &mut subs {
        s.subscribe("/topic/big", "b");
    }
    for kind in BOTH {
        let mut p = Client::connect(srv.a, kind);
        p.publish("/topic/big", &[("receipt", "done")], &body);
        p.expect_receipt("done");
        let f = subs[0].msg();
        check_message(&f, "/topic/big", "b", &body);
        assert_eq!(f.h("content-length"), "1048576");
        let (text, f) = subs[1].ws_frame_message();
        assert!(!text, "a non-UTF-8 frame goes in a binary message");
        check_message(&f, "/topic/big", "b", &body);
        assert_eq!(f.h("content-length"), "1048576");
    }
    drop(subs);
    srv.stop();
}

#[test]
fn a_frame_split_over_many_websocket_messages() {
    let srv = server(|c| c.reactors = 2);
    let mut sub = Client::connect(srv.a, Kind::Tcp);
    sub.subscribe("/topic/split", "s");
    let mut p = Client::connect(srv.a, Kind::Ws);
    let body: String = (0..300).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    let wire = frame(
        "SEND",
        &[
            ("destination", "/topic/split"),
            ("x-part", "yes"),
            ("receipt", "split"),
        ],
        body.as_bytes(),
    );
    // 10 messages of arbitrary sizes: 1-byte pieces, cuts inside the command, a header, the
    // blank line, and right before the NUL.
    let mut cuts = vec![1, 2, 5, 20, 21, 40, 47, 100, wire.len() - 1];
    cuts.sort_unstable();
    let mut last = 0;
    let mut pieces = Vec::new();
    for c in cuts.into_iter().chain([wire.len()]) {
        pieces.push(&wire[last..c]);
        last = c;
    }
    assert_eq!(pieces.len(), 10);
    for piece in pieces {
        p.ws()
            .send(Message::text(std::str::from_utf8(piece).unwrap()))
            .unwrap();
    }
    p.expect_receipt("split");
    let f = sub.msg();
    check_message(&f, "/topic/split", "s", body.as_bytes());
    assert_eq!(f.h("x-part"), "yes");
    drop((sub, p));
    srv.stop();
}

#[test]
fn several_frames_in_one_websocket_message() {
    let srv = server(|c| c.reactors = 2);
    let mut c = Client::connect(srv.a, Kind::Ws);
    let mut w = frame(
        "SUBSCRIBE",
        &[
            ("id", "m"),
            ("destination", "/topic/multi"),
            ("receipt", "r1"),
        ],
        b"",
    );
    w.push(b'\n');
    w.extend(frame("SEND", &[("destination", "/topic/multi")], b"one"));
    w.extend(frame(
        "SEND",
        &[("destination", "/topic/multi"), ("receipt", "r2")],
        b"two",
    ));
    c.send(&w);
    let got: Vec<Frame> = (0..4).map(|_| c.recv()).collect();
    let receipts: Vec<&str> = got
        .iter()
        .filter(|f| f.command == "RECEIPT")
        .map(|f| f.h("receipt-id"))
        .collect();
    assert_eq!(receipts, ["r1", "r2"], "{got:?}");
    let msgs: Vec<&Frame> = got.iter().filter(|f| f.command == "MESSAGE").collect();
    assert_eq!(msgs.len(), 2, "{got:?}");
    check_message(msgs[0], "/topic/multi", "m", b"one");
    check_message(msgs[1], "/topic/multi", "m", b"two");
    drop(c);
    srv.stop();
}

/// CONNECT and the first part of the next frame arrive in one WebSocket message; the rest in
/// the next one.
#[test]
fn connect_and_the_start_of_the_next_frame_in_one_websocket_message() {
    let srv = server(|c| c.reactors = 2);
    let mut c = Client::open(srv.a, Kind::Ws);
    let sub = frame(
        "SUBSCRIBE",
        &[("id", "1"), ("destination", "/topic/p"), ("receipt", "r1")],
        b"",
    );
    let (head, tail) = sub.split_at(20);
    let mut first = CONNECT12.as_bytes().to_vec();
    first.extend_from_slice(head);
    c.send(&first);
    c.send(tail);
    let f = c.expect("CONNECTED");
    assert_eq!(f.h("version"), "1.2");
    c.expect_receipt("r1");
    drop(c);
    srv.stop();
}

#[test]
fn a_frame_dribbled_over_tcp_a_few_bytes_at_a_time() {
    let srv = server(|c| c.reactors = 2);
    let mut sub = Client::connect(srv.a, Kind::Ws);
    sub.subscribe("/topic/drip", "d");
    let mut p = Client::connect(srv.a, Kind::Tcp);
    let mut wire = frame(
        "SEND",
        &[("destination", "/topic/drip"), ("receipt", "drip")],
        b"drip drop",
    );
    // A CRLF heart-beat and a CRLF-terminated frame too.
    wire.extend_from_slice(b"\r\nSEND\r\ndestination:/topic/drip\r\n\r\ncrlf\0");
    for (i, b) in wire.chunks(3).enumerate() {
        p.send(b);
        if i % 4 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    p.expect_receipt("drip");
    check_message(&sub.msg(), "/topic/drip", "d", b"drip drop");
    check_message(&sub.msg(), "/topic/drip", "d", b"crlf");
    drop((sub, p));
    srv.stop();
}

#[test]
fn websocket_subscribers_get_text_for_utf8_frames_and_binary_otherwise() {
    let srv = server(|c| c.reactors = 2);
    let mut sub = Client::connect(srv.a, Kind::Ws);
    sub.subscribe("/topic/tb", "t");
    let mut tcp = Client::connect(srv.a, Kind::Tcp);
    let mut ws = Client::connect(srv.a, Kind::Ws);
    let cases: [(&[u8], bool); 4] = [
        (b"plain ascii", true),
        ("κόσμε ✓ 😀".as_bytes(), true),
        (&[0xff, 0xfe, 0x00, 0x80, b'x'], false),
        (&[b'a', 0xc3], false),
    ];
    for p in [&mut tcp, &mut ws] {
        for (body, text) in cases {
            p.publish("/topic/tb", &[], body);
            let (got_text, f) = sub.ws_frame_message();
            assert_eq!(got_text, text, "{f:?}");
            check_message(&f, "/topic/tb", "t", body);
        }
    }
    // A UTF-8 frame sent in a binary message still goes out as text.
    let wire = frame(
        "SEND",
        &[("destination", "/topic/tb")],
        "ünïcode".as_bytes(),
    );
    ws.ws().send(Message::binary(wire)).unwrap();
    let (got_text, f) = sub.ws_frame_message();
    assert!(got_text, "{f:?}");
    check_message(&f, "/topic/tb", "t", "ünïcode".as_bytes());
    drop((sub, tcp, ws));
    srv.stop();
}

// ---------------------------------------------------------------------------------------------
// Subscriptions die with their connection

#[test]
fn a_subscription_dies_with_its_connection() {
    let srv = server(|c| c.reactors = 2);
    let dest = "/topic/dies";
    let mut doomed: Vec<Client> = BOTH
        .iter()
        .map(|&k| {
            let mut c = Client::connect(srv.a, k);
            c.subscribe(dest, "x");
            c
        })
        .collect();
    let mut alive: Vec<Client> = BOTH
        .iter()
        .map(|&k| {
            let mut c = Client::connect(srv.a, k);
            c.subscribe(dest, "y");
            c
        })
        .collect();
    let mut p = Client::connect(srv.a, Kind::Tcp);
    let body = vec![b'z'; 8 * 1024];
    // Unread data waits in the doomed sockets: dropping them may reset the connection.
    for _ in 0..5 {
        p.publish(dest, &[], &body);
    }
    for c in &mut alive {
        for _ in 0..5 {
            check_message(&c.msg(), dest, "y", &body);
        }
    }
    // Abrupt: no DISCONNECT, no WebSocket close.
    for c in &mut doomed {
        if c.kind() == Kind::Tcp {
            c.tcp().shutdown(std::net::Shutdown::Both).unwrap();
        }
    }
    drop(doomed);
    for round in 0..10 {
        for i in 0..20 {
            p.publish(dest, &[("n", &format!("{round}-{i}"))], &body);
        }
        p.publish(dest, &[("receipt", &format!("round-{round}"))], b"end");
        p.expect_receipt(&format!("round-{round}"));
        for c in &mut alive {
            for i in 0..20 {
                let f = c.msg();
                assert_eq!(f.h("n"), format!("{round}-{i}"));
                check_message(&f, dest, "y", &body);
            }
            check_message(&c.msg(), dest, "y", b"end");
        }
    }
    // New connections are served as before.
    for kind in BOTH {
        let mut c = Client::connect(srv.a, kind);
        c.subscribe(dest, "new");
        p.publish(dest, &[], b"welcome");
        check_message(&c.msg(), dest, "new", b"welcome");
        for a in &mut alive {
            check_message(&a.msg(), dest, "y", b"welcome");
        }
    }
    drop((alive, p));
    srv.stop();
}

// ---------------------------------------------------------------------------------------------
// Mixed versions

fn connect_version(a: Addrs, kind: Kind, v: &str) -> Client {
    let (c, f) = Client::connect_with(
        a,
        kind,
        &format!("CONNECT\naccept-version:{v}\nhost:localhost\n\n\0"),
    );
    assert_eq!(f.h("version"), v);
    c
}

/// One 1.2 publisher, subscribers on 1.0, 1.1 and 1.2: each gets the sender's headers in its
/// own version's encoding, and no header value can turn into a second header.
#[test]
fn every_version_gets_headers_in_its_own_encoding_without_injection() {
    let srv = server(|c| c.reactors = 3);
    let dest = "/topic/a:b";
    let mut subs: Vec<Client> = [("1.1", Kind::Ws), ("1.2", Kind::Tcp), ("1.0", Kind::Tcp)]
        .into_iter()
        .map(|(v, k)| {
            let mut c = connect_version(srv.a, k, v);
            let d = if v == "1.0" {
                dest.to_string()
            } else {
                esc(dest)
            };
            c.send_frame(
                "SUBSCRIBE",
                &[("destination", &d), ("id", "v"), ("receipt", "s")],
                b"",
            );
            c.expect_receipt("s");
            c
        })
        .collect();
    let mut p = Client::connect(srv.a, Kind::Ws);
    p.publish(
        &esc(dest),
        &[
            ("x-colon", "k\\cv"),
            ("x-back", "c\\\\d"),
            ("x-nl", "line1\\nfake:yes"),
            ("receipt", "sent"),
        ],
        b"mixed",
    );
    p.expect_receipt("sent");
    for s in &mut subs {
        let f = s.msg();
        let who = format!("{} subscriber: {f:?}", s.version);
        assert_eq!(f.h("destination"), dest, "{who}");
        assert_eq!(f.h("subscription"), "v", "{who}");
        assert_eq!(f.h("x-colon"), "k:v", "{who}");
        assert_eq!(f.h("x-back"), "c\\d", "{who}");
        assert_eq!(f.get("fake"), None, "header injected: {who}");
        assert!(f.h("x-nl").starts_with("line1"), "{who}");
        if s.version != "1.0" {
            assert_eq!(f.h("x-nl"), "line1\nfake:yes", "{who}");
        }
        assert_eq!(f.body, b"mixed", "{who}");
    }
    drop((subs, p));
    srv.stop();
}

/// STOMP 1.1 defines only the `\n`, `\c` and `\\` escapes (`\r` came with 1.2), so a CR in a
/// header value must not reach a 1.1 subscriber as `\r`.
#[test]
fn a_1_1_subscriber_never_gets_the_1_2_only_cr_escape() {
    let srv = server(|c| c.reactors = 2);
    let mut s = connect_version(srv.a, Kind::Tcp, "1.1");
    s.subscribe("/topic/cr", "c");
    let mut p = Client::connect(srv.a, Kind::Tcp);
    p.publish("/topic/cr", &[("x-cr", "a\\rb")], b"cr");
    // The reader treats `\r` as undefined for a 1.1 session.
    let f = s.msg();
    check_message(&f, "/topic/cr", "c", b"cr");
    assert!(f.h("x-cr").starts_with('a'), "{f:?}");
    drop((s, p));
    srv.stop();
}

// ---------------------------------------------------------------------------------------------
// Shutdown

#[test]
fn shutdown_sends_an_error_then_closes_every_stomp_connection() {
    let srv = server(|c| c.reactors = 2);
    let mut conns: Vec<Client> = [Kind::Tcp, Kind::Ws, Kind::Tcp, Kind::Ws]
        .into_iter()
        .map(|k| {
            let mut c = Client::connect(srv.a, k);
            c.subscribe("/topic/s", "s");
            c
        })
        .collect();
    let t = std::thread::spawn(move || srv.stop());
    for c in &mut conns {
        let e = c.expect("ERROR");
        assert!(e.h("message").contains("shutting down"), "{e:?}");
        c.expect_closed(1001);
    }
    t.join().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Long subscription ids

/// STOMP 1.2 MESSAGEs for an explicit-ack subscription carry an `ack` header. Sweep subscription
/// id lengths across 256 bytes (a per-delivery head sized like that once dropped the `ack`
/// header while the WebSocket length still counted it).
#[test]
fn long_subscription_ids_keep_the_ack_header() {
    let srv = server(|c| c.reactors = 2);
    for kind in BOTH {
        let mut s = Client::connect(srv.a, kind);
        let ids: Vec<String> = (200..=250)
            .map(|len| {
                let p = format!("{len}-");
                format!("{p}{}", "x".repeat(len - p.len()))
            })
            .collect();
        for id in &ids {
            s.send_frame(
                "SUBSCRIBE",
                &[
                    ("destination", "/topic/long"),
                    ("id", id),
                    ("ack", "client-individual"),
                ],
                b"",
            );
        }
        s.send_frame(
            "SUBSCRIBE",
            &[("destination", "/x"), ("id", "last"), ("receipt", "r")],
            b"",
        );
        s.expect_receipt("r");
        let mut p = Client::connect(srv.a, other(kind));
        for body in [&b"first"[..], b"second"] {
            p.publish("/topic/long", &[], body);
            let mut seen = HashSet::new();
            for _ in 0..ids.len() {
                let f = s.msg();
                let id = f.h("subscription").to_string();
                assert!(ids.contains(&id), "{kind:?}: unknown subscription {f:?}");
                assert_eq!(f.body, body, "{kind:?} id length {}: {f:?}", id.len());
                assert_eq!(
                    f.get("ack"),
                    Some(f.h("message-id")),
                    "{kind:?} id length {}: {f:?}",
                    id.len()
                );
                assert!(seen.insert(id));
            }
        }
    }
    srv.stop();
}
