"""Real clients against a live server with anonymous access off: pyvo with a Bearer token,
STILTS taplint with HTTP Basic (the token as password).

The archive is the security world (``security_world``): ``Secret.Plans`` is readable by the
group ``spies`` only, so every query here that succeeds went through authentication and
the group check.
"""

from __future__ import annotations

import re
import subprocess
import warnings
from collections.abc import Iterator

import pytest
import pyvo
import requests

from skyvault.auth import AuthSettings
from skyvault.service.app import create_app
from tests.service.conftest import _free_port, serve_in_thread
from tests.service.security_world import HIDDEN, PLANS_ROWS, World, build_world, world_settings
from tests.service.test_live import KNOWN_VALIDATOR_ERRORS, STILTS, needs_stilts

pytestmark = pytest.mark.slow

#: As test_uws_live: every taplint stage that applies to this service.
TAPLINT_STAGES = "TMV TME TMS TMC CPV CAP AVV QGE QPO QAS UWS UPL MDQ OBS EXA"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("clients"))


@pytest.fixture(scope="module")
def closed_url(world: World) -> Iterator[str]:
    """A live server over the world with anonymous access off; yields the TAP URL."""
    port = _free_port()
    auth = AuthSettings(anonymous=False)
    settings = world_settings(world, "jobs", auth=auth, port=port, query_timeout=60)
    with serve_in_thread(create_app(settings), port) as url:
        yield url


def _bearer_service(url: str, token: str) -> pyvo.dal.TAPService:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    return pyvo.dal.TAPService(url, session=session)


def test_pyvo_sync_and_async_on_a_restricted_table(closed_url: str, world: World) -> None:
    service = _bearer_service(closed_url, world.alice)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # keys() only: pyvo 1.9 fetches each table's details (``tables[name]``) with a new
        # session that drops the Authorization header
        assert HIDDEN in set(service.tables.keys())
        sync = service.run_sync(f"SELECT COUNT(*) AS n FROM {HIDDEN}").to_table()
        assert int(sync["n"][0]) == PLANS_ROWS
        query = f"SELECT TOP 3 plan_id, codename FROM {HIDDEN} ORDER BY plan_id"
        job = service.submit_job(query)
        job.run().wait(timeout=60)
        job.raise_if_error()
        rows = job.fetch_result().to_table()
        assert list(rows["codename"]) == ["NIGHTJAR-0", "NIGHTJAR-1", "NIGHTJAR-2"]
        assert job.job_id in {j.jobid for j in service.get_job_list()}
        job.delete()
        # run_async: submit, run, wait, fetch, delete in one call
        again = service.run_async(f"SELECT MAX(plan_id) AS m FROM {HIDDEN}").to_table()
        assert int(again["m"][0]) == PLANS_ROWS - 1


def test_pyvo_without_or_with_bad_credentials(closed_url: str, world: World) -> None:
    """No token: the service asks for one (401 with both challenges, even for
    /capabilities); a revoked one is refused; bob's token works but sees no Secret."""
    r = requests.get(f"{closed_url}/capabilities", timeout=10)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == 'Bearer realm="skyvault", Basic realm="skyvault"'
    assert requests.get(f"{closed_url}/availability", timeout=10).status_code == 200
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        refused = (pyvo.dal.DALServiceError, pyvo.dal.DALQueryError)
        with pytest.raises(refused, match="authentication required"):
            pyvo.dal.TAPService(closed_url).run_sync("SELECT TOP 1 * FROM pub.stars")
        with pytest.raises(refused, match="invalid or expired credentials"):
            _bearer_service(closed_url, world.revoked).run_sync("SELECT TOP 1 * FROM pub.stars")
        bob = _bearer_service(closed_url, world.bob)
        assert len(bob.run_sync("SELECT TOP 2 * FROM pub.stars").to_table()) == 2
        with pytest.raises(pyvo.dal.DALQueryError, match='no schema "Secret"'):
            bob.run_sync(f"SELECT * FROM {HIDDEN}")


@needs_stilts
def test_taplint_with_basic_auth(closed_url: str, world: World) -> None:
    """taplint, logging in with HTTP Basic (user alice, the token as password), passes with
    anonymous access off: the only error is the known one of this STILTS version."""
    out = subprocess.run(
        [str(STILTS), "-Dstar.basicauth.user=alice", f"-Dstar.basicauth.password={world.alice}",
         "taplint", f"tapurl={closed_url}", f"stages={TAPLINT_STAGES}", "maxrepeat=3"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )  # fmt: skip
    report = out.stdout + out.stderr
    totals = re.search(r"Totals: Errors: (\d+); Warnings: (\d+)", report)
    assert totals, report[-3000:]
    for stage in ("TMS", "QAS", "UWS", "UPL"):
        assert f"Section {stage}:" in report
    assert HIDDEN in report or "Plans" in report, "taplint did not see the restricted table"
    errors = [line for line in report.splitlines() if line.startswith("E-")]
    unexplained = [e for e in errors if not any(p.match(e) for p in KNOWN_VALIDATOR_ERRORS)]
    assert not unexplained, "\n".join(unexplained)
    failures = [line for line in report.splitlines() if line.startswith("F-")]
    assert not failures, "\n".join(failures)
    assert world.alice not in report
