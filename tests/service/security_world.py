"""A small archive with a public table and a restricted one, users, groups and tokens.

* ``pub.stars`` — granted to PUBLIC (50 rows);
* ``Secret.Plans`` — granted to group ``spies`` (alice); 4099 rows whose ``codename``
  values all contain ``NIGHTJAR``;
* alice (in ``spies``), bob (in ``crew``), with live, expired and revoked tokens.

Everything that must never reach someone without access is in :data:`SECRETS` (values,
column names, the row count, the group) and :data:`HIDDEN_NAMES` (schema and table name:
forbidden unless the request itself names them).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from skyvault.auth import AuthSettings, AuthStorage, TokenService, grant_access
from skyvault.auth.storage import utc_now
from skyvault.catalog.ingest import IngestOptions, ingest
from skyvault.config import Settings

PLANS_ROWS = 4099
SECRETS = ("NIGHTJAR", "codename", "budget_xyz", "plan_id", str(PLANS_ROWS), "spies")
HIDDEN_NAMES = ("Secret", "Plans")
HIDDEN = "Secret.Plans"


@dataclass(frozen=True)
class World:
    data: Path
    alice: str
    bob: str
    expired: str
    revoked: str


def build_world(root: Path) -> World:
    """The archive, auth database and tokens under ``root / "data"``."""
    data = root / "data"
    rng = np.random.default_rng(7)
    stars = pa.table(
        {
            "id": pa.array(np.arange(50, dtype=np.int64)),
            "ra": pa.array(rng.uniform(10.0, 11.0, 50)),
            "dec": pa.array(rng.uniform(-1.0, 1.0, 50)),
            "mag": pa.array(rng.uniform(8.0, 20.0, 50)),
        }
    )
    plans = pa.table(
        {
            "plan_id": pa.array(np.arange(PLANS_ROWS, dtype=np.int64)),
            "codename": pa.array([f"NIGHTJAR-{i}" for i in range(PLANS_ROWS)]),
            "budget_xyz": pa.array(rng.uniform(0.0, 1e6, PLANS_ROWS)),
            "ra": pa.array(rng.uniform(10.0, 11.0, PLANS_ROWS)),
            "dec": pa.array(rng.uniform(-1.0, 1.0, PLANS_ROWS)),
        }
    )
    pq.write_table(stars, root / "stars.parquet")
    pq.write_table(plans, root / "plans.parquet")
    small = IngestOptions(max_rows_per_partition=2000, row_group_rows=512)
    ingest([root / "stars.parquet"], "pub.stars", data, ra="ra", dec="dec", options=small)
    ingest([root / "plans.parquet"], HIDDEN, data, ra="ra", dec="dec", options=small)

    storage = AuthStorage.for_data_dir(data)
    try:
        now = utc_now()
        storage.add_user("alice", now)
        storage.add_user("bob", now)
        storage.add_group("spies", ["alice"], now)
        storage.add_group("crew", ["bob"], now)
        grant_access(storage, "pub", None)
        grant_access(storage, "Secret", "spies")
        tokens = TokenService(storage)
        alice = tokens.create_token("alice", 1)
        bob = tokens.create_token("bob", 1)
        revoked = tokens.create_token("alice", 1)
        tokens.revoke(revoked)
        past = TokenService(storage, lambda: utc_now() - timedelta(days=3))
        expired = past.create_token("alice", 1)
    finally:
        storage.close()
    return World(data, alice, bob, expired, revoked)


def world_settings(
    world: World, jobs: str, *, auth: AuthSettings | None = None, **changes: Any
) -> Settings:
    """Settings serving the world's data with a job database, results and an audit log of
    their own in the folder ``jobs`` beside it; ``auth`` (default settings when None) and
    ``changes`` as given."""
    folder = world.data.parent / jobs
    auth = AuthSettings() if auth is None else auth
    return Settings(
        data_dir=world.data,
        jobs_database_url=f"sqlite:///{folder / 'jobs.sqlite3'}",
        results_url=str(folder / "results"),
        auth=auth.model_copy(update={"audit_log": folder / "audit.jsonl"}),
        **changes,
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(user: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def twin(text: str) -> str:
    """``text`` with the hidden names turned into names that exist nowhere, same length and
    case (``Secret`` → ``Sacret``, ``pLaNs`` → ``pLoNs``): a query on the twin must fail
    exactly like the query on the hidden table, once the twin is applied to its answer."""

    def swap(match: re.Match[str], position: int, to: str) -> str:
        word = match.group(0)
        char = word[position]
        new = to.upper() if char.isupper() else to
        return word[:position] + new + word[position + 1 :]

    text = re.sub("secret", lambda m: swap(m, 1, "a"), text, flags=re.IGNORECASE)
    return re.sub("plans", lambda m: swap(m, 2, "o"), text, flags=re.IGNORECASE)
