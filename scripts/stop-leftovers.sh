#!/usr/bin/env bash
# Stops loopback-host processes (sshd, etcd, Patroni, PostgreSQL) that an interrupted
# test run left behind: the tests put every server root under the temp directory, and
# every process started for a server carries HERD_SERVER_ROOT=<root> in its
# environment. A killed run never reaches its cleanup; its daemons would otherwise run
# on beside the next suite (load, memory, addresses), which then times out.
# Never touches a `herd dev` (its state directory is not under the temp directory).
set -euo pipefail
tmp="${TMPDIR:-/tmp}"
tmp="${tmp%/}/"
pids=()
for env in /proc/[0-9]*/environ; do
  pid="${env#/proc/}"; pid="${pid%/environ}"
  [ "$pid" = "$$" ] && continue
  root="$({ tr '\0' '\n' <"$env"; } 2>/dev/null | sed -n 's/^HERD_SERVER_ROOT=//p' | head -n1)" || continue
  case "$root" in "$tmp"*) pids+=("$pid") ;; esac
done
[ "${#pids[@]}" -eq 0 ] && exit 0
echo "stop-leftovers: stopping ${#pids[@]} processes of loopback servers under $tmp from an earlier run" >&2
kill -TERM "${pids[@]}" 2>/dev/null || true
for _ in $(seq 1 50); do
  alive=()
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive+=("$p"); done
  [ "${#alive[@]}" -eq 0 ] && exit 0
  sleep 0.1
done
kill -KILL "${alive[@]}" 2>/dev/null || true
