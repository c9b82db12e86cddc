# Shared by the benchmark scripts: source it first, then call bench_start.

# A work directory, and PIDS, the processes a script starts: both gone at
# exit, with any process a pid file in WORK names (nginx's master, a gateway
# that replaced itself in an upgrade). Then the tools the script needs.
bench_start() {
  WORK=$(mktemp -d)
  PIDS=()
  trap bench_cleanup EXIT
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "$tool is needed: apt-get install -y $*"; exit 1; }
  done
}

bench_cleanup() {
  local p file
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  # A process killed above may remove its pid file meanwhile.
  for file in "$WORK"/*.pid; do
    kill "$(cat "$file" 2>/dev/null)" 2>/dev/null || true
  done
  rm -rf "$WORK"
}

# Waits until host:port accepts a connection: TENTHS tenths of a second at
# most (10 s by default). wait_port HOST:PORT [TENTHS]
wait_port() {
  for _ in $(seq "${2:-100}"); do
    (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "port $1 never opened"
  cat "$WORK"/*.log 2>/dev/null
  exit 1
}

# One server block of nginx.conf proxying to the `mock` upstream with
# keep-alive upstream connections and no buffering (streams pass as they
# come), the way the gateway proxies. LISTEN is nginx's listen value (an
# address, `ADDR ssl`); EXTRA, more directives for the block.
nginx_server() {
  local listen=$1 extra=${2:-}
  cat <<NGINX
  server {
    listen $listen;
$extra
    location / {
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
NGINX
}

# Writes $WORK/nginx.conf: one worker proxying LISTEN to UPSTREAM (see
# nginx_server), or serving the SERVERS blocks given instead. DAEMON is on
# or off.
write_nginx_conf() {
  local listen=$1 upstream=$2 daemon=$3 servers=${4:-}
  [ -n "$servers" ] || servers=$(nginx_server "$listen")
  cat > "$WORK/nginx.conf" <<NGINX
worker_processes 1;
daemon $daemon;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  upstream mock { server $upstream; keepalive 64; }
$servers
}
NGINX
}

# The head of a one-thread gateway config: NAME names its upgrade socket
# ($WORK/NAME.sock), pid file and access log ($WORK/NAME-access.log, on or
# off); listening on PROXY and ADMIN. The listen section comes last, so
# that a caller can add keys to it.
# gateway_head_yaml NAME PROXY ADMIN ACCESS_LOG [DRAIN_TIMEOUT]
gateway_head_yaml() {
  cat <<YAML
server:
  threads: 1
  drain_timeout: ${5:-1s}
  upgrade_sock: $WORK/$1.sock
  pid_file: $WORK/$1.pid
access_log:
  enabled: $4
  path: $WORK/$1-access.log
listen:
  proxy: ["$2"]
  admin: "$3"
YAML
}

# The mock at MOCK as the one upstream of a chat route for mock-gpt;
# API_KEY, when given, is the key the gateway sends it.
# mock_route_yaml MOCK [API_KEY]
mock_route_yaml() {
  cat <<YAML
upstreams:
  mock:
    backends:
      - base_url: http://$1
YAML
  [ -z "${2:-}" ] || echo "        api_key: $2"
  cat <<YAML
routes:
  - name: chat
    paths: [/v1/chat/completions]
    models: [mock-gpt]
    upstream: mock
YAML
}

# A whole one-thread gateway config with one chat route to the mock (see
# the two above). gateway_yaml NAME PROXY ADMIN MOCK ACCESS_LOG
gateway_yaml() {
  gateway_head_yaml "$1" "$2" "$3" "$5"
  mock_route_yaml "$4" bench-key
}

# The part of a gateway config that turns every feature on, as users run
# it (#14): API-key auth among 1,000 keys (the benchmarks call with
# sk-bench-0), a request rule and a token rule per key in hybrid mode on
# the Redis at REDIS_PORT. Appended to a config whose access log is on.
every_feature_on_yaml() {
  local redis_port=$1 i
  echo "auth:"
  echo "  api_keys:"
  for i in $(seq 0 999); do echo "    - {id: key-$i, key: sk-bench-$i, team: team-$((i % 10))}"; done
  cat <<YAML
limits:
  mode: hybrid
  redis: {url: "redis://127.0.0.1:$redis_port"}
  rules:
    - {name: per-key-requests, key: [api_key], counts: requests, limit: 1000000000, window: minute}
    - {name: per-key-tokens, key: [api_key], counts: total_tokens, limit: 1000000000000, window: minute}
  global_rules: [per-key-requests, per-key-tokens]
YAML
}
