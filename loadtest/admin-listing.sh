#!/usr/bin/env bash
# What listing every connection through the admin API costs a reactor's loop turns.
#
#   bash loadtest/admin-listing.sh [SESSIONS]
#
# Builds the release stompbox and loadtest, starts stompbox with one reactor (every session on
# the one loop: the worst case) and --admin on BROKER_CPU, holds SESSIONS (default 19,000: this
# machine's open-file limit allows ~19,900 a process) idle subscribed WebSocket sessions with
# `loadtest connect` on TOOL_CPU (no keep-alive pings: their bursts would be turn time of their
# own), then compares two windows of WINDOW seconds read from the
# loop-turn histogram (`stompbox_reactor_loop_turn_seconds` on /metrics): idle, and while a
# client lists all the sessions again and again through `GET /api/connections?limit=1000`
# (following `next`). Prints the turns of each window by busy time, and the listing's pace.
# The broker's HTTP thread runs on TOOL_CPU (HTTP_ON_BROKER_CPU=1 keeps it on BROKER_CPU).
# Everything on 127.0.0.1; every loop is bounded.
set -euo pipefail

sessions=${1:-19000}
window=${WINDOW:-10}
source "$(dirname "$0")/admin-broker.sh"

# The HTTP thread (named "metrics") goes to TOOL_CPU: on the reactor's core its JSON work
# would preempt the reactor, and the turn histogram (wall time) would count that as turn time.
if [[ ${HTTP_ON_BROKER_CPU:-0} != 1 ]]; then
    for t in /proc/"$broker"/task/*; do
        [[ $(cat "$t/comm") == metrics ]] && taskset -p -c "$tool_cpu" "${t##*/}" >/dev/null
    done
fi

hold=$((window * 2 + 60))
taskset -c "$tool_cpu" "$root/target/release/loadtest" connect --url "ws://127.0.0.1:$ws/ws" \
    -n "$sessions" --hold "$hold" --keepalive 0 --quiet >/dev/null &
helper=$!
for _ in $(seq 600); do
    n=$(curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:$admin/api/overview" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["connections"]["total"])' || echo 0)
    (( n >= sessions )) && break
    sleep 0.2
done
(( n >= sessions )) || { echo "only $n of $sessions sessions came up" >&2; exit 1; }
sleep 2

# Cumulative loop-turn buckets over the reactors: "le count" lines.
buckets() {
    curl -sf "http://127.0.0.1:$admin/metrics" | python3 -c '
import re, sys, collections
sums = collections.OrderedDict()
for line in sys.stdin:
    m = re.match(r"stompbox_reactor_loop_turn_seconds_bucket\{(.*)\} (\S+)", line)
    if m:
        le = re.search(r"le=\"([^\"]+)\"", m.group(1)).group(1)
        sums[le] = sums.get(le, 0.0) + float(m.group(2))
for le, c in sums.items():
    print(le, c)'
}
report() {  # label before after
    python3 - "$1" "$2" "$3" <<'EOF'
import sys
label, a, b = sys.argv[1], sys.argv[2], sys.argv[3]
def parse(s):
    return {le: float(c) for le, c in (l.split() for l in s.strip().splitlines())}
a, b = parse(a), parse(b)
total = b["+Inf"] - a["+Inf"]
cols = []
for le in ["0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01"]:
    key = next((k for k in b if k != "+Inf" and abs(float(k) - float(le)) < 1e-12), None)
    if key is None:
        continue
    over = total - (b[key] - a[key])
    cols.append(f"> {float(le) * 1e3:g} ms: {int(over)}")
print(f"{label:>8}: {int(total)} turns; " + ", ".join(cols))
EOF
}

before=$(buckets)
sleep "$window"
idle=$(buckets)

read -r pages rows walks < <(python3 - "$admin" "$token" "$window" <<'EOF'
import json, sys, time, urllib.request
port, token, window = sys.argv[1], sys.argv[2], float(sys.argv[3])
pages = rows = walks = 0
end = time.monotonic() + window
while time.monotonic() < end:
    cursor = None
    while True:
        url = f"http://127.0.0.1:{port}/api/connections?limit=1000" + (f"&cursor={cursor}" if cursor else "")
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        page = json.load(urllib.request.urlopen(req, timeout=10))
        pages += 1
        rows += len(page["connections"])
        cursor = page.get("next")
        if not cursor:
            break
    walks += 1
print(pages, rows, walks)
EOF
)
listing=$(buckets)

echo "$sessions idle sessions on one reactor; windows of $window s"
report idle "$before" "$idle"
report listing "$idle" "$listing"
echo "listed $rows rows in $pages pages ($((rows / window)) rows/s, $walks whole walks)"
