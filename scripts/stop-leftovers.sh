#!/usr/bin/env bash
# Stops loopback-host processes (sshd, etcd, Patroni, PostgreSQL) that an interrupted
# test run left behind: the tests put every server root under the temp directory, and
# every process started for a server carries HERD_SERVER_ROOT=<root> in its
# environment. A killed run never reaches its cleanup; its daemons would otherwise run
# on beside the next suite (load, memory, addresses), which then times out.
# Then removes those servers' service users. Never touches a `herd dev` (its state
# directory is not under the temp directory).
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
if [ "${#pids[@]}" -gt 0 ]; then
  echo "stop-leftovers: stopping ${#pids[@]} processes of loopback servers under $tmp from an earlier run" >&2
  kill -TERM "${pids[@]}" 2>/dev/null || true
  for _ in $(seq 1 50); do
    alive=()
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive+=("$p"); done
    [ "${#alive[@]}" -eq 0 ] && break
    sleep 0.1
  done
  [ "${#alive[@]}" -gt 0 ] && kill -KILL "${alive[@]}" 2>/dev/null || true
fi

# Service users the local provider made for such servers (their account comment names
# the provider root, see providers/src/local/users.rs): an interrupted run never
# removed them. A `herd dev`'s users name a root outside the temp directory.
[ "$(id -u)" -eq 0 ] || exit 0
prefix="Herd cluster service user, provider root "
while IFS=: read -r name _ _ _ gecos _; do
  case "$name" in herd-*) ;; *) continue ;; esac
  case "$gecos" in "$prefix${tmp%/}" | "$prefix$tmp"*) ;; *) continue ;; esac
  pkill -KILL -u "$name" 2>/dev/null || true
  userdel "$name" 2>/dev/null || true
  getent group "$name" >/dev/null && groupdel "$name" 2>/dev/null || true
  echo "stop-leftovers: removed service user $name (${gecos#"$prefix"})" >&2
done < <(getent passwd)
