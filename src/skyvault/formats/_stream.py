"""How every writer reads a result: batches until the source fails, then how it ended.

DALI says an error after output has started is reported inside the document (a trailing
QUERY_STATUS=ERROR), so writers must not let a skyvault error escape mid-stream; and MAXREC
overflow is only known once the batches are exhausted.  :class:`ResultStream` holds both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import pyarrow as pa

from skyvault.errors import SkyvaultError

__all__ = ["Chunks", "ResultStream"]


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
