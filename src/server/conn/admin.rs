//! What the admin API sees of a connection, and its "close" button.

use super::*;
use crate::server::admin::{ConnInfo, Peer, SubRow};
use crate::session::AckMode;

impl Conn {
    /// This connection as the admin API lists it (no string made but the login's copy).
    pub fn admin_info(&self, token: usize) -> ConnInfo {
        let st = self.stomp();
        let state = match &self.phase {
            Phase::Handshake => "handshake",
            Phase::Open {
                app: App::Stomp(s), ..
            } if s.session.connected => "connected",
            Phase::Open {
                app: App::Stomp(_), ..
            } => "connecting",
            Phase::Open { app: App::Echo, .. } => "echo",
            Phase::Linger => "closing",
            Phase::Carrier(_) => "carrier",
        };
        let peer = match &self.sock {
            Some(s) => s.peer_addr().ok().map(Peer::Socket),
            None => self.admitted.map(Peer::Ip),
        };
        ConnInfo {
            token,
            peer,
            user: st.and_then(|s| s.session.login.clone()),
            protocol: match self.kind {
                Kind::Ws => "WebSocket",
                Kind::Tcp => "TCP",
                Kind::Sockjs => "SockJS",
            },
            tls: self.tls.is_some(),
            stomp: st
                .filter(|s| s.session.connected)
                .map(|s| s.session.version.as_str()),
            state,
            session: st.map(|s| s.session.id),
            subscriptions: st.map_or(0, |s| s.session.subscriptions().len()),
            bytes_in: st.map_or(0, |s| s.bytes_in),
            bytes_out: self.out.written_total(),
            outbound_bytes: self.out.len(),
            opened: st.map(|s| s.opened),
        }
    }

    /// The connection's subscriptions, for the admin API.
    pub fn admin_subscriptions(&self) -> Vec<SubRow> {
        let subs = self.stomp().map_or(&[][..], |s| s.session.subscriptions());
        subs.iter()
            .map(|s| SubRow {
                id: s.id.to_string(),
                destination: s.destination.to_string(),
                ack: match s.ack {
                    AckMode::Auto => "auto",
                    AckMode::Client => "client",
                    AckMode::ClientIndividual => "client-individual",
                },
            })
            .collect()
    }

    /// Closed by an administrator: a STOMP session gets an ERROR saying so (then the close
    /// flow of its transport); anything else is closed as at shutdown.
    pub fn admin_close(&mut self, ctx: &mut Ctx<'_>, reason: &str) {
        let message = format!("closed by an administrator: {reason}");
        if self.stomp().is_some() {
            self.stomp_fail(ctx, &StompError::new(message));
        } else {
            self.start_close(ctx, code::GOING_AWAY, &message);
        }
    }
}
