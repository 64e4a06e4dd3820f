"""The demo survey: a camera, a pointing plan over five seasons, and its Visit/CcdVisit rows.

The camera is LSSTCam-like: 21 rafts (a 5 x 5 grid without its corners) of 3 x 3 CCDs of
4072 x 4000 pixels at 0.2 arcsec, detectors numbered 0-188 raft by raft (rafts row by row,
CCDs row by row within a raft).  CCDs abut without gaps, a simplification.

The pointing plan covers the footprint with a grid of tiles about 2.2° apart, observed in
eight passes, one band per pass; a pass takes three nights of one observing season (a block
of tile columns per night).  The field transits at local midnight in late November; nights
fall within 80 days of that, between MJD 59580 and 61400, and each night's visits run from
one to three hours before transit.  Each visit is dithered by up to 0.3° and rotated at
random, as in DC2.

Identifiers: visits are numbered in time order from 400001; a CCD visit is
``ccdVisitId = visit * 1000 + detector``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from skyvault.demo.fill import complete_table
from skyvault.demo.schema import BANDS
from skyvault.demo.sky import (
    DEC_MAX,
    DEC_MIN,
    RA_MAX,
    RA_MIN,
    FloatArray,
    IntArray,
    gnomonic_inverse,
)

__all__ = [
    "N_DETECTORS",
    "Survey",
    "detector_at",
    "plan_survey",
]

PIXEL_SCALE_ARCSEC = 0.2
CCD_X_PIXELS, CCD_Y_PIXELS = 4072, 4000
CCD_W_DEG = CCD_X_PIXELS * PIXEL_SCALE_ARCSEC / 3600.0
CCD_H_DEG = CCD_Y_PIXELS * PIXEL_SCALE_ARCSEC / 3600.0
_HALF_W = 7.5 * CCD_W_DEG  # the focal plane is 15 x 15 CCD cells, corners excluded
_HALF_H = 7.5 * CCD_H_DEG
#: Radius (degrees) of a circle around the boresight that encloses the whole focal plane.
FOCAL_PLANE_RADIUS_DEG = float(np.hypot(_HALF_W, 4.5 * CCD_H_DEG))

_RAFT_INDEX = np.full((5, 5), -1, dtype=np.int64)  # [raft_y, raft_x] -> raft number or -1
for _number, (_ry, _rx) in enumerate(
    (ry, rx) for ry in range(5) for rx in range(5) if not (rx in (0, 4) and ry in (0, 4))
):
    _RAFT_INDEX[_ry, _rx] = _number
N_DETECTORS = 189

_FIRST_VISIT = 400001
_EXPOSURE_S = 30.0
_VISIT_CADENCE_S = 36.0
_SITE_LAT_DEG = -30.2446
_SITE_LON_DEG = -70.7494
_MJD_START, _MJD_END = 59580.0, 61400.0
_SEASON_CENTRE_MJD = 59541.0  # RA ≈ 62° transits at local midnight around 23 November 2021
_SEASON_HALF_WIDTH_D = 80.0
_PASS_BANDS = ("u", "g", "r", "i", "z", "y", "r", "i")
_NIGHTS_PER_PASS = 3
_FIELD_RA_DEG = 62.0
_TILE_SPACING_DEG = 2.2
_DITHER_DEG = 0.3

# Per band: mean seeing (arcsec) at zenith, zero point (mag for 1 count in 30 s),
# extinction (mag per airmass), dark-sky brightness (mag / arcsec^2).
_SEEING = np.array([0.92, 0.87, 0.83, 0.80, 0.78, 0.76])
_ZERO_POINT = np.array([30.2, 32.0, 31.8, 31.6, 31.2, 30.4])
_EXTINCTION = np.array([0.47, 0.21, 0.13, 0.10, 0.07, 0.18])
_SKY_MAG = np.array([22.9, 22.3, 21.2, 20.5, 19.6, 18.6])


def detector_at(
    xi: FloatArray, eta: FloatArray, rotation_deg: FloatArray | float
) -> tuple[IntArray, FloatArray, FloatArray]:
    """Detector and pixel position of tangent-plane offsets from a boresight.

    Parameters
    ----------
    xi, eta
        Offsets east and north of the boresight, degrees (see :func:`~.sky.gnomonic`).
    rotation_deg
        Sky rotation of the visit: the angle from north to the focal plane's +y axis,
        counted towards east.

    Returns
    -------
    detector, x, y
        Detector number (-1 off the focal plane) and pixel coordinates on it.
    """
    rot = np.radians(rotation_deg)
    u = xi * np.cos(rot) - eta * np.sin(rot)
    v = xi * np.sin(rot) + eta * np.cos(rot)
    fx = (u + _HALF_W) / CCD_W_DEG
    fy = (v + _HALF_H) / CCD_H_DEG
    inside = (fx >= 0) & (fx < 15) & (fy >= 0) & (fy < 15)
    ix = np.where(inside, fx, 0).astype(np.int64)
    iy = np.where(inside, fy, 0).astype(np.int64)
    raft = _RAFT_INDEX[iy // 3, ix // 3]
    on = inside & (raft >= 0)
    detector = np.where(on, raft * 9 + (iy % 3) * 3 + ix % 3, -1)
    x = (fx - ix) * CCD_X_PIXELS
    y = (fy - iy) * CCD_Y_PIXELS
    return detector, x, y


def _detector_cells() -> tuple[IntArray, IntArray]:
    """CCD-cell column and row (0-14) of each detector number."""
    cx = np.empty(N_DETECTORS, dtype=np.int64)
    cy = np.empty(N_DETECTORS, dtype=np.int64)
    for ry in range(5):
        for rx in range(5):
            raft = _RAFT_INDEX[ry, rx]
            if raft < 0:
                continue
            for k in range(9):
                cx[raft * 9 + k] = rx * 3 + k % 3
                cy[raft * 9 + k] = ry * 3 + k // 3
    return cx, cy


def _focal_to_sky(
    u: FloatArray, v: FloatArray, ra0: FloatArray, dec0: FloatArray, rotation_deg: FloatArray
) -> tuple[FloatArray, FloatArray]:
    rot = np.radians(rotation_deg)
    xi = u * np.cos(rot) + v * np.sin(rot)
    eta = -u * np.sin(rot) + v * np.cos(rot)
    return gnomonic_inverse(xi, eta, ra0, dec0)


def _gmst_deg(mjd: FloatArray) -> FloatArray:
    return (280.46061837 + 360.98564736629 * (mjd - 51544.5)) % 360.0


def _tiles() -> tuple[FloatArray, FloatArray]:
    """Tile centres covering the footprint, rows equally spaced in Dec."""
    n_rows = int(np.ceil((DEC_MAX - DEC_MIN) / _TILE_SPACING_DEG)) + 1
    ras: list[FloatArray] = []
    decs: list[FloatArray] = []
    for dec in np.linspace(DEC_MIN + 0.3, DEC_MAX - 0.3, n_rows):
        width = (RA_MAX - RA_MIN) * np.cos(np.radians(dec))
        n_cols = int(np.ceil(width / _TILE_SPACING_DEG)) + 1
        ras.append(np.linspace(RA_MIN + 0.3, RA_MAX - 0.3, n_cols))
        decs.append(np.full(n_cols, dec))
    return np.concatenate(ras), np.concatenate(decs)


@dataclass(frozen=True)
class Survey:
    """The visits and CCD visits of the demo, as columns, with what photometry needs.

    Arrays named ``visit_*`` have one entry per visit (in time order); ``ccd_*`` one per CCD
    visit, at row ``visit_index * N_DETECTORS + detector``.
    """

    visit_ra: FloatArray
    visit_dec: FloatArray
    visit_rotation: FloatArray
    visit_mjd: FloatArray
    visit_band: IntArray
    visit_id: IntArray
    ccd_zero_point: FloatArray
    ccd_psf_sigma: FloatArray
    ccd_sky_bg: FloatArray
    ccd_sky_noise: FloatArray
    visit_table: pa.Table
    ccd_visit_table: pa.Table

    @property
    def n_visits(self) -> int:
        return int(self.visit_ra.size)

    def ccd_visit_id(self, ccd_row: IntArray) -> IntArray:
        """``ccdVisitId`` of CCD-visit rows."""
        return self.visit_id[ccd_row // N_DETECTORS] * 1000 + ccd_row % N_DETECTORS


def plan_survey(rng: np.random.Generator) -> Survey:
    """Draw the pointing plan and observing conditions; build the Visit and CcdVisit tables."""
    tile_ra, tile_dec = _tiles()
    n_tiles = tile_ra.size
    n_pass = len(_PASS_BANDS)

    # Each pass is observed on a few nights of one season (a block of tile columns per
    # night), inside the survey's date range: objects get epochs on many distinct nights.
    # Passes are spread over the six seasons the date range touches, first to last.
    nights = np.empty((n_pass, _NIGHTS_PER_PASS))
    used: set[float] = set()
    for p in range(n_pass):
        season = round(p * 5 / max(n_pass - 1, 1))
        centre = _SEASON_CENTRE_MJD + 365.25 * season
        lo = max(centre - _SEASON_HALF_WIDTH_D, _MJD_START)
        hi = min(centre + _SEASON_HALF_WIDTH_D, _MJD_END - 1)
        chosen: list[float] = []
        while len(chosen) < _NIGHTS_PER_PASS:
            day = float(np.floor(rng.uniform(lo, hi)))
            if day not in used:
                used.add(day)
                chosen.append(day)
        nights[p] = np.sort(chosen)
    pass_band = np.array([BANDS.index(b) for b in rng.permutation(list(_PASS_BANDS))])
    # Tiles split into RA blocks, one block per night of a pass; slot = order within block.
    block = np.argsort(np.argsort(tile_ra, kind="stable"), kind="stable")
    block = block * _NIGHTS_PER_PASS // n_tiles
    slot_in_block = np.zeros(n_tiles, dtype=np.int64)
    for b in range(_NIGHTS_PER_PASS):
        members = np.flatnonzero(block == b)
        slot_in_block[members] = np.arange(members.size)

    band = np.repeat(pass_band, n_tiles)
    tile = np.tile(np.arange(n_tiles), n_pass)
    pass_of = np.repeat(np.arange(n_pass), n_tiles)
    night = nights[pass_of, block[tile]]
    n_visit = band.size

    # Dither each pointing, keeping the boresight inside the footprint.
    dither_r = _DITHER_DEG * np.sqrt(rng.uniform(0.0, 1.0, n_visit))
    dither_t = rng.uniform(0.0, 2.0 * np.pi, n_visit)
    dec = np.clip(tile_dec[tile] + dither_r * np.sin(dither_t), DEC_MIN, DEC_MAX - 1e-9)
    ra = np.clip(
        tile_ra[tile] + dither_r * np.cos(dither_t) / np.cos(np.radians(dec)),
        RA_MIN,
        RA_MAX - 1e-9,
    )
    rotation = rng.uniform(0.0, 360.0, n_visit)

    # A night's visits start one to three hours before the field transits, 36 s apart.
    transit = night + ((_FIELD_RA_DEG - _SITE_LON_DEG - _gmst_deg(night)) % 360.0) / 360.98564736629
    offset = rng.uniform(1.0, 3.0, (n_pass, _NIGHTS_PER_PASS))[pass_of, block[tile]] / 24
    mjd_start = transit - offset + slot_in_block[tile] * _VISIT_CADENCE_S / 86400.0
    mjd_mid = mjd_start + _EXPOSURE_S / 2 / 86400.0

    # Alt-azimuth of the boresight at mid-exposure.
    hour_angle = np.radians(_gmst_deg(mjd_mid) + _SITE_LON_DEG - ra)
    lat, d = np.radians(_SITE_LAT_DEG), np.radians(dec)
    sin_alt = np.sin(lat) * np.sin(d) + np.cos(lat) * np.cos(d) * np.cos(hour_angle)
    altitude = np.degrees(np.arcsin(sin_alt))
    azimuth = (
        np.degrees(
            np.arctan2(
                -np.cos(d) * np.sin(hour_angle),
                np.sin(d) * np.cos(lat) - np.cos(d) * np.sin(lat) * np.cos(hour_angle),
            )
        )
        % 360.0
    )
    zenith = 90.0 - altitude
    airmass = 1.0 / (sin_alt + 0.50572 * (altitude + 6.07995) ** -1.6364)  # Kasten & Young

    order = np.lexsort((tile, mjd_start))
    band, ra, dec, rotation = band[order], ra[order], dec[order], rotation[order]
    mjd_start, mjd_mid = mjd_start[order], mjd_mid[order]
    altitude, azimuth, zenith, airmass = (
        altitude[order],
        azimuth[order],
        zenith[order],
        airmass[order],
    )
    visit_id = _FIRST_VISIT + np.arange(n_visit, dtype=np.int64)
    seeing = _SEEING[band] * airmass**0.6 * rng.lognormal(0.0, 0.15, n_visit)

    physical = np.array([f"{b}_sim_1.4" for b in BANDS])
    visit_table = _named(
        "Visit",
        [
            pa.array(visit_id),
            pa.array(physical[band]),
            pa.array(np.array(BANDS)[band]),
            pa.array(ra),
            pa.array(dec),
            pa.array(rotation),
            pa.array(azimuth),
            pa.array(altitude),
            pa.array(zenith),
            pa.array(airmass),
            pa.array(np.full(n_visit, _EXPOSURE_S)),
            _timestamps(mjd_mid),
            pa.array(mjd_mid),
            _timestamps(mjd_start),
            pa.array(mjd_start),
        ],
    )

    # CCD visits: every detector of every visit.
    det = np.tile(np.arange(N_DETECTORS, dtype=np.int64), n_visit)
    vis = np.repeat(np.arange(n_visit), N_DETECTORS)
    cell_x, cell_y = _detector_cells()
    u0 = (cell_x[det] * CCD_W_DEG - _HALF_W).astype(np.float64)
    v0 = (cell_y[det] * CCD_H_DEG - _HALF_H).astype(np.float64)
    corners = {
        "ll": (u0, v0),
        "ul": (u0, v0 + CCD_H_DEG),
        "ur": (u0 + CCD_W_DEG, v0 + CCD_H_DEG),
        "lr": (u0 + CCD_W_DEG, v0),
    }
    sky: dict[str, tuple[FloatArray, FloatArray]] = {
        name: _focal_to_sky(cu, cv, ra[vis], dec[vis], rotation[vis])
        for name, (cu, cv) in corners.items()
    }
    c_ra, c_dec = _focal_to_sky(
        u0 + CCD_W_DEG / 2, v0 + CCD_H_DEG / 2, ra[vis], dec[vis], rotation[vis]
    )
    n_ccd = det.size
    ccd_seeing = seeing[vis] * rng.lognormal(0.0, 0.04, n_ccd)
    psf_sigma = ccd_seeing / 2.3548 / PIXEL_SCALE_ARCSEC
    zero_point = (
        _ZERO_POINT[band[vis]]
        - _EXTINCTION[band[vis]] * (airmass[vis] - 1.0)
        + rng.normal(0.0, 0.01, n_ccd)
    )
    sky_mag = _SKY_MAG[band[vis]] + rng.normal(0.0, 0.15, n_visit)[vis]
    sky_bg = 10 ** (-0.4 * (sky_mag - zero_point)) * PIXEL_SCALE_ARCSEC**2
    sky_noise = np.sqrt(sky_bg + 9.0**2)  # sky shot noise plus 9 e- read noise, gain 1
    zd = np.array(zenith[vis], dtype=np.float32)
    ccd_visit_id = visit_id[vis] * 1000 + det
    ccd_table = _named(
        "CcdVisit",
        [
            pa.array(ccd_visit_id),
            pa.array(visit_id[vis]),
            pa.array(physical[band[vis]]),
            pa.array(np.array(BANDS)[band[vis]]),
            pa.array(c_ra),
            pa.array(c_dec),
            pa.array(det),
            pa.array(zd),
            pa.array(zero_point.astype(np.float32)),
            pa.array(psf_sigma.astype(np.float32)),
            pa.array(sky_bg.astype(np.float32)),
            pa.array(sky_noise.astype(np.float32)),
            pa.array(ccd_seeing),
            pa.array(rotation[vis]),
            _timestamps(mjd_mid[vis]),
            pa.array(mjd_mid[vis]),
            pa.array(np.full(n_ccd, _EXPOSURE_S)),
            _timestamps(mjd_start[vis]),
            pa.array(mjd_start[vis]),
            pa.array(np.full(n_ccd, _EXPOSURE_S + 1.0)),
            pa.array(np.full(n_ccd, CCD_X_PIXELS, dtype=np.int64)),
            pa.array(np.full(n_ccd, CCD_Y_PIXELS, dtype=np.int64)),
            *(pa.array(a) for name in ("ll", "ul", "ur", "lr") for a in sky[name]),
        ],
    )
    return Survey(
        visit_ra=ra,
        visit_dec=dec,
        visit_rotation=rotation,
        visit_mjd=mjd_mid,
        visit_band=band,
        visit_id=visit_id,
        ccd_zero_point=zero_point,
        ccd_psf_sigma=psf_sigma,
        ccd_sky_bg=sky_bg,
        ccd_sky_noise=sky_noise,
        visit_table=visit_table,
        ccd_visit_table=ccd_table,
    )


_MJD_UNIX_EPOCH = 40587.0

#: The order of the columns :func:`plan_survey` builds (every column of the DP0.2 table).
_ORDER = {
    "Visit": [
        "visit",
        "physical_filter",
        "band",
        "ra",
        "decl",
        "skyRotation",
        "azimuth",
        "altitude",
        "zenithDistance",
        "airmass",
        "expTime",
        "expMidpt",
        "expMidptMJD",
        "obsStart",
        "obsStartMJD",
    ],
    "CcdVisit": [
        "ccdVisitId",
        "visitId",
        "physical_filter",
        "band",
        "ra",
        "decl",
        "detector",
        "zenithDistance",
        "zeroPoint",
        "psfSigma",
        "skyBg",
        "skyNoise",
        "seeing",
        "skyRotation",
        "expMidpt",
        "expMidptMJD",
        "expTime",
        "obsStart",
        "obsStartMJD",
        "darkTime",
        "xSize",
        "ySize",
        "llcra",
        "llcdec",
        "ulcra",
        "ulcdec",
        "urcra",
        "urcdec",
        "lrcra",
        "lrcdec",
    ],
}


def _named(table: str, arrays: list[pa.Array]) -> pa.Table:
    return complete_table(table, dict(zip(_ORDER[table], arrays, strict=True)), None)


def _timestamps(mjd: FloatArray) -> pa.Array:
    """Arrow microsecond timestamps (TAI, no zone) of MJDs."""
    micros = np.round((mjd - _MJD_UNIX_EPOCH) * 86400e6).astype(np.int64)
    return pa.array(micros.astype("datetime64[us]"), type=pa.timestamp("us"))


def candidate_epochs(
    ra: FloatArray, dec: FloatArray, survey: Survey
) -> tuple[IntArray, IntArray, FloatArray, FloatArray]:
    """Every (object, CCD visit) pair where an object falls on a detector.

    Objects are binned in Dec strips and sorted by RA within each, so the objects near a
    visit are a few contiguous runs; for those, the focal-plane position comes from dot
    products of unit vectors with the visit's rotated tangent-plane basis (no trigonometry
    per object).

    Returns
    -------
    obj, ccd_row, x, y
        Object row, CCD-visit row (see :class:`Survey`), pixel position on the detector.
    """
    strip_h = 0.5
    strip = np.floor((dec - DEC_MIN) / strip_h).astype(np.int64)
    order = np.lexsort((ra, strip))
    s_ra, s_strip = ra[order], strip[order]
    n_strips = int(s_strip[-1]) + 1 if s_strip.size else 0
    strip_start = np.searchsorted(s_strip, np.arange(n_strips + 1))
    r, d = np.radians(ra[order]), np.radians(dec[order])
    px, py, pz = np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)

    radius = FOCAL_PLANE_RADIUS_DEG + 0.01
    cos_radius = np.cos(np.radians(radius))
    objs: list[IntArray] = []
    rows: list[IntArray] = []
    xs: list[FloatArray] = []
    ys: list[FloatArray] = []
    for k in range(survey.n_visits):
        ra0, dec0 = float(survey.visit_ra[k]), float(survey.visit_dec[k])
        first = max(0, int(np.floor((dec0 - radius - DEC_MIN) / strip_h)))
        last = min(n_strips - 1, int(np.floor((dec0 + radius - DEC_MIN) / strip_h)))
        r0, d0 = np.radians(ra0), np.radians(dec0)
        c = np.array([np.cos(d0) * np.cos(r0), np.cos(d0) * np.sin(r0), np.sin(d0)])
        east = np.array([-np.sin(r0), np.cos(r0), 0.0])
        north = np.array([-np.sin(d0) * np.cos(r0), -np.sin(d0) * np.sin(r0), np.cos(d0)])
        rot = np.radians(survey.visit_rotation[k])
        axis_u = np.cos(rot) * east - np.sin(rot) * north
        axis_v = np.sin(rot) * east + np.cos(rot) * north
        found: list[IntArray] = []
        us: list[FloatArray] = []
        vs: list[FloatArray] = []
        for j in range(first, last + 1):
            # RA half-width of the circle within this strip, at the strip's widest point.
            lower, upper = DEC_MIN + strip_h * j, DEC_MIN + strip_h * (j + 1)
            gap = 0.0 if lower <= dec0 <= upper else min(abs(lower - dec0), abs(upper - dec0))
            chord = np.sqrt(max(radius**2 - gap**2, 0.0))
            widest = max(abs(lower), abs(upper))
            half = chord / max(np.cos(np.radians(min(widest + 0.1, 89.0))), 1e-3)
            a, b = strip_start[j], strip_start[j + 1]
            lo, hi = np.searchsorted(s_ra[a:b], [ra0 - half, ra0 + half])
            lo, hi = a + lo, a + hi
            if hi <= lo:
                continue
            x, y, z = px[lo:hi], py[lo:hi], pz[lo:hi]
            dot_c = x * c[0] + y * c[1] + z * c[2]
            near = np.flatnonzero(dot_c > cos_radius)
            x, y, z = x[near], y[near], z[near]
            scale = np.degrees(1.0) / dot_c[near]
            us.append((x * axis_u[0] + y * axis_u[1] + z * axis_u[2]) * scale)
            vs.append((x * axis_v[0] + y * axis_v[1] + z * axis_v[2]) * scale)
            found.append(near + lo)
        if not found:
            continue
        idx = np.concatenate(found)
        u, v = np.concatenate(us), np.concatenate(vs)
        detector, det_x, det_y = detector_at(u, v, 0.0)
        on = detector >= 0
        objs.append(order[idx[on]])
        rows.append(k * N_DETECTORS + detector[on])
        xs.append(det_x[on])
        ys.append(det_y[on])
    return np.concatenate(objs), np.concatenate(rows), np.concatenate(xs), np.concatenate(ys)


def visit_of(ccd_row: IntArray) -> NDArray[np.int64]:
    """Visit index of CCD-visit rows."""
    return ccd_row // N_DETECTORS
