"""/metrics as standard tooling reads it: the Prometheus project's Python client parses the
broker's exposition with its strict OpenMetrics parser and with its Prometheus text parser.

Usage: metrics_parse.py METRICS_PORT. Exits non-zero (with the reason) if either parser refuses
the text, or if expected families are missing or clash.
"""
import sys
import urllib.request

from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from prometheus_client.parser import text_string_to_metric_families as prom_parse

port = int(sys.argv[1])
with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
    ctype = r.headers.get("Content-Type", "")
    text = r.read().decode("utf-8")
assert ctype.startswith("application/openmetrics-text"), ctype

om = {f.name: f for f in om_parse(text)}
prom = {f.name: f for f in prom_parse(text)}
print(f"OpenMetrics parser: {len(om)} families; Prometheus text parser: {len(prom)} families")

want = {
    "stompbox_connections": "gauge",
    "stompbox_connections_accepted": "counter",
    "stompbox_messages_in": "counter",
    "stompbox_bytes_out": "counter",
    "stompbox_build": "info",
    "stompbox_reactor_loop_turn_seconds": "histogram",
    "stompbox_handshake_seconds": "histogram",
    "process_cpu_seconds": "counter",
    "process_resident_memory_bytes": "gauge",
    "process_open_fds": "gauge",
    "process_max_fds": "gauge",
}
for name, typ in want.items():
    assert name in om, f"OpenMetrics: no family {name}"
    assert om[name].type == typ, f"{name}: {om[name].type}, want {typ}"
# Every family has samples and values that are numbers.
for f in om.values():
    for s in f.samples:
        assert s.value == s.value, f"{s.name}: NaN"
# The counters' samples end in _total in both views.
acc = [s for s in om["stompbox_connections_accepted"].samples if s.name.endswith("_total")]
assert acc, om["stompbox_connections_accepted"].samples
build = om["stompbox_build"].samples[0]
assert build.labels.get("version") and build.labels.get("revision"), build
print("metrics-parse: ok")
