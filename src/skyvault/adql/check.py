"""``check(query, tables)``: resolve every name of a parsed query and type every expression.

The checker walks the validated tree once, query level by query level, with a chain of
scopes (a scope is the FROM clause of one SELECT; correlated subqueries see the enclosing
ones).  It resolves schemas, tables, common table expressions, range variables and columns
with ADQL's identifier rules (:func:`~skyvault.adql.identifier_matches`), expands ``*``,
names the output columns, and gives every value a :class:`~skyvault.adql.annotate.ValueInfo`
(DuckDB type, unit, UCD ...).  Every problem is an :class:`~skyvault.errors.AdqlSemanticError`
(or :class:`~skyvault.errors.UnsupportedQuery`) with the line and column of the offending
name and, for unknown names, the closest known one.

It also checks what DuckDB would otherwise refuse only while running: operand types, GROUP BY
rules (a selected column must be grouped or aggregated), aggregates in WHERE, column counts
of set operations, so that a query that passes the checker translates to SQL DuckDB accepts.

The result, :class:`CheckedQuery`, keeps the tree untouched and holds the annotations in
dictionaries keyed by node identity; :mod:`skyvault.adql.translate` reads them.  A table the
caller may not see is absent from ``tables`` and is reported exactly like one that does not
exist.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence

from sqlglot import exp

from skyvault.adql import nodes, typing_rules
from skyvault.adql.annotate import ValueInfo, common_type, result_column, unit_product
from skyvault.adql.functions import spec_of
from skyvault.adql.parsing import AdqlQuery
from skyvault.adql.reserved import identifier_matches
from skyvault.adql.scope import (
    CheckedQuery,
    ColumnBinding,
    Cte,
    Output,
    Scope,
    Source,
    SourceColumn,
    is_hidden_column,
    table_columns,
)
from skyvault.adql.suggest import column_suggestions, did_you_mean, suggestion_text
from skyvault.adql.validate import SourceText, shown
from skyvault.catalog.metadata import TableMeta
from skyvault.errors import AdqlSemanticError, UnsupportedQuery

__all__ = [
    "CheckedQuery",
    "ColumnBinding",
    "Output",
    "Source",
    "SourceColumn",
    "check",
    "is_hidden_column",
]

_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)
_SET_OPERATIONS = (exp.Union, exp.Intersect, exp.Except)
_MAX_INT32 = 2**31 - 1
_MAX_INT64 = 2**63 - 1


#: Where a delimited identifier stands for a value: a string written in double quotes.
_VALUE_PLACES = (*_COMPARISONS, exp.Like, exp.ILike, exp.In, exp.Between, exp.If, exp.DPipe)


@dataclasses.dataclass
class _Unknown:
    """An unknown name met while checking: reported together with every other one."""

    node: exp.Expr
    name: str
    where: str
    what: str  # "column" or "table"
    suggestion: str = ""
    hint: str | None = None
    detail: str = ""  # what is wrong, when not 'no <what> "<name>" in <where>'


def _fingerprint(node: exp.Expr, checked: CheckedQuery) -> object:
    """A structural key of an expression, with columns identified by what they resolve to."""
    if isinstance(node, exp.Column):
        binding = checked.bindings.get(id(node))
        if binding is not None:
            return ("col", id(binding.source), binding.column.sql)
    if isinstance(node, exp.Paren):
        return _fingerprint(node.this, checked)
    if isinstance(node, exp.Identifier):
        return ("id", node.this, bool(node.args.get("quoted")))
    parts: list[object] = [type(node).__name__]
    for key, value in sorted(node.args.items()):
        if isinstance(value, exp.Expr):
            parts.append((key, _fingerprint(value, checked)))
        elif isinstance(value, list):
            parts.append(
                (key, tuple(_fingerprint(v, checked) for v in value if isinstance(v, exp.Expr)))
            )
        elif value is not None:
            parts.append((key, str(value)))
    return tuple(parts)


class _Checker:
    def __init__(self, query: AdqlQuery, tables: Sequence[TableMeta]) -> None:
        self.source = SourceText(query.text)
        self.checked = CheckedQuery(query, tuple(tables))
        self.ctes: list[Cte] = []
        self.n_sources = 0
        self.unknown: list[_Unknown] = []
        #: ``id`` of the value infos standing in for unknown columns.
        self.stand_ins: set[int] = set()

    # --- errors ---------------------------------------------------------------------------

    def _where(self, node: exp.Expr | None) -> tuple[int, int]:
        return self.source.locate(node)

    def fail(self, node: exp.Expr | None, message: str, hint: str | None = None) -> Exception:
        line, column = self._where(node)
        return AdqlSemanticError(message, line=line, column=column, hint=hint)

    def unsupported(
        self, node: exp.Expr | None, message: str, hint: str | None = None
    ) -> Exception:
        line, column = self._where(node)
        return UnsupportedQuery(message, line=line, column=column, hint=hint)

    def text(self, node: exp.Expr) -> str:
        return self.source.snippet(node)

    # --- queries --------------------------------------------------------------------------

    def run(self) -> CheckedQuery:
        tree = self.checked.query.tree
        self.unknown_tables(tree)
        try:
            outputs = self.query(tree, None, root=True)
        except (AdqlSemanticError, UnsupportedQuery):
            # An unknown name's stand-in (a NULL) can upset a later check: the unknown names
            # are the error the user has to fix first.
            if self.unknown:
                raise self.unknown_error() from None
            raise
        if self.unknown:
            raise self.unknown_error()
        names = self.unique_names([o.name for o in outputs])
        self.checked.columns = tuple(
            result_column(name, o.info) for name, o in zip(names, outputs, strict=True)
        )
        return self.checked

    def unknown_tables(self, tree: exp.Expr) -> None:
        """Refuse a query naming several unknown tables with one error naming them all (one
        is reported where the walk meets it, as before)."""
        ctes = [cte.args["alias"].this for cte in tree.find_all(exp.CTE)]
        for table in tree.find_all(exp.Table):
            name, schema = table.this, table.args.get("db")
            if not isinstance(name, exp.Identifier) or table.args.get("catalog") is not None:
                continue
            if schema is None and any(
                identifier_matches(name, c.this)
                or (
                    not name.args.get("quoted")
                    and not c.args.get("quoted")
                    and str(name.this).upper() == str(c.this).upper()
                )
                for c in ctes
            ):
                continue
            try:
                self.find_table(name, schema)
            except AdqlSemanticError as error:
                if not error.detail.startswith(("no table ", "no schema ")):
                    continue
                detail, _, suggestion = error.detail.partition("; ")
                written = ".".join(str(p.this) for p in (schema, name) if p is not None)
                at = schema if detail.startswith("no schema ") and schema is not None else name
                self.unknown.append(
                    _Unknown(at, written, "", "table", suggestion, error.hint, detail=detail)
                )
        if len(self.unknown) > 1:
            raise self.unknown_error()
        self.unknown.clear()

    @staticmethod
    def unique_names(names: list[str]) -> list[str]:
        """Names made unique case-insensitively with ``_2``, ``_3`` ... suffixes."""
        taken = {n.lower() for n in names}
        seen: set[str] = set()
        out = []
        for name in names:
            candidate, k = name, 1
            while candidate.lower() in seen:
                k += 1
                candidate = f"{name}_{k}"
                if candidate.lower() in taken and candidate.lower() not in seen:
                    continue
            seen.add(candidate.lower())
            out.append(candidate)
        return out

    def query(self, node: exp.Expr, parent: Scope | None, *, root: bool = False) -> list[Output]:
        with_ = node.args.get("with_")
        if with_ is not None:
            for cte in with_.expressions:
                alias = cte.args["alias"].this
                if any(identifier_matches(alias, c.name.this) for c in self.ctes):
                    raise self.fail(
                        alias, f'the WITH query "{shown(str(alias.this))}" is defined twice'
                    )
                outputs = self.query(cte.this, None)
                sql_name = f"__sv_cte{len(self.ctes)}"
                self.checked.cte_names[id(cte)] = sql_name
                self.ctes.append(Cte(alias, sql_name, outputs))
        if isinstance(node, _SET_OPERATIONS):
            outputs = self.set_operation(node, parent)
        elif isinstance(node, exp.Select):
            outputs = self.select(node, parent)
        elif isinstance(node, exp.Subquery):
            outputs = self.query(node.this, parent)
        else:  # pragma: no cover - the validator lets nothing else through
            raise self.fail(node, "expected a query")
        self.checked.outputs[id(node)] = outputs
        return outputs

    def set_operation(self, node: exp.Expr, parent: Scope | None) -> list[Output]:
        left = self.query(node.this, parent)
        right = self.query(node.expression, parent)
        word = type(node).__name__.upper()
        if len(left) != len(right):
            raise self.fail(
                node.expression,
                f"the queries of a {word} must give the same number of columns: "
                f"{len(left)} and {len(right)}",
            )
        outputs = []
        for i, (a, b) in enumerate(zip(left, right, strict=True)):
            common = common_type([a.info.duck, b.info.duck])
            if common is None or a.info.geometry or b.info.geometry:
                raise self.fail(
                    node.expression,
                    f"column {i + 1} of the {word} has incompatible types: "
                    f"{a.info.kind} and {b.info.kind}",
                )
            info = a.info if common == a.info.duck else a.info.plain(common)
            outputs.append(Output(a.name, a.sql, info))
        self.order_by(node, Scope(parent), outputs, grouped=False)
        return outputs

    def select(self, node: exp.Select, parent: Scope | None) -> list[Output]:
        scope = Scope(parent)
        self.from_clause(node, scope)
        self.checked.scopes[id(node)] = scope.sources
        where = node.args.get("where")
        if where is not None:
            self.condition(where.this, scope)
        scope.aggregates_allowed = "the select list"
        outputs = self.select_list(node, scope)
        scope.aggregates_allowed = None
        group = node.args.get("group")
        keys: set[object] = set()
        if group is not None:
            for term in group.expressions:
                keys.add(self.group_term(term, scope, outputs))
        having = node.args.get("having")
        scope.aggregates_allowed = "HAVING"
        if having is not None:
            self.condition(having.this, scope)
        grouped = group is not None or any(o.info.aggregate for o in outputs)
        if having is not None:
            grouped = True
        scope.aggregates_allowed = "ORDER BY" if grouped else None
        self.order_by(node, scope, outputs, grouped=grouped)
        if grouped:
            self.check_grouping(node, scope, outputs, keys)
        return outputs

    # --- FROM -----------------------------------------------------------------------------

    def from_clause(self, node: exp.Select, scope: Scope) -> None:
        self.from_item(node.args["from_"].this, scope)
        for join in node.args.get("joins") or []:
            self.join(join, scope)

    def new_alias(self) -> str:
        alias = f"s{self.n_sources}"
        self.n_sources += 1
        return alias

    def add_source(self, node: exp.Expr, source: Source, scope: Scope) -> None:
        label_of = self.source_label
        for other in scope.sources:
            if label_of(other).upper() == label_of(source).upper() and (
                other.user_alias is not None or source.user_alias is not None
            ):
                alias = node.args.get("alias")
                raise self.fail(
                    alias if alias is not None else node,
                    f'the name "{shown(label_of(source))}" is used twice in FROM',
                    hint="give each table its own alias",
                )
        scope.sources.append(source)
        self.checked.sources[id(node)] = source

    @staticmethod
    def source_label(source: Source) -> str:
        if source.user_alias is not None:
            return str(source.user_alias.this)
        if source.table is not None:
            return source.table.qualified_name
        return source.label

    def from_item(self, node: exp.Expr, scope: Scope) -> None:
        if isinstance(node, exp.Table):
            self.table(node, scope)
            for join in node.args.get("joins") or []:
                self.join(join, scope)
        elif isinstance(node, exp.Subquery):
            inner = node.this
            if isinstance(inner, exp.Table) and inner.args.get("joins"):
                self.from_item(inner, scope)
                return
            outputs = self.query(inner, scope.parent)
            alias_ident = node.args["alias"].this
            sqls = self.unique_names([o.name for o in outputs])
            columns = [
                SourceColumn(o.name, sql, o.info) for o, sql in zip(outputs, sqls, strict=True)
            ]
            for o, sql in zip(outputs, sqls, strict=True):
                o.sql = sql
            source = Source(self.new_alias(), columns, user_alias=alias_ident)
            self.add_source(node, source, scope)
        else:  # pragma: no cover - the validator lets nothing else through
            raise self.fail(node, "unexpected item in FROM")

    def table(self, node: exp.Table, scope: Scope) -> None:
        name = node.this
        schema = node.args.get("db")
        catalog = node.args.get("catalog")
        alias = node.args.get("alias")
        user_alias = alias.this if alias is not None else None
        if catalog is not None:
            raise self.fail(
                catalog, f'no catalogue "{shown(str(catalog.this))}": write schema.table'
            )
        if schema is None:
            for cte in reversed(self.ctes):
                if identifier_matches(name, cte.name.this) or (
                    not name.args.get("quoted")
                    and not cte.name.args.get("quoted")
                    and str(name.this).upper() == str(cte.name.this).upper()
                ):
                    columns = [SourceColumn(o.name, o.sql, o.info) for o in cte.outputs]
                    source = Source(
                        self.new_alias(),
                        columns,
                        relation=cte.sql,
                        user_alias=user_alias,
                        label=str(cte.name.this),
                    )
                    self.add_source(node, source, scope)
                    return
        meta = self.find_table(name, schema)
        occurrence = len(self.checked.occurrences)
        stored, by_name = table_columns(meta)
        source = Source(
            self.new_alias(),
            list(stored),
            table=meta,
            occurrence=occurrence,
            relation=f"__sv_t{occurrence}",
            user_alias=user_alias,
            label=meta.name,
            _by_name=by_name,
        )
        self.checked.occurrences.append(source)
        self.add_source(node, source, scope)

    def find_table(self, name: exp.Identifier, schema: exp.Identifier | None) -> TableMeta:
        tables = self.checked.tables
        if schema is not None:
            in_schema = [t for t in tables if identifier_matches(schema, t.schema)]
            if not in_schema:
                schemas = sorted({t.schema for t in tables})
                raise self.fail(
                    schema,
                    f'no schema "{shown(str(schema.this))}"' + did_you_mean(schema.this, schemas),
                )
            found = [t for t in in_schema if identifier_matches(name, t.name)]
            if not found:
                names = [t.name for t in in_schema]
                raise self.fail(
                    name,
                    f'no table "{shown(str(name.this))}" in {in_schema[0].schema}'
                    + did_you_mean(name.this, names),
                )
        else:
            found = [t for t in tables if identifier_matches(name, t.name)]
            if not found:
                names = [t.name for t in tables] + [t.qualified_name for t in tables]
                raise self.fail(
                    name,
                    f'no table "{shown(str(name.this))}"' + did_you_mean(name.this, names),
                    hint="qualify table names with their schema: schema.table",
                )
        if len(found) > 1:
            where = ", ".join(sorted(t.qualified_name for t in found))
            raise self.fail(
                name,
                f'the table name "{shown(str(name.this))}" is ambiguous: {where}',
                hint="qualify it with its schema",
            )
        return found[0]

    def join(self, node: exp.Join, scope: Scope) -> None:
        before = list(scope.sources)
        self.from_item(node.this, scope)
        added = scope.sources[len(before) :]
        side = (node.args.get("side") or "").upper()
        on, using = node.args.get("on"), node.args.get("using")
        natural = (node.args.get("method") or "").upper() == "NATURAL"
        if side and on is None and not using and not natural:
            raise self.fail(node, f"a {side} JOIN needs ON or USING")
        names: list[str] = []
        if natural:
            left_names = {c.name.upper() for s in before for c in s.columns}
            names = [c.name for s in added for c in s.columns if c.name.upper() in left_names]
            if not names:
                raise self.fail(node, "the NATURAL JOIN has no column name in common")
        elif using:
            names = []
            for ident in using:
                names.append(self.using_column(ident, before, added))
        pairs = []
        for name in names:
            left = self.find_in(before, name)
            right = self.find_in(added, name)
            kinds = {left.column.info.kind, right.column.info.kind}
            if len(kinds) > 1 and not ({"numeric", "boolean"} >= kinds) and "null" not in kinds:
                raise self.fail(
                    node, f'the USING column "{shown(name)}" has different types on each side'
                )
            pairs.append((left, right))
            merged = (right,) if side in ("RIGHT", "FULL") else ()
            scope.merged[name.upper()] = ColumnBinding(left.source, left.column, merged)
        if pairs:
            self.checked.using[id(node)] = pairs
        if on is not None:
            self.condition(on, scope)

    def using_column(self, ident: exp.Identifier, before: list[Source], added: list[Source]) -> str:
        for side in (before, added):
            hits = [c for s in side for c in s.columns if identifier_matches(ident, c.name)]
            if not hits:
                candidates = [c.name for s in side for c in s.columns]
                raise self.fail(
                    ident,
                    f'no column "{shown(str(ident.this))}" on both sides of the join'
                    + did_you_mean(ident.this, candidates),
                )
            if len(hits) > 1:
                raise self.fail(ident, f'the USING column "{shown(str(ident.this))}" is ambiguous')
        hits = [c for s in added for c in s.columns if identifier_matches(ident, c.name)]
        return hits[0].name

    @staticmethod
    def find_in(sources: list[Source], name: str) -> ColumnBinding:
        for s in sources:
            for c in s.columns:
                if c.name.upper() == name.upper():
                    return ColumnBinding(s, c)
        raise KeyError(name)  # pragma: no cover - names come from these sources

    # --- select list, GROUP BY, ORDER BY --------------------------------------------------

    def select_list(self, node: exp.Select, scope: Scope) -> list[Output]:
        if not node.expressions:
            raise self.fail(node, "the select list is empty", hint="name the columns to return")
        outputs: list[Output] = []
        for item in node.expressions:
            if isinstance(item, exp.Star):
                outputs += self.star(scope.sources, scope)
                continue
            if isinstance(item, exp.Column) and isinstance(item.this, exp.Star):
                qualifier = [
                    p for p in (item.args.get("db"), item.args.get("table")) if p is not None
                ]
                source = self.find_source(qualifier, scope, item)
                outputs += self.star([source], scope)
                continue
            value = item.this if isinstance(item, exp.Alias) else item
            info = self.value(value, scope)
            if isinstance(item, exp.Alias):
                name = str(item.args["alias"].this)
            else:
                name = self.default_name(value)
            outputs.append(Output(name, name, info, node=value))
        sqls = self.unique_names([o.name for o in outputs])
        for o, sql in zip(outputs, sqls, strict=True):
            o.sql = sql
        return outputs

    def star(self, sources: list[Source], scope: Scope) -> list[Output]:
        out = []
        for source in sources:
            for column in source.columns:
                merged = scope.merged.get(column.name.upper())
                if merged is not None:
                    if merged.source is not source:
                        continue
                    binding = merged
                else:
                    binding = ColumnBinding(source, column)
                out.append(Output(column.name, column.name, column.info, binding=binding))
        return out

    def default_name(self, value: exp.Expr) -> str:
        """Name of an unaliased select item: column name, function name, else ``expr``."""
        while isinstance(value, exp.Paren):
            value = value.this
        if isinstance(value, exp.Column):
            return self.checked.bindings[id(value)].column.name
        # A call is named after its function (CASE too); CAST, and MOD (an operator node in
        # sqlglot), have always been named "expr".
        if isinstance(value, exp.Func) and not isinstance(value, exp.Cast):
            spec = spec_of(value)
            return (spec.name if spec is not None else value.sql_name()).lower()
        return "expr"

    def group_term(self, term: exp.Expr, scope: Scope, outputs: list[Output]) -> object:
        if (
            isinstance(term, exp.Column)
            and not term.args.get("table")
            and not self.column_exists(term.this, scope)
        ):
            for i, output in enumerate(outputs):
                if output.node is not None and identifier_matches(term.this, output.name):
                    self.checked.ordinals[id(term)] = i + 1
                    return _fingerprint(output.node, self.checked)
        info = self.value(term, scope)
        if info.aggregate:
            raise self.fail(term, "GROUP BY cannot use an aggregate")
        if info.geometry:
            raise self.fail(term, "GROUP BY cannot use a geometry")
        return _fingerprint(term, self.checked)

    def column_exists(self, ident: exp.Identifier, scope: Scope) -> bool:
        return any(identifier_matches(ident, c.name) for s in scope.sources for c in s.columns)

    def order_by(
        self, node: exp.Expr, scope: Scope, outputs: list[Output], *, grouped: bool
    ) -> None:
        order = node.args.get("order")
        if order is None:
            return
        for term in order.expressions:
            value = term.this
            if isinstance(value, exp.Literal) and str(value.this).isdigit():
                position = int(str(value.this)) if str(value.this).isdigit() else 0
                if not 1 <= position <= len(outputs):
                    raise self.fail(
                        value,
                        f"ORDER BY {value.this}: the query has {len(outputs)} column(s)",
                    )
                self.checked.ordinals[id(term)] = position
                continue
            if isinstance(value, exp.Column) and not value.args.get("table"):
                hits = [i for i, o in enumerate(outputs) if identifier_matches(value.this, o.name)]
                if hits:
                    self.checked.ordinals[id(term)] = hits[0] + 1
                    continue
            if _is_constant(value):
                quoted = isinstance(value, exp.Literal) and value.is_string
                text = self.text(value)
                if isinstance(value, exp.Neg) and not text.startswith("-"):
                    text = f"-{text}"
                raise self.fail(
                    value,
                    f"ORDER BY {text} sorts by a constant, which does not order the rows",
                    hint="name a column (names are in double quotes, strings in single "
                    f'quotes: "{shown(str(value.this))}") or give its position, e.g. ORDER BY 1'
                    if quoted
                    else "name a column or an expression of columns, or give a column's "
                    "position, e.g. ORDER BY 1",
                )
            if not scope.sources:
                names = [o.name for o in outputs]
                raise self.fail(
                    value,
                    f'ORDER BY "{self.text(value)}" is not a column of the result'
                    + did_you_mean(self.text(value), names),
                )
            info = self.value(value, scope)
            if info.geometry:
                raise self.fail(value, "ORDER BY cannot sort by a geometry")

    def check_grouping(
        self, node: exp.Select, scope: Scope, outputs: list[Output], keys: set[object]
    ) -> None:
        for output in outputs:
            if output.node is not None:
                self.grouped(output.node, scope, keys)
            elif output.binding is not None:
                key = ("col", id(output.binding.source), output.binding.column.sql)
                if key not in keys:
                    raise self.fail(
                        node,
                        f'"*" selects "{shown(output.name)}", which is neither grouped nor '
                        "aggregated",
                        hint="list the grouped columns instead of *",
                    )
        having = node.args.get("having")
        if having is not None:
            self.grouped(having.this, scope, keys)
        order = node.args.get("order")
        for term in order.expressions if order is not None else []:
            if id(term) not in self.checked.ordinals:
                self.grouped(term.this, scope, keys)

    def grouped(self, node: exp.Expr, scope: Scope, keys: set[object]) -> None:
        if _fingerprint(node, self.checked) in keys:
            return
        spec = spec_of(node)
        if spec is not None and spec.is_aggregate:
            return
        if isinstance(node, exp.Column):
            binding = self.checked.bindings.get(id(node))
            if binding is not None and binding.source in scope.sources:
                raise self.fail(
                    node,
                    f'"{self.text(node)}" must be in GROUP BY or used inside an aggregate '
                    "such as COUNT, MIN, MAX",
                )
            return
        if isinstance(node, (exp.Select, exp.Subquery, *_SET_OPERATIONS)):
            for column in node.find_all(exp.Column):
                binding = self.checked.bindings.get(id(column))
                if binding is not None and binding.source in scope.sources:
                    self.grouped(column, scope, keys)
            return
        for child in node.iter_expressions():
            self.grouped(child, scope, keys)

    # --- names ----------------------------------------------------------------------------

    def find_source(self, qualifier: list[exp.Identifier], scope: Scope, node: exp.Expr) -> Source:
        current: Scope | None = scope
        while current is not None:
            hits = [s for s in current.sources if s.matches(qualifier)]
            if len(hits) > 1:
                raise self.fail(
                    qualifier[-1],
                    f'"{shown(".".join(str(q.this) for q in qualifier))}" is ambiguous: it names '
                    "more than one table in FROM",
                    hint="give the tables different aliases",
                )
            if hits:
                return hits[0]
            current = current.parent
        labels = []
        current = scope
        while current is not None:
            labels += [self.source_label(s) for s in current.sources]
            current = current.parent
        text = ".".join(str(q.this) for q in qualifier)
        aliased = [s.table.qualified_name for s in scope.sources if s.table and s.user_alias]
        hint = None
        if any(
            text.upper() == a.upper() or text.upper() == a.split(".")[1].upper() for a in aliased
        ):
            hint = "a table with an alias is referred to by its alias only"
        raise self.fail(
            qualifier[0],
            f'no table "{shown(text)}" in FROM' + did_you_mean(text, labels),
            hint=hint,
        )

    def resolve(self, node: exp.Column, scope: Scope) -> ColumnBinding:
        ident = node.this
        qualifier = [
            p
            for p in (node.args.get("catalog"), node.args.get("db"), node.args.get("table"))
            if p is not None
        ]
        if qualifier:
            try:
                source = self.find_source(qualifier, scope, node)
            except AdqlSemanticError as error:
                if not error.detail.startswith("no table "):
                    raise
                text = ".".join(str(q.this) for q in qualifier)
                suggestion = error.detail.partition("; ")[2]
                self.unknown.append(
                    _Unknown(qualifier[0], text, "FROM", "table", suggestion, error.hint)
                )
                return self.stand_in(ident)
            hits = source.columns_named(ident)
            if len(hits) > 1:
                raise self.fail(ident, f'the column name "{shown(str(ident.this))}" is ambiguous')
            if not hits:
                where = source.table.qualified_name if source.table else self.source_label(source)
                return self.unknown_column(ident, where, [c.name for c in source.columns])
            return ColumnBinding(source, hits[0])
        current: Scope | None = scope
        while current is not None:
            for name, binding in current.merged.items():
                if identifier_matches(ident, binding.column.name) or (
                    not ident.args.get("quoted") and str(ident.this).upper() == name
                ):
                    return binding
            found = [ColumnBinding(s, c) for s in current.sources for c in s.columns_named(ident)]
            if len(found) > 1:
                where = ", ".join(self.source_label(b.source) for b in found)
                raise self.fail(
                    ident,
                    f'the column name "{shown(str(ident.this))}" is ambiguous: it is in {where}',
                    hint=f"qualify it, e.g. {self.qualifier_hint(found[0].source)}."
                    + shown(str(ident.this)),
                )
            if found:
                return found[0]
            current = current.parent
        names = [c.name for s in scope.sources for c in s.columns]
        tables = [
            s.table.qualified_name if s.table else self.source_label(s) for s in scope.sources
        ]
        where = " or ".join(tables) if tables else "FROM"
        return self.unknown_column(ident, where, names)

    def unknown_column(
        self, ident: exp.Identifier, where: str, candidates: list[str]
    ) -> ColumnBinding:
        """Record an unknown column (with what it may have meant) and stand in for it."""
        name = str(ident.this)
        hint = None
        suggestions = column_suggestions(name, candidates)
        if ident.args.get("quoted") and not any(c.lower() == name.lower() for c in candidates):
            place = ident.parent.parent if isinstance(ident.parent, exp.Column) else None
            while isinstance(place, exp.Paren):
                place = place.parent
            if isinstance(place, _VALUE_PLACES) or not re.fullmatch(r"[A-Za-z]\w*", name):
                # ``band = "r"``: a string in double quotes, not a misspelt ``ra``.
                suggestions = []
                quoted = shown(name).replace("'", "''")
                hint = f"strings take single quotes: '{quoted}'; double quotes delimit names"
        self.unknown.append(
            _Unknown(ident, name, where, "column", suggestion_text(suggestions), hint)
        )
        return self.stand_in(ident)

    def stand_in(self, ident: exp.Identifier) -> ColumnBinding:
        """The binding of an unknown column: a NULL of no table, so checking goes on and
        finds the other unknown names (the query is refused at the end)."""
        info = ValueInfo("NULL")
        self.stand_ins.add(id(info))
        column = SourceColumn(str(ident.this), str(ident.this), info)
        return ColumnBinding(Source("", [column]), column)

    def unknown_error(self) -> AdqlSemanticError:
        """One error naming every unknown name (each once), at the first of them."""
        seen: dict[tuple[str, str, str], _Unknown] = {}
        for unknown in sorted(self.unknown, key=lambda u: self._where(u.node)):
            seen.setdefault((unknown.what, unknown.name, unknown.where), unknown)
        self.unknown = list(seen.values())
        first = self.unknown[0]
        line, column = self._where(first.node)
        if len(self.unknown) == 1:
            detail = first.detail or f'no {first.what} "{shown(first.name)}" in {first.where}'
            if first.suggestion:
                detail += f"; {first.suggestion}"
            return AdqlSemanticError(detail, line=line, column=column, hint=first.hint)
        kinds = {u.what for u in self.unknown}
        wheres = {u.where for u in self.unknown if not u.detail}
        noun = f"{first.what}s" if len(kinds) == 1 else "names"
        head = f"{len(self.unknown)} unknown {noun}"
        if len(wheres) == 1 and len(kinds) == 1 and not first.detail:
            head += f" in {first.where}"
        items = []
        for unknown in self.unknown:
            at_line, at_column = self._where(unknown.node)
            item = f'"{shown(unknown.name)}" (line {at_line}, column {at_column}'
            if unknown.detail:
                item += f"; {unknown.detail}"
            elif len(wheres) > 1 or len(kinds) > 1:
                item += f"; no {unknown.what} in {unknown.where}"
            for extra in (unknown.suggestion, unknown.hint):
                if extra:
                    item += f"; {extra}"
            items.append(item + ")")
        return AdqlSemanticError(f"{head}: " + ", ".join(items), line=line, column=column)

    def qualifier_hint(self, source: Source) -> str:
        if source.user_alias is not None:
            return str(source.user_alias.this)
        return source.table.qualified_name if source.table else source.label

    # --- conditions -----------------------------------------------------------------------

    def condition(self, node: exp.Expr, scope: Scope) -> None:
        if isinstance(node, (exp.And, exp.Or)):
            self.condition(node.this, scope)
            self.condition(node.expression, scope)
        elif isinstance(node, (exp.Not, exp.Paren)):
            self.condition(node.this, scope)
        elif isinstance(node, _COMPARISONS):
            a = self.value(node.this, scope)
            b = self.value(node.expression, scope)
            self.comparable(node, node.this, a, node.expression, b)
        elif isinstance(node, (exp.Like, exp.ILike)):
            word = "ILIKE" if isinstance(node, exp.ILike) else "LIKE"
            for side in (node.this, node.expression):
                info = self.value(side, scope)
                if info.kind not in ("string", "null"):
                    raise self.fail(
                        side, f"{word} compares strings; {self.text(side)} is {info.kind}"
                    )
        elif isinstance(node, exp.Between):
            a = self.value(node.this, scope)
            for key in ("low", "high"):
                b = self.value(node.args[key], scope)
                self.comparable(node, node.this, a, node.args[key], b)
        elif isinstance(node, exp.In):
            a = self.value(node.this, scope)
            query = node.args.get("query")
            if query is not None:
                inner = query.this if isinstance(query, exp.Subquery) else query
                outputs = self.query(inner, scope)
                if len(outputs) != 1:
                    raise self.fail(
                        query, f"the subquery of IN must give one column, not {len(outputs)}"
                    )
                self.comparable(node, node.this, a, query, outputs[0].info)
            else:
                for item in node.expressions:
                    self.comparable(node, node.this, a, item, self.value(item, scope))
        elif isinstance(node, exp.Exists):
            inner = node.this.this if isinstance(node.this, exp.Subquery) else node.this
            self.query(inner, scope)
        elif isinstance(node, exp.Is):
            self.value(node.this, scope)
        else:  # pragma: no cover - the validator lets nothing else through
            raise self.fail(node, "expected a condition")

    def comparable(
        self, op: exp.Expr, left: exp.Expr, a: ValueInfo, right: exp.Expr, b: ValueInfo
    ) -> None:
        kinds = {a.kind, b.kind}
        if "geometry" in kinds:
            bad = left if a.kind == "geometry" else right
            raise self.fail(
                bad,
                f"geometries cannot be compared: {self.text(bad)}",
                hint="use CONTAINS, INTERSECTS or DISTANCE",
            )
        if "null" in kinds or (a.numeric_like and b.numeric_like) or len(kinds) == 1:
            if kinds <= {"other", "null"} and "other" in kinds:
                raise self.fail(left, f"{self.text(left)} cannot be compared")
            return
        if kinds == {"timestamp", "string"}:
            literal = right if b.kind == "string" else left
            if isinstance(literal, exp.Literal) and typing_rules.is_timestamp(str(literal.this)):
                return
            raise self.fail(
                literal,
                f"{self.text(literal)} is not a timestamp",
                hint="write timestamps as 'YYYY-MM-DDThh:mm:ss'",
            )
        raise self.fail(
            right,
            f"cannot compare {a.kind} {self.text(left)} with {b.kind} {self.text(right)}",
        )

    # --- values ---------------------------------------------------------------------------

    def value(self, node: exp.Expr, scope: Scope) -> ValueInfo:
        info = self._value(node, scope)
        self.checked.info[id(node)] = info
        return info

    def numeric(self, node: exp.Expr, scope: Scope, what: str) -> ValueInfo:
        info = self.value(node, scope)
        if not info.numeric_like:
            raise self.fail(node, f"{what} needs a number; {self.text(node)} is {info.kind}")
        return info

    def string(self, node: exp.Expr, scope: Scope, what: str) -> ValueInfo:
        info = self.value(node, scope)
        if info.kind not in ("string", "null"):
            raise self.fail(node, f"{what} needs a string; {self.text(node)} is {info.kind}")
        return info

    def _value(self, node: exp.Expr, scope: Scope) -> ValueInfo:
        if isinstance(node, exp.Column):
            binding = self.resolve(node, scope)
            self.checked.bindings[id(node)] = binding
            return binding.column.info
        if isinstance(node, exp.Literal):
            return self.literal(node)
        if isinstance(node, exp.Null):
            return ValueInfo("NULL")
        if isinstance(node, exp.Paren):
            return self.value(node.this, scope)
        if isinstance(node, exp.Neg):
            inner = self.numeric(node.this, scope, "a minus sign")
            if isinstance(node.this, exp.Literal):
                return dataclasses.replace(
                    inner, constant=-inner.constant if inner.constant is not None else None
                )
            duck = "BIGINT" if inner.integral else "DOUBLE"
            constant = -inner.constant if inner.constant is not None else None
            return inner.plain(duck, constant=constant)
        if isinstance(node, (exp.Add, exp.Sub, exp.Mul, exp.Div)):
            return self.arithmetic(node, scope)
        if isinstance(node, exp.DPipe):
            a = self.string(node.this, scope, "|| (concatenation)")
            b = self.string(node.expression, scope, "|| (concatenation)")
            return ValueInfo("VARCHAR", aggregate=a.aggregate or b.aggregate)
        if isinstance(node, exp.Case):
            return self.case(node, scope)
        if isinstance(node, exp.Subquery):
            outputs = self.query(node.this, scope)
            if len(outputs) != 1:
                raise self.fail(
                    node, f"a subquery used as a value must give one column, not {len(outputs)}"
                )
            if outputs[0].info.geometry:
                raise self.unsupported(node, "a subquery cannot give a geometry value")
            return dataclasses.replace(outputs[0].info, aggregate=False, constant=None)
        spec = spec_of(node)
        if spec is None:  # pragma: no cover - the validator lets nothing else through
            raise self.fail(node, f"unexpected {self.text(node)}")
        return spec.typing_rule(self, spec, node, scope)

    def literal(self, node: exp.Literal) -> ValueInfo:
        if node.is_string:
            return ValueInfo("VARCHAR")
        text = str(node.this)
        if text.isdigit():
            number = int(text)
            if number <= _MAX_INT32:
                return ValueInfo("INTEGER", constant=float(number))
            if number <= _MAX_INT64:
                return ValueInfo("BIGINT", constant=float(number))
        value = float(text)
        if not math.isfinite(value):
            raise self.fail(node, f"the number {text} is too large")
        return ValueInfo("DOUBLE", constant=value)

    def arithmetic(self, node: exp.Expr, scope: Scope) -> ValueInfo:
        symbols: dict[type[exp.Expr], str] = {
            exp.Add: "+",
            exp.Sub: "-",
            exp.Mul: "*",
            exp.Div: "/",
        }
        symbol = symbols[type(node)]
        a = self.numeric(node.this, scope, f"'{symbol}'")
        b = self.numeric(node.expression, scope, f"'{symbol}'")
        integral = a.integral and b.integral
        duck = "BIGINT" if integral or {a.duck, b.duck} <= {"NULL"} else "DOUBLE"
        constant = None
        if a.constant is not None and b.constant is not None:
            constant = _fold(symbol, a.constant, b.constant, integral=integral)
        unit = ucd = None
        a_const, b_const = a.constant is not None, b.constant is not None
        if symbol in "+-":
            if a_const != b_const:
                keep = b if a_const else a
                unit, ucd = keep.unit, keep.ucd
            elif a.unit == b.unit:
                unit = a.unit
                if (
                    symbol == "-"
                    and a.ucd
                    and b.ucd
                    and a.ucd.split(";")[0] == "phot.mag"
                    and b.ucd.split(";")[0] == "phot.mag"
                ):
                    ucd = "phot.color"
        elif not a_const and not b_const:
            unit = unit_product(a.unit, b.unit, divide=symbol == "/")
        return ValueInfo(
            duck, unit=unit, ucd=ucd, constant=constant, aggregate=a.aggregate or b.aggregate
        )

    def case(self, node: exp.Case, scope: Scope) -> ValueInfo:
        results: list[tuple[exp.Expr, ValueInfo]] = []
        aggregate = False
        subject = node.this
        subject_info = self.value(subject, scope) if subject is not None else None
        for branch in node.args.get("ifs") or []:
            if subject_info is not None:
                when = self.value(branch.this, scope)
                self.comparable(branch, subject, subject_info, branch.this, when)
                aggregate = aggregate or when.aggregate
            else:
                self.condition(branch.this, scope)
            true = branch.args["true"]
            results.append((true, self.value(true, scope)))
        default = node.args.get("default")
        if default is not None:
            results.append((default, self.value(default, scope)))
        return typing_rules.combine(self, node, results, aggregate, "CASE")


def _is_constant(node: exp.Expr) -> bool:
    """Whether ``node`` has the same value on every row (no column, subquery, aggregate or
    random number in it)."""
    variable = (exp.Column, exp.Subquery, exp.Select, exp.Rand, nodes.UdfCall)
    for n in node.walk():
        if isinstance(n, variable):
            return False
        spec = spec_of(n)
        if spec is not None and spec.is_aggregate:
            return False
    return True


def _fold(symbol: str, a: float, b: float, *, integral: bool) -> float | None:
    if symbol == "+":
        return a + b
    if symbol == "-":
        return a - b
    if symbol == "*":
        return a * b
    if b == 0:
        return None
    if integral:
        return float(math.trunc(a / b)) if abs(a) < 2**52 else None
    return a / b


def check(query: AdqlQuery, tables: Sequence[TableMeta]) -> CheckedQuery:
    """Resolve the names of ``query`` against ``tables`` and type every expression.

    Parameters
    ----------
    query
        A parsed query (:func:`skyvault.adql.parse`).
    tables
        The tables the caller may see (after access control).  TAP_SCHEMA and TAP_UPLOAD
        tables arrive here like any other.

    Returns
    -------
    CheckedQuery
        The query with its annotations and result column metadata.

    Raises
    ------
    AdqlSemanticError
        An unknown or ambiguous name, a type error, a GROUP BY violation ...; with line,
        column and, for unknown names, the closest known name.
    UnsupportedQuery
        Valid ADQL that skyvault does not run (a coordinate system other than ICRS, REGION,
        RAND with a seed, predicates on polygons built from column values).
    """
    try:
        return _Checker(query, tables).run()
    except RecursionError:
        raise UnsupportedQuery(
            "the query is too complex: its expressions or subqueries nest too deeply",
            line=1,
            column=1,
            hint="split it into simpler queries",
        ) from None
