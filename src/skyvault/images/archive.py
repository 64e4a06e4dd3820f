"""Finding a stored image by its ObsCore id for the web edge (DataLink, SODA, files, previews).

An image is named by its ``obs_publisher_did`` (``ivo://AUTHORITY/COLLECTION?OBS_ID``) or by
its collection and ``obs_id``.  :class:`ImageArchive` reads a collection's ``obscore`` table
once per published version (the columns needed to serve an image: its file, HDU and
spectral/time/polarisation extent) and answers look-ups from memory.

Access is the caller's: :meth:`ImageArchive.find` and :meth:`ImageArchive.by_obs_id` take
the set of tables the caller may read (``SCHEMA.TABLE``) and treat a collection whose
``obscore`` table is not in it exactly like one that does not exist (``None``), so hidden
reads like missing.  No web imports.
"""

from __future__ import annotations

import os
import tempfile
import threading
import urllib.parse
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

import pyarrow as pa
import pyarrow.parquet as pq
from astropy.io import fits

from skyvault.catalog.layout import image_store
from skyvault.images.cutout import ImageExtent, open_image, write_cutout
from skyvault.images.ingest import OBSCORE_TABLE
from skyvault.images.soda import CutoutSpec

__all__ = ["ImageArchive", "StoredImage", "chunks", "collection_of", "spool_cutout"]

#: A cutout up to this size is kept in memory, a larger one in an unlinked temporary file.
SPOOL_IN_MEMORY = 8 << 20

_COLUMNS = (
    "obs_publisher_did",
    "obs_id",
    "image_file",
    "image_hdu",
    "em_min",
    "em_max",
    "t_min",
    "t_max",
    "pol_states",
)


@dataclass(frozen=True)
class StoredImage:
    """One image HDU of the archive and where its file is."""

    did: str
    collection: str
    obs_id: str
    path: Path
    hdu: int
    extent: ImageExtent

    @property
    def file_name(self) -> str:
        """The stored file's name (what a download is saved as)."""
        return self.path.name

    def file_size(self) -> int:
        """Bytes of the stored file."""
        return self.path.stat().st_size

    def header_text(self) -> str:
        """The image's FITS header as text, one 80-character card a line: for an image in an
        extension, the primary header it inherits first, each header ending with ``END``
        (the DataLink ``#detached-header``, skyvault's header service)."""
        with open_image(self.path, self.obs_id, memmap=False) as hdul:
            headers: list[fits.Header] = []
            if self.hdu != 0:
                headers.append(hdul[0].header)
            headers.append(hdul[self.hdu].header)
            return "".join(
                h.tostring(sep="\n", endcard=True, padding=False) + "\n" for h in headers
            )


def collection_of(did: str) -> str | None:
    """The collection an ``ivo://AUTHORITY/COLLECTION?OBS_ID`` id names, or None."""
    try:
        parts = urllib.parse.urlsplit(did.strip())
    except ValueError:
        return None
    if parts.scheme.lower() != "ivo" or not parts.query:
        return None
    name = parts.path.strip("/")
    return name or None


@dataclass(frozen=True)
class _Collection:
    version: str
    by_did: dict[str, StoredImage]
    by_obs_id: dict[str, StoredImage]


class ImageArchive:
    """The images of every collection under ``data_dir``, looked up by id (thread-safe)."""

    def __init__(self, data_dir: Path) -> None:
        self._data_dir = data_dir
        self._lock = threading.Lock()
        self._collections: dict[str, _Collection] = {}

    def _collection(self, name: str, visible: Collection[str]) -> _Collection | None:
        if f"{name}.{OBSCORE_TABLE}" not in visible:
            return None
        table_dir = self._data_dir / name / OBSCORE_TABLE
        try:
            version = os.path.realpath(table_dir, strict=True)
        except OSError:
            return None
        with self._lock:
            cached = self._collections.get(name)
        if cached is not None and cached.version == version:
            return cached
        loaded = self._load(name, Path(version))
        with self._lock:
            self._collections[name] = loaded
        return loaded

    def _load(self, name: str, root: Path) -> _Collection:
        files = sorted((root / "dataset").glob("Norder=*/Dir=*/Npix=*.parquet"))
        tables = [pq.ParquetFile(f).read(columns=list(_COLUMNS)) for f in files]
        rows = pa.concat_tables(tables).to_pylist() if tables else []
        store = image_store(self._data_dir, name)
        by_did: dict[str, StoredImage] = {}
        by_obs_id: dict[str, StoredImage] = {}
        for row in rows:
            image = StoredImage(
                did=str(row["obs_publisher_did"]),
                collection=name,
                obs_id=str(row["obs_id"]),
                path=store / str(row["image_file"]),
                hdu=int(row["image_hdu"] or 0),
                extent=ImageExtent.from_obscore(row),
            )
            by_did[image.did] = image
            by_obs_id[image.obs_id] = image
        return _Collection(str(root), by_did, by_obs_id)

    def find(self, did: str, visible: Collection[str]) -> StoredImage | None:
        """The image whose ``obs_publisher_did`` is ``did``, if the caller may see it."""
        name = collection_of(did)
        if name is None:
            return None
        found = self._collection(name, visible)
        return None if found is None else found.by_did.get(did.strip())

    def find_many(
        self, dids: Iterable[str], visible: Collection[str]
    ) -> list[tuple[str, StoredImage | None]]:
        """:meth:`find` for each id, in order."""
        return [(did, self.find(did, visible)) for did in dids]

    def by_obs_id(
        self, collection: str, obs_id: str, visible: Collection[str]
    ) -> StoredImage | None:
        """The image ``obs_id`` of ``collection``, if the caller may see it."""
        found = self._collection(collection, visible)
        return None if found is None else found.by_obs_id.get(obs_id)


def spool_cutout(
    image: StoredImage, spec: CutoutSpec, spool_dir: Path | None
) -> tuple[BinaryIO, int]:
    """The FITS cutout of ``image`` by ``spec`` (SODA's one request) and its size, rewound,
    in a spooled file: in memory up to :data:`SPOOL_IN_MEMORY`, else an unlinked temporary
    file under ``spool_dir`` (the system's when None).  The caller closes it; on failure it
    is closed here.  What ``{sync}`` sends and an ``{async}`` job stores."""
    spool = tempfile.SpooledTemporaryFile(  # noqa: SIM115 - handed to the caller
        SPOOL_IN_MEMORY, dir=None if spool_dir is None else str(spool_dir)
    )
    out = cast(BinaryIO, spool)
    try:
        written = write_cutout(
            image.path,
            spec.region,
            out,
            image=spec.id,
            extent=image.extent,
            band=spec.band,
            time=spec.time,
            pol=spec.pol,
            hdus=(image.hdu,),
        )
        out.seek(0)
    except BaseException:
        spool.close()
        raise
    return out, written.size


def chunks(stream: BinaryIO, size: int = 1 << 20) -> Iterator[bytes]:
    """``stream`` read to its end, ``size`` bytes at a time."""
    while chunk := stream.read(size):
        yield chunk
