//! A published message, frozen once: the shared part of every MESSAGE frame for it
//! (`destination`, `message-id`, the sender's headers, `content-length`, body, NUL).

use std::sync::Arc;

use crate::stomp::{escape, push_usize, usize_digits, FrameRef, Version};

/// A message id, formatted once, stored inline.
#[derive(Debug, Clone, Copy)]
pub struct MsgId {
    buf: [u8; MsgId::MAX],
    len: u8,
}

impl MsgId {
    /// For queue messages, whose ids are given per delivery.
    pub const EMPTY: MsgId = MsgId {
        buf: [0; MsgId::MAX],
        len: 0,
    };

    /// The longest id: `m<reactor>-<seq>` (at most 24 bytes) and a node's suffix.
    pub const MAX: usize = 80;

    /// `m<reactor>-<seq>`, written in place (one is made per topic message).
    pub fn new(reactor: usize, seq: u64) -> Self {
        MsgId::with_node(reactor, seq, b"")
    }

    /// `m<reactor>-<seq>` followed by `node` (a cluster node's `@<name>-<boot>`, which makes
    /// the id unique cluster-wide; see [`crate::cluster::Node`]).
    pub fn with_node(reactor: usize, seq: u64, node: &[u8]) -> Self {
        let mut id = MsgId::EMPTY;
        let mut tmp = [0u8; 20];
        id.push(b"m");
        id.push(usize_digits(reactor, &mut tmp));
        id.push(b"-");
        id.push(usize_digits(seq as usize, &mut tmp));
        id.push(node);
        id
    }

    /// An id as another node wrote it (`None` if longer than [`MsgId::MAX`] or empty).
    pub fn from_bytes(bytes: &[u8]) -> Option<MsgId> {
        if bytes.is_empty() || bytes.len() > MsgId::MAX {
            return None;
        }
        let mut id = MsgId::EMPTY;
        id.push(bytes);
        Some(id)
    }

    fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if let Some(slot) = self.buf.get_mut(self.len as usize) {
                *slot = b;
                self.len += 1;
            }
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len as usize).unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
pub struct Published {
    pub destination: Arc<str>,
    pub id: MsgId,
    /// For 1.1 and 1.2 subscribers (escaped headers).
    pub shared: Arc<[u8]>,
    /// For 1.1 subscribers, when a header holds a CR (1.1 has no `\\r` escape).
    pub shared_v11: Option<Arc<[u8]>>,
    /// For 1.0 subscribers, when escaping changed anything.
    pub shared_v10: Option<Arc<[u8]>>,
    /// The frame is valid UTF-8 (a WebSocket text message); otherwise it goes out as binary.
    pub text: bool,
    /// When the broker got it (the loop turn that read the SEND, or took it from NATS), for
    /// the delivery-latency histogram; `None` where nobody measures.
    pub received: Option<std::time::Instant>,
}

impl Published {
    /// A message whose shared part is `shared` as given (tests, benches).
    pub fn raw(destination: &str, shared: &[u8]) -> Published {
        Published {
            destination: Arc::from(destination),
            id: MsgId::EMPTY,
            shared: Arc::from(shared),
            shared_v11: None,
            shared_v10: None,
            received: None,
            text: std::str::from_utf8(shared).is_ok(),
        }
    }

    pub fn shared_for(&self, v: Version) -> &Arc<[u8]> {
        let older = match v {
            Version::V1_0 => &self.shared_v10,
            Version::V1_1 => &self.shared_v11,
            Version::V1_2 => &None,
        };
        older.as_ref().unwrap_or(&self.shared)
    }
}

/// Headers the broker sets itself or that belong to the SEND only.
fn is_reserved(name: &[u8]) -> bool {
    matches!(
        name,
        b"destination"
            | b"message-id"
            | b"subscription"
            | b"ack"
            | b"receipt"
            | b"transaction"
            | b"content-length"
            | b"content-type"
    )
}

/// Append `v` as a header name or value in the encoding of `version`: 1.2 escapes CR, LF,
/// colon and backslash; 1.1 has no CR escape, so a CR stays raw; 1.0 has no escapes at all, so
/// a line break (which would end the header, or inject another) becomes a space.
fn put_encoded(out: &mut Vec<u8>, v: &[u8], version: Version) {
    match version {
        Version::V1_2 => escape::escape_into(out, v),
        Version::V1_1 => {
            for chunk in v.split(|b| *b == b'\r').enumerate() {
                if chunk.0 > 0 {
                    out.push(b'\r');
                }
                escape::escape_into(out, chunk.1);
            }
        }
        Version::V1_0 => out.extend(v.iter().map(|b| match b {
            b'\r' | b'\n' => b' ',
            _ => *b,
        })),
    }
}

/// Build the shared part from a SEND frame (with `message-id` when given: topic messages
/// share one; queue deliveries carry their own in the per-delivery head), once in 1.2 encoding and, only when a header needs
/// it, once more for 1.1 and for 1.0. `scratch` is reused between calls.
pub fn encode_shared(
    frame: &FrameRef<'_>,
    destination: &str,
    id: Option<MsgId>,
    scratch: &mut Vec<u8>,
) -> Published {
    encode_shared_as(frame, destination, destination, id, scratch)
}

/// [`encode_shared`] for a message routed by `route` whose subscribers see `destination`
/// (user destinations).
pub fn encode_shared_as(
    frame: &FrameRef<'_>,
    route: &str,
    destination: &str,
    id: Option<MsgId>,
    scratch: &mut Vec<u8>,
) -> Published {
    // Which older encodings differ from 1.2: any escape differs for 1.0, only CR for 1.1.
    let mut differs_v10 = false;
    let mut differs_v11 = false;
    let mut note = |v: &[u8]| {
        differs_v10 |= escape::needs_escape(v);
        differs_v11 |= v.contains(&b'\r');
    };
    let put = |out: &mut Vec<u8>, name: &[u8], value: &[u8], version: Version| {
        put_encoded(out, name, version);
        out.push(b':');
        put_encoded(out, value, version);
        out.push(b'\n');
    };
    let content_type = frame.header("content-type");
    note(destination.as_bytes());
    if let Some(ct) = &content_type {
        note(ct.as_bytes());
    }
    for h in frame.headers {
        note(&unescaped(frame, h.name));
        note(&unescaped(frame, h.value));
    }
    let write = |out: &mut Vec<u8>, version: Version| {
        out.clear();
        put(out, b"destination", destination.as_bytes(), version);
        if let Some(id) = &id {
            put(out, b"message-id", id.as_bytes(), version);
        }
        if let Some(ct) = &content_type {
            put(out, b"content-type", ct.as_bytes(), version);
        }
        for (i, h) in frame.headers.iter().enumerate() {
            let name = unescaped(frame, h.name);
            if is_reserved(&name)
                || frame
                    .headers
                    .iter()
                    .take(i)
                    .any(|p| unescaped(frame, p.name) == name)
            {
                continue;
            }
            put(out, &name, &unescaped(frame, h.value), version);
        }
        out.extend_from_slice(b"content-length:");
        push_usize(out, frame.body.len());
        out.extend_from_slice(b"\n\n");
        out.extend_from_slice(frame.body);
        out.push(0);
        Arc::<[u8]>::from(out.as_slice())
    };
    let shared = write(scratch, Version::V1_2);
    let shared_v11 = differs_v11.then(|| write(scratch, Version::V1_1));
    let shared_v10 = differs_v10.then(|| write(scratch, Version::V1_0));
    Published {
        destination: Arc::from(route),
        id: id.unwrap_or(MsgId::EMPTY),
        text: std::str::from_utf8(&shared).is_ok(),
        shared,
        shared_v11,
        shared_v10,
        received: None,
    }
}

fn unescaped<'a>(frame: &FrameRef<'a>, raw: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
    if frame.escaped {
        escape::unescape(raw).unwrap_or(std::borrow::Cow::Borrowed(raw))
    } else {
        std::borrow::Cow::Borrowed(raw)
    }
}

// ---- queue delivery ids, given per delivery (a topic message has one MsgId for all)

/// An ack id: `Some((slot, gen, delivery))` for a queue delivery (`q<slot>.<gen>.<delivery>`),
/// `None` for a well-formed topic message id (`m<reactor>-<seq>`, and in cluster mode
/// `@<node>` after it; not tracked).
pub(super) fn parse_qid(id: &str) -> Result<Option<(u64, u64, u64)>, String> {
    if let Some(rest) = id.strip_prefix('q') {
        let mut it = rest.split('.').map(|p| p.parse::<u64>().ok());
        return match (it.next(), it.next(), it.next(), it.next()) {
            (Some(Some(slot)), Some(Some(gen)), Some(Some(delivery)), None) => {
                Ok(Some((slot, gen, delivery)))
            }
            _ => Err(format!("unknown ack id '{id}'")),
        };
    }
    let (id_here, node) = match id.split_once('@') {
        Some((i, n)) => (i, Some(n)),
        None => (id, None),
    };
    let node_ok = node.is_none_or(|n| {
        !n.is_empty()
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    });
    let topic_id = node_ok
        && id_here
            .strip_prefix('m')
            .and_then(|r| r.split_once('-'))
            .is_some_and(|(a, b)| a.parse::<u64>().is_ok() && b.parse::<u64>().is_ok());
    if topic_id {
        Ok(None)
    } else {
        Err(format!("unknown ack id '{id}'"))
    }
}

/// `q<slot>.<gen>.<delivery>`: the message-id and ack id of a queue delivery.
pub(super) fn format_qid(buf: &mut [u8; 64], slot: u32, gen: u32, delivery: u64) -> usize {
    let mut n = 0;
    let mut put = |b: u8| {
        if let Some(x) = buf.get_mut(n) {
            *x = b;
            n += 1;
        }
    };
    put(b'q');
    for (i, v) in [slot as u64, gen as u64, delivery].into_iter().enumerate() {
        if i > 0 {
            put(b'.');
        }
        let mut digits = [0u8; 20];
        let mut k = digits.len();
        let mut v = v;
        loop {
            k -= 1;
            if let Some(d) = digits.get_mut(k) {
                *d = b'0' + (v % 10) as u8;
            }
            v /= 10;
            if v == 0 || k == 0 {
                break;
            }
        }
        for &d in digits.get(k..).unwrap_or_default() {
            put(d);
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::MsgId;

    #[test]
    fn message_ids_are_reactor_and_sequence() {
        assert_eq!(MsgId::new(3, 42).as_bytes(), b"m3-42");
        assert_eq!(MsgId::new(0, 0).as_bytes(), b"m0-0");
        let big = MsgId::new(63, u64::MAX);
        assert_eq!(big.as_bytes(), format!("m63-{}", u64::MAX).as_bytes());
        assert!(MsgId::EMPTY.as_bytes().is_empty());
        let clustered = MsgId::with_node(63, u64::MAX, &[b'x'; 56]);
        assert_eq!(clustered.as_bytes().len(), MsgId::MAX);
        assert_eq!(
            MsgId::from_bytes(clustered.as_bytes()).map(|i| i.as_bytes().to_vec()),
            Some(clustered.as_bytes().to_vec())
        );
        assert!(MsgId::from_bytes(&[b'x'; MsgId::MAX + 1]).is_none());
    }

    #[test]
    fn topic_ids_from_any_node_are_acked_as_topic_ids() {
        use super::parse_qid;
        assert_eq!(parse_qid("m3-42"), Ok(None));
        assert_eq!(parse_qid("m3-42@node_1-65f0a1b2"), Ok(None));
        assert!(parse_qid("m3-42@").is_err());
        assert!(parse_qid("m3-42@a b").is_err());
        assert!(parse_qid("m3@x").is_err());
    }
}
