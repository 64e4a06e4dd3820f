"""Making a build durable before it is published: one syncfs on Linux, fsyncs elsewhere."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from skyvault.catalog import layout


def _tree(root: Path) -> int:
    """A small tree of files; how many files and directories it holds."""
    for d in range(3):
        sub = root / f"Dir{d}"
        sub.mkdir(parents=True)
        for n in range(4):
            (sub / f"Npix{n}.tsv").write_text("ra\tdec\n1\t2\n")
    return 3 * 4 + 3 + 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="syncfs is Linux's")
def test_a_tree_is_synced_by_one_syncfs_not_a_fsync_per_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert layout._syncfs() is not None
    _tree(tmp_path)
    calls: list[int] = []
    monkeypatch.setattr(os, "fsync", calls.append)
    layout._sync_tree(tmp_path)
    assert calls == []


def test_without_syncfs_every_file_and_directory_is_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entries = _tree(tmp_path)
    monkeypatch.setattr(layout, "_syncfs", lambda: None)
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}") if os.path.exists("/proc") else "?")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    layout._sync_tree(tmp_path)
    assert len(synced) == entries


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="syncfs is Linux's")
def test_a_failing_syncfs_is_an_os_error_naming_the_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ctypes
    import errno

    def failing(fd: int) -> int:
        ctypes.set_errno(errno.EIO)
        return -1

    monkeypatch.setattr(layout, "_syncfs", lambda: failing)
    with pytest.raises(OSError, match="Input/output error") as caught:
        layout._sync_tree(tmp_path)
    assert caught.value.errno == errno.EIO and caught.value.filename == str(tmp_path)
