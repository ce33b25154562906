#!/usr/bin/env bash
# The read paths side by side against one release server: REST /current, the same
# document through GraphQL, and GraphQL's typed conditions, ROUNDS times each
# (`loadtests rest`, 64 connections, 15 s; BENCHMARKS.md, GraphQL and the dashboard's
# routes). Run it at two commits to compare them.
#
#   bash loadtests/reads.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/isobar-target}"
cargo build --release -q -p isobar -p loadtests
bin="$CARGO_TARGET_DIR/release"
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
work=$(mktemp -d /tmp/isobar-reads.XXXXXX)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ISOBAR__HTTP__PORT=$port ISOBAR__LOG__LEVEL=warn ISOBAR__LOCATIONS__IDLE_PASSIVATE_SECS=3600 \
  ISOBAR__SOURCES__OPEN_METEO__ENABLED=false ISOBAR__SOURCES__MET_NORWAY__ENABLED=false \
  ISOBAR__SOURCES__NWS__ENABLED=false ISOBAR__SOURCES__OPENWEATHERMAP__ENABLED=false \
  ISOBAR__PERSIST__DATA_DIR="$work" "$bin/isobar" serve >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 0.1; done
base="http://127.0.0.1:$port"
curl -fs -XPOST "$base/v1/readings" -H 'content-type: application/json' -d "{\"location_id\":\"BENCH1\",\"source\":\"station\",\"observed_at\":\"$(date -u +%FT%TZ)\",\"temperature\":7.1,\"humidity\":64,\"pressure\":1016,\"wind_speed\":3,\"wind_direction\":230,\"visibility\":10,\"precipitation\":0,\"latitude\":40.64,\"longitude\":-73.78}" >/dev/null
load() { "$bin/loadtests" rest --connections 64 --duration-secs 15 "$@" | grep -v '^RESULT'; }
for _ in $(seq "${1:-3}"); do
  load --label current --url "$base/v1/locations/BENCH1/current"
  load --label graphql_current --url "$base/graphql" \
    --post-json '{"query":"{ location(id: \"BENCH1\") { current } }"}'
  load --label graphql_conditions --url "$base/graphql" \
    --post-json '{"query":"{ location(id: \"BENCH1\") { conditions { temperature: value(quantity: \"temperature\") stale } } }"}'
done
