#!/usr/bin/env bash
# The bare baseline for bench/backup.sh: what a full backup and its restore cost with
# PostgreSQL's own tools and nothing else: no API, no queue, no SSH, no Patroni, no
# pgBackRest. A bare PostgreSQL 15 instance (initdb by hand, data checksums like Herd's
# clusters, listening on PREFIX.1) holds the same pgbench data as the Herd cluster; then:
#
#   backup  = pg_basebackup -Ft -X stream --checkpoint=fast -D DIR   (uncompressed tar;
#             the WAL from the backup's start to its end is streamed into pg_wal.tar, so
#             the tar alone restores to a consistent database, as a pgBackRest backup
#             plus the WAL it archived does; fsync'd, backup_manifest with checksums;
#             data page checksums verified)
#   restore = extract base.tar and pg_wal.tar into a new data directory, start postgres
#             there (on PREFIX.2) and wait until it answers `select 1`
#             (it replays the streamed WAL and ends recovery first).
#
# Two ways to run it:
#   baseline-backup.sh RUNS PREFIX WORKDIR SCALE   all of it; prints one line per run and
#                                                  last `baseline-backup: backup S.. restore R..`
#   baseline-backup.sh start PREFIX WORKDIR SCALE  init + load, leaves PREFIX.1 running;
#                                                  prints the database size in bytes
#   baseline-backup.sh run PREFIX WORKDIR R        one backup + restore; prints
#                                                  `BACKUP_S RESTORE_S TAR_BYTES ACCOUNTS EXTRACT_S`
#                                                  (rows of pgbench_accounts restored; the
#                                                  part of RESTORE_S spent extracting)
#   baseline-backup.sh stop PREFIX WORKDIR         stops everything, removes WORKDIR
# bench/backup.sh uses start/run/stop so that its Herd and bare runs alternate.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"
pgbin=/usr/lib/postgresql/15/bin
pg() { runuser -u postgres -- "$@"; }

stop_all() { # WORKDIR
  bench_reap "$1"
  rm -rf "$1"
}

# Waits until the server on ADDR answers a query; TIMEOUT seconds at most.
wait_select() { # ADDR TIMEOUT
  wait_until "$2" 0.05 psql -h "$1" -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1 \
    || { echo "baseline: postgres on $1 did not answer within $2 s" >&2; return 1; }
}

start() { # PREFIX WORKDIR SCALE
  local prefix=$1 work=$2 scale=$3
  mkdir -p "$work"
  chmod 755 "$work"
  chown postgres:postgres "$work"
  pg mkdir -p "$work/sock" "$work/sock-restored"
  pg "$pgbin/initdb" -D "$work/src" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 --data-checksums >/dev/null
  # The settings Herd's clusters run with that matter here (replication on, wal_log_hints);
  # everything else is PostgreSQL's default on both sides.
  cat >> "$work/src/postgresql.conf" <<CONF
listen_addresses = '$prefix.1'
port = 5432
unix_socket_directories = '$work/sock'
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
wal_log_hints = on
hot_standby = on
CONF
  cat > "$work/src/pg_hba.conf" <<HBA
local all all trust
host all all 127.0.0.0/8 trust
host replication all 127.0.0.0/8 trust
HBA
  pg "$pgbin/pg_ctl" -D "$work/src" -l "$work/src.log" -w -t 120 start >/dev/null
  pgbench -h "$prefix.1" -U postgres -i -s "$scale" -I dtGvp -q postgres >"$work/pgbench-init.log" 2>&1 \
    || { cat "$work/pgbench-init.log" >&2; return 1; }
  psql -h "$prefix.1" -U postgres -d postgres -Atqc checkpoint
  psql -h "$prefix.1" -U postgres -d postgres -Atqc "select pg_database_size('postgres')"
}

run_once() { # PREFIX WORKDIR R
  local prefix=$1 work=$2 r=$3 tar=$2/tar-$3 data=$2/restored-$3 t0 t1 t2 t3 te bytes accounts
  pg mkdir -p "$tar"
  t0=$EPOCHREALTIME
  pg "$pgbin/pg_basebackup" -h "$prefix.1" -U postgres -D "$tar" -Ft -X stream --checkpoint=fast
  t1=$EPOCHREALTIME
  bytes=$(du -sb "$tar" | cut -f1)
  t2=$EPOCHREALTIME
  pg mkdir -m 0700 "$data"
  pg tar -xf "$tar/base.tar" -C "$data"
  pg tar -xf "$tar/pg_wal.tar" -C "$data/pg_wal"
  te=$EPOCHREALTIME
  pg "$pgbin/pg_ctl" -D "$data" -l "$work/restored-$r.log" \
    -o "-c listen_addresses=$prefix.2 -c unix_socket_directories=$work/sock-restored" start -W >/dev/null
  wait_select "$prefix.2" 600
  t3=$EPOCHREALTIME
  accounts=$(psql -h "$prefix.2" -U postgres -d postgres -Atqc "select count(*) from pgbench_accounts")
  pg "$pgbin/pg_ctl" -D "$data" -m immediate stop >/dev/null
  rm -rf "$tar" "$data"
  python3 -c "print(f'{$t1 - $t0:.2f} {$t3 - $t2:.2f} $bytes $accounts {$te - $t2:.2f}')"
}

case ${1:-} in
  start) start "$2" "$3" "$4" ;;
  run) run_once "$2" "$3" "$4" ;;
  stop) stop_all "$3" ;;
  [0-9]*)
    runs=$1 prefix=$2 work=$3 scale=$4
    trap 'stop_all "$work"' EXIT
    size=$(start "$prefix" "$work" "$scale")
    echo "bare database: $size bytes (pgbench scale $scale)"
    backups=() restores=()
    for r in $(seq 1 "$runs"); do
      read -r b s bytes n x < <(run_once "$prefix" "$work" "$r")
      [ "$n" = $((scale * 100000)) ] || { echo "run $r: restored $n accounts, not $((scale * 100000))" >&2; exit 1; }
      echo "run $r: backup $b s (tar $bytes bytes), restore $s s (of which extracting $x s)"
      backups+=("$b") restores+=("$s")
    done
    echo "baseline-backup: backup ${backups[*]} restore ${restores[*]}"
    ;;
  *) sed -n 2,25p "$0" >&2; exit 2 ;;
esac
