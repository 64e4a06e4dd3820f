"""Splitting a query plan into per-partition partial queries and one merge query.

A distributed executor runs a plan as many tasks, each over a group of the files of one
table (the *split* scan), and merges what the tasks return.  This module decides, from the
translator's description of the query's top-level SELECT (:class:`~skyvault.adql.partials.
TopSelect`, carried by the plan: its parts as DuckDB SQL fragments, its aggregate calls,
which tables it may be split on), whether that gives exactly the answer of the whole query,
and writes the two queries by putting fragments together (no SQL is parsed here):

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
* **whole** — anything else runs as one task over every file (never a wrong answer): set
  operations, the split table in a subquery or CTE or on the optional side of an outer
  join, aggregates other than the above, functions not known to be scalar in the select
  list, and plans that carry no description of their SELECT (written by hand).

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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

from skyvault.adql.partials import AggregateCall, OrderKey, Template, TopSelect
from skyvault.engine.plan import QueryPlan, Scan
from skyvault.sqltext import quote_identifier as quote
from skyvault.sqltext import with_maxrec as _with_maxrec

__all__ = [
    "PARTIALS",
    "MergeQuery",
    "Split",
    "concat_partials",
    "merge_plan",
    "split_candidates",
    "split_plan",
    "whole",
]

PARTIALS = "__sv_partials"
"""The relation the merge query reads: the task results, concatenated."""

_PREFIX = "__sv_"

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


def concat_partials(tables: Sequence[pa.Table]) -> pa.Table:
    """The task results as one table (types promoted where tasks disagree, e.g. a column
    that is NULL in one task's rows)."""
    if not tables:
        raise ValueError("no task results to merge")
    try:
        return pa.concat_tables(tables)
    except pa.ArrowInvalid:
        return pa.concat_tables(tables, promote_options="permissive")


def merge_plan(
    plan: QueryPlan,
    merge: MergeQuery,
    result_columns: Sequence[tuple[str, str]],
    partial_columns: Sequence[tuple[str, str]],
    tables: Sequence[pa.Table],
) -> QueryPlan:
    """The plan of the merge query over the task results ``tables``, given the DuckDB
    ``(name, type)`` of ``plan``'s result and of the partial columns (``DESCRIBE`` of the
    query and of the partial query).  Raises ValueError when they do not fit the merge."""
    sql = merge.sql([n for n, _ in result_columns], [t for _, t in result_columns], partial_columns)
    partials = Scan(PARTIALS, PARTIALS, (), None, False, 0, None, concat_partials(tables))
    return QueryPlan(sql, (partials,), plan.columns)


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
    top = plan.top_select
    if top is None:
        return whole(plan, "the plan does not describe its SELECT", maxrec)
    reasons = []
    for scan in candidates:
        reason = top.split_reason(scan.placeholder)
        if reason:
            reasons.append(reason)
            continue
        try:
            return _split_select(plan, top, scan.placeholder, maxrec)
        except _Whole as whole_reason:
            reasons.append(str(whole_reason))
    return whole(plan, reasons[0], maxrec)


# --- checks ---------------------------------------------------------------------------------

_MERGEABLE = frozenset(
    {"count", "sum", "min", "max", "avg", "stddev", "stddev_samp", "stddev_pop", "variance",
     "var_samp", "var_pop"}
)  # fmt: skip
_DISTINCT_MERGEABLE = frozenset({"count", "sum", "avg", "min", "max"})


def _scalar_udfs() -> frozenset[str]:
    """Names of the registered functions that are not aggregates (lower case)."""
    from skyvault.adql.functions import FUNCTIONS

    return frozenset(name.lower() for name, spec in FUNCTIONS.items() if not spec.is_aggregate)


# --- the decomposition ----------------------------------------------------------------------


def _split_select(plan: QueryPlan, top: TopSelect, split: str, maxrec: int | None) -> Split:
    scalar = _scalar_udfs()
    for name in top.functions:
        if name.lower() not in scalar:
            raise _Whole(f"the function {name} (not known to be a scalar)")
    for call in top.aggregates:
        if call.function not in _MERGEABLE:
            raise _Whole(f"the aggregate {call.function}")
    rows = top.distinct or top.order or top.limit is not None or top.offset
    if not top.aggregated and not rows:
        return Split("concat", _with_maxrec(plan.sql, maxrec), split, None)
    if any(i.name.startswith(_PREFIX) for i in top.items):
        raise _Whole("a result column named like the executor's own")
    if top.aggregated:
        kind, partial, merge = _aggregate_split(top)
    else:
        kind, partial, merge = _rows_split(top, maxrec)
    if plan.sql != top.sql:  # the SQL changed after translation: never guess
        raise _Whole("the plan's SQL is not the one its SELECT describes")
    return Split(kind, partial, split, merge)


def _body(top: TopSelect) -> str:
    """``FROM ... [WHERE ...]`` of the query."""
    return f" FROM {top.source}"


def _direction(key: OrderKey) -> str:
    return " DESC" if key.descending else " ASC"


def _rows_split(top: TopSelect, maxrec: int | None) -> tuple[Kind, str, MergeQuery]:
    columns = [f"{_PREFIX}c{i}" for i in range(len(top.items))]
    items = [f"{i.sql} AS {quote(c)}" for i, c in zip(top.items, columns, strict=True)]
    partial_order: list[str] = []
    merge_order: list[str] = []
    for key in top.order:
        if key.output is not None:
            partial_order.append(quote(columns[key.output]) + _direction(key))
            merge_order.append(f"{key.output + 1}{_direction(key)}")
            continue
        if top.distinct:
            raise _Whole("ORDER BY a term outside the SELECT DISTINCT list")
        hidden = quote(f"{_PREFIX}o{len(items) - len(columns)}")
        items.append(f"{key.sql} AS {hidden}")
        partial_order.append(hidden + _direction(key))
        merge_order.append(hidden + _direction(key))
    # A task needs at most the first offset + limit rows (MAXREC+1 is limit enough).
    keep = top.limit
    if maxrec is not None:
        keep = maxrec + 1 if keep is None else min(keep, maxrec + 1)
    distinct = "DISTINCT " if top.distinct else ""
    partial = f"{top.with_}SELECT {distinct}{', '.join(items)}{_body(top)}"
    if keep is not None:  # else the merge sorts; the tasks need not
        if partial_order:
            partial += " ORDER BY " + ", ".join(partial_order)
        partial += f" LIMIT {(top.offset or 0) + keep}"
    merge = MergeQuery(
        outputs=tuple(quote(c) for c in columns),
        distinct=top.distinct,
        order=tuple(merge_order),
        limit=top.limit,
        offset=top.offset,
    )
    return "rows", partial, merge


@dataclass
class _Aggregates:
    """The partial columns of an aggregate query and the merge of each aggregate."""

    calls: tuple[AggregateCall, ...]
    group_columns: tuple[str, ...]
    partial: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    windows: list[str] = dataclasses.field(default_factory=list)
    merged: dict[int, str] = dataclasses.field(default_factory=dict)
    distinct_arg: str | None = None

    def column(self, expression: str) -> str:
        """The quoted name of the partial column computing ``expression`` (added once)."""
        for name, existing in self.partial:
            if existing == expression:
                return quote(name)
        name = f"{_PREFIX}a{len(self.partial)}"
        self.partial.append((name, expression))
        return quote(name)

    def render(self, template: Template) -> str:
        """``template`` over the partial columns: aggregates replaced by their merges."""
        out = []
        for piece in template:
            if isinstance(piece, str):
                out.append(piece)
            elif piece.kind == "g":
                out.append(quote(f"{_PREFIX}g{piece.index}"))
            else:
                out.append(self.merge_of(piece.index))
        return "".join(out)

    def merge_of(self, index: int) -> str:
        """The merge of aggregate ``index``, parenthesised, over the partial columns."""
        merged = self.merged.get(index)
        if merged is None:
            merged = self.merged[index] = f"({self._merge_sql(self.calls[index])})"
        return merged

    def _merge_sql(self, call: AggregateCall) -> str:
        if call.distinct:
            return self._distinct(call)
        arg = call.argument
        if call.function == "count":
            return f"COALESCE(CAST(sum({self.column(_count(arg))}) AS BIGINT), 0)"
        if arg is None:
            raise _Whole("an aggregate with several arguments")
        if call.function in ("sum", "min", "max"):
            return f"{call.function}({self.column(f'{call.function}({arg})')})"
        n = self.column(_count(arg))
        if call.function == "avg":
            s = self.column(f"sum({arg})")
            return f"CASE WHEN sum({n}) > 0 THEN CAST(sum({s}) AS DOUBLE) / sum({n}) END"
        return self._variance(call.function, arg, n)

    def _variance(self, function: str, arg: str, n: str) -> str:
        """A variance or standard deviation, merged without cancellation.

        Each task gives n, the sum and M2 = n * var_pop; the group's M2 is the sum of the
        tasks' plus n * (task mean - group mean)^2 over tasks (Chan, Golub & LeVeque), the
        group mean coming from a window over the partials.
        """
        s = self.column(f"sum(CAST({arg} AS DOUBLE))")
        m2 = self.column(f"var_pop({arg}) * {_count(arg)}")
        mean = quote(f"{_PREFIX}m{len(self.windows)}")
        over = f"PARTITION BY {', '.join(self.group_columns)}" if self.group_columns else ""
        self.windows.append(f"sum({s}) OVER ({over}) / nullif(sum({n}) OVER ({over}), 0) AS {mean}")
        dev = f"({s} / {n} - {mean})"
        m2_total = (
            f"(COALESCE(sum({m2}), 0) + "
            f"COALESCE(sum(CASE WHEN {n} > 0 THEN {n} * {dev} * {dev} END), 0))"
        )
        if function in ("var_pop", "stddev_pop"):
            variance = f"CASE WHEN sum({n}) > 0 THEN {m2_total} / sum({n}) END"
        else:
            variance = f"CASE WHEN sum({n}) > 1 THEN {m2_total} / (sum({n}) - 1) END"
        if function.startswith("stddev"):
            return f"sqrt({variance})"
        return variance

    def _distinct(self, call: AggregateCall) -> str:
        """COUNT/SUM/AVG/MIN/MAX(DISTINCT x): the tasks group on x too (column ``__sv_d``)."""
        if call.function not in _DISTINCT_MERGEABLE or call.argument is None:
            raise _Whole("a DISTINCT aggregate other than COUNT/SUM/AVG/MIN/MAX of one value")
        if self.distinct_arg is None:
            self.distinct_arg = call.argument
        elif self.distinct_arg != call.argument:
            raise _Whole("DISTINCT aggregates of different values")
        return f"{call.function}(DISTINCT {quote(_PREFIX + 'd')})"


def _count(arg: str | None) -> str:
    return f"count({'*' if arg is None else arg})"


def _aggregate_split(top: TopSelect) -> tuple[Kind, str, MergeQuery]:
    aggregates = _Aggregates(
        top.aggregates, tuple(quote(f"{_PREFIX}g{i}") for i in range(len(top.group)))
    )
    outputs = []
    for item in top.items:
        if item.merge_reason:
            raise _Whole(item.merge_reason)
        outputs.append(aggregates.render(item.merged))
    having = None
    if top.having is not None:
        if top.having_reason:
            raise _Whole(top.having_reason)
        having = aggregates.render(top.having_merged)
    order: list[str] = []
    for key in top.order:
        if key.output is not None:
            order.append(f"{key.output + 1}{_direction(key)}")
        elif top.distinct:
            raise _Whole("ORDER BY a term outside the SELECT DISTINCT list")
        elif key.merge_reason:
            raise _Whole(key.merge_reason)
        else:
            order.append(aggregates.render(key.merged) + _direction(key))
    items = [f"{g} AS {quote(f'{_PREFIX}g{i}')}" for i, g in enumerate(top.group)]
    keys = list(top.group)
    if aggregates.distinct_arg is not None:
        items.append(f"{aggregates.distinct_arg} AS {quote(_PREFIX + 'd')}")
        keys.append(aggregates.distinct_arg)
    items.extend(f"{e} AS {quote(name)}" for name, e in aggregates.partial)
    if not items:  # e.g. SELECT 1 ... HAVING true: one row per task is all the merge needs
        items.append(f"count(*) AS {quote(_PREFIX + 'a')}")
    partial = f"{top.with_}SELECT {', '.join(items)}{_body(top)}"
    if keys:
        partial += " GROUP BY " + ", ".join(keys)
    merge = MergeQuery(
        outputs=tuple(outputs),
        distinct=top.distinct,
        group=aggregates.group_columns,
        having=having,
        order=tuple(order),
        limit=top.limit,
        offset=top.offset,
        windows=tuple(aggregates.windows),
    )
    return "aggregate", partial, merge
