//! The reference model's messages: what each SEND may, must and must not lead to, and the
//! checks run on them once every session has ended and the queues are drained.

use std::collections::HashMap;

use super::script::{AckMode, Body, Dest};

/// What the broker owes a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Not known yet (resolved by a RECEIPT, an ERROR or the session's end).
    Pending,
    /// Routed for certain (a topic SEND that was processed, a queue SEND whose RECEIPT came,
    /// a processed COMMIT's SEND).
    Required,
    /// May or may not have been routed.
    Optional,
    /// Must never be delivered (aborted or failed transaction, refused, malformed, or sent
    /// after the frame the session's ERROR was for).
    Forbidden(&'static str),
}

#[derive(Debug, Clone)]
pub struct Seen {
    pub inc: usize,
    pub sub: String,
    pub redelivered: bool,
}

#[derive(Debug, Clone)]
pub struct Msg {
    pub dest: Dest,
    pub body: Body,
    /// The publishing incarnation and transaction: per-publisher order holds per stream.
    pub stream: (usize, Option<usize>),
    pub fate: Fate,
    /// A transaction's queue message: only Required if no queue refused anything.
    pub tx_queue: bool,
    /// Logical time its SEND (or its transaction's COMMIT) was written.
    pub at: u64,
    /// Logical time it was known routed (a later RECEIPT of its session): a subscriber must
    /// get it only if it was still subscribed then (u64::MAX: not known).
    pub required_at: u64,
    pub seen: Vec<Seen>,
    /// Consumptions known to have happened (auto delivery read, ACK processed, drain).
    pub certain: u32,
    /// Consumptions that may have happened (ACK written, its processing unknown).
    pub uncertain: u32,
    /// It was auto-delivered to a session that then ended without a DISCONNECT (an ERROR, a
    /// kill): the broker may have queued it without writing it before the close, and then puts
    /// it back, flagged redelivered. One such extra consumption is allowed.
    pub maybe_back: bool,
}

impl Msg {
    pub fn resolve(&mut self, f: Fate) {
        if self.fate == Fate::Pending || (f != Fate::Pending && self.fate == Fate::Optional) {
            self.fate = f;
        }
    }
}

/// The SEND body of message `idx` of run `run`: `<run>:<idx>|` then filler of the body kind.
pub fn body_bytes(run: u64, idx: usize, body: Body) -> Vec<u8> {
    let mut v = format!("{run}:{idx}|").into_bytes();
    match body {
        Body::Text(n) | Body::Counted(n) | Body::Large(n) => {
            v.extend((0..usize::from(n)).map(|i| b'a' + ((idx + i) % 26) as u8));
        }
        Body::Binary(n) => {
            v.extend((0..usize::from(n)).map(|i| ((idx * 31 + i * 7) % 256) as u8));
        }
    }
    v
}

/// The message a MESSAGE body names, if it is one of this run's.
pub fn parse_id(run: u64, body: &[u8]) -> Option<usize> {
    let bar = body.iter().position(|&b| b == b'|')?;
    let s = std::str::from_utf8(&body[..bar]).ok()?;
    let (r, i) = s.split_once(':')?;
    (r.parse::<u64>().ok()? == run).then_some(())?;
    i.parse().ok()
}

/// An auto-mode queue subscription of a session the client dropped without reading its
/// socket to the end: deliveries written to it before `at` may be lost legitimately. Also a
/// purge of the queue through the admin API: messages sent to it before `at` may be gone.
#[derive(Debug, Clone)]
pub struct Lossy {
    pub queue: Dest,
    pub at: u64,
}

/// A subscription that kept receiving until its session ended cleanly.
#[derive(Debug, Clone)]
pub struct Complete {
    pub inc: usize,
    pub sub: String,
    pub dest: Dest,
    /// Logical time its SUBSCRIBE was known processed.
    pub known_at: u64,
    /// Logical time its session's DISCONNECT was written: messages known routed only after
    /// that may have been routed after it left (another session's SEND has no order with it).
    pub until: u64,
}

/// Every end-of-run check on the messages; the first few problems found.
pub fn final_checks(
    msgs: &[Msg],
    lossy: &[Lossy],
    complete: &[Complete],
    queue_refusals: bool,
) -> Vec<String> {
    let mut v = Vec::new();
    let mut seen_by: HashMap<(usize, &str), Vec<usize>> = HashMap::new();
    for (i, m) in msgs.iter().enumerate() {
        for s in &m.seen {
            seen_by.entry((s.inc, s.sub.as_str())).or_default().push(i);
        }
        if let Fate::Forbidden(why) = &m.fate {
            if !m.seen.is_empty() {
                v.push(format!(
                    "message {i} ({:?}) must never be delivered ({why}) but was: {:?}",
                    m.dest, m.seen
                ));
            }
            continue;
        }
        if !m.dest.is_queue() {
            continue;
        }
        let fresh = m.seen.iter().filter(|s| !s.redelivered).count();
        if fresh > 1 {
            v.push(format!(
                "queue message {i} delivered {fresh} times without redelivered:true: {:?}",
                m.seen
            ));
        }
        let returned_once =
            m.maybe_back && m.certain == 2 && m.seen.iter().filter(|s| !s.redelivered).count() <= 1;
        if m.certain > 1 && !returned_once {
            v.push(format!(
                "queue message {i} consumed {} times (acked or auto-delivered): {:?}",
                m.certain, m.seen
            ));
        }
        let required = m.fate == Fate::Required && !(m.tx_queue && queue_refusals);
        let excused = lossy.iter().any(|l| l.queue == m.dest && m.at < l.at);
        if required && m.certain + m.uncertain == 0 && !excused {
            v.push(format!(
                "queue message {i} ({:?}, accepted by the broker) lost: never consumed, not \
                 left in its queue; deliveries: {:?}",
                m.dest, m.seen
            ));
        }
    }
    for c in complete {
        let got = seen_by.get(&(c.inc, c.sub.as_str()));
        for (i, m) in msgs.iter().enumerate() {
            if m.fate != Fate::Required
                || m.dest.is_queue()
                || !c.dest.matches(m.dest)
                || m.at <= c.known_at
                || m.required_at >= c.until
            {
                continue;
            }
            if !got.is_some_and(|g| g.contains(&i)) {
                v.push(format!(
                    "topic message {i} ({:?}, routed after the SUBSCRIBE's RECEIPT) never reached \
                     subscription {} of session #{} (which stayed subscribed and disconnected \
                     cleanly)",
                    m.dest, c.sub, c.inc
                ));
            }
        }
    }
    v.truncate(8);
    v
}

// ---------------------------------------------------------------------------------------------
// What the driver records of each session's frames, subscriptions and transactions.

/// What the broker may answer to a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Ok,
    Err,
    Any,
    /// A queue SEND: accepted, or refused with "queue full".
    OkOrFull,
}

/// What became of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Res {
    Unknown,
    Processed,
    Failed,
    NotProcessed,
}

#[derive(Debug, Clone)]
pub enum What {
    Connect,
    /// A SEND outside a transaction (msg index); `verdict`: a queue SEND with a receipt.
    Send {
        msg: usize,
        verdict: bool,
    },
    /// A SEND, ACK or NACK inside a transaction (applied by the COMMIT).
    TxFrame,
    Subscribe(usize),
    Unsubscribe(usize),
    /// An ACK/NACK outside a transaction and the messages it settles.
    Ack {
        msgs: Vec<usize>,
        nack: bool,
    },
    Commit(usize),
    Abort,
    Begin,
    Disconnect,
    /// A frame the broker must refuse; a message it carries (never to be delivered).
    Bad(Option<usize>),
    Other,
}

#[derive(Debug, Clone)]
pub struct Sent {
    pub what: What,
    pub receipt: Option<String>,
    pub expect: Expect,
    pub res: Res,
}

#[derive(Debug, Clone)]
pub struct Sub {
    pub id: String,
    pub dest: Dest,
    pub mode: AckMode,
    pub prefetch: usize,
    pub active: bool,
    /// Logical time the SUBSCRIBE was known processed.
    pub known_at: Option<u64>,
    /// The UNSUBSCRIBE is known processed: nothing more may come for it.
    pub gone: bool,
    /// Delivered (client modes), not settled: (ack id, message).
    pub held: Vec<(String, usize)>,
    /// Last seq seen per publisher stream (topics).
    pub last: HashMap<(usize, Option<usize>), usize>,
}

#[derive(Debug, Clone)]
pub enum TxOp {
    Send(usize),
    Ack { id: String, nack: bool },
}

#[derive(Debug, Clone)]
pub struct Tx {
    pub name: String,
    pub open: bool,
    pub frames: usize,
    pub ops: Vec<TxOp>,
    /// Messages a processed COMMIT settles (computed when it is written).
    pub settles: Vec<(usize, bool)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum St {
    Live,
    /// DISCONNECT written.
    Closing,
    /// A frame the broker must refuse was written: an ERROR and the close should follow.
    Doomed,
    Dead,
}
