//! A fuzz script: a small header (sessions, transports, RNG seed) and a list of steps, each
//! decoded from a fixed-size chunk of bytes. The same decoder serves the proptest (which
//! generates and shrinks the chunks) and the cargo-fuzz target (which cuts its input into
//! chunks), so a failing input of one replays in the other: [`Script::to_bytes`] /
//! [`Script::from_bytes`].

use std::fmt;

/// Bytes of the script header.
pub const HEADER: usize = 8;
/// Bytes per step.
pub const STEP: usize = 8;
/// Most steps a script runs (more input is ignored), so a script stays within a few seconds.
pub const MAX_STEPS: usize = 64;

/// A destination of the script's namespace (made unique per run by the driver).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dest {
    /// `/topic/<run>.t<n>`
    Topic(u8),
    /// `/topic/<run>.w.a`
    WordA,
    /// `/topic/<run>.w.a.b`
    WordAB,
    /// `/topic/<run>.w.*` (subscribe only)
    WildOne,
    /// `/topic/<run>.w.#` (subscribe only)
    WildAny,
    /// `/queue/<run>.q<n>`
    Queue(u8),
}

impl Dest {
    pub fn is_queue(self) -> bool {
        matches!(self, Dest::Queue(_))
    }

    pub fn name(self, run: u64) -> String {
        match self {
            Dest::Topic(n) => format!("/topic/r{run}.t{n}"),
            Dest::WordA => format!("/topic/r{run}.w.a"),
            Dest::WordAB => format!("/topic/r{run}.w.a.b"),
            Dest::WildOne => format!("/topic/r{run}.w.*"),
            Dest::WildAny => format!("/topic/r{run}.w.#"),
            Dest::Queue(n) => format!("/queue/r{run}.q{n}"),
        }
    }

    /// Does a subscription to `self` receive a SEND to `to`?
    pub fn matches(self, to: Dest) -> bool {
        match self {
            Dest::WildOne => to == Dest::WordA,
            Dest::WildAny => matches!(to, Dest::WordA | Dest::WordAB),
            d => d == to,
        }
    }
}

const SEND_DESTS: [Dest; 9] = [
    Dest::Topic(0),
    Dest::Topic(1),
    Dest::Topic(2),
    Dest::WordA,
    Dest::WordAB,
    Dest::Queue(0),
    Dest::Queue(1),
    Dest::Queue(0),
    Dest::Queue(1),
];
const SUB_DESTS: [Dest; 9] = [
    Dest::Topic(0),
    Dest::Topic(1),
    Dest::Topic(2),
    Dest::WildOne,
    Dest::WildAny,
    Dest::Queue(0),
    Dest::Queue(1),
    Dest::Queue(0),
    Dest::Queue(1),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    Auto,
    Client,
    Individual,
}

impl AckMode {
    pub fn header(self) -> &'static str {
        match self {
            AckMode::Auto => "auto",
            AckMode::Client => "client",
            AckMode::Individual => "client-individual",
        }
    }
}

/// A SEND body: (kind, length). The driver prefixes it with the message's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// Short text, no content-length header.
    Text(u16),
    /// Text with a content-length header.
    Counted(u16),
    /// Binary bytes (NULs included), content-length header.
    Binary(u16),
    /// 8-40 KiB of text with content-length: two of these fill an outbound queue (which
    /// counts buffer capacity, so one message near max_outbound could never be delivered).
    Large(u16),
}

/// Which ACK id an ACK/NACK names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckTarget {
    /// The n-th (mod count) message this session holds unacked.
    Real(u8),
    /// The id of a topic MESSAGE this session received (accepted, untracked).
    TopicId(u8),
    /// An id already acked/nacked, of an auto-mode delivery, or of an unsubscribed
    /// subscription (the broker must refuse it).
    Stale(u8),
    /// An id the broker never handed out.
    Bogus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// A NUL byte inside a header value.
    NulInHeader,
    /// A command STOMP does not have.
    UnknownCommand,
    /// SEND without destination.
    NoDestination,
    /// A header line over the limit.
    LongHeader,
    /// content-length over the body limit.
    HugeBody,
    /// content-length shorter than the body (the byte after it is not NUL).
    WrongLength,
    /// An escape undefined in STOMP 1.1/1.2 (`\t`).
    BadEscape,
    /// More headers than allowed.
    ManyHeaders,
    /// A frame before CONNECT, on a new connection.
    BeforeConnect,
    /// A second CONNECT.
    Reconnect,
    /// A server command (MESSAGE) sent by the client.
    ServerFrame,
    /// SUBSCRIBE with an invalid ack mode.
    BadAckMode,
    /// SUBSCRIBE with prefetch-count 0.
    ZeroPrefetch,
}

const MALFORMED: [Malformed; 13] = [
    Malformed::NulInHeader,
    Malformed::UnknownCommand,
    Malformed::NoDestination,
    Malformed::LongHeader,
    Malformed::HugeBody,
    Malformed::WrongLength,
    Malformed::BadEscape,
    Malformed::ManyHeaders,
    Malformed::BeforeConnect,
    Malformed::Reconnect,
    Malformed::ServerFrame,
    Malformed::BadAckMode,
    Malformed::ZeroPrefetch,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// (Re)connect: version 0..=2 (1.0/1.1/1.2), STOMP command instead of CONNECT,
    /// client heart-beat send interval (ms, 0 = none), wanted from the server (ms).
    Connect {
        version: u8,
        stomp: bool,
        hb_send: u16,
        hb_want: u16,
    },
    Subscribe {
        dest: Dest,
        ack: AckMode,
        prefetch: Option<u16>,
        receipt: bool,
    },
    Unsubscribe {
        which: u8,
        receipt: bool,
    },
    Send {
        dest: Dest,
        body: Body,
        receipt: bool,
        /// In the n-th (mod count) open transaction, if any is open.
        tx: Option<u8>,
    },
    Ack {
        target: AckTarget,
        nack: bool,
        receipt: bool,
        tx: Option<u8>,
    },
    Begin,
    Commit {
        which: u8,
        receipt: bool,
    },
    Abort {
        which: u8,
        receipt: bool,
    },
    Disconnect,
    /// Close the socket without DISCONNECT.
    Close,
    /// Random bytes (seeded), then a line that cannot be a command.
    Garbage {
        len: u8,
        seed: u8,
    },
    /// A WebSocket frame the server must refuse (unmasked), on TCP: garbage.
    WsGarbage,
    Malformed(Malformed),
    /// Stop reading this session.
    Stall,
    /// Read it again.
    Resume,
    /// Stall, then pipeline this many hundred tiny SENDs with receipts in one write.
    Flood {
        hundreds: u8,
    },
    /// An EOL heart-beat.
    Heartbeat,
    /// Let time pass (ms), reading every unstalled session.
    Wait {
        ms: u16,
    },
    /// Close the session through the admin API (an ERROR saying so, then the close).
    AdminClose,
    /// Purge queue n through the admin API (its waiting messages dropped).
    AdminPurge(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub session: usize,
    pub op: Op,
    /// Write this step's bytes together with the next step's (which goes to the same session).
    pub glue: bool,
    /// Wait for this session's outstanding receipts afterwards.
    pub sync: bool,
    /// Seed of the write split (0: one write).
    pub split: u8,
}

#[derive(Clone)]
pub struct Script {
    pub header: [u8; HEADER],
    pub raw: Vec<[u8; STEP]>,
    pub sessions: usize,
    /// Per session: WebSocket (else TCP).
    pub ws: Vec<bool>,
    pub seed: u64,
    pub steps: Vec<Step>,
    /// What `STOMPBOX_FUZZ_AVOID` (a comma list) keeps out of the script, to look past a known
    /// bug while it is being fixed; empty by default. `send-unsub`: no queue SEND glued to the
    /// next frame, no UNSUBSCRIBE; `nul-header`: no NUL in a header; `flood`: no floods;
    /// `stall`: no stalls; `tx-ack`: no ACK/NACK in a transaction; `large`: no large bodies;
    /// `admin`: no admin API calls.
    pub avoid: Vec<String>,
}

impl Script {
    pub fn new(header: [u8; HEADER], raw: Vec<[u8; STEP]>) -> Script {
        let sessions = 3 + usize::from(header[0] % 4);
        let ws = (0..sessions).map(|i| header[1] >> i & 1 == 1).collect();
        let seed = u64::from_le_bytes([
            header[2], header[3], header[4], header[5], header[6], header[7], 0x5a, 0xa5,
        ]);
        let avoid: Vec<String> = std::env::var("STOMPBOX_FUZZ_AVOID")
            .unwrap_or_default()
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let no = |k: &str| avoid.iter().any(|a| a == k);
        let mut steps: Vec<Step> = Vec::new();
        let mut forced = None;
        for r in raw.iter().take(MAX_STEPS) {
            let mut s = decode(r, sessions);
            if let Some(f) = forced.take() {
                s.session = f;
            }
            if no("send-unsub") && matches!(s.op, Op::Send { dest, .. } if dest.is_queue()) {
                s.glue = false;
            }
            let skip = match s.op {
                Op::Unsubscribe { .. } => no("send-unsub"),
                Op::Malformed(Malformed::NulInHeader) => no("nul-header"),
                Op::Flood { .. } => no("flood") || no("stall"),
                Op::Stall => no("stall"),
                Op::Ack { tx: Some(_), .. } => no("tx-ack"),
                Op::Send {
                    body: Body::Large(_),
                    ..
                } => no("large"),
                Op::AdminClose | Op::AdminPurge(_) => no("admin"),
                _ => false,
            };
            if skip {
                s.op = Op::Wait { ms: 1 };
            }
            if s.glue {
                forced = Some(s.session);
            }
            steps.push(s);
        }
        Script {
            header,
            raw,
            sessions,
            ws,
            seed,
            steps,
            avoid,
        }
    }

    pub fn from_bytes(b: &[u8]) -> Script {
        let mut header = [0u8; HEADER];
        let n = b.len().min(HEADER);
        header[..n].copy_from_slice(&b[..n]);
        let raw = b
            .get(HEADER..)
            .unwrap_or_default()
            .chunks_exact(STEP)
            .map(|c| {
                let mut a = [0u8; STEP];
                a.copy_from_slice(c);
                a
            })
            .collect();
        Script::new(header, raw)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = self.header.to_vec();
        for r in &self.raw {
            v.extend_from_slice(r);
        }
        v
    }

    pub fn hex(&self) -> String {
        self.to_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn from_hex(s: &str) -> Option<Script> {
        let s = s.trim();
        let bytes: Option<Vec<u8>> = (0..s.len() / 2)
            .map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
            .collect();
        Some(Script::from_bytes(&bytes?))
    }
}

impl fmt::Debug for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kinds: Vec<&str> = self
            .ws
            .iter()
            .map(|&w| if w { "ws" } else { "tcp" })
            .collect();
        writeln!(f, "Script (replay: STOMPBOX_FUZZ_REPLAY={})", self.hex())?;
        writeln!(f, "  sessions {kinds:?}, seed {:#x}", self.seed)?;
        for (i, s) in self.steps.iter().enumerate() {
            let mut flags = String::new();
            if s.glue {
                flags.push_str(" +glue");
            }
            if s.sync {
                flags.push_str(" +sync");
            }
            if s.split != 0 {
                flags.push_str(&format!(" split={}", s.split));
            }
            writeln!(f, "  {i:2}: s{} {:?}{flags}", s.session, s.op)?;
        }
        Ok(())
    }
}

fn tx_of(b: u8) -> Option<u8> {
    (b >> 2 & 3 == 0).then_some(b >> 4)
}

fn decode(r: &[u8; STEP], sessions: usize) -> Step {
    let [b0, b1, b2, b3, b4, b5, b6, b7] = *r;
    let receipt = b5 & 3 != 0;
    let op = match b1 % 64 {
        0..=15 => Op::Send {
            dest: SEND_DESTS[usize::from(b2) % 9],
            body: match b3 % 8 {
                0..=3 => Op::text(b4),
                4 => Body::Counted(u16::from(b4)),
                5 => Body::Binary(u16::from(b4) * 4),
                6 => Body::Large(8 * 1024 + u16::from(b4) * 125),
                _ => Body::Text(u16::from(b4) * 8),
            },
            receipt,
            tx: tx_of(b6),
        },
        16..=23 => Op::Subscribe {
            dest: SUB_DESTS[usize::from(b2) % 9],
            ack: [AckMode::Auto, AckMode::Client, AckMode::Individual][usize::from(b3) % 3],
            prefetch: match b4 % 4 {
                0 | 1 => None,
                _ => Some(u16::from(b6 % 8) + 1),
            },
            receipt,
        },
        24..=29 => Op::Ack {
            target: match b2 % 8 {
                0..=4 => AckTarget::Real(b3),
                5 => AckTarget::TopicId(b3),
                6 => AckTarget::Stale(b3),
                _ => AckTarget::Bogus,
            },
            nack: false,
            receipt,
            tx: tx_of(b6),
        },
        30..=31 => Op::Ack {
            target: match b2 % 8 {
                0..=5 => AckTarget::Real(b3),
                6 => AckTarget::Stale(b3),
                _ => AckTarget::Bogus,
            },
            nack: true,
            receipt,
            tx: tx_of(b6),
        },
        32..=34 => Op::Unsubscribe { which: b2, receipt },
        35..=37 => Op::Begin,
        38..=40 => Op::Commit { which: b2, receipt },
        41..=42 => Op::Abort { which: b2, receipt },
        43..=44 => Op::Stall,
        45..=46 => Op::Resume,
        47..=49 => Op::Wait {
            ms: u16::from(b2 % 100) + 1,
        },
        50..=51 => Op::Connect {
            version: b2 % 3,
            stomp: b3 & 1 == 1,
            hb_send: [0, 0, 0, 150, 10_000][usize::from(b4) % 5],
            hb_want: [0, 0, 100, 250, 1000][usize::from(b6) % 5],
        },
        52..=53 => Op::Disconnect,
        54 => Op::Close,
        55 => Op::Garbage { len: b2, seed: b3 },
        56 => Op::WsGarbage,
        57..=59 => Op::Malformed(MALFORMED[usize::from(b2) % MALFORMED.len()]),
        60 => Op::Flood { hundreds: b2 % 64 },
        61 => Op::Heartbeat,
        // Rare (3/256 of the steps each): the admin API's calls that change things.
        62 if b2 & 3 != 0 => Op::AdminClose,
        63 if b2 & 3 != 0 => Op::AdminPurge(b2 >> 2 & 1),
        _ => Op::Stall,
    };
    Step {
        session: usize::from(b0 & 7) % sessions,
        op,
        glue: b0 & 0x30 == 0x30,
        sync: b0 & 0x40 != 0,
        split: if b7 & 3 == 0 { b7 >> 2 } else { 0 },
    }
}

impl Op {
    fn text(b: u8) -> Body {
        Body::Text(u16::from(b % 64))
    }
}
