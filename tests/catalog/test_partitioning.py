"""Adaptive partitions from a histogram, against a recursive descent written from the rule."""

from __future__ import annotations

import numpy as np
import pytest

from skyvault.catalog.partitioning import SPATIAL_ORDER, choose_partitions


def _descend(histogram: np.ndarray, order: int, max_rows: int) -> list[tuple[int, int, int]]:
    """The rule, cell by cell: a non-empty cell is a partition when it holds at most
    ``max_rows`` rows or is at the histogram's order; otherwise its four children are."""
    out: list[tuple[int, int, int]] = []

    def visit(k: int, pixel: int) -> None:
        width = 4 ** (order - k)
        n = int(histogram[pixel * width : (pixel + 1) * width].sum())
        if n == 0:
            return
        if n <= max_rows or k == order:
            out.append((k, pixel, n))
            return
        for child in range(4 * pixel, 4 * pixel + 4):
            visit(k + 1, child)

    for base in range(12):
        visit(0, base)
    return sorted(out, key=lambda t: t[1] << (2 * (SPATIAL_ORDER - t[0])))


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("max_rows", [1, 7, 50, 10_000])
def test_partitions_follow_the_rule(seed: int, max_rows: int) -> None:
    rng = np.random.default_rng(seed)
    order = 4
    histogram = np.zeros(12 * 4**order, dtype=np.int64)
    # Clustered and sparse: a few dense spots, scattered single rows, most cells empty.
    for _ in range(int(rng.integers(1, 6))):
        centre = int(rng.integers(0, len(histogram) - 64))
        histogram[centre : centre + int(rng.integers(1, 64))] += rng.integers(0, 40, 1)[0]
    histogram[rng.integers(0, len(histogram), int(rng.integers(0, 300)))] += 1
    got = choose_partitions(histogram, max_rows, histogram_order=order)
    want = _descend(histogram, order, max_rows)
    triples = zip(got.orders.tolist(), got.pixels.tolist(), got.counts.tolist(), strict=True)
    assert list(triples) == want
    assert int(got.counts.sum()) == int(histogram.sum())


def test_an_empty_histogram_has_no_partitions() -> None:
    got = choose_partitions(np.zeros(12 * 4**3, dtype=np.int64), 10, histogram_order=3)
    assert len(got.orders) == 0
