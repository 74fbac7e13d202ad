//! Application and user destinations on a connection: a SEND to `/app/...` runs the
//! application's handler (inline, or on its worker pool), a SUBSCRIBE there may be answered by
//! a subscribe handler, and what handlers publish from other threads is encoded here.

use super::*;

pub(super) fn session_info<T>(s: &Session<T>) -> SessionInfo {
    SessionInfo {
        id: s.id.to_string(),
        login: s.login.clone(),
    }
}

/// A frame's headers as owned pairs: first value of each name, unescaped, without the ones the
/// broker handles itself.
pub(super) fn owned_headers(frame: &stomp::FrameRef<'_>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for h in frame.headers {
        let name = if frame.escaped {
            stomp::escape::unescape(h.name).unwrap_or(std::borrow::Cow::Borrowed(h.name))
        } else {
            std::borrow::Cow::Borrowed(h.name)
        };
        let name = String::from_utf8_lossy(&name).into_owned();
        if matches!(name.as_str(), "receipt" | "content-length" | "transaction")
            || out.iter().any(|(k, _)| *k == name)
        {
            continue;
        }
        if let Some(v) = frame.header(&name) {
            out.push((name, v.into_owned()));
        }
    }
    out
}

/// A SEND to an application destination: run its handler inline, or queue it for the pool
/// (whose RECEIPT then comes when the handler has returned).
pub(super) fn app_send(
    app: &AppConfig,
    path: &str,
    destination: &str,
    frame: &stomp::FrameRef<'_>,
    session: SessionInfo,
    ctx: &mut Ctx<'_>,
    reply: &mut Vec<u8>,
) -> Result<Option<Flow>, StompError> {
    use crate::app::{Handler, Placement};
    let Some((route, vars)) = app.sends.find(path) else {
        return Err(
            StompError::new(format!("no handler for destination '{destination}'"))
                .because(Cause::App),
        );
    };
    let Handler::Send(h, placement) = &route.value else {
        return Err(
            StompError::new(format!("no handler for destination '{destination}'"))
                .because(Cause::App),
        );
    };
    ctx.counters.messages_in += 1;
    let headers = owned_headers(frame);
    match placement {
        Placement::Inline => {
            let req = crate::app::AppRequest {
                destination,
                vars: &vars,
                headers: &headers,
                body: frame.body,
                session: &session,
            };
            let out = crate::server::apps::invoke_send(&**h, &req, &app.user_prefix)
                .map_err(|e| StompError::new(e.0).because(Cause::App))?;
            for m in &out {
                let msg = encode_outgoing(m, ctx.router, ctx.seq, ctx.enc);
                publish(msg, ctx);
            }
            Ok(None)
        }
        Placement::Pool => {
            let Some(pool) = ctx.workers else {
                return Err(StompError::new("no application worker pool").because(Cause::App));
            };
            let job = crate::server::apps::Job {
                kind: crate::server::apps::JobKind::Send(std::sync::Arc::clone(h)),
                destination: destination.to_string(),
                vars,
                headers,
                body: frame.body.to_vec(),
                session,
                origin: ctx.origin(),
                receipt: frame.header("receipt").map(|r| r.into_owned()),
            };
            submit(pool, job, ctx, reply)?;
            Ok(None)
        }
    }
}

/// A SUBSCRIBE to an application destination: its subscribe handler runs once on the pool and
/// its answer goes to this subscriber only; nothing is routed.
pub(super) fn app_subscribe(
    app: &AppConfig,
    path: &str,
    sub: &Subscription,
    frame: &stomp::FrameRef<'_>,
    session: SessionInfo,
    ctx: &mut Ctx<'_>,
    reply: &mut Vec<u8>,
) -> Result<(), StompError> {
    use crate::app::Handler;
    let Some((route, vars)) = app.subscribes.find(path) else {
        return Err(StompError::new(format!(
            "no subscribe handler for destination '{}'",
            sub.destination
        ))
        .because(Cause::App));
    };
    let Handler::Subscribe(h) = &route.value else {
        return Err(StompError::new("no subscribe handler").because(Cause::App));
    };
    let Some(pool) = ctx.workers else {
        return Err(StompError::new("no application worker pool").because(Cause::App));
    };
    let job = crate::server::apps::Job {
        kind: crate::server::apps::JobKind::Subscribe(std::sync::Arc::clone(h), sub.id.to_string()),
        destination: sub.destination.to_string(),
        vars,
        headers: owned_headers(frame),
        body: Vec::new(),
        session,
        origin: ctx.origin(),
        receipt: frame.header("receipt").map(|r| r.into_owned()),
    };
    submit(pool, job, ctx, reply)
}

/// Queue a job on the application pool; its RECEIPT is written when the handler has returned
/// (so the one the session wrote is dropped). A full pool is an ERROR "busy" (counted).
pub(super) fn submit(
    pool: &crate::server::apps::Pool,
    job: crate::server::apps::Job,
    ctx: &mut Ctx<'_>,
    reply: &mut Vec<u8>,
) -> Result<(), StompError> {
    if pool.submit(job).is_err() {
        ctx.counters.app_busy += 1;
        return Err(
            StompError::new("busy: application handlers are saturated").because(Cause::Refused)
        );
    }
    reply.clear();
    Ok(())
}

/// Encode a message from outside a frame (handlers, the embedding API).
pub fn encode_outgoing(
    m: &Outgoing,
    router: &crate::router::Router,
    seq: &mut u64,
    enc: &mut Vec<u8>,
) -> Published {
    let headers: Vec<Header<'_>> = m
        .headers
        .iter()
        .map(|(k, v)| Header {
            name: k.as_bytes(),
            value: v.as_bytes(),
        })
        .collect();
    let frame = stomp::FrameRef {
        command: stomp::Command::Send,
        headers: &headers,
        body: &m.body,
        escaped: false,
    };
    let id = if kind(&m.destination) == DestKind::Queue {
        None
    } else {
        *seq += 1;
        Some(router.msg_id(*seq))
    };
    encode_shared_as(&frame, &m.destination, &m.shown, id, enc)
}
