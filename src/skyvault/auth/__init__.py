"""Identity, groups, tokens and access rules.

The web layer uses this package in four steps per request:

1. ``identity = authenticator.authenticate(request.headers)`` — built-in tokens
   (:class:`BuiltinAuthenticator`) or an authenticating proxy (:class:`ProxyAuthenticator`);
   a 401 carries :func:`www_authenticate_challenges`.
2. ``access.require_anonymous_allowed(identity)``; then ``access.visible_tables(identity,
   tables)`` is the table list for /tables, TAP_SCHEMA and the ADQL checker alike.
3. Jobs: :func:`new_job_id`, :func:`can_access_job`, :func:`can_list_job`;
   ``limits.check_sync_slot`` / ``check_queued`` / ``check_pending`` /
   ``check_result_storage`` before starting work (anonymous callers count per
   ``Identity.client``).
4. ``audit.request(identity, endpoint, query)`` around the work.

:func:`build_auth` builds all of it from :class:`AuthSettings` (``SKYVAULT_AUTH_*``).
"""

from skyvault.auth.access import AccessPolicy, grant_access, revoke_access
from skyvault.auth.audit import AuditEvent, AuditLog
from skyvault.auth.config import AuthSettings
from skyvault.auth.factory import AuthServices, build_auth
from skyvault.auth.identity import (
    Authenticator,
    BuiltinAuthenticator,
    Identity,
    ProxyAuthenticator,
    www_authenticate_challenges,
)
from skyvault.auth.jobs import can_access_job, can_list_job, is_valid_job_id, new_job_id
from skyvault.auth.limits import LimitsPolicy, UserLimits
from skyvault.auth.storage import AuthStorage
from skyvault.auth.tokens import TokenService

__all__ = [
    "AccessPolicy",
    "AuditEvent",
    "AuditLog",
    "AuthServices",
    "AuthSettings",
    "AuthStorage",
    "Authenticator",
    "BuiltinAuthenticator",
    "Identity",
    "LimitsPolicy",
    "ProxyAuthenticator",
    "TokenService",
    "UserLimits",
    "build_auth",
    "can_access_job",
    "can_list_job",
    "grant_access",
    "is_valid_job_id",
    "new_job_id",
    "revoke_access",
    "www_authenticate_challenges",
]
