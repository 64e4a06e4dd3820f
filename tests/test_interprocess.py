"""The one file-lock helper: taken once, refused while held, free again once released."""

from __future__ import annotations

from pathlib import Path

import pytest

from skyvault.interprocess import file_lock


def test_a_held_lock_is_refused_until_released(tmp_path: Path) -> None:
    path = tmp_path / "t.lock"
    with file_lock(path) as first:
        assert first
        with file_lock(path) as second:  # another open file: as another process would
            assert not second
    with file_lock(path) as again:
        assert again


def test_a_missing_file_is_made_or_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError), file_lock(tmp_path / "absent", create=False):
        pass
    with file_lock(tmp_path / "made") as taken:
        assert taken
    assert (tmp_path / "made").is_file()
