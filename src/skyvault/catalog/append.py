"""Rapid ingest: add a batch of rows to a published HATS table, atomically, in milliseconds.

A published table is an immutable version directory (:mod:`skyvault.catalog.layout`).  An
append does not rewrite it: it writes the batch as *delta* Parquet files beside it and
commits them by replacing one small pointer file::

    DIR/SCHEMA/TABLE -> .skyvault/versions/TABLE/<base>/         the base (HATS), untouched
    DIR/SCHEMA/.TABLE.snapshot                                   {"base", "snapshot", "committed"}
    DIR/SCHEMA/.skyvault/deltas/TABLE/<base>/
        folded.json                  batches already folded into <base> by compaction
        log/<n>.json                 snapshot n: its batch id, time, rows and delta files
        batches/<n>/Norder=K/Dir=D/Npix=N.parquet   the rows of snapshot n in partition (K, N)
    DIR/SCHEMA/.skyvault/locks/TABLE.append.lock   appenders and compaction take turns

Snapshot ``n`` of a base is the base plus the batches of ``log/1..n`` (numbering continues
across compactions: ``folded.json`` holds the snapshot a base already contains).  An append
(under the table's append lock) writes ``batches/<n+1>`` and ``log/<n+1>.json``, makes them
durable, then replaces the pointer with ``os.replace``: the batch is visible to every reader
that reads the pointer afterwards, and to none before.  A crash before the replace leaves
files no pointer names, which the next append removes.  A batch id already committed (in
the log or in ``folded.json``) is not written again, so a producer may retry.

Rows are grouped by the base partition they fall in (rows outside every partition by the
largest HEALPix cell that overlaps none), sorted by ``_healpix_29``, one file per cell: the
registry lists them with their ``_healpix_29`` range (:attr:`StoredTable.deltas`) and the
planner prunes them like partitions.  The pointer lives in the schema directory, so
replacing it changes that directory's modification time, which is what the registry
watches.  Compaction (:mod:`skyvault.catalog.compact`) folds the deltas into a new HATS
version.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
import os
import shutil
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

from skyvault.catalog.layout import (
    TableName,
    _syncfs,
    _syncfs_at,
    hats_pixel_file,
    schema_lock_file,
    table_path,
)
from skyvault.catalog.metadata import TableMeta
from skyvault.catalog.partitioning import SPATIAL_ORDER
from skyvault.errors import CatalogError, IngestError, UsageError
from skyvault.interprocess import file_lock
from skyvault.sky.coverage import healpix29

if TYPE_CHECKING:
    from skyvault.catalog.registry import PartitionIndex

__all__ = [
    "AppendResult",
    "DeltaFile",
    "Snapshot",
    "append",
    "read_snapshot",
    "snapshot_key",
    "status",
]

HEALPIX_COLUMN = "_healpix_29"
ROW_GROUP_ROWS = 32_768
MAX_RANGES = 16
"""Index intervals kept per delta file (the planner's cone ranges are as many)."""


class StaleVersion(Exception):
    """The version directory given is older than the one the snapshot pointer names."""


@dataclass(frozen=True)
class DeltaFile:
    """One delta file: the rows of one batch inside HEALPix cell ``(order, pixel)``."""

    order: int
    pixel: int
    start: int
    """Smallest ``_healpix_29`` in the file."""
    stop: int
    """Largest ``_healpix_29`` in the file, plus one."""
    rows: int
    path: str
    snapshot: int
    ranges: tuple[tuple[int, int], ...] = ()
    """Disjoint ``[lo, hi)`` ``_healpix_29`` intervals holding all its rows, tighter than
    ``[start, stop)``: a visit's field is several runs of the nested index."""


@dataclass(frozen=True)
class Snapshot:
    """What a reader of a table sees: its base version plus the committed deltas."""

    base: str
    snapshot: int
    """The commit counter: grows by one per appended batch, across compactions."""
    committed: str | None
    """When the last batch was committed (ISO 8601, UTC), None if never."""
    batch_ids: frozenset[str]
    files: tuple[DeltaFile, ...]
    folded: int
    """The snapshot the base already contains (compaction)."""

    @property
    def delta_rows(self) -> int:
        return sum(f.rows for f in self.files)


@dataclass(frozen=True)
class AppendResult:
    snapshot: int
    rows: int
    files: int
    written: bool
    """False when the batch id was already committed (nothing was written)."""


# --- where things are ---------------------------------------------------------------------


def _paths(version_dir: Path) -> tuple[Path, Path, str]:
    """``(pointer file, delta store, base version)`` of a resolved version directory."""
    table = version_dir.parent.name
    internal = version_dir.parent.parent.parent
    pointer = internal.parent / f".{table}.snapshot"
    return pointer, internal / "deltas" / table / version_dir.name, version_dir.name


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def snapshot_key(link: Path) -> str:
    """The contents of a table's pointer file ('' without one): part of the registry's
    cache key, so a commit makes the table be read again."""
    pointer = link.parent / f".{link.name}.snapshot"
    try:
        return pointer.read_text()
    except OSError:
        return ""


_ENTRIES: OrderedDict[tuple[str, int], dict[str, Any]] = OrderedDict()
_ENTRIES_LOCK = threading.Lock()
_ENTRIES_MAX = 100_000


def _log_entry(store: Path, n: int) -> dict[str, Any]:
    """Committed log entry ``n`` (never changes once committed, so it is cached)."""
    key = (str(store), n)
    with _ENTRIES_LOCK:
        cached = _ENTRIES.get(key)
    if cached is not None:
        return cached
    entry = _read_json(store / "log" / f"{n:012d}.json")
    if entry is None or entry.get("snapshot") != n:
        raise CatalogError(f"snapshot {n} of the table is missing or damaged")
    with _ENTRIES_LOCK:
        _ENTRIES[key] = entry
        while len(_ENTRIES) > _ENTRIES_MAX:
            _ENTRIES.popitem(last=False)
    return entry


def log_entry(version_dir: Path, n: int) -> dict[str, Any]:
    """Committed log entry ``n`` of the delta store of ``version_dir``."""
    return _log_entry(_paths(version_dir)[1], n)


def _bounds(version_dir: Path) -> tuple[Path, str, dict[str, Any], int, int]:
    """``(delta store, base, folded.json, first, last)``: the committed snapshot of
    ``version_dir`` is the base (holding snapshots up to ``first``) plus log entries
    ``first + 1 .. last``."""
    pointer_path, store, base = _paths(version_dir)
    folded = _read_json(store / "folded.json") or {}
    first = int(folded.get("snapshot", 0))
    pointer = _read_json(pointer_path)
    # Batches a compaction carried over (committed while it ran) are this base's own.
    last = max(first, int(folded.get("carried", first)))
    if pointer is not None and pointer.get("base") == base:
        last = max(first, int(pointer.get("snapshot", first)))
    elif pointer is not None and str(pointer.get("base", "")) > base:
        # Version names sort by time: the table was compacted after version_dir was resolved.
        raise StaleVersion(base)
    return store, base, folded, first, last


_IDS: OrderedDict[tuple[str, int], tuple[int, frozenset[str]]] = OrderedDict()
_IDS_LOCK = threading.Lock()


def committed_ids(version_dir: Path) -> tuple[int, frozenset[str]]:
    """``(snapshot, batch ids)`` of the committed snapshot of ``version_dir`` — what an
    append needs of :func:`read_snapshot`, without listing every delta file: the ids of
    the log entries seen before are kept, and only the entries committed since are read
    (an appender's cost per batch no longer grows with the batches since compaction)."""
    store, _, folded, first, last = _bounds(version_dir)
    key = (str(store), first)
    with _IDS_LOCK:
        cached = _IDS.get(key)
    if cached is not None and cached[0] <= last:
        start, ids = cached[0], set(cached[1])
    else:
        start, ids = first, set(folded.get("batch_ids", ()))
    for n in range(start + 1, last + 1):
        ids.add(str(_log_entry(store, n)["batch_id"]))
    result = (last, frozenset(ids))
    with _IDS_LOCK:
        _IDS[key] = result
        _IDS.move_to_end(key)
        while len(_IDS) > 64:
            _IDS.popitem(last=False)
    return result


def read_snapshot(version_dir: Path) -> Snapshot:
    """The committed snapshot of the table whose current version is ``version_dir``.

    A pointer naming an older base (a compaction or re-ingest published ``version_dir`` and
    has not yet rewritten it) means the base holds everything committed: the snapshot it
    folded in, plus the batches the compaction carried over (``folded.json``'s
    ``carried``), which are delta files of this base.
    """
    store, base, folded, first, last = _bounds(version_dir)
    ids = set(folded.get("batch_ids", ()))
    committed = folded.get("committed")
    files: list[DeltaFile] = []
    for n in range(first + 1, last + 1):
        entry = _log_entry(store, n)
        ids.add(str(entry["batch_id"]))
        committed = entry["committed"]
        for order, pixel, start, stop, rows, rel, *more in entry["files"]:
            ranges = tuple((int(a), int(b)) for a, b in more[0]) if more else ()
            files.append(DeltaFile(order, pixel, start, stop, rows, str(store / rel), n, ranges))
    return Snapshot(base, last, committed, frozenset(ids), tuple(files), first)


def status(data_dir: Path, table: str) -> Snapshot:
    """The current snapshot of ``table`` (``SCHEMA.TABLE``): id, last commit time, deltas."""
    name = TableName.parse(table)
    link = table_path(data_dir, name)
    for _ in range(10):
        try:
            return read_snapshot(link.resolve())
        except StaleVersion:
            continue
    return read_snapshot(link.resolve())


@contextlib.contextmanager
def append_lock(data_dir: Path, name: TableName) -> Iterator[None]:
    """Hold the table's append lock (waiting for it): appends and compaction take turns."""
    with file_lock(schema_lock_file(data_dir, name.schema, f"{name.table}.append"), wait=True):
        yield


def write_pointer(version_dir: Path, snapshot: int, committed: str | None) -> None:
    """Atomically make ``snapshot`` of base ``version_dir`` the table's current one."""
    tmp = stage_pointer(version_dir, snapshot, committed)
    fsync_file(tmp)
    swap_pointer(tmp)


def stage_pointer(version_dir: Path, snapshot: int, committed: str | None) -> Path:
    """Write the pointer for ``snapshot`` to a temporary file beside the pointer (not yet
    durable: the caller syncs it, with the batch's files, before :func:`swap_pointer`)."""
    pointer, _, base = _paths(version_dir)
    tmp = pointer.with_name(f"{pointer.name}.{uuid.uuid4().hex[:8]}.tmp")
    text = json.dumps({"base": base, "snapshot": snapshot, "committed": committed}) + "\n"
    try:
        tmp.write_bytes(text.encode())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def swap_pointer(tmp: Path) -> None:
    """Replace the pointer by ``tmp`` (already durable) and make the rename durable."""
    pointer = tmp.with_name(tmp.name.rsplit(".", 2)[0])
    try:
        os.replace(tmp, pointer)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(pointer.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


# --- the append -----------------------------------------------------------------------------


def append(
    data_dir: Path,
    table: str,
    batch: pa.Table | Sequence[str | Path],
    batch_id: str,
) -> AppendResult:
    """Add the rows of ``batch`` (an Arrow table, or input files) to ``table`` atomically.

    The table must be a published HATS table; the batch must have its columns (without
    ``_healpix_29``, which is computed here), in any order, of types that cast to the
    stored ones.  Re-sending a committed ``batch_id`` does nothing.

    Raises
    ------
    CatalogNotFound
        No such table.
    UsageError
        The table has no positions, or the batch id is empty.
    IngestError
        The batch does not fit the table (columns, types, positions).
    """
    if not batch_id or len(batch_id) > 256:
        raise UsageError("a batch id must be 1 to 256 characters long")
    name = TableName.parse(table)
    visible = table_path(data_dir, name)
    rows = batch if isinstance(batch, pa.Table) else _read_files(batch)
    with append_lock(data_dir, name):
        version_dir = visible.resolve()
        stored, index, ra, dec = _version_state(version_dir, name)
        current, batch_ids = committed_ids(version_dir)
        if batch_id in batch_ids:
            return AppendResult(current, 0, 0, written=False)
        data = conform(rows, stored, ra, dec)
        n = current + 1
        _, store, _ = _paths(version_dir)
        entry_files, written = write_deltas(version_dir, store, n, data, index)
        committed = now_iso()
        entry = {
            "snapshot": n,
            "batch_id": batch_id,
            "committed": committed,
            "rows": data.num_rows,
            "files": entry_files,
        }
        log = store / "log"
        log.mkdir(parents=True, exist_ok=True)
        (log / f"{n:012d}.json").write_text(json.dumps(entry))
        # Everything the pointer will name, and the new pointer itself (still under a
        # temporary name), is made durable by one sync; then the rename, and its directory.
        tmp = stage_pointer(version_dir, n, committed)
        try:
            fsync_all([*written, log / f"{n:012d}.json", log, store, store / "batches", tmp])
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        swap_pointer(tmp)
    return AppendResult(n, data.num_rows, len(entry_files), written=True)


_VersionState = tuple[pa.Schema, "PartitionIndex", str, str]
_STATE: OrderedDict[tuple[str, int, int], _VersionState] = OrderedDict()
_STATE_LOCK = threading.Lock()
_STATE_MAX = 64


def _version_state(version_dir: Path, name: TableName) -> _VersionState:
    """``(stored schema, partitions, ra column, dec column)`` of a published version, read once per
    process: a version directory never changes once published (a compaction or re-ingest
    publishes a new one), so only the key — its path and ``partition_info.csv``'s inode and
    time, in case a directory is ever re-created under the same name — is checked."""
    from skyvault.catalog.registry import PartitionIndex

    try:
        info = (version_dir / "partition_info.csv").stat()
        key = (str(version_dir), info.st_ino, info.st_mtime_ns)
    except OSError:
        key = (str(version_dir), -1, -1)
    with _STATE_LOCK:
        cached = _STATE.get(key)
    if cached is not None:
        return cached
    meta = TableMeta.read(version_dir)
    if meta.kind != "hats" or meta.ra_column is None or meta.dec_column is None:
        raise UsageError(
            f"{name} has no positions: only HEALPix-partitioned tables take appends",
            hint="ingest it with --ra and --dec",
        )
    state = (
        pq.read_schema(version_dir / "dataset" / "_common_metadata"),
        PartitionIndex.read(version_dir),
        meta.ra_column,
        meta.dec_column,
    )
    with _STATE_LOCK:
        _STATE[key] = state
        while len(_STATE) > _STATE_MAX:
            _STATE.popitem(last=False)
    return state


def _read_files(paths: Sequence[str | Path]) -> pa.Table:
    from skyvault.catalog.ingest import _open_consistent, expand_inputs

    files = _open_consistent(expand_inputs(paths))
    batches = [b for f in files for b in f.batches(None, 262_144)]
    if not batches:
        return files[0].schema.empty_table()
    return pa.Table.from_batches(batches).combine_chunks()


def conform(data: pa.Table, stored: pa.Schema, ra: str, dec: str) -> pa.Table:
    """``data`` with the stored columns in the stored order and types, ``_healpix_29``
    computed, sorted by it; refuses missing or extra columns and bad positions."""
    wanted = [f for f in stored if f.name != HEALPIX_COLUMN]
    names = set(data.column_names)
    missing = [f.name for f in wanted if f.name not in names]
    extra = sorted(names - {f.name for f in stored})
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"lacks {', '.join(missing)}")
        if extra:
            parts.append(f"has columns the table has not: {', '.join(extra)}")
        raise IngestError(
            f"the batch {' and '.join(parts)}",
            hint="a batch must have exactly the table's columns",
        )
    columns = []
    for field in wanted:
        column = data.column(field.name)
        if column.type != field.type:
            try:
                column = column.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise IngestError(
                    f"cannot convert {column.type} to the table's {field.type}",
                    column=field.name,
                ) from None
        columns.append(column)
    ra_v = _coordinate(columns[[f.name for f in wanted].index(ra)], ra, 0.0, 360.0, True)
    dec_v = _coordinate(columns[[f.name for f in wanted].index(dec)], dec, -90.0, 90.0, False)
    hp = healpix29(ra_v, dec_v) if len(ra_v) else np.empty(0, np.int64)
    order = np.argsort(hp, kind="stable")
    table = pa.Table.from_arrays([pa.array(hp, pa.int64()), *columns], schema=stored)
    return table.take(pa.array(order))


def _coordinate(
    column: pa.ChunkedArray, name: str, low: float, high: float, high_open: bool
) -> NDArray[np.float64]:
    if column.null_count:
        raise IngestError("position is empty (null)", column=name)
    values = np.asarray(column.to_numpy(), dtype=np.float64)
    if not np.isfinite(values).all():
        raise IngestError("position is NaN or infinite", column=name)
    bad = (values < low) | (values >= high if high_open else values > high)
    if bad.any():
        raise IngestError(f"value outside the valid range: {float(values[bad][0])!r}", column=name)
    return values


def cells_of(
    hp: NDArray[np.int64], index: PartitionIndex
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """``(order, pixel)`` of the cell each row goes to: the partition of ``index`` holding
    it, else the largest HEALPix cell holding it that overlaps no partition (the same for
    every row of that cell, so these cells never overlap each other or a partition)."""
    starts, stops = index.starts, index.stops
    orders = np.full(len(hp), -1, dtype=np.int64)
    pixels = np.zeros(len(hp), dtype=np.int64)
    if len(starts):
        j = np.searchsorted(starts, hp, side="right") - 1
        inside = (j >= 0) & (hp < stops[np.maximum(j, 0)])
        orders[inside] = index.orders[j[inside]]
        pixels[inside] = index.pixels[j[inside]]
    for order in range(SPATIAL_ORDER + 1):
        todo = orders < 0
        if not todo.any():
            break
        shift = 2 * (SPATIAL_ORDER - order)
        cell = hp[todo] >> shift
        lo, hi = cell << shift, (cell + 1) << shift
        free = np.ones(len(cell), dtype=bool)
        if len(starts):
            k = np.searchsorted(starts, hi, side="left") - 1
            free = (k < 0) | (stops[np.maximum(k, 0)] <= lo)
        idx = np.flatnonzero(todo)[free]
        orders[idx] = order
        pixels[idx] = cell[free]
    return orders, pixels


def key_ranges(hp: NDArray[np.int64], most: int) -> list[list[int]]:
    """At most ``most`` disjoint ``[lo, hi)`` intervals covering the sorted ``hp``: split at
    the widest gaps between consecutive values (the tightest such cover)."""
    if not len(hp):
        return []
    gaps = np.diff(hp)
    cut = np.sort(np.argsort(gaps, kind="stable")[::-1][: most - 1])
    cut = cut[gaps[cut] > 1]
    starts = np.concatenate([[0], cut + 1])
    stops = np.concatenate([cut, [len(hp) - 1]])
    return [[int(hp[a]), int(hp[b]) + 1] for a, b in zip(starts, stops, strict=True)]


@functools.cache
def _fsync_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=16, thread_name_prefix="fsync")


def fsync_all(paths: Sequence[Path]) -> None:
    """Make every file and directory of ``paths`` durable.

    On Linux one ``syncfs(2)`` of their file system does it: one journal commit, where an
    fsync per file (in parallel threads, each batch starting its own) cost a 10k-row append
    ~45 ms of its ~90 (``benchmarks/results/append.md``).  Elsewhere each is fsynced, in
    parallel on a pool kept for the process.
    """
    unique = list(dict.fromkeys(paths))
    if not unique:
        return
    syncfs = _syncfs()
    if syncfs is not None:
        # one per file system holding them (normally one: the data directory's)
        devices = {os.stat(path).st_dev: path for path in reversed(unique)}
        for path in devices.values():
            _syncfs_at(syncfs, path)
        return
    list(_fsync_pool().map(fsync_file, unique))


def write_deltas(
    version_dir: Path,
    store: Path,
    n: int,
    data: pa.Table,
    index: PartitionIndex | None = None,
) -> tuple[list[list[Any]], list[Path]]:
    """Write snapshot ``n``'s files (one per cell of ``index``, by default the partitions
    of ``version_dir``); returns the log's file entries and the files and directories
    written (to be made durable)."""
    from skyvault.catalog.registry import PartitionIndex

    batch_dir = store / "batches" / f"{n:012d}"
    shutil.rmtree(batch_dir, ignore_errors=True)  # left by a crashed append of n
    (store / "log" / f"{n:012d}.json").unlink(missing_ok=True)
    if index is None:
        index = PartitionIndex.read(version_dir)
    hp = data.column(HEALPIX_COLUMN).to_numpy()
    orders, pixels = cells_of(hp, index)
    entries: list[list[Any]] = []
    if not len(hp):
        return entries, []
    # hp is sorted and cells are disjoint intervals, so each cell is one run of rows.
    key = orders * (1 << 40) + pixels
    bounds = np.flatnonzero(np.diff(key)) + 1
    starts = np.concatenate([[0], bounds])
    stops = np.concatenate([bounds, [len(hp)]])
    written: list[Path] = []
    # Dictionary encoding only where it can pay: numbers (positions, ids, fluxes) rarely
    # repeat, and trying it first cost 2/3 of a file's encoding time (0.7 vs 2.0 ms CPU for
    # 8k rows) for a larger file.
    dictionary = [
        f.name
        for f in data.schema
        if not (pa.types.is_floating(f.type) or pa.types.is_integer(f.type))
    ]
    for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
        order, pixel = int(orders[a]), int(pixels[a])
        path = hats_pixel_file(batch_dir, order, pixel)
        # hats_pixel_file puts "dataset/" in front; deltas do not need it
        path = batch_dir / path.relative_to(batch_dir / "dataset")
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(
            data.slice(a, b - a),
            path,
            row_group_size=ROW_GROUP_ROWS,
            compression="snappy",
            write_page_index=True,
            use_dictionary=dictionary,
        )
        written.extend((path, path.parent, path.parent.parent))
        rel = path.relative_to(store).as_posix()
        ranges = key_ranges(hp[a:b], MAX_RANGES)
        entries.append([order, pixel, int(hp[a]), int(hp[b - 1]) + 1, b - a, rel, ranges])
    written.append(batch_dir)
    return entries, written
