"""HEAD answers like GET without a body on the TAP endpoints that answer GET (curl -I,
wget --spider, link checkers); FastAPI's ``@router.get`` alone answered 405."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from skyvault.config import Settings
from skyvault.service.app import create_app
from tests.service.test_uws import uws_settings

ONE_ROW = "SELECT TOP 3 objectId FROM dp02_dc2_catalogs.Object"
PATHS = [
    "/tap",
    "/tap/",
    "/tap/availability",
    "/tap/capabilities",
    "/tap/tables",
    "/tap/tables/dp02_dc2_catalogs.Object",
    "/tap/examples",
    "/tap/async",
    "/tap/async/{job}",
    "/tap/async/{job}/phase",
    "/tap/async/{job}/executionduration",
    "/tap/async/{job}/destruction",
    "/tap/async/{job}/quote",
    "/tap/async/{job}/owner",
    "/tap/async/{job}/parameters",
    "/tap/async/{job}/results",
    "/tap/async/{job}/results/result",
    "/tap/async/{failed}/error",
]


def _job(client: TestClient, query: str) -> str:
    data = {"LANG": "ADQL", "QUERY": query, "PHASE": "RUN"}
    r = client.post("/tap/async", data=data, follow_redirects=False)
    assert r.status_code == 303, r.text
    job = str(r.headers["location"]).rsplit("/", 1)[-1]
    deadline = time.monotonic() + 60
    while client.get(f"/tap/async/{job}/phase").text not in ("COMPLETED", "ERROR"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return job


@pytest.fixture(scope="module")
def jobs_client(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, dict[str, str]]]:
    app = create_app(uws_settings(settings, tmp_path_factory.mktemp("head")))
    with TestClient(app, raise_server_exceptions=False) as client:
        jobs = {"job": _job(client, ONE_ROW), "failed": _job(client, "SELECT nosuch FROM x.y")}
        yield client, jobs


@pytest.mark.parametrize("path", PATHS)
def test_head_is_get_without_a_body(
    jobs_client: tuple[TestClient, dict[str, str]], path: str
) -> None:
    client, jobs = jobs_client
    url = path.format(**jobs)
    get = client.get(url, follow_redirects=False)
    head = client.head(url, follow_redirects=False)
    assert get.status_code in (200, 303), (url, get.status_code)
    assert head.status_code == get.status_code, (url, head.status_code, head.text[:300])
    assert head.content == b""
    assert head.headers.get("content-type") == get.headers.get("content-type")
    if get.status_code == 200:
        assert int(head.headers["content-length"]) == len(get.content)


def test_the_openapi_schema_has_one_operation_per_get(
    jobs_client: tuple[TestClient, dict[str, str]],
) -> None:
    """The HEAD twins stay out of the schema: no HEAD operation, and no operationId
    repeated for them (routes declared with several methods, /sync's GET and POST, repeat
    theirs, as do /hips and /bulk with their own HEAD: FastAPI's naming, not this)."""
    client, _ = jobs_client
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        paths = client.get("/openapi.json").json()["paths"]
    assert "get" in paths["/tap/availability"]
    assert not [p for p, ops in paths.items() if "head" in ops and p.startswith("/tap")]
    repeated = [str(w.message) for w in caught if "Duplicate Operation ID" in str(w.message)]
    mine = ("vosi.py", "uws.py", "function examples", "function landing")
    assert not [m for m in repeated if any(w in m for w in mine)], repeated


def test_head_on_a_missing_job_is_404(jobs_client: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = jobs_client
    assert client.head("/tap/async/nosuchjob").status_code == 404
