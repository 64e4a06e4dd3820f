"""The one identifier quoter, string-literal writer and MAXREC wrapper, checked by DuckDB."""

from __future__ import annotations

import duckdb

from skyvault.sqltext import quote_identifier, string_literal, with_maxrec

AWKWARD = ["plain", "Mixed Case", 'quo"te', "it's", 'two ""', "", "ümlaut;--"]


def test_a_quoted_identifier_names_exactly_that_column() -> None:
    con = duckdb.connect()
    for name in [n for n in AWKWARD if n]:  # DuckDB refuses a column with an empty name
        sql = f"SELECT 1 AS {quote_identifier(name)}"
        assert con.sql(sql).columns == [name]


def test_a_string_literal_is_exactly_its_text() -> None:
    con = duckdb.connect()
    for text in AWKWARD:
        assert con.sql(f"SELECT {string_literal(text)}").fetchall() == [(text,)]


def test_maxrec_keeps_one_row_more_to_tell_an_overflow() -> None:
    con = duckdb.connect()
    sql = "SELECT * FROM range(10)"
    assert with_maxrec(sql, None) == sql
    assert len(con.sql(with_maxrec(sql, 3)).fetchall()) == 4
    assert len(con.sql(with_maxrec(sql, 0)).fetchall()) == 1
    assert len(con.sql(with_maxrec(sql, 10)).fetchall()) == 10
