"""Immutable sky regions (ADQL POINT, CIRCLE, POLYGON, BOX and RA/Dec ranges) in degrees.

Every region validates itself on construction and raises
:class:`~skyvault.errors.GeometryError` with a message a person can act on.  Right ascensions
are wrapped into [0, 360); declinations must lie in [-90, 90].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar, TypeAlias

import numpy as np

from skyvault.errors import GeometryError
from skyvault.sky._polygon import PreparedPolygon, prepare_polygon
from skyvault.sky._vector import FloatArray, east_north, radec_to_xyz, unit, xyz_to_radec

__all__ = [
    "Box",
    "Circle",
    "Point",
    "Polygon",
    "RaDecRange",
    "Region",
    "region_from_dali",
]


def _finite(name: str, value: float) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise GeometryError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise GeometryError(f"{name} must be a finite number, got {value!r}")
    return out


def _ra(value: float, name: str = "right ascension") -> float:
    ra = _finite(name, value) % 360.0
    return 0.0 if ra == 360.0 else ra


def _dec(value: float, name: str = "declination") -> float:
    dec = _finite(name, value)
    if not -90.0 <= dec <= 90.0:
        raise GeometryError(f"{name} {dec!r}° lies outside [-90°, 90°]")
    return dec


@dataclass(frozen=True)
class Point:
    """A position on the sky (ADQL ``POINT``).

    Parameters
    ----------
    ra
        Right ascension in degrees (wrapped into [0, 360)).
    dec
        Declination in degrees, in [-90, 90].
    """

    ra: float
    dec: float
    xtype: ClassVar[str] = "point"

    def __post_init__(self) -> None:
        object.__setattr__(self, "ra", _ra(self.ra))
        object.__setattr__(self, "dec", _dec(self.dec))

    def to_vector(self) -> FloatArray:
        """Unit vector (x, y, z) of the position."""
        return radec_to_xyz(self.ra, self.dec)

    def to_dali(self) -> list[float]:
        """DALI ``point`` array: ``[ra, dec]``."""
        return [self.ra, self.dec]


@dataclass(frozen=True)
class Circle:
    """A cone on the sky (ADQL ``CIRCLE``): every point within ``radius`` of the centre.

    Parameters
    ----------
    ra, dec
        Centre in degrees.
    radius
        Angular radius in degrees, in [0, 180]; the boundary belongs to the circle.
    """

    ra: float
    dec: float
    radius: float
    xtype: ClassVar[str] = "circle"

    def __post_init__(self) -> None:
        object.__setattr__(self, "ra", _ra(self.ra, "circle centre right ascension"))
        object.__setattr__(self, "dec", _dec(self.dec, "circle centre declination"))
        radius = _finite("circle radius", self.radius)
        if radius < 0.0:
            raise GeometryError(f"circle radius must not be negative, got {radius!r}°")
        if radius > 180.0:
            raise GeometryError(f"circle radius must be at most 180°, got {radius!r}°")
        object.__setattr__(self, "radius", radius)

    @property
    def centre(self) -> Point:
        """The centre as a :class:`Point`."""
        return Point(self.ra, self.dec)

    def to_vector(self) -> FloatArray:
        """Unit vector of the centre."""
        return radec_to_xyz(self.ra, self.dec)

    def to_dali(self) -> list[float]:
        """DALI ``circle`` array: ``[ra, dec, radius]``."""
        return [self.ra, self.dec, self.radius]


@dataclass(frozen=True)
class Polygon:
    """A polygon whose edges are minor great-circle arcs (ADQL ``POLYGON``).

    The last vertex joins the first.  Polygons may be non-convex; they must be simple (no edge
    meets a non-adjacent edge), and fit within an open hemisphere.  Of the two regions the
    boundary separates, the polygon is the smaller one, whatever the order of the vertices
    (clockwise and counter-clockwise lists describe the same polygon).  The boundary belongs to
    the polygon.

    Parameters
    ----------
    vertices
        ``(ra, dec)`` pairs in degrees; at least three, without repeating the first at the end.
    """

    vertices: tuple[tuple[float, float], ...]
    xtype: ClassVar[str] = "polygon"
    _prepared: PreparedPolygon = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            pairs = [(float(ra), float(dec)) for ra, dec in self.vertices]
        except (TypeError, ValueError):
            raise GeometryError("polygon vertices must be (ra, dec) pairs of numbers") from None
        clean = tuple(
            (
                _ra(ra, f"polygon vertex {i} right ascension"),
                _dec(dec, f"polygon vertex {i} declination"),
            )
            for i, (ra, dec) in enumerate(pairs, start=1)
        )
        object.__setattr__(self, "vertices", clean)
        if len(clean) < 3:
            raise GeometryError(f"a polygon needs at least 3 vertices, got {len(clean)}")
        xyz = radec_to_xyz([v[0] for v in clean], [v[1] for v in clean])
        object.__setattr__(self, "_prepared", prepare_polygon(xyz))

    @classmethod
    def from_flat(cls, values: Sequence[float]) -> Polygon:
        """Build from ``[ra1, dec1, ra2, dec2, ...]`` (the DALI and ADQL argument order)."""
        if len(values) % 2:
            raise GeometryError(
                f"polygon coordinates come in (ra, dec) pairs; got {len(values)} numbers"
            )
        return cls(tuple((values[i], values[i + 1]) for i in range(0, len(values), 2)))

    def to_vectors(self) -> FloatArray:
        """Unit vectors of the vertices, shape (n, 3), in the order given."""
        return radec_to_xyz([v[0] for v in self.vertices], [v[1] for v in self.vertices])

    @property
    def prepared(self) -> PreparedPolygon:
        """The validated, counter-clockwise, convex-decomposed form used by the predicates."""
        return self._prepared

    def to_dali(self) -> list[float]:
        """DALI ``polygon`` array: ``[ra1, dec1, ra2, dec2, ...]`` in the order given."""
        return [c for vertex in self.vertices for c in vertex]


@dataclass(frozen=True)
class Box:
    """An ADQL 2.1 ``BOX``: a special case of a polygon with four great-circle sides.

    ADQL 2.1 (section 4.2.6, following STC Box) defines the box by "a cross centered on the
    center position and with arms extending, parallel to the coordinate axes at the center
    position, for half the respective sizes on either side.  The box's sides are line
    segments or great circles intersecting the arms of the cross in its end points at right
    angles with the arms."  So the arms are great-circle arcs leaving the centre towards
    local east/west (``width / 2`` each) and north/south (``height / 2`` each), and every
    side is a great circle perpendicular to its arm at the arm's end.  Equivalently, in the
    gnomonic (tangent-plane) projection about the centre the box is the rectangle
    ``|ξ| ≤ tan(width / 2)``, ``|η| ≤ tan(height / 2)``.

    This is *not* an RA/Dec range: the north and south sides are great circles, not parallels
    of declination, and ``width`` is an arc on the sky, not a difference of right ascension.
    Use :class:`RaDecRange` for ranges of coordinates.

    Parameters
    ----------
    ra, dec
        Centre in degrees.
    width
        Full extent along the east-west arm, degrees, in (0, 180).
    height
        Full extent along the north-south arm, degrees, in (0, 180).
    """

    ra: float
    dec: float
    width: float
    height: float
    xtype: ClassVar[str] = "polygon"
    _prepared: PreparedPolygon = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ra", _ra(self.ra, "box centre right ascension"))
        object.__setattr__(self, "dec", _dec(self.dec, "box centre declination"))
        for name in ("width", "height"):
            value = _finite(f"box {name}", getattr(self, name))
            if not 0.0 < value < 180.0:
                raise GeometryError(
                    f"box {name} must be greater than 0° and less than 180°, got {value!r}°"
                )
            object.__setattr__(self, name, value)
        object.__setattr__(self, "_prepared", prepare_polygon(self._corner_vectors()))

    def _corner_vectors(self) -> FloatArray:
        centre, east, north = east_north(self.ra, self.dec)
        tw = math.tan(math.radians(self.width) / 2.0)
        th = math.tan(math.radians(self.height) / 2.0)
        # Counter-clockwise seen from outside the sphere: NE, NW, SW, SE.
        return np.array(
            [
                unit(centre + sx * tw * east + sy * th * north)
                for sx, sy in ((1, 1), (-1, 1), (-1, -1), (1, -1))
            ]
        )

    def inward_normals(self) -> FloatArray:
        """Unit normals of the four sides, pointing inside: the box is ``p · n ≥ 0`` for all.

        Order: east, west, north, south side.
        """
        centre, east, north = east_north(self.ra, self.dec)
        a = math.radians(self.width) / 2.0
        b = math.radians(self.height) / 2.0
        return np.array(
            [
                math.sin(a) * centre - math.cos(a) * east,
                math.sin(a) * centre + math.cos(a) * east,
                math.sin(b) * centre - math.cos(b) * north,
                math.sin(b) * centre + math.cos(b) * north,
            ]
        )

    def corners(self) -> list[tuple[float, float]]:
        """The four corners ``(ra, dec)``: north-east, north-west, south-west, south-east."""
        return [xyz_to_radec(v) for v in self._corner_vectors()]

    def to_polygon(self) -> Polygon:
        """The same region as a :class:`Polygon` of its corners."""
        return Polygon(tuple(self.corners()))

    @property
    def prepared(self) -> PreparedPolygon:
        """The box as a prepared polygon (one convex piece)."""
        return self._prepared

    def to_dali(self) -> list[float]:
        """DALI has no box type: the ``polygon`` array of the corners (see :meth:`corners`)."""
        return [c for corner in self.corners() for c in corner]


@dataclass(frozen=True)
class RaDecRange:
    """A range of coordinates: ``ra`` in [ra_min, ra_max] and ``dec`` in [dec_min, dec_max].

    When ``ra_min > ra_max`` the range wraps through RA 0 (e.g. 350 to 10).  ``ra_min = 0``
    and ``ra_max = 360`` cover every right ascension.  The sides of constant declination are
    small circles, not great circles.

    Parameters
    ----------
    ra_min, ra_max
        Right ascension limits in degrees, each in [0, 360].
    dec_min, dec_max
        Declination limits in degrees, ``-90 <= dec_min <= dec_max <= 90``.
    """

    ra_min: float
    ra_max: float
    dec_min: float
    dec_max: float

    def __post_init__(self) -> None:
        for name in ("ra_min", "ra_max"):
            value = _finite(name, getattr(self, name))
            if not 0.0 <= value <= 360.0:
                raise GeometryError(f"{name} must lie in [0°, 360°], got {value!r}°")
            object.__setattr__(self, name, value)
        dec_min = _dec(self.dec_min, "dec_min")
        dec_max = _dec(self.dec_max, "dec_max")
        if dec_min > dec_max:
            raise GeometryError(f"dec_min {dec_min!r}° is above dec_max {dec_max!r}°")
        object.__setattr__(self, "dec_min", dec_min)
        object.__setattr__(self, "dec_max", dec_max)

    @property
    def wraps(self) -> bool:
        """Whether the right ascension range passes through 0."""
        return self.ra_min > self.ra_max


Region: TypeAlias = Point | Circle | Polygon | Box


def region_from_dali(xtype: str, values: Sequence[float]) -> Point | Circle | Polygon:
    """Build a region from a DALI xtype name and its array of numbers.

    Raises
    ------
    GeometryError
        On an unknown xtype or a wrong count of numbers.
    """
    kind = xtype.lower()
    if kind == "point":
        if len(values) != 2:
            raise GeometryError(f"a DALI point has 2 numbers, got {len(values)}")
        return Point(values[0], values[1])
    if kind == "circle":
        if len(values) != 3:
            raise GeometryError(f"a DALI circle has 3 numbers, got {len(values)}")
        return Circle(values[0], values[1], values[2])
    if kind == "polygon":
        return Polygon.from_flat(values)
    raise GeometryError(f"unknown DALI geometry xtype {xtype!r}: expected point, circle, polygon")
