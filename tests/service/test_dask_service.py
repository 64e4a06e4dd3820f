"""``SKYVAULT_DASK_SCHEDULER``: the TAP service runs its queries on a Dask cluster."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import LocalCluster
from fastapi.testclient import TestClient

from skyvault.config import Settings
from skyvault.engine.distributed import DaskExecutor
from skyvault.service.app import create_app
from tests.conftest import SkyCatalogue

pytestmark = pytest.mark.slow

QUERY = "SELECT COUNT(*) AS n, AVG(mag) AS mag, MAX(dec) AS highest FROM s.stars WHERE mag > 12"


@pytest.fixture(scope="module")
def data(sky_catalogue: SkyCatalogue) -> Path:
    """A public table in many partitions (the small demo's tables are too small to split)."""
    return sky_catalogue.data


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False) as cluster:
        yield str(cluster.scheduler_address)


def test_sync_queries_run_on_the_cluster(data: Path, scheduler: str) -> None:
    settings = Settings(data_dir=data)
    local = TestClient(create_app(settings))
    on_dask = settings.model_copy(update={"dask_scheduler": scheduler})
    app = create_app(on_dask)
    executor = app.state.context.archive.executor
    assert isinstance(executor, DaskExecutor)
    params = {"LANG": "ADQL", "QUERY": QUERY, "FORMAT": "csv"}
    with local, TestClient(app) as remote:
        want = local.post("/tap/sync", data=params)
        got = remote.post("/tap/sync", data=params)
        plan = app.state.context.archive.plan(QUERY)
        _, groups = executor.split(plan)
    assert want.status_code == got.status_code == 200
    assert len(groups) > 1, "the query was not split over the cluster"
    want_rows = [r.split(",") for r in want.text.strip().splitlines()]
    got_rows = [r.split(",") for r in got.text.strip().splitlines()]
    assert len(got_rows) == len(want_rows) == 2
    assert got_rows[0] == want_rows[0]
    assert int(got_rows[1][0]) == int(want_rows[1][0]) > 1000
    assert float(got_rows[1][1]) == pytest.approx(float(want_rows[1][1]), rel=1e-12)
    assert float(got_rows[1][2]) == float(want_rows[1][2])


def test_an_unreachable_scheduler_is_a_clear_error(settings: Settings) -> None:
    from skyvault.errors import SkyvaultError

    bad = settings.model_copy(update={"dask_scheduler": "tcp://127.0.0.1:9"})
    with pytest.raises(SkyvaultError, match="cannot reach the Dask scheduler"):
        create_app(bad)
