# Helpers shared by the load scripts (sourced, not run). `build_release` sets `bin` (the
# release directory holding `loadtests` and `isobar`); `make_work` sets `work` (a scratch
# directory), `results` (a file collecting RESULT lines) and `pids` (the processes to
# stop at exit).

# make_work PREFIX: a scratch directory under /tmp, removed at exit with every process
# started (nginx included).
make_work() {
  work=$(mktemp -d "/tmp/$1.XXXXXX")
  chmod 755 "$work"
  results="$work/results"
  : >"$results"
  pids=()
  trap cleanup EXIT
}

cleanup() {
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}

# build_release: this checkout's release builds of isobar and loadtests, in
# $CARGO_TARGET_DIR (outside the clone, so repeat runs are quick); sets `bin` to where
# they are and raises this shell's open-files limit for the connection scenarios.
build_release() {
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/isobar-target}"
  cargo build --release -q -p isobar -p loadtests
  bin="$CARGO_TARGET_DIR/release"
  ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_isobar NAME [BINARY]: a fresh instance with the demo replay off, logs to
# $work/NAME.log; sets ISOBAR_PORT and ISOBAR_PID.
start_isobar() {
  local port; port=$(free_port)
  ISOBAR__HTTP__PORT=$port ISOBAR__LOG__LEVEL=warn ISOBAR__LOCATIONS__IDLE_PASSIVATE_SECS=3600 \
  ISOBAR__SOURCES__OPEN_METEO__ENABLED=false ISOBAR__SOURCES__MET_NORWAY__ENABLED=false \
  ISOBAR__SOURCES__NWS__ENABLED=false ISOBAR__SOURCES__OPENWEATHERMAP__ENABLED=false \
  ISOBAR__PERSIST__DATA_DIR="$work/spool-$1" \
    "${2:-$bin/isobar}" serve >"$work/$1.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 0.1; done
  ISOBAR_PORT=$port; ISOBAR_PID=$pid
}

stop_isobar() { kill "$ISOBAR_PID" 2>/dev/null || true; wait "$ISOBAR_PID" 2>/dev/null || true; }

# run ARGS…: one scenario; its human lines are shown, its RESULT line collected (with
# $LABEL, when set, added as "label"). A scenario that fails stops the run with its output.
run() {
  if ! "$bin/loadtests" "$@" >"$work/last" 2>&1; then
    cat "$work/last"
    echo "scenario failed: loadtests $*" >&2
    exit 1
  fi
  grep -v '^RESULT' "$work/last" || true
  grep '^RESULT' "$work/last" | tail -1 | cut -c8- | LABEL="${LABEL:-}" python3 -c '
import json, os, sys
r = json.loads(sys.stdin.read())
if os.environ["LABEL"]:
    r["label"] = os.environ["LABEL"]
print(json.dumps(r))' >>"$results"
}

# start_nginx FILE_DIR: nginx serving FILE_DIR's files on loopback (2 workers, the
# reference server); sets NGINX_PORT.
start_nginx() {
  local nginx; nginx=$(command -v nginx || echo /usr/sbin/nginx)
  NGINX_PORT=$(free_port)
  cat >"$work/nginx.conf" <<CONF
worker_processes 2;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / { root $1; default_type application/json; }
  }
}
CONF
  "$nginx" -c "$work/nginx.conf"
  sleep 0.3
}

# post_bench_reading BASE: the warm location the /current scenarios read.
post_bench_reading() {
  curl -fs -XPOST "$1/v1/readings" -H 'content-type: application/json' -d "{\"location_id\":\"BENCH1\",\"source\":\"station\",\"observed_at\":\"$(date -u +%FT%TZ)\",\"temperature\":7.1,\"humidity\":64,\"pressure\":1016,\"wind_speed\":3,\"wind_direction\":230,\"visibility\":10,\"precipitation\":0,\"latitude\":40.64,\"longitude\":-73.78}" >/dev/null
}

# nginx_serving_current BINARY: nginx serving /current of the warm location as BINARY
# shows it (the reference the /current scenarios compare with); sets NGINX_PORT.
nginx_serving_current() {
  start_isobar doc "$1"
  post_bench_reading "http://127.0.0.1:$ISOBAR_PORT"
  mkdir -p "$work/www"
  curl -fs "http://127.0.0.1:$ISOBAR_PORT/v1/locations/BENCH1/current" >"$work/www/current.json"
  stop_isobar
  start_nginx "$work/www"
}
