"""Splitting a query plan into per-partition partial queries and one merge query.

A distributed executor runs a plan as many tasks, each over a group of the files of one
table (the *split* scan), and merges what the tasks return.  This module decides, from the
plan's DuckDB SQL (parsed with sqlglot), whether that gives exactly the answer of the whole
query, and writes the two queries:

* **concat** — filters and projections: each task runs the query as it is; the merge is the
  concatenation of the task results.
* **rows** — ORDER BY, LIMIT/OFFSET (ADQL's TOP/OFFSET), DISTINCT: each task returns its
  rows (distinct rows; the first ``offset + limit`` in the query's order when there is a
  limit) under positional names ``__sv_c<i>`` plus hidden ``__sv_o<j>`` sort keys; the merge
  sorts, de-duplicates, skips and cuts the union.
* **aggregate** — GROUP BY and COUNT/SUM/MIN/MAX/AVG/STDDEV/VARIANCE (and the DISTINCT form
  of COUNT/SUM/AVG/MIN/MAX over one expression): each task groups its rows and returns
  mergeable partial aggregates (AVG as sum and count; the variances as count, sum and the sum
  of squared deviations, combined with the parallel-variance formula, which stays exact
  where sums of squares would cancel); ``COUNT(DISTINCT x)`` makes the tasks group on ``x``
  too.  The merge groups the partials again and evaluates the select list, HAVING, ORDER BY
  and LIMIT/OFFSET with every aggregate replaced by its merge.
* **whole** — anything else runs as one task over every file (never a wrong answer): window
  functions, set operations, the split table in a subquery or CTE or on the optional side of
  an outer join, aggregates other than the above, unknown functions in the select list.

Which scan is split: the stored positional table with the most files (at least two) that
the query can be split on (not one read only in a subquery); every other scan — other
tables, in-memory uploads, the other side of a cross-match — is read whole by every task
(except a cross-match partner with a wide enough margin catalogue, of which each task reads
the aligned partitions: :mod:`skyvault.engine.aligned`, which keeps every pair in one task).
A row of the split table is therefore in exactly one task, and every row of the query's FROM
clause comes from one row of the split table (inner and LEFT joins with the split table on
the preserved side), which is what makes the decompositions exact.

The merge query reads the concatenated partial results as ``"__sv_partials"``; its final
form needs the DuckDB names and types of the original query's result and of the partial
columns (a task reports them with ``DESCRIBE``), see :meth:`MergeQuery.sql`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import sqlglot
from sqlglot import exp

from skyvault.engine.plan import QueryPlan, Scan
from skyvault.sqltext import quote_identifier as quote
from skyvault.sqltext import with_maxrec as _with_maxrec

__all__ = ["PARTIALS", "MergeQuery", "Split", "split_candidates", "split_plan", "whole"]

PARTIALS = "__sv_partials"
"""The relation the merge query reads: the task results, concatenated."""

_PREFIX = "__sv_"
_DIALECT = "duckdb"

Kind = Literal["whole", "concat", "rows", "aggregate"]


@dataclass(frozen=True)
class MergeQuery:
    """The merge query, short of the result's names and types (known once a task ran).

    Every expression is DuckDB SQL over the partial columns (``"__sv_g0"``, ``"__sv_a0"``...).
    """

    outputs: tuple[str, ...]
    distinct: bool = False
    group: tuple[str, ...] = ()
    having: str | None = None
    order: tuple[str, ...] = ()
    limit: int | None = None
    offset: int | None = None
    windows: tuple[str, ...] = ()
    """``expr AS "name"`` columns added over the partials before grouping (variance means)."""

    def sql(
        self,
        names: Sequence[str],
        types: Sequence[str],
        partial_columns: Sequence[tuple[str, str]],
    ) -> str:
        """The merge SQL, giving each result column its name and DuckDB type.

        ``names``/``types`` are those of the original query's result; ``partial_columns``
        the ``(name, type)`` of each partial column, restored after the Arrow round trip
        (a HUGEINT comes back as DECIMAL(38,0)).
        """
        if len(names) != len(self.outputs) or len(types) != len(self.outputs):
            raise ValueError("the merge query and the result disagree on the columns")
        typed = ", ".join(f"CAST({quote(n)} AS {t}) AS {quote(n)}" for n, t in partial_columns)
        source = f"(SELECT {typed} FROM {quote(PARTIALS)})"
        if self.windows:
            source = f"(SELECT *, {', '.join(self.windows)} FROM {source})"
        outputs = ", ".join(
            f"CAST({o} AS {t}) AS {quote(n)}"
            for o, n, t in zip(self.outputs, names, types, strict=True)
        )
        sql = f"SELECT {'DISTINCT ' if self.distinct else ''}{outputs} FROM {source} AS __sv_p"
        if self.group:
            sql += " GROUP BY " + ", ".join(self.group)
        if self.having is not None:
            sql += f" HAVING {self.having}"
        if self.order:
            sql += " ORDER BY " + ", ".join(self.order)
        if self.limit is not None:
            sql += f" LIMIT {self.limit}"
        if self.offset:
            sql += f" OFFSET {self.offset}"
        return sql


@dataclass(frozen=True)
class Split:
    """How to run a plan: partial SQL per group of the split scan's files, then a merge.

    ``split`` is the placeholder whose files are divided among tasks (None: one task reads
    everything); ``merge`` is None when the result is the concatenation of the tasks'.
    """

    kind: Kind
    partial_sql: str
    split: str | None
    merge: MergeQuery | None
    reason: str = ""
    """Why the plan runs whole (empty otherwise)."""

    @property
    def splits(self) -> bool:
        return self.split is not None


class _Whole(Exception):
    """The query cannot be split exactly; the message says why."""


def whole(plan: QueryPlan, reason: str, maxrec: int | None = None) -> Split:
    """Run ``plan`` as one task (its SQL unchanged, cut after MAXREC+1 rows)."""
    return Split("whole", _with_maxrec(plan.sql, maxrec), None, None, reason)


def split_candidates(scans: Sequence[Scan]) -> list[Scan]:
    """Stored positional tables with at least two files, the most files first."""
    candidates = [s for s in scans if s.positional and s.arrow is None and len(s.files) >= 2]
    return sorted(candidates, key=lambda s: -len(s.files))


def split_plan(plan: QueryPlan, *, maxrec: int | None = None) -> Split:
    """Decompose ``plan`` (see the module docstring); ``whole`` when that is not exact.

    The split scan is the largest candidate the query can be split on (a table read only in
    a subquery cannot be; the next largest may).  ``maxrec`` lets partial queries stop
    early: the merge never needs more than MAXREC+1 result rows.
    """
    candidates = split_candidates(plan.scans)
    if not candidates:
        return whole(plan, "no stored positional table with several files", maxrec)
    try:
        tree = sqlglot.parse_one(plan.sql, dialect=_DIALECT)
    except sqlglot.errors.SqlglotError:
        return whole(plan, "the SQL could not be parsed", maxrec)
    reasons = []
    for scan in candidates:
        try:
            return _split_select(plan.sql, tree, scan.placeholder, maxrec)
        except _Whole as reason:
            reasons.append(str(reason))
    return whole(plan, reasons[0], maxrec)


# --- checks ---------------------------------------------------------------------------------

_ALLOWED_ARGS = {
    "with_", "with", "expressions", "distinct", "from_", "from", "joins", "where", "group",
    "having", "order", "limit", "offset", "kind",
}  # fmt: skip

_SUPPORTED_AGGREGATES: tuple[type[exp.Expr], ...] = (
    exp.Count,
    exp.Sum,
    exp.Min,
    exp.Max,
    exp.Avg,
    exp.Stddev,
    exp.StddevSamp,
    exp.StddevPop,
    exp.Variance,
    exp.VariancePop,
)
_DISTINCT_AGGREGATES: tuple[type[exp.Expr], ...] = (
    exp.Count,
    exp.Sum,
    exp.Min,
    exp.Max,
    exp.Avg,
)


def _arg(node: exp.Expr, *keys: str) -> exp.Expr | None:
    for key in keys:
        value = node.args.get(key)
        if value is not None:
            return value  # type: ignore[no-any-return]
    return None


def _scalar_udfs() -> frozenset[str]:
    """Names of the registered functions that are not aggregates (lower case)."""
    from skyvault.adql.functions import FUNCTIONS

    return frozenset(name.lower() for name, spec in FUNCTIONS.items() if not spec.is_aggregate)


def _outside_subqueries(node: exp.Expr) -> Iterator[exp.Expr]:
    """``node`` and its descendants, not descending into subqueries."""
    yield node
    for child in node.iter_expressions():
        if isinstance(child, (exp.Subquery, exp.Query)):
            yield child
            continue
        yield from _outside_subqueries(child)


def _check_tree(tree: exp.Expr, split: str) -> exp.Select:
    if not isinstance(tree, exp.Select):
        raise _Whole("not a single SELECT (a set operation)")
    extra = {k for k, v in tree.args.items() if v is not None and v is not False and v != []}
    extra -= _ALLOWED_ARGS
    if extra:
        raise _Whole(f"unsupported clause: {', '.join(sorted(extra))}")
    if tree.find(exp.Window) is not None:
        raise _Whole("a window function")
    occurrences = [t for t in tree.find_all(exp.Table) if t.name == split]
    if len(occurrences) != 1:
        raise _Whole("the split table occurs more than once")
    table = occurrences[0]
    from_ = _arg(tree, "from_", "from")
    joins: list[exp.Join] = list(tree.args.get("joins") or [])
    at_top = (from_ is not None and from_.this is table) or any(j.this is table for j in joins)
    if not at_top:
        raise _Whole("the split table is inside a subquery, CTE or nested join")
    if any(table.args.get(k) for k in ("joins", "laterals", "pivots", "sample", "when")):
        raise _Whole("the split table has table modifiers")
    for join in joins:
        side = (join.side or "").upper()
        kind = (join.kind or "").upper()
        if join.method or kind not in ("", "INNER", "OUTER", "CROSS"):
            raise _Whole(f"a {join.method or kind} join")
        if side in ("RIGHT", "FULL"):
            raise _Whole(f"a {side} join")
        if side == "LEFT" and join.this is table:
            raise _Whole("the split table is the optional side of a LEFT join")
        if isinstance(join.this, exp.Lateral) or join.args.get("match_condition"):
            raise _Whole("a lateral or ASOF join")
    return tree


def _check_functions(nodes: Sequence[exp.Expr]) -> None:
    """Aggregates must be supported ones and anonymous functions known scalar ones."""
    scalar = _scalar_udfs()
    for root in nodes:
        for node in _outside_subqueries(root):
            if isinstance(node, exp.AggFunc) and not isinstance(node, _SUPPORTED_AGGREGATES):
                raise _Whole(f"the aggregate {node.sql(dialect=_DIALECT)[:40]}")
            if isinstance(node, exp.Anonymous) and node.name.lower() not in scalar:
                raise _Whole(f"the function {node.name} (not known to be a scalar)")
            if isinstance(node, exp.Max | exp.Min) and node.expressions:
                raise _Whole("MIN/MAX with several arguments")


def _has_aggregate(nodes: Sequence[exp.Expr]) -> bool:
    return any(isinstance(n, exp.AggFunc) for root in nodes for n in _outside_subqueries(root))


def _unqualified_names(nodes: Sequence[exp.Expr]) -> set[str]:
    """Lower-cased names of unqualified column references (not in subqueries)."""
    return {
        n.name.lower()
        for root in nodes
        for n in _outside_subqueries(root)
        if isinstance(n, exp.Column) and not n.table
    }


def _renaming_aliases(query: _Query) -> set[str]:
    """Lower-cased aliases that name something else than a column of the same name."""
    out = set()
    for output, alias in zip(query.outputs, query.aliases, strict=True):
        if not (isinstance(output, exp.Column) and output.name.lower() == alias.lower()):
            out.add(alias.lower())
    return out


def _strip(node: exp.Expr) -> exp.Expr:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def _literal_int(node: exp.Expr | None, what: str) -> int | None:
    if node is None:
        return None
    if isinstance(node, exp.Literal) and not node.is_string:
        try:
            return int(node.this)
        except ValueError:
            pass
    raise _Whole(f"{what} is not an integer literal")


def _limits(tree: exp.Select) -> tuple[int | None, int | None]:
    limit_node = tree.args.get("limit")
    limit = None
    if limit_node is not None:
        if not isinstance(limit_node, exp.Limit) or any(
            limit_node.args.get(k) for k in ("offset", "expressions", "limit_options")
        ):
            raise _Whole("an unusual LIMIT")
        limit = _literal_int(limit_node.expression, "LIMIT")
    offset_node = tree.args.get("offset")
    offset = None
    if offset_node is not None:
        offset = _literal_int(offset_node.expression, "OFFSET")
    return limit, offset


# --- the decomposition ----------------------------------------------------------------------


@dataclass
class _Query:
    """The top-level SELECT taken apart."""

    tree: exp.Select
    outputs: list[exp.Expr]
    aliases: list[str]
    order: list[exp.Ordered]
    group: list[exp.Expr]
    having: exp.Expr | None
    distinct: bool
    limit: int | None
    offset: int | None


def _split_select(sql: str, tree: exp.Expr, split: str, maxrec: int | None) -> Split:
    select = _check_tree(tree, split)
    distinct_node = select.args.get("distinct")
    if distinct_node is not None and distinct_node.args.get("on") is not None:
        raise _Whole("DISTINCT ON")
    limit, offset = _limits(select)
    order_node = select.args.get("order")
    group_node = select.args.get("group")
    having_node = select.args.get("having")
    query = _Query(
        tree=select,
        outputs=[e.unalias() for e in select.expressions],
        aliases=[e.alias_or_name for e in select.expressions],
        order=list(order_node.expressions) if order_node is not None else [],
        group=[],
        having=having_node.this if having_node is not None else None,
        distinct=distinct_node is not None,
        limit=limit,
        offset=offset,
    )
    star = any(o.is_star for o in query.outputs)
    clauses: list[exp.Expr] = [*query.outputs, *(o.this for o in query.order)]
    if query.having is not None:
        clauses.append(query.having)
    _check_functions(clauses)
    aggregate = group_node is not None or query.having is not None or _has_aggregate(clauses)
    if not aggregate and not query.distinct and not query.order and limit is None and not offset:
        return Split("concat", _with_maxrec(sql, maxrec), split, None)
    if star:
        raise _Whole("a * in the select list")
    if any(a.startswith(_PREFIX) for a in query.aliases):
        raise _Whole("a result column named like the executor's own")
    aliases = _renaming_aliases(query)
    # An unqualified name may be a select-list alias (DuckDB resolves those in WHERE, GROUP BY
    # and later select items): renaming the outputs would change what it means.
    where = select.args.get("where")
    scopes: list[exp.Expr] = [*query.outputs]
    if where is not None:
        scopes.append(where.this)
    if query.having is not None:
        scopes.append(query.having)
    if group_node is not None:
        scopes.extend(group_node.expressions)
    if _unqualified_names(scopes) & aliases:
        raise _Whole("an unqualified name that may be a select-list alias")
    if aggregate:
        if group_node is not None:
            if any(group_node.args.get(k) for k in ("grouping_sets", "cube", "rollup", "all")):
                raise _Whole("GROUPING SETS, CUBE, ROLLUP or GROUP BY ALL")
            query.group = [_group_term(query, g) for g in group_node.expressions]
        return _aggregate_split(query, split)
    return _rows_split(query, split, maxrec)


def _output_index(query: _Query, term: exp.Expr) -> int | None:
    """The select item an ORDER BY term names: an ordinal or an output alias."""
    if isinstance(term, exp.Literal) and not term.is_string:
        k = _literal_int(term, "an ORDER BY position")
        if k is None or not 1 <= k <= len(query.outputs):
            raise _Whole("ORDER BY position out of range")
        return k - 1
    if isinstance(term, exp.Column) and not term.table:
        matches = [i for i, a in enumerate(query.aliases) if a.lower() == term.name.lower()]
        if matches:
            return matches[0]
    return None


def _group_term(query: _Query, term: exp.Expr) -> exp.Expr:
    """A GROUP BY term as an expression (an ordinal names a select item)."""
    if isinstance(term, (exp.Rollup, exp.Cube, exp.GroupingSets)):
        raise _Whole("GROUPING SETS, CUBE or ROLLUP")
    if isinstance(term, exp.Literal) and not term.is_string:
        k = _literal_int(term, "a GROUP BY position")
        if k is None or not 1 <= k <= len(query.outputs):
            raise _Whole("GROUP BY position out of range")
        return _strip(query.outputs[k - 1])
    if _has_aggregate([term]):
        raise _Whole("an aggregate in GROUP BY")
    return _strip(term)


def _ordered(template: exp.Ordered, this: exp.Expr) -> exp.Ordered:
    """``template`` (direction, NULLS FIRST/LAST) sorting on ``this`` instead."""
    node = template.copy()
    node.set("this", this)
    return node


def _sql(node: exp.Expr) -> str:
    return str(node.sql(dialect=_DIALECT))


def _column(name: str) -> exp.Column:
    return exp.column(name, quoted=True)


def _alias(node: exp.Expr, name: str) -> exp.Expr:
    return exp.alias_(node.copy(), name, quoted=True)


def _order_index(query: _Query, term: exp.Expr) -> int | None:
    """The select item an ORDER BY term is: ordinal, output alias or the same expression."""
    index = _output_index(query, term)
    if index is not None:
        return index
    for i, output in enumerate(query.outputs):
        if _strip(output) == _strip(term):
            return i
    return None


def _rows_split(query: _Query, split: str, maxrec: int | None) -> Split:
    columns = [f"{_PREFIX}c{i}" for i in range(len(query.outputs))]
    items = [_alias(o, c) for o, c in zip(query.outputs, columns, strict=True)]
    partial_order: list[exp.Ordered] = []
    merge_order: list[str] = []
    for ordered in query.order:
        index = _order_index(query, ordered.this)
        if index is not None:
            partial_order.append(_ordered(ordered, _column(columns[index])))
            merge_order.append(_sql(_ordered(ordered, exp.Literal.number(index + 1))))
            continue
        if query.distinct:
            raise _Whole("ORDER BY a term outside the SELECT DISTINCT list")
        if any(not c.table for c in ordered.this.find_all(exp.Column)):
            raise _Whole("an ORDER BY expression with unqualified names")
        hidden = f"{_PREFIX}o{len(items) - len(columns)}"
        items.append(_alias(ordered.this, hidden))
        partial_order.append(_ordered(ordered, _column(hidden)))
        merge_order.append(_sql(_ordered(ordered, _column(hidden))))
    # A task needs at most the first offset + limit rows (MAXREC+1 is limit enough).
    keep = query.limit
    if maxrec is not None:
        keep = maxrec + 1 if keep is None else min(keep, maxrec + 1)
    partial = query.tree.copy()
    partial.set("expressions", items)
    partial.set("offset", None)
    if keep is None:
        partial.set("limit", None)
        partial.set("order", None)  # the merge sorts; the tasks need not
    else:
        partial.set("limit", exp.Limit(expression=exp.Literal.number((query.offset or 0) + keep)))
        partial.set("order", exp.Order(expressions=partial_order) if partial_order else None)
    merge = MergeQuery(
        outputs=tuple(quote(c) for c in columns),
        distinct=query.distinct,
        order=tuple(merge_order),
        limit=query.limit,
        offset=query.offset,
    )
    return Split("rows", _sql(partial), split, merge)


@dataclass
class _Aggregates:
    """The partial columns of an aggregate query and the merge of each aggregate."""

    group_columns: tuple[str, ...]
    partial: list[tuple[str, exp.Expr]] = dataclasses.field(default_factory=list)
    windows: list[str] = dataclasses.field(default_factory=list)
    merged: list[tuple[exp.Expr, exp.Expr]] = dataclasses.field(default_factory=list)
    distinct_arg: exp.Expr | None = None

    def column(self, expression: exp.Expr) -> str:
        """The quoted name of the partial column computing ``expression`` (added once)."""
        for name, existing in self.partial:
            if existing == expression:
                return quote(name)
        name = f"{_PREFIX}a{len(self.partial)}"
        self.partial.append((name, expression))
        return quote(name)

    def merge_of(self, node: exp.AggFunc) -> exp.Expr:
        """The merge of aggregate ``node``, parenthesised, over the partial columns."""
        for original, merged in self.merged:
            if original == node:
                return merged.copy()
        merged = exp.Paren(this=sqlglot.parse_one(self._merge_sql(node), dialect=_DIALECT))
        self.merged.append((node, merged))
        return merged.copy()

    def _merge_sql(self, node: exp.AggFunc) -> str:
        this = node.this
        if isinstance(this, exp.Distinct):
            return self._distinct(node, this)
        if isinstance(node, exp.Count):
            arg = exp.Star() if this is None or isinstance(this, exp.Star) else this.copy()
            return f"COALESCE(CAST(sum({self.column(_count(arg))}) AS BIGINT), 0)"
        if node.expressions or this is None:
            raise _Whole("an aggregate with several arguments")
        if isinstance(node, exp.Sum):
            return f"sum({self.column(exp.Sum(this=this.copy()))})"
        if isinstance(node, exp.Min):
            return f"min({self.column(exp.Min(this=this.copy()))})"
        if isinstance(node, exp.Max):
            return f"max({self.column(exp.Max(this=this.copy()))})"
        n = self.column(_count(this.copy()))
        if isinstance(node, exp.Avg):
            s = self.column(exp.Sum(this=this.copy()))
            return f"CASE WHEN sum({n}) > 0 THEN CAST(sum({s}) AS DOUBLE) / sum({n}) END"
        return self._variance(node, this, n)

    def _variance(self, node: exp.AggFunc, this: exp.Expr, n: str) -> str:
        """A variance or standard deviation, merged without cancellation.

        Each task gives n, the sum and M2 = n * var_pop; the group's M2 is the sum of the
        tasks' plus n * (task mean - group mean)^2 over tasks (Chan, Golub & LeVeque), the
        group mean coming from a window over the partials.
        """
        s = self.column(exp.Sum(this=exp.Cast(this=this.copy(), to=exp.DataType.build("DOUBLE"))))
        m2 = self.column(
            exp.Mul(this=exp.VariancePop(this=this.copy()), expression=_count(this.copy()))
        )
        mean = quote(f"{_PREFIX}m{len(self.windows)}")
        over = f"PARTITION BY {', '.join(self.group_columns)}" if self.group_columns else ""
        self.windows.append(f"sum({s}) OVER ({over}) / nullif(sum({n}) OVER ({over}), 0) AS {mean}")
        dev = f"({s} / {n} - {mean})"
        m2_total = (
            f"(COALESCE(sum({m2}), 0) + "
            f"COALESCE(sum(CASE WHEN {n} > 0 THEN {n} * {dev} * {dev} END), 0))"
        )
        if isinstance(node, exp.VariancePop | exp.StddevPop):
            variance = f"CASE WHEN sum({n}) > 0 THEN {m2_total} / sum({n}) END"
        else:
            variance = f"CASE WHEN sum({n}) > 1 THEN {m2_total} / (sum({n}) - 1) END"
        if isinstance(node, exp.Stddev | exp.StddevSamp | exp.StddevPop):
            return f"sqrt({variance})"
        return variance

    def _distinct(self, node: exp.AggFunc, distinct: exp.Distinct) -> str:
        """COUNT/SUM/AVG/MIN/MAX(DISTINCT x): the tasks group on x too (column ``__sv_d``)."""
        names = {exp.Count: "count", exp.Sum: "sum", exp.Avg: "avg", exp.Min: "min", exp.Max: "max"}
        name = names.get(type(node))
        if name is None or len(distinct.expressions) != 1:
            raise _Whole("a DISTINCT aggregate other than COUNT/SUM/AVG/MIN/MAX of one value")
        arg = _strip(distinct.expressions[0])
        if self.distinct_arg is None:
            self.distinct_arg = arg
        elif self.distinct_arg != arg:
            raise _Whole("DISTINCT aggregates of different values")
        return f"{name}(DISTINCT {quote(_PREFIX + 'd')})"


def _count(arg: exp.Expr) -> exp.Count:
    return exp.Count(this=arg, big_int=True)


def _rewrite(node: exp.Expr, group: Sequence[exp.Expr], aggregates: _Aggregates) -> exp.Expr:
    """``node`` over the partial columns: group terms and aggregates replaced by merges."""

    def replace(n: exp.Expr) -> exp.Expr:
        stripped = _strip(n)
        for i, term in enumerate(group):
            if stripped == term:
                return _column(f"{_PREFIX}g{i}")
        if isinstance(n, exp.Filter):
            raise _Whole("an aggregate FILTER")
        if isinstance(n, exp.AggFunc):
            if isinstance(n.this, exp.Order):
                raise _Whole("an aggregate with ORDER BY")
            return aggregates.merge_of(n)
        if isinstance(n, (exp.Subquery, exp.Query)):
            raise _Whole("a subquery outside an aggregate")
        if isinstance(n, exp.Column):
            raise _Whole(f"the column {_sql(n)} is neither grouped nor aggregated")
        return n

    return node.copy().transform(replace, copy=False)


def _aggregate_split(query: _Query, split: str) -> Split:
    aggregates = _Aggregates(tuple(quote(f"{_PREFIX}g{i}") for i in range(len(query.group))))
    outputs = [_rewrite(o, query.group, aggregates) for o in query.outputs]
    having = None
    if query.having is not None:
        having = _rewrite(query.having, query.group, aggregates)
    order: list[str] = []
    for ordered in query.order:
        index = _order_index(query, ordered.this)
        if index is not None:
            order.append(_sql(_ordered(ordered, exp.Literal.number(index + 1))))
        elif query.distinct:
            raise _Whole("ORDER BY a term outside the SELECT DISTINCT list")
        else:
            term = _rewrite(ordered.this, query.group, aggregates)
            order.append(_sql(_ordered(ordered, term)))
    items = [_alias(g, f"{_PREFIX}g{i}") for i, g in enumerate(query.group)]
    keys = [g.copy() for g in query.group]
    if aggregates.distinct_arg is not None:
        items.append(_alias(aggregates.distinct_arg, f"{_PREFIX}d"))
        keys.append(aggregates.distinct_arg.copy())
    items.extend(_alias(e, name) for name, e in aggregates.partial)
    if not items:  # e.g. SELECT 1 ... HAVING true: one row per task is all the merge needs
        items.append(_alias(_count(exp.Star()), f"{_PREFIX}a"))
    partial = query.tree.copy()
    partial.set("expressions", items)
    partial.set("group", exp.Group(expressions=keys) if keys else None)
    for key in ("having", "order", "limit", "offset", "distinct"):
        partial.set(key, None)
    merge = MergeQuery(
        outputs=tuple(_sql(o) for o in outputs),
        distinct=query.distinct,
        group=aggregates.group_columns,
        having=_sql(having) if having is not None else None,
        order=tuple(order),
        limit=query.limit,
        offset=query.offset,
        windows=tuple(aggregates.windows),
    )
    return Split("aggregate", _sql(partial), split, merge)
