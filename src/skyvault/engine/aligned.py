"""A split cross-match: each task reads the partner partitions aligned with its own, plus margins.

When a distributed executor splits a cross-match on one table (the *split* scan, each task a
group of its partitions), the other table (the *partner*) used to be read whole by every
task.  For a stored partner with a HATS margin catalogue at least as wide as the match radius,
a task instead reads, for every partner partition ``Q`` overlapping the task's partitions
(coarser, finer or equal: HEALPix cells nest):

* ``Q``'s own file (when the query's pruning kept it), and
* ``Q``'s margin file: the partner rows outside ``Q`` closer than the threshold to it,

and **tags** both with ``Q``, reading only the rows within ``r`` of the task's partitions
(their index ranges widened by a ring of cells at least ``2r`` wide: a coarser ``Q`` is not
read whole by each of the tasks it overlaps).  A split row ``s`` is tagged with the partner
partition holding its position, and the tag is folded into the cell key of the cell join
(:mod:`skyvault.sky.cells`), so ``s`` meets only partner rows read for its own
``Q``.  Every partner row within ``r`` of ``s`` is there exactly once: inside ``Q`` it is in
``Q``'s file, outside it is in ``Q``'s margin (``r`` ≤ threshold), and the two are disjoint.
Each split row is in exactly one task, so every pair comes out exactly once.

Why tags rather than one de-duplicated set of partner rows per task: the margins of two
neighbouring partner partitions overlap (a row near their shared corner is in both), and a
margin row may also be a row of another partner partition read by the same task; no
``_healpix_29`` filter removes the first kind of duplicate, and removing a duplicate would in
any case take it away from the split rows of the partition whose margin it came from.  With
tags a partner row may be read more than once in a task, but it meets each split row once.

Split rows where the partner has no partition at all (partitions are adaptive: empty cells
have none, so partner footprint edges and holes leave gaps) are tagged 0.  No margin covers
them, so the task also reads, under tag 0, the partner files that overlap those gaps widened
by one ring of cells at least ``2r`` wide, keeping only the rows inside the widened gaps.

Without a margin catalogue, with a threshold below the radius, or with a partner that is not
a stored positional table (an upload), the partner is read whole by every task as before:
slower, always correct.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence

import numpy as np
from mocpy import MOC
from numpy.typing import NDArray

from skyvault.catalog.ingest import HEALPIX_COLUMN
from skyvault.catalog.partitioning import margin_order
from skyvault.engine.plan import Scan, SkyLayout, TaggedFiles, TagLookup
from skyvault.sky.coverage import healpix29_ranges

__all__ = ["aligned_partner", "aligned_task_scans", "contiguous_runs"]

_DILATION_MAX_ORDER = 12
"""Finest order the gaps are widened at (cells of ~52″): finer gains little."""
_RESIDUAL_RANGES = 16
"""Index ranges that restrict the rows read for the gaps (a superset, like a cone's)."""
_THRESHOLD_SLACK = 1e-9
"""Relative slack when comparing the radius with the margin threshold: 5/3600 degrees is
5.000000000000001″ after the round trip, and the margin rings are twice as wide anyway."""


def aligned_partner(scans: Sequence[Scan], split: str) -> tuple[Scan, Scan] | str:
    """The split scan and its partner when the split can read aligned partitions, else why not.

    The split scan must be one side of a cell join whose other side is a stored positional
    table with a margin catalogue at least as wide as the match radius.
    """
    by_name = {s.placeholder: s for s in scans}
    scan = by_name.get(split)
    if scan is None or scan.cell is None or scan.partner is None:
        return "the split table is not in a cross-match"
    partner = by_name.get(scan.partner)
    if scan.layout is None:
        return "the split table has no partition layout"
    if partner is None or partner.cell is None or partner.arrow is not None:
        return "the partner is not a stored table"
    layout = partner.layout
    if layout is None or layout.margin is None or layout.margin_arcsec is None:
        return "the partner has no margin catalogue"
    radius_arcsec = scan.cell.radius * 3600.0
    if radius_arcsec > layout.margin_arcsec * (1 + _THRESHOLD_SLACK):
        return (
            f"the partner's margin ({layout.margin_arcsec:g}″) is narrower than the "
            f"radius ({radius_arcsec:g}″)"
        )
    if not partner.files:
        return "no partner partition can match"
    if not _margin_follows_partitions(layout):
        return "the partner's margin partitions are not its partitions"
    return scan, partner


def _margin_follows_partitions(layout: SkyLayout) -> bool:
    """Whether every margin file belongs to a partition of the table (HATS margins do: the
    margin of partition ``Q`` is stored under ``Q``'s name).  Anything else is a layout
    this module does not understand, so the partner is then read whole."""
    margin = layout.margin
    if margin is None:
        return False
    parts = layout.partitions
    own = set(zip(parts.orders.tolist(), parts.pixels.tolist(), strict=True))
    return all(
        cell in own for cell in zip(margin.orders.tolist(), margin.pixels.tolist(), strict=True)
    )


def aligned_task_scans(scan: Scan, partner: Scan, files: Sequence[str]) -> tuple[Scan, Scan] | None:
    """The split scan reading ``files`` with its rows tagged, and the partner rows that task
    needs, tagged (see the module docstring); None when ``files`` are not partitions of the
    split table's layout (then the caller reads the partner whole)."""
    assert scan.layout is not None and partner.layout is not None and scan.cell is not None
    own = _intervals(scan.layout, files)
    if own is None:
        return None
    area = _merge(own)
    theirs = partner.layout.partitions
    overlapping = _overlapping(theirs.starts, theirs.stops, area)
    tags = np.arange(1, len(overlapping) + 1, dtype=np.int64)
    lookup = np.stack([theirs.starts[overlapping], theirs.stops[overlapping], tags], axis=1).astype(
        np.int64
    )
    kept = set(partner.files)
    margin_files = _margin_files(partner.layout)
    tagged: list[tuple[str, int]] = []
    for index, tag in zip(overlapping.tolist(), tags.tolist(), strict=True):
        main = theirs.files[index]
        if main in kept:
            tagged.append((main, tag))
        order, pixel = int(theirs.orders[index]), int(theirs.pixels[index])
        margin = margin_files.get((order, pixel))
        if margin is not None:
            tagged.append((margin, tag))
    residual: NDArray[np.int64] | None = None
    gaps = _subtract(area, np.stack([theirs.starts, theirs.stops], axis=1))
    if len(gaps):
        widened = _widen(gaps, scan.cell.radius)
        near = _overlapping(theirs.starts, theirs.stops, widened)
        for index in near.tolist():
            if theirs.files[index] in kept:
                tagged.append((theirs.files[index], 0))
        residual = widened
    columns = scan.columns
    if columns is not None and HEALPIX_COLUMN not in columns:
        columns = (*columns, HEALPIX_COLUMN)
    task_scan = dataclasses.replace(
        scan, files=tuple(files), columns=columns, tag=TagLookup(lookup)
    )
    # Only partner rows within r of the task's partitions can meet its rows: a partner
    # partition coarser than the task's run is not read whole.
    near = _widen(area, scan.cell.radius)
    ranges = near if partner.ranges is None else _intersect(partner.ranges, near)
    task_partner = dataclasses.replace(
        partner,
        files=tuple(dict.fromkeys(f for f, _ in tagged)),
        ranges=None,  # in TaggedFiles: the view reads the files itself
        tag=TaggedFiles(tuple(tagged), ranges, residual),
    )
    return task_scan, task_partner


def contiguous_runs(files: Sequence[str], sizes: Sequence[int], n: int) -> list[tuple[str, ...]]:
    """``files`` (in sky order) cut into at most ``n`` runs of consecutive files of about
    equal bytes.  Neighbouring partitions in one task share their partner partitions, so
    each task reads fewer of them than a byte-balanced mix from all over the sky would."""
    n = max(1, min(n, len(files)))
    cumulative = np.cumsum(np.asarray(sizes, dtype=np.float64))
    total = float(cumulative[-1]) if len(cumulative) else 0.0
    bounds = [0]
    for k in range(1, n):
        cut = int(np.searchsorted(cumulative, total * k / n, side="left")) + 1
        cut = max(cut, bounds[-1] + 1)  # no empty run
        cut = min(cut, len(files) - (n - k))  # a file left for each later run
        bounds.append(cut)
    bounds.append(len(files))
    return [tuple(files[a:b]) for a, b in itertools.pairwise(bounds) if b > a]


# --- intervals of the order-29 index --------------------------------------------------------


def _intervals(layout: SkyLayout, files: Sequence[str]) -> NDArray[np.int64] | None:
    """``[start, stop)`` of each of ``files`` in the table's layout, sorted."""
    index = {f: i for i, f in enumerate(layout.partitions.files)}
    try:
        rows = [index[f] for f in files]
    except KeyError:
        return None
    parts = layout.partitions
    out = np.stack([parts.starts[rows], parts.stops[rows]], axis=1).astype(np.int64)
    return out[np.argsort(out[:, 0], kind="stable")].reshape(-1, 2)


def _merge(intervals: NDArray[np.int64]) -> NDArray[np.int64]:
    """Sorted, disjoint intervals with touching ones merged."""
    if not len(intervals):
        return intervals.reshape(0, 2)
    out = [list(intervals[0])]
    for lo, hi in intervals[1:].tolist():
        if lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return np.asarray(out, dtype=np.int64).reshape(-1, 2)


def _overlapping(
    starts: NDArray[np.int64], stops: NDArray[np.int64], area: NDArray[np.int64]
) -> NDArray[np.intp]:
    """Indexes of the disjoint, sorted partitions ``[starts, stops)`` that meet ``area``."""
    if not len(area) or not len(starts):
        return np.zeros(0, dtype=np.intp)
    # The first area interval ending after the partition starts is the only candidate.
    first = np.searchsorted(area[:, 1], starts, side="right")
    candidate = np.minimum(first, len(area) - 1)
    hit = (first < len(area)) & (area[candidate, 0] < stops)
    return np.flatnonzero(hit)


def _subtract(area: NDArray[np.int64], cover: NDArray[np.int64]) -> NDArray[np.int64]:
    """The parts of ``area`` outside ``cover`` (both sorted and disjoint)."""
    out: list[tuple[int, int]] = []
    cover_list = cover.tolist()
    j = 0
    for lo, hi in area.tolist():
        while j < len(cover_list) and cover_list[j][1] <= lo:
            j += 1
        k, cursor = j, lo
        while k < len(cover_list) and cover_list[k][0] < hi:
            c_lo, c_hi = cover_list[k]
            if c_lo > cursor:
                out.append((cursor, c_lo))
            cursor = max(cursor, c_hi)
            k += 1
        if cursor < hi:
            out.append((cursor, hi))
    return np.asarray(out, dtype=np.int64).reshape(-1, 2)


def _intersect(a: NDArray[np.int64], b: NDArray[np.int64]) -> NDArray[np.int64]:
    """The parts common to ``a`` and ``b`` (both sorted and disjoint)."""
    out: list[tuple[int, int]] = []
    a_list, b_list = a.tolist(), b.tolist()
    i = j = 0
    while i < len(a_list) and j < len(b_list):
        lo = max(a_list[i][0], b_list[j][0])
        hi = min(a_list[i][1], b_list[j][1])
        if lo < hi:
            out.append((lo, hi))
        if a_list[i][1] < b_list[j][1]:
            i += 1
        else:
            j += 1
    return np.asarray(out, dtype=np.int64).reshape(-1, 2)


def _widen(gaps: NDArray[np.int64], radius_deg: float) -> NDArray[np.int64]:
    """``gaps`` and the ring of cells around them at an order whose cells are at least
    ``2 r`` wide (the ingest's margin rule): every point within ``r`` of a gap is inside.
    Gaps finer than that order are first widened to whole cells of it."""
    order = min(margin_order(radius_deg * 3600.0), _DILATION_MAX_ORDER)
    moc = MOC.from_depth29_ranges(order, gaps.astype(np.uint64))
    return healpix29_ranges(moc.add_neighbours(), max_ranges=_RESIDUAL_RANGES)


def _margin_files(layout: SkyLayout) -> dict[tuple[int, int], str]:
    margin = layout.margin
    if margin is None:
        return {}
    return {
        (int(o), int(p)): f
        for o, p, f in zip(
            margin.orders.tolist(), margin.pixels.tolist(), margin.files, strict=True
        )
    }
