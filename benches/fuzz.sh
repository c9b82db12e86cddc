#!/usr/bin/env bash
# Runs every cargo-fuzz target for a stated time each and reports its runs
# and whether it found a crash. cargo-fuzz needs nightly flags: on a stable
# toolchain RUSTC_BOOTSTRAP=1 turns them on (set here).
#
#   benches/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Defaults: 300 s, every target. Seeds: fuzz/seeds/<target> (the golden
# inputs for the upstream readers). A crash leaves its input in
# fuzz/artifacts/<target>/; it belongs in a regression test before the fix.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-300}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^ai-api-gateway-fuzz$')
fi
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
# -s none: no sanitizer (the gateway has no unsafe of its own); -a: overflow
# checks on, so an arithmetic overflow is a crash.
cargo fuzz build -s none -a >/dev/null
printf '%-20s %8s %12s %10s  %s\n' target seconds runs corpus result
status=0
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  seeds=()
  [ -d "seeds/$target" ] && seeds=("seeds/$target")
  log=$(mktemp)
  if cargo fuzz run -s none -a "$target" "corpus/$target" "${seeds[@]}" -- \
      -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
    result=ok
  else
    result="CRASH (see fuzz/artifacts/$target/, log $log)"
    status=1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  corpus=$(find "corpus/$target" -type f | wc -l)
  printf '%-20s %8s %12s %10s  %s\n' "$target" "$seconds" "${runs:-?}" "$corpus" "$result"
  [ "$result" = ok ] && rm -f "$log"
done
exit $status
