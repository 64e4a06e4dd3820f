"""Cross-match of an uploaded list with Tycho-2: STILTS ``tapskymatch``'s spellings against
the ``ra``/``dec`` POINT-form upload.

``tapskymatch`` uploads ``TAP_UPLOAD.up(tapupload_id, lon, lat)`` and joins with
``1=CONTAINS(POINT('ICRS', r.ra, r.dec), CIRCLE('ICRS', u.lon, u.lat, r))``; before the
positions of a cross-match were taken from the predicate, only an upload with columns named
``ra``/``dec`` (or main-position UCDs) got the cell join, and this took 65 s for 10k stars.
Measured here, in one process over the same 10k-row upload (random Tycho-2 stars moved by up
to 1″, all sky), engines taking turns:

* **in process** (``Archive.stream`` with the upload as an in-memory table, as the service
  runs it): the ``ra``/``dec`` upload with ``DISTANCE(POINT, POINT) < r`` (the baseline)
  against the ``lon``/``lat`` upload with tapskymatch's exact query, with ``CONTAINS`` in
  the shape of the baseline, with the 4-argument ``DISTANCE`` and with the POINT form;
* **without the cell join** (the plan made with no cross-match: what the old code ran for
  the ``lon``/``lat`` upload), on the first ``--nested-rows`` rows of the upload only, each
  against the cell join on the same rows;
* **over HTTP** (``--no-http`` skips): a live ``skyvault serve`` it starts, ``stilts
  tapskymatch`` with the 10k stars (wall time of the command, JVM start included) against
  a sync POST of the ``ra``/``dec`` upload with the POINT form.

Every form's pairs are compared with each other and with astropy's ``search_around_sky``.

Usage::

    .venv/bin/python benchmarks/bench_crossmatch_upload.py [--workdir benchmarks/work/xmatch]
        [--rows 10000] [--radius-arcsec 1] [--repeat 5] [--nested-rows 1000] [--no-http]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
TYCHO2 = ROOT.parent / "shared" / "data" / "tycho2" / "tycho2.parquet"
TABLE = "bench.tycho2"


def load() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {load()}] {message}", flush=True)


def ensure_data(workdir: Path, tycho2: Path) -> Path:
    """Tycho-2 ingested (default options) under ``workdir/data``, once; granted to all."""
    from skyvault.auth import AuthStorage, grant_access
    from skyvault.catalog.ingest import ingest

    data = workdir / "data"
    stamp = workdir / "ingested.json"
    if not stamp.exists() or not (data / "bench" / "tycho2").exists():
        if data.exists():
            shutil.rmtree(data)
        log(f"ingesting {tycho2} as {TABLE}")
        start = time.perf_counter()
        ingest([tycho2], TABLE, data, ra="ra", dec="dec")
        stamp.write_text(json.dumps({"ingest_s": time.perf_counter() - start}))
        storage = AuthStorage.for_data_dir(data)
        try:
            grant_access(storage, "bench", None)
        finally:
            storage.close()
    return data


def make_upload(tycho2: Path, rows: int, seed: int) -> tuple[pa.Table, pa.Table]:
    """``rows`` random Tycho-2 stars moved by up to 1″: as ``(id, ra, dec)`` and as
    tapskymatch uploads them, ``(tapupload_id, lon, lat)``."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    stars = pq.read_table(tycho2, columns=["ra", "dec"])
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(stars.num_rows, rows, replace=False))
    moved = SkyCoord(
        stars["ra"].to_numpy()[pick], stars["dec"].to_numpy()[pick], unit="deg"
    ).directional_offset_by(rng.uniform(0, 360, rows) * u.deg, rng.uniform(0, 1, rows) * u.arcsec)
    ids = np.arange(rows, dtype=np.int64)
    radec = pa.table({"id": ids, "ra": moved.ra.deg, "dec": moved.dec.deg})
    lonlat = pa.table({"tapupload_id": ids, "lon": moved.ra.deg, "lat": moved.dec.deg})
    return radec, lonlat


def upload_meta(name: str, table: pa.Table, position: tuple[str, str] | None) -> Any:
    from skyvault.catalog.metadata import ColumnMeta, TableMeta

    columns = tuple(ColumnMeta.from_arrow(f) for f in table.schema)
    ra, dec = position or (None, None)
    return TableMeta("TAP_UPLOAD", name, "plain", columns, table.num_rows, None, ra, dec)


def astropy_pairs(tycho2: Path, upload: pa.Table, radius_arcsec: float) -> set[tuple[int, int]]:
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    stars = pq.read_table(tycho2, columns=["id", "ra", "dec"])
    catalogue = SkyCoord(stars["ra"].to_numpy(), stars["dec"].to_numpy(), unit="deg")
    mine = SkyCoord(upload["ra"].to_numpy(), upload["dec"].to_numpy(), unit="deg")
    i_cat, i_up, _, _ = mine.search_around_sky(catalogue, radius_arcsec * u.arcsec)
    ids = stars["id"].to_numpy()
    return set(zip(upload["id"].to_numpy()[i_up].tolist(), ids[i_cat].tolist(), strict=True))


def pair_set(table: pa.Table) -> set[tuple[int, int]]:
    return set(zip(table["uid"].to_pylist(), table["tid"].to_pylist(), strict=True))


def queries(r: float) -> dict[str, tuple[str, str]]:
    """name -> (upload, ADQL); every one returns (uid, tid) pairs."""
    same = "SELECT u.{id} AS uid, t.id AS tid FROM {table} AS t JOIN TAP_UPLOAD.{up} AS u ON {on}"
    return {
        "ra/dec upload, POINT form (baseline)": (
            "radec",
            same.format(
                id="id", table=TABLE, up="radec",
                on=f"DISTANCE(POINT('ICRS', u.ra, u.dec), POINT('ICRS', t.ra, t.dec)) < {r!r}",
            ),
        ),
        "lon/lat upload, tapskymatch's query": (
            "up",
            "SELECT u.tapupload_id AS uid, r.id AS tid, "
            "DISTANCE(POINT('ICRS', u.lon, u.lat), POINT('ICRS', r.ra, r.dec))*3600.0 AS "
            f"SEP_ARCSEC FROM {TABLE} AS r JOIN TAP_UPLOAD.up AS u ON "
            f"1=CONTAINS(POINT('ICRS', r.ra, r.dec), CIRCLE('ICRS', u.lon, u.lat, {r!r}))",
        ),
        "lon/lat upload, CONTAINS(POINT, CIRCLE) = 1": (
            "up",
            same.format(
                id="tapupload_id", table=TABLE, up="up",
                on=f"CONTAINS(POINT('ICRS', t.ra, t.dec), CIRCLE('ICRS', u.lon, u.lat, {r!r})) = 1",
            ),
        ),
        "lon/lat upload, 4-argument DISTANCE": (
            "up",
            same.format(
                id="tapupload_id", table=TABLE, up="up",
                on=f"DISTANCE(u.lon, u.lat, t.ra, t.dec) < {r!r}",
            ),
        ),
        "lon/lat upload, POINT form": (
            "up",
            same.format(
                id="tapupload_id", table=TABLE, up="up",
                on=f"DISTANCE(POINT('ICRS', u.lon, u.lat), POINT('ICRS', t.ra, t.dec)) < {r!r}",
            ),
        ),
    }  # fmt: skip


def alternate(
    runs: dict[str, Callable[[], pa.Table]], repeat: int
) -> tuple[dict[str, list[float]], dict[str, pa.Table]]:
    times: dict[str, list[float]] = {k: [] for k in runs}
    results: dict[str, pa.Table] = {}
    for _ in range(repeat):
        for name, run in runs.items():
            start = time.perf_counter()
            results[name] = run()
            times[name].append(time.perf_counter() - start)
    return times, results


def measure_in_process(
    archive: Any, extra: dict[str, tuple[Any, pa.Table]], r: float, repeat: int
) -> dict[str, Any]:
    forms = queries(r)
    runs: dict[str, Callable[[], pa.Table]] = {}
    plans: dict[str, Any] = {}
    for name, (up, adql) in forms.items():
        plan = archive.plan(adql, extra=[extra[up]])
        plans[name] = {
            "cell_join": "__sv_cell" in plan.sql,
            "roles": {s.qualified_name: s.cell.role for s in plan.scans if s.cell},
        }
        log(f"{name}: cell join {plans[name]['cell_join']}, roles {plans[name]['roles']}")

        def run(adql: str = adql, up: str = up) -> pa.Table:
            return archive.stream(adql, extra=[extra[up]]).to_table()

        runs[name] = run
    alternate(runs, 1)  # warm: footers, registry
    times, results = alternate(runs, repeat)
    out: dict[str, Any] = {}
    for name, values in times.items():
        out[name] = {
            **plans[name],
            "median_s": statistics.median(values),
            "all_s": values,
            "pairs": results[name].num_rows,
        }
        print(f"  {name:<48} median {statistics.median(values):7.3f} s  all "
              + " ".join(f"{v:.3f}" for v in values))  # fmt: skip
    base = out["ra/dec upload, POINT form (baseline)"]["median_s"]
    for entry in out.values():
        entry["ratio_to_baseline"] = entry["median_s"] / base
    out["_results"] = {k: pair_set(v) for k, v in results.items()}
    return out


def measure_nested(
    archive: Any, extra: dict[str, tuple[Any, pa.Table]], r: float, rows: int
) -> dict[str, Any]:
    """Each lon/lat form on the first ``rows`` upload rows without and with the cell join."""
    from skyvault.adql.translate import compile_adql
    from skyvault.engine.plan import ScanSpec, plan_query, plan_translation

    _, table = extra["up"]
    small = table.slice(0, rows)
    small_meta = upload_meta("up", small, None)
    visible = [*archive.registry.tables(), small_meta]
    out: dict[str, Any] = {}
    for name, (up, adql) in queries(r).items():
        if up != "up" or "tapskymatch" in name:
            continue
        translation = compile_adql(adql, visible)
        refs = [
            ScanSpec(
                placeholder=t.placeholder,
                table=small if t.meta.schema == "TAP_UPLOAD" else archive.registry.get(
                    t.meta.schema, t.meta.name
                ),
                coverage=t.coverage,
            )
            for t in translation.tables
        ]  # fmt: skip
        plans = {
            "without cell join": plan_query(translation.sql, refs, translation.columns),
            "cell join": plan_translation(translation, refs),
        }
        entry: dict[str, Any] = {}
        answers = {}
        for label, plan in plans.items():
            start = time.perf_counter()
            answers[label] = archive.executor.execute(plan, timeout=1800).to_table()
            entry[label] = time.perf_counter() - start
        entry["same"] = pair_set(answers["cell join"]) == pair_set(answers["without cell join"])
        entry["speed-up"] = entry["without cell join"] / entry["cell join"]
        out[name] = entry
        print(f"  {name:<48} {rows} rows: without cell join {entry['without cell join']:8.2f} s, "
              f"cell join {entry['cell join']:.3f} s, x{entry['speed-up']:.0f}, "
              f"same pairs {entry['same']}")  # fmt: skip
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def measure_http(
    data: Path, workdir: Path, radec: pa.Table, r: float, repeat: int
) -> dict[str, Any]:
    """stilts tapskymatch against a sync POST of the ra/dec upload, on a live server."""
    import httpx
    from astropy.table import Table

    stilts = shutil.which("stilts")
    if stilts is None:
        log("stilts not found: HTTP part skipped")
        return {}
    port = _free_port()
    url = f"http://127.0.0.1:{port}/tap"
    env = {**os.environ, "SKYVAULT_DATA_DIR": str(data)}
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "skyvault"), "serve", "--port", str(port),
         "--data", str(data)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/availability", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("skyvault serve did not start")
            time.sleep(0.2)
        csv_path = workdir / "targets.csv"
        columns = {"src": radec["id"].to_numpy(), "ra": radec["ra"].to_numpy(),
                   "dec": radec["dec"].to_numpy()}  # fmt: skip
        Table(columns).write(csv_path, format="csv", overwrite=True)
        votable = io.BytesIO()
        Table(radec.to_pydict()).write(votable, format="votable", tabledata_format="binary2")
        adql = (
            f"SELECT u.id AS uid, t.id AS tid FROM {TABLE} AS t JOIN TAP_UPLOAD.radec AS u ON "
            f"DISTANCE(POINT('ICRS', u.ra, u.dec), POINT('ICRS', t.ra, t.dec)) < {r!r}"
        )
        out_csv = workdir / "matched.csv"

        def tapskymatch() -> int:
            subprocess.run(
                [stilts, "tapskymatch", f"in={csv_path}", "ifmt=csv", "inlon=ra", "inlat=dec",
                 f"tapurl={url}", f"taptable={TABLE}", "taplon=ra", "taplat=dec",
                 "tapcols=id", f"sr={r!r}", "find=all", f"out={out_csv}", "ofmt=csv"],
                check=True, capture_output=True, timeout=1800,
            )  # fmt: skip
            return sum(1 for _ in out_csv.open()) - 1

        def sync_radec() -> int:
            response = httpx.post(
                f"{url}/sync",
                data={"LANG": "ADQL", "QUERY": adql, "UPLOAD": "radec,param:t",
                      "MAXREC": "1000000", "RESPONSEFORMAT": "csv"},
                files={"t": ("t.xml", votable.getvalue())},
                timeout=1800,
            )  # fmt: skip
            response.raise_for_status()
            return response.text.count("\n") - 1

        runs = {"sync POST, ra/dec POINT form": sync_radec, "stilts tapskymatch": tapskymatch}
        times: dict[str, list[float]] = {k: [] for k in runs}
        rows: dict[str, int] = {}
        for i in range(repeat + 1):
            for name, run in runs.items():
                start = time.perf_counter()
                rows[name] = run()
                if i:  # the first round warms the server
                    times[name].append(time.perf_counter() - start)
        out: dict[str, Any] = {}
        for name, values in times.items():
            out[name] = {"median_s": statistics.median(values), "all_s": values, "rows": rows[name]}
            print(f"  {name:<48} median {statistics.median(values):7.3f} s  rows {rows[name]}  all "
                  + " ".join(f"{v:.2f}" for v in values))  # fmt: skip
        return out
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "work" / "xmatch")
    parser.add_argument("--tycho2", type=Path, default=TYCHO2)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--radius-arcsec", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--nested-rows", type=int, default=1000)
    parser.add_argument("--no-http", action="store_true")
    parser.add_argument("--seed", type=int, default=20261201)
    args = parser.parse_args()
    import duckdb

    from skyvault.engine.archive import open_archive

    args.workdir.mkdir(parents=True, exist_ok=True)
    log(f"python {platform.python_version()}, duckdb {duckdb.__version__}, "
        f"{os.cpu_count()} CPUs, {platform.platform()}")  # fmt: skip
    data = ensure_data(args.workdir, args.tycho2)
    r = args.radius_arcsec / 3600.0
    radec, lonlat = make_upload(args.tycho2, args.rows, args.seed)
    extra = {
        "radec": (upload_meta("radec", radec, ("ra", "dec")), radec),
        "up": (upload_meta("up", lonlat, None), lonlat),
    }
    report: dict[str, Any] = {"rows": args.rows, "radius_arcsec": args.radius_arcsec}
    archive = open_archive(data, timeout=1800)
    try:
        log(f"in process: {args.rows} upload rows x {TABLE}, r = {args.radius_arcsec}″")
        report["in_process"] = measure_in_process(archive, extra, r, args.repeat)
        answers = report["in_process"].pop("_results")
        want = astropy_pairs(args.tycho2, radec, args.radius_arcsec)
        report["astropy_pairs"] = len(want)
        report["all_equal_astropy"] = all(a == want for a in answers.values())
        log(f"astropy pairs {len(want)}; every form equal to astropy: "
            f"{report['all_equal_astropy']}")  # fmt: skip
        if args.nested_rows:
            log(f"without the cell join, first {args.nested_rows} upload rows")
            report["nested"] = measure_nested(archive, extra, r, args.nested_rows)
    finally:
        archive.close()
    if not args.no_http:
        log("over HTTP: skyvault serve")
        report["http"] = measure_http(data, args.workdir, radec, r, max(1, args.repeat // 2))
    report["load_end"] = load()
    path = args.workdir / "report.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    log(f"report: {path}")


if __name__ == "__main__":
    main()
