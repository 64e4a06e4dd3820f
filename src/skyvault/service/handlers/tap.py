"""TAP handlers: the landing page, ``/sync`` and ``/examples``."""

from __future__ import annotations

from html import escape
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.types import Message, Receive

from skyvault.errors import LimitExceeded
from skyvault.service.context import ServiceContext, get_context
from skyvault.service.params import collect_params, tap_query_params
from skyvault.service.services.examples import examples_document
from skyvault.service.uploads import InlineContent, parse_uploads

__all__ = ["router"]

router = APIRouter()

Context = Annotated[ServiceContext, Depends(get_context)]


async def request_pairs(request: Request) -> list[tuple[str, str]]:
    """The (name, value) pairs of the query string and, for POST, the form body."""
    pairs = list(request.query_params.multi_items())
    if request.method == "POST":
        form = await request.form()
        pairs.extend((k, v) for k, v in form.multi_items() if isinstance(v, str))
    return pairs


# --- request bodies with uploads (TAP_UPLOAD) ------------------------------------------------

#: Room in a request body beyond the upload limit: the other form fields, multipart framing.
FORM_OVERHEAD = 1 << 20


def _capped_receive(request: Request, limit: int) -> Receive:
    """``request``'s ASGI receive, failing with a 413 once the body passes ``limit`` bytes."""
    received = 0

    async def receive() -> Message:
        nonlocal received
        message = await request.receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise _body_too_large(f"more than {received} bytes", limit)
        return message

    return receive


def _body_too_large(size: str, limit: int) -> LimitExceeded:
    return LimitExceeded(
        f"the request body is {size}; uploads may hold {limit - FORM_OVERHEAD} bytes "
        f"(max_upload_bytes) plus {FORM_OVERHEAD} bytes for the other parameters",
        hint="upload fewer rows or columns (Parquet is the most compact format)",
    )


async def read_form(
    request: Request, max_upload_bytes: int
) -> tuple[list[tuple[str, str]], dict[str, InlineContent], FormData | None]:
    """Parameter pairs, the multipart file parts by name, and the form (to close after use).

    The body is read with a cap of ``max_upload_bytes`` plus :data:`FORM_OVERHEAD`: a
    declared Content-Length over it is refused at once, a chunked body once it passes it.
    """
    pairs = list(request.query_params.multi_items())
    if request.method != "POST":
        return pairs, {}, None
    limit = max_upload_bytes + FORM_OVERHEAD
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _body_too_large(f"{int(declared)} bytes", limit)
    form = await Request(request.scope, _capped_receive(request, limit)).form()
    files: dict[str, InlineContent] = {}
    for name, value in form.multi_items():
        if isinstance(value, str):
            pairs.append((name, value))
        elif isinstance(value, UploadFile):
            files.setdefault(name, value.file)
    return pairs, files, form


@router.api_route("/sync", methods=["GET", "POST"], summary="TAP synchronous query")
async def sync_query(request: Request, context: Context) -> Response:
    """Run a TAP query and stream its result (DALI-sync)."""
    settings = context.settings
    pairs, files, form = await read_form(request, settings.max_upload_bytes)
    try:
        params = collect_params(pairs)
        tap = tap_query_params(
            params, maxrec_default=settings.maxrec_default, maxrec_limit=settings.maxrec_limit
        )
        uploads = await run_in_threadpool(parse_uploads, params, files, settings)
    finally:
        if form is not None:
            await form.close()
    started = await run_in_threadpool(context.queries.run, tap, uploads=uploads)
    output = started.output
    return StreamingResponse(
        started.chunks,
        media_type=output.content_type,
        headers={"Content-Disposition": f'inline; filename="result.{output.extension}"'},
    )


@router.get("/examples", summary="DALI examples")
async def examples() -> Response:
    """Example queries in the XHTML+RDFa form DALI specifies."""
    return Response(examples_document(), media_type="application/xhtml+xml")


@router.get("", summary="TAP service landing page", include_in_schema=False)
@router.get("/", summary="TAP service landing page", include_in_schema=False)
async def landing(request: Request, context: Context) -> HTMLResponse:
    """A small page saying what the service is and how to use it."""
    base = escape(context.base_url(request))
    links = "".join(
        f'<li><a href="{base}/{path}">{path}</a> — {escape(what)}</li>'
        for path, what in (
            ("capabilities", "VOSI capabilities (TAPRegExt)"),
            ("availability", "VOSI availability"),
            ("tables", "VOSI tables (tableset)"),
            ("examples", "DALI example queries"),
            ("sync?LANG=ADQL&QUERY=SELECT+TOP+5+*+FROM+TAP_SCHEMA.tables", "a sync query"),
        )
    )
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>skyvault TAP</title></head>"
        "<body><h1>skyvault TAP service</h1>"
        f"<p>A TAP 1.1 service answering ADQL 2.1 queries at <code>{base}</code>.</p>"
        f"<ul>{links}</ul>"
        "<h2>Connect</h2>"
        f'<pre>import pyvo\nservice = pyvo.dal.TAPService("{base}")\n'
        'service.run_sync("SELECT TOP 10 * FROM TAP_SCHEMA.tables").to_table()</pre>'
        f"<p>TOPCAT: VO → Table Access Protocol (TAP) Query → TAP URL <code>{base}</code>.</p>"
        "</body></html>"
    )
    return HTMLResponse(page)
