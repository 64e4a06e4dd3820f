"""Ingest of a large Parquet input into a HATS catalogue: skyvault against hats-import.

A synthetic 8-column catalogue (``source_id`` int64, ``ra``/``dec`` float64 — uniform on
the sphere plus 30 % of the rows in Gaussian clusters of Zipf-distributed richness —, two
float32 magnitudes, ``parallax`` float64, ``parallax_error`` float32, ``flags`` int32) is
generated deterministically, a million rows at a time, as Parquet files of
``--rows-per-file`` rows (hats-import maps and splits one task per input file, so a single
big file would leave one of its two workers idle).

Each tool runs in a child process of this script, which polls the child's process tree
every 0.1 s and reports the peak of the summed resident set (dask's workers, nannies and
client included), and the peak of its anonymous part (RSS without file-backed pages, such
as memory-mapped spill files).  Both tools get ``max rows per partition`` = 1,000,000:

- **skyvault**: ``skyvault.catalog.ingest.ingest`` with its defaults (two threads), which
  also writes a 5″ margin catalogue; the per-stage split comes from a progress sink that
  timestamps ``stage()`` calls;
- **hats-import**: ``ImportArguments`` + ``pipeline_with_client`` on a local dask cluster of
  2 worker processes × 1 thread; the 5″ margin catalogue is a separate pipeline
  (``MarginCacheArguments``), run in a second child and reported on its own line.

Wall time is the tool's own work (inside the child, after imports and, for hats-import,
after the cluster is up).  Every output is checked before its figures are printed: it opens
with ``hats.read_hats``, its partition files hold each ``source_id`` exactly once, every row
lies inside its partition's pixel, and ``_healpix_29`` agrees with hats'
``compute_spatial_index`` on a sample of every file; margins open and hold only rows from
outside their partition.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_ingest.py                       # 20M rows, both tools
    .venv/bin/python benchmarks/bench_ingest.py --rows 100000000 --skip-hats-import

The work directory (default ``benchmarks/work/``, git-ignored) holds the input and the
outputs; outputs are deleted after they are checked, the input at the end unless ``--keep``
(a kept input is reused by the next run with the same ``--rows``, ``--rows-per-file`` and
``--seed``).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

MAX_ROWS_PER_PARTITION = 1_000_000
MARGIN_ARCSEC = 5.0
CHUNK_ROWS = 1_000_000
POLL_SECONDS = 0.1
HERE = Path(__file__).resolve().parent

SCHEMA = pa.schema(
    [
        ("source_id", pa.int64()),
        ("ra", pa.float64()),
        ("dec", pa.float64()),
        ("phot_g_mean_mag", pa.float32()),
        ("bp_rp", pa.float32()),
        ("parallax", pa.float64()),
        ("parallax_error", pa.float32()),
        ("flags", pa.int32()),
    ]
)


# --- input --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Clusters:
    """Centres (deg), widths (deg) and cumulative weights of the clustered population."""

    ra: np.ndarray
    dec: np.ndarray
    sigma: np.ndarray
    cumulative: np.ndarray

    @classmethod
    def make(cls, seed: int, count: int = 64) -> Clusters:
        rng = np.random.default_rng([seed, 0xC1])
        weights = 1.0 / np.arange(1, count + 1)
        return cls(
            ra=rng.uniform(0.0, 360.0, count),
            dec=np.degrees(np.arcsin(rng.uniform(-0.9, 0.9, count))),
            sigma=rng.uniform(0.2, 2.0, count),
            cumulative=np.cumsum(weights) / weights.sum(),
        )


def make_chunk(
    first_id: int, rows: int, chunk_index: int, seed: int, clusters: Clusters
) -> pa.Table:
    """Rows ``first_id`` … ``first_id + rows - 1``; the same arguments give the same rows."""
    rng = np.random.default_rng([seed, chunk_index])
    ra = rng.uniform(0.0, 360.0, rows)
    dec = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, rows)))
    clustered = np.flatnonzero(rng.random(rows) < 0.3)
    which = np.searchsorted(clusters.cumulative, rng.random(len(clustered)), side="right")
    which = np.minimum(which, len(clusters.cumulative) - 1)
    sigma = clusters.sigma[which]
    dec0 = clusters.dec[which]
    dec[clustered] = np.clip(dec0 + sigma * rng.standard_normal(len(clustered)), -90.0, 90.0)
    ra_offset = sigma * rng.standard_normal(len(clustered)) / np.cos(np.radians(dec0))
    ra[clustered] = np.mod(clusters.ra[which] + ra_offset, 360.0)
    ra[ra >= 360.0] = 0.0  # np.mod(-1e-17, 360) is 360.0
    g = rng.normal(18.5, 1.8, rows)
    parallax_error = 0.02 * np.exp(0.4 * (g - 15.0))
    columns = [
        np.arange(first_id, first_id + rows, dtype=np.int64),
        ra,
        dec,
        g.astype(np.float32),
        rng.normal(1.0, 0.5, rows).astype(np.float32),
        rng.exponential(0.5, rows) + parallax_error * rng.standard_normal(rows),
        parallax_error.astype(np.float32),
        rng.integers(0, 1 << 16, rows, dtype=np.int32),
    ]
    return pa.Table.from_arrays([pa.array(c) for c in columns], schema=SCHEMA)


def input_files(
    workdir: Path, rows: int, rows_per_file: int, seed: int
) -> tuple[list[Path], float]:
    """The input files (generated unless a complete earlier set is there) and the time taken."""
    per_file = rows_per_file or rows
    folder = workdir / f"input-{rows}-{per_file}-{seed}"
    done = folder / "COMPLETE"
    names = [folder / f"part-{i:04d}.parquet" for i in range(-(-rows // per_file))]
    if done.exists():
        return names, 0.0
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    clusters = Clusters.make(seed)
    start = time.perf_counter()
    chunk_index = 0
    for number, path in enumerate(names):
        first = number * per_file
        in_file = min(per_file, rows - first)
        with pq.ParquetWriter(path, SCHEMA, compression="snappy") as writer:
            for offset in range(0, in_file, CHUNK_ROWS):
                n = min(CHUNK_ROWS, in_file - offset)
                writer.write_table(make_chunk(first + offset, n, chunk_index, seed, clusters))
                chunk_index += 1
    done.write_text(f"{rows} rows\n")
    return names, time.perf_counter() - start


# --- children: the measured runs -----------------------------------------------------------


class StageClock:
    """A progress sink for skyvault's ingest that notes when each stage starts.

    Times are epoch seconds, so that the parent can match them with its memory samples.
    """

    def __init__(self) -> None:
        self.starts: list[tuple[str, float]] = []

    def stage(self, label: str, total: int | None) -> None:
        self.starts.append((label, time.time()))

    def advance(self, rows: int) -> None:
        pass


def child_skyvault(spec: dict[str, Any]) -> dict[str, Any]:
    from skyvault.catalog.ingest import IngestOptions, ingest

    clock = StageClock()
    options = IngestOptions(
        max_rows_per_partition=MAX_ROWS_PER_PARTITION, margin_arcsec=MARGIN_ARCSEC
    )
    start = time.perf_counter()
    epoch = time.time()
    meta = ingest(
        spec["inputs"],
        "bench.objects",
        Path(spec["out"]),
        ra="ra",
        dec="dec",
        options=options,
        progress=clock,
    )
    end = time.perf_counter()
    # Each stage lasts until the next starts; the last one includes publishing the table.
    marks = [("open inputs", epoch), *clock.starts, ("end", epoch + end - start)]
    stages = [(label, at, after) for (label, at), (_, after) in itertools.pairwise(marks)]
    return {"wall": end - start, "stages": stages, "partitions": meta.n_partitions}


@contextlib.contextmanager
def _dask_client(tmp: Path) -> Iterator[Any]:
    """A local cluster of 2 worker processes × 1 thread, as hats-import's docs suggest."""
    from dask.distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            local_directory=str(tmp / "dask"),
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def child_hats_import(spec: dict[str, Any]) -> dict[str, Any]:
    from hats_import.catalog.arguments import ImportArguments
    from hats_import.pipeline import pipeline_with_client

    tmp = Path(spec["tmp"])
    start_cluster = time.perf_counter()
    with _dask_client(tmp) as client:
        start = time.perf_counter()
        args = ImportArguments(
            output_path=spec["out"],
            output_artifact_name="objects",
            input_file_list=spec["inputs"],
            file_reader="parquet",
            ra_column="ra",
            dec_column="dec",
            pixel_threshold=MAX_ROWS_PER_PARTITION,
            tmp_dir=str(tmp),
            resume=False,
            progress_bar=False,
            dask_n_workers=2,
            dask_threads_per_worker=1,
        )
        pipeline_with_client(args, client)
        end = time.perf_counter()
    return {"wall": end - start, "cluster_start": start - start_cluster}


def child_hats_margin(spec: dict[str, Any]) -> dict[str, Any]:
    from hats_import.margin_cache.margin_cache_arguments import MarginCacheArguments
    from hats_import.pipeline import pipeline_with_client

    tmp = Path(spec["tmp"])
    start_cluster = time.perf_counter()
    with _dask_client(tmp) as client:
        start = time.perf_counter()
        args = MarginCacheArguments(
            input_catalog_path=str(Path(spec["out"]) / "objects"),
            output_path=spec["out"],
            output_artifact_name="objects_5arcs",
            margin_threshold=MARGIN_ARCSEC,
            tmp_dir=str(tmp),
            resume=False,
            progress_bar=False,
            dask_n_workers=2,
            dask_threads_per_worker=1,
        )
        pipeline_with_client(args, client)
        end = time.perf_counter()
    return {"wall": end - start, "cluster_start": start - start_cluster}


CHILDREN = {
    "skyvault": child_skyvault,
    "hats-import": child_hats_import,
    "hats-margin": child_hats_margin,
}


# --- parent: run a child and watch its memory ----------------------------------------------


@dataclass
class Run:
    """One measured child process."""

    label: str
    rows: int
    wall: float
    process_wall: float
    cpu: float
    peak_rss: int
    peak_anon: int
    max_single_rss: int
    load_before: float
    load_after: float
    result: dict[str, Any]
    checks: dict[str, Any] = field(default_factory=dict)
    timeline: list[tuple[float, int, int]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.rows / self.wall


def _status_kib(pid: int) -> tuple[int, int]:
    """VmRSS and RssAnon of a process in KiB (0, 0 once it has gone)."""
    rss = anon = 0
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("RssAnon:"):
                    anon = int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return rss, anon


def run_child(kind: str, label: str, rows: int, spec: dict[str, Any], workdir: Path) -> Run:
    """Run ``kind`` in a child process; poll its process tree's memory until it exits."""
    import psutil

    result_path = workdir / f"result-{kind}.json"
    result_path.unlink(missing_ok=True)
    spec = {**spec, "result": str(result_path)}
    command = [sys.executable, str(Path(__file__).resolve()), "--child", kind, json.dumps(spec)]
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.Popen(command)
    root = psutil.Process(proc.pid)
    timeline: list[tuple[float, int, int]] = []  # (epoch s, RSS, anonymous RSS) of the tree
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        try:
            tree = [root.pid, *(p.pid for p in root.children(recursive=True))]
        except psutil.NoSuchProcess:
            tree = []
        samples = [_status_kib(p) for p in tree]
        rss, anon = (sum(s[i] for s in samples) * 1024 for i in (0, 1))
        timeline.append((time.time(), rss, anon))
        time.sleep(POLL_SECONDS)
    process_wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{label} failed (exit status {proc.returncode}); see its output above")
    result = json.loads(result_path.read_text())
    return Run(
        label=label,
        rows=rows,
        wall=result["wall"],
        process_wall=process_wall,
        cpu=usage.ru_utime + usage.ru_stime,
        peak_rss=max((t[1] for t in timeline), default=0),
        peak_anon=max((t[2] for t in timeline), default=0),
        max_single_rss=usage.ru_maxrss * 1024,
        load_before=load_before,
        load_after=os.getloadavg()[0],
        result=result,
        timeline=timeline,
    )


# --- checks of the outputs -----------------------------------------------------------------


def _pixel_files(root: Path) -> list[tuple[int, int, Path]]:
    out = []
    for path in sorted((root / "dataset").glob("Norder=*/Dir=*/Npix=*.parquet")):
        order = int(path.parts[-3].split("=")[1])
        pixel = int(path.name.split("=")[1].split(".")[0])
        out.append((order, pixel, path))
    return out


def check_catalogue(root: Path, rows: int) -> dict[str, Any]:
    """Open with hats, account for every source_id once, check positions against partitions."""
    import hats
    from hats.pixel_math.spatial_index import compute_spatial_index

    catalog = hats.read_hats(root)
    if catalog.catalog_info.total_rows != rows:
        raise SystemExit(f"{root}: hats says {catalog.catalog_info.total_rows} rows, not {rows}")
    files = _pixel_files(root)
    if len(files) != len(catalog.get_healpix_pixels()):
        raise SystemExit(f"{root}: {len(files)} files for {len(catalog.get_healpix_pixels())}")
    seen = np.zeros(rows, dtype=bool)
    largest = 0
    for order, pixel, path in files:
        table = pq.read_table(path, columns=["source_id", "ra", "dec", "_healpix_29"])
        ids = table["source_id"].to_numpy()
        hp = table["_healpix_29"].to_numpy()
        if ids.min() < 0 or ids.max() >= rows or seen[ids].any() or len(np.unique(ids)) < len(ids):
            raise SystemExit(f"{path}: a source_id is out of range or appears twice")
        seen[ids] = True
        if np.any(hp >> (2 * (29 - order)) != pixel):
            raise SystemExit(f"{path}: a row lies outside the partition's pixel")
        step = max(1, len(hp) // 1000)
        ra = table["ra"].to_numpy()[::step]
        dec = table["dec"].to_numpy()[::step]
        if not np.array_equal(compute_spatial_index(ra, dec), hp[::step]):
            raise SystemExit(f"{path}: _healpix_29 disagrees with hats.compute_spatial_index")
        largest = max(largest, len(ids))
    if not seen.all():
        raise SystemExit(f"{root}: {int((~seen).sum())} source_ids are missing")
    orders = [o for o, _, _ in files]
    return {"partitions": len(files), "largest": largest, "orders": (min(orders), max(orders))}


def check_margin(root: Path, rows: int) -> dict[str, Any]:
    """Open with hats; every margin row is a known source lying outside its partition."""
    import hats

    catalog = hats.read_hats(root)
    total = 0
    for order, pixel, path in _pixel_files(root):
        table = pq.read_table(path, columns=["source_id", "_healpix_29"])
        ids = table["source_id"].to_numpy()
        hp = table["_healpix_29"].to_numpy()
        if len(ids) and (ids.min() < 0 or ids.max() >= rows):
            raise SystemExit(f"{path}: a margin source_id is out of range")
        if np.any(hp >> (2 * (29 - order)) == pixel):
            raise SystemExit(f"{path}: a margin row lies inside its own partition")
        total += len(ids)
    if catalog.catalog_info.total_rows != total:
        raise SystemExit(f"{root}: hats says {catalog.catalog_info.total_rows}, files hold {total}")
    return {"margin_rows": total}


# --- report --------------------------------------------------------------------------------


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f}"


def print_table(runs: list[Run]) -> None:
    header = (
        "| tool | rows | wall s | rows/s | CPU s | peak RSS GiB (anon) | max 1 proc GiB "
        "| partitions | margin rows | load |"
    )
    print(header)
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in runs:
        parts = r.checks.get("partitions", "")
        margin = r.checks.get("margin_rows", "")
        print(
            f"| {r.label} | {r.rows:,} | {r.wall:.1f} | {r.rate:,.0f} | {r.cpu:.0f} "
            f"| {_gib(r.peak_rss)} ({_gib(r.peak_anon)}) | {_gib(r.max_single_rss)} "
            f"| {parts} | {f'{margin:,}' if margin != '' else ''} "
            f"| {r.load_before:.2f} → {r.load_after:.2f} |"
        )


def print_stages(run: Run) -> None:
    """Time and peak memory of each stage of a skyvault run."""
    print("| stage | s | share | peak RSS GiB (anon) |")
    print("|---|---:|---:|---:|")
    for label, start, end in run.result["stages"]:
        during = [t for t in run.timeline if start <= t[0] < end] or [(0.0, 0, 0)]
        rss = max(t[1] for t in during)
        anon = max(t[2] for t in during)
        share = (end - start) / run.wall
        print(f"| {label} | {end - start:.1f} | {share:.0%} | {_gib(rss)} ({_gib(anon)}) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument(
        "--rows-per-file", type=int, default=2_000_000, help="0: the whole input in one file"
    )
    parser.add_argument("--seed", type=int, default=20_261_125)
    parser.add_argument("--workdir", type=Path, default=HERE / "work")
    parser.add_argument("--skip-hats-import", action="store_true")
    parser.add_argument("--skip-margin", action="store_true", help="no hats-import margin step")
    parser.add_argument("--skyvault-runs", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the input for the next run")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        kind, spec_text = args.child
        spec = json.loads(spec_text)
        result = CHILDREN[kind](spec)
        Path(spec["result"]).write_text(json.dumps(result))
        return

    import psutil

    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"python {platform.python_version()}, numpy {np.__version__}, pyarrow {pa.__version__}")
    print(
        f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"{psutil.virtual_memory().total / 2**30:.1f} GiB RAM, "
        f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    free = shutil.disk_usage(workdir).free
    print(f"work dir {workdir} ({free / 2**30:.0f} GiB free)")

    files, generated = input_files(workdir, args.rows, args.rows_per_file, args.seed)
    size = sum(f.stat().st_size for f in files)
    how = f"generated in {generated:.0f} s" if generated else "reused"
    print(
        f"input: {args.rows:,} rows × 8 columns in {len(files)} files, "
        f"{size / 2**30:.2f} GiB, {how}"
    )
    inputs = [str(f) for f in files]

    runs: list[Run] = []
    try:
        for i in range(args.skyvault_runs):
            out = workdir / "out-skyvault"
            shutil.rmtree(out, ignore_errors=True)
            run = run_child(
                "skyvault", "skyvault", args.rows, {"inputs": inputs, "out": str(out)}, workdir
            )
            root = out / "bench" / "objects"
            run.checks = {
                **check_catalogue(root, args.rows),
                **check_margin(root / "margin", args.rows),
            }
            runs.append(run)
            shutil.rmtree(out)
            print(f"skyvault run {i + 1}: {run.wall:.1f} s, checks {run.checks}")
            print_stages(run)

        if not args.skip_hats_import:
            out = workdir / "out-hats-import"
            shutil.rmtree(out, ignore_errors=True)
            spec = {"inputs": inputs, "out": str(out), "tmp": str(workdir / "tmp-hats-import")}
            run = run_child("hats-import", "hats-import (catalogue)", args.rows, spec, workdir)
            run.checks = check_catalogue(out / "objects", args.rows)
            runs.append(run)
            print(
                f"hats-import: {run.wall:.1f} s (cluster start {run.result['cluster_start']:.1f} s)"
            )
            if not args.skip_margin:
                margin = run_child(
                    "hats-margin", "hats-import margin step", args.rows, spec, workdir
                )
                margin.checks = check_margin(out / "objects_5arcs", args.rows)
                runs.append(margin)
                both = Run(
                    label="hats-import (catalogue + margin)",
                    rows=args.rows,
                    wall=run.wall + margin.wall,
                    process_wall=run.process_wall + margin.process_wall,
                    cpu=run.cpu + margin.cpu,
                    peak_rss=max(run.peak_rss, margin.peak_rss),
                    peak_anon=max(run.peak_anon, margin.peak_anon),
                    max_single_rss=max(run.max_single_rss, margin.max_single_rss),
                    load_before=run.load_before,
                    load_after=margin.load_after,
                    result={},
                    checks={**run.checks, **margin.checks},
                )
                runs.append(both)
            shutil.rmtree(out)
            shutil.rmtree(workdir / "tmp-hats-import", ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(files[0].parent, ignore_errors=True)

    print()
    print_table(runs)
    ours = [r for r in runs if r.label == "skyvault"]
    theirs = {r.label: r for r in runs if r.label.startswith("hats-import (")}
    for label, other in theirs.items():
        for r in ours:
            print(
                f"wall skyvault / {label}: {r.wall / other.wall:.3f} "
                f"({other.wall / r.wall:.1f}× faster); CPU {r.cpu / other.cpu:.3f}"
            )
    print(f"load at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
