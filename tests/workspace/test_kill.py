"""kill -9 in the middle of a load: the table stays as it was, and the next load works."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skyvault.workspace import WorkspaceStore
from tests.workspace.conftest import ALICE, TARGETS

pytestmark = pytest.mark.slow

NAME = "user_alice.targets"

LOADER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import pyarrow as pa
    from skyvault.auth import AuthStorage, Identity
    from skyvault.workspace import WorkspaceStore

    data, marker = Path(sys.argv[1]), Path(sys.argv[2])
    store = WorkspaceStore(data, AuthStorage.for_data_dir(data))

    def batches():
        for k in range(1000):
            n = 10_000
            yield pa.RecordBatch.from_pydict(
                {"id": pa.array(range(k * n, (k + 1) * n), pa.int64()), "ra": [1.0] * n}
            )
            if k == 20:
                marker.write_text("writing")
                time.sleep(600)

    store.load(Identity("alice", frozenset({"survey"})), "user_alice.targets", batches())
    """
)


def test_kill_9_during_a_load_leaves_the_table_as_it_was(
    store: WorkspaceStore, data_dir: Path, tmp_path: Path
) -> None:
    store.create_table(ALICE, NAME, TARGETS)
    store.load(ALICE, NAME, pa.table({"id": pa.array([1, 2, 3], pa.int64())}))
    link = data_dir / "user_alice" / "targets"
    version = link.resolve()
    marker = tmp_path / "marker"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    child = subprocess.Popen([sys.executable, "-c", LOADER, str(data_dir), str(marker)], env=env)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert child.poll() is None, "the loader ended early"
            assert time.monotonic() < deadline, "the loader never started writing"
            time.sleep(0.05)
        # The build holds 210,000 rows on disk, unpublished.
        tmp = data_dir / "user_alice" / ".skyvault" / "tmp"
        assert any(tmp.iterdir())
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert link.resolve() == version
    assert store.describe(ALICE, NAME).meta.nrows == 3
    assert pq.read_table(str(link / "dataset")).num_rows == 3
    # The killed loader's lock went with it: the next load runs, and clears its build.
    assert store.load(ALICE, NAME, pa.table({"id": pa.array([4], pa.int64())})).total_rows == 4
    assert not any((data_dir / "user_alice" / ".skyvault" / "tmp").iterdir())
