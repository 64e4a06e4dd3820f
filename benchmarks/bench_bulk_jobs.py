"""Bulk jobs to Parquet: rows per second of ``run_request`` against hand-written DuckDB.

The input is ``bench_ingest.py``'s synthetic catalogue (same generator and seed; 10M rows by
default), ingested once as HATS under ``benchmarks/work/bulkjobs/`` (kept for later runs).
Two regions: a CIRCLE covering most of the sky (the "10M-row job") and one covering about a
tenth of the rows.  For each, in this process, taking turns run by run:

* **job**: ``bulk.jobs.parse_request`` → ``compile_request`` → ``run_request`` with
  ``FORMAT=parquet`` (what the ``bulk`` UWS job type runs, without HTTP);
* **duckdb**: ``COPY (SELECT * FROM read_parquet([the table's files]) WHERE <the same circle
  as a dot product on ra/dec>) TO 'x.parquet'``.

Wall time and CPU time (``resource.getrusage`` self + children: all threads) are measured
per run; the machine is shared, so rows per CPU-second is the steadier figure.  The row counts
of both must agree (up to rows on the circle's edge, reported).

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_bulk_jobs.py [--rows 10000000] [--runs 3] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import resource
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import duckdb  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from bench_ingest import input_files  # noqa: E402
from skyvault.bulk.jobs import compile_request, parse_request, run_request  # noqa: E402
from skyvault.catalog.ingest import IngestOptions, ingest  # noqa: E402
from skyvault.engine.archive import Archive  # noqa: E402

LIMIT = 512 * 1024 * 1024  # the service's default bulk_job_file_bytes


def cpu() -> float:
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def prepare(workdir: Path, rows: int, seed: int) -> Path:
    data = workdir / f"data-{rows}-{seed}"
    if (data / "COMPLETE").exists():
        return data
    inputs, made = input_files(workdir, rows, 1_000_000, seed)
    print(f"input generated in {made:.1f} s", flush=True)
    shutil.rmtree(data, ignore_errors=True)
    start = time.perf_counter()
    ingest(
        inputs,
        "bench.stars",
        data,
        ra="ra",
        dec="dec",
        options=IngestOptions(max_rows_per_partition=1_000_000),
    )
    print(f"ingested in {time.perf_counter() - start:.1f} s", flush=True)
    (data / "COMPLETE").write_text("done\n")
    return data


def run_job(archive: Archive, circle: str, out: Path) -> int:
    request = parse_request({"TABLE": ["bench.stars"], "CIRCLE": [circle]}, max_file_bytes=LIMIT)
    query = compile_request(request, archive, archive.tables())
    return run_request(query, archive, out, max_file_bytes=LIMIT).rows


def run_duckdb(files: list[str], circle: str, out: Path) -> int:
    ra, dec, r = (float(x) for x in circle.split())
    where = (
        f"sin(radians(dec))*sin(radians({dec})) + cos(radians(dec))*cos(radians({dec}))"
        f"*cos(radians(ra - {ra})) >= cos(radians({r}))"
    )
    listed = ", ".join(f"'{f}'" for f in files)
    con = duckdb.connect()
    try:
        con.execute(
            f"COPY (SELECT * FROM read_parquet([{listed}]) WHERE {where}) "
            f"TO '{out}' (FORMAT parquet)"
        )
    finally:
        con.close()
    return int(pq.ParquetFile(out).metadata.num_rows)


def timed(fn: Any, *args: Any) -> dict[str, float]:
    load0 = os.getloadavg()[0]
    wall, c = time.perf_counter(), cpu()
    rows = fn(*args)
    return {
        "rows": rows,
        "wall": time.perf_counter() - wall,
        "cpu": cpu() - c,
        "load0": load0,
        "load1": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--seed", type=int, default=20261125)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=HERE / "work" / "bulkjobs")
    parser.add_argument("--profile", action="store_true", help="cProfile one job run and stop")
    parser.add_argument(
        "--regions", default="0 0 150;0 30 37", help="CIRCLEs (ra dec r) separated by ;"
    )
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    data = prepare(args.workdir, args.rows, args.seed)
    archive = Archive(data)
    scratch = args.workdir / "out"
    try:
        stored = archive.registry.get("bench", "stars")
        assert stored.partitions is not None
        files = [str(Path(f).resolve()) for f in stored.partitions.files]
        regions = [r.strip() for r in args.regions.split(";")]
        if args.profile:
            shutil.rmtree(scratch, ignore_errors=True)
            scratch.mkdir()
            profile = cProfile.Profile()
            profile.enable()
            run_job(archive, regions[0], scratch / "job")
            profile.disable()
            pstats.Stats(profile).sort_stats("cumulative").print_stats(30)
            pstats.Stats(profile).sort_stats("tottime").print_stats(15)
            return
        print(f"{len(files)} files, load {os.getloadavg()}", flush=True)
        for circle in regions:
            got: dict[str, list[dict[str, float]]] = {"job": [], "duckdb": []}
            order = ["job", "duckdb", "duckdb", "job"] * args.runs
            for i, engine in enumerate(["job", *order[: 2 * args.runs]]):  # first: warm-up
                shutil.rmtree(scratch, ignore_errors=True)
                scratch.mkdir()
                if engine == "job":
                    m = timed(run_job, archive, circle, scratch / "job")
                else:
                    m = timed(run_duckdb, files, circle, scratch / "x.parquet")
                if i:
                    got[engine].append(m)
                print(
                    f"CIRCLE {circle} {engine:6s} rows {m['rows']:,} wall {m['wall']:.2f} s "
                    f"cpu {m['cpu']:.2f} s load {m['load0']:.1f}→{m['load1']:.1f}"
                    f"{'' if i else ' (warm-up)'}",
                    flush=True,
                )
            med = {
                e: {k: statistics.median(x[k] for x in got[e]) for k in ("rows", "wall", "cpu")}
                for e in got
            }
            for e, m in med.items():
                print(
                    f"  median {e:6s}: {m['rows'] / m['wall'] / 1e6:.2f} M rows/s wall, "
                    f"{m['rows'] / m['cpu'] / 1e6:.2f} M rows per CPU-s"
                )
            print(
                f"  ratio job/duckdb (rows/s): wall "
                f"{med['duckdb']['wall'] / med['job']['wall']:.2f}, "
                f"cpu {med['duckdb']['cpu'] / med['job']['cpu']:.2f}; rows job "
                f"{int(med['job']['rows']):,} duckdb {int(med['duckdb']['rows']):,}",
                flush=True,
            )
    finally:
        archive.close()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
