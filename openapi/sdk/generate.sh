#!/usr/bin/env bash
# Generates the Herd SDKs from openapi/openapi.json into openapi/sdk/out/ (never committed):
#   out/python/herd-client/   Python package `herd_client` (openapi-python-client), installed
#                             into the venv out/venv together with psycopg for the smoke program
#   out/typescript/herd.ts    TypeScript types + enums (openapi-typescript) for openapi-fetch;
#                             typescript/smoke.ts is then type-checked and compiled to typescript/dist/
# Installs its tools idempotently (a venv under out/, `npm ci` in typescript/) and fails when a
# generator reports any warning or error (HERD_SDK_ALLOW_WARNINGS=1: print them, go on).
# Usage: [HERD_OPENAPI_SPEC=other.json] openapi/sdk/generate.sh [--python-only|--typescript-only]
set -euo pipefail

SDK="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SPEC="${HERD_OPENAPI_SPEC:-$(cd "$SDK/.." && pwd)/openapi.json}"  # override to try a candidate spec
OUT="$SDK/out"
VENV="$OUT/venv"
TS="$SDK/typescript"

python=1 typescript=1
case "${1:-}" in
  "") ;;
  --python-only) typescript=0 ;;
  --typescript-only) python=0 ;;
  *) echo "usage: $0 [--python-only|--typescript-only]" >&2; exit 2 ;;
esac

die() { echo "generate.sh: $*" >&2; exit 1; }
[ -f "$SPEC" ] || die "no spec at $SPEC"
mkdir -p "$OUT"

# Runs a generator, keeping its output in out/<name>.log; fails on a non-zero exit or on any
# line that looks like a warning or an error (openapi-typescript marks them with ⚠ and ✘).
run_generator() {
  local name=$1; shift
  local log="$OUT/$name.log"
  if ! "$@" >"$log" 2>&1; then
    cat "$log" >&2
    die "$name failed"
  fi
  if grep -Eqi 'warn|error|⚠|✘' "$log"; then
    echo "---- $name output ----" >&2
    cat "$log" >&2
    if [ "${HERD_SDK_ALLOW_WARNINGS:-}" = 1 ]; then
      echo "generate.sh: $name printed warnings (allowed by HERD_SDK_ALLOW_WARNINGS=1)" >&2
    else
      die "$name printed warnings (see above; fix the spec, not the SDK)"
    fi
  fi
}

# sha256 of the given files, to install only when requirements change.
stamp_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

if [ "$python" = 1 ]; then
  command -v python3 >/dev/null || die "python3 is required"
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "Python >= 3.11 is required (the SDK uses enum.StrEnum)"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  want="$(stamp_of "$SDK/python/requirements.txt")"
  if [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$SDK/python/requirements.txt"
    echo "$want" >"$VENV/.requirements.sha256"
  fi
  # The generator runs ruff from PATH to format what it wrote (else it warns).
  PATH="$VENV/bin:$PATH" run_generator openapi-python-client \
    "$VENV/bin/openapi-python-client" generate --path "$SPEC" --output-path "$OUT/python/herd-client" \
    --overwrite --meta setup --config "$SDK/python/config.yaml"
  rm -rf "$OUT/python/herd-client/.ruff_cache"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "$OUT/python/herd-client"
  echo "python:     $OUT/python/herd-client (herd_client, installed in $VENV)"
fi

if [ "$typescript" = 1 ]; then
  command -v node >/dev/null || die "node (>= 18) is required"
  [ "$(node -p 'process.versions.node.split(".")[0]')" -ge 18 ] || die "Node >= 18 is required"
  want="$(stamp_of "$TS/package.json" "$TS/package-lock.json")"
  if [ ! -d "$TS/node_modules" ] || [ "$(cat "$TS/node_modules/.herd-sdk.sha256" 2>/dev/null)" != "$want" ]; then
    (cd "$TS" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" >"$TS/node_modules/.herd-sdk.sha256"
  fi
  mkdir -p "$OUT/typescript"
  rm -f "$OUT/typescript/herd.ts"
  # typescript/redocly.yaml: the lint rules (Redocly `minimal`) checked before generating.
  (cd "$TS" && run_generator openapi-typescript \
    node_modules/.bin/openapi-typescript "$SPEC" --redocly redocly.yaml --enum --output "$OUT/typescript/herd.ts")
  # herd.ts has real enums (runtime code): make it an ES module like the smoke program.
  echo '{ "type": "module", "private": true }' >"$OUT/typescript/package.json"
  rm -rf "$TS/dist"
  (cd "$TS" && node_modules/.bin/tsc -p tsconfig.json) || die "tsc: smoke.ts does not type-check against the generated SDK"
  echo "typescript: $OUT/typescript/herd.ts (compiled with smoke.ts into $TS/dist)"
fi
