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

Besides the SQL, the translation reports per table occurrence the columns the SQL reads and
a conservative sky coverage (MOC) from the positional constraints ANDed at the top of its
WHERE clause and inner-join ON conditions, and of the ON condition of an outer join that
makes it optional (:mod:`skyvault.adql.prune`); a :class:`CrossMatch` for every SELECT
(anywhere: subqueries, CTEs, set operations) that joins two FROM items by a distance, and
the SQL again with the cell-key equalities of those that can be cell joins
(:attr:`Translation.keyed_sql`); and the query's plain-search form, if it has one
(:mod:`skyvault.adql.shape`).  The engine reads these; it never parses the SQL.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

from sqlglot import exp

from skyvault.adql import nodes
from skyvault.adql.annotate import FLOATING, ValueInfo
from skyvault.adql.check import CheckedQuery, ColumnBinding, Output, Source, check
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
from skyvault.adql.partials import TopSelect, top_select
from skyvault.adql.prune import COVERAGE_MAX_ORDER, DistanceJoin, Position, Pruner, _unparen
from skyvault.adql.shape import ColumnTest, DirectSelect, SkyCut, direct_select
from skyvault.adql.validate import SourceText
from skyvault.catalog.metadata import ColumnMeta, TableMeta
from skyvault.errors import UnsupportedQuery
from skyvault.sky.cells import KEY_COLUMN, exploded_select
from skyvault.sky.coverage import HEALPIX29_ORDER, MOC
from skyvault.sky.sql import distance_sql
from skyvault.sqltext import quote_identifier
from skyvault.sqltext import string_literal as _string_literal

__all__ = [
    "COVERAGE_MAX_ORDER",
    "CellJoin",
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

#: The order-29 NESTED HEALPix index ingest stores with every row of a ``hats`` table,
#: computed from the table's own RA/Dec columns (``skyvault.catalog.ingest.HEALPIX_COLUMN``).
_HEALPIX_COLUMN = "_healpix_29"


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
    columns
        The table's columns the SQL reads from this occurrence, in the table's order (every
        column the SQL names is written from a checked column binding, so this is exact);
        a reader that materialises the rows needs only these.
    """

    placeholder: str
    meta: TableMeta
    coverage: MOC | None
    columns: tuple[str, ...]


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
    offsets: str | None = None
    """For a derived item in a cell join: the relation :attr:`Translation.keyed_sql` crosses
    its rows with to get their keys (``__sv_x0``); the engine defines it with one row of cell
    offsets when it keys this side, nine when it explodes it
    (:func:`skyvault.sky.cells.cell_offsets`)."""


@dataclasses.dataclass(frozen=True)
class CellJoin:
    """How :attr:`Translation.keyed_sql` joins the two sides of a cross-match on their cell
    keys: an equality of the two items' :data:`~skyvault.sky.cells.KEY_COLUMN` in the
    ON of the join that brings in the later one (``clause`` ``"ON"``) or, after a comma,
    in the WHERE of their SELECT (``"WHERE"``)."""

    clause: str
    exploded: str | None = None
    """The side (:attr:`MatchSide.name`) the engine must explode: the optional side of a
    LEFT/RIGHT join.  None: the engine explodes the smaller side."""


@dataclasses.dataclass(frozen=True)
class CrossMatch:
    """Two FROM items joined on their distance: ``left``/``right`` are the sides' names
    (:attr:`MatchSide.name`), ``sides`` their positions."""

    left: str
    right: str
    radius_deg: float
    sides: tuple[MatchSide, MatchSide]
    cell: CellJoin | None = None
    """Where :attr:`Translation.keyed_sql` joins the two on their cell keys; None when it
    does not (a FULL join, an item inside a nested join, or a table occurrence already in
    an earlier cell join): then the distance join stays an ordinary join."""


@dataclasses.dataclass(frozen=True)
class Translation:
    """The DuckDB form of an ADQL query.

    Attributes
    ----------
    sql
        One DuckDB SELECT statement over the placeholder relations, each the rows of its
        table.
    tables
        One entry per table occurrence (also in subqueries and CTEs).
    columns
        Result column metadata, in order, names as the user sees them.
    crossmatches
        Every distance join of two FROM items, wherever its SELECT is (the top level
        first, then subqueries, CTEs and set-operation branches); a pair is listed once.
    direct
        The query as a :class:`DirectSelect`, when it has that simple shape.
    keyed_sql
        When a cross-match has a :attr:`CrossMatch.cell`: the same query, joining each such
        pair also on its cell keys.  It runs where the sides' placeholders carry
        :data:`~skyvault.sky.cells.KEY_COLUMN` (the engine's keyed or exploded views)
        and derived sides' :attr:`MatchSide.offsets` relations are defined; which side of a
        pair explodes is the engine's choice and changes nothing in this text.
    top_select
        The top-level SELECT taken apart (:mod:`skyvault.adql.partials`), from which a
        distributed executor writes per-partition partial queries and their merge.
    """

    sql: str
    tables: tuple[TableRef, ...]
    columns: tuple[ColumnMeta, ...]
    crossmatches: tuple[CrossMatch, ...] = ()
    direct: DirectSelect | None = None
    top_select: TopSelect | None = None
    keyed_sql: str | None = None

    @property
    def crossmatch(self) -> CrossMatch | None:
        """The first of :attr:`crossmatches` (the top-level one when there is one)."""
        return self.crossmatches[0] if self.crossmatches else None


def _cast(sql: str, info: ValueInfo, duck: str) -> str:
    if info.duck == duck:
        return sql
    return f"CAST({sql} AS {duck})"


@dataclasses.dataclass(frozen=True)
class _CellKeys:
    """What the keyed SQL adds for its cell joins (see :attr:`Translation.keyed_sql`)."""

    on: dict[int, list[str]]
    """id(join) -> the key equalities its ON condition takes."""
    where: dict[int, list[str]]
    """id(select) -> the key equalities its WHERE takes."""
    derived: dict[int, MatchSide]
    """id(source) -> the side of a derived item whose rows get their key in the SQL."""
    radius: dict[int, float]


class _Emitter:
    def __init__(
        self, checked: CheckedQuery, bands: dict[int, float], cells: _CellKeys | None = None
    ) -> None:
        self.checked = checked
        self.source_text = SourceText(checked.query.text)
        #: Distance comparisons known to be cross-match joins: id(node) -> radius.
        self.bands = bands
        self.cells = cells
        #: The columns the SQL reads from each table occurrence, by occurrence.
        self.read: dict[int, set[str]] = {}
        #: Hooks of :mod:`skyvault.adql.partials` while it writes the top-level SELECT over
        #: partial results: the SQL to write instead of a value's own (None: its own), and
        #: the SQL of an aggregate's call from (node, function, DISTINCT, argument or None).
        self.replace: Callable[[exp.Expr], str | None] | None = None
        self.aggregate_call: Callable[[exp.Expr, str, bool, str | None], str] | None = None

    def unsupported(self, node: exp.Expr, message: str) -> UnsupportedQuery:
        line, column = self.source_text.locate(node)
        return UnsupportedQuery(message, line=line, column=column)

    def info(self, node: exp.Expr) -> ValueInfo:
        return self.checked.info[id(node)]

    # --- queries --------------------------------------------------------------------------

    def root(self) -> str:
        return self.with_clause() + self.query(self.checked.query.tree)

    def with_clause(self) -> str:
        """``WITH ... `` (with its trailing space), or nothing."""
        with_ = self.checked.query.tree.args.get("with_")
        if with_ is None:
            return ""
        parts = [
            f"{quote_identifier(self.checked.cte_names[id(cte)])} AS ({self.query(cte.this)})"
            for cte in with_.expressions
        ]
        return "WITH " + ", ".join(parts) + " "

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
            items.append(f"{self.item(output, target)} AS {quote_identifier(output.sql)}")
        distinct = "DISTINCT " if node.args.get("distinct") is not None else ""
        parts = [f"SELECT {distinct}{', '.join(items)}", "FROM " + self.from_clause(node)]
        where = node.args.get("where")
        keys = self.cells.where.get(id(node), []) if self.cells is not None else []
        if where is not None:
            condition = self.cond(where.this)
            if keys:
                condition = f"({condition}) AND " + " AND ".join(keys)
            parts.append("WHERE " + condition)
        elif keys:
            parts.append("WHERE " + " AND ".join(keys))
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

    def item(self, output: Output, target: str | None = None) -> str:
        """The SQL of one select-list item (without its alias), cast to ``target``."""
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
        return sql

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
        side = self.cells.derived.get(id(source)) if self.cells is not None else None
        if side is not None:
            # A derived side of a cell join: its rows with their cell key.
            assert side.offsets is not None and self.cells is not None
            if isinstance(node, exp.Subquery):
                rows = self.query(node.this)
            else:
                rows = f"SELECT * FROM {quote_identifier(source.relation)}"
            radius = self.cells.radius[id(source)]
            keyed = exploded_select(
                rows, side.ra, side.dec, radius, alias=source.alias, offsets=side.offsets
            )
            sql = f"({keyed}) AS {alias}"
        elif isinstance(node, exp.Subquery):
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
        keys = self.cells.on.get(id(node)) if self.cells is not None else None
        if keys:
            condition = f"({condition}) AND " + " AND ".join(keys)
        keyword = f"{side} JOIN" if side else "JOIN"
        return f"{keyword} {item} ON {condition}"

    def binding(self, binding: ColumnBinding, *, merged: bool = True) -> str:
        self.reads(binding.source, binding.column.sql)
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
        if isinstance(node, tuple(nodes.COMPARISONS)):
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
        op = nodes.COMPARISONS[type(node)]
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
        if self.replace is not None:
            replaced = self.replace(node)
            if replaced is not None:
                return replaced
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
            return self.call(node, "count", False, None)
        distinct = False
        if isinstance(arg, exp.Distinct):
            distinct, arg = True, arg.expressions[0]
        arg_info = self.info(arg)
        sql = self.value(arg)
        if name in ("sum", "avg"):
            if arg_info.duck in {"BOOLEAN", "NULL"}:
                sql = f"CAST({sql} AS INTEGER)"
            elif arg_info.duck in FLOATING and arg_info.duck not in ("FLOAT", "DOUBLE"):
                sql = f"CAST({sql} AS DOUBLE)"
            out = self.call(node, name, distinct, sql)
            return f"CAST({out} AS BIGINT)" if info.duck == "BIGINT" else out
        if name in ("min", "max") and arg_info.duck == "NULL":
            sql = f"CAST({sql} AS {info.duck})"
        return self.call(node, name, distinct, sql)

    def call(self, node: exp.Expr, name: str, distinct: bool, arg: str | None) -> str:
        """An aggregate's call: ``name([DISTINCT ]arg)``, ``arg`` None for ``*``."""
        if self.aggregate_call is not None:
            return self.aggregate_call(node, name, distinct, arg)
        return f"{name}({'DISTINCT ' if distinct else ''}{'*' if arg is None else arg})"

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
        self.reads(ra.source, _HEALPIX_COLUMN)
        column = f"{quote_identifier(ra.source.alias)}.{quote_identifier(_HEALPIX_COLUMN)}"
        shift = 2 * (HEALPIX29_ORDER - int(order))
        return f"({column} >> {shift})" if shift else column

    def reads(self, source: Source, column: str) -> None:
        """Note that the SQL reads ``column`` of ``source`` (kept for table occurrences)."""
        if source.occurrence is not None:
            self.read.setdefault(source.occurrence, set()).add(column)

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
        if info.region:  # a column of STC-S regions (only ever a CONTAINS/INTERSECTS argument)
            return GeoSql("region", (), whole=self.value(node))
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
    pruner = Pruner(checked)
    pruning = pruner.run()
    emitter = _Emitter(checked, pruning.bands)
    sql = emitter.root()
    crossmatches, cells = _crossmatches(emitter, pruner, pruning.matches)
    keyed = _Emitter(checked, pruning.bands, cells) if cells is not None else None
    keyed_sql = keyed.root() if keyed is not None else None
    tables = tuple(
        TableRef(
            placeholder=source.relation,
            meta=source.table,
            coverage=pruning.coverage(source.occurrence) if source.table.kind == "hats" else None,
            columns=_read_columns(source.table, emitter.read.get(source.occurrence, set())),
        )
        for source in checked.occurrences
        if source.table is not None and source.occurrence is not None
    )
    return Translation(
        sql=sql,
        tables=tables,
        columns=checked.columns,
        crossmatches=crossmatches,
        direct=direct_select(checked),
        keyed_sql=keyed_sql,
        top_select=top_select(checked, keyed or emitter, keyed_sql or sql, crossmatches),
    )


def _read_columns(table: TableMeta, read: set[str]) -> tuple[str, ...]:
    """The columns of ``table`` in ``read``, in the table's order."""
    return tuple(c.name for c in table.columns if c.name in read)


def _crossmatches(
    emitter: _Emitter, pruner: Pruner, matches: Sequence[DistanceJoin]
) -> tuple[tuple[CrossMatch, ...], _CellKeys | None]:
    """The :class:`CrossMatch` of each distance join, and what the keyed SQL adds for those
    with a cell join (None: none has one)."""
    out: list[CrossMatch] = []
    cells = _CellKeys({}, {}, {}, {})
    for match in matches:
        placement = match.cell
        sides = [_match_side(emitter, pruner, p) for p in (match.left, match.right)]
        cell = None
        if placement is not None:
            for i, position in enumerate((match.left, match.right)):
                if sides[i].derived:
                    sides[i] = dataclasses.replace(sides[i], offsets=f"__sv_x{len(cells.derived)}")
                    cells.derived[id(position.source)] = sides[i]
                    cells.radius[id(position.source)] = match.radius
            early, late = (quote_identifier(s.alias) for s in (placement.early, placement.late))
            key = f"{early}.{KEY_COLUMN} = {late}.{KEY_COLUMN}"
            if placement.join is not None:
                cells.on.setdefault(id(placement.join), []).append(key)
            else:
                cells.where.setdefault(id(placement.select), []).append(key)
            optional = placement.optional
            exploded = None
            if optional is not None:
                exploded = sides[0].name if optional is match.left.source else sides[1].name
            clause = "ON" if placement.join is not None else "WHERE"
            cell = CellJoin(clause=clause, exploded=exploded)
        out.append(
            CrossMatch(
                left=sides[0].name,
                right=sides[1].name,
                radius_deg=match.radius,
                sides=(sides[0], sides[1]),
                cell=cell,
            )
        )
    return tuple(out), (cells if cells.on or cells.where else None)


def _match_side(emitter: _Emitter, pruner: Pruner, position: Position) -> MatchSide:
    """The :class:`MatchSide` of a position of a FROM item, its SQL written by ``emitter``."""
    source = position.source
    a, b = _unparen(position.ra), _unparen(position.dec)
    ra_sql, dec_sql = (_cast(emitter.value(n), emitter.info(n), "DOUBLE") for n in (a, b))
    columns = None
    if isinstance(a, exp.Column) and isinstance(b, exp.Column):
        bindings = emitter.checked.bindings
        columns = (bindings[id(a)].column.sql, bindings[id(b)].column.sql)
    if source.occurrence is not None:
        return MatchSide(
            name=source.relation, alias=source.alias, ra=ra_sql, dec=dec_sql, columns=columns
        )
    return MatchSide(
        name=source.alias,
        alias=source.alias,
        ra=ra_sql,
        dec=dec_sql,
        columns=columns,
        derived=True,
        tables=pruner.derived_tables(source),
    )


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
