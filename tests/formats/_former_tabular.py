"""A frozen copy of the CSV/TSV/JSON writers as they were before they were made faster:
the oracle of test_tabular.py (the new writers must give the same bytes)."""

# ruff: noqa
# mypy: ignore-errors

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

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


def _rows(cells: list[pa.Array], separator: str, line_end: str) -> bytes:
    if not cells or len(cells[0]) == 0:
        return b""
    filled = [pc.fill_null(c, _EMPTY) for c in cells]
    rows = pc.binary_join_element_wise(*filled, pa.scalar(separator, pa.large_string()))
    return (line_end.join(rows.to_pylist()) + line_end).encode()


def _csv_cell(column: pa.Array) -> pa.Array:
    text = text_column(column)
    needs = pc.match_substring_regex(text, r'[",\r\n]')
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
    return pc.replace_substring_regex(text_column(column), r"[\t\r\n]", " ")


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


def _json_column(column: pa.Array) -> list[Any]:
    t = column.type
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return list(text_column(column).to_pylist())
    values: list[Any] = column.to_pylist()
    if pa.types.is_floating(t) or pa.types.is_nested(t) or pa.types.is_binary(t):
        return [_json_value(v) for v in values]
    return values


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
    first = True
    stream = ResultStream(batches, overflow)
    for batch in stream:
        columns = [_json_column(c) for c in batch.columns]
        lines = [json.dumps(list(row), ensure_ascii=False) for row in zip(*columns, strict=True)]
        if not lines:
            continue
        text = ",\n".join(lines)
        yield (text if first else ",\n" + text).encode()
        first = False
    status, message = stream.status()
    tail = {"status": status} if message is None else {"status": status, "message": message}
    yield ("\n], " + json.dumps(tail, ensure_ascii=False)[1:] + "\n").encode()
