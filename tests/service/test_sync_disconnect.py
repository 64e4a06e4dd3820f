"""A sync client that goes away stops its query, over a real uvicorn server.

The queries here run for a minute or so if nobody stops them: a UNION ALL whose first part
streams rows at once and whose second part is a nested-loop join of 160k x 160k rows that
matches nothing, and the COUNT(*) of such a join.  The client reads what the server sends,
closes the socket, and the query's running slot must be free within two seconds.  The slot
is given back only once the chunk being made returns, which for these queries means DuckDB
was interrupted; the audit line says ``query.cancelled``.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
from fastapi import FastAPI

from skyvault.config import Settings
from skyvault.formats.fits import SPOOL_PREFIX
from skyvault.service.app import create_app
from tests.service.conftest import _free_port, serve_in_thread
from tests.service.test_uws import SLOW, uws_settings

FS = "dp02_dc2_catalogs.ForcedSource"


def stalling(seed: float) -> str:
    """Rows at once (the first part), then a minute of a join that matches nothing
    (``seed`` makes the text of each test's query its own, for the audit lines)."""
    return (
        f"SELECT band AS x FROM {FS} UNION ALL "
        f"SELECT a.band AS x FROM {FS} AS a, {FS} AS b WHERE a.psfFlux - b.psfFlux = {seed}"
    )


@dataclass
class Live:
    url: str
    app: FastAPI
    audit: Path
    spool: Path

    def running(self) -> int:
        return int(self.app.state.context.sync.running(None))

    def audit_lines(self, query: str) -> list[dict[str, object]]:
        if not self.audit.exists():
            return []
        lines = [json.loads(line) for line in self.audit.read_text().splitlines()]
        return [line for line in lines if line.get("query") == query]


@pytest.fixture(scope="module")
def live(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("sync-disconnect")
    port = _free_port()
    audit, spool = root / "audit.jsonl", root / "spool"
    changes = {
        "port": port,
        "maxrec_limit": 10_000_000,
        "query_timeout": 300,
        "spool_dir": spool,
        "auth": settings.auth.model_copy(update={"audit_log": audit}),
    }
    app = create_app(uws_settings(settings, root, **changes))
    with serve_in_thread(app, port) as url:
        yield Live(url, app, audit, spool)


def _request(url: str, **params: str) -> socket.socket:
    """A raw GET /sync: the test decides when the connection ends."""
    parts = urlsplit(url)
    query = urlencode({"LANG": "ADQL", "MAXREC": "10000000", **params})
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    sock.sendall(
        f"GET {parts.path}/sync?{query} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        "Connection: close\r\n\r\n".encode()
    )
    return sock


def _read_until_quiet(sock: socket.socket, quiet: float = 1.0) -> bytes:
    """Everything the server sends until it has sent nothing for ``quiet`` seconds."""
    received = bytearray()
    sock.settimeout(30)
    received += sock.recv(65536)  # the first bytes
    sock.settimeout(quiet)
    try:
        while data := sock.recv(65536):
            received += data
    except TimeoutError:
        pass
    return bytes(received)


def _within(seconds: float, condition: Callable[[], bool]) -> float:
    """Seconds until ``condition()`` held; fails after ``seconds``."""
    started = time.monotonic()
    while not condition():
        elapsed = time.monotonic() - started
        assert elapsed < seconds, f"not within {seconds} s"
        time.sleep(0.02)
    return time.monotonic() - started


def _cancelled(live: Live, query: str) -> None:
    lines = live.audit_lines(query)
    assert [(line["outcome"], line["error"]) for line in lines] == [("error", "query.cancelled")]


def test_client_gone_mid_stream_stops_the_query(live: Live) -> None:
    query = stalling(0.123456)
    sock = _request(live.url, QUERY=query, RESPONSEFORMAT="csv")
    received = _read_until_quiet(sock)
    # Rows went out (the CSV header and many rows), and the query is now in its slow
    # part, holding the slot.
    assert received.startswith(b"HTTP/1.1 200") and b"\r\nx\r\n" in received
    assert received.count(b"\r\n") > 1000
    assert live.running() == 1
    sock.close()
    _within(2.0, lambda: live.running() == 0)
    _within(2.0, lambda: bool(live.audit_lines(query)))
    _cancelled(live, query)


@pytest.mark.parametrize(
    ("query", "fmt"),
    [(SLOW, "votable"), (stalling(0.654321), "fits")],
    ids=["compiling-first-batch", "fits-spooling"],
)
def test_client_gone_before_the_first_byte_stops_the_query(
    live: Live, query: str, fmt: str
) -> None:
    """Before the response starts: the first batch is being computed (COUNT of a join), or
    a FITS result is being spooled (its first rows are in the spool file)."""
    sock = _request(live.url, QUERY=query, RESPONSEFORMAT=fmt)
    _within(10.0, lambda: live.running() == 1)
    if fmt == "fits":
        _within(10.0, lambda: bool(list(live.spool.glob(f"{SPOOL_PREFIX}*"))))
    else:
        time.sleep(0.5)
    sock.settimeout(0.2)
    with pytest.raises(TimeoutError):
        sock.recv(1)  # nothing sent yet
    sock.close()
    _within(2.0, lambda: live.running() == 0)
    assert list(live.spool.glob(f"{SPOOL_PREFIX}*")) == []
    _within(2.0, lambda: bool(live.audit_lines(query)))
    _cancelled(live, query)


def test_a_finished_query_is_not_cancelled(live: Live) -> None:
    """The end of a response (which the server also sees as a disconnection) is no
    cancellation: the audit line says ok and the spool is gone."""
    query = f"SELECT TOP 70000 band FROM {FS}"
    for fmt in ("csv", "fits"):
        sock = _request(live.url, QUERY=query, RESPONSEFORMAT=fmt)
        data = bytearray()
        while chunk := sock.recv(65536):
            data += chunk
        sock.close()
        assert data.startswith(b"HTTP/1.1 200")
    _within(2.0, lambda: len(live.audit_lines(query)) == 2)
    assert [line["error"] for line in live.audit_lines(query)] == [None, None]
    assert [line["rows"] for line in live.audit_lines(query)] == [70000, 70000]
    assert live.running() == 0
    assert list(live.spool.glob(f"{SPOOL_PREFIX}*")) == []


def test_client_gone_while_fits_is_sent_removes_the_spool(live: Live) -> None:
    """A FITS result is sent from its spool file; a client that stops reading and goes
    away ends the response, and the file is removed at once."""
    query = f"SELECT TOP 3000000 a.forcedSourceId, b.forcedSourceId AS f2 FROM {FS} AS a, {FS} AS b"
    sock = _request(live.url, QUERY=query, RESPONSEFORMAT="fits")
    sock.settimeout(60)
    received = sock.recv(65536)
    assert received.startswith(b"HTTP/1.1 200")
    assert len(list(live.spool.glob(f"{SPOOL_PREFIX}*"))) == 1  # the rows are sent from it
    sock.close()
    _within(2.0, lambda: live.running() == 0)
    assert list(live.spool.glob(f"{SPOOL_PREFIX}*")) == []
    _within(2.0, lambda: bool(live.audit_lines(query)))
    _cancelled(live, query)
