"""The start of a sync query listens for the client going away only once it has taken
``WATCH_AFTER_S``: a quick query never reads the connection, a slow one is abandoned when
the client leaves."""

from __future__ import annotations

import asyncio
from typing import Any

from skyvault.service.handlers import tap


class _Sync:
    abandoned = 0

    def abandon(self) -> None:
        self.abandoned += 1


def _run(seconds: float) -> tuple[int, int]:
    reads = 0

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        return {"type": "http.disconnect"}

    async def work() -> str:
        await asyncio.sleep(seconds)
        return "done"

    sync = _Sync()

    async def main() -> str:
        return await tap._unless_gone(receive, sync, work)  # type: ignore[arg-type]

    assert asyncio.run(main()) == "done"
    return reads, sync.abandoned


def test_a_quick_start_never_listens() -> None:
    assert _run(0.0) == (0, 0)


def test_a_slow_start_is_abandoned_when_the_client_leaves() -> None:
    assert _run(tap.WATCH_AFTER_S + 0.2) == (1, 1)
