"""The HEALPix UDFs of ADQL (``ivo_healpix_index``, ``ivo_healpix_center``) for DuckDB.

DuckDB calls these with whole Arrow arrays (vectorised UDFs, one call per vector of about
2048 rows); cdshealpix does the work.  NULL in any argument, an order outside 0..29 or an
index outside the order's range gives NULL, as for SQL functions generally, rather than
failing the whole query.

A call costs a fixed few tens of microseconds besides the per-row work, so the common case
is kept short: a constant order (what queries write) is one cdshealpix call over the vector,
columns without NULLs are read without copies, and cdshealpix runs on the calling thread
(DuckDB already runs one call per worker thread; a thread pool per 2048 rows costs more
than it saves).  The calls over a stored table's own position never get here: the
translator writes them as a shift of ``_healpix_29``.
"""

from __future__ import annotations

import cdshealpix.nested as chp
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from astropy.coordinates import Latitude, Longitude

__all__ = ["ivo_healpix_center", "ivo_healpix_index"]

MAX_ORDER = 29


def _as_numpy(arr: pa.Array | pa.ChunkedArray, dtype: type) -> np.ndarray:
    """The values of ``arr`` as ``dtype`` (NULLs as 0), without a copy where possible."""
    if arr.null_count:
        arr = pc.fill_null(arr, 0)
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=dtype)


def _valid(*arrays: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Rows where no argument is NULL."""
    mask = np.ones(len(arrays[0]), dtype=bool)
    for arr in arrays:
        if arr.null_count:
            mask &= np.asarray(pc.is_valid(arr).to_numpy(zero_copy_only=False), dtype=bool)
    return mask


def _by_order(orders: np.ndarray, ok: np.ndarray) -> list[tuple[int, np.ndarray | slice]]:
    """``(order, rows)`` for each distinct valid order; all rows at once when it is one."""
    if not ok.any():
        return []
    first = int(orders[np.argmax(ok)])
    if ok.all() and (orders == first).all():
        return [(first, slice(None))]
    return [(int(v), ok & (orders == v)) for v in np.unique(orders[ok])]


def _result(values: np.ndarray, ok: np.ndarray) -> pa.Array:
    return pa.array(values) if ok.all() else pa.array(values, mask=~ok)


def ivo_healpix_index(order: pa.Array, ra: pa.Array, dec: pa.Array) -> pa.Array:
    """NESTED index of the cell of ``order`` holding each position (degrees)."""
    orders = _as_numpy(order, np.int64)
    lon = _as_numpy(ra, np.float64)
    lat = _as_numpy(dec, np.float64)
    ok = _valid(order, ra, dec) & (orders >= 0) & (orders <= MAX_ORDER)
    ok &= np.isfinite(lon) & np.isfinite(lat) & (np.abs(lat) <= 90.0)
    out = np.zeros(len(orders), dtype=np.int64)
    for value, rows in _by_order(orders, ok):
        cells = chp.lonlat_to_healpix(
            Longitude(lon[rows], "deg"),
            Latitude(lat[rows], "deg"),
            value,
            num_threads=1,
        )
        out[rows] = cells.astype(np.int64)
    return _result(out, ok)


_POINT = pa.struct([("ra", pa.float64()), ("dec", pa.float64())])


def ivo_healpix_center(order: pa.Array, index: pa.Array) -> pa.Array:
    """Centre (ICRS degrees) of each NESTED cell ``index`` at ``order``."""
    orders = _as_numpy(order, np.int64)
    pixels = _as_numpy(index, np.int64)
    ok = _valid(order, index) & (orders >= 0) & (orders <= MAX_ORDER) & (pixels >= 0)
    ok &= pixels < 12 * (4 ** np.clip(orders, 0, MAX_ORDER))
    ra = np.zeros(len(orders))
    dec = np.zeros(len(orders))
    for value, rows in _by_order(orders, ok):
        lon, lat = chp.healpix_to_lonlat(pixels[rows].astype(np.uint64), value, num_threads=1)
        ra[rows] = lon.to_value("deg")
        dec[rows] = lat.to_value("deg")
    mask = None if ok.all() else pa.array(~ok)
    return pa.StructArray.from_arrays([pa.array(ra), pa.array(dec)], fields=list(_POINT), mask=mask)
