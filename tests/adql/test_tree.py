"""What the parsed tree looks like: the contract with the checker and the translator."""

from __future__ import annotations

import pytest
from sqlglot import exp

from skyvault.adql import RESERVED_WORDS, identifier_matches, nodes, normalize_identifier, parse
from skyvault.adql.translate import compile_adql
from skyvault.adql.validate import SourceText
from skyvault.errors import AdqlSyntaxError, UnsupportedQuery
from tests.adql._catalog import CATALOG

DP02 = (
    "SELECT TOP 10 objectId, coord_ra, coord_dec, scisql_nanojanskyToAbMag(r_cModelFlux) AS r_mag "
    "FROM dp02_dc2_catalogs.Object "
    "WHERE CONTAINS(POINT('ICRS', coord_ra, coord_dec), CIRCLE('ICRS', 62.0, -37.0, 0.05)) = 1 "
    "AND detect_isPrimary = 1"
)


def test_dp02_query_tree() -> None:
    query = parse(DP02)
    assert query.text == DP02
    tree = query.tree
    assert isinstance(tree, exp.Select)
    limit = tree.args["limit"]
    assert limit.meta["top"] is True
    assert limit.expression.this == "10"
    contains = next(tree.find_all(nodes.Contains))
    point, circle = contains.arguments
    assert isinstance(point, nodes.Point)
    assert point.coord_sys == "ICRS"
    assert [c.sql() for c in point.coordinates] == ["coord_ra", "coord_dec"]
    assert isinstance(circle, nodes.Circle)
    assert len(circle.coordinates) == 3
    udf = next(tree.find_all(nodes.UdfCall))
    assert udf.name == "scisql_nanojanskyToAbMag"
    table = tree.args["from_"].this
    assert (table.db, table.name) == ("dp02_dc2_catalogs", "Object")


def test_udf_names_are_case_insensitive_and_canonicalised() -> None:
    tree = parse("SELECT SCISQL_NANOJANSKYTOABMAG(f), Ivo_HasWord(a, 'b') FROM t").tree
    assert [u.name for u in tree.find_all(nodes.UdfCall)] == [
        "scisql_nanojanskyToAbMag",
        "ivo_hasword",
    ]


def test_math_functions_are_sqlglot_nodes() -> None:
    tree = parse("SELECT LOG(a), LOG10(a), CEILING(a), POWER(a, 2), MOD(a, 2) FROM t").tree
    kinds = [type(e) for e in tree.expressions]
    assert kinds == [exp.Ln, exp.Log, exp.Ceil, exp.Pow, exp.Mod]
    assert tree.expressions[1].this.this == "10"


def test_offset_and_order() -> None:
    tree = parse("SELECT TOP 5 a FROM t ORDER BY a DESC OFFSET 20").tree
    assert tree.args["offset"].expression.this == "20"
    ordered = tree.args["order"].expressions[0]
    assert ordered.args["desc"] is True


def test_cast_targets_are_data_types() -> None:
    tree = parse(
        "SELECT CAST(a AS DOUBLE PRECISION), CAST(b AS VARCHAR(3)), CAST(c AS POINT) FROM t"
    )
    targets = [c.to for c in tree.tree.find_all(exp.Cast)]
    assert targets[0].this is exp.DataType.Type.DOUBLE
    assert targets[1].sql() == "VARCHAR(3)"
    assert targets[2].args["kind"] == "POINT"


def test_quoted_and_regular_identifiers_are_distinguishable() -> None:
    tree = parse('SELECT "Alpha", alpha, ALPHA FROM t').tree
    idents = [c.this for c in tree.expressions]
    assert [(i.this, i.quoted) for i in idents] == [
        ("Alpha", True),
        ("alpha", False),
        ("ALPHA", False),
    ]
    assert normalize_identifier(idents[1]) == normalize_identifier(idents[2])
    assert normalize_identifier(idents[0]) != normalize_identifier(idents[1])
    assert normalize_identifier(idents[1]) == ("ALPHA", False)
    assert normalize_identifier(idents[0]) == ("Alpha", True)
    assert identifier_matches(idents[1], "Alpha")
    assert identifier_matches(idents[2], "alpha")
    assert identifier_matches(idents[0], "Alpha")
    assert not identifier_matches(idents[0], "alpha")


@pytest.mark.parametrize("word", sorted(RESERVED_WORDS - {"END-EXEC"}))
def test_every_reserved_word_is_refused_as_a_regular_column_name(word: str) -> None:
    with pytest.raises(AdqlSyntaxError):
        parse(f"SELECT x.{word} FROM t AS x")
    # ... and accepted when delimited.
    assert parse(f'SELECT x."{word}" FROM t AS x').tree is not None


@pytest.mark.parametrize("word", ["limit", "copy", "pragma", "format", "cot", "filter", "dec"])
def test_non_reserved_sql_words_are_ordinary_names(word: str) -> None:
    assert parse(f"SELECT {word} FROM t").sql() == f"SELECT {word} FROM t"


def test_error_dict_carries_position() -> None:
    with pytest.raises(AdqlSyntaxError) as caught:
        parse("SELECT a\nFROM t\nWHERE size > 1")
    assert caught.value.to_dict() == {
        "code": "adql.syntax",
        "message": str(caught.value.args[0]),
        "hint": 'quote it as a delimited identifier: "size"',
        "line": 3,
        "column": 7,
    }


def test_tabs_and_crlf_positions() -> None:
    with pytest.raises(AdqlSyntaxError) as caught:
        parse("SELECT a\r\n\tFROM t\r\n\tWHERE fooo(a) = 1")
    assert (caught.value.line, caught.value.column) == (3, 8)


def test_non_text_is_refused() -> None:
    with pytest.raises(AdqlSyntaxError):
        parse(b"SELECT a FROM t")  # type: ignore[arg-type]


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    text = "SELECT " + "(" * 3000 + "1" + ")" * 3000 + " FROM t"
    with pytest.raises(AdqlSyntaxError, match="nested too deeply"):
        parse(text)


def test_source_text_locates_nodes() -> None:
    """One way from a node to the (line, column) its errors name: its own token, else its
    earliest descendant's, else (1, 1)."""
    text = "SELECT a,\n  b + c AS d\nFROM t"
    source = SourceText(text)
    tree = parse(text).tree
    [add] = list(tree.find_all(exp.Add))
    assert source.locate(add) == (2, 3)  # "+" is no token of its own: "b" starts it
    assert source.locate(add.expression) == (2, 7)
    assert source.locate(exp.Literal.number(1)) == (1, 1)  # built, not parsed
    assert source.locate(None) == (1, 1)


def test_translator_errors_point_at_the_node() -> None:
    text = (
        "SELECT objectId,\n  BOX('ICRS', coord_ra, coord_dec, 1, 1) FROM dp02_dc2_catalogs.Object"
    )
    with pytest.raises(UnsupportedQuery) as info:
        compile_adql(text, list(CATALOG))
    assert (info.value.line, info.value.column) == (2, 3)
    assert info.value.detail == "a BOX built from column values cannot be selected"
