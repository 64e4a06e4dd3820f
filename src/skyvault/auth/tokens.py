"""Built-in bearer tokens: creation, verification, revocation; only hashes are stored.

A token reads ``sv_<keyid>_<secret>``:

* ``keyid`` — 16 hex digits (64 random bits), the primary key of the token's row; it is not
  secret and appears in ``skyvault tokens list``;
* ``secret`` — 43 URL-safe base64 characters: 256 random bits from :mod:`secrets`.

The database holds SHA-256 of the secret, never the token or the secret.  A fast hash is the
right tool here: bcrypt/scrypt/argon2 exist to slow down guessing of *low-entropy* passwords
from a stolen hash, but a 256-bit random secret cannot be guessed at any hashing speed, so a
slow hash would only add tens of milliseconds to every request (and invite a cache of
verified tokens, which would delay revocation).

Verification looks the row up by key id and compares hashes with :func:`hmac.compare_digest`
(timing-safe; an unknown key id is compared against a dummy hash so that path does the same
work).  Expired, revoked, garbled and unknown tokens all fail with one and the same
:class:`~skyvault.errors.AuthenticationRequired` — message and hint identical — so a caller
learns nothing about which tokens or users exist.  Nothing is cached: a revocation takes
effect on the next request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from skyvault.auth.storage import AuthStorage, TokenRecord, utc_now
from skyvault.errors import AuthenticationRequired, UsageError

__all__ = [
    "DEFAULT_EXPIRES_DAYS",
    "INVALID_CREDENTIALS",
    "MAX_EXPIRES_DAYS",
    "Clock",
    "TokenInfo",
    "TokenService",
    "invalid_credentials",
]

Clock = Callable[[], datetime]

#: Lifetime of a token created without ``--expires``.
DEFAULT_EXPIRES_DAYS = 90
#: Longest lifetime a token may have (ten years).
MAX_EXPIRES_DAYS = 3650

#: The one message of every failed authentication.
INVALID_CREDENTIALS = "invalid or expired credentials"
_HINT = (
    "send 'Authorization: Bearer TOKEN', or HTTP Basic with the token as password; "
    "ask the service operator for a new token if yours has expired or been revoked"
)

_PREFIX = "sv"
_KEY_HEX = 16
_SECRET_BYTES = 32
_TOKEN = re.compile(r"sv_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
_KEY_ID = re.compile(r"[0-9a-f]{16}")
_MAX_TOKEN_LENGTH = 128
_DUMMY_HASH = hashlib.sha256(b"skyvault: no such key").hexdigest()
_TOUCH_INTERVAL = timedelta(minutes=5)


def invalid_credentials() -> AuthenticationRequired:
    """The error for every failed authentication (same message, same hint, every time)."""
    return AuthenticationRequired(INVALID_CREDENTIALS, hint=_HINT)


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def _parse(token: str) -> tuple[str, str] | None:
    """``(key_id, secret)`` of a well-formed token, else None."""
    if not isinstance(token, str) or len(token) > _MAX_TOKEN_LENGTH:
        return None
    match = _TOKEN.fullmatch(token)
    if match is None:
        return None
    return match.group(1), match.group(2)


@dataclass(frozen=True)
class TokenInfo:
    """A token as listed: everything but the secret."""

    key_id: str
    user: str
    created: datetime
    expires: datetime
    revoked: datetime | None
    last_used: datetime | None
    state: str  # "active", "expired" or "revoked"


class TokenService:
    """Create, verify, list and revoke built-in tokens.

    Parameters
    ----------
    storage
        The auth database.
    clock
        Returns the current UTC time; injectable for tests.
    """

    def __init__(self, storage: AuthStorage, clock: Clock = utc_now) -> None:
        self._storage = storage
        self._clock = clock

    def create_token(self, user: str, expires_days: float = DEFAULT_EXPIRES_DAYS) -> str:
        """A new token for existing ``user``, valid for ``expires_days`` days.

        The returned string is the only copy of the token: it cannot be recovered later.
        """
        if not 0 < expires_days <= MAX_EXPIRES_DAYS:
            raise UsageError(
                f"a token must expire after more than 0 and at most {MAX_EXPIRES_DAYS} days",
                hint=f"the default is {DEFAULT_EXPIRES_DAYS} days",
            )
        key_id = secrets.token_hex(_KEY_HEX // 2)
        secret = secrets.token_urlsafe(_SECRET_BYTES)
        now = self._clock()
        self._storage.add_token(
            TokenRecord(
                key_id=key_id,
                user=user,
                secret_hash=_hash_secret(secret),
                created=now,
                expires=now + timedelta(days=expires_days),
            )
        )
        return f"{_PREFIX}_{key_id}_{secret}"

    def verify(self, token: str) -> str:
        """The user ``token`` belongs to; :func:`invalid_credentials` for anything else."""
        parsed = _parse(token)
        if parsed is None:
            raise invalid_credentials()
        key_id, secret = parsed
        record = self._storage.get_token(key_id)
        expected = record.secret_hash if record is not None else _DUMMY_HASH
        matches = hmac.compare_digest(_hash_secret(secret).encode(), expected.encode())
        now = self._clock()
        if record is None or not matches or record.revoked is not None or now >= record.expires:
            raise invalid_credentials()
        if record.last_used is None or now - record.last_used >= _TOUCH_INTERVAL:
            self._storage.touch_token(key_id, now)
        return record.user

    def revoke(self, token_or_key_id: str) -> str:
        """Revoke a token given as the full token string or as its key id; returns the key id.

        A full token must carry the right secret (so a mistyped token cannot revoke someone
        else's); pass the key id (from ``skyvault tokens list``) to revoke without it.
        """
        text = token_or_key_id.strip()
        if _KEY_ID.fullmatch(text):
            key_id = text
        else:
            parsed = _parse(text)
            if parsed is None:
                raise UsageError(
                    "not a skyvault token or key id",
                    hint="a token reads sv_<16 hex digits>_<secret>; a key id is the 16 digits",
                )
            key_id, secret = parsed
            record = self._storage.get_token(key_id)
            if record is not None and not hmac.compare_digest(
                _hash_secret(secret).encode(), record.secret_hash.encode()
            ):
                raise UsageError(
                    f"the secret of that token does not match key id {key_id}",
                    hint=f"to revoke key {key_id} anyway, pass the key id alone",
                )
        return self.revoke_key(key_id)

    def revoke_key(self, key_id: str) -> str:
        """Revoke the token with key id ``key_id`` (effective on the next request)."""
        if self._storage.get_token(key_id) is None:
            raise UsageError(
                f"no token with key id {key_id}",
                hint="`skyvault tokens list USER` shows a user's key ids",
            )
        self._storage.revoke_token(key_id, self._clock())
        return key_id

    def list_tokens(self, user: str) -> list[TokenInfo]:
        """The tokens of ``user``, without secrets."""
        now = self._clock()
        out = []
        for r in self._storage.list_tokens(user):
            if r.revoked is not None:
                state = "revoked"
            elif now >= r.expires:
                state = "expired"
            else:
                state = "active"
            out.append(
                TokenInfo(r.key_id, r.user, r.created, r.expires, r.revoked, r.last_used, state)
            )
        return out
