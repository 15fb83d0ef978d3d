#!/usr/bin/env bash
# bench/provision: seconds from POST /v1/clusters to `active` for 1- and 3-node
# clusters on the local provider, against the bare baseline (baseline-provision.sh)
# measured in the same run, on the same machine. Prints medians and ratios.
#
#   bench/provision.sh [RUNS]        (default 3; HERD_BIN to use another binary)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
target=${CARGO_TARGET_DIR:-target}
cargo build -q -p herd
bin=${HERD_BIN:-$target/debug/herd}
work=$(mktemp -d /tmp/herd-bench-XXXX)
chmod 755 "$work"
dev_pid=""
cleanup() {
  [ -n "$dev_pid" ] && kill "$dev_pid" 2>/dev/null && wait "$dev_pid" 2>/dev/null || true
  # Anything the run left on its addresses (a failed delete) goes too.
  pkill -9 -f -- "$work/" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
HERD_PROVIDERS__LOCAL__ADDRESS_POOL=127.81.0.0/24 RUST_LOG=warn \
  env -u HERD_BIN "$bin" dev --listen "127.0.0.1:$port" --state-dir "$work/state" >"$work/dev.out" 2>"$work/dev.err" &
dev_pid=$!
api=http://127.0.0.1:$port
for _ in $(seq 1 200); do curl -fsS "$api/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
token=$(cat "$work/state/admin.token")
H=(-H "Authorization: Bearer $token" -H "Content-Type: application/json")

herd_once() { # NODES NAME -> seconds to active, then deletes the cluster
  local start id status end task
  start=$(date +%s.%N)
  id=$(curl -fsS "${H[@]}" -X POST "$api/v1/clusters" \
    -d "{\"name\":\"$2\",\"datastore\":\"postgresql\",\"version\":\"15\",\"flavor\":\"local.small\",\"nodes\":$1}" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["cluster"]["id"])')
  while :; do
    status=$(curl -fsS "${H[@]}" "$api/v1/clusters/$id" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
    [ "$status" = active ] && break
    [ "$status" = failed ] && { echo "cluster failed" >&2; exit 1; }
    sleep 0.05
  done
  end=$(date +%s.%N)
  # A slow run explains itself: its step history goes to stderr.
  if python3 -c "import sys; sys.exit(0 if $end - $start > ${SLOW_SECS:-12} else 1)"; then
    echo "slow run: $2 took $(python3 -c "print(f'{$end - $start:.1f}')") s; steps:" >&2
    curl -fsS "${H[@]}" "$api/v1/clusters/$id/events?limit=100" | python3 -c '
import json, sys
from datetime import datetime
ev = list(reversed(json.load(sys.stdin)["items"]))
at = lambda e: datetime.fromisoformat(e["created_at"].replace("Z", "+00:00"))
for e in ev:
    msg = e["message"]
    print(f"  {(at(e) - at(ev[0])).total_seconds():6.2f}  {msg}", file=sys.stderr)' || true
  fi
  task=$(curl -fsS "${H[@]}" -X DELETE "$api/v1/clusters/$id" | python3 -c 'import json,sys; print(json.load(sys.stdin)["task_id"])')
  until curl -fsS "${H[@]}" "$api/v1/tasks/$task" | grep -q '"status":"succeeded"'; do sleep 0.2; done
  python3 -c "print(f'{$end - $start:.2f}')"
}

median() { python3 -c 'import statistics,sys; print(f"{statistics.median(map(float, sys.argv[1:])):.2f}")' "$@"; }

declare -A herd base
for n in 1 3; do
  herd[$n]="" base[$n]=""
  for r in $(seq 1 "$runs"); do
    herd[$n]+=" $(herd_once "$n" "bench-$n-$r")"
    base[$n]+=" $(bench/baseline-provision.sh "$n" "127.81.$((10 + n * 10 + r))" "$work/base-$n-$r")"
  done
done

echo "provision bench: $runs run(s) each, $(nproc) cores, $(date -u +%F)"
printf '%-8s %-28s %-28s %s\n' nodes "herd POST->active (s)" "bare baseline (s)" "ratio (medians)"
for n in 1 3; do
  hm=$(median ${herd[$n]}) bm=$(median ${base[$n]})
  printf '%-8s %-28s %-28s %s\n' "$n" "median $hm [${herd[$n]# }]" "median $bm [${base[$n]# }]" \
    "$(python3 -c "print(f'{$hm / $bm:.2f}')")"
done
