"""Metadata updates of user tables (youcat's ``POST /tables/NAME``): descriptions, units,
UCDs and utypes change, the rows and the files do not; a document whose columns are not the
table's is refused with every difference named; the owner and read-write members may,
readers are told they may not, anyone else meets a missing table."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pyarrow as pa
import pytest

from skyvault.catalog.registry import Registry
from skyvault.errors import AccessDenied, AuthenticationRequired, CatalogNotFound, WorkspaceError
from skyvault.service.services.vosi import table_document
from skyvault.workspace import PermissionChange, WorkspaceStore
from skyvault.workspace.columns import TableDefinition, column, parse_definition
from tests.workspace.conftest import ALICE, ANONYMOUS, BOB, CAROL, TARGETS

NAME = "user_alice.targets"


def _rows(n: int, start: int = 0) -> pa.Table:
    ids = list(range(start, start + n))
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "name": [f"t{i}" for i in ids],
            "ra": [10.0 + i / 1000 for i in ids],
            "dec": [float(i % 7) for i in ids],
        }
    )


def _updated(**changes: object) -> TableDefinition:
    """TARGETS with new descriptions, units, UCDs, utypes: a metadata update."""
    columns = (
        column("id", "long", description="the target's number", principal=True, std=True),
        column("name", "char", arraysize="16*", description="the target's name", utype="t:n"),
        column("ra", "double", unit="arcsec", ucd="pos.eq.ra", description="right ascension"),
        column("dec", "double", unit="arcsec", ucd="pos.eq.dec", description="declination"),
    )
    return TableDefinition(columns, str(changes.get("description", "targets, described")))


def _meta(data_dir: Path):  # type: ignore[no-untyped-def]
    return Registry(data_dir).get("user_alice", "targets").meta


def _data_inodes(data_dir: Path) -> set[int]:
    return {
        os.stat(p).st_ino
        for p in (data_dir / "user_alice" / "targets" / "dataset").rglob("*.parquet")
    }


def test_the_metadata_changes_and_the_rows_and_files_do_not(
    store: WorkspaceStore, data_dir: Path
) -> None:
    store.create_table(ALICE, NAME, TARGETS)
    store.load(ALICE, NAME, _rows(20))
    before = _meta(data_dir)
    inodes = _data_inodes(data_dir)
    rows = Registry(data_dir).get("user_alice", "targets").all_files

    meta = store.update_table(ALICE, NAME, _updated())

    after = _meta(data_dir)
    assert after == meta
    assert after.description == "targets, described"
    assert after.created != before.created and after.nrows == 20
    ra = after.column("ra")
    assert (ra.unit, ra.ucd, ra.description) == ("arcsec", "pos.eq.ra", "right ascension")
    ident = after.column("id")
    assert (ident.description, ident.principal, ident.std) == ("the target's number", True, True)
    assert ident.indexed  # the index is the table-update job's, not the document's
    assert after.column("name").utype == "t:n"
    assert [(c.name, c.datatype, c.arraysize) for c in after.columns] == [
        (c.name, c.datatype, c.arraysize) for c in before.columns
    ]
    # The same bytes: the data files of the new version are the old ones, linked.
    assert _data_inodes(data_dir) == inodes
    assert len(Registry(data_dir).get("user_alice", "targets").all_files) == len(rows)
    # Loads go on into the new version.
    assert store.load(ALICE, NAME, _rows(5, 100)).total_rows == 25


def test_the_document_get_tables_serves_is_a_valid_update(
    store: WorkspaceStore, data_dir: Path
) -> None:
    store.create_table(ALICE, NAME, TARGETS)
    served = table_document(_meta(data_dir)).replace("my targets", "my targets, renamed")
    store.update_table(ALICE, NAME, parse_definition("text/xml", served.encode(), computed=True))
    assert _meta(data_dir).description == "my targets, renamed"
    assert _meta(data_dir).column("name").arraysize == "16*"


def _refusal(store: WorkspaceStore, definition: TableDefinition) -> str:
    with pytest.raises(WorkspaceError) as refused:
        store.update_table(ALICE, NAME, definition)
    return str(refused.value)


def test_other_columns_or_types_are_refused_naming_every_difference(
    store: WorkspaceStore, data_dir: Path
) -> None:
    store.create_table(ALICE, NAME, TARGETS)
    store.load(ALICE, NAME, _rows(3))
    version = os.readlink(data_dir / "user_alice" / "targets")
    cols = {c.name: c for c in _updated().columns}

    def doc(*columns: object) -> TableDefinition:
        return TableDefinition(tuple(columns))  # type: ignore[arg-type]

    missing = _refusal(store, doc(cols["id"], cols["name"], cols["ra"]))
    assert "missing from the document: dec" in missing and "nothing was changed" in missing
    extra = _refusal(store, doc(*cols.values(), column("mag", "float")))
    assert "not columns of the table: mag" in extra
    renamed = _refusal(store, doc(cols["id"], cols["name"], cols["ra"], column("decl", "double")))
    assert (
        "missing from the document: dec" in renamed and "not columns of the table: decl" in renamed
    )
    retyped = _refusal(
        store,
        doc(
            column("id", "int"),
            column("name", "char", arraysize="32*"),
            column("ra", "float"),
            column("dec", "char", xtype="timestamp"),
        ),
    )
    for said in (
        "id (the table's long, the document's int)",
        "name (the table's char[16*], the document's char[32*])",
        "ra (the table's double, the document's float)",
        "dec (the table's double, the document's char[*] (xtype timestamp))",
    ):
        assert said in retyped
    assert "GET /tables/user_alice.targets" in retyped  # the hint: start from the served one
    # Nothing changed: the same version, the same metadata.
    assert os.readlink(data_dir / "user_alice" / "targets") == version
    assert _meta(data_dir).column("ra").unit == "deg"


def test_names_match_without_case_as_everywhere_in_the_workspace(
    store: WorkspaceStore, data_dir: Path
) -> None:
    store.create_table(ALICE, NAME, TARGETS)
    upper = TableDefinition(
        tuple(c.updated(name=c.name.upper()) for c in _updated().columns), "upper"
    )
    store.update_table(ALICE, NAME, upper)
    meta = _meta(data_dir)
    assert [c.name for c in meta.columns] == ["id", "name", "ra", "dec"]  # stored names kept
    assert meta.column("dec").unit == "arcsec"


def test_documents_with_rows_huge_texts_or_nothing_are_refused(
    store: WorkspaceStore, data_dir: Path
) -> None:
    store.create_table(ALICE, NAME, TARGETS)
    with_rows = TableDefinition(_updated().columns, rows=_rows(2))
    assert "does not load rows" in _refusal(store, with_rows)
    served = table_document(_meta(data_dir))
    huge = served.replace("my targets", "x" * 9000)
    with pytest.raises(WorkspaceError, match="table's description is 9,000 characters long"):
        parse_definition("text/xml", huge.encode())
    huge_ucd = served.replace("pos.eq.ra;meta.main", "pos." * 200)
    with pytest.raises(WorkspaceError, match="the ucd of column ra is 800 characters long"):
        parse_definition("text/xml", huge_ucd.encode())
    with pytest.raises(WorkspaceError, match="nothing to update"):
        store.update_table(ALICE, NAME, None)
    with pytest.raises(WorkspaceError, match="nothing to update"):
        store.update_table(ALICE, NAME, None, permissions=PermissionChange())
    assert _meta(data_dir).description == "my targets"


def test_owner_and_read_write_members_may_readers_may_not_others_see_nothing(
    store: WorkspaceStore, data_dir: Path
) -> None:
    store.create_table(ALICE, NAME, TARGETS)
    store.create_table(ALICE, "user_alice.hidden", TARGETS)

    def error(who, name: str, *args: object) -> tuple[type, str]:  # type: ignore[no-untyped-def]
        try:
            store.update_table(who, name, *args)  # type: ignore[arg-type]
        except Exception as exc:
            return type(exc), str(exc).replace("hidden", "NAME").replace("nothere", "NAME")
        raise AssertionError("no error")

    # Hidden and missing: the same answer, whatever the body (also an empty or a bad one).
    for args in ((_updated(),), (None,), (TableDefinition((column("x", "int"),)),)):
        for who in (BOB, CAROL):
            assert error(who, "user_alice.hidden", *args) == error(who, "user_alice.nothere", *args)
            assert error(who, "user_alice.hidden", *args)[0] is CatalogNotFound
    with pytest.raises(AuthenticationRequired):
        store.update_table(ANONYMOUS, NAME, _updated())

    store.set_permissions(ALICE, NAME, PermissionChange(read_groups=frozenset({"crew"})))
    with pytest.raises(AccessDenied, match=r"may read user_alice\.targets but not change its"):
        store.update_table(BOB, NAME, _updated())
    store.set_permissions(
        ALICE, NAME, PermissionChange(read_groups=frozenset(), write_groups=frozenset({"crew"}))
    )
    store.update_table(BOB, NAME, _updated(description="by bob"))
    assert _meta(data_dir).description == "by bob"
    # The grants stay the owner's, also when sent with an update (youcat's x-vosi-* headers).
    with pytest.raises(AccessDenied, match="not drop it or change its grants"):
        store.update_table(
            BOB, NAME, _updated(description="again"), permissions=PermissionChange(public=True)
        )
    assert _meta(data_dir).description == "by bob"
    store.update_table(ALICE, NAME, None, permissions=PermissionChange(public=True))
    assert store.permissions(ALICE, NAME).public


def test_every_update_is_audited(store: WorkspaceStore, data_dir: Path) -> None:
    store.create_table(ALICE, NAME, TARGETS)
    store.update_table(ALICE, NAME, _updated())
    with pytest.raises(CatalogNotFound):
        store.update_table(CAROL, NAME, _updated())
    lines = [json.loads(x) for x in (data_dir.parent / "audit.jsonl").read_text().splitlines()]
    updates = [(x["user"], x["outcome"]) for x in lines if x["endpoint"] == "workspace.update"]
    assert updates == [("alice", "ok"), ("carol", "error")]


def test_a_sky_indexed_table_keeps_its_appended_rows(store: WorkspaceStore, data_dir: Path) -> None:
    from skyvault.catalog.compact import compact
    from skyvault.catalog.ingest import ingest
    from skyvault.engine.archive import open_archive

    store.create_table(ALICE, NAME, TARGETS)
    store.load(ALICE, NAME, _rows(50))
    with store.exclusive(ALICE, NAME, "write") as table:
        files = sorted((table.version_dir / "dataset").glob("part-*.parquet"))
        ingest(files, NAME, data_dir, ra="ra", dec="dec")
    store.load(ALICE, NAME, _rows(7, 1000))
    store.load(ALICE, NAME, _rows(3, 2000))
    assert Registry(data_dir).get("user_alice", "targets").deltas is not None

    # The document served for it names _healpix_29: sent back, it is accepted.
    served = table_document(_meta(data_dir))
    assert "_healpix_29" in served
    definition = parse_definition("text/xml", served.encode(), computed=True)
    store.update_table(
        ALICE, NAME, dataclasses.replace(definition, description="sky-indexed targets")
    )

    def ids() -> list[int]:
        archive = open_archive(data_dir)
        try:
            return sorted(archive.query(f"SELECT id FROM {NAME}")["id"].to_pylist())
        finally:
            archive.close()

    expected = [*range(50), *range(1000, 1007), *range(2000, 2003)]
    stored = Registry(data_dir).get("user_alice", "targets")
    assert stored.meta.description == "sky-indexed targets"
    assert stored.meta.nrows == 60 and ids() == expected
    # Appends and compaction go on from the new version.
    store.load(ALICE, NAME, _rows(2, 3000))
    assert ids() == [*expected, 3000, 3001]
    compact(data_dir, NAME)
    assert ids() == [*expected, 3000, 3001]
    assert Registry(data_dir).get("user_alice", "targets").meta.description == (
        "sky-indexed targets"
    )


def test_updates_and_loads_of_one_table_take_turns_none_lost(
    store: WorkspaceStore, data_dir: Path
) -> None:
    import threading

    store.create_table(ALICE, NAME, TARGETS)
    errors: list[BaseException] = []

    def loads() -> None:
        try:
            for k in range(8):
                store.load(ALICE, NAME, _rows(5, 100 * k))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def updates() -> None:
        try:
            for k in range(8):
                store.update_table(ALICE, NAME, _updated(description=f"update {k}"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=f) for f in (loads, updates, loads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    meta = _meta(data_dir)
    assert meta.nrows == 80 and meta.description == "update 7"
    assert store.describe(ALICE, NAME).meta.nrows == 80
