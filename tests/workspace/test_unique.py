"""Unique indexes are kept on later loads: a load that would repeat a value of a unique
column is a 400 naming the column and the value, and nothing of it is stored — into a plain
table (its files folded or not), into a sky-indexed one (as appended rows), after a metadata
update, from a DEST job's append."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skyvault.catalog.registry import Registry
from skyvault.errors import WorkspaceError
from skyvault.workspace import WorkspaceStore
from skyvault.workspace.columns import TableDefinition, column
from skyvault.workspace.index import IndexRequest, create_index, plan_index
from skyvault.workspace.unique import UNIQUE_FILE, unique_columns
from tests.workspace.conftest import ALICE

NAME = "user_alice.cat"
DEFINITION = TableDefinition(
    (
        column("id", "long"),
        column("name", "char"),
        column("ra", "double", unit="deg", ucd="pos.eq.ra;meta.main"),
        column("dec", "double", unit="deg", ucd="pos.eq.dec;meta.main"),
    )
)


def _rows(ids: list[int | None], names: list[str] | None = None) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "name": names or [None if i is None else f"n{i}" for i in ids],
            "ra": [10.0 + k / 100 for k in range(len(ids))],
            "dec": [1.0] * len(ids),
        }
    )


def _index(store: WorkspaceStore, column_name: str, *, unique: bool = True) -> None:
    with store.exclusive(ALICE, NAME, "write") as table:
        plan = plan_index(table.meta, IndexRequest(NAME, column_name, unique=unique))
        create_index(store.data_dir, plan)


def _ids(store: WorkspaceStore) -> list[int | None]:
    files = Registry(store.data_dir).get("user_alice", "cat").all_files
    values: list[int | None] = []
    for f in files:
        values += pq.read_table(f, columns=["id"])["id"].to_pylist()
    return sorted(values, key=lambda v: (v is None, v))


def _refused(store: WorkspaceStore, rows: pa.Table) -> str:
    version = os.readlink(store.data_dir / "user_alice" / "cat")
    before = _ids(store)
    with pytest.raises(WorkspaceError) as refused:
        store.load(ALICE, NAME, rows)
    assert os.readlink(store.data_dir / "user_alice" / "cat") == version
    assert _ids(store) == before
    return str(refused.value)


def test_a_load_repeating_a_unique_value_is_refused_whole(store: WorkspaceStore) -> None:
    store.create_table(ALICE, NAME, DEFINITION)
    store.load(ALICE, NAME, _rows([1, 2, 3]))
    _index(store, "id")
    assert unique_columns(store.data_dir / "user_alice" / "cat") == ("id",)

    said = _refused(store, _rows([10, 11, 2]))
    assert "column id of user_alice.cat has a unique index: the value 2 would occur 2 times" in (
        said
    )
    assert "nothing was loaded" in said
    # Twice within one load.
    assert "the value 12 would occur 2 times" in _refused(store, _rows([12, 13, 12]))
    # New values, and NULLs (no value: they may repeat), go in.
    assert store.load(ALICE, NAME, _rows([4, None, None])).total_rows == 6
    assert _ids(store) == [1, 2, 3, 4, None, None]
    # A second unique column, on strings; both are kept.
    _index(store, "name")
    said = _refused(store, _rows([50], names=["n3"]))
    assert "column name of user_alice.cat" in said and "'n3'" in said
    assert store.load(ALICE, NAME, _rows([51])).total_rows == 7


def test_an_index_that_is_not_unique_lets_values_repeat(store: WorkspaceStore) -> None:
    store.create_table(ALICE, NAME, DEFINITION)
    store.load(ALICE, NAME, _rows([1, 2]))
    _index(store, "id", unique=False)
    assert unique_columns(store.data_dir / "user_alice" / "cat") == ()
    assert store.load(ALICE, NAME, _rows([1, 1])).total_rows == 4


def test_uniqueness_survives_folding_metadata_updates_and_the_sky_index(
    store: WorkspaceStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from skyvault.workspace import store as module

    monkeypatch.setattr(module, "MAX_FILES", 3)
    store.create_table(ALICE, NAME, DEFINITION)
    store.load(ALICE, NAME, _rows([1]))
    _index(store, "id")
    for k in range(2, 8):  # small loads, folded into fewer files as they come
        store.load(ALICE, NAME, _rows([k]))
    assert "the value 1 would occur 2 times" in _refused(store, _rows([100, 1]))
    store.update_table(ALICE, NAME, TableDefinition(DEFINITION.columns, "described"))
    assert "the value 5 would occur" in _refused(store, _rows([5]))
    # Sky-indexed: the rows move into HATS partitions, loads become appended batches.
    _index(store, "ra", unique=False)
    link = store.data_dir / "user_alice" / "cat"
    assert Registry(store.data_dir).get("user_alice", "cat").meta.kind == "hats"
    assert (link / UNIQUE_FILE).exists()
    assert "the value 7 would occur" in _refused(store, _rows([7]))
    store.load(ALICE, NAME, _rows([8, 9]))
    assert "the value 9 would occur" in _refused(store, _rows([9]))  # against the appended
    assert _ids(store) == list(range(1, 10))
