"""Single-epoch measurements: the ForcedSource and Source rows of a chunk of objects.

For each object, the epochs are a random choice among the CCD visits whose detector it
falls on (all of them are found geometrically, from the visit's pointing and rotation): a
ForcedSource row per chosen epoch, linked to ``Object`` by ``objectId`` and to ``CcdVisit``
by ``ccdVisitId``.  Its noise follows that CCD visit's zero point, PSF and sky noise, and its
flux the object's light curve.  Where the object is detected at five sigma on that epoch
(and is not a sky object or a deblend parent), the epoch also gives a Source row: DP0.2's
Source table has no ``objectId``; it links to the visit by ``ccdVisitId`` and to objects by
position.

Identifiers: ``forcedSourceId`` and ``sourceId`` are ``ccdVisitId * 2**20 + n`` with ``n``
counting the rows of that CCD visit, as DP0.2's ids also encode the CCD visit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from skyvault.demo.dia import dia_object_table
from skyvault.demo.fill import Rows, complete_table
from skyvault.demo.objects import (
    AB_ZERO_POINT_NJY,
    ObjectChunk,
    Variability,
    psf_fraction,
    true_flux,
)
from skyvault.demo.schema import BANDS
from skyvault.demo.sky import FloatArray, IntArray, Kind
from skyvault.demo.survey import N_DETECTORS, PIXEL_SCALE_ARCSEC, Survey, candidate_epochs
from skyvault.errors import InternalError
from skyvault.sky.coverage import healpix29

__all__ = ["DIA_ID_BIT", "EpochCounters", "measure_epochs"]

#: ``diaObjectId`` = ``objectId`` with this bit set: unique, and never equal to an objectId.
DIA_ID_BIT = 1 << 61
#: Five-sigma detections on the difference image make DiaSources.
_DIA_THRESHOLD = 5.0

_ID_SHIFT = 20
_SATURATION_COUNTS = 100_000.0
_APERTURE_RADIUS_PX = 12.0


@dataclass
class EpochCounters:
    """Rows already numbered per CCD visit, carried from chunk to chunk."""

    n_ccd_visits: int
    forced: IntArray = field(init=False)
    source: IntArray = field(init=False)
    dia_source: IntArray = field(init=False)
    forced_dia: IntArray = field(init=False)

    def __post_init__(self) -> None:
        self.forced = np.zeros(self.n_ccd_visits, dtype=np.int64)
        self.source = np.zeros(self.n_ccd_visits, dtype=np.int64)
        self.dia_source = np.zeros(self.n_ccd_visits, dtype=np.int64)
        self.forced_dia = np.zeros(self.n_ccd_visits, dtype=np.int64)


def _number(ccd_row: IntArray, counters: IntArray) -> IntArray:
    """Serial numbers within each CCD visit, continuing from ``counters`` (updated)."""
    order = np.argsort(ccd_row, kind="stable")
    sorted_rows = ccd_row[order]
    first = np.searchsorted(sorted_rows, sorted_rows, side="left")
    serial = np.empty(ccd_row.size, dtype=np.int64)
    serial[order] = np.arange(ccd_row.size) - first + counters[sorted_rows]
    counters += np.bincount(ccd_row, minlength=counters.size)
    if serial.size and serial.max() >= 1 << _ID_SHIFT:
        raise InternalError("too many demo rows on one CCD visit for the id scheme")
    return serial


def _choose_epochs(
    obj: IntArray, n_objects: int, epochs: tuple[int, int], rng: np.random.Generator
) -> IntArray:
    """Indices into the candidate pairs: up to ``k`` per object, ``k`` uniform in ``epochs``."""
    want = rng.integers(epochs[0], epochs[1] + 1, n_objects)
    # One sort on (object, random tie-break) packed into an int64 key.
    key = (obj << 32) | rng.integers(0, 1 << 32, obj.size, dtype=np.int64)
    order = np.argsort(key)
    sorted_obj = obj[order]
    rank = np.arange(obj.size) - np.searchsorted(sorted_obj, sorted_obj, side="left")
    return np.asarray(np.sort(order[rank < want[sorted_obj]]), dtype=np.int64)


def measure_epochs(
    chunk: ObjectChunk,
    survey: Survey,
    counters: EpochCounters,
    epochs: tuple[int, int],
    rng: np.random.Generator,
) -> dict[str, pa.Table]:
    """The ForcedSource, Source, DiaObject, DiaSource and ForcedSourceOnDiaObject rows of
    ``chunk``, by table name.

    DiaObjects are the chunk's variable objects detected at five sigma on at least one
    difference image; each such detection is a DiaSource, and every epoch of a DiaObject's
    forced photometry is a ForcedSourceOnDiaObject row (the same measurement as its
    ForcedSource row): light curves in both tables.

    Parameters
    ----------
    chunk
        The objects, with their true properties.
    survey
        Visits and CCD visits to measure them on.
    counters
        Per-CCD-visit row counts of earlier chunks (updated), for the ids.
    epochs
        Least and most epochs per object (fewer where fewer visits cover it).
    rng
        Random numbers for this chunk.
    """
    cand_obj, cand_ccd, cand_x, cand_y = candidate_epochs(chunk.ra, chunk.dec, survey)
    pick = _choose_epochs(cand_obj, len(chunk), epochs, rng)
    # Group rows by object, then by time.
    obj, ccd, det_x, det_y = cand_obj[pick], cand_ccd[pick], cand_x[pick], cand_y[pick]
    visit = ccd // N_DETECTORS
    mjd = survey.visit_mjd[visit]
    order = np.lexsort((mjd, obj))
    obj, ccd, visit = obj[order], ccd[order], visit[order]
    det_x, det_y, mjd = det_x[order], det_y[order], mjd[order]
    band = survey.visit_band[visit]
    n = obj.size

    # Photometry in this CCD visit's conditions.
    zero_point = survey.ccd_zero_point[ccd]
    njy_per_count = 10.0 ** (-0.4 * (zero_point - AB_ZERO_POINT_NJY))
    psf_sigma = survey.ccd_psf_sigma[ccd]
    n_eff = 4.0 * np.pi * psf_sigma**2
    frac = psf_fraction(chunk.size2[obj], psf_sigma)
    flux_t = true_flux(chunk, obj, band, mjd)
    template = chunk.flux[obj, band]
    psf_true = flux_t * frac
    counts = np.maximum(psf_true, 0.0) / njy_per_count
    sky_var = survey.ccd_sky_noise[ccd] ** 2 * n_eff
    psf_err = np.sqrt(sky_var + counts) * njy_per_count
    psf_err = np.sqrt(psf_err**2 + (0.005 * psf_true) ** 2)
    psf_flux = psf_true + psf_err * rng.standard_normal(n)
    diff_err = psf_err * 1.05
    diff_flux = (flux_t - template) * frac + diff_err * rng.standard_normal(n)
    peak = counts / (2.0 * np.pi * psf_sigma**2) + survey.ccd_sky_bg[ccd]
    saturated = peak > _SATURATION_COUNTS
    ccd_visit_id = survey.ccd_visit_id(ccd)
    bands = np.array(BANDS)[band]
    # What the generic columns derive from: this epoch's flux, depth, PSF and pixel.
    depth = AB_ZERO_POINT_NJY - 2.5 * np.log10(5.0 * np.sqrt(sky_var) * njy_per_count)

    def epoch_rows(sel: IntArray, ra: FloatArray, dec: FloatArray) -> Rows:
        return Rows(
            ra=ra,
            dec=dec,
            flux=flux_t[sel, None],
            depth=depth[sel, None],
            size2=chunk.size2[obj[sel]],
            psf_sigma=psf_sigma[sel],
            ellipticity=chunk.ellipticity[obj[sel]],
            angle=chunk.angle[obj[sel]],
            x=det_x[sel],
            y=det_y[sel],
            rng=rng,
            band=band[sel],
            njy_per_count=njy_per_count[sel],
            rotation_deg=survey.visit_rotation[visit[sel]],
        )

    every = np.arange(n)
    forced_id = (ccd_visit_id << _ID_SHIFT) + _number(ccd, counters.forced)
    forced = _table(
        "ForcedSource",
        {
            "forcedSourceId": forced_id,
            "objectId": chunk.object_id[obj],
            "parentObjectId": chunk.parent_id[obj],
            "coord_ra": chunk.ra[obj],
            "coord_dec": chunk.dec[obj],
            "tract": chunk.tract[obj],
            "patch": chunk.patch[obj],
            "band": bands,
            "ccdVisitId": ccd_visit_id,
            "detect_isPrimary": chunk.is_primary[obj],
            "psfFlux": psf_flux,
            "psfFluxErr": psf_err,
            "psfFlux_flag": rng.uniform(0.0, 1.0, n) < 0.002,
            "psfDiffFlux": diff_flux,
            "psfDiffFluxErr": diff_err,
            "pixelFlags_saturated": saturated,
            "pixelFlags_saturatedCenter": saturated,
            "localPhotoCalib": njy_per_count,
        },
        epoch_rows(every, chunk.ra[obj], chunk.dec[obj]),
    )

    # Detections: five-sigma epochs of real, unblended objects.
    snr = psf_flux / psf_err
    detected = (snr >= 5.0) & (chunk.kind[obj] != Kind.SKY) & ~chunk.is_parent[obj]
    d = np.flatnonzero(detected)
    m = d.size
    seeing_arcsec = psf_sigma[d] * 2.3548 * PIXEL_SCALE_ARCSEC
    astrometric = np.hypot(seeing_arcsec / snr[d], 0.01) / 3600.0
    s_dec = chunk.dec[obj[d]] + astrometric * rng.standard_normal(m)
    s_ra = chunk.ra[obj[d]] + astrometric * rng.standard_normal(m) / np.cos(np.radians(s_dec))
    size2 = chunk.size2[obj[d]]
    p2 = psf_sigma[d] ** 2
    aperture_share = 1.0 - np.exp(-(_APERTURE_RADIUS_PX**2) / (2.0 * (p2 + size2)))
    cal_true = flux_t[d] * aperture_share
    cal_var = (
        survey.ccd_sky_noise[ccd[d]] ** 2 * np.pi * _APERTURE_RADIUS_PX**2
        + np.maximum(cal_true, 0.0) / njy_per_count[d]
    )
    cal_err = np.sqrt(cal_var) * njy_per_count[d]
    cal_flux = cal_true + cal_err * rng.standard_normal(m)
    moment_noise = (p2 + size2) / snr[d]
    ext_ratio = frac[d] + 0.7 * rng.standard_normal(m) / snr[d]
    source_id = (ccd_visit_id[d] << _ID_SHIFT) + _number(ccd[d], counters.source)
    source = _table(
        "Source",
        {
            "sourceId": source_id,
            "coord_ra": s_ra,
            "coord_dec": s_dec,
            "ccdVisitId": ccd_visit_id[d],
            "visit": survey.visit_id[visit[d]],
            "detector": ccd[d] % N_DETECTORS,
            "band": bands[d],
            "parentSourceId": np.zeros(m, dtype=np.int64),
            "x": det_x[d],
            "y": det_y[d],
            "psfFlux": psf_flux[d] + 0.1 * psf_err[d] * rng.standard_normal(m),
            "psfFluxErr": psf_err[d],
            "calibFlux": cal_flux,
            "calibFluxErr": cal_err,
            "ap12Flux": cal_flux,  # DP0.2's calibration flux is the 12-pixel aperture's
            "ap12FluxErr": cal_err,
            "ixx": size2 + p2 + moment_noise * rng.standard_normal(m),
            "iyy": size2 + p2 + moment_noise * rng.standard_normal(m),
            "ixy": 0.5 * moment_noise * rng.standard_normal(m),
            "extendedness": (ext_ratio < 0.985).astype(np.float64),
            "detect_isPrimary": np.ones(m, dtype=bool),
            "sky_source": np.zeros(m, dtype=bool),
            "pixelFlags_saturated": saturated[d],
            "ra": s_ra,
            "decl": s_dec,
            "deblend_nChild": np.zeros(m, dtype=np.int32),
            "visit_system": np.zeros(m, dtype=np.int64),
            "localPhotoCalib": njy_per_count[d],
        },
        epoch_rows(d, s_ra, s_dec),
    )

    # Difference-image detections of variable objects: DiaSources, and their DiaObjects.
    variable = (chunk.var_kind[obj] != Variability.NONE) & (chunk.kind[obj] != Kind.SKY)
    variable &= ~chunk.is_parent[obj]
    dia = np.flatnonzero(variable & (np.abs(diff_flux / diff_err) >= _DIA_THRESHOLD))
    k = dia.size
    dia_object_id = chunk.object_id[obj] | DIA_ID_BIT
    dia_astrometry = (
        np.hypot(
            psf_sigma[dia]
            * 2.3548
            * PIXEL_SCALE_ARCSEC
            * diff_err[dia]
            / np.maximum(np.abs(diff_flux[dia]), 1e-9),
            0.01,
        )
        / 3600.0
    )
    dia_astrometry = np.minimum(dia_astrometry, 0.3 / 3600.0)
    ds_dec = chunk.dec[obj[dia]] + dia_astrometry * rng.standard_normal(k)
    ds_ra = chunk.ra[obj[dia]] + dia_astrometry * rng.standard_normal(k) / np.cos(
        np.radians(ds_dec)
    )
    dia_source_id = (ccd_visit_id[dia] << _ID_SHIFT) + _number(ccd[dia], counters.dia_source)
    dia_rows = epoch_rows(dia, ds_ra, ds_dec)
    dia_rows.flux = np.abs(diff_flux[dia, None])
    dia_source = _table(
        "DiaSource",
        {
            "diaSourceId": dia_source_id,
            "diaObjectId": dia_object_id[dia],
            "ccdVisitId": ccd_visit_id[dia],
            "filterName": bands[dia],
            "midPointTai": mjd[dia],
            "ra": ds_ra,
            "decl": ds_dec,
            "coord_ra": ds_ra,
            "coord_dec": ds_dec,
            "psFlux": diff_flux[dia],
            "psFluxErr": diff_err[dia],
            "totFlux": psf_flux[dia],
            "totFluxErr": psf_err[dia],
            "apFlux": diff_flux[dia] * 0.95 + 0.3 * diff_err[dia] * rng.standard_normal(k),
            "apFluxErr": diff_err[dia] * 1.4,
            "snr": np.abs(diff_flux[dia] / diff_err[dia]),
            "x": det_x[dia],
            "y": det_y[dia],
            "parentDiaSourceId": np.zeros(k, dtype=np.int64),
            "ssObjectId": np.zeros(k, dtype=np.int64),
            "pixelId": healpix29(ds_ra, ds_dec) >> 18,  # HEALPix order 20
            "isDipole": np.zeros(k, dtype=bool),
        },
        dia_rows,
    )
    # Forced photometry on every epoch of an object with a DiaSource.
    has_dia = np.zeros(len(chunk), dtype=bool)
    has_dia[obj[dia]] = True
    on_dia = np.flatnonzero(has_dia[obj])
    forced_dia = _table(
        "ForcedSourceOnDiaObject",
        {
            "forcedSourceOnDiaObjectId": (ccd_visit_id[on_dia] << _ID_SHIFT)
            + _number(ccd[on_dia], counters.forced_dia),
            "diaObjectId": dia_object_id[on_dia],
            "ccdVisitId": ccd_visit_id[on_dia],
            "band": bands[on_dia],
            "coord_ra": chunk.ra[obj[on_dia]],
            "coord_dec": chunk.dec[obj[on_dia]],
            "parentObjectId": np.zeros(on_dia.size, dtype=np.int64),
            "tract": chunk.tract[obj[on_dia]],
            "patch": chunk.patch[obj[on_dia]],
            "psfFlux": psf_flux[on_dia],
            "psfFluxErr": psf_err[on_dia],
            "psfDiffFlux": diff_flux[on_dia],
            "psfDiffFluxErr": diff_err[on_dia],
            "localPhotoCalib": njy_per_count[on_dia],
        },
        epoch_rows(on_dia, chunk.ra[obj[on_dia]], chunk.dec[obj[on_dia]]),
    )
    dia_object = dia_object_table(dia_source)
    return {
        "ForcedSource": forced,
        "Source": source,
        "DiaObject": dia_object,
        "DiaSource": dia_source,
        "ForcedSourceOnDiaObject": forced_dia,
    }


def _table(name: str, columns: dict[str, object], rows: Rows) -> pa.Table:
    return complete_table(name, columns, rows)
