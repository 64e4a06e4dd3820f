"""The local executor runs a large cross-match as aligned tasks, with the single join's answers.

The catalogues are those of ``test_crossmatch_margin.py`` (two partitionings, finer and
coarser in turn, a hole in the partner's footprint, rows on partition edges and pairs
across them).  One archive runs every cross-match as one join, the other splits every one it
can (``task_bytes=1``); their answers must be identical, and the split must really happen
(``stats["tasks"]``) — or really not, for the queries it cannot answer exactly.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skyvault.catalog.ingest import HEALPIX_COLUMN
from skyvault.catalog.metadata import ColumnMeta, TableMeta
from skyvault.engine.aligned import _intersect
from skyvault.engine.archive import Archive, open_archive
from skyvault.engine.executor import CancelToken, LocalExecutor, _parse_bytes
from skyvault.engine.plan import TAG_COLUMN, TaggedFiles, TagLookup, _tag_lookup_sql
from skyvault.errors import QueryCancelled, QueryTimeout
from tests.engine.test_crossmatch_margin import THRESHOLD, _brute_force, catalogues

__all__ = ["catalogues"]  # the fixture, shared with test_crossmatch_margin.py

Catalogues = tuple[Path, pa.Table, pa.Table]
R = THRESHOLD / 3600
DIST = "DISTANCE(POINT('ICRS', a.ra, a.dec), POINT('ICRS', b.ra, b.dec))"
JOIN = f"FROM s.left_t AS a JOIN s.right_t AS b ON {DIST} < {R}"


@pytest.fixture(scope="module")
def single(catalogues: Catalogues) -> Iterator[Archive]:
    archive = open_archive(catalogues[0])
    archive.executor = LocalExecutor(archive.sandbox, crossmatch_tasks=False)
    yield archive
    archive.close()


@pytest.fixture(scope="module")
def tasks(catalogues: Catalogues) -> Iterator[Archive]:
    archive = open_archive(catalogues[0])
    archive.executor = LocalExecutor(archive.sandbox, task_bytes=1)
    yield archive
    archive.close()


def _rows(table: pa.Table) -> list[tuple[Any, ...]]:
    return list(zip(*(table.column(i).to_pylist() for i in range(table.num_columns)), strict=True))


def _same(single: Archive, tasks: Archive, adql: str, *, ordered: bool, **kw: Any) -> Any:
    """Run ``adql`` both ways; the results must be identical (rows, names, types)."""
    want = single.stream(adql, **kw)
    want_table = want.to_table()
    assert "tasks" not in want.stats
    got = tasks.stream(adql, **kw)
    got_table = got.to_table()
    assert got_table.schema == want_table.schema
    a, b = _rows(want_table), _rows(got_table)
    if not ordered:
        a, b = sorted(a, key=repr), sorted(b, key=repr)
    assert len(b) == len(a)
    for x, y in zip(a, b, strict=True):
        # Sums of doubles in another order differ in the last bits (as DuckDB's threads do).
        assert all(
            math.isclose(u, v, rel_tol=1e-12) if isinstance(u, float) else u == v
            for u, v in zip(x, y, strict=True)
        ), (x, y)
    assert got.overflow == want.overflow
    return got


PAIRS = f"SELECT a.id AS aid, b.id AS bid {JOIN}"


@pytest.mark.parametrize("radius", [THRESHOLD, 2.0])
def test_pairs_are_the_single_joins_and_brute_forces(
    catalogues: Catalogues, single: Archive, tasks: Archive, radius: float
) -> None:
    """Pairs across partition edges, in margins, in the partner's hole: each once."""
    _, left, right = catalogues
    adql = f"SELECT a.id AS aid, b.id AS bid FROM s.left_t AS a JOIN s.right_t AS b ON {DIST} < "
    adql += repr(radius / 3600)
    result = _same(single, tasks, adql, ordered=False)
    assert result.stats["tasks"] > 5
    want = _brute_force(left, right, radius)
    assert result.rows == len(want) > 1500


def test_rows_stream_one_task_after_another(
    tasks: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first rows arrive when the first task has run, before the others (bounded
    memory: one task's rows at a time)."""
    executor = tasks.executor
    assert isinstance(executor, LocalExecutor)
    ran: list[int] = []
    original = executor._task

    def counted(*args: Any, **kw: Any) -> Any:
        ran.append(1)
        return original(*args, **kw)

    monkeypatch.setattr(executor, "_task", counted)
    result = tasks.stream(PAIRS)
    batches = iter(result.batches)
    assert next(batches).num_rows > 0
    assert len(ran) == 1
    for _ in batches:
        pass
    assert len(ran) == result.stats["tasks"] > 5


@pytest.mark.parametrize(
    "adql",
    [
        f"SELECT TOP 40 a.id AS aid, b.id AS bid, {DIST} AS d {JOIN} ORDER BY d DESC, aid, bid",
        f"SELECT TOP 25 a.id AS aid, b.ra AS bra {JOIN} ORDER BY b.dec, aid, bra",
        f"SELECT TOP 30 a.id AS aid, b.id AS bid {JOIN} ORDER BY aid, bid OFFSET 12",
        f"SELECT DISTINCT TOP 20 a.id / 100 AS g {JOIN} ORDER BY g DESC",
    ],
    ids=["top-order", "top-order-hidden-key", "offset", "distinct-top"],
)
def test_top_and_order_by(single: Archive, tasks: Archive, adql: str) -> None:
    result = _same(single, tasks, adql, ordered=True)
    assert result.stats["tasks"] > 1


@pytest.mark.parametrize(
    "adql",
    [
        f"SELECT COUNT(*) AS n {JOIN}",
        f"SELECT COUNT(*) AS n, AVG(b.ra) AS m, MIN({DIST}) AS lo, MAX(b.dec) AS hi, "
        f"SUM(a.ra) AS sr {JOIN}",
        f"SELECT a.id / 200 AS g, COUNT(*) AS n, SUM(b.id) AS s, AVG({DIST}) AS m {JOIN} "
        "GROUP BY a.id / 200 ORDER BY g",
        f"SELECT a.id / 200 AS g, COUNT(DISTINCT b.id) AS n {JOIN} GROUP BY a.id / 200 "
        "HAVING COUNT(DISTINCT b.id) > 3 ORDER BY n DESC, g",
        f"SELECT TOP 5 a.id AS aid, COUNT(*) AS n {JOIN} GROUP BY a.id ORDER BY n DESC, aid",
    ],
    ids=["count", "aggregates", "group-by", "count-distinct-having", "top-groups"],
)
def test_aggregates(single: Archive, tasks: Archive, adql: str) -> None:
    result = _same(single, tasks, adql, ordered=True)
    assert result.stats["tasks"] > 1


def test_left_join_and_a_pruned_partner(single: Archive, tasks: Archive) -> None:
    left_join = (
        f"SELECT a.id AS aid, b.id AS bid FROM s.left_t AS a LEFT JOIN s.right_t AS b "
        f"ON {DIST} < {R}"
    )
    assert _same(single, tasks, left_join, ordered=False).stats["tasks"] > 1
    cone = "CONTAINS(POINT('ICRS', b.ra, b.dec), CIRCLE('ICRS', 0.2, 10.1, 0.6)) = 1"
    result = _same(single, tasks, f"{PAIRS} WHERE {cone}", ordered=False)
    assert result.rows > 100


@pytest.mark.parametrize("maxrec", [0, 1, 100, 2345])
def test_maxrec_and_overflow(single: Archive, tasks: Archive, maxrec: int) -> None:
    """MAXREC cuts the streamed rows; overflow says whether rows were cut (the single join
    returns any MAXREC rows, so the rows are compared as a subset)."""
    total = single.stream(PAIRS).to_table()
    every = set(_rows(total))
    result = tasks.stream(PAIRS, maxrec=maxrec)
    got = _rows(result.to_table())
    assert len(got) == min(maxrec, total.num_rows) and set(got) <= every
    assert result.overflow == (total.num_rows > maxrec)
    exact = tasks.stream(PAIRS, maxrec=total.num_rows)
    assert exact.to_table().num_rows == total.num_rows and not exact.overflow
    assert exact.stats["tasks"] > 1


def test_an_upload_partner_runs_as_one_join(single: Archive, tasks: Archive) -> None:
    rng = np.random.default_rng(5)
    upload = pa.table(
        {
            "uid": np.arange(300, dtype=np.int64),
            "ura": rng.uniform(-1.0, 1.0, 300) % 360,
            "udec": rng.uniform(9.0, 11.0, 300),
        }
    )
    meta = TableMeta(
        "TAP_UPLOAD",
        "u",
        "table",
        tuple(ColumnMeta.from_arrow(f) for f in upload.schema),
        upload.num_rows,
    )
    adql = (
        "SELECT u.uid, a.id FROM TAP_UPLOAD.u AS u JOIN s.left_t AS a ON "
        "DISTANCE(POINT('ICRS', u.ura, u.udec), POINT('ICRS', a.ra, a.dec)) < 0.01"
    )
    want = single.stream(adql, extra=[(meta, upload)]).to_table()
    result = tasks.stream(adql, extra=[(meta, upload)])
    assert sorted(_rows(result.to_table())) == sorted(_rows(want))
    assert want.num_rows > 0
    assert "tasks" not in result.stats


@pytest.mark.parametrize(
    "adql",
    [
        # No cut on the rows: the merge would hold the whole result.
        f"SELECT a.id AS aid, b.id AS bid {JOIN} ORDER BY aid, bid",
        # DISTINCT aggregates of two values (the merge knows one).
        f"SELECT COUNT(DISTINCT a.id) AS na, COUNT(DISTINCT b.id) AS nb {JOIN}",
        # A set operation.
        f"SELECT a.id AS i {JOIN} WHERE a.id < 300 UNION SELECT b.id AS i {JOIN} WHERE b.id < 300",
    ],
    ids=["order-without-top", "two-distinct-aggregates", "union"],
)
def test_what_cannot_be_split_runs_as_one_join(single: Archive, tasks: Archive, adql: str) -> None:
    result = _same(single, tasks, adql, ordered=adql.endswith("bid"))
    assert "tasks" not in result.stats


def test_small_cross_matches_stay_one_join(catalogues: Catalogues) -> None:
    """With the default task size (an eighth of DuckDB's memory) these catalogues are one join."""
    archive = open_archive(catalogues[0])
    try:
        result = archive.stream(PAIRS)
        assert result.to_table().num_rows > 1500
        assert "tasks" not in result.stats
    finally:
        archive.close()


def test_time_limit_and_cancel_cover_every_task(tasks: Archive) -> None:
    with pytest.raises(QueryTimeout, match="time limit of 1e-06 s"):
        tasks.stream(PAIRS, timeout=1e-6).to_table()
    token = CancelToken()
    result = tasks.stream(PAIRS, cancel=token)
    batches = iter(result.batches)
    next(batches)
    threading.Thread(target=token.cancel).start()
    with pytest.raises(QueryCancelled):
        for _ in batches:
            pass


def test_tasks_read_only_partner_rows_near_their_partitions(tasks: Archive) -> None:
    """A partner partition coarser than a task's run is read only near the run's partitions
    (the answers above show nothing needed is left out)."""
    executor = tasks.executor
    assert isinstance(executor, LocalExecutor)
    planned = executor._crossmatch_tasks(tasks.plan(PAIRS), None)
    assert planned is not None and len(planned.plans) > 5
    read = stored = 0
    for plan in planned.plans:
        partner = next(s for s in plan.scans if s.placeholder == "__sv_t1")
        assert isinstance(partner.tag, TaggedFiles) and partner.tag.ranges is not None
        for path, _ in partner.tag.files:
            index = pq.read_table(path, columns=[HEALPIX_COLUMN])[HEALPIX_COLUMN].to_numpy()
            inside = np.zeros(len(index), dtype=bool)
            for lo, hi in partner.tag.ranges.tolist():
                inside |= (index >= lo) & (index < hi)
            read += int(inside.sum())
            stored += len(index)
    assert read < 0.7 * stored, (read, stored)


def test_interval_intersection_against_brute_force() -> None:
    rng = np.random.default_rng(11)
    for _ in range(200):

        def intervals() -> np.ndarray:
            cuts = np.unique(rng.integers(0, 60, rng.integers(0, 12)))
            pairs = cuts[: len(cuts) // 2 * 2].reshape(-1, 2)
            return pairs[pairs[:, 0] < pairs[:, 1]].astype(np.int64).reshape(-1, 2)

        a, b = intervals(), intervals()
        got = _intersect(a, b)
        points = {p for lo, hi in got.tolist() for p in range(lo, hi)}
        want = {p for lo, hi in a.tolist() for p in range(lo, hi)}
        want &= {p for lo, hi in b.tolist() for p in range(lo, hi)}
        assert points == want
        assert all(lo < hi for lo, hi in got.tolist())
        assert all(x[1] < y[0] for x, y in zip(got.tolist(), got.tolist()[1:], strict=False))


@pytest.mark.parametrize("intervals", [1, 10, 64, 65, 300])
def test_row_tags_by_case_and_by_asof_join(intervals: int) -> None:
    """A task tags its rows with the interval holding their index: a CASE expression for a
    few intervals, an ASOF join for many; both as a lookup in numpy."""
    rng = np.random.default_rng(intervals)
    cuts = np.unique(rng.integers(0, 10**6, 2 * intervals + 10))[: 2 * intervals]
    lookup = np.stack([cuts[0::2], cuts[1::2], rng.integers(1, 10**6, intervals)], axis=1)
    index = rng.integers(0, 10**6, 20_000).astype(np.int64)
    rows = pa.table({HEALPIX_COLUMN: index, "k": np.arange(len(index))})
    sql = _tag_lookup_sql('SELECT * FROM "rows"', TagLookup(lookup.astype(np.int64)))
    assert ("ASOF" in sql) == (intervals > 64)
    con = duckdb.connect()
    con.register("rows", rows)
    got = con.execute(f"SELECT k, {TAG_COLUMN} FROM ({sql}) ORDER BY k").fetchall()
    want = np.zeros(len(index), dtype=np.int64)
    for a, b, t in lookup.tolist():
        want[(index >= a) & (index < b)] = t
    assert [t for _, t in got] == want.tolist()
    assert want.any()


def test_memory_limit_is_read_from_duckdb() -> None:
    assert _parse_bytes("1.8 GiB") == int(1.8 * 1024**3)
    assert _parse_bytes("2.0 GB") == 2 * 1000**3
    assert _parse_bytes("512 KiB") == 512 * 1024
    assert _parse_bytes("nonsense") == 2 * 1024**3
