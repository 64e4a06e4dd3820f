"""Build the auth services of one process from :class:`AuthSettings` and a data root."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from skyvault.auth.access import AccessPolicy
from skyvault.auth.audit import AuditLog
from skyvault.auth.config import AuthSettings
from skyvault.auth.identity import Authenticator, BuiltinAuthenticator, ProxyAuthenticator
from skyvault.auth.limits import LimitsPolicy, UserLimits
from skyvault.auth.storage import AuthStorage
from skyvault.auth.tokens import TokenService
from skyvault.catalog.layout import audit_log_file

__all__ = ["AuthServices", "build_auth"]


@dataclass(frozen=True)
class AuthServices:
    """Everything the service needs from auth, built once per process."""

    settings: AuthSettings
    storage: AuthStorage
    authenticator: Authenticator
    access: AccessPolicy
    limits: LimitsPolicy
    audit: AuditLog
    tokens: TokenService


def build_auth(
    data_dir: Path,
    settings: AuthSettings | None = None,
    *,
    async_url: str = "/tap/async",
    anonymous_lifetime: str = "1 day",
) -> AuthServices:
    """The auth services for data root ``data_dir``.

    ``async_url`` is the path of the UWS job list and ``anonymous_lifetime`` how long
    anonymous jobs live, both quoted in the hints of limit refusals.
    """
    settings = settings or AuthSettings()
    storage = AuthStorage.for_data_dir(data_dir, settings.database_url)
    tokens = TokenService(storage)
    authenticator: Authenticator
    if settings.mode == "proxy":
        bearer = settings.userinfo_bearer
        authenticator = ProxyAuthenticator(
            user_header=settings.user_header,
            groups_header=settings.groups_header,
            userinfo_url=settings.userinfo_url,
            userinfo_token_header=settings.userinfo_token_header,
            userinfo_bearer=bearer.get_secret_value() if bearer is not None else None,
            cache_seconds=settings.cache_seconds,
        )
    else:
        authenticator = BuiltinAuthenticator(storage, tokens)
    limits = LimitsPolicy(
        storage,
        UserLimits(
            max_running=settings.max_running,
            max_queued=settings.max_queued,
            max_result_bytes=settings.max_result_bytes,
            max_pending=settings.max_pending,
        ),
        UserLimits(
            max_running=settings.anonymous_max_running,
            max_queued=settings.anonymous_max_queued,
            max_result_bytes=settings.anonymous_max_result_bytes,
            max_pending=settings.anonymous_max_pending,
        ),
        async_url=async_url,
        anonymous_lifetime=anonymous_lifetime,
    )
    return AuthServices(
        settings=settings,
        storage=storage,
        authenticator=authenticator,
        access=AccessPolicy(storage, settings.anonymous),
        limits=limits,
        audit=AuditLog(settings.audit_log or audit_log_file(data_dir)),
        tokens=tokens,
    )
