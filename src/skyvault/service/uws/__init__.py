"""UWS 1.1 asynchronous jobs for TAP ``/async``, split by layer.

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

from skyvault.config import Settings
from skyvault.service.uws.events import PHASE_EVENTS, PhaseEvents
from skyvault.service.uws.models import (
    ExecutionPhase,
    Job,
    JobFailure,
    JobFilter,
    JobNotFound,
    JobPhaseError,
    JobResult,
    QueueFull,
)
from skyvault.service.uws.reaper import Reaper
from skyvault.service.uws.results import ResultStore
from skyvault.service.uws.runner import JobRunner, RunQuery
from skyvault.service.uws.service import JobService
from skyvault.service.uws.storage import JobStore

__all__ = [
    "ExecutionPhase",
    "Job",
    "JobFailure",
    "JobFilter",
    "JobNotFound",
    "JobPhaseError",
    "JobResult",
    "JobRunner",
    "JobService",
    "JobStore",
    "PhaseEvents",
    "QueueFull",
    "Reaper",
    "ResultStore",
    "build_job_service",
]


def build_job_service(
    settings: Settings, run_query: RunQuery, events: PhaseEvents = PHASE_EVENTS
) -> JobService:
    """The job service over the job database and result store ``settings`` name."""
    store = JobStore(settings.jobs_database())
    results = ResultStore(settings.results_location())
    runner = JobRunner(store, results, run_query, events, settings)
    return JobService(store, results, runner, events, settings)
