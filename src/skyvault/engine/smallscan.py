"""The index path for small sky scans: read the few row groups a cone needs without DuckDB.

A cone of an arcminute touches one or two row groups of a table sorted by ``_healpix_29``.
Handing DuckDB ``read_parquet([...]) WHERE _healpix_29 in ranges`` for that costs several
milliseconds of fixed work per query (binding the file list, planning the OR'ed ranges,
scheduling the scan) for a few kilobytes of data; PostgreSQL + q3c answers the same cone from
its index in about three.  So when a scan's ranges select few rows, the executor reads them
here instead and gives DuckDB a small in-memory Arrow table:

1. each file's footer is parsed once and kept (files are immutable: a re-ingest publishes a
   new version directory), with the ``_healpix_29`` min/max of every row group as arrays;
2. the row groups whose min/max overlap the ranges are found with ``searchsorted``;
3. only those row groups, and only the columns the query names, are decoded by pyarrow
   (which releases the GIL): ``_healpix_29`` first, the rows outside the ranges found with a
   binary search on it, and the other columns only for the row groups that hold rows (a
   small cone inside a row group's min/max often holds none).

DuckDB then runs the query's exact predicates over the rows that remain, exactly as it would
over the view, so both paths give the same answer (``tests/engine/test_smallscan.py`` runs
queries both ways).  pyarrow and DuckDB have no "read these row groups of these files, then
cut to these key ranges" call of their own, hence this module.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

from skyvault.catalog.ingest import HEALPIX_COLUMN

__all__ = ["SMALL_SCAN_ROWS", "FooterCache", "read_small_scan"]

SMALL_SCAN_ROWS = 4 * 32_768
"""Largest number of rows (in whole row groups) read by this path; bigger scans go to
DuckDB, whose parallel scan is the better tool once there is real data to read."""


@dataclass(frozen=True, eq=False)
class FileFooter:
    """What is needed of one Parquet file's footer to pick row groups."""

    metadata: pq.FileMetaData
    lows: NDArray[np.int64]
    """Smallest ``_healpix_29`` of each row group."""
    highs: NDArray[np.int64]
    """Largest ``_healpix_29`` of each row group (inclusive)."""
    rows: NDArray[np.int64]
    path: str = ""
    schema: pa.Schema | None = None
    """The file's Arrow schema (converting it per query costs a millisecond for a file of a
    thousand columns)."""
    idle: list[pq.ParquetFile] = field(default_factory=list)
    """Open readers of the file not in use (a reader is used by one thread at a time)."""


class FooterCache:
    """Parsed footers of the most recently used files (thread-safe, LRU).

    It also keeps open readers of the files, which saves setting one up per query (a
    fifth of reading a row group, and more than reading it for a file of a thousand
    columns): a reader is lent to one thread at a time, and a thread that finds none idle
    opens another, which it returns for the next query.  Up to ``idle_readers`` readers of
    a file are kept, so that as many queries of one file at once (a server's worker
    threads) stop opening readers once each has one; at most ``open_files`` files keep
    readers (memory maps) open, and a replaced table's old files are released as newer
    files push them out.  A footer is parsed once even when several threads ask for it
    at the same time.
    """

    def __init__(self, capacity: int = 4096, open_files: int = 64, idle_readers: int = 16) -> None:
        self.capacity = capacity
        self.open_files = open_files
        self.idle_readers = idle_readers
        self._lock = threading.Lock()
        self._footers: OrderedDict[str, FileFooter | None] = OrderedDict()
        self._open: OrderedDict[int, FileFooter] = OrderedDict()
        self._loading: dict[str, threading.Lock] = {}

    @contextlib.contextmanager
    def reader(self, footer: FileFooter) -> Iterator[pq.ParquetFile]:
        """An open reader of ``footer``'s file, for this thread until the block ends."""
        with self._lock:
            handle = footer.idle.pop() if footer.idle else None
        if handle is None:
            handle = pq.ParquetFile(footer.path, metadata=footer.metadata, memory_map=True)
        try:
            yield handle
        finally:
            with self._lock:
                if len(footer.idle) < self.idle_readers:
                    footer.idle.append(handle)
                    self._open[id(footer)] = footer
                    self._open.move_to_end(id(footer))
                while len(self._open) > self.open_files:
                    _, oldest = self._open.popitem(last=False)
                    oldest.idle.clear()

    def get(self, path: str) -> FileFooter | None:
        """The footer of ``path``, or None when row-group statistics are missing."""
        with self._lock:
            if path in self._footers:
                self._footers.move_to_end(path)
                return self._footers[path]
            loading = self._loading.setdefault(path, threading.Lock())
        with loading:  # one thread parses it; the others wait for its result
            with self._lock:
                if path in self._footers:
                    return self._footers[path]
            try:
                footer = _read_footer(path)
                with self._lock:
                    self._footers[path] = footer
                    while len(self._footers) > self.capacity:
                        self._footers.popitem(last=False)
            finally:
                with self._lock:
                    self._loading.pop(path, None)
        return footer


def _read_footer(path: str) -> FileFooter | None:
    metadata = pq.read_metadata(path)
    names = metadata.schema.names
    if HEALPIX_COLUMN not in names:
        return None
    index = names.index(HEALPIX_COLUMN)
    count = metadata.num_row_groups
    lows = np.empty(count, dtype=np.int64)
    highs = np.empty(count, dtype=np.int64)
    rows = np.empty(count, dtype=np.int64)
    for i in range(count):
        group = metadata.row_group(i)
        stats = group.column(index).statistics
        if stats is None or not stats.has_min_max:
            return None
        lows[i], highs[i], rows[i] = stats.min, stats.max, group.num_rows
    return FileFooter(metadata, lows, highs, rows, path, metadata.schema.to_arrow_schema())


def read_small_scan(
    files: Sequence[str],
    ranges: NDArray[np.int64],
    columns: Sequence[str] | None,
    footers: FooterCache,
    max_rows: int = SMALL_SCAN_ROWS,
) -> pa.Table | None:
    """The rows of ``files`` whose ``_healpix_29`` lies in ``ranges``, or None when too many.

    ``ranges`` are sorted, disjoint, half-open ``[lo, hi)`` rows of an ``(n, 2)`` array;
    ``columns`` limits the columns read (None: all).  None is returned, and nothing read,
    when the overlapping row groups hold more than ``max_rows`` rows or a file lacks the
    statistics to choose: the caller then scans with DuckDB.
    """
    chosen: list[tuple[str, FileFooter, list[int]]] = []
    total = 0
    for path in files:
        footer = footers.get(path)
        if footer is None:
            return None
        # Row group [low, high] overlaps range [lo, hi) iff lo <= high and low < hi.
        first = np.searchsorted(ranges[:, 1], footer.lows, side="right")
        inside = first < len(ranges)
        lo = ranges[np.minimum(first, len(ranges) - 1), 0]
        keep = np.flatnonzero(inside & (lo <= footer.highs))
        if len(keep) == 0:
            continue
        total += int(footer.rows[keep].sum())
        if total > max_rows:
            return None
        chosen.append((path, footer, keep.tolist()))
    wanted = None
    if columns is not None:
        wanted = list(dict.fromkeys([*columns, HEALPIX_COLUMN]))
    if not chosen:
        return _empty(footers, files, wanted, columns)
    pieces = []
    for _, footer, groups in chosen:
        with footers.reader(footer) as handle:
            data = _read_hits(handle, footer, groups, wanted, ranges)
        if data is not None:
            pieces.append(data)
    if not pieces:
        return _empty(footers, files, wanted, columns)
    return _without_key(pa.concat_tables(pieces), columns)


def _read_hits(
    handle: pq.ParquetFile,
    footer: FileFooter,
    groups: list[int],
    wanted: list[str] | None,
    ranges: NDArray[np.int64],
) -> pa.Table | None:
    """The rows inside ``ranges`` of ``groups``, ``wanted`` columns (None: all), or None
    when there are none.

    The key column is decoded first, and the other columns only for the row groups it
    shows rows in: a row group's min/max often overlaps a small cone that holds no row
    (most arcsecond cones), and then only one column is decoded instead of all of them.
    """
    keys_table = handle.read_row_groups(groups, columns=[HEALPIX_COLUMN], use_threads=False)
    keys = keys_table.column(0)
    values = keys.to_numpy()
    starts = np.searchsorted(values, ranges[:, 0], side="left")
    stops = np.searchsorted(values, ranges[:, 1], side="left")
    hit = stops > starts
    if not hit.any():
        return None
    starts, stops = starts[hit], stops[hit]
    names = wanted if wanted is not None else _schema(footer).names
    rest = [name for name in names if name != HEALPIX_COLUMN]
    subset = groups
    if len(groups) > 1:
        bounds = np.zeros(len(groups) + 1, dtype=np.int64)
        np.cumsum(footer.rows[groups], out=bounds[1:])
        # The row groups holding a row of some range [starts, stops).
        first = np.searchsorted(bounds, starts, side="right") - 1
        last = np.searchsorted(bounds, stops - 1, side="right") - 1
        need = sorted({int(i) for a, b in zip(first, last, strict=True) for i in range(a, b + 1)})
        if len(need) < len(groups):
            subset = [groups[i] for i in need]
            keys = pa.chunked_array(
                [keys.slice(int(bounds[i]), int(bounds[i + 1] - bounds[i])) for i in need],
                type=keys.type,
            )
    if rest:
        others = handle.read_row_groups(subset, columns=rest, use_threads=False)
        table = others.append_column(keys_table.schema.field(HEALPIX_COLUMN), keys)
        if table.column_names != names:
            table = table.select(names)
    else:
        table = pa.table({HEALPIX_COLUMN: keys}, schema=keys_table.schema)
    if subset is groups:
        return _spans(table, starts, stops)
    return _cut(table, ranges)


def _empty(
    footers: FooterCache,
    files: Sequence[str],
    wanted: list[str] | None,
    columns: Sequence[str] | None,
) -> pa.Table | None:
    """No rows, with the columns (and types) the scan would have given."""
    footer = footers.get(files[0]) if files else None
    if footer is None:
        return None
    schema = _schema(footer)
    if wanted is not None:
        schema = pa.schema([schema.field(name) for name in wanted])
    return _without_key(schema.empty_table(), columns)


def _schema(footer: FileFooter) -> pa.Schema:
    if footer.schema is not None:
        return footer.schema
    return footer.metadata.schema.to_arrow_schema()


def _without_key(table: pa.Table, columns: Sequence[str] | None) -> pa.Table:
    # COUNT(*) names no column: the key stays, as a table needs at least one.
    if columns and HEALPIX_COLUMN not in columns:
        return table.drop_columns([HEALPIX_COLUMN])
    return table


def _cut(table: pa.Table, ranges: NDArray[np.int64]) -> pa.Table:
    """The rows of ``table`` (sorted by ``_healpix_29``) inside ``ranges``."""
    keys = table.column(HEALPIX_COLUMN).to_numpy()
    starts = np.searchsorted(keys, ranges[:, 0], side="left")
    stops = np.searchsorted(keys, ranges[:, 1], side="left")
    return _spans(table, starts, stops)


def _spans(table: pa.Table, starts: NDArray[np.intp], stops: NDArray[np.intp]) -> pa.Table:
    """The rows ``[starts[i], stops[i])`` of ``table``, in order."""
    spans = [(int(a), int(b)) for a, b in zip(starts, stops, strict=True) if b > a]
    if len(spans) == 1:
        a, b = spans[0]
        return table.slice(a, b - a)
    if not spans:
        return table.slice(0, 0)
    indices = np.concatenate([np.arange(a, b) for a, b in spans])
    return table.take(pa.array(indices))
