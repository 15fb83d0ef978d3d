#!/usr/bin/env bash
# Generates both SDKs (generate.sh), then runs the Python and the TypeScript smoke programs,
# one after the other, against a live Herd.
# Environment: HERD_URL, HERD_TOKEN (required); HERD_SMOKE_NAME (cluster name prefix, default
# sdk-smoke: the programs use <prefix>-py and <prefix>-ts); HERD_SMOKE_TIMEOUT (seconds, 300).
# Exits non-zero when generation or either program fails (both programs run regardless).
set -euo pipefail

SDK="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
: "${HERD_URL:?set HERD_URL, e.g. http://127.0.0.1:8080}"
: "${HERD_TOKEN:?set HERD_TOKEN (herd dev prints it; it is kept in .herd/admin.token)}"
prefix="${HERD_SMOKE_NAME:-sdk-smoke}"
export HERD_URL HERD_TOKEN

"$SDK/generate.sh"

status=0
run() {
  local lang=$1; shift
  local t0=$SECONDS
  echo "== $lang smoke against $HERD_URL"
  if "$@"; then
    echo "== $lang smoke passed in $((SECONDS - t0))s"
  else
    echo "== $lang smoke FAILED after $((SECONDS - t0))s" >&2
    status=1
  fi
}

run python env HERD_SMOKE_NAME="$prefix-py" "$SDK/out/venv/bin/python" "$SDK/python/smoke.py"
run typescript env HERD_SMOKE_NAME="$prefix-ts" node "$SDK/typescript/dist/typescript/smoke.js"
exit $status
