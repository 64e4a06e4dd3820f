"""The tuned Arrow UDFs give exactly what the former ones gave (frozen in _former_udfs.py),
NULLs and invalid arguments included, called directly and by DuckDB vector by vector; the
former ones are themselves tested against cdshealpix and astropy (test_healpix_udf.py,
test_astrometry.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from skyvault.engine.connection import Sandbox, _udf_definitions
from skyvault.sky import astrometry, healpix
from tests.sky import _former_udfs as former

N = 5000


def _with_nulls(values: np.ndarray, rng: np.random.Generator, share: float) -> pa.Array:
    return pa.array(values, mask=rng.random(len(values)) < share if share else None)


def _positions(rng: np.random.Generator, share: float) -> tuple[pa.Array, pa.Array]:
    ra = rng.uniform(-10.0, 370.0, N)
    dec = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, N)))
    dec[:20] = [90.0, -90.0, 90.5, -91.0, np.nan, np.inf, 0.0, 45.0] + [89.9999] * 12
    ra[20:30] = [0.0, 360.0, np.nan, -np.inf, 720.0, 359.999999, -0.0, 180.0, 1e300, -1e-300]
    return _with_nulls(ra, rng, share), _with_nulls(dec, rng, share)


ORDER_CASES = {
    "constant": lambda rng: np.full(N, 9),
    "constant 0": lambda rng: np.full(N, 0),
    "constant 29": lambda rng: np.full(N, 29),
    "mixed": lambda rng: rng.integers(0, 30, N),
    "some invalid": lambda rng: rng.integers(-2, 33, N),
    "all invalid": lambda rng: np.full(N, 30),
}


@pytest.mark.parametrize("share", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("orders", list(ORDER_CASES))
def test_healpix_index_as_before(orders: str, share: float) -> None:
    rng = np.random.default_rng(len(orders) + int(share * 10))
    order = _with_nulls(ORDER_CASES[orders](rng).astype(np.int32), rng, share / 2)
    ra, dec = _positions(rng, share)
    got = healpix.ivo_healpix_index(order, ra, dec)
    assert got.equals(former.ivo_healpix_index(order, ra, dec))


@pytest.mark.parametrize("share", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("orders", list(ORDER_CASES))
def test_healpix_center_as_before(orders: str, share: float) -> None:
    rng = np.random.default_rng(100 + len(orders) + int(share * 10))
    raw = ORDER_CASES[orders](rng)
    order = _with_nulls(raw.astype(np.int32), rng, share / 2)
    size = 12 * 4 ** np.clip(raw, 0, 29).astype(np.float64)
    cells = (rng.random(N) * size).astype(np.int64)
    cells[:10] = [-1, 0, 11, 12, 47, 48, 2**62, -(2**62), 3, 5]
    index = _with_nulls(cells, rng, share)
    got = healpix.ivo_healpix_center(order, index)
    assert got.equals(former.ivo_healpix_center(order, index))


@pytest.mark.parametrize("share", [0.0, 0.1, 1.0])
def test_epoch_prop_pos_as_before(share: float) -> None:
    rng = np.random.default_rng(7 + int(share * 10))
    ra, dec = _positions(rng, share)
    columns = [
        rng.uniform(0, 500, N),  # parallax
        rng.normal(0, 2000, N),  # pmra
        rng.normal(0, 2000, N),  # pmdec
        rng.normal(0, 100, N),  # radial velocity
        np.full(N, 2016.0),
        rng.uniform(1900, 2100, N),
    ]
    args = [ra, dec, *(_with_nulls(c, rng, share) for c in columns)]
    got = astrometry.ivo_epoch_prop_pos(*args)
    assert got.equals(former.ivo_epoch_prop_pos(*args))


def test_through_duckdb_vector_by_vector(tmp_path: Path) -> None:
    """DuckDB hands the UDFs ~2048 rows at a time: the same answers as one call."""
    macros, udfs = _udf_definitions()
    cur = Sandbox([tmp_path], macros=macros, python_udfs=udfs).cursor()
    rng = np.random.default_rng(11)
    n = 3 * 2048 + 17
    ra = rng.uniform(0.0, 360.0, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n)))
    order = np.where(np.arange(n) < 2048, 7, rng.integers(0, 30, n)).astype(np.int32)
    mask = rng.random(n) < 0.05
    cur.register(
        "pts",
        pa.table({"i": np.arange(n), "o": order, "ra": pa.array(ra, mask=mask), "dec": dec}),
    )
    got = cur.sql(
        "SELECT ivo_healpix_index(o, ra, dec) AS h, ivo_healpix_center(o, "
        "ivo_healpix_index(o, ra, dec)) AS c, ivo_epoch_prop_pos(ra, dec, 10.0, 100.0, -50.0, "
        "20.0, 2016.0, 2000.0) AS p FROM pts ORDER BY i"
    ).to_arrow_table()
    o, r, d = pa.array(order), pa.array(ra, mask=mask), pa.array(dec)
    want_h = former.ivo_healpix_index(o, r, d)
    assert got["h"].combine_chunks().equals(want_h)
    assert got["c"].combine_chunks().equals(former.ivo_healpix_center(o, want_h))
    consts = [pa.array(np.full(n, v)) for v in (10.0, 100.0, -50.0, 20.0, 2016.0, 2000.0)]
    assert got["p"].combine_chunks().equals(former.ivo_epoch_prop_pos(r, d, *consts))
