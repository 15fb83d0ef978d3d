#!/usr/bin/env bash
# The laptop setup: API + SQLite + local provider in one process (`herd dev`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/prereqs.sh
exec cargo run -q -p herd -- dev "$@"
