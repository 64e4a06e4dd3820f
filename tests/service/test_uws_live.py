"""TAP /async over a real uvicorn server, driven by real clients: pyvo, astroquery, STILTS.

The server has its own job database and result store; job owners come from an
``X-Test-User`` header (the handlers' ``_owner`` overridden, as in ``test_uws``), which the
pyvo session sends so that job lists are not empty.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pyvo
import requests

from skyvault.config import Settings
from tests.service.conftest import _free_port, serve_in_thread
from tests.service.test_live import KNOWN_VALIDATOR_ERRORS, STILTS, needs_stilts
from tests.service.test_uws import OBJECT, SLOW, uws_app, uws_settings

SMALL = f"SELECT TOP 5 objectId, coord_ra, coord_dec FROM {OBJECT} ORDER BY objectId"

#: Every taplint stage that applies: metadata (TMV TME TMS TMC), capabilities (CPV CAP),
#: availability (AVV), sync (QGE QPO), async (QAS), UWS, uploads (UPL: taplint uploads
#: through async jobs), query metadata (MDQ), ObsCore (OBS, skipped by taplint itself: no
#: ivoa.obscore), examples (EXA).  Not run: LOC (not an ObsLocTAP service).
TAPLINT_STAGES = "TMV TME TMS TMC CPV CAP AVV QGE QPO QAS UWS UPL MDQ OBS EXA"


@pytest.fixture(scope="module")
def async_url(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A live server with a private job database; yields the TAP base URL."""
    port = _free_port()
    root = tmp_path_factory.mktemp("uws-live")
    live = uws_settings(settings, root, port=port)
    with serve_in_thread(uws_app(live), port) as url:
        yield url


def _service(url: str, user: str = "pyvo-user") -> pyvo.dal.TAPService:
    session = requests.Session()
    session.headers["X-Test-User"] = user
    return pyvo.dal.TAPService(url, session=session)


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def test_pyvo_run_async(async_url: str) -> None:
    table = _service(async_url).run_async(SMALL).to_table()
    assert len(table) == 5
    assert table["coord_ra"].unit == "deg"
    assert list(table["objectId"]) == sorted(table["objectId"])


def test_pyvo_submit_run_wait_fetch(async_url: str) -> None:
    service = _service(async_url)
    job = service.submit_job(SMALL, maxrec=3, runid="pyvo-run")
    assert job.phase == "PENDING"
    job.run().wait()
    assert job.phase == "COMPLETED"
    result = job.fetch_result()
    assert len(result) == 3 and result.query_status == "OVERFLOW"
    assert job.result_uri.endswith(f"/async/{job.job_id}/results/result")
    assert job.owner == "pyvo-user"
    job.delete()
    with pytest.raises(pyvo.dal.DALServiceError):
        _ = job.phase


def test_pyvo_async_error_message(async_url: str) -> None:
    with pytest.raises(pyvo.dal.DALQueryError) as info:
        _service(async_url).run_async(f"SELECT coord_raa FROM {OBJECT}")
    assert 'did you mean "coord_ra"' in str(info.value)


def test_pyvo_job_list_filters(async_url: str) -> None:
    service = _service(async_url, user="lister-live")
    before = datetime.now(UTC) - timedelta(seconds=1)
    done = service.submit_job(SMALL).run().wait()
    pending = service.submit_job(SMALL)
    aborted = service.submit_job(SMALL)
    aborted.abort()
    ids = lambda jobs: {j.jobid for j in jobs}  # noqa: E731
    assert ids(service.get_job_list()) == {done.job_id, pending.job_id, aborted.job_id}
    assert ids(service.get_job_list(phases=["COMPLETED"])) == {done.job_id}
    assert ids(service.get_job_list(phases=["PENDING", "ABORTED"])) == {
        pending.job_id,
        aborted.job_id,
    }
    assert ids(service.get_job_list(after=before)) == ids(service.get_job_list())
    assert ids(service.get_job_list(after=datetime.now(UTC) + timedelta(hours=1))) == set()
    assert [j.jobid for j in service.get_job_list(last=1)] == [aborted.job_id]
    # Someone else sees none of them.
    assert ids(_service(async_url, user="stranger").get_job_list()) == set()


def test_pyvo_abort_within_a_second(async_url: str) -> None:
    job = _service(async_url).submit_job(SLOW).run()
    deadline = time.monotonic() + 10
    while job.phase != "EXECUTING":  # (pyvo's wait() blocks until the *next* change)
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)
    started = time.monotonic()
    job.abort()
    assert job.phase == "ABORTED"  # (pyvo's wait() refuses jobs no longer active)
    assert time.monotonic() - started < 3  # liveness bound only


def test_astroquery_tapplus(async_url: str) -> None:
    from astroquery.utils.tap.core import TapPlus

    tap = TapPlus(url=async_url, verbose=False)
    job = tap.launch_job_async(SMALL)
    table = job.get_results()
    assert len(table) == 5 and job.get_phase() == "COMPLETED"
    assert "objectId" in table.colnames or "objectid" in [c.lower() for c in table.colnames]
    sync = tap.launch_job(SMALL).get_results()
    assert list(sync[sync.colnames[0]]) == list(table[table.colnames[0]])


def test_pyvo_round_trip_time(async_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """submit, run, wait, fetch of a small query: the median of 20 (reported, not asserted
    beyond a generous liveness bound)."""
    service = _service(async_url)
    times = []
    for _ in range(20):
        started = time.perf_counter()
        job = service.submit_job(SMALL)
        job.run()
        job.wait()
        job.fetch_result()
        times.append(time.perf_counter() - started)
    median = statistics.median(times)
    with capsys.disabled():
        print(f"\npyvo async round trip: median {median * 1000:.1f} ms over 20")
    assert median < 5


def _taplint(url: str, stages: str) -> str:
    out = subprocess.run(
        [str(STILTS), "taplint", f"tapurl={url}", f"stages={stages}", "maxrepeat=3"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return out.stdout + out.stderr


@needs_stilts
def test_taplint_with_async(async_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    report = _taplint(async_url, TAPLINT_STAGES)
    totals = re.search(r"Totals: Errors: (\d+); Warnings: (\d+)", report)
    assert totals, report[-2000:]
    with capsys.disabled():
        print(f"\ntaplint ({TAPLINT_STAGES}): {totals.group(0)}")
    for stage in ("QAS", "UWS", "UPL"):
        assert f"Section {stage}:" in report
    errors = [line for line in report.splitlines() if line.startswith("E-")]
    unexplained = [e for e in errors if not any(p.match(e) for p in KNOWN_VALIDATOR_ERRORS)]
    assert not unexplained, "\n".join(unexplained)
    warnings_ = [line for line in report.splitlines() if line.startswith("W-")]
    assert not warnings_, "\n".join(warnings_)
    failures = [line for line in report.splitlines() if line.startswith("F-")]
    assert not failures, "\n".join(failures)
    assert Path(str(STILTS)).exists()
