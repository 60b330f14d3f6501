#!/usr/bin/env bash
# The playground's browser test: Debian's Chromium driven by playwright-core
# against a real vidgate on loopback. Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x /usr/bin/chromium ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
npm install --no-audit --no-fund --silent
( cd ../.. && cargo build -q -p vidgate )
bin="${CARGO_TARGET_DIR:-../../target}/debug/vidgate"
data=$(mktemp -d)
log="$data/stdout"
"$bin" serve --listen 127.0.0.1:0 --data-dir "$data/vg" >"$log" 2>"$data/stderr" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do grep -q "playground:" "$log" && break; sleep 0.1; done
url=$(awk '/playground:/ {print $2}' "$log")
key=$(awk '/API key:/ {print $3}' "$log")
[ -n "$url" ] && [ -n "$key" ] || { echo "vidgate did not start"; cat "$data/stderr"; exit 1; }
node playground.test.js "$url" "$key"
