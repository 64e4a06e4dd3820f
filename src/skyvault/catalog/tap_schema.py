"""TAP_SCHEMA 1.1 as in-memory Arrow tables, built from the published tables' metadata.

:func:`build_tap_schema` turns the :class:`~skyvault.catalog.metadata.TableMeta` of the
tables a caller may see into the five TAP_SCHEMA tables (``schemas``, ``tables``,
``columns``, ``keys``, ``key_columns``), each with its own metadata, ready for
``Archive.stream(..., extra=...)``.  TAP_SCHEMA describes itself too.  :class:`TapSchemaCache`
keeps one build per set of visible tables (callers with different access see different
rows: a table a caller may not read has no row in any TAP_SCHEMA table, nor has a key to
it) and rebuilds only when that set, or a table's version, changes.

The same :func:`published_tables` view of the metadata feeds the VOSI tables document, so
``/tables`` and TAP_SCHEMA agree.  Implementation columns (``_healpix_29``) are hidden from
both, and column indexes are renumbered 1..n over what is published.

This module imports only the core: it is usable (and tested) without the web layer.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace

import pyarrow as pa

from skyvault.adql.reserved import RESERVED_WORDS
from skyvault.catalog.metadata import ColumnMeta, TableMeta
from skyvault.sqltext import quote_identifier

__all__ = [
    "HIDDEN_COLUMNS",
    "TAP_SCHEMA",
    "ForeignKey",
    "TapSchemaCache",
    "build_tap_schema",
    "foreign_keys",
    "published_name",
    "published_table",
    "published_tables",
    "tap_schema_metadata",
    "visible_keys",
]

TAP_SCHEMA = "TAP_SCHEMA"

#: Columns that exist in storage for the engine's sake and are never published.
HIDDEN_COLUMNS = frozenset({"_healpix_29"})


@dataclass(frozen=True)
class ForeignKey:
    """A TAP_SCHEMA key: ``from_table(from_columns)`` references ``target_table(...)``."""

    key_id: str
    from_table: str
    target_table: str
    columns: tuple[tuple[str, str], ...]
    description: str | None = None


_REGULAR = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")


def published_name(name: str) -> str:
    """A column name as TAP_SCHEMA and VOSI publish it: delimited (``"size"``) when it is
    an ADQL reserved word or not a regular identifier, so it can be pasted into a query."""
    if _REGULAR.match(name) and name.upper() not in RESERVED_WORDS:
        return name
    return quote_identifier(name)


def published_table(meta: TableMeta) -> TableMeta:
    """``meta`` as published: hidden columns removed, names delimited where ADQL needs it,
    ``column_index`` renumbered from 1."""
    columns = [c for c in meta.columns if c.name not in HIDDEN_COLUMNS]
    renumbered = tuple(
        replace(c, name=published_name(c.name), column_index=i)
        for i, c in enumerate(columns, start=1)
    )
    return replace(meta, columns=renumbered)


def published_tables(tables: Sequence[TableMeta]) -> list[TableMeta]:
    """The tables as published, sorted by schema then table name."""
    ordered = sorted(tables, key=lambda m: (m.schema.lower(), m.name.lower()))
    return [published_table(m) for m in ordered]


# --- TAP_SCHEMA's own description -----------------------------------------------------------


def _text(name: str, description: str, *, principal: bool = True, std: bool = True) -> ColumnMeta:
    return ColumnMeta(
        name=name,
        datatype="char",
        arraysize="*",
        description=description,
        principal=principal,
        std=std,
        arrow_type="string",
    )


def _int(name: str, description: str, *, principal: bool = True, std: bool = True) -> ColumnMeta:
    return ColumnMeta(
        name=name,
        datatype="int",
        description=description,
        principal=principal,
        std=std,
        arrow_type="int32",
    )


_SCHEMAS_COLUMNS = (
    _text("schema_name", "schema name, for reference"),
    _text("utype", "lists the utypes of schemas in the tableset"),
    _text("description", "describes the schemas in the tableset"),
    _int("schema_index", "recommended sort order when listing schemas"),
)
_TABLES_COLUMNS = (
    _text("schema_name", "the schema name from TAP_SCHEMA.schemas"),
    _text("table_name", "the fully qualified table name, as usable in queries"),
    _text("table_type", "one of: table, view"),
    _text("utype", "lists the utype of tables in the tableset"),
    _text("description", "describes tables in the tableset"),
    _int("table_index", "recommended sort order when listing tables"),
)
_COLUMNS_COLUMNS = (
    _text("table_name", "the table this column belongs to"),
    _text("column_name", "the column name"),
    _text("utype", "lists the utypes of columns in the tableset"),
    _text("ucd", "lists the UCDs of columns in the tableset"),
    _text("unit", "lists the unit used for column values in the tableset"),
    _text("description", "describes the columns in the tableset"),
    _text("datatype", "lists the ADQL datatype of columns in the tableset"),
    _text("arraysize", "lists the size of variable-length columns in the tableset"),
    _text("xtype", "a DALI or custom extended type annotation"),
    _int("size", "deprecated: use arraysize", std=True, principal=False),
    _int("principal", "a principal column; 1 means 1, 0 means 0"),
    _int("indexed", "an indexed column; 1 means 1, 0 means 0"),
    _int("std", "a standard column; 1 means 1, 0 means 0"),
    _int("column_index", "recommended sort order when listing columns of a table"),
)
_KEYS_COLUMNS = (
    _text("key_id", "unique key to join to TAP_SCHEMA.key_columns"),
    _text("from_table", "the table with the foreign key"),
    _text("target_table", "the table with the primary key"),
    _text("utype", "lists the utype of keys in the tableset"),
    _text("description", "describes keys in the tableset"),
)
_KEY_COLUMNS_COLUMNS = (
    _text("key_id", "key to join to TAP_SCHEMA.keys"),
    _text("from_column", "column in the from_table"),
    _text("target_column", "column in the target_table"),
)

_DESCRIPTIONS = {
    "schemas": "description of schemas in this tableset",
    "tables": "description of tables in this tableset",
    "columns": "description of columns in this tableset",
    "keys": "description of foreign keys in this tableset",
    "key_columns": "description of foreign key columns in this tableset",
}
_OWN_COLUMNS = {
    "schemas": _SCHEMAS_COLUMNS,
    "tables": _TABLES_COLUMNS,
    "columns": _COLUMNS_COLUMNS,
    "keys": _KEYS_COLUMNS,
    "key_columns": _KEY_COLUMNS_COLUMNS,
}
_OWN_KEYS = (
    ForeignKey("tap_schema.tables_schema", "TAP_SCHEMA.tables", "TAP_SCHEMA.schemas",
               (("schema_name", "schema_name"),)),
    ForeignKey("tap_schema.columns_table", "TAP_SCHEMA.columns", "TAP_SCHEMA.tables",
               (("table_name", "table_name"),)),
    ForeignKey("tap_schema.keys_from", "TAP_SCHEMA.keys", "TAP_SCHEMA.tables",
               (("from_table", "table_name"),)),
    ForeignKey("tap_schema.keys_target", "TAP_SCHEMA.keys", "TAP_SCHEMA.tables",
               (("target_table", "table_name"),)),
    ForeignKey("tap_schema.key_columns_key", "TAP_SCHEMA.key_columns", "TAP_SCHEMA.keys",
               (("key_id", "key_id"),)),
)  # fmt: skip


def foreign_keys(keys: Sequence[ForeignKey] = ()) -> list[ForeignKey]:
    """``keys`` and TAP_SCHEMA's own foreign keys."""
    return [*keys, *_OWN_KEYS]


def tap_schema_metadata(nrows: dict[str, int] | None = None) -> list[TableMeta]:
    """The metadata of the five TAP_SCHEMA tables (row counts from ``nrows`` when given)."""
    out = []
    for name, columns in _OWN_COLUMNS.items():
        indexed = tuple(replace(c, column_index=i) for i, c in enumerate(columns, start=1))
        out.append(
            TableMeta(
                schema=TAP_SCHEMA,
                name=name,
                kind="plain",
                columns=indexed,
                nrows=(nrows or {}).get(name, 0),
                description=_DESCRIPTIONS[name],
            )
        )
    return out


def _arrow_schema(columns: Sequence[ColumnMeta]) -> pa.Schema:
    return pa.schema(
        [pa.field(c.name, pa.int32() if c.datatype == "int" else pa.string()) for c in columns]
    )


def _flag(value: bool) -> int:
    return 1 if value else 0


def _fixed_size(arraysize: str | None) -> int | None:
    if arraysize and arraysize.isdigit():
        return int(arraysize)
    return None


def build_tap_schema(
    tables: Sequence[TableMeta],
    keys: Sequence[ForeignKey] = (),
    *,
    schema_descriptions: dict[str, str] | None = None,
) -> list[tuple[TableMeta, pa.Table]]:
    """The TAP_SCHEMA tables describing ``tables`` and themselves.

    Parameters
    ----------
    tables
        Metadata of the stored tables the caller may see (as stored: hidden columns are
        removed here).
    keys
        Foreign keys between ``tables`` (TAP_SCHEMA's own keys are always added).
    schema_descriptions
        Descriptions of the schemas, by name.

    Returns
    -------
    list of (TableMeta, pyarrow.Table)
        ``schemas``, ``tables``, ``columns``, ``keys``, ``key_columns``, for ``extra=``.
    """
    own = tap_schema_metadata()
    keys = visible_keys(keys, tables)
    published = [*published_tables(tables), *(published_table(m) for m in own)]
    descriptions = {TAP_SCHEMA: "the metadata of this TAP service (TAP 1.1 TAP_SCHEMA)"}
    descriptions.update(schema_descriptions or {})

    schema_names: list[str] = []
    for meta in published:
        if meta.schema not in schema_names:
            schema_names.append(meta.schema)
    rows: dict[str, list[dict[str, object]]] = {name: [] for name in _OWN_COLUMNS}
    for index, schema in enumerate(schema_names, start=1):
        rows["schemas"].append(
            {
                "schema_name": schema,
                "utype": None,
                "description": descriptions.get(schema),
                "schema_index": index,
            }
        )
    for index, meta in enumerate(published, start=1):
        rows["tables"].append(
            {
                "schema_name": meta.schema,
                "table_name": meta.qualified_name,
                "table_type": "table",
                "utype": None,
                "description": meta.description,
                "table_index": index,
            }
        )
        for col in meta.columns:
            rows["columns"].append(
                {
                    "table_name": meta.qualified_name,
                    "column_name": col.name,
                    "utype": col.utype,
                    "ucd": col.ucd,
                    "unit": col.unit,
                    "description": col.description,
                    "datatype": col.datatype,
                    "arraysize": col.arraysize,
                    "xtype": col.xtype,
                    "size": _fixed_size(col.arraysize),
                    "principal": _flag(col.principal),
                    "indexed": _flag(col.indexed),
                    "std": _flag(col.std),
                    "column_index": col.column_index,
                }
            )
    for key in foreign_keys(keys):
        rows["keys"].append(
            {
                "key_id": key.key_id,
                "from_table": key.from_table,
                "target_table": key.target_table,
                "utype": None,
                "description": key.description,
            }
        )
        for from_column, target_column in key.columns:
            rows["key_columns"].append(
                {"key_id": key.key_id, "from_column": from_column, "target_column": target_column}
            )

    counts = {name: len(r) for name, r in rows.items()}
    out = []
    for meta in tap_schema_metadata(counts):
        data = pa.Table.from_pylist(rows[meta.name], schema=_arrow_schema(meta.columns))
        out.append((meta, data))
    return out


def visible_keys(keys: Sequence[ForeignKey], tables: Sequence[TableMeta]) -> list[ForeignKey]:
    """The ``keys`` whose both ends are among ``tables`` (a key to a table the caller may not
    see would name it)."""
    names = {m.qualified_name for m in tables}
    return [k for k in keys if k.from_table in names and k.target_table in names]


def _visibility_version(tables: Sequence[TableMeta]) -> tuple[tuple[object, ...], ...]:
    return tuple(sorted((m.schema, m.name, m.created, m.nrows) for m in tables))


class TapSchemaCache:
    """TAP_SCHEMA per set of visible tables, rebuilt only when that set changes; thread-safe.

    Callers with different access see different TAP_SCHEMA rows, so one build is kept per
    *visibility set*: the sorted (schema, table, version, rows) of the tables a caller may
    see.  Callers sharing access (every anonymous caller, the members of one group) share
    a build; a new table version changes the key and rebuilds.  At most ``max_entries``
    builds are kept, least recently used dropped first.
    """

    def __init__(self, keys: Sequence[ForeignKey] = (), *, max_entries: int = 64) -> None:
        self.keys = tuple(keys)
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._builds: OrderedDict[Hashable, list[tuple[TableMeta, pa.Table]]] = OrderedDict()
        self.builds = 0

    def keys_for(self, tables: Sequence[TableMeta]) -> list[ForeignKey]:
        """The foreign keys between ``tables`` (those a caller sees), for VOSI tables."""
        return visible_keys(self.keys, tables)

    def get(self, tables: Sequence[TableMeta]) -> list[tuple[TableMeta, pa.Table]]:
        """TAP_SCHEMA describing exactly ``tables``, from the cache when already built."""
        version = _visibility_version(tables)
        with self._lock:
            cached = self._builds.get(version)
            if cached is not None:
                self._builds.move_to_end(version)
                return cached
        built = build_tap_schema(tables, self.keys_for(tables))
        with self._lock:
            cached = self._builds.get(version)
            if cached is not None:
                return cached
            self._builds[version] = built
            self.builds += 1
            while len(self._builds) > self.max_entries:
                self._builds.popitem(last=False)
            return built
