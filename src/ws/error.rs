//! Why a WebSocket connection is failed, and the close code each cause maps to
//! (RFC 6455 §7.4.1 and the IANA "WebSocket Close Code Number Registry").

use std::fmt;

/// Close codes the server sends.
pub mod code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const UNSUPPORTED_DATA: u16 = 1003;
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL_ERROR: u16 = 1011;
}

/// May `code` appear in a Close frame on the wire?
///
/// §7.4.1: 1004 is reserved, 1005, 1006 and 1015 "MUST NOT be set as a status code in a Close
/// control frame by an endpoint"; 0-999 are unused; 1016-2999 are for the RFC and its extensions
/// and not registered; 3000-4999 belong to libraries and applications; ≥ 5000 is undefined.
/// 1012-1014 were registered with IANA after the RFC and are accepted.
pub fn is_valid_wire_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// A peer broke RFC 6455, sent bad data, or exceeded a limit. Each variant is one action: a Close
/// frame with [`WsError::close_code`], then closing the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsError {
    /// §5.2: "RSV1, RSV2, RSV3 ... MUST be 0 unless an extension is negotiated".
    ReservedBits,
    /// §5.2: "If an unknown opcode is received, the receiving endpoint MUST _Fail the WebSocket
    /// Connection_."
    ReservedOpcode,
    /// §5.1: "a server MUST close the connection upon receiving a frame that is not masked".
    UnmaskedFrame,
    /// §5.1: "A client MUST close a connection if it detects a masked frame."
    MaskedFrame,
    /// §5.5: "All control frames MUST have a payload length of 125 bytes or less".
    ControlFrameTooLong,
    /// §5.5: "All control frames ... MUST NOT be fragmented."
    FragmentedControlFrame,
    /// §5.4: a continuation frame with no fragmented message in progress.
    UnexpectedContinuation,
    /// §5.4: a new text or binary frame while a fragmented message is still open.
    ExpectedContinuation,
    /// §5.2: "the most significant bit MUST be 0" in a 64-bit payload length.
    LengthTopBit,
    /// §5.5.1: a Close payload of one byte cannot hold a status code.
    CloseOneByte,
    /// §7.4: a status code that may not be sent on the wire.
    CloseCodeInvalid,
    /// §8.1: a text message, or a Close reason, that is not valid UTF-8.
    InvalidUtf8,
    /// A frame larger than the configured frame limit.
    FrameTooBig,
    /// A message larger than the configured message limit (for a compressed message: once
    /// inflated).
    MessageTooBig,
    /// RFC 7692 §7.2.2: a compressed message that does not inflate.
    InvalidCompressed,
}

impl WsError {
    /// The close code to send for this error.
    pub fn close_code(self) -> u16 {
        match self {
            WsError::InvalidUtf8 | WsError::InvalidCompressed => code::INVALID_PAYLOAD,
            WsError::FrameTooBig | WsError::MessageTooBig => code::TOO_BIG,
            _ => code::PROTOCOL_ERROR,
        }
    }

    /// A short reason for the Close frame (always well under 123 bytes).
    pub fn reason(self) -> &'static str {
        match self {
            WsError::ReservedBits => "reserved bits set",
            WsError::ReservedOpcode => "reserved opcode",
            WsError::UnmaskedFrame => "client frame not masked",
            WsError::MaskedFrame => "server frame masked",
            WsError::ControlFrameTooLong => "control frame over 125 bytes",
            WsError::FragmentedControlFrame => "fragmented control frame",
            WsError::UnexpectedContinuation => "continuation with nothing to continue",
            WsError::ExpectedContinuation => "new message inside a fragmented message",
            WsError::LengthTopBit => "64-bit length with top bit set",
            WsError::CloseOneByte => "close payload of one byte",
            WsError::CloseCodeInvalid => "invalid close code",
            WsError::InvalidUtf8 => "invalid UTF-8",
            WsError::FrameTooBig => "frame too big",
            WsError::MessageTooBig => "message too big",
            WsError::InvalidCompressed => "invalid compressed data",
        }
    }
}

impl fmt::Display for WsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (close {})", self.reason(), self.close_code())
    }
}

impl std::error::Error for WsError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_codes() {
        for c in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
        ] {
            assert!(is_valid_wire_code(c), "{c}");
        }
        for c in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!is_valid_wire_code(c), "{c}");
        }
    }
}
