"""Image access over HTTP: DataLink links, files, previews, headers, SODA cutouts, and
hidden collections reading like missing ones.

Two small collections of synthetic TAN images: ``pubimg`` granted to PUBLIC and ``secimg``
to group ``spies`` (alice; bob is not in it).  ``sacimg`` is the hidden one's twin: a
collection that exists nowhere, with a name of the same length.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.nddata import Cutout2D
from astropy.wcs import WCS
from fastapi.testclient import TestClient

from tests.images._files import tan_header, write_image
from tests.service.conftest import read_votable
from tests.service.image_worlds import ImageRoot, image_root, live_service, service_client

PUB_RA, PUB_DEC = 62.0, -37.0
SEC_RA, SEC_DEC = 150.0, 2.0


@dataclass(frozen=True)
class ImageWorld(ImageRoot):
    sources: dict[str, Path]


def _did(collection: str, obs_id: str) -> str:
    return f"ivo://skyvault/{collection}?{obs_id}"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> ImageWorld:
    root = tmp_path_factory.mktemp("imgsvc")
    sources = {
        "a": write_image(root / "a.fits", tan_header(PUB_RA, PUB_DEC, nx=200, ny=150),
                         shape=(150, 200)),
        "b": write_image(root / "b.fits.fz", tan_header(PUB_RA + 0.01, PUB_DEC, band="g"),
                         compressed=True),
    }  # fmt: skip
    secret = root / "secret"
    secret.mkdir()
    sources["secret-a"] = write_image(secret / "a.fits", tan_header(SEC_RA, SEC_DEC))
    collections = {"pubimg": [sources["a"], sources["b"]], "secimg": [sources["secret-a"]]}
    made = image_root(root, collections, public=["pubimg"], spies=["secimg"])
    return ImageWorld(made.data, made.alice, made.bob, sources)


@pytest.fixture(scope="module")
def client(world: ImageWorld) -> Iterator[TestClient]:
    with service_client(world.data) as c:
        yield c


@pytest.fixture(scope="module")
def live_url(world: ImageWorld) -> Iterator[str]:
    with live_service(world.data) as url:
        yield url


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _links(client: TestClient, ids: list[str], headers: dict[str, str] | None = None,
           method: str = "GET") -> list[dict[str, object]]:  # fmt: skip
    if method == "GET":
        r = client.get("/tap/datalink/links", params=[("ID", i) for i in ids], headers=headers)
    else:
        r = client.post("/tap/datalink/links", data={"ID": ids}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/x-votable+xml;content=datalink"
    table = read_votable(r.content).get_first_table().to_table(use_names_over_ids=True)
    # astropy reads an empty char cell as "" and an empty long cell as masked: both null
    return [{k: (None if np.ma.is_masked(row[k]) or row[k] == "" else row[k])
             for k in table.colnames} for row in table]  # fmt: skip


# --- DataLink ---------------------------------------------------------------------------------


def test_links_of_an_image(client: TestClient, world: ImageWorld) -> None:
    did = _did("pubimg", "a")
    rows = _links(client, [did])
    by = {r["semantics"]: r for r in rows}
    assert set(by) == {"#this", "#preview", "#detached-header", "#cutout"}
    assert all(r["ID"] == did for r in rows)
    this = by["#this"]
    assert this["content_type"] == "application/fits"
    stored = client.get(str(this["access_url"]))
    assert stored.status_code == 200
    assert this["content_length"] == len(stored.content)
    assert stored.content == world.sources["a"].read_bytes()
    assert by["#cutout"]["service_def"] and by["#cutout"]["access_url"] is None
    for row in rows:  # exactly one of access_url, service_def, error_message
        assert sum(row[k] is not None for k in ("access_url", "service_def", "error_message")) == 1


def test_links_declare_the_soda_descriptor(client: TestClient) -> None:
    r = client.get("/tap/datalink/links", params={"ID": _did("pubimg", "a")})
    doc = read_votable(r.content)
    services = [res for res in doc.resources if res.type == "meta"]
    assert len(services) == 1
    service = services[0]
    assert service.utype == "adhoc:service"
    params = {p.name: p for p in service.params}
    assert str(params["standardID"].value) == "ivo://ivoa.net/std/SODA#sync-1.0"
    assert str(params["accessURL"].value).endswith("/tap/soda/sync")
    inputs = {p.name: p for p in service.groups[0].entries}
    assert {"ID", "CIRCLE", "POLYGON", "POS", "BAND", "TIME", "POL"} <= set(inputs)
    assert inputs["ID"].ref == doc.get_first_table().fields[0].ID
    rows = _links(client, [_did("pubimg", "a")])
    assert next(r for r in rows if r["semantics"] == "#cutout")["service_def"] == service.ID


def test_many_ids_in_order_with_an_error_row(client: TestClient) -> None:
    ids = [_did("pubimg", "b"), _did("pubimg", "nosuch"), _did("pubimg", "a")] * 20
    for method in ("GET", "POST"):
        rows = _links(client, ids, method=method)
        assert [r["ID"] for r in rows if r["semantics"] == "#this"] == ids
        errors = [r for r in rows if r["error_message"] is not None]
        assert len(errors) == 20
        assert all(str(e["error_message"]).startswith("NotFoundFault: ") for e in errors)


def test_links_need_an_id(client: TestClient) -> None:
    r = client.get("/tap/datalink/links")
    assert r.status_code == 400
    assert "ID parameter is missing" in r.text
    r = client.get(
        "/tap/datalink/links", params={"ID": _did("pubimg", "a"), "RESPONSEFORMAT": "csv"}
    )
    assert r.status_code == 400 and "RESPONSEFORMAT" in r.text


# --- files, previews, headers -----------------------------------------------------------------


def test_header_is_the_files_header(client: TestClient, world: ImageWorld) -> None:
    text = client.get("/tap/images/pubimg/a/header.txt")
    assert text.status_code == 200 and text.headers["content-type"].startswith("text/plain")
    expected = fits.getheader(world.sources["a"])
    assert fits.Header.fromstring(text.text, sep="\n") == expected
    compressed = client.get("/tap/images/pubimg/b/header.txt").text
    primary, image, rest = re.split(r"^END *$", compressed, flags=re.MULTILINE)
    assert fits.Header.fromstring(primary, sep="\n")["SIMPLE"] is True
    assert rest == "\n"
    assert fits.Header.fromstring(image, sep="\n")["CRVAL1"] == pytest.approx(PUB_RA + 0.01)


def test_preview_is_a_png_and_cached(client: TestClient, world: ImageWorld) -> None:
    from PIL import Image

    first = client.get("/tap/images/pubimg/a/preview.png")
    assert first.status_code == 200 and first.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(first.content)).size == (200, 150)
    cached = list((world.data / ".skyvault" / "previews").rglob("*.png"))
    assert len(cached) == 1
    assert client.get("/tap/images/pubimg/a/preview.png").content == first.content


# --- SODA -------------------------------------------------------------------------------------


def test_cutout_equals_cutout2d(client: TestClient, world: ImageWorld) -> None:
    radius = 5.0 / 3600
    ra, dec = PUB_RA + 0.001, PUB_DEC - 0.001
    for method in ("GET", "POST"):
        params = {"ID": _did("pubimg", "a"), "CIRCLE": f"{ra} {dec} {radius}"}
        r = (client.get("/tap/soda/sync", params=params) if method == "GET"
             else client.post("/tap/soda/sync", data=params))  # fmt: skip
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/fits"
        with fits.open(io.BytesIO(r.content)) as got:
            cut = got[0]
            original = fits.getdata(world.sources["a"])
            wcs = WCS(fits.getheader(world.sources["a"]))
            # the same pixels as Cutout2D at the cut's own centre and shape
            ny, nx = cut.data.shape
            # the cut's origin: CRPIX shifted by it
            x0 = round(float(wcs.wcs.crpix[0]) - cut.header["CRPIX1"])
            y0 = round(float(wcs.wcs.crpix[1]) - cut.header["CRPIX2"])
            oracle = Cutout2D(original, ((x0 + x0 + nx - 1) / 2, (y0 + y0 + ny - 1) / 2),
                              (ny, nx), wcs=wcs)  # fmt: skip
            np.testing.assert_array_equal(cut.data, oracle.data)
            centre = SkyCoord(ra, dec, unit="deg")
            px, py = WCS(cut.header).world_to_pixel(centre)
            assert 0 <= px < nx and 0 <= py < ny
            assert abs(nx * 0.2 - 2 * 5.0) <= 2 * 0.2 + 0.5  # about 10" wide at 0.2"/pixel


def test_cutout_by_pos_polygon_band_and_time(client: TestClient) -> None:
    did = _did("pubimg", "a")
    d = 2.0 / 3600
    ra, dec = PUB_RA, PUB_DEC
    regions = {
        "POS": f"RANGE {ra - d} {ra + d} {dec - d} {dec + d}",
        "POLYGON": f"{ra - d} {dec - d} {ra + d} {dec - d} {ra} {dec + d}",
    }
    for name, value in regions.items():
        params = {"ID": did, name: value, "BAND": "6e-7 6.1e-7", "TIME": "60000 +Inf"}
        r = client.get("/tap/soda/sync", params=params)
        assert r.status_code == 200, r.text
        with fits.open(io.BytesIO(r.content)) as got:
            ny, nx = got[0].data.shape
            assert 10 <= nx <= 60 and 10 <= ny <= 60, (name, nx, ny)  # ~20-40 pixels
    whole = client.get("/tap/soda/sync", params={"ID": did, "TIME": "60000 +Inf"})
    assert fits.getdata(io.BytesIO(whole.content)).shape == (150, 200)


def test_a_cutout_larger_than_memory_goes_through_a_file(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from skyvault.images import archive

    params = {"ID": _did("pubimg", "a"), "CIRCLE": f"{PUB_RA} {PUB_DEC} {5 / 3600}"}
    in_memory = client.get("/tap/soda/sync", params=params)
    monkeypatch.setattr(archive, "SPOOL_IN_MEMORY", 100)
    spilled = client.get("/tap/soda/sync", params=params)
    assert spilled.status_code == 200
    assert int(spilled.headers["content-length"]) == len(spilled.content) > 100
    assert spilled.content == in_memory.content


def test_files_answer_head(client: TestClient, world: ImageWorld) -> None:
    r = client.head("/tap/images/pubimg/a")
    assert r.status_code == 200
    assert int(r.headers["content-length"]) == world.sources["a"].stat().st_size
    assert client.head("/tap/images/secimg/a").status_code == 404


def test_soda_errors_are_dali_400s(client: TestClient) -> None:
    did = _did("pubimg", "a")
    cases = {
        (("ID", did), ("CIRCLE", "1 2")): "CIRCLE",
        (("ID", did), ("POS", "BOX 1 2 3 4")): "POS",
        (("CIRCLE", f"{PUB_RA} {PUB_DEC} 0.01"),): "ID parameter is missing",
        (("ID", did), ("CIRCLE", "10 10 0.01")): "does not overlap",
        (("ID", did), ("BAND", "1e-9 2e-9")): "BAND",
        (("ID", did), ("TIME", "5 4")): "TIME",
        (("ID", did), ("CIRCLE", "1 2 3"), ("CIRCLE", "3 4 5")): "one value",
    }
    for params, words in cases.items():
        r = client.get("/tap/soda/sync", params=list(params))
        assert r.status_code == 400, (params, r.text)
        assert words in r.text and 'value="ERROR"' in r.text, (params, r.text)


def test_unknown_image_is_404(client: TestClient) -> None:
    r = client.get("/tap/soda/sync", params={"ID": _did("pubimg", "nosuch"), "CIRCLE": "1 2 3"})
    assert r.status_code == 404 and 'value="ERROR"' in r.text


# --- access -----------------------------------------------------------------------------------


def _hidden_paths(collection: str) -> list[tuple[str, dict[str, str]]]:
    did = _did(collection, "a")
    return [
        (f"/tap/images/{collection}/a", {}),
        (f"/tap/images/{collection}/a/preview.png", {}),
        (f"/tap/images/{collection}/a/header.txt", {}),
        ("/tap/soda/sync", {"ID": did, "CIRCLE": f"{SEC_RA} {SEC_DEC} 0.001"}),
    ]


@pytest.mark.parametrize("who", ["anonymous", "bob"])
def test_hidden_collection_reads_like_missing(
    client: TestClient, world: ImageWorld, who: str
) -> None:
    headers = {} if who == "anonymous" else _auth(world.bob)
    for (hidden, params), (missing, twin_params) in zip(
        _hidden_paths("secimg"), _hidden_paths("sacimg"), strict=True
    ):
        a = client.get(hidden, params=params, headers=headers)
        b = client.get(missing, params=twin_params, headers=headers)
        assert a.status_code == b.status_code == 404, (hidden, a.text)
        assert a.content.replace(b"secimg", b"sacimg") == b.content
        assert a.headers["content-type"] == b.headers["content-type"]
    rows = _links(client, [_did("secimg", "a")], headers)
    twins = _links(client, [_did("sacimg", "a")], headers)
    assert len(rows) == len(twins) == 1
    assert str(rows[0]["error_message"]).replace("secimg", "sacimg") == twins[0]["error_message"]


def test_the_group_sees_its_collection(client: TestClient, world: ImageWorld) -> None:
    headers = _auth(world.alice)
    for path, params in _hidden_paths("secimg"):
        r = client.get(path, params=params, headers=headers)
        assert r.status_code == 200, (path, r.text)
    rows = _links(client, [_did("secimg", "a")], headers)
    assert {r["semantics"] for r in rows} == {"#this", "#preview", "#detached-header", "#cutout"}
    assert urllib.parse.urlsplit(str(rows[0]["access_url"])).path == "/tap/images/secimg/a"


def test_capabilities_declare_datalink_and_soda(client: TestClient) -> None:
    text = client.get("/tap/capabilities").text
    for standard, path in (
        ("ivo://ivoa.net/std/DataLink#links-1.1", "/tap/datalink/links"),
        ("ivo://ivoa.net/std/SODA#sync-1.0", "/tap/soda/sync"),
    ):
        capability = text.split(f'standardID="{standard}"', 1)[1].split("</capability>", 1)[0]
        assert f"{path}</accessURL>" in capability


# --- real clients -----------------------------------------------------------------------------

STILTS = shutil.which("stilts")


def _links_url(base: str, ids: list[str]) -> str:
    return f"{base}/datalink/links?" + urllib.parse.urlencode([("ID", i) for i in ids])


@pytest.mark.skipif(STILTS is None, reason="stilts is not installed")
def test_datalinklint(live_url: str) -> None:
    ids = [_did("pubimg", "a"), _did("pubimg", "b"), _did("pubimg", "nosuch")]
    out = subprocess.run(
        [str(STILTS), "datalinklint", f"votable={_links_url(live_url, ids)}"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    report = out.stdout + out.stderr
    assert "Totals: Errors:" in report, report
    errors = [line for line in report.splitlines() if line[:2] in ("E-", "F-", "W-")]
    # STILTS 3.4.7 (Debian bookworm) checks semantics against a copy of the DataLink core
    # vocabulary older than the #detached-header term (which the current vocabulary has)
    known = re.compile(r"E-SMCO-\d+ Unknown predicate 'detached-header' from core DataLink")
    assert [e for e in errors if not known.match(e)] == [], report
    assert "Datalink table rows checked: 9" in report


def test_pyvo_reads_links_and_cuts(live_url: str, world: ImageWorld) -> None:
    from pyvo.dal.adhoc import DatalinkResults, SodaQuery

    ids = [_did("pubimg", "a"), _did("pubimg", "nosuch")]
    results = DatalinkResults.from_result_url(_links_url(live_url, ids))
    this = list(results.bysemantics("#this", include_narrower=False))
    assert [r.error_message for r in this][1].startswith("NotFoundFault: ")
    assert this[0].access_url.endswith("/tap/images/pubimg/a")
    assert this[0].content_length == world.sources["a"].stat().st_size
    cut = next(results.bysemantics("#cutout", include_narrower=False))
    service = results.get_adhocservice_by_id(cut.service_def)
    radius = 3.0 / 3600
    query = SodaQuery.from_resource(cut, service, circle=(PUB_RA, PUB_DEC, radius))
    with fits.open(io.BytesIO(query.execute_stream().read())) as got:
        wcs = WCS(fits.getheader(world.sources["a"]))
        x0 = round(float(wcs.wcs.crpix[0]) - got[0].header["CRPIX1"])
        y0 = round(float(wcs.wcs.crpix[1]) - got[0].header["CRPIX2"])
        ny, nx = got[0].data.shape
        oracle = Cutout2D(
            fits.getdata(world.sources["a"]),
            ((2 * x0 + nx - 1) / 2, (2 * y0 + ny - 1) / 2),
            (ny, nx),
            wcs=wcs,
        )
        np.testing.assert_array_equal(got[0].data, oracle.data)
        # the cut's WCS is the oracle's: the same sky at the same pixel
        assert (
            WCS(got[0].header)
            .pixel_to_world(0, 0)
            .separation(oracle.wcs.pixel_to_world(0, 0))
            .arcsec
            < 1e-6
        )
