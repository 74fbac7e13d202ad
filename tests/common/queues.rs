//! What the queue tests share: the server with its reactor placement, and the raw client made
//! to poll, with queue frames and acknowledgements.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// A prelude for the queue tests: not every file uses every name.
#![allow(unused_imports)]
#![allow(dead_code)]

pub use std::collections::{BTreeMap, HashMap, HashSet};
pub use std::net::Shutdown;
pub use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
pub use std::sync::{mpsc, Arc, Mutex};
pub use std::thread::JoinHandle;
pub use std::time::{Duration, Instant};

pub use crate::common::stomp::{
    reactor_of, Addrs, Client, End, Frame, Io, Kind, BOTH, POLL, TIMEOUT,
};
pub use stompbox::router::{Directory, Overflow, QueueConfig, Router};
pub use stompbox::ServerHandle;

pub const CONNECT12: &str = "CONNECT\naccept-version:1.2\nhost:localhost\nheart-beat:0,0\n\n\0";
pub const CONNECT11: &str = "CONNECT\naccept-version:1.1\nhost:localhost\nheart-beat:0,0\n\n\0";
pub const CONNECT10: &str = "CONNECT\nlogin:guest\npasscode:guest\n\n\0";

// ---------------------------------------------------------------------------------------------
// The server.

pub struct Srv {
    pub h: ServerHandle,
    pub a: Addrs,
    pub reactors: usize,
    /// With the JetStream store: its NATS server (and store directory), stopped with the
    /// server.
    pub store: Option<(nats::Nats, std::path::PathBuf)>,
}

#[path = "nats.rs"]
pub mod nats;

/// `STOMPBOX_TEST_QUEUE_STORE=jetstream`: the queue tests run against the JetStream store (a
/// `nats-server -js` of their own per server); otherwise the in-memory store.
pub fn jetstream() -> bool {
    std::env::var("STOMPBOX_TEST_QUEUE_STORE").is_ok_and(|s| s == "jetstream")
}

pub fn server(reactors: usize, f: impl FnOnce(&mut stompbox::Config)) -> Srv {
    static N: AtomicUsize = AtomicUsize::new(0);
    let store = jetstream().then(|| {
        let dir = std::env::temp_dir().join(format!(
            "stompbox-queues-js-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("store dir");
        let n = nats::Nats::start_with(&["-js", "-sd", dir.to_str().expect("utf-8 path")]);
        (n, dir)
    });
    let (h, ws) = crate::common::server_with(|c| {
        c.reactors = reactors;
        if let Some((n, _)) = &store {
            c.cluster = Some(nats::joined(&[n.url()], "queues"));
            c.queues.store = stompbox::router::QueueStore::JetStream;
        }
        f(c);
    });
    if store.is_some() {
        // Connected before the test starts (a SEND before that would wait for it).
        let end = Instant::now() + TIMEOUT;
        while !h.metrics().contains("stompbox_cluster_up 1") {
            assert!(Instant::now() < end, "never connected to NATS");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let tcp = h.tcp_addr().expect("tcp listener");
    Srv {
        h,
        a: Addrs { ws, tcp },
        reactors,
        store,
    }
}

impl Srv {
    /// A STOMP 1.2 client without heart-beats.
    pub fn client(&self, kind: Kind) -> Client {
        Client::connect(self.a, kind, CONNECT12)
    }

    /// A 1.2 client on the given reactor (connections go to reactors in turn).
    pub fn client_on(&self, kind: Kind, reactor: usize) -> Client {
        let reactor = reactor % self.reactors;
        for _ in 0..=self.reactors {
            let c = self.client(kind);
            if reactor_of(&c.session) == reactor {
                return c;
            }
        }
        panic!("could not place a client on reactor {reactor}");
    }

    /// The reactor that owns a queue (as the server computes it).
    pub fn home(&self, queue: &str) -> usize {
        Router::with_config(
            0,
            self.reactors,
            Arc::new(Directory::new()),
            QueueConfig::default(),
        )
        .home_of(queue)
    }

    /// Shut down and check every server thread ended cleanly (none panicked).
    pub fn stop(self) {
        self.h.shutdown().expect("server threads end cleanly");
        if let Some((n, dir)) = self.store {
            drop(n);
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Frames and clients: the shared raw client ([`crate::common::stomp::Client`]) made to poll (reads
// time out every [`POLL`]; a frame must come within [`TIMEOUT`]), plus what only this file
// needs.

pub trait QueueFrame {
    fn n(&self) -> u32;
    fn redelivered(&self) -> bool;
}

impl QueueFrame for Frame {
    /// The test's message number (`n` header).
    fn n(&self) -> u32 {
        self.h("n")
            .parse()
            .unwrap_or_else(|_| panic!("bad n in {self:?}"))
    }

    fn redelivered(&self) -> bool {
        self.get("redelivered") == Some("true")
    }
}

pub trait QueueClient {
    fn connect(a: Addrs, kind: Kind, connect: &str) -> Self;
    fn reactor(&self) -> usize;
    fn send_n(&mut self, dest: &str, n: u32, extra: &[(&str, &str)]);
    fn call(&mut self, cmd: &str, headers: &[(&str, &str)]);
    fn sync(&mut self);
    fn subscribe(&mut self, dest: &str, id: &str, extra: &[(&str, &str)]);
    fn unsubscribe(&mut self, id: &str);
    fn ack_id(&self, f: &Frame) -> String;
    fn ack_frame(&mut self, cmd: &str, f: &Frame, extra: &[(&str, &str)]);
    fn ack(&mut self, f: &Frame);
    fn nack(&mut self, f: &Frame);
    fn ack_sync(&mut self, f: &Frame);
    fn nack_sync(&mut self, f: &Frame);
    fn disconnect(self) -> Vec<Frame>;
    fn kill(self);
    fn kill_mid_frame(self);
    fn msg_n(&mut self, dest: &str, n: u32) -> Frame;
    fn await_receipt(&mut self, id: &str);
    fn expect_error(&mut self, what: &str) -> Frame;
    fn expect_end(&mut self);
}

impl QueueClient for Client {
    fn connect(a: Addrs, kind: Kind, connect: &str) -> Client {
        let mut c = Client::open(a, kind).polling();
        let f = c.connected(connect.as_bytes());
        c.set_version(f.get("version").unwrap_or("1.0"));
        c.session = f.h("session").to_string();
        c
    }

    fn reactor(&self) -> usize {
        reactor_of(&self.session)
    }

    /// SEND message number `n` (header `n`, body `m<n>`) with `extra` headers.
    fn send_n(&mut self, dest: &str, n: u32, extra: &[(&str, &str)]) {
        let ns = n.to_string();
        let body = format!("m{n}");
        let len = body.len().to_string();
        let mut h = vec![("destination", dest), ("n", ns.as_str())];
        h.extend_from_slice(extra);
        h.push(("content-length", &len));
        self.send_frame("SEND", &h, body.as_bytes());
    }

    /// Send a frame with a fresh receipt and wait for it (MESSAGEs meanwhile are kept).
    fn call(&mut self, cmd: &str, headers: &[(&str, &str)]) {
        let r = self.next_receipt_id();
        let mut h = headers.to_vec();
        h.push(("receipt", &r));
        self.send_frame(cmd, &h, b"");
        self.await_receipt(&r);
    }

    /// Everything sent before has been handled by this client's reactor.
    fn sync(&mut self) {
        self.call("SEND", &[("destination", "/topic/sync.nobody")]);
    }

    fn subscribe(&mut self, dest: &str, id: &str, extra: &[(&str, &str)]) {
        let mut h = vec![("destination", dest), ("id", id)];
        h.extend_from_slice(extra);
        self.call("SUBSCRIBE", &h);
    }

    fn unsubscribe(&mut self, id: &str) {
        self.call("UNSUBSCRIBE", &[("id", id)]);
    }

    /// The id to ACK or NACK a MESSAGE by, as this client's version names it.
    fn ack_id(&self, f: &Frame) -> String {
        if self.version == "1.2" {
            f.h("ack").to_string()
        } else {
            f.h("message-id").to_string()
        }
    }

    fn ack_frame(&mut self, cmd: &str, f: &Frame, extra: &[(&str, &str)]) {
        let id = self.ack_id(f);
        let key = if self.version == "1.2" {
            "id"
        } else {
            "message-id"
        };
        let mut h = vec![(key, id.as_str()), ("subscription", f.h("subscription"))];
        h.extend_from_slice(extra);
        self.send_frame(cmd, &h, b"");
    }

    fn ack(&mut self, f: &Frame) {
        self.ack_frame("ACK", f, &[]);
    }

    fn nack(&mut self, f: &Frame) {
        self.ack_frame("NACK", f, &[]);
    }

    /// ACK with a receipt, and wait for it.
    fn ack_sync(&mut self, f: &Frame) {
        let r = self.next_receipt_id();
        self.ack_frame("ACK", f, &[("receipt", &r)]);
        self.await_receipt(&r);
    }

    fn nack_sync(&mut self, f: &Frame) {
        let r = self.next_receipt_id();
        self.ack_frame("NACK", f, &[("receipt", &r)]);
        self.await_receipt(&r);
    }

    /// DISCONNECT with a receipt; MESSAGEs that come first are returned.
    fn disconnect(mut self) -> Vec<Frame> {
        let r = self.next_receipt_id();
        self.send_frame("DISCONNECT", &[("receipt", &r)], b"");
        self.await_receipt(&r);
        self.pending.into_iter().collect()
    }

    /// Gone without DISCONNECT: both directions shut, socket dropped.
    fn kill(self) {
        match self.io {
            Io::Tcp(s) => {
                let _ = s.shutdown(Shutdown::Both);
            }
            Io::Ws(w) => {
                let _ = w.get_ref().shutdown(Shutdown::Both);
            }
        }
    }

    /// Gone in the middle of a frame.
    fn kill_mid_frame(mut self) {
        self.send(b"ACK\nid:q1.");
        self.kill();
    }

    /// The next MESSAGE, which must be number `n` on `dest`.
    fn msg_n(&mut self, dest: &str, n: u32) -> Frame {
        let f = self.msg();
        assert_eq!(f.h("destination"), dest, "{f:?}");
        assert_eq!(f.n(), n, "expected message {n}, got {f:?}");
        assert_eq!(f.text(), format!("m{n}"), "{f:?}");
        f
    }

    /// Wait for RECEIPT `id`; MESSAGEs that come first are kept for later reads.
    fn await_receipt(&mut self, id: &str) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(f) = self.take_frame() {
                match f.command.as_str() {
                    "RECEIPT" if f.get("receipt-id") == Some(id) => return,
                    "MESSAGE" => self.pending.push_back(f),
                    _ => panic!("waiting for RECEIPT {id}, got {f:?}: {}", self.describe()),
                }
                continue;
            }
            assert!(
                Instant::now() < deadline,
                "no RECEIPT {id} within {TIMEOUT:?}: {}",
                self.describe()
            );
            match self.fill() {
                Ok(()) | Err(End::Timeout) => {}
                Err(e) => panic!(
                    "connection ended ({e:?}) waiting for RECEIPT {id}: {}",
                    self.describe()
                ),
            }
        }
    }

    /// ERROR (whose message contains `what`), then the end of the connection, nothing else.
    fn expect_error(&mut self, what: &str) -> Frame {
        let f = self.expect("ERROR");
        assert!(
            f.get("message").is_some_and(|m| m.contains(what)),
            "ERROR message should contain {what:?}: {f:?}"
        );
        self.expect_end();
        f
    }

    /// No more frames: the connection ends (EOF, reset, or a WebSocket Close then EOF).
    fn expect_end(&mut self) {
        match self.next_within(TIMEOUT) {
            Ok(Some(f)) => panic!("expected the connection to end, got {f:?}"),
            Ok(None) => panic!(
                "connection still open after {TIMEOUT:?}: {}",
                self.describe()
            ),
            Err(e @ (End::Other(_) | End::Protocol(_) | End::WsNoClose)) => {
                panic!("unexpected read error {e:?}")
            }
            Err(End::Eof | End::Reset | End::Close(_) | End::Timeout) => {}
        }
    }
}

/// Checks every queue MESSAGE must pass: one `message-id`, and in 1.2 client modes an `ack`
/// header equal to it (none in auto mode).
pub fn check_queue_message(f: &Frame, version: &str, client_mode: bool) {
    assert_eq!(f.command, "MESSAGE", "{f:?}");
    assert_eq!(f.count("message-id"), 1, "{f:?}");
    assert_eq!(f.count("subscription"), 1, "{f:?}");
    assert_eq!(f.count("destination"), 1, "{f:?}");
    let id = f.h("message-id");
    assert!(id.starts_with('q'), "queue delivery ids are q...: {f:?}");
    if version == "1.2" && client_mode {
        assert_eq!(f.get("ack"), Some(id), "1.2 ack header = message-id: {f:?}");
    } else {
        assert_eq!(f.get("ack"), None, "{f:?}");
    }
}

pub fn other(k: Kind) -> Kind {
    match k {
        Kind::Tcp => Kind::Ws,
        Kind::Ws => Kind::Tcp,
    }
}
