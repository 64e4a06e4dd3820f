"""Spherical predicates and measures against independent astropy oracles."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skyvault.sky.geometry import (
    angular_distance,
    area,
    centroid,
    contains,
    contains_points,
    dec_range,
    intersects,
    point_in_box,
    point_in_circle,
    point_in_polygon,
    point_in_range,
)
from skyvault.sky.regions import Box, Circle, Point, Polygon, RaDecRange

from .oracle import girard_area, inside_polygon, random_near, random_sky, separation

TOL = 1e-9  # degrees

NON_CONVEX = ((0, 0), (40, 0), (40, 40), (20, 8), (0, 40))
ACROSS_RA0 = ((350, -5), (10, -5), (12, 8), (0, 1), (348, 8))  # non-convex, wraps RA 0
AROUND_NORTH_POLE = tuple((float(r), 70.0 + 10.0 * (r % 80 == 0)) for r in range(0, 360, 40))
STAR_SOUTH_POLE = tuple(
    (float(k * 36), -60.0 if k % 2 else -80.0) for k in range(10)
)  # a star around the south pole: concave at every other vertex
TINY = (
    (10.0, 20.0),
    (10.0 + 3e-7, 20.0),
    (10.0 + 3e-7, 20.0 + 3e-7),
    (10.0 + 1.5e-7, 20.0 + 1e-7),
    (10.0, 20.0 + 3e-7),
)  # ~1 mas, non-convex
POLYGONS = [NON_CONVEX, ACROSS_RA0, AROUND_NORTH_POLE, STAR_SOUTH_POLE, TINY]


def test_distance_matches_astropy_everywhere() -> None:
    ra1, dec1 = random_sky(20000, 1)
    ra2, dec2 = random_sky(20000, 2)
    np.testing.assert_allclose(
        angular_distance(ra1, dec1, ra2, dec2), separation(ra1, dec1, ra2, dec2), atol=TOL, rtol=0
    )


@pytest.mark.parametrize("sep", [1e-9 / 3600 * 1000, 1 / 3.6e6, 1e-3, 90.0, 179.999999, 180.0])
def test_distance_tiny_and_antipodal(sep: float) -> None:
    # Pairs at a known separation along a meridian and across the pole.
    got = angular_distance(10.0, -sep / 2, 10.0, sep / 2)
    assert abs(float(got) - sep) < 1e-12
    across_pole = angular_distance(0.0, 90.0 - sep / 2, 180.0, 90.0 - sep / 2)
    assert abs(float(across_pole) - sep) < 1e-9
    # 1 mas along RA at dec 0, with wrap at RA 0.
    wrap = angular_distance(359.9999999, 0.0, 0.0000001, 0.0)
    assert abs(float(wrap) - 2e-7) < 1e-13  # inputs carry ~6e-14 of rounding


@pytest.mark.parametrize(
    "circle",
    [
        Circle(0.0, 0.0, 1.0),
        Circle(359.9, 10.0, 2.0),  # across RA 0
        Circle(45.0, 89.5, 1.0),  # contains the north pole
        Circle(200.0, -90.0, 5.0),  # centred on the south pole
        Circle(10.0, 20.0, 1 / 3.6e6),  # 1 mas
        Circle(100.0, 30.0, 120.0),  # larger than a hemisphere
        Circle(100.0, 30.0, 180.0),
    ],
)
def test_point_in_circle_matches_astropy(circle: Circle) -> None:
    size = min(3 * circle.radius, 180.0)
    ra, dec = random_near(circle.ra, circle.dec, size, 20000, 3)
    ra = np.concatenate([ra, random_sky(5000, 4)[0]])
    dec = np.concatenate([dec, random_sky(5000, 4)[1]])
    sep = separation(ra, dec, circle.ra, circle.dec)
    got = point_in_circle(ra, dec, circle)
    expected = sep <= circle.radius
    bad = got != expected
    assert np.all(np.abs(sep[bad] - circle.radius) < TOL)
    assert got.sum() > 0 or circle.radius < 1e-5
    assert np.array_equal(got, contains_points(circle, ra, dec))


@given(
    ra=st.floats(0, 360, exclude_max=True),
    dec=st.floats(-90, 90),
    radius=st.floats(1e-6, 179.0),
    bearing=st.floats(0, 360),
    frac=st.floats(0.0, 2.0),
)
@settings(max_examples=300, deadline=None)
def test_point_in_circle_property(ra, dec, radius, bearing, frac) -> None:
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    p = SkyCoord(ra * u.deg, dec * u.deg).directional_offset_by(
        bearing * u.deg, min(radius * frac, 180.0) * u.deg
    )
    sep = float(separation(ra, dec, p.ra.deg, p.dec.deg))
    got = bool(point_in_circle(p.ra.deg, p.dec.deg, Circle(ra, dec, radius)))
    if abs(sep - radius) > TOL:
        assert got == (sep <= radius)


@pytest.mark.parametrize("vertices", POLYGONS)
def test_point_in_polygon_matches_winding_oracle(vertices) -> None:
    poly = Polygon(vertices)
    lo, hi = dec_range(poly)
    centre = centroid(poly)
    size = max(
        separation(centre.ra, centre.dec, [v[0] for v in vertices], [v[1] for v in vertices])
    )
    ra, dec = random_near(centre.ra, centre.dec, min(2 * size, 180), 20000, 5)
    got = point_in_polygon(ra, dec, poly)
    expected = inside_polygon(ra, dec, vertices)
    assert got.sum() > 100
    mismatch = np.flatnonzero(got != expected)
    assert len(mismatch) == 0, (ra[mismatch], dec[mismatch])
    # Both orientations describe the same polygon.
    assert np.array_equal(got, point_in_polygon(ra, dec, Polygon(tuple(reversed(vertices)))))
    # dec_range bounds every inside point, tightly.
    assert np.all((dec[got] >= lo - TOL) & (dec[got] <= hi + TOL))
    assert hi - dec[got].max() < 0.05 * (hi - lo) + 1e-9


def test_polygon_contains_its_vertices_and_edges() -> None:
    poly = Polygon(NON_CONVEX)
    ra = np.array([v[0] for v in NON_CONVEX])
    dec = np.array([v[1] for v in NON_CONVEX])
    assert point_in_polygon(ra, dec, poly).all()
    # The reflex notch: (20, 8) is a vertex; (20, 20) lies outside, (20, 4) inside.
    assert point_in_polygon([20.0, 20.0], [4.0, 20.0], poly).tolist() == [True, False]


def test_box_matches_polygon_oracle_near_pole_and_wrap() -> None:
    for box in (Box(0.0, 85.0, 20.0, 12.0), Box(359.0, -30.0, 5.0, 3.0), Box(0, 90, 10, 10)):
        corners = box.corners()
        ra, dec = random_near(box.ra, box.dec, max(box.width, box.height), 20000, 6)
        got = point_in_box(ra, dec, box)
        assert got.sum() > 100
        assert np.array_equal(got, inside_polygon(ra, dec, corners))
        assert np.array_equal(got, point_in_polygon(ra, dec, box.to_polygon()))


def test_range_wraps_through_zero() -> None:
    rng = RaDecRange(350.0, 10.0, -5.0, 5.0)
    got = point_in_range([355, 5, 180, 0, 355, 360], [0, 0, 0, 5, 6, 0], rng)
    assert got.tolist() == [True, True, False, True, False, True]
    full = RaDecRange(0, 360, -90, 90)
    assert point_in_range([0, 359.99], [-90, 90], full).all()


def test_area_matches_analytic_and_girard() -> None:
    for r in (1.0, 90.0, 150.0, 180.0):
        expected = 2 * math.pi * (1 - math.cos(math.radians(r))) * (180 / math.pi) ** 2
        assert math.isclose(area(Circle(1, 2, r)), expected, rel_tol=1e-9)
    mas = 1 / 3.6e6  # a flat disc to 1e-18 relative
    assert math.isclose(area(Circle(1, 2, mas)), math.pi * mas**2, rel_tol=1e-9)
    assert area(Point(1, 2)) == 0.0
    for w, h in ((2.0, 1.0), (60.0, 100.0), (1e-5, 2e-5)):
        analytic = 4 * math.asin(math.sin(math.radians(w) / 2) * math.sin(math.radians(h) / 2))
        assert math.isclose(area(Box(10, 80, w, h)), analytic * (180 / math.pi) ** 2, rel_tol=1e-9)
    for vertices in POLYGONS[:4]:
        assert abs(area(Polygon(vertices)) - girard_area(vertices)) < TOL
    full = area(RaDecRange(0, 360, -90, 90))
    assert math.isclose(full, 4 * math.pi * (180 / math.pi) ** 2)
    # 1 mas square: side^2 to first order.
    side = 1 / 3.6e6
    assert math.isclose(area(Box(0, 0, side, side)), side * side, rel_tol=1e-6)


def test_centroid() -> None:
    assert centroid(Circle(5, 6, 7)) == Point(5, 6)
    assert centroid(Point(5, 6)) == Point(5, 6)
    for box in (Box(30, 60, 40, 20), Box(0, 0, 1e-6, 1e-6), Box(359.9, -89, 3, 1)):
        c = centroid(box)
        assert separation(c.ra, c.dec, box.ra, box.dec) < TOL
    regular = Polygon(tuple((float(r), 80.0) for r in range(0, 360, 30)))
    c = centroid(regular)
    assert c.dec > 90 - TOL
    # A non-symmetric polygon: compare with a Monte Carlo mean direction.
    poly = Polygon(NON_CONVEX)
    ra, dec = random_near(20, 20, 40, 400000, 7)
    inside = point_in_polygon(ra, dec, poly)
    from skyvault.sky._vector import radec_to_xyz, xyz_to_radec

    mean = xyz_to_radec(radec_to_xyz(ra[inside], dec[inside]).sum(axis=0))
    c = centroid(poly)
    assert separation(c.ra, c.dec, mean[0], mean[1]) < 0.1


def test_intersects_and_contains_circles() -> None:
    a = Circle(0, 0, 1)
    assert intersects(a, Circle(1.999, 0, 1))
    assert not intersects(a, Circle(2.001, 0, 1))
    assert intersects(Circle(359.5, 0, 0.6), Circle(0.5, 0, 0.6))  # across RA 0
    assert contains(Circle(0.5, 0, 0.4), a)
    assert not contains(Circle(0.5, 0, 0.6), a)
    assert contains(a, Circle(0, 0, 1))
    assert contains(Point(0.5, 0), a)
    assert intersects(Point(0.5, 0), a)
    assert intersects(a, Point(0.5, 0))
    assert not contains(a, Point(0, 0))
    assert contains(Point(3, 4), Point(3, 4))
    assert contains(Circle(3, 4, 0), Point(3, 4))


def test_intersects_and_contains_polygons() -> None:
    notch = Polygon(NON_CONVEX)
    # A small circle sitting in the notch touches nothing.
    in_notch = Circle(20, 25, 2)
    assert not intersects(in_notch, notch)
    assert not intersects(notch, in_notch)
    assert intersects(Circle(20, 25, 15), notch)
    assert contains(Circle(5, 5, 2), notch)
    assert not contains(Circle(20, 6, 3), notch)  # crosses the notch edges
    # A box bridging the notch: all its corners are in the polygon, but it is not contained.
    bridge = Polygon(((4, 30), (36, 30), (38, 36), (3, 36)))
    assert all(point_in_polygon(v[0], v[1], notch) for v in bridge.vertices)
    assert intersects(bridge, notch)
    assert not contains(bridge, notch)
    assert contains(Polygon(((2, 2), (8, 2), (8, 8), (2, 8))), notch)
    assert contains(Box(5, 5, 4, 4), notch)
    assert not intersects(Box(60, 60, 4, 4), notch)
    # Polygon within circles, including one larger than a hemisphere.
    square = Polygon(((0, 0), (2, 0), (2, 2), (0, 2)))
    assert contains(square, Circle(1, 1, 2))
    assert not contains(square, Circle(1, 1, 1))
    # Circles over 90°: the square must miss the small cap left around the antipode (30, 30).
    assert contains(square, Circle(210, -30, 178.5))
    assert contains(square, Circle(210, -30, 145))  # the 35° hole stops short of (2, 2)
    assert not contains(square, Circle(210, -30, 140))  # the 40° hole reaches the square
    assert not contains(notch, Point(5, 5))
    # Across RA 0 and around the pole.
    assert intersects(Polygon(ACROSS_RA0), Circle(0, -5.5, 0.6))
    assert contains(Circle(0, 89, 0.5), Polygon(AROUND_NORTH_POLE))
    assert intersects(Polygon(AROUND_NORTH_POLE), Polygon(STAR_SOUTH_POLE)) is False
