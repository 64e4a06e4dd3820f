"""ADQL 2.1 grammar conformance beyond the golden files: limits that keep every later stage
(checker, translator, DuckDB) away from inputs they cannot handle."""

from __future__ import annotations

import pytest

from skyvault.adql import parse
from skyvault.adql.validate import MAX_SET_BRANCHES
from skyvault.errors import AdqlSyntaxError


def _union(n: int) -> str:
    return " UNION ".join(["SELECT a FROM t"] * n)


def test_many_set_operations_are_refused_with_a_clear_error() -> None:
    parse(_union(MAX_SET_BRANCHES))
    with pytest.raises(AdqlSyntaxError) as caught:
        parse(_union(MAX_SET_BRANCHES + 100))
    assert f"at most {MAX_SET_BRANCHES}" in caught.value.detail
    assert caught.value.hint


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM a, b",
        "SELECT * FROM a NATURAL JOIN b",
        "SELECT * FROM a JOIN b ON a.x = b.x",
        "SELECT * FROM a JOIN b USING (x)",
        "SELECT * FROM a RIGHT JOIN b USING (x), c",
        "SELECT * FROM (a JOIN b ON a.x = b.x) JOIN c ON c.y = a.y",
    ],
)
def test_joins_with_a_specification_and_comma_joins_parse(query: str) -> None:
    parse(query)


@pytest.mark.parametrize(
    ("query", "column"),
    [
        ("SELECT * FROM a, b JOIN c", 20),
        ("SELECT * FROM a JOIN b ON a.x = b.x FULL JOIN c", 37),
        ("SELECT * FROM (a JOIN b) JOIN c ON 1 = 1", 18),
    ],
)
def test_every_keyword_join_needs_on_or_using(query: str, column: int) -> None:
    with pytest.raises(AdqlSyntaxError) as caught:
        parse(query)
    assert "needs ON or USING" in caught.value.detail
    assert caught.value.column == column
