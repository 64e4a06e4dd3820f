"""The one registry of functions an ADQL query may call: ADQL built-ins and our UDFs.

Each :class:`FunctionSpec` says how a function may be called (its signatures: argument names
and ADQL types, result type), its unit, what it does, which TAPRegExt language feature
declares it, and, for user-defined functions, how DuckDB runs it.  The parser refuses any
function that is not here; the TAP capabilities document advertises the UDFs from here; the
translator takes each UDF's DuckDB implementation from here.

Registering a UDF is one :func:`register_udf` call (the built-in UDFs are the entries of
``_UDFS`` below).  Names of UDFs are regular identifiers and match case-insensitively; the
registered spelling is the canonical one (``scisql_nanojanskyToAbMag``).

DuckDB implementations come in two kinds:

* :class:`DuckDbMacro`: a SQL macro (one body per arity).  :func:`duckdb_macro_sql` gives the
  ``CREATE OR REPLACE MACRO`` statement the engine runs once per connection; queries then
  call the function under its registered name.
* :class:`DuckDbPythonUdf`: a scalar function the engine registers with
  ``duckdb.DuckDBPyConnection.create_function(name, callable, arg_types, return_type)``
  before running a query; ``callable`` is named by ``python`` (``"module:function"``) and the
  DuckDB types are given here.  The HEALPix and epoch-propagation UDFs are of this kind: their
  numerics live in :mod:`skyvault.sky` (written separately); the signature forms that take a
  POINT are rewritten by the translator into the ones that take coordinates.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlglot import exp

from skyvault.adql.reserved import is_regular_identifier, is_reserved

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
    "DuckDbMacro",
    "DuckDbPythonUdf",
    "FunctionKind",
    "FunctionSpec",
    "LanguageFeature",
    "Param",
    "Signature",
    "duckdb_macro_sql",
    "language_features",
    "lookup",
    "register_udf",
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
    python
        ``"module:function"`` of the vectorised implementation.
    arg_types
        DuckDB argument types (``"INTEGER"``, ``"DOUBLE"`` ...) of the form DuckDB sees.
    return_type
        DuckDB result type (a ``STRUCT(ra DOUBLE, dec DOUBLE)`` for a POINT).
    """

    python: str
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
        How DuckDB runs a UDF (``None`` for ADQL built-ins: the translator maps those).
    """

    name: str
    kind: FunctionKind
    signatures: tuple[Signature, ...]
    description: str
    unit: str | None = None
    feature_type: str | None = None
    duckdb: DuckDbMacro | DuckDbPythonUdf | None = None

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
        return self.kind is FunctionKind.AGGREGATE or self.name == "ivo_string_agg"

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


def _builtin(
    name: str,
    kind: FunctionKind,
    signatures: Iterable[Signature],
    description: str,
    *,
    unit: str | None = None,
    feature_type: str | None = None,
) -> FunctionSpec:
    return FunctionSpec(name, kind, tuple(signatures), description, unit, feature_type)


# --- parse forms: how the dialect's parser builds a call's node -----------------------------


def _first_arg(cls: type[exp.Func]) -> Callable[[Sequence[Any]], exp.Expr]:
    """Builder of a one-argument node: ``cls(this=args[0])``, refusing other arities later."""

    def build(args: Sequence[Any]) -> exp.Expr:
        return _with_arity(cls(this=args[0] if args else None), args)

    return build


def _with_arity(node: exp.Expr, args: Sequence[Any]) -> exp.Expr:
    """Remember how many arguments the query wrote (the validator checks arity from it)."""
    node.meta["adql_n_args"] = len(args)
    return node


def _two_args(cls: type[exp.Expr], second: str = "expression") -> Callable[..., exp.Expr]:
    def build(args: Sequence[Any]) -> exp.Expr:
        kwargs = {"this": args[0] if args else None}
        if len(args) > 1:
            kwargs[second] = args[1]
        return _with_arity(cls(**kwargs), args)

    return build


def _var_args(cls: type[exp.Func]) -> Callable[..., exp.Expr]:
    def build(args: Sequence[Any]) -> exp.Expr:
        return _with_arity(cls(expressions=list(args)), args)

    return build


def _log10(args: Sequence[Any]) -> exp.Expr:
    node = exp.Log(this=exp.Literal.number(10), expression=args[0] if args else None)
    return _with_arity(node, args)


def _rand(args: Sequence[Any]) -> exp.Expr:
    return _with_arity(exp.Rand(this=args[0] if args else None), args)


def _pi(args: Sequence[Any]) -> exp.Expr:
    return _with_arity(exp.Pi(), args)


def _coalesce(args: Sequence[Any]) -> exp.Expr:
    node = exp.Coalesce(this=args[0] if args else None, expressions=list(args[1:]))
    return _with_arity(node, args)


def _aggregate(cls: type[exp.Func]) -> Callable[..., exp.Expr]:
    def build(args: Sequence[Any]) -> exp.Expr:
        return _with_arity(cls(this=args[0] if args else None), args)

    return build


_M, _T = FunctionKind.MATH, FunctionKind.TRIGONOMETRIC
_X = "x DOUBLE"

_BUILTINS: list[FunctionSpec] = [
    # --- mathematical (ADQL 2.1 section 2.3) ---
    _builtin("ABS", _M, [_sig("DOUBLE", _X)], "Absolute value of x."),
    _builtin("CEILING", _M, [_sig("DOUBLE", _X)], "Smallest integer not less than x."),
    _builtin("DEGREES", _M, [_sig("DOUBLE", _X)], "Radians x in degrees.", unit="deg"),
    _builtin("EXP", _M, [_sig("DOUBLE", _X)], "e raised to the power x."),
    _builtin("FLOOR", _M, [_sig("DOUBLE", _X)], "Largest integer not greater than x."),
    _builtin("LOG", _M, [_sig("DOUBLE", _X)], "Natural logarithm of x (x > 0)."),
    _builtin("LOG10", _M, [_sig("DOUBLE", _X)], "Base-10 logarithm of x (x > 0)."),
    _builtin("MOD", _M, [_sig("DOUBLE", _X, "y DOUBLE")], "Remainder of x / y."),
    _builtin("PI", _M, [_sig("DOUBLE")], "The constant pi."),
    _builtin("POWER", _M, [_sig("DOUBLE", _X, "y DOUBLE")], "x raised to the power y."),
    _builtin("RADIANS", _M, [_sig("DOUBLE", _X)], "Degrees x in radians.", unit="rad"),
    _builtin(
        "RAND",
        _M,
        [_sig("DOUBLE"), _sig("DOUBLE", "seed INTEGER!")],
        "Random value in [0, 1), optionally seeded.",
    ),
    _builtin(
        "ROUND",
        _M,
        [_sig("DOUBLE", _X), _sig("DOUBLE", _X, "n INTEGER!")],
        "x rounded to n decimal places (default 0; negative n rounds left of the point).",
    ),
    _builtin("SQRT", _M, [_sig("DOUBLE", _X)], "Positive square root of x."),
    _builtin(
        "TRUNCATE",
        _M,
        [_sig("DOUBLE", _X), _sig("DOUBLE", _X, "n INTEGER!")],
        "x truncated to n decimal places (default 0).",
    ),
    # --- trigonometric (angles in radians) ---
    _builtin("ACOS", _T, [_sig("DOUBLE", _X)], "Arc cosine of x, in [0, pi].", unit="rad"),
    _builtin("ASIN", _T, [_sig("DOUBLE", _X)], "Arc sine of x, in [-pi/2, pi/2].", unit="rad"),
    _builtin("ATAN", _T, [_sig("DOUBLE", _X)], "Arc tangent of x, in [-pi/2, pi/2].", unit="rad"),
    _builtin(
        "ATAN2",
        _T,
        [_sig("DOUBLE", "y DOUBLE", _X)],
        "Polar angle of (x, y), in [-pi, pi].",
        unit="rad",
    ),
    _builtin("COS", _T, [_sig("DOUBLE", _X)], "Cosine of x (radians)."),
    _builtin("COT", _T, [_sig("DOUBLE", _X)], "Cotangent of x (radians)."),
    _builtin("SIN", _T, [_sig("DOUBLE", _X)], "Sine of x (radians)."),
    _builtin("TAN", _T, [_sig("DOUBLE", _X)], "Tangent of x (radians)."),
    # --- aggregates (set functions) ---
    _builtin(
        "COUNT",
        FunctionKind.AGGREGATE,
        [_sig("BIGINT", "x ANY")],
        "Number of rows (COUNT(*)) or of non-null values.",
    ),
    _builtin("AVG", FunctionKind.AGGREGATE, [_sig("DOUBLE", "x NUMERIC")], "Mean of x."),
    _builtin("MIN", FunctionKind.AGGREGATE, [_sig("ARGUMENT", "x ANY")], "Least x."),
    _builtin("MAX", FunctionKind.AGGREGATE, [_sig("ARGUMENT", "x ANY")], "Greatest x."),
    _builtin("SUM", FunctionKind.AGGREGATE, [_sig("ARGUMENT", "x NUMERIC")], "Sum of x."),
    # --- optional: strings ---
    _builtin(
        "LOWER",
        FunctionKind.STRING,
        [_sig("TEXT", "s TEXT")],
        "s in lower case.",
        feature_type=FEATURE_ADQL_STRING,
    ),
    _builtin(
        "UPPER",
        FunctionKind.STRING,
        [_sig("TEXT", "s TEXT")],
        "s in upper case.",
        feature_type=FEATURE_ADQL_STRING,
    ),
    # --- optional: conditional, type, unit ---
    _builtin(
        "COALESCE",
        FunctionKind.CONDITIONAL,
        [_sig("ARGUMENT", "x ANY", "y ANY", variadic=True)],
        "The first of its arguments that is not NULL.",
        feature_type=FEATURE_ADQL_CONDITIONAL,
    ),
    _builtin(
        "CAST",
        FunctionKind.CONVERSION,
        [_sig("ARGUMENT", "x ANY")],
        "x converted to the named type: CAST(x AS type).",
        feature_type=FEATURE_ADQL_TYPE,
    ),
    _builtin(
        "IN_UNIT",
        FunctionKind.UNIT,
        [_sig("DOUBLE", "x DOUBLE", "unit TEXT!")],
        "x converted to the VOUnit given as a string literal.",
        feature_type=FEATURE_ADQL_UNIT,
    ),
]

_G, _GEO = FunctionKind.GEOMETRY, FEATURE_ADQL_GEO
_CS = "coordsys TEXT!"
_BUILTINS += [
    _builtin(
        "POINT",
        _G,
        [
            _sig("POINT", "long DOUBLE", "lat DOUBLE"),
            _sig("POINT", _CS, "long DOUBLE", "lat DOUBLE"),
        ],
        "A position on the sky (degrees).",
        feature_type=_GEO,
    ),
    _builtin(
        "CIRCLE",
        _G,
        [
            _sig("CIRCLE", "center POINT", "radius DOUBLE"),
            _sig("CIRCLE", "long DOUBLE", "lat DOUBLE", "radius DOUBLE"),
            _sig("CIRCLE", _CS, "center POINT", "radius DOUBLE"),
            _sig("CIRCLE", _CS, "long DOUBLE", "lat DOUBLE", "radius DOUBLE"),
        ],
        "A cone on the sky: centre and radius (degrees).",
        feature_type=_GEO,
    ),
    _builtin(
        "BOX",
        _G,
        [
            _sig("POLYGON", "center POINT", "width DOUBLE", "height DOUBLE"),
            _sig("POLYGON", "long DOUBLE", "lat DOUBLE", "width DOUBLE", "height DOUBLE"),
            _sig("POLYGON", _CS, "center POINT", "width DOUBLE", "height DOUBLE"),
            _sig("POLYGON", _CS, "long DOUBLE", "lat DOUBLE", "width DOUBLE", "height DOUBLE"),
        ],
        "A box on the sky: centre, full width and height along the axes (degrees).",
        feature_type=_GEO,
    ),
    _builtin(
        "POLYGON",
        _G,
        [
            _sig("POLYGON", "p1 POINT", "p2 POINT", "p3 POINT", variadic=True),
            _sig("POLYGON", _CS, "p1 POINT", "p2 POINT", "p3 POINT", variadic=True),
        ],
        "A spherical polygon through three or more vertices (coordinate pairs or POINTs).",
        feature_type=_GEO,
    ),
    _builtin(
        "REGION",
        _G,
        [_sig("GEOMETRY", "text TEXT!")],
        "Deprecated: a region from an STC-S string literal.",
        feature_type=_GEO,
    ),
    _builtin(
        "CONTAINS",
        _G,
        [_sig("INTEGER", "a GEOMETRY", "b GEOMETRY")],
        "1 if geometry a lies within (or on the edge of) b, else 0.",
        feature_type=_GEO,
    ),
    _builtin(
        "INTERSECTS",
        _G,
        [_sig("INTEGER", "a GEOMETRY", "b GEOMETRY")],
        "1 if the geometries overlap, else 0.",
        feature_type=_GEO,
    ),
    _builtin(
        "DISTANCE",
        _G,
        [
            _sig("DOUBLE", "p1 POINT", "p2 POINT"),
            _sig("DOUBLE", "long1 DOUBLE", "lat1 DOUBLE", "long2 DOUBLE", "lat2 DOUBLE"),
        ],
        "Great-circle distance between two points, in degrees.",
        unit="deg",
        feature_type=_GEO,
    ),
    _builtin(
        "AREA",
        _G,
        [_sig("DOUBLE", "g GEOMETRY")],
        "Area of a geometry, in square degrees.",
        unit="deg**2",
        feature_type=_GEO,
    ),
    _builtin(
        "CENTROID",
        _G,
        [_sig("POINT", "g GEOMETRY")],
        "Centroid of a geometry.",
        feature_type=_GEO,
    ),
    _builtin(
        "COORD1",
        _G,
        [_sig("DOUBLE", "p POINT")],
        "First coordinate (longitude) of a point, in degrees.",
        unit="deg",
        feature_type=_GEO,
    ),
    _builtin(
        "COORD2",
        _G,
        [_sig("DOUBLE", "p POINT")],
        "Second coordinate (latitude) of a point, in degrees.",
        unit="deg",
        feature_type=_GEO,
    ),
    _builtin(
        "COORDSYS",
        _G,
        [_sig("TEXT", "g GEOMETRY")],
        "Deprecated: the coordinate-system string of a geometry.",
        feature_type=_GEO,
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
        duckdb=DuckDbPythonUdf(
            "skyvault.sky.healpix:ivo_healpix_index", ("INTEGER", "DOUBLE", "DOUBLE"), "BIGINT"
        ),
    ),
    FunctionSpec(
        "ivo_healpix_center",
        FunctionKind.UDF,
        (_sig("POINT", "hpxOrder INTEGER", "hpxIndex BIGINT"),),
        "Centre of the HEALPix cell hpxIndex (NESTED numbering) at order hpxOrder.",
        duckdb=DuckDbPythonUdf(
            "skyvault.sky.healpix:ivo_healpix_center", ("INTEGER", "BIGINT"), _POINT_STRUCT
        ),
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
        duckdb=DuckDbPythonUdf(
            "skyvault.sky.astrometry:ivo_epoch_prop_pos", ("DOUBLE",) * 8, _POINT_STRUCT
        ),
    ),
    FunctionSpec(
        "scisql_nanojanskyToAbMag",
        FunctionKind.UDF,
        (_sig("DOUBLE", "flux DOUBLE"),),
        "AB magnitude of a flux in nJy: -2.5 log10(flux) + 31.4; NULL unless flux > 0.",
        unit="mag",
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

#: Every callable function, keyed by upper-case name.
FUNCTIONS: dict[str, FunctionSpec] = {}


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
