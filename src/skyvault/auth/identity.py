"""Who is calling: an :class:`Identity` from a request's headers, in built-in or proxy mode.

Two :class:`Authenticator` implementations turn request headers into an identity:

* :class:`BuiltinAuthenticator` (the default) reads ``Authorization: Bearer TOKEN`` or HTTP
  Basic with the token as password (what TOPCAT and STILTS send), verifies the token against
  the auth database and takes the user's groups from it.  Proxy headers are ignored.
* :class:`ProxyAuthenticator` trusts an authenticating proxy in front of skyvault
  (Gafaelfawr, oauth2-proxy): the user comes from ``X-Auth-Request-User``, the groups from a
  comma-separated header or from a user-info URL (cached briefly).  ``Authorization`` is
  ignored.  Only safe when the proxy strips these headers from incoming requests and
  skyvault cannot be reached except through it (see ``docs/auth.md``).

No credentials at all gives the anonymous identity; what anonymous callers may do is the
access policy's business (:mod:`skyvault.auth.access`).  Malformed or wrong credentials are
never downgraded to anonymous: they raise :class:`~skyvault.errors.AuthenticationRequired`,
always with the same message.

Headers may be any mapping; names are matched case-insensitively.  A header that appears
twice (visible through a Starlette-style ``getlist``, or as two spellings in a plain dict) is
refused rather than guessed at.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from skyvault.auth.storage import AuthStorage, validate_name
from skyvault.auth.tokens import TokenService, invalid_credentials
from skyvault.errors import AuthServiceUnavailable, UsageError

__all__ = [
    "REALM",
    "Authenticator",
    "BuiltinAuthenticator",
    "Identity",
    "ProxyAuthenticator",
    "www_authenticate_challenges",
]

REALM = "skyvault"

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Identity:
    """The caller of one request: a user name and groups, or anonymous (``user`` None).

    ``client`` is the network address an anonymous caller is known by (set by the web
    edge; see ``docs/auth.md``): anonymous limits count per client, not for the world.
    """

    user: str | None
    groups: frozenset[str] = field(default_factory=frozenset)
    client: str | None = None

    @classmethod
    def anonymous(cls) -> Identity:
        return cls(None, frozenset())

    @property
    def is_anonymous(self) -> bool:
        return self.user is None

    def __str__(self) -> str:
        return self.user if self.user is not None else "(anonymous)"


class Authenticator(Protocol):
    """Turns the headers of a request into an :class:`Identity`."""

    def authenticate(self, headers: Mapping[str, str]) -> Identity:
        """The caller's identity; anonymous without credentials.

        Raises
        ------
        AuthenticationRequired
            Credentials were sent but are malformed, unknown, expired or revoked.
        AuthServiceUnavailable
            (proxy mode) the user-info service could not be asked for the user's groups.
        """
        ...


def www_authenticate_challenges(realm: str = REALM, *, invalid_token: bool = False) -> list[str]:
    """``WWW-Authenticate`` values for a 401 response: Bearer first, then Basic.

    With ``invalid_token`` the Bearer challenge carries ``error="invalid_token"``
    (RFC 6750) — for requests that sent credentials which were refused.
    """
    bearer = f'Bearer realm="{realm}"'
    if invalid_token:
        bearer += ', error="invalid_token"'
    return [bearer, f'Basic realm="{realm}"']


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """The single value of header ``name`` (case-insensitive); duplicates are refused."""
    getlist: Any = getattr(headers, "getlist", None)
    if callable(getlist):
        values = [str(v) for v in getlist(name)]
    else:
        wanted = name.lower()
        values = [v for k, v in headers.items() if k.lower() == wanted]
    if len(values) > 1:
        raise invalid_credentials()
    return values[0] if values else None


class BuiltinAuthenticator:
    """Tokens from the auth database, sent as Bearer or as the password of HTTP Basic.

    With Basic, the user name may be left empty or be the token owner's name (TOPCAT asks
    for both); any other name is refused like a wrong token.  The token alone identifies the
    caller — the user name is checked only so that a token pasted under someone else's name
    fails loudly instead of silently acting as its real owner.

    Parameters
    ----------
    storage
        The auth database (users, groups, tokens).
    tokens
        Token verification; by default a :class:`TokenService` on ``storage``.
    """

    def __init__(self, storage: AuthStorage, tokens: TokenService | None = None) -> None:
        self._storage = storage
        self._tokens = tokens or TokenService(storage)

    def authenticate(self, headers: Mapping[str, str]) -> Identity:
        value = _header(headers, "Authorization")
        if value is None:
            return Identity.anonymous()
        scheme, _, credentials = value.strip().partition(" ")
        credentials = credentials.strip()
        basic_user: str | None = None
        if scheme.lower() == "bearer":
            token = credentials
        elif scheme.lower() == "basic":
            basic_user, token = _decode_basic(credentials)
        else:
            raise invalid_credentials()
        user = self._tokens.verify(token)
        if basic_user not in (None, "", user):
            raise invalid_credentials()
        return Identity(user, self._storage.groups_of(user))


def _decode_basic(credentials: str) -> tuple[str, str]:
    """``(user, password)`` of HTTP Basic credentials; malformed ones are refused."""
    try:
        decoded = base64.b64decode(credentials.encode("ascii"), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):  # bad base64, non-ASCII input, bad UTF-8
        raise invalid_credentials() from None
    user, colon, password = decoded.partition(":")
    if not colon:
        raise invalid_credentials()
    return user, password


Fetch = Callable[[urllib.request.Request, float], bytes]


def _urlopen(request: urllib.request.Request, timeout: float) -> bytes:
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body: bytes = response.read(1_000_000)
        return body


class ProxyAuthenticator:
    """Identity asserted by a trusted authenticating proxy.

    Parameters
    ----------
    user_header
        Header carrying the authenticated user name.  Absent or empty: anonymous.
    groups_header
        Header carrying the user's groups, comma-separated.  Ignored when ``userinfo_url``
        is set.
    userinfo_url
        URL answering with JSON ``{"groups": [...]}`` (names, or objects with a ``name`` as
        Gafaelfawr's ``/auth/api/v1/user-info`` gives); ``{user}`` in it is replaced by the
        URL-quoted user name.  If the answer has a ``username`` it must be the header's.
    userinfo_token_header
        Request header whose value is sent to the user-info URL as a Bearer token (the
        delegated token Gafaelfawr passes in ``X-Auth-Request-Token``).
    userinfo_bearer
        A fixed Bearer token for the user-info URL, used when the request carries none.
    cache_seconds
        How long the groups fetched for a user are reused.
    timeout
        Time limit of one user-info request, in seconds.
    """

    def __init__(
        self,
        *,
        user_header: str = "X-Auth-Request-User",
        groups_header: str | None = "X-Auth-Request-Groups",
        userinfo_url: str | None = None,
        userinfo_token_header: str | None = "X-Auth-Request-Token",
        userinfo_bearer: str | None = None,
        cache_seconds: float = 60.0,
        timeout: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
        fetch: Fetch = _urlopen,
    ) -> None:
        if userinfo_url is not None and not userinfo_url.startswith(("http://", "https://")):
            raise UsageError(f"user-info URL {userinfo_url!r} is not an http(s) URL")
        self.user_header = user_header
        self.groups_header = groups_header if userinfo_url is None else None
        self.userinfo_url = userinfo_url
        self.userinfo_token_header = userinfo_token_header
        self._userinfo_bearer = userinfo_bearer
        self.cache_seconds = cache_seconds
        self._timeout = timeout
        self._monotonic = monotonic
        self._fetch = fetch
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def authenticate(self, headers: Mapping[str, str]) -> Identity:
        user = (_header(headers, self.user_header) or "").strip()
        if not user:
            return Identity.anonymous()
        try:
            validate_name("user", user)
        except UsageError:
            raise invalid_credentials() from None
        if self.userinfo_url is not None:
            return Identity(user, self._userinfo_groups(user, headers))
        if self.groups_header is None:
            return Identity(user, frozenset())
        raw = _header(headers, self.groups_header) or ""
        return Identity(user, frozenset(g.strip() for g in raw.split(",") if g.strip()))

    def _userinfo_groups(self, user: str, headers: Mapping[str, str]) -> frozenset[str]:
        now = self._monotonic()
        with self._lock:
            cached = self._cache.get(user)
        if cached is not None and cached[0] > now:
            return cached[1]
        groups = self._fetch_groups(user, headers)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache = {u: e for u, e in self._cache.items() if e[0] > now}
            self._cache[user] = (now + self.cache_seconds, groups)
        return groups

    def _fetch_groups(self, user: str, headers: Mapping[str, str]) -> frozenset[str]:
        assert self.userinfo_url is not None
        url = self.userinfo_url.replace("{user}", urllib.parse.quote(user, safe=""))
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        bearer = None
        if self.userinfo_token_header:
            bearer = _header(headers, self.userinfo_token_header)
        bearer = bearer or self._userinfo_bearer
        if bearer:
            request.add_header("Authorization", f"Bearer {bearer}")
        try:
            body = self._fetch(request, self._timeout)
            data = json.loads(body)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            _log.warning("user-info request for %s failed: %s", user, exc)
            raise _unavailable() from None
        groups = _groups_from_userinfo(data, user)
        if groups is None:
            _log.warning("user-info answer for %s is not understood: %.200r", user, data)
            raise _unavailable()
        return groups


def _unavailable() -> AuthServiceUnavailable:
    return AuthServiceUnavailable(
        "could not look up the groups of the authenticated user",
        hint="try again shortly; if this persists, tell the service operator",
    )


def _groups_from_userinfo(data: object, user: str) -> frozenset[str] | None:
    """Group names from a user-info answer, or None if it is not one (or not ``user``'s)."""
    if not isinstance(data, dict):
        return None
    username = data.get("username")
    if username is not None and username != user:
        return None
    raw = data.get("groups", [])
    if not isinstance(raw, list):
        return None
    names: set[str] = set()
    for item in raw:
        name = item.get("name") if isinstance(item, dict) else item
        if not isinstance(name, str):
            return None
        if name.strip():
            names.add(name.strip())
    return frozenset(names)
