#!/usr/bin/env bash
# Interop tests: real third-party STOMP clients against a stompbox built from this tree.
#
#   stomp.py (PyPI stomp-py, pinned in requirements.txt) over TCP (1.0/1.1/1.2) and WebSocket,
#   @stomp/stompjs + ws (npm, pinned in package.json/package-lock.json) over WebSocket,
#   and each client publishing to the other;
#   the chat example's page in headless Chromium (Debian `chromium`, installed with apt-get if
#   missing) driven by playwright-core (npm, pinned; it never downloads a browser), and a
#   loadtest HTML report from a short run against the broker, opened in the same Chromium.
#
# Installs into tests/interop/.venv and tests/interop/node_modules (reused when up to date),
# builds target/release/stompbox, the chat example and loadtest, runs the broker on free loopback ports
# and runs every scenario with a time limit. Ends with "interop: N passed, M failed" and exits
# non-zero if any failed.
#
# Env: INTEROP_ONLY="name ..." runs only those scenarios; INTEROP_SKIP_BUILD=1 uses the binary as is.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$HERE"

SCENARIO_TIMEOUT=60   # seconds, per scenario process
INSTALL_TIMEOUT=600   # seconds, per install step
BUILD_TIMEOUT=1800    # seconds, the release build on a cold 2-core machine

log() { printf 'interop: %s\n' "$*"; }
die() { printf 'interop: %s\n' "$*" >&2; echo "interop: 0 passed, 1 failed"; exit 1; }
hash_of() { sha256sum "$@" | sha256sum | cut -d' ' -f1; }

T0=$SECONDS

# ---- clients ------------------------------------------------------------------------------
command -v python3 >/dev/null || die "python3 not found"
command -v node >/dev/null || die "node not found"
command -v npm >/dev/null || die "npm not found"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 20 ] || die "node >= 20 needed, found $(node --version)"

# The chat page's browser: Debian's chromium. Without it only the chat-browser scenario fails.
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ] && command -v apt-get >/dev/null; then
  log "installing chromium (apt-get)"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  { timeout "$INSTALL_TIMEOUT" $SUDO apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive timeout "$INSTALL_TIMEOUT" $SUDO apt-get install -y -qq chromium; } \
    >/dev/null 2>&1 || log "could not install chromium: chat-browser will fail"
fi

py_stamp="$(hash_of requirements.txt)"
if [ -x .venv/bin/python ] && [ "$(cat .venv/.interop-stamp 2>/dev/null)" = "$py_stamp" ]; then
  log "reusing .venv ($(.venv/bin/python -c 'import stomp; print("stomp.py", stomp.__version__)'))"
else
  log "installing stomp.py into .venv"
  [ -x .venv/bin/python ] || timeout "$INSTALL_TIMEOUT" python3 -m venv .venv
  timeout "$INSTALL_TIMEOUT" .venv/bin/python -m pip install --quiet --disable-pip-version-check \
    -r requirements.txt
  echo "$py_stamp" > .venv/.interop-stamp
fi

js_stamp="$(hash_of package.json package-lock.json)"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1   # playwright-core drives the system chromium
if [ -d node_modules/@stomp/stompjs ] && [ -d node_modules/ws ] && [ -d node_modules/playwright-core ] &&
  [ "$(cat node_modules/.interop-stamp 2>/dev/null)" = "$js_stamp" ]; then
  log "reusing node_modules (@stomp/stompjs $(node -p 'require("./node_modules/@stomp/stompjs/package.json").version'))"
else
  log "installing @stomp/stompjs, ws and playwright-core into node_modules"
  timeout "$INSTALL_TIMEOUT" npm ci --no-audit --no-fund --loglevel=error
  echo "$js_stamp" > node_modules/.interop-stamp
fi
T_INSTALL=$((SECONDS - T0))

# ---- broker -------------------------------------------------------------------------------
BIN="$ROOT/target/release/stompbox"
CHAT_BIN="$ROOT/target/release/examples/chat"
LOADTEST_BIN="$ROOT/target/release/loadtest"
if [ "${INTEROP_SKIP_BUILD:-0}" != 1 ]; then
  log "building $BIN, $CHAT_BIN and $LOADTEST_BIN"
  (cd "$ROOT" && timeout "$BUILD_TIMEOUT" cargo build --release -p stompbox --bin stompbox --example chat --quiet &&
    timeout "$BUILD_TIMEOUT" cargo build --release -p loadtest --quiet)
fi
[ -x "$BIN" ] || die "no broker binary at $BIN"
T_BUILD=$((SECONDS - T0 - T_INSTALL))

WORK="$(mktemp -d "${TMPDIR:-/tmp}/stompbox-interop.XXXXXX")"
BROKER_PID=""
cleanup() {
  if [ -n "$BROKER_PID" ] && kill -0 "$BROKER_PID" 2>/dev/null; then
    kill -TERM "$BROKER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$BROKER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$BROKER_PID" 2>/dev/null || true
  fi
  # Scenario processes still running (only after an interrupt): end them by their ids.
  for pid in "${SCEN_PIDS[@]:-}"; do
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
SCEN_PIDS=()
trap cleanup EXIT
trap 'exit 130' INT TERM

# Two free loopback ports (bound together so they differ; released just before the broker binds).
read -r WS_PORT TCP_PORT < <(python3 - <<'EOF'
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()
EOF
)

"$BIN" --listen "127.0.0.1:$WS_PORT" --tcp-listen "127.0.0.1:$TCP_PORT" --reactors 2 \
  >"$WORK/broker.log" 2>&1 &
BROKER_PID=$!

listening=0
for _ in $(seq 100); do   # up to 10 s
  kill -0 "$BROKER_PID" 2>/dev/null || break
  if python3 - "$WS_PORT" "$TCP_PORT" <<'EOF'
import socket, sys
for p in sys.argv[1:]:
    socket.create_connection(("127.0.0.1", int(p)), timeout=1).close()
EOF
  then listening=1; break; fi
  sleep 0.1
done
if [ "$listening" != 1 ]; then
  cat "$WORK/broker.log" >&2
  die "stompbox did not start listening on 127.0.0.1:$WS_PORT/$TCP_PORT within 10 s"
fi
log "stompbox pid $BROKER_PID: ws://127.0.0.1:$WS_PORT/ws, tcp 127.0.0.1:$TCP_PORT"

# ---- scenarios ----------------------------------------------------------------------------
PY=("$HERE/.venv/bin/python" "$HERE/stomp_py_test.py" --tcp "$TCP_PORT" --ws "$WS_PORT")
JS=(node "$HERE/stompjs_test.mjs")

declare -A CMD
ORDER=()
add() { ORDER+=("$1"); CMD[$1]="$2"; }
q() { printf '%q ' "$@"; }
# The heart-beat scenarios idle for 25 s: they start first and run alongside the rest.
add py-tcp-heartbeat        "$(q "${PY[@]}" py-tcp-heartbeat)"
add js-ws-heartbeat         "$(q "${JS[@]}" js-ws-heartbeat --ws "$WS_PORT")"
add py-tcp-1.2-basic        "$(q "${PY[@]}" py-tcp-1.2-basic)"
add py-tcp-1.1-basic        "$(q "${PY[@]}" py-tcp-1.1-basic)"
add py-tcp-1.0-basic        "$(q "${PY[@]}" py-tcp-1.0-basic)"
add py-tcp-cross-connection "$(q "${PY[@]}" py-tcp-cross-connection)"
add py-ws-1.2-basic         "$(q "${PY[@]}" py-ws-1.2-basic)"
add py-ws-text-mode         "$(q "${PY[@]}" py-ws-text-mode)"
add js-ws-basic             "$(q "${JS[@]}" js-ws-basic --ws "$WS_PORT")"
add js-ws-large-split       "$(q "${JS[@]}" js-ws-large-split --ws "$WS_PORT")"
add js-ws-transaction       "$(q "${JS[@]}" js-ws-transaction --ws "$WS_PORT")"
add py-tcp-queue-nack       "$(q "${PY[@]}" py-tcp-queue-nack)"
add py-tcp-hostile         "$(q "${PY[@]}" py-tcp-hostile)"
add cross-stompjs-to-py     "$(q "${PY[@]}" cross-stompjs-to-py)"
add cross-py-to-stompjs     "$(q "${PY[@]}" cross-py-to-stompjs)"
# The chat example (its own process, on its own free port) and its page in two Chromium tabs.
add chat-browser            "$(q node "$HERE/chat_browser.mjs" --chat "$CHAT_BIN" --chromium "$CHROMIUM" --shots "$WORK")"
# A loadtest HTML report (from a short run against this broker) opened in Chromium.
add loadtest-report-browser "$(q node "$HERE/report_browser.mjs" --loadtest "$LOADTEST_BIN" --ws "$WS_PORT" --chromium "$CHROMIUM" --shots "$WORK")"
PARALLEL=(py-tcp-heartbeat js-ws-heartbeat)

selected() {
  [ -z "${INTEROP_ONLY:-}" ] && return 0
  case " $INTEROP_ONLY " in *" $1 "*) return 0 ;; esac
  return 1
}

PASSED=0
FAILED=0
FAILED_NAMES=()
declare -A STARTED

start() {  # name -> runs in the background, output to $WORK/name.out
  local name=$1
  STARTED[$name]=$SECONDS
  (cd "$HERE" && eval "exec timeout -k 5 $SCENARIO_TIMEOUT ${CMD[$name]}") >"$WORK/$name.out" 2>&1 &
  SCEN_PIDS+=("$!")
  echo "$!" >"$WORK/$name.pid"
}

finish() {  # name -> waits for it and reports
  local name=$1 rc=0
  wait "$(cat "$WORK/$name.pid")" || rc=$?
  local took=$((SECONDS - STARTED[$name]))
  if [ "$rc" = 0 ]; then
    PASSED=$((PASSED + 1))
    printf 'PASS %-26s %3ss\n' "$name" "$took"
  else
    FAILED=$((FAILED + 1))
    FAILED_NAMES+=("$name")
    local why="exit $rc"
    [ "$rc" = 124 ] && why="timed out after ${SCENARIO_TIMEOUT}s"
    printf 'FAIL %-26s %3ss (%s)\n' "$name" "$took" "$why"
    sed 's/^/    | /' "$WORK/$name.out" | tail -n 40
  fi
}

T_RUN0=$SECONDS
for name in "${PARALLEL[@]}"; do selected "$name" && start "$name"; done
for name in "${ORDER[@]}"; do
  case " ${PARALLEL[*]} " in *" $name "*) continue ;; esac
  selected "$name" || continue
  start "$name"
  finish "$name"
done
for name in "${PARALLEL[@]}"; do selected "$name" && finish "$name"; done

# The broker must have survived all of it, and must stop cleanly on SIGTERM.
if selected broker-sigterm; then
  STARTED[broker-sigterm]=$SECONDS
  rc=0
  if ! kill -0 "$BROKER_PID" 2>/dev/null; then
    wait "$BROKER_PID" || rc=$?
    echo "stompbox died during the scenarios (exit $rc)" >"$WORK/broker-sigterm.out"
    rc=1
  else
    kill -TERM "$BROKER_PID"
    stopped=0
    for _ in $(seq 100); do kill -0 "$BROKER_PID" 2>/dev/null || { stopped=1; break; }; sleep 0.1; done
    if [ "$stopped" = 1 ]; then
      wait "$BROKER_PID" || rc=$?
      [ "$rc" = 0 ] || echo "stompbox exited $rc on SIGTERM" >"$WORK/broker-sigterm.out"
    else
      echo "stompbox still running 10 s after SIGTERM" >"$WORK/broker-sigterm.out"
      rc=1
    fi
    BROKER_PID=""
  fi
  (exit "$rc") &
  echo "$!" >"$WORK/broker-sigterm.pid"
  finish broker-sigterm
fi

if [ "$FAILED" != 0 ]; then
  log "broker log (last 30 lines):"
  tail -n 30 "$WORK/broker.log" | sed 's/^/    | /'
  log "failed: ${FAILED_NAMES[*]}"
fi
log "install ${T_INSTALL}s, build ${T_BUILD}s, scenarios $((SECONDS - T_RUN0))s, total $((SECONDS - T0))s"
echo "interop: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
