"""Phase-change notifications inside one process: what makes a blocking WAIT return at once.

Workers (threads) call :meth:`PhaseEvents.notify` after every phase change they make; a
WAIT request (a coroutine) :meth:`PhaseEvents.watch`-es its job and is woken through its
event loop.  Changes made by another replica are not seen here: WAIT also re-reads the
phase from the database at a short interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

__all__ = ["PHASE_EVENTS", "PhaseEvents"]


class PhaseEvents:
    """Per-job wake-ups from any thread to coroutines waiting for that job."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}

    @contextlib.contextmanager
    def watch(self, job_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever job ``job_id`` changes phase (call in a coroutine)."""
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.setdefault(job_id, set()).add(entry)
        try:
            yield entry[1]
        finally:
            with self._lock:
                waiters = self._waiters.get(job_id)
                if waiters is not None:
                    waiters.discard(entry)
                    if not waiters:
                        del self._waiters[job_id]

    def notify(self, job_id: str) -> None:
        """Wake everything watching job ``job_id`` (callable from any thread)."""
        with self._lock:
            waiters = list(self._waiters.get(job_id, ()))
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(event.set)


#: The process's notifier: every job service in this process shares it.
PHASE_EVENTS = PhaseEvents()
