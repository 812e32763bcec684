#!/usr/bin/env bash
# Installs the system packages gatehouse needs, only those that are missing.
#   scripts/setup.sh          build and run: C toolchain, cmake, pkg-config, OpenSSL headers
#   scripts/setup.sh --test   also what the tests use: redis-server, promtool (prometheus),
#                             the openssl command line (TLS session resumption, OCSP
#                             stapling and the tests' OCSP responder), pebble (an ACME CA)
set -euo pipefail

need=()
command -v cc >/dev/null 2>&1 || need+=(build-essential)
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
dpkg -s libssl-dev >/dev/null 2>&1 || need+=(libssl-dev)
if [ "${1:-}" = "--test" ]; then
  command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
  command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools) # the Redis Cluster tests join nodes with it
  command -v promtool >/dev/null 2>&1 || need+=(prometheus)
  command -v openssl >/dev/null 2>&1 || need+=(openssl)
  command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd) # verify checks the unit in conf/
  command -v logrotate >/dev/null 2>&1 || need+=(logrotate) # runs the example in conf/
  command -v chromium >/dev/null 2>&1 || need+=(chromium) # renders the admin status page
  dpkg -s fonts-dejavu-core >/dev/null 2>&1 || need+=(fonts-dejavu-core) # text in its screenshot
  command -v pebble >/dev/null 2>&1 || need+=(pebble) # the ACME CA (and its DNS) of the ACME tests
fi

if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "setup: installing ${need[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install Rust from https://rustup.rs first" >&2
  exit 1
fi
