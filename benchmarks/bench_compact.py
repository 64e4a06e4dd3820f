"""Compaction throughput against ingest's (issue 17), on the table bench_append.py builds.

Builds once a base of ``--base-rows`` uniform rows (max ``--max-rows`` per partition) plus
``--latency-batches`` visits of ``--batch-rows`` rows and small batches up to ``--batches``
(bench_append.py's table), then for ``--rounds`` rounds, alternating: ingests the base
afresh (rows/s of base) and compacts a fresh copy of the appended table (rows/s of table).
``--compare-with FILE`` also times another ``compact.py`` (e.g. ``git show
REV:src/skyvault/catalog/compact.py > /tmp/old.py``) in the same rounds.

Run from the repository root::

    PYTHONPATH=src .venv/bin/python benchmarks/bench_compact.py
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from bench_append import base_table, visit
from skyvault.catalog.append import append
from skyvault.catalog.compact import compact
from skyvault.catalog.ingest import IngestOptions, ingest


def load_compact(path: Path) -> Callable[..., Any]:
    spec = importlib.util.spec_from_file_location("compact_other", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.compact  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-rows", type=int, default=1_000_000)
    ap.add_argument("--max-rows", type=int, default=50_000)
    ap.add_argument("--batch-rows", type=int, default=10_000)
    ap.add_argument("--latency-batches", type=int, default=100)
    ap.add_argument("--batches", type=int, default=1_000)
    ap.add_argument("--small-rows", type=int, default=1_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--compare-with", type=Path)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_compact_"))
    src = tmp / "base.parquet"
    pq.write_table(base_table(args.base_rows), src)
    opts = IngestOptions(max_rows_per_partition=args.max_rows)
    built = tmp / "built"
    ingest([src], "s.compact", built, ra="ra", dec="dec", options=opts)
    for b in range(1, args.batches + 1):
        n = args.batch_rows if b <= args.latency_batches else args.small_rows
        append(built, "s.compact", visit(b, n), f"v{b}")
    appended = (
        args.latency_batches * args.batch_rows
        + (args.batches - args.latency_batches) * args.small_rows
    )
    table_rows = args.base_rows + appended
    runs: dict[str, Callable[..., Any]] = {"compact": compact}
    if args.compare_with:
        runs["compact (other)"] = load_compact(args.compare_with)
    rates: dict[str, list[float]] = {"ingest": [], **{k: [] for k in runs}}
    loads: list[float] = []
    for r in range(args.rounds):
        order = list(runs) if r % 2 == 0 else list(reversed(runs))
        shutil.rmtree(tmp / "ingest", ignore_errors=True)
        t = time.perf_counter()
        ingest([src], "s.base", tmp / "ingest", ra="ra", dec="dec", options=opts)
        rates["ingest"].append(args.base_rows / (time.perf_counter() - t))
        for label in order:
            trial = tmp / "trial"
            shutil.rmtree(trial, ignore_errors=True)
            shutil.copytree(built, trial, symlinks=True)
            os.sync()
            t = time.perf_counter()
            result = runs[label](trial, "s.compact")
            rates[label].append(table_rows / (time.perf_counter() - t))
        loads.append(os.getloadavg()[0])
    print(
        f"table: {args.base_rows:,} base + {appended:,} appended rows in {args.batches} "
        f"batches; {result.rewritten} of {result.partitions} partitions rewritten; "
        f"load {min(loads):.1f}-{max(loads):.1f}"
    )
    for label, values in rates.items():
        print(
            f"{label:>16}: median {np.median(values):,.0f} rows/s  "
            f"({', '.join(f'{v / 1e3:,.0f}k' for v in values)})"
        )
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
