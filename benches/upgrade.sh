#!/usr/bin/env bash
# Rollouts under load, in one run: wrk hammers keep-alive connections while
#   - nginx is reloaded twice (`nginx -s reload`: new workers, old ones finish
#     what they serve), the baseline;
#   - the gateway is upgraded twice (a new process with -u, SIGQUIT to the old
#     one, which hands its sockets over and drains).
# For each it prints wrk's requests, socket errors and non-2xx answers, and
# whether a 20 s stream opened before the first reload/upgrade completed.
# Usage: benches/upgrade.sh [seconds] [connections]
# Needs wrk, nginx and curl (apt-get install -y wrk nginx-light curl).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-24}
CONNS=${2:-16}
source benches/common.sh
bench_start wrk nginx curl
cargo build --release --bins >/dev/null 2>&1 || cargo build --release --bins
BIN=target/release
MOCK=127.0.0.1:18100; NGINX=127.0.0.1:18101; GW=127.0.0.1:18102; ADMIN=127.0.0.1:18103

"$BIN/mock-upstream" --listen "$MOCK" --threads 1 >/dev/null & PIDS+=($!)
wait_port "$MOCK"

# A stream of 20 events, one a second, opened at the start: does it finish?
stream() {
  curl -sN --max-time 60 "http://$1/v1/chat/completions" -H 'content-type: application/json' \
    -H 'x-mock-chunks: 20' -H 'x-mock-chunk-delay-ms: 1000' \
    -d '{"model":"mock-gpt","stream":true,"messages":[{"role":"user","content":"hi"}]}' > "$WORK/$2.stream" 2>&1 || true
}
stream_outcome() {
  local events; events=$(grep -c '"content"' "$WORK/$1.stream" || true)
  if grep -q '\[DONE\]' "$WORK/$1.stream"; then echo "completed ($events events, [DONE])"; else echo "CUT after $events events"; fi
}
# wrk's summary: requests, socket errors (connect/read/write/timeout), non-2xx.
summary() {
  local out=$1
  local requests errors non2xx
  requests=$(awk '/requests in/ {print $1}' "$out")
  errors=$(awk '/Socket errors/ {gsub(",",""); print "connect " $4 ", read " $6 ", write " $8 ", timeout " $10}' "$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' "$out")
  echo "${requests} requests; socket errors: ${errors:-none}; non-2xx: ${non2xx:-0}"
}

# nginx, reloaded twice.
write_nginx_conf "$NGINX" "$MOCK" on
nginx -c "$WORK/nginx.conf" -p "$WORK"
wait_port "$NGINX"
stream "$NGINX" nginx & STREAM=$!
wrk -t2 -c"$CONNS" -d"${DURATION}s" -s benches/wrk/chat.lua "http://$NGINX" > "$WORK/nginx.wrk" & WRK=$!
sleep $((DURATION / 4)); nginx -c "$WORK/nginx.conf" -p "$WORK" -s reload
sleep $((DURATION / 3)); nginx -c "$WORK/nginx.conf" -p "$WORK" -s reload
wait "$WRK"; wait "$STREAM"
NGINX_SUMMARY=$(summary "$WORK/nginx.wrk"); NGINX_STREAM=$(stream_outcome nginx)
kill "$(cat "$WORK/nginx.pid")"

# The gateway, upgraded twice.
{ gateway_head_yaml gateway "$GW" "$ADMIN" false 60s; mock_route_yaml "$MOCK"; } > "$WORK/gateway.yaml"
RUST_LOG=warn "$BIN/ai-api-gateway" -c "$WORK/gateway.yaml" > "$WORK/gateway-0.log" 2>&1 &
wait_port "$GW"
upgrade() {
  local old; old=$(cat "$WORK/gateway.pid")
  rm -f "$WORK/gateway.sock"
  RUST_LOG=warn "$BIN/ai-api-gateway" -u -c "$WORK/gateway.yaml" > "$WORK/gateway-$1.log" 2>&1 &
  for _ in $(seq 100); do [ -S "$WORK/gateway.sock" ] && break; sleep 0.1; done
  kill -QUIT "$old"
}
stream "$GW" gateway & STREAM=$!
wrk -t2 -c"$CONNS" -d"${DURATION}s" -s benches/wrk/chat.lua "http://$GW" > "$WORK/gateway.wrk" & WRK=$!
sleep $((DURATION / 4)); upgrade 1
sleep $((DURATION / 3)); upgrade 2
wait "$WRK"; wait "$STREAM"
GATEWAY_SUMMARY=$(summary "$WORK/gateway.wrk"); GATEWAY_STREAM=$(stream_outcome gateway)

echo
echo "wrk -t2 -c$CONNS -d${DURATION}s, two reloads/upgrades at $((DURATION / 4)) s and $((DURATION / 4 + DURATION / 3)) s"
echo "nginx -s reload x2:       $NGINX_SUMMARY"
echo "                          20 s stream: $NGINX_STREAM"
echo "gateway -u + SIGQUIT x2:  $GATEWAY_SUMMARY"
echo "                          20 s stream: $GATEWAY_STREAM"
