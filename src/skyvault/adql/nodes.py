"""sqlglot node types for the ADQL constructs that sqlglot has no node for.

Geometry functions, ``IN_UNIT``, ``TRUNCATE`` and calls of registered user-defined functions
each get their own class so the translator can find them with ``tree.find_all(...)``.  All
are ``sqlglot.exp.Func`` subclasses whose arguments are kept as written, in ``expressions``.
"""

from __future__ import annotations

from typing import ClassVar

from sqlglot import exp

__all__ = [
    "GEOMETRY_NODES",
    "UNARY_MATH_NODES",
    "Area",
    "Box",
    "Centroid",
    "Circle",
    "Contains",
    "Coord1",
    "Coord2",
    "Coordsys",
    "Distance",
    "GeometryFunction",
    "InUnit",
    "Intersects",
    "Point",
    "Polygon",
    "Region",
    "Truncate",
    "UdfCall",
]


class GeometryFunction(exp.Expression, exp.Func):
    """Base of the ADQL geometry functions; ``expressions`` holds the arguments as written.

    The constructors (POINT, CIRCLE, BOX, POLYGON) accept a deprecated coordinate-system string
    literal as first argument; :attr:`coord_sys` and :attr:`coordinates` split it off.
    """

    arg_types: ClassVar[dict[str, bool]] = {"expressions": False}
    is_var_len_args = True
    #: Whether the first argument may be a coordinate-system string literal.
    takes_coord_sys: ClassVar[bool] = False

    @property
    def adql_name(self) -> str:
        """The ADQL name of the function, upper case (``"CONTAINS"``)."""
        return self.sql_name()

    @property
    def arguments(self) -> list[exp.Expr]:
        """All arguments as written."""
        return list(self.args.get("expressions") or [])

    @property
    def coord_sys(self) -> str | None:
        """The coordinate-system literal, if the query wrote one (``'ICRS'``, ``''``)."""
        args = self.arguments
        first = args[0] if args else None
        if self.takes_coord_sys and isinstance(first, exp.Literal) and first.is_string:
            return str(first.this)
        return None

    @property
    def coordinates(self) -> list[exp.Expr]:
        """The arguments without the coordinate-system literal."""
        args = self.arguments
        return args[1:] if self.coord_sys is not None else args


class Point(GeometryFunction):
    """``POINT([coordsys,] long, lat)``."""

    _sql_names: ClassVar[list[str]] = ["POINT"]
    takes_coord_sys = True


class Circle(GeometryFunction):
    """``CIRCLE([coordsys,] long, lat, radius)`` or ``CIRCLE([coordsys,] point, radius)``."""

    _sql_names: ClassVar[list[str]] = ["CIRCLE"]
    takes_coord_sys = True


class Box(GeometryFunction):
    """``BOX([coordsys,] long, lat, width, height)`` or ``BOX([coordsys,] point, w, h)``."""

    _sql_names: ClassVar[list[str]] = ["BOX"]
    takes_coord_sys = True


class Polygon(GeometryFunction):
    """``POLYGON([coordsys,] l1, b1, l2, b2, l3, b3 ...)`` or with three or more POINTs."""

    _sql_names: ClassVar[list[str]] = ["POLYGON"]
    takes_coord_sys = True


class Region(GeometryFunction):
    """``REGION('...')``: deprecated in ADQL 2.1, defined for a string literal only."""

    _sql_names: ClassVar[list[str]] = ["REGION"]


class Contains(GeometryFunction):
    """``CONTAINS(a, b)``: 1 if geometry ``a`` lies within ``b``, else 0."""

    _sql_names: ClassVar[list[str]] = ["CONTAINS"]


class Intersects(GeometryFunction):
    """``INTERSECTS(a, b)``: 1 if the geometries overlap, else 0."""

    _sql_names: ClassVar[list[str]] = ["INTERSECTS"]


class Distance(GeometryFunction):
    """``DISTANCE(p1, p2)`` or ``DISTANCE(long1, lat1, long2, lat2)``, in degrees."""

    _sql_names: ClassVar[list[str]] = ["DISTANCE"]


class Area(GeometryFunction):
    """``AREA(geometry)``, in square degrees."""

    _sql_names: ClassVar[list[str]] = ["AREA"]


class Centroid(GeometryFunction):
    """``CENTROID(geometry)``: a POINT."""

    _sql_names: ClassVar[list[str]] = ["CENTROID"]


class Coord1(GeometryFunction):
    """``COORD1(point)``: the longitude, in degrees."""

    _sql_names: ClassVar[list[str]] = ["COORD1"]


class Coord2(GeometryFunction):
    """``COORD2(point)``: the latitude, in degrees."""

    _sql_names: ClassVar[list[str]] = ["COORD2"]


class Coordsys(GeometryFunction):
    """``COORDSYS(geometry)``: the coordinate-system string (deprecated in ADQL 2.1)."""

    _sql_names: ClassVar[list[str]] = ["COORDSYS"]


#: Every geometry node type, keyed by ADQL name.
GEOMETRY_NODES: dict[str, type[GeometryFunction]] = {
    cls.sql_name(): cls
    for cls in (
        Point,
        Circle,
        Box,
        Polygon,
        Region,
        Contains,
        Intersects,
        Distance,
        Area,
        Centroid,
        Coord1,
        Coord2,
        Coordsys,
    )
}


class InUnit(exp.Expression, exp.Func):
    """``IN_UNIT(value, 'unit')``: ``this`` is the value, ``expression`` the unit literal."""

    arg_types: ClassVar[dict[str, bool]] = {"this": True, "expression": True}
    _sql_names: ClassVar[list[str]] = ["IN_UNIT"]


class Truncate(exp.Expression, exp.Func):
    """``TRUNCATE(x [, n])``: ``x`` truncated to ``n`` decimal places (default 0)."""

    arg_types: ClassVar[dict[str, bool]] = {"this": True, "decimals": False}
    _sql_names: ClassVar[list[str]] = ["TRUNCATE"]


class UdfCall(exp.Expression, exp.Func):
    """A call of a registered user-defined function.

    ``this`` is the function's registered name (its spelling in :data:`FUNCTIONS`, whatever
    case the query used); ``expressions`` the arguments.
    """

    arg_types: ClassVar[dict[str, bool]] = {"this": True, "expressions": False}
    is_var_len_args = True

    @property
    def name(self) -> str:
        return str(self.this)

    @property
    def arguments(self) -> list[exp.Expr]:
        """The arguments as written."""
        return list(self.args.get("expressions") or [])


#: sqlglot nodes of ADQL's one-argument math functions (all return DOUBLE).
UNARY_MATH_NODES: tuple[type[exp.Expr], ...] = (
    exp.Ceil,
    exp.Floor,
    exp.Degrees,
    exp.Radians,
    exp.Exp,
    exp.Ln,
    exp.Sqrt,
    exp.Acos,
    exp.Asin,
    exp.Atan,
    exp.Cos,
    exp.Cot,
    exp.Sin,
    exp.Tan,
)
