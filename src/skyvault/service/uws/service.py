"""The job service: what the UWS handlers call (create, read, run, abort, wait, delete...).

Access: every method takes the caller's ``owner`` (a user name, or None for anonymous).  A
job the caller may not access (:func:`skyvault.auth.jobs.can_access_job`) is reported
exactly like a job that does not exist; lists hold only the jobs
:func:`~skyvault.auth.jobs.can_list_job` allows (never anonymous ones).

Job types: each :class:`JobService` serves one :class:`~skyvault.service.uws.models.JobKind`
(TAP by default, :data:`TAP_JOBS`); a job of another type is "no such job" to it, and
its ``check`` decides what a new job must hold.

Parameters (TAP jobs): a job is created only with a QUERY (a POST without one is a 400 and creates
nothing: every client — pyvo, TOPCAT, astroquery, taplint — sends the query in the POST that
creates the job, and a body-less POST would only leave an empty job behind).  The TAP query
parameters (LANG, QUERY, MAXREC, RESPONSEFORMAT...) are stored as given and checked with the
DALI rules of sync when the job runs: a bad value puts the job in ERROR with the DALI error
document at ``/error`` (taplint's async stage expects that).  The UWS control parameters
(PHASE, RUNID, EXECUTIONDURATION, DESTRUCTION) act on the job and are not stored as job
parameters; a bad value of one of them is a 400 and changes nothing (no job is created).

Limits (429 with ``Retry-After``), counted per account — a user, or one anonymous client
(:class:`~skyvault.service.uws.models.Account`): PENDING jobs hold no run slot and count
only against ``max_pending`` when a job is created (an anonymous client at it loses its
oldest PENDING job instead of a 429); ``PHASE=RUN`` (or creating with it)
counts the account's QUEUED jobs against ``max_queued``; the runner keeps ``max_running``.
Anonymous jobs live ``anonymous_job_destruction_days`` (1 day) at most.

Recovery: a job left in EXECUTING by a service that died (``kill -9``, a lost node) goes to
ERROR with "the service restarted while this job ran; run it again" (error type
``transient``): re-queueing instead could run a query that killed the service over and over.
A dead runner is recognised at once when it ran on this host (its process is gone), and
otherwise when its heartbeat is older than ``stale_after`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta

from starlette.concurrency import run_in_threadpool

from skyvault.auth.identity import Identity
from skyvault.auth.jobs import can_access_job, can_list_job, is_valid_job_id, new_job_id
from skyvault.auth.limits import LimitsPolicy
from skyvault.config import Settings
from skyvault.errors import (
    JobNotFound,
    JobPhaseError,
    JobResourceMissing,
    QueueFull,
    UsageError,
)
from skyvault.formats.errors import dali_error_document
from skyvault.service.params import collect_params
from skyvault.service.uws.events import PhaseEvents
from skyvault.service.uws.models import (
    ACTIVE_PHASES,
    FINAL_PHASES,
    Account,
    ExecutionPhase,
    Job,
    JobFailure,
    JobFilter,
    JobKind,
    utc_now,
)
from skyvault.service.uws.results import ResultStore
from skyvault.service.uws.runner import HEARTBEAT_SECONDS, JobRunner, RunnerId
from skyvault.service.uws.storage import JobStore

__all__ = [
    "CONTROL_PARAMETERS",
    "INTERRUPTED",
    "TAP_JOBS",
    "JobService",
    "parse_destruction",
    "parse_execution_duration",
    "parse_job_filter",
    "parse_phase",
]

log = logging.getLogger(__name__)

#: Phases of a job created and not yet sent PHASE=RUN, counted against ``max_pending``.
PENDING_PHASES = (ExecutionPhase.PENDING, ExecutionPhase.HELD)

#: UWS parameters that act on the job rather than being passed to it.
CONTROL_PARAMETERS = frozenset({"PHASE", "RUNID", "EXECUTIONDURATION", "DESTRUCTION", "ACTION"})

#: The ERROR record of a job whose service died while it ran.
INTERRUPTED = JobFailure(
    code="job.interrupted",
    message="the service restarted while this job ran; run it again",
    fatal=False,
)

#: How often a blocking WAIT re-reads the phase from the database (changes made by
#: another replica; changes made here wake it at once), s.
WAIT_POLL_SECONDS = 0.5


def _check_tap_job(
    caller: Identity, params: dict[str, list[str]], uploads: Mapping[str, bytes]
) -> None:
    """A TAP job is created only with a QUERY (see the module docstring)."""
    queries = params.get("QUERY", [])
    if not any(q.strip() for q in queries):
        raise UsageError(
            "a job needs a QUERY, and this request has "
            + ("an empty one" if queries else "none")
            + ": no job was created",
            hint=(
                "send the ADQL query as QUERY (with LANG=ADQL) in the POST that "
                "creates the job; add PHASE=RUN to start it at once"
            ),
        )


#: TAP ``/async`` jobs: run by the runner's query service.
TAP_JOBS = JobKind("tap", check=_check_tap_job)


def _single(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name, [])
    if len(values) > 1:
        raise UsageError(f"parameter {name} was given {len(values)} times; it takes one value")
    return values[0] if values else None


def parse_phase(value: str, *, name: str = "PHASE") -> ExecutionPhase:
    """A UWS phase name (case-insensitive); :class:`UsageError` otherwise."""
    try:
        return ExecutionPhase(value.strip().upper())
    except ValueError:
        names = ", ".join(p.value for p in ExecutionPhase)
        raise UsageError(
            f"{name}={value!r} is not a UWS phase", hint=f"use one of {names}"
        ) from None


def parse_execution_duration(value: str, limit: int) -> int:
    """EXECUTIONDURATION in whole seconds: 0 (= unlimited) and values above ``limit`` give
    ``limit``; negative or non-integer values are a :class:`UsageError`."""
    try:
        seconds = int(value.strip())
    except ValueError:
        raise UsageError(
            f"EXECUTIONDURATION={value!r} is not a whole number of seconds",
            hint=f"give seconds from 1 to {limit} (0 asks for the longest allowed)",
        ) from None
    if seconds < 0:
        raise UsageError(
            f"EXECUTIONDURATION={seconds} is negative",
            hint=f"give seconds from 1 to {limit} (0 asks for the longest allowed)",
        )
    return limit if seconds == 0 or seconds > limit else seconds


def _parse_time(value: str, name: str) -> datetime:
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"{name}={value!r} is not an ISO 8601 time",
            hint="write it like 2030-01-31T12:00:00Z (UTC)",
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def parse_destruction(value: str, now: datetime, latest: datetime) -> datetime:
    """DESTRUCTION as an aware UTC time, no later than ``latest``."""
    return min(_parse_time(value, "DESTRUCTION"), latest)


def parse_job_filter(params: dict[str, list[str]]) -> JobFilter:
    """The UWS 1.1 job-list filters PHASE (repeatable), AFTER and LAST from a request."""
    phases = frozenset(parse_phase(v) for v in params.get("PHASE", []))
    after_text = _single(params, "AFTER")
    after = None if after_text is None else _parse_time(after_text, "AFTER")
    last_text = _single(params, "LAST")
    last = None
    if last_text is not None:
        try:
            last = int(last_text.strip())
        except ValueError:
            raise UsageError(
                f"LAST={last_text!r} is not a whole number", hint="give LAST as a positive integer"
            ) from None
        if last <= 0:
            raise UsageError(f"LAST={last} is not positive", hint="give LAST as a positive integer")
    return JobFilter(phases=phases, after=after, last=last)


class JobService:
    """UWS jobs: the rules; :class:`JobStore` keeps them, :class:`JobRunner` runs them.

    Parameters
    ----------
    store
        The job database.
    results
        The result store.
    runner
        The worker pool of this service.
    events
        Phase-change notifications (blocking WAIT).
    settings
        Limits: MAXREC, EXECUTIONDURATION, DESTRUCTION, queue length, WAIT.
    limits
        Per-account limits (a user, or one anonymous client): at creation the PENDING
        jobs against ``max_pending``, at PHASE=RUN (or creation with it) the QUEUED ones
        against ``max_queued``, both times stored results against ``max_result_bytes``
        (a refusal is a 429 :class:`~skyvault.errors.UserLimitExceeded` with
        ``Retry-After``).  The running limit is kept by the runner, which leaves a job QUEUED
        while its account is at it.
    """

    def __init__(
        self,
        store: JobStore,
        results: ResultStore,
        runner: JobRunner,
        events: PhaseEvents,
        settings: Settings,
        *,
        limits: LimitsPolicy | None = None,
        kind: JobKind = TAP_JOBS,
    ) -> None:
        self.kind = kind
        self.limits = limits
        self.store = store
        self.results = results
        self.runner = runner
        self.events = events
        self.settings = settings

    def for_kind(self, kind: JobKind) -> JobService:
        """The service of the jobs of type ``kind``, over the same database, result store,
        workers and limits (the runner learns to run them)."""
        self.runner.register(kind)
        return JobService(
            self.store,
            self.results,
            self.runner,
            self.events,
            self.settings,
            limits=self.limits,
            kind=kind,
        )

    # --- access ---------------------------------------------------------------------------

    def get(self, job_id: str, owner: str | None) -> Job:
        """Job ``job_id`` of this kind if ``owner`` may access it; :class:`JobNotFound`
        otherwise."""
        job = self.store.get(job_id) if is_valid_job_id(job_id) else None
        if (
            job is None
            or job.kind != self.kind.name
            or not can_access_job(Identity(owner), job.owner)
        ):
            raise JobNotFound(job_id)
        return job

    def list_jobs(self, owner: str | None, filters: JobFilter) -> list[Job]:
        """The jobs ``owner`` may list that pass ``filters`` (none for anonymous callers)."""
        if owner is None:
            return []
        identity = Identity(owner)
        jobs = self.store.list_jobs(owner, filters, self.kind.name)
        return [j for j in jobs if can_list_job(identity, j.owner)]

    # --- creation and parameters ----------------------------------------------------------

    def _limited(self, check: Callable[[LimitsPolicy], None]) -> None:
        """Run a check of the limits policy (if any): a refusal is its 429."""
        if self.limits is not None:
            check(self.limits)

    def _check_pending(self, caller: Identity, account: Account) -> None:
        """Refuse (429) a new job while the account's PENDING jobs fill its allowance;
        Retry-After is when the first of them is destroyed (waiting frees a place only
        then; running or deleting one, at once), not a few seconds that would not help.

        An anonymous client is not refused: its oldest PENDING jobs are destroyed to make
        room.  It cannot list nor (having lost their URLs) delete them, so a script that
        stops between creating and running a job (pyvo's ``submit_job``, then ``run``)
        would otherwise be locked out of async for a day; PENDING jobs hold nothing."""
        counts = self.store.account_phase_counts(account)
        pending = sum(counts.get(p, 0) for p in PENDING_PHASES)
        retry = self.settings.retry_after
        if self.limits is not None and caller.user is None:
            allowed = self.limits.limits_for(caller).max_pending
            if pending >= allowed > 0:
                for job_id in self.store.oldest_in(account, PENDING_PHASES, pending - allowed + 1):
                    log.info(
                        "anonymous client %s is at its %d PENDING jobs: destroyed the "
                        "oldest, %s, to make room",
                        account.client,
                        allowed,
                        job_id,
                    )
                    self._destroy(job_id)
                    pending -= 1
        if self.limits is not None and pending >= self.limits.limits_for(caller).max_pending:
            freed = self.store.next_destruction_in(account, PENDING_PHASES)
            if freed is not None:
                retry = max(retry, math.ceil((freed - utc_now()).total_seconds()))
        self._limited(lambda lp: lp.check_pending(caller, pending, retry_after=retry))

    def _check_queued(self, caller: Identity, account: Account, *, created: bool) -> None:
        queued = self.store.account_phase_counts(account).get(ExecutionPhase.QUEUED, 0)
        retry = self.settings.retry_after
        self._limited(
            lambda lp: lp.check_queued(caller, queued, retry_after=retry, created=created)
        )

    def _check_storage(self, caller: Identity, account: Account) -> None:
        """Refuse (429) when the account's stored results fill its quota; Retry-After is
        when its next result is destroyed (waiting frees room then; deleting, at once)."""
        if self.limits is None:
            return
        used = self.store.result_bytes(account)
        retry = self.settings.retry_after
        if self.limits.result_bytes_left(caller, used) == 0:  # refused: when is room freed?
            freed = self.store.next_result_destruction(account)
            if freed is not None:
                retry = max(retry, math.ceil((freed - utc_now()).total_seconds()))
        self.limits.check_result_storage(caller, used, retry_after=retry)

    def _destruction_days(self, owner: str | None) -> tuple[float, float]:
        """(default, latest) DESTRUCTION of a job of ``owner``, in days from now."""
        settings = self.settings
        if owner is None:
            short = settings.anonymous_job_destruction_days
            return min(settings.job_destruction_days, short), min(
                settings.job_destruction_max_days, short
            )
        return settings.job_destruction_days, settings.job_destruction_max_days

    def create(
        self,
        caller: Identity,
        pairs: list[tuple[str, str]],
        uploads: Mapping[str, bytes] | None = None,
    ) -> Job:
        """A new job of ``caller`` from the request's (name, value) pairs; PHASE=RUN also
        queues it.

        ``uploads`` are the request's multipart file parts (TAP_UPLOAD ``param:PART``),
        kept with the job in the result store until it is destroyed.  The caller's groups
        are kept with the job (see :attr:`Job.owner_groups`).

        Raises
        ------
        UsageError
            Parameters the job's kind refuses (TAP: no QUERY), or a bad UWS parameter
            (EXECUTIONDURATION, DESTRUCTION, PHASE): no job is created.
        UserLimitExceeded
            A user has ``max_pending`` jobs PENDING (or, with PHASE=RUN, ``max_queued``
            jobs QUEUED), or no room for results: no job is created.
        """
        owner = caller.user
        account = Account.of(caller)
        params = collect_params(pairs)
        if self.kind.check is not None:
            self.kind.check(caller, params, uploads or {})
        job_params = [(n, v) for n, v in pairs if n.upper() not in CONTROL_PARAMETERS]
        now = utc_now()
        settings = self.settings
        duration = settings.job_execution_duration
        text = _single(params, "EXECUTIONDURATION")
        if text is not None:
            duration = parse_execution_duration(text, settings.job_execution_duration_max)
        default_days, latest_days = self._destruction_days(owner)
        latest = now + timedelta(days=latest_days)
        destruction = now + timedelta(days=default_days)
        text = _single(params, "DESTRUCTION")
        if text is not None:
            destruction = parse_destruction(text, now, latest)
        phase = _single(params, "PHASE")
        if phase is not None and phase.strip().upper() != "RUN":
            raise UsageError(
                f"PHASE={phase!r} cannot be given when creating a job",
                hint="send PHASE=RUN to start the job at once, or leave PHASE out",
            )
        self._check_storage(caller, account)
        # Last: an anonymous client at max_pending loses its oldest PENDING job here, which
        # must not happen for a job another check refuses.
        if phase is None:
            self._check_pending(caller, account)
        else:
            self._check_queued(caller, account, created=False)
        job = Job(
            job_id=new_job_id(),
            owner=owner,
            phase=ExecutionPhase.PENDING,
            parameters=job_params,
            creation_time=now,
            execution_duration=duration,
            destruction=destruction,
            run_id=_single(params, "RUNID"),
            owner_groups=tuple(sorted(caller.groups)),
            client=account.client,
            kind=self.kind.name,
        )
        for part, data in (uploads or {}).items():
            self.results.write_upload(job.job_id, part, data)
        self.store.add(job)
        if phase is not None:
            return self.run(job.job_id, caller)
        return job

    def update_parameters(
        self, job_id: str, owner: str | None, pairs: list[tuple[str, str]]
    ) -> Job:
        """Set parameters of a PENDING job: given names replace all values of that name."""
        job = self.get(job_id, owner)
        given = [(n, v) for n, v in pairs if n.upper() not in CONTROL_PARAMETERS]
        run_id = job.run_id
        for name, value in pairs:
            if name.upper() == "RUNID":
                run_id = value
        if not given and run_id == job.run_id:
            return job
        names = {n.upper() for n, _ in given}
        merged = [(n, v) for n, v in job.parameters if n.upper() not in names] + given
        if job.phase != ExecutionPhase.PENDING or not self.store.set_parameters(
            job_id, merged, run_id
        ):
            raise JobPhaseError(
                f"the parameters of job {job_id} cannot change: it is {self._phase(job_id)}",
                hint="parameters can only change while the job is PENDING",
            )
        return self.get(job_id, owner)

    def _phase(self, job_id: str) -> str:
        phase = self.store.phase(job_id)
        return phase.value if phase else "gone"

    def set_execution_duration(self, job_id: str, owner: str | None, value: str) -> Job:
        """Change EXECUTIONDURATION (PENDING jobs only)."""
        job = self.get(job_id, owner)
        seconds = parse_execution_duration(value, self.settings.job_execution_duration_max)
        if job.phase != ExecutionPhase.PENDING or not self.store.set_execution_duration(
            job_id, seconds
        ):
            raise JobPhaseError(
                f"EXECUTIONDURATION of job {job_id} cannot change: it is {self._phase(job_id)}",
                hint="it can only change while the job is PENDING",
            )
        return self.get(job_id, owner)

    def set_destruction(self, job_id: str, owner: str | None, value: str) -> Job:
        """Change DESTRUCTION (any phase; at most the configured time from now)."""
        job = self.get(job_id, owner)
        now = utc_now()
        latest = now + timedelta(days=self._destruction_days(job.owner)[1])
        if not self.store.set_destruction(job_id, parse_destruction(value, now, latest)):
            raise JobNotFound(job_id)
        return self.get(job_id, owner)

    # --- phases ---------------------------------------------------------------------------

    def run(self, job_id: str, caller: Identity) -> Job:
        """PHASE=RUN: queue a PENDING job (RUN on a queued or running job changes nothing).

        The owner's current groups are stored with the job; the job's account (its owner,
        or the anonymous client that created it) may not pass ``max_queued`` nor its result
        storage (429; the job stays PENDING).
        """
        owner = caller.user
        job = self.get(job_id, owner)
        if job.phase in (ExecutionPhase.QUEUED, ExecutionPhase.EXECUTING):
            return job
        if job.phase not in (ExecutionPhase.PENDING, ExecutionPhase.HELD):
            raise JobPhaseError(
                f"job {job_id} is {job.phase.value} and cannot run again",
                hint="create a new job with the same parameters",
            )
        self._check_queued(caller, job.account, created=True)
        self._check_storage(caller, job.account)
        if self.store.count(ExecutionPhase.QUEUED) >= self.settings.job_max_queued:
            raise QueueFull(
                f"{self.settings.job_max_queued} jobs are already waiting to run",
                hint="try again in a few minutes; the job stays PENDING",
            )
        if job.owner is not None and caller.groups != frozenset(job.owner_groups):
            self.store.set_owner_groups(job_id, caller.groups)
        if self.store.queue(job_id, utc_now()):
            self.events.notify(job_id)
            self.runner.wake()
        return self.get(job_id, owner)

    def abort(self, job_id: str, owner: str | None) -> Job:
        """PHASE=ABORT: stop a pending, queued or running job (ABORTED within a second)."""
        job = self.get(job_id, owner)
        if job.phase == ExecutionPhase.ABORTED:
            return job
        if job.phase in (ExecutionPhase.COMPLETED, ExecutionPhase.ERROR):
            raise JobPhaseError(
                f"job {job_id} is {job.phase.value}: there is nothing to abort",
                hint="DELETE the job to remove it and its result",
            )
        if self.store.abort(job_id, utc_now()):
            self.runner.cancel(job_id)
            self.events.notify(job_id)
        return self.get(job_id, owner)

    def delete(self, job_id: str, owner: str | None) -> None:
        """Remove the job and its result, stopping it first if it runs."""
        self.get(job_id, owner)
        self._destroy(job_id)

    def _destroy(self, job_id: str) -> None:
        self.store.abort(job_id, utc_now())
        self.runner.cancel(job_id)
        self.store.delete(job_id)
        self.results.delete(job_id)
        self.events.notify(job_id)

    async def wait(
        self, job_id: str, owner: str | None, seconds: float, phase: ExecutionPhase | None
    ) -> Job:
        """Blocking WAIT: the job once its phase changes, or after ``seconds``.

        Returns at once when the job is in a final phase, or when ``phase`` is given and the
        job is not in it (the UWS 1.1 PHASE guard).
        """
        seconds = min(seconds, float(self.settings.job_wait_max))
        with self.events.watch(job_id) as changed:
            job = await run_in_threadpool(self.get, job_id, owner)
            if job.phase not in ACTIVE_PHASES or (phase is not None and job.phase != phase):
                return job
            deadline = time.monotonic() + seconds
            while (remaining := deadline - time.monotonic()) > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), min(remaining, WAIT_POLL_SECONDS))
                changed.clear()
                now_phase = await run_in_threadpool(self.store.phase, job_id)
                if now_phase != job.phase:
                    break
        return await run_in_threadpool(self.get, job_id, owner)

    # --- results and errors ---------------------------------------------------------------

    def error_document(self, job_id: str, owner: str | None) -> bytes:
        """The DALI error document of a job in ERROR (or ABORTED).

        Raises
        ------
        JobResourceMissing
            The job has no error (404): it completed, or has not finished yet.
        """
        job = self.get(job_id, owner)
        if job.failure is not None:
            return dali_error_document(job.failure.message)
        if job.phase == ExecutionPhase.ABORTED:
            return dali_error_document("the job was aborted")
        if job.phase == ExecutionPhase.COMPLETED:
            hint = f"it succeeded: its result is at /async/{job_id}/results/result"
        else:
            hint = "a job has an error only once it is in phase ERROR or ABORTED"
        raise JobResourceMissing(
            f"job {job_id} has no error: its phase is {job.phase.value}", hint=hint
        )

    def result(self, job_id: str, owner: str | None) -> tuple[Job, Iterator[bytes]]:
        """The job and the bytes of its result (``result`` is the only result id)."""
        job = self.get(job_id, owner)
        if job.result is None:
            if job.phase in (ExecutionPhase.ERROR, ExecutionPhase.ABORTED):
                hint = f"it did not complete: its error is at /async/{job_id}/error"
            else:
                hint = f"wait until it is COMPLETED, e.g. GET /async/{job_id}?WAIT=60"
            raise JobResourceMissing(
                f"job {job_id} has no result: its phase is {job.phase.value}", hint=hint
            )
        try:
            return job, self.results.read(job.result.key)
        except FileNotFoundError:
            log.error("job %s: its result %s is missing from the store", job_id, job.result.key)
            raise JobNotFound(f"{job_id}/results/result") from None

    # --- housekeeping ---------------------------------------------------------------------

    def reap(self, now: datetime | None = None) -> int:
        """Destroy every job (and result) past its DESTRUCTION time; how many."""
        now = now or utc_now()
        count = 0
        for job in self.store.expired(now):
            self._destroy(job.job_id)
            count += 1
        return count

    def recover(self, now: datetime | None = None, stale_after: float | None = None) -> int:
        """Put jobs left in EXECUTING by a dead service into ERROR; how many.

        A runner is dead when :meth:`RunnerId.certainly_dead` says so, or when its heartbeat
        is older than ``stale_after`` seconds (default: six heartbeats).
        """
        now = now or utc_now()
        stale = timedelta(seconds=stale_after or 6 * HEARTBEAT_SECONDS)
        count = 0
        for job in self.store.executing():
            runner = RunnerId.parse(job.runner) if job.runner else None
            dead = runner is None or runner.certainly_dead()
            if not dead and (job.heartbeat is None or now - job.heartbeat > stale):
                dead = True
            if dead and self.store.fail(job.job_id, INTERRUPTED, now, runner=job.runner):
                log.warning("job %s: its service died while it ran; now in ERROR", job.job_id)
                self.results.delete(job.job_id)  # what it was writing: never a result
                self.events.notify(job.job_id)
                count += 1
        return count

    def final(self, job: Job) -> bool:
        """Whether ``job`` will not change phase any more."""
        return job.phase in FINAL_PHASES
