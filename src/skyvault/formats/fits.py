"""FITS binary-table result writer (astropy), for results of bounded size.

A FITS header states the row count (NAXIS2) before the rows, so this writer reads the
whole result first, builds a ``BINTABLE`` extension with :mod:`astropy.io.fits` and then
hands the file out in chunks.  Memory grows with the result: the TAP edge caps the rows of
a FITS result (``Settings.fits_row_limit``) and says so in the error when it is exceeded.

Column metadata: ``TTYPEn`` (name), ``TUNITn`` (unit), ``TNULLn`` for integer columns with
NULLs, and the VO conventions ``TUCDn`` (UCD), ``TCOMMn`` (description, cut to the card),
``TXTYPn`` (DALI xtype).  Strings are fixed-width ASCII-safe UTF-8 (``nA``), NULL strings
empty; variable-size arrays use FITS variable-length arrays (``PD()`` ...).  A MAXREC
overflow is recorded as ``QUERY_STATUS = 'OVERFLOW'`` in the extension header.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from astropy.io import fits

from skyvault.catalog.metadata import ColumnMeta
from skyvault.errors import InternalError, LimitExceeded
from skyvault.formats.tabular import text_column

__all__ = ["write_fits"]

_CHUNK = 1 << 20
_INT_CODES = {"unsignedByte": "B", "short": "I", "int": "J", "long": "K"}
_FLOAT_CODES = {"float": "E", "double": "D"}
_INT_NULLS = {"B": 255, "I": -(2**15), "J": -(2**31), "K": -(2**63)}
_NUMPY = {"B": np.uint8, "I": np.int16, "J": np.int32, "K": np.int64, "E": np.float32,
          "D": np.float64}  # fmt: skip


def _column(meta: ColumnMeta, values: pa.ChunkedArray) -> fits.Column:
    t = values.type
    array = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    kwargs: dict[str, object] = {"name": meta.name, "unit": meta.unit or None}
    if pa.types.is_boolean(t):
        flags = pc.fill_null(array, False).to_numpy(zero_copy_only=False).astype(bool)
        return fits.Column(format="L", array=flags, **kwargs)
    code = _INT_CODES.get(meta.datatype) or _FLOAT_CODES.get(meta.datatype)
    is_list = pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)
    if code is not None and not is_list and (pa.types.is_integer(t) or pa.types.is_floating(t)):
        dtype = _NUMPY[code]
        if code in _INT_NULLS:
            if array.null_count:
                kwargs["null"] = _INT_NULLS[code]
                array = pc.fill_null(array, _INT_NULLS[code])
            return fits.Column(
                format=code, array=array.to_numpy(zero_copy_only=False).astype(dtype), **kwargs
            )
        filled = pc.fill_null(pc.cast(array, pa.float64()), float("nan"))
        return fits.Column(
            format=code, array=filled.to_numpy(zero_copy_only=False).astype(dtype), **kwargs
        )
    if code is not None and is_list:
        dtype = _NUMPY[code]
        rows = [np.asarray(v if v is not None else [], dtype=dtype) for v in array.to_pylist()]
        if pa.types.is_fixed_size_list(t):
            size = t.list_size
            block = (
                np.stack([r if len(r) == size else np.zeros(size, dtype) for r in rows])
                if rows
                else np.zeros((0, size), dtype)
            )
            return fits.Column(format=f"{size}{code}", array=block, **kwargs)
        return fits.Column(
            format=f"P{code}()",
            array=np.array([*rows, np.zeros(0, dtype)], dtype=object)[:-1],
            **kwargs,
        )
    # Everything else is written as text (strings, timestamps, anything exotic).
    text = pc.fill_null(text_column(array), "").to_pylist()
    encoded = [s.encode("utf-8") for s in text]
    width = max((len(b) for b in encoded), default=1) or 1
    return fits.Column(format=f"{width}A", array=np.array(encoded, dtype=f"S{width}"), **kwargs)


def write_fits(
    batches: Iterable[pa.RecordBatch],
    fields: Sequence[ColumnMeta],
    *,
    schema: pa.Schema,
    overflow: bool | Callable[[], bool] = False,
    infos: Sequence[tuple[str, str, str | None]] = (),
    max_rows: int | None = None,
) -> Iterator[bytes]:
    """Write the result as a FITS file with one binary-table extension.

    ``max_rows`` refuses (:class:`~skyvault.errors.LimitExceeded`) a result with more rows.
    The file is built when the iterator is first advanced.
    """
    if len(schema) != len(fields):
        raise InternalError(f"result has {len(schema)} columns for {len(fields)} fields")
    collected: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        rows += batch.num_rows
        if max_rows is not None and rows > max_rows:
            raise LimitExceeded(
                f"a FITS result may hold at most {max_rows:,} rows",
                hint="lower MAXREC, or choose VOTable, Parquet or CSV, which stream",
            )
        collected.append(batch)
    table = pa.Table.from_batches(collected, schema=schema)
    columns = [_column(m, table.column(i)) for i, m in enumerate(fields)]
    hdu = fits.BinTableHDU.from_columns(columns)
    for i, meta in enumerate(fields, start=1):
        if meta.ucd:
            hdu.header[f"TUCD{i}"] = meta.ucd
        if meta.description:
            hdu.header[f"TCOMM{i}"] = meta.description[:68]
        if meta.xtype:
            hdu.header[f"TXTYP{i}"] = meta.xtype
    status = "OVERFLOW" if (overflow() if callable(overflow) else overflow) else "OK"
    hdu.header["QUERY_ST"] = (status, "DALI QUERY_STATUS of the result")
    for name, value, _ in infos:
        key = name.upper()[:8]
        if key.isalnum():
            hdu.header[key] = value
    buffer = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buffer)
    data = buffer.getvalue()
    return iter(data[i : i + _CHUNK] for i in range(0, len(data), _CHUNK))
