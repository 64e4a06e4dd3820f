"""Hypothesis: any text gives a tree or an AdqlSyntaxError with a position, never another error."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skyvault.adql import AdqlQuery, parse
from skyvault.errors import AdqlSyntaxError

SEEDS = [p.read_text() for p in sorted((Path(__file__).parent / "golden").rglob("*.adql"))]
WORDS = [
    "SELECT", "TOP", "FROM", "WHERE", "JOIN", "ON", "USING", "(", ")", ",", ".", "*", "'x'",
    '"q"', "1", "2.5e3", "-", "+", "/", "||", "=", "<>", "<=", "AND", "OR", "NOT", "IN", "LIKE",
    "ILIKE", "IS", "NULL", "BETWEEN", "EXISTS", "UNION", "ALL", "EXCEPT", "INTERSECT", "WITH",
    "AS", "ORDER BY", "GROUP BY", "HAVING", "OFFSET", "CASE", "WHEN", "THEN", "ELSE", "END",
    "CAST", "POINT", "CIRCLE", "CONTAINS", "DISTANCE", "COUNT", "a", "t", "size", ";", "::",
    "[", "--", "/*", "%", "LIMIT", "\n", "ivo_hasword", "IN_UNIT", "DOUBLE PRECISION",
]  # fmt: skip


def _outcome(text: str) -> AdqlQuery | AdqlSyntaxError:
    try:
        return parse(text)
    except AdqlSyntaxError as error:
        return error


def _check(text: str) -> None:
    result = _outcome(text)
    if isinstance(result, AdqlSyntaxError):
        assert (result.line or 0) >= 1
        assert (result.column or 0) >= 1
        assert result.detail
        return
    assert isinstance(result, AdqlQuery)
    # Whatever parses renders to ADQL that parses again to the same rendering.
    assert parse(result.sql()).sql() == result.sql()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_random_text(text: str) -> None:
    _check(text)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(WORDS), max_size=30))
def test_random_token_soup(words: list[str]) -> None:
    _check(" ".join(words))


@settings(max_examples=600, deadline=None)
@given(
    st.sampled_from(SEEDS),
    st.lists(
        st.tuples(
            st.sampled_from(["delete", "insert", "replace", "swap"]),
            st.integers(min_value=0, max_value=10_000),
            st.text(min_size=1, max_size=3) | st.sampled_from(WORDS),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_mutated_queries(seed: str, edits: list[tuple[str, int, str]]) -> None:
    text = seed
    for action, where, piece in edits:
        i = where % (len(text) + 1)
        if action == "delete":
            text = text[:i] + text[i + len(piece) :]
        elif action == "insert":
            text = text[:i] + piece + text[i:]
        elif action == "replace":
            text = text[:i] + piece + text[i + len(piece) :]
        else:
            j = (where * 7) % (len(text) + 1)
            text = text[:j] + text[i:] + text[j:i] if j < i else text
    _check(text)
