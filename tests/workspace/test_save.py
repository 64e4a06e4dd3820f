"""Saving a result as a user table (``DEST``'s Python equivalent, and the sink a DEST job
tees its rows into): own schema only, create/append/replace, the result's metadata kept,
quota refusals that store nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skyvault.auth.access import grant_access
from skyvault.auth.identity import Identity
from skyvault.auth.storage import AuthStorage
from skyvault.catalog.ingest import ingest
from skyvault.catalog.registry import Registry
from skyvault.engine.archive import Archive, open_archive
from skyvault.errors import AdqlSemanticError, QuotaExceeded, TableExists, WorkspaceError
from skyvault.workspace import Quota, WorkspaceStore
from skyvault.workspace.save import SaveRequest, open_result_table, save_request, save_table

ALICE = Identity("alice")
BOB = Identity("bob")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Path, WorkspaceStore, Archive]]:
    data = tmp_path / "data"
    data.mkdir()
    n = 1_000
    fields = [
        pa.field("id", pa.int64()),
        pa.field("ra", pa.float64(), metadata={"unit": "deg", "ucd": "pos.eq.ra;meta.main"}),
        pa.field("dec", pa.float64(), metadata={"unit": "deg", "ucd": "pos.eq.dec;meta.main"}),
        pa.field("g", pa.float32(), metadata={"unit": "mag", "description": "g magnitude"}),
    ]
    rng = np.random.default_rng(4)
    rows = pa.table(
        [
            pa.array(np.arange(n)),
            pa.array(rng.uniform(0, 10, n)),
            pa.array(rng.uniform(-5, 5, n)),
            pa.array(rng.uniform(10, 20, n).astype(np.float32)),
        ],
        schema=pa.schema(fields),
    )
    pq.write_table(rows, tmp_path / "o.parquet")
    ingest([tmp_path / "o.parquet"], "survey.objects", data, ra="ra", dec="dec")
    auth = AuthStorage.for_data_dir(data)
    store = WorkspaceStore(data, auth)
    archive = open_archive(data)
    yield data, store, archive
    archive.close()
    auth.close()


BRIGHT = "SELECT id, ra, dec, g FROM survey.objects WHERE g < 12 ORDER BY id"


def test_a_result_saved_keeps_its_rows_and_metadata(
    world: tuple[Path, WorkspaceStore, Archive],
) -> None:
    data, store, archive = world
    result = archive.query(BRIGHT)
    meta = save_table(store, ALICE, "user_alice.bright", result)
    assert meta.schema == "user_alice" and meta.nrows == result.num_rows > 50
    assert meta.column("g").unit == "mag" and meta.column("g").description == "g magnitude"
    assert meta.column("ra").ucd == "pos.eq.ra;meta.main"
    stored = Registry(data).get("user_alice", "bright")
    back = archive.query("SELECT id, g FROM user_alice.bright ORDER BY id")
    assert back["id"].to_pylist() == result["id"].to_pylist()
    assert back["g"].to_pylist() == result["g"].to_pylist()
    assert stored.meta.column("g").datatype == "float"


def test_an_existing_table_needs_a_mode(world: tuple[Path, WorkspaceStore, Archive]) -> None:
    _, store, archive = world
    result = archive.query(BRIGHT)
    save_table(store, ALICE, "user_alice.bright", result)
    with pytest.raises(TableExists, match=r"DEST_MODE=append .* DEST_MODE=replace"):
        save_table(store, ALICE, "user_alice.bright", result)
    appended = save_table(store, ALICE, "user_alice.BRIGHT", result, "append")
    assert appended.nrows == 2 * result.num_rows
    fewer = archive.query("SELECT TOP 3 id AS oid, g FROM survey.objects ORDER BY id")
    replaced = save_table(store, ALICE, "user_alice.bright", fewer, "replace")
    assert replaced.nrows == 3 and replaced.column_names == ["oid", "g"]
    assert archive.query("SELECT COUNT(*) AS n FROM user_alice.bright")["n"].to_pylist() == [3]


def test_only_into_ones_own_schema(world: tuple[Path, WorkspaceStore, Archive]) -> None:
    _, store, archive = world
    result = archive.query(BRIGHT)
    save_table(store, ALICE, "user_alice.bright", result)
    with pytest.raises(WorkspaceError, match="only in your own schema, user_bob"):
        save_table(store, BOB, "user_alice.bright", result, "append")
    with pytest.raises(WorkspaceError, match="only in your own schema"):
        save_table(store, ALICE, "survey.mine", result)
    with pytest.raises(WorkspaceError, match="schema of the service"):
        save_table(store, ALICE, "TAP_SCHEMA.mine", result)


def test_a_column_name_that_cannot_be_stored_says_to_alias_it(
    world: tuple[Path, WorkspaceStore, Archive],
) -> None:
    _, store, archive = world
    result = archive.query('SELECT id AS "my id" FROM survey.objects WHERE id < 3')
    with pytest.raises(WorkspaceError, match=r"'my id' is not a plain identifier.*AS"):
        save_table(store, ALICE, "user_alice.spaced", result)
    assert not (store.data_dir / "user_alice" / "spaced").exists()


def test_over_quota_stores_nothing(world: tuple[Path, WorkspaceStore, Archive]) -> None:
    data, store, archive = world
    store.set_quota("alice", Quota(max_rows=100))
    result = archive.query("SELECT id, g FROM survey.objects")
    with pytest.raises(QuotaExceeded, match=r"rows: 0 stored, this would make 1,000.*100"):
        save_table(store, ALICE, "user_alice.all", result)
    assert not (data / "user_alice" / "all").exists()
    # The streaming sink refuses as soon as the rows pass the quota, and leaves no file.
    sink = open_result_table(store, ALICE, SaveRequest("user_alice.all"))
    batches = result.to_batches(max_chunksize=64)
    for batch in batches[:1]:
        sink.write(batch)
    with pytest.raises(QuotaExceeded, match=r"saving the result as user_alice\.all refused"):
        sink.write(batches[1])
    sink.close()
    assert not list((data / "user_alice" / ".skyvault" / "staging").iterdir())
    assert not (data / "user_alice" / "all").exists()


def test_dest_parameters() -> None:
    assert save_request({"QUERY": ["x"]}) is None
    assert save_request({"DEST": ["user_a.t"]}) == SaveRequest("user_a.t", "create")
    assert save_request({"DEST": ["user_a.t"], "DEST_MODE": ["APPEND"]}) == SaveRequest(
        "user_a.t", "append"
    )
    with pytest.raises(WorkspaceError, match="DEST_MODE='merge' is not one of"):
        save_request({"DEST": ["user_a.t"], "DEST_MODE": ["merge"]})
    with pytest.raises(WorkspaceError, match="without DEST"):
        save_request({"DEST_MODE": ["append"]})


def test_the_archive_saves_a_query_as_a_users_table(
    world: tuple[Path, WorkspaceStore, Archive],
) -> None:
    _, store, archive = world
    with pytest.raises(AdqlSemanticError, match='no schema "survey"'):  # not granted to alice
        archive.save(BRIGHT, "user_alice.bright", user="alice")
    grant_access(store.auth, "survey", None)
    meta = archive.save(BRIGHT, "user_alice.bright", user="alice")
    assert meta.nrows == archive.query(BRIGHT).num_rows
    assert meta.column("g").description == "g magnitude" and meta.column("ra").unit == "deg"
    again = archive.save(BRIGHT, "user_alice.bright", user="alice", mode="append")
    assert again.nrows == 2 * meta.nrows
    assert archive.query(BRIGHT).schema.metadata == {b"overflow": b"false"}


def test_staging_left_by_a_dead_process_is_swept(
    world: tuple[Path, WorkspaceStore, Archive],
) -> None:
    data, store, _ = world
    root = data / "user_alice" / ".skyvault" / "staging"
    live = open_result_table(store, ALICE, SaveRequest("user_alice.a"))
    dead = root / "0123abcd"
    dead.mkdir(parents=True)
    (dead / "result.arrow").write_bytes(b"left by a killed job")
    other = open_result_table(store, ALICE, SaveRequest("user_alice.b"))
    assert not dead.exists()
    assert len(list(root.iterdir())) == 2  # the two live sinks keep theirs
    for sink in (live, other):
        sink.close()
    assert not list(root.iterdir())
