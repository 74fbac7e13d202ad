"""pytest plugin used by run-stomppy.sh to run stomp.py's own test suite against stompbox.

Loaded with `-p stompbox_plugin` (PYTHONPATH must contain this directory).

Environment:
  STOMPBOX_BIN        broker binary; if unset no broker is started (use brokers started by hand)
  STOMPBOX_TCP_PORT   plain STOMP/TCP port (127.0.0.1)
  STOMPBOX_WS_PORT    STOMP/WebSocket port (127.0.0.1, path /ws)
  STOMPBOX_MODE       "tcp" (default) or "ws"; in ws mode every stomp.py connection the suite opens
                      to 127.0.0.1/localhost:STOMPBOX_TCP_PORT is transparently replaced by a
                      stomp.py WSTransport to ws://127.0.0.1:STOMPBOX_WS_PORT/ws (the STOMP
                      protocol version the test asked for -- 1.0/1.1/1.2 -- is kept)
  STOMPBOX_LOGDIR     where broker stderr logs and crash notes go
  STOMPBOX_TLS_DIR    optional: dir with broker.pem/broker.key/expiredbroker.pem/expiredbroker.key;
                      then two extra TLS-on-TCP brokers are started on STOMPBOX_SSL_PORT and
                      STOMPBOX_SSL_EXPIRED_PORT
  STOMPBOX_EXTRA_ARGS extra broker flags (whitespace separated)
  STOMPBOX_WS_BINARY  "1": in ws mode send binary WebSocket messages (stomp.py binary_mode) instead of text

The broker is started once per session and checked after every test; if it has died its exit status
is recorded in $STOMPBOX_LOGDIR/crashes.txt (with the test that was running) and it is restarted.
"""
import os
import shlex
import socket
import subprocess
import time

import pytest

_brokers = {}  # name -> dict(cmd, proc, n, logdir)
_crashes = []


def _env(name, default=None):
    v = os.environ.get(name)
    return v if v not in (None, "") else default


def _wait_port(port, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def _start(name):
    b = _brokers[name]
    b["n"] += 1
    log = os.path.join(b["logdir"], "broker-%s-%d.stderr" % (name, b["n"]))
    b["log"] = log
    f = open(log, "wb")
    b["proc"] = subprocess.Popen(b["cmd"], stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    f.close()
    if not _wait_port(b["port"]):
        raise RuntimeError("broker %s did not start listening on %s; see %s" % (name, b["port"], log))


def _register(name, cmd, port, logdir):
    _brokers[name] = dict(cmd=cmd, proc=None, n=0, port=port, logdir=logdir)
    _start(name)


def pytest_configure(config):
    tcp = int(_env("STOMPBOX_TCP_PORT", "61613"))
    ws = int(_env("STOMPBOX_WS_PORT", "15674"))
    if _env("STOMPBOX_MODE", "tcp") == "ws":
        _patch_ws(tcp, ws)
    bin_ = _env("STOMPBOX_BIN")
    if not bin_:
        return  # brokers started by hand: only the ws redirection (if any) is done
    logdir = _env("STOMPBOX_LOGDIR", ".")
    os.makedirs(logdir, exist_ok=True)
    extra = shlex.split(_env("STOMPBOX_EXTRA_ARGS", ""))
    base = [bin_, "--no-metrics", "--log-level", _env("STOMPBOX_LOG_LEVEL", "warn")] + extra
    _register("main", base + ["--listen", "127.0.0.1:%d" % ws, "--tcp-listen", "127.0.0.1:%d" % tcp], tcp, logdir)

    tls = _env("STOMPBOX_TLS_DIR")
    if tls:
        for name, stem, port in (("tls", "broker", int(_env("STOMPBOX_SSL_PORT", "61614"))),
                                 ("tls-expired", "expiredbroker", int(_env("STOMPBOX_SSL_EXPIRED_PORT", "61619")))):
            _register(name, base + ["--no-ws", "--tcp-listen", "127.0.0.1:%d" % port, "--tls-tcp",
                                    "--tls-cert", os.path.join(tls, stem + ".pem"),
                                    "--tls-key", os.path.join(tls, stem + ".key")], port, logdir)


def _patch_ws(tcp_port, ws_port):
    import stomp.connect
    from stomp.adapter.ws import WSTransport

    orig = stomp.connect.Transport
    local = ("127.0.0.1", "localhost")

    def factory(host_and_ports=None, *args, **kwargs):
        hp = host_and_ports if host_and_ports is not None else [("localhost", 61613)]
        if hp and all(h in local and p == tcp_port for (h, p) in hp):
            kwargs.setdefault("ws_path", "/ws")
            if _env("STOMPBOX_WS_BINARY", "0") == "1":
                kwargs.setdefault("binary_mode", True)
            return WSTransport([("127.0.0.1", ws_port)], *args, **kwargs)
        return orig(host_and_ports, *args, **kwargs)

    stomp.connect.Transport = factory


def _check(where):
    for name, b in _brokers.items():
        p = b["proc"]
        if p is not None and p.poll() is not None:
            msg = "broker %s exited with status %s %s (stderr: %s)" % (name, p.returncode, where, b["log"])
            _crashes.append(msg)
            with open(os.path.join(b["logdir"], "crashes.txt"), "a") as f:
                f.write(msg + "\n")
            _start(name)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    _check("before %s started (so during/after the previous test)" % item.nodeid)


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    time.sleep(0.3)  # a crash triggered by the test's last frames may take a moment
    _check("during or right after %s" % item.nodeid)


def pytest_terminal_summary(terminalreporter):
    if _brokers:
        terminalreporter.write_sep("=", "stompbox broker status")
        if not _crashes:
            terminalreporter.write_line("no broker crashes")
        for c in _crashes:
            terminalreporter.write_line("CRASH: " + c)


def pytest_unconfigure(config):
    for b in _brokers.values():
        p = b["proc"]
        if p is not None and p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
