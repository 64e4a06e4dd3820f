"""What the demo objects look like: magnitudes, colours, sizes, variability; the Object rows.

Magnitudes follow number counts that rise steeply to the detection limit (galaxies
``dN/dm ∝ 10^(0.36 m)``, stars ``∝ 10^(0.12 m)``; completeness falls to half at r ≈ 26.9).
Colours come from the population: blue star-forming and red passive galaxies (cluster members
are mostly red), and stars along a stellar locus parametrised by ``g - r``.  Fluxes are in nJy
on the AB scale, ``m = -2.5 log10(f / nJy) + 31.4``.

Measurements add noise for the depth of the five-year coadd: cModel fluxes carry the full
flux, PSF fluxes of galaxies the share a PSF fit recovers from a Gaussian galaxy.
``refExtendedness`` is derived like the pipeline's: 1 when ``psfFlux / cModelFlux < 0.985``
in the reference band, so stars and galaxies separate cleanly when bright and blur at the
faint end.

A few per cent of objects vary: periodic stars (RR Lyrae-like), stochastic AGN in galaxies,
and supernova-like transients; :func:`true_flux` evaluates an object's flux at any epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from skyvault.demo.fill import AB_ZERO_POINT_NJY, Rows, complete_table, flux_error, nanojansky
from skyvault.demo.schema import BANDS
from skyvault.demo.sky import FloatArray, IntArray, Kind, Population, tract_pixels

__all__ = [
    "AB_ZERO_POINT_NJY",
    "ObjectChunk",
    "Variability",
    "make_objects",
    "nanojansky",
    "object_table",
    "true_flux",
]

_N_BANDS = len(BANDS)
#: Five-sigma point-source depth of the coadds, per band (u g r i z y).
COADD_DEPTH = np.array([25.6, 26.8, 26.9, 26.4, 25.7, 24.9])
#: PSF Gaussian sigma of the coadds in pixels (0.7 arcsec FWHM at 0.2 arcsec / pixel).
COADD_PSF_SIGMA = 0.7 / 2.3548 / 0.2
_REF_ORDER = (3, 2, 4, 5, 1, 0)  # reference-band priority: i r z y g u
_SATURATION_MAG = 16.5


class Variability:
    """Codes for how an object's flux changes with time."""

    NONE = 0
    PERIODIC = 1
    STOCHASTIC = 2
    TRANSIENT = 3


@dataclass(frozen=True)
class ObjectChunk:
    """The true properties of a run of objects, kept to measure them on each epoch.

    ``flux`` is the mean true flux per band (nJy, shape ``(n, 6)``); ``size2`` the squared
    Gaussian sigma of a galaxy's light in pixels (0 for stars); the ``var_*`` arrays hold
    the variability model (see :func:`true_flux`).
    """

    rows: IntArray
    object_id: IntArray
    parent_id: IntArray
    ra: FloatArray
    dec: FloatArray
    tract: IntArray
    patch: IntArray
    kind: NDArray[np.int8]
    is_primary: NDArray[np.bool_]
    is_parent: NDArray[np.bool_]
    flux: FloatArray
    size2: FloatArray
    ellipticity: FloatArray
    angle: FloatArray
    var_kind: NDArray[np.int8]
    var_amp: FloatArray
    var_period: FloatArray
    var_phase: FloatArray
    var_t0: FloatArray
    table: pa.Table

    def __len__(self) -> int:
        return int(self.rows.size)


def _counts(
    n: int, slope: float, bright: float, faint: float, rng: np.random.Generator
) -> FloatArray:
    """``n`` magnitudes with ``dN/dm ∝ 10^(slope m)`` on [bright, faint], thinned by the
    completeness of the coadds (half at r = 26.9, falling over about half a magnitude)."""
    out: list[FloatArray] = []
    total = 0
    a = 10.0 ** (slope * bright)
    b = 10.0 ** (slope * faint)
    while total < n:
        m = np.log10(a + (b - a) * rng.uniform(0.0, 1.0, 2 * (n - total) + 16)) / slope
        complete = 1.0 / (1.0 + np.exp((m - 26.9) / 0.2))
        m = m[rng.uniform(0.0, 1.0, m.size) < complete][: n - total]
        out.append(m)
        total += m.size
    return np.concatenate(out) if out else np.empty(0)


def _galaxy_colours(red: NDArray[np.bool_], rng: np.random.Generator) -> FloatArray:
    """Colours u-g, g-r, r-i, i-z, z-y of blue (star-forming) and red (passive) galaxies."""
    blue_mean = np.array([0.55, 0.45, 0.28, 0.15, 0.08])
    blue_sd = np.array([0.30, 0.18, 0.14, 0.12, 0.10])
    red_mean = np.array([1.65, 0.95, 0.48, 0.32, 0.18])
    red_sd = np.array([0.30, 0.15, 0.12, 0.10, 0.08])
    mean = np.where(red[:, None], red_mean, blue_mean)
    sd = np.where(red[:, None], red_sd, blue_sd)
    return np.asarray(mean + sd * rng.standard_normal((red.size, 5)), dtype=np.float64)


def _star_colours(n: int, rng: np.random.Generator) -> FloatArray:
    """Colours along a stellar locus: halo turn-off stars (g-r ≈ 0.3) and M dwarfs."""
    dwarf = rng.uniform(0.0, 1.0, n) < 0.45
    gr = np.where(dwarf, rng.normal(1.40, 0.12, n), rng.normal(0.35, 0.15, n))
    gr = np.clip(gr, -0.3, 1.7)
    ri = 0.38 * gr + 2.6 * np.maximum(gr - 1.2, 0.0)
    ug = np.minimum(0.85 + 1.15 * gr, 2.8)
    iz = 0.48 * ri + 0.02
    zy = 0.25 * ri + 0.02
    colours = np.stack([ug, gr, ri, iz, zy], axis=1)
    return np.asarray(colours + rng.normal(0.0, 0.04, colours.shape), dtype=np.float64)


def _band_mags(r: FloatArray, colours: FloatArray) -> FloatArray:
    """Magnitudes in u..y from r and the colours u-g, g-r, r-i, i-z, z-y."""
    ug, gr, ri, iz, zy = colours.T
    g = r + gr
    u = g + ug
    i = r - ri
    z = i - iz
    y = z - zy
    return np.stack([u, g, r, i, z, y], axis=1)


def psf_fraction(size2: FloatArray, psf_sigma: FloatArray | float) -> FloatArray:
    """Share of a Gaussian galaxy's flux that a PSF-model fit recovers (1 for a point)."""
    p2 = np.square(psf_sigma)
    return np.asarray(2.0 * p2 / (2.0 * p2 + size2), dtype=np.float64)


def make_objects(population: Population, rows: IntArray, rng: np.random.Generator) -> ObjectChunk:
    """Draw the true properties and the coadd measurements of objects ``rows``."""
    n = rows.size
    kind = population.kind[rows]
    star = kind == Kind.STAR
    sky = kind == Kind.SKY
    galaxy = ~star & ~sky
    parent_row = population.parent[rows]
    is_parent = population.n_child[rows] > 0

    # True magnitudes: r from number counts, the other bands from colours.
    r = np.full(n, np.inf)
    r[star] = _counts(int(star.sum()), 0.12, 15.0, 27.5, rng)
    r[galaxy] = _counts(int(galaxy.sum()), 0.36, 17.5, 28.0, rng)
    red_share = np.where(kind == Kind.GALAXY_CLUSTER, 0.8, 0.3)
    red = rng.uniform(0.0, 1.0, n) < red_share
    colours = _galaxy_colours(red, rng)
    colours[star] = _star_colours(int(star.sum()), rng)
    mags = _band_mags(r, colours)
    flux = np.where(sky[:, None], 0.0, nanojansky(mags))

    # Galaxy light: Gaussian-equivalent size shrinking with magnitude, random ellipticity.
    r_half = 0.9 * 10 ** (-0.12 * (np.where(galaxy, r, 22.0) - 22.0)) * rng.lognormal(0, 0.5, n)
    size2 = np.where(galaxy, np.square(np.clip(r_half, 0.05, 8.0) / 1.1774 / 0.2), 0.0)
    ellip = np.clip(np.abs(rng.normal(0.0, 0.3, n)), 0.0, 0.8) * galaxy
    angle = rng.uniform(0.0, np.pi, n)

    # Coadd measurements.  PSF and cModel noise are strongly correlated (same pixels).
    depth = COADD_DEPTH[None, :]
    frac = psf_fraction(size2, COADD_PSF_SIGMA)[:, None]
    cm_err = flux_error(flux, depth) * np.sqrt(1.0 + size2 / COADD_PSF_SIGMA**2)[:, None]
    psf_err = flux_error(flux * frac, depth)
    common = rng.standard_normal((n, _N_BANDS))
    own = rng.standard_normal((n, _N_BANDS))
    cm_flux = flux + cm_err * common
    psf_flux = flux * frac + psf_err * (0.97 * common + np.sqrt(1 - 0.97**2) * own)

    snr = cm_flux / cm_err
    ref = np.full(n, _REF_ORDER[0])
    chosen = np.zeros(n, dtype=bool)
    for candidate in _REF_ORDER:
        pick = ~chosen & (snr[:, candidate] >= 10.0)
        ref[pick] = candidate
        chosen |= pick
    ref_cm = np.take_along_axis(cm_flux, ref[:, None], axis=1)[:, 0]
    ref_psf = np.take_along_axis(psf_flux, ref[:, None], axis=1)[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        extended = (ref_psf / ref_cm < 0.985) | (ref_cm <= 0)
    ref_ext = np.where(sky, np.nan, extended.astype(np.float64))

    # i-band HSM moments: galaxy light plus PSF, with measurement noise.
    p2 = COADD_PSF_SIGMA**2
    i_snr = np.clip(snr[:, 3], 1.0, None)
    noise = rng.standard_normal((n, 3)) * ((size2 + p2) / i_snr)[:, None]
    ixx = size2 * (1 + ellip * np.cos(2 * angle)) + p2 + np.abs(noise[:, 0])
    iyy = size2 * (1 - ellip * np.cos(2 * angle)) + p2 + np.abs(noise[:, 1])
    ixy = size2 * ellip * np.sin(2 * angle) + noise[:, 2] / 2
    ixx, iyy, ixy = (np.where(sky, np.nan, m) for m in (ixx, iyy, ixy))

    # Variability: RR Lyrae-like stars, AGN, transients in galaxies.
    draw = rng.uniform(0.0, 1.0, n)
    var_kind = np.zeros(n, dtype=np.int8)
    var_kind[star & (draw < 0.05)] = Variability.PERIODIC
    var_kind[galaxy & (draw < 0.015)] = Variability.STOCHASTIC
    var_kind[galaxy & (draw >= 0.015) & (draw < 0.02)] = Variability.TRANSIENT
    var_amp = np.select(
        [var_kind == Variability.PERIODIC, var_kind == Variability.STOCHASTIC],
        [rng.uniform(0.2, 0.9, n), rng.uniform(0.1, 0.4, n)],
        default=rng.uniform(20.5, 23.5, n),  # transients: peak magnitude
    )
    var_period = np.where(
        var_kind == Variability.PERIODIC, rng.uniform(0.3, 0.9, n), rng.uniform(80, 700, n)
    )
    var_phase = rng.uniform(0.0, 2.0 * np.pi, n)
    var_t0 = rng.uniform(59560.0, 61400.0, n)

    object_id = population.object_id[rows]
    parent_id = np.where(parent_row >= 0, population.object_id[np.maximum(parent_row, 0)], 0)
    is_primary = ~sky & ~is_parent
    flagged = rng.uniform(0.0, 1.0, n) < 0.005
    saturated = mags[:, 3] < _SATURATION_MAG

    columns: dict[str, object] = {
        "objectId": object_id,
        "coord_ra": population.ra[rows],
        "coord_dec": population.dec[rows],
        "parentObjectId": parent_id,
        "tract": population.tract[rows],
        "patch": population.patch[rows],
        "detect_isPrimary": is_primary,
        "sky_object": sky,
        "deblend_nChild": population.n_child[rows],
        "refBand": np.array(BANDS)[ref],
        "refExtendedness": ref_ext,
        "i_ixx": ixx,
        "i_iyy": iyy,
        "i_ixy": ixy,
        "i_cModel_flag": flagged | sky,
        "i_pixelFlags_saturatedCenter": saturated & ~sky,
    }
    for b, band in enumerate(BANDS):
        columns[f"{band}_cModelFlux"] = cm_flux[:, b]
        columns[f"{band}_cModelFluxErr"] = cm_err[:, b]
        columns[f"{band}_psfFlux"] = psf_flux[:, b]
        columns[f"{band}_psfFluxErr"] = psf_err[:, b]
        with np.errstate(divide="ignore", invalid="ignore"):
            band_ext = (psf_flux[:, b] / cm_flux[:, b] < 0.985) | (cm_flux[:, b] <= 0)
        columns[f"{band}_extendedness"] = np.where(sky, np.nan, band_ext.astype(np.float64))
    # Deblending and detection flags consistent with the family and the primary flag.
    parent_of = parent_row >= 0
    columns["detect_isPatchInner"] = np.ones(n, dtype=bool)
    columns["detect_isTractInner"] = np.ones(n, dtype=bool)
    columns["detect_fromBlend"] = parent_of
    columns["detect_isIsolated"] = ~parent_of & ~is_parent
    columns["detect_isDeblendedSource"] = ~is_parent & ~sky
    columns["detect_isDeblendedModelSource"] = np.zeros(n, dtype=bool)
    columns["merge_peak_sky"] = sky
    columns["skymap"] = np.full(n, "DC2")
    columns["shape_xx"], columns["shape_yy"], columns["shape_xy"] = ixx, iyy, ixy
    x, y = tract_pixels(population.ra[rows], population.dec[rows])
    rows_info = Rows(
        ra=population.ra[rows],
        dec=population.dec[rows],
        flux=flux,
        depth=np.broadcast_to(depth, (n, _N_BANDS)),
        size2=size2,
        psf_sigma=np.full(n, COADD_PSF_SIGMA),
        ellipticity=ellip,
        angle=angle,
        x=x,
        y=y,
        rng=rng,
    )
    table = object_table(columns, rows_info)
    return ObjectChunk(
        rows=rows,
        object_id=object_id,
        parent_id=parent_id,
        ra=population.ra[rows],
        dec=population.dec[rows],
        tract=population.tract[rows],
        patch=population.patch[rows],
        kind=kind,
        is_primary=is_primary,
        is_parent=is_parent,
        flux=flux,
        size2=size2,
        ellipticity=ellip,
        angle=angle,
        var_kind=var_kind,
        var_amp=var_amp,
        var_period=var_period,
        var_phase=var_phase,
        var_t0=var_t0,
        table=table,
    )


def object_table(columns: dict[str, object], rows: Rows) -> pa.Table:
    """The Object table of ``columns`` (name to NumPy array), with every other DP0.2
    column derived from ``rows`` (see :mod:`.fill`)."""
    return complete_table("Object", columns, rows)


def true_flux(chunk: ObjectChunk, obj: IntArray, band: IntArray, mjd: FloatArray) -> FloatArray:
    """True flux (nJy) of objects ``obj`` (chunk rows) in ``band`` at times ``mjd``."""
    base = chunk.flux[obj, band]
    kind = chunk.var_kind[obj]
    amp, period = chunk.var_amp[obj], chunk.var_period[obj]
    phase, t0 = chunk.var_phase[obj], chunk.var_t0[obj]
    # Periodic: a sawtooth-like pulsation in magnitude (fast rise, slow decline).
    cycle = ((mjd - 59000.0) / period + phase / (2 * np.pi)) % 1.0
    pulse = np.where(cycle < 0.15, cycle / 0.15, 1.0 - (cycle - 0.15) / 0.85) - 0.5
    # Stochastic: three incommensurate sinusoids, a stand-in for a damped random walk.
    wander = (
        np.sin(2 * np.pi * mjd / period + phase)
        + 0.6 * np.sin(2 * np.pi * mjd / (period * 0.37) + 2.1 * phase)
        + 0.4 * np.sin(2 * np.pi * mjd / (period * 0.13) + 3.7 * phase)
    ) / 1.6
    delta_mag = np.select(
        [kind == Variability.PERIODIC, kind == Variability.STOCHASTIC],
        [-amp * pulse, amp * wander],
        default=0.0,
    )
    flux = base * 10 ** (-0.4 * delta_mag)
    # Transient: rises over ~15 days to its peak, then fades by ~1 mag per 25 days.
    dt = mjd - t0
    light = np.where(dt < 0, np.exp(dt / 5.0) * (dt > -60), np.exp(-dt / 27.0))
    sn = (kind == Variability.TRANSIENT) * nanojansky(amp) * light
    return np.asarray(flux + sn, dtype=np.float64)
