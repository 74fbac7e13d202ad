//! Sans-IO STOMP 1.0/1.1/1.2: frames from bytes (zero-copy), frames to bytes, escaping,
//! heart-beat negotiation. Knows nothing of sockets, WebSocket or threads.

pub mod encode;
pub mod escape;
pub mod frame;
pub mod heartbeat;
pub mod parse;

pub use encode::{push_usize, usize_digits, write_error, write_frame};
pub use frame::{Command, FrameRef, Header, Version};
pub use parse::{parse, Limits, ParseError, Parsed, MAX_HEADERS};

#[cfg(test)]
mod tests;
