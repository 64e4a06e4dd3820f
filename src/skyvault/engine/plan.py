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
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
from mocpy import MOC
from numpy.typing import NDArray

from skyvault.catalog.ingest import HEALPIX_COLUMN
from skyvault.catalog.metadata import ColumnMeta
from skyvault.catalog.registry import Registry, StoredTable
from skyvault.engine.crossmatch import exploded_select, keyed_select, plan_cell_join
from skyvault.sky.coverage import healpix29_ranges

if TYPE_CHECKING:
    from skyvault.adql.translate import DirectSelect

__all__ = ["QueryPlan", "Scan", "plan_query"]

MAX_RANGES = 16
"""Index ranges per table: enough to follow a cone's outline, few enough to stay cheap."""


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
    cell: tuple[str, str, str, float] | None = None
    """For a cross-match: ``(role, ra column, dec column, radius)``, role keyed|exploded."""
    columns: tuple[str, ...] | None = None
    """The table's columns the query may use (a superset; None: all): what a reader that
    materialises the scan needs to read."""

    @property
    def arrow_name(self) -> str:
        """The name an in-memory table is registered under when a view wraps it."""
        return f"{self.placeholder}_arrow"

    def view_sql(self) -> str:
        """The SELECT that defines this scan's view."""
        sql = self._rows_sql()
        if self.cell is None:
            return sql
        role, ra, dec, radius = self.cell
        if role == "keyed":
            return keyed_select(sql, ra, dec, radius)
        return exploded_select(sql, ra, dec, radius)

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
        if self.ranges is not None and len(self.ranges):
            column = f'"{HEALPIX_COLUMN}"'
            terms = " OR ".join(
                f"({column} >= {int(lo)} AND {column} < {int(hi)})" for lo, hi in self.ranges
            )
            sql += f" WHERE {terms}"
        return sql


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
    crossmatch: tuple[str, str, float] | None = None,
    positions: Mapping[str, tuple[str, str]] | None = None,
    direct: DirectSelect | None = None,
) -> QueryPlan:
    """Plan ``sql`` over ``tables``: ``(placeholder, table, coverage MOC or None)``.

    A table is either a stored table (files, pruned by the coverage) or an in-memory Arrow
    table (TAP_SCHEMA, uploads), which is read whole.  ``positions`` gives the RA/Dec
    columns of in-memory tables by placeholder, so that they can take part in a cell join.
    """
    scans = []
    for placeholder, table, coverage in tables:
        if isinstance(table, pa.Table):
            scans.append(Scan(placeholder, placeholder, (), None, False, 0, None, table))
        else:
            scans.append(_scan(placeholder, table, coverage))
    if crossmatch is not None:
        sql, scans = _with_cell_join(sql, scans, tables, positions or {}, *crossmatch)
    named = _identifiers(sql)
    by_name = {p: t for p, t, _ in tables}
    for i, scan in enumerate(scans):
        stored = by_name.get(scan.placeholder)
        if isinstance(stored, StoredTable) and scan.files:
            used = [
                c.name for c in stored.meta.columns if c.name in named or c.name.lower() in named
            ]
            if scan.cell is not None:
                used += [c for c in scan.cell[1:3] if c not in used]
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


def _with_cell_join(
    sql: str,
    scans: list[Scan],
    tables: Sequence[tuple[str, StoredTable | pa.Table, MOC | None]],
    positions: Mapping[str, tuple[str, str]],
    left: str,
    right: str,
    radius: float,
) -> tuple[str, list[Scan]]:
    """Turn the cross-match of ``left`` and ``right`` into a hash join on sky cells.

    The side with fewer rows (after pruning) is exploded to its neighbouring cells.  An
    in-memory table (an upload) takes part when ``positions`` names its RA/Dec columns.
    """
    by_name = {p: t for p, t, _ in tables}
    sides: dict[str, tuple[float, str | None, str | None]] = {}
    for placeholder in (left, right):
        table = by_name.get(placeholder)
        scan = next((s for s in scans if s.placeholder == placeholder), None)
        if isinstance(table, pa.Table) and scan is not None and placeholder in positions:
            sides[placeholder] = (float(table.num_rows), *positions[placeholder])
            continue
        if not isinstance(table, StoredTable) or scan is None or table.meta.ra_column is None:
            return sql, scans
        share = len(scan.files) / max(scan.total_files, 1)
        sides[placeholder] = (table.meta.nrows * share, table.meta.ra_column, table.meta.dec_column)
    exploded = min((left, right), key=lambda p: sides[p][0])
    keyed = right if exploded == left else left
    rewritten = plan_cell_join(sql, keyed, exploded)
    if rewritten is None:
        return sql, scans
    out = []
    for scan in scans:
        if scan.placeholder in (keyed, exploded):
            _, ra, dec = sides[scan.placeholder]
            role = "keyed" if scan.placeholder == keyed else "exploded"
            out.append(dataclasses.replace(scan, cell=(role, str(ra), str(dec), radius)))
        else:
            out.append(scan)
    return rewritten, out


def _scan(placeholder: str, stored: StoredTable, coverage: MOC | None) -> Scan:
    index = stored.partitions
    name = stored.meta.qualified_name
    if index is None:
        files = stored.all_files
        return Scan(placeholder, name, files, None, False, len(files))
    if coverage is None:
        return Scan(placeholder, name, index.files, None, True, len(index.files))
    ranges = healpix29_ranges(coverage, max_ranges=MAX_RANGES)
    if len(ranges) == 0:
        schema_file = index.files[0] if index.files else None
        return Scan(placeholder, name, (), ranges, True, len(index.files), schema_file)
    # A partition [start, stop) overlaps some range [lo, hi) iff lo < stop and start < hi.
    first = np.searchsorted(ranges[:, 1], index.starts, side="right")
    overlaps = (first < len(ranges)) & (ranges[np.minimum(first, len(ranges) - 1), 0] < index.stops)
    files = tuple(f for f, keep in zip(index.files, overlaps.tolist(), strict=True) if keep)
    schema_file = index.files[0] if index.files else None
    return Scan(placeholder, name, files, ranges, True, len(index.files), schema_file)


def _string_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def registry_tables(
    registry: Registry, refs: Sequence[tuple[str, str, str, MOC | None]]
) -> list[tuple[str, StoredTable, MOC | None]]:
    """Resolve ``(placeholder, schema, table, coverage)`` against ``registry``."""
    return [(p, registry.get(s, t), c) for p, s, t, c in refs]
