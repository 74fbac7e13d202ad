//! permessage-deflate (RFC 7692), sans-IO: what a client's `Sec-WebSocket-Extensions` offers,
//! which offer the server takes and the response header; inflating a client's message within a
//! size limit ([`Inflater`]); and the server's compressed messages ([`Deflater`]).
//!
//! The server never keeps compressor state between messages, whatever was agreed: every
//! message it compresses is made of a stored block holding the per-subscriber head and a
//! *segment*, the shared rest deflated by a fresh compressor and sync-flushed, which refers to
//! nothing before itself. So the segment of a topic message is made once and sent to every
//! compressing subscriber (see `server::slots`), and an idle session holds no compressor.
//!
//! The rules it follows (RFC 7692 §5 and §7.1):
//! - Offers are tried in the client's order; the first acceptable one is taken. An offer with an
//!   unknown or repeated parameter, or a parameter value out of range, is declined (the next
//!   one is tried); a header that does not parse at all fails the handshake.
//! - `server_no_context_takeover` offered: the response carries it. The server may add it even
//!   when not offered (when configured not to keep context).
//! - `server_max_window_bits=N` offered: the server compresses with at most N bits and says
//!   which. Not offered: it may still announce a smaller window. N = 8 is declined: zlib cannot
//!   make an 8-bit-window stream (it silently uses 9).
//! - `client_max_window_bits` offered (with or without a value): the server may tell the
//!   client a window; not offered: the server must not, and inflates with 15 bits.
//! - `client_no_context_takeover`: the server may ask for it whether offered or not.

/// What the server is willing to do (its side of the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateConfig {
    /// The largest window the server compresses with (9-15).
    pub server_max_window_bits: u8,
    /// The largest window the server asks clients to compress with (8-15), when they allow it.
    pub client_max_window_bits: u8,
    /// Compress each message on its own (no compressor state kept between messages).
    pub server_no_context_takeover: bool,
    /// Ask clients to compress each message on their own (no inflater state kept).
    pub client_no_context_takeover: bool,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            server_no_context_takeover: true,
            // No session holds an inflater's window between messages.
            client_no_context_takeover: true,
        }
    }
}

/// The parameters both sides use after the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreed {
    /// The window the server compresses with.
    pub server_max_window_bits: u8,
    /// The window the client may use (the server inflates with at least this, never below 9).
    pub client_max_window_bits: u8,
    pub server_no_context_takeover: bool,
    pub client_no_context_takeover: bool,
    /// Whether the response names `server_max_window_bits` / `client_max_window_bits`.
    announce_server_bits: bool,
    announce_client_bits: bool,
}

impl Agreed {
    /// The `Sec-WebSocket-Extensions` value of the response.
    pub fn response(&self) -> String {
        let mut s = String::from("permessage-deflate");
        if self.server_no_context_takeover {
            s.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            s.push_str("; client_no_context_takeover");
        }
        if self.announce_server_bits {
            s.push_str(&format!(
                "; server_max_window_bits={}",
                self.server_max_window_bits
            ));
        }
        if self.announce_client_bits {
            s.push_str(&format!(
                "; client_max_window_bits={}",
                self.client_max_window_bits
            ));
        }
        s
    }
}

/// The extension header does not parse: the handshake fails (400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// One parameter of an offer: its name and value (if any), unquoted.
type Param<'a> = (&'a str, Option<String>);

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

fn token(s: &str) -> Result<&str, Malformed> {
    let t = s.trim_matches([' ', '\t']);
    if t.is_empty() || !t.chars().all(is_tchar) {
        return Err(Malformed("an extension name or parameter is not a token"));
    }
    Ok(t)
}

/// A parameter value: a token or a quoted-string (RFC 7230 §3.2.6), unquoted.
fn value(s: &str) -> Result<String, Malformed> {
    let v = s.trim_matches([' ', '\t']);
    match v.strip_prefix('"') {
        Some(rest) => {
            let inner = rest
                .strip_suffix('"')
                .ok_or(Malformed("an unterminated quoted parameter value"))?;
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => out.push(chars.next().ok_or(Malformed("a dangling escape"))?),
                    '"' => return Err(Malformed("a quote inside a quoted value")),
                    c => out.push(c),
                }
            }
            Ok(out)
        }
        None => token(v).map(str::to_string),
    }
}

/// Split on `sep` outside quoted strings.
fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            out.push(s.get(start..i).unwrap_or_default());
            start = i + c.len_utf8();
        }
    }
    out.push(s.get(start..).unwrap_or_default());
    out
}

/// Every extension offered, in order: (name, parameters).
pub fn parse_offers<'a>(headers: &[&'a str]) -> Result<Vec<(&'a str, Vec<Param<'a>>)>, Malformed> {
    let mut offers = Vec::new();
    for h in headers {
        for ext in split_outside_quotes(h, ',') {
            if ext.trim().is_empty() {
                // `#rule` lists may have empty elements (RFC 7230 §7).
                continue;
            }
            let mut parts = split_outside_quotes(ext, ';').into_iter();
            let name = token(parts.next().unwrap_or_default())?;
            let mut params = Vec::new();
            for p in parts {
                let (k, v) = match p.split_once('=') {
                    Some((k, v)) => (token(k)?, Some(value(v)?)),
                    None => (token(p)?, None),
                };
                params.push((k, v));
            }
            offers.push((name, params));
        }
    }
    Ok(offers)
}

/// Window bits from a parameter value: `8..=15` written as plain digits.
fn bits(v: &str) -> Option<u8> {
    if v.is_empty() || v.len() > 2 || !v.bytes().all(|b| b.is_ascii_digit()) || v.starts_with('0') {
        return None;
    }
    v.parse().ok().filter(|b| (8..=15).contains(b))
}

/// The server's answer to one permessage-deflate offer, or `None` to decline it.
fn accept(params: &[Param<'_>], cfg: &DeflateConfig) -> Option<Agreed> {
    let mut seen: Vec<&str> = Vec::new();
    let (mut server_nct, mut client_nct) = (false, false);
    let mut server_bits: Option<u8> = None;
    let mut client_bits: Option<Option<u8>> = None;
    for (k, v) in params {
        if seen.contains(k) {
            return None;
        }
        seen.push(k);
        match (*k, v.as_deref()) {
            ("server_no_context_takeover", None) => server_nct = true,
            ("client_no_context_takeover", None) => client_nct = true,
            ("server_max_window_bits", Some(v)) => server_bits = Some(bits(v)?),
            ("client_max_window_bits", None) => client_bits = Some(None),
            ("client_max_window_bits", Some(v)) => client_bits = Some(Some(bits(v)?)),
            _ => return None,
        }
    }
    let server_cfg = cfg.server_max_window_bits.clamp(9, 15);
    let (server_max_window_bits, announce_server_bits) = match server_bits {
        Some(8) => return None,
        Some(n) => (n.min(server_cfg), true),
        None => (server_cfg, server_cfg < 15),
    };
    let client_cfg = cfg.client_max_window_bits.clamp(8, 15);
    let (client_max_window_bits, announce_client_bits) = match client_bits {
        // Not offered: the client may use 15 bits and must not be told otherwise.
        None => (15, false),
        Some(None) => (client_cfg, client_cfg < 15),
        Some(Some(n)) => (n.min(client_cfg), true),
    };
    Some(Agreed {
        server_max_window_bits,
        client_max_window_bits,
        server_no_context_takeover: server_nct || cfg.server_no_context_takeover,
        client_no_context_takeover: client_nct || cfg.client_no_context_takeover,
        announce_server_bits,
        announce_client_bits,
    })
}

/// The first acceptable permessage-deflate offer in `headers` (every `Sec-WebSocket-Extensions`
/// value of the request), or `None` if there is none.
pub fn negotiate(headers: &[&str], cfg: &DeflateConfig) -> Result<Option<Agreed>, Malformed> {
    Ok(parse_offers(headers)?
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("permessage-deflate"))
        .find_map(|(_, params)| accept(params, cfg)))
}

// ---------------------------------------------------------------------------------------------
// The codec
// ---------------------------------------------------------------------------------------------

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::WsError;

/// RFC 7692 §7.2.1: what a sync flush ends with, removed from a message on the wire and put back
/// before inflating (§7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Inflates the compressed messages of one client (or, without context takeover, of any client
/// in turn: it forgets each message once done).
pub struct Inflater {
    z: Decompress,
    /// Keep the window from one message to the next (`client_no_context_takeover` not agreed).
    keep: bool,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("keep", &self.keep)
            .finish()
    }
}

impl Inflater {
    /// An inflater with a 32 KiB window (enough for any window the client may use).
    pub fn new(keep_context: bool) -> Self {
        Inflater::with_window(keep_context, 15)
    }

    /// An inflater with a window of `bits` (9-15, clamped): enough for a client that agreed to
    /// `client_max_window_bits` of at most `bits` (an 8-bit window fits a 9-bit one). A kept
    /// context's memory is mostly this window.
    pub fn with_window(keep_context: bool, bits: u8) -> Self {
        Inflater {
            z: Decompress::new_with_window_bits(false, bits.clamp(9, 15)),
            keep: keep_context,
        }
    }

    /// Inflate one message's payload (RSV1 set, fragments joined) onto `out`, which must not
    /// grow past `limit` bytes: past it, [`WsError::MessageTooBig`] after at most `limit + 1`
    /// bytes of output, whatever the input claims. `out`'s capacity grows geometrically but
    /// never past `limit + 1`.
    pub fn inflate(
        &mut self,
        payload: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), WsError> {
        let r = self.run(payload, out, limit).and_then(|ended| {
            if ended {
                Ok(true)
            } else {
                self.run(&TAIL, out, limit)
            }
        });
        match r {
            // A final block (BFINAL) ended the stream: the next message starts a new one.
            Ok(true) => self.z.reset(false),
            Ok(false) if self.keep => {}
            _ => self.z.reset(false),
        }
        r.map(|_| ())
    }

    /// Feed `input`; `true` if the DEFLATE stream ended (a block with BFINAL).
    fn run(&mut self, mut input: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<bool, WsError> {
        loop {
            if out.len() == out.capacity() {
                if out.len() > limit {
                    return Err(WsError::MessageTooBig);
                }
                let want = out
                    .capacity()
                    .max(2048)
                    .saturating_mul(2)
                    .min(limit.saturating_add(1));
                out.reserve_exact(want.saturating_sub(out.len()).max(1));
            }
            let (in0, out0) = (self.z.total_in(), self.z.total_out());
            let status = self
                .z
                .decompress_vec(input, out, FlushDecompress::Sync)
                .map_err(|_| WsError::InvalidCompressed)?;
            let used = (self.z.total_in() - in0) as usize;
            let produced = self.z.total_out() - out0;
            input = input.get(used..).unwrap_or_default();
            if out.len() > limit {
                return Err(WsError::MessageTooBig);
            }
            match status {
                Status::StreamEnd => return Ok(true),
                _ if input.is_empty() && out.len() < out.capacity() => return Ok(false),
                _ if used == 0 && produced == 0 && out.len() < out.capacity() => {
                    return Err(WsError::InvalidCompressed)
                }
                _ => {}
            }
        }
    }
}

/// Makes the server's compressed messages: a raw-DEFLATE *segment* of given bytes, from a
/// fresh compressor, sync-flushed, with the flush's `00 00 ff ff` removed (RFC 7692 §7.2.1).
/// A segment refers to nothing before it, so it can follow any per-subscriber head (see
/// [`stored_header`]) in any session, whatever context takeover was agreed.
pub struct Deflater {
    z: Compress,
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater").finish_non_exhaustive()
    }
}

impl Deflater {
    /// `level` 0-9 (clamped); `window_bits` 9-15 (clamped), at most the agreed
    /// `server_max_window_bits`.
    pub fn new(level: u32, window_bits: u8) -> Self {
        Deflater {
            z: Compress::new_with_window_bits(
                Compression::new(level.min(9)),
                false,
                window_bits.clamp(9, 15),
            ),
        }
    }

    /// Append the segment of `data` to `out`. `false` (with `out` as it was) if the compressor
    /// failed, which it should not: the caller then sends the message uncompressed.
    pub fn segment(&mut self, data: &[u8], out: &mut Vec<u8>) -> bool {
        let start = out.len();
        self.z.reset();
        let mut input = data;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(input.len() / 2 + 64);
            }
            let in0 = self.z.total_in();
            if self
                .z
                .compress_vec(input, out, FlushCompress::Sync)
                .is_err()
            {
                out.truncate(start);
                return false;
            }
            input = input
                .get((self.z.total_in() - in0) as usize..)
                .unwrap_or_default();
            // Done when all input is in and the flush fitted with room to spare.
            if input.is_empty() && out.capacity() - out.len() >= 64 {
                break;
            }
        }
        if out.len() < start + TAIL.len() || !out.ends_with(&TAIL) {
            out.truncate(start);
            return false;
        }
        out.truncate(out.len() - TAIL.len());
        true
    }
}

/// The header of a non-final stored DEFLATE block of `len` bytes (RFC 1951 §3.2.4): BFINAL 0,
/// BTYPE 00 and padding in one byte, then LEN and NLEN. The block's bytes follow it as they are.
pub fn stored_header(len: u16) -> [u8; 5] {
    let [lo, hi] = len.to_le_bytes();
    [0, lo, hi, !lo, !hi]
}

/// One whole compressed message: `head` in stored blocks, then the segment of `body`. Used for
/// the echo endpoint's replies and in tests; topic deliveries build the same bytes from a
/// shared segment.
pub fn compress_message(d: &mut Deflater, head: &[u8], body: &[u8], out: &mut Vec<u8>) -> bool {
    let start = out.len();
    for chunk in head.chunks(u16::MAX as usize) {
        out.extend_from_slice(&stored_header(chunk.len() as u16));
        out.extend_from_slice(chunk);
    }
    if d.segment(body, out) {
        true
    } else {
        out.truncate(start);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::WsError;
    use proptest::prelude::*;

    proptest! {
        /// Whatever a client sends, an answer or a refusal, never a panic; an answer's header
        /// offers itself back acceptably (the response is a valid offer for the same server).
        #[test]
        fn any_header_gets_an_answer_or_a_refusal(h in prop_oneof![
            "[ -~]{0,80}",
            prop::collection::vec(
                (
                    prop_oneof![Just("permessage-deflate"), Just("x-foo"), Just("permessage-deflate ")],
                    prop::collection::vec(
                        prop_oneof![
                            Just("server_no_context_takeover".to_string()),
                            Just("client_no_context_takeover".to_string()),
                            Just("client_max_window_bits".to_string()),
                            (7u8..17).prop_map(|b| format!("client_max_window_bits={b}")),
                            (7u8..17).prop_map(|b| format!("server_max_window_bits=\"{b}\"")),
                            "[a-z=;\" ]{0,6}",
                        ],
                        0..4,
                    ),
                ),
                1..3,
            )
            .prop_map(|offers| offers
                .iter()
                .map(|(n, ps)| std::iter::once(n.to_string()).chain(ps.iter().cloned()).collect::<Vec<_>>().join("; "))
                .collect::<Vec<_>>()
                .join(", ")),
        ]) {
            if let Ok(Some(a)) = negotiate(&[&h], &DeflateConfig::default()) {
                let again = negotiate(&[&a.response()], &DeflateConfig::default());
                prop_assert!(matches!(again, Ok(Some(_))), "{} -> {}", h, a.response());
            }
        }
    }

    fn inflate_all(msgs: &[Vec<u8>], keep: bool) -> Vec<Vec<u8>> {
        let mut inf = Inflater::new(keep);
        msgs.iter()
            .map(|m| {
                let mut out = Vec::new();
                inf.inflate(m, &mut out, 1 << 20).unwrap();
                out
            })
            .collect()
    }

    /// What a client's zlib would do: one compressor over the whole session (context takeover),
    /// each message sync-flushed and its tail removed.
    fn client_messages(texts: &[&[u8]], bits: u8) -> Vec<Vec<u8>> {
        let mut z = Compress::new_with_window_bits(Compression::default(), false, bits);
        texts
            .iter()
            .map(|t| {
                if t.is_empty() {
                    // §7.2.3.6: an empty message as one empty stored block's first byte (zlib
                    // emits nothing for an empty sync flush right after another).
                    return vec![0x00];
                }
                let mut out = Vec::with_capacity(t.len() + 128);
                z.compress_vec(t, &mut out, FlushCompress::Sync).unwrap();
                assert!(out.ends_with(&TAIL));
                out.truncate(out.len() - 4);
                out
            })
            .collect()
    }

    #[test]
    fn inflates_with_and_without_context_takeover() {
        let texts: [&[u8]; 3] = [b"Hello Hello Hello", b"Hello Hello Hello again", b""];
        // Context kept by the client: the second message refers back into the first.
        let msgs = client_messages(&texts, 15);
        assert_eq!(inflate_all(&msgs, true), texts.map(|t| t.to_vec()));
        // RFC 7692 §7.2.3.1's example bytes: "Hello" and the same again, context kept.
        let rfc = [
            vec![0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
            vec![0xf2, 0x00, 0x11, 0x00, 0x00],
        ];
        assert_eq!(
            inflate_all(&rfc, true),
            [b"Hello".to_vec(), b"Hello".to_vec()]
        );
        // An inflater that forgets between messages fails on a back reference into the last.
        let mut inf = Inflater::new(false);
        let mut out = Vec::new();
        inf.inflate(&rfc[0], &mut out, 100).unwrap();
        out.clear();
        assert_eq!(
            inf.inflate(&rfc[1], &mut out, 100),
            Err(WsError::InvalidCompressed)
        );
        // ... and is usable again after the failure.
        out.clear();
        inf.inflate(&rfc[0], &mut out, 100).unwrap();
        assert_eq!(out, b"Hello");
        // A stored block (§7.2.3.3's example) and one with BFINAL set (§7.2.3.4).
        let mut out = Vec::new();
        Inflater::new(true)
            .inflate(
                &[
                    0x00, 0x05, 0x00, 0xfa, 0xff, b'H', b'e', b'l', b'l', b'o', 0x00,
                ],
                &mut out,
                100,
            )
            .unwrap();
        assert_eq!(out, b"Hello");
        let mut out = Vec::new();
        Inflater::new(true)
            .inflate(
                &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00],
                &mut out,
                100,
            )
            .unwrap();
        assert_eq!(out, b"Hello");
        // Garbage.
        let mut out = Vec::new();
        assert_eq!(
            Inflater::new(true).inflate(&[0xff; 16], &mut out, 100),
            Err(WsError::InvalidCompressed)
        );
    }

    #[test]
    fn a_bomb_is_refused_after_the_limits_worth_of_output() {
        // 16 MiB of zeros compress to ~16 KiB; the limit is 1 MiB.
        let zeros = vec![0u8; 16 << 20];
        let bomb = client_messages(&[&zeros], 15).remove(0);
        assert!(bomb.len() < 32 * 1024, "{}", bomb.len());
        let mut out = Vec::new();
        let mut inf = Inflater::new(true);
        assert_eq!(
            inf.inflate(&bomb, &mut out, 1 << 20),
            Err(WsError::MessageTooBig)
        );
        assert!(out.capacity() <= (1 << 20) + 1, "{}", out.capacity());
        assert!(inf.z.total_out() <= (1 << 20) + 1);
        // Exactly at the limit is fine.
        let exact = client_messages(&[&zeros[..1 << 20]], 15).remove(0);
        let mut out = Vec::new();
        Inflater::new(true)
            .inflate(&exact, &mut out, 1 << 20)
            .unwrap();
        assert_eq!(out.len(), 1 << 20);
    }

    #[test]
    fn a_head_and_a_shared_segment_make_one_valid_message_in_any_session() {
        let body = br#"{"user":"ann","text":"hello hello hello, the same words again and again"}"#;
        let mut seg = Vec::new();
        assert!(Deflater::new(6, 15).segment(body, &mut seg));
        assert!(seg.len() < body.len());
        let heads: [&[u8]; 3] = [b"MESSAGE\nsubscription:1\n", b"", &[b'x'; 70_000]];
        for keep in [true, false] {
            // The same segment after different heads, in one session whose inflater keeps
            // its window: each message inflates to its head and the body.
            let mut inf = Inflater::new(keep);
            for (i, head) in heads.iter().enumerate() {
                let mut msg = Vec::new();
                for c in head.chunks(u16::MAX as usize) {
                    msg.extend_from_slice(&stored_header(c.len() as u16));
                    msg.extend_from_slice(c);
                }
                msg.extend_from_slice(&seg);
                let mut out = Vec::new();
                inf.inflate(&msg, &mut out, 1 << 20).unwrap();
                assert_eq!(&out[..head.len()], *head, "{i}");
                assert_eq!(&out[head.len()..], body, "{i}");
            }
        }
        // compress_message builds the same, and small windows work too, inflated with a
        // window as small.
        for bits in 9..=15 {
            let mut msg = Vec::new();
            assert!(compress_message(
                &mut Deflater::new(9, bits),
                b"head\n",
                body,
                &mut msg
            ));
            let mut out = Vec::new();
            Inflater::with_window(true, bits)
                .inflate(&msg, &mut out, 1 << 20)
                .unwrap();
            assert_eq!(out, [&b"head\n"[..], body].concat());
        }
    }

    proptest! {
        /// Any bytes to inflate: an answer within the limit or an error, never a panic or
        /// more than the limit; any data deflated and inflated is itself.
        #[test]
        fn any_payload_inflates_within_the_limit_or_fails(
            junk in prop::collection::vec(any::<u8>(), 0..600),
            data in prop::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), any::<u8>()], 0..4000),
            head in prop::collection::vec(any::<u8>(), 0..50),
            limit in 0usize..5000,
        ) {
            let mut out = Vec::new();
            if Inflater::new(true).inflate(&junk, &mut out, limit).is_ok() {
                prop_assert!(out.len() <= limit);
            }
            let mut msg = Vec::new();
            prop_assert!(compress_message(&mut Deflater::new(1, 15), &head, &data, &mut msg));
            let mut out = Vec::new();
            let r = Inflater::new(false).inflate(&msg, &mut out, limit);
            if head.len() + data.len() <= limit {
                prop_assert_eq!(r, Ok(()));
                prop_assert_eq!(out, [head, data].concat());
            } else {
                prop_assert_eq!(r, Err(WsError::MessageTooBig));
            }
        }
    }

    fn answer(h: &str, cfg: DeflateConfig) -> Option<String> {
        negotiate(&[h], &cfg).expect("parses").map(|a| a.response())
    }

    fn keep_context() -> DeflateConfig {
        DeflateConfig {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            ..DeflateConfig::default()
        }
    }

    #[test]
    fn rfc_7692_examples() {
        // §7.1.1.1-style offers and what a server with default windows answers.
        assert_eq!(
            answer("permessage-deflate", keep_context()).as_deref(),
            Some("permessage-deflate")
        );
        assert_eq!(
            answer("permessage-deflate; client_max_window_bits", keep_context()).as_deref(),
            Some("permessage-deflate")
        );
        assert_eq!(
            answer(
                "permessage-deflate; client_max_window_bits=10; server_max_window_bits=12",
                keep_context()
            )
            .as_deref(),
            Some("permessage-deflate; server_max_window_bits=12; client_max_window_bits=10")
        );
        assert_eq!(
            answer(
                "permessage-deflate; server_no_context_takeover",
                keep_context()
            )
            .as_deref(),
            Some("permessage-deflate; server_no_context_takeover")
        );
        // §5.2: the first acceptable offer wins; an unacceptable one is skipped.
        assert_eq!(
            answer(
                "permessage-deflate; server_max_window_bits=8, permessage-deflate; client_no_context_takeover",
                keep_context()
            )
            .as_deref(),
            Some("permessage-deflate; client_no_context_takeover")
        );
    }

    #[test]
    fn the_servers_own_limits_are_announced_only_where_allowed() {
        let cfg = DeflateConfig {
            server_max_window_bits: 10,
            client_max_window_bits: 11,
            server_no_context_takeover: true,
            client_no_context_takeover: true,
        };
        // The client did not offer client_max_window_bits: the server must not name it.
        assert_eq!(
            answer("permessage-deflate", cfg).as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10")
        );
        let a = negotiate(&["permessage-deflate"], &cfg).unwrap().unwrap();
        assert_eq!(a.client_max_window_bits, 15);
        // Offered without a value: the server picks; with a larger value: the server's bound.
        assert!(answer("permessage-deflate; client_max_window_bits", cfg)
            .unwrap()
            .ends_with("client_max_window_bits=11"));
        assert!(answer("permessage-deflate; client_max_window_bits=15", cfg)
            .unwrap()
            .ends_with("client_max_window_bits=11"));
        assert!(answer("permessage-deflate; client_max_window_bits=9", cfg)
            .unwrap()
            .ends_with("client_max_window_bits=9"));
    }

    #[test]
    fn bad_offers_are_declined_and_bad_headers_refused() {
        let cfg = DeflateConfig::default();
        for declined in [
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=abc",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; unknown",
            "x-webkit-deflate-frame",
        ] {
            assert_eq!(answer(declined, cfg), None, "{declined}");
        }
        // Quoted values are values (RFC 7692 §7.1 allows a quoted-string).
        assert!(answer(r#"permessage-deflate; client_max_window_bits="10""#, cfg).is_some());
        for malformed in [
            "permessage-deflate; ;",
            "permessage-deflate; a=\"unterminated",
            "permessage deflate",
            "permessage-deflate; =10",
            "perm@ssage",
        ] {
            assert!(negotiate(&[malformed], &cfg).is_err(), "{malformed}");
        }
        // Several header lines are one list; empty list elements are fine.
        let a = negotiate(&["foo, ,", "permessage-deflate"], &cfg).unwrap();
        assert!(a.is_some());
    }
}
