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

# Waits until host:port accepts a connection (10 s at most).
wait_port() {
  for _ in $(seq 100); do
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
