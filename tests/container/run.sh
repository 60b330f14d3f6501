#!/usr/bin/env bash
# The container image, smoke-tested. Where podman runs (installed from Debian when
# missing and we are root), the Dockerfile's runtime stage is built on a Debian
# root filesystem made by debootstrap (cached as a tarball outside the clone) with
# the binary CI already built (VIDGATE_BINARY=prebuilt), then run: the image's own
# health check passes on /readyz and fails on a port nothing answers, a task
# created with the printed key completes and its MP4 downloads through the
# published port, and the process is not root. Where no container runtime runs,
# the same entrypoint, environment and health-check command are tested against
# the bare binary, and the output says so loudly.
# VIDGATE_CONTAINER_RUNTIME=none forces the bare-binary path.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${VIDGATE_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/vidgate}
[ -x "$bin" ] || { echo "container: no vidgate binary at $bin (set VIDGATE_BIN, or cargo build --release -p vidgate)" >&2; exit 1; }
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
if [ -z "${VIDGATE_CI_CACHE:-}" ]; then
  if [ -w /var/cache ]; then VIDGATE_CI_CACHE=/var/cache/vidgate-ci; else VIDGATE_CI_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/vidgate-ci; fi
fi
mkdir -p "$VIDGATE_CI_CACHE"

work=$(mktemp -d)
# Undone in reverse order at exit (containers, images, then the work folder that
# holds podman's configuration).
cleanup=()
trap 'for ((i = ${#cleanup[@]} - 1; i >= 0; i--)); do eval "${cleanup[i]}" >/dev/null 2>&1 || true; done; rm -rf "$work"' EXIT
t0=$SECONDS
step() { echo "container: $1 ($((SECONDS - t0)) s)"; }
fail() { echo "container: FAILED: $1" >&2; exit 1; }

# The runtime stage's settings, read from the Dockerfile itself so both paths test
# what ships: ENV, ENTRYPOINT + CMD and the HEALTHCHECK command, as JSON.
python3 - "$root/Dockerfile" >"$work/image.json" <<'PY'
import json, re, sys
text = re.sub(r"\\\n", " ", open(sys.argv[1]).read())
stage = text[text.index("AS runtime"):]
env, out = {}, {}
for line in stage.splitlines():
    word, _, rest = line.strip().partition(" ")
    if word == "ENV":
        env.update(dict(re.findall(r'(\w+)=("[^"]*"|\S+)', rest)))
    elif word in ("ENTRYPOINT", "CMD"):
        out[word.lower()] = json.loads(rest)
    elif word == "HEALTHCHECK":
        out["health"] = json.loads(rest[rest.index("CMD") + 3:].strip())
out["env"] = {k: v.strip('"') for k, v in env.items()}
print(json.dumps(out))
PY
image_cfg() { python3 -c "import json,sys; d=json.load(open('$work/image.json')); print($1)"; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
container_port=$(image_cfg 'd["env"]["VIDGATE_LISTEN"].rsplit(":", 1)[1]')

# Waits for the key line, creates a 3 s task with it, follows it to completed and
# checks the result is an MP4. $1: file holding vidgate's stdout; $2: base URL.
smoke_api() {
  local out=$1 base=$2 key='' id='' body='' status='' link=''
  for _ in $(seq 1 100); do key=$(awk '/API key:/ {print $3}' "$out"); [ -n "$key" ] && break; sleep 0.1; done
  [ -n "$key" ] || fail "no API key printed"
  body=$(curl -sS -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
    -d '{"model":"kling-v3-text-to-video","prompt":"slow zoom in over a neon city","duration":3}' "$base/v1/videos/generations")
  id=$(printf '%s' "$body" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("id", ""))')
  [ -n "$id" ] || fail "POST /v1/videos/generations with the printed key: $body"
  step "POST /v1/videos/generations with the printed key made $id"
  for _ in $(seq 1 600); do
    body=$(curl -sS -H "Authorization: Bearer $key" "$base/v1/tasks/$id")
    status=$(printf '%s' "$body" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
    case $status in completed | failed | cancelled) break ;; esac
    sleep 0.1
  done
  [ "$status" = completed ] || fail "task $id ended $status: $body"
  link=$(printf '%s' "$body" | python3 -c 'import json,sys; print(json.load(sys.stdin)["results"][0])')
  curl -sS -o "$work/result.mp4" "$link"
  [ "$(head -c 8 "$work/result.mp4" | tail -c 4)" = ftyp ] || fail "the result at $link is not an MP4"
  step "the task completed and its MP4 downloads from $link"
}

runtime=${VIDGATE_CONTAINER_RUNTIME:-podman}
why_not=''
if [ "$runtime" != podman ]; then
  why_not="VIDGATE_CONTAINER_RUNTIME=$runtime"
elif [ "$(id -u)" != 0 ]; then
  why_not="not root: podman would need rootless setup and debootstrap needs root"
else
  need=()
  for tool in podman runc debootstrap; do command -v $tool >/dev/null || need+=("$tool"); done
  if [ ${#need[@]} -gt 0 ]; then
    if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >"$work/apt.log" 2>&1; then
      step "installed ${need[*]} from Debian"
    else
      why_not="apt-get install ${need[*]} failed: $(tail -n 2 "$work/apt.log" | tr '\n' ' ')"
    fi
  fi
fi

if [ -z "$why_not" ]; then
  nofile=$(ulimit -Hn)
  [ "$nofile" = unlimited ] && nofile=1048576
  # This machine's cgroups are a v1/v2 hybrid, which crun refuses, and its hard
  # limits are below podman's defaults: runc, and limits within ours.
  cat >"$work/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=4096:4096"]
[engine]
runtime = "runc"
EOF
  export CONTAINERS_CONF="$work/containers.conf"
  limits=(--ulimit "nofile=$nofile:$nofile" --ulimit nproc=4096:4096)
  # The base: a minimal root of this machine's own Debian release (so the binary
  # built here finds the same glibc), from the mirror apt is configured with.
  . /etc/os-release
  suite=${VERSION_CODENAME:?}
  tarball="$VIDGATE_CI_CACHE/rootfs-$suite-minbase.tar"
  if [ ! -s "$tarball" ]; then
    mirror=$(python3 - "$suite" <<'PY'
import glob, re, sys
suite = sys.argv[1]
for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for stanza in open(path).read().split("\n\n"):
        f = dict(re.findall(r"^(\w[\w-]*):\s*(.+)$", stanza, re.M))
        if "deb" in f.get("Types", "").split() and suite in f.get("Suites", "").split() and "main" in f.get("Components", ""):
            print(f["URIs"].split()[0]); sys.exit()
for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
    try:
        lines = open(path).read().splitlines()
    except OSError:
        continue
    for line in lines:
        m = re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+" + re.escape(suite) + r"\s", line)
        if m:
            print(m.group(1)); sys.exit()
print("http://deb.debian.org/debian")
PY
)
    started=$SECONDS
    rootfs="$work/rootfs"
    debootstrap --variant=minbase --include=ca-certificates "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
      { tail -n 20 "$work/debootstrap.log"; fail "debootstrap $suite from $mirror"; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc \
      "$rootfs"/usr/share/man "$rootfs"/usr/share/locale
    tar --numeric-owner -C "$rootfs" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    rm -rf "$rootfs"
    step "made the $suite root filesystem with debootstrap from $mirror in $((SECONDS - started)) s, cached at $tarball"
  fi
  base="localhost/vidgate-ci-base:$suite-$$"
  image="localhost/vidgate-ci:$$"
  name="vidgate-ci-$$"
  if podman import -q "$tarball" "$base" >"$work/import.log" 2>&1 &&
    podman run --rm "${limits[@]}" "$base" true >"$work/probe.log" 2>&1; then
    cleanup+=("podman rmi -f '$base'")
    step "imported the root filesystem as $base; a container runs"
  else
    why_not="podman cannot run a container here: $(tail -n 3 "$work/import.log" "$work/probe.log" | tr '\n' ' ')"
    podman rmi -f "$base" >/dev/null 2>&1 || true
  fi
fi

if [ -z "$why_not" ]; then
  mkdir "$work/context"
  # The binary CI built, without its debug sections (the image build does the same).
  objcopy --strip-debug "$bin" "$work/context/vidgate" 2>/dev/null || cp "$bin" "$work/context/vidgate"
  cleanup+=("podman rmi -f '$image'" "podman rm -f '$name'")
  # The build's intermediate stages are ours too: untagged images newer than the base.
  cleanup+=("podman images -q --filter dangling=true --filter since='$base' | xargs -r podman rmi -f")
  podman build -q --format docker "${limits[@]}" --target runtime \
    --build-arg VIDGATE_BINARY=prebuilt --build-arg RUNTIME_IMAGE="$base" --build-arg RUST_IMAGE="$base" \
    -t "$image" -f "$root/Dockerfile" "$work/context" >"$work/build.log" 2>&1 ||
    { cat "$work/build.log"; fail "podman build of the runtime stage"; }
  step "built the runtime stage ($(podman image inspect --format '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}'))"
  # The health check's timer needs systemd; it is run by hand below instead.
  podman run -d --name "$name" --health-interval=disable -p "127.0.0.1:$port:$container_port" \
    -e VIDGATE_PUBLIC_URL="http://127.0.0.1:$port" "$image" >"$work/run.log" 2>&1 ||
    { cat "$work/run.log"; fail "podman run"; }
  healthy=''
  for _ in $(seq 1 100); do
    if podman healthcheck run "$name" >/dev/null 2>&1; then healthy=1; break; fi
    [ "$(podman inspect --format '{{.State.Running}}' "$name")" = true ] || break
    sleep 0.2
  done
  podman logs "$name" >"$work/stdout" 2>"$work/stderr" || true
  [ -n "$healthy" ] || { cat "$work/stdout" "$work/stderr"; fail "the image's health check never passed"; }
  step "the image's HEALTHCHECK passes on /readyz"
  # A health check that cannot fail proves nothing: the same command against a
  # port nothing listens on must fail.
  mapfile -t health < <(image_cfg '"\n".join(d["health"])')
  if podman exec -e VIDGATE_LISTEN=0.0.0.0:1 "$name" "${health[@]}" >/dev/null 2>&1; then
    fail "the health check passed against a port nothing listens on"
  fi
  step "the same health check fails against a port nothing listens on"
  smoke_api "$work/stdout" "http://127.0.0.1:$port"
  uid=$(podman top "$name" huser | awk 'NR == 2 {print $1}')
  [ -n "$uid" ] && [ "$uid" != 0 ] && [ "$uid" != root ] || fail "vidgate runs as '$uid' on the host"
  [ "$(podman exec "$name" id -u)" != 0 ] || fail "vidgate runs as root in the container"
  step "vidgate runs as uid $uid, not root"
  echo "container: 4 passed, 0 failed (podman, image built on debootstrap $suite, in $((SECONDS - t0)) s)"
  exit 0
fi

# No container runtime: the image's entrypoint, environment and health check
# against the bare binary, as a non-root user where we can switch to one.
cat >&2 <<EOF
container: ************************************************************************
container: NO CONTAINER RUNTIME RUNS HERE: $why_not
container: Testing the image's ENTRYPOINT, CMD, ENV and HEALTHCHECK against the bare
container: binary instead. The image itself was NOT built or run.
container: ************************************************************************
EOF
mapfile -t entry < <(image_cfg '"\n".join(d["entrypoint"] + d["cmd"])')
[ "${entry[0]}" = vidgate ] || fail "the ENTRYPOINT is '${entry[0]}', not vidgate"
mapfile -t health < <(image_cfg '"\n".join(d["health"])')
# A health check by the binary itself (`vidgate ...`) runs the binary under test.
[ "${health[0]}" = vidgate ] && health[0]=$bin
env_args=()
while IFS= read -r kv; do env_args+=("$kv"); done < <(image_cfg '"\n".join(f"{k}={v}" for k, v in d["env"].items())')
data="$work/data"
mkdir -p "$data"
as_user=()
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
  as_user=(setpriv --reuid=65534 --regid=65534 --clear-groups)
  chmod 0755 "$work"
  chown 65534:65534 "$data"
fi
# The image's environment, with the data folder and the port moved to this run's
# (the image listens on every interface; here loopback only).
unset_args=()
for v in $(compgen -e | grep '^VIDGATE_' || true); do unset_args+=(-u "$v"); done
env "${unset_args[@]}" "${env_args[@]}" VIDGATE_DATA_DIR="$data" VIDGATE_LISTEN="127.0.0.1:$port" \
  "${as_user[@]}" "$bin" "${entry[@]:1}" >"$work/stdout" 2>"$work/stderr" &
pid=$!
cleanup+=("kill $pid")
healthy=''
for _ in $(seq 1 100); do
  if VIDGATE_LISTEN="127.0.0.1:$port" "${health[@]}" >/dev/null 2>&1; then healthy=1; break; fi
  kill -0 $pid 2>/dev/null || break
  sleep 0.1
done
[ -n "$healthy" ] || { cat "$work/stdout" "$work/stderr"; fail "the image's health check never passed against the bare binary"; }
step "the image's HEALTHCHECK command passes on /readyz"
if VIDGATE_LISTEN=127.0.0.1:1 "${health[@]}" >/dev/null 2>&1; then
  fail "the health check passed against a port nothing listens on"
fi
step "the same health check fails against a port nothing listens on"
smoke_api "$work/stdout" "http://127.0.0.1:$port"
uid=$(ps -o uid= -p $pid | tr -d ' ')
if [ "$uid" = 0 ]; then
  echo "container: (vidgate ran as root: not root here to switch users)" >&2
  echo "container: 3 passed, 0 failed (NO CONTAINER RUNTIME: bare binary, in $((SECONDS - t0)) s)"
else
  step "vidgate ran as uid $uid, not root"
  echo "container: 4 passed, 0 failed (NO CONTAINER RUNTIME: bare binary, in $((SECONDS - t0)) s)"
fi
