# Shared by the benchmark scripts (sourced, not run): the config pieces they all write.

# gatehouse_conf WORK PORT ADMIN_PORT ACCESS_LOG: the [server], listener, admin and access-log
# part of a one-thread gatehouse config.
gatehouse_conf() {
  cat <<CONF
[server]
threads = 1
pid_file = "$1/gh.pid"
upgrade_sock = "$1/gh.sock"
[[listeners]]
address = "127.0.0.1:$2"
[admin]
address = "127.0.0.1:$3"
[access_log]
enabled = $4
CONF
  # One client connection carries every request, as nginx's does (keepalive_requests
  # unlimited). GATEHOUSE_NO_EDGE=1 leaves it out, for binaries older than [edge].
  if [ -z "${GATEHOUSE_NO_EDGE:-}" ]; then
    printf '[edge]\nmax_requests_per_connection = 4294967295\n'
  fi
}

# plain_route UPSTREAM_PORT: pool `u` with one target and the catch-all route "plain" to it
# (its `upstream = "u"` line is where the scripts add auth and limits).
plain_route() {
  cat <<CONF
[upstreams.u]
targets = [{ address = "127.0.0.1:$1" }]
[[routes]]
name = "plain"
upstream = "u"
CONF
}

# nginx_conf DIR SERVER_BLOCKS: a one-worker nginx config in DIR/nginx.conf (foreground, no
# access log, unlimited keep-alive requests).
nginx_conf() {
  mkdir -p "$1"
  cat > "$1/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $1/nginx.pid;
error_log $1/error.log crit;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  $2
}
CONF
}

# jwt_setup WORK: an RS256 key pair in WORK/jwt.key and WORK/jwt.pub; prints a token for it
# (iss "bench", aud "api", sub "user-1", valid for a day, kid "bench").
jwt_setup() {
  b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1/jwt.key" 2>/dev/null
  openssl pkey -in "$1/jwt.key" -pubout -out "$1/jwt.pub"
  local head body sig
  head=$(printf '{"alg":"RS256","typ":"JWT","kid":"bench"}' | b64url)
  body=$(printf '{"iss":"bench","sub":"user-1","aud":"api","exp":%d}' $(($(date +%s) + 86400)) | b64url)
  sig=$(printf '%s.%s' "$head" "$body" | openssl dgst -sha256 -sign "$1/jwt.key" -binary | b64url)
  echo "$head.$body.$sig"
}

# jwt_authorizer WORK: the [authorizers.bench] section that accepts jwt_setup's tokens.
jwt_authorizer() {
  cat <<CONF
[authorizers.bench]
type = "jwt"
algorithms = ["RS256"]
issuer = "bench"
audiences = ["api"]
public_key_file = "$1/jwt.pub"
forward_claims = { sub = "x-consumer-id" }
CONF
}

# limit_conf BACKEND REDIS_PORT REDIS_TIMEOUT: the [limits.bench] section (a per-client-IP rate
# high enough never to refuse, so every request pays for a full check) and, for the redis
# backend, the [redis] section; the caller starts redis-server on REDIS_PORT.
limit_conf() {
  cat <<CONF
[limits.bench]
rate = 1000000000
burst = 1000
key = ["client_ip"]
backend = "$1"
CONF
  if [ "$1" = redis ]; then
    printf '[redis]\nurl = "redis://127.0.0.1:%s/"\ntimeout = "%s"\n' "$2" "$3"
  fi
}

# start_redis PORT: a throwaway redis-server (no persistence); run it with `&` so that $!
# is the server itself (the function execs it).
start_redis() {
  exec redis-server --port "$1" --bind 127.0.0.1 --save "" --appendonly no >/dev/null
}

# json_body FILE: a benign 1 KB JSON body (an order with a customer note, quotes, an apostrophe
# and a URL, as an API sees) in FILE, for GATEHOUSE_BODY=json.
json_body() {
  python3 - "$1" <<'PY'
import json, sys
order = {"order_id": "9f1c2e7a-3b4d-4c5e-8f6a-7b8c9d0e1f2a", "customer": {"name": "Siobhan O'Brien",
  "email": "siobhan.obrien@example.com", "phone": "+353 1 555 0142"},
  "items": [{"sku": "BK-%04d" % i, "title": "Book %d: \"Select\" essays" % i, "qty": i % 3 + 1,
  "price": 12.5 + i} for i in range(6)],
  "note": "Please leave it at the door if nobody's home; ring twice. Union Square entrance.",
  "callback": "https://shop.example.com/orders/9f1c?ref=mail&utm_source=news",
  "gift": False, "coupon": None}
body = json.dumps(order)
body += " " * max(0, 1024 - len(body))
open(sys.argv[1], "w").write(body)
PY
}

# tracing_conf RATIO SINK_PORT: a [tracing] section sampling RATIO of new traces (the
# benchmark's requests carry no traceparent), exported over OTLP/HTTP to otlp_sink on SINK_PORT.
tracing_conf() {
  printf '[tracing]\nendpoint = "http://127.0.0.1:%s"\nratio = %s\n' "$2" "$1"
}

# otlp_sink PORT: an OTLP/HTTP collector that reads and discards every export (an empty 200
# body is a valid ExportTraceServiceResponse). Run it with `&`.
otlp_sink() {
  exec python3 - "$1" <<'PY'
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
PY
}

# openapi_doc FILE OPERATIONS: benches/fixtures/orders.yaml (POST / checks the 1 KB order of
# json_body) with generated operations added up to OPERATIONS in all (GET /things{i}/{id} with
# an integer path parameter), in FILE.
openapi_doc() {
  cp benches/fixtures/orders.yaml "$1"
  local i
  for i in $(seq 2 "$2"); do
    printf '  /things%d/{id}:\n    get:\n      operationId: thing%d\n      parameters: [{name: id, in: path, required: true, schema: {type: integer}}]\n      responses: {200: {description: ok}}\n' "$i" "$i"
  done >> "$1"
}

# openapi_conf FILE: an [apis.bench] section on pool `u`, whose POST / operation takes the
# benchmarks' JSON body (in front of the catch-all route). GATEHOUSE_OPENAPI_RESPONSES=report or
# enforce checks the upstream's answers too (enforce holds each one until it passed).
openapi_conf() {
  printf '[apis.bench]\nopenapi = "%s"\nupstream = "u"\nmax_body_bytes = 4096\n' "$1"
  if [ -n "${GATEHOUSE_OPENAPI_RESPONSES:-}" ]; then
    printf 'validate_responses = "%s"\n' "$GATEHOUSE_OPENAPI_RESPONSES"
  fi
}
