//! Cluster mode, one reactor's share: which NATS subjects its subscribers need. Each subject is
//! counted once per local exact destination with subscribers and once per local pattern that
//! it covers; a change from none to some (or back) is recorded for the reactor to pass to the
//! bridge, which holds one NATS subscription per subject any reactor needs.

use std::collections::HashMap;
use std::sync::Arc;

use crate::router::subject;

#[derive(Debug)]
pub struct Interest {
    prefix: Arc<str>,
    /// What follows `m<reactor>-<seq>` in a message id made here (`@<node>-<boot>`).
    id_suffix: Box<[u8]>,
    /// Per subject: local subscriptions needing it, and the number of the `On` that asked
    /// the bridge for it.
    counts: HashMap<Arc<str>, (usize, u64)>,
    /// `On`s sent so far, and how many of them NATS is known to have (a `Ready` answered).
    ons: u64,
    confirmed: u64,
    /// What the bridge must do for this reactor, in order.
    changes: Vec<Change>,
}

/// One thing for the bridge, in the order the reactor's subscriptions changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// This reactor needs a subject.
    On(Arc<str>),
    /// This reactor no longer needs a subject.
    Off(Arc<str>),
    /// Answer `receipt` to connection `token` once NATS has every subscription asked for
    /// before it: a SUBSCRIBE's RECEIPT then means what it means standalone (what is published
    /// afterwards, on any node, reaches the subscription).
    Ready {
        token: usize,
        receipt: Box<str>,
        /// Answering it confirms the `On`s up to this one.
        upto: u64,
    },
    /// JetStream queue store: a message this node took is done (acked, or written in auto
    /// mode): acknowledge it to JetStream (its reply subject).
    JsAck(Box<str>),
    /// ... or give it back to JetStream at once (no consumer here any more).
    JsNak(Box<str>),
    /// ... or tell JetStream it is still being worked on (held here longer than its ack wait
    /// would allow), so it is not handed to another node meanwhile.
    JsProgress(Box<str>),
    /// An administrator purged `queue`: drop its messages from the queue stream, and answer
    /// the admin API's request `ask` (if any) with how many.
    JsPurge { queue: Arc<str>, ask: Option<u64> },
    /// This reactor (the queue's home here) can take `n` more messages of `queue`.
    JsPull { queue: Arc<str>, n: usize },
}

impl Interest {
    pub fn new(prefix: &str, id_suffix: &[u8]) -> Self {
        Interest {
            prefix: prefix.into(),
            id_suffix: id_suffix.into(),
            counts: HashMap::new(),
            ons: 0,
            confirmed: 0,
            changes: Vec::new(),
        }
    }

    pub fn id_suffix(&self) -> &[u8] {
        &self.id_suffix
    }

    /// The subject of a destination (`None`: too long to cross).
    pub fn subject(&self, destination: &str) -> Option<Arc<str>> {
        subject::subject(&self.prefix, destination).map(Arc::from)
    }

    /// Whether a destination's subject would be too long to cross (allocates nothing).
    pub fn too_long(&self, destination: &str) -> bool {
        subject::subject_len(&self.prefix, destination) > subject::MAX_SUBJECT
    }

    /// The subjects covering a pattern (empty: too long to cross).
    pub fn covers(&self, pattern: &str) -> Box<[Arc<str>]> {
        subject::covers(&self.prefix, pattern)
            .unwrap_or_default()
            .into_iter()
            .map(Arc::from)
            .collect()
    }

    pub fn add(&mut self, subject: &Arc<str>) {
        let (n, on) = self.counts.entry(Arc::clone(subject)).or_insert((0, 0));
        *n += 1;
        if *n == 1 {
            self.ons += 1;
            *on = self.ons;
            self.changes.push(Change::On(Arc::clone(subject)));
        }
    }

    /// Whether NATS may not have `subject` yet (asked for, not yet confirmed).
    pub fn unsettled(&self, subject: &str) -> bool {
        self.counts
            .get(subject)
            .is_some_and(|(_, on)| *on > self.confirmed)
    }

    /// A `Ready` was answered: NATS has every subject asked for up to `upto`.
    pub fn confirm(&mut self, upto: u64) {
        self.confirmed = self.confirmed.max(upto);
    }

    pub fn remove(&mut self, subject: &str) {
        let Some((n, _)) = self.counts.get_mut(subject) else {
            return;
        };
        *n -= 1;
        if *n == 0 {
            if let Some((k, _)) = self.counts.remove_entry(subject) {
                self.changes.push(Change::Off(k));
            }
        }
    }

    /// Subjects needed now.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// A RECEIPT to answer once NATS has what was asked for so far.
    pub fn ready(&mut self, token: usize, receipt: Box<str>) {
        self.changes.push(Change::Ready {
            token,
            receipt,
            upto: self.ons,
        });
    }

    /// Something for the bridge that is not about subjects (the JetStream queue store's).
    pub fn push(&mut self, c: Change) {
        self.changes.push(c);
    }

    /// The changes not yet taken, oldest first.
    pub fn changes(&mut self) -> &mut Vec<Change> {
        &mut self.changes
    }
}

#[cfg(test)]
mod tests;
