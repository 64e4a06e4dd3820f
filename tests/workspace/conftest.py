"""A data root with an auth database, users and groups, and a workspace store over it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from skyvault.auth import AuthStorage, Identity
from skyvault.auth.audit import AuditLog
from skyvault.auth.storage import utc_now
from skyvault.workspace import WorkspaceStore, column
from skyvault.workspace.columns import TableDefinition

ALICE = Identity("alice", frozenset({"survey"}))
BOB = Identity("bob", frozenset({"crew"}))
CAROL = Identity("carol", frozenset())
ANONYMOUS = Identity.anonymous()

TARGETS = TableDefinition(
    (
        column("id", "long", indexed=True),
        column("name", "char", arraysize="16*", description="target name"),
        column("ra", "double", unit="deg", ucd="pos.eq.ra;meta.main"),
        column("dec", "double", unit="deg", ucd="pos.eq.dec;meta.main"),
    ),
    description="my targets",
)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    return root


@pytest.fixture
def auth(data_dir: Path) -> Iterator[AuthStorage]:
    storage = AuthStorage.for_data_dir(data_dir)
    now = utc_now()
    for user in ("alice", "bob", "carol"):
        storage.add_user(user, now)
    storage.add_group("survey", ["alice"], now)
    storage.add_group("crew", ["bob"], now)
    yield storage
    storage.close()


@pytest.fixture
def store(data_dir: Path, auth: AuthStorage) -> WorkspaceStore:
    return WorkspaceStore(data_dir, auth, audit=AuditLog(data_dir.parent / "audit.jsonl"))
