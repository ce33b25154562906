#!/usr/bin/env bash
# The cluster scenario: N isobar instances sharing a Kafka broker (tansu), Redis and
# InfluxDB on this machine, behind nginx for REST and WebSocket; WebSocket clients that
# reconnect and resume like real ones, spread over processes (a process holds at most
# 20,000 open files); readings produced to Kafka at a steady rate; and, halfway, one
# instance SIGKILLed (and restarted 20 s later, as an orchestrator would). Reports ingest→client latency, deliveries per second, updates lost
# without notice, how long the killed instance's clients went without updates, RSS per
# instance, and whether every reading the broker acked reached InfluxDB.
#
#   bash loadtests/cluster.sh [INSTANCES] [CLIENTS] [LOCATIONS] [RATE] [SECONDS]
#   (defaults: 6 100000 10000 500 180; `--smoke` runs 2 instances, 200 clients, 20 s)
#
# BACKLOG (default 4096) is the accept queue of nginx's and the instances' listeners
# (`http.backlog`); LB_BACKLOG sets nginx's alone (`LB_BACKLOG=511 BACKLOG=128` is how they
# listened before `http.backlog`).
# KEEP_WORK=1 keeps the work directory (logs, spools, InfluxDB's data); HOLD=SECONDS keeps
# everything running that long after the run, for a look at the instances' /metrics.
#
# Needs what scripts/test installs (redis-server, influxd, tansu) and nginx (run.sh
# installs nginx-light).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--smoke" ]; then
  set -- 2 200 50 50 20
fi
INSTANCES=${1:-6}
CLIENTS=${2:-100000}
LOCATIONS=${3:-10000}
RATE=${4:-500}
SECONDS_=${5:-180}
PER_PROCESS=15000
BACKLOG=${BACKLOG:-4096}
LB_BACKLOG=${LB_BACKLOG:-$BACKLOG}
PARTITIONS=$((INSTANCES * 2))

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/isobar-target}"
cargo build --release --quiet -p isobar -p loadtests
bin="$CARGO_TARGET_DIR/release"
tansu="$(command -v tansu || echo "${CARGO_HOME:-$HOME/.cargo}/bin/tansu")"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  [ -n "${KEEP_WORK:-}" ] && echo "kept $work" || rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing on port $1" >&2; exit 1; }

echo "== backends: redis, influxdb, a Kafka broker (${BROKER:-mock}, $PARTITIONS partitions)"
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
pids+=($!)
influx_port=$(free_port); influx_rpc=$(free_port)
mkdir -p "$work/influx"
cat >"$work/influx/influxdb.conf" <<EOF
reporting-disabled = true
bind-address = "127.0.0.1:$influx_rpc"
[meta]
  dir = "$work/influx/meta"
  logging-enabled = false
[data]
  dir = "$work/influx/data"
  wal-dir = "$work/influx/wal"
  query-log-enabled = false
  trace-logging-enabled = false
[http]
  bind-address = "127.0.0.1:$influx_port"
  log-enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
EOF
influxd -config "$work/influx/influxdb.conf" >"$work/influx.log" 2>&1 &
pids+=($!)
# The broker: librdkafka's mock cluster by default. tansu 0.6.0 (BROKER=tansu) serves the
# readings but does not take a dead member out of the group: the killed instance's
# partitions are never reassigned (and with static membership the group stops
# rebalancing altogether), so the kill cannot be measured on it.
if [ "${BROKER:-mock}" = tansu ]; then
  kafka_port=$(free_port)
  mkdir -p "$work/tansu"
  (cd "$work/tansu" && exec "$tansu" broker --listener-url "tcp://127.0.0.1:$kafka_port" \
    --advertised-listener-url "tcp://127.0.0.1:$kafka_port" --storage-engine sqlite://tansu.db) >"$work/tansu.log" 2>&1 &
  pids+=($!)
  wait_port "$kafka_port"
  for spec in "isobar.readings:$PARTITIONS" "isobar.readings.dlq:1" "isobar.updates:$PARTITIONS"; do
    "$tansu" topic create "${spec%%:*}" --partitions "${spec##*:}" --broker "tcp://127.0.0.1:$kafka_port" >/dev/null
  done
  brokers="127.0.0.1:$kafka_port"
else
  "$bin/loadtests" mock-broker --partitions "$PARTITIONS" --out "$work/brokers" >"$work/mock-broker.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do [ -s "$work/brokers" ] && break; sleep 0.1; done
  brokers=$(cat "$work/brokers")
fi
wait_port "$redis_port"; wait_port "$influx_port"

echo "== $INSTANCES isobar instances"
# tansu answers a fetch only when fetch.wait.max.ms has passed, not when a message comes
# (a real Kafka broker answers at once: fetch.min.bytes is 1): without this, the
# readings wait half a second (librdkafka's default 500 ms) at the broker.
cat >"$work/kafka.toml" <<EOF
[kafka.properties]
"fetch.wait.max.ms" = "${FETCH_WAIT_MS:-20}"
EOF
ports=(); ipids=()
start_instance() {
  local i=$1 port=$2
  ISOBAR__HTTP__PORT=$port ISOBAR__LOG__LEVEL="${ISOBAR_LOG:-warn,isobar::actors::kafka=info}" ISOBAR__LOCATIONS__IDLE_PASSIVATE_SECS=3600 \
  ISOBAR__SOURCES__OPEN_METEO__ENABLED=false ISOBAR__SOURCES__OPEN_METEO_AIR_QUALITY__ENABLED=false \
  ISOBAR__SOURCES__MET_NORWAY__ENABLED=false ISOBAR__SOURCES__NWS__ENABLED=false \
  ISOBAR__SOURCES__OPENWEATHERMAP__ENABLED=false ISOBAR__FORECAST__ENABLED=false \
  ISOBAR__REDIS__URL="redis://127.0.0.1:$redis_port" ISOBAR__INFLUX__URL="http://127.0.0.1:$influx_port" \
  ISOBAR__KAFKA__BROKERS="$brokers" \
  ISOBAR__AUTH__MAX_WS_PER_IP=1000000 ISOBAR__HTTP__BACKLOG="$BACKLOG" \
  ISOBAR__HTTP__TRUSTED_PROXIES='["127.0.0.1/32"]' \
  ISOBAR__PERSIST__DATA_DIR="$work/spool-$i" \
    "$bin/isobar" serve --config "$work/kafka.toml" >"$work/isobar-$i.log" 2>&1 &
  ipids[$i]=$!
  pids+=($!)
}
for i in $(seq 0 $((INSTANCES - 1))); do
  ports[$i]=$(free_port)
  start_instance "$i" "${ports[$i]}"
done
for p in "${ports[@]}"; do wait_port "$p"; done

echo "== nginx in front"
lb_port=$(free_port)
workers=$(( (CLIENTS * 2) / 18000 + 1 ))
# A connection from 127.0.0.1 to one address and port takes one of the kernel's ~28,000
# ephemeral ports (32768-60999): past that, connect() spins looking for a free one (perf:
# __inet_check_established) and the clients starve. So nginx listens on one loopback
# address per 12,000 clients (127.0.0.1, .2, ...), and the clients spread over them.
addresses=$(( CLIENTS / 12000 + 1 ))
urls=$(for a in $(seq 1 "$addresses"); do printf 'ws://127.0.0.%s:%s/v1/ws\n' "$a" "$lb_port"; done | paste -sd, -)
{
  echo "worker_processes $workers; worker_rlimit_nofile 20000; pid $work/nginx.pid; error_log $work/nginx-error.log warn;"
  echo "events { worker_connections 19000; }"
  echo "http { access_log off; map \$http_upgrade \$connection_upgrade { default upgrade; '' ''; }"
  # zone: least_conn counts across every worker, not each its own. max_conns: an instance
  # holds at most ~19,900 sockets (20,000 open files), so with one killed the others do
  # not take more than they can; a client turned away backs off and tries again.
  echo "  upstream isobar { least_conn; zone isobar 256k;"
  for p in "${ports[@]}"; do echo "    server 127.0.0.1:$p max_fails=1 fail_timeout=2s max_conns=19000;"; done
  echo "    keepalive 64; }"
  echo "  server {"
  # reuseport: the kernel spreads connections evenly over the workers. backlog: nginx's 511
  # overflows when thousands reconnect at once (as isobar's listener did at 128).
  for a in $(seq 1 "$addresses"); do echo "    listen 127.0.0.$a:$lb_port reuseport backlog=$LB_BACKLOG;"; done
  echo "    location / { proxy_pass http://isobar; proxy_http_version 1.1;"
  echo "    proxy_set_header Upgrade \$http_upgrade; proxy_set_header Connection \$connection_upgrade;"
  echo "    proxy_set_header X-Forwarded-For \$remote_addr; proxy_read_timeout 1h; proxy_next_upstream error timeout http_502 http_503; } } }"
} >"$work/nginx.conf"
"$NGINX" -c "$work/nginx.conf" -p "$work" -e "$work/nginx-error.log"
wait_port "$lb_port"

"$bin/loadtests" cluster-stations --base "http://127.0.0.1:$lb_port" --count "$LOCATIONS"
sleep 3   # the stations travel through Kafka to their owners

echo "== $CLIENTS clients over $LOCATIONS locations, $RATE readings/s for ${SECONDS_} s; instance 0 killed halfway"
# The kernel's count of connections dropped because a listener's accept queue was full
# (the whole machine's; TcpExt ListenOverflows in /proc/net/netstat).
listen_overflows() {
  awk '/^TcpExt:/ { if (!n) { n = split($0, k) } else { split($0, v); for (i = 1; i <= n; i++) if (k[i] == "ListenOverflows") print v[i] } }' /proc/net/netstat
}
overflows_from=$(listen_overflows)
procs=$(( (CLIENTS + PER_PROCESS - 1) / PER_PROCESS ))
ramp=$(( CLIENTS / 1000 + 10 ))   # seconds the clients get to connect before the readings
# Latencies from the kill on go to a second histogram: the steady state is reported apart.
split_ms=$(( ($(date +%s) + ramp + SECONDS_ / 2) * 1000 ))
cpids=()
for j in $(seq 0 $((procs - 1))); do
  first=$((j * PER_PROCESS)); n=$PER_PROCESS
  [ $((first + n)) -gt "$CLIENTS" ] && n=$((CLIENTS - first))
  "$bin/loadtests" cluster-clients --url "$urls" --clients "$n" --first "$first" \
    --locations "$LOCATIONS" --duration-secs $((ramp + SECONDS_ + 10)) --split-at-unix-ms "$split_ms" \
    >"$work/clients-$j.out" 2>&1 &
  cpids+=($!); pids+=($!)
done
sleep "$ramp"
produce_from=$(date -u +%Y-%m-%dT%H:%M:%SZ)
"$bin/loadtests" cluster-produce --brokers "$brokers" --locations "$LOCATIONS" --rate "$RATE" \
  --duration-secs "$SECONDS_" >"$work/produce.out" 2>&1 &
producer=$!; pids+=($!)
sleep $((SECONDS_ / 2))
rss_before=$(for i in $(seq 0 $((INSTANCES - 1))); do ps -o rss= -p "${ipids[$i]}" | tr -d ' '; done | paste -sd, -)
echo "   SIGKILL instance 0 (pid ${ipids[0]}) at $(date -u +%T); restarted ${RESTART_AFTER:-20} s later on its own spool"
kill -9 "${ipids[0]}"
# From the kill to the end: the longest nginx's accept queues (summed over its listeners)
# grew, sampled every 2 s. Needs `ss` (iproute2); without it the report says null.
if command -v ss >/dev/null; then
  ( peak=0; while true; do
      q=$(ss -ltnH "sport = :$lb_port" | awk '{s += $2} END {print s + 0}')
      [ "$q" -gt "$peak" ] && { peak=$q; echo "$peak" >"$work/lb-queue-peak"; }
      sleep 2
    done ) &
  sampler=$!; pids+=($!)
fi
# An orchestrator restarts it (Kubernetes, on the same emptyDir): it replays what its
# spool held for a backend, and rejoins the group. Its clients went elsewhere meanwhile.
sleep "${RESTART_AFTER:-20}"
start_instance 0 "${ports[0]}"
wait "$producer" || { cat "$work/produce.out"; exit 1; }
for p in "${cpids[@]}"; do wait "$p" || true; done
overflows=$(( $(listen_overflows) - overflows_from ))
lb_queue_peak=null
if [ -n "${sampler:-}" ]; then
  kill "$sampler" 2>/dev/null || true
  lb_queue_peak=$(cat "$work/lb-queue-peak" 2>/dev/null || echo 0)
fi
cat "$work/produce.out" | grep -v '^RESULT' || true

# Every reading the broker acked must be in InfluxDB (the survivors took the killed
# instance's partitions over and re-consumed what it had not committed).
sleep 5; [ -n "${HOLD:-}" ] && { echo "holding: $work ports ${ports[*]} redis $redis_port influx $influx_port"; sleep "$HOLD"; }
stored=0
for _ in $(seq 30); do
  stored=$(curl -s -G "http://127.0.0.1:$influx_port/query" --data-urlencode "db=isobar" \
    --data-urlencode "q=SELECT count(temperature) FROM readings WHERE location =~ /^CLU/ AND source = 'station' AND time >= '$produce_from'" |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["results"][0]; print(r["series"][0]["values"][0][1] if "series" in r else 0)')
  acked=$(grep '^RESULT' "$work/produce.out" | cut -c8- | python3 -c 'import json,sys; print(json.load(sys.stdin)["acked"])')
  [ "$stored" -ge "$acked" ] && break
  sleep 2
done

python3 - "$work" "$INSTANCES" "$CLIENTS" "$LOCATIONS" "$RATE" "$SECONDS_" "$stored" "$rss_before" "$overflows" "$lb_queue_peak" <<'EOF'
import glob, json, sys
work, instances, clients, locations, rate, seconds, stored, rss, overflows, lb_queue_peak = sys.argv[1:11]
rs = []
for f in sorted(glob.glob(f"{work}/clients-*.out")):
    lines = [l for l in open(f) if l.startswith("RESULT ")]
    if not lines:
        print(open(f).read()); sys.exit(f"a client process reported nothing: {f}")
    rs.append(json.loads(lines[-1][7:]))
produced = json.loads([l for l in open(f"{work}/produce.out") if l.startswith("RESULT ")][-1][7:])
def merged(key):
    counts = {}
    for r in rs:
        for value, count in r[key]:
            counts[value] = counts.get(value, 0) + count
    return counts
def pcts(counts):
    total = sum(counts.values())
    out, seen, marks = {}, 0, [("p50", 0.5), ("p99", 0.99), ("p999", 0.999), ("max", 1.0)]
    for value in sorted(counts):
        seen += counts[value]
        while marks and seen >= marks[0][1] * total:
            out[marks.pop(0)[0]] = round(value / 1000, 2)
    return out
steady, after = merged("histogram_us"), merged("histogram_after_us")
s = lambda k: sum(r[k] for r in rs)
# A by-reason count summed over the client processes.
tallied = lambda k: {key: sum(r.get(k, {}).get(key, 0) for r in rs) for key in sorted({c for r in rs for c in r.get(k, {})})}
summary = {
    "instances": int(instances), "clients": int(clients), "subscribed": s("subscribed"), "locations": int(locations),
    "rate": float(rate), "seconds": float(seconds), "updates": s("updates"),
    "deliveries_per_sec": round(s("updates") / float(seconds)),
    "latency_ms_before_kill": pcts(steady), "latency_ms_after_kill": pcts(after),
    "lost_unannounced": s("lost"), "missed_announced": s("missed_announced"), "resets": s("resets"),
    "disconnects": s("disconnects"), "reconnects": s("reconnects"),
    "errors": tallied("errors"), "closes": tallied("closes"), "connect_failures": tallied("connect_failures"),
    "listen_overflows": int(overflows), "lb_accept_queue_peak_after_kill": json.loads(lb_queue_peak),
    "recovery_ms": {"worst": max(r["worst_gap_ms"] for r in rs),
                    "mean": round(sum(r["mean_gap_ms"] * r["gaps"] for r in rs) / max(1, s("gaps")))},
    "readings_acked": produced["acked"], "readings_in_influxdb": int(stored),
    "readings_lost": max(0, produced["acked"] - int(stored)),
    "rss_kib_before_kill": [int(x) for x in rss.split(",") if x],
}
print(f"cluster: {summary['subscribed']}/{clients} clients on {instances} instances, {summary['updates']} updates "
      f"({summary['deliveries_per_sec']}/s); ingest→client before the kill {summary['latency_ms_before_kill']}, "
      f"from the kill on {summary['latency_ms_after_kill']} (ms); lost without notice "
      f"{summary['lost_unannounced']}, announced missed {summary['missed_announced']}; {summary['disconnects']} "
      f"disconnects, every client had updates again within {summary['recovery_ms']['worst']} ms "
      f"(mean {summary['recovery_ms']['mean']} ms); readings acked {produced['acked']}, in InfluxDB {stored}; "
      f"errors {summary['errors']}; connections ended by {summary['closes']}; "
      f"failed connects {summary['connect_failures']}; connections dropped by a full accept queue "
      f"{summary['listen_overflows']}; nginx's accept queues after the kill peaked at "
      f"{summary['lb_accept_queue_peak_after_kill']}")
print("RESULT " + json.dumps(summary))
# The two promises a kill must not break: every reading the broker acked is stored, and
# no client misses an update without being told. Either broken fails the run (and CI's
# smoke run).
if summary["readings_lost"] or summary["lost_unannounced"]:
    sys.exit(f"broken: {summary['readings_lost']} acked readings not in InfluxDB, "
             f"{summary['lost_unannounced']} updates lost without notice")
EOF
