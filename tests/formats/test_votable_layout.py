"""Byte-level layout, golden output, votlint validity and refusals of the VOTable writer."""

from __future__ import annotations

import base64
import re
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from skyvault.catalog.metadata import ColumnMeta
from skyvault.errors import InternalError, QueryError
from skyvault.formats import SERIALIZATIONS, dali_error_document, write_votable
from skyvault.formats.votable import _Base64
from tests.golden import golden_bytes

from .conftest import STILTS, read_votable, render
from .test_votable_roundtrip import all_types

GOLDEN = Path(__file__).parent / "golden"


def stream_bytes(document: bytes) -> bytes:
    """The decoded content of the document's base64 STREAM."""
    match = re.search(rb"<STREAM encoding=[\"']base64[\"']>(.*)</STREAM>", document, re.S)
    assert match is not None
    return base64.b64decode(match.group(1), validate=False)


# --- base64 across chunks -------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(20))
def test_base64_of_chunks_equals_base64_of_the_whole(seed: int) -> None:
    rng = np.random.default_rng(seed)
    whole = rng.integers(0, 256, size=int(rng.integers(0, 200)), dtype=np.uint8).tobytes()
    cuts = sorted(rng.integers(0, len(whole) + 1, size=int(rng.integers(0, 12))).tolist())
    encoder = _Base64()
    out = []
    for start, stop in zip([0, *cuts], [*cuts, len(whole)], strict=True):
        out.extend(encoder.feed(memoryview(whole[start:stop])))
    out.append(encoder.finish())
    text = b"".join(out)
    assert base64.b64decode(text) == whole
    assert text.replace(b"\n", b"") == base64.b64encode(whole)


# --- byte layout ----------------------------------------------------------------------------


def test_binary2_rows_byte_by_byte() -> None:
    table = pa.table(
        {
            "b": pa.array([True, None]),
            "i": pa.array([1, None], pa.int32()),
            "s": pa.array(["ab", None]),
            "d": pa.array([None, -2.0]),
            "p": pa.array([[1.0, 2.0], None], pa.list_(pa.float64())),
        }
    )
    fields = [
        ColumnMeta("b", "boolean"),
        ColumnMeta("i", "int"),
        ColumnMeta("s", "char", arraysize="*"),
        ColumnMeta("d", "double"),
        ColumnMeta("p", "double", arraysize="*"),
    ]
    raw = stream_bytes(render(table, fields, "binary2"))
    row1 = (
        bytes([0b00010000])  # d is null: fourth flag bit, most significant first
        + b"T"
        + struct.pack(">i", 1)
        + struct.pack(">i", 2)
        + b"ab"
        + struct.pack(">d", float("nan"))
        + struct.pack(">idd", 2, 1.0, 2.0)
    )
    row2 = (
        bytes([0b11101000])
        + b"?"
        + struct.pack(">i", 0)
        + struct.pack(">i", 0)
        + struct.pack(">d", -2.0)
        + struct.pack(">i", 0)
    )
    assert raw == row1 + row2


def test_binary_uses_in_band_nulls() -> None:
    table = pa.table(
        {
            "b": pa.array([None], pa.bool_()),
            "s": pa.array([None], pa.int16()),
            "f": pa.array([None], pa.float32()),
            "c": pa.array([None], pa.string()),
            "pt": pa.array([None], pa.list_(pa.float64(), 2)),
        }
    )
    fields = [ColumnMeta.from_arrow(f) for f in table.schema]
    document = render(table, fields, "binary")
    assert b'<FIELD name="s" datatype="short"><VALUES null="-32768"/></FIELD>' in document
    raw = stream_bytes(document)
    assert raw == (
        b"?"
        + struct.pack(">h", -32768)
        + struct.pack(">f", float("nan"))
        + struct.pack(">i", 0)
        + struct.pack(">dd", float("nan"), float("nan"))
    )


def test_fixed_size_text_is_padded_and_cut() -> None:
    table = pa.table({"c": ["abcdef", "x", None], "u": ["é", "日本語x", ""]})
    fields = [ColumnMeta("c", "char", arraysize="3"), ColumnMeta("u", "unicodeChar", "2")]
    raw = stream_bytes(render(table, fields, "binary"))
    assert raw == (
        b"abc" + "é\0".encode("utf-16-be") + b"x\0\0" + "日本".encode("utf-16-be") + b"\0" * 7
    )


def test_char_cells_carry_utf8_bytes() -> None:
    # VOTable 1.4 char is ASCII; other text is written as UTF-8 (what VOTable 1.5 allows)
    # rather than lost.  Columns that may hold it should be declared unicodeChar.
    table = pa.table({"c": ["é"]})
    raw = stream_bytes(render(table, [ColumnMeta("c", "char", arraysize="*")], "binary"))
    assert raw == struct.pack(">i", 2) + "é".encode()


def test_bounded_variable_text_is_cut_to_its_bound() -> None:
    table = pa.table({"c": ["abcdef", "x"]})
    raw = stream_bytes(render(table, [ColumnMeta("c", "char", arraysize="4*")], "binary"))
    assert raw == struct.pack(">i", 4) + b"abcd" + struct.pack(">i", 1) + b"x"


def test_tabledata_golden_file() -> None:
    table = pa.table(
        {
            "id": pa.array([1, 2, None], pa.int64()),
            "ra": pa.array([10.5, float("nan"), float("-inf")]),
            "mag": pa.array([0.1, None, 21.25], pa.float32()),
            "ok": pa.array([True, False, None]),
            "name": pa.array(["M 31", "<&>", None]),
            "obs": pa.array([0, 86_400_123, None], pa.timestamp("ms")),
            "pos": pa.array([[10.5, -5.25], None, [0.0, 90.0]], pa.list_(pa.float64(), 2)),
        }
    )
    fields = [
        ColumnMeta("id", "long", ucd="meta.id;meta.main", description="Identifier"),
        ColumnMeta("ra", "double", unit="deg", ucd="pos.eq.ra;meta.main"),
        ColumnMeta("mag", "float", unit="mag", ucd="phot.mag"),
        ColumnMeta("ok", "boolean", description="Quality <good> & checked"),
        ColumnMeta("name", "char", arraysize="*", ucd="meta.id"),
        ColumnMeta("obs", "char", arraysize="*", xtype="timestamp", ucd="time.epoch"),
        ColumnMeta("pos", "double", arraysize="2", xtype="point", unit="deg", ucd="pos.eq"),
    ]
    document = render(
        table,
        fields,
        "tabledata",
        table_name="tiny",
        description="A tiny table",
        overflow=True,
        infos=[("standardID", "ivo://ivoa.net/std/TAP", None)],
    )
    assert document == golden_bytes(GOLDEN / "tiny_tabledata.vot", document)


def test_dali_error_document_golden_file() -> None:
    document = dali_error_document("unknown column 'ra_' <did you mean ra?> & é")
    assert document == golden_bytes(GOLDEN / "error.vot", document)


# --- validity according to STILTS votlint ---------------------------------------------------


def lint_table(serialization: str) -> tuple[pa.Table, list[ColumnMeta]]:
    """All types, adjusted around two false alarms of votlint (STILTS 3.4.7).

    votlint rejects an empty cell of a variable-size floating-point array in TABLEDATA
    (STIL writes them the same way), and loses its place in a BINARY/BINARY2 stream after
    a ``polygon`` column that follows certain columns, with STIL's own output as well (see
    :func:`test_votlint_polygon_false_alarm_is_still_there`).  The same cells are checked
    by reading them back in astropy.
    """
    table, fields = all_types()
    index = [f.name for f in fields].index("poly")
    polygons = pa.array([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]] * table.num_rows)
    table = table.set_column(index, "poly", polygons)
    if serialization != "tabledata":
        fields[index] = ColumnMeta("poly", "double", arraysize="*", unit="deg")
    return table, fields


@pytest.mark.parametrize("serialization", SERIALIZATIONS)
def test_votlint_accepts_every_type(serialization: str, lint: Callable[[bytes], list[str]]) -> None:
    table, fields = lint_table(serialization)
    document = render(
        table,
        fields,
        serialization,
        overflow=True,
        table_name="all types",
        description="every <type> & more",
        infos=[("standardID", "ivo://ivoa.net/std/TAP", None), ("note", "n", "text & <x>")],
    )
    assert lint(document) == []


@pytest.mark.parametrize("serialization", SERIALIZATIONS)
def test_votlint_accepts_metadata_only(
    serialization: str, lint: Callable[[bytes], list[str]]
) -> None:
    _, fields = lint_table(serialization)
    assert lint(render([], fields, serialization, overflow=True)) == []


@pytest.mark.parametrize("serialization", SERIALIZATIONS)
def test_votlint_accepts_error_after_rows(
    serialization: str, lint: Callable[[bytes], list[str]]
) -> None:
    table, fields = lint_table(serialization)

    def batches():  # type: ignore[no-untyped-def]
        yield from table.to_batches()
        raise QueryError("division by zero in row 5 <&>")

    assert lint(render(batches(), fields, serialization)) == []


def test_votlint_flags_a_broken_document(lint: Callable[[bytes], list[str]]) -> None:
    # The lint fixture must be able to fail: a cell that is not an integer.
    table = pa.table({"i": pa.array([1], pa.int32())})
    document = render(table, [ColumnMeta("i", "int")], "tabledata")
    assert lint(document.replace(b"<TD>1</TD>", b"<TD>one</TD>")) != []


def test_votlint_accepts_error_document(lint: Callable[[bytes], list[str]]) -> None:
    assert lint(dali_error_document('bad <query> & "quotes" – ünïcödé\nline 2')) == []


def test_votlint_polygon_false_alarm_is_still_there(tmp_path: Path) -> None:
    """Canary: when STILTS stops rejecting its own polygon streams, lint them again."""
    if STILTS is None:
        pytest.skip("stilts is not installed (make sysdeps installs it)")
    table = pa.table({"b": [True, False], "p": [[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]] * 2})
    fields = [
        ColumnMeta("b", "boolean"),
        ColumnMeta("p", "double", arraysize="*", xtype="polygon"),
    ]
    source = tmp_path / "in.vot"
    source.write_bytes(render(table, fields, "tabledata"))
    stil = tmp_path / "stil.vot"
    subprocess.run(
        [STILTS, "tcopy", f"in={source}", f"out={stil}", "ofmt=votable-binary-inline"],
        check=True,
        capture_output=True,
    )
    ours = render(table, fields, "binary")
    assert stream_bytes(ours) == stream_bytes(stil.read_bytes())
    lint = subprocess.run(
        [STILTS, "votlint", str(stil)], capture_output=True, text=True, check=False
    )
    assert "negative element count" in lint.stdout


# --- the error document ---------------------------------------------------------------------


def test_error_document_reads_in_astropy_and_pyvo() -> None:
    from pyvo.dal.exceptions import DALQueryError
    from pyvo.dal.query import DALResults

    message = 'bad <query> & "quotes" – ünïcödé'
    document = dali_error_document(message)
    votable = read_votable(document)
    resource = votable.resources[0]
    assert resource.type == "results"
    assert resource.tables == []
    (status,) = resource.infos
    assert (status.name, status.value, status.content) == ("QUERY_STATUS", "ERROR", message)
    with pytest.raises(DALQueryError) as caught:
        DALResults(votable, url="http://example.org/tap/sync")
    assert caught.value.reason == message


# --- refusals -------------------------------------------------------------------------------


def test_batches_must_match_the_fields() -> None:
    table = pa.table({"a": [1], "b": [2]})
    with pytest.raises(InternalError, match="2 columns for 1"):
        render(table, [ColumnMeta("a", "long")], "binary2")


@pytest.mark.parametrize(
    ("datatype", "arraysize"),
    [("bit", None), ("floatComplex", None), ("double", "2x3"), ("int", "0"), ("char", "*x")],
)
def test_unsupported_fields_are_refused_before_output(datatype: str, arraysize: str) -> None:
    with pytest.raises(InternalError, match="cannot write column 'x'"):
        write_votable([], [ColumnMeta("x", datatype, arraysize=arraysize)])


def test_values_that_do_not_fit_are_query_errors() -> None:
    table = pa.table({"u": pa.array([2**63], pa.uint64())})
    with pytest.raises(QueryError, match="does not fit VOTable long"):
        render(table, [ColumnMeta("u", "long")], "binary2")


@pytest.mark.parametrize("serialization", SERIALIZATIONS)
def test_arrays_of_the_wrong_length_are_query_errors(serialization: str) -> None:
    table = pa.table({"p": [[1.0, 2.0], [1.0, 2.0, 3.0]]})
    with pytest.raises(QueryError, match="3 elements where arraysize is 2"):
        render(table, [ColumnMeta("p", "double", arraysize="2", xtype="point")], serialization)


def test_scalar_column_declared_as_array_is_refused() -> None:
    table = pa.table({"p": [1.0]})
    with pytest.raises(InternalError, match="needs a list column"):
        render(table, [ColumnMeta("p", "double", arraysize="*")], "binary2")


def test_other_exceptions_from_batches_propagate() -> None:
    def batches():  # type: ignore[no-untyped-def]
        yield pa.record_batch({"a": [1]})
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError, match="bug"):
        render(batches(), [ColumnMeta("a", "long")], "binary2")


def test_read_back_of_golden_file() -> None:
    votable = read_votable((GOLDEN / "tiny_tabledata.vot").read_bytes())
    array = votable.get_first_table().array
    assert array["name"].tolist() == ["M 31", "<&>", ""]
