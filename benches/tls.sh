#!/usr/bin/env bash
# TLS at the edge, in one run, nginx against the gateway with the same
# certificate (ECDSA P-256) and the same mock upstream:
#   - keep-alive requests in cleartext and over TLS (wrk -c CONNS): RPS and
#     the proxy's CPU time per request, and what TLS adds to it;
#   - new TLS handshakes (wrk with `Connection: close`, so every request is a
#     new connection and a full handshake): connections per second and CPU
#     time per connection.
# nginx runs 1 worker and the gateway 1 thread, each pinned to core 1; wrk and
# the mock share core 0. CPU per request or per handshake (user+system from
# /proc) is the figure to compare; "per core" below means per CPU second.
# Usage: benches/tls.sh [seconds_per_round] [connections] [rounds]
# Needs wrk, nginx and openssl (apt-get install -y wrk nginx-light openssl).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
CONNS=${2:-32}
ROUNDS=${3:-3}
source benches/common.sh
bench_start wrk nginx openssl
cargo build --release --bins >/dev/null 2>&1 || cargo build --release --bins
BIN=target/release

MOCK=127.0.0.1:18100; NGINX=127.0.0.1:18101; NGINX_PLAIN=127.0.0.1:18105; GW=127.0.0.1:18102; GW_TLS=127.0.0.1:18103; ADMIN=127.0.0.1:18104

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost \
  -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null

CORES=$(nproc)
LOAD_CPU=0; PROXY_CPU=$(( CORES > 1 ? 1 : 0 ))
"$BIN/mock-upstream" --listen "$MOCK" --threads 1 >/dev/null & PIDS+=($!)
taskset -pc "$LOAD_CPU" "$!" >/dev/null
wait_port "$MOCK"

# Cleartext and TLS on the same worker, neither closing a keep-alive
# connection after nginx's default 1,000 requests.
many="    keepalive_requests 1000000;"
tls="    ssl_certificate $WORK/cert.pem;
    ssl_certificate_key $WORK/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
$many"
write_nginx_conf "" "$MOCK" off "$(nginx_server "$NGINX_PLAIN" "$many")
$(nginx_server "$NGINX ssl" "$tls")"
taskset -c "$PROXY_CPU" nginx -c "$WORK/nginx.conf" -p "$WORK" & PIDS+=($!)
wait_port "$NGINX"; NGINX_PID=$(pgrep -P "$(cat "$WORK/nginx.pid")" | head -1)

{
  gateway_head_yaml gateway "$GW" "$ADMIN" false
  cat <<YAML
  proxy_tls: ["$GW_TLS"]
  tls:
    certificates: [{cert_file: $WORK/cert.pem, key_file: $WORK/key.pem}]
YAML
  mock_route_yaml "$MOCK"
} > "$WORK/gateway.yaml"
RUST_LOG=warn taskset -c "$PROXY_CPU" "$BIN/ai-api-gateway" -c "$WORK/gateway.yaml" >"$WORK/gateway.log" 2>&1 & PIDS+=($!)
GW_PID=$!; wait_port "$GW_TLS"

declare -A RPS CPU REQS TICKS
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
# run NAME URL PID [extra wrk args...]
run() {
  local name=$1 url=$2 pid=$3; shift 3
  local before; before=$(ticks "$pid")
  local out; out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" -s benches/wrk/chat.lua "$@" "$url")
  if echo "$out" | grep -q "Non-2xx"; then echo "$name answered errors:"; echo "$out"; exit 1; fi
  local after; after=$(ticks "$pid")
  REQS[$name]=$(( ${REQS[$name]:-0} + $(echo "$out" | awk '/requests in/ {print $1}') ))
  TICKS[$name]=$(( ${TICKS[$name]:-0} + after - before ))
  RPS[$name]=$(awk -v n="${REQS[$name]}" -v s="$DURATION" -v r="$round" 'BEGIN {printf "%.0f", n/(s*r)}')
  CPU[$name]=$(awk -v t="${TICKS[$name]}" -v n="${REQS[$name]}" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", t/hz*1e6/n}')
}
round=1
for url in "http://$NGINX_PLAIN" "http://$GW" "https://$NGINX" "https://$GW_TLS"; do
  taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d2s -s benches/wrk/chat.lua "$url" >/dev/null
done
for round in $(seq "$ROUNDS"); do
  run nginx_plain "http://$NGINX_PLAIN" "$NGINX_PID"
  run gateway_plain "http://$GW" "$GW_PID"
  run nginx_keepalive "https://$NGINX" "$NGINX_PID"
  run gateway_keepalive "https://$GW_TLS" "$GW_PID"
  run nginx_handshake "https://$NGINX" "$NGINX_PID" -H "Connection: close"
  run gateway_handshake "https://$GW_TLS" "$GW_PID" -H "Connection: close"
done

printf "\n%-18s %10s %16s\n" target per_sec cpu_us_per_item
for name in nginx_plain gateway_plain nginx_keepalive gateway_keepalive nginx_handshake gateway_handshake; do
  printf "%-18s %10s %16s\n" "$name" "${RPS[$name]}" "${CPU[$name]}"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a/b}'; }
echo
echo "cleartext keep-alive, cpu per request: gateway $(ratio "${CPU[gateway_plain]}" "${CPU[nginx_plain]}")x nginx"
echo "TLS adds per keep-alive request: nginx $(awk -v t="${CPU[nginx_keepalive]}" -v p="${CPU[nginx_plain]}" 'BEGIN {printf "%.1f", t-p}') us, gateway $(awk -v t="${CPU[gateway_keepalive]}" -v p="${CPU[gateway_plain]}" 'BEGIN {printf "%.1f", t-p}') us"
echo "keep-alive over TLS, cpu per request: gateway $(ratio "${CPU[gateway_keepalive]}" "${CPU[nginx_keepalive]}")x nginx; rps $(ratio "${RPS[gateway_keepalive]}" "${RPS[nginx_keepalive]}")x"
echo "new handshakes, cpu per connection: gateway $(ratio "${CPU[gateway_handshake]}" "${CPU[nginx_handshake]}")x nginx (goal: within 1.10x); per second $(ratio "${RPS[gateway_handshake]}" "${RPS[nginx_handshake]}")x"
echo "handshakes per CPU second: nginx $(awk -v c="${CPU[nginx_handshake]}" 'BEGIN {printf "%.0f", 1e6/c}'), gateway $(awk -v c="${CPU[gateway_handshake]}" 'BEGIN {printf "%.0f", 1e6/c}')"
failures=$(curl -s "http://$ADMIN/metrics" | awk '/^client_handshake_failures_total/ {s+=$2} END {print s+0}')
echo "gateway handshake failures during the run: $failures"
