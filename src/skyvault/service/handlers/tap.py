"""TAP handlers: the landing page, ``/sync`` and ``/examples``.

``/sync`` reads the request (:func:`skyvault.service.params.read_form`), runs the query as a
:class:`~skyvault.service.services.sync.SyncRun` (slot, result, audit line) in a worker
thread, and sends its chunks; a client that goes away cancels it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import logging
import queue
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Annotated, Any, TypeVar

import anyio
import pyarrow as pa
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from skyvault.auth import Identity
from skyvault.catalog.metadata import TableMeta
from skyvault.errors import QueryCancelled, SkyvaultError, UsageError
from skyvault.service.context import ServiceContext, get_context
from skyvault.service.handlers import GetHeadRouter
from skyvault.service.params import (
    TapQueryParams,
    collect_params,
    read_form,
    tap_query_params,
)
from skyvault.service.security import CallerDep, IdentityDep, current_identity
from skyvault.service.services import pages
from skyvault.service.services.examples import examples_document
from skyvault.service.services.sync import SyncRun, audit_sync
from skyvault.service.slots import SlotBusy
from skyvault.service.uploads import parse_uploads

__all__ = ["QueryResponse", "router", "run_sync", "serve_sync"]

log = logging.getLogger(__name__)

router = GetHeadRouter()

T = TypeVar("T")

Context = Annotated[ServiceContext, Depends(get_context)]


#: A result up to this size is made completely in the request's one worker-thread call and
#: sent as a plain response: for the common small answer (a cone) that saves the thread
#: hand-offs and the disconnect watcher of streaming, which cost more than the query.
EAGER_BYTES = 256 * 1024

#: A sync query's start listens for the client going away once it has taken this long
#: (seconds): a cone is over long before, and a client gone is noticed this much later.
WATCH_AFTER_S = 0.02

#: Worker threads of sync queries (as many as anyio's default limit for worker threads).
SYNC_THREADS = 40


class _SyncThreads:
    """Threads for sync queries: up to ``limit``, started when none is idle, kept.

    Unlike a ``ThreadPoolExecutor``, a thread does nothing after a call but wait for the
    next: the call hands its result to the event loop as its last act, so the loop, woken
    by it, finds the GIL free instead of waiting for the pool's bookkeeping."""

    def __init__(self, limit: int) -> None:
        self._calls: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._started = 0
        self._limit = limit
        self._lock = threading.Lock()

    def submit(self, call: Callable[[], None]) -> None:
        """Run ``call`` in one of the threads; it must call :meth:`idle` before its last
        act."""
        self._calls.put(call)
        if self._idle.acquire(blocking=False):
            return
        with self._lock:
            if self._started < self._limit:
                self._started += 1
                threading.Thread(
                    target=self._serve, name=f"skyvault-sync_{self._started}", daemon=True
                ).start()

    def idle(self) -> None:
        """The calling thread is about to wait for another call."""
        self._idle.release()

    def _serve(self) -> None:
        while True:
            call = self._calls.get()
            try:
                call()
            except BaseException:  # a call settles its own failures; never lose the thread
                log.exception("a sync query's thread call failed")


@functools.cache
def _pool() -> _SyncThreads:
    return _SyncThreads(SYNC_THREADS)


async def _in_thread(fn: Callable[[], T]) -> T:
    """``fn()`` in a worker thread.

    One call to :class:`_SyncThreads`, settled on the loop with one
    ``call_soon_threadsafe``: a fifth of what ``run_in_threadpool`` (anyio's capacity
    limiter and cancel scopes) costs, and less than ``loop.run_in_executor`` (a second
    future chained to the pool's), which for a cone is a measurable part of the request.
    As with anyio, a cancelled caller still waits for ``fn`` to return, so a query that took
    a slot is never left running unowned.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()
    run = contextvars.copy_context().run
    pool = _pool()

    def call() -> None:
        try:
            result = run(fn)
        except BaseException as exc:
            pool.idle()
            _settle_soon(loop, done, None, exc)
        else:
            pool.idle()
            _settle_soon(loop, done, result, None)

    pool.submit(call)
    try:
        return await asyncio.shield(done)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await done
        raise


def _settle_soon(
    loop: asyncio.AbstractEventLoop,
    done: asyncio.Future[T],
    result: T | None,
    exc: BaseException | None,
) -> None:
    """Settle ``done`` with ``result`` or ``exc`` on its loop (from a worker thread)."""

    def settle() -> None:
        if done.done():
            return
        if exc is not None:
            done.set_exception(exc)
        else:
            done.set_result(result)  # type: ignore[arg-type]

    if not loop.is_closed():
        loop.call_soon_threadsafe(settle)


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
    context.base_url(request)  # noted: the DataLink URLs of ObsCore rows are under it
    settings = context.settings
    endpoint = request.scope["path"]  # request.url.path, without building the URL
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
            if "DEST" in params:  # not ignored: the caller expects a table
                raise UsageError(
                    "DEST (save the result as a table) works only for async jobs",
                    hint="POST the query to /async with DEST, or leave DEST out",
                )
            if "UPLOAD" in params or files:
                uploads = await run_in_threadpool(parse_uploads, params, files, settings)
            else:
                uploads = []
        finally:
            if form is not None:
                await form.close()
    except SkyvaultError as exc:
        audit_sync(context, identity, endpoint, query, None, started, exc.code)
        raise
    return await run_sync(request, identity, tap, uploads, started)


async def run_sync(
    request: Request,
    identity: Identity,
    tap: TapQueryParams,
    uploads: Sequence[tuple[TableMeta, pa.Table]],
    started: float,
) -> Response:
    """Run the checked query ``tap`` as a :class:`SyncRun` and answer with its result (a
    small one whole, a large one streamed); what ``/sync`` and SIA's ``{query}`` share."""
    context = get_context(request)
    endpoint = request.scope["path"]  # request.url.path, without building the URL
    sync = SyncRun(context, identity, endpoint, tap.query, started)
    start = functools.partial(sync.start, tap, uploads, EAGER_BYTES)

    async def work() -> list[bytes]:
        try:
            return await _in_thread(start)
        except SlotBusy as busy:
            await sync.wait_for_slot(busy)
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


async def serve_sync(
    scope: Scope,
    receive: Receive,
    send: Send,
    handlers: Mapping[Any, Callable[[Request, Any], Response | Awaitable[Response]]],
) -> None:
    """``/sync`` as a plain ASGI application: what FastAPI's route does for it, without the
    router and the middleware stack around it (a third of a cone's time on the event loop).

    The same handler (:func:`sync_query`) and identity (:func:`current_identity`) run, and
    an error becomes the response the app's own handler for it makes, as FastAPI's
    exception middleware would; anything unforeseen gets the app's 500 document and is
    raised again, as Starlette's server-error middleware does, so the server logs it.
    ``scope["app"]`` must be the application.
    """
    request = Request(scope, receive, send)
    try:
        identity = await current_identity(request)
        response = await sync_query(request, identity)
    except Exception as exc:
        unforeseen = not isinstance(exc, SkyvaultError | StarletteHTTPException)
        handler = next(handlers[k] for k in type(exc).__mro__ if k in handlers)
        made = handler(request, exc)
        response = await made if inspect.isawaitable(made) else made
        if unforeseen:
            await response(scope, receive, send)
            raise
    await response(scope, receive, send)


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _unless_gone(receive: Receive, sync: SyncRun, work: Callable[[], Awaitable[T]]) -> T:
    """``await work()``; if the client disconnects meanwhile, the query is abandoned
    (``work`` then fails with :class:`QueryCancelled` within a moment).

    The listener is a plain asyncio task (an anyio task group cost ten times as much, as
    much as the rest of a cone's time on the event loop), started only once ``work`` has
    taken :data:`WATCH_AFTER_S`: most queries end sooner, and then neither the task nor its
    steps on the loop (while the query's thread wants the GIL) are paid for."""

    async def watch() -> None:
        await _wait_for_disconnect(receive)
        sync.abandon()

    watchers: list[asyncio.Future[None]] = []
    loop = asyncio.get_running_loop()
    later = loop.call_later(WATCH_AFTER_S, lambda: watchers.append(asyncio.ensure_future(watch())))
    try:
        return await work()
    finally:
        later.cancel()
        for watcher in watchers:
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
