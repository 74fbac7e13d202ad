# Python 2.7. Runs sockjs-protocol-0.3.3.py (extracted at run time by run.sh, never copied into
# this repo) with unittest2, leaving out the tests that stompbox deliberately does not support.
#
#   SOCKJS_URL=http://127.0.0.1:PORT/sockjs-test python runner.py SUITE_DIR [unittest2 args]
#
# unittest2 args as for the suite itself: test names (Protocol, Protocol.test_simpleSession),
# -v / -q, -f (failfast). Env:
#   SOCKJS_EXCLUDE     unset: the list below; "none" or "": nothing left out; else a
#                      comma-separated list of Class or Class.test_name
#   SOCKJS_WS_VERSION  Sec-WebSocket-Version that the suite's ws4py client sends (default 13;
#                      the suite's own ws4py fork sends 8, i.e. hybi-08, which stompbox leaves
#                      out; the framing is the same)
# Ends with "sockjs: N passed, N failed, N skipped"; exit 0 when nothing failed, else 1.
from __future__ import print_function
import imp
import os
import sys

SUITE_FILE = 'sockjs-protocol-0.3.3.py'

# What stompbox leaves out of SockJS 0.3.3, and why.
EXCLUDE = [
    ('JsonPolling', 'JSONP transports (jsonp, jsonp_send) are not served'),
    ('JsessionidCookie.test_jsonp', 'JSONP transports (jsonp, jsonp_send) are not served'),
    ('WebsocketHixie76', 'hixie-76 / hybi-00 WebSocket handshake is not supported'),
    ('WebsocketHybi10.test_headersSanity',
     'sends Sec-WebSocket-Version 7 and 8 (then 13); only version 13 (RFC 6455) is supported'),
    ('WebsocketHybi10.test_firefox_602_connection_header',
     'sends Sec-WebSocket-Version 7; only version 13 (RFC 6455) is supported'),
]


def out(msg=''):
    print(('sockjs: ' + msg).rstrip())
    sys.stdout.flush()


def excludes():
    env = os.environ.get('SOCKJS_EXCLUDE')
    if env is None:
        return EXCLUDE
    if env.strip().lower() in ('', 'none'):
        return []
    reasons = dict(EXCLUDE)
    return [(n, reasons.get(n, 'SOCKJS_EXCLUDE'))
            for n in (x.strip() for x in env.split(',')) if n]


def patch_ws_version(version):
    # The suite's WebSocket8Client subclasses ws4py's WebSocketClient without passing a
    # version; give that constructor another default.
    from ws4py.client import threadedclient
    cls = threadedclient.WebSocketClient
    orig = cls.__init__

    def __init__(self, url, sock=None, protocols=None, version=version):
        orig(self, url, sock=sock, protocols=protocols, version=version)
    cls.__init__ = __init__


def main():
    if len(sys.argv) < 2:
        sys.stderr.write(__doc__ or 'usage: runner.py SUITE_DIR [unittest2 args]\n')
        return 2
    suite_dir, args = sys.argv[1], sys.argv[2:]
    sys.path.insert(0, suite_dir)
    import unittest2 as unittest

    version = os.environ.get('SOCKJS_WS_VERSION', '13')
    patch_ws_version(version)
    mod = imp.load_source('sockjs_protocol_0_3_3', os.path.join(suite_dir, SUITE_FILE))
    out('SOCKJS_URL=%s, ws4py client Sec-WebSocket-Version: %s' % (mod.test_top_url, version))

    skipped = excludes()
    if skipped:
        out('excluded (%d):' % len(skipped))
    for name, why in skipped:
        cls_name, _, meth = name.partition('.')
        cls = getattr(mod, cls_name, None)
        if not (isinstance(cls, type) and issubclass(cls, unittest.TestCase)):
            out('no such test class: %s' % cls_name)
            return 2
        if meth:
            fn = getattr(cls, meth, None)
            if fn is None or not meth.startswith('test'):
                out('no such test: %s' % name)
                return 2
            setattr(cls, meth, unittest.skip(why)(fn.__func__))
        else:
            cls.__unittest_skip__ = True
            cls.__unittest_skip_why__ = why
        out('  %-52s %s' % (name, why))

    prog = unittest.main(module=mod, argv=[SUITE_FILE] + args, exit=False, verbosity=2)
    r = prog.result
    bad = [t.id().split('.', 1)[1] for t, _ in r.failures + r.errors]
    bad += [t.id().split('.', 1)[1] for t in r.unexpectedSuccesses]
    nskip = len(r.skipped)
    npass = r.testsRun - len(bad) - nskip
    for name in sorted(bad):
        out('FAILED %s' % name)
    out('%d passed, %d failed, %d skipped' % (npass, len(bad), nskip))
    return 1 if bad else 0


if __name__ == '__main__':
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # A ws4py reader thread of a failed test may still be blocked on its socket.
    os._exit(code)
