#!/usr/bin/env bash
# Issue 16 figures: persistent queue throughput and latency, 1 -> 1 and 10 -> 10, for stompbox
# with the in-memory store, stompbox with the JetStream store (nats-server -js, file storage),
# and RabbitMQ's durable queue through Web-STOMP (persistent:true). Brokers (and NATS) on CPU
# 0, the load tool on CPU 1. RabbitMQ must be installed (loadtest/compare.sh installs it).
set -u
cd "$(dirname "$0")/.."
cargo build --release -q -p stompbox -p loadtest
SB=$PWD/target/release/stompbox; LT=$PWD/target/release/loadtest
OUT=${OUT:-$(mktemp -d)}; mkdir -p "$OUT"; echo "results in $OUT"
DUR=${DUR:-10}
ticks() { awk '{print $14+$15}' /proc/$1/stat; }
run() { # name url pids...
  local name=$1 url=$2; shift 2
  for shape in "1 1" "10 10"; do
    set -- $shape
    for rate in 0 ${PACED:-1000}; do
      local tag="$name-$1x$2-r$rate"
      taskset -c 1 "$LT" queue --url "$url" --producers $1 --consumers $2 --rate $rate -b 256 \
        --ack client-individual --prefetch 100 --persistent --duration "$DUR" --drain 5 --quiet \
        ${LOGIN:-} --json "$OUT/$tag.json" > "$OUT/$tag.txt" 2>&1
      python3 - "$OUT/$tag.json" "$tag" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); m = d['metrics']; lat = d['latency']
e = lat.get('e2e') or next(iter(lat.values()))
print(f"{sys.argv[2]}: consumed/s={m.get('consumed_per_s', 0):.0f} "
      f"p50={e['p50_us']/1000:.2f}ms p99={e['p99_us']/1000:.2f}ms "
      f"lost={m.get('loss', 0):.0f} duplicates={m.get('duplicates', 0):.0f}")
PY
    done
  done
}
MODE=${1:-all}

if [ $MODE = all ] || [ $MODE = memory ]; then
  taskset -c 0 "$SB" --listen 127.0.0.1:18711 --tcp-listen 127.0.0.1:18712 --no-metrics \
    --reactors 1 --max-connections-per-ip 0 2>"$OUT/memory.log" & P=$!; sleep 0.5
  run memory ws://127.0.0.1:18711/ws
  kill $P; wait $P 2>/dev/null
fi

if [ $MODE = all ] || [ $MODE = jetstream ]; then
  rm -rf "$OUT/js"; mkdir -p "$OUT/js"
  taskset -c 0 nats-server -js -sd "$OUT/js" -a 127.0.0.1 -p 14223 >"$OUT/nats.log" 2>&1 & N=$!
  sleep 0.5
  taskset -c 0 "$SB" --listen 127.0.0.1:18711 --tcp-listen 127.0.0.1:18712 --no-metrics \
    --reactors 1 --max-connections-per-ip 0 --cluster nats://127.0.0.1:14223 \
    --queue-store jetstream 2>"$OUT/jetstream.log" & P=$!; sleep 1
  run jetstream ws://127.0.0.1:18711/ws
  kill $P $N; wait $P $N 2>/dev/null
fi

if [ $MODE = all ] || [ $MODE = rabbitmq ]; then
  grep -q rabbitmq_web_stomp /etc/rabbitmq/enabled_plugins 2>/dev/null ||
    rabbitmq-plugins enable --offline rabbitmq_web_stomp >/dev/null
  su rabbitmq -s /bin/sh -c "ulimit -n \$(ulimit -Hn); cd /var/lib/rabbitmq; \
    HOME=/var/lib/rabbitmq exec taskset -c 0 /usr/lib/rabbitmq/bin/rabbitmq-server" \
    >"$OUT/rabbitmq.log" 2>&1 &
  for _ in $(seq 1 120); do (exec 3<>/dev/tcp/127.0.0.1/15674) 2>/dev/null && break; sleep 1; done
  rabbitmqctl await_startup >/dev/null
  rpid=$(pgrep -u rabbitmq -x beam.smp | head -n1); taskset -a -p -c 0 "$rpid" >/dev/null
  LOGIN="--login guest --passcode guest" run rabbitmq ws://127.0.0.1:15674/ws
  rabbitmqctl stop >/dev/null 2>&1
fi
