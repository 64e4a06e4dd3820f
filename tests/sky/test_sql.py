"""The SQL generators, run in DuckDB, against numpy predicates and astropy."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from skyvault.sky.geometry import contains_points
from skyvault.sky.regions import Box, Circle, Polygon, RaDecRange
from skyvault.sky.sql import (
    distance_sql,
    double_literal,
    point_in_region_sql,
    within_distance_sql,
)

from .oracle import inside_polygon, random_near, random_sky, separation

TOL = 1e-9


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    ra, dec = random_sky(100_000, 11)
    extra = [random_near(0.0, 89.9, 0.3, 5000, 12), random_near(0.0, 0.0, 0.01, 5000, 13)]
    ra = np.concatenate([ra, *[e[0] for e in extra], [0.0, 359.999999999, 180.0, 0.0]])
    dec = np.concatenate([dec, *[e[1] for e in extra], [90.0, 0.0, -90.0, -90.0]])
    c = duckdb.connect()
    c.register("points", pa.table({"ra": ra, "dec": dec}))
    return c


def _column(con: duckdb.DuckDBPyConnection, expr: str) -> np.ndarray:
    return np.asarray(con.sql(f"SELECT {expr} AS v FROM points").fetchnumpy()["v"])


def _points(con: duckdb.DuckDBPyConnection) -> tuple[np.ndarray, np.ndarray]:
    got = con.sql("SELECT ra, dec FROM points").fetchnumpy()
    return np.asarray(got["ra"]), np.asarray(got["dec"])


@pytest.mark.parametrize(("ra0", "dec0"), [(0.0, 0.0), (359.9999, 89.95), (180.0, -90.0)])
def test_distance_sql_matches_astropy(con, ra0: float, dec0: float) -> None:
    ra, dec = _points(con)
    got = _column(con, distance_sql("ra", "dec", repr(ra0), repr(dec0)))
    np.testing.assert_allclose(got, separation(ra, dec, ra0, dec0), atol=TOL, rtol=0)


def test_distance_sql_tiny_and_antipodal() -> None:
    c = duckdb.connect()
    mas = 1 / 3.6e6
    tiny = c.sql(f"SELECT {distance_sql('10.0', repr(-mas / 2), '10.0', repr(mas / 2))}")
    assert abs(tiny.fetchall()[0][0] - mas) < 1e-15
    anti = c.sql(f"SELECT {distance_sql('10.0', '20.0', '190.0', '-20.0')}").fetchall()[0][0]
    assert abs(anti - 180.0) < 1e-12


REGIONS = [
    Circle(359.95, 0.0, 0.05),  # across RA 0
    Circle(10.0, 89.9, 0.2),  # over the pole
    Circle(0.0, 0.0, 1 / 3.6e3),  # 1 arcsec
    Circle(100.0, -20.0, 135.0),  # larger than a hemisphere
    Polygon(((0, 0), (40, 0), (40, 40), (20, 8), (0, 40))),
    Polygon(((350, -5), (10, -5), (12, 8), (0, 1), (348, 8))),
    Polygon(tuple((float(k * 36), -60.0 if k % 2 else -80.0) for k in range(10))),
    Polygon(tuple((float(r), 89.8) for r in range(0, 360, 60))),
    Box(0.0, 89.9, 0.3, 0.2),
    Box(359.99, 0.0, 0.02, 0.01),
    Box(45.0, 30.0, 100.0, 60.0),
]


@pytest.mark.parametrize("region", REGIONS, ids=lambda r: type(r).__name__)
def test_point_in_region_sql_matches_numpy_and_oracle(con, region) -> None:
    ra, dec = _points(con)
    got = _column(con, point_in_region_sql("ra", "dec", region)).astype(bool)
    numpy_result = contains_points(region, ra, dec)
    assert got.sum() > 0
    assert np.array_equal(got, numpy_result)
    if isinstance(region, Circle):
        sep = separation(ra, dec, region.ra, region.dec)
        bad = got != (sep <= region.radius)
        assert np.all(np.abs(sep[bad] - region.radius) < TOL)
    else:
        vertices = region.corners() if isinstance(region, Box) else region.vertices
        assert np.array_equal(got, inside_polygon(ra, dec, vertices))


def test_range_sql() -> None:
    c = duckdb.connect()
    ra = np.array([355.0, 5.0, 180.0, 0.0, 355.0, 10.0, 350.0])
    dec = np.array([0.0, 0.0, 0.0, 5.0, 6.0, -5.0, 5.0])
    c.register("points", pa.table({"ra": ra, "dec": dec}))
    rng = RaDecRange(350.0, 10.0, -5.0, 5.0)
    got = _column(c, point_in_region_sql("ra", "dec", rng)).astype(bool)
    assert got.tolist() == [True, True, False, True, False, True, True]
    assert np.array_equal(got, contains_points(rng, ra, dec))
    plain = RaDecRange(0.0, 180.0, 0.0, 90.0)
    assert _column(c, point_in_region_sql("ra", "dec", plain)).astype(bool).tolist() == [
        False,
        True,
        True,
        True,
        False,
        False,
        False,
    ]


@pytest.mark.parametrize("radius", [1 / 3600, 0.5, 120.0, "0.5"])
def test_within_distance_cross_match(radius) -> None:
    a_ra, a_dec = random_sky(300, 21)
    a_ra = np.append(a_ra, [359.9999, 0.0])
    a_dec = np.append(a_dec, [0.0, 89.9999])
    r = float(radius)
    b_ra: list[float] = []
    b_dec: list[float] = []
    rng = np.random.default_rng(22)
    for ra0, dec0 in zip(a_ra, a_dec, strict=True):
        near = random_near(ra0, dec0, min(2 * r, 180.0), 3, int(rng.integers(1 << 30)))
        b_ra.extend(near[0])
        b_dec.extend(near[1])
    c = duckdb.connect()
    c.register("a", pa.table({"id": np.arange(len(a_ra)), "ra": a_ra, "dec": a_dec}))
    c.register("b", pa.table({"id": np.arange(len(b_ra)), "ra": b_ra, "dec": b_dec}))
    cond = within_distance_sql("a.ra", "a.dec", "b.ra", "b.dec", radius)
    pairs = c.sql(f"SELECT a.id, b.id FROM a JOIN b ON {cond}").fetchall()
    got = {(int(i), int(j)) for i, j in pairs}
    ii, jj = np.meshgrid(np.arange(len(a_ra)), np.arange(len(b_ra)), indexing="ij")
    sep = separation(
        np.asarray(a_ra)[ii], np.asarray(a_dec)[ii], np.asarray(b_ra)[jj], np.asarray(b_dec)[jj]
    )
    expected = {(int(i), int(j)) for i, j in zip(*np.nonzero(sep <= r), strict=True)}
    assert len(expected) > len(a_ra) // 8
    for i, j in got ^ expected:
        assert abs(sep[i, j] - r) < TOL


@pytest.mark.parametrize(
    "value",
    [0.0, -0.0, 0.5, -2.5, 1.0 / 3.0, 1e300, -1e-300, 5e-324, 1.7976931348623157e308,
     float("inf"), float("-inf"), float("nan")],
)  # fmt: skip
def test_double_literal_is_a_duckdb_double_that_round_trips(value: float) -> None:
    literal = double_literal(value)
    [(got, kind, negated)] = duckdb.sql(
        f"SELECT {literal} AS v, typeof({literal}) AS t, -{literal} AS n"
    ).fetchall()
    assert kind == "DOUBLE", literal
    if np.isnan(value):
        assert np.isnan(got) and np.isnan(negated)
    else:
        assert got == value and np.copysign(1.0, got) == np.copysign(1.0, value), literal
        assert negated == -value


def test_there_is_one_double_literal() -> None:
    from skyvault.adql import geometry_sql

    assert geometry_sql.double_literal is double_literal
