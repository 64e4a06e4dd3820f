"""The service's memory budget: every query (sync and async) holds its share while its result
streams, queues when the budget is taken, and gets a clear 503 when its time runs out."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from skyvault.catalog.tap_schema import TapSchemaCache
from skyvault.config import Settings, parse_bytes
from skyvault.engine.archive import Archive
from skyvault.engine.budget import MemoryBudget
from skyvault.errors import QueryError
from skyvault.service.params import tap_query_params
from skyvault.service.services.query import QueryOutput, QueryService
from tests.service.conftest import query_status, read_votable
from tests.service.test_uws import create, uws_app, uws_settings, wait_final

OBJECT = "dp02_dc2_catalogs.Object"
LARGE = f"SELECT TOP 3000 * FROM {OBJECT}"


@pytest.fixture(scope="module")
def archive(settings: Settings) -> Iterator[Archive]:
    archive = Archive(settings.data_dir)
    yield archive
    archive.close()


def _service(archive: Archive, settings: Settings, total: int) -> QueryService:
    return QueryService(archive, settings, TapSchemaCache(), MemoryBudget(total, poll=0.01))


def _run(service: QueryService, query: str, fmt: str = "votable") -> QueryOutput:
    params = tap_query_params(
        {"QUERY": [query], "LANG": ["ADQL"], "RESPONSEFORMAT": [fmt], "MAXREC": ["5000"]},
        maxrec_default=1000,
        maxrec_limit=5000,
    )
    return service.run(params, tables=service.archive.tables())


@pytest.mark.parametrize("fmt", ["votable", "parquet", "csv", "fits"])
def test_a_query_holds_its_share_until_its_result_is_sent(
    archive: Archive, settings: Settings, fmt: str
) -> None:
    service = _service(archive, settings, 1024**3)
    output = _run(service, LARGE, fmt)
    assert service.budget.running == 1 and service.budget.used > 0
    size = sum(len(chunk) for chunk in output.chunks)
    assert size > 0
    assert (service.budget.running, service.budget.used) == (0, 0)


def test_an_abandoned_or_failed_query_gives_its_share_back(
    archive: Archive, settings: Settings
) -> None:
    service = _service(archive, settings, 1024**3)
    output = _run(service, LARGE)
    next(output.chunks)
    output.close()  # the client went away
    assert (service.budget.running, service.budget.used) == (0, 0)
    with pytest.raises(QueryError):  # fails on its first rows
        _run(service, f"SELECT TOP 10 1 / (objectId - objectId) AS x FROM {OBJECT}")
    assert (service.budget.running, service.budget.used) == (0, 0)


def test_a_query_that_does_not_fit_waits_for_another_to_finish(
    archive: Archive, settings: Settings
) -> None:
    # A budget smaller than one query: each runs alone.
    service = _service(archive, settings, 1)
    first = _run(service, LARGE)
    second: list[QueryOutput] = []
    waiter = threading.Thread(target=lambda: second.append(_run(service, LARGE)), daemon=True)
    waiter.start()
    for _ in range(2000):
        if service.budget.waiting:
            break
        time.sleep(0.005)
    assert service.budget.waiting == 1 and not second
    assert sum(len(chunk) for chunk in first.chunks) > 0  # sent: its share comes back
    waiter.join(30)
    assert second and service.budget.running == 1
    assert sum(len(chunk) for chunk in second[0].chunks) > 0
    assert service.budget.running == 0


def test_a_sync_query_gets_503_when_memory_stays_taken(settings: Settings, tmp_path: Path) -> None:
    app = uws_app(uws_settings(settings, tmp_path, query_timeout=0.5))
    with TestClient(app, raise_server_exceptions=False) as client:
        budget = app.state.context.queries.budget
        held = budget.reserve(budget.total)
        r = client.post("/tap/sync", data={"LANG": "ADQL", "QUERY": LARGE})
        assert r.status_code == 503
        message = query_status(read_votable(r.content))[0][1]
        assert "memory" in message and "async job" in message
        held.close()
        # Once memory is free the query runs (a narrow one: the whole 991-column Object
        # might not finish within this app's 0.5 s time limit on a loaded machine).
        narrow = f"SELECT TOP 3000 objectId, coord_ra, coord_dec FROM {OBJECT}"
        r = client.post("/tap/sync", data={"LANG": "ADQL", "QUERY": narrow})
        assert r.status_code == 200
        assert budget.used == 0


def test_an_async_job_waits_for_memory_instead_of_failing(
    settings: Settings, tmp_path: Path
) -> None:
    app = uws_app(uws_settings(settings, tmp_path))
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as client:
        budget = app.state.context.queries.budget
        held = budget.reserve(budget.total)
        job_id = create(client, QUERY=LARGE, PHASE="RUN")
        for _ in range(2000):
            if budget.waiting:
                break
            time.sleep(0.005)
        assert budget.waiting == 1
        phase = client.get(f"/tap/async/{job_id}/phase").text
        assert phase == "EXECUTING"
        held.close()
        assert wait_final(client, job_id) == "COMPLETED"
        assert budget.used == 0


def test_the_budget_is_split_between_workers_and_duckdb(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, memory_budget="2GiB", workers=4)
    assert settings.process_memory_budget() == 512 * 1024**2
    # DuckDB's limit defaults to half a process's share; the rest streams results.
    assert parse_bytes(settings.memory_limit) == 256 * 1024**2
    assert settings.stream_memory_budget() == 256 * 1024**2
    default = Settings(data_dir=tmp_path)
    assert parse_bytes(default.memory_limit) <= 2 * 1000**3
    assert default.stream_memory_budget() > 0


def test_a_duckdb_limit_that_leaves_nothing_to_stream_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"memory_limit .* leaves nothing"):
        Settings(data_dir=tmp_path, memory_budget="1GiB", workers=2, memory_limit="1GB")
    fine = Settings(data_dir=tmp_path, memory_budget="1GiB", workers=2, memory_limit="100MB")
    assert fine.stream_memory_budget() == 512 * 1024**2 - 100 * 1000**2


def test_the_supervisor_of_workers_does_not_load_the_service(demo_dir: Path) -> None:
    """``serve --workers N``: the supervisor checks that the app starts in a child process, so
    it never holds the service's few hundred MiB itself; the workers learn how many share the
    memory budget."""
    code = textwrap.dedent(
        """
        import os, sys
        import skyvault.cli as cli
        def serve(*args):
            loaded = "skyvault.service.app" in sys.modules or "duckdb" in sys.modules
            print("loaded" if loaded else "light", os.environ["SKYVAULT_WORKERS"])
        cli._serve_workers = serve
        sys.exit(cli.main(sys.argv[1:]))
        """
    )
    args = ["serve", "--data", str(demo_dir), "--workers", "3", "--port", "0"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    run = [sys.executable, "-c", code]
    done = subprocess.run([*run, *args], check=False, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "light 3"
    # A service that cannot start is still refused before any worker starts.
    missing = [*args[:2], str(demo_dir / "nothing"), *args[3:]]
    failed = subprocess.run([*run, *missing], check=False, capture_output=True, text=True, env=env)
    assert failed.returncode == 2 and "no data directory" in failed.stderr
