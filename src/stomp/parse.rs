//! Zero-copy STOMP frame parser. The caller owns the header storage (like `httparse`); the
//! frame borrows the input. Every limit is checked on partial input too, so a peer cannot make
//! the caller buffer more than one frame's worth of bytes.

use memchr::memchr;

use super::escape;
use super::frame::{Command, FrameRef, Header, Version};

/// The most headers a frame can have: the size of the header array the server parses into
/// (on the stack, so a frame's headers cost no allocation). `max_headers` is at most this.
pub const MAX_HEADERS: usize = 64;

/// Limits on one frame.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Headers per frame (also the size of the caller's header array, whichever is smaller).
    pub max_headers: usize,
    /// Longest command or header line, in bytes.
    pub max_header_line: usize,
    /// Largest body, in bytes.
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_headers: 64,
            max_header_line: 8 * 1024,
            max_body: 4 * 1024 * 1024,
        }
    }
}

impl Limits {
    /// The most bytes one frame can occupy on the wire (for sizing buffers).
    pub fn max_frame_bytes(&self) -> usize {
        (self.max_headers + 2) * (self.max_header_line + 2) + self.max_body + 1
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A frame and the bytes it used (including its NUL).
    Frame(FrameRef<'a>, usize),
    /// End-of-line heart-beats between frames: this many bytes.
    Heartbeat(usize),
    /// Need more input.
    Partial,
}

/// Why a frame is malformed. Each becomes an ERROR frame with this message, then a close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    UnknownCommand,
    MissingColon,
    BadEscape,
    TooManyHeaders,
    HeaderTooLong,
    BodyTooLarge,
    BadContentLength,
    MissingNul,
    /// A NUL inside a header line: it would end the frame for any reader, so a value holding
    /// one could smuggle a second frame to subscribers.
    NulInHeader,
    /// STOMP 1.2: a CR that is not part of a line's CRLF (1.2 escapes it as `\r`).
    BareCr,
}

impl ParseError {
    pub fn message(self) -> &'static str {
        match self {
            ParseError::UnknownCommand => "unknown command",
            ParseError::MissingColon => "header line without a colon",
            ParseError::BadEscape => "undefined escape sequence in header",
            ParseError::TooManyHeaders => "too many headers",
            ParseError::HeaderTooLong => "header line too long",
            ParseError::BodyTooLarge => "body too large",
            ParseError::BadContentLength => "invalid content-length",
            ParseError::MissingNul => "frame body not followed by NUL",
            ParseError::NulInHeader => "NUL in header",
            ParseError::BareCr => "CR in header not followed by LF (escape it as \\r)",
        }
    }
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for ParseError {}

/// One line ending at `\n` (with an optional `\r` before it removed), starting at `pos`, of at
/// most `max` bytes without its EOL. Returns the line and the position after the `\n`.
fn line(buf: &[u8], pos: usize, max: usize) -> Result<Option<(&[u8], usize)>, ParseError> {
    let rest = buf.get(pos..).unwrap_or_default();
    // The longest acceptable line plus CRLF: no need to look further for the `\n`.
    let window = rest.get(..max.saturating_add(2)).unwrap_or(rest);
    let Some(nl) = memchr(b'\n', window) else {
        // Incomplete: a trailing `\r` may be the first half of the CRLF, so it does not count.
        let pending = window.strip_suffix(b"\r").unwrap_or(window);
        return if pending.len() > max {
            Err(ParseError::HeaderTooLong)
        } else {
            Ok(None)
        };
    };
    let raw = rest.get(..nl).unwrap_or_default();
    let l = raw.strip_suffix(b"\r").unwrap_or(raw);
    if l.len() > max {
        return Err(ParseError::HeaderTooLong);
    }
    Ok(Some((l, pos + nl + 1)))
}

/// A `content-length` value: decimal digits, with spaces and tabs around them tolerated (not CR
/// or form feed, which are not padding).
fn parse_len(v: &[u8]) -> Option<usize> {
    let pad = |b: &u8| matches!(b, b' ' | b'\t');
    let start = v.iter().position(|b| !pad(b)).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !pad(b)).map_or(start, |i| i + 1);
    let v = v.get(start..end).unwrap_or_default();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0usize, |n, d| {
        n.checked_mul(10)?.checked_add((d - b'0') as usize)
    })
}

/// Parse one frame (or the heart-beats before it) from the start of `buf`. `version` decides
/// whether headers are escaped (1.0: never; CONNECT and CONNECTED: never).
pub fn parse<'a>(
    buf: &'a [u8],
    headers: &'a mut [Header<'a>],
    version: Version,
    limits: &Limits,
) -> Result<Parsed<'a>, ParseError> {
    // Heart-beats: any run of EOLs before a frame.
    let mut eols = 0;
    loop {
        match buf.get(eols..) {
            Some([b'\n', ..]) => eols += 1,
            Some([b'\r', b'\n', ..]) => eols += 2,
            Some([b'\r']) => break,
            _ => break,
        }
    }
    if eols > 0 {
        return Ok(Parsed::Heartbeat(eols));
    }
    let Some((cmd, mut pos)) = line(buf, 0, limits.max_header_line)? else {
        return Ok(Parsed::Partial);
    };
    let command = Command::from_bytes(cmd).ok_or(ParseError::UnknownCommand)?;
    let escaped = version != Version::V1_0 && command.escapes_headers();
    let max_headers = limits.max_headers.min(headers.len());
    let mut n = 0;
    let mut content_length = None;
    loop {
        let Some((l, next)) = line(buf, pos, limits.max_header_line)? else {
            return Ok(Parsed::Partial);
        };
        pos = next;
        if l.is_empty() {
            break;
        }
        // A NUL never belongs in a header line; a CR only as the `\r` escape in 1.2. One pass
        // finds either; a CR found first may still hide a NUL after it.
        if let Some(i) = memchr::memchr2(0, b'\r', l) {
            if memchr(0, l.get(i..).unwrap_or_default()).is_some() {
                return Err(ParseError::NulInHeader);
            }
            if version == Version::V1_2 && escaped {
                return Err(ParseError::BareCr);
            }
        }
        let colon = memchr(b':', l).ok_or(ParseError::MissingColon)?;
        let name = l.get(..colon).unwrap_or_default();
        let value = l.get(colon + 1..).unwrap_or_default();
        if escaped && (escape::validate(name).is_err() || escape::validate(value).is_err()) {
            return Err(ParseError::BadEscape);
        }
        if n >= max_headers {
            return Err(ParseError::TooManyHeaders);
        }
        if content_length.is_none() && name == b"content-length" {
            let len = parse_len(value).ok_or(ParseError::BadContentLength)?;
            if len > limits.max_body {
                return Err(ParseError::BodyTooLarge);
            }
            content_length = Some(len);
        }
        if let Some(slot) = headers.get_mut(n) {
            *slot = Header { name, value };
        }
        n += 1;
    }
    let body_start = pos;
    let rest = buf.get(body_start..).unwrap_or_default();
    let (body, used) = match content_length {
        Some(len) => {
            let Some(&term) = rest.get(len) else {
                return Ok(Parsed::Partial);
            };
            if term != 0 {
                return Err(ParseError::MissingNul);
            }
            (rest.get(..len).unwrap_or_default(), body_start + len + 1)
        }
        None => match memchr(0, rest) {
            Some(i) if i > limits.max_body => return Err(ParseError::BodyTooLarge),
            Some(i) => (rest.get(..i).unwrap_or_default(), body_start + i + 1),
            None if rest.len() > limits.max_body => return Err(ParseError::BodyTooLarge),
            None => return Ok(Parsed::Partial),
        },
    };
    let headers: &'a [Header<'a>] = headers;
    Ok(Parsed::Frame(
        FrameRef {
            command,
            headers: headers.get(..n).unwrap_or_default(),
            body,
            escaped,
        },
        used,
    ))
}

/// Whether the header block of the frame at the start of `buf` has all arrived (a blank line,
/// or a NUL ending the frame early), or can no longer (a line past `max_header_line`, more
/// lines than `max_headers`): a malformed frame is answered then, its `receipt` found whole.
pub fn head_settled(buf: &[u8], limits: &Limits) -> bool {
    if memchr(0, buf).is_some() {
        return true;
    }
    // Line by line, as a header block could still be: it settles at a blank line, or as soon
    // as it could no longer be a header block (a line past its bound, too many lines).
    let mut start = 0;
    for (lines, nl) in memchr::memchr_iter(b'\n', buf).enumerate() {
        let l = buf.get(start..nl).unwrap_or_default();
        let l = l.strip_suffix(b"\r").unwrap_or(l);
        if (lines > 0 && l.is_empty())
            || l.len() > limits.max_header_line
            || lines > limits.max_headers + 1
        {
            return true;
        }
        start = nl + 1;
    }
    buf.len() - start.min(buf.len()) > limits.max_header_line
}

/// Best effort for an ERROR about a frame that did not parse: the raw value of a `receipt`
/// header among the frame's header lines that did arrive (looking at most `max` bytes).
pub fn find_receipt(buf: &[u8], max: usize) -> Option<&[u8]> {
    let head = buf.get(..buf.len().min(max)).unwrap_or_default();
    // Whole lines only: a header still arriving has no value yet.
    let head = head
        .get(..memchr::memrchr(b'\n', head)?)
        .unwrap_or_default();
    head.split(|b| *b == b'\n')
        .skip(1)
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.strip_prefix(b"receipt:"))
}
