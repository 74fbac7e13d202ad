#!/usr/bin/env bash
# Autobahn|Testsuite (wstest, fuzzingclient mode) against stompbox's WebSocket echo endpoint.
#
#   tests/autobahn/run.sh --start target/release/stompbox [-- BROKER_ARGS...]
#   tests/autobahn/run.sh --port 61614          # a broker already serving ws://127.0.0.1:61614/echo
#
# Installs wstest (a Python 2.7 program, pinned below) into a virtualenv outside the repo if it
# is missing, writes a fuzzingclient spec for ws://127.0.0.1:PORT/echo (all 517 cases unless
# told otherwise, the permessage-deflate cases 12.* and 13.* included: they make their own
# offers), runs wstest with a time limit, then reads the report's index.json and prints the
# counts by behavior (all cases, 1-10, 12.*, 13.*) and the ids of the cases that did not pass.
# Only 127.0.0.1 is ever contacted.
#
# Exit status: 0 when every case is OK, INFORMATIONAL or UNIMPLEMENTED; 1 when a case is
# FAILED, NON-STRICT (or any other behavior), when the report is missing or short of cases, or
# when a case is UNIMPLEMENTED and AUTOBAHN_REQUIRE_COMPRESSION=1; 2 on a usage or setup error.
# Ends with "autobahn: N passed, M failed, K skipped" (skipped: UNIMPLEMENTED, when allowed).
#
# Options:
#   --start BIN      start BIN as the broker: BIN --listen 127.0.0.1:PORT, plus defaults (--echo,
#                    --no-tcp, --no-metrics, --reactors 2, --max-frame-size and --max-message-size
#                    of 20 MiB: cases 9.* echo messages of up to 16 MiB) that are left out when
#                    BROKER_ARGS set the same flag; stopped (SIGTERM) at the end
#   --port PORT      the broker's port (env AUTOBAHN_PORT); with --start, default a free port;
#                    a bare number as argument means the same
#   --cases LIST     comma-separated case patterns, e.g. '12.*,13.*' (env AUTOBAHN_CASES; '*')
#   --exclude LIST   comma-separated case patterns to leave out (env AUTOBAHN_EXCLUDE; none)
#   --outdir DIR     keep the spec, logs and report (reports/index.html, replaced) in DIR; else a
#                    temporary dir is used, removed on success (AUTOBAHN_KEEP=1 keeps it)
#   -- ARGS...       passed to the broker after the script's own flags (with --start), e.g.
#                    -- --compression
#
# Env: AUTOBAHN_VENV (default /work/autobahn-venv), AUTOBAHN_PYTHON (a Python 2.7 interpreter
# for creating the venv; default: pyenv's 2.7, else python2.7 on PATH), AUTOBAHN_TIMEOUT
# (seconds for the whole wstest run, default 3600), AUTOBAHN_REQUIRE_COMPRESSION=1,
# AUTOBAHN_STRICT_CLOSE=1 (also fail on a closing-handshake verdict other than OK or
# INFORMATIONAL), AUTOBAHN_REINSTALL=1 (pip install the pins again into the venv).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"

log() { printf 'autobahn: %s\n' "$*"; }
die() {
  printf 'autobahn: %s\n' "$*" >&2
  [ -z "${WORK:-}" ] || [ ! -d "$WORK" ] || printf 'autobahn: work dir kept: %s\n' "$WORK" >&2
  exit 2
}

# ---- the pins ------------------------------------------------------------------------------
# autobahntestsuite 25.10.1 is the last release and still Python 2.7 only; it pins most of
# these itself (autobahn 0.10.9, Twisted 19.10.0, ...). The rest is what pip 20.3.4 resolved on
# Python 2.7.18, frozen. virtualenv 16.7.12 (the last of the single-file line, running on 2.7)
# creates the venv from the pip/setuptools/wheel wheels it bundles.
VIRTUALENV_PIN="virtualenv==16.7.12"
PINS="autobahntestsuite==25.10.1
autobahn==0.10.9
attrs==21.4.0
Automat==22.10.0
argparse==1.4.0
cffi==1.15.1
constantly==15.1.0
cryptography==3.3.2
enum34==1.1.10
hyperlink==21.0.0
idna==2.10
incremental==16.10.1
ipaddress==1.0.23
Jinja2==2.11.3
klein==17.10.0
linecache2==1.0.0
MarkupSafe==1.1.1
pyasn1==0.5.1
pyasn1-modules==0.3.0
pycparser==2.21
PyHamcrest==1.10.1
pyOpenSSL==19.1.0
service-identity==18.1.0
setuptools==44.0.0
six==1.16.0
traceback2==1.4.0
Twisted==19.10.0
txaio==2.1.0
typing==3.10.0.0
ujson==2.0.3
unittest2==1.1.0
Werkzeug==1.0.1
wsaccel==0.6.6
zope.interface==4.6.0"
INSTALL_TIMEOUT=900   # seconds, per install step (wsaccel and ujson are compiled: gcc needed)

# ---- arguments -----------------------------------------------------------------------------
BIN=""
PORT="${AUTOBAHN_PORT:-}"
CASES="${AUTOBAHN_CASES:-*}"
EXCLUDE="${AUTOBAHN_EXCLUDE:-}"
OUTDIR=""
BROKER_ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --start) [ $# -ge 2 ] || die "--start needs BIN"; BIN="$2"; shift 2 ;;
    --start=*) BIN="${1#*=}"; shift ;;
    --port) [ $# -ge 2 ] || die "--port needs PORT"; PORT="$2"; shift 2 ;;
    --port=*) PORT="${1#*=}"; shift ;;
    --cases) [ $# -ge 2 ] || die "--cases needs LIST"; CASES="$2"; shift 2 ;;
    --cases=*) CASES="${1#*=}"; shift ;;
    --exclude) [ $# -ge 2 ] || die "--exclude needs LIST"; EXCLUDE="$2"; shift 2 ;;
    --exclude=*) EXCLUDE="${1#*=}"; shift ;;
    --outdir) [ $# -ge 2 ] || die "--outdir needs DIR"; OUTDIR="$2"; shift 2 ;;
    --outdir=*) OUTDIR="${1#*=}"; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    --) shift; BROKER_ARGS=("$@"); break ;;
    [0-9]*) PORT="$1"; shift ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
if [ -n "$PORT" ]; then
  [[ "$PORT" =~ ^[0-9]+$ ]] && [ "$PORT" -ge 1 ] && [ "$PORT" -le 65535 ] || die "bad port: $PORT"
fi
if [ -z "$BIN" ]; then
  [ -n "$PORT" ] || die "give the broker's port (--port PORT or AUTOBAHN_PORT), or --start BIN"
  [ ${#BROKER_ARGS[@]} -eq 0 ] || die "broker arguments after -- need --start BIN"
else
  case "$BIN" in /*) ;; *) [ -e "$BIN" ] || BIN="$ROOT/$BIN" ;; esac
  [ -x "$BIN" ] || die "not an executable: $BIN (build it first: cargo build --release)"
  BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"
fi
TIMEOUT="${AUTOBAHN_TIMEOUT:-3600}"
[[ "$TIMEOUT" =~ ^[0-9]+$ ]] || die "bad AUTOBAHN_TIMEOUT: $TIMEOUT"

T0=$SECONDS

# ---- wstest --------------------------------------------------------------------------------
VENV="${AUTOBAHN_VENV:-/work/autobahn-venv}"
case "$VENV" in "$ROOT"|"$ROOT"/*) die "keep the venv outside the repo: $VENV" ;; esac

find_python2() {
  local c
  if [ -n "${AUTOBAHN_PYTHON:-}" ]; then echo "$AUTOBAHN_PYTHON"; return; fi
  for c in "$(pyenv root 2>/dev/null || echo /nonexistent)"/versions/2.7*/bin/python \
    /root/.pyenv/versions/2.7*/bin/python "$(command -v python2.7 || true)" \
    "$(command -v python2 || true)"; do
    if [ -n "$c" ] && [ -x "$c" ] && "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (2, 7))' 2>/dev/null; then
      echo "$c"; return
    fi
  done
  return 1
}

install_pins() {
  local req rc=0
  req="$(mktemp)"
  printf '%s\n' "$PINS" > "$req"
  log "pip install autobahntestsuite and its pins into $VENV"
  timeout "$INSTALL_TIMEOUT" "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    --no-warn-script-location -r "$req" > "$req.log" 2>&1 || rc=$?
  grep -v -i 'DEPRECATION: Python 2.7' "$req.log" || true
  rm -f "$req" "$req.log"
  [ "$rc" = 0 ] || die "pip install failed ($rc)"
  "$VENV/bin/wstest" -a >/dev/null 2>&1 || die "wstest does not run after pip install"
  printf '%s\n' "$PINS" | sha256sum | cut -d' ' -f1 > "$VENV/.autobahn-pins"
}

if [ ! -x "$VENV/bin/wstest" ]; then
  PY2="$(find_python2)" || die "no Python 2.7 found (set AUTOBAHN_PYTHON); see tests/autobahn/README.md"
  log "creating $VENV with $PY2 ($("$PY2" -c 'import platform; print(platform.python_version())'))"
  if [ ! -x "$VENV/bin/python" ]; then
    tool="$(mktemp -d)"
    "$PY2" -m pip --version >/dev/null 2>&1 || "$PY2" -m ensurepip >/dev/null ||
      die "$PY2 has no pip and no ensurepip"
    timeout "$INSTALL_TIMEOUT" "$PY2" -m pip install --quiet --disable-pip-version-check \
      --target "$tool" "$VIRTUALENV_PIN" 2>&1 | grep -v -i 'DEPRECATION: Python 2.7' || true
    [ -f "$tool/virtualenv.py" ] || die "could not install $VIRTUALENV_PIN"
    PYTHONPATH="$tool" timeout "$INSTALL_TIMEOUT" "$PY2" -m virtualenv --quiet --no-download "$VENV" ||
      die "virtualenv failed"
    rm -rf "$tool"
  fi
  install_pins
elif [ "${AUTOBAHN_REINSTALL:-0}" = 1 ]; then
  install_pins
fi
WSTEST_VERSION="$("$VENV/bin/wstest" -a 2>/dev/null | tr '\n' ' ' | sed 's/ *$//')"
log "wstest: $WSTEST_VERSION ($VENV)"
PY="$VENV/bin/python"

# ---- work dir ------------------------------------------------------------------------------
if [ -n "$OUTDIR" ]; then
  mkdir -p "$OUTDIR"
  WORK="$(cd "$OUTDIR" && pwd)"
  KEEP=1
else
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/stompbox-autobahn.XXXXXX")"
  KEEP="${AUTOBAHN_KEEP:-0}"
fi
rm -rf "$WORK/reports"

# ---- broker --------------------------------------------------------------------------------
BROKER_PID=""
stop_broker() {
  [ -n "$BROKER_PID" ] || return 0
  local pid="$BROKER_PID" i rc=0
  BROKER_PID=""
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "broker did not stop within 10 s of SIGTERM: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || rc=$?
  BROKER_RC=$rc
}
BROKER_RC=""
trap 'stop_broker' EXIT
trap 'exit 130' INT TERM

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if [ -n "$BIN" ]; then
  if [ -z "$PORT" ]; then
    PORT="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  elif port_open "$PORT"; then
    die "127.0.0.1:$PORT is already in use"
  fi
  has_flag() {
    local f="$1" a
    for a in "${BROKER_ARGS[@]+"${BROKER_ARGS[@]}"}"; do
      case "$a" in "$f"|"$f"=*) return 0 ;; esac
    done
    return 1
  }
  DEFAULTS=()
  has_flag --echo || DEFAULTS+=(--echo)
  has_flag --reactors || DEFAULTS+=(--reactors 2)
  has_flag --max-frame-size || DEFAULTS+=(--max-frame-size 20971520)
  has_flag --max-message-size || DEFAULTS+=(--max-message-size 20971520)
  has_flag --tcp-listen || DEFAULTS+=(--no-tcp)
  has_flag --metrics-listen || DEFAULTS+=(--no-metrics)
  CMD=("$BIN" --listen "127.0.0.1:$PORT" "${DEFAULTS[@]}" "${BROKER_ARGS[@]+"${BROKER_ARGS[@]}"}")
  log "broker: ${CMD[*]}"
  "${CMD[@]}" > "$WORK/broker.log" 2>&1 &
  BROKER_PID=$!
  for i in $(seq 1 150); do
    port_open "$PORT" && break
    kill -0 "$BROKER_PID" 2>/dev/null || { tail -n 20 "$WORK/broker.log" >&2; BROKER_PID=""; die "broker exited at start (log above)"; }
    sleep 0.1
  done
  port_open "$PORT" || die "broker not listening on 127.0.0.1:$PORT after 15 s"
fi

URL="ws://127.0.0.1:$PORT/echo"
# One handshake first: a missing /echo (no --echo) would otherwise be 517 failed cases.
"$PY" - "$PORT" <<'EOF' || die "no WebSocket echo at ws://127.0.0.1:$PORT/echo (is --echo on?)"
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1:" + sys.argv[1].encode() +
          b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
head = b""
while b"\r\n" not in head:
    chunk = s.recv(1024)
    if not chunk:
        break
    head += chunk
s.close()
line = head.split(b"\r\n")[0]
if b" 101 " not in line + b" ":
    sys.stderr.write("autobahn: /echo answered %r\n" % line)
    sys.exit(1)
EOF

# ---- spec and run --------------------------------------------------------------------------
"$PY" - "$WORK/spec.json" "$URL" "$WORK/reports" "$CASES" "$EXCLUDE" <<'EOF'
import json, sys
path, url, outdir, cases, exclude = sys.argv[1:6]
split = lambda s: [c.strip() for c in s.split(",") if c.strip()]
spec = {
    "outdir": outdir,
    "servers": [{"agent": "stompbox", "url": url}],
    "cases": split(cases),
    "exclude-cases": split(exclude),
    "exclude-agent-cases": {},
    # The compression cases (12.*, 13.*) make their own permessage-deflate offers; nothing
    # global is needed. failByDrop false is wstest's spec-conformance default, set explicitly.
    "options": {"failByDrop": False},
}
with open(path, "w") as f:
    json.dump(spec, f, indent=2, sort_keys=True)
EOF

log "wstest -m fuzzingclient against $URL (cases: $CASES${EXCLUDE:+, excluding $EXCLUDE}; limit ${TIMEOUT}s; work dir $WORK)"
T_RUN=$SECONDS
set +e
(cd "$WORK" && PYTHONUNBUFFERED=1 timeout --kill-after=30 "$TIMEOUT" \
  "$VENV/bin/wstest" -m fuzzingclient -s "$WORK/spec.json" 2>&1) |
  tee "$WORK/wstest.log" |
  while IFS= read -r line; do
    # One progress line per case group (1, 2, ..., 12.1, 12.2, ..., 13.7).
    if [[ "$line" =~ ^Running\ test\ case\ ID\ ([0-9]+)\.([0-9]+) ]]; then
      g="${BASH_REMATCH[1]}"
      [ "$g" -ge 12 ] && g="$g.${BASH_REMATCH[2]}"
      if [ "$g" != "${last:-}" ]; then
        last="$g"
        printf 'autobahn:   %6ss  cases %s.*\n' "$((SECONDS - T_RUN))" "$g"
      fi
    elif [[ "$line" =~ ^Connection\ to.*failed ]] || [[ "$line" =~ Traceback|Error ]]; then
      printf 'autobahn:   wstest: %s\n' "$line"
    fi
  done
WSTEST_RC=${PIPESTATUS[0]}
set -e
RUN_SECS=$((SECONDS - T_RUN))
[ "$WSTEST_RC" = 124 ] && log "wstest stopped by the ${TIMEOUT}s limit"
[ "$WSTEST_RC" = 0 ] || log "wstest exited with $WSTEST_RC"

if [ -n "$BROKER_PID" ]; then
  if kill -0 "$BROKER_PID" 2>/dev/null; then
    hwm="$(awk '/^VmHWM/ {print $2, $3}' "/proc/$BROKER_PID/status" 2>/dev/null || true)"
    [ -n "$hwm" ] && log "broker peak RSS: $hwm"
    stop_broker
    [ "$BROKER_RC" = 0 ] || log "broker exited with $BROKER_RC on SIGTERM (log: $WORK/broker.log)"
  else
    stop_broker
    log "broker DIED during the run (exit $BROKER_RC); last lines of $WORK/broker.log:"
    tail -n 20 "$WORK/broker.log" | sed 's/^/autobahn:   /'
    KEEP=1
  fi
fi

# ---- report --------------------------------------------------------------------------------
set +e
"$PY" - "$WORK/reports/index.json" "$WORK/spec.json" "$RUN_SECS" <<'EOF'
from __future__ import print_function
import json, os, sys

index_path, spec_path, run_secs = sys.argv[1], sys.argv[2], int(sys.argv[3])
require_compression = os.environ.get("AUTOBAHN_REQUIRE_COMPRESSION") == "1"
strict_close = os.environ.get("AUTOBAHN_STRICT_CLOSE") == "1"

from autobahntestsuite.case import Cases, CaseSetname, CaseBasename, CaseCategories, CaseSubCategories
from autobahntestsuite.caseset import CaseSet
caseset = CaseSet(CaseSetname, CaseBasename, Cases, CaseCategories, CaseSubCategories)
spec = json.load(open(spec_path))
expected = caseset.parseSpecCases(spec)
everything = caseset.parseSpecCases({"cases": ["*"]})

def key(cid):
    return tuple(int(x) for x in cid.split("."))

def out(msg=""):
    print(("autobahn: " + msg).rstrip())

if not os.path.exists(index_path):
    out("no report (%s): wstest did not finish" % index_path)
    out("0 passed, %d failed" % len(expected))
    sys.exit(1)

index = json.load(open(index_path))
results = index.get("stompbox", {})
missing = sorted(set(expected) - set(results), key=key)

def compact(ids):
    """Case ids, whole groups (12.*, 6.4.*) folded where every case of the group is listed."""
    ids = set(ids)
    res = []
    def walk(prefix, universe):
        if universe and set(universe) <= ids:
            res.append((key(universe[0]), (prefix + ".*") if prefix else "*", len(universe)))
            return
        groups = {}
        for c in universe:
            parts = c.split(".")
            depth = len(prefix.split(".")) if prefix else 0
            if len(parts) <= depth + 1:
                if c in ids:
                    res.append((key(c), c, 1))
            else:
                groups.setdefault(".".join(parts[:depth + 1]), []).append(c)
        for g in sorted(groups, key=key):
            walk(g, groups[g])
    walk("", sorted(everything, key=key))
    return ", ".join(n if k == 1 else "%s (%d)" % (n, k) for _, n, k in sorted(res))

def column(cid):
    top = cid.split(".")[0]
    return {"12": "12.*", "13": "13.*"}.get(top, "1-10")

known = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
cols = ["all", "1-10", "12.*", "13.*"]
counts = {}
close_counts = {}
for cid, r in results.items():
    b = r.get("behavior", "?")
    for c in ("all", column(cid)):
        counts.setdefault(b, {}).setdefault(c, 0)
        counts[b][c] += 1
    if b != "UNIMPLEMENTED":
        close_counts[r.get("behaviorClose", "?")] = close_counts.get(r.get("behaviorClose", "?"), 0) + 1
behaviors = known + sorted(b for b in counts if b not in known)

out("%d of %d cases reported, wstest ran %d s (sum of case durations %.0f s)" % (
    len(results), len(expected), run_secs,
    sum(r.get("duration", 0) for r in results.values()) / 1000.0))
out("%-16s" % "behavior" + "".join("%8s" % c for c in cols))
for b in behaviors:
    row = counts.get(b, {})
    out("  %-14s" % b + "".join("%8d" % row.get(c, 0) for c in cols))
total = {}
for row in counts.values():
    for c, n in row.items():
        total[c] = total.get(c, 0) + n
out("  %-14s" % "total" + "".join("%8d" % total.get(c, 0) for c in cols))
out("closing handshake (cases not UNIMPLEMENTED): " +
    ", ".join("%s %d" % (b, n) for b, n in sorted(close_counts.items(), key=lambda x: -x[1])))

slow = sorted(results.items(), key=lambda kv: -kv[1].get("duration", 0))[:5]
out("slowest: " + ", ".join("%s %.1fs" % (c, r.get("duration", 0) / 1000.0) for c, r in slow))

fail_behaviors = set(b for b in behaviors if b not in ("OK", "INFORMATIONAL", "UNIMPLEMENTED"))
if require_compression:
    fail_behaviors.add("UNIMPLEMENTED")
failing = set()
for b in ["FAILED", "NON-STRICT", "UNIMPLEMENTED"] + [b for b in behaviors if b not in known]:
    ids = [c for c, r in results.items() if r.get("behavior") == b]
    if ids:
        out("%s%s: %s" % (b, "" if b in fail_behaviors else " (allowed)", compact(ids)))
        if b in fail_behaviors:
            failing.update(ids)
bad_close = [c for c, r in results.items()
             if r.get("behavior") != "UNIMPLEMENTED"
             and r.get("behaviorClose") not in ("OK", "INFORMATIONAL")]
if bad_close:
    for c in sorted(bad_close, key=key)[:40]:
        r = results[c]
        out("close %s: %s (behavior %s, remote close code %s)" % (
            c, r.get("behaviorClose"), r.get("behavior"), r.get("remoteCloseCode")))
    if len(bad_close) > 40:
        out("close: ... %d more" % (len(bad_close) - 40))
    if strict_close:
        failing.update(bad_close)
if missing:
    out("MISSING from the report (%d): %s" % (len(missing), compact(missing)))
    failing.update(missing)

skipped = 0 if require_compression else counts.get("UNIMPLEMENTED", {}).get("all", 0)
failed = len(failing)
passed = len(expected) - failed - skipped
out("%d passed, %d failed%s" % (passed, failed, (", %d skipped" % skipped) if skipped else ""))
sys.exit(1 if failed else 0)
EOF
REPORT_RC=$?
set -e

if [ "$REPORT_RC" = 0 ] && [ "$KEEP" != 1 ]; then
  rm -rf "$WORK"
else
  log "report: $WORK/reports/index.html (wstest log: $WORK/wstest.log${BIN:+, broker log: $WORK/broker.log})"
fi
log "done in $((SECONDS - T0)) s"
exit "$REPORT_RC"
