#!/bin/sh
# Issue 18 items 1, 2, 5: bench_perf.py with the code before the work (BEFORE: a source tree,
# e.g. `git archive 78f2078 src | tar -x -C /tmp/before`) and with this tree, after / before /
# after so that a change of machine load shows. Run from the repository root.
set -e
BEFORE=${BEFORE:-/tmp/before/src}
PY=${PY:-.venv/bin/python}
OUT=${OUT:-benchmarks/work/query}
ARGS="$*"
cat /proc/loadavg
PYTHONPATH=$PWD/src $PY benchmarks/bench_perf.py $ARGS --out "$OUT/perf-after-1.json"
PYTHONPATH=$BEFORE $PY benchmarks/bench_perf.py $ARGS --out "$OUT/perf-before.json"
PYTHONPATH=$PWD/src $PY benchmarks/bench_perf.py $ARGS --out "$OUT/perf-after-2.json"
cat /proc/loadavg
