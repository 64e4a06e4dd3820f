"""Memory: the budget running queries share (admission, queueing, release) and results that
stream in batches bounded in bytes rather than holding a whole result."""

from __future__ import annotations

import gc
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from skyvault.catalog.metadata import ColumnMeta
from skyvault.catalog.registry import Registry
from skyvault.engine.budget import (
    BATCH_BYTES,
    MAX_BATCH_ROWS,
    MemoryBudget,
    Reservation,
    batch_rows,
    estimate_stream_bytes,
    row_bytes,
)
from skyvault.engine.connection import Sandbox
from skyvault.engine.executor import CancelToken, LocalExecutor
from skyvault.engine.plan import ScanSpec, plan_query
from skyvault.errors import QueryCancelled, ServerBusy
from tests.conftest import SkyCatalogue

# --- the budget ---------------------------------------------------------------------------


def _eventually(condition: Callable[[], bool], what: str) -> None:
    """Wait for ``condition`` (another thread's progress); fail after a generous while."""
    for _ in range(2000):
        if condition():
            return
        time.sleep(0.005)
    raise AssertionError(f"never happened: {what}")


class _Reserver(threading.Thread):
    """A query waiting for (then holding) its share of the budget in another thread."""

    def __init__(self, budget: MemoryBudget, amount: int, **options: Any) -> None:
        super().__init__(daemon=True)
        self.budget = budget
        self.amount = amount
        self.options = options
        self.reservation: Reservation | None = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.reservation = self.budget.reserve(self.amount, **self.options)
        except BaseException as exc:
            self.error = exc

    def granted(self) -> bool:
        return self.reservation is not None


def test_queries_that_fit_are_admitted_and_give_their_memory_back() -> None:
    budget = MemoryBudget(100)
    first = budget.reserve(60)
    second = budget.reserve(40)
    assert (budget.used, budget.running, budget.waiting) == (100, 2, 0)
    first.close()
    first.close()  # once only
    assert (budget.used, budget.running) == (40, 1)
    with second:
        pass
    assert (budget.used, budget.running) == (0, 0)


def test_a_query_that_does_not_fit_waits_and_runs_when_another_finishes() -> None:
    budget = MemoryBudget(100)
    running = budget.reserve(60)
    waiter = _Reserver(budget, 50)
    _eventually(lambda: budget.waiting == 1, "the second query queues")
    assert not waiter.granted()
    assert budget.used == 60
    running.close()
    waiter.join(10)
    assert waiter.granted() and waiter.error is None
    assert (budget.used, budget.running, budget.waiting) == (50, 1, 0)
    assert waiter.reservation is not None and waiter.reservation.waited > 0
    assert budget.reserve(10).waited == 0  # granted at once


def test_waiting_queries_are_served_first_come_first_served() -> None:
    budget = MemoryBudget(100)
    running = budget.reserve(60)
    large = _Reserver(budget, 80)
    _eventually(lambda: budget.waiting == 1, "the large query queues")
    small = _Reserver(budget, 10)  # would fit now, but the large one came first
    _eventually(lambda: budget.waiting == 2, "the small query queues behind it")
    assert not small.granted()
    running.close()
    large.join(10)
    assert large.granted()
    _eventually(small.granted, "the small query runs once the large one is in")
    assert budget.used == 90


def test_a_query_larger_than_the_whole_budget_runs_alone() -> None:
    budget = MemoryBudget(100)
    other = budget.reserve(10)
    huge = _Reserver(budget, 250)
    _eventually(lambda: budget.waiting == 1, "the huge query waits for the others")
    assert not huge.granted()
    other.close()
    huge.join(10)
    assert huge.granted()
    assert budget.used == 250
    # While it runs nothing else does.
    after = _Reserver(budget, 1)
    _eventually(lambda: budget.waiting == 1, "a later query waits for the huge one")
    assert huge.reservation is not None
    huge.reservation.close()
    after.join(10)
    assert after.granted()


def test_the_deadline_ends_the_wait_with_server_busy() -> None:
    now = [0.0]

    def clock() -> float:
        now[0] += 1.0  # every look at the clock: a second later
        return now[0]

    budget = MemoryBudget(100, clock=clock, poll=0.001)
    held = budget.reserve(100)
    with pytest.raises(ServerBusy) as caught:
        budget.reserve(10, deadline=5.0)
    assert caught.value.http_status == 503
    assert "memory" in caught.value.message and caught.value.hint
    assert (budget.used, budget.running, budget.waiting) == (100, 1, 0)
    held.close()
    assert budget.reserve(10, deadline=now[0] + 100).amount == 10


def test_a_cancelled_query_stops_waiting() -> None:
    budget = MemoryBudget(100, poll=0.01)
    held = budget.reserve(100)
    token = CancelToken()
    waiter = _Reserver(budget, 10, cancel=token)
    _eventually(lambda: budget.waiting == 1, "the query queues")
    token.cancel()
    waiter.join(10)
    assert isinstance(waiter.error, QueryCancelled)
    assert (budget.used, budget.waiting) == (100, 0)
    held.close()


def test_a_reservation_dropped_without_closing_is_given_back() -> None:
    budget = MemoryBudget(100)
    budget.reserve(70)  # dropped at once
    gc.collect()
    assert (budget.used, budget.running) == (0, 0)


# --- estimates and batch sizes ----------------------------------------------------------


def _doubles(n: int) -> list[ColumnMeta]:
    return [ColumnMeta(name=f"c{i}", datatype="double") for i in range(n)]


def test_batches_of_wide_rows_hold_fewer_rows() -> None:
    narrow, wide = row_bytes(_doubles(4)), row_bytes(_doubles(400))
    assert batch_rows(narrow) == MAX_BATCH_ROWS
    assert batch_rows(wide) < MAX_BATCH_ROWS
    assert batch_rows(wide) * wide <= BATCH_BYTES
    strings = [ColumnMeta(name="s", datatype="char", arraysize="*")]
    assert row_bytes(strings) > row_bytes([ColumnMeta(name="c", datatype="char")])


def test_the_estimate_is_bounded_by_the_batch_not_by_maxrec() -> None:
    columns = _doubles(20)
    small = estimate_stream_bytes(columns, maxrec=10)
    assert small < estimate_stream_bytes(columns, maxrec=100_000)
    assert estimate_stream_bytes(columns, maxrec=100_000) == estimate_stream_bytes(
        columns, maxrec=10_000_000
    )
    assert estimate_stream_bytes(_doubles(400), maxrec=None) <= 48 * 1024**2  # 16 + 4 × 8 MiB
    assert estimate_stream_bytes(columns, 10, extra_bytes=5_000) == small + 5_000


# --- the engine streams -------------------------------------------------------------------


def _operators(plan: list[dict[str, Any]]) -> Iterator[str]:
    for node in plan:
        yield node["name"]
        yield from _operators(node.get("children", []))


def test_a_large_plain_limit_streams_instead_of_sorting_its_result(
    sky_catalogue: SkyCatalogue,
) -> None:
    """DuckDB would otherwise rewrite it into a row-number semi-join and a sort of the whole
    result ("late materialisation"), holding all its rows before the first is sent."""
    data = sky_catalogue.data
    stored = Registry(data).get(sky_catalogue.schema, sky_catalogue.table)
    plan = plan_query(
        'SELECT id FROM "__sv_t0"', [ScanSpec(placeholder="__sv_t0", table=stored)], []
    )
    cursor = Sandbox([data]).cursor()
    cursor.execute(f'CREATE TEMP VIEW "__sv_t0" AS {plan.scans[0].view_sql()}')
    for limit in (100, 15_000):
        explained = cursor.sql(f'EXPLAIN (FORMAT json) SELECT id FROM "__sv_t0" LIMIT {limit}')
        operators = set(_operators(json.loads(explained.fetchall()[0][1])))
        assert "ORDER_BY" not in operators, limit
        assert "HASH_JOIN" not in operators, limit
    cursor.close()


def test_wide_results_come_in_batches_bounded_in_bytes(tmp_path: Path) -> None:
    columns = 600
    rows = 12_000
    table = pa.table({f"c{i}": np.arange(rows, dtype=np.float64) + i for i in range(columns)})
    metas = [ColumnMeta(name=f"c{i}", datatype="double") for i in range(columns)]
    plan = plan_query(
        'SELECT * FROM "__sv_t0"', [ScanSpec(placeholder="__sv_t0", table=table)], metas
    )
    result = LocalExecutor(Sandbox([tmp_path])).execute(plan)
    sizes = [batch.num_rows for batch in result.batches]
    assert sum(sizes) == rows
    assert len(sizes) > 1
    assert max(sizes) <= batch_rows(row_bytes(metas)) < MAX_BATCH_ROWS
