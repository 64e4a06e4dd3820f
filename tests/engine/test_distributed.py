"""The Dask executor: its answers are the local executor's, query by query, split or not.

The oracle is :class:`LocalExecutor` running the same plan as one DuckDB query over the whole
table.  Every splittable query must also really have been split (``stats["tasks"] > 1``), so
a silent fall-back to one task cannot pass for a working decomposition.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import distributed
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skyvault.adql.partials import AggregateCall, Item, Ref, TopSelect
from skyvault.catalog.ingest import IngestOptions, ingest
from skyvault.catalog.metadata import ColumnMeta, TableMeta
from skyvault.catalog.registry import Registry, StoredTable
from skyvault.engine.archive import Archive, open_archive
from skyvault.engine.connection import Sandbox, SandboxSettings
from skyvault.engine.distributed import DaskExecutor, file_groups
from skyvault.engine.executor import CancelToken, LocalExecutor
from skyvault.engine.plan import QueryPlan, ScanSpec, plan_query
from skyvault.engine.split import split_plan
from skyvault.errors import AdqlSyntaxError, QueryCancelled, QueryError, QueryTimeout
from tests.conftest import random_sky
from tests.engine._dask import local_client

N = 20_000
STARS = "s.stars"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A positional table in many partitions, and a small plain table to join with."""
    root = tmp_path_factory.mktemp("distributed")
    rng = np.random.default_rng(7)
    stars = random_sky(N, seed=5)
    flux = rng.normal(100.0, 20.0, N)
    grp = rng.integers(0, 50, N)
    stars = stars.append_column("band", pa.array(rng.choice(["g", "r", "i", "z"], N)))
    stars = stars.append_column("flux", pa.array(flux, mask=rng.random(N) < 0.05))
    stars = stars.append_column("cls", pa.array(rng.integers(0, 7, N)))
    stars = stars.append_column("grp", pa.array(grp, mask=rng.random(N) < 0.1))
    pq.write_table(stars, root / "stars.parquet")
    out = root / "data"
    options = IngestOptions(max_rows_per_partition=1500, row_group_rows=256)
    ingest([root / "stars.parquet"], STARS, out, ra="ra", dec="dec", options=options)
    # No "z": a LEFT JOIN from the stars leaves NULLs.
    bands = pa.table({"band": ["g", "r", "i", "y"], "wl": [480.0, 620.0, 750.0, 970.0]})
    pq.write_table(bands, root / "bands.parquet")
    ingest([root / "bands.parquet"], "s.bands", out)
    return out


@pytest.fixture(scope="module")
def stored(data: Path) -> StoredTable:
    table = Registry(data).get("s", "stars")
    assert table.partitions is not None and len(table.partitions.files) >= 8
    return table


@pytest.fixture(scope="module")
def local(data: Path) -> Iterator[Archive]:
    archive = open_archive(data)
    yield archive
    archive.close()


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """Two workers in this process: fast to start; pickling is covered by the test below."""
    with local_client() as c:
        yield c


@pytest.fixture(scope="module")
def dask_archive(data: Path, client: Any) -> Iterator[Archive]:
    archive = open_archive(data, executor=DaskExecutor(client))
    yield archive
    archive.close()


# --- comparing answers ----------------------------------------------------------------------


def _close(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12) or (math.isnan(a) and math.isnan(b))
    return a == b


def _sort_key(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """Nones last; floats to 9 digits, so last-bit differences cannot reorder rows."""
    return tuple(
        (True, 0) if v is None else (False, float(f"{v:.9g}") if isinstance(v, float) else v)
        for v in row
    )


def assert_same(want: pa.Table, got: pa.Table, *, ordered: bool) -> None:
    """Same schema (names, types, metadata) and rows; floats to 1e-12; order if ``ordered``."""
    assert got.schema == want.schema
    assert got.schema.metadata == want.schema.metadata
    rows_want = [tuple(r.values()) for r in want.to_pylist()]
    rows_got = [tuple(r.values()) for r in got.to_pylist()]
    if not ordered:
        rows_want.sort(key=_sort_key)
        rows_got.sort(key=_sort_key)
    assert len(rows_got) == len(rows_want)
    for w, g in zip(rows_want, rows_got, strict=True):
        assert all(_close(a, b) for a, b in zip(w, g, strict=True)), (w, g)


CONE = "CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', {ra}, {dec}, {r})) = 1"

# (id, ADQL, ordered result?)
QUERIES = [
    ("count", f"SELECT COUNT(*) AS n FROM {STARS}", False),
    (
        "aggregates",
        f"SELECT COUNT(flux) AS nf, COUNT(*) AS n, SUM(cls) AS s, MIN(mag) AS lo, MAX(mag) AS hi, "
        "MIN(name) AS least_name, AVG(mag) AS am, AVG(flux) AS af, AVG(cls) AS ac, "
        f"SUM(flux) AS sf FROM {STARS}",
        False,
    ),
    (
        "group_having_expressions",
        "SELECT band, COUNT(*) AS n, AVG(mag) - AVG(flux) AS d, SUM(flux) / COUNT(*) AS r, "
        f"MAX(mag) - MIN(mag) AS span FROM {STARS} GROUP BY band HAVING COUNT(*) > 10",
        False,
    ),
    (
        "having_not_selected_order",
        f"SELECT cls, COUNT(*) AS n FROM {STARS} GROUP BY cls HAVING AVG(mag) > 13.9 "
        "ORDER BY n DESC, cls",
        True,
    ),
    ("count_distinct", f"SELECT COUNT(DISTINCT grp) AS k, COUNT(grp) AS n FROM {STARS}", False),
    (
        "grouped_count_distinct",
        "SELECT band, COUNT(DISTINCT cls) AS k, COUNT(*) AS n, AVG(mag) AS m, SUM(cls) AS s "
        f"FROM {STARS} GROUP BY band",
        False,
    ),
    ("top_order", f"SELECT TOP 7 id, mag FROM {STARS} ORDER BY mag DESC, id", True),
    ("offset_top", f"SELECT TOP 5 id, name FROM {STARS} ORDER BY mag, id OFFSET 11", True),
    ("offset_only", f"SELECT id FROM {STARS} ORDER BY id OFFSET 19990", True),
    ("order_all", f"SELECT id, band FROM {STARS} WHERE mag < 8.3 ORDER BY band, id DESC", True),
    ("distinct", f"SELECT DISTINCT band FROM {STARS}", False),
    ("distinct_order", f"SELECT DISTINCT cls, band FROM {STARS} ORDER BY cls DESC, band", True),
    ("distinct_top", f"SELECT DISTINCT TOP 3 cls FROM {STARS} ORDER BY cls DESC", True),
    (
        "cone_aggregate",
        f"SELECT COUNT(*) AS n, AVG(mag) AS m, MAX(dec) AS d FROM {STARS} "
        f"WHERE {CONE.format(ra=180, dec=0, r=60)}",
        False,
    ),
    ("cone_rows", f"SELECT id, ra FROM {STARS} WHERE {CONE.format(ra=90, dec=30, r=40)}", False),
    (
        "join_plain_table",
        f"SELECT s.id, b.wl FROM {STARS} AS s JOIN s.bands AS b ON s.band = b.band WHERE s.mag < 9",
        False,
    ),
    (
        "join_group_order",
        f"SELECT b.wl, COUNT(*) AS n, AVG(s.mag) AS m FROM {STARS} AS s "
        "JOIN s.bands AS b ON s.band = b.band GROUP BY b.wl ORDER BY b.wl",
        True,
    ),
    (
        "left_join_preserved_side",
        f"SELECT s.id, b.wl FROM {STARS} AS s LEFT JOIN s.bands AS b ON s.band = b.band "
        "WHERE s.mag < 8.5",
        False,
    ),
    (
        "in_subquery_broadcast",
        f"SELECT COUNT(*) AS n FROM {STARS} "
        "WHERE band IN (SELECT band FROM s.bands WHERE wl > 600)",
        False,
    ),
    (
        "same_table_in_subquery",
        f"SELECT band, COUNT(*) AS n FROM {STARS} WHERE mag < 8.3 AND band IN "
        f"(SELECT band FROM {STARS} WHERE mag > 19.99) GROUP BY band",
        False,
    ),
    (
        "group_by_expression",
        f"SELECT cls / 2 AS h, COUNT(*) AS n, SUM(cls) AS s FROM {STARS} GROUP BY cls / 2",
        False,
    ),
    (
        "group_by_udf_alias",
        f"SELECT ivo_healpix_index(2, ra, dec) AS hp, COUNT(*) AS n FROM {STARS} GROUP BY hp",
        False,
    ),
    (
        "top_groups_by_aggregate",
        f"SELECT TOP 3 band, MAX(mag) AS m FROM {STARS} GROUP BY band ORDER BY MAX(mag) DESC",
        True,
    ),
    ("filter", f"SELECT id, ra, dec, mag, name FROM {STARS} WHERE mag BETWEEN 10 AND 10.2", False),
    (
        "empty_aggregate",
        f"SELECT COUNT(*) AS n, COUNT(flux) AS nf, AVG(mag) AS m, SUM(cls) AS s, MIN(name) AS a "
        f"FROM {STARS} WHERE mag > 100",
        False,
    ),
    (
        "empty_groups",
        f"SELECT band, COUNT(*) AS n FROM {STARS} WHERE mag > 100 GROUP BY band",
        False,
    ),
    (
        "crossmatch",
        f"SELECT a.id AS a_id, b.id AS b_id FROM {STARS} AS a JOIN {STARS} AS b "
        "ON DISTANCE(POINT('ICRS', a.ra, a.dec), POINT('ICRS', b.ra, b.dec)) < 30.0/3600 "
        "WHERE a.id < b.id",
        False,
    ),
    (
        "crossmatch_count",
        f"SELECT COUNT(*) AS n FROM {STARS} AS a JOIN {STARS} AS b "
        "ON DISTANCE(POINT('ICRS', a.ra, a.dec), POINT('ICRS', b.ra, b.dec)) < 30.0/3600",
        False,
    ),
]


@pytest.mark.parametrize(("adql", "ordered"), [q[1:] for q in QUERIES], ids=[q[0] for q in QUERIES])
def test_same_answer_as_local_and_split(
    local: Archive, dask_archive: Archive, adql: str, ordered: bool
) -> None:
    want = local.query(adql)
    got = dask_archive.query(adql)
    assert_same(want, got, ordered=ordered)
    result = dask_archive.stream(adql)
    result.to_table()
    assert result.stats["tasks"] > 1, split_plan(dask_archive.plan(adql)).reason


def test_threaded_scheduler_without_client(local: Archive, data: Path) -> None:
    """No client: Dask's local threads run the tasks."""
    archive = open_archive(data, executor=DaskExecutor())
    try:
        for _, adql, ordered in QUERIES[:12]:
            result = archive.stream(adql)
            result.to_table()
            assert result.stats["tasks"] > 1
            assert_same(local.query(adql), archive.query(adql), ordered=ordered)
    finally:
        archive.close()


def test_top_without_order_is_any_n_rows(local: Archive, dask_archive: Archive) -> None:
    got = dask_archive.query(f"SELECT TOP 10 id, mag FROM {STARS}")
    assert got.num_rows == 10 and len(set(got["id"].to_pylist())) == 10
    every = local.query(f"SELECT id, mag FROM {STARS}")
    mags = dict(zip(every["id"].to_pylist(), every["mag"].to_pylist(), strict=True))
    assert all(
        mags[i] == m for i, m in zip(got["id"].to_pylist(), got["mag"].to_pylist(), strict=True)
    )


@pytest.mark.parametrize(
    ("adql", "reason"),
    [
        (
            f"SELECT id FROM {STARS} WHERE mag < 8.1 UNION SELECT id FROM {STARS} WHERE mag > 19.9",
            "set operation",
        ),
        (
            f"SELECT b.band, COUNT(*) AS n FROM s.bands AS b LEFT OUTER JOIN {STARS} AS s "
            "ON s.band = b.band GROUP BY b.band",
            "optional side",
        ),
        (
            f"SELECT q.band, COUNT(*) AS n FROM (SELECT band FROM {STARS} WHERE mag < 9) AS q "
            "GROUP BY q.band",
            "inside a subquery",
        ),
    ],
)
def test_fallback_runs_one_task_and_is_right(
    local: Archive, dask_archive: Archive, adql: str, reason: str
) -> None:
    assert reason in split_plan(dask_archive.plan(adql)).reason
    result = dask_archive.stream(adql)
    got = result.to_table()
    assert result.stats["tasks"] == 1
    want = local.stream(adql).to_table()
    assert_same(want, got, ordered=False)
    assert want.num_rows > 0


def _grouped_plan(
    stored: StoredTable, calls: list[tuple[str, AggregateCall]], where: str | None = None
) -> QueryPlan:
    """A hand-made plan (DuckDB forms ADQL does not write) grouped by band, with its
    :class:`TopSelect`: ``calls`` are the result's names and aggregates."""
    items = [Item('"band"', "band", merged=(Ref("g", 0),))]
    items += [
        Item(f"{c.function}({c.argument or '*'})", name, merged=(Ref("a", i),))
        for i, (name, c) in enumerate(calls)
    ]
    top = TopSelect(
        items=tuple(items),
        source='"__sv_t0"' + (f" WHERE {where}" if where else ""),
        group=('"band"',),
        group_outputs=(None,),
        aggregated=True,
        aggregates=tuple(c for _, c in calls),
        tables=(("__sv_t0", ""),),
    )
    plan = plan_query(top.sql, [ScanSpec(placeholder="__sv_t0", table=stored)], [])
    return dataclasses.replace(plan, top_select=top)


def test_split_that_fails_in_the_engine_is_run_whole(stored: StoredTable, data: Path) -> None:
    """AVG of a timestamp: the partial SUM does not exist, so the plan reruns as one task."""
    plan = _grouped_plan(stored, [("t", AggregateCall("avg", "to_timestamp(cls)"))])
    assert split_plan(plan).kind == "aggregate"
    executor = DaskExecutor(settings=SandboxSettings((str(data),)))
    result = executor.execute(plan)
    got = result.to_table()
    assert result.stats["tasks"] == 1
    want = LocalExecutor(Sandbox([data])).execute(plan).to_table()
    assert_same(want, got, ordered=False)


def test_variances_merge_without_cancellation(stored: StoredTable, data: Path) -> None:
    """STDDEV/VARIANCE (not emitted by ADQL, but plans may hold them) within 1e-9.

    The +1e6 offset makes sums of squares lose every digit; the parallel formula does not.
    """
    calls = [
        ("a", AggregateCall("stddev", "mag")),
        ("b", AggregateCall("stddev_samp", "mag + 1e6")),
        ("c", AggregateCall("stddev_pop", "flux")),
        ("d", AggregateCall("variance", "mag + 1e6")),
        ("e", AggregateCall("var_pop", "flux")),
        ("f", AggregateCall("var_samp", "cls")),
        ("n", AggregateCall("count")),
        ("s", AggregateCall("sum", "cls")),
    ]
    plan = _grouped_plan(stored, calls)
    executor = DaskExecutor(settings=SandboxSettings((str(data),)))
    result = executor.execute(plan)
    got = result.to_table().sort_by("band")
    assert result.stats["tasks"] > 1
    want = LocalExecutor(Sandbox([data])).execute(plan).to_table().sort_by("band")
    assert got.schema == want.schema
    for name in "abcdef":
        for w, g in zip(want[name].to_pylist(), got[name].to_pylist(), strict=True):
            assert math.isclose(w, g, rel_tol=1e-9), (name, w, g)
    # Integer sums are HUGEINT (Arrow decimal128(38, 0)) in the partials, the merge and here.
    assert want.select(["band", "n", "s"]) == got.select(["band", "n", "s"])
    assert got.schema.field("s").type == pa.decimal128(38, 0)
    calls = [("s", AggregateCall("stddev", "mag")), ("p", AggregateCall("var_pop", "mag"))]
    one = _grouped_plan(stored, calls, where="id = 3")
    assert split_plan(one).kind == "aggregate"
    rows = executor.execute(one).to_table().to_pylist()
    assert [(r["s"], r["p"]) for r in rows] == [(None, 0.0)]  # one row: no sample variance


# --- MAXREC, time limits, cancellation, errors ----------------------------------------------


@pytest.mark.parametrize(
    ("adql", "maxrec", "overflow"),
    [
        (f"SELECT id FROM {STARS} WHERE mag < 9", 100, True),
        (f"SELECT id, mag FROM {STARS} ORDER BY mag, id", 50, True),
        (
            f"SELECT ivo_healpix_index(3, ra, dec) AS hp, COUNT(*) AS n FROM {STARS} "
            "GROUP BY hp ORDER BY hp",
            20,
            True,
        ),
        (f"SELECT TOP 30 id FROM {STARS} ORDER BY id DESC", 30, False),
        (f"SELECT DISTINCT band FROM {STARS} ORDER BY band", 4, False),
        (f"SELECT id FROM {STARS} ORDER BY id", 0, True),
        # Not split (a set operation): the one task stops after MAXREC+1 rows.
        (f"SELECT id FROM {STARS} UNION ALL SELECT id FROM {STARS} ORDER BY id", 7, True),
    ],
)
def test_maxrec_and_overflow(
    local: Archive, dask_archive: Archive, adql: str, maxrec: int, overflow: bool
) -> None:
    want = local.stream(adql, maxrec=maxrec)
    want_rows = want.to_table()
    got = dask_archive.stream(adql, maxrec=maxrec)
    got_rows = got.to_table()
    assert (got.stats["tasks"] > 1) == ("UNION" not in adql)
    assert got.stats["partial_rows"] <= got.stats["tasks"] * (maxrec + 1) or "GROUP" in adql
    assert got.overflow == want.overflow == overflow
    assert got.rows == want.rows == got_rows.num_rows == maxrec
    if "ORDER BY" in adql:
        assert_same(want_rows, got_rows, ordered=True)
    else:
        assert got_rows.schema == want_rows.schema


_SLOW = f"SELECT COUNT(*) AS n FROM {STARS} AS a, {STARS} AS b WHERE SIN(a.mag * b.flux) > 2"


def test_timeout(dask_archive: Archive) -> None:
    started = time.monotonic()
    with pytest.raises(QueryTimeout, match=r"time limit of 0\.5 s"):
        dask_archive.stream(_SLOW, timeout=0.5).to_table()
    assert time.monotonic() - started < 0.5 + 2.0
    # The workers were interrupted: the next query does not wait behind the slow one.
    started = time.monotonic()
    assert dask_archive.query(f"SELECT COUNT(*) AS n FROM {STARS}")["n"].to_pylist() == [N]
    assert time.monotonic() - started < 3.0


def test_cancel_from_another_thread(dask_archive: Archive) -> None:
    token = CancelToken()
    threading.Timer(0.3, token.cancel).start()
    started = time.monotonic()
    with pytest.raises(QueryCancelled):
        dask_archive.stream(_SLOW, cancel=token).to_table()
    assert time.monotonic() - started < 0.3 + 2.0
    token = CancelToken()
    token.cancel()
    with pytest.raises(QueryCancelled):
        dask_archive.stream(f"SELECT COUNT(*) FROM {STARS}", cancel=token)


def test_errors_are_skyvault_errors(local: Archive, dask_archive: Archive) -> None:
    with pytest.raises(AdqlSyntaxError):
        dask_archive.query(f"SELEC id FROM {STARS}")
    bad = f"SELECT CAST(name AS INTEGER) AS x FROM {STARS}"
    with pytest.raises(QueryError) as want:
        local.query(bad)
    with pytest.raises(QueryError) as got:
        dask_archive.query(bad)
    assert type(got.value) is type(want.value)
    # Which bad value is met first depends on threads and tasks; the message is the same kind.
    assert got.value.message.startswith("the string '")
    assert want.value.message.startswith("the string '")
    assert got.value.message.endswith("is not a valid INTEGER value")
    assert "/" not in got.value.message  # no server paths


# --- worker processes: everything crosses a pickle ------------------------------------------


def test_worker_processes(local: Archive, data: Path, stored: StoredTable) -> None:
    """Real worker processes: plans, Arrow uploads and results are pickled; cancel reaches them."""
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    c = distributed.Client(cluster)
    archive = open_archive(data, executor=DaskExecutor(c))
    try:
        for name in ("grouped_count_distinct", "offset_top", "cone_rows", "join_plain_table"):
            _, adql, ordered = next(q for q in QUERIES if q[0] == name)
            result = archive.stream(adql)
            assert_same(local.stream(adql).to_table(), result.to_table(), ordered=ordered)
            assert result.stats["tasks"] > 1
        # An in-memory table (an upload) is broadcast to every task.
        upload = pa.table({"cls": [1, 3, 5], "label": ["one", "three", "five"]})
        meta = TableMeta(
            "TAP_UPLOAD", "u", "plain", tuple(ColumnMeta.from_arrow(f) for f in upload.schema), 3
        )
        plan = archive.plan(
            "SELECT u.label, COUNT(*) AS n, AVG(s.mag) AS m FROM s.stars AS s "
            "JOIN TAP_UPLOAD.u AS u ON s.cls = u.cls GROUP BY u.label",
            extra=[(meta, upload)],
        )
        result = archive.executor.execute(plan)
        got = result.to_table()
        assert result.stats["tasks"] > 1
        want = LocalExecutor(archive.sandbox).execute(plan).to_table()
        assert_same(want, got, ordered=False)
        token = CancelToken()
        threading.Timer(0.5, token.cancel).start()
        started = time.monotonic()
        with pytest.raises(QueryCancelled):
            archive.stream(_SLOW, cancel=token).to_table()
        assert time.monotonic() - started < 0.5 + 3.0
        started = time.monotonic()
        assert archive.query(f"SELECT COUNT(*) AS n FROM {STARS}")["n"].to_pylist() == [N]
        assert time.monotonic() - started < 5.0, "a worker kept running the cancelled query"
    finally:
        archive.close()
        c.close()
        cluster.close()


# --- the decomposition itself ---------------------------------------------------------------


def _plan(archive: Archive, adql: str) -> QueryPlan:
    return archive.plan(adql)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("count", "aggregate"),
        ("group_having_expressions", "aggregate"),
        ("count_distinct", "aggregate"),
        ("top_order", "rows"),
        ("offset_top", "rows"),
        ("distinct", "rows"),
        ("filter", "concat"),
        ("join_plain_table", "concat"),
        ("crossmatch", "concat"),
    ],
)
def test_decomposition_kinds_and_tasks(local: Archive, name: str, kind: str) -> None:
    adql = next(q[1] for q in QUERIES if q[0] == name)
    plan = _plan(local, adql)
    executor = DaskExecutor(settings=SandboxSettings((str(local.data_dir),)), max_tasks=6)
    split, groups = executor.split(plan)
    assert split.kind == kind and split.reason == ""
    assert split.split is not None and len(groups) > 1
    scan = next(s for s in plan.scans if s.placeholder == split.split)
    assert sorted(f for g in groups for f in g) == sorted(scan.files)
    assert len(groups) == min(6, len(scan.files))


def test_decomposition_sql(local: Archive) -> None:
    """What the tasks and the merge compute, on the forms of the issue's examples."""
    plan = _plan(local, f"SELECT TOP 5 id FROM {STARS} ORDER BY mag OFFSET 3")
    split = split_plan(plan)
    assert split.partial_sql.endswith('ORDER BY "__sv_o0" ASC LIMIT 8')  # offset + limit
    assert split.merge is not None
    assert (split.merge.limit, split.merge.offset, split.merge.order) == (5, 3, ('"__sv_o0" ASC',))
    # MAXREC caps what a task returns.
    assert split_plan(plan, maxrec=1).partial_sql.endswith("LIMIT 5")
    assert split_plan(_plan(local, f"SELECT id FROM {STARS}"), maxrec=9).partial_sql.endswith(
        "LIMIT 10"
    )

    plan = _plan(
        local,
        f"SELECT band, AVG(mag) - AVG(flux) AS d FROM {STARS} GROUP BY band HAVING COUNT(*) > 1",
    )
    split = split_plan(plan)
    assert "HAVING" not in split.partial_sql and "GROUP BY" in split.partial_sql
    assert split.merge is not None and split.merge.having is not None
    assert "SUM" in split.merge.having.upper()  # the count is merged as a sum of counts
    sql = split.merge.sql(
        ["band", "d"],
        ["VARCHAR", "DOUBLE"],
        [("__sv_g0", "VARCHAR")] + [(f"__sv_a{i}", "DOUBLE") for i in range(5)],
    )
    assert sql.startswith('SELECT CAST("__sv_g0" AS VARCHAR) AS "band"')
    with pytest.raises(ValueError, match="disagree"):
        split.merge.sql(["band"], ["VARCHAR"], [])

    plan = _plan(local, f"SELECT COUNT(DISTINCT cls) AS k, COUNT(*) AS n FROM {STARS}")
    split = split_plan(plan)
    assert 'AS "__sv_d"' in split.partial_sql and split.partial_sql.endswith('GROUP BY "s0"."cls"')


@pytest.mark.parametrize(
    ("adql", "reason"),
    [
        (f"SELECT id FROM {STARS} UNION ALL SELECT id FROM {STARS}", "set operation"),
        (
            f"SELECT band, ivo_string_agg(name, ',') AS s FROM {STARS} GROUP BY band",
            "the function ivo_string_agg (not known to be a scalar)",
        ),
        (
            f"SELECT COUNT(DISTINCT band) AS a, COUNT(DISTINCT cls) AS b FROM {STARS}",
            "DISTINCT aggregates of different values",
        ),
        (
            f"SELECT t.id FROM s.bands AS u RIGHT JOIN {STARS} AS t ON t.band = u.band",
            "a RIGHT join",
        ),
        (
            f"SELECT t.id FROM s.bands AS u FULL JOIN {STARS} AS t ON t.band = u.band",
            "a FULL join",
        ),
        (
            f"SELECT t.id FROM s.bands AS u LEFT JOIN {STARS} AS t ON t.band = u.band",
            "the split table is the optional side of a LEFT join",
        ),
        (f"SELECT id FROM (SELECT id FROM {STARS}) AS q ORDER BY id", "inside a subquery"),
        (f"WITH q AS (SELECT id FROM {STARS}) SELECT id FROM q ORDER BY id", "CTE"),
        (
            f"SELECT TOP 3 s.id FROM s.bands AS x JOIN ({STARS} AS s JOIN s.bands AS b "
            "ON s.band = b.band) ON x.band = s.band ORDER BY s.id",
            "nested join",
        ),
        (
            f'SELECT TOP 3 id AS "__sv_c0" FROM {STARS} ORDER BY id',
            "a result column named like the executor's own",
        ),
        (
            f"SELECT DISTINCT band FROM {STARS} ORDER BY cls",
            "ORDER BY a term outside the SELECT DISTINCT list",
        ),
        (
            f"SELECT COUNT(*) - (SELECT COUNT(*) FROM s.bands) AS d FROM {STARS}",
            "a subquery outside an aggregate",
        ),
        (
            f"SELECT band, COUNT(*) AS n FROM {STARS} GROUP BY band "
            "HAVING band IN (SELECT band FROM s.bands)",
            "a subquery outside an aggregate",
        ),
    ],
)
def test_what_is_not_split(local: Archive, adql: str, reason: str) -> None:
    plan = local.plan(adql)
    split = split_plan(plan)
    assert split.kind == "whole" and not split.splits
    assert reason in split.reason
    assert split.partial_sql == plan.sql


def test_what_is_not_split_by_hand(stored: StoredTable) -> None:
    """Plans written by hand: no description of their SELECT, or one the split refuses."""
    plan = plan_query(
        'SELECT count(*) AS n FROM "__sv_t0"', [ScanSpec(placeholder="__sv_t0", table=stored)], []
    )
    assert split_plan(plan).reason == "the plan does not describe its SELECT"
    plan = _grouped_plan(stored, [("m", AggregateCall("median", "mag"))])
    assert split_plan(plan).reason == "the aggregate median"
    top = plan.top_select
    assert top is not None
    unknown = dataclasses.replace(plan, top_select=dataclasses.replace(top, functions=("foo",)))
    assert split_plan(unknown).reason == "the function foo (not known to be a scalar)"


def test_small_tables_are_not_split(local: Archive) -> None:
    plan = _plan(local, "SELECT COUNT(*) AS n FROM s.bands")
    assert split_plan(plan).reason == "no stored positional table with several files"


def test_file_groups_balance_bytes(tmp_path: Path) -> None:
    files = []
    for i, size in enumerate([900, 100, 100, 100, 500, 400, 50, 50]):
        path = tmp_path / f"f{i}.parquet"
        path.write_bytes(b"x" * size)
        files.append(str(path))
    groups = file_groups(files, 3)
    assert sorted(f for g in groups for f in g) == sorted(files)
    loads = sorted(sum(Path(f).stat().st_size for f in g) for g in groups)
    assert loads == [700, 700, 1000] or max(loads) - min(loads) <= 400
    assert all(list(g) == sorted(g, key=files.index) for g in groups)
    assert file_groups(files[:2], 5) == [(files[0],), (files[1],)]


def test_archive_binds_the_executor(data: Path, client: Any) -> None:
    import skyvault

    archive = skyvault.open(data, executor=DaskExecutor(client, task_threads=1))
    executor = archive.executor
    assert isinstance(executor, DaskExecutor) and executor.client is client
    assert executor.settings == SandboxSettings((str(data.resolve()),), "2GB", threads=1)
    archive.close()
    plain = open_archive(data)
    assert isinstance(plain.executor, LocalExecutor)
    plain.close()
