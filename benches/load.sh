#!/usr/bin/env bash
# Load benchmark in one run, on one mock upstream:
#   direct to the mock, nginx proxy_pass (1 worker), a bare Pingora passthrough
#   (1 thread) and the gateway (1 thread); prints RPS, p50, p99, the proxy's
#   CPU time per request, and ratios.
# On a 2-core machine the proxy under test is pinned to core 1 and wrk and the
# mock to core 0, so the proxies compete with the load generator the same way.
# CPU per request (from /proc, user+system) is the steadiest efficiency figure.
# Usage: [BASELINE_BIN=path] benches/load.sh [seconds_per_round] [connections] [rounds]
# Needs wrk and nginx (apt-get install -y wrk nginx-light).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
CONNS=${2:-32}
ROUNDS=${3:-3}
source benches/common.sh
bench_start wrk nginx redis-server
cargo build --release --bins --example passthrough >/dev/null 2>&1 || cargo build --release --bins --example passthrough
BIN=target/release

MOCK=127.0.0.1:18000; NGINX=127.0.0.1:18001; PASS=127.0.0.1:18002; GW=127.0.0.1:18003; ADMIN=127.0.0.1:18004
GWL=127.0.0.1:18005; ADMINL=127.0.0.1:18006; REDIS_PORT=18007
GWB=127.0.0.1:18008; ADMINB=127.0.0.1:18009
GWF=127.0.0.1:18010; ADMINF=127.0.0.1:18011
GWT=127.0.0.1:18012; ADMINT=127.0.0.1:18013; SINK_PORT=18014


CORES=$(nproc)
LOAD_CPU=0; PROXY_CPU=$(( CORES > 1 ? 1 : 0 ))
"$BIN/mock-upstream" --listen "$MOCK" --threads 1 >/dev/null & PIDS+=($!)
MOCK_PID=$!
taskset -pc "$LOAD_CPU" "$MOCK_PID" >/dev/null
wait_port "$MOCK"

write_nginx_conf "$NGINX" "$MOCK" off
taskset -c "$PROXY_CPU" nginx -c "$WORK/nginx.conf" -p "$WORK" & PIDS+=($!)
wait_port "$NGINX"; NGINX_PID=$(pgrep -P "$(cat "$WORK/nginx.pid")" | head -1)  # the worker

taskset -c "$PROXY_CPU" "$BIN/examples/passthrough" --listen "$PASS" --upstream "$MOCK" --threads 1 >/dev/null 2>&1 & PIDS+=($!)
PASS_PID=$!; wait_port "$PASS"

gateway_yaml gateway "$GW" "$ADMIN" "$MOCK" false > "$WORK/gateway.yaml"
RUST_LOG=warn taskset -c "$PROXY_CPU" "$BIN/ai-api-gateway" -c "$WORK/gateway.yaml" >/dev/null 2>&1 & PIDS+=($!)
GW_PID=$!; wait_port "$GW"

# Every feature on, as users run it: API-key auth among 1,000 keys, a request
# rule and a token rule per key in hybrid mode on Redis, the JSON access log
# to a file, usage read from every answer. (Redis is started below.)
{ gateway_yaml full "$GWF" "$ADMINF" "$MOCK" true; every_feature_on_yaml "$REDIS_PORT"; } > "$WORK/gateway-full.yaml"
export KEY=sk-bench-0


# The same gateway with a request limit per client in hybrid mode on Redis,
# set high enough never to refuse: what admission itself costs.
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >/dev/null & PIDS+=($!)
taskset -pc "$LOAD_CPU" "$!" >/dev/null
wait_port "127.0.0.1:$REDIS_PORT"
{ gateway_yaml limits "$GWL" "$ADMINL" "$MOCK" false; cat <<YAML
    limits: [per-client]
limits:
  mode: hybrid
  redis: {url: "redis://127.0.0.1:$REDIS_PORT"}
  rules:
    - {name: per-client, key: [client_ip], counts: requests, limit: 1000000000, window: minute}
YAML
} > "$WORK/gateway-limits.yaml"
RUST_LOG=warn taskset -c "$PROXY_CPU" "$BIN/ai-api-gateway" -c "$WORK/gateway-limits.yaml" >"$WORK/gateway-limits.log" 2>&1 & PIDS+=($!)
GWL_PID=$!; wait_port "$GWL"
RUST_LOG=warn taskset -c "$PROXY_CPU" "$BIN/ai-api-gateway" -c "$WORK/gateway-full.yaml" >"$WORK/gateway-full.log" 2>&1 & PIDS+=($!)
GWF_PID=$!; wait_port "$GWF"

# BASELINE_BIN: another build of the gateway (say, main's) run with the
# every-feature-on config, measured right after this build's in every
# round: an A/B of a change in the configuration the floors are set for.
BASE_PID=
if [ -n "${BASELINE_BIN:-}" ]; then
  { gateway_yaml baseline "$GWB" "$ADMINB" "$MOCK" true; every_feature_on_yaml "$REDIS_PORT"; } > "$WORK/gateway-baseline.yaml"
  RUST_LOG=warn taskset -c "$PROXY_CPU" "$BASELINE_BIN" -c "$WORK/gateway-baseline.yaml" >/dev/null 2>&1 & PIDS+=($!)
  BASE_PID=$!; wait_port "$GWB"
fi

# Every feature on plus OpenTelemetry traces, every request sampled, to an
# OTLP sink (on the load generator's core).
taskset -c "$LOAD_CPU" python3 benches/otlp_sink.py "$SINK_PORT" & PIDS+=($!)
wait_port "127.0.0.1:$SINK_PORT"
{ gateway_yaml traced "$GWT" "$ADMINT" "$MOCK" true; every_feature_on_yaml "$REDIS_PORT"; cat <<YAML
tracing:
  enabled: true
  endpoint: http://127.0.0.1:$SINK_PORT/v1/traces
  sample_ratio: 1.0
YAML
} > "$WORK/gateway-traced.yaml"
RUST_LOG=warn taskset -c "$PROXY_CPU" "$BIN/ai-api-gateway" -c "$WORK/gateway-traced.yaml" >"$WORK/gateway-traced.log" 2>&1 & PIDS+=($!)
GWT_PID=$!; wait_port "$GWT"

# wrk's latency lines are "50%  1.23ms"; normalise to milliseconds, one
# value per line.
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v=v*1000}; printf "%.3f\n", v}'; }
declare -A RPS P50 P99 CPU REQS SECS TICKS
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
# One measurement of a target; results add up over rounds.
run() {
  local name=$1 addr=$2 pid=${3:-}
  local before=0; [ -n "$pid" ] && before=$(ticks "$pid")
  local out; out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s benches/wrk/chat.lua "http://$addr")
  if echo "$out" | grep -q "Non-2xx"; then echo "$name answered errors:"; echo "$out"; exit 1; fi
  local after=0; [ -n "$pid" ] && after=$(ticks "$pid")
  REQS[$name]=$(( ${REQS[$name]:-0} + $(echo "$out" | awk '/requests in/ {print $1}') ))
  SECS[$name]=$(awk -v a="${SECS[$name]:-0}" -v d="$DURATION" 'BEGIN {print a+d}')
  TICKS[$name]=$(( ${TICKS[$name]:-0} + after - before ))
  RPS[$name]=$(awk -v n="${REQS[$name]}" -v s="${SECS[$name]}" 'BEGIN {printf "%.0f", n/s}')
  # Latency percentiles: the worst round's (conservative).
  local p50 p99; p50=$(echo "$out" | awk '$1=="50%" {print $2}' | to_ms); p99=$(echo "$out" | awk '$1=="99%" {print $2}' | to_ms)
  P50[$name]=$(awk -v a="${P50[$name]:-0}" -v b="$p50" 'BEGIN {print (b>a)?b:a}')
  P99[$name]=$(awk -v a="${P99[$name]:-0}" -v b="$p99" 'BEGIN {print (b>a)?b:a}')
  CPU[$name]=-
  if [ -n "$pid" ]; then
    CPU[$name]=$(awk -v t="${TICKS[$name]}" -v n="${REQS[$name]}" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", t/hz*1e6/n}')
  fi
}
# Warm every target up, then interleave the rounds so that drift in the
# machine's speed falls on all targets alike.
TARGETS=(direct nginx passthrough gateway gateway_limits gateway_full gateway_traced)
[ -n "$BASE_PID" ] && TARGETS+=(baseline)
for addr in "$MOCK" "$NGINX" "$PASS" "$GW" "$GWL" "$GWF" "$GWT" ${BASE_PID:+"$GWB"}; do
  taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d2s -s benches/wrk/chat.lua "http://$addr" >/dev/null
done
for round in $(seq "$ROUNDS"); do
  run direct "$MOCK"
  run nginx "$NGINX" "$NGINX_PID"
  run passthrough "$PASS" "$PASS_PID"
  run gateway "$GW" "$GW_PID"
  run gateway_limits "$GWL" "$GWL_PID"
  run gateway_full "$GWF" "$GWF_PID"
  [ -n "$BASE_PID" ] && run baseline "$GWB" "$BASE_PID"
  run gateway_traced "$GWT" "$GWT_PID"
done

printf "\n%-12s %12s %10s %10s %14s\n" target rps p50_ms p99_ms cpu_us_per_req
for name in "${TARGETS[@]}"; do
  printf "%-12s %12s %10s %10s %14s\n" "$name" "${RPS[$name]}" "${P50[$name]}" "${P99[$name]}" "${CPU[$name]}"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a/b}'; }
echo
echo "passthrough/nginx rps: $(ratio "${RPS[passthrough]}" "${RPS[nginx]}")"
echo "gateway/nginx rps:     $(ratio "${RPS[gateway]}" "${RPS[nginx]}")"
echo "gateway/passthrough:   $(ratio "${RPS[gateway]}" "${RPS[passthrough]}")  (floor 0.9)"
echo "gateway with limits / without, rps: $(ratio "${RPS[gateway_limits]}" "${RPS[gateway]}")  (floor 0.9)"
echo "cpu per request, passthrough/gateway (efficiency vs bare Pingora): $(ratio "${CPU[passthrough]}" "${CPU[gateway]}")"
echo "every feature on, cpu per request: $(ratio "${CPU[gateway_full]}" "${CPU[passthrough]}")x the passthrough (floor 1.15), $(ratio "${CPU[gateway_full]}" "${CPU[nginx]}")x nginx; rps $(ratio "${RPS[gateway_full]}" "${RPS[passthrough]}")x the passthrough"
lines=$(wc -l < "$WORK/full-access.log")
dropped=$(curl -s "http://$ADMINF/metrics" | awk '$1=="access_log_dropped_total" {print $2}')
echo "every feature on: $lines access-log lines written for ${REQS[gateway_full]} requests (and the warm-up), $dropped dropped"
traced_metrics=$(curl -s "http://$ADMINT/metrics")
echo "traces on (every request sampled), cpu per request: $(ratio "${CPU[gateway_traced]}" "${CPU[gateway_full]}")x every feature on without them, $(ratio "${CPU[gateway_traced]}" "${CPU[passthrough]}")x the passthrough; spans exported $(echo "$traced_metrics" | awk '$1=="otel_spans_exported_total" {print $2}'), dropped $(echo "$traced_metrics" | awk '/^otel_spans_dropped_total/ {s+=$2} END {print s+0}')"
if [ -n "$BASE_PID" ]; then
  echo "every feature on, cpu per request, this build/baseline ($BASELINE_BIN): $(ratio "${CPU[gateway_full]}" "${CPU[baseline]}")"
fi

# Latency the gateway adds to one request, without queueing: one connection.
CONNS=1
for round in $(seq "$ROUNDS"); do
  run direct1 "$MOCK"
  run pass1 "$PASS" "$PASS_PID"
  run gateway1 "$GW" "$GW_PID"
  run full1 "$GWF" "$GWF_PID"
done
echo
echo "one connection: direct p50 ${P50[direct1]} ms p99 ${P99[direct1]} ms; passthrough p50 ${P50[pass1]} ms p99 ${P99[pass1]} ms; gateway p50 ${P50[gateway1]} ms p99 ${P99[gateway1]} ms"
echo "every feature on, one connection: p50 ${P50[full1]} ms p99 ${P99[full1]} ms; added at p50 $(awk -v g="${P50[full1]}" -v d="${P50[direct1]}" 'BEGIN {printf "%.3f ms", g-d}'), at p99 $(awk -v g="${P99[full1]}" -v d="${P99[direct1]}" 'BEGIN {printf "%.3f ms", g-d}') (floors 0.15 / 0.5 ms)"
echo "latency added by the gateway at p50: $(awk -v g="${P50[gateway1]}" -v d="${P50[direct1]}" 'BEGIN {printf "%.3f ms", g-d}'), at p99: $(awk -v g="${P99[gateway1]}" -v d="${P99[direct1]}" 'BEGIN {printf "%.3f ms", g-d}')"

# The same on one core: wrk, the mock and the proxy take turns on the
# proxy's core. Above, each request crosses cores four times, and in a VM a
# wake-up on the other core can cost more than the proxy's own work; here
# what a proxy adds is its own path. Each round measures the mock directly
# right before each proxy, and the added latency is the median over rounds
# of the difference (one stray spike in a round moves the worst round's
# p99 by a millisecond on this machine).
latency() {  # prints "p50 p99" in ms for one run at one connection
  taskset -c "$PROXY_CPU" wrk -t1 -c1 -d"${DURATION}s" --latency -s benches/wrk/chat.lua "http://$1" |
    awk '$1=="50%" || $1=="99%" {print $2}' | to_ms | paste -sd' '
}
median() { sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
taskset -pc "$PROXY_CPU" "$MOCK_PID" >/dev/null
declare -A ADDED50 ADDED99
for round in $(seq "$ROUNDS"); do
  for target in nginx:$NGINX passthrough:$PASS full:$GWF; do
    read -r d50 d99 <<<"$(latency "$MOCK")"
    read -r p50 p99 <<<"$(latency "${target#*:}")"
    ADDED50[${target%%:*}]+="$(awk -v a="$p50" -v b="$d50" 'BEGIN {print a-b}') "
    ADDED99[${target%%:*}]+="$(awk -v a="$p99" -v b="$d99" 'BEGIN {print a-b}') "
  done
done
taskset -pc "$LOAD_CPU" "$MOCK_PID" >/dev/null
added() { printf "%.3f / %.3f ms" "$(tr ' ' '\n' <<<"${ADDED50[$1]}" | grep . | median)" "$(tr ' ' '\n' <<<"${ADDED99[$1]}" | grep . | median)"; }
echo "one connection, one core, added at p50 / p99 (median of $ROUNDS rounds): nginx $(added nginx), passthrough $(added passthrough), every feature on $(added full) (floors 0.15 / 0.5 ms)"
