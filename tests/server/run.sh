#!/usr/bin/env bash
# ctest "server_browser" (label browser): the official openai npm client and the page in headless
# Chromium against `xcaption serve`. Exit 77 (skipped) when node, npm or chromium is missing or the
# npm packages cannot be installed.
# Usage: tests/server/run.sh XCAPTION MODEL_DIR IMAGE ARTIFACT_DIR
set -euo pipefail
cli=$1 model=$2 image=$3 artifacts=$4
here=$(cd "$(dirname "$0")" && pwd)
chromium=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if ! command -v node >/dev/null || ! command -v npm >/dev/null || [[ -z $chromium ]]; then
  echo "skipped: needs node, npm and chromium (tools/install-deps.sh --with-tests)"; exit 77
fi
if [[ ! -d $here/node_modules/openai || ! -d $here/node_modules/playwright-core ]]; then
  (cd "$here" && npm ci --no-audit --no-fund >/dev/null 2>&1) || {
    echo "skipped: npm ci in tests/server failed (no registry?)"; exit 77; }
fi
mkdir -p "$artifacts"
work=$(mktemp -d)
pid=
cleanup() { [[ -n $pid ]] && kill -9 "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

expected=$("$cli" caption --threads 1 --model "$model" "$image")
key=browser-test-key
"$cli" serve --port 0 --threads 1 --model "$model" --api-key "$key" 2>"$work/stderr" &
pid=$!
url=
for _ in $(seq 600); do
  url=$(grep -o 'xcaption: serving http://[0-9.]*:[0-9]*' "$work/stderr" | sed 's/xcaption: serving //' || true)
  [[ -n $url ]] && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/stderr"; echo "the server exited"; exit 1; }
  sleep 0.1
done
[[ -n $url ]] || { cat "$work/stderr"; echo "no URL printed"; exit 1; }

node "$here/openai_client.mjs" "$url" "$key" "$image" "$expected"
node "$here/page.mjs" "$url" "$key" "$image" "$expected" "$artifacts/page.png" "$chromium"
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
pid=
[[ $status -eq 0 ]] || { cat "$work/stderr"; echo "serve exited $status after SIGTERM"; exit 1; }
echo "server_browser: ok; screenshot in $artifacts/page.png"
