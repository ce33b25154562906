#!/usr/bin/env bash
# What a feature costs: the same release build, run alternately with its
# `<section>.enabled` true and false, `loadtests ingest` (throughput) or `loadtests actors`
# (memory of 50,000 locations × 24 h) against each (BENCHMARKS.md).
#
#   bash loadtests/ab.sh anomalies|forecast [ROUNDS] [ingest|actors]
set -euo pipefail
cd "$(dirname "$0")/.."
source loadtests/common.sh
build_release
section="${1:?which feature: anomalies or forecast}"
case "$section" in anomalies | forecast) ;; *) echo "no $section.enabled to compare" >&2; exit 2 ;; esac
scenario="${3:-ingest}"
case "$scenario" in ingest | actors) ;; *) echo "no scenario $scenario: ingest or actors" >&2; exit 2 ;; esac
make_work isobar-ab
for round in $(seq "${2:-2}"); do
  for enabled in true false; do
    export "ISOBAR__${section^^}__ENABLED=$enabled"
    start_isobar "$section-$enabled-$round"
    base="http://127.0.0.1:$ISOBAR_PORT"
    if [ "$scenario" = ingest ]; then
      result=$("$bin/loadtests" ingest --base "$base" --batch 5000 --concurrency 4 --duration-secs 10 | grep 'accepted in')
    else
      result=$("$bin/loadtests" actors --base "$base" --locations 50000 --hours 24 --pid "$ISOBAR_PID" | grep 'server RSS')
    fi
    echo "$section.enabled=$enabled: $result"
    stop_isobar
  done
done
