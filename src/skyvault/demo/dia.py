"""DiaObject rows summarise their DiaSources: light-curve statistics per band, as DP0.2's do.

Every statistic is computed from the DiaSource rows themselves (``psFlux``, ``psFluxErr``,
``totFlux``, ``midPointTai``), so a query that recomputes ``nDiaSources`` or
``rPSFluxMean`` from DiaSource gets the DiaObject's value.  Bands without a DiaSource hold
NaN (``*Ndata`` holds 0), as in DP0.2.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from skyvault.demo.fill import complete_table
from skyvault.demo.schema import BANDS
from skyvault.demo.sky import FloatArray, IntArray
from skyvault.sky.coverage import healpix29

__all__ = ["dia_object_table"]

_PERCENTILES = (5, 25, 50, 75, 95)


def _group_starts(keys: IntArray) -> tuple[IntArray, IntArray]:
    """Start index and size of each run of equal ``keys`` (sorted)."""
    if keys.size == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    sizes = np.diff(np.r_[starts, keys.size])
    return starts, sizes


def _band_stats(
    t: FloatArray, flux: FloatArray, err: FloatArray, tot: FloatArray
) -> dict[str, float]:
    """Light-curve statistics of one band of one object (DP0.2's column suffixes)."""
    n = flux.size
    mean = float(flux.mean())
    sigma = float(flux.std(ddof=1)) if n > 1 else np.nan
    weights = 1.0 / err**2
    median = float(np.median(flux))
    out = {
        "Ndata": float(n),
        "Mean": mean,
        "MeanErr": float(1.0 / np.sqrt(weights.sum())),
        "ErrMean": float(err.mean()),
        "Sigma": sigma,
        "Min": float(flux.min()),
        "Max": float(flux.max()),
        "MAD": float(np.median(np.abs(flux - median))),
        "Chi2": float((((flux - mean) / err) ** 2).sum()),
        "Skew": float(((flux - mean) ** 3).mean() / sigma**3) if n > 2 and sigma > 0 else np.nan,
    }
    for q in _PERCENTILES:
        out[f"Percentile{q:02d}"] = float(np.percentile(flux, q))
    if n > 1 and np.ptp(t) > 0:
        slope, intercept = np.polyfit(t - t.mean(), flux, 1)
        out["LinearSlope"] = float(slope)
        out["LinearIntercept"] = float(intercept - slope * t.mean())
        order = np.argsort(t)
        dt = np.diff(t[order])
        ok = dt > 0
        rates = np.abs(np.diff(flux[order])[ok] / dt[ok])
        out["MaxSlope"] = float(rates.max()) if rates.size else np.nan
        delta = np.sqrt(n / (n - 1)) * (flux - mean) / err
        p = delta[:-1] * delta[1:]
        out["StetsonJ"] = float(np.mean(np.sign(p) * np.sqrt(np.abs(p))))
    else:
        for name in ("LinearSlope", "LinearIntercept", "MaxSlope", "StetsonJ"):
            out[name] = np.nan
    tot_mean = float(tot.mean())
    out["TOTMean"] = tot_mean
    out["TOTMeanErr"] = float(err.mean() / np.sqrt(n))
    out["TOTSigma"] = float(tot.std(ddof=1)) if n > 1 else np.nan
    return out


def dia_object_table(dia_source: pa.Table) -> pa.Table:
    """One DiaObject row per ``diaObjectId`` of ``dia_source``, with its statistics."""
    ids = dia_source["diaObjectId"].to_numpy()
    band_names = np.array(dia_source["filterName"].to_pylist(), dtype=object)
    band = np.array([BANDS.index(b) for b in band_names], dtype=np.int64)
    order = np.lexsort((band, ids))
    ids, band = ids[order], band[order]
    t = dia_source["midPointTai"].to_numpy()[order]
    flux = dia_source["psFlux"].to_numpy()[order]
    err = dia_source["psFluxErr"].to_numpy()[order]
    tot = dia_source["totFlux"].to_numpy()[order]
    ra = dia_source["ra"].to_numpy()[order]
    dec = dia_source["decl"].to_numpy()[order]

    obj_starts, obj_sizes = _group_starts(ids)
    m = obj_starts.size
    columns: dict[str, NDArray[np.float64] | NDArray[np.int64]] = {}
    for b in BANDS:
        for name in [
            "Ndata",
            "Mean",
            "MeanErr",
            "ErrMean",
            "Sigma",
            "Min",
            "Max",
            "MAD",
            "Chi2",
            "Skew",
            "LinearSlope",
            "LinearIntercept",
            "MaxSlope",
            "StetsonJ",
        ] + [f"Percentile{q:02d}" for q in _PERCENTILES]:
            columns[f"{b}PSFlux{name}"] = np.full(m, 0.0 if name == "Ndata" else np.nan)
        for name in ("Mean", "MeanErr", "Sigma"):
            columns[f"{b}TOTFlux{name}"] = np.full(m, np.nan)
    key = ids * 8 + band
    starts, sizes = _group_starts(key)
    owner = np.searchsorted(obj_starts, starts, side="right") - 1
    for start, size, row in zip(starts.tolist(), sizes.tolist(), owner.tolist(), strict=True):
        sel = slice(start, start + size)
        b = BANDS[int(band[start])]
        for name, value in _band_stats(t[sel], flux[sel], err[sel], tot[sel]).items():
            if name.startswith("TOT"):
                columns[f"{b}TOTFlux{name[3:]}"][row] = value
            else:
                columns[f"{b}PSFlux{name}"][row] = value

    # Position: the mean of the DiaSources' (small offsets; no wrap in the footprint).
    counts = obj_sizes.astype(np.float64)
    mean_ra = np.add.reduceat(ra, obj_starts) / counts if m else np.empty(0)
    mean_dec = np.add.reduceat(dec, obj_starts) / counts if m else np.empty(0)
    mean_t = np.add.reduceat(t, obj_starts) / counts if m else np.empty(0)
    known: dict[str, object] = {
        "diaObjectId": ids[obj_starts],
        "ra": mean_ra,
        "decl": mean_dec,
        "nDiaSources": obj_sizes.astype(np.int64),
        "radecTai": mean_t,
        "pixelId": (healpix29(mean_ra, mean_dec) >> 18).astype(np.float64) if m else np.empty(0),
        **columns,
    }
    return complete_table("DiaObject", known, None)
