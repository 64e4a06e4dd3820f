"""The workspace store: schemas on first use, atomic serialised loads, grants, quotas,
hidden = missing, audit."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skyvault.auth import AuthStorage
from skyvault.catalog.registry import Registry
from skyvault.errors import (
    AccessDenied,
    AuthenticationRequired,
    CatalogNotFound,
    QuotaExceeded,
    TableExists,
    WorkspaceError,
)
from skyvault.workspace import PermissionChange, Quota, WorkspaceStore
from skyvault.workspace.columns import TableDefinition, column
from tests.workspace.conftest import ALICE, ANONYMOUS, BOB, CAROL, TARGETS


def _rows(n: int, start: int = 0) -> pa.Table:
    ids = list(range(start, start + n))
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "name": [f"t{i}" for i in ids],
            "ra": [float(i % 360) for i in ids],
            "dec": [0.0] * n,
        }
    )


def _stored(data_dir: Path, name: str = "user_alice/targets") -> pa.Table:
    return pq.read_table(str(data_dir / name / "dataset"))


def test_a_table_is_created_in_the_users_own_schema_and_is_a_registry_table(
    store: WorkspaceStore, data_dir: Path
) -> None:
    assert store.schema_of(ALICE) is None
    meta = store.create_table(ALICE, "user_alice.targets", TARGETS)
    assert store.schema_of(ALICE) == "user_alice"
    assert (meta.qualified_name, meta.nrows, meta.kind) == ("user_alice.targets", 0, "plain")
    stored = Registry(data_dir).get("user_alice", "targets").meta
    assert [c.name for c in stored.columns] == ["id", "name", "ra", "dec"]
    assert stored.column("ra").unit == "deg" and stored.column("name").arraysize == "16*"
    assert stored.description == "my targets"
    # The link points at an immutable version, as for archive tables.
    assert (data_dir / "user_alice" / "targets").is_symlink()


def test_loads_append_and_columns_match_by_name(store: WorkspaceStore, data_dir: Path) -> None:
    store.create_table(ALICE, "user_alice.targets", TARGETS)
    first = store.load(ALICE, "user_alice.targets", _rows(3))
    assert (first.rows, first.total_rows) == (3, 3)
    assert first.message() == "Inserted 3 rows to table user_alice.targets"
    # Another column order, a column left out (NULL), another case: still matched.
    second = pa.table({"DEC": [1.5], "id": pa.array([99], pa.int64())})
    assert store.load(ALICE, "user_alice.targets", second).total_rows == 4
    got = _stored(data_dir).sort_by("id").to_pydict()
    assert got["id"] == [0, 1, 2, 99]
    assert got["dec"][-1] == 1.5 and got["name"][-1] is None
    assert store.describe(ALICE, "user_alice.targets").meta.nrows == 4


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (pa.table({"id": [1], "magnitude": [2.0]}), "column 'magnitude' that the table does not"),
        (pa.table({"id": [1.5]}), "column id: the values do not fit the column's type, long"),
        (pa.table({"ra": ["north"]}), "column ra: the values do not fit"),
    ],
)
def test_data_that_does_not_fit_is_refused_and_nothing_is_stored(
    store: WorkspaceStore, data_dir: Path, data: pa.Table, says: str
) -> None:
    store.create_table(ALICE, "user_alice.targets", TARGETS)
    store.load(ALICE, "user_alice.targets", _rows(2))
    version = (data_dir / "user_alice" / "targets").resolve()
    with pytest.raises(WorkspaceError, match=says):
        store.load(ALICE, "user_alice.targets", data)
    assert (data_dir / "user_alice" / "targets").resolve() == version
    assert _stored(data_dir).num_rows == 2


def test_a_load_that_fails_halfway_leaves_the_table_as_it_was(
    store: WorkspaceStore, data_dir: Path
) -> None:
    store.create_table(ALICE, "user_alice.targets", TARGETS)
    store.load(ALICE, "user_alice.targets", _rows(5))

    def batches() -> Iterator[pa.RecordBatch]:
        yield from _rows(1000, 100).to_batches()
        raise OSError("the client went away")

    with pytest.raises(OSError, match="went away"):
        store.load(ALICE, "user_alice.targets", batches())
    assert _stored(data_dir).num_rows == 5
    assert store.describe(ALICE, "user_alice.targets").meta.nrows == 5
    # No build directory is left behind.
    assert not list((data_dir / "user_alice" / ".skyvault" / "tmp").iterdir())


def test_concurrent_loads_of_one_table_are_serialised_none_lost(
    store: WorkspaceStore, data_dir: Path
) -> None:
    store.create_table(ALICE, "user_alice.targets", TARGETS)
    errors: list[BaseException] = []

    def load(k: int) -> None:
        try:
            store.load(ALICE, "user_alice.targets", _rows(500, k * 1000))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=load, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    table = _stored(data_dir)
    assert table.num_rows == 3000
    assert sorted(table.column("id").to_pylist()) == sorted(
        i for k in range(6) for i in range(k * 1000, k * 1000 + 500)
    )
    assert store.describe(ALICE, "user_alice.targets").meta.nrows == 3000


def test_tables_go_only_in_ones_own_schema(store: WorkspaceStore, data_dir: Path) -> None:
    for name in ("user_bob.t", "pub.t", "user_alice_2.t"):
        with pytest.raises(WorkspaceError, match="only in your own schema, user_alice"):
            store.create_table(ALICE, name, TARGETS)
    # The schema is matched without case; the table is stored in the recorded schema.
    assert store.create_table(ALICE, "USER_ALICE.t", TARGETS).schema == "user_alice"
    with pytest.raises(TableExists, match=r"user_alice\.t exists already"):
        store.create_table(ALICE, "user_alice.T", TARGETS)


def test_anonymous_callers_are_refused_everything(store: WorkspaceStore) -> None:
    store.create_table(ALICE, "user_alice.targets", TARGETS)
    store.set_permissions(ALICE, "user_alice.targets", PermissionChange(public=True))
    calls = [
        lambda: store.create_table(ANONYMOUS, "user_alice.x", TARGETS),
        lambda: store.load(ANONYMOUS, "user_alice.targets", _rows(1)),
        lambda: store.drop(ANONYMOUS, "user_alice.targets"),
        lambda: store.permissions(ANONYMOUS, "user_alice.targets"),
    ]
    for call in calls:
        with pytest.raises(AuthenticationRequired, match="need an identity"):
            call()


def _error(call: object) -> tuple[type, str]:
    try:
        call()  # type: ignore[operator]
    except Exception as exc:
        return type(exc), str(exc).replace("secret_t", "NAME").replace("nothing_t", "NAME")
    raise AssertionError("no error")


def test_a_hidden_table_reads_exactly_like_a_missing_one(store: WorkspaceStore) -> None:
    store.create_table(ALICE, "user_alice.secret_t", TARGETS)
    for name in ("user_alice.secret_t", "user_alice.nothing_t"):
        assert _error(lambda n=name: store.describe(BOB, n)) == (
            CatalogNotFound,
            "no table user_alice.NAME (see /tables for the published tables)",
        )
    for op in (
        lambda n: store.load(BOB, n, _rows(1)),
        lambda n: store.drop(BOB, n),
        lambda n: store.permissions(BOB, n),
        lambda n: store.set_permissions(BOB, n, PermissionChange(public=True)),
    ):
        assert _error(lambda op=op: op("user_alice.secret_t")) == _error(
            lambda op=op: op("user_alice.nothing_t")
        )
    assert store.list_tables(BOB) == []


def test_read_and_read_write_groups(store: WorkspaceStore, auth: AuthStorage) -> None:
    store.create_table(ALICE, "user_alice.targets", TARGETS)
    perms = store.set_permissions(
        ALICE, "user_alice.targets", PermissionChange(read_groups=frozenset({"crew"}))
    )
    assert (perms.owner, perms.public, perms.read_groups) == ("alice", False, {"crew"})
    assert store.describe(BOB, "user_alice.targets").access == "read"
    assert [t.meta.qualified_name for t in store.list_tables(BOB)] == ["user_alice.targets"]
    with pytest.raises(AccessDenied, match=r"may read user_alice\.targets but not load"):
        store.load(BOB, "user_alice.targets", _rows(1))
    with pytest.raises(AccessDenied, match="not drop it"):
        store.drop(BOB, "user_alice.targets")
    # Read-write: bob loads, but still may not drop or change the grants.
    store.set_permissions(
        ALICE,
        "user_alice.targets",
        PermissionChange(read_groups=frozenset(), write_groups=frozenset({"crew"})),
    )
    assert store.load(BOB, "user_alice.targets", _rows(2)).total_rows == 2
    with pytest.raises(AccessDenied):
        store.set_permissions(BOB, "user_alice.targets", PermissionChange(public=True))
    with pytest.raises(AccessDenied):
        store.drop(BOB, "user_alice.targets")
    # Back to read only: the write grant is lowered, not left behind.
    store.set_permissions(
        ALICE,
        "user_alice.targets",
        PermissionChange(read_groups=frozenset({"crew"}), write_groups=frozenset()),
    )
    assert [g.level for g in auth.list_grants()] == ["read"]
    with pytest.raises(WorkspaceError, match="no group 'nosuch'"):
        store.set_permissions(
            ALICE, "user_alice.targets", PermissionChange(read_groups=frozenset({"nosuch"}))
        )
    # carol, in no group, sees nothing.
    with pytest.raises(CatalogNotFound):
        store.describe(CAROL, "user_alice.targets")


def test_dropping_removes_the_table_and_its_grants(
    store: WorkspaceStore, data_dir: Path, auth: AuthStorage
) -> None:
    store.create_table(ALICE, "user_alice.targets", TARGETS)
    store.load(ALICE, "user_alice.targets", _rows(3))
    store.set_permissions(ALICE, "user_alice.targets", PermissionChange(True, frozenset({"crew"})))
    store.drop(ALICE, "user_alice.targets")
    assert not (data_dir / "user_alice" / "targets").exists()
    assert not (data_dir / "user_alice" / ".skyvault" / "versions" / "targets").exists()
    assert auth.list_grants() == []
    # A new table of that name starts private and empty.
    store.create_table(ALICE, "user_alice.targets", TARGETS)
    with pytest.raises(CatalogNotFound):
        store.describe(BOB, "user_alice.targets")
    assert store.describe(ALICE, "user_alice.targets").meta.nrows == 0


def test_quota_on_rows_refuses_the_load_states_usage_and_limit_and_stores_nothing(
    store: WorkspaceStore, data_dir: Path
) -> None:
    store.create_table(ALICE, "user_alice.targets", TARGETS)
    store.set_quota("alice", Quota(max_rows=1000))
    store.load(ALICE, "user_alice.targets", _rows(900))
    with pytest.raises(QuotaExceeded) as caught:
        store.load(ALICE, "user_alice.targets", _rows(200, 5000))
    message = str(caught.value)
    assert "900 stored" in message and "1,100" in message and "limit is 1,000" in message
    assert "nothing was stored" in message and caught.value.http_status == 413
    assert _stored(data_dir).num_rows == 900
    # Rows within the quota still load.
    assert store.load(ALICE, "user_alice.targets", _rows(100, 5000)).total_rows == 1000


def test_quota_on_bytes_and_tables(store: WorkspaceStore, data_dir: Path) -> None:
    store.set_quota("alice", Quota(max_tables=1, max_bytes=20_000))
    store.create_table(ALICE, "user_alice.a", TARGETS)
    with pytest.raises(QuotaExceeded, match=r"tables: 1 in your schema; the limit is 1"):
        store.create_table(ALICE, "user_alice.b", TARGETS)
    assert not (data_dir / "user_alice" / "b").exists()
    with pytest.raises(QuotaExceeded, match=r"storage: .* the limit is 19\.5 KiB"):
        store.load(ALICE, "user_alice.a", _rows(20_000))
    assert store.describe(ALICE, "user_alice.a").meta.nrows == 0
    usage = store.usage("alice")
    assert usage.tables == 1 and usage.rows == 0 and 0 < usage.bytes < 20_000
    # Defaults apply where no override is set; removing the overrides restores them.
    store.set_quota("alice", Quota())
    assert store.quota("alice") == store.settings.default_quota()


def test_schemas_are_claimed_once_and_never_shared(
    store: WorkspaceStore, data_dir: Path, auth: AuthStorage
) -> None:
    from skyvault.auth import Identity

    (data_dir / "user_dave").mkdir()  # an archive schema that happens to look like one
    assert store.schema_of(Identity("dave"), create=True) == "user_dave_2"
    assert store.schema_of(Identity("Erin"), create=True) == "user_erin"
    assert store.schema_of(Identity("erin"), create=True) == "user_erin_2"
    assert store.schema_of(Identity("Erin"), create=True) == "user_erin"
    assert store.owner_of("user_erin_2") == "erin"


def test_every_change_is_audited(store: WorkspaceStore, data_dir: Path) -> None:
    store.create_table(ALICE, "user_alice.targets", TARGETS)
    store.load(ALICE, "user_alice.targets", _rows(3))
    with pytest.raises(WorkspaceError):
        store.load(ALICE, "user_alice.targets", pa.table({"nope": [1]}))
    store.set_permissions(ALICE, "user_alice.targets", PermissionChange(public=True))
    store.drop(ALICE, "user_alice.targets")
    lines = [json.loads(x) for x in (data_dir.parent / "audit.jsonl").read_text().splitlines()]
    assert [(x["endpoint"], x["user"], x["outcome"], x["rows"]) for x in lines] == [
        ("workspace.create", "alice", "ok", 0),
        ("workspace.load", "alice", "ok", 3),
        ("workspace.load", "alice", "error", None),
        ("workspace.permissions", "alice", "ok", None),
        ("workspace.drop", "alice", "ok", None),
    ]
    assert {x["query"] for x in lines} == {"user_alice.targets"}


def test_a_votable_definition_with_rows_creates_a_loaded_table(store: WorkspaceStore) -> None:
    rows = pa.table({"x": pa.array([1, 2, 3], pa.int32())})
    meta = store.create_table(
        ALICE, "user_alice.small", TableDefinition((column("x", "int"),), rows=rows)
    )
    assert meta.nrows == 3


def test_a_query_result_is_saved_with_its_metadata_in_one_step(store: WorkspaceStore) -> None:
    from skyvault.catalog.metadata import ColumnMeta
    from skyvault.workspace import definition_from_arrow

    result = pa.table(
        {
            "source_id": pa.array([1, 2], pa.int64()),
            "g_mag": pa.array([12.5, 13.0], pa.float32()),
            "seen": pa.array([0, 1], pa.timestamp("ms")),
            "flux": pa.array([[1.0, 2.0], [3.0]], pa.list_(pa.float64())),
        }
    )
    described = [ColumnMeta("g_mag", "float", unit="mag", ucd="phot.mag;em.opt.V")]
    definition = definition_from_arrow(
        result.schema, described, description="bright", rows=result.to_reader()
    )
    meta = store.create_table(ALICE, "user_alice.saved", definition)
    assert meta.nrows == 2 and meta.description == "bright"
    assert (meta.column("g_mag").unit, meta.column("g_mag").ucd) == ("mag", "phot.mag;em.opt.V")
    assert meta.column("seen").xtype == "timestamp"
    assert meta.column("flux").arraysize == "*"
    with pytest.raises(WorkspaceError, match="column blob holds binary values"):
        definition_from_arrow(pa.schema([("blob", pa.binary())]))
    with pytest.raises(WorkspaceError, match="'COUNT\\(\\*\\)' is not a plain identifier"):
        definition_from_arrow(pa.schema([("COUNT(*)", pa.int64())]))


def test_a_create_with_grants_to_an_unknown_group_stores_nothing(
    store: WorkspaceStore, data_dir: Path
) -> None:
    change = PermissionChange(read_groups=frozenset({"nosuch"}))
    with pytest.raises(WorkspaceError, match="no group 'nosuch'"):
        store.create_table(ALICE, "user_alice.t", TARGETS, permissions=change)
    assert not (data_dir / "user_alice" / "t").exists()
    made = store.create_table(
        ALICE, "user_alice.t", TARGETS, permissions=PermissionChange(public=True)
    )
    assert store.describe(BOB, str(made.qualified_name)).permissions.public


def test_a_sky_indexed_table_takes_loads_as_appends(
    store: WorkspaceStore, data_dir: Path, tmp_path: Path
) -> None:
    from skyvault.catalog.ingest import ingest

    store.create_table(ALICE, "user_alice.targets", TARGETS)
    store.load(ALICE, "user_alice.targets", _rows(50))
    # What the index job does: the table rewritten as HATS on its position, in its turn.
    with store.exclusive(ALICE, "user_alice.targets", "write") as table:
        files = sorted((table.version_dir / "dataset").glob("part-*.parquet"))
        ingest(files, "user_alice.targets", data_dir, ra="ra", dec="dec")
    assert store.describe(ALICE, "user_alice.targets").meta.kind == "hats"
    result = store.load(ALICE, "user_alice.targets", _rows(7, 1000))
    assert (result.rows, result.total_rows) == (7, 57)
    assert result.bytes > 0
    stored = Registry(data_dir).get("user_alice", "targets")
    assert stored.meta.nrows == 57 and stored.deltas is not None
    assert store.usage("alice").rows == 57
    with pytest.raises(WorkspaceError, match="column 'mag'"):
        store.load(ALICE, "user_alice.targets", pa.table({"mag": [1.0]}))
    store.set_quota("alice", Quota(max_rows=60))
    with pytest.raises(QuotaExceeded, match="57 stored, this would make 67"):
        store.load(ALICE, "user_alice.targets", _rows(10, 2000))
    assert store.describe(ALICE, "user_alice.targets").meta.nrows == 57


def test_many_small_loads_are_folded_into_few_files(
    store: WorkspaceStore, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from skyvault.workspace import store as module

    monkeypatch.setattr(module, "MAX_FILES", 4)
    store.create_table(ALICE, "user_alice.targets", TARGETS)
    for k in range(12):
        store.load(ALICE, "user_alice.targets", _rows(10, k * 100))
        files = list((data_dir / "user_alice" / "targets" / "dataset").glob("part-*.parquet"))
        assert len(files) <= 5
    table = _stored(data_dir)
    assert sorted(table.column("id").to_pylist()) == [
        k * 100 + i for k in range(12) for i in range(10)
    ]
    assert store.describe(ALICE, "user_alice.targets").meta.nrows == 120
    assert store.usage("alice").rows == 120
    # The quota counts the rows once, folded or not.
    store.set_quota("alice", Quota(max_rows=125))
    with pytest.raises(QuotaExceeded, match="120 stored, this would make 130"):
        store.load(ALICE, "user_alice.targets", _rows(10, 5000))
    assert store.load(ALICE, "user_alice.targets", _rows(5, 5000)).total_rows == 125
