#!/usr/bin/env bash
# bench/provision: seconds from POST /v1/clusters to `active` for 1- and 3-node
# clusters on the local provider, against the bare baseline (baseline-provision.sh)
# measured in the same run, on the same machine. Prints medians and ratios.
#
#   bench/provision.sh [RUNS]        (default 3; HERD_BIN to use another binary)
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"
runs=${1:-3}
bench_init herd-bench
bench_start_dev 127.81.0.0/24

herd_once() { # NODES NAME -> seconds to active, then deletes the cluster
  local start id end
  start=$(date +%s.%N)
  id=$(api_post /v1/clusters \
    "{\"name\":\"$2\",\"datastore\":\"postgresql\",\"version\":\"15\",\"flavor\":\"local.small\",\"nodes\":$1}" \
    | json_field '["cluster"]["id"]')
  wait_cluster_status "$id" active 900
  end=$(date +%s.%N)
  # A slow run explains itself: its step history goes to stderr.
  if python3 -c "import sys; sys.exit(0 if $end - $start > ${SLOW_SECS:-12} else 1)"; then
    echo "slow run: $2 took $(python3 -c "print(f'{$end - $start:.1f}')") s; steps:" >&2
    api_get "/v1/clusters/$id/events?limit=100" | python3 -c '
import json, sys
from datetime import datetime
ev = list(reversed(json.load(sys.stdin)["items"]))
at = lambda e: datetime.fromisoformat(e["created_at"].replace("Z", "+00:00"))
for e in ev:
    msg = e["message"]
    print(f"  {(at(e) - at(ev[0])).total_seconds():6.2f}  {msg}", file=sys.stderr)' || true
  fi
  delete_cluster "$id" 0.2
  elapsed "$start" "$end"
}

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
  # shellcheck disable=SC2086 # each is one space-separated list of runs
  hm=$(median ${herd[$n]}) bm=$(median ${base[$n]})
  printf '%-8s %-28s %-28s %s\n' "$n" "median $hm [${herd[$n]# }]" "median $bm [${base[$n]# }]" "$(ratio "$hm" "$bm")"
done
