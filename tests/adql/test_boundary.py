"""What a translation hands the engine besides SQL: each table occurrence's columns, and
each cross-match's positions and cell join (where the keyed SQL joins the two on their cell
keys, and which side an outer join forces the engine to explode)."""

from __future__ import annotations

import pytest

from skyvault.adql.translate import compile_adql
from skyvault.sky.cells import KEY_COLUMN
from tests.adql._catalog import CATALOG, OBJECT, TYCHO

_T = TYCHO.schema + "." + TYCHO.name
_O = OBJECT.schema + "." + OBJECT.name


@pytest.mark.parametrize(
    ("query", "columns"),
    [
        (f"SELECT id FROM {_T} WHERE name = 'ra dec mag_vt'", [("id", "name")]),
        (f"SELECT COUNT(*) AS n FROM {_T}", [()]),
        (f"SELECT * FROM {_T}", [tuple(c.name for c in TYCHO.columns if c.name != "_healpix_29")]),
        # Two occurrences of one table: each reads its own columns only.
        (
            f"SELECT a.id FROM {_T} AS a JOIN {_T} AS b ON a.id = b.id WHERE b.mag_vt < 3",
            [("id",), ("id", "mag_vt")],
        ),
        (f"SELECT id FROM {_T} AS a JOIN {_T} AS b USING (id)", [("id",), ("id",)]),
        (f"WITH c AS (SELECT ra FROM {_T}) SELECT COUNT(*) AS n FROM c", [("ra",)]),
        (
            f"SELECT objectId FROM {_O} WHERE EXISTS (SELECT * FROM {_T} AS t WHERE t.id = 1)",
            [("objectId",), tuple(c.name for c in TYCHO.columns if c.name != "_healpix_29")],
        ),
        # The HEALPix index of the stored position is read from the stored index column.
        (
            f"SELECT ivo_healpix_index(8, coord_ra, coord_dec) AS h FROM {_O}",
            [("_healpix_29",)],
        ),
    ],
)
def test_each_occurrence_lists_the_columns_its_sql_reads(
    query: str, columns: list[tuple[str, ...]]
) -> None:
    translation = compile_adql(query, CATALOG)
    assert [ref.columns for ref in translation.tables] == columns


_D = "DISTANCE(POINT(a.ra, a.dec), POINT(b.ra, b.dec)) < 0.001"


@pytest.mark.parametrize(
    ("query", "cells"),
    [
        (f"SELECT a.id FROM {_T} AS a JOIN {_T} AS b ON {_D}", [("ON", None)]),
        (f"SELECT a.id FROM {_T} AS a, {_T} AS b WHERE {_D}", [("WHERE", None)]),
        (f"SELECT a.id FROM {_T} AS a LEFT JOIN {_T} AS b ON {_D}", [("ON", "__sv_t1")]),
        (f"SELECT a.id FROM {_T} AS a RIGHT JOIN {_T} AS b ON {_D}", [("ON", "__sv_t0")]),
        (f"SELECT a.id FROM {_T} AS a FULL JOIN {_T} AS b ON a.id = b.id WHERE {_D}", [None]),
        # Inside a nested join the items are not FROM items of the SELECT.
        (f"SELECT a.id FROM ({_T} AS a JOIN {_T} AS b ON a.id = b.id) WHERE {_D}", [None]),
        # An item in one cell join only (it has one key); the second stays an ordinary join.
        (
            f"SELECT a.id FROM {_T} AS a JOIN {_T} AS b ON {_D} JOIN {_T} AS c "
            "ON DISTANCE(POINT(a.ra, a.dec), POINT(c.ra, c.dec)) < 0.002",
            [("ON", None), None],
        ),
        (
            f"SELECT a.id FROM (SELECT id, ra, dec FROM {_T}) AS a JOIN {_T} AS b ON {_D} "
            f"JOIN {_T} AS c ON DISTANCE(POINT(a.ra, a.dec), POINT(c.ra, c.dec)) < 0.002",
            [("ON", None), None],
        ),
        (f"SELECT a.id FROM {_T} AS b LEFT JOIN (SELECT * FROM {_T}) AS a ON {_D}", [("ON", "s2")]),
    ],
)
def test_each_crossmatch_says_where_the_keyed_sql_joins_it(
    query: str, cells: list[tuple[str, str | None] | None]
) -> None:
    translation = compile_adql(query, CATALOG)
    got = [(m.cell.clause, m.cell.exploded) if m.cell else None for m in translation.crossmatches]
    assert got == cells
    assert KEY_COLUMN not in translation.sql, "the plain SQL runs over plain relations"
    keyed = translation.keyed_sql
    if not any(cells):
        assert keyed is None
        return
    assert keyed is not None
    assert keyed.count(f".{KEY_COLUMN} = ") == sum(1 for c in cells if c)
    for match in translation.crossmatches:
        for side in match.sides:
            # A derived side gets its keys in the SQL, from an offsets relation of its own.
            assert (side.offsets is not None) == (side.derived and match.cell is not None)
            if side.offsets is not None:
                assert f'CROSS JOIN "{side.offsets}"' in keyed
