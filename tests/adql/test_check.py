"""The checker: names against the catalogue, positions, suggestions, types, grouping."""

from __future__ import annotations

import pytest

from skyvault.adql import parse
from skyvault.adql.check import check
from skyvault.errors import AdqlSemanticError, AdqlSyntaxError, UnsupportedQuery
from tests.adql._catalog import CATALOG, OBJECT, SECRET, _col, _table


def _error(text: str, tables: tuple = CATALOG) -> AdqlSemanticError:
    with pytest.raises(AdqlSemanticError) as info:
        check(parse(text), tables)
    return info.value


def test_unknown_column_has_suggestion_and_position() -> None:
    err = _error("SELECT objectId,\n  rmag FROM dp02_dc2_catalogs.Object")
    assert err.detail == 'no column "rmag" in dp02_dc2_catalogs.Object; did you mean "r_mag"?'
    assert (err.line, err.column) == (2, 3)


def test_unknown_qualified_column() -> None:
    err = _error("SELECT o.coord_rra FROM dp02_dc2_catalogs.Object AS o")
    assert 'no column "coord_rra"' in err.detail and '"coord_ra"' in err.detail
    assert (err.line, err.column) == (1, 10)


def test_unknown_table_and_schema() -> None:
    err = _error("SELECT * FROM dp02_dc2_catalogs.Objekt")
    assert err.detail == 'no table "Objekt" in dp02_dc2_catalogs; did you mean "Object"?'
    assert err.column == 33
    err = _error("SELECT * FROM dp02_dc2_catalog.Object")
    assert err.detail == 'no schema "dp02_dc2_catalog"; did you mean "dp02_dc2_catalogs"?'
    assert err.column == 15


def test_inaccessible_table_reads_like_a_missing_one() -> None:
    hidden = _error("SELECT id FROM private.Hidden")
    missing = _error("SELECT id FROM privat.Hidden")
    assert hidden.detail == 'no schema "private"'
    assert missing.detail == 'no schema "privat"'
    # With the table visible the same query passes.
    check(parse("SELECT id FROM private.Hidden"), (*CATALOG, SECRET))
    # Unqualified: the hidden table's error reads exactly like that of a table that exists
    # nowhere, and a near miss of its name does not suggest it.
    hidden = _error("SELECT id FROM Hidden")
    nowhere = _error("SELECT id FROM Nosuch")
    assert 'no table "Hidden"' in hidden.detail
    assert hidden.detail == nowhere.detail.replace("Nosuch", "Hidden")
    assert hidden.hint == nowhere.hint
    assert "Hidden" not in _error("SELECT id FROM Hiddem").detail
    assert "Hidden" in _error("SELECT id FROM Hiddem", (*CATALOG, SECRET)).detail


def test_identifier_case_rules() -> None:
    check(parse("SELECT OBJECTID, Coord_Ra FROM DP02_DC2_CATALOGS.object"), CATALOG)
    check(parse('SELECT "objectId" FROM dp02_dc2_catalogs."Object"'), CATALOG)
    err = _error('SELECT "objectid" FROM dp02_dc2_catalogs.Object')
    assert 'no column "objectid"' in err.detail


def test_ambiguous_column_in_join() -> None:
    err = _error(
        "SELECT objectId FROM dp02_dc2_catalogs.Object AS o\n"
        "JOIN dp02_dc2_catalogs.ForcedSource AS f ON o.objectId = f.objectId"
    )
    assert 'the column name "objectId" is ambiguous' in err.detail
    assert (err.line, err.column) == (1, 8)
    assert err.hint is not None and "o.objectId" in err.hint


def test_using_merges_the_column() -> None:
    checked = check(
        parse(
            "SELECT objectId, band FROM dp02_dc2_catalogs.Object "
            "JOIN dp02_dc2_catalogs.ForcedSource USING (objectId)"
        ),
        CATALOG,
    )
    assert [c.name for c in checked.columns] == ["objectId", "band"]


def test_alias_hides_table_name() -> None:
    err = _error("SELECT Object.r_mag FROM dp02_dc2_catalogs.Object AS o")
    assert 'no table "Object" in FROM' in err.detail
    assert err.hint == "a table with an alias is referred to by its alias only"


def test_duplicate_alias() -> None:
    err = _error("SELECT * FROM tycho2.main AS a, dp02_dc2_catalogs.Object AS a")
    assert "used twice" in err.detail


def test_hidden_healpix_column_is_unreachable() -> None:
    err = _error('SELECT "_healpix_29" FROM dp02_dc2_catalogs.Object')
    assert 'no column "_healpix_29"' in err.detail
    checked = check(parse("SELECT * FROM dp02_dc2_catalogs.Object"), CATALOG)
    names = [c.name for c in checked.columns]
    assert "_healpix_29" not in names
    assert names == [c.name for c in OBJECT.columns if c.name != "_healpix_29"]
    checked = check(parse("SELECT o.* FROM dp02_dc2_catalogs.Object AS o"), CATALOG)
    assert "_healpix_29" not in [c.name for c in checked.columns]


@pytest.mark.parametrize(
    ("query", "fragment", "column"),
    [
        ("SELECT CONTAINS(POINT(ra, dec), 5) FROM tycho2.main", "CONTAINS needs a geometry", 33),
        ("SELECT SUM(name) FROM tycho2.main", "SUM needs numbers", 12),
        ("SELECT LOWER(ra) FROM tycho2.main", "LOWER needs a string", 14),
        ("SELECT name + 1 FROM tycho2.main", "'+' needs a number", 8),
        ("SELECT id FROM tycho2.main WHERE name > 3", "cannot compare string", 41),
        ("SELECT id FROM tycho2.main WHERE name LIKE 3", "LIKE compares strings", 44),
        ("SELECT POINT(name, dec) FROM tycho2.main", "POINT needs numbers", 14),
        ("SELECT DISTANCE(POINT(ra, dec), 3) FROM tycho2.main", "geometry", 33),
        ("SELECT id FROM tycho2.main WHERE POINT(ra, dec) = POINT(1, 2)", "geometries", 34),
        ("SELECT ra || 'x' FROM tycho2.main", "needs a string", 8),
        ("SELECT IN_UNIT(mag_vt, 'deg') FROM tycho2.main", "cannot be converted", 8),
        ("SELECT IN_UNIT(id, 'deg') FROM tycho2.main", "has no unit", 8),
        ("SELECT CAST('abc' AS INTEGER) FROM tycho2.main", "is not a number", 13),
        ("SELECT ivo_hasword(id, 'x') FROM tycho2.main", "must be a string", 20),
        # MOD is named by its entry in the function table (it once said "EXPR needs ...").
        ("SELECT MOD(name, 2) FROM tycho2.main", "MOD needs a number; name is string", 12),
    ],
)
def test_type_errors(query: str, fragment: str, column: int) -> None:
    err = _error(query)
    assert fragment in err.detail
    assert err.column == column


def test_grouping_rules() -> None:
    err = _error("SELECT band, seeing FROM dp02_dc2_catalogs.Visit GROUP BY band")
    assert '"seeing" must be in GROUP BY' in err.detail
    assert err.column == 14
    err = _error("SELECT COUNT(*) FROM tycho2.main WHERE COUNT(*) > 1")
    assert "COUNT cannot be used here" in err.detail
    err = _error("SELECT MAX(MIN(ra)) FROM tycho2.main")
    assert "MIN cannot be used here" in err.detail
    err = _error("SELECT * FROM tycho2.main GROUP BY id")
    assert "neither grouped nor aggregated" in err.detail
    check(parse("SELECT band AS b, COUNT(*) FROM dp02_dc2_catalogs.Visit GROUP BY b"), CATALOG)


def test_set_operation_and_subquery_shapes() -> None:
    err = _error("SELECT id, ra FROM tycho2.main UNION SELECT id FROM tycho2.main")
    assert "same number of columns" in err.detail
    err = _error("SELECT id FROM tycho2.main WHERE id IN (SELECT id, ra FROM tycho2.main)")
    assert "one column" in err.detail
    err = _error("SELECT name FROM tycho2.main UNION SELECT id FROM tycho2.main")
    assert "incompatible types" in err.detail


def test_order_by_names_and_positions() -> None:
    check(parse("SELECT ra AS x FROM tycho2.main ORDER BY x"), CATALOG)
    err = _error("SELECT ra FROM tycho2.main ORDER BY 3")
    assert "has 1 column" in err.detail


@pytest.mark.parametrize(
    "query",
    [
        "SELECT POINT('GALACTIC', ra, dec) FROM tycho2.main",
        "SELECT RAND(3) FROM tycho2.main",
        "SELECT CAST(ra AS POINT) FROM tycho2.main",
        "SELECT id FROM tycho2.main AS a, tycho2.main AS b "
        "WHERE CONTAINS(POINT(a.ra, a.dec), POLYGON(b.ra, b.dec, 1, 2, 3, 4)) = 1",
    ],
)
def test_unsupported(query: str) -> None:
    with pytest.raises(UnsupportedQuery) as info:
        check(parse(query), CATALOG)
    assert info.value.line == 1


def test_coordinate_systems_accepted() -> None:
    for system in ("", "ICRS", "icrs", "ICRS GEOCENTER"):
        check(parse(f"SELECT POINT('{system}', ra, dec) FROM tycho2.main"), CATALOG)


def test_invalid_constant_region_is_located() -> None:
    err = _error("SELECT id FROM tycho2.main WHERE CONTAINS(POINT(ra, dec), CIRCLE(1, 95, 1)) = 1")
    assert "invalid CIRCLE" in err.detail and "declination" in err.detail
    assert err.column == 59


@pytest.mark.parametrize(
    ("call", "bad"),
    [
        ("IVO_HEALPIX_INDEX(99, ra, dec)", "99"),
        ("IVO_HEALPIX_INDEX(-1, POINT(ra, dec))", "-1"),
        ("IVO_HEALPIX_INDEX(2.5, ra, dec)", "2.5"),
        ("IVO_HEALPIX_CENTER(30, 0)", "30"),
    ],
)
def test_healpix_order_out_of_range_is_an_error(call: str, bad: str) -> None:
    """A constant order outside 0..29 gave NULL in every row; now the checker says so."""
    err = _error(f"SELECT {call} FROM tycho2.main")
    assert err.detail.startswith("the HEALPix order of IVO_HEALPIX_")
    assert f"from 0 to 29; {bad} is not" in err.detail
    assert 8 + call.index("(") + 1 <= err.column < 8 + call.index(",")  # at the order


def test_healpix_center_index_out_of_range_is_an_error() -> None:
    err = _error("SELECT IVO_HEALPIX_CENTER(1, 48) FROM tycho2.main")
    assert (
        err.detail == "48 is not a HEALPix index at order 1: the NESTED indexes there are 0 to 47"
    )
    check(
        parse("SELECT IVO_HEALPIX_CENTER(1, 47), IVO_HEALPIX_CENTER(29, id) FROM tycho2.main"),
        CATALOG,
    )
    check(
        parse(
            "SELECT IVO_HEALPIX_INDEX(0, ra, dec), IVO_HEALPIX_INDEX(29, ra, dec) FROM tycho2.main"
        ),
        CATALOG,
    )
    check(parse("SELECT IVO_HEALPIX_INDEX(id, ra, dec) FROM tycho2.main"), CATALOG)


def test_long_names_are_shortened_in_errors() -> None:
    """A 100 kB name is quoted by its first 60 characters and its length, once per
    mention, not repeated in full (twice with the double-quote hint)."""
    name = "x" * 100_000
    short = "x" * 60 + "…(100000 characters)"
    for query in (
        f"SELECT {name} FROM tycho2.main",
        f'SELECT id FROM tycho2.main WHERE id = "{name}"',
        f"SELECT id FROM {name}",
        f"SELECT id FROM {name}.t",
        f"SELECT {name}.id FROM tycho2.main",
        f"SELECT {name}, y{name} FROM tycho2.main",
    ):
        err = _error(query)
        text = f"{err.detail} {err.hint or ''}"
        assert len(text) < 400 and short in text, text[:500]
    with pytest.raises(AdqlSyntaxError) as info:
        parse(f"SELECT {name}(id) FROM tycho2.main")
    assert f'"{short}" is an unknown function' in info.value.detail
    exact = "x" * 64
    assert f'no column "{exact}"' in _error(f"SELECT {exact} FROM tycho2.main").detail


def test_output_names() -> None:
    checked = check(
        parse(
            "SELECT id, id, COUNT(*), DISTANCE(POINT(ra, dec), POINT(1, 2)), ra + 1, "
            "scisql_nanojanskyToAbMag(mag_vt) AS m FROM tycho2.main GROUP BY id, ra, dec, mag_vt"
        ),
        CATALOG,
    )
    names = [c.name for c in checked.columns]
    assert names == ["id", "id_2", "count", "distance", "expr", "m"]


# --- every unknown name at once, and hints that point the right way --------------------------

BANDS = _table(
    "dp02_dc2_catalogs",
    "Bands",
    [
        _col("objectId", "int64"),
        _col("ra", "double", "deg"),
        _col("band", "string"),
        _col("r_psfFlux", "double", "nJy"),
        _col("r_psfFluxErr", "double", "nJy"),
        _col("r_cModelFlux", "double", "nJy"),
        _col("r_ap12Flux", "double", "nJy"),
        _col("r_calibFluxErr", "double", "nJy"),
        _col("r_extendedness", "double"),
        _col("g_calibFlux", "double", "nJy"),
        _col("g_psfFlux", "double", "nJy"),
    ],
    kind="plain",
)


def test_every_unknown_column_is_named_in_one_error() -> None:
    names = [f"nope{i}" for i in range(20)]
    err = _error(f"SELECT objectId, {', '.join(names)} FROM {OBJECT.qualified_name}")
    assert err.detail.startswith(f"20 unknown columns in {OBJECT.qualified_name}: ")
    for name in names:
        assert f'"{name}" (line 1, column ' in err.detail
    assert (err.line, err.column) == (1, 18)


def test_unknown_names_of_every_clause_in_the_order_written() -> None:
    err = _error(
        "SELECT rmag, x.tract\nFROM dp02_dc2_catalogs.Object AS o\n"
        "WHERE o.coord_rra > 1 ORDER BY nothing"
    )
    assert err.detail.startswith("4 unknown names: ")
    positions = [err.detail.index(f'"{n}"') for n in ("rmag", "x", "coord_rra", "nothing")]
    assert positions == sorted(positions)
    assert 'did you mean "r_mag"?' in err.detail and 'did you mean "coord_ra"?' in err.detail
    assert (err.line, err.column) == (1, 8)


def test_each_unknown_name_is_reported_once() -> None:
    err = _error(
        "SELECT POINT(ra, dec) FROM dp02_dc2_catalogs.Object "
        "WHERE CONTAINS(POINT(ra, dec), CIRCLE(1, 2, 3)) = 1"
    )
    assert err.detail.startswith("2 unknown columns")
    assert err.detail.count('"ra"') == 1 and err.detail.count('"dec"') == 1


def test_unknown_names_come_before_the_errors_they_cause() -> None:
    # The unknown geometry column is no geometry: the unknown names are what to fix first.
    err = _error(
        "SELECT SQRT(nope) FROM dp02_dc2_catalogs.Object "
        "WHERE CONTAINS(nopoint, CIRCLE(1, 2, 3)) = 1"
    )
    assert err.detail.startswith("2 unknown columns")
    assert '"nope"' in err.detail and '"nopoint"' in err.detail


def test_a_string_in_double_quotes_is_told_to_use_single_quotes() -> None:
    err = _error('SELECT objectId FROM dp02_dc2_catalogs.Bands WHERE band = "r"', (BANDS,))
    assert err.detail == 'no column "r" in dp02_dc2_catalogs.Bands'  # no "did you mean ra"
    assert err.hint is not None and "strings take single quotes: 'r'" in err.hint
    err = _error(
        "SELECT objectId FROM dp02_dc2_catalogs.Bands WHERE band IN (\"g\", 'r')", (BANDS,)
    )
    assert err.hint is not None and "'g'" in err.hint


def test_a_delimited_name_in_the_wrong_case_suggests_the_column() -> None:
    err = _error('SELECT "R_PSFFLUX" FROM dp02_dc2_catalogs.Bands', (BANDS,))
    assert err.detail.endswith('did you mean "r_psfFlux"?')
    assert err.hint is None


def test_suggestions_are_the_columns_of_the_same_band_and_family() -> None:
    err = _error("SELECT r_calibFlux FROM dp02_dc2_catalogs.Bands", (BANDS,))
    suggested = err.detail.split("did you mean one of ", 1)[1]
    for name in ("r_psfFlux", "r_cModelFlux", "r_ap12Flux"):
        assert f'"{name}"' in suggested
    for name in ("g_calibFlux", "r_calibFluxErr", "r_psfFluxErr", "r_extendedness"):
        assert f'"{name}"' not in suggested
    err = _error("SELECT r_calibFlux_flag FROM dp02_dc2_catalogs.Bands", (BANDS,))
    assert err.detail.endswith('did you mean "r_calibFluxErr"?')  # no family: the nearest


def test_ra_and_dec_suggest_the_position_not_a_per_band_centroid() -> None:
    # DP0.2's Object has coord_ra/coord_dec and per-band g_ra, z_decl ...: a new user's
    # "ra" is nearest in spelling to "z_ra", but the position is coord_ra.
    table = _table(
        "dp02_dc2_catalogs",
        "Obj",
        [
            _col("objectId", "int64"),
            _col("coord_ra", "double", "deg"),
            _col("coord_dec", "double", "deg"),
            _col("g_ra", "double", "deg"),
            _col("z_ra", "double", "deg"),
            _col("g_decl", "double", "deg"),
            _col("z_decl", "double", "deg"),
        ],
    )
    err = _error("SELECT ra, dec FROM dp02_dc2_catalogs.Obj", (table,))
    assert '"ra" (line 1, column 8; did you mean "coord_ra"?)' in err.detail
    assert '"dec" (line 1, column 12; did you mean "coord_dec"?)' in err.detail


def test_every_unknown_table_is_named_in_one_error() -> None:
    err = _error(
        "WITH w AS (SELECT ra FROM tycho2.main) "
        "SELECT * FROM w, dp02_dc2_catalogs.Objekt AS o, dp02_dc2_catalog.Source, Visiit"
    )
    assert err.detail.startswith("3 unknown tables: ")
    assert 'no table "Objekt" in dp02_dc2_catalogs; did you mean "Object"?' in err.detail
    assert 'no schema "dp02_dc2_catalog"; did you mean "dp02_dc2_catalogs"?' in err.detail
    assert 'did you mean "Visit"?' in err.detail
    assert '"w"' not in err.detail  # the WITH query is known
    assert (err.line, err.column) == (1, 75)


def test_a_tables_columns_are_made_once_and_self_joins_stay_apart() -> None:
    """Checking a query of a stored table reuses that table's column list (building it for
    a wide table was most of checking a cone); two occurrences of one table still bind
    their columns to their own occurrence."""
    first = check(parse("SELECT objectId FROM dp02_dc2_catalogs.Object"), CATALOG)
    again = check(parse("SELECT coord_ra FROM dp02_dc2_catalogs.Object"), CATALOG)
    assert first.occurrences[0].columns[0] is again.occurrences[0].columns[0]
    joined = check(
        parse(
            "SELECT a.objectId AS x, b.objectId AS y FROM dp02_dc2_catalogs.Object AS a "
            "JOIN dp02_dc2_catalogs.Object AS b ON a.objectId = b.objectId"
        ),
        CATALOG,
    )
    a, b = joined.occurrences
    assert a is not b and a.alias != b.alias
    assert [c.name for c in joined.columns] == ["x", "y"]
