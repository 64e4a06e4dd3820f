"""Anonymous callers cannot lock each other out (issue 10, item 2).

Over a real server behind a "proxy": the test connects from 127.0.0.1, configured as a
trusted proxy, and names each anonymous client in ``X-Forwarded-For``.  Limits count per
client; a job needs a QUERY; PENDING jobs hold no run slot; a sync query waits for a slot
before a 429, and every 429 carries Retry-After and a message true for its endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from pydantic import ValidationError
from starlette.requests import Request

from skyvault.auth import AuthSettings
from skyvault.auth.identity import Identity
from skyvault.auth.limits import LimitsPolicy, UserLimits
from skyvault.config import Settings, trusted_networks
from skyvault.errors import UserLimitExceeded
from skyvault.service.app import create_app
from skyvault.service.security import client_address
from skyvault.service.slots import SlotBusy, SyncSlots
from tests.service.conftest import _free_port, query_status, read_votable
from tests.service.test_uws import SLOW, uws_settings

ONE_ROW = "SELECT TOP 1 objectId FROM dp02_dc2_catalogs.Object"
ALICE = {"X-Forwarded-For": "203.0.113.5"}
BOB = {"X-Forwarded-For": "198.51.100.9"}


@contextlib.contextmanager
def serve(settings: Settings, root: Path, **changes: object) -> Iterator[str]:
    """A live server with the default anonymous limits (unless ``auth`` is given) and
    127.0.0.1 as a trusted proxy; yields the TAP URL.

    uvicorn runs as ``skyvault serve`` runs it: without its own proxy-header handling
    (which would trust X-Forwarded-For from 127.0.0.1 whatever skyvault is told).
    """
    port = _free_port()
    update: dict[str, object] = {
        "port": port,
        "trusted_proxies": "127.0.0.1",
        "auth": AuthSettings(audit_log=root / "audit.jsonl"),
        **changes,
    }
    app = create_app(uws_settings(settings, root, **update))
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", proxy_headers=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/tap"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _message(response: httpx.Response) -> str:
    return query_status(read_votable(response.content))[0][1]


def _create(url: str, who: dict[str, str], query: str = ONE_ROW, run: bool = True) -> str:
    data = {"LANG": "ADQL", "QUERY": query, **({"PHASE": "RUN"} if run else {})}
    r = httpx.post(f"{url}/async", data=data, headers=who, timeout=30)
    assert r.status_code == 303, r.text
    return r.headers["location"].rsplit("/", 1)[-1]


def _phase(url: str, job_id: str, wait: int = 0) -> str:
    r = httpx.get(f"{url}/async/{job_id}", params={"WAIT": str(wait)}, timeout=30)
    return r.text.split("<uws:phase>")[1].split("<")[0]


def _final(url: str, job_id: str) -> str:
    deadline = time.monotonic() + 60
    while (phase := _phase(url, job_id, wait=5)) not in ("COMPLETED", "ERROR", "ABORTED"):
        assert time.monotonic() < deadline
    return phase


def _executing(url: str, job_id: str) -> None:
    deadline = time.monotonic() + 20
    while _phase(url, job_id) != "EXECUTING":
        assert time.monotonic() < deadline
        time.sleep(0.05)


def _sync(url: str, who: dict[str, str]) -> httpx.Response:
    data = {"LANG": "ADQL", "QUERY": ONE_ROW, "RESPONSEFORMAT": "csv"}
    return httpx.post(f"{url}/sync", data=data, headers=who, timeout=60)


def test_body_less_posts_of_one_client_do_not_lock_out_another(
    settings: Settings, tmp_path: Path
) -> None:
    """The attack seen: four body-less POSTs filled the one anonymous queue for a week.
    Now they create nothing (400); a client that fills its own PENDING allowance does not
    touch another client's, who still submits and runs."""
    with serve(settings, tmp_path, retry_after=5) as url:
        for _ in range(4):
            r = httpx.post(f"{url}/async", headers=ALICE, timeout=30)
            assert r.status_code == 400 and "a job needs a QUERY" in _message(r)
        for _ in range(10):  # anonymous_max_pending
            _create(url, ALICE, run=False)
        job = _create(url, BOB)
        assert _final(url, job) == "COMPLETED"
        assert _sync(url, BOB).status_code == 200


def test_anonymous_client_at_its_pending_limit_loses_its_oldest_pending_job(
    settings: Settings, tmp_path: Path
) -> None:
    """A pyvo script that stops between ``submit_job`` and ``run`` ten times is not locked
    out of async for a day (it cannot list nor delete its anonymous jobs): the 11th job
    is created, the oldest PENDING one (and its stored upload) is destroyed to make room.
    Users keep the 429 (tests/service/test_security.py::test_pending_limit)."""
    with serve(settings, tmp_path) as url:
        upload = {"t": ("t.csv", b"a\n1\n", "text/csv")}
        data = {"LANG": "ADQL", "QUERY": ONE_ROW, "UPLOAD": "t,param:t"}
        r = httpx.post(f"{url}/async", data=data, files=upload, headers=ALICE, timeout=30)
        assert r.status_code == 303, r.text
        first = r.headers["location"].rsplit("/", 1)[-1]
        assert (tmp_path / "results" / first).exists()
        jobs = [_create(url, ALICE, run=False) for _ in range(10)]
        assert httpx.get(f"{url}/async/{first}", timeout=30).status_code == 404
        assert not (tmp_path / "results" / first).exists()
        assert all(_phase(url, j) == "PENDING" for j in jobs)
        r = httpx.post(f"{url}/async/{jobs[-1]}/phase", data={"PHASE": "RUN"}, timeout=30)
        assert r.status_code == 303
        assert _final(url, jobs[-1]) == "COMPLETED"
        # another client's PENDING jobs are never taken
        bob = _create(url, BOB, run=False)
        for _ in range(10):
            _create(url, ALICE, run=False)
        assert _phase(url, bob) == "PENDING"


def test_a_job_refused_for_another_limit_destroys_no_pending_job(
    settings: Settings, tmp_path: Path
) -> None:
    """The oldest PENDING job makes room only for a job that is then created: at its
    result quota too, the client gets the 429 and keeps its PENDING jobs."""
    auth = AuthSettings(
        audit_log=tmp_path / "audit.jsonl", anonymous_max_pending=2, anonymous_max_result_bytes=5
    )
    with serve(settings, tmp_path, auth=auth) as url:
        first = _create(url, ALICE, run=False)
        second = _create(url, ALICE, run=False)
        # as if the client's stored results filled its quota
        with sqlite3.connect(tmp_path / "jobs.sqlite3") as db:
            db.execute("UPDATE uws_jobs SET result_size = 10 WHERE job_id = ?", (second,))
        r = httpx.post(f"{url}/async", data={"QUERY": ONE_ROW}, headers=ALICE, timeout=30)
        assert r.status_code == 429 and "your stored results take" in _message(r)
        assert _phase(url, first) == "PENDING"


def test_pending_jobs_hold_no_run_slot(settings: Settings, tmp_path: Path) -> None:
    """A client with jobs PENDING (as many as the old shared queue allowed) can still
    run a job and a sync query: only QUEUED and EXECUTING jobs take slots."""
    with serve(settings, tmp_path) as url:
        for _ in range(4):
            _create(url, ALICE, run=False)
        job = _create(url, ALICE)
        assert _final(url, job) == "COMPLETED"
        assert _sync(url, ALICE).status_code == 200


def test_a_client_over_its_queue_limit_gets_429_others_do_not(
    settings: Settings, tmp_path: Path
) -> None:
    """alice's running limit is full, so her jobs queue; at her max_queued a further
    PHASE=RUN is a 429 with Retry-After that says the job stays PENDING; bob is not
    affected."""
    auth = AuthSettings(
        audit_log=tmp_path / "audit.jsonl", anonymous_max_running=1, anonymous_max_queued=2
    )
    with serve(settings, tmp_path, auth=auth, retry_after=7) as url:
        slow = _create(url, ALICE, SLOW)
        _executing(url, slow)
        queued = [_create(url, ALICE) for _ in range(2)]
        pending = _create(url, ALICE, run=False)
        r = httpx.post(
            f"{url}/async/{pending}/phase", data={"PHASE": "RUN"}, headers=ALICE, timeout=30
        )
        assert r.status_code == 429 and r.headers["retry-after"] == "7"
        assert "you have 2 jobs queued to run, the limit is 2" in _message(r)
        assert "stays PENDING" in _message(r) and _phase(url, pending) == "PENDING"
        assert _final(url, _create(url, BOB)) == "COMPLETED"
        httpx.delete(f"{url}/async/{slow}", timeout=30)
        assert [_final(url, j) for j in queued] == ["COMPLETED", "COMPLETED"]


def test_sync_waits_for_a_slot_and_runs_when_one_frees(settings: Settings, tmp_path: Path) -> None:
    """alice's one running slot is taken by her async job; her sync query waits instead of
    failing, and runs once the job ends.  bob, another client, is not held up at all."""
    auth = AuthSettings(audit_log=tmp_path / "audit.jsonl", anonymous_max_running=1)
    with serve(settings, tmp_path, auth=auth, sync_slot_wait=30) as url:
        slow = _create(url, ALICE, SLOW)
        _executing(url, slow)
        started = time.monotonic()
        assert _sync(url, BOB).status_code == 200
        assert time.monotonic() - started < 5
        ender = threading.Timer(1.5, lambda: httpx.delete(f"{url}/async/{slow}", timeout=30))
        ender.start()
        started = time.monotonic()
        r = _sync(url, ALICE)
        waited = time.monotonic() - started
        ender.join()
        assert r.status_code == 200, r.text
        assert r.text.splitlines()[0] == "objectId"
        assert 1.4 <= waited < 20


def test_sync_refused_after_the_wait_says_retry_or_async(
    settings: Settings, tmp_path: Path
) -> None:
    """No slot freed within sync_slot_wait: 429 with Retry-After, telling the caller to
    retry or use /async — not to DELETE an async job it may not have."""
    auth = AuthSettings(audit_log=tmp_path / "audit.jsonl", anonymous_max_running=1)
    with serve(settings, tmp_path, auth=auth, sync_slot_wait=0.5, retry_after=4) as url:
        slow = _create(url, ALICE, SLOW)
        _executing(url, slow)
        started = time.monotonic()
        r = _sync(url, ALICE)
        assert time.monotonic() - started >= 0.5
        assert r.status_code == 429 and r.headers["retry-after"] == "4"
        message = _message(r)
        assert message.startswith("too many of your queries are running (1, the limit is 1)")
        assert "waited" in message and "retry in 4 s" in message and "/tap/async" in message
        assert "DELETE" not in message
        httpx.delete(f"{url}/async/{slow}", timeout=30)


def test_forwarded_addresses_count_only_from_a_trusted_proxy(
    settings: Settings, tmp_path: Path
) -> None:
    """Without SKYVAULT_TRUSTED_PROXIES, X-Forwarded-For is the client's own claim and is
    ignored: every request from 127.0.0.1 is one client."""
    auth = AuthSettings(audit_log=tmp_path / "audit.jsonl", anonymous_max_pending=2)
    with serve(settings, tmp_path, auth=auth, trusted_proxies="") as url:
        first = _create(url, ALICE, run=False)
        second = _create(url, BOB, run=False)
        # one client: at its 2 PENDING jobs, a third replaces the oldest, alice's
        _create(url, ALICE, run=False)
        assert httpx.get(f"{url}/async/{first}", timeout=30).status_code == 404
        assert _phase(url, second) == "PENDING"


# --- the client address ---------------------------------------------------------------------


def _request(peer: str, **headers: str) -> Request:
    raw = [(k.replace("_", "-").lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "client": (peer, 1234), "headers": raw})


@pytest.mark.parametrize(
    ("peer", "headers", "client"),
    [
        # not from a trusted proxy: the peer, whatever it claims
        ("192.0.2.8", {"x_forwarded_for": "203.0.113.5"}, "192.0.2.8"),
        ("192.0.2.8", {"forwarded": "for=203.0.113.5"}, "192.0.2.8"),
        # from the proxy: the address it appended (the client's own claim before it is not
        # believed), past any further trusted proxies
        ("10.0.0.2", {"x_forwarded_for": "203.0.113.5"}, "203.0.113.5"),
        ("10.0.0.2", {"x_forwarded_for": "1.2.3.4, 203.0.113.5"}, "203.0.113.5"),
        ("10.0.0.2", {"x_forwarded_for": "1.2.3.4, 203.0.113.5, 10.0.0.7"}, "203.0.113.5"),
        ("10.0.0.2", {"x_forwarded_for": "10.0.0.9, 10.0.0.7"}, "10.0.0.9"),
        ("10.0.0.2", {}, "10.0.0.2"),
        # RFC 7239 Forwarded wins over X-Forwarded-For; ports and quotes are dropped
        (
            "10.0.0.2",
            {"forwarded": 'for="203.0.113.5:4711";proto=https', "x_forwarded_for": "9.9.9.9"},
            "203.0.113.5",
        ),
        ("10.0.0.2", {"forwarded": 'for="[2001:db8:cafe::17]:4711"'}, "2001:db8:cafe::/64"),
        # one IPv6 host (or home) is one /64; IPv4-mapped is IPv4
        ("2001:db8:1:2:3:4:5:6", {}, "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.1", {}, "192.0.2.1"),
        ("testclient", {}, "testclient"),
    ],
)
def test_client_address(peer: str, headers: dict[str, str], client: str) -> None:
    trusted = trusted_networks("10.0.0.0/8, 127.0.0.1")
    assert client_address(_request(peer, **headers), trusted) == client


def test_trusted_proxies_setting_is_checked() -> None:
    assert Settings(trusted_proxies="10.0.0.0/8,::1").trusted_proxy_networks()
    with pytest.raises(ValidationError, match=r"'proxy\.local' is not an IP address"):
        Settings(trusted_proxies="10.0.0.0/8, proxy.local")


def test_serve_leaves_client_addresses_to_skyvault(
    demo_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """uvicorn's own proxy-header handling (on by default, trusting 127.0.0.1) is off in
    ``skyvault serve``: SKYVAULT_TRUSTED_PROXIES alone decides whose X-Forwarded-For counts."""
    from skyvault import cli

    captured: dict[str, object] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: captured.update(kwargs))
    assert cli.main(["serve", "--data", str(demo_dir), "--port", "0"]) == 0
    assert captured["proxy_headers"] is False


def test_sync_slots_per_client_capped_waiting_and_wake_up() -> None:
    """Slots count per client; a request at the limit may wait (at most max_queued of a
    client at a time) and is woken as soon as a slot of its client is given back."""
    slots = SyncSlots()
    limits = LimitsPolicy(anonymous=UserLimits(max_running=1, max_queued=1))
    alice = Identity(None, client="192.0.2.1")
    bob = Identity(None, client="192.0.2.2")
    slots.take(alice, limits, 0, retry_after=3)
    slots.take(bob, limits, 0, retry_after=3)  # another client: its own slot
    with pytest.raises(SlotBusy) as info:
        slots.take(alice, limits, 0, retry_after=3)
    busy = info.value
    assert busy.refusal.http_status == 429 and busy.refusal.retry_after == 3
    with pytest.raises(SlotBusy):  # a client's async job EXECUTING holds a slot too
        slots.take(Identity(None, client="192.0.2.3"), limits, 1, retry_after=3)

    async def wait_for_release() -> float:
        with slots.waiting(alice, busy) as woken:
            with pytest.raises(UserLimitExceeded), slots.waiting(alice, busy):
                pass  # a second waiter of the same client: over max_queued = 1
            threading.Timer(0.2, slots.release, args=(alice,)).start()
            started = time.monotonic()
            await asyncio.wait_for(woken.wait(), 5)
            return time.monotonic() - started

    assert asyncio.run(wait_for_release()) < 2
    assert slots.running() == 1  # bob's
    slots.take(alice, limits, 0, retry_after=3)
