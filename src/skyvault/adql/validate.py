"""The whitelist pass: accept a sqlglot tree only if it is a tree ADQL 2.1's grammar yields.

sqlglot parses far more than ADQL.  This pass walks the tree top-down, knowing at each node
whether the grammar wants a query, a table reference, a search condition or a value, and
accepts only the node types (and arguments of those nodes) that ADQL has there.  Anything
else (a statement other than a query, a table function, ``::``, ``LIMIT``, a boolean value, an
unknown function ...) is refused with the position of its first token.  Calls of registered
UDFs are rewritten from ``exp.Anonymous`` to :class:`~skyvault.adql.nodes.UdfCall`.

A final sweep re-checks every node of the tree against the per-type table of allowed
arguments (:data:`ALLOWED_ARGS`; for a built-in function's node, its entry's ``node_args`` in
the function table), so that a construct the structural walk forgot to look at still cannot
pass.  This pass is the first security layer: no node can reach the translator
that names a file, a table function or a system function.
"""

from __future__ import annotations

import difflib
import re

from sqlglot import exp

from skyvault.adql import nodes
from skyvault.adql.functions import FUNCTIONS, FunctionKind, FunctionSpec, lookup, spec_for
from skyvault.adql.reserved import is_regular_identifier, is_reserved
from skyvault.errors import AdqlSyntaxError

__all__ = ["ALLOWED_ARGS", "SourceText", "validate"]

_NUMBER = re.compile(r"(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\Z")

#: Largest TOP and OFFSET (the largest 64-bit integer).
MAX_ROWS = 2**63 - 1
#: Longest CHAR(n)/VARCHAR(n): CHAR pads every value to its length.
MAX_STRING_LENGTH = 65_535
#: Largest number of decimal places of ROUND and TRUNCATE (DOUBLE's range is about 1e±308).
MAX_DECIMALS = 308
#: Most SELECTs one query may combine with UNION, EXCEPT and INTERSECT.
MAX_SET_BRANCHES = 400

_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)
_ARITHMETIC = (exp.Add, exp.Sub, exp.Mul, exp.Div, exp.DPipe)
_SET_OPERATIONS = (exp.Union, exp.Intersect, exp.Except)
_PREDICATES = (*_COMPARISONS, exp.And, exp.Or, exp.Not, exp.Like, exp.ILike, exp.Between)
_PREDICATES_ALL = (*_PREDICATES, exp.In, exp.Exists, exp.Is)
_BINARY = {"this", "expression"}

#: For every node type ADQL trees may hold but function calls, the argument keys it may
#: carry; a built-in function's node may carry its entry's ``node_args`` (the function table).
ALLOWED_ARGS: dict[type[exp.Expr], frozenset[str]] = {
    exp.Select: frozenset(
        {
            "with_",
            "expressions",
            "distinct",
            "from_",
            "joins",
            "where",
            "group",
            "having",
            "order",
            "limit",
            "offset",
        }
    ),
    **{
        cls: frozenset({"with_", "this", "expression", "distinct", "order", "offset"})
        for cls in _SET_OPERATIONS
    },
    exp.Subquery: frozenset({"this", "alias"}),
    exp.From: frozenset({"this"}),
    exp.Join: frozenset({"this", "on", "using", "side", "kind", "method"}),
    exp.Table: frozenset({"this", "db", "catalog", "alias", "joins"}),
    exp.TableAlias: frozenset({"this"}),
    exp.With: frozenset({"expressions"}),
    exp.CTE: frozenset({"this", "alias"}),
    exp.Where: frozenset({"this"}),
    exp.Having: frozenset({"this"}),
    exp.Group: frozenset({"expressions"}),
    exp.Order: frozenset({"expressions"}),
    exp.Ordered: frozenset({"this", "desc", "nulls_first"}),
    exp.Limit: frozenset({"expression"}),
    exp.Offset: frozenset({"expression"}),
    exp.Distinct: frozenset({"expressions"}),
    exp.Alias: frozenset({"this", "alias"}),
    exp.Column: frozenset({"this", "table", "db", "catalog"}),
    exp.Star: frozenset(),
    exp.Identifier: frozenset({"this", "quoted"}),
    exp.Literal: frozenset({"this", "is_string"}),
    exp.Null: frozenset(),
    exp.Paren: frozenset({"this"}),
    exp.Neg: frozenset({"this"}),
    **{cls: frozenset(_BINARY) for cls in (*_ARITHMETIC, *_COMPARISONS)},
    exp.DPipe: frozenset({*_BINARY, "safe"}),
    exp.And: frozenset(_BINARY),
    exp.Or: frozenset(_BINARY),
    exp.Not: frozenset({"this"}),
    exp.Like: frozenset({*_BINARY, "negate"}),
    exp.ILike: frozenset({*_BINARY, "negate"}),
    exp.Between: frozenset({"this", "low", "high", "negate"}),
    exp.In: frozenset({"this", "expressions", "query", "negate"}),
    exp.Exists: frozenset({"this", "negate"}),
    exp.Is: frozenset({*_BINARY, "negate"}),
    exp.Case: frozenset({"this", "ifs", "default"}),
    exp.If: frozenset({"this", "true"}),
    exp.DataType: frozenset({"this", "expressions", "kind"}),
    exp.DataTypeParam: frozenset({"this"}),
    nodes.UdfCall: frozenset({"this", "expressions"}),
}


class SourceText:
    """The query text, to turn character offsets into 1-based line and column numbers."""

    def __init__(self, text: str) -> None:
        self.text = text

    def position(self, offset: int) -> tuple[int, int]:
        """1-based ``(line, column)`` of the character at ``offset``."""
        offset = max(0, min(offset, len(self.text)))
        line = self.text.count("\n", 0, offset) + 1
        column = offset - (self.text.rfind("\n", 0, offset) + 1) + 1
        return line, column

    def end(self) -> tuple[int, int]:
        """Position just after the last non-blank character."""
        return self.position(len(self.text.rstrip()))

    def locate(self, node: exp.Expr | None) -> tuple[int, int]:
        """1-based ``(line, column)`` an error about ``node`` points at: its own token's
        start, else the earliest of its descendants'; ``(1, 1)`` when nothing tells."""
        offset = _start(node) if node is not None else None
        return (1, 1) if offset is None else self.position(offset)

    def snippet(self, node: exp.Expr) -> str:
        """The source text a node spans (as far as token positions tell), shortened."""
        metas = [n._meta for n in node.walk() if n._meta and "start" in n._meta]
        if not metas:
            return type(node).__name__.upper()
        start = min(int(m["start"]) for m in metas)
        end = max(int(m.get("end", m["start"])) for m in metas)
        # Closing parentheses leave no token in the tree: take those the span still lacks.
        depth = self.text.count("(", start, end + 1) - self.text.count(")", start, end + 1)
        while depth > 0:
            close = self.text.find(")", end + 1)
            if close < 0 or self.text[end + 1 : close].strip():
                break
            end, depth = close, depth - 1
        text = " ".join(self.text[start : end + 1].split())
        return text if len(text) <= 40 else text[:37] + "..."

    def word_at(self, offset: int) -> str:
        """The token-ish text starting at ``offset`` (for messages), at most 30 characters."""
        match = re.match(r"\w+|'[^']*'?|\"[^\"]*\"?|\S", self.text[offset:])
        word = match.group(0) if match else ""
        return word if len(word) <= 30 else word[:27] + "..."


#: Names from the query longer than this are shortened in error messages.
NAME_SHOWN = 64


def shown(name: str) -> str:
    """A name (or other text) from the query as an error message quotes it: whole up to
    :data:`NAME_SHOWN` characters, else its first 60, "…" and its length — a 100 kB
    identifier is not repeated back in full."""
    if len(name) <= NAME_SHOWN:
        return name
    return f"{name[: NAME_SHOWN - 4]}…({len(name)} characters)"


def _start(node: exp.Expr) -> int | None:
    """Character offset of a node: its own token's, else the smallest of its descendants'."""
    meta = node._meta
    if meta and "start" in meta:
        return int(meta["start"])
    starts = [int(n._meta["start"]) for n in node.walk() if n._meta and "start" in n._meta]
    return min(starts) if starts else None


class _Validator:
    def __init__(self, source: SourceText) -> None:
        self.source = source

    # --- errors ---------------------------------------------------------------------------

    def fail(self, node: exp.Expr | None, message: str, hint: str | None = None) -> AdqlSyntaxError:
        line, column = self.source.locate(node)
        return AdqlSyntaxError(message, line=line, column=column, hint=hint)

    def quote(self, node: exp.Expr) -> str:
        offset = _start(node)
        if offset is None:
            return type(node).__name__.upper()
        return self.source.word_at(offset)

    def unexpected(self, node: exp.Expr, where: str) -> AdqlSyntaxError:
        return self.fail(node, f'unexpected "{self.quote(node)}" {where}: this is not ADQL 2.1')

    # --- queries and tables ---------------------------------------------------------------

    def query(self, node: exp.Expr, *, root: bool = False) -> None:
        with_ = node.args.get("with_")
        if with_ is not None:
            if not root:
                raise self.fail(with_, "WITH is only allowed at the start of the whole query")
            for cte in with_.expressions:
                alias = cte.args.get("alias")
                if not isinstance(cte, exp.CTE) or not isinstance(alias, exp.TableAlias):
                    raise self.unexpected(cte, "in WITH")
                if alias.args.get("columns"):
                    raise self.fail(alias, "a WITH query takes no column list in ADQL 2.1")
                self.query(cte.this)
        if isinstance(node, _SET_OPERATIONS):
            for operand in (node.this, node.expression):
                self.query(operand.this if isinstance(operand, exp.Subquery) else operand)
        elif isinstance(node, exp.Select):
            self.select(node)
        else:
            raise self.fail(
                node,
                f'unexpected "{self.quote(node)}": an ADQL query is a SELECT',
                hint="start the query with SELECT (or WITH ... SELECT)",
            )
        order = node.args.get("order")
        if order is not None:
            for term in order.expressions:
                self.value(term.this)
        offset = node.args.get("offset")
        if offset is not None:
            self.unsigned_integer(offset.expression, "OFFSET")

    def select(self, node: exp.Select) -> None:
        distinct = node.args.get("distinct")
        if distinct is not None and (distinct.args.get("on") or distinct.expressions):
            raise self.fail(distinct, "DISTINCT ON is not ADQL", hint="use DISTINCT alone")
        limit = node.args.get("limit")
        if limit is not None:
            if not limit.meta.get("top"):
                raise self.fail(limit, "ADQL has no LIMIT", hint="write SELECT TOP n ...")
            self.unsigned_integer(limit.expression, "TOP")
        from_ = node.args.get("from_")
        if not node.expressions:
            offset = _start(from_) if from_ is not None else None
            if offset is not None:  # point at FROM, which came where the list should be
                found = self.source.text.upper().rfind("FROM", 0, offset)
                offset = found if found >= 0 else offset
            line, column = (1, 1) if offset is None else self.source.position(offset)
            raise AdqlSyntaxError(
                "the select list is empty",
                line=line,
                column=column,
                hint="name the columns to return, or write * for all of them",
            )
        self.select_list(node.expressions)
        if from_ is None:
            raise self.fail(
                node,
                "the query has no FROM clause; ADQL requires one",
                hint="add FROM <table>",
            )
        self.table_reference(from_.this)
        for join in node.args.get("joins") or []:
            self.join(join)
        where = node.args.get("where")
        if where is not None:
            self.condition(where.this)
        group = node.args.get("group")
        if group is not None:
            for term in group.expressions:
                self.value(term)
        having = node.args.get("having")
        if having is not None:
            self.condition(having.this)

    def select_list(self, items: list[exp.Expr]) -> None:
        if any(isinstance(item, exp.Star) for item in items) and len(items) > 1:
            star = next(item for item in items if isinstance(item, exp.Star))
            raise self.fail(star, '"*" must be the whole select list in ADQL', hint="use t.* ")
        for item in items:
            if isinstance(item, exp.Star):
                continue
            if isinstance(item, exp.Column) and isinstance(item.this, exp.Star):
                self.column(item, star=True)
                continue
            if isinstance(item, exp.Alias):
                if not isinstance(item.args.get("alias"), exp.Identifier):
                    raise self.unexpected(item, "as a column alias")
                self.value(item.this)
            else:
                self.value(item)

    def table_reference(self, node: exp.Expr) -> None:
        if isinstance(node, exp.Table):
            if not isinstance(node.this, exp.Identifier):
                raise self.fail(
                    node,
                    f'"{self.quote(node)}" is not a table name: ADQL has no table functions',
                )
            for part in ("db", "catalog"):  # FROM LOG(0).t: the schema must be a name too
                qualifier = node.args.get(part)
                if qualifier is None or isinstance(qualifier, exp.Identifier):
                    continue
                hint = "name a table as schema.table, e.g. dp02_dc2_catalogs.Object"
                if not isinstance(qualifier, exp.Expr):  # FROM x..t: sqlglot keeps a str
                    raise self.fail(
                        node, "a table name has an empty part (two dots in a row)", hint=hint
                    )
                raise self.fail(
                    qualifier, f'"{self.quote(qualifier)}" is not a schema name', hint=hint
                )
            alias = node.args.get("alias")
            if alias is not None and (alias.args.get("columns") or not alias.this):
                raise self.unexpected(alias, "in a table alias")
            for join in node.args.get("joins") or []:
                self.join(join)
        elif isinstance(node, exp.Subquery):
            inner = node.this
            if isinstance(inner, exp.Table) and inner.args.get("joins"):
                if node.args.get("alias"):
                    raise self.fail(
                        node.args["alias"], "a joined table in parentheses takes no alias"
                    )
                self.table_reference(inner)
                return
            alias = node.args.get("alias")
            if not isinstance(alias, exp.TableAlias) or alias.this is None:
                raise self.fail(
                    node,
                    "a subquery in FROM needs a name",
                    hint="write (SELECT ...) AS name",
                )
            if alias.args.get("columns"):
                raise self.unexpected(alias, "in a table alias")
            self.query(inner)
        else:
            raise self.unexpected(node, "in FROM")

    def join(self, node: exp.Expr) -> None:
        if not isinstance(node, exp.Join):
            raise self.unexpected(node, "in FROM")
        side = (node.args.get("side") or "").upper()
        kind = (node.args.get("kind") or "").upper()
        method = (node.args.get("method") or "").upper()
        if side not in ("", "LEFT", "RIGHT", "FULL") or kind not in ("", "INNER", "OUTER"):
            raise self.unexpected(node, "as a join")
        if method not in ("", "NATURAL") or (kind == "OUTER" and not side):
            raise self.unexpected(node, "as a join")
        on, using = node.args.get("on"), node.args.get("using")
        if method and (on is not None or using):
            raise self.fail(node, "a NATURAL join takes neither ON nor USING")
        keyword = node.meta.get(nodes.JOIN_KEYWORD)
        if keyword is not None and not method and on is None and not using:
            line, column = self.source.position(int(keyword))
            raise AdqlSyntaxError(
                f"{' '.join(w for w in (side, kind) if w) or 'a'} JOIN needs ON or USING",
                line=line,
                column=column,
                hint="write JOIN t ON <condition> or JOIN t USING (column); for every pair "
                "of rows, list the tables with commas: FROM a, b",
            )
        self.table_reference(node.this)
        if on is not None:
            self.condition(on)
        for column in using or []:
            if not isinstance(column, exp.Identifier):
                raise self.unexpected(column, "in USING")

    # --- conditions and values ------------------------------------------------------------

    def condition(self, node: exp.Expr) -> None:
        if isinstance(node, (exp.And, exp.Or)):
            self.condition(node.this)
            self.condition(node.expression)
        elif isinstance(node, (exp.Not, exp.Paren)):
            self.condition(node.this)
        elif isinstance(node, (*_COMPARISONS, exp.Like, exp.ILike)):
            self.value(node.this)
            self.value(node.expression)
        elif isinstance(node, exp.Between):
            for key in ("this", "low", "high"):
                self.value(node.args[key])
        elif isinstance(node, exp.In):
            self.value(node.this)
            query = node.args.get("query")
            if query is not None:
                self.query(query.this if isinstance(query, exp.Subquery) else query)
            else:
                for item in node.expressions:
                    self.value(item)
        elif isinstance(node, exp.Exists):
            self.query(node.this.this if isinstance(node.this, exp.Subquery) else node.this)
        elif isinstance(node, exp.Is):
            if not isinstance(node.expression, exp.Null):
                raise self.unexpected(node.expression, "after IS")
            if not isinstance(node.this, exp.Column):
                raise self.fail(
                    node,
                    "IS [NOT] NULL applies to a column in ADQL",
                    hint="compare the column itself, or use COALESCE",
                )
            self.column(node.this)
        else:
            hint = None
            if isinstance(node, (nodes.Contains, nodes.Intersects, exp.Column)):
                hint = f"compare it with 1, e.g. {self.quote(node)}(...) = 1"
                if isinstance(node, exp.Column):
                    hint = f"compare it, e.g. {self.quote(node)} = 1"
            raise self.fail(node, f'expected a condition at "{self.quote(node)}"', hint=hint)

    def value(self, node: exp.Expr | None) -> None:
        if node is None:
            return
        if isinstance(node, exp.Column):
            self.column(node)
        elif isinstance(node, exp.Literal):
            if not node.is_string and not _NUMBER.match(str(node.this)):
                raise self.unexpected(node, "as a number")
        elif isinstance(node, exp.Null):
            return
        elif isinstance(node, (exp.Paren, exp.Neg)):
            self.value(node.this)
        elif isinstance(node, _ARITHMETIC):
            self.value(node.this)
            self.value(node.expression)
        elif isinstance(node, exp.Case):
            self.case(node)
        elif isinstance(node, exp.Subquery):
            if node.args.get("alias"):
                raise self.unexpected(node.args["alias"], "after a subquery")
            self.query(node.this)
        elif isinstance(node, exp.Cast):
            self.cast_length(node)
            self.value(node.this)
        elif isinstance(node, exp.Anonymous):
            self.anonymous(node)
        elif isinstance(node, nodes.UdfCall):
            for arg in node.expressions:
                self.value(arg)
        elif spec_for(type(node)) is not None:
            self.builtin(node)
        elif isinstance(node, _PREDICATES_ALL):
            raise self.fail(
                node,
                f'a condition cannot be a value here: "{self.source.snippet(node)}"',
                hint="ADQL has no boolean values; use CASE WHEN ... THEN 1 ELSE 0 END",
            )
        else:
            raise self.unexpected(node, "in an expression")

    def case(self, node: exp.Case) -> None:
        simple = node.this is not None
        if simple:
            self.value(node.this)
        for branch in node.args.get("ifs") or []:
            if not isinstance(branch, exp.If):
                raise self.unexpected(branch, "in CASE")
            if simple:
                self.value(branch.this)
            else:
                self.condition(branch.this)
            self.value(branch.args.get("true"))
        self.value(node.args.get("default"))

    def column(self, node: exp.Column, *, star: bool = False) -> None:
        if isinstance(node.this, exp.Star) and not star:
            raise self.fail(node, '"qualifier.*" only stands alone in the select list')
        for key in ("this", "table", "db", "catalog"):
            part = node.args.get(key)
            if part is not None and not isinstance(part, (exp.Identifier, exp.Star)):
                raise self.unexpected(part, "in a column reference")

    def unsigned_integer(self, node: exp.Expr | None, clause: str) -> None:
        if not (isinstance(node, exp.Literal) and not node.is_string and str(node.this).isdigit()):
            raise self.fail(node, f"{clause} takes a whole number")
        if int(str(node.this)) > MAX_ROWS:
            raise self.fail(node, f"{clause} takes a whole number up to {MAX_ROWS}")

    def cast_length(self, node: exp.Cast) -> None:
        """``CHAR(n)``/``VARCHAR(n)``: a length from 1 to :data:`MAX_STRING_LENGTH`."""
        target = node.args.get("to")
        params = target.expressions if isinstance(target, exp.DataType) else []
        for param in params:
            length = param.this if isinstance(param, exp.DataTypeParam) else param
            text = str(length.this) if isinstance(length, exp.Literal) else ""
            if not text.isdigit() or not 1 <= int(text) <= MAX_STRING_LENGTH:
                raise self.fail(
                    length,
                    f"a CHAR or VARCHAR length is a whole number from 1 to {MAX_STRING_LENGTH}",
                    hint="leave the length out (AS VARCHAR) for strings of any length",
                )

    def literal(self, node: exp.Expr, spec: FunctionSpec, param: str, *, integer: bool) -> None:
        inner = node.this if integer and isinstance(node, exp.Neg) else node
        ok = isinstance(inner, exp.Literal) and (
            str(inner.this).isdigit() if integer else inner.is_string
        )
        if not ok:
            kind = "an integer literal" if integer else "a string literal"
            raise self.fail(node, f"the {param} argument of {spec.name} must be {kind}")

    def arity(self, node: exp.Expr, spec: FunctionSpec, n_args: int) -> None:
        if not spec.accepts(n_args):
            plural = "" if spec.arity_text() == "1" else "s"
            raise self.fail(
                node,
                f"{spec.name} takes {spec.arity_text()} argument{plural}, not {n_args}",
                hint=" or ".join(spec.signature_forms()[:2]),
            )

    def builtin(self, node: exp.Expr) -> None:
        spec = spec_for(type(node))
        assert spec is not None  # value() said so
        n_args = int(node.meta.get("adql_n_args", 0))
        self.arity(node, spec, n_args)
        if spec.kind is FunctionKind.AGGREGATE:
            self.aggregate(node, spec)
            return
        if isinstance(node, nodes.GeometryFunction):
            self.geometry(node, spec)
            return
        if isinstance(node, (exp.Round, nodes.Truncate)) and node.args.get("decimals"):
            decimals = node.args["decimals"]
            self.literal(decimals, spec, "decimals", integer=True)
            digits = decimals.this if isinstance(decimals, exp.Neg) else decimals
            if int(str(digits.this)) > MAX_DECIMALS:
                raise self.fail(
                    decimals,
                    f"the decimals argument of {spec.name} must be between -{MAX_DECIMALS} "
                    f"and {MAX_DECIMALS}",
                    hint="a DOUBLE PRECISION value has about 16 significant digits",
                )
            self.value(node.this)
            return
        if isinstance(node, exp.Rand) and node.this is not None:
            self.unsigned_integer(node.this, "RAND")
            return
        if isinstance(node, nodes.InUnit):
            self.value(node.this)
            self.literal(node.expression, spec, "unit", integer=False)
            return
        if isinstance(node, exp.Log):  # LOG10: ``this`` is the base we put there
            self.value(node.expression)
            return
        for child in node.iter_expressions():
            self.value(child)

    def aggregate(self, node: exp.Expr, spec: FunctionSpec) -> None:
        arg = node.this
        if isinstance(arg, exp.Star):
            if not isinstance(node, exp.Count):
                raise self.fail(arg, f"{spec.name}(*) is not ADQL; only COUNT(*) is")
            return
        if isinstance(arg, exp.Distinct):
            if len(arg.expressions) != 1 or arg.args.get("on"):
                raise self.fail(arg, f"{spec.name}(DISTINCT ...) takes one value")
            arg = arg.expressions[0]
        self.value(arg)

    def geometry(self, node: nodes.GeometryFunction, spec: FunctionSpec) -> None:
        args = node.arguments
        if isinstance(node, nodes.Region):
            self.literal(args[0], spec, "region", integer=False)
            return
        coordinates = node.coordinates
        if isinstance(node, nodes.Polygon):
            self.polygon(node, coordinates)
        elif node.takes_coord_sys:
            self.constructor(node, spec, coordinates)
        for arg in coordinates:
            self.value(arg)

    def constructor(
        self, node: nodes.GeometryFunction, spec: FunctionSpec, args: list[exp.Expr]
    ) -> None:
        """POINT, CIRCLE, BOX: ``<coordinates>`` or ``<coord_value>`` and the numbers after
        it, as ADQL 2.1's grammar has them."""
        name = spec.name
        numbers, with_point = nodes.CONSTRUCTOR_ARITY[name]
        forms = {
            "POINT": "POINT(long, lat)",
            "CIRCLE": "CIRCLE(long, lat, radius) or CIRCLE(POINT(long, lat), radius)",
            "BOX": "BOX(long, lat, width, height) or BOX(POINT(long, lat), width, height)",
        }[name]
        if len(args) == with_point:
            if nodes.is_not_a_point(args[0]):
                raise self.fail(
                    args[0],
                    f"{name} with {len(args)} arguments takes a POINT first, "
                    f'not "{self.source.snippet(args[0])}"',
                    hint=f"write {forms}",
                )
            rest = args[1:]
        elif len(args) == numbers:
            rest = args
        else:
            counts = sorted(c for c in (numbers, with_point) if c is not None)
            raise self.fail(
                node,
                f"{name} takes {' or '.join(map(str, counts))} coordinate arguments after the "
                f"optional coordinate system, not {len(args)}",
                hint=f"write {forms}",
            )
        for arg in rest:
            self.number_argument(name, arg)

    def polygon(self, node: nodes.GeometryFunction, args: list[exp.Expr]) -> None:
        """POLYGON: three or more ``<coordinates>`` pairs, or three or more POINTs."""
        if any(nodes.is_point_like(a) for a in args):
            bad = next((a for a in args if nodes.is_not_a_point(a)), None)
            if bad is not None:
                raise self.fail(
                    bad,
                    "POLYGON takes either POINTs or coordinate pairs, not both",
                    hint="write POLYGON(POINT(l1, b1), POINT(l2, b2), POINT(l3, b3)) or "
                    "POLYGON(l1, b1, l2, b2, l3, b3)",
                )
            if len(args) < 3:
                raise self.fail(node, "POLYGON needs at least three vertices")
            return
        if any(nodes.is_number_like(a) for a in args) and (len(args) % 2 or len(args) < 6):
            raise self.fail(
                node,
                f"POLYGON needs three or more (long, lat) pairs, not {len(args)} numbers",
                hint="write POLYGON(l1, b1, l2, b2, l3, b3)",
            )
        if len(args) < 3:
            raise self.fail(node, "POLYGON needs at least three vertices")
        for arg in args:
            self.number_argument("POLYGON", arg, points=True)

    def number_argument(self, name: str, arg: exp.Expr, *, points: bool = False) -> None:
        inner = arg
        while isinstance(inner, exp.Paren):
            inner = inner.this
        if isinstance(inner, exp.Literal) and inner.is_string:
            what = "a string"
        elif isinstance(inner, nodes.GeometryFunction) and (
            isinstance(inner, (nodes.Circle, nodes.Box, nodes.Polygon, nodes.Region))
            or (not points and nodes.is_point_like(inner))
        ):
            what = f"a {inner.adql_name}" if not isinstance(inner, nodes.Centroid) else "a POINT"
        else:
            return
        expected = "numbers or POINTs" if points else "numbers here"
        raise self.fail(arg, f"{name} takes {expected}, not {what}")

    def anonymous(self, node: exp.Anonymous) -> None:
        name = node.name
        spec = lookup(name) if is_regular_identifier(name) else None
        if spec is None or not spec.is_udf:
            candidates = [s.name for s in FUNCTIONS.values()]
            close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.75)
            close += difflib.get_close_matches(name.upper(), candidates, n=1, cutoff=0.75)
            hint = f"did you mean {close[0]}?" if close else None
            what = "a reserved word, not a function" if is_reserved(name) else "an unknown function"
            raise self.fail(
                node,
                f'"{shown(name)}" is {what}',
                hint=hint or "see the functions this service declares in its capabilities",
            )
        args = list(node.expressions)
        self.arity(node, spec, len(args))
        call = nodes.UdfCall(this=spec.name, expressions=args)
        call.update_positions(node)
        node.replace(call)
        for arg in args:
            self.value(arg)

    # --- the sweep ------------------------------------------------------------------------

    def sweep(self, tree: exp.Expr) -> None:
        for node in tree.walk():
            allowed = ALLOWED_ARGS.get(type(node))
            if allowed is None:
                spec = spec_for(type(node))
                allowed = spec.node_args if spec is not None else None
            if allowed is None:
                raise self.unexpected(node, "here")
            for key, value in node.args.items():
                if key not in allowed and value not in (None, False, []):
                    raise self.unexpected(node, "here")
            if isinstance(node, exp.Identifier):
                self.identifier(node)

    def identifier(self, node: exp.Identifier) -> None:
        text = str(node.this)
        offset = _start(node)
        if node.args.get("quoted"):
            if offset is not None and self.source.text[offset : offset + 1] == "'":
                raise self.fail(node, f"'{text}' is a string, not a name", hint=f'write "{text}"')
            if not text:
                raise self.fail(node, 'an empty delimited identifier ("") is not allowed')
            return
        if not is_regular_identifier(text):
            raise self.fail(
                node,
                f'"{text}" is not a regular identifier',
                hint=f'quote it: "{text}"',
            )
        if text.upper() in ("TRUE", "FALSE"):
            raise self.fail(
                node,
                f"{text} is a reserved word: ADQL 2.1 has no boolean literals",
                hint="compare with 1 or 0",
            )
        if text.upper() == "CROSS":
            raise self.fail(node, "ADQL has no CROSS JOIN", hint="use a comma join: FROM a, b")
        if is_reserved(text):
            raise self.fail(
                node,
                f"{text} is a reserved word in ADQL and cannot be used as a name",
                hint=f'quote it as a delimited identifier: "{text}"',
            )


def validate(tree: exp.Expr, source: SourceText) -> exp.Expr:
    """Check that ``tree`` is an ADQL 2.1 query; rewrite UDF calls; return the tree.

    Raises
    ------
    AdqlSyntaxError
        At the first construct that ADQL's grammar does not have.
    """
    validator = _Validator(source)
    branches = 1 + sum(isinstance(n, _SET_OPERATIONS) for n in tree.walk())
    if branches > MAX_SET_BRANCHES:
        raise AdqlSyntaxError(
            f"the query combines {branches} SELECTs; at most {MAX_SET_BRANCHES} may be "
            "joined by UNION, EXCEPT or INTERSECT",
            line=1,
            column=1,
            hint="split it into several queries, or select the rows with one WHERE clause "
            "(IN (...), OR)",
        )
    validator.query(tree, root=True)
    validator.sweep(tree)
    return tree
