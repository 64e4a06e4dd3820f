"""Loading files: CSV, TSV, FITS, VOTable and Parquet bodies, and the 400 for each kind of
body that does not fit (nothing stored, no server path in the message)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy.io import fits
from astropy.table import Table

from skyvault.errors import WorkspaceError
from skyvault.workspace import WorkspaceStore
from skyvault.workspace.columns import TableDefinition, column
from tests.workspace.conftest import ALICE, TARGETS

NAME = "user_alice.targets"


@pytest.fixture
def table(store: WorkspaceStore) -> WorkspaceStore:
    store.create_table(ALICE, NAME, TARGETS)
    return store


def _file(tmp_path: Path, data: bytes | str, name: str = "body") -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def _rows(store: WorkspaceStore) -> int:
    return store.describe(ALICE, NAME).meta.nrows


def test_csv_and_tsv_load_with_the_first_line_naming_the_columns(
    table: WorkspaceStore, tmp_path: Path
) -> None:
    csv = _file(tmp_path, 'name,id,ra\n"a, b",1,10.5\nc,2,\n')
    assert table.load_file(ALICE, NAME, csv, "text/csv").rows == 2
    tsv = _file(tmp_path, "id\tdec\n3\t-1.5\n", "tsv")
    assert table.load_file(ALICE, NAME, tsv, "text/tab-separated-values; charset=utf-8").rows == 1
    got = pq.read_table(str(table.data_dir / "user_alice" / "targets" / "dataset"))
    rows = sorted(zip(*got.to_pydict().values(), strict=True), key=lambda r: r[0])
    assert rows == [(1, "a, b", 10.5, None), (2, "c", None, None), (3, None, None, -1.5)]


def test_fits_votable_and_parquet_bodies(table: WorkspaceStore, tmp_path: Path) -> None:
    t = Table({"ID": np.array([7, 8], dtype=np.int64), "RA": [1.0, 2.0], "Dec": [3.0, 4.0]})
    t.write(tmp_path / "t.fits")
    assert table.load_file(ALICE, NAME, tmp_path / "t.fits", "application/fits").rows == 2
    t.write(tmp_path / "t.xml", format="votable")
    assert table.load_file(ALICE, NAME, tmp_path / "t.xml", "application/x-votable+xml").rows == 2
    pq.write_table(pa.table({"id": pa.array([9], pa.int64())}), tmp_path / "t.parquet")
    loaded = table.load_file(ALICE, NAME, tmp_path / "t.parquet", "application/vnd.apache.parquet")
    assert loaded.total_rows == 5


@pytest.mark.parametrize(
    ("body", "content_type", "says"),
    [
        ("id,mag\n1,2\n", "text/csv", "the CSV has a column 'mag' that the table does not have"),
        ("id,ra\n1,2\n2,north\n", "text/csv", "row 2, column 'ra'"),
        ("id\n1.5\n", "text/csv", "column 'id'"),
        ("", "text/csv", "the body is empty"),
        ("id,id\n1,2\n", "text/csv", "several columns for the table's column 'id'"),
        ("id\n1\n", "application/json", "cannot load data of type 'application/json'"),
        ("id\n1\n", "", "cannot load data of type '\\(none\\)'"),
        ("SIMPLE  = nonsense", "application/fits", "not a readable FITS file"),
        ("plain text", "application/fits", "the body is not a FITS file"),
        ("<VOTABLE><RESOURCE>", "application/x-votable+xml", "not a readable VOTable"),
        ("PAR1garbage", "application/vnd.apache.parquet", "Parquet"),
    ],
)
def test_bodies_that_do_not_fit_are_400s_and_store_nothing(
    table: WorkspaceStore, tmp_path: Path, body: str, content_type: str, says: str
) -> None:
    path = _file(tmp_path, body)
    with pytest.raises(WorkspaceError, match=says) as caught:
        table.load_file(ALICE, NAME, path, content_type)
    assert caught.value.http_status == 400
    assert str(tmp_path) not in str(caught.value)
    assert _rows(table) == 0


def test_a_fits_file_that_is_not_a_table_is_refused(table: WorkspaceStore, tmp_path: Path) -> None:
    fits.PrimaryHDU(np.zeros((4, 4), dtype=np.float32)).writeto(tmp_path / "image.fits")
    with pytest.raises(WorkspaceError, match=r"holds no table \(its HDUs: PrimaryHDU\)"):
        table.load_file(ALICE, NAME, tmp_path / "image.fits", "application/fits")


def test_array_columns_load_from_fits_but_not_from_csv(
    store: WorkspaceStore, tmp_path: Path
) -> None:
    store.create_table(
        ALICE, "user_alice.spec", TableDefinition((column("flux", "float", arraysize="3"),))
    )
    with pytest.raises(WorkspaceError, match="holds arrays, which CSV cannot carry"):
        store.load_file(ALICE, "user_alice.spec", _file(tmp_path, "flux\n1\n"), "text/csv")
    Table({"flux": np.ones((2, 3), dtype=np.float32)}).write(tmp_path / "s.fits")
    assert (
        store.load_file(ALICE, "user_alice.spec", tmp_path / "s.fits", "application/fits").rows == 2
    )


def test_a_votable_declaring_entities_is_refused(table: WorkspaceStore, tmp_path: Path) -> None:
    bomb = '<?xml version="1.0"?><!DOCTYPE v [<!ENTITY a "aaaaaaaa">]><VOTABLE/>'
    with pytest.raises(WorkspaceError, match="DOCTYPE or XML entities"):
        table.load_file(ALICE, NAME, _file(tmp_path, bomb), "application/x-votable+xml")


def test_csv_read_in_pieces_keeps_every_row_and_locates_a_bad_value(
    table: WorkspaceStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from skyvault.workspace import readers

    monkeypatch.setattr(readers, "CSV_CHUNK_BYTES", 100)  # many pieces, cut mid-line
    lines = [f'{i},"name, {i}",{i / 7!r}\n' for i in range(500)]
    csv = _file(tmp_path, "id,name,ra\n" + "".join(lines))
    assert table.load_file(ALICE, NAME, csv, "text/csv").rows == 500
    got = pq.read_table(str(table.data_dir / "user_alice" / "targets" / "dataset"))
    assert got.column("id").to_pylist() == list(range(500))
    assert got.column("name").to_pylist() == [f"name, {i}" for i in range(500)]
    assert got.column("ra").to_pylist() == [i / 7 for i in range(500)]
    lines[449] = "449,x,north\n"
    bad = _file(tmp_path, "id,name,ra\n" + "".join(lines), "bad")
    with pytest.raises(WorkspaceError, match="row 450, column 'ra'"):
        table.load_file(ALICE, NAME, bad, "text/csv")
    assert _rows(table) == 500


BOOLEAN_SPELLINGS = [
    ("true", True), ("false", False), ("True", True), ("False", False), ("TRUE", True),
    ("FALSE", False), ("tRuE", True), ("fAlSe", False), ("T", True), ("F", False),
    ("t", True), ("f", False), ("1", True), ("0", False), ("", None),
]  # fmt: skip


@pytest.mark.parametrize("fmt", ["text/csv", "text/tab-separated-values"])
def test_booleans_load_in_every_clients_spelling(
    store: WorkspaceStore, tmp_path: Path, fmt: str
) -> None:
    """``true``/``false`` (TOPCAT, STILTS, skyvault), ``True``/``False`` (astropy, pandas),
    ``T``/``F`` (VOTable), ``1``/``0``, in any case; the empty cell is NULL."""
    store.create_table(
        ALICE, "user_alice.flags", TableDefinition((column("id", "long"), column("ok", "boolean")))
    )
    sep = "\t" if "tab" in fmt else ","
    lines = [f"{i}{sep}{text}\n" for i, (text, _) in enumerate(BOOLEAN_SPELLINGS)]
    body = _file(tmp_path, f"id{sep}ok\n" + "".join(lines))
    assert store.load_file(ALICE, "user_alice.flags", body, fmt).rows == len(BOOLEAN_SPELLINGS)
    got = pq.read_table(str(store.data_dir / "user_alice" / "flags" / "dataset")).sort_by("id")
    assert got.column("ok").to_pylist() == [value for _, value in BOOLEAN_SPELLINGS]


@pytest.mark.parametrize("cell", ["yes", "2", "truth", "-1", " true"])
def test_a_boolean_spelling_not_known_is_a_400_naming_row_and_column(
    store: WorkspaceStore, tmp_path: Path, cell: str
) -> None:
    store.create_table(
        ALICE, "user_alice.flags", TableDefinition((column("id", "long"), column("ok", "boolean")))
    )
    body = _file(tmp_path, f"id,ok\n1,T\n2,false\n3,{cell}\n4,1\n")
    with pytest.raises(WorkspaceError, match="row 3, column 'ok'") as caught:
        store.load_file(ALICE, "user_alice.flags", body, "text/csv")
    assert caught.value.http_status == 400
    assert (
        caught.value.hint is not None
        and "true, false, t, f (any case), 1 or 0" in caught.value.hint
    )
    assert str(tmp_path) not in str(caught.value)
    assert _rows_of(store, "user_alice.flags") == 0


def _rows_of(store: WorkspaceStore, name: str) -> int:
    return store.describe(ALICE, name).meta.nrows


def test_booleans_survive_a_round_trip_through_skyvaults_csv(
    store: WorkspaceStore, tmp_path: Path
) -> None:
    """A query result written as CSV by skyvault loads back into a user table unchanged."""
    from skyvault.catalog.metadata import ColumnMeta
    from skyvault.formats.tabular import write_csv

    rows = pa.table(
        {
            "id": pa.array([1, 2, 3, 4], pa.int64()),
            "ok": pa.array([True, False, None, True]),
            "name": pa.array(["a, b", None, 'say "hi"', "T"]),
        }
    )
    fields = [ColumnMeta.from_arrow(f) for f in rows.schema]
    body = _file(tmp_path, b"".join(write_csv(rows.to_batches(), fields)))
    definition = (
        column("id", "long"),
        column("ok", "boolean"),
        column("name", "char", arraysize="*"),
    )
    store.create_table(ALICE, "user_alice.back", TableDefinition(definition))
    assert store.load_file(ALICE, "user_alice.back", body, "text/csv").rows == 4
    got = pq.read_table(str(store.data_dir / "user_alice" / "back" / "dataset")).sort_by("id")
    assert got.select(["id", "ok", "name"]).to_pylist() == rows.to_pylist()
