"""``skyvault download``: a table or a sky region of it fetched from a live server's bulk edge,
resumed and verified against the manifest; failures named, never written as good files."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skyvault.bulk import download as download_module
from skyvault.bulk.download import download
from skyvault.cli import main
from skyvault.config import Settings
from skyvault.errors import DownloadError
from skyvault.service.app import create_app
from skyvault.sky.regions import Circle, Polygon
from tests.service.conftest import ROOMY_AUTH, _free_port, serve_in_thread

OBJECT = "dp02_dc2_catalogs/Object"


def _root(live_url: str) -> str:
    return live_url.removesuffix("/tap")


def _manifest(live_url: str) -> list[dict[str, object]]:
    files: list[dict[str, object]] = httpx.get(
        f"{_root(live_url)}/bulk/{OBJECT}/manifest.json"
    ).json()["files"]
    return files


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_table_arrives_whole_and_opens_with_hats(
    live_url: str, demo_dir: Path, tmp_path: Path
) -> None:
    import hats

    dest = tmp_path / "object"
    report = download(f"{_root(live_url)}/bulk/{OBJECT}", dest, workers=3)
    files = _manifest(live_url)
    assert report.ok and sorted(report.fetched) == sorted(str(f["path"]) for f in files)
    got = _tree(dest)
    assert set(got) == {str(f["path"]) for f in files}
    for path, body in got.items():
        assert body == (demo_dir / OBJECT / path).read_bytes(), path
    local = hats.read_hats(demo_dir / OBJECT)
    assert hats.read_hats(dest).catalog_info.total_rows == local.catalog_info.total_rows
    # A second run fetches nothing: every file is there and verified.
    again = download(f"{_root(live_url)}/bulk/{OBJECT}/", dest)
    assert again.ok and not again.fetched and len(again.present) == len(files)


def test_a_partial_file_resumes_with_a_range_and_a_corrupt_one_is_fetched_again(
    live_url: str, demo_dir: Path, tmp_path: Path
) -> None:
    files = _manifest(live_url)
    biggest = max(files, key=lambda f: int(str(f["bytes"])))
    path = str(biggest["path"])
    body = (demo_dir / OBJECT / path).read_bytes()
    dest = tmp_path / "object"
    part = dest / (path + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(body[: len(body) // 3])
    smallest = min(
        (f for f in files if str(f["path"]).endswith(".parquet")),
        key=lambda f: int(str(f["bytes"])),
    )
    corrupt = dest / str(smallest["path"])
    corrupt.parent.mkdir(parents=True, exist_ok=True)
    good = (demo_dir / OBJECT / str(smallest["path"])).read_bytes()
    corrupt.write_bytes(bytes(len(good)))  # right size, wrong bytes

    sent: list[httpx.Request] = []
    with httpx.Client(event_hooks={"request": [sent.append]}) as client:
        report = download(f"{_root(live_url)}/bulk/{OBJECT}", dest, client=client, workers=2)
    assert report.ok
    ranges = {r.url.path.split(f"{OBJECT}/", 1)[1]: r.headers.get("range") for r in sent}
    assert ranges[path] == f"bytes={len(body) // 3}-"
    assert (dest / path).read_bytes() == body and not part.exists()
    assert corrupt.read_bytes() == good and str(smallest["path"]) in report.fetched


@pytest.fixture(scope="module")
def sky_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, pa.Table]]:
    """A live server with one table of 40k random stars in many HEALPix partitions."""
    from skyvault.auth import AuthStorage, grant_access
    from skyvault.catalog.ingest import IngestOptions, ingest

    root = tmp_path_factory.mktemp("bulk-sky")
    rng = np.random.default_rng(7)
    n = 40_000
    stars = pa.table(
        {
            "id": np.arange(n),
            "ra": rng.uniform(0, 360, n),
            "dec": np.degrees(np.arcsin(rng.uniform(-1, 1, n))),
        }
    )
    pq.write_table(stars, root / "stars.parquet")
    data = root / "data"
    ingest(
        [root / "stars.parquet"],
        "sky.stars",
        data,
        ra="ra",
        dec="dec",
        options=IngestOptions(max_rows_per_partition=2000),
    )
    storage = AuthStorage.for_data_dir(data)
    try:
        grant_access(storage, "sky", None)
    finally:
        storage.close()
    settings = Settings(data_dir=data, auth=ROOMY_AUTH)
    with serve_in_thread(create_app(settings), _free_port()) as url:
        yield _root(url), stars


def _inside(region: Circle | Polygon, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """The oracle, independent of skyvault's geometry: astropy separations for a cone; for
    a convex polygon, on the inner side of every edge's great circle (counter-clockwise)."""
    from astropy.coordinates import SkyCoord

    points = SkyCoord(ra, dec, unit="deg")
    if isinstance(region, Circle):
        centre = SkyCoord(region.ra, region.dec, unit="deg")
        return np.asarray(points.separation(centre).deg < region.radius)
    xyz = points.cartesian.xyz.value.T
    corners = SkyCoord(
        [v[0] for v in region.vertices], [v[1] for v in region.vertices], unit="deg"
    ).cartesian.xyz.value.T
    inside = np.ones(len(ra), dtype=bool)
    for a, b in zip(corners, np.roll(corners, -1, axis=0), strict=True):
        inside &= xyz @ np.cross(a, b) > 0
    return inside


@pytest.mark.parametrize(
    "region",
    [
        Circle(10.0, 20.0, 4.0),
        Circle(359.0, -60.0, 8.0),
        Polygon.from_flat([100, 0, 130, 0, 115, 25]),
    ],
    ids=["cone", "cone-across-ra-0", "polygon"],
)
def test_a_region_brings_the_partitions_holding_its_rows(
    sky_url: tuple[str, pa.Table], region: Circle | Polygon, tmp_path: Path
) -> None:
    base, stars = sky_url
    inside = _inside(region, stars["ra"].to_numpy(), stars["dec"].to_numpy())
    assert inside.sum() > 10
    report = download(f"{base}/bulk/sky/stars", tmp_path, region=region)
    assert report.ok
    manifest = httpx.get(f"{base}/bulk/sky/stars/manifest.json").json()["files"]
    data = sorted(tmp_path.glob("dataset/Norder=*/Dir=*/Npix=*.parquet"))
    everything = [f for f in manifest if f["path"].startswith("dataset/Norder=")]
    assert 0 < len(data) < len(everything) / 2  # a few partitions, not the table
    assert (tmp_path / "partition_info.csv").exists()  # metadata always comes
    got = pq.ParquetDataset(data).read(columns=["id"])["id"].to_numpy()
    assert set(stars["id"].to_numpy()[inside]) <= set(got)  # every row of the region came


def test_a_hidden_or_missing_table_is_a_clear_error(live_url: str, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="not a bulk directory"):
        download(f"{_root(live_url)}/bulk/dp02_dc2_catalogs/NoSuchTable", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def _fake_server(files: dict[str, bytes], manifest: dict[str, bytes]) -> httpx.MockTransport:
    """A bulk directory whose manifest describes ``manifest`` but serves ``files``."""
    document = {
        "files": [
            {
                "path": p,
                "bytes": len(b),
                "sha256": hashlib.sha256(b).hexdigest(),
                "md5": hashlib.md5(b).hexdigest(),
            }
            for p, b in manifest.items()
        ]
    }
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        name = request.url.path.removeprefix("/bulk/s/t/")
        if name == "manifest.json":
            return httpx.Response(200, json=document)
        calls["n"] += 1
        if calls["n"] == 1:
            return httpx.Response(429, headers={"Retry-After": "0"})
        return httpx.Response(200, content=files[name])

    return httpx.MockTransport(handler)


def test_a_file_that_does_not_match_its_checksum_is_failed_not_kept(tmp_path: Path) -> None:
    transport = _fake_server({"a.bin": b"tampered"}, {"a.bin": b"original"})
    with httpx.Client(transport=transport) as client:
        report = download("http://h/bulk/s/t", tmp_path, client=client, attempts=2)
    assert report.failed and "a.bin" in report.failed
    assert "SHA-256" in report.failed["a.bin"]
    assert not (tmp_path / "a.bin").exists()


def test_429_is_retried_after_its_retry_after(tmp_path: Path) -> None:
    transport = _fake_server({"a.bin": b"payload"}, {"a.bin": b"payload"})
    with httpx.Client(transport=transport) as client:
        report = download("http://h/bulk/s/t", tmp_path, client=client)
    assert report.ok and (tmp_path / "a.bin").read_bytes() == b"payload"


def test_a_manifest_cannot_write_outside_the_destination(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = {"files": [{"path": "../evil", "bytes": 1, "sha256": "0", "md5": "0"}]}
        return httpx.Response(200, content=json.dumps(body).encode())

    with (
        httpx.Client(transport=httpx.MockTransport(handler)) as client,
        pytest.raises(DownloadError, match="unsafe path"),
    ):
        download("http://h/bulk/s/t", tmp_path / "in", client=client)
    assert not (tmp_path / "evil").exists()


def test_the_cli_exits_non_zero_naming_the_failed_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    transport = _fake_server(
        {"good.bin": b"good", "bad.bin": b"evil"}, {"good.bin": b"good", "bad.bin": b"nice"}
    )
    real = httpx.Client
    monkeypatch.setattr(
        download_module.httpx, "Client", lambda **kw: real(transport=transport, **kw)
    )
    status = main(["download", "http://h/bulk/s/t", str(tmp_path), "--quiet", "--workers", "1"])
    err = capsys.readouterr().err
    assert status == 1
    assert "failed: bad.bin" in err and "good.bin" not in err.split("failed;")[-1]
    assert (tmp_path / "good.bin").read_bytes() == b"good" and not (tmp_path / "bad.bin").exists()


def test_the_cli_fetches_a_live_table(live_url: str, tmp_path: Path) -> None:
    status = main(["download", f"{_root(live_url)}/bulk/{OBJECT}", str(tmp_path), "--quiet"])
    assert status == 0
    assert {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()} == {
        str(f["path"]) for f in _manifest(live_url)
    }
