"""Jobs survive ``kill -9``: a real ``skyvault serve`` is killed while a job runs, then
started again on the same job database and result store.

Afterwards: the finished job and its result are intact, the job that was running is in
ERROR saying the service restarted, the pending job is still PENDING, the queued job runs,
and no job is left in EXECUTING.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from skyvault.service.uws.models import ExecutionPhase
from skyvault.service.uws.storage import JobStore
from tests.service.conftest import _free_port, wait_until_serving
from tests.service.test_uws import NS, SLOW, SMALL

pytestmark = pytest.mark.slow


class Server:
    """``skyvault serve`` in a subprocess, with the job settings in its environment."""

    def __init__(self, data: Path, jobs_root: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/tap"
        self.env = {
            **os.environ,
            "SKYVAULT_JOBS_DATABASE_URL": f"sqlite:///{jobs_root / 'jobs.sqlite3'}",
            "SKYVAULT_RESULTS_URL": str(jobs_root / "results"),
            "SKYVAULT_JOB_WORKERS": "1",
        }
        self.args = [sys.executable, "-m", "skyvault.cli", "serve", "--data", str(data),
                     "--port", str(self.port), "--log-level", "warning"]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.args, env=self.env)
        wait_until_serving(self.url, self.process)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def server(demo_dir: Path, tmp_path: Path) -> Iterator[Server]:
    live = Server(demo_dir, tmp_path)
    yield live
    live.stop()


def _create(url: str, query: str, run: bool) -> str:
    data = {"LANG": "ADQL", "QUERY": query, **({"PHASE": "RUN"} if run else {})}
    r = httpx.post(f"{url}/async", data=data, timeout=30)
    assert r.status_code == 303
    return r.headers["location"].rsplit("/", 1)[-1]


def _phase(url: str, job_id: str, wait: int = 0) -> str:
    params = {"WAIT": str(wait)} if wait else {}
    r = httpx.get(f"{url}/async/{job_id}", params=params, timeout=wait + 30)
    assert r.status_code == 200, r.text
    phase = ET.fromstring(r.content).find("uws:phase", NS)
    assert phase is not None and phase.text
    return phase.text


def _until(url: str, job_id: str, phases: set[str], seconds: float = 30) -> str:
    deadline = time.monotonic() + seconds
    while (phase := _phase(url, job_id, wait=2)) not in phases:
        assert time.monotonic() < deadline, f"{job_id} stayed {phase}"
    return phase


def test_kill_9_while_a_job_runs(server: Server, tmp_path: Path) -> None:
    server.start()
    url = server.url
    done = _create(url, SMALL, run=True)
    assert _until(url, done, {"COMPLETED"}) == "COMPLETED"
    result = httpx.get(f"{url}/async/{done}/results/result", timeout=30)
    assert result.status_code == 200
    running = _create(url, SLOW, run=True)
    assert _until(url, running, {"EXECUTING"}) == "EXECUTING"
    queued = _create(url, SMALL, run=True)  # one worker: waits behind the slow job
    assert _phase(url, queued) == "QUEUED"
    pending = _create(url, SMALL, run=False)

    server.kill()
    server.start()

    assert _phase(url, done) == "COMPLETED"
    again = httpx.get(f"{url}/async/{done}/results/result", timeout=30)
    assert again.status_code == 200 and again.content == result.content
    assert again.headers["content-type"] == result.headers["content-type"]

    assert _phase(url, running) == "ERROR"
    job = ET.fromstring(httpx.get(f"{url}/async/{running}", timeout=30).content)
    summary = job.find("uws:errorSummary", NS)
    assert summary is not None and summary.get("type") == "transient"
    message = summary.find("uws:message", NS)
    assert message is not None
    assert message.text == "the service restarted while this job ran; run it again"
    error = httpx.get(f"{url}/async/{running}/error", timeout=30)
    assert error.status_code == 200 and "the service restarted" in error.text

    assert _until(url, queued, {"COMPLETED", "ERROR"}) == "COMPLETED"
    assert _phase(url, pending) == "PENDING"

    store = JobStore(server.env["SKYVAULT_JOBS_DATABASE_URL"])
    try:
        assert store.count(ExecutionPhase.EXECUTING) == 0
    finally:
        store.close()
