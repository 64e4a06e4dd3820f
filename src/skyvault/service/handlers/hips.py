"""HiPS handlers: ``/hips/list`` and the static files of ``/hips/{SCHEMA.TABLE}/...``.

Thin: :mod:`skyvault.hips.store` finds the file; this module adds what browsers need.
Aladin Lite loads tiles cross-origin into WebGL, so every answer carries
``Access-Control-Allow-Origin: *``; files carry an ``ETag`` (``If-None-Match`` answers 304),
``Cache-Control`` (``public`` when the caller sent no credentials, ``private`` otherwise)
and byte ranges (Starlette's ``FileResponse``).

Hidden is absent: the HiPS of a table the caller may not read, a missing HiPS or tile, and
a path that tries to leave the HiPS all get the same 404 with the same body.
"""

from __future__ import annotations

import hashlib
import os
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, Response
from starlette.concurrency import run_in_threadpool

from skyvault.catalog.layout import TableName
from skyvault.errors import CatalogNotFound, UsageError
from skyvault.hips.store import content_type, hips_file, read_properties
from skyvault.service.context import ServiceContext, get_context
from skyvault.service.exceptions import error_response
from skyvault.service.security import CallerDep

__all__ = ["router"]

router = APIRouter()

Context = Annotated[ServiceContext, Depends(get_context)]
#: Seconds a browser or proxy may keep a HiPS file without asking again.
MAX_AGE = 3600
_CORS = {"Access-Control-Allow-Origin": "*"}


def _not_found() -> Response:
    """The one 404 of every file that is hidden, missing or out of bounds (with CORS, so
    that a browser's script sees a 404 rather than a network error)."""
    error = CatalogNotFound("no such HiPS file", hint="GET /hips/list names the HiPS you may read")
    response = error_response(str(error), error.http_status)
    response.headers.update(_CORS)
    return response


def _etag(stat: os.stat_result) -> str:
    base = f"{stat.st_ino}-{stat.st_mtime_ns}-{stat.st_size}"
    return '"' + hashlib.md5(base.encode(), usedforsecurity=False).hexdigest() + '"'


def _matches(header: str | None, etag: str) -> bool:
    if header is None:
        return False
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return "*" in tags or etag in tags


def _cache_control(request: Request, max_age: int = MAX_AGE) -> str:
    scope = "private" if "authorization" in request.headers else "public"
    return f"{scope}, max-age={max_age}"


@router.api_route(
    "/hips/list", methods=["GET", "HEAD"], summary="HiPS list (concatenated properties)"
)
async def hips_list(request: Request, context: Context, caller: CallerDep) -> Response:
    """The ``properties`` of every HiPS the caller may read, each with its
    ``hips_service_url``, separated by blank lines (the HiPS list format)."""
    base = context.site_url(request)
    data_dir = context.settings.data_dir

    def records() -> list[str]:
        out = []
        for meta in sorted(caller.tables, key=lambda m: m.qualified_name):
            try:
                name = TableName.parse(meta.qualified_name)
            except UsageError:  # a delimited name no HiPS can have
                continue
            text = read_properties(data_dir, name)
            if text is None:
                continue
            lines = [
                line
                for line in text.splitlines()
                if line.strip() and not line.startswith("hips_service_url")
            ]
            lines.append(f"{'hips_service_url':<24}= {base}/hips/{name}")
            out.append("\n".join(lines) + "\n")
        return out

    body = "\n".join(await run_in_threadpool(records))
    headers = {**_CORS, "Cache-Control": _cache_control(request, 60)}
    return Response(body, media_type="text/plain; charset=utf-8", headers=headers)


@router.api_route("/hips/{hips_id}/{path:path}", methods=["GET", "HEAD"], summary="a HiPS file")
async def hips_get(
    hips_id: str, path: str, request: Request, context: Context, caller: CallerDep
) -> Response:
    """A file of the HiPS of table ``hips_id`` (``SCHEMA.TABLE``): tiles, ``properties``,
    ``Moc.fits``, ``metadata.xml``, ``NorderK/Allsky.tsv``; the bare directory is its
    ``index.html``."""
    if hips_id not in caller.table_names:
        return _not_found()
    found = hips_file(context.settings.data_dir, hips_id, path or "index.html")
    if found is None and path == "Metadata.xml":
        # Aladin Lite asks for a catalogue HiPS's column metadata with a capital M (as CDS
        # Hipsgen-cat names it); skyvault writes the lower-case name of the HiPS note.
        found = hips_file(context.settings.data_dir, hips_id, "metadata.xml")
    if found is None:
        return _not_found()
    stat = found.stat()
    etag = _etag(stat)
    headers = {**_CORS, "ETag": etag, "Cache-Control": _cache_control(request)}
    if _matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return FileResponse(found, media_type=content_type(found), headers=headers, stat_result=stat)
