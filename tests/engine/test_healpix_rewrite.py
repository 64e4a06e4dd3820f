"""``ivo_healpix_index`` over a stored table's own position is its ``_healpix_29`` shifted.

The translator writes ``ivo_healpix_index(k, ra, dec)`` of a ``hats`` table's declared RA/Dec
columns as ``_healpix_29 >> 2 (29 - k)``; everything else stays a call of the Python UDF.
cdshealpix is the oracle, for every order 0..29 and positions on cell corners and edges, at
the poles and at RA 0 and just below 360.
"""

from __future__ import annotations

import cdshealpix.nested as chp
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy.coordinates import Latitude, Longitude

from skyvault.adql.translate import compile_adql
from skyvault.catalog.ingest import ingest
from skyvault.engine.archive import Archive
from tests.adql._catalog import CATALOG, VISIT

ORDERS = range(30)


def _tricky_positions(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random positions plus cell corners, edge points, poles and RA 0 / just below 360."""
    rng = np.random.default_rng(seed)
    n = 3000
    ras = [rng.uniform(0.0, 360.0, n)]
    decs = [np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n)))]
    below_360 = float(np.nextafter(360.0, 0.0))
    ras.append(np.array([0.0, below_360, 0.0, below_360, 0.0, 0.0, 45.0, 90.0, 180.0, 270.0]))
    decs.append(np.array([0.0, 0.0, 90.0, -90.0, 89.999999999, -89.999999999] + [0.0] * 4))
    for order in (0, 1, 2, 3, 6, 10, 15, 20, 25, 29):
        cells = rng.integers(0, 12 * 4**order, 40).astype(np.uint64)
        lon, lat = chp.vertices(cells, order)  # the four corners of each cell
        ras.append(lon.to_value("deg").ravel())
        decs.append(lat.to_value("deg").ravel())
        for dx, dy in ((0.0, 0.5), (0.5, 0.0), (0.5, 0.5)):  # edge midpoints, centres
            lon, lat = chp.healpix_to_lonlat(cells, order, dx=dx, dy=dy)
            ras.append(lon.to_value("deg"))
            decs.append(lat.to_value("deg"))
    ra = np.mod(np.concatenate(ras), 360.0)
    dec = np.clip(np.concatenate(decs), -90.0, 90.0)
    return ra, dec


def _cdshealpix(ra: np.ndarray, dec: np.ndarray, order: int) -> np.ndarray:
    cells = chp.lonlat_to_healpix(Longitude(ra, "deg"), Latitude(dec, "deg"), order)
    return np.asarray(cells, dtype=np.int64)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Archive:
    root = tmp_path_factory.mktemp("hpx")
    ra, dec = _tricky_positions(seed=29)
    source = root / "points.parquet"
    pq.write_table(
        pa.table({"id": np.arange(len(ra), dtype=np.int64), "ra": ra, "dec": dec}), source
    )
    ingest([source], "sky.points", root / "data", ra="ra", dec="dec")
    return Archive(root / "data")


def _indices(archive: Archive, template: str) -> tuple[pa.Table, str]:
    columns = ", ".join(template.format(k=k) + f" AS h{k}" for k in ORDERS)
    adql = f"SELECT id, ra, dec, {columns} FROM sky.points"
    return archive.query(adql).sort_by("id"), archive.plan(adql).sql


def test_rewrite_equals_cdshealpix_for_every_order(archive: Archive) -> None:
    for template in ("ivo_healpix_index({k}, ra, dec)", "ivo_healpix_index({k}, POINT(ra, dec))"):
        table, sql = _indices(archive, template)
        assert "ivo_healpix_index" not in sql and "_healpix_29" in sql, sql
        ra, dec = table["ra"].to_numpy(), table["dec"].to_numpy()
        for k in ORDERS:
            got = table[f"h{k}"].to_numpy()
            np.testing.assert_array_equal(got, _cdshealpix(ra, dec, k), err_msg=f"order {k}")


def test_rewrite_equals_the_udf(archive: Archive) -> None:
    """The same calls through the UDF (an expression of the columns is not rewritten)."""
    table, _ = _indices(archive, "ivo_healpix_index({k}, ra, dec)")
    udf, sql = _indices(archive, "ivo_healpix_index({k}, ra + 0, dec)")
    assert sql.count("ivo_healpix_index(") == len(ORDERS)
    assert udf.equals(table)


def test_group_by_the_rewritten_index(archive: Archive) -> None:
    adql = (
        "SELECT ivo_healpix_index(3, ra, dec) AS hpx, COUNT(*) AS n FROM sky.points "
        "GROUP BY hpx ORDER BY hpx"
    )
    got = archive.query(adql)
    table, _ = _indices(archive, "ivo_healpix_index({k}, ra, dec)")
    cells, counts = np.unique(
        _cdshealpix(table["ra"].to_numpy(), table["dec"].to_numpy(), 3), return_counts=True
    )
    np.testing.assert_array_equal(got["hpx"].to_numpy(), cells)
    np.testing.assert_array_equal(got["n"].to_numpy(), counts)
    assert got.schema.field("hpx").type == pa.int64()


def test_missing_side_of_an_outer_join_is_null(archive: Archive) -> None:
    adql = (
        "SELECT a.id, ivo_healpix_index(7, b.ra, b.dec) AS h FROM sky.points AS a "
        "LEFT JOIN sky.points AS b ON b.id = a.id + 1 WHERE a.id >= 2999 AND a.id <= 3001"
    )
    assert "ivo_healpix_index" not in archive.plan(adql).sql
    got = archive.query(adql).sort_by("id")
    ids, cells = got["id"].to_pylist(), got["h"].to_pylist()
    table = archive.query("SELECT id, ra, dec FROM sky.points").sort_by("id")
    ra, dec = table["ra"].to_numpy(), table["dec"].to_numpy()
    last = len(ra) - 1
    assert ids == [2999, 3000, 3001]
    assert cells == [int(_cdshealpix(ra[i + 1 : i + 2], dec[i + 1 : i + 2], 7)[0]) for i in ids]
    outer = archive.query(
        adql.replace("a.id >= 2999 AND a.id <= 3001", f"a.id = {last}").replace("a.id, ", "")
    )
    assert outer["h"].to_pylist() == [None]


@pytest.mark.parametrize(
    "call",
    [
        "ivo_healpix_index(3, ra + 0, dec)",  # an expression of the position
        "ivo_healpix_index(3, dec, ra)",  # not the declared roles
        "ivo_healpix_index(3, ra, ra)",
        # (a constant order not a whole number in 0..29 is refused by the checker)
        "ivo_healpix_index(CAST(mag_vt AS INTEGER), ra, dec)",  # not a constant
        "ivo_healpix_index(3, POINT(ra, dec + 0))",
    ],
)
def test_other_forms_stay_udf_calls(call: str) -> None:
    sql = compile_adql(f"SELECT {call} FROM tycho2.main", CATALOG).sql
    assert "ivo_healpix_index(" in sql and "_healpix_29" not in sql, sql


def test_other_tables_and_subqueries_stay_udf_calls() -> None:
    visit_pos = VISIT.__class__(
        **{**VISIT.__dict__, "ra_column": "seeing", "dec_column": "expMidptMJD"}
    )  # a plain table (an upload, TAP_SCHEMA) has no _healpix_29, whatever it declares
    for adql, tables in (
        ("SELECT ivo_healpix_index(3, t.ra, o.coord_dec) FROM tycho2.main AS t, "
         "dp02_dc2_catalogs.Object AS o", CATALOG),
        ("SELECT ivo_healpix_index(3, s.ra, s.dec) FROM (SELECT ra, dec FROM tycho2.main) AS s",
         CATALOG),
        ("SELECT ivo_healpix_index(3, seeing, expMidptMJD) FROM dp02_dc2_catalogs.Visit",
         (*CATALOG[:2], visit_pos, CATALOG[3])),
    ):  # fmt: skip
        sql = compile_adql(adql, tables).sql
        assert "ivo_healpix_index(" in sql and "_healpix_29" not in sql, sql


def test_each_table_its_own_index() -> None:
    sql = compile_adql(
        "SELECT ivo_healpix_index(0, t.ra, t.dec) AS a, "
        "ivo_healpix_index(29, o.coord_ra, o.coord_dec) AS b "
        "FROM tycho2.main AS t JOIN dp02_dc2_catalogs.Object AS o ON t.id = o.objectId",
        CATALOG,
    ).sql
    assert '("s0"."_healpix_29" >> 58) AS "a"' in sql
    assert '"s1"."_healpix_29" AS "b"' in sql
