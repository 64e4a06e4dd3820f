"""The registry lists the data root only when a directory changed, and never misses a change."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import skyvault.catalog.registry as registry_module
from skyvault.catalog.ingest import IngestOptions, ingest
from skyvault.catalog.registry import Registry
from tests.conftest import random_sky


def _age(data: Path, seconds: float = 10.0) -> None:
    """Make every directory look modified ``seconds`` ago (past the settling time)."""
    past = time.time() - seconds
    for directory in [data, *(p for p in data.iterdir() if p.is_dir())]:
        os.utime(directory, (past, past))


def _ingest(source: Path, name: str, data: Path) -> None:
    ingest(
        [source], name, data, ra="ra", dec="dec", options=IngestOptions(max_rows_per_partition=500)
    )


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "in.parquet"
    pq.write_table(random_sky(1000, seed=3), path)
    return path


def test_listing_is_reused_until_a_directory_changes(
    tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    _ingest(source, "a.one", data)
    registry = Registry(data)
    calls: list[Path] = []
    real = registry_module.list_tables

    def counting(root: Path) -> list[tuple[registry_module.TableName, Path]]:
        calls.append(root)
        return real(root)

    monkeypatch.setattr(registry_module, "list_tables", counting)
    # Just written: the directories are too recent to trust, so every call lists.
    assert [m.name for m in registry.tables()] == ["one"]
    assert [m.name for m in registry.tables()] == ["one"]
    assert len(calls) == 2
    _age(data)
    registry.tables()
    registry.tables()
    registry.tables()
    assert len(calls) == 3  # one listing to learn the stamps, then none
    # A new table in the same schema, even with its directory's time set back to what it
    # was before (a change within one timestamp tick), is seen: recent times are listed...
    _ingest(source, "a.two", data)
    assert sorted(m.name for m in registry.tables()) == ["one", "two"]
    # ...and an old-looking but different time is a change too.
    _age(data, 20.0)
    _ingest(source, "b.three", data)
    _age(data, 30.0)
    assert sorted(m.name for m in registry.tables()) == ["one", "three", "two"]


def test_a_replaced_or_deleted_table_is_seen(tmp_path: Path, source: Path) -> None:
    data = tmp_path / "data"
    _ingest(source, "a.one", data)
    _ingest(source, "a.two", data)
    registry = Registry(data)
    _age(data)
    registry.tables()
    before = registry.get("a", "one").root
    _ingest(source, "a.one", data)  # a re-ingest publishes a new version
    _age(data, 5.0)
    registry.tables()
    assert registry.get("a", "one").root != before
    os.unlink(data / "a" / "two")
    _age(data, 3.0)
    assert [m.name for m in registry.tables()] == ["one"]
