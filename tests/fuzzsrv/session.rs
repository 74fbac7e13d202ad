//! The driver's side of each session ("incarnation": one connection of a script session): the
//! frames it wrote and what each must lead to, its subscriptions and transactions, and the
//! checks on everything it reads.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::stomp::{Esc, Frame};

use super::model::{body_bytes, parse_id, Fate, Lossy, Msg, Seen};
pub use super::model::{Expect, Res, Sent, St, Sub, Tx, TxOp, What};
use super::script::{AckMode, Dest, Script};
use super::wire::{Conn, Ev};
use super::{Rng, DEFAULT_PREFETCH, MAX_OUTBOUND, STALL_SLACK};

pub struct Inc {
    pub id: usize,
    pub slot: usize,
    pub conn: Conn,
    pub version: u8,
    pub st: St,
    pub connected: bool,
    /// The `session` header of its CONNECTED (how the admin API finds it).
    pub session: Option<String>,
    /// The admin API answered 200 to closing it: the ERROR's message it owes.
    pub admin_closed: Option<String>,
    pub hb_send: u64,
    pub last_write: Instant,
    pub stalled: bool,
    /// Bytes received when the stall began, if flooded (bounded-output check at resume).
    pub flood_from: Option<usize>,
    pub sent: Vec<Sent>,
    pub first_open: usize,
    pub subs: Vec<Sub>,
    pub txs: Vec<Tx>,
    pub error: Option<String>,
    pub disconnect_ok: bool,
    /// DISCONNECTed by the orderly end (after every delivery had time to arrive).
    pub at_finish: bool,
    /// Logical time the orderly end wrote its DISCONNECT.
    pub finish_at: u64,
    pub killed: bool,
    /// Queue messages auto-delivered to this session.
    pub auto_got: Vec<usize>,
    pub ws_violation: bool,
    pub queue_sends_unreceipted: bool,
    pub pending: Vec<u8>,
    pub receipts: u64,
    pub next_sub: usize,
    pub stale: Vec<String>,
    pub topic_ids: Vec<String>,
    /// Drain consumer: ACK everything it gets.
    pub drain: bool,
    pub last_msg: Instant,
}

impl Inc {
    pub fn esc(&self) -> Esc {
        match self.version {
            0 => Esc::None,
            1 => Esc::V11,
            _ => Esc::V12,
        }
    }

    pub fn open_txs(&self) -> Vec<usize> {
        (0..self.txs.len()).filter(|&i| self.txs[i].open).collect()
    }

    pub fn alive(&self) -> bool {
        !self.conn.ended
    }

    pub fn active_subs(&self) -> usize {
        self.subs.iter().filter(|s| s.active).count()
    }
}

pub struct Driver {
    pub run: u64,
    pub tcp: SocketAddr,
    pub wsa: SocketAddr,
    pub admin: SocketAddr,
    pub ws: Vec<bool>,
    pub rng: Rng,
    pub t: u64,
    pub step_no: usize,
    pub slots: Vec<Option<usize>>,
    pub incs: Vec<Inc>,
    pub msgs: Vec<Msg>,
    pub lossy: Vec<Lossy>,
    pub violations: Vec<String>,
}

impl Driver {
    pub fn new(
        tcp: SocketAddr,
        wsa: SocketAddr,
        admin: SocketAddr,
        run: u64,
        script: &Script,
    ) -> Driver {
        Driver {
            run,
            tcp,
            wsa,
            admin,
            ws: script.ws.clone(),
            rng: Rng(script.seed),
            t: 0,
            step_no: 0,
            slots: vec![None; script.sessions],
            incs: Vec::new(),
            msgs: Vec::new(),
            lossy: Vec::new(),
            violations: Vec::new(),
        }
    }

    pub fn fail(&mut self, inc: usize, msg: String) {
        let who = self.incs.get(inc).map_or(String::from("-"), |i| {
            let slot = if i.slot == usize::MAX {
                "extra".to_string()
            } else {
                i.slot.to_string()
            };
            format!(
                "session {slot} (#{inc}, {}, STOMP 1.{})",
                if i.conn.ws { "ws" } else { "tcp" },
                i.version
            )
        });
        let step = if self.step_no == usize::MAX {
            "end".to_string()
        } else {
            format!("step {}", self.step_no)
        };
        self.violations.push(format!("{step}: {who}: {msg}"));
    }

    pub fn check(&self) -> Result<(), String> {
        if self.violations.is_empty() {
            Ok(())
        } else {
            Err(self.violations.join("\n"))
        }
    }

    pub fn tick(&mut self) -> u64 {
        self.t += 1;
        self.t
    }

    /// Open a connection for `slot` (usize::MAX: none); its index.
    pub fn open(&mut self, slot: usize, ws: bool) -> Option<usize> {
        let addr = if ws { self.wsa } else { self.tcp };
        let id = self.incs.len();
        // Every other WebSocket session uses permessage-deflate.
        match Conn::open(addr, ws, ws && self.incs.len() % 2 == 1) {
            Ok(conn) => {
                self.incs.push(Inc {
                    id,
                    slot,
                    conn,
                    version: 2,
                    st: St::Live,
                    connected: false,
                    session: None,
                    admin_closed: None,
                    hb_send: 0,
                    last_write: Instant::now(),
                    stalled: false,
                    flood_from: None,
                    sent: Vec::new(),
                    first_open: 0,
                    subs: Vec::new(),
                    txs: Vec::new(),
                    error: None,
                    disconnect_ok: false,
                    at_finish: false,
                    finish_at: u64::MAX,
                    killed: false,
                    auto_got: Vec::new(),
                    ws_violation: false,
                    queue_sends_unreceipted: false,
                    pending: Vec::new(),
                    receipts: 0,
                    next_sub: 0,
                    stale: Vec::new(),
                    topic_ids: Vec::new(),
                    drain: false,
                    last_msg: Instant::now(),
                });
                Some(id)
            }
            Err(e) => {
                self.fail(usize::MAX, format!("cannot open a connection: {e}"));
                None
            }
        }
    }

    /// Record a frame and queue its bytes; written now unless `glue`.
    pub fn emit(&mut self, i: usize, bytes: &[u8], what: What, receipt: Option<String>, e: Expect) {
        let inc = &mut self.incs[i];
        inc.sent.push(Sent {
            what,
            receipt,
            expect: e,
            res: Res::Unknown,
        });
        inc.pending.extend_from_slice(bytes);
    }

    /// Write what is queued for `i`, cut into pieces when `split`.
    pub fn flush(&mut self, i: usize, split: bool) {
        let inc = &mut self.incs[i];
        if inc.pending.is_empty() || inc.conn.ended {
            inc.pending.clear();
            return;
        }
        let bytes = std::mem::take(&mut inc.pending);
        let reading = !inc.stalled;
        let r = inc.conn.write(
            &bytes,
            split,
            reading,
            Instant::now() + Duration::from_secs(1),
            &mut self.rng,
        );
        inc.last_write = Instant::now();
        if let Err(e) = r {
            if e == "timeout" {
                // The broker stopped reading us (backpressure): give the session up.
                self.kill(i);
            }
            // Otherwise the broker closed the connection: reading tells why.
        }
    }

    pub fn receipt(&mut self, i: usize) -> String {
        self.incs[i].receipts += 1;
        format!("r{}", self.incs[i].receipts)
    }

    /// Close without DISCONNECT: auto-mode queue deliveries in flight may be lost.
    pub fn kill(&mut self, i: usize) {
        let at = self.tick();
        let inc = &mut self.incs[i];
        if inc.conn.ended && inc.killed {
            return;
        }
        for s in &inc.subs {
            if s.active && s.dest.is_queue() && s.mode == AckMode::Auto {
                self.lossy.push(Lossy { queue: s.dest, at });
            }
        }
        inc.conn.kill();
        inc.killed = true;
        inc.st = St::Dead;
    }

    pub fn kill_all(&mut self) {
        for i in 0..self.incs.len() {
            if !self.incs[i].conn.ended {
                self.incs[i].conn.kill();
            }
        }
    }

    /// Read every session that is not stalled, for at least `for_` (once if zero).
    pub fn pump(&mut self, for_: Duration) {
        let until = Instant::now() + for_;
        loop {
            for i in 0..self.incs.len() {
                self.read_one(i);
            }
            if Instant::now() >= until {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub fn read_one(&mut self, i: usize) {
        let inc = &mut self.incs[i];
        if inc.stalled || inc.conn.ended {
            return;
        }
        if inc.hb_send > 0
            && inc.pending.is_empty()
            && inc.last_write.elapsed() >= Duration::from_millis(inc.hb_send / 2)
        {
            let _ = inc
                .conn
                .write(b"\n", false, true, Instant::now(), &mut self.rng);
            inc.last_write = Instant::now();
        }
        let mut ev = Vec::new();
        let r = inc.conn.read(&mut self.rng, 1 << 20, &mut ev);
        for e in ev {
            self.on_event(i, e);
        }
        if let Err(e) = r {
            self.fail(i, format!("malformed output: {e}"));
            self.incs[i].conn.kill();
        }
    }

    /// Wait (reading everyone) until `slot`'s receipts have all come or it ended.
    pub fn sync(&mut self, slot: usize, max: Duration) {
        let Some(i) = self.slots.get(slot).copied().flatten() else {
            return;
        };
        let until = Instant::now() + max;
        while Instant::now() < until {
            let inc = &self.incs[i];
            if inc.stalled
                || inc.conn.ended
                || !inc
                    .sent
                    .iter()
                    .any(|s| s.receipt.is_some() && s.res == Res::Unknown)
            {
                return;
            }
            self.pump(Duration::from_millis(1));
        }
    }

    fn on_event(&mut self, i: usize, ev: Ev) {
        let t = self.tick();
        let after_error = self.incs[i].error.is_some();
        match ev {
            Ev::Eol if after_error => self.fail(i, "a heart-beat after the ERROR".into()),
            Ev::Eol => {}
            Ev::Frame(f) if after_error => {
                self.fail(i, format!("{} after the ERROR: {f:?}", f.command))
            }
            Ev::Frame(f) => match f.command.as_str() {
                "CONNECTED" => self.on_connected(i, &f),
                "RECEIPT" => self.on_receipt(i, &f, t),
                "ERROR" => self.on_error(i, &f, t),
                _ => self.on_message(i, &f),
            },
            Ev::WsClose(_) => {}
            Ev::End { reset, partial } => self.on_end(i, reset, partial),
        }
    }

    fn on_connected(&mut self, i: usize, f: &Frame) {
        let inc = &mut self.incs[i];
        if inc.connected {
            return self.fail(i, format!("a second CONNECTED: {f:?}"));
        }
        inc.connected = true;
        inc.session = f.get("session").map(str::to_string);
        let want = format!("1.{}", inc.version);
        if f.get("version").unwrap_or("1.0") != want {
            self.fail(i, format!("CONNECTED for version {want} says {f:?}"));
        }
    }

    /// Frames `first_open..=j` processed (a receipt for `j` came).
    fn processed_upto(&mut self, i: usize, j: usize, t: u64) {
        let from = self.incs[i].first_open;
        for k in from..=j {
            if self.incs[i].sent[k].res == Res::Unknown {
                self.settle(i, k, Res::Processed, t);
            }
        }
        self.incs[i].first_open = self.incs[i].first_open.max(j + 1);
    }

    fn on_receipt(&mut self, i: usize, f: &Frame, t: u64) {
        let Some(r) = f.get("receipt-id") else {
            return self.fail(i, format!("RECEIPT without receipt-id: {f:?}"));
        };
        let Some(j) = self.incs[i]
            .sent
            .iter()
            .position(|s| s.receipt.as_deref() == Some(r))
        else {
            return self.fail(i, format!("RECEIPT for a receipt never asked: {f:?}"));
        };
        if let What::Send { msg, verdict: true } = self.incs[i].sent[j].what {
            // The queue accepted it.
            if self.incs[i].sent[j].res == Res::Failed {
                return self.fail(i, format!("RECEIPT after an ERROR for {r}"));
            }
            self.msgs[msg].resolve(Fate::Required);
            self.msgs[msg].fate = Fate::Required;
        }
        // Receipts come in frame order, once; only a queue SEND's waits for its queue.
        if self.incs[i].sent[j].res == Res::Processed
            && j < self.incs[i].first_open
            && !matches!(self.incs[i].sent[j].what, What::Send { verdict: true, .. })
        {
            return self.fail(i, format!("RECEIPT {r} repeated or out of order"));
        }
        if matches!(self.incs[i].sent[j].what, What::Disconnect) {
            self.incs[i].disconnect_ok = true;
        }
        self.processed_upto(i, j, t);
    }

    fn on_error(&mut self, i: usize, f: &Frame, t: u64) {
        let Some(message) = f.get("message").map(str::to_string) else {
            self.fail(i, format!("ERROR without a message header: {f:?}"));
            self.incs[i].error = Some(String::new());
            return;
        };
        self.incs[i].error = Some(message.clone());
        let rid = f.get("receipt-id");
        if let Some(r) = rid {
            let Some(j) = self.incs[i]
                .sent
                .iter()
                .position(|s| s.receipt.as_deref() == Some(r))
            else {
                return self.fail(i, format!("ERROR for a receipt never asked: {f:?}"));
            };
            let s = self.incs[i].sent[j].clone();
            let full = message.contains("queue full");
            match s.expect {
                Expect::Ok => self.fail(i, format!("ERROR for a valid frame {s:?}: {f:?}")),
                Expect::OkOrFull if !full => {
                    self.fail(i, format!("ERROR for a valid SEND {s:?}: {f:?}"))
                }
                _ => {}
            }
            let verdict = matches!(s.what, What::Send { verdict: true, .. });
            if j > 0 {
                self.processed_upto(i, j - 1, t);
            }
            self.settle(i, j, Res::Failed, t);
            if !verdict {
                for k in j + 1..self.incs[i].sent.len() {
                    if self.incs[i].sent[k].res == Res::Unknown {
                        self.settle(i, k, Res::NotProcessed, t);
                    }
                }
            }
            return;
        }
        let inc = &self.incs[i];
        let legit = message.contains("slow consumer")
            || (message.contains("heart-beat") && inc.hb_send > 0)
            || (message.contains("queue full") && inc.queue_sends_unreceipted)
            || inc.st == St::Doomed
            || inc.admin_closed.as_deref() == Some(message.as_str())
            // A WebSocket violation is answered with an ERROR whatever was sent after it.
            || inc.ws_violation
            || inc
                .sent
                .iter()
                .any(|s| s.res == Res::Unknown && s.receipt.is_none() && s.expect != Expect::Ok);
        if !legit {
            self.fail(i, format!("unexpected ERROR: {f:?}"));
        }
    }

    fn on_end(&mut self, i: usize, reset: bool, partial: bool) {
        let inc = &self.incs[i];
        if partial {
            return self.fail(
                i,
                format!("the connection ended (reset: {reset}) in the middle of a frame"),
            );
        }
        let expected = inc.error.is_some() || inc.ws_violation || inc.disconnect_ok;
        if !expected {
            let why = if inc.st == St::Closing {
                "after DISCONNECT without its RECEIPT"
            } else {
                "without an ERROR frame"
            };
            self.fail(
                i,
                format!("the server closed the connection {why} (reset: {reset})"),
            );
        }
        self.incs[i].st = St::Dead;
    }

    /// Apply what a frame's fate means.
    pub fn settle(&mut self, i: usize, k: usize, res: Res, t: u64) {
        let s = self.incs[i].sent[k].clone();
        self.incs[i].sent[k].res = res;
        if res == Res::Processed && s.expect == Expect::Err {
            self.fail(
                i,
                format!("the broker accepted a frame it must refuse: {s:?}"),
            );
        }
        match (&s.what, res) {
            (What::Send { msg, verdict }, Res::Processed) => {
                if !self.msgs[*msg].dest.is_queue() {
                    self.msgs[*msg].resolve(Fate::Required);
                    let m = &mut self.msgs[*msg];
                    m.required_at = m.required_at.min(t);
                } else if !verdict {
                    self.msgs[*msg].resolve(Fate::Optional);
                }
            }
            (What::Send { msg, .. }, Res::Failed) => {
                self.msgs[*msg].fate = Fate::Forbidden("refused by the broker")
            }
            (What::Send { msg, .. }, Res::NotProcessed) => {
                self.msgs[*msg].fate = Fate::Forbidden("sent after the frame the ERROR was for")
            }
            // A "malformed" frame the broker may accept (a backslash is literal in 1.0): once
            // accepted, its message was routed like any other.
            (What::Bad(Some(m)), Res::Processed) => self.msgs[*m].fate = Fate::Optional,
            (What::Subscribe(n), Res::Processed) => self.incs[i].subs[*n].known_at = Some(t),
            (What::Unsubscribe(n), Res::Processed) => self.incs[i].subs[*n].gone = true,
            (What::Ack { msgs, nack: false }, Res::Processed) => {
                for &m in msgs {
                    self.msgs[m].certain += 1;
                }
            }
            (What::Commit(x), Res::Processed) => {
                let tx = self.incs[i].txs[*x].clone();
                for op in &tx.ops {
                    if let TxOp::Send(m) = op {
                        self.msgs[*m].fate = Fate::Required;
                        self.msgs[*m].required_at = self.msgs[*m].required_at.min(t);
                    }
                }
                for &(m, nack) in &tx.settles {
                    if !nack {
                        self.msgs[m].certain += 1;
                    }
                }
            }
            _ => {}
        }
    }

    /// At the end: frames never resolved may or may not have taken effect.
    pub fn settle_unknown(&mut self) {
        for i in 0..self.incs.len() {
            for k in 0..self.incs[i].sent.len() {
                let s = self.incs[i].sent[k].clone();
                if s.res != Res::Unknown {
                    continue;
                }
                match &s.what {
                    What::Send { msg, .. } => self.msgs[*msg].resolve(Fate::Optional),
                    What::Ack { msgs, nack: false } => {
                        for &m in msgs {
                            self.msgs[m].uncertain += 1;
                        }
                    }
                    What::Commit(x) => {
                        let tx = self.incs[i].txs[*x].clone();
                        for op in &tx.ops {
                            if let TxOp::Send(m) = op {
                                self.msgs[*m].fate = Fate::Optional;
                            }
                        }
                        for &(m, nack) in &tx.settles {
                            if !nack {
                                self.msgs[m].uncertain += 1;
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        for m in &mut self.msgs {
            if m.fate == Fate::Pending {
                m.fate = Fate::Optional;
            }
        }
    }

    fn on_message(&mut self, i: usize, f: &Frame) {
        if f.command != "MESSAGE" {
            return self.fail(i, format!("unexpected server frame {f:?}"));
        }
        let (Some(sub_id), Some(dest), Some(mid)) = (
            f.get("subscription"),
            f.get("destination"),
            f.get("message-id"),
        ) else {
            return self.fail(
                i,
                format!("MESSAGE without subscription/destination/message-id: {f:?}"),
            );
        };
        let Some(idx) = parse_id(self.run, &f.body) else {
            return self.fail(i, format!("a MESSAGE this run never sent: {f:?}"));
        };
        let Some(m) = self.msgs.get(idx).cloned() else {
            return self.fail(i, format!("a MESSAGE for an unknown message {idx}: {f:?}"));
        };
        let Some(n) = self.incs[i].subs.iter().position(|s| s.id == sub_id) else {
            return self.fail(i, format!("MESSAGE for an unknown subscription: {f:?}"));
        };
        let sub = self.incs[i].subs[n].clone();
        if sub.gone {
            return self.fail(i, format!("MESSAGE after the UNSUBSCRIBE's RECEIPT: {f:?}"));
        }
        if dest != m.dest.name(self.run) || !sub.dest.matches(m.dest) {
            return self.fail(
                i,
                format!("{:?} routed to subscription {:?}: {f:?}", m.dest, sub.dest),
            );
        }
        if f.body != body_bytes(self.run, idx, m.body) {
            return self.fail(i, format!("the body of message {idx} changed: {f:?}"));
        }
        let redelivered = f.get("redelivered") == Some("true");
        self.msgs[idx].seen.push(Seen {
            inc: i,
            sub: sub_id.to_string(),
            redelivered,
        });
        let ack_id = f.get("ack").unwrap_or(mid).to_string();
        if !m.dest.is_queue() {
            if redelivered {
                self.fail(i, format!("a topic message marked redelivered: {f:?}"));
            }
            let last = self.incs[i].subs[n].last.insert(m.stream, idx);
            if last.is_some_and(|l| l >= idx) {
                self.fail(
                    i,
                    format!(
                    "topic message {idx} after {} of the same publisher on subscription {sub_id} \
                     (out of order or duplicated)", last.unwrap_or(0)),
                );
            }
            self.incs[i].topic_ids.push(ack_id);
            return;
        }
        let inc = &mut self.incs[i];
        inc.last_msg = Instant::now();
        if sub.mode == AckMode::Auto {
            self.msgs[idx].certain += 1;
            inc.auto_got.push(idx);
            inc.stale.push(ack_id);
            return;
        }
        if inc.version == 2 && f.get("ack").is_none() {
            self.fail(
                i,
                format!("STOMP 1.2 client-ack MESSAGE without an ack header: {f:?}"),
            );
        }
        let s = &mut self.incs[i].subs[n];
        s.held.push((ack_id, idx));
        if s.held.len() > s.prefetch {
            let (p, h) = (s.prefetch, s.held.len());
            self.fail(
                i,
                format!("{h} unacked deliveries on a subscription with prefetch {p}"),
            );
        }
        if self.incs[i].drain {
            self.drain_ack(i, n);
        }
    }

    /// A resumed session that was flooded: its output while it read nothing must stay within
    /// the outbound limit (plus socket buffers), unless the broker closed it.
    pub fn check_flood(&mut self, i: usize) {
        let Some(from) = self.incs[i].flood_from.take() else {
            return;
        };
        let until = Instant::now() + Duration::from_millis(1500);
        let mut last = self.incs[i].conn.received;
        let mut quiet = Instant::now();
        while Instant::now() < until && !self.incs[i].conn.ended {
            self.pump(Duration::from_millis(2));
            let r = self.incs[i].conn.received;
            if r != last {
                last = r;
                quiet = Instant::now();
            } else if quiet.elapsed() > Duration::from_millis(100) {
                break;
            }
        }
        let got = self.incs[i].conn.received - from;
        if self.incs[i].error.is_none() && got > MAX_OUTBOUND + STALL_SLACK {
            self.fail(
                i,
                format!(
                "a session that read nothing was sent {got} bytes (max_outbound {MAX_OUTBOUND}): \
                 replies are not bounded"),
            );
        }
    }

    pub fn new_sub(&mut self, i: usize, dest: Dest, mode: AckMode, prefetch: Option<u16>) -> usize {
        let inc = &mut self.incs[i];
        inc.next_sub += 1;
        inc.subs.push(Sub {
            id: format!("s{}", inc.next_sub),
            dest,
            mode,
            prefetch: prefetch.map_or(DEFAULT_PREFETCH, usize::from),
            active: true,
            known_at: None,
            gone: false,
            held: Vec::new(),
            last: HashMap::new(),
        });
        inc.subs.len() - 1
    }
}
