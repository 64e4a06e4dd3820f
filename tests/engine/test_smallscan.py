"""The index path for small scans gives exactly the rows DuckDB's scan gives.

Every query runs twice, with the index path on and off; the index path must have been taken
where it should (the executor counts the scans it read), so a silent fall-back to DuckDB
cannot make these tests pass.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skyvault.catalog.ingest import HEALPIX_COLUMN
from skyvault.catalog.registry import Registry
from skyvault.engine.archive import Archive, open_archive
from skyvault.engine.executor import LocalExecutor
from skyvault.engine.smallscan import FooterCache, read_small_scan
from skyvault.sky.coverage import healpix29_ranges, region_coverage
from skyvault.sky.regions import Circle
from tests.conftest import ingest_table, random_sky

OBJECT = "dp02_dc2_catalogs.Object"
N = 60_000


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A whole-sky table with awkward column names and NULLs, in small row groups."""
    root = tmp_path_factory.mktemp("smallscan")
    table = random_sky(N, seed=5)
    rng = np.random.default_rng(5)
    flux = rng.normal(100, 10, N)
    table = table.append_column(
        'Flux "psf"', pa.array(flux, mask=rng.uniform(size=N) < 0.1)
    ).append_column("MixedCase", pa.array(rng.integers(0, 5, N)))
    return ingest_table(table, root, max_rows_per_partition=5000, row_group_rows=512)


def _both(data: Path, adql: str, limit: int = 32_768) -> tuple[pa.Table, pa.Table, int]:
    """The result with the index path (reading at most ``limit`` rows), without it, and
    how many scans it read."""
    archive = open_archive(data)
    archive.executor = LocalExecutor(archive.sandbox, small_scan_rows=limit)
    fast = archive.stream(adql)
    with_index = fast.to_table()
    archive.executor = LocalExecutor(archive.sandbox, small_scans=False)
    without = archive.query(adql)
    archive.close()
    return with_index, without, int(fast.stats["small_scans"])


def _sorted(table: pa.Table) -> list[tuple[object, ...]]:
    """The rows in a fixed order, floats to 12 digits (sums depend on the order of rows)."""

    def value(v: object) -> object:
        return float(f"{v:.12g}") if isinstance(v, float) else v

    rows = (tuple(value(v) for v in r.values()) for r in table.to_pylist())
    return sorted(rows, key=lambda r: tuple(map(repr, r)))


CONE = "CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', {ra}, {dec}, {r})) = 1"

QUERIES = [
    ("small cone", f"SELECT id, ra, dec, mag FROM s.stars WHERE {CONE}", 1),
    ("select star", f"SELECT * FROM s.stars WHERE {CONE}", 1),
    ("count", f"SELECT COUNT(*) AS n FROM s.stars WHERE {CONE}", 1),
    ("quoted name", f'SELECT id, "Flux ""psf""" FROM s.stars WHERE {CONE}', 1),
    (
        "string with a quote",
        f"SELECT id, mixedcase FROM s.stars WHERE {CONE} AND name <> 'a\"b' AND mixedcase > 1",
        1,
    ),
    (
        "aggregate on a nullable column",
        f'SELECT mixedcase, AVG("Flux ""psf""") AS f, COUNT(*) AS n FROM s.stars '
        f"WHERE {CONE} GROUP BY mixedcase",
        1,
    ),
    (
        "self join",
        "SELECT a.id, b.id AS other FROM s.stars AS a JOIN s.stars AS b ON a.id = b.id + 1 "
        "WHERE CONTAINS(POINT('ICRS', a.ra, a.dec), CIRCLE('ICRS', {ra}, {dec}, {r})) = 1 "
        "AND CONTAINS(POINT('ICRS', b.ra, b.dec), CIRCLE('ICRS', {ra}, {dec}, {r})) = 1",
        2,
    ),
    (
        "near-neighbour cross-match",
        "SELECT a.id, b.id AS other, DISTANCE(POINT('ICRS', a.ra, a.dec), "
        "POINT('ICRS', b.ra, b.dec)) AS d FROM s.stars AS a JOIN s.stars AS b "
        "ON DISTANCE(POINT('ICRS', a.ra, a.dec), POINT('ICRS', b.ra, b.dec)) < 0.2 "
        "WHERE CONTAINS(POINT('ICRS', a.ra, a.dec), CIRCLE('ICRS', {ra}, {dec}, {r})) = 1 "
        "AND CONTAINS(POINT('ICRS', b.ra, b.dec), CIRCLE('ICRS', {ra}, {dec}, {r})) = 1 "
        "AND a.id <> b.id",
        2,
    ),
]

CENTRES = [(10.0, 20.0, 2.5), (359.95, 0.3, 2.0), (0.0, 89.8, 3.0), (200.0, -45.0, 0.05)]


@pytest.mark.parametrize(("label", "template", "scans"), QUERIES, ids=[q[0] for q in QUERIES])
@pytest.mark.parametrize("centre", CENTRES, ids=[f"{c[0]},{c[1]}" for c in CENTRES])
def test_same_rows_with_and_without_the_index_path(
    data: Path, label: str, template: str, scans: int, centre: tuple[float, float, float]
) -> None:
    ra, dec, r = centre
    adql = template.format(ra=ra, dec=dec, r=r)
    fast, slow, read = _both(data, adql)
    assert read == scans, f"{label}: the index path read {read} scans, expected {scans}"
    assert fast.column_names == slow.column_names
    assert fast.schema.types == slow.schema.types
    assert _sorted(fast) == _sorted(slow)


def test_a_cone_with_rows_returns_them(data: Path) -> None:
    """Guard against both paths agreeing on nothing: the small cones do find rows."""
    for ra, dec, r in CENTRES[:3]:
        fast, _, _ = _both(data, f"SELECT id FROM s.stars WHERE {CONE}".format(ra=ra, dec=dec, r=r))
        assert fast.num_rows > 3


def test_large_scans_go_to_duckdb(data: Path) -> None:
    adql = f"SELECT COUNT(*) AS n FROM s.stars WHERE {CONE}".format(ra=10.0, dec=20.0, r=40.0)
    fast, slow, read = _both(data, adql, limit=4096)
    assert read == 0
    assert fast.equals(slow)


def test_read_small_scan_against_brute_force(data: Path) -> None:
    stored = Registry(data).get("s", "stars")
    assert stored.partitions is not None
    circle = Circle(123.0, -30.0, 3.0)
    ranges = healpix29_ranges(region_coverage(circle, 14), max_ranges=16)
    footers = FooterCache()
    got = read_small_scan(stored.partitions.files, ranges, ["id"], footers, max_rows=N)
    assert got is not None
    assert got.column_names == ["id"]
    everything = pq.read_table(list(stored.partitions.files), columns=["id", HEALPIX_COLUMN])
    keys = everything[HEALPIX_COLUMN].to_numpy()
    inside = np.zeros(len(keys), dtype=bool)
    for lo, hi in ranges:
        inside |= (keys >= lo) & (keys < hi)
    assert inside.sum() > 10
    assert sorted(got["id"].to_pylist()) == sorted(everything["id"].to_numpy()[inside].tolist())
    # Too many rows for the path: nothing is read.
    assert read_small_scan(stored.partitions.files, ranges, ["id"], footers, max_rows=10) is None


def test_shared_readers_under_concurrent_use(data: Path) -> None:
    """Readers are lent to one thread at a time: 8 threads reading the same files at once
    all get the right rows, and the cache keeps few readers open."""
    from concurrent.futures import ThreadPoolExecutor

    stored = Registry(data).get("s", "stars")
    assert stored.partitions is not None
    files = stored.partitions.files
    footers = FooterCache(open_files=3)
    circles = [Circle(123.0 + i, -30.0, 3.0) for i in range(8)]
    jobs = [healpix29_ranges(region_coverage(c, 14), max_ranges=16) for c in circles] * 6

    def read(ranges: np.ndarray) -> list[int]:
        got = read_small_scan(files, ranges, ["id"], footers, max_rows=N)
        assert got is not None
        return sorted(got["id"].to_pylist())

    expected = [read(r) for r in jobs]
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(read, jobs)) == expected
    assert len(footers._open) <= 3
    assert all(len(f.idle) <= footers.idle_readers for f in footers._open.values())


def test_as_many_readers_as_concurrent_queries_are_kept(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """8 threads using one file at once open 8 readers the first time and none after: a
    server's worker threads do not set up a reader per query (costly for wide files)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from skyvault.engine import smallscan

    stored = Registry(data).get("s", "stars")
    assert stored.partitions is not None
    footers = FooterCache()
    footer = footers.get(stored.partitions.files[0])
    assert footer is not None
    opened: list[str] = []
    real = pq.ParquetFile

    def counting(*args: object, **kwargs: object) -> pq.ParquetFile:
        opened.append(str(args[0]))
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(smallscan.pq, "ParquetFile", counting)
    together = threading.Barrier(8)

    def use(_: int) -> int:
        with footers.reader(footer) as handle:
            together.wait(timeout=30)
            return int(handle.metadata.num_rows)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(use, range(8)))
        assert len(opened) == 8
        list(pool.map(use, range(8)))
    assert len(opened) == 8


def test_a_footer_is_read_once_by_concurrent_callers(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from skyvault.engine import smallscan

    stored = Registry(data).get("s", "stars")
    assert stored.partitions is not None
    path = stored.partitions.files[0]
    footers = FooterCache()
    reads: list[str] = []
    real = smallscan._read_footer
    together = threading.Barrier(6)

    def slow(p: str) -> smallscan.FileFooter | None:
        reads.append(p)
        time.sleep(0.2)  # the other callers arrive while it is being read
        return real(p)

    monkeypatch.setattr(smallscan, "_read_footer", slow)

    def get(_: int) -> int:
        together.wait(timeout=30)
        footer = footers.get(path)
        assert footer is not None
        return id(footer)

    with ThreadPoolExecutor(6) as pool:
        assert len(set(pool.map(get, range(6)))) == 1
    assert reads == [path]


def test_the_index_path_reads_the_columns_the_translation_names(data: Path) -> None:
    """The scan reads the columns the translator wrote for this table occurrence: a
    column named only inside a string literal is not read, awkward names are."""
    adql = (
        'SELECT id, "Flux ""psf""" FROM s.stars WHERE name <> \'ra MixedCase mag\' AND '
        "CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 10.0, 20.0, 2.0)) = 1"
    )
    archive = open_archive(data)
    try:
        [scan] = archive.plan(adql).scans
    finally:
        archive.close()
    assert scan.columns == ("id", "ra", "dec", "name", 'Flux "psf"')
    with_index, without, scans = _both(data, adql)
    assert scans == 1
    assert _sorted(with_index) == _sorted(without) and with_index.num_rows > 0


def test_demo_cone_uses_the_index_path(demo_data: Path) -> None:
    archive: Archive = open_archive(demo_data)
    adql = (
        f"SELECT objectId, coord_ra, coord_dec, g_psfFlux FROM {OBJECT} WHERE "
        "CONTAINS(POINT('ICRS', coord_ra, coord_dec), CIRCLE('ICRS', 62.0, -37.0, 0.02)) = 1"
    )
    result = archive.stream(adql)
    fast = result.to_table()
    assert result.stats["small_scans"] == 1
    archive.executor = LocalExecutor(archive.sandbox, small_scans=False)
    assert _sorted(fast) == _sorted(archive.query(adql))
    archive.close()


def test_other_columns_are_decoded_only_where_the_key_shows_rows(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A range inside a row group's min/max that holds no row costs only the key column;
    the other columns are decoded for the row groups holding rows, and the rows are right."""
    stored = Registry(data).get("s", "stars")
    assert stored.partitions is not None
    path = next(f for f in stored.partitions.files if pq.read_metadata(f).num_row_groups >= 3)
    table = pq.read_table(path, columns=["id", HEALPIX_COLUMN])
    keys = table[HEALPIX_COLUMN].to_numpy()
    ids = table["id"].to_numpy()
    size = pq.read_metadata(path).row_group(0).num_rows
    # A gap between two keys of row group 1, and the first keys of row groups 0 and 2.
    inside = next(i for i in range(size, 2 * size - 1) if keys[i + 1] - keys[i] > 2)
    gap = [keys[inside] + 1, keys[inside + 1]]
    first0, first2 = keys[0], keys[2 * size]
    calls: list[tuple[list[int], list[str]]] = []
    real = pq.ParquetFile.read_row_groups

    def spy(self: pq.ParquetFile, groups: list[int], columns: list[str], **kw: object) -> pa.Table:
        calls.append((list(groups), list(columns)))
        return real(self, groups, columns=columns, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(pq.ParquetFile, "read_row_groups", spy)
    footers = FooterCache()
    got = read_small_scan([path], np.array([gap]), ["id"], footers, max_rows=N)
    assert got is not None and got.num_rows == 0 and got.column_names == ["id"]
    assert calls == [([1], [HEALPIX_COLUMN])]
    calls.clear()
    ranges = np.array([[first0, first0 + 1], gap, [first2, first2 + 1]])
    got = read_small_scan([path], ranges, ["id"], footers, max_rows=N)
    assert got is not None
    expected = ids[(keys == first0) | (keys == first2)]
    assert sorted(got["id"].to_pylist()) == sorted(expected.tolist())
    assert calls == [([0, 1, 2], [HEALPIX_COLUMN]), ([0, 2], ["id"])]
