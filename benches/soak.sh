#!/usr/bin/env bash
# An hour (or DURATION seconds) of the release gateway under a fixed mix,
# sampled every 10 s: RSS, open fds, p50/p99 of plain chats, unexpected
# answers (benches/soak.py says what the mix is and how it is judged).
#
#   benches/soak.sh [DURATION_SECONDS] [RATE] [OUT_DIR]
#
# Defaults: 3600 s, 200 requests/s (the 2-core machine holds about 30x
# that; the point is time, not load), target/soak. Writes soak.csv,
# soak.json and soak.png there; exits non-zero when a criterion fails.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-3600}
rate=${2:-200}
out=${3:-target/soak}
command -v redis-server >/dev/null || { echo "redis-server is needed: apt-get install -y redis-server"; exit 1; }
cargo build --release --bins
# matplotlib for the plot, in a venv of its own under target/.
venv=target/soak-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import matplotlib" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q matplotlib
fi
mkdir -p "$out"
"$venv/bin/python" benches/soak.py \
  --gateway target/release/ai-api-gateway --mock target/release/mock-upstream \
  --duration "$duration" --rate "$rate" --out "$out" --plot
