"""SQL database plumbing shared by skyvault's stores (auth, UWS jobs).

One engine factory for SQLite (the embedded default) and PostgreSQL (several service
replicas), one timezone-aware timestamp type, and one pair of transaction helpers.

On SQLite, every connection gets WAL, a busy time-out and foreign keys, and skyvault emits
BEGIN itself: pysqlite starts transactions lazily and never with IMMEDIATE, so a deferred
transaction that reads and then writes can fail with "database is locked" when another process
wrote in between.  Taking the write lock at BEGIN (``BEGIN IMMEDIATE``) makes concurrent
writers, threads or processes, wait their turn up to the busy time-out instead.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.types import TypeDecorator

__all__ = ["SQLITE_BUSY_MS", "ChangeWatch", "UTCDateTime", "create_engine", "read", "write"]

SQLITE_BUSY_MS = 15_000


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime, stored naive-UTC (SQLite has no time zones)."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("a naive datetime was given to the database")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def create_engine(url: str, *, private: bool = False) -> Engine:
    """An engine for ``url``; a SQLite file (and its directory) is created when missing.

    ``private`` creates the SQLite file readable by its owner only (SQLite gives its -wal and
    -shm files the same permissions): for databases holding secrets such as token hashes.
    """
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        path = Path(parsed.database)
        path.parent.mkdir(parents=True, exist_ok=True)
        if private and not path.exists():
            # Only when creating it: opening and closing an existing database file from this
            # process would release every POSIX lock SQLite holds on it through its own
            # descriptors (connections of other stores in this process), and their next
            # statement fails with "disk I/O error" (SQLite's "how to corrupt" §2.2).
            with contextlib.suppress(FileExistsError):
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
        elif private and not os.access(path, os.W_OK):
            # The same refusal opening it for writing gave (storage_faults names the remedy),
            # found without opening it.
            read_only = bool(os.statvfs(path.parent).f_flag & os.ST_RDONLY)
            code = errno.EROFS if read_only else errno.EACCES
            raise OSError(code, os.strerror(code), str(path))
    engine = sa.create_engine(
        url, connect_args={"timeout": SQLITE_BUSY_MS / 1000, "check_same_thread": False}
    )
    _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # BEGIN is ours to emit
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("skyvault_write")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextlib.contextmanager
def write(engine: Engine) -> Iterator[Connection]:
    """A write transaction (``BEGIN IMMEDIATE`` on SQLite), committed when the block ends."""
    with engine.connect() as plain:
        conn = plain.execution_options(skyvault_write=True)
        with conn.begin():
            yield conn


@contextlib.contextmanager
def read(engine: Engine) -> Iterator[Connection]:
    """A read transaction."""
    with engine.connect() as conn, conn.begin():
        yield conn


class ChangeWatch:
    """Whether a database may have changed since an earlier look, for a few microseconds.

    :meth:`version` is a number that stays the same while nobody commits to the database:
    on a SQLite file, ``PRAGMA data_version`` on a connection of its own, which changes
    whenever any other connection — in this process or another — commits (the watch's own
    connection never writes).  Where that is not available (PostgreSQL, an in-memory
    SQLite), it is None: "may have changed", every time.  A cache keyed by it is as fresh
    as reading the database: a value read after the version was taken is kept under that
    version, so a commit in between changes the version the next reader sees.
    """

    def __init__(self, engine: Engine) -> None:
        self._lock = threading.Lock()
        self._conn: Any = None
        url = engine.url
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            raw = engine.raw_connection()
            raw.detach()  # its own connection, for the life of the watch (not pooled)
            self._conn = raw.dbapi_connection

    def version(self) -> int | None:
        """The database's change counter now (None: unknown, treat as changed)."""
        if self._conn is None:
            return None
        with self._lock:
            if self._conn is None:
                return None
            try:
                row = self._conn.execute("PRAGMA data_version").fetchone()
            except sqlite3.Error:  # a busy or failing file: read the database instead
                return None
        return int(row[0])

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
