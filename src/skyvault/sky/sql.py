"""DuckDB SQL expressions for the spherical predicates, exact like :mod:`skyvault.sky.geometry`.

Every generator takes SQL expressions (column references or literals) as strings and returns
a SQL expression built from plain arithmetic and ``sin``/``cos``/``atan2``/``radians``, so
that DuckDB evaluates it vectorised.  Constant regions are compiled ahead: their great-circle
normals, centres and thresholds become double literals printed with round-trip precision.

Positions are turned into unit vectors ``(x, y, z)`` and each predicate is a sign test on a
dot product or a comparison of chord lengths: the same formulas as the numpy predicates, so
both agree except for points within rounding (~1e-14°) of a boundary.  Region predicates
carry a conservative declination prefilter (``dec BETWEEN ...`` with a 1e-9° margin) that
never changes the result but lets DuckDB skip Parquet row groups by their statistics.
"""

from __future__ import annotations

import math

from skyvault.sky._vector import FloatArray
from skyvault.sky.geometry import BOUNDARY_EPS, dec_range
from skyvault.sky.regions import Box, Circle, Polygon, RaDecRange, Region

__all__ = [
    "distance_sql",
    "double_literal",
    "point_in_box_sql",
    "point_in_circle_sql",
    "point_in_polygon_sql",
    "point_in_range_sql",
    "point_in_region_sql",
    "within_distance_sql",
]

#: Margin (degrees) of the declination prefilters: far above rounding, far below any use.
PREFILTER_MARGIN = 1e-9


def double_literal(value: float) -> str:
    """A DOUBLE literal that round-trips exactly (DuckDB reads ``0.5`` as DECIMAL).

    Finite values are printed with ``repr`` and an exponent (``0.5e0``); infinities and NaN,
    which have no SQL literal, are the casts ``CAST('inf' AS DOUBLE)``, ``CAST('-inf' AS
    DOUBLE)`` and ``CAST('nan' AS DOUBLE)``.  The only double literal writer: the ADQL
    translation and the engine use this one.
    """
    text = repr(float(value))
    if not math.isfinite(value):
        return f"CAST('{text}' AS DOUBLE)"
    if "e" not in text:
        text += "e0"
    return f"({text})" if text.startswith("-") else text


def _unit_vector(ra: str, dec: str) -> tuple[str, str, str]:
    cos_dec = f"cos(radians({dec}))"
    return (
        f"({cos_dec} * cos(radians({ra})))",
        f"({cos_dec} * sin(radians({ra})))",
        f"sin(radians({dec}))",
    )


def _dot(xyz: tuple[str, str, str], vec: FloatArray) -> str:
    x, y, z = xyz
    a, b, c = (double_literal(v) for v in vec[:3])
    return f"({x} * {a} + {y} * {b} + {z} * {c})"


def _dec_prefilter(dec: str, lo: float, hi: float) -> str | None:
    lo_m, hi_m = lo - PREFILTER_MARGIN, hi + PREFILTER_MARGIN
    if lo_m <= -90.0 and hi_m >= 90.0:
        return None
    return f"({dec}) BETWEEN {double_literal(lo_m)} AND {double_literal(hi_m)}"


def _with_prefilter(dec: str, region: Region, exact: str) -> str:
    lo, hi = dec_range(region)
    prefilter = _dec_prefilter(dec, lo, hi)
    return f"({prefilter} AND {exact})" if prefilter else f"({exact})"


def distance_sql(ra1: str, dec1: str, ra2: str, dec2: str) -> str:
    """SQL for ADQL ``DISTANCE``: great-circle distance in degrees.

    The ``atan2`` (Vincenty) form, stable from micro-arcseconds to antipodes.
    """
    p1, p2 = f"radians({dec1})", f"radians({dec2})"
    dl = f"(radians({ra2}) - radians({ra1}))"
    num = (
        f"sqrt(power(cos({p2}) * sin({dl}), 2) + "
        f"power(cos({p1}) * sin({p2}) - sin({p1}) * cos({p2}) * cos({dl}), 2))"
    )
    den = f"(sin({p1}) * sin({p2}) + cos({p1}) * cos({p2}) * cos({dl}))"
    return f"degrees(atan2({num}, {den}))"


def within_distance_sql(ra1: str, dec1: str, ra2: str, dec2: str, radius: float | str) -> str:
    """SQL for ``DISTANCE(POINT(ra1, dec1), POINT(ra2, dec2)) <= radius`` (cross-match).

    Both positions may be columns.  For a constant radius up to 90° it compares haversines,
    ``sin²(Δδ/2) + cos δ1 cos δ2 sin²(Δα/2) <= sin²(r/2)``, well conditioned for small
    separations, behind a declination band ``|δ1 − δ2| <= r`` (true of any pair within ``r``)
    that DuckDB can turn into a range join.  A larger or non-constant radius uses
    :func:`distance_sql`.
    """
    if isinstance(radius, str):
        return f"({distance_sql(ra1, dec1, ra2, dec2)} <= ({radius}))"
    r = float(radius)
    if r > 90.0:
        return f"({distance_sql(ra1, dec1, ra2, dec2)} <= {double_literal(r)})"
    limit = math.sin(math.radians(r) / 2.0) ** 2
    hav = (
        f"(power(sin((radians({dec2}) - radians({dec1})) / 2), 2) + "
        f"cos(radians({dec1})) * cos(radians({dec2})) * "
        f"power(sin((radians({ra2}) - radians({ra1})) / 2), 2))"
    )
    band = f"abs(({dec1}) - ({dec2})) <= {double_literal(r + PREFILTER_MARGIN)}"
    return f"({band} AND {hav} <= {double_literal(limit)})"


def point_in_circle_sql(ra: str, dec: str, circle: Circle) -> str:
    """SQL for ``CONTAINS(POINT(ra, dec), circle)`` with a constant circle.

    Chord test ``|p − c|² <= (2 sin(r/2))²``; circles over 90° test the antipodal chord.
    """
    xyz = _unit_vector(ra, dec)
    c = circle.to_vector()
    if circle.radius <= 90.0:
        centre, limit = c, (2.0 * math.sin(math.radians(circle.radius) / 2.0)) ** 2
        op = "<="
    else:
        centre, limit = -c, (2.0 * math.sin(math.radians(180.0 - circle.radius) / 2.0)) ** 2
        op = ">="
    chord2 = " + ".join(
        f"({axis} - {double_literal(value)}) * ({axis} - {double_literal(value)})"
        for axis, value in zip(xyz, centre, strict=True)
    )
    return _with_prefilter(dec, circle, f"({chord2}) {op} {double_literal(limit)}")


def _halfspaces(xyz: tuple[str, str, str], normals: FloatArray) -> str:
    return " AND ".join(f"{_dot(xyz, n)} >= {double_literal(-BOUNDARY_EPS)}" for n in normals)


def point_in_polygon_sql(ra: str, dec: str, polygon: Polygon) -> str:
    """SQL for ``CONTAINS(POINT(ra, dec), polygon)`` with a constant polygon.

    The polygon is decomposed into convex pieces (ear clipping, then merged while convex);
    each piece is an AND of great-circle half-spaces ``x·nx + y·ny + z·nz >= 0`` and the
    polygon is their OR.  A diagonal shared by two pieces uses exactly negated normals, so a
    point on it is in at least one of them.
    """
    xyz = _unit_vector(ra, dec)
    pieces = [f"({_halfspaces(xyz, normals)})" for normals in polygon.prepared.pieces]
    return _with_prefilter(dec, polygon, " OR ".join(pieces))


def point_in_box_sql(ra: str, dec: str, box: Box) -> str:
    """SQL for ``CONTAINS(POINT(ra, dec), box)``: four great-circle half-spaces (ADQL BOX)."""
    return _with_prefilter(dec, box, _halfspaces(_unit_vector(ra, dec), box.inward_normals()))


def point_in_range_sql(ra: str, dec: str, rng: RaDecRange) -> str:
    """SQL for an RA/Dec range (limits included; ``ra_min > ra_max`` wraps through 0).

    ``ra`` is expected in [0, 360), as stored by ingest.
    """
    dec_part = f"({dec}) BETWEEN {double_literal(rng.dec_min)} AND {double_literal(rng.dec_max)}"
    if rng.ra_max - rng.ra_min >= 360.0:
        return f"({dec_part})"
    if rng.wraps:
        ra_part = (
            f"(({ra}) >= {double_literal(rng.ra_min)} OR ({ra}) <= {double_literal(rng.ra_max)})"
        )
    else:
        ra_part = f"({ra}) BETWEEN {double_literal(rng.ra_min)} AND {double_literal(rng.ra_max)}"
    return f"({dec_part} AND {ra_part})"


def point_in_region_sql(ra: str, dec: str, region: Region | RaDecRange) -> str:
    """SQL for ``CONTAINS(POINT(ra, dec), region)``, dispatching on the region type.

    A :class:`Point` region matches only the identical position (a circle of radius 0).
    """
    if isinstance(region, Circle):
        return point_in_circle_sql(ra, dec, region)
    if isinstance(region, Polygon):
        return point_in_polygon_sql(ra, dec, region)
    if isinstance(region, Box):
        return point_in_box_sql(ra, dec, region)
    if isinstance(region, RaDecRange):
        return point_in_range_sql(ra, dec, region)
    return point_in_circle_sql(ra, dec, Circle(region.ra, region.dec, 0.0))
