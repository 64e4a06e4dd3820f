"""STC-S region columns (``sky/stcs.py``): polygons prepared for a whole batch at once
give the footprints, and so the answers, of the per-row parse and preparation."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from skyvault.errors import GeometryError
from skyvault.sky import geometry, stcs
from skyvault.sky.regions import Circle, Point, Polygon, Region


def _ring(
    rng: np.random.Generator, n: int, size: float, *, jumble: bool = False
) -> list[tuple[float, float]]:
    """``n`` vertices around a random centre, ``size`` degrees across (sorted around it
    unless ``jumble``: then often concave or self-crossing), either way round."""
    ra0, dec0 = float(rng.uniform(0, 360)), float(rng.uniform(-89, 89))
    angles = rng.uniform(0, 2 * math.pi, n)
    if not jumble:
        angles = np.sort(angles)
    if rng.random() < 0.5:
        angles = angles[::-1]
    reach = size * (rng.uniform(0.3, 1.0, n) if rng.random() < 0.3 else np.ones(n))
    cos_dec = max(math.cos(math.radians(dec0)), 1e-3)
    return [
        (ra0 + float(r * math.cos(a)) / cos_dec, float(np.clip(dec0 + r * math.sin(a), -90, 90)))
        for a, r in zip(angles, reach, strict=True)
    ]


def _text(vertices: list[tuple[float, float]], head: str = "POLYGON ICRS", sep: str = " ") -> str:
    return head + sep + sep.join(f"{ra!r}{sep}{dec!r}" for ra, dec in vertices)


def _footprint_texts() -> list[str]:
    rng = np.random.default_rng(2026)
    texts: list[str] = []
    for n in range(600):  # convex, concave, crossing; 3 to 12 vertices; tiny to huge
        vertices = int(rng.integers(3, 13))
        size = float(rng.choice([1e-6, 1e-3, 0.1, 1.0, 20.0, 80.0, 100.0]))
        texts.append(_text(_ring(rng, vertices, size, jumble=n % 4 == 0)))
    for n in range(60):  # many-sided ones (more than 64: row by row)
        texts.append(_text(_ring(rng, 40 if n % 4 else 70, float(rng.uniform(0.01, 10)))))
    quad = _ring(rng, 4, 0.14)
    texts += [
        _text(quad, "polygon icrs"),  # case
        _text(quad, "Polygon"),  # no frame
        _text(quad, "POLYGON J2000 TOPOCENTER SPHERICAL2"),  # several frame words
        _text(quad, "  POLYGON\tICRS", sep="\t\n  ") + "  \n",  # whitespace
        _text(quad, "POLYGON\u00a0ICRS", sep="\u2003"),  # Unicode spaces (str.split's)
        _text(quad, "POLYGON FK5"),  # refused frame -> NULL
        _text(quad, "POLYGON GALACTIC"),  # unknown word -> unreadable -> NULL
        _text(quad, "POLYGON ICRS") + " 1.0",  # odd count -> NULL
        _text(quad[:2]),  # two vertices -> NULL
        _text([quad[0], quad[0], quad[1], quad[2]]),  # coincident vertices -> NULL
        _text([quad[0], quad[2], quad[1], quad[3]]),  # bow tie -> NULL
        _text([(10.0, 0.0), (11.0, 0.0), (12.0, 0.0), (11.0, 1.0)]),  # straight vertex
        _text([(10.0, 0.0), (12.0, 0.0), (11.0, 0.0), (11.0, 1.0)]),  # fold-back -> NULL
        _text([(ra + 360.0, dec) for ra, dec in quad]),  # RA beyond 360
        _text([(ra - 720.0, dec) for ra, dec in quad]),  # negative RA
        _text([(0.0, 89.9), (90.0, 89.9), (180.0, 89.9), (270.0, 89.9)]),  # about the pole
        _text([(0.0, 0.0), (120.0, 0.0), (240.0, 0.0)]),  # a great circle -> NULL
        _text([(0.0, 0.0), (10.0, 0.0), (10.0, 95.0), (0.0, 10.0)]),  # dec > 90 -> NULL
        _text([(0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0)]).replace("10.0", "1e1", 1),
        "POLYGON ICRS 1 2 3 2 3 nan",
        "POLYGON ICRS 1 2 3 2 3 inf",
        "POLYGON ICRS 1 2 3 2 3 1e400",
        "POLYGON ICRS 1 2 3 2 3 4.0.0",
        "POLYGON ICRS 1 2 3 2 3 4",
        "POLYGON ICRS 1_0 2 3 2 3 4",  # float() reads 1_0
        "CIRCLE ICRS 10 20 0.5",
        "BOX ICRS 10 20 1 2",
        "POSITION ICRS 10 20",
        "",
        "   ",
        "POLYGON",
        "FROG 1 2 3 4 5 6",
    ]
    return texts


TEXTS = _footprint_texts()


def _same(batch: stcs._Footprint | None, row: stcs._Footprint | None) -> bool:
    if batch is None or row is None:
        return batch is row
    if batch.vertices is None or row.vertices is None:
        return batch.vertices is row.vertices and batch.region == row.region
    if not np.array_equal(batch.vertices, row.vertices):
        return False
    pieces = [sorted(map(tuple, p.tolist())) for p in batch.pieces]
    if pieces != [sorted(map(tuple, p.tolist())) for p in row.pieces]:
        return False
    # The centre's norm is summed in another order (1 ulp); the radius, an arccos near 1,
    # moves by about that over sin(radius).  Both stay far inside the bound's own margins.
    slack = 4e-16 / math.sin(max(row.radius, 1e-8))
    return (
        np.allclose(batch.centre, row.centre, rtol=0, atol=4e-16)
        and abs(batch.radius - row.radius) < slack
    )


def test_batch_preparation_equals_the_per_row_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stcs, "_BATCH_CELLS", 16_000)  # 40-gons 10 at a time: several chunks
    stcs.parse_stcs.cache_clear()
    stcs._parsed.cache_clear()
    batch = stcs._footprints(TEXTS)
    stcs.parse_stcs.cache_clear()
    stcs._parsed.cache_clear()
    for text, footprint in zip(TEXTS, batch, strict=True):
        assert _same(footprint, stcs._parsed(text)), text
    # the batch did the work for most polygons, and only where the per-row one succeeds
    prepared = [f for f in batch if f is not None and f.region is None]
    assert len(prepared) > 200
    for footprint in prepared:
        assert isinstance(stcs.parse_stcs(footprint.text), Polygon)
    assert sum(f is None for f in batch) > 50  # the refusals stay refused


def _near(text: str, *, first: bool) -> tuple[float, float]:
    """A position in or near the footprint of ``text``: its first vertex, or the mean of its
    vertices (inside a convex one), or (10, 20) when it has none."""
    try:
        numbers = [float(v) for v in text.split()[2:]]
    except ValueError:
        return 10.0, 20.0
    if len(numbers) < 2:
        return 10.0, 20.0
    if first:
        ra, dec = numbers[:2]
    else:
        ra, dec = float(np.mean(numbers[::2])), float(np.mean(numbers[1::2]))
    if not (math.isfinite(ra) and math.isfinite(dec) and -90 <= dec <= 90):
        return 10.0, 20.0
    return ra, dec


def _expected(text: str, relation: str, other: Region) -> bool | None:
    try:
        region = stcs.parse_stcs(text)
    except GeometryError:
        return None
    if relation == "intersects":
        return geometry.intersects(region, other)
    if relation == "contains":
        return geometry.contains(other, region)
    return geometry.contains(region, other)


@pytest.mark.parametrize("relation", ["intersects", "contains", "within"])
def test_region_relation_answers_as_the_exact_predicate_row_by_row(relation: str) -> None:
    rng = np.random.default_rng(7)
    others: list[list[float]] = []
    for k, text in enumerate(TEXTS):  # circles inside the footprint, across its edges, near
        ra, dec = _near(text, first=k % 2 == 1)
        r = float(rng.choice([1e-4, 0.05, 1.0, 30.0])) if k % 2 else 1e-7
        others.append([(ra + float(rng.uniform(-r, r))) % 360.0,
                       float(np.clip(dec + rng.uniform(-r, r), -89.9, 89.9)), r])  # fmt: skip
    stcs.parse_stcs.cache_clear()
    stcs._parsed.cache_clear()
    got = stcs.region_relation(
        pa.array(TEXTS),
        pa.array([relation] * len(TEXTS)),
        pa.array(["circle"] * len(TEXTS)),
        pa.array(others, type=pa.list_(pa.float64())),
    ).to_pylist()
    expected = [_expected(t, relation, Circle(*o)) for t, o in zip(TEXTS, others, strict=True)]
    assert got == expected
    assert any(expected) and not all(expected)


def test_points_and_polygons_answer_as_row_by_row() -> None:
    rng = np.random.default_rng(8)
    kinds: list[str] = []
    params: list[list[float]] = []
    others: list[Region] = []
    for text in TEXTS:
        ra, dec = _near(text, first=True)
        ra, dec = ra % 360.0, float(np.clip(dec + rng.uniform(-0.01, 0.01), -89.9, 89.9))
        if rng.random() < 0.5:
            kinds.append("point")
            params.append([ra, dec])
            others.append(Point(ra, dec))
        else:
            flat = [ra, dec, ra + 1.0, dec, ra + 1.0, min(dec + 0.5, 89.95)]
            kinds.append("polygon")
            params.append(flat)
            others.append(Polygon.from_flat(flat))
    for relation in ("intersects", "contains", "within"):
        got = stcs.region_relation(
            pa.array(TEXTS),
            pa.array([relation] * len(TEXTS)),
            pa.array(kinds),
            pa.array(params, type=pa.list_(pa.float64())),
        ).to_pylist()
        expected = [_expected(t, relation, o) for t, o in zip(TEXTS, others, strict=True)]
        assert got == expected


def test_a_circle_query_parses_only_the_borderline_footprints() -> None:
    """INTERSECTS(s_region, CIRCLE) over convex quadrilaterals parses none row by row
    except those whose answer lies within rounding of a threshold (issue 13: the per-row
    parse and preparation was most of a SIA query's time)."""
    rng = np.random.default_rng(5)
    texts = []
    for _ in range(400):  # squares, turned and either way round
        ra, dec, turn = rng.uniform(0, 360), rng.uniform(-80, 80), rng.uniform(0, 2 * math.pi)
        way = 1 if rng.random() < 0.5 else -1
        angles = [turn + way * k * math.pi / 2 for k in range(4)]
        stretch = 1 / math.cos(math.radians(dec))
        corners = [(ra + 0.14 * math.cos(a) * stretch, dec + 0.14 * math.sin(a)) for a in angles]
        texts.append(_text(corners))
    centres = [(float(t.split()[2]), float(t.split()[3])) for t in texts]
    others = [[(ra + 0.1) % 360.0, dec, 0.1] for ra, dec in centres]
    stcs.parse_stcs.cache_clear()
    stcs._parsed.cache_clear()
    got = stcs.region_relation(
        pa.array(texts),
        pa.array(["intersects"] * len(texts)),
        pa.array(["circle"] * len(texts)),
        pa.array(others, type=pa.list_(pa.float64())),
    ).to_pylist()
    assert stcs.parse_stcs.cache_info().misses < 5
    expected = [_expected(t, "intersects", Circle(*o)) for t, o in zip(texts, others, strict=True)]
    assert got == expected
