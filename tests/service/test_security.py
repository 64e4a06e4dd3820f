"""Identity and group access on every endpoint: the security matrix and its companions.

The matrix is table-driven: each case is *who* (anonymous, alice, bob, a forged proxy
header, an expired / revoked / garbled token, Basic with the wrong user...), a request, the
status expected, and what the body must not contain — the restricted table's values,
columns, row count and group, and its name unless the request itself names it.  Queries
on the hidden table are also sent with the table's name changed into one that exists
nowhere: both answers must be identical (hidden is reported exactly as non-existent).
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from skyvault.auth import AuthSettings, AuthStorage
from skyvault.auth.storage import LimitOverrides
from skyvault.config import Settings
from skyvault.service.app import create_app
from tests.service.security_world import (
    HIDDEN,
    HIDDEN_NAMES,
    SECRETS,
    World,
    basic,
    bearer,
    build_world,
    twin,
    world_settings,
)

CHALLENGES = ['Bearer realm="skyvault"', 'Basic realm="skyvault"']


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("security"))


def _settings(world: World, name: str, **changes: Any) -> Settings:
    return world_settings(world, f"jobs-{name}", query_timeout=60, **changes)


def _client(settings: Settings) -> TestClient:
    return TestClient(create_app(settings), raise_server_exceptions=False, follow_redirects=False)


@pytest.fixture(scope="module")
def open_app(world: World) -> Iterator[TestClient]:
    """Anonymous access on (the default)."""
    with _client(_settings(world, "open")) as c:
        yield c


@pytest.fixture(scope="module")
def closed_app(world: World) -> Iterator[TestClient]:
    """Anonymous access off."""
    with _client(_settings(world, "closed", auth=AuthSettings(anonymous=False))) as c:
        yield c


@pytest.fixture(scope="module")
def group_app(world: World) -> Iterator[TestClient]:
    """Only members of ``spies`` may use the service."""
    with _client(_settings(world, "group", required_groups="spies")) as c:
        yield c


def _wait(client: TestClient, job_id: str, headers: dict[str, str]) -> str:
    deadline = time.monotonic() + 30
    while True:
        phase = client.get(f"/tap/async/{job_id}/phase", headers=headers).text
        if phase in ("COMPLETED", "ERROR", "ABORTED") or time.monotonic() > deadline:
            return phase
        client.get(f"/tap/async/{job_id}", params={"WAIT": "1"}, headers=headers)


def _create(client: TestClient, query: str, headers: dict[str, str], run: bool = True) -> str:
    data = {"LANG": "ADQL", "QUERY": query, "RESPONSEFORMAT": "csv"}
    if run:
        data["PHASE"] = "RUN"
    r = client.post("/tap/async", data=data, headers=headers)
    assert r.status_code == 303, r.text
    return r.headers["location"].rsplit("/", 1)[-1]


@pytest.fixture(scope="module")
def jobs(open_app: TestClient, world: World) -> dict[str, str]:
    """alice's finished, failed and pending jobs on the hidden table, and an anonymous job."""
    alice = bearer(world.alice)
    done = _create(open_app, f"SELECT COUNT(*) AS n FROM {HIDDEN}", alice)
    failed = _create(open_app, f"SELECT codename FROM {HIDDEN} WHERE nosuch > 1", alice)
    assert _wait(open_app, done, alice) == "COMPLETED"
    assert _wait(open_app, failed, alice) == "ERROR"
    assert "4099" in open_app.get(f"/tap/async/{done}/results/result", headers=alice).text
    assert "no column" in open_app.get(f"/tap/async/{failed}/error", headers=alice).text
    pending = _create(open_app, f"SELECT * FROM {HIDDEN}", alice, run=False)
    anonymous = _create(open_app, "SELECT TOP 1 id FROM pub.stars", {})
    return {"done": done, "failed": failed, "pending": pending, "anon": anonymous}


# --- the matrix -----------------------------------------------------------------------------

WHO = (
    "anon", "alice", "bob", "forged", "bob+forged", "expired", "revoked", "garbled",
    "unknown-key", "basic-alice", "basic-wrong-user", "basic-garbled", "digest",
)  # fmt: skip


def _headers(who: str, world: World) -> dict[str, str]:
    forged = {"X-Auth-Request-User": "alice", "X-Auth-Request-Groups": "spies"}
    key_id = world.alice.split("_")[1]
    return {
        "anon": {},
        "alice": bearer(world.alice),
        "bob": bearer(world.bob),
        "forged": forged,
        "bob+forged": {**bearer(world.bob), **forged},
        "expired": bearer(world.expired),
        "revoked": bearer(world.revoked),
        "garbled": {"Authorization": "Bearer not-a-token"},
        "unknown-key": bearer(f"sv_{key_id[::-1]}_{world.alice.split('_', 2)[2]}"),
        "basic-alice": basic("", world.alice),
        "basic-wrong-user": basic("bob", world.alice),
        "basic-garbled": {"Authorization": "Basic %%%not-base64%%%"},
        "digest": {"Authorization": 'Digest username="alice"'},
    }[who]


def _sync(query: str) -> tuple[str, str, dict[str, str]]:
    # CSV: a leaked value, name or count would be readable text (binary VOTable hides it)
    return ("POST", "/tap/sync", {"LANG": "ADQL", "QUERY": query, "RESPONSEFORMAT": "csv"})


@dataclass(frozen=True)
class Case:
    """One attempt: who, request, expected status; ``twin`` also compares the answer with
    the same request on a non-existent name; ``contains`` is for the positive controls."""

    id: str
    who: str
    app: str
    method: str
    path: str
    data: dict[str, str] = field(default_factory=dict)
    status: int = 200
    twin: bool = False
    contains: tuple[str, ...] = ()


def _q(id: str, who: str, query: str, status: int = 400, *, twin: bool = True) -> Case:
    method, path, data = _sync(query)
    return Case(id, who, "open", method, path, data, status, twin)


def _job(id: str, who: str, method: str, path: str, data: dict[str, str] | None = None) -> Case:
    status = 200 if path == "/tap/async" else 404
    return Case(id, who, "open", method, path, data or {}, status)


S = "pub.stars"
CASES: tuple[Case, ...] = (
    # /tables
    Case("tables-anon", "anon", "open", "GET", "/tap/tables"),
    Case("tables-bob", "bob", "open", "GET", "/tap/tables"),
    Case("tables-forged-proxy-header", "forged", "open", "GET", "/tap/tables"),
    Case("tables-bob-forged-header", "bob+forged", "open", "GET", "/tap/tables"),
    Case("tables-min-bob", "bob", "open", "GET", "/tap/tables?detail=min"),
    Case("table-anon", "anon", "open", "GET", f"/tap/tables/{HIDDEN}", status=404, twin=True),
    Case("table-bob", "bob", "open", "GET", f"/tap/tables/{HIDDEN}", status=404, twin=True),
    Case("table-bob-lower", "bob", "open", "GET", "/tap/tables/secret.plans", {}, 404, True),
    # TAP_SCHEMA
    _q("ts-schemas-bob", "bob", "SELECT * FROM TAP_SCHEMA.schemas", 200, twin=False),
    _q("ts-tables-bob", "bob", "SELECT * FROM TAP_SCHEMA.tables", 200, twin=False),
    _q("ts-columns-bob", "bob", "SELECT * FROM TAP_SCHEMA.columns", 200, twin=False),
    _q("ts-keys-anon", "anon", "SELECT * FROM TAP_SCHEMA.keys", 200, twin=False),
    _q("ts-key-columns-anon", "anon", "SELECT * FROM TAP_SCHEMA.key_columns", 200, twin=False),
    _q("ts-columns-like-anon", "anon",
       "SELECT table_name, column_name FROM TAP_SCHEMA.columns WHERE table_name LIKE '%lans%'",
       200, twin=False),
    _q("ts-count-forged", "forged",
       "SELECT COUNT(*) AS n FROM TAP_SCHEMA.columns WHERE column_name = 'codename'",
       200, twin=False),
    # ADQL: every way of reaching the table
    _q("direct-bob", "bob", f"SELECT * FROM {HIDDEN}"),
    _q("direct-anon", "anon", f"SELECT * FROM {HIDDEN}"),
    _q("direct-forged", "forged", f"SELECT * FROM {HIDDEN}"),
    _q("odd-case-bob", "bob", "SELECT * FROM sEcReT.pLaNs"),
    _q("quoted-bob", "bob", 'SELECT * FROM "Secret"."Plans"'),
    _q("quoted-anon", "anon", 'SELECT TOP 1 * FROM "Secret"."Plans" AS p'),
    _q("unqualified-bob", "bob", "SELECT * FROM Plans"),
    _q("join-bob", "bob", f"SELECT s.id FROM {S} AS s JOIN {HIDDEN} AS p ON s.id = p.plan_id"),
    _q("join-comma-anon", "anon", f"SELECT s.id FROM {S} AS s, {HIDDEN} AS p"),
    _q("in-subquery-bob", "bob", f"SELECT id FROM {S} WHERE id IN (SELECT plan_id FROM {HIDDEN})"),
    _q("exists-bob", "bob", f"SELECT id FROM {S} WHERE EXISTS (SELECT 1 FROM {HIDDEN})"),
    _q("from-subquery-bob", "bob", f"SELECT * FROM (SELECT * FROM {HIDDEN}) AS t"),
    _q("scalar-subquery-anon", "anon", f"SELECT id, (SELECT COUNT(*) FROM {HIDDEN}) FROM {S}"),
    _q("cte-bob", "bob", f"WITH x AS (SELECT * FROM {HIDDEN}) SELECT * FROM x"),
    _q("union-bob", "bob", f"SELECT id FROM {S} UNION SELECT plan_id FROM {HIDDEN}"),
    _q("count-bob", "bob", f"SELECT COUNT(*) FROM {HIDDEN}"),
    _q("count-anon", "anon", f"SELECT COUNT(*) AS n FROM {HIDDEN}"),
    _q("crossmatch-bob", "bob",
       f"SELECT s.id FROM {S} AS s JOIN {HIDDEN} AS p ON 1 = CONTAINS(POINT('ICRS', s.ra, "
       "s.dec), CIRCLE('ICRS', p.ra, p.dec, 0.01))"),
    _q("column-of-hidden-bob", "bob", f"SELECT p.codename FROM {HIDDEN} AS p"),
    # /examples: no example names a table the caller cannot see (here: none of the demo's)
    Case("examples-bob", "bob", "open", "GET", "/tap/examples"),
    # jobs: alice's jobs are "no such job" for everyone else, whatever the path
    _job("job-bob", "bob", "GET", "/tap/async/{done}"),
    _job("job-wait-bob", "bob", "GET", "/tap/async/{done}?WAIT=1"),
    _job("job-phase-bob", "bob", "GET", "/tap/async/{done}/phase"),
    _job("job-parameters-bob", "bob", "GET", "/tap/async/{done}/parameters"),
    _job("job-results-bob", "bob", "GET", "/tap/async/{done}/results"),
    _job("job-result-bob", "bob", "GET", "/tap/async/{done}/results/result"),
    _job("job-error-bob", "bob", "GET", "/tap/async/{failed}/error"),
    _job("job-owner-bob", "bob", "GET", "/tap/async/{done}/owner"),
    _job("job-quote-anon", "anon", "GET", "/tap/async/{done}/quote"),
    _job("job-duration-bob", "bob", "GET", "/tap/async/{pending}/executionduration"),
    _job("job-destruction-bob", "bob", "GET", "/tap/async/{done}/destruction"),
    _job("job-result-anon", "anon", "GET", "/tap/async/{done}/results/result"),
    _job("job-result-forged", "forged", "GET", "/tap/async/{done}/results/result"),
    _job("job-abort-bob", "bob", "POST", "/tap/async/{pending}/phase", {"PHASE": "ABORT"}),
    _job("job-run-bob", "bob", "POST", "/tap/async/{pending}/phase", {"PHASE": "RUN"}),
    _job("job-params-bob", "bob", "POST", "/tap/async/{pending}/parameters", {"MAXREC": "1"}),
    _job("job-destroy-bob", "bob", "POST", "/tap/async/{done}/destruction",
         {"DESTRUCTION": "2030-01-01T00:00:00Z"}),
    _job("job-post-delete-bob", "bob", "POST", "/tap/async/{done}", {"ACTION": "DELETE"}),
    _job("job-delete-bob", "bob", "DELETE", "/tap/async/{done}"),
    _job("list-bob", "bob", "GET", "/tap/async"),
    _job("list-anon", "anon", "GET", "/tap/async"),
    _job("list-forged", "forged", "GET", "/tap/async"),
    # credentials refused, never downgraded to anonymous
    Case("expired", "expired", "open", "GET", "/tap/tables", status=401),
    Case("revoked", "revoked", "open", "GET", "/tap/tables", status=401),
    Case("garbled", "garbled", "open", "GET", "/tap/tables", status=401),
    Case("unknown-key-id", "unknown-key", "open", "GET", "/tap/tables", status=401),
    Case("basic-wrong-user", "basic-wrong-user", "open", "GET", "/tap/tables", status=401),
    Case("basic-garbled", "basic-garbled", "open", "GET", "/tap/tables", status=401),
    Case("digest", "digest", "open", "GET", "/tap/tables", status=401),
    Case("expired-query", "expired", "open", *_sync(f"SELECT * FROM {HIDDEN}"), status=401),
    Case("revoked-job", "revoked", "open", "GET", "/tap/async/{done}", status=401),
    # anonymous access off: 401 with challenges everywhere but /availability
    Case("closed-capabilities", "anon", "closed", "GET", "/tap/capabilities", status=401),
    Case("closed-tables", "anon", "closed", "GET", "/tap/tables", status=401),
    Case("closed-sync", "anon", "closed", *_sync(f"SELECT * FROM {S}"), status=401),
    Case("closed-examples", "anon", "closed", "GET", "/tap/examples", status=401),
    Case("closed-async-list", "anon", "closed", "GET", "/tap/async", status=401),
    Case("closed-async-create", "anon", "closed", *_sync(f"SELECT * FROM {S}")[:1],
         "/tap/async", status=401),
    Case("closed-forged", "forged", "closed", "GET", "/tap/tables", status=401),
    Case("closed-bob-tables", "bob", "closed", "GET", "/tap/tables"),
    # a service only for a group: 403 for others who are known, 401 for unknown callers
    Case("group-bob", "bob", "group", "GET", "/tap/tables", status=403),
    Case("group-bob-capabilities", "bob", "group", "GET", "/tap/capabilities", status=403),
    Case("group-bob-query", "bob", "group", *_sync(f"SELECT * FROM {S}"), status=403),
    Case("group-anon", "anon", "group", "GET", "/tap/tables", status=401),
    # positive controls: what alice's access gives
    Case("alice-tables", "alice", "open", "GET", "/tap/tables", contains=(HIDDEN, "codename")),
    Case("alice-basic-query", "basic-alice", "open", *_sync("SELECT TOP 3 * FROM sEcReT.pLaNs"),
         contains=("NIGHTJAR",)),
    Case("alice-group-app", "alice", "group", "GET", f"/tap/tables/{HIDDEN}",
         contains=("budget_xyz",)),
)  # fmt: skip


def test_matrix_is_large_enough() -> None:
    refusals = [c for c in CASES if not c.contains]
    assert len(refusals) >= 40
    assert len({c.id for c in CASES}) == len(CASES)


def _send(client: TestClient, case: Case, path: str, headers: dict[str, str]) -> httpx.Response:
    data = case.data or None
    if case.method == "GET":
        return client.get(path, headers=headers)
    if case.method == "DELETE":
        return client.delete(path, headers=headers)
    return client.post(path, data=data, headers=headers)


def _forbidden(case: Case, path: str) -> list[str]:
    """What must not be in the answer: secrets always, the hidden names unless asked for."""
    asked = (path + json.dumps(case.data)).lower()
    return [*SECRETS, *(n for n in HIDDEN_NAMES if n.lower() not in asked)]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_matrix(
    case: Case,
    world: World,
    jobs: dict[str, str],
    open_app: TestClient,
    closed_app: TestClient,
    group_app: TestClient,
) -> None:
    client = {"open": open_app, "closed": closed_app, "group": group_app}[case.app]
    path = case.path.format(**jobs)
    headers = _headers(case.who, world)
    r = _send(client, case, path, headers)
    assert r.status_code == case.status, r.text
    body = r.text
    if case.contains:
        for text in case.contains:
            assert text in body
        return
    for text in _forbidden(case, path):
        assert text.lower() not in body.lower(), f"{text!r} leaked"
    if case.app == "open" and case.who != "anon" and "/async" in path:
        for job_id in jobs.values():
            assert job_id not in body or job_id in path
    if case.path == "/tap/async":
        assert all(job_id not in body for job_id in jobs.values())
    if r.status_code >= 400:
        assert r.headers["content-type"].startswith("application/x-votable+xml")
        assert 'name="QUERY_STATUS" value="ERROR"' in body
    if r.status_code == 401:
        assert r.headers.get_list("www-authenticate")[:1][0].startswith('Bearer realm="skyvault"')
        assert [c.split(",")[0] for c in r.headers.get_list("www-authenticate")] == CHALLENGES
    if case.twin:
        other = Case(**{**case.__dict__, "data": {k: twin(v) for k, v in case.data.items()}})
        r2 = _send(client, other, twin(path), headers)
        assert (r2.status_code, r2.text) == (r.status_code, twin(body))
    if "/async/" in case.path and case.method != "GET":
        # the refused change changed nothing
        alice = bearer(world.alice)
        assert open_app.get(path.split("/phase")[0].split("/parameters")[0].split(
            "/destruction")[0], headers=alice).status_code == 200  # fmt: skip


def test_refusals_of_credentials_are_identical(world: World, open_app: TestClient) -> None:
    """Expired, revoked, garbled, unknown and misattributed credentials: one answer."""
    answers = set()
    for who in ("expired", "revoked", "garbled", "unknown-key", "basic-wrong-user", "digest"):
        r = open_app.get("/tap/tables", headers=_headers(who, world))
        answers.add((r.status_code, r.text, tuple(r.headers.get_list("www-authenticate"))))
    assert len(answers) == 1
    (status, text, challenges) = answers.pop()
    assert status == 401 and "invalid or expired credentials" in text
    assert challenges == (
        'Bearer realm="skyvault", error="invalid_token"',
        'Basic realm="skyvault"',
    )


def test_two_authorization_headers_are_refused(world: World, open_app: TestClient) -> None:
    headers = [("Authorization", f"Bearer {world.bob}"), ("Authorization", f"Bearer {world.alice}")]
    r = open_app.get("/tap/tables", headers=httpx.Headers(headers))
    assert r.status_code == 401


def test_closed_service_challenges_and_stays_available(
    world: World, closed_app: TestClient
) -> None:
    r = closed_app.get("/tap/capabilities")
    assert r.status_code == 401
    assert r.headers.get_list("www-authenticate") == CHALLENGES
    assert "authentication required" in r.text
    assert closed_app.get("/tap/availability").status_code == 200
    assert (
        closed_app.get("/tap/availability", headers=_headers("garbled", world)).status_code == 200
    )
    ok = closed_app.get("/tap/capabilities", headers=basic("alice", world.alice))
    assert ok.status_code == 200 and "TableAccess" in ok.text


def test_revocation_applies_to_the_next_request(world: World, open_app: TestClient) -> None:
    from skyvault.auth import TokenService

    storage = AuthStorage.for_data_dir(world.data)
    try:
        token = TokenService(storage).create_token("alice", 1)
        query = {"LANG": "ADQL", "QUERY": f"SELECT COUNT(*) AS n FROM {HIDDEN}"}
        assert open_app.post("/tap/sync", data=query, headers=bearer(token)).status_code == 200
        TokenService(storage).revoke(token)
        r = open_app.post("/tap/sync", data=query, headers=bearer(token))
        assert r.status_code == 401 and "4099" not in r.text
    finally:
        storage.close()


def test_token_comparison_is_timing_safe_over_http(
    world: World, open_app: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wrong secret for a real key id and an unknown key id both go through
    ``hmac.compare_digest`` (the constant-time comparison; tests/auth spies on the core)."""
    calls: list[int] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append(len(a))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    key_id, secret = world.alice.split("_")[1], world.alice.split("_", 2)[2]
    wrong = f"sv_{key_id}_{secret[::-1]}"
    for token in (wrong, f"sv_{'0' * 16}_{secret}"):
        assert open_app.get("/tap/tables", headers=bearer(token)).status_code == 401
    assert len(calls) == 2


def test_tap_schema_follows_access(world: World, open_app: TestClient) -> None:
    """alice's TAP_SCHEMA describes the restricted table; bob's and anonymous's do not;
    callers sharing access share one build."""
    query = {"LANG": "ADQL", "QUERY": "SELECT table_name FROM TAP_SCHEMA.tables", "FORMAT": "csv"}
    seen = {
        who: open_app.post("/tap/sync", data=query, headers=_headers(who, world)).text
        for who in ("alice", "bob", "anon")
    }
    assert HIDDEN in seen["alice"] and "pub.stars" in seen["alice"]
    assert HIDDEN not in seen["bob"] and "pub.stars" in seen["bob"]
    assert seen["bob"] == seen["anon"]
    cache = open_app.app.state.context.tap_schema  # type: ignore[attr-defined]
    builds = cache.builds
    for who in ("alice", "bob", "anon"):
        open_app.post("/tap/sync", data=query, headers=_headers(who, world))
    assert cache.builds == builds


def test_upload_named_like_the_hidden_table(world: World, open_app: TestClient) -> None:
    """An upload called Plans is TAP_UPLOAD.Plans: the caller's own rows, nothing else."""
    csv = b"x,y\n1,upload-one\n2,upload-two\n"
    files = {"t": ("plans.csv", csv, "text/csv")}
    for query in ("SELECT * FROM TAP_UPLOAD.Plans", "SELECT * FROM tap_upload.plans"):
        data = {"LANG": "ADQL", "QUERY": query, "UPLOAD": "Plans,param:t", "FORMAT": "csv"}
        r = open_app.post("/tap/sync", data=data, files=files, headers=bearer(world.bob))
        assert r.status_code == 200, r.text
        assert "upload-one" in r.text and "NIGHTJAR" not in r.text
    data = {"LANG": "ADQL", "QUERY": f"SELECT * FROM {HIDDEN}", "UPLOAD": "Plans,param:t"}
    r = open_app.post("/tap/sync", data=data, files=files, headers=bearer(world.bob))
    assert r.status_code == 400 and not any(s.lower() in r.text.lower() for s in SECRETS)


def test_anonymous_jobs_are_never_listed(
    world: World, jobs: dict[str, str], open_app: TestClient
) -> None:
    for who in ("anon", "alice", "bob"):
        r = open_app.get("/tap/async", headers=_headers(who, world))
        assert jobs["anon"] not in r.text
    # ... but whoever holds the id may read it (its results are public data only)
    assert open_app.get(f"/tap/async/{jobs['anon']}").status_code == 200
    mine = open_app.get("/tap/async", headers=bearer(world.alice)).text
    assert jobs["done"] in mine and jobs["pending"] in mine


def test_a_job_runs_with_its_owners_access_when_it_starts(
    world: World, open_app: TestClient
) -> None:
    """alice leaves the group between creating and running a job: it no longer reads the
    table.  Back in the group, the same job would run."""
    alice = bearer(world.alice)
    job = _create(open_app, f"SELECT COUNT(*) AS n FROM {HIDDEN}", alice, run=False)
    storage = AuthStorage.for_data_dir(world.data)
    try:
        storage.remove_members("spies", ["alice"])
        r = open_app.post(f"/tap/async/{job}/phase", data={"PHASE": "RUN"}, headers=alice)
        assert r.status_code == 303
        assert _wait(open_app, job, alice) == "ERROR"
        error = open_app.get(f"/tap/async/{job}/error", headers=alice).text
        assert 'no schema "Secret"' in error and "4099" not in error
    finally:
        storage.add_members("spies", ["alice"])
        storage.close()
    again = _create(open_app, f"SELECT COUNT(*) AS n FROM {HIDDEN}", alice)
    assert _wait(open_app, again, alice) == "COMPLETED"


def test_examples_follow_access(demo_dir: Path, tmp_path: Path) -> None:
    """With the demo schemas private, /examples lists only the TAP_SCHEMA examples; granted
    to a group, its members see those over them: the catalogue's, then, with the image
    collections, the ObsTAP one too."""
    from skyvault.auth import TokenService, grant_access
    from skyvault.auth.storage import utc_now
    from skyvault.service.services.examples import EXAMPLES

    url = f"sqlite:///{tmp_path / 'auth.sqlite3'}"
    settings = Settings(
        data_dir=demo_dir,
        jobs_database_url=f"sqlite:///{tmp_path / 'jobs.sqlite3'}",
        results_url=str(tmp_path / "results"),
        auth=AuthSettings(database_url=url, audit_log=tmp_path / "audit.jsonl"),
    )
    storage = AuthStorage(url)
    storage.add_user("carol", utc_now())
    storage.add_group("dp02", ["carol"], utc_now())
    token = TokenService(storage).create_token("carol", 1)
    with _client(settings) as client:
        anon = client.get("/tap/examples").text
        assert "dp02_dc2_catalogs" not in anon
        assert 'id="tap-schema-tables"' in anon
        assert "ivoa.ObsCore" not in anon
        grant_access(storage, "dp02_dc2_catalogs", "dp02")
        carol = client.get("/tap/examples", headers=bearer(token)).text
        over_images = {e.id for e in EXAMPLES if "ivoa.ObsCore" in e.tables}
        assert over_images
        assert all(f'id="{e.id}"' in carol for e in EXAMPLES if e.id not in over_images)
        assert not any(f'id="{i}"' in carol for i in over_images)
        grant_access(storage, "dp02_calexp", "dp02")
        grant_access(storage, "dp02_deepcoadd", "dp02")
        carol = client.get("/tap/examples", headers=bearer(token)).text
        assert all(f'id="{e.id}"' in carol for e in EXAMPLES)
        assert "dp02_dc2_catalogs" not in client.get("/tap/examples").text
        assert "ivoa.ObsCore" not in client.get("/tap/examples").text
    storage.close()


def test_audit_log(world: World, open_app: TestClient, jobs: dict[str, str]) -> None:
    """One JSON line per sync query, /tables request, job run and refused credential."""
    log = world.data.parent / "jobs-open" / "audit.jsonl"
    before = len(log.read_text().splitlines())
    alice = bearer(world.alice)
    query = f"SELECT TOP 5 plan_id FROM {HIDDEN}"
    open_app.post("/tap/sync", data={"LANG": "ADQL", "QUERY": query}, headers=alice)
    open_app.get("/tap/tables", headers=bearer(world.bob))
    open_app.get("/tap/tables", headers=bearer(world.revoked))
    open_app.post("/tap/sync", data={"LANG": "ADQL", "QUERY": "SELECT nonsense"})
    job = _create(open_app, "SELECT TOP 2 id FROM pub.stars", alice)
    assert _wait(open_app, job, alice) == "COMPLETED"
    deadline = time.monotonic() + 5
    while True:
        lines = [json.loads(x) for x in log.read_text().splitlines()[before:]]
        if any(e["endpoint"].endswith(job) for e in lines) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    keys = {"time", "user", "endpoint", "query", "rows", "duration_s", "outcome", "error"}
    assert all(set(e) == keys for e in lines)
    sync = [e for e in lines if e["endpoint"] == "/tap/sync"]
    assert sync[0]["user"] == "alice" and sync[0]["query"] == query
    assert sync[0]["rows"] == 5 and sync[0]["outcome"] == "ok"
    assert sync[1]["user"] is None and sync[1]["outcome"] == "error"
    assert sync[1]["error"].startswith("adql")
    tables = [e for e in lines if e["endpoint"] == "/tap/tables"]
    assert tables[0]["user"] == "bob" and tables[0]["outcome"] == "ok"
    assert tables[1] == {**tables[1], "user": None, "outcome": "error", "error": "auth.required"}
    (run,) = [e for e in lines if e["endpoint"] == f"/tap/async/{job}"]
    assert run["user"] == "alice" and run["rows"] == 2 and run["outcome"] == "ok"
    assert all(world.revoked not in json.dumps(e) for e in lines)


# --- per-user limits --------------------------------------------------------------------------

SLOW = (
    "SELECT COUNT(*) AS n FROM dp02_dc2_catalogs.ForcedSource AS a, "
    "dp02_dc2_catalogs.ForcedSource AS b WHERE a.psfFlux * b.psfFlux > a.psfFluxErr + b.psfFluxErr"
)


ONE_ROW = "SELECT TOP 1 objectId FROM dp02_dc2_catalogs.Object"


@pytest.fixture
def limited(demo_dir: Path, tmp_path: Path) -> Iterator[tuple[TestClient, AuthStorage, str]]:
    """The demo with its own auth database: dave with small limits."""
    from skyvault.auth import TokenService, grant_access
    from skyvault.auth.storage import utc_now

    url = f"sqlite:///{tmp_path / 'auth.sqlite3'}"
    storage = AuthStorage(url)
    storage.add_user("dave", utc_now())
    grant_access(storage, "dp02_dc2_catalogs", None)
    storage.set_limits("dave", LimitOverrides(max_running=1, max_queued=2))
    auth = AuthSettings(database_url=url, audit_log=tmp_path / "audit.jsonl", max_pending=2)
    token = TokenService(storage).create_token("dave", 1)
    settings = Settings(
        data_dir=demo_dir,
        jobs_database_url=f"sqlite:///{tmp_path / 'jobs.sqlite3'}",
        results_url=str(tmp_path / "results"),
        job_workers=3,
        sync_slot_wait=0.5,
        retry_after=3,
        auth=auth,
    )
    with _client(settings) as client:
        yield client, storage, token
    storage.close()


def test_running_limit(limited: tuple[TestClient, AuthStorage, str]) -> None:
    """dave may run one job at a time: a sync query while his async job runs is refused
    (429, saying which limit and how to make room); a second async job waits QUEUED."""
    client, _, token = limited
    dave = bearer(token)
    slow = _create(client, SLOW, dave)
    deadline = time.monotonic() + 10
    while client.get(f"/tap/async/{slow}/phase", headers=dave).text != "EXECUTING":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    r = client.post("/tap/sync", data={"LANG": "ADQL", "QUERY": "SELECT 1 AS x"}, headers=dave)
    assert r.status_code == 429 and r.headers["retry-after"] == "3"
    assert "too many of your queries are running (1, the limit is 1)" in r.text
    assert "retry in 3 s" in r.text and "DELETE" not in r.text
    waiting = _create(client, "SELECT TOP 1 objectId FROM dp02_dc2_catalogs.Object", dave)
    time.sleep(1.5)
    assert client.get(f"/tap/async/{waiting}/phase", headers=dave).text == "QUEUED"
    # others are not held up by dave's limit
    other = _create(client, "SELECT TOP 1 objectId FROM dp02_dc2_catalogs.Object", {})
    assert _wait(client, other, {}) == "COMPLETED"
    client.post(f"/tap/async/{slow}/phase", data={"PHASE": "ABORT"}, headers=dave)
    assert _wait(client, waiting, dave) == "COMPLETED"
    one = {"LANG": "ADQL", "QUERY": "SELECT TOP 1 objectId FROM dp02_dc2_catalogs.Object"}
    ok = client.post("/tap/sync", data=one, headers=dave)
    assert ok.status_code == 200


def test_pending_limit(limited: tuple[TestClient, AuthStorage, str]) -> None:
    """dave may keep 2 jobs PENDING: a third is refused (429, Retry-After) saying how to
    make room; PENDING jobs hold no run slot, so he can still create and run a job."""
    client, _, token = limited
    dave = bearer(token)
    first = [_create(client, "SELECT 1 AS x", dave, run=False) for _ in range(2)]
    r = client.post("/tap/async", data={"LANG": "ADQL", "QUERY": "SELECT 1 AS x"}, headers=dave)
    # Retry-After: when the first PENDING job is destroyed (7 days), not 3 s that won't help
    assert r.status_code == 429 and 604_000 < int(r.headers["retry-after"]) <= 604_800
    assert "you have 2 jobs created and never run (PENDING), the limit is 2" in r.text
    assert "DELETE" in r.text and "PHASE=PENDING" in r.text
    running = _create(client, ONE_ROW, dave)
    assert _wait(client, running, dave) == "COMPLETED"
    one = {"LANG": "ADQL", "QUERY": ONE_ROW}
    assert client.post("/tap/sync", data=one, headers=dave).status_code == 200
    assert client.delete(f"/tap/async/{first[0]}", headers=dave).status_code == 303
    assert _create(client, "SELECT 1 AS x", dave, run=False)


def test_queued_limit(limited: tuple[TestClient, AuthStorage, str]) -> None:
    """dave (max_running 1, max_queued 2) running one slow job may queue 2 more; a third
    PHASE=RUN is refused (429, Retry-After) and that job stays PENDING; creating with
    PHASE=RUN is refused without creating anything."""
    client, _, token = limited
    dave = bearer(token)
    slow = _create(client, SLOW, dave)
    deadline = time.monotonic() + 10
    while client.get(f"/tap/async/{slow}/phase", headers=dave).text != "EXECUTING":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    queued = [_create(client, ONE_ROW, dave) for _ in range(2)]
    assert [client.get(f"/tap/async/{j}/phase", headers=dave).text for j in queued] == [
        "QUEUED",
        "QUEUED",
    ]
    pending = _create(client, ONE_ROW, dave, run=False)
    r = client.post(f"/tap/async/{pending}/phase", data={"PHASE": "RUN"}, headers=dave)
    assert r.status_code == 429 and r.headers["retry-after"] == "3"
    assert "you have 2 jobs queued to run, the limit is 2" in r.text
    assert "this job stays PENDING" in r.text
    assert client.get(f"/tap/async/{pending}/phase", headers=dave).text == "PENDING"
    data = {"LANG": "ADQL", "QUERY": "SELECT 1 AS x", "PHASE": "RUN"}
    r = client.post("/tap/async", data=data, headers=dave)
    assert r.status_code == 429 and "no job was created" in r.text
    client.post(f"/tap/async/{slow}/phase", data={"PHASE": "ABORT"}, headers=dave)
    assert [_wait(client, j, dave) for j in queued] == ["COMPLETED", "COMPLETED"]
    r = client.post(f"/tap/async/{pending}/phase", data={"PHASE": "RUN"}, headers=dave)
    assert r.status_code == 303 and _wait(client, pending, dave) == "COMPLETED"


def test_result_storage_limit(limited: tuple[TestClient, AuthStorage, str]) -> None:
    """A result that would take dave past his storage fails the job saying so; once his
    stored results fill the quota, new jobs are refused until he deletes some."""
    client, storage, token = limited
    dave = bearer(token)
    storage.set_limits("dave", LimitOverrides(max_result_bytes=20_000))
    big = _create(client, "SELECT TOP 2000 * FROM dp02_dc2_catalogs.Object", dave)
    assert _wait(client, big, dave) == "ERROR"
    error = client.get(f"/tap/async/{big}/error", headers=dave).text
    assert "stored results" in error and "the limit is" in error
    small = _create(client, "SELECT TOP 60 objectId FROM dp02_dc2_catalogs.Object", dave)
    assert _wait(client, small, dave) == "COMPLETED"
    size = int(client.get(f"/tap/async/{small}/results/result", headers=dave).headers[
        "content-length"])  # fmt: skip
    storage.set_limits("dave", LimitOverrides(max_result_bytes=size))
    r = client.post("/tap/async", data={"LANG": "ADQL", "QUERY": "SELECT 1 AS x"}, headers=dave)
    assert r.status_code == 429 and "your stored results take" in r.text
    # Retry-After: when his stored result is destroyed (a week), unless he deletes it
    assert 6.9 * 86400 < int(r.headers["retry-after"]) <= 7 * 86400
    client.delete(f"/tap/async/{small}", headers=dave)
    assert _create(client, "SELECT 1 AS x", dave, run=False)


def test_proxy_mode(world: World) -> None:
    """Behind a proxy the headers are the identity: a member of spies reads the table
    (sync and in a job, which keeps the groups of the request that ran it), Authorization
    is ignored, and without the user header the caller is anonymous."""
    settings = _settings(world, "proxy", auth=AuthSettings(mode="proxy"))
    spy = {"X-Auth-Request-User": "mallory", "X-Auth-Request-Groups": "crew, spies"}
    query = {"LANG": "ADQL", "QUERY": f"SELECT COUNT(*) AS n FROM {HIDDEN}", "FORMAT": "csv"}
    with _client(settings) as client:
        assert "4099" in client.post("/tap/sync", data=query, headers=spy).text
        r = client.post("/tap/sync", data=query, headers=bearer(world.alice))
        assert r.status_code == 400 and "4099" not in r.text
        job = _create(client, query["QUERY"], spy)
        assert _wait(client, job, spy) == "COMPLETED"
        assert "4099" in client.get(f"/tap/async/{job}/results/result", headers=spy).text
        other = {"X-Auth-Request-User": "mallory", "X-Auth-Request-Groups": "crew"}
        assert client.get(f"/tap/async/{job}", headers=other).status_code == 200
        assert (
            client.get(f"/tap/async/{job}", headers={"X-Auth-Request-User": "eve"}).status_code
            == 404
        )
        pending = _create(client, query["QUERY"], spy, run=False)
        client.post(f"/tap/async/{pending}/phase", data={"PHASE": "RUN"}, headers=other)
        assert _wait(client, pending, other) == "ERROR"
