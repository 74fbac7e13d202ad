//! The reactor's answers to the admin API: between loop turns, each bounded (a page of
//! connections looks at most at [`SCAN`] slots).

use super::*;
use crate::server::admin::{Answer, Ask, QueueRow, Reply, TopicRow, What, SCAN};

impl Reactor {
    pub(super) fn admin(&mut self, ask: Ask, now: Instant) {
        let answer = match ask.what {
            What::Connections {
                from,
                limit,
                filter,
            } => {
                let mut rows = Vec::with_capacity(limit.min(SCAN));
                let mut scratch = String::new();
                let end = from.saturating_add(SCAN).min(self.conns.capacity());
                let mut next = None;
                for idx in from..end {
                    if rows.len() >= limit {
                        next = Some(idx);
                        break;
                    }
                    if let Some(s) = self.conns.get(idx) {
                        let info = s.conn.admin_info(token(idx, s.gen).0);
                        if filter.matches(self.id, &info, &mut scratch) {
                            rows.push(info);
                        }
                    }
                }
                if next.is_none() && end < self.conns.capacity() {
                    next = Some(end);
                }
                Answer::Connections { rows, next }
            }
            What::Connection { token: t } => Answer::Connection(
                live(&mut self.conns, Token(t))
                    .map(|s| Box::new((s.conn.admin_info(t), s.conn.admin_subscriptions()))),
            ),
            What::Close { token: t, reason } => {
                let t = Token(t);
                let closed = self
                    .with_conn(t, now, |c, ctx| c.admin_close(ctx, &reason))
                    .is_some();
                if closed {
                    self.fan_out(now);
                    self.after(t, Next::Idle, true);
                }
                Answer::Closed(closed)
            }
            What::Destinations { limit } => {
                // Names shared, not copied, until the busiest `limit` are known.
                let mut all = Vec::new();
                self.router.visit_topics(|name, subs, published| {
                    all.push((Arc::clone(name), subs, published))
                });
                if all.len() > limit {
                    all.select_nth_unstable_by(limit, |a, b| (b.1, b.2).cmp(&(a.1, a.2)));
                    all.truncate(limit);
                }
                let topics = all
                    .into_iter()
                    .map(|(name, subs, published)| TopicRow {
                        name: name.to_string(),
                        subscribers: subs as u64,
                        messages: published,
                    })
                    .collect();
                let mut queues = Vec::new();
                self.router
                    .visit_queues(|name, ready, unacked, consumers, enqueued| {
                        queues.push(QueueRow {
                            name: name.to_string(),
                            ready,
                            unacked,
                            consumers,
                            messages: enqueued,
                        })
                    });
                queues.sort_unstable_by_key(|q| std::cmp::Reverse(q.ready));
                queues.truncate(limit);
                Answer::Destinations { topics, queues }
            }
            What::Purge { queue } => {
                let (held, stream) = self.router.purge(&queue, Some(ask.id));
                Answer::Purged { held, stream }
            }
        };
        ask.to.send(Reply {
            id: ask.id,
            reactor: self.id,
            answer,
        });
    }
}
