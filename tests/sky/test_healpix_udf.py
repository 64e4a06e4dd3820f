"""ivo_healpix_index / ivo_healpix_center as DuckDB sees them, against cdshealpix and astropy."""

from __future__ import annotations

from pathlib import Path

import cdshealpix.nested as chp
import numpy as np
import pyarrow as pa
from astropy.coordinates import Latitude, Longitude, SkyCoord

from skyvault.engine.connection import Sandbox, _udf_definitions


def _cursor(tmp_path: Path):  # type: ignore[no-untyped-def]
    macros, udfs = _udf_definitions()
    return Sandbox([tmp_path], macros=macros, python_udfs=udfs).cursor()


def test_index_matches_cdshealpix(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    ra = rng.uniform(0, 360, 2000)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, 2000)))
    order = rng.integers(0, 30, 2000)
    cur = _cursor(tmp_path)
    cur.register("pts", pa.table({"o": order, "ra": ra, "dec": dec}))
    got = cur.execute("SELECT ivo_healpix_index(CAST(o AS INTEGER), ra, dec) FROM pts").fetchnumpy()
    values = next(iter(got.values()))
    for k in np.unique(order):
        rows = order == k
        want = chp.lonlat_to_healpix(Longitude(ra[rows], "deg"), Latitude(dec[rows], "deg"), int(k))
        np.testing.assert_array_equal(values[rows], want.astype(np.int64))


def test_center_lies_in_its_cell_and_nulls_propagate(tmp_path: Path) -> None:
    cur = _cursor(tmp_path)
    rows = cur.execute(
        "SELECT ivo_healpix_center(8, ivo_healpix_index(8, 123.4, -45.6)), "
        "ivo_healpix_index(NULL, 1.0, 2.0), ivo_healpix_index(30, 1.0, 2.0), "
        "ivo_healpix_center(0, 12)"
    ).fetchall()
    centre, null_order, bad_order, bad_index = rows[0]
    assert null_order is None and bad_order is None and bad_index is None
    sep = SkyCoord(centre["ra"], centre["dec"], unit="deg").separation(
        SkyCoord(123.4, -45.6, unit="deg")
    )
    assert sep.deg < 0.3  # an order-8 cell is ~0.23° across
    back = chp.lonlat_to_healpix(
        Longitude([centre["ra"]], "deg"), Latitude([centre["dec"]], "deg"), 8
    )
    assert int(back[0]) == int(
        chp.lonlat_to_healpix(Longitude([123.4], "deg"), Latitude([-45.6], "deg"), 8)[0]
    )
