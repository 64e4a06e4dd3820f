"""pyvo's ``create_index`` end to end against a live server (youcat's ``table-update``).

pyvo 1.9 POSTs ``table``/``index``/``unique`` to ``{tap}/table-update``, expects a 303 with
the job's URL, runs the job (``PHASE=RUN``), waits (``WAIT=-1``) and raises the job's
``errorSummary``.  The table here is a user table stored plain with its position declared
by UCDs; indexing its RA makes it a HATS catalogue, after which a cross-match with an
archive table plans as a cell join over partitions and gives the same rows (astropy's
``search_around_sky`` is the oracle).
"""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import pyvo
import requests
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io.votable import from_table, writeto
from astropy.table import Table
from pyvo.dal.exceptions import DALQueryError
from pyvo.utils import prototype

from skyvault.auth import AuthSettings, AuthStorage, grant_access
from skyvault.auth.tokens import TokenService
from skyvault.catalog.ingest import IngestOptions, ingest
from skyvault.catalog.registry import Registry
from skyvault.config import Settings
from skyvault.engine.aligned import aligned_partner
from skyvault.engine.archive import open_archive
from skyvault.service.app import create_app
from skyvault.workspace import Quota, WorkspaceStore
from tests.service.conftest import _free_port, serve_in_thread

pytestmark = pytest.mark.slow

RADIUS = 2.0


@dataclass
class Site:
    url: str
    data: Path
    alice: str
    bob: str
    carol: str
    audit: Path


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    prototype.activate_features("cadc-tb-upload")  # pyvo's create/load/index_table
    root = tmp_path_factory.mktemp("wsjobs")
    data = root / "data"
    data.mkdir()
    rng = np.random.default_rng(5)
    ra, dec = rng.uniform(20, 22, 8_000), rng.uniform(5, 7, 8_000)
    pq.write_table(pa.table({"id": np.arange(8_000), "ra": ra, "dec": dec}), root / "o.parquet")
    ingest(
        [root / "o.parquet"],
        "survey.objects",
        data,
        ra="ra",
        dec="dec",
        options=IngestOptions(max_rows_per_partition=1_000),
    )
    storage = AuthStorage.for_data_dir(data)
    try:
        from skyvault.auth.storage import utc_now

        storage.add_user("alice", utc_now())
        storage.add_user("bob", utc_now())
        storage.add_user("carol", utc_now())
        storage.add_group("readers", ["bob"], utc_now())
        storage.add_group("writers", ["carol"], utc_now())
        grant_access(storage, "survey", None)
        tokens = TokenService(storage)
        alice, bob = tokens.create_token("alice", 1), tokens.create_token("bob", 1)
        carol = tokens.create_token("carol", 1)
    finally:
        storage.close()
    port = _free_port()
    audit = root / "audit.jsonl"
    settings = Settings(
        data_dir=data,
        port=port,
        query_timeout=60,
        jobs_database_url=f"sqlite:///{root / 'jobs.sqlite3'}",
        results_url=str(root / "results"),
        auth=AuthSettings(audit_log=audit),
    )
    with serve_in_thread(create_app(settings), port) as url:
        site = Site(url, data, alice, bob, carol, audit)
        _create_user_table(site, ra, dec, rng)
        yield site


def _create_user_table(
    site: Site, ra: np.ndarray, dec: np.ndarray, rng: np.random.Generator
) -> None:
    """alice's table through pyvo: created from a VOTable (position declared by UCDs),
    loaded from CSV; stored plain.  Its rows: archive positions moved by up to 1.5″."""
    pick = rng.choice(len(ra), 1_500, replace=False)
    moved = SkyCoord(ra[pick], dec[pick], unit="deg").directional_offset_by(
        rng.uniform(0, 360, 1_500) * u.deg, rng.uniform(0, 1.5, 1_500) * u.arcsec
    )
    rows = Table(
        {
            "tid": np.arange(1_500),
            "ra": moved.ra.deg,
            "dec": moved.dec.deg,
            "mag": rng.uniform(10, 20, 1_500),
            "pair": np.arange(1_500) // 2,
        }
    )
    definition = Table(rows[:0], copy=True)
    definition["ra"].unit = definition["dec"].unit = "deg"
    votable = from_table(definition)
    fields = votable.get_first_table().fields
    fields[1].ucd, fields[2].ucd, fields[3].ucd = (
        "pos.eq.ra;meta.main",
        "pos.eq.dec;meta.main",
        "phot.mag",
    )
    body = io.BytesIO()
    writeto(votable, body)
    alice = _service(site, site.alice)
    alice.create_table("user_alice.targets", io.BytesIO(body.getvalue()), format="VOTable")
    text = io.StringIO()
    rows.write(text, format="ascii.csv")
    alice.load_table("user_alice.targets", io.BytesIO(text.getvalue().encode()), format="csv")
    assert Registry(site.data).get("user_alice", "targets").meta.nrows == 1_500


def _service(site: Site, token: str | None) -> pyvo.dal.TAPService:
    session = requests.Session()
    if token is not None:
        session.headers["Authorization"] = f"Bearer {token}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pyvo.dal.TAPService(site.url, session=session)


MATCH = (
    "SELECT t.tid, o.id FROM user_alice.targets AS t JOIN survey.objects AS o "
    f"ON DISTANCE(POINT('ICRS', t.ra, t.dec), POINT('ICRS', o.ra, o.dec)) < {RADIUS / 3600}"
)


def _files(registry: Registry, schema: str, table: str) -> tuple[str, ...]:
    return registry.get(schema, table).all_files


def _astropy_pairs(data: Path) -> set[tuple[int, int]]:
    registry = Registry(data)
    user = pa.concat_tables(pq.read_table(f) for f in _files(registry, "user_alice", "targets"))
    obj = pa.concat_tables(pq.read_table(f) for f in _files(registry, "survey", "objects"))
    a = SkyCoord(user["ra"].to_numpy(), user["dec"].to_numpy(), unit="deg")
    b = SkyCoord(obj["ra"].to_numpy(), obj["dec"].to_numpy(), unit="deg")
    ib, ia, _, _ = a.search_around_sky(b, RADIUS * u.arcsec)
    return set(
        zip(user["tid"].to_numpy()[ia].tolist(), obj["id"].to_numpy()[ib].tolist(), strict=True)
    )


def _pairs(service: pyvo.dal.TAPService) -> set[tuple[int, int]]:
    rows = service.run_sync(MATCH, maxrec=100_000).to_table()
    pairs = list(zip(rows["tid"].tolist(), rows["id"].tolist(), strict=True))
    assert len(pairs) == len(set(pairs))
    return set(pairs)


def test_post_answers_303_with_an_absolute_job_url(site: Site) -> None:
    response = httpx.post(
        f"{site.url}/table-update",
        data={"TABLE": "user_alice.targets", "INDEX": "mag", "UNIQUE": "false"},
        headers={"Authorization": f"Bearer {site.alice}"},
    )
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith(f"{site.url}/table-update/")
    auth = {"Authorization": f"Bearer {site.alice}"}
    job = httpx.get(location, headers=auth)
    assert "<uws:phase>PENDING</uws:phase>" in job.text
    assert 'id="TABLE">user_alice.targets<' in job.text
    # Its own job list, as youcat's; not a TAP /async job.
    assert location.rsplit("/", 1)[1] in httpx.get(f"{site.url}/table-update", headers=auth).text
    assert httpx.get(location.replace("/table-update/", "/async/"), headers=auth).status_code == 404
    httpx.delete(location, headers=auth)


def test_anonymous_callers_are_refused(site: Site) -> None:
    response = httpx.post(f"{site.url}/table-update", data={"table": "x.y", "index": "z"})
    assert response.status_code == 401


def test_create_index_on_a_column_and_on_the_position(site: Site) -> None:
    alice = _service(site, site.alice)
    want = _astropy_pairs(site.data)
    assert len(want) > 1_000
    assert _pairs(alice) == want
    alice.create_index("user_alice.targets", "mag")
    columns = alice.run_sync(
        "SELECT column_name, indexed FROM TAP_SCHEMA.columns "
        "WHERE table_name = 'user_alice.targets'"
    ).to_table()
    indexed = dict(zip(columns["column_name"].tolist(), columns["indexed"].tolist(), strict=True))
    assert indexed["mag"] == 1 and indexed["ra"] == 0

    alice.create_index("user_alice.targets", "ra")  # the RA of the declared position
    stored = Registry(site.data).get("user_alice", "targets")
    assert stored.meta.kind == "hats" and stored.margin is not None
    assert stored.meta.column("mag").indexed  # the earlier index is kept
    assert _pairs(alice) == want
    # Planned as two archive tables are: a cell join, both sides partitioned, the user
    # table able to split with aligned partner partitions and margins.
    archive = open_archive(site.data)
    plan = archive.plan(MATCH)
    archive.close()
    assert {s.cell.role for s in plan.scans if s.cell} == {"keyed", "exploded"}
    assert all(s.layout is not None for s in plan.scans)
    user = next(s for s in plan.scans if s.qualified_name == "user_alice.targets")
    assert isinstance(aligned_partner(plan.scans, user.placeholder), tuple)
    # Loads go on into the sky-indexed table (as appended batches).
    more = "tid,ra,dec,mag,pair\n9000,21.0,6.0,12.5,9000\n"
    alice.load_table("user_alice.targets", io.BytesIO(more.encode()), format="csv")
    count = alice.run_sync("SELECT COUNT(*) AS n FROM user_alice.targets").to_table()
    assert int(count["n"][0]) == 1_501
    lines = [json.loads(line) for line in site.audit.read_text().splitlines()]
    made = [e for e in lines if e["endpoint"] == "workspace.index" and e["outcome"] == "ok"]
    assert [e["query"] for e in made][-2:] == [
        "an index on mag of user_alice.targets",
        "a sky index on (ra, dec) of user_alice.targets",
    ]


@pytest.mark.parametrize(
    ("table", "column", "unique", "message"),
    [
        ("user_alice.targets", "nope", False, "column not found: nope in table user_alice"),
        ("user_alice.nothing", "ra", False, r"no table user_alice\.nothing"),
        ("survey.objects", "ra", False, r"survey\.objects is an archive table"),
        ("user_alice.targets", "tid,mag", False, "an index on two columns"),
        ("user_alice.targets", "pair", True, r"unique index: the value \d+ occurs 2 times"),
    ],
)
def test_failures_are_the_jobs_error_summary(
    site: Site, table: str, column: str, unique: bool, message: str
) -> None:
    alice = _service(site, site.alice)
    with pytest.raises(DALQueryError, match=message):
        alice.create_index(table, column, unique=unique)


def test_another_users_table_reads_as_missing(site: Site) -> None:
    bob = _service(site, site.bob)
    with pytest.raises(DALQueryError, match=r"no table user_alice\.targets"):
        bob.create_index("user_alice.targets", "tid")
    assert not Registry(site.data).get("user_alice", "targets").meta.column("tid").indexed


# --- DEST: an async job saving its result as a user table ------------------------------------

BRIGHT = "SELECT id, ra, dec FROM survey.objects WHERE id < 400 ORDER BY id"


def _run(service: pyvo.dal.TAPService, query: str, **params: str) -> pyvo.dal.AsyncTAPJob:
    job = service.submit_job(query, **params)
    job.run().wait(timeout=60)
    return job


def test_a_dest_job_saves_its_result_and_still_returns_it(site: Site) -> None:
    alice = _service(site, site.alice)
    job = _run(alice, BRIGHT, DEST="user_alice.bright")
    job.raise_if_error()
    returned = job.fetch_result().to_table()
    assert len(returned) == 400
    saved = alice.run_sync("SELECT id, ra FROM user_alice.bright ORDER BY id").to_table()
    assert saved["id"].tolist() == returned["id"].tolist()
    assert saved["ra"].unit == "deg"
    columns = alice.run_sync(
        "SELECT column_name, unit, ucd FROM TAP_SCHEMA.columns "
        "WHERE table_name = 'user_alice.bright' AND column_name = 'ra'"
    ).to_table()
    assert columns["unit"][0] == "deg" and columns["ucd"][0].startswith("pos.eq.ra")
    # Again into the same table: refused unless a mode says what to do.
    again = _run(alice, BRIGHT, DEST="user_alice.bright")
    with pytest.raises(DALQueryError, match=r"exists already.*DEST_MODE=append"):
        again.raise_if_error()
    appended = _run(alice, BRIGHT, DEST="user_alice.bright", DEST_MODE="append")
    appended.raise_if_error()
    count = alice.run_sync("SELECT COUNT(*) AS n FROM user_alice.bright").to_table()
    assert int(count["n"][0]) == 800


def test_a_dest_job_saves_only_into_ones_own_schema(site: Site) -> None:
    bob = _service(site, site.bob)
    job = _run(bob, BRIGHT, DEST="user_alice.stolen")
    with pytest.raises(DALQueryError, match="only in your own schema, user_bob"):
        job.raise_if_error()
    assert not (site.data / "user_alice" / "stolen").exists()


def test_an_over_quota_dest_job_errors_and_stores_nothing(site: Site) -> None:
    storage = AuthStorage.for_data_dir(site.data)
    store = WorkspaceStore(site.data, storage)
    try:
        store.set_quota("bob", Quota(max_rows=100))
        bob = _service(site, site.bob)
        job = _run(bob, BRIGHT, DEST="user_bob.bright")
        with pytest.raises(DALQueryError, match=r"workspace quota of bob \(rows: 0 stored.*100"):
            job.raise_if_error()
        assert job.phase == "ERROR"
        assert not (site.data / "user_bob" / "bright").exists()
        results = httpx.get(
            f"{job.url}/results/result", headers={"Authorization": f"Bearer {site.bob}"}
        )
        assert results.status_code == 404  # nothing in the result store either
    finally:
        store.set_quota("bob", Quota())
        storage.close()


def test_read_write_group_members_may_index_readers_may_not(site: Site) -> None:
    share = "r-group=readers\nrw-group=writers"
    response = httpx.post(
        f"{site.url}/permissions/user_alice.targets",
        content=share,
        headers={"Authorization": f"Bearer {site.alice}", "Content-Type": "text/plain"},
    )
    assert response.status_code < 300, response.text
    try:
        bob = _service(site, site.bob)  # r-group: may query, not index
        with pytest.raises(DALQueryError, match=r"may read user_alice\.targets but not index it"):
            bob.create_index("user_alice.targets", "tid")
        carol = _service(site, site.carol)  # rw-group
        carol.create_index("user_alice.targets", "tid")
        assert Registry(site.data).get("user_alice", "targets").meta.column("tid").indexed
    finally:
        httpx.post(
            f"{site.url}/permissions/user_alice.targets",
            content="r-group=\nrw-group=",
            headers={"Authorization": f"Bearer {site.alice}", "Content-Type": "text/plain"},
        )


def test_dest_on_sync_is_refused_not_ignored(site: Site) -> None:
    response = httpx.post(
        f"{site.url}/sync",
        data={"LANG": "ADQL", "QUERY": BRIGHT, "DEST": "user_alice.sync"},
        headers={"Authorization": f"Bearer {site.alice}"},
    )
    assert response.status_code == 400
    assert "DEST (save the result as a table) works only for async jobs" in response.text
    assert not (site.data / "user_alice" / "sync").exists()
