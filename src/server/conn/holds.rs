//! What holds a STOMP connection's input, and what ends its session from outside: a
//! credentials check (and a failed login's delay, kept on the timer), the memory alarm (at a
//! SEND, or inside a large frame), routing first what was published before an UNSUBSCRIBE;
//! access revoked by a reload, and the ERROR that closes the session.

use super::*;

impl Conn {
    /// The connection is going away: drop its subscriptions (and transactions).
    pub fn drop_session(&mut self, ctx: &mut Ctx<'_>) {
        if let Phase::Open {
            app: App::Stomp(s), ..
        } = std::mem::replace(&mut self.phase, Phase::Linger)
        {
            for sub in s.session.subscriptions() {
                drop_subscription(sub, false, ctx);
            }
        }
    }

    pub(super) fn auth_pending(&self) -> bool {
        self.stomp().is_some_and(|s| s.auth_pending)
    }

    pub(super) fn memory_blocked(&self) -> bool {
        self.stomp().is_some_and(|s| s.memory_blocked)
    }

    /// The memory alarm cleared: `true` if this connection was stopped for it (and is no more).
    pub fn take_memory_blocked(&mut self) -> bool {
        self.stomp_mut()
            .is_some_and(|s| std::mem::replace(&mut s.memory_blocked, false))
    }

    /// Bytes of input held for frames not complete yet: the read buffer's unread part, the
    /// WebSocket message being assembled, and STOMP bytes stashed between messages.
    pub(super) fn partial_input(&self) -> usize {
        let unread = self.rbuf.len().saturating_sub(self.rstart);
        let (ws, stash) = match &self.phase {
            Phase::Open { ws, app } => (
                ws.as_ref().map_or(0, |w| w.codec.decoder.buffered()),
                match app {
                    App::Stomp(st) => st.stash.len(),
                    App::Echo => 0,
                },
            ),
            _ => (0, 0),
        };
        unread + ws + stash
    }

    /// Under the memory alarm, a connection in the middle of a large frame is not read from
    /// until the alarm clears (a small partial frame, an ACK split by the network, goes on).
    pub(super) fn block_large_partial(&mut self, ctx: &mut Ctx<'_>) -> bool {
        if !ctx.memory_alarm || self.partial_input() <= ctx.cfg.read_buffer_size {
            return false;
        }
        match self.stomp_mut() {
            Some(st) => {
                st.memory_blocked = true;
                ctx.counters.memory_blocked += 1;
                true
            }
            None => false,
        }
    }

    pub(super) fn fan_out_first(&self) -> bool {
        self.stomp().is_some_and(|s| s.fan_out_first)
    }

    /// A slow credentials check finished: the held-back CONNECT is handled again with the
    /// answer, after `delay` (a failed login's penalty, kept on the timer wheel).
    pub fn auth_done(&mut self, ok: bool, delay: Duration, now: Instant) -> Next {
        if let Phase::Open {
            app: App::Stomp(st),
            ..
        } = &mut self.phase
        {
            if st.auth_pending {
                st.session.preauth = Some(ok);
                if delay.is_zero() {
                    st.auth_pending = false;
                    return Next::ReadAgain;
                }
                st.auth_hold = Some(now + delay);
            }
        }
        Next::Idle
    }

    /// A held login answer whose delay is over: the CONNECT is handled again.
    pub(super) fn release_auth(&mut self, now: Instant) -> Option<Next> {
        let st = self.stomp_mut()?;
        if st.auth_hold.is_some_and(|at| at <= now) {
            st.auth_hold = None;
            st.auth_pending = false;
            return Some(Next::ReadAgain);
        }
        None
    }

    /// The users or the ACL changed (a reload): a session whose user is gone, or that holds a
    /// subscription its rules no longer allow, gets an ERROR and is closed. `true` if it was.
    pub fn recheck_access(&mut self, ctx: &mut Ctx<'_>, acl: Option<&crate::auth::Acl>) -> bool {
        let Some(st) = self.stomp().filter(|s| s.session.connected) else {
            return false;
        };
        let login = st.session.login.as_deref();
        let who = login.unwrap_or("anonymous");
        let reason = if !ctx.cfg.session.authenticator.admits(login) {
            Some(format!("access revoked: {who} is no longer admitted"))
        } else {
            acl.and_then(|acl| {
                let perm = crate::auth::Perm::Read;
                st.session
                    .subscriptions()
                    .iter()
                    .find(|s| !acl.allows(login, perm, &s.destination))
                    .map(|s| {
                        format!(
                            "access revoked: {who} may no longer subscribe to '{}'",
                            s.destination
                        )
                    })
            })
        };
        let Some(reason) = reason else {
            return false;
        };
        ctx.counters.stomp_error(Cause::Access);
        self.stomp_fail(ctx, &StompError::new(reason).because(Cause::Access));
        true
    }

    /// A STOMP-level failure outside frame handling (heart-beat timeout, slow consumer,
    /// shutdown): ERROR, then close.
    pub fn stomp_fail(&mut self, ctx: &mut Ctx<'_>, err: &StompError) {
        let Some(version) = self.stomp().map(|s| s.session.version) else {
            return;
        };
        let framing = self.framing();
        write_error(&mut self.out, ctx, version, err, framing);
        self.apply_flow(ctx, Flow::Close { error: true });
    }
}
