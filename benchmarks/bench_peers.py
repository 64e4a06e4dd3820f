"""skyvault side by side with its peers, on the same rows, interleaved query by query.

Engines (each skipped with a printed reason when it is not available here):

* **skyvault**: ``skyvault.open(data).query(adql)`` in this process, and the same ADQL over
  HTTP (``POST /tap/sync``, BINARY2) to a ``skyvault serve`` this script starts;
* **DuckDB by hand**: the SQL a person would write over the same HATS files
  (``bench_query.HandWritten``: cone = pruned files + one ``_healpix_29`` range + haversine;
  HEALPix aggregate = ``_healpix_29 >> 52``; cross-match = zone/RA-bin cell join);
* **PostgreSQL 15 + q3c** (Debian ``postgresql-15-q3c``), in the private cluster of
  ``bench_query.Postgres`` (tables clustered on their q3c index), with pgsphere
  (``postgresql-15-pgsphere``) for ``healpix_nest``;
* **LSDB** (``lsdb.open_catalog(...).cone_search``, ``.query``, ``.crossmatch``) over the same
  HATS files and skyvault's 5″ margin catalogue;
* **GAVO DaCHS 2.7** (Debian ``gavodachs2-server``) over its TAP endpoint, with the tables
  imported by ``dachs imp`` from an RD this script writes (``//scs#q3cindex`` mixin).  Needs
  root, the Debian cluster ``15/main`` (started here when down) and its ``gavo`` database
  (made by the package's post-install script).  DaCHS is run on Tycho-2 only: its import
  ships rows one by one through Python (1.87M rows took 6 min here), so 20M rows would take
  about an hour;
* **ingest**: skyvault's ``ingest`` against hats-import (catalogue + 5″ margin), each in a
  child process (``bench_ingest.run_child``: wall, CPU, peak RSS of the process tree), and
  the PostgreSQL load (COPY + q3c index + CLUSTER + ANALYZE) and DaCHS import.  The
  PostgreSQL and DaCHS loads are kept between runs (``--reload pg,dachs`` redoes them):
  their time is the one recorded when they were loaded, with its date, nice level and load.

Measures, per data set: cones of 5″, 1′ and 6′ (p50 and p95 over ``--cones`` centres ×
``--repeat`` passes); ``COUNT(*), AVG(mag) WHERE mag < cut``; ``COUNT(*), AVG(mag) … GROUP BY
ivo_healpix_index(3, ra, dec)``; a 1″ cross-match partner × objects (the partner holds 10 %
as many rows: 75 % within 1″ of an object row, 25 % field).  Before anything is timed every
engine's answer is compared with skyvault's (ids of every cone, count and mean, the counts per
HEALPix cell, the pairs; LSDB's cross-match keeps the nearest neighbour only, so its pairs are
checked to be a subset).  Then ``--repeat`` passes run every measure in turn; within a
measure the engines take turns going first, query by query.  An engine whose run takes longer
than ``--budget`` seconds runs once only.  The 1-minute load average is sampled every 2 s
(``/proc/loadavg``) and recorded for each measure, with the values before and after.

Data sets: ``tycho2`` (the real 1,871,011-row catalogue in ``../shared``) and ``synthetic``
(``bench_query.generate_big``: the same seeded 20M-row catalogue as ``bench_query.py``;
``--rows`` to change its size).

Usage (from the repository root; results in ``benchmarks/results/peers.md``, one section per
data set, replaced on each run; a ``## Notes`` section is kept)::

    .venv/bin/python benchmarks/bench_peers.py [--datasets tycho2,synthetic] [--rows 20000000]
        [--repeat 3] [--cones 30] [--skip dachs,lsdb,pg,http,hats-import] [--reload pg,dachs]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_ingest
import bench_query
import bench_tap
from bench_query import ARCSEC, HandWritten, Postgres, cone_centres, offset

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "work" / "peers"
RESULTS = ROOT / "benchmarks" / "results" / "peers.md"
TYCHO2 = bench_query.TYCHO2
RADII_ARCSEC = (5.0, 60.0, 360.0)
PARTNER_FRACTION = 0.1
MATCHED_FRACTION = 0.75
SEED = 20261125
ENGINES = ("skyvault", "skyvault http", "duckdb", "pg", "lsdb", "dachs")
DACHS_INPUTS = Path("/var/gavo/inputs/svbench")
DACHS_PORT = 18765


def load1() -> float:
    return os.getloadavg()[0]


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().strip()


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {load1():.2f}] {message}", flush=True)


class LoadSampler:
    """The 1-minute load average every ``interval`` seconds, in a thread."""

    def __init__(self, interval: float = 2.0) -> None:
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), load1()))
            self._stop.wait(self.interval)

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def between(self, start: float, end: float) -> tuple[float, float]:
        values = [v for t, v in self.samples if start <= t <= end] or [load1()]
        return min(values), max(values)


# --------------------------------------------------------------------------- data


def make_partner(objects: Path, out: Path, fraction: float, seed: int) -> int:
    """A catalogue of ``fraction`` × the rows of ``objects``, a row group at a time: 75 % of
    its rows within 1″ of distinct object rows (``truth_id``), the rest uniform field."""
    source = pq.ParquetFile(objects)
    tmp = out.with_suffix(".tmp")
    schema = pa.schema(
        [("id", pa.int64()), ("ra", pa.float64()), ("dec", pa.float64()), ("truth_id", pa.int64())]
    )
    written = 0
    with pq.ParquetWriter(tmp, schema, compression="snappy") as writer:
        for i in range(source.metadata.num_row_groups):
            group = source.read_row_group(i, columns=["id", "ra", "dec"])
            rng = np.random.default_rng([seed, 4242, i])
            n = group.num_rows
            n_matched = round(n * fraction * MATCHED_FRACTION)
            n_field = round(n * fraction * (1 - MATCHED_FRACTION))
            pick = np.sort(rng.choice(n, n_matched, replace=False))
            sep = ARCSEC * np.sqrt(rng.random(n_matched))  # uniform in the 1″ disc
            ra_m, dec_m = offset(
                group["ra"].to_numpy()[pick],
                group["dec"].to_numpy()[pick],
                sep,
                rng.uniform(0, 2 * np.pi, n_matched),
            )
            ra_f = rng.uniform(0.0, 360.0, n_field)
            dec_f = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n_field)))
            rows = n_matched + n_field
            table = pa.table(
                {
                    "id": np.arange(written, written + rows, dtype=np.int64),
                    "ra": np.concatenate([ra_m, ra_f]),
                    "dec": np.concatenate([dec_m, dec_f]),
                    "truth_id": np.concatenate(
                        [group["id"].to_numpy()[pick], np.full(n_field, -1, dtype=np.int64)]
                    ),
                },
                schema=schema,
            )
            writer.write_table(table)
            written += rows
    tmp.replace(out)
    return written


def split_parts(source: Path, parts: Path, groups_per_file: int = 2) -> list[Path]:
    """``source`` rewritten as files of ``groups_per_file`` row groups (hats-import runs one
    map task per input file: one big file would leave one of its two workers idle)."""
    done = parts / "done"
    if done.exists():
        return sorted(parts.glob("part-*.parquet"))
    shutil.rmtree(parts, ignore_errors=True)
    parts.mkdir(parents=True)
    reader = pq.ParquetFile(source)
    out = []
    for k, start in enumerate(range(0, reader.metadata.num_row_groups, groups_per_file)):
        stop = min(start + groups_per_file, reader.metadata.num_row_groups)
        path = parts / f"part-{k:04d}.parquet"
        with pq.ParquetWriter(path, reader.schema_arrow, compression="snappy") as writer:
            for i in range(start, stop):
                writer.write_table(reader.read_row_group(i))
        out.append(path)
    done.write_text("")
    return out


@dataclass
class Dataset:
    """One data set: its inputs, the columns the queries use and where its data live."""

    name: str
    label: str
    rows: int
    objects_file: Path  # one file: PostgreSQL, DaCHS, cone centres, the partner
    objects_inputs: list[Path]  # what both ingest tools read
    partner_file: Path
    mag: str
    cut: float
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    def pg_columns(self) -> list[tuple[str, str]]:
        schema = pq.read_schema(self.objects_file)
        return [(f.name, bench_query._pg_type(f.type)) for f in schema]


def prepare_tycho2(root: Path) -> Dataset:
    if not TYCHO2.exists():
        raise SystemExit(f"Tycho-2 is not at {TYCHO2}")
    partner = root / "input" / "partner.parquet"
    if not partner.exists():
        partner.parent.mkdir(parents=True, exist_ok=True)
        make_partner(TYCHO2, partner, PARTNER_FRACTION, SEED)
    rows = pq.ParquetFile(TYCHO2).metadata.num_rows
    return Dataset(
        "tycho2", f"Tycho-2 ({rows:,} rows)", rows, TYCHO2, [TYCHO2], partner, "mag_vt", 10.0, root
    )


class CacheDropper:
    """Drops the page cache of the files written under ``root`` every few seconds (so that
    writing tens of GB does not evict what other processes on the machine have cached)."""

    def __init__(self, root: Path, interval: float = 5.0) -> None:
        self.root = root
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def drop(self, sync: bool = False) -> None:
        for path in self.root.rglob("*"):
            with contextlib.suppress(OSError):
                fd = os.open(path, os.O_RDONLY)
                try:
                    if sync:
                        os.fsync(fd)
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                finally:
                    os.close(fd)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.drop()

    def __enter__(self) -> CacheDropper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.drop(sync=True)


def prepare_synthetic(root: Path, rows: int, seed: int = SEED, parts: bool = True) -> Dataset:
    """``bench_query.generate_big``'s catalogue (same rows as bench_query.py for the same
    ``rows`` and seed), its parts and its partner; kept while ``rows`` and seed agree."""
    inputs = root / "input"
    stamp = inputs / "stamp.json"
    want = {"generator": bench_query.GENERATOR_VERSION, "rows": rows, "seed": seed}
    if not stamp.exists() or json.loads(stamp.read_text()) != want:
        shutil.rmtree(inputs, ignore_errors=True)
        inputs.mkdir(parents=True)
        log(f"generating {rows:,} rows (bench_query.generate_big, seed {seed})")
        start = time.perf_counter()
        with CacheDropper(inputs):
            bench_query.generate_big(inputs / "objects.parquet", rows, seed)
            make_partner(
                inputs / "objects.parquet", inputs / "partner.parquet", PARTNER_FRACTION, seed
            )
        log(f"  generated in {time.perf_counter() - start:.1f} s")
        stamp.write_text(json.dumps(want))
    objects = inputs / "objects.parquet"
    inputs_list = split_parts(objects, inputs / "parts") if parts else [objects]
    return Dataset(
        "synthetic",
        f"synthetic ({rows:,} rows)",
        rows,
        objects,
        inputs_list,
        inputs / "partner.parquet",
        "r",
        18.0,
        root,
    )


# --------------------------------------------------------------------------- ingest


@dataclass
class IngestFigure:
    tool: str
    wall_s: float
    cpu_s: float | None = None
    peak_rss: int | None = None
    note: str = ""
    load: str = ""


def ingest_skyvault(ds: Dataset, work: Path) -> IngestFigure:
    """Ingest objects (timed in a child process, as bench_ingest does) and the partner."""
    from skyvault.catalog.ingest import ingest

    shutil.rmtree(ds.data, ignore_errors=True)
    before = load1()
    spec = {"inputs": [str(p) for p in ds.objects_inputs], "out": str(ds.data)}
    run = bench_ingest.run_child("skyvault", "skyvault", ds.rows, spec, work)
    ingest([ds.partner_file], "bench.partner", ds.data, ra="ra", dec="dec")
    return IngestFigure(
        "skyvault (catalogue + 5″ margin)",
        run.wall,
        run.cpu,
        run.peak_rss,
        load=f"{before:.2f} → {run.load_after:.2f}",
    )


def ingest_hats_import(ds: Dataset, work: Path) -> IngestFigure:
    out = work / "hats-import-out"
    tmp = work / "hats-import-tmp"
    shutil.rmtree(out, ignore_errors=True)
    before = load1()
    spec = {"inputs": [str(p) for p in ds.objects_inputs], "out": str(out), "tmp": str(tmp)}
    try:
        cat = bench_ingest.run_child("hats-import", "hats-import", ds.rows, spec, work)
        margin = bench_ingest.run_child("hats-margin", "hats-margin", ds.rows, spec, work)
    finally:
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return IngestFigure(
        "hats-import (catalogue + 5″ margin)",
        cat.wall + margin.wall,
        cat.cpu + margin.cpu,
        max(cat.peak_rss, margin.peak_rss),
        note=f"catalogue {cat.wall:.1f} s + margin {margin.wall:.1f} s, "
        f"{len(ds.objects_inputs)} input file(s)",
        load=f"{before:.2f} → {margin.load_after:.2f}",
    )


class Stamps:
    """Loads kept between runs (PostgreSQL, DaCHS), with the figures taken when loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}

    def get(self, key: str) -> dict[str, Any] | None:
        value = self.data.get(key)
        return dict(value) if isinstance(value, dict) else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        self.data[key] = value
        self.path.write_text(json.dumps(self.data, indent=1))


# --------------------------------------------------------------------------- peers


class Http:
    """A TAP service's ``/sync`` endpoint, with one keep-alive connection."""

    def __init__(self, url: str, fmt: str | None = "votable/b2") -> None:
        import httpx

        self.url = url
        self.fmt = fmt
        self.client = httpx.Client(timeout=3600)

    def query(self, adql: str) -> bytes:
        form = {"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": adql, "MAXREC": "10000000"}
        if self.fmt:
            form["RESPONSEFORMAT"] = self.fmt
        r = self.client.post(f"{self.url}/sync", data=form)
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {r.text[:300]}")
        return r.content

    def close(self) -> None:
        self.client.close()


def votable(body: bytes) -> pa.Table:
    from astropy.io.votable import parse_single_table

    table = parse_single_table(io.BytesIO(body)).to_table()
    return pa.table({name: np.asarray(table[name]) for name in table.colnames})


class Dachs:
    """GAVO DaCHS (Debian ``gavodachs2-server``): tables imported by ``dachs imp`` from an RD
    written here, served by ``dachs serve debug`` on :data:`DACHS_PORT`."""

    def __init__(self, work: Path, stamps: Stamps) -> None:
        self.work = work
        self.stamps = stamps
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_cluster = False
        self.url = f"http://127.0.0.1:{DACHS_PORT}/tap"

    @staticmethod
    def unavailable() -> str | None:
        if shutil.which("dachs") is None:
            return "`dachs` is not installed (apt-get install -y gavodachs2-server)"
        if os.geteuid() != 0:
            return "DaCHS import needs root here (files owned by gavo, the 15/main cluster)"
        return None

    def _cluster(self) -> None:
        status = subprocess.run(
            ["pg_ctlcluster", "15", "main", "status"], capture_output=True, check=False
        )
        if status.returncode != 0:
            log("starting the Debian PostgreSQL cluster 15/main for DaCHS")
            subprocess.run(["pg_ctlcluster", "15", "main", "start"], check=True)
            self.started_cluster = True

    def table(self, ds: Dataset, role: str) -> str:
        return f"svbench.{ds.name}_{role}"

    def load(self, ds: Dataset, reload: bool) -> IngestFigure | None:
        """Import objects and partner of ``ds`` (unless already done); the objects' figure."""
        from astropy.table import Table

        self._cluster()
        key = f"dachs:{ds.name}"
        stamp = self.stamps.get(key)
        if stamp and not reload:
            return IngestFigure("DaCHS `dachs imp` (kept from an earlier run)", **stamp["figure"])
        DACHS_INPUTS.mkdir(parents=True, exist_ok=True)
        columns = {"objects": pq.read_schema(ds.objects_file), "partner": None}
        tables, datas = [], []
        for role, source in (("objects", ds.objects_file), ("partner", ds.partner_file)):
            name = f"{ds.name}_{role}"
            schema = columns[role] or pq.read_schema(source)
            cols = []
            for f in schema:
                ucd = {"id": "meta.id;meta.main", "ra": "pos.eq.ra;meta.main"}.get(f.name, "")
                ucd = "pos.eq.dec;meta.main" if f.name == "dec" else ucd
                cols.append(
                    f'    <column name="{f.name}" type="{bench_query._pg_type(f.type)}"'
                    + (f' ucd="{ucd}"' if ucd else "")
                    + (' required="True"' if f.name == "id" else "")
                    + "/>"
                )
            tables.append(
                f'  <table id="{name}" onDisk="True" adql="True" mixin="//scs#q3cindex" '
                f'primary="id">\n' + "\n".join(cols) + "\n  </table>"
            )
            datas.append(
                f'  <data id="import_{name}">\n    <sources>{name}.fits</sources>\n'
                f'    <fitsTableGrammar/>\n    <make table="{name}"/>\n  </data>'
            )
            data = pq.read_table(source)
            Table({n: data[n].to_numpy() for n in data.column_names}).write(
                DACHS_INPUTS / f"{name}.fits", overwrite=True
            )
        rd = DACHS_INPUTS / f"{ds.name}.rd"
        rd.write_text(
            '<resource schema="svbench">\n  <meta name="title">skyvault bench_peers.py</meta>\n'
            '  <meta name="description">Tables of benchmarks/bench_peers.py</meta>\n'
            '  <meta name="creationDate">2026-12-02T00:00:00</meta>\n'
            '  <meta name="subject">benchmark</meta>\n'
            + "\n".join(tables)
            + "\n"
            + "\n".join(datas)
            + "\n</resource>\n"
        )
        subprocess.run(["chown", "-R", "gavo:gavo", str(DACHS_INPUTS)], check=True)
        figure = None
        for role in ("objects", "partner"):
            log(f"DaCHS: dachs imp {ds.name} import_{ds.name}_{role}")
            before = load1()
            usage0 = os.times()
            start = time.perf_counter()
            subprocess.run(
                ["dachs", "imp", ds.name, f"import_{ds.name}_{role}"],
                cwd=DACHS_INPUTS,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            wall = time.perf_counter() - start
            usage1 = os.times()
            cpu = (usage1.children_user - usage0.children_user) + (
                usage1.children_system - usage0.children_system
            )
            if role == "objects":
                figure = {
                    "wall_s": wall,
                    "cpu_s": cpu,
                    "note": f"{time.strftime('%Y-%m-%d %H:%M')} UTC, nice {os.nice(0)}; CPU of "
                    "`dachs imp` only "
                    "(the PostgreSQL server's is not counted)",
                    "load": f"{before:.2f} → {load1():.2f}",
                }
        assert figure is not None
        self.stamps.put(key, {"figure": figure})
        return IngestFigure("DaCHS `dachs imp`", **figure)

    def start(self) -> None:
        import httpx

        self.work.mkdir(parents=True, exist_ok=True)
        settings = self.work / "gavo.rc"
        settings.write_text(
            f"[web]\nserverPort: {DACHS_PORT}\nbindAddress: 127.0.0.1\n"
            f"serverURL: http://127.0.0.1:{DACHS_PORT}\n\n"
            "[async]\ndefaultExecTimeSync: 3600\nhardMAXREC: 20000000\n"
        )
        log_path = self.work / "dachs-server.log"
        with log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                ["dachs", "serve", "debug"],
                env={**os.environ, "GAVOSETTINGS": str(settings)},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dachs serve exited; see {log_path}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/availability", timeout=2).status_code == 200:
                    return
            time.sleep(0.5)
        raise RuntimeError("dachs serve did not answer within 60 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
        if self.started_cluster:
            subprocess.run(["pg_ctlcluster", "15", "main", "stop"], check=False)
            self.started_cluster = False

    @staticmethod
    def version() -> str:
        out = subprocess.run(["dachs", "--version"], capture_output=True, text=True, check=False)
        return out.stdout.strip() or out.stderr.strip()


def pg_prepare(pg: Postgres, ds: Dataset, stamps: Stamps, reload: bool) -> IngestFigure:
    """Objects and partner in PostgreSQL (clustered on q3c), with pgsphere."""
    pg.conn.execute("CREATE EXTENSION IF NOT EXISTS pg_sphere")
    key = f"pg:{ds.name}"
    stamp = json.dumps({"file": str(ds.objects_file), "rows": ds.rows, "v": 1})
    old = stamps.get(key)
    if reload:
        pg.conn.execute("DELETE FROM bench_meta WHERE name LIKE %s", (f"{ds.name}_%",))
    before = load1()
    seconds = pg.load(f"{ds.name}_objects", ds.objects_file, ds.pg_columns(), stamp)
    partner_cols = [(f.name, bench_query._pg_type(f.type)) for f in pq.read_schema(ds.partner_file)]
    pg.load(f"{ds.name}_partner", ds.partner_file, partner_cols, stamp)
    if seconds:
        figure = {
            "wall_s": seconds,
            "note": f"{time.strftime('%Y-%m-%d %H:%M')} UTC, nice {os.nice(0)}; "
            "COPY + q3c index + CLUSTER + ANALYZE",
            "load": f"{before:.2f} → {load1():.2f}",
        }
        stamps.put(key, {"figure": figure})
        return IngestFigure("PostgreSQL + q3c load", **figure)
    if old is not None:
        return IngestFigure("PostgreSQL + q3c load (kept from an earlier run)", **old["figure"])
    return IngestFigure(
        "PostgreSQL + q3c load",
        math.nan,
        note="loaded by an earlier run that did not record its time (--reload measures it)",
    )


# --------------------------------------------------------------------------- measures


Runner = Callable[[Any], Any]


@dataclass
class Measure:
    """One measure: its queries, and per engine a runner and an answer normaliser."""

    label: str
    queries: list[Any]
    runs: dict[str, Runner]
    answer: dict[str, Callable[[Any], Any]]
    same: Callable[[str, Any, Any], bool]
    warm: bool = True
    skipped: dict[str, str] = field(default_factory=dict)  # engine → reason
    times: dict[str, list[list[float]]] = field(default_factory=dict)  # engine → per repeat
    failures: dict[str, str] = field(default_factory=dict)
    checks: dict[str, str] = field(default_factory=dict)
    load: tuple[float, float] = (0.0, 0.0)
    rows: str = ""


def run_checks(m: Measure, results: dict[str, list[Any]]) -> None:
    ref = results.get("skyvault")
    for name, values in results.items():
        if name == "skyvault" or ref is None:
            continue
        bad = 0
        for a, b in zip(ref, values, strict=True):
            if not m.same(name, m.answer["skyvault"](a), m.answer[name](b)):
                bad += 1
        m.checks[name] = "same" if bad == 0 else f"**{bad} of {len(values)} differ**"


def one_pass(m: Measure, repeat_index: int, budget: float, check: bool) -> None:
    names = [n for n in m.runs if n not in m.failures]
    results: dict[str, list[Any]] = {n: [] for n in names}
    for i, query in enumerate(m.queries):
        k = (i + repeat_index) % len(names)
        for name in names[k:] + names[:k]:
            if name in m.failures:
                continue
            per = m.times.setdefault(name, [])
            if repeat_index > 0 and _over(per, budget):
                continue  # slower than the budget: measured once
            start = time.perf_counter()
            try:
                result = m.runs[name](query)
            except Exception as exc:  # a peer failing is a result, not a crash
                m.failures[name] = f"{type(exc).__name__}: {str(exc)[:200]}"
                log(f"  {m.label}: {name} failed: {m.failures[name]}")
                continue
            elapsed = time.perf_counter() - start
            if repeat_index >= 0:
                while len(per) <= repeat_index:
                    per.append([])
                per[repeat_index].append(elapsed)
            if check:
                results[name].append(result)
    if check:
        run_checks(m, {n: v for n, v in results.items() if n not in m.failures})


def _over(per: list[list[float]], budget: float) -> bool:
    done = [t for rep in per for t in rep]
    return bool(done) and min(done) > budget


def run_measures(measures: list[Measure], repeat: int, budget: float, sampler: LoadSampler) -> None:
    spans: dict[str, list[tuple[float, float]]] = {m.label: [] for m in measures}
    for m in measures:
        if m.warm:
            log(f"{m.label}: warm-up and check ({len(m.queries)} queries × {len(m.runs)} engines)")
            start = time.time()
            one_pass(m, -1, budget, check=True)
            spans[m.label].append((start, time.time()))
    for r in range(repeat):
        for m in measures:
            log(f"{m.label}: pass {r + 1}/{repeat}")
            start = time.time()
            one_pass(m, r, budget, check=(r == 0 and not m.warm))
            spans[m.label].append((start, time.time()))
    for m in measures:
        lows, highs = zip(*(sampler.between(a, b) for a, b in spans[m.label]), strict=True)
        m.load = (min(lows), max(highs))


def summary(m: Measure, name: str) -> dict[str, Any] | None:
    per = m.times.get(name)
    if not per:
        return None
    every = [t for rep in per for t in rep]
    reps = [statistics.median(rep) for rep in per if rep]
    return {
        "p50_ms": 1e3 * statistics.median(every),
        "p95_ms": 1e3 * float(np.percentile(every, 95)),
        "rep_p50_ms": [1e3 * x for x in reps],
        "n": len(every),
    }


# --------------------------------------------------------------------------- engines


def sorted_ids(values: Any) -> np.ndarray:
    return np.sort(np.asarray(values, dtype=np.int64))


def pair_array(a: Any, b: Any) -> np.ndarray:
    arr = np.stack([np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)], axis=1)
    return arr[np.lexsort((arr[:, 1], arr[:, 0]))] if len(arr) else arr.reshape(0, 2)


def hpx_counts(pix: Any, n: Any) -> np.ndarray:
    return pair_array(pix, n)


def sample_positions(path: Path, max_groups: int = 5) -> pa.Table:
    """ra, dec of up to ``max_groups`` evenly spaced row groups (bounded memory at 200M)."""
    reader = pq.ParquetFile(path)
    n = reader.metadata.num_row_groups
    picks = sorted({round(i * (n - 1) / max(1, max_groups - 1)) for i in range(max_groups)})
    return pa.concat_tables(reader.read_row_group(i, columns=["ra", "dec"]) for i in picks)


def build_measures(
    ds: Dataset,
    engines: dict[str, Any],
    skipped: dict[str, str],
    n_cones: int,
) -> list[Measure]:
    archive = engines["skyvault"]
    http: Http | None = engines.get("skyvault http")
    hand: HandWritten | None = engines.get("duckdb")
    pg: Postgres | None = engines.get("pg")
    lsdb_cats: dict[str, Any] | None = engines.get("lsdb")
    dachs: Http | None = engines.get("dachs")
    dachs_table = f"svbench.{ds.name}_objects"
    mag, cut = ds.mag, ds.cut
    measures: list[Measure] = []

    def skip(m: Measure, reasons: dict[str, str]) -> Measure:
        for name in ENGINES:
            if name not in m.runs:
                m.skipped[name] = reasons.get(name) or skipped.get(name) or "not available"
        return m

    # Cones.
    positions = sample_positions(ds.objects_file)
    for radius_arcsec in RADII_ARCSEC:
        radius = radius_arcsec * ARCSEC
        centres = cone_centres(positions, n_cones, radius, int(radius_arcsec) + 11)

        def cone_adql(table: str, c: tuple[float, float], r: float = radius) -> str:
            return (
                f"SELECT id, ra, dec FROM {table} WHERE CONTAINS(POINT('ICRS', ra, dec), "
                f"CIRCLE('ICRS', {c[0]!r}, {c[1]!r}, {r!r})) = 1"
            )

        runs: dict[str, Runner] = {
            "skyvault": lambda c, f=cone_adql: archive.query(f("bench.objects", c))
        }
        answer: dict[str, Callable[[Any], Any]] = {"skyvault": lambda t: sorted_ids(t["id"])}
        if http is not None:
            runs["skyvault http"] = lambda c, f=cone_adql: http.query(f("bench.objects", c))
            answer["skyvault http"] = lambda b: sorted_ids(votable(b)["id"])
        if hand is not None:
            hull = hand.cone_hpx("objects", hull=True)
            runs["duckdb"] = lambda c, h=hull, r=radius: h(c[0], c[1], r)
            answer["duckdb"] = lambda t: sorted_ids(t["id"])
        if pg is not None:
            q3c = pg.cone(f"{ds.name}_objects")
            runs["pg"] = lambda c, q=q3c, r=radius: q(c[0], c[1], r)
            answer["pg"] = lambda rows: sorted_ids([row[0] for row in rows])
        if lsdb_cats is not None:
            runs["lsdb"] = partial(_lsdb_cone, lsdb_cats["objects"], radius_arcsec)
            answer["lsdb"] = lambda df: sorted_ids(df["id"].to_numpy())
        if dachs is not None:
            runs["dachs"] = lambda c, f=cone_adql: dachs.query(f(dachs_table, c))
            answer["dachs"] = lambda b: sorted_ids(votable(b)["id"])
        label = (
            f"cone {radius_arcsec / 60:g}′" if radius_arcsec >= 60 else f"cone {radius_arcsec:g}″"
        )
        m = Measure(label, centres, runs, answer, lambda _n, a, b: bool(np.array_equal(a, b)))
        measures.append(skip(m, {}))
    del positions

    # Magnitude cut.
    adql = f"SELECT COUNT(*) AS n, AVG({mag}) AS m FROM {{t}} WHERE {mag} < {cut:g}"
    runs = {"skyvault": lambda _q, a=adql: archive.query(a.format(t="bench.objects"))}
    answer = {"skyvault": lambda t: (int(t["n"][0].as_py()), float(t["m"][0].as_py()))}
    if http is not None:
        runs["skyvault http"] = lambda _q, a=adql: http.query(a.format(t="bench.objects"))
        answer["skyvault http"] = lambda b: _n_m(votable(b))
    if hand is not None:
        sql = adql.format(t=hand.glob("objects"))
        runs["duckdb"] = lambda _q, s=sql: hand.query(s)
        answer["duckdb"] = answer["skyvault"]
    if pg is not None:
        sql = adql.format(t=f"{ds.name}_objects")
        runs["pg"] = lambda _q, s=sql: pg.conn.execute(s, prepare=False).fetchall()
        answer["pg"] = lambda rows: (int(rows[0][0]), float(rows[0][1]))
    if lsdb_cats is not None:
        cat = lsdb_cats["objects"]
        runs["lsdb"] = lambda _q, cat=cat: cat.query(f"{mag} < {cut:g}")[[mag]].compute(
            progress_bar=False
        )
        answer["lsdb"] = lambda df: (len(df), float(df[mag].astype("float64").mean()))
    if dachs is not None:
        runs["dachs"] = lambda _q, a=adql: dachs.query(a.format(t=dachs_table))
        answer["dachs"] = lambda b: _n_m(votable(b))
    label = f"COUNT(*), AVG({mag}) WHERE {mag} < {cut:g}"
    m = Measure(label, [None], runs, answer, _same_n_m)
    measures.append(skip(m, {}))

    # HEALPix aggregate.
    adql = (
        f"SELECT ivo_healpix_index(3, ra, dec) AS hpx, COUNT(*) AS n, AVG({mag}) AS m "
        f"FROM {{t}} GROUP BY ivo_healpix_index(3, ra, dec)"
    )
    runs = {"skyvault": lambda _q, a=adql: archive.query(a.format(t="bench.objects"))}
    answer = {"skyvault": lambda t: hpx_counts(t["hpx"].to_numpy(), t["n"].to_numpy())}
    reasons = {"lsdb": "LSDB's API has no HEALPix-index aggregate (one would compute pandas "
               "over every partition)"}  # fmt: skip
    if http is not None:
        runs["skyvault http"] = lambda _q, a=adql: http.query(a.format(t="bench.objects"))
        answer["skyvault http"] = lambda b: _hpx_votable(votable(b))
    if hand is not None:
        sql = (
            f"SELECT _healpix_29 >> 52 AS hpx, COUNT(*) AS n, AVG({mag}) AS m "
            f"FROM {hand.glob('objects')} GROUP BY _healpix_29 >> 52"
        )
        runs["duckdb"] = lambda _q, s=sql: hand.query(s)
        answer["duckdb"] = answer["skyvault"]
    if pg is not None:
        sql = (
            f"SELECT healpix_nest(3, spoint(radians(ra), radians(dec))) AS hpx, COUNT(*), "
            f"AVG({mag}) FROM {ds.name}_objects GROUP BY 1"
        )
        runs["pg"] = lambda _q, s=sql: pg.conn.execute(s, prepare=False).fetchall()
        answer["pg"] = lambda rows: hpx_counts([r[0] for r in rows], [r[1] for r in rows])
    if dachs is not None:
        runs["dachs"] = lambda _q, a=adql: dachs.query(a.format(t=dachs_table))
        answer["dachs"] = lambda b: _hpx_votable(votable(b))
    label = f"COUNT(*), AVG({mag}) GROUP BY ivo_healpix_index(3, ra, dec)"
    m = Measure(label, [None], runs, answer, lambda _n, a, b: bool(np.array_equal(a, b)))
    measures.append(skip(m, reasons))

    # Cross-match.
    adql = (
        "SELECT p.id AS pid, o.id AS oid FROM {p} AS p JOIN {o} AS o ON "
        "DISTANCE(POINT('ICRS', p.ra, p.dec), POINT('ICRS', o.ra, o.dec)) < 1.0/3600"
    )
    sky = adql.format(p="bench.partner", o="bench.objects")
    runs = {"skyvault": lambda _q: archive.query(sky)}
    answer = {"skyvault": lambda t: pair_array(t["pid"], t["oid"])}
    reasons = {"skyvault http": "not run over HTTP (a result of 10⁵–10⁶ rows measures the "
               "transfer; see bench_tap.py)"}  # fmt: skip
    if hand is not None:
        sql = hand.crossmatch_sql("partner", "objects", ARCSEC)
        runs["duckdb"] = lambda _q, s=sql: hand.query(s)
        answer["duckdb"] = lambda t: pair_array(t["sid"], t["bid"])
    if pg is not None:
        sql = (
            f"SELECT p.id, o.id FROM {ds.name}_partner AS p JOIN {ds.name}_objects AS o "
            f"ON q3c_join(p.ra, p.dec, o.ra, o.dec, {ARCSEC!r})"
        )
        runs["pg"] = lambda _q, s=sql: pg.conn.execute(s, prepare=False).fetchall()
        answer["pg"] = lambda rows: pair_array([r[0] for r in rows], [r[1] for r in rows])
    if lsdb_cats is not None:
        left, right = lsdb_cats["partner"], lsdb_cats["objects"]
        runs["lsdb"] = lambda _q: left.crossmatch(
            right,
            radius_arcsec=1.0,
            n_neighbors=1,
            suffixes=("_p", "_o"),
            suffix_method="all_columns",
        ).compute(progress_bar=False)
        answer["lsdb"] = lambda df: pair_array(df["id_p"].to_numpy(), df["id_o"].to_numpy())
    if dachs is not None:
        # DaCHS turns CONTAINS(POINT, CIRCLE) into q3c_join (not DISTANCE < r): what a
        # DaCHS user writes for a cross-match.
        text = (
            f"SELECT p.id AS pid, o.id AS oid FROM svbench.{ds.name}_partner AS p JOIN "
            f"{dachs_table} AS o ON 1 = CONTAINS(POINT('ICRS', o.ra, o.dec), "
            "CIRCLE('ICRS', p.ra, p.dec, 1.0/3600))"
        )
        runs["dachs"] = lambda _q: dachs.query(text)
        answer["dachs"] = lambda b: _pairs_votable(votable(b))
    m = Measure("cross-match partner × objects, 1″", [None], runs, answer, _same_pairs, warm=False)
    measures.append(skip(m, reasons))
    return measures


def _lsdb_cone(cat: Any, radius_arcsec: float, c: tuple[float, float]) -> Any:
    return cat.cone_search(c[0], c[1], radius_arcsec).compute(progress_bar=False)


def _pairs_votable(t: pa.Table) -> np.ndarray:
    return pair_array(t["pid"], t["oid"])


def _n_m(t: pa.Table) -> tuple[int, float]:
    return int(t["n"][0].as_py()), float(t["m"][0].as_py())


def _same_n_m(_name: str, a: tuple[int, float], b: tuple[int, float]) -> bool:
    return a[0] == b[0] and math.isclose(a[1], b[1], rel_tol=1e-6)


def _hpx_votable(t: pa.Table) -> np.ndarray:
    return hpx_counts(t["hpx"].to_numpy(), t["n"].to_numpy())


def _same_pairs(name: str, a: np.ndarray, b: np.ndarray) -> bool:
    if name == "lsdb":  # nearest neighbour only: a subset, one pair per partner row
        whole = {(int(x), int(y)) for x, y in a}
        return len(np.unique(b[:, 0])) == len(np.unique(a[:, 0])) and all(
            (int(x), int(y)) in whole for x, y in b
        )
    return a.shape == b.shape and bool(np.array_equal(a, b))


# --------------------------------------------------------------------------- report


def machine() -> dict[str, str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem = Path("/proc/meminfo").read_text().split("\n")[0].split()[1]
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "cpu": f"{os.cpu_count()} × {cpu}",
        "ram": f"{int(mem) / 2**20:.1f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "commit": commit + (" (with uncommitted changes)" if dirty else ""),
    }


def versions() -> dict[str, str]:
    import duckdb

    out = {
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "pyarrow": pa.__version__,
    }
    for name in ("lsdb", "hats", "hats_import", "numpy"):
        try:
            out[name] = __import__(name).__version__
        except Exception:  # not installed
            out[name] = "not installed"
    return out


def fmt_ms(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def markdown(ds: Dataset, report: dict[str, Any], measures: list[Measure]) -> str:
    lines = [
        f"## {ds.label}",
        "",
        f"- Command: `{report['command']}`",
        f"- Date: {report['date']} UTC; {report['minutes']:.1f} min; skyvault commit "
        f"{report['machine']['commit']}",
        f"- Load (`/proc/loadavg`): before `{report['loadavg_before']}`, after "
        f"`{report['loadavg_after']}`; 1-min load sampled every 2 s: min "
        f"{report['load_min']:.2f}, median {report['load_median']:.2f}, max "
        f"{report['load_max']:.2f}",
        f"- {report['repeat']} passes; {report['cones']} cone centres per radius (within r/2 of "
        "a random row); p50 over every query of every pass, with the p50 of each pass in "
        "brackets; times in ms",
        "",
    ]
    engines = [e for e in ENGINES if any(e in m.runs for m in measures)]
    lines.append("| measure | load | " + " | ".join(engines) + " | skyvault ÷ best peer |")
    lines.append("|---|---|" + "---:|" * len(engines) + "---:|")
    for m in measures:
        cells = []
        best_peer: tuple[float, str] | None = None
        own = summary(m, "skyvault")
        for e in engines:
            s = summary(m, e)
            if e in m.failures:
                cells.append("failed")
            elif s is None:
                cells.append("—")
            else:
                reps = ", ".join(fmt_ms(x) for x in s["rep_p50_ms"])
                text = f"{fmt_ms(s['p50_ms'])}"
                if len(s["rep_p50_ms"]) > 1:
                    text += f" ({reps})"
                if m.checks.get(e, "same") != "same":
                    text += " ✗"
                cells.append(text)
                if e not in ("skyvault", "skyvault http") and (
                    best_peer is None or s["p50_ms"] < best_peer[0]
                ):
                    best_peer = (s["p50_ms"], e)
        ratio = f"{own['p50_ms'] / best_peer[0]:.2f}× {best_peer[1]}" if own and best_peer else "—"
        load = f"{m.load[0]:.1f}–{m.load[1]:.1f}"
        lines.append(f"| {m.label} | {load} | " + " | ".join(cells) + f" | {ratio} |")
    lines.append("")
    lines.append("Answers compared with skyvault's before timing:")
    for m in measures:
        checks = ", ".join(f"{e} {v}" for e, v in m.checks.items()) or "—"
        lines.append(f"- {m.label}: {checks}")
    lines.append("")
    for m in measures:
        for e, why in m.failures.items():
            lines.append(f"- {m.label}: **{e} failed**: {why}")
    reasons: dict[tuple[str, str], list[str]] = {}
    for m in measures:
        for e, why in m.skipped.items():
            reasons.setdefault((e, why), []).append(m.label)
    if reasons:
        lines.append("Not measured:")
        for (e, why), labels in sorted(reasons.items()):
            where = "" if len(labels) == len(measures) else f" ({'; '.join(labels)})"
            lines.append(f"- {e}{where}: {why}")
        lines.append("")
    lines += ["Ingest of the objects table (once, not repeated):", ""]
    lines.append("| tool | wall s | CPU s | peak RSS GiB | load | note |")
    lines.append("|---|---:|---:|---:|---|---|")
    for f in report["ingest"]:
        rss = f"{f.peak_rss / 2**30:.2f}" if f.peak_rss else "—"
        cpu = f"{f.cpu_s:.1f}" if f.cpu_s is not None else "—"
        lines.append(f"| {f.tool} | {f.wall_s:.1f} | {cpu} | {rss} | {f.load} | {f.note} |")
    lines.append("")
    lines.append("Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()))
    lines.append("")
    return "\n".join(lines)


HEADER = """# skyvault against its peers (`benchmarks/bench_peers.py`)

Re-measure everything with one command (from the repository root; see the script's docstring
for what each engine is and what is checked):

```
.venv/bin/python benchmarks/bench_peers.py
```

Each section below is rewritten by the run that measured it. Ratios are skyvault in-process
÷ the fastest peer in the same run (below 1: skyvault is faster); ✗ marks an engine whose
answer differed from skyvault's. Cells give the p50 over all passes and, in brackets, the p50
of each pass: how much they spread is how much to trust a ratio on this shared machine.
"""


def write_results(path: Path, name: str, text: str, machine_line: str) -> None:
    old = path.read_text() if path.exists() else HEADER
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    block = f"{begin}\n{text}\n{end}"
    if begin in old:
        new = re.sub(re.escape(begin) + r".*?" + re.escape(end), lambda _m: block, old, flags=re.S)
    elif "## Notes" in old:
        head, notes = old.split("## Notes", 1)
        new = head.rstrip() + "\n\n" + block + "\n\n## Notes" + notes
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    new = re.sub(r"^Machine: .*$", machine_line, new, flags=re.M)
    if "\nMachine: " not in new:
        new = new.replace("\n<!-- begin", f"\n{machine_line}\n\n<!-- begin", 1)
    path.write_text(new)


# --------------------------------------------------------------------------- main


def run_dataset(ds: Dataset, args: argparse.Namespace, stamps: Stamps, pg: Postgres | None) -> None:
    import skyvault

    skips = set(args.skip)
    skipped: dict[str, str] = {e: "skipped on the command line (--skip)" for e in skips}
    report: dict[str, Any] = {
        "command": " ".join(["python", *sys.argv]),
        "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "machine": machine(),
        "versions": versions(),
        "repeat": args.repeat,
        "cones": args.cones,
        "loadavg_before": loadavg(),
        "ingest": [],
    }
    t0 = time.time()
    work = ds.root
    work.mkdir(parents=True, exist_ok=True)
    with LoadSampler() as sampler:
        # Ingest: skyvault (always, unless --no-ingest and the data are there), hats-import.
        if args.no_ingest and (ds.data / "bench" / "objects").exists():
            log("--no-ingest: using the data already ingested")
        else:
            log(f"ingest {ds.label}: skyvault")
            report["ingest"].append(ingest_skyvault(ds, work))
        if "hats-import" not in skips and not args.no_ingest:
            log(f"ingest {ds.label}: hats-import")
            try:
                report["ingest"].append(ingest_hats_import(ds, work))
            except (SystemExit, Exception) as exc:
                report["ingest"].append(IngestFigure("hats-import", 0.0, note=f"failed: {exc}"))
        engines: dict[str, Any] = {"skyvault": skyvault.open(ds.data)}
        closers: list[Callable[[], None]] = []
        try:
            if "duckdb" not in skips:
                engines["duckdb"] = HandWritten(ds.data)
            if pg is not None:
                report["ingest"].append(pg_prepare(pg, ds, stamps, "pg" in args.reload))
                engines["pg"] = pg
                report["versions"]["postgres"] = (
                    pg.versions()
                    + ", pgsphere "
                    + str(
                        pg.conn.execute(
                            "SELECT extversion FROM pg_extension WHERE extname = 'pg_sphere'"
                        ).fetchone()[0]
                    )
                )
            if "lsdb" not in skips:
                import lsdb

                bench = ds.data / "bench"
                engines["lsdb"] = {
                    "objects": lsdb.open_catalog(
                        bench / "objects", margin_cache=bench / "objects" / "margin"
                    ),
                    "partner": lsdb.open_catalog(bench / "partner"),
                }
            if "http" not in skips:
                bench_tap.grant(ds.data, "bench")
                server = bench_tap.Server(ds.data, f"peers-{ds.name}")
                server.log_path = work / "skyvault-server.log"
                server.__enter__()
                closers.append(lambda: server.__exit__(None, None, None))
                http = Http(server.url)
                closers.append(http.close)
                engines["skyvault http"] = http
            else:
                skipped["skyvault http"] = skipped.pop("http")
            if "dachs" not in skips:
                why = Dachs.unavailable()
                if why is None and ds.name != "tycho2":
                    why = (
                        f"not run on {ds.label}: `dachs imp` ships rows through Python at "
                        "≈5,000 rows/s here (Tycho-2's 1.87M rows took about 6 min), so "
                        f"{ds.rows:,} rows would take ≈{ds.rows / 5000 / 60:.0f} min"
                    )
                if why is None:
                    dachs = Dachs(work / "dachs", stamps)
                    closers.append(dachs.stop)
                    figure = dachs.load(ds, "dachs" in args.reload)
                    if figure is not None:
                        report["ingest"].append(figure)
                    dachs.start()
                    report["versions"]["DaCHS"] = Dachs.version()
                    engines["dachs"] = Http(dachs.url, fmt=None)
                    closers.append(engines["dachs"].close)
                else:
                    skipped["dachs"] = why
            measures = build_measures(ds, engines, skipped, args.cones)
            run_measures(measures, args.repeat, args.budget, sampler)
        finally:
            for close in reversed(closers):
                with contextlib.suppress(Exception):
                    close()
        loads = [v for _, v in sampler.samples] or [load1()]
    report["loadavg_after"] = loadavg()
    report["load_min"], report["load_max"] = min(loads), max(loads)
    report["load_median"] = statistics.median(loads)
    report["minutes"] = (time.time() - t0) / 60
    for m in measures:
        print(f"  {m.label}  (load {m.load[0]:.1f}–{m.load[1]:.1f})")
        for e in m.runs:
            s = summary(m, e)
            if s:
                print(
                    f"    {e:<14} p50 {s['p50_ms']:9.2f} ms  p95 {s['p95_ms']:9.2f}  passes "
                    + " ".join(fmt_ms(x) for x in s["rep_p50_ms"])
                    + f"  check: {m.checks.get(e, '-')}"
                )
            elif e in m.failures:
                print(f"    {e:<14} failed: {m.failures[e]}")
    text = markdown(ds, report, measures)
    mach = report["machine"]
    machine_line = f"Machine: {mach['cpu']}, {mach['ram']} RAM, {mach['os']}."
    (work / "results.json").write_text(
        json.dumps(
            {
                "report": report,
                "measures": {m.label: {e: summary(m, e) for e in m.runs} for m in measures},
            },
            default=lambda o: o.__dict__ if hasattr(o, "__dict__") else str(o),
            indent=1,
        )
    )
    write_results(args.out, ds.name, text, machine_line)
    log(f"{ds.label}: written to {args.out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="tycho2,synthetic")
    parser.add_argument("--rows", type=int, default=20_000_000, help="rows of the synthetic set")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cones", type=int, default=30, help="cone centres per radius")
    parser.add_argument("--budget", type=float, default=30.0, help="seconds: slower runs once")
    parser.add_argument(
        "--skip",
        type=lambda s: [x for x in s.split(",") if x],
        default=[],
        help="engines to leave out: dachs,lsdb,pg,http,duckdb,hats-import",
    )
    parser.add_argument("--no-ingest", action="store_true", help="reuse ingested data if any")
    parser.add_argument(
        "--reload",
        type=lambda s: [x for x in s.split(",") if x],
        default=[],
        help="pg,dachs: reload (and time) these instead of keeping the earlier load",
    )
    parser.add_argument("--workdir", type=Path, default=WORK)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    print(f"load at start: {loadavg()}")
    stamps_path = args.workdir / "stamps.json"
    args.workdir.mkdir(parents=True, exist_ok=True)
    stamps = Stamps(stamps_path)
    pg: Postgres | None = None
    try:
        if "pg" not in args.skip:
            pg = Postgres(args.workdir / "pg", bench_query.PG_BIN)
            pg.start()
        for name in args.datasets.split(","):
            if name == "tycho2":
                ds = prepare_tycho2(args.workdir / "tycho2")
            elif name == "synthetic":
                ds = prepare_synthetic(args.workdir / f"synthetic-{args.rows}", args.rows)
            else:
                raise SystemExit(f"unknown data set {name!r} (tycho2, synthetic)")
            run_dataset(ds, args, stamps, pg)
    finally:
        if pg is not None:
            pg.stop()
    print(f"load at end: {loadavg()}")


if __name__ == "__main__":
    main()
