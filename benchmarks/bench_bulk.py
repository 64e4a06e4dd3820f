"""Bulk download: what the manifest adds to ingest, and static file throughput over HTTP.

1. **Ingest cost.** The same synthetic input as ``bench_ingest.py`` (its generator, same
   seed) is ingested ``--runs`` times with the manifest (the default: every file hashed
   with sha256 and md5, rows from the Parquet footers, after the files are written) and
   ``--runs`` times without it (``ManifestHasher`` replaced by a no-op in this process),
   alternating A B B A … after one uncounted warm-up run, so that drifting load hits both
   alike.  Wall time and the
   process's CPU time (all threads) are reported, with their ratio.  The manifest's own
   time is also measured alone on the last output (``compute_manifest``).
2. **Throughput.** ``skyvault serve`` is started on the output (table granted to PUBLIC)
   and ``curl -o /dev/null`` fetches the largest partition file ``--fetches`` times from
   ``/bulk/...``; the median speed is reported.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_bulk.py                 # 4M rows, 2 runs each
    .venv/bin/python benchmarks/bench_bulk.py --rows 10000000 --runs 3
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import skyvault.catalog.ingest as ingest_module  # noqa: E402
from bench_ingest import input_files  # noqa: E402
from skyvault.auth import AuthStorage, grant_access  # noqa: E402
from skyvault.bulk import compute_manifest  # noqa: E402
from skyvault.catalog.ingest import IngestOptions, ingest  # noqa: E402


class _NoManifest:
    """Stands in for ``ManifestHasher`` in the runs without a manifest."""

    def __init__(self, root: Path, workers: int = 1) -> None:
        pass

    def add(self, path: Path) -> None:
        pass

    def finish(self, version: str, *, workers: int = 2) -> None:
        pass

    def __enter__(self) -> _NoManifest:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _ingest_once(inputs: list[Path], data: Path, manifest: bool) -> tuple[float, float]:
    original = ingest_module.ManifestHasher
    if not manifest:
        ingest_module.ManifestHasher = _NoManifest  # type: ignore[assignment,misc]
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        ingest(
            inputs,
            "bench.stars",
            data,
            ra="ra",
            dec="dec",
            options=IngestOptions(max_rows_per_partition=1_000_000),
        )
        return time.perf_counter() - wall, time.process_time() - cpu
    finally:
        ingest_module.ManifestHasher = original  # type: ignore[misc]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _throughput(data: Path, fetches: int) -> dict[str, Any]:
    storage = AuthStorage.for_data_dir(data)
    try:
        grant_access(storage, "bench", None)
    finally:
        storage.close()
    root = (data / "bench" / "stars").resolve()
    biggest = max(root.rglob("Npix=*.parquet"), key=lambda p: p.stat().st_size)
    rel = biggest.relative_to(root).as_posix()
    port = _free_port()
    skyvault = Path(sys.executable).parent / "skyvault"
    command = [str(skyvault), "serve", "--port", str(port), "--data", str(data)]
    server = subprocess.Popen(
        [*command, "--log-level", "warning"],
        env={**os.environ, "SKYVAULT_BULK_BANDWIDTH": "0"},  # raw throughput: no per-user cap
    )
    url = f"http://127.0.0.1:{port}/bulk/bench/stars/{rel}"
    try:
        deadline = time.monotonic() + 60
        while True:
            probe = subprocess.run(
                ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", url],
                capture_output=True,
                text=True,
                check=False,
            )
            if probe.stdout == "200":
                break
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the server did not start")
            time.sleep(0.2)
        speeds = []
        for _ in range(fetches):
            done = subprocess.run(
                ["curl", "-s", "-o", "/dev/null", "-w", "%{speed_download}", url],
                capture_output=True,
                text=True,
                check=True,
            )
            speeds.append(float(done.stdout))
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {"file_bytes": biggest.stat().st_size, "speeds": speeds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--rows-per-file", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20261125)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--fetches", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=HERE / "work")
    parser.add_argument("--keep", action="store_true", help="keep the generated input")
    args = parser.parse_args()

    args.workdir.mkdir(parents=True, exist_ok=True)
    inputs, made = input_files(args.workdir, args.rows, args.rows_per_file, args.seed)
    print(f"input: {args.rows:,} rows in {len(inputs)} files ({made:.1f} s to generate)")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    results: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    order = [True, False, False, True] * ((args.runs + 1) // 2)
    order = order[: 2 * args.runs]
    data = args.workdir / "bulk-data"
    _ingest_once(inputs, data, True)  # warm-up (imports, page cache), not counted
    for with_manifest in order:
        shutil.rmtree(data, ignore_errors=True)
        wall, cpu = _ingest_once(inputs, data, with_manifest)
        results[with_manifest].append((wall, cpu))
        label = "with manifest" if with_manifest else "without     "
        print(f"  {label}: wall {wall:6.2f} s  cpu {cpu:6.2f} s  load {os.getloadavg()[0]:.2f}")
    # The last run in the order is "with manifest" (A B B A): measure the manifest alone.
    root = (data / "bench" / "stars").resolve()
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    wall, cpu = time.perf_counter(), time.process_time()
    manifest = compute_manifest(root)
    alone = time.perf_counter() - wall, time.process_time() - cpu
    for kind, index in (("wall", 0), ("cpu", 1)):
        a = statistics.median(r[index] for r in results[True])
        b = statistics.median(r[index] for r in results[False])
        print(f"median {kind}: with {a:.2f} s, without {b:.2f} s, ratio {a / b:.3f}")
    print(
        f"manifest alone: {len(manifest.entries)} files, {size / 1e6:.0f} MB, "
        f"wall {alone[0]:.2f} s, cpu {alone[1]:.2f} s ({size / 1e6 / alone[0]:.0f} MB/s)"
    )
    if shutil.which("curl"):
        got = _throughput(data, args.fetches)
        speeds = got["speeds"]
        print(
            f"GET /bulk of a {got['file_bytes'] / 1e6:.0f} MB file over loopback, "
            f"{len(speeds)} fetches: median {statistics.median(speeds) / 1e6:.0f} MB/s "
            f"(min {min(speeds) / 1e6:.0f}, max {max(speeds) / 1e6:.0f})"
        )
    shutil.rmtree(data, ignore_errors=True)
    if not args.keep:
        shutil.rmtree(args.workdir / f"input-{args.rows}-{args.rows_per_file}-{args.seed}")


if __name__ == "__main__":
    main()
