//! The server side of application destinations: the worker pool and the publisher that gets
//! messages from any thread into the reactors.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use super::mailbox::{Mail, Mailbox};
use crate::app::{
    AppContext, AppError, AppRequest, Outgoing, SendHandler, SessionInfo, SubscribeHandler,
};

/// What a pool job runs.
pub enum JobKind {
    Send(Arc<SendHandler>),
    /// A subscribe handler, with the subscription id to answer.
    Subscribe(Arc<SubscribeHandler>, String),
}

/// One application SEND or SUBSCRIBE for the pool. Owns its data: the read buffer it came from
/// is reused as soon as the reactor moves on.
pub struct Job {
    pub kind: JobKind,
    pub destination: String,
    pub vars: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub session: SessionInfo,
    /// (reactor, connection token) to report back to.
    pub origin: crate::router::Origin,
    pub receipt: Option<String>,
}

/// A subscribe handler's answer, for one subscription.
#[derive(Debug)]
pub struct SubscribeAnswer {
    /// The subscription it answers.
    pub sub_id: String,
    pub destination: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// How a job ended, sent back to the connection's reactor.
#[derive(Debug)]
pub struct Done {
    pub token: usize,
    pub receipt: Option<String>,
    pub error: Option<String>,
    /// A subscribe handler's answer, for the subscriber only.
    pub message: Option<SubscribeAnswer>,
}

/// Gets messages into the reactors from any thread. A destination always goes through the
/// same reactor, so messages from one thread to one destination keep their order.
#[derive(Clone)]
pub struct Publisher {
    pub(crate) reactors: Vec<Mailbox>,
    pub(crate) user_prefix: String,
}

impl Publisher {
    pub fn user_prefix(&self) -> &str {
        &self.user_prefix
    }

    /// Route messages (blocks only if a reactor's mailbox is full: backpressure on the caller,
    /// never on a reactor, since reactors never call this).
    pub fn send(&self, msgs: Vec<Outgoing>) {
        // One mail (and one wake-up) per reactor, in order.
        let mut per: Vec<Vec<Outgoing>> = (0..self.reactors.len()).map(|_| Vec::new()).collect();
        for m in msgs {
            let i = crate::router::spread(&m.destination, self.reactors.len());
            if let Some(v) = per.get_mut(i) {
                v.push(m);
            }
        }
        for (mb, v) in self.reactors.iter().zip(per) {
            if !v.is_empty() && mb.tx.send(Mail::External(v)).is_ok() {
                mb.wake();
            }
        }
    }

    fn done(&self, reactor: usize, done: Done) {
        if let Some(mb) = self.reactors.get(reactor) {
            if mb.tx.send(Mail::AppDone(done)).is_ok() {
                mb.wake();
            }
        }
    }
}

/// A pool's queue is full (or the pool is gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolFull;

/// The bounded pool's submitting side. Each worker has its own queue and a session's jobs
/// always go to the same worker, so one session's SENDs run, and publish, in the order sent
/// (as Spring's `preservePublishOrder`); different sessions run side by side.
#[derive(Clone)]
pub struct Pool {
    txs: Vec<Sender<Job>>,
}

impl Pool {
    /// Start `threads` workers with room for `queue` waiting jobs in all.
    pub fn start(
        threads: usize,
        queue: usize,
        publisher: Publisher,
    ) -> std::io::Result<(Pool, Vec<std::thread::JoinHandle<std::io::Result<()>>>)> {
        let threads = threads.max(1);
        let per_worker = (queue / threads).max(1);
        let mut handles = Vec::new();
        let mut txs = Vec::new();
        for i in 0..threads {
            let (tx, rx) = crossbeam_channel::bounded::<Job>(per_worker);
            txs.push(tx);
            let rx: Receiver<Job> = rx;
            let p = publisher.clone();
            handles.push(
                std::thread::Builder::new()
                    .name(format!("app-worker-{i}"))
                    .spawn(move || {
                        // Ends when every sender (the reactors' handles) is gone.
                        while let Ok(job) = rx.recv() {
                            run(job, &p);
                        }
                        Ok(())
                    })?,
            );
        }
        Ok((Pool { txs }, handles))
    }

    /// Queue a job on its session's worker; `Err` when that worker's queue is full (the caller
    /// answers ERROR "busy").
    pub fn submit(&self, job: Job) -> Result<(), PoolFull> {
        let tx = self
            .txs
            .get(crate::router::spread(&job.session.id, self.txs.len()))
            .ok_or(PoolFull)?;
        tx.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) | TrySendError::Disconnected(_) => PoolFull,
        })
    }
}

/// Run a handler, catching a panic: the session gets an ERROR, the broker goes on.
pub fn invoke_send(
    h: &SendHandler,
    req: &AppRequest<'_>,
    user_prefix: &str,
) -> Result<Vec<Outgoing>, AppError> {
    let mut ctx = AppContext::new(user_prefix, req.session.user());
    match catch_unwind(AssertUnwindSafe(|| h(req, &mut ctx))) {
        Ok(Ok(())) => Ok(ctx.take()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(AppError::new(format!(
            "handler for {} failed (panicked)",
            req.destination
        ))),
    }
}

fn run(job: Job, p: &Publisher) {
    let req = AppRequest {
        destination: &job.destination,
        vars: &job.vars,
        headers: &job.headers,
        body: &job.body,
        session: &job.session,
    };
    let mut done = Done {
        token: job.origin.token,
        receipt: job.receipt.clone(),
        error: None,
        message: None,
    };
    match &job.kind {
        JobKind::Send(h) => match invoke_send(&**h, &req, &p.user_prefix) {
            Ok(out) => p.send(out),
            Err(e) => done.error = Some(e.0),
        },
        JobKind::Subscribe(h, sub_id) => match catch_unwind(AssertUnwindSafe(|| h(&req))) {
            Ok(Ok(Some((headers, body)))) => {
                done.message = Some(SubscribeAnswer {
                    sub_id: sub_id.clone(),
                    destination: job.destination.clone(),
                    headers,
                    body,
                });
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => done.error = Some(e.0),
            Err(_) => {
                done.error = Some(format!(
                    "subscribe handler for {} failed (panicked)",
                    job.destination
                ))
            }
        },
    }
    p.done(job.origin.reactor, done);
}
