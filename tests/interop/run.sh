#!/usr/bin/env bash
# Interop tests: real third-party STOMP clients against a stompbox built from this tree.
#
#   stomp.py (PyPI stomp-py, pinned in requirements.txt) over TCP (1.0/1.1/1.2) and WebSocket,
#   @stomp/stompjs + ws (npm, pinned in package.json/package-lock.json) over WebSocket,
#   and each client publishing to the other;
#   the chat example's page in headless Chromium (Debian `chromium`, installed with apt-get if
#   missing) driven by playwright-core (npm, pinned; it never downloads a browser), and a
#   loadtest HTML report from a short run against the broker, opened in the same Chromium.
#   permessage-deflate (RFC 7692): a second broker started with --compression --echo, to which
#   stompjs + ws and PyPI websockets (pinned in requirements.txt; STOMP frames by hand, and the
#   /echo endpoint) talk compressed and uncompressed, and the chat example with --compression in
#   Chromium (js-ws-deflate, py-ws-deflate, chat-browser-deflate).
#   SockJS: sockjs-client (npm, pinned) + stompjs in Chromium on the broker's /sockjs endpoint,
#   forced to xhr-streaming, xhr-polling and eventsource, exchanging messages with stompjs on /ws
#   (sockjs-browser).
#   The admin console: its own broker with --admin, /console/ in Chromium signing in with the
#   token, live numbers under a loadtest, closing a connection and purging a queue from the page;
#   then a broker with the API on HTTPS and a users file, signing in with HTTP Basic (admin role
#   required) (admin-console-browser; screenshots kept in target/artifacts/admin-console).
#
# Installs into tests/interop/.venv and tests/interop/node_modules (reused when up to date),
# builds target/release/stompbox, the chat example and loadtest, runs the broker (and the
# compressing one) on free loopback ports and runs every scenario with a time limit. Ends with
# "interop: N passed, M failed" and exits non-zero if any failed.
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

# The browser scenarios' Chromium: Debian's chromium. Without it only those scenarios fail.
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ] && command -v apt-get >/dev/null; then
  log "installing chromium (apt-get)"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  { timeout "$INSTALL_TIMEOUT" $SUDO apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive timeout "$INSTALL_TIMEOUT" $SUDO apt-get install -y -qq chromium; } \
    >/dev/null 2>&1 || log "could not install chromium: the browser scenarios will fail"
fi

py_stamp="$(hash_of requirements.txt)"
if [ -x .venv/bin/python ] && [ "$(cat .venv/.interop-stamp 2>/dev/null)" = "$py_stamp" ]; then
  log "reusing .venv ($(.venv/bin/python -c 'import stomp, websockets; print("stomp.py", stomp.__version__, "websockets", websockets.__version__)'))"
else
  log "installing stomp.py and websockets into .venv"
  [ -x .venv/bin/python ] || timeout "$INSTALL_TIMEOUT" python3 -m venv .venv
  timeout "$INSTALL_TIMEOUT" .venv/bin/python -m pip install --quiet --disable-pip-version-check \
    -r requirements.txt
  echo "$py_stamp" > .venv/.interop-stamp
fi

js_stamp="$(hash_of package.json package-lock.json)"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1   # playwright-core drives the system chromium
if [ -d node_modules/@stomp/stompjs ] && [ -d node_modules/ws ] && [ -d node_modules/playwright-core ] &&
  [ -d node_modules/sockjs-client ] && [ "$(cat node_modules/.interop-stamp 2>/dev/null)" = "$js_stamp" ]; then
  log "reusing node_modules (@stomp/stompjs $(node -p 'require("./node_modules/@stomp/stompjs/package.json").version'))"
else
  log "installing @stomp/stompjs, ws, playwright-core and sockjs-client into node_modules"
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
# Screenshots kept after the run (WORK is removed): the admin console's.
ARTIFACTS="$ROOT/target/artifacts/admin-console"
mkdir -p "$ARTIFACTS"
rm -f "$ARTIFACTS"/admin-console-*.png   # none left from an earlier run
BROKER_PID=""
DEFLATE_PID=""
stop_broker() {  # pid: SIGTERM, then SIGKILL after 5 s
  local pid=$1
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
}
cleanup() {
  stop_broker "$BROKER_PID"
  stop_broker "$DEFLATE_PID"
  # Scenario processes still running (only after an interrupt): end them by their ids.
  for pid in "${SCEN_PIDS[@]:-}"; do
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
SCEN_PIDS=()
trap cleanup EXIT
trap 'exit 130' INT TERM

# Five free loopback ports (bound together so they differ; released just before the brokers
# bind): WebSocket and TCP of the broker, and of the one with permessage-deflate, and the first
# one's metrics.
read -r WS_PORT TCP_PORT DWS_PORT DTCP_PORT METRICS_PORT < <(python3 - <<'EOF'
import socket
socks = [socket.socket() for _ in range(5)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()
EOF
)

"$BIN" --listen "127.0.0.1:$WS_PORT" --tcp-listen "127.0.0.1:$TCP_PORT" --reactors 2 \
  --metrics-listen "127.0.0.1:$METRICS_PORT" \
  >"$WORK/broker.log" 2>&1 &
BROKER_PID=$!
# The second broker offers permessage-deflate and serves /echo (no metrics listener: the first
# one has the default port).
"$BIN" --listen "127.0.0.1:$DWS_PORT" --tcp-listen "127.0.0.1:$DTCP_PORT" --no-metrics --reactors 2 \
  --compression --echo >"$WORK/broker-deflate.log" 2>&1 &
DEFLATE_PID=$!

wait_listening() {  # pid log ports... -> dies unless the broker listens on them within 10 s
  local pid=$1 logf=$2 listening=0
  shift 2
  for _ in $(seq 100); do   # up to 10 s
    kill -0 "$pid" 2>/dev/null || break
    if python3 - "$@" <<'EOF'
import socket, sys
for p in sys.argv[1:]:
    socket.create_connection(("127.0.0.1", int(p)), timeout=1).close()
EOF
    then listening=1; break; fi
    sleep 0.1
  done
  if [ "$listening" != 1 ]; then
    cat "$logf" >&2
    die "stompbox did not start listening on 127.0.0.1:$(IFS=/; echo "$*") within 10 s"
  fi
}
wait_listening "$BROKER_PID" "$WORK/broker.log" "$WS_PORT" "$TCP_PORT"
log "stompbox pid $BROKER_PID: ws://127.0.0.1:$WS_PORT/ws, tcp 127.0.0.1:$TCP_PORT"
wait_listening "$DEFLATE_PID" "$WORK/broker-deflate.log" "$DWS_PORT" "$DTCP_PORT"
log "stompbox --compression --echo pid $DEFLATE_PID: ws://127.0.0.1:$DWS_PORT/ws and /echo, tcp 127.0.0.1:$DTCP_PORT"

# ---- scenarios ----------------------------------------------------------------------------
PY=("$HERE/.venv/bin/python" "$HERE/stomp_py_test.py" --tcp "$TCP_PORT" --ws "$WS_PORT")
JS=(node "$HERE/stompjs_test.mjs")
# PyPI websockets against the compressing broker (and, declining, the plain one).
DEFLATE_PY=("$HERE/.venv/bin/python" "$HERE/deflate_py_test.py" --ws "$DWS_PORT" --tcp "$DTCP_PORT" --plain-ws "$WS_PORT")

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
# permessage-deflate, against the second broker (started with --compression --echo).
add js-ws-deflate           "$(q "${JS[@]}" js-ws-deflate --ws "$DWS_PORT")"
add py-ws-deflate           "$(q "${DEFLATE_PY[@]}" py-ws-deflate)"
# The chat example (its own process, on its own free port) and its page in two Chromium tabs.
add chat-browser            "$(q node "$HERE/chat_browser.mjs" --chat "$CHAT_BIN" --chromium "$CHROMIUM" --shots "$WORK")"
# The same with the example offering permessage-deflate: the page's WebSocket must agree to it.
add chat-browser-deflate    "$(q node "$HERE/chat_browser.mjs" --chat "$CHAT_BIN" --chromium "$CHROMIUM" --shots "$WORK" --compression)"
# SockJS (/sockjs on the WebSocket listener): sockjs-client + stompjs in Chromium, a page served
# from another loopback port (CORS), each of xhr-streaming, xhr-polling and eventsource, talking
# with stompjs over /ws.
add sockjs-browser          "$(q node "$HERE/sockjs_browser.mjs" --ws "$WS_PORT" --chromium "$CHROMIUM")"
# /metrics read by the Prometheus project's Python client: its OpenMetrics and text parsers.
add metrics-parse           "$(q "$HERE/.venv/bin/python" "$HERE/metrics_parse.py" "$METRICS_PORT")"
# A loadtest HTML report (from a short run against this broker) opened in Chromium.
add loadtest-report-browser "$(q node "$HERE/report_browser.mjs" --loadtest "$LOADTEST_BIN" --ws "$WS_PORT" --chromium "$CHROMIUM" --shots "$WORK")"
# The admin console (its own broker with --admin and a random token, on its own free ports) in
# Chromium: sign in, live overview under a loadtest fanout, close a connection, purge a queue.
add admin-console-browser   "$(q node "$HERE/admin_console_browser.mjs" --broker "$BIN" --loadtest "$LOADTEST_BIN" --chromium "$CHROMIUM" --shots "$ARTIFACTS")"
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

# Both brokers must have survived all of it, and must stop cleanly on SIGTERM.
sigterm_check() {  # label pid -> 0 if it is still up and exits 0 within 10 s of SIGTERM
  local label=$1 pid=$2 rc=0 stopped=0
  if ! kill -0 "$pid" 2>/dev/null; then
    wait "$pid" || rc=$?
    echo "$label died during the scenarios (exit $rc)" >>"$WORK/broker-sigterm.out"
    return 1
  fi
  kill -TERM "$pid"
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || { stopped=1; break; }; sleep 0.1; done
  if [ "$stopped" != 1 ]; then
    echo "$label still running 10 s after SIGTERM" >>"$WORK/broker-sigterm.out"
    return 1
  fi
  wait "$pid" || rc=$?
  [ "$rc" = 0 ] || { echo "$label exited $rc on SIGTERM" >>"$WORK/broker-sigterm.out"; return 1; }
}
if selected broker-sigterm; then
  STARTED[broker-sigterm]=$SECONDS
  rc=0
  : >"$WORK/broker-sigterm.out"
  sigterm_check stompbox "$BROKER_PID" || rc=1
  sigterm_check "stompbox --compression" "$DEFLATE_PID" || rc=1
  # (one still running is killed by cleanup)
  kill -0 "$BROKER_PID" 2>/dev/null || BROKER_PID=""
  kill -0 "$DEFLATE_PID" 2>/dev/null || DEFLATE_PID=""
  (exit "$rc") &
  echo "$!" >"$WORK/broker-sigterm.pid"
  finish broker-sigterm
fi

if [ "$FAILED" != 0 ]; then
  log "broker log (last 30 lines):"
  tail -n 30 "$WORK/broker.log" | sed 's/^/    | /'
  log "compressing broker log (last 30 lines):"
  tail -n 30 "$WORK/broker-deflate.log" | sed 's/^/    | /'
  log "failed: ${FAILED_NAMES[*]}"
fi
selected admin-console-browser && log "admin console screenshots: $ARTIFACTS"
log "install ${T_INSTALL}s, build ${T_BUILD}s, scenarios $((SECONDS - T_RUN0))s, total $((SECONDS - T0))s"
echo "interop: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
