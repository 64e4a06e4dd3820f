"""The golden-file helper: a missing golden fails; only SKYVAULT_REGEN_GOLDEN=1 writes one."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.golden import REGEN_VARIABLE, golden_bytes, golden_text


def test_a_missing_golden_file_fails_and_is_not_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(REGEN_VARIABLE, raising=False)
    for check, actual in ((golden_text, "SELECT 1"), (golden_bytes, b"<VOTABLE/>")):
        path = tmp_path / f"missing.{type(actual).__name__}"
        with pytest.raises(
            pytest.fail.Exception, match=f"missing: run the test with {REGEN_VARIABLE}=1"
        ):
            check(path, actual)  # type: ignore[operator]
        assert not path.exists()


def test_a_stored_golden_file_is_what_the_test_compares_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(REGEN_VARIABLE, raising=False)
    path = tmp_path / "q.sql"
    path.write_text("SELECT 1\n")
    assert golden_text(path, "SELECT 2") == "SELECT 1"
    assert path.read_text() == "SELECT 1\n"


def test_regeneration_writes_what_the_code_produces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(REGEN_VARIABLE, "1")
    assert golden_text(tmp_path / "new" / "q.sql", "SELECT 2") == "SELECT 2"
    assert (tmp_path / "new" / "q.sql").read_text() == "SELECT 2\n"
    assert golden_bytes(tmp_path / "doc.vot", b"\x00bytes") == b"\x00bytes"
