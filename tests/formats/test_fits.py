"""The FITS writer: every type read back by astropy (and STILTS), streaming through a disk
spool with bounded memory, and the spool's removal whichever way the result ends."""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import shutil
import subprocess
import tracemalloc
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from astropy.io import fits
from astropy.table import Table

from skyvault.catalog.metadata import ColumnMeta
from skyvault.errors import InternalError, LimitExceeded, QueryTimeout
from skyvault.formats import fits as fits_writer
from skyvault.formats.fits import SPOOL_PREFIX, write_fits

from .test_votable_roundtrip import all_types

STILTS = shutil.which("stilts")


def render(table: pa.Table, fields: list[ColumnMeta], spool: Path, **options: Any) -> bytes:
    # Batches of 3 rows: widths, NULLs and heap offsets must carry across batches.
    batches = table.to_batches(max_chunksize=3)
    chunks = write_fits(batches, fields, schema=table.schema, spool_dir=spool, **options)
    return b"".join(chunks)


def spooled(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"{SPOOL_PREFIX}*"))


def read_table(data: bytes) -> Table:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NULL logicals read as False: checked as bytes
        return Table.read(io.BytesIO(data), format="fits")


# --- what each original value must read back as ----------------------------------------------


def _element(value: Any, raw: Any, code: str) -> None:
    """``raw`` (astropy's element, logicals as bytes) against the original ``value``."""
    if code == "L":
        assert raw == {True: b"T", False: b"F", None: b""}[value]
    elif code in "EDA" or isinstance(raw, np.floating):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            assert math.isnan(raw)
        else:
            assert raw == np.float32(value) if code == "E" else raw == value
    else:
        assert value is not None
        assert int(raw) == value


def _code(tform: str) -> str:
    return tform.lstrip("0123456789").lstrip("PQ")[0]


def check_cell(value: Any, raw: Any, masked: bool, tform: str, tnull: int | None) -> None:
    """One cell: ``raw`` from ``fits.open(logical_as_bytes=True)``, ``masked`` from
    ``Table.read``, against the original ``value``."""
    code = _code(tform)
    if code == "A":
        text = raw.decode() if isinstance(raw, bytes) else raw
        if value is None:
            assert text == "" and masked
        elif isinstance(value, dt.datetime):
            assert dt.datetime.fromisoformat(text) == value
        else:
            assert text == value.rstrip(" ")  # FITS strings do not keep trailing blanks
        return
    if tform[0] in "PQ":  # variable-length array: a NULL one is empty
        items = [] if value is None else value
        assert len(raw) == len(items)
        for item, got in zip(items, raw, strict=True):
            _element(item, got, code)
        return
    if isinstance(raw, np.ndarray):  # fixed-size array: a NULL one is all NULL elements
        items = [None] * len(raw) if value is None else value
        for item, got in zip(items, raw, strict=True):
            _element(item, got, code)
        return
    if value is None and tnull is not None:
        assert int(raw) == tnull and masked
        return
    _element(value, raw, code)
    if code in "ED" and value is not None and not math.isnan(value):
        assert not masked


def test_every_type_reads_back(tmp_path: Path) -> None:
    table, fields = all_types()
    data = render(table, fields, tmp_path)
    assert len(data) % 2880 == 0
    read = read_table(data)
    with fits.open(io.BytesIO(data), logical_as_bytes=True) as hdus:
        hdus.verify("exception")
        header, rows = hdus[1].header, hdus[1].data
        assert header["NAXIS2"] == table.num_rows
        assert rows.names == [f.name for f in fields] == read.colnames
        for i, (meta, column) in enumerate(zip(fields, table.columns, strict=True), start=1):
            # Units, UCDs, xtypes and descriptions as the VO FITS conventions put them.
            assert header.get(f"TUNIT{i}") == meta.unit
            assert read[meta.name].unit == meta.unit or (
                meta.unit is None and not read[meta.name].unit
            )
            assert header.get(f"TUCD{i}") == meta.ucd
            assert header.get(f"TXTYP{i}") == meta.xtype
            if meta.description and meta.description.isascii():
                assert header[f"TCOMM{i}"] == meta.description
            tform, tnull = header[f"TFORM{i}"], header.get(f"TNULL{i}")
            mask = np.ma.getmaskarray(read[meta.name])
            for r, value in enumerate(column.to_pylist()):
                masked = bool(np.all(mask[r])) if mask.ndim else False
                check_cell(value, rows[meta.name][r], masked, tform, tnull)
        # A description that is not ASCII is transliterated, not dropped.
        assert header["TCOMM8"] == "e - unicode <>&"
        # Fixed-size arrays (declared or by type) are repeated columns, the rest VLAs.
        forms = {meta.name: header[f"TFORM{i}"] for i, meta in enumerate(fields, start=1)}
        assert [forms[n] for n in ("pt", "circle", "fa")] == ["2D", "3D", "2E"]
        assert [forms[n] for n in ("poly", "ia", "ba")] == ["PD(8)", "PJ(3)", "PL(3)"]
        assert header["QUERY_ST"] == "OK"
    assert spooled(tmp_path) == []


@pytest.mark.skipif(STILTS is None, reason="stilts is not installed")
def test_stilts_reads_nulls(tmp_path: Path) -> None:
    """STILTS, an independent FITS reader, sees every NULL of the all-NULL row as NULL."""
    table, fields = all_types()
    path = tmp_path / "all.fits"
    path.write_bytes(render(table, fields, tmp_path))
    run = subprocess.run(
        [str(STILTS), "tpipe", f"in={path}", "ifmt=fits", "ofmt=csv"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    header, _, _, null_row, *_ = csv.reader(io.StringIO(run.stdout))
    cells = dict(zip(header, null_row, strict=True))
    scalars = ["b", "ub", "sh", "i", "l", "f", "d", "s", "u", "c3", "ts"]
    assert {name: cells[name] for name in scalars} == dict.fromkeys(scalars, "")


def test_empty_result(tmp_path: Path) -> None:
    table, fields = all_types()
    empty = table.slice(0, 0)
    data = b"".join(write_fits([], fields, schema=empty.schema, spool_dir=tmp_path))
    with fits.open(io.BytesIO(data)) as hdus:
        hdus.verify("exception")
        assert hdus[1].header["NAXIS2"] == 0 and hdus[1].header["PCOUNT"] == 0
        assert hdus[1].columns.names == [f.name for f in fields]
    assert len(read_table(data)) == 0
    assert spooled(tmp_path) == []


def test_status_and_query_in_header(tmp_path: Path) -> None:
    table = pa.table({"x": pa.array([1, 2], pa.int32())})
    fields = [ColumnMeta("x", "int")]
    query = "SELECT x FROM t WHERE name = 'Ångström'" + " AND x > 0" * 20
    data = render(table, fields, tmp_path, overflow=lambda: True,
                  infos=[("QUERY", query, None), ("MAXREC", "2", None)])  # fmt: skip
    with fits.open(io.BytesIO(data)) as hdus:
        hdus.verify("exception")
        header = hdus[1].header
        assert header["QUERY_ST"] == "OVERFLOW" and header["MAXREC"] == "2"
        assert header["QUERY"] == query.replace("Å", "A").replace("ö", "o")  # long: CONTINUE
        assert "TNULL1" not in header  # no NULLs, no TNULL


def test_integers_wider_than_declared_are_not_cut(tmp_path: Path) -> None:
    """An Arrow type wider than the declared datatype widens the FITS column."""
    table = pa.table({
        "big": pa.array([2**40, None, -(2**40)], pa.int64()),
        "u16": pa.array([65535, 0, None], pa.uint16()),
        "u32": pa.array([2**32 - 1, 1, 2], pa.uint32()),
    })  # fmt: skip
    fields = [ColumnMeta("big", "int"), ColumnMeta("u16", "short"), ColumnMeta("u32", "int")]
    data = render(table, fields, tmp_path)
    read = read_table(data)
    assert read["big"].tolist() == [2**40, None, -(2**40)]
    assert read["u16"].tolist() == [65535, 0, None]
    assert read["u32"].tolist() == [2**32 - 1, 1, 2]


def test_declared_fixed_arrays_that_vary_stay_variable(tmp_path: Path) -> None:
    table = pa.table({
        "ok": pa.array([[1.0, 2.0], None, [3.0, 4.0]]),
        "odd": pa.array([[1.0, 2.0], [3.0], None]),
    })  # fmt: skip
    fields = [ColumnMeta("ok", "double", arraysize="2"), ColumnMeta("odd", "double", arraysize="2")]
    with fits.open(io.BytesIO(render(table, fields, tmp_path))) as hdus:
        assert hdus[1].header["TFORM1"] == "2D" and hdus[1].header["TFORM2"] == "PD(2)"
        assert [list(v) for v in hdus[1].data["odd"]] == [[1.0, 2.0], [3.0], []]
        ok = hdus[1].data["ok"]
        assert ok[0].tolist() == [1.0, 2.0] and np.isnan(ok[1]).all()


def test_large_heap_uses_64_bit_descriptors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the heap 32-bit P descriptors can address, Q descriptors (tested with a low bar)."""
    monkeypatch.setattr(fits_writer, "_P_HEAP", 16)
    table, fields = all_types()
    data = render(table, fields, tmp_path)
    with fits.open(io.BytesIO(data)) as hdus:
        assert hdus[1].header["TFORM14"].startswith("QD(")
        assert [list(v) for v in hdus[1].data["poly"]] == [
            list(v) if v else [] for v in table.column("poly").to_pylist()
        ]


# --- streaming, memory and the spool ----------------------------------------------------------

BATCH_ROWS = 20_000
BATCHES = 100
STREAM_FIELDS = [ColumnMeta("id", "long"), ColumnMeta("flux", "double", unit="nJy"),
                 ColumnMeta("band", "char", arraysize="*")]  # fmt: skip
STREAM_SCHEMA = pa.schema([("id", pa.int64()), ("flux", pa.float64()), ("band", pa.string())])


def _batch(i: int) -> pa.RecordBatch:
    ids = np.arange(i * BATCH_ROWS, (i + 1) * BATCH_ROWS, dtype=np.int64)
    bands = pa.array(np.array(["u", "g", "r", "i", "z", "y"])[ids % 6].tolist())
    return pa.record_batch([pa.array(ids), pa.array(ids * 0.5), bands], schema=STREAM_SCHEMA)


BATCH_BYTES = _batch(0).nbytes


class Source:
    """A lazily made result of :data:`BATCHES` batches that records the memory it sees."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.made = 0
        self.fail_after = fail_after
        self.base = pa.total_allocated_bytes()
        self.arrow_peak = 0

    def sample(self) -> None:
        self.arrow_peak = max(self.arrow_peak, pa.total_allocated_bytes() - self.base)

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        for i in range(BATCHES):
            if self.fail_after is not None and i == self.fail_after:
                raise QueryTimeout("the query ran longer than its time limit of 1 s")
            self.sample()
            self.made += 1
            yield _batch(i)


def test_large_result_streams_with_bounded_memory(tmp_path: Path) -> None:
    """A result of many batches: the writer holds about one batch at a time (Arrow memory
    and Python/numpy allocations both stay far below the result's size), the file goes
    out in many chunks, and the spool is gone at the end."""
    source = Source()
    total = BATCH_BYTES * BATCHES
    tracemalloc.start()
    try:
        chunks = write_fits(source, STREAM_FIELDS, schema=STREAM_SCHEMA, spool_dir=tmp_path)
        header = next(chunks)
        assert source.made == BATCHES  # the header needs the row count: all rows spooled
        assert len(spooled(tmp_path)) == 1
        sizes = [len(header)]
        for chunk in chunks:
            source.sample()
            sizes.append(len(chunk))
        python_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert spooled(tmp_path) == []
    assert len(sizes) >= 10 and max(sizes) <= 2 * (1 << 20)
    row_bytes = 8 + 8 + 1
    size = 2 * 2880 + math.ceil(row_bytes * BATCH_ROWS * BATCHES / 2880) * 2880
    assert sum(sizes) == size
    # Arrow memory: about one batch (the one spooled or read back), of 100.
    assert source.arrow_peak < 4 * BATCH_BYTES < total / 20, (source.arrow_peak, BATCH_BYTES)
    # Python and numpy memory: a chunk or two of output and one batch's cells.
    python_bound = 8 * (1 << 20) + 2 * BATCH_BYTES
    assert python_peak < python_bound < size / 3, python_peak


def test_large_result_reads_back(tmp_path: Path) -> None:
    data = b"".join(write_fits(Source(), STREAM_FIELDS, schema=STREAM_SCHEMA, spool_dir=tmp_path))
    read = read_table(data)
    assert len(read) == BATCH_ROWS * BATCHES
    assert (np.asarray(read["id"]) == np.arange(BATCH_ROWS * BATCHES)).all()
    assert (np.asarray(read["flux"]) == np.arange(BATCH_ROWS * BATCHES) * 0.5).all()
    assert read["flux"].unit == "nJy" and read["band"][7] == "g"


def test_spool_removed_when_closed_early(tmp_path: Path) -> None:
    chunks = write_fits(Source(), STREAM_FIELDS, schema=STREAM_SCHEMA, spool_dir=tmp_path)
    next(chunks)
    next(chunks)
    assert len(spooled(tmp_path)) == 1
    chunks.close()  # type: ignore[attr-defined]
    assert spooled(tmp_path) == []


def test_error_before_the_first_byte_removes_the_spool(tmp_path: Path) -> None:
    chunks = write_fits(Source(fail_after=5), STREAM_FIELDS, schema=STREAM_SCHEMA,
                        spool_dir=tmp_path)  # fmt: skip
    with pytest.raises(QueryTimeout):
        next(chunks)
    assert spooled(tmp_path) == []


def test_spool_limit(tmp_path: Path) -> None:
    source = Source()
    chunks = write_fits(source, STREAM_FIELDS, schema=STREAM_SCHEMA, spool_dir=tmp_path,
                        max_spool_bytes=3 * BATCH_BYTES)  # fmt: skip
    with pytest.raises(LimitExceeded) as info:
        next(chunks)
    assert "temporary space" in str(info.value) and source.made < BATCHES
    assert spooled(tmp_path) == []
    # Under the limit, the same result is written.
    ok = write_fits(Source(), STREAM_FIELDS, schema=STREAM_SCHEMA, spool_dir=tmp_path,
                    max_spool_bytes=2 * BATCH_BYTES * BATCHES)  # fmt: skip
    assert sum(len(c) for c in ok) > BATCH_ROWS * BATCHES * 17


def test_spool_directory_that_cannot_be_used(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    chunks = write_fits(Source(), STREAM_FIELDS, schema=STREAM_SCHEMA, spool_dir=blocker / "spool")
    with pytest.raises(InternalError) as info:
        next(chunks)
    assert "temporary space" in str(info.value) and str(tmp_path) not in str(info.value)
