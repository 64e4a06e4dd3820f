"""``/bulk``: tables as HATS file trees over HTTP — read by hats/lsdb, wget and curl unchanged;
Range/ETag/Repr-Digest; hidden tables and refused paths read exactly like missing files."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from skyvault.auth import AuthSettings
from skyvault.config import Settings
from skyvault.service.app import create_app
from tests.service.security_world import World, bearer, build_world

OBJECT = "dp02_dc2_catalogs/Object"
PIXEL = "dataset/Norder=0/Dir=0/Npix=8.parquet"


def _root(live_url: str) -> str:
    return live_url.removesuffix("/tap")


def _local(demo_dir: Path, rel: str) -> bytes:
    return (demo_dir / OBJECT / rel).read_bytes()


def _md5_line(client: TestClient, directory: str, name: str) -> str:
    text = client.get(f"/bulk/{directory}/_MD5SUM.txt").text
    found = [line.split("  ")[0] for line in text.splitlines() if line.endswith(f"  {name}")]
    assert len(found) == 1, text
    return found[0]


# --- files, headers, conditional and range requests -------------------------------------------


def test_a_file_has_validators_and_digest(client: TestClient, demo_dir: Path) -> None:
    r = client.get(f"/bulk/{OBJECT}/hats.properties")
    assert r.status_code == 200
    body = _local(demo_dir, "hats.properties")
    assert r.content == body
    digest = hashlib.sha256(body).digest()
    assert r.headers["etag"] == f'"{digest.hex()}"'
    assert r.headers["repr-digest"] == f"sha-256=:{base64.b64encode(digest).decode()}:"
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["content-length"] == str(len(body))
    mtime = (demo_dir / OBJECT / "hats.properties").stat().st_mtime
    assert r.headers["last-modified"] == formatdate(mtime, usegmt=True)
    head = client.head(f"/bulk/{OBJECT}/hats.properties")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["etag"] == r.headers["etag"]
    assert head.headers["content-length"] == str(len(body))


def test_range_for_the_parquet_footer_is_exactly_those_bytes(
    client: TestClient, demo_dir: Path
) -> None:
    body = _local(demo_dir, PIXEL)
    tail = client.get(f"/bulk/{OBJECT}/{PIXEL}", headers={"Range": "bytes=-8"})
    assert tail.status_code == 206 and tail.content == body[-8:]
    assert tail.content[4:] == b"PAR1"
    footer = int.from_bytes(tail.content[:4], "little") + 8
    start = len(body) - footer
    r = client.get(f"/bulk/{OBJECT}/{PIXEL}", headers={"Range": f"bytes={start}-"})
    assert r.status_code == 206
    assert r.content == body[start:]
    assert r.headers["content-range"] == f"bytes {start}-{len(body) - 1}/{len(body)}"
    # The representation digest is the whole file's, also on a partial response.
    assert r.headers["repr-digest"].startswith("sha-256=:")
    assert base64.b64decode(r.headers["repr-digest"][9:-1]) == hashlib.sha256(body).digest()
    middle = client.get(f"/bulk/{OBJECT}/{PIXEL}", headers={"Range": "bytes=100-199"})
    assert middle.status_code == 206 and middle.content == body[100:200]


def test_several_ranges_are_multipart_byteranges(client: TestClient, demo_dir: Path) -> None:
    body = _local(demo_dir, PIXEL)
    r = client.get(f"/bulk/{OBJECT}/{PIXEL}", headers={"Range": "bytes=0-3,10-19,-4"})
    assert r.status_code == 206
    kind, _, boundary = r.headers["content-type"].partition("; boundary=")
    assert kind == "multipart/byteranges" and boundary
    parts = r.content.split(f"--{boundary}".encode())[1:-1]
    got = []
    for part in parts:
        head, _, data = part.partition(b"\r\n\r\n")
        match = re.search(rb"Content-Range: bytes (\d+)-(\d+)/(\d+)", head, re.IGNORECASE)
        assert match is not None
        first, last = int(match.group(1)), int(match.group(2))
        assert data.removesuffix(b"\r\n") == body[first : last + 1]
        got.append((first, last))
    assert got == [(0, 3), (10, 19), (len(body) - 4, len(body) - 1)]


def test_unsatisfiable_and_malformed_ranges(client: TestClient, demo_dir: Path) -> None:
    size = len(_local(demo_dir, "hats.properties"))
    url = f"/bulk/{OBJECT}/hats.properties"
    r = client.get(url, headers={"Range": f"bytes={size + 10}-"})
    assert r.status_code == 416
    assert r.headers["content-range"] == f"bytes */{size}"
    # A Range that is not a byte-range set is ignored (RFC 9110): the whole file.
    for bad in ("items=0-5", "bytes=5-2", "bytes=abc", "bytes="):
        whole = client.get(url, headers={"Range": bad})
        assert whole.status_code == 200, bad
        assert len(whole.content) == size


def test_conditional_requests(client: TestClient) -> None:
    url = f"/bulk/{OBJECT}/{PIXEL}"
    first = client.head(url)
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    r = client.get(url, headers={"If-None-Match": etag})
    assert r.status_code == 304 and r.content == b"" and r.headers["etag"] == etag
    assert client.get(url, headers={"If-None-Match": f'"other", W/{etag}'}).status_code == 304
    assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
    assert client.get(url, headers={"If-Modified-Since": modified}).status_code == 304
    old = "Mon, 01 Jan 2001 00:00:00 GMT"
    assert client.head(url, headers={"If-Modified-Since": old}).status_code == 200
    # If-Range: the range only while the validator still matches.
    ok = client.get(url, headers={"Range": "bytes=0-9", "If-Range": etag})
    assert ok.status_code == 206 and len(ok.content) == 10
    stale = client.head(url, headers={"Range": "bytes=0-9", "If-Range": '"stale"'})
    assert stale.status_code == 200
    assert stale.headers["content-length"] == first.headers["content-length"]


# --- manifests and listings --------------------------------------------------------------------


def test_manifests_describe_the_served_files(client: TestClient, demo_dir: Path) -> None:
    document = client.get(f"/bulk/{OBJECT}/manifest.json").json()
    assert document["table"] == "dp02_dc2_catalogs.Object"
    paths = {f["path"]: f for f in document["files"]}
    assert PIXEL in paths and "hats.properties" in paths and "dataset/_metadata" in paths
    assert "skyvault_manifest.json" not in paths
    entry = paths[PIXEL]
    body = _local(demo_dir, PIXEL)
    assert entry["bytes"] == len(body) and entry["sha256"] == hashlib.sha256(body).hexdigest()
    assert entry["rows"] == pq.ParquetFile(demo_dir / OBJECT / PIXEL).metadata.num_rows
    assert (entry["healpix_order"], entry["healpix_pixel"]) == (0, 8)
    assert _md5_line(client, OBJECT, PIXEL) == hashlib.md5(body).hexdigest()
    # Per directory, relative to it.
    sub = client.get(f"/bulk/{OBJECT}/dataset/Norder=0/manifest.csv")
    assert sub.status_code == 200 and sub.text.splitlines()[1].startswith("Dir=0/Npix=8.parquet,")
    # The manifests' own checksums.
    sums = client.get(f"/bulk/{OBJECT}/manifest.sha256").text
    for line in sums.splitlines():
        digest, name = line.split("  ")
        document_bytes = client.get(f"/bulk/{OBJECT}/{name}").content
        assert hashlib.sha256(document_bytes).hexdigest() == digest
    r = client.get(f"/bulk/{OBJECT}/manifest.json")
    etag = {"If-None-Match": r.headers["etag"]}
    assert client.get(f"/bulk/{OBJECT}/manifest.json", headers=etag).status_code == 304


def test_listings_in_html_and_json(client: TestClient) -> None:
    for headers, params in (({"Accept": "application/json"}, {}), ({}, {"format": "json"})):
        r = client.get(f"/bulk/{OBJECT}/", headers=headers, params=params)
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        listing = r.json()
        names = [e["name"] for e in listing["entries"]]
        assert names[:2] == ["dataset/", "margin/"]
        assert {"hats.properties", "partition_info.csv", "_MD5SUM.txt", "manifest.json"} <= set(
            names
        )
        assert "skyvault_manifest.json" not in names
        assert listing["table"] == "dp02_dc2_catalogs.Object"
    html = client.get(f"/bulk/{OBJECT}/dataset/")
    assert html.headers["content-type"].startswith("text/html")
    assert f'href="/bulk/{OBJECT}/dataset/Norder%3D0/"' in html.text
    assert f'href="/bulk/{OBJECT}/dataset/_metadata"' in html.text
    top = client.get("/bulk/", params={"format": "json"}).json()
    # the demo's schemas, all public as `skyvault demo` makes them (conftest's demo_dir)
    names = ["dp02_calexp/", "dp02_dc2_catalogs/", "dp02_deepcoadd/"]
    assert [e["name"] for e in top["entries"]] == names
    schema = client.get("/bulk/dp02_dc2_catalogs/", params={"format": "json"}).json()
    assert "Object/" in [e["name"] for e in schema["entries"]]
    bad = client.get(f"/bulk/{OBJECT}/", params={"format": "xml"})
    assert bad.status_code == 400 and "format" in bad.text
    redirect = client.get("/bulk", follow_redirects=False)
    assert redirect.status_code == 308 and redirect.headers["location"].endswith("/bulk/")


# --- access and refused paths --------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("bulk-security"))


def _world_client(world: World, name: str, auth: AuthSettings) -> TestClient:
    jobs = world.data.parent / f"jobs-{name}"
    settings = Settings(
        data_dir=world.data,
        jobs_database_url=f"sqlite:///{jobs / 'jobs.sqlite3'}",
        results_url=str(jobs / "results"),
        auth=auth.model_copy(update={"audit_log": jobs / "audit.jsonl"}),
    )
    return TestClient(create_app(settings), raise_server_exceptions=False, follow_redirects=False)


@pytest.fixture(scope="module")
def open_app(world: World) -> Iterator[TestClient]:
    with _world_client(world, "open", AuthSettings()) as c:
        yield c


HIDDEN_PATHS = (
    "Secret/Plans/hats.properties",
    "Secret/Plans/",
    "Secret/Plans",
    "Secret/",
    "Secret/Plans/dataset/_metadata",
    "Secret/Plans/_MD5SUM.txt",
    "Secret/Plans/manifest.json",
    "Secret/Plans/dataset/manifest.csv",
    "Secret/Plans/partition_info.csv",
)


def _twin(path: str) -> str:
    return path.replace("Secret", "Sacret").replace("Plans", "Plons")


def test_hidden_tables_read_exactly_like_missing_ones(open_app: TestClient, world: World) -> None:
    alice, bob = bearer(world.alice), bearer(world.bob)
    for path in HIDDEN_PATHS:
        assert open_app.get(f"/bulk/{path}", headers=alice).status_code == 200, path
        for who in ({}, bob):
            hidden = open_app.get(f"/bulk/{path}", headers=who)
            missing = open_app.get(f"/bulk/{_twin(path)}", headers=who)
            assert hidden.status_code == missing.status_code == 404, path
            assert hidden.content == missing.content, path
            assert "Secret" not in hidden.text and "Plans" not in hidden.text
    for who in ({}, bob):
        listing = open_app.get("/bulk/", headers=who).text
        assert "Secret" not in listing and "pub/" in listing
    assert "Secret/" in open_app.get("/bulk/", headers=alice).text


def test_closed_service_wants_a_token(world: World) -> None:
    with _world_client(world, "closed", AuthSettings(anonymous=False)) as closed:
        r = closed.get("/bulk/pub/stars/hats.properties")
        assert r.status_code == 401
        assert any("Bearer" in v for v in r.headers.get_list("www-authenticate"))
        ok = closed.get("/bulk/pub/stars/hats.properties", headers=bearer(world.alice))
        assert ok.status_code == 200 and ok.text.startswith("#")
        bad = closed.get("/bulk/pub/stars/hats.properties", headers=bearer("nonsense"))
        assert bad.status_code == 401


REFUSED = (
    "pub/stars/%2e%2e/%2e%2e/%2e%2e/",
    "pub/stars/%2E%2E/stars/hats.properties",
    "pub/stars/dataset/%2e%2e/hats.properties",
    "pub/stars/..%2f..%2fSecret%2fPlans%2fhats.properties",
    "pub/stars/%2fetc%2fpasswd",
    "pub/stars//etc/passwd",
    "pub/stars/.skyvault",
    "pub/.skyvault/versions/stars/",
    "pub/.skyvault/locks/stars.lock",
    "pub/stars/skyvault_manifest.json",
    "pub/stars/hats.properties%00.txt",
    "pub/stars/hats.properties/",
    "pub/%2e%2e/Secret/Plans/hats.properties",
    "%2e%2e/%2e%2e/etc/passwd",
    "pub/stars/nothing-here",
)


def test_refused_paths_read_like_missing_files(open_app: TestClient, world: World) -> None:
    missing = open_app.get("/bulk/pub/stars/no-such-file", headers=bearer(world.alice))
    assert missing.status_code == 404
    for path in REFUSED:
        r = open_app.get(f"/bulk/{path}", headers=bearer(world.alice))
        assert r.status_code == 404, path
        assert r.content == missing.content, path


# --- real clients against a live server ------------------------------------------------------


def test_hats_and_lsdb_read_the_table_over_http(live_url: str, demo_dir: Path) -> None:
    import hats
    import lsdb

    url = f"{_root(live_url)}/bulk/{OBJECT}"
    remote = hats.read_hats(url)
    local = hats.read_hats(demo_dir / OBJECT)
    assert remote.catalog_info.total_rows == local.catalog_info.total_rows
    assert remote.get_healpix_pixels() == local.get_healpix_pixels()
    columns = ["objectId", "coord_ra", "coord_dec"]
    over_http = lsdb.open_catalog(url, columns=columns).compute().sort_values("objectId")
    on_disk = lsdb.open_catalog(demo_dir / OBJECT, columns=columns).compute()
    on_disk = on_disk.sort_values("objectId")
    assert len(over_http) == len(on_disk) > 0
    assert over_http.reset_index(drop=True).equals(on_disk.reset_index(drop=True))


class _CountBodyBytes:
    """ASGI wrapper counting the response body bytes the server sends."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.sent = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def counting(message: Any) -> None:
            if message["type"] == "http.response.body":
                self.sent += len(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, counting)


def test_pyarrow_over_fsspec_reads_only_the_footer_and_the_column_it_needs(
    settings: Settings, demo_dir: Path
) -> None:
    import fsspec

    from tests.service.conftest import _free_port, serve_in_thread

    port = _free_port()
    counted = _CountBodyBytes(create_app(settings.model_copy(update={"port": port})))
    local = pq.ParquetFile(demo_dir / OBJECT / PIXEL)
    size = (demo_dir / OBJECT / PIXEL).stat().st_size
    group_index = local.metadata.num_row_groups - 1
    assert local.metadata.num_columns > 100  # one column is a small part of the file
    with serve_in_thread(counted, port) as tap:  # type: ignore[arg-type]
        url = f"{tap.removesuffix('/tap')}/bulk/{OBJECT}/{PIXEL}"
        with fsspec.open(url, "rb", block_size=64 * 1024, cache_type="readahead") as fh:
            remote = pq.ParquetFile(fh, pre_buffer=False)
            assert remote.metadata.num_rows == local.metadata.num_rows
            assert remote.schema_arrow == local.schema_arrow
            group = remote.read_row_group(group_index, columns=["objectId"])
    assert group.equals(local.read_row_group(group_index, columns=["objectId"]))
    column = local.metadata.row_group(group_index).column(
        local.schema_arrow.get_field_index("objectId")
    )
    needed = local.metadata.serialized_size + column.total_compressed_size
    # The footer and one column chunk (plus read-ahead), not the file.
    assert counted.sent < needed + 4 * 64 * 1024
    assert counted.sent < size / 20


def _resume(tool: list[str], url: str, target: Path, body: bytes, md5: str) -> None:
    target.write_bytes(body[: len(body) // 3])  # an interrupted download
    done = subprocess.run([*tool, url], cwd=target.parent, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode()
    data = target.read_bytes()
    assert data == body
    assert hashlib.md5(data).hexdigest() == md5


@pytest.mark.skipif(shutil.which("wget") is None, reason="wget is not installed")
def test_wget_continues_an_interrupted_download(
    live_url: str, demo_dir: Path, client: TestClient, tmp_path: Path
) -> None:
    url = f"{_root(live_url)}/bulk/{OBJECT}/{PIXEL}"
    body = _local(demo_dir, PIXEL)
    md5 = _md5_line(client, OBJECT, PIXEL)
    target = tmp_path / "Npix=8.parquet"
    _resume(["wget", "-q", "-c", "-O", str(target)], url, target, body, md5)
    # The server really answered 206 from the offset (wget would start over on a 200).
    (tmp_path / "again").write_bytes(body[:1000])
    log = subprocess.run(
        ["wget", "-c", "-S", "-O", str(tmp_path / "again"), url],
        capture_output=True,
        check=False,
    )
    assert b"206 Partial Content" in log.stderr
    assert (tmp_path / "again").read_bytes() == body


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_continues_an_interrupted_download(
    live_url: str, demo_dir: Path, client: TestClient, tmp_path: Path
) -> None:
    url = f"{_root(live_url)}/bulk/{OBJECT}/{PIXEL}"
    body = _local(demo_dir, PIXEL)
    md5 = _md5_line(client, OBJECT, PIXEL)
    target = tmp_path / "part.parquet"
    _resume(["curl", "-sf", "-C", "-", "-o", str(target)], url, target, body, md5)


@pytest.mark.skipif(shutil.which("aria2c") is None, reason="aria2 is not installed")
def test_aria2c_fetches_in_parallel_segments_and_resumes(
    live_url: str, demo_dir: Path, client: TestClient, tmp_path: Path
) -> None:
    url = f"{_root(live_url)}/bulk/{OBJECT}/{PIXEL}"
    body = _local(demo_dir, PIXEL)
    md5 = _md5_line(client, OBJECT, PIXEL)
    tool = ["aria2c", "-q", "-x4", "-s4", "--min-split-size=1M", "--file-allocation=none"]
    target = tmp_path / "whole.parquet"
    done = subprocess.run(
        [*tool, "-d", str(tmp_path), "-o", target.name, f"--checksum=md5={md5}", url],
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    assert target.read_bytes() == body
    # An interrupted file continues (-c) from where it stopped.
    _resume(
        [*tool, "-c", "-d", str(tmp_path), "-o", "part.parquet"],
        url,
        tmp_path / "part.parquet",
        body,
        md5,
    )


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_literal_dot_segments_are_refused(live_url: str) -> None:
    """httpx normalises ``..``; curl --path-as-is sends it as typed."""
    base = _root(live_url)
    outcomes = {}
    for path in (
        "/bulk/dp02_dc2_catalogs/Object/../../../../etc/passwd",
        "/bulk/dp02_dc2_catalogs/Object/dataset/../hats.properties",
        "/bulk/dp02_dc2_catalogs/../dp02_dc2_catalogs/Object/hats.properties",
        "/bulk/dp02_dc2_catalogs/Object/no-such-file",
    ):
        done = subprocess.run(
            ["curl", "-s", "--path-as-is", "-w", "\n%{http_code}", base + path],
            capture_output=True,
            check=True,
        )
        body, _, status = done.stdout.rpartition(b"\n")
        outcomes[path] = (status, body)
    assert len(set(outcomes.values())) == 1, outcomes
    assert next(iter(outcomes.values()))[0] == b"404"


def test_json_listing_of_a_live_table(live_url: str) -> None:
    r = httpx.get(f"{_root(live_url)}/bulk/{OBJECT}/dataset/", params={"format": "json"})
    assert r.status_code == 200
    assert json.loads(r.text)["path"] == f"/bulk/{OBJECT}/dataset/"


# --- signed URLs ------------------------------------------------------------------------------


def _sign(app: TestClient, path: str, headers: dict[str, str], **params: str) -> httpx.Response:
    return app.post(f"/bulk/{path}", headers=headers, params=params)


def _local_url(url: str) -> str:
    """The signed URL without scheme and host (for the in-process client)."""
    return "/" + url.split("/", 3)[3]


@pytest.fixture(scope="module")
def closed_app(world: World) -> Iterator[TestClient]:
    with _world_client(world, "closed-signed", AuthSettings(anonymous=False)) as c:
        yield c


def test_a_signed_url_works_without_credentials(closed_app: TestClient, world: World) -> None:
    alice = bearer(world.alice)
    path = "Secret/Plans/partition_info.csv"
    assert closed_app.get(f"/bulk/{path}").status_code == 401
    made = _sign(closed_app, path, alice)
    assert made.status_code == 200, made.text
    document = made.json()
    assert document["path"] == path and "signature=" in document["url"]
    assert world.alice not in document["url"]  # no credential in the URL
    r = closed_app.get(_local_url(document["url"]))
    assert r.status_code == 200
    assert r.content == closed_app.get(f"/bulk/{path}", headers=alice).content
    assert "filename*=utf-8''partition_info.csv" in r.headers["content-disposition"]
    ranged = closed_app.get(_local_url(document["url"]), headers={"Range": "bytes=0-4"})
    assert ranged.status_code == 206 and ranged.content == r.content[:5]


def test_a_signed_url_is_good_for_its_path_only(closed_app: TestClient, world: World) -> None:
    url = _local_url(
        _sign(closed_app, "Secret/Plans/hats.properties", bearer(world.alice)).json()["url"]
    )
    base, _, query = url.partition("?")
    other = base.replace("hats.properties", "partition_info.csv")
    refused = closed_app.get(f"{other}?{query}")
    assert refused.status_code == 403 and "another path" in refused.text
    moved = query.replace("hats.properties", "partition_info.csv")
    assert closed_app.get(f"{other}?{moved}").status_code == 403  # signature no longer valid
    for name, value in (("signature", "AAAA"), ("expires", "99999999999"), ("user", "bob")):
        tampered = re.sub(rf"{name}=[^&]*", f"{name}={value}", query)
        r = closed_app.get(f"{base}?{tampered}")
        assert r.status_code == 403 and "not valid" in r.text, name
    broken = closed_app.get(f"{base}?{query.replace('expires=', 'expires=x')}")
    assert broken.status_code == 403 and "malformed" in broken.text


def test_signed_urls_expire(closed_app: TestClient, world: World) -> None:
    from skyvault.bulk.signing import load_key, sign

    key = load_key(world.data)
    path = "pub/stars/hats.properties"
    past = sign(key, "alice", path, int(time.time()) - 5)
    r = closed_app.get(f"/bulk/{path}?{past.query()}")
    assert r.status_code == 403 and "expired" in r.text
    future = sign(key, "alice", path, int(time.time()) + 60)
    assert closed_app.get(f"/bulk/{path}?{future.query()}").status_code == 200
    ghost = sign(key, "nobody", path, int(time.time()) + 60)
    assert closed_app.get(f"/bulk/{path}?{ghost.query()}").status_code == 403
    for lifetime in ("0", "-1", "x", str(8 * 24 * 3600)):
        bad = _sign(closed_app, path, bearer(world.alice), lifetime=lifetime)
        assert bad.status_code == 400 and "lifetime" in bad.text, lifetime
    ok = _sign(closed_app, path, bearer(world.alice), lifetime="120").json()
    assert ok["expires"] <= time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 121))


def test_a_signed_url_has_the_signers_access_when_used(
    closed_app: TestClient, world: World
) -> None:
    from skyvault.bulk.signing import load_key, sign

    # A (forged, here) signature of bob for a table he may not read: it reads as missing.
    key = load_key(world.data)
    hidden = sign(key, "bob", "Secret/Plans/hats.properties", int(time.time()) + 60)
    twin = sign(key, "bob", "Sacret/Plons/hats.properties", int(time.time()) + 60)
    r = closed_app.get(f"/bulk/Secret/Plans/hats.properties?{hidden.query()}")
    missing = closed_app.get(f"/bulk/Sacret/Plons/hats.properties?{twin.query()}")
    assert r.status_code == missing.status_code == 404
    assert r.content == missing.content
    # bob cannot sign what he cannot see; anonymous callers cannot sign at all.
    refused = _sign(closed_app, "Secret/Plans/hats.properties", bearer(world.bob))
    assert refused.status_code == 404
    assert (
        refused.content
        == _sign(closed_app, "Sacret/Plons/hats.properties", bearer(world.bob)).content
    )


def test_anonymous_callers_cannot_sign(open_app: TestClient) -> None:
    r = _sign(open_app, "pub/stars/hats.properties", {})
    assert r.status_code == 400 and "token" in r.text


def test_a_signed_directory_covers_its_tree(closed_app: TestClient, world: World) -> None:
    made = _sign(closed_app, "Secret/Plans", bearer(world.alice)).json()
    assert made["path"] == "Secret/Plans/"
    listing = closed_app.get(_local_url(made["url"]))
    assert listing.status_code == 200
    links = re.findall(r'href="([^"]+)"', listing.text)
    signed_links = [link.replace("&amp;", "&") for link in links if "signature=" in link]
    assert any("/dataset/?" in link for link in signed_links)
    dataset = next(link for link in signed_links if "/dataset/?" in link)
    inner = closed_app.get(dataset)
    assert inner.status_code == 200
    metadata = next(
        link.replace("&amp;", "&")
        for link in re.findall(r'href="([^"]+)"', inner.text)
        if "/_metadata?" in link
    )
    r = closed_app.get(metadata)
    assert r.status_code == 200 and r.content[-4:] == b"PAR1"
    # Outside the directory the signature is no good.
    query = _local_url(made["url"]).partition("?")[2]
    assert closed_app.get(f"/bulk/pub/stars/hats.properties?{query}").status_code == 403
    assert closed_app.get(f"/bulk/Secret/?{query}").status_code == 403


@pytest.mark.skipif(shutil.which("wget") is None, reason="wget is not installed")
def test_wget_mirrors_a_table_from_one_signed_url(
    closed_app: TestClient, world: World, tmp_path: Path
) -> None:
    from tests.service.conftest import _free_port, serve_in_thread

    jobs = world.data.parent / "jobs-live-signed"
    settings = Settings(
        data_dir=world.data,
        jobs_database_url=f"sqlite:///{jobs / 'jobs.sqlite3'}",
        results_url=str(jobs / "results"),
        auth=AuthSettings(anonymous=False),
    )
    port = _free_port()
    with serve_in_thread(create_app(settings), port) as tap:
        made = _sign(closed_app, "Secret/Plans/", bearer(world.alice)).json()
        url = tap.removesuffix("/tap") + _local_url(made["url"])
        done = subprocess.run(
            ["wget", "-q", "-r", "-np", "-nH", "--cut-dirs=3", "-e", "robots=off",
             "--content-disposition", url],
            cwd=tmp_path,
            capture_output=True,
            check=False,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    check = subprocess.run(
        ["md5sum", "--check", "--quiet", "_MD5SUM.txt"],
        cwd=tmp_path,
        capture_output=True,
        check=False,
    )
    assert (tmp_path / "_MD5SUM.txt").is_file()
    assert check.returncode == 0, check.stdout + check.stderr
    assert (tmp_path / "dataset" / "_metadata").is_file()


def test_a_table_ingested_before_manifests_is_served_with_computed_ones(tmp_path: Path) -> None:
    from skyvault.auth import AuthStorage, grant_access
    from skyvault.bulk import MANIFEST_FILE
    from skyvault.catalog.ingest import IngestOptions, ingest
    from tests.conftest import random_sky

    pq.write_table(random_sky(3000, seed=5), tmp_path / "in.parquet")
    data = tmp_path / "data"
    small = IngestOptions(max_rows_per_partition=1000)
    ingest([tmp_path / "in.parquet"], "old.t", data, ra="ra", dec="dec", options=small)
    root = (data / "old" / "t").resolve()
    (root / MANIFEST_FILE).unlink()  # as an older skyvault left it
    storage = AuthStorage.for_data_dir(data)
    try:
        grant_access(storage, "old", None)
    finally:
        storage.close()
    jobs = tmp_path / "jobs"
    settings = Settings(
        data_dir=data,
        jobs_database_url=f"sqlite:///{jobs / 'jobs.sqlite3'}",
        results_url=str(jobs / "results"),
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as app:
        r = app.get("/bulk/old/t/partition_info.csv")
        assert r.status_code == 200 and r.content == (root / "partition_info.csv").read_bytes()
        assert "repr-digest" not in r.headers  # no stored sha256 to give
        etag = r.headers["etag"]
        assert etag.startswith('"') and etag != f'"{hashlib.sha256(r.content).hexdigest()}"'
        assert (
            app.get("/bulk/old/t/partition_info.csv", headers={"If-None-Match": etag}).status_code
            == 304
        )
        sums = app.get("/bulk/old/t/_MD5SUM.txt")
        assert sums.status_code == 200 and "partition_info.csv" in sums.text
        done = subprocess.run(
            ["md5sum", "--check", "--strict", "-"],
            cwd=root,
            input=sums.content,
            capture_output=True,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        names = [
            e["name"] for e in app.get("/bulk/old/t/", params={"format": "json"}).json()["entries"]
        ]
        assert MANIFEST_FILE not in names and "manifest.json" in names


def test_too_many_transfers_at_once_are_429(settings: Settings, demo_dir: Path) -> None:
    import socket

    from tests.service.conftest import _free_port, serve_in_thread

    port = _free_port()
    limited = settings.model_copy(update={"bulk_max_downloads": 1, "port": port})
    path = f"/bulk/{OBJECT}/{PIXEL}"
    with serve_in_thread(create_app(limited), port) as tap:
        url = tap.removesuffix("/tap") + path
        # A slow client (small receive buffer, reads nothing): its transfer stays running.
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect(("127.0.0.1", port))
        try:
            slow.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert slow.recv(64).startswith(b"HTTP/1.1 200")
            second = httpx.get(url, timeout=30)
            assert second.status_code == 429
            assert second.headers["retry-after"] == str(settings.retry_after)
            assert "downloads running" in second.text
            # Not transfers: listings, manifests and 304s are not counted.
            listing = httpx.get(tap.removesuffix("/tap") + f"/bulk/{OBJECT}/_MD5SUM.txt")
            assert listing.status_code == 200
            etag = httpx.head(url, timeout=30).headers.get("etag")
            assert etag is not None
            assert httpx.get(url, headers={"If-None-Match": etag}).status_code == 304
        finally:
            slow.close()
        # The slow one is gone: room again.
        deadline = time.monotonic() + 10
        while True:
            again = httpx.get(url, headers={"Range": "bytes=0-9"}, timeout=30)
            if again.status_code != 429 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert again.status_code == 206 and again.content == _local(demo_dir, PIXEL)[:10]
