"""``skyvault images ingest``: FITS images in, a collection's ObsCore and header tables out.

A collection ``C`` is a schema of the data root holding two ordinary tables and the files:

``C.obscore``
    one row per image HDU: the ObsCore 1.1 record (:mod:`.obscore`) derived from its header
    and WCS, plus ``band``, ``image_file`` and ``image_hdu``; a HATS catalogue on
    ``s_ra``/``s_dec`` (so a cone or region search prunes to the partitions it touches);
``C.headers``
    one row per header card of each image (the image's own HDU and, for an extension, the
    primary header it inherits): ``obs_publisher_did``, ``obs_id``, ``hdu``, ``card_index``
    (its position in the header, from 0), ``keyword``, ``card_value`` (strings unquoted,
    numbers as written; not ``value``, a reserved word of ADQL), ``comment``; plain Parquet;
``DIR/C/.skyvault/images/<batch>/<file>``
    the images themselves, copied in: the archive keeps its own copy, named in
    ``image_file`` relative to that directory (never a server path).

Each input is read once: its headers are parsed from the bytes read and the same bytes are
written into the batch directory by a copier thread (hard-linked instead with ``--link``).
Both tables are written from memory as the catalogue ingest writes such tables (ObsCore by
:func:`skyvault.catalog.ingest.write_hats`, headers as plain Parquet) into build directories
held open by :func:`skyvault.catalog.layout.building`, so neither
is visible until both are complete; they are then published one after the other (headers,
then ObsCore) and the files of images no version refers to any more are deleted.  A
failure, Ctrl-C or ``kill -9`` at any point before the ObsCore publish leaves the
collection as it was (new files sit unreferenced in a batch directory that the next
ingest deletes).  Only the instant between the two publishes leaves the headers one ingest
ahead; each table records its batch, and the next ingest sees the difference and rebuilds
the headers from the stored files.

Re-ingesting a file replaces the rows of its images (an image is identified by
``obs_id``: the file name without its FITS suffixes, plus ``-HDU`` when the file holds
several images).  Files that are not FITS, or have no image HDU with a usable celestial
WCS, are skipped with the reason; when nothing is left to ingest, nothing changes and
:class:`~skyvault.errors.IngestError` says why.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime
import errno
import gc
import math
import os
import re
import shutil
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from skyvault.bulk.manifest import write_manifest
from skyvault.catalog.ingest import (
    HEALPIX_COLUMN,
    IngestOptions,
    ProgressSink,
    expand_inputs,
    write_hats,
)
from skyvault.catalog.layout import (
    TableName,
    building,
    image_store,
    schema_lock_file,
    table_versions,
)
from skyvault.catalog.metadata import (
    ColumnMeta,
    TableMeta,
    fov_region_radius,
    merge_columns,
    principal_defaults,
)
from skyvault.catalog.readers import InputFile
from skyvault.errors import IngestError, UsageError
from skyvault.images.fitsheader import (
    Card,
    HduHeader,
    NoCelestialWcs,
    NotFits,
    footprint,
    read_file,
    read_headers,
)
from skyvault.images.obscore import (
    COLUMNS,
    EXTENSION_COLUMNS,
    EXTRA_COLUMNS,
    LSST_BANDS,
    BandTable,
    ImageFacts,
    obscore_record,
    obscore_schema,
    records_table,
)
from skyvault.interprocess import file_lock
from skyvault.sky.stcs import REGION_XTYPE
from skyvault.storage_faults import Fault, storage_errors

__all__ = [
    "HEADERS_TABLE",
    "OBSCORE_TABLE",
    "ImageIngestOptions",
    "ImageIngestResult",
    "Skipped",
    "headers_schema",
    "ingest_images",
    "obs_id_of",
]

OBSCORE_TABLE = "obscore"
HEADERS_TABLE = "headers"
#: An IVOA registry authority (IVOA Identifiers 2.0: letters, digits and ``-._~`` ...).
_AUTHORITY = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-._~]{2,}")
_FITS_SUFFIXES = (".fz", ".gz", ".bz2", ".fits", ".fit", ".fts")
#: Rows per Parquet row group of ``C.obscore``: an image table is narrow in rows but wide in
#: columns (~50) and a query (SIA, ObsCore TAP) selects a few images, so the small scan of a
#: region query should decode a few thousand rows, not the catalogue default of 32,768
#: (100k images: SIA p50 61 -> 31 ms, benchmarks/results/sia.md).
OBSCORE_ROW_GROUP_ROWS = 2_048
_DEFAULT_ROW_GROUP_ROWS = IngestOptions().row_group_rows


@dataclass(frozen=True)
class ImageIngestOptions:
    """How records are derived.

    Parameters
    ----------
    bands
        Band name -> (em_min, em_max) in metres (default: the LSST filters).
    calib_level
        ObsCore calibration level of the images (2: calibrated, 3: coadds...).
    subtype
        ``dataproduct_subtype`` (e.g. ``lsst.calexp``).
    authority
        The IVOA authority of ``obs_publisher_did``: ``ivo://AUTHORITY/COLLECTION?OBS_ID``.
    o_ucd
        UCD of the pixel values.
    replace
        Replace the whole collection with these images (``skyvault demo`` does) instead of
        adding them to it.
    link
        Store hard links to the inputs instead of copies where the data root is on their
        file system (copies elsewhere): no new file per image, but the archive's file *is*
        the input, so the input must never be changed in place afterwards (replacing it by
        a new file, as most tools write, is safe).
    """

    bands: BandTable = dataclasses.field(default_factory=lambda: dict(LSST_BANDS))
    calib_level: int = 2
    subtype: str | None = None
    authority: str = "skyvault"
    o_ucd: str = "phot.count"
    description: str | None = None
    replace: bool = False
    link: bool = False


@dataclass(frozen=True)
class Skipped:
    """An input left out, and why."""

    path: str
    reason: str


@dataclass
class ImageIngestResult:
    """What an ingest did."""

    collection: str
    files: int
    images: int
    cards: int
    total_images: int
    skipped: list[Skipped] = field(default_factory=list)


def headers_schema() -> pa.Schema:
    return pa.schema(
        [
            pa.field("obs_publisher_did", pa.string(), nullable=False),
            pa.field("obs_id", pa.string(), nullable=False),
            pa.field("hdu", pa.int32(), nullable=False),
            pa.field("card_index", pa.int32(), nullable=False),
            pa.field("keyword", pa.string(), nullable=False),
            pa.field("card_value", pa.string()),
            pa.field("comment", pa.string()),
        ]
    )


_HEADER_COLUMNS: dict[str, dict[str, Any]] = {
    "obs_publisher_did": {
        "ucd": "meta.ref.ivoid",
        "description": "The image (obs_publisher_did of the collection's ObsCore table)",
        "principal": True,
    },
    "obs_id": {"ucd": "meta.id", "description": "The image's obs_id", "principal": True},
    "hdu": {
        "ucd": "meta.number",
        "description": "HDU of the card (0 = primary; an extension image has its primary's "
        "cards too)",
        "principal": True,
    },
    "card_index": {
        "ucd": "meta.number",
        "description": "Position of the card in its header, from 0",
        "principal": True,
    },
    "keyword": {"ucd": "meta.id", "description": "Keyword of the card", "principal": True},
    "card_value": {
        "description": "Value of the card as written (strings unquoted; NULL when "
        "undefined; the text of COMMENT/HISTORY cards)",
        "principal": True,
    },
    "comment": {"ucd": "meta.note", "description": "Comment of the card", "principal": True},
}


class _Silent:
    def stage(self, label: str, total: int | None) -> None:
        pass

    def advance(self, rows: int) -> None:
        pass


def obs_id_of(path: Path, hdu: int, several: bool) -> str:
    """The ``obs_id`` of an image: the file name without FITS suffixes (``-HDU`` added when
    the file holds several images)."""
    name = path.name
    while True:
        lowered = name.lower()
        suffix = next((s for s in _FITS_SUFFIXES if lowered.endswith(s)), None)
        if suffix is None or len(name) == len(suffix):
            break
        name = name[: -len(suffix)]
    return f"{name}-{hdu}" if several else name


def publisher_did(authority: str, collection: str, obs_id: str) -> str:
    """``ivo://AUTHORITY/COLLECTION?OBS_ID`` (the id percent-encoded where IVOIDs need it)."""
    return f"ivo://{authority}/{collection}?{urllib.parse.quote(obs_id, safe='-._~:@!$()*+,;=')}"


@dataclass
class _Image:
    record: dict[str, Any]
    cards: list[tuple[int, list[Card]]]


#: Files smaller than this are read whole once, for their headers and for their copy.
_READ_WHOLE = 8 << 20


#: Why a hard link may be refused where a copy works: another file system, a file system
#: without links, a file with too many links, a protected source (fs.protected_hardlinks).
_NO_LINK = frozenset(
    (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EACCES)
)


class _Copier:
    """Writes the archive's copies of the ingested files into one batch directory, on a
    thread of its own, while the next files are read and described.

    A file's creation is mostly kernel time (an inode, a directory entry: 0.1-0.25 ms on
    ext4), during which the thread holds no GIL.  Files read whole are handed over as their
    bytes (never read twice), bigger ones by path (copied with ``shutil.copyfile``: the
    kernel's ``sendfile``).  At most ``max_pending`` bytes wait at a time.  A failed write
    is raised in the ingesting thread at the next :meth:`put` or at :meth:`finish`.
    """

    def __init__(self, directory: Path, max_pending: int = 64 << 20, link: bool = False) -> None:
        self._directory = directory
        self._link = link
        self._fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        self._max_pending = max_pending
        self._pending = 0
        self._items: collections.deque[tuple[str, bytes | None, Path | None]] = collections.deque()
        self._closed = False
        self._error: BaseException | None = None
        self._lock = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="skyvault-image-copy", daemon=True)
        self._thread.start()

    def put(self, name: str, content: bytes | None, source: Path) -> None:
        """Store ``content`` (else a copy of ``source``) as ``name`` in the directory; with
        ``link``, a hard link to ``source`` where the file system allows one."""
        if self._link:
            try:
                os.link(source, self._directory / name)
            except OSError as exc:
                if exc.errno not in _NO_LINK:
                    raise
                self._link = False  # another file system, or no links there: copy
            else:
                return
        size = len(content) if content is not None else 0
        with self._lock:
            while self._pending and self._pending + size > self._max_pending and not self._error:
                self._lock.wait()
            if self._error is not None:
                raise self._error
            self._items.append((name, content, None if content is not None else source))
            self._pending += size
            self._lock.notify_all()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._items and not self._closed:
                    self._lock.wait()
                if not self._items:
                    return
                name, content, source = self._items.popleft()
            try:
                if content is not None:
                    self._write(name, content)
                else:
                    assert source is not None
                    shutil.copyfile(source, self._directory / name)
            except BaseException as exc:  # handed to the ingesting thread
                with self._lock:
                    self._error = exc
                    self._items.clear()
                    self._pending = 0
                    self._lock.notify_all()
                return
            with self._lock:
                self._pending -= len(content) if content is not None else 0
                self._lock.notify_all()

    def _write(self, name: str, content: bytes) -> None:
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666, dir_fd=self._fd)
            try:
                view = memoryview(content)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
        except OSError as exc:  # named by its full path (a full disk is told as such)
            raise OSError(exc.errno, exc.strerror, str(self._directory / name)) from exc

    def finish(self) -> None:
        """Wait for every file to be written; raise the first failure."""
        self._stop()
        if self._error is not None:
            raise self._error

    def abandon(self) -> None:
        """Stop (what is written stays, unreferenced, for the next ingest to delete)."""
        with self._lock:
            self._items.clear()
            self._pending = 0
        self._stop()

    def _stop(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self._thread.join()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _describe(
    path: Path,
    stored_name: str,
    collection: str,
    opts: ImageIngestOptions,
    store: Path | _Copier | None = None,
) -> tuple[list[_Image], str | None]:
    """The images of one file, or the reason it has none usable; with ``store``, a file
    that has images is copied to ``store / stored_name`` (or handed to the copier, which
    stores it under its base name)."""
    try:
        hdus, content = read_file(path, _READ_WHOLE if store is not None else 0)
    except NotFits as exc:
        return [], f"not a FITS file ({exc})"
    except OSError as exc:
        return [], f"cannot be read ({exc.strerror or exc})"
    images = [h for h in hdus if h.is_image]
    if not images:
        return [], "has no image HDU (a primary or IMAGE extension with 2 or more axes)"
    size = len(content) if content is not None else path.stat().st_size
    primary = hdus[0]
    several = len(images) > 1
    out: list[_Image] = []
    reasons: list[str] = []
    for hdu in images:
        try:
            fp = footprint(hdu)
        except NoCelestialWcs as exc:
            reasons.append(f"HDU {hdu.index}: {exc}")
            continue
        obs_id = obs_id_of(path, hdu.index, several)
        facts = ImageFacts(
            collection=collection,
            obs_id=obs_id,
            publisher_did=publisher_did(opts.authority, collection, obs_id),
            image_file=stored_name,
            hdu=hdu.index,
            file_bytes=size,
            corners=fp.corners,
            centre=fp.centre,
            pixel_scale=fp.pixel_scale,
            shape=fp.shape,
            naxis=len(hdu.axes),
        )
        record = obscore_record(
            facts,
            hdu.values,
            primary.values if hdu.index else None,
            bands=opts.bands,
            calib_level=opts.calib_level,
            subtype=opts.subtype,
            o_ucd=opts.o_ucd,
        )
        cards = [(hdu.index, hdu.cards)]
        if hdu.index:
            cards.insert(0, (0, primary.cards))
        out.append(_Image(record, cards))
    if not out:
        return [], "no usable celestial WCS (" + "; ".join(reasons) + ")"
    if isinstance(store, _Copier):
        store.put(path.name, content, path)
    elif store is not None:
        if content is not None:
            (store / stored_name).write_bytes(content)
        else:
            shutil.copyfile(path, store / stored_name)
    return out, None


def _header_rows(images: Sequence[_Image]) -> pa.Table:
    did: list[str] = []
    obs: list[str] = []
    hdus: list[int] = []
    index: list[int] = []
    keywords: list[str] = []
    values: list[str | None] = []
    comments: list[str | None] = []
    for image in images:
        d, o = image.record["obs_publisher_did"], image.record["obs_id"]
        for hdu, cards in image.cards:
            n = len(cards)
            did.extend([d] * n)
            obs.extend([o] * n)
            hdus.extend([hdu] * n)
            index.extend(range(n))
            if n:
                k, v, c = zip(*cards, strict=True)
                keywords.extend(k)
                values.extend(v)
                comments.extend(c)
    return pa.Table.from_arrays(
        [
            pa.array(did, pa.string()),
            pa.array(obs, pa.string()),
            pa.array(hdus, pa.int32()),
            pa.array(index, pa.int32()),
            pa.array(keywords, pa.string()),
            pa.array(values, pa.string()),
            pa.array(comments, pa.string()),
        ],
        schema=headers_schema(),
    )


def _batch_id() -> str:
    now = time.time_ns()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now // 1_000_000_000))
    return f"{stamp}.{now % 1_000_000_000:09d}-{uuid.uuid4().hex[:6]}"


def _read_table(root: Path, schema: pa.Schema) -> pa.Table:
    """Every row of a published table (HATS or plain), with ``schema``'s columns."""
    files = sorted((root / "dataset").glob("Norder=*/Dir=*/Npix=*.parquet")) + sorted(
        (root / "dataset").glob("part-*.parquet")
    )
    parts = [pq.ParquetFile(f).read(columns=schema.names) for f in files]
    if not parts:
        return schema.empty_table()
    return pa.concat_tables([p.cast(schema) for p in parts])


def _batch_of(meta: TableMeta) -> str | None:
    for source in meta.sources:
        stem = source.removesuffix(".parquet")
        for prefix in (f"{OBSCORE_TABLE}-", f"{HEADERS_TABLE}-"):
            if stem.startswith(prefix):
                return stem[len(prefix) :]
    return None


@contextlib.contextmanager
def _collection_lock(data_dir: Path, collection: str) -> Iterator[None]:
    with file_lock(schema_lock_file(data_dir, collection, "images")) as taken:
        if not taken:
            raise IngestError(
                f"another image ingest into {collection} is running",
                hint="wait for it to finish; the collection is replaced atomically when it does",
            )
        yield


def ingest_images(
    inputs: Sequence[str | Path],
    collection: str,
    data_dir: Path,
    *,
    options: ImageIngestOptions | None = None,
    progress: ProgressSink | None = None,
) -> ImageIngestResult:
    """Ingest FITS images into ``collection`` under ``data_dir`` (see the module docstring).

    Raises
    ------
    UsageError
        For a bad collection name or two inputs of one name.
    IngestError
        When no input holds a usable image (nothing is changed then).
    """
    # The images are freed (by reference counting) when _ingest_images returns, before
    # the cycle collector is back: its first run would otherwise walk them all.
    with (
        storage_errors(
            f"cannot ingest images into {collection}",
            f"the data directory {data_dir}",
            remedy=_STORAGE_REMEDIES,
            under=data_dir,
        ),
        _no_cyclic_gc(),
    ):
        return _ingest_images(inputs, collection, data_dir, options, progress)


_STORAGE_REMEDIES = {
    Fault.READ_ONLY: "the images and their tables are stored there: remount it read-write, "
    "or pass --data a writable directory",
    Fault.NO_PERMISSION: "ingest as a user who may write there, or pass --data a writable "
    "directory",
    Fault.FULL: "free space there and ingest again; the collection is as it was",
}


def _ingest_images(
    inputs: Sequence[str | Path],
    collection: str,
    data_dir: Path,
    options: ImageIngestOptions | None,
    progress: ProgressSink | None,
) -> ImageIngestResult:
    opts = options or ImageIngestOptions()
    sink: ProgressSink = progress or _Silent()
    TableName.parse(f"{collection}.{OBSCORE_TABLE}")  # the collection must be an identifier
    if not 0 <= opts.calib_level <= 4:
        raise UsageError("calib_level must be 0, 1, 2, 3 or 4 (ObsCore 1.1)")
    if not _AUTHORITY.fullmatch(opts.authority):
        raise UsageError(
            f"{opts.authority!r} is not an IVOA authority",
            hint="at least three letters, digits or -._~ starting with a letter or digit, "
            "e.g. org.example (ids are ivo://AUTHORITY/COLLECTION?OBS_ID)",
        )
    paths = expand_inputs(inputs)
    names: dict[str, Path] = {}
    for path in paths:
        if path.name in names and names[path.name].resolve() != path.resolve():
            raise UsageError(
                f"two inputs are named {path.name}: {names[path.name]} and {path}",
                hint="an image is identified by its file name; rename one, or ingest them "
                "into different collections",
            )
        names[path.name] = path
    paths = list(names.values())

    schema_dir = data_dir / collection
    schema_dir.mkdir(parents=True, exist_ok=True)
    with _collection_lock(data_dir, collection):
        batch = _batch_id()
        store = image_store(data_dir, collection)
        # Files with images are copied as they are read, into a batch directory that no
        # published row names yet (an interrupted ingest leaves it to the next one's clean-up).
        (store / batch).mkdir(parents=True)
        with _no_cyclic_gc():
            images, skipped, files = _read_all(paths, store / batch, collection, opts, sink)
            if not images:
                shutil.rmtree(store / batch, ignore_errors=True)
                raise IngestError(
                    f"nothing to ingest into {collection}: "
                    + "; ".join(f"{s.path}: {s.reason}" for s in skipped[:5])
                    + (f" (and {len(skipped) - 5} more)" if len(skipped) > 5 else ""),
                    hint="images need a primary or IMAGE HDU with a celestial WCS (CTYPE RA/DEC)",
                )
            try:
                return _publish(data_dir, collection, batch, images, files, skipped, opts, sink)
            finally:
                # Freed here, by reference counting, before the cycle collector is back
                # (else its first run would walk them all).
                images.clear()


def _read_all(
    paths: Sequence[Path],
    directory: Path,
    collection: str,
    opts: ImageIngestOptions,
    sink: ProgressSink,
) -> tuple[list[_Image], list[Skipped], list[Path]]:
    """Describe every input; copy those with images into ``directory`` (a batch's)."""
    sink.stage(f"read and store {len(paths)} files", len(paths))
    images: list[_Image] = []
    skipped: list[Skipped] = []
    files: list[Path] = []
    copier = _Copier(directory, link=opts.link)
    try:
        for path in paths:
            found, reason = _describe(
                path, f"{directory.name}/{path.name}", collection, opts, copier
            )
            if reason is not None:
                skipped.append(Skipped(str(path), reason))
            else:
                images.extend(found)
                files.append(path)
            sink.advance(1)
        copier.finish()
    except BaseException:
        copier.abandon()
        raise
    return images, skipped, files


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Python's cycle collector paused: an ingest holds a few objects per header card
    (300,000 for 5,000 calexps) and makes no reference cycles, yet each full collection
    walks them all (8 % of the ingest's time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _publish(
    data_dir: Path,
    collection: str,
    batch: str,
    images: list[_Image],
    files: list[Path],
    skipped: list[Skipped],
    opts: ImageIngestOptions,
    sink: ProgressSink,
) -> ImageIngestResult:
    schema_dir = data_dir / collection
    store = image_store(data_dir, collection)
    # In obs_id order, the new header rows are built sorted (obs_id, hdu, card_index): a
    # first ingest, or a replace, need not sort 300,000 rows again.
    images = sorted(images, key=lambda i: str(i.record["obs_id"]))
    new_obscore = records_table([i.record for i in images])
    new_headers = _header_rows(images)
    replaced = pa.array(sorted({i.record["obs_id"] for i in images}), pa.string())

    if opts.replace:
        old_obscore, old_headers = obscore_schema().empty_table(), headers_schema().empty_table()
    else:
        old_obscore, old_headers = _current(schema_dir, store, opts)
    keep = pc.invert(pc.is_in(old_obscore.column("obs_id"), value_set=replaced))
    old_obscore = old_obscore.filter(keep)
    old_headers = old_headers.filter(
        pc.invert(pc.is_in(old_headers.column("obs_id"), value_set=replaced))
    )
    obscore = pa.concat_tables([old_obscore, new_obscore]).sort_by("obs_id")
    if old_headers.num_rows:
        headers = pa.concat_tables([old_headers, new_headers]).sort_by(
            [("obs_id", "ascending"), ("hdu", "ascending"), ("card_index", "ascending")]
        )
    else:
        headers = new_headers

    sink.stage(f"write {collection} tables", None)
    with (
        building(data_dir, TableName(collection, OBSCORE_TABLE)) as ob,
        building(data_dir, TableName(collection, HEADERS_TABLE)) as hb,
    ):
        _write(ob.path, ob.version, collection, OBSCORE_TABLE, batch, obscore, opts)
        _write(hb.path, hb.version, collection, HEADERS_TABLE, batch, headers, opts)
        # Leaving the block publishes the headers, then the ObsCore table.
    _collect_garbage(data_dir, collection, store, keep_batch=batch)
    return ImageIngestResult(
        collection=collection,
        files=len(files),
        images=new_obscore.num_rows,
        cards=new_headers.num_rows,
        total_images=obscore.num_rows,
        skipped=skipped,
    )


def _current(schema_dir: Path, store: Path, opts: ImageIngestOptions) -> tuple[pa.Table, pa.Table]:
    """The collection's rows now; the headers rebuilt from the stored files when they are not
    of the ObsCore table's batch (a crash between the two publishes)."""
    obscore_dir = schema_dir / OBSCORE_TABLE
    headers_dir = schema_dir / HEADERS_TABLE
    if not obscore_dir.exists():
        return obscore_schema().empty_table(), headers_schema().empty_table()
    obscore = _read_table(obscore_dir.resolve(), obscore_schema())
    batch = _batch_of(TableMeta.read(obscore_dir.resolve()))
    if headers_dir.exists() and _batch_of(TableMeta.read(headers_dir.resolve())) == batch:
        return obscore, _read_table(headers_dir.resolve(), headers_schema())
    return obscore, _rebuild_headers(obscore, store)


def _rebuild_headers(obscore: pa.Table, store: Path) -> pa.Table:
    images: list[_Image] = []
    cache: dict[str, list[HduHeader]] = {}
    for row in obscore.select(
        ["obs_publisher_did", "obs_id", "image_file", "image_hdu"]
    ).to_pylist():
        name = row["image_file"]
        if name not in cache:
            cache[name] = read_headers(store / name)
        hdus = cache[name]
        hdu = int(row["image_hdu"])
        cards = [(hdu, hdus[hdu].cards)]
        if hdu:
            cards.insert(0, (0, hdus[0].cards))
        images.append(_Image(row, cards))
    return _header_rows(images)


class _RowsInput(InputFile):
    """Rows held in memory as the catalogue partitioner's input (no Parquet round trip)."""

    format = "parquet"

    def __init__(self, rows: pa.Table, name: str) -> None:
        super().__init__(Path(name))
        self.rows = rows
        self.schema = rows.schema
        self.num_rows = rows.num_rows

    def batches(self, columns: Sequence[str] | None, batch_rows: int) -> Iterator[pa.RecordBatch]:
        selected = self.rows.select(list(columns)) if columns is not None else self.rows
        yield from selected.to_batches(max_chunksize=batch_rows)


def _write(
    root: Path,
    version: str,
    collection: str,
    table: str,
    batch: str,
    rows: pa.Table,
    opts: ImageIngestOptions,
) -> None:
    """Write ``rows`` as the version being built at ``root``: ObsCore as a HATS catalogue
    by the catalogue ingest's own partitioner, the headers as plain Parquet as the
    catalogue ingest writes a table without positions; then its metadata and manifest."""
    positional = table == OBSCORE_TABLE
    options = _table_options(collection, table, opts)
    source = f"{table}-{batch}.parquet"
    if positional:
        nrows, partitions = write_hats(
            [_RowsInput(rows, source)],
            root,
            TableName(collection, table),
            "s_ra",
            "s_dec",
            options,
        )
        stored = pa.schema([pa.field(HEALPIX_COLUMN, pa.int64(), nullable=False), *rows.schema])
    else:
        dataset = root / "dataset"
        dataset.mkdir()
        with pq.ParquetWriter(
            dataset / "part-00000.parquet",
            rows.schema,
            compression=options.compression,
            use_dictionary=[f.name for f in rows.schema if pa.types.is_string(f.type)],
            write_page_index=True,
        ) as writer:
            writer.write_table(rows, row_group_size=options.row_group_rows)
        pq.write_metadata(rows.schema, dataset / "_common_metadata")
        nrows, partitions, stored = rows.num_rows, 0, rows.schema
    meta = table_meta(collection, table, stored, options, nrows, partitions, source)
    if positional:
        meta = dataclasses.replace(meta, region_radius=region_radius(rows))
    meta.write(root)
    write_manifest(root, version, workers=1)


def _table_options(collection: str, table: str, opts: ImageIngestOptions) -> IngestOptions:
    positional = table == OBSCORE_TABLE
    if positional:
        description = opts.description or f"ObsCore 1.1 records of the images of {collection}"
    else:
        description = f"Every header card of the images of {collection} (the header service)"
    return IngestOptions(
        primary_key="obs_publisher_did" if positional else None,
        description=description,
        workers=1,
        margin_arcsec=5.0,
        row_group_rows=OBSCORE_ROW_GROUP_ROWS if positional else _DEFAULT_ROW_GROUP_ROWS,
    )


def table_meta(
    collection: str,
    table: str,
    stored: pa.Schema,
    options: IngestOptions,
    nrows: int,
    partitions: int,
    source: str,
) -> TableMeta:
    """The metadata of a collection's table: what the catalogue ingest records for such
    rows (a test holds the two equal), with the ObsCore and header columns described."""
    positional = table == OBSCORE_TABLE
    ra, dec = ("s_ra", "s_dec") if positional else (None, None)
    healpix = {
        HEALPIX_COLUMN: {
            "description": "HEALPix index (NESTED scheme, order 29) of the position",
            "ucd": "pos.healpix",
        }
    }
    columns = principal_defaults(merge_columns(stored, healpix), ra, dec, options.primary_key)
    described = {c.name: c for c in (*COLUMNS, *EXTENSION_COLUMNS, *EXTRA_COLUMNS)}
    out: list[ColumnMeta] = []
    for base in columns:
        column = base
        if column.name in (HEALPIX_COLUMN, options.primary_key):
            column = column.updated(indexed=True)
        if positional and column.name in (ra, dec):
            ucd = "pos.eq.ra;meta.main" if column.name == ra else "pos.eq.dec;meta.main"
            column = column.updated(unit=column.unit or "deg", ucd=column.ucd or ucd)
        if positional and column.name in described:
            c = described[column.name]
            column = column.updated(
                unit=c.unit, ucd=c.ucd, utype=c.utype, description=c.description
            )
            if c.name == "s_region":  # STC-S text that CONTAINS/INTERSECTS read as a region
                column = column.updated(xtype=REGION_XTYPE)
            column = dataclasses.replace(column, principal=c.principal, std=c.utype is not None)
        elif not positional and column.name in _HEADER_COLUMNS:
            column = column.updated(**_HEADER_COLUMNS[column.name])
        out.append(column)
    return TableMeta(
        schema=collection,
        name=table,
        kind="hats" if positional else "plain",
        columns=tuple(out),
        nrows=nrows,
        description=options.description,
        ra_column=ra,
        dec_column=dec,
        primary_key=options.primary_key,
        margin_arcsec=options.margin_arcsec if positional else None,
        max_rows_per_partition=options.max_rows_per_partition if positional else None,
        n_partitions=partitions,
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        sources=(source,),
    )


def region_radius(rows: pa.Table) -> float | None:
    """How far (degrees) a footprint ``s_region`` reaches from its ``s_ra``/``s_dec`` at
    most: half the largest ``s_fov`` (the circle about the centre through the farthest
    corner, which holds the polygon's edges too), with a margin for rounding; None when a
    row has no ``s_fov``."""
    fov = rows.column("s_fov")
    if fov.null_count or len(fov) == 0:
        return None if fov.null_count else 0.0
    largest = pc.max(fov).as_py()
    if largest is None or not math.isfinite(largest):
        return None
    return fov_region_radius(float(largest))


def _collect_garbage(data_dir: Path, collection: str, store: Path, keep_batch: str) -> None:
    """Delete the batch directories of stored files that neither the published ObsCore
    version nor the one before it (which a running query may still read) refers to."""
    referenced = {keep_batch}
    for version in table_versions(data_dir, TableName(collection, OBSCORE_TABLE)):
        try:
            rows = _read_table(version, pa.schema([pa.field("image_file", pa.string())]))
        except (OSError, pa.ArrowException):
            continue
        referenced.update(
            name.split("/", 1)[0] for name in rows.column("image_file").to_pylist() if name
        )
    for entry in store.iterdir() if store.is_dir() else ():
        if entry.name not in referenced:
            shutil.rmtree(entry, ignore_errors=True)
