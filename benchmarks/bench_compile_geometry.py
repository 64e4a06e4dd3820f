"""Compile time of an RA/Dec-range query and a polygon query, and their sky coverages.

Measures, with medians of ``--repeat`` calls each:

* ``compile_adql`` (parse + check + translate) of the two typical queries of
  ``bench_query.py`` that build sky geometry: ``dec BETWEEN -5 AND 5`` (an RA/Dec-range
  coverage) and ``CONTAINS(POINT, POLYGON(4 vertices))`` (a polygon's preparation and
  coverage);
* ``Polygon.from_flat`` (validation and convex decomposition) of that polygon;
* ``region_coverage`` of the two regions at the translator's maximum order (18), with the
  coverage's cell count and area, so a faster coverage can be checked to stay as tight;
  the same for a few more RA/Dec ranges (wrapping, polar, narrow, thin; medians of at most
  50 calls).

With ``--baseline REV`` the same measurements are repeated, in a child process, on the
``src/`` tree of the git revision ``REV`` (extracted into a temporary directory), so the
before and after figures come from one invocation on the same machine and load.

Usage::

    .venv/bin/python benchmarks/bench_compile_geometry.py [--data benchmarks/work/query/data]
        [--repeat 300] [--baseline REV]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

RANGE_QUERY = (
    "SELECT t.id, t.mag_vt FROM bench.tycho2 AS t WHERE t.dec BETWEEN -5 AND 5 "
    "AND t.mag_vt < (SELECT AVG(mag_vt) - 2 FROM bench.tycho2) ORDER BY t.mag_vt"
)
POLYGON_QUERY = (
    "SELECT id, ra, dec, mag_vt FROM bench.tycho2 WHERE 1 = CONTAINS("
    "POINT('ICRS', ra, dec), POLYGON('ICRS', 83.0, -6.0, 85.0, -6.0, 85.0, -4.0, 83.0, -4.0)) "
    "AND mag_vt < 11 ORDER BY mag_vt"
)
POLYGON_FLAT = [83.0, -6.0, 85.0, -6.0, 85.0, -4.0, 83.0, -4.0]
MAX_ORDER = 18  # skyvault.adql.translate.COVERAGE_MAX_ORDER
#: More RA/Dec ranges (ra_min, ra_max, dec_min, dec_max): wrapping, polar, narrow, thin.
MORE_RANGES = [
    (350.0, 10.0, -10.0, 10.0),
    (0.0, 360.0, 80.0, 90.0),
    (10.0, 11.0, 5.0, 6.0),
    (10.0, 11.0, -90.0, 90.0),
    (100.0, 100.01, 20.0, 20.01),
    (0.0, 360.0, 10.0, 10.5),
]


def median_ms(call: Callable[[], object], repeat: int) -> float:
    call()  # first call: imports, caches
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def measure(data: Path, repeat: int) -> dict[str, Any]:
    import numpy as np

    import skyvault
    from skyvault.adql.translate import compile_adql
    from skyvault.sky.coverage import region_coverage
    from skyvault.sky.regions import Polygon, RaDecRange

    archive = skyvault.open(data)
    tables = archive.tables()
    band = RaDecRange(0.0, 360.0, -5.0, 5.0)
    polygon = Polygon.from_flat(POLYGON_FLAT)
    out: dict[str, Any] = {"times_ms": {}, "coverage": {}}
    times = out["times_ms"]
    times["compile: dec BETWEEN -5 AND 5 (+ subquery)"] = median_ms(
        lambda: compile_adql(RANGE_QUERY, tables), repeat
    )
    times["compile: CONTAINS(POINT, POLYGON 4 vertices)"] = median_ms(
        lambda: compile_adql(POLYGON_QUERY, tables), repeat
    )
    times["Polygon.from_flat (prepare_polygon)"] = median_ms(
        lambda: Polygon.from_flat(POLYGON_FLAT), repeat
    )
    times["region_coverage(RaDecRange(0, 360, -5, 5), 18)"] = median_ms(
        lambda: region_coverage(band, MAX_ORDER), repeat
    )
    times["region_coverage(polygon, 18)"] = median_ms(
        lambda: region_coverage(polygon, MAX_ORDER), repeat
    )
    for box in MORE_RANGES:
        region = RaDecRange(*box)
        times[f"region_coverage(RaDecRange{box}, 18)"] = median_ms(
            lambda region=region: region_coverage(region, MAX_ORDER), min(repeat, 50)
        )
    labelled = [("dec -5..5 band", band), ("polygon", polygon)]
    labelled += [(f"RaDecRange{box}", RaDecRange(*box)) for box in MORE_RANGES]
    for label, region in labelled:
        moc = region_coverage(region, MAX_ORDER)
        ranges = np.asarray(moc.to_depth29_ranges, dtype=np.uint64).astype(np.float64)
        fraction = float(np.sum(ranges[:, 1] - ranges[:, 0])) / (12.0 * 4.0**29)
        cells = sum(len(v) for v in moc.serialize(format="json").values())
        out["coverage"][label] = {
            "order": int(moc.max_order),
            "cells": cells,
            "area_deg2": fraction * 41252.96125,
        }
    return out


def run_baseline(rev: str, data: Path, repeat: int) -> dict[str, Any]:
    """The same measurements on ``src/`` of a git revision, in a child process."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", rev, "src"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        env = dict(os.environ, PYTHONPATH=str(Path(tmp) / "src"))
        child = subprocess.run(
            [
                sys.executable,
                __file__,
                "--data",
                str(data),
                "--repeat",
                str(repeat),
                "--json",
                "--expect-src",
                str(Path(tmp) / "src"),
            ],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        )
        result: dict[str, Any] = json.loads(child.stdout)
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "benchmarks/work/query/data")
    parser.add_argument("--repeat", type=int, default=300)
    parser.add_argument("--baseline", help="git revision whose src/ is measured too")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--expect-src", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.expect_src is not None:
        import skyvault

        assert Path(skyvault.__file__).resolve().is_relative_to(Path(args.expect_src).resolve())
    if args.json:
        print(json.dumps(measure(args.data, args.repeat)))
        return
    print(f"load {os.getloadavg()[0]:.2f}, {args.repeat} calls per median")
    results = {}
    if args.baseline:
        results[f"before ({args.baseline})"] = run_baseline(args.baseline, args.data, args.repeat)
    results["after (working tree)"] = measure(args.data, args.repeat)
    labels = list(results)
    print("| median, ms | " + " | ".join(labels) + " |")
    print("|---|" + "---:|" * len(labels))
    for key in results[labels[-1]]["times_ms"]:
        row = " | ".join(f"{results[label]['times_ms'][key]:.3f}" for label in labels)
        print(f"| {key} | {row} |")
    print()
    print("| coverage at max order 18 | " + " | ".join(labels) + " |")
    print("|---|" + "---:|" * len(labels))
    for key in results[labels[-1]]["coverage"]:
        cells = []
        for label in labels:
            c = results[label]["coverage"][key]
            cells.append(f"order {c['order']}, {c['cells']} cells, {c['area_deg2']:.4g} deg²")
        print(f"| {key} | " + " | ".join(cells) + " |")
    print(f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
