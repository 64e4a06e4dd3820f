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

Anonymous callers are told apart by their network address (:func:`client_address`, kept as
``Identity.client``): the connection's peer, or — only when the peer is one of the configured
``SKYVAULT_TRUSTED_PROXIES`` — the address the proxies forwarded (``Forwarded`` /
``X-Forwarded-For``).  Anonymous limits count per address (an IPv6 client per /64 network,
what one host or home gets), so one client cannot use up the share of the others.

``/availability`` (and the landing page) need no credentials: they say only whether the
service is up and how to reach it, and monitors probe availability without tokens.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from skyvault.auth import Identity
from skyvault.catalog.metadata import TableMeta
from skyvault.config import IPNetwork
from skyvault.errors import AccessDenied, SkyvaultError
from skyvault.service.context import ServiceContext, get_context

__all__ = [
    "Caller",
    "CallerDep",
    "IdentityDep",
    "client_address",
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


#: Longest client key kept (the job database column holds 64 characters).
_MAX_CLIENT_CHARS = 64


def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address in ``text`` (``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``, ``::1``), or None."""
    value = text.strip().strip('"').strip()
    if value.startswith("["):
        value = value[1:].split("]", 1)[0]
    elif value.count(":") == 1:  # IPv4 with a port
        value = value.split(":", 1)[0]
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


@functools.lru_cache(maxsize=4096)  # a pure function, asked for on every anonymous request
def _client_key(text: str) -> str:
    """What anonymous limits count by: an IPv4 address, an IPv6 /64 network, or (an
    opaque name a proxy gave, a test client's name) the text itself."""
    ip = _parse_ip(text)
    if ip is None:
        return text.strip().strip('"')[:_MAX_CLIENT_CHARS] or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{ip}/64", strict=False))
    return str(ip)


def _forwarded_chain(request: Request) -> list[str]:
    """The client addresses the proxies recorded, first (the original client) to last:
    ``Forwarded: for=...`` (RFC 7239) when present, otherwise ``X-Forwarded-For``."""
    headers = request.headers
    forwarded = headers.getlist("forwarded")
    if forwarded:
        chain = []
        for element in ",".join(forwarded).split(","):
            for pair in element.split(";"):
                name, _, value = pair.partition("=")
                if name.strip().lower() == "for" and value.strip():
                    chain.append(value.strip())
        return chain
    return [a.strip() for a in ",".join(headers.getlist("x-forwarded-for")).split(",") if a.strip()]


def _trusted(text: str, trusted: Sequence[IPNetwork]) -> bool:
    ip = _parse_ip(text)
    if ip is None:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in trusted)


def client_address(request: Request, trusted: Sequence[IPNetwork]) -> str:
    """The client of ``request`` as anonymous limits count it.

    The connection's peer address, unless the peer is a trusted proxy: then the forwarded
    chain is read from the right (the hop nearest to us), skipping trusted proxies, and the
    first address not trusted is the client (a client cannot fake its way past the proxy
    that appended its real address).  A chain of trusted proxies only gives its first entry.
    """
    peer = request.client.host if request.client is not None else "unknown"
    if not trusted or not _trusted(peer, trusted):
        return _client_key(peer)
    chain = _forwarded_chain(request)
    for hop in reversed(chain):
        if not _trusted(hop, trusted):
            return _client_key(hop)
    return _client_key(chain[0] if chain else peer)


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
    if identity.is_anonymous:
        trusted = context.settings.trusted_proxy_networks()
        identity = replace(identity, client=client_address(request, trusted))
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
