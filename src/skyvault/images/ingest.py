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

Both tables are written by the catalogue ingest (:func:`skyvault.catalog.ingest.ingest`)
into build directories held open by :func:`skyvault.catalog.layout.building`, so neither
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

import contextlib
import dataclasses
import math
import os
import re
import shutil
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
from skyvault.catalog.ingest import IngestOptions, ProgressSink, expand_inputs, ingest
from skyvault.catalog.layout import (
    TableName,
    building,
    image_store,
    schema_lock_file,
    table_versions,
)
from skyvault.catalog.metadata import ColumnMeta, TableMeta, fov_region_radius
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
    """

    bands: BandTable = dataclasses.field(default_factory=lambda: dict(LSST_BANDS))
    calib_level: int = 2
    subtype: str | None = None
    authority: str = "skyvault"
    o_ucd: str = "phot.count"
    description: str | None = None
    replace: bool = False


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


def _describe(
    path: Path,
    stored_name: str,
    collection: str,
    opts: ImageIngestOptions,
    store: Path | None = None,
) -> tuple[list[_Image], str | None]:
    """The images of one file, or the reason it has none usable; with ``store``, a file
    that has images is copied to ``store / stored_name``."""
    try:
        hdus, content = read_file(path, _READ_WHOLE if store is not None else 0)
    except NotFits as exc:
        return [], f"not a FITS file ({exc})"
    except OSError as exc:
        return [], f"cannot be read ({exc.strerror or exc})"
    images = [h for h in hdus if h.is_image]
    if not images:
        return [], "has no image HDU (a primary or IMAGE extension with 2 or more axes)"
    size = path.stat().st_size
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
    if store is not None:
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
            for keyword, value, comment in cards:
                keywords.append(keyword)
                values.append(value)
                comments.append(comment)
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
        sink.stage(f"read and store {len(paths)} files", len(paths))
        images: list[_Image] = []
        skipped: list[Skipped] = []
        files: list[Path] = []
        for path in paths:
            found, reason = _describe(path, f"{batch}/{path.name}", collection, opts, store)
            if reason is not None:
                skipped.append(Skipped(str(path), reason))
            else:
                images.extend(found)
                files.append(path)
            sink.advance(1)
        if not images:
            shutil.rmtree(store / batch, ignore_errors=True)
            raise IngestError(
                f"nothing to ingest into {collection}: "
                + "; ".join(f"{s.path}: {s.reason}" for s in skipped[:5])
                + (f" (and {len(skipped) - 5} more)" if len(skipped) > 5 else ""),
                hint="images need a primary or IMAGE HDU with a celestial WCS (CTYPE RA/DEC)",
            )
        return _publish(data_dir, collection, batch, images, files, skipped, opts, sink)


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
    headers = pa.concat_tables([old_headers, new_headers]).sort_by(
        [("obs_id", "ascending"), ("hdu", "ascending"), ("card_index", "ascending")]
    )

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


def _write(
    root: Path,
    version: str,
    collection: str,
    table: str,
    batch: str,
    rows: pa.Table,
    opts: ImageIngestOptions,
) -> None:
    """Write ``rows`` as the version being built at ``root``, through the catalogue ingest
    (into a scratch root inside the build, whose files then move up into it)."""
    scratch = root / ".scratch"
    inputs = scratch / "inputs"
    inputs.mkdir(parents=True)
    source = inputs / f"{table}-{batch}.parquet"
    pq.write_table(rows, source, compression="zstd")
    positional = table == OBSCORE_TABLE
    if positional:
        description = opts.description or f"ObsCore 1.1 records of the images of {collection}"
    else:
        description = f"Every header card of the images of {collection} (the header service)"
    meta = ingest(
        [source],
        f"{collection}.{table}",
        scratch / "root",
        ra="s_ra" if positional else None,
        dec="s_dec" if positional else None,
        options=IngestOptions(
            primary_key="obs_publisher_did" if positional else None,
            description=description,
            workers=1,
            margin_arcsec=5.0,
            row_group_rows=OBSCORE_ROW_GROUP_ROWS if positional else _DEFAULT_ROW_GROUP_ROWS,
        ),
    )
    produced = (scratch / "root" / collection / table).resolve()
    for item in produced.iterdir():
        os.rename(item, root / item.name)
    shutil.rmtree(scratch)
    described = {c.name: c for c in (*COLUMNS, *EXTENSION_COLUMNS, *EXTRA_COLUMNS)}
    columns: list[ColumnMeta] = []
    for column in meta.columns:
        out = column
        if positional and column.name in described:
            c = described[column.name]
            out = column.updated(unit=c.unit, ucd=c.ucd, utype=c.utype, description=c.description)
            if c.name == "s_region":  # STC-S text that CONTAINS/INTERSECTS read as a region
                out = out.updated(xtype=REGION_XTYPE)
            out = dataclasses.replace(out, principal=c.principal, std=c.utype is not None)
        elif not positional and column.name in _HEADER_COLUMNS:
            out = column.updated(**_HEADER_COLUMNS[column.name])
        columns.append(out)
    meta = dataclasses.replace(meta, columns=tuple(columns))
    if positional:
        meta = dataclasses.replace(meta, region_radius=region_radius(rows))
    meta.write(root)
    write_manifest(root, version, workers=1)


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
