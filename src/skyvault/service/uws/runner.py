"""The worker pool: a few threads that take QUEUED jobs in turn and run them.

Each worker claims the next QUEUED job with a conditional update (so replicas sharing the
database never run a job twice).  Turns are fair between accounts — users, and each
anonymous client (:meth:`~skyvault.service.uws.storage.JobStore.claim_next`): the account
with the fewest jobs running goes first, then the one served least recently, oldest job
first within an account, and an account at its ``max_running`` waits; so one user's hundred
queued jobs delay another user's one job by at most the jobs already running.  A worker
validates the job's parameters with the same DALI rules as sync, reads its uploaded tables
(TAP_UPLOAD, as sync does), runs it through the same query service as sync and streams the
encoded result into the result store.  Only then is the job marked COMPLETED, with its row
count and overflow flag.

Every running job holds a :class:`~skyvault.engine.executor.CancelToken`:

* ABORT (or DELETE) on this replica cancels it directly;
* a watchdog thread re-reads the phases of the running jobs every half second, so an
  ABORT or DELETE made through another replica stops the query as well;
* a timer cancels it when the job's EXECUTIONDURATION is used up, and the job goes to
  ERROR saying so.

The watchdog also refreshes the jobs' heartbeat, which is how other replicas tell a job
whose service died from one still running (see :mod:`skyvault.service.uws.service`).

A job is this pool's, with its token, from just *before* its claim is written: an ABORT
arriving while the claim is written or the job read back still finds the token to cancel.
:meth:`JobRunner.running_ids` waits for the claims in progress when it is called to be
settled, so whoever read EXECUTING in the database finds the job among the running ids of
the pool that took it (and only that one), and the watchdog never sees a job whose claim is
not yet written (it would read QUEUED and cancel it).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa

from skyvault.auth.audit import AuditLog
from skyvault.auth.identity import Identity
from skyvault.auth.limits import LimitsPolicy
from skyvault.catalog.metadata import ColumnMeta, TableMeta
from skyvault.config import Settings
from skyvault.engine.executor import CancelToken
from skyvault.errors import (
    InternalError,
    QueryCancelled,
    QueryTimeout,
    SkyvaultError,
    StorageError,
    UsageError,
    internal_error,
)
from skyvault.interprocess import process_alive
from skyvault.service.params import TapQueryParams, tap_query_params
from skyvault.service.services.query import BatchSink, QueryOutput
from skyvault.service.uploads import parse_uploads
from skyvault.service.uws.events import PhaseEvents
from skyvault.service.uws.models import (
    ExecutionPhase,
    Job,
    JobFailure,
    JobKind,
    JobResult,
    utc_now,
)
from skyvault.service.uws.results import ResultStore
from skyvault.service.uws.storage import JobStore
from skyvault.storage_faults import service_storage_error

__all__ = [
    "HEARTBEAT_SECONDS",
    "LIVE_RUNNERS",
    "JobRunner",
    "OpenSink",
    "ResultSink",
    "RunQuery",
    "RunnerId",
    "failure_of",
]

log = logging.getLogger(__name__)

#: How often running jobs' heartbeats are refreshed in the database, s.
HEARTBEAT_SECONDS = 10.0
#: How often the phases of running jobs are re-read (ABORT through another replica), s.
WATCH_SECONDS = 0.5
#: How long an idle worker sleeps before looking for work queued by another replica, s.
IDLE_POLL_SECONDS = 1.0

#: Runner ids of the pools running in this process (see ``RunnerId.is_alive``).
LIVE_RUNNERS: set[str] = set()


class RunQuery(Protocol):
    """``run_query(params, cancel, uploads, owner[, sink])``: the query service's ``run``
    with the tables ``owner`` (the job owner's identity, resolved when the job starts) may
    read; ``sink`` (only passed for a job that saves its result) gets the rows too."""

    def __call__(
        self,
        params: TapQueryParams,
        cancel: CancelToken,
        uploads: Sequence[tuple[TableMeta, pa.Table]],
        owner: Identity,
        sink: BatchSink | None = None,
        /,
    ) -> QueryOutput: ...


class ResultSink(BatchSink, Protocol):
    """Where a saving job's rows go besides the result store (a ``DEST`` table)."""

    def commit(self, columns: Sequence[ColumnMeta], schema: pa.Schema) -> object:
        """Publish what was written, once the result is stored whole."""
        ...

    def close(self) -> None:
        """Discard what was not committed (always called)."""
        ...


#: ``open_sink(job, owner)``: the sink of a TAP job that saves its result (``DEST``), its
#: destination checked; None for a job that does not.
OpenSink = Callable[[Job, Identity], ResultSink | None]
#: The identity a job runs as: its owner with the owner's groups now (see JobRunner).
Identify = Callable[[Job], Identity]


def stored_identity(job: Job) -> Identity:
    """``job``'s owner with the groups stored with the job (anonymous for anonymous jobs)."""
    if job.owner is None:
        return Identity(None, client=job.client)
    return Identity(job.owner, frozenset(job.owner_groups))


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
        return not process_alive(self.pid)


def failure_of(error: SkyvaultError) -> JobFailure:
    """The ERROR record of a job that failed with ``error``."""
    fatal = not isinstance(error, (InternalError, StorageError))
    return JobFailure(code=error.code, message=str(error), fatal=fatal)


class _Running:
    """A job this pool claims or runs: its token and why it was stopped, if it was.

    It exists from just before the claim is written; ``claimed`` turns True once the
    claim is in the database.
    """

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.token = CancelToken()
        self.timed_out = False
        self.claimed = False
        # Set just before the runner writes the job's end itself (COMPLETED or ERROR): from
        # then on a phase other than EXECUTING is the runner's own doing, not a stop order.
        self.finishing = False


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
    identify
        The identity a job runs as, resolved when it starts: a job reads exactly what its
        owner may read *then* (default: the owner with the groups stored with the job).
    limits
        Per-user limits: a job waits in QUEUED while its account (owner, or anonymous
        client) has ``max_running`` jobs executing, and its result may not take the account
        past ``max_result_bytes``.
        None: no per-user limits.
    audit
        Where each run is recorded (one line per job: owner, query, rows, duration,
        outcome), under ``audit_endpoint``/JOB_ID.
    open_sink
        The sink of a TAP job that saves its result as a table (``DEST``): its rows go
        there as they go to the result store, and it is committed once they are all stored,
        before the job completes (its MAXREC defaults to the limit: a cut result is not
        saved).
    """

    def __init__(
        self,
        store: JobStore,
        results: ResultStore,
        run_query: RunQuery,
        events: PhaseEvents,
        settings: Settings,
        *,
        identify: Identify = stored_identity,
        limits: LimitsPolicy | None = None,
        audit: AuditLog | None = None,
        audit_endpoint: str = "/tap/async",
        open_sink: OpenSink | None = None,
    ) -> None:
        self.open_sink = open_sink
        self.identify = identify
        self.limits = limits
        self.audit = audit
        self.audit_endpoint = audit_endpoint.rstrip("/")
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
        # Guards the two below; notified whenever a claim is settled.
        self._lock = threading.Condition()
        #: Jobs whose claim is written, by id.
        self._running: dict[str, _Running] = {}
        #: Claims being written (two workers may try the same job: one of them gets it).
        self._claims: list[_Running] = []
        #: Job types other than TAP queries, by name (:meth:`register`).
        self.kinds: dict[str, JobKind] = {}

    def register(self, kind: JobKind) -> None:
        """Run the jobs of ``kind`` (with its ``run``) too."""
        if kind.run is not None:
            self.kinds[kind.name] = kind

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
                running = [*self._running.values(), *self._claims]
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
        """Stop job ``job_id`` if this pool runs it or is claiming it; whether it did."""
        with self._lock:
            runs = [run for run in self._claims if run.job_id == job_id]
            if job_id in self._running:
                runs.append(self._running[job_id])
        for run in runs:
            run.token.cancel()
        return bool(runs)

    def running_ids(self) -> list[str]:
        """Ids of the jobs this pool is running.

        Claims being written when this is called are waited for (a moment: one UPDATE), so
        a job read as EXECUTING before the call is listed by the pool that took it, and
        every job listed has its claim written.
        """
        with self._lock:
            pending = list(self._claims)
            self._lock.wait_for(lambda: not any(run in self._claims for run in pending))
            return list(self._running)

    # --- threads --------------------------------------------------------------------------

    def _work(self) -> None:
        while not self._stopping.is_set():
            claimed = self._claim()
            if claimed is None:
                with self._wake:
                    if self._pending_wakes == 0 and not self._stopping.is_set():
                        self._wake.wait(IDLE_POLL_SECONDS)
                    self._pending_wakes = max(0, self._pending_wakes - 1)
                continue
            job, run = claimed
            self.events.notify(job.job_id)
            try:
                self._run(job, run)
            except Exception:
                log.exception("job %s: the worker failed", job.job_id)
            finally:
                self.events.notify(job.job_id)

    def _claim(self) -> tuple[Job, _Running] | None:
        """Claim the next QUEUED job; the job and its entry in ``_running``, or None.

        The entry, with its token, is listed among the claims before the claim is written,
        and moved to ``_running`` as soon as the claim is written (or dropped when another
        runner got the job, or an ABORT came first).
        """
        attempts: list[_Running] = []

        def claiming(job_id: str) -> None:
            run = _Running(job_id)
            attempts.append(run)
            with self._lock:
                self._claims.append(run)

        def settled(job_id: str, taken: bool) -> None:
            run = attempts[-1]
            with self._lock:
                if run in self._claims:
                    self._claims.remove(run)
                if taken:
                    run.claimed = True
                    self._running[job_id] = run
                self._lock.notify_all()

        runner = str(self.runner_id)
        try:
            job = self.store.claim_next(
                runner,
                utc_now(),
                self._max_running if self.limits else None,
                claiming=claiming,
                settled=settled,
            )
        except Exception:
            log.exception("could not read the job queue")
            job = None
        taken = next((run for run in attempts if run.claimed), None)
        if job is not None and taken is not None:
            return job, taken
        self._drop(attempts)
        if taken is not None:
            # Claimed but not read back (deleted meanwhile, or the database failed): do
            # not leave it EXECUTING under a runner whose heartbeat keeps it alive.
            error = InternalError("the job could not be started; run it again")
            try:
                self.store.fail(taken.job_id, failure_of(error), utc_now(), runner=runner)
            except Exception:
                log.exception("job %s: could not record that it did not start", taken.job_id)
        return None

    def _drop(self, runs: Sequence[_Running]) -> None:
        """Forget ``runs`` (claims and running jobs of this pool)."""
        with self._lock:
            for run in runs:
                if run in self._claims:
                    self._claims.remove(run)
                if self._running.get(run.job_id) is run:
                    del self._running[run.job_id]
            self._lock.notify_all()

    def _max_running(self, owner: str | None) -> int:
        assert self.limits is not None
        identity = Identity.anonymous() if owner is None else Identity(owner)
        return self.limits.limits_for(identity).max_running

    def _size_check(self, identity: Identity, job: Job) -> Callable[[int], None]:
        """``check(n)``: fails once ``n`` result bytes would take ``job``'s account past
        the result storage limit."""
        limits = self.limits
        if limits is None:
            return lambda n: None
        used = self.store.result_bytes(job.account)
        return lambda n: limits.check_result_fits(identity, used, n)

    def _capped(self, chunks: Iterator[bytes], identity: Identity, job: Job) -> Iterator[bytes]:
        """``chunks``, failing once they would take ``job``'s account past the result
        storage limit."""
        if self.limits is None:
            yield from chunks
            return
        used = self.store.result_bytes(job.account)
        left = self.limits.result_bytes_left(identity, used)
        written = 0
        for chunk in chunks:
            written += len(chunk)
            if written > left:
                self.limits.check_result_fits(identity, used, written)
            yield chunk

    def _watch(self) -> None:
        last_beat = time.monotonic()
        while not self._stopping.wait(WATCH_SECONDS):
            try:
                if not self._cancel_stopped():
                    continue
                if time.monotonic() - last_beat >= HEARTBEAT_SECONDS:
                    self.store.heartbeat(str(self.runner_id), utc_now())
                    last_beat = time.monotonic()
            except Exception:
                log.exception("the job watchdog could not read the job database")

    def _cancel_stopped(self) -> bool:
        """Cancel the running jobs no longer EXECUTING in the database; whether any runs.

        Only jobs whose claim is written are looked at (see :meth:`running_ids`): a claim
        in progress reads QUEUED, and must not be cancelled for it.
        """
        ids = self.running_ids()
        if not ids:
            return False
        phases = self.store.phases(ids)
        for job_id in ids:
            if phases.get(job_id) != ExecutionPhase.EXECUTING:
                with self._lock:
                    run = self._running.get(job_id)
                # A run that wrote its own end is not stopped: its phase was read after it.
                if run is not None and not run.finishing:
                    run.token.cancel()
        return True

    # --- one job --------------------------------------------------------------------------

    def _run(self, job: Job, run: _Running) -> None:
        timer: threading.Timer | None = None
        if job.execution_duration > 0:

            def expire() -> None:
                run.timed_out = True
                run.token.cancel()

            timer = threading.Timer(job.execution_duration, expire)
            timer.daemon = True
            timer.start()
        runner = str(self.runner_id)
        identity = Identity.anonymous()
        started = time.perf_counter()
        rows: int | None = None
        error_code: str | None = None
        query: str | None = None
        try:
            if self._stopping.is_set():
                raise InternalError("the service stopped before this job ran; run it again")
            if run.token.cancelled:  # aborted while it was being claimed
                raise QueryCancelled("the job was aborted before it started")
            identity = self.identify(job)
            parameters = job.parameter_map()
            queries = parameters.get("QUERY")
            query = queries[-1] if queries else None
            if self.limits is not None:
                used = self.store.result_bytes(job.account)
                self.limits.check_result_storage(identity, used)
            kind = self.kinds.get(job.kind)
            if kind is not None and kind.run is not None:
                check_size = self._size_check(identity, job)
                result = kind.run(job, run.token, identity, self.results, check_size)
                if result is not None:
                    check_size(result.size)
            else:
                result = self._run_query(job, run, identity, parameters)
            rows = None if result is None else result.rows
            run.finishing = True
            if not self.store.complete(job.job_id, runner, result, utc_now()):
                # Aborted or deleted while the result was being written.
                self.results.delete(job.job_id)
                error_code = "job.aborted"
        except SkyvaultError as exc:
            self.results.delete(job.job_id)
            failure = self._failure(job, run, exc)
            error_code = failure.code
            run.finishing = True
            self.store.fail(job.job_id, failure, utc_now(), runner=runner)
        except Exception as exc:
            log.error("job %s failed", job.job_id, exc_info=exc)
            self.results.delete(job.job_id)
            error = service_storage_error(exc, "this job") or internal_error(
                "the job failed inside the service", logged="the fault"
            )
            error_code = error.code
            run.finishing = True
            self.store.fail(job.job_id, failure_of(error), utc_now(), runner=runner)
        finally:
            if timer is not None:
                timer.cancel()
            with self._lock:
                if self._running.get(job.job_id) is run:
                    del self._running[job.job_id]
            if self.audit is not None:
                self.audit.record(
                    identity,
                    f"{self._endpoint(job)}/{job.job_id}",
                    query=query,
                    rows=rows,
                    duration_s=time.perf_counter() - started,
                    outcome="ok" if error_code is None else "error",
                    error=error_code,
                )

    def _endpoint(self, job: Job) -> str:
        """The path under which ``job``'s run is audited."""
        kind = self.kinds.get(job.kind)
        return kind.endpoint if kind is not None and kind.endpoint else self.audit_endpoint

    def _run_query(
        self, job: Job, run: _Running, identity: Identity, parameters: dict[str, list[str]]
    ) -> JobResult:
        """Run a TAP job's query and store its result (and, with ``DEST``, save it as a
        table: :attr:`open_sink`)."""
        sink = self.open_sink(job, identity) if self.open_sink is not None else None
        try:
            return self._query_result(job, run, identity, parameters, sink)
        finally:
            if sink is not None:
                sink.close()

    def _query_result(
        self,
        job: Job,
        run: _Running,
        identity: Identity,
        parameters: dict[str, list[str]],
        sink: ResultSink | None,
    ) -> JobResult:
        params = tap_query_params(
            parameters,
            maxrec_default=(
                self.settings.maxrec_default if sink is None else self.settings.maxrec_limit
            ),
            maxrec_limit=self.settings.maxrec_limit,
        )
        uploads: list[tuple[TableMeta, pa.Table]] = []
        if parameters.get("UPLOAD"):
            parts = self.results.read_uploads(job.job_id)
            uploads = parse_uploads(parameters, parts, self.settings)
        if sink is None:
            output = self.run_query(params, run.token, uploads, identity)
        else:
            output = self.run_query(params, run.token, uploads, identity, sink)
        try:
            key = self.results.key(job.job_id, output.output.extension)
            size = self.results.write(key, self._capped(output.chunks, identity, job))
        finally:
            output.close()  # a failed write gives the query's memory back now
        if sink is not None:
            self._save(output, sink, params.maxrec)
        return JobResult(
            key=key,
            mime=output.output.content_type,
            size=size,
            rows=output.result.rows,
            overflow=output.result.overflow,
        )

    def _save(self, output: QueryOutput, sink: ResultSink, maxrec: int | None) -> None:
        """Publish a saving job's table, now that its result is stored whole."""
        if output.result.overflow:
            raise UsageError(
                f"the result has more than MAXREC={maxrec} rows: it was not saved as a "
                "table (a table cut at MAXREC would silently lack rows)",
                hint=f"narrow the query, or raise MAXREC (at most {self.settings.maxrec_limit})",
            )
        sink.commit(output.result.columns, output.result.schema)

    def _failure(self, job: Job, run: _Running, error: SkyvaultError) -> JobFailure:
        if run.timed_out:
            limit = job.execution_duration
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
