//! Regression tests for what one hostile or careless client could do to the whole broker: abort
//! it, stall it, exhaust its memory, lose other users' messages, or forge frames. Each test is
//! named after the defect and failed before its fix.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::stomp::{frame, Addrs, Client, Kind, BOTH};
use stompbox::ServerHandle;

const CONNECT12: &str = "CONNECT\naccept-version:1.2\nhost:localhost\nheart-beat:0,0\n\n\0";

fn server(reactors: usize, f: impl FnOnce(&mut stompbox::Config)) -> (ServerHandle, Addrs) {
    let (h, ws) = common::server_with(|c| {
        c.reactors = reactors;
        f(c);
    });
    let tcp = h.tcp_addr().expect("tcp listener");
    (h, Addrs { ws, tcp })
}

/// A STOMP 1.2 session (no heart-beats) whose reads poll.
fn client(a: Addrs, kind: Kind) -> Client {
    let mut c = Client::open(a, kind).polling();
    let f = c.connected(CONNECT12.as_bytes());
    c.session = f.h("session").to_string();
    c.set_version(f.h("version"));
    c
}

/// SUBSCRIBE with a receipt, waited for.
fn subscribe(c: &mut Client, dest: &str, id: &str, extra: &[(&str, &str)]) {
    let r = c.next_receipt_id();
    let mut h = vec![("destination", dest), ("id", id), ("receipt", &r)];
    h.extend_from_slice(extra);
    c.send_frame("SUBSCRIBE", &h, b"");
    c.expect_receipt(&r);
}

/// Defect: a NUL in a header value ended the frame for every reader downstream, so a SEND with
/// `x:a\0MESSAGE\n...` reached subscribers as two frames, the second forged. Now the SEND is a
/// protocol error: ERROR (with a message), connection closed, nothing delivered.
#[test]
fn nul_in_header_cannot_forge_a_frame() {
    let (h, a) = server(2, |_| {});
    for kind in BOTH {
        let mut sub = client(a, Kind::Tcp);
        subscribe(&mut sub, "/topic/forge", "1", &[]);
        let mut evil = client(a, kind);
        let mut wire = b"SEND\ndestination:/topic/forge\nx:a\0MESSAGE\nsubscription:1\nmessage-id:forged\ndestination:/topic/forge\n\nforged body\0".to_vec();
        wire.extend_from_slice(b"\n\nreal body\0");
        evil.send(&wire);
        let e = evil.expect("ERROR");
        assert!(e.h("message").contains("NUL"), "{e:?}");
        assert!(evil.next_within(Duration::from_secs(5)).is_err(), "closed");
        // The next message the subscriber sees is a legitimate one: nothing was forged.
        let mut good = client(a, Kind::Tcp);
        good.send(&frame("SEND", &[("destination", "/topic/forge")], b"legit"));
        let m = sub.msg();
        assert_eq!(m.body, b"legit", "{m:?}");
        // A bare CR in a 1.2 header is refused the same way.
        let mut cr = client(a, kind);
        cr.send(b"SEND\ndestination:/topic/forge\nx:a\rb\n\nbody\0");
        let e = cr.expect("ERROR");
        assert!(e.h("message").contains("CR"), "{e:?}");
    }
    h.shutdown().unwrap();
}
