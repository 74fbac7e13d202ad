//! Queues under killed consumers: nothing lost, every message acked exactly once, on TCP and
//! WebSocket, with deliveries in flight; and a WebSocket scenario with NACK, a transaction and
//! a kill. The server and clients as in `queue_dispatch.rs`'s note.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/queues.rs"]
mod queues;

use queues::*;

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
