"""A full disk under the service: a job's result that does not fit, an upload that cannot be kept.

The caller learns that the service is out of space (503 / a transient job error), never
"failed inside the service" and never a server path; the partial result is removed.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from skyvault.config import Settings
from skyvault.service.uws.results import ResultStore
from tests.mounts import tmpfs
from tests.service.conftest import query_status, read_votable
from tests.service.test_uws import NS, OBJECT, create, uws_app, uws_settings, wait_final, xml

BIG = f"SELECT TOP 5000 * FROM {OBJECT}"


def _client(settings: Settings, root: Path) -> TestClient:
    return TestClient(
        uws_app(uws_settings(settings, root)), raise_server_exceptions=False, follow_redirects=False
    )


def _assert_out_of_space(client: TestClient, job_id: str, root: Path) -> None:
    assert wait_final(client, job_id) == "ERROR"
    summary = xml(client.get(f"/tap/async/{job_id}")).find("uws:errorSummary", NS)
    assert summary is not None
    assert summary.get("type") == "transient"  # try again later: not the query's fault
    r = client.get(f"/tap/async/{job_id}/error")
    ((status, message),) = query_status(read_votable(r.content))
    assert status == "ERROR"
    assert message.startswith("the service is out of disk space and could not complete this job")
    assert str(root) not in message and "inside the service" not in message
    assert not list((root / "results").rglob("result*"))  # the partial result is gone


@pytest.fixture
def full_results(tmp_path: Path) -> Iterator[Path]:
    """A job root whose result store is on a 64 KiB file system."""
    with tmpfs(tmp_path / "results", "64k"):
        yield tmp_path


def test_a_result_that_does_not_fit_on_the_disk(settings: Settings, full_results: Path) -> None:
    with _client(settings, full_results) as client:
        job_id = create(client, QUERY=BIG, PHASE="RUN")
        _assert_out_of_space(client, job_id, full_results)
        # A small result still fits: the service carries on.
        small = create(client, QUERY=f"SELECT TOP 3 objectId FROM {OBJECT}", PHASE="RUN")
        assert wait_final(client, small) == "COMPLETED"


def _full_disk(store: ResultStore, key: str, chunks: Iterable[bytes]) -> int:
    for _ in chunks:
        raise OSError(errno.ENOSPC, "No space left on device", f"/srv/results/{key}")
    return 0


def test_a_result_that_does_not_fit_simulated(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where no small file system can be mounted: ENOSPC from the result store's write."""
    monkeypatch.setattr(ResultStore, "write", _full_disk)
    with _client(settings, tmp_path) as client:
        _assert_out_of_space(client, create(client, QUERY=BIG, PHASE="RUN"), tmp_path)


def test_an_upload_that_cannot_be_kept_is_a_503(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ResultStore, "write", _full_disk)
    with _client(settings, tmp_path) as client:
        r = client.post(
            "/tap/async",
            data={"LANG": "ADQL", "QUERY": "SELECT * FROM TAP_UPLOAD.t", "UPLOAD": "t,param:p"},
            files={"p": ("t.csv", b"a,b\n1,2\n", "text/csv")},
        )
    assert r.status_code == 503
    ((status, message),) = query_status(read_votable(r.content))
    assert status == "ERROR"
    assert message.startswith("the service is out of disk space and could not complete this req")
    assert "/srv" not in message
