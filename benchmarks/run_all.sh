#!/bin/sh
# Re-measure every figure in benchmarks/results/, one script after the other (from the
# repository root; about 1 h 30 on 2 cores, most of it the 200M-row scale run and the
# first build of the 20M-row data). Needs: .venv with '.[dev,bench]', and as root the
# Debian packages postgresql-15-q3c, postgresql-15-pgsphere and gavodachs2-server.
# Pass a script's name to run only that one: sh benchmarks/run_all.sh peers
set -eu
PY=${PYTHON:-.venv/bin/python}
only=${1:-}
run() {
    name=$1; shift
    if [ -z "$only" ] || [ "$only" = "$name" ]; then
        echo "=== $name: $*"
        "$PY" "$@"
    fi
}
run votable benchmarks/bench_votable.py            # prints; results/votable.md
run ingest  benchmarks/bench_ingest.py             # prints; results/ingest.md
run query   benchmarks/bench_query.py              # prints + work/query/results.json; results/query.md
run geometry benchmarks/bench_compile_geometry.py  # prints
run xmatch  benchmarks/bench_crossmatch_upload.py  # prints
run tap     benchmarks/bench_tap.py --serve-args '--workers 2'   # writes results/tap.md
run perf    benchmarks/bench_perf.py               # prints + JSON; results/perf.md
run memory  benchmarks/bench_memory.py             # writes results/memory.md
run bulk    benchmarks/bench_bulk.py               # prints; results/bulk.md
run hips    benchmarks/bench_hips.py               # writes/prints; results/hips.md
run hipsimg benchmarks/bench_hips_image.py         # prints; results/hips-image.md
run peers   benchmarks/bench_peers.py              # writes results/peers.md
run scale   benchmarks/bench_scale.py              # writes results/scale.md
run cutout  benchmarks/bench_cutout.py --out benchmarks/results/cutout.md   # writes results/cutout.md
run images  benchmarks/bench_images.py             # prints; results/images.md
run sia     benchmarks/bench_sia.py                # writes results/sia.md
