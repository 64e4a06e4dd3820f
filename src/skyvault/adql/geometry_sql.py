"""ADQL geometry in DuckDB SQL: geometry values as SQL parts, exact spherical predicates.

ADQL's geometries never become DuckDB values except in a select list.  While translating, a
geometry is a :class:`GeoSql`: its kind and the SQL expressions of its numbers (a POINT is
``(ra, dec)``, a CIRCLE ``(ra, dec, radius)``, a POLYGON its flat vertex list) and, when every
number is a constant, the :mod:`skyvault.sky.regions` region it denotes.  Predicates then
become arithmetic on those parts:

* a point in a constant region: :mod:`skyvault.sky.sql` (great-circle half-spaces for polygon
  edges and boxes, chord test for circles, declination prefilter), exact like
  :mod:`skyvault.sky.geometry`;
* a point in a circle whose centre or radius are columns: the great-circle distance (the
  ``atan2`` form of :func:`skyvault.sky.sql.distance_sql`) compared with the radius, or the
  haversine form with a declination band for a constant radius;
* circle in circle: ``d(c1, c2) + r1 <= r2``; intersecting circles: ``d(c1, c2) <= r1 + r2``;
* anything between constant regions: evaluated at translation time (a literal 1 or 0).

In a select list a geometry becomes a DALI array, a DuckDB ``DOUBLE[]``: ``[ra, dec]``,
``[ra, dec, r]``, ``[ra1, dec1, ...]`` (a BOX becomes the polygon of its corners).
"""

from __future__ import annotations

import dataclasses
import math

from skyvault.sky import geometry as sky_geometry
from skyvault.sky.regions import Box, Circle, Point, Region
from skyvault.sky.sql import (
    distance_sql,
    double_literal,
    point_in_region_sql,
    within_distance_sql,
)
from skyvault.sky.stcs import RELATION_FUNCTION

__all__ = [
    "GeoSql",
    "area_sql",
    "contains_sql",
    "dali_sql",
    "double_literal",
    "intersects_sql",
]

#: Margin (degrees) of the declination band in front of cross-match predicates.
BAND_MARGIN = 1e-9


@dataclasses.dataclass(frozen=True)
class GeoSql:
    """A geometry value during translation.

    Attributes
    ----------
    kind
        ``point``, ``circle``, ``polygon`` or ``box``.
    parts
        SQL expressions of its numbers, in ADQL argument order; empty for a stored polygon.
    region
        The region, when every number is a constant.
    whole
        SQL of a stored DALI array (a geometry column), else ``None``.
    """

    kind: str
    parts: tuple[str, ...]
    region: Region | None = None
    whole: str | None = None

    @classmethod
    def constant(cls, region: Region) -> GeoSql:
        """The geometry of a constant region."""
        if isinstance(region, Point):
            parts: tuple[float, ...] = (region.ra, region.dec)
            kind = "point"
        elif isinstance(region, Circle):
            parts, kind = (region.ra, region.dec, region.radius), "circle"
        elif isinstance(region, Box):
            parts, kind = (region.ra, region.dec, region.width, region.height), "box"
        else:
            parts, kind = tuple(region.to_dali()), "polygon"
        return cls(kind, tuple(double_literal(p) for p in parts), region)


def _as_double(sql: str) -> str:
    return f"CAST({sql} AS DOUBLE)"


def dali_sql(geo: GeoSql) -> str | None:
    """The DALI array (``DOUBLE[]``) of a geometry; ``None`` for a box built from columns."""
    if geo.whole is not None:
        return geo.whole
    if geo.region is not None:
        numbers = geo.region.to_dali()
        return f"[{', '.join(double_literal(v) for v in numbers)}]::DOUBLE[]"
    if geo.kind == "box":
        return None
    return f"list_value({', '.join(geo.parts)})"


def _centre_radius(geo: GeoSql) -> tuple[str, str, str]:
    if geo.kind == "point":
        return geo.parts[0], geo.parts[1], "0e0"
    return geo.parts[0], geo.parts[1], geo.parts[2]


def _constant_circle(geo: GeoSql) -> Circle | Point | None:
    return geo.region if isinstance(geo.region, (Circle, Point)) else None


def _point_in(point: GeoSql, region: GeoSql) -> str:
    ra, dec = point.parts
    if region.region is not None:
        return point_in_region_sql(ra, dec, region.region)
    cra, cdec, radius = _centre_radius(region)
    constant_radius = None
    if region.kind == "point":
        constant_radius = 0.0
    elif _is_number(radius):
        constant_radius = float(radius.strip("()"))
    if constant_radius is not None and constant_radius >= 0.0:
        return within_distance_sql(ra, dec, cra, cdec, constant_radius)
    return f"({distance_sql(ra, dec, cra, cdec)} <= {radius})"


def _is_number(sql: str) -> bool:
    try:
        float(sql.strip("()"))
    except ValueError:
        return False
    return True


def _region_sql(column: GeoSql, relation: str, other: GeoSql) -> str:
    """Whether the STC-S region of ``column`` (a region column) stands in ``relation``
    (:data:`skyvault.sky.stcs.RELATIONS`) to ``other``: the engine's region function."""
    assert column.whole is not None
    if other.whole is not None and not other.parts:  # a stored DALI polygon
        values = f"CAST({other.whole} AS DOUBLE[])"
    elif other.region is not None:  # constant: literals already
        values = f"[{', '.join(other.parts)}]::DOUBLE[]"
    else:
        values = f"list_value({', '.join(_as_double(p) for p in other.parts)})"
    return f"{RELATION_FUNCTION}({column.whole}, '{relation}', '{other.kind}', {values})"


def contains_sql(a: GeoSql, b: GeoSql) -> str:
    """Boolean SQL for ADQL ``CONTAINS(a, b)`` (forms the checker accepts)."""
    if a.kind == "region":
        return _region_sql(a, "within", b)
    if b.kind == "region":
        return _region_sql(b, "contains", a)
    if a.region is not None and b.region is not None:
        return "true" if sky_geometry.contains(a.region, b.region) else "false"
    if a.kind == "point":
        return _point_in(a, b)
    # circle in circle (the checker refuses the other non-constant forms)
    ra1, dec1, r1 = _centre_radius(a)
    ra2, dec2, r2 = _centre_radius(b)
    return f"({distance_sql(ra1, dec1, ra2, dec2)} + {r1} <= {r2})"


def intersects_sql(a: GeoSql, b: GeoSql) -> str:
    """Boolean SQL for ADQL ``INTERSECTS(a, b)`` (forms the checker accepts)."""
    if a.kind == "region":
        return _region_sql(a, "intersects", b)
    if b.kind == "region":
        return _region_sql(b, "intersects", a)
    if a.region is not None and b.region is not None:
        return "true" if sky_geometry.intersects(a.region, b.region) else "false"
    if a.kind == "point":
        return _point_in(a, b)
    if b.kind == "point":
        return _point_in(b, a)
    ra1, dec1, r1 = _centre_radius(a)
    ra2, dec2, r2 = _centre_radius(b)
    return f"({distance_sql(ra1, dec1, ra2, dec2)} <= {r1} + {r2})"


def area_sql(geo: GeoSql) -> str:
    """SQL of ADQL ``AREA`` in square degrees."""
    if geo.region is not None:
        return double_literal(sky_geometry.area(geo.region))
    if geo.kind == "point":
        return "0e0"
    radius = geo.parts[2]
    sq = (180.0 / math.pi) ** 2
    return f"({double_literal(2.0 * math.pi * sq)} * (1e0 - cos(radians({radius}))))"


def centroid(geo: GeoSql) -> GeoSql:
    """ADQL ``CENTROID``: a point (constant regions exactly, circles at their centre)."""
    if geo.region is not None:
        return GeoSql.constant(sky_geometry.centroid(geo.region))
    return GeoSql("point", geo.parts[:2])


def band_sql(dec1: str, dec2: str, radius: float) -> str:
    """A declination band ``dec1`` within ``radius`` of ``dec2`` (true of any close pair)."""
    margin = double_literal(radius + BAND_MARGIN)
    return f"({dec1} BETWEEN {dec2} - {margin} AND {dec2} + {margin})"


__all__ += ["band_sql", "centroid"]
