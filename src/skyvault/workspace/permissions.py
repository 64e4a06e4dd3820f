"""Who may do what with a user table, and youcat's text form of it.

=================== ======================================================================
who                 may
=================== ======================================================================
the owner           everything: read, load, index, drop, change the grants
``rw-group``        read, load, index (members of a group granted read-write)
``r-group``         read: query, see it in /tables and TAP_SCHEMA, read its grants
``public=true``     read, for everyone (anonymous callers too, when the service lets them in)
anyone else         nothing: the table does not exist for them (404, as a missing one)
=================== ======================================================================

The owner is the owner of the schema (``user_<name>``); grants are the auth database's
grants on the table (:mod:`skyvault.auth.access`), at the level ``read`` or ``write``.
youcat's text form (``GET|POST {tap}/permissions/{schema.table}``, ``text/plain``)::

    owner=alice
    public=false
    r-group=survey-team
    rw-group=

A POST names only the keys it changes; ``r-group=`` (empty) removes the read groups.  Several
groups are several lines of the same key, or one value separated by commas or spaces.
Group names may be given as youcat's group URIs (``ivo://example.org/gms?survey-team``):
the part after ``?`` is the group.  ``owner`` cannot be changed (the line is accepted only
empty or naming the current owner).  The same keys travel as the headers ``x-vosi-owner``,
``x-vosi-auth-read`` (``true`` = not public), ``x-vosi-group-ro``/``x-vosi-group-read`` and
``x-vosi-group-rw``/``x-vosi-group-write`` (``null`` = none).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from skyvault.auth.storage import validate_name
from skyvault.errors import UsageError, WorkspaceError

__all__ = [
    "PERMISSIONS_TYPE",
    "PermissionChange",
    "TablePermissions",
    "format_permissions",
    "parse_permission_headers",
    "parse_permissions",
    "permission_headers",
]

PERMISSIONS_TYPE = "text/plain"
_SPLIT = re.compile(r"[,\s]+")


@dataclass(frozen=True)
class TablePermissions:
    """The grants on one user table."""

    owner: str
    public: bool = False
    read_groups: frozenset[str] = field(default_factory=frozenset)
    write_groups: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class PermissionChange:
    """What a request changes; None leaves that part as it is."""

    public: bool | None = None
    read_groups: frozenset[str] | None = None
    write_groups: frozenset[str] | None = None

    @property
    def empty(self) -> bool:
        return self.public is None and self.read_groups is None and self.write_groups is None

    def applied(self, current: TablePermissions) -> TablePermissions:
        return TablePermissions(
            current.owner,
            current.public if self.public is None else self.public,
            current.read_groups if self.read_groups is None else self.read_groups,
            current.write_groups if self.write_groups is None else self.write_groups,
        )


def format_permissions(perms: TablePermissions) -> str:
    """youcat's text form: ``owner=``, ``public=``, ``r-group=``, ``rw-group=`` lines (a group
    list comma-separated)."""
    return (
        f"owner={perms.owner}\n"
        f"public={'true' if perms.public else 'false'}\n"
        f"r-group={','.join(sorted(perms.read_groups))}\n"
        f"rw-group={','.join(sorted(perms.write_groups))}\n"
    )


def permission_headers(perms: TablePermissions) -> dict[str, str]:
    """The ``x-vosi-*`` response headers of ``perms`` (youcat's names)."""
    return {
        "x-vosi-owner": perms.owner,
        "x-vosi-auth-read": "false" if perms.public else "true",
        "x-vosi-group-ro": ",".join(sorted(perms.read_groups)) or "null",
        "x-vosi-group-rw": ",".join(sorted(perms.write_groups)) or "null",
    }


def _group(value: str) -> str:
    """A group name, from a plain name or youcat's ``ivo://authority/gms?name`` URI."""
    name = value.strip()
    if name.startswith("ivo://"):
        name = name.partition("?")[2]
    try:
        return validate_name("group", name)
    except UsageError as exc:
        raise WorkspaceError(exc.message, hint=exc.hint) from None


def _groups(values: list[str]) -> frozenset[str]:
    out = set()
    for value in values:
        out |= {_group(v) for v in _SPLIT.split(value.strip()) if v}
    return frozenset(out)


def _boolean(key: str, value: str) -> bool:
    folded = value.strip().lower()
    if folded not in ("true", "false"):
        raise WorkspaceError(f"{key}={value!r}: the value must be true or false")
    return folded == "true"


def parse_permissions(text: str, owner: str) -> PermissionChange:
    """The change a ``text/plain`` permissions body asks for (see the module docstring)."""
    public: bool | None = None
    groups: dict[str, list[str]] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip().lower()
        if not sep:
            raise WorkspaceError(
                f"line {number} of the permissions is not key=value: {line[:80]!r}",
                hint="write lines like public=true, r-group=GROUP, rw-group=GROUP",
            )
        if key == "owner":
            if value.strip() not in ("", owner):
                raise WorkspaceError(
                    "the owner of a table cannot be changed",
                    hint="leave the owner line out (or empty)",
                )
        elif key == "public":
            public = _boolean(key, value)
        elif key in ("r-group", "rw-group"):
            groups.setdefault(key, []).append(value)
        else:
            raise WorkspaceError(
                f"line {number}: unknown permissions key {key!r}",
                hint="the keys are owner, public, r-group and rw-group",
            )
    return PermissionChange(
        public,
        _groups(groups["r-group"]) if "r-group" in groups else None,
        _groups(groups["rw-group"]) if "rw-group" in groups else None,
    )


def parse_permission_headers(headers: Mapping[str, str]) -> PermissionChange:
    """The change the ``x-vosi-*`` request headers ask for (``null`` = none)."""
    lowered = {k.lower(): v for k, v in headers.items()}

    def groups(*names: str) -> frozenset[str] | None:
        for name in names:
            if name in lowered:
                value = lowered[name].strip()
                return frozenset() if value.lower() in ("null", "") else _groups([value])
        return None

    public = None
    auth_read = lowered.get("x-vosi-auth-read")
    if auth_read is not None and auth_read.strip().lower() != "null":
        public = not _boolean("x-vosi-auth-read", auth_read)
    elif auth_read is not None:
        public = False
    return PermissionChange(
        public,
        groups("x-vosi-group-ro", "x-vosi-group-read"),
        groups("x-vosi-group-rw", "x-vosi-group-write"),
    )
