"""The registry of published tables under a data root: metadata and where the files are.

The registry is what the ADQL checker resolves names against and what the engine asks for
files.  It re-reads a table's metadata only when the table's link points at a new version
(after a re-ingest), and lists the directories only when one of them changed: publishing,
replacing or deleting a table replaces an entry of its schema directory, and a new schema
is a new entry of the data root, each of which changes that directory's modification time.
So a lookup costs a ``stat`` per schema, which matters for a cone search answered in a few
milliseconds.  A directory modified in the last :data:`SETTLE_S` seconds is listed anyway:
file-system timestamps are coarse (a kernel tick), so two changes in one tick look alike.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

from skyvault.catalog.append import Snapshot, StaleVersion, read_snapshot, snapshot_key
from skyvault.catalog.layout import TableName, list_tables
from skyvault.catalog.metadata import TableMeta, fov_region_radius
from skyvault.catalog.partitioning import SPATIAL_ORDER
from skyvault.errors import CatalogError, CatalogNotFound

__all__ = ["PartitionIndex", "Registry", "StoredTable"]

SETTLE_S = 2.0
"""How long after a directory changed its listing is not trusted to be current."""


@dataclass(frozen=True)
class PartitionIndex:
    """The partitions of a HATS catalogue, sorted by their start in ``_healpix_29`` space."""

    orders: NDArray[np.int64]
    pixels: NDArray[np.int64]
    starts: NDArray[np.int64]
    stops: NDArray[np.int64]
    files: tuple[str, ...]

    @classmethod
    def read(cls, root: Path) -> PartitionIndex:
        """Read ``partition_info.csv`` of the catalogue at ``root``."""
        path = root / "partition_info.csv"
        try:
            lines = path.read_text().split()[1:]
            rows = np.array([line.split(",") for line in lines], dtype=np.int64).reshape(-1, 2)
        except (OSError, ValueError) as exc:
            raise CatalogError(f"unreadable partition list of {root.name}: {exc}") from None
        orders, pixels = rows[:, 0], rows[:, 1]
        shift = 2 * (SPATIAL_ORDER - orders)
        starts = pixels << shift
        order = np.argsort(starts)
        orders, pixels, starts = orders[order], pixels[order], starts[order]
        stops = (pixels + 1) << (2 * (SPATIAL_ORDER - orders))
        files = tuple(
            str(
                root / "dataset" / f"Norder={o}" / f"Dir={p // 10000 * 10000}" / f"Npix={p}.parquet"
            )
            for o, p in zip(orders.tolist(), pixels.tolist(), strict=True)
        )
        return cls(orders, pixels, starts, stops, files)

    @classmethod
    def of_deltas(cls, snapshot: Snapshot) -> PartitionIndex:
        """The delta files of ``snapshot`` as an index: an entry per ``_healpix_29`` interval
        of each file (a file with several intervals is listed several times)."""
        entries = sorted(
            (
                (lo, hi, f.snapshot, f.order, f.pixel, f.path)
                for f in snapshot.files
                for lo, hi in (f.ranges or ((f.start, f.stop),))
            ),
            key=lambda e: (e[0], e[2]),
        )
        return cls(
            np.array([e[3] for e in entries], dtype=np.int64),
            np.array([e[4] for e in entries], dtype=np.int64),
            np.array([e[0] for e in entries], dtype=np.int64),
            np.array([e[1] for e in entries], dtype=np.int64),
            tuple(e[5] for e in entries),
        )

    def __len__(self) -> int:
        return len(self.files)


@dataclass(frozen=True)
class StoredTable:
    """A published table: its metadata, its version directory, and its files."""

    meta: TableMeta
    root: Path
    partitions: PartitionIndex | None
    margin: PartitionIndex | None
    margin_arcsec: float | None = None
    """The margin catalogue's threshold (``hats_margin_threshold`` of ``margin/properties``):
    it holds every row closer than this to a partition, from outside it."""
    deltas: PartitionIndex | None = None
    """Appended rows not yet compacted (catalog/append.py): one entry per delta file, its
    cell and its ``_healpix_29`` range ``[starts, stops)``, sorted by start; cells may repeat."""
    snapshot: Snapshot | None = None

    @functools.cached_property
    def all_files(self) -> tuple[str, ...]:
        """Every file of the table: partitions, then delta files (each once); made once
        per table version, as planning a scan counts them."""
        if self.partitions is not None:
            deltas = tuple(dict.fromkeys(self.deltas.files)) if self.deltas else ()
            return self.partitions.files + deltas
        return tuple(sorted(str(p) for p in (self.root / "dataset").glob("part-*.parquet")))


class Registry:
    """Published tables under ``data_dir``; safe to share between threads."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._lock = threading.Lock()
        self._cache: dict[TableName, tuple[str, StoredTable]] = {}
        self._schemas: tuple[str, ...] = ()
        self._listed: tuple[int, ...] | None = None

    def _stamp(self, schemas: tuple[str, ...]) -> tuple[int, ...] | None:
        """Modification times of the data root and ``schemas``; None when any is recent
        (or missing), so that the directories are listed."""
        stamps = []
        limit = time.time_ns() - int(SETTLE_S * 1e9)
        for path in (self.data_dir, *(self.data_dir / s for s in schemas)):
            try:
                mtime = os.stat(path).st_mtime_ns
            except OSError:
                return None
            if mtime > limit:
                return None
            stamps.append(mtime)
        return tuple(stamps)

    def refresh(self) -> list[StoredTable]:
        """Every table, re-reading only those whose version changed since last time."""
        with self._lock:
            schemas, listed = self._schemas, self._listed
        stamp = self._stamp(schemas)
        if stamp is not None and stamp == listed:
            with self._lock:
                return [entry for _, entry in self._cache.values()]
        schemas = _schema_dirs(self.data_dir)
        stamp = self._stamp(schemas)  # taken before listing: a change during it shows next time
        found: dict[TableName, tuple[str, StoredTable]] = {}
        for name, resolved in list_tables(self.data_dir):
            link = self.data_dir / name.schema / name.table
            try:
                version = os.readlink(link) if link.is_symlink() else str(resolved)
                # A commit of appended rows rewrites the table's snapshot pointer.
                version += "\n" + snapshot_key(link)
            except OSError:
                continue
            with self._lock:
                cached = self._cache.get(name)
            if cached is not None and cached[0] == version:
                found[name] = cached
                continue
            try:
                found[name] = (version, self._load(resolved, link))
            except CatalogError:
                continue  # a table that cannot be read is not published
        with self._lock:
            self._cache = found
            self._schemas, self._listed = schemas, stamp
        return [entry for _, entry in found.values()]

    def tables(self) -> list[TableMeta]:
        """Metadata of every published table."""
        return [t.meta for t in self.refresh()]

    def get(self, schema: str, table: str) -> StoredTable:
        """The table ``schema.table`` (exact names, as stored)."""
        key = TableName(schema, table)
        with self._lock:
            cached = self._cache.get(key)
        if cached is None:
            self.refresh()
            with self._lock:
                cached = self._cache.get(key)
        if cached is None:
            raise CatalogNotFound(f"no table {schema}.{table}")
        return cached[1]

    @staticmethod
    def _load(root: Path, link: Path | None = None) -> StoredTable:
        for _ in range(10):
            try:
                return Registry._load_version(root)
            except StaleVersion:
                # A compaction published a newer version after ``root`` was resolved.
                if link is None:
                    break
                root = link.resolve()
        return Registry._load_version(root)

    @staticmethod
    def _load_version(root: Path) -> StoredTable:
        meta = TableMeta.read(root)
        if meta.kind == "hats":
            margin_root = root / "margin"
            margin = threshold = None
            if margin_root.is_dir():
                margin = PartitionIndex.read(margin_root)
                threshold = _margin_threshold(margin_root)
            snapshot = read_snapshot(root)
            deltas = PartitionIndex.of_deltas(snapshot) if snapshot.files else None
            if deltas is not None:
                meta = dataclasses.replace(meta, nrows=meta.nrows + snapshot.delta_rows)
            table = StoredTable(
                meta, root, PartitionIndex.read(root), margin, threshold, deltas, snapshot
            )
            return _with_region_radius(table)
        return StoredTable(meta, root, None, None)


def _schema_dirs(data_dir: Path) -> tuple[str, ...]:
    """Names of the directories of the data root (schemas; hidden ones excluded)."""
    try:
        return tuple(
            sorted(
                e.name for e in os.scandir(data_dir) if e.is_dir() and not e.name.startswith(".")
            )
        )
    except OSError:
        return ()


def _margin_threshold(margin_root: Path) -> float | None:
    """``hats_margin_threshold`` (arcseconds) from the margin catalogue's properties.

    The margin's own properties are what describe the files that are there; without a
    readable value the margin is not used (a cross-match then reads the partner whole).
    """
    for name in ("hats.properties", "properties"):
        try:
            text = (margin_root / name).read_text()
        except OSError:
            continue
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() == "hats_margin_threshold":
                try:
                    threshold = float(value.strip())
                except ValueError:
                    return None
                return threshold if threshold > 0 else None
    return None


#: ObsCore 1.1's columns of a footprint and of the diameter of the circle about
#: ``s_ra``/``s_dec`` holding it, by name and utype.
_OBSCORE_FOOTPRINT = {
    "s_region": "obscore:char.spatialaxis.coverage.support.area",
    "s_fov": "obscore:char.spatialaxis.coverage.bounds.extent.diameter",
}


def _with_region_radius(table: StoredTable) -> StoredTable:
    """``table`` with its :attr:`~TableMeta.region_radius` computed when the metadata has
    none: an ObsCore table (positions ``s_ra``/``s_dec``; ``s_region`` and ``s_fov`` with
    their ObsCore utypes) ingested before the image ingest recorded it, whose region
    predicates would otherwise prune nothing.

    The radius is the one the ingest records (half the largest ``s_fov``), taken from the
    Parquet statistics of the files' footers.  Nothing is written — processes serving the
    data root may be reading it — so each process computes it once per table version (the
    registry keeps what it loaded).  When it cannot be known (a NULL ``s_fov``, a row group
    without statistics, an unreadable footer) it stays None: no pruning, same answers.
    """
    meta = table.meta
    if meta.region_radius is not None or (meta.ra_column, meta.dec_column) != ("s_ra", "s_dec"):
        return table
    utypes = {c.name: (c.utype or "").lower() for c in meta.columns}
    if any(utypes.get(name) != utype for name, utype in _OBSCORE_FOOTPRINT.items()):
        return table
    largest = _largest_value(table.all_files, "s_fov")
    if largest is None:
        return table
    radius = fov_region_radius(largest) if largest > -np.inf else 0.0
    return dataclasses.replace(table, meta=dataclasses.replace(meta, region_radius=radius))


def _largest_value(files: tuple[str, ...], column: str) -> float | None:
    """The largest value of the floating-point ``column`` in ``files`` from their row
    groups' statistics (-inf: no rows); None when a row group has a NULL in it or no
    statistics, or a footer cannot be read."""
    largest = -np.inf
    try:
        for path in files:
            footer = pq.read_metadata(path)
            where = [footer.schema.column(j).path for j in range(footer.num_columns)]
            if column not in where:
                return None
            index = where.index(column)
            for g in range(footer.num_row_groups):
                group = footer.row_group(g)
                if group.num_rows == 0:
                    continue
                stats = group.column(index).statistics
                if stats is None or not stats.has_min_max or not stats.has_null_count:
                    return None
                if stats.null_count:
                    return None
                largest = max(largest, float(stats.max))
    except (OSError, pa.ArrowException, TypeError, ValueError):
        return None
    return largest if np.isfinite(largest) or largest == -np.inf else None
