#!/usr/bin/env bash
# Instructions per request, counted by valgrind's callgrind: the bare Pingora
# passthrough, the plain gateway and the gateway with every feature on, each
# under `wrk -c8` for a while, the count taken from warm-up's end to the
# load's end. User space only (the kernel's loopback work, about the same
# for all three, is not in it).
#
# Why: CPU time per request on this machine moves by 30% and more from one
# minute to the next (benches/README.md), so an A/B of a change worth a few
# percent drowns in it. Instruction counts repeat to within a percent from
# run to run, so they tell whether a change took work away; load.sh still
# says what the work costs in time.
#
# Columns: ir_per_req, all user-space instructions per request;
# apart_per_req, those of them counted apart because valgrind inflates
# them: glibc's memcpy (callgrind counts each iteration of its `rep movsb`
# as an instruction, so it is closer to bytes copied than to time) and
# SHA-256 (valgrind hides the CPU's SHA extensions, so sha2 falls back to
# its portable code; natively an API-key lookup hashes with SHA-NI);
# rest_per_req, the others, and their ratio to the passthrough's.
#
# Usage: [BASELINE_BIN=path] benches/instructions.sh [seconds] [top]
#   BASELINE_BIN: another gateway build, counted with the every-feature-on
#   config too; TOP: how many functions of the every-feature-on gateway to
#   list by their own instructions (default 25).
# Needs wrk, valgrind and redis-server (apt-get install -y wrk valgrind).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
TOP=${2:-25}
source benches/common.sh
bench_start wrk valgrind callgrind_control callgrind_annotate redis-server
cargo build --release --bins --example passthrough >/dev/null 2>&1 || cargo build --release --bins --example passthrough
BIN=target/release

MOCK=127.0.0.1:18200; PASS=127.0.0.1:18201; GW=127.0.0.1:18202; ADMIN=127.0.0.1:18203; REDIS_PORT=18204
"$BIN/mock-upstream" --listen "$MOCK" --threads 1 >/dev/null & PIDS+=($!)
wait_port "$MOCK"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >/dev/null & PIDS+=($!)
wait_port "127.0.0.1:$REDIS_PORT"

gateway_yaml gateway "$GW" "$ADMIN" "$MOCK" false > "$WORK/gateway.yaml"
{ gateway_yaml gateway "$GW" "$ADMIN" "$MOCK" true; every_feature_on_yaml "$REDIS_PORT"; } > "$WORK/gateway-full.yaml"
export KEY=sk-bench-0

declare -A IR APART REQS
# count NAME ADDR COMMAND...: starts COMMAND under callgrind with counting
# off, warms it up, counts DURATION seconds of load, stops it.
count() {
  local name=$1 addr=$2; shift 2
  local out="$WORK/callgrind.$name"
  RUST_LOG=warn valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" "$@" >"$WORK/$name.log" 2>&1 &
  local pid=$!; PIDS+=("$pid")
  # Valgrind reads the binary's debug info first: allow it a minute.
  wait_port "$addr" 600
  wrk -t1 -c8 -d3s -s benches/wrk/chat.lua "http://$addr" >/dev/null
  callgrind_control -i on "$pid" >/dev/null 2>&1
  local result; result=$(wrk -t1 -c8 -d"${DURATION}s" -s benches/wrk/chat.lua "http://$addr")
  callgrind_control -i off "$pid" >/dev/null 2>&1
  if echo "$result" | grep -q "Non-2xx"; then echo "$name answered errors:"; echo "$result"; exit 1; fi
  callgrind_control -d "$pid" >/dev/null 2>&1
  kill "$pid"; wait "$pid" 2>/dev/null || true
  # The dump asked for is the first part (out.1); the one at exit, out, is empty.
  REQS[$name]=$(echo "$result" | awk '/requests in/ {print $1}')
  IR[$name]=$(awk '/^totals:/ {print $2}' "$out.1")
  APART[$name]=$(callgrind_annotate --inclusive=no "$out.1" 2>/dev/null |
    awk '/__memcpy|__memmove|sha256::compress256/ {gsub(",", "", $1); s += $1} END {print s + 0}')
}
count passthrough "$PASS" "$BIN/examples/passthrough" --listen "$PASS" --upstream "$MOCK" --threads 1
count gateway "$GW" "$BIN/ai-api-gateway" -c "$WORK/gateway.yaml"
count gateway_full "$GW" "$BIN/ai-api-gateway" -c "$WORK/gateway-full.yaml"
TARGETS=(passthrough gateway gateway_full)
if [ -n "${BASELINE_BIN:-}" ]; then
  count baseline "$GW" "$BASELINE_BIN" -c "$WORK/gateway-full.yaml"
  TARGETS+=(baseline)
fi

per_req() { awk -v a="$1" -v n="$2" 'BEGIN {printf "%.0f", a/n}'; }
printf "\n%-14s %9s %12s %14s %14s %20s\n" target requests ir_per_req apart_per_req rest_per_req rest_vs_passthrough
rest_pass=$(per_req "$(( IR[passthrough] - APART[passthrough] ))" "${REQS[passthrough]}")
for name in "${TARGETS[@]}"; do
  rest=$(per_req "$(( IR[$name] - APART[$name] ))" "${REQS[$name]}")
  printf "%-14s %9s %12s %14s %14s %20s\n" "$name" "${REQS[$name]}" "$(per_req "${IR[$name]}" "${REQS[$name]}")" \
    "$(per_req "${APART[$name]}" "${REQS[$name]}")" "$rest" "$(awk -v a="$rest" -v b="$rest_pass" 'BEGIN {printf "%.3f", a/b}')"
done
echo
echo "every feature on, the $TOP functions with the most instructions of their own, per request:"
callgrind_annotate --inclusive=no "$WORK/callgrind.gateway_full.1" 2>/dev/null |
  awk -v n="${REQS[gateway_full]}" -v top="$TOP" '
    /^-+$/ { dashes++; next }
    dashes == 6 && $1 ~ /^[0-9,]+$/ && shown < top {
      v = $1; gsub(",", "", v); $1 = ""; $2 = ""
      sub(/^ +/, ""); sub(/ \[.*$/, ""); sub(/^.*\.(rs|c|h|S):/, "")
      printf "%8.0f  %s\n", v / n, substr($0, 1, 110); shown++
    }'
