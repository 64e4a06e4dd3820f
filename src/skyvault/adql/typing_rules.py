"""The typing rules of ADQL's functions: what a call's arguments must be, and what it gives.

Every entry of the function table (:data:`skyvault.adql.functions.FUNCTIONS`) names its rule
(:attr:`~skyvault.adql.functions.FunctionSpec.typing`; a UDF without one is typed by its
signatures, :func:`by_signature`).  The checker (:mod:`skyvault.adql.check`) walks the query
and, at a call, hands the rule itself (as ``ctx``, a :class:`Checking`), the function's entry,
the call's node and the scope.  A rule types the arguments through ``ctx`` (which records
every value's :class:`~skyvault.adql.annotate.ValueInfo`), refuses what DuckDB would refuse
only while running, and returns the result's :class:`~skyvault.adql.annotate.ValueInfo`; a
fixed unit or UCD of the result comes from the entry (``spec.unit``, ``spec.ucd``).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from sqlglot import exp

from skyvault.adql import nodes
from skyvault.adql.annotate import ValueInfo, aggregate_info, common_type, convert_factor
from skyvault.errors import GeometryError
from skyvault.sky.coverage import HEALPIX29_ORDER
from skyvault.sky.regions import Box, Circle, Point, Polygon, Region

if TYPE_CHECKING:
    from skyvault.adql.functions import FunctionSpec
    from skyvault.adql.scope import CheckedQuery, Scope

__all__ = [
    "Checking",
    "TypingRule",
    "abs_rule",
    "aggregate",
    "area",
    "by_signature",
    "cast",
    "centroid",
    "coalesce",
    "combine",
    "constructor",
    "coord",
    "coordsys",
    "distance",
    "double_of_number",
    "double_of_two_numbers",
    "healpix",
    "in_unit",
    "is_timestamp",
    "log10",
    "mod",
    "pi",
    "predicate",
    "rand",
    "region",
    "rounding",
    "same_quantity",
    "string_case",
]


class Checking(Protocol):
    """What a typing rule may ask of the checker that calls it."""

    @property
    def checked(self) -> CheckedQuery:
        """The annotations so far (constant regions, unit factors ...)."""

    @property
    def stand_ins(self) -> set[int]:
        """``id`` of the value infos standing in for unknown columns."""

    def value(self, node: exp.Expr, scope: Scope) -> ValueInfo:
        """Type ``node`` (and record it)."""

    def numeric(self, node: exp.Expr, scope: Scope, what: str) -> ValueInfo:
        """Type ``node``, refusing anything but a number (``what`` names the user)."""

    def string(self, node: exp.Expr, scope: Scope, what: str) -> ValueInfo:
        """Type ``node``, refusing anything but a string."""

    def fail(self, node: exp.Expr | None, message: str, hint: str | None = None) -> Exception:
        """An :class:`~skyvault.errors.AdqlSemanticError` at ``node``."""

    def unsupported(
        self, node: exp.Expr | None, message: str, hint: str | None = None
    ) -> Exception:
        """An :class:`~skyvault.errors.UnsupportedQuery` at ``node``."""

    def text(self, node: exp.Expr) -> str:
        """The query text of ``node``, for messages."""


#: A typing rule: ``rule(ctx, spec, node, scope)`` -> the call's :class:`ValueInfo`.
TypingRule = Callable[["Checking", "FunctionSpec", exp.Expr, "Scope"], ValueInfo]


# --- shared pieces --------------------------------------------------------------------------


def combine(
    ctx: Checking,
    node: exp.Expr,
    results: list[tuple[exp.Expr, ValueInfo]],
    aggregate: bool,
    what: str,
) -> ValueInfo:
    """The value of CASE's branches or COALESCE's arguments: their common type."""
    infos = [info for _, info in results]
    for value, info in results:
        if info.geometry:
            raise ctx.unsupported(value, f"{what} cannot give a geometry value")
    common = common_type([i.duck for i in infos])
    if common is None:
        kinds = sorted({i.kind for i in infos})
        raise ctx.fail(node, f"the values of {what} have incompatible types: {kinds}")
    units = {i.unit for i in infos if i.duck != "NULL"}
    ucds = {i.ucd for i in infos if i.duck != "NULL"}
    return ValueInfo(
        common,
        unit=units.pop() if len(units) == 1 else None,
        ucd=ucds.pop() if len(ucds) == 1 else None,
        xtype="timestamp" if common == "TIMESTAMP" else None,
        aggregate=aggregate or any(i.aggregate for i in infos),
    )


def is_timestamp(text: str) -> bool:
    """Whether ``text`` reads as an ISO 8601 timestamp."""
    try:
        dt.datetime.fromisoformat(text.strip())
    except ValueError:
        return False
    return True


# --- math and strings -----------------------------------------------------------------------


def double_of_number(ctx: Checking, spec: FunctionSpec, node: exp.Expr, scope: Scope) -> ValueInfo:
    """``f(x)`` of a number: a DOUBLE in the function's own unit (``DEGREES``: deg)."""
    arg = ctx.numeric(node.this, scope, spec.name)
    return ValueInfo("DOUBLE", unit=spec.unit, ucd=spec.ucd, aggregate=arg.aggregate)


def same_quantity(ctx: Checking, spec: FunctionSpec, node: exp.Expr, scope: Scope) -> ValueInfo:
    """``f(x)`` of a number that keeps its quantity (``FLOOR``): a DOUBLE, x's unit and UCD."""
    arg = ctx.numeric(node.this, scope, spec.name)
    return ValueInfo("DOUBLE", unit=arg.unit, ucd=arg.ucd, aggregate=arg.aggregate)


def rounding(ctx: Checking, spec: FunctionSpec, node: exp.Expr, scope: Scope) -> ValueInfo:
    """``ROUND``/``TRUNCATE(x [, n])``: a DOUBLE, x's unit and UCD."""
    arg = ctx.numeric(node.this, scope, spec.name)
    decimals = node.args.get("decimals")
    if decimals is not None:
        ctx.value(decimals, scope)
    return ValueInfo("DOUBLE", unit=arg.unit, ucd=arg.ucd, aggregate=arg.aggregate)


def abs_rule(ctx: Checking, spec: FunctionSpec, node: exp.Expr, scope: Scope) -> ValueInfo:
    """``ABS(x)``: BIGINT of an integer, else DOUBLE; x's unit and UCD."""
    arg = ctx.numeric(node.this, scope, spec.name)
    duck = "BIGINT" if arg.integral else "DOUBLE"
    return ValueInfo(duck, unit=arg.unit, ucd=arg.ucd, aggregate=arg.aggregate)


def mod(ctx: Checking, spec: FunctionSpec, node: exp.Expr, scope: Scope) -> ValueInfo:
    """``MOD(x, y)``: BIGINT of two integers, else DOUBLE; x's unit."""
    a = ctx.numeric(node.this, scope, spec.name)
    b = ctx.numeric(node.expression, scope, spec.name)
    duck = "BIGINT" if a.integral and b.integral else "DOUBLE"
    return ValueInfo(duck, unit=a.unit, aggregate=a.aggregate or b.aggregate)


def double_of_two_numbers(
    ctx: Checking, spec: FunctionSpec, node: exp.Expr, scope: Scope
) -> ValueInfo:
    """``f(x, y)`` of two numbers (``POWER``, ``ATAN2``): a DOUBLE in the function's unit."""
    a = ctx.numeric(node.this, scope, spec.name)
    b = ctx.numeric(node.expression, scope, spec.name)
    return ValueInfo("DOUBLE", unit=spec.unit, aggregate=a.aggregate or b.aggregate)


def log10(ctx: Checking, spec: FunctionSpec, node: exp.Expr, scope: Scope) -> ValueInfo:
    """``LOG10(x)`` (``exp.Log`` whose ``this`` is the base 10): a DOUBLE."""
    arg = ctx.numeric(node.expression, scope, spec.name)
    return ValueInfo("DOUBLE", aggregate=arg.aggregate)


def pi(ctx: Checking, spec: FunctionSpec, node: exp.Expr, scope: Scope) -> ValueInfo:
    """``PI()``: a constant DOUBLE."""
    return ValueInfo("DOUBLE", constant=math.pi)


def rand(ctx: Checking, spec: FunctionSpec, node: exp.Expr, scope: Scope) -> ValueInfo:
    """``RAND()``: a DOUBLE; a seed is not supported."""
    if node.this is not None:
        raise ctx.unsupported(
            node, "RAND with a seed is not supported", hint="use RAND() without a seed"
        )
    return ValueInfo("DOUBLE")


def string_case(ctx: Checking, spec: FunctionSpec, node: exp.Expr, scope: Scope) -> ValueInfo:
    """``LOWER``/``UPPER(s)``: a string, s's UCD."""
    info = ctx.string(node.this, scope, spec.name)
    return ValueInfo("VARCHAR", ucd=info.ucd, aggregate=info.aggregate)


def coalesce(ctx: Checking, spec: FunctionSpec, node: exp.Expr, scope: Scope) -> ValueInfo:
    """``COALESCE(a, b ...)``: the arguments' common type."""
    args = [node.this, *node.expressions]
    results = [(a, ctx.value(a, scope)) for a in args]
    return combine(ctx, node, results, False, spec.name)


def in_unit(ctx: Checking, spec: FunctionSpec, node: exp.Expr, scope: Scope) -> ValueInfo:
    """``IN_UNIT(x, 'unit')``: x converted (the factor is computed here, for the translator)."""
    info = ctx.numeric(node.this, scope, spec.name)
    target = str(node.expression.this)
    factor = convert_factor(info.unit, target)
    if isinstance(factor, str):
        raise ctx.fail(node, f"{spec.name}: {factor}")
    ctx.checked.unit_factors[id(node)] = factor
    return ValueInfo(
        "DOUBLE",
        unit=target,
        ucd=info.ucd,
        description=info.description,
        aggregate=info.aggregate,
    )


def cast(ctx: Checking, spec: FunctionSpec, node: exp.Expr, scope: Scope) -> ValueInfo:
    """``CAST(x AS type)``: the type; numbers keep their unit, UCD and description."""
    inner = ctx.value(node.this, scope)
    target = node.args["to"]
    kind = target.this
    if kind is exp.DataType.Type.USERDEFINED:
        raise ctx.unsupported(
            target,
            f"CAST to {target.args.get('kind')} is not supported",
            hint="build geometries with POINT, CIRCLE or POLYGON",
        )
    if inner.geometry:
        raise ctx.unsupported(node.this, "a geometry cannot be cast")
    if inner.kind == "other":
        raise ctx.fail(node.this, f"{ctx.text(node.this)} cannot be cast")
    duck = {
        exp.DataType.Type.SMALLINT: "SMALLINT",
        exp.DataType.Type.INT: "INTEGER",
        exp.DataType.Type.BIGINT: "BIGINT",
        exp.DataType.Type.FLOAT: "FLOAT",
        exp.DataType.Type.DOUBLE: "DOUBLE",
        exp.DataType.Type.CHAR: "VARCHAR",
        exp.DataType.Type.VARCHAR: "VARCHAR",
        exp.DataType.Type.TIMESTAMP: "TIMESTAMP",
    }[kind]
    literal = node.this if isinstance(node.this, exp.Literal) else None
    if duck == "TIMESTAMP":
        if inner.kind not in ("string", "timestamp", "null"):
            raise ctx.fail(node.this, f"a {inner.kind} cannot be cast to TIMESTAMP")
        if literal is not None and not is_timestamp(str(literal.this)):
            raise ctx.fail(literal, f"{ctx.text(literal)} is not a timestamp")
        return ValueInfo(duck, xtype="timestamp", aggregate=inner.aggregate)
    if duck == "VARCHAR":
        params = target.expressions
        length = int(str(params[0].this.this)) if params else None
        if length is not None and length < 1:
            raise ctx.fail(target, "a string length must be at least 1")
        size = None
        if length is not None:
            size = str(length) if kind is exp.DataType.Type.CHAR else f"{length}*"
        return ValueInfo(duck, arraysize=size, aggregate=inner.aggregate)
    if inner.kind not in ("numeric", "boolean", "string", "null"):
        raise ctx.fail(node.this, f"a {inner.kind} cannot be cast to a number")
    if inner.kind == "string" and literal is not None:
        try:
            float(str(literal.this))
        except ValueError:
            raise ctx.fail(literal, f"{ctx.text(literal)} is not a number") from None
    keep = inner.kind == "numeric"
    return ValueInfo(
        duck,
        unit=inner.unit if keep else None,
        ucd=inner.ucd if keep else None,
        description=inner.description if keep else None,
        aggregate=inner.aggregate,
    )


# --- aggregates -----------------------------------------------------------------------------


def aggregate(ctx: Checking, spec: FunctionSpec, node: exp.Expr, scope: Scope) -> ValueInfo:
    """``COUNT``, ``SUM``, ``AVG``, ``MIN``, ``MAX``: only where aggregates may be."""
    name = spec.name
    if scope.aggregates_allowed is None:
        raise ctx.fail(
            node,
            f"{name} cannot be used here (an aggregate belongs in the select list, HAVING "
            "or ORDER BY)",
            hint="filter aggregates with HAVING",
        )
    arg = node.this
    if isinstance(arg, exp.Star):
        return aggregate_info(spec, None, "BIGINT")
    if isinstance(arg, exp.Distinct):
        arg = arg.expressions[0]
    saved = scope.aggregates_allowed
    scope.aggregates_allowed = None
    try:
        info = ctx.value(arg, scope)
    finally:
        scope.aggregates_allowed = saved
    if info.geometry:
        raise ctx.fail(arg, f"{name} cannot aggregate a geometry")
    if name == "COUNT":
        return aggregate_info(spec, info, "BIGINT")
    if name in ("SUM", "AVG"):
        if not info.numeric_like:
            raise ctx.fail(arg, f"{name} needs numbers; {ctx.text(arg)} is {info.kind}")
        duck = "DOUBLE" if name == "AVG" or not info.integral else "BIGINT"
        return aggregate_info(spec, info, duck)
    if info.kind == "other":
        raise ctx.fail(arg, f"{name} cannot order {ctx.text(arg)}")
    duck = "INTEGER" if info.duck == "NULL" else info.duck
    return aggregate_info(spec, info, duck)


# --- user-defined functions -----------------------------------------------------------------

_UDF_RESULT = {
    "DOUBLE": "DOUBLE",
    "INTEGER": "INTEGER",
    "BIGINT": "BIGINT",
    "TEXT": "VARCHAR",
    "POINT": "POINT",
}


def _udf_arguments(
    ctx: Checking, spec: FunctionSpec, node: exp.Expr, scope: Scope
) -> list[ValueInfo]:
    """Type a UDF call's arguments (an aggregate UDF's may not hold aggregates) and check
    them against the signature of that many arguments."""
    args = node.expressions
    saved = scope.aggregates_allowed
    if spec.is_aggregate:
        if saved is None:
            raise ctx.fail(node, f"{spec.name} is an aggregate and cannot be used here")
        scope.aggregates_allowed = None
    try:
        infos = [ctx.value(a, scope) for a in args]
    finally:
        scope.aggregates_allowed = saved
    signature = next(s for s in spec.signatures if s.accepts(len(args)))
    for param, arg, info in zip(signature.params, args, infos, strict=False):
        _parameter(ctx, spec, param.name, param.type, arg, info)
    return infos


def _udf_result(spec: FunctionSpec, n_args: int, infos: list[ValueInfo]) -> ValueInfo:
    signature = next(s for s in spec.signatures if s.accepts(n_args))
    return ValueInfo(
        _UDF_RESULT.get(signature.result, "DOUBLE"),
        unit=spec.unit,
        ucd=spec.ucd,
        description=spec.description,
        aggregate=spec.is_aggregate or any(i.aggregate for i in infos),
    )


def by_signature(ctx: Checking, spec: FunctionSpec, node: exp.Expr, scope: Scope) -> ValueInfo:
    """A UDF: its arguments must fit its signature's parameter types; the result has the
    signature's type and the function's unit, UCD and description."""
    infos = _udf_arguments(ctx, spec, node, scope)
    return _udf_result(spec, len(node.expressions), infos)


def healpix(ctx: Checking, spec: FunctionSpec, node: exp.Expr, scope: Scope) -> ValueInfo:
    """``ivo_healpix_index``/``ivo_healpix_center``: as :func:`by_signature`, and a constant
    HEALPix order outside 0..29 (and, for the centre, a constant index outside its order's
    cells) is an error here, not a NULL in every row."""
    args = node.expressions
    infos = _udf_arguments(ctx, spec, node, scope)
    order = infos[0].constant
    if order is not None:
        if not math.isfinite(order) or order != int(order) or not 0 <= order <= HEALPIX29_ORDER:
            raise ctx.fail(
                args[0],
                f"the HEALPix order of {spec.name.upper()} must be a whole number from 0 to "
                f"{HEALPIX29_ORDER}; {order:g} is not",
                hint="order 0 has 12 cells; each order splits every cell in 4",
            )
        if spec.name == "ivo_healpix_center" and len(infos) > 1:
            index, cells = infos[1].constant, 12 * 4 ** int(order)
            if index is not None and not (index == int(index) and 0 <= index < cells):
                raise ctx.fail(
                    args[1],
                    f"{index:g} is not a HEALPix index at order {int(order)}: "
                    f"the NESTED indexes there are 0 to {cells - 1}",
                )
    return _udf_result(spec, len(args), infos)


def _parameter(
    ctx: Checking, spec: FunctionSpec, name: str, type_: str, arg: exp.Expr, info: ValueInfo
) -> None:
    wanted = {
        "TEXT": ("string", "null"),
        "POINT": ("geometry",),
        "GEOMETRY": ("geometry",),
    }.get(type_, ("numeric", "boolean", "null"))
    if info.kind not in wanted or (type_ == "POINT" and info.geometry != "point"):
        what = {"TEXT": "a string", "POINT": "a POINT"}.get(type_, "a number")
        raise ctx.fail(
            arg,
            f"argument {name} of {spec.name} must be {what}; {ctx.text(arg)} is {info.kind}",
        )


# --- geometry -------------------------------------------------------------------------------


def _geometry_arg(
    ctx: Checking, node: exp.Expr, scope: Scope, what: str, *, region: bool = False
) -> ValueInfo:
    """The value of a geometry argument; ``region``: a column of STC-S regions too."""
    info = ctx.value(node, scope)
    if id(info) in ctx.stand_ins:  # an unknown column: reported, whatever its type
        return ValueInfo("POINT")
    if info.geometry is None and not (region and info.region):
        raise ctx.fail(
            node,
            f"{what} needs a geometry (POINT, CIRCLE, POLYGON, BOX); "
            f"{ctx.text(node)} is {info.kind}",
        )
    return info


def region(ctx: Checking, spec: FunctionSpec, node: exp.Expr, scope: Scope) -> ValueInfo:
    """``REGION``: refused (deprecated in ADQL 2.1)."""
    raise ctx.unsupported(
        node,
        "REGION is not supported (deprecated in ADQL 2.1)",
        hint="use POINT, CIRCLE, BOX or POLYGON",
    )


def predicate(ctx: Checking, spec: FunctionSpec, node: exp.Expr, scope: Scope) -> ValueInfo:
    """``CONTAINS``/``INTERSECTS(a, b)``: 1 or 0, of the forms the translator makes exact."""
    assert isinstance(node, nodes.GeometryFunction)
    args = node.coordinates
    a = _geometry_arg(ctx, args[0], scope, spec.name, region=True)
    b = _geometry_arg(ctx, args[1], scope, spec.name, region=True)
    if a.region and b.region:
        raise ctx.unsupported(
            node,
            f"{spec.name} of two region columns is not supported",
            hint="compare a region column with a POINT, CIRCLE, BOX or POLYGON",
        )
    constant = [id(x) in ctx.checked.regions for x in args]
    if a.region or b.region:
        pass  # a region column against any other geometry: the engine's region function
    elif not all(constant):
        kinds = [a.geometry, b.geometry]
        if isinstance(node, nodes.Intersects) and kinds[0] != "point" and kinds[1] == "point":
            kinds.reverse()
            constant.reverse()
        point_in = kinds[0] == "point" and (kinds[1] in ("point", "circle") or constant[1])
        if not point_in and kinds != ["circle", "circle"]:
            raise ctx.unsupported(
                node,
                f"{spec.name} of a {kinds[0]} and a {kinds[1]} is only supported with "
                "constant coordinates",
                hint="CONTAINS(POINT, region), INTERSECTS of circles and any constant regions "
                "are supported",
            )
    return ValueInfo("INTEGER", aggregate=a.aggregate or b.aggregate)


def distance(ctx: Checking, spec: FunctionSpec, node: exp.Expr, scope: Scope) -> ValueInfo:
    """``DISTANCE(p1, p2)`` of two POINTs or ``DISTANCE(l1, b1, l2, b2)`` of numbers."""
    assert isinstance(node, nodes.GeometryFunction)
    args = node.coordinates
    if len(args) == 2:
        infos = [_geometry_arg(ctx, arg, scope, spec.name) for arg in args]
        for arg, arg_info in zip(args, infos, strict=True):
            if arg_info.geometry != "point":
                raise ctx.fail(arg, f"DISTANCE needs two POINTs; {ctx.text(arg)} is not one")
    else:
        infos = [ctx.numeric(a, scope, spec.name) for a in args]
    return ValueInfo(
        "DOUBLE",
        unit=spec.unit,
        ucd=spec.ucd,
        description="angular distance",
        aggregate=any(i.aggregate for i in infos),
    )


def coord(ctx: Checking, spec: FunctionSpec, node: exp.Expr, scope: Scope) -> ValueInfo:
    """``COORD1``/``COORD2(point)``: a DOUBLE in the function's unit and UCD."""
    assert isinstance(node, nodes.GeometryFunction)
    args = node.coordinates
    info = _geometry_arg(ctx, args[0], scope, spec.name)
    if info.geometry != "point":
        raise ctx.fail(args[0], f"{spec.name} needs a POINT; {ctx.text(args[0])} is not one")
    return ValueInfo("DOUBLE", unit=spec.unit, ucd=spec.ucd, aggregate=info.aggregate)


def coordsys(ctx: Checking, spec: FunctionSpec, node: exp.Expr, scope: Scope) -> ValueInfo:
    """``COORDSYS(geometry)``: a string."""
    assert isinstance(node, nodes.GeometryFunction)
    info = _geometry_arg(ctx, node.coordinates[0], scope, spec.name)
    return ValueInfo("VARCHAR", aggregate=info.aggregate)


def _of_shape(
    ctx: Checking, spec: FunctionSpec, node: exp.Expr, scope: Scope, duck: str
) -> ValueInfo:
    """``AREA``/``CENTROID(g)``: of a polygon, only with constant coordinates."""
    assert isinstance(node, nodes.GeometryFunction)
    arg = node.coordinates[0]
    info = _geometry_arg(ctx, arg, scope, spec.name)
    if info.geometry in ("polygon", "box") and id(arg) not in ctx.checked.regions:
        raise ctx.unsupported(
            node, f"{spec.name} of a polygon built from column values is not supported"
        )
    return ValueInfo(duck, unit=spec.unit, ucd=spec.ucd, aggregate=info.aggregate)


def area(ctx: Checking, spec: FunctionSpec, node: exp.Expr, scope: Scope) -> ValueInfo:
    """``AREA(g)``: a DOUBLE in square degrees."""
    return _of_shape(ctx, spec, node, scope, "DOUBLE")


def centroid(ctx: Checking, spec: FunctionSpec, node: exp.Expr, scope: Scope) -> ValueInfo:
    """``CENTROID(g)``: a POINT."""
    return _of_shape(ctx, spec, node, scope, "POINT")


def constructor(ctx: Checking, spec: FunctionSpec, node: exp.Expr, scope: Scope) -> ValueInfo:
    """``POINT``, ``CIRCLE``, ``BOX``, ``POLYGON``: coordinates (or POINTs where the grammar
    has them); with constant coordinates the region is kept for the translator."""
    assert isinstance(node, nodes.GeometryFunction)
    _coordinate_system(ctx, node)
    args = node.coordinates
    name = spec.name
    infos = [ctx.value(a, scope) for a in args]
    points = [info.geometry == "point" for info in infos]
    numbers: list[float | None] = []
    for arg, info, is_point in zip(args, infos, points, strict=True):
        if is_point:
            known = ctx.checked.regions.get(id(arg))
            if isinstance(known, Point):
                numbers += [known.ra, known.dec]
            else:
                numbers += [None, None]
            continue
        if not info.numeric_like:
            raise ctx.fail(arg, f"{name} needs numbers; {ctx.text(arg)} is {info.kind}")
        numbers.append(info.constant)
    if isinstance(node, nodes.Polygon):
        if any(points) and not all(points):
            raise ctx.fail(node, "POLYGON takes either POINTs or coordinate pairs, not both")
        if not any(points) and (len(args) % 2 or len(args) < 6):
            raise ctx.fail(
                node,
                f"POLYGON needs three or more (long, lat) pairs; got {len(args)} numbers",
            )
    else:
        point_form = {"CIRCLE": 2, "BOX": 3}.get(name)
        if any(points[1:]) or (points and points[0] and len(args) != point_form):
            bad = args[next(i for i, p in enumerate(points) if p and (i or not point_form))]
            raise ctx.fail(bad, f"{name} needs a number here; {ctx.text(bad)} is a POINT")
        if not points[0] and len(args) != {"POINT": 2, "CIRCLE": 3, "BOX": 4}[name]:
            raise ctx.fail(node, f"{name} takes a POINT or coordinates, not {len(args)} values")
    if all(n is not None for n in numbers):
        values = [float(n) for n in numbers if n is not None]
        try:
            ctx.checked.regions[id(node)] = _build_region(name, values)
        except GeometryError as error:
            raise ctx.fail(node, f"invalid {name}: {error.message}") from None
    return ValueInfo(name, unit=spec.unit, ucd=spec.ucd, aggregate=any(i.aggregate for i in infos))


def _coordinate_system(ctx: Checking, node: nodes.GeometryFunction) -> None:
    system = node.coord_sys
    if system is None:
        return
    words = system.split()
    if words and words[0].upper() != "ICRS":
        raise ctx.unsupported(
            node.arguments[0],
            f"coordinate system '{system}' is not supported: positions are ICRS",
            hint="write '' or 'ICRS', or leave the coordinate system out",
        )


def _build_region(name: str, values: list[float]) -> Region:
    if name == "POINT":
        return Point(values[0], values[1])
    if name == "CIRCLE":
        return Circle(values[0], values[1], values[2])
    if name == "BOX":
        return Box(values[0], values[1], values[2], values[3])
    return Polygon.from_flat(values)
