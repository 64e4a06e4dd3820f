"""The result formats a TAP request may ask for (RESPONSEFORMAT), and their writers.

Each :class:`OutputFormat` names a TAP 1.1 short name, the MIME type announced in the
capabilities, the Content-Type of the response, the TAPRegExt IVOID where one exists, the
other spellings clients use, and the writer.  :func:`find_output_format` resolves a
RESPONSEFORMAT (or TAP 1.0 FORMAT) value; unknown values raise a
:class:`~skyvault.errors.UsageError` listing what is accepted.

No web imports: the sync handler and (later) async workers share this table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pyarrow as pa

from skyvault.catalog.metadata import ColumnMeta
from skyvault.errors import UsageError
from skyvault.formats.arrow import write_arrow
from skyvault.formats.fits import write_fits
from skyvault.formats.parquet import write_parquet
from skyvault.formats.tabular import write_csv, write_json, write_tsv
from skyvault.formats.votable import Serialization, ServiceDescriptor, write_votable

__all__ = [
    "OUTPUT_FORMATS",
    "OutputFormat",
    "WriteFunction",
    "WriteOptions",
    "find_output_format",
]

Infos = Sequence[tuple[str, str, str | None]]


@dataclass(frozen=True)
class WriteOptions:
    """What writers take from the service's configuration.

    ``spool_dir`` is where a writer that must see the whole result before its first byte
    (FITS) keeps it (None: the system temporary directory), ``max_spool_bytes`` the most it
    may keep there (None: no limit).
    """

    spool_dir: Path | None = None
    max_spool_bytes: int | None = None
    services: tuple[ServiceDescriptor, ...] = ()
    """Service descriptors of the result (DataLink), written by the VOTable formats."""


#: ``write(batches, fields, schema, overflow, infos, options) -> byte chunks``.
WriteFunction = Callable[
    [Iterable[pa.RecordBatch], Sequence[ColumnMeta], pa.Schema, Callable[[], bool], Infos,
     WriteOptions],
    Iterator[bytes],
]  # fmt: skip


@dataclass(frozen=True)
class OutputFormat:
    """One RESPONSEFORMAT a client may choose.

    Attributes
    ----------
    name
        TAP 1.1 short name (``votable``, ``csv`` ...).
    mime
        MIME type announced in the capabilities' ``outputFormat``.
    content_type
        The Content-Type header of a response.
    ivo_id
        The TAPRegExt standard identifier of the format, if it has one.
    aliases
        Other accepted RESPONSEFORMAT values (compared case-insensitively).
    streams
        Whether rows go out as they come; False means the writer reads the whole result
        before its first byte (FITS spools it to disk: memory stays bounded), so the query
        service starts it before answering and a failure still gets a proper error status.
    write
        The writer.
    extension
        File name extension for the Content-Disposition header.
    """

    name: str
    mime: str
    content_type: str
    ivo_id: str | None
    aliases: tuple[str, ...]
    streams: bool
    write: WriteFunction
    extension: str


def _votable(
    serialization: Serialization,
    batches: Iterable[pa.RecordBatch],
    fields: Sequence[ColumnMeta],
    schema: pa.Schema,
    overflow: Callable[[], bool],
    infos: Infos,
    options: WriteOptions,
) -> Iterator[bytes]:
    return write_votable(
        batches,
        fields,
        serialization=serialization,
        overflow=overflow,
        infos=infos,
        services=options.services,
    )


def _simple(
    function: Callable[..., Iterator[bytes]],
    batches: Iterable[pa.RecordBatch],
    fields: Sequence[ColumnMeta],
    schema: pa.Schema,
    overflow: Callable[[], bool],
    infos: Infos,
    options: WriteOptions,
) -> Iterator[bytes]:
    return function(batches, fields, overflow=overflow, infos=infos)


def _with_schema(
    function: Callable[..., Iterator[bytes]],
    batches: Iterable[pa.RecordBatch],
    fields: Sequence[ColumnMeta],
    schema: pa.Schema,
    overflow: Callable[[], bool],
    infos: Infos,
    options: WriteOptions,
) -> Iterator[bytes]:
    return function(batches, fields, schema=schema, overflow=overflow, infos=infos)


def _fits(
    batches: Iterable[pa.RecordBatch],
    fields: Sequence[ColumnMeta],
    schema: pa.Schema,
    overflow: Callable[[], bool],
    infos: Infos,
    options: WriteOptions,
) -> Iterator[bytes]:
    return write_fits(
        batches,
        fields,
        schema=schema,
        overflow=overflow,
        infos=infos,
        spool_dir=options.spool_dir,
        max_spool_bytes=options.max_spool_bytes,
    )


_VOTABLE = "application/x-votable+xml"
_ARROW = "application/vnd.apache.arrow.stream"

OUTPUT_FORMATS: tuple[OutputFormat, ...] = (
    OutputFormat(
        name="votable",
        mime=_VOTABLE,
        content_type=_VOTABLE,
        ivo_id="ivo://ivoa.net/std/TAPRegExt#output-votable-binary2",
        aliases=("votable", _VOTABLE, f"{_VOTABLE};serialization=binary2", "votable/b2",
                 "text/xml", "application/x-votable"),
        streams=True,
        write=partial(_votable, "binary2"),
        extension="vot",
    ),
    OutputFormat(
        name="votable/td",
        mime=f"{_VOTABLE};serialization=TABLEDATA",
        content_type=f"{_VOTABLE};serialization=TABLEDATA",
        ivo_id="ivo://ivoa.net/std/TAPRegExt#output-votable-td",
        aliases=("votable/td", f"{_VOTABLE};serialization=tabledata", "votabletd"),
        streams=True,
        write=partial(_votable, "tabledata"),
        extension="vot",
    ),
    OutputFormat(
        name="votable/b",
        mime=f"{_VOTABLE};serialization=BINARY",
        content_type=f"{_VOTABLE};serialization=BINARY",
        ivo_id="ivo://ivoa.net/std/TAPRegExt#output-votable-binary",
        aliases=("votable/b", f"{_VOTABLE};serialization=binary"),
        streams=True,
        write=partial(_votable, "binary"),
        extension="vot",
    ),
    OutputFormat(
        name="csv",
        mime="text/csv",
        content_type="text/csv; charset=utf-8; header=present",
        ivo_id=None,
        aliases=("csv", "text/csv", "text/csv;header=present"),
        streams=True,
        write=partial(_simple, write_csv),
        extension="csv",
    ),
    OutputFormat(
        name="tsv",
        mime="text/tab-separated-values",
        content_type="text/tab-separated-values; charset=utf-8",
        ivo_id=None,
        aliases=("tsv", "text/tab-separated-values"),
        streams=True,
        write=partial(_simple, write_tsv),
        extension="tsv",
    ),
    OutputFormat(
        name="fits",
        mime="application/fits",
        content_type="application/fits",
        ivo_id=None,
        aliases=("fits", "application/fits", "image/fits"),
        streams=False,
        write=_fits,
        extension="fits",
    ),
    OutputFormat(
        name="parquet",
        mime="application/vnd.apache.parquet",
        content_type="application/vnd.apache.parquet",
        ivo_id=None,
        aliases=("parquet", "application/vnd.apache.parquet", "application/x-parquet",
                 "application/parquet"),
        streams=True,
        write=partial(_with_schema, write_parquet),
        extension="parquet",
    ),
    OutputFormat(
        name="arrow",
        mime=_ARROW,
        content_type=_ARROW,
        ivo_id=None,
        aliases=("arrow", _ARROW, "arrow-stream"),
        streams=True,
        write=partial(_with_schema, write_arrow),
        extension="arrows",
    ),
    OutputFormat(
        name="json",
        mime="application/json",
        content_type="application/json",
        ivo_id=None,
        aliases=("json", "application/json"),
        streams=True,
        write=partial(_simple, write_json),
        extension="json",
    ),
)  # fmt: skip

_BY_ALIAS = {alias: fmt for fmt in OUTPUT_FORMATS for alias in fmt.aliases}


def _normalise(value: str) -> str:
    """Lower-case, no blanks around ``;`` and ``=``, parameters kept in order."""
    parts = [p.strip() for p in value.strip().split(";") if p.strip()]
    return ";".join(p.replace(" ", "").lower() for p in parts)


def find_output_format(value: str | None) -> OutputFormat:
    """The format RESPONSEFORMAT ``value`` names; VOTable (BINARY2) when None or empty."""
    if value is None or not value.strip():
        return OUTPUT_FORMATS[0]
    found = _BY_ALIAS.get(_normalise(value))
    if found is None:
        names = ", ".join(f.name for f in OUTPUT_FORMATS)
        raise UsageError(
            f"RESPONSEFORMAT={value!r} is not a format this service writes",
            hint=f"use one of {names}, or their MIME types (see /capabilities)",
        )
    return found
