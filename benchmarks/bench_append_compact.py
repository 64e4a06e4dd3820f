"""Rapid ingest (issue 17): how long appends wait while a compaction runs.

Builds a base HATS table and appends ``--pending`` visit-like batches; then, for
``--rounds`` rounds, an appender commits ``--batch-rows``-row batches one after another
while the main thread (a) sleeps as long as the last compaction took (no compaction: the
baseline) and (b) compacts the table; each append's latency is recorded in both phases.
Before compactions stopped holding the append lock for their whole run, an append that
arrived during one waited for all of it (its latency was up to the compaction's duration).

Run from the repository root::

    PYTHONPATH=src .venv/bin/python benchmarks/bench_append_compact.py \\
        --out benchmarks/results/append_compact.md
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq

from bench_append import base_table, finish, pct, visit
from skyvault.catalog.append import append, status
from skyvault.catalog.compact import compact
from skyvault.catalog.ingest import IngestOptions, ingest

TABLE = "s.t"


def _phase(
    data: Path, first: int, rows: int, work: Callable[[], object]
) -> tuple[list[float], float, int]:
    """Append batches from ``first`` while ``work()`` runs: (latencies, work seconds, next)."""
    stop = threading.Event()
    latencies: list[float] = []
    state = {"b": first}

    def appender() -> None:
        while not stop.is_set():
            t = time.perf_counter()
            append(data, TABLE, visit(state["b"], rows), f"v{state['b']}")
            latencies.append(time.perf_counter() - t)
            state["b"] += 1

    thread = threading.Thread(target=appender)
    thread.start()
    time.sleep(0.3)
    before = len(latencies)
    t0 = time.perf_counter()
    work()
    took = time.perf_counter() - t0
    during = latencies[before:]
    stop.set()
    thread.join()
    return during or latencies[-1:], took, state["b"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-rows", type=int, default=1_000_000)
    ap.add_argument("--max-rows", type=int, default=50_000)
    ap.add_argument("--pending", type=int, default=100)
    ap.add_argument("--batch-rows", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        pq.write_table(base_table(args.base_rows), root / "base.parquet")
        data = root / "data"
        options = IngestOptions(max_rows_per_partition=args.max_rows)
        ingest([root / "base.parquet"], TABLE, data, ra="ra", dec="dec", options=options)
        b = 1
        rows: list[tuple[str, list[float], float]] = []
        last = 1.0
        for _ in range(args.rounds):
            for _ in range(args.pending):
                append(data, TABLE, visit(b, args.batch_rows), f"v{b}")
                b += 1
            quiet, _, b = _phase(data, b, args.batch_rows, functools.partial(time.sleep, last))
            rows.append(("no compaction", quiet, last))
            busy, last, b = _phase(data, b, args.batch_rows, lambda: compact(data, TABLE))
            rows.append(("during a compaction", busy, last))
        ids = status(data, TABLE)
    lines = [
        "# Rapid ingest: appends while a compaction runs (issue 17)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores shared with other work; load "
        f"average at the end {' / '.join(f'{x:.1f}' for x in os.getloadavg())}.",
        f"Base: {args.base_rows:,} rows, max {args.max_rows:,} rows per partition; each round "
        f"appends {args.pending} batches of {args.batch_rows:,} rows, then one appender commits "
        f"{args.batch_rows:,}-row batches beside (a) a pause as long as the last compaction "
        "and (b) a compaction.",
        "",
        "| phase | phase length | appends | p50 | p99 | max | max / phase length |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, lat, took in rows:
        lines.append(
            f"| {label} | {took:.2f} s | {len(lat)} | {pct(lat, 50) * 1e3:.0f} ms | "
            f"{pct(lat, 99) * 1e3:.0f} ms | {max(lat) * 1e3:.0f} ms | {max(lat) / took:.2f} |"
        )
    lines += [
        "",
        f"Final snapshot {ids.snapshot}, {len(ids.batch_ids)} batch ids. Before this change "
        "an append arriving during a compaction waited for all of it (max / phase length "
        "close to 1).",
    ]
    finish(lines, "bench_append_compact.py", args)


if __name__ == "__main__":
    main()
