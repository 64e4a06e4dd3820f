"""Run a query plan as many tasks on a Dask cluster, then merge their results.

:class:`DaskExecutor` has the contract of :class:`~skyvault.engine.executor.LocalExecutor`
(streamed batches, MAXREC and overflow, time limit, cancellation, only skyvault errors) and
runs the same plans:

1. :func:`skyvault.engine.split.split_plan` decomposes the plan's SQL into a partial query
   and a merge query, and picks the scan whose files are divided among tasks (the split
   scan); plans it cannot decompose exactly run as one task.
2. The split scan's files are grouped into tasks of about equal size; every task runs the
   partial query over its files and every other scan, whole — except the partner of a
   cross-match with a wide enough margin catalogue, of which each task reads only the
   partitions aligned with its own and their margins (:mod:`skyvault.engine.aligned`;
   its groups are then runs of neighbouring partitions) — with
   :func:`~skyvault.engine.worker.run_partial` (:mod:`skyvault.engine.worker`, the worker
   side) — a plain function of picklable data — in a locked-down
   :class:`~skyvault.engine.connection.Sandbox` built once per worker process from
   :class:`~skyvault.engine.connection.SandboxSettings`, and returns an Arrow table.  The
   first task also reports the DuckDB names and types of the query's result and of the
   partial columns.
3. The merge query runs here, in a local sandbox, over the task results registered as one
   Arrow table; its result streams like the local executor's (it *is* the local executor,
   on the merge query).  When the result is the concatenation of the tasks' (filters,
   projections, joins with broadcast tables, whole-plan runs), the task tables are streamed
   as they are.

With a ``dask.distributed.Client`` the tasks run on its workers (which must see the data
root at the same path); without one, on Dask's local threaded scheduler.  A time limit or a
cancellation stops waiting at once, cancels the pending tasks and interrupts the running
ones: in this process through their :class:`~skyvault.engine.executor.CancelToken`, on other
worker processes through a ``distributed.Event`` each task watches, and in any case through
each task's own copy of the time limit.  Should a split run fail inside the engine (a form
the decomposition did not foresee), the plan is run again as one task.

Dask is imported only when a query runs, so the rest of skyvault does not pay for it.
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from skyvault.catalog.metadata import ColumnMeta
from skyvault.engine.aligned import aligned_partner, aligned_task_scans, contiguous_runs
from skyvault.engine.connection import Sandbox, SandboxSettings
from skyvault.engine.executor import BATCH_ROWS, CancelToken, LocalExecutor, QueryResult
from skyvault.engine.plan import QueryPlan, Scan
from skyvault.engine.split import Split, merge_plan, split_plan, whole
from skyvault.engine.worker import (
    LOCAL_QUERIES,
    REMOTE_POLL_S,
    LocalQuery,
    PartialResult,
    PartialTask,
    run_partial,
)
from skyvault.errors import (
    InternalError,
    QueryCancelled,
    QueryError,
    QueryFailed,
    QueryTimeout,
    SkyvaultError,
    UsageError,
    internal_error,
)

if TYPE_CHECKING:
    from distributed import Client

__all__ = [
    "DaskExecutor",
    "file_groups",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Call:
    """``run_partial`` with its arguments, as one opaque callable for a local Dask graph."""

    task: PartialTask
    files: tuple[str, ...]
    first: bool
    replaced: tuple[Scan, ...] = ()

    def __call__(self) -> PartialResult:
        return run_partial(self.task, self.files, self.first, self.replaced)


def _sizes(files: Sequence[str]) -> list[int]:
    sizes = []
    for f in files:
        try:
            sizes.append(os.path.getsize(f))
        except OSError:  # not visible here (only on the workers): count files instead
            sizes.append(1)
    return sizes


def file_groups(files: Sequence[str], n: int) -> list[tuple[str, ...]]:
    """``files`` in ``n`` groups (fewer if there are fewer files) of about equal bytes.

    Largest file first into the lightest group; each group keeps the files' order.
    """
    n = max(1, min(n, len(files)))
    sizes = _sizes(files)
    heap = [(0, g) for g in range(n)]
    members: list[list[int]] = [[] for _ in range(n)]
    for i in sorted(range(len(files)), key=lambda i: -sizes[i]):
        load, g = heapq.heappop(heap)
        members[g].append(i)
        heapq.heappush(heap, (load + sizes[i], g))
    return [tuple(files[i] for i in sorted(m)) for m in members if m]


# --- the executor ---------------------------------------------------------------------------


class _Clock:
    """The query's time limit, from the moment it was submitted."""

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def remaining(self) -> float | None:
        if self.timeout is None:
            return None
        return max(self.timeout - self.elapsed(), 0.001)

    def expired(self) -> bool:
        return self.timeout is not None and self.elapsed() >= self.timeout

    def error(self) -> QueryTimeout:
        return QueryTimeout(
            f"the query ran longer than its time limit of {self.timeout:g} s",
            hint="narrow it (a smaller region, fewer columns, TOP) or run it as an async job",
        )


class _Retry(Exception):
    """The split run failed inside the engine: run the plan as one task."""


_TASK_ERRORS: dict[str, type[SkyvaultError]] = {
    "QueryError": QueryError,
    "QueryFailed": QueryFailed,
    "InternalError": InternalError,
}
#: Task errors that may come from splitting the plan: the plan is run again as one task.
_SPLIT_FAULTS = ("InternalError", "QueryFailed")


class DaskExecutor:
    """Runs plans as Dask tasks with partial/merge aggregation (see the module docstring).

    Parameters
    ----------
    client
        A ``dask.distributed.Client``; None runs the tasks on Dask's threaded scheduler.
    settings
        How workers build their sandbox (data roots, memory limit, threads).  Given by
        :meth:`bind` when the executor is handed to ``skyvault.open(DIR, executor=...)``.
    sandbox
        The local sandbox merges run in (built from ``settings`` when None).
    max_tasks
        Most tasks per query (default: twice the worker threads).
    task_threads
        DuckDB threads per task (default: the settings' threads).
    poll_interval
        Seconds between checks for a time limit or a cancellation while tasks run.
    """

    def __init__(
        self,
        client: Client | None = None,
        *,
        settings: SandboxSettings | None = None,
        sandbox: Sandbox | None = None,
        max_tasks: int | None = None,
        task_threads: int | None = None,
        poll_interval: float = 0.02,
    ) -> None:
        self.client = client
        if settings is not None and task_threads is not None:
            settings = dataclasses.replace(settings, threads=task_threads)
        self.settings = settings
        self.max_tasks = max_tasks
        self.task_threads = task_threads
        self.poll_interval = poll_interval
        self._sandbox = sandbox
        self._sandbox_lock = threading.Lock()
        self._merge_executor: LocalExecutor | None = None

    def bind(self, sandbox: Sandbox, settings: SandboxSettings) -> DaskExecutor:
        """A copy for an archive: merges in ``sandbox``, workers' sandboxes from ``settings``."""
        return DaskExecutor(
            self.client,
            settings=settings,
            sandbox=sandbox,
            max_tasks=self.max_tasks,
            task_threads=self.task_threads,
            poll_interval=self.poll_interval,
        )

    # -- planning --

    def worker_threads(self) -> int:
        """Threads running tasks: the cluster's, or this machine's cores."""
        if self.client is not None:
            threads: dict[str, int] = self.client.nthreads()  # type: ignore[no-untyped-call]
            return max(1, sum(threads.values()))
        return os.cpu_count() or 1

    def split(
        self, plan: QueryPlan, *, maxrec: int | None = None
    ) -> tuple[Split, list[tuple[str, ...]]]:
        """How ``plan`` would run: its decomposition and the split files of each task.

        For an aligned cross-match (:mod:`skyvault.engine.aligned`) a task's files are a
        run of neighbouring partitions, so that the tasks share few partner partitions.
        """
        split = split_plan(plan, maxrec=maxrec)
        if split.split is None:
            return split, [()]
        scan = next(s for s in plan.scans if s.placeholder == split.split)
        n = self.max_tasks or 2 * self.worker_threads()
        if isinstance(aligned_partner(plan.scans, split.split), tuple):
            return split, contiguous_runs(scan.files, _sizes(scan.files), n)
        return split, file_groups(scan.files, n)

    def task_scans(
        self, plan: QueryPlan, split: Split, groups: Sequence[Sequence[str]]
    ) -> list[tuple[Scan, ...]]:
        """The scans each task has of its own (empty: only the split files differ).

        For a split cross-match whose partner has a wide enough margin catalogue: the split
        scan with tagged rows and the partner partitions and margins aligned with the
        task's files (:func:`~skyvault.engine.aligned.aligned_task_scans`); otherwise the
        partner is read whole by every task.
        """
        if split.split is None:
            return [() for _ in groups]
        pair = aligned_partner(plan.scans, split.split)
        if not isinstance(pair, tuple):
            log.debug("cross-match partner read whole: %s", pair)
            return [() for _ in groups]
        out: list[tuple[Scan, ...]] = []
        for files in groups:
            scans = aligned_task_scans(*pair, files)
            out.append(scans if scans is not None else ())
        return out

    # -- running --

    def execute(
        self,
        plan: QueryPlan,
        *,
        maxrec: int | None = None,
        timeout: float | None = None,
        cancel: CancelToken | None = None,
    ) -> QueryResult:
        """Run ``plan``; as :meth:`LocalExecutor.execute`.

        The tasks run before this returns; the merge (or the concatenation) streams as the
        result's ``batches`` are read.  ``stats`` says how many ``tasks`` ran.
        """
        token = cancel or CancelToken()
        clock = _Clock(timeout)
        if token.cancelled:
            raise QueryCancelled("the query was cancelled")
        try:
            split, groups = self.split(plan, maxrec=maxrec)
        except SkyvaultError:
            raise
        except Exception as exc:
            log.exception("the plan could not be split")
            raise internal_error() from exc
        try:
            return self._run(plan, split, groups, maxrec, clock, token)
        except _Retry as retry:
            log.warning("split run failed (%s); running the plan as one task", retry)
            single = whole(plan, f"the split run failed: {retry}", maxrec)
            return self._run(plan, single, [()], maxrec, clock, token)

    def _worker_settings(self) -> SandboxSettings:
        if self.settings is None:
            raise UsageError(
                "this DaskExecutor does not know the data root",
                hint="pass it to skyvault.open(DIR, executor=...) or give settings=",
            )
        return self.settings

    def _merger(self) -> LocalExecutor:
        """The executor merges run on: over the local sandbox."""
        with self._sandbox_lock:
            if self._merge_executor is None:
                if self._sandbox is None:
                    self._sandbox = self._worker_settings().build()
                self._merge_executor = LocalExecutor(self._sandbox)
            return self._merge_executor

    def _run(
        self,
        plan: QueryPlan,
        split: Split,
        groups: list[tuple[str, ...]],
        maxrec: int | None,
        clock: _Clock,
        token: CancelToken,
    ) -> QueryResult:
        settings = self._worker_settings()
        query_id = f"skyvault-query-{uuid.uuid4().hex}"
        task = PartialTask(
            sql=split.partial_sql,
            scans=plan.scans,
            split=split.split,
            describe=plan.sql if split.merge is not None else None,
            settings=settings,
            timeout=clock.remaining(),
            query_id=query_id,
        )
        own = self.task_scans(plan, split, groups)
        local = LOCAL_QUERIES[query_id] = LocalQuery()
        try:
            if self.client is None:
                results = self._run_threaded(task, groups, own, clock, token, local)
            else:
                results = self._run_distributed(task, groups, own, clock, token, local)
        finally:
            LOCAL_QUERIES.pop(query_id, None)
        partial_s = clock.elapsed()
        for outcome in results:
            if outcome.error is not None:
                raise self._task_error(outcome.error, split, clock, token)
        tables = [r.table for r in results if r.table is not None]
        partner = [s for scans in own for s in scans if s.placeholder != split.split]
        stats = {
            "tasks": float(len(groups)),
            "split_files": float(sum(len(g) for g in groups)),
            "aligned_tasks": float(sum(1 for scans in own if scans)),
            "partner_files": float(sum(len(s.files) for s in partner)),
            "partials_s": partial_s,
            "partial_rows": float(sum(t.num_rows for t in tables)),
        }
        if split.merge is None:
            result = self._concatenated(plan, tables, maxrec, clock, token)
        else:
            result = self._merged(plan, split, results, tables, maxrec, clock, token)
        result.stats.update(stats)
        return result

    def _task_error(
        self,
        error: tuple[str, str, str | None],
        split: Split,
        clock: _Clock,
        token: CancelToken,
    ) -> Exception:
        name, message, hint = error
        if token.cancelled and not clock.expired():
            return QueryCancelled("the query was cancelled")
        if name in ("QueryTimeout", "QueryCancelled"):
            return clock.error() if clock.timeout is not None else QueryCancelled(message)
        if name in _SPLIT_FAULTS and split.splits:
            return _Retry(message)
        return _TASK_ERRORS.get(name, InternalError)(message, hint=hint)

    def _check(self, clock: _Clock, token: CancelToken) -> None:
        if token.cancelled:
            raise QueryCancelled("the query was cancelled")
        if clock.expired():
            raise clock.error()

    def _run_threaded(
        self,
        task: PartialTask,
        groups: list[tuple[str, ...]],
        own: list[tuple[Scan, ...]],
        clock: _Clock,
        token: CancelToken,
        local: LocalQuery,
    ) -> list[PartialResult]:
        from dask.base import compute as dask_compute
        from dask.delayed import delayed

        calls = [
            delayed(_Call(task, files, i == 0, scans), pure=False)()
            for i, (files, scans) in enumerate(zip(groups, own, strict=True))
        ]
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["results"] = dask_compute(  # type: ignore[no-untyped-call]
                    *calls, scheduler="threads", num_workers=self.worker_threads()
                )
            except BaseException as exc:
                box["error"] = exc

        thread = threading.Thread(target=run, name="skyvault-dask-local", daemon=True)
        thread.start()
        while thread.is_alive():
            thread.join(self.poll_interval)
            try:
                self._check(clock, token)
            except QueryError:
                local.cancel()
                raise
        if "error" in box:
            log.error("local Dask run failed: %r", box["error"])
            raise internal_error()
        return list(box["results"])

    def _run_distributed(
        self,
        task: PartialTask,
        groups: list[tuple[str, ...]],
        own: list[tuple[Scan, ...]],
        clock: _Clock,
        token: CancelToken,
        local: LocalQuery,
    ) -> list[PartialResult]:
        from distributed import wait

        client = self.client
        assert client is not None
        futures: list[Any] = []
        try:
            shared = client.scatter(task, broadcast=True, hash=False)  # type: ignore[no-untyped-call]
            futures = [
                client.submit(
                    run_partial,
                    shared,
                    list(files),
                    i == 0,
                    scans,
                    key=f"{task.query_id}-{i}",
                    pure=False,
                    retries=0,
                )
                for i, (files, scans) in enumerate(zip(groups, own, strict=True))
            ]
            results: dict[int, PartialResult] = {}
            index = {f.key: i for i, f in enumerate(futures)}
            pending = list(futures)
            while pending:
                self._check(clock, token)
                try:
                    done, not_done = wait(  # type: ignore[no-untyped-call]
                        pending, timeout=self.poll_interval, return_when="FIRST_COMPLETED"
                    )
                except TimeoutError:
                    continue
                for future in done:
                    if future.status != "finished":
                        failure = future.exception() if future.status == "error" else None
                        log.error("a Dask task ended %s: %r", future.status, failure)
                        raise internal_error()
                    outcome: PartialResult = future.result()
                    if outcome.error is not None:
                        return [outcome]  # the caller raises it; the rest is cancelled below
                    results[index[future.key]] = outcome
                pending = list(not_done)
            return [results[i] for i in range(len(futures))]
        except (SkyvaultError, _Retry):
            raise
        except Exception as exc:
            log.exception("the Dask cluster failed to run a query")
            raise internal_error() from exc
        finally:
            self._stop(futures, task.query_id, local)

    def _stop(self, futures: list[Any], query_id: str, local: LocalQuery) -> None:
        """Cancel what is still pending or running of a query's tasks."""
        running = [f for f in futures if f.status == "pending"]
        if not running:
            return
        local.cancel()
        client = self.client
        assert client is not None
        try:
            client.cancel(running)  # type: ignore[no-untyped-call]
            from distributed import Event

            event = Event(query_id, client=client)  # type: ignore[no-untyped-call]
            event.set()  # type: ignore[no-untyped-call]
            # Tasks still starting may look a moment later; then the event is dropped.
            timer = threading.Timer(20 * REMOTE_POLL_S, _clear_event, args=(event,))
            timer.daemon = True
            timer.start()
        except Exception:
            log.warning("could not cancel the tasks of %s", query_id, exc_info=True)

    def _concatenated(
        self,
        plan: QueryPlan,
        tables: list[pa.Table],
        maxrec: int | None,
        clock: _Clock,
        token: CancelToken,
    ) -> QueryResult:
        table = _concat(tables)
        overflow = maxrec is not None and table.num_rows > maxrec
        if maxrec is not None:
            table = table.slice(0, maxrec)
        result = QueryResult(
            columns=_columns(plan.columns, table.schema),
            schema=table.schema,
            batches=iter(()),
            plan=plan,
            overflow=overflow,
        )

        def stream() -> Iterator[pa.RecordBatch]:
            try:
                for batch in table.to_batches(max_chunksize=BATCH_ROWS):
                    self._check(clock, token)
                    if batch.num_rows:
                        result.rows += batch.num_rows
                        yield batch
            finally:
                result.stats["total_s"] = clock.elapsed()

        result.batches = stream()
        return result

    def _merged(
        self,
        plan: QueryPlan,
        split: Split,
        results: list[PartialResult],
        tables: list[pa.Table],
        maxrec: int | None,
        clock: _Clock,
        token: CancelToken,
    ) -> QueryResult:
        assert split.merge is not None
        described = next((r for r in results if r.result_columns), None)
        if described is None:
            raise _Retry("no task described the result")
        try:
            merged = merge_plan(
                plan, split.merge, described.result_columns, described.partial_columns, tables
            )
        except ValueError as exc:
            raise _Retry(str(exc)) from None
        self._check(clock, token)
        try:
            result = self._merger().execute(
                merged, maxrec=maxrec, timeout=clock.remaining(), cancel=token
            )
        except QueryTimeout:
            raise clock.error() from None
        except (InternalError, QueryFailed) as exc:
            raise _Retry(f"the merge query failed: {exc}") from None
        result.plan = plan
        inner = result.batches

        def stream() -> Iterator[pa.RecordBatch]:
            try:
                yield from inner
            except QueryTimeout:
                raise clock.error() from None
            finally:
                result.stats["total_s"] = clock.elapsed()

        result.batches = stream()
        return result


def _clear_event(event: Any) -> None:
    try:
        event.clear()
    except Exception:
        log.debug("could not clear a cancel event", exc_info=True)


def _concat(tables: list[pa.Table]) -> pa.Table:
    if not tables:
        raise internal_error()
    try:
        return pa.concat_tables(tables)
    except pa.ArrowInvalid:
        return pa.concat_tables(tables, promote_options="permissive")


def _columns(columns: tuple[ColumnMeta, ...], schema: pa.Schema) -> tuple[ColumnMeta, ...]:
    """Result metadata, checked against the result (same count), else from the schema."""
    if len(columns) != len(schema):
        return tuple(ColumnMeta.from_arrow(f) for f in schema)
    return columns
