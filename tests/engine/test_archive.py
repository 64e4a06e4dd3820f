"""The Python API over the demo data: Rubin DP0.2-style queries, checked against oracles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord

from skyvault.engine.archive import Archive, open_archive
from skyvault.errors import AdqlSemanticError, AdqlSyntaxError, SkyvaultError
from skyvault.sky.geometry import point_in_polygon
from skyvault.sky.regions import Polygon

OBJECT = "dp02_dc2_catalogs.Object"


@pytest.fixture(scope="module")
def archive(demo_data: Path) -> Archive:
    return open_archive(demo_data)


def _table(demo_data: Path, name: str) -> pa.Table:
    root = (demo_data / "dp02_dc2_catalogs" / name / "dataset").resolve()
    return pq.read_table(sorted(root.glob("**/*.parquet")))


def test_cone_search_matches_astropy(archive: Archive, demo_data: Path) -> None:
    got = archive.query(
        f"SELECT objectId FROM {OBJECT} WHERE "
        "CONTAINS(POINT('ICRS', coord_ra, coord_dec), CIRCLE('ICRS', 62.0, -37.0, 0.3)) = 1"
    )
    objects = _table(demo_data, "Object")
    sep = SkyCoord(objects["coord_ra"].to_numpy(), objects["coord_dec"].to_numpy(), unit="deg")
    inside = sep.separation(SkyCoord(62.0, -37.0, unit="deg")).deg <= 0.3
    want = set(objects["objectId"].to_numpy()[inside].tolist())
    assert len(want) > 10
    assert set(got["objectId"].to_pylist()) == want


def test_region_outside_the_footprint_is_an_empty_result(archive: Archive) -> None:
    """No partition overlaps: the query still sees the table's columns (found by the fuzz)."""
    got = archive.query(
        f"SELECT COUNT(*) AS n, AVG(coord_dec) AS d FROM {OBJECT} "
        "WHERE CONTAINS(POINT('ICRS', coord_ra, coord_dec), CIRCLE('ICRS', 62, 7, 0.2)) = 1"
    )
    assert got.to_pylist() == [{"n": 0, "d": None}]
    assert (
        archive.plan(
            f"SELECT * FROM {OBJECT} WHERE CONTAINS(POINT('ICRS', coord_ra, coord_dec), "
            "CIRCLE('ICRS', 62, 7, 0.2)) = 1"
        ).files_read
        == 0
    )


def test_polygon_count(archive: Archive, demo_data: Path) -> None:
    got = archive.query(
        f"SELECT COUNT(*) AS n FROM {OBJECT} WHERE CONTAINS(POINT('ICRS', coord_ra, coord_dec), "
        "POLYGON('ICRS', 60, -35, 62, -35, 61, -36.5, 60, -36)) = 1"
    )
    objects = _table(demo_data, "Object")
    polygon = Polygon(((60, -35), (62, -35), (61, -36.5), (60, -36)))
    want = int(point_in_polygon(objects["coord_ra"], objects["coord_dec"], polygon).sum())
    assert want > 10
    assert got["n"].to_pylist() == [want]


def test_object_forcedsource_join_counts(archive: Archive, demo_data: Path) -> None:
    got = archive.query(
        f"SELECT o.objectId, COUNT(*) AS n FROM {OBJECT} AS o "
        "JOIN dp02_dc2_catalogs.ForcedSource AS f ON o.objectId = f.objectId "
        "GROUP BY o.objectId"
    )
    forced = _table(demo_data, "ForcedSource")
    counts = forced.group_by("objectId").aggregate([("objectId", "count")])
    want = dict(
        zip(counts["objectId"].to_pylist(), counts["objectId_count"].to_pylist(), strict=True)
    )
    assert dict(zip(got["objectId"].to_pylist(), got["n"].to_pylist(), strict=True)) == want
    assert min(want.values()) >= 4


def test_time_series_of_one_object(archive: Archive, demo_data: Path) -> None:
    first = archive.query(f"SELECT MIN(objectId) AS id FROM {OBJECT}")["id"][0].as_py()
    got = archive.query(
        "SELECT f.psfFlux, v.expMidptMJD FROM dp02_dc2_catalogs.ForcedSource AS f "
        "JOIN dp02_dc2_catalogs.CcdVisit AS v ON f.ccdVisitId = v.ccdVisitId "
        f"WHERE f.objectId = {first} ORDER BY v.expMidptMJD"
    )
    forced = _table(demo_data, "ForcedSource")
    assert got.num_rows == pc.sum(pc.equal(forced["objectId"], first)).as_py()
    mjd = got["expMidptMJD"].to_numpy()
    assert np.all(np.diff(mjd) >= 0)


def test_near_neighbour_self_join_matches_astropy(archive: Archive, demo_data: Path) -> None:
    radius = 5.0
    got = archive.query(
        f"SELECT a.objectId AS a_id, b.objectId AS b_id FROM {OBJECT} AS a JOIN {OBJECT} AS b "
        "ON DISTANCE(POINT('ICRS', a.coord_ra, a.coord_dec), "
        f"POINT('ICRS', b.coord_ra, b.coord_dec)) < {radius}/3600.0 "
        "WHERE a.objectId < b.objectId"
    )
    objects = _table(demo_data, "Object")
    ids = objects["objectId"].to_numpy()
    coords = SkyCoord(objects["coord_ra"].to_numpy(), objects["coord_dec"].to_numpy(), unit="deg")
    i, j, _, _ = coords.search_around_sky(coords, radius * u.arcsec)
    want = {(int(ids[x]), int(ids[y])) for x, y in zip(i, j, strict=True) if ids[x] < ids[y]}
    assert len(want) > 20
    assert set(zip(got["a_id"].to_pylist(), got["b_id"].to_pylist(), strict=True)) == want
    plan = archive.plan(
        f"SELECT a.objectId FROM {OBJECT} AS a JOIN {OBJECT} AS b "
        "ON DISTANCE(POINT('ICRS', a.coord_ra, a.coord_dec), "
        "POINT('ICRS', b.coord_ra, b.coord_dec)) < 1.0/3600"
    )
    assert "__sv_cell" in plan.sql, "the self-join did not become a cell join"


def test_result_metadata_and_overflow(archive: Archive) -> None:
    result = archive.query(
        f"SELECT TOP 50 objectId, coord_ra, scisql_nanojanskyToAbMag(r_cModelFlux) AS r_mag, "
        "DISTANCE(POINT('ICRS', coord_ra, coord_dec), POINT('ICRS', 62, -37)) AS d "
        f"FROM {OBJECT}",
        maxrec=10,
    )
    assert result.num_rows == 10
    assert result.schema.metadata[b"overflow"] == b"true"
    meta = {f.name: f.metadata or {} for f in result.schema}
    assert meta["coord_ra"][b"unit"] == b"deg"
    assert meta["coord_ra"][b"ucd"].startswith(b"pos.eq.ra")
    assert meta["r_mag"][b"unit"] == b"mag"
    assert meta["d"][b"unit"] == b"deg"
    exact = archive.query(f"SELECT TOP 10 objectId FROM {OBJECT}", maxrec=10)
    assert exact.schema.metadata[b"overflow"] == b"false"


def test_offset_applies_before_top(archive: Archive) -> None:
    ordered = archive.query(f"SELECT objectId FROM {OBJECT} ORDER BY objectId")["objectId"]
    page = archive.query(f"SELECT TOP 5 objectId FROM {OBJECT} ORDER BY objectId OFFSET 7")
    assert page["objectId"].to_pylist() == ordered.to_pylist()[7:12]


def test_plain_table_and_stream(archive: Archive) -> None:
    result = archive.stream("SELECT visit, band FROM dp02_dc2_catalogs.Visit ORDER BY visit")
    batches = list(result.batches)
    assert sum(b.num_rows for b in batches) == 632
    assert not result.overflow


@pytest.mark.parametrize(
    ("query", "error", "fragment"),
    [
        (f"SELECT rmagg FROM {OBJECT}", AdqlSemanticError, 'no column "rmagg"'),
        ("SELECT * FROM dp02_dc2_catalogs.Objet", AdqlSemanticError, 'did you mean "Object"'),
        ("SELECT * FROM secret.Object", AdqlSemanticError, "secret"),
        ("SELECT * FROM read_parquet('/etc/passwd')", AdqlSyntaxError, "table functions"),
        (f"SELECT objectId FROM {OBJECT} LIMIT 3", AdqlSyntaxError, "LIMIT"),
        ("DROP TABLE x", AdqlSyntaxError, ""),
    ],
)
def test_bad_queries_raise_skyvault_errors(
    archive: Archive, query: str, error: type[SkyvaultError], fragment: str
) -> None:
    with pytest.raises(error) as info:
        archive.query(query)
    assert fragment in str(info.value)


def test_inaccessible_table_reads_like_a_missing_one(archive: Archive) -> None:
    visible = [t for t in archive.tables() if t.name != "Source"]
    with pytest.raises(AdqlSemanticError) as hidden:
        archive.stream("SELECT * FROM dp02_dc2_catalogs.Source", tables=visible)
    with pytest.raises(AdqlSemanticError) as missing:
        archive.stream("SELECT * FROM dp02_dc2_catalogs.Sourcex", tables=visible)
    assert str(hidden.value).replace('"Source"', '"X"') == str(missing.value).replace(
        '"Sourcex"', '"X"'
    )
    assert '"Source"' not in str(missing.value), "a hidden table must never be suggested"


def test_truncate_to_many_places_keeps_the_value(archive: Archive) -> None:
    """TRUNCATE(x, n) where x·10ⁿ overflows DOUBLE is x (it was inf), and the usual cases
    truncate towards zero."""
    got = archive.query(
        "SELECT TOP 1 TRUNCATE(2.5, 308) AS big, TRUNCATE(-7.25, 300) AS neg, "
        "TRUNCATE(1.23456, 2) AS two, TRUNCATE(-1.239, 2) AS minus, "
        "TRUNCATE(123.456, -1) AS tens, TRUNCATE(1e-300, 305) AS tiny "
        f"FROM {OBJECT}"
    ).to_pylist()[0]
    assert got["big"] == 2.5 and got["neg"] == -7.25
    assert got["two"] == pytest.approx(1.23) and got["minus"] == pytest.approx(-1.23)
    assert got["tens"] == pytest.approx(120.0)
    assert got["tiny"] == pytest.approx(1e-300)
