#!/usr/bin/env bash
# bench/backup: a full backup of a ~1 GiB pgbench database and its restore into a new
# cluster, through Herd's API on the local provider, against raw pg_basebackup -Ft and a
# raw restore of that tar (baseline-backup.sh) on a bare PostgreSQL 15 with the same
# data, in the same run on the same machine; Herd and bare runs alternate. Prints every
# run, the medians and the ratios herd/raw.
#
#   bench/backup.sh [RUNS]     (default 3; HERD_BIN to use another binary; BACKUP_SCALE
#                               sets the pgbench scale, default 70 = ~1.03 GiB;
#                               BENCH_KEEP_LOGS=DIR keeps the logs and configs)
#
# Herd backup  = POST /v1/clusters/{id}/backups {"type":"full"} -> its task `succeeded`.
# Herd restore = POST /v1/clusters {"restore": {source_cluster_id, backup_id}} -> the new
#                cluster `active`; this also provisions a server (volume, sshd, etcd, ...),
#                so the restore step alone is printed too: from the end of `start_etcd`
#                (Patroni starts, its custom bootstrap runs `pgbackrest restore`,
#                PostgreSQL recovers from the archive and is promoted) to the end of
#                `wait_converged` (Patroni reports the leader running), from the task's
#                events. The restored cluster's `init_backups` and `finalize` come after.
# Raw backup   = pg_basebackup -Ft -X stream --checkpoint=fast (see baseline-backup.sh).
# Raw restore  = extract the tar, start postgres, first `select 1`.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"
runs=${1:-3}
pool=${BACKUP_POOL:-127.81.3.0/24}          # Herd's servers
base_prefix=${BACKUP_BASE_PREFIX:-127.81.4} # the bare instance .1, its restores .2
scale=${BACKUP_SCALE:-70}
bench_init herd-bench-backup
bench_keep_logs_matching "*.log" dev.err "*.yml" "*.conf"
bench_require_free_addresses "$pool" "$base_prefix"
bench_start_dev "$pool"

# A loopback server's root (it shares this filesystem): where its pgBackRest config is.
server_root() { # CLUSTER_NAME
  local f
  f=$(find "$work/state" -path "*/etc/pgbackrest/15-$1.conf" -print -quit)
  [ -n "$f" ] || { echo "no server root found for $1" >&2; exit 1; }
  echo "${f%/etc/pgbackrest/*}"
}
# psql as postgres over the node's own socket (peer), as the manager does.
node_psql() { # ROOT SQL
  runuser -u postgres -- psql -h "$1/var/run/postgresql" -U postgres -d postgres -Atqc "$2"
}
# pgBackRest's own duration of its last COMMAND in LOG (ms -> s).
pgbr_secs() { # LOG COMMAND
  grep -h "$2 command end: completed successfully" "$1" 2>/dev/null | tail -1 \
    | sed -E 's/.*\(([0-9]+)ms\).*/\1/' | awk '{printf "%.2f", $1 / 1000}'
}

# ---- the source cluster and its data ----
create='{"datastore":"postgresql","version":"15","flavor":"local.small","nodes":1'
src=$(api_post /v1/clusters "$create,\"name\":\"bench-src\"}" | json_field '["cluster"]["id"]')
wait_cluster_status "$src" active 300
uri=$(api_get "/v1/clusters/$src/credentials" | json_field '["uri"]')
src_root=$(server_root bench-src)
# pgBackRest's tuning as Herd wrote it (no paths, no repository options).
pgbr_conf=$(grep -vE '^#|^$|-path=|^repo1-(type|retention)|^pg1-|^\[herd-' "$src_root/etc/pgbackrest/15-bench-src.conf" | paste -sd' ')
echo "loading pgbench scale $scale into Herd's cluster and into the bare instance..." >&2
# Server-side generation (G), vacuum (v), primary keys (p): the same on both sides.
pgbench -i -s "$scale" -I dtGvp -q "$uri" >"$work/pgbench-herd.log" 2>&1 || { cat "$work/pgbench-herd.log" >&2; exit 1; }
node_psql "$src_root" checkpoint
herd_size=$(psql "$uri" -Atqc "select pg_database_size(current_database())")
# The load's WAL must be archived before the first backup, or that backup would wait
# for the archiver's backlog.
archived() { [ "$(node_psql "$src_root" "select count(*) from pg_ls_archive_statusdir() where name like '%.ready'")" = 0 ]; }
wait_until 900 1 archived || { echo "WAL archiving did not catch up in 900 s" >&2; exit 1; }
accounts=$((scale * 100000))

bare_size=$(bench/baseline-backup.sh start "$base_prefix" "$work/base" "$scale" | tail -1)
if [ "$herd_size" -lt 1073741824 ] || [ "$bare_size" -lt 1073741824 ]; then
  echo "the databases are under 1 GiB (herd $herd_size, bare $bare_size bytes): raise BACKUP_SCALE" >&2
  exit 1
fi

hb=() hbs=() hbp=() hr=() hrs=() hrp=() rb=() rr=() details=()
for r in $(seq 1 "$runs"); do
  # Herd: full backup.
  t0=$EPOCHREALTIME
  resp=$(api_post "/v1/clusters/$src/backups" '{"type":"full"}')
  task_done "$(printf '%s' "$resp" | json_field '["task_id"]')"
  t1=$EPOCHREALTIME
  bid=$(printf '%s' "$resp" | json_field '["backup"]["id"]')
  read -r label size repo_size < <(api_get "/v1/backups/$bid" | py 'import json,sys; b=json.load(sys.stdin); print(b["label"], b["size_bytes"], b["repo_size_bytes"])')
  step=$(api_get "/v1/clusters/$src/events?limit=20" | py '
import json, re, sys
for e in json.load(sys.stdin)["items"]:
    m = re.search(r"backup done in ([0-9.]+)s", e["message"])
    if e["step"] == "backup" and m:
        print(m.group(1)); break')
  pgbr=$(pgbr_secs "$(ls "$src_root"/var/log/pgbackrest/*-backup.log)" backup)
  hb+=("$(elapsed "$t0" "$t1")") hbs+=("$step") hbp+=("$pgbr")

  # Herd: restore into a new cluster.
  name=bench-restore-$r
  t2=$EPOCHREALTIME
  rid=$(api_post /v1/clusters \
    "$create,\"name\":\"$name\",\"restore\":{\"source_cluster_id\":\"$src\",\"backup_id\":\"$bid\"}}" | json_field '["cluster"]["id"]')
  wait_cluster_status "$rid" active 900
  t3=$EPOCHREALTIME
  # Steps of the build, in order, with their end times relative to the POST.
  steps=$(api_get "/v1/clusters/$rid/events?limit=100" | py "
import json, sys
from datetime import datetime
at = lambda e: datetime.fromisoformat(e['created_at'].replace('Z', '+00:00')).timestamp() - $t2
ev = [e for e in reversed(json.load(sys.stdin)['items']) if e['step']]
print(' '.join(f'{e[\"step\"]}={at(e):.2f}' for e in ev))")
  restore_step=$(py "
s = dict(kv.split('=') for kv in '$steps'.split())
print(f\"{float(s['wait_converged']) - float(s['start_etcd']):.2f}\")")
  r_root=$(server_root "$name")
  pgbr_r=$(pgbr_secs "$(ls "$r_root"/var/log/pgbackrest/*-restore.log)" restore)
  # Inside the restore step, from the restored server's own logs (same clock), seconds
  # after the POST: pgbackrest restore begins and ends, postgres starts and accepts
  # connections (recovery from the archive done, promoted), Patroni initialised the
  # cluster (post_bootstrap done) and took the leader key.
  inside=$(py "
import re
from datetime import datetime, timezone
def first(path, pattern, fmt):
    for line in open(path, errors='replace'):
        if re.search(pattern, line):
            t = datetime.strptime(line[:23], fmt).replace(tzinfo=timezone.utc).timestamp()
            return f'{t - $t2:.2f}'
    return '?'
log = '$r_root/var/log/postgresql'
pgbr = [f for f in __import__('glob').glob('$r_root/var/log/pgbackrest/*-restore.log')][0]
print(' '.join([
    'pgbackrest_restore=' + first(pgbr, 'restore command begin', '%Y-%m-%d %H:%M:%S.%f') + '..' + first(pgbr, 'restore command end', '%Y-%m-%d %H:%M:%S.%f'),
    'postgres_start=' + first(f'{log}/postgresql-15-$name.log', 'starting PostgreSQL', '%Y-%m-%d %H:%M:%S.%f'),
    'postgres_ready=' + first(f'{log}/postgresql-15-$name.log', 'ready to accept connections', '%Y-%m-%d %H:%M:%S.%f'),
    'patroni_initialized=' + first(f'{log}/patroni-15-$name.log', 'initialized a new cluster', '%Y-%m-%d %H:%M:%S,%f'),
]))")
  ruri=$(api_get "/v1/clusters/$rid/credentials" | json_field '["uri"]')
  n=$(psql "$ruri" -Atqc "select count(*) from pgbench_accounts")
  [ "$n" = "$accounts" ] || { echo "run $r: the restored cluster has $n accounts, not $accounts" >&2; exit 1; }
  delete_cluster "$rid"
  hr+=("$(elapsed "$t2" "$t3")") hrs+=("$restore_step") hrp+=("$pgbr_r")

  # Raw: pg_basebackup and its restore.
  read -r b s tar_bytes n x < <(bench/baseline-backup.sh run "$base_prefix" "$work/base" "$r")
  [ "$n" = "$accounts" ] || { echo "run $r: the raw restore has $n accounts, not $accounts" >&2; exit 1; }
  rb+=("$b") rr+=("$s")

  details+=("run $r: herd backup ${hb[-1]} s (backup step ${hbs[-1]} s, pgbackrest backup ${hbp[-1]} s; $label, size $size, repo $repo_size bytes) | herd restore ${hr[-1]} s (restore step ${hrs[-1]} s, pgbackrest restore ${hrp[-1]} s; steps ending at [s]: $steps; inside: $inside) | raw backup $b s (tar $tar_bytes bytes), raw restore $s s (extract $x s)")
  echo "${details[-1]}" >&2
done
delete_cluster "$src"
bench/baseline-backup.sh stop "$base_prefix" "$work/base"

m_hb=$(median "${hb[@]}") m_hbs=$(median "${hbs[@]}") m_hbp=$(median "${hbp[@]}")
m_hr=$(median "${hr[@]}") m_hrs=$(median "${hrs[@]}") m_hrp=$(median "${hrp[@]}")
m_rb=$(median "${rb[@]}") m_rr=$(median "${rr[@]}")
echo
echo "backup bench: $runs run(s), pgbench scale $scale (herd $herd_size bytes, bare $bare_size bytes); $(nproc) cores, $(date -u +%F)"
echo "pgBackRest settings (paths and repository left out): $pgbr_conf"
printf '%s\n' "${details[@]}"
printf '%-44s %s\n' \
  "herd backup, POST -> task succeeded (s):" "median $m_hb [${hb[*]}]" \
  "  of which the backup step (s):" "median $m_hbs [${hbs[*]}]" \
  "  of which pgbackrest backup itself (s):" "median $m_hbp [${hbp[*]}]" \
  "raw pg_basebackup -Ft -X stream (s):" "median $m_rb [${rb[*]}]" \
  "herd restore, POST -> active (s):" "median $m_hr [${hr[*]}]" \
  "  of which the restore step (s):" "median $m_hrs [${hrs[*]}]" \
  "  of which pgbackrest restore itself (s):" "median $m_hrp [${hrp[*]}]" \
  "raw restore, extract -> select 1 (s):" "median $m_rr [${rr[*]}]"
echo "ratios of medians herd/raw (target <= 1.1):"
echo "  backup:  API $(ratio "$m_hb" "$m_rb"), backup step $(ratio "$m_hbs" "$m_rb"), pgbackrest alone $(ratio "$m_hbp" "$m_rb")"
echo "  restore: API $(ratio "$m_hr" "$m_rr"), restore step $(ratio "$m_hrs" "$m_rr"), pgbackrest restore alone $(ratio "$m_hrp" "$m_rr")"
