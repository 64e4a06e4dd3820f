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
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
from mocpy import MOC
from numpy.typing import NDArray

from skyvault.adql.translate import CrossMatch, MatchSide, Translation
from skyvault.catalog.ingest import HEALPIX_COLUMN
from skyvault.catalog.metadata import ColumnMeta
from skyvault.catalog.registry import PartitionIndex, StoredTable
from skyvault.catalog.views import DerivedColumn
from skyvault.sky.cells import cell_offsets, exploded_select, keyed_select
from skyvault.sky.coverage import healpix29_ranges
from skyvault.sqltext import quote_identifier
from skyvault.sqltext import string_literal as _string_literal

if TYPE_CHECKING:
    from skyvault.adql.partials import TopSelect
    from skyvault.adql.shape import DirectSelect

__all__ = [
    "TAG_COLUMN",
    "CellKey",
    "CrossMatchSpec",
    "QueryPlan",
    "Scan",
    "ScanSpec",
    "SkyLayout",
    "TagLookup",
    "TaggedFiles",
    "plan_query",
    "plan_translation",
    "with_derived",
]

MAX_RANGES = 16
"""Index ranges per table: enough to follow a cone's outline, few enough to stay cheap."""

TAG_COLUMN = "__sv_align"
"""The column a task of an aligned cross-match tags rows with (see engine/aligned.py)."""


@dataclass(frozen=True)
class ScanSpec:
    """A table occurrence to plan a scan of."""

    placeholder: str
    """The relation name the SQL reads it by (``__sv_t0``)."""
    table: StoredTable | pa.Table | tuple[StoredTable, ...]
    """A stored table (its files, pruned by ``coverage``), an in-memory table (TAP_SCHEMA,
    an upload), read whole, or the members of a view (:mod:`skyvault.catalog.views`): the
    union of their rows, each pruned by ``coverage``."""
    coverage: MOC | None = None
    columns: tuple[str, ...] | None = None
    """The table's columns the SQL reads (a translation's :attr:`TableRef.columns`; None:
    any), which is all a reader that materialises the scan needs."""
    derived: tuple[DerivedColumn, ...] = ()
    """Columns of a stored table or view computed when read (a view's)."""


@dataclass(frozen=True)
class CrossMatchSpec:
    """A cross-match of two stored tables' declared positions, for SQL written by hand that
    joins ``left`` and ``right`` on their :data:`~skyvault.sky.cells.KEY_COLUMN`
    (a translation's :class:`~skyvault.adql.translate.CrossMatch` names its own positions).
    ``exploded``: the side that must be exploded (the optional side of an outer join;
    None: the smaller)."""

    left: str
    right: str
    radius: float
    exploded: str | None = None


@dataclass(frozen=True)
class CellKey:
    """How a scan of a cross-match gets its cell key (:mod:`skyvault.sky.cells`)."""

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
    derived: tuple[DerivedColumn, ...] = ()
    """Columns computed when the files are read (a view's, :mod:`skyvault.catalog.views`);
    rows read into :attr:`arrow` by the engine have them computed already
    (:func:`with_derived`)."""
    union: bool = False
    """The files are several tables' (a view's members): columns are matched by name."""

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
        select = "SELECT *" + _derived_sql(self.derived)
        if not self.files:
            if self.schema_file is None:
                return "SELECT NULL AS nothing WHERE false"
            # No partition can match: keep the table's columns, read no rows.
            schema_file = _string_literal(self.schema_file)
            return f"{select} FROM read_parquet({schema_file}) WHERE false"
        files = ", ".join(_string_literal(f) for f in self.files)
        union = ", union_by_name = true" if self.union else ""
        sql = f"{select} FROM read_parquet([{files}], hive_partitioning = false{union})"
        where = _ranges_sql(self.ranges)
        if where:
            sql += f" WHERE {where}"
        return sql


def _derived_sql(derived: Sequence[DerivedColumn]) -> str:
    """`` REPLACE (...)`` computing ``derived`` in a ``SELECT *`` (empty text: none)."""
    if not derived:
        return ""
    items = ", ".join(
        (
            f"{_string_literal(d.prefix)} || url_encode({quote_identifier(d.source)})"
            if d.source is not None
            else _string_literal(d.prefix)
        )
        + f" AS {quote_identifier(d.name)}"
        for d in derived
    )
    return f" REPLACE ({items})"


def with_derived(table: pa.Table, derived: Sequence[DerivedColumn]) -> pa.Table:
    """``table`` with the ``derived`` columns it holds computed (as :func:`_derived_sql`
    computes them in SQL: the source percent-encoded as DuckDB's ``url_encode`` does)."""
    for d in derived:
        if d.name not in table.column_names:
            continue
        if d.source is None:
            values: list[str | None] = [d.prefix] * table.num_rows
        elif d.source in table.column_names:
            values = [
                None if v is None else d.prefix + urllib.parse.quote(v, safe="~")
                for v in table.column(d.source).to_pylist()
            ]
        else:
            continue
        index = table.column_names.index(d.name)
        field = table.schema.field(index)
        table = table.set_column(index, field, pa.array(values, type=field.type))
    return table


def _ranges_sql(ranges: NDArray[np.int64] | None, prefix: str = "") -> str:
    """``_healpix_29`` inside any of ``ranges`` (empty text: no restriction)."""
    if ranges is None or not len(ranges):
        return ""
    column = f'{prefix}"{HEALPIX_COLUMN}"'
    return " OR ".join(f"({column} >= {int(lo)} AND {column} < {int(hi)})" for lo, hi in ranges)


_TAG_CASE_INTERVALS = 64
"""Most intervals looked up by a CASE expression; more by an ASOF join."""


def _tag_lookup_sql(rows_sql: str, lookup: TagLookup) -> str:
    """``rows_sql`` with :data:`TAG_COLUMN`: the tag of the interval holding each row.

    A few intervals (a task's partner partitions) are compared in a CASE expression:
    vectorised, about a tenth of the time of an ASOF join, which sorts the rows (measured
    on 4.3M rows: 51 against 814 ms).  Many are found by an ASOF join: the last interval
    starting at or before the row's index; the row is inside it if below its stop.
    """
    if not len(lookup.intervals):
        return f"SELECT *, 0 AS {TAG_COLUMN} FROM ({rows_sql})"
    if len(lookup.intervals) <= _TAG_CASE_INTERVALS:
        column = f'"{HEALPIX_COLUMN}"'
        cases = " ".join(
            f"WHEN {column} >= {int(a)} AND {column} < {int(b)} THEN {int(t)}"
            for a, b, t in lookup.intervals
        )
        return f"SELECT *, CASE {cases} ELSE 0 END AS {TAG_COLUMN} FROM ({rows_sql})"
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
    top_select: TopSelect | None = None
    """The translation's top-level SELECT taken apart, from which a distributed executor
    writes partial and merge queries (:mod:`skyvault.engine.split`)."""

    @property
    def files_read(self) -> int:
        return sum(len(s.files) for s in self.scans)


def plan_translation(
    translation: Translation, tables: Sequence[ScanSpec], direct: DirectSelect | None = None
) -> QueryPlan:
    """Plan a translation over ``tables`` (one per :attr:`Translation.tables` entry).

    Its :attr:`~Translation.keyed_sql` runs when it has cell joins: for each cross-match
    with a :attr:`~skyvault.adql.translate.CrossMatch.cell`, the planner decides which side
    is exploded and gives each side its keys: a table occurrence's view adds them
    (:class:`CellKey`), a derived side's offsets relation is defined as a scan of one or
    nine rows (:func:`~skyvault.sky.cells.cell_offsets`).  ``direct``: the
    translation's :class:`DirectSelect` when the engine may use it.
    """
    sql = translation.keyed_sql if translation.keyed_sql is not None else translation.sql
    return _plan(sql, tables, translation.columns, translation.crossmatches, direct)


def plan_query(
    sql: str,
    tables: Sequence[ScanSpec],
    columns: Sequence[ColumnMeta],
    crossmatches: Sequence[CrossMatchSpec] = (),
    direct: DirectSelect | None = None,
) -> QueryPlan:
    """Plan ``sql``, written by hand, over ``tables``; ``crossmatches`` are the pairs of
    placeholders it joins on their cell keys (see :class:`CrossMatchSpec`)."""
    return _plan(sql, tables, columns, crossmatches, direct)


def _plan(
    sql: str,
    tables: Sequence[ScanSpec],
    columns: Sequence[ColumnMeta],
    crossmatches: Sequence[CrossMatch | CrossMatchSpec],
    direct: DirectSelect | None,
) -> QueryPlan:
    scans: dict[str, Scan] = {}
    for spec in tables:
        if isinstance(spec.table, pa.Table):
            scan = Scan(
                placeholder=spec.placeholder,
                qualified_name=spec.placeholder,
                files=(),
                ranges=None,
                positional=False,
                total_files=0,
                arrow=spec.table,
            )
        else:
            if isinstance(spec.table, tuple):
                scan = _union_scan(spec.placeholder, spec.table, spec.coverage)
            else:
                scan = _scan(spec.placeholder, spec.table, spec.coverage)
            read = spec.columns
            if spec.derived:
                scan = dataclasses.replace(scan, derived=spec.derived)
                if read is not None:  # a derived column read needs its source
                    sources = [d.source for d in spec.derived if d.name in read and d.source]
                    read = tuple(dict.fromkeys([*read, *sources]))
            if scan.files and read is not None:
                scan = dataclasses.replace(scan, columns=read)
        scans[spec.placeholder] = scan
    by_name = {spec.placeholder: spec.table for spec in tables}
    for match in crossmatches:
        if isinstance(match, CrossMatchSpec):
            left, right = (_declared_side(p, by_name.get(p)) for p in (match.left, match.right))
            _cell_join(scans, by_name, left, right, match.radius, match.exploded)
        elif match.cell is not None:
            left, right = match.sides
            _cell_join(scans, by_name, left, right, match.radius_deg, match.cell.exploded)
    return QueryPlan(sql=sql, scans=tuple(scans.values()), columns=tuple(columns), direct=direct)


def _declared_side(placeholder: str, table: StoredTable | pa.Table | None) -> MatchSide:
    """A stored table's side of a :class:`CrossMatchSpec`: its declared position."""
    if not isinstance(table, StoredTable) or not table.meta.ra_column or not table.meta.dec_column:
        raise ValueError(f"{placeholder} is not a stored table with a declared position")
    columns = (table.meta.ra_column, table.meta.dec_column)
    ra, dec = (quote_identifier(c) for c in columns)
    return MatchSide(name=placeholder, alias="", ra=ra, dec=dec, columns=columns)


def _cell_join(
    scans: dict[str, Scan],
    tables: dict[str, StoredTable | pa.Table],
    left: MatchSide,
    right: MatchSide,
    radius: float,
    exploded: str | None,
) -> None:
    """Give both sides of a cell join their keys: ``exploded`` (the optional side of an
    outer join) is exploded to its neighbouring cells, or else the side with fewer rows
    after pruning (a derived side's size is guessed as that of the tables it reads)."""

    def rows(placeholder: str) -> float | None:
        table, scan = tables.get(placeholder), scans.get(placeholder)
        if isinstance(table, pa.Table):
            return float(table.num_rows)
        if isinstance(table, StoredTable) and scan is not None:
            return table.meta.nrows * len(scan.files) / max(scan.total_files, 1)
        return None

    if exploded is None:
        sizes: dict[str, float] = {}
        for one in (left, right):
            if one.derived:
                known = [rows(p) for p in one.tables]
                sizes[one.name] = sum(r for r in known if r is not None) if known else math.inf
            else:
                sizes[one.name] = rows(one.name) or 0.0
        exploded = min((left.name, right.name), key=lambda p: sizes[p])
    for side, partner in ((left, right), (right, left)):
        role = "exploded" if side.name == exploded else "keyed"
        if side.derived:
            assert side.offsets is not None, "a derived side in a cell join has offsets"
            scans[side.offsets] = Scan(
                placeholder=side.offsets,
                qualified_name=side.offsets,
                files=(),
                ranges=None,
                positional=False,
                total_files=0,
                arrow=cell_offsets(role == "exploded"),
            )
            continue
        scan = scans[side.name]
        if scan.cell is not None:
            raise ValueError(f"{side.name} is in two cell joins: a view has one cell key")
        stored = tables.get(side.name)
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
        cell = CellKey(
            role=role,
            ra=side.ra,
            dec=side.dec,
            radius=radius,
            alias=side.alias or None,
            normalised=declared,
        )
        scans[side.name] = dataclasses.replace(scan, cell=cell, partner=partner.name, layout=layout)


def _union_scan(placeholder: str, members: Sequence[StoredTable], coverage: MOC | None) -> Scan:
    """One scan of the rows of every table of ``members`` (a view's), each pruned by its
    own partitions with ``coverage``: their pruned files together, read by column name."""
    parts = [_scan(placeholder, m, coverage) for m in members]
    if not parts:
        raise ValueError(f"{placeholder}: a view without members is an in-memory table")
    first = parts[0]
    files = tuple(f for p in parts for f in p.files)
    schema_file = next((p.schema_file for p in parts if p.schema_file is not None), None)
    return dataclasses.replace(
        first,
        qualified_name="+".join(p.qualified_name for p in parts),
        files=files,
        positional=all(p.positional for p in parts),
        total_files=sum(p.total_files for p in parts),
        schema_file=schema_file,
        union=len(parts) > 1,
    )


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
