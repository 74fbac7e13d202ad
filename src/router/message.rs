//! A published message, frozen once: the shared part of every MESSAGE frame for it
//! (`destination`, `message-id`, the sender's headers, `content-length`, body, NUL).

use std::sync::Arc;

use crate::stomp::{escape, push_usize, FrameRef, Version};

/// A message id, formatted once, stored inline.
#[derive(Debug, Clone, Copy)]
pub struct MsgId {
    buf: [u8; 32],
    len: u8,
}

impl MsgId {
    pub fn new(reactor: usize, seq: u64) -> Self {
        let mut v = Vec::new();
        v.extend_from_slice(b"m");
        push_usize(&mut v, reactor);
        v.push(b'-');
        push_usize(&mut v, seq as usize);
        let mut buf = [0u8; 32];
        let len = v.len().min(32);
        buf.get_mut(..len)
            .unwrap_or_default()
            .copy_from_slice(v.get(..len).unwrap_or_default());
        MsgId {
            buf,
            len: len as u8,
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
    /// For 1.0 subscribers, when escaping changed anything.
    pub shared_v10: Option<Arc<[u8]>>,
    /// The frame is valid UTF-8 (a WebSocket text message); otherwise it goes out as binary.
    pub text: bool,
}

impl Published {
    pub fn shared_for(&self, v: Version) -> &Arc<[u8]> {
        match (&self.shared_v10, v) {
            (Some(s), Version::V1_0) => s,
            _ => &self.shared,
        }
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

/// Build the shared part from a SEND frame. `scratch` is reused between calls.
pub fn encode_shared(
    frame: &FrameRef<'_>,
    destination: &str,
    id: MsgId,
    scratch: &mut Vec<u8>,
) -> Published {
    let mut needs_v10 = escape::needs_escape(destination.as_bytes());
    scratch.clear();
    let put = |out: &mut Vec<u8>, name: &[u8], value: &[u8], escaped: bool| {
        if escaped {
            escape::escape_into(out, name);
            out.push(b':');
            escape::escape_into(out, value);
        } else {
            // 1.0 has no escapes: a line break inside a value would end the header (and could
            // inject others), so it becomes a space.
            let flat = |b: &u8| if matches!(b, b'\r' | b'\n') { b' ' } else { *b };
            out.extend(name.iter().map(flat));
            out.push(b':');
            out.extend(value.iter().map(flat));
        }
        out.push(b'\n');
    };
    let write = |out: &mut Vec<u8>, escaped: bool, needs: &mut bool| {
        put(out, b"destination", destination.as_bytes(), escaped);
        put(out, b"message-id", id.as_bytes(), false);
        if let Some(ct) = frame.header("content-type") {
            *needs |= escape::needs_escape(ct.as_bytes());
            put(out, b"content-type", ct.as_bytes(), escaped);
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
            let value = unescaped(frame, h.value);
            *needs |= escape::needs_escape(&name) || escape::needs_escape(&value);
            put(out, &name, &value, escaped);
        }
        out.extend_from_slice(b"content-length:");
        push_usize(out, frame.body.len());
        out.extend_from_slice(b"\n\n");
        out.extend_from_slice(frame.body);
        out.push(0);
    };
    write(scratch, true, &mut needs_v10);
    let shared: Arc<[u8]> = Arc::from(scratch.as_slice());
    let shared_v10 = if needs_v10 {
        scratch.clear();
        let mut ignored = false;
        write(scratch, false, &mut ignored);
        Some(Arc::from(scratch.as_slice()))
    } else {
        None
    };
    Published {
        destination: Arc::from(destination),
        id,
        text: std::str::from_utf8(&shared).is_ok(),
        shared,
        shared_v10,
    }
}

fn unescaped<'a>(frame: &FrameRef<'a>, raw: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
    if frame.escaped {
        escape::unescape(raw).unwrap_or(std::borrow::Cow::Borrowed(raw))
    } else {
        std::borrow::Cow::Borrowed(raw)
    }
}
