"""The people of the image tests: alice (in the group ``spies``) and bob, who is in none."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from skyvault.auth import AuthStorage, TokenService, grant_access
from skyvault.auth.storage import utc_now


def spies_and_public(data: Path, public: Sequence[str], spies: Sequence[str]) -> tuple[str, str]:
    """Add alice (group ``spies``) and bob to the data root's auth database, grant the
    ``public`` schemas to everyone and the ``spies`` ones to the group; their tokens."""
    storage = AuthStorage.for_data_dir(data)
    try:
        now = utc_now()
        storage.add_user("alice", now)
        storage.add_user("bob", now)
        storage.add_group("spies", ["alice"], now)
        for schema in public:
            grant_access(storage, schema, None)
        for schema in spies:
            grant_access(storage, schema, "spies")
        tokens = TokenService(storage)
        return tokens.create_token("alice", 1), tokens.create_token("bob", 1)
    finally:
        storage.close()
