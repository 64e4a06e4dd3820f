"""HiPS handlers: ``/hips/list`` and the static files of ``/hips/{SCHEMA.TABLE}/...``
(catalogue HiPS) and ``/hips/images/{NAME}/...`` (image HiPS).

Thin: :mod:`skyvault.hips.store` finds the file; this module adds what browsers need.
Aladin Lite loads tiles cross-origin into WebGL, so every answer carries
``Access-Control-Allow-Origin: *``; files carry an ``ETag`` (``If-None-Match`` answers 304),
``Cache-Control`` (``public`` when the caller sent no credentials, ``private`` otherwise)
and byte ranges (Starlette's ``FileResponse``).

Hidden is absent: the HiPS of a table the caller may not read, a missing HiPS or tile, and
a path that tries to leave the HiPS all get the same 404 with the same body.  An image HiPS
of a collection (``skyvault_collection`` in its properties) reads like a missing one to a
caller who may not read ``COLLECTION.obscore``; one built from files is public.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Collection
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, Response
from starlette.concurrency import run_in_threadpool

from skyvault.catalog.layout import TableName
from skyvault.errors import CatalogNotFound, UsageError
from skyvault.hips.store import (
    content_type,
    hips_file,
    image_hips_collection,
    image_hips_file,
    image_hips_names,
    read_properties,
)
from skyvault.service.context import ServiceContext, get_context
from skyvault.service.exceptions import error_response
from skyvault.service.security import Caller, CallerDep

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

    def record(text: str | None, url: str) -> list[str]:
        if text is None:
            return []
        lines = [
            line
            for line in text.splitlines()
            if line.strip() and not line.startswith("hips_service_url")
        ]
        lines.append(f"{'hips_service_url':<24}= {url}")
        return ["\n".join(lines) + "\n"]

    def records() -> list[str]:
        out = []
        for path, text in visible_hips(data_dir, caller):
            out += record(text, f"{base}{path}")
        return out

    body = "\n".join(await run_in_threadpool(records))
    headers = {**_CORS, "Cache-Control": _cache_control(request, 60)}
    return Response(body, media_type="text/plain; charset=utf-8", headers=headers)


def visible_hips(data_dir: Path, caller: Caller) -> list[tuple[str, str]]:
    """``(path, properties text)`` of every HiPS ``caller`` may read: catalogue HiPS of their
    visible tables (``/hips/SCHEMA.TABLE``), then image HiPS (``/hips/images/NAME``)."""
    out = []
    for meta in sorted(caller.tables, key=lambda m: m.qualified_name):
        try:
            name = TableName.parse(meta.qualified_name)
        except UsageError:  # a delimited name no HiPS can have
            continue
        text = read_properties(data_dir, name)
        if text is not None:
            out.append((f"/hips/{name}", text))
    for image in image_hips_names(data_dir):
        if _image_hips_visible(data_dir, image, caller.table_names):
            text = read_properties(data_dir, image)
            if text is not None:
                out.append((f"/hips/images/{image}", text))
    return out


def _serve(found: Path | None, request: Request) -> Response:
    if found is None:
        return _not_found()
    stat = found.stat()
    etag = _etag(stat)
    headers = {**_CORS, "ETag": etag, "Cache-Control": _cache_control(request)}
    if _matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return FileResponse(found, media_type=content_type(found), headers=headers, stat_result=stat)


# Before /hips/{hips_id}/…: "images" is no SCHEMA.TABLE, so the two never overlap.
@router.api_route(
    "/hips/images/{name}/{path:path}", methods=["GET", "HEAD"], summary="an image HiPS file"
)
async def image_hips_get(
    name: str, path: str, request: Request, context: Context, caller: CallerDep
) -> Response:
    """A file of image HiPS ``name``; the bare directory is its ``index.html``."""
    data_dir = context.settings.data_dir
    visible = await run_in_threadpool(_image_hips_visible, data_dir, name, caller.table_names)
    if not visible:
        return _not_found()
    return _serve(image_hips_file(data_dir, name, path or "index.html"), request)


def _image_hips_visible(data_dir: Path, name: str, tables: Collection[str]) -> bool:
    """An image HiPS of a collection is visible to who may read ``COLLECTION.obscore``;
    one built from files (no collection) to everyone."""
    collection = image_hips_collection(data_dir, name)
    return collection is None or f"{collection}.obscore" in tables


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
    return _serve(found, request)
