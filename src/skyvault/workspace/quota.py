"""Workspace quotas: how much each user may keep in their schema, and the check.

Three limits per user, each with a default (:class:`WorkspaceSettings`, from
``SKYVAULT_WORKSPACE_*`` variables) that an operator may override per user
(:class:`Quota`, stored in the auth database,
:meth:`~skyvault.auth.storage.AuthStorage.set_workspace_quota`):

=============== ======================================== ================================
limit           what counts                               default
=============== ======================================== ================================
``max_bytes``   bytes of the tables' current files         10 GiB
``max_rows``    rows of all the user's tables              100,000,000
``max_tables``  tables in the user's schema                100
=============== ======================================== ================================

A load or create that would pass any limit is refused with
:class:`~skyvault.errors.QuotaExceeded` (a DALI error, HTTP 413) that states the usage, what
the request would add and the limit, and stores nothing (the check is made on the new
version before it is published, under the owner's lock so that two loads cannot both pass).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from skyvault.errors import QuotaExceeded

__all__ = ["Quota", "Usage", "WorkspaceSettings", "check_quota", "format_bytes"]

GIB = 1024**3


class WorkspaceSettings(BaseSettings):
    """Workspace limits and defaults; ``SKYVAULT_WORKSPACE_*`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="SKYVAULT_WORKSPACE_", frozen=True)

    max_bytes: int = Field(default=10 * GIB, ge=0, description="default quota: bytes per user")
    max_rows: int = Field(
        default=100_000_000, ge=0, description="default quota: rows per user (all tables)"
    )
    max_tables: int = Field(default=100, ge=0, description="default quota: tables per user")
    max_body_bytes: int = Field(
        default=2 * GIB,
        ge=1,
        description="most bytes of one load request's body (POST /load/...)",
    )
    max_definition_bytes: int = Field(
        default=16 * 1024**2,
        ge=1,
        description="most bytes of one table definition (PUT /tables/...), rows included",
    )

    def default_quota(self) -> Quota:
        return Quota(self.max_bytes, self.max_rows, self.max_tables)


@dataclass(frozen=True)
class Quota:
    """A user's limits; in an override, None keeps the default."""

    max_bytes: int | None = None
    max_rows: int | None = None
    max_tables: int | None = None

    def over(self, defaults: Quota) -> Quota:
        """These limits, with the ``defaults`` where this one says None."""
        return Quota(
            self.max_bytes if self.max_bytes is not None else defaults.max_bytes,
            self.max_rows if self.max_rows is not None else defaults.max_rows,
            self.max_tables if self.max_tables is not None else defaults.max_tables,
        )


@dataclass(frozen=True)
class Usage:
    """What a user's schema holds: bytes of the current files, rows, tables."""

    bytes: int = 0
    rows: int = 0
    tables: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.bytes + other.bytes, self.rows + other.rows, self.tables + other.tables)

    def __sub__(self, other: Usage) -> Usage:
        return Usage(self.bytes - other.bytes, self.rows - other.rows, self.tables - other.tables)


def format_bytes(n: int) -> str:
    """``n`` bytes for a person: ``1.5 GiB``, ``12 KiB``, ``300 bytes``."""
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def check_quota(user: str, now: Usage, after: Usage, quota: Quota, action: str) -> None:
    """Refuse ``action`` if ``after`` (the usage it would leave) passes ``quota``.

    Only limits the action would raise usage past are refused: a user already over a limit
    an operator lowered may still drop tables and load into others that do not grow it.
    """
    problems = []
    if quota.max_bytes is not None and after.bytes > quota.max_bytes and after.bytes > now.bytes:
        problems.append(
            f"storage: {format_bytes(now.bytes)} used, this would make it "
            f"{format_bytes(after.bytes)}; the limit is {format_bytes(quota.max_bytes)}"
        )
    if quota.max_rows is not None and after.rows > quota.max_rows and after.rows > now.rows:
        problems.append(
            f"rows: {now.rows:,} stored, this would make {after.rows:,}; "
            f"the limit is {quota.max_rows:,}"
        )
    if (
        quota.max_tables is not None
        and after.tables > quota.max_tables
        and after.tables > now.tables
    ):
        problems.append(f"tables: {now.tables} in your schema; the limit is {quota.max_tables}")
    if problems:
        raise QuotaExceeded(
            f"{action} refused: it would exceed the workspace quota of {user} ("
            + "; ".join(problems)
            + "); nothing was stored",
            hint="drop tables you no longer need (DELETE /tables/NAME), or ask the operator "
            "for a larger quota",
        )
