"""Bulk jobs whose TABLE is not an archive table: ``ivoa.ObsCore`` (a view over the image
collections the owner may read) and a user's own table, over a live server.

Three image collections: ``pubimg`` (3 images) and ``moreimg`` (2 images, in the same HEALPix
cells as ``pubimg``: their files must not collide) are PUBLIC, ``secimg`` (1 image) is for
the group ``spies`` (alice, not bob).  alice owns ``user_alice.targets``.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skyvault.bulk.jobs import compile_request, parse_request, run_request
from skyvault.bulk.manifest import MANIFEST_FILE
from skyvault.engine.archive import Archive
from skyvault.images.obstap import obscore_views
from tests.images._files import tan_header, write_image
from tests.service.image_worlds import image_root, live_service
from tests.service.security_world import bearer
from tests.service.test_bulk_jobs import _create, _error, _files, _run

PUB = (62.0, -37.0)
SEC = (150.0, 2.0)

TARGETS = b"""<?xml version="1.0" encoding="UTF-8"?>
<vosi:table xmlns:vosi="http://www.ivoa.net/xml/VOSITables/v1.0"
    xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <name>user_alice.targets</name>
  <column><name>tid</name><dataType xsi:type="vs:VOTableType">long</dataType></column>
  <column><name>label</name>
    <dataType xsi:type="vs:VOTableType" arraysize="16*">char</dataType></column>
  <column><name>ra</name><unit>deg</unit><ucd>pos.eq.ra;meta.main</ucd>
    <dataType xsi:type="vs:VOTableType">double</dataType></column>
  <column><name>dec</name><unit>deg</unit><ucd>pos.eq.dec;meta.main</ucd>
    <dataType xsi:type="vs:VOTableType">double</dataType></column>
</vosi:table>"""


@dataclass(frozen=True)
class Site:
    url: str
    """The server's root (``/tap``, ``/bulk`` below it)."""
    alice: str
    bob: str
    data: Path


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("bulk-tables")
    collections = {
        "pubimg": [(PUB[0] + 0.02 * k, PUB[1], band) for k, band in enumerate("gri")],
        "moreimg": [(PUB[0] + 0.01, PUB[1] + 0.02 * k, band) for k, band in enumerate("zy")],
        "secimg": [(SEC[0], SEC[1], "i")],
    }
    files = {}
    for name, images in collections.items():
        (root / name).mkdir()
        files[name] = [
            write_image(root / name / f"{band}{k}.fits", tan_header(ra, dec, band=band))
            for k, (ra, dec, band) in enumerate(images)
        ]
    made = image_root(root, files, public=["pubimg", "moreimg"], spies=["secimg"])
    with live_service(made.data) as url:
        yield Site(url.removesuffix("/tap"), made.alice, made.bob, made.data)


def _sync(site: Site, token: str | None, adql: str) -> pa.Table:
    """``adql``'s answer through ``/tap/sync`` as Parquet (the bulk files' format)."""
    r = httpx.post(
        f"{site.url}/tap/sync",
        data={"LANG": "ADQL", "QUERY": adql, "RESPONSEFORMAT": "parquet"},
        headers=bearer(token) if token else {},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    return pq.read_table(io.BytesIO(r.content))


def _rows(table: pa.Table, key: str) -> list[dict[str, object]]:
    return sorted(table.to_pylist(), key=lambda row: str(row[key]))


def _job_rows(site: Site, token: str, data: dict[str, str]) -> tuple[pa.Table, list[str]]:
    """The rows of a finished job's files, and the files' names."""
    files = _files(_run(site.url, token, data), token)
    tables = [pq.read_table(io.BytesIO(body)) for body in files.values()]
    return pa.concat_tables(tables), sorted(files)


# --- ivoa.ObsCore ------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["alice", "bob"])
def test_an_obscore_job_holds_exactly_the_callers_obscore_rows(site: Site, who: str) -> None:
    token = getattr(site, who)
    expected = _sync(site, token, "SELECT * FROM ivoa.ObsCore")
    got, names = _job_rows(site, token, {"TABLE": "ivoa.ObsCore"})
    assert got.column_names == expected.column_names
    assert _rows(got, "obs_publisher_did") == _rows(expected, "obs_publisher_did")
    collections = set(got["obs_collection"].to_pylist())
    if who == "alice":
        assert collections == {"pubimg", "moreimg", "secimg"}
        assert got.num_rows == 6
    else:  # the hidden collection contributes nothing, not even a file
        assert collections == {"pubimg", "moreimg"}
        assert got.num_rows == 5
        assert not any("secimg" in n for n in names)
    # Each member's cells are written separately, named after the member: pubimg and
    # moreimg share HEALPix cells, and their files do not collide.
    assert any(n.startswith("pubimg.obscore_Norder") for n in names)
    assert any(n.startswith("moreimg.obscore_Norder") for n in names)
    # access_url is the DataLink link, computed as in a query.
    assert all("/datalink/links?ID=" in str(u) for u in got["access_url"].to_pylist())


def test_an_obscore_job_with_a_region_and_a_filter(site: Site) -> None:
    where = (
        f"CONTAINS(POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', {PUB[0]}, {PUB[1]}, 0.025)) = 1"
        " AND em_min > 5e-7"
    )
    expected = _sync(site, site.alice, f"SELECT obs_id, s_ra FROM ivoa.ObsCore WHERE {where}")
    assert 0 < expected.num_rows < 5
    got, _ = _job_rows(
        site,
        site.alice,
        {
            "TABLE": "ivoa.obscore",
            "CIRCLE": f"{PUB[0]} {PUB[1]} 0.025",
            "FILTER": "em_min > 5e-7",
            "COLUMNS": "obs_id, s_ra",
        },
    )
    assert _rows(got, "obs_id") == _rows(expected, "obs_id")


def test_an_obscore_job_for_hats_is_refused_and_a_collection_table_is_not(site: Site) -> None:
    message = _error(_create(site.url, site.alice, {"TABLE": "ivoa.ObsCore", "FORMAT": "hats"}))
    assert "FORMAT=hats" in message and "view" in message
    # One collection's table is one stored table: its HATS tree can be made.
    job = _run(site.url, site.alice, {"TABLE": "pubimg.obscore", "FORMAT": "hats"})
    props = httpx.get(f"{job}/files/properties", headers=bearer(site.alice))
    assert props.status_code == 200 and "hats_nrows=3" in props.text


def test_an_obscore_job_of_a_caller_who_sees_no_collection_has_no_files(
    site: Site, tmp_path: Path
) -> None:
    archive = Archive(site.data)
    views = obscore_views([], None, offered=True)  # the view exists, with no member
    request = parse_request({"TABLE": ["ivoa.ObsCore"]}, max_file_bytes=1 << 20)
    query = compile_request(request, archive, [], views)
    assert query.members == ()
    output = run_request(query, archive, tmp_path / "out", max_file_bytes=1 << 20)
    assert output.rows == 0 and output.manifest.entries == ()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [MANIFEST_FILE]


def test_a_collection_hidden_from_the_caller_reads_like_a_missing_table(site: Site) -> None:
    hidden = _error(_create(site.url, site.bob, {"TABLE": "secimg.obscore"}))
    missing = _error(_create(site.url, site.bob, {"TABLE": "nosuch.obscore"}))
    assert hidden.replace("secimg", "X") == missing.replace("nosuch", "X")


# --- a user's own table ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def targets(site: Site) -> pa.Table:
    """alice's ``user_alice.targets``, made and loaded through the workspace API."""
    alice = bearer(site.alice)
    made = httpx.put(
        f"{site.url}/tap/tables/user_alice.targets",
        content=TARGETS,
        headers={**alice, "Content-Type": "text/xml"},
    )
    assert made.status_code in (200, 201), made.text
    lines = ["tid,label,ra,dec"] + [f"{i},t{i},{10 + i * 0.01},{-5 + i * 0.02}" for i in range(40)]
    loaded = httpx.post(
        f"{site.url}/tap/load/user_alice.targets",
        content="\n".join(lines).encode() + b"\n",
        headers={**alice, "Content-Type": "text/csv"},
    )
    assert loaded.status_code == 200, loaded.text
    return _sync(site, site.alice, "SELECT * FROM user_alice.targets")


def test_the_owner_gets_their_table_s_rows(site: Site, targets: pa.Table) -> None:
    assert targets.num_rows == 40
    got, _ = _job_rows(site, site.alice, {"TABLE": "user_alice.targets"})
    assert _rows(got, "tid") == _rows(targets, "tid")
    some, _ = _job_rows(
        site, site.alice, {"TABLE": "user_alice.targets", "FILTER": "tid < 7", "FORMAT": "parquet"}
    )
    assert sorted(some["tid"].to_pylist()) == list(range(7))


def test_another_user_gets_the_error_of_a_missing_table(site: Site, targets: pa.Table) -> None:
    hidden = _error(_create(site.url, site.bob, {"TABLE": "user_alice.targets"}))
    missing = _error(_create(site.url, site.bob, {"TABLE": "user_alice.nosuch"}))
    assert hidden.replace("targets", "X") == missing.replace("nosuch", "X")
    assert "no such table" in hidden
    # Nor anonymously (bulk jobs may be anonymous).
    anonymous = _error(_create(site.url, None, {"TABLE": "user_alice.targets"}))
    assert anonymous == hidden
