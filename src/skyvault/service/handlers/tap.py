"""TAP handlers: the landing page, ``/sync`` and ``/examples``."""

from __future__ import annotations

from html import escape
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from skyvault.service.context import ServiceContext, get_context
from skyvault.service.params import collect_params, tap_query_params
from skyvault.service.services.examples import examples_document

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


@router.api_route("/sync", methods=["GET", "POST"], summary="TAP synchronous query")
async def sync_query(request: Request, context: Context) -> Response:
    """Run a TAP query and stream its result (DALI-sync)."""
    settings = context.settings
    params = tap_query_params(
        collect_params(await request_pairs(request)),
        maxrec_default=settings.maxrec_default,
        maxrec_limit=settings.maxrec_limit,
    )
    started = await run_in_threadpool(context.queries.run, params)
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
