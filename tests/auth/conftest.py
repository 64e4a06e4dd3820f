"""Fixtures of the auth tests: a fresh auth database under a temporary data root, a clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from skyvault.auth.storage import AuthStorage
from skyvault.auth.tokens import TokenService


class FakeClock:
    """A settable UTC clock."""

    def __init__(self) -> None:
        self.now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    return root


@pytest.fixture
def storage(data_dir: Path) -> Iterator[AuthStorage]:
    store = AuthStorage.for_data_dir(data_dir)
    yield store
    store.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def tokens(storage: AuthStorage, clock: FakeClock) -> TokenService:
    return TokenService(storage, clock)


@pytest.fixture
def alice(storage: AuthStorage, clock: FakeClock) -> str:
    """User alice in group dp02; bob exists too, in no group."""
    storage.add_user("alice", clock())
    storage.add_user("bob", clock())
    storage.add_group("dp02", ["alice"], clock())
    return "alice"
