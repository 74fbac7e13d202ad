#!/usr/bin/env python3
"""Interop scenarios: stomp.py (and a Node helper for cross-client runs) against a running stompbox.

    stomp_py_test.py --tcp PORT --ws PORT [--node-helper PATH] SCENARIO

Runs one scenario; exit 0 if it passed, 1 (with an "assertion failed: ..." line) if not.
`--list` prints the scenario names. Every wait is bounded; run.sh bounds the process too.
"""

import argparse
import os
import queue
import subprocess
import sys
import threading
import time
import traceback

import stomp

HOST = "127.0.0.1"
ARGS = None
SCENARIOS = {}

UTF8_TEXT = "κόσμε 😀"
# Every byte value, then NULs inside and at the end: only content-length can frame this.
BINARY_BODY = bytes(range(256)) + b"\x00\x00mid\x00\xff\xfe\x00"
# Larger than the broker's 16 KiB read buffer, with NULs throughout.
LARGE_BODY = bytes((i * 7919) % 251 for i in range(300 * 1024))


def scenario(name):
    def register(fn):
        SCENARIOS[name] = fn
        return fn

    return register


class Fail(AssertionError):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


class Collector(stomp.ConnectionListener):
    """Records everything one connection receives; waits are bounded."""

    def __init__(self, name):
        self.name = name
        self.cv = threading.Condition()
        self.connected = None
        self.messages = []
        self.receipts = []
        self.errors = []
        self.heartbeats = 0
        self.heartbeat_timeouts = 0
        self.disconnected = False

    def _add(self, fn):
        with self.cv:
            fn()
            self.cv.notify_all()

    def on_connected(self, frame):
        self._add(lambda: setattr(self, "connected", frame))

    def on_message(self, frame):
        self._add(lambda: self.messages.append(frame))

    def on_receipt(self, frame):
        self._add(lambda: self.receipts.append(frame.headers.get("receipt-id")))

    def on_error(self, frame):
        self._add(lambda: self.errors.append(frame))

    def on_heartbeat(self):
        def inc():
            self.heartbeats += 1

        self._add(inc)

    def on_heartbeat_timeout(self):
        def inc():
            self.heartbeat_timeouts += 1

        self._add(inc)

    def on_disconnected(self):
        self._add(lambda: setattr(self, "disconnected", True))

    def state(self):
        errs = [(e.headers.get("message"), e.body) for e in self.errors]
        return (
            f"[{self.name}: {len(self.messages)} messages, receipts={self.receipts}, "
            f"errors={errs}, heartbeats={self.heartbeats}, disconnected={self.disconnected}]"
        )

    def wait(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        with self.cv:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Fail(f"timed out after {timeout}s waiting for {what} {self.state()}")
                self.cv.wait(left)

    def wait_receipt(self, rid, timeout=5):
        self.wait(lambda: rid in self.receipts, timeout, f"RECEIPT receipt-id:{rid}")
        self.no_errors()

    def wait_messages(self, n, timeout=5):
        self.wait(lambda: len(self.messages) >= n, timeout, f"{n} MESSAGE frame(s)")
        return self.messages[:n]

    def no_errors(self):
        with self.cv:
            check(not self.errors, f"unexpected ERROR frame(s) {self.state()}")


def connect(version, transport="tcp", heartbeats=(0, 0), name=None, ws_binary=True):
    """Connect with stomp.py; returns (conn, collector) once CONNECTED arrived.

    Over WebSocket, stomp.py sends every frame as one message, text by default; a text message
    must be valid UTF-8 (RFC 6455), so arbitrary binary bodies need `binary_mode=True`."""
    name = name or f"{transport}-{version}"
    common = dict(auto_decode=False, auto_content_length=True, reconnect_attempts_max=1)
    if transport == "ws":
        check(version == "1.2", "stomp.py's WSConnection speaks STOMP 1.2 only")
        conn = stomp.WSConnection(
            [(HOST, ARGS.ws)],
            ws_path="/ws",
            header=["Sec-WebSocket-Protocol: v12.stomp, v11.stomp, v10.stomp"],
            heartbeats=heartbeats,
            binary_mode=ws_binary,
            **common,
        )
    else:
        cls = {"1.0": stomp.Connection10, "1.1": stomp.Connection11, "1.2": stomp.Connection12}[
            version
        ]
        if version != "1.0":
            common["heartbeats"] = heartbeats
        conn = cls([(HOST, ARGS.tcp)], **common)
    col = Collector(name)
    conn.set_listener("collector", col)
    # wait=False: stomp.py's own wait has no timeout; the collector's does.
    conn.connect(headers={"host": "/"}, wait=False)
    col.wait(lambda: col.connected is not None or col.errors, 10, "CONNECTED")
    col.no_errors()
    h = col.connected.headers
    if version == "1.0":
        check("version" not in h or h["version"] == "1.0", f"1.0 CONNECTED version: {h}")
    else:
        check(h.get("version") == version, f"CONNECTED version {h.get('version')!r} != {version!r}: {h}")
        check("heart-beat" in h, f"1.1+ CONNECTED without heart-beat header: {h}")
    check("session" in h, f"CONNECTED without session header: {h}")
    return conn, col


def disconnect(conn, col, rid="bye"):
    """DISCONNECT with a receipt; the RECEIPT must come and the connection must end."""
    t = threading.Thread(target=lambda: conn.disconnect(receipt=rid), daemon=True)
    t.start()
    col.wait_receipt(rid, timeout=5)
    col.wait(lambda: col.disconnected, 5, "the connection to close after the DISCONNECT receipt")
    t.join(5)
    check(not t.is_alive(), "stomp.py disconnect() did not return within 5s after the receipt")


def quiet_close(conn):
    try:
        if conn.is_connected():
            t = threading.Thread(target=conn.disconnect, daemon=True)
            t.start()
            t.join(3)
    except Exception:
        pass


def body_of(frame):
    return frame.body if isinstance(frame.body, bytes) else frame.body.encode()


def check_message(frame, dest, body, sub_id=None, version="1.2", extra=None):
    h = frame.headers
    got = body_of(frame)
    check(h.get("destination") == dest, f"MESSAGE destination {h.get('destination')!r} != {dest!r}")
    check(h.get("message-id"), f"MESSAGE without message-id: {h}")
    if sub_id is not None and version != "1.0":
        check(h.get("subscription") == sub_id, f"MESSAGE subscription {h.get('subscription')!r} != {sub_id!r}")
    check(
        got == body,
        f"MESSAGE body differs: got {len(got)} bytes {got[:80]!r}..., want {len(body)} bytes {body[:80]!r}...",
    )
    if "content-length" in h:
        check(int(h["content-length"]) == len(body), f"content-length {h['content-length']} != {len(body)}")
    for k, v in (extra or {}).items():
        check(h.get(k) == v, f"MESSAGE header {k}: {h.get(k)!r} != {v!r} (headers {h})")


def expect_nothing(col, count, secs, what):
    time.sleep(secs)
    with col.cv:
        extra = col.messages[count:]
    check(not extra, f"{what}: got {len(extra)} unexpected MESSAGE(s): {[(f.headers, body_of(f)[:40]) for f in extra]}")


def basic_flow(version, transport="tcp"):
    """Subscribe, text/UTF-8/binary bodies, receipts, unsubscribe, disconnect on one connection."""
    tag = f"{transport}{version.replace('.', '')}-{os.getpid()}"
    dest = f"/topic/interop.{tag}"
    conn, col = connect(version, transport)
    try:
        sub = "sub-1"
        conn.subscribe(dest, id=sub, ack="auto", headers={"receipt": "r-sub"})
        col.wait_receipt("r-sub")

        cases = [
            ("text", b"hello from stomp.py", {}),
            ("utf8", UTF8_TEXT.encode("utf-8"), {"content-type": "text/plain;charset=utf-8"}),
            ("binary", BINARY_BODY, {"content-type": "application/octet-stream"}),
            ("empty", b"", {}),
            ("large", LARGE_BODY, {}),
        ]
        if version != "1.0":
            # 1.1+ header escaping of ':' and '\\' (stomp.py escapes, the broker must unescape
            # and re-escape); UTF-8 in header values.
            cases.append(("headers", b"with headers", {"x-colon": "a:b", "x-utf8": "κόσμε", "x-bs": "c\\d"}))
        for i, (label, body, hdrs) in enumerate(cases):
            rid = f"r-send-{label}"
            send_body = body if body else ""  # stomp.py asserts body is not None
            conn.send(dest, send_body, headers=dict(hdrs, receipt=rid))
            col.wait_receipt(rid)
            (msg,) = col.wait_messages(i + 1)[i:]
            try:
                check_message(msg, dest, body, sub, version, extra=hdrs)
            except Fail as e:
                raise Fail(f"[{label}] {e}") from None
            if label == "utf8":
                check(body_of(msg).decode("utf-8") == UTF8_TEXT, "UTF-8 body does not decode back")
        n = len(col.messages)

        # A client-acknowledged subscription: the MESSAGE carries what ACK/NACK need ('ack' in
        # 1.2, message-id + subscription before), and the broker takes them.
        adest, asub = dest + ".ack", "sub-ack"
        conn.subscribe(adest, id=asub, ack="client-individual" if version != "1.0" else "client",
                       headers={"receipt": "r-sub-ack"})
        col.wait_receipt("r-sub-ack")
        for i in range(2):
            conn.send(adest, f"ack me {i}", headers={"receipt": f"r-send-ack{i}"})
            col.wait_receipt(f"r-send-ack{i}")
        m1, m2 = col.wait_messages(n + 2)[n:]
        for m in (m1, m2):
            check(m.headers.get("destination") == adest, f"ack-mode MESSAGE for {m.headers.get('destination')}")
        if version == "1.2":
            check(m1.headers.get("ack"), f"1.2 MESSAGE on a client-individual subscription has no 'ack' header: {m1.headers}")
            conn.ack(m1.headers["ack"], receipt="r-ack")
            conn.nack(m2.headers["ack"], receipt="r-nack")
        elif version == "1.1":
            conn.ack(m1.headers["message-id"], asub, receipt="r-ack")
            conn.nack(m2.headers["message-id"], asub, receipt="r-nack")
        else:
            conn.ack(m1.headers["message-id"], receipt="r-ack")
        col.wait_receipt("r-ack")
        if version != "1.0":
            col.wait_receipt("r-nack")
        conn.unsubscribe(id=asub, **({"destination": adest} if version == "1.0" else {}))
        n = len(col.messages)

        # UNSUBSCRIBE with a receipt: after it, nothing sent to the topic may arrive.
        if version == "1.0":
            conn.unsubscribe(destination=dest, id=sub, headers={"receipt": "r-unsub"})
        else:
            conn.unsubscribe(id=sub, headers={"receipt": "r-unsub"})
        col.wait_receipt("r-unsub")
        conn.send(dest, "after unsubscribe", headers={"receipt": "r-after"})
        col.wait_receipt("r-after")
        expect_nothing(col, n, 0.5, "after UNSUBSCRIBE")

        disconnect(conn, col)
        col.no_errors()
    finally:
        quiet_close(conn)


@scenario("py-tcp-1.2-basic")
def _():
    basic_flow("1.2")


@scenario("py-tcp-1.1-basic")
def _():
    basic_flow("1.1")


@scenario("py-tcp-1.0-basic")
def _():
    basic_flow("1.0")


@scenario("py-ws-1.2-basic")
def _():
    basic_flow("1.2", "ws")


@scenario("py-ws-text-mode")
def _():
    """stomp.py's default WebSocket mode (text messages): the upgrade answers with the STOMP
    subprotocol we offered, UTF-8 text round-trips, and a text message that is not UTF-8 is
    refused with an ERROR frame and the connection closed (RFC 6455 section 8.1)."""
    dest = f"/topic/interop.wstext.{os.getpid()}"
    conn, col = connect("1.2", "ws", ws_binary=False, name="ws-text")
    try:
        hs = conn.transport.socket.getheaders() or {}
        proto = {k.lower(): v for k, v in hs.items()}.get("sec-websocket-protocol")
        check(proto == "v12.stomp", f"Sec-WebSocket-Protocol answered {proto!r}, want 'v12.stomp' (headers {hs})")
        conn.subscribe(dest, id="t", headers={"receipt": "r-sub"})
        col.wait_receipt("r-sub")
        conn.send(dest, UTF8_TEXT, headers={"receipt": "r-text"})
        col.wait_receipt("r-text")
        (m,) = col.wait_messages(1)
        check_message(m, dest, UTF8_TEXT.encode(), "t")
        conn.send(dest, b"not utf-8: \xff\xfe", headers={"receipt": "r-bad"})
        col.wait(lambda: col.errors, 5, "an ERROR frame for a text message that is not UTF-8")
        err = col.errors[0]
        check("utf-8" in (err.headers.get("message") or "").lower(), f"ERROR message {err.headers} does not say UTF-8")
        col.wait(lambda: col.disconnected, 5, "the broker to close the connection after the ERROR")
        check(len(col.messages) == 1, f"the invalid message was delivered: {len(col.messages)} messages")
    finally:
        quiet_close(conn)


@scenario("py-tcp-queue-nack")
def _():
    """A work queue with client-individual acks: each message goes to one consumer; a NACKed
    message comes back to the other consumer marked redelivered; every message is acked
    exactly once."""
    q = f"/queue/interop.work.{os.getpid()}"
    a, acol = connect("1.2", name="consumer-a")
    b, bcol = connect("1.2", name="consumer-b")
    p, pcol = connect("1.2", name="producer")
    try:
        for conn, col, sid in ((a, acol, "qa"), (b, bcol, "qb")):
            conn.subscribe(q, id=sid, ack="client-individual",
                           headers={"prefetch-count": "10", "receipt": f"r-{sid}"})
            col.wait_receipt(f"r-{sid}")
        bodies = [f"job-{i}".encode() for i in range(6)]
        for i, body in enumerate(bodies):
            p.send(q, body, headers={"receipt": f"r-s{i}"})
        pcol.wait_receipt(f"r-s{len(bodies) - 1}")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(acol.messages) + len(bcol.messages) < len(bodies):
            time.sleep(0.02)
        got_a = [body_of(m) for m in acol.messages]
        got_b = [body_of(m) for m in bcol.messages]
        check(sorted(got_a + got_b) == sorted(bodies), f"each job once: a={got_a} b={got_b}")
        check(got_a and got_b, f"round-robin over both consumers: a={got_a} b={got_b}")
        # A NACKs its first job: it must come back to B, marked redelivered.
        first = acol.messages[0]
        nacked = body_of(first)
        n_b = len(bcol.messages)
        a.nack(first.headers["ack"], receipt="r-nack")
        acol.wait_receipt("r-nack")
        bcol.wait_messages(n_b + 1)
        again = bcol.messages[n_b]
        check(body_of(again) == nacked, f"B got {body_of(again)!r} after the NACK, want {nacked!r}")
        check(again.headers.get("redelivered") == "true", f"redelivered header missing: {again.headers}")
        # Ack everything that is still outstanding, each exactly once.
        acked = []
        for m in acol.messages[1:]:
            a.ack(m.headers["ack"])
            acked.append(body_of(m))
        for m in bcol.messages:
            b.ack(m.headers["ack"])
            acked.append(body_of(m))
        check(sorted(acked) == sorted(bodies), f"acked exactly once each: {sorted(acked)}")
        # An ack id that was already used is unknown now: ERROR.
        b.ack(bcol.messages[0].headers["ack"], receipt="r-dup")
        bcol.wait(lambda: bcol.errors, 5, "an ERROR for an ack id used twice")
        check("unknown ack id" in bcol.errors[0].headers.get("message", ""), f"{bcol.errors[0].headers}")
        acol.no_errors()
        pcol.no_errors()
    finally:
        for c in (a, b, p):
            quiet_close(c)


def raw_write(conn, data):
    """Bytes straight onto stomp.py's TCP socket: several frames in one write, or a frame its
    encoder would never produce."""
    conn.transport.socket.sendall(data)


@scenario("py-tcp-hostile")
def _():
    """Regressions of issue 12 through an independent client: SEND and UNSUBSCRIBE in one
    write (stomp.py's CLI test did this and aborted the broker) take effect in order; a queue
    backlog larger than the outbound bound reaches an auto-ack consumer whole and in order; a
    NUL in a header is an ERROR, not a forged frame."""
    pid = os.getpid()
    q = f"/queue/interop.sendunsub.{pid}"
    c, col = connect("1.2", name="cli-like")
    p, pcol = connect("1.2", name="producer")
    try:
        c.subscribe(q, id="1", ack="auto", headers={"receipt": "r-sub"})
        col.wait_receipt("r-sub")
        raw_write(c, (f"SEND\ndestination:{q}\ncontent-length:14\n\nthis is a test\0"
                      f"UNSUBSCRIBE\ndestination:{q}\nid:1\nreceipt:r-unsub\n\n\0").encode())
        col.wait_receipt("r-unsub")
        before = [body_of(m) for m in col.messages]
        check(before in ([], [b"this is a test"]), f"before the UNSUBSCRIBE: {col.state()}")
        # Exactly once: delivered before the UNSUBSCRIBE, or still queued for the next consumer
        # (when the queue's home, on another reactor, had dispatched it to the leaving one).
        p.send(q, b"sentinel", headers={"receipt": "r-sentinel"})
        pcol.wait_receipt("r-sentinel")
        c.subscribe(q, id="2", ack="auto")
        col.wait_messages(2)
        got = [body_of(m) for m in col.messages[:2]]
        check(got == [b"this is a test", b"sentinel"],
              f"the message exactly once, then the sentinel: {col.state()}")

        # A 6 MiB backlog (over the default 4 MiB outbound bound) to an auto-ack consumer.
        bq = f"/queue/interop.backlog.{pid}"
        n = 6000
        body = b"x" * 1024
        for i in range(n):
            hdrs = {"n": str(i)}
            if i % 500 == 499:
                hdrs["receipt"] = f"r-b{i}"
            p.send(bq, body, headers=hdrs)
        pcol.wait_receipt(f"r-b{n - 1}", timeout=30)
        b, bcol = connect("1.2", name="backlog-consumer")
        try:
            b.subscribe(bq, id="b", ack="auto")
            bcol.wait_messages(n, timeout=60)
            got = [int(m.headers["n"]) for m in bcol.messages]
            check(got == list(range(n)), "the whole backlog, in order")
            bcol.no_errors()
        finally:
            quiet_close(b)

        # A NUL inside a header value: ERROR, and nothing forged reaches a subscriber.
        t = f"/topic/interop.forge.{pid}"
        c.subscribe(t, id="t", headers={"receipt": "r-t"})
        col.wait_receipt("r-t")
        e, ecol = connect("1.2", name="forger")
        raw_write(e, (f"SEND\ndestination:{t}\nx:a\0MESSAGE\nsubscription:t\n"
                      f"message-id:forged\ndestination:{t}\n\nforged\0").encode())
        ecol.wait(lambda: ecol.errors, 5, "an ERROR for a NUL in a header")
        check("NUL" in (ecol.errors[0].headers.get("message") or ""), f"{ecol.errors[0].headers}")
        quiet_close(e)
        p.send(t, b"legit", headers={"receipt": "r-legit"})
        pcol.wait_receipt("r-legit")
        col.wait_messages(3)
        check(body_of(col.messages[2]) == b"legit", f"a forged message arrived: {col.state()}")
        check(len(col.messages) == 3, f"a forged message arrived: {col.state()}")
        col.no_errors()
    finally:
        quiet_close(c)
        quiet_close(p)


# Header values that need escaping in 1.1/1.2 but travel raw in 1.0.
XHDRS = {"x-colon": "a:b", "x-utf8": "κόσμε"}


@scenario("py-tcp-cross-connection")
def _():
    """Three connections (1.2, 1.1, 1.0; spread over reactors): two subscribe, one publishes."""
    dest = f"/topic/interop.cross.{os.getpid()}"
    pub, pcol = connect("1.2", name="publisher")
    s1, c1 = connect("1.1", name="sub-1.1")
    s2, c2 = connect("1.0", name="sub-1.0")
    conns = [(pub, pcol), (s1, c1), (s2, c2)]
    try:
        s1.subscribe(dest, id="a", headers={"receipt": "ra"})
        c1.wait_receipt("ra")
        s2.subscribe(dest, id="b", headers={"receipt": "rb"})
        c2.wait_receipt("rb")
        bodies = [f"msg {i} {UTF8_TEXT}".encode() for i in range(20)] + [BINARY_BODY]
        for i, b in enumerate(bodies):
            pub.send(dest, b, headers=dict(XHDRS, seq=str(i)))
        pub.send(dest + ".other", b"elsewhere", headers={"receipt": "rp"})
        pcol.wait_receipt("rp")
        for col, sub, ver in ((c1, "a", "1.1"), (c2, "b", "1.0")):
            got = col.wait_messages(len(bodies))
            for i, (m, b) in enumerate(zip(got, bodies)):
                try:
                    check_message(m, dest, b, sub, ver, extra=dict(XHDRS, seq=str(i)))
                except Fail as e:
                    raise Fail(f"{col.name}, message {i}: {e}") from None
            expect_nothing(col, len(bodies), 0.3, f"{col.name} (other destination / duplicates)")
        check(not pcol.messages, f"the publisher (not subscribed) got {len(pcol.messages)} MESSAGE(s)")
        for c, col in conns:
            disconnect(c, col)
    finally:
        for c, _ in conns:
            quiet_close(c)


@scenario("py-tcp-heartbeat")
def _():
    """heart-beat 1000,1000 -> 1000,10000 from the server (it beats as often as asked, and
    expects the client every max(1 s, its own 10 s)); idle 25 s (past the server's 2x grace on
    its 10 s) and the connection is still alive, with a beat about every second."""
    dest = f"/topic/interop.hb.{os.getpid()}"
    conn, col = connect("1.2", heartbeats=(1000, 1000))
    try:
        hb = col.connected.headers.get("heart-beat")
        check(hb == "1000,10000", f"CONNECTED heart-beat {hb!r}, want '1000,10000' (cy honoured; max(cx,sy))")
        conn.subscribe(dest, id="hb", headers={"receipt": "r-sub"})
        col.wait_receipt("r-sub")
        start = time.monotonic()
        time.sleep(25)
        with col.cv:
            beats, timeouts = col.heartbeats, col.heartbeat_timeouts
        check(not col.disconnected, f"connection closed while idle with heart-beats {col.state()}")
        col.no_errors()
        check(timeouts == 0, f"stomp.py saw {timeouts} heart-beat timeout(s) from the server")
        check(beats >= 15, f"only {beats} server heart-beat(s) in {time.monotonic() - start:.1f}s, want >= 15")
        conn.send(dest, "still alive", headers={"receipt": "r-alive"})
        col.wait_receipt("r-alive")
        (m,) = col.wait_messages(1)
        check_message(m, dest, b"still alive", "hb")
        disconnect(conn, col)
    finally:
        quiet_close(conn)


def node_helper(mode, *args):
    cmd = ["node", ARGS.node_helper, mode, "--ws", str(ARGS.ws), *map(str, args)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def read_line(proc, want, timeout):
    """Wait (bounded) for the helper to print the line `want` on stdout."""
    q = queue.Queue()

    def pump():
        for line in proc.stdout:
            q.put(line.rstrip("\n"))
        q.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = q.get(timeout=max(deadline - time.monotonic(), 0.001))
        except queue.Empty:
            raise Fail(f"node helper did not print {want!r} within {timeout}s") from None
        if line is None:
            raise Fail(f"node helper exited (code {proc.wait()}) before printing {want!r}: {proc.stderr.read().strip()}")
        if line == want:
            return


def finish_helper(proc, timeout):
    """Wait (bounded) for the helper to exit; it must exit 0."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise Fail(f"node helper did not finish within {timeout}s; stderr: {proc.stderr.read().strip()}") from None
    check(proc.returncode == 0, f"node helper failed (exit {proc.returncode}): {proc.stderr.read().strip()}")


CROSS_BODIES = [b"plain text", UTF8_TEXT.encode(), BINARY_BODY]


@scenario("cross-stompjs-to-py")
def _():
    """stompjs (WebSocket) publishes; stomp.py (TCP) receives."""
    dest = f"/topic/interop.js2py.{os.getpid()}"
    conn, col = connect("1.2", name="py-sub")
    proc = None
    try:
        conn.subscribe(dest, id="x", headers={"receipt": "r-sub"})
        col.wait_receipt("r-sub")
        proc = node_helper("publish", dest)
        finish_helper(proc, 20)
        got = col.wait_messages(len(CROSS_BODIES))
        for i, (m, b) in enumerate(zip(got, CROSS_BODIES)):
            try:
                check_message(m, dest, b, "x", extra={"x-from": "stompjs"})
            except Fail as e:
                raise Fail(f"message {i} from stompjs: {e}") from None
        disconnect(conn, col)
    finally:
        if proc and proc.poll() is None:
            proc.kill()
        quiet_close(conn)


@scenario("cross-py-to-stompjs")
def _():
    """stomp.py (TCP) publishes; stompjs (WebSocket) receives (the helper checks the bytes)."""
    dest = f"/topic/interop.py2js.{os.getpid()}"
    proc = node_helper("receive", dest)
    conn = None
    try:
        read_line(proc, "READY", 15)
        conn, col = connect("1.2", name="py-pub")
        for i, b in enumerate(CROSS_BODIES):
            last = i == len(CROSS_BODIES) - 1
            conn.send(dest, b, headers=dict({"x-from": "stomp.py"}, **({"receipt": "r-pub"} if last else {})))
        col.wait_receipt("r-pub")
        finish_helper(proc, 20)
        disconnect(conn, col)
    finally:
        if proc.poll() is None:
            proc.kill()
        if conn:
            quiet_close(conn)


def main():
    global ARGS, HOST
    p = argparse.ArgumentParser()
    p.add_argument("--tcp", type=int)
    p.add_argument("--ws", type=int)
    p.add_argument("--host", default=HOST)
    p.add_argument("--node-helper", default=os.path.join(os.path.dirname(__file__), "stompjs_test.mjs"))
    p.add_argument("--list", action="store_true")
    p.add_argument("scenario", nargs="?")
    ARGS = p.parse_args()
    HOST = ARGS.host
    if ARGS.list:
        print("\n".join(SCENARIOS))
        return 0
    fn = SCENARIOS.get(ARGS.scenario)
    if fn is None:
        print(f"unknown scenario {ARGS.scenario!r}; known: {', '.join(SCENARIOS)}", file=sys.stderr)
        return 2
    try:
        fn()
    except Fail as e:
        print(f"assertion failed: {e}")
        return 1
    except Exception:
        print("error:", traceback.format_exc())
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
