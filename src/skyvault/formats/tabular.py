"""Streaming CSV, TSV and JSON result writers: Arrow record batches in, UTF-8 chunks out.

Cells are formatted a whole column at a time with Arrow compute kernels:

* numbers in their shortest round-trip form, booleans ``true``/``false``, timestamps as
  DALI ISO-8601 (``YYYY-MM-DDThh:mm:ss[.ffffff]``), arrays as space-separated values (the
  VOTable TABLEDATA form); NULL is the empty cell;
* CSV (RFC 4180): a header line of column names, CRLF line ends, a cell quoted with ``"``
  (doubled inside) when it holds a comma, quote, CR or LF;
* TSV (``text/tab-separated-values``): a header line, LF line ends; tabs, CR and LF inside a
  cell become spaces since the format has no quoting;
* JSON: ``{"metadata": [FIELD...], "data": [[row]...], "status": "OK"|"OVERFLOW"|"ERROR"}``
  (``"message"`` too when the status is ERROR), where each FIELD object holds ``name``,
  ``datatype`` and, when set, ``arraysize``, ``xtype``, ``unit``, ``ucd``, ``utype``,
  ``description``.  NaN and infinities, which JSON cannot write, are ``null``.

Errors while rows are streamed: JSON ends the document with ``"status": "ERROR"``.  CSV and
TSV have no place for a status (DALI says as much), so the writer re-raises and the HTTP
edge aborts the response: the client sees a broken transfer, never a clean truncated file.

Speed (CSV, TSV and JSON over 1M rows per core-second; ``benchmarks/bench_perf.py``): a
batch never becomes Python objects.  Its rows are joined by Arrow kernels into one string
array whose data buffer *is* the chunk; quoting and escaping are only looked for in columns
whose text can hold the characters (strings, arrays), and only rows that need them are
rewritten.  JSON numbers are Python's float ``repr`` (what ``json.dumps`` writes): Arrow
formats floats with the same digits, in another layout for some magnitudes, so its text is
kept where the value and the text say the layouts agree and only the other cells are
rewritten (see ``_json_floats``); strings are escaped as ``json.dumps`` escapes them by
Arrow's substring replacement, in the rows that hold a character to escape (found by a scan
of the data buffer).  Any other type takes the general path of ``json.dumps`` per cell.
pyarrow's own CSV writer quotes every string cell and formats differently, so it would
change the bytes clients get.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from skyvault.catalog.metadata import ColumnMeta
from skyvault.errors import InternalError
from skyvault.formats._stream import ResultStream

__all__ = ["field_json", "text_column", "write_csv", "write_json", "write_tsv"]

_EMPTY = pa.scalar("", pa.large_string())


def text_column(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The cells of ``column`` as text (large strings); NULL stays NULL."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    t = column.type
    if pa.types.is_timestamp(t):
        text = pc.strftime(column, format="%Y-%m-%dT%H:%M:%S")
    elif pa.types.is_date(t):
        text = pc.strftime(column, format="%Y-%m-%d")
    elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        flat = text_column(column.flatten())
        offsets = column.offsets if not pa.types.is_fixed_size_list(t) else None
        if offsets is None:
            size = t.list_size
            offsets = pa.array(range(0, (len(column) + 1) * size, size), pa.int32())
            base = 0
        else:
            base = offsets[0].as_py()
            offsets = pc.subtract(offsets, base)
        lists = pa.LargeListArray.from_arrays(
            pc.cast(offsets, pa.int64()), flat, mask=column.is_null()
        )
        text = pc.binary_join(lists, pa.scalar(" ", pa.large_string()))
    elif pa.types.is_binary(t) or pa.types.is_large_binary(t):
        hexed = [v.hex() if v is not None else None for v in column.to_pylist()]
        text = pa.array(hexed, pa.large_string())
    else:
        text = pc.cast(column, pa.large_string())
    return pc.cast(text, pa.large_string())


def _text(value: str) -> pa.Scalar:
    return pa.scalar(value, pa.large_string())


def _plain(t: pa.DataType) -> bool:
    """Whether the text of every cell of type ``t`` is free of quotes, separators (``,``
    and tab) and line breaks: numbers, booleans, dates and times."""
    return bool(
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_boolean(t)
        or pa.types.is_timestamp(t)
        or pa.types.is_date(t)
    )


def _concatenated(text: pa.Array, skip: int = 0) -> bytes:
    """The UTF-8 of every cell of ``text`` (large strings, no NULLs), back to back, but
    for its first ``skip`` bytes: the array's data buffer, copied once, with no Python
    string per cell."""
    _, offsets, data = text.buffers()
    bounds = np.frombuffer(offsets, dtype=np.int64)
    start, stop = int(bounds[text.offset]) + skip, int(bounds[text.offset + len(text)])
    if data is None or stop <= start:
        return b""
    chunk: bytes = data.slice(start, stop - start).to_pybytes()
    return chunk


def _lines(cells: list[pa.Array], separator: str, start: str, end: str) -> pa.Array:
    """``start + cells joined by separator + end`` for each row (NULL cells empty)."""
    filled = [pc.fill_null(c, _EMPTY) if c.null_count else c for c in cells]
    rows = pc.binary_join_element_wise(*filled, _text(separator))
    return pc.binary_join_element_wise(_text(start), rows, _text(end), _EMPTY)


def _rows(cells: list[pa.Array], separator: str, line_end: str) -> bytes:
    if not cells or len(cells[0]) == 0:
        return b""
    return _concatenated(_lines(cells, separator, "", line_end))


def _csv_cell(column: pa.Array) -> pa.Array:
    text = text_column(column)
    if _plain(column.type):
        return text
    needs = pc.match_substring_regex(text, r'[",\r\n]')
    if not pc.any(needs).as_py():
        return text
    quote = pa.scalar('"', pa.large_string())
    quoted = pc.binary_join_element_wise(
        quote, pc.replace_substring(text, '"', '""'), quote, _EMPTY
    )
    return pc.if_else(pc.fill_null(needs, False), quoted, text)


def _csv_header(name: str) -> str:
    if any(ch in name for ch in ',"\r\n'):
        return '"' + name.replace('"', '""') + '"'
    return name


def _tsv_cell(column: pa.Array) -> pa.Array:
    text = text_column(column)
    if _plain(column.type):
        return text
    return pc.replace_substring_regex(text, r"[\t\r\n]", " ")


def _delimited(
    batches: Iterable[pa.RecordBatch],
    fields: Sequence[ColumnMeta],
    cell: Callable[[pa.Array], pa.Array],
    header: Callable[[str], str],
    separator: str,
    line_end: str,
) -> Iterator[bytes]:
    yield (separator.join(header(f.name) for f in fields) + line_end).encode()
    for batch in batches:
        if batch.num_columns != len(fields):
            raise InternalError(
                f"result batch has {batch.num_columns} columns for {len(fields)} fields"
            )
        chunk = _rows([cell(c) for c in batch.columns], separator, line_end)
        if chunk:
            yield chunk


def write_csv(
    batches: Iterable[pa.RecordBatch],
    fields: Sequence[ColumnMeta],
    *,
    overflow: bool | Callable[[], bool] = False,
    infos: Sequence[tuple[str, str, str | None]] = (),
) -> Iterator[bytes]:
    """Stream the result as CSV (RFC 4180).  ``overflow`` and ``infos`` have no place here."""
    return _delimited(batches, fields, _csv_cell, _csv_header, ",", "\r\n")


def write_tsv(
    batches: Iterable[pa.RecordBatch],
    fields: Sequence[ColumnMeta],
    *,
    overflow: bool | Callable[[], bool] = False,
    infos: Sequence[tuple[str, str, str | None]] = (),
) -> Iterator[bytes]:
    """Stream the result as tab-separated values.  ``overflow``, ``infos`` are not written."""
    clean: Callable[[str], str] = lambda name: name.replace("\t", " ")  # noqa: E731
    return _delimited(batches, fields, _tsv_cell, clean, "\t", "\n")


# --- JSON -----------------------------------------------------------------------------------


def field_json(meta: ColumnMeta) -> dict[str, str]:
    """The JSON description of one result column."""
    out = {"name": meta.name, "datatype": meta.datatype}
    for key in ("arraysize", "xtype", "unit", "ucd", "utype", "description"):
        value = getattr(meta, key)
        if value:
            out[key] = value
    return out


def _json_value(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    if isinstance(value, bytes):
        return list(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


_JSON_ESCAPES = {
    "\\": "\\\\",  # first: the backslashes the others add stay single
    '"': '\\"',
    **{chr(code): f"\\u{code:04x}" for code in range(0x20)},
    **{"\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"},
}
"""How ``json.dumps`` (``ensure_ascii=False``) escapes characters in a string: two
characters for some, ``\\u00XX`` for the other control characters."""


def _rows_holding(text: pa.Array, chars: bytes, below: int = 0) -> np.ndarray:
    """Which cells of ``text`` (large strings) hold one of the ASCII ``chars`` or a byte
    below ``below``: a few comparisons over the array's data buffer, no Python object per
    cell.  A NULL cell may be marked (its slot may hold bytes); callers keep NULLs as they
    are.  An ASCII byte is never part of another character's UTF-8."""
    _, offsets, data = text.buffers()
    bounds = np.frombuffer(offsets, dtype=np.int64)[text.offset : text.offset + len(text) + 1]
    found = np.zeros(len(text), dtype=bool)
    if data is None or len(text) == 0 or bounds[-1] == bounds[0]:
        return found
    utf8 = np.frombuffer(data, dtype=np.uint8)[bounds[0] : bounds[-1]]
    marked = utf8 < below
    for char in chars:
        marked |= utf8 == char
    hits = np.flatnonzero(marked) + bounds[0]
    found[np.searchsorted(bounds, hits, side="right") - 1] = True
    return found


def _json_escaped(text: pa.Array) -> pa.Array:
    """Each string's characters escaped as ``json.dumps`` escapes them (no quotes added):
    one substring replacement per character to escape that the cells hold."""
    _, offsets, data = text.buffers()
    bounds = np.frombuffer(offsets, dtype=np.int64)[text.offset : text.offset + len(text) + 1]
    if data is None or len(text) == 0:
        return text
    utf8 = np.frombuffer(data, dtype=np.uint8)[bounds[0] : bounds[-1]]
    held = np.bincount(utf8, minlength=256)
    for char, escape in _JSON_ESCAPES.items():
        if held[ord(char)]:
            text = pc.replace_substring(text, char, escape)
    return text


def _json_strings(text: pa.Array) -> pa.Array:
    """Each string cell as a JSON string literal, as ``json.dumps`` writes it; NULL stays.

    Only the cells that hold a character to escape (rare in real data) are escaped, by
    Arrow's substring replacement, one escape at a time."""
    needs = _rows_holding(text, b'"\\', below=0x20)  # what json.dumps escapes
    if needs.any():
        rows = pa.array(needs)
        text = pc.replace_with_mask(text, rows, _json_escaped(text.filter(rows)))
    quote = _text('"')
    return pc.binary_join_element_wise(quote, text, quote, _EMPTY)


_REPR_FIXED = (1e-4, 1e16)
"""Python's ``repr`` of a float is fixed-point (no exponent) for ``0`` and for magnitudes
from 1e-4 up to (not including) 1e16: its shortest digits' decimal exponent is then from
-4 to 15 (rounding is monotonic, so comparing the double itself decides exactly)."""


def _json_floats(column: pa.Array) -> pa.Array:
    """Python's ``repr`` of each value (what ``json.dumps`` writes); NULL, NaN and the
    infinities ``null``.

    Arrow's cast to text writes the same shortest round-trip digits as ``repr`` (checked
    on hundreds of thousands of values from subnormals to 1e308), laid out fixed-point or
    with an exponent by a rule of its own (``1e+15``, ``1.234567890123456e+14``,
    ``0.00001``, ``1e-7``).  Python's layout depends on the magnitude only
    (``_REPR_FIXED``), so the value and one test of Arrow's text (is there
    an ``e``?) say which cells already read as ``repr``: fixed-point in both and not a
    whole number (the common case, kept as it is).  The others are rewritten, as few as
    there are: a whole number gets Python's ``.0``, an exponent Python's two digits at
    least (``1e-07``), a cell whose layouts differ is formatted by ``repr``, a NULL, NaN
    or infinity is ``null``.  No Python object is made for a kept cell.
    """
    values = pc.cast(column, pa.float64())  # a float32's double, as to_pylist() gives
    text = pc.cast(values, pa.large_string())
    x = values.to_numpy(zero_copy_only=False)  # a NULL is NaN: null
    arrow_exponent = _rows_holding(text, b"e")
    with np.errstate(invalid="ignore"):
        size = np.abs(x)
        fixed = ((size >= _REPR_FIXED[0]) & (size < _REPR_FIXED[1])) | (x == 0.0)
        whole = np.floor(x) == x  # NaN: False; ±inf: True, but not fixed: not kept
    kept = fixed & ~arrow_exponent & ~whole
    if kept.all():
        return text
    rows = np.flatnonzero(~kept)
    x, fixed, whole, arrow_exponent = x[rows], fixed[rows], whole[rows], arrow_exponent[rows]
    out = text.take(pa.array(rows))
    add_dot_0 = fixed & whole & ~arrow_exponent
    if add_dot_0.any():
        dotted = pc.binary_join_element_wise(out, _text(".0"), _EMPTY)
        out = pc.if_else(pa.array(add_dot_0), dotted, out)
    finite = np.isfinite(x)
    pad = ~fixed & arrow_exponent & finite
    if pad.any():
        padded = pc.replace_substring_regex(out, r"e([-+])([0-9])$", r"e\10\2")
        out = pc.if_else(pa.array(pad), padded, out)
    if not finite.all():
        out = pc.if_else(pa.array(finite), out, _text("null"))
    other = finite & (fixed == arrow_exponent)
    if other.any():
        texts = [repr(v) for v in x[other].tolist()]
        out = pc.replace_with_mask(out, pa.array(other), pa.array(texts, pa.large_string()))
    return pc.replace_with_mask(text, pa.array(~kept), out)


def _json_cells(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Each cell of ``column`` as JSON text, exactly as ``json.dumps`` of its value."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    t = column.type
    if pa.types.is_float32(t) or pa.types.is_float64(t):
        return _json_floats(column)
    if pa.types.is_integer(t) or pa.types.is_boolean(t):
        text = pc.cast(column, pa.large_string())  # as Python's int repr, true / false
    elif pa.types.is_string(t) or pa.types.is_large_string(t):
        text = _json_strings(pc.cast(column, pa.large_string()))
    elif pa.types.is_timestamp(t) or pa.types.is_date(t):
        text = _json_strings(text_column(column))
    else:  # arrays, binary, anything else: the general path, a cell at a time
        values = [json.dumps(_json_value(v), ensure_ascii=False) for v in column.to_pylist()]
        return pa.array(values, pa.large_string())
    return pc.fill_null(text, _text("null"))


_JSON_ROW_START = ",\n["


def _json_rows(cells: list[pa.Array]) -> pa.Array:
    """Each row as ``,\\n[cell, cell...]`` (the cells hold no NULL).  Two joins: Arrow's
    join is faster with one separator than with the text between cells as arguments."""
    rows = pc.binary_join_element_wise(*cells, _text(", "))
    return pc.binary_join_element_wise(_text(_JSON_ROW_START), rows, _text("]"), _EMPTY)


def _info_json(name: str, value: str, content: str | None) -> dict[str, str]:
    out = {"name": name, "value": value}
    if content:
        out["content"] = content
    return out


def write_json(
    batches: Iterable[pa.RecordBatch],
    fields: Sequence[ColumnMeta],
    *,
    overflow: bool | Callable[[], bool] = False,
    infos: Sequence[tuple[str, str, str | None]] = (),
) -> Iterator[bytes]:
    """Stream the result as the JSON document described in the module docstring."""
    head: dict[str, object] = {"metadata": [field_json(f) for f in fields]}
    if infos:
        head["info"] = [_info_json(n, v, c) for n, v, c in infos]
    opening = json.dumps(head, ensure_ascii=False)[:-1] + ', "data": [\n'
    yield opening.encode()
    skip = len(_JSON_ROW_START) - 1  # the first row has no ",\n" before it
    stream = ResultStream(batches, overflow)
    for batch in stream:
        if not batch.num_rows or not batch.num_columns:
            continue
        yield _concatenated(_json_rows([_json_cells(c) for c in batch.columns]), skip)
        skip = 0
    status, message = stream.status()
    tail = {"status": status} if message is None else {"status": status, "message": message}
    yield ("\n], " + json.dumps(tail, ensure_ascii=False)[1:] + "\n").encode()
