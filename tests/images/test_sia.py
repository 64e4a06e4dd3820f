"""SIA 2.0 parameters: checking, the ADQL they become, and its rows against brute force.

The spatial (POS) constraints are checked over HTTP against the images' own WCS in
``tests/service/test_sia.py``; here the other parameters run through the engine over one
collection's ObsCore table and are compared with a brute-force filter of its rows.
"""

from __future__ import annotations

import math
import random
import warnings
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlglot import exp

from skyvault.adql import parse
from skyvault.engine.archive import Archive
from skyvault.errors import UsageError
from skyvault.images.ingest import ImageIngestOptions, ingest_images
from skyvault.images.sia import (
    MAX_PIECES,
    RANGE_TOLERANCE_ARCSEC,
    parse_sia,
    range_polygons,
    sia_query,
)
from skyvault.sky.geometry import intersects, point_in_polygon
from skyvault.sky.regions import Circle, Polygon, RaDecRange
from skyvault.sky.stcs import parse_stcs
from tests.images._files import tan_header, write_image


def _parse(**params: str | list[str]) -> object:
    pairs = {k: v if isinstance(v, list) else [v] for k, v in params.items()}
    return parse_sia(pairs, maxrec_default=100, maxrec_limit=1000)


def _adql(table: str = "c.obscore", **params: str | list[str]) -> str:
    pairs = {k: v if isinstance(v, list) else [v] for k, v in params.items()}
    return sia_query(parse_sia(pairs, maxrec_default=100, maxrec_limit=1000), table)


# --- bad values ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("POS", "CIRCLE 10 20", "3 numbers"),
        ("POS", "CIRCLE 10 20 -1", "radius"),
        ("POS", "CIRCLE 10 95 1", "declination"),
        ("POS", "BOX 10 20 1 1", "unknown shape"),
        ("POS", "POLYGON 1 2 3 4", "at least 3"),
        ("POS", "RANGE 10 20 5", "4 numbers"),
        ("POS", "RANGE 20 10 0 5", "low then high"),
        ("POS", "RANGE 10 20 5 0", "low then high"),
        ("POS", "RANGE 10 10 0 5", "no area"),
        ("POS", "CIRCLE ten 20 1", "not a number"),
        ("BAND", "5e-7 4e-7", "above the high limit"),
        ("BAND", "-2 -1", "positive"),
        ("BAND", "1 2 3", "one or two numbers"),
        ("BAND", "nan 1", "not a number"),
        ("TIME", "60000 +Inf +Inf", "one or two numbers"),
        ("TIME", "x y", "not a number"),
        ("TIME", "+Inf +Inf", "empty interval"),
        ("FOV", "2 1", "above the high limit"),
        ("EXPTIME", "long", "not a number"),
        ("SPATRES", "1 0", "above"),
        ("TIMERES", "b", "not a number"),
        ("SPECRP", "5 4", "above"),
        ("CALIB", "7", "calibration level"),
        ("CALIB", "two", "whole number"),
        ("POL", "i", "upper case"),
        ("POL", "Z", "unknown polarisation"),
        ("MAXREC", "-1", "negative"),
        ("MAXREC", "1.5", "whole number"),
        ("MAXREC", ["1", "2"], "given 2 times"),
        ("RESPONSEFORMAT", ["csv", "votable"], "given 2 times"),
    ],
)
def test_a_bad_value_is_a_usage_fault_naming_the_parameter(
    name: str, value: str | list[str], words: str
) -> None:
    with pytest.raises(UsageError) as caught:
        _parse(**{name.lower(): value})
    message = caught.value.message
    assert message.startswith(f"UsageFault: {name}: "), message
    assert words in message
    assert caught.value.hint


def test_parameter_names_are_case_insensitive_and_unknown_ones_ignored() -> None:
    assert _adql(band="4e-7") == _adql(BAND="4e-7") == _adql(Band="4e-7")
    assert _adql(SIZE="0.1", RUNID="x", REQUEST="query") == _adql()
    assert _adql() == "SELECT * FROM c.obscore"


def test_an_empty_value_is_no_value() -> None:
    assert _adql(BAND="", TIME=" ", COLLECTION="") == _adql()


def test_intervals_scalars_and_open_sides() -> None:
    where = _adql(BAND="5e-7", FOV="-Inf 1", EXPTIME="30 inf", TIME="-inf +Inf")
    tree = parse(where).tree
    text = tree.sql()
    assert "em_min <= 5e-07 AND em_max >= 5e-07" in text  # a scalar meets [em_min, em_max]
    assert "s_fov <= 1.0" in text and "s_fov >=" not in text
    assert "t_exptime >= 30.0" in text
    # a fully open TIME still needs a known [t_min, t_max]
    assert "NOT t_min IS NULL AND NOT t_max IS NULL" in text


def test_repeats_are_ored_and_parameters_anded() -> None:
    text = parse(
        _adql(CALIB=["2", "3"], COLLECTION=["a", "b"], EXPTIME=["-Inf 1", "100 +Inf"])
    ).sql()
    assert text == (
        "SELECT * FROM c.obscore WHERE (t_exptime <= 1.0 OR t_exptime >= 100.0)"
        " AND obs_collection IN ('a', 'b') AND calib_level IN (2, 3)"
    )


def test_ids_compare_case_insensitively() -> None:
    text = _adql(ID=["IVO://Skyvault/C?A", "ivo://skyvault/c?a"])
    assert "LOWER(obs_publisher_did) IN ('ivo://skyvault/c?a')" in text


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1).filter(lambda s: s.strip() and "\x00" not in s))
def test_text_values_are_literals_whatever_they_hold(value: str) -> None:
    """Quotes, backslashes, comment markers and newlines stay inside one string literal."""
    tree = parse(_adql(COLLECTION=value, TARGET=value)).tree
    literals = [lit.this for lit in tree.find_all(exp.Literal) if lit.is_string]
    assert literals == [value, value]
    assert len(list(tree.find_all(exp.In))) == 2
    assert tree.find(exp.Or) is None


def test_hostile_text_does_not_change_the_query() -> None:
    hostile = "x') OR 1=1 OR obs_collection IN ('y"
    tree = parse(_adql(COLLECTION=hostile)).tree
    assert tree.find(exp.Or) is None
    assert [lit.this for lit in tree.find_all(exp.Literal) if lit.is_string] == [hostile]


# --- RANGE as polygons -----------------------------------------------------------------------


def _points(rng: RaDecRange, margin: float, inside: bool, n: int = 4000) -> tuple[
    np.ndarray, np.ndarray]:  # fmt: skip
    """Random points at least ``margin`` degrees (in dec, or in RA along the parallel)
    inside (``inside``) or outside the range, within a few degrees of it."""
    r = np.random.default_rng(7)
    width = (rng.ra_max - rng.ra_min) % 360.0 or 360.0
    ra = (rng.ra_min + r.uniform(-3, width + 3, n)) % 360.0
    dec = np.clip(r.uniform(rng.dec_min - 3, rng.dec_max + 3, n), -90, 90)
    cos = np.maximum(np.cos(np.radians(dec)), 1e-9)
    dra = (ra - rng.ra_min) % 360.0
    in_ra = dra <= width
    ra_gap = np.minimum(np.abs(dra), np.abs(dra - width))
    ra_gap = np.minimum(ra_gap, 360.0 - ra_gap) * cos
    dec_gap = np.minimum(np.abs(dec - rng.dec_min), np.abs(dec - rng.dec_max))
    in_dec = (dec >= rng.dec_min) & (dec <= rng.dec_max)
    if width >= 360.0:
        ra_gap = np.full(n, np.inf)
    gap = np.minimum(ra_gap, dec_gap)
    keep = (in_ra & in_dec if inside else ~(in_ra & in_dec)) & (gap > margin)
    return ra[keep], dec[keep]


@pytest.mark.parametrize(
    "rng",
    [
        RaDecRange(61.0, 63.0, -38.0, -36.0),
        RaDecRange(350.0, 10.0, -5.0, 5.0),  # through RA 0 and the equator
        RaDecRange(20.0, 60.0, 80.0, 90.0),  # to the pole
        RaDecRange(100.0, 250.0, -60.0, -20.0),  # wide: several pieces
        RaDecRange(10.0, 20.0, -90.0, 90.0),  # a lune, pole to pole
    ],
)
def test_range_polygons_are_the_range(rng: RaDecRange) -> None:
    pieces = range_polygons(rng)
    assert pieces
    # wide ranges reach MAX_PIECES: coarser chords (see the module docstring)
    margin = 2 * RANGE_TOLERANCE_ARCSEC / 3600.0 * (100 if rng.ra_max - rng.ra_min > 20 else 1)
    for inside in (True, False):
        ra, dec = _points(rng, margin, inside)
        assert len(ra) > 100
        hit = np.zeros(len(ra), dtype=bool)
        for piece in pieces:
            hit |= point_in_polygon(ra, dec, piece)
        assert bool(hit.all()) if inside else not hit.any()


def test_range_chords_stay_within_the_tolerance() -> None:
    """Each chord's midpoint — where a great circle strays furthest from the parallel — is
    within the tolerance (for ranges narrow enough not to reach MAX_PIECES chords)."""
    for dec in (-60.0, -37.0, -5.0, 20.0, 75.0):
        pieces = range_polygons(RaDecRange(30.0, 40.0, dec, dec + 1.0))
        chords = 0
        for piece in pieces:
            verts = np.radians(np.array(piece.vertices))
            for (ra1, d1), (ra2, d2) in zip(verts, np.roll(verts, -1, axis=0), strict=True):
                if d1 != d2:
                    continue
                chords += 1
                # the great circle through both ends reaches tan(dec_mid) = tan(dec) / cos(dra/2)
                mid = math.atan(math.tan(d1) / math.cos(abs(ra2 - ra1) / 2))
                assert abs(math.degrees(mid - d1)) * 3600 <= RANGE_TOLERANCE_ARCSEC * 1.001
        assert 2 < chords < 2 * MAX_PIECES


def test_ranges_over_every_right_ascension_are_caps() -> None:
    assert "INTERSECTS(s_region, CIRCLE(0.0, 90.0, 10.0)) = 1" in _adql(POS="RANGE 0 360 80 90")
    assert "INTERSECTS(s_region, CIRCLE(0.0, -90.0, 10.0)) = 1" in _adql(POS="RANGE 0 360 -90 -80")
    band = _adql(POS="RANGE -Inf +Inf -2 2")
    assert "INTERSECTS(s_region, CIRCLE(0.0, 90.0, 92.0)) = 1 AND " in band
    assert "INTERSECTS(s_region, CIRCLE(0.0, -90.0, 92.0)) = 1" in band


def test_the_whole_sky_needs_only_a_footprint() -> None:
    assert "NOT s_region IS NULL" in _adql(POS="RANGE -Inf +Inf -Inf +Inf")
    assert "NOT s_region IS NULL" in _adql(POS="RANGE 0 360 -90 90")


# --- the rows, against brute force ------------------------------------------------------------

_BANDS = "ugrizy"


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Archive, pa.Table]]:
    """A collection of 30 images with varied bands, dates, exposures, and some unknowns
    (no EXPTIME, an unknown filter, no date)."""
    root = tmp_path_factory.mktemp("sia")
    r = random.Random(3)
    files = []
    for i in range(30):
        h = tan_header(62.0 + r.uniform(-1, 1), -37.0 + r.uniform(-1, 1), band=_BANDS[i % 6],
                       scale_arcsec=r.uniform(5, 30), rotation_deg=r.uniform(0, 90))  # fmt: skip
        h["DATE-OBS"] = f"2023-{1 + i % 12:02d}-{1 + i % 27:02d}T0{i % 10}:00:00"
        h["EXPTIME"] = r.choice([15.0, 30.0, 60.0, 120.0])
        h["OBJECT"] = r.choice(["field A", "field B", "it's C"])
        h["INSTRUME"] = r.choice(["LSSTCam", "ComCam"])
        if i % 7 == 3:
            del h["EXPTIME"]
        if i % 9 == 4:
            h["BAND"] = h["FILTER"] = "w"  # not in the band table: em_min/em_max unknown
        if i % 11 == 5:
            del h["DATE-OBS"]
        files.append(write_image(root / f"img{i:02d}.fits", h))
    data = root / "data"
    data.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ingest_images(files, "c", data, options=ImageIngestOptions())
    archive = Archive(data)
    try:
        yield archive, archive.query("SELECT * FROM c.obscore")
    finally:
        archive.close()


def _ids(table: pa.Table) -> set[str]:
    return set(table.column("obs_id").to_pylist())


def _meets(lo: float | None, hi: float | None, a: float, b: float) -> bool:
    return lo is not None and hi is not None and lo <= b and hi >= a


def _holds(value: float | None, a: float, b: float) -> bool:
    return value is not None and a <= value <= b


def _interval_text(a: float, b: float) -> str:
    def word(x: float) -> str:
        return "+Inf" if x == math.inf else "-Inf" if x == -math.inf else repr(x)

    return f"{word(a)} {word(b)}"


def test_rows_match_brute_force(archive: tuple[Archive, pa.Table]) -> None:
    engine, table = archive
    rows = table.to_pylist()
    r = random.Random(11)
    t_all = [row["t_min"] for row in rows if row["t_min"] is not None]
    checked = 0
    for _ in range(100):
        params: dict[str, list[str]] = {}
        tests = []
        if r.random() < 0.5:
            bands = []
            for _ in range(r.randint(1, 2)):
                a = r.choice([-math.inf, 3e-7, 4.5e-7, 6e-7, 8.5e-7])
                b = max(a, r.choice([3.5e-7, 5e-7, 7e-7, math.inf]))
                bands.append((a, b))
            params["BAND"] = [_interval_text(a, b) for a, b in bands]
            tests.append(lambda row, bs=bands: any(_meets(row["em_min"], row["em_max"], a, b)
                                                   for a, b in bs))  # fmt: skip
        if r.random() < 0.4:
            a = r.choice([-math.inf, min(t_all), r.uniform(min(t_all), max(t_all))])
            b = r.choice([math.inf, max(a, r.uniform(min(t_all), max(t_all)) + 1)])
            params["TIME"] = [_interval_text(a, b)]
            tests.append(lambda row, a=a, b=b: _meets(row["t_min"], row["t_max"], a, b))
        if r.random() < 0.4:
            spans = [r.choice([(-math.inf, 20.0), (30.0, 60.0), (100.0, math.inf), (30.0, 30.0)])
                     for _ in range(r.randint(1, 2))]  # fmt: skip
            params["EXPTIME"] = [_interval_text(a, b) for a, b in spans]
            tests.append(lambda row, ss=spans: any(_holds(row["t_exptime"], a, b) for a, b in ss))
        if r.random() < 0.3:
            names = r.sample(["field A", "field B", "it's C", "nowhere"], r.randint(1, 2))
            params["TARGET"] = names
            tests.append(lambda row, ns=names: row["target_name"] in ns)
        if r.random() < 0.3:
            inst = r.choice(["LSSTCam", "ComCam", "lsstcam"])  # case-sensitive
            params["INSTRUMENT"] = [inst]
            tests.append(lambda row, i=inst: row["instrument_name"] == i)
        if r.random() < 0.2:
            picked = r.sample(rows, 3)
            dids = [p["obs_publisher_did"].upper() for p in picked]
            params["ID"] = dids
            tests.append(lambda row, ds=dids: row["obs_publisher_did"].upper() in ds)
        if r.random() < 0.2:
            levels = r.sample(["0", "1", "2", "3", "4"], 2)
            params["CALIB"] = levels
            tests.append(lambda row, ls=levels: str(row["calib_level"]) in ls)
        if r.random() < 0.2:
            params["COLLECTION"] = [r.choice(["c", "C", "other"])]
            tests.append(lambda row, c=params["COLLECTION"][0]: row["obs_collection"] == c)
        for name, column in (("FOV", "s_fov"), ("SPATRES", "s_resolution"),
                             ("SPECRP", "em_res_power")):  # fmt: skip
            if r.random() < 0.2:
                known = sorted(row[column] for row in rows if row[column] is not None)
                a = r.choice([-math.inf, known[len(known) // 3]])
                b = r.choice([math.inf, known[2 * len(known) // 3], a if a > -math.inf else 0.0])
                b = max(a, b)
                params[name] = [_interval_text(a, b)]
                tests.append(lambda row, c=column, a=a, b=b: _holds(row[c], a, b))
        for name, column in (("FACILITY", "facility_name"), ("DPTYPE", "dataproduct_type"),
                             ("FORMAT", "access_format")):  # fmt: skip
            if r.random() < 0.1:
                value = r.choice([rows[0][column], "something else"])
                params[name] = [value]
                tests.append(lambda row, c=column, v=value: row[c] == v)
        if r.random() < 0.1:  # no image here has polarisation states: POL finds none
            params["POL"] = ["I"]
            tests.append(lambda row: False)
        query = sia_query(parse_sia(params, maxrec_default=100, maxrec_limit=100), "c.obscore")
        got = _ids(engine.query(query))
        want = {row["obs_id"] for row in rows if all(t(row) for t in tests)}
        assert got == want, (params, query)
        checked += bool(want) and len(want) < len(rows)
    assert checked > 10  # most draws select some rows but not all


def test_pos_rows_are_the_footprints_that_meet_the_region(
    archive: tuple[Archive, pa.Table],
) -> None:
    """POS through every planning path (``SELECT *`` of one table is answered by the direct
    path, which once took the pruning circle for the answer) = each footprint tested."""
    engine, table = archive
    rows = table.to_pylist()
    r = random.Random(12)
    for _ in range(20):
        ra, dec = 62.0 + r.uniform(-1.2, 1.2), -37.0 + r.uniform(-1.2, 1.2)
        size = r.choice([0.01, 0.1, 0.3])
        region: Circle | Polygon | RaDecRange
        kind = r.choice(["CIRCLE", "POLYGON", "RANGE"])
        if kind == "CIRCLE":
            region = Circle(ra, dec, size)
            pos = f"CIRCLE {ra} {dec} {size}"
            regions: list[Circle | Polygon] = [region]
        elif kind == "POLYGON":
            region = Polygon(((ra, dec), (ra + size, dec), (ra, dec + size)))
            pos = "POLYGON " + " ".join(f"{a} {b}" for a, b in region.vertices)
            regions = [region]
        else:
            region = RaDecRange(ra, ra + 2 * size, dec, dec + size)
            pos = f"RANGE {ra} {ra + 2 * size} {dec} {dec + size}"
            regions = list(range_polygons(region))
        query = sia_query(parse_sia({"POS": [pos]}, maxrec_default=100, maxrec_limit=100),
                          "c.obscore")  # fmt: skip
        got = _ids(engine.query(query))
        want = {row["obs_id"] for row in rows
                if any(intersects(parse_stcs(row["s_region"]), g) for g in regions)}  # fmt: skip
        assert got == want, (pos, query)
