"""TAP_SCHEMA builder alone (no web layer): content, hidden columns, caching."""

from __future__ import annotations

import pyarrow as pa

from skyvault.catalog.metadata import ColumnMeta, TableMeta
from skyvault.catalog.tap_schema import (
    TapSchemaCache,
    build_tap_schema,
    published_table,
)


def _meta(name: str = "Object", created: str = "v1") -> TableMeta:
    columns = (
        ColumnMeta("_healpix_29", "long", indexed=True, column_index=0),
        ColumnMeta("objectId", "long", principal=True, indexed=True, column_index=1),
        ColumnMeta("ra", "double", unit="deg", ucd="pos.eq.ra", column_index=2),
        ColumnMeta("name", "char", arraysize="*", column_index=3),
    )
    return TableMeta("cat", name, "hats", columns, 10, description="d", created=created)


def _by_name(tables: list[tuple[TableMeta, pa.Table]]) -> dict[str, pa.Table]:
    return {m.name: t for m, t in tables}


def test_hidden_column_and_renumbering() -> None:
    published = published_table(_meta())
    assert [c.name for c in published.columns] == ["objectId", "ra", "name"]
    assert [c.column_index for c in published.columns] == [1, 2, 3]


def test_tap_schema_content() -> None:
    tables = _by_name(build_tap_schema([_meta()]))
    assert set(tables) == {"schemas", "tables", "columns", "keys", "key_columns"}
    assert tables["schemas"].column("schema_name").to_pylist() == ["cat", "TAP_SCHEMA"]
    names = tables["tables"].column("table_name").to_pylist()
    assert names[0] == "cat.Object"
    assert "TAP_SCHEMA.columns" in names and "TAP_SCHEMA.key_columns" in names
    columns = tables["columns"].to_pylist()
    mine = [c for c in columns if c["table_name"] == "cat.Object"]
    assert [c["column_name"] for c in mine] == ["objectId", "ra", "name"]
    assert all(c["column_name"] != "_healpix_29" for c in columns)
    first = mine[0]
    assert (first["principal"], first["indexed"], first["std"]) == (1, 1, 0)
    assert mine[1]["unit"] == "deg" and mine[1]["ucd"] == "pos.eq.ra"
    assert mine[2]["datatype"] == "char" and mine[2]["arraysize"] == "*"
    assert tables["columns"].schema.field("principal").type == pa.int32()
    # TAP_SCHEMA describes itself, and every key column points at a described column.
    own = {(c["table_name"], c["column_name"]) for c in columns}
    assert ("TAP_SCHEMA.columns", "column_index") in own
    keys = tables["keys"].to_pylist()
    for key in keys:
        assert key["from_table"] in names and key["target_table"] in names


def test_cache_rebuilds_only_on_change() -> None:
    cache = TapSchemaCache()
    first = cache.get([_meta()])
    assert cache.get([_meta()]) is first
    assert cache.builds == 1
    cache.get([_meta(created="v2")])
    assert cache.builds == 2
