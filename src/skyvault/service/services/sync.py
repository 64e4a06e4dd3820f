"""A ``/sync`` query as a service: its running slot, its result, its audit line.

:class:`SyncRun` holds one sync query from the slot it takes (or waits a moment for) to the
audit line written when it ends, whichever way it ends; :func:`take_slot` takes one of the
caller's running slots,
:func:`audit_sync` writes the audit line.  The handler (:mod:`skyvault.service.handlers.tap`)
reads the request and sends the chunks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import anyio
import pyarrow as pa

from skyvault.auth import Identity
from skyvault.catalog.metadata import TableMeta
from skyvault.engine.executor import CancelToken
from skyvault.errors import QueryCancelled, SkyvaultError, UserLimitExceeded
from skyvault.service.params import TapQueryParams
from skyvault.service.services.query import QueryOutput
from skyvault.service.slots import POLL_SECONDS, SlotBusy
from skyvault.service.uws import ExecutionPhase
from skyvault.service.uws.models import Account

if TYPE_CHECKING:  # the context module reads requests (FastAPI); a service does not
    from skyvault.service.context import ServiceContext

__all__ = ["SyncRun", "audit_sync", "take_slot"]

log = logging.getLogger(__name__)


def take_slot(context: ServiceContext, identity: Identity) -> None:
    """Take one of the caller's running slots, or raise
    :class:`~skyvault.service.slots.SlotBusy` (a worker thread: the account's executing async
    jobs are read from the job database)."""
    counts = context.jobs.store.account_phase_counts(Account.of(identity))
    executing = counts.get(ExecutionPhase.EXECUTING, 0)
    context.sync.take(
        identity, context.auth.limits, executing, retry_after=context.settings.retry_after
    )


def audit_sync(
    context: ServiceContext,
    identity: Identity,
    endpoint: str,
    query: str | None,
    rows: int | None,
    started: float,
    error: str | None,
) -> None:
    """The audit line of a sync query that ended (``error``: its error code, None if it
    succeeded), with its duration since ``started`` (``time.perf_counter``)."""
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

    def take(self) -> None:
        """Take one of the caller's running slots, or raise
        :class:`~skyvault.service.slots.SlotBusy` (from a worker thread)."""
        take_slot(self.context, self.identity)
        self.holding = True

    async def wait_for_slot(self, busy: SlotBusy) -> None:
        """Wait up to ``sync_slot_wait`` s for :meth:`take` to get a slot (tried again each
        time one of the caller's queries ends); the 429 of ``busy`` (saying how long it
        waited) when none came, :class:`~skyvault.errors.QueryCancelled` when the client
        went away."""
        context = self.context
        wait = context.settings.sync_slot_wait
        deadline = time.monotonic() + wait
        with context.sync.waiting(self.identity, busy) as woken:
            while (remaining := deadline - time.monotonic()) > 0:
                woken.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), min(remaining, POLL_SECONDS))
                if self.gone:
                    raise QueryCancelled("the client went away; the query was cancelled")
                try:
                    await anyio.to_thread.run_sync(self.take)
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

    def start(
        self,
        params: TapQueryParams,
        uploads: Sequence[tuple[TableMeta, pa.Table]],
        first_bytes: int,
    ) -> list[bytes]:
        """Take the slot (unless held), start the query over the caller's visible tables
        and make its first chunks, up to ``first_bytes`` (:meth:`first_chunks`; from a worker
        thread: one call does all of it, as the handler's one hand-off)."""
        if not self.holding:
            self.take()
        tables = self.context.visible_tables(self.identity)
        self.output = self.context.queries.run(
            params,
            tables=tables,
            uploads=uploads,
            cancel=self.token,
            views=self.context.views(tables),
            base_url=self.context.public_base_url(),
        )
        return self.first_chunks(first_bytes)

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
            audit_sync(
                self.context, self.identity, self.endpoint, self.query, rows, self.started, error
            )
