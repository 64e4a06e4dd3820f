"""The worker side of the Dask executor: what one task runs, in the process it runs in.

:func:`run_partial` — a plain function of picklable data (:class:`PartialTask`, the task's
files, its own scans) — runs one partial query of
:class:`~skyvault.engine.distributed.DaskExecutor` in a locked-down
:class:`~skyvault.engine.connection.Sandbox` that :func:`worker_executor` builds once per
process from :class:`~skyvault.engine.connection.SandboxSettings`, and returns a
:class:`PartialResult`: its rows as Arrow, or the skyvault error it met (errors pickle as
their class name, message and hint; they are never raised across processes).  A task is
cancelled through its :class:`~skyvault.engine.executor.CancelToken`: by the executor in
this process, or on a worker in another process when the query's ``distributed.Event`` is
set.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

from skyvault.engine.connection import SandboxSettings
from skyvault.engine.executor import CancelToken, LocalExecutor
from skyvault.engine.plan import QueryPlan, Scan
from skyvault.errors import SkyvaultError, internal_error

__all__ = [
    "LOCAL_QUERIES",
    "REMOTE_POLL_S",
    "LocalQuery",
    "PartialResult",
    "PartialTask",
    "run_partial",
    "worker_executor",
]

log = logging.getLogger(__name__)

REMOTE_POLL_S = 0.25
"""How often a task on another process asks whether its query was cancelled."""


_EXECUTORS: dict[SandboxSettings, LocalExecutor] = {}
_EXECUTORS_LOCK = threading.Lock()


def worker_executor(settings: SandboxSettings) -> LocalExecutor:
    """This process's executor for ``settings``: its sandbox (and Parquet footer caches) are
    built on first use and kept for the tasks that follow."""
    with _EXECUTORS_LOCK:
        executor = _EXECUTORS.get(settings)
        if executor is None:
            executor = _EXECUTORS[settings] = LocalExecutor(settings.build())
        return executor


# --- tasks ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PartialTask:
    """What every task of one query shares (the files of each task come separately)."""

    sql: str
    scans: tuple[Scan, ...]
    split: str | None
    """The placeholder whose files each task replaces by its own group."""
    describe: str | None
    """The query whose result's names and types the first task reports (None: no merge)."""
    settings: SandboxSettings
    timeout: float | None
    query_id: str


@dataclass(frozen=True)
class PartialResult:
    """A task's answer: its rows, or the skyvault error it met (never raised: it pickles)."""

    table: pa.Table | None
    result_columns: tuple[tuple[str, str], ...] = ()
    partial_columns: tuple[tuple[str, str], ...] = ()
    error: tuple[str, str, str | None] | None = None
    """``(error class name, message, hint)``."""
    seconds: float = 0.0


class LocalQuery:
    """The tasks of one query running in this process, to cancel them (the executor
    registers it in :data:`LOCAL_QUERIES` under the query's id while the tasks run)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: set[CancelToken] = set()
        self.cancelled = False

    def add(self, token: CancelToken) -> None:
        with self._lock:
            self._tokens.add(token)
            cancelled = self.cancelled
        if cancelled:
            token.cancel()

    def discard(self, token: CancelToken) -> None:
        with self._lock:
            self._tokens.discard(token)

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            tokens = list(self._tokens)
        for token in tokens:
            token.cancel()


LOCAL_QUERIES: dict[str, LocalQuery] = {}


def run_partial(
    task: PartialTask, files: Sequence[str], first: bool, replaced: Sequence[Scan] = ()
) -> PartialResult:
    """Run ``task``'s partial query with the split scan reading ``files``.

    ``replaced`` are this task's own versions of some scans (an aligned cross-match: the
    split scan with tagged rows and the partner partitions it needs), put in place of the
    scans of the same placeholder.  Runs on a Dask worker (or a thread here).  Errors come
    back in the result, as skyvault errors' class names and messages.
    """
    started = time.monotonic()
    token = CancelToken()
    done = threading.Event()
    local = LOCAL_QUERIES.get(task.query_id)
    if local is not None:
        local.add(token)
    else:
        _watch_remote_cancel(task.query_id, token, done)
    try:
        executor = worker_executor(task.settings)
        own = {s.placeholder: s for s in replaced}
        scans = tuple(
            own.get(s.placeholder)
            or (dataclasses.replace(s, files=tuple(files)) if s.placeholder == task.split else s)
            for s in task.scans
        )
        result_columns: tuple[tuple[str, str], ...] = ()
        partial_columns: tuple[tuple[str, str], ...] = ()
        if first and task.describe is not None:
            result_columns = _describe(executor, task.describe, scans, task.timeout, token)
            partial_columns = _describe(executor, task.sql, scans, task.timeout, token)
        plan = QueryPlan(task.sql, scans, ())
        table = executor.execute(plan, timeout=task.timeout, cancel=token).to_table()
        return PartialResult(
            table, result_columns, partial_columns, seconds=time.monotonic() - started
        )
    except SkyvaultError as exc:
        error = (type(exc).__name__, exc.message, exc.hint)
        return PartialResult(None, error=error, seconds=time.monotonic() - started)
    except Exception:  # a fault outside DuckDB (a file gone, a bug): reported, never raised
        log.exception("a partial query failed")
        error = ("InternalError", internal_error().message, None)
        return PartialResult(None, error=error, seconds=time.monotonic() - started)
    finally:
        done.set()
        if local is not None:
            local.discard(token)


def _describe(
    executor: LocalExecutor,
    sql: str,
    scans: tuple[Scan, ...],
    timeout: float | None,
    token: CancelToken,
) -> tuple[tuple[str, str], ...]:
    """DuckDB's names and types of ``sql``'s result (binding only: nothing is read)."""
    table = executor.execute(
        QueryPlan(f"DESCRIBE {sql}", scans, ()), timeout=timeout, cancel=token
    ).to_table()
    names = table.column("column_name").to_pylist()
    types = table.column("column_type").to_pylist()
    return tuple((str(n), str(t)) for n, t in zip(names, types, strict=True))


def _watch_remote_cancel(query_id: str, token: CancelToken, done: threading.Event) -> None:
    """On a worker in another process: cancel ``token`` when the query's Event is set."""
    try:
        from distributed import Event, get_client, get_worker

        get_worker()
        client = get_client()
    except (ImportError, ValueError):
        return  # not on a distributed worker: the task's own time limit still applies

    def watch() -> None:
        # is_set() polls leave nothing waiting on the scheduler when the task ends.
        try:
            event = Event(query_id, client=client)  # type: ignore[no-untyped-call]
            while not done.wait(REMOTE_POLL_S):
                if event.is_set():  # type: ignore[no-untyped-call]
                    token.cancel()
                    return
        except Exception:  # the scheduler went away: nothing to listen to
            log.debug("cancel watch of %s stopped", query_id, exc_info=True)

    threading.Thread(target=watch, name=f"skyvault-cancel-{query_id}", daemon=True).start()
