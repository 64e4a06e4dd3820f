"""Per-FIELD encoding of Arrow columns: binary cells (BINARY, BINARY2) and TABLEDATA text.

Everything here works on whole columns with numpy and Arrow compute kernels; nothing loops
over rows in Python.  A :class:`ColumnPlan` is made once per FIELD from its
:class:`~skyvault.catalog.metadata.ColumnMeta`; the encoders then apply it to each slice
of a result.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from skyvault.catalog.metadata import ColumnMeta
from skyvault.errors import InternalError, QueryError
from skyvault.formats._xml import escape_column

__all__ = [
    "ColumnPlan",
    "FixedCells",
    "VarCells",
    "binary_cells",
    "null_flags",
    "plan_column",
    "text_cells",
]

Kind = Literal["boolean", "number", "char", "unicodeChar"]

# VOTable numeric datatype -> (big-endian element dtype, Arrow type values are cast to).
_NUMBERS: dict[str, tuple[np.dtype[np.generic], pa.DataType]] = {
    "unsignedByte": (np.dtype(">u1"), pa.uint8()),
    "short": (np.dtype(">i2"), pa.int16()),
    "int": (np.dtype(">i4"), pa.int32()),
    "long": (np.dtype(">i8"), pa.int64()),
    "float": (np.dtype(">f4"), pa.float32()),
    "double": (np.dtype(">f8"), pa.float64()),
}

# The value announced by <VALUES null="..."> where an integer cell has no null flag.
_INT_NULLS: dict[str, int] = {
    "unsignedByte": 255,
    "short": -(2**15),
    "int": -(2**31),
    "long": -(2**63),
}

_TRUE, _FALSE, _UNKNOWN = ord("T"), ord("F"), ord("?")
_U1: np.dtype[np.generic] = np.dtype("u1")
_LARGE_STRING = pa.large_string()
_EMPTY = pa.scalar("", _LARGE_STRING)
_SPACE = pa.scalar(" ", _LARGE_STRING)


@dataclasses.dataclass(frozen=True)
class ColumnPlan:
    """How one FIELD is written.

    Attributes
    ----------
    meta
        The published column metadata.
    kind
        ``boolean``, ``number`` (any numeric datatype), ``char`` or ``unicodeChar``.
    element
        Big-endian numpy dtype of one array element (one byte for booleans and ``char``,
        two for ``unicodeChar``).
    arrow_element
        Arrow type numeric elements are cast to (None for the other kinds).
    size
        Number of elements of a fixed-size cell (1 for a scalar); None when variable.
    bound
        Upper limit of a variable size written ``N*``; None when unbounded.
    scalar
        The FIELD has no ``arraysize``: one value per cell.
    null_value
        Integer announced as ``<VALUES null>`` for cells without a null flag; None if none.
    """

    meta: ColumnMeta
    kind: Kind
    element: np.dtype[np.generic]
    arrow_element: pa.DataType | None
    size: int | None
    bound: int | None
    scalar: bool
    null_value: int | None

    @property
    def is_text(self) -> bool:
        """Whether cells are character strings (``char`` or ``unicodeChar``)."""
        return self.kind in ("char", "unicodeChar")


@dataclasses.dataclass(frozen=True)
class FixedCells:
    """Cells of constant width: an array of shape ``(n,)`` or ``(n, size)``."""

    values: npt.NDArray[np.generic]


@dataclasses.dataclass(frozen=True)
class VarCells:
    """Variable-size cells: element counts (the 4-byte prefix) and the concatenated bytes.

    ``data`` is an Arrow ``large_binary`` array holding each cell's bytes, without nulls.
    """

    counts: npt.NDArray[np.int32]
    data: pa.Array


Cells = FixedCells | VarCells


def _fail(meta: ColumnMeta, message: str) -> InternalError:
    return InternalError(f"cannot write column {meta.name!r} as VOTable: {message}")


def plan_column(meta: ColumnMeta, *, null_sentinels: bool) -> ColumnPlan:
    """The :class:`ColumnPlan` for ``meta``.

    Parameters
    ----------
    meta
        Column metadata; ``datatype`` and ``arraysize`` decide the encoding.
    null_sentinels
        Whether integer cells need an in-band null value (BINARY has no null flags).
        Integer arrays always get one when the column is nullable, since a null element
        inside an array has no flag in any serialisation.

    Raises
    ------
    InternalError
        For datatypes (``bit``, complex numbers) and array shapes (``2x3``) not supported.
    """
    datatype = meta.datatype
    kind: Kind
    element: np.dtype[np.generic]
    if datatype == "boolean":
        kind, element, arrow_element = "boolean", _U1, None
    elif datatype == "char":
        kind, element, arrow_element = "char", _U1, None
    elif datatype == "unicodeChar":
        kind, element, arrow_element = "unicodeChar", np.dtype(">u2"), None
    elif datatype in _NUMBERS:
        kind = "number"
        element, arrow_element = _NUMBERS[datatype]
    else:
        raise _fail(meta, f"datatype {datatype!r} is not supported")

    arraysize = meta.arraysize
    size: int | None
    bound: int | None = None
    if arraysize is None:
        size, scalar = 1, True
    else:
        scalar = False
        text = arraysize.strip()
        try:
            if text == "*":
                size = None
            elif text.endswith("*"):
                size, bound = None, int(text[:-1])
            else:
                size = int(text)
        except ValueError:
            raise _fail(meta, f"arraysize {arraysize!r} is not supported") from None
        if (size is not None and size < 1) or (bound is not None and bound < 1):
            raise _fail(meta, f"arraysize {arraysize!r} is not supported")

    null_value = None
    if datatype in _INT_NULLS and meta.nullable and (null_sentinels or not scalar):
        null_value = _INT_NULLS[datatype]
    return ColumnPlan(meta, kind, element, arrow_element, size, bound, scalar, null_value)


# --- helpers on Arrow arrays ---------------------------------------------------------------


def _numpy_bool(mask: pa.Array) -> npt.NDArray[np.bool_]:
    out: npt.NDArray[np.bool_] = mask.to_numpy(zero_copy_only=False)
    return out


def null_flags(column: pa.Array) -> npt.NDArray[np.bool_] | None:
    """Which cells of ``column`` are null, or None when none is."""
    if column.null_count == 0:
        return None
    return _numpy_bool(column.is_null())


def _is_list(t: pa.DataType) -> bool:
    return bool(pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t))


def _cast(plan: ColumnPlan, values: pa.Array, target: pa.DataType) -> pa.Array:
    if values.type == target:
        return values
    try:
        return pc.cast(values, target)
    except pa.ArrowInvalid as exc:
        raise QueryError(
            f"column {plan.meta.name!r} holds a value that does not fit VOTable "
            f"{plan.meta.datatype}: {exc}"
        ) from None
    except pa.ArrowNotImplementedError:
        raise _fail(plan.meta, f"Arrow type {values.type} cannot become {target}") from None


def _element_fill(plan: ColumnPlan) -> float | int:
    if plan.kind == "boolean":
        return _UNKNOWN
    if plan.element.kind == "f":
        return float("nan")
    return plan.null_value if plan.null_value is not None else 0


def _elements(plan: ColumnPlan, flat: pa.Array) -> npt.NDArray[np.generic]:
    """Numeric or boolean elements as numpy values; nulls replaced by the null filler."""
    if plan.kind == "boolean":
        flat = _cast(plan, flat, pa.bool_())
        out = np.where(_numpy_bool(flat.fill_null(False)), _TRUE, _FALSE).astype(_U1)
        if flat.null_count:
            out[_numpy_bool(flat.is_null())] = _UNKNOWN
        return out
    assert plan.arrow_element is not None
    flat = _cast(plan, flat, plan.arrow_element)
    if flat.null_count:
        flat = flat.fill_null(pa.scalar(_element_fill(plan), plan.arrow_element))
    values: npt.NDArray[np.generic] = flat.to_numpy(zero_copy_only=False)
    return values


def _list_parts(
    plan: ColumnPlan, column: pa.Array
) -> tuple[pa.Array, npt.NDArray[np.int64], npt.NDArray[np.bool_] | None]:
    """Flattened elements of the non-null cells, per-cell element counts, null flags."""
    if not _is_list(column.type):
        raise _fail(
            plan.meta,
            f"arraysize {plan.meta.arraysize} needs a list column, not Arrow {column.type}",
        )
    flat = pc.list_flatten(column)
    counts: npt.NDArray[np.int64] = (
        pc.list_value_length(column).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    )
    nulls = null_flags(column)
    if plan.size is not None:
        wrong = counts != plan.size
        if nulls is not None:
            wrong &= ~nulls
        if wrong.any():
            bad = int(counts[np.argmax(wrong)])
            raise QueryError(
                f"column {plan.meta.name!r} has a value with {bad} elements where "
                f"arraysize is {plan.size}"
            )
    elif plan.bound is not None and counts.size and int(counts.max()) > plan.bound:
        raise QueryError(
            f"column {plan.meta.name!r} has a value with more than {plan.bound} elements"
        )
    return flat, counts, nulls


def _as_strings(plan: ColumnPlan, column: pa.Array) -> pa.Array:
    """The column as Arrow ``large_string`` (timestamps as DALI ISO 8601), nulls kept."""
    t = column.type
    if pa.types.is_large_string(t):
        return column
    if pa.types.is_string(t) or pa.types.is_string_view(t):
        return pc.cast(column, _LARGE_STRING)
    if pa.types.is_timestamp(t):
        return _timestamps(column)
    if pa.types.is_date(t):
        return pc.cast(pc.cast(column, pa.date32()), _LARGE_STRING)
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return pc.cast(pc.cast(column, pa.large_binary()), _LARGE_STRING)
    try:
        return pc.cast(column, _LARGE_STRING)
    except pa.ArrowNotImplementedError:
        raise _fail(plan.meta, f"Arrow type {t} cannot be written as text") from None


def _timestamps(column: pa.Array) -> pa.Array:
    """DALI timestamps ``YYYY-MM-DDThh:mm:ss.sss`` in UTC.

    The fraction has at least millisecond digits, more when the Arrow unit is finer, so no
    precision is lost.  Zoned values are written as their UTC time without a suffix.
    """
    unit = column.type.unit
    if column.type.tz is not None:
        column = column.view(pa.timestamp(unit))
    if unit == "s":
        column = pc.cast(column, pa.timestamp("ms"))
    return pc.cast(pc.strftime(column, format="%Y-%m-%dT%H:%M:%S"), _LARGE_STRING)


def _offsets_and_data(
    values: pa.Array,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8]]:
    """Zero-based int64 offsets and the data bytes of a large string/binary array."""
    n = len(values)
    buffers = values.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int64, count=n + 1, offset=8 * values.offset)
    start, stop = int(offsets[0]), int(offsets[-1])
    if buffers[2] is None or stop == start:
        data = np.zeros(0, dtype=np.uint8)
    else:
        data = np.frombuffer(buffers[2], dtype=np.uint8, count=stop - start, offset=start)
    return offsets - start, data


def _gather(
    offsets: npt.NDArray[np.int64], lengths: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Indices to copy the first ``lengths[i]`` bytes of each cell: (rows, columns, sources)."""
    total = int(lengths.sum())
    rows = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    firsts = np.cumsum(lengths) - lengths
    cols = np.arange(total, dtype=np.int64) - np.repeat(firsts, lengths)
    sources = np.repeat(offsets[:-1], lengths) + cols
    return rows, cols, sources


def _text_bytes(
    plan: ColumnPlan, column: pa.Array
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8]]:
    """Zero-based offsets and encoded bytes of a text column (UTF-8 or UTF-16BE)."""
    strings = _as_strings(plan, column).fill_null(_EMPTY)
    offsets, data = _offsets_and_data(strings)
    if plan.kind == "unicodeChar":
        # UTF-16 code units per UTF-8 byte: one per lead byte, two for 4-byte sequences.
        units = ((data & 0xC0) != 0x80).astype(np.int64) + (data >= 0xF0)
        cumulative = np.concatenate(([0], np.cumsum(units)))
        encoded = data.tobytes().decode("utf-8").encode("utf-16-be")
        data = np.frombuffer(encoded, dtype=np.uint8)
        offsets = cumulative[offsets] * 2
    return offsets, data


def _large_binary(offsets: npt.NDArray[np.int64], data: npt.NDArray[np.uint8]) -> pa.Array:
    n = len(offsets) - 1
    return pa.Array.from_buffers(
        pa.large_binary(),
        n,
        [None, pa.py_buffer(np.ascontiguousarray(offsets, dtype=np.int64)), pa.py_buffer(data)],
    )


# --- binary cells ---------------------------------------------------------------------------


def binary_cells(plan: ColumnPlan, column: pa.Array) -> Cells:
    """The cells of ``column`` for BINARY and BINARY2.

    Null cells get the in-band null of the BINARY serialisation (NaN, ``?``, the
    ``<VALUES null>`` integer, an empty variable array); BINARY2 also flags them.
    """
    if plan.is_text:
        return _binary_text(plan, column)
    if plan.scalar or (plan.size == 1 and not _is_list(column.type)):
        values = _elements(plan, column)
        return FixedCells(values if plan.scalar else values.reshape(-1, 1))
    flat, counts, nulls = _list_parts(plan, column)
    elements = _elements(plan, flat)
    if plan.size is not None:
        out = np.full((len(column), plan.size), _element_fill(plan), dtype=plan.element)
        if nulls is None:
            out[...] = elements.reshape(-1, plan.size)
        else:
            out[~nulls] = elements.reshape(-1, plan.size)
        return FixedCells(out)
    data = np.ascontiguousarray(elements, dtype=plan.element).view(np.uint8)
    offsets = np.concatenate(([0], np.cumsum(counts))) * plan.element.itemsize
    return VarCells(counts.astype(np.int32), _large_binary(offsets, data))


def _binary_text(plan: ColumnPlan, column: pa.Array) -> Cells:
    offsets, data = _text_bytes(plan, column)
    unit = plan.element.itemsize
    lengths = np.diff(offsets)
    if plan.size is not None:
        width = plan.size * unit
        out = np.zeros((len(column), width), dtype=np.uint8)
        rows, cols, sources = _gather(offsets, np.minimum(lengths, width))
        out[rows, cols] = data[sources]
        return FixedCells(out)
    if plan.bound is not None and lengths.size and int(lengths.max()) > plan.bound * unit:
        kept = np.minimum(lengths, plan.bound * unit)
        _, _, sources = _gather(offsets, kept)
        data = data[sources]
        offsets = np.concatenate(([0], np.cumsum(kept)))
        lengths = kept
    return VarCells((lengths // unit).astype(np.int32), _large_binary(offsets, data))


# --- TABLEDATA text -------------------------------------------------------------------------


def _number_text(plan: ColumnPlan, values: pa.Array, *, in_array: bool) -> pa.Array:
    """Numbers as text: shortest round-trip form for floats, ``±Inf``, NaN as empty or NaN."""
    text = pc.cast(values, _LARGE_STRING)
    if pa.types.is_floating(values.type):
        nan_text = "NaN" if in_array else ""
        if pc.any(pc.is_nan(values)).as_py():
            text = pc.if_else(pc.is_nan(values), pa.scalar(nan_text, _LARGE_STRING), text)
        if pc.any(pc.is_inf(values)).as_py():
            text = pc.if_else(pc.equal(values, float("inf")), "+Inf", text)
            text = pc.if_else(pc.equal(values, float("-inf")), "-Inf", text)
    return text


def _element_text(plan: ColumnPlan, flat: pa.Array, *, in_array: bool) -> pa.Array:
    """Text of scalar values or of array elements; nulls stay null."""
    if plan.kind == "boolean":
        flat = _cast(plan, flat, pa.bool_())
        return pc.if_else(flat, pa.scalar("T", _LARGE_STRING), pa.scalar("F", _LARGE_STRING))
    assert plan.arrow_element is not None
    return _number_text(plan, _cast(plan, flat, plan.arrow_element), in_array=in_array)


def text_cells(plan: ColumnPlan, column: pa.Array) -> pa.Array:
    """The TABLEDATA content of each cell of ``column``: escaped text, empty for null."""
    if plan.is_text:
        text = _as_strings(plan, column)
        limit = plan.size if plan.size is not None else plan.bound
        if limit is not None:
            text = pc.utf8_slice_codeunits(text, 0, limit)
        return escape_column(text).fill_null(_EMPTY)
    if plan.scalar or (plan.size == 1 and not _is_list(column.type)):
        return _element_text(plan, column, in_array=False).fill_null(_EMPTY)
    flat, counts, nulls = _list_parts(plan, column)
    elements = _element_text(plan, flat, in_array=True)
    fill = _null_element_text(plan)
    if elements.null_count:
        elements = elements.fill_null(pa.scalar(fill or "0", _LARGE_STRING))
    offsets = pa.array(np.concatenate(([0], np.cumsum(counts))), pa.int64())
    joined = pc.binary_join(pa.LargeListArray.from_arrays(offsets, elements), _SPACE)
    if nulls is not None and plan.size is not None and fill is not None:
        # A null fixed-size array is written as that many null elements (NaN, ?, the
        # VALUES null integer): an empty cell is not a valid array of numbers for
        # every reader.
        whole = pa.scalar(" ".join([fill] * plan.size), _LARGE_STRING)
        joined = pc.if_else(pa.array(nulls), whole, joined)
    return joined.fill_null(_EMPTY)


def _null_element_text(plan: ColumnPlan) -> str | None:
    """TABLEDATA text of a null array element, None when the datatype has none."""
    if plan.kind == "boolean":
        return "?"
    if plan.element.kind == "f":
        return "NaN"
    return None if plan.null_value is None else str(plan.null_value)
