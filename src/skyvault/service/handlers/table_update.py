"""youcat's ``POST {tap}/table-update`` (pyvo's ``create_index``): create the UWS job.

The form fields ``table``, ``index``, ``unique`` (upper-case names too, and youcat's
``INDEX_TYPE``) are stored as the job's parameters with ``REQUEST=table-update``; the answer
is ``303 See Other`` with the job's absolute URL under ``/async``, which the client then
runs (``PHASE=RUN``) and waits on (``WAIT=-1``).  Nothing is checked here but the caller's
identity (user tables need one: anonymous callers get a 401): a bad request is the job's
ERROR, with an errorSummary saying what to fix — what pyvo shows.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from skyvault.service.context import ServiceContext, get_context
from skyvault.service.handlers import GetHeadRouter
from skyvault.service.params import read_form
from skyvault.service.security import IdentityDep
from skyvault.service.services.table_update import TABLE_UPDATE

__all__ = ["router"]

router = GetHeadRouter()

Context = Annotated[ServiceContext, Depends(get_context)]


@router.post("/table-update", summary="Create a table-update job (an index)")
async def create_table_update(
    request: Request, context: Context, identity: IdentityDep
) -> Response:
    """A UWS job making the index the form asks for; 303 to it (absolute URL)."""
    if identity.user is None:
        raise context.auth.access.login_required()
    pairs, _, form = await read_form(request, 0)
    if form is not None:
        await form.close()
    job = await run_in_threadpool(context.jobs.create, identity, pairs, task=TABLE_UPDATE)
    return RedirectResponse(f"{context.base_url(request)}/async/{job.job_id}", status_code=303)
