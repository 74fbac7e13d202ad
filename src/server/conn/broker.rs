//! The broker's side of a STOMP connection: frames in (over TCP, or out of WebSocket
//! messages), each handled by the session and then applied: subscriptions, publishing to topics
//! and queues, acknowledgements, transactions, access rules, application and user destinations,
//! the worker pools' answers and the queues' verdicts. No socket here: bytes come in as slices
//! and replies go to the connection's outbound queue through [`super::reply`].

use super::*;

pub(super) fn new_stomp(sessions: &mut u64, reactor: usize, now: Instant) -> Box<StompState> {
    *sessions += 1;
    Box::new(StompState {
        opened: now,
        bytes_in: 0,
        session: Session::new(SessionId::numbered(reactor, *sessions)),
        stash: Vec::new(),
        auth_pending: false,
        auth_hold: None,
        memory_blocked: false,
        acl: None,
        fan_out_first: false,
    })
}

/// What the connection must do after STOMP input.
#[derive(Debug, Clone, Copy)]
pub(super) enum Flow {
    Connected { send_ms: u64, recv_ms: u64 },
    Close { error: bool },
}

/// A whole WebSocket message of STOMP bytes: frames may span messages, so a partial frame is
/// kept in the stash (bounded by the parser's limits) until the next message completes it.
pub(super) fn stomp_ws_message(
    st: &mut StompState,
    payload: &[u8],
    ctx: &mut Ctx<'_>,
    out: &mut OutQueue,
) -> Option<Flow> {
    stomp_message(st, payload, ctx, out, Framing::WebSocket)
}

/// [`stomp_ws_message`] for any framing of the replies (SockJS sessions queue raw frames).
pub(super) fn stomp_message(
    st: &mut StompState,
    payload: &[u8],
    ctx: &mut Ctx<'_>,
    out: &mut OutQueue,
    framing: Framing,
) -> Option<Flow> {
    if st.auth_pending {
        st.stash.extend_from_slice(payload);
        return None;
    }
    if st.stash.is_empty() {
        let (used, flow) = stomp_input(st, payload, ctx, out, framing);
        if !matches!(flow, Some(Flow::Close { .. })) {
            st.stash
                .extend_from_slice(payload.get(used..).unwrap_or_default());
        }
        return flow;
    }
    let mut stash = std::mem::take(&mut st.stash);
    stash.extend_from_slice(payload);
    let (used, flow) = stomp_input(st, &stash, ctx, out, framing);
    stash.drain(..used.min(stash.len()));
    if stash.is_empty() {
        // An idle connection holds no buffer.
        stash = Vec::new();
    }
    st.stash = stash;
    flow
}

/// Parse and handle STOMP frames from `input`. Returns the bytes consumed and, if the
/// connection must change course, how.
pub(super) fn stomp_input(
    st: &mut StompState,
    input: &[u8],
    ctx: &mut Ctx<'_>,
    out: &mut OutQueue,
    framing: Framing,
) -> (usize, Option<Flow>) {
    let mut pos = 0;
    let mut flow = None;
    loop {
        if out.footprint() > ctx.cfg.max_outbound {
            // The rest waits until the peer reads what it was sent.
            return (pos, flow);
        }
        let mut headers = [Header::default(); stomp::MAX_HEADERS];
        let rest = input.get(pos..).unwrap_or_default();
        let parsed = stomp::parse(
            rest,
            &mut headers,
            st.session.version,
            &ctx.cfg.stomp_limits,
        );
        let (frame, used) = match parsed {
            Ok(Parsed::Partial) => return (pos, flow),
            Ok(Parsed::Heartbeat(n)) => {
                pos += n;
                continue;
            }
            Ok(Parsed::Frame(f, used)) => {
                let leaves = matches!(
                    f.command,
                    stomp::Command::Unsubscribe | stomp::Command::Disconnect
                );
                if leaves && (!ctx.outbox.is_empty() || !ctx.qops.is_empty()) {
                    st.fan_out_first = true;
                    return (pos, flow);
                }
                (f, used)
            }
            Err(e) => {
                let cause = match e {
                    ParseError::TooManyHeaders
                    | ParseError::HeaderTooLong
                    | ParseError::BodyTooLarge => Cause::Limit,
                    _ => Cause::Protocol,
                };
                // The ERROR carries the frame's receipt: wait for the rest of its header block
                // if it is still arriving (a bounded wait: no more than a header block holds).
                // Not past a bound, though: nothing more of that frame is read.
                if cause == Cause::Protocol
                    && !stomp::parse::head_settled(rest, &ctx.cfg.stomp_limits)
                {
                    return (pos, flow);
                }
                let mut err = StompError::new(e.message()).because(cause);
                err.receipt = stomp::parse::find_receipt(rest, RECEIPT_SEARCH)
                    .and_then(|r| stomp::escape::unescape(r).ok())
                    .map(|r| String::from_utf8_lossy(&r).into_owned());
                protocol_error(out, ctx, st.session.version, &err, framing);
                return (input.len(), Some(Flow::Close { error: true }));
            }
        };
        let hold = ctx.memory_alarm
            || (ctx.queue_busy
                && frame
                    .header("destination")
                    .is_some_and(|d| kind(&d) == DestKind::Queue));
        if hold && frame.command == stomp::Command::Send && st.session.connected {
            // Flow control: this SEND and what follows wait until memory falls (or the queue
            // store has room again).
            st.memory_blocked = true;
            ctx.counters.memory_blocked += 1;
            return (pos, flow);
        }
        let mut reply = std::mem::take(ctx.scratch);
        reply.clear();
        let result = match st.session.handle(&frame, &ctx.cfg.session, &mut reply) {
            Ok(Action::Authenticate {
                login,
                passcode,
                host,
            }) => {
                // Hold this CONNECT (unconsumed) until the check answers.
                let job = crate::server::authpool::AuthJob {
                    login,
                    passcode,
                    host,
                    ip: ctx.peer,
                    origin: ctx.origin(),
                };
                let refused = match ctx.auth {
                    Some(pool) => pool.submit(job).err(),
                    None => Some(crate::server::authpool::Refused::Full),
                };
                match refused {
                    None => {
                        *ctx.scratch = reply;
                        st.auth_pending = true;
                        return (pos, flow);
                    }
                    Some(r) => Err(StompError::new(r.message()).because(Cause::Refused)),
                }
            }
            other => other,
        };
        pos += used;
        let result =
            result.and_then(|action| apply_action(st, action, &frame, ctx, framing, &mut reply));
        match result {
            Ok(f) => {
                if f.is_some() {
                    flow = f;
                }
                if !reply.is_empty() {
                    push_frame(out, ctx.pool, &reply, framing);
                }
                *ctx.scratch = reply;
                if matches!(flow, Some(Flow::Close { .. })) {
                    return (input.len(), flow);
                }
            }
            Err(mut e) => {
                // A RECEIPT the session wrote before the server refused the frame is dropped;
                // the ERROR carries its id instead.
                *ctx.scratch = reply;
                if e.receipt.is_none() {
                    e.receipt = frame.header("receipt").map(|r| r.into_owned());
                }
                protocol_error(out, ctx, st.session.version, &e, framing);
                return (input.len(), Some(Flow::Close { error: true }));
            }
        }
    }
}

/// A buffered frame of an open transaction.
#[derive(Debug)]
pub enum TxOp {
    Publish(Published),
    Ack { id: String, nack: bool },
}

/// Carry out what the session decided.
pub(super) fn apply_action(
    st: &mut StompState,
    action: Action<'_>,
    frame: &stomp::FrameRef<'_>,
    ctx: &mut Ctx<'_>,
    framing: Framing,
    reply: &mut Vec<u8>,
) -> Result<Option<Flow>, StompError> {
    match action {
        Action::None | Action::Begin => {}
        Action::Connected { send_ms, recv_ms } => {
            return Ok(Some(Flow::Connected { send_ms, recv_ms }));
        }
        Action::Subscribe(i) => {
            if let Some(sub) = st.session.subscriptions().get(i) {
                let dest = sub.destination.to_string();
                let max = ctx.cfg.session.max_pattern_words;
                let words = crate::router::wildcard::pattern_len(&dest);
                let refused = if kind(&dest) == DestKind::Pattern && words > max {
                    Err(StompError::new(format!(
                        "wildcard subscription has {words} words, more than the {max} allowed"
                    ))
                    .because(Cause::Limit))
                } else if let Some(why) = ctx.router.cluster_refuses(&dest) {
                    Err(StompError::new(format!("{why}: '{dest}'")).because(Cause::Refused))
                } else {
                    acl_check(st, ctx, crate::auth::Perm::Read, &dest)
                };
                if let Err(e) = refused {
                    // The subscription must not stay in the session.
                    st.session.remove_subscription(i);
                    return Err(e);
                }
            }
            let version = st.session.version;
            let info = session_info(&st.session);
            if let Some(sub) = st.session.subscription_mut(i) {
                let s = Subscriber::new(ctx.token, &sub.id, sub.ack, version, framing);
                // The config outlives the context: no Arc clone (a shared atomic) per frame.
                let cfg: &Config = ctx.cfg;
                if let Some(app) = cfg.app.as_deref() {
                    if let Some(path) = app.strip(&sub.destination) {
                        app_subscribe(app, path, sub, frame, info, ctx, reply)?;
                        return Ok(None);
                    }
                    if app.others_user_dest(&sub.destination) {
                        // Anyone may send to /user/<name>/..., only <name> may read it.
                        let d = sub.destination.to_string();
                        st.session.remove_subscription(i);
                        return Err(StompError::new(format!(
                            "cannot subscribe to another user's destination '{d}': \
                             subscribe to {}/queue/... for your own",
                            app.user_prefix.trim_end_matches('/')
                        ))
                        .because(Cause::Access));
                    }
                    if let Some(rest) = app.own_user_dest(&sub.destination) {
                        let route = crate::app::user_route(&app.user_prefix, info.user(), rest);
                        if let Some(why) = ctx.router.cluster_refuses(&route) {
                            // The route is longer than what the client wrote (by its login).
                            let d = sub.destination.to_string();
                            st.session.remove_subscription(i);
                            return Err(
                                StompError::new(format!("{why}: '{d}'")).because(Cause::Refused)
                            );
                        }
                        ctx.router.subscribe(&route, s);
                        defer_receipt(&route, frame, ctx, reply);
                        sub.route = Some(route.into());
                        return Ok(None);
                    }
                }
                if kind(&sub.destination) == DestKind::Queue {
                    let key = ctx.router.add_qsub(&sub.destination, s);
                    sub.handle = Some(pack_key(key));
                    ctx.qops.push(QueueOp::AddConsumer {
                        queue: Arc::from(&*sub.destination),
                        key,
                        ack: sub.ack,
                        prefetch: sub.prefetch,
                    });
                } else {
                    // Keep the router's copy of the name, not one per session.
                    if let Some(name) = ctx.router.subscribe(&sub.destination, s) {
                        sub.destination = name;
                    }
                    defer_receipt(&sub.destination, frame, ctx, reply);
                }
            }
        }
        // The connection stays: what it queued for an auto-mode consumer will be written
        // before anything that follows, so it counts as done.
        Action::Unsubscribe(sub) => drop_subscription(&sub, true, ctx),
        Action::Publish {
            destination,
            transaction,
        } => {
            acl_check(st, ctx, crate::auth::Perm::Write, &destination)?;
            if let Some(why) = ctx.router.cluster_refuses(&destination) {
                return Err(
                    StompError::new(format!("{why}: '{destination}'")).because(Cause::Refused)
                );
            }
            let mut shown = None;
            let cfg: &Config = ctx.cfg;
            if let Some(app) = cfg.app.as_deref() {
                if let Some(path) = app.strip(&destination) {
                    if transaction.is_some() {
                        return Err(StompError::new(
                            "application destinations cannot be used in a transaction",
                        ));
                    }
                    let info = session_info(&st.session);
                    return app_send(app, path, &destination, frame, info, ctx, reply);
                }
                shown = app.user_shown(&destination);
            }
            let id = if kind(&destination) == DestKind::Queue {
                None
            } else {
                *ctx.seq += 1;
                Some(ctx.router.msg_id(*ctx.seq))
            };
            let shown = shown.as_deref().unwrap_or(&destination);
            let msg = encode_shared_as(frame, &destination, shown, id, ctx.enc);
            ctx.counters.messages_in += 1;
            match transaction {
                Some(tx) => st.session.buffer(&tx, TxOp::Publish(msg)),
                None if kind(&msg.destination) == DestKind::Queue => {
                    // The queue's home answers: RECEIPT once accepted, ERROR if refused.
                    let receipt = frame.header("receipt").map(|r| r.into());
                    if receipt.is_some() {
                        reply.clear();
                    }
                    publish_with_receipt(msg, receipt, ctx);
                }
                None => publish(msg, ctx),
            }
        }
        Action::Ack {
            id,
            nack,
            transaction,
        } => match transaction {
            Some(tx) => st.session.buffer(
                &tx,
                TxOp::Ack {
                    id: id.into_owned(),
                    nack,
                },
            ),
            None => ack(&id, nack, ctx)?,
        },
        Action::Commit(name) => {
            let ops = st.session.commit(&name);
            // All or nothing: every ACK/NACK is checked before anything is applied (the
            // SENDs passed their checks when they were buffered).
            let acks = ops.iter().filter_map(|op| match op {
                TxOp::Ack { id, .. } => Some(id.as_str()),
                TxOp::Publish(_) => None,
            });
            ctx.router
                .check_acks(ctx.token, acks)
                .map_err(|e| StompError::new(format!("transaction '{name}' not committed: {e}")))?;
            for op in ops {
                match op {
                    TxOp::Publish(msg) => publish(msg, ctx),
                    TxOp::Ack { id, nack } => ack(&id, nack, ctx)?,
                }
            }
        }
        Action::Abort(_) => {}
        Action::Disconnect => return Ok(Some(Flow::Close { error: false })),
        // Handled before the action is applied.
        Action::Authenticate { .. } => {}
    }
    Ok(None)
}

/// With an ACL configured: may this session read (SUBSCRIBE) or write (SEND) `destination`?
/// The session keeps the rules' `Arc` and re-reads them only when their generation moved.
pub(super) fn acl_check(
    st: &mut StompState,
    ctx: &Ctx<'_>,
    perm: crate::auth::Perm,
    destination: &str,
) -> Result<(), StompError> {
    let Some(handle) = ctx.cfg.acl.as_deref() else {
        return Ok(());
    };
    let gen = handle.generation();
    if st.acl.as_ref().is_none_or(|(g, _)| *g != gen) {
        st.acl = Some((gen, handle.current()));
    }
    let allowed = st
        .acl
        .as_ref()
        .is_some_and(|(_, acl)| acl.allows(st.session.login.as_deref(), perm, destination));
    if allowed {
        return Ok(());
    }
    let verb = match perm {
        crate::auth::Perm::Read => "subscribe to",
        crate::auth::Perm::Write => "send to",
    };
    Err(StompError::new(format!(
        "access denied: {} may not {verb} '{destination}'",
        st.session.login.as_deref().unwrap_or("anonymous")
    ))
    .because(Cause::Access))
}

/// Cluster mode: a topic SUBSCRIBE's RECEIPT waits until NATS has the node's subscription, so
/// that what is published after the RECEIPT, on any node, reaches it (standalone: nothing to
/// wait for, the session's RECEIPT goes now).
fn defer_receipt(route: &str, frame: &stomp::FrameRef<'_>, ctx: &mut Ctx<'_>, reply: &mut Vec<u8>) {
    if let Some(r) = frame.header("receipt") {
        if ctx.router.ready_after_interest(route, ctx.token, r.into()) {
            reply.clear();
        }
    }
}

/// A topic message goes to the reactor's fan-out; a queue message to its queue's home.
pub(super) fn publish(msg: Published, ctx: &mut Ctx<'_>) {
    publish_with_receipt(msg, None, ctx);
}

/// As [`publish`]; a queue message's RECEIPT (if `receipt`) is sent once its queue accepted it.
pub(super) fn publish_with_receipt(msg: Published, receipt: Option<Box<str>>, ctx: &mut Ctx<'_>) {
    if ctx.router.cluster_refuses(&msg.destination).is_some() {
        // A handler's message for a queue (or a destination too long to cross) in cluster
        // mode: no node-local queue is made behind the cluster's back. Counted.
        ctx.counters.queue_rejected += 1;
        return;
    }
    if kind(&msg.destination) == DestKind::Queue {
        let seq = ctx.router.next_seq();
        ctx.qops.push(QueueOp::Enqueue {
            queue: Arc::clone(&msg.destination),
            msg: QMsg {
                seq,
                payload: msg,
                redelivered: false,
            },
            origin: ctx.origin(),
            receipt,
        });
    } else {
        let mut msg = msg;
        msg.received = Some(ctx.now);
        ctx.outbox.push(msg);
    }
}

pub(super) fn ack(id: &str, nack: bool, ctx: &mut Ctx<'_>) -> Result<(), StompError> {
    match ctx.router.ack(ctx.token, id, nack) {
        Ok(Some(op)) => ctx.qops.push(op),
        Ok(None) => {}
        Err(e) => return Err(StompError::new(e)),
    }
    Ok(())
}

pub(super) fn pack_key(k: ConsumerKey) -> u64 {
    ((k.reactor as u64) << 56) | ((k.gen as u64 & 0xFF_FFFF) << 32) | k.slot as u64
}

pub(super) fn unpack_key(h: u64, gen_full: impl Fn(u32) -> Option<u32>) -> Option<ConsumerKey> {
    let slot = (h & 0xFFFF_FFFF) as u32;
    Some(ConsumerKey {
        reactor: (h >> 56) as u16,
        slot,
        gen: gen_full(slot)?,
    })
}

/// Stop routing one subscription: topics leave the table; a queue consumer is removed here and
/// at its queue's home, which requeues what it had in flight. With `written` (an UNSUBSCRIBE on
/// a connection that stays), auto-mode deliveries already queued on the connection are done:
/// they are written before anything that follows; a closing connection's go back.
pub fn drop_subscription(sub: &Subscription, written: bool, ctx: &mut Ctx<'_>) {
    if let Some(app) = ctx.cfg.app.as_deref() {
        if app.strip(&sub.destination).is_some() {
            return; // answered once by a subscribe handler; nothing routed
        }
    }
    if kind(sub.route()) != DestKind::Queue {
        ctx.router.unsubscribe(sub.route(), ctx.token, &sub.id);
        return;
    }
    let Some(h) = sub.handle else { return };
    let router = &mut *ctx.router;
    let Some(key) = unpack_key(h, |slot| router.qsub_gen(slot)) else {
        return;
    };
    if let Some(q) = ctx.router.remove_qsub(key) {
        if let Some(up_to) = q.last_queued().filter(|_| written) {
            ctx.qops.push(QueueOp::Written {
                queue: Arc::clone(&q.queue),
                key,
                up_to,
            });
        }
        ctx.qops.push(QueueOp::RemoveConsumer {
            queue: q.queue,
            key,
        });
    }
}

impl Conn {
    /// A queue's home accepted (RECEIPT, if asked for) or refused (ERROR, then close) a SEND.
    pub fn queue_verdict(
        &mut self,
        ctx: &mut Ctx<'_>,
        receipt: Option<Box<str>>,
        refused: Option<&'static str>,
    ) {
        let Some((version, framing)) = self.stomp().map(|s| (s.session.version, self.framing()))
        else {
            return;
        };
        let Some(why) = refused else {
            if let Some(r) = receipt {
                push_receipt(&mut self.out, ctx.pool, version, &r, framing);
            }
            return;
        };
        let mut err = StompError::new(why).because(Cause::Refused);
        err.receipt = receipt.map(String::from);
        protocol_error(&mut self.out, ctx, version, &err, framing);
        self.apply_flow(ctx, Flow::Close { error: true });
    }

    /// A pool handler finished: RECEIPT, ERROR (then close), or a subscribe handler's answer.
    pub fn app_done(&mut self, ctx: &mut Ctx<'_>, done: crate::server::apps::Done) {
        let Some((version, framing)) = self.stomp().map(|s| (s.session.version, self.framing()))
        else {
            return;
        };
        if let Some(e) = done.error {
            let mut err = StompError::new(e).because(Cause::App);
            err.receipt = done.receipt;
            protocol_error(&mut self.out, ctx, version, &err, framing);
            self.apply_flow(ctx, Flow::Close { error: true });
            return;
        }
        if let Some(crate::server::apps::SubscribeAnswer {
            sub_id,
            destination,
            headers,
            body,
        }) = done.message
        {
            *ctx.seq += 1;
            let id = ctx.router.msg_id(*ctx.seq);
            let id = String::from_utf8_lossy(id.as_bytes()).into_owned();
            let mut h: Vec<(&str, &str)> = vec![
                ("subscription", &sub_id),
                ("destination", &destination),
                ("message-id", &id),
            ];
            for (k, v) in &headers {
                if !matches!(k.as_str(), "subscription" | "destination" | "message-id") {
                    h.push((k, v));
                }
            }
            let mut frame = Vec::new();
            stomp::write_frame(&mut frame, version, stomp::Command::Message, &h, &body);
            push_frame(&mut self.out, ctx.pool, &frame, framing);
            ctx.counters.messages_out += 1;
        }
        if let Some(r) = done.receipt {
            let mut frame = Vec::new();
            stomp::write_frame(
                &mut frame,
                version,
                stomp::Command::Receipt,
                &[("receipt-id", &r)],
                b"",
            );
            push_frame(&mut self.out, ctx.pool, &frame, framing);
        }
    }
}
