"""ADQL 2.1: parse, check against catalogue metadata, translate to DuckDB SQL.

This package holds the first stage, parsing, and the registries later stages share:

* :func:`parse` turns query text into an :class:`AdqlQuery` (the text and a sqlglot tree in
  the :class:`Adql` dialect) or raises :class:`~skyvault.errors.AdqlSyntaxError` with the line
  and column of the problem.  It needs no catalogue metadata.
* :data:`FUNCTIONS` is the one table of callable functions: ADQL built-ins and UDFs, with
  signatures, docs, TAPRegExt feature types, parse forms, typing rules, result units and
  UCDs and DuckDB forms (the other stages derive theirs from it);
  :func:`register_udf` adds one.
* :data:`RESERVED_WORDS` and :func:`normalize_identifier` / :func:`identifier_matches` say
  how names compare: regular identifiers case-insensitively, delimited ones exactly.

How it works
------------
Tokenizing and parsing are sqlglot's, through the dialect :class:`Adql` whose tokenizer knows
only ADQL's keywords and operators and whose parser knows only ADQL's functions.  sqlglot still
accepts much that ADQL does not, so two whitelists follow: a token check (only ADQL token
kinds; numbers and identifiers of ADQL's shape) and a tree check
(:mod:`skyvault.adql.validate`) that accepts a node only where ADQL's grammar has it:
queries (SELECT, set operations, WITH at the top), table references (tables, named
subqueries, joins), search conditions and values.  ADQL has no boolean values, so a
comparison in the select list is refused, as is a bare CONTAINS(...) in WHERE.

The tree stays sqlglot-native for the translator: math functions are sqlglot's own nodes
(``LOG`` is ``exp.Ln``, ``LOG10`` is ``exp.Log`` with base 10, ``CEILING`` ``exp.Ceil``);
geometry functions, ``IN_UNIT``, ``TRUNCATE`` and UDF calls are node types of
:mod:`skyvault.adql.nodes`; ``TOP n`` is ``exp.Limit`` with ``meta["top"]``, ``OFFSET`` is
``exp.Offset`` (OFFSET applies first, then TOP: the meaning of SQL's LIMIT/OFFSET); ``CAST``
targets are ``exp.DataType``; identifiers keep the user's spelling with ``quoted`` telling
regular from delimited.

Decisions where ADQL 2.1 leaves room or sqlglot would accept more
------------------------------------------------------------------
* ``LIMIT``, ``FETCH``, ``::``, ``%``, ``[ ]``, bitwise operators, hexadecimal and boolean
  literals, ``/* */`` comments, ``;`` and non-SELECT statements are refused (ADQL 2.1
  Recommendation removed booleans, hex and bitwise operators); ``CROSS JOIN`` is refused
  (write a comma join).
* ``CASE`` (simple and searched) is accepted though ADQL 2.1's grammar lacks it: the project
  asks for it and TAP services commonly accept it.
* ``REGION`` (deprecated) parses for a string literal argument; the translator may refuse it.
* ``IS [NOT] NULL`` applies to a column reference only, as in the grammar.
* Reserved words, including ADQL function names such as ``POINT`` or ``DISTANCE``, are refused
  as regular identifiers; quote them (``"distance"``).
* A ``JOIN`` (INNER or outer) needs ``ON`` or ``USING``, as SQL-92's syntax rules for the
  grammar's optional ``<join_specification>`` say; only NATURAL joins and commas take none.
* The deprecated coordinate-system argument of POINT, CIRCLE, BOX and POLYGON may be NULL
  (``POINT(NULL, ra, dec)``) where the other arguments are a complete set of coordinates.
* The constructors' arguments are checked against the grammar's two forms at parse time:
  coordinates (numbers) or a POINT first (``<coord_value>``); what only types can tell (a
  column that may be a number or a POINT) is left to the checker.
* Limits that keep later stages within bounds: TOP and OFFSET up to 2**63 - 1, CHAR/VARCHAR
  lengths 1 to 65535, ROUND/TRUNCATE decimals within ±308, at most 400 SELECTs joined by set
  operators; an ORDER BY term that is a constant (``ORDER BY 'x'``) is refused by the checker.
"""

from __future__ import annotations

from skyvault.adql.check import CheckedQuery, check
from skyvault.adql.dialect import Adql
from skyvault.adql.functions import (
    FUNCTIONS,
    FunctionKind,
    FunctionSpec,
    LanguageFeature,
    duckdb_macro_sql,
    language_features,
    register_udf,
)
from skyvault.adql.parsing import AdqlQuery, parse
from skyvault.adql.reserved import (
    ADQL_RESERVED_WORDS,
    RESERVED_WORDS,
    SQL_RESERVED_WORDS,
    NormalizedName,
    identifier_matches,
    normalize_identifier,
)
from skyvault.adql.translate import CrossMatch, TableRef, Translation, compile_adql, translate

__all__ = [
    "ADQL_RESERVED_WORDS",
    "FUNCTIONS",
    "RESERVED_WORDS",
    "SQL_RESERVED_WORDS",
    "Adql",
    "AdqlQuery",
    "CheckedQuery",
    "CrossMatch",
    "FunctionKind",
    "FunctionSpec",
    "LanguageFeature",
    "NormalizedName",
    "TableRef",
    "Translation",
    "check",
    "compile_adql",
    "duckdb_macro_sql",
    "identifier_matches",
    "language_features",
    "normalize_identifier",
    "parse",
    "register_udf",
    "translate",
]
