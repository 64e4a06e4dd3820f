"""The Arrow IPC stream writer on its own: values and types as they came, the columns'
metadata in the schema, how the result ended in a last empty batch, one batch at a time."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import datetime

import pyarrow as pa
import pytest

from skyvault.catalog.metadata import ColumnMeta
from skyvault.errors import InternalError, QueryTimeout
from skyvault.formats.arrow import write_arrow

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

TABLE = pa.table(
    {
        "id": pa.array([INT64_MIN, None, 2**53 + 1, INT64_MAX], pa.int64()),
        "small": pa.array([-32768, 0, None, 32767], pa.int16()),
        "flux": pa.array([1.5, float("nan"), None, float("inf")], pa.float64()),
        "mag": pa.array([20.25, None, 0.0, -1.0], pa.float32()),
        "flag": pa.array([True, None, False, True], pa.bool_()),
        "name": pa.array(['a,"b"', "β ψ", None, ""], pa.string()),
        "when": pa.array(
            [datetime(2020, 1, 2, 3, 4, 5, 678901), None, datetime(1970, 1, 1), None],
            pa.timestamp("us"),
        ),
        "vec": pa.array([[1.0, 2.0], None, [], [3.0]], pa.list_(pa.float64())),
    }
)
FIELDS = [
    ColumnMeta.from_arrow(f).updated(unit="deg" if f.name == "flux" else None) for f in TABLE.schema
]
FIELDS[0] = FIELDS[0].updated(ucd="meta.id;meta.main", description="Unique id.\nTwo lines.")


def _read(data: bytes) -> tuple[pa.Table, list[tuple[int, dict[bytes, bytes] | None]]]:
    """The rows, and each record batch's row count and custom metadata in order."""
    reader = pa.ipc.open_stream(io.BytesIO(data))
    batches, seen = [], []
    while True:
        try:
            item = reader.read_next_batch_with_custom_metadata()
        except StopIteration:
            break
        batches.append(item.batch)
        meta = item.custom_metadata
        seen.append((item.batch.num_rows, dict(meta) if meta is not None else None))
    return pa.Table.from_batches(batches, schema=reader.schema), seen


def _status(seen: list[tuple[int, dict[bytes, bytes] | None]]) -> dict[bytes, bytes] | None:
    rows, meta = seen[-1]
    assert rows == 0, "the stream ends with an empty batch carrying the status"
    return meta


def test_values_and_types_come_back_exactly() -> None:
    data = b"".join(write_arrow(TABLE.to_batches(max_chunksize=3), FIELDS, schema=TABLE.schema))
    table, seen = _read(data)
    assert table.schema.remove_metadata() == TABLE.schema
    for name in TABLE.column_names:
        # to_pylist: NaN compares unequal, so compare the NaN cell on its own.
        got, want = table[name].to_pylist(), TABLE[name].to_pylist()
        if name == "flux":
            assert got[1] != got[1] and want[1] != want[1]
            got[1] = want[1] = 0.0
        assert got == want, name
    assert table["id"].to_pylist()[0] == INT64_MIN and table["id"].to_pylist()[3] == INT64_MAX
    assert table["id"].null_count == 1 and table["name"].null_count == 1
    assert [rows for rows, _ in seen] == [3, 1, 0]
    assert _status(seen) == {b"QUERY_STATUS": b"OK"}


def test_units_ucds_descriptions_in_the_field_metadata() -> None:
    data = b"".join(write_arrow(TABLE.to_batches(), FIELDS, schema=TABLE.schema))
    schema = pa.ipc.open_stream(io.BytesIO(data)).schema
    assert schema.field("id").metadata == {
        b"datatype": b"long",
        b"ucd": b"meta.id;meta.main",
        b"description": b"Unique id.\nTwo lines.",
    }
    assert schema.field("flux").metadata == {b"datatype": b"double", b"unit": b"deg"}
    assert schema.field("vec").metadata[b"arraysize"] == b"*"
    assert schema.field("when").metadata[b"xtype"] == b"timestamp"


def test_columns_take_their_published_names_and_infos_go_in_the_schema() -> None:
    internal = pa.table({"__sv_0": [1, 2], "__sv_1": [3.0, 4.0]})
    fields = [ColumnMeta("a", "long"), ColumnMeta("a", "double", unit="mag")]  # same name twice
    infos = [("QUERY", "SELECT a, a FROM t", None), ("standardID", "ivo://x", "with content")]
    data = b"".join(write_arrow(internal.to_batches(), fields, schema=internal.schema, infos=infos))
    table, _ = _read(data)
    assert table.schema.names == ["a", "a"]
    assert table.column(1).to_pylist() == [3.0, 4.0]
    assert json.loads(table.schema.metadata[b"info"]) == [
        {"name": "QUERY", "value": "SELECT a, a FROM t"},
        {"name": "standardID", "value": "ivo://x", "content": "with content"},
    ]
    with pytest.raises(InternalError):
        write_arrow(internal.to_batches(), fields[:1], schema=internal.schema)


def test_overflow_is_asked_after_the_last_batch() -> None:
    asked: list[int] = []

    def overflow() -> bool:
        asked.append(1)
        return True

    chunks = write_arrow(TABLE.to_batches(), FIELDS, schema=TABLE.schema, overflow=overflow)
    first = next(chunks)
    assert not asked
    table, seen = _read(first + b"".join(chunks))
    assert asked and table.num_rows == 4
    assert _status(seen) == {b"QUERY_STATUS": b"OVERFLOW"}


def test_an_error_while_streaming_ends_the_stream_with_its_message() -> None:
    def failing() -> Iterator[pa.RecordBatch]:
        yield TABLE.to_batches()[0]
        raise QueryTimeout("the query ran longer than its time limit of 1 s")

    table, seen = _read(b"".join(write_arrow(failing(), FIELDS, schema=TABLE.schema)))
    assert table.num_rows == 4  # the rows sent before the failure
    status = _status(seen)
    assert status is not None and status[b"QUERY_STATUS"] == b"ERROR"
    assert b"time limit of 1 s" in status[b"message"]


def test_no_rows_is_a_schema_and_a_status() -> None:
    table, seen = _read(b"".join(write_arrow([], FIELDS, schema=TABLE.schema)))
    assert table.num_rows == 0 and table.schema.names == TABLE.column_names
    assert seen == [(0, {b"QUERY_STATUS": b"OK"})]


def test_each_batch_goes_out_before_the_next_is_read() -> None:
    """Memory is bounded by one batch: a batch's bytes are handed on before the writer asks
    for the next one."""
    big = pa.table({"x": pa.array(range(100_000), pa.int64())})
    pulled: list[int] = []

    def source() -> Iterator[pa.RecordBatch]:
        for i, batch in enumerate(big.to_batches(max_chunksize=25_000)):
            pulled.append(i)
            yield batch

    fields = [ColumnMeta("x", "long")]
    sizes = []
    for chunk in write_arrow(source(), fields, schema=big.schema):
        sizes.append((len(pulled), len(chunk)))
    # A chunk of about one batch (25,000 × 8 bytes) after each batch pulled, no more.
    bodies = [(n, size) for n, size in sizes if size > 100_000]
    assert [n for n, _ in bodies] == [1, 2, 3, 4]
    assert all(size < 2 * 25_000 * 8 for _, size in bodies)
