"""The auth database: users, groups, memberships, hashed tokens, grants and per-user limits.

SQLAlchemy 2 Core over SQLite at ``DIR/.skyvault/auth.sqlite3`` by default; any SQLAlchemy URL
works (``postgresql+psycopg://user@host/skyvault`` for a shared deployment).  The schema is
created on first use.

SQLite is opened in WAL mode with a busy time-out, so several processes (the CLI, server
workers) share one file: readers never block, and every write transaction starts with
``BEGIN IMMEDIATE`` so two writers queue for the lock instead of failing halfway.

Names are stored exactly as given and compared exactly (case-sensitive): a grant on
``dp02.Object`` does not cover a table stored as ``dp02.object``.  Times are timezone-aware
UTC datetimes on both sides of this module.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from skyvault import dbstore
from skyvault.catalog.layout import auth_database_file
from skyvault.dbstore import UTCDateTime
from skyvault.errors import UsageError

__all__ = [
    "GRANT_LEVELS",
    "AuthStorage",
    "GrantLevel",
    "GrantRecord",
    "GroupRecord",
    "LimitOverrides",
    "TokenRecord",
    "UserRecord",
    "WorkspaceQuotaRecord",
    "default_database_url",
    "utc_now",
    "validate_name",
]

# User and group names: what Gafaelfawr-style proxies send, and safe in a log line.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


def validate_name(kind: str, name: str) -> str:
    """Return ``name`` if it is a valid user or group name, else raise :class:`UsageError`."""
    if not _NAME.match(name):
        raise UsageError(
            f"{kind} name {name!r} is not valid",
            hint="use 1-64 letters, digits and . _ @ -, starting with a letter or digit",
        )
    return name


def default_database_url(data_dir: Path) -> str:
    """The SQLite URL of the built-in auth database under ``data_dir``."""
    return f"sqlite:///{auth_database_file(data_dir).absolute()}"


_metadata = sa.MetaData()

_users = sa.Table(
    "users",
    _metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("created", UTCDateTime, nullable=False),
)

_groups = sa.Table(
    "groups",
    _metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("created", UTCDateTime, nullable=False),
)

_memberships = sa.Table(
    "memberships",
    _metadata,
    sa.Column(
        "group_name",
        sa.String(64),
        sa.ForeignKey("groups.name", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column(
        "user_name",
        sa.String(64),
        sa.ForeignKey("users.name", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Index("ix_memberships_user", "user_name"),
)

_tokens = sa.Table(
    "tokens",
    _metadata,
    sa.Column("key_id", sa.String(32), primary_key=True),
    sa.Column(
        "user_name",
        sa.String(64),
        sa.ForeignKey("users.name", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("secret_hash", sa.String(64), nullable=False),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Column("expires", UTCDateTime, nullable=False),
    sa.Column("revoked", UTCDateTime, nullable=True),
    sa.Column("last_used", UTCDateTime, nullable=True),
    sa.Index("ix_tokens_user", "user_name"),
)

#: What a grant allows: ``read`` (query it), or ``write`` (append to it, and read it).
GrantLevel = Literal["read", "write"]
GRANT_LEVELS: tuple[GrantLevel, ...] = ("read", "write")

# group_name NULL means PUBLIC; table_name NULL means the whole schema.  Group names are
# plain strings (no foreign key): behind a proxy, groups exist only in the proxy's headers.
# One row per (target, grantee); ``level`` is the most it allows.  The column came after the
# table (databases made before it get it added by ``_create_schema``, their grants "read").
_grants = sa.Table(
    "grants",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("schema_name", sa.String(128), nullable=False),
    sa.Column("table_name", sa.String(128), nullable=True),
    sa.Column("group_name", sa.String(64), nullable=True),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Column("level", sa.String(8), nullable=False, server_default="read"),
)
sa.Index(
    "ux_grants",
    _grants.c.schema_name,
    sa.func.coalesce(_grants.c.table_name, ""),
    sa.func.coalesce(_grants.c.group_name, ""),
    unique=True,
)

# Per-user overrides of the default limits; NULL = use the default.  Keyed by name without a
# foreign key, so proxy users (not in ``users``) can have overrides too.
_limits = sa.Table(
    "user_limits",
    _metadata,
    sa.Column("user_name", sa.String(64), primary_key=True),
    sa.Column("max_running", sa.Integer, nullable=True),
    sa.Column("max_queued", sa.Integer, nullable=True),
    sa.Column("max_result_bytes", sa.BigInteger, nullable=True),
)

# The user workspace (skyvault.workspace): which schema is whose, and per-user quota
# overrides (NULL = the default).  Keyed by name without a foreign key, like user_limits.
_workspace_schemas = sa.Table(
    "workspace_schemas",
    _metadata,
    sa.Column("schema_name", sa.String(128), primary_key=True),
    sa.Column("owner_name", sa.String(64), nullable=False, unique=True),
    sa.Column("created", UTCDateTime, nullable=False),
)

_workspace_quotas = sa.Table(
    "workspace_quotas",
    _metadata,
    sa.Column("user_name", sa.String(64), primary_key=True),
    sa.Column("max_bytes", sa.BigInteger, nullable=True),
    sa.Column("max_rows", sa.BigInteger, nullable=True),
    sa.Column("max_tables", sa.Integer, nullable=True),
)


@dataclass(frozen=True)
class WorkspaceQuotaRecord:
    """A user's workspace quota overrides; None keeps the default."""

    max_bytes: int | None = None
    max_rows: int | None = None
    max_tables: int | None = None


@dataclass(frozen=True)
class UserRecord:
    """A built-in user and the groups it belongs to."""

    name: str
    created: datetime
    groups: tuple[str, ...]


@dataclass(frozen=True)
class GroupRecord:
    """A built-in group and its members."""

    name: str
    created: datetime
    members: tuple[str, ...]


@dataclass(frozen=True)
class TokenRecord:
    """What is stored about a token: never the token or its secret, only the secret's hash."""

    key_id: str
    user: str
    secret_hash: str
    created: datetime
    expires: datetime
    revoked: datetime | None = None
    last_used: datetime | None = None


@dataclass(frozen=True)
class GrantRecord:
    """Access to ``schema`` (``table`` None) or ``schema.table`` for ``group``.

    ``group`` None means PUBLIC: everyone, including anonymous callers when anonymous
    access is on.  ``level`` is ``read`` (query) or ``write`` (append, and read).
    """

    schema: str
    table: str | None
    group: str | None
    level: GrantLevel = "read"

    @property
    def target(self) -> str:
        return self.schema if self.table is None else f"{self.schema}.{self.table}"

    @property
    def grantee(self) -> str:
        return "PUBLIC" if self.group is None else self.group


@dataclass(frozen=True)
class LimitOverrides:
    """Per-user values that replace the defaults; None keeps the default."""

    max_running: int | None = None
    max_queued: int | None = None
    max_result_bytes: int | None = None


class AuthStorage:
    """The auth database.  One instance per process; safe to share between threads.

    Parameters
    ----------
    url
        SQLAlchemy database URL.  Use :meth:`for_data_dir` for the built-in SQLite file.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._is_sqlite = url.startswith("sqlite")
        # Token hashes live here: the SQLite file is readable by the service account only.
        self._engine: Engine = dbstore.create_engine(url, private=True)
        self._create_schema()
        #: Tells whether the database may have changed (every process's commits): what
        #: caches of grants are keyed by.
        self.changes = dbstore.ChangeWatch(self._engine)

    @classmethod
    def for_data_dir(cls, data_dir: Path, url: str | None = None) -> AuthStorage:
        """The auth database of the data root ``data_dir`` (or at ``url`` when given)."""
        return cls(url or default_database_url(data_dir))

    def close(self) -> None:
        """Release pooled connections."""
        self.changes.close()
        self._engine.dispose()

    # --- plumbing -------------------------------------------------------------------------

    def _create_schema(self) -> None:
        with self._write() as conn:
            _metadata.create_all(conn, checkfirst=True)
            self._add_grant_level(conn)

    @staticmethod
    def _add_grant_level(conn: Connection) -> None:
        """Give a database made before grant levels its ``level`` column (all grants read).

        Runs in the schema's write transaction (``BEGIN IMMEDIATE`` on SQLite), so two
        processes opening an old database at once add it once.
        """
        columns = {c["name"] for c in sa.inspect(conn).get_columns("grants")}
        if "level" in columns:
            return
        guard = "" if conn.dialect.name == "sqlite" else "IF NOT EXISTS "
        conn.execute(
            sa.text(
                f"ALTER TABLE grants ADD COLUMN {guard}level VARCHAR(8) NOT NULL DEFAULT 'read'"
            )
        )

    def _write(self) -> contextlib.AbstractContextManager[Connection]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite)."""
        return dbstore.write(self._engine)

    def _read(self) -> contextlib.AbstractContextManager[Connection]:
        return dbstore.read(self._engine)

    # --- users ----------------------------------------------------------------------------

    def add_user(self, name: str, now: datetime) -> None:
        """Create user ``name``; :class:`UsageError` if it exists."""
        validate_name("user", name)
        try:
            with self._write() as conn:
                conn.execute(_users.insert().values(name=name, created=now))
        except IntegrityError:
            raise UsageError(f"user {name!r} already exists") from None

    def remove_user(self, name: str) -> None:
        """Delete user ``name`` with its tokens and memberships."""
        with self._write() as conn:
            self._require_user(conn, name)
            conn.execute(_tokens.delete().where(_tokens.c.user_name == name))
            conn.execute(_memberships.delete().where(_memberships.c.user_name == name))
            conn.execute(_users.delete().where(_users.c.name == name))

    def user_exists(self, name: str) -> bool:
        with self._read() as conn:
            return self._user_exists(conn, name)

    def list_users(self) -> list[UserRecord]:
        with self._read() as conn:
            users = conn.execute(sa.select(_users).order_by(_users.c.name)).all()
            pairs = conn.execute(
                sa.select(_memberships.c.user_name, _memberships.c.group_name).order_by(
                    _memberships.c.group_name
                )
            ).all()
        groups: dict[str, list[str]] = {}
        for user, group in pairs:
            groups.setdefault(user, []).append(group)
        return [UserRecord(u.name, u.created, tuple(groups.get(u.name, ()))) for u in users]

    def groups_of(self, user: str) -> frozenset[str]:
        """The built-in groups ``user`` belongs to."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(_memberships.c.group_name).where(_memberships.c.user_name == user)
            ).scalars()
            return frozenset(rows)

    @staticmethod
    def _user_exists(conn: Connection, name: str) -> bool:
        found = conn.execute(sa.select(_users.c.name).where(_users.c.name == name)).first()
        return found is not None

    def _require_user(self, conn: Connection, name: str) -> None:
        if not self._user_exists(conn, name):
            raise UsageError(
                f"no user {name!r}", hint=f"create it with `skyvault users add {name}`"
            )

    # --- groups ---------------------------------------------------------------------------

    def add_group(self, name: str, members: Iterable[str], now: datetime) -> None:
        """Create group ``name`` with ``members`` (all existing users)."""
        validate_name("group", name)
        if name.upper() == "PUBLIC":
            raise UsageError(
                "PUBLIC is not a group name: it means everyone",
                hint="use `skyvault grant SCHEMA --public` for public data",
            )
        try:
            with self._write() as conn:
                conn.execute(_groups.insert().values(name=name, created=now))
                self._insert_members(conn, name, members)
        except IntegrityError:
            raise UsageError(
                f"group {name!r} already exists",
                hint=f"add members with `skyvault groups add-members {name} --members ...`",
            ) from None

    def add_members(self, group: str, members: Iterable[str]) -> None:
        """Add ``members`` to ``group``; members already in it are left as they are."""
        with self._write() as conn:
            self._require_group(conn, group)
            self._insert_members(conn, group, members)

    def remove_members(self, group: str, members: Iterable[str]) -> None:
        """Remove ``members`` from ``group``."""
        with self._write() as conn:
            self._require_group(conn, group)
            for user in members:
                conn.execute(
                    _memberships.delete().where(
                        (_memberships.c.group_name == group) & (_memberships.c.user_name == user)
                    )
                )

    def remove_group(self, name: str) -> None:
        """Delete group ``name``, its memberships and the grants made to it."""
        with self._write() as conn:
            self._require_group(conn, name)
            conn.execute(_memberships.delete().where(_memberships.c.group_name == name))
            conn.execute(_grants.delete().where(_grants.c.group_name == name))
            conn.execute(_groups.delete().where(_groups.c.name == name))

    def group_exists(self, name: str) -> bool:
        with self._read() as conn:
            found = conn.execute(sa.select(_groups.c.name).where(_groups.c.name == name)).first()
            return found is not None

    def list_groups(self) -> list[GroupRecord]:
        with self._read() as conn:
            groups = conn.execute(sa.select(_groups).order_by(_groups.c.name)).all()
            pairs = conn.execute(
                sa.select(_memberships.c.group_name, _memberships.c.user_name).order_by(
                    _memberships.c.user_name
                )
            ).all()
        members: dict[str, list[str]] = {}
        for group, user in pairs:
            members.setdefault(group, []).append(user)
        return [GroupRecord(g.name, g.created, tuple(members.get(g.name, ()))) for g in groups]

    def _insert_members(self, conn: Connection, group: str, members: Iterable[str]) -> None:
        existing = set(
            conn.execute(
                sa.select(_memberships.c.user_name).where(_memberships.c.group_name == group)
            ).scalars()
        )
        for user in dict.fromkeys(members):
            self._require_user(conn, user)
            if user not in existing:
                conn.execute(_memberships.insert().values(group_name=group, user_name=user))

    def _require_group(self, conn: Connection, name: str) -> None:
        found = conn.execute(sa.select(_groups.c.name).where(_groups.c.name == name)).first()
        if found is None:
            raise UsageError(
                f"no group {name!r}",
                hint=f"create it with `skyvault groups add {name} --members USER,...`",
            )

    # --- tokens ---------------------------------------------------------------------------

    def add_token(self, record: TokenRecord) -> None:
        """Store a new token record; its user must exist."""
        with self._write() as conn:
            self._require_user(conn, record.user)
            conn.execute(
                _tokens.insert().values(
                    key_id=record.key_id,
                    user_name=record.user,
                    secret_hash=record.secret_hash,
                    created=record.created,
                    expires=record.expires,
                    revoked=record.revoked,
                    last_used=record.last_used,
                )
            )

    def get_token(self, key_id: str) -> TokenRecord | None:
        """The record of key id ``key_id``, or None."""
        with self._read() as conn:
            row = conn.execute(sa.select(_tokens).where(_tokens.c.key_id == key_id)).first()
        return None if row is None else _token_record(row)

    def list_tokens(self, user: str) -> list[TokenRecord]:
        """Every token of ``user`` (revoked and expired ones too), oldest first."""
        with self._read() as conn:
            self._require_user(conn, user)
            rows = conn.execute(
                sa.select(_tokens)
                .where(_tokens.c.user_name == user)
                .order_by(_tokens.c.created, _tokens.c.key_id)
            ).all()
        return [_token_record(r) for r in rows]

    def revoke_token(self, key_id: str, now: datetime) -> bool:
        """Mark ``key_id`` revoked; False if there is no such token or it was revoked before."""
        with self._write() as conn:
            result = conn.execute(
                _tokens.update()
                .where((_tokens.c.key_id == key_id) & _tokens.c.revoked.is_(None))
                .values(revoked=now)
            )
            return result.rowcount > 0

    def touch_token(self, key_id: str, now: datetime) -> None:
        """Record that ``key_id`` was used at ``now``."""
        with self._write() as conn:
            conn.execute(_tokens.update().where(_tokens.c.key_id == key_id).values(last_used=now))

    # --- grants ---------------------------------------------------------------------------

    def add_grant(self, grant: GrantRecord, now: datetime) -> bool:
        """Store ``grant``; False if it (or more: write covers read) existed already.

        A write grant where a read grant is raises that grant to write.
        """
        try:
            with self._write() as conn:
                found = self._find_grant(conn, grant)
                if found is not None:
                    grant_id, level = found
                    if level in {"write", grant.level}:
                        return False
                    conn.execute(
                        _grants.update().where(_grants.c.id == grant_id).values(level="write")
                    )
                    return True
                conn.execute(
                    _grants.insert().values(
                        schema_name=grant.schema,
                        table_name=grant.table,
                        group_name=grant.group,
                        created=now,
                        level=grant.level,
                    )
                )
        except IntegrityError:
            return False  # another process granted the same thing at the same moment
        return True

    def remove_grant(self, grant: GrantRecord) -> bool:
        """Withdraw ``grant``; False if there was no such grant.

        Removing a read grant removes the grant whatever its level; removing a write grant
        lowers it to read (False if it was read only).
        """
        with self._write() as conn:
            found = self._find_grant(conn, grant)
            if found is None:
                return False
            grant_id, level = found
            if grant.level == "write":
                if level != "write":
                    return False
                conn.execute(_grants.update().where(_grants.c.id == grant_id).values(level="read"))
                return True
            conn.execute(_grants.delete().where(_grants.c.id == grant_id))
            return True

    def list_grants(self) -> list[GrantRecord]:
        with self._read() as conn:
            rows = conn.execute(
                sa.select(
                    _grants.c.schema_name,
                    _grants.c.table_name,
                    _grants.c.group_name,
                    _grants.c.level,
                )
            ).all()
        grants = [
            GrantRecord(r.schema_name, r.table_name, r.group_name, _level(r.level)) for r in rows
        ]
        return sorted(grants, key=lambda g: (g.schema, g.table or "", g.group or ""))

    @staticmethod
    def _find_grant(conn: Connection, grant: GrantRecord) -> tuple[int, GrantLevel] | None:
        """The id and level of the grant on ``grant``'s target to its grantee, if any."""
        table_match = (
            _grants.c.table_name.is_(None)
            if grant.table is None
            else _grants.c.table_name == grant.table
        )
        group_match = (
            _grants.c.group_name.is_(None)
            if grant.group is None
            else _grants.c.group_name == grant.group
        )
        found = conn.execute(
            sa.select(_grants.c.id, _grants.c.level).where(
                (_grants.c.schema_name == grant.schema) & table_match & group_match
            )
        ).first()
        return None if found is None else (int(found.id), _level(found.level))

    # --- limits ---------------------------------------------------------------------------

    def set_limits(self, user: str, overrides: LimitOverrides) -> None:
        """Replace the limit overrides of ``user`` (all None removes them)."""
        self._replace_overrides(_limits, user, overrides, LimitOverrides())

    def _replace_overrides(
        self,
        table: sa.Table,
        user: str,
        values: LimitOverrides | WorkspaceQuotaRecord,
        defaults: LimitOverrides | WorkspaceQuotaRecord,
    ) -> None:
        """Replace ``user``'s row of per-user overrides in ``table`` (its columns: the
        fields of the ``values`` dataclass); values equal to ``defaults`` remove it."""
        validate_name("user", user)
        with self._write() as conn:
            conn.execute(table.delete().where(table.c.user_name == user))
            if values != defaults:
                conn.execute(table.insert().values(user_name=user, **dataclasses.asdict(values)))

    def get_limits(self, user: str) -> LimitOverrides:
        with self._read() as conn:
            row = conn.execute(sa.select(_limits).where(_limits.c.user_name == user)).first()
        if row is None:
            return LimitOverrides()
        return LimitOverrides(row.max_running, row.max_queued, row.max_result_bytes)

    # --- the user workspace -----------------------------------------------------------------

    def claim_workspace_schema(self, owner: str, candidates: Iterable[str], now: datetime) -> str:
        """The workspace schema of ``owner``: the one recorded, else the first of
        ``candidates`` no other user holds, recorded now (first use)."""
        validate_name("user", owner)
        for candidate in candidates:
            try:
                with self._write() as conn:
                    held = conn.execute(
                        sa.select(_workspace_schemas.c.schema_name).where(
                            _workspace_schemas.c.owner_name == owner
                        )
                    ).scalar()
                    if held is not None:
                        return str(held)
                    taken = conn.execute(
                        sa.select(_workspace_schemas.c.owner_name).where(
                            sa.func.lower(_workspace_schemas.c.schema_name) == candidate.lower()
                        )
                    ).scalar()
                    if taken is not None:
                        continue
                    conn.execute(
                        _workspace_schemas.insert().values(
                            schema_name=candidate, owner_name=owner, created=now
                        )
                    )
                    return candidate
            except IntegrityError:
                continue  # another process claimed it at the same moment: look again
        raise UsageError(f"no workspace schema is free for user {owner!r}")

    def workspace_schema_of(self, owner: str) -> str | None:
        """The workspace schema recorded for ``owner``, or None before first use."""
        with self._read() as conn:
            found = conn.execute(
                sa.select(_workspace_schemas.c.schema_name).where(
                    _workspace_schemas.c.owner_name == owner
                )
            ).scalar()
        return None if found is None else str(found)

    def workspace_owners(self) -> dict[str, str]:
        """Every workspace schema and its owner."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(_workspace_schemas.c.schema_name, _workspace_schemas.c.owner_name)
            ).all()
        return {r.schema_name: r.owner_name for r in rows}

    def set_workspace_quota(self, user: str, quota: WorkspaceQuotaRecord) -> None:
        """Replace the workspace quota overrides of ``user`` (all None removes them)."""
        self._replace_overrides(_workspace_quotas, user, quota, WorkspaceQuotaRecord())

    def get_workspace_quota(self, user: str) -> WorkspaceQuotaRecord:
        with self._read() as conn:
            row = conn.execute(
                sa.select(_workspace_quotas).where(_workspace_quotas.c.user_name == user)
            ).first()
        if row is None:
            return WorkspaceQuotaRecord()
        return WorkspaceQuotaRecord(row.max_bytes, row.max_rows, row.max_tables)


def _level(stored: str | None) -> GrantLevel:
    """A stored level; anything but ``write`` reads (the safe side)."""
    return "write" if stored == "write" else "read"


def _token_record(row: sa.Row[Any]) -> TokenRecord:
    return TokenRecord(
        key_id=row.key_id,
        user=row.user_name,
        secret_hash=row.secret_hash,
        created=row.created,
        expires=row.expires,
        revoked=row.revoked,
        last_used=row.last_used,
    )


def utc_now() -> datetime:
    """The current time, timezone-aware UTC (the default clock)."""
    return datetime.now(UTC)
