#!/usr/bin/env bash
# One instance, before and after: runs the single-instance scenarios against two isobar
# binaries in the same run, alternately, and prints one table (BENCHMARKS.md, "One
# instance, before and after").
#
#   bash loadtests/single.sh BEFORE_BINARY [AFTER_BINARY] [--smoke]
#
# AFTER_BINARY defaults to this checkout's release build. A BEFORE binary is an older
# build kept aside, e.g. `git worktree add /tmp/old REV && cargo build --release
# --manifest-path /tmp/old/Cargo.toml` then `$CARGO_TARGET_DIR/release/isobar`.
#
# Scenarios, each against BEFORE then AFTER:
# - /current vs nginx's static file: nginx is measured right before each binary, and the
#   ratio to that figure is what compares (nginx itself moves 10 % between runs);
# - memory per idle WebSocket connection (19,000 held 60 s);
# - RSS with 50,000 active locations × 24 hourly readings;
# - the mixed run: 10,000 WebSocket subscribers (1,000 readings/s posted to their
#   locations, each measured ingest → client), 20,000 REST /current req/s (open model)
#   and 49,000 readings/s more in batches of 1,000: 50,000 readings/s in all, at once.
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=false
args=()
for a in "$@"; do [ "$a" = --smoke ] && smoke=true || args+=("$a"); done
before="${args[0]:?usage: single.sh BEFORE_BINARY [AFTER_BINARY] [--smoke]}"
source loadtests/common.sh
build_release
after="${args[1]:-$bin/isobar}"
before=$(realpath "$before"); after=$(realpath "$after")

if $smoke; then
  DUR=2; CONNS=16; IDLE=300; IDLE_HOLD=2; LOCS=300; MIX_SECS=3; MIX_WS=100; MIX_REST=500; MIX_INGEST=2000
else
  DUR=15; CONNS=64; IDLE=19000; IDLE_HOLD=60; LOCS=50000; MIX_SECS=30; MIX_WS=10000; MIX_REST=20000; MIX_INGEST=49000
fi

make_work isobar-single

nginx_serving_current "$after"

for which in before after; do
  binary=$before; [ "$which" = after ] && binary=$after
  echo "== $which: $binary"
  echo "-- /current vs nginx ($CONNS connections, ${DUR} s each)"
  LABEL="$which" run rest --label nginx --url "http://127.0.0.1:$NGINX_PORT/current.json" --connections "$CONNS" --duration-secs "$DUR"
  start_isobar "rest-$which" "$binary"
  post_bench_reading "http://127.0.0.1:$ISOBAR_PORT"
  LABEL="$which" run rest --label current --url "http://127.0.0.1:$ISOBAR_PORT/v1/locations/BENCH1/current" --connections "$CONNS" --duration-secs "$DUR"
  stop_isobar

  echo "-- idle connections ($IDLE held ${IDLE_HOLD} s)"
  start_isobar "conns-$which" "$binary"
  LABEL="$which" run conns --base "http://127.0.0.1:$ISOBAR_PORT" --count "$IDLE" --hold-secs "$IDLE_HOLD" --pid "$ISOBAR_PID"
  stop_isobar

  echo "-- active locations ($LOCS × 24 h)"
  start_isobar "actors-$which" "$binary"
  LABEL="$which" run actors --base "http://127.0.0.1:$ISOBAR_PORT" --locations "$LOCS" --hours 24 --pid "$ISOBAR_PID"
  stop_isobar

  echo "-- mixed: $MIX_WS WebSocket subscribers, $MIX_REST REST req/s, $MIX_INGEST + 1,000 readings/s, ${MIX_SECS} s"
  start_isobar "mixed-$which" "$binary"
  base="http://127.0.0.1:$ISOBAR_PORT"
  post_bench_reading "$base"
  # The subscribers connect first (the ws scenario connects, then drives); REST and the
  # batched ingest start once they are in, and run as long as the WebSocket driver.
  LABEL="$which" run ws --base "$base" --clients "$MIX_WS" --locations 1000 --subscriptions 1 --rate 1000 --duration-secs "$MIX_SECS" &
  ws_job=$!
  for _ in $(seq 600); do grep -q 'clients subscribed' "$work/last" 2>/dev/null && break; sleep 0.2; done
  "$bin/loadtests" rest --url "$base/v1/locations/BENCH1/current" --connections 64 --duration-secs "$MIX_SECS" \
    --rate "$MIX_REST" >"$work/mixed-rest" 2>&1 &
  rest_job=$!
  "$bin/loadtests" ingest --base "$base" --batch 1000 --concurrency 4 --rate "$MIX_INGEST" \
    --duration-secs "$MIX_SECS" >"$work/mixed-ingest" 2>&1 &
  ingest_job=$!
  wait "$ws_job"
  wait "$rest_job" || { cat "$work/mixed-rest"; exit 1; }
  wait "$ingest_job" || { cat "$work/mixed-ingest"; exit 1; }
  for f in mixed-rest mixed-ingest; do
    grep -v '^RESULT' "$work/$f" || true
    grep '^RESULT' "$work/$f" | tail -1 | cut -c8- | W="$which" F="$f" python3 -c '
import json, os, sys
r = json.loads(sys.stdin.read()); r["label"] = os.environ["W"]; r["scenario"] = os.environ["F"]
print(json.dumps(r))' >>"$results"
  done
  stop_isobar
done

echo
echo "== one instance, before and after ($(nproc) cores)"
python3 - "$results" <<'PY'
import json, sys
rows = {}
for r in map(json.loads, open(sys.argv[1])):
    rows[(r.get("scenario"), r.get("label"))] = r
def get(scenario, which):
    return rows.get((scenario, which), {})
def ratio(which):
    n, c = get("nginx", which), get("current", which)
    return f"{c.get('rps', 0):.0f} vs nginx {n.get('rps', 0):.0f} req/s = {c.get('rps', 0) / max(n.get('rps', 1), 1):.2f}×"
def conns(which):
    c = get("conns", which)
    return f"{c.get('bytes_per_connection', 0) / 1024:.1f} KiB ({c.get('count', 0)} held)"
def actors(which):
    a = get("actors", which)
    return f"{a.get('rss_after_kib', 0) / 1024:.0f} MiB ({a.get('bytes_per_location', 0) / 1024:.1f} KiB/location)"
def mixed_ws(which):
    w = get("ws", which)
    return f"p99 {w.get('latency', {}).get('p99_ms', '?')} ms, lost {w.get('lost', '?')} of {w.get('expected', '?')}"
def mixed_rest(which):
    r = get("mixed-rest", which)
    return f"p99 {r.get('latency', {}).get('p99_ms', '?')} ms at {r.get('rps', 0):.0f} req/s, {r.get('errors', '?')} errors"
def mixed_ingest(which):
    i = get("mixed-ingest", which)
    return f"POST p99 {i.get('post_latency', {}).get('p99_ms', '?')} ms, {i.get('readings_per_sec', 0):.0f} readings/s"
table = [
    ("/current vs nginx static", ratio, "≥ 1.0×"),
    ("memory per idle connection", conns, "≤ 8 KiB"),
    ("RSS, active locations × 24 h", actors, "≤ 512 MiB at 50,000"),
    ("mixed: WebSocket ingest→client", mixed_ws, "p99 ≤ 10 ms"),
    ("mixed: REST /current", mixed_rest, "(reported)"),
    ("mixed: batched ingest", mixed_ingest, "(reported)"),
]
w = max(len(t[0]) for t in table)
print(f"{'':<{w}}  {'before':<52}  {'after':<52}  target")
for name, f, target in table:
    print(f"{name:<{w}}  {f('before'):<52}  {f('after'):<52}  {target}")
PY
