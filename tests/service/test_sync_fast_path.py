"""``/sync`` is served without FastAPI's router and middleware (``SkyvaultApp``), and answers
exactly as the routed endpoint does: the same statuses, headers and bodies for results,
ADQL errors, refused credentials, limits and faults of the server."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from skyvault.auth import AuthSettings, Identity
from skyvault.service import app as app_module
from skyvault.service.app import SkyvaultApp, create_app
from skyvault.service.handlers import tap
from tests.service.security_world import HIDDEN, World, bearer, build_world, world_settings

HEADERS = ("content-type", "content-disposition", "retry-after", "www-authenticate")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("fastpath"))


@pytest.fixture(scope="module")
def app(world: World) -> Iterator[SkyvaultApp]:
    auth = AuthSettings(anonymous_max_running=1)
    settings = world_settings(world, "jobs", auth=auth, max_upload_bytes=1000, sync_slot_wait=0.2)
    application = create_app(settings)
    assert isinstance(application, SkyvaultApp)
    with TestClient(application, raise_server_exceptions=False) as client:
        application.state.client = client  # one client: its lifespan opens the archive once
        yield application


def _answer(app: SkyvaultApp, fast: bool, method: str, **request: Any) -> tuple[Any, ...]:
    path = app.sync_path
    app.sync_path = path if fast else None
    try:
        r = app.state.client.request(method, "/tap/sync", **request)
    finally:
        app.sync_path = path
    headers = tuple((h, tuple(r.headers.get_list(h))) for h in HEADERS)
    return r.status_code, headers, r.content


def _query(text: str, fmt: str = "csv") -> dict[str, str]:
    return {"LANG": "ADQL", "QUERY": text, "RESPONSEFORMAT": fmt}


CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("result", "POST", {"data": _query("SELECT TOP 3 id FROM pub.stars ORDER BY id")}),
    ("votable", "GET", {"params": _query("SELECT TOP 2 id, ra FROM pub.stars", "votable")}),
    ("syntax", "POST", {"data": _query("SELECT FROM WHERE")}),
    ("hidden", "POST", {"data": _query(f"SELECT * FROM {HIDDEN}")}),
    ("no-query", "POST", {"data": {"LANG": "ADQL"}}),
    ("bad-format", "POST", {"data": _query("SELECT 1 AS x", "nonsense")}),
    ("garbled-token", "POST", {"data": _query("SELECT 1 AS x"), "headers": bearer("nope")}),
    ("too-large", "POST", {"data": {"LANG": "ADQL", "QUERY": "SELECT 1 AS x", "p": "x" * 70_000}}),
]


@pytest.mark.parametrize(("name", "method", "request_"), CASES, ids=[c[0] for c in CASES])
def test_the_fast_path_answers_as_the_route(
    app: SkyvaultApp, world: World, name: str, method: str, request_: dict[str, Any]
) -> None:
    request_ = dict(request_)
    request_.setdefault("headers", bearer(world.alice))
    fast = _answer(app, True, method, **request_)
    routed = _answer(app, False, method, **request_)
    assert fast == routed
    assert fast[0] != 500


def test_limits_and_faults_answer_as_the_route(
    app: SkyvaultApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An anonymous caller with no running slots (429 + Retry-After after the wait), and a
    fault inside the handler (500, nothing about the server; raised again for the log)."""
    one = {"data": _query("SELECT 1 AS x")}
    context = app.state.context
    anonymous = replace(Identity.anonymous(), client="testclient")  # TestClient's address
    context.sync.take(anonymous, context.auth.limits, 0, retry_after=5)
    try:
        limited = _answer(app, True, "POST", **one)
        assert limited == _answer(app, False, "POST", **one) and limited[0] == 429
    finally:
        context.sync.release(anonymous)

    def broken(pairs: object) -> None:
        raise RuntimeError("/secret/server/path exploded")

    monkeypatch.setattr(tap, "collect_params", broken)
    fast = _answer(app, True, "POST", **one)
    assert fast == _answer(app, False, "POST", **one)
    assert fast[0] == 500 and b"/secret" not in fast[2]
    raising = TestClient(app)  # no `with`: the module's client runs the lifespan
    with pytest.raises(RuntimeError):  # raised again, as the routed path does
        raising.post("/tap/sync", **one)


def test_sync_skips_the_middleware_stack(app: SkyvaultApp, world: World) -> None:
    """A /sync request never enters the middleware stack (the point of the fast path); other
    paths do, and so does /sync once a middleware or a dependency override is added."""
    entered: list[str] = []
    client = app.state.client
    stack = app.middleware_stack
    assert stack is not None

    async def spy(scope: Any, receive: Any, send: Any) -> None:
        entered.append(scope["path"])
        await stack(scope, receive, send)

    one = {"data": _query("SELECT TOP 1 id FROM pub.stars"), "headers": bearer(world.alice)}
    app.middleware_stack = spy
    try:
        assert client.post("/tap/sync", **one).status_code == 200 and entered == []
        assert client.get("/tap/availability").status_code == 200
        assert entered == ["/tap/availability"]
        app.dependency_overrides[tap.current_identity] = tap.current_identity
        assert client.post("/tap/sync", **one).status_code == 200
        assert entered[-1] == "/tap/sync"
    finally:
        app.dependency_overrides.clear()
        app.middleware_stack = stack


def test_telemetry_turned_on_takes_the_route_within_a_second(
    app: SkyvaultApp, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FastAPI's telemetry, once on, gets /sync requests through the routed path (which
    traces them); whether it is on is asked at most once a second."""
    fast: list[str] = []
    serve_sync = tap.serve_sync

    async def spy(scope: Any, receive: Any, send: Any, handlers: Any) -> None:
        fast.append(scope["path"])
        await serve_sync(scope, receive, send, handlers)

    class Telemetry:
        asked = 0
        on = False

        def enabled(self) -> bool:
            self.asked += 1
            return self.on

    telemetry = Telemetry()
    monkeypatch.setattr(tap, "serve_sync", spy)
    monkeypatch.setattr(app, "_native_telemetry", telemetry, raising=False)
    monkeypatch.setattr(app_module, "TELEMETRY_RECHECK_S", 3600.0)  # no look by itself
    app.telemetry_seen = (-1e9, False)
    client = app.state.client
    one = {"data": _query("SELECT TOP 1 id FROM pub.stars"), "headers": bearer(world.alice)}
    try:
        for _ in range(3):
            assert client.post("/tap/sync", **one).status_code == 200
        assert len(fast) == 3 and telemetry.asked == 1
        telemetry.on = True
        assert client.post("/tap/sync", **one).status_code == 200
        assert len(fast) == 4  # not asked again yet
        seen, on = app.telemetry_seen
        app.telemetry_seen = (seen - 3600.0, on)  # as if the time had passed
        client.post("/tap/sync", **one)  # (this stand-in is not a whole telemetry object)
        assert len(fast) == 4 and telemetry.asked >= 2  # (FastAPI asks too, routing)
    finally:
        app.telemetry_seen = (-1e9, False)
