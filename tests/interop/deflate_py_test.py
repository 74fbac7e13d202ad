#!/usr/bin/env python3
"""Interop scenario: the PyPI `websockets` library (an independent RFC 7692 implementation)
against a stompbox started with `--compression --echo`, speaking STOMP by hand over /ws.

    deflate_py_test.py --ws PORT [--tcp PORT] [--plain-ws PORT] py-ws-deflate

--ws is the compressing broker's WebSocket port (STOMP at /ws, echo at /echo), --tcp its STOMP
over TCP port (a stomp.py publisher there, optional), --plain-ws a broker without compression
(it must decline the offer, optional).

Exit 0 if the scenario passed, 1 (with an "assertion failed: ..." line) if not. `--list` prints
the scenario names. Every wait is bounded; run.sh bounds the process too.
"""

import argparse
import contextlib
import json
import os
import random
import sys
import threading
import traceback
from collections import deque

import stomp
from websockets.exceptions import ConnectionClosed
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Opcode
from websockets.sync.client import connect

HOST = "127.0.0.1"
ARGS = None
SCENARIOS = {}
WAIT = 10  # seconds, any single wait
MAX_SIZE = 8 << 20

UTF8_TEXT = "κόσμε 😀"


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


def json_body(size=1024):
    """A JSON document of about `size` bytes (UTF-8 inside)."""
    items, doc = [], {}
    while True:
        doc = {"order": 4711, "from": UTF8_TEXT, "items": items}
        raw = json.dumps(doc, ensure_ascii=False).encode()
        if len(raw) >= size:
            return raw
        n = len(items)
        items.append({"sku": f"A-{n:04d}", "qty": n % 7 + 1, "price": round(9.99 + n * 0.5, 2), "note": "κόσμε"})


def repetitive_text(size):
    line = "stompbox permessage-deflate κόσμε 😀 the quick brown fox jumps over the lazy dog\n"
    out, i = [], 0
    total = 0
    while total < size:
        s = f"{i:06d} {line}"
        out.append(s)
        total += len(s.encode())
        i += 1
    return "".join(out).encode()


# Bodies sent through the broker: (label, bytes, is UTF-8 text).
JSON_1K = json_body(1024)
TEXT_200K = repetitive_text(200 * 1024)
SMALL = f"small: {UTF8_TEXT}".encode()
BINARY_64K = bytes(((i * 7919) % 251) if i % 3 else 0 for i in range(64 * 1024))  # NULs, not UTF-8
BODIES = [
    ("json", JSON_1K, True),
    ("text-200k", TEXT_200K, True),
    ("small", SMALL, True),
    ("binary-64k", BINARY_64K, False),
]
# Header values that need 1.2 escaping, and UTF-8.
XHDRS = {"x-colon": "a:b", "x-utf8": "κόσμε", "x-bs": "c\\d"}


# ---- STOMP frames, by hand -----------------------------------------------------------------

ESC = {"\\": "\\\\", ":": "\\c", "\n": "\\n", "\r": "\\r"}
UNESC = {"\\\\": "\\", "\\c": ":", "\\n": "\n", "\\r": "\r"}


def escape(s):
    return "".join(ESC.get(c, c) for c in s)


def unescape(s):
    out, i = [], 0
    while i < len(s):
        pair = s[i : i + 2]
        if pair in UNESC:
            out.append(UNESC[pair])
            i += 2
        else:
            check(s[i] != "\\", f"undefined escape in header {s!r}")
            out.append(s[i])
            i += 1
    return "".join(out)


def encode_frame(command, headers, body=b""):
    head = command + "\n" + "".join(f"{escape(k)}:{escape(v)}\n" for k, v in headers.items()) + "\n"
    return head.encode() + body + b"\0"


class Frame:
    def __init__(self, command, headers, body):
        self.command, self.headers, self.body = command, headers, body

    def __repr__(self):
        return f"<{self.command} {self.headers} {len(self.body)} bytes {self.body[:60]!r}>"


def parse_frames(data):
    """Every STOMP frame in one WebSocket message (heart-beat EOLs skipped)."""
    frames, i = [], 0
    while i < len(data):
        if data[i : i + 1] == b"\n":
            i += 1
            continue
        if data[i : i + 2] == b"\r\n":
            i += 2
            continue
        end = data.find(b"\n\n", i)
        check(end >= 0, f"no end of headers in a WebSocket message: {data[i:i + 200]!r}")
        lines = data[i:end].decode("utf-8").split("\n")
        headers = {}
        for line in lines[1:]:
            k, sep, v = line.partition(":")
            check(sep, f"header line without ':': {line!r}")
            headers.setdefault(unescape(k), unescape(v))  # the first of repeated headers counts
        start = end + 2
        if "content-length" in headers:
            stop = start + int(headers["content-length"])
            check(data[stop : stop + 1] == b"\0", f"no NUL after content-length {headers['content-length']} bytes")
        else:
            stop = data.find(b"\0", start)
            check(stop >= 0, f"frame without NUL: {data[i:i + 200]!r}")
        frames.append(Frame(lines[0], headers, data[start:stop]))
        i = stop + 1
    return frames


# ---- a websockets connection that records its wire frames ----------------------------------


class Conn:
    """One `websockets` client connection; records the data frames it received (opcode, RSV1,
    payload bytes on the wire, FIN) and counts the bytes read from the socket."""

    def __init__(self, stack, name, port, path="/ws", compression="deflate", extensions=None):
        self.name = name
        self.rx = []
        self.tx = []
        self.bytes_read = 0
        self.pending = deque()
        kw = dict(open_timeout=WAIT, close_timeout=5, ping_interval=None, max_size=MAX_SIZE)
        if path == "/ws":
            kw["subprotocols"] = ["v12.stomp", "v11.stomp", "v10.stomp"]
        if extensions is not None:
            kw["extensions"] = extensions
            compression = None
        self.ws = stack.enter_context(connect(f"ws://{HOST}:{port}{path}", compression=compression, **kw))
        self.offered = compression is not None or bool(extensions)
        self.answer = self.ws.response.headers.get("Sec-WebSocket-Extensions")
        self.extensions = list(self.ws.protocol.extensions)
        proto = self.ws.protocol
        orig_receive = proto.receive_data

        def receive_data(data):
            self.bytes_read += len(data)
            return orig_receive(data)

        proto.receive_data = receive_data
        for ext in self.extensions:
            orig_decode, orig_encode = ext.decode, ext.encode

            def decode(frame, *, max_size=None, _orig=orig_decode):
                if frame.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
                    self.rx.append((frame.opcode.name, frame.rsv1, len(frame.data), frame.fin))
                return _orig(frame, max_size=max_size)

            def encode(frame, _orig=orig_encode):
                out = _orig(frame)
                if out.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
                    self.tx.append((out.opcode.name, out.rsv1, len(out.data), out.fin))
                return out

            ext.decode, ext.encode = decode, encode

    def deflate(self):
        return any(e.name == "permessage-deflate" for e in self.extensions)

    def state(self):
        return f"[{self.name}: close {self.ws.protocol.close_code} {self.ws.protocol.close_reason!r}, extensions {self.answer!r}]"

    def recv(self, timeout=WAIT, what="a message"):
        try:
            return self.ws.recv(timeout=timeout)
        except TimeoutError:
            raise Fail(f"{self.name}: timed out after {timeout}s waiting for {what} {self.state()}") from None
        except ConnectionClosed as e:
            raise Fail(f"{self.name}: connection closed waiting for {what}: {e} {self.state()}") from None


class Stomp(Conn):
    """STOMP 1.2 over a `websockets` connection, frames written by hand."""

    def __init__(self, stack, name, port, **kw):
        super().__init__(stack, name, port, **kw)
        check(self.ws.subprotocol == "v12.stomp", f"{name}: subprotocol {self.ws.subprotocol!r}, want v12.stomp")
        self.send("CONNECT", {"accept-version": "1.2", "host": "/", "heart-beat": "0,0"})
        f = self.expect("CONNECTED")
        check(f.headers.get("version") == "1.2", f"{name}: CONNECTED {f.headers}")

    def send(self, command, headers, body=b"", text=True, fragment=None):
        """One frame in one WebSocket message (text unless told), or in fragments of `fragment`
        bytes (split anywhere, inside UTF-8 sequences too)."""
        data = encode_frame(command, headers, body)
        if fragment:
            self.ws.send([data[i : i + fragment] for i in range(0, len(data), fragment)], text=text)
        else:
            self.ws.send(data, text=text)

    def frame(self, timeout=WAIT, what="a frame"):
        while not self.pending:
            msg = self.recv(timeout, what)
            self.pending.extend(parse_frames(msg.encode() if isinstance(msg, str) else msg))
        return self.pending.popleft()

    def expect(self, command, timeout=WAIT, what=None):
        f = self.frame(timeout, what or command)
        if f.command == "ERROR":
            raise Fail(f"{self.name}: ERROR {f.headers.get('message')!r} {f.body[:200]!r} while waiting for {what or command}")
        check(f.command == command, f"{self.name}: got {f!r}, want {what or command}")
        return f

    def receipt(self, rid):
        f = self.expect("RECEIPT", what=f"RECEIPT {rid}")
        check(f.headers.get("receipt-id") == rid, f"{self.name}: RECEIPT {f.headers}, want receipt-id {rid}")

    def subscribe(self, dest, sid):
        self.send("SUBSCRIBE", {"id": sid, "destination": dest, "receipt": f"r-sub-{sid}"})
        self.receipt(f"r-sub-{sid}")

    def disconnect(self):
        """DISCONNECT with a receipt; then the broker closes the WebSocket, normally."""
        self.send("DISCONNECT", {"receipt": "bye"})
        self.receipt("bye")
        try:
            extra = self.ws.recv(timeout=5)
            raise Fail(f"{self.name}: a message after the DISCONNECT receipt: {extra[:100]!r}")
        except TimeoutError:
            raise Fail(f"{self.name}: the broker did not close the WebSocket within 5 s of the DISCONNECT receipt") from None
        except ConnectionClosed:
            pass
        code = self.ws.protocol.close_code
        check(code == 1000, f"{self.name}: close code {code} after DISCONNECT, want 1000 {self.state()}")


def ext_ok(c, want_deflate=True):
    if want_deflate:
        check(c.answer and "permessage-deflate" in c.answer, f"{c.name}: Sec-WebSocket-Extensions {c.answer!r}: no permessage-deflate")
        check(c.deflate(), f"{c.name}: websockets negotiated {c.extensions}, want permessage-deflate")
    else:
        check(c.answer is None, f"{c.name}: Sec-WebSocket-Extensions {c.answer!r}, want none")
        check(not c.extensions, f"{c.name}: websockets negotiated {c.extensions}, want none")


def window9():
    """A client that asks for 9-bit windows both ways (the smallest zlib takes)."""
    return [ClientPerMessageDeflateFactory(server_max_window_bits=9, client_max_window_bits=9)]


def check_message(f, dest, sid, body, extra):
    h = f.headers
    check(f.command == "MESSAGE", f"got {f!r}, want MESSAGE")
    check(h.get("destination") == dest, f"MESSAGE destination {h.get('destination')!r} != {dest!r}")
    check(h.get("subscription") == sid, f"MESSAGE subscription {h.get('subscription')!r} != {sid!r}")
    check(h.get("message-id"), f"MESSAGE without message-id: {h}")
    check(
        f.body == body,
        f"MESSAGE body differs: got {len(f.body)} bytes {f.body[:60]!r}..., want {len(body)} bytes {body[:60]!r}...",
    )
    if "content-length" in h:
        check(int(h["content-length"]) == len(body), f"content-length {h['content-length']} != {len(body)}")
    for k, v in extra.items():
        check(h.get(k) == v, f"MESSAGE header {k}: {h.get(k)!r} != {v!r} (headers {h})")


# ---- the scenario: STOMP through the broker, refusals, /echo -------------------------------


def stomp_part(stack):
    pid = os.getpid()
    dest = f"/topic/interop.pydeflate.{pid}"
    subs = [
        Stomp(stack, "sub-deflate", ARGS.ws),
        Stomp(stack, "sub-deflate-w9", ARGS.ws, extensions=window9()),
        Stomp(stack, "sub-plain", ARGS.ws, compression=None),
    ]
    pub_z = Stomp(stack, "pub-deflate", ARGS.ws)
    pub_p = Stomp(stack, "pub-plain", ARGS.ws, compression=None)
    for c in (*subs[:2], pub_z):
        ext_ok(c)
    for c in (subs[2], pub_p):
        ext_ok(c, False)
    w9 = subs[1].answer or ""
    check("server_max_window_bits=9" in w9, f"sub-deflate-w9: answer {w9!r} does not grant server_max_window_bits=9")
    print(f"ok: negotiated {subs[0].answer!r}; with 9-bit windows asked: {w9!r}; without: none")
    for i, s in enumerate(subs):
        s.subscribe(dest, f"s{i}")

    py_pub = None
    if ARGS.tcp:
        # A stomp.py publisher over TCP: its messages reach the WebSocket subscribers compressed too.
        py_pub = stomp.Connection12([(HOST, ARGS.tcp)], auto_decode=False, auto_content_length=True)
        connected = threading.Event()
        errors = []

        class Listener(stomp.ConnectionListener):
            def on_connected(self, frame):
                connected.set()

            def on_error(self, frame):
                errors.append(frame)

        py_pub.set_listener("l", Listener())
        py_pub.connect(headers={"host": "/"}, wait=False)  # stomp.py's own wait is unbounded
        check(connected.wait(WAIT), f"stomp.py over TCP: no CONNECTED in {WAIT}s")

    sent = 0

    def deliver(pub_name, label, body, publish):
        """Publish one message, then every subscriber gets it byte-exact; returns per-subscriber
        (wire frames, socket bytes) of that delivery."""
        nonlocal sent
        before = [(len(s.rx), s.bytes_read) for s in subs]
        publish()
        sent += 1
        out = []
        for i, s in enumerate(subs):
            f = s.frame(what=f"MESSAGE {sent} ({pub_name} {label})")
            try:
                check_message(f, dest, f"s{i}", body, dict(XHDRS, **{"x-from": pub_name, "x-kind": label}))
            except Fail as e:
                raise Fail(f"{s.name}, {pub_name} {label} ({len(body)} bytes): {e}") from None
            out.append((s.rx[before[i][0] :], s.bytes_read - before[i][1]))
        return out

    def ws_publish(pub, label, body, is_text, fragment=None):
        rid = f"r-{pub.name}-{label}-{fragment or 0}"
        hdrs = dict(XHDRS, **{"destination": dest, "x-from": pub.name, "x-kind": label, "receipt": rid,
                               "content-length": str(len(body))})
        if label == "json":
            hdrs["content-type"] = "application/json"

        def go():
            pub.send("SEND", hdrs, body, text=is_text, fragment=fragment)
            pub.receipt(rid)

        return go

    stats = {}
    for pub in (pub_z, pub_p):
        for label, body, is_text in BODIES:
            stats[(pub.name, label)] = deliver(pub.name, label, body, ws_publish(pub, label, body, is_text))
    # The same 200 KiB text as a fragmented message (32 KiB frames, cut inside UTF-8 sequences;
    # websockets ends it with an empty final frame), from the compressing and the plain client.
    for pub in (pub_z, pub_p):
        label = "text-200k-fragmented"
        stats[(pub.name, label)] = deliver(pub.name, label, TEXT_200K,
                                           ws_publish(pub, label, TEXT_200K, True, fragment=32 * 1024 + 1))
    frag_tx = [t for t in pub_z.tx if t[0] in ("TEXT", "CONT")][-8:]
    check(any(t[1] for t in frag_tx), f"pub-deflate: the fragmented message went uncompressed? {frag_tx}")

    if py_pub:
        for label, body, _ in BODIES:
            rid = f"r-tcp-{label}"
            hdrs = dict(XHDRS, **{"x-from": "stomp.py-tcp", "x-kind": label})

            def go(body=body, hdrs=hdrs, rid=rid):
                py_pub.send(dest, body, headers=dict(hdrs, receipt=rid))

            stats[("stomp.py-tcp", label)] = deliver("stomp.py-tcp", label, body, go)

    # Evidence that the big message travelled compressed to compressing subscribers only.
    for (pub_name, label), per_sub in stats.items():
        if label != "text-200k":
            continue
        for s, (frames, nbytes) in zip(subs, per_sub):
            if s.deflate():
                check(frames and frames[0][1], f"{s.name}: the 200 KiB text from {pub_name} arrived without RSV1: {frames}")
                check(nbytes < len(TEXT_200K) // 10,
                      f"{s.name}: {nbytes} bytes read for the 200 KiB text from {pub_name}: not compressed")
            else:
                check(nbytes >= len(TEXT_200K), f"{s.name}: only {nbytes} bytes read for a 200 KiB body uncompressed")
    z = stats[("pub-deflate", "text-200k")]
    print("ok: 200 KiB text from pub-deflate read as " + ", ".join(f"{s.name} {n} bytes" for s, (_, n) in zip(subs, z)))
    small = stats[("pub-deflate", "small")][0][0]
    print(f"info: sub-deflate's frames for the {len(SMALL)}-byte body: {small} (opcode, RSV1, payload bytes, FIN)")

    for s in subs:
        check(not s.pending, f"{s.name}: unexpected frames {list(s.pending)}")
    # Nothing more arrives (no duplicates).
    for s in subs:
        try:
            extra = s.ws.recv(timeout=0.3)
            raise Fail(f"{s.name}: unexpected message {extra[:100]!r}")
        except TimeoutError:
            pass
    print(f"ok: {sent} messages byte-exact to 3 subscribers (deflate, deflate 9-bit windows, plain)")
    if py_pub:
        check(not errors, f"stomp.py over TCP got ERROR frame(s): {[(e.headers, e.body) for e in errors]}")
        py_pub.disconnect()
    for c in (*subs, pub_z, pub_p):
        c.disconnect()


def refusals(stack):
    """Checked after inflating: a compressed text message that is not UTF-8 gets an ERROR and
    close 1007; one that inflates past the broker's 5 MiB message limit (6 MiB of one byte,
    some KiB on the wire) gets an ERROR and close 1009."""
    dest = f"/topic/interop.pydeflate.bad.{os.getpid()}"
    for label, body, code in (("not UTF-8", b"not utf-8: \xff\xfe" * 100, 1007),
                              ("6 MiB inflated", b"a" * (6 << 20), 1009)):
        c = Stomp(stack, f"refused-{code}", ARGS.ws)
        c.send("SEND", {"destination": dest, "receipt": "r-bad"}, body, text=True)
        f = c.frame(what=f"an ERROR for a compressed text message {label}")
        check(f.command == "ERROR", f"{c.name}: {label}: got {f!r}, want ERROR")
        check(c.tx and c.tx[-1][1], f"{c.name}: {label}: websockets did not compress it: {c.tx[-1:]}")
        try:
            extra = c.ws.recv(timeout=5)
            raise Fail(f"{c.name}: {label}: a message after the ERROR: {extra[:100]!r}")
        except TimeoutError:
            raise Fail(f"{c.name}: {label}: not closed within 5 s of the ERROR") from None
        except ConnectionClosed:
            pass
        got = c.ws.protocol.close_code
        check(got == code, f"{c.name}: {label}: close code {got}, want {code} {c.state()}")
        print(f"ok: a compressed text message {label} ({c.tx[-1][2]} bytes on the wire): "
              f"ERROR {f.headers.get('message')!r}, close {got}")


def text_of(size, seed):
    rnd = random.Random(seed)
    words = ["stomp", "box", "κόσμε", "😀", "deflate", "\n", "frame", "€"]
    out, n = [], 0
    while n < size:
        w = rnd.choice(words)
        out.append(w)
        n += len(w.encode())
    return "".join(out)


def echo_part(stack):
    """The echo endpoint, compressed both ways: text and binary messages of several sizes,
    whole and fragmented, come back unchanged and of the same type."""
    rnd = random.Random(12)
    texts = [("empty", ""), ("1", "x"), ("300", text_of(300, 1)), ("5k", text_of(5000, 2)),
             ("70k", text_of(70_000, 3)), ("200k", TEXT_200K.decode())]
    binaries = [("empty", b""), ("1", b"\0"), ("300", bytes(range(256)) + b"\0" * 44),
                ("5k-random", rnd.randbytes(5000)), ("70k-random", rnd.randbytes(70_000)), ("200k", bytes((i * 37) % 256 for i in range(128)) * 1600),
                # Repeats every 753 bytes: past the farthest match zlib makes with a 9-bit window
                # (512 - 262 = 250 bytes), so that client gets it compressed but not smaller.
                ("192k-period-753", BINARY_64K * 3)]
    clients = [
        Conn(stack, "echo-deflate", ARGS.ws, path="/echo"),
        Conn(stack, "echo-deflate-w9", ARGS.ws, path="/echo", extensions=window9()),
        Conn(stack, "echo-plain", ARGS.ws, path="/echo", compression=None),
    ]
    ext_ok(clients[0])
    ext_ok(clients[1])
    ext_ok(clients[2], False)
    count = 0
    sizes = []
    for c in clients:
        cases = []
        for label, t in texts:
            cases.append((f"text {label}", t, t))
            if len(t) > 1:
                # str fragments (each valid UTF-8) and byte fragments cut anywhere (text=True).
                cases.append((f"text {label} in str fragments", [t[i : i + 997] for i in range(0, len(t), 997)], t))
                raw = t.encode()
                cases.append((f"text {label} in byte fragments", [raw[i : i + 1001] for i in range(0, len(raw), 1001)], t))
        for label, b in binaries:
            cases.append((f"binary {label}", b, b))
            if len(b) > 1:
                cases.append((f"binary {label} in fragments", [b[i : i + 4099] for i in range(0, len(b), 4099)], b))
        cases.append(("text 300 in 1-byte fragments", [bytes([x]) for x in texts[2][1].encode()], texts[2][1]))
        for label, msg, want in cases:
            is_bytes_fragments = isinstance(msg, list) and isinstance(msg[0], bytes) and isinstance(want, str)
            before = len(c.rx)
            c.ws.send(msg, text=True if is_bytes_fragments else None)
            got = c.recv(what=f"the echo of {label}")
            check(type(got) is type(want), f"{c.name}: {label}: echoed as {type(got).__name__}, sent {type(want).__name__}")
            check(got == want, f"{c.name}: {label}: echo differs: got {len(got)} {got[:60]!r}..., want {len(want)} {want[:60]!r}...")
            count += 1
            frames = c.rx[before:]
            wire = sum(f[2] for f in frames)
            if c.deflate() and label == "binary 192k-period-753":
                print(f"info: {c.name}: echo of {label}: {wire} payload bytes on the wire, RSV1 {frames[:1]}")
            if c.deflate() and label in ("text 200k", "binary 200k"):
                check(frames and frames[0][1], f"{c.name}: echo of {label} without RSV1: {frames}")
                check(wire < len(want) // 2, f"{c.name}: echo of {label}: {wire} payload bytes on the wire, not compressed")
                sizes.append(f"{c.name} {label} {wire}")
        try:
            extra = c.ws.recv(timeout=0.3)
            raise Fail(f"{c.name}: unexpected echo {extra[:60]!r}")
        except TimeoutError:
            pass
        c.ws.close()
        check(c.ws.protocol.close_code == 1000, f"{c.name}: close code {c.ws.protocol.close_code} {c.state()}")
    print(f"ok: 200 KiB echoes compressed to (payload bytes): {', '.join(sizes)}")
    print(f"ok: {count} echoes unchanged (deflate, deflate 9-bit windows, plain; whole and fragmented)")


@scenario("py-ws-deflate")
def _():
    with contextlib.ExitStack() as stack:
        if ARGS.plain_ws:
            # The broker without --compression declines the offer and works as before.
            plain = Stomp(stack, "offer-to-plain-broker", ARGS.plain_ws)
            ext_ok(plain, False)
            plain.disconnect()
            print("ok: the broker without --compression declines permessage-deflate")
        stomp_part(stack)
        refusals(stack)
        echo_part(stack)


def main():
    global ARGS, HOST
    p = argparse.ArgumentParser()
    p.add_argument("--ws", type=int)
    p.add_argument("--tcp", type=int)
    p.add_argument("--plain-ws", type=int)
    p.add_argument("--host", default=HOST)
    p.add_argument("--list", action="store_true")
    p.add_argument("scenario", nargs="?")
    ARGS = p.parse_args()
    HOST = ARGS.host
    if ARGS.list:
        print("\n".join(SCENARIOS))
        return 0
    fn = SCENARIOS.get(ARGS.scenario)
    if fn is None or not ARGS.ws:
        print(f"usage: deflate_py_test.py --ws PORT [--tcp PORT] [--plain-ws PORT] SCENARIO; known: {', '.join(SCENARIOS)}",
              file=sys.stderr)
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
