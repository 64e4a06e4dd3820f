"""UWS 1.1 job lists and job resources (thin: read, call, serialise): TAP ``/async``, and
any other job type's list (:func:`job_router`, e.g. ``/bulk/jobs``).

Every POST that changes something answers ``303 See Other`` to the job (or, for a delete,
to the job list), as UWS requires; reads answer the UWS XML documents, plain-text values,
the result (served from the result store with its own Content-Type) or the DALI error
document.  Errors go through the one renderer in :mod:`skyvault.service.exceptions`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from skyvault.auth import Identity
from skyvault.config import Settings
from skyvault.errors import UsageError
from skyvault.service.context import ServiceContext, get_context
from skyvault.service.exceptions import VOTABLE_TYPE
from skyvault.service.handlers import GetHeadRouter
from skyvault.service.params import collect_params, read_form
from skyvault.service.security import IdentityDep
from skyvault.service.uploads import InlineContent, referenced_parts
from skyvault.service.uws.documents import (
    iso_time,
    job_document,
    job_list_document,
    parameters_document,
    results_document,
)
from skyvault.service.uws.models import Job, ResultLink
from skyvault.service.uws.service import JobService, parse_job_filter, parse_phase

__all__ = ["job_router", "router"]

Context = Annotated[ServiceContext, Depends(get_context)]

XML_TYPE = "text/xml; charset=utf-8"


def _owner(identity: IdentityDep) -> str | None:
    """The owner of jobs made by, and visible to, this request's caller (None: anonymous).

    The one place the job handlers learn who calls: the authenticated user's name.  A job
    of another owner is "no such job" (404), exactly as one that does not exist.
    """
    return identity.user


Owner = Annotated[str | None, Depends(_owner)]


def _job_caller(request: Request, owner: Owner) -> Identity:
    """The caller as a job owner: name and groups (kept with the jobs they create or run)."""
    identity: Identity | None = getattr(request.state, "identity", None)
    if identity is not None and identity.user == owner:
        return identity
    return Identity.anonymous() if owner is None else Identity(owner)


JobCaller = Annotated[Identity, Depends(_job_caller)]


async def _pairs(request: Request) -> list[tuple[str, str]]:
    """The (name, value) pairs of the query string and, for POST, of the form body.

    These requests carry no tables (a job keeps the uploads it was created with), so the
    body gets only the room :func:`read_form` leaves for parameters: a large file part is
    a 413 while it arrives, not a file spooled to disk and dropped.
    """
    pairs, _, form = await read_form(request, 0)
    if form is not None:
        await form.close()
    return pairs


def _xml(text: str) -> Response:
    return Response(text, media_type=XML_TYPE)


def _tap_parts(
    params: dict[str, list[str]], files: Mapping[str, InlineContent], settings: Settings
) -> Mapping[str, InlineContent]:
    """The multipart parts a TAP job keeps: those its UPLOAD names (no more than
    max_uploads)."""
    return referenced_parts(params, files, settings)


def _one(params: dict[str, list[str]], name: str) -> str:
    values = params.get(name, [])
    if len(values) != 1:
        raise UsageError(
            f"parameter {name} is {'missing' if not values else 'repeated'}",
            hint=f"send {name} once",
        )
    return values[0]


def job_router(
    list_path: str,
    service: Callable[[ServiceContext], JobService],
    list_url: Callable[[ServiceContext, Request], str],
    *,
    keep_parts: Callable[
        [dict[str, list[str]], Mapping[str, InlineContent], Settings],
        Mapping[str, InlineContent],
    ] = _tap_parts,
    single_result: bool = True,
) -> GetHeadRouter:
    """The UWS routes of one job type: its list at ``list_path`` and the jobs below it.

    ``service`` gives the type's :class:`JobService`, ``list_url`` the public URL of the
    list; ``keep_parts`` which multipart file parts of a creating POST are kept with the
    job; ``single_result``: the type's result is ``results/result`` (else the type serves
    its results itself, listed by its :attr:`JobKind.results`).
    """
    router = GetHeadRouter()

    def _list_url(context: ServiceContext, request: Request) -> str:
        return list_url(context, request)

    def _job_url(context: ServiceContext, request: Request, job_id: str) -> str:
        return f"{_list_url(context, request)}/{job_id}"

    def _see_job(context: ServiceContext, request: Request, job: Job) -> RedirectResponse:
        return RedirectResponse(_job_url(context, request, job.job_id), status_code=303)

    def _links(jobs: JobService, job: Job, job_url: str) -> list[ResultLink] | None:
        results = jobs.kind.results
        if results is None or job.result is None:
            return None
        return results(job, job_url)

    # --- the job list ---------------------------------------------------------------------------

    @router.get(list_path, summary="UWS job list")
    async def list_jobs(request: Request, context: Context, owner: Owner) -> Response:
        """The caller's jobs, filtered by PHASE (repeatable), AFTER and LAST (UWS 1.1)."""
        filters = parse_job_filter(collect_params(request.query_params.multi_items()))
        jobs = await run_in_threadpool(service(context).list_jobs, owner, filters)
        return _xml(job_list_document(jobs, _list_url(context, request)))

    @router.post(list_path, summary="Create an async TAP job")
    async def create_job(request: Request, context: Context, caller: JobCaller) -> Response:
        """Create a job from the TAP parameters (and inline uploads); PHASE=RUN starts it.
        303 to the job."""
        pairs, files, form = await read_form(request, context.settings.max_upload_bytes)
        try:
            # Only the parts UPLOAD names are kept with the job (and no more than max_uploads).
            kept = keep_parts(collect_params(pairs), files, context.settings)
            uploads = {
                name: await run_in_threadpool(_read_part, part) for name, part in kept.items()
            }
        finally:
            if form is not None:
                await form.close()
        job = await run_in_threadpool(service(context).create, caller, pairs, uploads)
        return _see_job(context, request, job)

    def _read_part(part: InlineContent) -> bytes:
        if isinstance(part, bytes):
            return part
        if isinstance(part, (str, Path)):
            return Path(part).read_bytes()
        return part.read()

    # --- one job --------------------------------------------------------------------------------

    @router.get(list_path + "/{job_id}", summary="UWS job")
    async def get_job(job_id: str, request: Request, context: Context, owner: Owner) -> Response:
        """The job document; ``WAIT=n`` (and the ``PHASE`` guard) block until the phase changes."""
        params = collect_params(request.query_params.multi_items())
        wait = params.get("WAIT")
        if wait:
            try:
                seconds = float(int(wait[-1].strip()))
            except ValueError:
                raise UsageError(
                    f"WAIT={wait[-1]!r} is not a whole number of seconds",
                    hint="give WAIT in seconds; -1 waits as long as the service allows",
                ) from None
            if seconds < 0:
                seconds = float(context.settings.job_wait_max)
            guard = params.get("PHASE")
            phase = parse_phase(guard[-1]) if guard else None
            job = await service(context).wait(job_id, owner, seconds, phase)
        else:
            job = await run_in_threadpool(service(context).get, job_id, owner)
        url = _job_url(context, request, job_id)
        return _xml(job_document(job, url, _links(service(context), job, url)))

    @router.post(list_path + "/{job_id}", summary="Change or delete a UWS job")
    async def post_job(
        job_id: str, request: Request, context: Context, owner: Owner, caller: JobCaller
    ) -> Response:
        """``ACTION=DELETE`` deletes (303 to the list); PHASE, DESTRUCTION, EXECUTIONDURATION
        and other parameters change the job (303 to it)."""
        pairs = await _pairs(request)
        params = collect_params(pairs)
        jobs = service(context)
        action = params.get("ACTION")
        if action is not None:
            if [a.upper() for a in action] != ["DELETE"]:
                raise UsageError(
                    f"ACTION={action[0]!r} is not supported", hint="send ACTION=DELETE"
                )
            await run_in_threadpool(jobs.delete, job_id, owner)
            return RedirectResponse(_list_url(context, request), status_code=303)
        job = await run_in_threadpool(jobs.get, job_id, owner)
        if "EXECUTIONDURATION" in params:
            value = _one(params, "EXECUTIONDURATION")
            job = await run_in_threadpool(jobs.set_execution_duration, job_id, owner, value)
        if "DESTRUCTION" in params:
            value = _one(params, "DESTRUCTION")
            job = await run_in_threadpool(jobs.set_destruction, job_id, owner, value)
        job = await run_in_threadpool(jobs.update_parameters, job_id, owner, pairs)
        if "PHASE" in params:
            job = await _change_phase(context, job_id, caller, _one(params, "PHASE"))
        return _see_job(context, request, job)

    @router.delete(list_path + "/{job_id}", summary="Delete a UWS job")
    async def delete_job(job_id: str, request: Request, context: Context, owner: Owner) -> Response:
        """Delete the job and its result (stopping it first); 303 to the job list."""
        await run_in_threadpool(service(context).delete, job_id, owner)
        return RedirectResponse(_list_url(context, request), status_code=303)

    async def _change_phase(
        context: ServiceContext, job_id: str, caller: Identity, value: str
    ) -> Job:
        action = value.strip().upper()
        if action == "RUN":
            return await run_in_threadpool(service(context).run, job_id, caller)
        if action == "ABORT":
            return await run_in_threadpool(service(context).abort, job_id, caller.user)
        raise UsageError(
            f"PHASE={value!r} is not an action on a job", hint="send PHASE=RUN or ABORT"
        )

    @router.get(list_path + "/{job_id}/phase", summary="UWS job phase")
    async def get_phase(job_id: str, context: Context, owner: Owner) -> Response:
        job = await run_in_threadpool(service(context).get, job_id, owner)
        return PlainTextResponse(job.phase.value)

    @router.post(list_path + "/{job_id}/phase", summary="Run or abort a UWS job")
    async def post_phase(
        job_id: str, request: Request, context: Context, caller: JobCaller
    ) -> Response:
        """``PHASE=RUN`` queues the job, ``PHASE=ABORT`` stops it; 303 to the job."""
        params = collect_params(await _pairs(request))
        job = await _change_phase(context, job_id, caller, _one(params, "PHASE"))
        return _see_job(context, request, job)

    @router.get(list_path + "/{job_id}/executionduration", summary="UWS job execution duration")
    async def get_execution_duration(job_id: str, context: Context, owner: Owner) -> Response:
        job = await run_in_threadpool(service(context).get, job_id, owner)
        return PlainTextResponse(str(job.execution_duration))

    @router.post(list_path + "/{job_id}/executionduration", summary="Set the execution duration")
    async def post_execution_duration(
        job_id: str, request: Request, context: Context, owner: Owner
    ) -> Response:
        params = collect_params(await _pairs(request))
        value = _one(params, "EXECUTIONDURATION")
        job = await run_in_threadpool(service(context).set_execution_duration, job_id, owner, value)
        return _see_job(context, request, job)

    @router.get(list_path + "/{job_id}/destruction", summary="UWS job destruction time")
    async def get_destruction(job_id: str, context: Context, owner: Owner) -> Response:
        job = await run_in_threadpool(service(context).get, job_id, owner)
        return PlainTextResponse(iso_time(job.destruction))

    @router.post(list_path + "/{job_id}/destruction", summary="Set the destruction time")
    async def post_destruction(
        job_id: str, request: Request, context: Context, owner: Owner
    ) -> Response:
        params = collect_params(await _pairs(request))
        value = _one(params, "DESTRUCTION")
        job = await run_in_threadpool(service(context).set_destruction, job_id, owner, value)
        return _see_job(context, request, job)

    @router.get(list_path + "/{job_id}/quote", summary="UWS job quote")
    async def get_quote(job_id: str, context: Context, owner: Owner) -> Response:
        job = await run_in_threadpool(service(context).get, job_id, owner)
        return PlainTextResponse("" if job.quote is None else iso_time(job.quote))

    @router.get(list_path + "/{job_id}/owner", summary="UWS job owner")
    async def get_owner(job_id: str, context: Context, owner: Owner) -> Response:
        job = await run_in_threadpool(service(context).get, job_id, owner)
        return PlainTextResponse(job.owner or "")

    @router.get(list_path + "/{job_id}/parameters", summary="UWS job parameters")
    async def get_parameters(job_id: str, context: Context, owner: Owner) -> Response:
        job = await run_in_threadpool(service(context).get, job_id, owner)
        return _xml(parameters_document(job))

    @router.post(list_path + "/{job_id}/parameters", summary="Change parameters of a pending job")
    async def post_parameters(
        job_id: str, request: Request, context: Context, owner: Owner
    ) -> Response:
        pairs = await _pairs(request)
        job = await run_in_threadpool(service(context).update_parameters, job_id, owner, pairs)
        return _see_job(context, request, job)

    @router.get(list_path + "/{job_id}/results", summary="UWS job results")
    async def get_results(
        job_id: str, request: Request, context: Context, owner: Owner
    ) -> Response:
        job = await run_in_threadpool(service(context).get, job_id, owner)
        url = _job_url(context, request, job_id)
        return _xml(results_document(job, url, _links(service(context), job, url)))

    if single_result:

        @router.get(list_path + "/{job_id}/results/result", summary="The result of a completed job")
        async def get_result(
            job_id: str, request: Request, context: Context, owner: Owner
        ) -> Response:
            """The result, streamed from the result store with its format's Content-Type (HEAD:
            the same headers, and the stored result is not read)."""
            job, blocks = await run_in_threadpool(service(context).result, job_id, owner)
            assert job.result is not None
            extension = job.result.key.rsplit(".", 1)[-1]
            headers = {
                "Content-Length": str(job.result.size),
                "Content-Disposition": f'inline; filename="{job_id}.{extension}"',
            }
            if request.method == "HEAD":
                del blocks  # never started: dropping it closes the opened file
                return Response(media_type=job.result.mime, headers=headers)
            return StreamingResponse(blocks, media_type=job.result.mime, headers=headers)

    @router.get(list_path + "/{job_id}/error", summary="The error of a failed job")
    async def get_error(job_id: str, context: Context, owner: Owner) -> Response:
        """The DALI VOTable error document of a job in ERROR."""
        document = await run_in_threadpool(service(context).error_document, job_id, owner)
        return Response(document, media_type=VOTABLE_TYPE)

    return router


router = job_router("/async", lambda c: c.jobs, lambda c, r: f"{c.base_url(r)}/async")
