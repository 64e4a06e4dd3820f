"""How much memory running queries may hold, and how much one query needs.

A query's memory has two parts:

* what DuckDB holds for sorts, hash joins, aggregates and caches: bounded per process by the
  shared database's ``memory_limit`` (:class:`~skyvault.engine.connection.Sandbox`), which
  all the queries of the process share (DuckDB fails a query that would need more with
  :class:`~skyvault.errors.QueryError`);
* what streaming the result holds outside DuckDB's accounting: DuckDB's buffer of result
  chunks waiting to be fetched, the Arrow record batch being read, and the writer's copies
  of it (encoded rows, base64, compressed pages) until they are sent.  Results stream, so
  this is bounded by the batch size, not by the result's size: :func:`batch_rows` sizes
  batches by the width of a row, and :func:`estimate_stream_bytes` is what a query reserves.

:class:`MemoryBudget` is the pool the second part comes from.  Each query reserves its
estimate before it starts and gives it back when its result is sent (or fails, or is
abandoned).  A query whose estimate does not fit waits, first come first served, until
enough is given back or its deadline passes (:class:`~skyvault.errors.ServerBusy`) or it is
cancelled.  A query estimated at more than the whole budget is not refused forever: it runs
alone, once nothing else holds any of the budget.
"""

from __future__ import annotations

import itertools
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Protocol

from skyvault.catalog.metadata import ColumnMeta
from skyvault.errors import QueryCancelled, ServerBusy

__all__ = [
    "BATCH_BYTES",
    "MAX_BATCH_ROWS",
    "MemoryBudget",
    "Reservation",
    "batch_rows",
    "estimate_stream_bytes",
    "row_bytes",
]

MAX_BATCH_ROWS = 65_536
"""Most rows in one record batch (narrow results)."""
MIN_BATCH_ROWS = 1_024
"""Fewest rows in one record batch (very wide results)."""
BATCH_BYTES = 8 * 1024**2
"""Target size of one record batch: wide rows make batches of fewer rows."""
STREAM_BASE_BYTES = 16 * 1024**2
"""What a streaming query holds whatever its rows: DuckDB's result buffer (10 MiB by
default), the scan's buffers, the engine's per-query state."""
WRITER_COPIES = 4
"""Copies of a batch alive while it is written: the batch, the encoded rows, their text or
compressed form, the chunk being sent."""

_FIXED_BYTES = {
    "boolean": 1,
    "bit": 1,
    "unsignedByte": 1,
    "short": 2,
    "int": 4,
    "long": 8,
    "float": 4,
    "double": 8,
    "floatComplex": 8,
    "doubleComplex": 16,
    "char": 1,
    "unicodeChar": 2,
}
_VARIABLE_ELEMENTS = 32
"""Elements assumed for a variable-size cell (``arraysize="*"``): a short string."""


def row_bytes(columns: Sequence[ColumnMeta]) -> int:
    """Estimated bytes of one result row in Arrow (values, offsets, validity)."""
    total = 0
    for column in columns:
        element = _FIXED_BYTES.get(column.datatype, 8)
        total += element * _elements(column.arraysize) + 1
    return max(total, 1)


def _elements(arraysize: str | None) -> int:
    """Elements in one cell of ``arraysize`` (``"16"``, ``"16*"``, ``"3x4"``, ``"*"``)."""
    if not arraysize:
        return 1
    count = 1
    for part in arraysize.split("x"):
        digits = part.rstrip("*")
        if digits.isdigit():
            count *= max(int(digits), 1)
        else:
            count *= _VARIABLE_ELEMENTS
    return count + (4 if arraysize.endswith("*") else 0)  # + an offset per cell


def batch_rows(width: int) -> int:
    """Rows per record batch for rows of ``width`` bytes: about :data:`BATCH_BYTES`."""
    return max(MIN_BATCH_ROWS, min(MAX_BATCH_ROWS, BATCH_BYTES // max(width, 1)))


def estimate_stream_bytes(
    columns: Sequence[ColumnMeta], maxrec: int | None, extra_bytes: int = 0
) -> int:
    """Memory a query streaming a result of ``columns`` holds outside DuckDB's limit.

    ``maxrec`` bounds the rows of a batch (a 10-row answer has no 65,536-row batch);
    ``extra_bytes`` is in-memory input the query brings (uploaded tables).
    """
    width = row_bytes(columns)
    rows = batch_rows(width)
    if maxrec is not None:
        rows = min(rows, maxrec + 1)
    return STREAM_BASE_BYTES + WRITER_COPIES * rows * width + extra_bytes


class _Cancellable(Protocol):
    @property
    def cancelled(self) -> bool: ...


class Reservation:
    """Memory reserved from a :class:`MemoryBudget`; :meth:`close` gives it back (once).

    Dropping the object without closing it gives it back too, so a path that forgets cannot
    leak budget for the life of the process.
    """

    def __init__(self, budget: MemoryBudget, amount: int, waited: float = 0.0) -> None:
        self.amount = amount
        #: Seconds the query queued for it (0 when it was granted at once).
        self.waited = waited
        self._release = weakref.finalize(self, budget._release, amount)

    @property
    def held(self) -> bool:
        return self._release.alive

    def close(self) -> None:
        self._release()

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MemoryBudget:
    """``total`` bytes shared by the queries running in this process.

    ``clock`` (seconds, monotonic) is what deadlines are compared with; ``poll`` is how often
    a waiting query looks at its cancel token.
    """

    def __init__(
        self,
        total: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        poll: float = 0.25,
    ) -> None:
        if total <= 0:
            raise ValueError(f"a memory budget must be positive, not {total}")
        self.total = total
        self._clock = clock
        self._poll = poll
        self._used = 0
        self._holders = 0
        self._queue: list[int] = []
        self._tickets = itertools.count()
        self._changed = threading.Condition()

    @property
    def used(self) -> int:
        """Bytes reserved now."""
        with self._changed:
            return self._used

    @property
    def waiting(self) -> int:
        """Queries waiting for memory now."""
        with self._changed:
            return len(self._queue)

    @property
    def running(self) -> int:
        """Reservations held now."""
        with self._changed:
            return self._holders

    def reserve(
        self,
        amount: int,
        *,
        deadline: float | None = None,
        cancel: _Cancellable | None = None,
    ) -> Reservation:
        """Reserve ``amount`` bytes, waiting (first come, first served) until they fit.

        ``deadline`` is a time on the budget's clock; when it passes before the memory is
        free, :class:`~skyvault.errors.ServerBusy` is raised.  A ``cancel`` token that is
        cancelled while waiting raises :class:`~skyvault.errors.QueryCancelled`.  An
        ``amount`` above the whole budget is granted once nothing else is reserved.
        """
        amount = max(int(amount), 0)
        queued: float | None = None
        with self._changed:
            ticket = next(self._tickets)
            self._queue.append(ticket)
            try:
                while not self._fits(ticket, amount):
                    if cancel is not None and cancel.cancelled:
                        raise QueryCancelled("the query was cancelled while it waited for memory")
                    now = self._clock()
                    queued = now if queued is None else queued
                    if deadline is not None and now >= deadline:
                        raise self._busy(amount)
                    wait = self._poll if deadline is None else min(self._poll, deadline - now)
                    self._changed.wait(wait)
                self._used += amount
                self._holders += 1
            finally:
                self._queue.remove(ticket)
                # Whoever is next in line may fit now (or may have been behind this one).
                self._changed.notify_all()
        waited = 0.0 if queued is None else max(self._clock() - queued, 0.0)
        return Reservation(self, amount, waited)

    def _fits(self, ticket: int, amount: int) -> bool:
        if self._queue[0] != ticket:
            return False
        return self._used + amount <= self.total or self._holders == 0

    def _release(self, amount: int) -> None:
        with self._changed:
            self._used -= amount
            self._holders -= 1
            self._changed.notify_all()

    def _busy(self, amount: int) -> ServerBusy:
        mib = 1024**2
        return ServerBusy(
            f"the service is at its memory limit: {self._holders} queries are streaming "
            f"results and this one (about {amount / mib:.0f} MiB) did not get its turn "
            "within the query's time limit",
            hint="retry in a minute, or submit the query as an async job",
            retry_after=30,
        )
