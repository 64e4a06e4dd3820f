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
