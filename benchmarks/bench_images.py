"""Image archive: header ingest in files per second, against astropy's ``getheader``.

``--files`` small images (64 x 64 float32, a TAN WCS and about 60 header cards: a calexp's
kind of header) are written to a scratch directory, then, alternating A B C C B A ... over
``--runs`` rounds after one uncounted warm-up of each so that drifting load hits all alike:

A. **astropy**: ``astropy.io.fits.getheader(path)`` of every file (the baseline: the least a
   Python header service can do per file with astropy);
B. **derive**: what ``skyvault images ingest`` does per file — every card of every HDU
   (:func:`skyvault.images.fitsheader.read_headers`), the WCS footprint and the ObsCore
   record — without storing anything;
C. **ingest**: the whole ``ingest_images`` into a fresh data root: B, plus copying the files
   into the archive and writing and publishing the ObsCore (HATS) and header tables;
D. **command**: ``skyvault images ingest DIR/*.fits --collection bench --quiet`` run as a
   process (C plus starting Python, the imports and the CLI's own steps);
D0. with ``--baseline-src DIR`` (e.g. ``/work/main/src``): the same command run from that
   source tree, for a before/after in the same run.

The parsers' caches (cards already parsed, WCS keywords) are emptied before each timed case
of A-C: a command starts with them empty.

Reported: files per second of each (median over the rounds, wall clock) and per CPU-second
of the process (all its threads: steadier than wall time on a shared machine), with the
ratios to A.  The target of
issue 13 is C ≥ 2,000 files/s.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_images.py                  # 5,000 files, 3 rounds
    .venv/bin/python benchmarks/bench_images.py --files 20000 --runs 5
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from astropy.io import fits

from skyvault.images import fitsheader
from skyvault.images.fitsheader import footprint, read_headers
from skyvault.images.ingest import ImageIngestOptions, _describe, ingest_images


def write_files(root: Path, count: int) -> list[Path]:
    """``count`` small calexp-like images with distinct pointings and dates."""
    rng = np.random.default_rng(1)
    data = rng.normal(size=(64, 64)).astype(np.float32)
    header = fits.Header()
    for key, value in (
        ("CTYPE1", "RA---TAN"), ("CTYPE2", "DEC--TAN"), ("CRPIX1", 32.5), ("CRPIX2", 32.5),
        ("CD1_1", -5.5e-5), ("CD1_2", 0.0), ("CD2_1", 0.0), ("CD2_2", 5.5e-5),
        ("RADESYS", "ICRS"), ("EXPTIME", 30.0), ("BAND", "r"), ("FILTER", "r_sim_1.4"),
        ("TELESCOP", "LSST"), ("INSTRUME", "LSSTCam-imSim"), ("BUNIT", "nJy"),
    ):  # fmt: skip
        header[key] = value
    for i in range(40):
        header[f"PIPE{i:04d}"] = (i * 0.5, "a pipeline keyword with a comment")
    paths = []
    template = fits.PrimaryHDU(data, header)
    for i in range(count):
        template.header["CRVAL1"] = 50.0 + 20.0 * rng.random()
        template.header["CRVAL2"] = -45.0 + 15.0 * rng.random()
        template.header["MJD-OBS"] = 60000.0 + i * 0.001
        path = root / f"calexp_{i:06d}.fits"
        template.writeto(path)
        paths.append(path)
    return paths


def run_astropy(paths: list[Path]) -> None:
    for path in paths:
        fits.getheader(path)


def run_derive(paths: list[Path]) -> None:
    options = ImageIngestOptions()
    for path in paths:
        images, reason = _describe(path, path.name, "bench", options)
        assert reason is None and images


def run_ingest(paths: list[Path], data: Path) -> None:
    result = ingest_images(paths, "bench", data)
    assert result.images == len(paths)


_COMMAND = "import sys; from skyvault.cli import main; sys.exit(main())"


def run_command(inputs: Path, data: Path, src: Path | None) -> None:
    """``skyvault images ingest`` as a process (from ``src`` when given)."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    done = subprocess.run(
        [sys.executable, "-c", _COMMAND, "images", "ingest", str(inputs / "*.fits"),
         "--collection", "bench", "--data", str(data), "--quiet"],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"the command failed: {done.stderr[-2000:]}")


def _empty_caches() -> None:
    for name in ("_PARSED", "_IS_WCS_CARD"):
        cache = getattr(fitsheader, name, None)
        if isinstance(cache, dict):
            cache.clear()


def _cpu() -> float:
    """CPU seconds of this process and of its finished children."""
    own = time.process_time()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scratch", type=Path, default=None)
    parser.add_argument(
        "--baseline-src",
        type=Path,
        default=None,
        help="a source tree (e.g. /work/main/src) whose command runs as case D0",
    )
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    scratch = Path(tempfile.mkdtemp(prefix="bench-images-", dir=args.scratch))
    try:
        inputs = scratch / "in"
        inputs.mkdir()
        t0 = time.perf_counter()
        paths = write_files(inputs, args.files)
        print(f"wrote {len(paths)} files in {time.perf_counter() - t0:.1f} s")
        # Sanity: the fast reader and astropy agree on the keyword list of one file.
        assert [c[0] for c in read_headers(paths[0])[0].cards] == list(fits.getheader(paths[0]))
        footprint(read_headers(paths[0])[0])
        roots = iter(range(1_000_000))
        cases: dict[str, Callable[[], None]] = {
            "astropy getheader": lambda: run_astropy(paths),
            "derive (cards + WCS + ObsCore)": lambda: run_derive(paths),
            # A fresh data root each time (a first ingest); earlier ones are removed outside
            # the timed region.
            "ingest (ingest_images)": lambda: run_ingest(paths, scratch / f"data{next(roots)}"),
            "command (skyvault images ingest)": lambda: run_command(
                inputs, scratch / f"data{next(roots)}", None
            ),
        }
        if args.baseline_src is not None:
            src = args.baseline_src.resolve()
            cases[f"command from {src}"] = lambda: run_command(
                inputs, scratch / f"data{next(roots)}", src
            )
        for run in cases.values():  # warm-up: page cache, imports
            run()
        times: dict[str, list[float]] = {name: [] for name in cases}
        cpu: dict[str, list[float]] = {name: [] for name in cases}
        names = list(cases)
        loads = []
        for round_ in range(args.runs):
            order = names if round_ % 2 == 0 else names[::-1]
            for name in order:
                loads.append(os.getloadavg()[0])
                _empty_caches()
                start, start_cpu = time.perf_counter(), _cpu()
                cases[name]()
                times[name].append(time.perf_counter() - start)
                cpu[name].append(_cpu() - start_cpu)
                for old in scratch.glob("data*"):
                    shutil.rmtree(old)
        rates = {name: len(paths) / statistics.median(t) for name, t in times.items()}
        cpu_rates = {name: len(paths) / statistics.median(t) for name, t in cpu.items()}
        base = rates["astropy getheader"]
        cpu_base = cpu_rates["astropy getheader"]
        print(
            f"\n{len(paths)} files, {args.runs} rounds, {platform.machine()} "
            f"{os.cpu_count()} CPUs, load {min(loads):.1f}-{max(loads):.1f}\n"
        )
        print(
            "| case | files/s (median wall) | runs (s) | vs getheader | files per CPU-second "
            "| vs getheader |"
        )
        print("|---|---:|---|---:|---:|---:|")
        for name, rate in rates.items():
            runs = ", ".join(f"{t:.2f}" for t in times[name])
            per_cpu = cpu_rates[name]
            print(
                f"| {name} | {rate:,.0f} | {runs} | {rate / base:.2f}x | {per_cpu:,.0f} "
                f"| {per_cpu / cpu_base:.2f}x |"
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
