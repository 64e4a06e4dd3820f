"""``translate(checked)``: a checked ADQL query as one DuckDB SELECT, with pruning hints.

The SQL is written by hand from the checked tree, node by node, never by handing user text
to a SQL generator: every table occurrence becomes ``"__sv_t<n>" AS "s<k>"`` (a relation the
engine defines over the table's files), every subquery and CTE gets a generated name, every
column reference is qualified and quoted (``"s0"."coord_ra"``), string literals are quoted
with doubled quotes, numbers are re-printed from their parsed values, and functions come from
a fixed table (ADQL built-ins) or the UDF registry.  User text can therefore only ever be a
quoted identifier or a string literal, and the SQL can only reach the relations the engine
provides and whitelisted functions.

Semantics that differ between ADQL and DuckDB are made explicit:

* ``/`` on two integers truncates towards zero (SQL and PostgreSQL, which most TAP services
  run on; DuckDB's ``/`` would give a DOUBLE): it becomes ``//``;
* integer arithmetic is done in BIGINT, other arithmetic in DOUBLE; integer ``SUM`` is cast
  to BIGINT (DuckDB gives HUGEINT); ``LOG`` is ``ln``; ``TRUNCATE(x, n)`` scales and
  truncates; ``IN_UNIT`` multiplies by a factor astropy computes now;
* ``TOP n`` with ``OFFSET m`` is ``LIMIT n OFFSET m`` (ADQL applies OFFSET first);
* ``CONTAINS``/``INTERSECTS`` are 1 or 0; compared with 1 in a condition they become the bare
  predicate, so DuckDB sees the declination prefilter it can prune row groups with.

Besides the SQL, the translation reports per table occurrence a conservative sky coverage
(MOC) from the positional constraints ANDed at the top of its WHERE clause and inner-join ON
conditions, and of the ON condition of an outer join that makes it optional; and a
:class:`CrossMatch` for every SELECT (anywhere: subqueries, CTEs, set operations) that joins
two positional tables by a distance.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence

from sqlglot import exp

from skyvault.adql import nodes
from skyvault.adql.annotate import FLOATING, ValueInfo
from skyvault.adql.check import CheckedQuery, ColumnBinding, Source, check
from skyvault.adql.functions import FUNCTIONS, DuckDbFunction, DuckDbPythonUdf, spec_for
from skyvault.adql.geometry_sql import (
    GeoSql,
    area_sql,
    band_sql,
    centroid,
    contains_sql,
    dali_sql,
    double_literal,
    intersects_sql,
)
from skyvault.adql.parsing import AdqlQuery, parse
from skyvault.adql.validate import SourceText
from skyvault.catalog.metadata import ColumnMeta, TableMeta
from skyvault.errors import UnsupportedQuery
from skyvault.sky.coverage import HEALPIX29_ORDER, MOC, intersect, region_coverage
from skyvault.sky.regions import Box, Circle, Point, Polygon, RaDecRange, Region
from skyvault.sky.sql import distance_sql
from skyvault.sqltext import quote_identifier
from skyvault.sqltext import string_literal as _string_literal

__all__ = [
    "COVERAGE_MAX_ORDER",
    "ColumnTest",
    "CrossMatch",
    "DirectSelect",
    "MatchSide",
    "SkyCut",
    "TableRef",
    "Translation",
    "compile_adql",
    "translate",
]

#: Finest HEALPix order of pruning coverages (order 18 cells are ~0.8″ across; larger
#: regions are covered at coarser orders by :func:`skyvault.sky.coverage.region_coverage`).
COVERAGE_MAX_ORDER = 18

#: The order-29 NESTED HEALPix index ingest stores with every row of a ``hats`` table,
#: computed from the table's own RA/Dec columns (``skyvault.catalog.ingest.HEALPIX_COLUMN``).
_HEALPIX_COLUMN = "_healpix_29"

_COMPARISON_SQL: dict[type[exp.Expr], str] = {
    exp.EQ: "=",
    exp.NEQ: "<>",
    exp.GT: ">",
    exp.GTE: ">=",
    exp.LT: "<",
    exp.LTE: "<=",
}


@dataclasses.dataclass(frozen=True)
class TableRef:
    """One table occurrence of the query.

    Attributes
    ----------
    placeholder
        The relation name the SQL uses (``__sv_t0``); the engine defines it as a view over the
        table's (pruned) files.
    meta
        The table.
    coverage
        Conservative sky coverage of the rows that can matter, from positional constraints
        ANDed at the top level of WHERE and inner-join ON conditions; ``None``: no constraint.
    """

    placeholder: str
    meta: TableMeta
    coverage: MOC | None


@dataclasses.dataclass(frozen=True)
class MatchSide:
    """One side of a cross-match: a FROM item and the position its distance is taken of."""

    name: str
    """The table occurrence's placeholder (``__sv_t0``), or the alias of a subquery or CTE
    reference (``s3``)."""
    alias: str
    """The item's SQL range variable (``s0``), which ``ra``/``dec`` qualify columns by."""
    ra: str
    """SQL of the position's RA as the query's predicate computes it (``"s0"."lon"``)."""
    dec: str
    columns: tuple[str, str] | None = None
    """The (RA, Dec) column names when the position is two plain columns of the item."""
    derived: bool = False
    """A subquery or CTE reference (no view of its own: the SQL keys it)."""
    tables: tuple[str, ...] = ()
    """For a derived item: the placeholders of the table occurrences it reads."""


@dataclasses.dataclass(frozen=True)
class CrossMatch:
    """Two FROM items joined on their distance: ``left``/``right`` are the sides' names
    (:attr:`MatchSide.name`), ``sides`` their positions."""

    left: str
    right: str
    radius_deg: float
    sides: tuple[MatchSide, MatchSide] | None = None


@dataclasses.dataclass(frozen=True)
class SkyCut:
    """One sky condition on a table's RA/Dec columns, with constant geometry.

    ``region`` set: ``CONTAINS(POINT(ra, dec), region) = 1`` (or INTERSECTS, the same for a
    point).  Otherwise a distance cut ``DISTANCE(POINT(ra, dec), POINT(centre)) <op> radius``
    (``column_first`` False when the query named the constant point first, which the SQL
    keeps, so the numbers agree to the last bit); ``op`` is ``<``, ``<=``, ``>`` or ``>=``.
    """

    ra: str
    dec: str
    region: Circle | Polygon | Box | None = None
    centre: tuple[float, float] = (0.0, 0.0)
    op: str = "<"
    radius: float = 0.0
    column_first: bool = True


@dataclasses.dataclass(frozen=True)
class ColumnTest:
    """``column <op> value`` with a constant: ``op`` is ``=``, ``<>``, ``<``, ``<=``, ``>``,
    ``>=`` (``value`` a number, for a numeric column, or a string, for a string column),
    ``null`` or ``not null`` (``IS [NOT] NULL``)."""

    column: str
    op: str
    value: int | float | str | None = None


@dataclasses.dataclass(frozen=True)
class DirectSelect:
    """A query simple enough to answer without SQL: columns of one stored table, cut by sky
    conditions (and TOP).

    ``SELECT [TOP n] col [AS name], ... FROM table WHERE <sky cut> [AND <cut or test> ...]``:
    the shape of a cone or polygon search, with comparisons of columns to constants.  The
    engine may evaluate it directly over the few rows the index path reads
    (:mod:`skyvault.engine.direct`); the SQL stays the reference.
    ``columns`` are the table's column names in result order, ``names`` the result's names.
    """

    placeholder: str
    columns: tuple[str, ...]
    names: tuple[str, ...]
    cuts: tuple[SkyCut, ...]
    limit: int | None
    tests: tuple[ColumnTest, ...] = ()


@dataclasses.dataclass(frozen=True)
class Translation:
    """The DuckDB form of an ADQL query.

    Attributes
    ----------
    sql
        One DuckDB SELECT statement.
    tables
        One entry per table occurrence (also in subqueries and CTEs).
    columns
        Result column metadata, in order, names as the user sees them.
    crossmatches
        Every distance join of two positional table occurrences, wherever its SELECT is
        (the top level first, then subqueries, CTEs and set-operation branches); a pair is
        listed once.
    direct
        The query as a :class:`DirectSelect`, when it has that simple shape.
    """

    sql: str
    tables: tuple[TableRef, ...]
    columns: tuple[ColumnMeta, ...]
    crossmatches: tuple[CrossMatch, ...] = ()
    direct: DirectSelect | None = None

    @property
    def crossmatch(self) -> CrossMatch | None:
        """The first of :attr:`crossmatches` (the top-level one when there is one)."""
        return self.crossmatches[0] if self.crossmatches else None


def _cast(sql: str, info: ValueInfo, duck: str) -> str:
    if info.duck == duck:
        return sql
    return f"CAST({sql} AS {duck})"


def _unparen(node: exp.Expr) -> exp.Expr:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def _conjuncts(node: exp.Expr) -> Iterator[exp.Expr]:
    node = _unparen(node)
    if isinstance(node, exp.And):
        yield from _conjuncts(node.this)
        yield from _conjuncts(node.expression)
    else:
        yield node


class _Emitter:
    def __init__(self, checked: CheckedQuery) -> None:
        self.checked = checked
        self.source_text = SourceText(checked.query.text)
        #: Distance comparisons known to be cross-match joins: id(node) -> radius.
        self.bands: dict[int, float] = {}

    def unsupported(self, node: exp.Expr, message: str) -> UnsupportedQuery:
        line, column = self.source_text.locate(node)
        return UnsupportedQuery(message, line=line, column=column)

    def info(self, node: exp.Expr) -> ValueInfo:
        return self.checked.info[id(node)]

    # --- queries --------------------------------------------------------------------------

    def root(self) -> str:
        tree = self.checked.query.tree
        with_ = tree.args.get("with_")
        prefix = ""
        if with_ is not None:
            parts = [
                f"{quote_identifier(self.checked.cte_names[id(cte)])} AS ({self.query(cte.this)})"
                for cte in with_.expressions
            ]
            prefix = "WITH " + ", ".join(parts) + " "
        return prefix + self.query(tree)

    def query(self, node: exp.Expr, targets: Sequence[str] | None = None) -> str:
        if isinstance(node, exp.Subquery):
            return self.query(node.this, targets)
        if isinstance(node, exp.Select):
            return self.select(node, targets)
        return self.set_operation(node, targets)

    def set_operation(self, node: exp.Expr, targets: Sequence[str] | None) -> str:
        outputs = self.checked.outputs[id(node)]
        wanted = list(targets) if targets is not None else [o.info.duck for o in outputs]
        words: dict[type[exp.Expr], str] = {
            exp.Union: "UNION",
            exp.Intersect: "INTERSECT",
            exp.Except: "EXCEPT",
        }
        word = words[type(node)]
        if not node.args.get("distinct", True):
            word += " ALL"
        left = self.query(node.this, wanted)
        right = self.query(node.expression, wanted)
        return f"({left}) {word} ({right}){self.order_limit(node, set_operation=True)}"

    def select(self, node: exp.Select, targets: Sequence[str] | None = None) -> str:
        outputs = self.checked.outputs[id(node)]
        items = []
        for i, output in enumerate(outputs):
            target = targets[i] if targets is not None else None
            if output.node is None:
                assert output.binding is not None
                sql = self.binding(output.binding)
                info = output.info
            else:
                info = self.info(output.node)
                if info.geometry is not None:
                    geo = self.geo(output.node)
                    dali = dali_sql(geo)
                    if dali is None:
                        raise self.unsupported(
                            output.node, "a BOX built from column values cannot be selected"
                        )
                    sql = dali
                    info = dataclasses.replace(info, duck="DOUBLE[]")
                else:
                    sql = self.value(output.node)
            if target is not None and target not in (info.duck, "NULL"):
                sql = f"CAST({sql} AS {target})"
            elif info.duck == "NULL":
                sql = f"CAST({sql} AS VARCHAR)" if target in (None, "NULL") else sql
            items.append(f"{sql} AS {quote_identifier(output.sql)}")
        distinct = "DISTINCT " if node.args.get("distinct") is not None else ""
        parts = [f"SELECT {distinct}{', '.join(items)}", "FROM " + self.from_clause(node)]
        where = node.args.get("where")
        if where is not None:
            parts.append("WHERE " + self.cond(where.this))
        group = node.args.get("group")
        if group is not None:
            terms = []
            for term in group.expressions:
                ordinal = self.checked.ordinals.get(id(term))
                terms.append(str(ordinal) if ordinal is not None else self.value(term))
            parts.append("GROUP BY " + ", ".join(terms))
        having = node.args.get("having")
        if having is not None:
            parts.append("HAVING " + self.cond(having.this))
        return " ".join(parts) + self.order_limit(node, set_operation=False)

    def order_limit(self, node: exp.Expr, *, set_operation: bool) -> str:
        out = ""
        order = node.args.get("order")
        if order is not None:
            terms = []
            for term in order.expressions:
                ordinal = self.checked.ordinals.get(id(term))
                sql = str(ordinal) if ordinal is not None else self.value(term.this)
                terms.append(sql + (" DESC" if term.args.get("desc") else " ASC"))
            out += " ORDER BY " + ", ".join(terms)
        limit = node.args.get("limit")
        if limit is not None:
            out += f" LIMIT {int(str(limit.expression.this))}"
        offset = node.args.get("offset")
        if offset is not None:
            out += f" OFFSET {int(str(offset.expression.this))}"
        return out

    # --- FROM -----------------------------------------------------------------------------

    def from_clause(self, node: exp.Select) -> str:
        sql = self.from_item(node.args["from_"].this)
        for join in node.args.get("joins") or []:
            sql += " " + self.join(join)
        return sql

    def from_item(self, node: exp.Expr) -> str:
        if isinstance(node, exp.Subquery) and isinstance(node.this, exp.Table):
            return f"({self.from_item(node.this)})"
        source = self.checked.sources[id(node)]
        alias = quote_identifier(source.alias)
        if isinstance(node, exp.Subquery):
            sql = f"({self.query(node.this)}) AS {alias}"
        else:
            sql = f"{quote_identifier(source.relation)} AS {alias}"
        for join in node.args.get("joins") or [] if isinstance(node, exp.Table) else []:
            sql += " " + self.join(join)
        return sql

    def join(self, node: exp.Join) -> str:
        item = self.from_item(node.this)
        side = (node.args.get("side") or "").upper()
        pairs = self.checked.using.get(id(node))
        on = node.args.get("on")
        if pairs:
            condition = " AND ".join(
                f"{self.binding(a, merged=False)} = {self.binding(b, merged=False)}"
                for a, b in pairs
            )
        elif on is not None:
            condition = self.cond(on)
        else:
            return f"CROSS JOIN {item}"
        keyword = f"{side} JOIN" if side else "JOIN"
        return f"{keyword} {item} ON {condition}"

    def binding(self, binding: ColumnBinding, *, merged: bool = True) -> str:
        sql = f"{quote_identifier(binding.source.alias)}.{quote_identifier(binding.column.sql)}"
        if merged and binding.merged:
            others = [self.binding(b, merged=False) for b in binding.merged]
            return f"COALESCE({', '.join([sql, *others])})"
        return sql

    # --- conditions -----------------------------------------------------------------------

    def cond(self, node: exp.Expr) -> str:
        if isinstance(node, exp.And):
            return f"({self.cond(node.this)} AND {self.cond(node.expression)})"
        if isinstance(node, exp.Or):
            return f"({self.cond(node.this)} OR {self.cond(node.expression)})"
        if isinstance(node, exp.Not):
            return f"(NOT {self.cond(node.this)})"
        if isinstance(node, exp.Paren):
            return self.cond(node.this)
        if isinstance(node, tuple(_COMPARISON_SQL)):
            return self.comparison(node)
        if isinstance(node, (exp.Like, exp.ILike)):
            word = "ILIKE" if isinstance(node, exp.ILike) else "LIKE"
            if node.args.get("negate"):
                word = "NOT " + word
            return f"({self.value(node.this)} {word} {self.value(node.expression)})"
        if isinstance(node, exp.Between):
            a, low, high = node.this, node.args["low"], node.args["high"]
            la, ll = self.compare_pair(a, low)
            _, lh = self.compare_pair(a, high)
            word = "NOT BETWEEN" if node.args.get("negate") else "BETWEEN"
            return f"({la} {word} {ll} AND {lh})"
        if isinstance(node, exp.In):
            word = "NOT IN" if node.args.get("negate") else "IN"
            query = node.args.get("query")
            if query is not None:
                inner = query.this if isinstance(query, exp.Subquery) else query
                left = self.value(node.this)
                if self.info(node.this).duck == "BOOLEAN":
                    left = f"CAST({left} AS INTEGER)"
                return f"({left} {word} ({self.query(inner)}))"
            items = []
            left = self.value(node.this)
            for item in node.expressions:
                left, right = self.compare_pair(node.this, item)
                items.append(right)
            return f"({left} {word} ({', '.join(items)}))"
        if isinstance(node, exp.Exists):
            inner = node.this.this if isinstance(node.this, exp.Subquery) else node.this
            return f"(EXISTS ({self.query(inner)}))"
        if isinstance(node, exp.Is):
            word = "IS NOT NULL" if node.args.get("negate") else "IS NULL"
            target = node.this
            if self.info(target).geometry is not None:
                return f"({self.geo_null(target)} {word})"
            return f"({self.value(target)} {word})"
        raise self.unsupported(node, "unexpected condition")  # pragma: no cover

    def geo_null(self, node: exp.Expr) -> str:
        geo = self.geo(node)
        return geo.whole or f"list_value({', '.join(geo.parts)})"

    def compare_pair(self, left: exp.Expr, right: exp.Expr) -> tuple[str, str]:
        a, b = self.info(left), self.info(right)
        ls, rs = self.value(left), self.value(right)
        if a.duck == "BOOLEAN" and b.duck != "BOOLEAN":
            ls = f"CAST({ls} AS INTEGER)"
        if b.duck == "BOOLEAN" and a.duck != "BOOLEAN":
            rs = f"CAST({rs} AS INTEGER)"
        if a.kind == "timestamp" and b.kind == "string":
            rs = f"CAST({rs} AS TIMESTAMP)"
        if b.kind == "timestamp" and a.kind == "string":
            ls = f"CAST({ls} AS TIMESTAMP)"
        return ls, rs

    def comparison(self, node: exp.Expr) -> str:
        op = _COMPARISON_SQL[type(node)]
        left, right = _unparen(node.this), _unparen(node.expression)
        for pred, other in ((left, right), (right, left)):
            if isinstance(pred, (nodes.Contains, nodes.Intersects)) and op in ("=", "<>"):
                constant = self.info(other).constant
                if constant in (0.0, 1.0):
                    truth = (constant == 1.0) == (op == "=")
                    sql = self.predicate(pred)
                    return sql if truth else f"(NOT {sql})"
        radius = self.bands.get(id(node))
        ls, rs = self.compare_pair(node.this, node.expression)
        sql = f"({ls} {op} {rs})"
        if radius is not None:
            dist = left if isinstance(left, nodes.Distance) else right
            assert isinstance(dist, nodes.Distance)
            a, b = self.distance_points(dist)
            if a.region is not None:
                a, b = b, a
            return f"({band_sql(a.parts[1], b.parts[1], radius)} AND {sql})"
        return sql

    # --- values ---------------------------------------------------------------------------

    def value(self, node: exp.Expr) -> str:
        info = self.info(node)
        if isinstance(node, exp.Column):
            return self.binding(self.checked.bindings[id(node)])
        if isinstance(node, exp.Literal):
            if node.is_string:
                return _string_literal(str(node.this))
            if info.duck == "DOUBLE":
                return double_literal(float(str(node.this)))
            return str(int(str(node.this)))
        if isinstance(node, exp.Null):
            return "NULL"
        if isinstance(node, exp.Paren):
            return f"({self.value(node.this)})"
        if isinstance(node, exp.Neg):
            inner = self.info(node.this)
            if isinstance(node.this, exp.Literal):
                return f"(-{self.value(node.this)})"
            return f"(-{_cast(self.value(node.this), inner, info.duck)})"
        if isinstance(node, (exp.Add, exp.Sub, exp.Mul, exp.Div)):
            symbols: dict[type[exp.Expr], str] = {
                exp.Add: "+",
                exp.Sub: "-",
                exp.Mul: "*",
                exp.Div: "/",
            }
            symbol = symbols[type(node)]
            if isinstance(node, exp.Div) and info.duck == "BIGINT":
                symbol = "//"
            a = _cast(self.value(node.this), self.info(node.this), info.duck)
            b = _cast(self.value(node.expression), self.info(node.expression), info.duck)
            return f"({a} {symbol} {b})"
        if isinstance(node, exp.DPipe):
            a = _cast(self.value(node.this), self.info(node.this), "VARCHAR")
            b = _cast(self.value(node.expression), self.info(node.expression), "VARCHAR")
            return f"({a} || {b})"
        if isinstance(node, exp.Case):
            return self.case(node, info)
        if isinstance(node, exp.Cast):
            return self.cast(node, info)
        if isinstance(node, exp.Subquery):
            return f"({self.query(node.this)})"
        if isinstance(node, (exp.Count, exp.Avg, exp.Min, exp.Max, exp.Sum)):
            return self.aggregate(node, info)
        if isinstance(node, nodes.GeometryFunction):
            return self.geometry_value(node, info)
        if isinstance(node, nodes.UdfCall):
            return self.udf(node)
        return self.function(node, info)

    def case(self, node: exp.Case, info: ValueInfo) -> str:
        parts = ["CASE"]
        subject = node.this
        if subject is not None:
            parts.append(self.value(subject))
        for branch in node.args.get("ifs") or []:
            if subject is not None:
                _, when = self.compare_pair(subject, branch.this)
                if (
                    self.info(subject).duck == "BOOLEAN"
                    and self.info(branch.this).duck != "BOOLEAN"
                ):
                    parts[1] = f"CAST({self.value(subject)} AS INTEGER)"
            else:
                when = self.cond(branch.this)
            true = branch.args["true"]
            parts.append(f"WHEN {when} THEN {_cast(self.value(true), self.info(true), info.duck)}")
        default = node.args.get("default")
        if default is not None:
            parts.append(f"ELSE {_cast(self.value(default), self.info(default), info.duck)}")
        parts.append("END")
        return " ".join(parts)

    def cast(self, node: exp.Cast, info: ValueInfo) -> str:
        inner = self.value(node.this)
        size = info.arraysize
        if info.duck != "VARCHAR" or size is None:
            return f"CAST({inner} AS {info.duck})"
        length = int(size.rstrip("*"))
        text = f"left(CAST({inner} AS VARCHAR), {length})"
        return text if size.endswith("*") else f"rpad({text}, {length}, ' ')"

    def aggregate(self, node: exp.Expr, info: ValueInfo) -> str:
        name = type(node).__name__.lower()
        arg = node.this
        if isinstance(arg, exp.Star):
            return "count(*)"
        distinct = ""
        if isinstance(arg, exp.Distinct):
            distinct, arg = "DISTINCT ", arg.expressions[0]
        arg_info = self.info(arg)
        sql = self.value(arg)
        if name in ("sum", "avg"):
            if arg_info.duck in {"BOOLEAN", "NULL"}:
                sql = f"CAST({sql} AS INTEGER)"
            elif arg_info.duck in FLOATING and arg_info.duck not in ("FLOAT", "DOUBLE"):
                sql = f"CAST({sql} AS DOUBLE)"
            out = f"{name}({distinct}{sql})"
            return f"CAST({out} AS BIGINT)" if info.duck == "BIGINT" else out
        if name in ("min", "max") and arg_info.duck == "NULL":
            sql = f"CAST({sql} AS {info.duck})"
        return f"{name}({distinct}{sql})"

    def function(self, node: exp.Expr, info: ValueInfo) -> str:
        def arg(child: exp.Expr, duck: str = "DOUBLE") -> str:
            return _cast(self.value(child), self.info(child), duck)

        if isinstance(node, exp.Lower):
            return f"lower({self.value(node.this)})"
        if isinstance(node, exp.Upper):
            return f"upper({self.value(node.this)})"
        if isinstance(node, exp.Pi):
            return "pi()"
        if isinstance(node, exp.Rand):
            return "random()"
        if isinstance(node, exp.Coalesce):
            args = [node.this, *node.expressions]
            return f"coalesce({', '.join(arg(a, info.duck) for a in args)})"
        if isinstance(node, nodes.InUnit):
            factor = self.checked.unit_factors[id(node)]
            return f"({arg(node.this)} * {double_literal(factor)})"
        if isinstance(node, exp.Log):
            return f"log10({arg(node.expression)})"
        if isinstance(node, exp.Round):
            decimals = node.args.get("decimals")
            digits = self.value(decimals) if decimals is not None else "0"
            return f"round({arg(node.this)}, {digits})"
        if isinstance(node, nodes.Truncate):
            decimals = node.args.get("decimals")
            places = int(self.info(decimals).constant or 0) if decimals is not None else 0
            if places == 0:
                return f"trunc({arg(node.this)})"
            # Where x·10ⁿ reaches 2⁵² it is a whole number already (and may overflow to
            # inf): truncating to n places leaves x as it is.
            x = arg(node.this)
            scale = double_literal(10.0**places)
            return (
                f"(CASE WHEN abs({x} * {scale}) >= 4503599627370496.0 THEN {x} "
                f"ELSE trunc({x} * {scale}) / {scale} END)"
            )
        if isinstance(node, exp.Abs):
            return f"abs({arg(node.this, info.duck)})"
        if isinstance(node, exp.Mod):
            if info.duck == "BIGINT":
                return f"({arg(node.this, 'BIGINT')} % {arg(node.expression, 'BIGINT')})"
            return f"fmod({arg(node.this)}, {arg(node.expression)})"
        if isinstance(node, exp.Pow):
            return f"pow({arg(node.this)}, {arg(node.expression)})"
        if isinstance(node, exp.Atan2):
            return f"atan2({arg(node.this)}, {arg(node.expression)})"
        spec = spec_for(type(node))
        if spec is not None and isinstance(spec.duckdb, DuckDbFunction):
            return f"{spec.duckdb.name}({arg(node.this)})"
        raise self.unsupported(node, "unexpected function")  # pragma: no cover

    def udf(self, node: nodes.UdfCall) -> str:
        spec = FUNCTIONS[str(node.this).upper()]
        if spec.name == "ivo_healpix_index":
            stored = self.stored_healpix_index(node)
            if stored is not None:
                return stored
        args: list[str] = []
        for child in node.arguments:
            if self.info(child).geometry == "point":
                args += list(self.geo(child).parts)
            else:
                args.append(self.value(child))
        if isinstance(spec.duckdb, DuckDbPythonUdf):
            args = [f"CAST({a} AS {t})" for a, t in zip(args, spec.duckdb.arg_types, strict=False)]
        return f"{spec.name}({', '.join(args)})"

    def stored_healpix_index(self, node: nodes.UdfCall) -> str | None:
        """``ivo_healpix_index(k, ra, dec)`` of a stored table's own position, as a shift.

        Ingest stores ``_healpix_29``, the order-29 NESTED index of each row's RA/Dec, and
        the NESTED index at order ``k`` is that of the order-29 cell's ancestor: the same
        integer shifted right by ``2 (29 - k)``.  So for a constant order in 0..29 and the
        table's declared RA and Dec columns themselves (not an expression of them, not
        another table's) the call is that shift, at column speed instead of a Python UDF
        per vector (``tests/engine/test_healpix_rewrite.py`` checks it against cdshealpix for
        every order).  A NULL position (the missing side of an outer join) has a NULL
        ``_healpix_29``, so the shift is NULL as the UDF's answer is.  None: use the UDF.
        """
        args = [_unparen(a) for a in node.arguments]
        order = self.info(args[0]).constant
        if order is None or not math.isfinite(order) or order != int(order):
            return None
        if not 0 <= order <= HEALPIX29_ORDER:
            return None
        if len(args) == 3:
            ra_node, dec_node = args[1], args[2]
        elif isinstance(args[1], nodes.Point) and len(args[1].coordinates) == 2:
            ra_node, dec_node = (_unparen(c) for c in args[1].coordinates)
        else:
            return None
        ra, dec = self.stored_column(ra_node), self.stored_column(dec_node)
        if ra is None or dec is None or ra.source is not dec.source:
            return None
        table = ra.source.table
        assert table is not None  # stored_column said so
        if table.kind != "hats" or _HEALPIX_COLUMN not in table.column_names:
            return None
        if (ra.column.name, dec.column.name) != (table.ra_column, table.dec_column):
            return None
        column = f"{quote_identifier(ra.source.alias)}.{quote_identifier(_HEALPIX_COLUMN)}"
        shift = 2 * (HEALPIX29_ORDER - int(order))
        return f"({column} >> {shift})" if shift else column

    def stored_column(self, node: exp.Expr) -> ColumnBinding | None:
        """The binding of ``node`` when it is a column of a table occurrence, as stored."""
        if not isinstance(node, exp.Column):
            return None
        binding = self.checked.bindings.get(id(node))
        if binding is None or binding.merged or binding.source.table is None:
            return None
        return binding

    # --- geometry -------------------------------------------------------------------------

    def geo(self, node: exp.Expr) -> GeoSql:
        node = _unparen(node)
        region = self.checked.regions.get(id(node))
        if region is not None:
            return GeoSql.constant(region)
        info = self.info(node)
        if isinstance(node, exp.Column):
            whole = self.value(node)
            kind = info.geometry or "point"
            count = {"point": 2, "circle": 3}.get(kind, 0)
            return GeoSql(kind, tuple(f"{whole}[{i + 1}]" for i in range(count)), whole=whole)
        if isinstance(node, nodes.UdfCall):
            call = self.udf(node)
            return GeoSql(
                "point", (f"struct_extract({call}, 'ra')", f"struct_extract({call}, 'dec')")
            )
        if isinstance(node, nodes.Centroid):
            return centroid(self.geo(node.coordinates[0]))
        if isinstance(node, (nodes.Point, nodes.Circle, nodes.Box, nodes.Polygon)):
            parts: list[str] = []
            for child in node.coordinates:
                if self.info(child).geometry == "point":
                    parts += list(self.geo(child).parts)
                else:
                    parts.append(_cast(self.value(child), self.info(child), "DOUBLE"))
            return GeoSql(node.adql_name.lower(), tuple(parts))
        raise self.unsupported(node, "unexpected geometry")  # pragma: no cover

    def predicate(self, node: exp.Expr) -> str:
        args = node.coordinates  # type: ignore[attr-defined]
        a, b = self.geo(args[0]), self.geo(args[1])
        if isinstance(node, nodes.Contains):
            return contains_sql(a, b)
        return intersects_sql(a, b)

    def distance_points(self, node: nodes.Distance) -> tuple[GeoSql, GeoSql]:
        args = node.coordinates
        if len(args) == 2:
            return self.geo(args[0]), self.geo(args[1])
        values = [_cast(self.value(a), self.info(a), "DOUBLE") for a in args]
        return GeoSql("point", tuple(values[:2])), GeoSql("point", tuple(values[2:]))

    def geometry_value(self, node: nodes.GeometryFunction, info: ValueInfo) -> str:
        if isinstance(node, (nodes.Contains, nodes.Intersects)):
            return f"CAST({self.predicate(node)} AS INTEGER)"
        if isinstance(node, nodes.Distance):
            a, b = self.distance_points(node)
            if a.region is not None and b.region is not None:
                from skyvault.sky.geometry import angular_distance

                return double_literal(
                    float(angular_distance(a.region.ra, a.region.dec, b.region.ra, b.region.dec))  # type: ignore[union-attr]
                )
            return distance_sql(a.parts[0], a.parts[1], b.parts[0], b.parts[1])
        if isinstance(node, nodes.Area):
            return area_sql(self.geo(node.coordinates[0]))
        if isinstance(node, (nodes.Coord1, nodes.Coord2)):
            geo = self.geo(node.coordinates[0])
            part = geo.parts[0 if isinstance(node, nodes.Coord1) else 1]
            return part if geo.region is not None else f"CAST({part} AS DOUBLE)"
        if isinstance(node, nodes.Coordsys):
            return "'ICRS'"
        geo = self.geo(node)
        dali = dali_sql(geo)
        if dali is None:
            raise self.unsupported(node, "a BOX built from column values cannot be a value")
        return dali


# --- coverage and cross-match ---------------------------------------------------------------


@dataclasses.dataclass
class _Bounds:
    ra_min: float = 0.0
    ra_max: float = 360.0
    dec_min: float = -90.0
    dec_max: float = 90.0
    used: bool = False


_Position = tuple[Source, exp.Expr, exp.Expr]
"""A FROM item and the RA and Dec expressions of a position of it."""


@dataclasses.dataclass(frozen=True)
class _Join:
    """A distance join found in a condition: the comparison node (None: CONTAINS form),
    both positions and the radius."""

    node: exp.Expr | None
    left: _Position
    right: _Position
    radius: float


def _ctes(tree: exp.Expr) -> Iterator[exp.CTE]:
    """Every CTE of the query (WITH at any level)."""
    yield from tree.find_all(exp.CTE)


class _Pruner:
    """Finds the positional constraints of each table occurrence and distance joins.

    Every SELECT of the query is visited (subqueries in FROM and in conditions, CTEs,
    set-operation branches): a table occurrence belongs to exactly one SELECT, so a
    constraint there restricts exactly the rows that SELECT can use.
    """

    def __init__(self, checked: CheckedQuery, emitter: _Emitter) -> None:
        self.checked = checked
        self.emitter = emitter
        self.mocs: dict[int, list[MOC]] = {}
        self.bounds: dict[int, _Bounds] = {}
        self.crossmatches: list[CrossMatch] = []

    def run(self) -> None:
        top = self.checked.query.tree
        for select in top.find_all(exp.Select):
            sources = self.checked.scopes.get(id(select))
            if sources is None:
                continue
            for conjunct in self.constraints(select):
                self.constraint(conjunct, sources)
                self.cross_match(self.distance_join(conjunct, sources))
            for join, target, optional in self.outer_joins(select):
                for conjunct in _conjuncts(join.args["on"]):
                    # Only the optional side: a row of it that fails the ON condition
                    # never joins, which is what dropping it does; a preserved row that
                    # fails it is still in the result (with NULLs), so it must stay.
                    self.constraint(conjunct, optional)
                    match = self.distance_join(conjunct, sources)
                    # A distance in the ON of the join that brings in one of the two
                    # items (the other one joined before) is a cross-match of that join.
                    if match is not None and target in (match.left[0], match.right[0]):
                        other = match.right[0] if match.left[0] is target else match.left[0]
                        if other in self.earlier(select, join):
                            self.cross_match(match)

    def cross_match(self, match: _Join | None) -> None:
        if match is None:
            return
        if match.node is not None:
            self.emitter.bands[id(match.node)] = match.radius
        pairs = {frozenset((m.left, m.right)) for m in self.crossmatches}
        sides = (self.match_side(*match.left), self.match_side(*match.right))
        if frozenset((sides[0].name, sides[1].name)) not in pairs:
            self.crossmatches.append(CrossMatch(sides[0].name, sides[1].name, match.radius, sides))

    def match_side(self, source: Source, ra: exp.Expr, dec: exp.Expr) -> MatchSide:
        """The :class:`MatchSide` of ``source`` with position ``(ra, dec)``."""
        emitter = self.emitter
        ra_sql, dec_sql = (
            _cast(emitter.value(n), emitter.info(n), "DOUBLE")
            for n in (_unparen(ra), _unparen(dec))
        )
        columns = None
        a, b = _unparen(ra), _unparen(dec)
        if isinstance(a, exp.Column) and isinstance(b, exp.Column):
            columns = (
                self.checked.bindings[id(a)].column.sql,
                self.checked.bindings[id(b)].column.sql,
            )
        if source.occurrence is not None:
            return MatchSide(source.relation, source.alias, ra_sql, dec_sql, columns)
        return MatchSide(
            source.alias, source.alias, ra_sql, dec_sql, columns, True, self.derived_tables(source)
        )

    def derived_tables(self, source: Source) -> tuple[str, ...]:
        """The placeholders of the table occurrences a subquery or CTE reference reads."""
        tree = self.checked.query.tree
        node = next((n for n in tree.walk() if self.checked.sources.get(id(n)) is source), None)
        if node is None:
            return ()
        bodies: list[exp.Expr] = [node]
        ctes = {name: cte for cte in _ctes(tree) if (name := self.checked.cte_names.get(id(cte)))}
        out: list[str] = []
        seen: set[str] = set()
        while bodies:
            body = bodies.pop()
            for table in body.find_all(exp.Table):
                found = self.checked.sources.get(id(table))
                if found is None:
                    continue
                if found.occurrence is not None:
                    out.append(found.relation)
                elif found.relation in ctes and found.relation not in seen:
                    seen.add(found.relation)
                    bodies.append(ctes[found.relation].this)
        return tuple(dict.fromkeys(out))

    @staticmethod
    def constraints(select: exp.Select) -> Iterator[exp.Expr]:
        """Conjuncts every row of the SELECT's FROM clause satisfies: WHERE, inner ONs."""
        where = select.args.get("where")
        if where is not None:
            yield from _conjuncts(where.this)
        for join in select.args.get("joins") or []:
            on = join.args.get("on")
            if on is not None and not join.args.get("side"):
                yield from _conjuncts(on)

    def outer_joins(
        self, select: exp.Select
    ) -> Iterator[tuple[exp.Join, Source | None, list[Source]]]:
        """Each LEFT/RIGHT join with an ON condition, the FROM item it brings in (a table
        occurrence, subquery or CTE reference; None for a nested join) and the sources on
        its optional side: the
        joined item for LEFT, everything joined before it for RIGHT.  FULL joins preserve
        both sides: nothing may be pruned from their ON."""
        joins: list[exp.Join] = list(select.args.get("joins") or [])
        for join in joins:
            side = (join.side or "").upper()
            if side not in ("LEFT", "RIGHT") or join.args.get("on") is None:
                continue
            item_sources = self.item_sources(join.this)
            target = self.checked.sources.get(id(join.this))
            optional = item_sources if side == "LEFT" else self.earlier(select, join)
            yield join, target, optional

    def earlier(self, select: exp.Select, join: exp.Join) -> list[Source]:
        """Sources of the FROM clause before ``join``."""
        from_ = select.args["from_"].this
        out = self.item_sources(from_)
        for other in select.args.get("joins") or []:
            if other is join:
                break
            out += self.item_sources(other.this)
        return out

    def item_sources(self, node: exp.Expr) -> list[Source]:
        """The sources one FROM item makes (a nested join makes several)."""
        if isinstance(node, exp.Subquery) and isinstance(node.this, exp.Table):
            node = node.this
        out = []
        source = self.checked.sources.get(id(node))
        if source is not None:
            out.append(source)
        if isinstance(node, exp.Table):
            for join in node.args.get("joins") or []:
                out += self.item_sources(join.this)
        return out

    def info(self, node: exp.Expr) -> ValueInfo | None:
        return self.checked.info.get(id(node))

    def constant(self, node: exp.Expr) -> float | None:
        info = self.info(node)
        return info.constant if info is not None else None

    def position_column(self, node: exp.Expr, sources: list[Source]) -> tuple[Source, str] | None:
        """(source, "ra" | "dec") when ``node`` is a positional column of a table here."""
        node = _unparen(node)
        if not isinstance(node, exp.Column):
            return None
        binding = self.checked.bindings.get(id(node))
        if binding is None or binding.merged or binding.source not in sources:
            return None
        table = binding.source.table
        if table is None or binding.source.occurrence is None:
            return None
        if binding.column.name == table.ra_column:
            return binding.source, "ra"
        if binding.column.name == table.dec_column:
            return binding.source, "dec"
        return None

    def column_point(self, node: exp.Expr, sources: list[Source]) -> Source | None:
        """The source when ``node`` is ``POINT(ra_col, dec_col)`` of one positional table."""
        node = _unparen(node)
        if not isinstance(node, nodes.Point):
            return None
        coords = node.coordinates
        if len(coords) != 2:
            return None
        ra, dec = self.position_column(coords[0], sources), self.position_column(coords[1], sources)
        if ra is None or dec is None or ra[0] is not dec[0] or (ra[1], dec[1]) != ("ra", "dec"):
            return None
        return ra[0]

    def add(self, source: Source, region: Region | RaDecRange) -> None:
        assert source.occurrence is not None
        moc = region_coverage(region, COVERAGE_MAX_ORDER)
        self.mocs.setdefault(source.occurrence, []).append(moc)

    def region_condition(
        self, node: exp.Expr, sources: list[Source]
    ) -> tuple[Source, Circle | Polygon | Box] | None:
        """``(source, region)`` when ``node`` is ``CONTAINS(POINT(ra, dec), region) = 1``
        (either side, or INTERSECTS either way round) with a constant region."""
        if not isinstance(node, exp.EQ):
            return None
        for side, other in ((node.this, node.expression), (node.expression, node.this)):
            pred = _unparen(side)
            if not isinstance(pred, (nodes.Contains, nodes.Intersects)):
                continue
            if self.constant(other) != 1.0:
                return None
            args = pred.coordinates
            order = [(args[0], args[1])]
            if isinstance(pred, nodes.Intersects):
                order.append((args[1], args[0]))
            for point, region_node in order:
                source = self.column_point(point, sources)
                region = self.checked.regions.get(id(_unparen(region_node)))
                if source is not None and isinstance(region, (Circle, Polygon, Box)):
                    return source, region
            return None
        return None

    def constraint(self, node: exp.Expr, sources: list[Source]) -> None:
        region = self.region_condition(node, sources)
        if region is not None:
            self.add(*region)
            return
        if isinstance(node, (exp.LT, exp.LTE, exp.GT, exp.GTE)):
            left, right = _unparen(node.this), _unparen(node.expression)
            flip = isinstance(node, (exp.GT, exp.GTE))
            dist, limit = (right, left) if flip else (left, right)
            if isinstance(dist, nodes.Distance):
                radius = self.constant(limit)
                found = self.cone(dist, sources)
                if radius is not None and found is not None and radius >= 0:
                    source, ra, dec = found
                    self.add(source, Circle(ra, dec, min(radius, 180.0)))
                    if radius < 90.0:
                        self.emitter.bands[id(node)] = radius
                return
            self.range(node, sources)
        if isinstance(node, exp.Between) and not node.args.get("negate"):
            column = self.position_column(node.this, sources)
            low, high = self.constant(node.args["low"]), self.constant(node.args["high"])
            if column is not None and low is not None and high is not None:
                self.bound(column, ">=", low)
                self.bound(column, "<=", high)

    def cone(
        self, dist: nodes.Distance, sources: list[Source]
    ) -> tuple[Source, float, float] | None:
        args = dist.coordinates
        if len(args) == 2:
            for a, b in ((args[0], args[1]), (args[1], args[0])):
                source = self.column_point(a, sources)
                region = self.checked.regions.get(id(_unparen(b)))
                if source is not None and isinstance(region, Point):
                    return source, region.ra, region.dec
            return None
        for (i_ra, i_dec), (i_cra, i_cdec) in (((0, 1), (2, 3)), ((2, 3), (0, 1))):
            col_ra = self.position_column(args[i_ra], sources)
            col_dec = self.position_column(args[i_dec], sources)
            c1, c2 = self.constant(args[i_cra]), self.constant(args[i_cdec])
            if (
                col_ra is not None
                and col_dec is not None
                and col_ra[0] is col_dec[0]
                and (col_ra[1], col_dec[1]) == ("ra", "dec")
                and c1 is not None
                and c2 is not None
                and -90.0 <= c2 <= 90.0
                and math.isfinite(c1)
            ):
                return col_ra[0], c1, c2
        return None

    def range(self, node: exp.Expr, sources: list[Source]) -> None:
        ops: dict[type[exp.Expr], str] = {exp.LT: "<=", exp.LTE: "<=", exp.GT: ">=", exp.GTE: ">="}
        op = ops[type(node)]
        column = self.position_column(node.this, sources)
        value = self.constant(node.expression)
        if column is None:
            column = self.position_column(node.expression, sources)
            value = self.constant(node.this)
            op = "<=" if op == ">=" else ">="
        if column is not None and value is not None:
            self.bound(column, op, value)

    def bound(self, column: tuple[Source, str], op: str, value: float) -> None:
        source, axis = column
        assert source.occurrence is not None
        b = self.bounds.setdefault(source.occurrence, _Bounds())
        b.used = True
        if axis == "ra":
            if op == ">=":
                b.ra_min = max(b.ra_min, value)
            else:
                b.ra_max = min(b.ra_max, value)
        elif op == ">=":
            b.dec_min = max(b.dec_min, value)
        else:
            b.dec_max = min(b.dec_max, value)

    def position_of(self, node: exp.Expr, sources: list[Source]) -> Source | None:
        """The one FROM item of ``sources`` that ``node``, a coordinate, is computed from:
        its columns all belong to that item (no USING-merged column), and it is plain
        arithmetic (no subquery, aggregate, random number or function call whose rows
        could differ between two evaluations)."""
        node = _unparen(node)
        found: list[Source] = []

        def walk(n: exp.Expr) -> bool:
            n = _unparen(n)
            if isinstance(n, exp.Column):
                binding = self.checked.bindings.get(id(n))
                if binding is None or binding.merged or binding.source not in sources:
                    return False
                found.append(binding.source)
                return True
            if isinstance(n, (exp.Literal, exp.Null)):
                return True
            if isinstance(n, exp.Neg):
                return walk(n.this)
            if isinstance(n, (exp.Add, exp.Sub, exp.Mul, exp.Div)):
                return walk(n.this) and walk(n.expression)
            return False

        if not walk(node) or not found or any(f is not found[0] for f in found):
            return None
        info = self.info(node)
        if info is None or info.kind != "numeric" or info.aggregate:
            return None
        return found[0]

    def point_of(self, node: exp.Expr, sources: list[Source]) -> _Position | None:
        """``(item, ra, dec)`` when ``node`` is ``POINT(ra, dec)`` of one FROM item."""
        node = _unparen(node)
        if not isinstance(node, nodes.Point) or len(node.coordinates) != 2:
            return None
        return self.pair_of(node.coordinates[0], node.coordinates[1], sources)

    def pair_of(self, ra: exp.Expr, dec: exp.Expr, sources: list[Source]) -> _Position | None:
        source = self.position_of(ra, sources)
        if source is None or self.position_of(dec, sources) is not source:
            return None
        return source, ra, dec

    def distance_join(self, node: exp.Expr, sources: list[Source]) -> _Join | None:
        """The cross-match ``node`` expresses, if it is one: a distance between positions
        of two FROM items bounded by a constant (``DISTANCE(...) < r``, ``<=``, or
        ``r > DISTANCE(...)``, ``>=``; POINT or 4-argument form, either item first), or
        ``CONTAINS(POINT(a), CIRCLE(b, r)) = 1`` (either operand order, either item inside
        the CIRCLE; INTERSECTS of a POINT and a CIRCLE, either way round, likewise)."""
        if isinstance(node, (exp.LT, exp.LTE, exp.GT, exp.GTE)):
            left, right = _unparen(node.this), _unparen(node.expression)
            flip = isinstance(node, (exp.GT, exp.GTE))
            dist, limit = (right, left) if flip else (left, right)
            radius = self.constant(limit)
            if not isinstance(dist, nodes.Distance) or radius is None or not 0 <= radius <= 180:
                return None
            args = dist.coordinates
            if len(args) == 2:
                a, b = self.point_of(args[0], sources), self.point_of(args[1], sources)
            elif len(args) == 4:
                a = self.pair_of(args[0], args[1], sources)
                b = self.pair_of(args[2], args[3], sources)
            else:
                return None
            if a is not None and b is not None and a[0] is not b[0]:
                return _Join(node, a, b, radius)
            return None
        if isinstance(node, exp.EQ):
            for side, other in ((node.this, node.expression), (node.expression, node.this)):
                pred = _unparen(side)
                if not isinstance(pred, (nodes.Contains, nodes.Intersects)):
                    continue
                if self.constant(other) != 1.0:
                    continue
                args = pred.coordinates
                orders = [(args[0], args[1])]
                if isinstance(pred, nodes.Intersects):
                    orders.append((args[1], args[0]))
                for point, circle in orders:
                    found = self.point_in_circle(point, circle, sources)
                    if found is not None:
                        return found
        return None

    def point_in_circle(
        self, point: exp.Expr, circle: exp.Expr, sources: list[Source]
    ) -> _Join | None:
        """``POINT(a)`` inside ``CIRCLE(b, r)`` for two FROM items and a constant ``r``."""
        a = self.point_of(point, sources)
        circle = _unparen(circle)
        if a is None or not isinstance(circle, nodes.Circle):
            return None
        coords = circle.coordinates
        if len(coords) == 2:
            b = self.point_of(coords[0], sources)
        elif len(coords) == 3:
            b = self.pair_of(coords[0], coords[1], sources)
        else:
            return None
        radius = self.constant(coords[-1])
        if b is None or b[0] is a[0] or radius is None or not 0 <= radius <= 180:
            return None
        return _Join(None, a, b, radius)

    def coverage(self, occurrence: int) -> MOC | None:
        mocs = list(self.mocs.get(occurrence, []))
        b = self.bounds.get(occurrence)
        if b is not None and b.used:
            ra_min, ra_max = max(0.0, b.ra_min), min(360.0, b.ra_max)
            dec_min, dec_max = max(-90.0, b.dec_min), min(90.0, b.dec_max)
            if (
                ra_min <= ra_max
                and dec_min <= dec_max
                and (ra_min > 0.0 or ra_max < 360.0 or dec_min > -90.0 or dec_max < 90.0)
            ):
                mocs.append(
                    region_coverage(
                        RaDecRange(ra_min, ra_max, dec_min, dec_max), COVERAGE_MAX_ORDER
                    )
                )
        if not mocs:
            return None
        return intersect(mocs[0], *mocs[1:])


def translate(checked: CheckedQuery) -> Translation:
    """Translate a checked query to one DuckDB SELECT statement.

    Parameters
    ----------
    checked
        The result of :func:`skyvault.adql.check.check`.

    Returns
    -------
    Translation
        The SQL, the table occurrences with their pruning coverage, the result column
        metadata and the cross-match, if any.

    Raises
    ------
    UnsupportedQuery
        For the few forms only found while writing SQL (a BOX built from column values used
        as a value).
    """
    emitter = _Emitter(checked)
    pruner = _Pruner(checked, emitter)
    pruner.run()
    sql = emitter.root()
    tables = tuple(
        TableRef(
            source.relation,
            source.table,
            pruner.coverage(source.occurrence) if source.table.kind == "hats" else None,
        )
        for source in checked.occurrences
        if source.table is not None and source.occurrence is not None
    )
    direct = _direct_select(checked, pruner)
    return Translation(sql, tables, checked.columns, tuple(pruner.crossmatches), direct)


_FLIPPED = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}


def _direct_select(checked: CheckedQuery, pruner: _Pruner) -> DirectSelect | None:
    """The query as a :class:`DirectSelect`, or None when it is not of that shape."""
    tree = checked.query.tree
    if not isinstance(tree, exp.Select) or tree.args.get("joins"):
        return None
    for key in ("with_", "distinct", "group", "having", "order", "offset"):
        if tree.args.get(key) is not None:
            return None
    sources = checked.scopes.get(id(tree))
    if not sources or len(sources) != 1:
        return None
    source = sources[0]
    table = source.table
    if table is None or table.kind != "hats" or source.occurrence is None:
        return None
    from_ = tree.args.get("from_")
    if from_ is None or not isinstance(from_.this, exp.Table):
        return None
    columns: list[str] = []
    names: list[str] = []
    for output in checked.outputs[id(tree)]:
        binding = output.binding
        if output.node is not None:
            node = _unparen(output.node)
            binding = checked.bindings.get(id(node)) if isinstance(node, exp.Column) else None
        if binding is None or binding.source is not source or binding.merged:
            return None
        columns.append(binding.column.sql)
        names.append(output.sql)
    where = tree.args.get("where")
    if where is None:
        return None
    cuts: list[SkyCut] = []
    tests: list[ColumnTest] = []
    for conjunct in _conjuncts(where.this):
        cut = _sky_cut(conjunct, sources, pruner)
        if cut is not None:
            cuts.append(cut)
            continue
        found = _column_tests(conjunct, source, checked)
        if found is None:
            return None
        tests += found
    if not cuts:
        return None
    limit = tree.args.get("limit")
    top = int(str(limit.expression.this)) if limit is not None else None
    return DirectSelect(
        source.relation, tuple(columns), tuple(names), tuple(cuts), top, tuple(tests)
    )


_NUMERIC_TYPES = frozenset({"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "FLOAT", "DOUBLE"})


def _column_tests(node: exp.Expr, source: Source, checked: CheckedQuery) -> list[ColumnTest] | None:
    """``node`` as comparisons of one column of ``source`` with constants, or None.

    Only what means the same in DuckDB and in Arrow's comparison kernels: a numeric column
    against a number literal (integers kept exact: ``objectId = 1234567890123456789``), a
    string column against a string literal, ``IS [NOT] NULL``, ``BETWEEN`` two numbers.
    """

    def column(n: exp.Expr) -> tuple[str, str] | None:
        n = _unparen(n)
        if not isinstance(n, exp.Column):
            return None
        binding = checked.bindings.get(id(n))
        if binding is None or binding.source is not source or binding.merged:
            return None
        return binding.column.sql, checked.info[id(n)].duck

    negate = False
    if isinstance(node, exp.Not):
        negate, node = True, _unparen(node.this)
    if isinstance(node, exp.Is) and isinstance(_unparen(node.expression), exp.Null):
        target = column(node.this)
        if target is None:
            return None
        negate ^= bool(node.args.get("negate"))
        return [ColumnTest(target[0], "not null" if negate else "null")]
    if negate:
        return None
    if isinstance(node, exp.Between) and not node.args.get("negate"):
        target = column(node.this)
        low, high = _number(node.args["low"]), _number(node.args["high"])
        if target is None or target[1] not in _NUMERIC_TYPES or low is None or high is None:
            return None
        return [ColumnTest(target[0], ">=", low), ColumnTest(target[0], "<=", high)]
    op = _COMPARISON_SQL.get(type(node))
    if op is None:
        return None
    for a, b, flip in ((node.this, node.expression, False), (node.expression, node.this, True)):
        target = column(a)
        if target is None:
            continue
        name, duck = target
        value: int | float | str | None = None
        other = _unparen(b)
        if duck in _NUMERIC_TYPES:
            value = _number(other)
        elif duck == "VARCHAR" and isinstance(other, exp.Literal) and other.is_string:
            value = str(other.this)
        if value is None:
            return None
        return [ColumnTest(name, _FLIPPED.get(op, op) if flip else op, value)]
    return None


def _number(node: exp.Expr) -> int | float | None:
    """A number literal's value (integers exact), or None."""
    node = _unparen(node)
    sign = 1
    if isinstance(node, exp.Neg):
        sign, node = -1, _unparen(node.this)
    if not isinstance(node, exp.Literal) or node.is_string:
        return None
    text = str(node.this)
    try:
        return sign * int(text)
    except ValueError:
        pass
    try:
        value = sign * float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _sky_cut(node: exp.Expr, sources: list[Source], pruner: _Pruner) -> SkyCut | None:
    """``node`` as a :class:`SkyCut` on the one source, or None.

    Mirrors :meth:`_Emitter.comparison`: a CONTAINS/INTERSECTS compared with 1 is the bare
    point-in-region predicate; a DISTANCE compared with a constant is that comparison.
    """
    found = pruner.region_condition(node, sources)
    if found is not None:
        ra, dec = _position_columns(found[0])
        return SkyCut(ra, dec, region=found[1])
    ops: dict[type[exp.Expr], str] = {exp.LT: "<", exp.LTE: "<=", exp.GT: ">", exp.GTE: ">="}
    op = ops.get(type(node))
    if op is None:
        return None
    left, right = _unparen(node.this), _unparen(node.expression)
    dist, limit = left, right
    if isinstance(right, nodes.Distance):
        dist, limit, op = right, left, _FLIPPED[op]
    radius = pruner.constant(limit)
    if not isinstance(dist, nodes.Distance) or radius is None or not math.isfinite(radius):
        return None
    args = dist.coordinates
    if len(args) != 2:
        return None  # the 4-argument form: its SQL has other casts; DuckDB handles it
    for first, (a, b) in ((True, (args[0], args[1])), (False, (args[1], args[0]))):
        source = pruner.column_point(a, sources)
        fixed = pruner.checked.regions.get(id(_unparen(b)))
        if source is not None and isinstance(fixed, Point):
            ra, dec = _position_columns(source)
            centre = (fixed.ra, fixed.dec)
            return SkyCut(ra, dec, centre=centre, op=op, radius=radius, column_first=first)
    return None


def _position_columns(source: Source) -> tuple[str, str]:
    """The stored names of a positional source's RA and Dec columns."""
    table = source.table
    assert table is not None and table.ra_column and table.dec_column  # column_point said so
    return table.ra_column, table.dec_column


def compile_adql(text: str, tables: Sequence[TableMeta]) -> Translation:
    """Parse, check and translate ADQL text in one call.

    Parameters
    ----------
    text
        The ADQL query.
    tables
        The tables the caller may see.

    Returns
    -------
    Translation
        As :func:`translate`.

    Raises
    ------
    skyvault.errors.AdqlError
        Syntax, semantic or unsupported-feature errors, with line and column.
    """
    query: AdqlQuery = parse(text)
    return translate(check(query, tables))
