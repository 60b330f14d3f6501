#!/usr/bin/env bash
# The browser tests: Debian's Chromium driven by playwright-core against a real
# vidgate on loopback: the playground (with the API key the first start prints)
# and the operator console (with the admin key). Installs what it needs.
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
touch "$log"
# No VIDGATE_* setting of the caller reaches the server; the first account gets
# enough credits for every test.
env $(env | awk -F= '/^VIDGATE_/ {print "-u " $1}') \
  "$bin" serve --listen 127.0.0.1:0 --data-dir "$data/vg" --signup-credits 5000 >"$log" 2>"$data/stderr" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do grep -q "playground:" "$log" && break; sleep 0.1; done
url=$(awk '/playground:/ {print $2}' "$log")
key=$(awk '/API key:/ {print $3}' "$log")
admin=$(awk '/admin key:/ {print $3}' "$log")
[ -n "$url" ] && [ -n "$key" ] && [ -n "$admin" ] || { echo "vidgate did not start"; cat "$data/stderr"; exit 1; }
node playground.test.js "$url" "$key"
node console.test.js "$url" "$key" "$admin"
