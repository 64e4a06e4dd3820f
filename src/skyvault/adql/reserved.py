"""ADQL 2.1 reserved words and the rules for regular and delimited identifiers.

ADQL (section 2.1.2 of the Recommendation) reserves the SQL-92 keywords plus its own
function and type names.  A reserved word can never be a *regular* identifier; it can be a
*delimited* one (``"size"``).  Regular identifiers are case-insensitive (``alpha`` ==
``ALPHA``); delimited identifiers are exact (``"alpha"`` != ``"Alpha"``).
"""

from __future__ import annotations

import re
from typing import NamedTuple

from sqlglot import exp

__all__ = [
    "ADQL_RESERVED_WORDS",
    "RESERVED_WORDS",
    "SQL_RESERVED_WORDS",
    "NormalizedName",
    "identifier_matches",
    "is_regular_identifier",
    "is_reserved",
    "normalize_identifier",
]

#: SQL-92 keywords that ADQL reserves (ADQL 2.1, "SQL reserved keywords").
SQL_RESERVED_WORDS: frozenset[str] = frozenset(
    """
    ABSOLUTE ACTION ADD ALL ALLOCATE ALTER AND ANY ARE AS ASC ASSERTION AT AUTHORIZATION AVG
    BEGIN BETWEEN BIT BIT_LENGTH BOTH BY CASCADE CASCADED CASE CAST CATALOG CHAR CHARACTER
    CHARACTER_LENGTH CHAR_LENGTH CHECK CLOSE COALESCE COLLATE COLLATION COLUMN COMMIT CONNECT
    CONNECTION CONSTRAINT CONSTRAINTS CONTINUE CONVERT CORRESPONDING COUNT CREATE CROSS CURRENT
    CURRENT_DATE CURRENT_TIME CURRENT_TIMESTAMP CURRENT_USER CURSOR DATE DAY DEALLOCATE DECIMAL
    DECLARE DEFAULT DEFERRABLE DEFERRED DELETE DESC DESCRIBE DESCRIPTOR DIAGNOSTICS DISCONNECT
    DISTINCT DOMAIN DOUBLE DROP ELSE END END-EXEC ESCAPE EXCEPT EXCEPTION EXEC EXECUTE EXISTS
    EXTERNAL EXTRACT FALSE FETCH FIRST FLOAT FOR FOREIGN FOUND FROM FULL GET GLOBAL GO GOTO
    GRANT GROUP HAVING HOUR IDENTITY ILIKE IMMEDIATE IN INDICATOR INITIALLY INNER INPUT
    INSENSITIVE INSERT INT INTEGER INTERSECT INTERVAL INTO IS ISOLATION JOIN KEY LANGUAGE LAST
    LEADING LEFT LEVEL LIKE LOCAL LOWER MATCH MAX MIN MINUTE MODULE MONTH NAMES NATIONAL
    NATURAL NCHAR NEXT NO NOT NULL NULLIF NUMERIC OCTET_LENGTH OF ON ONLY OPEN OPTION OR ORDER
    OUTER OUTPUT OVERLAPS PAD PARTIAL POSITION PRECISION PREPARE PRESERVE PRIMARY PRIOR
    PRIVILEGES PROCEDURE PUBLIC READ REAL REFERENCES RELATIVE RESTRICT REVOKE RIGHT ROLLBACK
    ROWS SCHEMA SCROLL SECOND SECTION SELECT SESSION SESSION_USER SET SIZE SMALLINT SOME SPACE
    SQL SQLCODE SQLERROR SQLSTATE SUBSTRING SUM SYSTEM_USER TABLE TEMPORARY THEN TIME TIMESTAMP
    TIMEZONE_HOUR TIMEZONE_MINUTE TO TRAILING TRANSACTION TRANSLATE TRANSLATION TRIM TRUE UNION
    UNIQUE UNKNOWN UPDATE UPPER USAGE USER USING VALUE VALUES VARCHAR VARYING VIEW WHEN WHENEVER
    WHERE WITH WORK WRITE YEAR ZONE
    """.split()  # noqa: SIM905 - the standard's word list, kept readable
)

#: ADQL's own reserved words: function, geometry and type names, ``TOP``, ``OFFSET`` and
#: the deprecated ``REGION`` (ADQL 2.1, "ADQL reserved keywords" and the BNF appendix).
ADQL_RESERVED_WORDS: frozenset[str] = frozenset(
    """
    ABS ACOS AREA ASIN ATAN ATAN2 BIGINT BOX CAST CEILING CENTROID CHAR CIRCLE COALESCE CONTAINS
    COORD1 COORD2 COORDSYS COS DEGREES DISTANCE DOUBLE EXP FLOOR ILIKE INTEGER INTERSECTS IN_UNIT
    LOG LOG10 MOD NULL OFFSET PI POINT POLYGON POWER PRECISION RADIANS RAND REAL REGION ROUND SIN
    SMALLINT SQRT TAN TIMESTAMP TOP TRUNCATE VARCHAR
    """.split()  # noqa: SIM905 - the standard's word list, kept readable
)

#: Every word that cannot be a regular identifier in ADQL 2.1 (upper case).
RESERVED_WORDS: frozenset[str] = SQL_RESERVED_WORDS | ADQL_RESERVED_WORDS

_REGULAR_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")


class NormalizedName(NamedTuple):
    """An identifier as the checker compares it.

    Attributes
    ----------
    name
        The folded name: upper case for a regular identifier (SQL-92 folding), the exact text
        for a delimited one.
    quoted
        Whether the identifier was delimited (``"..."``) in the query.
    """

    name: str
    quoted: bool


def is_reserved(word: str) -> bool:
    """Whether ``word`` is an ADQL or SQL reserved word (case-insensitive)."""
    return word.upper() in RESERVED_WORDS


def is_regular_identifier(text: str) -> bool:
    """Whether ``text`` has the shape of an ADQL regular identifier (reserved or not).

    A regular identifier starts with a Latin letter and continues with Latin letters, digits
    and underscores.
    """
    return _REGULAR_IDENTIFIER.match(text) is not None


def normalize_identifier(ident: exp.Identifier | str, *, quoted: bool = False) -> NormalizedName:
    """Fold an identifier the way ADQL compares it.

    Parameters
    ----------
    ident
        A sqlglot identifier from a parsed query, or a bare name.
    quoted
        For a bare name: whether it was delimited.

    Returns
    -------
    NormalizedName
        Regular identifiers fold to upper case (``coord_ra`` and ``COORD_RA`` give the same
        name); delimited identifiers keep their exact text.
    """
    if isinstance(ident, exp.Identifier):
        text, quoted = ident.this, bool(ident.args.get("quoted"))
    else:
        text = ident
    return NormalizedName(text if quoted else text.upper(), quoted)


def identifier_matches(ident: exp.Identifier | NormalizedName, declared: str) -> bool:
    """Whether a name written in a query refers to a name declared in the catalogue.

    A regular identifier matches case-insensitively (a column declared ``coord_ra`` is
    reached by ``coord_ra``, ``Coord_RA`` ...); a delimited identifier matches only the exact
    declared spelling.  This is how TAP services treat catalogue names declared in lower or
    mixed case, which strict SQL-92 upper-case folding would make unreachable without quotes.
    """
    name = normalize_identifier(ident) if isinstance(ident, exp.Identifier) else ident
    if name.quoted:
        return name.name == declared
    return name.name == declared.upper()
