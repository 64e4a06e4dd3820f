"""A client for the bulk edge: fetch a table (or a sky region of it) with resume and checks.

``skyvault download URL DEST`` reads the ``manifest.json`` of a bulk directory
(``{base}/bulk/{schema}/{table}/`` or any directory below it, or a bulk job
``{base}/bulk/jobs/ID``, whose files are below ``files/``), then fetches every file it
lists in parallel into ``DEST`` (the same relative paths), so that the result is a HATS
tree that ``hats``/``lsdb`` open locally:

* each file is written as ``NAME.part`` and renamed once its SHA-256 matches the manifest,
  so a complete-looking file is a verified one;
* an interrupted transfer resumes: a ``.part`` file is continued with ``Range: bytes=N-``
  and ``If-Range`` carrying the file's strong ETag (the server's ETag of a manifest file is
  its SHA-256), so a file that changed on the server is fetched again from zero;
* a file already present with the manifest's size and SHA-256 is not fetched again (a
  re-run after a failure fetches only what is missing);
* a sky region (a DALI circle or polygon) keeps only the HEALPix partitions that touch it
  (metadata files always come): whole partitions, so the rows are a superset of the
  region's, as with Gaia's HEALPix-split bulk files;
* 429 and 503 answers are retried after their ``Retry-After``; connection errors and 5xx
  a few times with back-off.

The token goes in an ``Authorization: Bearer`` header (never in a URL); a signed URL
(``?sig=...``) works too.  The core of the client is :func:`download`; the CLI edge draws
a progress bar and turns :class:`DownloadReport` into an exit code.

Written here rather than delegating to ``wget``/``aria2c`` because checking against the
manifest and selecting partitions by region need the manifest's structure; the transfer
itself is plain ``httpx``.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from skyvault.errors import DownloadError
from skyvault.sky.coverage import partitions_overlapping, region_coverage
from skyvault.sky.regions import Circle, Polygon

__all__ = ["DownloadReport", "RemoteFile", "download", "read_manifest"]

_CHUNK = 1 << 20
#: HTTP statuses worth trying again (after Retry-After when the server gives one).
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
#: The deepest order a region's coverage is computed at (HATS partitions are far coarser).
_REGION_ORDER = 12
#: The URL path of a bulk job (``/bulk/jobs/ID/``), whose files are below ``files/``.
_JOB_PATH = re.compile(r"/bulk/jobs/[^/]+/$")


@dataclass(frozen=True)
class RemoteFile:
    """One file of a manifest: its path relative to the directory, size and checksums."""

    path: str
    bytes: int
    sha256: str
    md5: str
    healpix_order: int | None = None
    healpix_pixel: int | None = None


@dataclass
class DownloadReport:
    """What happened to each file: ``fetched`` (now verified), ``present`` (already there
    and verified), ``failed`` (path → reason)."""

    fetched: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    bytes_fetched: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed


def _directory_url(url: str) -> str:
    """The directory ``url`` names; a bulk job's URL names its files (``…/files/``)."""
    parts = urlsplit(url)
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    if _JOB_PATH.search(path):
        path += "files/"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def _file_url(directory: str, path: str) -> str:
    parts = urlsplit(directory)
    path = parts.path + quote(path, safe="/=")
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def _safe_relative(path: str) -> PurePosixPath:
    """A manifest path as a relative path that stays inside the destination."""
    relative = PurePosixPath(path)
    if relative.is_absolute() or not relative.parts or ".." in relative.parts:
        raise DownloadError(f"the manifest lists an unsafe path {path!r}; refusing to write it")
    return relative


def read_manifest(client: httpx.Client, url: str) -> list[RemoteFile]:
    """The files listed by ``manifest.json`` of the bulk directory at ``url``."""
    directory = _directory_url(url)
    try:
        response = _get_with_retries(client, _file_url(directory, "manifest.json"), {})
    except httpx.HTTPError as exc:
        raise DownloadError(f"cannot reach {directory}: {exc}") from None
    if response.status_code in (401, 403):
        raise DownloadError(
            f"{directory} needs credentials: pass --token (or set SKYVAULT_TOKEN), or use a "
            "signed URL"
        )
    if response.status_code == 404:
        raise DownloadError(
            f"{directory} is not a bulk directory (no manifest.json there): give the URL of "
            "a table under {base}/bulk/, e.g. http://host/bulk/SCHEMA/TABLE/"
        )
    if response.status_code != 200:
        raise DownloadError(f"{directory}manifest.json answered HTTP {response.status_code}")
    try:
        document = response.json()
        files = [
            RemoteFile(
                path=str(_safe_relative(str(f["path"]))),
                bytes=int(f["bytes"]),
                sha256=str(f["sha256"]),
                md5=str(f["md5"]),
                healpix_order=None if f.get("healpix_order") is None else int(f["healpix_order"]),
                healpix_pixel=None if f.get("healpix_pixel") is None else int(f["healpix_pixel"]),
            )
            for f in document["files"]
        ]
    except (ValueError, KeyError, TypeError):
        raise DownloadError(f"{directory}manifest.json is not a skyvault manifest") from None
    return files


def select_region(files: Sequence[RemoteFile], region: Circle | Polygon) -> list[RemoteFile]:
    """The files a region needs: partitions that touch it, and every file without a pixel."""
    pixelled = [
        (i, (f.healpix_order, f.healpix_pixel))
        for i, f in enumerate(files)
        if f.healpix_order is not None and f.healpix_pixel is not None
    ]
    coverage = region_coverage(region, _REGION_ORDER)
    hits = partitions_overlapping(coverage, [p for _, p in pixelled])
    keep = {pixelled[h][0] for h in hits}
    return [f for i, f in enumerate(files) if f.healpix_order is None or i in keep]


def _retry_after(response: httpx.Response, attempt: int) -> float:
    value = response.headers.get("Retry-After", "")
    try:
        return min(max(float(value), 0.0), 60.0)
    except ValueError:
        return min(2.0**attempt, 30.0)


def _get_with_retries(
    client: httpx.Client, url: str, headers: dict[str, str], attempts: int = 5
) -> httpx.Response:
    for attempt in range(attempts):
        try:
            response = client.get(url, headers=headers)
        except httpx.TransportError:
            if attempt == attempts - 1:
                raise
            time.sleep(min(2.0**attempt * 0.2, 10.0))
            continue
        if response.status_code in _RETRY_STATUS and attempt < attempts - 1:
            time.sleep(_retry_after(response, attempt))
            continue
        return response
    raise AssertionError("unreachable")


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch_one(
    client: httpx.Client,
    directory: str,
    remote: RemoteFile,
    dest: Path,
    on_bytes: Callable[[int], None],
    attempts: int,
) -> tuple[str, int]:
    """Fetch one file; returns ("present" | "fetched", bytes fetched).  Raises on failure."""
    target = dest / remote.path
    present = target.exists() and target.stat().st_size == remote.bytes
    if present and _sha256_of(target) == remote.sha256:
        on_bytes(remote.bytes)
        return "present", 0
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    url = _file_url(directory, remote.path)
    fetched = 0
    reported = 0

    def advance(total: int) -> None:
        # Report growth only: a retry re-reads bytes already counted.
        nonlocal reported
        if total > reported:
            on_bytes(total - reported)
            reported = total

    for attempt in range(attempts):
        have = part.stat().st_size if part.exists() else 0
        if have > remote.bytes:
            part.unlink()
            have = 0
        headers = {}
        if 0 < have < remote.bytes:
            headers = {"Range": f"bytes={have}-", "If-Range": f'"{remote.sha256}"'}
        try:
            with client.stream("GET", url, headers=headers) as response:
                if response.status_code in _RETRY_STATUS and attempt < attempts - 1:
                    time.sleep(_retry_after(response, attempt))
                    continue
                if response.status_code == 206:
                    mode, size = "ab", have
                elif response.status_code == 200:
                    mode, size = "wb", 0
                elif response.status_code == 416 and have == remote.bytes:
                    mode, size = "", have
                else:
                    raise DownloadError(f"HTTP {response.status_code}")
                if mode:
                    with part.open(mode) as out:
                        for chunk in response.iter_bytes(_CHUNK):
                            out.write(chunk)
                            fetched += len(chunk)
                            size += len(chunk)
                            advance(size)
        except httpx.TransportError as exc:
            if attempt == attempts - 1:
                raise DownloadError(f"transfer failed: {exc}") from None
            time.sleep(min(2.0**attempt * 0.2, 10.0))
            continue
        if not part.exists() or part.stat().st_size != remote.bytes:
            size = part.stat().st_size if part.exists() else 0
            if attempt < attempts - 1:
                continue
            raise DownloadError(f"got {size} bytes, the manifest says {remote.bytes}")
        if _sha256_of(part) != remote.sha256:
            part.unlink()
            if attempt < attempts - 1:
                continue
            raise DownloadError("SHA-256 does not match the manifest")
        os.replace(part, target)
        return "fetched", fetched
    raise DownloadError("gave up after retries")


def download(
    url: str,
    dest: Path,
    *,
    token: str | None = None,
    workers: int = 4,
    region: Circle | Polygon | None = None,
    client: httpx.Client | None = None,
    on_start: Callable[[int, int], None] | None = None,
    on_bytes: Callable[[int], None] | None = None,
    attempts: int = 4,
) -> DownloadReport:
    """Fetch the bulk directory at ``url`` (its ``manifest.json``'s files) into ``dest``.

    Parameters
    ----------
    url
        A bulk directory, e.g. ``http://host/bulk/schema/table/`` (a signed URL too).
    dest
        The local directory; created when missing.  Files keep their relative paths.
    token
        Sent as ``Authorization: Bearer``.
    workers
        Files fetched at once.
    region
        Keep only the HEALPix partitions touching this region (and every metadata file).
    client
        An ``httpx.Client`` to use (tests pass one bound to an app); made when None.
    on_start, on_bytes
        Progress: ``on_start(files, total_bytes)`` once, ``on_bytes(n)`` as bytes arrive.

    Returns
    -------
    DownloadReport
        Per file, whether it was fetched, already present, or failed (and why).

    Raises
    ------
    DownloadError
        When the manifest cannot be read (nothing was written then).
    """
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    own = client is None
    http = client or httpx.Client(timeout=httpx.Timeout(60.0, connect=10.0), headers=headers)
    if not own and headers:
        http.headers.update(headers)
    report = DownloadReport()
    try:
        files = read_manifest(http, url)
        if region is not None:
            files = select_region(files, region)
        if on_start is not None:
            on_start(len(files), sum(f.bytes for f in files))
        dest.mkdir(parents=True, exist_ok=True)
        directory = _directory_url(url)
        progress = on_bytes or (lambda n: None)

        def one(remote: RemoteFile) -> tuple[RemoteFile, str, int, str | None]:
            try:
                outcome, n = _fetch_one(http, directory, remote, dest, progress, attempts)
                return remote, outcome, n, None
            except (DownloadError, OSError, httpx.HTTPError) as exc:
                return remote, "failed", 0, str(exc) or type(exc).__name__

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for remote, outcome, n, reason in pool.map(one, files):
                if outcome == "fetched":
                    report.fetched.append(remote.path)
                    report.bytes_fetched += n
                elif outcome == "present":
                    report.present.append(remote.path)
                else:
                    report.failed[remote.path] = reason or "failed"
    finally:
        if own:
            http.close()
    return report
