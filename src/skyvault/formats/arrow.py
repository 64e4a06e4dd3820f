"""Streaming Apache Arrow IPC writer (``application/vnd.apache.arrow.stream``).

The result goes out in the Arrow IPC *streaming* format: the schema, then one record batch
per batch the executor hands on, then the end-of-stream marker.  Values keep their Arrow
types (64-bit integers stay exact, NULLs are validity bits, arrays are lists), so a reader
(pyarrow's ``ipc.open_stream``, the ``apache-arrow`` JavaScript package, polars, DuckDB)
gets columns without parsing text.  Memory is bounded by one batch: each batch's bytes are
handed on as soon as pyarrow has written them.

Metadata travels in the schema, where Arrow readers keep it:

* each field's metadata holds what the JSON format's ``metadata`` objects hold (``datatype``
  and, when set, ``arraysize``, ``xtype``, ``unit``, ``ucd``, ``utype``, ``description``:
  :func:`~skyvault.formats.tabular.field_json`, the one place that list is written);
* the schema's metadata holds the INFO elements as JSON (``info``: ``[{"name", "value"
  [, "content"]}...]``).

How the result ended is only known after the last row, so the stream always ends with a
record batch of zero rows whose custom metadata says it: ``QUERY_STATUS`` = ``OK``,
``OVERFLOW`` (MAXREC cut rows) or ``ERROR`` with ``message`` (the query failed while rows
were streamed; the rows before it are in the stream) — the trailing QUERY_STATUS a VOTable
result carries.  A stream cut short (no status batch, no end-of-stream marker) is a broken
transfer, never a complete answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence

import pyarrow as pa

from skyvault.catalog.metadata import ColumnMeta
from skyvault.errors import InternalError
from skyvault.formats._stream import write_batches
from skyvault.formats.tabular import field_json

__all__ = ["INFO_KEY", "MESSAGE_KEY", "STATUS_KEY", "arrow_schema", "write_arrow"]

#: Custom metadata of the last (empty) record batch: how the result ended.
STATUS_KEY = "QUERY_STATUS"
MESSAGE_KEY = "message"
#: Schema metadata: the INFO elements, as JSON.
INFO_KEY = "info"


def _info_json(name: str, value: str, content: str | None) -> dict[str, str]:
    out = {"name": name, "value": value}
    if content is not None:
        out["content"] = content
    return out


def arrow_schema(
    schema: pa.Schema,
    fields: Sequence[ColumnMeta],
    infos: Sequence[tuple[str, str, str | None]] = (),
) -> pa.Schema:
    """``schema`` with the published column names and each column's metadata."""
    if len(schema) != len(fields):
        raise InternalError(f"result has {len(schema)} columns for {len(fields)} fields")
    described = [
        field.with_name(meta.name).with_metadata(
            {k: v for k, v in field_json(meta).items() if k != "name"}
        )
        for field, meta in zip(schema, fields, strict=True)
    ]
    metadata = {INFO_KEY: json.dumps([_info_json(*i) for i in infos])} if infos else None
    return pa.schema(described, metadata=metadata)


def write_arrow(
    batches: Iterable[pa.RecordBatch],
    fields: Sequence[ColumnMeta],
    *,
    schema: pa.Schema,
    overflow: bool | Callable[[], bool] = False,
    infos: Sequence[tuple[str, str, str | None]] = (),
) -> Iterator[bytes]:
    """Stream the result as an Arrow IPC stream (see the module docstring).

    Parameters
    ----------
    batches
        The result rows, all with ``schema``.
    fields
        One :class:`~skyvault.catalog.metadata.ColumnMeta` per column (names, units...).
    schema
        The Arrow schema of the batches (needed before the first batch arrives).
    overflow
        Whether MAXREC cut rows; a callable is asked after the last batch.
    infos
        INFO elements (name, value, content) for the schema's metadata.
    """
    described = arrow_schema(schema, fields, infos)
    return _stream(batches, described, overflow)


def _stream(
    batches: Iterable[pa.RecordBatch],
    schema: pa.Schema,
    overflow: bool | Callable[[], bool],
) -> Iterator[bytes]:
    def end(writer: pa.ipc.RecordBatchStreamWriter, ended: tuple[str, str | None]) -> None:
        status, message = ended
        ending = {STATUS_KEY: status}
        if message is not None:
            ending[MESSAGE_KEY] = message
        empty = pa.RecordBatch.from_pylist([], schema=schema)
        writer.write_batch(empty, custom_metadata=ending)

    return write_batches(
        batches, overflow, schema, lambda sink: pa.ipc.new_stream(sink, schema), end
    )
