"""Finding the files of a published HiPS, safely, for the web edge (no web imports).

A HiPS is named by its table, ``SCHEMA.TABLE``, and lives at
``hips_root(DIR)/SCHEMA/TABLE`` (a link to an immutable version, see
:func:`skyvault.catalog.layout.building`).  :func:`hips_file` answers None for anything
that is not a regular file inside that directory — a missing HiPS, a missing tile, a path
with ``..`` or hidden segments, a link that leads out — so the caller can answer each the
same way.
"""

from __future__ import annotations

import re
from pathlib import Path

from skyvault.catalog.layout import TableName, hips_root
from skyvault.errors import UsageError

__all__ = ["CONTENT_TYPES", "content_type", "hips_dir", "hips_file", "read_properties"]

#: Content types by file suffix; anything else is ``application/octet-stream``.
CONTENT_TYPES = {
    ".tsv": "text/tab-separated-values; charset=utf-8",
    ".fits": "application/fits",
    ".xml": "application/x-votable+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
}
_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def hips_dir(data_dir: Path, name: TableName) -> Path:
    """The (published) HiPS directory of table ``name``; it may not exist."""
    return hips_root(data_dir) / name.schema / name.table


def content_type(path: Path) -> str:
    """The content type of a HiPS file (``properties`` is plain text)."""
    if path.name == "properties":
        return "text/plain; charset=utf-8"
    return CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")


def hips_file(data_dir: Path, hips_id: str, relative: str) -> Path | None:
    """The file ``relative`` of HiPS ``hips_id``, or None when there is no such file."""
    try:
        name = TableName.parse(hips_id)
    except UsageError:
        return None
    segments = relative.split("/")
    if not relative or not all(_SEGMENT.match(s) for s in segments):
        return None  # empty, "..", ".hidden", "a//b", odd characters
    root = hips_dir(data_dir, name)
    try:
        base = root.resolve(strict=True)
        path = base.joinpath(*segments).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not path.is_relative_to(base) or not path.is_file():
        return None
    return path


def read_properties(data_dir: Path, name: TableName) -> str | None:
    """The text of the ``properties`` of ``name``'s HiPS, or None when it has none."""
    try:
        return (hips_dir(data_dir, name) / "properties").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
