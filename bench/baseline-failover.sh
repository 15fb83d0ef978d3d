#!/usr/bin/env bash
# The bare baseline for bench/failover.sh: what a crash failover fundamentally costs
# with the same Patroni timing, done by hand on loopback addresses with no API, no
# queue, no SSH. Three members (etcd + Patroni each, synchronous_mode, ttl 5,
# loop_wait 1, retry_timeout 2); then RUNS times: a writer inserts numbered rows (one
# psql connection per insert, multi-host conninfo with target_session_attrs=read-write),
# every process of the primary member gets SIGKILL at once (postgres, Patroni, its etcd:
# a power cut), and the time from the kill to the first write acknowledged by another
# member is taken; every acknowledged row is checked; the member is restarted and the
# next run waits until it streams again.
#
#   baseline-failover.sh RUNS PREFIX WORKDIR     (PREFIX like 127.81.2 -> .1, .2, .3)
#
# Prints one line per run and, last, a line failover.sh parses:
#   run R: S s (primary A -> B), acked N, lost L
#   baseline-failover: seconds S1 S2 ... median M acked N lost L
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"
runs=$1 prefix=$2 work=$3
nodes=3
pgbin=/usr/lib/postgresql/15/bin
mkdir -p "$work"
chmod 755 "$work"
writer_pid=""
cleanup() {
  if [ -n "$writer_pid" ]; then kill "$writer_pid" 2>/dev/null || true; fi
  bench_kill_pidfiles "$work"/*/run/*.pid
  bench_reap "$work"
  rm -rf "$work"
}
[ -n "${BASELINE_KEEP:-}" ] || trap cleanup EXIT

conninfo="host=$(seq -s, -f "$prefix.%g" 1 $nodes) port=5432 user=postgres password=bench-superuser dbname=postgres connect_timeout=1 target_session_attrs=read-write"
cluster=""
for i in $(seq 1 $nodes); do cluster+="${cluster:+,}b$i=http://$prefix.$i:2380"; done
hosts=""
for i in $(seq 1 $nodes); do hosts+="    - $prefix.$i:2379"$'\n'; done

start_etcd() { # I
  local addr=$prefix.$1 root=$work/n$1
  # The data directory decides: --initial-* flags are ignored on a restart.
  runuser -u postgres -- setsid /usr/bin/etcd --name "b$1" --data-dir "$root/etcd" \
    --listen-client-urls "http://$addr:2379" --advertise-client-urls "http://$addr:2379" \
    --listen-peer-urls "http://$addr:2380" --initial-advertise-peer-urls "http://$addr:2380" \
    --initial-cluster "$cluster" --initial-cluster-token "bench-$prefix" --initial-cluster-state new \
    --heartbeat-interval 100 --election-timeout 1000 \
    --enable-grpc-gateway --log-level warn </dev/null >>"$root/log/etcd.log" 2>&1 &
  echo $! > "$root/run/etcd.pid"
  disown
}
start_patroni() { # I
  local root=$work/n$1
  runuser -u postgres -- setsid /usr/bin/patroni "$root/etc/patroni.yml" </dev/null >>"$root/log/patroni.log" 2>&1 &
  echo $! > "$root/run/patroni.pid"
  disown
}

for i in $(seq 1 $nodes); do
  addr=$prefix.$i root=$work/n$i
  mkdir -p "$root"/{run,etc,log,etcd,pg,sock}
  # The same DCS timing and replication settings Herd writes for the fast profile.
  cat > "$root/etc/patroni.yml" <<CFG
scope: bench-$prefix
namespace: /bench/
name: b$i
restapi: {listen: "$addr:8008", connect_address: "$addr:8008"}
etcd3:
  protocol: http
  hosts:
$hosts
bootstrap:
  dcs:
    ttl: 5
    loop_wait: 1
    retry_timeout: 2
    maximum_lag_on_failover: 1048576
    synchronous_mode: true
    synchronous_mode_strict: false
    postgresql:
      use_pg_rewind: true
      use_slots: true
      remove_data_directory_on_rewind_failure: true
      remove_data_directory_on_diverged_timelines: true
      parameters: {wal_level: replica, hot_standby: "on", max_wal_senders: 10, max_replication_slots: 10, wal_log_hints: "on"}
  initdb: [{encoding: UTF8}, data-checksums]
postgresql:
  listen: "$addr:5432"
  connect_address: "$addr:5432"
  data_dir: $root/pg/data
  bin_dir: $pgbin
  pgpass: $root/etc/pgpass
  authentication:
    superuser: {username: postgres, password: bench-superuser}
    replication: {username: replicator, password: bench-replication}
  parameters: {unix_socket_directories: "$root/sock"}
  pg_hba:
    - local all all trust
    - host replication replicator 127.0.0.0/8 scram-sha-256
    - host all all 127.0.0.0/8 scram-sha-256
  basebackup: [{checkpoint: fast}]
watchdog: {mode: "off"}
CFG
  chown -R postgres:postgres "$root"
  chmod 600 "$root/etc/patroni.yml"
done
for i in $(seq 1 $nodes); do start_etcd "$i"; done
for i in $(seq 1 $nodes); do start_patroni "$i"; done

# Leader name (b1..b3) once one leader runs and every other member streams to it.
converged() {
  python3 2>/dev/null - "$prefix" "$nodes" <<'PY'
import json, sys, urllib.request
get = lambda url: json.load(urllib.request.urlopen(url, timeout=1))
prefix, n = sys.argv[1], int(sys.argv[2])
for i in range(1, n + 1):
    try:
        members = get(f"http://{prefix}.{i}:8008/cluster")["members"]
        break
    except Exception:
        pass
else:
    sys.exit(1)
leader = [m for m in members if m["role"] in ("leader", "master") and m["state"] == "running"]
if len(members) != n or len(leader) != 1:
    sys.exit(1)
walsenders = get(leader[0]["api_url"]).get("replication", [])
if sum(w.get("state") == "streaming" for w in walsenders) != n - 1:
    sys.exit(1)
if not any(m["role"] == "sync_standby" for m in members):
    sys.exit(1)
print(leader[0]["name"])
PY
}
wait_converged() {
  wait_until "${BASELINE_TIMEOUT:-120}" 0.2 converged >/dev/null || { echo "baseline did not converge" >&2; exit 1; }
}
wait_converged
psql "$conninfo" -Atqc "create table bench_failover(run int, id int, primary key (run, id))"

times=() acked_total=0 lost_total=0
for r in $(seq 1 "$runs"); do
  leader=$(converged) || { echo "no leader" >&2; exit 1; }
  li=${leader#b} old=$prefix.${leader#b} root=$work/n$li
  acks=$work/acks-$r stop=$work/stop-$r
  : > "$acks"
  ack_writer "$conninfo" "$r" "$acks" "$stop" &
  writer_pid=$!
  until [ "$(wc -l < "$acks")" -ge 3 ]; do sleep 0.05; done
  # Power cut: every process of the member in one kill -- etcd, Patroni (and their
  # runuser parents: argv names the member's directory), the postmaster and its children.
  pm=$(head -1 "$root/pg/data/postmaster.pid")
  victims="$(pgrep -f -- "$root/" | tr '\n' ' ') $pm $(pgrep -P "$pm" | tr '\n' ' ')"
  t0=$EPOCHREALTIME
  # shellcheck disable=SC2086 # one kill for the lot: a list of PIDs
  kill -9 $victims 2>/dev/null || true
  first=$(first_ack_elsewhere "$acks" "$t0" "$old" 60) \
    || { echo "run $r: no write accepted within 60 s of the kill" >&2; exit 1; }
  sleep 1
  touch "$stop"
  wait "$writer_pid"
  writer_pid=""
  secs=$(elapsed "$t0" "${first% *}")
  psql "$conninfo" -Atqc "select id from bench_failover where run = $r" | sort -n > "$work/present-$r"
  acked=$(wc -l < "$acks")
  lost=$(lost_acks "$acks" "$work/present-$r")
  times+=("$secs") acked_total=$((acked_total + acked)) lost_total=$((lost_total + lost))
  echo "run $r: $secs s (primary $old -> ${first#* }), acked $acked, lost $lost" >&2
  rm -f "$root/run/etcd.pid" "$root/run/patroni.pid"
  start_etcd "$li"
  start_patroni "$li"
  wait_converged
done
median=$(median "${times[@]}")
echo "baseline-failover: seconds ${times[*]} median $median acked $acked_total lost $lost_total"
