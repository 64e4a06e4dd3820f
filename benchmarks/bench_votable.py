"""Throughput of the streaming VOTable writer against astropy's writer, in one process.

A 20-column, numeric-heavy table (2 int64 ids, 12 doubles, 4 floats, a boolean and a
short string, with 1% nulls in some columns) is written by ``skyvault.formats`` in BINARY2,
BINARY and TABLEDATA, and by ``astropy.io.votable`` on a slice of it (astropy is too slow
for the full table).  Output is consumed and counted, not stored.

Usage::

    .venv/bin/python benchmarks/bench_votable.py [--rows 1000000] [--astropy-rows 50000]
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import resource
import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from skyvault.catalog.metadata import ColumnMeta
from skyvault.formats import write_votable


def make_table(rows: int, seed: int = 42) -> pa.Table:
    """The benchmark table: 20 columns, mixed types, a few nulls."""
    rng = np.random.default_rng(seed)
    some_nulls = rng.random(rows) < 0.01
    columns: dict[str, pa.Array] = {
        "source_id": pa.array(np.arange(rows, dtype=np.int64) * 7919),
        "healpix": pa.array(rng.integers(0, 12 * 4**29, rows, dtype=np.int64)),
        "ra": pa.array(rng.uniform(0.0, 360.0, rows)),
        "dec": pa.array(np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, rows)))),
    }
    for i in range(10):
        columns[f"d{i}"] = pa.array(rng.normal(size=rows), mask=some_nulls if i < 2 else None)
    for i in range(4):
        columns[f"mag{i}"] = pa.array(rng.uniform(10.0, 22.0, rows).astype(np.float32))
    columns["flag"] = pa.array(rng.random(rows) < 0.5, mask=some_nulls)
    names = np.char.add("src-", (np.arange(rows) % 1_000_000).astype(str))
    columns["name"] = pa.array(names.tolist(), pa.string())
    return pa.table(columns)


def measure(label: str, rows: int, run: Callable[[], int], repeat: int = 3) -> float:
    """Best rows/s over ``repeat`` runs; prints the line."""
    best = float("inf")
    size = 0
    for _ in range(repeat):
        start = time.perf_counter()
        size = run()
        best = min(best, time.perf_counter() - start)
    rate = rows / best
    print(
        f"{label:<28} {rows:>10,} rows  {best:8.3f} s  {rate:>12,.0f} rows/s  {size / 1e6:8.1f} MB"
    )
    return rate


def skyvault_run(table: pa.Table, fields: list[ColumnMeta], serialization: str) -> int:
    size = 0
    batches = table.to_batches(max_chunksize=100_000)
    for chunk in write_votable(batches, fields, serialization=serialization):  # type: ignore[arg-type]
        size += len(chunk)
    return size


def astropy_writer(table: pa.Table) -> Callable[[str], int]:
    """A function writing ``table`` with astropy; conversion is done once, outside timing."""
    from astropy.io.votable import from_table
    from astropy.table import Table

    votable = from_table(Table(_astropy_columns(table)))

    def run(serialization: str) -> int:
        buffer = io.BytesIO()
        votable.to_xml(buffer, tabledata_format=serialization)
        return buffer.tell()

    return run


def _astropy_columns(table: pa.Table) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        array = column.combine_chunks()
        if pa.types.is_string(array.type):
            out[name] = np.array(array.fill_null("").to_pylist(), dtype=str)
        elif array.null_count:
            filler = False if pa.types.is_boolean(array.type) else 0
            values = array.fill_null(pa.scalar(filler, array.type)).to_numpy(False)
            out[name] = np.ma.masked_array(values, mask=array.is_null().to_numpy(False))
        else:
            out[name] = array.to_numpy(zero_copy_only=False)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--astropy-rows", type=int, default=50_000)
    parser.add_argument(
        "--threads", type=int, default=1, help="Arrow compute threads (1: per-core figures)"
    )
    args = parser.parse_args()
    pa.set_cpu_count(args.threads)

    print(f"python {platform.python_version()}, numpy {np.__version__}, pyarrow {pa.__version__}")
    print(f"{platform.machine()}, {os.cpu_count()} CPUs, Arrow threads: {pa.cpu_count()}")
    table = make_table(args.rows)
    fields = [ColumnMeta.from_arrow(f) for f in table.schema]
    print(f"table: {args.rows:,} rows x {table.num_columns} columns, {table.nbytes / 1e6:.0f} MB")

    ours = {
        ser: measure(f"skyvault {ser}", args.rows, lambda s=ser: skyvault_run(table, fields, s))
        for ser in ("binary2", "binary", "tabledata")
    }
    astropy = astropy_writer(table.slice(0, args.astropy_rows))
    theirs = {
        ser: measure(f"astropy {ser}", args.astropy_rows, lambda s=ser: astropy(s), 1)
        for ser in ("binary2", "tabledata")
    }
    print()
    for ser, rate in theirs.items():
        print(f"speed-up {ser}: {ours[ser] / rate:,.0f}x astropy")
    print(f"speed-up binary vs astropy binary2: {ours['binary'] / theirs['binary2']:,.0f}x")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of the process (table included): {peak:,.0f} MB")


if __name__ == "__main__":
    main()
