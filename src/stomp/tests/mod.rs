//! Codec tests (spec examples, split-at-every-byte, round trips).
//!
//! The spec examples are the frames printed in the STOMP 1.2 specification
//! (<https://stomp.github.io/stomp-specification-1.2.html>), with `^@` written as `\0`.

use proptest::collection::vec;
use proptest::prelude::*;

use super::escape::{escape_into, unescape};
use super::heartbeat;
use super::*;

mod bodies;
mod commands;
mod encode;
mod headers;
mod limits;
mod props;
mod spec;

const V10: Version = Version::V1_0;
const V11: Version = Version::V1_1;
const V12: Version = Version::V1_2;
const VERSIONS: [Version; 3] = [V10, V11, V12];

const COMMANDS: [Command; 15] = [
    Command::Connect,
    Command::Stomp,
    Command::Send,
    Command::Subscribe,
    Command::Unsubscribe,
    Command::Ack,
    Command::Nack,
    Command::Begin,
    Command::Commit,
    Command::Abort,
    Command::Disconnect,
    Command::Connected,
    Command::Message,
    Command::Receipt,
    Command::Error,
];

/// A parsed frame copied out of the input: headers raw, as on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Owned {
    command: Command,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body: Vec<u8>,
    escaped: bool,
}

impl Owned {
    fn of(f: &FrameRef<'_>) -> Owned {
        Owned {
            command: f.command,
            headers: f
                .headers
                .iter()
                .map(|h| (h.name.to_vec(), h.value.to_vec()))
                .collect(),
            body: f.body.to_vec(),
            escaped: f.escaped,
        }
    }

    /// Header names and values with escapes decoded (if the frame escapes).
    fn decoded(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let dec = |b: &[u8]| match (self.escaped, unescape(b)) {
            (false, _) => b.to_vec(),
            (true, Ok(d)) => d.into_owned(),
            (true, Err(_)) => panic!("parsed header with a bad escape: {b:?}"),
        };
        self.headers.iter().map(|(n, v)| (dec(n), dec(v))).collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Out {
    Frame(Owned, usize),
    Heartbeat(usize),
    Partial,
}

fn parse_with(buf: &[u8], version: Version, limits: &Limits) -> Result<Out, ParseError> {
    let mut slots = [Header::default(); 64];
    Ok(match parse(buf, &mut slots, version, limits)? {
        Parsed::Frame(f, used) => Out::Frame(Owned::of(&f), used),
        Parsed::Heartbeat(n) => Out::Heartbeat(n),
        Parsed::Partial => Out::Partial,
    })
}

fn parse_out(buf: &[u8], version: Version) -> Result<Out, ParseError> {
    parse_with(buf, version, &Limits::default())
}

/// Parse exactly one whole frame that uses all of `buf` and hand it to `check`.
fn with_frame<R>(buf: &[u8], version: Version, check: impl FnOnce(&FrameRef<'_>) -> R) -> R {
    let mut slots = [Header::default(); 64];
    match parse(buf, &mut slots, version, &Limits::default()) {
        Ok(Parsed::Frame(f, used)) => {
            assert_eq!(used, buf.len(), "frame did not use the whole input");
            check(&f)
        }
        other => panic!("expected a frame from {buf:?}, got {other:?}"),
    }
}

fn err(buf: &[u8], version: Version, limits: &Limits) -> ParseError {
    match parse_with(buf, version, limits) {
        Err(e) => e,
        Ok(o) => panic!("expected an error from {buf:?}, got {o:?}"),
    }
}

/// Consume everything parseable from `buf`: (frames, heart-beat bytes, bytes consumed).
fn drive(
    buf: &[u8],
    version: Version,
    limits: &Limits,
) -> Result<(Vec<Owned>, usize, usize), ParseError> {
    let (mut frames, mut beats, mut pos) = (Vec::new(), 0, 0);
    loop {
        let rest = buf.get(pos..).unwrap_or_default();
        match parse_with(rest, version, limits)? {
            Out::Frame(f, used) => {
                assert!(
                    used > 0 && used <= rest.len(),
                    "used {used} of {}",
                    rest.len()
                );
                frames.push(f);
                pos += used;
            }
            Out::Heartbeat(n) => {
                assert!(n > 0 && n <= rest.len(), "heart-beat {n} of {}", rest.len());
                beats += n;
                pos += n;
            }
            Out::Partial => return Ok((frames, beats, pos)),
        }
    }
}

/// Split checks for input = `lead` EOL bytes followed by exactly one frame:
/// - every strict prefix parses as `Partial`, or as `Heartbeat` of the leading EOLs only;
/// - the input fed as two reads split at every byte gives the same frame as the whole input.
fn check_splits(input: &[u8], lead: usize, version: Version, limits: &Limits) -> Owned {
    let whole = match drive(input, version, limits) {
        Ok((frames, beats, used)) => {
            assert_eq!((frames.len(), beats, used), (1, lead, input.len()));
            frames.into_iter().next()
        }
        Err(e) => panic!("{e:?} from {input:?}"),
    };
    let Some(whole) = whole else {
        panic!("no frame");
    };
    for k in 0..input.len() {
        let prefix = input.get(..k).unwrap_or_default();
        match parse_with(prefix, version, limits) {
            Ok(Out::Partial) => {}
            Ok(Out::Heartbeat(n)) => {
                assert!(
                    n <= lead && n <= k,
                    "prefix {k}: heart-beat {n} beyond {lead} EOLs"
                );
                assert!(prefix.iter().take(n).all(|b| matches!(b, b'\r' | b'\n')));
            }
            other => panic!("prefix {k} of {input:?}: {other:?}"),
        }
        // As a socket would deliver it: the first k bytes, then the rest appended.
        let (f1, b1, used1) = match drive(prefix, version, limits) {
            Ok(r) => r,
            Err(e) => panic!("prefix {k}: {e:?}"),
        };
        assert!(f1.is_empty(), "prefix {k} gave a frame");
        assert!(used1 <= lead);
        let rest = input.get(used1..).unwrap_or_default();
        let (f2, b2, used2) = match drive(rest, version, limits) {
            Ok(r) => r,
            Err(e) => panic!("after split {k}: {e:?}"),
        };
        assert_eq!(b1 + b2, lead);
        assert_eq!(used1 + used2, input.len());
        assert_eq!(f2, vec![whole.clone()], "split at {k}");
    }
    whole
}

fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn small() -> Limits {
    Limits {
        max_headers: 3,
        max_header_line: 16,
        max_body: 8,
    }
}
