"""UWS 1.1 XML documents: a job, the job list, results, parameters (pure functions).

Namespace ``http://www.ivoa.net/xml/UWS/v1.0`` with ``version="1.1"`` on the root, elements
in the order of the UWS schema; unknown values are ``xsi:nil``.  Times are ISO 8601 UTC
with milliseconds and a ``Z``.  The documents are built with the one XML writer,
:mod:`skyvault.formats._xml`, which escapes every value: a parameter may hold anything a
client sent, and characters XML 1.0 cannot carry (C0 controls, lone surrogates) must not
make the document unreadable.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from skyvault.formats._xml import Element, xml_document
from skyvault.service.uws.models import Job, ResultLink

__all__ = [
    "UWS_NS",
    "iso_time",
    "job_document",
    "job_list_document",
    "parameters_document",
    "results_document",
]

UWS_NS = "http://www.ivoa.net/xml/UWS/v1.0"
_NAMESPACES = {
    "uws": UWS_NS,
    "xlink": "http://www.w3.org/1999/xlink",
    "xsi": "http://www.w3.org/2001/XMLSchema-instance",
}


def iso_time(value: datetime) -> str:
    """``2025-01-31T12:00:00.000Z``."""
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _value(name: str, value: str | datetime | None) -> Element:
    """``<uws:name>value</uws:name>``, or ``xsi:nil`` for an unknown value."""
    if value is None:
        return Element(f"uws:{name}", attrs={"xsi:nil": True})
    return Element(f"uws:{name}", iso_time(value) if isinstance(value, datetime) else value)


def _parameters(job: Job) -> Element:
    return Element(
        "uws:parameters",
        (Element("uws:parameter", value, attrs={"id": name}) for name, value in job.parameters),
    )


def _results(job: Job, job_url: str, links: Sequence[ResultLink] | None = None) -> Element:
    if job.result is None:
        return Element("uws:results")
    if links is not None:  # a job type with several results (JobKind.results)
        return Element(
            "uws:results",
            (
                Element(
                    "uws:result",
                    attrs={
                        "id": link.id,
                        "xlink:type": "simple",
                        "xlink:href": link.href,
                        "mime-type": link.mime,
                        "size": link.size,
                    },
                )
                for link in links
            ),
        )
    result = Element(
        "uws:result",
        attrs={
            "id": "result",
            "xlink:type": "simple",
            "xlink:href": f"{job_url}/results/result",
            "mime-type": job.result.mime,
            "size": job.result.size,
        },
    )
    return Element("uws:results", result)


def _error_summary(job: Job) -> Element | None:
    if job.failure is None:
        return None
    kind = "fatal" if job.failure.fatal else "transient"
    return Element(
        "uws:errorSummary",
        Element("uws:message", job.failure.message),
        attrs={"type": kind, "hasDetail": True},
    )


def job_document(job: Job, job_url: str, links: Sequence[ResultLink] | None = None) -> str:
    """The job resource ``/async/{id}`` (``links``: its results, for job types with
    several)."""
    root = Element(
        "uws:job",
        _value("jobId", job.job_id),
        None if job.run_id is None else _value("runId", job.run_id),
        _value("ownerId", job.owner),
        _value("phase", job.phase.value),
        _value("quote", job.quote),
        _value("creationTime", job.creation_time),
        _value("startTime", job.start_time),
        _value("endTime", job.end_time),
        _value("executionDuration", str(job.execution_duration)),
        _value("destruction", job.destruction),
        _parameters(job),
        _results(job, job_url, links),
        _error_summary(job),
        attrs={"version": "1.1"},
    )
    return xml_document(root, _NAMESPACES)


def _job_ref(job: Job, list_url: str) -> Element:
    return Element(
        "uws:jobref",
        _value("phase", job.phase.value),
        None if job.run_id is None else _value("runId", job.run_id),
        _value("ownerId", job.owner),
        _value("creationTime", job.creation_time),
        attrs={"id": job.job_id, "xlink:type": "simple", "xlink:href": f"{list_url}/{job.job_id}"},
    )


def job_list_document(jobs: Iterable[Job], list_url: str) -> str:
    """The job list ``/async`` (already filtered)."""
    root = Element("uws:jobs", (_job_ref(job, list_url) for job in jobs), attrs={"version": "1.1"})
    return xml_document(root, _NAMESPACES)


def results_document(job: Job, job_url: str, links: Sequence[ResultLink] | None = None) -> str:
    """``/async/{id}/results``."""
    return xml_document(_results(job, job_url, links), _NAMESPACES)


def parameters_document(job: Job) -> str:
    """``/async/{id}/parameters``."""
    return xml_document(_parameters(job), _NAMESPACES)
