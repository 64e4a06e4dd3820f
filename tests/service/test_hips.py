"""HiPS serving: files with CORS, ETag/304, Range; the HiPS list; hidden reads as missing."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urljoin

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from skyvault.auth import AuthStorage, grant_access
from skyvault.catalog.ingest import IngestOptions, ingest
from skyvault.catalog.layout import TableName
from skyvault.config import Settings
from skyvault.hips import TileLimits, build_catalog_hips, hips_dir
from skyvault.service.app import create_app
from tests.service.conftest import ROOMY_AUTH


@pytest.fixture(scope="module")
def hips_root_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``open.stars`` (public) and ``secret.stars`` (private), each with a catalogue HiPS."""
    root = tmp_path_factory.mktemp("hipsserve")
    rng = np.random.default_rng(3)
    n = 3000
    table = pa.table(
        {
            "ra": rng.uniform(0, 360, n),
            "dec": np.degrees(np.arcsin(rng.uniform(-1, 1, n))),
            "mag": rng.uniform(5, 15, n),
        }
    )
    pq.write_table(table, root / "stars.parquet")
    data = root / "data"
    for schema in ("open", "secret"):
        ingest(
            [root / "stars.parquet"],
            f"{schema}.stars",
            data,
            ra="ra",
            dec="dec",
            options=IngestOptions(workers=1),
        )
        build_catalog_hips(data, f"{schema}.stars", "mag", limits=TileLimits(tile=50))
    storage = AuthStorage.for_data_dir(data)
    try:
        grant_access(storage, "open", None)
    finally:
        storage.close()
    return data


@pytest.fixture(scope="module")
def client(hips_root_dir: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=hips_root_dir, auth=ROOMY_AUTH)
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


def test_properties_and_tile_headers(client: TestClient) -> None:
    r = client.get("/hips/open.stars/properties")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert r.headers["access-control-allow-origin"] == "*"
    assert "dataproduct_type" in r.text and "catalog" in r.text
    r = client.get("/hips/open.stars/Norder1/Allsky.tsv")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/tab-separated-values")
    assert r.text.splitlines()[0].split("\t")[:2] == ["ra", "dec"]
    assert r.headers["cache-control"].startswith("public, max-age=")
    r = client.get("/hips/open.stars/Moc.fits")
    assert r.headers["content-type"] == "application/fits"
    assert r.content[:6] == b"SIMPLE"
    r = client.get("/hips/open.stars/metadata.xml")
    assert r.headers["content-type"].startswith("application/x-votable+xml")
    # Aladin Lite asks for "Metadata.xml" (Hipsgen-cat's name): the same document.
    capital = client.get("/hips/open.stars/Metadata.xml")
    assert capital.status_code == 200 and capital.content == r.content
    assert client.get("/hips/secret.stars/Metadata.xml").status_code == 404


def test_index_page(client: TestClient) -> None:
    for url in ("/hips/open.stars/", "/hips/open.stars/index.html"):
        r = client.get(url)
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/html")
        assert "A.catalogHiPS(" in r.text and "open.stars" in r.text
        # Aladin Lite and the background come from this server, not from a CDN.
        assert "https://" not in r.text and "cds.unistra.fr" not in r.text
        for relative in re.findall(r'"(\.\./[^"]+)"', r.text):
            target = urljoin(str(r.url), relative)
            found = client.get(target + ("/properties" if "empty-hips" in target else ""))
            assert found.status_code == 200, target
    assert client.get("/hips/secret.stars/").status_code == 404


def test_etag_and_not_modified(client: TestClient, hips_root_dir: Path) -> None:
    hips = hips_dir(hips_root_dir, TableName("open", "stars"))
    tile = next(hips.glob("Norder2/Dir*/Npix*.tsv")).relative_to(hips).as_posix()
    url = f"/hips/open.stars/{tile}"
    first = client.get(url)
    assert first.status_code == 200
    etag = first.headers["etag"]
    again = client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert again.headers["access-control-allow-origin"] == "*"
    other = client.get(url, headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200 and other.content == first.content


def test_head(client: TestClient) -> None:
    url = "/hips/open.stars/Norder1/Allsky.tsv"
    whole = client.get(url)
    head = client.head(url)
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(whole.content))
    assert head.headers["etag"] == whole.headers["etag"]
    assert client.head("/hips/secret.stars/properties").status_code == 404


def test_range(client: TestClient) -> None:
    url = "/hips/open.stars/Norder1/Allsky.tsv"
    whole = client.get(url).content
    part = client.get(url, headers={"Range": "bytes=0-9"})
    assert part.status_code == 206
    assert part.content == whole[:10]
    assert part.headers["content-range"] == f"bytes 0-9/{len(whole)}"


def test_hidden_reads_like_missing(client: TestClient) -> None:
    hidden = client.get("/hips/secret.stars/properties")
    missing = client.get("/hips/nothing.here/properties")
    no_tile = client.get("/hips/open.stars/Norder9/Dir0/Npix0.tsv")
    assert hidden.status_code == missing.status_code == no_tile.status_code == 404
    assert hidden.content == missing.content == no_tile.content
    assert hidden.headers["content-type"] == missing.headers["content-type"]
    assert hidden.headers["access-control-allow-origin"] == "*"
    # The file exists on disk: only the grant hides it.
    assert b"secret" not in hidden.content


@pytest.mark.parametrize(
    "path",
    [
        "/hips/open.stars/..%2F..%2Fstars%2Fskyvault_table.json",
        "/hips/open.stars/../secret.stars/properties",
        "/hips/open.stars/.%2E/.%2E/.%2E/.%2E/jobs.sqlite3",
        "/hips/open.stars/%2Fetc%2Fpasswd",
        "/hips/open.stars/Norder1//Allsky.tsv",
        "/hips/..%2Fopen/stars/properties",
        "/hips/open.stars/%2E/properties",
    ],
)
def test_traversal_is_missing(client: TestClient, path: str) -> None:
    missing = client.get("/hips/nothing.here/properties")
    r = client.get(path)
    assert r.status_code == 404
    assert r.content == missing.content


def test_traversal_to_real_files_is_missing(client: TestClient, hips_root_dir: Path) -> None:
    """Relative paths from a visible HiPS to files that exist: the table's metadata, the
    hidden table's HiPS, the job database; each reads like a missing file."""
    base = hips_dir(hips_root_dir, TableName("open", "stars")).resolve()
    targets = [
        hips_root_dir / "open" / "stars" / "skyvault_table.json",
        hips_dir(hips_root_dir, TableName("secret", "stars")).resolve() / "properties",
        hips_root_dir / ".skyvault" / "jobs.sqlite3",
    ]
    missing = client.get("/hips/nothing.here/properties")
    for target in targets:
        assert target.exists()
        relative = os.path.relpath(target, base)
        r = client.get(f"/hips/open.stars/{quote(relative, safe='')}")
        assert (r.status_code, r.content) == (404, missing.content), relative


def test_hips_list(client: TestClient) -> None:
    r = client.get("/hips/list")
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "*"
    records = [rec for rec in r.text.split("\n\n") if rec.strip()]
    assert len(records) == 1  # the secret one is not listed
    props = dict(
        (k.strip(), v.strip())
        for k, _, v in (line.partition("=") for line in records[0].splitlines())
    )
    assert props["hips_service_url"] == "http://testserver/hips/open.stars"
    for key in ("creator_did", "hips_release_date", "hips_status", "dataproduct_type"):
        assert props[key]
    # The URL it gives serves the HiPS.
    assert (
        client.get(
            props["hips_service_url"].removeprefix("http://testserver") + "/properties"
        ).status_code
        == 200
    )
