"""Views: a table the caller queries whose rows are those of stored tables, decided per query.

A :class:`View` is named and described like a stored table (its :class:`TableMeta` goes into
the caller's table list, so TAP_SCHEMA, ``/tables`` and the ADQL checker see it as any
other), but it has no files of its own: its rows are the union of the rows of its
``members`` — stored tables, all with the view's columns (and any more) — with some
columns :class:`DerivedColumn` computed when read.  The members are chosen per request
(``ivoa.ObsCore`` is the union of the collections the caller may read), so a hidden member
contributes no row.  A view of one member with derived columns is how a stored table gets
values that depend on the service (a URL built from its public address).

The engine plans a view as one scan over the members' pruned files (each member pruned by
its own partitions with the occurrence's sky coverage) and computes the derived columns in
the scan, so every query form (joins, subqueries, the index path, the direct path) sees the
same rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

from skyvault.catalog.layout import TableName
from skyvault.catalog.metadata import TableMeta

__all__ = ["DerivedColumn", "View", "with_views"]


@dataclass(frozen=True)
class DerivedColumn:
    """A column whose value is computed when read: ``prefix`` followed by the value of
    ``source`` percent-encoded as a URL query value (NULL when ``source`` is NULL), or
    ``prefix`` alone when ``source`` is None.

    These are the derivations needed so far (an access URL from an identifier, its format);
    they are data, not SQL, so that the engine writes them both as SQL and for rows read
    into memory.
    """

    name: str
    source: str | None
    prefix: str


@dataclass(frozen=True)
class View:
    """A table whose rows are its members' rows (see the module docstring)."""

    meta: TableMeta
    """How the view is published; ``ra_column``/``dec_column`` name the members' declared
    position, by which each member is pruned."""
    members: tuple[TableName, ...]
    """The stored tables whose rows are the view's (none: the view is empty)."""
    schema: pa.Schema
    """The Arrow schema of the view's columns (what an empty view is made of)."""
    derived: tuple[DerivedColumn, ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        return (self.meta.schema, self.meta.name)


def with_views(tables: Sequence[TableMeta], views: Sequence[View]) -> list[TableMeta]:
    """The tables a caller queries: ``tables`` (stored), each named by a view as that view
    describes it, then the views' own tables."""
    by_key = {v.key: v for v in views}
    out = [by_key[(m.schema, m.name)].meta if (m.schema, m.name) in by_key else m for m in tables]
    names = {(m.schema, m.name) for m in tables}
    return [*out, *(v.meta for v in views if v.key not in names)]
