"""The simulation's truth: TruthSummary rows for what was put in the sky, MatchesTruth rows
linking them to the Objects that detected them.

Every real object (not a sky object, not a deblend parent) is a truth entry: a star
(``truth_type`` 2) or a galaxy (1), at its true position, which the Object's measured
position misses by its centroid error (milliarcseconds to a few tenths of an arcsecond);
its true fluxes (with and without Milky Way extinction), redshift and variability.  A
transient adds a supernova entry (3) beside its host galaxy.  Fainter galaxies that nothing
detected (about a third more entries) have truth rows without a match.  MatchesTruth has a
row per truth entry, keyed by ``id_truth_type`` as in DP0.2, with ``match_objectId`` the
matched Object (-1 when none).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from skyvault.demo.fill import AB_ZERO_POINT_NJY, complete_table, flux_error, nanojansky
from skyvault.demo.objects import COADD_DEPTH, ObjectChunk, Variability
from skyvault.demo.schema import BANDS
from skyvault.demo.sky import Kind

__all__ = ["truth_tables"]

_TRUTH_GALAXY, _TRUTH_STAR, _TRUTH_SN = 1, 2, 3
#: Extinction A_band / E(B-V) (LSST bands, Fitzpatrick 1999-like).
_EXTINCTION = np.array([4.81, 3.64, 2.70, 2.06, 1.58, 1.31])
_UNDETECTED_SHARE = 0.3


def truth_tables(chunk: ObjectChunk, rng: np.random.Generator) -> dict[str, pa.Table]:
    """The TruthSummary and MatchesTruth rows of ``chunk``."""
    real = np.flatnonzero((chunk.kind != Kind.SKY) & ~chunk.is_parent)
    star = chunk.kind[real] == Kind.STAR
    n_real = real.size

    # Detected truth: the true position, off the measured one by the centroid error.
    flux = chunk.flux[real]
    snr = np.clip(flux[:, 2] / flux_error(flux[:, 2], np.full(n_real, COADD_DEPTH[2])), 1, None)
    sigma = np.clip(0.25 / snr, 0.002, 0.25) / 3600.0
    t_dec = chunk.dec[real] + sigma * rng.standard_normal(n_real)
    t_ra = chunk.ra[real] + sigma * rng.standard_normal(n_real) / np.cos(np.radians(t_dec))

    # Undetected faint galaxies near the detected ones (same density pattern).
    n_faint = round(n_real * _UNDETECTED_SHARE)
    near = rng.integers(0, max(n_real, 1), n_faint)
    offset = rng.uniform(2.0, 20.0, n_faint) / 3600.0
    theta = rng.uniform(0.0, 2.0 * np.pi, n_faint)
    f_dec = chunk.dec[real][near] + offset * np.sin(theta)
    f_ra = chunk.ra[real][near] + offset * np.cos(theta) / np.cos(np.radians(f_dec))
    colours = flux[near] / np.maximum(flux[near, 2:3], 1e-9)
    f_flux = colours * nanojansky(rng.uniform(27.2, 29.0, n_faint))[:, None]

    # Supernovae: beside the host galaxy of each transient.
    sn = real[chunk.var_kind[real] == Variability.TRANSIENT]
    n_sn = sn.size
    sn_sep = rng.uniform(0.1, 1.5, n_sn) / 3600.0
    sn_dec = chunk.dec[sn] + sn_sep * rng.standard_normal(n_sn) / 1.4
    sn_ra = chunk.ra[sn] + sn_sep * rng.standard_normal(n_sn) / 1.4 / np.cos(np.radians(sn_dec))
    sn_flux = np.repeat(nanojansky(chunk.var_amp[sn])[:, None], len(BANDS), axis=1)

    n = n_real + n_faint + n_sn
    truth_type = np.concatenate(
        [
            np.where(star, _TRUTH_STAR, _TRUTH_GALAXY),
            np.full(n_faint, _TRUTH_GALAXY),
            np.full(n_sn, _TRUTH_SN),
        ]
    ).astype(np.int64)
    ra = np.concatenate([t_ra, f_ra, sn_ra])
    dec = np.concatenate([t_dec, f_dec, sn_dec])
    true_flux = np.concatenate([flux, f_flux, sn_flux])
    # Ids: cosmoDC2 galaxy ids, star ids, supernova names, unique per object row.
    base = chunk.rows.astype(np.int64)
    # (Chunks are runs of consecutive rows with fewer faint entries than rows: no clashes.)
    faint_id = (1 << 40) + base[0] + np.arange(n_faint, dtype=np.int64) if base.size else base
    galaxy_id = np.concatenate([base[real], faint_id, base[sn]])
    cosmo_id = np.where(truth_type == _TRUTH_GALAXY, 8_000_000_000 + galaxy_id, -1)
    ids = np.where(
        truth_type == _TRUTH_STAR,
        (31_000_000_000 + galaxy_id).astype(str),
        np.where(
            truth_type == _TRUTH_SN,
            np.char.add("MS_", (9_000_000 + galaxy_id).astype(str)),
            cosmo_id.astype(str),
        ),
    )
    id_truth_type = np.char.add(np.char.add(ids, "_"), truth_type.astype(str))
    host = np.full(n, -1, dtype=np.int64)
    host[n_real + n_faint :] = 8_000_000_000 + base[sn]

    ebv = rng.uniform(0.005, 0.03, n)
    no_mw = true_flux * 10 ** (0.4 * _EXTINCTION[None, :] * ebv[:, None])
    redshift = np.where(
        truth_type == _TRUTH_STAR, 0.0, np.clip(rng.lognormal(np.log(0.9), 0.55, n), 0.02, 3.0)
    )
    is_variable = np.concatenate(
        [chunk.var_kind[real] != Variability.NONE, np.zeros(n_faint, bool), np.ones(n_sn, bool)]
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        mag_r = -2.5 * np.log10(true_flux[:, 2]) + AB_ZERO_POINT_NJY
    summary: dict[str, object] = {
        "id_truth_type": id_truth_type,
        "id": ids,
        "host_galaxy": host,
        "ra": ra,
        "dec": dec,
        "redshift": redshift,
        "is_variable": is_variable.astype(np.int32),
        "is_pointsource": (truth_type != _TRUTH_GALAXY).astype(np.int32),
        "mag_r": mag_r,
        "cosmodc2_hp": np.where(cosmo_id > 0, 9_000 + (np.floor(ra) * 8).astype(np.int64), -1),
        "cosmodc2_id": cosmo_id,
        "truth_type": truth_type,
    }
    for b, name in enumerate(BANDS):
        summary[f"flux_{name}"] = true_flux[:, b]
        summary[f"flux_{name}_noMW"] = no_mw[:, b]

    # Matches: the detected entries to their Object; a chi-square of the flux agreement.
    matched = np.zeros(n, dtype=bool)
    matched[:n_real] = True
    match_object = np.full(n, -1, dtype=np.int64)
    match_object[:n_real] = chunk.object_id[real]
    chisq = np.where(matched, rng.chisquare(6.0, n), np.nan)
    matches: dict[str, object] = {
        "match_candidate": matched | (mag_r < 27.0),
        "match_count": matched.astype(np.int32),
        "match_chisq": chisq,
        "match_n_chisq_finite": np.where(matched, len(BANDS), 0).astype(np.int32),
        "id": ids,
        "truth_type": truth_type.astype(np.int32),
        "match_objectId": match_object,
        "id_truth_type": id_truth_type,
    }
    return {
        "TruthSummary": complete_table("TruthSummary", summary, None),
        "MatchesTruth": complete_table("MatchesTruth", matches, None),
    }
