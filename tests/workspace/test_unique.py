"""Unique indexes are kept on later loads: a load that would repeat a value of a unique
column is a 400 naming the column and the value, and nothing of it is stored — into a plain
table (its files folded or not), into a sky-indexed one (as appended rows), after a metadata
update, from a DEST job's append.  And an index can be dropped (the operator's
``skyvault workspace drop-index``): a column index and its uniqueness, or the sky index
(the table written back as plain Parquet)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skyvault.catalog.registry import Registry
from skyvault.errors import WorkspaceError
from skyvault.workspace import Quota, WorkspaceStore
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


# --- dropping an index (the operator's `skyvault workspace drop-index`) ---------------------


def test_dropping_a_unique_column_index_lets_values_repeat_again(
    store: WorkspaceStore,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from skyvault.catalog.layout import audit_log_file
    from skyvault.cli import main

    monkeypatch.delenv("SKYVAULT_AUTH_AUDIT_LOG", raising=False)
    store.create_table(ALICE, NAME, DEFINITION)
    store.load(ALICE, NAME, _rows([1, 2, 3]))
    _index(store, "id")
    assert "would occur 2 times" in _refused(store, _rows([3]))

    assert main(["workspace", "drop-index", "--data", str(data_dir), NAME, "id"]) == 0
    assert (
        "dropped the index on id of user_alice.cat (now plain, 3 rows)" in capsys.readouterr().out
    )
    meta = Registry(data_dir).get("user_alice", "cat").meta
    assert not meta.column("id").indexed
    assert unique_columns(data_dir / "user_alice" / "cat") == ()
    assert store.load(ALICE, NAME, _rows([3])).total_rows == 4
    # It can be made again (not unique now: 3 repeats).
    _index(store, "id", unique=False)
    assert Registry(data_dir).get("user_alice", "cat").meta.column("id").indexed
    audit = [json.loads(x) for x in audit_log_file(data_dir).read_text().splitlines()]
    (line,) = [x for x in audit if x["endpoint"] == "workspace.drop_index"]
    assert line["user"].startswith("operator:") and line["query"] == f"{NAME} (id)"
    assert line["outcome"] == "ok"


def test_dropping_the_sky_index_writes_the_table_back_as_plain_parquet(
    store: WorkspaceStore, data_dir: Path
) -> None:
    store.create_table(ALICE, NAME, DEFINITION)
    store.load(ALICE, NAME, _rows([1, 2, 3, 4]))
    _index(store, "name")  # unique, kept through both changes
    _index(store, "ra", unique=False)
    store.load(ALICE, NAME, _rows([5, 6]))  # appended rows of the HATS table
    stored = Registry(data_dir).get("user_alice", "cat")
    assert stored.meta.kind == "hats" and stored.deltas is not None

    # The new plain version replaces the HATS one: the quota counts the rows once.
    store.set_quota("alice", Quota(max_rows=6))
    meta = store.drop_index(NAME, "ra", operator="op")
    store.set_quota("alice", Quota())

    stored = Registry(data_dir).get("user_alice", "cat")
    assert (meta.kind, stored.meta.kind, stored.meta.nrows) == ("plain", "plain", 6)
    assert [c.name for c in stored.meta.columns] == ["id", "name", "ra", "dec"]
    assert not stored.meta.column("ra").indexed and stored.meta.column("name").indexed
    assert stored.meta.ra_column is None and stored.partitions is None
    assert _ids(store) == [1, 2, 3, 4, 5, 6]
    assert "the value 'n5' would occur" in _refused(store, _rows([50], names=["n5"]))
    assert store.load(ALICE, NAME, _rows([7])).total_rows == 7
    _index(store, "ra", unique=False)  # and back
    assert Registry(data_dir).get("user_alice", "cat").meta.kind == "hats"
    assert _ids(store) == [1, 2, 3, 4, 5, 6, 7]


def test_what_cannot_be_dropped_is_said(store: WorkspaceStore, data_dir: Path) -> None:
    from skyvault.errors import CatalogNotFound, UsageError

    store.create_table(ALICE, NAME, DEFINITION)
    store.load(ALICE, NAME, _rows([1]))
    with pytest.raises(WorkspaceError, match=r"column name of user_alice\.cat is not indexed"):
        store.drop_index(NAME, "name")
    with pytest.raises(UsageError, match=r"column not found: mag in table user_alice\.cat"):
        store.drop_index(NAME, "mag")
    with pytest.raises(CatalogNotFound, match=r"no table user_alice\.nothere"):
        store.drop_index("user_alice.nothere", "id")
    with pytest.raises(WorkspaceError, match="survey is not a user's workspace schema"):
        store.drop_index("survey.objects", "id")
    _index(store, "ra", unique=False)
    with pytest.raises(WorkspaceError, match="the sky index is dropped by naming ra"):
        store.drop_index(NAME, "dec")
