"""HEALPix coverage of sky regions: cells, order-29 index ranges and HATS partitions."""

from __future__ import annotations

import dataclasses
import functools
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

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

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
    if padded >= 90.0:
        # mocpy's from_cone misses cells of cones this wide (at 150° it leaves out a base
        # cell the cone overlaps); such a cone covers half the sky or more: prune nothing.
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
    moc = _polygon_moc(radec[:, 0], radec[:, 1], order)
    # Cells touching the boundary only through rounding: one ring of neighbours covers them.
    return moc.add_neighbours()


def _polygon_moc(ra: FloatArray, dec: FloatArray, order: int) -> MOC:
    """``MOC.from_polygon`` without building astropy angles (as :func:`_cone_moc`).

    ``ra`` in [0, 360) and ``dec`` in [-90, 90], degrees, as :func:`xyz_to_radec` gives them:
    the public API would only wrap and check them, at about 0.1 ms for the astropy angles.
    The compiled function is called directly when present, and the public API otherwise
    (``tests/sky/test_coverage.py`` checks both give the same MOC).
    """
    compiled = getattr(mocpy_core, "from_polygon", None)
    lon = np.ascontiguousarray(ra, dtype=np.float64)
    lat = np.ascontiguousarray(dec, dtype=np.float64)
    if compiled is not None:
        try:
            return MOC(compiled(lon, lat, False, np.uint8(order)))
        except TypeError:  # a mocpy whose compiled signature changed
            pass
    return MOC.from_polygon(
        lon=Longitude(lon, unit=u.deg), lat=Latitude(lat, unit=u.deg), max_depth=order
    )


#: HEALPix base cells in the HEALPix projection plane (Calabretta & Roukema 2007: the plane in
#: which the cells of every order are squares standing on a corner), in units of π/4: the x
#: (longitude) and y of each base cell's centre.  y runs from -2 (south pole) to 2 (north
#: pole).  For |y| ≤ 1 the longitude is x and sin(dec) = 2y/3; in the polar caps (|y| > 1)
#: a point of base cell b has longitude ``x_b + (x - x_b) / σ`` with ``σ = 2 - |y|``.
_BASE_X = np.array([1, 3, 5, 7, 0, 2, 4, 6, 1, 3, 5, 7], dtype=np.float64)
_BASE_Y = np.array([1, 1, 1, 1, 0, 0, 0, 0, -1, -1, -1, -1], dtype=np.int64)
#: Orders up to this one have a table of every cell (order 6: 49 152 cells, 2.4 MB).
_TABLE_ORDER = 6
#: Orders gained per refinement step below the tables (16 children per kept cell).
_REFINE_STEP = 2
#: A range narrower than the sky in RA starts from the finest table whose declination band
#: holds at most this many cells, so that a narrow RA strip does not test a whole table.
_START_CELLS = 4096


@functools.lru_cache(maxsize=MAX_ORDER + 1)
def _row_decs(order: int) -> FloatArray:
    """Declination (degrees) of the rows ``y = -2 + j / 2**order`` of the HEALPix plane.

    A cell of this order whose row (see :class:`_OrderTable`) is ``j`` has its southern
    corner on row ``j`` and its northern corner on row ``j + 2``; declination grows with y, so
    the cell spans exactly the declinations from ``decs[j]`` to ``decs[j + 2]``.
    """
    y = np.arange(4 * 2**order + 1, dtype=np.float64) / 2.0**order - 2.0
    equatorial = np.degrees(np.arcsin(np.clip(2.0 * y / 3.0, -1.0, 1.0)))
    # 1 - |sin(dec)| = σ² / 3, written through the colatitude to stay exact near the poles.
    polar = np.sign(y) * (90.0 - 2.0 * np.degrees(np.arcsin((2.0 - np.abs(y)) / math.sqrt(6.0))))
    decs = np.maximum.accumulate(np.where(np.abs(y) <= 1.0, equatorial, polar))
    decs.flags.writeable = False
    return decs


def _cell_ra(
    base: IntArray, row: IntArray, diff: IntArray, order: int
) -> tuple[FloatArray, FloatArray]:
    """The exact RA interval ``[lo, lo + width]`` (degrees, ``lo`` in [-45, 360)) of cells.

    A cell is the square with corners ``(x ± h, y)`` and ``(x, y ± h)`` in the HEALPix plane
    (``h = 2**-order``; ``x = x_b + diff·h``, ``y = (row + 1)·h - 2``).  Its extreme
    longitudes are those of its east and west corners: in the equatorial zone the longitude
    is x; in a polar cap it is a ratio of affine functions of (x, y), whose extremes over a
    convex polygon lie at corners, and the northern and southern corners' longitudes lie
    between the eastern and western ones because the cell lies inside its base cell's
    triangle ``|x - x_b| ≤ σ``.  Cells touching a pole are given every RA (the pole has them
    all).  ``tests/sky/test_coverage.py`` checks the intervals against cdshealpix's cell
    boundaries.
    """
    h = 2.0**-order
    y = (row + 1).astype(np.float64) * h - 2.0
    sigma = np.minimum(1.0, 2.0 - np.abs(y))
    lo = 45.0 * (_BASE_X[base] + (diff - 1).astype(np.float64) * h / sigma)
    width = (90.0 * h) / sigma
    width[np.abs(y) + h >= 2.0] = 360.0
    return lo, width


@dataclasses.dataclass(frozen=True)
class _OrderTable:
    """Every cell of one order, sorted by row (so by declination), with its RA interval.

    A cell of base cell ``b`` with NESTED coordinates ``(ix, iy)`` (the even and odd bits of
    its index within ``b``) has ``row = (y_b + 1)·2**order + ix + iy`` and
    ``diff = ix - iy``.
    """

    nested: IntArray
    base: IntArray
    row: IntArray
    diff: IntArray
    ra_lo: FloatArray
    ra_width: FloatArray


@functools.lru_cache(maxsize=_TABLE_ORDER + 1)
def _order_table(order: int) -> _OrderTable:
    local = np.arange(4**order, dtype=np.int64)
    ix = np.zeros_like(local)
    iy = np.zeros_like(local)
    for k in range(order):
        ix |= ((local >> (2 * k)) & 1) << k
        iy |= ((local >> (2 * k + 1)) & 1) << k
    base = np.repeat(np.arange(12, dtype=np.int64), local.size)
    ix, iy = np.tile(ix, 12), np.tile(iy, 12)
    nested = (base << (2 * order)) | np.tile(local, 12)
    row = (_BASE_Y[base] + 1) * (1 << order) + ix + iy
    by_row = np.argsort(row, kind="stable")
    nested, base, row, diff = nested[by_row], base[by_row], row[by_row], (ix - iy)[by_row]
    table = _OrderTable(nested, base, row, diff, *_cell_ra(base, row, diff, order))
    for field in dataclasses.fields(table):
        getattr(table, field.name).flags.writeable = False
    return table


@functools.lru_cache(maxsize=_REFINE_STEP + 1)
def _child_offsets(levels: int) -> tuple[IntArray, IntArray, IntArray]:
    """Offsets of the ``4**levels`` descendants ``levels`` orders deeper of a cell: of the
    NESTED index, of the row and of ``diff`` (see :class:`_OrderTable`)."""
    side = np.arange(1 << levels, dtype=np.int64)
    dx, dy = (a.ravel() for a in np.meshgrid(side, side, indexing="ij"))
    nested = np.zeros_like(dx)
    for k in range(levels):
        nested |= (((dx >> k) & 1) << (2 * k)) | (((dy >> k) & 1) << (2 * k + 1))
    return nested, dx + dy, dx - dy


def _range_cells(region: RaDecRange, target: int) -> IntArray:
    """NESTED indexes of the order-``target`` cells whose RA/Dec box meets the range.

    Cells' boxes are exact (see :func:`_cell_ra` and :func:`_row_decs`), so these are all
    the cells the range touches, and the few whose box, but not the cell, meets it.
    """
    ra_min, ra_max = region.ra_min, region.ra_max
    full_ra = ra_max - ra_min >= 360.0
    span = 360.0 if full_ra else (ra_max - ra_min) % 360.0
    dec_lo, dec_hi = region.dec_min - _PAD, region.dec_max + _PAD

    def in_ra(lo: FloatArray, width: FloatArray) -> npt.NDArray[np.bool_]:
        # On the circle, [lo, lo + width] meets [ra_min, ra_min + span] when it starts inside
        # it or runs on through 360 into its start.
        offset = (lo - ra_min) % 360.0
        out: npt.NDArray[np.bool_] = (offset <= span + _PAD) | (offset + width >= 360.0 - _PAD)
        return out

    order = min(target, _TABLE_ORDER)
    while True:
        table = _order_table(order)
        decs = _row_decs(order)
        # Rows j whose cells' declinations [decs[j], decs[j + 2]] meet [dec_lo, dec_hi].
        first = int(np.searchsorted(decs, dec_lo, side="left")) - 2
        last = int(np.searchsorted(decs, dec_hi, side="right")) - 1
        start = int(np.searchsorted(table.row, first, side="left"))
        stop = int(np.searchsorted(table.row, last, side="right"))
        if full_ra or stop - start <= _START_CELLS or order == 0:
            break
        order -= 1
    nested, base = table.nested[start:stop], table.base[start:stop]
    row, diff = table.row[start:stop], table.diff[start:stop]
    if not full_ra:
        keep = in_ra(table.ra_lo[start:stop], table.ra_width[start:stop])
        nested, base, row, diff = nested[keep], base[keep], row[keep], diff[keep]
    while order < target and nested.size:
        levels = min(_REFINE_STEP, target - order)
        d_nested, d_row, d_diff = _child_offsets(levels)
        nested = ((nested[:, None] << (2 * levels)) | d_nested).ravel()
        row = ((row[:, None] << levels) + d_row).ravel()
        order += levels
        decs = _row_decs(order)
        keep = (decs[row] <= dec_hi) & (decs[row + 2] >= dec_lo)
        if not full_ra:
            base = np.repeat(base, d_nested.size)
            diff = ((diff[:, None] << levels) + d_diff).ravel()
            keep &= in_ra(*_cell_ra(base, row, diff, order))
            base, diff = base[keep], diff[keep]
        nested, row = nested[keep], row[keep]
    return nested


def _range(region: RaDecRange, max_order: int) -> MOC:
    """A conservative coverage of an RA/Dec range (``ra_min > ra_max`` wraps through 0).

    The coverage is made of the cells, at an order whose cells are about an eighth of the
    range, whose exact RA/Dec box meets the range; they are found in tables of every cell of
    orders up to 6 and refined two orders at a time below that, with no call into cdshealpix
    (whose every call costs 50 µs or more).
    (``MOC.from_zone`` was used before and missed cells that only partly overlap ranges
    touching RA 0.)
    """
    ra_min, ra_max = region.ra_min, region.ra_max
    dec_min, dec_max = region.dec_min, region.dec_max
    span = (ra_max - ra_min) % 360.0 if ra_max - ra_min < 360.0 else 360.0
    widest_dec = 0.0 if dec_min <= 0.0 <= dec_max else min(abs(dec_min), abs(dec_max))
    size = min(dec_max - dec_min, span * math.cos(math.radians(widest_dec)))
    # Refining cell by cell costs more than a coarser superset saves beyond order 10.
    target = min(_adaptive_order(size, max_order), 10)
    cells = _range_cells(region, target).astype(np.uint64)
    return MOC.from_healpix_cells(
        cells, np.full(cells.size, target, dtype=np.uint8), max_depth=max(target, 1)
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
