"""Cross-match as a cell hash join: exactly the pairs astropy finds, across every border."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord

from skyvault.adql.translate import compile_adql
from skyvault.catalog.ingest import IngestOptions, ingest
from skyvault.catalog.registry import Registry
from skyvault.engine.archive import Archive, open_archive
from skyvault.engine.connection import Sandbox
from skyvault.engine.executor import LocalExecutor
from skyvault.engine.plan import (
    CrossMatchSpec,
    QueryPlan,
    ScanSpec,
    plan_query,
    plan_translation,
)
from skyvault.sky.cells import KEY_COLUMN
from skyvault.sky.sql import within_distance_sql


def _patch(n: int, seed: int, ra0: float, dec0: float, size: float) -> pa.Table:
    rng = np.random.default_rng(seed)
    dec = np.clip(dec0 + rng.uniform(-size, size, n), -90, 90)
    ra = np.mod(ra0 + rng.uniform(-size, size, n) / np.maximum(np.cos(np.radians(dec)), 0.05), 360)
    return pa.table({"id": np.arange(n), "ra": ra, "dec": dec})


# Regions that straddle RA 0/360, a pole, and ordinary sky.
REGIONS = [(0.0, 10.0, 1.0), (123.0, -30.0, 1.0), (45.0, 89.3, 0.6)]


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pa.Table, pa.Table]:
    root = tmp_path_factory.mktemp("xmatch")
    left = pa.concat_tables(_patch(3000, i, *r) for i, r in enumerate(REGIONS))
    left = left.set_column(0, "id", pa.array(np.arange(left.num_rows)))
    # The right table: near copies of many left rows (offsets up to ~3″) plus field stars.
    rng = np.random.default_rng(99)
    pick = rng.choice(left.num_rows, 4000, replace=False)
    offsets = SkyCoord(
        left["ra"].to_numpy()[pick], left["dec"].to_numpy()[pick], unit="deg"
    ).directional_offset_by(rng.uniform(0, 360, 4000) * u.deg, rng.uniform(0, 3, 4000) * u.arcsec)
    field = pa.concat_tables(_patch(3000, 10 + i, *r) for i, r in enumerate(REGIONS))
    right = pa.table(
        {
            "id": np.arange(4000 + field.num_rows),
            "ra": np.concatenate([offsets.ra.deg, field["ra"].to_numpy()]),
            "dec": np.concatenate([offsets.dec.deg, field["dec"].to_numpy()]),
        }
    )
    pq.write_table(left, root / "left.parquet")
    pq.write_table(right, root / "right.parquet")
    data = root / "data"
    # Small partitions: many pairs straddle partition borders.
    options = IngestOptions(max_rows_per_partition=400)
    ingest([root / "left.parquet"], "s.left_t", data, ra="ra", dec="dec", options=options)
    ingest([root / "right.parquet"], "s.right_t", data, ra="ra", dec="dec", options=options)
    return data, left, right


def _astropy_pairs(left: pa.Table, right: pa.Table, radius_arcsec: float) -> set[tuple[int, int]]:
    a = SkyCoord(left["ra"].to_numpy(), left["dec"].to_numpy(), unit="deg")
    b = SkyCoord(right["ra"].to_numpy(), right["dec"].to_numpy(), unit="deg")
    ia, ib, _, _ = a.search_around_sky(b, radius_arcsec * u.arcsec)
    return set(
        zip(left["id"].to_numpy()[ib].tolist(), right["id"].to_numpy()[ia].tolist(), strict=True)
    )


@pytest.mark.parametrize("radius_arcsec", [1.0, 2.5, 60.0])
def test_cell_join_equals_brute_force(
    archive: tuple[Path, pa.Table, pa.Table], radius_arcsec: float
) -> None:
    data, left, right = archive
    registry = Registry(data)
    radius = radius_arcsec / 3600
    condition = within_distance_sql('"a"."ra"', '"a"."dec"', '"b"."ra"', '"b"."dec"', radius)
    sql = (
        'SELECT "a"."id" AS aid, "b"."id" AS bid FROM "__sv_t0" AS "a", "__sv_t1" AS "b" '
        f'WHERE {condition} AND "a".{KEY_COLUMN} = "b".{KEY_COLUMN}'
    )
    plan = plan_query(
        sql,
        [
            ScanSpec(placeholder="__sv_t0", table=registry.get("s", "left_t")),
            ScanSpec(placeholder="__sv_t1", table=registry.get("s", "right_t")),
        ],
        [],
        [CrossMatchSpec(left="__sv_t0", right="__sv_t1", radius=radius)],
    )
    assert {s.cell.role for s in plan.scans if s.cell} == {"keyed", "exploded"}
    got = LocalExecutor(Sandbox([data])).execute(plan).to_table()
    pairs = set(zip(got["aid"].to_pylist(), got["bid"].to_pylist(), strict=True))
    want = _astropy_pairs(left, right, radius_arcsec)
    assert len(want) > 1000
    assert pairs == want
    assert got.num_rows == len(pairs), "a pair came out twice"


def test_left_join_in_on_clause_keeps_unmatched_rows(
    archive: tuple[Path, pa.Table, pa.Table],
) -> None:
    data, left, right = archive
    registry = Registry(data)
    radius = 1.0 / 3600
    condition = within_distance_sql('"a"."ra"', '"a"."dec"', '"b"."ra"', '"b"."dec"', radius)
    sql = (
        'SELECT "a"."id" AS aid, "b"."id" AS bid FROM "__sv_t0" AS "a" '
        f'LEFT JOIN "__sv_t1" AS "b" ON {condition} AND "a".{KEY_COLUMN} = "b".{KEY_COLUMN}'
    )
    plan = plan_query(
        sql,
        [
            ScanSpec(placeholder="__sv_t0", table=registry.get("s", "left_t")),
            ScanSpec(placeholder="__sv_t1", table=registry.get("s", "right_t")),
        ],
        [],
        [CrossMatchSpec(left="__sv_t0", right="__sv_t1", radius=radius, exploded="__sv_t1")],
    )
    got = LocalExecutor(Sandbox([data])).execute(plan).to_table()
    matched = {
        (a, b)
        for a, b in zip(got["aid"].to_pylist(), got["bid"].to_pylist(), strict=True)
        if b is not None
    }
    assert matched == _astropy_pairs(left, right, 1.0)
    assert set(got["aid"].to_pylist()) == set(left["id"].to_pylist())


def test_left_join_explodes_the_optional_side(archive: tuple[Path, pa.Table, pa.Table]) -> None:
    """Exploding the preserved side would repeat its unmatched rows once per cell (9x)."""
    data, left, right = archive
    want = _astropy_pairs(left, right, 1.0)
    unmatched = left.num_rows - len({a for a, _ in want})
    dist = _DIST.format(r=1.0 / 3600)
    opened = open_archive(data)
    try:
        pairs = "SELECT a.id AS aid, b.id AS bid FROM "
        for adql in (
            f"{pairs}s.left_t AS a LEFT JOIN s.right_t AS b ON {dist}",
            f"{pairs}s.right_t AS b RIGHT JOIN s.left_t AS a ON {dist}",
        ):
            plan = opened.plan(adql)
            assert _cell_equalities(plan.sql) == 1, plan.sql
            roles = {s.qualified_name: s.cell.role for s in plan.scans if s.cell}
            assert roles == {"s.right_t": "exploded", "s.left_t": "keyed"}, adql
            got = opened.query(adql)
            rows = list(zip(got["aid"].to_pylist(), got["bid"].to_pylist(), strict=True))
            assert {r for r in rows if r[1] is not None} == want
            assert len(rows) == len(want) + unmatched, "a row came out more than once"
        full = f"SELECT a.id AS aid FROM s.left_t AS a FULL JOIN s.right_t AS b ON {dist}"
        plan = opened.plan(full)
        assert KEY_COLUMN not in plan.sql and not any(s.cell for s in plan.scans)
    finally:
        opened.close()


def test_cell_key_goes_where_both_tables_are_joined(
    archive: tuple[Path, pa.Table, pa.Table],
) -> None:
    """The key equality cannot go into the ON of a join before the partner is in scope."""
    data, left, right = archive
    adql = (
        "SELECT a.id AS aid, b.id AS bid FROM s.left_t AS c JOIN s.left_t AS a ON c.id = a.id "
        f"JOIN s.right_t AS b ON {_DIST.format(r=2.5 / 3600)}"
    )
    opened = open_archive(data)
    try:
        plan = opened.plan(adql)
        got = opened.query(adql)
    finally:
        opened.close()
    assert _cell_equalities(plan.sql) == 1
    import sqlglot
    from sqlglot import exp

    joins = sqlglot.parse_one(plan.sql, dialect="duckdb").find(exp.Select).args["joins"]
    assert [KEY_COLUMN in j.sql(dialect="duckdb") for j in joins] == [False, True]
    pairs = list(zip(got["aid"].to_pylist(), got["bid"].to_pylist(), strict=True))
    assert sorted(pairs) == sorted(_astropy_pairs(left, right, 2.5))


# --- cross-matches anywhere in an ADQL query -------------------------------------------------


def _cell_equalities(sql: str) -> int:
    """How many ``x.__sv_cell = y.__sv_cell`` equalities the SQL has (one per cell join)."""
    import sqlglot
    from sqlglot import exp

    return sum(
        1
        for eq in sqlglot.parse_one(sql, dialect="duckdb").find_all(exp.EQ)
        if all(isinstance(s, exp.Column) and s.name == KEY_COLUMN for s in (eq.this, eq.expression))
    )


def _plan_all(archive: Archive, adql: str, *, prune: bool = True) -> QueryPlan:
    """``archive.plan``, handing the planner every cross-match of the translation
    (``prune=False``: and no coverage, so every file is read)."""
    translation = compile_adql(adql, archive.registry.tables())
    refs = [
        ScanSpec(
            placeholder=r.placeholder,
            table=archive.registry.get(r.meta.schema, r.meta.name),
            coverage=r.coverage if prune else None,
        )
        for r in translation.tables
    ]
    return plan_translation(translation, refs)


_DIST = "DISTANCE(POINT('ICRS', a.ra, a.dec), POINT('ICRS', b.ra, b.dec)) < {r}"
_IN_CIRCLE = "CONTAINS(POINT('ICRS', a.ra, a.dec), CIRCLE('ICRS', b.ra, b.dec, {r})) = 1"
_PAIRS = "SELECT a.id AS aid, b.id AS bid FROM s.left_t AS a JOIN s.right_t AS b ON {on}"


def _nested_forms() -> list[tuple[str, str, str]]:
    """(name, ADQL, what it returns): one cross-match of radius 2.5″ somewhere inside."""
    r = 2.5 / 3600
    pairs = _PAIRS.format(on=_DIST.format(r=r))
    return [
        ("from_subquery", f"SELECT COUNT(*) AS n FROM ({pairs}) AS q", "count"),
        (
            "cte",
            "WITH m AS (" + _PAIRS.format(on=_IN_CIRCLE.format(r=r)) + ") SELECT aid, bid FROM m",
            "pairs",
        ),
        (
            "in_subquery",
            "SELECT COUNT(*) AS n FROM s.left_t WHERE id IN "
            f"(SELECT a.id FROM s.left_t AS a JOIN s.right_t AS b ON {_DIST.format(r=r)})",
            "left_ids",
        ),
        (
            "exists_correlated",
            "SELECT COUNT(*) AS n FROM s.left_t AS o WHERE EXISTS (SELECT 1 FROM s.left_t AS a "
            f"JOIN s.right_t AS b ON {_DIST.format(r=r)} WHERE a.id = o.id)",
            "left_ids",
        ),
        (
            "left_join_in_subquery",
            "SELECT COUNT(*) AS n FROM (SELECT a.id AS aid, b.id AS bid FROM s.left_t AS a "
            f"LEFT JOIN s.right_t AS b ON {_DIST.format(r=r)}) AS q",
            "left_join_rows",
        ),
    ]


@pytest.mark.parametrize(("adql", "returns"), [f[1:] for f in _nested_forms()],
                         ids=[f[0] for f in _nested_forms()])  # fmt: skip
def test_nested_crossmatch_is_a_cell_join_equal_to_brute_force(
    archive: tuple[Path, pa.Table, pa.Table], adql: str, returns: str
) -> None:
    data, left, right = archive
    want = _astropy_pairs(left, right, 2.5)
    opened = open_archive(data)
    try:
        plan = opened.plan(adql)
        # The one cross-match is planned through the archive as it is: a cell join.
        assert _cell_equalities(plan.sql) == 1, plan.sql
        assert {s.cell.role for s in plan.scans if s.cell} == {"keyed", "exploded"}
        got = opened.query(adql)
    finally:
        opened.close()
    if returns == "pairs":
        rows = list(zip(got["aid"].to_pylist(), got["bid"].to_pylist(), strict=True))
        assert len(rows) == len(want) and set(rows) == want
        return
    expected = {
        "count": len(want),
        "left_ids": len({a for a, _ in want}),
        "left_join_rows": len(want) + left.num_rows - len({a for a, _ in want}),
    }[returns]
    assert got["n"].to_pylist() == [expected]


def test_every_crossmatch_of_a_union_is_a_cell_join(
    archive: tuple[Path, pa.Table, pa.Table],
) -> None:
    """Two cross-matches (1″ and 60″, two pairs of tables) in the branches of a UNION ALL."""
    data, left, right = archive
    adql = (
        f"SELECT 1 AS k, a.id AS aid, b.id AS bid FROM s.left_t AS a JOIN s.right_t AS b "
        f"ON {_DIST.format(r=1.0 / 3600)} "
        "UNION ALL "
        f"SELECT 2 AS k, b.id AS aid, a.id AS bid FROM s.right_t AS a JOIN s.left_t AS b "
        f"ON {_IN_CIRCLE.format(r=60.0 / 3600)} WHERE a.dec > 45"
    )
    opened = open_archive(data)
    try:
        translation = compile_adql(adql, opened.registry.tables())
        assert len(translation.crossmatches) == 2
        assert translation.crossmatch == translation.crossmatches[0]
        plan = _plan_all(opened, adql)
        assert _cell_equalities(plan.sql) == 2
        got = LocalExecutor(opened.sandbox).execute(plan).to_table()
        # The Python API plans every cross-match too, with the same answer.
        assert _cell_equalities(opened.plan(adql).sql) == 2
        keys = [("k", "ascending"), ("aid", "ascending"), ("bid", "ascending")]
        assert opened.query(adql).sort_by(keys).to_pydict() == got.sort_by(keys).to_pydict()
    finally:
        opened.close()
    rows = list(
        zip(got["k"].to_pylist(), got["aid"].to_pylist(), got["bid"].to_pylist(), strict=True)
    )
    first = {(a, b) for k, a, b in rows if k == 1}
    second = [(a, b) for k, a, b in rows if k == 2]
    assert first == _astropy_pairs(left, right, 1.0) and len(first) == len(rows) - len(second)
    north = right.filter(pc.greater(right["dec"], 45.0))
    want = _astropy_pairs(left, north, 60.0)
    assert len(want) > 1000
    assert len(second) == len(want) and set(second) == want


# --- pruning from outer-join ON clauses ------------------------------------------------------

_CONE_B = "CONTAINS(POINT('ICRS', b.ra, b.dec), CIRCLE('ICRS', 0.3, 10.2, 0.4)) = 1"
_CONE_A = "CONTAINS(POINT('ICRS', a.ra, a.dec), CIRCLE('ICRS', 0.3, 10.2, 0.4)) = 1"


@pytest.mark.parametrize(
    ("adql", "pruned"),
    [
        (
            "SELECT a.id AS aid, b.id AS bid FROM s.left_t AS a LEFT JOIN s.right_t AS b "
            f"ON {_DIST.format(r=2.5 / 3600)} AND {_CONE_B}",
            "b",
        ),
        (
            "SELECT a.id AS aid, b.id AS bid FROM s.right_t AS b RIGHT JOIN s.left_t AS a "
            f"ON {_DIST.format(r=2.5 / 3600)} AND {_CONE_B}",
            "b",
        ),
        (
            "SELECT a.id AS aid, b.id AS bid FROM s.left_t AS a LEFT JOIN s.right_t AS b "
            f"ON {_DIST.format(r=2.5 / 3600)} AND {_CONE_A}",
            None,
        ),
        (
            "SELECT a.id AS aid, b.id AS bid FROM s.left_t AS a LEFT JOIN s.right_t AS b "
            "ON a.id = b.id AND b.dec BETWEEN 9.5 AND 10.5 AND b.ra < 1",
            "b",
        ),
    ],
    ids=["left_cone", "right_cone", "preserved_cone", "left_ranges"],
)
def test_outer_join_on_prunes_the_optional_side(
    archive: tuple[Path, pa.Table, pa.Table], adql: str, pruned: str | None
) -> None:
    data, left, right = archive
    opened = open_archive(data)
    try:
        plan = _plan_all(opened, adql)
        unpruned = _plan_all(opened, adql, prune=False)
        executor = LocalExecutor(opened.sandbox)
        got = executor.execute(plan).to_table()
        want = executor.execute(unpruned).to_table()
    finally:
        opened.close()
    rows = _pairs_with_nulls(got)
    assert rows == _pairs_with_nulls(want)
    # Every preserved row is there, and the matches are the brute-force ones.
    assert {a for a, _ in rows} == set(left["id"].to_pylist())
    names = {s.qualified_name: s for s in plan.scans}
    full = {s.qualified_name: s for s in unpruned.scans}
    if pruned is None:
        assert plan.files_read == unpruned.files_read
        return
    assert len(names["s.right_t"].files) < len(full["s.right_t"].files) / 3
    assert names["s.left_t"].files == full["s.left_t"].files
    if "DISTANCE" in adql:
        inside = (
            SkyCoord(right["ra"].to_numpy(), right["dec"].to_numpy(), unit="deg").separation(
                SkyCoord(0.3, 10.2, unit="deg")
            )
            < 0.4 * u.deg
        )
        matched = _astropy_pairs(left, right.filter(pa.array(inside)), 2.5)
        assert {r for r in rows if r[1] is not None} == matched and len(matched) > 50
        assert len(rows) == len(matched) + left.num_rows - len({a for a, _ in matched})


def _pairs_with_nulls(table: pa.Table) -> list[tuple[int, int | None]]:
    """The (aid, bid) rows, sorted (an unmatched row, bid None, first)."""
    rows = zip(table["aid"].to_pylist(), table["bid"].to_pylist(), strict=True)
    return sorted(rows, key=lambda r: (r[0], -1 if r[1] is None else r[1]))


def test_a_derived_item_in_two_distance_joins_gives_every_pair(
    archive: tuple[Path, pa.Table, pa.Table],
) -> None:
    """A subquery matched to two tables carries one cell key: the first join is a cell
    join, the second an ordinary one (it used to be keyed twice, and lost or multiplied
    rows)."""
    data, left, right = archive
    r = 2.5 / 3600
    adql = (
        "SELECT a.id AS aid, b.id AS bid, c.id AS cid FROM (SELECT id, ra, dec FROM s.left_t) "
        f"AS a JOIN s.right_t AS b ON {_DIST.format(r=r)} JOIN s.right_t AS c "
        f"ON DISTANCE(POINT('ICRS', a.ra, a.dec), POINT('ICRS', c.ra, c.dec)) < {r}"
    )
    opened = open_archive(data)
    try:
        assert _cell_equalities(opened.plan(adql).sql) == 1
        got = opened.query(adql)
    finally:
        opened.close()
    per_left: dict[int, set[int]] = {}
    for a, b in _astropy_pairs(left, right, 2.5):
        per_left.setdefault(a, set()).add(b)
    want = {(a, b, c) for a, bs in per_left.items() for b in bs for c in bs}
    rows = list(
        zip(got["aid"].to_pylist(), got["bid"].to_pylist(), got["cid"].to_pylist(), strict=True)
    )
    assert len(rows) == len(want) and set(rows) == want
