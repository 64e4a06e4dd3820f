"""SODA ``{async}``: a cutout as a UWS job, checked against astropy's ``Cutout2D``, with
pyvo's async job client and with curl, and hidden collections reading like missing ones.

One public collection ``pubsoda`` (one TAN image) and one hidden ``secsoda`` (group
``spies``: alice).
"""

from __future__ import annotations

import io
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import Cutout2D
from astropy.wcs import WCS
from fastapi.testclient import TestClient
from httpx import Response

from tests.images._files import tan_header, write_image
from tests.service.conftest import read_votable
from tests.service.image_worlds import ImageRoot, image_root, live_service, service_client

RA, DEC = 62.0, -37.0
DID = "ivo://skyvault/pubsoda?a"
SECRET = "ivo://skyvault/secsoda?s"


@dataclass(frozen=True)
class World(ImageRoot):
    image: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("sodaasync")
    image = write_image(root / "a.fits", tan_header(RA, DEC, nx=200, ny=150), shape=(150, 200))
    (root / "secret").mkdir()
    secret = write_image(root / "secret" / "s.fits", tan_header(150.0, 2.0))
    collections = {"pubsoda": [image], "secsoda": [secret]}
    made = image_root(root, collections, public=["pubsoda"], spies=["secsoda"])
    return World(made.data, made.alice, made.bob, image)


@pytest.fixture(scope="module")
def client(world: World) -> Iterator[TestClient]:
    with service_client(world.data) as c:
        yield c


def _check_cutout(data: bytes, source: Path) -> None:
    """The cutout is the oracle's: Cutout2D of the same pixel box, the same sky."""
    with fits.open(io.BytesIO(data)) as got:
        wcs = WCS(fits.getheader(source))
        x0 = round(float(wcs.wcs.crpix[0]) - got[0].header["CRPIX1"])
        y0 = round(float(wcs.wcs.crpix[1]) - got[0].header["CRPIX2"])
        ny, nx = got[0].data.shape
        assert 0 < nx < 200 and 0 < ny < 150
        oracle = Cutout2D(
            fits.getdata(source), ((2 * x0 + nx - 1) / 2, (2 * y0 + ny - 1) / 2), (ny, nx), wcs=wcs
        )
        np.testing.assert_array_equal(got[0].data, oracle.data)
        sky = WCS(got[0].header).pixel_to_world(0, 0)
        assert sky.separation(oracle.wcs.pixel_to_world(0, 0)).arcsec < 1e-6


def _wait(client: TestClient, job_id: str, headers: dict[str, str]) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = client.get(f"/tap/soda/async/{job_id}/phase", headers=headers).text.strip()
        if text in ("COMPLETED", "ERROR", "ABORTED"):
            return text
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not end")


def _create(client: TestClient, headers: dict[str, str] | None = None, **params: str) -> str:
    r = client.post("/tap/soda/async", data=params, headers=headers or {}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return str(r.headers["location"]).rsplit("/", 1)[-1]


def test_async_cutout_equals_cutout2d(client: TestClient, world: World) -> None:
    job_id = _create(client, ID=DID, CIRCLE=f"{RA} {DEC} {3 / 3600}", PHASE="RUN")
    assert _wait(client, job_id, {}) == "COMPLETED"
    r = client.get(f"/tap/soda/async/{job_id}/results/result")
    assert r.status_code == 200 and r.headers["content-type"] == "application/fits"
    _check_cutout(r.content, world.image)
    # the job document lists it
    assert (
        f"/tap/soda/async/{job_id}/results/result"
        in client.get(f"/tap/soda/async/{job_id}/results").text
    )
    # a SODA job is not a TAP job
    assert client.get(f"/tap/async/{job_id}").status_code == 404


def test_bad_requests_create_no_job(client: TestClient, world: World) -> None:
    for params, status, words in (
        ({"CIRCLE": f"{RA} {DEC} 0.01"}, 400, "ID"),
        ({"ID": DID, "CIRCLE": "1 2"}, 400, "CIRCLE"),
        ({"ID": DID, "BAND": "1 2", "TIME": "x"}, 400, "TIME"),
        ({"ID": "ivo://skyvault/pubsoda?nosuch", "CIRCLE": f"{RA} {DEC} 0.01"}, 404, "no image"),
        ({"ID": SECRET, "CIRCLE": "150 2 0.001"}, 404, "no image"),
    ):
        r = client.post("/tap/soda/async", data=params, follow_redirects=False)
        assert r.status_code == status, (params, r.text)
        document = read_votable(r.content)
        infos = document.resources[0].infos
        message = next(i.content for i in infos if i.name == "QUERY_STATUS")
        assert words in str(message)
    # a hidden ID reads exactly as a missing one
    missing = client.post("/tap/soda/async", data={"ID": "ivo://skyvault/secsodb?s",
                                                    "CIRCLE": "150 2 0.001"})  # fmt: skip
    hidden = client.post("/tap/soda/async", data={"ID": SECRET, "CIRCLE": "150 2 0.001"})
    assert missing.text.replace("secsodb", "secsoda") == hidden.text


def test_the_group_cuts_its_hidden_collection(client: TestClient, world: World) -> None:
    headers = {"Authorization": f"Bearer {world.alice}"}
    job_id = _create(client, headers, ID=SECRET, CIRCLE="150 2 0.001", PHASE="RUN")
    assert _wait(client, job_id, headers) == "COMPLETED"
    data = client.get(f"/tap/soda/async/{job_id}/results/result", headers=headers).content
    with fits.open(io.BytesIO(data)) as got:
        assert got[0].data.size > 0
    # nobody else sees the job
    assert client.get(f"/tap/soda/async/{job_id}").status_code in (401, 403, 404)


def test_a_region_outside_the_image_ends_in_error(client: TestClient) -> None:
    job_id = _create(client, ID=DID, CIRCLE="10 10 0.001", PHASE="RUN")
    assert _wait(client, job_id, {}) == "ERROR"
    error = client.get(f"/tap/soda/async/{job_id}/error")
    assert "CutoutNoOverlap" in error.text or "does not overlap" in error.text


def test_capabilities_declare_soda_async(client: TestClient) -> None:
    text = client.get("/tap/capabilities").text
    capability = text.split('standardID="ivo://ivoa.net/std/SODA#async-1.0"', 1)[1]
    assert "/tap/soda/async</accessURL>" in capability.split("</capability>", 1)[0]


# --- real clients -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live_url(world: World) -> Iterator[str]:
    with live_service(world.data) as url:
        yield url


def test_pyvo_async_job(live_url: str, world: World) -> None:
    """pyvo's UWS client runs the job, waits and reads the result (created by a POST, as
    pyvo's own ``AsyncTAPJob.create`` would at a TAP URL's ``/async``)."""
    import requests
    from pyvo.dal.tap import AsyncTAPJob

    created = requests.post(
        f"{live_url}/soda/async",
        data={"ID": DID, "CIRCLE": f"{RA} {DEC} {3 / 3600}"},
        allow_redirects=False,
        timeout=30,
    )
    assert created.status_code == 303
    job = AsyncTAPJob(created.headers["location"])
    assert job.phase == "PENDING"
    job.run()
    job.wait(phases={"COMPLETED", "ERROR", "ABORTED"}, timeout=60)
    assert job.phase == "COMPLETED"
    _check_cutout(requests.get(job.result_uri, timeout=30).content, world.image)
    job.delete()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_async_job(live_url: str, world: World, tmp_path: Path) -> None:
    def curl(*args: str) -> str:
        out = subprocess.run(["curl", "-sS", *args], capture_output=True, text=True,
                             timeout=60, check=True)  # fmt: skip
        return out.stdout

    headers = curl("-o", "/dev/null", "-D", "-", "-d", f"ID={DID}",
                   "--data-urlencode", f"CIRCLE={RA} {DEC} {3 / 3600}", "-d", "PHASE=RUN",
                   f"{live_url}/soda/async")  # fmt: skip
    location = next(
        line.split(":", 1)[1].strip()
        for line in headers.splitlines()
        if line.lower().startswith("location:")
    )
    phase = curl(f"{location}/phase?WAIT=30")
    deadline = time.monotonic() + 60
    while phase.strip() not in ("COMPLETED", "ERROR") and time.monotonic() < deadline:
        time.sleep(0.2)
        phase = curl(f"{location}/phase")
    assert phase.strip() == "COMPLETED"
    out = tmp_path / "cut.fits"
    curl("-o", str(out), f"{location}/results/result")
    _check_cutout(out.read_bytes(), world.image)


# --- several cutouts per job (SODA 1.0 §3.1, §6) ----------------------------------------------


def _form(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    """Repeated parameters as a form (values in order)."""
    out: dict[str, list[str]] = {}
    for name, value in pairs:
        out.setdefault(name, []).append(value)
    return out


def _post(
    client: TestClient, pairs: list[tuple[str, str]], headers: dict[str, str] | None = None
) -> Response:
    return client.post(
        "/tap/soda/async", data=_form(pairs), headers=headers or {}, follow_redirects=False
    )


def _create_many(
    client: TestClient, pairs: list[tuple[str, str]], headers: dict[str, str] | None = None
) -> str:
    r = _post(client, [*pairs, ("PHASE", "RUN")], headers)
    assert r.status_code == 303, r.text
    return str(r.headers["location"]).rsplit("/", 1)[-1]


def _results(client: TestClient, job_id: str, headers: dict[str, str]) -> list[dict[str, str]]:
    doc = ET.fromstring(client.get(f"/tap/soda/async/{job_id}/results", headers=headers).text)
    uws, xlink = "{http://www.ivoa.net/xml/UWS/v1.0}", "{http://www.w3.org/1999/xlink}"
    return [
        {"id": r.get("id") or "", "href": r.get(f"{xlink}href") or "",
         "mime": r.get("mime-type") or "", "size": r.get("size") or ""}
        for r in doc.iter(f"{uws}result")
    ]  # fmt: skip


def _same_cutout(got: bytes, expected: bytes) -> None:
    with fits.open(io.BytesIO(got)) as a, fits.open(io.BytesIO(expected)) as b:
        np.testing.assert_array_equal(a[0].data, b[0].data)
        for card in ("CRPIX1", "CRPIX2", "CRVAL1", "CRVAL2", "NAXIS1", "NAXIS2"):
            assert a[0].header[card] == b[0].header[card]


def test_several_values_make_one_cutout_per_combination(client: TestClient, world: World) -> None:
    small, wider = 3 / 3600, 6 / 3600
    offset = (RA + 0.002, DEC - 0.001)
    polygon = f"{RA - 0.001} {DEC - 0.001} {RA + 0.001} {DEC - 0.001} {RA} {DEC + 0.001}"
    singles = [
        ("CIRCLE", f"{RA} {DEC} {small}"),
        ("CIRCLE", f"{offset[0]} {offset[1]} {wider}"),
        ("POLYGON", polygon),
    ]
    job_id = _create_many(client, [("ID", DID), *singles])
    assert _wait(client, job_id, {}) == "COMPLETED"
    listed = _results(client, job_id, {})
    assert [e["id"] for e in listed] == ["cutout-1", "cutout-2", "cutout-3"]
    # each result is the {sync} cutout of its combination, in SODA's order (CIRCLEs, then
    # the POLYGON), a valid cutout of the image (Cutout2D as the oracle)
    for entry, (name, value) in zip(listed, singles, strict=True):
        assert entry["href"].endswith(f"/tap/soda/async/{job_id}/results/{entry['id']}")
        assert entry["mime"] == "application/fits"
        got = client.get(f"/tap/soda/async/{job_id}/results/{entry['id']}")
        assert got.status_code == 200 and got.headers["content-type"] == "application/fits"
        assert int(entry["size"]) == len(got.content) == int(got.headers["content-length"])
        _check_cutout(got.content, world.image)
        expected = client.get("/tap/soda/sync", params={"ID": DID, name: value})
        assert expected.status_code == 200
        _same_cutout(got.content, expected.content)
    # results/result is the index of them; nothing else is a result
    index = client.get(f"/tap/soda/async/{job_id}/results/result").json()["results"]
    assert [e["id"] for e in index] == ["cutout-1", "cutout-2", "cutout-3"]
    assert index[2]["POS"].startswith("POLYGON")
    assert client.get(f"/tap/soda/async/{job_id}/results/cutout-4").status_code == 404


def test_a_combination_outside_the_image_is_an_error_document(client: TestClient) -> None:
    pairs = [("ID", DID), ("CIRCLE", "10 10 0.001"), ("CIRCLE", f"{RA} {DEC} {3 / 3600}")]
    job_id = _create_many(client, pairs)
    assert _wait(client, job_id, {}) == "COMPLETED"
    listed = _results(client, job_id, {})
    assert [(e["id"], e["mime"].split(";")[0]) for e in listed] == [
        ("cutout-1", "text/plain"),
        ("cutout-2", "application/fits"),
    ]
    text = client.get(f"/tap/soda/async/{job_id}/results/cutout-1")
    assert text.headers["content-type"].startswith("text/plain")
    assert text.text.startswith("UsageError: ") and "overlap" in text.text
    assert "/tmp" not in text.text and "Traceback" not in text.text
    # every combination missing the image: the job fails as a single one does
    job_id = _create_many(
        client, [("ID", DID), ("CIRCLE", "10 10 0.001"), ("CIRCLE", "11 10 0.001")]
    )
    assert _wait(client, job_id, {}) == "ERROR"
    assert "overlap" in client.get(f"/tap/soda/async/{job_id}/error").text


def test_several_ids_and_who_sees_them(client: TestClient, world: World) -> None:
    alice = {"Authorization": f"Bearer {world.alice}"}
    circles = [("CIRCLE", f"{RA} {DEC} {3 / 3600}"), ("CIRCLE", "150 2 0.001")]
    # one ID hidden from the creator: refused at creation exactly as a missing one
    hidden = _post(client, [("ID", DID), ("ID", SECRET), *circles])
    missing = _post(client, [("ID", DID), ("ID", "ivo://skyvault/secsodb?s"), *circles])
    assert hidden.status_code == 404
    assert missing.text.replace("secsodb", "secsoda") == hidden.text
    # alice sees both: 2 IDs x 2 circles, each circle inside one of the images
    job_id = _create_many(client, [("ID", DID), ("ID", SECRET), *circles], alice)
    assert _wait(client, job_id, alice) == "COMPLETED"
    kinds = [e["mime"].split(";")[0] for e in _results(client, job_id, alice)]
    assert kinds == ["application/fits", "text/plain", "text/plain", "application/fits"]
    # the job's results are alice's only
    url = f"/tap/soda/async/{job_id}/results/cutout-1"
    assert client.get(url, headers=alice).status_code == 200
    assert client.get(url).status_code == 404


def test_too_many_combinations_create_no_job(client: TestClient) -> None:
    circles = [("CIRCLE", f"{RA} {DEC} {k / 3600}") for k in range(1, 11)]
    bands = [("BAND", f"{k}e-7 {k + 1}e-7") for k in range(1, 12)]
    r = _post(client, [("ID", DID), *circles, *bands])
    assert r.status_code == 400
    assert "110 cutouts" in r.text and "at most 100" in r.text
