"""FITS binary-table result writer that streams with bounded memory, via a disk spool.

A FITS header states the row count (``NAXIS2``) and each string column's width (``TFORMn =
'nA'``) before the rows, and neither is known until every row has been seen.  So the
writer works in two passes over a temporary file:

1. every record batch of the result is converted (text columns to UTF-8 strings) and
   appended to an Arrow IPC stream in the spool directory, while rows, string widths,
   NULLs of integer columns and the size of the variable-length-array heap are counted;
2. the primary HDU and the ``BINTABLE`` header, now complete, are sent, then the rows are
   read back from the spool a batch at a time, encoded as big-endian FITS rows and sent in
   chunks of about 1 MiB, then the heap (same order), then the padding to 2880 bytes.

Memory holds one batch (and one chunk) whatever the row count; the disk holds the spool
for as long as the response lasts.  The spool file is removed when the iterator ends,
fails or is closed (a client gone away), and ``max_spool_bytes`` refuses a result whose
spool would pass it (:class:`~skyvault.errors.LimitExceeded`), before anything was sent.
Everything that can fail with the query fails in pass 1, before the first byte.  A process
killed meanwhile leaves its spool behind; the file's name says which host and process wrote
it (``skyvault-fits-HOST-PID-RANDOM.arrows``, see :func:`spool_owner`), so a service
starting up removes only the files of processes of its host that are gone.

Column conventions: ``TTYPEn`` (name), ``TFORMn``, ``TUNITn`` (unit), ``TNULLn`` for
integer columns holding NULLs (the type's most negative value, 255 for bytes), and the VO
conventions ``TUCDn`` (UCD), ``TCOMMn`` (description, cut to the card) and ``TXTYPn``
(DALI xtype).  NULL floating-point values are NaN and NULL logicals the byte 0, as the
FITS standard says.  Strings are fixed-width UTF-8 (``nA``, the longest value's bytes; NULL
strings are empty); timestamps and other types without a FITS form are written as text.
Arrays: fixed-size ones as repeated columns (``2D``), variable ones as FITS variable-length
arrays (``PD(n)``, or ``QD(n)`` once the heap passes 2 GiB); a NULL array is empty.
Header text is kept to printable ASCII (other characters are transliterated or replaced by
``?``).  A MAXREC overflow is recorded as ``QUERY_ST = 'OVERFLOW'`` in the extension header.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import tempfile
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from astropy.io import fits

from skyvault.catalog.metadata import ColumnMeta
from skyvault.errors import InternalError, LimitExceeded, internal_error
from skyvault.formats.tabular import text_column
from skyvault.interprocess import process_alive

__all__ = [
    "SPOOL_PREFIX",
    "SPOOL_SUFFIX",
    "spool_host",
    "spool_owner",
    "sweep_spool",
    "write_fits",
]

log = logging.getLogger(__name__)

#: Name prefix of the spool files in the spool directory: they are named
#: ``skyvault-fits-HOST-PID-RANDOM.arrows`` (before: ``skyvault-fits-RANDOM.arrows``).
SPOOL_PREFIX = "skyvault-fits-"
#: Name suffix of the spool files.
SPOOL_SUFFIX = ".arrows"

_CHUNK = 1 << 20
_BLOCK = 2880
_INT_CODES = {"unsignedByte": "B", "short": "I", "int": "J", "long": "K"}
_FLOAT_CODES = {"float": "E", "double": "D"}
_INT_NULLS = {"B": 255, "I": -(2**15), "J": -(2**31), "K": -(2**63)}
#: Big-endian element types of the FITS codes.
_DTYPES = {"L": ">u1", "B": ">u1", "I": ">i2", "J": ">i4", "K": ">i8", "E": ">f4", "D": ">f8"}
_ARROW = {"B": pa.uint8(), "I": pa.int16(), "J": pa.int32(), "K": pa.int64(),
          "E": pa.float32(), "D": pa.float64()}  # fmt: skip
_INT_ORDER = "BIJK"
#: The narrowest FITS integer code holding every value of an Arrow integer type.
_INT_NEEDS = {pa.int8(): "I", pa.uint8(): "B", pa.int16(): "I", pa.uint16(): "J",
              pa.int32(): "J", pa.uint32(): "K", pa.int64(): "K", pa.uint64(): "K"}  # fmt: skip
#: The largest heap P descriptors (32-bit offsets) can address.
_P_HEAP = 2**31 - 1


@dataclass
class _Column:
    """How one result column is written, and what pass 1 learnt about it."""

    meta: ColumnMeta
    kind: str  # "scalar", "text", "fixed" (repeated), "var" (variable-length array)
    code: str  # FITS type letter of the values (elements for arrays); "A" for text
    size: int = 1  # elements per row of a fixed array
    declared: int | None = None  # var: the arraysize the metadata declares, if fixed
    width: int = 1  # text: bytes of the longest value
    nulls: bool = False  # an integer value (or element) was NULL: write TNULL
    null_rows: bool = False  # var: a NULL array was seen
    longest: int = 0  # var: the longest array
    shortest: int | None = None  # var: the shortest non-NULL array
    heap: int = 0  # var: bytes of all its arrays

    def settle(self) -> None:
        """After pass 1: a variable-length column whose arrays all have the size its
        metadata declares (a POINT, a CIRCLE...) is written as a fixed-size one."""
        if self.kind != "var" or self.declared is None:
            return
        if self.shortest is None or self.shortest == self.longest == self.declared:
            self.kind, self.size, self.heap = "fixed", self.declared, 0
            self.nulls = self.nulls or (self.is_int and self.null_rows)

    @property
    def is_int(self) -> bool:
        return self.code in _INT_NULLS


def _plan(meta: ColumnMeta, t: pa.DataType) -> _Column:
    """The FITS form of a column of Arrow type ``t`` described by ``meta``."""
    if pa.types.is_boolean(t):
        return _Column(meta, "scalar", "L")
    code = _value_code(meta, t)
    if code is not None:
        return _Column(meta, "scalar", code)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        element = t.value_type
        code = "L" if pa.types.is_boolean(element) else _value_code(meta, element)
        if code is not None:
            if pa.types.is_fixed_size_list(t):
                return _Column(meta, "fixed", code, size=t.list_size)
            size = meta.arraysize
            declared = int(size) if size and size.isdigit() and int(size) > 0 else None
            return _Column(meta, "var", code, declared=declared)
    return _Column(meta, "text", "A")


def _value_code(meta: ColumnMeta, t: pa.DataType) -> str | None:
    """The FITS code of numeric values of type ``t``: the declared datatype's, widened
    when the Arrow integers would not fit it; None when not numeric."""
    declared = _INT_CODES.get(meta.datatype) or _FLOAT_CODES.get(meta.datatype)
    if declared is None or not (pa.types.is_integer(t) or pa.types.is_floating(t)):
        return None
    if declared in _INT_NULLS and pa.types.is_integer(t):
        needed = _INT_NEEDS.get(t, "K")
        return max(declared, needed, key=_INT_ORDER.index)
    if declared in _INT_NULLS:  # floating values declared as integers: keep them
        return "D"
    return declared


def _tform(column: _Column, heap_code: str) -> str:
    if column.kind == "text":
        return f"{column.width}A"
    if column.kind == "fixed":
        return f"{column.size}{column.code}"
    if column.kind == "var":
        return f"{heap_code}{column.code}({column.longest})"
    return column.code


def _cell_dtype(column: _Column, heap_code: str) -> tuple[str, ...] | tuple[str, int]:
    if column.kind == "text":
        return (f"S{column.width}",)
    if column.kind == "fixed":
        return (_DTYPES[column.code], column.size)
    if column.kind == "var":
        return (">i4" if heap_code == "P" else ">i8", 2)
    return (_DTYPES[column.code],)


# --- encoding values ---------------------------------------------------------------------------


def _elements(values: pa.Array, column: _Column) -> np.ndarray:
    """Flat ``values`` (no nesting) as big-endian FITS elements, NULLs encoded."""
    if column.code == "L":
        flags = pc.fill_null(values, False).to_numpy(zero_copy_only=False).astype(bool)
        valid = pc.is_valid(values).to_numpy(zero_copy_only=False).astype(bool)
        codes = np.where(flags, ord("T"), ord("F")).astype(np.uint8)
        return np.where(valid, codes, 0).astype(_DTYPES["L"])
    arrow = _ARROW[column.code]
    cast = pc.cast(values, arrow, safe=False)
    if column.is_int:
        if cast.null_count:
            cast = pc.fill_null(cast, pa.scalar(_INT_NULLS[column.code], arrow))
    else:
        cast = pc.fill_null(cast, pa.scalar(float("nan"), arrow))
    return np.asarray(cast.to_numpy(zero_copy_only=False), dtype=_DTYPES[column.code])


def _null_element(column: _Column) -> float | int:
    if column.code == "L":
        return 0
    return _INT_NULLS[column.code] if column.is_int else float("nan")


def _fixed_cells(array: pa.Array, column: _Column) -> np.ndarray:
    """Fixed-size arrays (a FixedSizeListArray, or a ListArray whose non-NULL arrays all
    have ``column.size`` elements) as a (rows, size) block; a NULL array is NULL elements."""
    size = column.size
    if pa.types.is_fixed_size_list(array.type):
        values = array.values.slice(array.offset * size, len(array) * size)
        cells = _elements(values, column).reshape(len(array), size)
        if array.null_count:
            missing = array.is_null().to_numpy(zero_copy_only=False).astype(bool)
            cells[missing] = _null_element(column)
        return cells
    cells = np.full((len(array), size), _null_element(column), dtype=_DTYPES[column.code])
    valid = array.is_valid().to_numpy(zero_copy_only=False).astype(bool)
    cells[valid] = _elements(array.flatten(), column).reshape(-1, size)
    return cells


def _counts(array: pa.Array) -> np.ndarray:
    lengths = pc.fill_null(pc.list_value_length(array), 0)
    return np.asarray(lengths.to_numpy(zero_copy_only=False), dtype=np.int64)


def _text_cells(array: pa.Array, width: int) -> np.ndarray:
    encoded = pc.cast(pc.fill_null(array, ""), pa.large_binary())
    return np.array(encoded.to_pylist(), dtype=f"S{width}")


# --- pass 1: spool -----------------------------------------------------------------------------


def _spooled(batch: pa.RecordBatch, columns: Sequence[_Column]) -> list[pa.Array]:
    """``batch`` in the spool's form (text columns as strings), the columns' stats updated."""
    arrays: list[pa.Array] = []
    for column, array in zip(columns, batch.columns, strict=True):
        if column.kind == "text":
            text = text_column(array)
            longest = pc.max(pc.binary_length(text)).as_py()
            column.width = max(column.width, longest or 0)
            arrays.append(text)
            continue
        if column.kind == "var":
            lengths = pc.list_value_length(array)
            least, most = pc.min_max(lengths).values()
            if most.is_valid:
                column.longest = max(column.longest, most.as_py())
                shortest = column.shortest
                column.shortest = (
                    least.as_py() if shortest is None else min(shortest, least.as_py())
                )
            column.null_rows = column.null_rows or array.null_count > 0
            column.heap += (
                int(pc.sum(lengths).as_py() or 0) * np.dtype(_DTYPES[column.code]).itemsize
            )
            if column.is_int:
                column.nulls = column.nulls or array.flatten().null_count > 0
        elif column.kind == "fixed":
            if column.is_int:
                values = array.values.slice(array.offset * column.size, len(array) * column.size)
                column.nulls = column.nulls or array.null_count > 0 or values.null_count > 0
        elif column.is_int:
            column.nulls = column.nulls or array.null_count > 0
        arrays.append(array)
    return arrays


def _no_space() -> InternalError:
    return internal_error(
        "the FITS result could not be prepared in temporary space", logged="the fault"
    )


@dataclass
class _Spool:
    rows: int = 0
    heap: int = 0
    size: int = 0


def _spool(
    batches: Iterable[pa.RecordBatch],
    columns: Sequence[_Column],
    path: Path,
    max_bytes: int | None,
) -> _Spool:
    """Pass 1: ``batches`` appended to the Arrow IPC stream at ``path``."""
    spool = _Spool()
    writer: pa.ipc.RecordBatchStreamWriter | None = None
    sink = pa.OSFile(str(path), "wb")
    try:
        for batch in batches:
            if not batch.num_rows:
                continue
            arrays = _spooled(batch, columns)
            converted = pa.RecordBatch.from_arrays(
                arrays, names=[f"c{i}" for i in range(len(arrays))]
            )
            spool.rows += batch.num_rows
            try:
                if writer is None:
                    writer = pa.ipc.new_stream(sink, converted.schema)
                writer.write_batch(converted)
                spool.size = sink.tell()
            except OSError as exc:
                log.error("could not write the FITS spool %s: %s", path, exc)
                raise _no_space() from None
            if max_bytes is not None and spool.size > max_bytes:
                raise LimitExceeded(
                    f"the result is too large for FITS here: FITS results are written to "
                    f"temporary space before they are sent, at most {max_bytes:,} bytes",
                    hint="lower MAXREC or select fewer columns, or choose VOTable, Parquet "
                    "or CSV, which stream without temporary space",
                )
    finally:
        if writer is not None:
            writer.close()
        sink.close()
    for column in columns:
        column.settle()
    spool.heap = sum(c.heap for c in columns if c.kind == "var")
    return spool


# --- pass 2: header and data -------------------------------------------------------------------

_TRANSLITERATE = str.maketrans({"–": "-", "—": "-", "‘": "'", "’": "'", "“": '"', "”": '"'})


def _ascii(text: str) -> str:
    """``text`` as printable ASCII (header cards allow nothing else)."""
    folded = unicodedata.normalize("NFKD", text.translate(_TRANSLITERATE))
    kept = "".join(ch for ch in folded if not unicodedata.combining(ch))
    return "".join(ch if " " <= ch <= "~" else "?" for ch in kept)


def _header(
    columns: Sequence[_Column],
    spool: _Spool,
    row_bytes: int,
    heap_code: str,
    status: str,
    infos: Sequence[tuple[str, str, str | None]],
) -> fits.Header:
    header = fits.Header()
    header["XTENSION"] = ("BINTABLE", "binary table extension")
    header["BITPIX"] = (8, "array data type")
    header["NAXIS"] = (2, "number of array dimensions")
    header["NAXIS1"] = (row_bytes, "length of a row, bytes")
    header["NAXIS2"] = (spool.rows, "number of rows")
    header["PCOUNT"] = (spool.heap, "size of the heap, bytes")
    header["GCOUNT"] = (1, "number of groups")
    header["TFIELDS"] = (len(columns), "number of columns")
    for i, column in enumerate(columns, start=1):
        meta = column.meta
        header[f"TTYPE{i}"] = _ascii(meta.name)
        header[f"TFORM{i}"] = _tform(column, heap_code)
        if meta.unit:
            header[f"TUNIT{i}"] = _ascii(meta.unit)
        if column.nulls:
            header[f"TNULL{i}"] = _INT_NULLS[column.code]
        if meta.ucd:
            header[f"TUCD{i}"] = _ascii(meta.ucd)
        if meta.description:
            header[f"TCOMM{i}"] = _ascii(meta.description)[:68]
        if meta.xtype:
            header[f"TXTYP{i}"] = _ascii(meta.xtype)
    header["QUERY_ST"] = (status, "DALI QUERY_STATUS of the result")
    for name, value, _ in infos:
        key = name.upper()[:8]
        if key.isalnum():
            header[key] = _ascii(value)
    return header


def _pieces(path: Path, rows: int) -> Iterator[pa.RecordBatch]:
    """The spooled batches, read back one at a time, cut into pieces of ``rows`` rows."""
    with pa.OSFile(str(path), "rb") as source:
        if source.size() == 0:
            return
        reader = pa.ipc.open_stream(source)
        for batch in reader:
            for start in range(0, batch.num_rows, rows):
                yield batch.slice(start, rows)


def _rows(
    piece: pa.RecordBatch, columns: Sequence[_Column], dtype: np.dtype, heap_at: int
) -> tuple[bytes, int]:
    """The main-table bytes of ``piece`` and the heap position after its arrays."""
    cells = np.zeros(piece.num_rows, dtype=dtype)
    for i, (column, array) in enumerate(zip(columns, piece.columns, strict=True)):
        name = f"c{i}"
        if column.kind == "text":
            cells[name] = _text_cells(array, column.width)
        elif column.kind == "fixed":
            cells[name] = _fixed_cells(array, column)
        elif column.kind == "var":
            counts = _counts(array)
            size = np.dtype(_DTYPES[column.code]).itemsize
            ends = np.cumsum(counts) * size
            cells[name][:, 0] = counts
            cells[name][:, 1] = heap_at + ends - counts * size
            heap_at += int(ends[-1]) if len(ends) else 0
        else:
            cells[name] = _elements(array, column)
    return cells.tobytes(), heap_at


def _heap(piece: pa.RecordBatch, columns: Sequence[_Column]) -> bytes:
    """The heap bytes of ``piece``: its arrays, column by column (the order :func:`_rows`
    gave them offsets in)."""
    parts = [
        _elements(array.flatten(), column).tobytes()
        for column, array in zip(columns, piece.columns, strict=True)
        if column.kind == "var"
    ]
    return b"".join(parts)


def _rechunked(parts: Iterable[bytes]) -> Iterator[bytes]:
    """``parts`` regrouped into chunks of about :data:`_CHUNK` bytes."""
    buffer = bytearray()
    for part in parts:
        buffer += part
        if len(buffer) >= _CHUNK:
            yield bytes(buffer)
            buffer.clear()
    if buffer:
        yield bytes(buffer)


def spool_host() -> str:
    """This host's name as spool file names carry it (characters unsafe in a name: ``_``)."""
    return re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname()) or "_"


def spool_owner(name: str) -> tuple[str, int] | None:
    """The host name (as :func:`spool_host` writes it) and process id in spool file name
    ``name``; None when ``name`` is not a spool file's or has the old form without them.

    The host may contain ``-``: the process id and the random part (``mkstemp``'s, never a
    ``-``) are the last two fields.
    """
    if not (name.startswith(SPOOL_PREFIX) and name.endswith(SPOOL_SUFFIX)):
        return None
    host, _, rest = name[len(SPOOL_PREFIX) : -len(SPOOL_SUFFIX)].rpartition("-")
    host, _, pid = host.rpartition("-")
    if not (host and rest and pid.isascii() and pid.isdigit()):
        return None
    return host, int(pid)


#: Age after which a spool file named the old way (no host, no process id) is removed, s.
OLD_SPOOL_AGE = 24 * 3600.0


def sweep_spool(directory: Path | None) -> int:
    """Remove the FITS spool files that crashed processes left in ``directory``; how many.

    ``directory`` is the spool directory (None: the system temporary directory), which
    other server processes and replicas may share: only files written on this host by a
    process that is gone are removed (and files named the old way, without host and
    process, once a day old).  A file of a live process, of this one, or of another host
    stays.
    """
    directory = directory if directory is not None else Path(tempfile.gettempdir())
    host = spool_host()
    removed = 0
    try:
        paths = list(directory.glob(f"{SPOOL_PREFIX}*{SPOOL_SUFFIX}"))
    except OSError as exc:
        log.warning("could not look for FITS spool files left in %s: %s", directory, exc)
        return 0
    for path in paths:
        owner = spool_owner(path.name)
        try:
            if owner is None:
                left = time.time() - path.lstat().st_mtime >= OLD_SPOOL_AGE
            else:
                writer_host, pid = owner
                left = writer_host == host and pid != os.getpid() and not process_alive(pid)
            if left:
                path.unlink()
                removed += 1
        except FileNotFoundError:  # another process's sweep was first
            continue
        except OSError as exc:
            log.warning("could not remove the FITS spool file %s: %s", path, exc)
    if removed:
        log.info("removed %d FITS spool file(s) left in %s", removed, directory)
    return removed


def _write(
    batches: Iterable[pa.RecordBatch],
    columns: list[_Column],
    overflow: bool | Callable[[], bool],
    infos: Sequence[tuple[str, str, str | None]],
    spool_dir: Path | None,
    max_spool_bytes: int | None,
) -> Iterator[bytes]:
    directory = Path(spool_dir) if spool_dir is not None else Path(tempfile.gettempdir())
    try:
        directory.mkdir(parents=True, exist_ok=True)
        prefix = f"{SPOOL_PREFIX}{spool_host()}-{os.getpid()}-"
        handle, name = tempfile.mkstemp(prefix=prefix, suffix=SPOOL_SUFFIX, dir=directory)
    except OSError as exc:
        log.error("could not create a FITS spool file in %s: %s", directory, exc)
        raise _no_space() from None
    os.close(handle)
    path = Path(name)
    try:
        spool = _spool(batches, columns, path, max_spool_bytes)
        heap_code = "P" if spool.heap <= _P_HEAP else "Q"
        fields = [(f"c{i}", *_cell_dtype(c, heap_code)) for i, c in enumerate(columns)]
        dtype = np.dtype(fields)  # packed: FITS rows have no alignment padding
        status = "OVERFLOW" if (overflow() if callable(overflow) else overflow) else "OK"
        header = _header(columns, spool, dtype.itemsize, heap_code, status, infos)
        yield fits.PrimaryHDU().header.tostring().encode("ascii") + header.tostring().encode(
            "ascii"
        )
        piece_rows = max(1, _CHUNK // max(1, dtype.itemsize))

        def data() -> Iterator[bytes]:
            heap_at = 0
            for piece in _pieces(path, piece_rows):
                block, heap_at = _rows(piece, columns, dtype, heap_at)
                yield block
            if spool.heap:
                for piece in _pieces(path, piece_rows):
                    yield _heap(piece, columns)
            size = dtype.itemsize * spool.rows + spool.heap
            yield bytes(-size % _BLOCK)

        yield from _rechunked(data())
    finally:
        with contextlib.suppress(OSError):
            path.unlink()


def write_fits(
    batches: Iterable[pa.RecordBatch],
    fields: Sequence[ColumnMeta],
    *,
    schema: pa.Schema,
    overflow: bool | Callable[[], bool] = False,
    infos: Sequence[tuple[str, str, str | None]] = (),
    spool_dir: Path | None = None,
    max_spool_bytes: int | None = None,
) -> Iterator[bytes]:
    """Write the result as a FITS file with one binary-table extension (see the module
    docstring).

    Nothing happens until the iterator is first advanced: that first step reads the whole
    result into the spool (in ``spool_dir``, the system temporary directory by default) and
    answers the headers; errors of the query or of ``max_spool_bytes`` raise there.
    """
    if len(schema) != len(fields):
        raise InternalError(f"result has {len(schema)} columns for {len(fields)} fields")
    columns = [_plan(meta, f.type) for meta, f in zip(fields, schema, strict=True)]
    return _write(batches, columns, overflow, infos, spool_dir, max_spool_bytes)
