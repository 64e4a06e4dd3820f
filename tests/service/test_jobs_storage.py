"""The job database on SQLite and on a real PostgreSQL server started for the session.

PostgreSQL comes from ``/usr/lib/postgresql/*/bin`` (``make test`` installs it when absent):
``initdb`` and ``pg_ctl`` make a throw-away cluster in a temp directory, listening on a
Unix socket there (and a free local port), as the ``postgres`` user when tests run as root.
The tests are skipped, saying why, only when no PostgreSQL binaries exist.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from skyvault.config import Settings
from skyvault.service.uws.models import (
    ExecutionPhase,
    Job,
    JobFailure,
    JobFilter,
    JobResult,
    utc_now,
)
from skyvault.service.uws.storage import JobStore


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL server of its own for this session; its SQLAlchemy URL."""
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("no PostgreSQL binaries (initdb/pg_ctl); `make sysdeps` installs them")
    as_root = os.geteuid() == 0
    prefix: list[str] = []
    if as_root:
        # pytest's temp root is private to root: the postgres user gets a directory of its own.
        root = Path(tempfile.mkdtemp(prefix="skyvault-pg-"))
        shutil.chown(root, "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    else:
        root = tmp_path_factory.mktemp("pg")
    data, sockets = root / "data", root / "sock"
    subprocess.run([*prefix, "mkdir", str(sockets)], check=True)
    user = "postgres" if as_root else os.environ.get("USER", "skyvault")

    def run(*args: str) -> None:
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=120)

    run(str(bindir / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8")
    port = _free_port()
    run(
        str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-t", "60",
        "-o", f"-k {sockets} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off",
        "start",
    )  # fmt: skip
    try:
        run(str(bindir / "createdb"), "-h", str(sockets), "-p", str(port), "-U", user, "skyvault")
        yield f"postgresql+psycopg://{user}@/skyvault?host={sockets}&port={port}"
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        if as_root:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'sub' / 'jobs.sqlite3'}"
    else:
        base = request.getfixturevalue("postgres_url")
        # A schema per test would need search_path tricks; clear the table instead.
        url = base
    job_store = JobStore(url)
    if request.param == "postgresql":
        import sqlalchemy as sa

        with job_store._engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM uws_jobs"))
    yield job_store
    job_store.close()


def _job(job_id: str, owner: str | None = "alice", **changes: object) -> Job:
    now = utc_now()
    job = Job(
        job_id=job_id,
        owner=owner,
        phase=ExecutionPhase.PENDING,
        parameters=[("LANG", "ADQL"), ("query", "SELECT 1 AS x"), ("UPLOAD", "a,b"),
                    ("UPLOAD", "c,d")],
        creation_time=now,
        execution_duration=60,
        destruction=now + timedelta(days=1),
        run_id="r1",
    )  # fmt: skip
    for name, value in changes.items():
        setattr(job, name, value)
    return job


def test_round_trip(store: JobStore) -> None:
    job = _job("j1")
    store.add(job)
    back = store.get("j1")
    assert back == job
    assert back is not None and back.creation_time.tzinfo is not None
    assert back.parameter_map()["UPLOAD"] == ["a,b", "c,d"]
    assert store.get("nothing") is None
    assert store.phase("j1") == ExecutionPhase.PENDING


def test_phase_transitions_are_conditional(store: JobStore) -> None:
    now = utc_now()
    store.add(_job("j1"))
    assert store.claim_next("r", now) is None  # PENDING is not taken
    assert store.queue("j1", now)
    assert not store.queue("j1", now)  # already queued
    assert not store.set_execution_duration("j1", 5)  # only while PENDING
    claimed = store.claim_next("runner-a", now)
    assert claimed is not None and claimed.phase == ExecutionPhase.EXECUTING
    assert claimed.runner == "runner-a" and claimed.start_time is not None
    assert store.claim_next("runner-b", now) is None
    result = JobResult("j1/result.vot", "application/x-votable+xml", 10, 1, False)
    assert not store.complete("j1", "runner-b", result, now)  # not its job
    assert store.complete("j1", "runner-a", result, now)
    assert not store.abort("j1", now)  # finished
    assert not store.fail("j1", JobFailure("x", "y"), now)
    done = store.get("j1")
    assert done is not None and done.phase == ExecutionPhase.COMPLETED and done.result == result


def test_abort_beats_a_late_worker(store: JobStore) -> None:
    now = utc_now()
    store.add(_job("j1"))
    store.queue("j1", now)
    assert store.claim_next("r", now) is not None
    assert store.abort("j1", now)
    result = JobResult("k", "text/csv", 1, 1, False)
    assert not store.complete("j1", "r", result, now)
    assert not store.fail("j1", JobFailure("query", "boom"), now, runner="r")
    job = store.get("j1")
    assert job is not None and job.phase == ExecutionPhase.ABORTED and job.result is None


def test_fail_records_the_failure(store: JobStore) -> None:
    now = utc_now()
    store.add(_job("j1"))
    store.queue("j1", now)
    store.claim_next("r", now)
    assert store.fail("j1", JobFailure("adql.syntax", "bad <query> & co", fatal=True), now)
    job = store.get("j1")
    assert job is not None and job.phase == ExecutionPhase.ERROR
    assert job.failure == JobFailure("adql.syntax", "bad <query> & co", True)


def test_two_runners_never_take_one_job(store: JobStore) -> None:
    now = utc_now()
    for i in range(40):
        store.add(_job(f"j{i:02d}"))
        store.queue(f"j{i:02d}", now)
    taken: dict[str, list[str]] = {"a": [], "b": [], "c": [], "d": []}

    def work(name: str) -> None:
        while (job := store.claim_next(name, utc_now())) is not None:
            taken[name].append(job.job_id)

    threads = [threading.Thread(target=work, args=(name,)) for name in taken]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [j for jobs in taken.values() for j in jobs]
    assert sorted(everything) == [f"j{i:02d}" for i in range(40)]


def test_queue_order_is_fifo(store: JobStore) -> None:
    base = utc_now()
    for name in ["late", "early", "middle"]:
        store.add(_job(name))
    store.queue("early", base)
    store.queue("middle", base + timedelta(seconds=1))
    store.queue("late", base + timedelta(seconds=2))
    order = [store.claim_next("r", base) for _ in range(3)]
    assert [j.job_id for j in order if j] == ["early", "middle", "late"]


def test_list_filters(store: JobStore) -> None:
    base = utc_now()
    for i in range(5):
        store.add(_job(f"j{i}", creation_time=base + timedelta(seconds=i)))
    store.add(_job("bob1", owner="bob", creation_time=base))
    store.add(_job("anon", owner=None, creation_time=base))
    store.abort("j1", base)
    store.abort("j3", base)
    ids = lambda f: [j.job_id for j in store.list_jobs("alice", f)]  # noqa: E731
    assert ids(JobFilter()) == ["j0", "j1", "j2", "j3", "j4"]
    assert ids(JobFilter(phases=frozenset({ExecutionPhase.ABORTED}))) == ["j1", "j3"]
    assert ids(JobFilter(after=base + timedelta(seconds=2))) == ["j3", "j4"]
    assert ids(JobFilter(last=2)) == ["j4", "j3"]
    assert ids(JobFilter(phases=frozenset({ExecutionPhase.PENDING}), after=base, last=1)) == ["j4"]
    assert [j.job_id for j in store.list_jobs("bob", JobFilter())] == ["bob1"]


def test_parameters_destruction_delete_expired(store: JobStore) -> None:
    now = utc_now()
    store.add(_job("j1"))
    assert store.set_parameters("j1", [("LANG", "ADQL"), ("QUERY", "SELECT 2 AS y")], "r2")
    assert store.set_execution_duration("j1", 5)
    assert store.set_destruction("j1", now - timedelta(seconds=1))
    job = store.get("j1")
    assert job is not None and job.run_id == "r2" and job.execution_duration == 5
    assert job.parameters == [("LANG", "ADQL"), ("QUERY", "SELECT 2 AS y")]
    store.add(_job("j2"))
    assert [j.job_id for j in store.expired(now)] == ["j1"]
    deleted = store.delete("j1")
    assert deleted is not None and deleted.job_id == "j1"
    assert store.delete("j1") is None
    assert not store.set_destruction("j1", now)


def test_heartbeat_and_executing(store: JobStore) -> None:
    then = utc_now() - timedelta(minutes=5)
    store.add(_job("j1"))
    store.queue("j1", then)
    store.claim_next("r", then)
    (job,) = store.executing()
    assert job.heartbeat == then
    later = utc_now()
    store.heartbeat("r", later)
    (job,) = store.executing()
    assert job.heartbeat == later
    assert store.count(ExecutionPhase.EXECUTING) == 1
    assert store.phases(["j1", "gone"]) == {"j1": ExecutionPhase.EXECUTING}


def test_schema_creation_is_idempotent(store: JobStore) -> None:
    store.add(_job("j1"))
    again = JobStore(store.url)
    assert again.get("j1") is not None
    again.close()


# --- several replicas on one database -------------------------------------------------------


def _replica_settings(settings: Settings, url: str, results: Path) -> Settings:
    return settings.model_copy(
        update={"jobs_database_url": url, "results_url": str(results), "job_reaper_interval": 60}
    )


def test_two_replicas_share_jobs_on_postgresql(
    settings: Settings, postgres_url: str, tmp_path: Path
) -> None:
    """Two services on one PostgreSQL database and one result store: a job created on one
    is seen, run and fetched through the other; an ABORT sent to the replica that does
    not run the job still stops it (the runner's watchdog re-reads phases)."""
    from fastapi.testclient import TestClient

    from skyvault.service.app import create_app
    from tests.service.test_uws import SLOW, SMALL

    JobStore(postgres_url).close()
    import sqlalchemy as sa

    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM uws_jobs"))
    engine.dispose()
    shared = _replica_settings(settings, postgres_url, tmp_path / "results")
    with (
        TestClient(create_app(shared), follow_redirects=False) as a,
        TestClient(create_app(shared), follow_redirects=False) as b,
    ):
        ids = []
        for _ in range(6):
            r = a.post("/tap/async", data={"LANG": "ADQL", "QUERY": SMALL, "PHASE": "RUN"})
            ids.append(r.headers["location"].rsplit("/", 1)[-1])
        for job_id in ids:
            deadline = time.monotonic() + 30
            while b.get(f"/tap/async/{job_id}/phase").text != "COMPLETED":
                assert time.monotonic() < deadline
                b.get(f"/tap/async/{job_id}", params={"WAIT": "1"})
            assert b.get(f"/tap/async/{job_id}/results/result").status_code == 200

        r = a.post("/tap/async", data={"LANG": "ADQL", "QUERY": SLOW, "PHASE": "RUN"})
        slow = r.headers["location"].rsplit("/", 1)[-1]
        deadline = time.monotonic() + 10
        while a.get(f"/tap/async/{slow}/phase").text != "EXECUTING":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        runners = {"a": a.app.state.context.jobs.runner, "b": b.app.state.context.jobs.runner}  # type: ignore[attr-defined]
        (owner,) = [name for name, r in runners.items() if slow in r.running_ids()]
        other = b if owner == "a" else a
        started = time.monotonic()
        assert other.post(f"/tap/async/{slow}/phase", data={"PHASE": "ABORT"}).status_code == 303
        while slow in runners[owner].running_ids():
            assert time.monotonic() - started < 5, "the other replica did not stop the query"
            time.sleep(0.01)
        assert a.get(f"/tap/async/{slow}/phase").text == "ABORTED"


def test_recovery_of_a_dead_replica(tmp_path: Path) -> None:
    """A job whose runner was on another host is rescued once its heartbeat is stale; a
    runner on this host whose process is gone is known dead at once."""
    from skyvault.service.uws.events import PhaseEvents
    from skyvault.service.uws.results import ResultStore
    from skyvault.service.uws.runner import JobRunner
    from skyvault.service.uws.service import INTERRUPTED, JobService

    store = JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
    results = ResultStore(str(tmp_path / "results"))
    events = PhaseEvents()
    settings = Settings(data_dir=tmp_path, job_workers=1)
    runner = JobRunner(store, results, lambda p, c, u: None, events, settings)  # type: ignore[arg-type,return-value]
    service = JobService(store, results, runner, events, settings)
    now = utc_now()
    dead_pid = subprocess.Popen(["true"])
    dead_pid.wait()
    for job_id, runner_id, beat in [
        ("far-fresh", "elsewhere:12:aa", now),
        ("far-stale", "elsewhere:12:bb", now - timedelta(minutes=5)),
        ("here-dead", f"{socket.gethostname()}:{dead_pid.pid}:cc", now),
        ("here-alive", f"{socket.gethostname()}:1:dd", now),
    ]:
        store.add(_job(job_id))
        store.queue(job_id, now)
        store.claim_next(runner_id, beat)
    assert service.recover(now) == 2
    phases = {j: store.phase(j) for j in ("far-fresh", "far-stale", "here-dead", "here-alive")}
    assert phases == {
        "far-fresh": ExecutionPhase.EXECUTING,
        "far-stale": ExecutionPhase.ERROR,
        "here-dead": ExecutionPhase.ERROR,
        "here-alive": ExecutionPhase.EXECUTING,
    }
    job = store.get("far-stale")
    assert job is not None and job.failure == INTERRUPTED
    store.close()


def test_account_counts_see_another_replica_at_once(store: JobStore) -> None:
    """The counts a sync slot reads are kept between requests, but a job another replica
    (another connection, as another process) claims or finishes shows in the very next
    call; a change nobody made reads nothing new (SQLite: the kept counts are used)."""
    from skyvault.service.uws.models import Account

    alice = Account("alice")
    other = JobStore(store.url)
    try:
        assert store.account_phase_counts(alice) == {}
        now = utc_now()
        other.add(_job("j1"))
        assert store.account_phase_counts(alice) == {ExecutionPhase.PENDING: 1}
        other.queue("j1", now)
        assert other.claim_next("replica-b", now) is not None
        assert store.account_phase_counts(alice) == {ExecutionPhase.EXECUTING: 1}
        result = JobResult("j1/result.vot", "application/x-votable+xml", 10, 1, False)
        assert other.complete("j1", "replica-b", result, now)
        assert store.account_phase_counts(alice) == {ExecutionPhase.COMPLETED: 1}
        if store.changes.version() is not None:  # SQLite: unchanged → not read again
            reads: list[object] = []
            real = store._read
            store._read = lambda: reads.append(1) or real()  # type: ignore[method-assign]
            for _ in range(3):
                assert store.account_phase_counts(alice) == {ExecutionPhase.COMPLETED: 1}
            assert reads == []
            store.add(_job("j2"))  # this store's own write is a change too
            counts = store.account_phase_counts(alice)
            assert counts == {ExecutionPhase.COMPLETED: 1, ExecutionPhase.PENDING: 1}
            assert reads == [1]
    finally:
        other.close()


def test_a_failing_change_watch_means_reading_the_database(tmp_path: Path) -> None:
    """When the watch cannot read its counter (a busy or failing file), the counts are read
    from the database, not taken from the cache, and nothing fails."""
    from skyvault.service.uws.models import Account

    store = JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
    try:
        alice = Account("alice")
        assert store.account_phase_counts(alice) == {}
        assert store.changes.version() is not None

        class Broken:
            def execute(self, sql: str) -> None:
                raise sqlite3.OperationalError("disk I/O error")

        real = store.changes._conn
        store.changes._conn = Broken()
        try:
            assert store.changes.version() is None
            other = JobStore(store.url)
            other.add(_job("j1"))
            other.close()
            assert store.account_phase_counts(alice) == {ExecutionPhase.PENDING: 1}
        finally:
            store.changes._conn = real
    finally:
        store.close()
