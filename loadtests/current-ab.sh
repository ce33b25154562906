#!/usr/bin/env bash
# /current against nginx's static file, BEFORE and AFTER alternately, ROUNDS times (one
# single.sh run is one round; the ratio moves from round to round, so more than one).
#
#   bash loadtests/current-ab.sh BEFORE_BINARY [AFTER_BINARY] [ROUNDS]
#
# Each line: the round, which binary, its req/s and nginx's right before it (64
# connections, 15 s each).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/isobar-target}"
cargo build --release -q -p isobar -p loadtests
bin="$CARGO_TARGET_DIR/release"
before=$(realpath "${1:?usage: current-ab.sh BEFORE_BINARY [AFTER_BINARY] [ROUNDS]}")
after=$(realpath "${2:-$bin/isobar}")
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
source loadtests/common.sh
make_work isobar-current-ab
rps() { "$bin/loadtests" rest --url "$1" --connections 64 --duration-secs 15 | grep -o '[0-9]* req/s' | head -1 | cut -d' ' -f1; }

start_isobar doc "$after"
post_bench_reading "http://127.0.0.1:$ISOBAR_PORT"
mkdir -p "$work/www"
curl -fs "http://127.0.0.1:$ISOBAR_PORT/v1/locations/BENCH1/current" >"$work/www/current.json"
stop_isobar
start_nginx "$work/www"
for round in $(seq "${3:-3}"); do
  for which in before after; do
    binary=$before; [ "$which" = after ] && binary=$after
    n=$(rps "http://127.0.0.1:$NGINX_PORT/current.json")
    start_isobar "$which-$round" "$binary"
    post_bench_reading "http://127.0.0.1:$ISOBAR_PORT"
    c=$(rps "http://127.0.0.1:$ISOBAR_PORT/v1/locations/BENCH1/current")
    stop_isobar
    python3 -c "print(f'round $round, $which: {$c} vs nginx {$n} req/s = {$c / $n:.2f}×')"
  done
done
