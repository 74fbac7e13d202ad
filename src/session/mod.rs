//! One STOMP session's protocol state: CONNECT negotiation, subscriptions by id, receipts and
//! errors. Sans-IO: frames in, reply bytes and [`Action`]s out; the server applies the actions
//! (routing, closing) and owns the clock, which it passes in ([`liveness`]: heart-beats).

pub mod liveness;

pub use liveness::{Due, Liveness};

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use crate::stomp::{self, heartbeat, Command, FrameRef, Version};

/// How a subscription acknowledges messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    Auto,
    Client,
    ClientIndividual,
}

impl AckMode {
    pub fn parse(v: &str) -> Option<AckMode> {
        match v {
            "auto" => Some(AckMode::Auto),
            "client" => Some(AckMode::Client),
            "client-individual" => Some(AckMode::ClientIndividual),
            _ => None,
        }
    }
}

/// What an authenticator can say at once, on the reactor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthCheck {
    Allow,
    Deny,
    /// Needs slow work (e.g. a password hash): run [`Authenticator::authenticate`] off the
    /// reactor, then handle the CONNECT again with the answer.
    Slow,
}

/// Decides whether a CONNECT's credentials are admitted.
pub trait Authenticator: Send + Sync + fmt::Debug {
    /// The fast answer, on a reactor thread: must not block.
    fn check(&self, login: Option<&str>, passcode: Option<&str>, host: Option<&str>) -> AuthCheck {
        if self.authenticate(login, passcode, host) {
            AuthCheck::Allow
        } else {
            AuthCheck::Deny
        }
    }

    /// The full answer; called off the reactor when `check` said `Slow`.
    fn authenticate(&self, login: Option<&str>, passcode: Option<&str>, host: Option<&str>)
        -> bool;

    /// Moves whenever the users change (a reload): live sessions are then checked again with
    /// [`Authenticator::admits`].
    fn generation(&self) -> u64 {
        0
    }

    /// May a session logged in as `login` (`None`: anonymous) stay connected? Must not block.
    fn admits(&self, login: Option<&str>) -> bool {
        let _ = login;
        true
    }

    /// How long to hold back the answer after a failure from `ip` (bounded state; a success
    /// resets it). Runs off the reactor.
    fn failure_delay(&self, ip: Option<std::net::IpAddr>, ok: bool) -> std::time::Duration {
        let _ = (ip, ok);
        std::time::Duration::ZERO
    }
}

/// The default until authentication is configured: any login, or none, is accepted.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Authenticator for AllowAll {
    fn authenticate(&self, _: Option<&str>, _: Option<&str>, _: Option<&str>) -> bool {
        true
    }
}

#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Who may connect.
    pub authenticator: Arc<dyn Authenticator>,
    /// (can send every, wants to receive every) in ms; 0 = never.
    pub heartbeat: (u64, u64),
    /// Smallest interval the server will agree to, either way, in ms.
    pub min_heartbeat: u64,
    /// Subscriptions one session may hold.
    pub max_subscriptions: usize,
    /// Words in a wildcard subscription (`/topic/a.*.#`), after consecutive `#` collapse.
    pub max_pattern_words: usize,
    /// Queue prefetch when SUBSCRIBE has no `prefetch-count`, and the most it may ask for.
    pub default_prefetch: usize,
    pub max_prefetch: usize,
    /// Open transactions per session, and frames buffered per transaction.
    pub max_transactions: usize,
    pub max_tx_frames: usize,
    /// Bytes (headers and body, as received) buffered per transaction.
    pub max_tx_bytes: usize,
    /// The `server` header of CONNECTED.
    pub server_name: String,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            authenticator: Arc::new(AllowAll),
            heartbeat: (10_000, 10_000),
            min_heartbeat: 100,
            max_subscriptions: 1024,
            max_pattern_words: 32,
            default_prefetch: 100,
            max_prefetch: 10_000,
            max_transactions: 16,
            max_tx_frames: 10_000,
            max_tx_bytes: 4 << 20,
            server_name: concat!("stompbox/", env!("CARGO_PKG_VERSION")).into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Subscription {
    pub id: Box<str>,
    /// Shared with the router once it routes the subscription (one string per destination).
    pub destination: Arc<str>,
    pub ack: AckMode,
    /// Unacked messages a queue may have in flight to this subscription.
    pub prefetch: usize,
    /// The server's handle for this subscription (e.g. its queue consumer key).
    pub handle: Option<u64>,
    /// Where the server routes it, when not `destination` itself (user destinations).
    pub route: Option<Box<str>>,
}

impl Subscription {
    /// The destination this subscription is routed by.
    pub fn route(&self) -> &str {
        self.route.as_deref().unwrap_or(&self.destination)
    }
}

/// What the server must do after a frame was accepted.
#[derive(Debug)]
pub enum Action<'f> {
    /// Nothing beyond the reply bytes (if any).
    None,
    /// CONNECTED was written; heart-beats are now (send every, expect every) ms.
    Connected { send_ms: u64, recv_ms: u64 },
    /// Route this subscription (index into [`Session::subscriptions`]).
    Subscribe(usize),
    /// Stop routing this subscription.
    Unsubscribe(Subscription),
    /// Publish the SEND frame to `destination` (at COMMIT, if in a transaction).
    Publish {
        destination: Cow<'f, str>,
        transaction: Option<Cow<'f, str>>,
    },
    /// ACK or NACK a message by its ack id (at COMMIT, if in a transaction). The server
    /// validates the id.
    Ack {
        id: Cow<'f, str>,
        nack: bool,
        transaction: Option<Cow<'f, str>>,
    },
    /// A transaction began.
    Begin,
    /// Apply everything buffered in this transaction, in order: take it with
    /// [`Session::commit`].
    Commit(String),
    /// This transaction and what it buffered are gone.
    Abort(String),
    /// Close gracefully once the reply (a RECEIPT, if asked for) is flushed.
    Disconnect,
    /// The credentials need slow checking: run the authenticator off the reactor, set
    /// [`Session::preauth`] to its answer, and hand the same CONNECT frame in again.
    Authenticate {
        login: Option<String>,
        passcode: Option<String>,
        host: Option<String>,
    },
}

/// A protocol error: the server sends an ERROR frame with this `message` (and `receipt-id` if
/// the frame had a receipt), then closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StompError {
    pub message: Cow<'static, str>,
    pub receipt: Option<String>,
    /// Why, for the metrics (`stompbox_stomp_errors_total{cause=...}`).
    pub cause: Cause,
}

/// Why a session ended with an ERROR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// A frame the protocol does not allow: malformed, missing a header, out of order, an
    /// unknown id or transaction.
    Protocol,
    /// A configured bound: frame size, headers, subscriptions, transactions, pattern words.
    Limit,
    /// Authentication or the ACL: refused, denied, or revoked.
    Access,
    /// The broker had no room: a full queue, too many queues, busy worker pools.
    Refused,
    /// An application handler failed (or there is none for the destination).
    App,
}

impl Cause {
    pub const ALL: [Cause; 5] = [
        Cause::Protocol,
        Cause::Limit,
        Cause::Access,
        Cause::Refused,
        Cause::App,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Cause::Protocol => "protocol",
            Cause::Limit => "limit",
            Cause::Access => "access",
            Cause::Refused => "refused",
            Cause::App => "app",
        }
    }
}

impl StompError {
    pub fn new(message: impl Into<Cow<'static, str>>) -> Self {
        StompError {
            message: message.into(),
            receipt: None,
            cause: Cause::Protocol,
        }
    }

    /// The same error, for another cause.
    pub fn because(mut self, cause: Cause) -> Self {
        self.cause = cause;
        self
    }

    fn with_receipt(mut self, frame: &FrameRef<'_>) -> Self {
        self.receipt = frame.header("receipt").map(|r| r.into_owned());
        self
    }

    /// Append the ERROR frame.
    pub fn write(&self, out: &mut Vec<u8>, version: Version) {
        stomp::write_error(out, version, &self.message, self.receipt.as_deref());
    }
}

/// One session. `T` is what the server buffers for a frame inside a transaction (a message
/// ready to route, an acknowledgement): the session holds it until COMMIT or ABORT.
#[derive(Debug)]
pub struct Session<T = ()> {
    pub id: SessionId,
    pub version: Version,
    pub connected: bool,
    pub login: Option<String>,
    subs: Vec<Subscription>,
    /// Open transactions, in the order they began.
    txs: Vec<Transaction<T>>,
    /// The authenticator's answer for the CONNECT being handled again, after `Authenticate`.
    pub preauth: Option<bool>,
}

/// An open transaction: the frames counted into it (against the frame and byte bounds) and
/// what the server buffered for them, in order.
#[derive(Debug)]
struct Transaction<T> {
    name: String,
    frames: usize,
    bytes: usize,
    ops: Vec<T>,
}

/// A session's id (`s<reactor>-<n>`), held inline: no heap block per session.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId {
    buf: [u8; SessionId::MAX],
    len: u8,
}

impl SessionId {
    /// The longest id kept (longer ones are cut at a character boundary): `s63-` and 19
    /// digits fit, and the whole id is as small as a `String`'s pointer, length and capacity.
    pub const MAX: usize = 23;

    /// `s<reactor>-<n>`, written in place.
    pub fn numbered(reactor: usize, n: u64) -> SessionId {
        let mut id = SessionId {
            buf: [0; SessionId::MAX],
            len: 0,
        };
        let mut tmp = [0u8; 20];
        id.push(b"s");
        id.push(crate::stomp::usize_digits(reactor, &mut tmp));
        id.push(b"-");
        id.push(crate::stomp::usize_digits(n as usize, &mut tmp));
        id
    }

    fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if let Some(slot) = self.buf.get_mut(self.len as usize) {
                *slot = b;
                self.len += 1;
            }
        }
    }

    pub fn as_str(&self) -> &str {
        let b = self.buf.get(..self.len as usize).unwrap_or_default();
        match std::str::from_utf8(b) {
            Ok(s) => s,
            // Cut inside a character: the valid part.
            Err(e) => std::str::from_utf8(b.get(..e.valid_up_to()).unwrap_or_default())
                .unwrap_or_default(),
        }
    }
}

impl From<&str> for SessionId {
    fn from(s: &str) -> SessionId {
        let mut id = SessionId {
            buf: [0; SessionId::MAX],
            len: 0,
        };
        id.push(s.as_bytes());
        id
    }
}

impl From<String> for SessionId {
    fn from(s: String) -> SessionId {
        SessionId::from(s.as_str())
    }
}

impl std::ops::Deref for SessionId {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<T> Session<T> {
    pub fn new(id: impl Into<SessionId>) -> Self {
        Session {
            id: id.into(),
            version: Version::V1_2,
            connected: false,
            login: None,
            subs: Vec::new(),
            txs: Vec::new(),
            preauth: None,
        }
    }

    pub fn subscriptions(&self) -> &[Subscription] {
        &self.subs
    }

    /// Forget a subscription the server refused to route (e.g. denied by the ACL).
    pub fn remove_subscription(&mut self, i: usize) -> Option<Subscription> {
        (i < self.subs.len()).then(|| self.subs.swap_remove(i))
    }

    pub fn subscription_mut(&mut self, i: usize) -> Option<&mut Subscription> {
        self.subs.get_mut(i)
    }

    /// Count a frame into a transaction named by the frame's `transaction` header.
    fn in_tx<'f>(
        &mut self,
        frame: &FrameRef<'f>,
        cfg: &SessionConfig,
    ) -> Result<Option<Cow<'f, str>>, StompError> {
        let Some(name) = frame.header("transaction") else {
            return Ok(None);
        };
        let tx = self
            .txs
            .iter_mut()
            .find(|t| *t.name == *name)
            .ok_or_else(|| StompError::new(format!("unknown transaction '{name}'")))?;
        if tx.frames >= cfg.max_tx_frames {
            return Err(
                StompError::new(format!("too many frames in transaction '{name}'"))
                    .because(Cause::Limit),
            );
        }
        let bytes = tx.bytes.saturating_add(frame.size());
        if bytes > cfg.max_tx_bytes {
            return Err(StompError::new(format!(
                "transaction '{name}' would hold more than {} bytes",
                cfg.max_tx_bytes
            ))
            .because(Cause::Limit));
        }
        tx.frames += 1;
        tx.bytes = bytes;
        Ok(Some(name))
    }

    /// Where the transaction named by the frame's `transaction` header is.
    fn find_tx(&self, frame: &FrameRef<'_>) -> Result<(usize, String), StompError> {
        let name = required(frame, "transaction")?;
        let i = self
            .txs
            .iter()
            .position(|t| *t.name == *name)
            .ok_or_else(|| StompError::new(format!("unknown transaction '{name}'")))?;
        Ok((i, name.into_owned()))
    }

    /// Keep `op` in transaction `name` until it ends (the server's buffer for a frame that
    /// [`Session::handle`] counted into it). Nothing happens for a transaction not open.
    pub fn buffer(&mut self, name: &str, op: T) {
        if let Some(t) = self.txs.iter_mut().find(|t| t.name == name) {
            t.ops.push(op);
        }
    }

    /// After [`Action::Commit`]: end transaction `name`, and what it buffered, in order.
    pub fn commit(&mut self, name: &str) -> Vec<T> {
        match self.txs.iter().position(|t| t.name == name) {
            Some(i) => self.txs.remove(i).ops,
            None => Vec::new(),
        }
    }

    /// Open transactions.
    pub fn transactions(&self) -> usize {
        self.txs.len()
    }

    /// Handle one client frame. Reply bytes (CONNECTED, RECEIPT) are appended to `out`; the
    /// server applies the returned action before flushing them, so a RECEIPT always follows its
    /// effect.
    pub fn handle<'f>(
        &mut self,
        frame: &FrameRef<'f>,
        cfg: &SessionConfig,
        out: &mut Vec<u8>,
    ) -> Result<Action<'f>, StompError> {
        let res = self.dispatch(frame, cfg, out);
        res.map_err(|e| e.with_receipt(frame))
    }

    fn dispatch<'f>(
        &mut self,
        frame: &FrameRef<'f>,
        cfg: &SessionConfig,
        out: &mut Vec<u8>,
    ) -> Result<Action<'f>, StompError> {
        if !self.connected {
            return match frame.command {
                Command::Connect | Command::Stomp => self.connect(frame, cfg, out),
                _ => Err(StompError::new("expected CONNECT or STOMP frame")),
            };
        }
        let action = match frame.command {
            Command::Connect | Command::Stomp => {
                return Err(StompError::new("already connected"));
            }
            Command::Send => {
                let destination = required(frame, "destination")?;
                let transaction = self.in_tx(frame, cfg)?;
                Action::Publish {
                    destination,
                    transaction,
                }
            }
            Command::Subscribe => self.subscribe(frame, cfg)?,
            Command::Unsubscribe => {
                let id = self.sub_id(frame)?;
                let pos =
                    self.subs.iter().position(|s| *s.id == *id).ok_or_else(|| {
                        StompError::new(format!("no subscription with id '{id}'"))
                    })?;
                Action::Unsubscribe(self.subs.swap_remove(pos))
            }
            Command::Ack | Command::Nack => {
                let name = if self.version == Version::V1_2 {
                    "id"
                } else {
                    "message-id"
                };
                let id = required(frame, name)?;
                let transaction = self.in_tx(frame, cfg)?;
                Action::Ack {
                    id,
                    nack: frame.command == Command::Nack,
                    transaction,
                }
            }
            Command::Begin => {
                let name = required(frame, "transaction")?;
                if self.txs.iter().any(|t| *t.name == *name) {
                    return Err(StompError::new(format!(
                        "transaction '{name}' already begun"
                    )));
                }
                if self.txs.len() >= cfg.max_transactions {
                    return Err(StompError::new("too many open transactions").because(Cause::Limit));
                }
                self.txs.push(Transaction {
                    name: name.into_owned(),
                    frames: 0,
                    bytes: 0,
                    ops: Vec::new(),
                });
                Action::Begin
            }
            // The server takes what it buffered with `commit`.
            Command::Commit => Action::Commit(self.find_tx(frame)?.1),
            Command::Abort => {
                let (i, name) = self.find_tx(frame)?;
                self.txs.remove(i);
                Action::Abort(name)
            }
            Command::Disconnect => Action::Disconnect,
            Command::Connected | Command::Message | Command::Receipt | Command::Error => {
                return Err(StompError::new(format!(
                    "{} is a server frame",
                    frame.command.as_str()
                )));
            }
        };
        if let Some(r) = frame.header("receipt") {
            stomp::write_frame(
                out,
                self.version,
                Command::Receipt,
                &[("receipt-id", &r)],
                b"",
            );
        }
        Ok(action)
    }

    fn connect<'f>(
        &mut self,
        frame: &FrameRef<'f>,
        cfg: &SessionConfig,
        out: &mut Vec<u8>,
    ) -> Result<Action<'f>, StompError> {
        let version = match frame.header("accept-version") {
            None => Version::V1_0,
            Some(list) => list
                .split(',')
                .filter_map(Version::parse)
                .max()
                .ok_or_else(|| {
                    StompError::new("no common protocol version: this server speaks 1.0,1.1,1.2")
                })?,
        };
        self.version = version;
        let (mut send_ms, mut recv_ms) = (0, 0);
        if version >= Version::V1_1 {
            if let Some(hb) = frame.header("heart-beat") {
                let client = heartbeat::parse_header(&hb)
                    .ok_or_else(|| StompError::new("malformed heart-beat header"))?;
                (send_ms, recv_ms) = heartbeat::negotiate(client, cfg.heartbeat, cfg.min_heartbeat);
            }
        }
        let login = frame.header("login");
        let passcode = frame.header("passcode");
        let host = frame.header("host");
        let verdict = match self.preauth.take() {
            Some(true) => AuthCheck::Allow,
            Some(false) => AuthCheck::Deny,
            None => cfg
                .authenticator
                .check(login.as_deref(), passcode.as_deref(), host.as_deref()),
        };
        match verdict {
            AuthCheck::Allow => {}
            AuthCheck::Deny => return Err(StompError::new("access refused").because(Cause::Access)),
            AuthCheck::Slow => {
                return Ok(Action::Authenticate {
                    login: login.map(Cow::into_owned),
                    passcode: passcode.map(Cow::into_owned),
                    host: host.map(Cow::into_owned),
                })
            }
        }
        self.login = login.map(Cow::into_owned);
        self.connected = true;
        let hb = format!("{},{}", send_ms, recv_ms);
        let mut headers: Vec<(&str, &str)> = vec![
            ("version", version.as_str()),
            ("server", &cfg.server_name),
            ("session", &self.id),
        ];
        if version >= Version::V1_1 {
            headers.push(("heart-beat", &hb));
        }
        stomp::write_frame(out, version, Command::Connected, &headers, b"");
        Ok(Action::Connected { send_ms, recv_ms })
    }

    /// 1.0 allows SUBSCRIBE without an id; it then defaults to the destination.
    fn sub_id<'f>(&self, frame: &FrameRef<'f>) -> Result<Cow<'f, str>, StompError> {
        match frame.header("id") {
            Some(id) => Ok(id),
            None if self.version == Version::V1_0 => {
                Ok(frame.header("destination").ok_or_else(|| {
                    StompError::new("UNSUBSCRIBE needs an 'id' or 'destination' header")
                })?)
            }
            None => Err(StompError::new("missing 'id' header")),
        }
    }

    fn subscribe<'f>(
        &mut self,
        frame: &FrameRef<'f>,
        cfg: &SessionConfig,
    ) -> Result<Action<'f>, StompError> {
        let destination = required(frame, "destination")?;
        let id = self.sub_id(frame)?;
        let ack = match frame.header("ack") {
            None => AckMode::Auto,
            Some(a) => AckMode::parse(&a)
                .ok_or_else(|| StompError::new(format!("invalid ack mode '{a}'")))?,
        };
        let prefetch = match frame.header("prefetch-count") {
            None => cfg.default_prefetch,
            Some(p) => match p.trim().parse::<usize>() {
                Ok(n) if n > 0 => n.min(cfg.max_prefetch),
                _ => return Err(StompError::new(format!("invalid prefetch-count '{p}'"))),
            },
        };
        if self.subs.iter().any(|s| *s.id == *id) {
            return Err(StompError::new(format!("duplicate subscription id '{id}'")));
        }
        if self.subs.len() >= cfg.max_subscriptions {
            return Err(StompError::new("too many subscriptions").because(Cause::Limit));
        }
        if self.subs.is_empty() {
            // Most sessions hold one subscription: room for one, not the four a first push
            // makes room for.
            self.subs.reserve_exact(1);
        }
        self.subs.push(Subscription {
            id: id.into(),
            destination: Arc::from(destination.as_ref()),
            ack,
            prefetch,
            handle: None,
            route: None,
        });
        Ok(Action::Subscribe(self.subs.len() - 1))
    }
}

fn required<'f>(frame: &FrameRef<'f>, name: &'static str) -> Result<Cow<'f, str>, StompError> {
    match frame.header(name) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(StompError::new(format!(
            "{} frame without '{}' header",
            frame.command.as_str(),
            name
        ))),
    }
}

#[cfg(test)]
mod tests;
