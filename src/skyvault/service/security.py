"""Who calls, and what they may see: the FastAPI dependencies every TAP endpoint uses.

Each request is authenticated once (:func:`current_identity`): the configured
authenticator turns the headers into an :class:`~skyvault.auth.Identity`, kept on
``request.state.identity``.  Its visible tables are computed once (:func:`current_caller`,
one grant snapshot, ``request.state.visible_tables``) and are the only table list the
request uses — for ``/tables``, TAP_SCHEMA, ``/examples`` and the ADQL checker alike.

The status rule:

* **401** + ``WWW-Authenticate: Bearer realm="skyvault"`` and ``Basic realm="skyvault"``:
  credentials are needed — none were sent and anonymous access is off (or the service
  requires a group), or the ones sent are malformed, unknown, expired or revoked (always the
  same message; the Bearer challenge then carries ``error="invalid_token"``).
* **403** (DALI error, ``auth.denied``): the caller is authenticated but may not use the
  service at all — ``SKYVAULT_REQUIRED_GROUPS`` is set and they are in none of the groups.
* **Hidden is absent.**  A table the caller may not read, or a job of someone else, is
  reported exactly as one that does not exist (the ADQL "no table" error, 400; ``/tables/X``
  and jobs 404): a 403 there would confirm that it exists.

``/availability`` (and the landing page) need no credentials: they say only whether the
service is up and how to reach it, and monitors probe availability without tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from skyvault.auth import Identity
from skyvault.catalog.metadata import TableMeta
from skyvault.errors import AccessDenied, SkyvaultError
from skyvault.service.context import ServiceContext, get_context

__all__ = [
    "Caller",
    "CallerDep",
    "IdentityDep",
    "current_caller",
    "current_identity",
]


@dataclass(frozen=True)
class Caller:
    """The caller of one request and the stored tables they may read."""

    identity: Identity
    tables: list[TableMeta]

    @property
    def table_names(self) -> frozenset[str]:
        """``schema.table`` of every visible table (as stored)."""
        return frozenset(m.qualified_name for m in self.tables)


def _authenticate(context: ServiceContext, request: Request) -> Identity:
    auth = context.auth
    identity = auth.authenticator.authenticate(request.headers)
    auth.access.require_anonymous_allowed(identity)
    required = context.settings.required_group_set()
    if required:
        if identity.is_anonymous:
            raise auth.access.login_required()
        if required.isdisjoint(identity.groups):
            raise AccessDenied(
                f"{identity.user} may not use this service",
                hint="ask the service operator for access",
            )
    return identity


async def current_identity(request: Request) -> Identity:
    """FastAPI dependency: the caller, authenticated once per request.

    Raises :class:`~skyvault.errors.AuthenticationRequired` (401) or
    :class:`~skyvault.errors.AccessDenied` (403) as the module docstring says; a refusal is
    written to the audit log.
    """
    cached: Identity | None = getattr(request.state, "identity", None)
    if cached is not None:
        return cached
    context = get_context(request)
    try:
        if context.auth.settings.mode == "builtin" and "authorization" not in request.headers:
            # No credentials, built-in mode: anonymous, decided without any I/O.
            identity = _authenticate(context, request)
        else:  # a token to look up, or a proxy's user-info service to ask
            identity = await run_in_threadpool(_authenticate, context, request)
    except SkyvaultError as exc:
        context.auth.audit.record(
            None, request.url.path, outcome="error", error=exc.code, duration_s=0.0
        )
        raise
    request.state.identity = identity
    return identity


IdentityDep = Annotated[Identity, Depends(current_identity)]


async def current_caller(request: Request, identity: IdentityDep) -> Caller:
    """FastAPI dependency: the caller and their visible tables (one grant snapshot)."""
    cached: Caller | None = getattr(request.state, "caller", None)
    if cached is not None:
        return cached
    context = get_context(request)
    tables = await run_in_threadpool(context.visible_tables, identity)
    caller = Caller(identity, tables)
    request.state.caller = caller
    request.state.visible_tables = tables
    return caller


CallerDep = Annotated[Caller, Depends(current_caller)]
