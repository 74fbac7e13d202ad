//! The embedding API: [`BrokerBuilder`] registers application handlers, static files and
//! prefixes on a [`Config`] and starts the server; [`Broker`] is the running broker, which
//! publishes from any thread. Above `server` and `app`, which do not know it.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::app::{
    outgoing, AppConfig, AppContext, AppError, AppRequest, Handler, Placement, StaticFile,
};
use crate::config::Config;
use crate::server::{self, Publisher, ServerHandle};

/// Builds an embedded broker.
#[derive(Debug)]
pub struct BrokerBuilder {
    config: Config,
    app: AppConfig,
}

impl BrokerBuilder {
    pub fn new(config: Config) -> Self {
        BrokerBuilder {
            config,
            app: AppConfig::default(),
        }
    }

    /// Handle SENDs to `<prefix><pattern>` on the worker pool.
    pub fn handler<F>(mut self, pattern: &str, f: F) -> Self
    where
        F: Fn(&AppRequest<'_>, &mut AppContext) -> Result<(), AppError> + Send + Sync + 'static,
    {
        self.app
            .sends
            .add(pattern, Handler::Send(Arc::new(f), Placement::Pool));
        self
    }

    /// Handle SENDs on the reactor itself: fastest, but the handler must not block.
    pub fn inline_handler<F>(mut self, pattern: &str, f: F) -> Self
    where
        F: Fn(&AppRequest<'_>, &mut AppContext) -> Result<(), AppError> + Send + Sync + 'static,
    {
        self.app
            .sends
            .add(pattern, Handler::Send(Arc::new(f), Placement::Inline));
        self
    }

    /// Answer SUBSCRIBEs to `<prefix><pattern>` once (on the worker pool).
    pub fn subscribe_handler<F>(mut self, pattern: &str, f: F) -> Self
    where
        F: Fn(&AppRequest<'_>) -> Result<Option<(Vec<(String, String)>, Vec<u8>)>, AppError>
            + Send
            + Sync
            + 'static,
    {
        self.app
            .subscribes
            .add(pattern, Handler::Subscribe(Arc::new(f)));
        self
    }

    /// Serve `body` at `path` to plain HTTP GETs on the WebSocket listener.
    pub fn static_file(mut self, path: &str, content_type: &str, body: &[u8]) -> Self {
        self.app.static_files.push(StaticFile {
            path: path.to_string(),
            content_type: content_type.to_string(),
            body: Arc::from(body),
        });
        self
    }

    /// Replace the application prefixes (default `["/app"]`).
    pub fn app_prefixes(mut self, prefixes: &[&str]) -> Self {
        self.app.prefixes = prefixes.iter().map(|p| p.to_string()).collect();
        self
    }

    pub fn user_prefix(mut self, prefix: &str) -> Self {
        self.app.user_prefix = prefix.to_string();
        self
    }

    /// Worker threads and pending-SEND bound of the pool.
    pub fn workers(mut self, threads: usize, queue: usize) -> Self {
        self.app.workers = threads.max(1);
        self.app.queue = queue.max(1);
        self
    }

    /// Bind and start in the background.
    pub fn start(self) -> io::Result<Broker> {
        let mut config = self.config;
        config.app = Some(Arc::new(self.app));
        let handle = server::start(config)?;
        let publisher = handle.publisher();
        Ok(Broker { handle, publisher })
    }
}

/// A running embedded broker.
pub struct Broker {
    handle: ServerHandle,
    publisher: Publisher,
}

impl Broker {
    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.handle.ws_addr()
    }

    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.handle.tcp_addr()
    }

    /// Publish from any thread. A message for a full queue under the `reject` overflow policy
    /// is lost (there is no session to answer): it is counted in the
    /// `stompbox_queue_rejected_total` metric.
    pub fn publish(&self, destination: &str, headers: &[(&str, &str)], body: &[u8]) {
        self.publisher
            .send(vec![outgoing(destination, destination, headers, body)]);
    }

    /// Send to every session of `user` subscribed to `/user{destination}`.
    pub fn send_to_user(
        &self,
        user: &str,
        destination: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) {
        let mut ctx = AppContext::new(self.publisher.user_prefix(), user);
        ctx.send_to_user(user, destination, headers, body);
        self.publisher.send(ctx.take());
    }

    /// The server's Prometheus metrics text.
    pub fn metrics(&self) -> String {
        self.handle.metrics()
    }

    /// Stop accepting, close every session gracefully, and wait.
    pub fn shutdown(self) -> io::Result<()> {
        self.handle.shutdown()
    }
}
