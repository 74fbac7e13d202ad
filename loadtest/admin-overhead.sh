#!/usr/bin/env bash
# The admin console's cost to a busy broker: the same fan-out with and without a client making
# the console's requests every second, alternating, against one broker.
#
#   bash loadtest/admin-overhead.sh [PAIRS]
#
# Builds the release stompbox and loadtest, starts stompbox (one reactor, --admin, pinned to
# BROKER_CPU) and runs PAIRS (default 5) pairs of `loadtest fanout` (SUBSCRIBERS subscribers, 1
# topic, as fast as it goes, DURATION s; pinned to TOOL_CPU). In the "polled" run of each pair
# a poller on TOOL_CPU makes, every second, the requests the console's page makes each second
# (overview, reactors, nodes, destinations, a page of 100 connections: the 1,000 subscribers
# are 10 pages; the poller walks them in turn). Prints delivered msg/s and broker CPU per
# delivery for each run, then the medians. Everything on 127.0.0.1; every loop is bounded.
set -euo pipefail

pairs=${1:-5}
subs=${SUBSCRIBERS:-1000}
duration=${DURATION:-10}
source "$(dirname "$0")/admin-broker.sh"

# The console's requests, once a second, for at most `seconds` seconds.
poll() {
    local seconds=$1 cursor="" i=0 page
    while (( i < seconds )); do
        i=$((i + 1))
        for p in overview reactors nodes destinations; do
            curl -sf -o /dev/null -H "Authorization: Bearer $token" "http://127.0.0.1:$admin/api/$p" || true
        done
        page=$(curl -sf -H "Authorization: Bearer $token" \
            "http://127.0.0.1:$admin/api/connections?limit=100${cursor:+&cursor=$cursor}" || true)
        cursor=$(printf '%s' "$page" | python3 -c 'import json,sys
try: print(json.load(sys.stdin).get("next") or "")
except Exception: print("")')
        sleep 1
    done
}

run() {  # label -> "delivered_per_s us_per_delivery"
    local json
    json=$(mktemp)
    taskset -c "$tool_cpu" "$root/target/release/loadtest" fanout --url "ws://127.0.0.1:$ws/ws" \
        -s "$subs" --duration "$duration" --warmup 1 --quiet --prefix "overhead-$1" \
        --server-pid "$broker" --json "$json" >/dev/null
    python3 -c 'import json,sys
m = json.load(open(sys.argv[1]))["metrics"]
assert m["loss"] == 0 and m["sessions_failed"] == 0, m
print(round(m["delivered_per_s"]), round(m["broker_cpu_us_per_delivery"], 4))' "$json"
    rm -f "$json"
}

printf '%-5s %-8s %14s %18s\n' pair run "delivered/s" "broker us/deliv"
plain=()
polled=()
for k in $(seq "$pairs"); do
    read -r d u < <(run plain)
    plain+=("$d")
    printf '%-5s %-8s %14s %18s\n' "$k" plain "$d" "$u"
    (taskset -c "$tool_cpu" bash -c "$(declare -f poll); token=$token admin=$admin poll $((duration + 10))") &
    helper=$!
    read -r d u < <(run polled)
    kill "$helper" 2>/dev/null || true
    wait "$helper" 2>/dev/null || true
    helper=
    polled+=("$d")
    printf '%-5s %-8s %14s %18s\n' "$k" polled "$d" "$u"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
echo "median delivered/s: plain $(median "${plain[@]}"), polled $(median "${polled[@]}")"
