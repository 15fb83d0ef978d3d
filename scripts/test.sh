#!/usr/bin/env bash
# The whole test suite: unit, API (on SQLite and on PostgreSQL), CLI and spec drift.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/prereqs.sh
# Daemons of an interrupted earlier run would load the machine and time tests out.
scripts/stop-leftovers.sh
if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --workspace --no-fail-fast "$@"
else
  exec cargo test --workspace --no-fail-fast "$@"
fi
