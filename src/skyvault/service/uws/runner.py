"""The worker pool: a few threads that take QUEUED jobs in order and run them.

Each worker claims the oldest QUEUED job with a conditional update (so replicas sharing the
database never run a job twice), validates its parameters with the same DALI rules as sync,
reads its uploaded tables (TAP_UPLOAD, as sync does), runs it through the same query
service as sync and streams the encoded result into the
result store.  Only then is the job marked COMPLETED, with its row count and overflow flag.

Every running job holds a :class:`~skyvault.engine.executor.CancelToken`:

* ABORT (or DELETE) on this replica cancels it directly;
* a watchdog thread re-reads the phases of the running jobs every half second, so an
  ABORT or DELETE made through another replica stops the query as well;
* a timer cancels it when the job's EXECUTIONDURATION is used up, and the job goes to
  ERROR saying so.

The watchdog also refreshes the jobs' heartbeat, which is how other replicas tell a job
whose service died from one still running (see :mod:`skyvault.service.uws.service`).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pyarrow as pa

from skyvault.catalog.metadata import TableMeta
from skyvault.config import Settings
from skyvault.engine.executor import CancelToken
from skyvault.errors import InternalError, QueryTimeout, SkyvaultError
from skyvault.service.params import TapQueryParams, tap_query_params
from skyvault.service.services.query import QueryOutput
from skyvault.service.uploads import parse_uploads
from skyvault.service.uws.events import PhaseEvents
from skyvault.service.uws.models import ExecutionPhase, Job, JobFailure, JobResult, utc_now
from skyvault.service.uws.results import ResultStore
from skyvault.service.uws.storage import JobStore

__all__ = ["HEARTBEAT_SECONDS", "LIVE_RUNNERS", "JobRunner", "RunnerId", "failure_of"]

log = logging.getLogger(__name__)

#: How often running jobs' heartbeats are refreshed in the database, s.
HEARTBEAT_SECONDS = 10.0
#: How often the phases of running jobs are re-read (ABORT through another replica), s.
WATCH_SECONDS = 0.5
#: How long an idle worker sleeps before looking for work queued by another replica, s.
IDLE_POLL_SECONDS = 1.0

#: Runner ids of the pools running in this process (see ``RunnerId.is_alive``).
LIVE_RUNNERS: set[str] = set()

#: ``run_query(params, cancel, uploads)``: the query service's ``run``.
RunQuery = Callable[
    [TapQueryParams, CancelToken, Sequence[tuple[TableMeta, pa.Table]]], QueryOutput
]


@dataclass(frozen=True)
class RunnerId:
    """Who runs a job: ``host:pid:random``, stored in the job row while it executes."""

    host: str
    pid: int
    nonce: str

    @classmethod
    def new(cls) -> RunnerId:
        return cls(socket.gethostname(), os.getpid(), secrets.token_hex(4))

    @classmethod
    def parse(cls, text: str) -> RunnerId | None:
        host, _, rest = text.rpartition(":")
        host, _, pid = host.rpartition(":")
        try:
            return cls(host, int(pid), rest)
        except ValueError:
            return None

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.nonce}"

    def certainly_dead(self) -> bool:
        """Whether this runner is known dead without waiting for its heartbeat to age.

        True when it ran on this host and its process is gone, or it claims this very
        process but no pool of this process has its id (the process restarted and got the
        same pid, as in a container).
        """
        if self.host != socket.gethostname():
            return False
        if str(self) in LIVE_RUNNERS:
            return False
        if self.pid == os.getpid():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


def failure_of(error: SkyvaultError) -> JobFailure:
    """The ERROR record of a job that failed with ``error``."""
    fatal = not isinstance(error, InternalError)
    return JobFailure(code=error.code, message=str(error), fatal=fatal)


class _Running:
    """A job this pool runs: its token and why it was stopped, if it was."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.token = CancelToken()
        self.timed_out = False


class JobRunner:
    """A pool of ``workers`` threads running the jobs of ``store``.

    Parameters
    ----------
    store
        The job database.
    results
        Where results go.
    run_query
        Starts a query (the TAP query service's ``run``).
    events
        Told of every phase change this pool makes.
    settings
        The service settings: number of workers, MAXREC and upload limits.
    """

    def __init__(
        self,
        store: JobStore,
        results: ResultStore,
        run_query: RunQuery,
        events: PhaseEvents,
        settings: Settings,
    ) -> None:
        self.store = store
        self.results = results
        self.run_query = run_query
        self.events = events
        self.settings = settings
        self.workers = settings.job_workers
        self.runner_id = RunnerId.new()
        self._wake = threading.Condition()
        self._pending_wakes = 0
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._running: dict[str, _Running] = {}

    # --- life cycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker and watchdog threads."""
        if self._threads:
            return
        LIVE_RUNNERS.add(str(self.runner_id))
        self._stopping.clear()
        for i in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"uws-worker-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)
        watchdog = threading.Thread(target=self._watch, name="uws-watchdog", daemon=True)
        watchdog.start()
        self._threads.append(watchdog)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking jobs; cancel the running ones (they end in ERROR: run them again)."""
        self._stopping.set()
        with self._wake:
            self._wake.notify_all()
        deadline = time.monotonic() + timeout
        while any(t.is_alive() for t in self._threads) and time.monotonic() < deadline:
            # Cancel again and again: an interrupt that reaches a query just before it
            # starts executing can be lost.
            with self._lock:
                running = list(self._running.values())
            for run in running:
                run.token.cancel()
            for thread in self._threads:
                thread.join(0.1)
        if any(t.is_alive() for t in self._threads):
            log.warning("job workers still busy after %.0f s; stopping without them", timeout)
        self._threads.clear()
        LIVE_RUNNERS.discard(str(self.runner_id))

    def wake(self) -> None:
        """A job was queued: let an idle worker look now."""
        with self._wake:
            self._pending_wakes += 1
            self._wake.notify()

    def cancel(self, job_id: str) -> bool:
        """Stop job ``job_id`` if this pool runs it; whether it did."""
        with self._lock:
            run = self._running.get(job_id)
        if run is None:
            return False
        run.token.cancel()
        return True

    def running_ids(self) -> list[str]:
        """Ids of the jobs this pool is running."""
        with self._lock:
            return list(self._running)

    # --- threads --------------------------------------------------------------------------

    def _work(self) -> None:
        while not self._stopping.is_set():
            try:
                job = self.store.claim_next(str(self.runner_id), utc_now())
            except Exception:
                log.exception("could not read the job queue")
                job = None
            if job is None:
                with self._wake:
                    if self._pending_wakes == 0 and not self._stopping.is_set():
                        self._wake.wait(IDLE_POLL_SECONDS)
                    self._pending_wakes = max(0, self._pending_wakes - 1)
                continue
            self.events.notify(job.job_id)
            try:
                self._run(job)
            except Exception:
                log.exception("job %s: the worker failed", job.job_id)
            finally:
                self.events.notify(job.job_id)

    def _watch(self) -> None:
        last_beat = time.monotonic()
        while not self._stopping.wait(WATCH_SECONDS):
            ids = self.running_ids()
            if not ids:
                continue
            try:
                phases = self.store.phases(ids)
                for job_id in ids:
                    if phases.get(job_id) != ExecutionPhase.EXECUTING:
                        self.cancel(job_id)
                if time.monotonic() - last_beat >= HEARTBEAT_SECONDS:
                    self.store.heartbeat(str(self.runner_id), utc_now())
                    last_beat = time.monotonic()
            except Exception:
                log.exception("the job watchdog could not read the job database")

    # --- one job --------------------------------------------------------------------------

    def _run(self, job: Job) -> None:
        run = _Running(job)
        with self._lock:
            self._running[job.job_id] = run
        timer: threading.Timer | None = None
        if job.execution_duration > 0:

            def expire() -> None:
                run.timed_out = True
                run.token.cancel()

            timer = threading.Timer(job.execution_duration, expire)
            timer.daemon = True
            timer.start()
        runner = str(self.runner_id)
        try:
            if self._stopping.is_set():
                raise InternalError("the service stopped before this job ran; run it again")
            parameters = job.parameter_map()
            params = tap_query_params(
                parameters,
                maxrec_default=self.settings.maxrec_default,
                maxrec_limit=self.settings.maxrec_limit,
            )
            uploads: list[tuple[TableMeta, pa.Table]] = []
            if parameters.get("UPLOAD"):
                parts = self.results.read_uploads(job.job_id)
                uploads = parse_uploads(parameters, parts, self.settings)
            output = self.run_query(params, run.token, uploads)
            key = self.results.key(job.job_id, output.output.extension)
            size = self.results.write(key, output.chunks)
            result = JobResult(
                key=key,
                mime=output.output.content_type,
                size=size,
                rows=output.result.rows,
                overflow=output.result.overflow,
            )
            if not self.store.complete(job.job_id, runner, result, utc_now()):
                # Aborted or deleted while the result was being written.
                self.results.delete(job.job_id)
        except SkyvaultError as exc:
            self.results.delete(job.job_id)
            self.store.fail(job.job_id, self._failure(run, exc), utc_now(), runner=runner)
        except Exception as exc:
            log.error("job %s failed", job.job_id, exc_info=exc)
            self.results.delete(job.job_id)
            error = InternalError("the job failed inside the service; the fault has been logged")
            self.store.fail(job.job_id, failure_of(error), utc_now(), runner=runner)
        finally:
            if timer is not None:
                timer.cancel()
            with self._lock:
                self._running.pop(job.job_id, None)

    def _failure(self, run: _Running, error: SkyvaultError) -> JobFailure:
        if run.timed_out:
            limit = run.job.execution_duration
            return failure_of(
                QueryTimeout(
                    f"the job ran longer than its EXECUTIONDURATION of {limit} s and was stopped",
                    hint="narrow the query, or create the job with a longer EXECUTIONDURATION",
                )
            )
        if run.token.cancelled and self._stopping.is_set():
            return JobFailure(
                code="job.interrupted",
                message="the service stopped while this job ran; run it again",
                fatal=False,
            )
        return failure_of(error)
