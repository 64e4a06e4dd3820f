"""``skyvault workspace list|drop|quota|save``: the operator's side of user tables, each
change audited."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skyvault.auth.identity import Identity
from skyvault.auth.storage import AuthStorage, utc_now
from skyvault.catalog.ingest import ingest
from skyvault.cli import main
from skyvault.engine.archive import open_archive
from skyvault.workspace import PermissionChange, WorkspaceStore
from skyvault.workspace.cli import parse_size
from skyvault.workspace.save import save_table


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.delenv("SKYVAULT_AUTH_AUDIT_LOG", raising=False)
    rows = pa.table({"id": np.arange(100), "ra": np.linspace(0, 9, 100), "dec": np.zeros(100)})
    pq.write_table(rows, tmp_path / "o.parquet")
    ingest([tmp_path / "o.parquet"], "survey.objects", root, ra="ra", dec="dec")
    auth = AuthStorage.for_data_dir(root)
    auth.add_user("alice", utc_now())
    auth.add_user("bob", utc_now())
    auth.add_group("crew", ["bob"], utc_now())
    store = WorkspaceStore(root, auth)
    archive = open_archive(root)
    result = archive.query("SELECT id, ra FROM survey.objects WHERE id < 10")
    archive.close()
    save_table(store, Identity("alice"), "user_alice.ten", result)
    store.set_permissions(
        Identity("alice"), "user_alice.ten", PermissionChange(read_groups=frozenset({"crew"}))
    )
    auth.close()
    return root


def _audit(root: Path) -> list[dict[str, object]]:
    path = root / ".skyvault" / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_list_shows_tables_owner_rows_bytes_grants_and_usage(
    data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["workspace", "list", "--data", str(data)]) == 0
    out = capsys.readouterr().out.splitlines()
    row = next(line for line in out if line.startswith("user_alice.ten\t")).split("\t")
    assert row[1:3] == ["alice", "10"] and int(row[3]) > 0 and row[4] == "r-group=crew"
    summary = next(line for line in out if line.startswith("alice\tuser_alice\t"))
    assert summary.split("\t")[2:4] == ["1", "10"]
    assert main(["workspace", "list", "--user", "bob", "--data", str(data)]) == 0
    assert "bob has no workspace" in capsys.readouterr().out


def test_quota_changes_are_stored_shown_audited_and_enforced(
    data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["workspace", "quota", "alice", "--rows", "15", "--bytes", "2M", "--data", str(data)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "alice: rows 10 of 15" in out and "2.0 MiB" in out
    assert main(["workspace", "quota", "alice", "--data", str(data)]) == 0
    assert "alice: rows 10 of 15" in capsys.readouterr().out
    line = _audit(data)[-1]
    assert line["endpoint"] == "workspace.quota"
    assert line["query"] == "alice: bytes=2097152, rows=15"
    assert str(line["user"]).startswith("operator:")
    # The new limit applies to the next save, and says so.
    query = "SELECT id AS n FROM user_alice.ten"
    argv = ["workspace", "save", query, "--user", "alice", "--dest", "user_alice.more"]
    assert main([*argv, "--data", str(data)]) == 1
    assert "rows: 10 stored, this would make 20; the limit is 15" in capsys.readouterr().err
    assert not (data / "user_alice" / "more").exists()
    assert main(["workspace", "quota", "alice", "--rows", "default", "--data", str(data)]) == 0
    assert "alice: rows 10 of 100000000" in capsys.readouterr().out


def test_save_runs_as_the_user_with_their_access(
    data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    query = "SELECT id FROM user_alice.ten"
    # bob reads alice's table through the crew grant; his copy is his.
    argv = ["workspace", "save", query, "--user", "bob", "--dest", "user_bob.copy"]
    assert main([*argv, "--data", str(data)]) == 0
    assert "saved 10 rows as user_bob.copy" in capsys.readouterr().out
    # survey.objects is not granted to anyone: it does not exist for alice.
    argv = ["workspace", "save", "SELECT id FROM survey.objects", "--user", "alice"]
    assert main([*argv, "--dest", "user_alice.x", "--data", str(data)]) == 1
    assert 'no schema "survey"' in capsys.readouterr().err
    assert _audit(data)[-1]["outcome"] == "error"


def test_drop_removes_the_table_and_is_audited(
    data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["workspace", "drop", "user_alice.ten", "--data", str(data)]) == 0
    assert not (data / "user_alice" / "ten").exists()
    line = _audit(data)[-1]
    assert line["endpoint"] == "workspace.drop" and line["query"] == "user_alice.ten"
    assert main(["workspace", "drop", "survey.objects", "--data", str(data)]) == 2
    assert "not a user's workspace schema" in capsys.readouterr().err
    assert (data / "survey" / "objects").exists()


def test_sizes() -> None:
    assert parse_size("20G") == 20 * 1024**3
    assert parse_size("1.5k") == 1536
    assert parse_size("default") is None
    assert parse_size("500000") == 500_000
