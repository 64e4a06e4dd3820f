"""Shared data for the append and compaction tests: a base table and deterministic batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from skyvault.catalog.ingest import IngestOptions, ingest

TABLE = "s.t"
BASE_ROWS = 20_000
MAX_ROWS = 2_000


def batch(b: int, n: int | None = None, *, everywhere: bool = True) -> pa.Table:
    """Batch ``b`` (deterministic): ids ``b * 1_000_000 + i``; the base is batch 0.

    Appended batches cover the whole sky, so some rows fall in the base's holes (the base
    has no row beyond |Dec| 60°); half of each batch is clustered in a 2° field, like a visit.
    """
    rng = np.random.default_rng(b)
    if n is None:
        n = 50 + (b * 7) % 37 if b else BASE_ROWS
    lim = 1.0 if everywhere and b else np.sin(np.radians(60))
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-lim, lim, n)))
    k = n // 2
    cra, cdec = rng.uniform(0, 360), rng.uniform(-50, 50)
    ra[:k] = np.mod(cra + rng.uniform(-1, 1, k) / np.cos(np.radians(cdec)), 360)
    dec[:k] = cdec + rng.uniform(-1, 1, k)
    return pa.table(
        {
            "id": pa.array(b * 1_000_000 + np.arange(n, dtype=np.int64)),
            "ra": pa.array(ra),
            "dec": pa.array(dec),
            "batch": pa.array(np.full(n, b, dtype=np.int64)),
        }
    )


def make_table(tmp: Path, *, max_rows: int = MAX_ROWS) -> Path:
    """A data root holding ``s.t``: batch 0 (20k rows, |Dec| < 60°) as a HATS table."""
    src = tmp / "base.parquet"
    pq.write_table(batch(0), src)
    data = tmp / "data"
    ingest(
        [src],
        TABLE,
        data,
        ra="ra",
        dec="dec",
        options=IngestOptions(max_rows_per_partition=max_rows),
    )
    return data


def separation_deg(
    ra1: np.ndarray, dec1: np.ndarray, ra2: float | np.ndarray, dec2: float | np.ndarray
) -> np.ndarray:
    """Angular distance (astropy's formula, Vincenty) in degrees."""
    from astropy.coordinates import angular_separation

    out = angular_separation(np.radians(ra1), np.radians(dec1), np.radians(ra2), np.radians(dec2))
    return np.degrees(np.asarray(out))
