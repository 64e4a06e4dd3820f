"""Appending batches to a HATS table: visible at once, whole, found by every query path."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import skyvault
from skyvault.catalog.append import append, status
from skyvault.catalog.ingest import ingest
from skyvault.errors import IngestError, UsageError
from tests.catalog.appendkit import TABLE, batch, make_table, separation_deg


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return make_table(tmp_path)


def _all_rows(batches: list[int]) -> pa.Table:
    return pa.concat_tables([batch(b) for b in [0, *batches]])


def _ids(result: pa.Table, column: str = "id") -> list[int]:
    return sorted(result.column(column).to_pylist())


CONES = [(10.0, 80.0, 5.0), (200.0, -75.0, 3.0), (45.0, 0.0, 2.0), (300.0, 30.0, 10.0)]


def test_appended_rows_are_found_by_cone_and_id_queries(data: Path) -> None:
    arc = skyvault.open(data)
    batches = [1, 2, 3]
    for b in batches:
        result = append(data, TABLE, batch(b), f"visit-{b}")
        assert result.written and result.rows == batch(b).num_rows
    rows = _all_rows(batches)
    ra, dec = rows.column("ra").to_numpy(), rows.column("dec").to_numpy()
    # a cone around each batch's field, plus fixed ones (polar cones fall in the base's holes)
    cones = CONES + [
        (float(batch(b).column("ra")[0].as_py()), float(batch(b).column("dec")[0].as_py()), 1.0)
        for b in batches
    ]
    found_appended = 0
    for cra, cdec, r in cones:
        got = arc.query(
            f"SELECT id FROM {TABLE} WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), "
            f"CIRCLE('ICRS', {cra}, {cdec}, {r}))"
        )
        want = sorted(rows.column("id").to_numpy()[separation_deg(ra, dec, cra, cdec) < r].tolist())
        assert _ids(got) == want, (cra, cdec, r)
        found_appended += sum(1 for i in want if i >= 1_000_000)
    assert found_appended > 10
    total = arc.query(f"SELECT COUNT(*) AS n, COUNT(DISTINCT id) AS u FROM {TABLE}").to_pylist()
    assert total == [{"n": rows.num_rows, "u": rows.num_rows}]
    one = batch(2).slice(5, 1)
    got = arc.query(f"SELECT id, ra, dec, batch FROM {TABLE} WHERE id = {one['id'][0].as_py()}")
    assert got.to_pylist() == one.select(["id", "ra", "dec", "batch"]).to_pylist()


def test_appended_rows_are_found_by_crossmatch(data: Path, tmp_path: Path) -> None:
    arc = skyvault.open(data)
    for b in (1, 2):
        append(data, TABLE, batch(b), f"v{b}")
    rows = _all_rows([1, 2])
    # partners: 300 rows, 1" off rows of the base and of the batches, and some far from all
    rng = np.random.default_rng(9)
    pick = rng.choice(rows.num_rows, 300, replace=False)
    pra = np.mod(rows.column("ra").to_numpy()[pick] + 1 / 3600, 360)
    pdec = np.clip(rows.column("dec").to_numpy()[pick], -89.9, 89.9)
    pick_ids = rows.column("id").to_numpy()[pick]
    pick_ids[-50:] = -1  # these move far away
    pra[-50:] = np.mod(pra[-50:] + 90, 360)
    partners = pa.table({"pid": np.arange(300), "pra": pra, "pdec": pdec})
    pq.write_table(partners, tmp_path / "p.parquet")
    ingest([tmp_path / "p.parquet"], "s.p", data, ra="pra", dec="pdec")
    got = arc.query(
        f"SELECT t.id, p.pid FROM {TABLE} AS t JOIN s.p AS p "
        "ON 1 = CONTAINS(POINT('ICRS', t.ra, t.dec), CIRCLE('ICRS', p.pra, p.pdec, 5.0 / 3600))"
    )
    got_pairs = sorted(
        zip(got.column("id").to_pylist(), got.column("pid").to_pylist(), strict=True)
    )
    ra, dec, ids = (
        rows.column("ra").to_numpy(),
        rows.column("dec").to_numpy(),
        rows.column("id").to_numpy(),
    )
    want = []
    for pid in range(300):
        near = separation_deg(ra, dec, pra[pid], pdec[pid]) < 5 / 3600
        want.extend((int(i), pid) for i in ids[near])
    assert got_pairs == sorted(want)
    assert sum(1 for i, _ in want if i >= 1_000_000) > 0


def test_same_batch_id_is_a_no_op(data: Path) -> None:
    first = append(data, TABLE, batch(1), "visit-1")
    again = append(data, TABLE, batch(1), "visit-1")
    other = append(data, TABLE, batch(2), "visit-2")
    assert first.written and not again.written and other.written
    assert (first.snapshot, again.snapshot, other.snapshot) == (1, 1, 2)
    n = skyvault.open(data).query(f"SELECT COUNT(*) AS n FROM {TABLE}").to_pylist()[0]["n"]
    assert n == _all_rows([1, 2]).num_rows


def test_status_has_snapshot_and_commit_time(data: Path) -> None:
    assert status(data, TABLE).snapshot == 0
    assert status(data, TABLE).committed is None
    before = time.time()
    append(data, TABLE, batch(1), "a")
    snap = status(data, TABLE)
    assert snap.snapshot == 1 and snap.batch_ids == {"a"}
    assert snap.committed is not None
    from datetime import datetime

    assert datetime.fromisoformat(snap.committed).timestamp() >= before - 1


def test_append_from_files_and_cli(data: Path, tmp_path: Path) -> None:
    from skyvault.cli import main

    pq.write_table(batch(4), tmp_path / "b4.parquet")
    assert (
        main(
            [
                "append",
                str(tmp_path / "b4.parquet"),
                "--table",
                TABLE,
                "--batch-id",
                "v4",
                "--data",
                str(data),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "append",
                str(tmp_path / "b4.parquet"),
                "--table",
                TABLE,
                "--batch-id",
                "v4",
                "--data",
                str(data),
            ]
        )
        == 0
    )
    got = skyvault.open(data).query(f"SELECT COUNT(*) AS n FROM {TABLE} WHERE batch = 4")
    assert got.to_pylist() == [{"n": batch(4).num_rows}]


def test_bad_batches_are_refused_clearly(data: Path, tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="lacks batch"):
        append(data, TABLE, batch(1).drop_columns(["batch"]), "x")
    with pytest.raises(IngestError, match="has columns the table has not: extra"):
        append(data, TABLE, batch(1).append_column("extra", pa.array([1] * batch(1).num_rows)), "x")
    bad = batch(1).set_column(2, "dec", pa.array(np.full(batch(1).num_rows, 95.0)))
    with pytest.raises(IngestError, match="outside"):
        append(data, TABLE, bad, "x")
    with pytest.raises(UsageError, match="batch id"):
        append(data, TABLE, batch(1), "")
    pq.write_table(pa.table({"k": [1, 2]}), tmp_path / "plain.parquet")
    ingest([tmp_path / "plain.parquet"], "s.plain", data)
    with pytest.raises(UsageError, match="no positions"):
        append(data, "s.plain", pa.table({"k": [3]}), "x")
    assert status(data, TABLE).snapshot == 0  # nothing was committed by the refusals


def test_readers_see_whole_batches_while_appending_and_compacting(data: Path) -> None:
    """Appenders, a compactor and readers at once for a few seconds: every result is a
    union of whole batches, and a cone's rows are exactly the oracle's for those batches."""
    from skyvault.catalog.compact import compact

    cone = (45.0, 0.0, 60.0)
    expected: dict[int, int] = {}
    in_cone: dict[int, int] = {}
    for b in range(0, 2000):
        t = batch(b)
        expected[b] = t.num_rows
        sep = separation_deg(
            t.column("ra").to_numpy(), t.column("dec").to_numpy(), cone[0], cone[1]
        )
        in_cone[b] = int((sep < cone[2]).sum())
    stop = time.monotonic() + 4.0
    failures: list[str] = []
    next_batch = iter(range(1, 2000))
    lock = threading.Lock()
    queries = [0]

    def appender() -> None:
        while time.monotonic() < stop:
            with lock:
                b = next(next_batch)
            append(data, TABLE, batch(b), f"b{b}")

    def compactor() -> None:
        while time.monotonic() < stop:
            time.sleep(0.7)
            compact(data, TABLE)

    def reader() -> None:
        arc = skyvault.open(data)
        while time.monotonic() < stop:
            counts = arc.query(
                f"SELECT batch, COUNT(*) AS n FROM {TABLE} GROUP BY batch"
            ).to_pylist()
            for row in counts:
                if row["n"] != expected[row["batch"]]:
                    failures.append(
                        f"batch {row['batch']}: {row['n']} rows of {expected[row['batch']]}"
                    )
            cone_counts = arc.query(
                f"SELECT batch, COUNT(*) AS n FROM {TABLE} "
                f"WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), "
                f"CIRCLE('ICRS', {cone[0]}, {cone[1]}, {cone[2]})) GROUP BY batch"
            ).to_pylist()
            for row in cone_counts:
                if row["n"] != in_cone[row["batch"]]:
                    failures.append(
                        f"cone, batch {row['batch']}: {row['n']} of {in_cone[row['batch']]}"
                    )
            queries[0] += 1

    threads = [threading.Thread(target=f) for f in (appender, appender, compactor, reader, reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[:5]
    assert queries[0] > 5
    snap = status(data, TABLE)
    assert snap.snapshot >= 5
    final = (
        skyvault.open(data)
        .query(f"SELECT batch, COUNT(*) AS n FROM {TABLE} GROUP BY batch")
        .to_pylist()
    )
    assert {r["batch"] for r in final} == {0} | {int(i[1:]) for i in snap.batch_ids}


_APPENDER = """
import sys
from pathlib import Path
sys.path.insert(0, {root!r})
from skyvault.catalog.append import append
from tests.catalog.appendkit import TABLE, batch
data = Path({data!r})
for b in range({first}, {first} + 10_000):
    append(data, TABLE, batch(b), f"b{{b}}")
    print(b, flush=True)
"""


def _check_exactly_once(data: Path) -> set[int]:
    """Every committed batch is in the table whole and once; nothing else is."""
    snap = status(data, TABLE)
    committed = {int(i[1:]) for i in snap.batch_ids}
    arc = skyvault.open(data)
    counts = arc.query(
        f"SELECT batch, COUNT(*) AS n, COUNT(DISTINCT id) AS u FROM {TABLE} GROUP BY batch"
    )
    got = {r["batch"]: (r["n"], r["u"]) for r in counts.to_pylist()}
    assert set(got) == {0} | committed
    for b, (n, u) in got.items():
        assert n == u == batch(b).num_rows, b
    return committed


@pytest.mark.slow
def test_kill_9_during_append_loses_and_doubles_nothing(data: Path) -> None:
    rng = np.random.default_rng(3)
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(root) / "src"), root])}
    first = 1
    for _ in range(4):
        code = _APPENDER.format(root=root, data=str(data), first=first)
        proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE)
        assert proc.stdout is not None
        proc.stdout.readline()  # one batch committed: now kill it at a random moment
        time.sleep(float(rng.uniform(0.0, 0.5)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        committed = _check_exactly_once(data)
        assert committed, "the appender committed nothing before it was killed"
        # the producer retries from its first batch: the committed ones are no-ops
        for b in range(first, max(committed) + 2):
            append(data, TABLE, batch(b), f"b{b}")
        _check_exactly_once(data)
        first = max(committed) + 2


def test_cli_append_errors_are_one_line(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from skyvault.cli import main

    pq.write_table(batch(4), tmp_path / "b4.parquet")
    argv = [str(tmp_path / "b4.parquet"), "--batch-id", "v4", "--data", str(data)]
    assert main(["append", *argv, "--table", "s.nope"]) == 1
    assert capsys.readouterr().err.strip() == "skyvault: error: no table s.nope"
    pq.write_table(batch(4).drop_columns(["batch"]), tmp_path / "b4.parquet")
    assert main(["append", *argv, "--table", TABLE]) == 1
    err = capsys.readouterr().err
    assert "lacks batch" in err and "Traceback" not in err


def _visit_like(b: int, n: int, new_b: int) -> pa.Table:
    """The rows of ``batch(b, n)`` (same positions) under batch number ``new_b``."""
    rows = batch(b, n)
    return pa.table(
        {
            "id": pa.array(new_b * 1_000_000 + np.arange(n, dtype=np.int64)),
            "ra": rows["ra"],
            "dec": rows["dec"],
            "batch": pa.array(np.full(n, new_b, dtype=np.int64)),
        }
    )


def test_the_cached_partition_map_follows_a_compaction(data: Path) -> None:
    from skyvault.catalog.compact import compact
    from skyvault.catalog.registry import PartitionIndex

    link = data / "s" / "t"
    # the appender's process caches the partitions of the version it appends to
    for b in (1, 2, 3):
        append(data, TABLE, batch(b, 3_000), f"v{b}")
    before = PartitionIndex.read(link.resolve())
    compact(data, TABLE)  # splits the field's grown partition into children
    after = PartitionIndex.read(link.resolve())
    assert len(after) > len(before)
    # the same field again: its rows must be cut by the new partitions, not the old ones
    append(data, TABLE, _visit_like(1, 3_000, 9), "v9")
    snap = status(data, TABLE)
    cells = set(zip(after.orders.tolist(), after.pixels.tolist(), strict=True))
    mine = [f for f in snap.files if f.snapshot == 4]
    assert mine
    for f in mine:
        if (f.order, f.pixel) in cells:
            continue
        # a hole cell: overlaps no partition of the new version
        shift = 2 * (29 - f.order)
        lo, hi = f.pixel << shift, (f.pixel + 1) << shift
        assert not ((after.starts < hi) & (after.stops > lo)).any(), (f.order, f.pixel)
    got = skyvault.open(data).query(f"SELECT id FROM {TABLE} WHERE batch = 9")
    assert _ids(got) == _ids(_visit_like(1, 3_000, 9))


def test_a_batch_and_its_pointer_are_durable_in_one_sync_before_the_swap(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from skyvault.catalog import append as append_module

    append(data, TABLE, batch(1), "v1")
    pointer = data / "s" / ".t.snapshot"
    seen: list[tuple[str, list[str]]] = []

    def syncfs(fd: int) -> int:
        staged = sorted(p.read_text() for p in pointer.parent.glob(".t.snapshot.*.tmp"))
        seen.append((pointer.read_text(), staged))
        return 0

    monkeypatch.setattr(append_module, "_syncfs", lambda: syncfs)
    append(data, TABLE, batch(2), "v2")
    assert len(seen) == 1  # one sync for the batch's files, log entry and new pointer
    current, staged = seen[0]
    assert '"snapshot": 1' in current  # not yet swapped when synced
    assert len(staged) == 1 and '"snapshot": 2' in staged[0]
    assert '"snapshot": 2' in pointer.read_text()
    assert not list(pointer.parent.glob("*.tmp"))


def test_without_syncfs_every_file_of_a_batch_is_fsynced(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from skyvault.catalog import append as append_module

    synced: list[Path] = []
    monkeypatch.setattr(append_module, "_syncfs", lambda: None)
    monkeypatch.setattr(append_module, "fsync_file", lambda p: synced.append(Path(p)))
    append(data, TABLE, batch(1), "v1")
    snap = status(data, TABLE)
    assert snap.files
    names = {p.name for p in synced}
    for f in snap.files:
        assert Path(f.path) in synced and Path(f.path).parent in synced
    assert f"{1:012d}.json" in names  # the log entry
    assert any(n.startswith(".t.snapshot.") and n.endswith(".tmp") for n in names)


def test_a_batch_id_committed_by_another_process_is_a_no_op_here(
    data: Path, tmp_path: Path
) -> None:
    # this process has read (and keeps) the ids up to snapshot 1; another commits v2
    append(data, TABLE, batch(1), "v1")
    pq.write_table(batch(2), tmp_path / "b2.parquet")
    code = (
        "import sys; from skyvault.catalog.append import append; "
        f"append(__import__('pathlib').Path(sys.argv[1]), {TABLE!r}, [sys.argv[2]], 'v2')"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(data), str(tmp_path / "b2.parquet")],
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    again = append(data, TABLE, batch(2), "v2")
    assert not again.written and again.snapshot == 2
    assert append(data, TABLE, batch(3), "v3").snapshot == 3
    got = skyvault.open(data).query(f"SELECT COUNT(*) AS n FROM {TABLE} WHERE batch = 2")
    assert got.to_pylist() == [{"n": batch(2).num_rows}]


def test_files_on_two_file_systems_are_synced_on_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    from skyvault.catalog import append as append_module

    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs a second file system (/dev/shm)")
    with tempfile.NamedTemporaryFile(dir=shm) as other:
        here = tmp_path / "a"
        here.write_bytes(b"x")
        devices: list[int] = []

        def syncfs(fd: int) -> int:
            devices.append(os.fstat(fd).st_dev)
            return 0

        monkeypatch.setattr(append_module, "_syncfs", lambda: syncfs)
        append_module.fsync_all([here, tmp_path, Path(other.name)])
        assert sorted(devices) == sorted({tmp_path.stat().st_dev, shm.stat().st_dev})
