"""TAP /async (UWS 1.1) over HTTP, in process: every endpoint, and bad input of each kind.

The app gets its own job database and result store in a temp directory.  Job owners come
from an ``X-Test-User`` header through a dependency override of the handlers' ``_owner``
(what authentication will replace), so listing and access rules can be tested.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from skyvault.config import Settings
from skyvault.service.app import create_app
from skyvault.service.uws import handlers as uws_handlers
from tests.service.conftest import query_status, read_votable
from tests.xsd import assert_valid, ivoa_schema

NS = {"uws": "http://www.ivoa.net/xml/UWS/v1.0", "xlink": "http://www.w3.org/1999/xlink"}
XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"

OBJECT = "dp02_dc2_catalogs.Object"
SMALL = f"SELECT TOP 7 objectId, coord_ra FROM {OBJECT} ORDER BY objectId"
#: Runs for many seconds (a 160k x 160k nested-loop join): for ABORT and time-outs.
SLOW = (
    "SELECT COUNT(*) AS n FROM dp02_dc2_catalogs.ForcedSource AS a, "
    "dp02_dc2_catalogs.ForcedSource AS b WHERE a.psfFlux * b.psfFlux > a.psfFluxErr + b.psfFluxErr"
)


def test_owner(request: Request) -> str | None:
    """Owner from the ``X-Test-User`` header (tests only)."""
    return request.headers.get("X-Test-User")


test_owner.__test__ = False  # type: ignore[attr-defined]


def uws_settings(settings: Settings, root: Path, **changes: object) -> Settings:
    """``settings`` with a private job database and result store under ``root``."""
    update: dict[str, object] = {
        "jobs_database_url": f"sqlite:///{root / 'jobs.sqlite3'}",
        "results_url": str(root / "results"),
        "job_reaper_interval": 0.2,
        **changes,
    }
    return settings.model_copy(update=update)


def uws_app(settings: Settings) -> FastAPI:
    """The app, with job owners taken from ``X-Test-User``."""
    app = create_app(settings)
    app.dependency_overrides[uws_handlers._owner] = test_owner
    return app


@pytest.fixture(scope="module")
def uws_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("uws")


@pytest.fixture(scope="module")
def uws(settings: Settings, uws_root: Path) -> Iterator[TestClient]:
    app = uws_app(uws_settings(settings, uws_root))
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as c:
        yield c


def xml(response: httpx.Response) -> ET.Element:
    return ET.fromstring(response.content)


def text(root: ET.Element, path: str) -> str | None:
    element = root.find(path, NS)
    assert element is not None, path
    return element.text


def create(client: TestClient, user: str | None = None, **params: str) -> str:
    """Create a job; its id."""
    data = {"LANG": "ADQL", "QUERY": SMALL, **params}
    headers = {"X-Test-User": user} if user else {}
    r = client.post("/tap/async", data=data, headers=headers)
    assert r.status_code == 303, r.text
    location = r.headers["location"]
    assert location.startswith("http://testserver/tap/async/")
    return location.rsplit("/", 1)[-1]


def wait_final(client: TestClient, job_id: str, headers: dict[str, str] | None = None) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r = client.get(f"/tap/async/{job_id}", params={"WAIT": "5"}, headers=headers or {})
        phase = text(xml(r), "uws:phase")
        assert phase is not None
        if phase in ("COMPLETED", "ERROR", "ABORTED"):
            return phase
    raise AssertionError(f"job {job_id} did not finish")


def dali_message(response: httpx.Response) -> str:
    return query_status(read_votable(response.content))[0][1]


# --- creation and the job document ---------------------------------------------------------


def test_create_pending_job_document(uws: TestClient) -> None:
    job_id = create(uws, RUNID="my-run", MAXREC="5")
    r = uws.get(f"/tap/async/{job_id}")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/xml")
    root = xml(r)
    assert root.tag == "{http://www.ivoa.net/xml/UWS/v1.0}job" and root.get("version") == "1.1"
    # Elements in the order of the UWS schema.
    names = [child.tag.split("}")[1] for child in root]
    assert names == [
        "jobId", "runId", "ownerId", "phase", "quote", "creationTime", "startTime", "endTime",
        "executionDuration", "destruction", "parameters", "results",
    ]  # fmt: skip
    assert text(root, "uws:jobId") == job_id
    assert text(root, "uws:runId") == "my-run"
    assert root.find("uws:ownerId", NS).get(XSI_NIL) == "true"  # type: ignore[union-attr]
    assert text(root, "uws:phase") == "PENDING"
    assert root.find("uws:startTime", NS).get(XSI_NIL) == "true"  # type: ignore[union-attr]
    assert text(root, "uws:executionDuration") == "3600"
    params = {p.get("id"): p.text for p in root.iterfind("uws:parameters/uws:parameter", NS)}
    assert params == {"LANG": "ADQL", "QUERY": SMALL, "MAXREC": "5"}
    created = datetime.fromisoformat(text(root, "uws:creationTime").replace("Z", "+00:00"))  # type: ignore[union-attr]
    destruction = datetime.fromisoformat(text(root, "uws:destruction").replace("Z", "+00:00"))  # type: ignore[union-attr]
    assert abs(created - datetime.now(UTC)) < timedelta(minutes=1)
    # An anonymous job lives a day (anonymous_job_destruction_days), a user's a week.
    assert timedelta(hours=23.9) < destruction - created <= timedelta(days=1)
    users = xml(uws.get(f"/tap/async/{create(uws, 'una')}", headers={"X-Test-User": "una"}))
    created = datetime.fromisoformat(text(users, "uws:creationTime").replace("Z", "+00:00"))  # type: ignore[union-attr]
    destruction = datetime.fromisoformat(text(users, "uws:destruction").replace("Z", "+00:00"))  # type: ignore[union-attr]
    assert timedelta(days=6.9) < destruction - created <= timedelta(days=7)


def test_parameter_names_are_case_insensitive_and_kept_as_given(uws: TestClient) -> None:
    r = uws.post(
        "/tap/async",
        data={"lang": "ADQL", "query": SMALL, "responseformat": "csv", "phase": "run"},
    )
    assert r.status_code == 303
    job_id = r.headers["location"].rsplit("/", 1)[-1]
    assert wait_final(uws, job_id) == "COMPLETED"
    root = xml(uws.get(f"/tap/async/{job_id}/parameters"))
    assert [p.get("id") for p in root] == ["lang", "query", "responseformat"]
    result = uws.get(f"/tap/async/{job_id}/results/result")
    assert result.headers["content-type"].startswith("text/csv")
    assert result.text.splitlines()[0] == "objectId,coord_ra"


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ([("EXECUTIONDURATION", "-5")], "EXECUTIONDURATION"),
        ([("EXECUTIONDURATION", "soon")], "EXECUTIONDURATION"),
        ([("DESTRUCTION", "next tuesday")], "DESTRUCTION"),
        ([("PHASE", "ABORT")], "PHASE"),
        ([("RUNID", "a"), ("RUNID", "b")], "RUNID"),
    ],
)
def test_bad_uws_parameter_at_creation_is_a_400_and_no_job(
    uws: TestClient, params: list[tuple[str, str]], words: str
) -> None:
    user = "creator-bad"
    data = [("LANG", "ADQL"), ("QUERY", SMALL), *params]
    r = uws.post(
        "/tap/async",
        content=urlencode(data),
        headers={"X-Test-User": user, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 400
    assert words in dali_message(r)
    listing = xml(uws.get("/tap/async", headers={"X-Test-User": user}))
    assert list(listing) == []


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"LANG": "ADQL"},
        {"LANG": "ADQL", "PHASE": "RUN"},
        {"LANG": "ADQL", "QUERY": ""},
        {"LANG": "ADQL", "QUERY": "  \n"},
        {"REQUEST": "doQuery", "LANG": "ADQL", "MAXREC": "5"},
    ],
)
def test_job_without_query_is_a_400_and_no_job(uws: TestClient, data: dict[str, str]) -> None:
    """A job is only created with a QUERY (every client sends it in the creating POST): a
    body-less POST leaves nothing behind to fill anyone's limits."""
    user = "creator-empty"
    r = uws.post("/tap/async", data=data, headers={"X-Test-User": user})
    assert r.status_code == 400 and "location" not in r.headers
    message = dali_message(r)
    assert message.startswith("a job needs a QUERY") and "no job was created" in message
    assert "send the ADQL query as QUERY" in message
    assert list(xml(uws.get("/tap/async", headers={"X-Test-User": user}))) == []


def test_query_emptied_after_creation_fails_at_run(uws: TestClient) -> None:
    job_id = create(uws)
    assert uws.post(f"/tap/async/{job_id}/parameters", data={"QUERY": ""}).status_code == 303
    uws.post(f"/tap/async/{job_id}/phase", data={"PHASE": "RUN"})
    assert wait_final(uws, job_id) == "ERROR"
    assert "QUERY parameter is missing or empty" in dali_message(
        uws.get(f"/tap/async/{job_id}/error")
    )


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"LANG": "SQL"}, "LANG"),
        ({"LANG": None}, "LANG"),
        ({"MAXREC": "-3"}, "MAXREC"),
        ({"RESPONSEFORMAT": "image/png"}, "RESPONSEFORMAT"),
        ({"QUERY": f"SELECT objectId FROM {OBJECT} WHERE"}, "line 1"),
    ],
)
def test_bad_tap_parameter_fails_at_run_with_dali_error(
    uws: TestClient, params: dict[str, str | None], words: str
) -> None:
    """TAP parameters are checked when the job runs (what UWS clients and taplint expect):
    the job goes to ERROR and /error holds the DALI error document."""
    data = {"LANG": "ADQL", "QUERY": SMALL, **params, "PHASE": "RUN"}
    r = uws.post("/tap/async", data={k: v for k, v in data.items() if v is not None})
    assert r.status_code == 303
    job_id = r.headers["location"].rsplit("/", 1)[-1]
    assert wait_final(uws, job_id) == "ERROR"
    message = text(xml(uws.get(f"/tap/async/{job_id}")), "uws:errorSummary/uws:message")
    assert message is not None and words in message
    error = uws.get(f"/tap/async/{job_id}/error")
    assert error.status_code == 200 and words in dali_message(error)


# --- running, results, errors ---------------------------------------------------------------


def test_run_then_results(uws: TestClient) -> None:
    job_id = create(uws, MAXREC="3")
    r = uws.post(f"/tap/async/{job_id}/phase", data={"PHASE": "RUN"})
    assert r.status_code == 303 and r.headers["location"].endswith(f"/async/{job_id}")
    assert wait_final(uws, job_id) == "COMPLETED"
    root = xml(uws.get(f"/tap/async/{job_id}"))
    assert root.find("uws:startTime", NS).text  # type: ignore[union-attr]
    assert root.find("uws:endTime", NS).text  # type: ignore[union-attr]
    results = xml(uws.get(f"/tap/async/{job_id}/results"))
    (result,) = list(results)
    assert result.get("id") == "result"
    href = result.get("{http://www.w3.org/1999/xlink}href")
    assert href == f"http://testserver/tap/async/{job_id}/results/result"
    r = uws.get(f"/tap/async/{job_id}/results/result")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/x-votable+xml"
    assert int(r.headers["content-length"]) == len(r.content) == int(result.get("size", "0"))
    document = read_votable(r.content)
    assert [s for s, _ in query_status(document)] == ["OK", "OVERFLOW"]
    assert len(document.get_first_table().array) == 3
    assert uws.get(f"/tap/async/{job_id}/phase").text == "COMPLETED"


def test_error_at_run_time_goes_to_error_with_dali_document(uws: TestClient) -> None:
    job_id = create(uws, QUERY=f"SELECT coord_raa FROM {OBJECT}", PHASE="RUN")
    assert wait_final(uws, job_id) == "ERROR"
    root = xml(uws.get(f"/tap/async/{job_id}"))
    summary = root.find("uws:errorSummary", NS)
    assert summary is not None and summary.get("type") == "fatal"
    assert summary.get("hasDetail") == "true"
    assert 'did you mean "coord_ra"' in (text(summary, "uws:message") or "")
    r = uws.get(f"/tap/async/{job_id}/error")
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-votable+xml"
    status = query_status(read_votable(r.content))
    assert status[0][0] == "ERROR" and "coord_raa" in status[0][1]
    assert uws.get(f"/tap/async/{job_id}/results/result").status_code == 404


def test_parameters_of_a_pending_job_change(uws: TestClient) -> None:
    """POSTed parameters replace those of the same name (any case); checked at run."""
    job_id = create(uws)
    r = uws.post(f"/tap/async/{job_id}/parameters", data={"query": f"SELECT nope FROM {OBJECT}"})
    assert r.status_code == 303
    params = {p.get("id"): p.text for p in xml(uws.get(f"/tap/async/{job_id}/parameters"))}
    assert params["query"] == f"SELECT nope FROM {OBJECT}" and "QUERY" not in params
    r = uws.post(f"/tap/async/{job_id}", data={"MAXREC": "2", "RUNID": "again"})
    assert r.status_code == 303
    root = xml(uws.get(f"/tap/async/{job_id}"))
    assert text(root, "uws:runId") == "again"
    uws.post(f"/tap/async/{job_id}/phase", data={"PHASE": "RUN"})
    assert wait_final(uws, job_id) == "ERROR"
    assert "nope" in dali_message(uws.get(f"/tap/async/{job_id}/error"))


def test_run_on_a_finished_job_is_refused(uws: TestClient) -> None:
    job_id = create(uws, PHASE="RUN")
    assert wait_final(uws, job_id) == "COMPLETED"
    r = uws.post(f"/tap/async/{job_id}/phase", data={"PHASE": "RUN"})
    assert r.status_code == 409 and "COMPLETED" in dali_message(r)
    r = uws.post(f"/tap/async/{job_id}/parameters", data={"MAXREC": "1"})
    assert r.status_code == 409
    r = uws.post(f"/tap/async/{job_id}/executionduration", data={"EXECUTIONDURATION": "10"})
    assert r.status_code == 409


@pytest.mark.parametrize("value", ["SUSPEND", "COMPLETED", "", "run now"])
def test_bad_phase_value(uws: TestClient, value: str) -> None:
    job_id = create(uws)
    r = uws.post(f"/tap/async/{job_id}/phase", data={"PHASE": value})
    assert r.status_code == 400 and "PHASE" in dali_message(r)
    assert uws.get(f"/tap/async/{job_id}/phase").text == "PENDING"


def test_abort_pending_and_queued(uws: TestClient) -> None:
    job_id = create(uws)
    r = uws.post(f"/tap/async/{job_id}/phase", data={"PHASE": "ABORT"})
    assert r.status_code == 303
    assert uws.get(f"/tap/async/{job_id}/phase").text == "ABORTED"
    # Aborting again changes nothing; running an aborted job is refused.
    assert uws.post(f"/tap/async/{job_id}/phase", data={"PHASE": "ABORT"}).status_code == 303
    assert uws.post(f"/tap/async/{job_id}/phase", data={"PHASE": "RUN"}).status_code == 409


def test_abort_running_job_within_a_second(uws: TestClient) -> None:
    job_id = create(uws, QUERY=SLOW, PHASE="RUN")
    r = uws.get(f"/tap/async/{job_id}", params={"WAIT": "10", "PHASE": "QUEUED"})
    assert text(xml(r), "uws:phase") == "EXECUTING"
    time.sleep(0.3)  # let the query get going
    started = time.monotonic()
    r = uws.post(f"/tap/async/{job_id}/phase", data={"PHASE": "ABORT"})
    assert r.status_code == 303
    assert uws.get(f"/tap/async/{job_id}/phase").text == "ABORTED"
    runner = uws.app.state.context.jobs.runner  # type: ignore[attr-defined]
    while job_id in runner.running_ids():
        time.sleep(0.01)
        assert time.monotonic() - started < 3, "the query did not stop"
    elapsed = time.monotonic() - started
    assert elapsed < 3  # liveness bound; typically a few milliseconds
    assert uws.get(f"/tap/async/{job_id}/phase").text == "ABORTED"
    assert uws.get(f"/tap/async/{job_id}/results/result").status_code == 404


def test_execution_duration(uws: TestClient) -> None:
    job_id = create(uws)
    r = uws.post(f"/tap/async/{job_id}/executionduration", data={"EXECUTIONDURATION": "1"})
    assert r.status_code == 303
    assert uws.get(f"/tap/async/{job_id}/executionduration").text == "1"
    # 0 (unlimited) and too much give the service's longest.
    uws.post(f"/tap/async/{job_id}", data={"EXECUTIONDURATION": "0"})
    assert uws.get(f"/tap/async/{job_id}/executionduration").text == str(4 * 3600)
    for bad in ("-1", "1.5", "x"):
        r = uws.post(f"/tap/async/{job_id}/executionduration", data={"EXECUTIONDURATION": bad})
        assert r.status_code == 400 and "EXECUTIONDURATION" in dali_message(r)


def test_execution_duration_is_enforced(uws: TestClient) -> None:
    job_id = create(uws, QUERY=SLOW, EXECUTIONDURATION="1", PHASE="RUN")
    started = time.monotonic()
    assert wait_final(uws, job_id) == "ERROR"
    assert time.monotonic() - started < 10
    message = text(xml(uws.get(f"/tap/async/{job_id}")), "uws:errorSummary/uws:message")
    assert message is not None and "EXECUTIONDURATION of 1 s" in message


def test_destruction(uws: TestClient) -> None:
    dan = {"X-Test-User": "dan"}
    job_id = create(uws, "dan")
    when = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    r = uws.post(
        f"/tap/async/{job_id}/destruction",
        data={"DESTRUCTION": when.isoformat().replace("+00:00", "Z")},
        headers=dan,
    )
    assert r.status_code == 303
    assert uws.get(f"/tap/async/{job_id}/destruction", headers=dan).text == when.strftime(
        "%Y-%m-%dT%H:%M:%S.000Z"
    )
    # Later than the service keeps jobs: the latest allowed.
    uws.post(
        f"/tap/async/{job_id}/destruction",
        data={"DESTRUCTION": "2999-01-01T00:00:00Z"},
        headers=dan,
    )
    kept = datetime.fromisoformat(
        uws.get(f"/tap/async/{job_id}/destruction", headers=dan).text.replace("Z", "+00:00")
    )
    assert kept - datetime.now(UTC) < timedelta(days=30, minutes=1)
    for bad in ("tomorrow", "2030-13-01T00:00:00Z", ""):
        r = uws.post(f"/tap/async/{job_id}/destruction", data={"DESTRUCTION": bad}, headers=dan)
        assert r.status_code == 400 and "DESTRUCTION" in dali_message(r)
    # An anonymous job may not ask to live longer than anonymous jobs do (a day), at
    # creation or later.
    anonymous = create(uws, DESTRUCTION=when.isoformat().replace("+00:00", "Z"))
    for _ in range(2):
        kept = datetime.fromisoformat(
            uws.get(f"/tap/async/{anonymous}/destruction").text.replace("Z", "+00:00")
        )
        assert kept - datetime.now(UTC) <= timedelta(days=1)
        uws.post(f"/tap/async/{anonymous}/destruction", data={"DESTRUCTION": "2999-01-01T00:00Z"})


def test_quote_owner_and_plain_values(uws: TestClient) -> None:
    job_id = create(uws, user="olivia")
    headers = {"X-Test-User": "olivia"}
    assert uws.get(f"/tap/async/{job_id}/quote", headers=headers).text == ""
    assert uws.get(f"/tap/async/{job_id}/owner", headers=headers).text == "olivia"
    root = xml(uws.get(f"/tap/async/{job_id}", headers=headers))
    assert text(root, "uws:ownerId") == "olivia"
    assert root.find("uws:quote", NS).get(XSI_NIL) == "true"  # type: ignore[union-attr]


# --- deletion -------------------------------------------------------------------------------


def test_delete_twice(uws: TestClient) -> None:
    job_id = create(uws, PHASE="RUN")
    assert wait_final(uws, job_id) == "COMPLETED"
    result_dir = Path(uws.app.state.context.settings.results_url) / job_id  # type: ignore[attr-defined]
    assert result_dir.is_dir()
    r = uws.delete(f"/tap/async/{job_id}")
    assert r.status_code == 303 and r.headers["location"] == "http://testserver/tap/async"
    assert not result_dir.exists()
    r = uws.delete(f"/tap/async/{job_id}")
    assert r.status_code == 404 and job_id in dali_message(r)
    assert uws.get(f"/tap/async/{job_id}").status_code == 404


def test_post_action_delete(uws: TestClient) -> None:
    job_id = create(uws)
    r = uws.post(f"/tap/async/{job_id}", data={"ACTION": "DELETE"})
    assert r.status_code == 303 and r.headers["location"].endswith("/tap/async")
    assert uws.get(f"/tap/async/{job_id}").status_code == 404
    assert uws.post(f"/tap/async/{job_id}", data={"ACTION": "DELETE"}).status_code == 404
    other = create(uws)
    r = uws.post(f"/tap/async/{other}", data={"ACTION": "EXPLODE"})
    assert r.status_code == 400 and "ACTION" in dali_message(r)


@pytest.mark.parametrize(
    "path", ["", "/phase", "/parameters", "/results", "/results/result", "/error", "/quote"]
)
def test_unknown_job_is_404(uws: TestClient, path: str) -> None:
    for job_id in ("nosuchjob", "A" * 22):
        r = uws.get(f"/tap/async/{job_id}{path}")
        assert r.status_code == 404
        assert query_status(read_votable(r.content))[0][0] == "ERROR"


def test_someone_elses_job_looks_absent(uws: TestClient) -> None:
    job_id = create(uws, user="alice")
    alice = {"X-Test-User": "alice"}
    assert uws.get(f"/tap/async/{job_id}", headers=alice).status_code == 200
    for headers in ({"X-Test-User": "bob"}, {}):
        theirs = uws.get(f"/tap/async/{job_id}", headers=headers)
        unknown = uws.get("/tap/async/BBBBBBBBBBBBBBBBBBBBBB", headers=headers)
        assert theirs.status_code == unknown.status_code == 404
        assert uws.delete(f"/tap/async/{job_id}", headers=headers).status_code == 404
    assert uws.get(f"/tap/async/{job_id}/phase", headers=alice).text == "PENDING"


# --- blocking WAIT --------------------------------------------------------------------------


def test_wait_returns_when_the_phase_changes(uws: TestClient) -> None:
    job_id = create(uws, PHASE="RUN")
    started = time.monotonic()
    phase = wait_final(uws, job_id)
    assert phase == "COMPLETED"
    assert time.monotonic() - started < 2


def test_wait_on_a_pending_job_times_out(uws: TestClient) -> None:
    job_id = create(uws)
    started = time.monotonic()
    r = uws.get(f"/tap/async/{job_id}", params={"WAIT": "1"})
    assert 0.9 < time.monotonic() - started < 3
    assert text(xml(r), "uws:phase") == "PENDING"


def test_wait_phase_guard(uws: TestClient) -> None:
    job_id = create(uws)
    # The job is not in the guarded phase: answer at once.
    started = time.monotonic()
    r = uws.get(f"/tap/async/{job_id}", params={"WAIT": "30", "PHASE": "EXECUTING"})
    assert time.monotonic() - started < 1 and text(xml(r), "uws:phase") == "PENDING"
    # A finished job never blocks.
    done = create(uws, PHASE="RUN")
    wait_final(uws, done)
    started = time.monotonic()
    uws.get(f"/tap/async/{done}", params={"WAIT": "30"})
    assert time.monotonic() - started < 1


@pytest.mark.parametrize(
    ("params", "words"), [({"WAIT": "x"}, "WAIT"), ({"WAIT": "1", "PHASE": "SOON"}, "PHASE")]
)
def test_bad_wait(uws: TestClient, params: dict[str, str], words: str) -> None:
    job_id = create(uws)
    r = uws.get(f"/tap/async/{job_id}", params=params)
    assert r.status_code == 400 and words in dali_message(r)


# --- the job list ---------------------------------------------------------------------------


def test_job_list_filters(uws: TestClient) -> None:
    user = "lister"
    headers = {"X-Test-User": user}
    pending = create(uws, user=user)
    time.sleep(0.01)
    done = create(uws, user=user, PHASE="RUN")
    wait_final(uws, done, headers)
    time.sleep(0.01)
    aborted = create(uws, user=user)
    uws.post(f"/tap/async/{aborted}/phase", data={"PHASE": "ABORT"}, headers=headers)
    other = create(uws, user="someone-else")

    def listed(params: list[tuple[str, str]] | None = None) -> list[str]:
        r = uws.get("/tap/async", params=params or [], headers=headers)
        assert r.status_code == 200
        root = xml(r)
        assert root.tag == "{http://www.ivoa.net/xml/UWS/v1.0}jobs" and root.get("version") == "1.1"
        for ref in root:
            assert ref.get("{http://www.w3.org/1999/xlink}href") == (
                f"http://testserver/tap/async/{ref.get('id')}"
            )
            assert text(ref, "uws:phase") and text(ref, "uws:creationTime")
            assert text(ref, "uws:ownerId") == user
        return [ref.get("id") or "" for ref in root]

    assert listed() == [pending, done, aborted]
    assert other not in listed()
    assert listed([("PHASE", "COMPLETED")]) == [done]
    assert listed([("PHASE", "PENDING"), ("phase", "ABORTED")]) == [pending, aborted]
    assert listed([("LAST", "2")]) == [aborted, done]  # newest first
    created = text(xml(uws.get(f"/tap/async/{pending}", headers=headers)), "uws:creationTime")
    assert created is not None
    assert listed([("AFTER", created)]) == [done, aborted]
    assert listed([("AFTER", created), ("LAST", "1")]) == [aborted]
    assert listed([("AFTER", "2999-01-01T00:00:00Z")]) == []
    assert listed([("PHASE", "EXECUTING")]) == []
    # Anonymous jobs are never listed, not even to anonymous callers.
    create(uws)
    assert list(xml(uws.get("/tap/async"))) == []


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ([("PHASE", "DONE")], "PHASE"),
        ([("AFTER", "yesterday")], "AFTER"),
        ([("LAST", "0")], "LAST"),
        ([("LAST", "-2")], "LAST"),
        ([("LAST", "many")], "LAST"),
        ([("LAST", "1"), ("LAST", "2")], "LAST"),
    ],
)
def test_bad_job_list_filters(uws: TestClient, params: list[tuple[str, str]], words: str) -> None:
    r = uws.get("/tap/async", params=params, headers={"X-Test-User": "lister"})
    assert r.status_code == 400 and words in dali_message(r)


# --- the reaper -----------------------------------------------------------------------------


def test_reaper_destroys_expired_jobs_and_results(uws: TestClient) -> None:
    job_id = create(uws, PHASE="RUN")
    assert wait_final(uws, job_id) == "COMPLETED"
    result_dir = Path(uws.app.state.context.settings.results_url) / job_id  # type: ignore[attr-defined]
    assert result_dir.is_dir()
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    r = uws.post(f"/tap/async/{job_id}", data={"DESTRUCTION": soon})
    assert r.status_code == 303
    deadline = time.monotonic() + 10
    while uws.get(f"/tap/async/{job_id}").status_code == 200:
        assert time.monotonic() < deadline, "the reaper did not destroy the job"
        time.sleep(0.1)
    assert not result_dir.exists()


# --- TAP_UPLOAD in async jobs ---------------------------------------------------------------


def test_async_inline_upload(uws: TestClient) -> None:
    """An inline (multipart) upload is kept with the job and read when it runs."""
    import io

    from astropy.table import Table

    buffer = io.BytesIO()
    Table({"id": [1, 2, 3], "ra": [10.0, 20.0, 30.0]}).write(buffer, format="votable")
    r = uws.post(
        "/tap/async",
        data={"LANG": "ADQL", "QUERY": "SELECT id, ra FROM TAP_UPLOAD.mine ORDER BY id",
              "UPLOAD": "mine,param:part1", "PHASE": "RUN"},
        files={"part1": ("mine.vot", buffer.getvalue(), "application/x-votable+xml")},
    )  # fmt: skip
    assert r.status_code == 303
    job_id = r.headers["location"].rsplit("/", 1)[-1]
    assert wait_final(uws, job_id) == "COMPLETED", uws.get(f"/tap/async/{job_id}").text
    table = read_votable(uws.get(f"/tap/async/{job_id}/results/result").content)
    assert [int(v) for v in table.get_first_table().array["id"]] == [1, 2, 3]
    # A missing part is an error of the job, with the upload's own message.
    r = uws.post(
        "/tap/async",
        data={"LANG": "ADQL", "QUERY": "SELECT * FROM TAP_UPLOAD.mine",
              "UPLOAD": "mine,param:absent", "PHASE": "RUN"},
    )  # fmt: skip
    job_id = r.headers["location"].rsplit("/", 1)[-1]
    assert wait_final(uws, job_id) == "ERROR"
    assert "absent" in dali_message(uws.get(f"/tap/async/{job_id}/error"))


def _stored_parts(uws_root: Path, job_id: str) -> list[str]:
    folder = uws_root / "results" / job_id / "uploads"
    return (
        sorted(bytes.fromhex(p.name).decode() for p in folder.iterdir()) if folder.exists() else []
    )


def test_async_creation_keeps_only_the_parts_upload_names(uws: TestClient, uws_root: Path) -> None:
    """Parts no UPLOAD refers to are not stored with the job (1,000 of them were)."""
    csv = b"id,ra\n1,10.0\n2,20.0\n"
    files = [("p1", ("p1.csv", csv, "text/csv"))]
    files += [(f"junk{i}", (f"junk{i}", b"x" * 100, "text/plain")) for i in range(300)]
    r = uws.post(
        "/tap/async",
        data={"LANG": "ADQL", "QUERY": "SELECT id FROM TAP_UPLOAD.mine ORDER BY id",
              "UPLOAD": "mine,param:p1"},
        files=files,
    )  # fmt: skip
    assert r.status_code == 303, r.text
    job_id = r.headers["location"].rsplit("/", 1)[-1]
    assert _stored_parts(uws_root, job_id) == ["p1"]
    uws.post(f"/tap/async/{job_id}/phase", data={"PHASE": "RUN"})
    assert wait_final(uws, job_id) == "COMPLETED"
    table = read_votable(uws.get(f"/tap/async/{job_id}/results/result").content)
    assert [int(v) for v in table.get_first_table().array["id"]] == [1, 2]
    # Without UPLOAD, nothing is stored at all.
    r = uws.post("/tap/async", data={"LANG": "ADQL", "QUERY": SMALL}, files=files[:5])
    assert _stored_parts(uws_root, r.headers["location"].rsplit("/", 1)[-1]) == []


def test_async_upload_count_limit_applies_at_creation(
    uws: TestClient, uws_root: Path, settings: Settings
) -> None:
    """More tables than max_uploads: a 413 and no job, nothing stored."""
    n = settings.max_uploads + 1
    upload = ";".join(f"t{i},param:p{i}" for i in range(n))
    files = [(f"p{i}", (f"p{i}.csv", b"a\n1\n", "text/csv")) for i in range(n)]
    before = set((uws_root / "results").iterdir())
    r = uws.post(
        "/tap/async",
        data={"LANG": "ADQL", "QUERY": SMALL, "UPLOAD": upload},
        files=files,
        headers={"X-Test-User": "uploader"},
    )
    assert r.status_code == 413
    assert f"uploads {n} tables; the limit is {settings.max_uploads}" in dali_message(r)
    assert set((uws_root / "results").iterdir()) == before
    assert (
        xml(uws.get("/tap/async", headers={"X-Test-User": "uploader"})).findall("uws:jobref", NS)
        == []
    )


def test_error_of_a_job_that_has_none(uws: TestClient) -> None:
    """UWS: a resource the job does not have is a 404 that says why — not "no such job"."""
    job_id = create(uws, PHASE="RUN")
    assert wait_final(uws, job_id) == "COMPLETED"
    r = uws.get(f"/tap/async/{job_id}/error")
    assert r.status_code == 404
    message = dali_message(r)
    assert f"job {job_id} has no error: its phase is COMPLETED" in message
    assert f"/async/{job_id}/results/result" in message
    pending = create(uws)
    message = dali_message(uws.get(f"/tap/async/{pending}/error"))
    assert f"job {pending} has no error: its phase is PENDING" in message
    failed = create(uws, QUERY=f"SELECT coord_raa FROM {OBJECT}", PHASE="RUN")
    assert wait_final(uws, failed) == "ERROR"
    r = uws.get(f"/tap/async/{failed}/results/result")
    assert r.status_code == 404
    message = dali_message(r)
    assert f"job {failed} has no result: its phase is ERROR" in message
    assert f"/async/{failed}/error" in message
    message = dali_message(uws.get(f"/tap/async/{pending}/results/result"))
    assert "its phase is PENDING" in message and "WAIT" in message


# --- the documents are valid XML and valid UWS 1.1, whatever the parameters hold ------------

#: Control characters XML 1.0 cannot carry, markup, quotes, CR/LF/tab and a non-BMP letter.
STRANGE = "a\x01b\x1fc &<> \"q\" 'a' &amp; ]]> \U0001d518\r\n\tend"
#: What a parser reads back: the forbidden controls as U+FFFD, everything else as sent.
STRANGE_READ = STRANGE.replace("\x01", "\ufffd").replace("\x1f", "\ufffd")


@pytest.fixture(scope="module")
def uws_schema() -> Any:
    """UWS 1.1 from tests/data/xsd (no network; XLink is xmlschema's own copy)."""
    return ivoa_schema("UWS.xsd")


def _valid(schema: Any, response: httpx.Response) -> ET.Element:
    assert response.status_code == 200, response.text
    root = ET.fromstring(response.content)  # well-formed XML 1.0, or this raises
    errors = [str(e.reason) for e in schema.iter_errors(response.content.decode())]
    assert not errors, errors
    return root


def test_documents_are_valid_whatever_the_parameters_hold(uws: TestClient, uws_schema: Any) -> None:
    user = {"X-Test-User": "strange"}
    job_id = create(uws, "strange", RUNID=STRANGE, MAXREC="5", **{"NOTE": STRANGE})
    root = _valid(uws_schema, uws.get(f"/tap/async/{job_id}", headers=user))
    params = {p.get("id"): p.text for p in root.iterfind("uws:parameters/uws:parameter", NS)}
    assert params["NOTE"] == STRANGE_READ
    assert text(root, "uws:runId") == STRANGE_READ
    parameters = _valid(uws_schema, uws.get(f"/tap/async/{job_id}/parameters", headers=user))
    assert [p.text for p in parameters if p.get("id") == "NOTE"] == [STRANGE_READ]
    jobs = _valid(uws_schema, uws.get("/tap/async", headers=user))
    assert [text(ref, "uws:runId") for ref in jobs.findall("uws:jobref", NS)] == [STRANGE_READ]
    # A parameter name with markup in it, and an error message that quotes the query.
    failed = create(uws, "strange", QUERY=f"SELECT {STRANGE} FROM x", PHASE="RUN")
    assert wait_final(uws, failed, user) == "ERROR"
    root = _valid(uws_schema, uws.get(f"/tap/async/{failed}", headers=user))
    assert root.find("uws:errorSummary/uws:message", NS) is not None
    done = create(uws, "strange", PHASE="RUN")
    assert wait_final(uws, done, user) == "COMPLETED"
    _valid(uws_schema, uws.get(f"/tap/async/{done}", headers=user))
    _valid(uws_schema, uws.get(f"/tap/async/{done}/results", headers=user))


def test_documents_survive_lone_surrogates_and_markup_in_names() -> None:
    """Values that no HTTP client sends but the store may hold: still UTF-8, still XML."""
    from skyvault.service.uws.documents import job_document, parameters_document
    from skyvault.service.uws.models import ExecutionPhase, Job, JobFailure

    now = datetime.now(UTC)
    job = Job(
        job_id="abc",
        owner='o"<&>',
        phase=ExecutionPhase.ERROR,
        parameters=[('id"<&>\x02', "x\ud800y\x00z")],
        creation_time=now,
        execution_duration=60,
        destruction=now,
        failure=JobFailure("query", "bad \x07 <value> & \ud83d"),
    )
    for document in (job_document(job, "http://h/tap/async/abc"), parameters_document(job)):
        root = ET.fromstring(document.encode("utf-8"))
        [param] = root.iter(f"{{{NS['uws']}}}parameter")
        assert param.get("id") == 'id"<&>\ufffd' and param.text == "x\ufffdy\ufffdz"
    message = ET.fromstring(job_document(job, "u").encode()).find(
        "uws:errorSummary/uws:message", NS
    )
    assert message is not None and message.text == "bad \ufffd <value> & \ufffd"


def test_every_document_is_valid_whatever_the_job_holds() -> None:
    """Job, job list, results and parameters built from hostile values (a RUNID, an owner,
    a URL, a result type and an error message with markup, ``]]>`` and control characters)
    are well-formed and valid UWS 1.1, with every value read back as it was stored."""
    from skyvault.service.uws.documents import (
        job_document,
        job_list_document,
        parameters_document,
        results_document,
    )
    from skyvault.service.uws.models import ExecutionPhase, Job, JobFailure, JobResult

    now = datetime.now(UTC)
    hostile = STRANGE + "\x00\ud800"
    read = STRANGE_READ + "\ufffd\ufffd"
    failed = Job(
        job_id="j1",
        owner=hostile,
        phase=ExecutionPhase.ERROR,
        parameters=[(hostile, hostile), ("QUERY", "SELECT 1")],
        creation_time=now,
        execution_duration=60,
        destruction=now,
        run_id=hostile,
        start_time=now,
        end_time=now,
        failure=JobFailure("query", hostile, fatal=False),
    )
    done = Job(
        job_id="j2",
        owner=None,
        phase=ExecutionPhase.COMPLETED,
        parameters=[],
        creation_time=now,
        execution_duration=0,
        destruction=now,
        result=JobResult("k", hostile, 10, 1, False),
    )
    url = f"http://h/tap/async?{hostile}"
    root = assert_valid(job_document(failed, url), "UWS.xsd")
    assert text(root, "uws:runId") == text(root, "uws:ownerId") == read
    assert root.findtext("uws:errorSummary/uws:message", namespaces=NS) == read
    [param] = [p for p in root.iterfind("uws:parameters/uws:parameter", NS) if p.text == read]
    assert param.get("id") == read
    root = assert_valid(job_document(done, url), "UWS.xsd")
    owner = root.find("uws:ownerId", NS)
    assert owner is not None and owner.get(XSI_NIL) == "true"
    [result] = root.iterfind("uws:results/uws:result", NS)
    assert result.get("mime-type") == read and result.get(f"{{{NS['xlink']}}}href") == (
        url.replace(hostile, read) + "/results/result"
    )
    jobs = assert_valid(job_list_document([failed, done], url), "UWS.xsd")
    assert [ref.get("id") for ref in jobs] == ["j1", "j2"]
    assert [ref.findtext("uws:runId", namespaces=NS) for ref in jobs] == [read, None]
    assert not list(assert_valid(job_list_document([], url), "UWS.xsd"))
    assert_valid(results_document(done, url), "UWS.xsd")
    assert_valid(results_document(failed, url), "UWS.xsd")
    assert_valid(parameters_document(failed), "UWS.xsd")


def test_job_changes_refuse_large_bodies_while_they_arrive(uws: TestClient) -> None:
    """POSTs to a job carry parameters only: a large file part is a 413, not spooled."""
    job_id = create(uws)
    big = {"junk": ("junk.bin", b"x" * (3 << 20), "application/octet-stream")}
    for path in ("", "/parameters", "/phase", "/destruction", "/executionduration"):
        r = uws.post(f"/tap/async/{job_id}{path}", data={"RUNID": "x"}, files=big)
        assert r.status_code == 413, (path, r.text)
        assert "request body" in dali_message(r)
    r = uws.post(
        f"/tap/async/{job_id}/parameters", data={"RUNID": "small"}, files={"f": ("f", b"1", "")}
    )
    assert r.status_code == 303
    assert text(xml(uws.get(f"/tap/async/{job_id}")), "uws:runId") == "small"
