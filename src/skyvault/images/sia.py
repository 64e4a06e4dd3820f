"""SIA 2.0 ``{query}`` parameters, checked, and the ADQL query over ObsCore they ask for.

SIA 2.0 (IVOA REC 2015-12-23, §2.2) finds images by constraints on the ObsCore columns.
:func:`parse_sia` checks a request's parameters into a :class:`SiaRequest`;
:func:`sia_query` turns that into one ADQL ``SELECT * FROM ivoa.ObsCore WHERE ...``, built
as a syntax tree (sqlglot nodes of :mod:`skyvault.adql`) and written by the ADQL dialect's
own generator, so a value from the request is only ever a literal of the tree (string
literals escaped by the generator) and never SQL text.  The service runs that query like any
TAP query: the same engine and the caller's visible tables, so a hidden collection adds no row.

What each parameter constrains (names case-insensitive as in DALI, values exact):

========== ============================ ===============================================
parameter  value                        satisfied when
========== ============================ ===============================================
POS        ``CIRCLE ra dec r``,         the shape intersects ``s_region`` (ICRS degrees)
           ``RANGE ra1 ra2 dec1 dec2``,
           ``POLYGON ra1 dec1 ...``
BAND       interval, metres             it meets ``[em_min, em_max]``
TIME       interval, MJD                it meets ``[t_min, t_max]``
POL        a state (``I``, ``Q`` ...)   ``pol_states`` lists it
FOV        interval, degrees            it holds ``s_fov``
SPATRES    interval, arcsec             it holds ``s_resolution``
EXPTIME    interval, seconds            it holds ``t_exptime``
TIMERES    interval, seconds            it holds ``t_resolution``
SPECRP     interval                     it holds ``em_res_power``
ID         an IVOID                     ``obs_publisher_did`` (case-insensitively)
COLLECTION text                         ``obs_collection``
FACILITY   text                         ``facility_name``
INSTRUMENT text                         ``instrument_name``
DPTYPE     text                         ``dataproduct_type``
CALIB      0 to 4                       ``calib_level``
TARGET     text                         ``target_name``
FORMAT     a MIME type                  ``access_format``
========== ============================ ===============================================

Every parameter may be repeated: the values of one parameter are OR-ed, different
parameters AND-ed.  An interval is ``lo hi`` (``-Inf``/``+Inf`` for an open side, bounds
included) or one number (``lo = hi``).  Text matches exactly and case-sensitively (ID
excepted, as the standard says).  A NULL column never satisfies a constraint on it (§2.2:
an image of unknown time coverage is not found by TIME).  An empty value (``BAND=``) is no
value.  ``MAXREC`` and ``RESPONSEFORMAT`` are DALI's; parameters SIA does not define are
ignored, as DALI asks of services.

RANGE's sides of constant declination are small circles, which ADQL's geometries do not
have: a range over every right ascension (a polar cap, a band) becomes one or two caps the
footprint must meet (exact); any other range becomes the union (OR) of polygons side by
side in right ascension (none crossing the equator, ≤ 90° wide, ≤ 8 chords a side) whose
declination sides are great-circle chords narrow enough to lie within
:data:`RANGE_TOLERANCE_ARCSEC` of the parallel — up to :data:`MAX_PIECES` chords per side of
the equator, so a range wider than about 10° is coarser (at most ~8″ for one 90° wide at
declination ±45°, more near a pole).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sqlglot import exp

from skyvault.adql import nodes
from skyvault.adql.dialect import Adql
from skyvault.errors import UsageError
from skyvault.images import obstap
from skyvault.images.soda import POL_STATES, Interval, SpatialFilter, describe_region, parse_pos
from skyvault.sky.regions import Circle, Polygon, RaDecRange

__all__ = [
    "CALIB_LEVELS",
    "INTERVAL_PARAMS",
    "MAX_PIECES",
    "OBSCORE_TABLE",
    "PARAMETERS",
    "RANGE_TOLERANCE_ARCSEC",
    "SIA_STANDARD_ID",
    "TEXT_PARAMS",
    "SiaRequest",
    "parse_sia",
    "range_caps",
    "range_polygons",
    "sia_query",
]

SIA_STANDARD_ID = "ivo://ivoa.net/std/SIA#query-2.0"

#: The table SIA queries: the union of the caller's visible collections.
OBSCORE_TABLE = f"{obstap.OBSCORE_SCHEMA}.{obstap.OBSCORE_TABLE}"

#: Interval parameters that must hold an ObsCore column's value: the column and the unit.
INTERVAL_PARAMS: dict[str, tuple[str, str]] = {
    "FOV": ("s_fov", "degrees"),
    "SPATRES": ("s_resolution", "arcsec"),
    "EXPTIME": ("t_exptime", "seconds"),
    "TIMERES": ("t_resolution", "seconds"),
    "SPECRP": ("em_res_power", "(λ/Δλ, no unit)"),
}
#: Interval parameters matched against a range of the image: (low column, high column, unit).
_RANGED: dict[str, tuple[str, str, str]] = {
    "BAND": ("em_min", "em_max", "metres"),
    "TIME": ("t_min", "t_max", "MJD"),
}
#: Text parameters and the ObsCore column each is compared with.
TEXT_PARAMS: dict[str, str] = {
    "ID": "obs_publisher_did",
    "COLLECTION": "obs_collection",
    "FACILITY": "facility_name",
    "INSTRUMENT": "instrument_name",
    "DPTYPE": "dataproduct_type",
    "TARGET": "target_name",
    "FORMAT": "access_format",
}
#: ObsCore's calibration levels.
CALIB_LEVELS = (0, 1, 2, 3, 4)

#: Every query parameter of SIA 2.0 (besides DALI's MAXREC and RESPONSEFORMAT).
PARAMETERS = ("POS", *_RANGED, "POL", *INTERVAL_PARAMS, *TEXT_PARAMS, "CALIB")

#: How far a RANGE polygon's chords may stray from the parallel they stand for (arcsec).
RANGE_TOLERANCE_ARCSEC = 0.1
#: Most chords a RANGE parallel is cut into per span of right ascension and side of the equator.
MAX_PIECES = 64
#: Widest piece of right ascension a RANGE polygon covers (degrees).
_PIECE_DEGREES = 90.0
#: Most chords a side of one RANGE polygon has.
_CHORDS = 8

_ADQL = Adql()

_SYNTAX = {
    "POS": "POS=CIRCLE ra dec radius, POS=RANGE ra1 ra2 dec1 dec2 or "
    "POS=POLYGON ra1 dec1 ra2 dec2 ra3 dec3 ... (ICRS degrees; RANGE takes -Inf/+Inf)",
    "POL": "POL=one of " + " ".join(POL_STATES) + " (repeat POL for several states)",
    "CALIB": "CALIB=0, 1, 2, 3 or 4 (repeat CALIB for several levels)",
    "MAXREC": "MAXREC=a whole number ≥ 0 (0 returns the columns only)",
}


def _usage(parameter: str, problem: str, hint: str | None = None) -> UsageError:
    """An error naming ``parameter`` (message starting ``UsageFault:``, as SIA §4 asks)."""
    return UsageError(f"UsageFault: {parameter}: {problem}", hint=hint or _syntax(parameter))


def _syntax(parameter: str) -> str:
    if parameter in _SYNTAX:
        return f"send {_SYNTAX[parameter]}"
    if parameter in INTERVAL_PARAMS or parameter in _RANGED:
        unit = (INTERVAL_PARAMS.get(parameter) or _RANGED[parameter][1:])[-1]
        return f"send {parameter}=lo hi in {unit} (-Inf/+Inf for an open side) or one value"
    return f"send {parameter}=<text>"


def _number(parameter: str, word: str) -> float:
    try:
        value = float(word)
    except ValueError:
        raise _usage(parameter, f"{word!r} is not a number") from None
    if math.isnan(value):
        raise _usage(parameter, f"{word!r} is not a number")
    return value


def _interval(parameter: str, text: str) -> Interval:
    """``lo hi`` or one value; ±Inf open; bounds included."""
    words = text.split()
    if len(words) not in (1, 2):
        raise _usage(parameter, f"an interval is one or two numbers, got {len(words)}: {text!r}")
    values = [_number(parameter, w) for w in words]
    lo, hi = values[0], values[-1]
    if lo > hi:
        raise _usage(
            parameter, f"the low limit {words[0]} is above the high limit {words[-1]}: the "
            "interval is empty",
            hint=f"send {parameter}={words[-1]} {words[0]}",
        )  # fmt: skip
    if lo == math.inf or hi == -math.inf:
        raise _usage(parameter, f"{text.strip()!r} is an empty interval")
    return Interval(lo, hi)


def _maxrec(values: Sequence[str], default: int, limit: int) -> tuple[int, int | None]:
    if len(values) > 1:
        raise _usage("MAXREC", f"given {len(values)} times; it takes one value")
    if not values or not values[0].strip():
        return min(default, limit), None
    text = values[0].strip()
    try:
        requested = int(text)
    except ValueError:
        raise _usage("MAXREC", f"{text!r} is not a whole number") from None
    if requested < 0:
        raise _usage("MAXREC", f"{requested} is negative")
    return min(requested, limit), requested


@dataclass(frozen=True)
class SiaRequest:
    """The checked constraints of a SIA 2.0 query; an empty tuple: not constrained.

    ``intervals`` holds the interval parameters by name (BAND, TIME, FOV, SPATRES, EXPTIME,
    TIMERES, SPECRP); ``text`` the text parameters (ID, COLLECTION ...).
    """

    pos: tuple[SpatialFilter, ...] = ()
    intervals: Mapping[str, tuple[Interval, ...]] = field(default_factory=dict)
    pol: tuple[str, ...] = ()
    text: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    calib: tuple[int, ...] = ()
    maxrec: int = 0
    maxrec_requested: int | None = None
    response_format: str | None = None


def parse_sia(
    params: Mapping[str, Sequence[str]], *, maxrec_default: int, maxrec_limit: int
) -> SiaRequest:
    """Check the SIA 2.0 parameters of a request.

    Parameters
    ----------
    params
        Every value of every parameter, by name (any case), in request order.
    maxrec_default, maxrec_limit
        The service's row limits: MAXREC when absent, and the most it may be.

    Raises
    ------
    UsageError
        A malformed value; the message starts ``UsageFault:`` and names the parameter, the
        hint shows what to send.
    """
    by_name: dict[str, list[str]] = {}
    for name, values in params.items():
        by_name.setdefault(name.upper(), []).extend(values)

    def given(name: str) -> list[str]:
        return [v for v in by_name.get(name, []) if v.strip()]

    pos = tuple(_pos(v) for v in given("POS"))
    intervals = {
        name: tuple(_interval(name, v) for v in given(name))
        for name in (*_RANGED, *INTERVAL_PARAMS)
    }
    if any(interval.hi <= 0 for interval in intervals["BAND"]):
        raise _usage("BAND", "wavelengths are positive (metres)")
    pol: list[str] = []
    for value in given("POL"):
        for state in value.split():
            if state not in POL_STATES:
                upper = state.upper() in POL_STATES
                note = f" (states are upper case: {state.upper()})" if upper else ""
                raise _usage("POL", f"unknown polarisation state {state!r}{note}")
            if state not in pol:
                pol.append(state)
    text = {name: tuple(given(name)) for name in TEXT_PARAMS}
    calib: list[int] = []
    for value in given("CALIB"):
        try:
            level = int(value.strip())
        except ValueError:
            raise _usage("CALIB", f"{value!r} is not a whole number") from None
        if level not in CALIB_LEVELS:
            raise _usage("CALIB", f"{level} is not an ObsCore calibration level")
        calib.append(level)
    maxrec, requested = _maxrec(by_name.get("MAXREC", []), maxrec_default, maxrec_limit)
    formats = by_name.get("RESPONSEFORMAT", [])
    if len(formats) > 1:
        raise _usage("RESPONSEFORMAT", f"given {len(formats)} times; it takes one value",
                     hint="send RESPONSEFORMAT once (votable, csv, fits, parquet ...)")  # fmt: skip
    fmt = formats[0] if formats and formats[0].strip() else None
    return SiaRequest(pos, intervals, tuple(pol), text, tuple(calib), maxrec, requested, fmt)


def _pos(text: str) -> SpatialFilter:
    try:
        region = parse_pos(text)
    except UsageError as exc:
        # soda's message already names POS ("POS: ...")
        raise UsageError(f"UsageFault: {exc.message}", hint=exc.hint) from None
    if isinstance(region, RaDecRange) and (
        region.dec_min == region.dec_max or region.ra_min == region.ra_max
    ):
        raise _usage(
            "POS",
            f"{describe_region(region)} has no area",
            hint="give a RANGE with ra1 < ra2 and dec1 < dec2, or a small CIRCLE",
        )
    return region


# --- the ADQL ------------------------------------------------------------------------------


def _col(name: str) -> exp.Column:
    return exp.column(name)


def _num(value: float) -> exp.Expr:
    literal = exp.Literal.number(repr(abs(value)))
    return exp.Neg(this=literal) if value < 0 else literal


def _str(value: str) -> exp.Literal:
    return exp.Literal.string(value)


def _any(conditions: Sequence[exp.Expr]) -> exp.Expr:
    """The conditions OR-ed (one: itself), parenthesised where they join an AND."""
    if len(conditions) == 1:
        return conditions[0]
    return exp.Paren(this=exp.or_(*conditions, copy=False))


def _not_null(column: str) -> exp.Expr:
    return exp.Not(this=exp.Is(this=_col(column), expression=exp.Null()))


def _holds(column: str, interval: Interval) -> exp.Expr:
    """``column`` lies in the interval (an open side: only that the column is known)."""
    parts: list[exp.Expr] = []
    if interval.lo == interval.hi:
        return exp.EQ(this=_col(column), expression=_num(interval.lo))
    if not math.isinf(interval.lo):
        parts.append(exp.GTE(this=_col(column), expression=_num(interval.lo)))
    if not math.isinf(interval.hi):
        parts.append(exp.LTE(this=_col(column), expression=_num(interval.hi)))
    if not parts:
        return _not_null(column)
    return exp.and_(*parts, copy=False) if len(parts) > 1 else parts[0]


def _meets(low: str, high: str, interval: Interval) -> exp.Expr:
    """``[low, high]`` meets the interval (both columns known)."""
    lo = (
        _not_null(high)
        if math.isinf(interval.lo)
        else exp.GTE(this=_col(high), expression=_num(interval.lo))
    )
    hi = (
        _not_null(low)
        if math.isinf(interval.hi)
        else exp.LTE(this=_col(low), expression=_num(interval.hi))
    )
    return exp.and_(hi, lo, copy=False)


def _intersects(shape: exp.Expr) -> exp.Expr:
    call = nodes.Intersects(expressions=[_col("s_region"), shape])
    return exp.EQ(this=call, expression=exp.Literal.number(1))


def _shape(region: Circle | Polygon) -> exp.Expr:
    if isinstance(region, Circle):
        args = [_num(region.ra), _num(region.dec), _num(region.radius)]
        return nodes.Circle(expressions=args)
    return nodes.Polygon(expressions=[_num(c) for c in region.to_dali()])


def _spatial(region: SpatialFilter) -> exp.Expr:
    if isinstance(region, RaDecRange):
        if region.ra_max - region.ra_min >= 360.0:
            caps = range_caps(region)
            if not caps:  # the whole sky: every image with a known footprint
                return _not_null("s_region")
            return exp.and_(*[_intersects(_shape(c)) for c in caps], copy=False)
        return _any([_intersects(_shape(p)) for p in range_polygons(region)])
    return _intersects(_shape(region))


def range_caps(rng: RaDecRange) -> list[Circle]:
    """A RANGE over every right ascension as caps a footprint must meet, all of them:
    ``dec ≥ dec_min`` is the cap about the north pole of radius ``90 - dec_min``, ``dec ≤
    dec_max`` the one about the south pole.  Exact: a footprint (connected) with points on
    both sides of a band's edges has points in the band."""
    caps = []
    if rng.dec_min > -90.0:
        caps.append(Circle(0.0, 90.0, 90.0 - rng.dec_min))
    if rng.dec_max < 90.0:
        caps.append(Circle(0.0, -90.0, 90.0 + rng.dec_max))
    return caps


def _chord_steps(width: float, dec: float) -> int:
    """Chords for a parallel at ``dec`` over ``width`` degrees within the tolerance."""
    if dec in (0.0, 90.0, -90.0):  # the equator is a great circle; a pole is a point
        return 1
    sagitta = math.radians(RANGE_TOLERANCE_ARCSEC / 3600.0)
    bulge = abs(math.sin(math.radians(dec)) * math.cos(math.radians(dec)))
    return max(1, math.ceil(math.radians(width) * math.sqrt(bulge / (8.0 * sagitta))))


def _cell(ras: Sequence[float], dec1: float, dec2: float) -> Polygon:
    """The polygon of ``ras[0] ≤ ra ≤ ras[-1], dec1 ≤ dec ≤ dec2`` (one side of the equator,
    at most 90° wide) whose parallels are chords between the right ascensions ``ras`` (a
    pole is one vertex; the equator, a great circle, needs only its ends)."""

    def side(dec: float, order: Sequence[float]) -> list[tuple[float, float]]:
        if abs(dec) == 90.0:
            return [(order[0], dec)]
        if dec == 0.0:
            return [(order[0], dec), (order[-1], dec)]
        return [(ra, dec) for ra in order]

    vertices = side(dec1, ras) + side(dec2, ras[::-1])
    return Polygon(tuple((ra % 360.0, dec) for ra, dec in vertices))


def range_polygons(rng: RaDecRange) -> list[Polygon]:
    """Polygons whose union is ``rng`` (within :data:`RANGE_TOLERANCE_ARCSEC`, or coarser
    where :data:`MAX_PIECES` chords are reached), each of at most :data:`_CHORDS` chords a
    side (each polygon is one call of the engine's region function, and preparing one
    grows fast with its vertices); for a range of less than 360° of right ascension
    (:func:`range_caps` takes the others)."""
    spans = [(rng.ra_min, 360.0), (0.0, rng.ra_max)] if rng.wraps else [(rng.ra_min, rng.ra_max)]
    decs = [(rng.dec_min, rng.dec_max)]
    if rng.dec_min < 0.0 < rng.dec_max:
        decs = [(rng.dec_min, 0.0), (0.0, rng.dec_max)]
    out: list[Polygon] = []
    for lo, hi in spans:
        if hi <= lo:
            continue
        for d1, d2 in decs:
            wanted = max(_chord_steps(hi - lo, d1), _chord_steps(hi - lo, d2))
            chords = min(wanted, MAX_PIECES)
            cells = max(math.ceil((hi - lo) / _PIECE_DEGREES - 1e-12), math.ceil(chords / _CHORDS))
            chords = max(chords, cells)
            edges = [lo + (hi - lo) * i / chords for i in range(chords + 1)]
            for k in range(cells):
                first, last = k * chords // cells, (k + 1) * chords // cells
                out.append(_cell(edges[first : last + 1], d1, d2))
    return out


def sia_query(request: SiaRequest, table: str = OBSCORE_TABLE) -> str:
    """The ADQL text of ``request``'s query over ``table`` (``schema.table``).

    The WHERE clause ANDs one condition per constrained parameter, each the OR of its values.
    The query is built as a tree and written by the ADQL dialect's generator.
    """
    conditions: list[exp.Expr] = []
    if request.pos:
        conditions.append(_any([_spatial(r) for r in request.pos]))
    for name, (low, high, _unit) in _RANGED.items():
        values = request.intervals.get(name, ())
        if values:
            conditions.append(_any([_meets(low, high, v) for v in values]))
    if request.pol:
        conditions.append(
            _any([exp.Like(this=_col("pol_states"), expression=_str(f"%/{s}/%"))
                  for s in request.pol])
        )  # fmt: skip
    for name, (column, _unit) in INTERVAL_PARAMS.items():
        values = request.intervals.get(name, ())
        if values:
            conditions.append(_any([_holds(column, v) for v in values]))
    for name, column in TEXT_PARAMS.items():
        texts = request.text.get(name, ())
        if not texts:
            continue
        target: exp.Expr = _col(column)
        if name == "ID":  # IVOIDs compare case-insensitively (SIA 2.0 §2.2.10)
            target = exp.Lower(this=target)
            texts = tuple(t.lower() for t in texts)
        unique = dict.fromkeys(texts)
        conditions.append(exp.In(this=target, expressions=[_str(t) for t in unique]))
    if request.calib:
        levels = sorted(set(request.calib))
        conditions.append(
            exp.In(this=_col("calib_level"), expressions=[exp.Literal.number(n) for n in levels])
        )
    schema, _, name = table.rpartition(".")
    select = exp.select(exp.Star(), copy=False).from_(
        exp.table_(name, db=schema or None), copy=False
    )
    if conditions:
        where = exp.and_(*conditions, copy=False) if len(conditions) > 1 else conditions[0]
        select = select.where(where, copy=False)
    return select.sql(dialect=_ADQL, comments=False, copy=False)  # a tree of its own
