"""sqlglot node types for the ADQL constructs that sqlglot has no node for.

Geometry functions, ``IN_UNIT``, ``TRUNCATE`` and calls of registered user-defined functions
each get their own class so the translator can find them with ``tree.find_all(...)``.  All
are ``sqlglot.exp.Func`` subclasses whose arguments are kept as written, in ``expressions``.
"""

from __future__ import annotations

from typing import ClassVar

from sqlglot import exp

__all__ = [
    "COMPARISONS",
    "CONSTRUCTOR_ARITY",
    "GEOMETRY_NODES",
    "JOIN_KEYWORD",
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
    "is_not_a_point",
    "is_number_like",
    "is_point_like",
]

#: The comparison operators of ADQL, by node type, as they are written (in ADQL and SQL alike).
COMPARISONS: dict[type[exp.Expr], str] = {
    exp.EQ: "=",
    exp.NEQ: "<>",
    exp.GT: ">",
    exp.GTE: ">=",
    exp.LT: "<",
    exp.LTE: "<=",
}


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
    def has_coord_sys(self) -> bool:
        """Whether the first argument is the coordinate system: a string literal, or NULL
        where the other arguments are a complete set of coordinates (``POINT(NULL, ra,
        dec)``; ADQL 2.1 made the argument optional, and clients send NULL for "none")."""
        if self.coord_sys is not None:
            return True
        args = self.arguments
        if not self.takes_coord_sys or not args or not isinstance(args[0], exp.Null):
            return False
        rest = args[1:]
        if not _complete(self.sql_name(), rest):
            return False
        # ``CIRCLE(NULL, 2, 3)`` is the centre (NULL, 2) with radius 3, not a coordinate
        # system followed by a centre 2.
        return not _complete(self.sql_name(), args) or not is_number_like(rest[0])

    @property
    def coordinates(self) -> list[exp.Expr]:
        """The arguments without the coordinate system."""
        args = self.arguments
        return args[1:] if self.has_coord_sys else args


#: Key of ``exp.Join.meta`` holding the offset of the join's first keyword (absent for a
#: comma in FROM, which is a join without ON in sqlglot's trees too).
JOIN_KEYWORD = "adql_join_keyword"

#: Number of coordinate arguments of each constructor: with numbers, with a POINT first.
CONSTRUCTOR_ARITY: dict[str, tuple[int, int | None]] = {
    "POINT": (2, None),
    "CIRCLE": (3, 2),
    "BOX": (4, 3),
}


def is_number_like(node: exp.Expr) -> bool:
    """Whether ``node`` is, by its syntax alone, a number (never a geometry): a numeric
    literal, arithmetic, a math function, a numeric geometry function ..."""
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.Literal):
        return not node.is_string
    return isinstance(
        node,
        (
            exp.Neg,
            exp.Add,
            exp.Sub,
            exp.Mul,
            exp.Div,
            exp.Abs,
            exp.Mod,
            exp.Pow,
            exp.Pi,
            exp.Rand,
            exp.Round,
            exp.Log,
            exp.Atan2,
            exp.Count,
            exp.Avg,
            exp.Sum,
            Truncate,
            InUnit,
            Distance,
            Area,
            Coord1,
            Coord2,
            Contains,
            Intersects,
            *UNARY_MATH_NODES,
        ),
    )


def is_point_like(node: exp.Expr) -> bool:
    """Whether ``node`` is, by its syntax alone, a POINT (``POINT(...)``, ``CENTROID(...)``)."""
    while isinstance(node, exp.Paren):
        node = node.this
    return isinstance(node, (Point, Centroid))


def is_not_a_point(node: exp.Expr) -> bool:
    """Whether ``node`` cannot be a POINT by its syntax alone (a number, a string, another
    geometry).  Column references, UDF calls, CASE ... may be POINTs."""
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.Literal) or is_number_like(node):
        return True
    return isinstance(
        node, (Circle, Box, Polygon, Region, Coordsys, exp.DPipe, exp.Lower, exp.Upper)
    )


def _complete(name: str, args: list[exp.Expr]) -> bool:
    """Whether ``args`` can be the coordinate arguments of constructor ``name``."""
    if name == "POLYGON":
        if len(args) >= 6 and len(args) % 2 == 0:
            return True
        return len(args) >= 3 and not any(is_not_a_point(a) for a in args)
    numbers, with_point = CONSTRUCTOR_ARITY[name]
    if len(args) == numbers:
        return True
    return with_point is not None and len(args) == with_point and not is_not_a_point(args[0])


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
