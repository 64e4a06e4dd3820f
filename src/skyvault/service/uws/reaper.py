"""The reaper: a background task that destroys expired jobs and rescues orphaned ones.

Every ``interval`` seconds it deletes the jobs whose DESTRUCTION time has passed, with their
results (stopping them first if they still run), and puts jobs whose service died in
EXECUTING into ERROR (:meth:`JobService.recover`).  Both are idempotent, so several replicas
may run a reaper over the same database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from starlette.concurrency import run_in_threadpool

from skyvault.service.uws.service import JobService

__all__ = ["Reaper"]

log = logging.getLogger(__name__)


class Reaper:
    """Runs :meth:`sweep` every ``interval`` seconds while started."""

    def __init__(self, jobs: JobService, interval: float) -> None:
        self.jobs = jobs
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def sweep(self) -> tuple[int, int]:
        """One pass: (jobs destroyed, jobs recovered)."""
        destroyed = self.jobs.reap()
        recovered = self.jobs.recover()
        if destroyed or recovered:
            log.info("reaper: %d jobs destroyed, %d interrupted jobs put in ERROR",
                     destroyed, recovered)  # fmt: skip
        return destroyed, recovered

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await run_in_threadpool(self.sweep)
            except Exception:
                log.exception("reaper: the sweep failed; trying again later")

    def start(self) -> None:
        """Start the periodic task (call inside the event loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="uws-reaper")

    async def stop(self) -> None:
        """Stop the periodic task."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
