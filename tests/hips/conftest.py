"""A small clustered catalogue ingested with small partitions (of several orders), so the
coarse orders of a HiPS span several partitions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skyvault.catalog.ingest import IngestOptions, ingest


def _sources(rng: np.random.Generator) -> pa.Table:
    n_sky, n_cluster = 6000, 14000
    ra = np.concatenate([rng.uniform(0, 360, n_sky), rng.normal(150.0, 1.5, n_cluster) % 360])
    z = rng.uniform(-1, 1, n_sky)
    dec = np.concatenate(
        [np.degrees(np.arcsin(z)), np.clip(rng.normal(20.0, 1.5, n_cluster), -90, 90)]
    )
    n = ra.size
    # Few distinct magnitudes: many ties, which the ranking must break consistently.
    mag = np.round(rng.uniform(5, 20, n), 1).astype(np.float32)
    mag[rng.choice(n, 300, replace=False)] = np.nan
    mask = np.zeros(n, dtype=bool)
    mask[rng.choice(n, 200, replace=False)] = True
    names = np.array([f"src\t{i}" if i % 997 == 0 else f"src {i}" for i in range(n)])
    return pa.table(
        {
            "sid": pa.array(np.arange(n, dtype=np.int64)),
            "ra": pa.array(ra),
            "dec": pa.array(dec),
            "mag": pa.array(mag, mask=mask),
            "name": pa.array(names),
            "flags": pa.array([[i % 3, i % 5] for i in range(n)], type=pa.list_(pa.int16())),
        }
    )


@pytest.fixture(scope="session")
def hips_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Data root with ``sky.clustered`` (20k rows, partitions of ≤ 1500 rows) and
    ``sky.plain`` (no positions)."""
    root = tmp_path_factory.mktemp("hipsdata")
    src = root / "src"
    src.mkdir()
    pq.write_table(_sources(np.random.default_rng(7)), src / "clustered.parquet")
    ingest(
        [src / "clustered.parquet"],
        "sky.clustered",
        root / "data",
        ra="ra",
        dec="dec",
        options=IngestOptions(max_rows_per_partition=1500, workers=1),
    )
    pq.write_table(pa.table({"x": [1, 2, 3]}), src / "plain.parquet")
    ingest([src / "plain.parquet"], "sky.plain", root / "data")
    return root / "data"
