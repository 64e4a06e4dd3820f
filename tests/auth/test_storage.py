"""The auth database: schema on first use, WAL, several processes writing at once, settings."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from skyvault.auth.access import grant_access
from skyvault.auth.config import AuthSettings
from skyvault.auth.factory import build_auth
from skyvault.auth.identity import BuiltinAuthenticator, Identity, ProxyAuthenticator
from skyvault.auth.storage import AuthStorage, utc_now
from skyvault.auth.tokens import TokenService


def test_schema_on_first_use_and_wal(data_dir: Path) -> None:
    db = data_dir / ".skyvault" / "auth.sqlite3"
    assert not db.exists()
    first = AuthStorage.for_data_dir(data_dir)
    first.add_user("alice", utc_now())
    second = AuthStorage.for_data_dir(data_dir)  # schema exists: created once, reused
    assert [u.name for u in second.list_users()] == ["alice"]
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"users", "groups", "memberships", "tokens", "grants", "user_limits"} <= tables
    first.close()
    second.close()


def test_in_memory_url_works() -> None:
    storage = AuthStorage("sqlite://")
    storage.add_user("x", utc_now())
    assert storage.user_exists("x")


def _worker(data_dir: str, n: int) -> list[str]:
    """One process: create a user, its tokens and grants, verify them, read everything."""
    storage = AuthStorage.for_data_dir(Path(data_dir))
    tokens = TokenService(storage)
    auth = BuiltinAuthenticator(storage, tokens)
    user = f"user{n}"
    storage.add_user(user, utc_now())
    made = []
    for i in range(10):
        token = tokens.create_token(user, 1)
        made.append(token)
        assert auth.authenticate({"Authorization": f"Bearer {token}"}).user == user
        grant_access(storage, f"s{i}", None)  # the same grants from every process
        storage.list_grants()
    tokens.revoke(made[0])
    storage.close()
    return made


def test_several_processes_share_the_database(data_dir: Path) -> None:
    AuthStorage.for_data_dir(data_dir).close()
    # fork: the parent holds no open connection (closed above), and spawn costs seconds.
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(4) as pool:
        results = pool.starmap(_worker, [(str(data_dir), n) for n in range(8)])
    storage = AuthStorage.for_data_dir(data_dir)
    tokens = TokenService(storage)
    assert len(storage.list_users()) == 8
    assert len(storage.list_grants()) == 10
    for n, made in enumerate(results):
        states = {t.key_id: t.state for t in tokens.list_tokens(f"user{n}")}
        assert [states[t.split("_")[1]] for t in made] == ["revoked"] + ["active"] * 9
        assert tokens.verify(made[-1]) == f"user{n}"


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    monkeypatch.setenv("SKYVAULT_AUTH_MODE", "proxy")
    monkeypatch.setenv("SKYVAULT_AUTH_ANONYMOUS", "false")
    monkeypatch.setenv("SKYVAULT_AUTH_GROUPS_HEADER", "X-Groups")
    monkeypatch.setenv("SKYVAULT_AUTH_MAX_RUNNING", "5")
    auth = build_auth(data_dir)
    assert isinstance(auth.authenticator, ProxyAuthenticator)
    identity = auth.authenticator.authenticate({"X-Auth-Request-User": "a", "X-Groups": "g"})
    assert identity == Identity("a", frozenset({"g"}))
    assert not auth.access.anonymous_allowed
    assert auth.limits.limits_for(identity).max_running == 5
    assert auth.audit.path == data_dir / ".skyvault" / "audit.jsonl"


def test_builtin_is_the_default(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    for var in ("SKYVAULT_AUTH_MODE", "SKYVAULT_AUTH_ANONYMOUS", "SKYVAULT_AUTH_DATABASE_URL"):
        monkeypatch.delenv(var, raising=False)
    auth = build_auth(data_dir, AuthSettings())
    assert isinstance(auth.authenticator, BuiltinAuthenticator)
    assert auth.access.anonymous_allowed
    assert auth.authenticator.authenticate({"X-Auth-Request-User": "root"}).is_anonymous


def test_database_from_before_grant_levels_keeps_working(data_dir: Path) -> None:
    """An auth database made before grants had a level: opened, its grants read, writable."""
    db = data_dir / ".skyvault" / "auth.sqlite3"
    db.parent.mkdir()
    with sqlite3.connect(db) as conn:  # the grants table as earlier versions made it
        conn.execute(
            "CREATE TABLE grants (id INTEGER PRIMARY KEY AUTOINCREMENT, schema_name VARCHAR(128) "
            "NOT NULL, table_name VARCHAR(128), group_name VARCHAR(64), created DATETIME NOT NULL)"
        )
        conn.execute(
            "INSERT INTO grants (schema_name, table_name, group_name, created) "
            "VALUES ('dp02', NULL, 'dp02', '2026-01-01 00:00:00')"
        )
    conn.close()
    storage = AuthStorage.for_data_dir(data_dir)
    [old] = storage.list_grants()
    assert (old.target, old.group, old.level) == ("dp02", "dp02", "read")
    grant_access(storage, "dp02.Object", "dp02", level="write", require_known_group=False)
    storage.close()
    again = AuthStorage.for_data_dir(data_dir)  # the column is added once
    assert [(g.target, g.level) for g in again.list_grants()] == [
        ("dp02", "read"),
        ("dp02.Object", "write"),
    ]
    again.close()
