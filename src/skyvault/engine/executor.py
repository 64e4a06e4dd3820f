"""Run a query plan in DuckDB and stream its result, with limits, time-outs and cancellation.

The local executor runs the whole plan in one DuckDB query: DuckDB splits the scan of the
pruned files and row groups over its worker threads and merges ORDER BY, DISTINCT, GROUP BY
and aggregates itself, so every answer is exactly that of the query over the whole table.
A plan holds only SQL and file lists, so the distributed executor
(:class:`~skyvault.engine.distributed.DaskExecutor`) runs the same plan as per-partition
partial queries on Dask workers and a merge query here (:mod:`skyvault.engine.split`); this
local executor is the default, and the one tasks and merges run on.

Every DuckDB error is turned into a skyvault error: what a user can fix (a conversion
error in the data, a query needing more memory) becomes :class:`QueryError` with DuckDB's
message stripped of server paths; anything else is an :class:`InternalError` that says
nothing about the server.
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import duckdb
import pyarrow as pa

from skyvault.catalog.metadata import ColumnMeta
from skyvault.engine.budget import MAX_BATCH_ROWS, batch_rows, row_bytes
from skyvault.engine.connection import Sandbox
from skyvault.engine.direct import evaluate
from skyvault.engine.plan import QueryPlan, Scan
from skyvault.engine.smallscan import SMALL_SCAN_ROWS, FooterCache, read_small_scan
from skyvault.errors import InternalError, QueryCancelled, QueryError, QueryTimeout

__all__ = ["CancelToken", "LocalExecutor", "QueryResult"]

log = logging.getLogger(__name__)

BATCH_ROWS = MAX_BATCH_ROWS
"""Most rows in a record batch; wide rows get fewer (:func:`~skyvault.engine.budget.batch_rows`),
so a batch, and what a writer makes of it, stays a few MiB whatever the result's width."""
REINTERRUPT_S = 0.25
"""How often a cancelled query that has not stopped is interrupted again."""


class CancelToken:
    """Cancels a running query from another thread (a UWS ABORT, a client gone)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cursor: duckdb.DuckDBPyConnection | None = None
        self.cancelled = False

    def cancel(self) -> None:
        """Stop the query; it raises :class:`QueryCancelled` within a moment.

        The interruption is repeated every :data:`REINTERRUPT_S` while the query is still
        attached: DuckDB can miss one that lands between two stages of a query.
        """
        with self._lock:
            self.cancelled = True
        self._fire()

    @property
    def _active(self) -> bool:
        """A query is attached (what the deadline watcher asks before :meth:`_fire`)."""
        return self._cursor is not None

    def _fire(self) -> None:
        """Interrupt the attached query, and again later while it stays attached."""
        with self._lock:
            if self._cursor is None:
                return
            self._cursor.interrupt()
        _DEADLINES.add(time.monotonic() + REINTERRUPT_S, self)

    def _attach(self, cursor: duckdb.DuckDBPyConnection | None) -> None:
        with self._lock:
            self._cursor = cursor
            cancelled = self.cancelled
        if cursor is not None and cancelled:
            self._fire()


@dataclass
class QueryResult:
    """A result being streamed: metadata now, rows as ``batches`` is iterated.

    ``overflow`` becomes meaningful once ``batches`` is exhausted: True when MAXREC cut rows.
    """

    columns: tuple[ColumnMeta, ...]
    schema: pa.Schema
    batches: Iterator[pa.RecordBatch]
    plan: QueryPlan
    overflow: bool = False
    rows: int = 0
    stats: dict[str, float] = field(default_factory=dict)

    def to_table(self) -> pa.Table:
        """Read the whole result (for results that fit in memory)."""
        return pa.Table.from_batches(list(self.batches), schema=self.schema)


class LocalExecutor:
    """Runs plans in a :class:`Sandbox` on this machine.

    Scans whose index ranges select few rows are read by the index path
    (:mod:`skyvault.engine.smallscan`) and handed to DuckDB as Arrow tables;
    ``small_scans=False`` turns that off (tests compare both paths); ``small_scan_rows`` is
    the most rows (in whole row groups) that path reads.  Simple sky searches over such a
    scan are answered without DuckDB (:mod:`skyvault.engine.direct`) unless ``direct`` is
    False.
    """

    def __init__(
        self,
        sandbox: Sandbox,
        *,
        small_scans: bool = True,
        small_scan_rows: int = SMALL_SCAN_ROWS,
        direct: bool = True,
    ) -> None:
        self.sandbox = sandbox
        self.direct = direct
        self.small_scans = small_scans
        self.small_scan_rows = small_scan_rows
        self.footers = FooterCache()

    def execute(
        self,
        plan: QueryPlan,
        *,
        maxrec: int | None = None,
        timeout: float | None = None,
        cancel: CancelToken | None = None,
    ) -> QueryResult:
        """Start ``plan``; rows arrive as the result's ``batches`` are read.

        ``maxrec`` cuts the result after that many rows (``overflow`` tells if rows were
        cut; 0 gives the metadata only); ``timeout`` (seconds) covers the whole query,
        streaming included.
        """
        token = cancel or CancelToken()
        if token.cancelled:
            raise QueryCancelled("the query was cancelled")
        started = time.monotonic()
        scans = [self._materialised(planned) for planned in plan.scans]
        direct = self._direct(plan, scans, maxrec)
        if direct is not None:
            direct.stats["plan_s"] = time.monotonic() - started
            return direct
        cursor = self.sandbox.cursor()
        token._attach(cursor)
        timer = _Timer(timeout, token)
        small_scans = 0
        try:
            for planned, scan in zip(plan.scans, scans, strict=True):
                small_scans += scan is not planned
                if scan.arrow is not None and scan.cell is None:
                    cursor.register(scan.placeholder, scan.arrow)
                else:
                    if scan.arrow is not None:  # an upload in a cell join: a view adds keys
                        cursor.register(scan.arrow_name, scan.arrow)
                    cursor.execute(f'CREATE TEMP VIEW "{scan.placeholder}" AS {scan.view_sql()}')
            sql = plan.sql
            if maxrec is not None:
                sql = f"SELECT * FROM ({sql}) AS __sv_result LIMIT {int(maxrec) + 1}"
            rows = batch_rows(row_bytes(plan.columns))
            reader: pa.RecordBatchReader = cursor.sql(sql).to_arrow_reader(rows)
        except BaseException as exc:
            timer.cancel()
            token._attach(None)
            cursor.close()
            raise _translate_error(exc, timer, token) from None
        schema = reader.schema
        result = QueryResult(
            columns=_with_names(plan.columns, schema),
            schema=schema,
            batches=iter(()),
            plan=plan,
        )
        result.stats["plan_s"] = time.monotonic() - started
        result.stats["small_scans"] = small_scans

        def stream() -> Iterator[pa.RecordBatch]:
            remaining = maxrec
            try:
                while True:
                    try:
                        batch = reader.read_next_batch()
                    except StopIteration:
                        return
                    if remaining is not None:
                        if batch.num_rows > remaining:
                            result.overflow = True
                            batch = batch.slice(0, remaining)
                        remaining -= batch.num_rows
                    if batch.num_rows:
                        result.rows += batch.num_rows
                        yield batch
                    if remaining == 0:
                        # One more row would be an overflow: find out without reading it all.
                        try:
                            extra = reader.read_next_batch()
                            result.overflow = result.overflow or extra.num_rows > 0
                        except StopIteration:
                            pass
                        return
            except (duckdb.Error, pa.ArrowException, OSError) as exc:
                # An interruption while Arrow's reader pulls rows surfaces as OSError.
                raise _translate_error(exc, timer, token) from None
            finally:
                timer.cancel()
                token._attach(None)
                cursor.close()
                result.stats["total_s"] = time.monotonic() - started

        result.batches = stream()
        return result

    def _direct(self, plan: QueryPlan, scans: list[Scan], maxrec: int | None) -> QueryResult | None:
        """The result computed without DuckDB (:mod:`skyvault.engine.direct`), when the
        plan is a simple sky search whose one scan the index path read."""
        if plan.direct is None or not self.direct or len(scans) != 1:
            return None
        scan = scans[0]
        if scan.arrow is None or scan is plan.scans[0]:
            return None
        table = evaluate(plan.direct, scan.arrow)
        if table is None:
            return None
        overflow = maxrec is not None and table.num_rows > maxrec
        if maxrec is not None:
            table = table.slice(0, maxrec)
        result = QueryResult(
            columns=_with_names(plan.columns, table.schema),
            schema=table.schema,
            batches=iter(table.to_batches(batch_rows(row_bytes(plan.columns)))),
            plan=plan,
            overflow=overflow,
            rows=table.num_rows,
        )
        result.stats["small_scans"] = 1
        result.stats["direct"] = 1
        return result

    def _materialised(self, scan: Scan) -> Scan:
        """``scan`` with its rows in memory when the index path can read them cheaply."""
        if not self.small_scans or scan.arrow is not None or scan.ranges is None:
            return scan
        if not scan.files or not scan.positional:
            return scan
        try:
            table = read_small_scan(
                scan.files, scan.ranges, scan.columns, self.footers, self.small_scan_rows
            )
        except (OSError, pa.ArrowException) as exc:
            # DuckDB reads the same files and reports a failure the usual way.
            log.warning("index path failed, scanning with DuckDB: %s", exc)
            return scan
        if table is None:
            return scan
        return dataclasses.replace(scan, arrow=table)


class _Due(Protocol):
    """What the deadline watcher fires: still ``_active``, it calls ``_fire``."""

    @property
    def _active(self) -> bool: ...

    def _fire(self) -> None: ...


class _Deadlines:
    """One watcher thread for every query's time limit.

    A ``threading.Timer`` per query starts and joins a thread for each query, which costs
    more than a small cone takes to run; this keeps a heap of deadlines instead and fires
    the ones that are due.  Cancelled entries are dropped lazily when they come up.
    """

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._heap: list[tuple[float, int, _Due]] = []
        self._count = 0
        self._thread: threading.Thread | None = None

    def add(self, due: float, timer: _Due) -> None:
        with self._cv:
            self._count += 1
            if self._count % 4096 == 0:  # drop finished queries' entries now and then
                self._heap = [entry for entry in self._heap if entry[2]._active]
                heapq.heapify(self._heap)
            heapq.heappush(self._heap, (due, self._count, timer))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="skyvault-deadlines", daemon=True
                )
                self._thread.start()
            elif self._heap[0][2] is timer:
                self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    wait = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cv.wait(wait)
                _, _, timer = heapq.heappop(self._heap)
            if timer._active:
                try:
                    timer._fire()
                except Exception:  # the watcher must outlive any one query
                    log.exception("a query deadline could not be acted on")


_DEADLINES = _Deadlines()


class _Timer:
    """Interrupts the query when its time is up."""

    def __init__(self, timeout: float | None, token: CancelToken) -> None:
        self.fired = False
        self.timeout = timeout
        self._token = token
        self._active = timeout is not None
        if timeout is not None:
            _DEADLINES.add(time.monotonic() + timeout, self)

    def _fire(self) -> None:
        if self._active:
            self._active = False
            self.fired = True
            self._token.cancel()

    def cancel(self) -> None:
        self._active = False


def _with_names(columns: tuple[ColumnMeta, ...], schema: pa.Schema) -> tuple[ColumnMeta, ...]:
    """Result metadata, checked against what DuckDB returned (same count, same order)."""
    if len(columns) != len(schema):
        return tuple(ColumnMeta.from_arrow(f) for f in schema)
    return columns


_PATHS = re.compile(r"(?:/[^\s\"'/]+){2,}/?")
"""Server paths in DuckDB's messages (two segments at least, so SQL's ``//`` is left alone)."""
_USER_ERRORS = (
    duckdb.ConversionException,
    duckdb.OutOfRangeException,
    duckdb.InvalidInputException,
    duckdb.OutOfMemoryException,
)


def _translate_error(exc: BaseException, timer: _Timer, token: CancelToken) -> BaseException:
    if isinstance(exc, duckdb.InterruptException) or (
        token.cancelled and isinstance(exc, (duckdb.Error, pa.ArrowException, OSError))
    ):
        if timer.fired:
            return QueryTimeout(
                f"the query ran longer than its time limit of {timer.timeout:g} s",
                hint="narrow it (a smaller region, fewer columns, TOP) or run it as an async job",
            )
        return QueryCancelled("the query was cancelled")
    if isinstance(exc, duckdb.OutOfMemoryException):
        return QueryError(
            "the query needs more memory than this service allows",
            hint="select fewer columns or rows, or aggregate on the server",
        )
    if isinstance(exc, _USER_ERRORS) and "division by zero" in str(exc).lower():
        # DuckDB's own advice (TRY, SET error_on_division_by_zero) is not ADQL.
        return QueryError(
            "division by zero",
            hint="guard the divisor, e.g. CASE WHEN COUNT(*) > 0 THEN 1.0 / COUNT(*) END",
        )
    if isinstance(exc, _USER_ERRORS):
        message = _PATHS.sub("<file>", str(exc).splitlines()[0])
        return QueryError(message.split(": ", 1)[-1] if ": " in message else message)
    if isinstance(exc, (duckdb.Error, pa.ArrowException)):
        log.error("query failed inside the engine: %s", exc)
        return InternalError("the query failed inside the service; it has been logged")
    return exc
