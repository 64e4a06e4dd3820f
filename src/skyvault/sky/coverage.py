"""HEALPix coverage of sky regions: cells, order-29 index ranges and HATS partitions."""

from __future__ import annotations

import math
from collections.abc import Sequence

import astropy.units as u
import numpy as np
import numpy.typing as npt
from astropy.coordinates import Angle, Latitude, Longitude
from cdshealpix import nested
from mocpy import MOC
from mocpy import mocpy as mocpy_core

from skyvault.errors import GeometryError
from skyvault.sky._vector import arc_angle, xyz_to_radec
from skyvault.sky.regions import Box, Circle, Point, Polygon, RaDecRange, Region

__all__ = [
    "HEALPIX29_ORDER",
    "MOC",
    "healpix29",
    "healpix29_ranges",
    "intersect",
    "partitions_overlapping",
    "region_coverage",
    "union",
]

#: The HEALPix order of the ``_healpix_29`` spatial index column of HATS catalogues.
HEALPIX29_ORDER = 29
#: Largest order a coverage may use (mocpy's limit).
MAX_ORDER = 29
#: Mean side of an order-0 HEALPix cell, degrees (sqrt(4π/12) rad).
_ORDER0_SIDE = math.degrees(math.sqrt(4.0 * math.pi / 12.0))
#: Angular padding (degrees) added to cones and zones so that rounding inside cdshealpix can
#: never drop a cell touched by the exact region.
_PAD = 1e-9


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


def _adaptive_order(size_deg: float, max_order: int) -> int:
    """An order whose cells are about an eighth of the region size, capped by ``max_order``.

    Finer cells would only multiply the work: the coverage is a coarse pruning step.
    """
    if not 0 <= max_order <= MAX_ORDER:
        raise GeometryError(f"max_order must lie in [0, {MAX_ORDER}], got {max_order}")
    if size_deg <= 0.0:
        return max_order
    order = math.floor(math.log2(8.0 * _ORDER0_SIDE / size_deg))
    return max(0, min(max_order, order))


def _full_sky(order: int) -> MOC:
    return MOC.from_healpix_cells(
        np.arange(12, dtype=np.uint64), np.zeros(12, dtype=np.uint8), max_depth=order
    )


def _cone(ra: float, dec: float, radius: float, max_order: int) -> MOC:
    order = _adaptive_order(2.0 * radius, max_order)
    padded = radius + _PAD + 1e-12 * radius
    if padded >= 180.0:
        return _full_sky(order)
    return _cone_moc(ra, dec, padded, order)


def _cone_moc(ra: float, dec: float, radius: float, order: int) -> MOC:
    """``MOC.from_cone`` without building astropy angles.

    ``MOC.from_cone`` only validates its astropy arguments and calls mocpy's compiled
    ``from_cone`` with the values in degrees; constructing the three angle objects costs
    about 0.13 ms, six times the cone computation, and a small cone search's whole budget
    is a few milliseconds.  The compiled function is called directly when present, and the
    public API otherwise (``tests/sky/test_coverage.py`` checks both give the same MOC).
    """
    compiled = getattr(mocpy_core, "from_cone", None)
    if compiled is not None:
        try:
            index = compiled(
                np.float64(ra % 360.0),
                np.float64(dec),
                np.float64(radius),
                np.uint8(order),
                delta_depth=np.uint8(2),
            )
            return MOC(index)
        except TypeError:  # a mocpy whose compiled signature changed
            pass
    return MOC.from_cone(
        lon=Longitude([ra], unit=u.deg),
        lat=Latitude([dec], unit=u.deg),
        radius=Angle(radius, unit=u.deg),
        max_depth=order,
        delta_depth=2,
    )


def _polygon(region: Polygon | Box, max_order: int) -> MOC:
    prepared = region.prepared
    size = 2.0 * max(math.degrees(arc_angle(prepared.centre, v)) for v in prepared.xyz)
    order = _adaptive_order(size, max_order)
    radec = np.array([xyz_to_radec(v) for v in prepared.xyz])
    moc = MOC.from_polygon(
        lon=Longitude(radec[:, 0], unit=u.deg),
        lat=Latitude(radec[:, 1], unit=u.deg),
        max_depth=order,
    )
    # Cells touching the boundary only through rounding: one ring of neighbours covers them.
    return moc.add_neighbours()


def _cells_near_range(
    cells: npt.NDArray[np.uint64], order: int, bounds: tuple[float, float, float, float]
) -> npt.NDArray[np.bool_]:
    """Which cells may touch the RA/Dec range (a superset: each cell is replaced by a disk)."""
    ra_min, ra_max, dec_min, dec_max = bounds
    lon, lat = nested.healpix_to_lonlat(cells, order)
    ra_c, dec_c = np.asarray(lon.deg), np.asarray(lat.deg)
    corners = nested.vertices(cells, order)
    c_ra, c_dec = np.radians(np.asarray(corners[0].deg)), np.radians(np.asarray(corners[1].deg))
    r0, d0 = np.radians(ra_c)[:, None], np.radians(dec_c)[:, None]
    cos_sep = np.sin(d0) * np.sin(c_dec) + np.cos(d0) * np.cos(c_dec) * np.cos(c_ra - r0)
    # The disk through the farthest corner, enlarged by half: HEALPix edges bulge little.
    radius = 1.5 * np.degrees(np.arccos(np.clip(cos_sep, -1.0, 1.0)).max(axis=1)) + 1e-9
    near = (dec_c - radius <= dec_max) & (dec_c + radius >= dec_min)
    polar = np.abs(dec_c) + radius >= 90.0
    width = np.degrees(
        np.arcsin(np.clip(np.sin(np.radians(radius)) / np.cos(np.radians(dec_c)), -1.0, 1.0))
    )
    span = (ra_max - ra_min) % 360.0 if ra_max - ra_min < 360.0 else 360.0
    offset = (ra_c - ra_min) % 360.0
    outside = np.minimum(offset - span, 360.0 - offset)
    in_ra = (offset <= span) | (outside <= width)
    out: npt.NDArray[np.bool_] = near & (polar | in_ra)
    return out


def _range(region: RaDecRange, max_order: int) -> MOC:
    """A conservative coverage of an RA/Dec range (``ra_min > ra_max`` wraps through 0).

    Cells are refined from order 0 down to an order whose cells are about an eighth of the
    range, keeping every cell whose enclosing disk meets the range.  (``MOC.from_zone`` was
    used before and missed cells that only partly overlap ranges touching RA 0.)
    """
    ra_min, ra_max = region.ra_min, region.ra_max
    dec_min, dec_max = region.dec_min, region.dec_max
    span = (ra_max - ra_min) % 360.0 if ra_max - ra_min < 360.0 else 360.0
    widest_dec = 0.0 if dec_min <= 0.0 <= dec_max else min(abs(dec_min), abs(dec_max))
    size = min(dec_max - dec_min, span * math.cos(math.radians(widest_dec)))
    # Refining cell by cell costs more than a coarser superset saves beyond order 10.
    target = min(_adaptive_order(size, max_order), 10)
    bounds = (ra_min, ra_max, dec_min, dec_max)
    cells = np.arange(12, dtype=np.uint64)
    order = 0
    while True:
        cells = cells[_cells_near_range(cells, order, bounds)]
        if order == target or cells.size == 0:
            break
        children = cells[:, None] * np.uint64(4) + np.arange(4, dtype=np.uint64)
        cells = np.asarray(children, dtype=np.uint64).ravel()
        order += 1
    return MOC.from_healpix_cells(
        cells, np.full(cells.size, order, dtype=np.uint8), max_depth=max(order, 1)
    )


def region_coverage(region: Region | RaDecRange, max_order: int) -> MOC:
    """A conservative HEALPix coverage (MOC) of a region: every point of it is covered.

    Parameters
    ----------
    region
        A point, circle, polygon, box or RA/Dec range.
    max_order
        The finest HEALPix order to use.  Small regions are covered at this order; larger
        ones at a coarser order (cells about an eighth of the region's size), which keeps
        the computation fast and the coverage short; coarser cells are still a superset.

    Returns
    -------
    mocpy.MOC
        The coverage.  It may include cells the region does not touch (false positives);
        it never misses a cell the region touches.

    Raises
    ------
    GeometryError
        When ``max_order`` lies outside [0, 29].
    """
    if isinstance(region, Point):
        return _cone(region.ra, region.dec, 0.0, max_order)
    if isinstance(region, Circle):
        return _cone(region.ra, region.dec, region.radius, max_order)
    if isinstance(region, RaDecRange):
        return _range(region, max_order)
    return _polygon(region, max_order)


def intersect(first: MOC, *others: MOC) -> MOC:
    """Coverage of an AND of constraints: the cells in every coverage."""
    return first.intersection(*others) if others else first


def union(first: MOC, *others: MOC) -> MOC:
    """Coverage of an OR of constraints: the cells in any coverage."""
    return first.union(*others) if others else first


def healpix29_ranges(coverage: MOC, max_ranges: int = 32) -> npt.NDArray[np.int64]:
    """Half-open ``[start, stop)`` intervals of ``_healpix_29`` values covering ``coverage``.

    A cell ``pix`` of order ``k`` covers ``[pix << 2(29 − k), (pix + 1) << 2(29 − k))``.
    Adjacent intervals are merged; while more than ``max_ranges`` remain, the smallest gaps
    are closed, so the result is always a superset of the coverage.

    Parameters
    ----------
    coverage
        The coverage to express.
    max_ranges
        The most intervals to return (at least 1).

    Returns
    -------
    numpy.ndarray
        Shape (n, 2), ``int64``, sorted, disjoint and non-adjacent; n ≤ ``max_ranges``.
    """
    if max_ranges < 1:
        raise GeometryError(f"max_ranges must be at least 1, got {max_ranges}")
    raw = np.asarray(coverage.to_depth29_ranges, dtype=np.uint64).astype(np.int64)
    if raw.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    raw = raw[np.argsort(raw[:, 0], kind="stable")]
    starts, stops = raw[:, 0], raw[:, 1]
    # Sorted disjoint intervals: a gap separates i and i+1 unless they touch.
    open_gap = starts[1:] > stops[:-1]
    if int(np.count_nonzero(open_gap)) + 1 > max_ranges:
        candidates = np.flatnonzero(open_gap)
        widths = starts[1:][candidates] - stops[:-1][candidates]
        widest = candidates[np.argsort(widths, kind="stable")[::-1][: max_ranges - 1]]
        open_gap = np.zeros_like(open_gap)
        open_gap[widest] = True
    cut = np.flatnonzero(open_gap)
    begin = np.concatenate([[0], cut + 1])
    end = np.concatenate([cut, [len(starts) - 1]])
    return np.stack([starts[begin], stops[end]], axis=1)


def partitions_overlapping(
    coverage: MOC | npt.NDArray[np.int64], partitions: Sequence[tuple[int, int]]
) -> list[int]:
    """Indexes of the HATS partitions ``(order, pixel)`` that the coverage touches.

    Works on order-29 intervals with ``searchsorted``, so thousands of partitions cost
    microseconds.

    Parameters
    ----------
    coverage
        A MOC, or intervals as returned by :func:`healpix29_ranges`.
    partitions
        ``(order, pixel)`` of each partition, NESTED scheme.

    Returns
    -------
    list of int
        Positions in ``partitions`` of the partitions that overlap the coverage, ascending.
    """
    ranges = healpix29_ranges(coverage, max_ranges=2**62) if isinstance(coverage, MOC) else coverage
    if len(partitions) == 0 or len(ranges) == 0:
        return []
    parts = np.asarray(partitions, dtype=np.int64).reshape(-1, 2)
    orders, pixels = parts[:, 0], parts[:, 1]
    if np.any((orders < 0) | (orders > MAX_ORDER)) or np.any(
        (pixels < 0) | (pixels >= 12 * (np.int64(4) ** orders))
    ):
        raise GeometryError(
            "partitions must be (order, pixel) with 0 <= order <= 29 and a valid pixel"
        )
    shift = 2 * (HEALPIX29_ORDER - orders)
    lo = pixels << shift
    hi = (pixels + 1) << shift
    starts = np.ascontiguousarray(ranges[:, 0])
    stops = np.ascontiguousarray(ranges[:, 1])
    # The last interval starting before the partition ends is the only candidate overlap.
    idx = np.searchsorted(starts, hi, side="left") - 1
    hit = (idx >= 0) & (stops[np.maximum(idx, 0)] > lo)
    return np.flatnonzero(hit).tolist()
