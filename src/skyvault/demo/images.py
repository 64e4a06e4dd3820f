"""Demo images: calexp-like CCD exposures and deepCoadd-like patches drawn from the objects.

The pixels are simulated, as DP0.2's are: every image is drawn from the demo's own objects
(their true positions and mean fluxes per band; galaxies as round Gaussians of their size)
convolved with a Gaussian PSF, integrated over the pixels, plus Gaussian sky noise.  So a
source of the ``Object`` table is a source in the pixels, where the WCS says it is.

* **calexp**: for each band, the visits nearest the deep field (62°, -37°) and, of each, the
  detectors nearest it; the WCS is the TAN projection about the visit's boresight with the
  visit's rotation (the geometry of :mod:`.survey`, so the image covers exactly its
  ``CcdVisit`` corners); ``MJD-OBS``/``DATE-OBS`` the visit's start, ``EXPTIME`` 30 s, the
  CCD visit's PSF and noise; pixel values in nJy.
* **deepCoadd**: the patches of the sky map nearest the deep field, one image per band, on a
  TAN projection about the patch centre, with the coadd's PSF (0.7″ FWHM) and depth.

To keep ``skyvault demo`` quick, pixels are binned (:attr:`ImageScale.binning`: 0.8″
rather than LSST's 0.2″ at both scales), so a detector is 1018 × 1000 pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS
from numpy.typing import NDArray

from skyvault.demo.fill import AB_ZERO_POINT_NJY
from skyvault.demo.objects import COADD_DEPTH, COADD_PSF_SIGMA, ObjectChunk
from skyvault.demo.schema import BANDS
from skyvault.demo.sky import DEEP_CENTRE, FloatArray, gnomonic, patch_boxes, tract_patch
from skyvault.demo.survey import (
    _HALF_H,
    _HALF_W,
    CCD_H_DEG,
    CCD_W_DEG,
    CCD_X_PIXELS,
    CCD_Y_PIXELS,
    N_DETECTORS,
    PIXEL_SCALE_ARCSEC,
    Survey,
    _detector_cells,
)

__all__ = ["IMAGE_SCALES", "ImageScale", "SkySources", "render_images"]


@dataclass(frozen=True)
class ImageScale:
    """How many images a demo build draws."""

    visits_per_band: int
    detectors_per_visit: int
    patches: int
    binning: int = 4


IMAGE_SCALES = {
    "small": ImageScale(visits_per_band=1, detectors_per_visit=1, patches=1),
    "medium": ImageScale(visits_per_band=2, detectors_per_visit=4, patches=4),
}


class SkySources:
    """The objects images are drawn from: positions, mean fluxes (nJy) and sizes."""

    def __init__(self) -> None:
        self._parts: list[tuple[FloatArray, FloatArray, FloatArray, FloatArray]] = []

    def add(self, chunk: ObjectChunk) -> None:
        """Keep the light-emitting objects of a chunk (not deblend parents, not sky)."""
        keep = ~chunk.is_parent & (chunk.flux.max(axis=1) > 0)
        self._parts.append((chunk.ra[keep], chunk.dec[keep], chunk.flux[keep], chunk.size2[keep]))

    def arrays(self) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        ra, dec, flux, size2 = zip(*self._parts, strict=True)
        return np.concatenate(ra), np.concatenate(dec), np.concatenate(flux), np.concatenate(size2)


def erf(values: NDArray[np.float64]) -> NDArray[np.float64]:
    """The error function, element-wise, to 1.5e-7 (Abramowitz & Stegun 7.1.26): NumPy has
    none, SciPy is not a dependency, and ``math.erf`` per element made drawing the medium
    demo's 72 images take 40 s."""
    a = np.abs(values)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t
            + 0.254829592) * t  # fmt: skip
    return np.asarray(np.sign(values) * (1.0 - poly * np.exp(-a * a)), dtype=np.float64)


def _draw(
    wcs: WCS,
    shape: tuple[int, int],
    sources: tuple[FloatArray, FloatArray, FloatArray, FloatArray],
    band: int,
    psf_sigma_px: float,
    size_scale: float,
    noise: float,
    rng: np.random.Generator,
) -> NDArray[np.float32]:
    """An image (nJy per pixel) of the sources through a Gaussian PSF, plus sky noise."""
    ny, nx = shape
    ra, dec, flux, size2 = sources
    # Only the sources near the image go through the WCS (a medium build has 300,000).
    centre = wcs.all_pix2world([[(nx - 1) / 2, (ny - 1) / 2]], 0)[0]
    scale = float(np.sqrt(abs(np.linalg.det(wcs.pixel_scale_matrix))))
    reach = np.radians(np.hypot(nx, ny) / 2 * scale * 1.1 + 30 * scale)
    d0, r0 = np.radians(centre[1]), np.radians(centre[0])
    cos_distance = np.sin(d0) * np.sin(np.radians(dec)) + np.cos(d0) * np.cos(
        np.radians(dec)
    ) * np.cos(np.radians(ra) - r0)
    near = cos_distance > np.cos(reach)
    ra, dec, flux, size2 = ra[near], dec[near], flux[near], size2[near]
    x, y = wcs.all_world2pix(ra, dec, 0)
    sigma = np.sqrt(psf_sigma_px**2 + size2 * size_scale**2)
    half = int(min(12, math.ceil(4 * max(psf_sigma_px, 1.0))))
    inside = (np.isfinite(x) & (x > -half) & (x < nx + half) & (y > -half) & (y < ny + half)) & (
        flux[:, band] > 0
    )
    x, y, sigma, f = x[inside], y[inside], np.minimum(sigma[inside], half / 3), flux[inside, band]
    image = rng.normal(0.0, noise, nx * ny)
    if x.size:
        ix, iy = np.rint(x).astype(np.int64), np.rint(y).astype(np.int64)
        offsets = np.arange(-half, half + 1)
        px = ix[:, None] + offsets  # pixel centres (0-based) of each source's stamp
        py = iy[:, None] + offsets
        root2s = (np.sqrt(2.0) * sigma)[:, None]
        wx = 0.5 * (erf((px + 0.5 - x[:, None]) / root2s) - erf((px - 0.5 - x[:, None]) / root2s))
        wy = 0.5 * (erf((py + 0.5 - y[:, None]) / root2s) - erf((py - 0.5 - y[:, None]) / root2s))
        stamps = f[:, None, None] * wy[:, :, None] * wx[:, None, :]
        xx = np.broadcast_to(px[:, None, :], stamps.shape)
        yy = np.broadcast_to(py[:, :, None], stamps.shape)
        ok = (xx >= 0) & (xx < nx) & (yy >= 0) & (yy < ny)
        image += np.bincount((yy * nx + xx)[ok], weights=stamps[ok], minlength=nx * ny)
    return image.reshape(ny, nx).astype(np.float32)


def _tan_wcs(
    ra0: float, dec0: float, crpix: tuple[float, float], scale_deg: float, rotation_deg: float
) -> WCS:
    """TAN about ``(ra0, dec0)``: pixel +x along the focal plane's u axis, +y along v, which
    a rotation of ``rotation_deg`` (north to +v, towards east) turns on the sky."""
    rot = np.radians(rotation_deg)
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra0, dec0]
    wcs.wcs.crpix = list(crpix)
    # xi = u cos r + v sin r, eta = -u sin r + v cos r (survey._focal_to_sky).
    wcs.wcs.cd = scale_deg * np.array([[np.cos(rot), np.sin(rot)], [-np.sin(rot), np.cos(rot)]])
    wcs.wcs.radesys = "ICRS"
    wcs.wcs.set()
    return wcs


def _header(wcs: WCS, cards: dict[str, tuple[object, str]]) -> fits.Header:
    header = wcs.to_header()
    for key in ("MJDREF", "DATEREF", "MJD-OBS", "DATE-OBS", "LATPOLE", "LONPOLE", "WCSAXES"):
        header.remove(key, ignore_missing=True)
    for key, (value, comment) in cards.items():
        header[key] = (value, comment)
    return header


def _nearest(ra: FloatArray, dec: FloatArray, count: int) -> NDArray[np.int64]:
    ra0, dec0 = DEEP_CENTRE
    xi, eta = gnomonic(ra, dec, ra0, dec0)
    distance = np.where(np.isfinite(xi), np.hypot(xi, eta), np.inf)
    return np.argsort(distance, kind="stable")[:count]


def render_images(
    out_dir: Path,
    survey: Survey,
    sources: SkySources,
    scale: ImageScale,
    seed: int,
    report: Callable[[int], None] | None = None,
) -> dict[str, list[Path]]:
    """Write the calexp and deepCoadd images under ``out_dir/calexp`` and
    ``out_dir/deepCoadd``; returns the files of each."""
    arrays = sources.arrays()
    out: dict[str, list[Path]] = {"calexp": [], "deepCoadd": []}
    for kind in out:
        (out_dir / kind).mkdir(parents=True, exist_ok=True)
    b = scale.binning
    nx, ny = math.ceil(CCD_X_PIXELS / b), math.ceil(CCD_Y_PIXELS / b)
    pixel_deg = PIXEL_SCALE_ARCSEC * b / 3600.0
    cell_x, cell_y = _detector_cells()
    table = survey.ccd_visit_table
    ccd_ids = table.column("ccdVisitId").to_numpy()
    for band_index, band in enumerate(BANDS):
        visits = np.flatnonzero(survey.visit_band == band_index)
        chosen = visits[_nearest(survey.visit_ra[visits], survey.visit_dec[visits], 999)]
        for v in chosen[: scale.visits_per_band]:
            ra0, dec0, rot = survey.visit_ra[v], survey.visit_dec[v], survey.visit_rotation[v]
            rows = v * N_DETECTORS + np.arange(N_DETECTORS)
            c_ra, c_dec = _ccd_centres(table, rows)
            for det in _nearest(c_ra, c_dec, scale.detectors_per_visit):
                row = int(rows[det])
                # Boresight in this detector's pixels (1-based centres): u = 0 is
                # HALF_W / CCD_W cells from the focal plane's edge.
                crpix = (
                    (_HALF_W / CCD_W_DEG - cell_x[det]) * CCD_X_PIXELS / b + 0.5,
                    (_HALF_H / CCD_H_DEG - cell_y[det]) * CCD_Y_PIXELS / b + 0.5,
                )
                wcs = _tan_wcs(float(ra0), float(dec0), crpix, pixel_deg, float(rot))
                sigma_native = float(survey.ccd_psf_sigma[row])
                to_njy = 10 ** (-0.4 * (AB_ZERO_POINT_NJY - float(survey.ccd_zero_point[row])))
                noise = float(survey.ccd_sky_noise[row]) * b / to_njy
                rng = np.random.default_rng([seed, 7, int(ccd_ids[row])])
                image = _draw(
                    wcs, (ny, nx), arrays, band_index, sigma_native / b, 1.0 / b, noise, rng
                )
                mjd = float(survey.visit_mjd[v]) - 15.0 / 86400.0
                visit_id = int(survey.visit_id[v])
                header = _header(
                    wcs,
                    {
                        "DATE-OBS": (Time(mjd, format="mjd", scale="tai").isot, "start (TAI)"),
                        "MJD-OBS": (mjd, "[d] start of the exposure (TAI)"),
                        "TIMESYS": ("TAI", "time scale"),
                        "EXPTIME": (30.0, "[s] exposure time"),
                        "BAND": (band, "filter band"),
                        "FILTER": (f"{band}_sim_1.4", "physical filter"),
                        "TELESCOP": ("LSST", "simulated (skyvault demo)"),
                        "INSTRUME": ("LSSTCam-imSim", "simulated camera"),
                        "VISIT": (visit_id, "Visit.visit"),
                        "DETECTOR": (int(det), "CcdVisit.detector"),
                        "CCDVISIT": (int(ccd_ids[row]), "CcdVisit.ccdVisitId"),
                        "BINNING": (b, "LSST pixels per pixel side"),
                        "PSF_FWHM": (sigma_native * 2.3548 * PIXEL_SCALE_ARCSEC, "[arcsec]"),
                        "BUNIT": ("nJy", "pixel values"),
                        "OBJECT": ("DC2 deep field", ""),
                    },
                )
                path = out_dir / "calexp" / f"calexp_{visit_id}_{band}_R{int(det):03d}.fits"
                fits.PrimaryHDU(image, header).writeto(path)
                out["calexp"].append(path)
                if report:
                    report(1)
    _render_coadds(out_dir, survey, arrays, scale, seed, out, report)
    return out


def _ccd_centres(table: object, rows: NDArray[np.int64]) -> tuple[FloatArray, FloatArray]:
    import pyarrow as pa

    assert isinstance(table, pa.Table)
    ra = table.column("ra").to_numpy()[rows]
    dec = table.column("decl" if "decl" in table.column_names else "dec").to_numpy()[rows]
    return np.asarray(ra, dtype=np.float64), np.asarray(dec, dtype=np.float64)


def _render_coadds(
    out_dir: Path,
    survey: Survey,
    arrays: tuple[FloatArray, FloatArray, FloatArray, FloatArray],
    scale: ImageScale,
    seed: int,
    out: dict[str, list[Path]],
    report: Callable[[int], None] | None,
) -> None:
    ra0, dec0 = DEEP_CENTRE
    # Patches about the deep field: the centre's and its neighbours.
    step = 0.2
    offsets = [(0, 0), (step, 0), (0, step), (step, step), (-step, 0), (0, -step)]
    seen: list[tuple[int, int]] = []
    for dx, dy in offsets:
        t, p = tract_patch(np.array([ra0 + dx / np.cos(np.radians(dec0))]), np.array([dec0 + dy]))
        if (int(t[0]), int(p[0])) not in seen:
            seen.append((int(t[0]), int(p[0])))
    b = scale.binning
    pixel_deg = PIXEL_SCALE_ARCSEC * b / 3600.0
    psf = COADD_PSF_SIGMA / b
    mjd_begin, mjd_end = float(survey.visit_mjd.min()), float(survey.visit_mjd.max())
    for tract, patch in seen[: scale.patches]:
        lo_ra, hi_ra, lo_dec, hi_dec = (
            float(v[0]) for v in patch_boxes(np.array([tract]), np.array([patch]))
        )
        centre = ((lo_ra + hi_ra) / 2, (lo_dec + hi_dec) / 2)
        width = (hi_ra - lo_ra) * np.cos(np.radians(centre[1]))
        nx = math.ceil(width / pixel_deg)
        ny = math.ceil((hi_dec - lo_dec) / pixel_deg)
        wcs = _tan_wcs(centre[0], centre[1], ((nx + 1) / 2, (ny + 1) / 2), pixel_deg, 0.0)
        wcs.wcs.cd = pixel_deg * np.array([[-1.0, 0.0], [0.0, 1.0]])  # north up, east left
        wcs.wcs.set()
        for band_index, band in enumerate(BANDS):
            f5 = 10 ** (-0.4 * (COADD_DEPTH[band_index] - AB_ZERO_POINT_NJY))
            noise = f5 / (5.0 * np.sqrt(4 * np.pi) * psf)
            n_visits = int(np.sum(survey.visit_band == band_index))
            rng = np.random.default_rng([seed, 8, tract, patch, band_index])
            image = _draw(wcs, (ny, nx), arrays, band_index, psf, 1.0 / b, noise, rng)
            header = _header(
                wcs,
                {
                    "MJD-BEG": (mjd_begin, "[d] first visit of the survey (TAI)"),
                    "MJD-END": (mjd_end, "[d] last visit of the survey (TAI)"),
                    "TIMESYS": ("TAI", "time scale"),
                    "EXPTIME": (30.0 * n_visits, "[s] total exposure of the band's visits"),
                    "BAND": (band, "filter band"),
                    "TELESCOP": ("LSST", "simulated (skyvault demo)"),
                    "INSTRUME": ("LSSTCam-imSim", "simulated camera"),
                    "TRACT": (tract, "sky map tract"),
                    "PATCH": (patch, "sky map patch"),
                    "BINNING": (b, "LSST pixels per pixel side"),
                    "PSF_FWHM": (COADD_PSF_SIGMA * 2.3548 * PIXEL_SCALE_ARCSEC, "[arcsec]"),
                    "BUNIT": ("nJy", "pixel values"),
                },
            )
            path = out_dir / "deepCoadd" / f"deepCoadd_{tract}_{patch}_{band}.fits"
            fits.PrimaryHDU(image, header).writeto(path)
            out["deepCoadd"].append(path)
            if report:
                report(1)
