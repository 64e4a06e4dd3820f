"""Adaptive HEALPix partitioning and the margin rings used for cross-matching.

Partitions are chosen from a histogram of row counts at a fixed fine order: starting from
the 12 base cells, a cell with more rows than the threshold is split into its four children
until every partition holds at most ``max_rows`` rows (or the finest order is reached).
Empty cells are dropped.  Because nested HEALPix indices nest, each partition is one
contiguous interval of the order-29 index ``_healpix_29``, which is how rows are assigned to
partitions (a binary search over interval starts) and how queries prune.

The margin of a partition is the ring of cells just outside it, at an order whose cells are
at least twice as wide as the margin radius.  Every point closer than the radius to the
partition's border lies in that ring, so the margin is a (slight) superset of the exact
margin: a cross-match that reads partition + margin sees every pair, and the join's own
distance test removes the extra candidates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "HISTOGRAM_ORDER",
    "Partitioning",
    "choose_partitions",
    "margin_order",
]

HISTOGRAM_ORDER = 10
"""Order of the counting histogram: the finest partition order (cells of ~3.4′)."""

SPATIAL_ORDER = 29


def cell_size_arcsec(order: int) -> float:
    """Nominal side of a HEALPix cell at ``order``, in arcseconds."""
    return math.degrees(math.sqrt(4 * math.pi / (12 * 4**order))) * 3600.0


def margin_order(margin_arcsec: float) -> int:
    """The finest order whose cells are at least twice ``margin_arcsec`` wide."""
    order = 0
    while order < SPATIAL_ORDER and cell_size_arcsec(order + 1) >= 2 * margin_arcsec:
        order += 1
    return order


@dataclass(frozen=True)
class Partitioning:
    """The partitions of a catalogue: HEALPix ``(order, pixel)`` pairs and their intervals.

    Partitions are sorted by their start in order-29 index space; ``starts[i]`` and
    ``stops[i]`` bound partition ``i`` as a half-open interval.
    """

    orders: NDArray[np.int64]
    pixels: NDArray[np.int64]
    counts: NDArray[np.int64]

    @property
    def starts(self) -> NDArray[np.int64]:
        return self.pixels << (2 * (SPATIAL_ORDER - self.orders))

    @property
    def stops(self) -> NDArray[np.int64]:
        return (self.pixels + 1) << (2 * (SPATIAL_ORDER - self.orders))

    def __len__(self) -> int:
        return len(self.orders)

    def assign(self, healpix29: NDArray[np.int64]) -> NDArray[np.intp]:
        """Index of the partition holding each order-29 index (all must be covered)."""
        return np.searchsorted(self.starts, healpix29, side="right") - 1

    def margin_ring(self, order: int) -> tuple[NDArray[np.int64], NDArray[np.intp]]:
        """Cells at ``order`` bordering each partition from outside.

        Returns ``(cells, owners)``, sorted by cell: cell ``cells[j]`` lies in the margin of
        partition ``owners[j]``.  A cell borders several partitions near corners, so cells
        may repeat.  Ring cells that fall inside an empty part of the sky are kept: they
        simply receive no rows.
        """
        import cdshealpix.nested as hp

        cells: list[NDArray[np.int64]] = []
        owners: list[NDArray[np.intp]] = []
        for index in range(len(self)):
            p_order = int(self.orders[index])
            delta = order - p_order
            if delta < 1:
                raise ValueError("margin order must be finer than every partition")
            borders, corners = hp.external_neighbours(
                np.array([self.pixels[index]], dtype=np.uint64), p_order, delta
            )
            ring = np.concatenate([borders.ravel(), corners.ravel()]).astype(np.int64)
            ring = np.sort(ring[ring >= 0])  # distinct (np.unique hashes: slower)
            ring = ring[np.diff(ring, prepend=-1) != 0]
            cells.append(ring)
            owners.append(np.full(len(ring), index, dtype=np.intp))
        all_cells = np.concatenate(cells) if cells else np.empty(0, np.int64)
        all_owners = np.concatenate(owners) if owners else np.empty(0, np.intp)
        order_idx = np.argsort(all_cells, kind="stable")
        return all_cells[order_idx], all_owners[order_idx]


def choose_partitions(
    histogram: NDArray[np.int64], max_rows: int, *, histogram_order: int = HISTOGRAM_ORDER
) -> Partitioning:
    """Adaptive partitions from a dense histogram of counts at ``histogram_order``.

    A cell becomes a partition when it holds at most ``max_rows`` rows or cannot be split
    further; otherwise its four children are considered.  Empty cells yield no partition.
    """
    if histogram.shape != (12 * 4**histogram_order,):
        raise ValueError("histogram size does not match its order")
    if max_rows < 1:
        raise ValueError("max_rows must be positive")
    # counts_at[k] holds the row count of every cell at order k.
    counts_at: list[NDArray[np.int64]] = [histogram.astype(np.int64, copy=False)]
    for _ in range(histogram_order):
        counts_at.append(counts_at[-1].reshape(-1, 4).sum(axis=1))
    counts_at.reverse()

    orders: list[NDArray[np.int64]] = []
    pixels: list[NDArray[np.int64]] = []
    counts: list[NDArray[np.int64]] = []
    candidates = np.arange(12, dtype=np.int64)
    for order in range(histogram_order + 1):
        c = counts_at[order][candidates]
        nonempty = c > 0
        candidates, c = candidates[nonempty], c[nonempty]
        final = c <= max_rows if order < histogram_order else np.ones(len(c), dtype=bool)
        orders.append(np.full(int(final.sum()), order, dtype=np.int64))
        pixels.append(candidates[final])
        counts.append(c[final])
        split = candidates[~final]
        candidates = (split[:, None] * 4 + np.arange(4, dtype=np.int64)).ravel()
        if len(candidates) == 0:
            break
    all_orders = np.concatenate(orders)
    all_pixels = np.concatenate(pixels)
    all_counts = np.concatenate(counts)
    starts = all_pixels << (2 * (SPATIAL_ORDER - all_orders))
    by_start = np.argsort(starts, kind="stable")
    return Partitioning(all_orders[by_start], all_pixels[by_start], all_counts[by_start])
