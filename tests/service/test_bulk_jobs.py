"""``/bulk/jobs``: bulk jobs over a live server — the files hold exactly the rows of the
region/filter (astropy oracle), manifests verify with md5sum/sha256sum, the generated wget
and curl scripts and the aria2c list fetch and verify everything with the real tools, every
format opens, bad inputs are DALI 400s, other users see nothing, and the per-user bandwidth
limit slows transfers."""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import astropy.units as u
import httpx
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from astropy.coordinates import Latitude, Longitude, SkyCoord
from astropy.io import fits
from astropy.io.votable import parse_single_table
from mocpy import MOC

from skyvault.auth import AuthSettings
from skyvault.catalog.ingest import IngestOptions, ingest
from skyvault.config import Settings
from skyvault.service.app import create_app
from tests.service.conftest import _free_port, serve_in_thread
from tests.service.security_world import World, bearer, build_world

UWS = "{http://www.ivoa.net/xml/UWS/v1.0}"
XLINK = "{http://www.w3.org/1999/xlink}"
PLANS = "Secret.Plans"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("bulk-jobs"))


def _settings(world: World, name: str, **more: object) -> Settings:
    jobs = world.data.parent / f"jobs-{name}"
    return Settings(
        data_dir=world.data,
        jobs_database_url=f"sqlite:///{jobs / 'jobs.sqlite3'}",
        results_url=str(jobs / "results"),
        auth=AuthSettings(audit_log=jobs / "audit.jsonl"),
        **more,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def site(world: World) -> Iterator[str]:
    """A live server over the world; yields its root URL."""
    port = _free_port()
    settings = _settings(world, "live").model_copy(update={"port": port})
    with serve_in_thread(create_app(settings), port) as url:
        yield url.removesuffix("/tap")


def _plans(world: World) -> pa.Table:
    return pq.read_table(world.data.parent / "plans.parquet")


def _create(site: str, token: str | None, data: dict[str, str], **kw: object) -> httpx.Response:
    headers = bearer(token) if token else {}
    return httpx.post(f"{site}/bulk/jobs", data=data, headers=headers, follow_redirects=False, **kw)  # type: ignore[arg-type]


def _run(site: str, token: str, data: dict[str, str], **kw: object) -> str:
    """Create and run a job; its URL once it has finished (COMPLETED is asserted)."""
    r = _create(site, token, {**data, "PHASE": "RUN"}, **kw)
    assert r.status_code == 303, r.text
    job_url = r.headers["location"]
    assert job_url.startswith(f"{site}/bulk/jobs/")
    phase = _wait(job_url, token)
    assert phase == "COMPLETED", httpx.get(job_url, headers=bearer(token)).text
    return job_url


def _wait(job_url: str, token: str) -> str:
    deadline = time.monotonic() + 60
    while True:
        reply = httpx.get(f"{job_url}?WAIT=5", headers=bearer(token), timeout=30)
        doc = ET.fromstring(reply.text)
        phase = doc.findtext(f"{UWS}phase") or ""
        if phase not in ("PENDING", "QUEUED", "EXECUTING") or time.monotonic() > deadline:
            return phase


def _results(job_url: str, token: str) -> dict[str, tuple[str, int | None]]:
    doc = ET.fromstring(httpx.get(f"{job_url}/results", headers=bearer(token)).text)
    out = {}
    for r in doc.iter(f"{UWS}result"):
        size = r.get("size")
        out[r.get("id") or ""] = (r.get(f"{XLINK}href") or "", int(size) if size else None)
    return out


def _files(job_url: str, token: str) -> dict[str, bytes]:
    """Every data file of the job, fetched with the token, by manifest path."""
    manifest = httpx.get(f"{job_url}/files/manifest.json", headers=bearer(token)).json()
    out = {}
    for entry in manifest["files"]:
        body = httpx.get(f"{job_url}/files/{entry['path']}", headers=bearer(token)).content
        assert len(body) == entry["bytes"]
        assert hashlib.sha256(body).hexdigest() == entry["sha256"]
        out[entry["path"]] = body
    return out


def _cone_oracle(table: pa.Table, ra: float, dec: float, radius: float) -> set[int]:
    rows = SkyCoord(table["ra"].to_numpy() * u.deg, table["dec"].to_numpy() * u.deg)
    inside = rows.separation(SkyCoord(ra * u.deg, dec * u.deg)).deg <= radius
    return set(table["plan_id"].to_numpy()[inside].tolist())


# --- a cone job: rows, files, manifests -------------------------------------------------------


def test_a_cone_job_holds_exactly_the_cone_rows_in_bounded_files(
    site: str, world: World, tmp_path: Path
) -> None:
    cone = {"TABLE": PLANS, "CIRCLE": "10.5 0.1 0.45", "MAXFILESIZE": "20000"}
    job_url = _run(site, world.alice, cone)
    files = _files(job_url, world.alice)
    ids: list[int] = []
    for body in files.values():
        ids += pq.read_table(io.BytesIO(body))["plan_id"].to_pylist()
    expected = _cone_oracle(_plans(world), 10.5, 0.1, 0.45)
    assert len(expected) > 500
    assert sorted(ids) == sorted(expected)  # each row once
    # Split by HEALPix partition (the table has several), and by size within one.
    manifest = httpx.get(f"{job_url}/files/manifest.json", headers=bearer(world.alice)).json()
    pixels = {(e["healpix_order"], e["healpix_pixel"]) for e in manifest["files"]}
    assert len(pixels) > 1 and len(files) > len(pixels)
    assert all(len(body) < 3 * 20000 for body in files.values())
    assert sum(e["rows"] for e in manifest["files"]) == len(expected)
    # The manifests verify with the standard tools.
    for path, body in files.items():
        (tmp_path / path).write_bytes(body)
    for name in ("_MD5SUM.txt", "manifest.json", "manifest.csv"):
        doc = httpx.get(f"{job_url}/files/{name}", headers=bearer(world.alice))
        (tmp_path / name).write_bytes(doc.content)
    sha = httpx.get(f"{job_url}/files/manifest.sha256", headers=bearer(world.alice)).content
    (tmp_path / "manifest.sha256").write_bytes(sha)
    for check in (["md5sum", "-c", "_MD5SUM.txt"], ["sha256sum", "-c", "manifest.sha256"]):
        done = subprocess.run(check, cwd=tmp_path, capture_output=True, check=False)
        assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    csv_rows = (tmp_path / "manifest.csv").read_text().splitlines()
    assert csv_rows[0].split(",")[:5] == ["path", "bytes", "sha256", "md5", "rows"]
    # The other UWS resources of the job.
    alice = bearer(world.alice)
    parameters = httpx.get(f"{job_url}/parameters", headers=alice).text
    assert '<uws:parameter id="TABLE">Secret.Plans</uws:parameter>' in parameters
    assert httpx.get(f"{job_url}/phase", headers=alice).text == "COMPLETED"
    assert httpx.get(f"{job_url}/owner", headers=alice).text == "alice"
    moved = httpx.post(f"{job_url}/destruction", data={"DESTRUCTION": "2099-01-01T00:00:00Z"},
                       headers=alice, follow_redirects=False)  # fmt: skip
    assert moved.status_code == 303
    assert httpx.get(f"{job_url}/destruction", headers=alice).text.endswith("Z")
    # The UWS results list points at every file (and the scripts, links, manifests).
    results = _results(job_url, world.alice)
    assert {"links", "wget", "curl", "aria2", "_MD5SUM.txt"} <= set(results)
    for path, body in files.items():
        assert results[path] == (f"{job_url}/files/{path}", len(body))


def test_job_files_have_the_static_trees_http(site: str, world: World) -> None:
    job_url = _run(site, world.alice, {"TABLE": PLANS, "CIRCLE": "10.2 -0.5 0.2"})
    manifest = httpx.get(f"{job_url}/files/manifest.json", headers=bearer(world.alice)).json()
    entry = manifest["files"][0]
    url = f"{job_url}/files/{entry['path']}"
    whole = httpx.get(url, headers=bearer(world.alice))
    assert whole.headers["etag"] == f'"{entry["sha256"]}"'
    assert whole.headers["accept-ranges"] == "bytes"
    part = httpx.get(url, headers={**bearer(world.alice), "Range": "bytes=-8"})
    assert part.status_code == 206 and part.content == whole.content[-8:]
    again = httpx.get(url, headers={**bearer(world.alice), "If-None-Match": whole.headers["etag"]})
    assert again.status_code == 304
    listing = httpx.get(f"{job_url}/files", headers=bearer(world.alice), follow_redirects=True)
    assert listing.status_code == 200 and entry["path"] in listing.text
    # The run is audited under the job type's own path.
    job_id = job_url.rsplit("/", 1)[-1]
    audit = (world.data.parent / "jobs-live" / "audit.jsonl").read_text()
    assert f'"endpoint": "/bulk/jobs/{job_id}", ' in audit


# --- scripts and lists, run by the real tools -------------------------------------------------


def _check_fetched(directory: Path, files: dict[str, bytes]) -> None:
    for path, body in files.items():
        assert (directory / path).read_bytes() == body, path


@pytest.mark.skipif(shutil.which("wget") is None, reason="wget is not installed")
def test_the_wget_and_curl_scripts_fetch_and_verify_everything(
    site: str, world: World, tmp_path: Path
) -> None:
    job_url = _run(site, world.alice, {"TABLE": PLANS, "CIRCLE": "10.7 0.4 0.3", "FORMAT": "hats"})
    files = _files(job_url, world.alice)
    for tool in ("wget", "curl"):
        script = httpx.get(f"{job_url}/results/{tool}", headers=bearer(world.alice))
        assert script.status_code == 200
        assert world.alice not in script.text and "Authorization" not in script.text
        target = tmp_path / tool
        target.mkdir()
        (target / "get.sh").write_text(script.text)
        for _ in range(2):  # a second run resumes: nothing to fetch, and it verifies again
            done = subprocess.run(["sh", "get.sh"], cwd=target, capture_output=True, check=False)
            assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
            assert b"all files verified" in done.stdout
        _check_fetched(target, files)
    # A file spoiled after the fact makes the script fail.
    spoiled = tmp_path / "wget" / next(iter(files))
    spoiled.write_bytes(b"x" + spoiled.read_bytes()[1:])
    done = subprocess.run(["sh", "get.sh"], cwd=tmp_path / "wget", capture_output=True, check=False)
    assert done.returncode != 0


@pytest.mark.skipif(shutil.which("aria2c") is None, reason="aria2 is not installed")
def test_the_aria2c_list_fetches_and_checks_everything(
    site: str, world: World, tmp_path: Path
) -> None:
    job_url = _run(site, world.alice, {"TABLE": PLANS, "CIRCLE": "10.3 0.5 0.3"})
    files = _files(job_url, world.alice)
    listing = httpx.get(f"{job_url}/results/aria2", headers=bearer(world.alice)).text
    assert listing.count("checksum=md5=") == len(files)
    (tmp_path / "list.txt").write_text(listing)
    done = subprocess.run(
        ["aria2c", "-q", "-i", "list.txt", "-d", str(tmp_path / "out"), "--check-integrity=true"],
        cwd=tmp_path,
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    _check_fetched(tmp_path / "out", files)


def test_the_links_document_has_a_this_row_per_file(site: str, world: World) -> None:
    job_url = _run(site, world.alice, {"TABLE": PLANS, "CIRCLE": "10.5 0 0.2"})
    files = _files(job_url, world.alice)
    # pyvo's DataLink tools read it and fetch every file (the session carries the token).
    import requests
    from pyvo.dal.adhoc import DatalinkResults

    session = requests.Session()
    session.headers.update(bearer(world.alice))
    links = DatalinkResults.from_result_url(f"{job_url}/results/links", session=session)
    fetched = {}
    for row in links:  # (bysemantics would fetch the IVOA vocabulary: offline here)
        assert row.semantics == "#this"
        fetched[row.description] = session.get(row.access_url, timeout=30).content
    assert fetched == files
    doc = httpx.get(f"{job_url}/results/links", headers=bearer(world.alice))
    assert doc.headers["content-type"].startswith("application/x-votable+xml;content=datalink")
    table = parse_single_table(io.BytesIO(doc.content)).to_table()
    assert list(table["semantics"]) == ["#this"] * len(files)
    sizes = {str(url).rsplit("/", 1)[-1]: int(n) for url, n in
             zip(table["access_url"], table["content_length"], strict=True)}  # fmt: skip
    assert sizes == {path: len(body) for path, body in files.items()}


# --- formats, filters, columns, MOC -----------------------------------------------------------


def test_every_format_opens_with_filter_and_columns(
    site: str, world: World, tmp_path: Path
) -> None:
    plans = _plans(world).to_pandas()
    cone = _cone_oracle(_plans(world), 10.5, 0.0, 0.4)
    wanted = {i for i in cone if plans.loc[i, "budget_xyz"] < 400000}
    base = {"TABLE": PLANS, "CIRCLE": "10.5 0 0.4", "FILTER": "budget_xyz < 400000",
            "COLUMNS": "plan_id, budget_xyz"}  # fmt: skip
    for fmt in ("parquet", "fits", "votable", "csv", "hats"):
        job_url = _run(site, world.alice, {**base, "FORMAT": fmt})
        files = _files(job_url, world.alice)
        ids: list[int] = []
        for path, body in files.items():
            if fmt == "parquet":
                table = pq.read_table(io.BytesIO(body))
                assert table.column_names == ["plan_id", "budget_xyz"]
                ids += table["plan_id"].to_pylist()
            elif fmt == "fits":
                with fits.open(io.BytesIO(body)) as hdus:
                    assert list(hdus[1].columns.names) == ["plan_id", "budget_xyz"]
                    ids += hdus[1].data["plan_id"].tolist()
            elif fmt == "votable":
                table = parse_single_table(io.BytesIO(body)).to_table()
                assert table.colnames == ["plan_id", "budget_xyz"]
                ids += table["plan_id"].tolist()
            elif fmt == "csv":
                table = pacsv.read_csv(io.BytesIO(body))
                assert table.column_names == ["plan_id", "budget_xyz"]
                ids += table["plan_id"].to_pylist()
            else:
                target = tmp_path / "hats" / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(body)
        if fmt == "hats":
            import hats

            catalog = hats.read_hats(tmp_path / "hats")
            for pixel in catalog.get_healpix_pixels():
                frame = catalog.read_pixel_to_pandas(pixel)
                ids += frame["plan_id"].tolist()
                assert {"plan_id", "budget_xyz", "ra", "dec", "_healpix_29"} <= set(frame.columns)
        assert sorted(ids) == sorted(wanted), fmt


def test_a_moc_file_selects_the_rows_in_it(site: str, world: World) -> None:
    moc = MOC.from_cone(
        Longitude(10.4 * u.deg), Latitude(0.2 * u.deg), radius=0.3 * u.deg, max_depth=9
    )
    path = world.data.parent / "region.fits"
    moc.save(str(path), format="fits", overwrite=True)
    job_url = _run(
        site, world.alice, {"TABLE": PLANS}, files={"MOC": ("region.fits", path.read_bytes())}
    )
    ids: list[int] = []
    for body in _files(job_url, world.alice).values():
        ids += pq.read_table(io.BytesIO(body))["plan_id"].to_pylist()
    plans = _plans(world)
    inside = moc.contains_lonlat(
        Longitude(plans["ra"].to_numpy() * u.deg), Latitude(plans["dec"].to_numpy() * u.deg)
    )
    expected = plans["plan_id"].to_numpy()[inside].tolist()
    assert len(expected) > 100
    assert sorted(ids) == sorted(expected)


# --- bad inputs, access -----------------------------------------------------------------------


def _error(r: httpx.Response) -> str:
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/x-votable+xml")
    found = re.search(r'<INFO name="QUERY_STATUS" value="ERROR">(.*?)</INFO>', r.text, re.S)
    assert found is not None, r.text
    return found.group(1)


def test_bad_inputs_are_dali_errors_and_create_no_job(site: str, world: World) -> None:
    cases = {
        "unknown table": ({"TABLE": "Nope.Nothing"}, "no such table"),
        "bad region": ({"TABLE": PLANS, "CIRCLE": "10 95 1"}, "declination"),
        "bad region text": ({"TABLE": PLANS, "REGION": "SQUARE(1, 2)"}, "REGION"),
        "unknown format": ({"TABLE": PLANS, "FORMAT": "xlsx"}, "FORMAT"),
        "unknown column": ({"TABLE": PLANS, "COLUMNS": "plan_id, nosuch"}, "nosuch"),
        "bad moc": ({"TABLE": PLANS, "MOC": "this is not a moc"}, "MOC"),
        "two regions": ({"TABLE": PLANS, "CIRCLE": "1 2 3", "POLYGON": "1 2 3 4 5 6"}, "one"),
    }
    before = httpx.get(f"{site}/bulk/jobs", headers=bearer(world.alice)).text.count("jobref")
    for name, (data, words) in cases.items():
        message = _error(_create(site, world.alice, data))
        assert words in message, (name, message)
    # A filter error says where in the FILTER it is.
    message = _error(_create(site, world.alice, {"TABLE": PLANS, "FILTER": "plan_id >\n>> 3"}))
    assert "line 2, column" in message and "FILTER" in message
    message = _error(
        _create(site, world.alice, {"TABLE": PLANS, "FILTER": "plan_id > 3 AND nosuch = 1"})
    )
    assert "line 1, column 17" in message and "nosuch" in message
    jobs = httpx.get(f"{site}/bulk/jobs", headers=bearer(world.alice)).text
    assert jobs.count("jobref") == before


def test_a_hidden_table_reads_like_a_missing_one(site: str, world: World) -> None:
    hidden = _error(_create(site, world.bob, {"TABLE": PLANS}))
    missing = _error(_create(site, world.bob, {"TABLE": "Sacret.Plons"}))
    assert hidden.replace("Secret.Plans", "X") == missing.replace("Sacret.Plons", "X")


def test_other_users_see_neither_the_job_nor_its_files(site: str, world: World) -> None:
    job_url = _run(site, world.alice, {"TABLE": "pub.stars", "FORMAT": "csv"})
    job_id = job_url.rsplit("/", 1)[-1]
    manifest = httpx.get(f"{job_url}/files/manifest.json", headers=bearer(world.alice)).json()
    path = manifest["files"][0]["path"]
    for url in (job_url, f"{job_url}/results", f"{job_url}/results/wget"):
        assert httpx.get(url, headers=bearer(world.bob)).status_code == 404
    missing = httpx.get(f"{site}/bulk/jobs/{job_id[:-1]}x/files/{path}", headers=bearer(world.bob))
    for url in (f"{job_url}/files/{path}", f"{job_url}/files/manifest.json", f"{job_url}/files/"):
        r = httpx.get(url, headers=bearer(world.bob))
        assert (r.status_code, r.content) == (missing.status_code, missing.content)
        assert httpx.get(url).status_code == 404  # anonymous, too
    assert job_id not in httpx.get(f"{site}/bulk/jobs", headers=bearer(world.bob)).text
    # Bulk jobs are not TAP jobs: not in /tap/async, and not reachable there.
    assert job_id not in httpx.get(f"{site}/tap/async", headers=bearer(world.alice)).text
    assert httpx.get(f"{site}/tap/async/{job_id}", headers=bearer(world.alice)).status_code == 404
    # DELETE removes the job and its files.
    r = httpx.delete(job_url, headers=bearer(world.alice), follow_redirects=False)
    assert r.status_code == 303
    assert httpx.get(f"{job_url}/files/{path}", headers=bearer(world.alice)).status_code == 404


def test_a_job_whose_table_became_hidden_ends_in_error(site: str, world: World) -> None:
    """The owner's access is checked again when the job runs: a clear errorSummary."""
    r = _create(site, world.alice, {"TABLE": PLANS})
    assert r.status_code == 303
    job_url = r.headers["location"]
    from skyvault.auth import AuthStorage

    storage = AuthStorage.for_data_dir(world.data)
    try:
        storage.remove_members("spies", ["alice"])
        httpx.post(f"{job_url}/phase", data={"PHASE": "RUN"}, headers=bearer(world.alice))
        assert _wait(job_url, world.alice) == "ERROR"
    finally:
        storage.add_members("spies", ["alice"])
        storage.close()
    doc = ET.fromstring(httpx.get(job_url, headers=bearer(world.alice)).text)
    summary = doc.findtext(f"{UWS}errorSummary/{UWS}message") or ""
    assert "no such table" in summary
    error = httpx.get(f"{job_url}/error", headers=bearer(world.alice))
    assert error.status_code == 200 and "no such table" in error.text
    assert (
        httpx.get(f"{job_url}/files/manifest.json", headers=bearer(world.alice)).status_code == 404
    )


# --- bandwidth --------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_bandwidth_limit_slows_transfers(world: World, tmp_path: Path) -> None:
    """One caller at 1 MB/s: a 4 MB file takes about 4 s (the bucket starts with a
    quarter second), never refused; two transfers of one caller share its 1 MB/s while
    another caller gets its own.  Generous bounds for a loaded machine."""
    rng = np.random.default_rng(3)
    n = 130_000
    big = pa.table({"ra": rng.uniform(200.0, 200.5, n), "dec": rng.uniform(10.0, 10.5, n),
                    "a": rng.random(n), "b": rng.random(n)})  # fmt: skip
    pq.write_table(big, tmp_path / "big.parquet", compression="none")
    options = IngestOptions(max_rows_per_partition=1_000_000, compression="none")
    ingest([tmp_path / "big.parquet"], "pub.big", world.data, ra="ra", dec="dec", options=options)
    rate = 1_000_000
    port = _free_port()
    settings = _settings(world, "slow", bulk_bandwidth=rate).model_copy(update={"port": port})
    with serve_in_thread(create_app(settings), port) as url:
        site = url.removesuffix("/tap")
        manifest = httpx.get(f"{site}/bulk/pub/big/manifest.json").json()
        entry = max(manifest["files"], key=lambda e: e["bytes"])
        assert entry["bytes"] > 3_000_000
        file_url = f"{site}/bulk/pub/big/{entry['path']}"
        started = time.monotonic()
        done = subprocess.run(["curl", "-sf", "-o", str(tmp_path / "x"), file_url], check=False)
        elapsed = time.monotonic() - started
        assert done.returncode == 0
        assert (tmp_path / "x").stat().st_size == entry["bytes"]
        measured = entry["bytes"] / elapsed
        assert 0.4 * rate < measured < 1.5 * rate, measured
        # Two transfers of one caller share its rate; another caller's has its own.
        token = f"Authorization: Bearer {world.alice}"
        commands = {
            "anon1": ["curl", "-sf", "-o", str(tmp_path / "a1"), file_url],
            "anon2": ["curl", "-sf", "-o", str(tmp_path / "a2"), file_url],
            "alice": ["curl", "-sf", "-H", token, "-o", str(tmp_path / "b"), file_url],
        }
        started = time.monotonic()
        running = {name: subprocess.Popen(command) for name, command in commands.items()}
        took = {}
        while running:
            for name, process in list(running.items()):
                if process.poll() is not None:
                    assert process.returncode == 0, name
                    took[name] = time.monotonic() - started
                    del running[name]
            time.sleep(0.02)
    shared = 2 * entry["bytes"] / max(took["anon1"], took["anon2"])
    assert 0.4 * rate < shared < 1.5 * rate, shared
    own = entry["bytes"] / took["alice"]
    assert 0.4 * rate < own < 1.5 * rate, own


# --- a service killed while a bulk job runs -------------------------------------------------


def test_a_job_whose_service_died_is_an_error_with_nothing_half_written(
    world: World, tmp_path: Path
) -> None:
    """What ``kill -9`` leaves — the job EXECUTING under a dead process, a staging
    directory half written — is found when the service starts again: the job is in ERROR
    (transient: run it again), the partial files are gone, nothing is served."""
    import socket

    from fastapi.testclient import TestClient

    from skyvault.service.uws.models import utc_now
    from skyvault.service.uws.storage import JobStore

    settings = _settings(world, "killed")
    with TestClient(create_app(settings), follow_redirects=False) as app:
        r = app.post("/bulk/jobs", data={"TABLE": PLANS}, headers=bearer(world.alice))
        assert r.status_code == 303
        job_url = r.headers["location"]
        job_id = job_url.rsplit("/", 1)[-1]
    gone = subprocess.Popen(["true"])
    gone.wait()
    store = JobStore(settings.jobs_database())
    try:
        assert store.queue(job_id, utc_now())
        claimed = store.claim_next(f"{socket.gethostname()}:{gone.pid}:dead", utc_now())
        assert claimed is not None and claimed.job_id == job_id
    finally:
        store.close()
    partial = Path(settings.results_location()) / job_id / ".files.0badf00d"
    partial.mkdir(parents=True)
    (partial / "Plans_Norder0_Npix4_000.parquet").write_bytes(b"PAR1 half")
    with TestClient(create_app(settings), follow_redirects=False) as app:
        doc = ET.fromstring(app.get(f"/bulk/jobs/{job_id}", headers=bearer(world.alice)).text)
        assert doc.findtext(f"{UWS}phase") == "ERROR"
        summary = doc.find(f"{UWS}errorSummary")
        assert summary is not None and summary.get("type") == "transient"
        assert "run it again" in (summary.findtext(f"{UWS}message") or "")
        files = app.get(f"/bulk/jobs/{job_id}/files/", headers=bearer(world.alice))
        assert files.status_code == 404
    assert not partial.exists()


def test_bulk_jobs_count_against_the_same_job_limits(world: World) -> None:
    """One account, one allowance: a PENDING TAP job fills a max_pending of 1 for bulk
    jobs too (429), and deleting it makes room."""
    from fastapi.testclient import TestClient

    settings = _settings(world, "limits").model_copy(
        update={"auth": AuthSettings(max_pending=1, audit_log=None)}
    )
    with TestClient(create_app(settings), follow_redirects=False) as app:
        alice = bearer(world.alice)
        tap = app.post("/tap/async", data={"LANG": "ADQL", "QUERY": "SELECT 1"}, headers=alice)
        assert tap.status_code == 303
        refused = app.post("/bulk/jobs", data={"TABLE": PLANS}, headers=alice)
        assert refused.status_code == 429 and "retry-after" in refused.headers
        assert app.delete(tap.headers["location"], headers=alice).status_code == 303
        assert app.post("/bulk/jobs", data={"TABLE": PLANS}, headers=alice).status_code == 303


def test_a_job_past_the_result_storage_stops_with_nothing_left(world: World) -> None:
    """The owner's result storage counts a bulk job's files as they are written: a job
    that would pass it stops (ERROR, saying so) and leaves no file behind."""
    from fastapi.testclient import TestClient

    settings = _settings(world, "quota").model_copy(
        update={"auth": AuthSettings(max_result_bytes=30_000, audit_log=None)}
    )
    with TestClient(create_app(settings), follow_redirects=False) as app:
        alice = bearer(world.alice)
        data = {"TABLE": PLANS, "FORMAT": "csv", "MAXFILESIZE": "10000", "PHASE": "RUN"}
        r = app.post("/bulk/jobs", data=data, headers=alice)
        assert r.status_code == 303
        job_url = r.headers["location"]
        deadline = time.monotonic() + 60
        while (phase := ET.fromstring(app.get(f"{job_url}?WAIT=5", headers=alice).text)
               .findtext(f"{UWS}phase")) in ("QUEUED", "EXECUTING"):  # fmt: skip
            assert time.monotonic() < deadline
        assert phase == "ERROR"
        doc = ET.fromstring(app.get(job_url, headers=alice).text)
        assert "would not fit" in (doc.findtext(f"{UWS}errorSummary/{UWS}message") or "")
    job_dir = Path(settings.results_location()) / job_url.rsplit("/", 1)[-1]
    assert not job_dir.exists() or not any(job_dir.rglob("*.csv"))


@pytest.mark.slow
def test_kill_9_while_a_bulk_job_runs(world: World, tmp_path: Path) -> None:
    """A real server killed mid-job: started again, the job is ERROR (transient), no file
    of it is served or left, and the same job created again completes."""
    from tests.service.test_uws_recovery import Server

    rng = np.random.default_rng(5)
    n = 2_000_000
    many = pa.table({"ra": rng.uniform(30.0, 31.0, n), "dec": rng.uniform(5.0, 6.0, n),
                     "a": rng.random(n), "b": rng.random(n)})  # fmt: skip
    pq.write_table(many, tmp_path / "many.parquet")
    ingest([tmp_path / "many.parquet"], "pub.many", world.data, ra="ra", dec="dec")
    server = Server(world.data, tmp_path / "jobs")
    site = server.url.removesuffix("/tap")
    job = {"TABLE": "pub.many", "FORMAT": "csv", "MAXFILESIZE": "4000000"}
    try:
        server.start()
        r = _create(site, world.alice, {**job, "PHASE": "RUN"})
        assert r.status_code == 303
        job_url = r.headers["location"]
        results = tmp_path / "jobs" / "results" / job_url.rsplit("/", 1)[-1]
        # Killed as soon as its first file is being written (in its hidden staging directory):
        # a fixed wait raced with a quiet machine, which finished the job within it.
        deadline = time.monotonic() + 60
        while not any(results.rglob("*.csv")):
            assert time.monotonic() < deadline, "the job wrote nothing within a minute"
            time.sleep(0.005)
        server.kill()
        server.start()
        doc = ET.fromstring(httpx.get(job_url, headers=bearer(world.alice), timeout=30).text)
        assert doc.findtext(f"{UWS}phase") == "ERROR"
        summary = doc.find(f"{UWS}errorSummary")
        assert summary is not None and summary.get("type") == "transient"
        listing = httpx.get(f"{job_url}/files/", headers=bearer(world.alice), timeout=30)
        assert listing.status_code == 404
        assert not any(results.rglob("*.csv"))
        again = _run(site, world.alice, job)
        manifest = httpx.get(f"{again}/files/manifest.json", headers=bearer(world.alice)).json()
        assert sum(e["rows"] for e in manifest["files"]) == n
    finally:
        server.stop()


# --- the demo table, anonymously, and the download client -----------------------------------


def test_a_cone_job_on_the_demo_object_table_and_skyvault_download(
    live_url: str, demo_dir: Path, tmp_path: Path
) -> None:
    """An anonymous cone job on the demo's Object table: the rows are the cone's (astropy
    oracle over the whole table), and ``skyvault download`` fetches and verifies the files
    from the job's manifest."""
    import pyarrow.dataset as ds

    from skyvault.bulk.download import download

    site = live_url.removesuffix("/tap")
    data = {
        "TABLE": "dp02_dc2_catalogs.Object",
        "REGION": "CIRCLE('ICRS', 62, -36, 2.5)",
        "COLUMNS": "objectId, coord_ra, coord_dec",
        "MAXFILESIZE": "8000",
        "PHASE": "RUN",
    }
    r = httpx.post(f"{site}/bulk/jobs", data=data, follow_redirects=False)
    assert r.status_code == 303, r.text
    job_url = r.headers["location"]
    deadline = time.monotonic() + 60
    while (
        phase := ET.fromstring(httpx.get(f"{job_url}?WAIT=5", timeout=30).text).findtext(
            f"{UWS}phase"
        )
    ) in ("PENDING", "QUEUED", "EXECUTING"):
        assert time.monotonic() < deadline
    assert phase == "COMPLETED"
    report = download(job_url, tmp_path / "got")  # the job's URL: its files
    assert report.ok and report.fetched
    got = pa.concat_tables([pq.read_table(tmp_path / "got" / path) for path in report.fetched])
    table = ds.dataset(
        demo_dir / "dp02_dc2_catalogs/Object/dataset", format="parquet", exclude_invalid_files=True
    ).to_table(columns=["objectId", "coord_ra", "coord_dec"])
    rows = SkyCoord(table["coord_ra"].to_numpy() * u.deg, table["coord_dec"].to_numpy() * u.deg)
    inside = rows.separation(SkyCoord(62 * u.deg, -36 * u.deg)).deg <= 2.5
    expected = table["objectId"].to_numpy()[inside]
    assert len(expected) > 100
    assert sorted(got["objectId"].to_pylist()) == sorted(expected.tolist())
