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
import datetime as dt
import difflib
import math
import re
from collections.abc import Sequence

from sqlglot import exp

from skyvault.adql import nodes
from skyvault.adql.annotate import (
    ValueInfo,
    aggregate_info,
    column_info,
    common_type,
    convert_factor,
    result_column,
    unit_product,
)
from skyvault.adql.functions import FUNCTIONS, FunctionSpec
from skyvault.adql.parsing import AdqlQuery
from skyvault.adql.reserved import identifier_matches, normalize_identifier
from skyvault.adql.validate import SourceText, shown
from skyvault.catalog.metadata import ColumnMeta, TableMeta
from skyvault.errors import AdqlSemanticError, GeometryError, UnsupportedQuery
from skyvault.sky.coverage import HEALPIX29_ORDER
from skyvault.sky.regions import Box, Circle, Point, Polygon, Region

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
_AGGREGATES = (exp.Count, exp.Avg, exp.Min, exp.Max, exp.Sum)
_SET_OPERATIONS = (exp.Union, exp.Intersect, exp.Except)
_DOUBLE_FUNCTIONS = nodes.UNARY_MATH_NODES
#: UCDs of function results that have one.
_FUNCTION_UCDS = {
    "scisql_nanojanskyToAbMag": "phot.mag",
    "scisql_nanojanskyToAbMagSigma": "stat.error;phot.mag",
    "ivo_healpix_index": "pos.healpix",
}
_MAX_INT32 = 2**31 - 1
_MAX_INT64 = 2**63 - 1


def is_hidden_column(name: str) -> bool:
    """Whether a stored column is internal (``_healpix_29``): never listed, never reachable."""
    return name.lower().startswith("_healpix")


@dataclasses.dataclass(eq=False)
class SourceColumn:
    """One column a FROM item offers.

    Attributes
    ----------
    name
        The name ADQL refers to it by (stored name, or output name of a subquery).
    sql
        Its name in the SQL relation (unique within the relation, case-insensitively).
    info
        Type and metadata.
    """

    name: str
    sql: str
    info: ValueInfo


_TableColumns = tuple[tuple[SourceColumn, ...], dict[tuple[str, bool], list[SourceColumn]]]
_TABLE_COLUMNS: dict[int, tuple[TableMeta, _TableColumns]] = {}


def _table_columns(meta: TableMeta) -> _TableColumns:
    """The columns a stored table offers and their name index, made once per table.

    Both are shared by every query of ``meta`` (a query never changes a stored table's
    columns); building them for a wide table (a thousand columns) was most of checking a
    cone search.  Keyed by the object: a re-read table is a new :class:`TableMeta`.
    """
    cached = _TABLE_COLUMNS.get(id(meta))
    if cached is not None and cached[0] is meta:
        return cached[1]
    columns = tuple(
        SourceColumn(c.name, c.name, column_info(c))
        for c in meta.columns
        if not is_hidden_column(c.name)
    )
    index: dict[tuple[str, bool], list[SourceColumn]] = {}
    for column in columns:
        index.setdefault((column.name, True), []).append(column)
        index.setdefault((column.name.upper(), False), []).append(column)
    if len(_TABLE_COLUMNS) >= 256:
        _TABLE_COLUMNS.clear()
    _TABLE_COLUMNS[id(meta)] = (meta, (columns, index))
    return columns, index


@dataclasses.dataclass(eq=False)
class Source:
    """One item of a FROM clause: a table occurrence, a subquery or a CTE reference.

    Attributes
    ----------
    alias
        The SQL range variable the translation uses (``s0``, ``s1`` ...; unique per query).
    columns
        The columns it offers, in order (hidden columns excluded).
    table
        The stored table, for a table occurrence.
    occurrence
        Index of the table occurrence (its placeholder is ``__sv_t<occurrence>``).
    relation
        SQL relation name: the placeholder or the CTE's SQL name; empty for a subquery.
    name
        How the query may qualify its columns: alias, or table name (upper-cased or exact
        per the identifier rules are applied by :meth:`matches`).
    """

    alias: str
    columns: list[SourceColumn]
    table: TableMeta | None = None
    occurrence: int | None = None
    relation: str = ""
    user_alias: exp.Identifier | None = None
    label: str = ""
    _by_name: dict[tuple[str, bool], list[SourceColumn]] | None = dataclasses.field(
        default=None, repr=False
    )

    def columns_named(self, ident: exp.Identifier) -> list[SourceColumn]:
        """The columns ``ident`` refers to (ADQL identifier rules), from an index built on
        first use: resolving every name of a query by scanning every column of a wide
        table was a measurable share of compiling it."""
        if self._by_name is None:
            index: dict[tuple[str, bool], list[SourceColumn]] = {}
            for column in self.columns:
                index.setdefault((column.name, True), []).append(column)
                index.setdefault((column.name.upper(), False), []).append(column)
            self._by_name = index
        name = normalize_identifier(ident)
        return self._by_name.get((name.name, name.quoted), [])

    def matches(self, qualifier: list[exp.Identifier]) -> bool:
        """Whether ``qualifier`` (``[table]`` or ``[schema, table]`` ...) names this item."""
        if self.user_alias is not None or self.table is None:
            if len(qualifier) != 1:
                return False
            if self.user_alias is not None:
                ident = self.user_alias
                if ident.args.get("quoted"):
                    return bool(
                        qualifier[0].args.get("quoted") and qualifier[0].this == ident.this
                    ) or identifier_matches(qualifier[0], ident.this)
                return identifier_matches(qualifier[0], str(ident.this).upper()) or (
                    not qualifier[0].args.get("quoted")
                    and str(qualifier[0].this).upper() == str(ident.this).upper()
                )
            return identifier_matches(qualifier[0], self.label)
        parts = [self.table.name, self.table.schema]
        return len(qualifier) <= 2 and all(
            identifier_matches(q, p) for q, p in zip(reversed(qualifier), parts, strict=False)
        )


@dataclasses.dataclass(eq=False)
class ColumnBinding:
    """What a column reference resolved to; ``merged`` lists the other sides of a USING."""

    source: Source
    column: SourceColumn
    merged: tuple[ColumnBinding, ...] = ()


@dataclasses.dataclass(eq=False)
class Output:
    """One output column of a query level.

    Attributes
    ----------
    name
        The name the user sees (ADQL-visible).
    sql
        The SQL alias emitted (deduplicated case-insensitively).
    info
        Type and metadata.
    node
        The select-list expression (without its alias), or ``None`` for a ``*`` expansion.
    binding
        For a ``*`` expansion: the column it stands for.
    """

    name: str
    sql: str
    info: ValueInfo
    node: exp.Expr | None = None
    binding: ColumnBinding | None = None


@dataclasses.dataclass
class CheckedQuery:
    """A query whose names are resolved and whose values are typed.

    Attributes
    ----------
    query
        The parsed query (its tree is not modified).
    tables
        The tables the caller may see.
    occurrences
        Every table occurrence in FROM clauses (also inside subqueries and CTEs), in order.
    columns
        Result columns (item 8 metadata), names as the user sees them.
    """

    query: AdqlQuery
    tables: tuple[TableMeta, ...]
    occurrences: list[Source] = dataclasses.field(default_factory=list)
    columns: tuple[ColumnMeta, ...] = ()
    info: dict[int, ValueInfo] = dataclasses.field(default_factory=dict)
    bindings: dict[int, ColumnBinding] = dataclasses.field(default_factory=dict)
    sources: dict[int, Source] = dataclasses.field(default_factory=dict)
    outputs: dict[int, list[Output]] = dataclasses.field(default_factory=dict)
    scopes: dict[int, list[Source]] = dataclasses.field(default_factory=dict)
    ordinals: dict[int, int] = dataclasses.field(default_factory=dict)
    using: dict[int, list[tuple[ColumnBinding, ColumnBinding]]] = dataclasses.field(
        default_factory=dict
    )
    cte_names: dict[int, str] = dataclasses.field(default_factory=dict)
    regions: dict[int, Region] = dataclasses.field(default_factory=dict)
    unit_factors: dict[int, float] = dataclasses.field(default_factory=dict)

    def info_of(self, node: exp.Expr) -> ValueInfo:
        """The :class:`ValueInfo` the checker gave ``node``."""
        return self.info[id(node)]


@dataclasses.dataclass
class _Cte:
    name: exp.Identifier
    sql: str
    outputs: list[Output]


@dataclasses.dataclass
class _Scope:
    parent: _Scope | None
    sources: list[Source] = dataclasses.field(default_factory=list)
    #: Upper-cased names of USING/NATURAL columns: the bindings an unqualified name takes.
    merged: dict[str, ColumnBinding] = dataclasses.field(default_factory=dict)
    aggregates_allowed: str | None = None


def _closest(name: str, candidates: Sequence[str]) -> str | None:
    lowered = {c.lower(): c for c in candidates}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[close[0]] if close else None


def _did_you_mean(name: str, candidates: Sequence[str]) -> str:
    close = _closest(name, candidates)
    return f'; did you mean "{close}"?' if close else ""


#: ``<band>_<name>``: Rubin's per-band columns (``r_psfFlux``, ``g_cModelFluxErr``,
#: ``i_ap12Flux_flag``).
_BANDED = re.compile(r"([A-Za-z])_([A-Za-z0-9_]+)\Z")
#: Words that qualify the quantity a column name ends with (``FluxErr`` is an error of a flux).
_MODIFIERS = frozenset({"err", "sigma", "flag", "flags", "cov", "var", "chi2"})


def _family(name: str) -> tuple[str, ...] | None:
    """What a per-band column measures, with its band: ``r_calibFlux`` and ``r_cModelFlux``
    are ``("r", "flux")``, ``g_psfFluxErr`` is ``("g", "flux", "err")``."""
    banded = _BANDED.match(name)
    if banded is None:
        return None
    band, rest = banded.groups()
    head, *tail = rest.split("_")
    words = [w.lower() for w in re.findall(r"[A-Z]+[a-z0-9]*|[a-z0-9]+", head)]
    modifiers: list[str] = []
    while len(words) > 1 and words[-1] in _MODIFIERS:
        modifiers.insert(0, words.pop())
    if len(words) < 2:  # no measurement before the quantity: not a family name
        return None
    return (band.lower(), words[-1], *modifiers, *(t.lower() for t in tail))


#: Most names one suggestion lists.
_MAX_SUGGESTIONS = 6


def _suggestions(name: str, candidates: Sequence[str]) -> list[str]:
    """Column names ``name`` may have meant, best first.

    The same name in another case first; then the columns that hold the name as a word
    (``ra`` -> ``coord_ra``, not the nearer spelling ``z_ra``: the per-band columns are not
    the position a user asks for); then, for a per-band name (``r_calibFlux``), the
    columns of the same band and family (``r_psfFlux``, ``r_cModelFlux`` ...: what the user
    was after is a flux of that band, not the nearest spelling); else the nearest spelling,
    of the same band first.
    """
    same = [c for c in candidates if c.lower() == name.lower() and c != name]
    if same:
        return same[:1]
    if "_" not in name:  # ``ra`` -> ``coord_ra``: the name as a word of an unbanded name
        whole = [
            c
            for c in candidates
            if _BANDED.match(c) is None and name.lower() in c.lower().split("_")
        ]
        if whole:
            whole.sort(
                key=lambda c: -difflib.SequenceMatcher(None, name.lower(), c.lower()).ratio()
            )
            return whole[:_MAX_SUGGESTIONS]
    family = _family(name)
    if family is not None:
        kin = [c for c in candidates if _family(c) == family]
        if kin:
            kin.sort(key=lambda c: -difflib.SequenceMatcher(None, name.lower(), c.lower()).ratio())
            return kin[:_MAX_SUGGESTIONS]
    banded = _BANDED.match(name)
    if banded is not None:  # the nearest spelling of the same band before any other band's
        band = banded.group(1).lower()
        same_band = [c for c in candidates if c.lower().startswith(f"{band}_")]
        close = _closest(name, same_band)
        if close:
            return [close]
    close = _closest(name, candidates)
    return [close] if close else []


def _suggestion_text(names: list[str]) -> str:
    """``did you mean "x"?`` or ``did you mean one of "x", "y"?`` (empty without names)."""
    if not names:
        return ""
    if len(names) == 1:
        return f'did you mean "{names[0]}"?'
    return "did you mean one of " + ", ".join(f'"{n}"' for n in names) + "?"


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
        self.ctes: list[_Cte] = []
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

    def query(self, node: exp.Expr, parent: _Scope | None, *, root: bool = False) -> list[Output]:
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
                self.ctes.append(_Cte(alias, sql_name, outputs))
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

    def set_operation(self, node: exp.Expr, parent: _Scope | None) -> list[Output]:
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
        self.order_by(node, _Scope(parent), outputs, grouped=False)
        return outputs

    def select(self, node: exp.Select, parent: _Scope | None) -> list[Output]:
        scope = _Scope(parent)
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

    def from_clause(self, node: exp.Select, scope: _Scope) -> None:
        self.from_item(node.args["from_"].this, scope)
        for join in node.args.get("joins") or []:
            self.join(join, scope)

    def new_alias(self) -> str:
        alias = f"s{self.n_sources}"
        self.n_sources += 1
        return alias

    def add_source(self, node: exp.Expr, source: Source, scope: _Scope) -> None:
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

    def from_item(self, node: exp.Expr, scope: _Scope) -> None:
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

    def table(self, node: exp.Table, scope: _Scope) -> None:
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
        stored, by_name = _table_columns(meta)
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
                    f'no schema "{shown(str(schema.this))}"' + _did_you_mean(schema.this, schemas),
                )
            found = [t for t in in_schema if identifier_matches(name, t.name)]
            if not found:
                names = [t.name for t in in_schema]
                raise self.fail(
                    name,
                    f'no table "{shown(str(name.this))}" in {in_schema[0].schema}'
                    + _did_you_mean(name.this, names),
                )
        else:
            found = [t for t in tables if identifier_matches(name, t.name)]
            if not found:
                names = [t.name for t in tables] + [t.qualified_name for t in tables]
                raise self.fail(
                    name,
                    f'no table "{shown(str(name.this))}"' + _did_you_mean(name.this, names),
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

    def join(self, node: exp.Join, scope: _Scope) -> None:
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
                    + _did_you_mean(ident.this, candidates),
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

    def select_list(self, node: exp.Select, scope: _Scope) -> list[Output]:
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

    def star(self, sources: list[Source], scope: _Scope) -> list[Output]:
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
        if isinstance(value, nodes.UdfCall):
            return str(value.this).lower()
        if isinstance(value, nodes.GeometryFunction):
            return value.adql_name.lower()
        if isinstance(value, exp.Func) and not isinstance(value, exp.Cast):
            names = {exp.Ln: "log", exp.Log: "log10", exp.Ceil: "ceiling", exp.Pow: "power"}
            return names.get(type(value), value.sql_name().lower())
        return "expr"

    def group_term(self, term: exp.Expr, scope: _Scope, outputs: list[Output]) -> object:
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

    def column_exists(self, ident: exp.Identifier, scope: _Scope) -> bool:
        return any(identifier_matches(ident, c.name) for s in scope.sources for c in s.columns)

    def order_by(
        self, node: exp.Expr, scope: _Scope, outputs: list[Output], *, grouped: bool
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
                    + _did_you_mean(self.text(value), names),
                )
            info = self.value(value, scope)
            if info.geometry:
                raise self.fail(value, "ORDER BY cannot sort by a geometry")

    def check_grouping(
        self, node: exp.Select, scope: _Scope, outputs: list[Output], keys: set[object]
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

    def grouped(self, node: exp.Expr, scope: _Scope, keys: set[object]) -> None:
        if _fingerprint(node, self.checked) in keys:
            return
        if isinstance(node, _AGGREGATES) or (
            isinstance(node, nodes.UdfCall) and FUNCTIONS[str(node.this).upper()].is_aggregate
        ):
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

    def find_source(self, qualifier: list[exp.Identifier], scope: _Scope, node: exp.Expr) -> Source:
        current: _Scope | None = scope
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
            f'no table "{shown(text)}" in FROM' + _did_you_mean(text, labels),
            hint=hint,
        )

    def resolve(self, node: exp.Column, scope: _Scope) -> ColumnBinding:
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
        current: _Scope | None = scope
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
        suggestions = _suggestions(name, candidates)
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
            _Unknown(ident, name, where, "column", _suggestion_text(suggestions), hint)
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

    def condition(self, node: exp.Expr, scope: _Scope) -> None:
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
            if isinstance(literal, exp.Literal) and _parse_timestamp(str(literal.this)):
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

    def value(self, node: exp.Expr, scope: _Scope) -> ValueInfo:
        info = self._value(node, scope)
        self.checked.info[id(node)] = info
        return info

    def numeric(self, node: exp.Expr, scope: _Scope, what: str) -> ValueInfo:
        info = self.value(node, scope)
        if not info.numeric_like:
            raise self.fail(node, f"{what} needs a number; {self.text(node)} is {info.kind}")
        return info

    def string(self, node: exp.Expr, scope: _Scope, what: str) -> ValueInfo:
        info = self.value(node, scope)
        if info.kind not in ("string", "null"):
            raise self.fail(node, f"{what} needs a string; {self.text(node)} is {info.kind}")
        return info

    def _value(self, node: exp.Expr, scope: _Scope) -> ValueInfo:
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
        if isinstance(node, exp.Cast):
            return self.cast(node, scope)
        if isinstance(node, exp.Subquery):
            outputs = self.query(node.this, scope)
            if len(outputs) != 1:
                raise self.fail(
                    node, f"a subquery used as a value must give one column, not {len(outputs)}"
                )
            if outputs[0].info.geometry:
                raise self.unsupported(node, "a subquery cannot give a geometry value")
            return dataclasses.replace(outputs[0].info, aggregate=False, constant=None)
        if isinstance(node, _AGGREGATES):
            return self.aggregate(node, scope)
        if isinstance(node, nodes.GeometryFunction):
            return self.geometry(node, scope)
        if isinstance(node, nodes.UdfCall):
            return self.udf(node, scope)
        return self.function(node, scope)

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

    def arithmetic(self, node: exp.Expr, scope: _Scope) -> ValueInfo:
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

    def case(self, node: exp.Case, scope: _Scope) -> ValueInfo:
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
        return self.combine(node, results, aggregate, "CASE")

    def combine(
        self, node: exp.Expr, results: list[tuple[exp.Expr, ValueInfo]], aggregate: bool, what: str
    ) -> ValueInfo:
        infos = [info for _, info in results]
        for value, info in results:
            if info.geometry:
                raise self.unsupported(value, f"{what} cannot give a geometry value")
        common = common_type([i.duck for i in infos])
        if common is None:
            kinds = sorted({i.kind for i in infos})
            raise self.fail(node, f"the values of {what} have incompatible types: {kinds}")
        units = {i.unit for i in infos if i.duck != "NULL"}
        ucds = {i.ucd for i in infos if i.duck != "NULL"}
        return ValueInfo(
            common,
            unit=units.pop() if len(units) == 1 else None,
            ucd=ucds.pop() if len(ucds) == 1 else None,
            xtype="timestamp" if common == "TIMESTAMP" else None,
            aggregate=aggregate or any(i.aggregate for i in infos),
        )

    def cast(self, node: exp.Cast, scope: _Scope) -> ValueInfo:
        inner = self.value(node.this, scope)
        target = node.args["to"]
        kind = target.this
        if kind is exp.DataType.Type.USERDEFINED:
            raise self.unsupported(
                target,
                f"CAST to {target.args.get('kind')} is not supported",
                hint="build geometries with POINT, CIRCLE or POLYGON",
            )
        if inner.geometry:
            raise self.unsupported(node.this, "a geometry cannot be cast")
        if inner.kind == "other":
            raise self.fail(node.this, f"{self.text(node.this)} cannot be cast")
        duck = {
            exp.DataType.Type.SMALLINT: "SMALLINT",
            exp.DataType.Type.INT: "INTEGER",
            exp.DataType.Type.BIGINT: "BIGINT",
            exp.DataType.Type.FLOAT: "FLOAT",
            exp.DataType.Type.DOUBLE: "DOUBLE",
            exp.DataType.Type.CHAR: "VARCHAR",
            exp.DataType.Type.VARCHAR: "VARCHAR",
            exp.DataType.Type.TIMESTAMP: "TIMESTAMP",
        }[kind]
        literal = node.this if isinstance(node.this, exp.Literal) else None
        if duck == "TIMESTAMP":
            if inner.kind not in ("string", "timestamp", "null"):
                raise self.fail(node.this, f"a {inner.kind} cannot be cast to TIMESTAMP")
            if literal is not None and not _parse_timestamp(str(literal.this)):
                raise self.fail(literal, f"{self.text(literal)} is not a timestamp")
            return ValueInfo(duck, xtype="timestamp", aggregate=inner.aggregate)
        if duck == "VARCHAR":
            params = target.expressions
            length = int(str(params[0].this.this)) if params else None
            if length is not None and length < 1:
                raise self.fail(target, "a string length must be at least 1")
            size = None
            if length is not None:
                size = str(length) if kind is exp.DataType.Type.CHAR else f"{length}*"
            return ValueInfo(duck, arraysize=size, aggregate=inner.aggregate)
        if inner.kind not in ("numeric", "boolean", "string", "null"):
            raise self.fail(node.this, f"a {inner.kind} cannot be cast to a number")
        if inner.kind == "string" and literal is not None:
            try:
                float(str(literal.this))
            except ValueError:
                raise self.fail(literal, f"{self.text(literal)} is not a number") from None
        keep = inner.kind == "numeric"
        return ValueInfo(
            duck,
            unit=inner.unit if keep else None,
            ucd=inner.ucd if keep else None,
            description=inner.description if keep else None,
            aggregate=inner.aggregate,
        )

    def aggregate(self, node: exp.Expr, scope: _Scope) -> ValueInfo:
        name = type(node).__name__.upper()
        if scope.aggregates_allowed is None:
            raise self.fail(
                node,
                f"{name} cannot be used here (an aggregate belongs in the select list, HAVING "
                "or ORDER BY)",
                hint="filter aggregates with HAVING",
            )
        arg = node.this
        if isinstance(arg, exp.Star):
            return aggregate_info("COUNT", None, "BIGINT")
        if isinstance(arg, exp.Distinct):
            arg = arg.expressions[0]
        saved = scope.aggregates_allowed
        scope.aggregates_allowed = None
        try:
            info = self.value(arg, scope)
        finally:
            scope.aggregates_allowed = saved
        if info.geometry:
            raise self.fail(arg, f"{name} cannot aggregate a geometry")
        if name == "COUNT":
            return aggregate_info(name, info, "BIGINT")
        if name in ("SUM", "AVG"):
            if not info.numeric_like:
                raise self.fail(arg, f"{name} needs numbers; {self.text(arg)} is {info.kind}")
            duck = "DOUBLE" if name == "AVG" or not info.integral else "BIGINT"
            return aggregate_info(name, info, duck)
        if info.kind == "other":
            raise self.fail(arg, f"{name} cannot order {self.text(arg)}")
        duck = "INTEGER" if info.duck == "NULL" else info.duck
        return aggregate_info(name, info, duck)

    def function(self, node: exp.Expr, scope: _Scope) -> ValueInfo:
        name = self.default_name(node).upper()
        if isinstance(node, (exp.Lower, exp.Upper)):
            info = self.string(node.this, scope, name)
            return ValueInfo("VARCHAR", ucd=info.ucd, aggregate=info.aggregate)
        if isinstance(node, exp.Pi):
            return ValueInfo("DOUBLE", constant=math.pi)
        if isinstance(node, exp.Rand):
            if node.this is not None:
                raise self.unsupported(
                    node, "RAND with a seed is not supported", hint="use RAND() without a seed"
                )
            return ValueInfo("DOUBLE")
        if isinstance(node, exp.Coalesce):
            args = [node.this, *node.expressions]
            results = [(a, self.value(a, scope)) for a in args]
            return self.combine(node, results, False, "COALESCE")
        if isinstance(node, nodes.InUnit):
            info = self.numeric(node.this, scope, "IN_UNIT")
            target = str(node.expression.this)
            factor = convert_factor(info.unit, target)
            if isinstance(factor, str):
                raise self.fail(node, f"IN_UNIT: {factor}")
            self.checked.unit_factors[id(node)] = factor
            return ValueInfo(
                "DOUBLE",
                unit=target,
                ucd=info.ucd,
                description=info.description,
                aggregate=info.aggregate,
            )
        if isinstance(node, exp.Log):
            arg = self.numeric(node.expression, scope, "LOG10")
            return ValueInfo("DOUBLE", aggregate=arg.aggregate)
        if isinstance(node, (exp.Round, nodes.Truncate)):
            arg = self.numeric(node.this, scope, name)
            decimals = node.args.get("decimals")
            if decimals is not None:
                self.value(decimals, scope)
            return ValueInfo("DOUBLE", unit=arg.unit, ucd=arg.ucd, aggregate=arg.aggregate)
        if isinstance(node, exp.Abs):
            arg = self.numeric(node.this, scope, name)
            duck = "BIGINT" if arg.integral else "DOUBLE"
            return ValueInfo(duck, unit=arg.unit, ucd=arg.ucd, aggregate=arg.aggregate)
        if isinstance(node, (exp.Mod, exp.Pow, exp.Atan2)):
            a = self.numeric(node.this, scope, name)
            b = self.numeric(node.expression, scope, name)
            duck = "BIGINT" if isinstance(node, exp.Mod) and a.integral and b.integral else "DOUBLE"
            unit = a.unit if isinstance(node, exp.Mod) else None
            unit = "rad" if isinstance(node, exp.Atan2) else unit
            return ValueInfo(duck, unit=unit, aggregate=a.aggregate or b.aggregate)
        if isinstance(node, _DOUBLE_FUNCTIONS):
            arg = self.numeric(node.this, scope, name)
            unit = FUNCTIONS[name].unit
            ucd = None
            if isinstance(node, (exp.Ceil, exp.Floor)):
                unit, ucd = arg.unit, arg.ucd
            return ValueInfo("DOUBLE", unit=unit, ucd=ucd, aggregate=arg.aggregate)
        raise self.fail(node, f"unexpected {self.text(node)}")  # pragma: no cover

    def udf(self, node: nodes.UdfCall, scope: _Scope) -> ValueInfo:
        spec = FUNCTIONS[str(node.this).upper()]
        args = node.arguments
        aggregate_fn = spec.is_aggregate
        saved = scope.aggregates_allowed
        if aggregate_fn:
            if saved is None:
                raise self.fail(node, f"{spec.name} is an aggregate and cannot be used here")
            scope.aggregates_allowed = None
        try:
            infos = [self.value(a, scope) for a in args]
        finally:
            scope.aggregates_allowed = saved
        signature = next(s for s in spec.signatures if s.accepts(len(args)))
        for param, arg, info in zip(signature.params, args, infos, strict=False):
            self.parameter(spec, param.name, param.type, arg, info)
        if spec.name in ("ivo_healpix_index", "ivo_healpix_center"):
            self.healpix_arguments(spec, args, infos)
        result = signature.result
        duck = {
            "DOUBLE": "DOUBLE",
            "INTEGER": "INTEGER",
            "BIGINT": "BIGINT",
            "TEXT": "VARCHAR",
            "POINT": "POINT",
        }.get(result, "DOUBLE")
        return ValueInfo(
            duck,
            unit=spec.unit,
            ucd=_FUNCTION_UCDS.get(spec.name),
            description=spec.description,
            aggregate=aggregate_fn or any(i.aggregate for i in infos),
        )

    def healpix_arguments(
        self, spec: FunctionSpec, args: list[exp.Expr], infos: list[ValueInfo]
    ) -> None:
        """A constant HEALPix order outside 0..29 (and, for the centre, a constant index
        outside its order's cells) is an error here, not a NULL in every row."""
        order = infos[0].constant
        if order is None:
            return
        if not math.isfinite(order) or order != int(order) or not 0 <= order <= HEALPIX29_ORDER:
            raise self.fail(
                args[0],
                f"the HEALPix order of {spec.name.upper()} must be a whole number from 0 to "
                f"{HEALPIX29_ORDER}; {order:g} is not",
                hint="order 0 has 12 cells; each order splits every cell in 4",
            )
        if spec.name == "ivo_healpix_center" and len(infos) > 1:
            index, cells = infos[1].constant, 12 * 4 ** int(order)
            if index is not None and not (index == int(index) and 0 <= index < cells):
                raise self.fail(
                    args[1],
                    f"{index:g} is not a HEALPix index at order {int(order)}: "
                    f"the NESTED indexes there are 0 to {cells - 1}",
                )

    def parameter(
        self, spec: FunctionSpec, name: str, type_: str, arg: exp.Expr, info: ValueInfo
    ) -> None:
        wanted = {
            "TEXT": ("string", "null"),
            "POINT": ("geometry",),
            "GEOMETRY": ("geometry",),
        }.get(type_, ("numeric", "boolean", "null"))
        if info.kind not in wanted or (type_ == "POINT" and info.geometry != "point"):
            what = {"TEXT": "a string", "POINT": "a POINT"}.get(type_, "a number")
            raise self.fail(
                arg,
                f"argument {name} of {spec.name} must be {what}; {self.text(arg)} is {info.kind}",
            )

    # --- geometry -------------------------------------------------------------------------

    def coord_sys(self, node: nodes.GeometryFunction) -> None:
        system = node.coord_sys
        if system is None:
            return
        words = system.split()
        if words and words[0].upper() != "ICRS":
            raise self.unsupported(
                node.arguments[0],
                f"coordinate system '{system}' is not supported: positions are ICRS",
                hint="write '' or 'ICRS', or leave the coordinate system out",
            )

    def geometry_arg(self, node: exp.Expr, scope: _Scope, what: str) -> ValueInfo:
        info = self.value(node, scope)
        if id(info) in self.stand_ins:  # an unknown column: reported, whatever its type
            return ValueInfo("POINT")
        if info.geometry is None:
            raise self.fail(
                node,
                f"{what} needs a geometry (POINT, CIRCLE, POLYGON, BOX); "
                f"{self.text(node)} is {info.kind}",
            )
        return info

    def geometry(self, node: nodes.GeometryFunction, scope: _Scope) -> ValueInfo:
        name = node.adql_name
        self.coord_sys(node)
        args = node.coordinates
        if isinstance(node, nodes.Region):
            raise self.unsupported(
                node,
                "REGION is not supported (deprecated in ADQL 2.1)",
                hint="use POINT, CIRCLE, BOX or POLYGON",
            )
        if isinstance(node, (nodes.Point, nodes.Circle, nodes.Box, nodes.Polygon)):
            return self.constructor(node, scope)
        if isinstance(node, (nodes.Contains, nodes.Intersects)):
            a = self.geometry_arg(args[0], scope, name)
            b = self.geometry_arg(args[1], scope, name)
            self.predicate_supported(node, args, a, b)
            return ValueInfo("INTEGER", aggregate=a.aggregate or b.aggregate)
        if isinstance(node, nodes.Distance):
            if len(args) == 2:
                infos = [self.geometry_arg(arg, scope, name) for arg in args]
                for arg, arg_info in zip(args, infos, strict=True):
                    if arg_info.geometry != "point":
                        raise self.fail(
                            arg, f"DISTANCE needs two POINTs; {self.text(arg)} is not one"
                        )
            else:
                infos = [self.numeric(a, scope, name) for a in args]
            return ValueInfo(
                "DOUBLE",
                unit="deg",
                ucd="pos.angDistance",
                description="angular distance",
                aggregate=any(i.aggregate for i in infos),
            )
        info = self.geometry_arg(args[0], scope, name)
        geometry = info.geometry
        constant = id(args[0]) in self.checked.regions
        if isinstance(node, (nodes.Coord1, nodes.Coord2)):
            if geometry != "point":
                raise self.fail(args[0], f"{name} needs a POINT; {self.text(args[0])} is not one")
            first = isinstance(node, nodes.Coord1)
            return ValueInfo(
                "DOUBLE",
                unit="deg",
                ucd="pos.eq.ra" if first else "pos.eq.dec",
                aggregate=info.aggregate,
            )
        if isinstance(node, nodes.Coordsys):
            return ValueInfo("VARCHAR", aggregate=info.aggregate)
        if isinstance(node, nodes.Area):
            if geometry in ("polygon", "box") and not constant:
                raise self.unsupported(
                    node, "AREA of a polygon built from column values is not supported"
                )
            return ValueInfo("DOUBLE", unit="deg**2", ucd="phys.angArea", aggregate=info.aggregate)
        if isinstance(node, nodes.Centroid):
            if geometry in ("polygon", "box") and not constant:
                raise self.unsupported(
                    node, "CENTROID of a polygon built from column values is not supported"
                )
            return ValueInfo("POINT", ucd="pos.eq", unit="deg", aggregate=info.aggregate)
        raise self.fail(node, f"unexpected {name}")  # pragma: no cover

    def predicate_supported(
        self, node: nodes.GeometryFunction, args: list[exp.Expr], a: ValueInfo, b: ValueInfo
    ) -> None:
        """Refuse the CONTAINS/INTERSECTS forms the translator cannot make exact."""
        constant = [id(x) in self.checked.regions for x in args]
        if all(constant):
            return
        kinds = [a.geometry, b.geometry]
        if isinstance(node, nodes.Intersects) and kinds[0] != "point" and kinds[1] == "point":
            kinds.reverse()
            constant.reverse()
        if kinds[0] == "point" and (kinds[1] in ("point", "circle") or constant[1]):
            return
        if kinds == ["circle", "circle"]:
            return
        raise self.unsupported(
            node,
            f"{node.adql_name} of a {kinds[0]} and a {kinds[1]} is only supported with "
            "constant coordinates",
            hint="CONTAINS(POINT, region), INTERSECTS of circles and any constant regions "
            "are supported",
        )

    def constructor(self, node: nodes.GeometryFunction, scope: _Scope) -> ValueInfo:
        args = node.coordinates
        name = node.adql_name
        infos = [self.value(a, scope) for a in args]
        points = [info.geometry == "point" for info in infos]
        numbers: list[float | None] = []
        for arg, info, is_point in zip(args, infos, points, strict=True):
            if is_point:
                region = self.checked.regions.get(id(arg))
                if isinstance(region, Point):
                    numbers += [region.ra, region.dec]
                else:
                    numbers += [None, None]
                continue
            if not info.numeric_like:
                raise self.fail(arg, f"{name} needs numbers; {self.text(arg)} is {info.kind}")
            numbers.append(info.constant)
        if isinstance(node, nodes.Polygon):
            if any(points) and not all(points):
                raise self.fail(node, "POLYGON takes either POINTs or coordinate pairs, not both")
            if not any(points) and (len(args) % 2 or len(args) < 6):
                raise self.fail(
                    node,
                    f"POLYGON needs three or more (long, lat) pairs; got {len(args)} numbers",
                )
        else:
            point_form = {"CIRCLE": 2, "BOX": 3}.get(name)
            if any(points[1:]) or (points and points[0] and len(args) != point_form):
                bad = args[next(i for i, p in enumerate(points) if p and (i or not point_form))]
                raise self.fail(bad, f"{name} needs a number here; {self.text(bad)} is a POINT")
            if not points[0] and len(args) != {"POINT": 2, "CIRCLE": 3, "BOX": 4}[name]:
                raise self.fail(
                    node, f"{name} takes a POINT or coordinates, not {len(args)} values"
                )
        aggregate = any(i.aggregate for i in infos)
        if all(n is not None for n in numbers):
            values = [float(n) for n in numbers if n is not None]
            try:
                self.checked.regions[id(node)] = _build_region(name, values)
            except GeometryError as error:
                raise self.fail(node, f"invalid {name}: {error.message}") from None
        return ValueInfo(
            name,
            unit="deg",
            ucd="pos.eq" if name == "POINT" else "pos.outline",
            aggregate=aggregate,
        )


def _is_constant(node: exp.Expr) -> bool:
    """Whether ``node`` has the same value on every row (no column, subquery, aggregate or
    random number in it)."""
    variable = (exp.Column, exp.Subquery, exp.Select, exp.Rand, nodes.UdfCall, *_AGGREGATES)
    return not any(isinstance(n, variable) for n in node.walk())


def _build_region(name: str, values: list[float]) -> Region:
    if name == "POINT":
        return Point(values[0], values[1])
    if name == "CIRCLE":
        return Circle(values[0], values[1], values[2])
    if name == "BOX":
        return Box(values[0], values[1], values[2], values[3])
    return Polygon.from_flat(values)


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


def _parse_timestamp(text: str) -> bool:
    try:
        dt.datetime.fromisoformat(text.strip())
    except ValueError:
        return False
    return True


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
