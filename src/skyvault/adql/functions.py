"""The function table: the one place a function an ADQL query may call is described.

Each :class:`FunctionSpec` (an entry of :data:`FUNCTIONS`) says everything every stage needs:

* how it may be called: signatures (argument names and ADQL types, result type), what it
  does, which TAPRegExt language feature declares it;
* its **parse form**: the sqlglot node type a call becomes and the builder the dialect's
  parser calls (:data:`PARSE_FORMS` is the parser's table, derived from the entries), with
  the argument keys the node may carry (the validator's whitelist);
* its **typing rule** (:mod:`skyvault.adql.typing_rules`), which the checker calls, and the
  unit and UCD of its result where they are fixed;
* its **DuckDB form**: a DuckDB function of the same meaning (:class:`DuckDbFunction`), a SQL
  macro (:class:`DuckDbMacro`) or, for a Python UDF, the function object itself
  (:class:`DuckDbPythonUdf`); where none fits the translator writes the SQL itself.

Everything else is derived from the entries: the dialect's parser table, the validator's
names and argument whitelist, the checker's dispatch, the annotator's UCDs, the
translator's plain functions, the engine's UDF registrations and the distributed
executor's list of scalar functions, and the TAP capabilities' language features.  Adding a
function is adding one entry: :func:`register_udf` for a UDF (the built-in UDFs are the
entries of ``_UDFS`` below), :func:`register_builtin` for a function with its own node
type.  Names of UDFs are regular identifiers and match case-insensitively; the registered
spelling is the canonical one (``scisql_nanojanskyToAbMag``).

DuckDB runs a :class:`DuckDbMacro` as ``CREATE OR REPLACE MACRO`` (:func:`duckdb_macro_sql`,
run once per connection) and a :class:`DuckDbPythonUdf` registered with
``duckdb.DuckDBPyConnection.create_function(name, function, arg_types, return_type)``.  The
HEALPix and epoch-propagation UDFs are of the second kind: their numerics live in
:mod:`skyvault.sky`; the signature forms that take a POINT are rewritten by the translator
into the ones that take coordinates.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlglot import exp

from skyvault.adql import nodes, typing_rules
from skyvault.adql.reserved import is_regular_identifier, is_reserved
from skyvault.adql.typing_rules import TypingRule
from skyvault.sky import astrometry, healpix

__all__ = [
    "FEATURE_ADQL_COMMON_TABLE",
    "FEATURE_ADQL_CONDITIONAL",
    "FEATURE_ADQL_GEO",
    "FEATURE_ADQL_OFFSET",
    "FEATURE_ADQL_SETS",
    "FEATURE_ADQL_STRING",
    "FEATURE_ADQL_TYPE",
    "FEATURE_ADQL_UNIT",
    "FEATURE_UDF",
    "FUNCTIONS",
    "PARSE_FORMS",
    "DuckDbFunction",
    "DuckDbMacro",
    "DuckDbPythonUdf",
    "FunctionKind",
    "FunctionSpec",
    "LanguageFeature",
    "Param",
    "ParseForm",
    "Signature",
    "any_arguments",
    "duckdb_macro_sql",
    "language_features",
    "lookup",
    "one_argument",
    "register_builtin",
    "register_udf",
    "spec_for",
    "spec_of",
    "two_arguments",
]

_TAPREGEXT = "ivo://ivoa.net/std/TAPRegExt"
#: TAPRegExt language-feature types of ADQL 2.1's optional features.  Geometry keeps the
#: TAPRegExt 1.0 spelling ``features-adqlgeo`` that ADQL 2.1 and clients (TOPCAT, taplint)
#: use; some ADQL 2.1 drafts wrote ``features-adql-geo``.
FEATURE_ADQL_GEO = f"{_TAPREGEXT}#features-adqlgeo"
FEATURE_ADQL_STRING = f"{_TAPREGEXT}#features-adql-string"
FEATURE_ADQL_SETS = f"{_TAPREGEXT}#features-adql-sets"
FEATURE_ADQL_COMMON_TABLE = f"{_TAPREGEXT}#features-adql-common-table"
FEATURE_ADQL_TYPE = f"{_TAPREGEXT}#features-adql-type"
FEATURE_ADQL_CONDITIONAL = f"{_TAPREGEXT}#features-adql-conditional"
FEATURE_ADQL_UNIT = f"{_TAPREGEXT}#features-adql-unit"
FEATURE_ADQL_OFFSET = f"{_TAPREGEXT}#features-adql-offset"
FEATURE_UDF = f"{_TAPREGEXT}#features-udf"


class FunctionKind(enum.StrEnum):
    """What family a function belongs to."""

    MATH = "math"
    TRIGONOMETRIC = "trigonometric"
    AGGREGATE = "aggregate"
    GEOMETRY = "geometry"
    STRING = "string"
    CONVERSION = "conversion"
    CONDITIONAL = "conditional"
    UNIT = "unit"
    UDF = "udf"


@dataclasses.dataclass(frozen=True)
class Param:
    """One parameter of a signature.

    Attributes
    ----------
    name
        A regular identifier, as TAPRegExt signatures want.
    type
        ADQL type: ``DOUBLE``, ``INTEGER``, ``BIGINT``, ``TEXT``, ``POINT``, ``GEOMETRY`` (any
        of POINT, CIRCLE, BOX, POLYGON), ``NUMERIC`` or ``ANY``.
    literal
        Whether ADQL's grammar demands a literal here (``IN_UNIT``'s unit, ``ROUND``'s digits).
    """

    name: str
    type: str
    literal: bool = False


@dataclasses.dataclass(frozen=True)
class Signature:
    """One way of calling a function.

    Attributes
    ----------
    params
        The parameters, in order.
    result
        ADQL result type (``ARGUMENT`` when it is that of the first argument).
    variadic
        Whether the last parameter may repeat (``COALESCE``).
    """

    params: tuple[Param, ...]
    result: str
    variadic: bool = False

    def accepts(self, n_args: int) -> bool:
        """Whether a call with ``n_args`` arguments fits this signature."""
        if self.variadic:
            return n_args >= len(self.params)
        return n_args == len(self.params)


#: A parse form: builds a call's node from its arguments (the dialect's parser table).
ParseForm = Callable[[Sequence[Any]], exp.Expr]


@dataclasses.dataclass(frozen=True)
class DuckDbFunction:
    """A DuckDB built-in that computes an ADQL function of one number as it is (``CEILING``:
    ``ceil``); the translator writes ``name(CAST(x AS DOUBLE))``.

    Attributes
    ----------
    name
        The DuckDB function's name.
    """

    name: str


@dataclasses.dataclass(frozen=True)
class DuckDbMacro:
    """A DuckDB SQL macro implementing a UDF.

    Attributes
    ----------
    overloads
        ``(parameter names, SQL body)`` per arity; the body uses the parameter names.
    """

    overloads: tuple[tuple[tuple[str, ...], str], ...]


@dataclasses.dataclass(frozen=True)
class DuckDbPythonUdf:
    """A scalar Python function the engine registers in DuckDB under the UDF's name.

    Attributes
    ----------
    function
        The vectorised implementation (it takes and returns Arrow arrays).
    arg_types
        DuckDB argument types (``"INTEGER"``, ``"DOUBLE"`` ...) of the form DuckDB sees.
    return_type
        DuckDB result type (a ``STRUCT(ra DOUBLE, dec DOUBLE)`` for a POINT).
    """

    function: Callable[..., Any]
    arg_types: tuple[str, ...]
    return_type: str


@dataclasses.dataclass(frozen=True)
class FunctionSpec:
    """Everything known about one callable function.

    Attributes
    ----------
    name
        Canonical spelling: upper case for ADQL built-ins, the registered spelling for UDFs.
    kind
        Family of the function.
    signatures
        Every accepted form (arity is derived from these).
    description
        What the function does, for people (TAP capabilities, documentation).
    unit
        VOUnit of the result where fixed (``deg``, ``mag``), else ``None``.
    feature_type
        TAPRegExt language-feature type IVOID, for optional ADQL features and UDFs.
    duckdb
        How DuckDB runs it: a macro or a Python function for a UDF, a DuckDB function of the
        same meaning for a built-in of one number; ``None`` where the translator writes the
        SQL itself (``ROUND``, geometry ...).
    ucd
        UCD of the result where fixed (``DISTANCE``: ``pos.angDistance``); for ``AVG``,
        ``MIN`` and ``MAX`` the word added to the argument's UCD (``stat.mean`` ...).
    node
        The sqlglot node type a call parses to (``exp.Ceil`` for ``CEILING``); ``None`` for a
        UDF, whose calls are :class:`~skyvault.adql.nodes.UdfCall` nodes.
    parse
        The parse form: the dialect's builder of ``node`` from the call's arguments (it records
        how many the query wrote, for the validator's arity check); ``None`` for a UDF (parsed
        as a call of an unknown function, then resolved by the validator) and for ``CAST``,
        whose ``AS`` is grammar.
    node_args
        The argument keys ``node`` may carry (the validator's whitelist).
    typing
        The typing rule (:mod:`skyvault.adql.typing_rules`); ``None`` for a UDF typed by its
        signatures alone.
    aggregate
        Whether a UDF aggregates rows (built-in aggregates are ``FunctionKind.AGGREGATE``).
    """

    name: str
    kind: FunctionKind
    signatures: tuple[Signature, ...]
    description: str
    unit: str | None = None
    feature_type: str | None = None
    duckdb: DuckDbFunction | DuckDbMacro | DuckDbPythonUdf | None = None
    ucd: str | None = None
    node: type[exp.Expr] | None = None
    parse: ParseForm | None = None
    node_args: frozenset[str] = frozenset()
    typing: TypingRule | None = None
    aggregate: bool = False

    @property
    def min_args(self) -> int:
        """Fewest arguments of any signature."""
        return min(len(s.params) for s in self.signatures)

    @property
    def max_args(self) -> int | None:
        """Most arguments of any signature, ``None`` when unbounded."""
        if any(s.variadic for s in self.signatures):
            return None
        return max(len(s.params) for s in self.signatures)

    @property
    def is_udf(self) -> bool:
        """Whether this is a user-defined function (not part of ADQL itself)."""
        return self.kind is FunctionKind.UDF

    @property
    def is_aggregate(self) -> bool:
        """Whether the function aggregates rows."""
        return self.kind is FunctionKind.AGGREGATE or self.aggregate

    @property
    def typing_rule(self) -> TypingRule:
        """The rule the checker types a call with (a UDF's default: by its signatures)."""
        return self.typing or typing_rules.by_signature

    def accepts(self, n_args: int) -> bool:
        """Whether some signature takes ``n_args`` arguments."""
        return any(s.accepts(n_args) for s in self.signatures)

    def arity_text(self) -> str:
        """How many arguments the function takes, in words (``"2 or 4"``)."""
        counts = sorted({len(s.params) for s in self.signatures})
        if self.max_args is None:
            return f"{self.min_args} or more"
        if len(counts) == 1:
            return str(counts[0])
        return ", ".join(str(c) for c in counts[:-1]) + f" or {counts[-1]}"

    def signature_forms(self) -> list[str]:
        """Signatures as TAPRegExt ``form`` strings: ``f(a TEXT, b TEXT) -> INTEGER``."""
        forms = []
        for sig in self.signatures:
            params = ", ".join(f"{p.name} {p.type}" for p in sig.params)
            forms.append(f"{self.name}({params}) -> {sig.result}")
        return forms


@dataclasses.dataclass(frozen=True)
class LanguageFeature:
    """One ``languageFeatures/feature`` entry of a TAPRegExt capability.

    Attributes
    ----------
    type
        Feature type IVOID.
    form
        The ``form`` element: a keyword (``UNION``) or a UDF signature.
    description
        Optional human description.
    """

    type: str
    form: str
    description: str | None = None


def _sig(result: str, *params: str, variadic: bool = False) -> Signature:
    """Shorthand: ``_sig("DOUBLE", "x DOUBLE", "n INTEGER!")`` (``!`` marks a literal)."""
    parsed = []
    for p in params:
        name, type_ = p.split()
        parsed.append(Param(name, type_.rstrip("!"), literal=type_.endswith("!")))
    return Signature(tuple(parsed), result, variadic)


# --- parse forms: how the dialect's parser builds a call's node -----------------------------


def _with_arity(node: exp.Expr, args: Sequence[Any]) -> exp.Expr:
    """Remember how many arguments the query wrote (the validator checks arity from it)."""
    node.meta["adql_n_args"] = len(args)
    return node


def one_argument(cls: type[exp.Expr]) -> ParseForm:
    """Parse form of a one-argument node: ``cls(this=args[0])``, refusing other arities later."""

    def build(args: Sequence[Any]) -> exp.Expr:
        return _with_arity(cls(this=args[0] if args else None), args)

    return build


def two_arguments(cls: type[exp.Expr], second: str = "expression") -> ParseForm:
    """Parse form of ``cls(this=args[0], <second>=args[1])``."""

    def build(args: Sequence[Any]) -> exp.Expr:
        kwargs = {"this": args[0] if args else None}
        if len(args) > 1:
            kwargs[second] = args[1]
        return _with_arity(cls(**kwargs), args)

    return build


def any_arguments(cls: type[exp.Expr]) -> ParseForm:
    """Parse form of ``cls(expressions=args)``: every argument as written."""

    def build(args: Sequence[Any]) -> exp.Expr:
        return _with_arity(cls(expressions=list(args)), args)

    return build


def _log10(args: Sequence[Any]) -> exp.Expr:
    node = exp.Log(this=exp.Literal.number(10), expression=args[0] if args else None)
    return _with_arity(node, args)


def _pi(args: Sequence[Any]) -> exp.Expr:
    return _with_arity(exp.Pi(), args)


def _coalesce(args: Sequence[Any]) -> exp.Expr:
    node = exp.Coalesce(this=args[0] if args else None, expressions=list(args[1:]))
    return _with_arity(node, args)


_THIS = frozenset({"this"})
_BINARY = frozenset({"this", "expression"})
_ROUNDING = frozenset({"this", "decimals"})
_LIST = frozenset({"expressions"})


def _builtin(
    name: str,
    kind: FunctionKind,
    signatures: Iterable[Signature],
    description: str,
    *,
    node: type[exp.Expr],
    typing: TypingRule,
    parse: ParseForm | None = None,
    node_args: frozenset[str] = _THIS,
    unit: str | None = None,
    ucd: str | None = None,
    feature_type: str | None = None,
    duckdb: DuckDbFunction | None = None,
) -> FunctionSpec:
    """An ADQL built-in; its parse form defaults to the one-argument node ``node``."""
    return FunctionSpec(
        name,
        kind,
        tuple(signatures),
        description,
        unit=unit,
        feature_type=feature_type,
        duckdb=duckdb,
        ucd=ucd,
        node=node,
        parse=parse or one_argument(node),
        node_args=node_args,
        typing=typing,
    )


def _of_x(
    name: str,
    kind: FunctionKind,
    node: type[exp.Expr],
    duckdb: str,
    description: str,
    *,
    unit: str | None = None,
    typing: TypingRule = typing_rules.double_of_number,
) -> FunctionSpec:
    """A function of one number that DuckDB computes as it is (``SQRT``: ``sqrt``)."""
    return _builtin(
        name,
        kind,
        [_sig("DOUBLE", "x DOUBLE")],
        description,
        node=node,
        typing=typing,
        unit=unit,
        duckdb=DuckDbFunction(duckdb),
    )


_M, _T, _A = FunctionKind.MATH, FunctionKind.TRIGONOMETRIC, FunctionKind.AGGREGATE
_X = "x DOUBLE"
_rules = typing_rules

_BUILTINS: list[FunctionSpec] = [
    # --- mathematical (ADQL 2.1 section 2.3) ---
    _builtin(
        "ABS",
        _M,
        [_sig("DOUBLE", _X)],
        "Absolute value of x.",
        node=exp.Abs,
        typing=_rules.abs_rule,
    ),
    _of_x(
        "CEILING",
        _M,
        exp.Ceil,
        "ceil",
        "Smallest integer not less than x.",
        typing=_rules.same_quantity,
    ),
    _of_x("DEGREES", _M, exp.Degrees, "degrees", "Radians x in degrees.", unit="deg"),
    _of_x("EXP", _M, exp.Exp, "exp", "e raised to the power x."),
    _of_x(
        "FLOOR",
        _M,
        exp.Floor,
        "floor",
        "Largest integer not greater than x.",
        typing=_rules.same_quantity,
    ),
    _of_x("LOG", _M, exp.Ln, "ln", "Natural logarithm of x (x > 0)."),
    _builtin(
        "LOG10",
        _M,
        [_sig("DOUBLE", _X)],
        "Base-10 logarithm of x (x > 0).",
        node=exp.Log,
        parse=_log10,
        node_args=_BINARY,
        typing=_rules.log10,
    ),
    _builtin(
        "MOD",
        _M,
        [_sig("DOUBLE", _X, "y DOUBLE")],
        "Remainder of x / y.",
        node=exp.Mod,
        parse=two_arguments(exp.Mod),
        node_args=_BINARY,
        typing=_rules.mod,
    ),
    _builtin(
        "PI",
        _M,
        [_sig("DOUBLE")],
        "The constant pi.",
        node=exp.Pi,
        parse=_pi,
        node_args=frozenset(),
        typing=_rules.pi,
    ),
    _builtin(
        "POWER",
        _M,
        [_sig("DOUBLE", _X, "y DOUBLE")],
        "x raised to the power y.",
        node=exp.Pow,
        parse=two_arguments(exp.Pow),
        node_args=_BINARY,
        typing=_rules.double_of_two_numbers,
    ),
    _of_x("RADIANS", _M, exp.Radians, "radians", "Degrees x in radians.", unit="rad"),
    _builtin(
        "RAND",
        _M,
        [_sig("DOUBLE"), _sig("DOUBLE", "seed INTEGER!")],
        "Random value in [0, 1), optionally seeded.",
        node=exp.Rand,
        typing=_rules.rand,
    ),
    _builtin(
        "ROUND",
        _M,
        [_sig("DOUBLE", _X), _sig("DOUBLE", _X, "n INTEGER!")],
        "x rounded to n decimal places (default 0; negative n rounds left of the point).",
        node=exp.Round,
        parse=two_arguments(exp.Round, "decimals"),
        node_args=_ROUNDING,
        typing=_rules.rounding,
    ),
    _of_x("SQRT", _M, exp.Sqrt, "sqrt", "Positive square root of x."),
    _builtin(
        "TRUNCATE",
        _M,
        [_sig("DOUBLE", _X), _sig("DOUBLE", _X, "n INTEGER!")],
        "x truncated to n decimal places (default 0).",
        node=nodes.Truncate,
        parse=two_arguments(nodes.Truncate, "decimals"),
        node_args=_ROUNDING,
        typing=_rules.rounding,
    ),
    # --- trigonometric (angles in radians) ---
    _of_x("ACOS", _T, exp.Acos, "acos", "Arc cosine of x, in [0, pi].", unit="rad"),
    _of_x("ASIN", _T, exp.Asin, "asin", "Arc sine of x, in [-pi/2, pi/2].", unit="rad"),
    _of_x("ATAN", _T, exp.Atan, "atan", "Arc tangent of x, in [-pi/2, pi/2].", unit="rad"),
    _builtin(
        "ATAN2",
        _T,
        [_sig("DOUBLE", "y DOUBLE", _X)],
        "Polar angle of (x, y), in [-pi, pi].",
        node=exp.Atan2,
        parse=two_arguments(exp.Atan2),
        node_args=_BINARY,
        typing=_rules.double_of_two_numbers,
        unit="rad",
    ),
    _of_x("COS", _T, exp.Cos, "cos", "Cosine of x (radians)."),
    _of_x("COT", _T, exp.Cot, "cot", "Cotangent of x (radians)."),
    _of_x("SIN", _T, exp.Sin, "sin", "Sine of x (radians)."),
    _of_x("TAN", _T, exp.Tan, "tan", "Tangent of x (radians)."),
    # --- aggregates (set functions) ---
    _builtin(
        "COUNT",
        _A,
        [_sig("BIGINT", "x ANY")],
        "Number of rows (COUNT(*)) or of non-null values.",
        node=exp.Count,
        typing=_rules.aggregate,
        ucd="meta.number",
    ),
    _builtin(
        "AVG",
        _A,
        [_sig("DOUBLE", "x NUMERIC")],
        "Mean of x.",
        node=exp.Avg,
        typing=_rules.aggregate,
        ucd="stat.mean",
    ),
    _builtin(
        "MIN",
        _A,
        [_sig("ARGUMENT", "x ANY")],
        "Least x.",
        node=exp.Min,
        typing=_rules.aggregate,
        ucd="stat.min",
    ),
    _builtin(
        "MAX",
        _A,
        [_sig("ARGUMENT", "x ANY")],
        "Greatest x.",
        node=exp.Max,
        typing=_rules.aggregate,
        ucd="stat.max",
    ),
    _builtin(
        "SUM",
        _A,
        [_sig("ARGUMENT", "x NUMERIC")],
        "Sum of x.",
        node=exp.Sum,
        typing=_rules.aggregate,
    ),
    # --- optional: strings ---
    _builtin(
        "LOWER",
        FunctionKind.STRING,
        [_sig("TEXT", "s TEXT")],
        "s in lower case.",
        node=exp.Lower,
        typing=_rules.string_case,
        feature_type=FEATURE_ADQL_STRING,
    ),
    _builtin(
        "UPPER",
        FunctionKind.STRING,
        [_sig("TEXT", "s TEXT")],
        "s in upper case.",
        node=exp.Upper,
        typing=_rules.string_case,
        feature_type=FEATURE_ADQL_STRING,
    ),
    # --- optional: conditional, type, unit ---
    _builtin(
        "COALESCE",
        FunctionKind.CONDITIONAL,
        [_sig("ARGUMENT", "x ANY", "y ANY", variadic=True)],
        "The first of its arguments that is not NULL.",
        node=exp.Coalesce,
        parse=_coalesce,
        node_args=frozenset({"this", "expressions"}),
        typing=_rules.coalesce,
        feature_type=FEATURE_ADQL_CONDITIONAL,
    ),
    dataclasses.replace(
        _builtin(
            "CAST",
            FunctionKind.CONVERSION,
            [_sig("ARGUMENT", "x ANY")],
            "x converted to the named type: CAST(x AS type).",
            node=exp.Cast,
            node_args=frozenset({"this", "to"}),
            typing=_rules.cast,
            feature_type=FEATURE_ADQL_TYPE,
        ),
        parse=None,  # CAST(x AS type) is grammar: the dialect's FUNCTION_PARSERS
    ),
    _builtin(
        "IN_UNIT",
        FunctionKind.UNIT,
        [_sig("DOUBLE", "x DOUBLE", "unit TEXT!")],
        "x converted to the VOUnit given as a string literal.",
        node=nodes.InUnit,
        parse=two_arguments(nodes.InUnit),
        node_args=_BINARY,
        typing=_rules.in_unit,
        feature_type=FEATURE_ADQL_UNIT,
    ),
]

_G, _GEO = FunctionKind.GEOMETRY, FEATURE_ADQL_GEO
_CS = "coordsys TEXT!"


def _geometry(
    node: type[nodes.GeometryFunction],
    signatures: Iterable[Signature],
    description: str,
    *,
    typing: TypingRule,
    unit: str | None = None,
    ucd: str | None = None,
) -> FunctionSpec:
    """A geometry function: its node keeps the arguments as written."""
    return _builtin(
        node.sql_name(),
        _G,
        signatures,
        description,
        node=node,
        parse=any_arguments(node),
        node_args=_LIST,
        typing=typing,
        unit=unit,
        ucd=ucd,
        feature_type=_GEO,
    )


_BUILTINS += [
    _geometry(
        nodes.Point,
        [
            _sig("POINT", "long DOUBLE", "lat DOUBLE"),
            _sig("POINT", _CS, "long DOUBLE", "lat DOUBLE"),
        ],
        "A position on the sky (degrees).",
        typing=_rules.constructor,
        unit="deg",
        ucd="pos.eq",
    ),
    _geometry(
        nodes.Circle,
        [
            _sig("CIRCLE", "center POINT", "radius DOUBLE"),
            _sig("CIRCLE", "long DOUBLE", "lat DOUBLE", "radius DOUBLE"),
            _sig("CIRCLE", _CS, "center POINT", "radius DOUBLE"),
            _sig("CIRCLE", _CS, "long DOUBLE", "lat DOUBLE", "radius DOUBLE"),
        ],
        "A cone on the sky: centre and radius (degrees).",
        typing=_rules.constructor,
        unit="deg",
        ucd="pos.outline",
    ),
    _geometry(
        nodes.Box,
        [
            _sig("POLYGON", "center POINT", "width DOUBLE", "height DOUBLE"),
            _sig("POLYGON", "long DOUBLE", "lat DOUBLE", "width DOUBLE", "height DOUBLE"),
            _sig("POLYGON", _CS, "center POINT", "width DOUBLE", "height DOUBLE"),
            _sig("POLYGON", _CS, "long DOUBLE", "lat DOUBLE", "width DOUBLE", "height DOUBLE"),
        ],
        "A box on the sky: centre, full width and height along the axes (degrees).",
        typing=_rules.constructor,
        unit="deg",
        ucd="pos.outline",
    ),
    _geometry(
        nodes.Polygon,
        [
            _sig("POLYGON", "p1 POINT", "p2 POINT", "p3 POINT", variadic=True),
            _sig("POLYGON", _CS, "p1 POINT", "p2 POINT", "p3 POINT", variadic=True),
        ],
        "A spherical polygon through three or more vertices (coordinate pairs or POINTs).",
        typing=_rules.constructor,
        unit="deg",
        ucd="pos.outline",
    ),
    _geometry(
        nodes.Region,
        [_sig("GEOMETRY", "text TEXT!")],
        "Deprecated: a region from an STC-S string literal.",
        typing=_rules.region,
    ),
    _geometry(
        nodes.Contains,
        [_sig("INTEGER", "a GEOMETRY", "b GEOMETRY")],
        "1 if geometry a lies within (or on the edge of) b, else 0.",
        typing=_rules.predicate,
    ),
    _geometry(
        nodes.Intersects,
        [_sig("INTEGER", "a GEOMETRY", "b GEOMETRY")],
        "1 if the geometries overlap, else 0.",
        typing=_rules.predicate,
    ),
    _geometry(
        nodes.Distance,
        [
            _sig("DOUBLE", "p1 POINT", "p2 POINT"),
            _sig("DOUBLE", "long1 DOUBLE", "lat1 DOUBLE", "long2 DOUBLE", "lat2 DOUBLE"),
        ],
        "Great-circle distance between two points, in degrees.",
        typing=_rules.distance,
        unit="deg",
        ucd="pos.angDistance",
    ),
    _geometry(
        nodes.Area,
        [_sig("DOUBLE", "g GEOMETRY")],
        "Area of a geometry, in square degrees.",
        typing=_rules.area,
        unit="deg**2",
        ucd="phys.angArea",
    ),
    _geometry(
        nodes.Centroid,
        [_sig("POINT", "g GEOMETRY")],
        "Centroid of a geometry.",
        typing=_rules.centroid,
        unit="deg",
        ucd="pos.eq",
    ),
    _geometry(
        nodes.Coord1,
        [_sig("DOUBLE", "p POINT")],
        "First coordinate (longitude) of a point, in degrees.",
        typing=_rules.coord,
        unit="deg",
        ucd="pos.eq.ra",
    ),
    _geometry(
        nodes.Coord2,
        [_sig("DOUBLE", "p POINT")],
        "Second coordinate (latitude) of a point, in degrees.",
        typing=_rules.coord,
        unit="deg",
        ucd="pos.eq.dec",
    ),
    _geometry(
        nodes.Coordsys,
        [_sig("TEXT", "g GEOMETRY")],
        "Deprecated: the coordinate-system string of a geometry.",
        typing=_rules.coordsys,
    ),
]

# 2.5 / ln(10): d(mag) = 2.5 / ln(10) * d(flux) / flux
_MAG_PER_RELATIVE_FLUX = 2.5 / math.log(10)
# -2.5 log10(f nJy / 3631 Jy) = -2.5 log10(f) + 2.5 log10(3631e9)
_AB_ZERO_POINT_NJY = 2.5 * math.log10(3631e9)

_POINT_STRUCT = "STRUCT(ra DOUBLE, dec DOUBLE)"

_UDFS: list[FunctionSpec] = [
    FunctionSpec(
        "ivo_healpix_index",
        FunctionKind.UDF,
        (
            _sig("BIGINT", "hpxOrder INTEGER", "long REAL", "lat REAL"),
            _sig("BIGINT", "hpxOrder INTEGER", "point POINT"),
        ),
        "Index (NESTED numbering) of the HEALPix cell of order hpxOrder that contains the "
        "position long, lat (degrees) or point.",
        ucd="pos.healpix",
        duckdb=DuckDbPythonUdf(
            healpix.ivo_healpix_index, ("INTEGER", "DOUBLE", "DOUBLE"), "BIGINT"
        ),
        typing=typing_rules.healpix,
    ),
    FunctionSpec(
        "ivo_healpix_center",
        FunctionKind.UDF,
        (_sig("POINT", "hpxOrder INTEGER", "hpxIndex BIGINT"),),
        "Centre of the HEALPix cell hpxIndex (NESTED numbering) at order hpxOrder.",
        duckdb=DuckDbPythonUdf(healpix.ivo_healpix_center, ("INTEGER", "BIGINT"), _POINT_STRUCT),
        typing=typing_rules.healpix,
    ),
    FunctionSpec(
        "ivo_hasword",
        FunctionKind.UDF,
        (_sig("INTEGER", "haystack TEXT", "needle TEXT"),),
        "1 if every word of needle occurs as a word of haystack (case-insensitive in ASCII; a "
        "word is a run of letters and digits), else 0.",
        duckdb=DuckDbMacro(
            (
                (
                    ("haystack", "needle"),
                    "CASE WHEN haystack IS NULL OR needle IS NULL THEN NULL ELSE CAST(COALESCE("
                    "list_bool_and(list_transform(regexp_extract_all(lower(needle), "
                    "'[a-z0-9]+'), lambda w: list_contains(regexp_extract_all(lower(haystack), "
                    "'[a-z0-9]+'), w))), false) AS INTEGER) END",
                ),
            )
        ),
    ),
    FunctionSpec(
        "ivo_nocasematch",
        FunctionKind.UDF,
        (_sig("INTEGER", "value TEXT", "pattern TEXT"),),
        "1 if value matches the LIKE pattern case-insensitively, else 0 (ADQL 2.1: use ILIKE).",
        duckdb=DuckDbMacro(((("value", "pattern"), "CAST(value ILIKE pattern AS INTEGER)"),)),
    ),
    FunctionSpec(
        "ivo_hashlist_has",
        FunctionKind.UDF,
        (_sig("INTEGER", "hashlist TEXT", "item TEXT"),),
        "1 if item is one of the '#'-separated words of hashlist (case-insensitive), else 0.",
        duckdb=DuckDbMacro(
            (
                (
                    ("hashlist", "item"),
                    "CAST(strpos(item, '#') = 0 AND list_contains(string_split(lower(hashlist), "
                    "'#'), lower(item)) AS INTEGER)",
                ),
            )
        ),
    ),
    FunctionSpec(
        "ivo_string_agg",
        FunctionKind.UDF,
        (_sig("TEXT", "expression TEXT", "delimiter TEXT"),),
        "Aggregate: the non-null values of expression in the group, joined by delimiter.",
        duckdb=DuckDbMacro(((("expression", "delimiter"), "string_agg(expression, delimiter)"),)),
        aggregate=True,
    ),
    FunctionSpec(
        "ivo_interval_overlaps",
        FunctionKind.UDF,
        (_sig("INTEGER", "a1 DOUBLE", "b1 DOUBLE", "a2 DOUBLE", "b2 DOUBLE"),),
        "1 if the interval [a1, b1] overlaps [a2, b2] (touching counts), else 0.",
        duckdb=DuckDbMacro(
            (
                (
                    ("a1", "b1", "a2", "b2"),
                    "CAST(a1 <= b1 AND a2 <= b2 AND a1 <= b2 AND a2 <= b1 AS INTEGER)",
                ),
            )
        ),
    ),
    FunctionSpec(
        "ivo_epoch_prop_pos",
        FunctionKind.UDF,
        (
            _sig(
                "POINT",
                "ra DOUBLE",
                "dec DOUBLE",
                "parallax DOUBLE",
                "pmra DOUBLE",
                "pmdec DOUBLE",
                "radial_velocity DOUBLE",
                "ref_epoch DOUBLE",
                "out_epoch DOUBLE",
            ),
        ),
        "Position at out_epoch of a star at ra, dec (deg) at ref_epoch (Julian years), with "
        "parallax (mas), proper motion pmra (includes cos dec), pmdec (mas/yr) and radial "
        "velocity (km/s); NULL parallax or radial velocity count as 0.",
        duckdb=DuckDbPythonUdf(astrometry.ivo_epoch_prop_pos, ("DOUBLE",) * 8, _POINT_STRUCT),
    ),
    FunctionSpec(
        "scisql_nanojanskyToAbMag",
        FunctionKind.UDF,
        (_sig("DOUBLE", "flux DOUBLE"),),
        "AB magnitude of a flux in nJy: -2.5 log10(flux) + 31.4; NULL unless flux > 0.",
        unit="mag",
        ucd="phot.mag",
        duckdb=DuckDbMacro(
            (
                (
                    ("flux",),
                    "CASE WHEN flux > 0 THEN -2.5 * log10(CAST(flux AS DOUBLE)) + "
                    f"CAST({_AB_ZERO_POINT_NJY!r} AS DOUBLE) END",
                ),
            )
        ),
    ),
    FunctionSpec(
        "scisql_nanojanskyToAbMagSigma",
        FunctionKind.UDF,
        (_sig("DOUBLE", "flux DOUBLE", "fluxSigma DOUBLE"),),
        "Error of the AB magnitude of a flux in nJy with error fluxSigma: "
        "2.5 / ln(10) * fluxSigma / |flux|; NULL when flux is 0.",
        unit="mag",
        ucd="stat.error;phot.mag",
        duckdb=DuckDbMacro(
            (
                (
                    ("flux", "fluxSigma"),
                    f"CASE WHEN flux <> 0 THEN CAST({_MAG_PER_RELATIVE_FLUX!r} AS DOUBLE) * "
                    "CAST(fluxSigma AS DOUBLE) / abs(CAST(flux AS DOUBLE)) END",
                ),
            )
        ),
    ),
]


class _Registry(dict[str, FunctionSpec]):
    """:data:`FUNCTIONS`: a dict that keeps the tables derived from it up to date.

    Adding an entry (``FUNCTIONS[key] = spec``, ``update`` ...) or removing one
    (``del FUNCTIONS[key]``, ``pop`` ...) updates the dialect's parser table
    (:data:`PARSE_FORMS`) and the index by node type (:func:`spec_for`), so every consumer
    sees one table.
    """

    def __setitem__(self, key: str, spec: FunctionSpec) -> None:
        if key in self:
            self._forget(self[key])
        super().__setitem__(key, spec)
        if spec.node is not None:
            _BY_NODE[spec.node] = spec
        if spec.parse is not None:
            PARSE_FORMS[key] = spec.parse

    def __delitem__(self, key: str) -> None:
        self._forget(self[key])
        super().__delitem__(key)

    def pop(self, key: str, *default: Any) -> Any:
        if key in self:
            self._forget(self[key])
        return super().pop(key, *default)

    def popitem(self) -> tuple[str, FunctionSpec]:
        key = next(reversed(self))
        return key, self.pop(key)

    def clear(self) -> None:
        for key in list(self):
            del self[key]

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, spec in dict(*args, **kwargs).items():
            self[key] = spec

    def __ior__(self, other: Any) -> Any:  # type: ignore[misc]
        self.update(other)
        return self

    @staticmethod
    def _forget(spec: FunctionSpec) -> None:
        if spec.node is not None and _BY_NODE.get(spec.node) is spec:
            del _BY_NODE[spec.node]
        PARSE_FORMS.pop(spec.name.upper(), None)


#: The dialect's parser table: upper-case name -> parse form, for every function with one
#: (derived from :data:`FUNCTIONS`; the dialect's parser reads this very dict).
PARSE_FORMS: dict[str, ParseForm] = {}
_BY_NODE: dict[type[exp.Expr], FunctionSpec] = {}

#: Every callable function, keyed by upper-case name.
FUNCTIONS: dict[str, FunctionSpec] = _Registry()


def spec_for(node_type: type[exp.Expr]) -> FunctionSpec | None:
    """The built-in function whose calls parse to nodes of ``node_type``, or ``None``."""
    return _BY_NODE.get(node_type)


def spec_of(node: exp.Expr) -> FunctionSpec | None:
    """The function ``node`` calls (a built-in's node or a UDF call), or ``None``."""
    if isinstance(node, nodes.UdfCall):
        return FUNCTIONS.get(str(node.this).upper())
    return _BY_NODE.get(type(node))


def register_udf(spec: FunctionSpec) -> FunctionSpec:
    """Add a user-defined function to :data:`FUNCTIONS` (the one way to add one).

    Parameters
    ----------
    spec
        The function; its name must be a regular identifier that is neither reserved nor
        already registered, and its kind ``FunctionKind.UDF``.

    Returns
    -------
    FunctionSpec
        ``spec``, so the call can be used as an expression.
    """
    key = spec.name.upper()
    if spec.kind is not FunctionKind.UDF:
        raise ValueError(f"{spec.name}: register_udf takes user-defined functions only")
    if not is_regular_identifier(spec.name) or is_reserved(spec.name):
        raise ValueError(f"{spec.name}: a UDF name must be a non-reserved regular identifier")
    if key in FUNCTIONS:
        raise ValueError(f"{spec.name}: already registered")
    FUNCTIONS[key] = spec
    return spec


def register_builtin(spec: FunctionSpec) -> FunctionSpec:
    """Add a function with its own node type, parse form and typing rule (an ADQL built-in).

    The built-ins are the entries of ``_BUILTINS``; this is for extensions and tests.  Its
    name must not be registered yet, nor its node type used by another function.
    """
    key = spec.name.upper()
    if spec.node is None or spec.parse is None or spec.typing is None:
        raise ValueError(f"{spec.name}: a built-in needs a node type, a parse form and a rule")
    if key in FUNCTIONS or spec.node in _BY_NODE:
        raise ValueError(f"{spec.name}: already registered")
    FUNCTIONS[key] = spec
    return spec


for _spec in _BUILTINS:
    FUNCTIONS[_spec.name] = _spec
for _spec in _UDFS:
    register_udf(_spec)


def lookup(name: str) -> FunctionSpec | None:
    """The function called ``name`` (case-insensitive), or ``None``."""
    return FUNCTIONS.get(name.upper())


def duckdb_macro_sql(spec: FunctionSpec) -> str:
    """The ``CREATE OR REPLACE MACRO`` statement that defines a macro-implemented UDF.

    Raises
    ------
    ValueError
        When ``spec`` is not implemented by a DuckDB macro.
    """
    if not isinstance(spec.duckdb, DuckDbMacro):
        raise ValueError(f"{spec.name} is not implemented as a DuckDB macro")
    bodies = ", ".join(f"({', '.join(params)}) AS {body}" for params, body in spec.duckdb.overloads)
    return f"CREATE OR REPLACE MACRO {spec.name}{bodies}"


def language_features() -> tuple[LanguageFeature, ...]:
    """The optional ADQL features and UDFs a TAP capabilities document declares.

    One entry per optional keyword and built-in function (by its TAPRegExt feature type) and
    one per signature of every registered UDF.
    """
    keywords = [
        (FEATURE_ADQL_STRING, "ILIKE"),
        (FEATURE_ADQL_SETS, "UNION"),
        (FEATURE_ADQL_SETS, "EXCEPT"),
        (FEATURE_ADQL_SETS, "INTERSECT"),
        (FEATURE_ADQL_COMMON_TABLE, "WITH"),
        (FEATURE_ADQL_OFFSET, "OFFSET"),
    ]
    out = [LanguageFeature(t, f) for t, f in keywords]
    for spec in FUNCTIONS.values():
        if spec.is_udf:
            out += [
                LanguageFeature(FEATURE_UDF, f, spec.description) for f in spec.signature_forms()
            ]
        elif spec.feature_type is not None:
            out.append(LanguageFeature(spec.feature_type, spec.name))
    return tuple(out)
