//! What crosses NATS: a topic message's shared part exactly as local subscribers get it in
//! STOMP 1.2 (`destination`, `message-id`, the sender's headers, `content-length`, body, NUL),
//! published on the destination's subject. Nothing is re-encoded on the way out; the receiving
//! node takes the bytes as they are for its 1.2 subscribers and derives the 1.0 and 1.1 forms
//! only when a header needs them (an escape in the header block), as the origin did.

use std::sync::Arc;

use crate::router::{encode_shared_as, MsgId, Published};
use crate::stomp::{self, Header, Parsed, Version};

/// Why a payload from NATS was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// The subject is not one this mapping makes.
    Subject,
    /// Not a shared part: no header block, no NUL, no `message-id`, bad escapes.
    Frame,
}

/// Rebuild the message a node published on `subject` (a literal subject under `prefix`).
/// `scratch` is reused between calls.
pub fn decode(
    prefix: &str,
    subject: &str,
    payload: &[u8],
    scratch: &mut Vec<u8>,
) -> Result<Published, Invalid> {
    let route = crate::router::subject::destination(prefix, subject).ok_or(Invalid::Subject)?;
    // A queue message has no id of its own: each delivery gets one.
    let queue = crate::router::kind(&route) == crate::router::DestKind::Queue;
    let end = memchr::memmem::find(payload, b"\n\n").ok_or(Invalid::Frame)?;
    let head = payload.get(..end).ok_or(Invalid::Frame)?;
    if payload.last() != Some(&0) {
        return Err(Invalid::Frame);
    }
    if !head.contains(&b'\\') {
        // Nothing escaped: the 1.0 and 1.1 forms would be these very bytes.
        let id = match head
            .split(|b| *b == b'\n')
            .find_map(|l| l.strip_prefix(b"message-id:"))
        {
            Some(id) => MsgId::from_bytes(id).ok_or(Invalid::Frame)?,
            None if queue => MsgId::EMPTY,
            None => return Err(Invalid::Frame),
        };
        let shared: Arc<[u8]> = Arc::from(payload);
        return Ok(Published {
            destination: Arc::from(route),
            id,
            text: std::str::from_utf8(&shared).is_ok(),
            shared,
            shared_v11: None,
            shared_v10: None,
            received: None,
        });
    }
    // Escaped headers: parse the frame and encode it again, all three forms, as the origin did.
    scratch.clear();
    scratch.extend_from_slice(b"MESSAGE\n");
    scratch.extend_from_slice(payload);
    let framed = std::mem::take(scratch);
    // Room for what a SEND may carry plus what the broker adds; lines and body as they come.
    let mut slots = [Header::default(); 2 * stomp::MAX_HEADERS];
    let limits = stomp::Limits {
        max_headers: slots.len(),
        max_header_line: framed.len(),
        max_body: framed.len(),
    };
    let out = match stomp::parse(&framed, &mut slots, Version::V1_2, &limits) {
        Ok(Parsed::Frame(frame, used)) if used == framed.len() => {
            let shown = frame.header("destination");
            let id = match frame.header("message-id") {
                Some(i) => MsgId::from_bytes(i.as_bytes()).map(Some),
                None if queue => Some(None),
                None => None,
            };
            match (shown, id) {
                (Some(shown), Some(id)) => {
                    let mut enc = Vec::new();
                    let mut msg = encode_shared_as(&frame, &route, &shown, id, &mut enc);
                    // The 1.2 form is the payload itself (same headers, same order).
                    if *msg.shared != *payload {
                        return Err(Invalid::Frame);
                    }
                    msg.shared = Arc::from(payload);
                    Ok(msg)
                }
                _ => Err(Invalid::Frame),
            }
        }
        _ => Err(Invalid::Frame),
    };
    *scratch = framed;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::encode_shared;
    use crate::stomp::FrameRef;

    fn send<'a>(headers: &'a [Header<'a>], body: &'a [u8]) -> FrameRef<'a> {
        FrameRef {
            command: stomp::Command::Send,
            headers,
            body,
            escaped: false,
        }
    }

    fn h<'a>(name: &'a [u8], value: &'a [u8]) -> Header<'a> {
        Header { name, value }
    }

    fn roundtrip(headers: &[Header<'_>], body: &[u8], dest: &str) {
        let mut enc = Vec::new();
        let id = MsgId::from_bytes(b"m1-7@n1-abc").expect("id");
        let sent = encode_shared(&send(headers, body), dest, Some(id), &mut enc);
        let subj = crate::router::subject::subject("sbx", dest).expect("subject");
        let got = decode("sbx", &subj, &sent.shared, &mut enc).expect("decodes");
        assert_eq!(&*got.destination, dest);
        assert_eq!(got.id.as_bytes(), id.as_bytes());
        assert_eq!(got.text, sent.text);
        for v in [Version::V1_0, Version::V1_1, Version::V1_2] {
            assert_eq!(got.shared_for(v), sent.shared_for(v), "{v:?}");
        }
    }

    #[test]
    fn plain_and_escaped_headers_and_binary_bodies_come_back_whole() {
        roundtrip(&[], b"hello", "/topic/a.b");
        roundtrip(
            &[
                h(b"content-type", b"application/octet-stream"),
                h(b"x-custom", b"v"),
            ],
            &[0, 159, 146, 150, 0, 10],
            "/topic/bin",
        );
        roundtrip(
            &[
                h(b"x-colon", b"a:b"),
                h(b"x-cr", b"a\rb"),
                h(b"x-nl", b"a\nb\\"),
            ],
            b"body",
            "/topic/esc",
        );
        roundtrip(&[h(b"k", b"v")], b"", "/user/bob/queue/x");
    }

    #[test]
    fn queue_messages_have_no_id_of_their_own() {
        let mut enc = Vec::new();
        for headers in [&[][..], &[h(b"x-colon", b"a:b")][..]] {
            let sent = encode_shared(&send(headers, b"job"), "/queue/jobs", None, &mut enc);
            let subj = crate::router::subject::subject("sbx", "/queue/jobs").expect("subject");
            let got = decode("sbx", &subj, &sent.shared, &mut enc).expect("decodes");
            assert_eq!(&*got.destination, "/queue/jobs");
            assert!(got.id.as_bytes().is_empty());
            for v in [Version::V1_0, Version::V1_1, Version::V1_2] {
                assert_eq!(got.shared_for(v), sent.shared_for(v), "{v:?}");
            }
        }
        // A topic message still needs one.
        let sent = encode_shared(&send(&[], b"x"), "/topic/a", None, &mut enc);
        assert!(decode("sbx", "sbx.t.a", &sent.shared, &mut enc).is_err());
    }

    #[test]
    fn garbage_is_refused_not_a_panic() {
        let mut s = Vec::new();
        for p in [
            &b""[..],
            b"\0",
            b"destination:/topic/a\n\n\0",
            b"destination:/topic/a\nmessage-id:m\\x\n\nbody\0",
            b"message-id:m1-1\n\nbody",
            b"message-id:m1-1\ncontent-length:99\\c\n\nbody\0",
        ] {
            assert!(decode("sbx", "sbx.t.a", p, &mut s).is_err(), "{p:?}");
        }
        assert_eq!(
            decode("sbx", "sbx.t.a.>", b"message-id:m1-1\n\n\0", &mut s).err(),
            Some(Invalid::Subject)
        );
    }
}
