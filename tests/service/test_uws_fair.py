"""Fair turns between accounts: the job store's choice of the next job, and the runner.

Accounts are users and, for anonymous jobs, each client address.  One account's long queue
must not hold up another account's job: the next free worker takes the account with the
fewest jobs running, then the one served least recently.
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
import sqlalchemy as sa

from skyvault.auth.identity import Identity
from skyvault.auth.limits import LimitsPolicy, UserLimits
from skyvault.catalog.metadata import TableMeta
from skyvault.config import Settings
from skyvault.engine.executor import CancelToken
from skyvault.formats.output import find_output_format
from skyvault.service.params import TapQueryParams
from skyvault.service.services.query import QueryOutput
from skyvault.service.uws.events import PhaseEvents
from skyvault.service.uws.models import Account, ExecutionPhase, Job, JobResult, utc_now
from skyvault.service.uws.results import ResultStore
from skyvault.service.uws.runner import JobRunner
from skyvault.service.uws.storage import JobStore
from tests.service import test_jobs_storage

#: The session's throw-away PostgreSQL server (a fixture of the job store tests).
postgres_url = test_jobs_storage.postgres_url


@pytest.fixture(params=["sqlite", "postgresql"])
def jobs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobStore]:
    """An empty job store on SQLite, and on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_url")
    job_store = JobStore(url)
    with job_store._engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM uws_jobs"))
    yield job_store
    job_store.close()


def _add(
    jobs: JobStore,
    job_id: str,
    owner: str | None,
    queued_at: float,
    client: str | None = None,
) -> None:
    """A QUEUED job of ``owner`` (or of anonymous ``client``), queued ``queued_at`` s ago."""
    now = utc_now()
    jobs.add(
        Job(
            job_id=job_id,
            owner=owner,
            phase=ExecutionPhase.PENDING,
            parameters=[("LANG", "ADQL"), ("QUERY", f"SELECT {job_id}")],
            creation_time=now - timedelta(seconds=queued_at + 1),
            execution_duration=60,
            destruction=now + timedelta(days=1),
            client=client,
        )
    )
    assert jobs.queue(job_id, now - timedelta(seconds=queued_at))


def _run_one(jobs: JobStore, max_running: Any = None) -> str | None:
    """Claim the next job and complete it at once; its id."""
    job = jobs.claim_next("r", utc_now(), max_running)
    if job is None:
        return None
    result = JobResult(key=f"{job.job_id}.csv", mime="text/csv", size=1, rows=1, overflow=False)
    assert jobs.complete(job.job_id, "r", result, utc_now())
    return job.job_id


def test_one_worker_takes_turns_between_owners(jobs: JobStore) -> None:
    """alice queued 5 jobs before bob's one: bob's starts second, not sixth; within an
    owner the order stays oldest first."""
    for i in range(5):
        _add(jobs, f"a{i}", "alice", queued_at=100 - i)
    _add(jobs, "b0", "bob", queued_at=50)
    order = [_run_one(jobs) for _ in range(6)]
    assert order == ["a0", "b0", "a1", "a2", "a3", "a4"]
    assert _run_one(jobs) is None


def test_anonymous_clients_are_accounts_of_their_own(jobs: JobStore) -> None:
    for i in range(3):
        _add(jobs, f"x{i}", None, queued_at=100 - i, client="192.0.2.1")
    _add(jobs, "y0", None, queued_at=50, client="198.51.100.7")
    _add(jobs, "z0", "carol", queued_at=40)
    order = [_run_one(jobs) for _ in range(5)]
    assert order == ["x0", "y0", "z0", "x1", "x2"]


def test_fewest_running_goes_first_and_the_cap_holds(jobs: JobStore) -> None:
    """With jobs still running (two workers), the account with fewer running jobs goes
    first; an account at its running limit is passed over and its jobs stay QUEUED."""
    for i in range(4):
        _add(jobs, f"a{i}", "alice", queued_at=100 - i)
    _add(jobs, "b0", "bob", queued_at=10)
    _add(jobs, "b1", "bob", queued_at=9)
    now = utc_now()
    first = jobs.claim_next("r", now)
    second = jobs.claim_next("r", now)
    assert first is not None and second is not None
    assert (first.job_id, second.job_id) == ("a0", "b0")  # one each, not a0, a1
    limits = {"alice": 1, "bob": 1}
    assert jobs.claim_next("r", now, limits.__getitem__) is None  # both at their cap
    limits["bob"] = 2
    third = jobs.claim_next("r", now, limits.__getitem__)
    assert third is not None and third.job_id == "b1"
    assert jobs.phase("a1") == ExecutionPhase.QUEUED


# --- the runner ---------------------------------------------------------------------------


class SlowQuery:
    """Stands for the query service: each job takes ``seconds``; records who started when."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started: list[str] = []
        self.lock = threading.Lock()

    def __call__(
        self,
        params: TapQueryParams,
        cancel: CancelToken,
        uploads: Sequence[tuple[TableMeta, pa.Table]],
        owner: Identity,
    ) -> QueryOutput:
        with self.lock:
            self.started.append(params.query)
        time.sleep(self.seconds)
        result: Any = SimpleNamespace(rows=1, overflow=False)
        chunks: Iterator[bytes] = iter([b"x\n1\n"])
        return QueryOutput(output=find_output_format("csv"), chunks=chunks, result=result)


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[tuple[JobStore, JobRunner, SlowQuery]]:
    """One worker; jobs take 0.2 s each."""
    job_store = JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
    query = SlowQuery(0.2)
    settings = Settings(data_dir=tmp_path, job_workers=1)
    limits = LimitsPolicy(defaults=UserLimits(max_running=5))
    runner = JobRunner(
        job_store,
        ResultStore(str(tmp_path / "results")),
        query,
        PhaseEvents(),
        settings,
        limits=limits,
    )
    try:
        yield job_store, runner, query
    finally:
        runner.stop()
        job_store.close()


def test_a_heavy_user_does_not_starve_a_short_query(
    pool: tuple[JobStore, JobRunner, SlowQuery],
) -> None:
    """alice queues 10 jobs, then bob one; with one worker, bob's starts as soon as the
    job running when he queued ends — before alice's other 9."""
    job_store, runner, query = pool
    for i in range(10):
        _add(job_store, f"a{i}", "alice", queued_at=100 - i)
    runner.start()
    deadline = time.monotonic() + 10
    while not query.started:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    _add(job_store, "b0", "bob", queued_at=0)
    runner.wake()
    deadline = time.monotonic() + 30
    while job_store.phase("b0") != ExecutionPhase.COMPLETED:
        assert time.monotonic() < deadline, query.started
        time.sleep(0.02)
    assert "SELECT b0" in query.started[:3], query.started
    left = [f"a{i}" for i in range(10) if job_store.phase(f"a{i}") != ExecutionPhase.COMPLETED]
    assert len(left) >= 7, left


def test_a_job_database_from_before_clients_is_upgraded(tmp_path: Path) -> None:
    """A job table without the ``client`` column (and its index) gets both when opened;
    its anonymous jobs form one account of their own (client NULL)."""
    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE uws_jobs (job_id VARCHAR(64) PRIMARY KEY, owner VARCHAR(256), "
            "phase VARCHAR(16) NOT NULL, run_id TEXT, parameters TEXT NOT NULL, "
            "creation_time DATETIME NOT NULL, queued_time DATETIME, start_time DATETIME, "
            "end_time DATETIME, quote DATETIME, execution_duration INTEGER NOT NULL, "
            "destruction DATETIME NOT NULL, result_key TEXT, result_mime TEXT, "
            "result_size BIGINT, result_rows BIGINT, result_overflow BOOLEAN, "
            "error_code VARCHAR(64), error_message TEXT, error_fatal BOOLEAN, "
            "runner VARCHAR(128), heartbeat DATETIME)"
        )
    engine.dispose()
    old = JobStore(url)
    try:
        indexes = {i["name"] for i in sa.inspect(old._engine).get_indexes("uws_jobs")}
        assert "ix_uws_jobs_client_phase" in indexes
        _add(old, "legacy", None, queued_at=10)
        _add(old, "new", None, queued_at=5, client="192.0.2.1")
        assert old.account_phase_counts(Account(None)) == {ExecutionPhase.QUEUED: 1}
        assert old.account_phase_counts(Account(None, "192.0.2.1")) == {ExecutionPhase.QUEUED: 1}
    finally:
        old.close()
