"""Saving a query's result as a user table (the ``DEST`` job parameter, a skyvault extension).

An async TAP job with ``DEST=user_alice.bright_stars`` writes its result into the caller's
schema as well as into the result store; ``DEST_MODE`` says what to do when the table
exists: ``create`` (the default: an existing table is an error saying which mode to use),
``append`` (its rows are added; the result's columns are matched to the table's by name)
or ``replace`` (a new version of the table with the result's columns and rows, its grants
kept).  The Python equivalent is :func:`save_table` (over a :class:`pyarrow.Table`, e.g.
``archive.query(...)``'s, whose fields carry the units, UCDs and descriptions).

While the query streams, each batch also goes to a staging file (Arrow IPC, under the
schema's internal directory): :class:`ResultTable` is the sink the query service tees the
batches into.  Only once the result store holds the whole result is the table published,
atomically, by :class:`~skyvault.workspace.store.WorkspaceStore` (quota checked under the
owner's lock: an over-quota save stores nothing, and the job ERRORs with the usage and the
limit).  A failed or aborted job leaves no table and no staging file.

The table's columns are the result's: name, datatype, arraysize, xtype, unit, UCD, utype
and description (what the VOTable FIELDs say).  Rows are the result's rows: a result cut
by MAXREC is not saved (the job's MAXREC defaults to the service's limit when DEST is
given), since a silently truncated table is worse than none.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pyarrow as pa

from skyvault.auth.identity import Identity
from skyvault.catalog.layout import INTERNAL_DIR, TableName
from skyvault.catalog.metadata import ColumnMeta, TableMeta
from skyvault.errors import TableExists, WorkspaceError
from skyvault.interprocess import file_lock
from skyvault.workspace.columns import TableDefinition, arrow_type, storage_schema
from skyvault.workspace.names import UserTableName, check_column_name
from skyvault.workspace.quota import Usage, check_quota
from skyvault.workspace.readers import conform_batches
from skyvault.workspace.store import WorkspaceStore

__all__ = [
    "DEST_MODES",
    "ResultTable",
    "SaveRequest",
    "open_result_table",
    "save_request",
    "save_table",
]

#: What ``DEST_MODE`` may say.
DEST_MODES = ("create", "append", "replace")
Mode = Literal["create", "append", "replace"]

_STAGING = "staging"
_LOCK = ".staging"


@dataclass(frozen=True)
class SaveRequest:
    """Where a job's result goes: the table and what to do if it exists."""

    table: str
    mode: Mode = "create"


def _single(params: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = params.get(name, [])
    if len(values) > 1:
        raise WorkspaceError(
            f"parameter {name} was given {len(values)} times; it takes one value",
            hint=f"send {name} once",
        )
    return values[0] if values else None


def save_request(params: Mapping[str, Sequence[str]]) -> SaveRequest | None:
    """The ``DEST`` (and ``DEST_MODE``) of a job's parameters (names upper-cased); None
    when the job saves nothing."""
    dest = _single(params, "DEST")
    mode = (_single(params, "DEST_MODE") or "create").strip().lower()
    if dest is None:
        if _single(params, "DEST_MODE") is not None:
            raise WorkspaceError(
                "DEST_MODE was given without DEST",
                hint="name the table to save the result in: DEST=user_<you>.TABLE",
            )
        return None
    if mode not in DEST_MODES:
        raise WorkspaceError(
            f"DEST_MODE={mode!r} is not one of {', '.join(DEST_MODES)}",
            hint="create makes a new table, append adds the rows, replace replaces the table",
        )
    return SaveRequest(dest.strip(), mode)  # type: ignore[arg-type]


def result_columns(columns: Sequence[ColumnMeta]) -> tuple[ColumnMeta, ...]:
    """The columns of a table holding a result with ``columns``: what the result says of
    each (type, unit, UCD, description...), fresh flags and positions.  A name that cannot
    name a stored column (not an identifier, repeated) is a :class:`WorkspaceError` with
    the way out (an ``AS`` alias)."""
    out: list[ColumnMeta] = []
    seen: set[str] = set()
    for index, column in enumerate(columns):
        try:
            check_column_name(column.name)
        except WorkspaceError as exc:
            raise WorkspaceError(
                f"the result cannot be saved as a table: {exc}",
                hint="name the column with AS, e.g. SELECT COUNT(*) AS n",
            ) from None
        if column.name.lower() in seen:
            raise WorkspaceError(
                f"the result cannot be saved as a table: two columns are called {column.name}",
                hint="give one of them another name with AS",
            )
        seen.add(column.name.lower())
        fresh = ColumnMeta(
            name=column.name,
            datatype=column.datatype,
            arraysize=column.arraysize,
            xtype=column.xtype,
            unit=column.unit,
            ucd=column.ucd,
            utype=column.utype,
            description=column.description,
            column_index=index,
        )
        arrow_type(fresh)  # refuses a type a user table cannot hold, naming the column
        out.append(fresh)
    return tuple(out)


class ResultTable:
    """The sink of a saving job: the result's batches staged, then published as a table.

    Made by :func:`open_result_table` (which checks the destination before the query
    runs); :meth:`write` each batch, :meth:`commit` once the result is complete,
    :meth:`close` always (it removes the staging file; a table not committed is not made).
    """

    def __init__(
        self,
        store: WorkspaceStore,
        identity: Identity,
        owner: str,
        target: TableName,
        mode: Mode,
        rows_left: int | None,
    ) -> None:
        self.store = store
        self.identity = identity
        self.owner = owner
        self.target = target
        self.mode = mode
        self.rows_left = rows_left
        self.rows = 0
        root = store.data_dir / target.schema / INTERNAL_DIR / _STAGING
        _sweep(root)
        self._dir = root / uuid.uuid4().hex
        self._path = self._dir / "result.arrow"
        self._dir.mkdir(parents=True)
        # Held while the sink lives: a staging directory whose lock can be taken was left
        # by a process that died (kill -9), and the next save removes it.
        self._lock = contextlib.ExitStack()
        self._lock.enter_context(file_lock(self._dir / _LOCK))
        self._sink: pa.OSFile | None = None
        self._writer: pa.ipc.RecordBatchFileWriter | None = None
        self._schema: pa.Schema | None = None

    def write(self, batch: pa.RecordBatch) -> None:
        """Stage one batch of the result; a result past the owner's row quota is refused
        as soon as it is."""
        if self._writer is None:
            self._schema = batch.schema
            self._sink = pa.OSFile(str(self._path), "wb")
            self._writer = pa.ipc.new_file(self._sink, batch.schema)
        self._writer.write_batch(batch)
        self.rows += batch.num_rows
        if self.rows_left is not None and self.rows > self.rows_left:
            now = self.store.usage(self.owner)
            more = Usage(0, self.rows, 1 if self.mode == "create" else 0)
            check_quota(self.owner, now, now + more, self.store.quota(self.owner), self._action())

    def _action(self) -> str:
        return f"saving the result as {self.target}"

    def _staged(self, schema: pa.Schema) -> pa.Table:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._sink is not None:
            self._sink.close()
            self._sink = None
        if not self._path.exists():
            return schema.empty_table()
        # Memory-mapped: the rows are read from the staging file as they are written out.
        return pa.ipc.open_file(pa.memory_map(str(self._path))).read_all()

    def commit(self, columns: Sequence[ColumnMeta], schema: pa.Schema) -> TableMeta:
        """Publish the staged rows as the table (``columns``: the result's metadata,
        ``schema``: its Arrow schema)."""
        rows = self._staged(self._schema or schema)
        return _publish(self.store, self.identity, self.target, self.mode, columns, rows)

    def close(self) -> None:
        """Drop the staging file (and what was staged, if never committed)."""
        try:
            if self._writer is not None:
                self._writer.close()
            if self._sink is not None:
                self._sink.close()
        except (OSError, pa.ArrowException):
            pass
        self._writer = self._sink = None
        self._lock.close()
        shutil.rmtree(self._dir, ignore_errors=True)


def _sweep(root: Path) -> None:
    """Remove the staging directories under ``root`` that no live sink holds."""
    if not root.is_dir():
        return
    for entry in root.iterdir():
        try:
            with file_lock(entry / _LOCK, create=False) as taken:
                pass
        except (FileNotFoundError, NotADirectoryError):
            taken = True
        if taken:
            shutil.rmtree(entry, ignore_errors=True)


def _check_destination(
    store: WorkspaceStore, identity: Identity, request: SaveRequest
) -> tuple[str, TableName]:
    """The owner and the table a save goes to; refuses what cannot be saved there."""
    user = store.require_user(identity)
    parsed = UserTableName.parse(request.table)
    schema = store.schema_of(identity, create=True)
    assert schema is not None
    if parsed.schema.lower() != schema.lower():
        raise WorkspaceError(
            f"a result can be saved only in your own schema, {schema}",
            hint=f"send DEST={schema}.{parsed.table}",
        )
    # An existing table is found without regard to case (as the store compares names),
    # and then named as stored.
    stored = [
        p.name
        for p in (store.data_dir / schema).glob("*")
        if p.name.lower() == parsed.table.lower() and p.is_symlink()
    ]
    exists = bool(stored)
    target = TableName(schema, stored[0] if stored else parsed.table)
    if exists and request.mode == "create":
        raise TableExists(
            f"table {target} exists already: the result was not saved",
            hint="send DEST_MODE=append to add the rows to it, or DEST_MODE=replace to "
            "replace it, or choose another DEST",
        )
    if exists:
        store.check_access(identity, str(target), "write" if request.mode == "append" else "owner")
    return user, target


def open_result_table(
    store: WorkspaceStore, identity: Identity, request: SaveRequest
) -> ResultTable:
    """The sink of a job saving into ``request.table``, its destination checked now (before
    the query runs): the caller's own schema, and an existing table only with
    ``append``/``replace`` and the access that needs."""
    owner, target = _check_destination(store, identity, request)
    quota = store.quota(owner)
    rows_left = None if quota.max_rows is None else quota.max_rows - store.usage(owner).rows
    return ResultTable(store, identity, owner, target, request.mode, rows_left)


def _publish(
    store: WorkspaceStore,
    identity: Identity,
    target: TableName,
    mode: Mode,
    columns: Sequence[ColumnMeta],
    rows: pa.Table,
) -> TableMeta:
    name = str(target)
    renamed = rows.rename_columns([c.name for c in columns]) if columns else rows
    if mode == "append" and (store.data_dir / target.schema / target.table).is_symlink():
        store.load(identity, name, renamed)
        return store.describe(identity, name).meta
    fresh = result_columns(columns)
    if mode == "replace" and (store.data_dir / target.schema / target.table).is_symlink():
        return _replace(store, identity, target, fresh, renamed)
    return store.create_table(identity, name, TableDefinition(fresh, rows=renamed))


def _replace(
    store: WorkspaceStore,
    identity: Identity,
    target: TableName,
    columns: tuple[ColumnMeta, ...],
    rows: pa.Table,
) -> TableMeta:
    """A new version of ``target`` with ``columns`` and ``rows``, in the table's turn; its
    grants (kept by name) stay."""
    name = str(target)
    with store.exclusive(identity, name, "owner") as table:
        meta = dataclasses.replace(
            table.meta, kind="plain", columns=columns, nrows=0, ra_column=None, dec_column=None,
            margin_arcsec=None, max_rows_per_partition=None, n_partitions=0,
        )  # fmt: skip
        batches = conform_batches(rows, storage_schema(columns), "the result")
        return store._write_plain(
            identity, target, meta, None, batches, owner=table.permissions.owner
        )


def save_table(
    store: WorkspaceStore, identity: Identity, table: str, rows: pa.Table, mode: Mode = "create"
) -> TableMeta:
    """Save ``rows`` (e.g. ``archive.query(...)``'s table, whose fields' metadata carry
    unit, UCD, description, xtype) as the user table ``table`` of ``identity``, as a
    ``DEST`` job would; ``mode`` as ``DEST_MODE``."""
    request = SaveRequest(table, mode)
    _owner, target = _check_destination(store, identity, request)
    columns = []
    for field in rows.schema:
        meta = ColumnMeta.from_arrow(field)
        info = {k.decode(): v.decode() for k, v in (field.metadata or {}).items()}
        meta = meta.updated(
            unit=info.get("unit"),
            ucd=info.get("ucd"),
            description=info.get("description"),
            xtype=info.get("xtype"),
        )
        columns.append(meta)
    return _publish(store, identity, target, mode, columns, rows)
