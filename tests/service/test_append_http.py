"""Appending over HTTP, against a live server: who may, what a bad batch gets, idempotence.

Clients: httpx, curl (when installed) and pyvo (the rows are then found by TAP queries).
"""

from __future__ import annotations

import io
import shutil
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import pyvo
from astropy.table import Table

from skyvault.auth import AuthSettings, AuthStorage, TokenService, grant_access
from skyvault.catalog.append import status
from skyvault.config import Settings
from skyvault.service.app import create_app
from tests.catalog.appendkit import TABLE, batch, make_table
from tests.service.conftest import _free_port, read_votable, serve_in_thread

MAX_BYTES = 200_000
MAX_ROWS = 3_000


@dataclass(frozen=True)
class World:
    url: str
    data: Path
    tokens: dict[str, str]

    def headers(self, user: str | None) -> dict[str, str]:
        return {} if user is None else {"Authorization": f"Bearer {self.tokens[user]}"}

    def post(
        self, body: bytes, batch_id: str | None, user: str | None = "alice", table: str = TABLE
    ) -> httpx.Response:
        params = {} if batch_id is None else {"batch_id": batch_id}
        return httpx.post(
            f"{self.url}/append/{table}",
            content=body,
            params=params,
            headers=self.headers(user),
            timeout=60,
        )

    def rows(self, query: str, user: str = "alice") -> Any:
        """The rows ``user``'s sync query answers (the VOTable's first table)."""
        r = httpx.post(
            f"{self.url}/sync",
            data={"LANG": "ADQL", "QUERY": query},
            headers=self.headers(user),
            timeout=60,
        )
        assert r.status_code == 200, r.text
        return read_votable(r.content).get_first_table().array

    def count(self, user: str = "alice") -> int:
        return int(self.rows(f"SELECT COUNT(*) AS n FROM {TABLE}", user)["n"][0])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """``s.t`` (20k rows) writable by group ``writers`` (alice), readable by ``readers``
    (bob); carol is in no group; nothing is public."""
    data = make_table(tmp_path_factory.mktemp("appendhttp"))
    storage = AuthStorage.for_data_dir(data)
    tokens = TokenService(storage)
    made = {}
    for user, group in (("alice", "writers"), ("bob", "readers"), ("carol", "others")):
        storage.add_user(user, _now())
        storage.add_group(group, [user], _now())
        made[user] = tokens.create_token(user, 1)
    grant_access(storage, TABLE, "writers", level="write")
    grant_access(storage, TABLE, "readers")
    storage.close()
    port = _free_port()
    settings = Settings(
        data_dir=data,
        port=port,
        append_max_bytes=MAX_BYTES,
        append_max_rows=MAX_ROWS,
        background_compaction=False,
        auth=AuthSettings(anonymous=True),
    )
    with serve_in_thread(create_app(settings), port) as url:
        yield World(url, data, made)


def _now() -> object:
    from skyvault.auth.storage import utc_now

    return utc_now()


def _parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _csv(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pacsv.write_csv(table, sink)
    return sink.getvalue()


def _votable(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    Table(table.to_pydict()).write(sink, format="votable")
    return sink.getvalue()


def test_parquet_votable_csv_batches_commit_and_are_queryable(world: World) -> None:
    before = world.count()
    total = 0
    for n, body in ((11, _parquet(batch(11))), (12, _votable(batch(12))), (13, _csv(batch(13)))):
        r = world.post(body, f"visit-{n}")
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["status"] == "committed" and answer["rows"] == batch(n).num_rows
        assert answer["batch_id"] == f"visit-{n}" and answer["committed"]
        total += batch(n).num_rows
        assert world.count() == before + total  # visible to the next query
    # pyvo finds the appended rows by id
    service = pyvo.dal.TAPService(world.url, session=_session(world.tokens["bob"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = service.run_sync(f"SELECT id FROM {TABLE} WHERE batch = 12").to_table()
    assert sorted(got["id"].tolist()) == batch(12).column("id").to_pylist()


def _session(token: str) -> object:
    import requests

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    return session


def test_resending_a_batch_is_a_no_op(world: World) -> None:
    body = _parquet(batch(21))
    first = world.post(body, "visit-21")
    assert first.status_code == 200 and first.json()["status"] == "committed"
    count = world.count()
    for _ in range(2):
        again = world.post(body, "visit-21")
        assert again.status_code == 200
        assert again.json()["status"] == "already committed" and again.json()["rows"] == 0
        assert again.json()["snapshot"] == first.json()["snapshot"]
    assert world.count() == count
    # the id may come as a header too
    header = httpx.post(
        f"{world.url}/append/{TABLE}",
        content=body,
        headers={**world.headers("alice"), "X-Batch-Id": "visit-21"},
        timeout=60,
    )
    assert header.json()["status"] == "already committed"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_appends_a_csv_file(world: World, tmp_path: Path) -> None:
    path = tmp_path / "visit.csv"
    path.write_bytes(_csv(batch(31)))
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "-w",
            "\\n%{http_code}",
            "-H",
            f"Authorization: Bearer {world.tokens['alice']}",
            "--data-binary",
            f"@{path}",
            f"{world.url}/append/{TABLE}?batch_id=visit-31",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    body, code = out.rsplit("\n", 1)
    assert code == "200" and '"status":"committed"' in body


def test_who_may_append(world: World) -> None:
    body = _parquet(batch(41))
    snap = status(world.data, TABLE).snapshot
    anonymous = world.post(body, "x", user=None)
    assert anonymous.status_code == 401
    assert "WWW-Authenticate" in anonymous.headers
    reader = world.post(body, "x", user="bob")
    assert reader.status_code == 403
    assert "bob may read s.t but not append to it" in reader.text
    assert "--write" in reader.text
    # A table carol may not read is absent: the same answer as a table that does not exist.
    hidden = world.post(body, "x", user="carol")
    missing = world.post(body, "x", user="carol", table="s.nothing")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.text.replace("s.t", "X") == missing.text.replace("s.nothing", "X")
    assert status(world.data, TABLE).snapshot == snap  # nothing was appended


@pytest.mark.parametrize(
    ("body", "batch_id", "status_code", "says"),
    [
        (_parquet(batch(51).drop_columns(["batch"])), "b", 400, "lacks batch"),
        (_parquet(batch(51).append_column("extra", pa.array([1] * 74))), "b", 400, "extra"),
        (
            _csv(batch(51).set_column(1, "ra", pa.array(["east"] * 74))),
            "b",
            400,
            "column 'ra'",
        ),
        (
            _parquet(batch(51).set_column(2, "dec", pa.array([95.0] * 74))),
            "b",
            400,
            "outside the valid range",
        ),
        (b"\x00\x01\x02 not a table", "b", 400, "not a table"),
        (b"", "b", 400, "not a table"),
        (_parquet(batch(51)), None, 400, "the batch has no id"),
        (_parquet(batch(52, 20_000)), "b", 413, f"the limit is {MAX_BYTES} bytes"),
        (_parquet(batch(53, 4_000)), "b", 413, f"the limit is {MAX_ROWS} rows per batch"),
    ],
)
def test_bad_batches_are_refused_whole(
    world: World, body: bytes, batch_id: str | None, status_code: int, says: str
) -> None:
    snap = status(world.data, TABLE).snapshot
    r = world.post(body, batch_id)
    assert r.status_code == status_code, r.text
    assert says in r.text
    assert r.headers["content-type"].startswith("application/x-votable+xml")
    assert "Traceback" not in r.text and str(world.data) not in r.text
    assert status(world.data, TABLE).snapshot == snap


def test_status_for_readers_only(world: World) -> None:
    world.post(_parquet(batch(61)), "visit-61")
    for user in ("alice", "bob"):
        r = httpx.get(f"{world.url}/append/{TABLE}", headers=world.headers(user), timeout=30)
        assert r.status_code == 200, r.text
        got = r.json()
        snap = status(world.data, TABLE)
        assert got["snapshot"] == snap.snapshot and got["committed"] == snap.committed
        assert got["pending_rows"] == snap.delta_rows > 0
    for user in ("carol", None):
        r = httpx.get(f"{world.url}/append/{TABLE}", headers=world.headers(user), timeout=30)
        assert r.status_code == 404


def test_the_server_compacts_in_the_background(tmp_path: Path) -> None:
    """With background compaction on, the server folds a table's batches once they pass
    the threshold; off, it leaves them."""
    from fastapi.testclient import TestClient

    data = make_table(tmp_path)
    storage = AuthStorage.for_data_dir(data)
    storage.add_user("alice", _now())
    storage.add_group("writers", ["alice"], _now())
    token = TokenService(storage).create_token("alice", 1)
    grant_access(storage, TABLE, "writers", level="write")
    storage.close()
    headers = {"Authorization": f"Bearer {token}"}
    for on in (False, True):
        settings = Settings(
            data_dir=data,
            background_compaction=on,
            compact_after_batches=2,
            compact_check_interval=0.05,
        )
        with TestClient(create_app(settings)) as client:
            for n in (1, 2):
                r = client.post(
                    f"/tap/append/{TABLE}",
                    params={"batch_id": f"{on}-{n}"},
                    content=_parquet(batch(n + 10 * on)),
                    headers=headers,
                )
                assert r.status_code == 200, r.text
            deadline = time.monotonic() + 60
            while on and status(data, TABLE).files and time.monotonic() < deadline:
                time.sleep(0.05)
            got = client.get(f"/tap/append/{TABLE}", headers=headers).json()
        if on:
            assert got["pending_batches"] == 0 and got["compacted_snapshot"] == 4
        else:
            time.sleep(0.3)
            assert got["pending_batches"] == 2 and got["compacted_snapshot"] == 0


@pytest.mark.slow
def test_concurrent_appenders_and_readers_see_whole_batches(world: World) -> None:
    """Three producers post batches (each twice: a retry) while a reader queries: every
    answer holds each batch whole or not at all; at the end every batch once."""
    import threading

    sizes: dict[int, int] = {}
    errors: list[str] = []
    stop = threading.Event()

    def producer(first: int) -> None:
        for b in range(first, first + 6):
            body = _parquet(batch(b))
            sizes[b] = batch(b).num_rows
            for _ in range(2):
                r = world.post(body, f"c{b}")
                if r.status_code != 200:
                    errors.append(r.text)

    def reader() -> None:
        while not stop.is_set():
            rows = world.rows(
                f"SELECT batch, COUNT(*) AS n FROM {TABLE} WHERE batch >= 1000 GROUP BY batch",
                "bob",
            )
            for b, n in zip(rows["batch"].tolist(), rows["n"].tolist(), strict=True):
                if n != batch(b).num_rows:
                    errors.append(f"batch {b}: {n} rows of {batch(b).num_rows}")

    threads = [threading.Thread(target=producer, args=(1000 + 100 * i,)) for i in range(3)]
    watcher = threading.Thread(target=reader)
    watcher.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    watcher.join()
    assert errors == []
    rows = world.rows(
        f"SELECT batch, COUNT(*) AS n, COUNT(DISTINCT id) AS u FROM {TABLE} "
        "WHERE batch >= 1000 GROUP BY batch"
    )
    columns = zip(rows["batch"], rows["n"], rows["u"], strict=True)
    got = {int(b): (int(n), int(u)) for b, n, u in columns}
    assert got == {b: (n, n) for b, n in sizes.items()}
