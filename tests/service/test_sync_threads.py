"""The threads of sync queries: as many run at once as are asked for, up to the limit;
idle ones are used again; a call that fails does not cost a thread."""

from __future__ import annotations

import threading
import time

import pytest

from skyvault.service.handlers.tap import _SyncThreads


def _calls(
    pool: _SyncThreads, n: int, hold: threading.Event
) -> tuple[list[str], threading.Barrier]:
    names: list[str] = []
    started = threading.Barrier(n + 1, timeout=10)

    def call() -> None:
        names.append(threading.current_thread().name)
        started.wait()
        hold.wait(10)
        pool.idle()

    for _ in range(n):
        pool.submit(call)
    return names, started


def test_calls_run_at_once_up_to_the_limit_and_threads_are_kept() -> None:
    pool = _SyncThreads(4)
    hold = threading.Event()
    names, started = _calls(pool, 4, hold)
    started.wait()  # all four run at the same time
    hold.set()
    time.sleep(0.1)
    release = threading.Event()
    again, started = _calls(pool, 4, release)
    started.wait()
    release.set()
    assert sorted(set(again)) == sorted(set(names)) and len(set(names)) == 4
    pool_threads = [t for t in threading.enumerate() if t.name.startswith("skyvault-sync_")]
    assert len(pool_threads) >= 4


def test_past_the_limit_calls_wait_for_a_thread() -> None:
    pool = _SyncThreads(2)
    hold = threading.Event()
    _, started = _calls(pool, 2, hold)
    started.wait()
    ran = threading.Event()

    def third() -> None:
        ran.set()
        pool.idle()

    pool.submit(third)
    assert not ran.wait(0.2)  # both threads are busy
    hold.set()
    assert ran.wait(5)


def test_a_failing_call_keeps_its_thread(caplog: pytest.LogCaptureFixture) -> None:
    pool = _SyncThreads(1)

    def fails() -> None:
        pool.idle()
        raise RuntimeError("boom")

    pool.submit(fails)
    ran = threading.Event()

    def after() -> None:
        ran.set()
        pool.idle()

    pool.submit(after)
    assert ran.wait(5)
    assert any("thread call failed" in r.getMessage() for r in caplog.records)
