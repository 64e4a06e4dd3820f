"""youcat's table-update jobs (pyvo's ``create_index``): ``{tap}/table-update``.

``POST {tap}/table-update`` with the form fields ``table``, ``index``, ``unique`` (upper-case
names too, and youcat's ``INDEX_TYPE``) creates a UWS job and answers ``303 See Other`` with
its absolute URL, ``{tap}/table-update/{id}``, which the client runs (``PHASE=RUN``) and
waits on (``WAIT=-1``); the list and job resources are the UWS ones
(:func:`~skyvault.service.uws.handlers.job_router`).  Nothing but the caller's identity is
checked when the job is created (user tables need one: anonymous callers get a 401): a bad
request is the job's ERROR, with an errorSummary saying what to fix — what pyvo shows.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import Request

from skyvault.config import Settings
from skyvault.service.context import ServiceContext
from skyvault.service.uploads import InlineContent
from skyvault.service.uws.handlers import job_router

__all__ = ["router"]


def _no_parts(
    params: dict[str, list[str]], files: Mapping[str, InlineContent], settings: Settings
) -> Mapping[str, InlineContent]:
    return {}


def _list_url(context: ServiceContext, request: Request) -> str:
    return f"{context.base_url(request)}/table-update"


router = job_router("/table-update", lambda c: c.table_updates, _list_url, keep_parts=_no_parts)
