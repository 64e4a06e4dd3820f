"""Ingest: input files in, one HATS catalogue (or plain Parquet table) out, atomically.

The pipeline for a table with positions makes three passes, each in bounded memory:

1. **scan** reads only the coordinate columns, checks them (numeric, finite, in range)
   naming the file, row and column of the first bad value, computes ``_healpix_29`` once
   (kept in a spill file for pass 2) and counts rows per cell of a fine histogram;
2. **split** chooses adaptive partitions from the histogram, reads the full rows again,
   and appends each row to its partition's spill (Arrow IPC), and to the margin spill of
   every neighbouring partition whose margin ring holds it;
3. **write** sorts each partition by ``_healpix_29`` and writes it as
   ``dataset/Norder=K/Dir=D/Npix=N.parquet`` with small row groups (two partitions at a
   time), then writes ``_metadata``/``_common_metadata``, ``partition_info.csv`` and
   ``hats.properties`` for the catalogue and for its margin catalogue under ``margin/``.

Everything happens inside a build directory that :func:`skyvault.catalog.layout.building`
publishes atomically, so a failure or an interrupt leaves the earlier version intact.

Why not hats-import: it needs a Dask cluster and writes through pandas; this pipeline is
a few numpy/pyarrow passes that stay within a fixed memory budget on a laptop and are
faster on two cores (see ``benchmarks/``).  The files are the same HATS layout.
"""

from __future__ import annotations

import contextlib
import datetime
import glob
import shutil
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

from skyvault import __version__
from skyvault.bulk.manifest import ManifestHasher
from skyvault.catalog.felis import FelisTable, read_felis_table
from skyvault.catalog.layout import TableName, building, hats_pixel_file
from skyvault.catalog.metadata import TableMeta, merge_columns, principal_defaults
from skyvault.catalog.partitioning import (
    HISTOGRAM_ORDER,
    SPATIAL_ORDER,
    Partitioning,
    choose_partitions,
    margin_order,
)
from skyvault.catalog.readers import InputFile, open_input
from skyvault.errors import IngestError, SkyvaultError, UsageError
from skyvault.sky.coverage import healpix29
from skyvault.storage_faults import Fault, storage_errors, storage_fault

__all__ = ["HEALPIX_COLUMN", "IngestOptions", "ingest", "write_hats"]

HEALPIX_COLUMN = "_healpix_29"
_T = TypeVar("_T")
_R = TypeVar("_R")
MARGIN_DIR = "margin"


@dataclass(frozen=True)
class IngestOptions:
    """Tuning and description of one ingest.

    Parameters
    ----------
    max_rows_per_partition
        Split a HEALPix cell into its children while it holds more rows than this.
    margin_arcsec
        Width of the margin catalogue kept around each partition for cross-matching.
    row_group_rows
        Rows per Parquet row group: small groups let a cone search read little.
    batch_rows
        Rows read from the inputs at a time.
    spill_bytes
        Memory held for rows on their way to partition spills before they are written.
    workers
        Partitions written in parallel.
    primary_key
        The table's key column (published in TAP_SCHEMA, principal by default).
    description
        The table's description (else from the Felis schema, else from the input).
    """

    max_rows_per_partition: int = 1_000_000
    margin_arcsec: float = 5.0
    row_group_rows: int = 32_768
    batch_rows: int = 262_144
    spill_bytes: int = 256 << 20
    workers: int = 2
    primary_key: str | None = None
    description: str | None = None
    compression: str = "snappy"


class ProgressSink(Protocol):
    """Where ingest reports progress (the CLI draws a bar; the library default is silent)."""

    def stage(self, label: str, total: int | None) -> None: ...

    def advance(self, rows: int) -> None: ...


class _Silent:
    def stage(self, label: str, total: int | None) -> None:
        pass

    def advance(self, rows: int) -> None:
        pass


def ingest(
    inputs: Sequence[str | Path],
    table: str,
    data_dir: Path,
    *,
    ra: str | None = None,
    dec: str | None = None,
    felis: Path | None = None,
    options: IngestOptions | None = None,
    progress: ProgressSink | None = None,
) -> TableMeta:
    """Ingest ``inputs`` as table ``table`` (``SCHEMA.TABLE``) under ``data_dir``.

    With ``ra`` and ``dec`` the table becomes a HATS catalogue with a margin catalogue;
    without them, plain Parquet.  Re-ingesting a table replaces it atomically.

    Raises
    ------
    IngestError
        For bad input, naming the file, row and column where known.
    UsageError
        For bad arguments (table name, options, Felis file).
    """
    opts = options or IngestOptions()
    sink: ProgressSink = progress or _Silent()
    name = TableName.parse(table)
    if (ra is None) != (dec is None):
        raise UsageError("give both --ra and --dec, or neither (for a table without positions)")
    _check_options(opts)
    paths = expand_inputs(inputs)
    files = _open_consistent(paths)
    schema = files[0].schema
    felis_table = read_felis_table(felis, name.table) if felis is not None else None
    primary_key = opts.primary_key or (felis_table.primary_key if felis_table else None)
    for column in (ra, dec):
        if column is not None:
            _check_coordinate_column(files, column)
    if primary_key is not None and primary_key not in schema.names:
        primary_key = None if opts.primary_key is None else primary_key
        if primary_key is not None:
            raise UsageError(f"primary key column {primary_key!r} is not in the input")

    # A read-only or full data directory is said as such, naming it (the build is removed
    # and the published version stays as it was); building() creates the directories.
    with (
        storage_errors(
            f"cannot ingest {name}",
            f"the data directory {data_dir}",
            remedy=_STORAGE_REMEDIES,
            under=data_dir,
        ),
        building(data_dir, name) as build,
        _wrap_foreign_errors(f"ingest of {name}", data_dir),
        ManifestHasher(build.path) as hasher,
    ):
        if ra is not None and dec is not None:
            nrows, partitions = _write_hats(
                files, build.path, name, ra, dec, opts, sink, hasher.add
            )
            stored_schema = _with_healpix(schema)
        else:
            nrows, partitions = _write_plain(files, build.path, opts, sink), 0
            stored_schema = schema
        meta = _table_meta(
            name, files, stored_schema, felis_table, opts, primary_key, ra, dec, nrows, partitions
        )
        meta.write(build.path)
        # Checksums of every file, stored with the version (served by the bulk edge).
        hasher.finish(build.version, workers=opts.workers)
    return meta


_STORAGE_REMEDIES = {
    Fault.READ_ONLY: "ingest writes the table there: remount it read-write, or pass --data a "
    "writable directory",
    Fault.NO_PERMISSION: "ingest as a user who may write there, or pass --data a writable "
    "directory",
    Fault.FULL: "free space there and ingest again; the table is as it was",
}


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Input paths with globs expanded, in a stable order; refuses patterns matching nothing."""
    if not inputs:
        raise UsageError("no input files given")
    paths: list[Path] = []
    for item in inputs:
        text = str(item)
        if glob.has_magic(text):
            matched = sorted(glob.glob(text))
            if not matched:
                raise UsageError(f"no file matches {text!r}")
            paths.extend(Path(m) for m in matched)
        else:
            paths.append(Path(text))
    for path in paths:
        if not path.is_file():
            raise IngestError("no such file", file=str(path))
    return paths


def _check_options(opts: IngestOptions) -> None:
    if opts.max_rows_per_partition < 1:
        raise UsageError("max rows per partition must be at least 1")
    if not 0 < opts.margin_arcsec <= 3600:
        raise UsageError("margin must be between 0 and 3600 arcseconds")
    if opts.row_group_rows < 1 or opts.batch_rows < 1 or opts.workers < 1:
        raise UsageError("row group size, batch size and workers must be positive")


def _open_consistent(paths: Sequence[Path]) -> list[InputFile]:
    """Open every input; all must have the first file's columns with the same types."""
    first = open_input(paths[0])
    reference = first.schema
    files = [first]
    types = {f.name: f.type for f in reference}
    for path in paths[1:]:
        other = open_input(path, types)
        missing = [n for n in reference.names if n not in other.schema.names]
        extra = [n for n in other.schema.names if n not in reference.names]
        if missing or extra:
            detail = []
            if missing:
                detail.append(f"lacks {', '.join(missing)}")
            if extra:
                detail.append(f"has extra {', '.join(extra)}")
            raise IngestError(
                f"columns differ from {paths[0].name}: it {' and '.join(detail)}",
                file=str(path),
                hint="every input of one table must have the same columns",
            )
        for field in reference:
            theirs = other.schema.field(field.name).type
            if theirs != field.type:
                raise IngestError(
                    f"type changes between files: {field.type} in {paths[0].name}, {theirs} here",
                    file=str(path),
                    column=field.name,
                    hint="convert the column to one type in every file",
                )
        files.append(other)
    return files


def _check_coordinate_column(files: Sequence[InputFile], column: str) -> None:
    for f in files:
        if column not in f.schema.names:
            raise IngestError(
                "coordinate column not found",
                file=str(f.path),
                column=column,
                hint=f"columns are: {', '.join(f.schema.names[:20])}",
            )
        dtype = f.schema.field(column).type
        if not (pa.types.is_floating(dtype) or pa.types.is_integer(dtype)):
            raise IngestError(
                f"coordinate column is not numeric (it holds {dtype})",
                file=str(f.path),
                column=column,
                hint="positions must be numbers in degrees",
            )


def _with_healpix(schema: pa.Schema) -> pa.Schema:
    return pa.schema([pa.field(HEALPIX_COLUMN, pa.int64(), nullable=False), *schema])


# --- pass 1: scan -----------------------------------------------------------------------


def _checked_coordinates(
    batch: pa.RecordBatch, f: InputFile, row0: int, ra: str, dec: str
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """RA and Dec of a batch as float64, refusing nulls, NaN and out-of-range values."""
    out = []
    for column, low, high, high_open in ((ra, 0.0, 360.0, True), (dec, -90.0, 90.0, False)):
        arr = batch.column(column)
        if arr.null_count:
            first = int(np.flatnonzero(np.asarray(arr.is_null()))[0])
            raise IngestError(
                "position is empty (null)",
                file=str(f.path),
                row=row0 + first + 1,
                column=column,
                hint="every row of a positional table needs RA and Dec",
            )
        values = np.asarray(arr.to_numpy(zero_copy_only=False), dtype=np.float64)
        bad = ~np.isfinite(values)
        what = "position is NaN or infinite"
        if not bad.any():
            bad = (values < low) | (values >= high if high_open else values > high)
            interval = f"[{low:g}, {high:g})" if high_open else f"[{low:g}, {high:g}]"
            what = f"value outside {interval}"
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            hint = _swapped_hint(batch, ra, dec) or (
                "normalise RA into [0, 360) degrees"
                if column == ra
                else "Dec must be in degrees within [-90, 90]"
            )
            raise IngestError(
                f"{what}: {float(values[first])!r}",  # 95.5, not np.float64(95.5)
                file=str(f.path),
                row=row0 + first + 1,
                column=column,
                hint=hint,
            )
        out.append(values)
    return out[0], out[1]


def _swapped_hint(batch: pa.RecordBatch, ra: str, dec: str) -> str | None:
    """A hint to swap ``--ra`` and ``--dec`` when the batch's values fit the other way round."""
    if ra == dec:
        return None
    with np.errstate(invalid="ignore"):
        ra_values = np.asarray(batch.column(ra).to_numpy(zero_copy_only=False), dtype=np.float64)
        dec_values = np.asarray(batch.column(dec).to_numpy(zero_copy_only=False), dtype=np.float64)
        fits = bool(
            np.all((ra_values >= -90.0) & (ra_values <= 90.0))
            and np.all((dec_values >= 0.0) & (dec_values < 360.0))
        )
    if not fits:
        return None
    return (
        f"{dec} holds values in [0, 360) and {ra} in [-90, 90]: if the columns are swapped, "
        f"pass --ra {dec} --dec {ra}"
    )


def _scan(
    files: Sequence[InputFile],
    ra: str,
    dec: str,
    hist_order: int,
    spill_path: Path,
    opts: IngestOptions,
    sink: ProgressSink,
) -> NDArray[np.int64]:
    histogram = np.zeros(12 * 4**hist_order, dtype=np.int64)
    shift = 2 * (SPATIAL_ORDER - hist_order)
    sink.stage("scan positions", _total_rows(files))

    def positions() -> Iterator[tuple[pa.RecordBatch, InputFile, int]]:
        for f in files:
            row0 = 0
            for batch in f.batches([ra, dec], opts.batch_rows):
                yield batch, f, row0
                row0 += batch.num_rows

    def index(
        item: tuple[pa.RecordBatch, InputFile, int],
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.intp]]:
        batch, f, row0 = item
        ra_v, dec_v = _checked_coordinates(batch, f, row0, ra, dec)
        hp = healpix29(ra_v, dec_v)
        cells, counts = np.unique(hp >> shift, return_counts=True)
        return hp, cells, counts

    with spill_path.open("wb") as spill:
        for hp, cells, counts in _ordered_map(index, positions(), opts.workers):
            hp.tofile(spill)
            histogram[cells] += counts
            sink.advance(len(hp))
    return histogram


def _ordered_map(
    fn: Callable[[_T], _R], items: Iterable[_T], workers: int, window: int = 3
) -> Iterator[_R]:
    """``map(fn, items)`` on a thread pool, results in input order, few items in flight.

    The heavy steps (Parquet decoding, HEALPix indexing, sorting, takes) release the GIL,
    so two threads use both cores while memory stays at ``window`` batches.
    """
    if workers <= 1:
        yield from map(fn, items)
        return
    pending: deque[Future[_R]] = deque()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def _total_rows(files: Sequence[InputFile]) -> int | None:
    counts = [f.num_rows for f in files]
    return None if any(c is None for c in counts) else sum(c for c in counts if c is not None)


# --- pass 2: split ----------------------------------------------------------------------


class _PartitionSpill:
    """Rows on their way to partitions, buffered in memory and flushed to Arrow IPC files."""

    def __init__(self, root: Path, limit_bytes: int) -> None:
        self.root = root
        self.limit = limit_bytes
        self.buffers: dict[int, list[pa.RecordBatch]] = {}
        self.buffered = 0
        self.files: dict[int, list[Path]] = {}
        self.rows: dict[int, int] = {}

    def add(self, batch: pa.RecordBatch, owners: NDArray[np.intp]) -> None:
        """Append rows; ``owners`` (partition of each row) must be sorted."""
        if batch.num_rows == 0:
            return
        cuts = np.flatnonzero(np.diff(owners)) + 1
        starts = np.concatenate([[0], cuts])
        stops = np.concatenate([cuts, [len(owners)]])
        for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):
            part = int(owners[start])
            piece = batch.slice(start, stop - start)
            self.buffers.setdefault(part, []).append(piece)
            self.rows[part] = self.rows.get(part, 0) + piece.num_rows
        self.buffered += batch.nbytes
        if self.buffered >= self.limit:
            self.flush()

    def flush(self) -> None:
        for part, pieces in self.buffers.items():
            paths = self.files.setdefault(part, [])
            path = self.root / f"{part}-{len(paths)}.arrow"
            with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, pieces[0].schema) as w:
                for piece in pieces:
                    w.write_batch(piece)
            paths.append(path)
        self.buffers.clear()
        self.buffered = 0

    def read(self, part: int) -> pa.Table:
        tables = []
        for path in self.files.get(part, []):
            with pa.memory_map(str(path)) as source:
                tables.append(pa.ipc.open_file(source).read_all())
        return pa.concat_tables(tables)


def _split(
    files: Sequence[InputFile],
    schema: pa.Schema,
    partitioning: Partitioning,
    m_order: int,
    hp_path: Path,
    main: _PartitionSpill,
    margin: _PartitionSpill,
    opts: IngestOptions,
    sink: ProgressSink,
) -> None:
    ring_cells, ring_owners = partitioning.margin_ring(m_order)
    m_shift = 2 * (SPATIAL_ORDER - m_order)
    names = schema.names
    stored = _with_healpix(schema)
    sink.stage("split into partitions", _total_rows(files))

    def rows_with_index(hp_file: BinaryIO) -> Iterator[tuple[pa.RecordBatch, NDArray[np.int64]]]:
        for f in files:
            for raw in f.batches(None, opts.batch_rows):
                yield raw, np.fromfile(hp_file, dtype=np.int64, count=raw.num_rows)

    def route(
        item: tuple[pa.RecordBatch, NDArray[np.int64]],
    ) -> tuple[pa.RecordBatch, NDArray[np.intp], pa.RecordBatch, NDArray[np.intp]]:
        raw, hp = item
        # Sorting by _healpix_29 makes partitions contiguous runs, turns both look-ups below
        # into cache-friendly merges, and hands the final per-partition sort sorted runs.
        order = np.argsort(hp)
        hp = hp[order]
        data = pa.RecordBatch.from_arrays(
            [_cast_column(raw.column(c), schema.field(c).type) for c in names], names=names
        ).take(pa.array(order))
        batch = pa.RecordBatch.from_arrays([pa.array(hp), *data.columns], schema=stored)
        owners = partitioning.assign(hp)
        cells = hp >> m_shift
        lo = np.searchsorted(ring_cells, cells, side="left")
        hi = np.searchsorted(ring_cells, cells, side="right")
        hits = hi - lo
        if not hits.any():
            return batch, owners, batch.slice(0, 0), np.empty(0, np.intp)
        rows = np.repeat(np.arange(len(hp)), hits)
        firsts = np.cumsum(hits) - hits
        within = np.arange(len(rows)) - np.repeat(firsts, hits)
        margin_owners = ring_owners[np.repeat(lo, hits) + within]
        by_owner = np.argsort(margin_owners, kind="stable")
        margin_rows = batch.take(pa.array(rows[by_owner]))
        return batch, owners, margin_rows, margin_owners[by_owner]

    with hp_path.open("rb") as hp_file:
        for batch, owners, margin_rows, margin_owners in _ordered_map(
            route, rows_with_index(hp_file), opts.workers
        ):
            main.add(batch, owners)
            margin.add(margin_rows, margin_owners)
            sink.advance(batch.num_rows)
    main.flush()
    margin.flush()


def _cast_column(arr: pa.Array, target: pa.DataType) -> pa.Array:
    return arr if arr.type == target else arr.cast(target)


# --- pass 3: write ----------------------------------------------------------------------


def _write_partitions(
    root: Path,
    partitioning: Partitioning,
    spill: _PartitionSpill,
    schema: pa.Schema,
    opts: IngestOptions,
    sink: ProgressSink,
    label: str,
    on_written: Callable[[Path], None] | None = None,
) -> tuple[list[tuple[int, int, int]], int]:
    """Sort and write every non-empty partition; returns ``[(order, pixel, rows)]`` and bytes."""
    todo = [p for p in range(len(partitioning)) if spill.rows.get(p, 0) > 0]
    sink.stage(label, sum(spill.rows[p] for p in todo))
    collected: dict[int, pq.FileMetaData] = {}

    def write_one(part: int) -> int:
        table = spill.read(part)
        hp = table.column(HEALPIX_COLUMN).to_numpy()
        table = table.take(pa.array(np.argsort(hp, kind="stable")))
        order, pixel = int(partitioning.orders[part]), int(partitioning.pixels[part])
        path = hats_pixel_file(root, order, pixel)
        path.parent.mkdir(parents=True, exist_ok=True)
        collector: list[pq.FileMetaData] = []
        pq.write_table(
            table,
            path,
            row_group_size=opts.row_group_rows,
            compression=opts.compression,
            metadata_collector=collector,
            use_dictionary=_dictionary_columns(schema),
            write_page_index=True,
        )
        if on_written is not None:
            on_written(path)
        md = collector[0]
        md.set_file_path(str(path.relative_to(root / "dataset")))
        collected[part] = md
        for chunk_path in spill.files.get(part, []):
            chunk_path.unlink(missing_ok=True)
        sink.advance(table.num_rows)
        return int(table.num_rows)

    with ThreadPoolExecutor(max_workers=opts.workers) as pool:
        # list() re-raises the first worker exception here, in the caller.
        list(pool.map(write_one, todo))

    done = [(int(partitioning.orders[p]), int(partitioning.pixels[p]), spill.rows[p]) for p in todo]
    dataset = root / "dataset"
    dataset.mkdir(parents=True, exist_ok=True)
    pq.write_metadata(schema, dataset / "_common_metadata")
    if todo:
        combined = collected[todo[0]]
        for p in todo[1:]:
            combined.append_row_groups(collected[p])
        combined.write_metadata_file(str(dataset / "_metadata"))
    else:
        pq.write_metadata(schema, dataset / "_metadata")
    size = sum(p.stat().st_size for p in dataset.rglob("*.parquet"))
    with (root / "partition_info.csv").open("w") as fh:
        fh.write("Norder,Npix\n")
        for order, pixel, _ in sorted(done):
            fh.write(f"{order},{pixel}\n")
    return done, size


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    """Columns worth dictionary-encoding: strings (bands, flags as text).

    Numeric columns of catalogues are nearly all distinct; trying a dictionary on them
    first costs pyarrow about four times the write time for nothing.
    """
    return [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_boolean(f.type)]


def _write_properties(root: Path, props: dict[str, Any]) -> None:
    lines = ["#HATS catalog"]
    for key, value in props.items():
        if value is not None:
            lines.append(f"{key}={value}")
    text = "\n".join(lines) + "\n"
    (root / "hats.properties").write_text(text)
    (root / "properties").write_text(text)


def _sky_fraction(done: Sequence[tuple[int, int, int]]) -> float:
    return float(sum(1.0 / (12 * 4**order) for order, _, _ in done))


def write_hats(
    files: Sequence[InputFile],
    root: Path,
    name: TableName,
    ra: str,
    dec: str,
    options: IngestOptions | None = None,
    progress: ProgressSink | None = None,
    on_written: Callable[[Path], None] | None = None,
) -> tuple[int, int]:
    """Write ``files`` (opened inputs with the same columns, no ``_healpix_29``) as a HATS
    catalogue with its margin catalogue under ``root``, a build directory; the number of
    rows and of partitions.

    The three passes of :func:`ingest` without its metadata and publishing: for callers
    that re-partition rows they already hold (a user table indexed on the sky) and write
    their own :class:`TableMeta` inside their own :func:`building` block.
    """
    opts = options or IngestOptions()
    _check_options(opts)
    for column in (ra, dec):
        _check_coordinate_column(files, column)
    return _write_hats(files, root, name, ra, dec, opts, progress or _Silent(), on_written)


def _write_hats(
    files: Sequence[InputFile],
    root: Path,
    name: TableName,
    ra: str,
    dec: str,
    opts: IngestOptions,
    sink: ProgressSink,
    on_written: Callable[[Path], None] | None = None,
) -> tuple[int, int]:
    work = root / ".work"
    (work / "main").mkdir(parents=True)
    (work / "margin").mkdir()
    try:
        m_order = margin_order(opts.margin_arcsec)
        hist_order = min(HISTOGRAM_ORDER, m_order - 1)
        if hist_order < 0:
            raise UsageError("the margin is too wide: use at most 3600 arcseconds")
        hp_path = work / "healpix29.bin"
        histogram = _scan(files, ra, dec, hist_order, hp_path, opts, sink)
        partitioning = choose_partitions(
            histogram, opts.max_rows_per_partition, histogram_order=hist_order
        )
        del histogram
        schema = files[0].schema
        main = _PartitionSpill(work / "main", opts.spill_bytes // 2)
        margin = _PartitionSpill(work / "margin", opts.spill_bytes // 2)
        _split(files, schema, partitioning, m_order, hp_path, main, margin, opts, sink)
        hp_path.unlink()
        stored = _with_healpix(schema)
        done, size = _write_partitions(
            root, partitioning, main, stored, opts, sink, "write partitions", on_written
        )
        nrows = sum(rows for _, _, rows in done)
        created = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M%Z")
        common = {
            "hats_col_ra": ra,
            "hats_col_dec": dec,
            "hats_col_healpix": HEALPIX_COLUMN,
            "hats_col_healpix_order": SPATIAL_ORDER,
            "hats_npix_suffix": ".parquet",
            "hats_builder": f"skyvault v{__version__}",
            "hats_creation_date": created,
            "hats_version": "v1.0",
        }
        _write_properties(
            root,
            {
                "obs_collection": name.table,
                "dataproduct_type": "object",
                "hats_nrows": nrows,
                **common,
                "hats_max_rows": opts.max_rows_per_partition,
                "hats_order": max((o for o, _, _ in done), default=0),
                "moc_sky_fraction": f"{_sky_fraction(done):.5f}",
                "hats_estsize": size // 1024,
            },
        )
        margin_root = root / MARGIN_DIR
        margin_root.mkdir()
        m_done, m_size = _write_partitions(
            margin_root, partitioning, margin, stored, opts, sink, "write margin", on_written
        )
        _write_properties(
            margin_root,
            {
                "obs_collection": f"{name.table}_{opts.margin_arcsec:g}arcs",
                "dataproduct_type": "margin",
                "hats_nrows": sum(rows for _, _, rows in m_done),
                **common,
                "hats_primary_table_url": "..",
                "hats_margin_threshold": f"{opts.margin_arcsec:g}",
                "hats_order": max((o for o, _, _ in m_done), default=0),
                "hats_estsize": m_size // 1024,
            },
        )
        return nrows, len(done)
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --- tables without positions -----------------------------------------------------------

_PLAIN_FILE_ROWS = 10_000_000


def _write_plain(
    files: Sequence[InputFile], root: Path, opts: IngestOptions, sink: ProgressSink
) -> int:
    schema = files[0].schema
    dataset = root / "dataset"
    dataset.mkdir()
    sink.stage("write", _total_rows(files))
    total = 0
    writer: pq.ParquetWriter | None = None
    in_file = 0
    part = 0
    with contextlib.ExitStack() as stack:
        for f in files:
            for raw in f.batches(None, opts.batch_rows):
                batch = pa.RecordBatch.from_arrays(
                    [_cast_column(raw.column(c), schema.field(c).type) for c in schema.names],
                    schema=schema,
                )
                if writer is None or in_file >= _PLAIN_FILE_ROWS:
                    if writer is not None:
                        writer.close()
                    writer = pq.ParquetWriter(
                        dataset / f"part-{part:05d}.parquet",
                        schema,
                        compression=opts.compression,
                        use_dictionary=_dictionary_columns(schema),
                        write_page_index=True,
                    )
                    stack.callback(writer.close)
                    part += 1
                    in_file = 0
                writer.write_batch(batch, row_group_size=opts.row_group_rows)
                in_file += batch.num_rows
                total += batch.num_rows
                sink.advance(batch.num_rows)
    if part == 0:
        pq.write_table(schema.empty_table(), dataset / "part-00000.parquet")
    pq.write_metadata(schema, dataset / "_common_metadata")
    return total


# --- metadata ---------------------------------------------------------------------------


def _table_meta(
    name: TableName,
    files: Sequence[InputFile],
    schema: pa.Schema,
    felis_table: FelisTable | None,
    opts: IngestOptions,
    primary_key: str | None,
    ra: str | None,
    dec: str | None,
    nrows: int,
    partitions: int,
) -> TableMeta:
    layers: list[dict[str, dict[str, Any]]] = [f.column_info for f in reversed(files)]
    if felis_table is not None:
        layers.append(felis_table.columns)
    healpix_doc = {
        HEALPIX_COLUMN: {
            "description": "HEALPix index (NESTED scheme, order 29) of the position",
            "ucd": "pos.healpix",
        }
    }
    columns = merge_columns(schema, *layers, healpix_doc)
    columns = principal_defaults(columns, ra, dec, primary_key)
    columns = tuple(
        c.updated(indexed=True) if c.name in (HEALPIX_COLUMN, primary_key) else c for c in columns
    )
    if ra is not None and dec is not None:
        columns = tuple(_default_position_meta(c, ra, dec) for c in columns)
    description = (
        opts.description
        or (felis_table.description if felis_table else None)
        or next((f.description for f in files if f.description), None)
    )
    return TableMeta(
        schema=name.schema,
        name=name.table,
        kind="hats" if ra is not None else "plain",
        columns=columns,
        nrows=nrows,
        description=description,
        ra_column=ra,
        dec_column=dec,
        primary_key=primary_key,
        margin_arcsec=opts.margin_arcsec if ra is not None else None,
        max_rows_per_partition=opts.max_rows_per_partition if ra is not None else None,
        n_partitions=partitions,
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        sources=tuple(f.path.name for f in files),
    )


def _default_position_meta(column: Any, ra: str, dec: str) -> Any:
    if column.name == ra:
        return column.updated(unit=column.unit or "deg", ucd=column.ucd or "pos.eq.ra;meta.main")
    if column.name == dec:
        return column.updated(unit=column.unit or "deg", ucd=column.ucd or "pos.eq.dec;meta.main")
    return column


@contextlib.contextmanager
def _wrap_foreign_errors(where: str, data_dir: Path) -> Iterator[None]:
    """Turn a stray pyarrow/OS error into an :class:`IngestError` that says where.

    A storage fault in ``data_dir`` passes through, for :func:`storage_errors` to name.
    """
    try:
        yield
    except SkyvaultError:
        raise
    except (pa.ArrowException, OSError, ValueError) as exc:
        if storage_fault(exc, under=data_dir) is not None:
            raise
        raise IngestError(f"{where} failed: {str(exc).splitlines()[0][:300]}") from exc
