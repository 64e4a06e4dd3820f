"""What the per-query fixed cost was cut with: the plan cache of ``Archive.plan`` and the
scans as WITH clauses of the one statement (no ``CREATE TEMP VIEW`` per scan)."""

from __future__ import annotations

import gc
import os
import time
import weakref
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skyvault.catalog.ingest import IngestOptions, ingest
from skyvault.catalog.metadata import TableMeta, merge_columns
from skyvault.catalog.registry import SETTLE_S
from skyvault.engine.archive import Archive
from skyvault.engine.connection import Sandbox
from skyvault.engine.executor import LocalExecutor
from skyvault.engine.plan import QueryPlan, ScanSpec, plan_query
from skyvault.errors import AdqlSemanticError
from tests.conftest import random_sky

N = 5000
COUNT = "SELECT COUNT(*) AS n FROM s.stars WHERE mag < 14"


def _ingest(root: Path, rows: int, seed: int) -> pa.Table:
    table = random_sky(rows, seed=seed)
    source = root / f"in{seed}.parquet"
    pq.write_table(table, source)
    options = IngestOptions(max_rows_per_partition=1000, row_group_rows=256)
    ingest([source], "s.stars", root / "data", ra="ra", dec="dec", options=options)
    return table


def _settle(root: Path) -> None:
    """Age the data directories past the registry's settling time (no sleeping)."""
    old = time.time() - 10 * SETTLE_S
    for path in (root / "data", root / "data" / "s"):
        os.utime(path, (old, old))


def _expected(table: pa.Table) -> int:
    return int((table["mag"].to_numpy() < 14).sum())


def test_a_repeated_query_reuses_its_plan(tmp_path: Path) -> None:
    table = _ingest(tmp_path, N, seed=1)
    _settle(tmp_path)
    archive = Archive(tmp_path / "data")
    first = archive.plan(COUNT)
    assert archive.plan(COUNT) is first
    assert archive.query(COUNT)["n"].to_pylist() == [_expected(table)]
    assert archive.plan(COUNT.lower()) is not first  # another text: compiled anew


def test_a_new_version_of_the_table_is_planned_anew(tmp_path: Path) -> None:
    _ingest(tmp_path, N, seed=1)
    _settle(tmp_path)
    archive = Archive(tmp_path / "data")
    first = archive.plan(COUNT)
    archive.query(COUNT)
    replaced = _ingest(tmp_path, 2 * N, seed=2)
    second = archive.plan(COUNT)
    assert second is not first
    assert set(second.scans[0].files).isdisjoint(first.scans[0].files)
    assert archive.query(COUNT)["n"].to_pylist() == [_expected(replaced)]


def test_visibility_is_part_of_the_key(tmp_path: Path) -> None:
    _ingest(tmp_path, N, seed=1)
    archive = Archive(tmp_path / "data")
    everything = archive.tables()
    archive.plan(COUNT, everything)
    with pytest.raises(AdqlSemanticError):
        archive.plan(COUNT, [])  # a caller who may not see s.stars
    archive.plan(COUNT, everything)


def test_in_memory_tables_are_not_kept_alive(tmp_path: Path) -> None:
    """An upload's rows are not kept by the cache (its metadata, a few hundred bytes, may
    be: a translation names its tables), and a new upload is a new table."""
    _ingest(tmp_path, N, seed=1)
    archive = Archive(tmp_path / "data")
    upload = pa.table({"id": np.arange(10, dtype=np.int64)})
    meta = TableMeta("TAP_UPLOAD", "mine", "plain", merge_columns(upload.schema), 10)
    adql = "SELECT COUNT(*) AS n FROM TAP_UPLOAD.mine"
    for _ in range(2):
        assert archive.stream(adql, extra=[(meta, upload)]).to_table()["n"].to_pylist() == [10]
    rows = weakref.ref(upload)
    del upload
    gc.collect()
    assert rows() is None
    other = pa.table({"id": np.arange(3, dtype=np.int64)})
    meta2 = TableMeta("TAP_UPLOAD", "mine", "plain", merge_columns(other.schema), 3)
    assert archive.stream(adql, extra=[(meta2, other)]).to_table()["n"].to_pylist() == [3]


@pytest.mark.parametrize(
    "sql",
    [
        'SELECT COUNT(*) AS n FROM "__sv_t0" WHERE mag < 14',
        'WITH "__sv_cte0" AS (SELECT mag FROM "__sv_t0") '
        'SELECT COUNT(*) AS n FROM "__sv_cte0" WHERE mag < 14',
        '(SELECT COUNT(*) AS n FROM "__sv_t0" WHERE mag < 14) UNION ALL '
        '(SELECT COUNT(*) AS n FROM "__sv_t0" WHERE mag < 14)',
        'DESCRIBE SELECT COUNT(*) AS n FROM "__sv_t0" WHERE mag < 14',
    ],
)
def test_scans_as_with_clauses(tmp_path: Path, sql: str) -> None:
    table = _ingest(tmp_path, N, seed=1)
    archive = Archive(tmp_path / "data")
    stored = archive.registry.get("s", "stars")
    plan = plan_query(sql, [ScanSpec(placeholder="__sv_t0", table=stored)], [])
    executor = LocalExecutor(Sandbox([tmp_path / "data"]))
    got = executor.execute(QueryPlan(plan.sql, plan.scans, ()), maxrec=10).to_table()
    if sql.startswith("DESCRIBE"):
        assert got["column_name"].to_pylist() == ["n"]
    else:
        assert set(got["n"].to_pylist()) == {_expected(table)}


def test_query_cursors_use_the_parquet_footer_cache(tmp_path: Path) -> None:
    """Queries run on cursors: the footer cache must be on for them, not only for the
    connection that configured the sandbox (a plain SET is that connection's own)."""
    cursor = Sandbox([tmp_path]).cursor()
    setting = "SELECT value FROM duckdb_settings() WHERE name = 'parquet_metadata_cache'"
    assert cursor.sql(setting).fetchall() == [("true",)]
