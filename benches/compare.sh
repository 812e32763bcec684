#!/usr/bin/env bash
# Macro benchmark: the same bounded wrk load through nginx (reverse proxy with upstream
# keep-alive), a minimal Pingora proxy (examples/minimal_proxy.rs, the framework floor) and
# gatehouse, all in front of one nginx upstream (`return 200 'ok'`), on one machine, in
# alternating rounds. Reports req/s, p50/p99 latency and CPU µs per request of the proxy
# process (Δ utime+stime from /proc ÷ requests), and ratios of the medians.
#
#   benches/compare.sh [ROUNDS] [SECONDS]        (defaults: 3 rounds of 10 s)
#
# Needs nginx and wrk (apt-get install nginx-light wrk) and a release build
# (cargo build --release --bin gatehouse --example minimal_proxy). Everything listens on
# 127.0.0.1 only. GATEHOUSE_ACCESS_LOG=true turns the access log on (to /dev/null).
# GATEHOUSE_LIMIT=local|redis adds a per-client-IP rate limit high enough never to refuse
# (redis starts a redis-server on 127.0.0.1:18086), to measure what a check costs.
# GATEHOUSE_AUTH=jwt protects the route with an RS256 JWT authorizer (PEM key generated here)
# and sends one valid token with every request (to every proxy, so the bytes are the same):
# the cached verification a client reusing its token pays for. All three switches together
# are the "full chain" scenario.
# GATEHOUSE_ROUTES=N adds N prefix routes (/r/1 ... /r/N) in front of the catch-all and sends
# every request to /r/N/2/x (a deep lookup) through each proxy.
# GATEHOUSE_TLS=keepalive|handshake serves nginx and gatehouse over TLS with the same
# certificate (P-256, generated here): `keepalive` measures HTTPS requests on kept-alive
# connections, `handshake` sends `Connection: close` so every request pays a full handshake
# (handshakes per second). The minimal Pingora proxy has no TLS and is left out.
# GATEHOUSE_TLS_THREADS=N gives gatehouse N dedicated handshake threads.
# GATEHOUSE_BODY=json sends every request as a POST with a benign 1 KB JSON body (an order
# with a customer note, as an API sees), to every proxy.
# GATEHOUSE_FIREWALL=1 runs a second gatehouse, the same config plus every managed firewall
# protection ("gatehouse+fw"), in the same rounds, and reports its CPU per request against
# the gatehouse without them: each alone in turn, and both loaded at the same time on the
# same CPU ("gh-pair", "gh+fw-pair"), which cancels the VM's drift between runs.
# GATEHOUSE_TRACING=RATIO does the same with [tracing] at that sampling ratio
# ("gatehouse+tr", "gh+tr-pair"), its spans exported over OTLP/HTTP to a collector that
# accepts and discards them (benches/lib.sh's otlp_sink on 127.0.0.1:18089).
# GATEHOUSE_OPENAPI=N does the same with an API from an OpenAPI document of N operations whose
# POST / validates the request against its schema ("gatehouse+oa", "gh+oa-pair"); use it with
# GATEHOUSE_BODY=json, whose 1 KB order body the operation checks; with
# GATEHOUSE_OPENAPI_RESPONSES=report or enforce it checks the upstream's answers too.
# PIN=1 (the default with 2 or more CPUs) pins the load side (wrk and the nginx upstream) to
# CPU 0 and every proxy to the other CPUs, so a proxy's CPU per request is not moved by how
# the scheduler shares cores with the load generator; PIN=0 lets them float.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
ROUNDS=${1:-3}
SECS=${2:-10}
CONNS=${CONNS:-50}
BIN=${BIN:-target/release/gatehouse}
MINIMAL=${MINIMAL:-target/release/examples/minimal_proxy}
ACCESS_LOG=${GATEHOUSE_ACCESS_LOG:-false}
LIMIT=${GATEHOUSE_LIMIT:-}
AUTH=${GATEHOUSE_AUTH:-}
TLS=${GATEHOUSE_TLS:-}
ROUTES=${GATEHOUSE_ROUTES:-0}
URL_PATH=/
[ "$ROUTES" -gt 0 ] && URL_PATH="/r/$((ROUTES / 2))/x"
SCHEME=http
[ -n "$TLS" ] && SCHEME=https
REDIS_PORT=18086
WORK=$(mktemp -d)
UP=18081 NGX=18082 GH=18083 GH_ADMIN=18084 MIN=18085 GHF=18087 GHF_ADMIN=18088
FIREWALL=${GATEHOUSE_FIREWALL:-}
TRACING=${GATEHOUSE_TRACING:-}
SINK=18089
# The second gatehouse, measured against the first: its name and what it adds.
VARIANT="" VARIANT_WHAT=""
OPENAPI=${GATEHOUSE_OPENAPI:-}
variants=0
for v in "$FIREWALL" "$TRACING" "$OPENAPI"; do [ -n "$v" ] && variants=$((variants + 1)); done
if [ "$variants" -gt 1 ]; then
  echo "GATEHOUSE_FIREWALL, GATEHOUSE_TRACING and GATEHOUSE_OPENAPI each make the second gatehouse: set one" >&2
  exit 1
fi
[ -n "$FIREWALL" ] && VARIANT=fw VARIANT_WHAT="all managed protections"
[ -n "$TRACING" ] && VARIANT=tr VARIANT_WHAT="tracing at ratio $TRACING"
[ -n "$OPENAPI" ] && VARIANT=oa VARIANT_WHAT="request validation ($OPENAPI operations)"
BODY=${GATEHOUSE_BODY:-}
TICKS=$(getconf CLK_TCK)
NCPU=$(nproc)
PIN=${PIN:-$([ "$NCPU" -ge 2 ] && echo 1 || echo 0)}
LOAD_ON=() PROXY_ON=()
if [ "$PIN" = 1 ]; then
  LOAD_ON=(taskset -c 0) PROXY_ON=(taskset -c "1-$((NCPU - 1))")
fi
pids=()
# SIGTERM (nginx's master stops its workers), then SIGKILL: Pingora drains for its grace
# period after SIGTERM, and with SO_REUSEPORT a draining proxy from the previous run would
# share the next run's port and its load, which makes the measured process's CPU per request
# look smaller than it is.
cleanup() {
  disown -a 2>/dev/null || true # no "Killed" job reports for the proxies stopped below
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
for port in $UP $NGX $GH $GH_ADMIN $MIN $GHF $GHF_ADMIN $SINK; do
  if ss -Hltn "sport = :$port" | grep -q .; then
    echo "port $port is in use (a proxy left from an earlier run?): stop it first" >&2
    exit 1
  fi
done

for tool in nginx wrk; do command -v $tool >/dev/null || { echo "missing $tool" >&2; exit 1; }; done
for b in "$BIN" "$MINIMAL"; do
  [ -x "$b" ] || { echo "build first: cargo build --release --bin gatehouse --example minimal_proxy" >&2; exit 1; }
done

nginx_conf "$WORK/upstream" "server { listen 127.0.0.1:$UP; location / { return 200 'ok'; } }"
NGX_TLS=""
if [ -n "$TLS" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=bench.test -addext subjectAltName=DNS:bench.test \
    -keyout "$WORK/tls.key" -out "$WORK/tls.crt" 2>/dev/null
  NGX_TLS="ssl; ssl_certificate $WORK/tls.crt; ssl_certificate_key $WORK/tls.key;
  ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:SSL:10m"
fi
nginx_conf "$WORK/proxy" "upstream u { server 127.0.0.1:$UP; keepalive 256; }
  server { listen 127.0.0.1:$NGX $NGX_TLS; location / { proxy_pass http://u; proxy_http_version 1.1;
  proxy_set_header Connection \"\"; } }"
{ gatehouse_conf "$WORK" $GH $GH_ADMIN "$ACCESS_LOG"; plain_route $UP; } > "$WORK/gatehouse.toml"
if [ -n "$LIMIT" ]; then
  sed -i 's/^upstream = "u"$/upstream = "u"\nlimits = ["bench"]/' "$WORK/gatehouse.toml"
  limit_conf "$LIMIT" $REDIS_PORT 100ms >> "$WORK/gatehouse.toml"
  if [ "$LIMIT" = redis ]; then start_redis $REDIS_PORT & pids+=($!); fi
fi

if [ "$ROUTES" -gt 0 ]; then
  for i in $(seq 1 "$ROUTES"); do
    printf '[[routes]]\nname = "r%d"\npath_prefix = "/r/%d"\nupstream = "u"\n' "$i" "$i"
  done >> "$WORK/gatehouse.toml"
fi
WRK_HEADER=()
if [ -n "$TLS" ]; then
  if [ -n "${GATEHOUSE_TLS_THREADS:-}" ]; then
    sed -i "s/^threads = 1$/threads = 1\ntls_handshake_threads = $GATEHOUSE_TLS_THREADS/" "$WORK/gatehouse.toml"
  fi
  sed -i "s/^address = \"127.0.0.1:$GH\"$/address = \"127.0.0.1:$GH\"\ntls = { default_certificate = \"bench\" }/" "$WORK/gatehouse.toml"
  printf '[certificates.bench]\ncert = "%s"\nkey = "%s"\n' "$WORK/tls.crt" "$WORK/tls.key" >> "$WORK/gatehouse.toml"
  [ "$TLS" = handshake ] && WRK_HEADER+=(-H "Connection: close")
fi
if [ "$AUTH" = jwt ]; then
  WRK_HEADER+=(-H "Authorization: Bearer $(jwt_setup "$WORK")")
  sed -i 's/^upstream = "u"$/upstream = "u"\nauth = "bench"/' "$WORK/gatehouse.toml"
  jwt_authorizer "$WORK" >> "$WORK/gatehouse.toml"
fi

WRK_SCRIPT=()
if [ "$BODY" = json ]; then
  json_body "$WORK/body.json"
  python3 - "$WORK/body.json" "$WORK/post.lua" <<'PY'
import json, sys
body = open(sys.argv[1]).read()
open(sys.argv[2], "w").write('wrk.method = "POST"\nwrk.body = %s\nwrk.headers["Content-Type"] = "application/json"\n' % json.dumps(body))
PY
  WRK_SCRIPT=(-s "$WORK/post.lua")
fi
if [ -n "$VARIANT" ]; then
  sed -e "s/127.0.0.1:$GH\"/127.0.0.1:$GHF\"/" -e "s/127.0.0.1:$GH_ADMIN\"/127.0.0.1:$GHF_ADMIN\"/" \
    -e "s#$WORK/gh\.#$WORK/ghf.#" "$WORK/gatehouse.toml" > "$WORK/gatehouse-variant.toml"
fi
if [ -n "$FIREWALL" ]; then
  printf '[firewall]\nmanaged = ["sqli", "xss", "traversal", "known_bad_inputs", "scanners"]\n' >> "$WORK/gatehouse-variant.toml"
fi
if [ -n "$OPENAPI" ]; then
  openapi_doc "$WORK/openapi.yaml" "$OPENAPI"
  openapi_conf "$WORK/openapi.yaml" >> "$WORK/gatehouse-variant.toml"
fi
if [ -n "$TRACING" ]; then
  tracing_conf "$TRACING" $SINK >> "$WORK/gatehouse-variant.toml"
  "${LOAD_ON[@]}" bash -c ". benches/lib.sh && otlp_sink $SINK" & pids+=($!)
fi

"${LOAD_ON[@]}" nginx -c "$WORK/upstream/nginx.conf" -p "$WORK/upstream" & pids+=($!)
"${PROXY_ON[@]}" nginx -c "$WORK/proxy/nginx.conf" -p "$WORK/proxy" & pids+=($!)
"${PROXY_ON[@]}" "$BIN" run -c "$WORK/gatehouse.toml" >/dev/null 2>"$WORK/gh.err" & pids+=($!)
GH_PID=$!
"${PROXY_ON[@]}" "$MINIMAL" "127.0.0.1:$MIN" "127.0.0.1:$UP" >/dev/null 2>&1 & pids+=($!)
MIN_PID=$!
if [ -n "$VARIANT" ]; then
  "${PROXY_ON[@]}" "$BIN" run -c "$WORK/gatehouse-variant.toml" >/dev/null 2>"$WORK/ghf.err" & pids+=($!)
  GHF_PID=$!
fi
sleep 1
NGX_PID=$(cat "$WORK/proxy/nginx.pid")
# Measure served requests only: a refused token would make a fast, meaningless benchmark.
CURL_BODY=()
[ "$BODY" = json ] && CURL_BODY=(-H "Content-Type: application/json" --data-binary "@$WORK/body.json")
for port in $GH $([ -n "$VARIANT" ] && echo $GHF); do
  code=$(curl -sk -o /dev/null -w '%{http_code}' "${WRK_HEADER[@]}" "${CURL_BODY[@]}" "$SCHEME://127.0.0.1:$port$URL_PATH")
  [ "$code" = 200 ] || { echo "gatehouse on $port answered $code, not 200:" >&2; cat "$WORK"/gh*.err >&2; exit 1; }
done

cpu_ticks() { # sum of utime+stime of a process and its children (nginx worker)
  local total=0 p
  for p in $1 $(pgrep -P "$1" || true); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo $total
}

run_one() { # $1 name, $2 port, $3 pid -> "reqs rps p50 p99 cpu_us_per_req"
  local before after out reqs
  "${LOAD_ON[@]}" wrk -t1 -c"$CONNS" -d1s "${WRK_HEADER[@]}" "${WRK_SCRIPT[@]}" "$SCHEME://127.0.0.1:$2$URL_PATH" >/dev/null # warm
  before=$(cpu_ticks "$3")
  out=$("${LOAD_ON[@]}" wrk -t1 -c"$CONNS" -d"${SECS}s" --latency "${WRK_HEADER[@]}" "${WRK_SCRIPT[@]}" "$SCHEME://127.0.0.1:$2$URL_PATH")
  after=$(cpu_ticks "$3")
  summarize "$1" "$out" $((after - before))
}

summarize() { # $1 name, $2 wrk output, $3 CPU ticks of the proxy meanwhile -> a result line
  local reqs
  reqs=$(echo "$2" | awk '/requests in/ {print $1}')
  awk -v reqs="$reqs" -v ticks="$3" -v hz="$TICKS" -v name="$1" -v out="$2" '
    BEGIN {
      n = split(out, lines, "\n"); rps = 0; p50 = ""; p99 = ""
      for (i = 1; i <= n; i++) {
        split(lines[i], f, " ")
        if (lines[i] ~ /Requests\/sec/) rps = f[2]
        if (lines[i] ~ /^ +50%/) p50 = f[2]
        if (lines[i] ~ /^ +99%/) p99 = f[2]
      }
      printf "%-10s %10d %10.0f %8s %8s %8.2f\n", name, reqs, rps, p50, p99, ticks / hz * 1e6 / reqs
    }'
}

# gatehouse and the variant (gatehouse+fw, gatehouse+tr) loaded at the same time, each by its own wrk, both proxies on the
# same CPU: they share whatever the machine gives in that window, so their ratio does not move
# with the VM's speed, which drifts by tens of percent between sequential runs here.
run_pair() {
  local wrk_args=(-t1 -c"$CONNS" "${WRK_HEADER[@]}" "${WRK_SCRIPT[@]}") a b wa wb
  "${LOAD_ON[@]}" wrk "${wrk_args[@]}" -d1s "$SCHEME://127.0.0.1:$GH$URL_PATH" >/dev/null &
  wa=$!
  "${LOAD_ON[@]}" wrk "${wrk_args[@]}" -d1s "$SCHEME://127.0.0.1:$GHF$URL_PATH" >/dev/null &
  wb=$!
  wait $wa $wb
  a=$(cpu_ticks "$GH_PID") b=$(cpu_ticks "$GHF_PID")
  "${LOAD_ON[@]}" wrk "${wrk_args[@]}" -d"${SECS}s" --latency "$SCHEME://127.0.0.1:$GH$URL_PATH" >"$WORK/pair-gh" &
  wa=$!
  "${LOAD_ON[@]}" wrk "${wrk_args[@]}" -d"${SECS}s" --latency "$SCHEME://127.0.0.1:$GHF$URL_PATH" >"$WORK/pair-ghf" &
  wb=$!
  wait $wa $wb
  a=$(($(cpu_ticks "$GH_PID") - a)) b=$(($(cpu_ticks "$GHF_PID") - b))
  summarize gh-pair "$(cat "$WORK/pair-gh")" "$a"
  summarize "gh+$VARIANT-pair" "$(cat "$WORK/pair-ghf")" "$b"
}

printf "%-10s %10s %10s %8s %8s %8s\n" proxy requests req/s p50 p99 "CPU µs/req"
results=()
for r in $(seq 1 "$ROUNDS"); do
  results+=("$(run_one nginx $NGX "$NGX_PID")")
  echo "${results[-1]}"
  if [ -z "$TLS" ]; then
    results+=("$(run_one minimal $MIN "$MIN_PID")")
    echo "${results[-1]}"
  fi
  results+=("$(run_one gatehouse $GH "$GH_PID")")
  echo "${results[-1]}"
  if [ -n "$VARIANT" ]; then
    results+=("$(run_one "gatehouse+$VARIANT" $GHF "$GHF_PID")")
    echo "${results[-1]}"
    while read -r line; do results+=("$line") && echo "$line"; done < <(run_pair)
  fi
done
median() { printf '%s\n' "${results[@]}" | awk -v n="$1" '$1 == n {print $6}' | sort -n |
  awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
m_ngx=$(median nginx)
m_gh=$(median gatehouse)
if [ -n "$VARIANT" ]; then
  v="gatehouse+$VARIANT"
  awk -v a="$m_gh" -v b="$(median "$v")" -v v="$v" -v what="$VARIANT_WHAT" 'BEGIN {
    printf "median CPU µs/req: gatehouse %.2f, %s (%s) %.2f, ratio %.2f\n", a, v, what, b, b / a }'
  printf '%s\n' "${results[@]}" | awk -v v="$v" '$1 == "gatehouse" {g = $6} $1 == v {print $6 / g}' |
    sort -n | awk -v v="$v" '{r[NR] = $1} END {
      printf "%s/gatehouse per round (run one after the other): median %.2f, range %.2f-%.2f over %d rounds\n", v, r[int((NR + 1) / 2)], r[1], r[NR], NR }'
  printf '%s\n' "${results[@]}" | awk -v p="gh+$VARIANT-pair" '$1 == "gh-pair" {g = $6} $1 == p {print $6 / g}' |
    sort -n | awk -v v="$v" '{r[NR] = $1} END {
      printf "%s/gatehouse per round (run at the same time): median %.2f, range %.2f-%.2f over %d rounds\n", v, r[int((NR + 1) / 2)], r[1], r[NR], NR }'
fi
if [ -n "$TLS" ]; then
  r_ngx=$(printf '%s\n' "${results[@]}" | awk '$1 == "nginx" {print $3}' | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}')
  r_gh=$(printf '%s\n' "${results[@]}" | awk '$1 == "gatehouse" {print $3}' | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}')
  awk -v a="$m_ngx" -v b="$m_gh" -v ra="$r_ngx" -v rb="$r_gh" -v mode="$TLS" 'BEGIN {
    printf "TLS %s, median CPU µs/req: nginx %.2f, gatehouse %.2f; req/s: nginx %d, gatehouse %d\n", mode, a, b, ra, rb
    printf "ratios: gatehouse/nginx CPU %.2f, req/s %.2f\n", b / a, rb / ra }'
  exit 0
fi
m_min=$(median minimal)
p99() { # median p99 of $1 in µs
  printf '%s\n' "${results[@]}" | awk -v n="$1" '$1 == n {
    v = $5; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v)
    if (u == "ms") v *= 1000; else if (u == "s") v *= 1000000
    print v }' | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'
}
awk -v a="$m_ngx" -v m="$m_min" -v b="$m_gh" -v pm="$(p99 minimal)" -v pg="$(p99 gatehouse)" 'BEGIN {
  printf "median CPU µs/req: nginx %.2f, minimal pingora %.2f, gatehouse %.2f\n", a, m, b
  printf "ratios: gatehouse/minimal %.2f, gatehouse/nginx %.2f, minimal/nginx %.2f\n", b / m, b / a, m / a
  printf "median p99: minimal %.0f µs, gatehouse %.0f µs, gatehouse/minimal %.2f\n", pm, pg, pg / pm }'
# Each round's gatehouse figure against the minimal proxy measured just before it: slow drift
# of the machine cancels out within a round.
printf '%s\n' "${results[@]}" | awk '$1 == "minimal" {m = $6} $1 == "gatehouse" {print $6 / m}' |
  sort -n | awk '{v[NR] = $1} END {
    printf "gatehouse/minimal per round: median %.2f, range %.2f-%.2f over %d rounds\n", v[int((NR + 1) / 2)], v[1], v[NR], NR }'
