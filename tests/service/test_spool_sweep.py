"""At start-up the service removes the FITS spool files crashed processes left, and only
those: the spool directory may be shared by live server processes and other hosts."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from skyvault.config import Settings
from skyvault.service.app import create_app

DAY = 24 * 3600


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@pytest.fixture
def live_pid() -> Iterator[int]:
    """A process of this host, alive while the test runs (not this one)."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield process.pid
    finally:
        process.kill()
        process.wait()


def _leave(directory: Path, name: str, age: float = 0.0) -> Path:
    path = directory / name
    path.write_bytes(b"ARROW1")
    if age:
        then = time.time() - age
        os.utime(path, (then, then))
    return path


def test_start_up_removes_only_spool_files_of_dead_processes_of_this_host(
    tmp_path: Path, live_pid: int
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    host = socket.gethostname()
    dead = _dead_pid()
    gone = {
        _leave(spool, f"skyvault-fits-{host}-{dead}-k3j_x9ab.arrows"),
        _leave(spool, "skyvault-fits-q8w_2mzt.arrows", age=2 * DAY),  # the old naming
    }
    kept = {
        _leave(spool, f"skyvault-fits-{host}-{os.getpid()}-a1b2c3d4.arrows"),  # this process
        _leave(spool, f"skyvault-fits-{host}-{live_pid}-e5f6g7h8.arrows"),  # another, alive
        _leave(spool, f"skyvault-fits-another-host.example-{dead}-i9j0k1l2.arrows"),
        _leave(spool, "skyvault-fits-z7y_6xwv.arrows", age=DAY / 2),  # old naming, recent
        _leave(spool, f"other-{host}-{dead}-k3j_x9ab.arrows"),  # not a spool file
    }
    data = tmp_path / "data"
    data.mkdir()
    app = create_app(Settings(data_dir=data, spool_dir=spool))
    with TestClient(app) as client:
        assert client.get("/tap/availability").status_code == 200
        assert not any(path.exists() for path in gone)
        assert set(spool.iterdir()) == kept
