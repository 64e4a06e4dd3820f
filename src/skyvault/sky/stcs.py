"""Region columns: STC-S strings (ObsCore's ``s_region``) and the predicates over them.

A column whose xtype is ``adql:REGION`` holds an STC-S region as text (``POLYGON ICRS
ra1 dec1 ra2 dec2 ...``, ``CIRCLE ICRS ra dec r``, ``BOX ICRS ra dec w h``,
``POSITION ICRS ra dec``; the frame is ICRS or omitted, positions in degrees), as ObsCore
services publish footprints.  :func:`parse_stcs` turns one into a
:mod:`skyvault.sky.regions` region; :func:`region_relation` is the vectorised function the
engine registers as :data:`RELATION_FUNCTION`, which the translator calls for ADQL
``CONTAINS``/``INTERSECTS`` between such a column and another geometry
(:mod:`skyvault.adql.geometry_sql`).  Its answers are those of :mod:`skyvault.sky.geometry`
(exact spherical predicates); a value that is not a region it can read is NULL (no match).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from skyvault.errors import GeometryError
from skyvault.sky import geometry
from skyvault.sky._polygon import HEMISPHERE_MARGIN
from skyvault.sky._vector import ON_CIRCLE_EPS, FloatArray, radec_to_xyz
from skyvault.sky.geometry import BOUNDARY_EPS
from skyvault.sky.regions import Box, Circle, Point, Polygon, Region

__all__ = [
    "REGION_XTYPE",
    "RELATIONS",
    "RELATION_FUNCTION",
    "bounding_circle",
    "internal_udfs",
    "parse_stcs",
    "region_relation",
]

REGION_XTYPE = "adql:REGION"
RELATION_FUNCTION = "__sv_region_relation"
#: What :func:`region_relation` tests of ``(column region, other)``: ``intersects`` —
#: they share a point; ``contains`` — the column's region holds the other;
#: ``within`` — the column's region lies inside the other (ADQL ``CONTAINS(column, other)``).
RELATIONS = ("intersects", "contains", "within")
_BoolArray = np.ndarray[Any, np.dtype[np.bool_]]

#: Words STC-S may put between the shape and the numbers (frame, reference position, flavor).
_FRAMES = {"ICRS", "FK5", "J2000", "UNKNOWNFRAME", "GEOCENTER", "BARYCENTER", "TOPOCENTER",
           "UNKNOWNREFPOS", "SPHERICAL2"}  # fmt: skip


def _words(text: str) -> tuple[str, list[float]]:
    """The shape (upper case) and the numbers of an STC-S string, the frame words skipped:
    :func:`parse_stcs`'s reading, which the batch preparation of polygons shares."""
    words = text.split()
    if not words:
        raise GeometryError("an empty STC-S region")
    shape = words[0].upper()
    rest = words[1:]
    while rest and rest[0].upper() in _FRAMES:
        if rest[0].upper() == "FK5":
            raise GeometryError("only ICRS STC-S regions are read")
        rest = rest[1:]
    try:
        numbers = [float(w) for w in rest]
    except ValueError:
        raise GeometryError(f"unreadable STC-S region {text[:80]!r}") from None
    return shape, numbers


@functools.lru_cache(maxsize=65536)
def parse_stcs(text: str) -> Region:
    """The region of an STC-S string (see the module docstring).

    Raises
    ------
    GeometryError
        When ``text`` is not one of the shapes above, in ICRS (or no frame).
    """
    shape, numbers = _words(text)
    if shape == "POLYGON":
        return Polygon.from_flat(numbers)
    if shape == "CIRCLE" and len(numbers) == 3:
        return Circle(*numbers)
    if shape == "BOX" and len(numbers) == 4:
        return Box(*numbers)
    if shape == "POSITION" and len(numbers) == 2:
        return Point(*numbers)
    raise GeometryError(f"unsupported STC-S region {text[:80]!r}")


@functools.lru_cache(maxsize=1024)
def _other(kind: str, params: tuple[float, ...]) -> Region:
    if kind == "point":
        return Point(*params)
    if kind == "circle":
        return Circle(*params)
    if kind == "box":
        return Box(*params)
    return Polygon.from_flat(params)


def _relation(region: Region, relation: str, other: Region) -> bool:
    if relation == "intersects":
        return geometry.intersects(region, other)
    if relation == "contains":
        return geometry.contains(other, region)
    return geometry.contains(region, other)


@dataclass(frozen=True, slots=True)
class _Footprint:
    """What the vectorised tests need of a column's region: its bounding circle (unit
    vector of the centre, radius in radians) and, for a polygon or a box, the vertices
    (counter-clockwise unit vectors) and the inward edge normals of the convex pieces of its
    prepared form.  ``region`` is the region where it was parsed; otherwise
    :meth:`shape` parses ``text``, for the rows the vectorised tests leave undecided."""

    text: str
    centre: tuple[float, float, float]
    radius: float
    vertices: FloatArray | None
    pieces: tuple[FloatArray, ...]
    region: Region | None

    def shape(self) -> Region:
        return self.region if self.region is not None else parse_stcs(self.text)


@functools.lru_cache(maxsize=65536)
def _parsed(text: str) -> _Footprint | None:
    """The footprint of an STC-S string parsed and prepared on its own (None when it
    cannot be read)."""
    try:
        region = parse_stcs(text)
    except GeometryError:
        return None
    centre, radius = _bound(region)
    if isinstance(region, Polygon | Box):
        prepared = region.prepared
        return _Footprint(text, centre, radius, prepared.xyz, prepared.pieces, region)
    return _Footprint(text, centre, radius, None, (), region)


#: Polygons of up to this many vertices are prepared in batches (more are rare in
#: footprints, and the batch's convexity test grows with the square of the vertex count).
_BATCH_VERTICES = 64
#: Rows x vertices² of one batch (a few arrays of this many float64s).
_BATCH_CELLS = 1 << 18


def _footprints(texts: Sequence[str]) -> list[_Footprint | None]:
    """:func:`_parsed` of every text, except that polygons are prepared all at once
    (:func:`_prepare_polygons`) where they can be: the same footprints.

    The words are read row by row with :func:`parse_stcs`'s own reading (``str.split``,
    ``float``: about 2 µs a row), so that what is a polygon, and its numbers, cannot differ
    from it; only the preparation, ~0.1 ms a row in Python, is done in numpy."""
    out: list[_Footprint | None] = [None] * len(texts)
    groups: dict[int, tuple[list[int], list[list[float]]]] = {}
    for k, text in enumerate(texts):
        try:
            shape, numbers = _words(text)
        except GeometryError:
            continue  # parse_stcs raises the same: not a region (None)
        if shape == "POLYGON" and 6 <= len(numbers) <= 2 * _BATCH_VERTICES and not len(numbers) % 2:
            rows, flat = groups.setdefault(len(numbers), ([], []))
            rows.append(k)
            flat.append(numbers)
        else:
            out[k] = _parsed(text)
    for group, numbers_of in groups.values():
        n = len(numbers_of[0]) // 2
        step = max(1, _BATCH_CELLS // (n * n))  # _prepare_polygons holds (rows, n, n) arrays
        for first in range(0, len(group), step):
            rows = group[first : first + step]
            _add_prepared(out, texts, rows, np.array(numbers_of[first : first + step]))
    return out


def _add_prepared(
    out: list[_Footprint | None], texts: Sequence[str], rows: list[int], flat: FloatArray
) -> None:
    """``out[k]`` for the polygons ``texts[k]`` (k in ``rows``) whose numbers are ``flat``."""
    ok, vertices, normals, centres, radii = _prepare_polygons(flat)
    centre_list, radius_list = centres.tolist(), radii.tolist()
    for j, k in enumerate(rows):
        if ok[j]:
            x, y, z = centre_list[j]
            out[k] = _Footprint(
                texts[k], (x, y, z), radius_list[j], vertices[j], (normals[j],), None
            )
        else:
            out[k] = _parsed(texts[k])


#: How far inside (sine of the angle) the great circle of every edge each vertex not on it
#: must lie for :func:`_prepare_polygons` to vouch for a polygon: far above the tolerances
#: of the per-row preparation (``STRAIGHT``, its crossing screen's ~4e-13), so that the
#: per-row preparation cannot decide otherwise.
_CONVEX_MARGIN = 1e-9


def _prepare_polygons(
    flat: FloatArray,
) -> tuple[_BoolArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """The per-row preparation (``Polygon.from_flat(...).prepared`` and :func:`_bound`) of
    ``m`` polygons of ``n`` vertices at once (``flat``: (m, 2n), ``ra1 dec1 ...`` degrees),
    for those it can vouch for: valid numbers, every vertex well inside the great circle of
    every edge not its own (strictly convex, hence simple, no straight vertex), in the open
    hemisphere about the vertices' mean (the centre the per-row search finds first).  For
    them that preparation keeps every vertex, orients them by the same sign and merges its
    ear-clipped triangles back into one convex piece whose normals are the edge normals.

    Returns ``ok`` (m,) and, valid where ok: the counter-clockwise vertices (m, n, 3), the
    inward edge normals (m, n, 3), the bounding circle's centre (m, 3) and radius (m,).
    Rows not ok (concave, degenerate, out of range, ...) are for the per-row preparation.

    Hand-written: the per-row preparation is Python over each vertex (~0.1 ms a
    footprint), the largest cost of a region query over ``s_region`` (issue 13), and
    ObsCore footprints are nearly all convex quadrilaterals."""
    n = flat.shape[1] // 2
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        ra = flat[:, 0::2] % 360.0
        ra = np.where(ra == 360.0, 0.0, ra)
        dec = flat[:, 1::2]
        ok = np.isfinite(flat).all(axis=1) & ((dec >= -90.0) & (dec <= 90.0)).all(axis=1)
        xyz = radec_to_xyz(ra, dec)
        total = xyz.sum(axis=1)
        centre = total / np.linalg.norm(total, axis=1)[:, None]
        ok &= np.einsum("mnk,mk->mn", xyz, centre).min(axis=1) > HEMISPHERE_MARGIN
        following = np.roll(xyz, -1, axis=1)
        normals = np.cross(xyz + following, following - xyz)  # as _polygon._edge_normal
        normals /= np.linalg.norm(normals, axis=2)[..., None]
        side = np.einsum("mik,mjk->mij", normals, xyz)  # vertex j against edge i's circle
        own = np.eye(n, dtype=bool) | np.roll(np.eye(n, dtype=bool), 1, axis=1)
        sign = np.sign(side[:, 0, 2])
        inside = np.where(own, np.inf, side * sign[:, None, None]).min(axis=(1, 2))
        ok &= inside > _CONVEX_MARGIN
        # the orientation the per-row preparation takes: the sign of the area of the
        # gnomonic projection about the centre (the same as the sign above, for these)
        helper = np.where(np.abs(centre[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
        e1 = np.cross(centre, helper)
        e1 /= np.linalg.norm(e1, axis=1)[:, None]
        e2 = np.cross(centre, e1)
        w = np.einsum("mnk,mk->mn", xyz, centre)
        x = np.einsum("mnk,mk->mn", xyz, e1) / w
        y = np.einsum("mnk,mk->mn", xyz, e2) / w
        area = (x * np.roll(y, -1, axis=1) - np.roll(x, -1, axis=1) * y).sum(axis=1)
        ok &= np.sign(area) == sign
        flip = (sign < 0)[:, None, None]
        # reversed, edge b -> a has the normal -(normal of a -> b), to the bit
        vertices = np.where(flip, xyz[:, ::-1], xyz)
        normals = np.where(flip, -normals, normals)
        cosine = np.clip(np.einsum("mnk,mk->mn", vertices, centre).min(axis=1), -1.0, 1.0)
        radius = np.arccos(cosine) * (1 + 1e-9) + math.radians(1e-9)
    return ok, vertices, normals, centre, radius


@functools.lru_cache(maxsize=1024)
def _other_bound(
    kind: str, params: tuple[float, ...]
) -> tuple[Region, tuple[float, float, float], float]:
    region = _other(kind, params)
    return (region, *_bound(region))


def _bound(region: Region) -> tuple[tuple[float, float, float], float]:
    if isinstance(region, Point | Circle):
        centre, radius = bounding_circle(region)
        x, y, z = (float(v) for v in centre.to_vector())
        return (x, y, z), math.radians(radius)
    # A polygon's (or box's) vertices all lie within 90 degrees of the centre of its
    # hemisphere, which its preparation has found: a cap about it holding every vertex
    # holds the polygon, as bounding_circle's does (without computing the centroid, which
    # cost more than the parse; issue 13).
    prepared = region.prepared
    cosine = max(-1.0, min(1.0, float((prepared.xyz @ prepared.centre).min())))
    radius = math.acos(cosine)
    x, y, z = (float(v) for v in prepared.centre)
    return (x, y, z), radius * (1 + 1e-9) + math.radians(1e-9)


def _other_of(
    kind: str, values: Sequence[float | None]
) -> tuple[Region, tuple[float, float, float], float] | None:
    """:func:`_other_bound`, or None when a number is NULL or not finite or the geometry
    is not valid."""
    if any(v is None or not math.isfinite(v) for v in values):
        return None
    try:
        return _other_bound(kind, tuple(float(v) for v in values if v is not None))
    except GeometryError:
        return None


def region_relation(
    regions: pa.Array, relations: pa.Array, kinds: pa.Array, params: pa.Array
) -> pa.Array:
    """Per row, whether the STC-S region of ``regions`` stands in ``relation`` to the
    geometry of ``kind`` (``point``, ``circle``, ``box``, ``polygon``) with numbers
    ``params`` (ADQL argument order); NULL where a value is NULL or unreadable.

    Rows whose bounding circles are apart (by more than a rounding margin) are false at
    once, without the exact predicate: every relation needs the two to meet.
    """
    texts = regions.to_pylist()
    rel = relations.to_pylist()
    kind = kinds.to_pylist()
    numbers = params.to_pylist()
    out: list[bool | None] = [None] * len(texts)
    rows: list[int] = []
    theirs: list[tuple[Region, tuple[float, float, float], float]] = []
    known: dict[tuple[Any, ...], tuple[Region, tuple[float, float, float], float] | None] = {}
    for i, text in enumerate(texts):
        values: Sequence[float | None] | None = numbers[i]
        if text is None or rel[i] is None or kind[i] is None or values is None:
            continue
        key = (kind[i], *values)  # the other geometry is most often one constant
        if key in known:
            other = known[key]
        else:
            other = known[key] = _other_of(str(kind[i]), values)
        if other is not None:
            rows.append(i)
            theirs.append(other)
    footprints = _footprints([texts[i] for i in rows])
    rows = [i for i, f in zip(rows, footprints, strict=True) if f is not None]
    theirs = [t for t, f in zip(theirs, footprints, strict=True) if f is not None]
    mine = [f for f in footprints if f is not None]
    if not rows:
        return pa.array(out, type=pa.bool_())
    a = np.array([m.centre for m in mine])
    b = np.array([t[1] for t in theirs])
    reach = np.array([m.radius + t[2] for m, t in zip(mine, theirs, strict=True)])
    apart = np.arccos(np.clip(np.einsum("ij,ij->i", a, b), -1.0, 1.0))
    near = apart <= reach + 1e-9
    decided = _polygons_meet_circles(rows, mine, theirs, rel, near)
    for k, i in enumerate(rows):
        if k in decided:
            out[i] = decided[k]
            continue
        try:
            out[i] = bool(near[k]) and _relation(mine[k].shape(), str(rel[i]), theirs[k][0])
        except GeometryError:
            out[i] = None
    return pa.array(out, type=pa.bool_())


#: Rounding allowance (radians, or cosines) of :func:`_polygons_meet_circles`: an answer
#: within it of a threshold is left to the exact predicate (the arithmetic here differs from
#: sky/geometry.py's by far less: unit vectors, a few operations).
_GUARD = 1e-12


def _polygons_meet_circles(
    rows: list[int],
    mine: list[_Footprint],
    theirs: list[tuple[Region, tuple[float, float, float], float]],
    rel: list[Any],
    near: np.ndarray[Any, np.dtype[np.bool_]],
) -> dict[int, bool]:
    """``INTERSECTS(polygon, circle)`` for every near row at once (k -> answer), as
    :func:`geometry.intersects` answers it: the circle's centre in one of the polygon's
    convex pieces, or within the radius of one of its edges.  Rows whose answer lies within
    :data:`_GUARD` of a threshold are left out, for the exact predicate to decide."""
    ks: list[int] = []
    centres: list[tuple[float, float, float]] = []
    radii: list[float] = []
    starts: list[FloatArray] = []
    edge_row: list[int] = []
    normals: list[FloatArray] = []
    normal_piece: list[int] = []
    piece_row: list[int] = []
    for k, i in enumerate(rows):
        footprint, other = mine[k], theirs[k][0]
        if not (near[k] and rel[i] == "intersects" and isinstance(other, Circle)):
            continue
        if footprint.vertices is None:  # a point or a circle
            continue
        n = len(ks)
        ks.append(k)
        centres.append(theirs[k][1])
        radii.append(theirs[k][2])
        starts.append(footprint.vertices)
        edge_row.extend([n] * len(footprint.vertices))
        for piece in footprint.pieces:
            normals.append(piece)
            normal_piece.extend([len(piece_row)] * len(piece))
            piece_row.append(n)
    if not ks:
        return {}
    with np.errstate(invalid="ignore", divide="ignore"):
        p_row = np.array(centres)
        r = np.array(radii) + ON_CIRCLE_EPS
        # every polygon edge a -> b (the vertices in order, cyclically)
        a = np.concatenate(starts)
        e_row = np.array(edge_row)
        # each vertex's successor within its own polygon (the last one's is the first)
        following = np.arange(1, len(a) + 1)
        ends = np.flatnonzero(np.diff(e_row, append=-1))
        following[ends] = np.concatenate([[0], ends[:-1] + 1])
        b = a[following]
        p = p_row[e_row]
        n_e = np.cross(a + b, b - a)
        n_e /= np.linalg.norm(n_e, axis=1)[:, None]
        pn = np.einsum("ij,ij->i", p, n_e)
        on_arc = (np.einsum("ij,ij->i", p, np.cross(n_e, a)) >= 0.0) & (
            np.einsum("ij,ij->i", p, np.cross(b, n_e)) >= 0.0
        )
        along = np.linalg.norm(p - pn[:, None] * n_e, axis=1)
        to_circle = np.arctan2(np.abs(pn), along)

        def angle(u: FloatArray) -> FloatArray:
            out: FloatArray = np.arctan2(
                np.linalg.norm(np.cross(p, u), axis=1), np.einsum("ij,ij->i", p, u)
            )
            return out

        distance = np.where(on_arc, to_circle, np.minimum(angle(a), angle(b)))
        nearest = np.full(len(ks), np.inf)
        np.minimum.at(nearest, e_row, distance)
        bad = np.zeros(len(ks), dtype=bool)
        np.logical_or.at(bad, e_row, np.isnan(distance))
        # the centre against every convex piece's edge planes
        normal_of = np.array(normal_piece)
        dots = np.einsum("ij,ij->i", np.concatenate(normals), p_row[np.array(piece_row)][normal_of])
        pieces = len(piece_row)
        low = np.full(pieces, np.inf)
        np.minimum.at(low, normal_of, dots)
        surely_in_piece = low >= -BOUNDARY_EPS + _GUARD
        surely_out_piece = low < -BOUNDARY_EPS - _GUARD
        surely_in = np.zeros(len(ks), dtype=bool)
        np.logical_or.at(surely_in, np.array(piece_row), surely_in_piece)
        surely_out = np.ones(len(ks), dtype=bool)
        np.logical_and.at(surely_out, np.array(piece_row), surely_out_piece)
    yes = ~bad & (surely_in | (nearest < r - _GUARD))
    no = ~bad & surely_out & (nearest > r + _GUARD)
    return {k: bool(yes[j]) for j, k in enumerate(ks) if yes[j] or no[j]}


def bounding_circle(region: Region) -> tuple[Point, float]:
    """A circle (centre, radius in degrees) holding ``region``: a polygon's or box's
    centroid and its farthest vertex (180: no useful circle, when that passes 90 degrees,
    beyond which a cap would not hold the edges between its vertices)."""
    if isinstance(region, Point):
        return region, 0.0
    if isinstance(region, Circle):
        return region.centre, region.radius
    centre = geometry.centroid(region)
    cosines = region.prepared.xyz @ centre.to_vector()
    radius = math.degrees(math.acos(max(-1.0, min(1.0, float(cosines.min())))))
    return centre, (radius * (1 + 1e-9) + 1e-9 if radius < 90.0 else 180.0)


def internal_udfs() -> list[tuple[str, Any, list[Any], Any]]:
    """The engine's own Python functions (not callable from ADQL), as the sandbox
    registers them: name, function, DuckDB argument types, result type."""
    return [
        (
            RELATION_FUNCTION,
            region_relation,
            ["VARCHAR", "VARCHAR", "VARCHAR", "DOUBLE[]"],
            "BOOLEAN",
        )
    ]
