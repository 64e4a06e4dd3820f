"""Compaction folds appended batches into a new HATS version: every row once, margins right."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import hats
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import skyvault
from skyvault.catalog.append import append, status
from skyvault.catalog.compact import compact
from skyvault.catalog.partitioning import SPATIAL_ORDER, Partitioning, margin_order
from skyvault.catalog.registry import PartitionIndex, Registry
from tests.catalog.appendkit import TABLE, batch, make_table, separation_deg
from tests.catalog.test_append import CONES


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return make_table(tmp_path)


def _rows(data: Path) -> pa.Table:
    return skyvault.open(data).query(f"SELECT id, ra, dec, batch FROM {TABLE}")


def test_compacted_table_is_hats_with_every_row_once(data: Path) -> None:
    batches = [1, 2, 3]
    for b in batches:
        append(data, TABLE, batch(b), f"v{b}")
    result = compact(data, TABLE)
    assert result.batches == 3 and result.snapshot == 3
    everything = pa.concat_tables([batch(b) for b in [0, *batches]])
    snap = status(data, TABLE)
    assert snap.files == () and snap.snapshot == 3 and snap.batch_ids == {"v1", "v2", "v3"}
    cat = hats.read_hats(data / "s" / "t")
    assert cat.catalog_info.total_rows == everything.num_rows
    pixels = cat.get_healpix_pixels()
    assert len(pixels) == result.partitions
    files = [
        data
        / "s"
        / "t"
        / "dataset"
        / f"Norder={p.order}"
        / f"Dir={p.pixel // 10000 * 10000}"
        / f"Npix={p.pixel}.parquet"
        for p in pixels
    ]
    ids = np.concatenate([pq.read_table(f, columns=["id"]).column("id").to_numpy() for f in files])
    assert sorted(ids.tolist()) == sorted(everything.column("id").to_pylist())
    # every file's rows are inside its pixel and sorted by _healpix_29
    for p, f in zip(pixels, files, strict=True):
        hp = pq.read_table(f, columns=["_healpix_29"]).column(0).to_numpy()
        assert (np.diff(hp) >= 0).all()
        assert ((hp >> 2 * (SPATIAL_ORDER - p.order)) == p.pixel).all()
    # queries see the same rows as before
    ra, dec = everything.column("ra").to_numpy(), everything.column("dec").to_numpy()
    arc = skyvault.open(data)
    for cra, cdec, r in CONES:
        got = arc.query(
            f"SELECT id FROM {TABLE} WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), "
            f"CIRCLE('ICRS', {cra}, {cdec}, {r}))"
        )
        want = everything.column("id").to_numpy()[separation_deg(ra, dec, cra, cdec) < r]
        assert sorted(got.column("id").to_pylist()) == sorted(want.tolist())
    # committed ids stay committed after compaction; new appends continue the count
    assert not append(data, TABLE, batch(2), "v2").written
    assert append(data, TABLE, batch(4), "v4").snapshot == 4
    assert compact(data, TABLE).batches == 1
    assert compact(data, TABLE).batches == 0  # nothing left: no new version


def test_compaction_splits_grown_partitions_and_updates_margins(data: Path) -> None:
    meta_max = 2_000
    # 3 visits of 3,000 rows in one 2-degree field: its partition grows past the threshold
    for b in (1, 2, 3):
        append(data, TABLE, batch(b, 3_000), f"v{b}")
    before = PartitionIndex.read((data / "s" / "t").resolve())
    compact(data, TABLE)
    root = (data / "s" / "t").resolve()
    after = PartitionIndex.read(root)
    counts = [pq.read_metadata(f).num_rows for f in after.files]
    assert max(counts) <= meta_max
    assert len(after) > len(before)
    old_cells = set(zip(before.orders.tolist(), before.pixels.tolist(), strict=True))
    split = [
        (o, p)
        for o, p in zip(after.orders.tolist(), after.pixels.tolist(), strict=True)
        if (o, p) not in old_cells
        and any((o - k, p >> 2 * k) in old_cells for k in range(1, o + 1))
    ]
    assert split, "no base partition was split"
    # margins: every partition's margin is exactly the rows outside it whose cell (at the
    # margin order) is in its ring, computed here from all rows at once
    everything = pa.concat_tables([batch(0), *(batch(b, 3_000) for b in (1, 2, 3))])
    from skyvault.sky.coverage import healpix29

    hp = healpix29(everything.column("ra").to_numpy(), everything.column("dec").to_numpy())
    ids = everything.column("id").to_numpy()
    m_order = margin_order(5.0)
    part = Partitioning(after.orders, after.pixels, np.zeros(len(after), np.int64))
    ring_cells, ring_owners = part.margin_ring(m_order)
    cells = hp >> 2 * (SPATIAL_ORDER - m_order)
    margin_root = root / "margin"
    checked = 0
    for index in range(len(after)):
        ring = ring_cells[ring_owners == index]
        want = sorted(ids[np.isin(cells, ring)].tolist())
        o, p = int(after.orders[index]), int(after.pixels[index])
        path = (
            margin_root
            / "dataset"
            / f"Norder={o}"
            / f"Dir={p // 10000 * 10000}"
            / f"Npix={p}.parquet"
        )
        got = (
            sorted(pq.read_table(path, columns=["id"]).column(0).to_pylist())
            if path.exists()
            else []
        )
        assert got == want, (o, p)
        checked += len(want)
    assert checked > 0
    assert hats.read_hats(data / "s" / "t").catalog_info.total_rows == everything.num_rows


def test_queries_planned_before_a_compaction_still_read_their_files(data: Path) -> None:
    for b in (1, 2):
        append(data, TABLE, batch(b), f"v{b}")
    old = Registry(data).get("s", "t")
    assert old.deltas is not None
    compact(data, TABLE)
    rows = sum(pq.read_metadata(f).num_rows for f in old.all_files)
    assert rows == batch(0).num_rows + batch(1).num_rows + batch(2).num_rows
    new = Registry(data).get("s", "t")
    assert new.deltas is None and new.meta.nrows == rows


def test_compact_cli(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from skyvault.cli import main

    assert main(["compact", "--table", TABLE, "--data", str(data)]) == 0
    assert "no appended rows" in capsys.readouterr().out
    append(data, TABLE, batch(1), "v1")
    assert main(["compact", "--table", TABLE, "--data", str(data)]) == 0
    assert "compacted 1 batches" in capsys.readouterr().out


_COMPACTOR = """
import sys
from pathlib import Path
from skyvault.catalog.compact import compact
print("start", flush=True)
compact(Path({data!r}), "s.t")
print("done", flush=True)
"""


@pytest.mark.slow
def test_kill_9_during_compaction_keeps_every_row_once(data: Path) -> None:
    rng = np.random.default_rng(5)
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root)])}
    b = 1
    midway = 0
    for _ in range(5):
        for _ in range(2):
            append(data, TABLE, batch(b, 1_500), f"b{b}")
            b += 1
        proc = subprocess.Popen(
            [sys.executable, "-c", _COMPACTOR.format(data=str(data))],
            env=env,
            stdout=subprocess.PIPE,
        )
        assert proc.stdout is not None
        proc.stdout.readline()
        time.sleep(float(rng.uniform(0.0, 1.0)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        midway += b"done" not in proc.stdout.read()
        committed = _check_exactly_once_sized(data)
        assert committed == set(range(1, b))
        cat = hats.read_hats(data / "s" / "t")  # whatever version is published is HATS
        assert cat.catalog_info.total_rows > 0
    assert midway >= 1, "no compaction was killed before it finished"
    compact(data, TABLE)
    assert _check_exactly_once_sized(data) == set(range(1, b))
    assert status(data, TABLE).files == ()


def _check_exactly_once_sized(data: Path) -> set[int]:
    snap = status(data, TABLE)
    committed = {int(i[1:]) for i in snap.batch_ids}
    counts = skyvault.open(data).query(
        f"SELECT batch, COUNT(*) AS n, COUNT(DISTINCT id) AS u FROM {TABLE} GROUP BY batch"
    )
    got = {r["batch"]: (r["n"], r["u"]) for r in counts.to_pylist()}
    assert set(got) == {0} | committed
    for bb, (n, u) in got.items():
        assert n == u == (batch(0).num_rows if bb == 0 else 1_500), bb
    return committed


def _exactly_once(data: Path, batches: list[int], n: int | None = None) -> None:
    """The table holds batch 0 and ``batches`` (of ``n`` rows; 3,000 from batch 1 to 99),
    each row once."""
    got = _rows(data).column("id").to_pylist()
    tables = [batch(b, n or (3_000 if 0 < b < 100 else None)) for b in batches]
    want = pa.concat_tables([batch(0), *tables]).column("id").to_pylist()
    assert len(got) == len(set(got))
    assert sorted(got) == sorted(want)


def test_appends_during_a_compaction_are_carried_over_once(data: Path) -> None:
    """Batches committed while the compaction writes are deltas of the new version, cut by
    its partitions (some split by this compaction), each row exactly once."""
    for b in (1, 2, 3):
        append(data, TABLE, batch(b, 3_000), f"v{b}")  # grows a partition past 2,000 rows

    def during() -> None:
        for b in (4, 5, 6):
            assert append(data, TABLE, batch(b, 3_000), f"v{b}").written

    result = compact(data, TABLE, on_folded=during)
    assert result.snapshot == 3 and result.batches == 3
    snap = status(data, TABLE)
    assert snap.snapshot == 6 and snap.folded == 3
    assert {f.snapshot for f in snap.files} == {4, 5, 6}
    assert snap.batch_ids == {f"v{b}" for b in range(1, 7)}
    # files whose cell is still a partition (or free) are linked, the others cut again
    links = [os.stat(f.path).st_nlink for f in snap.files]
    assert 1 in links and 2 in links, links
    # each carried file lies inside one partition of the new version, or outside all
    index = PartitionIndex.read((data / "s" / "t").resolve())
    for f in snap.files:
        j = int(np.searchsorted(index.starts, f.start, side="right")) - 1
        inside = j >= 0 and f.start < index.stops[j]
        if inside:
            assert f.stop <= index.stops[j]
        else:
            assert j + 1 >= len(index) or f.stop <= index.starts[j + 1]
    _exactly_once(data, [1, 2, 3, 4, 5, 6])
    assert not append(data, TABLE, batch(5, 3_000), "v5").written  # still committed
    compact(data, TABLE)
    assert status(data, TABLE).files == ()
    _exactly_once(data, [1, 2, 3, 4, 5, 6])
    assert hats.read_hats(data / "s" / "t").catalog_info.total_rows == 20_000 + 6 * 3_000


def test_carried_batches_survive_a_crash_before_the_pointer(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after the publish, before the pointer names the new version: the batches the
    compaction carried over are still there (folded.json says so)."""
    import skyvault.catalog.compact as compact_module

    append(data, TABLE, batch(1, 3_000), "v1")

    def crash(*_: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(compact_module, "_point", crash)
    with pytest.raises(KeyboardInterrupt):
        compact(data, TABLE, on_folded=lambda: _append_quietly(data, 2))
    monkeypatch.undo()
    snap = status(data, TABLE)
    assert snap.folded == 1 and snap.snapshot == 2 and snap.batch_ids == {"v1", "v2"}
    _exactly_once(data, [1, 2])
    assert append(data, TABLE, batch(3, 3_000), "v3").snapshot == 3
    _exactly_once(data, [1, 2, 3])


def _append_quietly(data: Path, b: int) -> None:
    append(data, TABLE, batch(b, 3_000), f"v{b}")


def test_appends_do_not_wait_for_a_whole_compaction(data: Path) -> None:
    """An appender running beside a compaction commits batches while it runs; all of them
    end up in the table exactly once."""
    for b in range(1, 5):
        append(data, TABLE, batch(b, 3_000), f"v{b}")
    stop = threading.Event()
    done: list[tuple[int, float]] = []

    def appender() -> None:
        b = 100
        while not stop.is_set():
            append(data, TABLE, batch(b), f"v{b}")
            done.append((b, time.monotonic()))
            b += 1

    thread = threading.Thread(target=appender)
    thread.start()
    try:
        time.sleep(0.2)
        started = time.monotonic()
        compact(data, TABLE)
        ended = time.monotonic()
    finally:
        stop.set()
        thread.join()
    during = [b for b, t in done if started < t < ended]
    assert len(during) >= 2, f"only {len(during)} appends committed during the compaction"
    _exactly_once(data, [1, 2, 3, 4, *(b for b, _ in done)])
    compact(data, TABLE)
    _exactly_once(data, [1, 2, 3, 4, *(b for b, _ in done)])


def _wait_for(check: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_background_compaction_after_a_number_of_batches(data: Path) -> None:
    from skyvault.catalog.compact import BackgroundCompactor, CompactionPolicy

    compactor = BackgroundCompactor(data, CompactionPolicy(after_batches=3, after_bytes=0), 0.05)
    compactor.start()
    try:
        for b in (1, 2):
            append(data, TABLE, batch(b, 3_000), f"v{b}")
        time.sleep(0.5)
        assert status(data, TABLE).folded == 0  # below the threshold: left alone
        append(data, TABLE, batch(3, 3_000), "v3")
        _wait_for(lambda: status(data, TABLE).folded == 3)
        assert status(data, TABLE).files == ()
    finally:
        compactor.stop()
    _exactly_once(data, [1, 2, 3])


def test_background_compaction_by_size_and_off(data: Path) -> None:
    from skyvault.catalog.compact import BackgroundCompactor, CompactionPolicy

    append(data, TABLE, batch(1, 3_000), "v1")
    off = BackgroundCompactor(data, CompactionPolicy(after_batches=0, after_bytes=0))
    assert off.run_once() == []  # both thresholds off: never
    big = BackgroundCompactor(data, CompactionPolicy(after_batches=0, after_bytes=10**9))
    assert big.run_once() == []
    small = BackgroundCompactor(data, CompactionPolicy(after_batches=0, after_bytes=1_000))
    assert small.run_once() == [TABLE]
    assert status(data, TABLE).folded == 1


def test_ring_rows_of_the_deltas_match_a_scan_of_every_row() -> None:
    # The compaction takes the appended rows in a margin ring by binary search per ring
    # cell (the deltas are sorted); a scan of every row must give the same rows.
    from skyvault.catalog.compact import _in_ring, _ring_rows

    rng = np.random.default_rng(3)
    hp = np.sort(rng.integers(0, 12 << 2 * SPATIAL_ORDER, 20_000, dtype=np.int64))
    shift = 2 * (SPATIAL_ORDER - 6)
    hp[100:140] = hp[100]  # several rows in one cell
    table = pa.table({"_healpix_29": hp, "row": np.arange(len(hp))})
    cells = hp >> shift
    ring = np.unique(np.concatenate([cells[::37], rng.integers(0, 12 << 12, 500)]))
    got = _ring_rows(table, cells, ring)
    want = _in_ring(table, ring, shift)
    assert got.num_rows > 40
    assert got.column("row").to_pylist() == want.column("row").to_pylist()
    assert _ring_rows(table, cells, ring[:0]).num_rows == 0
    assert _ring_rows(table, cells, np.array([-1], np.int64)).num_rows == 0
