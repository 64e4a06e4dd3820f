"""Rapid ingest (issue 17): append latency, sustained rate, cone latency over deltas.

Builds a base HATS table, then

1. appends ``--latency-batches`` visit-like batches of ``--batch-rows`` rows (2-degree
   fields), timing each from the call until a new query sees all of its rows (p50/p99) and
   the sustained rate (rows appended per second of wall time, one appender);
2. appends small batches until the table has ``--batches`` of them, to two tables built from
   the same base and batches (``s.delta`` keeps its deltas, ``s.compact`` is compacted,
   with the compaction timed against the base's ingest rate);
3. runs the same cones on both, alternating, and reports the latency ratio.

Run from the repository root::

    PYTHONPATH=src .venv/bin/python benchmarks/bench_append.py --out benchmarks/results/append.md
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import skyvault
from skyvault.catalog.append import append, status
from skyvault.catalog.compact import compact
from skyvault.catalog.ingest import IngestOptions, ingest


def visit(b: int, n: int) -> pa.Table:
    rng = np.random.default_rng(b)
    cra, cdec = rng.uniform(0, 360), np.degrees(np.arcsin(rng.uniform(-0.8, 0.8)))
    dec = np.clip(cdec + rng.uniform(-1, 1, n), -90, 90)
    ra = np.mod(cra + rng.uniform(-1, 1, n) / np.cos(np.radians(cdec)), 360)
    return pa.table(
        {
            "id": pa.array(b * 10_000_000 + np.arange(n, dtype=np.int64)),
            "ra": ra,
            "dec": dec,
            "mag": rng.uniform(15, 25, n).astype(np.float32),
            "batch": np.full(n, b, dtype=np.int64),
        }
    )


def base_table(n: int) -> pa.Table:
    rng = np.random.default_rng(0)
    return pa.table(
        {
            "id": pa.array(np.arange(n, dtype=np.int64)),
            "ra": rng.uniform(0, 360, n),
            "dec": np.degrees(np.arcsin(rng.uniform(-1, 1, n))),
            "mag": rng.uniform(15, 25, n).astype(np.float32),
            "batch": np.zeros(n, dtype=np.int64),
        }
    )


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def finish(lines: list[str], script: str, args: argparse.Namespace) -> None:
    """Print the Markdown ``lines`` and the command that ran ``script`` with ``args`` (all
    but ``--out``); write them to ``args.out`` too when it is set."""
    command = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out")
    run = f"Command: `PYTHONPATH=src .venv/bin/python benchmarks/{script} {command}`"
    text = "\n".join([*lines, "", run]) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-rows", type=int, default=2_000_000)
    ap.add_argument("--max-rows", type=int, default=100_000)
    ap.add_argument("--batch-rows", type=int, default=10_000)
    ap.add_argument("--latency-batches", type=int, default=100)
    ap.add_argument("--batches", type=int, default=1_000)
    ap.add_argument("--small-rows", type=int, default=1_000)
    ap.add_argument("--cones", type=int, default=60)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_append_"))
    data = tmp / "data"
    src = tmp / "base.parquet"
    pq.write_table(base_table(args.base_rows), src)
    opts = IngestOptions(max_rows_per_partition=args.max_rows)
    t0 = time.perf_counter()
    ingest([src], "s.delta", data, ra="ra", dec="dec", options=opts)
    ingest_s = time.perf_counter() - t0
    ingest([src], "s.compact", data, ra="ra", dec="dec", options=opts)
    arc = skyvault.open(data)
    lines: list[str] = []

    # 1. latency and rate of 10k-row appends
    visible: list[float] = []
    commit: list[float] = []
    t_all = time.perf_counter()
    for b in range(1, args.latency_batches + 1):
        rows = visit(b, args.batch_rows)
        t = time.perf_counter()
        append(data, "s.delta", rows, f"v{b}")
        commit.append(time.perf_counter() - t)
        while True:
            n = arc.query(f"SELECT COUNT(*) AS n FROM s.delta WHERE batch = {b}").column(0)[0]
            if n.as_py() == args.batch_rows:
                break
        visible.append(time.perf_counter() - t)
    rate_s = time.perf_counter() - t_all
    visits = [visit(b, args.batch_rows) for b in range(1, args.latency_batches + 1)]
    t, cpu = time.perf_counter(), time.process_time()
    for b, rows in enumerate(visits, 1):
        append(data, "s.compact", rows, f"v{b}")
    append_only = time.perf_counter() - t
    append_cpu = time.process_time() - cpu
    rate = args.latency_batches * args.batch_rows / append_only

    # 2. up to --batches batches on both tables
    for b in range(args.latency_batches + 1, args.batches + 1):
        rows = visit(b, args.small_rows)
        append(data, "s.delta", rows, f"v{b}")
        append(data, "s.compact", rows, f"v{b}")
    snap = status(data, "s.delta")
    appended = (
        args.latency_batches * args.batch_rows
        + (args.batches - args.latency_batches) * args.small_rows
    )
    t = time.perf_counter()
    result = compact(data, "s.compact")
    compact_s = time.perf_counter() - t

    # 3. cones, alternating between the two tables
    rng = np.random.default_rng(42)
    timings: dict[tuple[str, float], list[float]] = {}
    for radius in (1 / 60, 0.5):
        for i in range(args.cones):
            b = int(rng.integers(1, args.batches + 1))
            first = visit(b, 1)
            cra, cdec = float(first["ra"][0].as_py()), float(first["dec"][0].as_py())
            for name in ("delta", "compact") if i % 2 else ("compact", "delta"):
                q = (
                    f"SELECT id, ra, dec, mag FROM s.{name} WHERE 1 = CONTAINS(POINT('ICRS', ra, "
                    f"dec), CIRCLE('ICRS', {cra}, {cdec}, {radius}))"
                )
                t = time.perf_counter()
                arc.query(q)
                timings.setdefault((name, radius), []).append(time.perf_counter() - t)
    load = os.getloadavg()
    lines += [
        "# Rapid ingest: append and query over deltas (issue 17)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores shared with other work; "
        f"load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}.",
        f"Base: {args.base_rows:,} uniform rows, max {args.max_rows:,} rows per partition; "
        f"ingest {ingest_s:.1f} s ({args.base_rows / ingest_s:,.0f} rows/s).",
        "",
        f"## {args.latency_batches} appends of {args.batch_rows:,}-row visits (2° fields)",
        "",
        "| | p50 | p99 | max |",
        "|---|---|---|---|",
        f"| append() returns | {pct(commit, 50) * 1e3:.0f} ms | {pct(commit, 99) * 1e3:.0f} ms "
        f"| {max(commit) * 1e3:.0f} ms |",
        f"| visible to a new query (from the call) | {pct(visible, 50) * 1e3:.0f} ms | "
        f"{pct(visible, 99) * 1e3:.0f} ms | {max(visible) * 1e3:.0f} ms |",
        "",
        f"Sustained, one appender: {rate:,.0f} rows/s (appends alone; "
        f"{args.latency_batches * args.batch_rows / append_cpu:,.0f} rows per CPU-second); "
        f"{args.latency_batches * args.batch_rows / rate_s:,.0f} rows/s including the "
        "visibility query after each.",
        "",
        f"## Cones over base + {args.batches} appended batches vs the same table compacted",
        "",
        f"{args.batches - args.latency_batches} more batches of {args.small_rows:,} rows; "
        f"`s.delta` has {len(snap.files):,} delta files ({appended:,} rows); `s.compact` "
        f"was compacted in {compact_s:.1f} s ({result.rewritten} of {result.partitions} "
        f"partitions rewritten, {(args.base_rows + appended) / compact_s:,.0f} rows/s of "
        f"table; ingest {args.base_rows / ingest_s:,.0f} rows/s).",
        "",
        "| radius | cones | p50 deltas | p50 compacted | ratio | p90 deltas | p90 compacted |",
        "|---|---|---|---|---|---|---|",
    ]
    for radius in (1 / 60, 0.5):
        d, c = timings[("delta", radius)], timings[("compact", radius)]
        label = "1′" if radius < 0.1 else f"{radius:g}°"
        lines.append(
            f"| {label} | {len(d)} | {pct(d, 50) * 1e3:.1f} ms | {pct(c, 50) * 1e3:.1f} ms | "
            f"{pct(d, 50) / pct(c, 50):.2f}× | {pct(d, 90) * 1e3:.1f} ms | "
            f"{pct(c, 90) * 1e3:.1f} ms |"
        )
    finish(lines, "bench_append.py", args)


if __name__ == "__main__":
    main()
