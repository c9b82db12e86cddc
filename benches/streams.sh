#!/usr/bin/env bash
# Stream benchmark in one run, on one mock upstream: what a streamed answer
# costs through nginx, a bare Pingora passthrough (the baseline), and the
# gateway, with its features on (API key, a token limit, the access log),
# the same dialect end to end and translated both ways.
#   cpu_us_per_event: the proxy's CPU time (user+system, from /proc) per
#     content event, streams of EVENTS events back to back on CONNS
#     connections;
#   kb_per_stream: the proxy's RSS growth per open stream, HELD streams held
#     open after their first event (x-mock-hold), each target in a fresh
#     process; RSS before, during, and 5 s after the streams closed.
#   kb_per_stream_again: the same HELD streams opened a second time in the
#     same process, over its RSS at start: memory that the first surge left
#     to be reused (buffers zeroed on reuse are resident in full).
# On a 2-core machine the proxy is pinned to core 1, wrk and the mock to core 0.
# Usage: benches/streams.sh [seconds_per_round] [connections] [events] [held] [rounds]
# Needs wrk, nginx and python3 (apt-get install -y wrk nginx-light).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
CONNS=${2:-16}
EVENTS=${3:-100}
HELD=${4:-1000}
ROUNDS=${5:-3}
source benches/common.sh
bench_start wrk nginx python3
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cargo build --release --bins --example passthrough >/dev/null 2>&1 || cargo build --release --bins --example passthrough
BIN=target/release

MOCK=127.0.0.1:18100; NGINX=127.0.0.1:18101; PASS=127.0.0.1:18102
CORES=$(nproc)
LOAD_CPU=0; PROXY_CPU=$(( CORES > 1 ? 1 : 0 ))
KEY=sk-bench-key

"$BIN/mock-upstream" --listen "$MOCK" --threads 1 >/dev/null & PIDS+=($!)
taskset -pc "$LOAD_CPU" "$!" >/dev/null
wait_port "$MOCK"

write_nginx_conf "$NGINX" "$MOCK" off
taskset -c "$PROXY_CPU" nginx -c "$WORK/nginx.conf" -p "$WORK" & PIDS+=($!)
wait_port "$NGINX"; NGINX_PID=$(pgrep -P "$(cat "$WORK/nginx.pid")" | head -1)

taskset -c "$PROXY_CPU" "$BIN/examples/passthrough" --listen "$PASS" --upstream "$MOCK" --threads 1 >/dev/null 2>&1 & PIDS+=($!)
PASS_PID=$!; wait_port "$PASS"

# One gateway process per gateway target (fresh memory for each); every one
# serves both models on both APIs.
declare -A GW_ADDR GW_PID
start_gateway() {
  local name=$1 port=$2
  cat > "$WORK/$name.yaml" <<YAML
server:
  threads: 1
  drain_timeout: 1s
  upgrade_sock: $WORK/$name.sock
  pid_file: $WORK/$name.pid
listen:
  proxy: ["127.0.0.1:$port"]
  admin: "127.0.0.1:$((port + 50))"
access_log:
  enabled: true
auth:
  api_keys:
    - {id: bench, key: $KEY}
limits:
  mode: local
  rules:
    - {name: tokens-per-key, key: [api_key], counts: total_tokens, limit: 1000000000000, window: minute}
  global_rules: [tokens-per-key]
upstreams:
  openai:
    backends:
      - {base_url: "http://$MOCK", provider: openai, api_key: provider-key}
  anthropic:
    backends:
      - {base_url: "http://$MOCK", provider: anthropic, api_key: provider-key}
routes:
  - {name: gpt, paths: [/v1/chat/completions], models: [mock-gpt], upstream: openai}
  - {name: claude, paths: [/v1/messages], models: [mock-claude], upstream: anthropic}
YAML
  RUST_LOG=info taskset -c "$PROXY_CPU" "$BIN/ai-api-gateway" -c "$WORK/$name.yaml" >/dev/null 2>"$WORK/$name.log" & PIDS+=($!)
  GW_PID[$name]=$!; GW_ADDR[$name]=127.0.0.1:$port
  wait_port "127.0.0.1:$port"
}
start_gateway gateway 18110
start_gateway translated 18111
start_gateway translated_reverse 18112

# target → address, pid, client API, model
declare -A ADDR PID API MODEL
ADDR[nginx]=$NGINX;            PID[nginx]=$NGINX_PID;  API[nginx]=openai;  MODEL[nginx]=mock-gpt
ADDR[passthrough]=$PASS;       PID[passthrough]=$PASS_PID; API[passthrough]=openai; MODEL[passthrough]=mock-gpt
for name in gateway translated translated_reverse; do ADDR[$name]=${GW_ADDR[$name]}; PID[$name]=${GW_PID[$name]}; done
API[gateway]=openai;             MODEL[gateway]=mock-gpt
API[translated]=openai;          MODEL[translated]=mock-claude
API[translated_reverse]=anthropic; MODEL[translated_reverse]=mock-gpt
TARGETS=(nginx passthrough gateway translated translated_reverse)

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
body_of() {
  if [ "${API[$1]}" = anthropic ]; then
    echo "{\"model\":\"${MODEL[$1]}\",\"max_tokens\":64,\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"
  else
    echo "{\"model\":\"${MODEL[$1]}\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"
  fi
}
path_of() { [ "${API[$1]}" = anthropic ] && echo /v1/messages || echo /v1/chat/completions; }
auth_of() { [ "${API[$1]}" = anthropic ] && echo "x-api-key:$KEY" || echo "authorization:Bearer $KEY"; }

# Holds HELD streams open on a target and prints its RSS with them open;
# closes them when done.
hold_streams() {
  local name=$1 surge=$2 holder rss
  mkfifo "$WORK/$name.$surge.in"
  python3 benches/hold_streams.py "${ADDR[$name]}" "$(path_of "$name")" "$(body_of "$name")" "$HELD" \
    "$(auth_of "$name")" "x-mock-hold:bench-$name-$surge" "x-mock-chunks:$EVENTS" \
    <"$WORK/$name.$surge.in" >"$WORK/$name.$surge.out" 2>&1 &
  holder=$!
  exec 3>"$WORK/$name.$surge.in"
  for _ in $(seq 600); do grep -q "^open" "$WORK/$name.$surge.out" && break; kill -0 "$holder" 2>/dev/null || break; sleep 0.1; done
  grep -q "^open $HELD" "$WORK/$name.$surge.out" || { echo "$name: streams did not open:" >&2; cat "$WORK/$name.$surge.out" >&2; exit 1; }
  sleep 1
  rss=$(rss_kb "${PID[$name]}")
  exec 3>&-
  wait "$holder" || true
  echo "$rss"
}
per_stream() { awk -v a="$1" -v b="$2" -v n="$HELD" 'BEGIN {printf "%.1f", (a-b)/n}'; }

# Memory first, on fresh processes: RSS before, with HELD open streams, 5 s
# after they closed; then the same surge again.
declare -A KB KB_AGAIN BEFORE DURING AFTER DURING_AGAIN AFTER_AGAIN
for name in "${TARGETS[@]}"; do
  BEFORE[$name]=$(rss_kb "${PID[$name]}")
  DURING[$name]=$(hold_streams "$name" 1)
  sleep 5
  AFTER[$name]=$(rss_kb "${PID[$name]}")
  DURING_AGAIN[$name]=$(hold_streams "$name" 2)
  sleep 5
  AFTER_AGAIN[$name]=$(rss_kb "${PID[$name]}")
  KB[$name]=$(per_stream "${DURING[$name]}" "${BEFORE[$name]}")
  KB_AGAIN[$name]=$(per_stream "${DURING_AGAIN[$name]}" "${BEFORE[$name]}")
done

declare -A TICKS REQS
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
run() {
  local name=$1
  local before after out
  before=$(ticks "${PID[$name]}")
  out=$(API=${API[$name]} MODEL=${MODEL[$name]} EVENTS=$EVENTS KEY=$KEY \
    taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" -s benches/wrk/stream.lua "http://${ADDR[$name]}")
  after=$(ticks "${PID[$name]}")
  if echo "$out" | grep -q "Non-2xx"; then echo "$name answered errors:"; echo "$out"; exit 1; fi
  REQS[$name]=$(( ${REQS[$name]:-0} + $(echo "$out" | awk '/requests in/ {print $1}') ))
  TICKS[$name]=$(( ${TICKS[$name]:-0} + after - before ))
}
for name in "${TARGETS[@]}"; do
  API=${API[$name]} MODEL=${MODEL[$name]} EVENTS=$EVENTS KEY=$KEY \
    taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d2s -s benches/wrk/stream.lua "http://${ADDR[$name]}" >/dev/null
done
for round in $(seq "$ROUNDS"); do
  for name in "${TARGETS[@]}"; do run "$name"; done
done

hz=$(getconf CLK_TCK)
declare -A US
printf "\n%-20s %10s %18s %14s %20s\n" target streams cpu_us_per_event kb_per_stream kb_per_stream_again
for name in "${TARGETS[@]}"; do
  US[$name]=$(awk -v t="${TICKS[$name]}" -v n="${REQS[$name]}" -v e="$EVENTS" -v hz="$hz" 'BEGIN {printf "%.3f", t/hz*1e6/(n*e)}')
  printf "%-20s %10s %18s %14s %20s\n" "$name" "${REQS[$name]}" "${US[$name]}" "${KB[$name]}" "${KB_AGAIN[$name]}"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
echo
echo "cpu per event vs passthrough: nginx $(ratio "${US[nginx]}" "${US[passthrough]}"), gateway $(ratio "${US[gateway]}" "${US[passthrough]}"), translated $(ratio "${US[translated]}" "${US[passthrough]}"), translated_reverse $(ratio "${US[translated_reverse]}" "${US[passthrough]}")"
echo "memory per open stream vs passthrough: gateway $(ratio "${KB[gateway]}" "${KB[passthrough]}"), translated $(ratio "${KB[translated]}" "${KB[passthrough]}"), translated_reverse $(ratio "${KB[translated_reverse]}" "${KB[passthrough]}")"
echo "the same, second surge: gateway $(ratio "${KB_AGAIN[gateway]}" "${KB_AGAIN[passthrough]}"), translated $(ratio "${KB_AGAIN[translated]}" "${KB_AGAIN[passthrough]}"), translated_reverse $(ratio "${KB_AGAIN[translated_reverse]}" "${KB_AGAIN[passthrough]}")"
echo
printf "%-20s %12s %12s %12s %14s %14s %10s\n" target rss_before_kb rss_during_kb rss_after_kb rss_during2_kb rss_after2_kb after/start
for name in "${TARGETS[@]}"; do
  printf "%-20s %12s %12s %12s %14s %14s %10s\n" "$name" "${BEFORE[$name]}" "${DURING[$name]}" "${AFTER[$name]}" \
    "${DURING_AGAIN[$name]}" "${AFTER_AGAIN[$name]}" "$(ratio "${AFTER_AGAIN[$name]}" "${BEFORE[$name]}")"
done
echo "($EVENTS content events per stream, $CONNS connections, $ROUNDS rounds of ${DURATION}s; $HELD streams held)"
