#!/usr/bin/env bash
# Installs and starts what Herd's dev mode and test suite need on a Debian bookworm
# machine. Idempotent: installs only what is missing, starts only what is down.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# Build: ssh2 links OpenSSL and zlib. Servers: the packages every managed node runs.
# stunnel4: TLS in front of moto's S3 in the backup tests (pgBackRest speaks only https).
PACKAGES=(build-essential pkg-config libssl-dev zlib1g-dev curl ca-certificates python3-pip iproute2
          postgresql-15 postgresql-client-15 redis-server openssh-server
          patroni etcd-server pgbackrest
          stunnel4)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "prereqs: installing ${missing[*]}"
  $SUDO apt-get update -qq
  # Daemons are started by Herd (or below), not by package scripts.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -o DPkg::Lock::Timeout=300 "${missing[@]}" >/dev/null
fi

# The SDK test generates clients and runs them: Python with venv, Node.js with npm
# (Debian's nodejs is 18, enough; a newer one already installed is kept).
sdk_missing=()
python3 -c 'import venv, ensurepip' 2>/dev/null || sdk_missing+=(python3-venv)
command -v node >/dev/null 2>&1 || sdk_missing+=(nodejs)
command -v npm >/dev/null 2>&1 || sdk_missing+=(npm)
if [ "${#sdk_missing[@]}" -gt 0 ]; then
  echo "prereqs: installing ${sdk_missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -o DPkg::Lock::Timeout=300 "${sdk_missing[@]}" >/dev/null
fi

# moto[server] mocks EC2 and S3 for the provider and backup tests.
if ! command -v moto_server >/dev/null 2>&1; then
  echo "prereqs: installing moto[server]"
  python3 -m pip install -q 'moto[server]' 2>/dev/null || python3 -m pip install -q --break-system-packages 'moto[server]'
fi

# The machine's PostgreSQL (tests create one database each) and Redis (the queue).
if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  echo "prereqs: starting PostgreSQL"
  $SUDO pg_ctlcluster --skip-systemctl-redirect 15 main start
  for _ in $(seq 1 60); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 0.5; done
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "prereqs: starting Redis"
  $SUDO mkdir -p /var/lib/redis /var/log/redis
  $SUDO redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 1 60); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.5; done
fi
# Tests connect as the postgres superuser over TCP without a password (trust), as on
# this project's machines; say so clearly if that is not the case here.
if ! psql -h 127.0.0.1 -U postgres -d postgres -tAc 'select 1' >/dev/null 2>&1; then
  echo "prereqs: cannot connect as postgres@127.0.0.1 without a password;" \
       "set HERD_TEST_POSTGRES_URL to a superuser URL" >&2
fi
