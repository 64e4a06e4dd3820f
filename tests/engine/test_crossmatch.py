"""Cross-match as a cell hash join: exactly the pairs astropy finds, across every border."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord

from skyvault.catalog.ingest import IngestOptions, ingest
from skyvault.catalog.registry import Registry
from skyvault.engine.connection import Sandbox
from skyvault.engine.crossmatch import KEY_COLUMN
from skyvault.engine.executor import LocalExecutor
from skyvault.engine.plan import plan_query
from skyvault.sky.sql import within_distance_sql


def _patch(n: int, seed: int, ra0: float, dec0: float, size: float) -> pa.Table:
    rng = np.random.default_rng(seed)
    dec = np.clip(dec0 + rng.uniform(-size, size, n), -90, 90)
    ra = np.mod(ra0 + rng.uniform(-size, size, n) / np.maximum(np.cos(np.radians(dec)), 0.05), 360)
    return pa.table({"id": np.arange(n), "ra": ra, "dec": dec})


# Regions that straddle RA 0/360, a pole, and ordinary sky.
REGIONS = [(0.0, 10.0, 1.0), (123.0, -30.0, 1.0), (45.0, 89.3, 0.6)]


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pa.Table, pa.Table]:
    root = tmp_path_factory.mktemp("xmatch")
    left = pa.concat_tables(_patch(3000, i, *r) for i, r in enumerate(REGIONS))
    left = left.set_column(0, "id", pa.array(np.arange(left.num_rows)))
    # The right table: near copies of many left rows (offsets up to ~3″) plus field stars.
    rng = np.random.default_rng(99)
    pick = rng.choice(left.num_rows, 4000, replace=False)
    offsets = SkyCoord(
        left["ra"].to_numpy()[pick], left["dec"].to_numpy()[pick], unit="deg"
    ).directional_offset_by(rng.uniform(0, 360, 4000) * u.deg, rng.uniform(0, 3, 4000) * u.arcsec)
    field = pa.concat_tables(_patch(3000, 10 + i, *r) for i, r in enumerate(REGIONS))
    right = pa.table(
        {
            "id": np.arange(4000 + field.num_rows),
            "ra": np.concatenate([offsets.ra.deg, field["ra"].to_numpy()]),
            "dec": np.concatenate([offsets.dec.deg, field["dec"].to_numpy()]),
        }
    )
    pq.write_table(left, root / "left.parquet")
    pq.write_table(right, root / "right.parquet")
    data = root / "data"
    # Small partitions: many pairs straddle partition borders.
    options = IngestOptions(max_rows_per_partition=400)
    ingest([root / "left.parquet"], "s.left_t", data, ra="ra", dec="dec", options=options)
    ingest([root / "right.parquet"], "s.right_t", data, ra="ra", dec="dec", options=options)
    return data, left, right


def _astropy_pairs(left: pa.Table, right: pa.Table, radius_arcsec: float) -> set[tuple[int, int]]:
    a = SkyCoord(left["ra"].to_numpy(), left["dec"].to_numpy(), unit="deg")
    b = SkyCoord(right["ra"].to_numpy(), right["dec"].to_numpy(), unit="deg")
    ia, ib, _, _ = a.search_around_sky(b, radius_arcsec * u.arcsec)
    return set(
        zip(left["id"].to_numpy()[ib].tolist(), right["id"].to_numpy()[ia].tolist(), strict=True)
    )


@pytest.mark.parametrize("radius_arcsec", [1.0, 2.5, 60.0])
def test_cell_join_equals_brute_force(
    archive: tuple[Path, pa.Table, pa.Table], radius_arcsec: float
) -> None:
    data, left, right = archive
    registry = Registry(data)
    radius = radius_arcsec / 3600
    condition = within_distance_sql('"a"."ra"', '"a"."dec"', '"b"."ra"', '"b"."dec"', radius)
    sql = f'SELECT "a"."id" AS aid, "b"."id" AS bid FROM "__sv_t0" AS "a", "__sv_t1" AS "b" WHERE {condition}'  # noqa: E501
    plan = plan_query(
        sql,
        [
            ("__sv_t0", registry.get("s", "left_t"), None),
            ("__sv_t1", registry.get("s", "right_t"), None),
        ],
        [],
        crossmatch=("__sv_t0", "__sv_t1", radius),
    )
    assert KEY_COLUMN in plan.sql, "the cell key equality was not added"
    assert {s.cell[0] for s in plan.scans if s.cell} == {"keyed", "exploded"}
    got = LocalExecutor(Sandbox([data])).execute(plan).to_table()
    pairs = set(zip(got["aid"].to_pylist(), got["bid"].to_pylist(), strict=True))
    want = _astropy_pairs(left, right, radius_arcsec)
    assert len(want) > 1000
    assert pairs == want
    assert got.num_rows == len(pairs), "a pair came out twice"


def test_left_join_in_on_clause_keeps_unmatched_rows(
    archive: tuple[Path, pa.Table, pa.Table],
) -> None:
    data, left, right = archive
    registry = Registry(data)
    radius = 1.0 / 3600
    condition = within_distance_sql('"a"."ra"', '"a"."dec"', '"b"."ra"', '"b"."dec"', radius)
    sql = (
        'SELECT "a"."id" AS aid, "b"."id" AS bid FROM "__sv_t0" AS "a" '
        f'LEFT JOIN "__sv_t1" AS "b" ON {condition}'
    )
    plan = plan_query(
        sql,
        [
            ("__sv_t0", registry.get("s", "left_t"), None),
            ("__sv_t1", registry.get("s", "right_t"), None),
        ],
        [],
        crossmatch=("__sv_t0", "__sv_t1", radius),
    )
    got = LocalExecutor(Sandbox([data])).execute(plan).to_table()
    matched = {
        (a, b)
        for a, b in zip(got["aid"].to_pylist(), got["bid"].to_pylist(), strict=True)
        if b is not None
    }
    assert matched == _astropy_pairs(left, right, 1.0)
    assert set(got["aid"].to_pylist()) == set(left["id"].to_pylist())
