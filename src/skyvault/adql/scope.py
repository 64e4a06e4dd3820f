"""The checker's data model: what a FROM item offers, what a name resolves to, a query level.

:mod:`skyvault.adql.check` builds these while it walks a query; :mod:`skyvault.adql.translate`
reads them from the :class:`CheckedQuery` it returns.
"""

from __future__ import annotations

import dataclasses

from sqlglot import exp

from skyvault.adql.annotate import ValueInfo, column_info
from skyvault.adql.parsing import AdqlQuery
from skyvault.adql.reserved import identifier_matches, normalize_identifier
from skyvault.catalog.metadata import ColumnMeta, TableMeta
from skyvault.sky.regions import Region

__all__ = [
    "CheckedQuery",
    "ColumnBinding",
    "Cte",
    "Output",
    "Scope",
    "Source",
    "SourceColumn",
    "is_hidden_column",
    "table_columns",
]


def is_hidden_column(name: str) -> bool:
    """Whether a stored column is internal (``_healpix_29``): never listed, never reachable."""
    return name.lower().startswith("_healpix")


@dataclasses.dataclass(eq=False)
class SourceColumn:
    """One column a FROM item offers.

    Attributes
    ----------
    name
        The name ADQL refers to it by (stored name, or output name of a subquery).
    sql
        Its name in the SQL relation (unique within the relation, case-insensitively).
    info
        Type and metadata.
    """

    name: str
    sql: str
    info: ValueInfo


_TableColumns = tuple[tuple[SourceColumn, ...], dict[tuple[str, bool], list[SourceColumn]]]
_TABLE_COLUMNS: dict[int, tuple[TableMeta, _TableColumns]] = {}


def table_columns(meta: TableMeta) -> _TableColumns:
    """The columns a stored table offers and their name index, made once per table.

    Both are shared by every query of ``meta`` (a query never changes a stored table's
    columns); building them for a wide table (a thousand columns) was most of checking a
    cone search.  Keyed by the object: a re-read table is a new :class:`TableMeta`.
    """
    cached = _TABLE_COLUMNS.get(id(meta))
    if cached is not None and cached[0] is meta:
        return cached[1]
    columns = tuple(
        SourceColumn(c.name, c.name, column_info(c))
        for c in meta.columns
        if not is_hidden_column(c.name)
    )
    index: dict[tuple[str, bool], list[SourceColumn]] = {}
    for column in columns:
        index.setdefault((column.name, True), []).append(column)
        index.setdefault((column.name.upper(), False), []).append(column)
    if len(_TABLE_COLUMNS) >= 256:
        _TABLE_COLUMNS.clear()
    _TABLE_COLUMNS[id(meta)] = (meta, (columns, index))
    return columns, index


@dataclasses.dataclass(eq=False)
class Source:
    """One item of a FROM clause: a table occurrence, a subquery or a CTE reference.

    Attributes
    ----------
    alias
        The SQL range variable the translation uses (``s0``, ``s1`` ...; unique per query).
    columns
        The columns it offers, in order (hidden columns excluded).
    table
        The stored table, for a table occurrence.
    occurrence
        Index of the table occurrence (its placeholder is ``__sv_t<occurrence>``).
    relation
        SQL relation name: the placeholder or the CTE's SQL name; empty for a subquery.
    name
        How the query may qualify its columns: alias, or table name (upper-cased or exact
        per the identifier rules are applied by :meth:`matches`).
    """

    alias: str
    columns: list[SourceColumn]
    table: TableMeta | None = None
    occurrence: int | None = None
    relation: str = ""
    user_alias: exp.Identifier | None = None
    label: str = ""
    _by_name: dict[tuple[str, bool], list[SourceColumn]] | None = dataclasses.field(
        default=None, repr=False
    )

    def columns_named(self, ident: exp.Identifier) -> list[SourceColumn]:
        """The columns ``ident`` refers to (ADQL identifier rules), from an index built on
        first use: resolving every name of a query by scanning every column of a wide
        table was a measurable share of compiling it."""
        if self._by_name is None:
            index: dict[tuple[str, bool], list[SourceColumn]] = {}
            for column in self.columns:
                index.setdefault((column.name, True), []).append(column)
                index.setdefault((column.name.upper(), False), []).append(column)
            self._by_name = index
        name = normalize_identifier(ident)
        return self._by_name.get((name.name, name.quoted), [])

    def matches(self, qualifier: list[exp.Identifier]) -> bool:
        """Whether ``qualifier`` (``[table]`` or ``[schema, table]`` ...) names this item."""
        if self.user_alias is not None or self.table is None:
            if len(qualifier) != 1:
                return False
            if self.user_alias is not None:
                ident = self.user_alias
                if ident.args.get("quoted"):
                    return bool(
                        qualifier[0].args.get("quoted") and qualifier[0].this == ident.this
                    ) or identifier_matches(qualifier[0], ident.this)
                return identifier_matches(qualifier[0], str(ident.this).upper()) or (
                    not qualifier[0].args.get("quoted")
                    and str(qualifier[0].this).upper() == str(ident.this).upper()
                )
            return identifier_matches(qualifier[0], self.label)
        parts = [self.table.name, self.table.schema]
        return len(qualifier) <= 2 and all(
            identifier_matches(q, p) for q, p in zip(reversed(qualifier), parts, strict=False)
        )


@dataclasses.dataclass(eq=False)
class ColumnBinding:
    """What a column reference resolved to; ``merged`` lists the other sides of a USING."""

    source: Source
    column: SourceColumn
    merged: tuple[ColumnBinding, ...] = ()


@dataclasses.dataclass(eq=False)
class Output:
    """One output column of a query level.

    Attributes
    ----------
    name
        The name the user sees (ADQL-visible).
    sql
        The SQL alias emitted (deduplicated case-insensitively).
    info
        Type and metadata.
    node
        The select-list expression (without its alias), or ``None`` for a ``*`` expansion.
    binding
        For a ``*`` expansion: the column it stands for.
    """

    name: str
    sql: str
    info: ValueInfo
    node: exp.Expr | None = None
    binding: ColumnBinding | None = None


@dataclasses.dataclass
class CheckedQuery:
    """A query whose names are resolved and whose values are typed.

    Attributes
    ----------
    query
        The parsed query (its tree is not modified).
    tables
        The tables the caller may see.
    occurrences
        Every table occurrence in FROM clauses (also inside subqueries and CTEs), in order.
    columns
        Result columns (item 8 metadata), names as the user sees them.
    """

    query: AdqlQuery
    tables: tuple[TableMeta, ...]
    occurrences: list[Source] = dataclasses.field(default_factory=list)
    columns: tuple[ColumnMeta, ...] = ()
    info: dict[int, ValueInfo] = dataclasses.field(default_factory=dict)
    bindings: dict[int, ColumnBinding] = dataclasses.field(default_factory=dict)
    sources: dict[int, Source] = dataclasses.field(default_factory=dict)
    outputs: dict[int, list[Output]] = dataclasses.field(default_factory=dict)
    scopes: dict[int, list[Source]] = dataclasses.field(default_factory=dict)
    ordinals: dict[int, int] = dataclasses.field(default_factory=dict)
    using: dict[int, list[tuple[ColumnBinding, ColumnBinding]]] = dataclasses.field(
        default_factory=dict
    )
    cte_names: dict[int, str] = dataclasses.field(default_factory=dict)
    regions: dict[int, Region] = dataclasses.field(default_factory=dict)
    unit_factors: dict[int, float] = dataclasses.field(default_factory=dict)

    def info_of(self, node: exp.Expr) -> ValueInfo:
        """The :class:`ValueInfo` the checker gave ``node``."""
        return self.info[id(node)]


@dataclasses.dataclass
class Cte:
    """A common table expression of the query: its name, SQL name and output columns."""

    name: exp.Identifier
    sql: str
    outputs: list[Output]


@dataclasses.dataclass
class Scope:
    """One query level's FROM clause while it is checked; ``parent`` is the enclosing one."""

    parent: Scope | None
    sources: list[Source] = dataclasses.field(default_factory=list)
    #: Upper-cased names of USING/NATURAL columns: the bindings an unqualified name takes.
    merged: dict[str, ColumnBinding] = dataclasses.field(default_factory=dict)
    aggregates_allowed: str | None = None
