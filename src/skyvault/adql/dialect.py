"""The sqlglot dialect ``Adql``: ADQL 2.1's tokens, its function table, and ADQL rendering.

The tokenizer knows only ADQL's keywords, operators and comments (``--``), so every other
word (``LIMIT``, ``COPY``, ``PRAGMA``, ``QUALIFY`` ...) is an ordinary identifier, as it is in
ADQL.  The parser's function table is the function table's parse forms
(:data:`skyvault.adql.functions.PARSE_FORMS`): ADQL's functions become sqlglot-native nodes
where the meaning is the same (``LOG`` is ``exp.Ln``, ``LOG10`` is ``exp.Log`` base 10,
``CEILING`` is ``exp.Ceil`` ...) and the node types of :mod:`skyvault.adql.nodes` otherwise;
any other name parses as ``exp.Anonymous`` for the validator to resolve against the UDF
registry.  Parse errors are raised as :class:`AdqlParseFailure`, which keeps the offending
token.

The generator renders a tree back to canonical ADQL (``SELECT TOP n``, ``MOD(a, b)``,
``DOUBLE PRECISION`` ...).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from sqlglot import exp, generator, parser, tokens
from sqlglot.dialects.dialect import Dialect, NormalizationStrategy
from sqlglot.errors import ParseError
from sqlglot.expressions.datatypes import DType
from sqlglot.tokenizer_core import Token, TokenType

from skyvault.adql import nodes
from skyvault.adql.functions import PARSE_FORMS

__all__ = ["CAST_TARGETS", "KEYWORD_TOKENS", "Adql", "AdqlParseFailure"]

_T = TokenType

#: The keywords ADQL's grammar uses as keywords, with their sqlglot token types.
KEYWORD_TOKENS: dict[str, TokenType] = {
    "ALL": _T.ALL,
    "AND": _T.AND,
    "AS": _T.ALIAS,
    "ASC": _T.ASC,
    "BETWEEN": _T.BETWEEN,
    "CASE": _T.CASE,
    "DESC": _T.DESC,
    "DISTINCT": _T.DISTINCT,
    "ELSE": _T.ELSE,
    "END": _T.END,
    "EXCEPT": _T.EXCEPT,
    "EXISTS": _T.EXISTS,
    "FROM": _T.FROM,
    "FULL": _T.FULL,
    "GROUP BY": _T.GROUP_BY,
    "HAVING": _T.HAVING,
    "ILIKE": _T.ILIKE,
    "IN": _T.IN,
    "INNER": _T.INNER,
    "INTERSECT": _T.INTERSECT,
    "IS": _T.IS,
    "JOIN": _T.JOIN,
    "LEFT": _T.LEFT,
    "LIKE": _T.LIKE,
    "NATURAL": _T.NATURAL,
    "NOT": _T.NOT,
    "NULL": _T.NULL,
    "OFFSET": _T.OFFSET,
    "ON": _T.ON,
    "OR": _T.OR,
    "ORDER BY": _T.ORDER_BY,
    "OUTER": _T.OUTER,
    "RIGHT": _T.RIGHT,
    "SELECT": _T.SELECT,
    "THEN": _T.THEN,
    "TOP": _T.TOP,
    "UNION": _T.UNION,
    "USING": _T.USING,
    "WHEN": _T.WHEN,
    "WHERE": _T.WHERE,
    "WITH": _T.WITH,
}

_OPERATORS: dict[str, TokenType] = {
    "||": _T.DPIPE,
    ">=": _T.GTE,
    "<=": _T.LTE,
    "<>": _T.NEQ,
    "!=": _T.NEQ,
}

#: ADQL cast targets (upper case) and the sqlglot data types they become.  The geometry types
#: have no sqlglot equivalent and become user-defined types named ``POINT`` etc.
CAST_TARGETS: dict[str, DType] = {
    "SMALLINT": exp.DataType.Type.SMALLINT,
    "INTEGER": exp.DataType.Type.INT,
    "BIGINT": exp.DataType.Type.BIGINT,
    "REAL": exp.DataType.Type.FLOAT,
    "DOUBLE": exp.DataType.Type.DOUBLE,
    "CHAR": exp.DataType.Type.CHAR,
    "VARCHAR": exp.DataType.Type.VARCHAR,
    "TIMESTAMP": exp.DataType.Type.TIMESTAMP,
    "POINT": exp.DataType.Type.USERDEFINED,
    "CIRCLE": exp.DataType.Type.USERDEFINED,
    "POLYGON": exp.DataType.Type.USERDEFINED,
}


class AdqlParseFailure(ParseError):
    """A grammar error, with the token it was found at (``None`` at the end of the text).

    It is a ``ParseError`` so that sqlglot's own backtracking (``_try_parse``) still works.
    """

    def __init__(self, message: str, token: Token | None) -> None:
        super().__init__(message)
        self.description = message
        self.token = token


class _AdqlTokenizer(tokens.Tokenizer):
    KEYWORDS: ClassVar[dict[str, TokenType]] = {**_OPERATORS, **KEYWORD_TOKENS}
    COMMENTS: ClassVar[list[str | tuple[str, str]]] = ["--"]
    COMMANDS: ClassVar[set[TokenType]] = set()
    NESTED_COMMENTS = False


class _AdqlParser(parser.Parser):
    #: The function table's parse forms: this very dict, so a function added to the table
    #: parses at once.
    FUNCTIONS: ClassVar[dict[str, Callable[..., exp.Expr]]] = PARSE_FORMS
    FUNCTION_PARSERS: ClassVar[dict[str, Callable[[Any], exp.Expr | None]]] = {
        "CAST": lambda self: self._parse_adql_cast(),
    }
    NO_PAREN_FUNCTIONS: ClassVar[dict[TokenType, type[exp.Func]]] = {}
    NO_PAREN_FUNCTION_PARSERS: ClassVar[dict[str, Callable[[Any], exp.Expr | None]]] = {
        "CASE": lambda self: self._parse_case(),
    }
    OPERATION_MODIFIERS: ClassVar[set[str]] = set()

    def raise_error(self, message: str, token: Token | None = None) -> None:
        """Raise at once, keeping the token (``None`` means the end of the text)."""
        if token is None:
            token = self._curr
        raise AdqlParseFailure(message, token)

    def _parse_adql_cast(self) -> exp.Expr:
        """``CAST(value AS target)`` with ADQL's cast targets only (closing paren left)."""
        value = self._parse_assignment()
        if value is None:
            self.raise_error("Expecting a value to convert")
        if not self._match(TokenType.ALIAS):
            self.raise_error("Expecting AS")
        type_token = self._curr
        name = type_token.text.upper() if type_token else ""
        if type_token is None or type_token.token_type != TokenType.VAR or name not in CAST_TARGETS:
            self.raise_error("Expecting a cast target type")
        self._advance()
        params: list[exp.Expr] = []
        if name == "DOUBLE":
            if not (self._curr and self._curr.text.upper() == "PRECISION"):
                self.raise_error("Expecting PRECISION")
            self._advance()
        elif name in ("CHAR", "VARCHAR") and self._match(TokenType.L_PAREN):
            length = self._curr
            if length is None or length.token_type != TokenType.NUMBER or not length.text.isdigit():
                self.raise_error("Expecting a length")
            self._advance()
            number = exp.Literal.number(length.text)
            number.update_positions(length)
            params.append(exp.DataTypeParam(this=number))
            if not self._match(TokenType.R_PAREN):
                self.raise_error("Expecting )")
        if CAST_TARGETS[name] is exp.DataType.Type.USERDEFINED:
            target = exp.DataType(this=CAST_TARGETS[name], kind=name)
        else:
            target = exp.DataType(this=CAST_TARGETS[name], expressions=params or None)
        if not (self._curr and self._curr.token_type == TokenType.R_PAREN):
            self.raise_error("Expecting )")
        return self.expression(exp.Cast(this=value, to=target))

    def _parse_limit(
        self,
        this: exp.Expr | None = None,
        top: bool = False,
        skip_limit_token: bool = False,
    ) -> exp.Expr | None:
        """Only ``TOP <unsigned integer>``: ADQL has no LIMIT or FETCH."""
        if not top or not self._match(TokenType.TOP):
            return this
        count = self._curr
        if count is None or count.token_type != TokenType.NUMBER or not count.text.isdigit():
            self.raise_error("Expecting a whole number after TOP")
        self._advance()
        number = exp.Literal.number(count.text)
        number.update_positions(count)
        limit = self.expression(exp.Limit(expression=number))
        limit.meta["top"] = True
        return limit

    def _parse_join(
        self,
        skip_join_token: bool = False,
        parse_bracket: bool = False,
        alias_tokens: Any = None,
    ) -> exp.Join | None:
        """sqlglot's join, marked with where its keyword starts (a comma leaves no mark): a
        ``JOIN`` without ON or USING is refused by the validator, a comma join is not."""
        first = self._curr
        join = super()._parse_join(
            skip_join_token=skip_join_token, parse_bracket=parse_bracket, alias_tokens=alias_tokens
        )
        if join is not None and first is not None and first.token_type != TokenType.COMMA:
            join.meta[nodes.JOIN_KEYWORD] = first.start
        return join

    def _parse_ordered(self, parse_method: Callable[..., exp.Expr | None] | None = None) -> Any:
        """An ORDER BY term: ``expression [ASC | DESC]``, nothing else."""
        this = parse_method() if parse_method else self._parse_assignment()
        if this is None:
            return None
        desc = self._match(TokenType.DESC)
        if not desc:
            self._match(TokenType.ASC)
        return self.expression(exp.Ordered(this=this, desc=bool(desc), nulls_first=False))


class _AdqlGenerator(generator.Generator):
    LIMIT_IS_TOP = True
    TYPE_MAPPING: ClassVar[dict[DType, str]] = {
        **generator.Generator.TYPE_MAPPING,
        exp.DataType.Type.INT: "INTEGER",
        exp.DataType.Type.FLOAT: "REAL",
        exp.DataType.Type.DOUBLE: "DOUBLE PRECISION",
    }
    TRANSFORMS: ClassVar[dict[type[exp.Expr], Callable[..., str]]] = {
        **generator.Generator.TRANSFORMS,
        exp.Ln: lambda self, e: self.func("LOG", e.this),
        exp.Log: lambda self, e: self.func("LOG10", e.expression),
        exp.Ceil: lambda self, e: self.func("CEILING", e.this),
        exp.Pow: lambda self, e: self.func("POWER", e.this, e.expression),
        exp.Mod: lambda self, e: self.func("MOD", e.this, e.expression),
        exp.Rand: lambda self, e: self.func("RAND", e.this),
        exp.Round: lambda self, e: self.func("ROUND", e.this, e.args.get("decimals")),
        exp.Coalesce: lambda self, e: self.func("COALESCE", e.this, *e.expressions),
        nodes.Truncate: lambda self, e: self.func("TRUNCATE", e.this, e.args.get("decimals")),
        nodes.InUnit: lambda self, e: self.func("IN_UNIT", e.this, e.expression),
        nodes.UdfCall: lambda self, e: self.func(str(e.this), *e.expressions, normalize=False),
    }

    def limit_sql(self, expression: exp.Limit, top: bool = False) -> str:
        return f" TOP {self.sql(expression, 'expression')}"

    def ordered_sql(self, expression: exp.Ordered) -> str:
        direction = " DESC" if expression.args.get("desc") else ""
        return f"{self.sql(expression, 'this')}{direction}"

    def datatype_sql(self, expression: exp.DataType) -> str:
        if expression.this is exp.DataType.Type.USERDEFINED:
            return str(expression.args.get("kind"))
        return super().datatype_sql(expression)


class Adql(Dialect):
    """ADQL 2.1 as a sqlglot dialect (use through :func:`skyvault.adql.parse`)."""

    NORMALIZATION_STRATEGY = NormalizationStrategy.UPPERCASE

    Tokenizer = _AdqlTokenizer
    Parser = _AdqlParser
    Generator = _AdqlGenerator
