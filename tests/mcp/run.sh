#!/usr/bin/env bash
# EvoLink's own client against vidgate: the MCP server @evolinkai/evolink-media
# 1.2.1 with only the base URL hard-coded in its dist/core/src/config.js changed,
# driven over stdio by @modelcontextprotocol/sdk's client (evolink.test.mjs).
# vidgate runs with zero configuration (SQLite, a temp data folder) and private
# URLs allowed so image links on 127.0.0.1 work; everything runs inside a network
# namespace that has only loopback, so nothing can reach EvoLink itself. Packages
# come pinned from the npm registry into a cache outside the clone; the binary is
# VIDGATE_BIN (default: the release build).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${VIDGATE_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/vidgate}
[ -x "$bin" ] || { echo "mcp: no vidgate binary at $bin (set VIDGATE_BIN, or cargo build --release -p vidgate)" >&2; exit 1; }
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")

if [ -z "${VIDGATE_CI_CACHE:-}" ]; then
  if [ -w /var/cache ]; then VIDGATE_CI_CACHE=/var/cache/vidgate-ci; else VIDGATE_CI_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/vidgate-ci; fi
fi
# Keyed by the lock file: a change of pins makes a new install.
mods="$VIDGATE_CI_CACHE/mcp-$(cat "$here/package.json" "$here/package-lock.json" | sha256sum | cut -c1-16)"
if [ ! -e "$mods/.complete" ]; then
  started=$SECONDS
  rm -rf "$mods"
  mkdir -p "$mods"
  cp "$here/package.json" "$here/package-lock.json" "$mods/"
  (cd "$mods" && npm ci --no-audit --no-fund --silent)
  touch "$mods/.complete"
  echo "mcp: installed the pinned packages into $mods in $((SECONDS - started)) s"
fi

work=$(mktemp -d)
if [ -n "${VIDGATE_KEEP_WORK:-}" ]; then echo "mcp: work folder $work"; else trap 'rm -rf "$work"' EXIT; fi
# The patched copy lives in the work folder; the cache stays as npm made it.
cp -a "$mods/node_modules" "$work/node_modules"
cp "$here/evolink.test.mjs" "$work/"

inside() {
  set -euo pipefail
  ip link set lo up
  local work=$1 bin=$2
  # Zero configuration (but enough credits for every model): none of the caller's
  # VIDGATE_* settings reach the server.
  local unset=()
  for v in $(compgen -e | grep '^VIDGATE_' || true); do unset+=(-u "$v"); done
  env "${unset[@]}" VIDGATE_ALLOW_PRIVATE_URLS=true VIDGATE_SIGNUP_CREDITS=1000 \
    "$bin" serve --listen 127.0.0.1:0 --data-dir "$work/data" >"$work/vidgate.stdout" 2>"$work/vidgate.stderr" &
  pid=$!
  trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT
  local url='' key=''
  for _ in $(seq 1 300); do
    url=$(awk '/playground:/ {print $2}' "$work/vidgate.stdout")
    [ -n "$url" ] && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.1
  done
  url=${url%/}
  key=$(awk '/API key:/ {print $3}' "$work/vidgate.stdout")
  [ -n "$url" ] && [ -n "$key" ] || { echo "mcp: vidgate did not start"; cat "$work/vidgate.stderr"; exit 1; }
  # The one change: the hard-coded official base URL becomes this vidgate.
  local config="$work/node_modules/@evolinkai/evolink-media/dist/core/src/config.js"
  grep -q "official: 'https://api.evolink.ai'," "$config" || { echo "mcp: $config no longer has the line to patch"; exit 1; }
  sed -i "s#official: 'https://api.evolink.ai',#official: '$url',#" "$config"
  echo "mcp: vidgate at $url; EvoLink's MCP server patched to it"
  node "$work/evolink.test.mjs" "$url" "$key" "$work/node_modules/@evolinkai/evolink-media/dist/evolink-media/src/index.js" ||
    { echo "mcp: vidgate's log:"; tail -n 40 "$work/vidgate.stderr"; exit 1; }
}
if [ "$(id -u)" = 0 ]; then ns=(unshare --net); else ns=(unshare --map-root-user --net); fi
"${ns[@]}" bash -c "$(declare -f inside); inside \"\$@\"" mcp "$work" "$bin"
