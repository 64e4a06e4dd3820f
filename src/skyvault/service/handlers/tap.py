"""TAP handlers: the landing page, ``/sync`` and ``/examples``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from html import escape
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.types import Message, Receive

from skyvault.auth import Identity
from skyvault.errors import LimitExceeded, SkyvaultError
from skyvault.service.context import ServiceContext, get_context
from skyvault.service.params import collect_params, tap_query_params
from skyvault.service.security import CallerDep
from skyvault.service.services.examples import examples_document
from skyvault.service.services.query import QueryOutput
from skyvault.service.uploads import InlineContent, parse_uploads
from skyvault.service.uws import ExecutionPhase

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
async def sync_query(request: Request, context: Context, caller: CallerDep) -> Response:
    """Run a TAP query over the caller's visible tables and stream its result (DALI-sync).

    The query holds one of the caller's running-job slots until its result is sent; the
    audit log gets one line when it ends (or fails).
    """
    settings = context.settings
    identity = caller.identity
    endpoint = request.url.path
    started = time.perf_counter()
    query: str | None = None
    try:
        pairs, files, form = await read_form(request, settings.max_upload_bytes)
        try:
            params = collect_params(pairs)
            queries = params.get("QUERY")
            query = queries[-1] if queries else None
            tap = tap_query_params(
                params, maxrec_default=settings.maxrec_default, maxrec_limit=settings.maxrec_limit
            )
            uploads = await run_in_threadpool(parse_uploads, params, files, settings)
        finally:
            if form is not None:
                await form.close()
        await run_in_threadpool(_take_slot, context, identity)
    except SkyvaultError as exc:
        _audit_sync(context, identity, endpoint, query, None, started, exc.code)
        raise
    try:
        run = await run_in_threadpool(
            lambda: context.queries.run(tap, tables=caller.tables, uploads=uploads)
        )
    except BaseException as exc:
        context.sync.finish(identity)
        code = exc.code if isinstance(exc, SkyvaultError) else "internal"
        _audit_sync(context, identity, endpoint, tap.query, None, started, code)
        raise
    output = run.output
    return StreamingResponse(
        _tracked(context, identity, endpoint, tap.query, run, started),
        media_type=output.content_type,
        headers={"Content-Disposition": f'inline; filename="result.{output.extension}"'},
    )


def _take_slot(context: ServiceContext, identity: Identity) -> None:
    counts = context.jobs.store.owner_phase_counts(identity.user)
    executing = counts.get(ExecutionPhase.EXECUTING, 0)
    context.sync.start(identity, context.auth.limits, executing)


def _audit_sync(
    context: ServiceContext,
    identity: Identity,
    endpoint: str,
    query: str | None,
    rows: int | None,
    started: float,
    error: str | None,
) -> None:
    context.auth.audit.record(
        identity,
        endpoint,
        query=query,
        rows=rows,
        duration_s=time.perf_counter() - started,
        outcome="ok" if error is None else "error",
        error=error,
    )


def _tracked(
    context: ServiceContext,
    identity: Identity,
    endpoint: str,
    query: str,
    run: QueryOutput,
    started: float,
) -> Iterator[bytes]:
    """The result's chunks; when they end the running slot is given back and the query
    audited with its row count."""
    error: str | None = None
    try:
        yield from run.chunks
    except SkyvaultError as exc:
        error = exc.code
        raise
    except GeneratorExit:
        error = "query.cancelled"
        raise
    except BaseException:
        error = "internal"
        raise
    finally:
        context.sync.finish(identity)
        _audit_sync(context, identity, endpoint, query, run.result.rows, started, error)


@router.get("/examples", summary="DALI examples")
async def examples(caller: CallerDep) -> Response:
    """Example queries in the XHTML+RDFa form DALI specifies: only those whose tables the
    caller may read."""
    document = examples_document(visible=caller.table_names)
    return Response(document, media_type="application/xhtml+xml")


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
