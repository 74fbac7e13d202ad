//! The WebSocket side of a connection: the HTTP upgrade request (or a static file, or a
//! refusal), then frames: messages to STOMP or the echo, and the control frames. The codec is
//! the sans-IO `crate::ws`; this is where its events meet the connection.

use super::*;

impl Conn {
    /// The HTTP request of a WebSocket connection: upgrade (`/ws`, `/stomp`, `/echo`), a static
    /// file of the application's, or a refusal. `true` when frames may follow in the buffer.
    pub(super) fn handshake(&mut self, ctx: &mut Ctx<'_>) -> bool {
        if let Some(go_on) = self.sockjs_http(ctx) {
            return go_on;
        }
        let input = self.rbuf.get_mut(self.rstart..).unwrap_or_default();
        match ws::parse_request(input, &ctx.cfg.handshake) {
            Ok(Status::Partial) => false,
            Ok(Status::Complete(up)) => {
                let app = match up.endpoint() {
                    "/echo" if ctx.cfg.echo => App::Echo,
                    "/ws" | "/stomp" => App::Stomp(new_stomp(ctx.sessions, ctx.reactor, ctx.now)),
                    _ => {
                        self.refuse(ctx, Refusal::not_found());
                        return false;
                    }
                };
                let protocol = match app {
                    App::Echo => None,
                    App::Stomp(_) => up.protocol,
                };
                let (key, protocol) = (up.key.to_string(), protocol.map(str::to_string));
                let (deflate, consumed) = (up.deflate, up.consumed);
                self.upgrade(ctx, &key, protocol.as_deref(), deflate, consumed, app);
                true
            }
            Err(refusal) => {
                // A plain GET (no upgrade) for a static file the application serves.
                if refusal.status == 426 {
                    let file = ctx.cfg.app.as_deref().and_then(|app| {
                        let path = ws::handshake::request_path(input)?;
                        app.static_files.iter().find(|f| f.path == path).cloned()
                    });
                    let has_files = ctx
                        .cfg
                        .app
                        .as_deref()
                        .is_some_and(|a| !a.static_files.is_empty());
                    if file.is_none() && has_files {
                        self.refuse(ctx, Refusal::not_found());
                        return false;
                    }
                    if let Some(f) = file {
                        let buf = self.out.own_buf(ctx.pool);
                        let before = buf.len();
                        buf.extend_from_slice(
                                            format!(
                                                "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                                f.content_type,
                                                f.body.len()
                                            )
                                            .as_bytes(),
                                        );
                        buf.extend_from_slice(&f.body);
                        self.out.commit(before);
                        self.rstart = self.rbuf.len();
                        self.linger(ctx);
                        return false;
                    }
                }
                self.refuse(ctx, refusal);
                false
            }
        }
    }

    /// Answer an upgrade request (`consumed` bytes) with 101 and open the WebSocket for `app`.
    pub(super) fn upgrade(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: &str,
        protocol: Option<&str>,
        deflate: Option<crate::ws::deflate::Agreed>,
        consumed: usize,
        app: App,
    ) {
        // The handshake's duration: the connection arrived a handshake timeout before its
        // deadline.
        if let Some(deadline) = self.phase_deadline {
            let left = deadline.saturating_duration_since(ctx.now);
            let took = ctx.cfg.handshake_timeout.saturating_sub(left);
            ctx.counters.handshake_hist.observe(
                &crate::server::metrics::HANDSHAKE_BUCKETS,
                u64::try_from(took.as_nanos()).unwrap_or(u64::MAX),
            );
        }
        let extensions = deflate.map(|d| d.response());
        let buf = self.out.own_buf(ctx.pool);
        let before = buf.len();
        ws::write_accept(buf, key, protocol, extensions.as_deref());
        self.out.commit(before);
        self.rstart += consumed;
        // STOMP clients get the handshake timeout again to send CONNECT.
        self.phase_deadline = match app {
            App::Echo => None,
            App::Stomp(_) => Some(ctx.now + ctx.cfg.handshake_timeout),
        };
        self.phase = Phase::Open {
            ws: Some(WsState {
                codec: Box::new(WsCodec {
                    decoder: Decoder::new(DecoderConfig {
                        max_inline: (ctx.cfg.read_buffer_size - ws::frame::MAX_HEADER_LEN) as u64,
                        deflate: deflate.is_some(),
                        ..DecoderConfig::server(ctx.cfg.max_frame_size, ctx.cfg.max_message_size)
                    }),
                    deflate: deflate.map(|agreed| {
                        Box::new(WsDeflate {
                            agreed,
                            inflater: None,
                        })
                    }),
                }),
                close_sent: false,
            }),
            app,
        };
    }

    /// One WebSocket frame or message from the buffer: STOMP bytes or an echo, and the control
    /// frames (ping, pong, close). `true` to go on with the buffer.
    pub(super) fn ws_input(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let input = self.rbuf.get_mut(self.rstart..).unwrap_or_default();
        let Phase::Open { ws: Some(wss), app } = &mut self.phase else {
            return false;
        };
        let (used, ev) = match wss.codec.decoder.decode(input) {
            Ok(r) => r,
            Err(e) => {
                let close_sent = wss.close_sent;
                self.ws_fail(ctx, e, close_sent);
                return false;
            }
        };
        self.rstart += used;
        let Some(ev) = ev else {
            // A frame of a message still being assembled: go on while bytes are used.
            return used > 0;
        };
        let mut flow = None;
        match ev {
            Event::Message { text, payload } => {
                if wss.close_sent {
                    return true;
                }
                flow = ws_message(
                    app,
                    text,
                    payload,
                    wss.codec.deflate.as_deref(),
                    ctx,
                    &mut self.out,
                );
            }
            Event::Compressed { text, payload } => {
                if wss.close_sent {
                    return true;
                }
                let mut inflated = ctx.pool.get();
                let limit = usize::try_from(ctx.cfg.max_message_size).unwrap_or(usize::MAX);
                let r = match wss.codec.deflate.as_mut() {
                    Some(d) => d.inflate(payload, &mut inflated, limit, ctx.zip),
                    // The decoder reports compressed messages only when deflate was agreed.
                    None => Err(ws::WsError::ReservedBits),
                }
                .and_then(|()| {
                    match text && std::str::from_utf8(&inflated).is_err() {
                        true => Err(ws::WsError::InvalidUtf8),
                        false => Ok(()),
                    }
                });
                match r {
                    Ok(()) => {
                        ctx.counters.inflated += 1;
                        ctx.inflated += inflated.len();
                        flow = ws_message(
                            app,
                            text,
                            &inflated,
                            wss.codec.deflate.as_deref(),
                            ctx,
                            &mut self.out,
                        );
                        ctx.pool.put(inflated);
                    }
                    Err(e) => {
                        ctx.pool.put(inflated);
                        self.ws_fail(ctx, e, false);
                        return false;
                    }
                }
            }
            Event::Ping(p) => {
                if !wss.close_sent {
                    let buf = self.out.own_buf(ctx.pool);
                    let before = buf.len();
                    ws::write_frame(buf, true, Opcode::Pong, p, None);
                    self.out.commit(before);
                }
            }
            Event::Pong(_) => {}
            Event::Close(c) => {
                if !wss.close_sent {
                    // §5.5.1: echo the status code we received.
                    let buf = self.out.own_buf(ctx.pool);
                    let before = buf.len();
                    match c {
                        Some((code, _)) => ws::write_close(buf, code, "", None),
                        None => ws::write_frame(buf, true, Opcode::Close, &[], None),
                    }
                    self.out.commit(before);
                }
                self.linger(ctx);
                return false;
            }
        }
        if let Some(f) = flow {
            self.apply_flow(ctx, f);
        }
        self.pause_if_over(ctx);
        // Inflated messages worth a read budget: the rest of the buffer waits for the
        // connection's next turn (the budget charges them, see `on_readable`).
        ctx.inflated < ctx.cfg.read_budget
    }

    /// The peer broke the WebSocket protocol (or a limit): a STOMP ERROR (for a STOMP session),
    /// our Close with the error's code (unless one was sent), then linger.
    fn ws_fail(&mut self, ctx: &mut Ctx<'_>, e: ws::WsError, close_sent: bool) {
        ctx.counters.errors_ws += 1;
        if !close_sent {
            if let Phase::Open {
                app: App::Stomp(st),
                ..
            } = &self.phase
            {
                let err = StompError::new(e.reason());
                write_error(
                    &mut self.out,
                    ctx,
                    st.session.version,
                    &err,
                    Framing::WebSocket,
                );
            }
            write_close(&mut self.out, ctx.pool, e.close_code(), e.reason());
        }
        self.linger(ctx);
    }
}

/// A whole data message: echoed (compressed when the session agreed to it and it is worth it),
/// or STOMP bytes.
fn ws_message(
    app: &mut App,
    text: bool,
    payload: &[u8],
    deflate: Option<&WsDeflate>,
    ctx: &mut Ctx<'_>,
    out: &mut OutQueue,
) -> Option<Flow> {
    match app {
        App::Echo => {
            let op = if text { Opcode::Text } else { Opcode::Binary };
            let buf = out.own_buf(ctx.pool);
            let before = buf.len();
            let mut compressed = ctx.pool.get();
            let bits = deflate.map(|d| d.agreed.server_max_window_bits);
            match bits.filter(|b| ctx.zip.compress_whole(payload, *b, &mut compressed)) {
                Some(_) => {
                    ws::write_frame(buf, true, op, &compressed, None);
                    // RSV1 on the frame just written: compressed.
                    if let Some(b0) = buf.get_mut(before) {
                        *b0 |= 0x40;
                    }
                }
                None => ws::write_frame(buf, true, op, payload, None),
            }
            ctx.pool.put(compressed);
            out.commit(before);
            None
        }
        App::Stomp(st) => stomp_ws_message(st, payload, ctx, out),
    }
}
