"""Rows for a user table: the body of a load request read as Arrow batches, and any Arrow
input matched to the table's columns.

Formats (by Content-Type, parameters ignored):

============================================ =============================================
``text/csv``                                 CSV, the first line naming the columns
``text/tab-separated-values``                the same with tabs
``application/fits``                         the first binary-table extension of a FITS file
``application/x-votable+xml``, ``text/xml``  the first TABLE of a VOTable
``application/vnd.apache.parquet``,          Parquet
``application/x-parquet``
============================================ =============================================

Columns are matched by name: exactly, else without regard to case when that names one
column (FITS writers often upper-case names).  A column the table does not have is an error
that names it; the table's columns the input lacks are NULL.  Values are cast to the stored
types; one that does not fit is an error naming the column (and, for CSV, the row).  Text is
parsed with the table's own types, so ``1e3`` in an ``int`` column is refused rather than
truncated.  Errors never show the server's temporary file.
"""

from __future__ import annotations

import contextlib
import io
import itertools
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from skyvault.catalog.readers import (
    CsvInput,
    FitsInput,
    InputFile,
    ParquetInput,
    VOTableInput,
    _masked_to_arrow,
)
from skyvault.errors import IngestError, InputFormatError, WorkspaceError
from skyvault.workspace.names import HEALPIX_COLUMN

__all__ = [
    "LOAD_TYPES",
    "conform_batches",
    "open_body",
    "votable_rows",
]

#: Content-Types a load accepts, and the reader of each.
LOAD_TYPES: dict[str, str] = {
    "text/csv": "csv",
    "text/tab-separated-values": "tsv",
    "application/fits": "fits",
    "image/fits": "fits",
    "application/x-votable+xml": "votable",
    "text/x-votable+xml": "votable",
    "text/xml": "votable",
    "application/xml": "votable",
    "application/vnd.apache.parquet": "parquet",
    "application/x-parquet": "parquet",
}
_TYPES_HINT = (
    "send text/csv, text/tab-separated-values, application/fits, application/x-votable+xml "
    "or application/vnd.apache.parquet"
)
BATCH_ROWS = 262_144
#: Bytes of CSV parsed at a time (and so, with the parsed rows, the memory a load holds).
CSV_CHUNK_BYTES = 32 << 20


def _arrow_type_name(t: pa.DataType) -> str:
    from skyvault.catalog.metadata import votable_type

    try:
        datatype, arraysize, xtype = votable_type(t)
    except Exception:
        return str(t)
    if xtype:
        return xtype
    return datatype + (f"[{arraysize}]" if arraysize and datatype != "char" else "")


def _match_names(names: Iterable[str], schema: pa.Schema, what: str) -> dict[str, str]:
    """Input column name -> table column name (exact, else the one equal without case)."""
    table = schema.names
    folded: dict[str, list[str]] = {}
    for n in table:
        folded.setdefault(n.lower(), []).append(n)
    out: dict[str, str] = {}
    matched: list[str] = []
    for name in names:
        if name in table:
            matched.append(name)
            out[name] = name
            continue
        candidates = folded.get(name.lower(), [])
        if len(candidates) == 1:
            out[name] = candidates[0]
            matched.append(candidates[0])
            continue
        known = ", ".join(n for n in table if n != HEALPIX_COLUMN)
        raise WorkspaceError(
            f"{what} has a column {name!r} that the table does not have",
            hint=f"the table's columns are: {known}; rename or remove that column",
        )
    for target in set(matched):
        if matched.count(target) > 1:
            raise WorkspaceError(
                f"{what} has several columns for the table's column {target!r}",
                hint="send each column once",
            )
    return out


def _cast(values: pa.Array | pa.ChunkedArray, target: pa.DataType, column: str) -> pa.Array:
    if values.type == target:
        return values
    if pa.types.is_null(values.type):
        return pa.nulls(len(values), target)
    try:
        return pc.cast(values, target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        reason = str(exc).splitlines()[0][:200]
        raise WorkspaceError(
            f"column {column}: the values do not fit the column's type, "
            f"{_arrow_type_name(target)} ({reason})",
            hint="send values of the column's type, or create the table with the type the data has",
        ) from None


def conform_batches(
    source: pa.RecordBatchReader | pa.Table | Iterable[pa.RecordBatch],
    schema: pa.Schema,
    what: str = "the data",
) -> Iterator[pa.RecordBatch]:
    """``source``'s batches as batches of ``schema``: columns matched by name, cast, the
    missing ones NULL (see the module docstring).  Lazy: errors come while iterating."""
    if isinstance(source, pa.Table):
        batches: Iterable[pa.RecordBatch] = source.to_batches(max_chunksize=BATCH_ROWS)
        names: list[str] | None = source.schema.names
    elif isinstance(source, pa.RecordBatchReader):
        batches, names = source, source.schema.names
    else:
        batches, names = source, None
    mapping = _match_names(names, schema, what) if names is not None else None
    for batch in batches:
        if mapping is None:
            mapping = _match_names(batch.schema.names, schema, what)
        given = {mapping[n]: batch.column(n) for n in batch.schema.names}
        arrays = []
        for field in schema:
            if field.name in given:
                arrays.append(_cast(given[field.name], field.type, field.name))
            else:
                arrays.append(pa.nulls(batch.num_rows, field.type))
        yield pa.RecordBatch.from_arrays(arrays, schema=schema)


def _safe(exc: IngestError) -> WorkspaceError:
    """An ingest reader's error without the temporary file's name."""
    where = []
    if exc.row is not None:
        where.append(f"row {exc.row}")
    if exc.column is not None:
        where.append(f"column {exc.column!r}")
    prefix = ", ".join(where) + ": " if where else ""
    return WorkspaceError(prefix + exc.reason, hint=exc.hint)


def _format_of(content_type: str) -> str:
    mime = content_type.split(";", 1)[0].strip().lower()
    fmt = LOAD_TYPES.get(mime)
    if fmt is None:
        raise WorkspaceError(f"cannot load data of type {mime or '(none)'!r}", hint=_TYPES_HINT)
    return fmt


def check_content_type(content_type: str) -> str:
    """The reader for ``content_type`` (``csv``, ``tsv``, ``fits``...), or a 400."""
    return _format_of(content_type)


def open_body(path: Path, content_type: str, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """The rows of a load body spooled at ``path``, as batches of ``schema``.

    Raises :class:`WorkspaceError` (400) for a body that is not its format, names a column
    the table lacks, or holds a value that does not fit.
    """
    fmt = _format_of(content_type)
    if path.stat().st_size == 0:
        raise WorkspaceError("the body is empty", hint="send the rows to load")
    reader = _open(path, fmt, schema)
    names = reader.schema.names
    what = {"csv": "the CSV", "tsv": "the TSV", "fits": "the FITS table"}.get(fmt, f"the {fmt}")
    mapping = _match_names(names, schema, what)
    return _batches(reader, mapping, schema, what)


def _open(path: Path, fmt: str, schema: pa.Schema) -> InputFile:
    try:
        if fmt in ("csv", "tsv"):
            return _open_text(path, fmt, schema)
        if fmt == "fits":
            return _open_fits(path)
        if fmt == "votable":
            from skyvault.workspace.columns import _refuse_declarations

            with path.open("rb") as fh:
                _refuse_declarations(fh.read(65536), "VOTable")
            return VOTableInput(path)
        return ParquetInput(path)
    except IngestError as exc:
        raise _safe(exc) from None


def _spellings(*words: str) -> list[str]:
    """Each word in every mix of upper and lower case."""
    out: list[str] = []
    for word in words:
        cases = [(ch.lower(), ch.upper()) if ch.isalpha() else (ch,) for ch in word]
        out += ["".join(p) for p in itertools.product(*cases)]
    return out


#: The text a boolean cell may hold, in any case: ``true``/``false`` (TOPCAT, STILTS,
#: skyvault's own CSV), ``True``/``False`` (astropy, pandas), ``T``/``F`` (VOTable), ``1``/``0``.
TRUE_TEXT = [*_spellings("true", "t"), "1"]
FALSE_TEXT = [*_spellings("false", "f"), "0"]
_BOOLEAN_HINT = "a boolean cell holds true, false, t, f (any case), 1 or 0, or nothing for NULL"


class _ChunkedCsv(CsvInput):
    """CSV read in pieces of about :data:`CSV_CHUNK_BYTES` cut at line ends, each parsed by
    ``pyarrow.csv.read_csv`` on all threads: 1.3-1.5 times as fast as Arrow's streaming
    reader, in the same bounded memory.  pyarrow does not accept line breaks inside quoted
    values by default (``newlines_in_values``), so cutting at a line end never splits a row
    either reader would read.  On a value that does not parse, the file is read again by
    the streaming reader, whose error names the row and column.  Booleans are read in every
    client's spelling (:data:`TRUE_TEXT`, :data:`FALSE_TEXT`)."""

    def _convert(self, columns: Sequence[str] | None) -> pacsv.ConvertOptions:
        return pacsv.ConvertOptions(
            column_types=self._column_types,
            include_columns=list(columns) if columns is not None else None,
            strings_can_be_null=True,
            true_values=TRUE_TEXT,
            false_values=FALSE_TEXT,
        )

    def _csv_error(self, exc: Exception, rows_before: int) -> InputFormatError:
        error = super()._csv_error(exc, rows_before)
        kind = self._column_types.get(error.column or "")
        if kind is None or not pa.types.is_boolean(kind):
            return error
        return self.fail(error.reason, row=error.row, column=error.column, hint=_BOOLEAN_HINT)

    def batches(self, columns: Sequence[str] | None, batch_rows: int) -> Iterator[pa.RecordBatch]:
        parse = pacsv.ParseOptions(delimiter=self._delimiter)
        convert = self._convert(columns)
        try:
            with self.path.open("rb") as fh:
                header = fh.readline()
                while chunk := fh.read(CSV_CHUNK_BYTES):
                    chunk += fh.readline()
                    table = pacsv.read_csv(
                        io.BytesIO(header + chunk), parse_options=parse, convert_options=convert
                    )
                    yield from table.to_batches(max_chunksize=batch_rows)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            for _ in super().batches(columns, batch_rows):
                pass  # raises the located error
            raise self.fail("cannot read the CSV") from None


def _open_text(path: Path, fmt: str, schema: pa.Schema) -> CsvInput:
    delimiter = "\t" if fmt == "tsv" else ","
    header = CsvInput(path, {n: pa.string() for n in schema.names}, delimiter=delimiter)
    mapping = _match_names(header.schema.names, schema, f"the {fmt.upper()}")
    types: dict[str, pa.DataType] = {}
    for name, target in mapping.items():
        kind = schema.field(target).type
        if pa.types.is_list(kind) or pa.types.is_fixed_size_list(kind):
            raise WorkspaceError(
                f"column {target} holds arrays, which {fmt.upper()} cannot carry",
                hint="load this table from FITS, VOTable or Parquet",
            )
        types[name] = kind
    return _ChunkedCsv(path, types, delimiter=delimiter)


def _open_fits(path: Path) -> FitsInput:
    from astropy.io import fits

    with open(path, "rb") as fh:
        if fh.read(9) != b"SIMPLE  =":
            raise WorkspaceError(
                "the body is not a FITS file", hint="send a FITS file with a binary table"
            )
    try:
        with fits.open(path, memmap=True) as hdul:
            kinds = [type(h).__name__ for h in hdul]
            has_table = any(isinstance(h, fits.BinTableHDU) for h in hdul)
    except (OSError, ValueError) as exc:
        raise WorkspaceError(
            f"not a readable FITS file ({str(exc).splitlines()[0][:200]})",
            hint="send a FITS file with a binary table",
        ) from None
    if not has_table:
        raise WorkspaceError(
            "the FITS file holds no table (its HDUs: " + ", ".join(kinds) + ")",
            hint="send a FITS file whose first extension is a binary table (BINTABLE)",
        )
    return FitsInput(path)


def _batches(
    reader: InputFile, mapping: dict[str, str], schema: pa.Schema, what: str
) -> Iterator[pa.RecordBatch]:
    try:
        source = reader.batches(None, BATCH_ROWS)
        renamed = (
            pa.RecordBatch.from_arrays(b.columns, names=[mapping[n] for n in b.schema.names])
            for b in source
        )
        yield from conform_batches(renamed, schema, what)
    except IngestError as exc:
        raise _safe(exc) from None
    finally:
        with contextlib.suppress(Exception):
            hdul: Any = getattr(reader, "_hdul", None)
            if hdul is not None:
                hdul.close()


def votable_rows(vot: Any) -> pa.Table:
    """The rows of an astropy VOTable ``TableElement`` as an Arrow table."""
    table = vot.to_table(use_names_over_ids=True)
    arrays = [_masked_to_arrow(table[name]) for name in table.colnames]
    return pa.Table.from_arrays(arrays, names=list(table.colnames))
