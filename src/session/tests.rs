//! The session's unit tests: CONNECT negotiation, subscriptions, receipts, transactions.

use super::*;
use crate::stomp::{parse, Header, Limits, Parsed};

fn run(s: &mut Session, wire: &[u8]) -> (Result<String, StompError>, String) {
    let mut hs = [Header::default(); 32];
    let Ok(Parsed::Frame(f, _)) = parse(wire, &mut hs, s.version, &Limits::default()) else {
        panic!("parse")
    };
    let mut out = Vec::new();
    let r = s
        .handle(&f, &SessionConfig::default(), &mut out)
        .map(|a| format!("{a:?}"));
    (r, String::from_utf8(out).unwrap())
}

#[test]
fn connect_negotiates_version_and_heartbeat() {
    let mut s: Session = Session::new("s1");
    let (r, out) = run(
        &mut s,
        b"CONNECT\naccept-version:1.0,1.1,1.2\nhost:h\nheart-beat:5000,20000\n\n\0",
    );
    // The server sends every 10 s at most however rarely asked; expects the longer.
    assert!(r
        .unwrap()
        .contains("Connected { send_ms: 10000, recv_ms: 10000 }"));
    assert!(out.starts_with("CONNECTED\nversion:1.2\n"));
    assert!(out.contains("heart-beat:10000,10000\n"));
    assert!(out.contains("session:s1\n"));
    assert_eq!(s.version, Version::V1_2);

    // A client asking for beats every 2 s gets them every 2 s.
    let mut s: Session = Session::new("s1b");
    let (_, out) = run(
        &mut s,
        b"CONNECT\naccept-version:1.2\nhost:h\nheart-beat:1000,2000\n\n\0",
    );
    assert!(out.contains("heart-beat:2000,10000\n"), "{out}");

    let mut s: Session = Session::new("s2");
    let (_, out) = run(&mut s, b"CONNECT\n\n\0");
    assert!(out.contains("version:1.0\n"));
    assert!(!out.contains("heart-beat"));

    let mut s: Session = Session::new("s3");
    let (r, _) = run(&mut s, b"CONNECT\naccept-version:2.0\n\n\0");
    assert!(r
        .unwrap_err()
        .message
        .contains("no common protocol version"));
}

#[derive(Debug)]
struct OnlyAlice;

impl Authenticator for OnlyAlice {
    fn authenticate(&self, l: Option<&str>, p: Option<&str>, _: Option<&str>) -> bool {
        l == Some("alice") && p == Some("secret")
    }
}

#[test]
fn the_authenticator_decides() {
    let cfg = SessionConfig {
        authenticator: Arc::new(OnlyAlice),
        ..SessionConfig::default()
    };
    let attempt = |wire: &[u8]| {
        let mut s: Session = Session::new("s");
        let mut hs = [Header::default(); 8];
        let Ok(Parsed::Frame(f, _)) = parse(wire, &mut hs, s.version, &Limits::default()) else {
            panic!("parse")
        };
        let mut out = Vec::new();
        let r = s.handle(&f, &cfg, &mut out).map(|_| s.login.clone());
        (r, out.is_empty())
    };
    let (r, _) = attempt(b"CONNECT\naccept-version:1.2\nlogin:alice\npasscode:secret\n\n\0");
    assert_eq!(r, Ok(Some("alice".to_string())));
    let (r, no_reply) = attempt(b"CONNECT\naccept-version:1.2\nlogin:alice\npasscode:guess\n\n\0");
    assert_eq!(r.unwrap_err().message, "access refused");
    assert!(no_reply, "no CONNECTED for a refused login");
    let (r, _) = attempt(b"CONNECT\naccept-version:1.2\n\n\0");
    assert_eq!(r.unwrap_err().message, "access refused");
}

#[test]
fn errors_carry_receipt_ids() {
    let mut s: Session = Session::new("s");
    let (r, _) = run(&mut s, b"SEND\ndestination:/topic/a\nreceipt:77\n\n\0");
    let e = r.unwrap_err();
    assert_eq!(e.message, "expected CONNECT or STOMP frame");
    assert_eq!(e.receipt.as_deref(), Some("77"));
    run(&mut s, b"STOMP\naccept-version:1.2\n\n\0").0.unwrap();
    for (wire, msg) in [
        (
            &b"SEND\nreceipt:1\n\n\0"[..],
            "SEND frame without 'destination' header",
        ),
        (
            b"SUBSCRIBE\nid:1\n\n\0",
            "SUBSCRIBE frame without 'destination' header",
        ),
        (
            b"SUBSCRIBE\ndestination:/topic/a\n\n\0",
            "missing 'id' header",
        ),
        (
            b"SUBSCRIBE\nid:1\ndestination:/topic/a\nack:sometimes\n\n\0",
            "invalid ack mode 'sometimes'",
        ),
        (b"UNSUBSCRIBE\nid:9\n\n\0", "no subscription with id '9'"),
    ] {
        let (r, _) = run(&mut s, wire);
        assert_eq!(r.unwrap_err().message, msg);
    }
    run(&mut s, b"SUBSCRIBE\nid:1\ndestination:/topic/a\n\n\0")
        .0
        .unwrap();
    let (r, _) = run(
        &mut s,
        b"SUBSCRIBE\nid:1\ndestination:/topic/b\nreceipt:r\n\n\0",
    );
    let e = r.unwrap_err();
    assert_eq!(e.message, "duplicate subscription id '1'");
    assert_eq!(e.receipt.as_deref(), Some("r"));
}

#[test]
fn receipts_follow_accepted_frames() {
    let mut s: Session = Session::new("s");
    run(&mut s, b"CONNECT\naccept-version:1.2\n\n\0").0.unwrap();
    let (r, out) = run(
        &mut s,
        b"SUBSCRIBE\nid:a\ndestination:/topic/x\nreceipt:r1\n\n\0",
    );
    assert_eq!(r.unwrap(), "Subscribe(0)");
    assert_eq!(out, "RECEIPT\nreceipt-id:r1\n\n\0");
    let (r, out) = run(&mut s, b"DISCONNECT\nreceipt:bye\n\n\0");
    assert_eq!(r.unwrap(), "Disconnect");
    assert_eq!(out, "RECEIPT\nreceipt-id:bye\n\n\0");
}

/// Transactions live in the session (issue 14): what the server buffers for each frame
/// comes back at COMMIT in order, an ABORT drops it, and the bounds are counted as the
/// frames come.
#[test]
fn transactions_hold_what_the_server_buffers() {
    fn go(
        s: &mut Session<&'static str>,
        wire: &[u8],
        cfg: &SessionConfig,
    ) -> Result<String, StompError> {
        let mut hs = [Header::default(); 32];
        let Ok(Parsed::Frame(f, _)) = parse(wire, &mut hs, s.version, &Limits::default()) else {
            panic!("parse")
        };
        let mut out = Vec::new();
        s.handle(&f, cfg, &mut out).map(|a| format!("{a:?}"))
    }
    let cfg = SessionConfig {
        max_tx_frames: 3,
        max_tx_bytes: 200,
        ..SessionConfig::default()
    };
    let mut s: Session<&'static str> = Session::new("s");
    go(&mut s, b"CONNECT\naccept-version:1.2\n\n\0", &cfg).unwrap();
    go(&mut s, b"BEGIN\ntransaction:t\n\n\0", &cfg).unwrap();
    go(&mut s, b"BEGIN\ntransaction:u\n\n\0", &cfg).unwrap();
    assert_eq!(s.transactions(), 2);
    let a = go(
        &mut s,
        b"SEND\ndestination:/q/a\ntransaction:t\n\none\0",
        &cfg,
    )
    .unwrap();
    assert!(a.contains("transaction: Some(\"t\")"), "{a}");
    s.buffer("t", "one");
    go(&mut s, b"ACK\nid:7\ntransaction:t\n\n\0", &cfg).unwrap();
    s.buffer("t", "ack 7");
    go(
        &mut s,
        b"SEND\ndestination:/q/a\ntransaction:u\n\nother\0",
        &cfg,
    )
    .unwrap();
    s.buffer("u", "other");
    // ABORT drops u and its frame; COMMIT hands t's back in order.
    assert_eq!(
        go(&mut s, b"ABORT\ntransaction:u\n\n\0", &cfg).unwrap(),
        "Abort(\"u\")"
    );
    assert_eq!(
        go(&mut s, b"COMMIT\ntransaction:t\n\n\0", &cfg).unwrap(),
        "Commit(\"t\")"
    );
    assert_eq!(s.commit("t"), vec!["one", "ack 7"]);
    assert_eq!(s.transactions(), 0);
    assert!(s.commit("t").is_empty(), "ended");
    let e = go(&mut s, b"COMMIT\ntransaction:u\n\n\0", &cfg).unwrap_err();
    assert_eq!(e.message, "unknown transaction 'u'");

    // Bounds: frames, then bytes (command, headers and body as received).
    go(&mut s, b"BEGIN\ntransaction:f\n\n\0", &cfg).unwrap();
    for _ in 0..3 {
        go(&mut s, b"ACK\nid:1\ntransaction:f\n\n\0", &cfg).unwrap();
    }
    let e = go(&mut s, b"ACK\nid:1\ntransaction:f\n\n\0", &cfg).unwrap_err();
    assert_eq!(e.message, "too many frames in transaction 'f'");
    go(&mut s, b"BEGIN\ntransaction:b\n\n\0", &cfg).unwrap();
    let big = [
        b"SEND\ndestination:/q\ntransaction:b\n\n".as_slice(),
        &[b'x'; 150],
        b"\0",
    ]
    .concat();
    go(&mut s, &big, &cfg).unwrap();
    let e = go(&mut s, &big, &cfg).unwrap_err();
    assert_eq!(e.message, "transaction 'b' would hold more than 200 bytes");
}
