"""Where the demo objects are: the DP0.2 footprint, a clustered galaxy field, a star gradient.

Positions are drawn on the sphere (uniform in RA and in sin(Dec) within the footprint), then
shaped into a sky that looks like a deep extragalactic field:

* *field galaxies*: a uniform background;
* *grouped galaxies*: a Soneira–Peebles hierarchy (each point spawns ``η`` children within a
  radius ``λ`` times smaller, level after level), which gives the power-law angular
  correlation function of real galaxies, ``w(θ) ∝ θ^(1-γ)`` with ``γ = 3 - ln η / ln λ``;
* *cluster galaxies*: a Neyman–Scott process of compact rich clusters with projected
  Plummer profiles (cores of about an arcminute);
* *stars*: a smooth density rising towards the Galactic plane as ``1 / sin|b|``;
* *sky objects*: uniform blank-sky positions, as the pipeline places them.

Most objects lie in a *deep field*, a box centred on (62°, -37°) (the position DP0.2's
tutorials query) at DP0.2's own density, about 100 Object rows in a cone of 0.01° radius;
its size grows with the scale of the build.  The rest are spread thinly over the whole
DP0.2 footprint, so that queries anywhere in it find objects, visits and sources.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "DEC_MAX",
    "DEC_MIN",
    "DEEP_CENTRE",
    "DP02_DENSITY",
    "FOOTPRINT",
    "RA_MAX",
    "RA_MIN",
    "Box",
    "Kind",
    "Population",
    "galactic_latitude",
    "gnomonic",
    "gnomonic_inverse",
    "sample_population",
    "tract_patch",
    "uniform_in_footprint",
]

RA_MIN, RA_MAX = 52.0, 72.0
DEC_MIN, DEC_MAX = -44.0, -28.0

#: Centre of the deep field (RA, Dec in degrees).
DEEP_CENTRE = (62.0, -37.0)
#: Object rows per square degree in DP0.2 (100 in a cone of 0.01° radius).
DP02_DENSITY = 100.0 / (np.pi * 0.01**2)

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class Box:
    """A region bounded by RA and Dec (degrees)."""

    ra_min: float
    ra_max: float
    dec_min: float
    dec_max: float

    @property
    def area(self) -> float:
        """Solid angle in square degrees."""
        band = np.sin(np.radians(self.dec_max)) - np.sin(np.radians(self.dec_min))
        return float(np.degrees(1.0) * (self.ra_max - self.ra_min) * band)

    @classmethod
    def deep_field(cls, n: int) -> Box:
        """The box around :data:`DEEP_CENTRE` that ``n`` objects fill at DP0.2's density."""
        ra0, dec0 = DEEP_CENTRE
        half = float(np.sqrt(n / DP02_DENSITY)) / 2.0
        half_ra = half / float(np.cos(np.radians(dec0)))
        return cls(ra0 - half_ra, ra0 + half_ra, dec0 - half, dec0 + half)


FOOTPRINT = Box(RA_MIN, RA_MAX, DEC_MIN, DEC_MAX)


class Kind:
    """Codes for what an object is (kept only while generating; not a published column)."""

    STAR = 0
    GALAXY = 1
    GALAXY_GROUP = 2
    GALAXY_CLUSTER = 3
    SKY = 4


# Rotation from ICRS to Galactic unit vectors (the IAU definition as realised for ICRS).
_ICRS_TO_GALACTIC = np.array(
    [
        [-0.0548755604162154, -0.8734370902348850, -0.4838350155487132],
        [+0.4941094278755837, -0.4448296299600112, +0.7469822444972189],
        [-0.8676661490190047, -0.1980763734312015, +0.4559837761750669],
    ]
)

# Soneira–Peebles parameters: η = 4, λ = 4^(1/1.2) gives γ = 1.8, the observed galaxy slope.
_SP_ETA = 4
_SP_LAMBDA = 4.0 ** (1.0 / 1.2)
_SP_LEVELS = 5
_SP_RADIUS_DEG = 1.2

# Share of each kind in the population (sky objects, stars; galaxies take the rest).
_SKY_FRACTION = 0.01
_STAR_FRACTION = 0.12
_CLUSTER_SHARE = 0.10  # of galaxies, in Neyman–Scott clusters
_GROUP_SHARE = 0.50  # of galaxies, in the Soneira–Peebles hierarchy
_BLEND_SHARE = 0.02  # of galaxies: deblended parents, each with two children


@dataclass(frozen=True)
class Population:
    """Every object of the demo: position, kind, id and deblending family.

    ``parent`` is the row index of an object's deblend parent, or -1; ``n_child`` the
    number of children of a parent.  ``object_id`` follows from ``tract``, ``patch`` and
    the row index (see :func:`object_ids`).
    """

    ra: FloatArray
    dec: FloatArray
    kind: NDArray[np.int8]
    parent: IntArray
    n_child: NDArray[np.int32]
    tract: IntArray
    patch: IntArray
    object_id: IntArray

    def __len__(self) -> int:
        return int(self.ra.size)


def uniform_in_footprint(
    n: int, rng: np.random.Generator, box: Box = FOOTPRINT
) -> tuple[FloatArray, FloatArray]:
    """``n`` positions uniform on the sphere within ``box`` (uniform in sin Dec)."""
    ra = rng.uniform(box.ra_min, box.ra_max, n)
    s_lo, s_hi = np.sin(np.radians(box.dec_min)), np.sin(np.radians(box.dec_max))
    dec = np.degrees(np.arcsin(rng.uniform(s_lo, s_hi, n)))
    return ra, dec


def in_footprint(ra: FloatArray, dec: FloatArray, box: Box = FOOTPRINT) -> NDArray[np.bool_]:
    """Whether each position lies inside ``box``."""
    return (ra >= box.ra_min) & (ra < box.ra_max) & (dec >= box.dec_min) & (dec < box.dec_max)


def galactic_latitude(ra: FloatArray, dec: FloatArray) -> FloatArray:
    """Galactic latitude ``b`` in degrees of ICRS positions in degrees."""
    r, d = np.radians(ra), np.radians(dec)
    z = _ICRS_TO_GALACTIC[2]
    sin_b = z[0] * np.cos(d) * np.cos(r) + z[1] * np.cos(d) * np.sin(r) + z[2] * np.sin(d)
    return np.asarray(np.degrees(np.arcsin(np.clip(sin_b, -1.0, 1.0))), dtype=np.float64)


def gnomonic(
    ra: FloatArray, dec: FloatArray, ra0: float, dec0: float
) -> tuple[FloatArray, FloatArray]:
    """Tangent-plane coordinates (ξ east, η north; degrees) of positions about ``(ra0, dec0)``.

    Positions more than 90° away from the tangent point get NaN.
    """
    r, d = np.radians(ra), np.radians(dec)
    r0, d0 = np.radians(ra0), np.radians(dec0)
    dr = r - r0
    cos_c = np.sin(d0) * np.sin(d) + np.cos(d0) * np.cos(d) * np.cos(dr)
    with np.errstate(divide="ignore", invalid="ignore"):
        xi = np.cos(d) * np.sin(dr) / cos_c
        eta = (np.cos(d0) * np.sin(d) - np.sin(d0) * np.cos(d) * np.cos(dr)) / cos_c
    behind = cos_c <= 0
    xi[behind] = np.nan
    eta[behind] = np.nan
    return np.degrees(xi), np.degrees(eta)


def gnomonic_inverse(
    xi: FloatArray, eta: FloatArray, ra0: FloatArray | float, dec0: FloatArray | float
) -> tuple[FloatArray, FloatArray]:
    """Sky positions (degrees) of tangent-plane coordinates (degrees) about ``(ra0, dec0)``."""
    x, y = np.radians(xi), np.radians(eta)
    r0, d0 = np.radians(ra0), np.radians(dec0)
    rho = np.hypot(x, y)
    c = np.arctan(rho)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(rho > 0, y * np.sin(c) / rho, 0.0)
    dec = np.arcsin(np.cos(c) * np.sin(d0) + ratio * np.cos(d0))
    ra = r0 + np.arctan2(x * np.sin(c), rho * np.cos(d0) * np.cos(c) - y * np.sin(d0) * np.sin(c))
    return np.degrees(ra) % 360.0, np.degrees(dec)


def _offset(
    ra: FloatArray, dec: FloatArray, radius_deg: FloatArray, rng: np.random.Generator
) -> tuple[FloatArray, FloatArray]:
    """Positions displaced by up to ``radius_deg`` in a random direction (small angles)."""
    theta = rng.uniform(0.0, 2.0 * np.pi, ra.size)
    return _shift(ra, dec, radius_deg * np.cos(theta), radius_deg * np.sin(theta))


def _shift(
    ra: FloatArray, dec: FloatArray, east_deg: FloatArray, north_deg: FloatArray
) -> tuple[FloatArray, FloatArray]:
    new_dec = dec + north_deg
    new_ra = ra + east_deg / np.cos(np.radians(np.clip(new_dec, -89.0, 89.0)))
    return new_ra, new_dec


def _accept(ra: FloatArray, dec: FloatArray, n: int, box: Box) -> tuple[FloatArray, FloatArray]:
    """The first ``n`` positions inside ``box``."""
    keep = in_footprint(ra, dec, box)
    return ra[keep][:n], dec[keep][:n]


def _soneira_peebles(
    n: int, rng: np.random.Generator, box: Box = FOOTPRINT
) -> tuple[FloatArray, FloatArray]:
    """``n`` positions of a Soneira–Peebles hierarchy within ``box``."""
    per_tree = _SP_ETA**_SP_LEVELS
    # Trees are seeded in a footprint widened by their radius so the edges are not depleted;
    # each tree keeps a random share of its leaves so group richness varies.
    ra_out: list[FloatArray] = []
    dec_out: list[FloatArray] = []
    total = 0
    while total < n:
        n_trees = max(4, int(1.6 * (n - total) / per_tree * 2.0) + 1)
        # Trees no larger than the box, so that most of their leaves land in it.
        top = min(_SP_RADIUS_DEG, (box.dec_max - box.dec_min) / 2)
        pad = top
        ra = rng.uniform(box.ra_min - pad / 0.7, box.ra_max + pad / 0.7, n_trees)
        s_lo = np.sin(np.radians(box.dec_min - pad))
        s_hi = np.sin(np.radians(box.dec_max + pad))
        dec = np.degrees(np.arcsin(rng.uniform(s_lo, s_hi, n_trees)))
        keep_share = rng.uniform(0.15, 0.85, n_trees)
        radius = top
        for _ in range(_SP_LEVELS):
            ra = np.repeat(ra, _SP_ETA)
            dec = np.repeat(dec, _SP_ETA)
            keep_share = np.repeat(keep_share, _SP_ETA)
            r = radius * np.sqrt(rng.uniform(0.0, 1.0, ra.size))
            ra, dec = _offset(ra, dec, r, rng)
            radius /= _SP_LAMBDA
        kept = rng.uniform(0.0, 1.0, ra.size) < keep_share
        ra, dec = _accept(ra[kept], dec[kept], n - total, box)
        ra_out.append(ra)
        dec_out.append(dec)
        total += ra.size
    return np.concatenate(ra_out), np.concatenate(dec_out)


def _neyman_scott(
    n: int, rng: np.random.Generator, box: Box = FOOTPRINT
) -> tuple[FloatArray, FloatArray]:
    """``n`` positions in compact rich clusters (projected Plummer profiles)."""
    ra_out: list[FloatArray] = []
    dec_out: list[FloatArray] = []
    total = 0
    while total < n:
        n_clusters = max(1, (n - total) // 60 + 1)
        c_ra, c_dec = uniform_in_footprint(n_clusters, rng, box)
        richness = np.clip(rng.lognormal(np.log(50.0), 0.6, n_clusters), 8, 600).astype(np.int64)
        core_deg = rng.uniform(0.4, 1.5, n_clusters) / 60.0
        ra = np.repeat(c_ra, richness)
        dec = np.repeat(c_dec, richness)
        core = np.repeat(core_deg, richness)
        u = rng.uniform(0.0, 0.96, ra.size)  # truncates the profile at about 5 core radii
        ra, dec = _offset(ra, dec, core * np.sqrt(u / (1.0 - u)), rng)
        ra, dec = _accept(ra, dec, n - total, box)
        ra_out.append(ra)
        dec_out.append(dec)
        total += ra.size
    return np.concatenate(ra_out), np.concatenate(dec_out)


def _stars(n: int, rng: np.random.Generator, box: Box = FOOTPRINT) -> tuple[FloatArray, FloatArray]:
    """``n`` star positions with density ∝ 1/sin|b| (rejection sampling)."""
    ra_out: list[FloatArray] = []
    dec_out: list[FloatArray] = []
    total = 0
    while total < n:
        m = 2 * (n - total) + 16
        ra, dec = uniform_in_footprint(m, rng, box)
        weight = 1.0 / np.sin(np.radians(np.abs(galactic_latitude(ra, dec))))
        keep = rng.uniform(0.0, 2.0, m) < weight  # |b| > 30° in the footprint: weight ≤ 2
        ra, dec = ra[keep][: n - total], dec[keep][: n - total]
        ra_out.append(ra)
        dec_out.append(dec)
        total += ra.size
    return np.concatenate(ra_out), np.concatenate(dec_out)


# A rings sky map in the manner of the DC2 one: Dec rings of equal height, each cut into
# tracts of about equal width, each tract into a 7 x 7 grid of patches.
_RING_HEIGHT_DEG = 180.0 / 120
_PATCHES_PER_SIDE = 7
_RING_LOWER = np.arange(120) * _RING_HEIGHT_DEG - 90.0
_RING_TRACTS = np.maximum(
    1,
    np.ceil(
        360.0
        * np.cos(np.radians(np.minimum(np.abs(_RING_LOWER), np.abs(_RING_LOWER + 1.5))))
        / _RING_HEIGHT_DEG
    ),
).astype(np.int64)
_RING_FIRST = np.concatenate([[0], np.cumsum(_RING_TRACTS)[:-1]])


def tract_patch(ra: FloatArray, dec: FloatArray) -> tuple[IntArray, IntArray]:
    """Tract and patch numbers of positions on the demo rings sky map."""
    ring = np.clip(((dec + 90.0) // _RING_HEIGHT_DEG).astype(np.int64), 0, 119)
    n_tracts = _RING_TRACTS[ring]
    width = 360.0 / n_tracts
    column = np.minimum((ra % 360.0) // width, n_tracts - 1).astype(np.int64)
    tract = _RING_FIRST[ring] + column
    fx = (ra % 360.0) / width - column
    fy = (dec - _RING_LOWER[ring]) / _RING_HEIGHT_DEG
    px = np.clip((fx * _PATCHES_PER_SIDE).astype(np.int64), 0, _PATCHES_PER_SIDE - 1)
    py = np.clip((fy * _PATCHES_PER_SIDE).astype(np.int64), 0, _PATCHES_PER_SIDE - 1)
    return tract, py * _PATCHES_PER_SIDE + px


def tract_pixels(ra: FloatArray, dec: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Pixel coordinates (0.2 arcsec pixels) of positions in their tract's frame."""
    ring = np.clip(((dec + 90.0) // _RING_HEIGHT_DEG).astype(np.int64), 0, 119)
    width = 360.0 / _RING_TRACTS[ring]
    x = ((ra % 360.0) % width) * np.cos(np.radians(dec)) * 3600.0 / 0.2
    y = (dec - _RING_LOWER[ring]) * 3600.0 / 0.2
    return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)


def patch_boxes(tract: IntArray, patch: IntArray) -> tuple[FloatArray, ...]:
    """RA/Dec bounds ``(ra_lo, ra_hi, dec_lo, dec_hi)`` of patches of the rings sky map."""
    ring = np.searchsorted(_RING_FIRST, tract, side="right") - 1
    width = 360.0 / _RING_TRACTS[ring]
    column = tract - _RING_FIRST[ring]
    px, py = patch % _PATCHES_PER_SIDE, patch // _PATCHES_PER_SIDE
    ra_lo = (column + px / _PATCHES_PER_SIDE) * width
    dec_lo = _RING_LOWER[ring] + py * _RING_HEIGHT_DEG / _PATCHES_PER_SIDE
    return (
        ra_lo,
        ra_lo + width / _PATCHES_PER_SIDE,
        dec_lo,
        dec_lo + _RING_HEIGHT_DEG / _PATCHES_PER_SIDE,
    )


def object_ids(tract: IntArray, patch: IntArray, index: IntArray) -> IntArray:
    """``objectId`` = tract · 2^45 + patch · 2^38 + row index: unique, DP0.2-like magnitude."""
    return (tract << 45) | (patch << 38) | index


def _positions(
    n: int, n_child: int, rng: np.random.Generator, box: Box
) -> tuple[FloatArray, FloatArray, NDArray[np.int8]]:
    """Positions and kinds of ``n - n_child`` objects in ``box`` (room left for children)."""
    n_sky = max(1, round(n * _SKY_FRACTION))
    n_star = round(n * _STAR_FRACTION)
    n_gal = n - n_sky - n_star
    n_cluster = round(n_gal * _CLUSTER_SHARE)
    n_group = round(n_gal * _GROUP_SHARE)
    n_field = n_gal - n_cluster - n_group - n_child
    parts = [
        (_stars(n_star, rng, box), Kind.STAR),
        (uniform_in_footprint(n_field, rng, box), Kind.GALAXY),
        (_soneira_peebles(n_group, rng, box), Kind.GALAXY_GROUP),
        (_neyman_scott(n_cluster, rng, box), Kind.GALAXY_CLUSTER),
        (uniform_in_footprint(n_sky, rng, box), Kind.SKY),
    ]
    ra = np.concatenate([p[0][0] for p in parts])
    dec = np.concatenate([p[0][1] for p in parts])
    kind = np.concatenate([np.full(p[0][0].size, p[1], dtype=np.int8) for p in parts])
    return ra, dec, kind


def sample_population(n: int, rng: np.random.Generator, n_wide: int | None = None) -> Population:
    """The ``n`` demo objects: positions, kinds, deblend families and ids, in random order.

    ``n_wide`` of them (all when None) are spread over the whole footprint, the others fill
    the deep field (:meth:`Box.deep_field`) at DP0.2's density.
    """
    wide = n if n_wide is None else min(n_wide, n)
    deep = n - wide
    n_parent = round(
        (n - max(1, round(n * _SKY_FRACTION)) - round(n * _STAR_FRACTION)) * _BLEND_SHARE / 3
    )
    n_child = 2 * n_parent
    # Children are shared between the two parts in proportion to their size.
    deep_child = 2 * round(n_parent * deep / n) if n else 0
    parts = [_positions(wide, n_child - deep_child, rng, FOOTPRINT)]
    if deep:
        parts.append(_positions(deep, deep_child, rng, Box.deep_field(deep)))
    ra = np.concatenate([p[0] for p in parts])
    dec = np.concatenate([p[1] for p in parts])
    kind = np.concatenate([p[2] for p in parts])

    # Deblending: some galaxies are parents; each has two children within 0.6-2 arcsec.
    galaxies = np.flatnonzero((kind != Kind.STAR) & (kind != Kind.SKY))
    parents = np.sort(rng.choice(galaxies, n_parent, replace=False))
    p_ra = np.repeat(ra[parents], 2)
    p_dec = np.repeat(dec[parents], 2)
    sep = rng.uniform(0.6, 2.0, n_child) / 3600.0
    c_ra, c_dec = _offset(p_ra, p_dec, sep, rng)
    c_ra = np.clip(c_ra, RA_MIN, np.nextafter(RA_MAX, RA_MIN))
    c_dec = np.clip(c_dec, DEC_MIN, np.nextafter(DEC_MAX, DEC_MIN))
    ra = np.concatenate([ra, c_ra])
    dec = np.concatenate([dec, c_dec])
    kind = np.concatenate([kind, np.repeat(kind[parents], 2)])
    parent = np.full(ra.size, -1, dtype=np.int64)
    parent[n - n_child :] = np.repeat(parents, 2)
    n_children = np.zeros(ra.size, dtype=np.int32)
    n_children[parents] = 2

    # Random order, so every chunk of rows is a fair sample of the whole sky.
    order = rng.permutation(n)
    where = np.empty(n, dtype=np.int64)
    where[order] = np.arange(n)
    ra, dec, kind, n_children = ra[order], dec[order], kind[order], n_children[order]
    parent = parent[order]
    parent = np.where(parent >= 0, where[np.maximum(parent, 0)], -1)

    tract, patch = tract_patch(ra, dec)
    ids = object_ids(tract, patch, np.arange(n, dtype=np.int64))
    return Population(
        ra=ra,
        dec=dec,
        kind=kind,
        parent=parent,
        n_child=n_children,
        tract=tract,
        patch=patch,
        object_id=ids,
    )
