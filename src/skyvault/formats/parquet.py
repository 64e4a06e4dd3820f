"""Streaming VOParquet writer: Parquet with the result's VOTable metadata in its footer.

Following the IVOA note "Parquet in the VO" (VOParquet 1.0), the Parquet file's key/value
metadata carries

* ``IVOA.VOTable-Parquet.version`` = ``1.0``,
* ``IVOA.VOTable-Parquet.content``: a data-less VOTable whose TABLE has one FIELD per
  Parquet column, in order, with the units, UCDs and descriptions of the result.

Each record batch becomes a row group as it arrives; the bytes pyarrow's
:class:`~pyarrow.parquet.ParquetWriter` produces are handed on chunk by chunk, so memory is
bounded by one batch.  The footer is written last, which lets the embedded VOTable end with
the same trailing ``QUERY_STATUS`` INFO a VOTable result would carry: ``OVERFLOW`` when
MAXREC cut rows, ``ERROR`` with the message when the query failed while rows were streamed
(the file is then still a valid Parquet file holding the rows written so far).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from skyvault.catalog.metadata import ColumnMeta
from skyvault.errors import InternalError
from skyvault.formats._stream import Chunks, write_batches
from skyvault.formats._xml import info
from skyvault.formats.votable import write_votable

__all__ = ["VOPARQUET_CONTENT_KEY", "VOPARQUET_VERSION", "VOPARQUET_VERSION_KEY", "write_parquet"]

VOPARQUET_VERSION_KEY = "IVOA.VOTable-Parquet.version"
VOPARQUET_CONTENT_KEY = "IVOA.VOTable-Parquet.content"
VOPARQUET_VERSION = "1.0"

_EMPTY_DATA = "<DATA><TABLEDATA>\n</TABLEDATA></DATA>\n"
_END = "</RESOURCE>\n</VOTABLE>\n"


def votable_metadata(
    fields: Sequence[ColumnMeta],
    *,
    infos: Sequence[tuple[str, str, str | None]] = (),
    status: tuple[str, str | None] | None = None,
) -> str:
    """The data-less VOTable describing ``fields``, with an optional trailing status INFO."""
    document = b"".join(write_votable([], fields, serialization="tabledata", infos=infos))
    text = document.decode().replace(_EMPTY_DATA, "")
    if status is not None:
        value, message = status
        text = text.replace(_END, info("QUERY_STATUS", value, message) + _END)
    return text


def write_parquet(
    batches: Iterable[pa.RecordBatch],
    fields: Sequence[ColumnMeta],
    *,
    schema: pa.Schema,
    overflow: bool | Callable[[], bool] = False,
    infos: Sequence[tuple[str, str, str | None]] = (),
    compression: str = "zstd",
) -> Iterator[bytes]:
    """Stream the result as a VOParquet file.

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
        Extra INFO elements for the embedded VOTable.
    compression
        Parquet compression codec.
    """
    if len(schema) != len(fields):
        raise InternalError(f"result has {len(schema)} columns for {len(fields)} fields")
    # Column names as published: the schema's may be engine-internal.
    renamed = pa.schema([f.with_name(m.name) for f, m in zip(schema, fields, strict=True)])
    return _stream(batches, fields, renamed, overflow, infos, compression)


def _stream(
    batches: Iterable[pa.RecordBatch],
    fields: Sequence[ColumnMeta],
    schema: pa.Schema,
    overflow: bool | Callable[[], bool],
    infos: Sequence[tuple[str, str, str | None]],
    compression: str,
) -> Iterator[bytes]:
    # Dictionary encoding pays for strings (bands, flags, names); on measured values it
    # costs three times the write time of the rest and makes the file larger.
    textual = [
        f.name
        for f in schema
        if pa.types.is_string(f.type)
        or pa.types.is_large_string(f.type)
        or pa.types.is_dictionary(f.type)
    ]

    def open_writer(sink: Chunks) -> pq.ParquetWriter:
        return pq.ParquetWriter(sink, schema, compression=compression, use_dictionary=textual)

    def end(writer: pq.ParquetWriter, ended: tuple[str, str | None]) -> None:
        status = None if ended[0] == "OK" else ended
        writer.add_key_value_metadata(
            {
                VOPARQUET_VERSION_KEY: VOPARQUET_VERSION,
                VOPARQUET_CONTENT_KEY: votable_metadata(fields, infos=infos, status=status),
            }
        )

    return write_batches(batches, overflow, schema, open_writer, end)
