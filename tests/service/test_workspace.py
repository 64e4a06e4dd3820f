"""User tables against a live server, with pyvo's table methods unchanged (CADC youcat's API).

The archive is the security world (``pub.stars`` public, ``Secret.Plans`` for ``spies``)
plus users carol (no group) and erin (group ``writers``).  alice owns the user tables;
bob (``crew``) is granted read, then read-write; carol is an outsider; anonymous callers
are refused.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
import pyvo
import requests
from astropy.io import fits
from astropy.table import Table
from pyvo.utils.prototype import activate_features, deactivate_features

from skyvault.auth import AuthStorage, TokenService
from skyvault.auth.storage import WorkspaceQuotaRecord, utc_now
from skyvault.config import Settings
from skyvault.service.app import create_app
from skyvault.workspace.quota import WorkspaceSettings
from tests.service.conftest import _free_port, serve_in_thread
from tests.service.security_world import World, build_world
from tests.xsd import assert_valid

VOSI_TARGETS = b"""<?xml version="1.0" encoding="UTF-8"?>
<vosi:table xmlns:vosi="http://www.ivoa.net/xml/VOSITables/v1.0"
    xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <name>user_alice.targets</name>
  <description>targets near the public stars</description>
  <column><name>tid</name><dataType xsi:type="vs:VOTableType">long</dataType>
    <flag>indexed</flag></column>
  <column><name>label</name><description>what the target is</description>
    <dataType xsi:type="vs:VOTableType" arraysize="16*">char</dataType></column>
  <column><name>ra</name><unit>deg</unit><ucd>pos.eq.ra;meta.main</ucd>
    <dataType xsi:type="vs:VOTableType">double</dataType></column>
  <column><name>dec</name><unit>deg</unit><ucd>pos.eq.dec;meta.main</ucd>
    <dataType xsi:type="vs:VOTableType">double</dataType></column>
</vosi:table>"""

MAX_BODY = 200_000


@dataclass(frozen=True)
class Site:
    url: str
    world: World
    carol: str
    erin: str


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("workspace")
    world = build_world(root)
    storage = AuthStorage.for_data_dir(world.data)
    try:
        now = utc_now()
        storage.add_user("carol", now)
        storage.add_user("erin", now)
        storage.add_group("writers", ["erin"], now)
        tokens = TokenService(storage)
        carol, erin = tokens.create_token("carol", 1), tokens.create_token("erin", 1)
        storage.set_workspace_quota("erin", WorkspaceQuotaRecord(max_rows=5))
    finally:
        storage.close()
    port = _free_port()
    settings = Settings(
        data_dir=world.data,
        port=port,
        query_timeout=60,
        jobs_database_url=f"sqlite:///{root / 'jobs.sqlite3'}",
        results_url=str(root / "results"),
        workspace=WorkspaceSettings(max_body_bytes=MAX_BODY),
    )
    activate_features("cadc-tb-upload")
    try:
        with serve_in_thread(create_app(settings), port) as url:
            yield Site(url, world, carol, erin)
    finally:
        deactivate_features("cadc-tb-upload")


def _session(token: str | None) -> requests.Session:
    session = requests.Session()
    if token is not None:
        session.headers["Authorization"] = f"Bearer {token}"
    return session


def _service(site: Site, token: str | None) -> pyvo.dal.TAPService:
    return pyvo.dal.TAPService(site.url, session=_session(token))


def _query(site: Site, token: str | None, adql: str) -> Table:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _service(site, token).run_sync(adql).to_table()


def _tap_schema_tables(site: Site, token: str | None) -> set[str]:
    rows = _query(site, token, "SELECT table_name FROM TAP_SCHEMA.tables")
    return {str(x) for x in rows["table_name"]}


def _tableset(site: Site, token: str | None) -> str:
    return _session(token).get(f"{site.url}/tables").text


def _stars(site: Site) -> Table:
    return _query(site, None, "SELECT id, ra, dec FROM pub.stars ORDER BY id")


def _fits_bytes(table: Table) -> bytes:
    out = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU(table)]).writeto(out)
    return out.getvalue()


def test_pyvo_creates_loads_queries_joins_and_removes_as_the_owner(site: Site) -> None:
    alice = _service(site, site.world.alice)
    alice.create_table("user_alice.targets", io.BytesIO(VOSI_TARGETS))
    stars = _stars(site)
    # Targets on three stars (exact positions) and one far from every star, in three formats.
    csv = "tid,label,ra,dec\n" + "".join(
        f"{i},on star {int(stars['id'][i])},{float(stars['ra'][i])!r},{float(stars['dec'][i])!r}\n"
        for i in (0, 1)
    )
    alice.load_table("user_alice.targets", io.StringIO(csv), format="csv")
    ra, dec = float(stars["ra"][7]), float(stars["dec"][7])
    tsv = f"tid\tra\tdec\tlabel\n2\t{ra!r}\t{dec!r}\ton star 7\n"
    alice.load_table("user_alice.targets", io.StringIO(tsv), format="tsv")
    far = Table({"TID": np.array([3], dtype=np.int64), "RA": [200.0], "DEC": [-45.0]})
    alice.load_table("user_alice.targets", io.BytesIO(_fits_bytes(far)), format="FITSTable")

    # The VOSI table: valid, with the definition's metadata.
    document = _session(site.world.alice).get(f"{site.url}/tables/user_alice.targets")
    assert document.status_code == 200
    root = assert_valid(document.content, "VOSITables-v1.1.xsd")
    columns = {c.findtext("name"): c for c in root.iter("column")}
    assert columns["ra"].findtext("unit") == "deg"
    assert columns["ra"].findtext("ucd") == "pos.eq.ra;meta.main"
    assert columns["label"].find("dataType").get("arraysize") == "16*"  # type: ignore[union-attr]
    assert columns["label"].findtext("description") == "what the target is"
    assert "indexed" in [f.text for f in columns["tid"].iter("flag")]

    count = _query(site, site.world.alice, "SELECT COUNT(*) AS n FROM user_alice.targets")
    assert int(count["n"][0]) == 4
    assert "user_alice.targets" in _tap_schema_tables(site, site.world.alice)
    assert "user_alice.targets" in _tableset(site, site.world.alice)
    units = _query(
        site,
        site.world.alice,
        "SELECT column_name, unit FROM TAP_SCHEMA.columns "
        "WHERE table_name = 'user_alice.targets' ORDER BY column_index",
    )
    assert [str(x) for x in units["column_name"]] == ["tid", "label", "ra", "dec"]
    assert str(units["unit"][2]) == "deg"

    # A join of the user table with an archive table, on the sky.
    matched = _query(
        site,
        site.world.alice,
        "SELECT t.tid, s.id FROM user_alice.targets AS t JOIN pub.stars AS s "
        "ON DISTANCE(POINT('ICRS', t.ra, t.dec), POINT('ICRS', s.ra, s.dec)) < 1.0/3600 "
        "ORDER BY t.tid",
    )
    assert [(int(a), int(b)) for a, b in zip(matched["tid"], matched["id"], strict=True)] == [
        (0, int(stars["id"][0])),
        (1, int(stars["id"][1])),
        (2, int(stars["id"][7])),
    ]

    alice.remove_table("user_alice.targets")
    gone = _session(site.world.alice).get(f"{site.url}/tables/user_alice.targets")
    assert gone.status_code == 404
    assert "user_alice.targets" not in _tap_schema_tables(site, site.world.alice)


def test_pyvo_creates_from_a_votable_of_fields(site: Site) -> None:
    alice = _service(site, site.world.alice)
    definition = Table(
        {"obj": np.array([], dtype=np.int32), "flux": np.array([], dtype=np.float32)}
    )
    definition["flux"].unit = "mJy"
    out = io.BytesIO()
    definition.write(out, format="votable")
    alice.create_table("user_alice.fluxes", io.BytesIO(out.getvalue()), format="VOTable")
    alice.load_table("user_alice.fluxes", io.StringIO("obj,flux\n1,2.5\n2,\n"), format="csv")
    rows = _query(site, site.world.alice, "SELECT obj, flux FROM user_alice.fluxes ORDER BY obj")
    assert list(rows["obj"]) == [1, 2]
    assert str(rows["flux"].unit) == "mJy"
    alice.remove_table("user_alice.fluxes")


def _permissions(site: Site, token: str, body: str) -> requests.Response:
    return _session(token).post(
        f"{site.url}/permissions/user_alice.shared",
        data=body,
        headers={"Content-Type": "text/plain"},
    )


def test_visibility_per_user_outsider_reader_and_read_write(site: Site) -> None:
    alice = _service(site, site.world.alice)
    alice.create_table("user_alice.shared", io.BytesIO(VOSI_TARGETS))
    alice.load_table("user_alice.shared", io.StringIO("tid,ra,dec\n1,10.5,0.5\n"), format="csv")
    bob = _service(site, site.world.bob)
    try:
        # Private: bob and carol see nothing, exactly as for a table that does not exist.
        for token in (site.world.bob, site.carol):
            assert "user_alice.shared" not in _tap_schema_tables(site, token)
            assert "user_alice" not in _tableset(site, token)
            session = _session(token)
            for method, path in (
                ("GET", "tables/{}"),
                ("DELETE", "tables/{}"),
                ("GET", "permissions/{}"),
                ("POST", "load/{}"),
            ):
                answers = [
                    session.request(
                        method,
                        f"{site.url}/{path.format(name)}",
                        data=b"tid\n1\n",
                        headers={"Content-Type": "text/csv"},
                    )
                    for name in ("user_alice.shared", "user_alice.nothere")
                ]
                assert answers[0].status_code == answers[1].status_code == 404
                assert answers[0].text == answers[1].text.replace("nothere", "shared")
        with pytest.raises(pyvo.dal.DALQueryError) as hidden:
            bob.run_sync("SELECT * FROM user_alice.shared")
        with pytest.raises(pyvo.dal.DALQueryError) as missing:
            bob.run_sync("SELECT * FROM user_alice.nothere")
        assert str(hidden.value) == str(missing.value).replace("nothere", "shared")

        # Read: bob sees and queries it, but may not load, drop or share it.
        granted = _permissions(site, site.world.alice, "r-group=crew\n")
        assert granted.status_code == 200, granted.text
        assert "r-group=crew" in granted.text
        assert "user_alice.shared" in _tap_schema_tables(site, site.world.bob)
        assert "user_alice.shared" in _tableset(site, site.world.bob)
        rows = _query(site, site.world.bob, "SELECT tid FROM user_alice.shared")
        assert list(rows["tid"]) == [1]
        perms = _session(site.world.bob).get(f"{site.url}/permissions/user_alice.shared")
        assert perms.text.splitlines() == [
            "owner=alice",
            "public=false",
            "r-group=crew",
            "rw-group=",
        ]
        assert perms.headers["x-vosi-owner"] == "alice"
        assert perms.headers["x-vosi-group-ro"] == "crew"
        described = _session(site.world.bob).get(f"{site.url}/tables/user_alice.shared")
        assert (described.headers["x-vosi-owner"], described.headers["x-vosi-auth-read"]) == (
            "alice",
            "true",
        )
        archive = _session(site.world.bob).get(f"{site.url}/tables/pub.stars")
        assert archive.status_code == 200 and "x-vosi-owner" not in archive.headers
        with pytest.raises(requests.HTTPError) as refused:
            bob.load_table("user_alice.shared", io.StringIO("tid\n2\n"), format="csv")
        assert refused.value.response.status_code == 403
        with pytest.raises(requests.HTTPError) as refused:
            bob.remove_table("user_alice.shared")
        assert refused.value.response.status_code == 403
        assert _permissions(site, site.world.bob, "public=true\n").status_code == 403
        assert site.carol and "user_alice.shared" not in _tap_schema_tables(site, site.carol)

        # Read-write: bob loads; dropping and sharing stay the owner's.
        assert _permissions(site, site.world.alice, "r-group=\nrw-group=crew\n").ok
        bob.load_table("user_alice.shared", io.StringIO("tid\n2\n"), format="csv")
        rows = _query(site, site.world.alice, "SELECT tid FROM user_alice.shared ORDER BY tid")
        assert list(rows["tid"]) == [1, 2]
        with pytest.raises(requests.HTTPError) as refused:
            bob.remove_table("user_alice.shared")
        assert refused.value.response.status_code == 403

        # Public: anonymous callers query it (and still cannot change it).
        assert _permissions(site, site.world.alice, "public=true\n").ok
        assert list(_query(site, None, "SELECT COUNT(*) AS n FROM user_alice.shared")["n"]) == [2]
    finally:
        alice.remove_table("user_alice.shared")


def test_anonymous_callers_are_refused(site: Site) -> None:
    anonymous = _session(None)
    for method, path, body, kind in (
        ("PUT", "tables/user_alice.x", VOSI_TARGETS, "text/xml"),
        ("POST", "load/user_alice.x", b"tid\n1\n", "text/csv"),
        ("DELETE", "tables/user_alice.x", b"", "text/plain"),
        ("GET", "permissions/user_alice.x", b"", "text/plain"),
        ("POST", "permissions/user_alice.x", b"public=true\n", "text/plain"),
    ):
        r = anonymous.request(
            method, f"{site.url}/{path}", data=body, headers={"Content-Type": kind}
        )
        assert r.status_code == 401, (method, path, r.text)
        assert "user tables need an identity" in r.text
        assert "Bearer" in r.headers.get("WWW-Authenticate", "")


def test_capabilities_advertise_the_youcat_endpoints(site: Site) -> None:
    document = _session(None).get(f"{site.url}/capabilities")
    root = assert_valid(document.content, "VOSICapabilities-v1.0.xsd")
    advertised = {
        c.get("standardID"): c.findtext("interface/accessURL") for c in root.iter("capability")
    }
    for standard, path in (
        ("ivo://ivoa.net/std/VOSI#table-update-async-1.x", "table-update"),
        ("ivo://ivoa.net/std/VOSI#table-load-sync-1.x", "load"),
        ("ivo://ivoa.net/std/VOSI#table-permissions-1.x", "permissions"),
    ):
        assert advertised[standard] == f"{site.url}/{path}"


def test_an_over_quota_load_is_refused_with_usage_and_limit(site: Site) -> None:
    erin = _service(site, site.erin)
    erin.create_table("user_erin.t", io.BytesIO(VOSI_TARGETS))
    erin.load_table("user_erin.t", io.StringIO("tid\n1\n2\n3\n"), format="csv")
    body = "tid\n" + "".join(f"{i}\n" for i in range(10, 13))
    r = _session(site.erin).post(
        f"{site.url}/load/user_erin.t", data=body, headers={"Content-Type": "text/csv"}
    )
    assert r.status_code == 413
    assert 'value="ERROR"' in r.text
    assert "3 stored, this would make 6; the limit is 5" in r.text
    assert "nothing was stored" in r.text
    count = _query(site, site.erin, "SELECT COUNT(*) AS n FROM user_erin.t")
    assert int(count["n"][0]) == 3
    erin.remove_table("user_erin.t")


@pytest.mark.parametrize(
    ("method", "path", "body", "kind", "says"),
    [
        ("PUT", "tables/user_alice.bad", b"<table><column>", "text/xml", "not well-formed XML"),
        (
            "PUT",
            "tables/user_alice.bad",
            b"<table><column><name>x</name><dataType>complex128</dataType></column></table>",
            "text/xml",
            "'complex128' is not a VOTable datatype",
        ),
        ("PUT", "tables/..%2F..%2Fetc.passwd", VOSI_TARGETS, "text/xml", "is not a table name"),
        ("PUT", "tables/user_alice.a%22b", VOSI_TARGETS, "text/xml", "is not a table name"),
        ("PUT", "tables/pub.mine", VOSI_TARGETS, "text/xml", "only in your own schema"),
        ("PUT", "tables/TAP_SCHEMA.mine", VOSI_TARGETS, "text/xml", "schema of the service"),
        ("PUT", "tables/ivoa.ObsCore", VOSI_TARGETS, "text/xml", "schema of the service"),
        ("PUT", "tables/user_alice.bad", VOSI_TARGETS, "application/json", "not understood"),
        ("POST", "load/user_alice.base", b"tid,nope\n1,2\n", "text/csv", "column 'nope'"),
        ("POST", "load/user_alice.base", b"tid\n1\nx\n", "text/csv", "row 2, column 'tid'"),
        ("POST", "load/user_alice.base", b"tid\n1\n", "text/html", "cannot load data of type"),
        (
            "POST",
            "load/user_alice.base",
            _fits_bytes(Table({"tid": [1]}))[:2880],
            "application/fits",
            "holds no table",
        ),
        (
            "POST",
            "load/user_alice.base",
            b"tid\n" + b"1\n" * (MAX_BODY // 2 + 10),
            "text/csv",
            "larger than the limit of 195.3 KiB",
        ),
    ],
)
def test_bad_inputs_are_400s_that_say_what_to_fix_and_store_nothing(
    site: Site, method: str, path: str, body: bytes, kind: str, says: str
) -> None:
    alice = _session(site.world.alice)
    alice.put(
        f"{site.url}/tables/user_alice.base",
        data=VOSI_TARGETS,
        headers={"Content-Type": "text/xml"},
    )  # 200 the first time, 409 after
    before = _tap_schema_tables(site, site.world.alice)
    r = alice.request(method, f"{site.url}/{path}", data=body, headers={"Content-Type": kind})
    assert r.status_code == 400, r.text
    assert says in r.text
    assert "/tmp" not in r.text and "Traceback" not in r.text
    assert _tap_schema_tables(site, site.world.alice) == before
    count = _query(site, site.world.alice, "SELECT COUNT(*) AS n FROM user_alice.base")
    assert int(count["n"][0]) == 0


def test_creating_an_existing_table_is_a_409(site: Site) -> None:
    alice = _service(site, site.world.alice)
    alice.create_table("user_alice.twice", io.BytesIO(VOSI_TARGETS))
    with pytest.raises(requests.HTTPError) as refused:
        alice.create_table("user_alice.twice", io.BytesIO(VOSI_TARGETS))
    assert refused.value.response.status_code == 409
    assert "exists already" in refused.value.response.text
    alice.remove_table("user_alice.twice")


def test_a_chunked_body_over_the_limit_is_cut_off_and_stores_nothing(site: Site) -> None:
    alice = _session(site.world.alice)
    alice.put(
        f"{site.url}/tables/user_alice.chunked",
        data=VOSI_TARGETS,
        headers={"Content-Type": "text/xml"},
    )

    def body() -> Iterator[bytes]:  # no Content-Length: requests sends it chunked
        yield b"tid\n"
        for _ in range(MAX_BODY // 1000 + 10):
            yield b"1\n" * 500

    r = alice.post(
        f"{site.url}/load/user_alice.chunked", data=body(), headers={"Content-Type": "text/csv"}
    )
    assert r.status_code == 400 and "larger than the limit" in r.text
    count = _query(site, site.world.alice, "SELECT COUNT(*) AS n FROM user_alice.chunked")
    assert int(count["n"][0]) == 0
    assert _service(site, site.world.alice).remove_table("user_alice.chunked") is None


def test_every_change_and_refusal_over_http_is_audited(site: Site) -> None:
    import json

    from skyvault.catalog.layout import audit_log_file

    log = audit_log_file(site.world.data)
    before = len(log.read_text().splitlines()) if log.exists() else 0
    alice, carol = _session(site.world.alice), _session(site.carol)
    alice.put(
        f"{site.url}/tables/user_alice.audited",
        data=VOSI_TARGETS,
        headers={"Content-Type": "text/xml"},
    )
    alice.put(
        f"{site.url}/tables/user_alice.bad", data=b"<oops", headers={"Content-Type": "text/xml"}
    )
    alice.post(
        f"{site.url}/load/user_alice.audited",
        data=b"tid\n1\n",
        headers={"Content-Type": "text/csv"},
    )
    carol.post(
        f"{site.url}/load/user_alice.audited",
        data=b"tid\n1\n",
        headers={"Content-Type": "text/csv"},
    )
    alice.post(
        f"{site.url}/load/user_alice.audited",
        data=b"tid\n" + b"1\n" * MAX_BODY,
        headers={"Content-Type": "text/csv"},
    )
    carol.post(
        f"{site.url}/permissions/user_alice.audited",
        data=b"public=true",
        headers={"Content-Type": "text/plain"},
    )
    alice.post(
        f"{site.url}/permissions/user_alice.audited",
        data=b"public=true",
        headers={"Content-Type": "text/plain"},
    )
    alice.delete(f"{site.url}/tables/user_alice.audited")
    lines = [json.loads(x) for x in log.read_text().splitlines()[before:]]
    mine = [
        (x["endpoint"], x["user"], x["outcome"], x["error"], x["query"], x["rows"])
        for x in lines
        if x["endpoint"].startswith("workspace.")
    ]
    assert mine == [
        ("workspace.create", "alice", "ok", None, "user_alice.audited", 0),
        ("workspace.create", "alice", "error", "workspace", "user_alice.bad", None),
        ("workspace.load", "alice", "ok", None, "user_alice.audited", 1),
        ("workspace.load", "carol", "error", "catalog.not_found", "user_alice.audited", None),
        ("workspace.load", "alice", "error", "workspace", "user_alice.audited", None),
        (
            "workspace.permissions",
            "carol",
            "error",
            "catalog.not_found",
            "user_alice.audited",
            None,
        ),
        ("workspace.permissions", "alice", "ok", None, "user_alice.audited", None),
        ("workspace.drop", "alice", "ok", None, "user_alice.audited", None),
    ]
