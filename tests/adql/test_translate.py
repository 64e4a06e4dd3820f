"""Translation to DuckDB SQL: golden files, results against independent oracles, types, pruning.

Every translated query is run by DuckDB on small Arrow tables registered under the
placeholder names; results are compared with astropy (distances, cones), brute-force vector
tests written here (polygons, boxes) and plain Python (joins, grouping, TOP/OFFSET); the
Arrow types DuckDB returns are compared with the datatypes the translator announced.
"""

from __future__ import annotations

import math
import statistics
import time
from pathlib import Path

import astropy.units as u
import duckdb
import numpy as np
import pyarrow as pa
import pytest
from astropy.coordinates import SkyCoord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skyvault.adql.translate import Translation, compile_adql
from skyvault.catalog.metadata import ColumnMeta, TableMeta
from skyvault.errors import AdqlError
from tests.adql._catalog import (
    CATALOG,
    OBJECT,
    TYCHO,
    VISIT,
    connect,
    empty_table,
    random_table,
)
from tests.golden import golden_text

GOLDEN = Path(__file__).parent / "golden" / "translate"


def run(translation: Translation, tables: dict[str, pa.Table]) -> pa.Table:
    """Run a translation with ``tables`` (keyed by qualified table name) as its relations."""
    relations = {ref.placeholder: tables[ref.meta.qualified_name] for ref in translation.tables}
    con = connect(relations)
    return con.sql(translation.sql).to_arrow_table()


def arrow_matches(column: ColumnMeta, arrow: pa.DataType) -> bool:
    """Whether DuckDB's Arrow type is what the column metadata announced."""
    if column.arraysize is not None and column.datatype != "char":
        return pa.types.is_list(arrow) and pa.types.is_float64(arrow.value_type)
    if column.xtype == "timestamp":
        return pa.types.is_timestamp(arrow)
    expected = {
        "boolean": pa.bool_(),
        "unsignedByte": pa.uint8(),
        "short": pa.int16(),
        "int": pa.int32(),
        "long": pa.int64(),
        "float": pa.float32(),
        "double": pa.float64(),
    }
    if column.datatype == "char":
        return pa.types.is_string(arrow) or pa.types.is_large_string(arrow)
    return arrow == expected[column.datatype]


def assert_types(translation: Translation, result: pa.Table) -> None:
    assert [c.name for c in translation.columns] == result.column_names
    for column, field in zip(translation.columns, result.schema, strict=True):
        assert arrow_matches(column, field.type), (column, field.type)


# --- golden files ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.adql")), ids=lambda p: p.stem)
def test_golden(path: Path) -> None:
    translation = compile_adql(path.read_text(), CATALOG)
    assert translation.sql == golden_text(path.with_suffix(".sql"), translation.sql)
    data = {t.qualified_name: random_table(t, 200, seed=3) for t in CATALOG}
    assert_types(translation, run(translation, data))


# --- types and metadata ------------------------------------------------------------------------

EXPRESSIONS = [
    "1",
    "1.5",
    "-2",
    "3000000000",
    "tract + patch",
    "tract * 2",
    "tract / 3",
    "patch / 2.0",
    "r_mag - i_mag",
    "r_mag * 2",
    "-r_mag",
    "-patch",
    "ABS(patch)",
    "ABS(r_mag)",
    "CEILING(patch)",
    "FLOOR(r_mag)",
    "MOD(tract, 3)",
    "MOD(r_mag, 2)",
    "POWER(tract, 2)",
    "SQRT(r_cModelFlux)",
    "LOG(r_cModelFlux)",
    "LOG10(r_cModelFlux)",
    "EXP(r_mag / 10)",
    "PI()",
    "RAND()",
    "ROUND(r_mag, 2)",
    "ROUND(r_mag, -1)",
    "TRUNCATE(r_mag)",
    "TRUNCATE(r_mag, 2)",
    "SIN(RADIANS(coord_dec))",
    "DEGREES(ATAN2(coord_dec, coord_ra))",
    "COT(1.0)",
    "COALESCE(r_mag, 0)",
    "COALESCE(tract, patch)",
    "COALESCE(NULL, tract)",
    "CASE WHEN r_mag < 20 THEN tract ELSE patch END",
    "CASE WHEN r_mag < 20 THEN 1 ELSE 2.5 END",
    "CASE tract WHEN 1 THEN 'one' ELSE NULL END",
    "CASE WHEN detect_isPrimary = 1 THEN NULL END",
    "CAST(r_mag AS INTEGER)",
    "CAST(tract AS SMALLINT)",
    "CAST(tract AS BIGINT)",
    "CAST(tract AS REAL)",
    "CAST(tract AS DOUBLE PRECISION)",
    "CAST(tract AS CHAR(4))",
    "CAST(tract AS VARCHAR)",
    "CAST('2021-01-01T00:00:00' AS TIMESTAMP)",
    "detect_isPrimary",
    "detect_isPrimary + 1",
    "IN_UNIT(coord_ra, 'arcmin')",
    "IN_UNIT(r_cModelFlux, 'Jy')",
    "scisql_nanojanskyToAbMag(r_cModelFlux)",
    "scisql_nanojanskyToAbMagSigma(r_cModelFlux, g_cModelFlux)",
    "ivo_hasword('a b', 'b')",
    "ivo_interval_overlaps(1, 2, r_mag, i_mag)",
    "DISTANCE(POINT(coord_ra, coord_dec), POINT(1, 2))",
    "DISTANCE(coord_ra, coord_dec, 1, 2)",
    "CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(1, 2, 30))",
    "INTERSECTS(CIRCLE(coord_ra, coord_dec, 1), CIRCLE(1, 2, 30))",
    "POINT(coord_ra, coord_dec)",
    "CIRCLE(POINT(coord_ra, coord_dec), 1)",
    "POLYGON(coord_ra, coord_dec, 1, 2, 3, 4)",
    "BOX(1, 2, 3, 4)",
    "AREA(BOX(1, 2, 3, 4))",
    "AREA(CIRCLE(coord_ra, coord_dec, 1))",
    "CENTROID(CIRCLE(coord_ra, coord_dec, 1))",
    "COORD1(POINT(coord_ra, coord_dec))",
    "COORDSYS(POINT(coord_ra, coord_dec))",
    "(SELECT MAX(mag_vt) FROM tycho2.main)",
]
AGGREGATES = [
    "COUNT(*)",
    "COUNT(DISTINCT tract)",
    "SUM(tract)",
    "SUM(patch)",
    "SUM(r_mag)",
    "SUM(detect_isPrimary)",
    "AVG(tract)",
    "AVG(r_mag)",
    "MIN(r_mag)",
    "MAX(patch)",
    "MAX(detect_isPrimary)",
    "ivo_string_agg(CAST(tract AS VARCHAR), ',')",
]


@pytest.mark.parametrize("expression", EXPRESSIONS + AGGREGATES)
def test_announced_types_are_duckdbs(expression: str) -> None:
    translation = compile_adql(f"SELECT {expression} AS x FROM dp02_dc2_catalogs.Object", CATALOG)
    data = {t.qualified_name: random_table(t, 50, seed=5) for t in CATALOG}
    assert_types(translation, run(translation, data))


def test_union_types_are_unified() -> None:
    translation = compile_adql(
        "SELECT patch FROM dp02_dc2_catalogs.Object UNION ALL "
        "SELECT tract FROM dp02_dc2_catalogs.Object UNION ALL SELECT 1.5 FROM tycho2.main",
        CATALOG,
    )
    data = {t.qualified_name: random_table(t, 20) for t in CATALOG}
    result = run(translation, data)
    assert_types(translation, result)
    assert translation.columns[0].datatype == "double"


def test_result_metadata() -> None:
    translation = compile_adql(
        "SELECT coord_ra, DISTANCE(POINT(coord_ra, coord_dec), POINT(1, 2)) AS d, COUNT(*) AS n, "
        "MIN(r_mag) AS lo, AVG(r_mag) AS mean, SUM(r_mag) AS total, r_mag - i_mag AS colour, "
        "r_mag + i_mag AS msum, scisql_nanojanskyToAbMag(r_cModelFlux) AS m, "
        "r_cModelFlux * r_cModelFlux AS f2, r_mag + 1 AS shifted, coord_ra * 3600 AS scaled, "
        "LOWER(CAST(tract AS VARCHAR)) AS s, POINT(coord_ra, coord_dec) AS p, "
        "CIRCLE(coord_ra, coord_dec, 1) AS c, POLYGON(1, 2, 3, 4, 5, 6) AS poly "
        "FROM dp02_dc2_catalogs.Object GROUP BY coord_ra, coord_dec, r_mag, i_mag, r_cModelFlux, "
        "tract",
        CATALOG,
    )
    cols = {c.name: c for c in translation.columns}
    assert cols["coord_ra"] == OBJECT.column("coord_ra")
    assert (cols["d"].datatype, cols["d"].unit, cols["d"].ucd) == (
        "double",
        "deg",
        "pos.angDistance",
    )
    assert (cols["n"].datatype, cols["n"].ucd) == ("long", "meta.number")
    assert (cols["lo"].unit, cols["lo"].ucd) == ("mag", "phot.mag;em.opt.R;stat.min")
    assert cols["mean"].ucd == "phot.mag;em.opt.R;stat.mean"
    assert (cols["total"].unit, cols["total"].ucd) == ("mag", None)
    assert (cols["colour"].unit, cols["colour"].ucd) == ("mag", "phot.color")
    assert cols["msum"].ucd is None
    assert (cols["m"].unit, cols["m"].ucd) == ("mag", "phot.mag")
    assert cols["f2"].unit == "nJy**2"
    assert (cols["shifted"].unit, cols["shifted"].ucd) == ("mag", "phot.mag;em.opt.R")
    assert cols["scaled"].unit is None
    assert (cols["s"].datatype, cols["s"].arraysize) == ("char", "*")
    for name, size, xtype in (("p", "2", "point"), ("c", "3", "circle"), ("poly", "*", "polygon")):
        assert (cols[name].datatype, cols[name].arraysize, cols[name].xtype) == (
            "double",
            size,
            xtype,
        )


# --- geometry against independent oracles -----------------------------------------------------


def _sky(n: int, seed: int) -> pa.Table:
    """Random positions, dense near RA 0/360, the north pole and a few test regions."""
    rng = np.random.default_rng(seed)
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    k = n // 4
    ra[:k] = np.mod(rng.normal(0, 8, k), 360)
    dec[:k] = rng.normal(0, 8, k).clip(-90, 90)
    ra[k : 2 * k] = rng.uniform(0, 360, k)
    dec[k : 2 * k] = rng.uniform(75, 90, k)
    ra[2 * k : 3 * k] = rng.normal(10.5, 1.0, k) % 360
    dec[2 * k : 3 * k] = rng.normal(-20, 1.0, k).clip(-90, 90)
    return pa.table(
        {
            "id": pa.array(np.arange(n, dtype=np.int64)),
            "ra": pa.array(ra),
            "dec": pa.array(dec),
            "mag_vt": pa.array(rng.uniform(5, 15, n).astype(np.float32)),
            "name": pa.array([f"TYC {i}" for i in range(n)]),
            "_healpix_29": pa.array(np.zeros(n, dtype=np.int64)),
        }
    )


@pytest.fixture(scope="module")
def sky() -> pa.Table:
    return _sky(20_000, seed=11)


def _xyz(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    r, d = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)], axis=-1)


def test_distance_agrees_with_astropy(sky: pa.Table) -> None:
    translation = compile_adql(
        "SELECT id, DISTANCE(POINT(ra, dec), POINT(10.5, -20)) AS d, "
        "DISTANCE(ra, dec, 359.9, 89.9) AS d2 FROM tycho2.main",
        CATALOG,
    )
    result = run(translation, {"tycho2.main": sky}).sort_by("id")
    coords = SkyCoord(sky["ra"].to_numpy() * u.deg, sky["dec"].to_numpy() * u.deg)
    expected = coords.separation(SkyCoord(10.5 * u.deg, -20 * u.deg)).deg
    expected2 = coords.separation(SkyCoord(359.9 * u.deg, 89.9 * u.deg)).deg
    assert np.max(np.abs(result["d"].to_numpy() - expected)) < 1e-9
    assert np.max(np.abs(result["d2"].to_numpy() - expected2)) < 1e-9


@pytest.mark.parametrize(
    ("ra", "dec", "radius"),
    [(10.5, -20.0, 1.0), (359.5, 0.5, 3.0), (0.0, 90.0, 12.0), (120.0, 10.0, 100.0)],
)
def test_contains_circle_agrees_with_astropy(
    sky: pa.Table, ra: float, dec: float, radius: float
) -> None:
    for form in (
        f"CONTAINS(POINT(ra, dec), CIRCLE({ra}, {dec}, {radius})) = 1",
        f"DISTANCE(POINT({ra}, {dec}), POINT(ra, dec)) <= {radius}",
    ):
        translation = compile_adql(f"SELECT id FROM tycho2.main WHERE {form}", CATALOG)
        got = set(run(translation, {"tycho2.main": sky})["id"].to_pylist())
        coords = SkyCoord(sky["ra"].to_numpy() * u.deg, sky["dec"].to_numpy() * u.deg)
        sep = coords.separation(SkyCoord(ra * u.deg, dec * u.deg)).deg
        inside = set(np.flatnonzero(sep < radius - 1e-9).tolist())
        outside = set(np.flatnonzero(sep > radius + 1e-9).tolist())
        assert inside <= got
        assert not (got & outside)


def _in_convex(points: np.ndarray, vertices: list[tuple[float, float]]) -> np.ndarray:
    """Brute force: inside a convex spherical polygon of either orientation."""
    v = _xyz(np.array([p[0] for p in vertices]), np.array([p[1] for p in vertices]))
    signs = []
    for i in range(len(v)):
        normal = np.cross(v[i], v[(i + 1) % len(v)])
        signs.append(points @ normal)
    s = np.stack(signs)
    # Of the two regions the edges bound, the polygon is the one around its vertices' mean.
    near = points @ v.mean(axis=0) > 0
    return near & (np.all(s >= -1e-12, axis=0) | np.all(s <= 1e-12, axis=0))


@pytest.mark.parametrize(
    "vertices",
    [
        [(350, -5), (10, -5), (10, 5), (350, 5)],  # across RA 0/360
        [(0, 80), (90, 80), (180, 80), (270, 80)],  # around the north pole
        [(9, -21), (12, -21.5), (11, -18)],  # a small triangle, clockwise
    ],
)
def test_contains_polygon_brute_force(sky: pa.Table, vertices: list[tuple[float, float]]) -> None:
    flat = ", ".join(f"{ra}, {dec}" for ra, dec in vertices)
    translation = compile_adql(
        f"SELECT id FROM tycho2.main WHERE CONTAINS(POINT(ra, dec), POLYGON({flat})) = 1",
        CATALOG,
    )
    got = np.zeros(sky.num_rows, dtype=bool)
    got[run(translation, {"tycho2.main": sky})["id"].to_numpy()] = True
    expected = _in_convex(_xyz(sky["ra"].to_numpy(), sky["dec"].to_numpy()), vertices)
    assert np.array_equal(got, expected)
    assert expected.sum() > 10


def test_contains_box_brute_force(sky: pa.Table) -> None:
    translation = compile_adql(
        "SELECT id FROM tycho2.main WHERE CONTAINS(POINT(ra, dec), BOX(359, 1, 6, 4)) = 1",
        CATALOG,
    )
    got = set(run(translation, {"tycho2.main": sky})["id"].to_pylist())
    # Gnomonic projection about the centre: the box is |xi| <= tan(w/2), |eta| <= tan(h/2).
    p = _xyz(sky["ra"].to_numpy(), sky["dec"].to_numpy())
    c = _xyz(np.array(359.0), np.array(1.0))
    east = np.array([-math.sin(math.radians(359)), math.cos(math.radians(359)), 0.0])
    north = np.cross(c, east)
    cos_c = p @ c
    xi, eta = (p @ east) / cos_c, (p @ north) / cos_c
    inside = (
        (cos_c > 0)
        & (np.abs(xi) <= math.tan(math.radians(3)))
        & (np.abs(eta) <= math.tan(math.radians(2)))
    )
    assert got == set(np.flatnonzero(inside).tolist())


def test_contains_returns_one_or_zero(sky: pa.Table) -> None:
    translation = compile_adql(
        "SELECT CONTAINS(POINT(ra, dec), CIRCLE(10.5, -20, 1)) AS c, "
        "INTERSECTS(CIRCLE(ra, dec, 1), CIRCLE(10.5, -20, 1)) AS i FROM tycho2.main",
        CATALOG,
    )
    result = run(translation, {"tycho2.main": sky})
    assert set(result["c"].to_pylist()) == {0, 1}
    assert set(result["i"].to_pylist()) == {0, 1}
    assert translation.columns[0].datatype == "int"


def test_geometry_values_are_dali_arrays(sky: pa.Table) -> None:
    translation = compile_adql(
        "SELECT TOP 1 POINT(ra, dec) AS p, CIRCLE(ra, dec, 0.5) AS c, "
        "POLYGON(1, 2, 3, 4, 5, 6) AS poly, COORD1(POINT(ra, dec)) AS ra1, ra "
        "FROM tycho2.main ORDER BY id",
        CATALOG,
    )
    row = run(translation, {"tycho2.main": sky}).to_pylist()[0]
    assert row["p"] == [row["ra"], sky["dec"][0].as_py()]
    assert row["c"] == [row["ra"], sky["dec"][0].as_py(), 0.5]
    assert row["poly"] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert row["ra1"] == row["ra"]


def test_crossmatch_against_brute_force() -> None:
    left = _sky(3000, seed=1)
    rng = np.random.default_rng(2)
    # Right-hand table: copies of some left positions, displaced by up to ~2 arcsec.
    pick = rng.choice(left.num_rows, 800, replace=False)
    ra = (left["ra"].to_numpy()[pick] + rng.normal(0, 3e-4, 800)) % 360
    dec = np.clip(left["dec"].to_numpy()[pick] + rng.normal(0, 3e-4, 800), -90, 90)
    right = pa.table(
        {
            "objectId": pa.array(np.arange(800, dtype=np.int64)),
            **{
                c.name: pa.nulls(800, type=empty_table(OBJECT).schema.field(c.name).type)
                for c in OBJECT.columns
                if c.name not in ("objectId", "coord_ra", "coord_dec")
            },
            "coord_ra": pa.array(ra),
            "coord_dec": pa.array(dec),
        }
    ).select([c.name for c in OBJECT.columns])
    radius = 2.0 / 3600
    for condition in (
        f"DISTANCE(POINT(o.coord_ra, o.coord_dec), POINT(t.ra, t.dec)) < {radius}",
        f"CONTAINS(POINT(o.coord_ra, o.coord_dec), CIRCLE(t.ra, t.dec, {radius})) = 1",
    ):
        translation = compile_adql(
            "SELECT o.objectId, t.id FROM dp02_dc2_catalogs.Object AS o "
            f"JOIN tycho2.main AS t ON {condition}",
            CATALOG,
        )
        match = translation.crossmatch
        assert match is not None and match.sides is not None
        assert (match.left, match.right, match.radius_deg) == ("__sv_t0", "__sv_t1", radius)
        assert [(s.ra, s.dec, s.columns) for s in match.sides] == [
            ('"s0"."coord_ra"', '"s0"."coord_dec"', ("coord_ra", "coord_dec")),
            ('"s1"."ra"', '"s1"."dec"', ("ra", "dec")),
        ]
        result = run(translation, {"tycho2.main": left, "dp02_dc2_catalogs.Object": right})
        got = set(zip(result["objectId"].to_pylist(), result["id"].to_pylist(), strict=True))
        a = SkyCoord(ra * u.deg, dec * u.deg)
        b = SkyCoord(left["ra"].to_numpy() * u.deg, left["dec"].to_numpy() * u.deg)
        idx_a, idx_b, sep2d, _ = b.search_around_sky(a, radius * 1.01 * u.deg)
        expected = {
            (int(x), int(y))
            for x, y, s in zip(idx_a, idx_b, sep2d.deg, strict=True)
            if s < radius - 1e-9
        }
        borderline = {
            (int(x), int(y))
            for x, y, s in zip(idx_a, idx_b, sep2d.deg, strict=True)
            if abs(s - radius) <= 1e-9
        }
        assert expected <= got <= expected | borderline
        assert len(expected) > 500


# --- plain SQL semantics -----------------------------------------------------------------------


def test_top_offset_order() -> None:
    data = random_table(TYCHO, 100, seed=9)
    translation = compile_adql(
        "SELECT TOP 7 id FROM tycho2.main ORDER BY mag_vt DESC, id OFFSET 5", CATALOG
    )
    got = run(translation, {"tycho2.main": data})["id"].to_pylist()
    rows = sorted(data.to_pylist(), key=lambda r: (-r["mag_vt"], r["id"]))
    assert got == [r["id"] for r in rows][5:12]
    assert "LIMIT 7 OFFSET 5" in translation.sql


def test_group_by_having_join_subquery_set_operations() -> None:
    visits = random_table(VISIT, 60, seed=4)
    forced = random_table(CATALOG[1], 300, seed=5)
    data = {"dp02_dc2_catalogs.Visit": visits, "dp02_dc2_catalogs.ForcedSource": forced}
    translation = compile_adql(
        "SELECT v.band, COUNT(*) AS n, SUM(f.psfFlux) AS flux FROM dp02_dc2_catalogs.ForcedSource "
        "AS f JOIN dp02_dc2_catalogs.Visit AS v ON f.ccdVisitId = v.ccdVisitId "
        "GROUP BY v.band HAVING COUNT(*) > 3 ORDER BY v.band",
        CATALOG,
    )
    got = run(translation, data).to_pylist()
    counts: dict[str, list[float]] = {}
    for f in forced.to_pylist():
        for v in visits.to_pylist():
            if f["ccdVisitId"] == v["ccdVisitId"]:
                counts.setdefault(v["band"], []).append(f["psfFlux"])
    expected = [
        {"band": b, "n": len(fs), "flux": pytest.approx(sum(fs))}
        for b, fs in sorted(counts.items())
        if len(fs) > 3
    ]
    assert got == expected

    translation = compile_adql(
        "SELECT ccdVisitId FROM dp02_dc2_catalogs.Visit WHERE ccdVisitId IN "
        "(SELECT ccdVisitId FROM dp02_dc2_catalogs.ForcedSource WHERE psfFlux > 15) "
        "EXCEPT SELECT ccdVisitId FROM dp02_dc2_catalogs.Visit WHERE band = 'r'",
        CATALOG,
    )
    got_set = set(run(translation, data)["ccdVisitId"].to_pylist())
    bright = {f["ccdVisitId"] for f in forced.to_pylist() if f["psfFlux"] > 15}
    red = {v["ccdVisitId"] for v in visits.to_pylist() if v["band"] == "r"}
    expected_set = {v["ccdVisitId"] for v in visits.to_pylist() if v["ccdVisitId"] in bright}
    assert got_set == expected_set - red


def test_integer_division_truncates_towards_zero() -> None:
    translation = compile_adql(
        "SELECT -7/2 AS a, 7/2 AS b, 7.0/2 AS c, MOD(-7, 2) AS d FROM tycho2.main", CATALOG
    )
    row = run(translation, {"tycho2.main": random_table(TYCHO, 1)}).to_pylist()[0]
    assert row == {"a": -3, "b": 3, "c": 3.5, "d": -1}


def test_identifiers_cannot_inject_sql() -> None:
    translation = compile_adql(
        'SELECT ra AS "x"" FROM evil; --", \'a\'\'; DROP\' AS s FROM tycho2.main AS "t""y"',
        CATALOG,
    )
    assert translation.columns[0].name == 'x" FROM evil; --'
    result = run(translation, {"tycho2.main": random_table(TYCHO, 3)})
    assert result.column_names == ['x" FROM evil; --', "s"]
    assert result["s"].to_pylist() == ["a'; DROP"] * 3


# --- pruning coverage --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "condition",
    [
        "CONTAINS(POINT(ra, dec), CIRCLE(10.5, -20, 0.5)) = 1",
        "1 = CONTAINS(POINT(ra, dec), CIRCLE(POINT(10.5, -20), 0.05))",
        "DISTANCE(POINT(ra, dec), POINT(10.5, -20)) < 1.5",
        "0.7 >= DISTANCE(POINT(10.5, -20), POINT(ra, dec))",
        "DISTANCE(ra, dec, 10.5, -20) <= 2",
        "CONTAINS(POINT(ra, dec), POLYGON(350, -5, 10, -5, 10, 5, 350, 5)) = 1",
        "CONTAINS(POINT(ra, dec), POLYGON(0, 80, 90, 80, 180, 80, 270, 80)) = 1",
        "CONTAINS(POINT(ra, dec), BOX(359, 1, 6, 4)) = 1",
        "ra BETWEEN 9 AND 12 AND dec > -21 AND dec <= -19",
        "dec >= 85",
        "ra < 5 AND mag_vt < 12",
        "INTERSECTS(CIRCLE(10.5, -20, 1), POINT(ra, dec)) = 1 AND dec < -20",
    ],
)
def test_coverage_keeps_every_matching_row(sky: pa.Table, condition: str) -> None:
    translation = compile_adql(f"SELECT ra, dec FROM tycho2.main WHERE {condition}", CATALOG)
    coverage = translation.tables[0].coverage
    assert coverage is not None
    result = run(translation, {"tycho2.main": sky})
    assert result.num_rows > 0
    inside = coverage.contains_lonlat(
        result["ra"].to_numpy() * u.deg, result["dec"].to_numpy() * u.deg
    )
    assert inside.all()
    assert coverage.sky_fraction < 0.35


def test_small_cone_coverage_is_tight() -> None:
    translation = compile_adql(
        "SELECT id FROM tycho2.main WHERE CONTAINS(POINT(ra, dec), CIRCLE(10, 10, 1.0/3600)) = 1",
        CATALOG,
    )
    coverage = translation.tables[0].coverage
    assert coverage is not None
    assert coverage.max_order >= 16
    assert coverage.sky_fraction * 41253 * 3600**2 < 200  # square arcseconds


@pytest.mark.parametrize(
    "condition",
    [
        "CONTAINS(POINT(ra, dec), CIRCLE(10, 10, 1)) = 1 OR mag_vt < 3",
        "NOT (CONTAINS(POINT(ra, dec), CIRCLE(10, 10, 1)) = 0)",
        "CONTAINS(POINT(ra, dec), CIRCLE(10, 10, 1)) = 0",
        "CONTAINS(POINT(dec, ra), CIRCLE(10, 10, 1)) = 1",
        "DISTANCE(POINT(ra, dec), POINT(10, 10)) > 1",
        "mag_vt < 10",
    ],
)
def test_no_coverage_without_a_conjunctive_constraint(condition: str) -> None:
    translation = compile_adql(f"SELECT id FROM tycho2.main WHERE {condition}", CATALOG)
    assert translation.tables[0].coverage is None


def test_coverage_per_occurrence_and_subquery() -> None:
    translation = compile_adql(
        "SELECT a.id FROM tycho2.main AS a, (SELECT id FROM tycho2.main WHERE "
        "CONTAINS(POINT(ra, dec), CIRCLE(1, 1, 1)) = 1) AS b WHERE a.id = b.id AND "
        "a.dec > 80",
        CATALOG,
    )
    first, second = translation.tables
    assert first.coverage is not None and second.coverage is not None
    assert first.coverage.contains_lonlat([0] * u.deg, [85] * u.deg)[0]
    assert second.coverage.contains_lonlat([1] * u.deg, [1] * u.deg)[0]
    assert not second.coverage.contains_lonlat([0] * u.deg, [85] * u.deg)[0]
    # A self-join gives two occurrences.
    assert [t.placeholder for t in translation.tables] == ["__sv_t0", "__sv_t1"]


def test_no_crossmatch_for_plain_joins() -> None:
    translation = compile_adql(
        "SELECT f.objectId FROM dp02_dc2_catalogs.Object AS o JOIN "
        "dp02_dc2_catalogs.ForcedSource AS f ON o.objectId = f.objectId",
        CATALOG,
    )
    assert translation.crossmatch is None


_CONE_A = "CONTAINS(POINT(a.ra, a.dec), CIRCLE(10, 10, 1)) = 1"
_CONE_B = "CONTAINS(POINT(b.ra, b.dec), CIRCLE(10, 10, 1)) = 1"
_RANGE_B = "b.dec BETWEEN 5 AND 6 AND b.ra > 9"


@pytest.mark.parametrize(
    ("join", "on", "pruned"),
    [
        ("LEFT JOIN", _CONE_B, {"b"}),
        ("LEFT OUTER JOIN", _RANGE_B, {"b"}),
        ("LEFT JOIN", _CONE_A, set()),  # the preserved side keeps rows failing ON
        ("RIGHT JOIN", _CONE_A, {"a"}),
        ("RIGHT JOIN", _CONE_B, set()),
        ("FULL JOIN", _CONE_B, set()),
        ("FULL JOIN", _CONE_A, set()),
        ("JOIN", f"{_CONE_A} AND {_CONE_B}", {"a", "b"}),
    ],
)
def test_outer_join_on_prunes_only_the_optional_side(join: str, on: str, pruned: set[str]) -> None:
    translation = compile_adql(
        f"SELECT a.id, b.id AS bid FROM tycho2.main AS a {join} tycho2.main AS b "
        f"ON a.id = b.id AND {on}",
        CATALOG,
    )
    coverage = dict(zip("ab", (t.coverage for t in translation.tables), strict=True))
    assert {name for name, c in coverage.items() if c is not None} == pruned
    for name in pruned:
        moc = coverage[name]
        assert moc is not None and moc.sky_fraction < 0.02


def test_outer_join_on_prunes_with_several_joins() -> None:
    """RIGHT JOIN: everything joined before it is optional; LEFT JOIN: only what it joins."""
    translation = compile_adql(
        "SELECT c.id FROM tycho2.main AS a JOIN tycho2.main AS b ON a.id = b.id "
        "RIGHT JOIN tycho2.main AS c ON c.id = a.id AND "
        "CONTAINS(POINT(b.ra, b.dec), CIRCLE(10, 10, 1)) = 1 "
        "LEFT JOIN tycho2.main AS d ON d.id = c.id AND "
        "CONTAINS(POINT(c.ra, c.dec), CIRCLE(10, 10, 1)) = 1 AND d.dec > 80",
        CATALOG,
    )
    a, b, c, d = (t.coverage for t in translation.tables)
    assert a is None and b is not None and c is None and d is not None


@pytest.mark.parametrize(
    ("query", "pairs"),
    [
        (
            "SELECT COUNT(*) AS n FROM (SELECT o.objectId FROM dp02_dc2_catalogs.Object AS o "
            "JOIN tycho2.main AS t ON DISTANCE(POINT(o.coord_ra, o.coord_dec), "
            "POINT(t.ra, t.dec)) < 0.001) AS q",
            [("__sv_t0", "__sv_t1")],
        ),
        (
            "WITH m AS (SELECT t.id FROM tycho2.main AS t, dp02_dc2_catalogs.Object AS o "
            "WHERE CONTAINS(POINT(o.coord_ra, o.coord_dec), CIRCLE(t.ra, t.dec, 0.001)) = 1) "
            "SELECT id FROM m",
            [("__sv_t0", "__sv_t1")],
        ),
        (
            "SELECT t.id FROM tycho2.main AS t JOIN tycho2.main AS u ON "
            "DISTANCE(POINT(t.ra, t.dec), POINT(u.ra, u.dec)) < 0.001 UNION "
            "SELECT t.id FROM tycho2.main AS t WHERE t.id IN (SELECT v.id FROM tycho2.main AS v "
            "LEFT JOIN tycho2.main AS w ON DISTANCE(POINT(v.ra, v.dec), POINT(w.ra, w.dec)) "
            "< 0.002)",
            [("__sv_t0", "__sv_t1"), ("__sv_t3", "__sv_t4")],
        ),
        (
            # A distance in the ON of a later outer join does not join the two tables.
            "SELECT t.id FROM tycho2.main AS t JOIN tycho2.main AS u ON t.mag_vt < u.mag_vt "
            "LEFT JOIN tycho2.main AS v ON v.id = t.id AND "
            "DISTANCE(POINT(t.ra, t.dec), POINT(u.ra, u.dec)) < 0.001",
            [],
        ),
    ],
)
def test_crossmatches_anywhere_in_the_query(query: str, pairs: list[tuple[str, str]]) -> None:
    translation = compile_adql(query, CATALOG)
    found = [(m.left, m.right) for m in translation.crossmatches]
    assert sorted(tuple(sorted(p)) for p in found) == sorted(tuple(sorted(p)) for p in pairs)
    assert translation.crossmatch == (translation.crossmatches[0] if pairs else None)


@pytest.mark.parametrize(
    ("query", "sides"),
    [
        (
            # 4-argument DISTANCE, constant first: the positions are the arguments.
            "SELECT t.id FROM tycho2.main AS t JOIN dp02_dc2_catalogs.Object AS o "
            "ON 0.001 >= DISTANCE(o.coord_ra, o.coord_dec, t.ra, t.dec)",
            [
                ("__sv_t1", '"s1"."coord_ra"', '"s1"."coord_dec"', False, ()),
                ("__sv_t0", '"s0"."ra"', '"s0"."dec"', False, ()),
            ],
        ),
        (
            # A subquery's columns (renamed) inside the CIRCLE, arithmetic on a position.
            "SELECT t.id FROM tycho2.main AS t, (SELECT coord_ra AS a, coord_dec AS b "
            "FROM dp02_dc2_catalogs.Object) AS q "
            "WHERE 1 = CONTAINS(POINT(t.ra + 0.5, t.dec), CIRCLE(q.a, q.b, 0.001))",
            [
                ("__sv_t0", '("s0"."ra" + 0.5e0)', '"s0"."dec"', False, ()),
                ("s2", '"s2"."a"', '"s2"."b"', True, ("__sv_t1",)),
            ],
        ),
    ],
)
def test_crossmatch_sides_are_the_predicate_positions(
    query: str, sides: list[tuple[str, str, str, bool, tuple[str, ...]]]
) -> None:
    [match] = compile_adql(query, CATALOG).crossmatches
    assert match.sides is not None
    assert [(s.name, s.ra, s.dec, s.derived, s.tables) for s in match.sides] == sides
    assert (match.left, match.right) == (sides[0][0], sides[1][0])


# --- fuzz ----------------------------------------------------------------------------------------

_COLUMNS = ["id", "ra", "dec", "mag_vt", "name", "t.id", "t.ra", "o.r_mag", "o.tract", "nosuch"]
_VALUES = [
    *_COLUMNS,
    "1",
    "2.5",
    "'abc'",
    "NULL",
    "DISTANCE(POINT(t.ra, t.dec), POINT(o.coord_ra, o.coord_dec))",
    "CONTAINS(POINT(ra, dec), CIRCLE(1, 2, 3))",
    "POINT(ra, dec)",
    "CIRCLE(t.ra, t.dec, 1)",
    "COUNT(*)",
    "MAX(mag_vt)",
    "LOWER(name)",
    "CAST(id AS VARCHAR)",
    "(SELECT MIN(ra) FROM tycho2.main)",
]
_OPS = ["+", "-", "*", "/", "||"]
_CONDS = ["=", "<", ">=", "<>", "LIKE"]


@st.composite
def _queries(draw: st.DrawFn) -> str:
    value = st.sampled_from(_VALUES)
    expr = st.one_of(
        value,
        st.builds(lambda a, op, b: f"{a} {op} {b}", value, st.sampled_from(_OPS), value),
    )
    items = draw(st.lists(expr, min_size=1, max_size=4))
    select = ", ".join(items) if not draw(st.booleans()) else "*"
    from_ = draw(
        st.sampled_from(
            [
                "tycho2.main",
                "tycho2.main AS t",
                "tycho2.main AS t JOIN dp02_dc2_catalogs.Object AS o ON t.id = o.objectId",
                "tycho2.main AS t, dp02_dc2_catalogs.Object AS o",
                "(SELECT id, ra, dec, mag_vt, name FROM tycho2.main) AS t",
            ]
        )
    )
    query = f"SELECT {select} FROM {from_}"
    if draw(st.booleans()):
        cond = f"{draw(expr)} {draw(st.sampled_from(_CONDS))} {draw(expr)}"
        query += f" WHERE {cond}"
    if draw(st.booleans()):
        query += f" GROUP BY {draw(st.sampled_from(_COLUMNS))}"
    if draw(st.booleans()):
        query += f" ORDER BY {draw(st.sampled_from(['1', *_COLUMNS]))}"
    if draw(st.booleans()):
        query = f"{query} UNION SELECT {draw(value)} FROM tycho2.main"
    # Mutations: drop or duplicate a token, swap a keyword.
    tokens = query.split(" ")
    mutation = draw(st.integers(0, 4))
    if mutation == 1 and len(tokens) > 2:
        del tokens[draw(st.integers(1, len(tokens) - 1))]
    elif mutation == 2:
        i = draw(st.integers(0, len(tokens) - 1))
        tokens.insert(i, tokens[i])
    return " ".join(tokens)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_queries())
def test_fuzz_translations_run_or_fail_cleanly(text: str) -> None:
    try:
        translation = compile_adql(text, CATALOG)
    except AdqlError:
        return
    empty: dict[str, TableMeta] = {t.qualified_name: t for t in CATALOG}
    try:
        run(translation, {name: empty_table(meta) for name, meta in empty.items()})
    except (duckdb.InvalidInputException, duckdb.ConversionException, duckdb.OutOfRangeException):
        # An error in the values (``1 / COUNT(*)`` over an empty table divides by zero), not
        # in the SQL: the executor reports these to the user as a QueryError with DuckDB's
        # message (tests/engine/test_executor.py).  Binder, parser and internal errors still
        # fail this test.
        return


# --- timing (reported, not asserted) ----------------------------------------------------------

TYPICAL = [
    "SELECT TOP 100 objectId, coord_ra, coord_dec, scisql_nanojanskyToAbMag(r_cModelFlux) AS r "
    "FROM dp02_dc2_catalogs.Object WHERE CONTAINS(POINT('ICRS', coord_ra, coord_dec), "
    "CIRCLE('ICRS', 62.0, -37.0, 0.1)) = 1 AND detect_isPrimary = 1",
    "SELECT f.objectId, f.psfFlux, v.expMidptMJD FROM dp02_dc2_catalogs.ForcedSource AS f "
    "JOIN dp02_dc2_catalogs.Visit AS v ON f.ccdVisitId = v.ccdVisitId WHERE f.objectId = 1234",
    "SELECT COUNT(*) FROM dp02_dc2_catalogs.Object WHERE coord_ra BETWEEN 60 AND 61 "
    "AND coord_dec BETWEEN -37 AND -36 AND r_mag - i_mag > 0.5",
]


def test_report_compile_time(capsys: pytest.CaptureFixture[str]) -> None:
    for text in TYPICAL:
        compile_adql(text, CATALOG)
    samples = []
    for _ in range(30):
        for text in TYPICAL:
            start = time.perf_counter()
            compile_adql(text, CATALOG)
            samples.append(time.perf_counter() - start)
    with capsys.disabled():
        print(f"\nparse+check+translate median: {statistics.median(samples) * 1e3:.2f} ms")
