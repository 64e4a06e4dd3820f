"""The schema queries web portals send (Firefly's TAP browser, the skyvault portal) run
unchanged: joins of TAP_SCHEMA tables with and without aliases, LIKE on names, the keys /
key_columns join.  Each answer is checked against the plain TAP_SCHEMA tables."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.service.conftest import read_votable


def _rows(client: TestClient, query: str) -> list[dict[str, object]]:
    r = client.post("/tap/sync", data={"LANG": "ADQL", "QUERY": query, "MAXREC": "100000"})
    assert r.status_code == 200, r.text
    table = read_votable(r.content).get_first_table().to_table()
    return [dict(zip(table.colnames, row, strict=True)) for row in table.iterrows()]


def test_schemas_joined_to_tables(client: TestClient) -> None:
    joined = _rows(
        client,
        "SELECT * FROM tap_schema.schemas INNER JOIN tap_schema.tables "
        "ON tap_schema.schemas.schema_name = tap_schema.tables.schema_name "
        "ORDER BY tap_schema.tables.table_name",
    )
    tables = _rows(client, "SELECT table_name FROM TAP_SCHEMA.tables ORDER BY table_name")
    assert [r["table_name"] for r in joined] == [r["table_name"] for r in tables]
    aliased = _rows(
        client,
        "SELECT s.schema_name, s.description AS sdesc, t.table_name, t.table_type "
        "FROM TAP_SCHEMA.schemas AS s JOIN TAP_SCHEMA.tables AS t ON s.schema_name = t.schema_name "
        "WHERE s.schema_name = 'dp02_dc2_catalogs'",
    )
    assert aliased and all(str(r["table_name"]).startswith("dp02_dc2_catalogs.") for r in aliased)


@pytest.mark.parametrize(
    ("condition", "check"),
    [
        ("table_name LIKE 'dp02_dc2_catalogs.Obj%'", lambda r: r["table_name"].startswith("dp02")),
        ("column_name LIKE '%psfFlux'", lambda r: str(r["column_name"]).endswith("psfFlux")),
        ("LOWER(column_name) LIKE '%coord_ra%'", lambda r: "coord_ra" in str(r["column_name"])),
        ("ucd LIKE 'pos.eq.ra%'", lambda r: str(r["ucd"]).startswith("pos.eq.ra")),
    ],
)
def test_like_on_columns(client: TestClient, condition: str, check: object) -> None:
    rows = _rows(client, f"SELECT * FROM TAP_SCHEMA.columns WHERE {condition}")
    assert rows and all(check(r) for r in rows)  # type: ignore[operator]


def test_keys_joined_to_key_columns(client: TestClient) -> None:
    keys = _rows(client, "SELECT key_id, from_table, target_table FROM TAP_SCHEMA.keys")
    joined = _rows(
        client,
        "SELECT k.key_id, k.from_table, k.target_table, k.description, "
        "c.from_column, c.target_column "
        "FROM TAP_SCHEMA.keys AS k JOIN TAP_SCHEMA.key_columns AS c ON k.key_id = c.key_id",
    )
    assert keys and {r["key_id"] for r in joined} == {r["key_id"] for r in keys}
    target = keys[0]["target_table"]
    linked = _rows(
        client,
        "SELECT TOP 100 tap_schema.keys.from_table AS from_table, "
        "tap_schema.keys.target_table AS target_table, tap_schema.keys.key_id, "
        "tap_schema.key_columns.from_column, tap_schema.key_columns.target_column "
        "FROM tap_schema.keys JOIN tap_schema.key_columns "
        "ON tap_schema.keys.key_id = tap_schema.key_columns.key_id "
        f"WHERE target_table = '{target}' OR from_table = '{target}'",
    )
    assert linked and all(target in (r["from_table"], r["target_table"]) for r in linked)
