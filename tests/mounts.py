"""Small tmpfs mounts for tests of full and read-only disks (skipped where mounting is not allowed).

As root, ``chmod`` does not stop writes: only a read-only mount does, and only a small
file system fills up.  Mounting needs root (or a user namespace); elsewhere the tests that
need it are skipped with the reason, and simulated variants (an ``OSError`` with the same
errno raised at the write boundary) run instead.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["remount_read_only", "tmpfs"]


def _mount(*argv: str) -> None:
    done = subprocess.run(["mount", *argv], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise OSError(done.stderr.strip() or f"mount {' '.join(argv)} failed")


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "4m") -> Iterator[Path]:
    """A fresh tmpfs of ``size`` at ``path`` (created), unmounted afterwards; or a skip."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    except (OSError, FileNotFoundError) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def remount_read_only(path: Path) -> None:
    """Make the tmpfs at ``path`` read-only (writes fail with EROFS, even as root)."""
    _mount("-o", "remount,ro", str(path))
