#!/usr/bin/env bash
# Headless Chromium test of the `zeroclip serve` web page (issue 7). Installs Debian's chromium
# and playwright-core when missing, starts the server on a free loopback port with the tiny
# fixture model, runs tests/browser/page.test.mjs, then stops the server with SIGTERM (which must
# exit cleanly: graceful shutdown).
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
if ! [ -x /usr/bin/chromium ]; then
  $sudo apt-get update
  $sudo apt-get install -y chromium chromium-driver
fi
if ! [ -d tests/browser/node_modules/playwright-core ]; then
  (cd tests/browser && npm ci --no-audit --no-fund)
fi

cargo build -p zeroclip-cli
log="$(mktemp)"
"${CARGO_TARGET_DIR:-target}"/debug/zeroclip serve --model tests/fixtures/model/hf_real_vocab --addr 127.0.0.1:0 >"$log" 2>&1 &
pid=$!
cleanup() {
  if kill -0 "$pid" 2>/dev/null; then kill "$pid"; wait "$pid" || true; fi
  rm -f "$log"
}
trap cleanup EXIT

url=""
for _ in $(seq 1 300); do
  url="$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$log" | head -n 1 || true)"
  [ -n "$url" ] && break
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "ci_browser_test: the server exited:" >&2
    cat "$log" >&2
    exit 1
  fi
  sleep 0.1
done
if [ -z "$url" ]; then
  echo "ci_browser_test: the server did not start in 30 s:" >&2
  cat "$log" >&2
  exit 1
fi

ZEROCLIP_URL="$url" node tests/browser/page.test.mjs tests/fixtures/model/tiny.png

kill -TERM "$pid"
if ! wait "$pid"; then
  echo "ci_browser_test: the server did not shut down cleanly:" >&2
  cat "$log" >&2
  exit 1
fi
echo "ci_browser_test: ok"
