//! How reactors are reached: a bounded channel of [`Mail`] plus a waker, rung once per batch
//! (a reactor sends each other reactor one [`Batch`] per loop turn).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;
use mio::net::TcpStream;
use mio::Waker;

use super::conn::Kind;
use crate::router::{Delivery, Published, QueueOp};

/// Messages to a reactor.
#[derive(Debug)]
pub enum Mail {
    /// A new connection; `admitted` is its peer IP when it counts against the limits, `None`
    /// when it must be refused as over them.
    Accepted(TcpStream, Kind, Option<std::net::IpAddr>),
    /// A connection whose SockJS request names a session homed on this reactor, moved here
    /// with its request unread.
    Adopt(Box<super::conn::Conn>),
    /// Everything one reactor had for another in one loop turn.
    Batch(Batch),
    /// A question from the admin API (answered on its channel).
    Admin(Box<super::admin::Ask>),
    /// Messages from outside the reactors (the embedding API, application handlers).
    External(Vec<crate::app::Outgoing>),
    /// An application handler on the pool finished for a connection here.
    AppDone(super::apps::Done),
    /// A slow credentials check finished: (connection token, admitted).
    /// A credentials check answered: (token, accepted, delay before answering the client).
    AuthDone(usize, bool, Duration),
    /// Cluster mode: NATS has the subscriptions asked for before this SUBSCRIBE's RECEIPT:
    /// (connection token, receipt id, the reactor's subscriptions confirmed so far).
    ClusterReady(usize, Box<str>, u64),
    /// JetStream queue store: a queue SEND's answer (stored, or why not).
    QueueVerdict(Verdict),
    /// JetStream queue store: messages for a queue homed on this reactor (asked `asked`),
    /// each with its acknowledgement reply subject and whether JetStream delivered it before.
    JsPulled {
        queue: std::sync::Arc<str>,
        msgs: Vec<(crate::router::Published, Box<str>, bool)>,
        asked: usize,
    },
}

/// What crosses from one reactor to another in a loop turn: one channel message, one wake-up.
#[derive(Debug, Default)]
pub struct Batch {
    /// Topic messages for destinations with subscribers there, in publish order.
    pub(super) publish: Vec<Published>,
    /// Work for queues whose home is there, in order.
    pub(super) qops: Vec<QueueOp>,
    /// Queue deliveries to consumers there.
    pub(super) deliveries: Vec<Delivery>,
    /// Queue verdicts for connections there.
    pub(super) verdicts: Vec<Verdict>,
}

impl Batch {
    pub(super) fn is_empty(&self) -> bool {
        self.publish.is_empty()
            && self.qops.is_empty()
            && self.deliveries.is_empty()
            && self.verdicts.is_empty()
    }
}

/// A queue's answer to a SEND, for the sender's connection on another reactor.
#[derive(Debug)]
pub struct Verdict {
    pub token: usize,
    pub receipt: Option<Box<str>>,
    /// Why the queue refused the message (`None`: accepted).
    pub refused: Option<&'static str>,
}

/// The sending side of a reactor's mailbox: a bounded channel plus one wake-up per batch.
#[derive(Debug, Clone)]
pub struct Mailbox {
    pub tx: Sender<Mail>,
    pub waker: Arc<Waker>,
    pub woken: Arc<AtomicBool>,
}

impl Mailbox {
    /// Ring the doorbell unless a wake-up is already pending.
    pub fn wake(&self) {
        if !self.woken.swap(true, Ordering::AcqRel) {
            let _ = self.waker.wake();
        }
    }
}
