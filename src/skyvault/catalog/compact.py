"""Compaction: fold a table's appended rows (catalog/append.py) into a new HATS version.

The delta files of the snapshot read when it starts are merged into the partitions they
belong to, inside a build that :func:`skyvault.catalog.layout.building` publishes with one
atomic link swap, exactly like an ingest (appends go on meanwhile: the append lock is held
only to read that snapshot, and for the swap):

* a partition without new rows is hard-linked from the base version (no copy, no rewrite);
* a partition with new rows is rewritten (base rows and delta rows, sorted by
  ``_healpix_29``); past the table's ``max_rows_per_partition`` it is split into its HEALPix
  children, recursively, as ingest would have;
* cells outside every base partition (where appended rows fell in the footprint's holes)
  become new partitions;
* margins: an unchanged partition keeps its margin file plus the new rows in its margin ring;
  a split partition's children take theirs from the parent's rows and margin (a child's ring
  lies inside the parent or its ring); a new partition's from the base partitions its ring
  overlaps; then ``_metadata``, ``partition_info.csv``, the properties, the table metadata
  and the bulk manifest are written as ingest writes them.

Then, under the append lock, the batches committed during the fold are written again as
deltas of the new version (cut by its partitions), and ``folded.json`` of the new version's
delta store records the snapshot and batch ids the version folded and the last batch it
carried; the version is published, the snapshot pointer names it, and the lock goes.  A
``kill -9`` before the publish leaves the old version and its deltas (the build is removed
by the next one); after it, the new version holds every committed row once, and a pointer
still naming the old base is read as "the folded snapshot plus the carried batches"
(catalog/append.py).  Queries planned on an old version keep reading its files: versions a
compaction replaced are kept ``keep_replaced`` seconds, with their delta stores.

:class:`BackgroundCompactor` runs compactions in a server when a table's appends pass a
:class:`CompactionPolicy`.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import shutil
import threading
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

from skyvault.bulk.manifest import stored_manifest, write_manifest
from skyvault.catalog.append import (
    HEALPIX_COLUMN,
    DeltaFile,
    Snapshot,
    append_lock,
    fsync_all,
    fsync_dir,
    fsync_file,
    log_entry,
    read_snapshot,
    status,
    write_deltas,
    write_pointer,
)
from skyvault.catalog.ingest import (
    MARGIN_DIR,
    _dictionary_columns,
    _sky_fraction,
    _write_properties,
)
from skyvault.catalog.layout import (
    TableName,
    _sync_tree,
    building,
    hats_pixel_file,
    list_tables,
    table_path,
)
from skyvault.catalog.metadata import TableMeta
from skyvault.catalog.partitioning import (
    HISTOGRAM_ORDER,
    SPATIAL_ORDER,
    Partitioning,
    margin_order,
)
from skyvault.catalog.registry import PartitionIndex
from skyvault.errors import IngestError, UsageError

__all__ = ["BackgroundCompactor", "CompactResult", "CompactionPolicy", "compact"]

log = logging.getLogger(__name__)

ROW_GROUP_ROWS = 32_768
KEEP_REPLACED_S = 3600.0
"""How long a version replaced by a compaction stays for the queries reading it, s."""


@dataclass(frozen=True)
class CompactResult:
    snapshot: int
    """The snapshot the new version holds."""
    version: str
    batches: int
    """Delta batches folded in (0: nothing to do, no new version)."""
    rows: int
    rewritten: int
    """Partitions written afresh (the others are hard links to the previous version)."""
    partitions: int


def compact(
    data_dir: Path,
    table: str,
    *,
    max_rows: int | None = None,
    keep_replaced: float = KEEP_REPLACED_S,
    on_folded: Callable[[], None] | None = None,
) -> CompactResult:
    """Fold the committed appends of ``table`` into a new HATS version, published atomically.

    Appends are held only twice, briefly: to read the snapshot the compaction starts from,
    and for the final swap.  Batches committed while the new version was being written are
    carried over as its deltas (re-cut against its partitions), so each is in the published
    table exactly once.  ``on_folded`` (tests) runs after the fold, before the swap.

    Versions this and earlier compactions replaced stay ``keep_replaced`` seconds after
    being replaced, with their delta files: a query planned on one of them (its tasks spread
    over Dask workers, say) reads the files it was planned on to its end.

    Raises :class:`~skyvault.errors.IngestError` when another compaction or an ingest of
    the table is running.
    """
    name = TableName.parse(table)
    visible = table_path(data_dir, name)
    with append_lock(data_dir, name):
        current = visible.resolve()
        meta = TableMeta.read(current)
        if meta.kind != "hats":
            raise UsageError(f"{name} has no positions: there is nothing to compact")
        pending = read_snapshot(current)
    if not pending.files:
        return CompactResult(pending.snapshot, current.name, 0, 0, 0, meta.n_partitions)
    with contextlib.ExitStack() as swap:
        with building(data_dir, name, keep_replaced=keep_replaced) as build:
            # The build holds the table's ingest lock: no other compaction or ingest now.
            with append_lock(data_dir, name):
                old = visible.resolve()
                snap = read_snapshot(old)
            meta = TableMeta.read(old)
            threshold = max_rows or meta.max_rows_per_partition or 1_000_000
            rewritten, parts, nrows = _fold(old, build.path, snap, meta, threshold)
            known = stored_manifest(old)
            linked = {
                e.path: e
                for e in (known.entries if known else ())
                if _same_file(old / e.path, build.path / e.path)
            }
            write_manifest(build.path, build.version, known=linked)
            _sync_tree(build.path)  # the publish's sync, under the lock, then has little to do
            if on_folded is not None:
                on_folded()
            # From here to the pointer's rewrite, appends wait (a short time: the batches
            # committed during the fold are copied, the version published).
            swap.enter_context(append_lock(data_dir, name))
            latest = read_snapshot(old)
            stores = old.parent.parent.parent / "deltas" / name.table
            store = stores / build.version
            store.mkdir(parents=True, exist_ok=True)
            _carry(old, build.path, store, snap, latest)
            folded = {
                "snapshot": snap.snapshot,
                "batch_ids": sorted(snap.batch_ids),
                "committed": snap.committed,
                "carried": latest.snapshot,
            }
            tmp = store / "folded.json.tmp"
            tmp.write_text(_json(folded))
            fsync_file(tmp)
            os.replace(tmp, store / "folded.json")
            fsync_dir(store)
            # building publishes the version on leaving this block, then the pointer follows
            # (a reader in between sees the new base and its carried batches: folded.json).
        _point(visible, latest, stores)  # still holding the append lock
    batches = len({f.snapshot for f in snap.files})
    return CompactResult(snap.snapshot, visible.resolve().name, batches, nrows, rewritten, parts)


def _point(visible: Path, latest: Snapshot, stores: Path) -> None:
    """After the publish: the pointer names the new version; unused delta stores go."""
    new = visible.resolve()
    write_pointer(new, latest.snapshot, latest.committed)
    _remove_unused_stores(new.parent, stores)


def _carry(old: Path, root: Path, store: Path, folded: Snapshot, latest: Snapshot) -> None:
    """Make the batches of ``old`` committed after ``folded`` (up to ``latest``) deltas of
    the build at ``root`` (delta store ``store``), with the same snapshot numbers.

    A delta file whose cell is a partition of the build, or overlaps none, is hard-linked
    as it is; the rows of the others (their cell's partition was split) are cut again by
    the build's partitions.  This runs while appends wait: linking keeps it short.
    """
    old_store = old.parent.parent.parent / "deltas" / old.parent.name / old.name
    index = PartitionIndex.read(root)
    cells = set(zip(index.orders.tolist(), index.pixels.tolist(), strict=True))
    schema = pq.read_schema(old / "dataset" / "_common_metadata")
    written: list[Path] = []
    log = store / "log"
    for n in range(folded.snapshot + 1, latest.snapshot + 1):
        entry = log_entry(old, n)
        files = [f for f in latest.files if f.snapshot == n]
        keep = [f for f in files if (f.order, f.pixel) in cells or not _overlaps(index, f)]
        recut = [f.path for f in files if f not in keep]
        entries: list[list[Any]] = []
        paths: list[Path] = []
        if recut:
            entries, paths = write_deltas(root, store, n, _sorted(_read(recut, schema)))
        for f in keep:
            rel = Path(f.path).relative_to(old_store)
            target = store / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(f.path, target)
            ranges = [list(r) for r in f.ranges]
            entries.append([f.order, f.pixel, f.start, f.stop, f.rows, rel.as_posix(), ranges])
            paths.extend((target.parent, target.parent.parent, target.parent.parent.parent))
        log.mkdir(parents=True, exist_ok=True)
        path = log / f"{n:012d}.json"
        entries.sort(key=lambda e: int(e[2]))
        path.write_text(json.dumps({**entry, "files": entries}))
        written.extend([*paths, path, log])
    if written:
        fsync_all([*written, store / "batches", store])


def _overlaps(index: PartitionIndex, f: DeltaFile) -> bool:
    """Whether delta file ``f``'s cell overlaps a partition of ``index``."""
    shift = 2 * (SPATIAL_ORDER - f.order)
    lo, hi = f.pixel << shift, (f.pixel + 1) << shift
    k = int(np.searchsorted(index.starts, hi, side="left")) - 1
    return k >= 0 and int(index.stops[k]) > lo


def _json(data: object) -> str:
    return json.dumps(data) + "\n"


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _remove_unused_stores(versions: Path, stores: Path) -> None:
    """Delete the delta stores of versions that no longer exist."""
    if not stores.is_dir():
        return
    alive = {p.name for p in versions.iterdir()}
    for store in stores.iterdir():
        if store.name not in alive:
            shutil.rmtree(store, ignore_errors=True)


def _read(paths: list[str], schema: pa.Schema) -> pa.Table:
    if not paths:
        return schema.empty_table()
    tables = [_read_one(p, schema) for p in paths]
    return pa.concat_tables(tables)


def _read_one(path: str, schema: pa.Schema) -> pa.Table:
    """One small file, without the dataset machinery of ``pq.read_table`` (1 ms a file)."""
    table = pq.ParquetFile(path).read()
    if table.schema.equals(schema):
        return table
    return table.select(schema.names).cast(schema)


def _sorted(table: pa.Table) -> pa.Table:
    hp = table.column(HEALPIX_COLUMN).to_numpy()
    return table.take(pa.array(np.argsort(hp, kind="stable")))


def _split(
    order: int, pixel: int, hp: NDArray[np.int64], threshold: int, finest: int
) -> list[tuple[int, int]]:
    """The cells ``(order, pixel)`` partitioning the sorted ``hp`` of one cell, each with at
    most ``threshold`` rows (or at ``finest`` order); empty cells are dropped."""
    if len(hp) <= threshold or order >= finest:
        return [(order, pixel)] if len(hp) else []
    out: list[tuple[int, int]] = []
    shift = 2 * (SPATIAL_ORDER - order - 1)
    for child in range(pixel * 4, pixel * 4 + 4):
        lo = np.searchsorted(hp, child << shift, side="left")
        hi = np.searchsorted(hp, (child + 1) << shift, side="left")
        out.extend(_split(order + 1, child, hp[lo:hi], threshold, finest))
    return out


def _bounds(hp: NDArray[np.int64], order: int, pixel: int) -> tuple[int, int]:
    """The slice of the sorted ``hp`` inside cell ``(order, pixel)``."""
    shift = 2 * (SPATIAL_ORDER - order)
    lo = int(np.searchsorted(hp, pixel << shift, side="left"))
    hi = int(np.searchsorted(hp, (pixel + 1) << shift, side="left"))
    return lo, hi


def _ring_rows(table: pa.Table, cells: NDArray[np.int64], ring: NDArray[np.int64]) -> pa.Table:
    """The rows of the sorted ``table`` whose margin cell (``cells``, sorted) is in ``ring``
    (distinct cells).

    Two binary searches per ring cell: no pass over all the rows of ``table``."""
    if not table.num_rows or not len(ring):
        return table.slice(0, 0)
    lo = np.searchsorted(cells, ring, side="left")
    hi = np.searchsorted(cells, ring, side="right")
    keep = hi > lo
    lo, hi = lo[keep], hi[keep]
    if not len(lo):
        return table.slice(0, 0)
    sizes = hi - lo
    offsets = np.repeat(lo - np.concatenate(([0], np.cumsum(sizes)[:-1])), sizes)
    return table.take(pa.array(np.arange(int(sizes.sum())) + offsets))


def _cut(table: pa.Table, order: int, pixel: int) -> pa.Table:
    """The rows of the sorted ``table`` inside cell ``(order, pixel)``."""
    shift = 2 * (SPATIAL_ORDER - order)
    hp = table.column(HEALPIX_COLUMN).to_numpy()
    lo = int(np.searchsorted(hp, pixel << shift, side="left"))
    hi = int(np.searchsorted(hp, (pixel + 1) << shift, side="left"))
    return table.slice(lo, hi - lo)


def _in_ring(table: pa.Table, ring: NDArray[np.int64], m_shift: int) -> pa.Table:
    if not table.num_rows or not len(ring):
        return table.slice(0, 0)
    cells = table.column(HEALPIX_COLUMN).to_numpy() >> m_shift
    return table.filter(pa.array(_member(cells, ring)))


def _member(values: NDArray[np.int64], sorted_set: NDArray[np.int64]) -> NDArray[np.bool_]:
    """``np.isin`` for a sorted, non-empty ``sorted_set`` (a binary search, no hashing)."""
    at = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return np.asarray(sorted_set[at] == values)


def _fold(
    old: Path, root: Path, snap: Snapshot, meta: TableMeta, threshold: int, workers: int = 2
) -> tuple[int, int, int]:
    """Write the compacted catalogue into ``root``; ``(rewritten, partitions, rows)``."""
    base = PartitionIndex.read(old)
    old_margin_root = old / MARGIN_DIR
    schema = pq.read_schema(old / "dataset" / "_common_metadata")
    m_order = margin_order(meta.margin_arcsec or 5.0)
    finest = min(HISTOGRAM_ORDER, m_order - 1)
    m_shift = 2 * (SPATIAL_ORDER - m_order)
    dictionary = _dictionary_columns(schema)

    by_cell: dict[tuple[int, int], list[str]] = defaultdict(list)
    for f in sorted(snap.files, key=lambda f: f.snapshot):
        by_cell[(f.order, f.pixel)].append(f.path)
    base_cells = {
        (o, p): f
        for o, p, f in zip(base.orders.tolist(), base.pixels.tolist(), base.files, strict=True)
    }
    # Each delta file is read once, on every worker (pyarrow releases the GIL as it reads).
    with ThreadPoolExecutor(max_workers=workers) as pool:
        delta_tables = list(pool.map(lambda p: _read_one(p, schema), [f.path for f in snap.files]))
        touched = sorted(c for c in by_cell if c in base_cells)
        base_hps = dict(
            zip(
                touched,
                pool.map(
                    lambda c: (
                        pq.ParquetFile(base_cells[c])
                        .read(columns=[HEALPIX_COLUMN])
                        .column(0)
                        .to_numpy()
                    ),
                    touched,
                ),
                strict=True,
            )
        )
    deltas = _sorted(pa.concat_tables(delta_tables) if delta_tables else schema.empty_table())
    del delta_tables
    delta_hp = deltas.column(HEALPIX_COLUMN).to_numpy()

    # Each output partition: (order, pixel, source cell, rewritten?).  Deciding the splits
    # needs only the _healpix_29 column; the rows are read when the partition is written.
    outputs: list[tuple[int, int, tuple[int, int], bool]] = []
    for cell in sorted(set(base_cells) | set(by_cell), key=lambda c: c[1] << 2 * (29 - c[0])):
        if cell not in by_cell:
            outputs.append((cell[0], cell[1], cell, False))
            continue
        lo, hi = _bounds(delta_hp, *cell)
        parts = [delta_hp[lo:hi]]
        if cell in base_hps:
            parts.append(base_hps.pop(cell))
        hp = np.sort(np.concatenate(parts))
        for order, pixel in _split(cell[0], cell[1], hp, threshold, max(finest, cell[0])):
            outputs.append((order, pixel, cell, True))

    counts = np.zeros(len(outputs), dtype=np.int64)
    part = Partitioning(
        np.array([o for o, *_ in outputs], dtype=np.int64),
        np.array([p for _, p, *_ in outputs], dtype=np.int64),
        counts,
    )
    ring_cells, ring_owners = part.margin_ring(m_order)
    rings: dict[int, NDArray[np.int64]] = defaultdict(lambda: np.empty(0, np.int64))
    if len(ring_owners):
        by_owner = np.argsort(ring_owners, kind="stable")
        owners_sorted = ring_owners[by_owner]
        bounds = np.flatnonzero(np.diff(owners_sorted)) + 1
        for chunk in np.split(by_owner, bounds):
            rings[int(ring_owners[chunk[0]])] = ring_cells[chunk]
    # Which outputs have new rows in their margin ring.
    delta_owners: set[int] = set()
    delta_cells = delta_hp >> m_shift  # sorted, as delta_hp is
    if len(delta_hp):
        # np.unique would hash 2M values; they are sorted already.
        cells = delta_cells[np.concatenate(([True], np.diff(delta_cells) != 0))]
        hit = _member(ring_cells, cells)
        delta_owners = set(ring_owners[hit].tolist())

    def write(table: pa.Table, path: Path, rel_root: Path) -> pq.FileMetaData:
        path.parent.mkdir(parents=True, exist_ok=True)
        collector: list[pq.FileMetaData] = []
        pq.write_table(
            table,
            path,
            row_group_size=ROW_GROUP_ROWS,
            compression="snappy",
            metadata_collector=collector,
            use_dictionary=dictionary,
            write_page_index=True,
        )
        collector[0].set_file_path(str(path.relative_to(rel_root)))
        return collector[0]

    def link(src: Path, path: Path, rel_root: Path) -> pq.FileMetaData:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.link(src, path)
        md = pq.read_metadata(path)
        md.set_file_path(str(path.relative_to(rel_root)))
        return md

    margin_root = root / MARGIN_DIR

    def one(
        index: int, cache: dict[str, pa.Table]
    ) -> tuple[pq.FileMetaData, pq.FileMetaData | None]:
        """Write output ``index`` and its margin: (main metadata, margin metadata).

        ``cache`` holds the rows of the output's source cell, read and sorted once for
        all its children when it was split."""
        order, pixel, source, rewrite = outputs[index]
        target = hats_pixel_file(root, order, pixel)
        if not rewrite:
            main = link(Path(base_cells[source]), target, root / "dataset")
        else:
            if "rows" not in cache:
                own = _read([base_cells[source]] if source in base_cells else [], schema)
                lo, hi = _bounds(delta_hp, *source)
                cache["own"] = own
                cache["rows"] = _sorted(pa.concat_tables([own, deltas.slice(lo, hi - lo)]))
            main = write(_cut(cache["rows"], order, pixel), target, root / "dataset")
        ring = rings.get(index, np.empty(0, np.int64))
        old_margin = hats_pixel_file(old_margin_root, *source)
        margin_target = hats_pixel_file(margin_root, order, pixel)
        unchanged = (order, pixel) == source and source in base_cells
        if unchanged and index not in delta_owners:
            if old_margin.is_file():
                return main, link(old_margin, margin_target, margin_root / "dataset")
            return main, None
        pieces = [_ring_rows(deltas, delta_cells, ring)]
        if unchanged:
            pieces.append(_read([str(old_margin)] if old_margin.is_file() else [], schema))
        elif source in base_cells:
            # A child of a split base partition: its ring is inside the parent or its ring.
            if "parent" not in cache:
                margin = _read([str(old_margin)] if old_margin.is_file() else [], schema)
                cache["parent"] = pa.concat_tables([cache["own"], margin])
            pieces.append(_in_ring(cache["parent"], ring, m_shift))
        else:
            # A new cell: base rows in its ring are in the base partitions the ring overlaps.
            pieces.append(
                _in_ring(_read(_base_files_near(base, ring, m_shift), schema), ring, m_shift)
            )
        margin_rows = _sorted(pa.concat_tables(pieces))
        if not margin_rows.num_rows:
            return main, None
        return main, write(margin_rows, margin_target, margin_root / "dataset")

    def group(indices: list[int]) -> list[tuple[pq.FileMetaData, pq.FileMetaData | None]]:
        cache: dict[str, pa.Table] = {}
        return [one(i, cache) for i in indices]

    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, (*_, source, _) in enumerate(outputs):
        groups[source].append(i)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        # One task per source cell (its children share its rows); list() re-raises a
        # worker's error.
        done_groups = list(pool.map(group, groups.values()))
    by_index = {
        i: r
        for indices, rs in zip(groups.values(), done_groups, strict=True)
        for i, r in zip(indices, rs, strict=True)
    }
    results = [by_index[i] for i in range(len(outputs))]
    main_md = [main for main, _ in results]
    margin_md = [m for _, m in results if m is not None]
    done = [(o, p, md.num_rows) for (o, p, *_), (md, _) in zip(outputs, results, strict=True)]
    margin_done = [
        (o, p, m.num_rows) for (o, p, *_), (_, m) in zip(outputs, results, strict=True) if m
    ]
    rewritten = sum(1 for *_, rewrite in outputs if rewrite)

    nrows = sum(n for *_, n in done)
    _finish(root, old, schema, main_md, done, {"hats_nrows": nrows})
    margin_root.mkdir(exist_ok=True)
    _finish(
        margin_root,
        old_margin_root,
        schema,
        margin_md,
        margin_done,
        {"hats_nrows": sum(n for *_, n in margin_done)},
    )
    new_meta = replace(
        meta,
        nrows=nrows,
        n_partitions=len(done),
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    )
    new_meta.write(root)
    return rewritten, len(done), nrows


def _base_files_near(base: PartitionIndex, ring: NDArray[np.int64], m_shift: int) -> list[str]:
    if not len(ring) or not len(base):
        return []
    lo, hi = ring << m_shift, (ring + 1) << m_shift
    j = np.searchsorted(base.starts, hi, side="left") - 1
    hit = (j >= 0) & (base.stops[np.maximum(j, 0)] > lo)
    return [base.files[i] for i in sorted(set(j[hit].tolist()))]


def _finish(
    root: Path,
    old_root: Path,
    schema: pa.Schema,
    metadata: list[pq.FileMetaData],
    done: list[tuple[int, int, int]],
    changes: dict[str, object],
) -> None:
    """``_metadata``, ``_common_metadata``, ``partition_info.csv`` and the properties."""
    dataset = root / "dataset"
    dataset.mkdir(parents=True, exist_ok=True)
    pq.write_metadata(schema, dataset / "_common_metadata")
    if metadata:
        combined = metadata[0]
        for md in metadata[1:]:
            combined.append_row_groups(md)
        combined.write_metadata_file(str(dataset / "_metadata"))
    else:
        pq.write_metadata(schema, dataset / "_metadata")
    with (root / "partition_info.csv").open("w") as fh:
        fh.write("Norder,Npix\n")
        for order, pixel, _ in sorted(done):
            fh.write(f"{order},{pixel}\n")
    props: dict[str, object] = {}
    try:
        lines = (old_root / "hats.properties").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#"):
            props[key.strip()] = value.strip()
    size = sum(p.stat().st_size for p in dataset.rglob("*.parquet"))
    props.update(changes)
    props["hats_order"] = max((o for o, _, _ in done), default=0)
    props["hats_estsize"] = size // 1024
    props["hats_creation_date"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M%Z")
    if "moc_sky_fraction" in props:
        props["moc_sky_fraction"] = f"{_sky_fraction(done):.5f}"
    _write_properties(root, props)


# --- background compaction ------------------------------------------------------------------


@dataclass(frozen=True)
class CompactionPolicy:
    """When a table's appended rows are folded in the background: after ``after_batches``
    batches or ``after_bytes`` bytes of delta files (0 turns that test off; both 0: never)."""

    after_batches: int = 200
    after_bytes: int = 512 * 1024 * 1024
    keep_replaced: float = KEEP_REPLACED_S

    def due(self, snap: Snapshot) -> bool:
        if not snap.files:
            return False
        if self.after_batches and snap.snapshot - snap.folded >= self.after_batches:
            return True
        if self.after_bytes:
            size = 0
            for f in snap.files:
                with contextlib.suppress(OSError):
                    size += os.stat(f.path).st_size
            return size >= self.after_bytes
        return False


class BackgroundCompactor:
    """A thread that compacts every table whose appends pass ``policy``, every ``interval``
    seconds (sooner after :meth:`poke`).

    Appends go on while it runs (:func:`compact` holds them only for the swap).  Several
    server processes may each run one: a table's build lock lets one compaction at a time
    through, the others skip that table until their next look.
    """

    def __init__(self, data_dir: Path, policy: CompactionPolicy, interval: float = 10.0) -> None:
        self.data_dir = data_dir
        self.policy = policy
        self.interval = interval
        self.compactions = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="skyvault-compactor", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop after the compaction under way, if any (waits up to ``timeout`` s)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def poke(self) -> None:
        """Look at the tables now (an append just committed)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._wake.wait(self.interval)
            self._wake.clear()

    def run_once(self) -> list[str]:
        """Compact every table that is due now; the names of those compacted."""
        done: list[str] = []
        for name, _ in list_tables(self.data_dir):
            if self._stop.is_set():
                break
            if not (self.data_dir / name.schema / f".{name.table}.snapshot").exists():
                continue  # never appended to
            try:
                snap = status(self.data_dir, str(name))
                if not self.policy.due(snap):
                    continue
                result = compact(self.data_dir, str(name), keep_replaced=self.policy.keep_replaced)
            except IngestError:
                continue  # an ingest or another compaction of the table is running
            except Exception:
                log.exception("background compaction of %s failed", name)
                continue
            if result.batches:
                self.compactions += 1
                done.append(str(name))
                log.info(
                    "compacted %s: %d batches, %d rows, snapshot %d",
                    name,
                    result.batches,
                    result.rows,
                    result.snapshot,
                )
        return done
