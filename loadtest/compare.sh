#!/usr/bin/env bash
# Side-by-side figures: stompbox against RabbitMQ Web-STOMP, same scenarios, same load tool.
#
#   bash loadtest/compare.sh [OUTDIR]
#
# Installs RabbitMQ (Debian rabbitmq-server) and enables rabbitmq_web_stomp if missing, starts
# it with the open-file limit raised to the hard limit (Debian's service starts it with 1024,
# and it then admits only ~830 Web-STOMP sessions and silently stops answering SUBSCRIBE), builds
# and starts a release stompbox, and runs every scenario against each broker with the broker
# pinned to one core and the load tool to another (taskset). Prints a side-by-side table and
# leaves every result as JSON (and HTML) in OUTDIR (default: target/compare).
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
mkdir -p "$out/stompbox" "$out/rabbitmq"
log() { printf '\n### %s\n' "$*" >&2; }

started_rmq=0
sb_pid=
cleanup() {
    if [[ -n "$sb_pid" ]]; then kill -TERM "$sb_pid" 2>/dev/null || true; wait "$sb_pid" 2>/dev/null || true; fi
    if [[ $started_rmq == 1 ]]; then rabbitmqctl stop >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

# --- RabbitMQ -----------------------------------------------------------------------------
rmq_pid() { pgrep -u rabbitmq -x beam.smp | head -n1; }
if ! command -v rabbitmq-server >/dev/null; then
    log "installing rabbitmq-server"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
fi
if ! grep -q rabbitmq_web_stomp /etc/rabbitmq/enabled_plugins 2>/dev/null; then
    rabbitmq-plugins enable --offline rabbitmq_web_stomp >/dev/null
fi
if [[ -z "$(rmq_pid)" ]]; then
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
fi
rpid=$(rmq_pid)
[[ -n "$rpid" ]] || { echo "RabbitMQ did not start; see $out/rabbitmq/server.log" >&2; exit 1; }
taskset -a -p -c "$broker_cpu" "$rpid" >/dev/null
log "RabbitMQ beam.smp pid $rpid, open files: $(awk '/open files/ {print $4}' /proc/$rpid/limits)"

# --- stompbox -----------------------------------------------------------------------------
log "building release stompbox and loadtest"
(cd "$root" && cargo build --release --bin stompbox -p stompbox >/dev/null 2>&1 && cargo build --release -p loadtest >/dev/null 2>&1) \
    || { (cd "$root" && cargo build --release --bin stompbox -p stompbox && cargo build --release -p loadtest); exit 1; }
sb="$root/target/release/stompbox"
lt="$root/target/release/loadtest"
taskset -c "$broker_cpu" "$sb" --listen "$sb_ws" --tcp-listen "$sb_tcp" --reactors "$reactors" \
    2>"$out/stompbox/server.log" &
sb_pid=$!
for _ in $(seq 1 50); do (exec 3<>/dev/tcp/${sb_ws%:*}/${sb_ws#*:}) 2>/dev/null && break; sleep 0.1; done

# --- scenarios ----------------------------------------------------------------------------
if [[ $quick == 1 ]]; then
    d=2; n_conn=1000; big=300; huge=1000
else
    d=10; n_conn=10000; big=1000; huge=10000
fi
# name | loadtest arguments
scenarios=(
    "connect-$n_conn|connect -n $n_conn --hold 2"
    "fanout-1x1|fanout -p 1 -s 1 -b 64 --duration $d"
    "fanout-1x100|fanout -p 1 -s 100 -b 64 --duration $d"
    "fanout-1x$big|fanout -p 1 -s $big -b 64 --duration $d"
    "fanout-100tx10-10p|fanout -p 10 -t 100 -s 1000 -b 64 --duration $d"
    "broadcast-$big|broadcast -s $big --interval-ms 200 --duration $d"
    "broadcast-$huge|broadcast -s $huge --interval-ms 500 --duration $d --setup-timeout 60"
)

run_one() { # broker url pid name args...
    local broker=$1 url=$2 pid=$3 name=$4; shift 4
    log "$broker: $name: loadtest $*"
    taskset -c "$tool_cpu" "$lt" "$@" --url "$url" --server-pid "$pid" --login guest --passcode guest \
        --json "$out/$broker/$name.json" --report "$out/$broker/$name.html" \
        | tee "$out/$broker/$name.txt" || echo "($broker $name failed)" >&2
    sleep 2 # let closed sockets leave TIME_WAIT pressure and the broker settle
}

for s in "${scenarios[@]}"; do
    name=${s%%|*}; args=${s#*|}
    # shellcheck disable=SC2086
    run_one stompbox "ws://$sb_ws/ws" "$sb_pid" "$name" $args
    # shellcheck disable=SC2086
    run_one rabbitmq "$rmq_url" "$rpid" "$name" $args
done

{
    echo "compare.sh on $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(uname -r)"
    echo "broker on CPU $broker_cpu (stompbox --reactors $reactors; RabbitMQ $(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null) with web_stomp), loadtest on CPU $tool_cpu"
    echo
    "$lt" table "stompbox=$out/stompbox" "rabbitmq=$out/rabbitmq"
} | tee "$out/table.md"
log "results in $out (table.md, per-run .json/.html/.txt)"
