"""A collection belongs to groups like a catalogue schema: its grant covers both tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from skyvault.auth.access import AccessPolicy
from skyvault.auth.identity import Identity
from skyvault.auth.storage import AuthStorage
from skyvault.cli import main
from tests.images._files import tan_header, write_image


def _readable(data: Path, who: Identity, table: str) -> bool:
    return AccessPolicy(AuthStorage.for_data_dir(data)).can_read(who, "c", table)


def test_group_grant_covers_the_collection(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    image = write_image(tmp_path / "a.fits", tan_header())
    assert main(["groups", "add", "survey", "--data", str(data)]) == 0
    argv = ["images", "ingest", str(image), "--collection", "c", "--data", str(data)]
    assert main([*argv, "--group", "survey", "--quiet"]) == 0
    assert "c is readable by group survey" in capsys.readouterr().out
    alice, bob = Identity("alice", frozenset({"survey"})), Identity("bob", frozenset({"x"}))
    for table in ("obscore", "headers"):
        assert _readable(data, alice, table)
        assert not _readable(data, bob, table)
        assert not _readable(data, Identity.anonymous(), table)


def test_private_collection_says_how_to_publish_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    image = write_image(tmp_path / "a.fits", tan_header())
    assert main(["images", "ingest", str(image), "--collection", "c", "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert "is private" in out
    command = out.split("(grant the whole collection: ", 1)[1].split(")\n", 1)[0]
    assert command.startswith("skyvault grant c --public")
    assert main(command.split()[1:]) == 0
    assert _readable(data, Identity.anonymous(), "headers")


def test_unknown_group_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    image = write_image(tmp_path / "a.fits", tan_header())
    argv = ["images", "ingest", str(image), "--collection", "c", "--data", str(data)]
    assert main([*argv, "--group", "nosuch"]) == 2
    assert "no group 'nosuch'" in capsys.readouterr().err
    assert not (data / "c").exists()


def test_obscore_tables_are_recognised_by_their_utypes(tmp_path: Path) -> None:
    from skyvault.catalog.metadata import TableMeta
    from skyvault.images.ingest import ingest_images
    from skyvault.images.obscore import COLUMNS, is_obscore_table

    data = tmp_path / "data"
    ingest_images([write_image(tmp_path / "a.fits", tan_header())], "c", data)
    assert sum(c.mandatory for c in COLUMNS) == 30
    assert is_obscore_table(TableMeta.read(data / "c" / "obscore"))
    assert not is_obscore_table(TableMeta.read(data / "c" / "headers"))
