#!/usr/bin/env bash
# Issue 15 figures: single node vs three nodes over NATS (broadcast), and 1 -> 100 fan-out with
# the publisher on the same node vs another node. Brokers and NATS on CPU 0, the tool on CPU 1.
set -u
cd "$(dirname "$0")/.."
cargo build --release -q -p stompbox -p loadtest
SB=$PWD/target/release/stompbox; LT=$PWD/target/release/loadtest
OUT=${OUT:-$(mktemp -d)}; mkdir -p $OUT; echo "results in $OUT"
printf 'max_payload: 8MB\n' > $OUT/nats.conf
ticks() { awk '{print $14+$15}' /proc/$1/stat; }
start_nats() { taskset -c 0 nats-server -c $OUT/nats.conf -a 127.0.0.1 -p 14222 -m 18222 > $OUT/nats.log 2>&1 & NATS=$!; sleep 0.5; }
start_node() { local i=$1; shift
  taskset -c 0 $SB --listen 127.0.0.1:1861$i --tcp-listen 127.0.0.1:1862$i --metrics-listen 127.0.0.1:1863$i \
    --reactors 1 --max-connections-per-ip 0 "$@" > $OUT/node$i.log 2>&1 &
  eval "P$i=$!"; sleep 0.5; }
url() { echo "ws://127.0.0.1:1861$1/ws"; }
stop_all() { kill ${P1:-} ${P2:-} ${P3:-} ${NATS:-} 2>/dev/null; wait 2>/dev/null; unset P1 P2 P3 NATS; sleep 1; }
BC="broadcast -b 64 --interval-ms ${INTERVAL:-500} --duration 10 --warmup 2 --drain 3 --concurrency 500 --setup-timeout 60 --quiet"
MODE=${1:-all}

if [ $MODE = all ] || [ $MODE = single ]; then
echo "== single node, 15000 subscribers"
start_node 1
taskset -c 1 $LT $BC -s 15000 --url $(url 1) --server-pid $P1 --json $OUT/single.json > $OUT/single.txt 2>&1
tail -30 $OUT/single.txt
stop_all
fi

if [ $MODE = all ] || [ $MODE = cluster ]; then
echo "== three nodes, 3 x 15000 subscribers, published on node 1"
start_nats
for i in 1 2 3; do start_node $i --cluster nats://127.0.0.1:14222 --node-name n$i; done
taskset -c 1 $LT $BC -s 45000 --processes 3 --url $(url 1),$(url 2),$(url 3) \
  --server-pid $P1 --server-pid $P2 --server-pid $P3 --json $OUT/cluster.json > $OUT/cluster.txt 2>&1
tail -40 $OUT/cluster.txt
echo "nats rss kB: $(awk '/VmRSS/{print $2}' /proc/$NATS/status)"
stop_all
fi

if [ $MODE = all ] || [ $MODE = fan ]; then
echo "== 1 -> 100 fan-out, same node vs across nodes"
start_nats
for i in 1 2; do start_node $i --cluster nats://127.0.0.1:14222 --node-name n$i; done
for rate in 0 1000; do
 for where in same cross; do
  sub=1; [ $where = cross ] && sub=2
  t0=$(( $(ticks $P1) + $(ticks $P2) + $(ticks $NATS) ))
  taskset -c 1 $LT fanout -p 1 -s 100 -b 64 --rate $rate --duration 5 --drain 3 --quiet \
    --url $(url $sub) --publisher-url $(url 1) --json $OUT/fan-$where-$rate.json > $OUT/fan-$where-$rate.txt 2>&1
  t1=$(( $(ticks $P1) + $(ticks $P2) + $(ticks $NATS) ))
  python3 - "$OUT/fan-$where-$rate.json" $((t1 - t0)) $where $rate <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); m = d['metrics']; lat = d['latency']['e2e']
ticks = int(sys.argv[2]); cpu_s = ticks / 100.0
deliv = m['delivered']
print(f"{sys.argv[3]} rate={sys.argv[4]}: delivered/s={m['delivered_per_s']:.0f} loss={m['loss']:.0f} "
      f"p50={lat['p50_us']/1000:.3f}ms p99={lat['p99_us']/1000:.3f}ms "
      f"brokers+nats cpu={cpu_s:.2f}s ({cpu_s*1e6/max(deliv,1):.3f} us/delivery over {deliv:.0f})")
PY
 done
done
stop_all
fi
