"""Safe resolution of a requested path inside a table's version directory, and listings.

:func:`resolve` is the only way the bulk edge turns a URL path into a file.  A path is
accepted only when every component is an ordinary name — not empty, not ``.``/``..``, not
hidden (``.skyvault``, ``.building``), no NUL or backslash, not the stored manifest — and
every step from the version root down is a real directory or (last) a regular file, never a
symbolic link.  Anything else is ``None``: the edge answers it exactly as a missing file,
so a refused path tells nothing about what exists.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from skyvault.bulk.manifest import MANIFEST_FILE, VIRTUAL_FILES, Manifest

__all__ = ["Entry", "Target", "list_directory", "resolve"]


@dataclass(frozen=True)
class Target:
    """What a path names: a file, a directory, or a manifest document of a directory.

    ``relative`` is the ``/``-separated path from the version root ('' for the root); for a
    manifest document it is its directory's, and ``name`` the document's name.
    """

    kind: Literal["file", "directory", "manifest"]
    path: Path
    relative: str
    name: str = ""
    stat: os.stat_result | None = None


@dataclass(frozen=True)
class Entry:
    """One line of a directory listing."""

    name: str
    is_dir: bool
    size: int | None
    mtime: float


def _ordinary(part: str) -> bool:
    return (
        bool(part)
        and not part.startswith(".")
        and "\x00" not in part
        and "\\" not in part
        and part != MANIFEST_FILE
    )


def resolve(root: Path, relative: str) -> Target | None:
    """The file, directory or manifest document ``relative`` names under ``root``, or None.

    ``relative`` is the URL path below the table, already percent-decoded; a trailing
    ``/`` asks for a directory (a file named with one is None).
    """
    want_dir = relative.endswith("/")
    text = relative[:-1] if want_dir else relative
    parts = text.split("/") if text else []
    if not all(_ordinary(p) for p in parts):
        return None
    if parts and parts[-1] in VIRTUAL_FILES and not want_dir:
        directory = _walk(root, parts[:-1])
        if directory is None or not stat.S_ISDIR(directory[1].st_mode):
            return None
        return Target("manifest", directory[0], "/".join(parts[:-1]), parts[-1])
    found = _walk(root, parts)
    if found is None:
        return None
    path, st = found
    if stat.S_ISDIR(st.st_mode):
        return Target("directory", path, "/".join(parts), stat=st)
    if stat.S_ISREG(st.st_mode) and not want_dir:
        return Target("file", path, "/".join(parts), stat=st)
    return None


def _walk(root: Path, parts: list[str]) -> tuple[Path, os.stat_result] | None:
    """``root/parts…`` when every step is a real directory (the last may be a file)."""
    current = root
    try:
        st = os.stat(root)
        for i, part in enumerate(parts):
            current = current / part
            st = os.lstat(current)
            if stat.S_ISLNK(st.st_mode):
                return None
            if i < len(parts) - 1 and not stat.S_ISDIR(st.st_mode):
                return None
    except (OSError, ValueError):
        return None
    return current, st


def list_directory(target: Target, manifest: Manifest, table: str) -> list[Entry]:
    """The entries of directory ``target``: served subdirectories and files (hidden names,
    links and internals left out), then its manifest documents, each group sorted."""
    if target.kind != "directory":
        raise ValueError("not a directory")
    dirs: list[Entry] = []
    files: list[Entry] = []
    with os.scandir(target.path) as it:
        for item in it:
            if not _ordinary(item.name) or item.name in VIRTUAL_FILES or item.is_symlink():
                continue
            st = item.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                dirs.append(Entry(item.name, True, None, st.st_mtime))
            elif stat.S_ISREG(st.st_mode):
                files.append(Entry(item.name, False, st.st_size, st.st_mtime))
    mtime = manifest.last_modified(target.relative)
    documents = [
        Entry(name, False, len(manifest.render(name, table, target.relative)), mtime)
        for name in sorted(VIRTUAL_FILES)
    ]
    key = lambda e: e.name  # noqa: E731
    return sorted(dirs, key=key) + sorted(files, key=key) + documents
