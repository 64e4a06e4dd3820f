"""The CSV, TSV and JSON writers give the very bytes the former writers gave (frozen in
_former_tabular.py), on data made to trip them, and their output reads back."""

from __future__ import annotations

import csv
import datetime
import io
import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from astropy.io import ascii as astropy_ascii

from skyvault.catalog.metadata import ColumnMeta
from skyvault.formats import tabular
from tests.formats import _former_tabular as former

WORDS = [
    "plain",
    "with,comma",
    'with "quote"',
    '"',
    '""',
    ",",
    "new\nline",
    "cr\rlf\r\n",
    "tab\there",
    "ünïcödé ☃ 𝔘",
    "",
    " lead and trail ",
    "back\\slash",
    "ctrl\x01\x1f\x7f",
    "\u2028 line sep",
    "\b\f",
    "null",
    "NaN",
]
FLOATS = [0.0, -0.0, 1.0, 100.0, 1e16, 1e-5, 1e-4, 123456789012345678.0, 5e-324, 1.7e308]
FLOATS += [0.1, 2.5e-7, -1234.5, float("nan"), float("inf"), float("-inf"), 1e22, 3.0e-8]


def tricky(n: int, seed: int) -> pa.Table:
    """Integers, floats (every notation, NaN, infinities), float32, booleans, strings with
    separators, quotes, line breaks, control characters and non-ASCII, timestamps, dates,
    arrays; NULLs everywhere."""
    rng = np.random.default_rng(seed)

    def nulls(share: float = 0.1) -> np.ndarray:
        return rng.random(n) < share

    floats = rng.standard_normal(n) * 10.0 ** rng.integers(-30, 30, n)
    floats[: min(n, len(FLOATS))] = FLOATS[: min(n, len(FLOATS))]
    seconds = rng.integers(0, 2 * 10**9, n)
    lists = [[float(x) for x in rng.standard_normal(k)] for k in rng.integers(0, 4, n)]
    return pa.table(
        {
            "id": pa.array(rng.integers(-(2**62), 2**62, n), mask=nulls()),
            "i16": pa.array(rng.integers(-300, 300, n).astype(np.int16), mask=nulls()),
            "u8": pa.array(rng.integers(0, 256, n).astype(np.uint8)),
            "x": pa.array(floats, mask=nulls()),
            "ra": pa.array(rng.uniform(0, 360, n)),
            "mag": pa.array(rng.uniform(-2, 25, n).astype(np.float32), mask=nulls()),
            "flag": pa.array(rng.random(n) < 0.5, mask=nulls()),
            "name": pa.array(
                [WORDS[i] for i in rng.integers(0, len(WORDS), n)], pa.string(), mask=nulls()
            ),
            "big": pa.array(
                [WORDS[i] * 3 for i in rng.integers(0, len(WORDS), n)], pa.large_string()
            ),
            "t": pa.array(
                (seconds * 1_000_000 + rng.integers(0, 2, n) * 123_456).astype("datetime64[us]"),
                mask=nulls(),
            ),
            "day": pa.array(
                [
                    datetime.date(2000, 1, 1) + datetime.timedelta(days=int(d))
                    for d in seconds % 9999
                ],
                pa.date32(),
                mask=nulls(),
            ),
            "vec": pa.array(lists, pa.list_(pa.float64()), mask=nulls()),
        }
    )


def _fields(table: pa.Table) -> list[ColumnMeta]:
    return [ColumnMeta.from_arrow(f) for f in table.schema]


WRITERS = ["write_csv", "write_tsv", "write_json"]


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize(("rows", "batch"), [(0, 10), (1, 10), (37, 5), (3000, 1024)])
def test_same_bytes_as_the_former_writer(writer: str, rows: int, batch: int) -> None:
    table = tricky(rows, seed=rows)
    fields = _fields(table)
    new = b"".join(getattr(tabular, writer)(table.to_batches(batch), fields, overflow=True))
    old = b"".join(getattr(former, writer)(table.to_batches(batch), fields, overflow=True))
    assert new == old


@pytest.mark.parametrize("writer", WRITERS)
def test_same_bytes_for_odd_batches(writer: str) -> None:
    """Sliced batches (offsets into the buffers), empty ones, chunks of one row, no columns."""
    table = tricky(50, seed=5)
    fields = _fields(table)
    whole = table.combine_chunks().to_batches()[0]
    batches = [whole.slice(3, 20), whole.slice(0, 0)]
    batches += [whole.slice(i, 1) for i in range(40, 50)]
    new = b"".join(getattr(tabular, writer)(iter(batches), fields))
    assert new == b"".join(getattr(former, writer)(iter(batches), fields))
    empty = pa.RecordBatch.from_pydict({})
    new = b"".join(getattr(tabular, writer)(iter([empty]), []))
    assert new == b"".join(getattr(former, writer)(iter([empty]), []))


def test_csv_reads_back() -> None:
    table = tricky(500, seed=3)
    text = b"".join(tabular.write_csv(table.to_batches(128), _fields(table))).decode()
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == table.column_names
    names = [r[table.column_names.index("name")] for r in rows[1:]]
    assert names == [v if v is not None else "" for v in table["name"].to_pylist()]
    ids = [r[0] for r in rows[1:]]
    assert ids == [str(v) if v is not None else "" for v in table["id"].to_pylist()]
    ra = np.array([float(r[table.column_names.index("ra")]) for r in rows[1:]])
    np.testing.assert_array_equal(ra, table["ra"].to_numpy())  # shortest round-trip
    parsed = pacsv.read_csv(
        io.BytesIO(text.encode()), parse_options=pacsv.ParseOptions(newlines_in_values=True)
    )
    assert parsed.num_rows == table.num_rows
    assert parsed["name"].to_pylist() == names  # NULL is the empty cell
    # astropy splits lines before it unquotes: a table without line breaks in its cells.
    simple = table.drop_columns(["name", "big"])
    text = b"".join(tabular.write_csv(simple.to_batches(128), _fields(simple))).decode()
    read = astropy_ascii.read(text, format="csv")
    assert read.colnames == simple.column_names and len(read) == simple.num_rows
    assert list(read["id"].filled(0)) == [v or 0 for v in simple["id"].to_pylist()]


def test_tsv_reads_back() -> None:
    table = tricky(500, seed=4)
    text = b"".join(tabular.write_tsv(table.to_batches(128), _fields(table))).decode()
    lines = text.split("\n")
    assert lines[-1] == "" and len(lines) == table.num_rows + 2
    cells = [line.split("\t") for line in lines[:-1]]
    assert {len(c) for c in cells} == {table.num_columns}
    names = [c[table.column_names.index("name")] for c in cells[1:]]
    want = [
        "" if v is None else v.replace("\t", " ").replace("\r", " ").replace("\n", " ")
        for v in table["name"].to_pylist()
    ]
    assert names == want


def test_json_reads_back() -> None:
    table = tricky(500, seed=6)
    doc = json.loads(b"".join(tabular.write_json(table.to_batches(128), _fields(table))))
    assert doc["status"] == "OK" and len(doc["data"]) == table.num_rows
    column = table.column_names.index
    assert [r[column("name")] for r in doc["data"]] == table["name"].to_pylist()
    assert [r[column("id")] for r in doc["data"]] == table["id"].to_pylist()
    x = [r[column("x")] for r in doc["data"]]
    want = [v if v is not None and np.isfinite(v) else None for v in table["x"].to_pylist()]
    assert x == want
    assert [r[column("mag")] for r in doc["data"]] == table["mag"].to_pylist()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_json_numbers_are_python_repr_across_magnitudes(dtype: type) -> None:
    """Arrow's text is kept where it is ``repr``'s layout: every magnitude, from subnormals
    to the largest double, whole numbers, powers of ten and their neighbours."""
    rng = np.random.default_rng(8)
    n = 100_000
    values = np.concatenate(
        [
            rng.standard_normal(n) * 10.0 ** rng.integers(-320, 308, n),
            rng.standard_normal(n) * 10.0 ** rng.integers(-8, 20, n),
            np.round(rng.standard_normal(n) * 10.0 ** rng.integers(0, 18, n)),
            10.0 ** np.arange(-323, 308),
            np.nextafter(10.0 ** np.arange(-20, 20), np.inf),
            np.nextafter(10.0 ** np.arange(-20, 20), -np.inf),
            FLOATS,
        ]
    )
    with np.errstate(over="ignore"):
        column = pa.array(values.astype(dtype), mask=rng.random(len(values)) < 0.01)
    table = pa.table({"v": column})
    fields = _fields(table)
    new = b"".join(tabular.write_json(table.to_batches(65536), fields))
    assert new == b"".join(former.write_json(table.to_batches(65536), fields))


def _json_cells_of(column: pa.Array) -> list[str]:
    """The text of each cell of a one-column JSON document, as the writer wrote it."""
    table = pa.table({"v": column})
    text = b"".join(tabular.write_json(table.to_batches(7), _fields(table))).decode()
    rows = text[text.index('"data": [\n') + 10 : text.rindex("\n]")]
    return [row[1:-1] for row in rows.split(",\n")] if rows else []


# Where Arrow's text of a double and Python's repr differ in layout, not digits: Arrow writes
# whichever of fixed-point and exponent is shorter, Python decides by the magnitude.
LAYOUTS = [1e15, -1.5e15, 9.1e15, 2.0**53, 9999999999999998.0, 123456789012345.6, 1e-5]
LAYOUTS += [1.5e-5, -9.99e-5, 1e-7, 1.5e-17, 0.0001, 0.00012, 1e16, 1.5e16, 1e22, 1e-310]
LAYOUTS += [5e-324, 0.0, -0.0, 3.0, -100.0, 0.5, 1.7976931348623157e308, 1e100, 1.25e-100]
LAYOUTS += [12345678901234568.0, -98765432109876540.0, 1.2345678901234567e-5]


@pytest.mark.parametrize("batch_of", ["mixed", "one value"])
def test_json_floats_whose_arrow_layout_differs_from_repr(batch_of: str) -> None:
    """Each cell is ``json.dumps`` of its value: a whole number gets ``.0``, an exponent
    two digits at least, a magnitude Arrow and Python lay out differently is Python's, in
    batches where every cell is rewritten, none is, or some are."""
    values: list[float | None] = [*LAYOUTS, math.nan, math.inf, -math.inf, None]
    for value in values if batch_of == "one value" else [None]:
        column = pa.array([value] * 9 if batch_of == "one value" else values * 2, pa.float64())
        want = [
            "null" if v is None or not math.isfinite(v) else json.dumps(v)
            for v in column.to_pylist()
        ]
        assert _json_cells_of(column) == want
    plain = pa.array([0.1 * k + 0.05 for k in range(20)])  # every cell kept as Arrow wrote it
    assert _json_cells_of(plain) == [json.dumps(v) for v in plain.to_pylist()]


def test_json_float32_cells_are_repr_of_their_double() -> None:
    values = np.array([1e-5, 3e38, 1.5e-45, 16777216.0, 0.1, 1e15, 1e-4, 12.34], np.float32)
    column = pa.array(values, mask=np.arange(len(values)) == 3)
    want = ["null" if v is None else repr(v) for v in column.to_pylist()]
    assert _json_cells_of(column) == want


def test_json_strings_escape_every_character_as_json_dumps() -> None:
    """Every ASCII character alone and amid others, non-ASCII, and line separators."""
    chars = [chr(c) for c in range(128)] + ["é", "☃", "𝔘", "\u2028", "\u2029", "\x85"]
    values = chars + [f"a{c}b{c}{c}" for c in chars] + ["".join(chars), "\\n", '\\"', None]
    column = pa.array(values, pa.string())
    want = [json.dumps(v, ensure_ascii=False) for v in values]
    assert _json_cells_of(column) == want
    assert _json_cells_of(pa.array(["plain", "é", None, ""])) == ['"plain"', '"é"', "null", '""']


def test_json_strings_whose_null_slots_hold_bytes() -> None:
    """Arrow lets a NULL cell's slot hold bytes: they are never written, nor escaped."""
    data = pa.py_buffer(b'ok"x\n\\')
    offsets = pa.py_buffer(np.array([0, 2, 6, 6], np.int32).tobytes())
    valid = pa.py_buffer(np.packbits([1, 0, 1], bitorder="little").tobytes())
    column = pa.Array.from_buffers(pa.string(), 3, [valid, offsets, data])
    assert column.to_pylist() == ["ok", None, ""]
    assert _json_cells_of(column) == ['"ok"', "null", '""']


def test_json_rows_across_empty_batches() -> None:
    table = tricky(7, seed=9)
    whole = table.combine_chunks().to_batches()[0]
    batches = [whole.slice(0, 0), whole.slice(0, 1), whole.slice(1, 0), whole.slice(1, 6)]
    fields = _fields(table)
    new = b"".join(tabular.write_json(iter(batches), fields))
    assert new == b"".join(former.write_json(iter(batches), fields))
    assert len(json.loads(new)["data"]) == 7
