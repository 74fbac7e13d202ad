#!/usr/bin/env bash
# Side-by-side figures: stompbox against RabbitMQ Web-STOMP, same scenarios, same load tool.
#
#   bash loadtest/compare.sh [OUTDIR]
#
# Installs RabbitMQ (Debian rabbitmq-server) and enables rabbitmq_web_stomp if missing, starts
# it with the open-file limit raised to the hard limit (Debian's service starts it with 1024,
# and it then admits only ~830 Web-STOMP sessions and silently stops answering SUBSCRIBE), and
# builds a release stompbox and loadtest. Runs every scenario against one broker at a time, each
# alone on the same core, with the load tool pinned to another (taskset), waiting for the broker
# to go quiet between scenarios. Prints a side-by-side table and leaves every result as JSON, HTML and
# text in OUTDIR (default: target/compare).
#
# Environment: BROKER_CPU (default 0), TOOL_CPU (default 1), REACTORS (stompbox reactors,
# default 1: one core each), QUICK=1 (short runs, small counts: a smoke test).
# All traffic stays on 127.0.0.0/8; every run is bounded by --duration and counts.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
out=${1:-$root/target/compare}
broker_cpu=${BROKER_CPU:-0}
tool_cpu=${TOOL_CPU:-1}
reactors=${REACTORS:-1}
quick=${QUICK:-0}
sb_ws=127.0.0.1:61714
sb_tcp=127.0.0.1:61713
rmq_url=ws://127.0.0.1:15674/ws
rmq_pid() { pgrep -u rabbitmq -x beam.smp | head -n1; }
mkdir -p "$out/stompbox" "$out/rabbitmq"
log() { printf '\n### [%d s] %s\n' "$SECONDS" "$*" >&2; }

started_rmq=0
sb_pid=
cleanup() {
    if [[ -n "$sb_pid" ]]; then kill -TERM "$sb_pid" 2>/dev/null || true; wait "$sb_pid" 2>/dev/null || true; fi
    if [[ $started_rmq == 1 ]]; then rabbitmqctl stop >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

# --- helpers ------------------------------------------------------------------------------
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# Wait (at most 60 s) until the broker uses under 5% of a core for a whole second: RabbitMQ
# keeps deleting queues and closing connections well after a scenario ends, and that work must
# not count against the next one.
wait_quiet() {
    local pid=$1 a b
    for _ in $(seq 1 60); do
        a=$(cpu_ticks "$pid"); sleep 1; b=$(cpu_ticks "$pid")
        (( b - a <= 5 )) && return 0
    done
    echo "(broker $pid still busy after 60 s; going on)" >&2
}

# --- scenarios ----------------------------------------------------------------------------
if [[ $quick == 1 ]]; then
    d=2; big=300; huge=1000
else
    d=5; big=1000; huge=10000
fi
# name | loadtest arguments. Setup timeouts are generous: RabbitMQ sets up 70-240 sessions/s
# here. "connect 10,000 sessions" is the set-up phase of the first scenario: `broadcast`
# reports the connect figures (rate, ready latency, broker memory per idle session, read
# 0.5 s after the last SUBSCRIBE and before the first message) for the same 10,000 sessions it
# then broadcasts to. RabbitMQ can take over two minutes per 10,000 sessions; setting them up
# twice would not fit the script in ten minutes. It runs first, on a freshly started broker,
# so that memory kept from earlier scenarios does not hide the per-session cost.
scenarios=(
    "connect+broadcast-$huge|broadcast -s $huge --interval-ms 500 --duration $d --drain 5 --setup-timeout 120"
    "fanout-1x1|fanout -p 1 -s 1 -b 64 --duration $d --drain 3"
    "fanout-1x100|fanout -p 1 -s 100 -b 64 --duration $d --drain 3"
    "fanout-1x$big|fanout -p 1 -s $big -b 64 --duration $d --drain 3 --setup-timeout 60"
    "fanout-100tx10-10p|fanout -p 10 -t 100 -s 1000 -b 64 --duration $d --drain 3 --setup-timeout 60"
    "broadcast-$big|broadcast -s $big --interval-ms 200 --duration $d --drain 5 --setup-timeout 60"
)

run_all() { # broker url pid
    local broker=$1 url=$2 pid=$3 s name args
    for s in "${scenarios[@]}"; do
        name=${s%%|*}; args=${s#*|}
        wait_quiet "$pid"
        log "$broker: $name: loadtest $args"
        # shellcheck disable=SC2086
        taskset -c "$tool_cpu" "$lt" $args --url "$url" --server-pid "$pid" \
            --login guest --passcode guest \
            --json "$out/$broker/$name.json" --report "$out/$broker/$name.html" \
            | tee "$out/$broker/$name.txt" || echo "($broker $name failed)" >&2
    done
}

# --- stompbox (alone on its core) ---------------------------------------------------------
# A missing RabbitMQ is installed while the release build runs (both take a minute or two on
# a fresh machine); the install must be over before stompbox is measured, since Debian's
# package may start the service.
install_pid=
if ! command -v rabbitmq-server >/dev/null; then
    log "installing rabbitmq-server (in the background; log: $out/rabbitmq/install.log)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server) \
        >"$out/rabbitmq/install.log" 2>&1 &
    install_pid=$!
fi
log "building release stompbox and loadtest"
(cd "$root" && cargo build --release --bin stompbox -p stompbox -q && cargo build --release -p loadtest -q)
if [[ -n "$install_pid" ]]; then
    wait "$install_pid" || { echo "installing rabbitmq-server failed; see $out/rabbitmq/install.log" >&2; exit 1; }
fi
sb="$root/target/release/stompbox"
lt="$root/target/release/loadtest"
if [[ -n "$(rmq_pid)" ]]; then
    # It must be restarted anyway, with the raised open-file limit, and must not share the core.
    log "stopping the running RabbitMQ (restarted later with a raised open-file limit)"
    rabbitmqctl stop >/dev/null
    for _ in $(seq 1 30); do [[ -z "$(rmq_pid)" ]] && break; sleep 1; done
fi
log "starting stompbox --reactors $reactors on CPU $broker_cpu"
# Every session comes from 127.0.0.1: no per-address limit.
taskset -c "$broker_cpu" "$sb" --listen "$sb_ws" --tcp-listen "$sb_tcp" --reactors "$reactors" \
    --max-connections-per-ip 0 \
    2>"$out/stompbox/server.log" &
sb_pid=$!
for _ in $(seq 1 50); do (exec 3<>/dev/tcp/${sb_ws%:*}/${sb_ws#*:}) 2>/dev/null && break; sleep 0.1; done
run_all stompbox "ws://$sb_ws/ws" "$sb_pid"
kill -TERM "$sb_pid"; wait "$sb_pid" 2>/dev/null || true; sb_pid=

# --- RabbitMQ (alone on the same core) ----------------------------------------------------
if ! grep -q rabbitmq_web_stomp /etc/rabbitmq/enabled_plugins 2>/dev/null; then
    rabbitmq-plugins enable --offline rabbitmq_web_stomp >/dev/null
fi
log "starting RabbitMQ (nofile $(ulimit -Hn), pinned to CPU $broker_cpu)"
# Debian's service would start it with 1024 files; run the server script directly as the
# rabbitmq user after raising the soft limit to the hard one.
su rabbitmq -s /bin/sh -c "ulimit -n \$(ulimit -Hn); cd /var/lib/rabbitmq; \
    HOME=/var/lib/rabbitmq exec taskset -c $broker_cpu /usr/lib/rabbitmq/bin/rabbitmq-server" \
    >"$out/rabbitmq/server.log" 2>&1 &
started_rmq=1
for _ in $(seq 1 120); do
    if (exec 3<>/dev/tcp/127.0.0.1/15674) 2>/dev/null; then break; fi
    sleep 1
done
rabbitmqctl await_startup >/dev/null
rpid=$(rmq_pid)
[[ -n "$rpid" ]] || { echo "RabbitMQ did not start; see $out/rabbitmq/server.log" >&2; exit 1; }
taskset -a -p -c "$broker_cpu" "$rpid" >/dev/null
log "RabbitMQ beam.smp pid $rpid, open files: $(awk '/open files/ {print $4}' /proc/$rpid/limits)"
run_all rabbitmq "$rmq_url" "$rpid"

{
    echo "compare.sh on $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(uname -r)"
    echo "each broker alone on CPU $broker_cpu (stompbox --reactors $reactors; RabbitMQ $(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null) with web_stomp), loadtest on CPU $tool_cpu"
    echo
    "$lt" table "stompbox=$out/stompbox" "rabbitmq=$out/rabbitmq"
} | tee "$out/table.md"

# The figures the README and BENCHMARKS.md promise, checked against this run.
{
    echo
    echo "against the promised ratios (stompbox / rabbitmq, this run):"
    python3 - "$out" <<'PY' || echo "  (the ratios could not be checked)"
import json, os, sys
out = sys.argv[1]
def m(broker, scen, key):
    try:
        with open(os.path.join(out, broker, scen + ".json")) as f:
            return json.load(f)["metrics"].get(key)
    except (OSError, ValueError, KeyError):
        return None
def ratio(scen, key):
    a, b = m("stompbox", scen, key), m("rabbitmq", scen, key)
    return None if a is None or not b else a / b
lines, ok = [], True
fan = [s for s in sorted(os.listdir(os.path.join(out, "stompbox"))) if s.startswith("fanout-") and s.endswith(".json")]
rs = [(s[:-5], ratio(s[:-5], "delivered_per_s")) for s in fan]
good = bool(rs) and all(r is not None and r >= 10 for _, r in rs)
ok &= good
lines.append("fanout delivered/s at least 10x in every scenario: %s (%s)" % (
    "met" if good else "NOT met", ", ".join("%s %s" % (n, "-" if r is None else "%.0fx" % r) for n, r in rs)))
big = [s[:-5] for s in os.listdir(os.path.join(out, "stompbox")) if s.startswith("connect+broadcast-") and s.endswith(".json")]
for scen in big:
    r = ratio(scen, "broker_bytes_per_session")
    good = r is not None and r <= 1 / 20
    ok &= good
    lines.append("memory per idle session at most 1/20 (%s): %s (%s)" % (scen, "met" if good else "NOT met", "-" if not r else "1/%.0f" % (1 / r)))
    r = ratio(scen, "last_p99_ms")
    good = r is not None and r <= 1 / 10
    ok &= good
    lines.append("last-receiver p99 at most 1/10 (%s): %s (%s)" % (scen, "met" if good else "NOT met", "-" if not r else "1/%.0f" % (1 / r)))
print("\n".join("  " + l for l in lines))
PY
} | tee -a "$out/table.md"
log "results in $out (table.md, per-run .json/.html/.txt); compare.sh took $((SECONDS / 60)) min $((SECONDS % 60)) s"
