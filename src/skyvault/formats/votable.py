"""Streaming VOTable 1.4 writer: Arrow record batches in, UTF-8 byte chunks out.

The document follows DALI: one ``RESOURCE type="results"`` opening with
``<INFO name="QUERY_STATUS" value="OK"/>``, the TABLE, and a trailing ``QUERY_STATUS``
INFO when the result was truncated (``OVERFLOW``) or failed while streaming (``ERROR``).

Rows are encoded a slice at a time, whole columns at once:

* BINARY and BINARY2 build each slice's rows with numpy structured arrays (big-endian
  fields, BINARY2 null flags packed with :func:`numpy.packbits`); variable-size cells
  (strings, ``*`` arrays) are spliced between the fixed parts by Arrow's element-wise
  binary join.  The bytes are base64-encoded chunk by chunk, carrying the 0-2 bytes that
  do not fill a 3-byte group over to the next chunk.
* TABLEDATA formats each column with Arrow compute kernels (shortest round-trip text for
  floats) and joins the cells into ``<TR>`` rows the same way.

Memory is bounded by the slice size (:data:`ROWS_PER_SLICE`), whatever the result size.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from skyvault.catalog.metadata import ColumnMeta
from skyvault.errors import InternalError
from skyvault.formats._columns import (
    ColumnPlan,
    FixedCells,
    VarCells,
    binary_cells,
    null_flags,
    plan_column,
    text_cells,
)
from skyvault.formats._stream import ResultStream
from skyvault.formats._xml import attr, escape_text, info

__all__ = [
    "ROWS_PER_SLICE",
    "SERIALIZATIONS",
    "VOTABLE_NAMESPACE",
    "VOTABLE_SCHEMA_LOCATION",
    "Serialization",
    "votable_header",
    "write_votable",
]

Serialization = Literal["tabledata", "binary", "binary2"]
SERIALIZATIONS: tuple[Serialization, ...] = ("tabledata", "binary", "binary2")

#: VOTable 1.4 keeps the 1.3 namespace; the schema location names the 1.4 schema.
VOTABLE_NAMESPACE = "http://www.ivoa.net/xml/VOTable/v1.3"
VOTABLE_SCHEMA_LOCATION = "http://www.ivoa.net/xml/VOTable/votable-1.4.xsd"

#: Rows encoded at once.  Bigger batches are sliced (zero-copy) to bound memory.
ROWS_PER_SLICE = 65_536

_XSI = "http://www.w3.org/2001/XMLSchema-instance"
_DATA_OPEN: dict[Serialization, str] = {
    "tabledata": "<DATA><TABLEDATA>\n",
    "binary": '<DATA><BINARY><STREAM encoding="base64">\n',
    "binary2": '<DATA><BINARY2><STREAM encoding="base64">\n',
}
_DATA_CLOSE: dict[Serialization, str] = {
    "tabledata": "</TABLEDATA></DATA>\n",
    "binary": "</STREAM></BINARY></DATA>\n",
    "binary2": "</STREAM></BINARY2></DATA>\n",
}
_JOIN_NOTHING = pa.scalar(b"", pa.large_binary())

# A fixed-width part of a row: the element dtype it is written as, and its (n, ...) values.
_Part = tuple[np.dtype[np.generic], npt.NDArray[np.generic]]


def votable_header(
    infos: Sequence[tuple[str, str, str | None]] = (),
    *,
    status: str = "OK",
    status_message: str | None = None,
) -> str:
    """The XML declaration, the VOTABLE and RESOURCE openings and the leading INFOs.

    Parameters
    ----------
    infos
        ``(name, value, content)`` of INFO elements placed after ``QUERY_STATUS``.
    status
        Value of the leading ``QUERY_STATUS`` INFO.
    status_message
        Text of that INFO (an error message, say); None for an empty element.
    """
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f'<VOTABLE version="1.4" xmlns="{VOTABLE_NAMESPACE}" xmlns:xsi="{_XSI}"'
        f' xsi:schemaLocation="{VOTABLE_NAMESPACE} {VOTABLE_SCHEMA_LOCATION}">\n',
        '<RESOURCE type="results">\n',
        info("QUERY_STATUS", status, status_message),
    ]
    parts.extend(info(name, value, content) for name, value, content in infos)
    return "".join(parts)


@dataclass(frozen=True)
class ServiceDescriptor:
    """A DataLink service descriptor (DataLink 1.1 section 4) written after the results:
    ``<RESOURCE type="meta" utype="adhoc:service">`` with the service's ``standardID`` and
    ``accessURL`` and input parameters whose values come from result columns (a ``ref``
    to the column's FIELD), as pyvo's ``iter_datalinks`` reads it."""

    standard_id: str
    access_url: str
    params: tuple[tuple[str, int], ...]
    """``(PARAM name, index of the result column it takes its value from)``."""
    description: str | None = None
    resource_id: str | None = None
    inputs: tuple[InputParam, ...] = ()
    """Input parameters the caller fills in (no ``ref``): a service's self-description."""
    name: str | None = None
    """The RESOURCE's ``name`` (``this``: the service that made the document)."""


@dataclass(frozen=True)
class InputParam:
    """A free input parameter of a service descriptor (a PARAM with an empty value)."""

    name: str
    datatype: str = "char"
    arraysize: str | None = "*"
    xtype: str | None = None
    unit: str | None = None
    ucd: str | None = None
    description: str | None = None


_NCNAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")


def _field_ids(
    plans: Sequence[ColumnPlan], services: Sequence[ServiceDescriptor]
) -> dict[int, str]:
    """The ``ID`` of each FIELD a service parameter refers to: its name where that is an
    XML name not used yet (astropy names table columns by ID), else ``_sv_colN``."""
    taken = {s.resource_id for s in services}
    ids: dict[int, str] = {}
    for index in sorted({i for s in services for _, i in s.params}):
        name = plans[index].meta.name
        ident = name if _NCNAME.match(name) and name not in taken else f"_sv_col{index}"
        taken.add(ident)
        ids[index] = ident
    return ids


def _service_resource(service: ServiceDescriptor, ids: dict[int, str]) -> str:
    text = '<PARAM name="{}" datatype="char" arraysize="*"{}/>\n'
    parts = [
        f'<RESOURCE type="meta" utype="adhoc:service"{attr("ID", service.resource_id)}'
        f"{attr('name', service.name)}>\n",
        f"<DESCRIPTION>{escape_text(service.description)}</DESCRIPTION>\n"
        if service.description
        else "",
        text.format("standardID", attr("value", service.standard_id)),
        text.format("accessURL", attr("value", service.access_url)),
        '<GROUP name="inputParams">\n',
        *(
            text.format(name, attr("value", "") + attr("ref", ids[index]))
            for name, index in service.params
        ),
        *(_input_param(p) for p in service.inputs),
        "</GROUP>\n</RESOURCE>\n",
    ]
    return "".join(parts)


def _input_param(param: InputParam) -> str:
    head = (
        f"<PARAM{attr('name', param.name)}{attr('datatype', param.datatype)}"
        f"{attr('arraysize', param.arraysize)}{attr('xtype', param.xtype)}"
        f"{attr('unit', param.unit)}{attr('ucd', param.ucd)}{attr('value', '')}"
    )
    if not param.description:
        return head + "/>\n"
    return f"{head}><DESCRIPTION>{escape_text(param.description)}</DESCRIPTION></PARAM>\n"


def _field(plan: ColumnPlan, field_id: str | None = None) -> str:
    meta = plan.meta
    head = (
        f"<FIELD{attr('ID', field_id)}{attr('name', meta.name)}{attr('datatype', meta.datatype)}"
        f"{attr('arraysize', meta.arraysize)}{attr('xtype', meta.xtype)}"
        f"{attr('unit', meta.unit)}{attr('ucd', meta.ucd)}{attr('utype', meta.utype)}"
    )
    body = ""
    if meta.description:
        body += f"<DESCRIPTION>{escape_text(meta.description)}</DESCRIPTION>"
    if plan.null_value is not None:
        body += f'<VALUES null="{plan.null_value}"/>'
    if not body:
        return head + "/>\n"
    return f"{head}>{body}</FIELD>\n"


def write_votable(
    batches: Iterable[pa.RecordBatch],
    fields: Sequence[ColumnMeta],
    *,
    serialization: Serialization = "binary2",
    overflow: bool | Callable[[], bool] = False,
    infos: Sequence[tuple[str, str, str | None]] = (),
    table_name: str | None = None,
    description: str | None = None,
    rows_per_slice: int = ROWS_PER_SLICE,
    services: Sequence[ServiceDescriptor] = (),
) -> Iterator[bytes]:
    """Stream a query result as a VOTable 1.4 document.

    Parameters
    ----------
    batches
        The result rows.  Column ``i`` of every batch is written as ``fields[i]``; batches
        are consumed lazily, one at a time.  An empty iterable gives a metadata-only
        document (what ``MAXREC=0`` asks for).
    fields
        One :class:`~skyvault.catalog.metadata.ColumnMeta` per column: its ``datatype``,
        ``arraysize`` and ``xtype`` say how values are encoded and are published in the
        FIELD with ``unit``, ``ucd``, ``utype`` and ``description``.
    serialization
        ``binary2`` (default; null flags per row), ``binary`` (in-band nulls: NaN, ``?``
        and a ``<VALUES null>`` integer for nullable integer columns) or ``tabledata``.
    overflow
        Whether the rows were cut short (``MAXREC`` or a service limit).  A callable is
        called once, after the last batch, so the producer can decide at the end.  When
        true a trailing ``<INFO name="QUERY_STATUS" value="OVERFLOW"/>`` follows the TABLE.
    infos
        ``(name, value, content)`` of extra INFO elements after the leading QUERY_STATUS
        (e.g. ``("standardID", "ivo://ivoa.net/std/TAP", None)``).
    table_name
        The TABLE's ``name`` attribute.
    description
        The TABLE's DESCRIPTION.
    rows_per_slice
        Largest number of rows encoded at once; bounds memory.
    services
        Service descriptors written after the results resource (DataLink); the FIELDs
        their parameters refer to get an ``ID``.  One naming a column that is not there
        is left out.

    Yields
    ------
    bytes
        Consecutive pieces of the UTF-8 document.

    Raises
    ------
    InternalError
        When a batch does not match ``fields`` or a ColumnMeta cannot be written.
    QueryError
        When a value does not fit its declared datatype or arraysize.

    Notes
    -----
    A :class:`~skyvault.errors.SkyvaultError` raised by ``batches`` while rows are being
    streamed does not propagate: the data section is closed and the document ends with
    ``<INFO name="QUERY_STATUS" value="ERROR">message</INFO>`` as DALI prescribes for
    errors after output has started.  Other exceptions propagate.
    """
    if serialization not in _DATA_OPEN:
        raise InternalError(f"unknown VOTable serialization {serialization!r}")
    if not fields:
        raise InternalError("a VOTable needs at least one column")
    # Refuse unsupported FIELDs here, before the generator starts and any byte goes out.
    plans = [plan_column(f, null_sentinels=serialization == "binary") for f in fields]
    services = [s for s in services if all(0 <= i < len(fields) for _, i in s.params)]
    return _stream(
        batches,
        plans,
        serialization,
        overflow,
        infos,
        table_name,
        description,
        rows_per_slice,
        services,
    )


def _stream(
    batches: Iterable[pa.RecordBatch],
    plans: list[ColumnPlan],
    serialization: Serialization,
    overflow: bool | Callable[[], bool],
    infos: Sequence[tuple[str, str, str | None]],
    table_name: str | None,
    description: str | None,
    rows_per_slice: int,
    services: Sequence[ServiceDescriptor] = (),
) -> Iterator[bytes]:
    head = [votable_header(infos), f"<TABLE{attr('name', table_name)}>\n"]
    if description:
        head.append(f"<DESCRIPTION>{escape_text(description)}</DESCRIPTION>\n")
    ids = _field_ids(plans, services)
    head.extend(_field(p, ids.get(i)) for i, p in enumerate(plans))
    head.append(_DATA_OPEN[serialization])
    yield "".join(head).encode()

    encoder = _Base64() if serialization != "tabledata" else None
    stream = ResultStream(batches, overflow)
    for batch in stream:
        _check_batch(batch, plans)
        for start in range(0, batch.num_rows, rows_per_slice):
            part = batch.slice(start, rows_per_slice)
            if encoder is None:
                rows = _tabledata_rows(plans, part)
                if rows:
                    yield rows
            else:
                yield from encoder.feed(_binary_rows(plans, part, flags=serialization == "binary2"))
    tail = []
    if encoder is not None:
        tail.append(encoder.finish())
    tail.append(_DATA_CLOSE[serialization].encode())
    tail.append(b"</TABLE>\n")
    status, message = stream.status()
    if status != "OK":
        tail.append(info("QUERY_STATUS", status, message).encode())
    tail.append(b"</RESOURCE>\n")
    tail.extend(_service_resource(s, ids).encode() for s in services)
    tail.append(b"</VOTABLE>\n")
    yield b"".join(tail)


def _check_batch(batch: pa.RecordBatch, plans: list[ColumnPlan]) -> None:
    if batch.num_columns != len(plans):
        raise InternalError(
            f"result batch has {batch.num_columns} columns for {len(plans)} VOTable FIELDs"
        )


# --- BINARY / BINARY2 -----------------------------------------------------------------------


def _binary_rows(plans: list[ColumnPlan], batch: pa.RecordBatch, *, flags: bool) -> memoryview:
    """The BINARY (``flags=False``) or BINARY2 bytes of every row of ``batch``."""
    n = batch.num_rows
    if n == 0:
        return memoryview(b"")
    # Each segment is a run of fixed-width parts, closed by the length prefix of the
    # variable cell that follows it; the variable cells sit between segments.
    segments: list[list[_Part]] = [[]]
    variables: list[pa.Array] = []
    if flags:
        segments[0].append((np.dtype("u1"), _flag_bytes(plans, batch)))
    for plan, column in zip(plans, batch.columns, strict=True):
        cells = binary_cells(plan, column)
        if isinstance(cells, FixedCells):
            # Text cells are bytes already; numbers become big-endian as they are packed.
            element = np.dtype("u1") if plan.is_text else plan.element
            segments[-1].append((element, cells.values))
        else:
            assert isinstance(cells, VarCells)
            segments[-1].append((np.dtype(">i4"), cells.counts))
            variables.append(cells.data)
            segments.append([])
    packed = [_pack(parts, n) for parts in segments]
    if not variables:
        return memoryview(packed[0].data)
    pieces: list[pa.Array] = []
    for i, fixed in enumerate(packed):
        width = len(fixed) // n if n else 0
        if width:
            offsets = np.arange(0, (n + 1) * width, width, dtype=np.int64)
            pieces.append(
                pa.Array.from_buffers(
                    pa.large_binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(fixed)]
                )
            )
        if i < len(variables):
            pieces.append(variables[i])
    joined = pc.binary_join_element_wise(*pieces, _JOIN_NOTHING)
    size = int(np.frombuffer(joined.buffers()[1], dtype=np.int64, count=1, offset=8 * n)[0])
    return memoryview(joined.buffers()[2])[:size] if size else memoryview(b"")


def _flag_bytes(plans: list[ColumnPlan], batch: pa.RecordBatch) -> npt.NDArray[np.uint8]:
    """BINARY2 null flags: one bit per column, most significant bit first, per row."""
    n, width = batch.num_rows, (len(plans) + 7) // 8
    flagged = [(i, null_flags(c)) for i, c in enumerate(batch.columns)]
    flagged = [(i, f) for i, f in flagged if f is not None]
    if not flagged:
        return np.zeros((n, width), dtype=np.uint8)
    bits = np.zeros((n, width * 8), dtype=np.bool_)
    for i, f in flagged:
        bits[:, i] = f
    return np.packbits(bits, axis=1)


def _pack(parts: list[_Part], n: int) -> npt.NDArray[np.uint8]:
    """Row-interleave ``parts`` (each of n rows) into one contiguous byte array.

    Each part is written with its given element dtype (big-endian for numbers), so the
    byte swap happens in the same pass as the interleaving.
    """
    names, formats, offsets = [], [], []
    position = 0
    for i, (element, values) in enumerate(parts):
        shape = values.shape[1:]
        names.append(f"f{i}")
        formats.append((element, shape) if shape else element)
        offsets.append(position)
        position += element.itemsize * int(np.prod(shape, dtype=np.int64))
    if position == 0:
        return np.zeros(0, dtype=np.uint8)
    record = np.dtype(
        {"names": names, "formats": formats, "offsets": offsets, "itemsize": position}
    )
    rows = np.empty(n, dtype=record)
    for name, (_, values) in zip(names, parts, strict=True):
        rows[name] = values
    return rows.view(np.uint8)


class _Base64:
    """Base64 over a sequence of chunks, carrying incomplete 3-byte groups forward."""

    def __init__(self) -> None:
        self._rest = b""

    def feed(self, data: memoryview) -> Iterator[bytes]:
        """Encoded lines for ``data``; up to two trailing bytes wait for the next call."""
        data = data.cast("B") if data.format != "B" else data
        if self._rest:
            need = 3 - len(self._rest)
            if len(data) < need:
                self._rest += bytes(data)
                return
            yield binascii.b2a_base64(self._rest + bytes(data[:need]), newline=False)
            data = data[need:]
            self._rest = b""
        whole = len(data) - len(data) % 3
        if whole:
            yield binascii.b2a_base64(data[:whole], newline=True)
        self._rest = bytes(data[whole:])

    def finish(self) -> bytes:
        """The encoding of the bytes left over, padded; empty when none are."""
        rest, self._rest = self._rest, b""
        return binascii.b2a_base64(rest, newline=True) if rest else b""


# --- TABLEDATA ------------------------------------------------------------------------------


def _tabledata_rows(plans: list[ColumnPlan], batch: pa.RecordBatch) -> bytes:
    """``<TR><TD>..</TD>..</TR>`` lines for every row of ``batch``."""
    if batch.num_rows == 0:
        return b""
    pieces: list[pa.Array | pa.Scalar] = [pa.scalar("<TR><TD>", pa.large_string())]
    between = pa.scalar("</TD><TD>", pa.large_string())
    for i, (plan, column) in enumerate(zip(plans, batch.columns, strict=True)):
        if i:
            pieces.append(between)
        pieces.append(text_cells(plan, column))
    pieces.append(pa.scalar("</TD></TR>\n", pa.large_string()))
    rows = pc.binary_join_element_wise(*pieces, pa.scalar("", pa.large_string()))
    offsets = np.frombuffer(rows.buffers()[1], dtype=np.int64, count=batch.num_rows + 1)
    return memoryview(rows.buffers()[2])[: int(offsets[-1])].tobytes()
