# vidgate in a container: a Rust builder stage and a small Debian runtime stage
# that holds only the vidgate binary and CA certificates, runs as a non-root user
# and answers its health check on /readyz.
#
#   docker build -t vidgate .
#   docker run -p 8080:8080 -v vidgate-data:/var/lib/vidgate -e VIDGATE_PUBLIC_URL=http://localhost:8080 vidgate
#
# Base images are build arguments so a mirror or a local copy can stand in
# (tests/container/run.sh builds on a Debian root filesystem made by debootstrap).
# VIDGATE_BINARY=prebuilt takes ./vidgate from the build context instead of
# compiling (CI, which has built the binary already):
#   podman build --format docker --build-arg VIDGATE_BINARY=prebuilt -f Dockerfile CONTEXT
ARG RUST_IMAGE=docker.io/library/rust:1.95-bookworm
ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim
ARG VIDGATE_BINARY=source

FROM ${RUST_IMAGE} AS source
# openh264's assembly needs nasm; the image already has gcc and g++.
RUN apt-get update \
 && apt-get install -y --no-install-recommends nasm \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
# No debug info in the shipped binary (symbols stay, for backtraces); the cache
# mounts keep crates and objects between builds.
ENV CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=debuginfo
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p vidgate \
 && install -D -m 0755 target/release/vidgate /out/vidgate

FROM scratch AS prebuilt
COPY vidgate /out/vidgate

FROM ${VIDGATE_BINARY} AS binary

FROM ${RUNTIME_IMAGE} AS runtime
# CA certificates for the upstream providers and S3 over TLS; libstdc++ for the
# encoder (slim Debian has it already, through apt). A base that already has both
# (a debootstrap root with ca-certificates) needs no package index.
RUN if [ ! -e /etc/ssl/certs/ca-certificates.crt ] || ! ldconfig -p | grep -q 'libstdc++\.so\.6 '; then \
      apt-get update \
      && apt-get install -y --no-install-recommends ca-certificates libstdc++6 \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
 && groupadd --gid 10001 vidgate \
 && useradd --uid 10001 --gid 10001 --home-dir /var/lib/vidgate --no-create-home --shell /usr/sbin/nologin vidgate \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/vidgate
COPY --from=binary /out/vidgate /usr/local/bin/vidgate
USER 10001:10001
WORKDIR /var/lib/vidgate
# Listen on every interface inside the container; set VIDGATE_PUBLIC_URL to the
# address clients use, or links will name the container's own address.
ENV VIDGATE_LISTEN=0.0.0.0:8080 \
    VIDGATE_DATA_DIR=/var/lib/vidgate
VOLUME ["/var/lib/vidgate"]
EXPOSE 8080
# Ready when /readyz answers 200 (the database answers). The slim image has no
# curl, so bash speaks HTTP/1.0 over /dev/tcp to the port VIDGATE_LISTEN names.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${VIDGATE_LISTEN##*:} && printf 'GET /readyz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && read -r _ code _ <&3 && [ \"$code\" = 200 ]"]
ENTRYPOINT ["vidgate"]
CMD ["serve"]
