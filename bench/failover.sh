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
cd "$(dirname "$0")/.."
runs=${1:-5}
pool=${FAILOVER_POOL:-127.81.1.0/24}      # Herd's servers
base_prefix=${FAILOVER_BASE_PREFIX:-127.81.2} # the baseline's members: .1 .. .3
target=${CARGO_TARGET_DIR:-target}
cargo build -q -p herd
bin=${HERD_BIN:-$target/debug/herd}
work=$(mktemp -d /tmp/herd-bench-failover-XXXX)
chmod 755 "$work"
dev_pid="" writer_pid=""
cleanup() {
  [ -n "$writer_pid" ] && kill "$writer_pid" 2>/dev/null || true
  [ -n "$dev_pid" ] && kill "$dev_pid" 2>/dev/null && wait "$dev_pid" 2>/dev/null || true
  # Whatever the servers still run (a failed run). Postmasters run in their own
  # sessions and their children carry no path in argv: kill those by postmaster.pid.
  find "$work" -name postmaster.pid 2>/dev/null | while read -r f; do
    p=$(head -1 "$f" 2>/dev/null) || continue
    [ -n "$p" ] && kill -9 $(pgrep -P "$p") "$p" 2>/dev/null || true
  done
  pkill -9 -f -- "$work/" 2>/dev/null || true
  if [ -n "${BENCH_KEEP_LOGS:-}" ]; then
    rm -rf "$BENCH_KEEP_LOGS"; mkdir -p "$BENCH_KEEP_LOGS"
    (cd "$work" && find . \( -name "*.log" -o -name "dev.err" -o -name "*.yml" -o -name "*.yaml" \) -print0 | cpio -0pdm --quiet "$BENCH_KEEP_LOGS") 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# The addresses must be free (another bench, a leftover cluster).
if ss -Hltn | awk '{print $4}' | grep -qE "^(${pool%.*}|$base_prefix)\.[0-9]+:"; then
  echo "addresses in ${pool%.*}.x or $base_prefix.x are in use:" >&2
  ss -Hltn | awk '{print $4}' | grep -E "^(${pool%.*}|$base_prefix)\.[0-9]+:" >&2
  exit 1
fi

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
HERD_PROVIDERS__LOCAL__ADDRESS_POOL=$pool RUST_LOG=warn \
  env -u HERD_BIN "$bin" dev --listen "127.0.0.1:$port" --state-dir "$work/state" >"$work/dev.out" 2>"$work/dev.err" &
dev_pid=$!
api=http://127.0.0.1:$port
# A loaded machine can take a while to start a debug build: wait up to 120 s.
for _ in $(seq 1 1200); do curl -fsS "$api/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
[ -s "$work/state/admin.token" ] || { echo "herd dev did not start:" >&2; cat "$work/dev.err" >&2; exit 1; }
token=$(cat "$work/state/admin.token")
H=(-H "Authorization: Bearer $token" -H "Content-Type: application/json")

py() { python3 -c "$1"; }
cluster_json() { curl -fsS "${H[@]}" "$api/v1/clusters/$id"; }
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
  local deadline=$(( $(date +%s) + $1 ))
  until healthy; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "cluster not healthy after $1 s:" >&2
      cluster_state >&2
      exit 1
    fi
    sleep 0.5
  done
}
task_done() { # TASK_ID -> waits; fails on a failed task
  local s
  while :; do
    s=$(curl -fsS "${H[@]}" "$api/v1/tasks/$1" | py 'import json,sys; print(json.load(sys.stdin)["status"])')
    [ "$s" = succeeded ] && return 0
    case $s in failed|cancelled) echo "task $1 $s:" >&2; curl -sS "${H[@]}" "$api/v1/tasks/$1" >&2; exit 1 ;; esac
    sleep 0.2
  done
}

id=$(curl -fsS "${H[@]}" -X POST "$api/v1/clusters" \
  -d '{"name":"failover","datastore":"postgresql","version":"15","flavor":"local.small","nodes":3,"synchronous":true}' \
  | py 'import json,sys; print(json.load(sys.stdin)["cluster"]["id"])')
wait_healthy 180
bound=$(cluster_json | py 'import json,sys; h=json.load(sys.stdin)["ha"]; print(h["ttl"] + h["loop_wait"])')
ha=$(cluster_json | py 'import json,sys; h=json.load(sys.stdin)["ha"]; print("ttl %(ttl)s, loop_wait %(loop_wait)s, retry_timeout %(retry_timeout)s" % h)')
uri=$(curl -fsS "${H[@]}" "$api/v1/clusters/$id/credentials" | py 'import json,sys; print(json.load(sys.stdin)["uri"])')
# connect_timeout=1 (PGCONNECT_TIMEOUT), so a host that does not answer costs 1 s at most.
export PGCONNECT_TIMEOUT=1
psql "$uri" -Atqc "create table bench_failover(run int, id int, primary key (run, id))"

# One insert per connection; a line per acknowledged insert: ID START END SERVER.
writer() { # RUN OUT STOPFILE
  local i=0 s addr
  while [ ! -e "$3" ]; do
    i=$((i + 1)) s=$EPOCHREALTIME
    if addr=$(timeout 5 psql "$uri" -Atqc "insert into bench_failover values ($1, $i) returning host(inet_server_addr())" 2>/dev/null); then
      echo "$i $s $EPOCHREALTIME $addr" >> "$2"
    fi
  done
}
# Seconds between an ISO timestamp from the API and an epoch time.
since() { py "from datetime import datetime; print(f'{datetime.fromisoformat(\"$1\".replace(\"Z\", \"+00:00\")).timestamp() - $2:.2f}')"; }

times=() acked_total=0 lost_total=0 details=()
for r in $(seq 1 "$runs"); do
  read -r pid pname paddr < <(cluster_state | awk '$3 == "primary" && !seen {print $1, $2, $6; seen = 1}')
  acks=$work/acks-$r stop=$work/stop-$r
  : > "$acks"
  writer "$r" "$acks" "$stop" &
  writer_pid=$!
  until [ "$(wc -l < "$acks")" -ge 3 ]; do sleep 0.05; done
  t0=$EPOCHREALTIME
  resp=$(curl -sS -w '\n%{http_code}' "${H[@]}" -X POST "$api/v1/clusters/$id/nodes/$pid/power" -d '{"state":"off","force":true}')
  if [ "${resp##*$'\n'}" != 202 ]; then
    echo "run $r: power off of $pname answered ${resp##*$'\n'}: ${resp%$'\n'*}" >&2
    exit 1
  fi
  off_task=$(printf '%s' "${resp%$'\n'*}" | py 'import json,sys; print(json.load(sys.stdin)["task_id"])')
  deadline=$(( $(date +%s) + 90 ))
  until first=$(awk -v t0="$t0" -v old="$paddr" '$4 != old && $3 > t0 {print $3, $4; exit}' "$acks") && [ -n "$first" ]; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "run $r: no write acknowledged by a new primary within 90 s of the power-off request" >&2
      cluster_state >&2
      exit 1
    fi
    sleep 0.05
  done
  sleep 1
  touch "$stop"
  wait "$writer_pid"
  writer_pid=""
  secs=$(py "print(f'{${first% *} - $t0:.2f}')")
  # Where the time went: queue pickup (request -> task started) and the kill itself
  # (task finished, i.e. the host's processes are gone) -> first write.
  task_done "$off_task"
  read -r started finished < <(curl -fsS "${H[@]}" "$api/v1/tasks/$off_task" | py 'import json,sys; t=json.load(sys.stdin); print(t["started_at"], t["finished_at"])')
  pickup=$(since "$started" "$t0")
  fin=$(since "$finished" "$t0")
  killed_to_write=$(py "print(f'{$secs - $fin:.2f}')")
  # A slow pickup explains itself: the cluster's history since the request, to stderr.
  if py "import sys; sys.exit(0 if $pickup > ${SLOW_PICKUP_SECS:-2} else 1)"; then
    echo "run $r: the power-off task waited $pickup s before it started; cluster events since the request:" >&2
    curl -fsS "${H[@]}" "$api/v1/clusters/$id/events?limit=100" | py "
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
  lost=$(awk '{print $1}' "$acks" | sort -n | comm -23 - "$work/present-$r" | wc -l)
  times+=("$secs") acked_total=$((acked_total + acked)) lost_total=$((lost_total + lost))
  details+=("run $r: $secs s ($pname $paddr -> ${first#* }; queue pickup $pickup s, host killed -> write $killed_to_write s; last write on the old primary $(py "print(f'{$last_old - $t0:.2f}')") s), acked $acked, lost $lost")
  echo "${details[-1]}" >&2
  # Back on; the next run starts from a healthy cluster (3 running, replicas streaming).
  on=$(curl -sS -w '\n%{http_code}' "${H[@]}" -X POST "$api/v1/clusters/$id/nodes/$pid/power" -d '{"state":"on"}')
  if [ "${on##*$'\n'}" != 202 ]; then
    echo "run $r: power on of $pname answered ${on##*$'\n'}: ${on%$'\n'*}" >&2
    exit 1
  fi
  task_done "$(printf '%s' "${on%$'\n'*}" | py 'import json,sys; print(json.load(sys.stdin)["task_id"])')"
  t_on=$EPOCHREALTIME
  wait_healthy 180
  echo "run $r: healthy again $(py "print(f'{$EPOCHREALTIME - $t_on:.1f}')") s after the power-on task" >&2
done

# All of it once more, after every rejoin (pg_rewind must not have lost anything either).
psql "$uri" -Atqc "select run || ' ' || id from bench_failover" | sort > "$work/present-all"
for r in $(seq 1 "$runs"); do awk -v r="$r" '{print r, $1}' "$work/acks-$r"; done | sort | comm -23 - "$work/present-all" > "$work/lost-all"
lost_end=$(wc -l < "$work/lost-all")

task=$(curl -fsS "${H[@]}" -X DELETE "$api/v1/clusters/$id" | py 'import json,sys; print(json.load(sys.stdin)["task_id"])')
task_done "$task"

echo "baseline ($runs runs)..." >&2
base=$(bench/baseline-failover.sh "$runs" "$base_prefix" "$work/base" | tail -1)
read -r -a b <<<"$base"   # baseline-failover: seconds S.. median M acked N lost L
base_times=("${b[@]:2:$runs}")
base_median=${b[$((runs + 3))]} base_acked=${b[$((runs + 5))]} base_lost=${b[$((runs + 7))]}

median() { python3 -c 'import statistics,sys; print(f"{statistics.median(map(float, sys.argv[1:])):.2f}")' "$@"; }
hm=$(median "${times[@]}")
echo
echo "failover bench: $runs run(s), 3 nodes, synchronous, $ha; $(nproc) cores, $(date -u +%F)"
printf '%s\n' "${details[@]}"
echo "herd  power-off request -> first write on the new primary (s): median $hm [${times[*]}]"
echo "bare  kill -9 of the primary member -> first write (s):         median $base_median [${base_times[*]}]"
echo "Patroni's bound for the profile (ttl + loop_wait): $bound s"
echo "ratio of medians herd/bare: $(py "print(f'{$hm / $base_median:.2f}')")"
echo "acknowledged writes: herd $acked_total, lost $lost_total (re-checked after every rejoin: lost $lost_end); bare $base_acked, lost $base_lost"
