"""Exact spherical predicates and measures: distances, containment, intersection, area.

Everything works on unit vectors with great-circle edges; nothing is planar.  Positions are in
degrees.  Boundaries belong to their regions (ADQL: "in, or on, the boundary").  Point
predicates are vectorised over numpy arrays of positions; region-region predicates take
single regions.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from skyvault.errors import GeometryError
from skyvault.sky._polygon import PreparedPolygon
from skyvault.sky._vector import (
    ON_CIRCLE_EPS,
    FloatArray,
    arc_angle,
    arc_crossings,
    det3,
    distance_to_arc,
    edge_normal,
    on_arc,
    radec_to_xyz,
    slerp_mid,
    unit,
    xyz_to_radec,
)
from skyvault.sky.regions import Box, Circle, Point, Polygon, RaDecRange, Region

__all__ = [
    "angular_distance",
    "area",
    "centroid",
    "contains",
    "contains_points",
    "dec_range",
    "intersects",
    "point_in_box",
    "point_in_circle",
    "point_in_polygon",
    "point_in_range",
]

BoolArray = npt.NDArray[np.bool_]
SQDEG_PER_SR = (180.0 / math.pi) ** 2
#: Half-space tests accept ``p · n >= -BOUNDARY_EPS`` (~6e-14°), so that points computed to lie
#: on an edge, a vertex or a shared diagonal are inside despite rounding (ADQL: the boundary
#: belongs to the region).
BOUNDARY_EPS = 1e-15


def angular_distance(
    ra1: npt.ArrayLike, dec1: npt.ArrayLike, ra2: npt.ArrayLike, dec2: npt.ArrayLike
) -> FloatArray:
    """Great-circle distance in degrees between positions given in degrees.

    Uses the ``atan2`` (Vincenty) form, accurate from micro-arcseconds up to antipodal pairs
    (the ``acos`` form loses precision near 0° and the haversine form near 180°).

    Parameters
    ----------
    ra1, dec1
        First positions, degrees.
    ra2, dec2
        Second positions, degrees; broadcast against the first.

    Returns
    -------
    numpy.ndarray
        Distances in degrees, in [0, 180].
    """
    lam1 = np.radians(np.asarray(ra1, dtype=np.float64))
    phi1 = np.radians(np.asarray(dec1, dtype=np.float64))
    lam2 = np.radians(np.asarray(ra2, dtype=np.float64))
    phi2 = np.radians(np.asarray(dec2, dtype=np.float64))
    dlam = lam2 - lam1
    sin_dl, cos_dl = np.sin(dlam), np.cos(dlam)
    s1, c1 = np.sin(phi1), np.cos(phi1)
    s2, c2 = np.sin(phi2), np.cos(phi2)
    num = np.hypot(c2 * sin_dl, c1 * s2 - s1 * c2 * cos_dl)
    den = s1 * s2 + c1 * c2 * cos_dl
    out: FloatArray = np.degrees(np.arctan2(num, den))
    return out


def point_in_circle(ra: npt.ArrayLike, dec: npt.ArrayLike, circle: Circle) -> BoolArray:
    """Whether each position lies in (or on) the circle.

    Compares chord lengths, ``|p − c|² ≤ (2 sin(r/2))²``, which is well conditioned for radii
    up to 90°; larger circles test the complement: ``|p + c|² ≥ (2 sin((180° − r)/2))²``.
    """
    p = radec_to_xyz(ra, dec)
    c = circle.to_vector()
    if circle.radius <= 90.0:
        limit = (2.0 * math.sin(math.radians(circle.radius) / 2.0)) ** 2
        out: BoolArray = np.sum((p - c) ** 2, axis=-1) <= limit
        return out
    limit = (2.0 * math.sin(math.radians(180.0 - circle.radius) / 2.0)) ** 2
    out = np.sum((p + c) ** 2, axis=-1) >= limit
    return out


def _in_prepared(p: FloatArray, prepared: PreparedPolygon) -> BoolArray:
    inside = np.zeros(p.shape[:-1], dtype=bool)
    for normals in prepared.pieces:
        inside |= np.all(p @ normals.T >= -BOUNDARY_EPS, axis=-1)
    return inside


def point_in_polygon(ra: npt.ArrayLike, dec: npt.ArrayLike, polygon: Polygon) -> BoolArray:
    """Whether each position lies in (or on) the polygon.

    The polygon is the union of convex pieces, each the intersection of the hemispheres
    ``p · n ≥ 0`` bounded by its edges' great circles.
    """
    return _in_prepared(radec_to_xyz(ra, dec), polygon.prepared)


def point_in_box(ra: npt.ArrayLike, dec: npt.ArrayLike, box: Box) -> BoolArray:
    """Whether each position lies in (or on) the ADQL box (four great-circle sides)."""
    p = radec_to_xyz(ra, dec)
    out: BoolArray = np.all(p @ box.inward_normals().T >= -BOUNDARY_EPS, axis=-1)
    return out


def point_in_range(ra: npt.ArrayLike, dec: npt.ArrayLike, rng: RaDecRange) -> BoolArray:
    """Whether each position lies in the RA/Dec range (limits included, RA may wrap)."""
    ra_w = np.mod(np.asarray(ra, dtype=np.float64), 360.0)
    dec_a = np.asarray(dec, dtype=np.float64)
    in_dec = (dec_a >= rng.dec_min) & (dec_a <= rng.dec_max)
    if rng.ra_max - rng.ra_min >= 360.0:
        in_ra = np.ones_like(ra_w, dtype=bool)
    elif rng.wraps:
        in_ra = (ra_w >= rng.ra_min) | (ra_w <= rng.ra_max)
    else:
        in_ra = (ra_w >= rng.ra_min) & (ra_w <= rng.ra_max)
    if rng.ra_max == 360.0:
        in_ra |= ra_w == 0.0
    out: BoolArray = in_ra & in_dec
    return out


def contains_points(
    region: Region | RaDecRange, ra: npt.ArrayLike, dec: npt.ArrayLike
) -> BoolArray:
    """Vectorised ``CONTAINS(POINT(ra, dec), region)``.

    A :class:`Point` region contains only the identical position (a circle of radius 0).
    """
    if isinstance(region, Circle):
        return point_in_circle(ra, dec, region)
    if isinstance(region, Polygon):
        return point_in_polygon(ra, dec, region)
    if isinstance(region, Box):
        return point_in_box(ra, dec, region)
    if isinstance(region, RaDecRange):
        return point_in_range(ra, dec, region)
    out: BoolArray = np.radians(angular_distance(ra, dec, region.ra, region.dec)) <= ON_CIRCLE_EPS
    return out


# --- region-region predicates --------------------------------------------------------------


def _edges(prepared: PreparedPolygon) -> list[tuple[FloatArray, FloatArray]]:
    v = prepared.xyz
    return [(v[i], v[(i + 1) % len(v)]) for i in range(len(v))]


def _vec_in(p: FloatArray, region: Region) -> bool:
    if isinstance(region, Point | Circle):
        return _vec_in_circle(p, region)
    return bool(_in_prepared(p[None, :], region.prepared)[0])


def _vec_in_circle(p: FloatArray, circle: Point | Circle) -> bool:
    radius = circle.radius if isinstance(circle, Circle) else 0.0
    return arc_angle(unit(p), circle.to_vector()) <= math.radians(radius) + ON_CIRCLE_EPS


def _min_edge_distance(p: FloatArray, prepared: PreparedPolygon) -> float:
    return min(distance_to_arc(p, a, b) for a, b in _edges(prepared))


def _circle_meets_polygon(centre: FloatArray, radius: float, prepared: PreparedPolygon) -> bool:
    """Closed cap (radius in radians) against closed polygon."""
    if bool(_in_prepared(centre[None, :], prepared)[0]):
        return True
    return _min_edge_distance(centre, prepared) <= radius + ON_CIRCLE_EPS


def _polygons_meet(a: PreparedPolygon, b: PreparedPolygon) -> bool:
    for p0, p1 in _edges(a):
        for q0, q1 in _edges(b):
            if arc_crossings(p0, p1, q0, q1):
                return True
    return bool(_in_prepared(a.xyz[:1], b)[0] or _in_prepared(b.xyz[:1], a)[0])


def _as_circle(region: Point | Circle) -> tuple[FloatArray, float]:
    radius = region.radius if isinstance(region, Circle) else 0.0
    return region.to_vector(), math.radians(radius)


def intersects(a: Region, b: Region) -> bool:
    """ADQL ``INTERSECTS(a, b)``: whether the two closed regions share at least one point.

    A :class:`Point` argument is read as ``CONTAINS(point, other)``, as ADQL 2.1 asks of
    servers for backwards compatibility.
    """
    if isinstance(a, Point):
        return contains(a, b)
    if isinstance(b, Point):
        return contains(b, a)
    if isinstance(a, Circle) and isinstance(b, Circle):
        if a.radius + b.radius >= 180.0:
            return True
        distance = arc_angle(a.to_vector(), b.to_vector())
        return distance <= math.radians(a.radius + b.radius) + ON_CIRCLE_EPS
    if isinstance(a, Circle):
        assert not isinstance(b, Circle | Point)
        return _circle_meets_polygon(a.to_vector(), math.radians(a.radius), b.prepared)
    if isinstance(b, Circle):
        return _circle_meets_polygon(b.to_vector(), math.radians(b.radius), a.prepared)
    return _polygons_meet(a.prepared, b.prepared)


def _polygon_within_polygon(a: PreparedPolygon, b: PreparedPolygon) -> bool:
    """Every point of ``a`` in ``b``: each edge of ``a`` is cut where it meets the boundary of
    ``b``; every vertex and every piece between cuts (its midpoint) must be in ``b``."""
    if not bool(np.all(_in_prepared(a.xyz, b))):
        return False
    for p0, p1 in _edges(a):
        cuts = [p0, p1]
        for q0, q1 in _edges(b):
            cuts.extend(arc_crossings(p0, p1, q0, q1))
        along = sorted(cuts, key=lambda x: arc_angle(p0, x))
        mids = np.array([slerp_mid(along[i], along[i + 1]) for i in range(len(along) - 1)])
        if len(mids) and not bool(np.all(_in_prepared(mids, b))):
            return False
    return True


def contains(a: Region, b: Region) -> bool:
    """ADQL ``CONTAINS(a, b)``: whether every point of ``a`` lies in (or on) ``b``.

    The argument order is ADQL's: the first argument is the one that is contained.
    """
    if isinstance(b, Point):
        if isinstance(a, Polygon | Box):
            return False
        centre, radius = _as_circle(a)
        return radius == 0.0 and _vec_in_circle(centre, b)
    if isinstance(a, Point):
        return _vec_in(a.to_vector(), b)
    if isinstance(b, Circle):
        if b.radius >= 180.0:
            return True
        if isinstance(a, Circle):
            distance = arc_angle(a.to_vector(), b.to_vector())
            return distance + math.radians(a.radius) <= math.radians(b.radius) + ON_CIRCLE_EPS
        prepared = a.prepared
        if b.radius <= 90.0:  # a cap no larger than a hemisphere is convex
            return all(_vec_in_circle(v, b) for v in prepared.xyz)
        # Otherwise a misses the open complementary cap around the antipode.
        anti = -b.to_vector()
        hole = math.radians(180.0 - b.radius)
        if bool(_in_prepared(anti[None, :], prepared)[0]):
            return False
        return _min_edge_distance(anti, prepared) >= hole - ON_CIRCLE_EPS
    if isinstance(a, Circle):
        centre = a.to_vector()
        if not bool(_in_prepared(centre[None, :], b.prepared)[0]):
            return False
        return _min_edge_distance(centre, b.prepared) >= math.radians(a.radius) - ON_CIRCLE_EPS
    return _polygon_within_polygon(a.prepared, b.prepared)


# --- measures ------------------------------------------------------------------------------


def _triangle_area(a: FloatArray, b: FloatArray, c: FloatArray) -> float:
    """Area in steradians (Van Oosterom-Strackee), accurate for tiny triangles."""
    num = abs(det3(a, b, c))
    den = 1.0 + float(np.dot(a, b) + np.dot(b, c) + np.dot(c, a))
    return 2.0 * math.atan2(num, den)


def _fan(prepared: PreparedPolygon) -> list[tuple[FloatArray, FloatArray, FloatArray]]:
    v = prepared.xyz
    out = []
    for cycle in prepared.piece_vertices:
        for k in range(1, len(cycle) - 1):
            out.append((v[cycle[0]], v[cycle[k]], v[cycle[k + 1]]))
    return out


def area(region: Region | RaDecRange) -> float:
    """Area in square degrees (what ADQL ``AREA`` returns); 0 for a point."""
    if isinstance(region, Point):
        return 0.0
    if isinstance(region, Circle):
        sr = 4.0 * math.pi * math.sin(math.radians(region.radius) / 2.0) ** 2
    elif isinstance(region, RaDecRange):
        span = (region.ra_max - region.ra_min) % 360.0
        if region.ra_max - region.ra_min >= 360.0:
            span = 360.0
        sr = math.radians(span) * (
            math.sin(math.radians(region.dec_max)) - math.sin(math.radians(region.dec_min))
        )
    else:
        sr = sum(_triangle_area(a, b, c) for a, b, c in _fan(region.prepared))
    return sr * SQDEG_PER_SR


#: Triangles with edges shorter than this (radians) use the vertex-mean centroid, whose error
#: (third order in the size) is then below the rounding error of the exact edge formula.
_SMALL_TRIANGLE = 1e-4


def _triangle_moment(a: FloatArray, b: FloatArray, c: FloatArray) -> FloatArray:
    """First moment ∫ x dA over a counter-clockwise spherical triangle."""
    size = max(arc_angle(a, b), arc_angle(b, c), arc_angle(c, a))
    if size < _SMALL_TRIANGLE:
        moment: FloatArray = _triangle_area(a, b, c) * unit(a + b + c)
        return moment
    # Stokes: ∫ x dA = ½ Σ (edge length) × (unit normal of the edge's great circle).
    moment = 0.5 * sum(
        (arc_angle(p, q) * edge_normal(p, q) for p, q in ((a, b), (b, c), (c, a))),
        np.zeros(3),
    )
    return moment


def centroid(region: Region) -> Point:
    """ADQL ``CENTROID``: the centre of mass of the region's area, projected onto the sphere.

    A point's centroid is the point; a circle's is its centre.

    Raises
    ------
    GeometryError
        Never for valid regions (polygons fit in a hemisphere, so their moment is non-zero).
    """
    if isinstance(region, Point):
        return region
    if isinstance(region, Circle):
        return region.centre
    moment = sum((_triangle_moment(a, b, c) for a, b, c in _fan(region.prepared)), np.zeros(3))
    if float(np.linalg.norm(moment)) == 0.0:  # pragma: no cover - excluded by validation
        raise GeometryError("the region has no centroid")
    ra, dec = xyz_to_radec(moment)
    return Point(ra, dec)


def dec_range(region: Region) -> tuple[float, float]:
    """Smallest and largest declination (degrees) reached by any point of the region.

    For polygons and boxes this accounts for edges bulging beyond their vertices (a great
    circle arc reaches its extreme latitude between its ends) and for contained poles.
    """
    if isinstance(region, Point):
        return region.dec, region.dec
    if isinstance(region, Circle):
        return max(-90.0, region.dec - region.radius), min(90.0, region.dec + region.radius)
    prepared = region.prepared
    zs = [float(v[2]) for v in prepared.xyz]
    z_axis = np.array([0.0, 0.0, 1.0])
    for a, b in _edges(prepared):
        n = edge_normal(a, b)
        top = z_axis - n[2] * n
        if float(np.linalg.norm(top)) < 1e-15:
            continue  # the edge lies on the equator-like circle around the pole
        top = unit(top)
        for extreme in (top, -top):
            if on_arc(extreme, a, b, eps=0.0):
                zs.append(float(extreme[2]))
    lo = math.degrees(math.asin(max(-1.0, min(zs))))
    hi = math.degrees(math.asin(min(1.0, max(zs))))
    if bool(_in_prepared(z_axis[None, :], prepared)[0]):
        hi = 90.0
    if bool(_in_prepared(-z_axis[None, :], prepared)[0]):
        lo = -90.0
    return lo, hi
