//! Application destinations and user destinations: what an embedding service registers (see
//! [`crate::embed`] for the builder and the running broker).
//!
//! A SEND to an application destination (default prefix `/app`) never reaches subscribers
//! directly: it runs the handler registered for the best-matching pattern (with path
//! variables, `/chat/{room}`), which may publish anywhere, reply to the sender's user, or fail
//! with an ERROR for that session only. Handlers run on a bounded worker pool by default (a
//! slow or blocking handler never stalls a reactor), or inline on the reactor when registered
//! with [`crate::BrokerBuilder::inline_handler`]. A SUBSCRIBE to an application destination runs a
//! subscribe handler once and sends its answer to that subscriber only.
//!
//! User destinations: a session's SUBSCRIBE to `/user/queue/x` receives what is sent to its
//! user (its login, or its session id when anonymous) at `/queue/x`, on every session the user
//! has open, on any reactor.
//!
//! ```no_run
//! use stompbox::app::AppError;
//! use stompbox::BrokerBuilder;
//!
//! let broker = BrokerBuilder::new(stompbox::Config::default())
//!     .handler("/chat/{room}", |req, ctx| {
//!         let room = req.var("room").unwrap_or("lobby");
//!         let text = std::str::from_utf8(req.body).map_err(|_| AppError::new("not UTF-8"))?;
//!         ctx.publish(&format!("/topic/chat/{room}"), &[], text.as_bytes());
//!         Ok(())
//!     })
//!     .start()
//!     .expect("broker starts");
//! broker.publish("/topic/news", &[("content-type", "text/plain")], b"hello");
//! broker.shutdown().expect("clean shutdown");
//! ```

mod routes;

use std::fmt;
use std::sync::Arc;

pub use routes::{Route, Routes};

/// A handler's failure: becomes an ERROR frame (with this message) for the sending session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppError(pub String);

impl AppError {
    pub fn new(msg: impl Into<String>) -> Self {
        AppError(msg.into())
    }
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who sent the frame.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub id: String,
    pub login: Option<String>,
}

impl SessionInfo {
    /// The name user destinations address this session by: its login, else its session id.
    pub fn user(&self) -> &str {
        self.login.as_deref().unwrap_or(&self.id)
    }
}

/// One application SEND (or SUBSCRIBE), as a handler sees it.
#[derive(Debug)]
pub struct AppRequest<'a> {
    /// The full destination, e.g. `/app/chat/5`.
    pub destination: &'a str,
    /// Path variables of the matched pattern.
    pub vars: &'a [(String, String)],
    /// The frame's headers (first value of each name, unescaped).
    pub headers: &'a [(String, String)],
    /// The body: borrowed from the read buffer for inline handlers.
    pub body: &'a [u8],
    pub session: &'a SessionInfo,
}

impl AppRequest<'_> {
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A message a handler (or the embedding application) sends.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Where it is routed (a topic, queue or internal user destination).
    pub destination: String,
    /// The `destination` header subscribers see (differs for user destinations).
    pub shown: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The internal routing key of user `user`'s destination `dest` (e.g. `/queue/errors`):
/// `/user/<user>/queue/errors`. A client may also SEND to it directly.
pub fn user_route(user_prefix: &str, user: &str, dest: &str) -> String {
    format!("{}/{user}{dest}", user_prefix.trim_end_matches('/'))
}

/// What a handler can do. Everything it sends is routed after it returns.
#[derive(Debug)]
pub struct AppContext {
    user_prefix: String,
    sender: String,
    out: Vec<Outgoing>,
}

impl AppContext {
    pub(crate) fn new(user_prefix: &str, sender: &str) -> Self {
        AppContext {
            user_prefix: user_prefix.to_string(),
            sender: sender.to_string(),
            out: Vec::new(),
        }
    }

    pub(crate) fn take(&mut self) -> Vec<Outgoing> {
        std::mem::take(&mut self.out)
    }

    /// Publish to any broker destination (`/topic/...`, `/queue/...`).
    pub fn publish(&mut self, destination: &str, headers: &[(&str, &str)], body: &[u8]) {
        self.out
            .push(outgoing(destination, destination, headers, body));
    }

    /// Send to every session of `user` subscribed to `/user{destination}`.
    pub fn send_to_user(
        &mut self,
        user: &str,
        destination: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) {
        let route = user_route(&self.user_prefix, user, destination);
        let shown = format!("{}{}", self.user_prefix.trim_end_matches('/'), destination);
        self.out.push(outgoing(&route, &shown, headers, body));
    }

    /// Reply to the sender's user at `destination` (e.g. `/queue/reply`, received through a
    /// subscription to `/user/queue/reply`).
    pub fn reply(&mut self, destination: &str, headers: &[(&str, &str)], body: &[u8]) {
        let user = self.sender.clone();
        self.send_to_user(&user, destination, headers, body);
    }
}

pub(crate) fn outgoing(
    route: &str,
    shown: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Outgoing {
    Outgoing {
        destination: route.to_string(),
        shown: shown.to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: body.to_vec(),
    }
}

/// A SEND handler.
pub type SendHandler =
    dyn Fn(&AppRequest<'_>, &mut AppContext) -> Result<(), AppError> + Send + Sync + 'static;

/// A subscribe handler: what to send the new subscriber (headers, body), if anything.
pub type SubscribeHandler = dyn Fn(&AppRequest<'_>) -> Result<Option<(Vec<(String, String)>, Vec<u8>)>, AppError>
    + Send
    + Sync
    + 'static;

/// Where a SEND handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// On the worker pool (default): may block.
    Pool,
    /// On the reactor that read the frame: must not block.
    Inline,
}

#[derive(Clone)]
pub(crate) enum Handler {
    Send(Arc<SendHandler>, Placement),
    Subscribe(Arc<SubscribeHandler>),
}

impl fmt::Debug for Handler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Handler::Send(_, p) => write!(f, "Send({p:?})"),
            Handler::Subscribe(_) => f.write_str("Subscribe"),
        }
    }
}

/// Application routing: prefixes, handlers and the pool's size.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// Destination prefixes routed to handlers (default `/app`).
    pub prefixes: Vec<String>,
    /// The user-destination prefix (default `/user`).
    pub user_prefix: String,
    /// Worker threads for pool handlers.
    pub workers: usize,
    /// Application SENDs waiting for a worker before new ones get ERROR "busy".
    pub queue: usize,
    pub(crate) sends: Routes<Handler>,
    pub(crate) subscribes: Routes<Handler>,
    /// Files served over plain HTTP GET on the WebSocket listener (e.g. a chat page at `/`).
    pub static_files: Vec<StaticFile>,
}

/// A file served at `path` on the WebSocket listener.
#[derive(Debug, Clone)]
pub struct StaticFile {
    pub path: String,
    pub content_type: String,
    pub body: Arc<[u8]>,
}

/// Where user destinations start (`/user/queue/...`), as in Spring.
pub const DEFAULT_USER_PREFIX: &str = "/user";

impl Default for AppConfig {
    fn default() -> Self {
        AppConfig {
            prefixes: vec!["/app".into()],
            user_prefix: DEFAULT_USER_PREFIX.into(),
            workers: 4,
            queue: 1024,
            sends: Routes::default(),
            subscribes: Routes::default(),
            static_files: Vec::new(),
        }
    }
}

impl AppConfig {
    /// The destination with its application prefix removed, if it has one.
    pub fn strip<'d>(&self, destination: &'d str) -> Option<&'d str> {
        self.prefixes.iter().find_map(|p| {
            let rest = destination.strip_prefix(p.trim_end_matches('/'))?;
            (rest.is_empty() || rest.starts_with('/')).then_some(rest)
        })
    }

    /// `/user/bob/queue/x` -> `/user/queue/x`: what the receiver sees as `destination`.
    pub fn user_shown(&self, route: &str) -> Option<String> {
        let p = self.user_prefix.trim_end_matches('/');
        let rest = route.strip_prefix(p)?.strip_prefix('/')?;
        let (_, dest) = rest.split_once('/')?;
        Some(format!("{p}/{dest}"))
    }

    /// `/user/<name>/...`: a user destination named explicitly, which only SEND may use.
    pub fn others_user_dest(&self, destination: &str) -> bool {
        let p = self.user_prefix.trim_end_matches('/');
        destination
            .strip_prefix(p)
            .and_then(|r| r.strip_prefix('/'))
            .is_some_and(|r| !r.starts_with("queue/") && !r.starts_with("topic/"))
    }

    /// `/user/queue/x` -> `/queue/x` (a subscription to the session's own user destination).
    pub fn own_user_dest<'d>(&self, destination: &'d str) -> Option<&'d str> {
        let rest = destination.strip_prefix(self.user_prefix.trim_end_matches('/'))?;
        (rest.starts_with("/queue/") || rest.starts_with("/topic/")).then_some(rest)
    }
}
