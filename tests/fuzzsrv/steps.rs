//! Carrying out a script's steps, the orderly end (every session resumed, given time, then
//! disconnected), the drain of the queues, and the final checks.

use std::time::{Duration, Instant};

use crate::common::stomp::frame;

use serde_json::Value;

use super::model::{body_bytes, final_checks, Complete, Fate, Lossy, Msg};
use super::script::{AckMode, AckTarget, Body, Dest, Malformed, Op, Step};
use super::session::{Driver, Expect, Res, St, Tx, TxOp, What};
use super::wire::pct;
use super::{MAX_BODY, MAX_HEADERS, MAX_HEADER_LINE, MAX_SUBS, MAX_TXS, MAX_TX_FRAMES};

fn f(cmd: &str, h: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    frame(cmd, &h, body)
}

impl Driver {
    /// The live incarnation of `slot`, connecting one (STOMP 1.2, or as the slot prefers) if
    /// there is none.
    fn ensure(&mut self, slot: usize) -> Option<usize> {
        if let Some(i) = self.slots[slot] {
            let inc = &self.incs[i];
            if inc.st == St::Live && !inc.conn.ended {
                return Some(i);
            }
        }
        self.connect(slot, [2, 2, 1, 0][slot % 4], false, 0, 0)
    }

    fn connect(&mut self, slot: usize, v: u8, stomp: bool, hb: u16, want: u16) -> Option<usize> {
        if let Some(old) = self.slots[slot].take() {
            if self.incs[old].st == St::Live && !self.incs[old].conn.ended {
                self.disconnect(old);
            }
        }
        let i = self.open(slot, self.ws[slot])?;
        self.slots[slot] = Some(i);
        let cmd = if stomp && v > 0 { "STOMP" } else { "CONNECT" };
        let mut h = vec![];
        if v == 0 {
            h.push(("login", "guest".to_string()));
            h.push(("passcode", "guest".to_string()));
        } else {
            let acc = if v == 1 { "1.0,1.1" } else { "1.1,1.2" };
            h.push(("accept-version", acc.to_string()));
            h.push(("host", "localhost".to_string()));
            h.push(("heart-beat", format!("{hb},{want}")));
            self.incs[i].hb_send = u64::from(hb);
        }
        self.incs[i].version = v;
        self.incs[i].conn.esc = self.incs[i].esc();
        self.emit(i, &f(cmd, &h, b""), What::Connect, None, Expect::Ok);
        Some(i)
    }

    fn disconnect(&mut self, i: usize) {
        let r = self.receipt(i);
        let b = f("DISCONNECT", &[("receipt", r.clone())], b"");
        self.emit(i, &b, What::Disconnect, Some(r), Expect::Ok);
        self.flush(i, false);
        self.incs[i].st = St::Closing;
    }

    fn maybe_receipt(
        &mut self,
        i: usize,
        want: bool,
        h: &mut Vec<(&str, String)>,
    ) -> Option<String> {
        want.then(|| {
            let r = self.receipt(i);
            h.push(("receipt", r.clone()));
            r
        })
    }

    fn new_msg(
        &mut self,
        i: usize,
        dest: Dest,
        body: Body,
        tx: Option<usize>,
        fate: Fate,
    ) -> usize {
        let at = self.tick();
        self.msgs.push(Msg {
            dest,
            body,
            stream: (i, tx),
            fate,
            tx_queue: tx.is_some() && dest.is_queue(),
            at,
            required_at: u64::MAX,
            seen: Vec::new(),
            certain: 0,
            uncertain: 0,
            maybe_back: false,
        });
        self.msgs.len() - 1
    }

    pub fn step(&mut self, st: &Step) {
        // Whatever another session glued is written first.
        let current = self.slots[st.session];
        for k in 0..self.incs.len() {
            if Some(k) != current && !self.incs[k].pending.is_empty() {
                self.flush(k, false);
            }
        }
        let i = match st.op {
            Op::Connect {
                version,
                stomp,
                hb_send,
                hb_want,
            } => self.connect(st.session, version, stomp, hb_send, hb_want),
            Op::Malformed(Malformed::BeforeConnect) => self.before_connect(st.session),
            Op::Wait { .. } => None,
            Op::AdminPurge(q) => {
                self.admin_purge(Dest::Queue(q));
                None
            }
            Op::Stall | Op::Resume | Op::Close | Op::Disconnect | Op::AdminClose => {
                self.slots[st.session].filter(|&i| !self.incs[i].conn.ended)
            }
            _ => self.ensure(st.session),
        };
        let Some(i) = i else { return };
        self.op(i, st);
        if !st.glue {
            self.flush(i, st.split != 0);
        }
    }

    fn op(&mut self, i: usize, st: &Step) {
        let run = self.run;
        match st.op {
            Op::Connect { .. }
            | Op::Wait { .. }
            | Op::AdminPurge(_)
            | Op::Malformed(Malformed::BeforeConnect) => {}
            Op::Subscribe {
                dest,
                ack,
                prefetch,
                receipt,
            } => {
                let n = self.new_sub(i, dest, ack, prefetch);
                let full = self.incs[i].active_subs() > MAX_SUBS;
                let mut h = vec![
                    ("id", self.incs[i].subs[n].id.clone()),
                    ("destination", dest.name(run)),
                    ("ack", ack.header().to_string()),
                ];
                if let Some(p) = prefetch {
                    h.push(("prefetch-count", p.to_string()));
                }
                let r = self.maybe_receipt(i, receipt, &mut h);
                let e = if full {
                    Expect::Err
                } else if self.incs[i].version == 0 && ack == AckMode::Individual {
                    Expect::Any
                } else {
                    Expect::Ok
                };
                if full {
                    self.incs[i].subs[n].active = false;
                    self.incs[i].st = St::Doomed;
                }
                self.emit(i, &f("SUBSCRIBE", &h, b""), What::Subscribe(n), r, e);
            }
            Op::Unsubscribe { which, receipt } => {
                let act: Vec<usize> = (0..self.incs[i].subs.len())
                    .filter(|&n| self.incs[i].subs[n].active)
                    .collect();
                if act.is_empty() {
                    return;
                }
                let n = act[usize::from(which) % act.len()];
                let mut h = vec![("id", self.incs[i].subs[n].id.clone())];
                let r = self.maybe_receipt(i, receipt, &mut h);
                let sub = &mut self.incs[i].subs[n];
                sub.active = false;
                let ids: Vec<String> = sub.held.drain(..).map(|(id, _)| id).collect();
                self.incs[i].stale.extend(ids);
                self.emit(
                    i,
                    &f("UNSUBSCRIBE", &h, b""),
                    What::Unsubscribe(n),
                    r,
                    Expect::Ok,
                );
            }
            Op::Send {
                dest,
                body,
                receipt,
                tx,
            } => self.send(i, dest, body, receipt, tx),
            Op::Ack {
                target,
                nack,
                receipt,
                tx,
            } => self.ack(i, target, nack, receipt, tx),
            Op::Begin => {
                let inc = &mut self.incs[i];
                let ok = inc.open_txs().len() < MAX_TXS;
                let name = format!("x{}", inc.txs.len());
                inc.txs.push(Tx {
                    name: name.clone(),
                    open: ok,
                    frames: 0,
                    ops: vec![],
                    settles: vec![],
                });
                if !ok {
                    inc.st = St::Doomed;
                }
                let e = if ok { Expect::Ok } else { Expect::Err };
                self.emit(
                    i,
                    &f("BEGIN", &[("transaction", name)], b""),
                    What::Begin,
                    None,
                    e,
                );
            }
            Op::Commit { which, receipt } => self.commit(i, which, receipt),
            Op::Abort { which, receipt } => {
                let open = self.incs[i].open_txs();
                if open.is_empty() {
                    return;
                }
                let x = open[usize::from(which) % open.len()];
                self.incs[i].txs[x].open = false;
                let mut h = vec![("transaction", self.incs[i].txs[x].name.clone())];
                let r = self.maybe_receipt(i, receipt, &mut h);
                self.emit(i, &f("ABORT", &h, b""), What::Abort, r, Expect::Ok);
            }
            Op::Disconnect => {
                self.disconnect(i);
                self.slots[st.session] = None;
            }
            Op::Close => {
                self.flush(i, false);
                self.kill(i);
                self.slots[st.session] = None;
            }
            Op::Garbage { len, seed } => {
                let mut g: Vec<u8> = (0..=usize::from(len % 64))
                    .map(|k| (u64::from(seed) * 131 + k as u64 * 17 + 1) as u8)
                    .collect();
                g.extend_from_slice(b"\nBOGUS\n\n\0");
                self.emit(i, &g, What::Other, None, Expect::Any);
                self.incs[i].st = St::Doomed;
            }
            Op::WsGarbage => {
                self.flush(i, false);
                if self.incs[i].conn.ws {
                    let _ = self.incs[i].conn.write_raw(
                        &super::wire::unmasked_frame(),
                        Instant::now() + Duration::from_secs(1),
                    );
                    self.incs[i].ws_violation = true;
                } else {
                    self.emit(
                        i,
                        b"\x01\x02\xff\nBOGUS\n\n\0",
                        What::Other,
                        None,
                        Expect::Any,
                    );
                }
                self.incs[i].st = St::Doomed;
            }
            Op::Malformed(m) => self.malformed(i, m),
            Op::Stall => self.incs[i].stalled = true,
            Op::Resume => {
                self.incs[i].stalled = false;
                self.check_flood(i);
            }
            Op::Flood { hundreds } => {
                let inc = &mut self.incs[i];
                inc.stalled = true;
                inc.flood_from.get_or_insert(inc.conn.received);
                let d = format!("/topic/r{run}.flood");
                for _ in 0..(usize::from(hundreds) + 1) * 100 {
                    let r = self.receipt(i);
                    let b = f(
                        "SEND",
                        &[("destination", d.clone()), ("receipt", r.clone())],
                        b"",
                    );
                    self.emit(i, &b, What::Other, Some(r), Expect::Ok);
                }
            }
            Op::Heartbeat => self.incs[i].pending.extend_from_slice(b"\n"),
            Op::AdminClose => self.admin_close(i),
        }
    }

    /// An admin API call; `None` (a violation recorded) if it did not answer in HTTP with JSON.
    fn admin_call(&mut self, method: &str, path: &str, body: &str) -> Option<(u16, Value)> {
        let r = super::wire::admin_call(self.admin, method, path, body);
        r.map_err(|e| self.fail(usize::MAX, format!("the admin API: {e}")))
            .ok()
    }

    /// An administrator closes the session, found by the `session` of its CONNECTED (one not
    /// yet CONNECTED is left alone). A 200 means its ERROR (whose message carries the reason),
    /// then the close, like any close the server starts: its unacked deliveries go back to
    /// their queue. 404: it was gone already (or went between the two calls).
    fn admin_close(&mut self, i: usize) {
        self.flush(i, false);
        let Some(sid) = self.incs[i].session.clone() else {
            return super::tally("close-unconnected");
        };
        let path = format!("/api/connections?q={}", pct(&sid));
        let rows = match self.admin_call("GET", &path, "") {
            Some((200, v)) => v,
            Some((503, _)) | None => return,
            Some((status, v)) => return self.fail(i, format!("GET {path}: {status} {v}")),
        };
        // `q` matches parts of ids: s0-1 is in s0-12.
        let Some(id) = rows["connections"].as_array().and_then(|rows| {
            rows.iter()
                .find(|r| r["session"] == sid.as_str())
                .and_then(|r| r["id"].as_str().map(str::to_string))
        }) else {
            return super::tally("close-unlisted");
        };
        let reason = ["maintenance", "fuzz: step", "naïve ✓ \\ end"][self.step_no % 3];
        let reason = format!("{reason} {}", self.step_no);
        let body = serde_json::json!({ "reason": reason }).to_string();
        match self.admin_call("POST", &format!("/api/connections/{id}/close"), &body) {
            Some((200, _)) => {
                self.incs[i].admin_closed = Some(format!("closed by an administrator: {reason}"));
                super::tally("close");
            }
            Some((404, _)) => super::tally("close-404"),
            Some((503, _)) | None => {}
            Some((status, v)) => self.fail(i, format!("admin close of {id}: {status} {v}")),
        }
    }

    /// An administrator purges a queue: the messages waiting in it are dropped, not those
    /// delivered and unacked. Which ones waited is not known here (a delivery may be on its
    /// way, a NACK or a session's end may have put one back), so every message sent to it so
    /// far may be lost now, as for a session dropped with auto deliveries in flight
    /// ([`Lossy`]); consumed twice or changed still fails.
    fn admin_purge(&mut self, q: Dest) {
        let name = q.name(self.run);
        let path = format!("/api/queues/purge?name={}", pct(&name));
        let Some((status, v)) = self.admin_call("POST", &path, "") else {
            return;
        };
        let at = self.tick();
        let sent = self.msgs.iter().filter(|m| m.dest == q).count() as u64;
        match (status, v["purged"].as_u64()) {
            (200, Some(n)) if v["queue"] == name.as_str() && n <= sent => {
                self.lossy.push(Lossy { queue: q, at });
                super::tally(if n > 0 { "purge" } else { "purge-empty" });
            }
            (404, _) => super::tally("purge-404"),
            (503, _) => {}
            _ => self.fail(
                usize::MAX,
                format!("purge of {name} ({sent} messages sent to it): {status} {v}"),
            ),
        }
    }

    fn send(&mut self, i: usize, dest: Dest, body: Body, receipt: bool, tx: Option<u8>) {
        let open = self.incs[i].open_txs();
        let tx = tx
            .filter(|_| !open.is_empty())
            .map(|k| open[usize::from(k) % open.len()]);
        let fate = if tx.is_some() {
            Fate::Forbidden("its transaction was never committed")
        } else {
            Fate::Pending
        };
        let m = self.new_msg(i, dest, body, tx, fate);
        let bytes = body_bytes(self.run, m, body);
        let mut h = vec![("destination", dest.name(self.run))];
        if !matches!(body, Body::Text(_)) {
            h.push(("content-length", bytes.len().to_string()));
        }
        let r = self.maybe_receipt(i, receipt, &mut h);
        let (what, e) = match tx {
            Some(x) => {
                let t = &mut self.incs[i].txs[x];
                h.push(("transaction", t.name.clone()));
                t.frames += 1;
                t.ops.push(TxOp::Send(m));
                let ok = t.frames <= MAX_TX_FRAMES;
                if !ok {
                    self.incs[i].st = St::Doomed;
                }
                (What::TxFrame, if ok { Expect::Ok } else { Expect::Err })
            }
            None if dest.is_queue() => {
                self.incs[i].queue_sends_unreceipted |= r.is_none();
                (
                    What::Send {
                        msg: m,
                        verdict: r.is_some(),
                    },
                    Expect::OkOrFull,
                )
            }
            None => (
                What::Send {
                    msg: m,
                    verdict: false,
                },
                Expect::Ok,
            ),
        };
        self.emit(i, &f("SEND", &h, &bytes), what, r, e);
    }

    /// What an ACK/NACK of `id` settles now: Some(messages) if the broker must accept it.
    fn settle_id(&mut self, i: usize, id: &str) -> Option<Vec<usize>> {
        let inc = &mut self.incs[i];
        for s in inc
            .subs
            .iter_mut()
            .filter(|s| s.active && s.mode != AckMode::Auto)
        {
            if let Some(p) = s.held.iter().position(|(h, _)| h == id) {
                let gone: Vec<(String, usize)> = if s.mode == AckMode::Client {
                    s.held.drain(..=p).collect()
                } else {
                    vec![s.held.remove(p)]
                };
                let msgs = gone.iter().map(|g| g.1).collect();
                inc.stale.extend(gone.into_iter().map(|g| g.0));
                return Some(msgs);
            }
        }
        inc.topic_ids.iter().any(|t| t == id).then(Vec::new)
    }

    fn ack(&mut self, i: usize, target: AckTarget, nack: bool, receipt: bool, tx: Option<u8>) {
        let inc = &self.incs[i];
        let nack = nack && inc.version > 0;
        let held: Vec<(String, String)> = inc
            .subs
            .iter()
            .filter(|s| s.active)
            .flat_map(|s| s.held.iter().map(|(id, _)| (id.clone(), s.id.clone())))
            .collect();
        let pick =
            |v: &Vec<String>, k: u8| (!v.is_empty()).then(|| v[usize::from(k) % v.len()].clone());
        let (id, sub) = match target {
            AckTarget::Real(k) if !held.is_empty() => held[usize::from(k) % held.len()].clone(),
            AckTarget::Real(_) => return,
            AckTarget::TopicId(k) => match pick(&inc.topic_ids, k) {
                Some(id) => (id, "s0".into()),
                None => return,
            },
            AckTarget::Stale(k) => (
                pick(&inc.stale, k).unwrap_or_else(|| "q99999.9.9".into()),
                "s0".into(),
            ),
            AckTarget::Bogus => ("q99999.7.1".into(), "s0".into()),
        };
        let key = if inc.version == 2 { "id" } else { "message-id" };
        let mut h = vec![(key, id.clone())];
        if inc.version == 1 {
            h.push(("subscription", sub));
        }
        let r = self.maybe_receipt(i, receipt, &mut h);
        let cmd = if nack { "NACK" } else { "ACK" };
        let open = self.incs[i].open_txs();
        if let Some(k) = tx.filter(|_| !open.is_empty()) {
            let x = open[usize::from(k) % open.len()];
            let t = &mut self.incs[i].txs[x];
            h.push(("transaction", t.name.clone()));
            t.frames += 1;
            t.ops.push(TxOp::Ack { id, nack });
            let ok = t.frames <= MAX_TX_FRAMES;
            if !ok {
                self.incs[i].st = St::Doomed;
            }
            let e = if ok { Expect::Ok } else { Expect::Err };
            return self.emit(i, &f(cmd, &h, b""), What::TxFrame, r, e);
        }
        match self.settle_id(i, &id) {
            Some(msgs) => self.emit(i, &f(cmd, &h, b""), What::Ack { msgs, nack }, r, Expect::Ok),
            None => {
                self.incs[i].st = St::Doomed;
                self.emit(i, &f(cmd, &h, b""), What::Other, r, Expect::Err);
            }
        }
    }

    fn commit(&mut self, i: usize, which: u8, receipt: bool) {
        let open = self.incs[i].open_txs();
        if open.is_empty() {
            return;
        }
        let x = open[usize::from(which) % open.len()];
        self.incs[i].txs[x].open = false;
        // The COMMIT applies the ACKs in order: all valid, or the broker must refuse it all.
        let saved = (self.incs[i].subs.clone(), self.incs[i].stale.clone());
        let mut settles = Vec::new();
        let mut ok = true;
        for op in self.incs[i].txs[x].ops.clone() {
            if let TxOp::Ack { id, nack } = op {
                match self.settle_id(i, &id) {
                    Some(ms) => settles.extend(ms.into_iter().map(|m| (m, nack))),
                    None => ok = false,
                }
            }
        }
        if !ok {
            (self.incs[i].subs, self.incs[i].stale) = saved;
            settles.clear();
            self.incs[i].st = St::Doomed;
        }
        let at = self.tick();
        for op in &self.incs[i].txs[x].ops {
            if let TxOp::Send(m) = op {
                self.msgs[*m].at = at;
            }
        }
        self.incs[i].txs[x].settles = settles;
        let mut h = vec![("transaction", self.incs[i].txs[x].name.clone())];
        let r = self.maybe_receipt(i, receipt, &mut h);
        let e = if ok { Expect::Ok } else { Expect::Err };
        self.emit(i, &f("COMMIT", &h, b""), What::Commit(x), r, e);
    }

    fn before_connect(&mut self, slot: usize) -> Option<usize> {
        let i = self.open(usize::MAX, self.ws[slot])?;
        let r = self.receipt(i);
        let m = self.new_msg(
            i,
            Dest::Topic(0),
            Body::Text(3),
            None,
            Fate::Forbidden("sent before CONNECT"),
        );
        let h = [
            ("destination", Dest::Topic(0).name(self.run)),
            ("receipt", r.clone()),
        ];
        let b = f("SEND", &h, &body_bytes(self.run, m, Body::Text(3)));
        self.emit(i, &b, What::Bad(Some(m)), Some(r), Expect::Err);
        self.incs[i].st = St::Doomed;
        Some(i)
    }

    fn malformed(&mut self, i: usize, kind: Malformed) {
        let run = self.run;
        let r = self.receipt(i);
        let m = self.new_msg(
            i,
            Dest::Topic(0),
            Body::Text(3),
            None,
            Fate::Forbidden("malformed frame"),
        );
        let body = body_bytes(run, m, Body::Text(3));
        let d = ("destination", Dest::Topic(0).name(run));
        let rc = ("receipt", r.clone());
        let mut e = Expect::Err;
        let bytes = match kind {
            Malformed::NulInHeader => {
                let mut b = format!("SEND\nreceipt:{r}\ndestination:{}\nx-nul:a", d.1).into_bytes();
                b.extend_from_slice(b"\0b\n\n");
                b.extend_from_slice(&body);
                b.push(0);
                b
            }
            Malformed::UnknownCommand => f("FROB", &[rc], b""),
            Malformed::NoDestination => f("SEND", &[rc], &body),
            Malformed::LongHeader => f(
                "SEND",
                &[rc, d, ("x-long", "a".repeat(MAX_HEADER_LINE + 8))],
                &body,
            ),
            Malformed::HugeBody => {
                let mut big = body.clone();
                big.resize(MAX_BODY + 1, b'z');
                f(
                    "SEND",
                    &[rc, d, ("content-length", big.len().to_string())],
                    &big,
                )
            }
            Malformed::WrongLength => f("SEND", &[rc, d, ("content-length", "3".into())], &body),
            Malformed::BadEscape => {
                if self.incs[i].version == 0 {
                    e = Expect::Any;
                }
                f("SEND", &[rc, d, ("x-esc", "a\\tb".into())], &body)
            }
            Malformed::ManyHeaders => {
                let mut h = vec![rc, d];
                h.extend((0..MAX_HEADERS + 2).map(|k| ("x-h", k.to_string())));
                f("SEND", &h, &body)
            }
            Malformed::Reconnect => f("CONNECT", &[rc, ("accept-version", "1.2".into())], b""),
            Malformed::ServerFrame => f(
                "MESSAGE",
                &[
                    rc,
                    d,
                    ("message-id", "1".into()),
                    ("subscription", "1".into()),
                ],
                &body,
            ),
            Malformed::BadAckMode | Malformed::ZeroPrefetch => {
                let n = self.new_sub(i, Dest::Topic(0), AckMode::Auto, None);
                self.incs[i].subs[n].active = false;
                let id = ("id", self.incs[i].subs[n].id.clone());
                let extra = if kind == Malformed::BadAckMode {
                    ("ack", "sometimes".to_string())
                } else {
                    ("prefetch-count", "0".to_string())
                };
                f("SUBSCRIBE", &[rc, d, id, extra], b"")
            }
            Malformed::BeforeConnect => return,
        };
        if e == Expect::Err {
            self.incs[i].st = St::Doomed;
        }
        self.emit(i, &bytes, What::Bad(Some(m)), Some(r), e);
    }

    /// The drain consumer ACKs each delivery at once (no receipt: its DISCONNECT's proves them).
    pub fn drain_ack(&mut self, i: usize, n: usize) {
        let Some((id, _)) = self.incs[i].subs[n].held.last().cloned() else {
            return;
        };
        let msgs = self.settle_id(i, &id).unwrap_or_default();
        self.emit(
            i,
            &f("ACK", &[("id", id)], b""),
            What::Ack { msgs, nack: false },
            None,
            Expect::Ok,
        );
        self.flush(i, false);
    }

    /// Resume everyone, let deliveries and receipts arrive, DISCONNECT every session and wait
    /// for every connection to end.
    pub fn finish(&mut self) {
        self.step_no = usize::MAX;
        for i in 0..self.incs.len() {
            self.flush(i, false);
            self.incs[i].stalled = false;
            self.check_flood(i);
        }
        let until = Instant::now() + Duration::from_millis(1500);
        while Instant::now() < until && self.waiting() {
            self.pump(Duration::from_millis(5));
        }
        for i in 0..self.incs.len() {
            if self.incs[i].st == St::Live && !self.incs[i].conn.ended {
                self.incs[i].at_finish = true;
                self.incs[i].finish_at = self.tick();
                self.disconnect(i);
            }
        }
        self.wait_ends(Duration::from_secs(3));
    }

    fn wait_ends(&mut self, max: Duration) {
        let until = Instant::now() + max;
        while Instant::now() < until && self.incs.iter().any(|c| !c.conn.ended) {
            self.pump(Duration::from_millis(2));
        }
        for i in 0..self.incs.len() {
            if !self.incs[i].conn.ended {
                let what = if self.incs[i].error.is_some() {
                    "its ERROR"
                } else {
                    "DISCONNECT"
                };
                self.fail(i, format!("connection still open {max:?} after {what}"));
                self.kill(i);
            }
        }
    }

    /// Receipts outstanding, or topic messages a clean subscriber should still get.
    fn waiting(&self) -> bool {
        self.incs.iter().any(|c| {
            !c.conn.ended
                && (c
                    .sent
                    .iter()
                    .any(|s| s.receipt.is_some() && s.res == Res::Unknown)
                    || c.subs.iter().any(|s| {
                        s.active
                            && !s.dest.is_queue()
                            && s.known_at.is_some_and(|k| {
                                self.msgs.iter().any(|m| {
                                    m.fate == Fate::Required
                                        && !m.dest.is_queue()
                                        && s.dest.matches(m.dest)
                                        && m.at > k
                                        && !m.seen.iter().any(|x| x.inc == c.id && x.sub == s.id)
                                })
                            })
                    }))
        })
    }

    /// A fresh consumer per queue takes everything left in it: client-individual, prefetch 1
    /// (one message, at most a large body, is within max_outbound), each delivery ACKed.
    pub fn drain(&mut self, queues: &[Dest]) {
        for &q in queues {
            let Some(i) = self.open(usize::MAX, false) else {
                return;
            };
            self.incs[i].drain = true;
            let h = [
                ("accept-version", "1.2".to_string()),
                ("host", "localhost".to_string()),
            ];
            self.emit(i, &f("CONNECT", &h, b""), What::Connect, None, Expect::Ok);
            let n = self.new_sub(i, q, AckMode::Individual, Some(1));
            let r = self.receipt(i);
            let h = [
                ("id", self.incs[i].subs[n].id.clone()),
                ("destination", q.name(self.run)),
                ("ack", "client-individual".to_string()),
                ("prefetch-count", "1".to_string()),
                ("receipt", r.clone()),
            ];
            self.emit(
                i,
                &f("SUBSCRIBE", &h, b""),
                What::Subscribe(n),
                Some(r),
                Expect::Ok,
            );
            self.flush(i, false);
            let start = Instant::now();
            self.incs[i].last_msg = start;
            while start.elapsed() < Duration::from_secs(5) && !self.incs[i].conn.ended {
                self.pump(Duration::from_millis(5));
                if start.elapsed() > Duration::from_millis(150)
                    && self.incs[i].last_msg.elapsed() > Duration::from_millis(100)
                {
                    break;
                }
            }
            if let Some(e) = self.incs[i].error.clone() {
                self.fail(
                    i,
                    format!("the drain consumer (prefetch 1) got an ERROR: {e}"),
                );
            }
            if !self.incs[i].conn.ended {
                self.disconnect(i);
            }
            self.wait_ends(Duration::from_secs(3));
        }
    }

    pub fn final_checks(&mut self, queue_refusals: bool) -> Vec<String> {
        self.settle_unknown();
        for i in 0..self.incs.len() {
            let c = &self.incs[i];
            if c.admin_closed.is_some() && c.error.is_none() && !c.disconnect_ok && !c.killed {
                self.fail(
                    i,
                    "closed through the admin API (200) without an ERROR".into(),
                );
            }
        }
        for c in &self.incs {
            if c.error.is_some() || c.killed {
                for &m in &c.auto_got {
                    self.msgs[m].maybe_back = true;
                }
            }
        }
        let mut complete = Vec::new();
        for c in &self.incs {
            if !c.disconnect_ok || !c.at_finish || c.error.is_some() || c.killed {
                continue;
            }
            for s in &c.subs {
                if let (true, false, Some(k)) = (s.active, s.dest.is_queue(), s.known_at) {
                    complete.push(Complete {
                        inc: c.id,
                        sub: s.id.clone(),
                        dest: s.dest,
                        known_at: k,
                        until: c.finish_at,
                    });
                }
            }
        }
        let mut v = std::mem::take(&mut self.violations);
        v.extend(final_checks(
            &self.msgs,
            &self.lossy,
            &complete,
            queue_refusals,
        ));
        if !v.is_empty() {
            v.push("sessions:".into());
            v.extend(self.incs.iter().map(|c| {
                let subs: Vec<String> = c
                    .subs
                    .iter()
                    .map(|s| format!("{}={:?}/{:?}/{}", s.id, s.dest, s.mode, s.active))
                    .collect();
                format!(
                    "  #{} slot {} {:?} error {:?} killed {} disconnected {} subs {subs:?}",
                    c.id, c.slot, c.st, c.error, c.killed, c.disconnect_ok
                )
            }));
        }
        v
    }
}
