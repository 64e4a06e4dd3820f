"""The workspace store: users' own tables, created, loaded, shared and dropped.

A user table is an ordinary table of the data root, in the user's schema ``user_<name>``
(:mod:`skyvault.workspace.names`), stored and published exactly like an archive table
(:mod:`skyvault.catalog.layout`): ``DIR/user_alice/TABLE`` is a link to an immutable version
directory holding plain Parquet (``dataset/part-NNNNN.parquet``) and ``skyvault_table.json``.
Once a table is sky-indexed (partitioned on its position: the table-update job) it is a HATS
catalogue like the archive's, and loads append to it as delta files
(:mod:`skyvault.catalog.append`).  So the registry, TAP_SCHEMA, ``/tables``, ADQL and the
planner see user tables with no special case; the access rules
(:mod:`skyvault.auth.access`) decide who sees them: the owner, groups granted read or
read-write, everyone when public.  To anyone else a user table does not exist: every
operation answers exactly as for a missing table.

**Loads are atomic.** A load of a plain table writes a new version: hard links to the
current version's data files plus the new rows' files, published with one ``os.replace``
of the link (:func:`~skyvault.catalog.layout.building`).  A failure, an over-quota refusal,
a client that disconnects or a ``kill -9`` leave the table as it was; a query sees the table
before or after a load, never half of it.  Loads (and drops, index jobs) of one table take
turns on a file lock (:meth:`WorkspaceStore.exclusive`), across threads and processes.

**Quotas** (:mod:`skyvault.workspace.quota`) are checked on the new version before it is
published, under the owner's lock, so two loads into two tables cannot both slip past.

**Audit.** Every create, load, drop and permission change is one line in the audit log
(``endpoint`` ``workspace.create`` / ``.load`` / ``.drop`` / ``.permissions``, ``query`` the
table name, ``rows`` the rows added), refusals included.

The store imports nothing from the web layer: the service, the CLI and a UWS job call the
same methods.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import itertools
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeAlias

import pyarrow as pa
import pyarrow.parquet as pq

from skyvault.auth.access import AccessPolicy, GrantSnapshot
from skyvault.auth.audit import AuditLog
from skyvault.auth.identity import Identity
from skyvault.auth.storage import (
    AuthStorage,
    GrantLevel,
    GrantRecord,
    WorkspaceQuotaRecord,
    utc_now,
)
from skyvault.catalog.append import read_snapshot
from skyvault.catalog.layout import INTERNAL_DIR, TableName, building, schema_lock_file
from skyvault.catalog.metadata import TableMeta
from skyvault.errors import (
    AccessDenied,
    AuthenticationRequired,
    CatalogError,
    CatalogNotFound,
    TableExists,
    WorkspaceError,
)
from skyvault.interprocess import file_lock
from skyvault.workspace.columns import TableDefinition, storage_schema
from skyvault.workspace.names import (
    HEALPIX_COLUMN,
    UserTableName,
    is_user_schema,
    schema_candidates,
)
from skyvault.workspace.permissions import PermissionChange, TablePermissions
from skyvault.workspace.quota import Quota, Usage, WorkspaceSettings, check_quota
from skyvault.workspace.readers import check_content_type, conform_batches, open_body
from skyvault.workspace.unique import carry_unique, check_unique, unique_columns, write_unique

__all__ = [
    "Access",
    "LoadResult",
    "TableSource",
    "UserTable",
    "WorkspaceInfo",
    "WorkspaceStore",
]

#: What a caller may do with a table, weakest first.
Access = Literal["read", "write", "owner"]
_RANK = {"read": 0, "write": 1, "owner": 2}

#: Rows a load writes per Parquet file (a new file per load at least).
FILE_ROWS = 10_000_000
#: Files a plain table may have before a load folds the small ones into its new file.
MAX_FILES = 32
#: A file with fewer rows than this is small (folded once there are too many files).
SMALL_FILE_ROWS = 1_000_000
#: Rows read at a time from a file being folded.
BATCH_ROWS = 262_144
ROW_GROUP_ROWS = 32_768

#: What :meth:`WorkspaceStore.load` reads: Arrow batches with some of the table's columns.
TableSource: TypeAlias = pa.RecordBatchReader | pa.Table | Iterable[pa.RecordBatch]


@dataclass(frozen=True)
class LoadResult:
    """What a load did: rows added, the table's rows after it, bytes added."""

    table: str
    rows: int
    total_rows: int
    bytes: int

    def message(self) -> str:
        """youcat's answer to a load: ``Inserted N rows to table NAME``."""
        return f"Inserted {self.rows} rows to table {self.table}"


@dataclass(frozen=True)
class UserTable:
    """A user table as its caller sees it: metadata, grants and the caller's access."""

    meta: TableMeta
    permissions: TablePermissions
    access: Access
    version_dir: Path


@dataclass(frozen=True)
class WorkspaceInfo:
    """One user's workspace (operator view): schema, usage, effective quota, tables."""

    owner: str
    schema: str
    usage: Usage
    quota: Quota
    tables: tuple[TableMeta, ...]


def _not_found(name: object) -> CatalogNotFound:
    """The one answer for a table that is missing or that the caller may not see."""
    return CatalogNotFound(f"no table {name}", hint="see /tables for the published tables")


class WorkspaceStore:
    """Users' tables under the data root ``data_dir``.

    Parameters
    ----------
    data_dir
        The data root (the archive's).
    auth
        The auth database: workspace schemas and their owners, grants, quota overrides.
    access
        The access rules (who sees which table); built over ``auth`` when not given.
    settings
        Default quotas and request limits (``SKYVAULT_WORKSPACE_*``).
    audit
        Where create/load/drop/permission changes are recorded (None: not recorded).
    require_known_groups
        Refuse grants to groups the auth database does not hold (built-in identities;
        behind a proxy groups exist only in its headers, so any valid name is accepted).
    """

    def __init__(
        self,
        data_dir: Path,
        auth: AuthStorage,
        access: AccessPolicy | None = None,
        settings: WorkspaceSettings | None = None,
        audit: AuditLog | None = None,
        *,
        require_known_groups: bool = True,
    ) -> None:
        self.data_dir = data_dir
        self.require_known_groups = require_known_groups
        self.auth = auth
        self.access = access or AccessPolicy(auth)
        self.settings = settings or WorkspaceSettings()
        self.audit = audit

    # --- schemas and ownership ---------------------------------------------------------------

    def schema_of(self, identity: Identity, *, create: bool = False) -> str | None:
        """The workspace schema of ``identity``: recorded on first use when ``create``
        (``user_<name>``; see :mod:`skyvault.workspace.names`), else None before that."""
        user = self.require_user(identity)
        held = self.auth.workspace_schema_of(user)
        if held is not None or not create:
            return held
        owners = self.auth.workspace_owners()
        # A directory of the data root that is no one's workspace (an archive schema an
        # operator happened to call user_x) is never claimed.
        free = (
            c
            for c in schema_candidates(user)
            if owners.get(c) == user or not (self.data_dir / c).exists()
        )
        return self.auth.claim_workspace_schema(user, free, utc_now())

    def owner_of(self, schema: str) -> str | None:
        """The user whose workspace ``schema`` is, or None (an archive schema)."""
        return self.auth.workspace_owners().get(schema)

    # --- the caller's tables -----------------------------------------------------------------

    def create_table(
        self,
        identity: Identity,
        name: str,
        definition: TableDefinition,
        *,
        permissions: PermissionChange | None = None,
    ) -> TableMeta:
        """Create the empty table ``name`` (``user_<me>.TABLE``) with ``definition``'s columns
        (and rows, if it carries any), visible at once to its owner and whoever
        ``permissions`` grants it to.

        Raises
        ------
        AuthenticationRequired
            Anonymous caller.
        WorkspaceError
            A name that is not the caller's schema or not an identifier; bad columns.
        TableExists
            The schema holds a table of that name (compared without case).
        QuotaExceeded
            One table more (or its rows) would pass the caller's quota.
        """
        with self._audited(identity, "create", name) as event:
            parsed = UserTableName.parse(name)
            self.require_user(identity)
            schema = self.schema_of(identity, create=True)
            assert schema is not None
            if parsed.schema.lower() != schema.lower():
                raise WorkspaceError(
                    f"you may create tables only in your own schema, {schema}",
                    hint=f"name the table {schema}.{parsed.table}",
                )
            target = TableName(schema, parsed.table)
            columns = tuple(
                dataclasses.replace(c, column_index=i) for i, c in enumerate(definition.columns)
            )
            if any(c.name.lower() == HEALPIX_COLUMN for c in columns):
                raise WorkspaceError(f"column name {HEALPIX_COLUMN} is reserved")
            arrow_schema = storage_schema(columns)
            rows = definition.rows
            if permissions is not None:
                self._check_groups(permissions)  # before anything is stored
            with self._table_lock(target):
                existing = self._existing_name(target)
                if existing is not None:
                    raise TableExists(
                        f"table {schema}.{existing} exists already",
                        hint="load rows into it (POST /load/NAME), or drop it first "
                        "(DELETE /tables/NAME)",
                    )
                # Grants left by an earlier table of this name (a crash inside a drop).
                self._clear_grants(target)
                meta = TableMeta(
                    schema=schema,
                    name=target.table,
                    kind="plain",
                    columns=columns,
                    nrows=0,
                    description=definition.description,
                    created=_now(),
                )
                source = [] if rows is None else conform_batches(rows, arrow_schema)
                meta = self._write_plain(identity, target, meta, None, source, new_table=True)
                if permissions is not None and not permissions.empty:
                    self._apply_permissions(target, permissions)
            event.rows = meta.nrows
            return meta

    def load(self, identity: Identity, name: str, data: TableSource) -> LoadResult:
        """Append ``data``'s rows to table ``name``, atomically.

        ``data``'s columns are matched to the table's by name (a column the table does not
        have is an error naming it; the table's columns ``data`` lacks are NULL) and cast to
        the stored types (a value that does not fit is an error naming the column).  The
        caller needs write access (owner or a read-write group).

        Raises
        ------
        CatalogNotFound
            No such table, or one the caller may not see.
        AccessDenied
            The caller may read the table but not write it.
        WorkspaceError
            Columns or values that do not fit the table.
        QuotaExceeded
            The rows would pass the owner's quota; nothing is stored.
        """
        with self._audited(identity, "load", name) as event:
            result = self._load(identity, UserTableName.parse(name), data)
            event.rows = result.rows
            return result

    def _load(self, identity: Identity, parsed: UserTableName, data: TableSource) -> LoadResult:
        with self.exclusive(identity, str(parsed), "write") as table:
            target = TableName(table.meta.schema, table.meta.name)
            owner = table.permissions.owner
            if table.meta.kind == "hats":
                return self._append_hats(identity, owner, target, table, data)
            before = table.meta.nrows
            stored = pq.read_schema(table.version_dir / "dataset" / "_common_metadata")
            meta = self._write_plain(
                identity,
                target,
                table.meta,
                table.version_dir,
                conform_batches(data, stored),
                owner=owner,
            )
            added_bytes = _version_bytes(self._link(target).resolve()) - _version_bytes(
                table.version_dir
            )
            return LoadResult(str(target), meta.nrows - before, meta.nrows, added_bytes)

    def load_file(self, identity: Identity, name: str, path: Path, content_type: str) -> LoadResult:
        """Load the rows of the file at ``path``, of MIME type ``content_type`` (CSV, TSV,
        FITS, VOTable, Parquet: :mod:`skyvault.workspace.readers`), into ``name``.

        The same as :meth:`load` (and audited as one), the file read as it is loaded; the
        errors of a body that is not its format, or whose columns do not fit, are
        :class:`~skyvault.errors.WorkspaceError` naming what to fix (never the file's path).
        """
        with self._audited(identity, "load", name) as event:
            check_content_type(content_type)
            parsed = UserTableName.parse(name)
            table = self._resolve(identity, parsed, "write")
            stored = pq.read_schema(table.version_dir / "dataset" / "_common_metadata")
            columns = pa.schema([f for f in stored if f.name != HEALPIX_COLUMN])
            batches = open_body(path, content_type, columns)
            result = self._load(identity, parsed, batches)
            event.rows = result.rows
            return result

    def drop(self, identity: Identity, name: str) -> None:
        """Drop table ``name`` (owner only): it disappears at once for every caller, its
        grants with it; its files are deleted.

        Raises ``CatalogNotFound`` for a table the caller cannot see, ``AccessDenied`` for one
        they may see but do not own.
        """
        with self._audited(identity, "drop", name):
            parsed = UserTableName.parse(name)
            with self.exclusive(identity, str(parsed), "owner") as table:
                self._remove(TableName(table.meta.schema, table.meta.name))

    def update_table(
        self,
        identity: Identity,
        name: str,
        definition: TableDefinition | None,
        *,
        permissions: PermissionChange | None = None,
    ) -> TableMeta:
        """Update the metadata of table ``name`` from ``definition`` (youcat's ``POST
        /tables/NAME``): the table's description and its columns' descriptions, units,
        UCDs, utypes and flags (:mod:`skyvault.workspace.metadata`); the rows stay.  The
        owner and read-write members may; ``permissions`` (youcat's ``x-vosi-*`` headers on
        the same request) change the grants too, which only the owner may.

        Raises
        ------
        CatalogNotFound
            No such table, or one the caller may not see.
        AccessDenied
            The caller may read the table but not change it (or its grants).
        WorkspaceError
            Nothing to update, or a document whose columns are not the table's (every
            difference named); nothing is changed.
        """
        from skyvault.workspace.metadata import merge_definition, publish_metadata

        with self._audited(identity, "update", name):
            parsed = UserTableName.parse(name)
            change = permissions if permissions is not None and not permissions.empty else None
            if definition is None and change is None:
                self.check_access(identity, name, "write")  # hidden: 404 before this 400
                raise WorkspaceError(
                    f"nothing to update in {parsed}",
                    hint="send a vosi:table document (Content-Type text/xml) or a VOTable of "
                    "FIELDs, as GET /tables/NAME serves them, or x-vosi-* headers",
                )
            need: Access = "owner" if change is not None else "write"
            try:
                self.check_access(identity, str(parsed), need)
            except AccessDenied as exc:
                if need == "owner" or self.owner_of(parsed.schema) is None:
                    raise  # grants are the owner's; an archive table is said as such
                raise AccessDenied(
                    f"you may read {parsed} but not change its metadata", hint=exc.hint
                ) from None
            with self.exclusive(identity, str(parsed), need) as table:
                target = TableName(table.meta.schema, table.meta.name)
                meta = table.meta
                if definition is not None:
                    own = TableMeta.read(table.version_dir)  # without appended rows
                    merged = merge_definition(own, definition)
                    if change is not None:
                        self._check_groups(change)  # before anything is published
                    meta = publish_metadata(self.data_dir, table.version_dir, merged)
                if change is not None:
                    self._apply_permissions(target, change)
                return meta

    def describe(self, identity: Identity, name: str) -> UserTable:
        """Table ``name`` as ``identity`` sees it (read access needed)."""
        parsed = UserTableName.parse(name)
        return self._resolve(identity, parsed, "read")

    def check_access(self, identity: Identity, name: str, need: Access) -> None:
        """Raise as the operations do unless ``identity`` may ``need`` table ``name``: 404 for
        a table missing or hidden, 403 for one visible with too little access."""
        self._resolve(identity, UserTableName.parse(name), need)

    def list_tables(self, identity: Identity) -> list[UserTable]:
        """The user tables ``identity`` may read: their own and those granted to them."""
        self.require_user(identity)
        snap = self.access.snapshot()
        out = []
        for schema, _owner in sorted(snap.schema_owners.items()):
            directory = self.data_dir / schema
            if not directory.is_dir():
                continue
            for entry in sorted(directory.iterdir()):
                if entry.name.startswith(".") or not entry.is_symlink():
                    continue
                if not self.access.can_read(identity, schema, entry.name, snap):
                    continue
                try:
                    out.append(self._resolve(identity, UserTableName(schema, entry.name), "read"))
                except CatalogNotFound:
                    continue
        return out

    def permissions(self, identity: Identity, name: str) -> TablePermissions:
        """The grants on ``name`` (anyone who may read the table may read them)."""
        return self.describe(identity, name).permissions

    def grants_of(self, schema: str, table: str) -> TablePermissions | None:
        """The grants on ``schema.table`` if it is in a workspace schema, else None.  No
        access check: for callers that already know the table is visible (``/tables``)."""
        snap = self.access.snapshot()
        owner = snap.schema_owners.get(schema)
        if owner is None:
            return None
        return self._permissions(TableName(schema, table), owner, snap)

    def set_permissions(
        self, identity: Identity, name: str, change: PermissionChange
    ) -> TablePermissions:
        """Change the grants on ``name`` (owner only); returns the grants after the change."""
        with self._audited(identity, "permissions", name):
            parsed = UserTableName.parse(name)
            table = self._resolve(identity, parsed, "owner")
            target = TableName(table.meta.schema, table.meta.name)
            self._apply_permissions(target, change)
            return self._permissions(target, table.permissions.owner)

    @contextlib.contextmanager
    def exclusive(self, identity: Identity, name: str, need: Access) -> Iterator[UserTable]:
        """Hold table ``name`` for a change nothing else may interleave with (loads, drops
        and the index job of one table take turns), checking ``identity`` has ``need``.

        The block gets the table as it is once the turn came; what it publishes (with
        :func:`~skyvault.catalog.layout.building`, or :func:`~skyvault.catalog.ingest.ingest`
        to rewrite the table as HATS) is what the next holder sees.
        """
        parsed = UserTableName.parse(name)
        first = self._resolve(identity, parsed, need)
        target = TableName(first.meta.schema, first.meta.name)
        with self._table_lock(target):
            # The table may have changed (or gone) while we waited for the lock.
            yield self._resolve(identity, UserTableName(target.schema, target.table), need)

    # --- quotas ------------------------------------------------------------------------------

    def quota(self, user: str) -> Quota:
        """``user``'s effective quota: the operator's overrides over the defaults."""
        record = self.auth.get_workspace_quota(user)
        return Quota(record.max_bytes, record.max_rows, record.max_tables).over(
            self.settings.default_quota()
        )

    def set_quota(self, user: str, quota: Quota) -> None:
        """Set ``user``'s overrides (None keeps a default; all None removes them)."""
        self.auth.set_workspace_quota(
            user, WorkspaceQuotaRecord(quota.max_bytes, quota.max_rows, quota.max_tables)
        )

    def usage(self, user: str) -> Usage:
        """What ``user``'s schema holds now: bytes of current files, rows, tables."""
        schema = self.auth.workspace_schema_of(user)
        if schema is None:
            return Usage()
        total = Usage()
        for link in self._table_links(schema):
            total = total + _table_usage(link)
        return total

    # --- operators ---------------------------------------------------------------------------

    def workspaces(self) -> list[WorkspaceInfo]:
        """Every user's workspace: schema, usage, quota and tables (for the operator CLI)."""
        out = []
        for schema, owner in sorted(self.auth.workspace_owners().items()):
            metas = []
            for link in self._table_links(schema):
                with contextlib.suppress(CatalogError, OSError):
                    metas.append(_current_meta(link))
            out.append(
                WorkspaceInfo(owner, schema, self.usage(owner), self.quota(owner), tuple(metas))
            )
        return out

    def drop_any(self, name: str, *, operator: str | None = None) -> None:
        """Drop a user's table as the operator (no ownership check; audited with
        ``operator`` as the user)."""
        who = Identity(operator) if operator else None
        with self._audit_block(who, "drop", name):
            parsed = UserTableName.parse(name)
            if not is_user_schema(parsed.schema) or self.owner_of(parsed.schema) is None:
                raise WorkspaceError(f"{parsed.schema} is not a user's workspace schema")
            target = TableName(parsed.schema, parsed.table)
            with self._table_lock(target):
                if not self._link(target).is_symlink():
                    raise _not_found(parsed)
                self._remove(target)

    def drop_index(self, name: str, column: str, *, operator: str | None = None) -> TableMeta:
        """Drop the index on ``column`` of a user's table ``name`` (the operator's
        ``skyvault workspace drop-index``; youcat has no request for it), as a new version
        published atomically; audited as ``workspace.drop_index`` with ``operator``.

        A column index (unique or not) is metadata: ``indexed`` goes, and with it the
        uniqueness later loads are checked against (the rows stay in the order the index
        sorted them).  The sky index — named by its RA column (or ``_healpix_29``) — is
        undone: the rows, appended ones included, are written back as a plain table.

        Raises
        ------
        WorkspaceError
            Not a user's table, or the column is not indexed.
        UsageError
            No such column.
        """
        from skyvault.catalog.registry import Registry
        from skyvault.workspace.index import find_column
        from skyvault.workspace.metadata import publish_metadata

        who = Identity(operator) if operator else None
        with self._audit_block(who, "drop_index", f"{name} ({column})"):
            parsed = UserTableName.parse(name)
            owner = self.owner_of(parsed.schema)
            if not is_user_schema(parsed.schema) or owner is None:
                raise WorkspaceError(f"{parsed.schema} is not a user's workspace schema")
            target = TableName(parsed.schema, parsed.table)
            link = self._link(target)
            with self._table_lock(target):
                if not link.is_symlink():
                    raise _not_found(parsed)
                version = link.resolve()
                own = TableMeta.read(version)
                col = find_column(own, column)
                unique = unique_columns(version)
                kept = tuple(c for c in unique if c != col.name)
                if own.kind == "hats" and col.name in (own.ra_column, HEALPIX_COLUMN):
                    stored = Registry._load(version, link)
                    data_columns = [c for c in own.columns if c.name != HEALPIX_COLUMN]
                    columns = tuple(
                        dataclasses.replace(
                            c, column_index=i, indexed=c.indexed and c.name != own.ra_column
                        )
                        for i, c in enumerate(data_columns)
                    )
                    plain = dataclasses.replace(
                        own, kind="plain", columns=columns, nrows=0, ra_column=None,
                        dec_column=None, margin_arcsec=None, max_rows_per_partition=None,
                        n_partitions=0, created=_now(),
                    )  # fmt: skip
                    schema = storage_schema(columns)
                    batches = conform_batches(
                        (
                            batch
                            for f in stored.all_files
                            for batch in pq.ParquetFile(f).iter_batches(
                                batch_size=BATCH_ROWS, columns=schema.names
                            )
                        ),
                        schema,
                    )
                    return self._write_plain(
                        Identity(owner),
                        target,
                        plain,
                        None,
                        batches,
                        owner=owner,
                        unique=kept,
                        replacing=True,
                    )
                if not col.indexed:
                    sky = own.kind == "hats"
                    sky_hint = f"; the sky index is dropped by naming {own.ra_column}" * sky
                    raise WorkspaceError(f"column {col.name} of {parsed} is not indexed{sky_hint}")
                columns = tuple(
                    dataclasses.replace(c, indexed=False) if c.name == col.name else c
                    for c in own.columns
                )
                meta = dataclasses.replace(own, columns=columns)
                return publish_metadata(self.data_dir, version, meta, unique=kept)

    # --- internals: access -------------------------------------------------------------------

    @staticmethod
    def require_user(identity: Identity) -> str:
        """The caller's user name; :class:`AuthenticationRequired` (401) when anonymous."""
        if identity.user is None:
            raise AuthenticationRequired(
                "user tables need an identity: anonymous callers cannot create, load, "
                "drop or share tables",
                hint="log in (send your token) and try again",
            )
        return identity.user

    def _resolve(self, identity: Identity, name: UserTableName, need: Access) -> UserTable:
        """The table, if ``identity`` may ``need`` it; else the errors the methods list."""
        self.require_user(identity)
        snap = self.access.snapshot()
        schema = _stored_schema(name.schema, snap)
        if not self.access.can_read(identity, schema, name.table, snap):
            raise _not_found(name)
        target = TableName(schema, name.table)
        link = self._link(target)
        if not link.is_symlink():
            raise _not_found(name)
        owner = snap.schema_owners.get(schema)
        if owner is None:
            raise AccessDenied(
                f"{name} is an archive table: it cannot be changed through the workspace",
                hint="create your own tables in your schema, user_<your name>",
            )
        perms = self._permissions(target, owner, snap)
        access = _access_of(identity, perms)
        if _RANK[access] < _RANK[need]:
            what = "drop it or change its grants" if need == "owner" else "load rows into it"
            raise AccessDenied(
                f"you may read {name} but not {what}",
                hint=f"ask its owner, {owner}, "
                + ("" if need == "owner" else "to grant one of your groups read-write"),
            )
        try:
            version = link.resolve(strict=True)
            meta = _current_meta(link)
        except (OSError, CatalogError):
            raise _not_found(name) from None
        return UserTable(meta, perms, access, version)

    def _permissions(
        self, target: TableName, owner: str, snap: GrantSnapshot | None = None
    ) -> TablePermissions:
        """The grants on ``target`` (its schema's too) in ``snap`` (default: now)."""
        snap = snap if snap is not None else self.access.snapshot()
        grantees = snap.grantees(target.schema, target.table)
        write = frozenset(g for g in snap.writers(target.schema, target.table) if g is not None)
        read = frozenset(g for g in grantees if g is not None) - write
        return TablePermissions(owner, None in grantees, read, write)

    def _apply_permissions(self, target: TableName, change: PermissionChange) -> None:
        owner = self.owner_of(target.schema) or ""
        wanted = change.applied(self._permissions(target, owner))
        desired: dict[str | None, GrantLevel] = {g: "read" for g in wanted.read_groups}
        desired |= {g: "write" for g in wanted.write_groups}
        if wanted.public:
            desired[None] = "read"
        self._check_groups(change)
        existing = {
            g.group: g.level
            for g in self.auth.list_grants()
            if g.schema == target.schema and g.table == target.table
        }
        for held, level in existing.items():
            if held not in desired:
                self.auth.remove_grant(GrantRecord(target.schema, target.table, held))
            elif level == "write" and desired[held] == "read":
                self.auth.remove_grant(GrantRecord(target.schema, target.table, held, "write"))
        now = utc_now()
        for grantee, wanted_level in desired.items():
            self.auth.add_grant(
                GrantRecord(target.schema, target.table, grantee, wanted_level), now
            )

    def _check_groups(self, change: PermissionChange) -> None:
        """Refuse groups the auth database does not hold (built-in identities)."""
        if not self.require_known_groups:
            return
        named = (change.read_groups or frozenset()) | (change.write_groups or frozenset())
        for name in sorted(named):
            if not self.auth.group_exists(name):
                raise WorkspaceError(
                    f"no group {name!r}",
                    hint="name a group that exists (ask the operator to create it)",
                )

    def _clear_grants(self, target: TableName) -> None:
        for grant in self.auth.list_grants():
            if grant.schema == target.schema and grant.table == target.table:
                self.auth.remove_grant(grant)

    # --- internals: files --------------------------------------------------------------------

    def _link(self, target: TableName) -> Path:
        return self.data_dir / target.schema / target.table

    def _table_links(self, schema: str) -> list[Path]:
        directory = self.data_dir / schema
        if not directory.is_dir():
            return []
        return [
            e for e in sorted(directory.iterdir()) if not e.name.startswith(".") and e.is_symlink()
        ]

    def _existing_name(self, target: TableName) -> str | None:
        for link in self._table_links(target.schema):
            if link.name.lower() == target.table.lower():
                return link.name
        return None

    @contextlib.contextmanager
    def _table_lock(self, target: TableName) -> Iterator[None]:
        path = schema_lock_file(self.data_dir, target.schema, f"{target.table}.workspace")
        with file_lock(path, wait=True):
            yield

    @contextlib.contextmanager
    def _owner_lock(self, schema: str) -> Iterator[None]:
        path = schema_lock_file(self.data_dir, schema, "workspace-quota")
        with file_lock(path, wait=True):
            yield

    def _write_plain(
        self,
        identity: Identity,
        target: TableName,
        meta: TableMeta,
        current: Path | None,
        batches: Iterable[pa.RecordBatch],
        *,
        new_table: bool = False,
        owner: str | None = None,
        unique: Sequence[str] = (),
        replacing: bool = False,
    ) -> TableMeta:
        """Publish a new version of plain table ``target``: the files of ``current`` (hard
        links) plus ``batches``, after the quota check.  Returns the new metadata.  Without
        ``current``, ``unique`` are the new version's unique columns (with it: those of
        ``current``); ``replacing``: the new version replaces the table's current one, whose
        rows and bytes the quota check does not count."""
        owner = owner or self.require_user(identity)
        quota = self.quota(owner)
        schema = storage_schema(meta.columns) if current is None else None
        with building(self.data_dir, target) as build:
            dataset = build.path / "dataset"
            dataset.mkdir()
            if schema is None:
                assert current is not None
                schema = pq.read_schema(current / "dataset" / "_common_metadata")
            # A table without rows has one empty file (its schema): nothing to keep.
            kept: list[Path] = []
            folded = 0
            if current is not None and meta.nrows:
                kept, small = _link_files(current, dataset)
                if small:  # many small files: their rows go into this load's new file
                    folded = sum(pq.ParquetFile(f).metadata.num_rows for f in small)
                    batches = itertools.chain(_file_batches(small, schema), batches)
            base_usage = self.usage(owner)
            replaced = _table_usage(self._link(target)) if replacing else Usage()
            limit_rows = None if quota.max_rows is None else quota.max_rows - base_usage.rows
            if limit_rows is not None:
                limit_rows += folded + replaced.rows
            try:
                added = _write_batches(dataset, schema, batches, len(kept), limit_rows) - folded
            except _TooManyRows as exc:
                more = Usage(0, exc.rows - folded - replaced.rows, 0)
                what = f"{'creating' if new_table else 'loading'} {target}"
                check_quota(owner, base_usage, base_usage + more, quota, what)
                raise AssertionError("unreachable: the quota check refuses") from None
            if current is None:
                write_unique(build.path, unique)
            else:
                unique = carry_unique(current, build.path)
                if unique and added:
                    linked = {p.name for p in kept}
                    check_unique(
                        str(target),
                        unique,
                        [str(p) for p in kept],
                        [str(p) for p in sorted(dataset.glob("part-*.parquet"))
                         if p.name not in linked],
                    )  # fmt: skip
            if added == 0 and not kept:
                pq.write_table(schema.empty_table(), dataset / "part-00000.parquet")
            pq.write_metadata(schema, dataset / "_common_metadata")
            new_meta = dataclasses.replace(meta, nrows=meta.nrows + added)
            new_meta.write(build.path)
            new_usage = Usage(_version_bytes(build.path), new_meta.nrows, 1)
            action = "creating" if new_table else "loading"
            with self._owner_lock(target.schema):
                now = self.usage(owner)
                # What this table counts for now (nothing for a new one), replaced by the new
                # version.
                old = Usage(_version_bytes(current), meta.nrows, 1) if current else replaced
                check_quota(owner, now, now - old + new_usage, quota, f"{action} {target}")
                # building() publishes when this block ends, still under the owner's lock.
        return new_meta

    def _append_hats(
        self,
        identity: Identity,
        owner: str,
        target: TableName,
        table: UserTable,
        data: TableSource,
    ) -> LoadResult:
        """A load into a sky-indexed table: the rows become an append batch."""
        from skyvault.catalog.append import append

        stored = pq.read_schema(table.version_dir / "dataset" / "_common_metadata")
        columns = pa.schema([f for f in stored if f.name != HEALPIX_COLUMN])
        rows = pa.Table.from_batches(list(conform_batches(data, columns)), schema=columns)
        unique = unique_columns(table.version_dir)
        if unique:
            from skyvault.catalog.registry import Registry

            stored_files = Registry._load(table.version_dir, self._link(target)).all_files
            check_unique(str(target), unique, stored_files, rows)
        quota = self.quota(owner)
        with self._owner_lock(target.schema):
            now = self.usage(owner)
            after = now + Usage(rows.nbytes, rows.num_rows, 0)
            check_quota(owner, now, after, quota, f"loading {target}")
            before = _table_usage(self._link(target)).bytes
            append(self.data_dir, str(target), rows, batch_id=uuid.uuid4().hex)
        total = table.meta.nrows + rows.num_rows
        return LoadResult(
            str(target), rows.num_rows, total, _table_usage(self._link(target)).bytes - before
        )

    def _remove(self, target: TableName) -> None:
        """Unpublish ``target`` (one unlink: gone for every caller at once), then delete its
        grants and its files."""
        link = self._link(target)
        link.unlink()
        _fsync_dir(link.parent)
        self._clear_grants(target)
        internal = self.data_dir / target.schema / INTERNAL_DIR
        shutil.rmtree(internal / "versions" / target.table, ignore_errors=True)
        shutil.rmtree(internal / "deltas" / target.table, ignore_errors=True)
        (self.data_dir / target.schema / f".{target.table}.snapshot").unlink(missing_ok=True)

    # --- internals: audit --------------------------------------------------------------------

    @contextlib.contextmanager
    def _audited(self, identity: Identity, action: str, name: str) -> Iterator[_AuditNote]:
        with self._audit_block(identity, action, name) as note:
            yield note

    @contextlib.contextmanager
    def _audit_block(
        self, identity: Identity | None, action: str, name: str
    ) -> Iterator[_AuditNote]:
        note = _AuditNote()
        if self.audit is None:
            yield note
            return
        with self.audit.request(identity, f"workspace.{action}", query=name[:300]) as event:
            yield note
            event.rows = note.rows


@dataclass
class _AuditNote:
    rows: int | None = None


# --- helpers -------------------------------------------------------------------------------


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _access_of(identity: Identity, perms: TablePermissions) -> Access:
    if identity.user is not None and identity.user == perms.owner:
        return "owner"
    if not perms.write_groups.isdisjoint(identity.groups):
        return "write"
    return "read"


def _stored_schema(schema: str, snap: GrantSnapshot) -> str:
    """The schema as stored: a workspace schema named in another case maps to its own."""
    if schema in snap.schema_owners:
        return schema
    for stored in snap.schema_owners:
        if stored.lower() == schema.lower():
            return stored
    return schema


def _current_meta(link: Path) -> TableMeta:
    """The metadata of the table at ``link`` now, rows appended since its version included."""
    version = link.resolve(strict=True)
    meta = TableMeta.read(version)
    if meta.kind == "hats":
        snap = read_snapshot(version)
        meta = dataclasses.replace(meta, nrows=meta.nrows + snap.delta_rows)
    return meta


def _table_usage(link: Path) -> Usage:
    try:
        version = link.resolve(strict=True)
        meta = _current_meta(link)
    except (OSError, CatalogError):
        return Usage(0, 0, 1)
    size = _version_bytes(version)
    if meta.kind == "hats":
        with contextlib.suppress(CatalogError, OSError):
            for f in read_snapshot(version).files:
                size += os.stat(f.path).st_size
    return Usage(size, meta.nrows, 1)


def _version_bytes(root: Path) -> int:
    """Bytes of the files under ``root`` (a file linked twice counted once)."""
    seen: set[int] = set()
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            try:
                st = os.stat(os.path.join(dirpath, name))
            except OSError:
                continue
            if st.st_ino not in seen:
                seen.add(st.st_ino)
                total += st.st_size
    return total


def _link_files(current: Path, dataset: Path) -> tuple[list[Path], list[Path]]:
    """Hard-link the data files of version ``current`` into ``dataset`` (copy where the
    file system has no hard links); returns the files linked and the ones left out to be
    rewritten.

    Each load adds a file; once a table has more than :data:`MAX_FILES`, the files under
    :data:`SMALL_FILE_ROWS` rows are not linked but rewritten into the load's new file, so
    many small loads do not leave a query thousands of files to open.
    """
    sources = sorted((current / "dataset").glob("part-*.parquet"))
    small: list[Path] = []
    if len(sources) > MAX_FILES:
        small = [f for f in sources if pq.ParquetFile(f).metadata.num_rows < SMALL_FILE_ROWS]
        if len(small) < 2:
            small = []
    out = []
    for source in sources:
        if source in small:
            continue
        target = dataset / source.name
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)
        out.append(target)
    return out, small


def _file_batches(files: Iterable[Path], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    for path in files:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS):
            yield pa.RecordBatch.from_arrays(batch.columns, schema=schema)


def _write_batches(
    dataset: Path,
    schema: pa.Schema,
    batches: Iterable[pa.RecordBatch],
    first_part: int,
    limit_rows: int | None,
) -> int:
    """Write ``batches`` as new ``part-NNNNN.parquet`` files numbered after ``first_part``
    existing ones; returns the rows written.  Raises :class:`_TooManyRows` as soon as more
    than ``limit_rows`` rows came (the quota cannot be met: no need to read the rest)."""
    strings = [f.name for f in schema if pa.types.is_string(f.type)]
    existing = sorted(dataset.glob("part-*.parquet"))
    number = int(existing[-1].stem.split("-")[1]) + 1 if existing else first_part
    total = 0
    in_file = 0
    writer: pq.ParquetWriter | None = None
    try:
        for batch in _read_ahead(batches):
            if batch.num_rows == 0:
                continue
            if limit_rows is not None and total + batch.num_rows > limit_rows:
                raise _TooManyRows(total + batch.num_rows)
            if writer is None or in_file >= FILE_ROWS:
                if writer is not None:
                    writer.close()
                writer = pq.ParquetWriter(
                    dataset / f"part-{number:05d}.parquet",
                    schema,
                    compression="snappy",
                    # Dictionaries pay for repeated strings, not for ids and coordinates.
                    use_dictionary=strings,
                    write_page_index=True,
                )
                number += 1
                in_file = 0
            writer.write_batch(batch, row_group_size=ROW_GROUP_ROWS)
            in_file += batch.num_rows
            total += batch.num_rows
    finally:
        if writer is not None:
            writer.close()
    return total


def _read_ahead(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """``batches``, the next one read in another thread while this one is written: parsing
    (CSV, FITS) and Parquet encoding both release the GIL, so on two cores a load takes
    about the longer of the two instead of their sum."""
    source = iter(batches)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="workspace-read") as pool:
        pending = pool.submit(next, source, None)
        while True:
            batch = pending.result()
            if batch is None:
                return
            pending = pool.submit(next, source, None)
            yield batch


class _TooManyRows(Exception):
    """A load passed the rows it could add within the quota (``rows`` read so far)."""

    def __init__(self, rows: int) -> None:
        super().__init__(rows)
        self.rows = rows


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
