"""UWS 1.1 asynchronous jobs — TAP ``/async`` and other job types — split by layer.

A job type (:class:`~skyvault.service.uws.models.JobKind`: what a new job's parameters must
hold, how a worker runs it, what its results list holds) gets its own
:class:`JobService` from :meth:`JobService.for_kind` and its routes from
:func:`~skyvault.service.uws.handlers.job_router`; every type shares the job database, the
workers (fair turns between accounts), the per-account limits, destruction and recovery.

* :mod:`~skyvault.service.uws.models` — phases, jobs, results, failures (no web, no SQL);
* :mod:`~skyvault.service.uws.storage` — the job database (SQLite or PostgreSQL);
* :mod:`~skyvault.service.uws.results` — the result store (a directory or any fsspec URL);
* :mod:`~skyvault.service.uws.runner` — the worker pool running queued jobs;
* :mod:`~skyvault.service.uws.service` — the rules the handlers call;
* :mod:`~skyvault.service.uws.reaper` — destruction of expired jobs, rescue of orphans;
* :mod:`~skyvault.service.uws.documents` — the UWS XML documents;
* :mod:`~skyvault.service.uws.events` — in-process phase-change wake-ups (blocking WAIT).

:func:`build_job_service` wires them from the settings.
"""

from __future__ import annotations

from skyvault.auth.audit import AuditLog
from skyvault.auth.limits import LimitsPolicy
from skyvault.config import Settings
from skyvault.service.uws.events import PHASE_EVENTS, PhaseEvents
from skyvault.service.uws.models import (
    ExecutionPhase,
    Job,
    JobFailure,
    JobFilter,
    JobResult,
)
from skyvault.service.uws.reaper import Reaper
from skyvault.service.uws.results import ResultStore
from skyvault.service.uws.runner import (
    Identify,
    JobRunner,
    OpenSink,
    RunQuery,
    stored_identity,
)
from skyvault.service.uws.service import JobService
from skyvault.service.uws.storage import JobStore

__all__ = [
    "ExecutionPhase",
    "Identify",
    "Job",
    "JobFailure",
    "JobFilter",
    "JobResult",
    "JobRunner",
    "JobService",
    "JobStore",
    "OpenSink",
    "PhaseEvents",
    "Reaper",
    "ResultStore",
    "build_job_service",
    "stored_identity",
]


def build_job_service(
    settings: Settings,
    run_query: RunQuery,
    events: PhaseEvents = PHASE_EVENTS,
    *,
    identify: Identify = stored_identity,
    limits: LimitsPolicy | None = None,
    audit: AuditLog | None = None,
    open_sink: OpenSink | None = None,
) -> JobService:
    """The job service over the job database and result store ``settings`` name.

    ``identify``, ``limits`` and ``audit`` as for :class:`JobRunner`: who a job runs as,
    the per-user limits, the audit log; ``open_sink`` the table a ``DEST`` job saves its
    result into.
    """
    store = JobStore(settings.jobs_database())
    results = ResultStore(settings.results_location())
    runner = JobRunner(
        store,
        results,
        run_query,
        events,
        settings,
        identify=identify,
        limits=limits,
        audit=audit,
        audit_endpoint=f"{settings.path_prefix}/async",
        open_sink=open_sink,
    )
    return JobService(store, results, runner, events, settings, limits=limits)
