"""Small pieces of DuckDB SQL text that the ADQL translation, the engine and the catalogue write.

There is one delimited-identifier writer (:func:`quote_identifier`), one string-literal writer
(:func:`string_literal`) and one way of capping a result for MAXREC (:func:`with_maxrec`).
The DOUBLE literal writer is :func:`skyvault.sky.sql.double_literal`.
"""

from __future__ import annotations

__all__ = ["quote_identifier", "string_literal", "with_maxrec"]


def quote_identifier(name: str) -> str:
    """``name`` as a delimited identifier (``"`` doubled), as DuckDB and ADQL read it."""
    return '"' + name.replace('"', '""') + '"'


def string_literal(text: str) -> str:
    """``text`` as a SQL string literal (``'`` doubled)."""
    return "'" + text.replace("'", "''") + "'"


def with_maxrec(sql: str, maxrec: int | None) -> str:
    """``sql`` cut to ``maxrec + 1`` rows (the extra row tells that the result overflowed);
    ``sql`` itself when ``maxrec`` is None."""
    if maxrec is None:
        return sql
    return f"SELECT * FROM ({sql}) AS __sv_result LIMIT {int(maxrec) + 1}"
