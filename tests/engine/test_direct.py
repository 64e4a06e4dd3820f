"""Simple sky searches answered without DuckDB give exactly DuckDB's answer.

Every query runs twice: with the direct path (:mod:`skyvault.engine.direct`) and with
DuckDB over the same index-path rows (``direct=False``).  The tables must be equal, schema
included; the executor reports which path it took, so a silent fall-back cannot make a
"same answer" test pass, and the queries that must not take it are checked too.  Rows are
also checked against an astropy oracle for the cone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord

from skyvault.adql.translate import compile_adql
from skyvault.engine.archive import Archive, open_archive
from skyvault.engine.executor import LocalExecutor, QueryResult
from tests.conftest import ingest_table, random_sky

N = 40_000


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A whole-sky table with columns of many types, NULLs, and a float32-position table."""
    root = tmp_path_factory.mktemp("direct")
    base = random_sky(N, seed=11)
    rng = np.random.default_rng(11)
    mask = rng.uniform(size=N) < 0.2
    table = (
        base.append_column("i8", pa.array(rng.integers(-100, 100, N).astype(np.int8)))
        .append_column("i16", pa.array(rng.integers(-1000, 1000, N).astype(np.int16), mask=mask))
        .append_column("i32", pa.array(rng.integers(0, 10**6, N).astype(np.int32)))
        .append_column("u16", pa.array(rng.integers(0, 60000, N).astype(np.uint16)))
        .append_column("flag", pa.array(rng.uniform(size=N) < 0.5, mask=mask))
        .append_column(
            "flux",
            pa.array(np.where(rng.uniform(size=N) < 0.1, np.nan, rng.normal(size=N)), mask=mask),
        )
        .append_column("big", pa.array(rng.integers(2**62, 2**63 - 1, N, dtype=np.int64)))
        .append_column("label", pa.array([None if m else f"s{i}" for i, m in enumerate(mask)]))
        .append_column(
            "seen",
            pa.array(np.datetime64("2020-01-01") + rng.integers(0, 1000, N).astype("m8[D]")),
        )
        .append_column('Odd "name"', pa.array(rng.uniform(size=N)))
    )
    options = {"max_rows_per_partition": 5000, "row_group_rows": 1024}
    ingest_table(table, root, **options)
    narrow = base.set_column(1, "ra", base.column("ra").cast(pa.float32())).set_column(
        2, "dec", base.column("dec").cast(pa.float32())
    )
    return ingest_table(narrow, root, "s.narrow", **options)


@pytest.fixture(scope="module")
def archive(data: Path) -> Archive:
    return open_archive(data)


def _run(
    archive: Archive,
    adql: str,
    *,
    direct: bool,
    maxrec: int | None = None,
    small_scan_rows: int = 32_768,
) -> QueryResult:
    archive.executor = LocalExecutor(
        archive.sandbox, direct=direct, small_scan_rows=small_scan_rows
    )
    return archive.stream(adql, maxrec=maxrec)


def _both(
    archive: Archive, adql: str, maxrec: int | None = None
) -> tuple[pa.Table, pa.Table, bool]:
    """The direct result, the DuckDB result, and whether the direct path was taken."""
    fast = _run(archive, adql, direct=True, maxrec=maxrec)
    fast_table = fast.to_table()
    slow = _run(archive, adql, direct=False, maxrec=maxrec)
    slow_table = slow.to_table()
    assert slow.stats.get("direct", 0) == 0
    assert fast.overflow == slow.overflow
    return fast_table, slow_table, bool(fast.stats.get("direct", 0))


def _by_id(table: pa.Table) -> pa.Table:
    return table.sort_by("id") if "id" in table.schema.names else table


CIRCLE = "CIRCLE('ICRS', {ra}, {dec}, {r})"
CENTRES = [(10.0, 20.0, 1.0), (359.9, 0.3, 2.0), (0.05, -89.5, 0.8), (200.0, -45.0, 0.05)]

DIRECT = [
    ("cone", "SELECT id, ra, dec FROM s.stars WHERE CONTAINS(POINT('ICRS', ra, dec), {c}) = 1"),
    ("star, 1 first", "SELECT * FROM s.narrow WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), {c})"),
    ("intersects", "SELECT id, label FROM s.stars WHERE INTERSECTS({c}, POINT(ra, dec)) = 1"),
    (
        "aliases and quoted names",
        'SELECT id AS "Ident", "Odd ""name""" AS o, s.stars.ra AS x, flux FROM s.stars '
        "WHERE CONTAINS(POINT('ICRS', ra, dec), {c}) = 1",
    ),
    (
        "many types",
        "SELECT id, i8, i16, i32, u16, flag, flux, label, mag, name FROM s.stars "
        "WHERE CONTAINS(POINT('ICRS', ra, dec), {c}) = 1",
    ),
    (
        "distance, column point first",
        "SELECT id FROM s.stars WHERE DISTANCE(POINT('ICRS', ra, dec), "
        "POINT('ICRS', {ra}, {dec})) < {r}",
    ),
    (
        "distance, constant first, flipped",
        "SELECT id FROM s.stars WHERE {r} >= DISTANCE(POINT({ra}, {dec}), POINT(ra, dec))",
    ),
    (
        "two cuts: cone minus an inner cone",
        "SELECT id FROM s.stars WHERE CONTAINS(POINT(ra, dec), {c}) = 1 "
        "AND DISTANCE(POINT(ra, dec), POINT({ra}, {dec})) > {r} / 2",
    ),
    (
        "polygon",
        "SELECT id, ra FROM s.stars WHERE CONTAINS(POINT(ra, dec), POLYGON('ICRS', "
        "{ra} - {r}, {dec} - {r} / 2, {ra} + {r}, {dec} - {r} / 2, {ra}, {dec} + {r})) = 1",
    ),
    (
        "box",
        "SELECT id FROM s.stars WHERE CONTAINS(POINT(ra, dec), BOX({ra}, {dec}, {r}, {r})) = 1",
    ),
    ("top", "SELECT TOP 3 id FROM s.stars WHERE CONTAINS(POINT(ra, dec), {c}) = 1"),
    (
        "float32 positions",
        "SELECT id, ra, dec FROM s.narrow WHERE CONTAINS(POINT(ra, dec), {c}) = 1",
    ),
]


@pytest.mark.parametrize(("label", "template"), DIRECT, ids=[q[0] for q in DIRECT])
@pytest.mark.parametrize("centre", CENTRES, ids=[f"{c[0]},{c[1]}" for c in CENTRES])
def test_direct_path_gives_duckdbs_answer(
    archive: Archive, label: str, template: str, centre: tuple[float, float, float]
) -> None:
    ra, dec, r = centre
    adql = template.format(c=CIRCLE.format(ra=ra, dec=dec, r=r), ra=ra, dec=dec, r=r)
    fast, slow, taken = _both(archive, adql)
    assert taken, f"{label}: the direct path was not taken"
    assert fast.schema.equals(slow.schema), (fast.schema, slow.schema)
    if label == "top":
        assert fast.num_rows == slow.num_rows == min(3, _count(archive, centre))
        return
    assert _by_id(fast).equals(_by_id(slow))


def _count(archive: Archive, centre: tuple[float, float, float]) -> int:
    ra, dec, r = centre
    adql = (
        "SELECT COUNT(*) AS n FROM s.stars WHERE "
        f"CONTAINS(POINT(ra, dec), {CIRCLE.format(ra=ra, dec=dec, r=r)}) = 1"
    )
    return int(archive.query(adql).column("n")[0].as_py())


@pytest.mark.parametrize("row", [0, 1, 7, N - 1])
def test_cone_rows_match_astropy(archive: Archive, data: Path, row: int) -> None:
    """Independent oracle: astropy separations over the whole input table, around a star."""
    source = pq.read_table(data.parent / "s.stars.parquet", columns=["id", "ra", "dec"])
    ra, dec, r = source["ra"][row].as_py(), source["dec"][row].as_py(), 1.5
    adql = (
        "SELECT id FROM s.stars WHERE CONTAINS(POINT(ra, dec), "
        f"{CIRCLE.format(ra=ra, dec=dec, r=r)}) = 1"
    )
    result = _run(archive, adql, direct=True)
    got = np.sort(result.to_table().column("id").to_numpy())
    assert result.stats.get("direct") == 1
    sep = SkyCoord(source["ra"].to_numpy() * u.deg, source["dec"].to_numpy() * u.deg).separation(
        SkyCoord(ra * u.deg, dec * u.deg)
    )
    expected = np.sort(source["id"].to_numpy()[sep.deg <= r])
    assert len(expected) > 0
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("maxrec", [0, 1, 5, 10_000])
def test_maxrec_and_overflow(archive: Archive, maxrec: int) -> None:
    adql = "SELECT id FROM s.stars WHERE CONTAINS(POINT(ra, dec), CIRCLE(10.0, 20.0, 1.0)) = 1"
    fast, slow, taken = _both(archive, adql, maxrec=maxrec)
    assert taken
    total = _count(archive, (10.0, 20.0, 1.0))
    assert fast.num_rows == slow.num_rows == min(maxrec, total)
    result = _run(archive, adql, direct=True, maxrec=maxrec)
    result.to_table()
    assert result.overflow == (total > maxrec)


def test_empty_region_keeps_the_schema(archive: Archive) -> None:
    adql = "SELECT id, label FROM s.stars WHERE CONTAINS(POINT(ra, dec), CIRCLE(10, 20, 1e-9)) = 1"
    fast, slow, taken = _both(archive, adql)
    assert taken
    assert fast.num_rows == 0
    assert fast.schema.equals(slow.schema)


@pytest.mark.parametrize("op", ["=", "<>", "<", ">="])
def test_exact_64_bit_ids(archive: Archive, op: str) -> None:
    """Integer constants stay exact (a DOUBLE would merge neighbouring 64-bit ids)."""
    rows = archive.query(
        "SELECT big FROM s.stars WHERE CONTAINS(POINT(ra, dec), CIRCLE(10, 20, 2)) = 1"
    )
    value = int(rows.column("big")[0].as_py())
    adql = (
        "SELECT id, big FROM s.stars WHERE CONTAINS(POINT(ra, dec), CIRCLE(10, 20, 2)) = 1 "
        f"AND big {op} {value}"
    )
    fast, slow, taken = _both(archive, adql)
    assert taken
    assert _by_id(fast).equals(_by_id(slow))
    if op == "=":
        assert fast.column("big").to_pylist() == [value]


def test_nan_follows_duckdb(archive: Archive) -> None:
    """The test data has NaN fluxes inside the region, so the NaN rule is exercised."""
    base = "SELECT id FROM s.stars WHERE CONTAINS(POINT(ra, dec), CIRCLE(10, 20, 2)) = 1"
    everything = archive.query(base.replace("SELECT id", "SELECT id, flux"))
    flux = everything.column("flux").to_numpy(zero_copy_only=False)
    assert np.isnan(flux).any()
    for condition in ("flux > 0", "flux < 0", "flux = 0.5", "flux <> 0.5", "flux >= -9"):
        fast, slow, taken = _both(archive, f"{base} AND {condition}")
        assert taken
        assert _by_id(fast).equals(_by_id(slow)), condition


NOT_DIRECT = [
    # Each is right through DuckDB; none may be answered by the direct path.
    ("order by", "SELECT id FROM s.stars WHERE CONTAINS(POINT(ra, dec), {c}) = 1 ORDER BY id"),
    ("distinct", "SELECT DISTINCT i8 FROM s.stars WHERE CONTAINS(POINT(ra, dec), {c}) = 1"),
    ("count", "SELECT COUNT(*) AS n FROM s.stars WHERE CONTAINS(POINT(ra, dec), {c}) = 1"),
    ("expression", "SELECT id, mag + 1 AS m FROM s.stars WHERE CONTAINS(POINT(ra, dec), {c}) = 1"),
    (
        "distance in the select list",
        "SELECT id, DISTANCE(POINT(ra, dec), POINT(10, 20)) AS d FROM s.stars "
        "WHERE CONTAINS(POINT(ra, dec), {c}) = 1",
    ),
    (
        "condition on an expression",
        "SELECT id FROM s.stars WHERE CONTAINS(POINT(ra, dec), {c}) = 1 AND mag + 1 < 15",
    ),
    (
        "boolean compared with a number",
        "SELECT id FROM s.stars WHERE CONTAINS(POINT(ra, dec), {c}) = 1 AND flag = 1",
    ),
    (
        "like",
        "SELECT id FROM s.stars WHERE CONTAINS(POINT(ra, dec), {c}) = 1 AND label LIKE 's1%'",
    ),
    ("no sky cut", "SELECT id FROM s.stars WHERE mag < 15 AND ra < 10"),
    ("or", "SELECT id FROM s.stars WHERE CONTAINS(POINT(ra, dec), {c}) = 1 OR id = 3"),
    ("contains = 0", "SELECT id FROM s.stars WHERE CONTAINS(POINT(ra, dec), {c}) = 0 AND ra < 0"),
    ("timestamp column", "SELECT id, seen FROM s.stars WHERE CONTAINS(POINT(ra, dec), {c}) = 1"),
    (
        "4-argument distance",
        "SELECT id FROM s.stars WHERE DISTANCE(ra, dec, 10.0, 20.0) < 1.0",
    ),
    (
        "offset",
        "SELECT id FROM s.stars WHERE CONTAINS(POINT(ra, dec), {c}) = 1 OFFSET 2",
    ),
]


@pytest.mark.parametrize(("label", "template"), NOT_DIRECT, ids=[q[0] for q in NOT_DIRECT])
def test_other_shapes_go_to_duckdb(archive: Archive, label: str, template: str) -> None:
    adql = template.format(c=CIRCLE.format(ra=10.0, dec=20.0, r=1.0))
    fast, slow, taken = _both(archive, adql)
    assert not taken, f"{label}: must not take the direct path"
    if label not in ("order by",):
        fast, slow = _by_id(fast), _by_id(slow)
    assert fast.equals(slow)


def test_translation_marks_only_simple_shapes(archive: Archive) -> None:
    tables = archive.tables()
    simple = compile_adql(
        "SELECT TOP 2 id AS i FROM s.stars WHERE CONTAINS(POINT(ra, dec), CIRCLE(1, 2, 3)) = 1",
        tables,
    ).direct
    assert simple is not None
    assert simple.columns == ("id",) and simple.names == ("i",) and simple.limit == 2
    (cut,) = simple.cuts
    assert cut.region is not None and (cut.ra, cut.dec) == ("ra", "dec")
    for adql in (
        "SELECT id FROM s.stars",
        "SELECT a.id FROM s.stars AS a JOIN s.narrow AS b ON a.id = b.id "
        "WHERE CONTAINS(POINT(a.ra, a.dec), CIRCLE(1, 2, 3)) = 1",
        "SELECT id FROM s.stars WHERE CONTAINS(POINT(dec, ra), CIRCLE(1, 2, 3)) = 1",
        "WITH t AS (SELECT id, ra, dec FROM s.stars) SELECT id FROM t "
        "WHERE CONTAINS(POINT(ra, dec), CIRCLE(1, 2, 3)) = 1",
        "SELECT id FROM (SELECT id, ra, dec FROM s.stars) AS t "
        "WHERE CONTAINS(POINT(ra, dec), CIRCLE(1, 2, 3)) = 1",
    ):
        assert compile_adql(adql, tables).direct is None, adql


def test_large_regions_go_to_duckdb(archive: Archive) -> None:
    """More rows than the index path reads: DuckDB scans, the direct path is not used."""
    adql = "SELECT id FROM s.stars WHERE CONTAINS(POINT(ra, dec), CIRCLE(10, 20, 60)) = 1"
    result = _run(archive, adql, direct=True, small_scan_rows=4096)
    assert result.to_table().num_rows > 4096
    assert result.stats.get("direct", 0) == 0


def test_a_cancelled_token_stops_even_the_direct_path(archive: Archive) -> None:
    from skyvault.engine.executor import CancelToken
    from skyvault.errors import QueryCancelled

    token = CancelToken()
    token.cancel()
    archive.executor = LocalExecutor(archive.sandbox)
    adql = "SELECT id FROM s.stars WHERE CONTAINS(POINT(ra, dec), CIRCLE(10, 20, 1)) = 1"
    with pytest.raises(QueryCancelled):
        archive.stream(adql, cancel=token)
