"""Access rules: which tables an identity may see, and the grants that decide it.

A table is readable by an identity when a grant covers it — on the whole schema
(``skyvault grant SCHEMA ...``) or on the table (``skyvault grant SCHEMA.TABLE ...``) — and
names PUBLIC or one of the identity's groups, or when it is in the identity's own workspace
schema (``user_<name>``, :mod:`skyvault.workspace`).  **A table without any grant is private:**
nobody sees it until an operator grants it (``skyvault grant dp02_dc2_catalogs --public``
for the demo).  Names match exactly as stored on disk (case-sensitive).

A grant is ``read`` or ``write`` (``skyvault grant SCHEMA.TABLE --group G --write``): a write
grant lets the group's members append to the table (and read it).  Write grants go to groups
only, never to PUBLIC: anonymous callers never write.

Anonymous callers see public tables only, or nothing at all when anonymous access is off.
The schemas the service builds itself (``TAP_SCHEMA``) are visible to every caller allowed
in; their *contents* must be built from :meth:`AccessPolicy.visible_tables`.

:meth:`AccessPolicy.visible_tables` is meant to be the only way the service obtains its
table list: /tables, TAP_SCHEMA and the ADQL checker all get the filtered list, so a table
the caller may not read does not exist for that caller — an ADQL query naming it fails
exactly like one naming a table that was never ingested, whatever path (join, subquery,
CTE, UNION, delimited or oddly cased identifier) it takes.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING

from skyvault.auth.identity import Identity
from skyvault.auth.storage import AuthStorage, GrantLevel, GrantRecord, utc_now
from skyvault.auth.tokens import invalid_credentials
from skyvault.errors import AuthenticationRequired, UsageError

if TYPE_CHECKING:
    from skyvault.catalog.metadata import TableMeta

__all__ = [
    "SERVICE_SCHEMAS",
    "AccessPolicy",
    "GrantSnapshot",
    "grant_access",
    "parse_target",
    "revoke_access",
]

#: Schemas built by the service itself, visible to every caller allowed in at all.
SERVICE_SCHEMAS = frozenset({"TAP_SCHEMA"})

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_target(text: str) -> tuple[str, str | None]:
    """``(schema, table)`` of ``SCHEMA`` or ``SCHEMA.TABLE`` (table None for a schema)."""
    parts = text.split(".")
    if len(parts) not in (1, 2) or not all(_IDENTIFIER.fullmatch(p) for p in parts):
        raise UsageError(
            f"{text!r} is not SCHEMA or SCHEMA.TABLE",
            hint="use the names as stored, e.g. dp02_dc2_catalogs or dp02_dc2_catalogs.Object",
        )
    return parts[0], parts[1] if len(parts) == 2 else None


@dataclass(frozen=True)
class GrantSnapshot:
    """The grants at one moment, indexed for lookups during one request.

    ``schema_groups``/``table_groups`` hold every grant (a write grant reads too);
    ``schema_writers``/``table_writers`` the write grants only.
    """

    schema_groups: dict[str, frozenset[str | None]]
    table_groups: dict[tuple[str, str], frozenset[str | None]]
    schema_writers: dict[str, frozenset[str | None]] = field(default_factory=dict)
    table_writers: dict[tuple[str, str], frozenset[str | None]] = field(default_factory=dict)
    schema_owners: Mapping[str, str] = field(default_factory=dict)
    """Workspace schemas (``user_<name>``) and their owners, who read every table there."""

    @classmethod
    def of(
        cls, grants: Sequence[GrantRecord], owners: Mapping[str, str] | None = None
    ) -> GrantSnapshot:
        schemas: dict[str, set[str | None]] = {}
        tables: dict[tuple[str, str], set[str | None]] = {}
        schema_writers: dict[str, set[str | None]] = {}
        table_writers: dict[tuple[str, str], set[str | None]] = {}
        for g in grants:
            if g.table is None:
                schemas.setdefault(g.schema, set()).add(g.group)
                if g.level == "write":
                    schema_writers.setdefault(g.schema, set()).add(g.group)
            else:
                tables.setdefault((g.schema, g.table), set()).add(g.group)
                if g.level == "write":
                    table_writers.setdefault((g.schema, g.table), set()).add(g.group)
        return cls(
            {k: frozenset(v) for k, v in schemas.items()},
            {k: frozenset(v) for k, v in tables.items()},
            {k: frozenset(v) for k, v in schema_writers.items()},
            {k: frozenset(v) for k, v in table_writers.items()},
            dict(owners or {}),
        )

    @cached_property
    def owner_names(self) -> frozenset[str]:
        """The users who own a workspace schema (their visible lists are their own)."""
        return frozenset(self.schema_owners.values())

    def grantees(self, schema: str, table: str) -> frozenset[str | None]:
        """The groups (None = PUBLIC) that may read ``schema.table``."""
        empty: frozenset[str | None] = frozenset()
        return self.schema_groups.get(schema, empty) | self.table_groups.get((schema, table), empty)

    def writers(self, schema: str, table: str) -> frozenset[str | None]:
        """The groups that may write (append to) ``schema.table``."""
        empty: frozenset[str | None] = frozenset()
        return self.schema_writers.get(schema, empty) | self.table_writers.get(
            (schema, table), empty
        )


class AccessPolicy:
    """Decides what an identity may read.

    Parameters
    ----------
    storage
        The auth database holding the grants (read afresh on every call: a grant or revoke
        applies to the next request).
    anonymous_allowed
        Whether callers without credentials get in at all (to public data only).
    service_schemas
        Schemas the service synthesises, visible to everyone allowed in.
    """

    def __init__(
        self,
        storage: AuthStorage,
        anonymous_allowed: bool = True,
        *,
        service_schemas: frozenset[str] = SERVICE_SCHEMAS,
    ) -> None:
        self._storage = storage
        self.anonymous_allowed = anonymous_allowed
        self._service_schemas = service_schemas
        self._lock = threading.Lock()
        self._snapshot: tuple[int | None, GrantSnapshot | None] = (None, None)
        self._visible = _VisibleCache()

    def require_anonymous_allowed(self, identity: Identity) -> None:
        """Raise :class:`AuthenticationRequired` for an anonymous caller when that is off."""
        if identity.is_anonymous and not self.anonymous_allowed:
            raise self.login_required()

    @staticmethod
    def login_required() -> AuthenticationRequired:
        """The error for an anonymous caller where credentials are needed."""
        error = invalid_credentials()
        return AuthenticationRequired("authentication required", hint=error.hint)

    def snapshot(self) -> GrantSnapshot:
        """The current grants, for many checks within one request.

        The same object is handed out while the auth database is unchanged (its
        :class:`~skyvault.dbstore.ChangeWatch` sees every commit, by any process, at once:
        a grant or revoke applies to the next request); without a watch (PostgreSQL) the
        grants are read every time.
        """
        version = self._storage.changes.version()
        if version is not None:
            with self._lock:
                cached_version, cached = self._snapshot
                if cached is not None and cached_version == version:
                    return cached
        snap = GrantSnapshot.of(self._storage.list_grants(), self._storage.workspace_owners())
        if version is not None:
            with self._lock:
                self._snapshot = (version, snap)
        return snap

    def visible_tables(
        self,
        identity: Identity,
        tables: Sequence[TableMeta],
        grants: GrantSnapshot | None = None,
    ) -> list[TableMeta]:
        """The ``tables`` ``identity`` may read, in their original order (a new list).

        The answer is kept per (anonymous or not, groups, and the user's name when they own
        a workspace schema) for the same grant snapshot and the same table metadata
        objects, so callers sharing access share the filtering.
        """
        if identity.is_anonymous and not self.anonymous_allowed:
            return []
        snap = grants or self.snapshot()
        owner = (
            identity.user
            if not identity.is_anonymous and identity.user in snap.owner_names
            else None
        )
        key = (identity.is_anonymous, identity.groups, owner)
        found = self._visible.get(snap, tables, key)
        if found is None:
            found = [t for t in tables if self._allowed(identity, t.schema, t.name, snap)]
            self._visible.put(snap, tables, key, found)
        return list(found)

    def can_read(
        self,
        identity: Identity,
        schema: str,
        table: str,
        grants: GrantSnapshot | None = None,
    ) -> bool:
        """Whether ``identity`` may read ``schema.table`` (names as stored)."""
        if identity.is_anonymous and not self.anonymous_allowed:
            return False
        return self._allowed(identity, schema, table, grants or self.snapshot())

    def can_write(
        self,
        identity: Identity,
        schema: str,
        table: str,
        grants: GrantSnapshot | None = None,
    ) -> bool:
        """Whether ``identity`` may write (append to) ``schema.table``: a write grant to one
        of its groups, or the table is in the identity's own workspace schema.  Anonymous
        callers never write; service schemas are never written."""
        if identity.is_anonymous or schema in self._service_schemas:
            return False
        snap = grants or self.snapshot()
        if snap.schema_owners.get(schema) == identity.user:
            return True
        return not snap.writers(schema, table).isdisjoint(identity.groups)

    def _allowed(self, identity: Identity, schema: str, table: str, snap: GrantSnapshot) -> bool:
        if schema in self._service_schemas:
            return True
        grantees = snap.grantees(schema, table)
        if None in grantees:
            return True
        if not identity.is_anonymous and snap.schema_owners.get(schema) == identity.user:
            return True
        return not identity.is_anonymous and not grantees.isdisjoint(identity.groups)


#: What decides a visible list: anonymous or not, the groups, a workspace owner's name.
_AccessKey = tuple[bool, frozenset[str], str | None]


class _VisibleCache:
    """Visible-table lists of one grant snapshot and one list of table metadata objects,
    per access key; a new snapshot or new tables (a grant changed, a table was published)
    start afresh.  The snapshot and the tables are held, so their identities stay theirs."""

    MAX_KEYS = 256

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot: GrantSnapshot | None = None
        self._tables: tuple[TableMeta, ...] = ()
        self._lists: dict[_AccessKey, list[TableMeta]] = {}

    def _same(self, snap: GrantSnapshot, tables: Sequence[TableMeta]) -> bool:
        return (
            self._snapshot is snap
            and len(self._tables) == len(tables)
            and all(a is b for a, b in zip(self._tables, tables, strict=True))
        )

    def get(
        self, snap: GrantSnapshot, tables: Sequence[TableMeta], key: _AccessKey
    ) -> list[TableMeta] | None:
        with self._lock:
            if not self._same(snap, tables):
                return None
            return self._lists.get(key)

    def put(
        self,
        snap: GrantSnapshot,
        tables: Sequence[TableMeta],
        key: _AccessKey,
        found: list[TableMeta],
    ) -> None:
        with self._lock:
            if not self._same(snap, tables) or len(self._lists) >= self.MAX_KEYS:
                self._snapshot, self._tables, self._lists = snap, tuple(tables), {}
            self._lists[key] = found


def grant_access(
    storage: AuthStorage,
    target: str,
    group: str | None,
    *,
    require_known_group: bool = True,
    now: datetime | None = None,
    level: GrantLevel = "read",
) -> tuple[GrantRecord, bool]:
    """Grant ``level`` access on ``target`` (``SCHEMA[.TABLE]``) to ``group`` (None = PUBLIC).

    Returns the grant and whether it is new (a write grant over a read grant is new).
    ``require_known_group`` refuses groups not in the auth database (built-in mode); behind
    a proxy groups exist only in its headers, so any valid name is accepted.  Write grants
    go to groups only.
    """
    schema, table = parse_target(target)
    if group is None and level == "write":
        raise UsageError(
            "write access cannot be granted to PUBLIC: anonymous callers never write",
            hint="grant it to a group: --group G --write",
        )
    if group is not None:
        if group.upper() == "PUBLIC":
            raise UsageError("PUBLIC is not a group", hint="use --public")
        if require_known_group and not storage.group_exists(group):
            raise UsageError(
                f"no group {group!r}",
                hint=f"create it first with `skyvault groups add {group} --members USER,...`",
            )
    grant = GrantRecord(schema, table, group, level)
    return grant, storage.add_grant(grant, now or utc_now())


def revoke_access(
    storage: AuthStorage, target: str, group: str | None, *, level: GrantLevel = "read"
) -> GrantRecord:
    """Remove the grant on ``target`` to ``group`` (None = PUBLIC); UsageError if absent.

    ``level="write"`` withdraws write access only: the group keeps reading.
    """
    schema, table = parse_target(target)
    grant = GrantRecord(schema, table, group, level)
    if not storage.remove_grant(grant):
        others = [g for g in storage.list_grants() if (g.schema, g.table) == (schema, table)]
        held = (
            ", ".join(g.grantee + (" (write)" if g.level == "write" else "") for g in others)
            or "nobody"
        )
        kind = "write grant" if level == "write" else "grant"
        raise UsageError(
            f"no {kind} on {grant.target} to {grant.grantee}",
            hint=f"{grant.target} is granted to: {held}",
        )
    return grant
