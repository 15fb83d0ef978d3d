# shellcheck shell=bash
# bench/lib.sh: what the bench scripts share, sourced (not run) by each of them as
#   . "$(dirname "$0")/lib.sh"
# A bench and its bare baseline must be set up, timed and torn down the same way, or the
# ratio measures the harness; one copy keeps the scripts from drifting apart. Sourcing it
# only defines functions and a few globals, so the baselines still run on their own.
#
# Benches against `herd dev` (provision.sh, failover.sh, backup.sh):
#   bench_init NAME          cd to the repo root, build herd, set $bin (HERD_BIN wins) and
#                            $work (/tmp/NAME-XXXX), clean up at exit
#   bench_at_exit FUNC       run FUNC first at exit (before herd dev and $work go)
#   bench_keep_logs_matching GLOB...   files BENCH_KEEP_LOGS=DIR copies out of $work
#   bench_require_free_addresses POOL PREFIX
#   bench_start_dev POOL     start herd dev on a free port; sets $api, $dev_pid and $H
#   api_get, api_post, api_delete, json_field, task_done, wait_cluster_status,
#   delete_cluster
# Any script: bench_reap, bench_kill_pidfiles, wait_until, median, ratio, elapsed, py;
# failover.sh and its baseline: ack_writer, first_ack_elsewhere, lost_acks.

bench_cleanup_hooks=() bench_log_patterns=() dev_pid="" work=""

py() { python3 -c "$1"; }
# Median of the arguments, two decimals.
median() { python3 -c 'import statistics,sys; print(f"{statistics.median(map(float, sys.argv[1:])):.2f}")' "$@"; }
ratio() { py "print(f'{$1 / $2:.2f}')"; } # A B -> A/B, two decimals
elapsed() { py "print(f'{$2 - $1:.2f}')"; } # START END (epoch seconds) -> END-START

# Runs CMD... every INTERVAL seconds until it succeeds; 1 once TIMEOUT seconds have passed.
# The caller says what did not happen: only it knows what to print.
wait_until() { # TIMEOUT INTERVAL CMD...
  local deadline=$(( $(date +%s) + $1 )) interval=$2
  shift 2
  until "$@"; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep "$interval"
  done
}

# SIGKILL to the process whose PID each FILE holds (missing files are skipped).
bench_kill_pidfiles() { # FILE...
  local f
  for f in "$@"; do
    if [ -f "$f" ]; then kill -9 "$(cat "$f")" 2>/dev/null || true; fi
  done
}
# SIGKILL to whatever still runs from DIR (a failed run). Postmasters run in their own
# sessions and their children carry no path in argv: those go by postmaster.pid; the
# rest (sshd, etcd, Patroni, runuser) name DIR in argv.
bench_reap() { # DIR
  local f p kids
  find "$1" -name postmaster.pid 2>/dev/null | while read -r f; do
    p=$(head -1 "$f" 2>/dev/null) || continue
    [ -n "$p" ] || continue
    mapfile -t kids < <(pgrep -P "$p")
    kill -9 "${kids[@]}" "$p" 2>/dev/null || true
  done
  pkill -9 -f -- "$1/" 2>/dev/null || true
}

bench_at_exit() { bench_cleanup_hooks+=("$1"); } # FUNC
bench_keep_logs_matching() { bench_log_patterns=("$@"); } # GLOB...
bench_cleanup() {
  local hook
  for hook in "${bench_cleanup_hooks[@]}"; do "$hook" || true; done
  if [ -n "$dev_pid" ] && kill "$dev_pid" 2>/dev/null; then wait "$dev_pid" 2>/dev/null || true; fi
  bench_reap "$work"
  if [ -n "${BENCH_KEEP_LOGS:-}" ] && [ ${#bench_log_patterns[@]} -gt 0 ]; then
    local names=() p
    for p in "${bench_log_patterns[@]}"; do
      [ ${#names[@]} -eq 0 ] || names+=(-o)
      names+=(-name "$p")
    done
    local keep
    keep=$(realpath -m "$BENCH_KEEP_LOGS") # the copy runs from $work
    rm -rf "$keep"; mkdir -p "$keep"
    # cp --parents keeps each file's path under $work (cpio is not installed everywhere).
    (cd "$work" && find . \( "${names[@]}" \) -type f -exec cp --parents -p {} "$keep" \;) 2>/dev/null || true
  fi
  rm -rf "$work"
}

bench_init() { # NAME of the work dir: /tmp/NAME-XXXX
  cd "$(dirname "$0")/.." || exit
  local target=${CARGO_TARGET_DIR:-target}
  cargo build -q -p herd
  bin=${HERD_BIN:-$target/debug/herd}
  work=$(mktemp -d "/tmp/$1-XXXX")
  # The servers' and baselines' processes run as postgres and must reach their dirs.
  chmod 755 "$work"
  dev_pid=""
  trap bench_cleanup EXIT
}

# Exits if anything listens in POOL's /24 or on PREFIX.x (another bench, a leftover).
bench_require_free_addresses() { # POOL PREFIX
  local re="^(${1%.*}|$2)\.[0-9]+:"
  if ss -Hltn | awk '{print $4}' | grep -qE "$re"; then
    echo "addresses in ${1%.*}.x or $2.x are in use:" >&2
    ss -Hltn | awk '{print $4}' | grep -E "$re" >&2
    exit 1
  fi
}

bench_start_dev() { # POOL
  local port token
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  # env -u: herd reads HERD_* as its config, and HERD_BIN is only this script's.
  HERD_PROVIDERS__LOCAL__ADDRESS_POOL=$1 RUST_LOG=warn \
    env -u HERD_BIN "$bin" dev --listen "127.0.0.1:$port" --state-dir "$work/state" >"$work/dev.out" 2>"$work/dev.err" &
  dev_pid=$!
  api=http://127.0.0.1:$port
  # A loaded machine can take a while to start a debug build: wait up to 120 s.
  wait_until 120 0.1 curl -fsS "$api/healthz" >/dev/null 2>&1 || true
  [ -s "$work/state/admin.token" ] || { echo "herd dev did not start:" >&2; cat "$work/dev.err" >&2; exit 1; }
  token=$(cat "$work/state/admin.token")
  H=(-H "Authorization: Bearer $token" -H "Content-Type: application/json")
}

api_get() { curl -fsS "${H[@]}" "$api$1"; } # PATH
api_post() { curl -fsS "${H[@]}" -X POST "$api$1" -d "$2"; } # PATH BODY
api_delete() { curl -fsS "${H[@]}" -X DELETE "$api$1"; } # PATH
json_field() { py "import json,sys; print(json.load(sys.stdin)$1)"; } # EXPR like '["id"]'

# Waits until the task succeeded; exits, printing it, if it failed or was cancelled.
task_done() { # TASK_ID [POLL_SECS, default 0.05]
  local s
  while :; do
    s=$(api_get "/v1/tasks/$1" | json_field '["status"]')
    [ "$s" = succeeded ] && return 0
    case $s in failed|cancelled) echo "task $1 $s:" >&2; api_get "/v1/tasks/$1" >&2; echo >&2; exit 1 ;; esac
    sleep "${2:-0.05}"
  done
}
# Waits until the cluster has STATUS; exits, printing it, if it failed or time ran out.
wait_cluster_status() { # CLUSTER_ID STATUS TIMEOUT
  local deadline=$(( $(date +%s) + $3 )) s
  while :; do
    s=$(api_get "/v1/clusters/$1" | json_field '["status"]')
    [ "$s" = "$2" ] && return 0
    if [ "$s" = failed ] || [ "$(date +%s)" -ge "$deadline" ]; then
      echo "cluster $1 is $s, not $2:" >&2; api_get "/v1/clusters/$1" >&2; echo >&2; exit 1
    fi
    sleep 0.05
  done
}
delete_cluster() { # CLUSTER_ID [POLL_SECS] -> waits for the delete task
  local task
  task=$(api_delete "/v1/clusters/$1" | json_field '["task_id"]')
  task_done "$task" "${2:-0.05}"
}

# The failover writer, the same on both sides so both are timed alike: one insert per
# connection into bench_failover; a line per acknowledged insert: ID START END SERVER.
ack_writer() { # CONNINFO RUN OUT STOPFILE
  local i=0 s addr
  while [ ! -e "$4" ]; do
    i=$((i + 1)) s=$EPOCHREALTIME
    if addr=$(timeout 5 psql "$1" -Atqc "insert into bench_failover values ($2, $i) returning host(inet_server_addr())" 2>/dev/null); then
      echo "$i $s $EPOCHREALTIME $addr" >> "$3"
    fi
  done
}
# Prints `END SERVER` of the first write acknowledged after T0 by a server other than
# OLD_ADDR, once there is one; 1 after TIMEOUT seconds.
first_ack_elsewhere() { # ACKS T0 OLD_ADDR TIMEOUT
  local deadline=$(( $(date +%s) + $4 )) first
  until first=$(awk -v t0="$2" -v old="$3" '$4 != old && $3 > t0 {print $3, $4; exit}' "$1") && [ -n "$first" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.05
  done
  echo "$first"
}
# How many acknowledged ids (ACKS) are missing from PRESENT (sorted ids, one a line).
lost_acks() { awk '{print $1}' "$1" | sort -n | comm -23 - "$2" | wc -l; } # ACKS PRESENT
