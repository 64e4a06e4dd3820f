"""SODA 1.0 request parameters: ID, CIRCLE, POLYGON, POS, BAND, TIME, POL, parsed and checked.

SODA (IVOA REC 2017-05-17, §3) defines one dataset parameter and the filters a cutout is cut
by.  What each parameter takes (names case-insensitive as in DALI, values exact):

``ID``
    The dataset's identifier, opaque (the ObsCore ``obs_publisher_did``); repeatable.
``CIRCLE``
    DALI ``circle``: ``ra dec radius`` in degrees (ICRS).
``POLYGON``
    DALI ``polygon``: ``ra1 dec1 ra2 dec2 ra3 dec3 ...``, at least 3 vertices, in degrees.
``POS``
    An STC-like string: ``CIRCLE ra dec radius``, ``RANGE lon1 lon2 lat1 lat2`` (either limit
    may be ``-Inf``/``+Inf``: an open side) or ``POLYGON ra1 dec1 ...``.
``BAND``
    DALI ``interval`` of barycentric wavelength in metres: ``lo hi``, ``-Inf``/``+Inf`` open.
``TIME``
    DALI ``interval`` of MJD (UTC): ``lo hi``, ``-Inf``/``+Inf`` open.
``POL``
    Polarisation states (the ObsCore ``pol_states`` vocabulary: ``I Q U V RR LL RL LR XX YY
    XY YX POLI POLA``); repeatable.

What several values mean (SODA §3.1 and §6): every combination of one ID, one spatial value,
one BAND and one TIME is one cutout — the spatial parameters CIRCLE, POLYGON and POS are
three spellings of one filter, so their values together form the list of regions (a request
with a CIRCLE and a POLYGON asks for two cutouts, not their intersection).  All POL values
together are *one* filter (the states to keep).  A filter that is absent does not constrain.
A {sync} request answers one cutout: :meth:`SodaRequest.single` refuses more with
``MultiValuedParamNotSupported`` naming the parameter.

An empty value (``CIRCLE=``, as a client filling a DataLink descriptor's empty ``value``
sends) is the same as no value.  Parameters that SODA does not define are left to the caller
(``RESPONSEFORMAT``, ``RUNID``... belong to DALI, and DALI has services ignore unknown ones).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from skyvault.errors import (
    AccessDenied,
    AuthenticationRequired,
    AuthServiceUnavailable,
    GeometryError,
    InternalError,
    LimitExceeded,
    MultiValuedParamNotSupported,
    SkyvaultError,
    StorageError,
    UsageError,
)
from skyvault.sky.regions import Circle, Polygon, RaDecRange

__all__ = [
    "INPUT_PARAMS",
    "POL_STATES",
    "CutoutSpec",
    "Interval",
    "SodaParam",
    "SodaRequest",
    "SpatialFilter",
    "describe_region",
    "error_text",
    "parse_interval",
    "parse_pos",
    "parse_soda",
]

#: The spatial filters: a cone, a polygon with great-circle edges, a coordinate range.
SpatialFilter: TypeAlias = Circle | Polygon | RaDecRange

#: ObsCore 1.1's polarisation state vocabulary (``pol_states``), which SODA's POL uses.
POL_STATES = ("I", "Q", "U", "V", "RR", "LL", "RL", "LR", "XX", "YY", "XY", "YX", "POLI", "POLA")

_SYNTAX = {
    "ID": "an identifier from an ObsCore obs_publisher_did or a DataLink #cutout descriptor",
    "CIRCLE": "CIRCLE=ra dec radius (degrees, e.g. CIRCLE=12 34 0.5)",
    "POLYGON": "POLYGON=ra1 dec1 ra2 dec2 ra3 dec3 ... (degrees, at least 3 vertices)",
    "POS": (
        "POS=CIRCLE ra dec radius, POS=RANGE ra1 ra2 dec1 dec2 (-Inf/+Inf for an open side) "
        "or POS=POLYGON ra1 dec1 ra2 dec2 ra3 dec3 ... (degrees)"
    ),
    "BAND": "BAND=lo hi: wavelengths in metres, e.g. BAND=4e-7 5.5e-7 or BAND=6e-7 +Inf",
    "TIME": "TIME=lo hi: MJD (UTC), e.g. TIME=60310.1 60310.2 or TIME=60000 +Inf",
    "POL": "POL=one of " + " ".join(POL_STATES) + " (repeat POL for several states)",
}


@dataclass(frozen=True)
class SodaParam:
    """A SODA input parameter as a DataLink service descriptor declares it (SODA §3.4's
    three factors, name, UCD and unit, plus the VOTable type of §4's generic descriptor)."""

    name: str
    ucd: str
    unit: str | None
    datatype: str
    arraysize: str
    xtype: str | None
    description: str


#: The parameters skyvault's SODA service takes, for the ``#cutout`` service descriptor.
INPUT_PARAMS = (
    SodaParam(
        "ID", "meta.ref.url;meta.curation", None, "char", "*", None,
        "The publisher DID of the image to cut",
    ),
    SodaParam(
        "POS", "pos.outline;obs", None, "char", "*", None,
        "Region to cut out: CIRCLE ra dec radius, RANGE ra1 ra2 dec1 dec2 or "
        "POLYGON ra1 dec1 ... (ICRS degrees)",
    ),
    SodaParam(
        "CIRCLE", "pos.outline;obs", "deg", "double", "3", "circle",
        "A circle (ra dec radius) that the cutout covers",
    ),
    SodaParam(
        "POLYGON", "pos.outline;obs", "deg", "double", "*", "polygon",
        "A polygon (ra1 dec1 ra2 dec2 ...) that the cutout covers",
    ),
    SodaParam(
        "BAND", "em.wl;stat.interval", "m", "double", "2", "interval",
        "Wavelength interval (metres) the image must overlap",
    ),
    SodaParam(
        "TIME", "time.interval;obs.exposure", "d", "double", "2", "interval",
        "Time interval (MJD) the image must overlap",
    ),
    SodaParam(
        "POL", "meta.code;phys.polarization", None, "char", "*", None,
        "Polarisation states to keep",
    ),
)  # fmt: skip


def _usage(parameter: str, problem: str) -> UsageError:
    return UsageError(f"{parameter}: {problem}", hint=f"send {_SYNTAX[parameter]}")


@dataclass(frozen=True)
class Interval:
    """A closed interval ``[lo, hi]``; ``-inf``/``+inf`` for an open side (a DALI interval).

    ``lo == hi`` is a single value.
    """

    lo: float
    hi: float

    def overlaps(self, lo: float | None, hi: float | None) -> bool:
        """Whether this interval meets ``[lo, hi]`` (a missing limit is open)."""
        lo_ = -math.inf if lo is None or math.isnan(lo) else lo
        hi_ = math.inf if hi is None or math.isnan(hi) else hi
        return self.lo <= hi_ and lo_ <= self.hi

    def to_text(self) -> str:
        """The DALI text of the interval (``-Inf``/``+Inf`` for open sides)."""
        return f"{_number_text(self.lo)} {_number_text(self.hi)}"


def _number_text(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _numbers(parameter: str, text: str, *, allow_inf: bool = False) -> list[float]:
    out = []
    for word in text.split():
        try:
            value = float(word)
        except ValueError:
            raise _usage(parameter, f"{word!r} is not a number") from None
        if math.isnan(value):
            raise _usage(parameter, f"{word!r} is not a number")
        if math.isinf(value) and not allow_inf:
            raise _usage(parameter, f"{word!r}: an infinite value is not allowed here")
        out.append(value)
    return out


def parse_interval(parameter: str, text: str) -> Interval:
    """A DALI interval (``BAND``, ``TIME``): two numbers, low then high, ±Inf for open sides."""
    values = _numbers(parameter, text, allow_inf=True)
    if len(values) != 2:
        raise _usage(parameter, f"an interval is 2 numbers (low high), got {len(values)}")
    lo, hi = values
    if lo > hi:
        low, high = text.split()
        raise _usage(parameter, f"the low limit {low} is above the high limit {high}")
    if lo == math.inf or hi == -math.inf:
        raise _usage(parameter, f"{text.strip()!r} is an empty interval")
    if parameter == "BAND" and hi <= 0:
        raise _usage(parameter, "wavelengths are positive (metres)")
    return Interval(lo, hi)


def _geometry(
    parameter: str, build: type[Circle] | type[Polygon], values: list[float]
) -> SpatialFilter:
    try:
        if build is Circle:
            if len(values) != 3:
                raise _usage(parameter, f"a circle is 3 numbers (ra dec radius), got {len(values)}")
            ra, dec, radius = values
            if radius <= 0:
                raise _usage(parameter, f"the radius must be positive, got {radius!r}")
            return Circle(ra, dec, radius)
        if len(values) < 6 or len(values) % 2:
            raise _usage(
                parameter,
                f"a polygon is at least 3 (ra, dec) pairs, got {len(values)} numbers",
            )
        return Polygon.from_flat(values)
    except GeometryError as exc:
        raise _usage(parameter, exc.message) from None


def _range(values: list[float]) -> RaDecRange:
    if len(values) != 4:
        raise _usage("POS", f"RANGE takes 4 numbers (ra1 ra2 dec1 dec2), got {len(values)}")
    ra1, ra2, dec1, dec2 = values
    if ra1 > ra2 or dec1 > dec2:
        raise _usage("POS", "RANGE limits go low then high: ra1 ≤ ra2 and dec1 ≤ dec2")
    if dec1 == math.inf or dec2 == -math.inf:
        raise _usage("POS", "the RANGE declination interval is empty")
    if ra1 == math.inf or ra2 == -math.inf:
        raise _usage("POS", "the RANGE right ascension interval is empty")
    dec_lo, dec_hi = max(dec1, -90.0), min(dec2, 90.0)
    if dec1 > 90.0 or dec2 < -90.0:
        raise _usage("POS", f"declinations lie in [-90, 90]; got {dec1!r} to {dec2!r}")
    ra_lo = 0.0 if ra1 == -math.inf else ra1
    ra_hi = 360.0 if ra2 == math.inf else ra2
    if ra_hi - ra_lo >= 360.0:
        ra_lo, ra_hi = 0.0, 360.0
    elif ra_lo < 0.0 or ra_hi > 360.0:
        # e.g. RANGE -10 10 ...: the same as 350 to 10, through RA 0
        ra_lo, ra_hi = ra_lo % 360.0, ra_hi % 360.0
    try:
        return RaDecRange(ra_lo, ra_hi, dec_lo, dec_hi)
    except GeometryError as exc:
        raise _usage("POS", exc.message) from None


def parse_pos(text: str) -> SpatialFilter:
    """A SODA/SIA 2 ``POS`` value: ``CIRCLE ...``, ``RANGE ...`` or ``POLYGON ...``."""
    words = text.split()
    if not words:
        raise _usage("POS", "the value is empty")
    shape = words[0].upper()
    rest = " ".join(words[1:])
    if shape == "CIRCLE":
        return _geometry("POS", Circle, _numbers("POS", rest))
    if shape == "POLYGON":
        return _geometry("POS", Polygon, _numbers("POS", rest))
    if shape == "RANGE":
        return _range(_numbers("POS", rest, allow_inf=True))
    raise _usage("POS", f"unknown shape {words[0]!r}: POS starts with CIRCLE, RANGE or POLYGON")


def describe_region(region: SpatialFilter) -> str:
    """The region as a POS value (for messages and the cutout's HISTORY)."""
    if isinstance(region, Circle):
        return f"CIRCLE {region.ra!r} {region.dec!r} {region.radius!r}"
    if isinstance(region, Polygon):
        return "POLYGON " + " ".join(f"{ra!r} {dec!r}" for ra, dec in region.vertices)
    return f"RANGE {region.ra_min!r} {region.ra_max!r} {region.dec_min!r} {region.dec_max!r}"


@dataclass(frozen=True)
class CutoutSpec:
    """One cutout: a dataset and at most one value of each filter (``None``: not constrained)."""

    id: str
    region: SpatialFilter | None = None
    band: Interval | None = None
    time: Interval | None = None
    pol: tuple[str, ...] = ()


@dataclass(frozen=True)
class SodaRequest:
    """Every value of a SODA request, checked; :meth:`cutouts` lists what it asks for.

    Attributes
    ----------
    ids
        The ``ID`` values in request order.
    regions
        The ``CIRCLE``, ``POLYGON`` and ``POS`` values, in that order of parameters.
    bands, times
        The ``BAND`` and ``TIME`` intervals.
    pol
        The ``POL`` states, without repeats: one filter.
    """

    ids: tuple[str, ...]
    regions: tuple[SpatialFilter, ...] = ()
    bands: tuple[Interval, ...] = ()
    times: tuple[Interval, ...] = ()
    pol: tuple[str, ...] = ()

    def cutouts(self) -> Iterator[CutoutSpec]:
        """One :class:`CutoutSpec` per combination of ID, region, BAND and TIME (SODA §6)."""
        regions: Sequence[SpatialFilter | None] = self.regions or (None,)
        bands: Sequence[Interval | None] = self.bands or (None,)
        times: Sequence[Interval | None] = self.times or (None,)
        for id_, region, band, time in itertools.product(self.ids, regions, bands, times):
            yield CutoutSpec(id_, region, band, time, self.pol)

    def single(self) -> CutoutSpec:
        """The one cutout a {sync} request asks for; more values are refused by name."""
        counts = {
            "ID": len(self.ids),
            "CIRCLE/POLYGON/POS": len(self.regions),
            "BAND": len(self.bands),
            "TIME": len(self.times),
        }
        several = [f"{name} ({count} values)" for name, count in counts.items() if count > 1]
        if several:
            raise MultiValuedParamNotSupported(
                "a synchronous cutout takes one value of each parameter; this request gave "
                f"several of {', '.join(several)}",
                hint="send one value, or send several to the async endpoint "
                "(one result per combination)",
            )
        return next(self.cutouts())


def parse_soda(params: Mapping[str, Sequence[str]]) -> SodaRequest:
    """Check the SODA parameters of a request.

    Parameters
    ----------
    params
        Every value of every parameter, by name (any case), in request order: what
        ``service.params.collect_params`` makes of a query string or form.

    Raises
    ------
    UsageError
        A missing ID or a malformed value; the message names the parameter and the value,
        the hint shows what to send.
    """
    by_name: dict[str, list[str]] = {}
    for name, values in params.items():
        by_name.setdefault(name.upper(), []).extend(values)

    def given(name: str) -> list[str]:
        return [v for v in by_name.get(name, []) if v.strip()]

    ids = given("ID")
    if not ids:
        raise UsageError(
            "the ID parameter is missing: it names the image to cut",
            hint=f"send ID={_SYNTAX['ID']}",
        )
    regions: list[SpatialFilter] = [
        _geometry("CIRCLE", Circle, _numbers("CIRCLE", v)) for v in given("CIRCLE")
    ]
    regions += [_geometry("POLYGON", Polygon, _numbers("POLYGON", v)) for v in given("POLYGON")]
    regions += [parse_pos(v) for v in given("POS")]
    bands = [parse_interval("BAND", v) for v in given("BAND")]
    times = [parse_interval("TIME", v) for v in given("TIME")]
    pol: list[str] = []
    for value in given("POL"):
        for state in value.split():
            if state not in POL_STATES:
                hint = (
                    f" (states are upper case: {state.upper()})"
                    if state.upper() in POL_STATES
                    else ""
                )
                raise _usage("POL", f"unknown polarisation state {state!r}{hint}")
            if state not in pol:
                pol.append(state)
    return SodaRequest(tuple(ids), tuple(regions), tuple(bands), tuple(times), tuple(pol))


def error_text(error: SkyvaultError) -> str:
    """The text/plain error document of SODA 1.0 §5.2 for one failed cutout: one of its
    labels, a colon, the message (the result of an {async} combination that produced no
    cutout, §6).

    ``MultiValuedParamNotSupported``; ``AuthenticationError`` and ``AuthorizationError``
    for the caller's identity; ``ServiceUnavailable`` for what may pass (a busy or
    read-only service); ``Error`` for a fault of the service; ``UsageError`` for the rest:
    the request's own values (a region outside the image, a bad parameter, an unknown ID).
    """
    label = "UsageError"
    if isinstance(error, MultiValuedParamNotSupported):
        label = "MultiValuedParamNotSupported"
    elif isinstance(error, AuthenticationRequired):
        label = "AuthenticationError"
    elif isinstance(error, AccessDenied):
        label = "AuthorizationError"
    elif isinstance(error, StorageError | AuthServiceUnavailable) or (
        isinstance(error, LimitExceeded) and error.http_status == 503
    ):
        label = "ServiceUnavailable"
    elif isinstance(error, InternalError) or error.http_status >= 500:
        label = "Error"
    return f"{label}: {error}"
