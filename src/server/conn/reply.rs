//! Replies queued on a connection: RECEIPT, ERROR and WebSocket Close, each framed for the
//! transport (a WebSocket text/binary message, or raw bytes over TCP).

use super::*;

/// Queue a RECEIPT frame.
pub(super) fn push_receipt(
    out: &mut OutQueue,
    pool: &mut BufPool,
    version: Version,
    id: &str,
    framing: Framing,
) {
    let mut frame = Vec::new();
    stomp::write_frame(
        &mut frame,
        version,
        stomp::Command::Receipt,
        &[("receipt-id", id)],
        b"",
    );
    push_frame(out, pool, &frame, framing);
}

/// Queue one STOMP frame: raw on TCP, inside one WebSocket text message on WebSocket.
pub(super) fn push_frame(out: &mut OutQueue, pool: &mut BufPool, bytes: &[u8], framing: Framing) {
    let buf = out.own_buf(pool);
    let before = buf.len();
    if framing == Framing::WebSocket {
        let op = if std::str::from_utf8(bytes).is_ok() {
            Opcode::Text
        } else {
            Opcode::Binary
        };
        ws::write_frame(buf, true, op, bytes, None);
    } else {
        buf.extend_from_slice(bytes);
    }
    out.commit(before);
}

pub(super) fn write_error(
    out: &mut OutQueue,
    ctx: &mut Ctx<'_>,
    version: Version,
    err: &StompError,
    framing: Framing,
) {
    let mut tmp = Vec::new();
    err.write(&mut tmp, version);
    push_frame(out, ctx.pool, &tmp, framing);
}

/// The ERROR for a frame or operation of the client's that failed (the connection closes):
/// counted as `stompbox_errors_total{kind="stomp"}`.
pub(super) fn protocol_error(
    out: &mut OutQueue,
    ctx: &mut Ctx<'_>,
    version: Version,
    err: &StompError,
    framing: Framing,
) {
    ctx.counters.stomp_error(err.cause);
    write_error(out, ctx, version, err, framing);
}

/// How far into a malformed frame its `receipt` header is looked for (the ERROR carries it).
pub(super) const RECEIPT_SEARCH: usize = 64 * 1024;

pub(super) fn write_close(out: &mut OutQueue, pool: &mut BufPool, code: u16, reason: &str) {
    let buf = out.own_buf(pool);
    let before = buf.len();
    ws::write_close(buf, code, reason, None);
    out.commit(before);
}
