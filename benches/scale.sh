#!/usr/bin/env bash
# How config size and idle connections cost: for 10, 1,000 and 10,000 prefix routes, the time
# `gatehouse check` takes, the time from start to the first served request, and the resident
# memory after start; then the resident memory added by 1,000 idle keep-alive connections.
#
#   benches/scale.sh            (needs a release build: cargo build --release --bin gatehouse)
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
BIN=${BIN:-target/release/gatehouse}
WORK=$(mktemp -d)
GH=18093 ADMIN=18094
pid=""
cleanup() { [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
[ -x "$BIN" ] || { echo "build first: cargo build --release --bin gatehouse" >&2; exit 1; }

config() { # $1 routes
  gatehouse_conf "$WORK" $GH $ADMIN false
  for i in $(seq 1 "$1"); do
    printf '[[routes]]\nname = "r%d"\npath_prefix = "/r/%d"\nrespond = { body = "ok" }\n' "$i" "$i"
  done
}
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
ms() { date +%s%3N; }

printf "%8s %10s %12s %10s\n" routes "check ms" "startup ms" "RSS MiB"
declare -A rss
for n in 10 1000 10000; do
  config "$n" > "$WORK/g.toml"
  t0=$(ms); "$BIN" check -c "$WORK/g.toml" >/dev/null; t1=$(ms)
  "$BIN" run -c "$WORK/g.toml" >/dev/null 2>&1 & pid=$!
  t2=$(ms)
  until curl -s -o /dev/null "http://127.0.0.1:$GH/r/$n/x"; do sleep 0.005; done
  t3=$(ms)
  sleep 0.5
  rss[$n]=$(rss_kib "$pid")
  printf "%8d %10d %12d %10.1f\n" "$n" $((t1 - t0)) $((t3 - t2)) "$(echo "${rss[$n]}" | awk '{print $1 / 1024}')"
  if [ "$n" = 10 ]; then
    # 1,000 idle keep-alive connections, each after one request.
    before=$(rss_kib "$pid")
    python3 - "$GH" <<'PY' &
import socket, sys, time
port = int(sys.argv[1])
conns = []
for _ in range(1000):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /r/1 HTTP/1.1\r\nHost: x\r\n\r\n")
    s.recv(4096)
    conns.append(s)
time.sleep(3)
PY
    py=$!
    sleep 2
    after=$(rss_kib "$pid")
    echo "1,000 idle keep-alive connections: +$(( (after - before) )) KiB (about $(( (after - before) * 1024 / 1000 )) bytes each)"
    wait "$py" || true
  fi
  kill -9 "$pid"; wait "$pid" 2>/dev/null || true; pid=""
done
echo "memory per 1,000 routes: $(( (rss[10000] - rss[10]) * 1000 / 9990 )) KiB"
