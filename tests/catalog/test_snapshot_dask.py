"""A query over an appended table reads one snapshot across the Dask executor's tasks, even
when compactions publish new versions between its planning and its tasks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from skyvault.catalog.append import append
from skyvault.catalog.compact import compact
from skyvault.engine.archive import open_archive
from skyvault.engine.distributed import DaskExecutor
from tests.catalog.appendkit import TABLE, batch, make_table
from tests.engine._dask import local_client

QUERY = f"SELECT id FROM {TABLE}"


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with local_client() as c:
        yield c


def _ids(table: pa.Table) -> list[int]:
    return sorted(table.column("id").to_pylist())


def _want(batches: list[int]) -> list[int]:
    return _ids(pa.concat_tables([batch(b) for b in [0, *batches]]))


@pytest.mark.slow
def test_a_planned_query_survives_compactions_before_its_tasks(tmp_path: Path, client: Any) -> None:
    data = make_table(tmp_path)
    for b in (1, 2):
        append(data, TABLE, batch(b), f"v{b}")
    archive = open_archive(data, executor=DaskExecutor(client))
    try:
        plan = archive.plan(QUERY)  # snapshot 2: base + batches 1, 2 (delta files)
        # Two compactions (and appends) publish two newer versions before the tasks run:
        # without keeping replaced versions, the planned base and deltas would be gone.
        append(data, TABLE, batch(3), "v3")
        compact(data, TABLE)
        append(data, TABLE, batch(4), "v4")
        compact(data, TABLE)
        result = archive.executor.execute(plan)
        got = result.to_table()
        assert result.stats.get("tasks", 1) > 1  # really spread over tasks
        assert _ids(got) == _want([1, 2])  # exactly the planned snapshot, whole batches
        assert _ids(archive.query(QUERY)) == _want([1, 2, 3, 4])  # a new query: the latest
    finally:
        archive.close()


def test_versions_replaced_long_ago_are_removed(tmp_path: Path) -> None:
    data = make_table(tmp_path)
    versions = data / "s" / ".skyvault" / "versions" / "t"
    for b in (1, 2, 3):
        append(data, TABLE, batch(b), f"v{b}")
        compact(data, TABLE, keep_replaced=0)
    assert len(list(versions.iterdir())) == 2  # the current one and the one it replaced
    for b in (4, 5, 6):
        append(data, TABLE, batch(b), f"v{b}")
        compact(data, TABLE)
    assert len(list(versions.iterdir())) == 5  # replaced within the hour: kept
    stores = data / "s" / ".skyvault" / "deltas" / "t"
    assert {p.name for p in stores.iterdir()} <= {p.name for p in versions.iterdir()}
