"""Auth settings, read from ``SKYVAULT_AUTH_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["AuthSettings"]


class AuthSettings(BaseSettings):
    """How callers are identified and what they may do.

    Every field can be set from the environment with the ``SKYVAULT_AUTH_`` prefix
    (``SKYVAULT_AUTH_MODE=proxy``, ``SKYVAULT_AUTH_ANONYMOUS=false`` ...) or passed to the
    constructor.
    """

    model_config = SettingsConfigDict(env_prefix="SKYVAULT_AUTH_", frozen=True)

    mode: Literal["builtin", "proxy"] = Field(
        default="builtin",
        description=(
            "builtin: tokens from the auth database; proxy: trust the user and group headers "
            "set by an authenticating proxy (only behind one that strips them from requests)"
        ),
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the auth database (default: DATA/.skyvault/auth.sqlite3)",
    )
    anonymous: bool = Field(
        default=True, description="let callers without credentials read public tables"
    )
    user_header: str = Field(
        default="X-Auth-Request-User", description="proxy mode: header with the user name"
    )
    groups_header: str = Field(
        default="X-Auth-Request-Groups",
        description="proxy mode: header with the comma-separated groups",
    )
    userinfo_url: str | None = Field(
        default=None,
        description=(
            "proxy mode: URL giving {'groups': [...]} for the user ({user} is replaced by the "
            "name); when set, the groups header is ignored"
        ),
    )
    userinfo_token_header: str | None = Field(
        default="X-Auth-Request-Token",
        description="proxy mode: request header forwarded as Bearer token to the user-info URL",
    )
    userinfo_bearer: SecretStr | None = Field(
        default=None, description="proxy mode: fixed Bearer token for the user-info URL"
    )
    cache_seconds: float = Field(
        default=60.0, ge=0, description="proxy mode: how long user-info groups are reused"
    )
    max_running: int = Field(default=2, ge=1, description="jobs a user may run at once")
    max_queued: int = Field(
        default=10, ge=0, description="jobs a user may have QUEUED (sent PHASE=RUN, not started)"
    )
    max_pending: int = Field(
        default=100, ge=0, description="jobs a user may have PENDING (created, not yet run)"
    )
    max_result_bytes: int = Field(
        default=10 * 1024**3, ge=0, description="bytes of stored results per user"
    )
    anonymous_max_running: int = Field(
        default=2, ge=1, description="jobs one anonymous client (address) may run at once"
    )
    anonymous_max_queued: int = Field(
        default=4, ge=0, description="jobs one anonymous client may have QUEUED"
    )
    anonymous_max_pending: int = Field(
        default=10, ge=0, description="jobs one anonymous client may have PENDING"
    )
    anonymous_max_result_bytes: int = Field(
        default=1024**3, ge=0, description="bytes of stored results of one anonymous client"
    )
    audit_log: Path | None = Field(
        default=None,
        description="audit log file (default: DATA/.skyvault/audit.jsonl)",
    )
