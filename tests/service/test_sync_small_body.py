"""A small sync result is sent as one plain body; a large one streams.  Both give the same
bytes and headers, whatever the format and whether MAXREC cut the rows."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from skyvault.service.handlers import tap

CONE = (
    "SELECT TOP 40 objectId, coord_ra, coord_dec, g_psfFlux FROM dp02_dc2_catalogs.Object "
    "WHERE CONTAINS(POINT('ICRS', coord_ra, coord_dec), CIRCLE('ICRS', 62.0, -37.0, 0.5)) = 1 "
    "ORDER BY objectId"
)
FORMATS = ["votable", "votable/b2", "csv", "tsv", "json", "parquet", "fits"]


def _sync(client: TestClient, fmt: str, maxrec: int | None = None) -> tuple[int, dict, bytes]:
    form = {"LANG": "ADQL", "QUERY": CONE, "RESPONSEFORMAT": fmt}
    if maxrec is not None:
        form["MAXREC"] = str(maxrec)
    r = client.post("/tap/sync", data=form)
    headers = {k: v for k, v in r.headers.items() if k.lower() not in ("date", "server")}
    return r.status_code, headers, r.content


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("maxrec", [None, 7])
def test_one_body_and_streaming_give_the_same_answer(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, fmt: str, maxrec: int | None
) -> None:
    whole = _sync(client, fmt, maxrec)
    monkeypatch.setattr(tap, "EAGER_BYTES", 0)  # nothing is made before the response starts
    streamed = _sync(client, fmt, maxrec)
    assert whole[0] == streamed[0] == 200
    # The plain response says its length; the streamed one is chunked.  Nothing else differs.
    assert whole[1].pop("content-length") == str(len(whole[2]))
    assert streamed[1].pop("transfer-encoding", "chunked") == "chunked"
    assert whole[1] == streamed[1]
    assert len(whole[2]) > 100
    assert whole[2] == streamed[2]


def test_sync_has_no_dependency_run_in_a_worker_thread() -> None:
    """FastAPI runs a plain-function dependency in a worker thread: for /sync that would be
    one more thread hand-off per query, on top of the query's own."""
    import inspect

    from fastapi.routing import APIRoute

    route = next(r for r in tap.router.routes if isinstance(r, APIRoute) and r.path == "/sync")
    pending = list(route.dependant.dependencies)
    assert pending
    while pending:
        dependency = pending.pop()
        assert dependency.call is not None
        assert inspect.iscoroutinefunction(dependency.call), dependency.call
        pending.extend(dependency.dependencies)
