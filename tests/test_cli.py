"""What `ingest`, `demo` and `tables` tell the operator: who can query a table, what it holds."""

from __future__ import annotations

import shlex
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from skyvault.auth.access import AccessPolicy
from skyvault.auth.identity import Identity
from skyvault.auth.storage import AuthStorage
from skyvault.cli import main
from tests.conftest import random_sky

ANONYMOUS = Identity.anonymous()


@pytest.fixture(autouse=True)
def _builtin_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("SKYVAULT_AUTH_MODE", "SKYVAULT_AUTH_DATABASE_URL"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def stars(tmp_path: Path) -> Path:
    path = tmp_path / "stars.parquet"
    pq.write_table(random_sky(300, seed=3), path)
    return path


def _ingest(stars: Path, data: Path, *extra: str) -> int:
    return main(
        ["ingest", str(stars), "--table", "cat.stars", "--ra", "ra", "--dec", "dec",
         "--data", str(data), "--quiet", *extra]
    )  # fmt: skip


def _readable(data: Path, identity: Identity, schema: str, table: str) -> bool:
    return AccessPolicy(AuthStorage.for_data_dir(data)).can_read(identity, schema, table)


def test_a_private_ingest_prints_the_grant_command_that_works(
    tmp_path: Path, stars: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "my data"  # a space: the printed command must quote it
    assert _ingest(stars, data) == 0
    out = capsys.readouterr().out
    assert "cat.stars is private" in out
    assert not _readable(data, ANONYMOUS, "cat", "stars")
    command = out.split("to publish it: ", 1)[1].split(" (or --group", 1)[0]
    argv = shlex.split(command)
    assert argv[:2] == ["skyvault", "grant"]
    # Running exactly what was printed publishes the table.
    assert main(argv[1:]) == 0
    assert _readable(data, ANONYMOUS, "cat", "stars")
    # Re-ingesting a published table says it stays readable, instead of "private".
    assert _ingest(stars, data) == 0
    out = capsys.readouterr().out
    assert "is private" not in out
    assert "cat.stars is readable by everyone (grants made earlier)" in out


def test_ingest_public_grants_in_the_same_step(
    tmp_path: Path, stars: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    assert _ingest(stars, data, "--public") == 0
    assert "cat.stars is readable by everyone" in capsys.readouterr().out
    assert _readable(data, ANONYMOUS, "cat", "stars")


def test_ingest_group_grants_that_group_only(
    tmp_path: Path, stars: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    assert main(["groups", "add", "survey", "--data", str(data)]) == 0
    assert _ingest(stars, data, "--group", "survey") == 0
    assert "cat.stars is readable by group survey" in capsys.readouterr().out
    assert _readable(data, Identity("alice", frozenset({"survey"})), "cat", "stars")
    assert not _readable(data, ANONYMOUS, "cat", "stars")
    assert not _readable(data, Identity("bob", frozenset({"other"})), "cat", "stars")


def test_ingest_to_an_unknown_group_is_refused_before_any_work(
    tmp_path: Path, stars: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    assert _ingest(stars, data, "--group", "nosuch") == 2
    err = capsys.readouterr().err
    assert "no group 'nosuch'" in err
    assert "skyvault groups add nosuch" in err
    assert not (data / "cat").exists()


def test_public_and_group_together_are_a_usage_error(tmp_path: Path, stars: Path) -> None:
    with pytest.raises(SystemExit) as info:
        _ingest(stars, tmp_path / "data", "--public", "--group", "g")
    assert info.value.code == 2


def test_demo_is_public(demo_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # demo_data is built; the command finds it built and still makes it public.
    assert main(["demo", "--scale", "small", "--data", str(demo_data)]) == 0
    out = capsys.readouterr().out
    assert "dp02_dc2_catalogs is readable by everyone" in out
    assert "skyvault revoke dp02_dc2_catalogs --public" in out
    assert _readable(demo_data, ANONYMOUS, "dp02_dc2_catalogs", "Object")


def test_tables_counts_the_columns_queries_see(
    tmp_path: Path, stars: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    assert _ingest(stars, data) == 0
    capsys.readouterr()
    assert main(["tables", "--data", str(data)]) == 0
    # id, ra, dec, mag, name: the stored _healpix_29 is the engine's, not a column of the table
    assert capsys.readouterr().out == "cat.stars\thats\t300 rows\t5 columns\n"
