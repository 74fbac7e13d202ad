//! The base framing protocol (RFC 6455 §5.2): parse a frame header, encode a frame.

use super::WsError;

/// Frame opcodes (§5.2). Reserved values are rejected while parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Opcode {
    fn from_bits(bits: u8) -> Result<Self, WsError> {
        Ok(match bits {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return Err(WsError::ReservedOpcode),
        })
    }

    pub fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    pub fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// A parsed frame header. The payload follows `header_len` bytes after the frame start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    /// RSV1: the message is compressed, when permessage-deflate was negotiated (RFC 7692 §6).
    /// Whether it may be set is the decoder's call; RSV2 and RSV3 are always refused.
    pub rsv1: bool,
    pub opcode: Opcode,
    pub mask: Option<[u8; 4]>,
    pub payload_len: u64,
    pub header_len: usize,
}

/// The longest possible header: 2 + 8 (length) + 4 (mask).
pub const MAX_HEADER_LEN: usize = 14;

/// Parse a frame header from the start of `buf`.
///
/// `Ok(None)`: not enough bytes yet. Errors are the header-level protocol violations of §5.2 and
/// §5.5; role-specific rules (masking) and limits are the decoder's.
pub fn parse_header(buf: &[u8]) -> Result<Option<FrameHeader>, WsError> {
    let (b0, b1) = match buf {
        [b0, b1, ..] => (*b0, *b1),
        _ => return Ok(None),
    };
    if b0 & 0x30 != 0 {
        return Err(WsError::ReservedBits);
    }
    let fin = b0 & 0x80 != 0;
    let opcode = Opcode::from_bits(b0 & 0x0F)?;
    let masked = b1 & 0x80 != 0;
    let len7 = b1 & 0x7F;
    if opcode.is_control() {
        if !fin {
            return Err(WsError::FragmentedControlFrame);
        }
        if len7 > 125 {
            return Err(WsError::ControlFrameTooLong);
        }
    }
    let (payload_len, mut pos) = match len7 {
        126 => match buf.get(2..4) {
            Some(&[a, b]) => (u16::from_be_bytes([a, b]) as u64, 4),
            _ => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(s) => {
                let mut b = [0u8; 8];
                b.copy_from_slice(s);
                let n = u64::from_be_bytes(b);
                if n >> 63 != 0 {
                    return Err(WsError::LengthTopBit);
                }
                (n, 10)
            }
            None => return Ok(None),
        },
        n => (n as u64, 2),
    };
    let mask = if masked {
        match buf.get(pos..pos + 4) {
            Some(&[a, b, c, d]) => {
                pos += 4;
                Some([a, b, c, d])
            }
            _ => return Ok(None),
        }
    } else {
        None
    };
    Ok(Some(FrameHeader {
        fin,
        rsv1: b0 & 0x40 != 0,
        opcode,
        mask,
        payload_len,
        header_len: pos,
    }))
}

/// Write a frame header into `out`; returns its length. With `mask`, the caller masks the
/// payload (client role).
pub fn encode_header(
    out: &mut [u8; MAX_HEADER_LEN],
    fin: bool,
    opcode: Opcode,
    len: u64,
    mask: Option<[u8; 4]>,
) -> usize {
    let [b0, b1, rest @ ..] = out;
    *b0 = (if fin { 0x80 } else { 0 }) | opcode.bits();
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut n = 2;
    if len < 126 {
        *b1 = mask_bit | len as u8;
    } else if len <= u16::MAX as u64 {
        *b1 = mask_bit | 126;
        for (d, s) in rest.iter_mut().zip((len as u16).to_be_bytes()) {
            *d = s;
        }
        n += 2;
    } else {
        *b1 = mask_bit | 127;
        for (d, s) in rest.iter_mut().zip(len.to_be_bytes()) {
            *d = s;
        }
        n += 8;
    }
    if let Some(m) = mask {
        for (d, s) in out.iter_mut().skip(n).zip(m) {
            *d = s;
        }
        n += 4;
    }
    n
}

/// Append a whole frame to `out` (server role: unmasked; client role: masked with `mask`).
pub fn write_frame(
    out: &mut Vec<u8>,
    fin: bool,
    opcode: Opcode,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) {
    let mut hdr = [0u8; MAX_HEADER_LEN];
    let n = encode_header(&mut hdr, fin, opcode, payload.len() as u64, mask);
    out.extend_from_slice(hdr.get(..n).unwrap_or_default());
    let start = out.len();
    out.extend_from_slice(payload);
    if let (Some(m), Some(p)) = (mask, out.get_mut(start..)) {
        super::mask::apply_mask(p, m, 0);
    }
}

/// Append a Close frame with `code` and `reason` (reason truncated to fit 125 bytes on a char
/// boundary).
pub fn write_close(out: &mut Vec<u8>, code: u16, reason: &str, mask: Option<[u8; 4]>) {
    let mut payload = [0u8; 125];
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let r = reason.as_bytes().get(..end).unwrap_or_default();
    let [c0, c1, rest @ ..] = &mut payload;
    [*c0, *c1] = code.to_be_bytes();
    for (d, s) in rest.iter_mut().zip(r) {
        *d = *s;
    }
    write_frame(
        out,
        true,
        Opcode::Close,
        payload.get(..2 + r.len()).unwrap_or_default(),
        mask,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_5_7_examples() {
        // A single-frame unmasked text message "Hello".
        let h = parse_header(&[0x81, 0x05, 0x48, 0x65]).unwrap().unwrap();
        assert!(h.fin);
        assert_eq!(h.opcode, Opcode::Text);
        assert_eq!((h.payload_len, h.header_len, h.mask), (5, 2, None));
        // A single-frame masked text message "Hello".
        let h = parse_header(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d])
            .unwrap()
            .unwrap();
        assert_eq!(h.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
        assert_eq!(h.header_len, 6);
        // A fragmented unmasked text message: "Hel" then "lo".
        let h = parse_header(&[0x01, 0x03]).unwrap().unwrap();
        assert!(!h.fin);
        assert_eq!(h.opcode, Opcode::Text);
        let h = parse_header(&[0x80, 0x02]).unwrap().unwrap();
        assert!(h.fin);
        assert_eq!(h.opcode, Opcode::Continuation);
        // 256 bytes binary message in a single unmasked frame.
        let h = parse_header(&[0x82, 0x7E, 0x01, 0x00]).unwrap().unwrap();
        assert_eq!((h.payload_len, h.header_len), (256, 4));
        // 64KiB binary message in a single unmasked frame.
        let h = parse_header(&[0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0, 0])
            .unwrap()
            .unwrap();
        assert_eq!((h.payload_len, h.header_len), (65536, 10));
    }

    #[test]
    fn header_errors() {
        // RSV1 is the decoder's to judge (permessage-deflate); RSV2 and RSV3 are refused here.
        assert!(parse_header(&[0xC1, 0x00]).unwrap().unwrap().rsv1);
        assert!(!parse_header(&[0x81, 0x00]).unwrap().unwrap().rsv1);
        assert_eq!(parse_header(&[0xA1, 0x00]), Err(WsError::ReservedBits));
        assert_eq!(parse_header(&[0x91, 0x00]), Err(WsError::ReservedBits));
        assert_eq!(parse_header(&[0x83, 0x00]), Err(WsError::ReservedOpcode));
        assert_eq!(parse_header(&[0x8B, 0x00]), Err(WsError::ReservedOpcode));
        assert_eq!(
            parse_header(&[0x09, 0x00]),
            Err(WsError::FragmentedControlFrame)
        );
        assert_eq!(
            parse_header(&[0x89, 0x7E]),
            Err(WsError::ControlFrameTooLong)
        );
        assert_eq!(
            parse_header(&[0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0]),
            Err(WsError::LengthTopBit)
        );
    }

    #[test]
    fn partial_headers() {
        let full = [0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4];
        for n in 0..full.len() {
            assert_eq!(parse_header(&full[..n]), Ok(None), "prefix {n}");
        }
        assert!(parse_header(&full).unwrap().is_some());
    }

    #[test]
    fn encode_parse_roundtrip_lengths() {
        for len in [0u64, 1, 125, 126, 127, 65535, 65536, 1 << 40] {
            for mask in [None, Some([9, 8, 7, 6])] {
                let mut b = [0u8; MAX_HEADER_LEN];
                let n = encode_header(&mut b, true, Opcode::Binary, len, mask);
                let h = parse_header(&b[..n]).unwrap().unwrap();
                assert_eq!((h.payload_len, h.header_len, h.mask), (len, n, mask));
            }
        }
    }
}
