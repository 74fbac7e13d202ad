# Sourced by loadtest/admin-overhead.sh and admin-listing.sh: builds the release stompbox and
# loadtest, starts stompbox with one reactor and the admin API (a random token) on free
# loopback ports, pinned to BROKER_CPU (default 0), and stops it (and `$helper`, a background
# job the caller may set) on exit. Sets: root, broker_cpu, tool_cpu, token, ws, admin, broker.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
broker_cpu=${BROKER_CPU:-0}
tool_cpu=${TOOL_CPU:-1}
token=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')

(cd "$root" && cargo build --release --quiet -p stompbox --bin stompbox && cargo build --release --quiet -p loadtest)
read -r ws admin < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')

STOMPBOX_ADMIN_TOKEN=$token taskset -c "$broker_cpu" "$root/target/release/stompbox" \
    --listen "127.0.0.1:$ws" --no-tcp --metrics-listen "127.0.0.1:$admin" --admin \
    --reactors 1 --max-connections-per-ip 0 --log-level error &
broker=$!
helper=
cleanup() {
    [[ -n "$helper" ]] && kill "$helper" 2>/dev/null || true
    kill -TERM "$broker" 2>/dev/null || true
    wait "$broker" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 100); do
    curl -sf -o /dev/null -H "Authorization: Bearer $token" "http://127.0.0.1:$admin/api/overview" && break
    sleep 0.1
done
curl -sf -o /dev/null -H "Authorization: Bearer $token" "http://127.0.0.1:$admin/api/overview" \
    || { echo "the admin API does not answer" >&2; exit 1; }
