#!/usr/bin/env bash
# bench/failover: a forced power-off of the primary of a 3-node synchronous cluster on
# the local provider (fast HA profile), timed from the power-off request to the first
# write acknowledged by the new primary; every acknowledged write is checked for. Runs
# the bare baseline (baseline-failover.sh: etcd + Patroni by hand, same timing, kill -9
# of the primary member) in the same run, on the same machine, and prints the ratio.
#
#   bench/failover.sh [RUNS]        (default 5; HERD_BIN to use another binary;
#                                    BENCH_KEEP_LOGS=DIR keeps the logs and configs)
#
# Writer: one psql connection per insert through the cluster's multi-host primary URI
# (target_session_attrs=read-write), each acknowledged id logged with its time and the
# server that acknowledged it (inet_server_addr()).
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"
runs=${1:-5}
pool=${FAILOVER_POOL:-127.81.1.0/24}      # Herd's servers
base_prefix=${FAILOVER_BASE_PREFIX:-127.81.2} # the baseline's members: .1 .. .3
bench_init herd-bench-failover
writer_pid=""
stop_writer() { if [ -n "$writer_pid" ]; then kill "$writer_pid" 2>/dev/null || true; fi; }
bench_at_exit stop_writer
bench_keep_logs_matching "*.log" dev.err "*.yml" "*.yaml"
bench_require_free_addresses "$pool" "$base_prefix"
bench_start_dev "$pool"

cluster_json() { api_get "/v1/clusters/$id"; }
# Status, then one line per node: ID NAME ROLE STATUS STATE ADDRESS SYNC_STANDBY.
cluster_state() {
  cluster_json | py '
import json, sys
c = json.load(sys.stdin)
print(c["status"])
for n in c["nodes"]:
    print(n["id"], n["name"], n["role"], n["status"], n["state"], n["address"], n["sync_standby"])'
}
# Active, three nodes running, one primary, both replicas streaming, one of them the
# recorded synchronous standby (until then the primary's loss cannot be failed over).
healthy() {
  cluster_state | py '
import sys
lines = sys.stdin.read().split("\n")
nodes = [l.split() for l in lines[1:] if l]
ok = (lines[0] == "active" and len(nodes) == 3 and all(n[3] == "running" for n in nodes)
      and sum(n[2] == "primary" for n in nodes) == 1
      and all(n[4] == "streaming" for n in nodes if n[2] == "replica")
      and any(n[2] == "replica" and n[6] == "True" for n in nodes))
sys.exit(0 if ok else 1)'
}
wait_healthy() { # TIMEOUT
  wait_until "$1" 0.5 healthy || { echo "cluster not healthy after $1 s:" >&2; cluster_state >&2; exit 1; }
}

id=$(api_post /v1/clusters \
  '{"name":"failover","datastore":"postgresql","version":"15","flavor":"local.small","nodes":3,"synchronous":true}' \
  | json_field '["cluster"]["id"]')
wait_healthy 180
bound=$(cluster_json | py 'import json,sys; h=json.load(sys.stdin)["ha"]; print(h["ttl"] + h["loop_wait"])')
ha=$(cluster_json | py 'import json,sys; h=json.load(sys.stdin)["ha"]; print("ttl %(ttl)s, loop_wait %(loop_wait)s, retry_timeout %(retry_timeout)s" % h)')
uri=$(api_get "/v1/clusters/$id/credentials" | json_field '["uri"]')
# connect_timeout=1 (PGCONNECT_TIMEOUT), so a host that does not answer costs 1 s at most.
export PGCONNECT_TIMEOUT=1
psql "$uri" -Atqc "create table bench_failover(run int, id int, primary key (run, id))"

# Seconds between an ISO timestamp from the API and an epoch time.
since() { py "from datetime import datetime; print(f'{datetime.fromisoformat(\"$1\".replace(\"Z\", \"+00:00\")).timestamp() - $2:.2f}')"; }

times=() acked_total=0 lost_total=0 details=()
for r in $(seq 1 "$runs"); do
  read -r pid pname paddr < <(cluster_state | awk '$3 == "primary" && !seen {print $1, $2, $6; seen = 1}')
  acks=$work/acks-$r stop=$work/stop-$r
  : > "$acks"
  ack_writer "$uri" "$r" "$acks" "$stop" &
  writer_pid=$!
  until [ "$(wc -l < "$acks")" -ge 3 ]; do sleep 0.05; done
  t0=$EPOCHREALTIME
  resp=$(curl -sS -w '\n%{http_code}' "${H[@]}" -X POST "$api/v1/clusters/$id/nodes/$pid/power" -d '{"state":"off","force":true}')
  if [ "${resp##*$'\n'}" != 202 ]; then
    echo "run $r: power off of $pname answered ${resp##*$'\n'}: ${resp%$'\n'*}" >&2
    exit 1
  fi
  off_task=$(printf '%s' "${resp%$'\n'*}" | json_field '["task_id"]')
  if ! first=$(first_ack_elsewhere "$acks" "$t0" "$paddr" 90); then
    echo "run $r: no write acknowledged by a new primary within 90 s of the power-off request" >&2
    cluster_state >&2
    exit 1
  fi
  sleep 1
  touch "$stop"
  wait "$writer_pid"
  writer_pid=""
  secs=$(elapsed "$t0" "${first% *}")
  # Where the time went: queue pickup (request -> task started) and the kill itself
  # (task finished, i.e. the host's processes are gone) -> first write.
  task_done "$off_task" 0.2
  read -r started finished < <(api_get "/v1/tasks/$off_task" | py 'import json,sys; t=json.load(sys.stdin); print(t["started_at"], t["finished_at"])')
  pickup=$(since "$started" "$t0")
  fin=$(since "$finished" "$t0")
  killed_to_write=$(elapsed "$fin" "$secs")
  # A slow pickup explains itself: the cluster's history since the request, to stderr.
  if py "import sys; sys.exit(0 if $pickup > ${SLOW_PICKUP_SECS:-2} else 1)"; then
    echo "run $r: the power-off task waited $pickup s before it started; cluster events since the request:" >&2
    api_get "/v1/clusters/$id/events?limit=100" | py "
import json, sys
from datetime import datetime
at = lambda e: datetime.fromisoformat(e['created_at'].replace('Z', '+00:00')).timestamp() - $t0
for e in reversed(json.load(sys.stdin)['items']):
    if at(e) > -1:
        print(f'  {at(e):6.2f}  {e[\"message\"]}', file=sys.stderr)" || true
  fi
  last_old=$(awk -v old="$paddr" '$4 == old {t = $3} END {print t}' "$acks")
  # Every acknowledged write must be on the new primary.
  psql "$uri" -Atqc "select id from bench_failover where run = $r" | sort -n > "$work/present-$r"
  acked=$(wc -l < "$acks")
  lost=$(lost_acks "$acks" "$work/present-$r")
  times+=("$secs") acked_total=$((acked_total + acked)) lost_total=$((lost_total + lost))
  details+=("run $r: $secs s ($pname $paddr -> ${first#* }; queue pickup $pickup s, host killed -> write $killed_to_write s; last write on the old primary $(elapsed "$t0" "$last_old") s), acked $acked, lost $lost")
  echo "${details[-1]}" >&2
  # Back on; the next run starts from a healthy cluster (3 running, replicas streaming).
  on=$(curl -sS -w '\n%{http_code}' "${H[@]}" -X POST "$api/v1/clusters/$id/nodes/$pid/power" -d '{"state":"on"}')
  if [ "${on##*$'\n'}" != 202 ]; then
    echo "run $r: power on of $pname answered ${on##*$'\n'}: ${on%$'\n'*}" >&2
    exit 1
  fi
  task_done "$(printf '%s' "${on%$'\n'*}" | json_field '["task_id"]')" 0.2
  t_on=$EPOCHREALTIME
  wait_healthy 180
  echo "run $r: healthy again $(py "print(f'{$EPOCHREALTIME - $t_on:.1f}')") s after the power-on task" >&2
done

# All of it once more, after every rejoin (pg_rewind must not have lost anything either).
psql "$uri" -Atqc "select run || ' ' || id from bench_failover" | sort > "$work/present-all"
for r in $(seq 1 "$runs"); do awk -v r="$r" '{print r, $1}' "$work/acks-$r"; done | sort | comm -23 - "$work/present-all" > "$work/lost-all"
lost_end=$(wc -l < "$work/lost-all")

delete_cluster "$id" 0.2

echo "baseline ($runs runs)..." >&2
base=$(bench/baseline-failover.sh "$runs" "$base_prefix" "$work/base" | tail -1)
read -r -a b <<<"$base"   # baseline-failover: seconds S.. median M acked N lost L
base_times=("${b[@]:2:$runs}")
base_median=${b[$((runs + 3))]} base_acked=${b[$((runs + 5))]} base_lost=${b[$((runs + 7))]}

hm=$(median "${times[@]}")
echo
echo "failover bench: $runs run(s), 3 nodes, synchronous, $ha; $(nproc) cores, $(date -u +%F)"
printf '%s\n' "${details[@]}"
echo "herd  power-off request -> first write on the new primary (s): median $hm [${times[*]}]"
echo "bare  kill -9 of the primary member -> first write (s):         median $base_median [${base_times[*]}]"
echo "Patroni's bound for the profile (ttl + loop_wait): $bound s"
echo "ratio of medians herd/bare: $(ratio "$hm" "$base_median")"
echo "acknowledged writes: herd $acked_total, lost $lost_total (re-checked after every rejoin: lost $lost_end); bare $base_acked, lost $base_lost"
