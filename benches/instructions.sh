#!/usr/bin/env bash
# Instructions per request, counted by valgrind (callgrind), for the minimal Pingora proxy and
# gatehouse in front of the same nginx upstream. Unlike CPU time on a shared 2-core VM, the
# count is the same from run to run, so differences of a fraction of a percent are visible: it
# is the instrument for A/B-testing a change to the request path and for telling gatehouse's
# own instructions from Pingora's. It counts user space only (both proxies make the same system
# calls per request, see BENCHMARKS.md).
#
#   benches/instructions.sh [REQUESTS]     (default 20000, after 1000 warm-up requests)
#
# Needs valgrind, nginx, a release build (cargo build --release --bin gatehouse --example
# minimal_proxy) and python3. One client connection sends the requests one after another
# (keep-alive), so no batching differs between proxies. GATEHOUSE_FULL=1 gives gatehouse the
# full chain (cached RS256 JWT + local rate limit + access log to /dev/null) and sends the
# token to both proxies; with GATEHOUSE_LIMIT=redis the limit is checked in a redis-server
# started here. GATEHOUSE_FIREWALL=1 adds every managed firewall protection;
# GATEHOUSE_CORS=1 gives the route a credentialed CORS policy and sends an allowed Origin with
# every request. GATEHOUSE_TRACING=RATIO adds [tracing] at that sampling ratio, exporting to a local
# OTLP/HTTP sink (the export thread's instructions count too). GATEHOUSE_BODY=json sends every
# request as a POST with benches/lib.sh's 1 KB JSON body; GATEHOUSE_OPENAPI=N adds an API from
# an OpenAPI document of N operations whose POST / validates that body (and, with
# GATEHOUSE_OPENAPI_RESPONSES=report or enforce, the answer). Prints Ir per
# request, the owners of the self cost (by symbol) and the inclusive cost of each gatehouse
# phase hook; the raw callgrind files are kept when KEEP=DIR is set.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
REQUESTS=${1:-20000}
WARMUP=1000
BIN=${BIN:-target/release/gatehouse}
MINIMAL=${MINIMAL:-target/release/examples/minimal_proxy}
FULL=${GATEHOUSE_FULL:-}
LIMIT=${GATEHOUSE_LIMIT:-local}
WORK=$(mktemp -d)
UP=18181 GH=18183 GH_ADMIN=18184 MIN=18185 REDIS_PORT=18186 SINK=18187
pids=()
cleanup() { # nginx's master stops its worker on SIGTERM; SIGKILL would orphan it
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$WORK"/*.cg* "$KEEP"/ 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
for tool in valgrind callgrind_control callgrind_annotate nginx python3; do
  command -v $tool >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
for b in "$BIN" "$MINIMAL"; do
  [ -x "$b" ] || { echo "build first: cargo build --release --bin gatehouse --example minimal_proxy" >&2; exit 1; }
done
for port in $UP $GH $GH_ADMIN $MIN $SINK; do
  if ss -Hltn "sport = :$port" | grep -q .; then echo "port $port is in use" >&2; exit 1; fi
done

nginx_conf "$WORK/upstream" "server { listen 127.0.0.1:$UP; location / { return 200 'ok'; } }"
nginx -c "$WORK/upstream/nginx.conf" -p "$WORK/upstream" & pids+=($!)

{ gatehouse_conf "$WORK" $GH $GH_ADMIN "$([ -n "$FULL" ] && echo true || echo false)"; plain_route $UP; } > "$WORK/gatehouse.toml"
AUTH_HEADER=""
if [ -n "$FULL" ]; then
  AUTH_HEADER="Bearer $(jwt_setup "$WORK")"
  sed -i 's/^upstream = "u"$/upstream = "u"\nauth = "bench"\nlimits = ["bench"]/' "$WORK/gatehouse.toml"
  jwt_authorizer "$WORK" >> "$WORK/gatehouse.toml"
  limit_conf "$LIMIT" $REDIS_PORT 1s >> "$WORK/gatehouse.toml"
  if [ "$LIMIT" = redis ]; then start_redis $REDIS_PORT & pids+=($!); fi
fi

if [ -n "${GATEHOUSE_FIREWALL:-}" ]; then
  printf '[firewall]\nmanaged = ["sqli", "xss", "traversal", "known_bad_inputs", "scanners"]\n' >> "$WORK/gatehouse.toml"
fi

ORIGIN=""
if [ -n "${GATEHOUSE_CORS:-}" ]; then
  ORIGIN="https://app.bench.test"
  sed -i 's/^upstream = "u"$/upstream = "u"\ncors = "bench"/' "$WORK/gatehouse.toml"
  printf '[cors.bench]\nallow_origins = ["https://app.bench.test", "https://*.example.org"]\nallow_credentials = true\n' >> "$WORK/gatehouse.toml"
fi
export ORIGIN

if [ -n "${GATEHOUSE_TRACING:-}" ]; then
  tracing_conf "$GATEHOUSE_TRACING" $SINK >> "$WORK/gatehouse.toml"
  otlp_sink $SINK & pids+=($!)
fi

if [ -n "${GATEHOUSE_OPENAPI:-}" ]; then
  openapi_doc "$WORK/openapi.yaml" "$GATEHOUSE_OPENAPI"
  openapi_conf "$WORK/openapi.yaml" >> "$WORK/gatehouse.toml"
fi

BODY_FILE=""
if [ "${GATEHOUSE_BODY:-}" = json ]; then
  BODY_FILE="$WORK/body.json"
  json_body "$BODY_FILE"
fi

# Sends N keep-alive requests on one connection, one after another; fails on a non-200.
cat > "$WORK/client.py" <<'PY'
import os, socket, sys
port, n, auth, body_file = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
origin = os.environ.get("ORIGIN", "")
body = open(body_file, "rb").read() if body_file else b""
method = b"POST" if body else b"GET"
req = method + b" / HTTP/1.1\r\nHost: bench.test\r\nUser-Agent: instructions\r\n"
if auth:
    req += b"Authorization: " + auth.encode() + b"\r\n"
if origin:
    req += b"Origin: " + origin.encode() + b"\r\n"
if body:
    req += b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
req += b"\r\n" + body
s = socket.create_connection(("127.0.0.1", port))
buf = b""
for _ in range(n):
    s.sendall(req)
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("connection closed")
        buf += chunk
    head, _, buf = buf.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        sys.exit("not 200: " + head.decode(errors="replace"))
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(buf) < length:
        buf += s.recv(65536)
    buf = buf[length:]
PY

total_ir() { callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1 + 0} END {}' | head -1; }

measure() { # $1 name, $2 port, then the command -> prints Ir per request; leaves $WORK/$1.cg
  local name=$1 port=$2 pid
  shift 2
  valgrind --tool=callgrind --instr-atstart=no --separate-threads=yes --callgrind-out-file="$WORK/$name.cg" \
    "$@" >/dev/null 2>"$WORK/$name.err" & pid=$!
  pids+=($pid)
  for _ in $(seq 1 300); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" && break
    sleep 0.1
  done
  python3 "$WORK/client.py" "$port" $WARMUP "$AUTH_HEADER" "$BODY_FILE"
  callgrind_control -i on "$pid" >/dev/null 2>&1
  python3 "$WORK/client.py" "$port" "$REQUESTS" "$AUTH_HEADER" "$BODY_FILE"
  callgrind_control -i off "$pid" >/dev/null 2>&1
  callgrind_control -d "$pid" >/dev/null 2>&1
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  # One file per thread (--separate-threads): the request thread is the busiest one; the
  # others (Pingora's timer thread, background services, the access-log writer) run by the
  # clock, not per request, so under valgrind's slowdown they would weigh ~50x too much.
  local f best="" best_ir=0 ir other=0
  for f in "$WORK/$name.cg".*-*; do
    ir=$(total_ir "$f")
    other=$((other + ir))
    if [ "$ir" -gt "$best_ir" ]; then best_ir=$ir best=$f; fi
  done
  mv "$best" "$WORK/$name.cg.out"
  echo $((other - best_ir)) > "$WORK/$name.other"
}


owners() { # self cost grouped by the crate that owns the function, in Ir per request
  callgrind_annotate --threshold=100 "$1" 2>/dev/null | awk -v n="$REQUESTS" '
    /^ *[0-9,]+ .*:/ && !/PROGRAM TOTALS/ {
      ir = $1; gsub(",", "", ir); sym = $0
      sub(/^ *[0-9,]+ +(\([^)]*\) +)?/, "", sym); sub(/^[^:]*:/, "", sym)
      gsub(/^[<&]+|^(dyn|impl) /, "", sym); head = sym; sub(/(::|<| ).*/, "", head)
      if (head == "gatehouse") o = "gatehouse"
      else if (head ~ /^pingora/) o = "pingora"
      else if (head ~ /^(http|bytes|httparse|hashbrown|h2)$/) o = "http, bytes, httparse"
      else if (head == "tokio" || head == "mio") o = "tokio"
      else if (head ~ /^_?mi_/) o = "mimalloc"
      else if (head ~ /^(core|alloc|std)$/) o = "Rust std"
      else if (sym !~ /::/) o = "libc and other C"
      else o = "other crates"
      cost[o] += ir
    }
    END { for (o in cost) printf "  %8.0f  %s\n", cost[o] / n, o }' | sort -rn
}

hooks() { # inclusive cost of gatehouse's ProxyHttp hooks, in Ir per request
  callgrind_annotate --inclusive=yes --threshold=100 "$1" 2>/dev/null | awk -v n="$REQUESTS" '
    /gatehouse::proxy::Gateway as pingora_proxy::proxy_trait::ProxyHttp>::/ && !/drop_in_place/ {
      ir = $1; gsub(",", "", ir); ir += 0; sym = $0
      sub(/.*ProxyHttp>::/, "", sym); sub(/::\{\{closure\}\}.*/, "", sym); sub(/[ (].*/, "", sym)
      if (!(sym in seen) || ir > seen[sym]) seen[sym] = ir
    }
    END { for (s in seen) printf "  %8.0f  %s\n", seen[s] / n, s }' | sort -rn
}

measure minimal $MIN "$MINIMAL" "127.0.0.1:$MIN" "127.0.0.1:$UP"
measure gatehouse $GH "$BIN" run -c "$WORK/gatehouse.toml"
ir_min=$(total_ir "$WORK/minimal.cg.out")
ir_gh=$(total_ir "$WORK/gatehouse.cg.out")
awk -v a="$ir_min" -v b="$ir_gh" -v n="$REQUESTS" -v oa="$(cat "$WORK/minimal.other")" \
  -v ob="$(cat "$WORK/gatehouse.other")" 'BEGIN {
  printf "instructions per request on the request thread (user space, %d requests): minimal pingora %.0f, gatehouse %.0f\n", n, a / n, b / n
  printf "gatehouse / minimal: %.3f (gatehouse adds %.0f instructions per request)\n", b / a, (b - a) / n
  printf "other threads meanwhile, per request at valgrind speed (clock-driven, overstated): minimal %.0f, gatehouse %.0f\n", oa / n, ob / n }'
echo "self cost by owner, minimal pingora (Ir/request):"
owners "$WORK/minimal.cg.out"
echo "self cost by owner, gatehouse (Ir/request):"
owners "$WORK/gatehouse.cg.out"
echo "inclusive cost of gatehouse's phase hooks (Ir/request):"
hooks "$WORK/gatehouse.cg.out"
