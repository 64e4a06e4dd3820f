"""``skyvault demo``: generate the DP0.2-style demo tables and ingest them.

The tables (every table of DP0.2's ``dp02_dc2_catalogs`` but ObsCore, see
:data:`~.schema.TABLES`) go to Parquet chunk files in a scratch directory
``DIR/.demo-build/``, are ingested from there as ``dp02_dc2_catalogs.*`` with Rubin's Felis
schema for their metadata, and the scratch files are removed.  A marker
``DIR/dp02_dc2_catalogs/.demo.json`` records the scale and seed of the finished build, so a
second run with the same arguments does nothing; a lock ``DIR/.demo-build.lock`` keeps two
builds of one directory apart.

Everything random comes from NumPy generators seeded by ``(seed, stream, chunk)``, so a
seed gives byte-identical Parquet inputs for given NumPy and PyArrow versions (the random
streams are platform-independent; transcendental functions may differ in the last bit
between CPU families).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from skyvault.catalog.ingest import IngestOptions, ProgressSink, ingest
from skyvault.catalog.metadata import TableMeta
from skyvault.demo.epochs import EpochCounters, measure_epochs
from skyvault.demo.fill import complete_table
from skyvault.demo.images import IMAGE_SCALES, SkySources, render_images
from skyvault.demo.objects import make_objects
from skyvault.demo.schema import SCHEMA_NAME, TABLES, felis_path
from skyvault.demo.sky import patch_boxes, sample_population
from skyvault.demo.survey import plan_survey
from skyvault.demo.truth import truth_tables
from skyvault.errors import CatalogError, UsageError
from skyvault.images.ingest import HEADERS_TABLE, OBSCORE_TABLE, ImageIngestOptions, ingest_images
from skyvault.interprocess import file_lock

__all__ = [
    "DEFAULT_SEED",
    "SCALES",
    "DemoScale",
    "build_demo",
    "demo_is_built",
    "generate_demo",
]

DEFAULT_SEED = 20260501
SCRATCH_DIR = ".demo-build"
MARKER_FILE = ".demo.json"
_MARKER_VERSION = 3

#: The demo's image collections: (collection, kind of image, ObsCore calib_level, subtype).
IMAGE_COLLECTIONS = (
    ("dp02_calexp", "calexp", 2, "lsst.calexp"),
    ("dp02_deepcoadd", "deepCoadd", 3, "lsst.deepCoadd_calexp"),
)

Scale = Literal["small", "medium"]


@dataclass(frozen=True)
class DemoScale:
    """Size of a demo build.

    Parameters
    ----------
    n_objects
        Rows of Object (sky objects and deblend parents included).
    n_wide
        How many of them are spread thinly over the whole DP0.2 footprint; the others fill
        the deep field around (62°, -37°) at DP0.2's density (see :mod:`.sky`).
    chunk_rows
        Objects generated (and their epochs measured) at a time; bounds memory.
    epochs
        Least and most ForcedSource epochs per object (fewer only where coverage is thin).
    """

    n_objects: int
    n_wide: int
    chunk_rows: int
    epochs: tuple[int, int]


SCALES: dict[str, DemoScale] = {
    "small": DemoScale(n_objects=20_000, n_wide=15_500, chunk_rows=8_000, epochs=(4, 12)),
    "medium": DemoScale(n_objects=300_000, n_wide=20_000, chunk_rows=50_000, epochs=(4, 12)),
}

#: Ingest arguments per table: (ra column, dec column, primary key).
_INGEST: dict[str, tuple[str | None, str | None, str | None]] = {
    "Visit": (None, None, "visit"),
    "CcdVisit": (None, None, "ccdVisitId"),
    "Object": ("coord_ra", "coord_dec", "objectId"),
    "ForcedSource": ("coord_ra", "coord_dec", "forcedSourceId"),
    "Source": ("coord_ra", "coord_dec", "sourceId"),
    "DiaObject": ("ra", "decl", "diaObjectId"),
    "DiaSource": ("ra", "decl", "diaSourceId"),
    "ForcedSourceOnDiaObject": ("coord_ra", "coord_dec", "forcedSourceOnDiaObjectId"),
    "TruthSummary": ("ra", "dec", "id_truth_type"),
    "MatchesTruth": (None, None, "id_truth_type"),
    "CoaddPatches": (None, None, None),
}

#: Rows per HEALPix partition: tens of partitions per table at medium scale, so that
#: queries over the demo exercise partition pruning.
_PARTITION_ROWS = 500_000

# Independent random streams.
_STREAM_SURVEY, _STREAM_SKY, _STREAM_OBJECTS, _STREAM_EPOCHS, _STREAM_TRUTH = 1, 2, 3, 4, 5


def _rng(seed: int, stream: int, chunk: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, stream, chunk])


class _Reporter:
    """Progress for ``build_demo``: a :class:`ProgressSink`, a line per stage, or nothing."""

    def __init__(self, progress: bool | ProgressSink) -> None:
        self.sink: ProgressSink | None
        if isinstance(progress, bool):
            self.sink = _LineProgress() if progress else None
        else:
            self.sink = progress

    def stage(self, label: str, total: int | None = None) -> None:
        if self.sink is not None:
            self.sink.stage(label, total)

    def advance(self, rows: int) -> None:
        if self.sink is not None:
            self.sink.advance(rows)

    def done(self) -> None:
        """Close the last stage (only the line printer has anything to say)."""
        if isinstance(self.sink, _LineProgress):
            self.sink.stage("demo: done", None)


class _LineProgress:
    """Prints a line as each stage starts, with the time since the build began."""

    def __init__(self) -> None:
        self._start = time.monotonic()

    def stage(self, label: str, total: int | None) -> None:
        elapsed = time.monotonic() - self._start
        print(f"[{elapsed:6.1f} s] {label}", file=sys.stderr, flush=True)

    def advance(self, rows: int) -> None:
        pass


def _scale(scale: str) -> DemoScale:
    try:
        return SCALES[scale]
    except KeyError:
        raise UsageError(
            f"unknown demo scale {scale!r}", hint=f"use one of {', '.join(SCALES)}"
        ) from None


def generate_demo(
    out_dir: Path,
    scale: Scale = "medium",
    seed: int = DEFAULT_SEED,
    *,
    progress: bool | ProgressSink = False,
    sources: SkySources | None = None,
) -> dict[str, list[Path]]:
    """Write the demo tables as Parquet chunk files under ``out_dir/TABLE/``.

    Parameters
    ----------
    out_dir
        Directory for the files (created; existing table subdirectories are replaced).
    scale
        ``"small"`` (20 000 objects) or ``"medium"`` (300 000).
    seed
        Seed of every random draw; equal seeds give byte-identical files.
    progress
        ``True`` for a line per stage on standard error, or a sink to report to.
    sources
        Where to keep the objects images are drawn from (nothing kept when None).

    Returns
    -------
    dict
        The files written for each table name.
    """
    size = _scale(scale)
    report = _Reporter(progress)
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, list[Path]] = {}
    for table in TABLES:
        shutil.rmtree(out_dir / table, ignore_errors=True)
        (out_dir / table).mkdir()
        files[table] = []

    def write(table: str, data: pa.Table) -> None:
        path = out_dir / table / f"part-{len(files[table]):05d}.parquet"
        # Scratch files, read once by ingest: dictionaries only for labels (measurements
        # do not repeat; trying a dictionary on them doubles the writing time).
        labels = [f.name for f in data.schema if pa.types.is_string(f.type)]
        pq.write_table(
            data, path, compression="snappy", use_dictionary=labels, row_group_size=1 << 18
        )
        files[table].append(path)

    report.stage("demo: survey and sky", None)
    survey = plan_survey(_rng(seed, _STREAM_SURVEY))
    write("Visit", survey.visit_table)
    write("CcdVisit", survey.ccd_visit_table)
    population = sample_population(size.n_objects, _rng(seed, _STREAM_SKY), size.n_wide)

    report.stage("demo: objects and epochs", size.n_objects)
    counters = EpochCounters(survey.ccd_visit_table.num_rows)
    patches: set[tuple[int, int]] = set()
    for chunk_index, start in enumerate(range(0, size.n_objects, size.chunk_rows)):
        rows = np.arange(start, min(start + size.chunk_rows, size.n_objects), dtype=np.int64)
        chunk = make_objects(population, rows, _rng(seed, _STREAM_OBJECTS, chunk_index))
        write("Object", chunk.table)
        if sources is not None:
            sources.add(chunk)
        epochs = measure_epochs(
            chunk, survey, counters, size.epochs, _rng(seed, _STREAM_EPOCHS, chunk_index)
        )
        truth = truth_tables(chunk, _rng(seed, _STREAM_TRUTH, chunk_index))
        for table, data in (epochs | truth).items():
            write(table, data)
        pairs = np.unique(np.stack([chunk.tract, chunk.patch]), axis=1)
        patches.update(zip(pairs[0].tolist(), pairs[1].tolist(), strict=True))
        report.advance(rows.size)
    write("CoaddPatches", _coadd_patches(sorted(patches)))
    return files


def _coadd_patches(patches: list[tuple[int, int]]) -> pa.Table:
    """A CoaddPatches row for each patch holding objects: centre and outline (STC-S)."""
    tract = np.array([t for t, _ in patches], dtype=np.int64)
    patch = np.array([p for _, p in patches], dtype=np.int64)
    ra_lo, ra_hi, dec_lo, dec_hi = patch_boxes(tract, patch)
    corners = np.stack([ra_lo, dec_lo, ra_hi, dec_lo, ra_hi, dec_hi, ra_lo, dec_hi], axis=1)
    regions = [
        "POLYGON ICRS " + " ".join(f"{value:.6f}" for value in row) for row in corners.tolist()
    ]
    return complete_table(
        "CoaddPatches",
        {
            "lsst_tract": tract,
            "lsst_patch": patch,
            "s_ra": (ra_lo + ra_hi) / 2,
            "s_dec": (dec_lo + dec_hi) / 2,
            "s_region": regions,
        },
        None,
    )


def _marker(data_dir: Path) -> Path:
    return data_dir / SCHEMA_NAME / MARKER_FILE


def demo_is_built(data_dir: Path, scale: str | None = None, seed: int | None = None) -> bool:
    """Whether ``data_dir`` holds a finished demo build (of ``scale`` and ``seed``, if given).

    A build counts when its marker is present and all its tables are published.
    """
    try:
        marker = json.loads(_marker(data_dir).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(marker, dict) or marker.get("version") != _MARKER_VERSION:
        return False
    if scale is not None and marker.get("scale") != scale:
        return False
    if seed is not None and marker.get("seed") != seed:
        return False
    try:
        _read_metas(data_dir)
    except CatalogError:
        return False
    return True


def _read_metas(data_dir: Path) -> list[TableMeta]:
    metas = [TableMeta.read(data_dir / SCHEMA_NAME / table) for table in TABLES]
    for collection, *_ in IMAGE_COLLECTIONS:
        for table in (OBSCORE_TABLE, HEADERS_TABLE):
            metas.append(TableMeta.read(data_dir / collection / table))
    return metas


def build_demo(
    data_dir: Path,
    scale: Scale = "medium",
    seed: int = DEFAULT_SEED,
    *,
    progress: bool | ProgressSink = False,
    force: bool = False,
) -> list[TableMeta]:
    """Build the DP0.2-style demo tables under ``data_dir`` and return their metadata.

    Parameters
    ----------
    data_dir
        The skyvault data root; the tables appear as ``dp02_dc2_catalogs.*``.
    scale
        ``"small"`` (20 000 objects, seconds) or ``"medium"`` (300 000 objects).
    seed
        Seed of the generator; a seed always gives the same tables.
    progress
        ``True`` for a line per stage on standard error, or a sink (the CLI's bar).
    force
        Rebuild even when a build of this scale and seed is already there.

    Returns
    -------
    list of TableMeta
        The tables of :data:`~.schema.TABLES`, in that order.
    """
    _scale(scale)
    if not force and demo_is_built(data_dir, scale, seed):
        return _read_metas(data_dir)
    report = _Reporter(progress)
    data_dir.mkdir(parents=True, exist_ok=True)
    metas: list[TableMeta] = []
    with _build_lock(data_dir):
        scratch = data_dir / SCRATCH_DIR
        shutil.rmtree(scratch, ignore_errors=True)  # left by an interrupted build
        _marker(data_dir).unlink(missing_ok=True)
        try:
            sources = SkySources()
            files = generate_demo(
                scratch, scale, seed, progress=report.sink or False, sources=sources
            )
            for table in TABLES:
                ra, dec, key = _INGEST[table]
                report.stage(f"ingest {SCHEMA_NAME}.{table}", None)
                meta = ingest(
                    files[table],
                    f"{SCHEMA_NAME}.{table}",
                    data_dir,
                    ra=ra,
                    dec=dec,
                    felis=felis_path(),
                    options=IngestOptions(primary_key=key, max_rows_per_partition=_PARTITION_ROWS),
                    progress=report.sink,
                )
                metas.append(meta)
                shutil.rmtree(scratch / table, ignore_errors=True)
            metas.extend(_build_images(data_dir, scratch / "images", scale, seed, sources, report))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        _marker(data_dir).write_text(
            json.dumps(
                {
                    "version": _MARKER_VERSION,
                    "scale": scale,
                    "seed": seed,
                    "tables": {m.name: m.nrows for m in metas},
                },
                indent=1,
            )
            + "\n"
        )
        report.done()
    return metas


def _build_images(
    data_dir: Path, scratch: Path, scale: str, seed: int, sources: SkySources, report: _Reporter
) -> list[TableMeta]:
    """Draw the calexp and deepCoadd images (:mod:`.images`) and ingest their collections."""
    size = IMAGE_SCALES[scale]
    survey = plan_survey(_rng(seed, _STREAM_SURVEY))  # the same draw as the tables'
    count = size.visits_per_band * size.detectors_per_visit * 6 + size.patches * 6
    report.stage("demo: images", count)
    files = render_images(scratch, survey, sources, size, seed, report.advance)
    metas: list[TableMeta] = []
    for collection, kind, level, subtype in IMAGE_COLLECTIONS:
        report.stage(f"ingest {collection}", None)
        ingest_images(
            files[kind],
            collection,
            data_dir,
            options=ImageIngestOptions(
                calib_level=level,
                subtype=subtype,
                description=f"Simulated DP0.2-like {kind} images of the skyvault demo",
                replace=True,  # a rebuild (--force, another scale) keeps no earlier image
            ),
            progress=report.sink,
        )
        for table in (OBSCORE_TABLE, HEADERS_TABLE):
            metas.append(TableMeta.read(data_dir / collection / table))
    return metas


@contextlib.contextmanager
def _build_lock(data_dir: Path) -> Iterator[None]:
    """Hold ``DIR/.demo-build.lock`` so two demo builds of one directory cannot interleave."""
    with file_lock(data_dir / f"{SCRATCH_DIR}.lock") as taken:
        if not taken:
            raise UsageError(
                f"another demo build is running in {data_dir}",
                hint="wait for it to finish",
            )
        yield
