"""Frozen copies of the UDFs as they were before they were tuned (the oracle of
test_udf_vectorised.py): the tuned ones must give the same arrays, NULLs included."""

# ruff: noqa
# mypy: ignore-errors

from __future__ import annotations

import cdshealpix.nested as chp
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from astropy.coordinates import Latitude, Longitude

from skyvault.sky.astrometry import propagate

MAX_ORDER = 29


def _as_numpy(arr: pa.Array | pa.ChunkedArray, dtype: type) -> np.ndarray:
    filled = pc.fill_null(arr, 0)
    return np.asarray(filled.to_numpy(zero_copy_only=False), dtype=dtype)


def _valid(*arrays: pa.Array | pa.ChunkedArray) -> np.ndarray:
    mask = np.ones(len(arrays[0]), dtype=bool)
    for arr in arrays:
        mask &= np.asarray(pc.is_valid(arr).to_numpy(zero_copy_only=False), dtype=bool)
    return mask


def ivo_healpix_index(order: pa.Array, ra: pa.Array, dec: pa.Array) -> pa.Array:
    """NESTED index of the cell of ``order`` holding each position (degrees)."""
    orders = _as_numpy(order, np.int64)
    lon = _as_numpy(ra, np.float64)
    lat = _as_numpy(dec, np.float64)
    ok = _valid(order, ra, dec) & (orders >= 0) & (orders <= MAX_ORDER)
    ok &= np.isfinite(lon) & np.isfinite(lat) & (np.abs(lat) <= 90.0)
    out = np.zeros(len(orders), dtype=np.int64)
    for value in np.unique(orders[ok]):
        rows = ok & (orders == value)
        out[rows] = chp.lonlat_to_healpix(
            Longitude(lon[rows], "deg"), Latitude(lat[rows], "deg"), int(value)
        ).astype(np.int64)
    return pa.array(out, mask=~ok)


_POINT = pa.struct([("ra", pa.float64()), ("dec", pa.float64())])


def ivo_healpix_center(order: pa.Array, index: pa.Array) -> pa.Array:
    """Centre (ICRS degrees) of each NESTED cell ``index`` at ``order``."""
    orders = _as_numpy(order, np.int64)
    pixels = _as_numpy(index, np.int64)
    ok = _valid(order, index) & (orders >= 0) & (orders <= MAX_ORDER) & (pixels >= 0)
    ok &= pixels < 12 * (4 ** np.clip(orders, 0, MAX_ORDER))
    ra = np.zeros(len(orders))
    dec = np.zeros(len(orders))
    for value in np.unique(orders[ok]):
        rows = ok & (orders == value)
        lon, lat = chp.healpix_to_lonlat(pixels[rows].astype(np.uint64), int(value))
        ra[rows] = lon.to_value("deg")
        dec[rows] = lat.to_value("deg")
    mask = pa.array(~ok)
    return pa.StructArray.from_arrays([pa.array(ra), pa.array(dec)], fields=list(_POINT), mask=mask)


def ivo_epoch_prop_pos(
    ra: pa.Array,
    dec: pa.Array,
    parallax: pa.Array,
    pmra: pa.Array,
    pmdec: pa.Array,
    radial_velocity: pa.Array,
    ref_epoch: pa.Array,
    out_epoch: pa.Array,
) -> pa.Array:
    """The DuckDB UDF: a POINT struct (ra, dec in degrees) at ``out_epoch`` (Julian years)."""
    required = (ra, dec, pmra, pmdec, ref_epoch, out_epoch)
    valid = np.ones(len(ra), dtype=bool)
    for arr in required:
        valid &= np.asarray(pc.is_valid(arr).to_numpy(zero_copy_only=False), dtype=bool)

    def values(arr: pa.Array) -> np.ndarray:
        filled = pc.fill_null(arr, 0.0)
        return np.asarray(filled.to_numpy(zero_copy_only=False), dtype=np.float64)

    years = values(out_epoch) - values(ref_epoch)
    out_ra, out_dec = propagate(
        values(ra),
        values(dec),
        values(parallax),
        values(pmra),
        values(pmdec),
        values(radial_velocity),
        years,
    )
    valid &= np.isfinite(out_ra) & np.isfinite(out_dec)
    return pa.StructArray.from_arrays(
        [pa.array(out_ra), pa.array(out_dec)], fields=list(_POINT), mask=pa.array(~valid)
    )
