"""Shape recognition: a query simple enough to answer without SQL (:class:`DirectSelect`).

The engine may evaluate such a query directly over the few rows the index path reads
(:mod:`skyvault.engine.direct`); the SQL stays the reference.
"""

from __future__ import annotations

import dataclasses
import math

from sqlglot import exp

from skyvault.adql import nodes
from skyvault.adql.check import CheckedQuery, Source
from skyvault.adql.prune import Pruner, _conjuncts, _unparen
from skyvault.sky.regions import Box, Circle, Point, Polygon

__all__ = ["ColumnTest", "DirectSelect", "SkyCut", "direct_select"]


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


_FLIPPED = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}


def direct_select(checked: CheckedQuery) -> DirectSelect | None:
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
    pruner = Pruner(checked)
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
    op = nodes.COMPARISONS.get(type(node))
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


def _sky_cut(node: exp.Expr, sources: list[Source], pruner: Pruner) -> SkyCut | None:
    """``node`` as a :class:`SkyCut` on the one source, or None.

    Mirrors :meth:`_Emitter.comparison`: a CONTAINS/INTERSECTS compared with 1 is the bare
    point-in-region predicate; a DISTANCE compared with a constant is that comparison.
    """
    found = pruner.region_condition(node, sources)
    if found is not None:
        if _relates_a_region_column(node, sources, pruner):
            # The circle about the rows' positions only bounds where matches can be (it
            # prunes); whether a footprint meets the region is the region function's to say.
            return None
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


def _relates_a_region_column(node: exp.Expr, sources: list[Source], pruner: Pruner) -> bool:
    """Whether ``node`` (``pred = 1``) relates a region column (``s_region``) to a region."""
    sides = (node.this, node.expression) if isinstance(node, exp.EQ) else ()
    return any(
        isinstance(pred := _unparen(side), (nodes.Contains, nodes.Intersects))
        and pruner.region_column_condition(pred, sources) is not None
        for side in sides
    )


def _position_columns(source: Source) -> tuple[str, str]:
    """The stored names of a positional source's RA and Dec columns."""
    table = source.table
    assert table is not None and table.ra_column and table.dec_column  # column_point said so
    return table.ra_column, table.dec_column
