"""A read-only or full disk is said as such (directory, remedy), never a trace; nothing breaks.

Real mounts where permitted (a read-only tmpfs, a tiny tmpfs), and everywhere the same
faults simulated by an ``OSError`` with their errno at the write boundary.
"""

from __future__ import annotations

import errno
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy.exc

import skyvault
from skyvault.cli import main
from skyvault.errors import IngestError
from skyvault.storage_faults import Fault, service_storage_error, storage_fault
from tests.conftest import random_sky
from tests.mounts import remount_read_only, tmpfs

# --- recognising the faults -------------------------------------------------------------------


def _sqlalchemy(message: str) -> Exception:
    return sqlalchemy.exc.OperationalError("INSERT ...", {}, sqlite3.OperationalError(message))


def _chained() -> Exception:
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise RuntimeError("writing the result failed") from inner
    except RuntimeError as outer:
        return outer


@pytest.mark.parametrize(
    ("exc", "fault"),
    [
        (OSError(errno.EROFS, "Read-only file system"), Fault.READ_ONLY),
        (OSError(errno.ENOSPC, "No space left on device"), Fault.FULL),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), Fault.FULL),
        (OSError(errno.EACCES, "Permission denied"), Fault.NO_PERMISSION),
        # pyarrow keeps the OS text but not the errno
        (pa.lib.ArrowIOError("Error writing bytes. Detail: [errno 28] No space left on device"),
         Fault.FULL),
        (_sqlalchemy("attempt to write a readonly database"), Fault.READ_ONLY),
        (_sqlalchemy("database or disk is full"), Fault.FULL),
        (_chained(), Fault.FULL),
        (OSError(errno.ENOENT, "No such file or directory"), None),
        (ValueError("could not convert"), None),
        (IngestError("no space left on device, says the user's file"), None),
    ],
)  # fmt: skip
def test_storage_faults_are_recognised_however_they_are_wrapped(
    exc: Exception, fault: Fault | None
) -> None:
    assert storage_fault(exc) is fault


def test_a_fault_outside_the_directory_is_not_about_it(tmp_path: Path) -> None:
    outside = OSError(errno.EACCES, "Permission denied", "/elsewhere/input.csv")
    inside = OSError(errno.EACCES, "Permission denied", str(tmp_path / "s" / "x.parquet"))
    assert storage_fault(outside, under=tmp_path) is None
    assert storage_fault(inside, under=tmp_path) is Fault.NO_PERMISSION


def test_the_web_error_names_no_server_path() -> None:
    exc = OSError(errno.ENOSPC, "No space left on device", "/srv/skyvault/results/x/result")
    error = service_storage_error(exc, "this job")
    assert error is not None
    assert error.http_status == 503
    assert str(error).startswith("the service is out of disk space and could not complete this")
    assert "/srv" not in str(error)
    assert service_storage_error(ValueError("x")) is None


# --- the commands on a read-only data directory -----------------------------------------------


@pytest.fixture(autouse=True)
def _builtin_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("SKYVAULT_AUTH_MODE", "SKYVAULT_AUTH_DATABASE_URL", "SKYVAULT_RESULTS_URL",
                "SKYVAULT_JOBS_DATABASE_URL"):  # fmt: skip
        monkeypatch.delenv(var, raising=False)


def _stars(path: Path, rows: int, seed: int = 1) -> Path:
    pq.write_table(random_sky(rows, seed=seed), path)
    return path


def _ingest(source: Path, data: Path, *extra: str) -> list[str]:
    return ["ingest", str(source), "--table", "cat.stars", "--ra", "ra", "--dec", "dec",
            "--data", str(data), "--quiet", *extra]  # fmt: skip


def _count(data: Path) -> int:
    archive = skyvault.open(data)
    try:
        return int(archive.query("SELECT COUNT(*) AS n FROM cat.stars")["n"][0].as_py())
    finally:
        archive.close()


@pytest.fixture(scope="module")
def read_only_data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A data root with one table and one user, on a file system then made read-only."""
    root = tmp_path_factory.mktemp("readonly")
    source = _stars(root / "stars.parquet", 2000)
    with tmpfs(root / "mnt", "32m") as mnt:
        data = mnt / "data"
        # In other processes: a file this one kept open for writing would block the remount.
        for argv in (
            _ingest(source, data, "--public"),
            ["users", "add", "alice", "--data", str(data)],
        ):
            subprocess.run([sys.executable, "-m", "skyvault.cli", *argv], check=True)
        remount_read_only(mnt)
        yield data


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return captured.err


def test_ingest_into_a_read_only_data_directory(
    read_only_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _stars(tmp_path / "more.parquet", 500, seed=2)
    err = _refused(_ingest(source, read_only_data), capsys)
    assert err == (
        f"skyvault: error: cannot ingest cat.stars: the data directory {read_only_data} is on "
        "a read-only file system (ingest writes the table there: remount it read-write, or "
        "pass --data a writable directory)\n"
    )
    assert _count(read_only_data) == 2000  # the published table as it was


def test_tokens_create_in_a_read_only_data_directory(
    read_only_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _refused(["tokens", "create", "alice", "--data", str(read_only_data)], capsys)
    database = read_only_data / ".skyvault" / "auth.sqlite3"
    assert err.startswith(
        f"skyvault: error: tokens create failed: the auth database {database} is on a "
        "read-only file system (make its directory writable, or set SKYVAULT_AUTH_DATABASE_URL"
    )


def test_demo_in_a_read_only_data_directory(
    read_only_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _refused(["demo", "--data", str(read_only_data), "--scale", "small"], capsys)
    assert err == (
        f"skyvault: error: cannot build the demo: the data directory {read_only_data} is on a "
        "read-only file system (the demo is written there: remount it read-write, or pass "
        "--data a writable directory)\n"
    )


def test_demo_in_a_read_only_data_directory_simulated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Where no read-only file system can be mounted: EROFS from the demo's first write."""
    from skyvault.demo import build

    data = tmp_path / "data"

    def read_only(data_dir: Path) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(data_dir / ".demo-build.lock"))

    monkeypatch.setattr(build, "_build_lock", read_only)
    err = _refused(["demo", "--data", str(data), "--scale", "small"], capsys)
    assert f"cannot build the demo: the data directory {data} is on a read-only" in err


def test_serve_on_a_read_only_data_directory_says_what_to_set(
    read_only_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.service.conftest import _free_port

    argv = ["serve", "--data", str(read_only_data), "--port", str(_free_port())]
    err = _refused(argv, capsys)
    assert f"cannot start the service: the data directory {read_only_data} is on a read-only" in err
    for variable in ("SKYVAULT_JOBS_DATABASE_URL", "SKYVAULT_RESULTS_URL",
                     "SKYVAULT_AUTH_DATABASE_URL"):  # fmt: skip
        assert variable in err


def test_the_service_runs_on_a_read_only_data_directory_as_the_message_says(
    read_only_data: Path, tmp_path: Path
) -> None:
    import shutil

    from fastapi.testclient import TestClient

    from skyvault.auth import AuthSettings
    from skyvault.cli import _check_service_storage
    from skyvault.config import Settings
    from skyvault.service.app import create_app

    shutil.copy(read_only_data / ".skyvault" / "auth.sqlite3", tmp_path / "auth.sqlite3")
    settings = Settings(
        data_dir=read_only_data,
        jobs_database_url=f"sqlite:///{tmp_path / 'jobs.sqlite3'}",
        results_url=str(tmp_path / "results"),
        auth=AuthSettings(database_url=f"sqlite:///{tmp_path / 'auth.sqlite3'}"),
    )
    _check_service_storage(settings)  # nothing is written under the data root: no refusal
    with TestClient(create_app(settings)) as client:
        r = client.post(
            "/tap/sync",
            data={"LANG": "ADQL", "FORMAT": "csv", "QUERY": "SELECT COUNT(*) AS n FROM cat.stars"},
        )
    assert r.status_code == 200
    assert r.text.split() == ["n", "2000"]


# --- a full disk ------------------------------------------------------------------------------


def _leftovers(data: Path) -> list[str]:
    internal = data / "cat" / ".skyvault"
    return sorted(p.name for p in (internal / "tmp").iterdir()) + sorted(
        p.name for p in (internal / "versions" / "stars").iterdir()
    )


def test_ingest_onto_a_full_disk_keeps_the_table_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small = _stars(tmp_path / "small.parquet", 300)
    large = _stars(tmp_path / "large.parquet", 150_000, seed=2)  # ~5 MB of Parquet
    with tmpfs(tmp_path / "mnt", "3m") as mnt:
        data = mnt / "data"
        assert main(_ingest(small, data, "--public")) == 0
        before = _leftovers(data)
        err = _refused(_ingest(large, data), capsys)
        assert err == (
            f"skyvault: error: cannot ingest cat.stars: the data directory {data} is on a full "
            "device (no space left) (free space there and ingest again; the table is as it "
            "was)\n"
        )
        assert _count(data) == 300
        assert _leftovers(data) == before  # the build is gone, no version was added


def test_a_full_disk_at_publish_time_simulated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Where no small file system can be mounted: ENOSPC raised by the last write."""
    from skyvault.catalog import layout

    data = tmp_path / "data"
    assert main(_ingest(_stars(tmp_path / "a.parquet", 300), data, "--public")) == 0
    before = _leftovers(data)

    def full(root: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(root / "_metadata"))

    monkeypatch.setattr(layout, "_sync_tree", full)
    err = _refused(_ingest(_stars(tmp_path / "b.parquet", 500, seed=2), data), capsys)
    assert f"cannot ingest cat.stars: the data directory {data} is on a full device" in err
    assert _count(data) == 300
    assert _leftovers(data) == before


def test_a_read_only_data_directory_simulated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Where no read-only file system can be mounted: EROFS raised by the first writes."""
    from skyvault import dbstore
    from skyvault.catalog import layout

    data = tmp_path / "data"
    assert main(_ingest(_stars(tmp_path / "a.parquet", 300), data)) == 0

    def read_only(path: Path) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(path / "x"))

    def read_only_database(url: str, *, private: bool = False) -> None:
        raise OSError(errno.EROFS, "Read-only file system", url.removeprefix("sqlite:///"))

    monkeypatch.setattr(layout, "_remove_abandoned_builds", read_only)
    monkeypatch.setattr(dbstore, "create_engine", read_only_database)
    err = _refused(_ingest(_stars(tmp_path / "b.parquet", 500, seed=2), data), capsys)
    assert f"cannot ingest cat.stars: the data directory {data} is on a read-only" in err
    err = _refused(["tokens", "create", "alice", "--data", str(data)], capsys)
    assert "tokens create failed: the auth database" in err
    assert "is on a read-only file system" in err
    assert _count(data) == 300
