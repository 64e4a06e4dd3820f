"""A live server in the benchmark's own process: uvicorn serving an app in a thread.

For benchmarks that build the app themselves (their own :class:`~skyvault.config.Settings`)
or share its data directory with in-process calls; a ``skyvault serve`` subprocess is
``bench_tap.Server``.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

from fastapi import FastAPI


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def serve_in_thread(app: FastAPI, port: int) -> Iterator[str]:
    """uvicorn serving ``app`` in a thread on ``port``; yields the TAP URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/tap"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
