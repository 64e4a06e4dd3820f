"""Fixtures for the web edge: one small demo build, an in-process client, a live server."""

from __future__ import annotations

import contextlib
import io
import socket
import subprocess
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from astropy.io.votable import parse
from astropy.io.votable.tree import VOTableFile
from fastapi import FastAPI
from fastapi.testclient import TestClient

from skyvault.auth import AuthSettings
from skyvault.config import Settings
from skyvault.service.app import create_app


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small DP0.2-style demo, built once per session (a few seconds), its schemas —
    the catalogues and the image collections — granted to PUBLIC (tables are private until
    granted) as ``skyvault demo`` (``make demo``) does."""
    from skyvault.auth import AuthStorage, grant_access
    from skyvault.demo import build_demo

    root = tmp_path_factory.mktemp("demo")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_demo(root, scale="small")
    storage = AuthStorage.for_data_dir(root)
    try:
        for schema in ("dp02_dc2_catalogs", "dp02_calexp", "dp02_deepcoadd"):
            grant_access(storage, schema, None)
    finally:
        storage.close()
    return root


#: Per-user limits out of the way of tests that are about something else (many anonymous
#: jobs at once); the limits themselves are tested in test_security.py.
ROOMY_AUTH = AuthSettings(
    max_running=1000,
    max_queued=10_000,
    max_pending=10_000,
    anonymous_max_running=1000,
    anonymous_max_queued=10_000,
    anonymous_max_pending=10_000,
)


@pytest.fixture(scope="session")
def settings(demo_dir: Path) -> Settings:
    return Settings(
        data_dir=demo_dir,
        maxrec_default=1000,
        maxrec_limit=5000,
        query_timeout=60,
        auth=ROOMY_AUTH,
    )


@pytest.fixture(scope="session")
def client(settings: Settings) -> Iterator[TestClient]:
    """An in-process client; server faults come back as responses, not exceptions."""
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def live_url(settings: Settings) -> Iterator[str]:
    """A real uvicorn server in a thread; yields the TAP base URL."""
    port = _free_port()
    live = settings.model_copy(update={"port": port})
    with serve_in_thread(create_app(live), port) as url:
        yield url


@contextlib.contextmanager
def serve_in_thread(app: FastAPI, port: int) -> Iterator[str]:
    """Run ``app`` with uvicorn in a daemon thread on ``port``; yields the TAP base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/tap"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def wait_until_serving(url: str, process: subprocess.Popen[bytes], seconds: float = 60) -> None:
    """Return once the server ``process`` started answers ``url``/availability."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(f"{url}/availability", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert process.poll() is None, "the server exited"
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.1)


def read_votable(data: bytes) -> VOTableFile:
    """A VOTable parsed by astropy (warnings allowed: they are checked by votlint)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return parse(io.BytesIO(data))


def query_status(document: VOTableFile) -> list[tuple[str, str]]:
    """``(value, content)`` of every QUERY_STATUS INFO of the results resource."""
    resource = document.resources[0]
    return [(i.value, i.content or "") for i in resource.infos if i.name == "QUERY_STATUS"]
