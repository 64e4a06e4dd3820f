"""Fixtures shared by the whole suite: real data from ../shared, small synthetic catalogues."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
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
