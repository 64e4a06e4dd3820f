"""Planner and executor on hand-written SQL: pruning, MAXREC, time-outs, cancellation, sandbox."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy.coordinates import SkyCoord

from skyvault.catalog.ingest import ingest
from skyvault.catalog.registry import Registry, StoredTable
from skyvault.engine.connection import Sandbox
from skyvault.engine.executor import CancelToken, LocalExecutor, engine_error
from skyvault.engine.plan import ScanSpec, plan_query
from skyvault.errors import (
    InternalError,
    QueryCancelled,
    QueryError,
    QueryFailed,
    QueryTimeout,
    StorageError,
)
from skyvault.sky.coverage import region_coverage
from skyvault.sky.regions import Circle
from skyvault.sky.sql import point_in_circle_sql
from tests.conftest import SKY_ROWS, SkyCatalogue, random_sky


@pytest.fixture(scope="module")
def catalogue(sky_catalogue: SkyCatalogue) -> tuple[Path, StoredTable]:
    data = sky_catalogue.data
    return data, Registry(data).get(sky_catalogue.schema, sky_catalogue.table)


@pytest.fixture(scope="module")
def executor(catalogue: tuple[Path, StoredTable]) -> LocalExecutor:
    return LocalExecutor(Sandbox([catalogue[0]]))


def _cone_sql(circle: Circle) -> str:
    return f'SELECT id, ra, dec FROM "__sv_t0" WHERE {point_in_circle_sql("ra", "dec", circle)}'


@pytest.mark.parametrize(
    ("ra", "dec", "radius"),
    [(10.0, 20.0, 2.0), (359.9, 0.5, 1.5), (0.0, 89.5, 3.0), (200.0, -45.0, 0.2)],
)
def test_cone_reads_few_partitions_and_matches_astropy(
    sky_catalogue: SkyCatalogue,
    catalogue: tuple[Path, StoredTable],
    executor: LocalExecutor,
    ra: float,
    dec: float,
    radius: float,
) -> None:
    _, stored = catalogue
    circle = Circle(ra, dec, radius)
    plan = plan_query(
        _cone_sql(circle),
        [ScanSpec(placeholder="__sv_t0", table=stored, coverage=region_coverage(circle, 16))],
        [],
    )
    got = executor.execute(plan).to_table()
    # Oracle: astropy separations over every row of the input.
    source = sky_catalogue.rows
    sep = SkyCoord(source["ra"].to_numpy(), source["dec"].to_numpy(), unit="deg").separation(
        SkyCoord(ra, dec, unit="deg")
    )
    want = set(source["id"].to_numpy()[sep.deg <= radius].tolist())
    assert set(got["id"].to_pylist()) == want
    scan = plan.scans[0]
    assert scan.total_files == len(stored.partitions or ())
    assert 0 < len(scan.files) < scan.total_files / 4, "pruning opened too many partitions"


def test_pruning_skips_row_groups(catalogue: tuple[Path, StoredTable]) -> None:
    """The _healpix_29 ranges select few row groups: count them from the files' statistics."""
    import cdshealpix.nested as chp

    _, stored = catalogue
    index = stored.partitions
    assert index is not None
    # A small cone in the middle of the most populated partition.
    biggest = max(range(len(index)), key=lambda i: pq.ParquetFile(index.files[i]).metadata.num_rows)
    lon, lat = chp.healpix_to_lonlat(
        index.pixels[biggest : biggest + 1].astype(np.uint64), int(index.orders[biggest])
    )
    circle = Circle(float(lon.deg[0]), float(lat.deg[0]), 0.05)
    plan = plan_query(
        _cone_sql(circle),
        [ScanSpec(placeholder="__sv_t0", table=stored, coverage=region_coverage(circle, 16))],
        [],
    )
    scan = plan.scans[0]
    assert len(scan.files) >= 1
    assert scan.ranges is not None
    total = kept = 0
    for path in scan.files:
        meta = pq.ParquetFile(path).metadata
        for i in range(meta.num_row_groups):
            stats = meta.row_group(i).column(0).statistics  # _healpix_29 is column 0
            total += 1
            lo, hi = stats.min, stats.max
            if any(lo < r_hi and r_lo <= hi for r_lo, r_hi in scan.ranges.tolist()):
                kept += 1
    assert total >= 4
    assert 0 < kept < total


def test_empty_coverage_reads_nothing(
    catalogue: tuple[Path, StoredTable], executor: LocalExecutor
) -> None:
    from mocpy import MOC

    _, stored = catalogue
    plan = plan_query(
        'SELECT id FROM "__sv_t0"',
        [ScanSpec(placeholder="__sv_t0", table=stored, coverage=MOC.new_empty(10))],
        [],
    )
    assert plan.files_read == 0
    assert executor.execute(plan).to_table().num_rows == 0


def test_maxrec_overflow_only_when_rows_are_cut(
    catalogue: tuple[Path, StoredTable], executor: LocalExecutor
) -> None:
    _, stored = catalogue
    plan = plan_query(
        'SELECT id FROM "__sv_t0" WHERE id < 100',
        [ScanSpec(placeholder="__sv_t0", table=stored)],
        [],
    )
    exact = executor.execute(plan, maxrec=100)
    assert exact.to_table().num_rows == 100
    assert not exact.overflow
    cut = executor.execute(plan, maxrec=99)
    assert cut.to_table().num_rows == 99
    assert cut.overflow
    metadata_only = executor.execute(plan, maxrec=0)
    table = metadata_only.to_table()
    assert table.num_rows == 0
    assert table.schema.names == ["id"]
    assert metadata_only.overflow


def test_results_stream_in_batches(
    catalogue: tuple[Path, StoredTable], executor: LocalExecutor
) -> None:
    _, stored = catalogue
    plan = plan_query(
        'SELECT a.id FROM "__sv_t0" a, (SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3) b',
        [ScanSpec(placeholder="__sv_t0", table=stored)],
        [],
    )
    result = executor.execute(plan)
    sizes = [b.num_rows for b in result.batches]
    assert sum(sizes) == 3 * SKY_ROWS
    assert len(sizes) > 1


_SLOW = 'SELECT count(*) FROM "__sv_t0" a, "__sv_t0" b WHERE a.mag + b.mag > 1000'


def test_cancel_from_another_thread_within_a_second(
    catalogue: tuple[Path, StoredTable], executor: LocalExecutor
) -> None:
    _, stored = catalogue
    plan = plan_query(_SLOW, [ScanSpec(placeholder="__sv_t0", table=stored)], [])
    token = CancelToken()
    threading.Timer(0.5, token.cancel).start()
    started = time.monotonic()
    with pytest.raises(QueryCancelled):
        executor.execute(plan, cancel=token).to_table()
    assert time.monotonic() - started < 0.5 + 1.0


def test_timeout(catalogue: tuple[Path, StoredTable], executor: LocalExecutor) -> None:
    _, stored = catalogue
    plan = plan_query(_SLOW, [ScanSpec(placeholder="__sv_t0", table=stored)], [])
    with pytest.raises(QueryTimeout, match=r"time limit of 0\.3 s"):
        executor.execute(plan, timeout=0.3).to_table()


def test_a_short_time_limit_fires_behind_a_long_one(
    catalogue: tuple[Path, StoredTable], executor: LocalExecutor
) -> None:
    """The shared deadline watcher wakes for a nearer deadline added after a farther one."""
    _, stored = catalogue
    plan = plan_query(_SLOW, [ScanSpec(placeholder="__sv_t0", table=stored)], [])
    waiting = executor.execute(plan, timeout=60.0)  # started, not read: its deadline waits
    started = time.monotonic()
    with pytest.raises(QueryTimeout, match=r"time limit of 0\.4 s"):
        executor.execute(plan, timeout=0.4).to_table()
    assert time.monotonic() - started < 5.0
    waiting.batches.close()


@pytest.mark.parametrize("how", ["timeout", "cancel"])
def test_interrupted_while_streaming(
    catalogue: tuple[Path, StoredTable], executor: LocalExecutor, how: str
) -> None:
    """The interruption comes after ``execute`` returned, while batches are being read
    (DuckDB then raises from Arrow's reader, not as a DuckDB exception)."""
    _, stored = catalogue
    slower = (
        'SELECT count(*) FROM "__sv_t0" a, "__sv_t0" b, "__sv_t0" c '
        "WHERE a.mag + b.mag + c.mag > 1000"
    )
    sql = f'SELECT id FROM "__sv_t0" UNION ALL SELECT * FROM ({slower})'
    plan = plan_query(sql, [ScanSpec(placeholder="__sv_t0", table=stored)], [])
    token = CancelToken()
    if how == "cancel":
        threading.Timer(1.0, token.cancel).start()
    expected = QueryTimeout if how == "timeout" else QueryCancelled

    def run() -> None:
        # DuckDB may run into the slow part before execute() returns or after, while the
        # batches are read: either way the error is the same.
        result = executor.execute(plan, timeout=1.0 if how == "timeout" else None, cancel=token)
        for _ in result.batches:
            pass

    started = time.monotonic()
    with pytest.raises(expected):
        run()
    assert time.monotonic() - started < 10


def test_data_errors_are_query_errors_without_paths(
    catalogue: tuple[Path, StoredTable], executor: LocalExecutor
) -> None:
    data, stored = catalogue
    plan = plan_query(
        'SELECT CAST(name AS INTEGER) FROM "__sv_t0"',
        [ScanSpec(placeholder="__sv_t0", table=stored)],
        [],
    )
    with pytest.raises(QueryError) as info:
        executor.execute(plan).to_table()
    assert "the string 'star " in str(info.value)
    assert "is not a valid INTEGER value" in str(info.value)
    assert str(data) not in str(info.value)


def test_division_by_zero_is_a_query_error_in_adql_terms(
    catalogue: tuple[Path, StoredTable], executor: LocalExecutor
) -> None:
    _, stored = catalogue
    plan = plan_query(
        'SELECT 1 // COUNT(*) FROM "__sv_t0" WHERE false',
        [ScanSpec(placeholder="__sv_t0", table=stored)],
        [],
    )
    with pytest.raises(QueryError) as info:
        executor.execute(plan).to_table()
    assert "division by zero" in str(info.value)
    assert "SET" not in str(info.value) and "TRY" not in str(info.value)
    assert info.value.hint is not None and "CASE" in info.value.hint


def test_engine_faults_say_nothing_about_the_server(
    catalogue: tuple[Path, StoredTable], executor: LocalExecutor
) -> None:
    _, stored = catalogue
    plan = plan_query(
        'SELECT no_such_column FROM "__sv_t0"', [ScanSpec(placeholder="__sv_t0", table=stored)], []
    )
    with pytest.raises(QueryFailed) as info:
        executor.execute(plan)
    assert str(info.value).startswith("the query failed while running: ")
    assert "no_such_column" not in str(info.value)
    assert "/" not in str(info.value)
    _assert_no_engine_text(str(info.value))


#: Words of DuckDB's vocabulary and of the translated SQL that no user may see.
ENGINE_WORDS = (
    "Error:", "INT128", "INT64", "INT32", "INT16", "HUGEINT", "duckdb", "DuckDB", "CAST(",
    "__sv_", "read_parquet", "/tmp/", "TRY(", "SET ", "Traceback",
)  # fmt: skip


def _assert_no_engine_text(text: str) -> None:
    for word in ENGINE_WORDS:
        assert word not in text, f"{word!r} in {text!r}"


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ('SELECT CAST(name AS INTEGER) FROM "__sv_t0"', "is not a valid INTEGER value"),
        (
            'SELECT id * 9223372036854775807 FROM "__sv_t0" WHERE id > 1',
            "an integer multiplication overflowed",
        ),
        ('SELECT id + 9223372036854775807 FROM "__sv_t0" WHERE id > 1', "addition overflowed"),
        ('SELECT CAST(id * 1000 AS SMALLINT) FROM "__sv_t0"', "does not fit in SMALLINT"),
        ('SELECT CAST(sum(id) * 99999999999999999 AS BIGINT) FROM "__sv_t0"', "fit in BIGINT"),
        ('SELECT CAST(name AS DOUBLE) FROM "__sv_t0"', "is not a valid DOUBLE PRECISION value"),
        (
            'SELECT id FROM "__sv_t0" WHERE id = (SELECT id FROM "__sv_t0")',
            "a subquery used as a single value returned more than one row",
        ),
    ],
)
def test_value_errors_are_worded_in_adql_terms(
    catalogue: tuple[Path, StoredTable], executor: LocalExecutor, sql: str, message: str
) -> None:
    _, stored = catalogue
    plan = plan_query(sql, [ScanSpec(placeholder="__sv_t0", table=stored)], [])
    with pytest.raises(QueryError) as info:
        executor.execute(plan).to_table()
    assert message in str(info.value)
    assert not isinstance(info.value, QueryFailed)
    _assert_no_engine_text(str(info.value))


@pytest.mark.parametrize(
    ("exc", "kind", "message"),
    [
        (
            duckdb.BinderException(
                'Binder Error: Referenced column "x" not found in FROM clause! LINE 1: '
                "SELECT x FROM read_parquet('/tmp/a/b.parquet') AS __sv_t0"
            ),
            QueryFailed,
            "the query failed while running: the query could not be planned",
        ),
        (
            duckdb.NotImplementedException("Not implemented Error: CAST(INT128 ...)"),
            QueryFailed,
            "a combination of operations the engine does not support",
        ),
        (
            duckdb.IOException("IO Error: No files found that match '/srv/data/x.parquet'"),
            InternalError,
            "stored data could not be read",
        ),
        (
            duckdb.InternalException("INTERNAL Error: Attempted to access index 3"),
            InternalError,
            "an internal fault",
        ),
        # Errors met while Arrow's reader pulls rows come as OSError with DuckDB's text.
        (
            OSError("Invalid Input Error: Division by zero in expression (1 // x). Use TRY()"),
            QueryError,
            "division by zero",
        ),
        (
            OSError("Conversion Error: Could not convert string 'g' to INT32\nLINE 1: CAST("),
            QueryError,
            "the string 'g' is not a valid INTEGER value",
        ),
        (
            OSError(
                "Conversion Error: Type INT128 with value 3053465277871187987088 can't be cast "
                "because the value is out of range for the destination type INT64 when casting "
                "from source column sum(ivo_healpix_index(CAST(27 AS INTEGER), ra, dec))"
            ),
            QueryError,
            "the value 3053465277871187987088 does not fit in BIGINT",
        ),
        (OSError("Binder Error: no such thing __sv_t1"), QueryFailed, "could not be planned"),
        (pa.ArrowInvalid("Invalid: column 3 /tmp/x"), InternalError, "could not be assembled"),
        (duckdb.OutOfMemoryException("Out of Memory Error: 2 GiB"), QueryError, "more memory"),
        # A spill to a full temporary directory: the service's fault, said without its path.
        (
            duckdb.IOException(
                'IO Error: Could not write file "/srv/tmp/duckdb_temp_storage-4.tmp": '
                "No space left on device"
            ),
            StorageError,
            "out of disk space",
        ),
        (
            OSError('IO Error: Could not write file "/srv/x.tmp": No space left on device'),
            StorageError,
            "out of disk space",
        ),
    ],
)
def test_engine_error_maps_every_engine_exception(
    exc: BaseException, kind: type[Exception], message: str
) -> None:
    error = engine_error(exc)
    assert type(error) is kind
    assert message in str(error)
    _assert_no_engine_text(str(error))


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/hostname')",
        "SELECT * FROM glob('/*')",
        "COPY (SELECT 1) TO '/tmp/skyvault-escape.csv'",
        "ATTACH '/tmp/skyvault-escape.db'",
        "SET enable_external_access = true",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SELECT * FROM read_parquet('https://example.org/x.parquet')",
    ],
)
def test_sandbox_refuses_escapes_even_in_raw_sql(
    catalogue: tuple[Path, StoredTable], executor: LocalExecutor, sql: str
) -> None:
    """Second wall: even SQL that bypassed the ADQL whitelist cannot leave the data root."""
    _, stored = catalogue
    plan = plan_query(sql, [ScanSpec(placeholder="__sv_t0", table=stored)], [])
    with pytest.raises((InternalError, QueryError)):
        executor.execute(plan).to_table()
    assert not Path("/tmp/skyvault-escape.csv").exists()
    assert not Path("/tmp/skyvault-escape.db").exists()


def test_registry_sees_reingest(catalogue: tuple[Path, StoredTable], tmp_path: Path) -> None:
    data = tmp_path / "d"
    pq.write_table(random_sky(100), tmp_path / "a.parquet")
    ingest([tmp_path / "a.parquet"], "s.t", data, ra="ra", dec="dec")
    registry = Registry(data)
    assert registry.get("s", "t").meta.nrows == 100
    pq.write_table(random_sky(150), tmp_path / "b.parquet")
    ingest([tmp_path / "b.parquet"], "s.t", data, ra="ra", dec="dec")
    assert [t.nrows for t in registry.tables()] == [150]
    assert np.all([len(t.all_files) > 0 for t in registry.refresh()])
