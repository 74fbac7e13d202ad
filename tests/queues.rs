//! Queues, acknowledgements, NACK, transactions and topic wildcards, end to end: the real server
//! with 2-4 reactors, driven by raw TCP sockets (hand-made STOMP bytes, read back with the small
//! frame reader in `common/stomp.rs`, deliberately not stompbox's parser) and `tungstenite` over
//! WebSocket (`/ws`, subprotocol `v12.stomp`).
//!
//! Reactor placement is deterministic: the acceptor hands connections to reactors in turn, and
//! the server names sessions `s<reactor>-<n>`, so [`Srv::client_on`] can put a client on the
//! reactor a test needs. A queue lives on one "home" reactor ([`Srv::home`]); tests that depend
//! on the order in which two clients' frames reach the home keep those clients off it, so both
//! frames travel through the home's (FIFO) mailbox.
//!
//! Every read is bounded (sockets poll every [`POLL`]; a frame that does not come within
//! [`TIMEOUT`] fails the test). "Nothing else arrived" is proved with a sentinel sent after the
//! thing that must not arrive (a queue is FIFO: anything left over would come first), or by
//! counting (each queue message goes to exactly one consumer), never by waiting for silence.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::stomp::{reactor_of, Addrs, Client, End, Frame, Io, Kind, BOTH, POLL, TIMEOUT};
use stompbox::router::{Directory, Overflow, QueueConfig, Router};
use stompbox::ServerHandle;

const CONNECT12: &str = "CONNECT\naccept-version:1.2\nhost:localhost\nheart-beat:0,0\n\n\0";
const CONNECT11: &str = "CONNECT\naccept-version:1.1\nhost:localhost\nheart-beat:0,0\n\n\0";
const CONNECT10: &str = "CONNECT\nlogin:guest\npasscode:guest\n\n\0";

// ---------------------------------------------------------------------------------------------
// The server.

struct Srv {
    h: ServerHandle,
    a: Addrs,
    reactors: usize,
}

fn server(reactors: usize, f: impl FnOnce(&mut stompbox::Config)) -> Srv {
    let (h, ws) = common::server_with(|c| {
        c.reactors = reactors;
        f(c);
    });
    let tcp = h.tcp_addr().expect("tcp listener");
    Srv {
        h,
        a: Addrs { ws, tcp },
        reactors,
    }
}

impl Srv {
    /// A STOMP 1.2 client without heart-beats.
    fn client(&self, kind: Kind) -> Client {
        Client::connect(self.a, kind, CONNECT12)
    }

    /// A 1.2 client on the given reactor (connections go to reactors in turn).
    fn client_on(&self, kind: Kind, reactor: usize) -> Client {
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
    fn home(&self, queue: &str) -> usize {
        Router::with_config(
            0,
            self.reactors,
            Arc::new(Directory::new()),
            QueueConfig::default(),
        )
        .home_of(queue)
    }

    /// Shut down and check every server thread ended cleanly (none panicked).
    fn stop(self) {
        self.h.shutdown().expect("server threads end cleanly");
    }
}

// ---------------------------------------------------------------------------------------------
// Frames and clients: the shared raw client ([`common::stomp::Client`]) made to poll (reads
// time out every [`POLL`]; a frame must come within [`TIMEOUT`]), plus what only this file
// needs.

trait QueueFrame {
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

trait QueueClient {
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
fn check_queue_message(f: &Frame, version: &str, client_mode: bool) {
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

// ---------------------------------------------------------------------------------------------
// 1. The kill test.

#[derive(Debug, Clone, Copy)]
enum Death {
    /// Both directions shut, socket dropped.
    Shutdown,
    /// Half a frame, then gone.
    MidFrame,
}

#[derive(Debug, Clone, Copy)]
struct Role {
    kind: Kind,
    /// `client-individual` or `client`.
    mode: &'static str,
    prefetch: usize,
    /// A victim acks its first `n` messages (the last ACK with a receipt), then stops acking,
    /// reads until it holds `hold` unacked messages and dies without DISCONNECT. Holding a full
    /// prefetch proves every delivery the broker made to it was seen; holding fewer leaves
    /// deliveries in flight (unread, or not even at its reactor yet) when it dies.
    victim: Option<(usize, Death)>,
    hold: usize,
}

const fn survivor(kind: Kind, mode: &'static str, prefetch: usize) -> Role {
    Role {
        kind,
        mode,
        prefetch,
        victim: None,
        hold: 0,
    }
}

const fn victim(kind: Kind, mode: &'static str, prefetch: usize, acks: usize, how: Death) -> Role {
    Role {
        kind,
        mode,
        prefetch,
        victim: Some((acks, how)),
        hold: prefetch,
    }
}

/// A victim that dies holding only `hold` of its `prefetch`, with more on the way.
const fn sloppy(
    kind: Kind,
    mode: &'static str,
    prefetch: usize,
    acks: usize,
    hold: usize,
    how: Death,
) -> Role {
    Role {
        kind,
        mode,
        prefetch,
        victim: Some((acks, how)),
        hold,
    }
}

/// What every consumer shares.
struct Board {
    total: usize,
    /// ACK count per message number (index n-1).
    acks: Mutex<Vec<u32>>,
    distinct: AtomicUsize,
    done: AtomicBool,
    deadline: Instant,
}

impl Board {
    fn acked(&self, ns: &[u32]) {
        let mut a = self.acks.lock().unwrap();
        for &n in ns {
            if let Some(c) = a.get_mut(n as usize - 1) {
                if *c == 0 {
                    self.distinct.fetch_add(1, Ordering::SeqCst);
                }
                *c += 1;
            }
        }
    }
}

#[derive(Debug, Default)]
struct Report {
    name: String,
    reactor: usize,
    prefetch: usize,
    victim: bool,
    died: bool,
    /// (message number, redelivered) in arrival order.
    deliveries: Vec<(u32, bool)>,
    acked: Vec<u32>,
    /// Unacked when it died.
    held: Vec<u32>,
    /// MESSAGEs that came after everything was acked (while disconnecting).
    late: Vec<(u32, bool)>,
}

enum Event {
    Died(String),
    Failed(String),
}

const KILL_QUEUE: &str = "/queue/work";

fn consume(
    mut c: Client,
    role: Role,
    name: String,
    board: Arc<Board>,
    events: mpsc::Sender<Event>,
) -> Report {
    match consume_inner(&mut c, role, name.clone(), &board) {
        Ok(rep) if rep.died => {
            match role.victim {
                Some((_, Death::MidFrame)) => c.kill_mid_frame(),
                _ => c.kill(),
            }
            let _ = events.send(Event::Died(name));
            rep
        }
        Ok(mut rep) => {
            // Everything was acked: a clean goodbye, noting anything that still came.
            let late = c.disconnect();
            rep.late = late.iter().map(|f| (f.n(), f.redelivered())).collect();
            rep
        }
        Err(e) => {
            let _ = events.send(Event::Failed(e.clone()));
            Report {
                name: format!("{name} FAILED: {e}"),
                ..Report::default()
            }
        }
    }
}

fn consume_inner(
    c: &mut Client,
    role: Role,
    name: String,
    board: &Board,
) -> Result<Report, String> {
    let mut rep = Report {
        name: name.clone(),
        reactor: c.reactor(),
        prefetch: role.prefetch,
        victim: role.victim.is_some(),
        ..Report::default()
    };
    let client_mode = role.mode == "client";
    // Survivors ack in small batches (client-individual ones in reverse order).
    let batch = role.prefetch.clamp(1, 4);
    let mut unacked: Vec<(u32, Frame)> = Vec::new();
    let mut seen_ids: HashSet<String> = HashSet::new();
    // Victims: still acking / acks stopped (and whether the last ACK's receipt came).
    let (ack_first, _) = role.victim.unwrap_or((usize::MAX, Death::Shutdown));
    let mut holding = role.victim.is_some() && ack_first == 0;
    let mut last_ack_confirmed = holding;

    let flush = |c: &mut Client,
                 unacked: &mut Vec<(u32, Frame)>,
                 rep: &mut Report,
                 receipt: Option<&str>| {
        if unacked.is_empty() {
            return;
        }
        let ns: Vec<u32> = unacked.iter().map(|(n, _)| *n).collect();
        let extra: Vec<(&str, &str)> = match receipt {
            Some(r) => vec![("receipt", r)],
            None => vec![],
        };
        if client_mode {
            // One cumulative ACK for the latest covers them all.
            let (_, f) = unacked.last().unwrap();
            c.ack_frame("ACK", f, &extra);
        } else {
            let k = unacked.len();
            for (i, (_, f)) in unacked.iter().rev().enumerate() {
                let e: &[(&str, &str)] = if i + 1 == k { &extra } else { &[] };
                c.ack_frame("ACK", f, e);
            }
        }
        board.acked(&ns);
        rep.acked.extend_from_slice(&ns);
        unacked.clear();
    };

    loop {
        if Instant::now() > board.deadline {
            return Err(format!(
                "{name}: deadline passed with {} of {} acked (holding {:?})",
                board.distinct.load(Ordering::SeqCst),
                board.total,
                unacked.iter().map(|(n, _)| n).collect::<Vec<_>>()
            ));
        }
        let f = match c.next_within(POLL) {
            Ok(f) => f,
            Err(e) => return Err(format!("{name}: connection ended: {e:?}")),
        };
        match f {
            Some(f) if f.command == "MESSAGE" => {
                check_queue_message(&f, &c.version, true);
                if f.h("destination") != KILL_QUEUE || f.h("subscription") != "work" {
                    return Err(format!("{name}: unexpected {f:?}"));
                }
                let n = f.n();
                if !seen_ids.insert(f.h("message-id").to_string()) {
                    return Err(format!("{name}: message-id repeated: {f:?}"));
                }
                rep.deliveries.push((n, f.redelivered()));
                unacked.push((n, f));
                if unacked.len() > role.prefetch {
                    return Err(format!(
                        "{name}: {} unacked in flight, prefetch-count is {}",
                        unacked.len(),
                        role.prefetch
                    ));
                }
                if role.victim.is_some() && !holding && rep.acked.len() + unacked.len() >= ack_first
                {
                    // Last acks, confirmed by a receipt; from now on nothing is acked.
                    flush(c, &mut unacked, &mut rep, Some("last-ack"));
                    holding = true;
                } else if !holding && unacked.len() >= batch {
                    flush(c, &mut unacked, &mut rep, None);
                }
            }
            Some(f) if f.command == "RECEIPT" && f.get("receipt-id") == Some("last-ack") => {
                last_ack_confirmed = true;
            }
            Some(f) => return Err(format!("{name}: unexpected frame {f:?}")),
            None => {
                if !holding {
                    flush(c, &mut unacked, &mut rep, None);
                }
                if board.done.load(Ordering::SeqCst) {
                    if !holding {
                        flush(c, &mut unacked, &mut rep, None);
                    }
                    rep.held = unacked.iter().map(|(n, _)| *n).collect();
                    return Ok(rep);
                }
            }
        }
        if holding && last_ack_confirmed && unacked.len() >= role.hold {
            rep.held = unacked.iter().map(|(n, _)| *n).collect();
            rep.died = true;
            return Ok(rep);
        }
    }
}

/// Consumers (some killed abruptly while holding unacked messages, some joining later) share
/// one queue fed by `producers`; at the end every message sent was acked exactly once, every
/// repeat delivery was marked redelivered, and the queue is empty.
fn kill_run(
    reactors: usize,
    initial: &[Role],
    joiners: &[Role],
    producers: &[Kind],
    per_producer: u32,
) {
    let srv = server(reactors, |_| {});
    let total = producers.len() * per_producer as usize;
    let board = Arc::new(Board {
        total,
        acks: Mutex::new(vec![0; total]),
        distinct: AtomicUsize::new(0),
        done: AtomicBool::new(false),
        deadline: Instant::now() + Duration::from_secs(20),
    });
    let (tx, rx) = mpsc::channel::<Event>();
    let mut consumers: Vec<JoinHandle<Report>> = Vec::new();
    let mut placed = HashSet::new();
    let start = |role: Role, name: String, consumers: &mut Vec<JoinHandle<Report>>| {
        let mut c = srv.client(role.kind);
        let pf = role.prefetch.to_string();
        c.subscribe(
            KILL_QUEUE,
            "work",
            &[("ack", role.mode), ("prefetch-count", &pf)],
        );
        let reactor = c.reactor();
        let (b, t) = (Arc::clone(&board), tx.clone());
        consumers.push(std::thread::spawn(move || consume(c, role, name, b, t)));
        reactor
    };
    for (i, role) in initial.iter().enumerate() {
        placed.insert(start(*role, format!("c{i}"), &mut consumers));
    }
    assert_eq!(
        placed.len(),
        reactors,
        "consumers on every reactor: {placed:?}"
    );
    let prods: Vec<JoinHandle<()>> = producers
        .iter()
        .enumerate()
        .map(|(p, &kind)| {
            let mut c = srv.client(kind);
            std::thread::spawn(move || {
                let first = p as u32 * per_producer + 1;
                for n in first..first + per_producer {
                    c.send_n(KILL_QUEUE, n, &[]);
                    if n % 100 == 0 {
                        // Pace the stream so that kills happen while it flows.
                        c.sync();
                    }
                }
                c.disconnect();
            })
        })
        .collect();

    let mut joiners = joiners.iter().enumerate();
    let mut deaths = Vec::new();
    let mut failure = None;
    while board.distinct.load(Ordering::SeqCst) < total && Instant::now() < board.deadline {
        match rx.recv_timeout(POLL) {
            Ok(Event::Died(name)) => {
                deaths.push(name);
                if let Some((j, role)) = joiners.next() {
                    start(*role, format!("j{j}"), &mut consumers);
                }
            }
            Ok(Event::Failed(e)) => {
                failure = Some(e);
                break;
            }
            Err(_) => {}
        }
    }
    board.done.store(true, Ordering::SeqCst);
    for p in prods {
        p.join().expect("producer");
    }
    let reports: Vec<Report> = consumers
        .into_iter()
        .map(|h| h.join().expect("consumer thread"))
        .collect();
    if let Some(e) = failure {
        let acks = board.acks.lock().unwrap().clone();
        let missing: Vec<usize> = (1..=total).filter(|n| acks[n - 1] == 0).collect();
        let summary: Vec<String> = reports
            .iter()
            .map(|r| {
                format!(
                    "{} (reactor {}, victim {}, died {}): {} deliveries, {} acked, held {:?}",
                    r.name,
                    r.reactor,
                    r.victim,
                    r.died,
                    r.deliveries.len(),
                    r.acked.len(),
                    r.held
                )
            })
            .collect();
        // Where are the missing ones? A fresh consumer gets whatever is waiting.
        let mut probe = srv.client(Kind::Tcp);
        probe.subscribe(KILL_QUEUE, "probe", &[]);
        let mut waiting = Vec::new();
        while let Ok(Some(f)) = probe.next_within(Duration::from_millis(500)) {
            waiting.push((f.n(), f.redelivered()));
        }
        panic!(
            "a consumer failed: {e}\n{} never acked: {:?}...\nwaiting in the queue: {} {:?}\n{}",
            missing.len(),
            &missing[..missing.len().min(40)],
            waiting.len(),
            &waiting[..waiting.len().min(40)],
            summary.join("\n")
        );
    }
    for r in &reports {
        assert!(!r.name.contains("FAILED"), "{}", r.name);
        assert_eq!(
            r.victim,
            r.died,
            "{}: victims (only) die; this one saw {} deliveries, acked {}",
            r.name,
            r.deliveries.len(),
            r.acked.len()
        );
    }
    let died = reports.iter().filter(|r| r.died).count();
    let initial_victims = initial.iter().filter(|r| r.victim.is_some()).count();
    assert!(died >= initial_victims, "{died} died");

    // Every message acked exactly once.
    let acks = board.acks.lock().unwrap().clone();
    let missing: Vec<usize> = (1..=total).filter(|n| acks[n - 1] == 0).collect();
    let twice: Vec<(usize, u32)> = (1..=total)
        .filter(|n| acks[n - 1] > 1)
        .map(|n| (n, acks[n - 1]))
        .collect();
    assert!(
        missing.is_empty() && twice.is_empty(),
        "{} of {total} messages never acked: {:?}...; acked more than once (n, times): {:?}",
        missing.len(),
        &missing[..missing.len().min(20)],
        &twice[..twice.len().min(20)]
    );
    // Each victim held unacked messages when it died; each of them came again, marked.
    let mut deliveries: BTreeMap<u32, Vec<(bool, &str)>> = BTreeMap::new();
    for r in &reports {
        for &(n, re) in r.deliveries.iter().chain(&r.late) {
            deliveries.entry(n).or_default().push((re, r.name.as_str()));
        }
        assert!(
            r.late.is_empty(),
            "{}: messages after the end: {:?}",
            r.name,
            r.late
        );
    }
    let mut held_total = 0;
    for r in reports.iter().filter(|r| r.died) {
        assert!(!r.held.is_empty(), "{} died holding nothing", r.name);
        held_total += r.held.len();
        for n in &r.held {
            let d = &deliveries[n];
            assert!(
                d.len() >= 2 && d.iter().any(|(re, _)| *re),
                "message {n} held by {} when it died was not redelivered: {d:?}",
                r.name
            );
        }
    }
    // When victims hold a full prefetch nothing was in flight to them, so every delivery was
    // seen: exactly one first delivery per message, every repeat marked redelivered. Victims
    // that die holding less may take unseen deliveries with them: at most one first delivery.
    let all_seen = reports
        .iter()
        .all(|r| !r.victim || r.held.len() == r.prefetch);
    for n in 1..=total as u32 {
        let d = deliveries.get(&n).map(Vec::as_slice).unwrap_or_default();
        let firsts = d.iter().filter(|(re, _)| !re).count();
        assert!(
            firsts == 1 || (firsts == 0 && !all_seen),
            "message {n}: deliveries without redelivered:true must be exactly one: {d:?}"
        );
    }
    let repeats: usize = deliveries.values().map(|d| d.len() - 1).sum();
    assert!(
        repeats >= held_total,
        "{repeats} repeats < {held_total} held"
    );
    assert!(held_total > 0);

    // The queue is empty: a fresh consumer's first message is a new one.
    let mut last = srv.client(Kind::Tcp);
    last.subscribe(KILL_QUEUE, "last", &[("ack", "client-individual")]);
    let mut p = srv.client(Kind::Ws);
    let sentinel = total as u32 + 1;
    p.send_n(KILL_QUEUE, sentinel, &[]);
    let f = last.msg_n(KILL_QUEUE, sentinel);
    assert!(!f.redelivered(), "{f:?}");
    let killed: Vec<(&str, usize)> = reports
        .iter()
        .filter(|r| r.died)
        .map(|r| (r.name.as_str(), r.reactor))
        .collect();
    eprintln!(
        "kill run: {total} messages, {} consumers, killed (name, reactor) {killed:?} holding \
         {held_total}, {repeats} redeliveries, deaths in order {deaths:?}",
        reports.len()
    );
    drop((last, p));
    srv.stop();
}

/// The acceptance test: 4 reactors, consumers in both ack modes over TCP and WebSocket, four
/// of them killed mid-stream (one of them a late joiner, so redelivered messages die again),
/// new consumers joining after each death; 2,000 messages from two producers.
#[test]
fn killed_consumers_lose_nothing_every_message_acked_exactly_once() {
    use Kind::{Tcp, Ws};
    let ci = "client-individual";
    kill_run(
        4,
        &[
            survivor(Tcp, ci, 20),
            victim(Ws, ci, 5, 20, Death::Shutdown),
            victim(Tcp, "client", 8, 30, Death::MidFrame),
            victim(Tcp, ci, 10, 0, Death::Shutdown),
            survivor(Ws, "client", 16),
            victim(Tcp, ci, 3, 45, Death::MidFrame),
            survivor(Tcp, ci, 50),
        ],
        &[
            survivor(Tcp, ci, 10),
            victim(Ws, ci, 4, 15, Death::Shutdown),
            survivor(Tcp, "client", 12),
            survivor(Ws, ci, 30),
        ],
        &[Tcp, Ws],
        1000,
    );
}

/// The same on 2 reactors with mostly WebSocket consumers, cumulative acks and a prefetch of 1.
#[test]
fn killed_consumers_on_two_reactors_websocket_and_client_ack() {
    use Kind::{Tcp, Ws};
    let ci = "client-individual";
    kill_run(
        2,
        &[
            // Connections alternate reactors: victims on both (one of them the home).
            survivor(Ws, "client", 7),
            victim(Ws, "client", 6, 25, Death::Shutdown),
            victim(Tcp, ci, 12, 50, Death::Shutdown),
            survivor(Ws, ci, 1),
        ],
        &[
            victim(Ws, "client", 5, 10, Death::MidFrame),
            survivor(Tcp, ci, 9),
        ],
        &[Ws],
        1000,
    );
}

/// Victims die with deliveries still coming (large prefetch, holding a few): what was in flight
/// to them, unread in their socket or still on its way between reactors, must come back too.
#[test]
fn consumers_killed_with_deliveries_in_flight_lose_nothing() {
    use Kind::{Tcp, Ws};
    let ci = "client-individual";
    kill_run(
        3,
        &[
            survivor(Tcp, ci, 40),
            sloppy(Ws, ci, 100, 10, 3, Death::Shutdown),
            sloppy(Tcp, "client", 100, 30, 1, Death::Shutdown),
            sloppy(Tcp, ci, 60, 0, 5, Death::MidFrame),
            survivor(Ws, "client", 25),
            sloppy(Tcp, ci, 100, 50, 2, Death::Shutdown),
        ],
        &[
            sloppy(Ws, "client", 50, 5, 4, Death::Shutdown),
            survivor(Tcp, ci, 8),
            survivor(Ws, ci, 100),
            survivor(Tcp, "client", 30),
        ],
        &[Tcp, Ws],
        1000,
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Dispatch: round-robin, prefetch, waiting messages, bounds.

#[test]
fn round_robin_gives_each_consumer_on_each_reactor_an_equal_share() {
    let srv = server(4, |_| {});
    let q = "/queue/rr";
    let home = srv.home(q);
    let mut cons: Vec<(Client, &str)> = Vec::new();
    for r in 0..4 {
        let kind = if r % 2 == 0 { Kind::Tcp } else { Kind::Ws };
        let mut c = srv.client_on(kind, r);
        let mode = if r < 2 { "auto" } else { "client-individual" };
        c.subscribe(q, "rr", &[("ack", mode), ("prefetch-count", "1000")]);
        cons.push((c, mode));
    }
    // The producer is off the home reactor, so its SENDs reach the home after every
    // AddConsumer (one FIFO mailbox).
    let mut p = srv.client_on(Kind::Tcp, home + 1);
    for n in 1..=400 {
        p.send_n(q, n, &[]);
    }
    let mut residues = HashSet::new();
    for (c, mode) in &mut cons {
        let got: Vec<u32> = (0..100)
            .map(|_| {
                let f = c.msg();
                check_queue_message(&f, "1.2", *mode != "auto");
                assert!(!f.redelivered(), "{f:?}");
                if *mode != "auto" {
                    c.ack(&f);
                }
                f.n()
            })
            .collect();
        // In order, and exactly every 4th message.
        assert!(
            got.windows(2).all(|w| w[1] == w[0] + 4),
            "reactor {}: {got:?}",
            c.reactor()
        );
        residues.insert(got[0] % 4);
    }
    assert_eq!(residues.len(), 4, "the four consumers took turns");
    // 400 messages, 100 each: nobody got more. And the rotation goes on.
    for n in 401..=404 {
        p.send_n(q, n, &[]);
    }
    let mut next: Vec<u32> = cons.iter_mut().map(|(c, _)| c.msg().n()).collect();
    next.sort_unstable();
    assert_eq!(next, vec![401, 402, 403, 404]);
    drop((cons, p));
    srv.stop();
}

#[test]
fn prefetch_count_caps_unacked_messages_in_flight() {
    let srv = server(3, |c| c.session.default_prefetch = 3);
    let q = "/queue/prefetch";
    let home = srv.home(q);
    let mut a = srv.client_on(Kind::Tcp, home + 1);
    a.subscribe(
        q,
        "a",
        &[("ack", "client-individual"), ("prefetch-count", "2")],
    );
    let mut p = srv.client_on(Kind::Ws, home + 2);
    for n in 1..=6 {
        p.send_n(q, n, &[]);
    }
    p.sync();
    let m1 = a.msg_n(q, 1);
    let m2 = a.msg_n(q, 2);
    // One ACK frees one slot: exactly one more.
    a.ack_sync(&m1);
    let m3 = a.msg_n(q, 3);
    // A second consumer takes everything A may not have: 4, 5, 6. Had A been sent more than
    // its 2 unacked, B would not get all three.
    let mut b = srv.client_on(Kind::Tcp, home + 1);
    b.subscribe(q, "b", &[("ack", "auto")]);
    for n in 4..=6 {
        b.msg_n(q, n);
    }
    // A still holds 2: the next message goes to B.
    p.send_n(q, 7, &[]);
    b.msg_n(q, 7);
    // Once A acks both, it takes messages again.
    a.ack(&m2);
    a.ack_sync(&m3);
    b.unsubscribe("b");
    p.send_n(q, 8, &[]);
    a.msg_n(q, 8);

    // Without prefetch-count: the configured default (3 here).
    let q2 = "/queue/prefetch-default";
    let home2 = srv.home(q2);
    let mut c = srv.client_on(Kind::Ws, home2 + 1);
    c.subscribe(q2, "c", &[("ack", "client")]);
    let mut p = srv.client_on(Kind::Tcp, home2 + 2);
    for n in 1..=5 {
        p.send_n(q2, n, &[]);
    }
    let got: Vec<Frame> = (1..=3).map(|n| c.msg_n(q2, n)).collect();
    let mut d = srv.client_on(Kind::Tcp, home2 + 1);
    d.subscribe(q2, "d", &[]);
    d.msg_n(q2, 4);
    d.msg_n(q2, 5);
    // A cumulative ACK of the third frees all three.
    c.ack_sync(&got[2]);
    d.unsubscribe("d");
    for n in 6..=8 {
        p.send_n(q2, n, &[]);
    }
    for n in 6..=8 {
        c.msg_n(q2, n);
    }
    drop((a, b, c, d, p));
    srv.stop();
}

#[test]
fn messages_sent_with_no_consumer_wait_and_are_delivered_in_order() {
    let srv = server(3, |_| {});
    for kind in BOTH {
        let q = format!("/queue/wait-{kind:?}");
        let q = q.as_str();
        let mut p = srv.client(kind);
        for n in 1..=20 {
            p.send_n(q, n, &[("x-kept", "yes")]);
        }
        p.sync();
        // Subscribe on another reactor, later.
        let mut c = srv.client_on(kind, p.reactor() + 1);
        c.subscribe(q, "w", &[("ack", "client-individual")]);
        let got: Vec<Frame> = (1..=20).map(|n| c.msg_n(q, n)).collect();
        for f in &got {
            check_queue_message(f, "1.2", true);
            assert!(!f.redelivered(), "{f:?}");
            assert_eq!(f.h("subscription"), "w");
            assert_eq!(f.h("x-kept"), "yes", "sender headers kept: {f:?}");
        }
        // Ack half, leave cleanly: the other half goes back, marked, in order.
        for f in &got[..10] {
            c.ack(f);
        }
        let late = c.disconnect();
        assert!(late.is_empty(), "{late:?}");
        let mut d = srv.client_on(other(kind), p.reactor() + 2);
        d.subscribe(q, "w2", &[("ack", "client-individual")]);
        for n in 11..=20 {
            let f = d.msg_n(q, n);
            assert!(f.redelivered(), "{f:?}");
            d.ack(&f);
        }
        p.send_n(q, 21, &[]);
        let f = d.msg_n(q, 21);
        assert!(!f.redelivered(), "{f:?}");
    }
    srv.stop();
}

fn other(k: Kind) -> Kind {
    match k {
        Kind::Tcp => Kind::Ws,
        Kind::Ws => Kind::Tcp,
    }
}

fn bounded(overflow: Overflow) -> Srv {
    server(2, |c| {
        c.queues = QueueConfig {
            max_messages: 3,
            overflow,
            ..QueueConfig::default()
        }
    })
}

#[test]
fn a_full_queue_with_reject_refuses_the_send_with_an_error() {
    let srv = bounded(Overflow::Reject);
    for kind in BOTH {
        let q = format!("/queue/full-{kind:?}");
        let q = q.as_str();
        let mut p = srv.client(kind);
        for n in 1..=3 {
            p.send_n(q, n, &[]);
        }
        p.send_n(q, 4, &[]);
        p.expect_error("queue full: message refused");
        // The three accepted ones are there; the fourth is not.
        let mut c = srv.client(other(kind));
        c.subscribe(q, "c", &[]);
        for n in 1..=3 {
            c.msg_n(q, n);
        }
        let mut p2 = srv.client(kind);
        p2.send_n(q, 5, &[]);
        c.msg_n(q, 5);
    }
    srv.stop();
}

/// A RECEIPT means the frame was processed; a refused SEND must not get one.
///
/// Regression: the RECEIPT used to be written when the SEND was parsed, before the queue's
/// home had accepted it, and the later ERROR carried no `receipt-id`. The home now answers
/// both.
#[test]
fn a_refused_send_gets_no_receipt_and_its_error_names_the_receipt() {
    let srv = bounded(Overflow::Reject);
    let q = "/queue/full-receipt";
    let mut p = srv.client(Kind::Tcp);
    for n in 1..=3 {
        p.send_n(q, n, &[]);
    }
    p.send_n(q, 4, &[("receipt", "send-4")]);
    let f = p.recv();
    assert_eq!(f.command, "ERROR", "no RECEIPT for a refused SEND: {f:?}");
    assert_eq!(f.get("receipt-id"), Some("send-4"), "{f:?}");
    srv.stop();
}

#[test]
fn a_full_queue_with_drop_oldest_drops_the_oldest() {
    let srv = bounded(Overflow::DropOldest);
    for kind in BOTH {
        let q = format!("/queue/drop-{kind:?}");
        let q = q.as_str();
        // Both off the home: the SENDs reach it before the SUBSCRIBE (one FIFO mailbox).
        let home = srv.home(q);
        let mut p = srv.client_on(kind, home + 1);
        for n in 1..=5 {
            p.send_n(q, n, &[]);
        }
        // No error: the sender stays connected.
        p.sync();
        let mut c = srv.client_on(other(kind), home + 1);
        c.subscribe(q, "c", &[("ack", "client-individual")]);
        for n in 3..=5 {
            let f = c.msg_n(q, n);
            c.ack(&f);
        }
        p.send_n(q, 6, &[]);
        c.msg_n(q, 6);
    }
    srv.stop();
}

// ---------------------------------------------------------------------------------------------
// 3. Acknowledgements.

#[test]
fn nack_redelivers_to_another_consumer_marked_redelivered() {
    let srv = server(3, |_| {});
    for kind in BOTH {
        let q = format!("/queue/nack-{kind:?}");
        let q = q.as_str();
        let home = srv.home(q);
        // A and B off the home: their frames reach it through its mailbox, in order.
        let mut a = srv.client_on(kind, home + 1);
        a.subscribe(q, "a", &[("ack", "client-individual")]);
        let mut p = srv.client_on(Kind::Tcp, home);
        p.send_n(q, 1, &[]);
        let f = a.msg_n(q, 1);
        assert!(!f.redelivered(), "{f:?}");
        // Alone, a NACKed message comes back to the same consumer.
        a.nack_sync(&f);
        let f = a.msg_n(q, 1);
        assert!(f.redelivered(), "{f:?}");
        // With another consumer, it goes there.
        let mut b = srv.client_on(other(kind), home + 2);
        b.subscribe(q, "b", &[("ack", "client-individual")]);
        a.nack(&f);
        let g = b.msg_n(q, 1);
        assert!(g.redelivered(), "{g:?}");
        assert_eq!(g.h("subscription"), "b");
        b.ack_sync(&g);
        // A did not get it again: its next message is a new one.
        p.send_n(q, 2, &[]);
        p.send_n(q, 3, &[]);
        let fa = a.msg();
        let fb = b.msg();
        let mut ns = [fa.n(), fb.n()];
        ns.sort_unstable();
        assert_eq!(ns, [2, 3], "{fa:?} {fb:?}");
        assert!(!fa.redelivered() && !fb.redelivered());
        a.ack(&fa);
        b.ack(&fb);
        a.disconnect();
        b.disconnect();
    }
    srv.stop();
}

#[test]
fn unsubscribe_requeues_unacked_messages_as_redelivered() {
    let srv = server(2, |_| {});
    let q = "/queue/unsub";
    let mut a = srv.client(Kind::Ws);
    a.subscribe(q, "a", &[("ack", "client-individual")]);
    let mut p = srv.client(Kind::Tcp);
    for n in 1..=4 {
        p.send_n(q, n, &[]);
    }
    let got: Vec<Frame> = (1..=4).map(|n| a.msg_n(q, n)).collect();
    a.ack_sync(&got[1]);
    a.unsubscribe("a");
    let mut b = srv.client(Kind::Tcp);
    b.subscribe(q, "b", &[("ack", "client-individual")]);
    for n in [1, 3, 4] {
        let f = b.msg_n(q, n);
        assert!(f.redelivered(), "{f:?}");
        b.ack(&f);
    }
    p.send_n(q, 5, &[]);
    b.msg_n(q, 5);
    // The subscription is gone: its ack ids are no longer valid.
    a.ack_frame("ACK", &got[0], &[]);
    a.expect_error("unknown ack id");
    srv.stop();
}

#[test]
fn client_mode_acks_and_nacks_cumulatively() {
    let srv = server(2, |_| {});
    let q = "/queue/cumulative";
    let mut c = srv.client(Kind::Tcp);
    c.subscribe(q, "c", &[("ack", "client"), ("prefetch-count", "10")]);
    let mut p = srv.client(Kind::Ws);
    for n in 1..=8 {
        p.send_n(q, n, &[]);
    }
    let got: Vec<Frame> = (1..=8).map(|n| c.msg_n(q, n)).collect();
    // ACK of the 3rd acks 1..3.
    c.ack_sync(&got[2]);
    // NACK of the 5th gives back 4 and 5 (to C, the only consumer), marked.
    c.nack_sync(&got[4]);
    let r4 = c.msg_n(q, 4);
    let r5 = c.msg_n(q, 5);
    assert!(r4.redelivered() && r5.redelivered(), "{r4:?} {r5:?}");
    // C still holds 6, 7, 8 (first delivery) and 4, 5 (second). Acking the 2nd is an error
    // (already acked by the cumulative ACK); the ERROR ends C and what it held goes back.
    c.ack_frame("ACK", &got[1], &[]);
    c.expect_error("unknown ack id");
    let mut d = srv.client(Kind::Ws);
    d.subscribe(q, "d", &[("ack", "client-individual")]);
    let mut ns: Vec<u32> = (0..5)
        .map(|_| {
            let f = d.msg();
            assert!(f.redelivered(), "{f:?}");
            d.ack(&f);
            f.n()
        })
        .collect();
    ns.sort_unstable();
    assert_eq!(ns, vec![4, 5, 6, 7, 8]);
    p.send_n(q, 9, &[]);
    d.msg_n(q, 9);
    srv.stop();
}

#[test]
fn unknown_ack_ids_are_errors() {
    let srv = server(2, |_| {});
    let q = "/queue/unknown-ack";
    for kind in BOTH {
        // Not an id at all; a well-formed id never handed out; NACK too.
        for (cmd, id) in [("ACK", "bogus"), ("ACK", "q77.3.9"), ("NACK", "zzz")] {
            let mut c = srv.client(kind);
            c.subscribe(q, "s", &[("ack", "client-individual")]);
            c.send_frame(cmd, &[("id", id)], b"");
            let e = c.expect_error("unknown ack id");
            assert!(e.h("message").contains(id), "{e:?}");
        }
    }
    // An id is valid only on the connection it was delivered on.
    let mut a = srv.client(Kind::Tcp);
    a.subscribe(q, "s", &[("ack", "client-individual")]);
    let mut p = srv.client(Kind::Ws);
    p.send_n(q, 1, &[]);
    let f = a.msg_n(q, 1);
    let mut b = srv.client(Kind::Tcp);
    b.subscribe(q, "s", &[("ack", "client-individual")]);
    b.send_frame("ACK", &[("id", f.h("ack"))], b"");
    b.expect_error("unknown ack id");
    // A's own ACK works, once.
    a.ack_sync(&f);
    a.ack(&f);
    a.expect_error("unknown ack id");
    // It was acked: nothing comes back.
    let mut d = srv.client(Kind::Tcp);
    d.subscribe(q, "d", &[]);
    p.send_n(q, 2, &[]);
    d.msg_n(q, 2);
    srv.stop();
}

/// STOMP 1.2: an ERROR caused by a frame with a `receipt` header carries `receipt-id`.
#[test]
fn an_unknown_ack_id_error_names_the_receipt() {
    let srv = server(2, |_| {});
    let mut c = srv.client(Kind::Tcp);
    c.subscribe("/queue/x", "s", &[("ack", "client-individual")]);
    c.send_frame("ACK", &[("id", "bogus"), ("receipt", "ack-1")], b"");
    let e = c.expect("ERROR");
    assert_eq!(e.get("receipt-id"), Some("ack-1"), "{e:?}");
    srv.stop();
}

#[test]
fn stomp_1_1_and_1_0_ack_by_message_id() {
    let srv = server(2, |_| {});
    for (connect, version) in [(CONNECT11, "1.1"), (CONNECT10, "1.0")] {
        for kind in BOTH {
            let q = format!("/queue/v{version}-{kind:?}");
            let q = q.as_str();
            let mut c = Client::connect(srv.a, kind, connect);
            assert_eq!(c.version, version);
            c.subscribe(q, "old", &[("ack", "client-individual")]);
            let mut p = srv.client(other(kind));
            for n in 1..=3 {
                p.send_n(q, n, &[]);
            }
            let got: Vec<Frame> = (1..=3).map(|n| c.msg_n(q, n)).collect();
            for f in &got {
                check_queue_message(f, version, true);
            }
            c.ack_sync(&got[0]);
            if version == "1.1" {
                // NACK exists from 1.1: back to the only consumer, marked.
                c.nack_sync(&got[1]);
                let f = c.msg_n(q, 2);
                assert!(f.redelivered(), "{f:?}");
                c.ack_sync(&f);
            } else {
                c.ack_sync(&got[1]);
            }
            // 3 is not acked: it comes back to the next consumer; 1 and 2 do not.
            c.disconnect();
            let mut d = srv.client(kind);
            d.subscribe(q, "d", &[]);
            let f = d.msg_n(q, 3);
            assert!(f.redelivered(), "{f:?}");
            p.send_n(q, 4, &[]);
            d.msg_n(q, 4);
        }
    }
    srv.stop();
}

#[test]
fn auto_mode_needs_no_ack() {
    let srv = server(2, |_| {});
    for kind in BOTH {
        let q = format!("/queue/auto-{kind:?}");
        let q = q.as_str();
        let mut c = srv.client(kind);
        // No ack header: auto.
        c.subscribe(q, "a", &[]);
        let mut p = srv.client(other(kind));
        for n in 1..=5 {
            p.send_n(q, n, &[]);
        }
        for n in 1..=5 {
            let f = c.msg_n(q, n);
            check_queue_message(&f, "1.2", false);
        }
        // Gone without a single ACK: nothing comes back. (A clean DISCONNECT: after an abrupt
        // close the server could still hand the next message to the dead auto consumer.)
        c.disconnect();
        let mut d = srv.client(kind);
        d.subscribe(q, "d", &[("ack", "auto")]);
        p.send_n(q, 6, &[]);
        d.msg_n(q, 6);
    }
    srv.stop();
}

/// A message the home dispatched to an auto-mode consumer that left before it got there was
/// never sent to anyone: it must not be lost.
///
/// Regression: auto-mode deliveries are not kept in flight at the home, and a delivery that
/// reached the consumer's reactor after the consumer left used to be dropped (hundreds lost per
/// run). It is now handed back to the front of the queue.
#[test]
fn an_auto_consumer_leaving_mid_stream_loses_nothing_it_did_not_receive() {
    let srv = server(2, |_| {});
    let q = "/queue/auto-leave";
    let home = srv.home(q);
    let total = 3000u32;
    // B acks everything it gets; A (off the home, so deliveries to it are in transit for a
    // while) subscribes and unsubscribes over and over while the stream flows.
    let mut b = srv.client_on(Kind::Tcp, home);
    b.subscribe(
        q,
        "b",
        &[("ack", "client-individual"), ("prefetch-count", "10000")],
    );
    let mut a = srv.client_on(Kind::Tcp, home + 1);
    let mut p = srv.client_on(Kind::Tcp, home + 1);
    let producer = std::thread::spawn(move || {
        for n in 1..=total {
            p.send_n(q, n, &[]);
            if n % 200 == 0 {
                p.sync();
            }
        }
        p.disconnect();
    });
    let got_b = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let (gb, st) = (Arc::clone(&got_b), Arc::clone(&stop));
    let consumer_b = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !st.load(Ordering::SeqCst) && Instant::now() < deadline {
            if let Some(f) = b.next_within(POLL).expect("B connection") {
                assert_eq!(f.command, "MESSAGE", "{f:?}");
                b.ack(&f);
                gb.lock().unwrap().push(f.n());
            }
        }
        b.disconnect();
    });
    let mut got_a = Vec::new();
    for round in 0..40 {
        a.subscribe(q, "a", &[("ack", "auto")]);
        for _ in 0..10 {
            match a.next_within(Duration::from_millis(200)).expect("A") {
                Some(f) => got_a.push(f.n()),
                None => break,
            }
        }
        // Everything delivered to this subscription comes before the receipt.
        a.unsubscribe("a");
        got_a.extend(a.pending.drain(..).map(|f| f.n()));
        if round % 8 == 7 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    producer.join().expect("producer");
    // Wait until B has everything A did not get (or it stops coming).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = (0, Instant::now());
    loop {
        let nb = got_b.lock().unwrap().len();
        if nb + got_a.len() >= total as usize || Instant::now() > deadline {
            break;
        }
        if nb != last.0 {
            last = (nb, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(2) {
            break;
        }
        std::thread::sleep(POLL);
    }
    stop.store(true, Ordering::SeqCst);
    consumer_b.join().expect("consumer B");
    let mut count: HashMap<u32, usize> = HashMap::new();
    for n in got_a.iter().chain(got_b.lock().unwrap().iter()) {
        *count.entry(*n).or_default() += 1;
    }
    let missing: Vec<u32> = (1..=total).filter(|n| !count.contains_key(n)).collect();
    let twice: Vec<u32> = (1..=total)
        .filter(|n| count.get(n).is_some_and(|c| *c > 1))
        .collect();
    assert!(
        missing.is_empty() && twice.is_empty(),
        "A got {}, B got {}; lost {} {:?}; twice {:?}",
        got_a.len(),
        count.len() - got_a.len(),
        missing.len(),
        &missing[..missing.len().min(20)],
        &twice[..twice.len().min(20)]
    );
    drop(a);
    srv.stop();
}

#[test]
fn topic_subscriptions_in_client_modes_accept_ack_and_nack_without_redelivery() {
    let srv = server(2, |_| {});
    let t = "/topic/acked";
    for mode in ["client-individual", "client"] {
        let mut c = srv.client(Kind::Ws);
        c.subscribe(t, "t", &[("ack", mode)]);
        let mut p = srv.client(Kind::Tcp);
        p.send_n(t, 1, &[]);
        let f = c.msg_n(t, 1);
        assert_eq!(f.get("ack"), Some(f.h("message-id")), "{f:?}");
        assert!(f.h("message-id").starts_with('m'), "{f:?}");
        c.ack_sync(&f);
        p.send_n(t, 2, &[]);
        let f = c.msg_n(t, 2);
        c.nack_sync(&f);
        // No redelivery: the next message is 3.
        p.send_n(t, 3, &[]);
        let f = c.msg_n(t, 3);
        assert!(!f.redelivered(), "{f:?}");
        // Leaving without acking 3 redelivers nothing either (topics keep nothing).
        c.disconnect();
    }
    srv.stop();
}

// ---------------------------------------------------------------------------------------------
// 4. Transactions.

/// The numbers of the next `k` MESSAGEs, sorted.
fn next_ns(c: &mut Client, k: usize) -> Vec<u32> {
    let mut v: Vec<u32> = (0..k).map(|_| c.msg().n()).collect();
    v.sort_unstable();
    v
}

#[test]
fn commit_delivers_all_in_order_abort_and_disconnect_deliver_none() {
    let srv = server(3, |_| {});
    for kind in BOTH {
        let q = format!("/queue/tx-{kind:?}");
        let q = q.as_str();
        let t = format!("/topic/tx-{kind:?}");
        let t = t.as_str();
        let mut c = srv.client(kind);
        c.subscribe(q, "q", &[]);
        c.subscribe(t, "t", &[]);
        let mut p = srv.client(other(kind));
        let mut outside = srv.client(kind);

        // A transaction killed with the connection: never delivered.
        let mut gone = srv.client(kind);
        gone.call("BEGIN", &[("transaction", "tk")]);
        gone.send_n(q, 900, &[("transaction", "tk")]);
        gone.send_n(t, 901, &[("transaction", "tk")]);
        gone.sync();
        gone.kill();

        // Commit: nothing before COMMIT (a later plain SEND overtakes), all of it after, in
        // order.
        p.call("BEGIN", &[("transaction", "t1")]);
        for n in 1..=5 {
            p.send_n(q, n, &[("transaction", "t1")]);
        }
        p.send_n(t, 6, &[("transaction", "t1")]);
        p.sync();
        outside.send_n(q, 100, &[]);
        outside.send_n(t, 101, &[]);
        // Queue and topic messages take different paths: only per-destination order holds.
        assert_eq!(next_ns(&mut c, 2), vec![100, 101]);
        p.call("COMMIT", &[("transaction", "t1")]);
        let mut q_got = Vec::new();
        let mut t_got = Vec::new();
        for _ in 0..6 {
            let f = c.msg();
            if f.h("destination") == q {
                q_got.push(f.n());
            } else {
                t_got.push(f.n());
            }
        }
        assert_eq!(q_got, vec![1, 2, 3, 4, 5]);
        assert_eq!(t_got, vec![6]);

        // Abort: none of it.
        p.call("BEGIN", &[("transaction", "t2")]);
        for n in 7..=9 {
            p.send_n(q, n, &[("transaction", "t2")]);
        }
        p.send_n(t, 10, &[("transaction", "t2")]);
        p.call("ABORT", &[("transaction", "t2")]);
        p.send_n(q, 11, &[]);
        p.send_n(t, 12, &[]);
        assert_eq!(next_ns(&mut c, 2), vec![11, 12]);

        // Disconnect with an open transaction: none of it.
        p.call("BEGIN", &[("transaction", "t3")]);
        p.send_n(q, 912, &[("transaction", "t3")]);
        p.send_n(t, 913, &[("transaction", "t3")]);
        p.disconnect();
        outside.send_n(q, 14, &[]);
        outside.send_n(t, 15, &[]);
        assert_eq!(next_ns(&mut c, 2), vec![14, 15]);

        // A transaction name can be reused once ended; two may be open at once.
        let mut p = srv.client(kind);
        p.call("BEGIN", &[("transaction", "t1")]);
        p.call("BEGIN", &[("transaction", "t2")]);
        p.send_n(q, 16, &[("transaction", "t2")]);
        p.send_n(q, 17, &[("transaction", "t1")]);
        p.call("COMMIT", &[("transaction", "t1")]);
        c.msg_n(q, 17);
        p.call("COMMIT", &[("transaction", "t2")]);
        c.msg_n(q, 16);
        // (The killed connection's messages 900/901 never came: they would have been ahead.)
    }
    srv.stop();
}

#[test]
fn ack_inside_a_transaction_takes_effect_only_at_commit() {
    let srv = server(3, |_| {});
    for kind in BOTH {
        let q = format!("/queue/tx-ack-{kind:?}");
        let q = q.as_str();
        let home = srv.home(q);
        let mut c = srv.client_on(kind, home + 1);
        c.subscribe(q, "c", &[("ack", "client-individual")]);
        let mut p = srv.client_on(other(kind), home + 2);
        for n in 1..=4 {
            p.send_n(q, n, &[]);
        }
        let got: Vec<Frame> = (1..=4).map(|n| c.msg_n(q, n)).collect();
        // 1: acked in an aborted transaction -> not acked.
        c.call("BEGIN", &[("transaction", "a")]);
        c.ack_frame("ACK", &got[0], &[("transaction", "a")]);
        c.call("ABORT", &[("transaction", "a")]);
        // 2: acked in a committed transaction -> acked.
        c.call("BEGIN", &[("transaction", "b")]);
        c.ack_frame("ACK", &got[1], &[("transaction", "b")]);
        c.call("COMMIT", &[("transaction", "b")]);
        // 3: NACKed in a transaction left open at disconnect -> not NACKed, not acked.
        // 4: acked in that same open transaction -> not acked.
        c.call("BEGIN", &[("transaction", "open")]);
        c.ack_frame("NACK", &got[2], &[("transaction", "open")]);
        c.ack_frame("ACK", &got[3], &[("transaction", "open")]);
        c.disconnect();
        let mut d = srv.client_on(kind, home + 2);
        d.subscribe(q, "d", &[("ack", "client-individual")]);
        for n in [1, 3, 4] {
            let f = d.msg_n(q, n);
            assert!(f.redelivered(), "{f:?}");
            d.ack(&f);
        }
        p.send_n(q, 5, &[]);
        d.msg_n(q, 5);
    }
    srv.stop();
}

#[test]
fn a_nack_inside_a_committed_transaction_redelivers() {
    let srv = server(2, |_| {});
    let q = "/queue/tx-nack";
    let mut c = srv.client(Kind::Ws);
    c.subscribe(q, "c", &[("ack", "client-individual")]);
    let mut p = srv.client(Kind::Tcp);
    p.send_n(q, 1, &[]);
    p.send_n(q, 2, &[]);
    let m1 = c.msg_n(q, 1);
    let m2 = c.msg_n(q, 2);
    c.call("BEGIN", &[("transaction", "x")]);
    c.ack_frame("NACK", &m1, &[("transaction", "x")]);
    c.ack_frame("ACK", &m2, &[("transaction", "x")]);
    c.call("COMMIT", &[("transaction", "x")]);
    let f = c.msg_n(q, 1);
    assert!(f.redelivered(), "{f:?}");
    c.ack_sync(&f);
    p.send_n(q, 3, &[]);
    c.msg_n(q, 3);
    srv.stop();
}

/// A command and its headers.
type Cmd<'a> = (&'a str, &'a [(&'a str, &'a str)]);

#[test]
fn unknown_duplicate_and_oversized_transactions_are_errors() {
    let srv = server(2, |c| c.session.max_tx_frames = 3);
    let q = "/queue/tx-errors";
    for kind in BOTH {
        let cases: &[(&[Cmd], &str)] = &[
            (
                &[("SEND", &[("destination", q), ("transaction", "nope")])],
                "unknown transaction 'nope'",
            ),
            (
                &[("ACK", &[("id", "q1.1.1"), ("transaction", "nope")])],
                "unknown transaction 'nope'",
            ),
            (
                &[("COMMIT", &[("transaction", "nope")])],
                "unknown transaction 'nope'",
            ),
            (
                &[("ABORT", &[("transaction", "nope")])],
                "unknown transaction 'nope'",
            ),
            (
                &[
                    ("BEGIN", &[("transaction", "t")]),
                    ("BEGIN", &[("transaction", "t")]),
                ],
                "transaction 't' already begun",
            ),
            (
                &[
                    ("BEGIN", &[("transaction", "t")]),
                    ("COMMIT", &[("transaction", "t")]),
                    ("COMMIT", &[("transaction", "t")]),
                ],
                "unknown transaction 't'",
            ),
        ];
        for (frames, err) in cases {
            let mut c = srv.client(kind);
            for (cmd, h) in *frames {
                c.send_frame(cmd, h, b"");
            }
            c.expect_error(err);
        }
        // A bound on frames per transaction; what it held is dropped.
        let mut c = srv.client(kind);
        c.call("BEGIN", &[("transaction", "big")]);
        for n in 1..=4 {
            c.send_n(q, n, &[("transaction", "big")]);
        }
        c.expect_error("too many frames in transaction 'big'");
        let mut d = srv.client(kind);
        d.subscribe(q, "d", &[]);
        let mut p = srv.client(kind);
        p.send_n(q, 5, &[]);
        d.msg_n(q, 5);
        d.unsubscribe("d");
    }
    srv.stop();
}

// ---------------------------------------------------------------------------------------------
// 5. Wildcards.

const KEYS: [&str; 11] = [
    "a.b.c", "a.c", "a.b.b.c", "a", "ab", "x.y", "a.b", "b.a.c", "a.x.c", "q.b.r", "a.b.c.d",
];

/// The keys of [`KEYS`] each pattern matches (RabbitMQ topic semantics), written out by hand.
fn expected(pattern: &str) -> Vec<&'static str> {
    match pattern {
        "/topic/a.*.c" => vec!["a.b.c", "a.x.c"],
        "/topic/a.#" => vec!["a.b.c", "a.c", "a.b.b.c", "a", "a.b", "a.x.c", "a.b.c.d"],
        "/topic/#" => KEYS.to_vec(),
        "/topic/*.b.*" => vec!["a.b.c", "q.b.r"],
        "/topic/#.c" => vec!["a.b.c", "a.c", "a.b.b.c", "b.a.c", "a.x.c"],
        "/topic/a.b.c" => vec!["a.b.c"],
        other => panic!("no expectation for {other}"),
    }
}

/// Outside `/topic/`, so no pattern (not even `#`) matches it.
const SENTINEL: &str = "/sentinel/wildcards";

/// Read until `pubs` sentinels arrived (one per publisher, on subscription "s"); returns
/// (subscription, body) of everything else, sorted.
fn collect_until_sentinels(c: &mut Client, pubs: usize) -> Vec<(String, String)> {
    let mut got = Vec::new();
    let mut sentinels = 0;
    while sentinels < pubs {
        let f = c.msg();
        assert_eq!(f.count("subscription"), 1, "{f:?}");
        if f.h("subscription") == "s" {
            sentinels += 1;
        } else {
            got.push((f.h("subscription").to_string(), f.text().to_string()));
        }
    }
    got.sort();
    got
}

/// (name, value) pairs.
type Headers<'a> = &'a [(&'a str, &'a str)];

#[test]
fn wildcard_subscribers_on_every_reactor_get_exactly_the_matching_messages() {
    let srv = server(3, |_| {});
    // (kind, reactor, [(pattern, subscription id)])
    let layout: [(Kind, usize, Headers); 5] = [
        (Kind::Tcp, 0, &[("/topic/a.*.c", "w1")]),
        (Kind::Ws, 1, &[("/topic/a.#", "w2")]),
        (Kind::Tcp, 2, &[("/topic/#", "w3"), ("/topic/#.c", "w4")]),
        // One connection, three subscriptions a.b.c matches: one MESSAGE per subscription.
        (
            Kind::Ws,
            0,
            &[
                ("/topic/a.*.c", "x"),
                ("/topic/a.#", "y"),
                ("/topic/a.b.c", "z"),
            ],
        ),
        (
            Kind::Tcp,
            1,
            &[("/topic/*.b.*", "v"), ("/topic/a.*.c", "v3")],
        ),
    ];
    let mut subs: Vec<(Client, Vec<(&str, &str)>)> = layout
        .iter()
        .map(|(kind, r, pats)| {
            let mut c = srv.client_on(*kind, *r);
            for (p, id) in *pats {
                c.subscribe(p, id, &[]);
            }
            c.subscribe(SENTINEL, "s", &[]);
            (c, pats.to_vec())
        })
        .collect();
    let mut pubs: Vec<Client> = (0..3)
        .map(|r| srv.client_on(if r == 1 { Kind::Ws } else { Kind::Tcp }, r))
        .collect();
    let publish_round = |pubs: &mut [Client], keys: &[&str]| {
        for (i, p) in pubs.iter_mut().enumerate() {
            for k in keys {
                let dest = format!("/topic/{k}");
                p.send_frame(
                    "SEND",
                    &[("destination", &dest)],
                    format!("{i}:{k}").as_bytes(),
                );
            }
            p.send_frame("SEND", &[("destination", SENTINEL)], b"end");
        }
    };
    let expect_for = |pats: &[(&str, &str)], keys: &[&str], live: &dyn Fn(&str) -> bool| {
        let mut want = Vec::new();
        for (p, id) in pats {
            if !live(id) {
                continue;
            }
            for k in expected(p) {
                if keys.contains(&k) {
                    for i in 0..3 {
                        want.push((id.to_string(), format!("{i}:{k}")));
                    }
                }
            }
        }
        want.sort();
        want
    };

    publish_round(&mut pubs, &KEYS);
    for (c, pats) in &mut subs {
        let got = collect_until_sentinels(c, 3);
        assert_eq!(
            got,
            expect_for(pats, &KEYS, &|_| true),
            "reactor {} {pats:?}",
            c.reactor()
        );
    }

    // Unsubscribe every a.# (on two reactors) and the a.*.c ones on reactor 0 (reactor 1
    // keeps one), add a new *.b.* on reactor 2: after the receipts the next round follows the
    // new subscriptions exactly.
    subs[1].0.unsubscribe("w2");
    subs[3].0.unsubscribe("y");
    subs[0].0.unsubscribe("w1");
    subs[3].0.unsubscribe("x");
    subs[2].0.subscribe("/topic/*.b.*", "v2", &[]);
    subs[2].1.push(("/topic/*.b.*", "v2"));
    let round2 = ["a.b.c", "a", "q.b.r", "a.b.c.d", "a.x.c"];
    publish_round(&mut pubs, &round2);
    let gone = |id: &str| !["w2", "y", "w1", "x"].contains(&id);
    for (c, pats) in &mut subs {
        let got = collect_until_sentinels(c, 3);
        assert_eq!(
            got,
            expect_for(pats, &round2, &gone),
            "round 2, reactor {} {pats:?}",
            c.reactor()
        );
    }
    drop((subs, pubs));
    srv.stop();
}

// ---------------------------------------------------------------------------------------------
// 6. WebSocket end to end, all in one: a queue scenario with NACK, a transaction and a kill.

#[test]
fn websocket_queue_with_nack_transaction_and_a_killed_consumer() {
    let srv = server(2, |_| {});
    let q = "/queue/ws-only";
    let mut a = srv.client(Kind::Ws);
    a.subscribe(
        q,
        "a",
        &[("ack", "client-individual"), ("prefetch-count", "3")],
    );
    let mut p = srv.client(Kind::Ws);
    p.call("BEGIN", &[("transaction", "w")]);
    for n in 1..=3 {
        p.send_n(q, n, &[("transaction", "w")]);
    }
    p.call("COMMIT", &[("transaction", "w")]);
    let got: Vec<Frame> = (1..=3).map(|n| a.msg_n(q, n)).collect();
    let mut b = srv.client(Kind::Ws);
    b.subscribe(q, "b", &[("ack", "client-individual")]);
    // NACK 1 -> B; A is then killed holding 2 and 3 -> B.
    a.nack_sync(&got[0]);
    let f = b.msg_n(q, 1);
    assert!(f.redelivered());
    b.ack(&f);
    a.kill();
    for n in 2..=3 {
        let f = b.msg_n(q, n);
        assert!(f.redelivered(), "{f:?}");
        b.ack(&f);
    }
    p.send_n(q, 4, &[]);
    let f = b.msg_n(q, 4);
    assert!(!f.redelivered());
    b.ack_sync(&f);
    drop((b, p));
    srv.stop();
}
