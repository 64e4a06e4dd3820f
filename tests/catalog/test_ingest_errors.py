"""Bad input gets one clear message naming file, row and column; nothing half-written is seen."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skyvault.catalog.ingest import IngestOptions, ingest
from skyvault.catalog.metadata import TableMeta
from skyvault.cli import main
from skyvault.errors import IngestError, InputFormatError, UsageError
from tests.conftest import random_sky


def _positions(ra: list[float], dec: list[float]) -> pa.Table:
    return pa.table({"id": pa.array(range(len(ra))), "ra": pa.array(ra), "dec": pa.array(dec)})


def _ingest_error(tmp_path: Path, table: pa.Table, **kw: str) -> IngestError:
    src = tmp_path / "bad.parquet"
    pq.write_table(table, src)
    with pytest.raises(IngestError) as info:
        ingest([src], "s.t", tmp_path / "d", ra=kw.get("ra", "ra"), dec=kw.get("dec", "dec"))
    return info.value


@pytest.mark.parametrize(
    ("ra", "dec", "row", "column", "fragment"),
    [
        ([10.0, 360.0, 20.0], [0.0, 0.0, 0.0], 2, "ra", "outside [0, 360)"),
        ([10.0, 20.0, -0.5], [0.0, 0.0, 0.0], 3, "ra", "outside [0, 360)"),
        ([10.0, 20.0, 30.0], [0.0, 90.5, 0.0], 2, "dec", "outside [-90, 90]"),
        ([10.0, float("nan"), 30.0], [0.0, 1.0, 0.0], 2, "ra", "NaN"),
        ([10.0, 20.0, 30.0], [0.0, 1.0, float("inf")], 3, "dec", "NaN or infinite"),
    ],
)
def test_bad_positions_name_file_row_and_column(
    tmp_path: Path, ra: list[float], dec: list[float], row: int, column: str, fragment: str
) -> None:
    err = _ingest_error(tmp_path, _positions(ra, dec))
    assert err.file is not None
    assert err.file.endswith("bad.parquet")
    assert err.row == row
    assert err.column == column
    assert fragment in str(err)
    assert f"row {row}" in str(err)
    assert f"column {column!r}" in str(err)
    assert not (tmp_path / "d" / "s" / "t").exists()


def test_null_position(tmp_path: Path) -> None:
    table = pa.table({"ra": pa.array([1.0, None]), "dec": pa.array([0.0, 0.0])})
    err = _ingest_error(tmp_path, table)
    assert (err.row, err.column) == (2, "ra")
    assert "null" in str(err)


def test_missing_coordinate_column(tmp_path: Path) -> None:
    err = _ingest_error(tmp_path, _positions([1.0], [2.0]), ra="RAJ2000")
    assert err.column == "RAJ2000"
    assert "not found" in str(err)
    assert "columns are: id, ra, dec" in str(err)


def test_non_numeric_coordinate_column(tmp_path: Path) -> None:
    table = pa.table({"ra": pa.array(["12:30:00"]), "dec": pa.array([1.0])})
    err = _ingest_error(tmp_path, table)
    assert err.column == "ra"
    assert "not numeric" in str(err)


def test_bad_value_deep_in_a_later_batch_counts_rows_from_file_start(tmp_path: Path) -> None:
    table = random_sky(10_000, seed=4)
    dec = table["dec"].to_numpy().copy()
    dec[7654] = -91.0
    table = table.set_column(2, "dec", pa.array(dec))
    src = tmp_path / "big.parquet"
    pq.write_table(table, src, row_group_size=1000)
    with pytest.raises(IngestError) as info:
        ingest(
            [src], "s.t", tmp_path / "d", ra="ra", dec="dec", options=IngestOptions(batch_rows=999)
        )
    assert info.value.row == 7655


def test_csv_named_parquet_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "stars.parquet"
    src.write_text("ra,dec\n1,2\n")
    with pytest.raises(InputFormatError) as info:
        ingest([src], "s.t", tmp_path / "d", ra="ra", dec="dec")
    assert "the name says Parquet but the content is CSV" in str(info.value)
    assert "stars.parquet" in str(info.value)


def test_truncated_parquet_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "stars.parquet"
    pq.write_table(random_sky(100), src)
    src.write_bytes(src.read_bytes()[:-100])
    with pytest.raises(InputFormatError, match="truncated"):
        ingest([src], "s.t", tmp_path / "d", ra="ra", dec="dec")


def test_binary_named_fits_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "stars.fits"
    src.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(InputFormatError, match="the name says FITS"):
        ingest([src], "s.t", tmp_path / "d", ra="ra", dec="dec")


def test_unknown_suffix_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "stars.dat"
    src.write_text("ra dec\n")
    with pytest.raises(InputFormatError, match="cannot tell the format"):
        ingest([src], "s.t", tmp_path / "d", ra="ra", dec="dec")


def test_column_changing_type_between_files(tmp_path: Path) -> None:
    a = _positions([1.0], [2.0])
    b = a.set_column(0, "id", pa.array([1.5]))
    pq.write_table(a, tmp_path / "a.parquet")
    pq.write_table(b, tmp_path / "b.parquet")
    with pytest.raises(IngestError) as info:
        ingest(
            [tmp_path / "a.parquet", tmp_path / "b.parquet"],
            "s.t",
            tmp_path / "d",
            ra="ra",
            dec="dec",
        )
    err = info.value
    assert err.column == "id"
    assert err.file is not None
    assert err.file.endswith("b.parquet")
    assert "type changes between files: int64 in a.parquet, double here" in str(err)


def test_csv_column_changing_type_between_files_names_the_row(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("id,ra,dec\n1,10.0,0.0\n2,11.0,1.0\n")
    (tmp_path / "b.csv").write_text("id,ra,dec\n3,12.0,0.0\nfour,13.0,1.0\n")
    with pytest.raises(IngestError) as info:
        ingest([tmp_path / "a.csv", tmp_path / "b.csv"], "s.t", tmp_path / "d", ra="ra", dec="dec")
    err = info.value
    assert err.file is not None
    assert err.file.endswith("b.csv")
    assert err.column == "id"
    assert err.row == 2
    assert "four" in str(err)


def test_files_with_different_columns(tmp_path: Path) -> None:
    a = _positions([1.0], [2.0])
    pq.write_table(a, tmp_path / "a.parquet")
    pq.write_table(a.drop_columns(["id"]), tmp_path / "b.parquet")
    with pytest.raises(IngestError, match="lacks id"):
        ingest(
            [tmp_path / "a.parquet", tmp_path / "b.parquet"],
            "s.t",
            tmp_path / "d",
            ra="ra",
            dec="dec",
        )


@pytest.mark.parametrize("name", ["nodot", "a.b.c", "1abc.t", "s.t-x", "s.", ".t"])
def test_bad_table_names(tmp_path: Path, name: str) -> None:
    pq.write_table(_positions([1.0], [2.0]), tmp_path / "a.parquet")
    with pytest.raises(UsageError, match=r"SCHEMA\.TABLE"):
        ingest([tmp_path / "a.parquet"], name, tmp_path / "d")


def test_glob_matching_nothing(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no file matches"):
        ingest([str(tmp_path / "*.parquet")], "s.t", tmp_path / "d")


def test_failure_keeps_the_earlier_version(tmp_path: Path) -> None:
    data = tmp_path / "d"
    pq.write_table(random_sky(500, seed=1), tmp_path / "good.parquet")
    ingest([tmp_path / "good.parquet"], "s.t", data, ra="ra", dec="dec")
    # The second file is bad at its last row: the failure comes after work has started.
    bad = random_sky(500, seed=2)
    ra = bad["ra"].to_numpy().copy()
    ra[-1] = 400.0
    pq.write_table(bad.set_column(1, "ra", pa.array(ra)), tmp_path / "bad.parquet")
    with pytest.raises(IngestError):
        ingest(
            [tmp_path / "good.parquet", tmp_path / "bad.parquet"], "s.t", data, ra="ra", dec="dec"
        )
    assert TableMeta.read(data / "s" / "t").nrows == 500
    assert list((data / "s" / ".skyvault" / "tmp").iterdir()) == []


class _InterruptAt:
    """A progress sink that raises KeyboardInterrupt (as Ctrl-C would) in a given stage."""

    def __init__(self, stage: str) -> None:
        self.target = stage
        self.current = ""

    def stage(self, label: str, total: int | None) -> None:
        self.current = label

    def advance(self, rows: int) -> None:
        if self.current.startswith(self.target):
            raise KeyboardInterrupt


@pytest.mark.parametrize("stage", ["scan", "split", "write partitions", "write margin"])
def test_interrupt_in_any_stage_leaves_nothing(tmp_path: Path, stage: str) -> None:
    data = tmp_path / "d"
    pq.write_table(random_sky(3000, seed=1), tmp_path / "a.parquet")
    ingest([tmp_path / "a.parquet"], "s.t", data, ra="ra", dec="dec")
    before = (data / "s" / "t").resolve()
    pq.write_table(random_sky(4000, seed=2), tmp_path / "b.parquet")
    with pytest.raises(KeyboardInterrupt):
        ingest(
            [tmp_path / "b.parquet"],
            "s.t",
            data,
            ra="ra",
            dec="dec",
            progress=_InterruptAt(stage),
            options=IngestOptions(max_rows_per_partition=500, margin_arcsec=600),
        )
    assert (data / "s" / "t").resolve() == before
    assert TableMeta.read(data / "s" / "t").nrows == 3000
    assert list((data / "s" / ".skyvault" / "tmp").iterdir()) == []


_KILL_SCRIPT = """
import sys
from pathlib import Path
from skyvault.catalog.ingest import IngestOptions, ingest

class Slow:
    def stage(self, label, total):
        print("STAGE", label, flush=True)
    def advance(self, rows):
        import time; time.sleep(0.05)

ingest([sys.argv[1]], "s.t", Path(sys.argv[2]), ra="ra", dec="dec", progress=Slow(),
       options=IngestOptions(batch_rows=500, max_rows_per_partition=2000))
"""


@pytest.mark.slow
def test_kill_9_mid_ingest_leaves_earlier_version_and_is_cleaned_up(tmp_path: Path) -> None:
    data = tmp_path / "d"
    pq.write_table(random_sky(1000, seed=1), tmp_path / "a.parquet")
    ingest([tmp_path / "a.parquet"], "s.t", data, ra="ra", dec="dec")
    pq.write_table(random_sky(40_000, seed=2), tmp_path / "b.parquet")
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILL_SCRIPT, str(tmp_path / "b.parquet"), str(data)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("STAGE split"):
            break
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    tmp_root = data / "s" / ".skyvault" / "tmp"
    assert len(list(tmp_root.iterdir())) == 1, "the killed build is left, invisible"
    assert TableMeta.read(data / "s" / "t").nrows == 1000
    # The next ingest of any table in the schema removes the abandoned build.
    pq.write_table(random_sky(10, seed=3), tmp_path / "c.parquet")
    ingest([tmp_path / "c.parquet"], "s.other", data, ra="ra", dec="dec")
    assert list(tmp_root.iterdir()) == []
    assert TableMeta.read(data / "s" / "t").nrows == 1000


def test_cli_prints_one_line_and_exits_non_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pq.write_table(_positions([1.0, 500.0], [2.0, 3.0]), tmp_path / "a.parquet")
    status = main(
        ["ingest", str(tmp_path / "a.parquet"), "--table", "s.t", "--ra", "ra", "--dec", "dec",
         "--data", str(tmp_path / "d")]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert status == 1
    assert err.count("\n") == 1
    assert "row 2" in err
    assert "'ra'" in err
    assert "a.parquet" in err
    assert "Traceback" not in err


def test_cli_ingest_succeeds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pq.write_table(random_sky(300), tmp_path / "a.parquet")
    status = main(
        ["ingest", str(tmp_path / "a.parquet"), "--table", "s.t", "--ra", "ra", "--dec", "dec",
         "--data", str(tmp_path / "d")]
    )  # fmt: skip
    assert status == 0
    assert "ingested 300 rows into s.t" in capsys.readouterr().out
    assert main(["tables", "--data", str(tmp_path / "d")]) == 0
    assert "s.t\thats\t300 rows" in capsys.readouterr().out


def test_cli_usage_error_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pq.write_table(random_sky(3), tmp_path / "a.parquet")
    status = main(
        ["ingest", str(tmp_path / "a.parquet"), "--table", "bad", "--data", str(tmp_path)]
    )
    assert status == 2
    assert "SCHEMA.TABLE" in capsys.readouterr().err


def test_values_are_unchanged_by_ingest(tmp_path: Path) -> None:
    table = random_sky(2000, seed=9)
    pq.write_table(table, tmp_path / "a.parquet")
    ingest([tmp_path / "a.parquet"], "s.t", tmp_path / "d", ra="ra", dec="dec")
    root = tmp_path / "d" / "s" / "t" / "dataset"
    back = pq.read_table(sorted(root.glob("Norder=*/Dir=*/*.parquet"))).sort_by("id")
    for name in table.column_names:
        assert back[name].equals(table[name]), name
    assert np.all(back["_healpix_29"].to_numpy() >= 0)


def test_a_bad_position_prints_the_plain_number(tmp_path: Path) -> None:
    err = _ingest_error(tmp_path, _positions([100.0, 200.0, 300.0], [0.0, 90.5, 0.0]))
    assert "value outside [-90, 90]: 90.5" in str(err)
    assert "np.float64" not in str(err)
    assert err.hint == "Dec must be in degrees within [-90, 90]"  # RA beyond 90: no swap


def test_swapped_ra_and_dec_are_named_in_the_hint(tmp_path: Path) -> None:
    # Dec-like values in "ra", RA-like values in "dec": the RA check trips on -30.
    swapped = pa.table({"ra": [-30.0, 12.5, 45.0], "dec": [150.0, 210.0, 95.5]})
    err = _ingest_error(tmp_path, swapped)
    assert "value outside [0, 360): -30.0" in str(err)
    assert err.hint is not None
    assert "pass --ra dec --dec ra" in err.hint
    # All RA-like values positive: the Dec check trips on 150.
    swapped = pa.table({"ra": [30.0, 12.5, 45.0], "dec": [150.0, 210.0, 95.5]})
    err = _ingest_error(tmp_path, swapped)
    assert "value outside [-90, 90]: 150.0" in str(err)
    assert err.hint is not None and "if the columns are swapped" in err.hint
