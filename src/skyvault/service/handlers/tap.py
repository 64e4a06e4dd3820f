"""TAP handlers: the landing page, ``/sync`` and ``/examples``."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import anyio
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message, Receive, Scope, Send

from skyvault.auth import Identity
from skyvault.engine.executor import CancelToken
from skyvault.errors import LimitExceeded, QueryCancelled, SkyvaultError, UsageError
from skyvault.service.context import ServiceContext, get_context
from skyvault.service.handlers import GetHeadRouter
from skyvault.service.params import collect_params, tap_query_params
from skyvault.service.quota import UserLimitExceeded
from skyvault.service.security import CallerDep, IdentityDep
from skyvault.service.services import pages
from skyvault.service.services.examples import examples_document
from skyvault.service.services.query import QueryOutput
from skyvault.service.slots import POLL_SECONDS, SlotBusy
from skyvault.service.uploads import InlineContent, parse_uploads
from skyvault.service.uws import ExecutionPhase
from skyvault.service.uws.models import Account

__all__ = ["QueryResponse", "SyncRun", "router"]

log = logging.getLogger(__name__)

router = GetHeadRouter()

T = TypeVar("T")

Context = Annotated[ServiceContext, Depends(get_context)]


#: Starlette's form limits (``Request.form`` defaults): one field, fields and files.
FORM_FIELD_BYTES = 1024 * 1024
FORM_MAX_FIELDS = 1000


async def _form(request: Request) -> FormData:
    """``request``'s form body; a body over the form limits, or not a form, is the
    caller's mistake said in skyvault's words (Starlette says "Part exceeded maximum size
    of 1024KB.")."""
    try:
        return await request.form()
    except StarletteHTTPException as exc:
        if exc.status_code != 400:
            raise
        detail = str(exc.detail).lower()
        if "maximum size" in detail:
            raise UsageError(
                f"a parameter of this request is longer than {FORM_FIELD_BYTES // 1024**2} MB "
                "(the most one form field may hold, a QUERY included)",
                hint="shorten the query: put long lists of values in a table, upload it "
                "(UPLOAD) and join it",
            ) from None
        if "too many" in detail:
            raise UsageError(
                f"the request has more than {FORM_MAX_FIELDS} form fields or files",
                hint="send each parameter once, and at most the uploads the query names",
            ) from None
        raise UsageError(
            "the request body is not a readable form",
            hint="POST the parameters as application/x-www-form-urlencoded or "
            "multipart/form-data (what curl -d / -F, pyvo and TOPCAT send)",
        ) from None


async def request_pairs(request: Request) -> list[tuple[str, str]]:
    """The (name, value) pairs of the query string and, for POST, the form body."""
    pairs = list(request.query_params.multi_items())
    if request.method == "POST":
        form = await _form(request)
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
    form = await _form(Request(request.scope, _capped_receive(request, limit)))
    files: dict[str, InlineContent] = {}
    for name, value in form.multi_items():
        if isinstance(value, str):
            pairs.append((name, value))
        elif isinstance(value, UploadFile):
            files.setdefault(name, value.file)
    return pairs, files, form


#: A result up to this size is made completely in the request's one worker-thread call and
#: sent as a plain response: for the common small answer (a cone) that saves the thread
#: hand-offs and the disconnect watcher of streaming, which cost more than the query.
EAGER_BYTES = 256 * 1024

#: Worker threads of sync queries (as many as anyio's default limit for worker threads).
SYNC_THREADS = 40


@functools.cache
def _pool() -> concurrent.futures.ThreadPoolExecutor:
    return concurrent.futures.ThreadPoolExecutor(SYNC_THREADS, thread_name_prefix="skyvault-sync")


async def _in_thread(fn: Callable[[], T]) -> T:
    """``fn()`` in a worker thread.

    The event loop's own executor hand-off: a fifth of what ``run_in_threadpool`` (anyio's
    capacity limiter and cancel scopes) costs, which for a cone is a measurable part of the
    request.  As with anyio, a cancelled caller still waits for ``fn`` to return, so a
    query that took a slot is never left running unowned.
    """
    loop = asyncio.get_running_loop()
    future = loop.run_in_executor(_pool(), contextvars.copy_context().run, fn)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await future
        raise


@router.api_route("/sync", methods=["GET", "POST"], summary="TAP synchronous query")
async def sync_query(request: Request, identity: IdentityDep) -> Response:
    """Run a TAP query over the caller's visible tables and stream its result (DALI-sync).

    The query holds one of the caller's running slots until its result is sent (a caller
    at ``max_running`` waits up to ``sync_slot_wait`` s for one of their queries to end,
    then gets 429 with ``Retry-After``; see :mod:`skyvault.service.slots`); the audit log
    gets one line when it ends (or fails).  A client that goes away stops the
    query at once, while it starts as well as while its rows are sent.

    Taking the slot, listing the caller's visible tables, compiling, the first rows and, for
    a small result, all of it happen in one worker-thread call.  (The context is not a
    ``Depends``: FastAPI runs a plain-function dependency in a worker thread, one more
    hand-off per query.)
    """
    context = get_context(request)
    settings = context.settings
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
            if "UPLOAD" in params or files:
                uploads = await run_in_threadpool(parse_uploads, params, files, settings)
            else:
                uploads = []
        finally:
            if form is not None:
                await form.close()
    except SkyvaultError as exc:
        _audit_sync(context, identity, endpoint, query, None, started, exc.code)
        raise
    sync = SyncRun(context, identity, endpoint, tap.query, started)

    def take() -> None:
        _take_slot(context, identity)
        sync.holding = True

    def start() -> list[bytes]:
        if not sync.holding:
            take()
        tables = context.visible_tables(identity)
        sync.output = context.queries.run(tap, tables=tables, uploads=uploads, cancel=sync.token)
        return sync.first_chunks(EAGER_BYTES)

    async def work() -> list[bytes]:
        try:
            return await _in_thread(start)
        except SlotBusy as busy:
            await _wait_for_slot(context, sync, busy, take)
        return await _in_thread(start)

    try:
        chunks = await _unless_gone(request.receive, sync, work)
    except BaseException as exc:
        code = exc.code if isinstance(exc, SkyvaultError) else "internal"
        sync.end(code)
        if sync.gone and isinstance(exc, Exception):
            # Whatever the interrupted query raised: nobody is left to tell.
            raise QueryCancelled("the client went away; the query was cancelled") from None
        raise
    assert sync.output is not None
    output = sync.output.output
    headers = {"Content-Disposition": f'inline; filename="result.{output.extension}"'}
    if sync.finished:
        return Response(b"".join(chunks), media_type=output.content_type, headers=headers)
    return QueryResponse(sync, chunks, media_type=output.content_type, headers=headers)


def _take_slot(context: ServiceContext, identity: Identity) -> None:
    """Take one of the caller's running slots, or raise :class:`SlotBusy` (a worker thread:
    the account's executing async jobs are read from the job database)."""
    counts = context.jobs.store.account_phase_counts(Account.of(identity))
    executing = counts.get(ExecutionPhase.EXECUTING, 0)
    context.sync.take(
        identity, context.auth.limits, executing, retry_after=context.settings.retry_after
    )


async def _wait_for_slot(
    context: ServiceContext, sync: SyncRun, busy: SlotBusy, take: Callable[[], None]
) -> None:
    """Wait up to ``sync_slot_wait`` s for ``take()`` to get a slot; the 429 of ``busy``
    (saying how long it waited) when none came, QueryCancelled when the client went away."""
    wait = context.settings.sync_slot_wait
    deadline = time.monotonic() + wait
    with context.sync.waiting(sync.identity, busy) as woken:
        while (remaining := deadline - time.monotonic()) > 0:
            woken.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), min(remaining, POLL_SECONDS))
            if sync.gone:
                raise QueryCancelled("the client went away; the query was cancelled")
            try:
                await run_in_threadpool(take)
                return
            except SlotBusy as again:
                busy = again
    refusal = busy.refusal
    if wait > 0:
        raise UserLimitExceeded(
            f"{refusal.message}; none ended in the {wait:g} s this query waited",
            hint=refusal.hint,
            retry_after=refusal.retry_after,
        )
    raise refusal


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


class SyncRun:
    """One sync query from its running slot to its audit line.

    :meth:`end` gives the slot back, closes the result and writes the audit line, once,
    whichever way the query ends; :meth:`abandon` (the client went away) cancels the query
    through :attr:`token`, so DuckDB stops at once instead of when the next chunk would be
    sent, and the query is audited as ``query.cancelled``.
    """

    def __init__(
        self,
        context: ServiceContext,
        identity: Identity,
        endpoint: str,
        query: str,
        started: float,
    ) -> None:
        self.context = context
        self.identity = identity
        self.endpoint = endpoint
        self.query = query
        self.started = started
        self.token = CancelToken()
        self.output: QueryOutput | None = None
        #: The running slot is taken (and :meth:`end` gives it back).
        self.holding = False
        #: Every chunk has been made (and :meth:`end` has run).
        self.finished = False
        #: The client went away before the whole result was sent.
        self.gone = False
        self._sent = False
        self._ended = False
        self._lock = threading.Lock()

    def abandon(self) -> None:
        """The client is gone: stop the query (safe from any thread, at any time)."""
        with self._lock:
            if self._ended or self._sent:
                return
            self.gone = True
        self.token.cancel()

    def next_chunk(self) -> bytes | None:
        """The next chunk of the result, None at its end (call from a worker thread, one
        call at a time)."""
        assert self.output is not None
        try:
            return next(self.output.chunks)
        except StopIteration:
            with self._lock:
                self._sent = not self.gone
            self.end(None)
            self.finished = True
            return None
        except SkyvaultError as exc:
            self.end(exc.code)
            raise
        except BaseException:
            self.end("internal")
            raise

    def first_chunks(self, size: int) -> list[bytes]:
        """Chunks from the start until they pass ``size`` bytes or the result ends
        (:attr:`finished` then says so); from a worker thread, as :meth:`next_chunk`."""
        chunks: list[bytes] = []
        made = 0
        while made < size and (chunk := self.next_chunk()) is not None:
            chunks.append(chunk)
            made += len(chunk)
        return chunks

    def end(self, error: str | None) -> None:
        """Give the slot back, close the result, audit (the first call only; not while
        :meth:`next_chunk` runs).  A client gone makes the outcome ``query.cancelled``."""
        with self._lock:
            if self._ended:
                return
            self._ended = True
            if self.gone:
                error = QueryCancelled.code
        rows: int | None = None
        try:
            if self.output is not None:
                rows = self.output.result.rows
                close = getattr(self.output.chunks, "close", None)
                if close is not None:
                    close()
        except Exception:
            log.exception("closing a sync result failed")
        finally:
            if self.holding:
                self.context.sync.release(self.identity)
            _audit_sync(
                self.context, self.identity, self.endpoint, self.query, rows, self.started, error
            )


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _unless_gone(receive: Receive, sync: SyncRun, work: Callable[[], Awaitable[T]]) -> T:
    """``await work()``; if the client disconnects meanwhile, the query is abandoned
    (``work`` then fails with :class:`QueryCancelled` within a moment).

    The listener is a plain asyncio task, cancelled once ``work`` ends: an anyio task group
    cost ten times as much, as much as the rest of a cone's time on the event loop."""

    async def watch() -> None:
        await _wait_for_disconnect(receive)
        sync.abandon()

    watcher = asyncio.ensure_future(watch())
    try:
        return await work()
    finally:
        watcher.cancel()


class QueryResponse(StreamingResponse):
    """The chunks of a started sync query, each made in a worker thread.

    While they are sent, a second task listens for the client's disconnection and then
    abandons the query (:meth:`SyncRun.abandon`): the chunk being made fails at once, and the
    slot is given back.  Starlette's own streaming would notice only once that chunk is
    ready, which for a slow query can be many minutes, or never for a generator nobody
    closes.
    """

    def __init__(
        self, sync: SyncRun, first: list[bytes], *, media_type: str, headers: dict[str, str]
    ) -> None:
        super().__init__(iter(()), media_type=media_type, headers=headers)
        self.sync = sync
        self.first = first

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sync = self.sync
        failure: list[Exception] = []

        async def watch() -> None:
            await _wait_for_disconnect(receive)
            sync.abandon()
            group.cancel_scope.cancel()

        try:
            async with anyio.create_task_group() as group:
                group.start_soon(watch)
                try:
                    await self._send_all(send)
                except Exception as exc:
                    failure.append(exc)
                finally:
                    group.cancel_scope.cancel()
        finally:
            # Not sent to the end (cancelled, or a send failed): the client is gone.
            sync.abandon()
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(sync.end, QueryCancelled.code)
        if failure and not sync.gone:
            raise failure[0]

    async def _send_all(self, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        for made in self.first:
            await send({"type": "http.response.body", "body": made, "more_body": True})
        while (chunk := await anyio.to_thread.run_sync(self.sync.next_chunk)) is not None:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


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
    return HTMLResponse(pages.landing_page(context.base_url(request)))
