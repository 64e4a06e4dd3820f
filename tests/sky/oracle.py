"""Independent astropy oracles for the sky tests (no code shared with skyvault.sky)."""

from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord


def separation(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Great-circle distance in degrees, from astropy."""
    a = SkyCoord(np.asarray(ra1) * u.deg, np.asarray(dec1) * u.deg)
    b = SkyCoord(np.asarray(ra2) * u.deg, np.asarray(dec2) * u.deg)
    return np.asarray(a.separation(b).deg)


def winding(ra, dec, vertices) -> np.ndarray:
    """Turns made around each position by the boundary, from astropy position angles.

    Seen from a position p, the bearing to a point moving along a minor great-circle arc
    changes monotonically by less than 180°, so the wrapped bearing differences add up to the
    winding number: +1 exactly for positions in the region left of the boundary.
    """
    p = SkyCoord(np.asarray(ra, dtype=float) * u.deg, np.asarray(dec, dtype=float) * u.deg)
    total = np.zeros(p.shape)
    n = len(vertices)
    bearings = [p.position_angle(SkyCoord(v[0] * u.deg, v[1] * u.deg)).deg for v in vertices]
    for i in range(n):
        d = bearings[(i + 1) % n] - bearings[i]
        total += (d + 180.0) % 360.0 - 180.0
    # Bearings turn clockwise seen from outside for a counter-clockwise loop: negate.
    return np.rint(-total / 360.0).astype(int)


def total_turning(vertices) -> float:
    """Sum of the signed turning angles (degrees, left turns positive seen from outside)."""
    n = len(vertices)
    pts = [SkyCoord(v[0] * u.deg, v[1] * u.deg) for v in vertices]
    total = 0.0
    for i in range(n):
        incoming = pts[i].position_angle(pts[i - 1]).deg + 180.0
        outgoing = pts[i].position_angle(pts[(i + 1) % n]).deg
        # Position angles grow east of north: clockwise seen from outside the sphere.
        total -= ((outgoing - incoming) + 180.0) % 360.0 - 180.0
    return total


def inside_polygon(ra, dec, vertices) -> np.ndarray:
    """Membership in the smaller region bounded by ``vertices`` (great-circle edges).

    The winding number is [p in L] - [-p in L] for the region L left of the boundary; when
    the turning angles add up to more than 0 (Gauss-Bonnet: area of L below 2π) the polygon
    is L, reached where the winding is +1; otherwise it is the right side, winding -1.
    """
    w = winding(ra, dec, vertices)
    return w == 1 if total_turning(vertices) > 0 else w == -1


def girard_area(vertices) -> float:
    """Area (deg²) of the smaller region, from interior angles given by astropy."""
    n = len(vertices)
    pts = [SkyCoord(v[0] * u.deg, v[1] * u.deg) for v in vertices]
    angles = []
    for i in range(n):
        here = pts[i]
        to_prev = here.position_angle(pts[i - 1]).deg
        to_next = here.position_angle(pts[(i + 1) % n]).deg
        angles.append((to_prev - to_next) % 360.0)
    excess = np.radians(sum(angles)) - (n - 2) * np.pi
    if excess < 0 or excess > 2 * np.pi:  # measured the other side's angles
        excess = np.radians(sum(360.0 - a for a in angles)) - (n - 2) * np.pi
    sr = min(excess, 4 * np.pi - excess)
    return float(sr * (180.0 / np.pi) ** 2)


def random_sky(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 360, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))


def random_near(ra0: float, dec0: float, radius: float, n: int, seed: int):
    """Uniform-ish positions within ``radius`` degrees of a centre (astropy offsets)."""
    rng = np.random.default_rng(seed)
    centre = SkyCoord(ra0 * u.deg, dec0 * u.deg)
    pa = rng.uniform(0, 360, n) * u.deg
    sep = radius * np.sqrt(rng.uniform(0, 1, n)) * u.deg
    pts = centre.directional_offset_by(pa, sep)
    return np.asarray(pts.ra.deg), np.asarray(pts.dec.deg)
