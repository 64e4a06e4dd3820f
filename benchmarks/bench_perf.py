"""Issue 18 items 1, 2 and 5: HEALPix aggregates, the fixed cost of a query, Python UDFs per
row, and the CSV/TSV/JSON writers — each against a baseline measured in the same run.

* **HEALPix aggregate**: ``SELECT ivo_healpix_index(3, ra, dec) AS hpx, COUNT(*), AVG(m)
  ... GROUP BY hpx`` through ``Archive.query`` against hand-written DuckDB over the same
  files with ``_healpix_29 >> 52`` (target ≤ 1.2×), on Tycho-2 (1.87M rows) and on the
  20M-row ``bench.big`` of ``bench_query.py``;
* **fixed cost**: ``SELECT COUNT(*), AVG(m) ... WHERE m < 10`` the same way (target ≤ 1.1×);
* **UDFs per row**: each Python UDF over every Tycho-2 row in DuckDB, the current
  implementation against the former one (frozen in ``tests/sky/_former_udfs.py``) and a
  UDF that does nothing (DuckDB's cost of calling Python per vector);
* **writers**: CSV, TSV and JSON of 500k and 1M rows of int64, float64, float32, boolean
  and strings with commas, quotes and line breaks, 5 % NULLs; rows per CPU-second of this
  process (``time.process_time``), against the VOTable BINARY2 writer on the same rows.

Every comparison alternates its sides (ABBA…), repeats, and reports medians, with the
load average before and after (the machine is shared).  The 20M-row catalogue is the one
``bench_query.py`` builds (same generator and seed); it is made here when missing.

Usage::

    .venv/bin/python benchmarks/bench_perf.py [--workdir benchmarks/work/query]
        [--rows 20000000] [--repeat 15] [--no-big] [--only healpix,fixed,udf,writers]
        [--writers-baseline REV]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the frozen former UDFs live in tests/
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_query as bq  # noqa: E402


def load() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {load()}] {message}", flush=True)


CPU: dict[str, list[float]] = {}
"""CPU seconds (all threads of this process) of the runs of the last :func:`alternate`."""


def alternate(runs: dict[str, Callable[[], Any]], repeat: int) -> dict[str, list[float]]:
    """Seconds of each run, ``repeat`` times, sides taking turns to go first (one warm-up).

    The CPU time of each run goes to :data:`CPU`: on a shared machine it moves less with
    the load than the wall time does.
    """
    for fn in runs.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in runs}
    CPU.clear()
    CPU.update({name: [] for name in runs})
    names = list(runs)
    for i in range(repeat):
        for name in names if i % 2 == 0 else names[::-1]:
            cpu, start = time.process_time(), time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - start)
            CPU[name].append(time.process_time() - cpu)
    return times


def summary(times: dict[str, list[float]], ours: str, theirs: str) -> dict[str, Any]:
    med = {k: statistics.median(v) for k, v in times.items()}
    low = {k: min(v) for k, v in times.items()}
    cpu = {k: statistics.median(v) for k, v in CPU.items()}
    out = {
        "median_ms": {k: round(v * 1e3, 3) for k, v in med.items()},
        "min_ms": {k: round(v * 1e3, 3) for k, v in low.items()},
        "cpu_median_ms": {k: round(v * 1e3, 3) for k, v in cpu.items()},
        "ratio_median": round(med[ours] / med[theirs], 3),
        "ratio_min": round(low[ours] / low[theirs], 3),
        "ratio_cpu": round(cpu[ours] / cpu[theirs], 3),
    }
    for name in times:
        print(
            f"    {name:<26} median {med[name] * 1e3:8.2f} ms   min {low[name] * 1e3:8.2f} ms"
            f"   cpu {cpu[name] * 1e3:8.2f} ms"
        )
    print(
        f"    ratio {ours} / {theirs}: median {out['ratio_median']}, min {out['ratio_min']}, "
        f"cpu {out['ratio_cpu']}"
    )
    return out


# --------------------------------------------------------------------------- data


def build(ws: bq.Workspace, big: bool) -> None:
    """Tycho-2 and (``big``) the 20M-row catalogue, ingested with default options."""
    from skyvault.catalog.ingest import ingest

    wanted: list[tuple[str, Path]] = []
    if bq.TYCHO2.exists():
        wanted.append(("bench.tycho2", bq.TYCHO2))
    if big:
        stamp = ws.read_stamp()
        same = all(stamp.get(k) == v for k, v in ws.stamp().items() if k != "small_rows")
        if not same and ws.big_input.exists():
            ws.big_input.unlink()
        if not ws.big_input.exists():
            ws.big_input.parent.mkdir(parents=True, exist_ok=True)
            log(f"generating {ws.rows:,} rows → {ws.big_input}")
            bq.generate_big(ws.big_input, ws.rows, ws.seed)
            ws.stamp_path.write_text(json.dumps({**ws.stamp()}))
        wanted.append(("bench.big", ws.big_input))
    for name, source in wanted:
        key = f"ingested {name}"
        if ws.read_stamp().get(key) and (ws.data / name.replace(".", "/")).exists():
            continue
        log(f"ingesting {source} as {name}")
        ingest([source], name, ws.data, ra="ra", dec="dec")
        ws.write_stamp(**{key: True})


# --------------------------------------------------------------------------- queries


def measure_queries(archive: Any, hand: bq.HandWritten, table: str, mag: str, repeat: int) -> dict:
    """The HEALPix aggregate and the magnitude cut, skyvault against hand-written DuckDB."""
    out: dict[str, Any] = {}
    source = hand.glob(table)
    cut = 10 if table == "tycho2" else 20
    cases = {
        "healpix aggregate": (
            f"SELECT ivo_healpix_index(3, ra, dec) AS hpx, COUNT(*) AS n, AVG({mag}) AS m "
            f"FROM bench.{table} GROUP BY hpx",
            f"SELECT _healpix_29 >> 52 AS hpx, COUNT(*) AS n, AVG({mag}) AS m FROM {source} "
            "GROUP BY hpx",
        ),
        "magnitude cut": (
            f"SELECT COUNT(*) AS n, AVG({mag}) AS m FROM bench.{table} WHERE {mag} < {cut}",
            f"SELECT COUNT(*) AS n, AVG({mag}) AS m FROM {source} WHERE {mag} < {cut}",
        ),
    }
    for label, (adql, sql) in cases.items():
        log(f"{label} on bench.{table}: {adql}")
        print(f"    skyvault SQL: {archive.plan(adql).sql}")
        ours, theirs = archive.query(adql), hand.query(sql)
        key = ours.column_names[0]
        ours, theirs = ours.sort_by(key), theirs.sort_by(key)
        same = ours["n"].to_pylist() == theirs["n"].to_pylist() and np.allclose(
            ours["m"].to_numpy(), theirs["m"].to_numpy(), rtol=1e-9
        )
        print(f"    same answer: {same} ({ours.num_rows} rows)")
        times = alternate(
            {"skyvault": lambda a=adql: archive.query(a), "duckdb": lambda s=sql: hand.query(s)},
            repeat,
        )
        out[label] = {"same": same, **summary(times, "skyvault", "duckdb")}
    return out


def measure_overhead(archive: Any, table: str, mag: str, repeat: int) -> dict[str, float]:
    """Where the fixed cost goes: compile + plan, and the whole query, cached or not."""
    from skyvault.adql.translate import compile_adql

    adql = f"SELECT COUNT(*) AS n, AVG({mag}) AS m FROM bench.{table} WHERE {mag} < 10"
    tables = archive.tables()
    runs = {
        "compile_adql (uncached)": lambda: compile_adql(adql, tables),
        "Archive.plan (cached)": lambda: archive.plan(adql),
    }
    times = alternate(runs, repeat * 10)
    out = {k: round(statistics.median(v) * 1e3, 4) for k, v in times.items()}
    for k, v in out.items():
        print(f"    {k:<26} median {v:.4f} ms")
    return out


# --------------------------------------------------------------------------- UDFs


def measure_udfs(repeat: int) -> dict[str, Any]:
    """Each Python UDF over every Tycho-2 row: current against former, nanoseconds per row."""
    import duckdb
    import duckdb.func
    from tests.sky import _former_udfs as former

    from skyvault.sky import astrometry, healpix

    con = duckdb.connect(":memory:", config={"threads": bq.DUCKDB_THREADS})
    point = "STRUCT(ra DOUBLE, dec DOUBLE)"

    def register(name: str, fn: Callable[..., Any], params: list[str], returns: str) -> None:
        con.create_function(
            name, fn, params, returns, type=duckdb.func.ARROW,
            null_handling=duckdb.func.SPECIAL, side_effects=False,
        )  # fmt: skip

    def nothing(order: pa.Array, ra: pa.Array, dec: pa.Array) -> pa.Array:
        return pa.nulls(len(ra), pa.int64())

    register("noop", nothing, ["INTEGER", "DOUBLE", "DOUBLE"], "BIGINT")
    for tag, module_h, module_a in (("new", healpix, astrometry), ("old", former, former)):
        register(f"idx_{tag}", module_h.ivo_healpix_index, ["INTEGER", "DOUBLE", "DOUBLE"],
                 "BIGINT")  # fmt: skip
        register(f"ctr_{tag}", module_h.ivo_healpix_center, ["INTEGER", "BIGINT"], point)
        register(f"epo_{tag}", module_a.ivo_epoch_prop_pos, ["DOUBLE"] * 8, point)
    con.execute(f"CREATE TABLE t AS SELECT ra, dec, mag_vt, id FROM read_parquet('{bq.TYCHO2}')")
    rows = con.execute("SELECT COUNT(*) FROM t").fetchone()[0]  # type: ignore[index]
    exprs = {
        "ivo_healpix_index": "{f}(8, ra, dec)",
        "ivo_healpix_center": "struct_extract({f}(8, id % 786432), 'ra')",
        "ivo_epoch_prop_pos": "struct_extract({f}(ra, dec, 5.0, mag_vt, -mag_vt, 10.0, "
        "2000.0, 2016.0), 'ra')",
    }
    prefix = {"ivo_healpix_index": "idx", "ivo_healpix_center": "ctr", "ivo_epoch_prop_pos": "epo"}
    out: dict[str, Any] = {"rows": rows}
    base = "SELECT SUM(CAST(ra AS DOUBLE)) FROM t"
    for name, template in exprs.items():
        log(f"UDF {name} over {rows:,} rows")
        runs = {
            "no UDF": lambda: con.execute(base).fetchall(),
            "noop UDF": lambda: con.execute("SELECT SUM(noop(8, ra, dec)) FROM t").fetchall(),
        }
        for tag in ("old", "new"):
            sql = f"SELECT SUM({template.format(f=prefix[name] + '_' + tag)}) FROM t"
            runs[tag] = lambda s=sql: con.execute(s).fetchall()
        old, new = runs["old"]()[0][0], runs["new"]()[0][0]  # sums: the order varies
        same = bool(np.isclose(old, new, rtol=1e-12, atol=0.0))
        times = alternate(runs, max(3, repeat // 3))
        med = {k: statistics.median(v) for k, v in times.items()}
        per_row = {k: round((v - med["no UDF"]) / rows * 1e9, 1) for k, v in med.items()}
        speedup = (med["old"] - med["no UDF"]) / (med["new"] - med["no UDF"])
        out[name] = {"same_sum": same, "ns_per_row_over_no_udf": per_row, "speedup": speedup}
        print(f"    same result: {same}; ns/row beyond the plain scan: {per_row}")
    return out


# --------------------------------------------------------------------------- writers


def writer_table(rows: int, seed: int = 3) -> pa.Table:
    rng = np.random.default_rng(seed)
    words = np.array(["NGC 1275", "a, b", 'say "hi"', "two\nlines", "tab\there", "ünï", ""])
    nulls = rng.random(rows) < 0.05
    return pa.table(
        {
            "id": pa.array(np.arange(rows, dtype=np.int64) * 7919),
            "ra": pa.array(rng.uniform(0.0, 360.0, rows)),
            "dec": pa.array(np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, rows)))),
            "flux": pa.array(rng.lognormal(0.0, 3.0, rows), mask=nulls),
            "mag": pa.array(rng.uniform(10.0, 22.0, rows).astype(np.float32)),
            "flag": pa.array(rng.random(rows) < 0.5),
            "name": pa.array(words[rng.integers(0, len(words), rows)].tolist(), mask=nulls),
        }
    )


def baseline_writers(revision: str) -> Any:
    """``src/skyvault/formats/tabular.py`` as it was at git ``revision``, imported as a
    module of its own (its imports resolve to the current code): the "before" of a
    before/after measured in one run."""
    import importlib.util
    import subprocess
    import tempfile

    path = "src/skyvault/formats/tabular.py"
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{revision}:{path}"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    copy = Path(tempfile.mkdtemp()) / "baseline_tabular.py"
    copy.write_text(source)
    spec = importlib.util.spec_from_file_location("baseline_tabular", copy)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _writer_runs(
    table: pa.Table, fields: list[Any], baseline: Any = None, revision: str = ""
) -> dict[str, Callable[[], int]]:
    """Each writer over ``table``: a call writes it all and returns the bytes written;
    with ``baseline`` (a former ``tabular`` module), its JSON and CSV writers too."""
    from skyvault.formats import write_votable
    from skyvault.formats.tabular import write_csv, write_json, write_tsv

    def size(chunks: Any) -> int:
        return sum(map(len, chunks))

    runs: dict[str, Callable[[], int]] = {
        "csv": lambda: size(write_csv(table.to_batches(65536), fields)),
        "tsv": lambda: size(write_tsv(table.to_batches(65536), fields)),
        "json": lambda: size(write_json(table.to_batches(65536), fields)),
        "votable binary2": lambda: size(
            write_votable(table.to_batches(65536), fields, serialization="binary2")
        ),
    }
    if baseline is not None:
        runs[f"json @{revision}"] = lambda: size(
            baseline.write_json(table.to_batches(65536), fields)
        )
        runs[f"csv @{revision}"] = lambda: size(baseline.write_csv(table.to_batches(65536), fields))
    return runs


def _written(writer: Callable[..., Any], table: pa.Table, fields: list[Any]) -> bytes:
    return b"".join(writer(table.to_batches(65536), fields))


def measure_writers(repeat: int, baseline_revision: str | None = None) -> dict[str, Any]:
    from skyvault.catalog.metadata import ColumnMeta
    from skyvault.formats import tabular

    baseline = baseline_writers(baseline_revision) if baseline_revision else None
    out: dict[str, Any] = {}
    for rows in (500_000, 1_000_000):
        table = writer_table(rows)
        fields = [ColumnMeta.from_arrow(f) for f in table.schema]
        writers = _writer_runs(table, fields, baseline, baseline_revision or "")
        log(f"writers, {rows:,} rows × {table.num_columns} columns")
        cpu: dict[str, list[float]] = {k: [] for k in writers}
        wall: dict[str, list[float]] = {k: [] for k in writers}
        size = {k: fn() for k, fn in writers.items()}
        if baseline is not None:  # the same bytes, or the comparison means nothing
            for fmt in ("json", "csv"):
                same = _written(getattr(baseline, f"write_{fmt}"), table, fields) == _written(
                    getattr(tabular, f"write_{fmt}"), table, fields
                )
                print(f"    {fmt}: same bytes as @{baseline_revision}: {same}")
                out[f"{fmt} same bytes at {rows}"] = same
        names = list(writers)
        for i in range(max(3, repeat // 3)):
            for name in names if i % 2 == 0 else names[::-1]:
                c, w = time.process_time(), time.perf_counter()
                writers[name]()
                cpu[name].append(time.process_time() - c)
                wall[name].append(time.perf_counter() - w)
        result = {}
        for name in names:
            c, w = statistics.median(cpu[name]), statistics.median(wall[name])
            result[name] = {"rows_per_cpu_s": round(rows / c), "cpu_s": round(c, 3),
                            "wall_s": round(w, 3), "mb": round(size[name] / 1e6, 1)}  # fmt: skip
            print(f"    {name:<16} {rows / c / 1e6:5.2f} M rows per CPU-second  cpu {c:.3f} s  "
                  f"wall {w:.3f} s  {size[name] / 1e6:6.1f} MB")  # fmt: skip
        out[str(rows)] = result
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "work" / "query")
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--seed", type=int, default=20261125)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--no-big", action="store_true", help="Tycho-2 only")
    parser.add_argument("--only", default="healpix,fixed,udf,writers")
    parser.add_argument("--build-only", action="store_true")
    parser.add_argument(
        "--writers-baseline",
        metavar="REV",
        help="also time the JSON and CSV writers of git revision REV (before/after in one run)",
    )
    parser.add_argument("--out", type=Path, help="JSON figures (default WORKDIR/perf-results.json)")
    args = parser.parse_args()
    only = set(args.only.split(","))

    import duckdb

    import skyvault
    from skyvault.engine.archive import Archive

    report: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    report["skyvault_source"] = str(Path(skyvault.__file__).parent)
    report["load_start"] = load()
    print(f"python {platform.python_version()}, duckdb {duckdb.__version__}, "
          f"pyarrow {pa.__version__}; {os.cpu_count()} CPUs; load {load()}")  # fmt: skip
    ws = bq.Workspace(args.workdir.resolve(), args.rows, 0, args.seed)
    if only & {"healpix", "fixed"}:
        build(ws, big=not args.no_big)
    if args.build_only:
        return
    if only & {"healpix", "fixed"}:
        archive = Archive(ws.data)
        hand = bq.HandWritten(ws.data)
        tables = [("tycho2", "mag_vt")] + ([] if args.no_big else [("big", "r")])
        for table, mag in tables:
            report[f"queries {table}"] = measure_queries(archive, hand, table, mag, args.repeat)
        log("compile and plan (the fixed cost outside DuckDB)")
        report["overhead"] = measure_overhead(archive, "tycho2", "mag_vt", args.repeat)
    if "udf" in only:
        report["udfs"] = measure_udfs(args.repeat)
    if "writers" in only:
        report["writers"] = measure_writers(args.repeat, args.writers_baseline)
    report["load_end"] = load()
    print(f"load at end: {load()}")
    out = args.out or args.workdir / "perf-results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"figures written to {out}")


if __name__ == "__main__":
    main()
