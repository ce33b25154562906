#!/usr/bin/env bash
# What a feature costs: the same release build, run alternately with its
# `<section>.enabled` true and false, `loadtests ingest` (throughput) or `loadtests actors`
# (memory of 50,000 locations × 24 h) against each (BENCHMARKS.md).
#
#   bash loadtests/ab.sh anomalies|forecast [ROUNDS] [ingest|actors]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/isobar-target}"
cargo build --release -q -p isobar -p loadtests
bin="$CARGO_TARGET_DIR/release"
section="${1:?which feature: anomalies or forecast}"
case "$section" in anomalies | forecast) ;; *) echo "no $section.enabled to compare" >&2; exit 2 ;; esac
scenario="${3:-ingest}"
case "$scenario" in ingest | actors) ;; *) echo "no scenario $scenario: ingest or actors" >&2; exit 2 ;; esac
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
for _ in $(seq "${2:-2}"); do
  for enabled in true false; do
    work=$(mktemp -d /tmp/isobar-ab.XXXXXX)
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    ISOBAR__HTTP__PORT=$port ISOBAR__LOG__LEVEL=warn ISOBAR__LOCATIONS__IDLE_PASSIVATE_SECS=3600 \
    ISOBAR__SOURCES__OPEN_METEO__ENABLED=false ISOBAR__SOURCES__MET_NORWAY__ENABLED=false \
    ISOBAR__SOURCES__NWS__ENABLED=false ISOBAR__SOURCES__OPENWEATHERMAP__ENABLED=false \
    env "ISOBAR__${section^^}__ENABLED=$enabled" ISOBAR__PERSIST__DATA_DIR="$work" "$bin/isobar" serve >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 0.1; done
    if [ "$scenario" = ingest ]; then
      result=$("$bin/loadtests" ingest --base "http://127.0.0.1:$port" --batch 5000 --concurrency 4 --duration-secs 10 | grep 'accepted in')
    else
      result=$("$bin/loadtests" actors --base "http://127.0.0.1:$port" --locations 50000 --hours 24 --pid "$pid" | grep 'server RSS')
    fi
    echo "$section.enabled=$enabled: $result"
    kill "$pid"; wait "$pid" 2>/dev/null || true; rm -rf "$work"
  done
done
