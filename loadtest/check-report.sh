#!/usr/bin/env bash
# Render a loadtest HTML report in headless Chromium and save a screenshot, to check that the
# page (inline SVG, no external assets) draws as it should.
#
#   bash loadtest/check-report.sh [REPORT.html] [OUT.png]
#
# Without REPORT.html: builds the tools, starts a release stompbox on 127.0.0.1, runs a short
# fanout with --report, and screenshots that. Installs Debian's chromium if it is missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
report=${1:-}
png=${2:-$root/target/loadtest-report.png}
if ! command -v chromium >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if [[ -z "$report" ]]; then
    (cd "$root" && cargo build --release --bin stompbox -p stompbox -q && cargo build --release -p loadtest -q)
    report=$root/target/loadtest-report.html
    "$root/target/release/stompbox" --listen 127.0.0.1:61794 --tcp-listen 127.0.0.1:61793 --reactors 1 2>/dev/null &
    pid=$!
    trap 'kill -TERM $pid 2>/dev/null || true' EXIT
    sleep 0.5
    "$root/target/release/loadtest" fanout --url ws://127.0.0.1:61794/ws -s 50 --rate 20000 \
        --duration 5 --server-pid "$pid" --quiet --report "$report" >/dev/null
fi
# No network is needed: the page loads nothing. --no-sandbox: we run as root.
timeout 60 chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --window-size=1000,1900 --screenshot="$png" "file://$(realpath "$report")" 2>/dev/null
size=$(stat -c %s "$png")
if (( size < 20000 )); then
    echo "screenshot $png is only $size bytes: the page did not render" >&2
    exit 1
fi
echo "rendered $report -> $png ($size bytes)"
