"""``parse(text)``: ADQL text to a validated sqlglot tree, or an error that says where.

The pipeline is: tokenize with the ``Adql`` dialect, check the tokens (only ADQL's token
kinds, numbers and regular identifiers of ADQL's shape, the query starts with SELECT or
WITH), parse with sqlglot, then validate the tree (:mod:`skyvault.adql.validate`).  Every
failure, including anything unexpected raised inside sqlglot, becomes an
:class:`~skyvault.errors.AdqlSyntaxError` with a 1-based line and column.
"""

from __future__ import annotations

import dataclasses
import difflib
import re

from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokenizer_core import Token, TokenType

from skyvault.adql.dialect import KEYWORD_TOKENS, Adql, AdqlParseFailure
from skyvault.adql.reserved import is_regular_identifier
from skyvault.adql.validate import SourceText, validate
from skyvault.errors import AdqlSyntaxError

__all__ = ["AdqlQuery", "parse"]

_DIALECT = Adql()

#: Longest query text accepted (characters); longer text is refused before tokenizing.
MAX_QUERY_LENGTH = 1_000_000

_NUMBER = re.compile(r"(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\Z")

_T = TokenType
_PUNCTUATION = {
    _T.L_PAREN,
    _T.R_PAREN,
    _T.COMMA,
    _T.DOT,
    _T.PLUS,
    _T.DASH,
    _T.STAR,
    _T.SLASH,
    _T.EQ,
    _T.NEQ,
    _T.GT,
    _T.GTE,
    _T.LT,
    _T.LTE,
    _T.DPIPE,
}
_WORDS = {_T.VAR, _T.NUMBER, *KEYWORD_TOKENS.values()}
_ALLOWED_TOKENS = _PUNCTUATION | _WORDS | {_T.STRING, _T.IDENTIFIER}

#: Keywords a misspelt word is compared with for "did you mean" hints.
_CLAUSE_KEYWORDS = (
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP",
    "HAVING",
    "ORDER",
    "JOIN",
    "UNION",
    "EXCEPT",
    "INTERSECT",
    "DISTINCT",
    "BETWEEN",
    "OFFSET",
)

_AGGREGATE_NAMES = frozenset({"COUNT", "AVG", "MIN", "MAX", "SUM"})

_TOKEN_HINTS: dict[TokenType, str] = {
    _T.MOD: "ADQL has no % operator; use MOD(x, y)",
    _T.SEMICOLON: "an ADQL query is a single statement without a terminating ';'",
    _T.L_BRACKET: "ADQL has no [ ] subscripts",
    _T.PLACEHOLDER: "ADQL has no query parameters",
    _T.PARAMETER: "ADQL has no query parameters",
    _T.AMP: "ADQL 2.1 has no bitwise operators",
    _T.PIPE: "ADQL 2.1 has no bitwise operators; || concatenates strings",
    _T.CARET: "ADQL 2.1 has no bitwise operators; use POWER(x, y)",
    _T.TILDE: "ADQL 2.1 has no bitwise operators",
}


@dataclasses.dataclass(frozen=True)
class AdqlQuery:
    """A parsed, validated ADQL query.

    Attributes
    ----------
    text
        The query as the user wrote it.
    tree
        The sqlglot syntax tree (dialect :class:`~skyvault.adql.dialect.Adql`).  Regular
        identifiers are ``exp.Identifier(quoted=False)`` with the user's spelling; delimited
        ones ``quoted=True``.  Do not mutate it; use ``tree.copy()`` for a modified version.
    """

    text: str
    tree: exp.Expr

    def sql(self, *, pretty: bool = False) -> str:
        """The query rendered as canonical ADQL (keywords and functions upper case)."""
        return self.tree.sql(dialect=_DIALECT, pretty=pretty, comments=False)


def _error_at(
    source: SourceText, token: Token | None, message: str, hint: str | None = None
) -> AdqlSyntaxError:
    line, column = source.end() if token is None else source.position(token.start)
    return AdqlSyntaxError(message, line=line, column=column, hint=hint)


def _describe(token: Token | None) -> str:
    if token is None:
        return "end of query"
    if token.token_type == _T.STRING:
        return f"'{token.text}'"
    return f'"{token.text}"'


def _near_keyword(word: str) -> str | None:
    """The clause keyword ``word`` looks like a misspelling of, if any."""
    if not is_regular_identifier(word) or word.upper() in _CLAUSE_KEYWORDS:
        return None
    close = difflib.get_close_matches(word.upper(), _CLAUSE_KEYWORDS, n=1, cutoff=0.7)
    return close[0] if close else None


def _locate_token_error(source: SourceText) -> AdqlSyntaxError:
    """Find the unterminated string or delimited identifier that stopped the tokenizer."""
    text, i = source.text, 0
    while i < len(text):
        char = text[i]
        if text.startswith("--", i):
            newline = text.find("\n", i)
            i = len(text) if newline < 0 else newline + 1
            continue
        if char in "'\"":
            close = i + 1
            while True:
                close = text.find(char, close)
                if close < 0:
                    what = "string" if char == "'" else "delimited identifier"
                    line, column = source.position(i)
                    return AdqlSyntaxError(
                        f"unterminated {what} (no closing {char})",
                        line=line,
                        column=column,
                    )
                if text.startswith(char * 2, close):
                    close += 2
                    continue
                break
            i = close + 1
            continue
        i += 1
    return AdqlSyntaxError("the query text cannot be read as ADQL", line=1, column=1)


def _check_tokens(source: SourceText, tokens: list[Token]) -> None:
    if not tokens:
        raise AdqlSyntaxError("the query is empty", line=1, column=1)
    first = tokens[0]
    if first.token_type not in (_T.SELECT, _T.WITH, _T.L_PAREN):
        near = _near_keyword(first.text)
        raise _error_at(
            source,
            first,
            f"unexpected {_describe(first)}: an ADQL query starts with SELECT or WITH",
            hint=f"did you mean {near}?" if near else None,
        )
    previous: Token | None = None
    for index, token in enumerate(tokens):
        kind = token.token_type
        following = tokens[index + 1] if index + 1 < len(tokens) else None
        if kind not in _ALLOWED_TOKENS:
            hint = _TOKEN_HINTS.get(kind)
            if kind == _T.COLON and following is not None and following.token_type == _T.COLON:
                hint = 'ADQL has no "::" cast; use CAST(x AS type)'
            raise _error_at(source, token, f"unexpected {_describe(token)}", hint=hint)
        if kind == _T.NUMBER and not _NUMBER.match(token.text):
            raise _error_at(source, token, f"{_describe(token)} is not an ADQL number")
        if kind == _T.VAR and not is_regular_identifier(token.text):
            raise _error_at(
                source,
                token,
                f"{_describe(token)} is not a regular identifier (a Latin letter, then letters, "
                "digits or underscores)",
                hint=f'quote it as a delimited identifier: "{token.text}"',
            )
        if (
            kind == _T.VAR
            and token.text.upper() == "LIMIT"
            and following is not None
            and following.token_type == _T.NUMBER
        ):
            raise _error_at(source, token, "ADQL has no LIMIT", hint="write SELECT TOP n ...")
        if (
            kind == _T.VAR
            and token.text.upper() == "CROSS"
            and following is not None
            and following.token_type == _T.JOIN
        ):
            raise _error_at(
                source, token, "ADQL has no CROSS JOIN", hint="use a comma join: FROM a, b"
            )
        if kind == _T.TOP and following is not None and index + 2 < len(tokens):
            quantifier = tokens[index + 2]
            if quantifier.token_type in (_T.DISTINCT, _T.ALL):
                raise _error_at(
                    source,
                    quantifier,
                    f"{quantifier.text.upper()} must come before TOP",
                    hint=f"write SELECT {quantifier.text.upper()} TOP n ...",
                )
        if (
            kind in (_T.ALL, _T.DISTINCT)
            and previous is not None
            and previous.token_type == _T.L_PAREN
            and index >= 2
            and tokens[index - 2].text.upper() not in _AGGREGATE_NAMES
        ):
            raise _error_at(
                source, token, f"unexpected {_describe(token)}: only aggregates take it"
            )
        if (
            kind in (_T.UNION, _T.INTERSECT, _T.EXCEPT)
            and following is not None
            and following.token_type == _T.DISTINCT
        ):
            raise _error_at(
                source,
                following,
                f"{token.text.upper()} DISTINCT is not ADQL",
                hint=f"{token.text.upper()} alone removes duplicates",
            )
        if (
            kind == _T.STAR
            and previous is not None
            and previous.token_type == _T.SLASH
            and previous.end + 1 == token.start
        ):
            raise _error_at(
                source,
                previous,
                'unexpected "/*"',
                hint="ADQL comments start with -- and end the line",
            )
        if (
            previous is not None
            and previous.token_type in _WORDS
            and kind in _WORDS
            and previous.end + 1 == token.start
        ):
            hint = None
            if previous.text == "0" and token.text[:1] in "xX":
                hint = "ADQL 2.1 has no hexadecimal literals"
            raise _error_at(
                source,
                token,
                f"{_describe(previous)} and {_describe(token)} must be separated by a space",
                hint=hint,
            )
        previous = token


def _parse_failure(
    source: SourceText, tokens: list[Token], failure: AdqlParseFailure
) -> AdqlSyntaxError:
    token = failure.token
    if token is not None and token.token_type == _T.SENTINEL:
        token = None
    description = failure.description or ""
    expected = ""
    if description.startswith("Expecting "):
        what = description[len("Expecting ") :]
        expected = f'; expected "{what}"' if len(what) <= 2 else f"; expected {what}"
    elif description.startswith("Expecting") or "Required keyword" in description:
        expected = ""
    # Misspelt clause keywords usually parse as an alias: point at them rather than after them.
    position = tokens.index(token) if token is not None and token in tokens else len(tokens)
    for candidate in (token, tokens[position - 1] if position > 0 else None):
        if candidate is not None and candidate.token_type == _T.VAR:
            near = _near_keyword(candidate.text)
            if near is not None:
                return _error_at(
                    source,
                    candidate,
                    f"unexpected {_describe(candidate)}",
                    hint=f"did you mean {near}?",
                )
    if token is None:
        return _error_at(source, None, f"unexpected end of query{expected}")
    return _error_at(source, token, f"unexpected {_describe(token)}{expected}")


def parse(text: str) -> AdqlQuery:
    """Parse and validate an ADQL 2.1 query.

    Needs no catalogue metadata: names are checked later, against the catalogues.

    Parameters
    ----------
    text
        The query.

    Returns
    -------
    AdqlQuery
        The query text and its syntax tree.

    Raises
    ------
    AdqlSyntaxError
        If ``text`` is not an ADQL 2.1 query (grammar, reserved word used as a name, unknown
        function ...); ``line`` and ``column`` (1-based) point at the offending token.
    """
    if not isinstance(text, str):
        raise AdqlSyntaxError("the query must be text", line=1, column=1)
    source = SourceText(text)
    if len(text) > MAX_QUERY_LENGTH:
        raise AdqlSyntaxError(
            f"the query is longer than {MAX_QUERY_LENGTH} characters", line=1, column=1
        )
    try:
        tokens = _DIALECT.tokenize(text)
    except TokenError:
        raise _locate_token_error(source) from None
    except Exception:  # sqlglot's tokenizer failing in some other way
        raise AdqlSyntaxError("the query text cannot be read as ADQL", line=1, column=1) from None
    _check_tokens(source, tokens)
    try:
        trees = _DIALECT.parser().parse(tokens, text)
    except AdqlParseFailure as failure:
        raise _parse_failure(source, tokens, failure) from None
    except RecursionError:
        raise AdqlSyntaxError("the query is nested too deeply", line=1, column=1) from None
    except (ParseError, TokenError):
        raise _error_at(source, None, "the query cannot be parsed as ADQL") from None
    except Exception:  # sqlglot raising something unforeseen on odd input
        raise _error_at(source, None, "the query cannot be parsed as ADQL") from None
    if len(trees) != 1 or trees[0] is None:
        raise _error_at(source, None, "expected exactly one query")
    tree = trees[0]
    try:
        validate(tree, source)
    except AdqlSyntaxError:
        raise
    except RecursionError:
        raise AdqlSyntaxError("the query is nested too deeply", line=1, column=1) from None
    return AdqlQuery(text, tree)
