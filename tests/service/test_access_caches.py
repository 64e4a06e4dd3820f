"""The per-process caches of the request path never let a caller see another's tables, and
a grant change applies to the very next request.

The grant snapshot, the visible-table lists and the ``/tables`` documents are kept between
requests (`auth/access.py`, `services/vosi.py`); these tests send requests of callers with
different groups alternately to one server, and change grants from outside the server
process (the ``skyvault grant`` command) while it runs.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from skyvault.service.app import create_app
from tests.service.security_world import (
    HIDDEN,
    PLANS_ROWS,
    World,
    bearer,
    build_world,
    world_settings,
)

COUNT = f"SELECT COUNT(*) AS n FROM {HIDDEN}"


@pytest.fixture
def world(tmp_path: Path) -> World:
    return build_world(tmp_path)


@pytest.fixture
def client(world: World) -> Iterator[TestClient]:
    settings = world_settings(world, "jobs")
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


def _sees_plans(client: TestClient, headers: dict[str, str]) -> tuple[bool, bool, bool]:
    """Whether the caller finds the hidden table in /tables, in TAP_SCHEMA, and by ADQL."""
    tables = client.get("/tap/tables", headers=headers)
    assert tables.status_code == 200
    schema = client.post(
        "/tap/sync",
        data={
            "LANG": "ADQL",
            "QUERY": "SELECT table_name FROM TAP_SCHEMA.tables",
            "RESPONSEFORMAT": "csv",
        },
        headers=headers,
    )
    assert schema.status_code == 200
    count = client.post(
        "/tap/sync", data={"LANG": "ADQL", "QUERY": COUNT, "RESPONSEFORMAT": "csv"}, headers=headers
    )
    if count.status_code == 200:
        assert count.text.split() == ["n", str(PLANS_ROWS)]
    else:
        assert count.status_code == 400 and 'no schema "Secret"' in count.text
    return "Plans" in tables.text, "Secret.Plans" in schema.text, count.status_code == 200


def _grant(world: World, *args: str) -> None:
    """``skyvault grant|revoke ...`` in a process of its own, as an operator runs it."""
    subprocess.run(
        [sys.executable, "-m", "skyvault.cli", *args, "--data", str(world.data)],
        check=True,
        capture_output=True,
    )


def test_callers_asked_alternately_see_only_their_tables(client: TestClient, world: World) -> None:
    """alice (spies) sees the restricted table; bob (crew) and an anonymous caller do not —
    in /tables, TAP_SCHEMA and ADQL — however their requests interleave; and /tables is
    built once per kind of access, not per request."""
    alice, bob, anonymous = bearer(world.alice), bearer(world.bob), {}
    for _ in range(3):
        assert _sees_plans(client, alice) == (True, True, True)
        assert _sees_plans(client, bob) == (False, False, False)
        assert _sees_plans(client, anonymous) == (False, False, False)
    builds = client.app.state.context.tablesets.builds  # type: ignore[attr-defined]
    assert builds == 2  # alice's document, and the one bob and anonymous callers share
    assert client.get("/tap/tables", headers=bob).text == client.get("/tap/tables").text
    assert client.get("/tap/tables?detail=min", headers=alice).text.count("<column>") == 0


def test_a_grant_applies_to_the_next_request(client: TestClient, world: World) -> None:
    """`skyvault grant` / `revoke` from another process, while the server runs and has its
    lists cached: bob's very next request sees the change; alice's access stays hers."""
    bob, alice = bearer(world.bob), bearer(world.alice)
    assert _sees_plans(client, bob) == (False, False, False)
    _grant(world, "grant", "Secret.Plans", "--group", "crew")
    assert _sees_plans(client, bob) == (True, True, True)
    assert _sees_plans(client, alice) == (True, True, True)
    _grant(world, "revoke", "Secret.Plans", "--group", "crew")
    assert _sees_plans(client, bob) == (False, False, False)
    _grant(world, "revoke", "Secret", "--group", "spies")
    assert _sees_plans(client, alice) == (False, False, False)
    assert _sees_plans(client, {}) == (False, False, False)
