"""Run a query plan in DuckDB and stream its result, with limits, time-outs and cancellation.

The local executor runs the whole plan in one DuckDB query: DuckDB splits the scan of the
pruned files and row groups over its worker threads and merges ORDER BY, DISTINCT, GROUP BY
and aggregates itself, so every answer is exactly that of the query over the whole table.
A plan holds only SQL and file lists, so the distributed executor
(:class:`~skyvault.engine.distributed.DaskExecutor`) runs the same plan as per-partition
partial queries on Dask workers and a merge query here (:mod:`skyvault.engine.split`); this
local executor is the default, and the one tasks and merges run on.  It runs one plan as
several queries itself in one case: a cross-match too large for one join in memory runs as
a sequence of the Dask executor's aligned tasks, merged the same way
(:meth:`LocalExecutor.execute`).

Every DuckDB error is turned into a skyvault error by :func:`engine_error`, the one mapping
(the Dask executor uses it too): what a user can fix (a conversion error in the data, an
integer overflow, a query needing more memory) becomes a :class:`QueryError` worded in ADQL's
terms; anything else is "the query failed while running: <category>".  No engine text, SQL
or server path reaches a user.
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
import math
import os
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import duckdb
import pyarrow as pa

from skyvault.catalog.metadata import ColumnMeta
from skyvault.engine.aligned import aligned_partner, aligned_task_scans, contiguous_runs
from skyvault.engine.budget import MAX_BATCH_ROWS, batch_rows, row_bytes
from skyvault.engine.connection import Sandbox, SandboxSettings
from skyvault.engine.direct import evaluate
from skyvault.engine.plan import QueryPlan, Scan, with_derived
from skyvault.engine.smallscan import SMALL_SCAN_ROWS, FooterCache, read_small_scan
from skyvault.engine.split import Split, merge_plan, split_plan
from skyvault.errors import (
    InternalError,
    QueryCancelled,
    QueryError,
    QueryFailed,
    QueryTimeout,
    SkyvaultError,
    internal_error,
)
from skyvault.sqltext import with_maxrec
from skyvault.storage_faults import Fault, service_storage_error, storage_fault

__all__ = [
    "BindableExecutor",
    "CancelToken",
    "Executor",
    "LocalExecutor",
    "QueryResult",
    "engine_error",
]

log = logging.getLogger(__name__)

BATCH_ROWS = MAX_BATCH_ROWS
"""Most rows in a record batch; wide rows get fewer (:func:`~skyvault.engine.budget.batch_rows`),
so a batch, and what a writer makes of it, stays a few MiB whatever the result's width."""
REINTERRUPT_S = 0.25
"""How often a cancelled query that has not stopped is interrupted again."""
TASK_MEMORY_SHARE = 0.125
"""A cross-match whose two sides' files (as pruned) hold more bytes than this share of
DuckDB's memory limit runs as a sequence of aligned tasks of about that many bytes each
(:meth:`LocalExecutor.execute`): one join over all of them would hold the whole partner
and spill once it outgrows the limit.  Measured on 20M × 2M rows (1 GB of files, 2 GB
limit, ``benchmarks/results/scale.md``): one join peaks at 1.5 GiB RSS, tasks of 128 MB at
0.7 GiB, in the same time within the noise from 8 to 48 tasks; at 1.87M rows (0.1 GB) one
join is kept."""
TASK_PARTIAL_ROWS = 2_000_000
"""Most rows the tasks of a sorted or cut cross-match (ORDER BY, TOP, DISTINCT) may return
together for their merge (each task returns its first OFFSET + TOP, or MAXREC + 1, rows);
beyond that, or with no such cut, the query runs as one join."""


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


@runtime_checkable
class Executor(Protocol):
    """Anything that runs query plans like :class:`LocalExecutor`."""

    def execute(
        self,
        plan: QueryPlan,
        *,
        maxrec: int | None = None,
        timeout: float | None = None,
        cancel: CancelToken | None = None,
    ) -> QueryResult: ...


@runtime_checkable
class BindableExecutor(Executor, Protocol):
    """An executor an :class:`~skyvault.engine.archive.Archive` configures for its data."""

    def bind(self, sandbox: Sandbox, settings: SandboxSettings) -> Executor:
        """This executor, merging in ``sandbox`` and building workers' from ``settings``."""
        ...


class LocalExecutor:
    """Runs plans in a :class:`Sandbox` on this machine.

    Scans whose index ranges select few rows are read by the index path
    (:mod:`skyvault.engine.smallscan`) and handed to DuckDB as Arrow tables;
    ``small_scans=False`` turns that off (tests compare both paths); ``small_scan_rows`` is
    the most rows (in whole row groups) that path reads.  Simple sky searches over such a
    scan are answered without DuckDB (:mod:`skyvault.engine.direct`) unless ``direct`` is
    False.

    A cross-match of stored tables too large for one join in DuckDB's memory runs as a
    sequence of aligned tasks (see :meth:`execute`); ``crossmatch_tasks=False`` turns that
    off, ``task_bytes`` sets the input bytes per task (None: :data:`TASK_MEMORY_SHARE` of
    DuckDB's memory limit; 1 splits every cross-match that can be split, for tests).
    """

    def __init__(
        self,
        sandbox: Sandbox,
        *,
        small_scans: bool = True,
        small_scan_rows: int = SMALL_SCAN_ROWS,
        direct: bool = True,
        crossmatch_tasks: bool = True,
        task_bytes: int | None = None,
    ) -> None:
        self.sandbox = sandbox
        self.direct = direct
        self.small_scans = small_scans
        self.small_scan_rows = small_scan_rows
        self.crossmatch_tasks = crossmatch_tasks
        self.task_bytes = task_bytes
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

        A cross-match whose sides' files hold more than the task size runs as a sequence
        of tasks, one DuckDB query per run of neighbouring partitions of one side, each
        reading only the other side's partitions aligned with its own and their margins
        (:mod:`skyvault.engine.aligned`, as the Dask executor's tasks do): each join fits
        in memory, so the cost grows linearly with the rows.  The tasks' rows stream one
        task after the other; sorted, cut and aggregated queries are merged exactly as the
        Dask executor merges its tasks (:mod:`skyvault.engine.split`).  Whatever the split
        cannot answer exactly (or with bounded memory) runs as one join.
        """
        token = cancel or CancelToken()
        if token.cancelled:
            raise QueryCancelled("the query was cancelled")
        started = time.monotonic()
        if self.crossmatch_tasks:
            tasks = self._crossmatch_tasks(plan, maxrec)
            if tasks is not None:
                result = self._run_tasks(plan, tasks, maxrec, timeout, token, started)
                if result is not None:
                    return result
        scans = [self._materialised(planned) for planned in plan.scans]
        direct = self._direct(plan, scans, maxrec)
        if direct is not None:
            direct.stats["plan_s"] = time.monotonic() - started
            return direct
        return self._run(plan, scans, maxrec, timeout, token, started)

    def _run(
        self,
        plan: QueryPlan,
        scans: Sequence[Scan],
        maxrec: int | None,
        timeout: float | None,
        token: CancelToken,
        started: float,
    ) -> QueryResult:
        """Run ``plan`` as one DuckDB query over ``scans`` (its scans, some read already)."""
        cursor = self.sandbox.cursor()
        token._attach(cursor)
        timer = _Timer(timeout, token)
        small_scans = 0
        try:
            views: list[Scan] = []
            for planned, scan in zip(plan.scans, scans, strict=True):
                small_scans += scan is not planned
                if scan.arrow is not None and scan.cell is None:
                    cursor.register(scan.placeholder, scan.arrow)
                else:
                    if scan.arrow is not None:  # an upload in a cell join: a view adds keys
                        cursor.register(scan.arrow_name, scan.arrow)
                    views.append(scan)
            sql = _with_views(plan.sql, views)
            if sql is None:  # not a query (DESCRIBE): the scans become temporary views
                for scan in views:
                    cursor.execute(f'CREATE TEMP VIEW "{scan.placeholder}" AS {scan.view_sql()}')
                sql = plan.sql
            sql = with_maxrec(sql, maxrec)
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

    # -- a large cross-match as a sequence of aligned tasks --

    def _crossmatch_tasks(self, plan: QueryPlan, maxrec: int | None) -> _Tasks | None:
        """How to run ``plan`` as aligned tasks, or None when it runs as one join: not a
        cross-match of stored tables with a wide enough margin, small enough for one join,
        or a query the tasks cannot answer exactly with bounded memory."""
        matched = [s for s in plan.scans if s.cell is not None and s.layout is not None]
        if not matched:
            return None  # the common case costs this test only
        # Both sides of an aligned split are among ``matched``: when all of them fit in one
        # task, it is one join, known before the plan is split (a parse of its SQL).
        per_task = self.task_bytes or int(self._memory_limit() * TASK_MEMORY_SHARE)
        if sum(sum(_file_sizes(s.files)) for s in matched) <= per_task:
            return None
        split = split_plan(plan, maxrec=maxrec)
        if split.split is None or split.kind == "whole":
            log.debug("cross-match run as one join: %s", split.reason)
            return None
        pair = aligned_partner(plan.scans, split.split)
        if isinstance(pair, str):
            log.debug("cross-match run as one join: %s", pair)
            return None
        scan, partner = pair
        sizes = _file_sizes(scan.files)
        total = sum(sizes) + sum(_file_sizes(partner.files))
        n = min(len(scan.files), math.ceil(total / max(per_task, 1)))
        if n < 2:
            return None
        if split.kind == "rows":
            top = plan.top_select
            assert top is not None  # split_plan splits only described plans
            keep = top.limit if maxrec is None else min(top.limit or maxrec + 1, maxrec + 1)
            if keep is None or n * ((top.offset or 0) + keep) > TASK_PARTIAL_ROWS:
                log.debug("cross-match run as one join: too many rows to merge")
                return None
        plans = []
        for files in contiguous_runs(scan.files, sizes, n):
            own = aligned_task_scans(scan, partner, files)
            if own is None:
                return None
            replaced = {s.placeholder: s for s in own}
            scans = tuple(replaced.get(s.placeholder, s) for s in plan.scans)
            plans.append(QueryPlan(split.partial_sql, scans, plan.columns))
        partner_files = sum(
            len(s.files) for p in plans for s in p.scans if s.placeholder == partner.placeholder
        )
        return _Tasks(split, tuple(plans), float(partner_files))

    def _run_tasks(
        self,
        plan: QueryPlan,
        tasks: _Tasks,
        maxrec: int | None,
        timeout: float | None,
        token: CancelToken,
        started: float,
    ) -> QueryResult | None:
        """Run ``tasks`` (see :meth:`execute`); None when the split run failed inside the
        engine before any row was returned (the caller then runs the plan as one join)."""
        clock = _TaskClock(started, timeout)
        try:
            if tasks.split.merge is None:
                result = self._concatenated(plan, tasks, maxrec, clock, token, started)
            else:
                result = self._merged(plan, tasks, maxrec, clock, token, started)
        except (InternalError, QueryFailed, ValueError) as exc:
            log.warning("cross-match tasks failed (%s); running the plan as one join", exc)
            return None
        result.plan = plan
        result.stats["tasks"] = float(len(tasks.plans))
        result.stats["partner_files"] = tasks.partner_files
        return result

    def _task(
        self,
        plan: QueryPlan,
        maxrec: int | None,
        clock: _TaskClock,
        token: CancelToken,
        started: float,
    ) -> QueryResult:
        """One task's query, under what is left of the whole query's time limit."""
        if token.cancelled:
            raise QueryCancelled("the query was cancelled")
        scans = [self._materialised(s) for s in plan.scans]
        try:
            return self._run(plan, scans, maxrec, clock.remaining(), token, started)
        except QueryTimeout:
            raise clock.error() from None

    def _concatenated(
        self,
        plan: QueryPlan,
        tasks: _Tasks,
        maxrec: int | None,
        clock: _TaskClock,
        token: CancelToken,
        started: float,
    ) -> QueryResult:
        """The tasks' rows one task after the other, cut after ``maxrec``."""
        first = self._task(tasks.plans[0], None, clock, token, started)
        schema = first.schema
        result = QueryResult(columns=first.columns, schema=schema, batches=iter(()), plan=plan)
        result.stats["plan_s"] = first.stats.get("plan_s", 0.0)

        def stream() -> Iterator[pa.RecordBatch]:
            remaining = maxrec
            current = first
            try:
                for index, task in enumerate(tasks.plans):
                    if index:
                        current = self._task(task, None, clock, token, started)
                    for read in current.batches:
                        batch = read
                        if not batch.num_rows:
                            continue
                        if remaining is not None and batch.num_rows >= remaining:
                            # Rows beyond MAXREC: an overflow (the extra row is here or in
                            # a later task; the tasks after it need not run).
                            result.overflow = batch.num_rows > remaining
                            batch = batch.slice(0, remaining)
                            remaining = 0
                        elif remaining is not None:
                            remaining -= batch.num_rows
                        if batch.num_rows:
                            result.rows += batch.num_rows
                            yield _conform(batch, schema)
                        if result.overflow:
                            return
            except QueryTimeout:
                raise clock.error() from None
            finally:
                close = getattr(current.batches, "close", None)
                if close is not None:
                    close()
                result.stats["total_s"] = time.monotonic() - started

        result.batches = stream()
        return result

    def _merged(
        self,
        plan: QueryPlan,
        tasks: _Tasks,
        maxrec: int | None,
        clock: _TaskClock,
        token: CancelToken,
        started: float,
    ) -> QueryResult:
        """Every task's partial rows, then the merge query over them (as the Dask executor
        merges, with the result's and the partial columns' DuckDB types from DESCRIBE)."""
        merge = tasks.split.merge
        assert merge is not None
        first = tasks.plans[0]
        result_columns = self._describe(plan.sql, first.scans, clock, token, started)
        partial_columns = self._describe(first.sql, first.scans, clock, token, started)
        tables = [self._task(p, None, clock, token, started).to_table() for p in tasks.plans]
        merged = merge_plan(plan, merge, result_columns, partial_columns, tables)
        result = self._task(merged, maxrec, clock, token, started)
        result.stats["partial_rows"] = float(sum(t.num_rows for t in tables))
        inner = result.batches

        def stream() -> Iterator[pa.RecordBatch]:
            try:
                yield from inner
            except QueryTimeout:
                raise clock.error() from None

        result.batches = stream()
        return result

    def _describe(
        self,
        sql: str,
        scans: tuple[Scan, ...],
        clock: _TaskClock,
        token: CancelToken,
        started: float,
    ) -> tuple[tuple[str, str], ...]:
        """DuckDB's names and types of ``sql``'s result (binding only: nothing is read)."""
        plan = QueryPlan(f"DESCRIBE {sql}", scans, ())
        table = self._task(plan, None, clock, token, started).to_table()
        names = table.column("column_name").to_pylist()
        types = table.column("column_type").to_pylist()
        return tuple((str(n), str(t)) for n, t in zip(names, types, strict=True))

    def _memory_limit(self) -> int:
        """DuckDB's memory limit in bytes (2 GiB when it cannot be read)."""
        cursor = self.sandbox.cursor()
        try:
            row = cursor.execute("SELECT current_setting('memory_limit')").fetchone()
        except duckdb.Error:
            row = None
        finally:
            cursor.close()
        return _parse_bytes(str(row[0])) if row else 2 * 1024**3

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
        return dataclasses.replace(scan, arrow=with_derived(table, scan.derived))


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


@dataclass(frozen=True)
class _Tasks:
    """A cross-match as aligned tasks: the decomposition and each task's plan."""

    split: Split
    plans: tuple[QueryPlan, ...]
    partner_files: float
    """Partner files the tasks read together (margins and files read twice included)."""


class _TaskClock:
    """The time limit of a query run as tasks: each task gets what is left of it."""

    def __init__(self, started: float, timeout: float | None) -> None:
        self.started = started
        self.timeout = timeout

    def remaining(self) -> float | None:
        if self.timeout is None:
            return None
        left = self.timeout - (time.monotonic() - self.started)
        if left <= 0:
            raise self.error()
        return left

    def error(self) -> QueryTimeout:
        return _time_limit_error(self.timeout)


def _time_limit_error(timeout: float | None) -> QueryTimeout:
    return QueryTimeout(
        f"the query ran longer than its time limit of {timeout or 0:g} s",
        hint="narrow it (a smaller region, fewer columns, TOP) or run it as an async job",
    )


def _file_sizes(files: Sequence[str]) -> list[int]:
    """Bytes of each file (1 for a file that cannot be read: its task will say why)."""
    sizes = []
    for f in files:
        try:
            sizes.append(os.path.getsize(f))
        except OSError:
            sizes.append(1)
    return sizes


_BYTES = re.compile(r"\s*([0-9.]+)\s*([KMGTP]?)(i?)B", re.IGNORECASE)


def _parse_bytes(text: str) -> int:
    """Bytes of a DuckDB size such as ``1.8 GiB`` or ``2.0 GB`` (2 GiB when not one)."""
    match = _BYTES.match(text)
    if match is None:
        return 2 * 1024**3
    number, unit, binary = match.groups()
    base = 1024 if binary else 1000
    return int(float(number) * base ** " KMGTP".index(unit.upper() or " "))


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch`` with ``schema`` (the first task's): the tasks run the same SQL, so only
    field metadata or nullability may differ."""
    if batch.schema.equals(schema):
        return batch
    return pa.Table.from_batches([batch]).cast(schema).combine_chunks().to_batches()[0]


def _with_views(sql: str, scans: list[Scan]) -> str | None:
    """``sql`` with each scan's relation defined in its own WITH clause (None: ``sql`` is
    not a query, such as the DESCRIBE of a Dask task, and cannot take one).

    Inlined like views (``NOT MATERIALIZED``: filters and the columns read reach the
    Parquet scan), but in the one statement: a ``CREATE TEMP VIEW`` per scan is a statement
    of its own to parse and bind, which costs a fixed part of a millisecond per query.
    The translator names its own CTEs ``__sv_cte<n>``, never a placeholder.
    """
    if not scans:
        return sql
    if not sql.lstrip().upper().startswith(("SELECT", "WITH ", "(")):
        return None
    ctes = ", ".join(f'"{s.placeholder}" AS NOT MATERIALIZED ({s.view_sql()})' for s in scans)
    if sql[:5].upper() == "WITH ":
        return f"WITH {ctes}, {sql[5:]}"
    return f"WITH {ctes} {sql}"


def _with_names(columns: tuple[ColumnMeta, ...], schema: pa.Schema) -> tuple[ColumnMeta, ...]:
    """Result metadata, checked against what DuckDB returned (same count, same order)."""
    if len(columns) != len(schema):
        return tuple(ColumnMeta.from_arrow(f) for f in schema)
    return columns


#: ADQL names of DuckDB's types, for messages (DuckDB's own names never reach a user).
_ADQL_TYPES = {
    "INT8": "an 8-bit integer",
    "TINYINT": "an 8-bit integer",
    "INT16": "SMALLINT",
    "SMALLINT": "SMALLINT",
    "INT32": "INTEGER",
    "INTEGER": "INTEGER",
    "INT64": "BIGINT",
    "BIGINT": "BIGINT",
    "FLOAT": "REAL",
    "DOUBLE": "DOUBLE PRECISION",
    "VARCHAR": "VARCHAR",
    "TIMESTAMP": "TIMESTAMP",
    "DATE": "TIMESTAMP",
}
_INTEGER_LIMIT = "BIGINT holds integers up to 9223372036854775807"
_INTEGER_HINT = "use smaller values, or compute in DOUBLE PRECISION (multiply by 1.0 first)"
_NOT_CONVERTED = re.compile(r"Could not convert string '(.{0,200}?)' to (\w+)")
_OUT_OF_RANGE = re.compile(
    r"with value (-?[\d.eE+-]{1,60}) can't be cast because the value is out of range for the "
    r"destination type (\w+)"
)
_OVERFLOW = re.compile(r"Overflow in (addition|subtraction|multiplication|negation)")


def _adql_type(duck: str) -> str:
    return _ADQL_TYPES.get(duck.upper(), "the type it was converted to")


def _shown(value: str) -> str:
    """A value quoted from an error, shortened."""
    return value if len(value) <= 40 else value[:37] + "..."


def engine_error(exc: BaseException) -> SkyvaultError:
    """The skyvault error for a failure inside DuckDB or Arrow (the one mapping).

    Nothing of the engine's text is passed on: its messages name engine types (``INT128``),
    functions and settings, quote the translated SQL and may carry server paths.  Known
    value errors (division by zero, a string that is not a number, an integer overflow, a
    value too large for its type, memory) are reworded in ADQL's terms from the values they
    name; every other failure is "the query failed while running: <category>", a
    :class:`QueryFailed` (400) when the engine refused or could not compute the query, an
    :class:`InternalError` (500) when the service itself failed (files, internal faults).
    The engine's full message is logged.
    """
    if isinstance(exc, SkyvaultError):
        return exc
    text = str(exc)
    if storage_fault(exc) is Fault.FULL:  # DuckDB spilling to a full temporary directory
        log.error("query failed for lack of disk space: %s", text)
        full = service_storage_error(exc, "the query")
        assert full is not None
        return full
    kind = _engine_kind(exc, text)
    if issubclass(kind, duckdb.OutOfMemoryException):
        return QueryError(
            "the query needs more memory than this service allows",
            hint="select fewer columns or rows, or aggregate on the server",
        )
    if issubclass(kind, _VALUE_ERRORS):
        known = _value_error(text)
        if known is not None:
            return known
    category, internal = next(
        ((what, fault) for kinds, what, fault in _CATEGORIES if issubclass(kind, kinds)),
        ("an unexpected failure", True),
    )
    message = f"the query failed while running: {category}"
    if internal:
        log.error("query failed inside the engine: %s", text)
        return internal_error(message)
    log.warning("query refused by the engine: %s", text)
    return QueryFailed(
        message,
        hint="if the query is valid ADQL, please report it: the details have been logged",
    )


#: DuckDB's error kinds by the prefix of its messages ("Conversion Error: ..."): errors
#: raised while Arrow's reader pulls rows arrive as ``OSError`` with the text only.
_PREFIXES: dict[str, type[BaseException]] = {
    "conversion": duckdb.ConversionException,
    "out of range": duckdb.OutOfRangeException,
    "invalid input": duckdb.InvalidInputException,
    "out of memory": duckdb.OutOfMemoryException,
    "binder": duckdb.BinderException,
    "catalog": duckdb.CatalogException,
    "parser": duckdb.ParserException,
    "not implemented": duckdb.NotImplementedException,
    "type mismatch": duckdb.TypeMismatchException,
    "io": duckdb.IOException,
    "permission": duckdb.PermissionException,
    "internal": duckdb.InternalException,
    "fatal": duckdb.FatalException,
}
_PREFIX = re.compile(r"\s*([A-Za-z ]{2,20}?) Error:")


def _engine_kind(exc: BaseException, text: str) -> type[BaseException]:
    """The DuckDB exception class ``exc`` stands for (its own, or named by its text)."""
    if isinstance(exc, duckdb.Error):
        return type(exc)
    match = _PREFIX.match(text)
    if match is not None:
        return _PREFIXES.get(match.group(1).lower(), type(exc))
    return type(exc)


def _value_error(text: str) -> SkyvaultError | None:
    """ADQL wording of the value errors DuckDB reports, from the values it names."""
    lowered = text.lower()
    if "division by zero" in lowered:
        # DuckDB's own advice (TRY, SET error_on_division_by_zero) is not ADQL.
        return QueryError(
            "division by zero",
            hint="guard the divisor, e.g. CASE WHEN COUNT(*) > 0 THEN 1.0 / COUNT(*) END",
        )
    if "more than one row returned by a subquery" in lowered:
        return QueryError(
            "a subquery used as a single value returned more than one row",
            hint="make it return one row (an aggregate such as MAX(x), or TOP 1), or test "
            "membership with IN (SELECT ...)",
        )
    match = _NOT_CONVERTED.search(text)
    if match is not None:
        value, duck = match.groups()
        return QueryError(
            f"the string '{_shown(value)}' is not a valid {_adql_type(duck)} value",
            hint="compare numbers with numbers and strings with strings",
        )
    match = _OUT_OF_RANGE.search(text)
    if match is not None:
        value, duck = match.groups()
        return QueryError(
            f"the value {_shown(value)} does not fit in {_adql_type(duck)}",
            hint=_INTEGER_HINT if duck.upper().startswith("INT") else None,
        )
    match = _OVERFLOW.search(text)
    if match is not None:
        return QueryError(
            f"an integer {match.group(1)} overflowed ({_INTEGER_LIMIT})", hint=_INTEGER_HINT
        )
    return None


_VALUE_ERRORS = (
    duckdb.ConversionException,
    duckdb.OutOfRangeException,
    duckdb.InvalidInputException,
)
#: Engine exception kinds, what they mean in a user's words, and whether they are the
#: service's fault (500) rather than the query's (400).  The first that matches applies.
_CATEGORIES: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str, bool], ...] = (
    (duckdb.ConversionException, "a value could not be converted to the type it needs", False),
    (duckdb.OutOfRangeException, "a value is out of the range of its type", False),
    (duckdb.InvalidInputException, "a function was given a value it does not accept", False),
    (
        (duckdb.BinderException, duckdb.CatalogException, duckdb.ParserException),
        "the query could not be planned",
        False,
    ),
    (
        (duckdb.NotImplementedException, duckdb.TypeMismatchException),
        "a combination of operations the engine does not support",
        False,
    ),
    (
        (duckdb.IOException, duckdb.PermissionException, OSError),
        "stored data could not be read",
        True,
    ),
    (pa.ArrowException, "the result could not be assembled", True),
    (duckdb.Error, "an internal fault", True),
)


def _translate_error(exc: BaseException, timer: _Timer, token: CancelToken) -> BaseException:
    if isinstance(exc, duckdb.InterruptException) or (
        token.cancelled and isinstance(exc, (duckdb.Error, pa.ArrowException, OSError))
    ):
        if timer.fired:
            return _time_limit_error(timer.timeout)
        return QueryCancelled("the query was cancelled")
    if isinstance(exc, (duckdb.Error, pa.ArrowException, OSError)):
        return engine_error(exc)
    return exc
