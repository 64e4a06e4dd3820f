"""SODA 1.0 parameter parsing: every parameter, their combinations, and every bad value."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skyvault.errors import MultiValuedParamNotSupported, UsageError
from skyvault.images.soda import (
    CutoutSpec,
    Interval,
    parse_interval,
    parse_pos,
    parse_soda,
)
from skyvault.sky.regions import Circle, Polygon, RaDecRange


def test_the_standard_s_examples() -> None:
    """Every example value of SODA 1.0 §3.3 parses to the region or interval it describes."""
    assert parse_pos("CIRCLE 12 34 0.5") == Circle(12, 34, 0.5)
    assert parse_pos("RANGE 12 14 34 36") == RaDecRange(12, 14, 34, 36)
    assert parse_pos("POLYGON 12 34 14 34 14 36 12 36") == Polygon(
        ((12, 34), (14, 34), (14, 36), (12, 36))
    )
    assert parse_pos("RANGE 0 360 -2 2") == RaDecRange(0, 360, -2, 2)
    assert parse_pos("RANGE 0 360 89 90") == RaDecRange(0, 360, 89, 90)
    request = parse_soda(
        {"ID": ["a"], "CIRCLE": ["12 34 0.5"], "POLYGON": ["12 34 14 34 14 36 12 36"]}
    )
    assert request.regions == (
        Circle(12, 34, 0.5),
        Polygon(((12, 34), (14, 34), (14, 36), (12, 36))),
    )
    assert parse_interval("BAND", "-Inf 300") == Interval(-math.inf, 300)
    assert parse_interval("BAND", "750 +Inf") == Interval(750, math.inf)
    assert parse_interval("BAND", "550 550") == Interval(550, 550)
    assert parse_interval("TIME", "55100.0 +Inf") == Interval(55100.0, math.inf)
    assert parse_soda({"ID": ["a"], "POL": ["I", "Q", "U"]}).pol == ("I", "Q", "U")


def test_range_open_sides_and_wrap() -> None:
    """±Inf is an open side; RA limits outside [0, 360] wrap through 0."""
    assert parse_pos("RANGE -Inf +Inf -Inf +Inf") == RaDecRange(0, 360, -90, 90)
    assert parse_pos("RANGE -Inf +Inf 10 +Inf") == RaDecRange(0, 360, 10, 90)
    assert parse_pos("RANGE -Inf 20 -5 5") == RaDecRange(0, 20, -5, 5)
    assert parse_pos("RANGE 20 +Inf -5 5") == RaDecRange(20, 360, -5, 5)
    wrapped = parse_pos("RANGE -10 10 -5 5")
    assert wrapped == RaDecRange(350, 10, -5, 5)
    assert isinstance(wrapped, RaDecRange) and wrapped.wraps
    assert parse_pos("range 0 360 -90 -80") == RaDecRange(0, 360, -90, -80)


def test_names_are_case_insensitive_and_empty_values_absent() -> None:
    request = parse_soda({"id": ["x"], "Circle": ["1 2 0.1"], "band": [""], "POS": [" "]})
    assert request.ids == ("x",)
    assert request.regions == (Circle(1, 2, 0.1),)
    assert request.bands == ()
    assert request.single() == CutoutSpec("x", Circle(1, 2, 0.1))


def test_combinations_one_cutout_each() -> None:
    """SODA §6: each combination of ID, spatial value, BAND, TIME is one result; POL is one
    filter; CIRCLE, POLYGON and POS values together are the list of regions."""
    request = parse_soda(
        {
            "ID": ["a", "b"],
            "CIRCLE": ["1 2 0.1"],
            "POS": ["RANGE 1 2 3 4"],
            "BAND": ["4e-7 5e-7", "6e-7 7e-7"],
            "POL": ["I", "V", "I"],
        }
    )
    specs = list(request.cutouts())
    assert len(specs) == 2 * 2 * 2
    assert {(s.id, s.region, s.band) for s in specs} == {
        (i, r, b)
        for i in ("a", "b")
        for r in (Circle(1, 2, 0.1), RaDecRange(1, 2, 3, 4))
        for b in (Interval(4e-7, 5e-7), Interval(6e-7, 7e-7))
    }
    assert all(s.pol == ("I", "V") and s.time is None for s in specs)
    several = r"several of ID \(2 values\), CIRCLE/POLYGON/POS \(2 values\), BAND \(2 values\) "
    with pytest.raises(MultiValuedParamNotSupported, match=several):
        request.single()
    with pytest.raises(MultiValuedParamNotSupported, match=r"several of ID \(2 values\) \(send"):
        parse_soda({"ID": ["a", "b"]}).single()
    with pytest.raises(MultiValuedParamNotSupported, match="CIRCLE/POLYGON/POS"):
        parse_soda({"ID": ["a"], "CIRCLE": ["1 2 0.1"], "POLYGON": ["0 0 1 0 1 1"]}).single()
    assert parse_soda({"ID": ["a"]}).single() == CutoutSpec("a")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "the ID parameter is missing"),
        ({"ID": [""]}, "the ID parameter is missing"),
        ({"ID": ["a"], "CIRCLE": ["1 2"]}, "CIRCLE: a circle is 3 numbers"),
        ({"ID": ["a"], "CIRCLE": ["1 2 x"]}, "CIRCLE: 'x' is not a number"),
        ({"ID": ["a"], "CIRCLE": ["1 2 0"]}, "CIRCLE: the radius must be positive"),
        ({"ID": ["a"], "CIRCLE": ["1 2 -1"]}, "CIRCLE: the radius must be positive"),
        (
            {"ID": ["a"], "CIRCLE": ["1 95 1"]},
            "CIRCLE: circle centre declination 95.0°",
        ),
        ({"ID": ["a"], "CIRCLE": ["1 2 200"]}, "CIRCLE: circle radius must be at most 180"),
        ({"ID": ["a"], "CIRCLE": ["nan 2 1"]}, "CIRCLE: 'nan' is not a number"),
        ({"ID": ["a"], "CIRCLE": ["inf 2 1"]}, "CIRCLE: 'inf': an infinite value"),
        ({"ID": ["a"], "POLYGON": ["1 2 3 4"]}, "POLYGON: a polygon is at least 3"),
        ({"ID": ["a"], "POLYGON": ["1 2 3 4 5 6 7"]}, "POLYGON: a polygon is at least 3"),
        ({"ID": ["a"], "POLYGON": ["0 0 1 0 2 0"]}, "POLYGON: polygon has zero area"),
        ({"ID": ["a"], "POS": ["POLYGON 0 0 1 0 1 1 0 1 1 0.5"]}, "POS: polygon edges 2 and 4"),
        ({"ID": ["a"], "POS": ["BOX 1 2 3 4"]}, "POS: unknown shape 'BOX'"),
        ({"ID": ["a"], "POS": ["CIRCLE 1 2"]}, "POS: a circle is 3 numbers"),
        ({"ID": ["a"], "POS": ["RANGE 1 2 3"]}, "POS: RANGE takes 4 numbers"),
        ({"ID": ["a"], "POS": ["RANGE 2 1 3 4"]}, "POS: RANGE limits go low then high"),
        ({"ID": ["a"], "POS": ["RANGE 1 2 4 3"]}, "POS: RANGE limits go low then high"),
        ({"ID": ["a"], "POS": ["RANGE 1 2 91 95"]}, "POS: declinations lie in"),
        ({"ID": ["a"], "POS": ["RANGE 1 2 +Inf +Inf"]}, "declination interval is empty"),
        ({"ID": ["a"], "POS": ["RANGE -Inf -Inf 1 2"]}, "right ascension interval is empty"),
        ({"ID": ["a"], "BAND": ["5e-7"]}, "BAND: an interval is 2 numbers"),
        ({"ID": ["a"], "BAND": ["5e-7 4e-7"]}, "BAND: the low limit 5e-7 is above"),
        ({"ID": ["a"], "BAND": ["-1 -0.5"]}, "BAND: wavelengths are positive"),
        ({"ID": ["a"], "BAND": ["+Inf +Inf"]}, r"BAND: '\+Inf \+Inf' is an empty interval"),
        ({"ID": ["a"], "BAND": ["red"]}, "BAND: 'red' is not a number"),
        ({"ID": ["a"], "TIME": ["60000 NaN"]}, "TIME: 'NaN' is not a number"),
        ({"ID": ["a"], "TIME": ["60001 60000"]}, "TIME: the low limit 60001 is above"),
        ({"ID": ["a"], "POL": ["i"]}, "POL: unknown polarisation state 'i' .states are upper"),
        ({"ID": ["a"], "POL": ["Z"]}, "POL: unknown polarisation state 'Z'"),
    ],
)
def test_bad_values_say_what_and_how(params: dict[str, list[str]], message: str) -> None:
    with pytest.raises(UsageError, match=message) as caught:
        parse_soda(params)
    # what to send: the hint names the parameter's syntax
    assert caught.value.hint
    name = message.split(":", maxsplit=1)[0]
    if name in ("CIRCLE", "POLYGON", "POS", "BAND", "TIME", "POL"):
        assert caught.value.hint.startswith(f"send {name}=")
    assert caught.value.http_status == 400


_WORD = st.one_of(
    st.sampled_from(["CIRCLE", "RANGE", "POLYGON", "Inf", "-Inf", "+Inf", "nan", "", "x"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-400, 400).map(str),
)


@given(
    name=st.sampled_from(["CIRCLE", "POLYGON", "POS", "BAND", "TIME", "POL", "ID"]),
    words=st.lists(_WORD, max_size=9),
)
def test_any_value_parses_or_fails_as_a_usage_error(name: str, words: list[str]) -> None:
    """Whatever arrives, the parser answers a request or a UsageError, nothing else."""
    try:
        request = parse_soda({"ID": ["a"], name: [" ".join(words)]})
    except UsageError:
        return
    for spec in request.cutouts():
        for interval in (spec.band, spec.time):
            assert interval is None or interval.lo <= interval.hi


def test_descriptor_parameters_follow_the_standard() -> None:
    """SODA 1.0 §3.4 table 2 (name, UCD, unit), and every declared parameter is parsed."""
    from skyvault.images.soda import INPUT_PARAMS

    standard = {
        "ID": ("meta.ref.url;meta.curation", None),
        "CIRCLE": ("pos.outline;obs", "deg"),
        "POLYGON": ("pos.outline;obs", "deg"),
        "POS": ("pos.outline;obs", None),
        "BAND": ("em.wl;stat.interval", "m"),
        "TIME": ("time.interval;obs.exposure", "d"),
        "POL": ("meta.code;phys.polarization", None),
    }
    assert {p.name: (p.ucd, p.unit) for p in INPUT_PARAMS} == standard
    examples = {
        "CIRCLE": "12 34 0.5",
        "POLYGON": "12 34 14 34 14 36",
        "POS": "RANGE 12 14 34 36",
        "BAND": "5e-7 6e-7",
        "TIME": "60000 60001",
        "POL": "I",
        "ID": "x",
    }
    for param in INPUT_PARAMS:
        request = parse_soda({"ID": ["x"], param.name: [examples[param.name]]})
        assert len(list(request.cutouts())) == 1


def test_error_text_labels() -> None:
    """SODA 1.0 §5.2's labels begin the text/plain error of a combination."""
    from skyvault.errors import (
        AccessDenied,
        AuthenticationRequired,
        CutoutNoOverlap,
        InternalError,
        ServerBusy,
        StorageError,
    )
    from skyvault.images.soda import error_text

    cases = {
        "UsageError: the region misses (do that)": CutoutNoOverlap(
            "the region misses", hint="do that"
        ),
        "MultiValuedParamNotSupported: two": MultiValuedParamNotSupported("two"),
        "AuthenticationError: who": AuthenticationRequired("who"),
        "AuthorizationError: no": AccessDenied("no"),
        "ServiceUnavailable: busy": ServerBusy("busy"),
        "ServiceUnavailable: disk": StorageError("disk"),
        "Error: fault": InternalError("fault"),
        "UsageError: bad": UsageError("bad"),
    }
    for text, error in cases.items():
        assert error_text(error) == text
