"""How every writer reads a result: batches until the source fails, then how it ended.

DALI says an error after output has started is reported inside the document (a trailing
QUERY_STATUS=ERROR), so writers must not let a skyvault error escape mid-stream; and MAXREC
overflow is only known once the batches are exhausted.  :class:`ResultStream` holds both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Protocol, TypeVar

import pyarrow as pa

from skyvault.errors import SkyvaultError

__all__ = ["BatchWriter", "Chunks", "ResultStream", "write_batches"]


class ResultStream:
    """Iterate ``batches``; a :class:`SkyvaultError` from the source ends the iteration.

    After iterating, :meth:`status` says how the result ended: ``("ERROR", message)``,
    ``("OVERFLOW", None)`` when rows were cut, else ``("OK", None)``.
    """

    def __init__(
        self, batches: Iterable[pa.RecordBatch], overflow: bool | Callable[[], bool]
    ) -> None:
        self._batches = batches
        self._overflow = overflow
        self.error: SkyvaultError | None = None

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        iterator = iter(self._batches)
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                return
            except SkyvaultError as exc:
                self.error = exc
                return
            yield batch

    def status(self) -> tuple[str, str | None]:
        if self.error is not None:
            return "ERROR", str(self.error)
        overflow = self._overflow() if callable(self._overflow) else self._overflow
        return ("OVERFLOW", None) if overflow else ("OK", None)


class Chunks:
    """A write-only file object that keeps what is written until it is taken."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self.closed = False
        self._position = 0

    def write(self, data: bytes | memoryview) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        self._position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def take(self) -> bytes:
        data, self._parts = b"".join(self._parts), []
        return data


class BatchWriter(Protocol):
    """What :func:`write_batches` needs of a writer (pyarrow's IPC and Parquet writers)."""

    def write_batch(self, batch: pa.RecordBatch) -> None: ...

    def close(self) -> None: ...


_Writer = TypeVar("_Writer", bound=BatchWriter)


def write_batches(
    batches: Iterable[pa.RecordBatch],
    overflow: bool | Callable[[], bool],
    schema: pa.Schema,
    open_writer: Callable[[Chunks], _Writer],
    end: Callable[[_Writer, tuple[str, str | None]], None],
) -> Iterator[bytes]:
    """The bytes of ``batches`` written by the writer ``open_writer`` makes on a
    :class:`Chunks` sink, handed on after each batch (memory is bounded by one batch).

    Each batch is written under ``schema`` (its columns' published names).  After the last,
    ``end`` is given the writer and how the result ended (:meth:`ResultStream.status`) to
    record it; the writer is closed even when the stream is abandoned.
    """
    sink = Chunks()
    writer = open_writer(sink)
    stream = ResultStream(batches, overflow)
    try:
        for batch in stream:
            if batch.num_rows:
                writer.write_batch(pa.RecordBatch.from_arrays(batch.columns, schema=schema))
            data = sink.take()
            if data:
                yield data
        end(writer, stream.status())
    finally:
        writer.close()
    yield sink.take()
