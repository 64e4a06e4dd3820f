"""The top-level SELECT of a translated query, taken apart for a distributed executor.

A distributed executor runs a query as many tasks, each over part of one table's files, and
merges what they return (:mod:`skyvault.engine.split`).  To write the per-task *partial*
query and the *merge* query it needs the parts of the top-level SELECT, which the
translator knows: :func:`top_select` describes them as data, each part as the DuckDB SQL
the translator writes for it —

* the select list (:class:`Item`: expression and name), DISTINCT, the FROM clause with
  WHERE, GROUP BY, HAVING, ORDER BY (:class:`OrderKey`) and LIMIT/OFFSET (ADQL's TOP/OFFSET);
* for a query that aggregates, every aggregate call (:class:`AggregateCall`: function,
  argument, DISTINCT) and each select item, HAVING and ORDER BY term written over them
  (a :data:`Template` whose :class:`Ref` pieces stand for an aggregate's merged value or a
  GROUP BY term's column);
* which table occurrences the query could be split on and, for the others, why not (the
  split table must be an item of the top-level FROM clause, on the preserved side of its
  joins); and why the query cannot be split at all (a set operation).

Nothing here parses SQL: the parts come from the emitter of :mod:`skyvault.adql.translate`
over the checked ADQL tree (the FROM clause with WHERE is the translation's text between
the select list and what follows WHERE, which the emitter wrote once already), and put back
together they are the translation's SQL exactly (:attr:`TopSelect.sql`; a query for which
that would not hold is marked as not splittable).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Literal

from sqlglot import exp

from skyvault.adql import nodes
from skyvault.adql.functions import FUNCTIONS
from skyvault.sqltext import quote_identifier

if TYPE_CHECKING:
    from skyvault.adql.check import CheckedQuery, Output
    from skyvault.adql.translate import CrossMatch, _Emitter

__all__ = ["AggregateCall", "Item", "OrderKey", "Ref", "Template", "TopSelect", "top_select"]

log = logging.getLogger(__name__)

SET_OPERATION = "not a single SELECT (a set operation)"
INSIDE = "the split table is inside a subquery, CTE or nested join"
UNDESCRIBED = "the query's SELECT could not be described"


@dataclasses.dataclass(frozen=True)
class Ref:
    """In a :data:`Template`: the merged value of aggregate ``index`` (``kind`` ``"a"``) or
    the column of GROUP BY term ``index`` (``"g"``)."""

    kind: Literal["a", "g"]
    index: int


Template = tuple[str | Ref, ...]
"""SQL in pieces: text, and references to aggregates and GROUP BY terms."""


@dataclasses.dataclass(frozen=True)
class AggregateCall:
    """An aggregate call of the select list, HAVING or ORDER BY.

    ``function`` is DuckDB's name in lower case (``count``, ``sum``, ``avg``, ``min``,
    ``max``; ``stddev``, ``var_pop``... in hand-written plans), ``argument`` the SQL of its
    argument (None: ``count(*)``).
    """

    function: str
    argument: str | None = None
    distinct: bool = False


@dataclasses.dataclass(frozen=True)
class Item:
    """One select-list item: its SQL and its name (the SQL alias, unquoted)."""

    sql: str
    name: str
    merged: Template = ()
    """For a query that aggregates: the item over aggregates and GROUP BY terms."""
    merge_reason: str = ""
    """Why it cannot be written so (then ``merged`` is empty)."""


@dataclasses.dataclass(frozen=True)
class OrderKey:
    """One ORDER BY term.

    ``output`` is the index of the select item it sorts by (it was written as an ordinal, or
    is the same expression), else None; ``sql`` its expression (None: written as an ordinal).
    """

    sql: str | None
    output: int | None
    descending: bool = False
    merged: Template = ()
    merge_reason: str = ""


@dataclasses.dataclass(frozen=True)
class TopSelect:
    """The top-level SELECT as data (see the module docstring).

    ``reason`` says why the query cannot be split at all (empty: it may be); then the other
    fields are empty.  Every SQL fragment is over the FROM clause's range variables.
    """

    reason: str = ""
    with_: str = ""
    """``WITH ...`` and a space, or empty."""
    distinct: bool = False
    items: tuple[Item, ...] = ()
    source: str = ""
    """The FROM clause without its keyword (items and joins), then `` WHERE <condition>``
    when there is one: the rows the query reads."""
    group: tuple[str, ...] = ()
    """The GROUP BY terms (an ordinal resolved to its select item's SQL)."""
    group_outputs: tuple[int | None, ...] = ()
    """For each GROUP BY term written as an ordinal, the select item's index."""
    having: str | None = None
    having_merged: Template = ()
    having_reason: str = ""
    order: tuple[OrderKey, ...] = ()
    limit: int | None = None
    offset: int | None = None
    aggregated: bool = False
    """GROUP BY, HAVING, or an aggregate in the select list, HAVING or ORDER BY."""
    aggregates: tuple[AggregateCall, ...] = ()
    functions: tuple[str, ...] = ()
    """Names of the registered functions (UDFs) the select list, ORDER BY and HAVING call."""
    tables: tuple[tuple[str, str], ...] = ()
    """``(placeholder, why not)`` of the table occurrences in the top-level FROM clause, in
    order; an empty reason: the query can be split on it."""
    crossmatches: tuple[CrossMatch, ...] = ()
    """The translation's cross-matches (the planner may join them on sky cells)."""

    def split_reason(self, placeholder: str) -> str:
        """Why the query cannot be split on ``placeholder`` (empty: it can)."""
        if self.reason:
            return self.reason
        for name, reason in self.tables:
            if name == placeholder:
                return reason
        return INSIDE

    @property
    def sql(self) -> str:
        """The SELECT put back together: the translation's SQL."""
        head = _head(
            self.with_, self.distinct, [i.sql for i in self.items], [i.name for i in self.items]
        )
        tail = _tail(
            self.group, self.group_outputs, self.having, self.order, self.limit, self.offset
        )
        return head + self.source + tail


def _head(with_: str, distinct: bool, items: Sequence[str], names: Sequence[str]) -> str:
    """``[WITH ...] SELECT [DISTINCT] items FROM `` as the translator writes it."""
    listed = ", ".join(
        f"{sql} AS {quote_identifier(name)}" for sql, name in zip(items, names, strict=True)
    )
    return f"{with_}SELECT {'DISTINCT ' if distinct else ''}{listed} FROM "


def _tail(
    group: Sequence[str],
    group_outputs: Sequence[int | None],
    having: str | None,
    order: Sequence[OrderKey],
    limit: int | None,
    offset: int | None,
) -> str:
    """`` GROUP BY ... HAVING ... ORDER BY ... LIMIT ... OFFSET ...`` as the translator writes
    them (a term written as an ordinal stays one)."""
    sql = ""
    if group:
        terms = (
            str(o + 1) if o is not None else g for g, o in zip(group, group_outputs, strict=True)
        )
        sql += " GROUP BY " + ", ".join(terms)
    if having is not None:
        sql += f" HAVING {having}"
    if order:
        keys = (
            (str(k.output + 1) if k.sql is None and k.output is not None else str(k.sql))
            + (" DESC" if k.descending else " ASC")
            for k in order
        )
        sql += " ORDER BY " + ", ".join(keys)
    if limit is not None:
        sql += f" LIMIT {limit}"
    if offset is not None:
        sql += f" OFFSET {offset}"
    return sql


def _unparen(node: exp.Expr) -> exp.Expr:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


# Template references travel through the emitter's SQL as private-use characters.
_OPEN, _CLOSE = "\ue000", "\ue001"
_REF = re.compile(f"{_OPEN}([ag])([0-9]+){_CLOSE}")


def _ref(kind: str, index: int) -> str:
    return f"{_OPEN}{kind}{index}{_CLOSE}"


def _template(sql: str) -> Template:
    pieces: list[str | Ref] = []
    at = 0
    for match in _REF.finditer(sql):
        if match.start() > at:
            pieces.append(sql[at : match.start()])
        pieces.append(Ref("a" if match.group(1) == "a" else "g", int(match.group(2))))
        at = match.end()
    if at < len(sql):
        pieces.append(sql[at:])
    return tuple(pieces)


def top_select(
    checked: CheckedQuery,
    emitter: _Emitter,
    sql: str,
    crossmatches: Sequence[CrossMatch] = (),
) -> TopSelect:
    """Describe the top-level SELECT of ``checked``, which ``emitter`` translated to ``sql``.

    Never fails: a query it cannot describe is one that cannot be split (``reason``).
    """
    try:
        return _Describer(checked, emitter).describe(sql, tuple(crossmatches))
    except Exception:  # a form not foreseen: the query runs whole, never wrongly split
        log.exception("the top-level SELECT could not be described")
        return TopSelect(reason=UNDESCRIBED)
    finally:
        emitter.replace = None
        emitter.aggregate_call = None


def _clause_nodes(node: exp.Expr) -> Iterator[exp.Expr]:
    """``node`` and its descendants, not descending into subqueries."""
    yield node
    for child in node.iter_expressions():
        if isinstance(child, (exp.Subquery, exp.Query)):
            yield child
            continue
        yield from _clause_nodes(child)


_AGGREGATES = (exp.Count, exp.Sum, exp.Avg, exp.Min, exp.Max)


def _is_aggregate(node: exp.Expr) -> bool:
    if isinstance(node, _AGGREGATES):
        return True
    if isinstance(node, nodes.UdfCall):
        spec = FUNCTIONS.get(str(node.this).upper())
        return spec is not None and spec.is_aggregate
    return False


class _Describer:
    def __init__(self, checked: CheckedQuery, emitter: _Emitter) -> None:
        self.checked = checked
        self.emitter = emitter
        self.aggregates: list[AggregateCall] = []
        self.group: dict[str, int] = {}
        #: The node types of the GROUP BY terms (others need not be compared with them).
        self.group_types: set[type[exp.Expr]] = set()
        #: Whether the select list, HAVING or ORDER BY hold a subquery.
        self.subqueries = False

    def describe(self, sql: str, crossmatches: tuple[CrossMatch, ...]) -> TopSelect:
        tree = self.checked.query.tree
        while isinstance(tree, exp.Subquery):
            tree = tree.this
        if not isinstance(tree, exp.Select):
            return TopSelect(reason=SET_OPERATION)
        if _REF.search(sql):  # a string or a name that reads like a template reference
            return TopSelect(reason="a text the distributed executor uses for itself")
        emitter = self.emitter
        checked = self.checked
        outputs = checked.outputs[id(tree)]
        items = [emitter.item(o) for o in outputs]
        bare: list[str] = []  # the items without enclosing parentheses, when needed

        def bare_items() -> list[str]:
            if not bare:
                bare.extend(
                    sql if o.node is None or o.info.geometry is not None else self.bare(o.node)
                    for o, sql in zip(outputs, items, strict=True)
                )
            return bare

        group: list[str] = []
        group_keys: list[str] = []
        group_outputs: list[int | None] = []
        group_node = tree.args.get("group")
        for term in group_node.expressions if group_node is not None else []:
            ordinal = checked.ordinals.get(id(term))
            group_outputs.append(None if ordinal is None else ordinal - 1)
            if ordinal is not None:
                group.append(items[ordinal - 1])
                group_keys.append(bare_items()[ordinal - 1])
                node = outputs[ordinal - 1].node
                self.group_types.add(exp.Column if node is None else type(_unparen(node)))
            else:
                group.append(emitter.value(term))
                group_keys.append(self.bare(term))
                self.group_types.add(type(_unparen(term)))
        having_node = tree.args.get("having")
        having = emitter.cond(having_node.this) if having_node is not None else None
        order: list[OrderKey] = []
        order_nodes: list[exp.Expr | None] = []
        order_node = tree.args.get("order")
        for term in order_node.expressions if order_node is not None else []:
            descending = bool(term.args.get("desc"))
            ordinal = checked.ordinals.get(id(term))
            if ordinal is not None:
                order.append(OrderKey(None, ordinal - 1, descending))
                order_nodes.append(None)
                continue
            key = self.bare(term.this)
            index = bare_items().index(key) if key in bare_items() else None
            order.append(OrderKey(emitter.value(term.this), index, descending))
            order_nodes.append(term.this)
        clauses: list[exp.Expr] = [o.node for o in outputs if o.node is not None]
        clauses += [node for node in order_nodes if node is not None]
        if having_node is not None:
            clauses.append(having_node.this)
        aggregated = group_node is not None or having_node is not None
        functions: dict[str, None] = {}
        for clause in clauses:
            for n in _clause_nodes(clause):
                aggregated = aggregated or _is_aggregate(n)
                if isinstance(n, nodes.UdfCall):
                    functions[FUNCTIONS[str(n.this).upper()].name] = None
                elif isinstance(n, (exp.Subquery, exp.Query)):
                    self.subqueries = True
        distinct = tree.args.get("distinct") is not None
        limit, offset = self.integer(tree, "limit"), self.integer(tree, "offset")
        with_ = emitter.with_clause() if tree.args.get("with_") is not None else ""
        # The FROM clause and WHERE are the translation's SQL between the select list and
        # what follows them (not written twice: they are most of the work).
        head = _head(with_, distinct, items, [o.sql for o in outputs])
        tail = _tail(group, group_outputs, having, order, limit, offset)
        if len(head) + len(tail) > len(sql) or not (sql.startswith(head) and sql.endswith(tail)):
            return TopSelect(reason=UNDESCRIBED)
        merged_items = [Item(sql, o.sql) for sql, o in zip(items, outputs, strict=True)]
        having_merged: Template = ()
        having_reason = ""
        if aggregated:
            self.group = {g: i for i, g in reversed(list(enumerate(group_keys)))}
            for i, output in enumerate(outputs):
                if output.node is None:
                    merged, reason = self.merged(None, items[i])
                else:
                    merged, reason = self.merged(output.node, None, output=output)
                merged_items[i] = Item(items[i], output.sql, merged, reason)
            if having_node is not None:
                having_merged, having_reason = self.merged(having_node.this, None, condition=True)
            for i, node in enumerate(order_nodes):
                if node is not None:
                    merged, reason = self.merged(node, None)
                    order[i] = dataclasses.replace(order[i], merged=merged, merge_reason=reason)
        return TopSelect(
            with_=with_,
            distinct=distinct,
            items=tuple(merged_items),
            source=sql[len(head) : len(sql) - len(tail)],
            group=tuple(group),
            group_outputs=tuple(group_outputs),
            having=having,
            having_merged=having_merged,
            having_reason=having_reason,
            order=tuple(order),
            limit=limit,
            offset=offset,
            aggregated=aggregated,
            aggregates=tuple(self.aggregates),
            functions=tuple(functions),
            tables=tuple(self.tables(tree)),
            crossmatches=crossmatches,
        )

    def bare(self, node: exp.Expr) -> str:
        """The SQL of ``node`` without its enclosing parentheses."""
        return self.emitter.value(_unparen(node))

    @staticmethod
    def integer(tree: exp.Select, key: str) -> int | None:
        node = tree.args.get(key)
        return None if node is None else int(str(node.expression.this))

    def tables(self, tree: exp.Select) -> Iterator[tuple[str, str]]:
        """The top-level FROM clause's table occurrences and why each cannot be split on."""
        joins: list[exp.Join] = list(tree.args.get("joins") or [])
        items = [tree.args["from_"].this, *(j.this for j in joins)]
        for item in items:
            source = self.checked.sources.get(id(item))
            if not isinstance(item, exp.Table) or source is None or source.occurrence is None:
                continue
            reason = ""
            if item.args.get("joins"):
                reason = "the split table has table modifiers"
            else:
                for join in joins:
                    side = str(join.args.get("side") or "").upper()
                    if side in ("RIGHT", "FULL"):
                        reason = f"a {side} join"
                        break
                    if side == "LEFT" and join.this is item:
                        reason = "the split table is the optional side of a LEFT join"
                        break
            yield source.relation, reason

    # --- the parts over aggregates ----------------------------------------------------------

    def merged(
        self,
        node: exp.Expr | None,
        sql: str | None,
        *,
        output: Output | None = None,
        condition: bool = False,
    ) -> tuple[Template, str]:
        """``node`` (or the plain SQL ``sql`` of a ``*`` item) over aggregates and GROUP BY
        terms, or why it cannot be written so."""
        reasons: list[str] = []
        emitter = self.emitter
        if node is None:
            assert sql is not None
            index = self.group.get(sql)
            if index is not None:
                return (Ref("g", index),), ""
            return (), f"the column {sql} is neither grouped nor aggregated"
        if self.subqueries:
            for n in _clause_nodes(node):
                if isinstance(n, (exp.Subquery, exp.Query)) and not self.in_aggregate(node, n):
                    return (), "a subquery outside an aggregate"
        emitter.replace = self.replacer(reasons)
        try:
            if output is not None:
                text = emitter.item(output)
            elif condition:
                text = emitter.cond(node)
            else:
                text = emitter.value(node)
        finally:
            emitter.replace = None
        if reasons:
            return (), reasons[0]
        return _template(text), ""

    @staticmethod
    def in_aggregate(root: exp.Expr, node: exp.Expr) -> bool:
        parent = node.parent
        while parent is not None and parent is not root.parent:
            if _is_aggregate(parent):
                return True
            parent = parent.parent
        return False

    def replacer(self, reasons: list[str]) -> Callable[[exp.Expr], str | None]:
        emitter = self.emitter

        def plain(node: exp.Expr) -> str:
            saved = emitter.replace
            emitter.replace = None
            try:
                return emitter.value(node)
            finally:
                emitter.replace = saved

        def replace(node: exp.Expr) -> str | None:
            if _is_aggregate(node):
                saved = emitter.replace
                emitter.replace = None
                emitter.aggregate_call = self.call
                try:
                    return emitter.value(node)
                finally:
                    emitter.replace = saved
                    emitter.aggregate_call = None
            bare = _unparen(node)
            if not isinstance(bare, exp.Column) and type(bare) not in self.group_types:
                return None  # cannot be a GROUP BY term: its own SQL, its parts replaced
            text = plain(bare)
            index = self.group.get(text)
            if index is not None:
                return _ref("g", index)
            if isinstance(node, exp.Column):
                reasons.append(f"the column {text} is neither grouped nor aggregated")
                return text
            return None

        return replace

    def call(self, node: exp.Expr, function: str, distinct: bool, argument: str | None) -> str:
        """An aggregate call, as a reference to its (deduplicated) :class:`AggregateCall`."""
        call = AggregateCall(function, argument, distinct)
        if call not in self.aggregates:
            self.aggregates.append(call)
        return _ref("a", self.aggregates.index(call))
