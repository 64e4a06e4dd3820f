"""ObsTAP over HTTP: ``ivoa.ObsCore`` as the union of the collections each caller may read,
its description in TAP_SCHEMA, ``/tables`` and ``/capabilities``, and ``access_url``
pointing to DataLink.

Three collections of synthetic TAN images: ``pubimg`` (2 images, PUBLIC), ``secimg``
(1 image, group ``spies``: alice, not bob) and ``moreimg`` (3 images, PUBLIC) elsewhere on
the sky.
"""

from __future__ import annotations

import shutil
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from skyvault.config import Settings
from skyvault.images.obscore import COLUMNS, EXTENSION_COLUMNS
from skyvault.service.app import create_app
from tests.images._files import tan_header, write_image
from tests.service.conftest import ROOMY_AUTH, read_votable
from tests.service.image_worlds import ImageRoot as World
from tests.service.image_worlds import image_root, live_service, service_client
from tests.service.test_live import KNOWN_VALIDATOR_ERRORS

PUB = (62.0, -37.0)
SEC = (150.0, 2.0)
MORE = (200.0, 30.0)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("obscore")
    files: dict[str, list[Path]] = {"pubimg": [], "secimg": [], "moreimg": []}
    for collection, (ra, dec), bands in (
        ("pubimg", PUB, "ri"),
        ("secimg", SEC, "i"),
        ("moreimg", MORE, "gri"),
    ):
        folder = root / collection
        folder.mkdir()
        for k, band in enumerate(bands):
            header = tan_header(ra + 0.01 * k, dec, band=band)
            files[collection].append(write_image(folder / f"{band}{k}.fits", header))
    return image_root(root, files, public=["pubimg", "moreimg"], spies=["secimg"])


@pytest.fixture(scope="module")
def client(world: World) -> Iterator[TestClient]:
    with service_client(world.data) as c:
        yield c


def _auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _query(client: TestClient, adql: str, token: str | None = None) -> list[dict[str, object]]:
    response = client.post("/tap/sync", data={"LANG": "ADQL", "QUERY": adql}, headers=_auth(token))
    assert response.status_code == 200, response.text
    table = read_votable(response.content).get_first_table().to_table()
    return [dict(zip(table.colnames, row, strict=True)) for row in table.iterrows()]


def test_union_is_what_the_caller_may_read(client: TestClient, world: World) -> None:
    adql = "SELECT obs_collection, COUNT(*) AS n FROM ivoa.ObsCore GROUP BY obs_collection"
    for token, expected in (
        (None, {"pubimg": 2, "moreimg": 3}),
        (world.bob, {"pubimg": 2, "moreimg": 3}),
        (world.alice, {"pubimg": 2, "moreimg": 3, "secimg": 1}),
    ):
        rows = _query(client, adql, token)
        assert {str(r["obs_collection"]): int(r["n"]) for r in rows} == expected  # type: ignore[call-overload]
        # the count is the sum of the members' counts, each asked directly
        total = _query(client, "SELECT COUNT(*) AS n FROM ivoa.obscore", token)[0]["n"]
        members = sum(
            int(_query(client, f"SELECT COUNT(*) AS n FROM {c}.obscore", token)[0]["n"])  # type: ignore[call-overload]
            for c in expected
        )
        assert total == members == sum(expected.values())


def test_hidden_rows_are_absent_even_by_position(client: TestClient, world: World) -> None:
    adql = (
        "SELECT obs_id FROM ivoa.ObsCore WHERE "
        f"CONTAINS(POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', {SEC[0]}, {SEC[1]}, 1)) = 1"
    )
    assert _query(client, adql, world.bob) == []
    assert [r["obs_id"] for r in _query(client, adql, world.alice)] == ["i0"]


@pytest.mark.parametrize(
    "name", ["ivoa.ObsCore", "ivoa.obscore", "IVOA.OBSCORE", '"ivoa"."ObsCore"']
)
def test_identifiers_as_adql_has_them(client: TestClient, name: str) -> None:
    assert _query(client, f"SELECT COUNT(*) AS n FROM {name}")[0]["n"] == 5


def test_a_delimited_name_of_another_case_is_no_table(client: TestClient) -> None:
    response = client.post(
        "/tap/sync", data={"LANG": "ADQL", "QUERY": 'SELECT * FROM "ivoa"."obscore"'}
    )
    assert response.status_code == 400
    assert "obscore" in response.text


def test_access_url_is_the_datalink_document(client: TestClient) -> None:
    for table in ("ivoa.ObsCore", "pubimg.obscore"):
        rows = _query(
            client,
            f"SELECT obs_publisher_did, access_url, access_format FROM {table} "
            "WHERE obs_collection = 'pubimg'",
        )
        assert len(rows) == 2
        for row in rows:
            did = str(row["obs_publisher_did"])
            assert row["access_format"] == "application/x-votable+xml;content=datalink"
            url = str(row["access_url"])
            assert url == "http://testserver/tap/datalink/links?ID=" + urllib.parse.quote(
                did, safe=""
            )
            links = client.get(url.removeprefix("http://testserver"))
            assert links.status_code == 200
            assert did in links.text and "#this" in links.text


def test_access_url_follows_the_configured_base_url(world: World) -> None:
    settings = Settings(data_dir=world.data, auth=ROOMY_AUTH, base_url="https://example.org/x/tap")
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        rows = _query(c, "SELECT access_url FROM ivoa.ObsCore WHERE obs_collection = 'pubimg'")
    assert all(
        str(r["access_url"]).startswith("https://example.org/x/tap/datalink/links?ID=ivo%3A")
        for r in rows
    )


def test_tap_schema_describes_obscore(client: TestClient, world: World) -> None:
    tables = _query(
        client, "SELECT table_name, table_type FROM TAP_SCHEMA.tables WHERE schema_name = 'ivoa'"
    )
    assert [r["table_name"] for r in tables] == ["ivoa.ObsCore"]
    columns = _query(
        client,
        "SELECT column_name, unit, ucd, utype, datatype FROM TAP_SCHEMA.columns "
        "WHERE table_name = 'ivoa.ObsCore'",
    )
    got = {str(r["column_name"]): r for r in columns}
    mandatory = [c for c in COLUMNS if c.mandatory]
    assert len(mandatory) == 30
    for c in mandatory:
        row = got[c.name]
        assert row["utype"] == c.utype and str(c.utype).startswith("obscore:")
        assert row["ucd"] == c.ucd
        assert (row["unit"] or None) == c.unit, c.name
    # beside the standard's columns, Rubin's extension ones (no skyvault internals)
    assert set(got) == {c.name for c in (*COLUMNS, *EXTENSION_COLUMNS)}
    assert {str(got[c.name]["utype"] or "") for c in EXTENSION_COLUMNS} == {""}


def test_tables_lists_obscore(client: TestClient) -> None:
    text = client.get("/tap/tables").text
    assert "<name>ivoa.ObsCore</name>" in text
    one = client.get("/tap/tables/ivoa.ObsCore")
    assert one.status_code == 200
    assert "obscore:Char.SpatialAxis.Coverage.Support.Area" in one.text


def test_capabilities_declare_the_obscore_data_model(client: TestClient) -> None:
    text = client.get("/tap/capabilities").text
    tap = text.split('standardID="ivo://ivoa.net/std/TAP"', 1)[1].split("</capability>", 1)[0]
    assert '<dataModel ivo-id="ivo://ivoa.net/std/ObsCore#core-1.1">ObsCore-1.1</dataModel>' in tap


def test_no_collection_no_obscore(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    settings = Settings(data_dir=data, auth=ROOMY_AUTH)
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        assert "ObsCore" not in c.get("/tap/capabilities").text
        response = c.post("/tap/sync", data={"LANG": "ADQL", "QUERY": "SELECT * FROM ivoa.ObsCore"})
        assert response.status_code == 400


# --- DataLink service descriptors in results ------------------------------------------------


def _descriptors(client: TestClient, adql: str, fmt: str = "votable") -> list[object]:
    response = client.post("/tap/sync", data={"LANG": "ADQL", "QUERY": adql, "RESPONSEFORMAT": fmt})
    assert response.status_code == 200, response.text
    document = read_votable(response.content)
    return [r for r in document.resources if r.type == "meta" and r.utype == "adhoc:service"]


@pytest.mark.parametrize("fmt", ["votable", "votable/td", "votable/b"])
def test_a_result_with_dids_carries_a_datalink_descriptor(client: TestClient, fmt: str) -> None:
    adql = "SELECT obs_id, obs_publisher_did AS did FROM ivoa.ObsCore"
    response = client.post("/tap/sync", data={"LANG": "ADQL", "QUERY": adql, "RESPONSEFORMAT": fmt})
    document = read_votable(response.content)
    (service,) = [r for r in document.resources if r.utype == "adhoc:service"]
    params = {p.name: p.value for p in service.params}
    assert params["standardID"] == "ivo://ivoa.net/std/DataLink#links-1.1"
    assert params["accessURL"] == "http://testserver/tap/datalink/links"
    (group,) = service.groups
    (id_param,) = [p for p in group.entries if p.name == "ID"]
    table = document.get_first_table()
    referenced = [f for f in table.fields if id_param.ref == f.ID]
    assert [f.name for f in referenced] == ["did"]


def test_no_descriptor_without_dids(client: TestClient) -> None:
    assert _descriptors(client, "SELECT obs_id, s_ra FROM ivoa.ObsCore") == []
    assert _descriptors(client, "SELECT table_name FROM TAP_SCHEMA.tables") == []
    # a collection's own table has them too
    assert len(_descriptors(client, "SELECT obs_publisher_did FROM pubimg.obscore")) == 1


# --- real clients -----------------------------------------------------------------------------

STILTS = shutil.which("stilts")


@pytest.fixture(scope="module")
def live_url(world: World) -> Iterator[str]:
    with live_service(world.data) as url:
        yield url


def test_pyvo_iter_datalinks(live_url: str, world: World) -> None:
    import pyvo

    service = pyvo.dal.TAPService(live_url)
    results = service.run_sync(
        "SELECT obs_id, obs_collection, obs_publisher_did FROM ivoa.ObsCore ORDER BY obs_id"
    )
    assert len(results) == 5
    where = {str(r["obs_publisher_did"]): (r["obs_collection"], r["obs_id"]) for r in results}
    # batched (pyvo's default: 50 IDs a request, links in no particular row order)
    seen = set()
    for links in results.iter_datalinks():
        (this,) = links.bysemantics("#this", include_narrower=False)
        collection, obs_id = where[this["ID"]]
        assert this.access_url.endswith(f"/tap/images/{collection}/{obs_id}")
        assert not this.error_message
        seen.add(this["ID"])
    assert seen == set(where)
    # one request per row, in the rows' order
    ordered = results.iter_datalinks(preserve_order=True)
    for row, links in zip(results, ordered, strict=True):
        (this,) = links.bysemantics("#this", include_narrower=False)
        assert this["ID"] == row["obs_publisher_did"]


@pytest.mark.slow
@pytest.mark.skipif(STILTS is None, reason="stilts is not installed")
def test_taplint_obscore_stage(live_url: str) -> None:
    out = subprocess.run(
        [str(STILTS), "taplint", f"tapurl={live_url}", "stages=TMV TME TMS TMC CPV CAP MDQ OBS",
         "maxrepeat=3"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    report = out.stdout + out.stderr
    assert "Totals: Errors:" in report, report[-3000:]
    assert "ivoa.ObsCore columns: 30/30 required" in report, report[-3000:]
    obs = report.split("Section OBS:", 1)[1].split("Section ", 1)[0]
    assert not [line for line in obs.splitlines() if line[:2] in ("E-", "W-", "F-")], obs
    errors = [line for line in report.splitlines() if line[:2] in ("E-", "F-")]
    unexplained = [e for e in errors if not any(p.match(e) for p in KNOWN_VALIDATOR_ERRORS)]
    assert not unexplained, "\n".join(unexplained)


def test_async_jobs_see_the_view_as_their_owner(client: TestClient, world: World) -> None:
    from tests.service.test_uws import wait_final

    adql = "SELECT obs_collection, obs_publisher_did, access_url FROM ivoa.ObsCore"
    for token, collections in ((world.bob, {"pubimg", "moreimg"}),
                               (world.alice, {"pubimg", "moreimg", "secimg"})):  # fmt: skip
        r = client.post(
            "/tap/async",
            data={"LANG": "ADQL", "QUERY": adql, "PHASE": "RUN"},
            headers=_auth(token),
            follow_redirects=False,
        )
        assert r.status_code == 303, r.text
        job_id = r.headers["location"].rsplit("/", 1)[-1]
        assert wait_final(client, job_id, _auth(token)) == "COMPLETED"
        body = client.get(f"/tap/async/{job_id}/results/result", headers=_auth(token)).content
        document = read_votable(body)
        table = document.get_first_table().to_table()
        assert set(table["obs_collection"]) == collections
        assert all(str(u).startswith("http://testserver/tap/datalink/links?ID=ivo%3A")
                   for u in table["access_url"])  # fmt: skip
        assert [r.utype for r in document.resources if r.type == "meta"] == ["adhoc:service"]
