"""Fixtures shared by the whole suite: real data from ../shared, small synthetic catalogues."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
TYCHO2 = SHARED / "data" / "tycho2" / "tycho2.parquet"
TYCHO2_ROWS = 1_871_011


@pytest.fixture(scope="session")
def tycho2_parquet() -> Path:
    """The real Tycho-2 catalogue (1.87M stars); skipped where ../shared is absent."""
    if not TYCHO2.is_file():
        pytest.skip(f"real data not available: {TYCHO2} is absent")
    return TYCHO2


def random_sky(n: int, seed: int = 1, *, clustered: bool = True) -> pa.Table:
    """``n`` positions over the whole sky (uniform on the sphere), half of them clustered."""
    rng = np.random.default_rng(seed)
    ra = rng.uniform(0.0, 360.0, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n)))
    if clustered:
        k = n // 2
        centres = rng.integers(0, 20, k)
        cra = rng.uniform(0, 360, 20)[centres]
        cdec = np.degrees(np.arcsin(rng.uniform(-0.9, 0.9, 20)))[centres]
        ra[:k] = np.mod(cra + rng.normal(0, 0.5, k) / np.cos(np.radians(cdec)), 360.0)
        dec[:k] = np.clip(cdec + rng.normal(0, 0.5, k), -90, 90)
    return pa.table(
        {
            "id": pa.array(np.arange(n, dtype=np.int64)),
            "ra": pa.array(ra),
            "dec": pa.array(dec),
            "mag": pa.array(rng.uniform(8, 20, n).astype(np.float32)),
            "name": pa.array([f"star {i}" for i in range(n)]),
        }
    )


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small DP0.2-style demo data set, built once per test session."""
    from skyvault.demo import build_demo

    root = tmp_path_factory.mktemp("demo") / "data"
    build_demo(root, scale="small")
    return root


def ingest_table(table: pa.Table, root: Path, name: str = "s.stars", **options: Any) -> Path:
    """Ingest ``table`` (positions in ``ra``/``dec``) as ``name`` under ``root/data`` with
    these :class:`~skyvault.catalog.ingest.IngestOptions`; the data root."""
    from skyvault.catalog.ingest import IngestOptions, ingest

    source = root / f"{name}.parquet"
    pq.write_table(table, source)
    data = root / "data"
    ingest([source], name, data, ra="ra", dec="dec", options=IngestOptions(**options))
    return data


@dataclass(frozen=True)
class SkyCatalogue:
    """:func:`sky_catalogue`: the data root, the table's name and the rows ingested."""

    data: Path
    rows: pa.Table
    schema: str = "s"
    table: str = "stars"

    @property
    def name(self) -> str:
        return f"{self.schema}.{self.table}"

    @property
    def path(self) -> Path:
        """The published version directory of the table (a HATS catalogue)."""
        return (self.data / self.schema / self.table).resolve()


#: Rows of :func:`sky_catalogue`.
SKY_ROWS = 40_000


@pytest.fixture(scope="session")
def sky_catalogue(tmp_path_factory: pytest.TempPathFactory) -> SkyCatalogue:
    """``s.stars``: :data:`SKY_ROWS` rows of :func:`random_sky` (seed 11) over the whole sky,
    in partitions of at most 2,000 rows and row groups of 256, with a margin; readable by
    everyone.  Built once per session: never change its tables (a service over it may keep
    its job database, results and audit log in ``DIR/.skyvault``)."""
    from skyvault.auth import AuthStorage, grant_access

    rows = random_sky(SKY_ROWS, seed=11)
    root = tmp_path_factory.mktemp("sky-catalogue")
    data = ingest_table(rows, root, max_rows_per_partition=2000, row_group_rows=256)
    storage = AuthStorage.for_data_dir(data)
    try:
        grant_access(storage, "s", None)
    finally:
        storage.close()
    return SkyCatalogue(data, rows)
