"""Running a TAP query: what both the sync endpoint and (later) async workers call.

:class:`QueryService` ties the archive, the TAP_SCHEMA cache and the result writers
together.  :meth:`QueryService.run` compiles and starts the query, reads the first batch of
rows before returning (so errors found at the start, the common case, become a proper error
response instead of a broken 200), and returns a :class:`QueryOutput` whose ``chunks`` are
the encoded result.  For formats that need the whole result before their first byte (FITS,
which spools it to disk) the first chunk is produced here, so every query error is raised
by ``run``.  Closing ``chunks`` (a client gone away) closes the writer and the result.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import pyarrow as pa

from skyvault.catalog.metadata import TableMeta
from skyvault.catalog.tap_schema import TapSchemaCache
from skyvault.catalog.views import View, with_views
from skyvault.config import Settings
from skyvault.engine.archive import Archive
from skyvault.engine.budget import MemoryBudget, Reservation, estimate_stream_bytes
from skyvault.engine.executor import CancelToken, QueryResult
from skyvault.engine.plan import QueryPlan
from skyvault.errors import AdqlSemanticError
from skyvault.formats.output import OutputFormat, WriteOptions
from skyvault.images.obstap import datalink_services
from skyvault.service.params import TapQueryParams
from skyvault.service.uploads import with_upload_hint

__all__ = ["BatchSink", "QueryOutput", "QueryService"]

log = logging.getLogger(__name__)

TAP_STANDARD_ID = "ivo://ivoa.net/std/TAP"


@dataclass
class QueryOutput:
    """A started query: the format, the encoded chunks, and the result being read."""

    output: OutputFormat
    chunks: Iterator[bytes]
    result: QueryResult
    stats: dict[str, float] = field(default_factory=dict)

    def close(self) -> None:
        """Stop the query, if it has not ended, and give its memory back (idempotent)."""
        close = getattr(self.chunks, "close", None)
        if close is not None:
            close()


T = TypeVar("T")


class BatchSink(Protocol):
    """Where a query's rows also go, batch by batch, as its result is written (the table
    a ``DEST`` job saves into, :mod:`skyvault.workspace.save`)."""

    def write(self, batch: pa.RecordBatch) -> None: ...


def _tee(batches: Iterator[pa.RecordBatch], sink: BatchSink) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        sink.write(batch)
        yield batch


class _Started(Iterator[T]):
    """``items``, with the first one read now when ``start`` (so failures at the start raise
    here).  Closing it, or ``items`` ending or failing, closes ``items`` and ``also`` (whether
    iteration began or not): a writer that never started, or stopped early, does not close
    the rows it was given."""

    def __init__(
        self, items: Iterator[T], *, start: bool = False, also: Sequence[object] = ()
    ) -> None:
        self._items = items
        self._also = also
        self._first: list[T] = []
        if start:
            with contextlib.suppress(StopIteration):
                self._first.append(self._next())

    def _next(self) -> T:
        try:
            return next(self._items)
        except BaseException:
            self.close()
            raise

    def __next__(self) -> T:
        if self._first:
            return self._first.pop()
        return self._next()

    def close(self) -> None:
        self._first.clear()
        for iterator in (self._items, *self._also):
            close = getattr(iterator, "close", None)
            if close is not None:
                close()


class QueryService:
    """TAP queries over an archive.

    Parameters
    ----------
    archive
        The catalogues.
    settings
        Limits (time-out) and the spool directory of FITS results.
    tap_schema
        The TAP_SCHEMA cache shared with the VOSI tables endpoint.
    budget
        The memory the queries of this process may hold while their results stream (default:
        ``settings.stream_memory_budget()``); each query reserves its estimate from it
        before it starts, waiting while it does not fit, and gives it back once its result
        is sent, has failed, or was abandoned.
    """

    def __init__(
        self,
        archive: Archive,
        settings: Settings,
        tap_schema: TapSchemaCache,
        budget: MemoryBudget | None = None,
    ) -> None:
        self.archive = archive
        self.settings = settings
        self.tap_schema = tap_schema
        self.budget = budget or MemoryBudget(settings.stream_memory_budget())

    def tap_schema_tables(self, tables: Sequence[TableMeta]) -> list[tuple[TableMeta, pa.Table]]:
        """TAP_SCHEMA describing ``tables`` (the caller's visible tables), from the cache."""
        return self.tap_schema.get(tables)

    def run(
        self,
        params: TapQueryParams,
        *,
        tables: Sequence[TableMeta],
        cancel: CancelToken | None = None,
        uploads: Sequence[tuple[TableMeta, pa.Table]] = (),
        timeout: float | None = None,
        views: Sequence[View] = (),
        base_url: str | None = None,
        sink: BatchSink | None = None,
    ) -> QueryOutput:
        """Start the query ``params`` describe; see the module docstring.

        ``tables`` are the stored tables the caller may read (``AccessPolicy.visible_tables``,
        computed once per request): the only catalogue names resolve against, and what
        TAP_SCHEMA describes.  A table not among them does not exist for this query.
        ``uploads`` are the request's ``TAP_UPLOAD`` tables, from
        :func:`skyvault.service.uploads.parse_uploads`.  ``timeout`` (seconds) is the
        query's time limit, streaming included; None: the sync one (``query_timeout``).
        ``cancel`` stops the query from another thread (an ABORT, a client gone).
        ``views`` are the views over stored tables the caller may query as well
        (:mod:`skyvault.catalog.views`: ``ivoa.ObsCore``), described in TAP_SCHEMA too.
        ``base_url`` (the service's public URL) is where the DataLink service descriptor of
        a result with ``obs_publisher_did`` columns points (None: no descriptor).
        ``sink`` gets every batch of rows as the result is written (a saving job's table).

        Once compiled, the query waits for its share of the memory budget (time that
        counts against its time limit); the share is given back when ``chunks`` ends or is
        closed.

        Raises
        ------
        SkyvaultError
            Whatever the query's compilation or first rows raise (ADQL errors, time-out...);
            :class:`~skyvault.errors.ServerBusy` when its memory is not free in time.
        """
        limit = self.settings.query_timeout if timeout is None else timeout
        try:
            described = with_views(tables, views)
            plan = self.archive.plan(
                params.query,
                list(tables),
                [*self.tap_schema_tables(described), *uploads],
                views,
            )
        except AdqlSemanticError as exc:
            raise with_upload_hint(exc, uploads) from None
        upload_bytes = sum(table.nbytes for _, table in uploads)
        need = estimate_stream_bytes(plan.columns, params.maxrec, upload_bytes)
        deadline = time.monotonic() + limit
        reservation = self.budget.reserve(need, deadline=deadline, cancel=cancel)
        try:
            # Time spent queueing counts against the query's time limit.
            return self._start(
                params, plan, reservation, limit - reservation.waited, cancel, base_url, sink
            )
        except BaseException:
            reservation.close()
            raise

    def _start(
        self,
        params: TapQueryParams,
        plan: QueryPlan,
        reservation: Reservation,
        timeout: float,
        cancel: CancelToken | None,
        base_url: str | None = None,
        sink: BatchSink | None = None,
    ) -> QueryOutput:
        result = self.archive.executor.execute(
            plan, maxrec=params.maxrec, timeout=max(timeout, 0.001), cancel=cancel
        )
        rows = result.batches if sink is None else _tee(result.batches, sink)
        batches = _Started(rows, start=True, also=[] if sink is None else [result.batches])
        infos: list[tuple[str, str, str | None]] = [
            ("standardID", params.standard_id, None),
            ("QUERY", params.query, None),
            ("MAXREC", str(params.maxrec), None),
        ]
        chunks = params.output.write(
            batches,
            result.columns,
            result.schema,
            lambda: result.overflow,
            infos,
            WriteOptions(
                self.settings.spool_dir,
                self.settings.fits_max_spool_bytes,
                (*params.services, *datalink_services(result.columns, base_url)),
            ),
        )
        chunks = _Started(chunks, start=not params.output.streams, also=[batches, reservation])
        return QueryOutput(params.output, chunks, result, result.stats)
