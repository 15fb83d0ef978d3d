#!/usr/bin/env bash
# The bare baseline for bench/provision.sh: what provisioning fundamentally costs on
# loopback hosts, done by hand with no API, no queue, no SSH sessions. For each node:
# its own sshd on its own address, an etcd member, a Patroni member; then wait until a
# leader runs and every replica streams. Prints the seconds that took.
#
#   baseline-provision.sh NODES PREFIX WORKDIR     (PREFIX like 127.81.9 -> .1, .2, ...)
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"
nodes=$1 prefix=$2 work=$3
pgbin=/usr/lib/postgresql/15/bin
mkdir -p "$work"
chmod 755 "$work"
pids=()
cleanup() {
  bench_kill_pidfiles "$work"/*/run/*.pid
  bench_reap "$work"
  rm -rf "$work"
}
[ -n "${BASELINE_KEEP:-}" ] || trap cleanup EXIT

cluster=""
for i in $(seq 1 "$nodes"); do cluster+="${cluster:+,}b$i=http://$prefix.$i:2380"; done
hosts=""
for i in $(seq 1 "$nodes"); do hosts+="    - $prefix.$i:2379"$'\n'; done

start=$(date +%s.%N)
for i in $(seq 1 "$nodes"); do
  (
    addr=$prefix.$i root=$work/n$i
    mkdir -p "$root"/{run,etc,log,etcd,pg,sock}
    ssh-keygen -q -t ed25519 -N '' -f "$root/etc/host_key"
    cat > "$root/etc/sshd_config" <<CFG
ListenAddress $addr:22
HostKey $root/etc/host_key
PidFile $root/run/sshd.pid
AuthorizedKeysFile none
PasswordAuthentication no
CFG
    /usr/sbin/sshd -f "$root/etc/sshd_config"
    chown -R postgres:postgres "$root"
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
  dcs: {ttl: 10, loop_wait: 2, retry_timeout: 4, postgresql: {use_pg_rewind: true, use_slots: true}}
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
CFG
    chown postgres:postgres "$root/etc/patroni.yml"
    chmod 600 "$root/etc/patroni.yml"
    runuser -u postgres -- setsid /usr/bin/etcd --name "b$i" --data-dir "$root/etcd" \
      --listen-client-urls "http://$addr:2379" --advertise-client-urls "http://$addr:2379" \
      --listen-peer-urls "http://$addr:2380" --initial-advertise-peer-urls "http://$addr:2380" \
      --initial-cluster "$cluster" --initial-cluster-token "bench-$prefix" --initial-cluster-state new \
      --enable-grpc-gateway --log-level warn </dev/null >"$root/log/etcd.log" 2>&1 &
    echo $! > "$root/run/etcd.pid"
    runuser -u postgres -- setsid /usr/bin/patroni "$root/etc/patroni.yml" </dev/null >"$root/log/patroni.log" 2>&1 &
    echo $! > "$root/run/patroni.pid"
  ) &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done

# Converged: one leader running and a streaming walsender on it for every other member
# (Patroni 3.0 reports replicas as "running"; streaming shows on the leader).
converged() {
  python3 2>/dev/null - "$prefix.1" "$nodes" <<'PY'
import json, sys, urllib.request
get = lambda url: json.load(urllib.request.urlopen(url, timeout=1))
members = get(f"http://{sys.argv[1]}:8008/cluster")["members"]
n = int(sys.argv[2])
leader = [m for m in members if m["role"] in ("leader", "master") and m["state"] == "running"]
if len(members) != n or len(leader) != 1:
    sys.exit(1)
walsenders = get(leader[0]["api_url"]).get("replication", [])
sys.exit(0 if sum(w.get("state") == "streaming" for w in walsenders) == n - 1 else 1)
PY
}
wait_until "${BASELINE_TIMEOUT:-120}" 0.1 converged || { echo "baseline did not converge" >&2; exit 1; }
end=$(date +%s.%N)
elapsed "$start" "$end"
