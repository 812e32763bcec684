#!/usr/bin/env bash
# Build the Dockerfile with buildah where no container registry can be reached (air-gapped
# hosts, this project's test machines): the two base images it names are made locally,
# `debian:bookworm-slim` with debootstrap from a Debian mirror, and `rust:1-bookworm` from that
# plus rustup, then tagged under the names the Dockerfile uses, so the Dockerfile itself is
# built unchanged. Needs root, apt and network access to the Debian mirror,
# static.rust-lang.org and crates.io.
#
#   scripts/build-image-without-registry.sh [TAG]     # default localhost/gatehouse:latest
#
# CA_BUNDLE (default /etc/ssl/certs/ca-certificates.crt) is mounted into every build step, for
# networks that inspect TLS with their own CA.
set -euo pipefail

tag=${1:-localhost/gatehouse:latest}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
ca=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

need=()
command -v buildah >/dev/null || need+=(buildah)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v podman >/dev/null || need+=(podman)
if ((${#need[@]})); then
  apt-get update -q && apt-get install -y -q "${need[@]}"
fi
# Without a container runtime's rlimit rights (unprivileged containers), chroot isolation
# still runs each RUN step.
build=(buildah bud --isolation chroot --pull=never -v "$ca:/egress-ca.crt:ro")

if ! buildah inspect --type image localhost/debian:bookworm-slim >/dev/null 2>&1; then
  debootstrap --variant=minbase bookworm "$work/rootfs" "$mirror"
  rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb
  tar -C "$work/rootfs" -c . | podman import - localhost/debian:bookworm-slim
fi

if ! buildah inspect --type image localhost/rust:1-bookworm >/dev/null 2>&1; then
  mkdir "$work/rust"
  cat >"$work/rust/Containerfile" <<'EOF'
FROM localhost/debian:bookworm-slim
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:$PATH \
    SSL_CERT_FILE=/egress-ca.crt CURL_CA_BUNDLE=/egress-ca.crt CARGO_HTTP_CAINFO=/egress-ca.crt
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl gcc libc6-dev make git \
 && curl -sSf https://static.rust-lang.org/rustup/dist/x86_64-unknown-linux-gnu/rustup-init \
      -o /tmp/rustup-init \
 && chmod +x /tmp/rustup-init && /tmp/rustup-init -y --profile minimal --no-modify-path \
 && rm /tmp/rustup-init && rustc --version
EOF
  "${build[@]}" -t localhost/rust:1-bookworm "$work/rust"
fi

# The build context is the committed tree, so local build outputs never enter it.
mkdir "$work/context"
git -C "$root" archive HEAD | tar -x -C "$work/context"
"${build[@]}" -t "$tag" "$work/context"
echo "built $tag"
