"""The Dask split: what it costs to decompose a query, and its queries against the local executor.

For a set of queries over a seeded positional catalogue (default 2M rows, many partitions):

* **compile**: ``compile_adql`` (parse, check, translate — the translation now also describes
  the top-level SELECT for the split) per query;
* **split**: ``split_plan`` of the query's plan (the decomposition into partial and merge
  queries) per query;
* **run**: the query through a ``DaskExecutor`` on Dask's threaded scheduler (no cluster)
  against the same query through the local executor, in the same process on the same files —
  the baseline — as a ratio; the answers are compared first.

``--baseline REF`` measures the ``src/`` of a git commit (exported with ``git archive`` into
the work directory) in the same way, interleaved with the working tree's (A, B, A, B...:
a noisy machine drifts for both), and reports after / before ratios.

Usage::

    .venv/bin/python benchmarks/bench_split.py [--workdir benchmarks/work/split]
        [--rows 2000000] [--repeat 5] [--baseline main] [--out benchmarks/results/split.md]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TABLE = "bench.stars"
XM = "DISTANCE(POINT('ICRS', a.ra, a.dec), POINT('ICRS', b.ra, b.dec)) < 2.0/3600"
QUERIES = {
    "count": f"SELECT COUNT(*) AS n FROM {TABLE}",
    "group_having": f"SELECT band, COUNT(*) AS n, AVG(mag) AS m, MAX(flux) - MIN(flux) AS span "
    f"FROM {TABLE} GROUP BY band HAVING COUNT(*) > 10 ORDER BY band",
    "healpix_histogram": f"SELECT ivo_healpix_index(4, ra, dec) AS hp, COUNT(*) AS n FROM {TABLE} "
    "GROUP BY hp ORDER BY hp",
    "count_distinct": f"SELECT band, COUNT(DISTINCT cls) AS k FROM {TABLE} GROUP BY band",
    "top_order": f"SELECT TOP 20 id, mag FROM {TABLE} ORDER BY mag DESC, id",
    "distinct": f"SELECT DISTINCT band, cls FROM {TABLE} ORDER BY band, cls",
    "filter": f"SELECT id, ra, dec, mag FROM {TABLE} WHERE mag BETWEEN 10 AND 10.05",
    "crossmatch_count": f"SELECT COUNT(*) AS n FROM {TABLE} AS a JOIN {TABLE} AS b ON {XM} "
    "WHERE a.id < b.id AND a.mag < 9",
}


def build(data: Path, rows: int) -> None:
    """A seeded positional table of ``rows`` rows in partitions of at most 60k rows."""
    if (data / "bench" / "stars").exists():
        return
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from skyvault.catalog.ingest import IngestOptions, ingest

    rng = np.random.default_rng(20261202)
    ra = rng.uniform(0.0, 360.0, rows)
    dec = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, rows)))
    table = pa.table(
        {
            "id": np.arange(rows, dtype=np.int64),
            "ra": ra,
            "dec": dec,
            "mag": rng.uniform(6.0, 20.0, rows),
            "flux": pa.array(rng.normal(100.0, 20.0, rows), mask=rng.random(rows) < 0.05),
            "band": rng.choice(["g", "r", "i", "z"], rows),
            "cls": rng.integers(0, 7, rows),
        }
    )
    source = data.parent / "stars.parquet"
    pq.write_table(table, source)
    options = IngestOptions(max_rows_per_partition=60_000)
    ingest([source], TABLE, data, ra="ra", dec="dec", options=options)
    source.unlink()


def measure(data: Path, repeat: int) -> dict[str, Any]:
    """One side's figures (runs in a child process, with that side's ``skyvault``)."""
    from skyvault.adql.translate import compile_adql
    from skyvault.engine.archive import open_archive
    from skyvault.engine.distributed import DaskExecutor
    from skyvault.engine.split import split_plan

    local = open_archive(data)
    dask = open_archive(data, executor=DaskExecutor(max_tasks=4))
    tables = local.tables()
    out: dict[str, Any] = {}
    for name, adql in QUERIES.items():
        compile_adql(adql, tables)
        compile_s = _best(lambda: compile_adql(adql, tables), 50)  # noqa: B023
        plan = dask.plan(adql)
        start = time.perf_counter()
        split = split_plan(plan)
        split_first_s = time.perf_counter() - start
        split_s = _best(lambda: split_plan(plan), 50)  # noqa: B023
        same = _same(local.query(adql).to_pylist(), dask.query(adql).to_pylist())
        local_s = _best(lambda: local.query(adql), repeat)  # noqa: B023
        dask_s = _best(lambda: dask.query(adql), repeat)  # noqa: B023
        out[name] = {
            "kind": split.kind,
            "same": bool(same),
            "compile_us": compile_s * 1e6,
            "split_us": split_s * 1e6,
            "split_first_us": split_first_s * 1e6,
            "local_s": local_s,
            "dask_s": dask_s,
        }
    local.close()
    dask.close()
    return out


def _same(want: list[dict[str, Any]], got: list[dict[str, Any]]) -> bool:
    """The same rows in any order, floats to 1e-9."""

    def key(row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple((v is None, f"{v:.6g}" if isinstance(v, float) else v) for v in row.values())

    if len(want) != len(got):
        return False
    for w, g in zip(sorted(want, key=key), sorted(got, key=key), strict=True):
        for a, b in zip(w.values(), g.values(), strict=True):
            if isinstance(a, float) and isinstance(b, float):
                if not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9):
                    return False
            elif a != b:
                return False
    return True


def _best(fn: Any, n: int) -> float:
    """The shortest of ``n`` runs: on a loaded machine, the closest to the work itself."""
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def export_tree(ref: str, work: Path) -> Path:
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short=10", ref],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    target = work / f"src-{commit}"
    if not (target / "src").exists():
        target.mkdir(parents=True, exist_ok=True)
        tree = subprocess.run(
            ["git", "-C", str(ROOT), "archive", commit, "src"], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=tree, check=True)
    return target / "src"


def run_side(src: Path, data: Path, repeat: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(data), "--repeat", str(repeat)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "work" / "split")
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved runs of each side")
    parser.add_argument("--baseline", help="also measure the src/ of this git ref (before)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args.child, args.repeat)))
        return
    work = args.workdir.resolve()
    data = work / f"data-{args.rows}"
    data.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT / "src"))
    build(data, args.rows)
    sides = {"after": ROOT / "src"}
    if args.baseline:
        sides = {"before": export_tree(args.baseline, work), **sides}
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in sides}
    for _ in range(args.rounds):
        for side, src in sides.items():
            runs[side].append(run_side(src, data, args.repeat))
    lines = report(runs, args)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


def _least(runs: list[dict[str, Any]], query: str, key: str) -> float:
    return min(float(r[query][key]) for r in runs)


def report(runs: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> list[str]:
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    lines = [
        "# The Dask split: decomposition cost and split queries against the local executor",
        "",
        f"`{' '.join(['python', 'benchmarks/bench_split.py', *sys.argv[1:]])}` — "
        f"{args.rows:,} rows, {platform.machine()}, {os.cpu_count()} CPUs, load {load} at the "
        f"end; the shortest time of {args.rounds} interleaved rounds of {args.repeat} runs "
        "(compile and split: 50 calls). DaskExecutor: Dask's threaded scheduler, 4 tasks.",
        "",
    ]
    after = runs["after"]
    before = runs.get("before")
    header = (
        "| query | kind | same answer | compile µs | split µs (first call) | local s | Dask s "
        "| Dask / local |"
    )
    rule = "|---|---|---|---:|---:|---:|---:|---:|"
    if before:
        header += (
            " compile after/before | split after/before (first call) | Dask/local after/before |"
        )
        rule += "---:|---:|---:|"
    lines += [header, rule]
    for query in QUERIES:
        a = after[0][query]
        ratio = _least(after, query, "dask_s") / _least(after, query, "local_s")
        row = (
            f"| {query} | {a['kind']} | {all(r[query]['same'] for r in after)} | "
            f"{_least(after, query, 'compile_us'):.0f} | {_least(after, query, 'split_us'):.0f} "
            f"({_least(after, query, 'split_first_us'):.0f}) | "
            f"{_least(after, query, 'local_s'):.3f} | {_least(after, query, 'dask_s'):.3f} | "
            f"{ratio:.2f} |"
        )
        if before:
            kind_b = before[0][query]["kind"]
            ratio_b = _least(before, query, "dask_s") / _least(before, query, "local_s")
            first_a = _least(after, query, "split_first_us")
            first_b = _least(before, query, "split_first_us")
            row += (
                f" {_least(after, query, 'compile_us') / _least(before, query, 'compile_us'):.2f} |"
                f" {_least(after, query, 'split_us') / _least(before, query, 'split_us'):.2f}"
                f" ({first_a / first_b:.2f}) |"
                f" {ratio / ratio_b:.2f}{'' if kind_b == a['kind'] else f' (was {kind_b})'} |"
            )
        lines.append(row)
    return lines


if __name__ == "__main__":
    main()
