"""Tokens: format, verification, expiry, revocation, and one identical error for every failure."""

from __future__ import annotations

import hmac
import re
import sqlite3
from pathlib import Path

import pytest

from skyvault.auth.storage import AuthStorage
from skyvault.auth.tokens import INVALID_CREDENTIALS, TokenService
from skyvault.errors import AuthenticationRequired, UsageError

from .conftest import FakeClock


def _refusal(tokens: TokenService, token: str) -> AuthenticationRequired:
    with pytest.raises(AuthenticationRequired) as info:
        tokens.verify(token)
    return info.value


def test_token_format_and_entropy(tokens: TokenService, alice: str) -> None:
    made = {tokens.create_token(alice, 30) for _ in range(20)}
    assert len(made) == 20
    for token in made:
        m = re.fullmatch(r"sv_([0-9a-f]{16})_([A-Za-z0-9_-]{43})", token)
        assert m is not None, token
        # 43 base64url characters carry 258 bits; token_urlsafe(32) gives 256 random ones.
        assert len(m.group(2)) * 6 >= 256
    assert all(tokens.verify(t) == alice for t in made)


def test_expiry_uses_the_clock(tokens: TokenService, alice: str, clock: FakeClock) -> None:
    token = tokens.create_token(alice, 2)
    clock.advance(days=2, seconds=-1)
    assert tokens.verify(token) == alice
    clock.advance(seconds=1)
    assert _refusal(tokens, token).message == INVALID_CREDENTIALS
    assert [t.state for t in tokens.list_tokens(alice)] == ["expired"]


@pytest.mark.parametrize("days", [0, -1, 3651])
def test_expiry_bounds(tokens: TokenService, alice: str, days: float) -> None:
    with pytest.raises(UsageError, match="expire"):
        tokens.create_token(alice, days)


def test_unknown_user_cannot_get_a_token(tokens: TokenService, alice: str) -> None:
    with pytest.raises(UsageError, match="no user 'carol'"):
        tokens.create_token("carol", 1)


def test_revocation_by_token_is_immediate(tokens: TokenService, alice: str) -> None:
    token = tokens.create_token(alice, 1)
    other = tokens.create_token(alice, 1)
    assert tokens.verify(token) == alice
    key_id = tokens.revoke(token)
    assert token.startswith(f"sv_{key_id}_")
    _refusal(tokens, token)
    assert tokens.verify(other) == alice
    states = {t.key_id: t.state for t in tokens.list_tokens(alice)}
    assert states[key_id] == "revoked"


def test_revocation_by_key_id_and_through_another_process_handle(
    tokens: TokenService, alice: str, data_dir: Path
) -> None:
    token = tokens.create_token(alice, 1)
    key_id = token.split("_")[1]
    other_process = TokenService(AuthStorage.for_data_dir(data_dir))
    other_process.revoke(key_id)
    _refusal(tokens, token)
    # Revoking again is harmless.
    assert tokens.revoke(key_id) == key_id


def test_revoke_refuses_garbage_and_wrong_secrets(tokens: TokenService, alice: str) -> None:
    token = tokens.create_token(alice, 1)
    with pytest.raises(UsageError, match="not a skyvault token"):
        tokens.revoke("hello")
    with pytest.raises(UsageError, match="no token with key id"):
        tokens.revoke("0123456789abcdef")
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    with pytest.raises(UsageError, match="does not match"):
        tokens.revoke(forged)
    assert tokens.verify(token) == alice


def _garbled(token: str) -> dict[str, str]:
    _, key_id, secret = token.split("_", 2)
    flipped = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    return {
        "empty": "",
        "spaces": "   ",
        "wrong prefix": f"xx_{key_id}_{secret}",
        "no prefix": f"{key_id}_{secret}",
        "truncated": token[:-1],
        "truncated to key": f"sv_{key_id}_",
        "extended": token + "A",
        "trailing newline": token + "\n",
        "wrong secret, valid key id": f"sv_{key_id}_{flipped}",
        "unknown key id": f"sv_{'0' * 16}_{secret}",
        "uppercase key id": f"sv_{key_id.upper()}_{secret}",
        "unicode": f"sv_{key_id}_{secret[:-1]}é",
        "unicode digits": f"sv_{key_id[:-1]}٣_{secret}",
        "very long": token + "A" * 100_000,
        "nul": f"sv_{key_id}_{secret[:-1]}\x00",
    }


def test_every_failure_is_the_same_error(
    tokens: TokenService, alice: str, clock: FakeClock
) -> None:
    token = tokens.create_token(alice, 1)
    expired = tokens.create_token(alice, 1)
    revoked = tokens.create_token(alice, 10)
    tokens.revoke(revoked)
    cases = _garbled(token)
    refusals = {name: _refusal(tokens, bad) for name, bad in cases.items()}
    clock.advance(days=1)
    refusals["expired"] = _refusal(tokens, expired)
    refusals["revoked"] = _refusal(tokens, revoked)
    shapes = {(str(e), e.message, e.hint, e.code, e.http_status) for e in refusals.values()}
    assert len(shapes) == 1, shapes
    text = str(next(iter(refusals.values())))
    assert INVALID_CREDENTIALS in text
    key_ids = {t.split("_")[1] for t in (token, expired, revoked)}
    assert alice not in text and not any(k in text for k in key_ids)


def test_comparison_is_timing_safe(
    tokens: TokenService, alice: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both a wrong secret and an unknown key id go through hmac.compare_digest."""
    token = tokens.create_token(alice, 1)
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    cases = _garbled(token)
    for name in ("wrong secret, valid key id", "unknown key id"):
        _refusal(tokens, cases[name])
    assert tokens.verify(token) == alice
    assert len(calls) == 3
    assert all(len(a) == len(b) == 64 for a, b in calls)


def test_only_hashes_are_at_rest(tokens: TokenService, alice: str, data_dir: Path) -> None:
    made = [tokens.create_token(alice, 1) for _ in range(3)]
    tokens.verify(made[0])
    db = data_dir / ".skyvault" / "auth.sqlite3"
    raw = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))
    with sqlite3.connect(db) as conn:
        dump = "\n".join(conn.iterdump())
    for token in made:
        secret = token.split("_", 2)[2]
        for haystack in (raw, dump.encode()):
            assert token.encode() not in haystack
            assert secret.encode() not in haystack
            assert secret[:20].encode() not in haystack
    assert oct(db.stat().st_mode & 0o777) == "0o600"


def test_last_used_is_recorded(tokens: TokenService, alice: str, clock: FakeClock) -> None:
    token = tokens.create_token(alice, 1)
    assert tokens.list_tokens(alice)[0].last_used is None
    tokens.verify(token)
    assert tokens.list_tokens(alice)[0].last_used == clock()
    clock.advance(minutes=1)
    tokens.verify(token)  # throttled: not rewritten on every request
    assert tokens.list_tokens(alice)[0].last_used == clock.now.replace(minute=0)
    clock.advance(minutes=10)
    tokens.verify(token)
    assert tokens.list_tokens(alice)[0].last_used == clock()


def test_removing_a_user_removes_its_tokens(
    tokens: TokenService, alice: str, storage: AuthStorage
) -> None:
    token = tokens.create_token(alice, 1)
    storage.remove_user(alice)
    _refusal(tokens, token)
