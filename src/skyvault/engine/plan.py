"""From a translated query to what to read: the pruned files and index ranges of each table.

This is the coarse half of the two-phase search (the fine half is the SQL's own exact
predicates).  For each table occurrence with a sky coverage, only the partitions the coverage
touches are listed, and inside them a few merged ``_healpix_29`` ranges restrict the rows; the
rows are sorted by ``_healpix_29`` and the row groups carry its min/max, so DuckDB skips the
row groups outside the ranges without reading them.

A plan holds only paths, numbers and SQL text: it pickles, so the same plan can be shipped to
a distributed executor's workers.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pyarrow as pa
from mocpy import MOC
from numpy.typing import NDArray

from skyvault.catalog.ingest import HEALPIX_COLUMN
from skyvault.catalog.metadata import ColumnMeta
from skyvault.catalog.registry import PartitionIndex, Registry, StoredTable
from skyvault.engine.crossmatch import (
    DerivedSide,
    exploded_select,
    keyed_select,
    plan_cell_join,
)
from skyvault.sky.coverage import healpix29_ranges
from skyvault.sqltext import quote_identifier
from skyvault.sqltext import string_literal as _string_literal

if TYPE_CHECKING:
    from skyvault.adql.translate import CrossMatch, DirectSelect

__all__ = [
    "TAG_COLUMN",
    "CellKey",
    "CrossMatchSpec",
    "QueryPlan",
    "Scan",
    "SkyLayout",
    "TagLookup",
    "TaggedFiles",
    "plan_query",
]

MAX_RANGES = 16
"""Index ranges per table: enough to follow a cone's outline, few enough to stay cheap."""

TAG_COLUMN = "__sv_align"
"""The column a task of an aligned cross-match tags rows with (see engine/aligned.py)."""

CrossMatchSpec = tuple[str, str, float]
"""A cross-match to plan: the two placeholders and the radius in degrees (the positions
are then the tables' declared RA/Dec; a translation's ``CrossMatch`` names its own)."""


class CellKey(NamedTuple):
    """How a scan of a cross-match gets its cell key (:mod:`skyvault.engine.crossmatch`)."""

    role: str
    """``keyed`` or ``exploded``."""
    ra: str
    """SQL of the position's RA over the scan's rows, named ``alias``."""
    dec: str
    radius: float
    alias: str | None = None
    """The name ``ra``/``dec`` qualify the rows by (None: bare column names)."""
    normalised: bool = False
    """The RA is a stored table's declared RA: finite and in [0, 360) (ingest checks)."""


@dataclass(frozen=True)
class SkyLayout:
    """Where a stored positional table's partitions lie, with its margin catalogue.

    Carried by the scans of a cross-match so that a distributed executor can read, per task,
    only the partner partitions aligned with the task's own (engine/aligned.py).
    """

    partitions: PartitionIndex
    """Every partition of the table (not only the pruned ones)."""
    margin: PartitionIndex | None
    margin_arcsec: float | None
    """The margin catalogue's threshold: it holds every row within this of a partition."""


@dataclass(frozen=True)
class TagLookup:
    """Tag each row with the tag of the interval holding its ``_healpix_29`` (0: none).

    ``intervals`` is an ``(n, 3)`` array of disjoint ``[start, stop)`` order-29 intervals,
    sorted, and their tags (1 to 2**31).
    """

    intervals: NDArray[np.int64]


@dataclass(frozen=True)
class TaggedFiles:
    """Read each file's rows under that file's tag; a file listed twice is read twice.

    ``ranges`` (the plan's pruning ranges, None: all rows) apply to every row; rows read
    under tag 0 are kept only inside ``residual_ranges`` as well (None: everywhere).  The
    ranges live here, not in the scan's own ``ranges``, so that no reader materialises the
    scan from its ``files`` without the tags.
    """

    files: tuple[tuple[str, int], ...]
    ranges: NDArray[np.int64] | None = None
    residual_ranges: NDArray[np.int64] | None = None


@dataclass(frozen=True)
class Scan:
    """How to read one table occurrence: its files and, optionally, ``_healpix_29`` ranges.

    ``ranges`` is an ``(n, 2)`` array of half-open intervals, or None to read every row.
    """

    placeholder: str
    qualified_name: str
    files: tuple[str, ...]
    ranges: NDArray[np.int64] | None
    positional: bool
    total_files: int
    schema_file: str | None = None
    arrow: pa.Table | None = None
    """An in-memory table (TAP_SCHEMA, an upload) instead of files."""
    cell: CellKey | None = None
    """For a cross-match: how the view adds the cell key."""
    columns: tuple[str, ...] | None = None
    """The table's columns the query may use (a superset; None: all): what a reader that
    materialises the scan needs to read."""
    partner: str | None = None
    """For a cross-match: the placeholder on the other side of the cell join."""
    layout: SkyLayout | None = None
    """For a cross-match of a stored positional table: its partitions and margin."""
    tag: TagLookup | TaggedFiles | None = None
    """Set only in one task of an aligned cross-match (engine/aligned.py): the rows carry a
    tag that is folded into the cell key, so rows meet only rows of the same tag."""

    @property
    def arrow_name(self) -> str:
        """The name an in-memory table is registered under when a view wraps it."""
        return f"{self.placeholder}_arrow"

    def view_sql(self) -> str:
        """The SELECT that defines this scan's view (made once: plans are cached and run
        again, and the file list of a full scan of a big table is long)."""
        return self._view_sql

    @functools.cached_property
    def _view_sql(self) -> str:
        if isinstance(self.tag, TaggedFiles):
            sql = self._tagged_files_sql(self.tag)
        elif isinstance(self.tag, TagLookup):
            sql = _tag_lookup_sql(self._rows_sql(), self.tag)
        else:
            sql = self._rows_sql()
        if self.cell is None:
            return sql
        cell = self.cell
        tag = TAG_COLUMN if self.tag is not None else None
        make = keyed_select if cell.role == "keyed" else exploded_select
        return make(sql, cell.ra, cell.dec, cell.radius, tag, cell.alias, cell.normalised)

    def _tagged_files_sql(self, tagged: TaggedFiles) -> str:
        """The rows of each (file, tag), with the tag as :data:`TAG_COLUMN`.

        One scan of the distinct files, with DuckDB's ``filename`` column, joined to the
        (file, tag) list: a file listed under two tags comes out twice, which is the point.
        """
        if not tagged.files:
            return f"SELECT *, 0 AS {TAG_COLUMN} FROM ({self._rows_sql()}) WHERE false"
        distinct = list(dict.fromkeys(f for f, _ in tagged.files))
        files = ", ".join(_string_literal(f) for f in distinct)
        rows = (
            f"SELECT * FROM read_parquet([{files}], hive_partitioning = false, "
            f"filename = '__sv_file')"
        )
        where = _ranges_sql(tagged.ranges)
        if where:
            rows += f" WHERE {where}"
        pairs = ", ".join(f"({_string_literal(f)}, {int(t)})" for f, t in tagged.files)
        sql = (
            f'SELECT __sv_r.* EXCLUDE ("__sv_file"), __sv_m.__sv_tag AS {TAG_COLUMN} '
            f"FROM ({rows}) AS __sv_r JOIN (VALUES {pairs}) AS __sv_m(__sv_f, __sv_tag) "
            'ON __sv_r."__sv_file" = __sv_m.__sv_f'
        )
        residual = _ranges_sql(tagged.residual_ranges, "__sv_r.")
        if tagged.residual_ranges is not None:
            sql += f" WHERE __sv_m.__sv_tag <> 0 OR ({residual or 'false'})"
        return sql

    def _rows_sql(self) -> str:
        if self.arrow is not None:
            return f'SELECT * FROM "{self.arrow_name}"'
        if not self.files:
            if self.schema_file is None:
                return "SELECT NULL AS nothing WHERE false"
            # No partition can match: keep the table's columns, read no rows.
            return f"SELECT * FROM read_parquet({_string_literal(self.schema_file)}) WHERE false"
        files = ", ".join(_string_literal(f) for f in self.files)
        sql = f"SELECT * FROM read_parquet([{files}], hive_partitioning = false)"
        where = _ranges_sql(self.ranges)
        if where:
            sql += f" WHERE {where}"
        return sql


def _ranges_sql(ranges: NDArray[np.int64] | None, prefix: str = "") -> str:
    """``_healpix_29`` inside any of ``ranges`` (empty text: no restriction)."""
    if ranges is None or not len(ranges):
        return ""
    column = f'{prefix}"{HEALPIX_COLUMN}"'
    return " OR ".join(f"({column} >= {int(lo)} AND {column} < {int(hi)})" for lo, hi in ranges)


def _tag_lookup_sql(rows_sql: str, lookup: TagLookup) -> str:
    """``rows_sql`` with :data:`TAG_COLUMN`: the tag of the interval holding each row.

    An ASOF join finds the last interval starting at or before the row's index (a sorted
    merge, not a comparison with every interval); the row is inside it if below its stop.
    """
    if not len(lookup.intervals):
        return f"SELECT *, 0 AS {TAG_COLUMN} FROM ({rows_sql})"
    values = ", ".join(
        f"(CAST({int(a)} AS BIGINT), CAST({int(b)} AS BIGINT), {int(t)})"
        for a, b, t in lookup.intervals
    )
    column = f'__sv_s."{HEALPIX_COLUMN}"'
    return (
        f"SELECT __sv_s.*, CASE WHEN {column} < __sv_i.__sv_stop THEN __sv_i.__sv_tag "
        f"ELSE 0 END AS {TAG_COLUMN} FROM ({rows_sql}) AS __sv_s "
        f"ASOF LEFT JOIN (VALUES {values}) AS __sv_i(__sv_start, __sv_stop, __sv_tag) "
        f"ON {column} >= __sv_i.__sv_start"
    )


@dataclass(frozen=True)
class QueryPlan:
    """Everything an executor needs to run one query."""

    sql: str
    scans: tuple[Scan, ...]
    columns: tuple[ColumnMeta, ...]
    direct: DirectSelect | None = None
    """The query's simple form, which the executor may evaluate without DuckDB when its
    one scan is read by the index path (:mod:`skyvault.engine.direct`)."""

    @property
    def files_read(self) -> int:
        return sum(len(s.files) for s in self.scans)


def plan_query(
    sql: str,
    tables: Sequence[tuple[str, StoredTable | pa.Table, MOC | None]],
    columns: Sequence[ColumnMeta],
    crossmatch: CrossMatchSpec | CrossMatch | Sequence[CrossMatchSpec | CrossMatch] | None = None,
    positions: Mapping[str, tuple[str, str]] | None = None,
    direct: DirectSelect | None = None,
) -> QueryPlan:
    """Plan ``sql`` over ``tables``: ``(placeholder, table, coverage MOC or None)``.

    A table is either a stored table (files, pruned by the coverage) or an in-memory Arrow
    table (TAP_SCHEMA, uploads), which is read whole.  ``crossmatch`` is one cross-match or
    a sequence of them (wherever they are in the query: each becomes a cell join in its own
    SELECT): a translation's ``CrossMatch``, which names both sides' positions (any
    columns or expressions, of tables, uploads, subqueries or CTEs), or ``(left, right,
    radius)`` of two placeholders, whose positions are then the stored tables' declared
    RA/Dec and, for in-memory tables, the columns ``positions`` gives by placeholder.
    """
    scans = []
    for placeholder, table, coverage in tables:
        if isinstance(table, pa.Table):
            scans.append(Scan(placeholder, placeholder, (), None, False, 0, None, table))
        else:
            scans.append(_scan(placeholder, table, coverage))
    for spec in _crossmatches(crossmatch, tables, positions or {}):
        sql, scans = _with_cell_join(sql, scans, tables, *spec)
    named = _identifiers(sql)
    by_name = {p: t for p, t, _ in tables}
    for i, scan in enumerate(scans):
        stored = by_name.get(scan.placeholder)
        if isinstance(stored, StoredTable) and scan.files:
            wanted = named | _identifiers(f"{scan.cell.ra} {scan.cell.dec}") if scan.cell else named
            used = [
                c.name for c in stored.meta.columns if c.name in wanted or c.name.lower() in wanted
            ]
            scans[i] = dataclasses.replace(scan, columns=tuple(used))
    return QueryPlan(sql=sql, scans=tuple(scans), columns=tuple(columns), direct=direct)


_TOKENS = re.compile("'(?:[^']|'')*'|\"((?:[^\"]|\"\")*)\"|([A-Za-z_][A-Za-z0-9_$]*)")


def _identifiers(sql: str) -> set[str]:
    """Every identifier ``sql`` may name a column with: quoted ones exactly, bare words
    lower-cased (DuckDB folds them).  A table's columns matching none of these are never
    read by the query.  String literals are skipped, so a double quote inside one cannot
    hide an identifier."""
    found = set()
    for match in _TOKENS.finditer(sql):
        quoted, bare = match.group(1), match.group(2)
        if quoted is not None:
            found.add(quoted.replace('""', '"'))
        elif bare is not None:
            found.add(bare.lower())
    return found


@dataclass(frozen=True)
class _Side:
    """One side of a cross-match to plan."""

    name: str
    """Placeholder of a table occurrence, or alias of a subquery / CTE reference."""
    ra: str
    dec: str
    alias: str | None
    columns: tuple[str, str] | None
    """(RA, Dec) column names when the position is two plain columns."""
    derived: bool = False
    tables: tuple[str, ...] = ()


def _crossmatches(
    crossmatch: CrossMatchSpec | CrossMatch | Sequence[CrossMatchSpec | CrossMatch] | None,
    tables: Sequence[tuple[str, StoredTable | pa.Table, MOC | None]],
    positions: Mapping[str, tuple[str, str]],
) -> list[tuple[_Side, _Side, float]]:
    if crossmatch is None:
        return []
    specs: Sequence[CrossMatchSpec | CrossMatch]
    if hasattr(crossmatch, "radius_deg") or (
        isinstance(crossmatch, tuple) and len(crossmatch) == 3 and isinstance(crossmatch[0], str)
    ):
        specs = [crossmatch]  # type: ignore[list-item]
    else:
        specs = crossmatch
    by_name = {p: t for p, t, _ in tables}
    out = []
    for spec in specs:
        if isinstance(spec, tuple):
            left, right, radius = spec
            sides = [_declared_side(str(p), by_name.get(str(p)), positions) for p in (left, right)]
            if sides[0] is not None and sides[1] is not None:
                out.append((sides[0], sides[1], float(radius)))
            continue
        if spec.sides is None:
            sides = [_declared_side(p, by_name.get(p), positions) for p in (spec.left, spec.right)]
            if sides[0] is not None and sides[1] is not None:
                out.append((sides[0], sides[1], float(spec.radius_deg)))
            continue
        a, b = (
            _Side(m.name, m.ra, m.dec, m.alias, m.columns, m.derived, m.tables) for m in spec.sides
        )
        out.append((a, b, float(spec.radius_deg)))
    return out


def _declared_side(
    placeholder: str,
    table: StoredTable | pa.Table | None,
    positions: Mapping[str, tuple[str, str]],
) -> _Side | None:
    """A placeholder's side with its declared position (None: it has none)."""
    if isinstance(table, pa.Table):
        columns = positions.get(placeholder)
    elif isinstance(table, StoredTable) and table.meta.ra_column and table.meta.dec_column:
        columns = (table.meta.ra_column, table.meta.dec_column)
    else:
        columns = None
    if columns is None:
        return None
    ra, dec = (quote_identifier(c) for c in columns)
    return _Side(placeholder, ra, dec, None, columns)


def _with_cell_join(
    sql: str,
    scans: list[Scan],
    tables: Sequence[tuple[str, StoredTable | pa.Table, MOC | None]],
    left: _Side,
    right: _Side,
    radius: float,
) -> tuple[str, list[Scan]]:
    """Turn the cross-match of ``left`` and ``right`` into a hash join on sky cells.

    The side with fewer rows (after pruning) is exploded to its neighbouring cells, unless
    an outer join decides (:func:`~skyvault.engine.crossmatch.plan_cell_join`).  A table
    occurrence (stored or in memory) gets its key in its view; a subquery or CTE reference
    in the SQL (its size is guessed as that of the tables it reads).  A table occurrence
    already in a cell join keeps it: a view carries one cell key, so a second distance join
    of the same occurrence stays an ordinary (correct, slower) join.
    """
    by_name = {p: t for p, t, _ in tables}
    by_scan = {s.placeholder: s for s in scans}
    if any(by_scan[s.name].cell is not None for s in (left, right) if s.name in by_scan):
        return sql, scans

    def rows(placeholder: str) -> float | None:
        table, scan = by_name.get(placeholder), by_scan.get(placeholder)
        if isinstance(table, pa.Table):
            return float(table.num_rows)
        if isinstance(table, StoredTable) and scan is not None:
            return table.meta.nrows * len(scan.files) / max(scan.total_files, 1)
        return None

    sizes: dict[str, float] = {}
    for one in (left, right):
        if one.derived:
            known = [rows(p) for p in one.tables]
            sizes[one.name] = sum(r for r in known if r is not None) if known else math.inf
        else:
            size = rows(one.name)
            if size is None:
                return sql, scans
            sizes[one.name] = size
    smaller = min((left.name, right.name), key=lambda p: sizes[p])
    derived = {s.name: DerivedSide(s.ra, s.dec, radius) for s in (left, right) if s.derived}
    join = plan_cell_join(sql, left.name, right.name, smaller, derived)
    if join is None:
        return sql, scans
    out = []
    for scan in scans:
        side = next((s for s in (left, right) if s.name == scan.placeholder), None)
        if side is None:
            out.append(scan)
            continue
        role = "keyed" if scan.placeholder == join.keyed_view else "exploded"
        partner = right.name if side is left else left.name
        stored = by_name.get(scan.placeholder)
        layout = None
        declared = isinstance(stored, StoredTable) and side.columns == (
            stored.meta.ra_column,
            stored.meta.dec_column,
        )
        if (
            isinstance(stored, StoredTable)
            and declared
            and stored.partitions is not None
            and stored.deltas is None  # appended rows have no margins until compacted
        ):
            # Partitions (and their margins) follow the declared position only: a match on
            # other columns cannot be aligned by partition.
            layout = SkyLayout(stored.partitions, stored.margin, stored.margin_arcsec)
        cell = CellKey(role, side.ra, side.dec, radius, side.alias, declared)
        out.append(dataclasses.replace(scan, cell=cell, partner=partner, layout=layout))
    return join.sql, out


def _scan(placeholder: str, stored: StoredTable, coverage: MOC | None) -> Scan:
    index = stored.partitions
    name = stored.meta.qualified_name
    if index is None:
        files = stored.all_files
        return Scan(placeholder, name, files, None, False, len(files))
    deltas = stored.deltas  # appended rows (catalog/append.py): pruned the same way
    total = len(stored.all_files)
    if coverage is None:
        return Scan(placeholder, name, stored.all_files, None, True, total)
    ranges = healpix29_ranges(coverage, max_ranges=MAX_RANGES)
    schema_file = index.files[0] if index.files else None
    if len(ranges) == 0:
        return Scan(placeholder, name, (), ranges, True, total, schema_file)
    # A delta file is listed once per interval of its rows: each file read once.
    more = tuple(dict.fromkeys(_overlapping(deltas, ranges))) if deltas else ()
    files = _overlapping(index, ranges) + more
    return Scan(placeholder, name, files, ranges, True, total, schema_file)


def _overlapping(index: PartitionIndex, ranges: NDArray[np.int64]) -> tuple[str, ...]:
    """Files of ``index`` whose ``[start, stop)`` overlaps some of the sorted ``ranges``."""
    # An entry [start, stop) overlaps some range [lo, hi) iff lo < stop and start < hi.
    first = np.searchsorted(ranges[:, 1], index.starts, side="right")
    overlaps = (first < len(ranges)) & (ranges[np.minimum(first, len(ranges) - 1), 0] < index.stops)
    return tuple(f for f, keep in zip(index.files, overlaps.tolist(), strict=True) if keep)


def registry_tables(
    registry: Registry, refs: Sequence[tuple[str, str, str, MOC | None]]
) -> list[tuple[str, StoredTable, MOC | None]]:
    """Resolve ``(placeholder, schema, table, coverage)`` against ``registry``."""
    return [(p, registry.get(s, t), c) for p, s, t, c in refs]
