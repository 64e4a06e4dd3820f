"""Names in the workspace: whose schema is which, and which table names are acceptable.

Every user has one schema, ``user_<name>``: the user name in lower case with every
character that may not appear in an ADQL regular identifier (``.``, ``@``, ``-``) replaced by
``_``.  Two users whose names map to the same schema (``Alice`` and ``alice``, ``a.b`` and
``a_b``) get distinct schemas: the first to use the workspace keeps ``user_alice``, the next
gets ``user_alice_2``; the mapping is recorded when a schema is first used
(:meth:`skyvault.auth.storage.AuthStorage.claim_workspace_schema`) and never changes.

A table name in a request is ``schema.table``, both parts regular identifiers (letters,
digits, ``_``, not starting with a digit), at most :data:`MAX_NAME_CHARS` characters each.
Anything else — a path (``../x``, ``a/b``), quotes or other delimiters, a third part, an empty
part, a control character — is refused before anything touches the disk, with a message
saying what a name may be.  Service schemas (``TAP_SCHEMA``, ``ivoa``, ``tap_upload``) and
names starting with ``user_`` that are not the caller's schema are refused by the store,
which knows the caller.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from skyvault.errors import WorkspaceError

__all__ = [
    "HEALPIX_COLUMN",
    "MAX_COLUMNS",
    "MAX_NAME_CHARS",
    "RESERVED_SCHEMAS",
    "USER_SCHEMA_PREFIX",
    "UserTableName",
    "check_column_name",
    "is_user_schema",
    "schema_candidates",
]

#: Every workspace schema's name starts with this.
USER_SCHEMA_PREFIX = "user_"
#: Longest schema, table or column name accepted.
MAX_NAME_CHARS = 64
#: Most columns a user table may have.
MAX_COLUMNS = 1000
#: The sky index column the store computes itself (catalog.ingest): no user column has it.
HEALPIX_COLUMN = "_healpix_29"
#: Schemas the service builds or reserves (compared case-insensitively).
RESERVED_SCHEMAS = frozenset({"tap_schema", "ivoa", "tap_upload", "information_schema"})

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NAME_RULE = (
    "a name is SCHEMA.TABLE, each part letters, digits and underscores, not starting with a "
    f"digit, at most {MAX_NAME_CHARS} characters (e.g. user_alice.my_targets)"
)


def is_user_schema(schema: str) -> bool:
    """Whether ``schema`` is named like a workspace schema (``user_...``)."""
    return schema.lower().startswith(USER_SCHEMA_PREFIX)


def schema_candidates(user: str) -> list[str]:
    """Schema names for ``user``, in order of preference: ``user_<name>``, then
    ``user_<name>_2`` … for when another user holds the first (see the module docstring)."""
    base = re.sub(r"[^a-z0-9_]", "_", user.lower())
    stem = (USER_SCHEMA_PREFIX + base)[: MAX_NAME_CHARS - 4]
    return [stem, *(f"{stem}_{n}" for n in range(2, 1000))]


def _describe(text: str) -> str:
    """``text`` for an error message: cut short, control characters shown escaped."""
    short = text if len(text) <= 80 else text[:77] + "..."
    return repr(short)


@dataclass(frozen=True)
class UserTableName:
    """A table name as a request gives it: ``schema.table``, both regular identifiers."""

    schema: str
    table: str

    @classmethod
    def parse(cls, text: str) -> UserTableName:
        """Parse ``schema.table``; :class:`WorkspaceError` (400) for anything else."""
        parts = text.split(".")
        if len(parts) == 1:
            raise WorkspaceError(
                f"table name {_describe(text)} has no schema",
                hint=f"{_NAME_RULE}; your tables go in your own schema, user_<your name>",
            )
        if len(parts) != 2 or not all(_IDENTIFIER.fullmatch(p) for p in parts):
            raise WorkspaceError(f"{_describe(text)} is not a table name", hint=_NAME_RULE)
        if any(len(p) > MAX_NAME_CHARS for p in parts):
            raise WorkspaceError(f"{_describe(text)} is too long", hint=_NAME_RULE)
        if parts[0].lower() in RESERVED_SCHEMAS:
            raise WorkspaceError(
                f"{parts[0]} is a schema of the service: no table can be created, loaded or "
                "dropped there",
                hint="your tables go in your own schema, user_<your name>",
            )
        return cls(parts[0], parts[1])

    def __str__(self) -> str:
        return f"{self.schema}.{self.table}"


def check_column_name(name: str) -> str:
    """``name`` if it may name a column of a user table, else :class:`WorkspaceError`."""
    if not _IDENTIFIER.fullmatch(name) or len(name) > MAX_NAME_CHARS:
        raise WorkspaceError(
            f"column name {_describe(name)} is not a plain identifier",
            hint=f"use letters, digits and underscores, not starting with a digit, at most "
            f"{MAX_NAME_CHARS} characters",
        )
    if name.lower() == HEALPIX_COLUMN:
        raise WorkspaceError(
            f"column name {name} is reserved for the sky index skyvault computes",
            hint="rename the column",
        )
    return name
