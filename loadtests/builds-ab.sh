#!/usr/bin/env bash
# Two builds, BEFORE and AFTER, alternately, ROUNDS times (default 3): figures move from
# run to run on this machine, so one run of each says little.
#
#   bash loadtests/builds-ab.sh current|ingest BEFORE_BINARY [AFTER_BINARY] [ROUNDS]
#
# current: /current against nginx's static file, nginx measured right before each build
#          (64 connections, 15 s each); each line gives both, the ratio, and each
#          server's CPU time per request (user + system, from /proc), which moves less
#          from run to run than the rates do.
# ingest:  batched POST /v1/readings as fast as the server takes them (batches of 5,000,
#          4 concurrent, 10 s); each line gives readings/s and the POST p50/p99.
set -euo pipefail
cd "$(dirname "$0")/.."
source loadtests/common.sh
build_release
usage="usage: builds-ab.sh current|ingest BEFORE_BINARY [AFTER_BINARY] [ROUNDS]"
scenario="${1:?$usage}"
case "$scenario" in current | ingest) ;; *) echo "$usage" >&2; exit 2 ;; esac
before=$(realpath "${2:?$usage}")
after=$(realpath "${3:-$bin/isobar}")
make_work isobar-builds-ab
secs=15
rps() { "$bin/loadtests" rest --url "$1" --connections 64 --duration-secs "$secs" | grep -o '[0-9]* req/s' | head -1 | cut -d' ' -f1; }
# CPU clock ticks (user + system) the processes have used so far.
ticks() { for p in "$@"; do cut -d')' -f2 "/proc/$p/stat"; done | awk '{t += $12 + $13} END {print t}'; }
# rps_cpu URL PID…: "REQ_PER_S MICROSECONDS_OF_CPU_PER_REQUEST" of the processes serving URL.
rps_cpu() {
  local url=$1; shift
  local t0 r t1; t0=$(ticks "$@"); r=$(rps "$url"); t1=$(ticks "$@")
  echo "$r $(python3 -c "print(f'{($t1 - $t0) * 1e6 / $(getconf CLK_TCK) / ($r * $secs):.1f}')")"
}

[ "$scenario" = current ] && nginx_serving_current "$after"
for round in $(seq "${4:-3}"); do
  for which in before after; do
    binary=$before; [ "$which" = after ] && binary=$after
    if [ "$scenario" = current ]; then
      read -r n ncpu < <(rps_cpu "http://127.0.0.1:$NGINX_PORT/current.json" $(pgrep -P "$(cat "$work/nginx.pid")"))
      start_isobar "$which-$round" "$binary"
      post_bench_reading "http://127.0.0.1:$ISOBAR_PORT"
      read -r c ccpu < <(rps_cpu "http://127.0.0.1:$ISOBAR_PORT/v1/locations/BENCH1/current" "$ISOBAR_PID")
      stop_isobar
      python3 -c "print(f'round $round, $which: {$c} vs nginx {$n} req/s = {$c / $n:.2f}×; CPU per request {$ccpu} vs nginx {$ncpu} µs')"
    else
      start_isobar "$which-$round" "$binary"
      line=$("$bin/loadtests" ingest --base "http://127.0.0.1:$ISOBAR_PORT" --batch 5000 --concurrency 4 \
        --duration-secs 10 | grep 'accepted in')
      stop_isobar
      echo "round $round, $which: $line"
    fi
  done
done
