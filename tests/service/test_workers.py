"""``skyvault serve --workers 2``: several server processes on one socket, sharing jobs.

Each worker process is a replica with its own archive and job runner over the one job
database, so a job created through one process can be run, waited for and fetched through
any of them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import pyvo

from tests.service.conftest import _free_port, wait_until_serving

pytestmark = pytest.mark.slow

CONE = (
    "SELECT objectId, coord_ra, coord_dec FROM dp02_dc2_catalogs.Object WHERE "
    "CONTAINS(POINT('ICRS', coord_ra, coord_dec), CIRCLE('ICRS', 62.0, -37.0, 0.3)) = 1"
)


@pytest.fixture(scope="module")
def two_workers(demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    env = dict(os.environ, SKYVAULT_AUTH_ANONYMOUS_MAX_RUNNING="50")
    log = tmp_path_factory.mktemp("workers") / "serve.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "skyvault.cli", "serve", "--data", str(demo_dir),
             "--port", str(port), "--workers", "2", "--log-level", "warning"],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}/tap"
    try:
        wait_until_serving(url, server)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_sync_queries_on_keep_alive_connections(two_workers: str) -> None:
    service = pyvo.dal.TAPService(two_workers)
    first = service.run_sync(CONE).to_table()
    assert len(first) > 10
    with httpx.Client() as client:
        for _ in range(5):
            response = client.post(
                f"{two_workers}/sync", data={"LANG": "ADQL", "QUERY": CONE, "FORMAT": "csv"}
            )
            assert response.status_code == 200
            assert response.text.count("\n") == len(first) + 1


def test_async_jobs_are_shared_by_the_workers(two_workers: str) -> None:
    """Create, run, wait and fetch each on a new connection: any process may answer each."""
    service = pyvo.dal.TAPService(two_workers)
    for _ in range(4):
        job = service.submit_job(CONE)
        job.run()
        job.wait(phases=["COMPLETED", "ERROR", "ABORTED"], timeout=30)
        assert job.phase == "COMPLETED"
        assert len(job.fetch_result().to_table()) > 10
        job.delete()


def test_bad_worker_counts_and_busy_ports_are_usage_errors(
    demo_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    from skyvault.cli import main

    base = ["serve", "--data", str(demo_dir), "--log-level", "warning"]
    assert main([*base, "--workers", "0"]) == 2
    assert "--workers must be 1 or more" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main([*base, "--workers", "2", "--port", str(port)]) == 2
    captured = capsys.readouterr()
    assert f"cannot listen on 127.0.0.1:{port}" in captured.err
    assert "TAP service at" not in captured.out  # refused before anything was started
