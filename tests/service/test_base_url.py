"""The TAP base URL taken from a request is Starlette's ``request.base_url`` plus the path
prefix, for each request on its own (kept per scheme, server, Host header and root path)."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.testclient import TestClient

from skyvault.service.context import ServiceContext


def _request(host: bytes | None, **scope: Any) -> Request:
    headers = [(b"host", host)] if host is not None else []
    return Request(
        {
            "type": "http",
            "method": "GET",
            "path": "/tap/sync",
            "query_string": b"",
            "headers": headers,
            "scheme": "http",
            "server": ("127.0.0.1", 8000),
            "root_path": "",
            **scope,
        }
    )


def _context(client: TestClient) -> ServiceContext:
    context: ServiceContext = client.app.state.context  # type: ignore[attr-defined]
    return context


def test_each_request_gets_its_own_base_url(client: TestClient) -> None:
    context = _context(client)
    requests = [
        _request(b"a.example"),
        _request(b"b.example:8080"),
        _request(b"a.example", scheme="https"),
        _request(None),
        _request(None, server=("10.0.0.1", 80)),
        _request(None, server=["10.0.0.2", 8080]),  # a list, as Starlette's test client has it
        _request(b"a.example", root_path="/proxy"),
        _request(b"a.example", app_root_path="/app", root_path="/app/tap"),
    ]
    for _ in range(2):  # the second time from what was kept
        for request in requests:
            expected = str(_request_copy(request).base_url).rstrip("/") + "/tap"
            assert context.base_url(request) == expected
            assert context.public_base_url() == expected
    assert context.base_url(_request(b"b.example:8080")) == "http://b.example:8080/tap"


def test_many_hosts_do_not_grow_what_is_kept(client: TestClient) -> None:
    context = _context(client)
    for i in range(500):
        url = context.base_url(_request(f"h{i}.example".encode()))
        assert url == f"http://h{i}.example/tap"
    assert len(context._base_urls) <= 64


def _request_copy(request: Request) -> Request:
    return Request(dict(request.scope))
