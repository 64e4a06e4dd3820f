"""The Python API: ``archive = skyvault.open(DIR)``; ``archive.query(adql)``.

An :class:`Archive` ties the pipeline together: the registry of tables, the ADQL compiler
(parse → check → translate), the planner (pruning) and an executor.  Every error it raises is
a :class:`~skyvault.errors.SkyvaultError`.
"""

from __future__ import annotations

import dataclasses
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from skyvault.catalog.metadata import ColumnMeta, TableMeta
from skyvault.catalog.registry import Registry, StoredTable
from skyvault.catalog.views import View, with_views
from skyvault.engine.connection import Sandbox, SandboxSettings, _udf_definitions
from skyvault.engine.executor import (
    BindableExecutor,
    CancelToken,
    Executor,
    LocalExecutor,
    QueryResult,
)
from skyvault.engine.plan import QueryPlan, ScanSpec, plan_translation
from skyvault.errors import SkyvaultError, UnsupportedQuery, internal_error

if TYPE_CHECKING:
    from skyvault.adql.translate import Translation

__all__ = ["Archive", "open_archive"]

DEFAULT_TIMEOUT = 600.0


class Archive:
    """The catalogues under a data root, queryable with ADQL.

    Parameters
    ----------
    data_dir
        The data root ingest wrote to.
    memory_limit
        DuckDB memory limit for queries.
    threads
        Threads per query.
    timeout
        Default time limit of a query, in seconds.
    executor
        What runs the plans: a :class:`~skyvault.engine.distributed.DaskExecutor` (given
        this archive's sandbox and settings), any other executor as it is, or by default a
        :class:`LocalExecutor` on this machine.
    """

    def __init__(
        self,
        data_dir: Path | str,
        *,
        memory_limit: str = "2GB",
        threads: int = 2,
        timeout: float = DEFAULT_TIMEOUT,
        executor: Executor | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        if not self.data_dir.is_dir():
            raise SkyvaultError(f"no data directory at {self.data_dir}")
        self.registry = Registry(self.data_dir)
        self._plans = _PlanCache()
        macros, udfs = _udf_definitions()
        self.sandbox = Sandbox(
            [self.data_dir], memory_limit=memory_limit, threads=threads, macros=macros,
            python_udfs=udfs,
        )  # fmt: skip
        self.executor: Executor = LocalExecutor(self.sandbox)
        if isinstance(executor, BindableExecutor):
            settings = SandboxSettings((str(self.data_dir.resolve()),), memory_limit, threads)
            self.executor = executor.bind(self.sandbox, settings)
        elif executor is not None:
            self.executor = executor
        self.timeout = timeout

    def tables(self) -> list[TableMeta]:
        """Metadata of every table."""
        return self.registry.tables()

    def plan(
        self,
        adql: str,
        tables: Sequence[TableMeta] | None = None,
        extra: Sequence[tuple[TableMeta, pa.Table]] = (),
        views: Sequence[View] = (),
    ) -> QueryPlan:
        """Compile and plan ``adql`` without running it.

        ``tables`` are the stored tables the caller may see (all when None); ``extra`` adds
        in-memory tables such as TAP_SCHEMA or uploads, each with its metadata; ``views``
        adds views over stored tables (:mod:`skyvault.catalog.views`; a view named as a
        stored table of ``tables`` is that table with its derived columns).
        """
        from skyvault.adql.translate import compile_adql

        visible = list(tables) if tables is not None else self.registry.tables()
        in_memory = {(m.schema, m.name): data for m, data in extra}
        by_view = {v.key: v for v in views}
        metas = [*with_views(visible, views), *(m for m, _ in extra)]
        entry = self._plans.get(adql, metas)
        if entry is None:
            translation = _guard(lambda: compile_adql(adql, metas))
            entry = self._plans.put(adql, metas, translation)
        translation = entry.translation
        only_stored = not any(
            (r.meta.schema, r.meta.name) in in_memory or (r.meta.schema, r.meta.name) in by_view
            for r in translation.tables
        )
        if only_stored:
            current = [self.registry.get(r.meta.schema, r.meta.name) for r in translation.tables]
            planned = entry.planned
            if planned is not None and all(
                a is b for a, b in zip(planned.tables, current, strict=True)
            ):
                return planned.plan
        specs: list[ScanSpec] = []
        for ref in translation.tables:
            data = in_memory.get((ref.meta.schema, ref.meta.name))
            view = by_view.get((ref.meta.schema, ref.meta.name))
            if data is not None:
                specs.append(ScanSpec(placeholder=ref.placeholder, table=data))
            elif view is not None:
                specs.append(self._view_scan(ref.placeholder, view, ref.coverage, ref.columns))
            else:
                specs.append(
                    ScanSpec(
                        placeholder=ref.placeholder,
                        table=self.registry.get(ref.meta.schema, ref.meta.name),
                        coverage=ref.coverage,
                        columns=ref.columns,
                    )
                )
        stored = {s.placeholder for s in specs if isinstance(s.table, StoredTable)}
        direct = translation.direct  # only over a stored table (not an upload)
        if direct is not None and direct.placeholder not in stored:
            direct = None
        plan = plan_translation(translation, specs, direct)
        plan = dataclasses.replace(plan, top_select=translation.top_select)
        if only_stored:  # a plan over in-memory tables would keep them alive: not kept
            used = tuple(s.table for s in specs if isinstance(s.table, StoredTable))
            entry.planned = _Planned(tables=used, plan=plan)
        return plan

    def stream(
        self,
        adql: str,
        *,
        maxrec: int | None = None,
        timeout: float | None = None,
        cancel: CancelToken | None = None,
        tables: Sequence[TableMeta] | None = None,
        extra: Sequence[tuple[TableMeta, pa.Table]] = (),
        views: Sequence[View] = (),
    ) -> QueryResult:
        """Run ``adql``; the result's ``batches`` yield record batches as they come.

        ``tables``, ``extra`` and ``views`` as for :meth:`plan`.
        """
        plan = self.plan(adql, tables, extra, views)
        return self.executor.execute(
            plan, maxrec=maxrec, timeout=timeout or self.timeout, cancel=cancel
        )

    def query(
        self, adql: str, maxrec: int | None = None, *, timeout: float | None = None
    ) -> pa.Table:
        """Run ``adql`` and return the whole result as a table.

        The table's schema metadata says ``overflow`` (``b"true"`` when MAXREC cut rows);
        each field's metadata carries the column's unit, UCD and description.
        """
        result = self.stream(adql, maxrec=maxrec, timeout=timeout)
        table = _with_field_metadata(result.to_table(), result.columns)
        overflow = {"overflow": "true" if result.overflow else "false"}
        return table.replace_schema_metadata(overflow)

    def save(
        self,
        adql: str,
        table: str,
        *,
        user: str,
        mode: str = "create",
        maxrec: int | None = None,
        timeout: float | None = None,
    ) -> TableMeta:
        """Run ``adql`` as ``user`` (with their access: the tables granted to them and
        their groups) and save the result as their table ``table`` (``user_<user>.NAME``),
        what an async job with ``DEST=table`` (and ``DEST_MODE=mode``: create, append or
        replace) does; the table's metadata.  The columns keep the result's units, UCDs
        and descriptions; quotas apply (:class:`~skyvault.errors.QuotaExceeded`)."""
        from skyvault.auth.access import AccessPolicy
        from skyvault.auth.identity import Identity
        from skyvault.auth.storage import AuthStorage
        from skyvault.workspace.save import save_table
        from skyvault.workspace.store import WorkspaceStore

        if mode not in ("create", "append", "replace"):
            raise SkyvaultError(f"mode {mode!r} is not create, append or replace")
        auth = AuthStorage.for_data_dir(self.data_dir)
        try:
            identity = Identity(user, auth.groups_of(user))
            tables = AccessPolicy(auth).visible_tables(identity, self.tables())
            result = self.stream(adql, maxrec=maxrec, timeout=timeout, tables=tables)
            rows = result.to_table()
            if result.overflow:
                raise SkyvaultError(
                    f"the result has more than MAXREC={maxrec} rows: it was not saved",
                    hint="narrow the query, or raise maxrec",
                )
            metadata = _with_field_metadata(rows, result.columns)
            return save_table(WorkspaceStore(self.data_dir, auth), identity, table, metadata, mode)  # type: ignore[arg-type]
        finally:
            auth.close()

    def _view_scan(
        self, placeholder: str, view: View, coverage: Any, columns: tuple[str, ...]
    ) -> ScanSpec:
        """The scan of a view's occurrence: its members' files (each pruned by
        ``coverage``), or, without members, an empty in-memory table of its columns."""
        members = tuple(self.registry.get(n.schema, n.table) for n in view.members)
        if not members:
            return ScanSpec(placeholder=placeholder, table=view.schema.empty_table())
        table: StoredTable | tuple[StoredTable, ...] = members if len(members) > 1 else members[0]
        return ScanSpec(
            placeholder=placeholder,
            table=table,
            coverage=coverage,
            columns=columns,
            derived=view.derived,
        )

    def close(self) -> None:
        self.sandbox.close()


@dataclasses.dataclass(frozen=True)
class _Planned:
    """A plan and the stored tables it was made over."""

    tables: tuple[StoredTable, ...]
    plan: QueryPlan


@dataclasses.dataclass(eq=False)
class _CachedPlan:
    """A compiled query and, when it reads stored tables only, its plan."""

    tables: tuple[weakref.ref[TableMeta], ...]
    translation: Translation
    planned: _Planned | None = None
    """The plan and the stored tables it was made over (one value: set atomically)."""


class _PlanCache:
    """The translations (and plans) of recently run queries, per query text and tables.

    Parsing, checking and translating costs a few tenths of a millisecond, as much as a
    small query takes to run, and services see the same queries again and again (a
    portal's, a script's).  An entry is found by the text and the identity of the table
    metadata objects the query was checked against: the registry and the TAP_SCHEMA cache
    hand out the same objects until a table changes, and new metadata (a re-ingest, a
    changed visibility, an upload) is a miss.  The entry holds its tables weakly, so a
    vanished table can neither be kept alive nor mistaken for a new one at its address.
    A plan is kept only over stored tables, and used only while the registry still gives
    the same tables (their partitions and files).
    """

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, tuple[int, ...]], _CachedPlan] = OrderedDict()

    def get(self, adql: str, tables: Sequence[TableMeta]) -> _CachedPlan | None:
        key = (adql, tuple(map(id, tables)))
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if not all(ref() is t for ref, t in zip(entry.tables, tables, strict=True)):
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry

    def put(self, adql: str, tables: Sequence[TableMeta], translation: Translation) -> _CachedPlan:
        entry = _CachedPlan(tuple(weakref.ref(t) for t in tables), translation)
        with self._lock:
            self._entries[(adql, tuple(map(id, tables)))] = entry
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return entry


def _with_field_metadata(table: pa.Table, columns: Sequence[ColumnMeta]) -> pa.Table:
    """``table`` with each field's metadata carrying its column's unit, UCD, description
    and xtype (what :meth:`Archive.query` returns and a saved table keeps)."""
    fields = []
    for field, meta in zip(table.schema, columns, strict=True):
        pairs = (
            ("unit", meta.unit),
            ("ucd", meta.ucd),
            ("description", meta.description),
            ("xtype", meta.xtype),
        )
        info = {k: v for k, v in pairs if v}
        fields.append(field.with_metadata(info) if info else field)
    return table.cast(pa.schema(fields))


def open_archive(data_dir: Path | str, **options: Any) -> Archive:
    """Open the catalogues under ``data_dir`` (``skyvault.open``)."""
    return Archive(data_dir, **options)


def _guard(fn: Callable[[], Any]) -> Any:
    """Run ``fn``; anything but a skyvault error is an internal fault, reported as such."""
    try:
        return fn()
    except SkyvaultError:
        raise
    except RecursionError:
        raise UnsupportedQuery(
            "the query is too complex: its expressions or subqueries nest too deeply",
            hint="split it into simpler queries",
        ) from None
    except Exception as exc:
        raise internal_error("the query could not be compiled") from exc
