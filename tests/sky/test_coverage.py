"""Conservative HEALPix coverage, order-29 ranges and partition pruning."""

from __future__ import annotations

import numpy as np
import pytest
from cdshealpix import nested

from skyvault.errors import GeometryError
from skyvault.sky.coverage import (
    healpix29,
    healpix29_ranges,
    intersect,
    partitions_overlapping,
    region_coverage,
    union,
)
from skyvault.sky.geometry import centroid, contains_points
from skyvault.sky.regions import Box, Circle, Point, Polygon, RaDecRange

from .oracle import random_near, random_sky, separation


def _covered(ranges: np.ndarray, cells29: np.ndarray) -> np.ndarray:
    idx = np.searchsorted(ranges[:, 0], cells29, side="right") - 1
    return (idx >= 0) & (cells29 < ranges[np.maximum(idx, 0), 1])


def _inside_samples(region, n: int = 200_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Positions inside the region, many of them hugging its boundary."""
    if isinstance(region, RaDecRange):
        rng = np.random.default_rng(seed)
        span = (region.ra_max - region.ra_min) % 360.0 or 360.0
        ra = (region.ra_min + span * rng.uniform(0, 1, n)) % 360.0
        u = rng.uniform(0, 1, n) ** 0.05  # crowd both dec limits
        lo, hi = region.dec_min, region.dec_max
        dec = np.where(rng.uniform(0, 1, n) < 0.5, lo + (hi - lo) * (1 - u), lo + (hi - lo) * u)
        ra = np.concatenate([ra, [region.ra_min, region.ra_max % 360.0]])
        dec = np.concatenate([dec, [lo, hi]])
        return ra, dec
    if isinstance(region, Circle | Point):
        radius = region.radius if isinstance(region, Circle) else 0.0
        ra, dec = random_near(region.ra, region.dec, max(radius, 1e-12) * 1.0000001, n, seed)
    else:
        verts = region.corners() if isinstance(region, Box) else list(region.vertices)
        c = centroid(region)
        ra0, dec0 = c.ra, c.dec
        size = float(max(separation(ra0, dec0, [v[0] for v in verts], [v[1] for v in verts])))
        ra, dec = random_near(ra0, dec0, size * 1.01, n, seed)
        ra = np.concatenate([ra, [v[0] for v in verts]])
        dec = np.concatenate([dec, [v[1] for v in verts]])
    keep = contains_points(region, ra, dec)
    return ra[keep], dec[keep]


REGIONS = [
    Point(123.4, -56.7),
    Circle(0.0, 0.0, 1 / 3600),
    Circle(359.99, 0.0, 1 / 60),
    Circle(45.0, 89.99, 0.05),
    Circle(10.0, -30.0, 5.0),
    Circle(200.0, 10.0, 100.0),
    Circle(0.0, 0.0, 150.0),  # mocpy's from_cone misses cells of cones this wide
    Polygon(((0, 0), (40, 0), (40, 40), (20, 8), (0, 40))),
    Polygon(((350, -5), (10, -5), (12, 8), (0, 1), (348, 8))),
    Polygon(tuple((float(k * 36), -60.0 if k % 2 else -80.0) for k in range(10))),
    Box(0.0, 89.5, 2.0, 1.0),
    Box(359.999, 0.0, 0.002, 0.001),
    RaDecRange(350.0, 10.0, -5.0, 5.0),
    RaDecRange(0.0, 360.0, 80.0, 90.0),
    RaDecRange(10.0, 20.0, -90.0, -85.0),
]


@pytest.mark.parametrize("region", REGIONS, ids=lambda r: type(r).__name__)
@pytest.mark.parametrize("max_order", [3, 8, 14])
def test_coverage_has_no_false_negatives(region, max_order: int) -> None:
    ra, dec = _inside_samples(region)
    assert len(ra) > 0
    moc = region_coverage(region, max_order)
    assert moc.max_order <= max_order
    ranges = np.asarray(moc.to_depth29_ranges, dtype=np.int64)
    assert np.all(_covered(ranges, healpix29(ra, dec)))
    # Coarsened ranges stay a superset.
    coarse = healpix29_ranges(moc, max_ranges=4)
    assert len(coarse) <= 4
    assert np.all(_covered(coarse, healpix29(ra, dec)))


def test_coverage_is_not_everything() -> None:
    moc = region_coverage(Circle(10.0, 20.0, 1 / 60), 14)
    ranges = healpix29_ranges(moc)
    covered = int(np.sum(ranges[:, 1] - ranges[:, 0]))
    assert 0 < covered < 12 * 4**29 // 10**6
    far_ra, far_dec = random_sky(1000, 3)
    far = separation(far_ra, far_dec, 10.0, 20.0) > 1.0
    assert not np.any(_covered(ranges, healpix29(far_ra[far], far_dec[far])))


def test_healpix29_ranges_merge_and_coarsen() -> None:
    a = region_coverage(Circle(10, 10, 0.5), 10)
    b = region_coverage(Circle(200, -40, 0.5), 10)
    c = region_coverage(Circle(100, 60, 0.5), 10)
    both = union(a, b, c)
    fine = healpix29_ranges(both, max_ranges=10_000)
    assert fine.dtype == np.int64
    assert fine.shape[1] == 2
    assert np.all(fine[:, 0] < fine[:, 1])
    assert np.all(fine[1:, 0] > fine[:-1, 1])  # sorted, disjoint, not touching
    for limit in (1, 2, 3, 5, 32):
        coarse = healpix29_ranges(both, max_ranges=limit)
        assert len(coarse) <= limit
        # Superset: every fine interval lies inside a coarse one.
        idx = np.searchsorted(coarse[:, 0], fine[:, 0], side="right") - 1
        assert np.all(idx >= 0)
        assert np.all(fine[:, 1] <= coarse[idx, 1])
    # With three far-apart cones and three ranges allowed, each cone keeps its own range.
    assert len(healpix29_ranges(both, max_ranges=3)) == 3
    assert healpix29_ranges(intersect(a, b)).shape == (0, 2)
    with pytest.raises(GeometryError):
        healpix29_ranges(a, max_ranges=0)


def test_range_arithmetic_matches_the_nested_definition() -> None:
    # One order-5 cell: its depth-29 interval is [pix << 48, (pix + 1) << 48).
    pix = 1234
    lon, lat = nested.healpix_to_lonlat(np.array([pix], dtype=np.uint64), 5)
    moc = region_coverage(Point(float(lon.deg[0]), float(lat.deg[0])), 5)
    assert healpix29_ranges(moc).tolist() == [[pix << 48, (pix + 1) << 48]]


def test_partitions_overlapping_matches_brute_force() -> None:
    rng = np.random.default_rng(5)
    orders = rng.integers(0, 9, 5000)
    pixels = np.array([rng.integers(0, 12 * 4 ** int(k)) for k in orders])
    partitions = list(zip(orders.tolist(), pixels.tolist(), strict=True))
    moc = union(
        region_coverage(Circle(10, 10, 3), 9),
        region_coverage(Polygon(((350, -5), (10, -5), (12, 8), (0, 1), (348, 8))), 9),
    )
    got = partitions_overlapping(moc, partitions)
    ranges = healpix29_ranges(moc, max_ranges=1 << 40)
    expected = [
        i
        for i, (k, p) in enumerate(partitions)
        if np.any((ranges[:, 0] < (p + 1) << (2 * (29 - k))) & (ranges[:, 1] > p << (2 * (29 - k))))
    ]
    assert got == expected
    assert 0 < len(got) < len(partitions)
    assert partitions_overlapping(ranges, partitions) == expected
    assert partitions_overlapping(moc, []) == []
    with pytest.raises(GeometryError):
        partitions_overlapping(moc, [(3, 12 * 4**3)])


def test_bad_order() -> None:
    with pytest.raises(GeometryError):
        region_coverage(Circle(0, 0, 1), 30)


@pytest.mark.parametrize(
    ("ra", "dec", "radius", "order"),
    [
        (10.5, -20.25, 0.01, 14),
        (359.999, 0.0, 0.5, 10),
        (-5.0, 89.99, 0.2, 12),
        (720.25, -89.9, 1.0, 8),
    ],
)
def test_fast_cone_moc_equals_mocpy_public_api(
    ra: float, dec: float, radius: float, order: int
) -> None:
    """The direct call into mocpy's compiled cone gives the public ``MOC.from_cone`` MOC."""
    import astropy.units as u
    from astropy.coordinates import Angle, Latitude, Longitude
    from mocpy import MOC

    from skyvault.sky.coverage import _cone_moc

    expected = MOC.from_cone(
        lon=Longitude([ra], unit=u.deg),
        lat=Latitude([dec], unit=u.deg),
        radius=Angle(radius, unit=u.deg),
        max_depth=order,
        delta_depth=2,
    )
    assert _cone_moc(ra, dec, radius, order) == expected


# --- RA/Dec ranges: cell boxes computed in the HEALPix plane, no cdshealpix call ----------


def _decode_nested(cells: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Base cell, row and diff (``ix - iy``) of NESTED indexes, from their bits."""
    cells = cells.astype(np.int64)
    base = cells >> (2 * order)
    ix = np.zeros_like(cells)
    iy = np.zeros_like(cells)
    for k in range(order):
        ix |= ((cells >> (2 * k)) & 1) << k
        iy |= ((cells >> (2 * k + 1)) & 1) << k
    base_y = np.array([1, 1, 1, 1, 0, 0, 0, 0, -1, -1, -1, -1])[base]
    return base, (base_y + 1) * 2**order + ix + iy, ix - iy


def _sample_cells(order: int, seed: int) -> np.ndarray:
    n = 12 * 4**order
    if n <= 20_000:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    # Random cells, plus the cells at both poles and on both sides of the polar caps' edges.
    ra = np.array([0.0, 45.0, 135.0, 225.0, 315.0] * 4)
    edge = np.degrees(np.arcsin(2.0 / 3.0))
    dec = np.repeat([90.0, -90.0, edge, -edge], 5)
    special = nested.lonlat_to_healpix(*_lonlat_deg(ra, dec), order).astype(np.int64)
    return np.concatenate([rng.integers(0, n, 4000), special])


def _lonlat_deg(ra: np.ndarray, dec: np.ndarray):
    import astropy.units as u
    from astropy.coordinates import Latitude, Longitude

    return Longitude(ra, unit=u.deg), Latitude(dec, unit=u.deg)


@pytest.mark.parametrize("order", [0, 1, 2, 3, 6, 10, 18])
def test_cell_boxes_are_the_exact_radec_extent_of_cdshealpix_cells(order: int) -> None:
    """Each cell's RA interval and declination rows contain its whole boundary (sampled by
    cdshealpix 16 points per side) and are reached by it: the boxes are exact."""
    from skyvault.sky.coverage import _cell_ra, _row_decs

    cells = _sample_cells(order, seed=order)
    base, row, diff = _decode_nested(cells, order)
    lo, width = _cell_ra(base, row, diff, order)
    decs = _row_decs(order)
    dec_lo, dec_hi = decs[row], decs[row + 2]
    lon, lat = nested.vertices(cells.astype(np.uint64), order, step=16)
    b_ra, b_dec = np.asarray(lon.deg), np.asarray(lat.deg)
    eps = 1e-9
    assert np.all(b_dec >= dec_lo[:, None] - eps)
    assert np.all(b_dec <= dec_hi[:, None] + eps)
    np.testing.assert_allclose(b_dec.min(axis=1), dec_lo, atol=eps, rtol=0)
    np.testing.assert_allclose(b_dec.max(axis=1), dec_hi, atol=eps, rtol=0)
    offset = (b_ra - lo[:, None]) % 360.0
    offset = np.where(offset > 360.0 - eps, offset - 360.0, offset)
    at_pole = np.abs(b_dec) > 90.0 - eps  # a pole's RA is arbitrary
    assert np.all((offset <= width[:, None] + eps) | at_pole)
    # A cell touching a pole is given every RA: the pole itself has them all.
    polar_cell = width == 360.0
    assert np.array_equal(polar_cell, at_pole.any(axis=1))
    reached = np.where(at_pole, np.nan, offset)
    np.testing.assert_allclose(np.nanmin(reached, axis=1)[~polar_cell], 0.0, atol=eps, rtol=0)
    np.testing.assert_allclose(
        np.nanmax(reached, axis=1)[~polar_cell], width[~polar_cell], atol=eps, rtol=0
    )


@pytest.mark.parametrize("order", [0, 1, 3, 6])
def test_order_tables_list_every_cell_sorted_by_row(order: int) -> None:
    from skyvault.sky.coverage import _cell_ra, _order_table

    table = _order_table(order)
    assert np.array_equal(np.sort(table.nested), np.arange(12 * 4**order))
    assert np.all(np.diff(table.row) >= 0)
    base, row, diff = _decode_nested(table.nested, order)
    assert np.array_equal(base, table.base)
    assert np.array_equal(row, table.row)
    assert np.array_equal(diff, table.diff)
    lo, width = _cell_ra(base, row, diff, order)
    assert np.array_equal(lo, table.ra_lo)
    assert np.array_equal(width, table.ra_width)


def _random_ranges(n: int, seed: int) -> list[RaDecRange]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        kind = k % 6
        ra_min = float(rng.choice([0.0, 360.0 - 1e-7, rng.uniform(0.0, 360.0)]))
        span = float(rng.choice([rng.uniform(0.0, 3.0), rng.uniform(0.0, 90.0), 359.9]))
        if kind == 0:  # wraps through RA 0
            ra_min = float(rng.uniform(300.0, 360.0))
            span = float(rng.uniform(360.0 - ra_min, 120.0))
        ra_max = (ra_min + span) % 360.0
        dec_min = float(rng.uniform(-90.0, 90.0))
        dec_max = min(90.0, dec_min + float(rng.choice([rng.uniform(0, 1), rng.uniform(0, 30)])))
        if kind == 1:  # polar cap, every RA
            cap = float(rng.uniform(45.0, 89.9))
            out.append(
                RaDecRange(0.0, 360.0, cap, 90.0)
                if k % 12 == 1
                else RaDecRange(0.0, 360.0, -90.0, -cap)
            )
            continue
        if kind == 2:  # reaches a pole over part of the RAs
            dec_min, dec_max = (dec_min, 90.0) if dec_min > 0 else (-90.0, dec_max)
        if kind == 3:  # a full-RA band
            ra_min, ra_max = 0.0, 360.0
        if kind == 4:  # tiny
            span = float(rng.uniform(1e-6, 1e-3))
            ra_max = (ra_min + span) % 360.0
            dec_min = float(rng.uniform(-89.0, 89.0))
            dec_max = dec_min + float(rng.uniform(1e-6, 1e-3))
        out.append(RaDecRange(ra_min, ra_max, dec_min, dec_max))
    return out


def _points_in_range(region: RaDecRange, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Uniform points of the range plus points on its edges and corners."""
    rng = np.random.default_rng(seed)
    full = region.ra_max - region.ra_min >= 360.0
    span = 360.0 if full else (region.ra_max - region.ra_min) % 360.0
    lo, hi = region.dec_min, region.dec_max
    ra = region.ra_min + span * rng.uniform(0.0, 1.0, n)
    dec = np.degrees(
        np.arcsin(rng.uniform(np.sin(np.radians(lo)), np.sin(np.radians(hi)), n))
    ).clip(lo, hi)
    edge = rng.uniform(0.0, 1.0, n // 4)
    ra = np.concatenate(
        [
            ra,
            region.ra_min + span * edge,
            region.ra_min + span * edge,
            np.full(n // 4, region.ra_min),
            np.full(n // 4, region.ra_min + span),
            [region.ra_min, region.ra_min, region.ra_min + span, region.ra_min + span],
        ]
    )
    dec = np.concatenate(
        [
            dec,
            np.full(n // 4, lo),
            np.full(n // 4, hi),
            lo + (hi - lo) * edge,
            lo + (hi - lo) * edge,
            [lo, hi, lo, hi],
        ]
    )
    return ra % 360.0, dec


@pytest.mark.parametrize("seed", range(4))
def test_random_ranges_are_covered(seed: int) -> None:
    """Every point of random ranges (wrapping, polar, tiny, full-RA) lies in a coverage cell,
    checked with cdshealpix's own cell of the point at the coverage's order."""
    for k, region in enumerate(_random_ranges(60, seed)):
        max_order = [3, 8, 14, 18][k % 4]
        moc = region_coverage(region, max_order)
        order = int(moc.max_order)
        ra, dec = _points_in_range(region, 800, seed * 1000 + k)
        lon, lat = _lonlat_deg(ra, dec)
        cells = nested.lonlat_to_healpix(lon, lat, order).astype(np.int64)
        cov = np.asarray(moc.flatten(), dtype=np.int64)
        missed = ~np.isin(cells, cov)
        assert not missed.any(), (region, max_order, ra[missed][:3], dec[missed][:3])
        assert np.all(moc.contains_lonlat(lon, lat))


def _old_range_coverage(region: RaDecRange, max_order: int):
    """The refinement used before (disks through the farthest corner, enlarged by half), kept
    as the yardstick for the new coverage's tightness."""
    from mocpy import MOC

    from skyvault.sky.coverage import _adaptive_order

    ra_min, ra_max, dec_min, dec_max = region.ra_min, region.ra_max, region.dec_min, region.dec_max
    span = (ra_max - ra_min) % 360.0 if ra_max - ra_min < 360.0 else 360.0
    widest = 0.0 if dec_min <= 0.0 <= dec_max else min(abs(dec_min), abs(dec_max))
    size = min(dec_max - dec_min, span * np.cos(np.radians(widest)))
    target = min(_adaptive_order(size, max_order), 10)
    cells = np.arange(12, dtype=np.uint64)
    order = 0
    while True:
        lon, lat = nested.healpix_to_lonlat(cells, order)
        ra_c, dec_c = np.asarray(lon.deg), np.asarray(lat.deg)
        corners = nested.vertices(cells, order)
        c_ra, c_dec = np.radians(corners[0].deg), np.radians(corners[1].deg)
        r0, d0 = np.radians(ra_c)[:, None], np.radians(dec_c)[:, None]
        cos_sep = np.sin(d0) * np.sin(c_dec) + np.cos(d0) * np.cos(c_dec) * np.cos(c_ra - r0)
        radius = 1.5 * np.degrees(np.arccos(np.clip(cos_sep, -1, 1)).max(axis=1)) + 1e-9
        near = (dec_c - radius <= dec_max) & (dec_c + radius >= dec_min)
        polar = np.abs(dec_c) + radius >= 90.0
        width = np.degrees(
            np.arcsin(np.clip(np.sin(np.radians(radius)) / np.cos(np.radians(dec_c)), -1, 1))
        )
        offset = (ra_c - ra_min) % 360.0
        in_ra = (offset <= span) | (np.minimum(offset - span, 360.0 - offset) <= width)
        cells = cells[near & (polar | in_ra)]
        if order == target or cells.size == 0:
            break
        cells = (cells[:, None] * np.uint64(4) + np.arange(4, dtype=np.uint64)).ravel()
        order += 1
    return MOC.from_healpix_cells(cells, np.full(cells.size, order, dtype=np.uint8), max(order, 1))


def _area(moc) -> float:
    ranges = np.asarray(moc.to_depth29_ranges, dtype=np.float64)
    return float(np.sum(ranges[:, 1] - ranges[:, 0])) / (12 * 4.0**29)


def test_range_coverage_is_no_looser_than_before() -> None:
    ratios = []
    for k, region in enumerate(_random_ranges(48, 11)):
        max_order = [8, 14, 18][k % 3]
        new = region_coverage(region, max_order)
        old = _old_range_coverage(region, max_order)
        assert new.max_order == old.max_order
        ratios.append(_area(new) / _area(old))
    assert max(ratios) <= 1.0 + 1e-12
    assert np.median(ratios) < 0.95
    # A 10° band about the equator: the cells of the rows it crosses, not much more.
    band = region_coverage(RaDecRange(0.0, 360.0, -5.0, 5.0), 18)
    assert _area(band) < 1.4 * np.sin(np.radians(5.0))


@pytest.mark.parametrize(
    ("vertices", "order"),
    [
        (((83.0, -6.0), (85.0, -6.0), (85.0, -4.0), (83.0, -4.0)), 7),
        (((350, -5), (10, -5), (12, 8), (0, 1), (348, 8)), 5),
        (tuple((float(k * 36), -60.0 if k % 2 else -80.0) for k in range(10)), 4),
        (((10.0, 20.0), (10.0003, 20.0), (10.00015, 20.0002)), 18),
    ],
)
def test_fast_polygon_moc_equals_mocpy_public_api(vertices, order: int) -> None:
    """The direct call into mocpy's compiled polygon gives the public ``from_polygon`` MOC."""
    import astropy.units as u
    from astropy.coordinates import Latitude, Longitude
    from mocpy import MOC

    from skyvault.sky.coverage import _polygon_moc

    ra = np.array([v[0] for v in vertices], dtype=np.float64)
    dec = np.array([v[1] for v in vertices], dtype=np.float64)
    expected = MOC.from_polygon(
        lon=Longitude(ra, unit=u.deg), lat=Latitude(dec, unit=u.deg), max_depth=order
    )
    assert _polygon_moc(ra, dec, order) == expected
    assert _polygon_moc(ra, dec, order).max_order == order


def test_polygon_moc_falls_back_to_the_public_api(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    from skyvault.sky import coverage

    ra, dec = np.array([83.0, 85.0, 85.0, 83.0]), np.array([-6.0, -6.0, -4.0, -4.0])
    expected = coverage._polygon_moc(ra, dec, 9)

    def changed_signature(*args: object) -> None:
        raise TypeError("from_polygon() takes 5 positional arguments")

    for stub in (types.SimpleNamespace(), types.SimpleNamespace(from_polygon=changed_signature)):
        monkeypatch.setattr(coverage, "mocpy_core", stub)
        assert coverage._polygon_moc(ra, dec, 9) == expected


@pytest.mark.parametrize(
    "box",
    [
        (0.0, 0.0, -10.0, 10.0),  # the meridian RA 0
        (360.0, 360.0, 5.0, 6.0),
        (123.0, 123.0, -90.0, 90.0),
        (0.0, 360.0, 90.0, 90.0),  # the north pole
        (17.0, 18.0, -90.0, -90.0),  # the south pole
        (0.0, 360.0, 0.0, 0.0),  # the equator
        (359.0, 1.0, 41.8103149, 41.8103149),  # the polar caps' edge, across RA 0
        (0.0, 360.0, -90.0, 90.0),  # everything
    ],
)
@pytest.mark.parametrize("max_order", [0, 5, 18])
def test_degenerate_ranges_are_covered(
    box: tuple[float, float, float, float], max_order: int
) -> None:
    region = RaDecRange(*box)
    moc = region_coverage(region, max_order)
    ra, dec = _points_in_range(region, 400, 1)
    assert np.all(moc.contains_lonlat(*_lonlat_deg(ra, dec)))
