//! STOMP commands and a parsed frame that borrows its input.

use std::borrow::Cow;

use super::escape::unescape;

/// Protocol versions, in the order `accept-version` negotiation prefers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    V1_0,
    V1_1,
    V1_2,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1_0 => "1.0",
            Version::V1_1 => "1.1",
            Version::V1_2 => "1.2",
        }
    }

    pub fn parse(s: &str) -> Option<Version> {
        match s.trim() {
            "1.0" => Some(Version::V1_0),
            "1.1" => Some(Version::V1_1),
            "1.2" => Some(Version::V1_2),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    // Client frames.
    Connect,
    Stomp,
    Send,
    Subscribe,
    Unsubscribe,
    Ack,
    Nack,
    Begin,
    Commit,
    Abort,
    Disconnect,
    // Server frames.
    Connected,
    Message,
    Receipt,
    Error,
}

impl Command {
    pub fn from_bytes(b: &[u8]) -> Option<Command> {
        Some(match b {
            b"CONNECT" => Command::Connect,
            b"STOMP" => Command::Stomp,
            b"SEND" => Command::Send,
            b"SUBSCRIBE" => Command::Subscribe,
            b"UNSUBSCRIBE" => Command::Unsubscribe,
            b"ACK" => Command::Ack,
            b"NACK" => Command::Nack,
            b"BEGIN" => Command::Begin,
            b"COMMIT" => Command::Commit,
            b"ABORT" => Command::Abort,
            b"DISCONNECT" => Command::Disconnect,
            b"CONNECTED" => Command::Connected,
            b"MESSAGE" => Command::Message,
            b"RECEIPT" => Command::Receipt,
            b"ERROR" => Command::Error,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Connect => "CONNECT",
            Command::Stomp => "STOMP",
            Command::Send => "SEND",
            Command::Subscribe => "SUBSCRIBE",
            Command::Unsubscribe => "UNSUBSCRIBE",
            Command::Ack => "ACK",
            Command::Nack => "NACK",
            Command::Begin => "BEGIN",
            Command::Commit => "COMMIT",
            Command::Abort => "ABORT",
            Command::Disconnect => "DISCONNECT",
            Command::Connected => "CONNECTED",
            Command::Message => "MESSAGE",
            Command::Receipt => "RECEIPT",
            Command::Error => "ERROR",
        }
    }

    /// CONNECT and CONNECTED never escape header values (STOMP 1.2 "Value Encoding").
    pub fn escapes_headers(self) -> bool {
        !matches!(self, Command::Connect | Command::Connected)
    }
}

/// One header as it appeared on the wire (still escaped, if the version escapes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header<'a> {
    pub name: &'a [u8],
    pub value: &'a [u8],
}

/// A parsed frame: slices into the input buffer and into the caller's header array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRef<'a> {
    pub command: Command,
    pub headers: &'a [Header<'a>],
    pub body: &'a [u8],
    /// Whether header names and values are escaped (1.1+ and not CONNECT/CONNECTED).
    pub escaped: bool,
}

impl<'a> FrameRef<'a> {
    /// Bytes of the frame as received (command, headers, body), near enough for budgets.
    pub fn size(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|h| h.name.len() + h.value.len() + 2)
            .sum();
        self.command.as_str().len() + 2 + headers + self.body.len()
    }

    /// The first occurrence of a header (STOMP 1.2: a repeated header keeps its first value),
    /// raw as on the wire.
    pub fn raw(&self, name: &str) -> Option<&'a [u8]> {
        let headers: &'a [Header<'a>] = self.headers;
        headers
            .iter()
            .find(|h| self.name_is(h.name, name))
            .map(|h| h.value)
    }

    fn name_is(&self, raw: &[u8], name: &str) -> bool {
        if !self.escaped || !raw.contains(&b'\\') {
            return raw == name.as_bytes();
        }
        unescape(raw).is_ok_and(|n| n.as_ref() == name.as_bytes())
    }

    /// The first value of a header, unescaped, as UTF-8. `None` if absent or not UTF-8.
    pub fn header(&self, name: &str) -> Option<Cow<'a, str>> {
        let raw = self.raw(name)?;
        let bytes = if self.escaped {
            unescape(raw).ok()?
        } else {
            Cow::Borrowed(raw)
        };
        match bytes {
            Cow::Borrowed(b) => std::str::from_utf8(b).ok().map(Cow::Borrowed),
            Cow::Owned(v) => String::from_utf8(v).ok().map(Cow::Owned),
        }
    }
}
