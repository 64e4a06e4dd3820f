"""UWS domain models: phases, jobs, their results and failures (no web, no database).

The worker, the storage layer and the handlers all speak these types, so a worker process
never needs FastAPI to run a job.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from skyvault.auth.identity import Identity
from skyvault.engine.executor import CancelToken

if TYPE_CHECKING:
    from skyvault.service.uws.results import ResultStore

__all__ = [
    "ACTIVE_PHASES",
    "FINAL_PHASES",
    "Account",
    "ExecutionPhase",
    "Job",
    "JobFailure",
    "JobFilter",
    "JobKind",
    "JobResult",
    "ResultLink",
    "utc_now",
]


class ExecutionPhase(enum.StrEnum):
    """The phases of UWS 1.1 a skyvault job goes through (HELD, SUSPENDED never happen)."""

    PENDING = "PENDING"
    QUEUED = "QUEUED"
    EXECUTING = "EXECUTING"
    COMPLETED = "COMPLETED"
    ERROR = "ERROR"
    ABORTED = "ABORTED"
    UNKNOWN = "UNKNOWN"
    HELD = "HELD"
    SUSPENDED = "SUSPENDED"
    ARCHIVED = "ARCHIVED"


#: Phases in which a job may still change by itself (blocking WAIT waits only in these).
ACTIVE_PHASES = frozenset({ExecutionPhase.PENDING, ExecutionPhase.QUEUED, ExecutionPhase.EXECUTING})

#: Phases a job never leaves.
FINAL_PHASES = frozenset({ExecutionPhase.COMPLETED, ExecutionPhase.ERROR, ExecutionPhase.ABORTED})


def utc_now() -> datetime:
    """Now, timezone-aware UTC, to the millisecond (what the job database keeps)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@dataclass(frozen=True)
class Account:
    """Whose share a job uses: a user's, or (``owner`` None) one anonymous client's.

    Per-caller limits count jobs by account, and the runner takes turns between accounts.
    ``client`` is the anonymous caller's address (see ``service/security.py``); it is None
    for users (all of a user's jobs are one account wherever they come from) and for
    anonymous jobs made before clients were told apart.
    """

    owner: str | None
    client: str | None = None

    @classmethod
    def of(cls, identity: Identity) -> Account:
        """The account of ``identity``'s jobs and queries."""
        if identity.user is not None:
            return cls(identity.user)
        return cls(None, identity.client)


@dataclass(frozen=True)
class JobResult:
    """The stored result of a completed job.

    Attributes
    ----------
    key
        Name of the result object in the result store.
    mime
        Content-Type to serve it with.
    size
        Bytes stored.
    rows
        Rows written.
    overflow
        Whether MAXREC cut the result.
    """

    key: str
    mime: str
    size: int
    rows: int
    overflow: bool


@dataclass(frozen=True)
class JobFailure:
    """Why a job ended in ERROR.

    Attributes
    ----------
    code
        The skyvault error code (``adql.syntax``, ``query.timeout``, ``job.interrupted`` ...).
    message
        The message shown in ``errorSummary`` and in the DALI error document at ``/error``.
    fatal
        UWS error type: True for ``fatal`` (the same job would fail again), False for
        ``transient`` (running it again may succeed).
    """

    code: str
    message: str
    fatal: bool = True


@dataclass
class Job:
    """One UWS job as stored.

    ``parameters`` keep every (name, value) pair as the client gave it, in order; names are
    compared case-insensitively (DALI), never rewritten.
    """

    job_id: str
    owner: str | None
    phase: ExecutionPhase
    parameters: list[tuple[str, str]]
    creation_time: datetime
    execution_duration: int
    destruction: datetime
    run_id: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    quote: datetime | None = None
    result: JobResult | None = None
    failure: JobFailure | None = None
    runner: str | None = None
    heartbeat: datetime | None = None
    #: The owner's groups when the job was created or last sent PHASE=RUN by its owner (what
    #: the job reads with behind an authenticating proxy, where groups come only with a
    #: request); never shown in UWS documents.
    owner_groups: tuple[str, ...] = ()
    #: The anonymous creator's client address (None for users' jobs); never shown in UWS
    #: documents.
    client: str | None = None
    #: The job type (:class:`JobKind` name): ``tap`` for TAP ``/async`` jobs.
    kind: str = "tap"

    @property
    def account(self) -> Account:
        """Whose limits this job counts against."""
        return Account(self.owner, self.client if self.owner is None else None)

    def parameter_map(self) -> dict[str, list[str]]:
        """Every value of every parameter, by upper-cased name (what the DALI rules read)."""
        out: dict[str, list[str]] = {}
        for name, value in self.parameters:
            out.setdefault(name.upper(), []).append(value)
        return out


@dataclass(frozen=True)
class JobFilter:
    """The job-list filters of UWS 1.1: any of ``phases``, created ``after``, the ``last`` N."""

    phases: frozenset[ExecutionPhase] = field(default_factory=frozenset)
    after: datetime | None = None
    last: int | None = None


@dataclass(frozen=True)
class ResultLink:
    """One entry of a job's UWS results list (for job types with several results)."""

    id: str
    href: str
    mime: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class JobKind:
    """A type of UWS job: what its parameters must hold, how it runs, what its results are.

    Jobs of every kind share the job database, the worker pool (fair turns between
    accounts), the per-account limits, destruction and recovery; each kind has its own job
    list (a job of another kind is "no such job" there).

    Attributes
    ----------
    name
        Stored with each job (``tap``, ``bulk`` ...).
    check
        ``check(caller, parameters, uploads)`` when a job is created (parameters by
        upper-cased name): raises a :class:`~skyvault.errors.SkyvaultError` to refuse it
        (400, no job is created).  None: anything goes.
    run
        ``run(job, cancel, identity, results, check_size) -> JobResult`` in a worker:
        produce the job's results in the result store, or None for a job that leaves no
        result (a table update); ``run`` None: the TAP query runner.  ``check_size(n)``
        raises once ``n`` bytes written would pass the owner's result storage (call it as
        the results grow).
    results
        ``results(job, job_url) -> [ResultLink]``: the results list of a COMPLETED job
        (None: the one ``result`` of :class:`JobResult`).
    endpoint
        The path of the type's job list, under which each run is audited (None: the
        runner's, ``/tap/async``).
    """

    name: str
    check: Callable[[Identity, dict[str, list[str]], Mapping[str, bytes]], None] | None = None
    run: (
        Callable[[Job, CancelToken, Identity, ResultStore, Callable[[int], None]], JobResult | None]
        | None
    ) = None
    results: Callable[[Job, str], list[ResultLink]] | None = None
    endpoint: str | None = None
