"""The moment a job is claimed: the runner's running set and the database agree.

A job store that stops the worker inside ``claim_next`` (before the claim is written, or
after it is written and before the job is read back) lets each test look at the runner in
that gap: a job EXECUTING in the database is among the running ids of the runner that took
it; the watchdog never reads a claim not yet written; an ABORT in the gap stops the job.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pytest

from skyvault.auth.identity import Identity
from skyvault.catalog.metadata import TableMeta
from skyvault.config import Settings
from skyvault.engine.executor import CancelToken
from skyvault.formats.output import find_output_format
from skyvault.service.params import TapQueryParams
from skyvault.service.services.query import QueryOutput
from skyvault.service.uws.events import PhaseEvents
from skyvault.service.uws.models import ExecutionPhase, Job, utc_now
from skyvault.service.uws.results import ResultStore
from skyvault.service.uws.runner import JobRunner
from skyvault.service.uws.storage import JobStore

BEFORE_CLAIM = "before the claim is written"
AFTER_CLAIM = "after the claim is written"
AFTER_COMPLETE = "after the runner wrote COMPLETED"


class PausingStore(JobStore):
    """A job store that holds a worker thread at ``pause_at`` in ``claim_next`` once."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.pause_at: str | None = None
        self.reached = threading.Event()
        self.resume = threading.Event()

    def _pause(self, where: str) -> None:
        if self.pause_at == where and threading.current_thread().name.startswith("uws-worker"):
            self.pause_at = None
            self.reached.set()
            assert self.resume.wait(30), "the test never let the worker go on"

    def _update(self, job_id: str, phases: Any, **values: Any) -> bool:
        if values.get("phase") == ExecutionPhase.EXECUTING.value:
            self._pause(BEFORE_CLAIM)
        return super()._update(job_id, phases, **values)

    def get(self, job_id: str) -> Job | None:
        self._pause(AFTER_CLAIM)
        return super().get(job_id)

    def complete(self, job_id: str, *args: Any, **kwargs: Any) -> bool:
        done = super().complete(job_id, *args, **kwargs)
        self._pause(AFTER_COMPLETE)
        return done


class FakeQuery:
    """Stands for the query service: records the tokens it was started with."""

    def __init__(self) -> None:
        self.tokens: list[CancelToken] = []
        self.cancelled_at_start: list[bool] = []

    def __call__(
        self,
        params: TapQueryParams,
        cancel: CancelToken,
        uploads: Sequence[tuple[TableMeta, pa.Table]],
        owner: Identity,
    ) -> QueryOutput:
        self.tokens.append(cancel)
        self.cancelled_at_start.append(cancel.cancelled)
        result: Any = SimpleNamespace(rows=1, overflow=False)
        chunks: Iterator[bytes] = iter([b"x\n1\n"])
        return QueryOutput(output=find_output_format("csv"), chunks=chunks, result=result)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[PausingStore, JobRunner, FakeQuery]]:
    store = PausingStore(f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
    query = FakeQuery()
    settings = Settings(data_dir=tmp_path, job_workers=1)
    runner = JobRunner(
        store, ResultStore(str(tmp_path / "results")), query, PhaseEvents(), settings
    )
    runner.start()
    try:
        yield store, runner, query
    finally:
        store.resume.set()
        runner.stop()
        store.close()


def _queue(store: JobStore, runner: JobRunner, job_id: str) -> None:
    now = utc_now()
    store.add(
        Job(
            job_id=job_id,
            owner=None,
            phase=ExecutionPhase.PENDING,
            parameters=[("LANG", "ADQL"), ("QUERY", "SELECT 1 AS x")],
            creation_time=now,
            execution_duration=60,
            destruction=now + timedelta(days=1),
        )
    )
    assert store.queue(job_id, now)
    runner.wake()


def _ended(store: JobStore, runner: JobRunner, job_id: str) -> ExecutionPhase | None:
    """The job's phase once the runner has let go of it."""
    deadline = time.monotonic() + 10
    while job_id in runner.running_ids() or store.phase(job_id) in (
        ExecutionPhase.QUEUED,
        ExecutionPhase.EXECUTING,
    ):
        assert time.monotonic() < deadline, "the job did not end"
        time.sleep(0.01)
    return store.phase(job_id)


def test_a_job_executing_in_the_database_is_among_the_running_ids(
    world: tuple[PausingStore, JobRunner, FakeQuery],
) -> None:
    store, runner, query = world
    store.pause_at = AFTER_CLAIM
    _queue(store, runner, "j1")
    assert store.reached.wait(10)
    assert store.phase("j1") == ExecutionPhase.EXECUTING
    assert runner.running_ids() == ["j1"]
    store.resume.set()
    assert _ended(store, runner, "j1") == ExecutionPhase.COMPLETED
    assert query.cancelled_at_start == [False]


def test_an_abort_while_the_job_is_claimed_stops_it(
    world: tuple[PausingStore, JobRunner, FakeQuery],
) -> None:
    """ABORT as the service sends it (the database, then the runner) in the gap: the
    runner has the job's token to cancel, and the query never starts."""
    store, runner, query = world
    store.pause_at = AFTER_CLAIM
    _queue(store, runner, "j2")
    assert store.reached.wait(10)
    assert store.abort("j2", utc_now())
    assert runner.cancel("j2")
    store.resume.set()
    assert _ended(store, runner, "j2") == ExecutionPhase.ABORTED
    assert query.tokens == []


def test_a_claim_not_yet_written_is_neither_listed_nor_cancelled(
    world: tuple[PausingStore, JobRunner, FakeQuery],
) -> None:
    """While the claim is being written the database says QUEUED: the running ids (what
    the watchdog compares with the database) wait for the claim instead of listing a job
    the watchdog would cancel for not being EXECUTING, or leaving out one that is."""
    store, runner, query = world
    store.pause_at = BEFORE_CLAIM
    _queue(store, runner, "j3")
    assert store.reached.wait(10)
    assert store.phase("j3") == ExecutionPhase.QUEUED
    seen: list[list[str]] = []
    reader = threading.Thread(target=lambda: seen.append(runner.running_ids()))
    watchdog = threading.Thread(target=runner._cancel_stopped)
    reader.start()
    watchdog.start()
    reader.join(0.5)  # time to read what they would without waiting
    watchdog.join(0.5)
    waited = reader.is_alive() and watchdog.is_alive()
    store.resume.set()
    reader.join(10)
    watchdog.join(10)
    assert _ended(store, runner, "j3") == ExecutionPhase.COMPLETED
    assert query.cancelled_at_start == [False]
    assert not query.tokens[0].cancelled
    assert seen == [["j3"]]
    assert waited, "they did not wait for the claim"


def test_a_claim_lost_to_an_abort_is_forgotten(
    world: tuple[PausingStore, JobRunner, FakeQuery],
) -> None:
    """An ABORT written before the claim: the claim does not match, the runner drops the
    job (and its token) and runs nothing."""
    store, runner, query = world
    store.pause_at = BEFORE_CLAIM
    _queue(store, runner, "j4")
    assert store.reached.wait(10)
    assert store.abort("j4", utc_now())
    assert runner.cancel("j4")  # the token of the claim in progress
    store.resume.set()
    assert _ended(store, runner, "j4") == ExecutionPhase.ABORTED
    assert runner.running_ids() == []
    assert query.tokens == []


def test_the_watchdog_leaves_a_job_that_wrote_its_own_end(
    world: tuple[PausingStore, JobRunner, FakeQuery],
) -> None:
    """The runner wrote COMPLETED and has not yet left its running set: the watchdog reads
    a phase other than EXECUTING, but that is the job's own end, not an ABORT to obey."""
    store, runner, query = world
    store.pause_at = AFTER_COMPLETE
    _queue(store, runner, "j5")
    assert store.reached.wait(10)
    assert store.phase("j5") == ExecutionPhase.COMPLETED
    assert runner.running_ids() == ["j5"]
    runner._cancel_stopped()
    store.resume.set()
    assert _ended(store, runner, "j5") == ExecutionPhase.COMPLETED
    assert not query.tokens[0].cancelled
