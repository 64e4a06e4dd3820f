"""The ``_healpix_29`` index of positions, checked against an independent astropy oracle."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.coordinates import SkyCoord

from skyvault.errors import GeometryError
from skyvault.sky.coverage import healpix29


def _cell_centres_order29(cells: np.ndarray) -> SkyCoord:
    from cdshealpix import nested

    lon, lat = nested.healpix_to_lonlat(cells.astype(np.uint64), 29)
    return SkyCoord(lon, lat)


def test_cell_contains_the_position() -> None:
    rng = np.random.default_rng(1)
    n = 5000
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    cells = healpix29(ra, dec)
    assert cells.dtype == np.int64
    assert cells.shape == (n,)
    assert np.all((cells >= 0) & (cells < 12 * 4**29))
    # An order-29 cell is ~0.4 mas across: its centre lies within 1 mas of the position.
    sep = _cell_centres_order29(cells).separation(SkyCoord(ra, dec, unit="deg")).mas
    assert np.all(sep < 1.0)


def test_nested_prefix_matches_order_zero_face() -> None:
    # Order-0 base cells: the north polar cap faces 0..3 start at RA 0, 90, 180, 270.
    cells = healpix29([45.0, 135.0, 225.0, 315.0], [60.0, 60.0, 60.0, 60.0])
    assert list(cells >> 58) == [0, 1, 2, 3]
    south = healpix29([45.0, 135.0, 225.0, 315.0], [-60.0, -60.0, -60.0, -60.0])
    assert list(south >> 58) == [8, 9, 10, 11]


def test_ra_wraps_and_shape_is_kept() -> None:
    a = healpix29(np.array([[10.0, 370.0], [-350.0, 10.0]]), 20.0)
    assert a.shape == (2, 2)
    assert len(set(a.ravel().tolist())) == 1
    assert healpix29(12.0, 34.0).shape == ()
    assert healpix29(np.array([]), np.array([])).shape == (0,)


def test_poles() -> None:
    north, south = healpix29([0.0, 0.0], [90.0, -90.0])
    assert north >> 58 in (0, 1, 2, 3)
    assert south >> 58 in (8, 9, 10, 11)


@pytest.mark.parametrize(("ra", "dec"), [(0.0, 90.5), (0.0, -91.0), (np.nan, 0.0), (0.0, np.inf)])
def test_bad_coordinates_raise(ra: float, dec: float) -> None:
    with pytest.raises(GeometryError):
        healpix29([1.0, ra], [1.0, dec])


@pytest.mark.parametrize(
    "box",
    [
        (0.0, 5.0, -90.0, 90.0),  # touches RA 0: missed rows with MOC.from_zone
        (350.0, 10.0, -10.0, 10.0),  # wraps through RA 0
        (355.0, 360.0, 20.0, 30.0),
        (10.0, 20.0, 80.0, 90.0),  # reaches the pole
        (100.0, 101.0, -1.0, 1.0),
        (0.0, 360.0, -5.0, 5.0),  # every RA
    ],
)
def test_radec_range_coverage_misses_no_point(box: tuple[float, float, float, float]) -> None:
    from skyvault.sky.coverage import healpix29_ranges, region_coverage
    from skyvault.sky.regions import RaDecRange

    region = RaDecRange(*box)
    rng = np.random.default_rng(7)
    n = 20_000
    span = (region.ra_max - region.ra_min) % 360.0 or 360.0
    ra = (region.ra_min + rng.uniform(0.0, span, n)) % 360.0
    low, high = np.sin(np.radians(region.dec_min)), np.sin(np.radians(region.dec_max))
    dec = np.degrees(np.arcsin(rng.uniform(low, high, n)))
    # Points on the edges too.
    ra = np.concatenate([ra, np.full(50, region.ra_min), np.full(50, region.ra_max % 360.0)])
    dec = np.concatenate([dec, rng.uniform(region.dec_min, region.dec_max, 100)])
    ranges = healpix29_ranges(region_coverage(region, 18), 10**6)
    hp = healpix29(ra, dec)
    at = np.searchsorted(ranges[:, 0], hp, side="right") - 1
    covered = (at >= 0) & (hp < ranges[np.maximum(at, 0), 1])
    assert covered.all(), f"{int((~covered).sum())} points of the range are not covered"
