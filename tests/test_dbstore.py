"""The job and auth stores' database plumbing (``skyvault.dbstore``)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from skyvault import dbstore


def test_a_private_database_is_created_owner_only_and_never_reopened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opening and closing an existing SQLite file outside SQLite releases the POSIX locks its
    connections in this process hold (the cause of "disk I/O error" in a shared demo root):
    the file is created owner-only once, and a second engine leaves it alone."""
    path = tmp_path / "auth.sqlite3"
    first = dbstore.create_engine(f"sqlite:///{path}", private=True)
    with dbstore.write(first) as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    opened: list[str] = []
    real_open = os.open

    def spy(file: str | os.PathLike[str], *args: object, **kwargs: object) -> int:
        opened.append(os.fspath(file))
        return real_open(file, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", spy)
    second = dbstore.create_engine(f"sqlite:///{path}", private=True)
    assert str(path) not in opened
    with dbstore.write(first) as conn:
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
    with dbstore.read(second) as conn:
        assert conn.exec_driver_sql("SELECT x FROM t").scalar() == 1
    first.dispose()
    second.dispose()
