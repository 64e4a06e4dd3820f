"""Image access handlers: DataLink ``{links}``, the image files, previews and headers, SODA.

* ``GET|POST {base}/datalink/links?ID=...`` — the DataLink 1.1 links of each ID (many per
  request: pyvo sends 50), :mod:`skyvault.images.datalink`.
* ``GET {base}/images/{collection}/{obs_id}`` — the FITS file (``#this``);
  ``.../preview.png`` (``#preview``, rendered once and cached);
  ``.../header.txt`` (``#detached-header``: the header service).
* ``GET|POST {base}/soda/sync?ID=...&CIRCLE=...`` — a SODA 1.0 cutout (CIRCLE, POLYGON, POS,
  BAND, TIME, POL), ``application/fits``.
* ``{base}/soda/async`` — the same cutout as a UWS job (:mod:`skyvault.service.services.sodajobs`;
  its ``results/result`` is the FITS file).

Hidden is absent: a collection is visible when its ``obscore`` table is
(:mod:`skyvault.service.security`); an image of a hidden collection gets the same answer as
one that does not exist — the same 404 and body for files, previews, headers and cutouts,
the same ``NotFoundFault`` row in links.  Errors are DALI error documents.
"""

from __future__ import annotations

import functools
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, BinaryIO

from fastapi import Depends, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from skyvault.catalog.layout import preview_cache_dir
from skyvault.config import Settings
from skyvault.errors import CatalogNotFound, UsageError
from skyvault.images.archive import ImageArchive, StoredImage, chunks, spool_cutout
from skyvault.images.datalink import DATALINK_TYPE, Link, image_links, links_document, not_found
from skyvault.images.preview import cached_preview
from skyvault.images.soda import parse_soda
from skyvault.service.context import ServiceContext, get_context
from skyvault.service.handlers import GetHeadRouter
from skyvault.service.params import collect_params, read_form, single
from skyvault.service.security import CallerDep
from skyvault.service.services.sodajobs import soda_result
from skyvault.service.uploads import InlineContent
from skyvault.service.uws.handlers import Owner, job_router

__all__ = ["router"]

router = GetHeadRouter()

Context = Annotated[ServiceContext, Depends(get_context)]

#: IDs one {links} request may carry (pyvo sends 50 at a time).
MAX_LINK_IDS = 1000
#: RESPONSEFORMAT values a {links} request may give (all mean the DataLink VOTable).
_LINK_FORMATS = frozenset({"votable", "application/x-votable+xml", DATALINK_TYPE})


@functools.cache
def _archive(data_dir: Path) -> ImageArchive:
    return ImageArchive(data_dir)


def _images(context: ServiceContext) -> ImageArchive:
    return _archive(context.settings.data_dir)


def _no_image(what: str) -> CatalogNotFound:
    """The one error of an image that is missing or hidden (the same text either way)."""
    return CatalogNotFound(
        f"no image {what}",
        hint="find images and their ids in the collections' ObsCore tables",
    )


def file_url(base: str, image: StoredImage) -> str:
    """The URL of an image's FITS file (its preview and header are beneath it)."""
    quote = functools.partial(urllib.parse.quote, safe="")
    return f"{base}/images/{quote(image.collection)}/{quote(image.obs_id)}"


async def _params(request: Request, context: Context) -> dict[str, list[str]]:
    pairs, _files, form = await read_form(request, 0)
    try:
        return collect_params(pairs)
    finally:
        if form is not None:
            await form.close()


@router.api_route("/datalink/links", methods=["GET", "POST"], summary="DataLink links")
async def links(request: Request, context: Context, caller: CallerDep) -> Response:
    """The DataLink 1.1 links of every ``ID`` (repeatable), in order."""
    params = await _params(request, context)
    fmt = single(params, "RESPONSEFORMAT")
    if fmt is not None and fmt.strip() and fmt.strip().lower() not in _LINK_FORMATS:
        raise UsageError(
            f"RESPONSEFORMAT {fmt!r} is not offered here",
            hint="omit RESPONSEFORMAT: links are a DataLink VOTable",
        )
    ids = [v for v in params.get("ID", []) if v.strip()]
    if not ids:
        raise UsageError("the ID parameter is missing", hint="send ID=<an obs_publisher_did>")
    if len(ids) > MAX_LINK_IDS:
        raise UsageError(
            f"{len(ids)} IDs in one request; at most {MAX_LINK_IDS}",
            hint="send the IDs in several requests",
        )
    base = context.base_url(request)
    visible = caller.table_names
    images = _images(context)

    def build() -> str:
        rows: list[Link] = []
        for did, image in images.find_many(ids, visible):
            if image is None:
                rows.append(not_found(did))
                continue
            try:
                size = image.file_size()
            except OSError:
                rows.append(not_found(did))
                continue
            rows += image_links(did, file_url(base, image), size, image.obs_id)
        return links_document(rows, f"{base}/soda/sync")

    return Response(await run_in_threadpool(build), media_type=DATALINK_TYPE)


def _stored(
    context: ServiceContext, caller: CallerDep, collection: str, obs_id: str
) -> StoredImage:
    image = _images(context).by_obs_id(collection, obs_id, caller.table_names)
    if image is None or not image.path.is_file():
        raise _no_image(f"{obs_id} in collection {collection}")
    return image


@router.get("/images/{collection}/{obs_id}", summary="an image's FITS file")
async def image_file(collection: str, obs_id: str, context: Context, caller: CallerDep) -> Response:
    """The FITS file of an image (``#this``)."""
    image = await run_in_threadpool(_stored, context, caller, collection, obs_id)
    return FileResponse(image.path, media_type="application/fits", filename=image.file_name)


@router.get("/images/{collection}/{obs_id}/preview.png", summary="an image's PNG preview")
async def image_preview(
    collection: str, obs_id: str, context: Context, caller: CallerDep
) -> Response:
    """A PNG preview of an image (``#preview``): rendered on the first request, then cached."""

    def render() -> Response:
        image = _stored(context, caller, collection, obs_id)
        cache = preview_cache_dir(context.settings.data_dir)
        preview = cached_preview(image.path, cache, image.hdu, fmt="png", image=image.obs_id)
        if preview.path is not None:
            return FileResponse(preview.path, media_type=preview.media_type)
        return Response(preview.read(), media_type=preview.media_type)

    return await run_in_threadpool(render)


@router.get("/images/{collection}/{obs_id}/header.txt", summary="an image's FITS header")
async def image_header(
    collection: str, obs_id: str, context: Context, caller: CallerDep
) -> Response:
    """The image's FITS header as text (``#detached-header``: the header service)."""

    def read() -> str:
        return _stored(context, caller, collection, obs_id).header_text()

    return Response(await run_in_threadpool(read), media_type="text/plain; charset=utf-8")


@router.api_route("/soda/sync", methods=["GET", "POST"], summary="SODA cutout")
async def soda_sync(request: Request, context: Context, caller: CallerDep) -> Response:
    """One cutout: ``ID`` and at most one of each filter; the FITS file.

    A region (or BAND, TIME, POL) that misses the image is a 400 saying so, not SODA's 204
    No Content: an empty answer would tell the caller nothing, and clients that save or open
    the result (pyvo, curl -o, astropy) would be left with an empty file that is not FITS.
    """
    params = await _params(request, context)
    spec = parse_soda(params).single()
    visible = caller.table_names

    def cut() -> tuple[BinaryIO, int]:
        image = _images(context).find(spec.id, visible)
        if image is None or not image.path.is_file():
            raise _no_image(f"has the ID {spec.id}")
        # Sent a chunk at a time and closed once sent (the response's background task);
        # CutoutNoOverlap is a 400: see above.
        return spool_cutout(image, spec, context.settings.spool_dir)

    spool, size = await run_in_threadpool(cut)
    return StreamingResponse(
        chunks(spool),
        media_type="application/fits",
        headers={"Content-Length": str(size)},
        background=BackgroundTask(spool.close),
    )


def _soda_jobs_url(context: ServiceContext, request: Request) -> str:
    return f"{context.base_url(request)}/soda/async"


def _no_parts(
    params: dict[str, list[str]], files: Mapping[str, InlineContent], settings: Settings
) -> Mapping[str, InlineContent]:
    """A SODA job keeps no multipart file part."""
    return {}


router.include_router(job_router("/soda/async", lambda c: c.soda_jobs, _soda_jobs_url,
                                 keep_parts=_no_parts))  # fmt: skip


@router.get(
    "/soda/async/{job_id}/results/{name}", summary="A result of a SODA job of several cutouts"
)
async def soda_async_result(
    job_id: str, name: str, request: Request, context: Context, owner: Owner
) -> Response:
    """``cutout-N`` of a job of several cutouts: a FITS file, or SODA's text/plain error
    document for a combination that made none (``results/result`` is routed before)."""
    mime, size, blocks = await run_in_threadpool(
        soda_result, context.soda_jobs, job_id, owner, name
    )
    extension = "fits" if mime == "application/fits" else "txt"
    headers = {
        "Content-Length": str(size),
        "Content-Disposition": f'inline; filename="{job_id}-{name}.{extension}"',
    }
    if request.method == "HEAD":
        del blocks  # never started: dropping it closes the opened file
        return Response(media_type=mime, headers=headers)
    return StreamingResponse(blocks, media_type=mime, headers=headers)
