#!/usr/bin/env bash
# The API document's contract against a real vidgate: openapi-spec-validator
# (OpenAPI 3.1), Schemathesis's conformance checks over every operation, and a
# client made by openapi-python-client. The server and the fuzzer run inside a
# network namespace that has only loopback, so no fuzzed host is ever looked up
# off the machine. Tools come pinned from PyPI into a venv cached outside the
# clone; the binary is VIDGATE_BIN (default: the release build).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${VIDGATE_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/vidgate}
[ -x "$bin" ] || { echo "openapi: no vidgate binary at $bin (set VIDGATE_BIN, or cargo build --release -p vidgate)" >&2; exit 1; }
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")

if [ -z "${VIDGATE_CI_CACHE:-}" ]; then
  if [ -w /var/cache ]; then VIDGATE_CI_CACHE=/var/cache/vidgate-ci; else VIDGATE_CI_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/vidgate-ci; fi
fi
# The venv is keyed by the pins: a change of requirements.txt makes a new one.
venv="$VIDGATE_CI_CACHE/openapi-venv-$(sha256sum "$here/requirements.txt" | cut -c1-16)"
if [ ! -e "$venv/.complete" ]; then
  started=$SECONDS
  rm -rf "$venv"
  mkdir -p "$VIDGATE_CI_CACHE"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check --no-input -r "$here/requirements.txt"
  touch "$venv/.complete"
  echo "openapi: installed the pinned tools into $venv in $((SECONDS - started)) s"
fi

work=$(mktemp -d)
# VIDGATE_KEEP_WORK=1 keeps the document, the reports and the logs for a look.
if [ -n "${VIDGATE_KEEP_WORK:-}" ]; then echo "openapi: work folder $work"; else trap 'rm -rf "$work"' EXIT; fi
# A new network namespace (as root; otherwise inside a user namespace) whose only
# interface is loopback, brought up here; vidgate and Schemathesis run in it.
if [ "$(id -u)" = 0 ]; then ns=(unshare --net); else ns=(unshare --map-root-user --net); fi
"${ns[@]}" bash -c 'ip link set lo up && exec "$@"' netns \
  "$venv/bin/python" "$here/contract.py" --bin "$bin" --venv-bin "$venv/bin" --work "$work"
