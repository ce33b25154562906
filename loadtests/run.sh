#!/usr/bin/env bash
# Builds release, starts isobar (and nginx as the reference), runs every scenario of the
# `loadtests` tool against loopback, and prints one table.
#
#   bash loadtests/run.sh            # full run (several minutes), the numbers in BENCHMARKS.md
#   bash loadtests/run.sh --smoke    # seconds-long versions, so CI keeps the tools working
#
# Everything runs on this machine: the load generator shares its cores with the server.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=full
[ "${1:-}" = "--smoke" ] && mode=smoke
source loadtests/common.sh
make_work isobar-load

if [ "$mode" = smoke ]; then
  DUR=2; CONNS=16; WS_CLIENTS=200; WS_LOCS=20; WS_RATE=100; IDLE=500; IDLE_HOLD=3
  ACT_LOCS=500; ACT_HOURS=24; ING_DUR=2; KAFKA_N=20000
else
  DUR=15; CONNS=64; WS_CLIENTS=10000; WS_LOCS=1000; WS_RATE=1000; IDLE=19000; IDLE_HOLD=60
  ACT_LOCS=50000; ACT_HOURS=24; ING_DUR=15; KAFKA_N=200000
fi

echo "== build (release)"
build_release

if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  echo "== installing nginx (reference server)"
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nginx-light >/dev/null
fi

echo "== /current vs nginx ($CONNS connections, ${DUR} s each)"
start_isobar rest
base="http://127.0.0.1:$ISOBAR_PORT"
post_bench_reading "$base"
mkdir -p "$work/www"
curl -fs "$base/v1/locations/BENCH1/current" >"$work/www/current.json"
start_nginx "$work/www"
nginx_port=$NGINX_PORT
run rest --label nginx --url "http://127.0.0.1:$nginx_port/current.json" --connections "$CONNS" --duration-secs "$DUR"
run rest --label current_max --url "$base/v1/locations/BENCH1/current" --connections "$CONNS" --duration-secs "$DUR"
max=$(python3 -c "import json,sys; r=[json.loads(l) for l in open('$results')]; print(int(r[-1]['rps']))")
half=$((max / 2))
run rest --label current_half_rate --url "$base/v1/locations/BENCH1/current" --connections "$CONNS" --duration-secs "$DUR" --rate "$half"
# Control: nginx at the same fixed rate shows what the generator's own timing adds.
run rest --label nginx_half_rate --url "http://127.0.0.1:$nginx_port/current.json" --connections "$CONNS" --duration-secs "$DUR" --rate "$half"
# The same document through GraphQL: a POST, parsed, validated and resolved per request.
run rest --label graphql_current --url "$base/graphql" --connections "$CONNS" --duration-secs "$DUR" \
  --post-json '{"query":"{ location(id: \"BENCH1\") { current } }"}'
stop_isobar

echo "== WebSocket fan-out ($WS_CLIENTS clients over $WS_LOCS locations, $WS_RATE updates/s)"
start_isobar ws
run ws --base "http://127.0.0.1:$ISOBAR_PORT" --clients "$WS_CLIENTS" --locations "$WS_LOCS" --subscriptions 1 --rate "$WS_RATE" --duration-secs "$DUR"
stop_isobar

echo "== idle connections ($IDLE held ${IDLE_HOLD} s)"
start_isobar conns
run conns --base "http://127.0.0.1:$ISOBAR_PORT" --count "$IDLE" --hold-secs "$IDLE_HOLD" --pid "$ISOBAR_PID"
stop_isobar

echo "== active locations ($ACT_LOCS × $ACT_HOURS h)"
start_isobar actors
run actors --base "http://127.0.0.1:$ISOBAR_PORT" --locations "$ACT_LOCS" --hours "$ACT_HOURS" --pid "$ISOBAR_PID"
stop_isobar

echo "== ingest (batched POST, ${ING_DUR} s)"
start_isobar ingest
run ingest --base "http://127.0.0.1:$ISOBAR_PORT" --batch 5000 --concurrency 4 --duration-secs "$ING_DUR"
stop_isobar

echo "== Kafka: $KAFKA_N readings from the topic (librdkafka mock cluster) to applied"
run kafka --isobar "$bin/isobar" --readings "$KAFKA_N"

echo "== forecast: training one place (its four quantities) on a year of hours, and one forecast (one core)"
if [ "$mode" = smoke ]; then run forecast --quantities all --trainings 1 --forecasts 100; else run forecast --quantities all; fi

echo "== cluster: instances behind nginx sharing Kafka, Redis and InfluxDB; one SIGKILLed halfway"
# 3 instances and 20,000 clients: what this 2-core machine carries (cluster.sh's default,
# 6 instances and 100,000 clients, does not finish connecting here; BENCHMARKS.md).
if [ "$mode" = smoke ]; then bash loadtests/cluster.sh --smoke | grep '^cluster:'; else
  bash loadtests/cluster.sh 3 20000 2000 200 60 | grep '^cluster:'; fi

echo
echo "== results ($mode run; $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, kernel $(uname -r))"
python3 - "$results" <<'PY'
import json, sys
rows = {r.get("scenario"): r for r in map(json.loads, open(sys.argv[1]))}
n, m, h = rows.get("nginx", {}), rows.get("current_max", {}), rows.get("current_half_rate", {})
nh = rows.get("nginx_half_rate", {})
ws, c, a, i = rows.get("ws", {}), rows.get("conns", {}), rows.get("actors", {}), rows.get("ingest", {})
k = rows.get("kafka", {})
f = rows.get("forecast", {})
g = rows.get("graphql_current", {})
gratio = (g.get("rps", 0) / m["rps"]) if m.get("rps") else 0
ratio = (m.get("rps", 0) / n["rps"]) if n.get("rps") else 0
table = [
    ("/current throughput vs nginx static", f"{m.get('rps', 0):.0f} req/s vs {n.get('rps', 0):.0f} req/s = {ratio:.2f}×", "≥ 0.5×"),
    ("/current p99 at half of max rate", f"{h.get('service_latency', {}).get('p99_ms', '?')} ms send→response, {h.get('latency', {}).get('p99_ms', '?')} ms from schedule, at {h.get('rate', 0):.0f} req/s", "≤ 2 ms"),
    ("  control: nginx at the same rate", f"{nh.get('service_latency', {}).get('p99_ms', '?')} ms send→response, {nh.get('latency', {}).get('p99_ms', '?')} ms from schedule", ""),
    ("GraphQL current query throughput", f"{g.get('rps', 0):.0f} req/s ({g.get('errors', '?')} errors) = {gratio:.2f}× REST /current, p99 {g.get('latency', {}).get('p99_ms', '?')} ms", "(reported)"),
    ("WebSocket ingest→client p99", f"{ws.get('latency', {}).get('p99_ms', '?')} ms ({ws.get('clients', 0)} clients, {ws.get('locations', 0)} locations, {ws.get('delivered_per_sec', 0):.0f} deliveries/s)", "≤ 10 ms"),
    ("WebSocket lost updates", f"{ws.get('lost', '?')} of {ws.get('expected', '?')} (closed: {ws.get('closed', '?')})", "0"),
    ("memory per idle connection", f"{c.get('bytes_per_connection', 0) / 1024:.1f} KiB ({c.get('count', 0)} held, {c.get('still_open', 0)} open at end)", "≤ 16 KiB"),
    ("RSS with active locations", f"{a.get('rss_after_kib', 0) / 1024:.0f} MiB for {a.get('locations', 0)} × {a.get('hours', 0)} h", "≤ 1024 MiB (50k × 24 h)"),
    ("ingest, batched POST", f"{i.get('readings_per_sec', 0):.0f} readings/s accepted, {i.get('applied_per_sec', 0):.0f}/s applied end to end", "≥ 100,000/s"),
    ("Kafka topic → applied in actors", f"{k.get('readings_per_sec', 0):.0f} readings/s ({k.get('applied', 0)} readings, mock cluster)", "≥ 50,000/s"),
    ("forecast training, one place (four quantities)", f"{f.get('train_ms_median', 0):.0f} ms median, {f.get('train_ms_max') or 0:.0f} ms max ({f.get('hours', 0)} hours, {f.get('origins', 0)} origins)", "≤ 2,000 ms of one core"),
    ("one forecast (24 h, every model)", f"{f.get('forecast_us_p50', 0)} µs p50, {f.get('forecast_us_p99', 0)} µs p99", "≤ 1 ms"),
]
w = max(len(r[0]) for r in table)
for name, got, target in table:
    print(f"{name:<{w}}  {got:<70}  target {target}")
PY
