"""HEALPix coverage of sky regions: cells, order-29 index ranges and HATS partitions."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import numpy.typing as npt
from astropy.coordinates import Latitude, Longitude
from cdshealpix import nested

from skyvault.errors import GeometryError

__all__ = ["HEALPIX29_ORDER", "healpix29"]

#: The HEALPix order of the ``_healpix_29`` spatial index column of HATS catalogues.
HEALPIX29_ORDER = 29


def healpix29(
    ra: npt.ArrayLike, dec: npt.ArrayLike, *, num_threads: int = 2
) -> npt.NDArray[np.int64]:
    """Compute the ``_healpix_29`` index (NESTED scheme, order 29) of sky positions.

    Parameters
    ----------
    ra
        Right ascensions in degrees; any finite value (wrapped into [0, 360)).
    dec
        Declinations in degrees, in [-90, 90]; broadcast against ``ra``.
    num_threads
        Threads used by cdshealpix (0: as many as logical CPUs).

    Returns
    -------
    numpy.ndarray
        The order-29 NESTED HEALPix index of each position, as ``int64``, with the broadcast
        shape of ``ra`` and ``dec``.

    Raises
    ------
    GeometryError
        When a coordinate is not finite or a declination lies outside [-90, 90].
    """
    ra_arr, dec_arr = np.broadcast_arrays(
        np.asarray(ra, dtype=np.float64), np.asarray(dec, dtype=np.float64)
    )
    shape = ra_arr.shape
    ra_flat = np.ascontiguousarray(ra_arr).ravel()
    dec_flat = np.ascontiguousarray(dec_arr).ravel()
    if not (np.all(np.isfinite(ra_flat)) and np.all(np.isfinite(dec_flat))):
        raise GeometryError(
            "right ascension and declination must be finite numbers",
            hint="remove or fix rows with NaN or infinite coordinates",
        )
    if np.any(np.abs(dec_flat) > 90.0):
        bad = float(dec_flat[np.argmax(np.abs(dec_flat))])
        raise GeometryError(f"declination {bad!r}° lies outside [-90°, 90°]")
    if ra_flat.size == 0:
        return np.zeros(shape, dtype=np.int64)
    cells = nested.lonlat_to_healpix(
        Longitude(ra_flat, unit=u.deg),
        Latitude(dec_flat, unit=u.deg),
        HEALPIX29_ORDER,
        num_threads=num_threads,
    )
    return np.asarray(cells, dtype=np.uint64).astype(np.int64).reshape(shape)
