"""UWS 1.1 XML documents: a job, the job list, results, parameters (pure functions).

Namespace ``http://www.ivoa.net/xml/UWS/v1.0`` with ``version="1.1"`` on the root, elements
in the order of the UWS schema; unknown values are ``xsi:nil``.  Times are ISO 8601 UTC
with milliseconds and a ``Z``.  Every value goes through the one XML escaping of
:mod:`skyvault.formats._xml` (the VOTable writers' too): a parameter may hold anything a
client sent, and characters XML 1.0 cannot carry (C0 controls, lone surrogates) must not
make the document unreadable.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from skyvault.formats._xml import escape_attribute, escape_text
from skyvault.service.uws.models import Job

__all__ = [
    "UWS_NS",
    "iso_time",
    "job_document",
    "job_list_document",
    "parameters_document",
    "results_document",
]

UWS_NS = "http://www.ivoa.net/xml/UWS/v1.0"
_XLINK = "http://www.w3.org/1999/xlink"
_XSI = "http://www.w3.org/2001/XMLSchema-instance"
_XML = '<?xml version="1.0" encoding="UTF-8"?>\n'
_NS = f'xmlns:uws="{UWS_NS}" xmlns:xlink="{_XLINK}" xmlns:xsi="{_XSI}"'


def iso_time(value: datetime) -> str:
    """``2025-01-31T12:00:00.000Z``."""
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


_text = escape_text
_attr = escape_attribute


def _element(name: str, value: str | None, indent: str = "  ") -> str:
    if value is None:
        return f'{indent}<uws:{name} xsi:nil="true"/>\n'
    return f"{indent}<uws:{name}>{_text(value)}</uws:{name}>\n"


def _time(name: str, value: datetime | None) -> str:
    return _element(name, None if value is None else iso_time(value))


def _parameters(job: Job, indent: str, root: str = "") -> str:
    """The ``parameters`` element; ``root`` holds the namespace declarations of a document."""
    lines = [f"{indent}<uws:parameters{root}>\n"]
    for name, value in job.parameters:
        lines.append(
            f'{indent}  <uws:parameter id="{_attr(name)}">{_text(value)}</uws:parameter>\n'
        )
    lines.append(f"{indent}</uws:parameters>\n")
    return "".join(lines)


def _results(job: Job, job_url: str, indent: str, root: str = "") -> str:
    """The ``results`` element; ``root`` holds the namespace declarations of a document."""
    if job.result is None:
        return f"{indent}<uws:results{root}/>\n"
    result = job.result
    return (
        f"{indent}<uws:results{root}>\n"
        f'{indent}  <uws:result id="result" xlink:type="simple"'
        f' xlink:href="{_attr(job_url)}/results/result" mime-type="{_attr(result.mime)}"'
        f' size="{result.size}"/>\n'
        f"{indent}</uws:results>\n"
    )


def job_document(job: Job, job_url: str) -> str:
    """The job resource ``/async/{id}``."""
    parts = [
        _XML,
        f'<uws:job {_NS} version="1.1">\n',
        _element("jobId", job.job_id),
    ]
    if job.run_id is not None:
        parts.append(_element("runId", job.run_id))
    parts += [
        _element("ownerId", job.owner),
        _element("phase", job.phase.value),
        _time("quote", job.quote),
        _time("creationTime", job.creation_time),
        _time("startTime", job.start_time),
        _time("endTime", job.end_time),
        _element("executionDuration", str(job.execution_duration)),
        _time("destruction", job.destruction),
        _parameters(job, "  "),
        _results(job, job_url, "  "),
    ]
    if job.failure is not None:
        kind = "fatal" if job.failure.fatal else "transient"
        parts.append(
            f'  <uws:errorSummary type="{kind}" hasDetail="true">\n'
            f"    <uws:message>{_text(job.failure.message)}</uws:message>\n"
            "  </uws:errorSummary>\n"
        )
    parts.append("</uws:job>\n")
    return "".join(parts)


def job_list_document(jobs: Iterable[Job], list_url: str) -> str:
    """The job list ``/async`` (already filtered)."""
    parts = [_XML, f'<uws:jobs {_NS} version="1.1">\n']
    for job in jobs:
        parts.append(
            f'  <uws:jobref id="{_attr(job.job_id)}" xlink:type="simple"'
            f' xlink:href="{_attr(list_url)}/{_attr(job.job_id)}">\n'
        )
        parts.append(_element("phase", job.phase.value, "    "))
        if job.run_id is not None:
            parts.append(_element("runId", job.run_id, "    "))
        parts.append(_element("ownerId", job.owner, "    "))
        parts.append(_element("creationTime", iso_time(job.creation_time), "    "))
        parts.append("  </uws:jobref>\n")
    parts.append("</uws:jobs>\n")
    return "".join(parts)


def results_document(job: Job, job_url: str) -> str:
    """``/async/{id}/results``."""
    return _XML + _results(job, job_url, "", f" {_NS}")


def parameters_document(job: Job) -> str:
    """``/async/{id}/parameters``."""
    return _XML + _parameters(job, "", f" {_NS}")
