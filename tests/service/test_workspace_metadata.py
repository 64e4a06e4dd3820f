"""youcat's metadata update, ``POST {tap}/tables/NAME``, against a live server.

pyvo 1.9 has no call for it (its table methods are create, load, index and remove), so the
requests are what youcat's own clients send: the VOSI ``table`` document (``text/xml``) or a
VOTable, the one GET serves with its descriptions, units, UCDs and utypes changed → 204.
The next request — ``GET /tables/NAME``, ``/tables``, TAP_SCHEMA, a query's FIELDs — sees
the new metadata, although each of them was answered (and cached) just before.

Also here: a unique index made with pyvo's ``create_index(..., unique=True)`` holds for
later loads (a 400 naming the column, nothing loaded).
"""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest
import requests
from astropy.io.votable import parse_single_table

from skyvault.catalog.layout import audit_log_file
from tests.service import test_workspace
from tests.service.test_workspace import (
    VOSI_TARGETS,
    Site,
    _query,
    _service,
    _session,
    _tableset,
)

#: The live server of test_workspace.py (this module gets its own).
site = test_workspace.site

NAME = "user_alice.meta"
URL = "{}/tables/" + NAME

UPDATED = (
    VOSI_TARGETS.replace(b"targets near the public stars", b"targets, re-described")
    .replace(b"what the target is", b"the target's label")
    .replace(
        b"<unit>deg</unit><ucd>pos.eq.ra;meta.main</ucd>",
        b"<unit>arcsec</unit><ucd>pos.eq.ra</ucd><utype>t:ra</utype>",
    )
)


def _post(
    site: Site,
    token: str | None,
    body: bytes,
    kind: str = "text/xml",
    name: str = NAME,
    **headers: str,
) -> requests.Response:
    return _session(token).post(
        f"{site.url}/tables/{name}", data=body, headers={"Content-Type": kind, **headers}
    )


def _vosi(site: Site, token: str | None) -> dict[str, ET.Element]:
    document = _session(token).get(URL.format(site.url))
    assert document.status_code == 200, document.text
    root = ET.fromstring(document.content)
    return {"": root, **{c.findtext("name") or "": c for c in root.iter("column")}}


def _columns(site: Site, token: str) -> list[tuple[str, ...]]:
    rows = _query(
        site,
        token,
        "SELECT column_name, unit, ucd, utype, description FROM TAP_SCHEMA.columns "
        f"WHERE table_name = '{NAME}' ORDER BY column_index",
    )
    return [tuple(str(v) for v in row) for row in rows.iterrows()]


def _table_description(site: Site, token: str | None) -> str:
    rows = _query(
        site, token, f"SELECT description FROM TAP_SCHEMA.tables WHERE table_name = '{NAME}'"
    )
    return str(rows["description"][0])


@pytest.fixture
def table(site: Site) -> Iterator[str]:
    alice = _session(site.world.alice)
    created = alice.put(
        URL.format(site.url), data=VOSI_TARGETS, headers={"Content-Type": "text/xml"}
    )
    assert created.status_code == 200, created.text
    loaded = alice.post(
        f"{site.url}/load/{NAME}",
        data=b"tid,ra,dec\n1,10.5,0.5\n2,11.0,1.0\n",
        headers={"Content-Type": "text/csv"},
    )
    assert loaded.status_code == 200, loaded.text
    yield NAME
    alice.delete(URL.format(site.url))


def test_the_owner_updates_and_the_next_request_sees_it_everywhere(site: Site, table: str) -> None:
    alice, bob = site.world.alice, site.world.bob
    _grant(site, "r-group=crew\npublic=true\n")
    # Every view answered (and cached) once before the update, for three kinds of access
    # (the owner, a group member, anonymous callers: each its own cached list).
    for token in (alice, bob, None):
        assert "targets near the public stars" in _tableset(site, token)
        assert _table_description(site, token) == "targets near the public stars"
    assert _vosi(site, alice)["ra"].findtext("unit") == "deg"
    assert _columns(site, alice)[2][1:3] == ("deg", "pos.eq.ra;meta.main")

    r = _post(site, alice, UPDATED)
    assert r.status_code == 204, r.text
    assert r.content == b""

    vosi = _vosi(site, alice)
    assert vosi[""].findtext("description") == "targets, re-described"
    assert (
        vosi["ra"].findtext("unit"),
        vosi["ra"].findtext("ucd"),
        vosi["ra"].findtext("utype"),
    ) == ("arcsec", "pos.eq.ra", "t:ra")
    assert vosi["label"].findtext("description") == "the target's label"
    for token in (alice, bob, None):
        tableset = _tableset(site, token)
        assert "targets, re-described" in tableset
        assert "targets near the public stars" not in tableset
        assert _table_description(site, token) == "targets, re-described"
    columns = _columns(site, alice)
    assert columns[2][:4] == ("ra", "arcsec", "pos.eq.ra", "t:ra")
    assert columns[1][4] == "the target's label"
    # A query's FIELDs carry the new unit; the rows are as they were.
    result = _session(alice).post(
        f"{site.url}/sync",
        data={"LANG": "ADQL", "QUERY": f"SELECT tid, ra FROM {NAME} ORDER BY tid"},
    )
    votable = parse_single_table(io.BytesIO(result.content))
    assert str(votable.get_field_by_id("ra").unit) == "arcsec"
    assert votable.array["tid"].tolist() == [1, 2]


def test_a_votable_of_fields_updates_too(site: Site, table: str) -> None:
    votable = (
        b'<?xml version="1.0"?><VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">'
        b"<RESOURCE><TABLE><DESCRIPTION>from a VOTable</DESCRIPTION>"
        b'<FIELD name="tid" datatype="long"/>'
        b'<FIELD name="label" datatype="char" arraysize="16*">'
        b"<DESCRIPTION>label</DESCRIPTION></FIELD>"
        b'<FIELD name="ra" datatype="double" unit="rad" ucd="pos.eq.ra"/>'
        b'<FIELD name="dec" datatype="double" unit="rad" ucd="pos.eq.dec"/>'
        b"</TABLE></RESOURCE></VOTABLE>"
    )
    r = _post(site, site.world.alice, votable, "application/x-votable+xml")
    assert r.status_code == 204, r.text
    vosi = _vosi(site, site.world.alice)
    assert vosi[""].findtext("description") == "from a VOTable"
    assert vosi["dec"].findtext("unit") == "rad"


def _grant(site: Site, body: str) -> None:
    r = _session(site.world.alice).post(
        f"{site.url}/permissions/{NAME}", data=body, headers={"Content-Type": "text/plain"}
    )
    assert r.status_code == 200, r.text


def test_read_write_members_may_readers_may_not_others_meet_a_missing_table(
    site: Site, table: str
) -> None:
    bob, carol = site.world.bob, site.carol
    # Private: bob and carol get exactly the answer for a table that does not exist, for a
    # good body, a bad one and none.
    for token in (bob, carol):
        for body in (UPDATED, b"<oops", b""):
            hidden = _post(site, token, body)
            missing = _post(site, token, body, name="user_alice.nothere")
            assert hidden.status_code == missing.status_code == 404
            assert hidden.text == missing.text.replace("nothere", "meta")
    anonymous = _post(site, None, UPDATED)
    assert anonymous.status_code == 401 and "user tables need an identity" in anonymous.text
    # Not user tables: an archive table (said as such), a service schema, a hidden archive
    # table (as a missing one).
    archive = _post(site, bob, UPDATED, name="pub.stars")
    assert archive.status_code == 403 and "is an archive table" in archive.text
    service = _post(site, bob, UPDATED, name="TAP_SCHEMA.tables")
    assert service.status_code == 400 and "schema of the service" in service.text
    secret = _post(site, bob, UPDATED, name="Secret.Plans")
    nothing = _post(site, bob, UPDATED, name="Secret.Nothing")
    assert secret.status_code == nothing.status_code == 404
    assert secret.text == nothing.text.replace("Secret.Nothing", "Secret.Plans")

    _grant(site, "r-group=crew\n")
    reader = _post(site, bob, UPDATED)
    assert reader.status_code == 403
    assert f"you may read {NAME} but not change its metadata" in reader.text
    assert _vosi(site, site.world.alice)["ra"].findtext("unit") == "deg"

    _grant(site, "r-group=\nrw-group=crew\n")
    assert _post(site, bob, UPDATED).status_code == 204
    assert _vosi(site, bob)["ra"].findtext("unit") == "arcsec"
    # Grants stay the owner's: youcat's x-vosi-* headers on an update need the owner.
    refused = _post(site, bob, UPDATED, **{"x-vosi-auth-read": "false"})
    assert refused.status_code == 403 and "change its grants" in refused.text
    granted = _post(site, site.world.alice, b"", **{"x-vosi-auth-read": "false"})
    assert granted.status_code == 204, granted.text
    assert "public=true" in _session(bob).get(f"{site.url}/permissions/{NAME}").text


def _types(body: bytes) -> bytes:
    return body.replace(b">long<", b">int<").replace(b'arraysize="16*"', b'arraysize="32*"')


@pytest.mark.parametrize(
    ("body", "kind", "says"),
    [
        (
            _types(UPDATED),
            "text/xml",
            "types differ: tid (the table's long, the document's int), "
            "label (the table's char[16*], the document's char[32*])",
        ),
        (
            UPDATED.replace(
                b"</vosi:table>",
                b"<column><name>mag</name><dataType>float</dataType></column></vosi:table>",
            ),
            "text/xml",
            "not columns of the table: mag",
        ),
        (
            UPDATED.replace(b"<name>dec</name>", b"<name>decl</name>"),
            "text/xml",
            "missing from the document: dec; not columns of the table: decl",
        ),
        (
            UPDATED.replace(b"targets, re-described", b"x" * 10_000),
            "text/xml",
            "the table's description is 10,000 characters long; at most 8,192",
        ),
        (
            UPDATED.replace(b"the target's label", b"y" * 9_000),
            "text/xml",
            "the description of column label is 9,000 characters long",
        ),
        (b"<table><column>", "text/xml", "not well-formed XML"),
        (b"<!DOCTYPE x [<!ENTITY a 'b'>]><table/>", "text/xml", "DOCTYPE"),
        (UPDATED, "application/json", "not understood"),
        (b"", "text/xml", "nothing to update"),
        (
            b'<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3"><RESOURCE><TABLE>'
            b'<FIELD name="tid" datatype="long"/><DATA><TABLEDATA><TR><TD>5</TD></TR>'
            b"</TABLEDATA></DATA></TABLE></RESOURCE></VOTABLE>",
            "application/x-votable+xml",
            "does not load rows",
        ),
    ],
)
def test_bad_updates_are_400s_that_say_what_differs_and_change_nothing(
    site: Site, table: str, body: bytes, kind: str, says: str
) -> None:
    alice = site.world.alice
    before = _session(alice).get(URL.format(site.url)).text
    r = _post(site, alice, body, kind)
    assert r.status_code == 400, r.text
    assert 'value="ERROR"' in r.text
    assert says in r.text
    assert "/tmp" not in r.text and "Traceback" not in r.text
    assert _session(alice).get(URL.format(site.url)).text == before
    assert _query(site, alice, f"SELECT COUNT(*) AS n FROM {NAME}")["n"][0] == 2


def test_updates_are_audited(site: Site, table: str) -> None:
    log = audit_log_file(site.world.data)
    before = len(log.read_text().splitlines())
    _post(site, site.world.alice, UPDATED)
    _post(site, site.carol, UPDATED)
    _post(site, site.world.alice, b"<oops")
    lines = [json.loads(x) for x in log.read_text().splitlines()[before:]]
    assert [
        (x["user"], x["outcome"], x["error"], x["query"])
        for x in lines
        if x["endpoint"] == "workspace.update"
    ] == [
        ("alice", "ok", None, NAME),
        ("carol", "error", "catalog.not_found", NAME),
        ("alice", "error", "workspace", NAME),
    ]


def test_a_load_repeating_a_unique_value_is_a_400_and_loads_nothing(site: Site, table: str) -> None:
    alice = _service(site, site.world.alice)
    alice.create_index(NAME, "label", unique=True)  # pyvo: table-update job, run, waited on
    alice.load_table(NAME, io.StringIO("tid,label\n3,a\n"), format="csv")
    r = _session(site.world.alice).post(
        f"{site.url}/load/{NAME}",
        data=b"tid,label\n4,b\n5,a\n",
        headers={"Content-Type": "text/csv"},
    )
    assert r.status_code == 400, r.text
    assert f"column label of {NAME} has a unique index: the value 'a' would occur 2" in r.text
    assert "nothing was loaded" in r.text
    with pytest.raises(requests.HTTPError) as refused:
        alice.load_table(NAME, io.StringIO("tid\tlabel\n6\tc\n7\tc\n"), format="tsv")
    assert refused.value.response.status_code == 400
    assert "the value 'c' would occur 2 times" in refused.value.response.text
    rows = _query(site, site.world.alice, f"SELECT tid FROM {NAME} ORDER BY tid")
    assert rows["tid"].tolist() == [1, 2, 3]
    alice.load_table(NAME, io.StringIO("tid,label\n4,b\n"), format="csv")
    assert _query(site, site.world.alice, f"SELECT COUNT(*) AS n FROM {NAME}")["n"][0] == 4


def test_a_definition_over_the_limit_is_cut_off_and_changes_nothing(site: Site, table: str) -> None:
    alice = site.world.alice
    before = _session(alice).get(URL.format(site.url)).text
    padding = b" " * (16 * 1024 * 1024)  # the default definition limit, 16 MiB
    r = _post(site, alice, UPDATED.replace(b"</vosi:table>", padding + b"</vosi:table>"))
    assert r.status_code == 400 and "larger than the limit of 16.0 MiB" in r.text, r.text[:300]
    assert _session(alice).get(URL.format(site.url)).text == before
