"""Unique indexes of user tables, kept on every later load.

A unique index (``create_index(..., unique=True)``, :mod:`skyvault.workspace.index`) is
recorded in the table's version as :data:`UNIQUE_FILE` (a hidden file: the bulk edge and
the manifest leave it out), the list of its unique columns.  Every version made from that
one keeps it — a load of a plain table links it into the new version, an index or a
metadata update carries the version's own files, appends to a sky-indexed table do not
change the version — and a later load checks its rows against it before anything is
published (:func:`check_unique`): a value already in the table, or twice in the load, is a
:class:`~skyvault.errors.WorkspaceError` (400) naming the column and the value, and nothing
is loaded.  ``NULL`` is no value: it may repeat, as in SQL.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from skyvault.errors import WorkspaceError
from skyvault.sqltext import quote_identifier, string_literal

__all__ = ["UNIQUE_FILE", "carry_unique", "check_unique", "unique_columns", "write_unique"]

#: The unique columns of a version (a JSON list), beside its metadata.
UNIQUE_FILE = ".skyvault_unique.json"


def unique_columns(version_dir: Path) -> tuple[str, ...]:
    """The columns of version ``version_dir`` with a unique index (none: ``()``)."""
    try:
        data = json.loads((version_dir / UNIQUE_FILE).read_text())
    except (OSError, ValueError):
        return ()
    return tuple(str(c) for c in data) if isinstance(data, list) else ()


def write_unique(version_dir: Path, columns: Sequence[str]) -> None:
    """Record ``columns`` as the unique columns of the version being built at
    ``version_dir`` (none: the record is removed)."""
    path = version_dir / UNIQUE_FILE
    path.unlink(missing_ok=True)  # may be a link to the previous version's
    if columns:
        path.write_text(json.dumps(sorted(set(columns))) + "\n")


def carry_unique(old: Path, new: Path) -> tuple[str, ...]:
    """Link the record of version ``old`` into the build ``new``; its columns."""
    columns = unique_columns(old)
    if columns and not (new / UNIQUE_FILE).exists():
        os.link(old / UNIQUE_FILE, new / UNIQUE_FILE)
    return columns


def check_unique(
    table: str,
    columns: Sequence[str],
    existing: Sequence[str],
    new: Sequence[str] | pa.Table,
) -> None:
    """Refuse a load whose rows ``new`` (Parquet files, or an Arrow table) repeat a value of
    a unique column of ``columns`` among themselves or with the ``existing`` files.

    Raises
    ------
    WorkspaceError
        Naming the column, one repeated value and how often it would occur.
    """
    if not columns:
        return
    # Imported here: `serve --workers` reaches this module through the workspace store and
    # must not load DuckDB in its supervisor (tests/service/test_memory_budget.py).
    import duckdb

    con = duckdb.connect(config={"threads": 2, "memory_limit": "1GB"})
    try:
        if isinstance(new, pa.Table):
            con.register("new_rows", new)
            fresh = "new_rows"
        else:
            if not new:
                return
            fresh = f"read_parquet([{', '.join(string_literal(f) for f in new)}])"
        for column in columns:
            col = quote_identifier(column)
            sources = [f"SELECT {col} AS v FROM {fresh}"]
            if existing:
                files = ", ".join(string_literal(f) for f in existing)
                sources.append(f"SELECT {col} AS v FROM read_parquet([{files}])")
            row = con.execute(
                f"SELECT v, COUNT(*) FROM ({' UNION ALL '.join(sources)}) "
                f"WHERE v IS NOT NULL AND v IN (SELECT {col} FROM {fresh}) "
                "GROUP BY v HAVING COUNT(*) > 1 LIMIT 1"
            ).fetchone()
            if row is not None:
                value = repr(row[0])
                value = value if len(value) <= 80 else value[:77] + "..."
                raise WorkspaceError(
                    f"column {column} of {table} has a unique index: the value {value} would "
                    f"occur {row[1]} times; nothing was loaded",
                    hint=f"leave out the rows whose {column} is already in the table (or "
                    "repeats in the load)",
                )
    finally:
        con.close()
