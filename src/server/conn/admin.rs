//! What the admin API sees of a connection, and its "close" button.

use super::*;
use crate::server::admin::{conn_id, ConnDetail, ConnRow, SubRow};
use crate::session::AckMode;

impl Conn {
    /// This connection as the admin API lists it.
    pub fn admin_row(&self, reactor: usize, token: usize, now: Instant) -> ConnRow {
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
            Some(s) => s.peer_addr().ok().map(|a| a.to_string()),
            None => self.admitted.map(|ip| ip.to_string()),
        };
        ConnRow {
            id: conn_id(reactor, token),
            reactor,
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
            session: st.map(|s| s.session.id.as_str().to_string()),
            subscriptions: st.map_or(0, |s| s.session.subscriptions().len()),
            bytes_in: st.map_or(0, |s| s.bytes_in),
            bytes_out: self.out.written_total(),
            outbound_bytes: self.out.len(),
            age_seconds: st.map(|s| now.saturating_duration_since(s.opened).as_secs_f64()),
        }
    }

    /// [`Conn::admin_row`] with the subscriptions.
    pub fn admin_detail(&self, reactor: usize, token: usize, now: Instant) -> ConnDetail {
        let subs = self.stomp().map_or(&[][..], |s| s.session.subscriptions());
        ConnDetail {
            row: self.admin_row(reactor, token, now),
            subscriptions_list: subs
                .iter()
                .map(|s| SubRow {
                    id: s.id.to_string(),
                    destination: s.destination.to_string(),
                    ack: match s.ack {
                        AckMode::Auto => "auto",
                        AckMode::Client => "client",
                        AckMode::ClientIndividual => "client-individual",
                    },
                })
                .collect(),
        }
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
