#!/bin/bash
# A/B of the TAP path: bench_tap.py --only cone,throughput on two source trees, alternating.
#   benchmarks/run_tap_ab.sh OLD_SRC NEW_SRC [ROUNDS] [DATA]
# OLD_SRC / NEW_SRC: `src` directories (e.g. `git archive COMMIT src | tar -x -C /tmp/old`);
# this checkout's bench_tap.py measures both (through PYTHONPATH), so only the code differs.
# PY: the interpreter (default .venv/bin/python). Results: /tmp/tap-ab-{old,new}-ROUND.md; the lines the comparison needs are printed.
set -euo pipefail
old=$1 new=$2 rounds=${3:-2} data=${4:-demo-data}
cd "$(dirname "$0")/.."
for round in $(seq 1 "$rounds"); do
  for side in old new; do
    if [ "$side" = old ]; then src=$old; else src=$new; fi
    out=/tmp/tap-ab-$side-$round.md
    echo "=== round $round $side ($src) $(date -u +%H:%M:%S) load $(cut -d' ' -f1 /proc/loadavg)"
    PYTHONPATH=$src timeout 1200 "${PY:-.venv/bin/python}" benchmarks/bench_tap.py --only cone,throughput \
      --serve-args '--workers 2' --data "$data" --out "$out" > /dev/null
    grep -E "HTTP cone p50 /|^CPU per cone|successful queries|server CPU \(user" "$out" | sort -u
  done
done
