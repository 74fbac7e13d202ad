//! Frames to messages: masking rules, fragmentation, interleaved control frames, UTF-8 and size
//! limits. Sans-IO: the caller owns the input buffer; this owns only the buffer that reassembles
//! a fragmented message.
//!
//! A message that arrives whole in one frame is unmasked in place and handed out as a slice of
//! the caller's buffer: no copy and no allocation. Only fragmented messages, or a frame whose
//! payload has not fully arrived, are streamed into the reassembly buffer, so the caller's read
//! buffer never has to hold more than one small frame.

use super::frame::{parse_header, FrameHeader, Opcode};
use super::mask::apply_mask;
use super::utf8::Utf8Validator;
use super::{is_valid_wire_code, WsError};

/// Which side of the connection we are: a server requires masked frames, a client unmasked ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}

/// Limits, checked when a frame header is parsed, before any memory is reserved.
#[derive(Debug, Clone, Copy)]
pub struct DecoderConfig {
    pub role: Role,
    /// Largest payload of a single frame.
    pub max_frame_size: u64,
    /// Largest message, summed over its fragments.
    pub max_message_size: u64,
    /// A single-frame message up to this size waits in the caller's buffer until it is whole
    /// (zero copy, no allocation); larger ones are streamed into the reassembly buffer. Must
    /// not exceed what the caller's buffer holds, less a frame header.
    pub max_inline: u64,
    /// permessage-deflate was negotiated: the first frame of a data message may set RSV1, and
    /// such a message comes out as [`Event::Compressed`] (UTF-8 is checked after inflating).
    pub deflate: bool,
}

impl DecoderConfig {
    pub fn server(max_frame_size: u64, max_message_size: u64) -> Self {
        DecoderConfig {
            role: Role::Server,
            max_frame_size,
            max_message_size,
            max_inline: DEFAULT_INLINE,
            deflate: false,
        }
    }

    pub fn client(max_frame_size: u64, max_message_size: u64) -> Self {
        DecoderConfig {
            role: Role::Client,
            ..DecoderConfig::server(max_frame_size, max_message_size)
        }
    }
}

/// Fits a 16 KiB read buffer with the largest frame header.
pub const DEFAULT_INLINE: u64 = 16 * 1024 - super::frame::MAX_HEADER_LEN as u64;

/// What one call to [`Decoder::decode`] produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A complete text (validated UTF-8) or binary message.
    Message {
        text: bool,
        payload: &'a [u8],
    },
    Ping(&'a [u8]),
    Pong(&'a [u8]),
    /// A Close frame: its status code and reason, both already validated.
    Close(Option<(u16, &'a str)>),
    /// A compressed message (RSV1, with permessage-deflate): the raw DEFLATE payload, to be
    /// inflated (and, for text, checked as UTF-8) by the caller; see [`super::deflate::Inflater`].
    Compressed {
        text: bool,
        payload: &'a [u8],
    },
}

#[derive(Debug, Clone, Copy)]
struct Streaming {
    remaining: u64,
    mask: Option<[u8; 4]>,
    offset: usize,
    fin: bool,
}

#[derive(Debug)]
pub struct Decoder {
    cfg: DecoderConfig,
    /// A data frame whose payload is being copied into `assembly`.
    streaming: Option<Streaming>,
    /// A message in progress (text or not) once its first frame has been seen.
    message: Option<bool>,
    /// The message in progress is compressed (its first frame set RSV1).
    compressed: bool,
    assembly: Vec<u8>,
    utf8: Utf8Validator,
    assembly_done: bool,
    /// Payload bytes already unmasked (and, for text, fed to `utf8`) of a single-frame message
    /// that is still arriving at the start of the caller's buffer; 0 when none.
    in_place: usize,
}

impl Decoder {
    pub fn new(cfg: DecoderConfig) -> Self {
        Decoder {
            cfg,
            streaming: None,
            message: None,
            compressed: false,
            assembly: Vec::new(),
            utf8: Utf8Validator::new(),
            assembly_done: false,
            in_place: 0,
        }
    }

    /// Bytes held for a message in progress (for memory accounting).
    pub fn buffered(&self) -> usize {
        self.assembly.capacity()
    }

    /// Decode from the start of `input`. Returns how many bytes were consumed and possibly an
    /// event. `(0, None)` means more input is needed. Call again with the rest of the input while
    /// anything is consumed. Masked payloads are unmasked in place in `input`.
    pub fn decode<'a>(
        &'a mut self,
        input: &'a mut [u8],
    ) -> Result<(usize, Option<Event<'a>>), WsError> {
        if self.assembly_done {
            self.assembly_done = false;
            // An idle connection holds no buffer: fragmented messages are rare enough that
            // giving the memory back beats keeping it.
            self.assembly = Vec::new();
        }
        if let Some(s) = self.streaming.as_mut() {
            let n = s.remaining.min(input.len() as u64) as usize;
            let chunk = input.get_mut(..n).unwrap_or_default();
            if let Some(m) = s.mask {
                apply_mask(chunk, m, s.offset);
            }
            if self.message == Some(true) && !self.compressed {
                self.utf8.feed(chunk).map_err(|_| WsError::InvalidUtf8)?;
            }
            self.assembly.extend_from_slice(chunk);
            s.remaining -= n as u64;
            s.offset += n;
            if s.remaining > 0 {
                return Ok((n, None));
            }
            let fin = s.fin;
            self.streaming = None;
            if !fin {
                return Ok((n, None));
            }
            return self.complete(n);
        }

        let Some(h) = parse_header(input)? else {
            return Ok((0, None));
        };
        // RFC 7692 §6: RSV1 marks the first frame of a compressed message, nothing else.
        if h.rsv1
            && (!self.cfg.deflate || h.opcode.is_control() || h.opcode == Opcode::Continuation)
        {
            return Err(WsError::ReservedBits);
        }
        match (self.cfg.role, h.mask.is_some()) {
            (Role::Server, false) => return Err(WsError::UnmaskedFrame),
            (Role::Client, true) => return Err(WsError::MaskedFrame),
            _ => {}
        }
        if h.opcode.is_control() {
            return control(h, input);
        }
        match (h.opcode, self.message) {
            (Opcode::Continuation, None) => return Err(WsError::UnexpectedContinuation),
            (Opcode::Text | Opcode::Binary, Some(_)) => return Err(WsError::ExpectedContinuation),
            _ => {}
        }
        if h.payload_len > self.cfg.max_frame_size {
            return Err(WsError::FrameTooBig);
        }
        // A compressed message is held to the limit once inflated; its compressed form may be a
        // little larger than the limit (DEFLATE's stored blocks add 5 bytes in 65,535).
        let compressed = if h.opcode == Opcode::Continuation {
            self.compressed
        } else {
            h.rsv1
        };
        let max_raw = if compressed {
            let m = self.cfg.max_message_size;
            m.saturating_add(m / 8192 + 64)
        } else {
            self.cfg.max_message_size
        };
        if (self.assembly.len() as u64).saturating_add(h.payload_len) > max_raw {
            return Err(WsError::MessageTooBig);
        }
        let text = h.opcode == Opcode::Text;
        let total = h.header_len as u64 + h.payload_len;
        if h.opcode != Opcode::Continuation && h.fin && h.payload_len <= self.cfg.max_inline {
            // The common case: a whole message in one frame, parsed where it lies in the
            // caller's buffer. If it has not all arrived, unmask and validate what has (so
            // invalid UTF-8 fails fast) and wait for the rest without consuming anything.
            let avail = (input.len() - h.header_len).min(h.payload_len as usize);
            let start = h.header_len;
            let payload = input.get_mut(start..start + avail).unwrap_or_default();
            // No fragmented message is open here, so `utf8` is free to track this frame.
            let done = std::mem::take(&mut self.in_place);
            if done == 0 {
                self.utf8.reset();
            }
            if let Some(m) = h.mask {
                apply_mask(payload.get_mut(done..).unwrap_or_default(), m, done);
            }
            let payload: &[u8] = payload;
            if compressed {
                if avail as u64 == h.payload_len {
                    return Ok((total as usize, Some(Event::Compressed { text, payload })));
                }
                self.in_place = avail;
                return Ok((0, None));
            }
            let fresh = payload.get(done..).unwrap_or_default();
            if avail as u64 == h.payload_len {
                if text {
                    let ok = if done == 0 {
                        std::str::from_utf8(payload).is_ok()
                    } else {
                        self.utf8.feed(fresh).is_ok() && self.utf8.finish().is_ok()
                    };
                    if !ok {
                        return Err(WsError::InvalidUtf8);
                    }
                }
                return Ok((total as usize, Some(Event::Message { text, payload })));
            }
            if text {
                self.utf8.feed(fresh).map_err(|_| WsError::InvalidUtf8)?;
            }
            self.in_place = avail;
            return Ok((0, None));
        }
        if h.opcode != Opcode::Continuation {
            self.message = Some(text);
            self.compressed = compressed;
            self.utf8.reset();
        }
        if h.payload_len == 0 {
            return if h.fin {
                self.complete(h.header_len)
            } else {
                Ok((h.header_len, None))
            };
        }
        self.streaming = Some(Streaming {
            remaining: h.payload_len,
            mask: h.mask,
            offset: 0,
            fin: h.fin,
        });
        Ok((h.header_len, None))
    }

    fn complete(&mut self, used: usize) -> Result<(usize, Option<Event<'_>>), WsError> {
        let text = self.message.take() == Some(true);
        self.assembly_done = true;
        if std::mem::take(&mut self.compressed) {
            return Ok((
                used,
                Some(Event::Compressed {
                    text,
                    payload: &self.assembly,
                }),
            ));
        }
        if text {
            self.utf8.finish().map_err(|_| WsError::InvalidUtf8)?;
        }
        Ok((
            used,
            Some(Event::Message {
                text,
                payload: &self.assembly,
            }),
        ))
    }
}

/// A control frame is handled only once it is complete (at most 2 + 4 + 125 bytes for a client).
fn control(h: FrameHeader, input: &mut [u8]) -> Result<(usize, Option<Event<'_>>), WsError> {
    let total = h.header_len + h.payload_len as usize;
    let Some(payload) = input.get_mut(h.header_len..total) else {
        return Ok((0, None));
    };
    if let Some(m) = h.mask {
        apply_mask(payload, m, 0);
    }
    let payload: &[u8] = payload;
    let ev = match h.opcode {
        Opcode::Ping => Event::Ping(payload),
        Opcode::Pong => Event::Pong(payload),
        _ => Event::Close(parse_close(payload)?),
    };
    Ok((total, Some(ev)))
}

/// Validate a Close payload (§5.5.1, §7.4): empty, or a valid code and a UTF-8 reason.
pub fn parse_close(payload: &[u8]) -> Result<Option<(u16, &str)>, WsError> {
    match payload {
        [] => Ok(None),
        [_] => Err(WsError::CloseOneByte),
        [a, b, reason @ ..] => {
            let code = u16::from_be_bytes([*a, *b]);
            if !is_valid_wire_code(code) {
                return Err(WsError::CloseCodeInvalid);
            }
            let reason = std::str::from_utf8(reason).map_err(|_| WsError::InvalidUtf8)?;
            Ok(Some((code, reason)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::frame::write_frame;
    use super::*;

    const MASK: Option<[u8; 4]> = Some([0x37, 0xfa, 0x21, 0x3d]);

    fn server() -> Decoder {
        Decoder::new(DecoderConfig::server(1 << 20, 1 << 20))
    }

    #[test]
    fn a_frame_arriving_in_pieces_waits_in_place_and_fails_fast() {
        let mut w = Vec::new();
        write_frame(&mut w, true, Opcode::Text, "κόσμε".as_bytes(), MASK);
        let mut d = server();
        let mut buf = w[..5].to_vec();
        assert_eq!(d.decode(&mut buf).unwrap(), (0, None));
        buf.extend_from_slice(&w[5..9]);
        assert_eq!(d.decode(&mut buf).unwrap(), (0, None));
        buf.extend_from_slice(&w[9..]);
        let (used, ev) = d.decode(&mut buf).unwrap();
        assert_eq!(used, w.len());
        assert_eq!(
            ev,
            Some(Event::Message {
                text: true,
                payload: "κόσμε".as_bytes()
            })
        );
        assert_eq!(d.buffered(), 0);
        // Invalid UTF-8 in the part that has arrived fails before the rest comes.
        let mut w = Vec::new();
        write_frame(
            &mut w,
            true,
            Opcode::Text,
            &[0xce, 0xba, 0xf4, 0x90, 0x80, 0x80, b'a'],
            MASK,
        );
        let mut d = server();
        let mut buf = w[..6 + 4].to_vec();
        assert_eq!(d.decode(&mut buf), Err(WsError::InvalidUtf8));
    }

    #[derive(Debug, PartialEq, Eq, Clone)]
    enum Owned {
        Msg(bool, Vec<u8>),
        Ping(Vec<u8>),
        Pong(Vec<u8>),
        Close(Option<(u16, String)>),
        Zip(bool, Vec<u8>),
    }

    fn own(e: Event<'_>) -> Owned {
        match e {
            Event::Message { text, payload } => Owned::Msg(text, payload.to_vec()),
            Event::Ping(p) => Owned::Ping(p.to_vec()),
            Event::Pong(p) => Owned::Pong(p.to_vec()),
            Event::Close(c) => Owned::Close(c.map(|(c, r)| (c, r.to_string()))),
            Event::Compressed { text, payload } => Owned::Zip(text, payload.to_vec()),
        }
    }

    /// Feed `wire` to a decoder in pieces cut at `cuts`, the way a socket delivers it: unconsumed
    /// bytes stay at the front of the buffer and new bytes are appended.
    fn run(dec: &mut Decoder, wire: &[u8], cuts: &[usize]) -> Result<Vec<Owned>, WsError> {
        let mut out = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        let mut prev = 0;
        for &c in cuts.iter().chain(std::iter::once(&wire.len())) {
            buf.extend_from_slice(&wire[prev..c]);
            prev = c;
            loop {
                let (used, ev) = dec.decode(&mut buf)?;
                let ev = ev.map(own);
                buf.drain(..used);
                if let Some(e) = ev {
                    out.push(e);
                } else if used == 0 {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// A frame with RSV1 set.
    fn rsv1_frame(fin: bool, op: Opcode, payload: &[u8]) -> Vec<u8> {
        let mut w = Vec::new();
        write_frame(&mut w, fin, op, payload, MASK);
        w[0] |= 0x40;
        w
    }

    #[test]
    fn rsv1_marks_a_compressed_message_only_when_deflate_was_agreed() {
        let deflating = || {
            Decoder::new(DecoderConfig {
                deflate: true,
                max_inline: 64,
                ..DecoderConfig::server(1 << 20, 1 << 20)
            })
        };
        // RFC 7692 §7.2.3.1 "Hello", whole; and the same bytes in fragments, the first
        // with RSV1, split at every byte. Not UTF-8: not checked before inflating.
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        let w = rsv1_frame(true, Opcode::Text, &hello);
        assert_eq!(
            run(&mut deflating(), &w, &[]).unwrap(),
            [Owned::Zip(true, hello.to_vec())]
        );
        let mut w = rsv1_frame(false, Opcode::Binary, &hello[..3]);
        write_frame(&mut w, true, Opcode::Ping, b"p", MASK);
        write_frame(&mut w, true, Opcode::Continuation, &hello[3..], MASK);
        let cuts: Vec<usize> = (1..w.len()).collect();
        assert_eq!(
            run(&mut deflating(), &w, &cuts).unwrap(),
            [
                Owned::Ping(b"p".to_vec()),
                Owned::Zip(false, hello.to_vec())
            ]
        );
        // A large one streams into the assembly buffer.
        let big = vec![0xffu8; 1000];
        let w = rsv1_frame(true, Opcode::Text, &big);
        assert_eq!(
            run(&mut deflating(), &w, &[3, 500]).unwrap(),
            [Owned::Zip(true, big.clone())]
        );
        // An uncompressed message after it is checked as UTF-8 as usual.
        let mut w = Vec::new();
        write_frame(&mut w, true, Opcode::Text, &[0xff], MASK);
        assert_eq!(run(&mut deflating(), &w, &[]), Err(WsError::InvalidUtf8));
        // RSV1: without deflate, on a continuation, on a control frame: refused.
        let w = rsv1_frame(true, Opcode::Text, &hello);
        assert_eq!(run(&mut server(), &w, &[]), Err(WsError::ReservedBits));
        let mut w = Vec::new();
        write_frame(&mut w, false, Opcode::Text, b"a", MASK);
        w.extend(rsv1_frame(true, Opcode::Continuation, b"b"));
        assert_eq!(run(&mut deflating(), &w, &[]), Err(WsError::ReservedBits));
        let w = rsv1_frame(true, Opcode::Ping, b"");
        assert_eq!(run(&mut deflating(), &w, &[]), Err(WsError::ReservedBits));
        // RSV2 and RSV3 are never allowed.
        let mut w = Vec::new();
        write_frame(&mut w, true, Opcode::Text, b"a", MASK);
        w[0] |= 0x20;
        assert_eq!(run(&mut deflating(), &w, &[]), Err(WsError::ReservedBits));
    }

    #[test]
    fn rfc_5_7_masked_hello() {
        let mut wire = vec![
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let mut d = server();
        let (used, ev) = d.decode(&mut wire).unwrap();
        assert_eq!(used, 11);
        assert_eq!(
            ev,
            Some(Event::Message {
                text: true,
                payload: b"Hello"
            })
        );
    }

    #[test]
    fn fragmented_with_interleaved_ping_split_everywhere() {
        let mut wire = Vec::new();
        write_frame(&mut wire, false, Opcode::Text, b"Hel", MASK);
        write_frame(&mut wire, true, Opcode::Ping, b"ping!", MASK);
        write_frame(
            &mut wire,
            false,
            Opcode::Continuation,
            "lo κό".as_bytes(),
            MASK,
        );
        write_frame(
            &mut wire,
            true,
            Opcode::Continuation,
            "σμε".as_bytes(),
            MASK,
        );
        write_frame(&mut wire, true, Opcode::Binary, &[0, 1, 2], MASK);
        write_frame(
            &mut wire,
            true,
            Opcode::Close,
            &[0x03, 0xe8, b'b', b'y', b'e'],
            MASK,
        );
        let expected = vec![
            Owned::Ping(b"ping!".to_vec()),
            Owned::Msg(true, "Hello κόσμε".as_bytes().to_vec()),
            Owned::Msg(false, vec![0, 1, 2]),
            Owned::Close(Some((1000, "bye".into()))),
        ];
        for i in 0..=wire.len() {
            for j in i..=wire.len() {
                let got = run(&mut server(), &wire, &[i, j]).unwrap();
                assert_eq!(got, expected, "cut at {i},{j}");
            }
        }
    }

    fn first_error(wire: &[u8]) -> WsError {
        run(&mut server(), wire, &[]).unwrap_err()
    }

    #[test]
    fn protocol_errors_map_to_close_codes() {
        let mut w = Vec::new();
        write_frame(&mut w, true, Opcode::Text, b"x", None);
        assert_eq!(first_error(&w), WsError::UnmaskedFrame);

        let mut w = Vec::new();
        write_frame(&mut w, true, Opcode::Continuation, b"x", MASK);
        assert_eq!(first_error(&w), WsError::UnexpectedContinuation);

        let mut w = Vec::new();
        write_frame(&mut w, false, Opcode::Text, b"x", MASK);
        write_frame(&mut w, true, Opcode::Text, b"y", MASK);
        assert_eq!(first_error(&w), WsError::ExpectedContinuation);

        let mut w = Vec::new();
        write_frame(
            &mut w,
            true,
            Opcode::Text,
            &[0xce, 0xba, 0xed, 0xa0, 0x80],
            MASK,
        );
        let e = first_error(&w);
        assert_eq!((e, e.close_code()), (WsError::InvalidUtf8, 1007));

        for (payload, err) in [
            (vec![0x03], WsError::CloseOneByte),
            (vec![0x03, 0xed], WsError::CloseCodeInvalid), // 1005
            (vec![0x03, 0xe8, 0xff], WsError::InvalidUtf8),
        ] {
            let mut w = Vec::new();
            write_frame(&mut w, true, Opcode::Close, &payload, MASK);
            assert_eq!(first_error(&w), err);
        }

        let mut d = Decoder::new(DecoderConfig::server(10, 15));
        let mut w = Vec::new();
        write_frame(&mut w, true, Opcode::Binary, &[0; 11], MASK);
        assert_eq!(run(&mut d, &w, &[]), Err(WsError::FrameTooBig));
        let mut d = Decoder::new(DecoderConfig::server(10, 15));
        let mut w = Vec::new();
        write_frame(&mut w, false, Opcode::Binary, &[0; 10], MASK);
        write_frame(&mut w, true, Opcode::Continuation, &[0; 10], MASK);
        let e = run(&mut d, &w, &[]).unwrap_err();
        assert_eq!((e, e.close_code()), (WsError::MessageTooBig, 1009));
    }

    #[test]
    fn invalid_utf8_fails_before_the_message_ends() {
        let mut w = Vec::new();
        write_frame(&mut w, false, Opcode::Text, "κόσμε".as_bytes(), MASK);
        write_frame(
            &mut w,
            false,
            Opcode::Continuation,
            &[0xed, 0xa0, 0x80],
            MASK,
        );
        // No final fragment: the error must come anyway.
        assert_eq!(first_error(&w), WsError::InvalidUtf8);
    }

    #[test]
    fn empty_messages() {
        let mut w = Vec::new();
        write_frame(&mut w, true, Opcode::Text, b"", MASK);
        write_frame(&mut w, false, Opcode::Binary, b"", MASK);
        write_frame(&mut w, true, Opcode::Continuation, b"", MASK);
        let got = run(&mut server(), &w, &[]).unwrap();
        assert_eq!(
            got,
            vec![Owned::Msg(true, vec![]), Owned::Msg(false, vec![])]
        );
    }

    #[test]
    fn client_role_rejects_masked() {
        let mut d = Decoder::new(DecoderConfig::client(100, 100));
        let mut w = Vec::new();
        write_frame(&mut w, true, Opcode::Text, b"x", MASK);
        assert_eq!(run(&mut d, &w, &[]), Err(WsError::MaskedFrame));
        let mut w = Vec::new();
        write_frame(&mut w, true, Opcode::Text, b"ok", None);
        assert_eq!(
            run(&mut d, &w, &[]).unwrap(),
            vec![Owned::Msg(true, b"ok".to_vec())]
        );
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// A message as a client might send it: text or binary, cut into fragments, with a
        /// ping after some fragments.
        #[derive(Debug, Clone)]
        struct Msg {
            text: bool,
            payload: Vec<u8>,
            cuts: Vec<usize>,
            pings: Vec<bool>,
        }

        fn msg() -> impl Strategy<Value = Msg> {
            (
                any::<bool>(),
                prop::collection::vec(any::<u8>(), 0..300),
                prop::collection::vec(0usize..300, 0..4),
                prop::collection::vec(any::<bool>(), 4),
            )
                .prop_map(|(text, payload, cuts, pings)| {
                    let payload = if text {
                        String::from_utf8_lossy(&payload).into_owned().into_bytes()
                    } else {
                        payload
                    };
                    Msg {
                        text,
                        payload,
                        cuts,
                        pings,
                    }
                })
        }

        fn encode(msgs: &[Msg]) -> (Vec<u8>, Vec<Owned>) {
            let mut wire = Vec::new();
            let mut expected = Vec::new();
            for (n, m) in msgs.iter().enumerate() {
                let mut cuts: Vec<usize> =
                    m.cuts.iter().map(|c| c % (m.payload.len() + 1)).collect();
                cuts.sort_unstable();
                cuts.dedup();
                let mut bounds = vec![0];
                bounds.extend(cuts.iter().copied().filter(|c| *c > 0));
                bounds.push(m.payload.len());
                bounds.dedup();
                if bounds.len() == 1 {
                    bounds.push(0);
                }
                let pieces = bounds.len() - 1;
                let mask = Some([n as u8, 0x5a, 0xa5, 0x3c]);
                for k in 0..pieces {
                    let op = match (k, m.text) {
                        (0, true) => Opcode::Text,
                        (0, false) => Opcode::Binary,
                        _ => Opcode::Continuation,
                    };
                    let part = &m.payload[bounds[k]..bounds[k + 1]];
                    write_frame(&mut wire, k + 1 == pieces, op, part, mask);
                    if m.pings.get(k).copied().unwrap_or(false) {
                        let p = [n as u8, k as u8];
                        write_frame(&mut wire, true, Opcode::Ping, &p, mask);
                        expected.push(Owned::Ping(p.to_vec()));
                    }
                }
                expected.push(Owned::Msg(m.text, m.payload.clone()));
            }
            (wire, expected)
        }

        proptest! {
            /// Encode, then decode with the stream cut anywhere: the same messages and pings
            /// come out, whatever the fragmentation and wherever reads split the bytes.
            #[test]
            fn round_trip_at_any_split(
                msgs in prop::collection::vec(msg(), 1..6),
                cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
            ) {
                let (wire, expected) = encode(&msgs);
                let mut at: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
                at.sort_unstable();
                let got = run(&mut server(), &wire, &at).unwrap();
                // A ping sent after a message's last fragment comes out after the message.
                let mut got_sorted = got.clone();
                let mut exp_sorted = expected.clone();
                got_sorted.sort_by_key(|o| format!("{o:?}"));
                exp_sorted.sort_by_key(|o| format!("{o:?}"));
                prop_assert_eq!(got_sorted, exp_sorted);
                let msgs_only = |v: &[Owned]| v.iter().filter(|o| matches!(o, Owned::Msg(..))).cloned().collect::<Vec<_>>();
                prop_assert_eq!(msgs_only(&got), msgs_only(&expected));
            }
        }
    }
}
