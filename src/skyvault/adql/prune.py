"""Pruning: the sky coverage of each table occurrence and the distance joins of a query.

Every SELECT of a checked query is visited (subqueries in FROM and in conditions, CTEs,
set-operation branches).  The positional constraints ANDed at the top of a WHERE clause and
of inner-join ON conditions (and the ON condition of an outer join, for its optional side)
give each table occurrence a conservative sky coverage (MOC); a distance between positions of
two FROM items bounded by a constant is a cross-match.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator

from sqlglot import exp

from skyvault.adql import nodes
from skyvault.adql.annotate import ValueInfo
from skyvault.adql.check import CheckedQuery, Source
from skyvault.adql.scope import ColumnBinding
from skyvault.catalog.metadata import TableMeta
from skyvault.sky.coverage import MOC, intersect, region_coverage
from skyvault.sky.regions import Box, Circle, Point, Polygon, RaDecRange, Region
from skyvault.sky.stcs import bounding_circle

__all__ = [
    "COVERAGE_MAX_ORDER",
    "CellPlacement",
    "DistanceJoin",
    "Position",
    "Pruner",
    "Pruning",
    "prune",
]

#: Finest HEALPix order of pruning coverages (order 18 cells are ~0.8″ across; larger
#: regions are covered at coarser orders by :func:`skyvault.sky.coverage.region_coverage`).
COVERAGE_MAX_ORDER = 18


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


# --- coverage and cross-match ---------------------------------------------------------------


@dataclasses.dataclass
class _Bounds:
    ra_min: float = 0.0
    ra_max: float = 360.0
    dec_min: float = -90.0
    dec_max: float = 90.0
    used: bool = False


@dataclasses.dataclass(frozen=True)
class Position:
    """A position of one FROM item: the RA and Dec expressions the query computes it by."""

    source: Source
    ra: exp.Expr
    dec: exp.Expr


@dataclasses.dataclass(frozen=True)
class _Join:
    """A distance join found in a condition: the comparison node (None: CONTAINS form),
    both positions and the radius."""

    node: exp.Expr | None
    left: Position
    right: Position
    radius: float


@dataclasses.dataclass(frozen=True)
class CellPlacement:
    """Where the cell-key equality of a cross-match goes: both items are FROM items of one
    SELECT (``early`` before ``late``), and the condition goes where both are first in
    scope: into the ON of ``join``, the join that brings in ``late``, or, when that join has
    no condition (a comma join), into the SELECT's WHERE (``join`` None).  Adding it earlier
    would name an item not yet joined; adding it there only drops pairs in different cells,
    which the distance predicate drops anyway."""

    select: exp.Select
    join: exp.Join | None
    early: Source
    late: Source
    optional: Source | None
    """The optional side of a LEFT/RIGHT join: the one the engine must explode (exploding
    the preserved side would repeat its unmatched rows, once per neighbouring cell)."""


@dataclasses.dataclass(frozen=True)
class DistanceJoin:
    """A cross-match: two FROM items joined on their distance, bounded by ``radius``."""

    left: Position
    right: Position
    radius: float
    cell: CellPlacement | None
    """Where the query joins the two on their cell keys; None when it cannot: the items
    are not both FROM items of one SELECT (one is inside a nested join), a FULL join
    joins them, or one of them is already in an earlier cell join (an item carries one cell
    key: that distance join stays an ordinary, correct, slower join)."""


@dataclasses.dataclass(frozen=True)
class Pruning:
    """What :func:`prune` found."""

    matches: tuple[DistanceJoin, ...]
    """Every distance join of two FROM items, wherever its SELECT is (in the order the
    SELECTs are visited: the top level first); a pair of items is listed once."""
    bands: dict[int, float]
    """Distance comparisons (by node id) known to bound a distance by a radius below 90°:
    the SQL may add a declination band as a prefilter DuckDB can prune row groups with."""
    mocs: dict[int, list[MOC]]
    bounds: dict[int, _Bounds]

    def coverage(self, occurrence: int) -> MOC | None:
        """The sky coverage of table occurrence ``occurrence`` (None: unconstrained)."""
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


def prune(checked: CheckedQuery) -> Pruning:
    """The coverages, cross-matches and distance bands of ``checked``."""
    return Pruner(checked).run()


def _ctes(tree: exp.Expr) -> Iterator[exp.CTE]:
    """Every CTE of the query (WITH at any level)."""
    yield from tree.find_all(exp.CTE)


class Pruner:
    """Finds the positional constraints of each table occurrence and distance joins.

    Every SELECT of the query is visited (subqueries in FROM and in conditions, CTEs,
    set-operation branches): a table occurrence belongs to exactly one SELECT, so a
    constraint there restricts exactly the rows that SELECT can use.  The recognisers
    (:meth:`region_condition`, :meth:`column_point`, :meth:`constant`) keep no state.
    """

    def __init__(self, checked: CheckedQuery) -> None:
        self.checked = checked
        self.mocs: dict[int, list[MOC]] = {}
        self.bounds: dict[int, _Bounds] = {}
        self.bands: dict[int, float] = {}
        self.found: list[tuple[_Join, exp.Select]] = []

    def run(self) -> Pruning:
        top = self.checked.query.tree
        for select in top.find_all(exp.Select):
            sources = self.checked.scopes.get(id(select))
            if sources is None:
                continue
            for conjunct in self.constraints(select):
                self.constraint(conjunct, sources)
                self.cross_match(self.distance_join(conjunct, sources), select)
            for join, target, optional in self.outer_joins(select):
                for conjunct in _conjuncts(join.args["on"]):
                    # Only the optional side: a row of it that fails the ON condition
                    # never joins, which is what dropping it does; a preserved row that
                    # fails it is still in the result (with NULLs), so it must stay.
                    self.constraint(conjunct, optional)
                    match = self.distance_join(conjunct, sources)
                    # A distance in the ON of the join that brings in one of the two
                    # items (the other one joined before) is a cross-match of that join.
                    if match is not None and target in (match.left.source, match.right.source):
                        left, right = match.left.source, match.right.source
                        other = right if left is target else left
                        if other in self.earlier(select, join):
                            self.cross_match(match, select)
        return Pruning(self.matches(), self.bands, self.mocs, self.bounds)

    def cross_match(self, match: _Join | None, select: exp.Select) -> None:
        if match is None:
            return
        if match.node is not None:
            self.bands[id(match.node)] = match.radius
        self.found.append((match, select))

    def matches(self) -> tuple[DistanceJoin, ...]:
        """The distance joins found, each pair once, with their cell-join placement."""
        out: list[DistanceJoin] = []
        pairs: set[frozenset[int]] = set()
        keyed: set[int] = set()  # ids of the items already in a cell join
        for match, select in self.found:
            a, b = match.left.source, match.right.source
            pair = frozenset((id(a), id(b)))
            if pair in pairs:
                continue
            pairs.add(pair)
            cell = self.placement(select, a, b)
            if cell is not None and (id(a) in keyed or id(b) in keyed):
                cell = None
            if cell is not None:
                keyed.update((id(a), id(b)))
            out.append(DistanceJoin(match.left, match.right, match.radius, cell))
        return tuple(out)

    def placement(self, select: exp.Select, a: Source, b: Source) -> CellPlacement | None:
        """Where the cell-key equality of ``a`` and ``b`` goes in ``select`` (see
        :class:`CellPlacement`), or None when it cannot go anywhere."""
        from_ = select.args.get("from_")
        joins: list[exp.Join] = list(select.args.get("joins") or [])
        items = ([from_.this] if from_ is not None else []) + [j.this for j in joins]
        # A parenthesised (nested) join is one item that is no source: never matched.
        index = {id(self.checked.sources.get(id(item))): i for i, item in enumerate(items)}
        if id(a) not in index or id(b) not in index:
            return None
        early, late = (a, b) if index[id(a)] < index[id(b)] else (b, a)
        join = joins[index[id(late)] - 1]
        if join.args.get("on") is None and not self.checked.using.get(id(join)):
            return CellPlacement(select, None, early, late, None)  # a comma join: WHERE
        side = (join.args.get("side") or "").upper()
        if side == "FULL":
            return None  # both sides preserved: neither may be exploded
        optional = late if side == "LEFT" else early if side == "RIGHT" else None
        return CellPlacement(select, join, early, late, optional)

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

    def table_column(
        self, node: exp.Expr, sources: list[Source]
    ) -> tuple[ColumnBinding, TableMeta] | None:
        """What ``node`` resolves to, and its table, when it is a column of a table
        occurrence here (not one a USING merged)."""
        node = _unparen(node)
        if not isinstance(node, exp.Column):
            return None
        binding = self.checked.bindings.get(id(node))
        if binding is None or binding.merged or binding.source not in sources:
            return None
        table = binding.source.table
        if table is None or binding.source.occurrence is None:
            return None
        return binding, table

    def position_column(self, node: exp.Expr, sources: list[Source]) -> tuple[Source, str] | None:
        """(source, "ra" | "dec") when ``node`` is a positional column of a table here."""
        found = self.table_column(node, sources)
        if found is None:
            return None
        binding, table = found
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

    def region_column(self, node: exp.Expr, sources: list[Source]) -> Source | None:
        """The source when ``node`` is a region column (``adql:REGION``) of a positional
        table here whose regions lie within its ``region_radius`` of the position."""
        found = self.table_column(node, sources)
        if found is None:
            return None
        binding, table = found
        if table.region_radius is None or not table.ra_column or not binding.column.info.region:
            return None
        return binding.source

    def region_column_condition(
        self, pred: nodes.Contains | nodes.Intersects, sources: list[Source]
    ) -> tuple[Source, Circle] | None:
        """``(source, circle)`` when ``pred`` relates a region column to a constant
        region: the rows' positions lie in the circle (the constant region's bounding
        circle widened by the table's ``region_radius``)."""
        for column, other in (pred.coordinates, reversed(pred.coordinates)):
            source = self.region_column(column, sources)
            region = self.checked.regions.get(id(_unparen(other)))
            if source is None or region is None or isinstance(region, RaDecRange):
                continue
            assert source.table is not None and source.table.region_radius is not None
            centre, radius = bounding_circle(region)
            widened = radius + source.table.region_radius
            if widened < 180.0:
                return source, Circle(centre.ra, centre.dec, widened)
        return None

    def region_condition(
        self, node: exp.Expr, sources: list[Source]
    ) -> tuple[Source, Circle | Polygon | Box] | None:
        """``(source, region)`` when ``node`` is ``CONTAINS(POINT(ra, dec), region) = 1``
        (either side, or INTERSECTS either way round) with a constant region, or relates a
        region column to a constant region (:meth:`region_column_condition`)."""
        if not isinstance(node, exp.EQ):
            return None
        for side, other in ((node.this, node.expression), (node.expression, node.this)):
            pred = _unparen(side)
            if not isinstance(pred, (nodes.Contains, nodes.Intersects)):
                continue
            if self.constant(other) != 1.0:
                return None
            by_region = self.region_column_condition(pred, sources)
            if by_region is not None:
                return by_region
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
                        self.bands[id(node)] = radius
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

    def point_of(self, node: exp.Expr, sources: list[Source]) -> Position | None:
        """``(item, ra, dec)`` when ``node`` is ``POINT(ra, dec)`` of one FROM item."""
        node = _unparen(node)
        if not isinstance(node, nodes.Point) or len(node.coordinates) != 2:
            return None
        return self.pair_of(node.coordinates[0], node.coordinates[1], sources)

    def pair_of(self, ra: exp.Expr, dec: exp.Expr, sources: list[Source]) -> Position | None:
        source = self.position_of(ra, sources)
        if source is None or self.position_of(dec, sources) is not source:
            return None
        return Position(source, ra, dec)

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
            if a is not None and b is not None and a.source is not b.source:
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
        if b is None or b.source is a.source or radius is None or not 0 <= radius <= 180:
            return None
        return _Join(None, a, b, radius)
