#!/usr/bin/env bash
# The official SockJS protocol test suite (sockjs-protocol v0.3.3, sockjs-protocol-0.3.3.py)
# against a SockJS server.
#
#   tests/sockjs-suite/run.sh URL [unittest2 args]
#   tests/sockjs-suite/run.sh --reference [unittest2 args]
#
# URL is the base of the four services echo, close, disabled_websocket_echo and
# cookie_needed_echo, e.g. http://127.0.0.1:PORT/sockjs-test for
#   stompbox --listen 127.0.0.1:PORT --echo --sockjs-response-limit 4096
# --reference installs sockjs-node (npm; 0.3.24, or SOCKJS_REF_VERSION=0.3.5, pinned below) into
# $SOCKJS_REF_DIR/VERSION, starts reference-server.js on a free 127.0.0.1 port, runs the suite
# against it, stops it. By hand: NODE_PATH=DIR/node_modules node reference-server.js [PORT].
# unittest2 args: test names (Protocol, XhrStreaming.test_response_limit), -q, -f (failfast).
#
# Creates or reuses a Python 2.7 venv outside the repo, fetches the suite at v0.3.3 (and the
# ws4py fork its Makefile installs) into it, never into this repo, and runs it through
# runner.py, which leaves out the tests stompbox does not support (listed with their reasons;
# see README.md). Ends with "sockjs: N passed, N failed, N skipped"; exit 0 when none failed,
# 1 when some did, 2 on a usage or setup error.
#
# Env: SOCKJS_SUITE_VENV (default /work/sockjs-suite-venv), SOCKJS_PYTHON (a Python 2.7 for
# creating it; default pyenv's 2.7, else python2.7), SOCKJS_PROTOCOL_REPO (git URL or path of
# sockjs-protocol; default the local mirror if there is one, else
# https://github.com/sockjs/sockjs-protocol), SOCKJS_WS4PY_REPO (likewise for
# majek/WebSocket-for-Python), SOCKJS_EXCLUDE ("none" runs everything, or Class[.test],...),
# SOCKJS_WS_VERSION (default 13), SOCKJS_SUITE_TIMEOUT (seconds for the run, default 900),
# SOCKJS_REF_DIR (default /tmp/sockjs-ref), SOCKJS_REF_VERSION (0.3.24 or 0.3.5),
# SOCKJS_REINSTALL=1 (install the pins and fetch the sources again).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
log() { printf 'sockjs: %s\n' "$*"; }
die() { printf 'sockjs: %s\n' "$*" >&2; exit 2; }

# ---- pins ----------------------------------------------------------------------------------
SUITE_TAG=v0.3.3
SUITE_COMMIT=18ba7987729959b9696db49600059e625005173e
# The suite's Makefile installs websocket-client 0.4.1 (hixie-76 client) and ws4py from
# majek's fork (master, last commit 2011-09-27); ws4py on PyPI (0.3.2 and later) lacks the
# read_from_connection hook that the suite's WebSocket8Client relies on.
WS4PY_COMMIT=f690ae7c994ac67da5d68ecfa7deec2189e86044
VIRTUALENV_PIN="virtualenv==16.7.12"
PINS="unittest2==1.1.0
argparse==1.4.0
linecache2==1.0.0
six==1.16.0
traceback2==1.4.0
websocket-client==0.4.1"
# sockjs-node for --reference, the whole dependency tree pinned: 0.3.24 (the last 0.3.x) or
# 0.3.5 (of the suite's time; SOCKJS_REF_VERSION=0.3.5).
REF_VERSION="${SOCKJS_REF_VERSION:-0.3.24}"
case "$REF_VERSION" in
  0.3.24) NPM_PINS="sockjs@0.3.24 faye-websocket@0.11.4 websocket-driver@0.7.5
    websocket-extensions@0.3.0 http-parser-js@0.5.10 safe-buffer@5.2.1 uuid@8.3.2" ;;
  0.3.5) NPM_PINS="sockjs@0.3.5 faye-websocket@0.4.0 node-uuid@1.3.3" ;;
  *) echo "sockjs: SOCKJS_REF_VERSION must be 0.3.24 or 0.3.5" >&2; exit 2 ;;
esac

# ---- arguments -----------------------------------------------------------------------------
[ $# -ge 1 ] || { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 2; }
case "$1" in
  -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  --reference) URL="" ;;
  http://*) URL="${1%/}" ;;
  *) die "URL must be http://HOST:PORT/PATH, or --reference (see --help)" ;;
esac
shift
TIMEOUT="${SOCKJS_SUITE_TIMEOUT:-900}"
[[ "$TIMEOUT" =~ ^[0-9]+$ ]] || die "bad SOCKJS_SUITE_TIMEOUT: $TIMEOUT"

VENV="${SOCKJS_SUITE_VENV:-/work/sockjs-suite-venv}"
case "$VENV" in "$ROOT"|"$ROOT"/*) die "keep the venv outside the repo: $VENV" ;; esac

# ---- sources: git URL or path -> exported tree at a pinned commit --------------------------
pick_repo() { # env value, local mirror, upstream
  if [ -n "$1" ]; then echo "$1"; elif [ -d "$2" ]; then echo "$2"; else echo "$3"; fi
}
export_tree() { # repo ref commit dest
  local tmp got
  tmp="$(mktemp -d)"
  git clone --quiet --no-checkout "$1" "$tmp/r" || { rm -rf "$tmp"; die "git clone $1 failed"; }
  got="$(git -C "$tmp/r" rev-parse --verify --quiet "$2^{commit}" || true)"
  [ "$got" = "$3" ] || { rm -rf "$tmp"; die "$1: $2 is '${got:-missing}', expected $3"; }
  rm -rf "$4" && mkdir -p "$4"
  git -C "$tmp/r" archive "$3" | tar -x -C "$4"
  rm -rf "$tmp"
}

find_python2() {
  local c
  if [ -n "${SOCKJS_PYTHON:-}" ]; then echo "$SOCKJS_PYTHON"; return; fi
  for c in "$(pyenv root 2>/dev/null || echo /nonexistent)"/versions/2.7*/bin/python \
    /root/.pyenv/versions/2.7*/bin/python "$(command -v python2.7 || true)"; do
    if [ -n "$c" ] && [ -x "$c" ] &&
      "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (2, 7))' 2>/dev/null; then
      echo "$c"; return
    fi
  done
  return 1
}

pip_quiet() { "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$@" 2>&1 |
  { grep -v -i 'DEPRECATION: Python 2.7' || true; }; }

# ---- venv (Python 2.7) with the suite's dependencies and the suite itself ------------------
STAMP="$(printf '%s\n' "$PINS" "$SUITE_COMMIT" "$WS4PY_COMMIT" | sha256sum | cut -d' ' -f1)"
SUITE_DIR="$VENV/src/sockjs-protocol-$SUITE_TAG"
if [ "${SOCKJS_REINSTALL:-0}" = 1 ] || [ "$(cat "$VENV/.sockjs-suite" 2>/dev/null)" != "$STAMP" ] ||
  [ ! -f "$SUITE_DIR/sockjs-protocol-0.3.3.py" ]; then
  if [ ! -x "$VENV/bin/python" ]; then
    PY2="$(find_python2)" || die "no Python 2.7 found (set SOCKJS_PYTHON)"
    log "creating $VENV with $PY2"
    tool="$(mktemp -d)"
    "$PY2" -m pip install --quiet --disable-pip-version-check --target "$tool" "$VIRTUALENV_PIN" 2>&1 |
      { grep -v -i 'DEPRECATION: Python 2.7' || true; }
    PYTHONPATH="$tool" "$PY2" -m virtualenv --quiet --no-download "$VENV" || die "virtualenv failed"
    rm -rf "$tool"
  fi
  log "installing $(echo $PINS) into $VENV"
  req="$(mktemp)"; printf '%s\n' "$PINS" > "$req"
  pip_quiet -r "$req"; rm -f "$req"
  WS4PY_REPO="$(pick_repo "${SOCKJS_WS4PY_REPO:-}" /work/.mirror/majek+WebSocket-for-Python/repo \
    https://github.com/majek/WebSocket-for-Python)"
  log "ws4py fork $WS4PY_COMMIT from $WS4PY_REPO"
  export_tree "$WS4PY_REPO" "$WS4PY_COMMIT" "$WS4PY_COMMIT" "$VENV/src/ws4py"
  pip_quiet --no-deps --force-reinstall "$VENV/src/ws4py"
  PROTO_REPO="$(pick_repo "${SOCKJS_PROTOCOL_REPO:-}" /work/.mirror/sockjs+sockjs-protocol/repo \
    https://github.com/sockjs/sockjs-protocol)"
  log "sockjs-protocol $SUITE_TAG from $PROTO_REPO"
  export_tree "$PROTO_REPO" "$SUITE_TAG" "$SUITE_COMMIT" "$SUITE_DIR"
  "$VENV/bin/python" -c 'import unittest2, websocket, ws4py.client.threadedclient' ||
    die "the suite's dependencies do not import"
  echo "$STAMP" > "$VENV/.sockjs-suite"
fi

# ---- the reference server (--reference) ----------------------------------------------------
REF_PID=""
stop_ref() {
  [ -n "$REF_PID" ] || return 0
  kill -TERM "$REF_PID" 2>/dev/null || true
  wait "$REF_PID" 2>/dev/null || true
  REF_PID=""
}
trap stop_ref EXIT
trap 'exit 130' INT TERM
if [ -z "$URL" ]; then
  REF_DIR="${SOCKJS_REF_DIR:-/tmp/sockjs-ref}/$REF_VERSION"
  case "$REF_DIR" in "$ROOT"|"$ROOT"/*) die "keep SOCKJS_REF_DIR outside the repo" ;; esac
  if [ "$(node -p 'require(process.argv[1]).version' "$REF_DIR/node_modules/sockjs/package.json" 2>/dev/null)" != "$REF_VERSION" ]; then
    log "npm install $(echo $NPM_PINS) into $REF_DIR"
    mkdir -p "$REF_DIR"
    # shellcheck disable=SC2086
    (cd "$REF_DIR" && npm install --no-audit --no-fund --no-save --loglevel=error $NPM_PINS >/dev/null) ||
      die "npm install failed"
  fi
  REF_LOG="$(mktemp)"
  NODE_PATH="$REF_DIR/node_modules" node "$HERE/reference-server.js" 0 "$((TIMEOUT + 60))" \
    > "$REF_LOG" 2>&1 &
  REF_PID=$!
  for _ in $(seq 1 100); do
    URL="$(sed -n 's/^reference-server: sockjs .* at //p' "$REF_LOG")"
    [ -n "$URL" ] && break
    kill -0 "$REF_PID" 2>/dev/null || { cat "$REF_LOG" >&2; REF_PID=""; die "reference server exited"; }
    sleep 0.1
  done
  [ -n "$URL" ] || die "reference server did not start"
  log "$(head -n 1 "$REF_LOG")"
fi

# ---- run -----------------------------------------------------------------------------------
log "sockjs-protocol $SUITE_TAG against $URL (limit ${TIMEOUT}s)"
set +e
SOCKJS_URL="$URL" PYTHONUNBUFFERED=1 timeout --kill-after=10 "$TIMEOUT" \
  "$VENV/bin/python" "$HERE/runner.py" "$SUITE_DIR" "$@"
RC=$?
set -e
[ "$RC" = 124 ] && log "stopped by the ${TIMEOUT}s limit"
if [ -n "$REF_PID" ]; then
  { grep -v '^reference-server: sockjs .* at ' "$REF_LOG" || true; } | sed 's/^/sockjs: server: /' | tail -n 20
  stop_ref
  rm -f "$REF_LOG"
fi
exit "$RC"
