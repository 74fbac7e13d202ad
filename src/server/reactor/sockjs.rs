//! The reactor's side of SockJS (the connection's is `conn/sockjs.rs`): a request for a
//! session goes to the session's home reactor (the connection moves there, request unread),
//! where sessions are found by id; `xhr_send` feeds a session, a receiving request is attached
//! to it, and the session's frames are pumped onto its receiver as they are flushed. No lock:
//! a session and every request for it meet on one thread.

use super::*;
use crate::server::conn::{SjsAnswer, SjsCall, SjsFrame};
use crate::sockjs::{Service, Transport};

impl Reactor {
    /// After a connection ran: what it asked of the reactor (a SockJS call), and carriers
    /// that stopped carrying.
    pub(super) fn sjs_settle(&mut self, t: Token, now: Instant) {
        if let Some(call) = self.sjs.call.take() {
            match call {
                SjsCall::Move(home) => self.sjs_move(t, home),
                SjsCall::Receive { mount, transport } => self.sjs_receive(t, mount, transport, now),
                SjsCall::Send => self.sjs_send(t, now),
                SjsCall::Feed(s) => {
                    self.sjs_feed(Token(s), now, None);
                }
            }
        }
        while let Some((s, c)) = self.sjs.lost.pop() {
            self.sjs_lost(Token(s), Token(c), now);
        }
    }

    /// Hand a connection whose request names a session homed elsewhere to that reactor.
    fn sjs_move(&mut self, t: Token, home: usize) {
        let (idx, gen) = split(t);
        if self.conns.get(idx).is_none_or(|s| s.gen != gen) {
            return;
        }
        let Some(peer) = self.peers.get(home) else {
            return;
        };
        let tx = peer.tx.clone();
        let mut s = self.conns.remove(idx);
        if let Some(sock) = s.conn.socket() {
            let _ = self.poll.registry().deregister(sock);
        }
        s.conn.set_timer_entry(None);
        let open = u64::from(s.conn.admitted().is_some());
        self.counters.conns_ws -= open;
        match tx.try_send(Mail::Adopt(Box::new(s.conn))) {
            Ok(()) => {
                if let Some(p) = self.peers.get(home) {
                    p.wake();
                }
            }
            Err(e) => {
                // The home's mailbox is full: the connection is dropped (counted as closed).
                if let Mail::Adopt(c) = e.into_inner() {
                    self.limits.socket_closed();
                    if let Some(ip) = c.admitted() {
                        self.limits.release(ip);
                    }
                }
            }
        }
    }

    /// A connection moved here from another reactor: its unread request is handled now.
    pub(super) fn adopt(&mut self, mut conn: Box<Conn>, now: Instant) {
        let entry = self.conns.vacant_entry();
        let idx = entry.key();
        self.next_gen = self.next_gen.wrapping_add(1);
        let gen = self.next_gen;
        let tok = token(idx, gen);
        let registered = conn.socket().is_some_and(|sock| {
            self.poll
                .registry()
                .register(sock, tok, Interest::READABLE)
                .is_ok()
        });
        if idx > 0xFFFF_FFFF || !registered {
            self.limits.socket_closed();
            if let Some(ip) = conn.admitted() {
                self.limits.release(ip);
            }
            return;
        }
        self.counters.conns_ws += u64::from(conn.admitted().is_some());
        conn.writable();
        // Answers to its earlier requests may still be queued: flushed here.
        let output = conn.wants_flush();
        entry.insert(Slot { conn: *conn, gen });
        self.rearm_timer(tok);
        self.ready_again.push(tok);
        if output {
            self.dirty.push(tok);
        }
        let _ = now;
    }

    fn sjs_session_of(&mut self, id: &str) -> Option<Token> {
        let t = *self.sjs_ids.get(id)?;
        match live(&mut self.conns, t) {
            Some(_) => Some(t),
            None => {
                self.sjs_ids.remove(id);
                None
            }
        }
    }

    /// A new session for a receiving request on carrier `t` (admitted against the limits).
    fn sjs_new_session(
        &mut self,
        t: Token,
        service: Service,
        id: Option<Box<str>>,
        now: Instant,
    ) -> Result<Token, &'static str> {
        let peer = live(&mut self.conns, t)
            .and_then(|s| s.conn.admitted())
            .ok_or("not admitted")?;
        let max = self.cfg.sockjs.as_ref().map_or(0, |c| c.max_sessions);
        if let Err(why) = self.limits.admit_session(peer, max) {
            self.counters.sjs_refused += 1;
            let why = match why {
                crate::server::metrics::Refused::PerIp => "too many connections from this address",
                _ => "too many sessions",
            };
            self.sjs_refusals.note(format_args!(
                "SockJS session from {peer}: {why} (sockjs.max_sessions {max}, connections.max, \
                 connections.max_per_ip)"
            ));
            return Err(why);
        }
        let ws_bound = id.is_none();
        let entry = self.conns.vacant_entry();
        let idx = entry.key();
        self.next_gen = self.next_gen.wrapping_add(1);
        let gen = self.next_gen;
        let tok = token(idx, gen);
        let mut ctx = conn_ctx!(self, tok.0, now, Some(peer));
        let conn = Conn::new_sjs_session(&mut ctx, service, id.clone(), Some(peer), ws_bound);
        entry.insert(Slot { conn, gen });
        self.counters.conns_sockjs += 1;
        self.counters.accepted_sockjs += 1;
        if let Some(id) = id {
            self.sjs_ids.insert(id, tok);
        }
        Ok(tok)
    }

    /// Session `t` was removed: forgotten by id; its receiver's response ends.
    pub(super) fn sjs_gone(&mut self, t: Token, conn: &Conn, now: Instant) {
        if let Some(id) = conn.sjs_id() {
            if self.sjs_ids.get(id) == Some(&t) {
                self.sjs_ids.remove(id);
            }
        }
        let Some(r) = conn.sjs().and_then(|j| j.receiver) else {
            return;
        };
        let r = Token(r);
        // The receiver is told the session is gone (its close frame, or "Go away!" for a
        // session ended by a timeout), and its response ends.
        let frame = conn.sjs().and_then(|j| j.closed.clone());
        if let Some(out) = self.with_conn(r, now, |c, ctx| {
            if c.carrier_of() == Some(t.0) {
                let f = frame.as_deref().unwrap_or(b"c[3000,\"Go away!\"]");
                if c.carry(ctx, f) {
                    c.carry_end(ctx);
                }
            }
            c.wants_flush()
        }) {
            self.after(r, Next::Idle, out);
        }
    }

    /// A receiving request: attached to its session (made if new), or answered with the
    /// frame that says why not.
    fn sjs_receive(&mut self, t: Token, mount: usize, transport: Transport, now: Instant) {
        let Some(service) = self.sjs.mounts.get(mount).map(|m| m.service) else {
            return;
        };
        let id: Option<Box<str>> =
            (transport != Transport::Websocket).then(|| self.sjs.id.as_str().into());
        let found = id.as_deref().and_then(|id| self.sjs_session_of(id));
        let (s, open) = match found {
            Some(s) => (s, false),
            None => match self.sjs_new_session(t, service, id, now) {
                Ok(s) => (s, true),
                Err(why) => {
                    self.sjs_answer(t, SjsAnswer::Full(why), now);
                    return;
                }
            },
        };
        let busy = live(&mut self.conns, s)
            .and_then(|x| x.conn.sjs().map(|j| j.receiver))
            .flatten();
        if let Some(r) = busy {
            if live(&mut self.conns, Token(r)).is_some_and(|c| c.conn.carrier_of() == Some(s.0)) {
                self.sjs_answer(t, SjsAnswer::Frame(crate::sockjs::ANOTHER_CONNECTION), now);
                return;
            }
        }
        // A closed session answers with its close frame, once what it still had to say is
        // said (a DISCONNECT's RECEIPT comes first).
        let closed = live(&mut self.conns, s)
            .filter(|x| !x.conn.has_output())
            .and_then(|x| x.conn.sjs().and_then(|j| j.closed.clone()));
        if let (Some(frame), false) = (closed, open) {
            self.sjs_answer(t, SjsAnswer::Frame(&frame), now);
            return;
        }
        self.sjs_answer(t, SjsAnswer::Attach { session: s.0, open }, now);
        let attached = live(&mut self.conns, t).is_some_and(|c| c.conn.carrier_of() == Some(s.0));
        let receiver = attached.then_some(t.0);
        if let Some(next) = self.with_conn(s, now, |c, ctx| {
            c.sjs_receiver(ctx, receiver, false);
            c.wants_flush()
        }) {
            self.after(s, Next::Idle, next);
        }
        if attached {
            self.sjs_pump(s, now);
        }
    }

    fn sjs_answer(&mut self, t: Token, answer: SjsAnswer<'_>, now: Instant) {
        if let Some((next, out)) = self.with_conn(t, now, |c, ctx| {
            let n = c.sjs_answer(ctx, answer);
            (n, c.wants_flush())
        }) {
            self.after(t, next, out);
        }
    }

    /// `xhr_send` on carrier `t`: the messages go to the session, and the request is
    /// answered.
    fn sjs_send(&mut self, t: Token, now: Instant) {
        let Some(s) = self.sjs_session_of(&self.sjs.id.clone()) else {
            self.sjs_answer(t, SjsAnswer::NoSession, now);
            return;
        };
        let answer = match self.sjs_feed(s, now, Some(t)) {
            true => SjsAnswer::Sent,
            false => SjsAnswer::Full("session input over its limit: read the replies"),
        };
        self.sjs_answer(t, answer, now);
    }

    /// Feed the decoded messages to session `s`. `false` when its input is over its bound
    /// (a WebSocket carrier's session is then failed: it sent without reading).
    fn sjs_feed(&mut self, s: Token, now: Instant, from_http: Option<Token>) -> bool {
        let data = std::mem::take(&mut self.sjs.data);
        let ends = std::mem::take(&mut self.sjs.ends);
        let r = self.with_conn(s, now, |c, ctx| {
            let r = c.sjs_feed(ctx, &data, &ends);
            if r.is_err() && from_http.is_none() {
                c.stomp_fail(
                    ctx,
                    &crate::session::StompError::new("input over its limit while not reading"),
                );
            }
            (r.is_ok(), c.wants_flush())
        });
        self.sjs.data = data;
        self.sjs.ends = ends;
        let Some((ok, out)) = r else {
            return from_http.is_none();
        };
        self.fan_out(now);
        self.after(s, Next::Idle, out);
        // Held input (an UNSUBSCRIBE after a SEND) goes on once what was published is routed.
        self.ready_again.push(s);
        ok
    }

    /// Carrier `c` stopped carrying for session `s` without its response ending (EOF, an
    /// error, a WebSocket close): the session closes (a WebSocket one goes with it).
    fn sjs_lost(&mut self, s: Token, c: Token, now: Instant) {
        let Some(slot) = live(&mut self.conns, s) else {
            return;
        };
        if slot.conn.sjs().and_then(|j| j.receiver) != Some(c.0) {
            return;
        }
        if slot.conn.sjs_ws_bound() {
            if let Some(out) = self.with_conn(s, now, |c, ctx| {
                c.sjs_receiver(ctx, None, true);
                c.wants_flush()
            }) {
                self.fan_out(now);
                self.after(s, Next::Close, out);
            }
            return;
        }
        if let Some(out) = self.with_conn(s, now, |c, ctx| {
            c.sjs_receiver(ctx, None, true);
            c.wants_flush()
        }) {
            self.fan_out(now);
            self.after(s, Next::Idle, out);
        }
    }

    /// Move session `s`'s frames onto its receiver while it has room: messages (one `a[...]`
    /// frame per batch), then the close frame, or a due heart-beat. The receiver is flushed
    /// with the rest of the turn's dirty connections.
    pub(super) fn sjs_pump(&mut self, s: Token, now: Instant) {
        let Some(r) = live(&mut self.conns, s).and_then(|x| x.conn.sjs().and_then(|j| j.receiver))
        else {
            return;
        };
        let r = Token(r);
        let carrying = live(&mut self.conns, r).is_some_and(|c| c.conn.carrier_of() == Some(s.0));
        if !carrying {
            if let Some(out) = self.with_conn(s, now, |c, ctx| {
                c.sjs_receiver(ctx, None, false);
                c.wants_flush()
            }) {
                self.after(s, Next::Idle, out);
            }
            return;
        }
        let beat = self
            .cfg
            .sockjs
            .as_ref()
            .map_or(Duration::from_secs(25), |c| c.heartbeat);
        let mut frame = std::mem::take(&mut self.scratch_frame);
        loop {
            if !live(&mut self.conns, r).is_some_and(|c| c.conn.carrier_has_room()) {
                break;
            }
            let next = self.with_conn(s, now, |c, ctx| {
                c.sjs_next_frame(ctx, 32 * 1024, &mut frame)
            });
            let Some(kind) = next.flatten() else {
                break;
            };
            let go_on = self
                .with_conn(r, now, |c, ctx| {
                    let on = c.carry(ctx, &frame);
                    if on && kind == SjsFrame::Close {
                        c.carry_end(ctx);
                        return false;
                    }
                    on
                })
                .unwrap_or(false);
            self.dirty.push(r);
            if !go_on {
                // The response ended: a request pipelined behind it is read now.
                self.ready_again.push(r);
            }
            self.fan_out(now);
            if let Some(out) = self.with_conn(s, now, |c, ctx| {
                c.sjs_wrote(now, beat);
                if !go_on {
                    c.sjs_receiver(ctx, None, false);
                }
                (c.flush(ctx).unwrap_or(Next::Idle), c.wants_flush())
            }) {
                let (next, _) = out;
                self.after(s, next, false);
            }
            if !go_on {
                break;
            }
        }
        self.scratch_frame = frame;
        self.rearm_timer(s);
    }
}
