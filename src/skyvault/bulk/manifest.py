"""The manifest of a table version: every file with its size, checksums, rows and pixel.

A version directory is immutable once published, so its manifest is computed once, at
ingest (after the files are written, before the version is published) and stored in the
version as ``skyvault_manifest.json`` (:data:`MANIFEST_FILE`).  It is internal: the bulk
edge serves views of it instead, in every directory of the tree, each covering the files
beneath that directory with paths relative to it:

* ``_MD5SUM.txt`` — ``md5  path`` lines (Gaia's convention; ``md5sum -c`` checks a mirror);
* ``manifest.json`` / ``manifest.csv`` — path, bytes, sha256, md5, rows (from the Parquet
  footer, for data files), HEALPix order and pixel (for ``Npix=N.parquet`` files),
  last-modified;
* ``manifest.sha256`` — ``sha256  name`` of the three documents above, so that a manifest
  itself can be checked (``sha256sum -c``).

The table root's documents are the table-level manifest.  Tables ingested before manifests
existed have no stored one: :func:`manifest_for` computes it on first use and keeps it in
a small in-memory cache keyed by the version directory (which never changes).

The rendered documents are byte-for-byte deterministic (no generation time), so their
checksums and ETags are stable.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import pyarrow.parquet as pq

from skyvault.errors import CatalogError

__all__ = [
    "MANIFEST_CSV",
    "MANIFEST_FILE",
    "MANIFEST_JSON",
    "MANIFEST_SHA256",
    "MD5SUM_FILE",
    "VIRTUAL_FILES",
    "Manifest",
    "ManifestEntry",
    "ManifestHasher",
    "clear_cache",
    "compute_manifest",
    "manifest_for",
    "stored_manifest",
    "write_manifest",
]

#: The stored manifest inside a version directory (internal: never served as is).
MANIFEST_FILE = "skyvault_manifest.json"
MD5SUM_FILE = "_MD5SUM.txt"
MANIFEST_JSON = "manifest.json"
MANIFEST_CSV = "manifest.csv"
MANIFEST_SHA256 = "manifest.sha256"
#: The documents every served directory has (rendered from the manifest).
VIRTUAL_FILES = frozenset({MD5SUM_FILE, MANIFEST_JSON, MANIFEST_CSV, MANIFEST_SHA256})
FORMAT_VERSION = 1

_CHUNK = 1 << 20
#: Rendered documents kept per manifest (a few per directory of a table).
_RENDERED_MAX = 4096
_DATA_FILE = re.compile(r"^(Npix=\d+|part-\d+)\.parquet$")
_PIXEL = re.compile(r"(?:^|/)Norder=(\d+)/Dir=\d+/Npix=(\d+)\.parquet$")
_CSV_FIELDS = (
    "path",
    "bytes",
    "sha256",
    "md5",
    "rows",
    "healpix_order",
    "healpix_pixel",
    "last_modified",
)


@dataclass(frozen=True)
class ManifestEntry:
    """One file of a version; ``path`` is relative to the version root, ``/``-separated."""

    path: str
    bytes: int
    sha256: str
    md5: str
    rows: int | None
    healpix_order: int | None
    healpix_pixel: int | None
    last_modified: str
    """ISO 8601 UTC, to the second (as HTTP ``Last-Modified`` has it)."""

    def to_json(self, path: str | None = None) -> dict[str, Any]:
        return {
            "path": self.path if path is None else path,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "md5": self.md5,
            "rows": self.rows,
            "healpix_order": self.healpix_order,
            "healpix_pixel": self.healpix_pixel,
            "last_modified": self.last_modified,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ManifestEntry:
        return cls(
            path=str(data["path"]),
            bytes=int(data["bytes"]),
            sha256=str(data["sha256"]),
            md5=str(data["md5"]),
            rows=None if data.get("rows") is None else int(data["rows"]),
            healpix_order=None if data.get("healpix_order") is None else int(data["healpix_order"]),
            healpix_pixel=None if data.get("healpix_pixel") is None else int(data["healpix_pixel"]),
            last_modified=str(data["last_modified"]),
        )


@dataclass(frozen=True)
class Manifest:
    """Every file of one table version; ``stored`` when it was computed at ingest."""

    version: str
    entries: tuple[ManifestEntry, ...]
    stored: bool = False
    _by_path: dict[str, ManifestEntry] = field(init=False, repr=False, compare=False)
    _rendered: dict[tuple[str, str, str], bytes] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_path", {e.path: e for e in self.entries})

    def entry(self, path: str) -> ManifestEntry | None:
        """The entry of the file at ``path`` (relative to the version root), if any."""
        return self._by_path.get(path)

    def under(self, directory: str) -> list[tuple[str, ManifestEntry]]:
        """``(path relative to directory, entry)`` of every file beneath ``directory``."""
        if not directory:
            return [(e.path, e) for e in self.entries]
        prefix = directory.rstrip("/") + "/"
        return [(e.path[len(prefix) :], e) for e in self.entries if e.path.startswith(prefix)]

    def last_modified(self, directory: str) -> float:
        """The newest modification time (epoch seconds) of the files beneath ``directory``."""
        times = [_parse_time(e.last_modified) for _, e in self.under(directory)]
        return max(times, default=0.0)

    def render(self, name: str, table: str, directory: str) -> bytes:
        """The document ``name`` (one of :data:`VIRTUAL_FILES`) of ``directory``
        (rendered once per manifest: listings and downloads ask again and again)."""
        key = (name, table, directory)
        body = self._rendered.get(key)
        if body is None:
            body = self._render(name, table, directory)
            if len(self._rendered) < _RENDERED_MAX:
                self._rendered[key] = body
        return body

    def _render(self, name: str, table: str, directory: str) -> bytes:
        if name == MD5SUM_FILE:
            return "".join(f"{e.md5}  {p}\n" for p, e in self.under(directory)).encode()
        if name == MANIFEST_JSON:
            document = {
                "table": table,
                "version": self.version,
                "directory": directory.rstrip("/") + "/" if directory else "",
                "files": [e.to_json(p) for p, e in self.under(directory)],
            }
            return (json.dumps(document, indent=1) + "\n").encode()
        if name == MANIFEST_CSV:
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(_CSV_FIELDS)
            for p, e in self.under(directory):
                row = e.to_json(p)
                writer.writerow(["" if row[k] is None else row[k] for k in _CSV_FIELDS])
            return out.getvalue().encode()
        if name == MANIFEST_SHA256:
            lines = []
            for other in (MD5SUM_FILE, MANIFEST_JSON, MANIFEST_CSV):
                digest = hashlib.sha256(self.render(other, table, directory)).hexdigest()
                lines.append(f"{digest}  {other}\n")
            return "".join(lines).encode()
        raise CatalogError(f"{name} is not a manifest document")

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "version": self.version,
            "files": [e.to_json() for e in self.entries],
        }


def _parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _format_time(mtime: float) -> str:
    return datetime.fromtimestamp(int(mtime), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _files(root: Path) -> Iterator[str]:
    """Relative paths of the regular files under ``root`` that are served, sorted.

    Hidden names (``.building``…), symbolic links and the stored manifest are left out,
    as the bulk edge leaves them out.
    """
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        base = Path(dirpath)
        for name in filenames:
            if name.startswith(".") or name == MANIFEST_FILE:
                continue
            full = base / name
            if full.is_symlink() or not full.is_file():
                continue
            found.append(full.relative_to(root).as_posix())
    yield from sorted(found)


def _entry(root: Path, path: str) -> ManifestEntry:
    full = root / path
    md5 = hashlib.md5(usedforsecurity=False)
    sha = hashlib.sha256()
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    with open(full, "rb", buffering=0) as fh:
        while True:
            n = fh.readinto(buffer)
            if not n:
                break
            md5.update(view[:n])
            sha.update(view[:n])
        stat = os.fstat(fh.fileno())
    name = path.rsplit("/", 1)[-1]
    rows = None
    if _DATA_FILE.match(name):
        try:
            rows = int(pq.read_metadata(full).num_rows)
        except (OSError, ValueError):
            rows = None  # not a readable Parquet file: listed without rows
    pixel = _PIXEL.search(path)
    return ManifestEntry(
        path=path,
        bytes=stat.st_size,
        sha256=sha.hexdigest(),
        md5=md5.hexdigest(),
        rows=rows,
        healpix_order=int(pixel.group(1)) if pixel else None,
        healpix_pixel=int(pixel.group(2)) if pixel else None,
        last_modified=_format_time(stat.st_mtime),
    )


def compute_manifest(
    root: Path,
    version: str | None = None,
    *,
    workers: int = 2,
    known: Mapping[str, ManifestEntry] | None = None,
) -> Manifest:
    """Hash every served file under ``root`` (``workers`` files at a time).

    ``known`` entries (hashed earlier, e.g. while the ingest wrote the other files) are
    reused for files whose size and modification time are still the ones they record.
    """
    paths: Sequence[str] = list(_files(root))
    known = known or {}

    def one(path: str) -> ManifestEntry:
        entry = known.get(path)
        if entry is not None:
            st = os.stat(root / path)
            if st.st_size == entry.bytes and _format_time(st.st_mtime) == entry.last_modified:
                return entry
        return _entry(root, path)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        entries = tuple(pool.map(one, paths))
    return Manifest(version or root.name, entries)


def write_manifest(
    root: Path,
    version: str | None = None,
    *,
    workers: int = 2,
    known: Mapping[str, ManifestEntry] | None = None,
) -> Manifest:
    """Compute the manifest of the version being built at ``root`` and store it there."""
    manifest = compute_manifest(root, version, workers=workers, known=known)
    text = json.dumps(manifest.to_json(), indent=None, separators=(",", ":")) + "\n"
    (root / MANIFEST_FILE).write_text(text)
    return Manifest(manifest.version, manifest.entries, stored=True)


class ManifestHasher:
    """Hashes the files of a build in a background thread as they are written.

    The ingest calls :meth:`add` for each partition file once it is complete (and never
    changed again); :meth:`finish` hashes whatever was not added (properties, metadata
    files) and stores the manifest.  Hashing thus overlaps the writing of the other
    partitions instead of following it.  Leaving the ``with`` block early (an error)
    drops the pending work.
    """

    def __init__(self, root: Path, workers: int = 1) -> None:
        self.root = root
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="manifest")
        self._futures: dict[str, Future[ManifestEntry]] = {}

    def add(self, path: Path) -> None:
        """Hash ``path`` (a finished file under the root) in the background."""
        rel = path.relative_to(self.root).as_posix()
        self._futures[rel] = self._pool.submit(_entry, self.root, rel)

    def finish(self, version: str, *, workers: int = 2) -> Manifest:
        """Wait for the background hashes, hash the rest, and store the manifest."""
        known = {rel: future.result() for rel, future in self._futures.items()}
        return write_manifest(self.root, version, workers=workers, known=known)

    def __enter__(self) -> ManifestHasher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _stamp(root: Path) -> tuple[str, int, int]:
    st = os.stat(root)
    return (str(root), st.st_ino, st.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _load_stored(key: tuple[str, int, int]) -> Manifest | None:
    path = Path(key[0]) / MANIFEST_FILE
    try:
        data = json.loads(path.read_text())
        entries = tuple(ManifestEntry.from_json(e) for e in data["files"])
        return Manifest(str(data["version"]), entries, stored=True)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable: treated as absent (computed on demand instead)


@functools.lru_cache(maxsize=16)
def _computed(key: tuple[str, int, int]) -> Manifest:
    return compute_manifest(Path(key[0]))


def stored_manifest(root: Path) -> Manifest | None:
    """The manifest stored at ingest in the version directory ``root``, or None."""
    return _load_stored(_stamp(root))


def manifest_for(root: Path) -> Manifest:
    """The manifest of ``root``: the stored one, or computed once and cached."""
    key = _stamp(root)
    return _load_stored(key) or _computed(key)


def clear_cache() -> None:
    """Forget cached manifests (tests)."""
    _load_stored.cache_clear()
    _computed.cache_clear()
