"""Round trips of every supported type and serialisation through astropy, STILTS and pyvo."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from astropy.io.votable.exceptions import W03

from skyvault.catalog.metadata import ColumnMeta
from skyvault.formats import SERIALIZATIONS

from .conftest import read_votable, render

NAN, INF = float("nan"), float("inf")
SPECIAL = "a<b & c>d \"q\" 'x' ]]> &amp;"
TS = [
    dt.datetime(2000, 1, 2, 15, 20, 30, 456000),
    dt.datetime(1969, 12, 31, 23, 59, 59),
    None,
    dt.datetime(2024, 2, 29, 0, 0, 0, 1000),
]


def all_types() -> tuple[pa.Table, list[ColumnMeta]]:
    """Four rows exercising every datatype and shape the writer supports."""
    columns: dict[str, pa.Array] = {
        "b": pa.array([True, False, None, True]),
        "ub": pa.array([0, 254, None, 7], pa.uint8()),
        "sh": pa.array([-32767, 32767, None, 0], pa.int16()),
        "i": pa.array([-(2**31) + 1, 2**31 - 1, None, 42], pa.int32()),
        "l": pa.array([2**62, -(2**63) + 1, None, 0], pa.int64()),
        "f": pa.array([1.5, NAN, None, INF], pa.float32()),
        "d": pa.array([0.1, -INF, None, 1e-300], pa.float64()),
        "s": pa.array(["plain", "", None, SPECIAL]),
        "u": pa.array(["é", " € \U0001d11e ", None, "日本語 <&>"]),
        "c3": pa.array(["abc", "x", None, "de"]),
        "ts": pa.array(TS, pa.timestamp("ms")),
        "pt": pa.array([[1.0, 2.0], None, [3.0, 4.0], [5.0, -6.5]], pa.list_(pa.float64(), 2)),
        "circle": pa.array([[1.0, 2.0, 0.5], [0.0, -90.0, 1e-9], None, [359.9, 89.9, 3.0]]),
        "poly": pa.array(
            [[10.0, 10.0, 10.2, 10.0, 10.2, 10.2], None, [], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7, 8]]
        ),
        "ia": pa.array([[1, 2, 3], [], None, [-4]], pa.list_(pa.int32())),
        "fa": pa.array([[0.25, NAN], [INF, 2.0], None, [3.0, 4.0]], pa.list_(pa.float32())),
        "ba": pa.array([[True, False, None], None, [], [False]], pa.list_(pa.bool_())),
    }
    fields = [
        ColumnMeta("b", "boolean", description="a flag"),
        ColumnMeta("ub", "unsignedByte"),
        ColumnMeta("sh", "short"),
        ColumnMeta("i", "int", unit="s", ucd="time.duration"),
        ColumnMeta("l", "long", ucd="meta.id;meta.main"),
        ColumnMeta("f", "float", unit="mag"),
        ColumnMeta("d", "double", unit="deg", ucd="pos.eq.ra", description=SPECIAL),
        ColumnMeta("s", "char", arraysize="*", description="é – ünïcödé <>&"),
        ColumnMeta("u", "unicodeChar", arraysize="*"),
        ColumnMeta("c3", "char", arraysize="3"),
        ColumnMeta("ts", "char", arraysize="*", xtype="timestamp"),
        ColumnMeta("pt", "double", arraysize="2", xtype="point", unit="deg"),
        ColumnMeta("circle", "double", arraysize="3", xtype="circle", unit="deg"),
        ColumnMeta("poly", "double", arraysize="*", xtype="polygon", unit="deg"),
        ColumnMeta("ia", "int", arraysize="*"),
        ColumnMeta("fa", "float", arraysize="2"),
        ColumnMeta("ba", "boolean", arraysize="*"),
    ]
    return pa.table(columns), fields


# --- normalising what astropy reads and what we wrote ---------------------------------------


def _scalar(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def astropy_cell(column: np.ma.MaskedArray, row: int) -> Any:
    """One cell as plain Python: None for null, lists for arrays, NaN as None."""
    value, mask = column.data[row], np.ma.getmaskarray(column)[row]
    if isinstance(value, np.ma.MaskedArray):
        if np.ndim(mask) == 0 and bool(mask):
            return None
        flags = np.ma.getmaskarray(value)
        return [None if f else _scalar(v) for v, f in zip(value.data, flags, strict=True)]
    if isinstance(value, np.ndarray) and value.dtype != object:
        flags = np.broadcast_to(mask, value.shape)
        return [None if f else _scalar(v) for v, f in zip(value, flags, strict=True)]
    if bool(np.all(mask)):
        return None
    return _scalar(value)


def expected_cell(value: Any, meta: ColumnMeta, serialization: str) -> Any:
    """What a reader should get back for ``value`` written as ``meta``."""
    if isinstance(value, dt.datetime):
        return value.isoformat(timespec="milliseconds")
    if meta.datatype in ("char", "unicodeChar"):
        if meta.arraysize and meta.arraysize.isdigit() and value is not None:
            value = value[: int(meta.arraysize)]
        if serialization == "tabledata" and value is not None:
            value = value.strip()  # astropy strips the text of a TD
        # astropy reads a null string as an empty one, even when BINARY2 flags it (the
        # flags are checked byte by byte in test_votable_layout.py).
        return None if value == "" else value
    if meta.arraysize is None:
        return _scalar(value)
    if value is None:
        if meta.arraysize.isdigit():
            return [None] * int(meta.arraysize)
        return []
    return [_scalar(v) for v in value]


def normalise_read(cell: Any, meta: ColumnMeta, serialization: str) -> Any:
    if meta.datatype in ("char", "unicodeChar"):
        return None if cell == "" else cell
    if meta.arraysize and not meta.arraysize.isdigit() and cell is None:
        return []
    return cell


@pytest.mark.parametrize("serialization", SERIALIZATIONS)
def test_every_type_reads_back_in_astropy(serialization: str) -> None:
    table, fields = all_types()
    votable = read_votable(render(table, fields, serialization))
    read = votable.get_first_table()
    assert [f.name for f in read.fields] == [f.name for f in fields]
    for meta, column in zip(fields, table.columns, strict=True):
        got = [
            normalise_read(astropy_cell(read.array[meta.name], r), meta, serialization)
            for r in range(table.num_rows)
        ]
        want = [expected_cell(v, meta, serialization) for v in column.to_pylist()]
        assert got == want, meta.name


@pytest.mark.parametrize("serialization", SERIALIZATIONS)
def test_field_metadata_is_published_escaped(serialization: str) -> None:
    table, fields = all_types()
    document = render(
        table,
        fields,
        serialization,
        table_name="t<&>é",
        description=SPECIAL,
        infos=[("standardID", "ivo://ivoa.net/std/TAP", None), ("note", 'a"b<', "x & y")],
    )
    # W03: astropy notes that it derives an XML ID from a name that is not one.
    votable = read_votable(document, allow=[W03])
    read = votable.get_first_table()
    assert read.name == "t<&>é"
    assert read.description == SPECIAL
    for meta, field in zip(fields, read.fields, strict=True):
        assert field.datatype == meta.datatype
        assert field.xtype == meta.xtype
        assert (str(field.unit) if field.unit is not None else None) == meta.unit
        assert field.ucd == meta.ucd
        assert field.description == meta.description
    resource = votable.resources[0]
    assert resource.type == "results"
    assert [(i.name, i.value) for i in resource.infos] == [
        ("QUERY_STATUS", "OK"),
        ("standardID", "ivo://ivoa.net/std/TAP"),
        ("note", 'a"b<'),
    ]
    assert resource.infos[2].content == "x & y"


@pytest.mark.parametrize("serialization", SERIALIZATIONS)
def test_doubles_round_trip_exactly(serialization: str) -> None:
    rng = np.random.default_rng(7)
    values = np.concatenate(
        [
            rng.normal(size=500) * 10.0 ** rng.integers(-300, 300, size=500),
            [5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -0.0, 0.1, 1 / 3],
        ]
    )
    with np.errstate(over="ignore"):
        singles = values.astype(np.float32)
    table = pa.table({"d": values, "f": singles})
    fields = [ColumnMeta("d", "double"), ColumnMeta("f", "float")]
    read = read_votable(render(table, fields, serialization)).get_first_table().array
    d = np.ma.getdata(read["d"])
    f = np.ma.getdata(read["f"])
    finite = np.isfinite(singles)  # large doubles overflow to ±inf as float32
    assert np.array_equal(d, values)
    assert np.array_equal(np.signbit(d), np.signbit(values))
    assert np.array_equal(f[finite], singles[finite])
    assert np.array_equal(np.isinf(f), np.isinf(singles))


@pytest.mark.parametrize("serialization", SERIALIZATIONS)
def test_integers_at_their_limits(serialization: str) -> None:
    table = pa.table(
        {
            "l": pa.array([2**63 - 1, -(2**63) + 1, 0], pa.int64()),
            "u": pa.array([2**63 - 1, 0, 5], pa.uint64()),
            "i": pa.array([2**31 - 1, -(2**31) + 1, None], pa.int32()),
        }
    )
    fields = [ColumnMeta("l", "long"), ColumnMeta("u", "long"), ColumnMeta("i", "int")]
    read = read_votable(render(table, fields, serialization)).get_first_table().array
    assert [int(v) for v in read["l"]] == [2**63 - 1, -(2**63) + 1, 0]
    assert [int(v) for v in read["u"]] == [2**63 - 1, 0, 5]
    assert read["i"].mask.tolist() == [False, False, True]


@pytest.mark.parametrize("serialization", SERIALIZATIONS)
@pytest.mark.parametrize("rows", [0, 1, 2, 3, 4, 5, 7])
def test_zero_and_few_rows(serialization: str, rows: int) -> None:
    table = pa.table({"x": pa.array(range(rows), pa.uint8()), "s": ["ab"] * rows})
    fields = [ColumnMeta("x", "unsignedByte"), ColumnMeta("s", "char", arraysize="*")]
    read = read_votable(render(table, fields, serialization)).get_first_table().array
    assert len(read) == rows
    assert [int(v) for v in read["x"]] == list(range(rows))


@pytest.mark.parametrize("serialization", SERIALIZATIONS)
def test_no_batches_gives_metadata_only(serialization: str) -> None:
    _, fields = all_types()
    document = render([], fields, serialization, overflow=True)
    votable = read_votable(document)
    read = votable.get_first_table()
    assert len(read.array) == 0
    assert [f.name for f in read.fields] == [f.name for f in fields]
    assert b"<DATA>" in document


@pytest.mark.parametrize("serialization", ["binary", "binary2"])
@pytest.mark.parametrize("batch_rows", [1, 2, 3, 4, 5, 11])
def test_batches_splitting_base64_groups(serialization: str, batch_rows: int) -> None:
    # One-byte (BINARY) or two-byte (BINARY2: flags + value) rows: batch boundaries fall
    # at every position inside a 3-byte base64 group.
    values: list[int | None] = [*range(50), None, 200]
    table = pa.table({"x": pa.array(values, pa.uint8())})
    fields = [ColumnMeta("x", "unsignedByte", nullable=False)]
    batches = table.to_batches(max_chunksize=batch_rows)
    read = read_votable(render(batches, fields, serialization)).get_first_table().array
    got = [None if m else int(v) for v, m in zip(read["x"].data, read["x"].mask, strict=True)]
    if serialization == "binary":  # no null flag and no null value announced: 0
        values[50] = 0
    assert got == values


@pytest.mark.parametrize("serialization", SERIALIZATIONS)
def test_many_batches_and_slices_keep_row_order(serialization: str) -> None:
    n = 5000
    rng = np.random.default_rng(3)
    table = pa.table(
        {
            "id": pa.array(np.arange(n, dtype=np.int64)),
            "name": pa.array([f"n{i}" * (i % 4) for i in range(n)]),
            "poly": pa.array([[float(i)] * (2 * (i % 5)) for i in range(n)]),
            "v": pa.array(rng.normal(size=n)),
        }
    )
    fields = [
        ColumnMeta("id", "long"),
        ColumnMeta("name", "char", arraysize="*"),
        ColumnMeta("poly", "double", arraysize="*"),
        ColumnMeta("v", "double"),
    ]
    batches = table.to_batches(max_chunksize=777)
    document = render(batches, fields, serialization, rows_per_slice=100)
    read = read_votable(document).get_first_table().array
    assert [int(v) for v in read["id"]] == list(range(n))
    names = [str(v) if v is not np.ma.masked else "" for v in read["name"]]
    assert names == table.column("name").to_pylist()
    assert [len(v) for v in read["poly"]] == [2 * (i % 5) for i in range(n)]
    assert np.array_equal(np.ma.getdata(read["v"]), table.column("v").to_numpy())


def test_non_ascii_text_survives_every_serialisation() -> None:
    text = ["Ångström", "日本語", "\U0001f52d telescope", "", "ÿ"]
    table = pa.table({"u": text})
    for serialization in SERIALIZATIONS:
        fields = [ColumnMeta("u", "unicodeChar", arraysize="*")]
        read = read_votable(render(table, fields, serialization)).get_first_table().array
        got = ["" if v is np.ma.masked else str(v) for v in read["u"]]
        assert got == text, serialization


def test_timestamps_of_every_unit_and_zone() -> None:
    moment = dt.datetime(2021, 6, 7, 8, 9, 10, 123456)
    table = pa.table(
        {
            "s": pa.array([moment.replace(microsecond=0)], pa.timestamp("s")),
            "us": pa.array([moment], pa.timestamp("us")),
            "zoned": pa.array([moment.replace(tzinfo=dt.UTC)], pa.timestamp("us", tz="UTC")),
            "day": pa.array([moment.date()], pa.date32()),
        }
    )
    fields = [ColumnMeta.from_arrow(f) for f in table.schema]
    assert all(f.xtype == "timestamp" for f in fields)
    read = read_votable(render(table, fields, "tabledata")).get_first_table().array
    assert str(read["s"][0]) == "2021-06-07T08:09:10.000"
    assert str(read["us"][0]) == "2021-06-07T08:09:10.123456"
    assert str(read["zoned"][0]) == "2021-06-07T08:09:10.123456"
    assert str(read["day"][0]) == "2021-06-07"


def test_binary_announces_integer_nulls_and_binary2_flags_them() -> None:
    table = pa.table({"i": pa.array([1, None], pa.int32()), "d": pa.array([None, 2.0])})
    fields = [ColumnMeta("i", "int"), ColumnMeta("d", "double")]
    binary = render(table, fields, "binary")
    binary2 = render(table, fields, "binary2")
    assert b'<VALUES null="-2147483648"/>' in binary
    assert b"<VALUES" not in binary2
    for document in (binary, binary2):
        read = read_votable(document).get_first_table().array
        assert read["i"].mask.tolist() == [False, True]
        assert read["d"].mask.tolist() == [True, False]


def _pyvo_results(document: bytes) -> Any:
    from pyvo.dal.query import DALResults

    return DALResults(read_votable(document), url="http://example.org/tap/sync")


def test_overflow_info_only_when_asked() -> None:
    table, fields = all_types()
    plain = render(table, fields, "binary2")
    cut = render(table, fields, "binary2", overflow=True)
    assert b'value="OVERFLOW"' not in plain
    assert cut.index(b"</TABLE>") < cut.index(b'value="OVERFLOW"') < cut.index(b"</RESOURCE>")
    assert cut.index(b'<INFO name="QUERY_STATUS" value="OK"/>') < cut.index(b"<TABLE")
    infos = read_votable(cut).resources[0].infos
    assert [(i.name, i.value) for i in infos] == [
        ("QUERY_STATUS", "OK"),
        ("QUERY_STATUS", "OVERFLOW"),
    ]
    from pyvo.dal.exceptions import DALOverflowWarning

    assert len(_pyvo_results(plain)) == 4
    with pytest.warns(DALOverflowWarning):
        assert len(_pyvo_results(cut)) == 4


def test_overflow_is_decided_after_the_last_batch() -> None:
    table, fields = all_types()
    state = {"exhausted": False, "asked_early": False}

    def batches() -> Any:
        yield from table.to_batches()
        state["exhausted"] = True

    def overflow() -> bool:
        state["asked_early"] = not state["exhausted"]
        return True

    document = render(batches(), fields, "tabledata", overflow=overflow)
    assert not state["asked_early"]
    assert b'value="OVERFLOW"' in document
    document = render(table, fields, "tabledata", overflow=lambda: False)
    assert b'value="OVERFLOW"' not in document


@pytest.mark.parametrize("serialization", SERIALIZATIONS)
def test_error_while_streaming_ends_document_with_error_info(serialization: str) -> None:
    from pyvo.dal.exceptions import DALQueryError

    from skyvault.errors import QueryTimeout

    table, fields = all_types()

    def batches() -> Any:
        yield from table.to_batches()
        raise QueryTimeout("query ran longer than 60 s <limit>")

    document = render(batches(), fields, serialization)
    votable = read_votable(document)
    assert len(votable.get_first_table().array) == 4
    last = votable.resources[0].infos[-1]
    assert (last.name, last.value) == ("QUERY_STATUS", "ERROR")
    assert last.content == "query ran longer than 60 s <limit>"
    with pytest.raises(DALQueryError, match="60 s <limit>"):
        _pyvo_results(document)


def test_header_streams_before_rows_are_pulled() -> None:
    from skyvault.formats import write_votable

    table, fields = all_types()
    pulled: list[int] = []

    def batches() -> Any:
        for i, batch in enumerate(table.to_batches(max_chunksize=1)):
            pulled.append(i)
            yield batch

    chunks = write_votable(batches(), fields)
    first = next(chunks)
    assert first.startswith(b"<?xml")
    assert b"<FIELD" in first
    assert pulled == []
    rest = list(chunks)
    assert pulled == [0, 1, 2, 3]
    assert rest[-1].endswith(b"</VOTABLE>\n")


def test_large_batches_are_cut_into_bounded_chunks() -> None:
    from skyvault.formats import write_votable

    n = 10_000
    table = pa.table({"x": pa.array(np.arange(n, dtype=np.float64))})
    chunks = list(
        write_votable(table.to_batches(), [ColumnMeta("x", "double")], rows_per_slice=1000)
    )
    data_chunks = chunks[1:-1]
    assert len(data_chunks) >= n // 1000
    assert max(len(c) for c in data_chunks) < 1000 * 9 * 4 // 3 + 16
