//! Sans-IO WebSocket (RFC 6455): bytes in, frames and messages out; frames in, bytes out.
//! Nothing here touches a socket, a thread or the clock.
//!
//! - [`handshake`]: the HTTP/1.1 upgrade request and its answers (101 or a refusal).
//! - [`frame`]: frame headers, parse and encode.
//! - [`mask`]: in-place (un)masking.
//! - [`utf8`]: incremental UTF-8 validation.
//! - [`decoder`]: frames to messages, with every RFC MUST and size limit.
//! - [`error`]: why a connection fails, and the close code for each cause.
//! - [`deflate`]: permessage-deflate (RFC 7692) negotiation (not yet used by the handshake).

pub mod client;
pub mod decoder;
pub mod deflate;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod utf8;

pub use decoder::{Decoder, DecoderConfig, Event, Role};
pub use error::{code, is_valid_wire_code, WsError};
pub use frame::{encode_header, parse_header, write_close, write_frame, FrameHeader, Opcode};
pub use handshake::{
    accept_key, parse_request, write_accept, HandshakeConfig, Refusal, Status, Upgrade,
};
