"""Finding the files of a published HiPS, safely, for the web edge (no web imports).

A HiPS is named by its table, ``SCHEMA.TABLE``, and lives at
``hips_root(DIR)/SCHEMA/TABLE`` (a link to an immutable version, see
:func:`skyvault.catalog.layout.building`).  :func:`hips_file` answers None for anything
that is not a regular file inside that directory — a missing HiPS, a missing tile, a path
with ``..`` or hidden segments, a link that leads out — so the caller can answer each the
same way.

An image HiPS built from files (``skyvault hips build --images … --name NAME``, see
:mod:`skyvault.hips.image`) is named by ``NAME`` and lives at
``image_hips_root(DIR)/NAME`` (the same link to a version); it is served at
``/hips/images/NAME/`` and, for now, to everyone (no group owns it yet).
"""

from __future__ import annotations

import re
from pathlib import Path

from skyvault.catalog.layout import TableName, hips_root, image_hips_root
from skyvault.errors import UsageError

__all__ = [
    "CONTENT_TYPES",
    "content_type",
    "hips_dir",
    "hips_file",
    "image_hips_collection",
    "image_hips_dir",
    "image_hips_file",
    "image_hips_names",
    "image_hips_root",
    "read_properties",
]

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
_IMAGE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")


def hips_dir(data_dir: Path, name: TableName) -> Path:
    """The (published) HiPS directory of table ``name``; it may not exist."""
    return hips_root(data_dir) / name.schema / name.table


def content_type(path: Path) -> str:
    """The content type of a HiPS file (``properties`` is plain text)."""
    if path.name == "properties":
        return "text/plain; charset=utf-8"
    return CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")


def image_hips_dir(data_dir: Path, name: str) -> Path:
    """The (published) directory of image HiPS ``name``; raises for an unusable name."""
    if not _IMAGE_NAME.match(name):
        raise UsageError(
            f"image HiPS name {name!r} is not usable",
            hint="use up to 64 letters, digits, '_', '-' or '.', not starting with '.' or '-'",
        )
    return image_hips_root(data_dir) / name


def image_hips_names(data_dir: Path) -> list[str]:
    """The names of the published image HiPS, sorted."""
    root = image_hips_root(data_dir)
    if not root.is_dir():
        return []
    return sorted(
        p.name for p in root.iterdir() if _IMAGE_NAME.match(p.name) and (p / "properties").is_file()
    )


def image_hips_collection(data_dir: Path, name: str) -> str | None:
    """The image collection image HiPS ``name`` was built from (its ``properties``'
    ``skyvault_collection``), or None for one built from files."""
    text = read_properties(data_dir, name) or ""
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "skyvault_collection":
            return value.strip() or None
    return None


def image_hips_file(data_dir: Path, name: str, relative: str) -> Path | None:
    """The file ``relative`` of image HiPS ``name``, or None when there is no such file."""
    try:
        root = image_hips_dir(data_dir, name)
    except UsageError:
        return None
    return _file_in(root, relative)


def hips_file(data_dir: Path, hips_id: str, relative: str) -> Path | None:
    """The file ``relative`` of HiPS ``hips_id``, or None when there is no such file."""
    try:
        name = TableName.parse(hips_id)
    except UsageError:
        return None
    return _file_in(hips_dir(data_dir, name), relative)


def _file_in(root: Path, relative: str) -> Path | None:
    """The regular file ``relative`` inside ``root``, or None."""
    segments = relative.split("/")
    if not relative or not all(_SEGMENT.match(s) for s in segments):
        return None  # empty, "..", ".hidden", "a//b", odd characters
    try:
        base = root.resolve(strict=True)
        path = base.joinpath(*segments).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not path.is_relative_to(base) or not path.is_file():
        return None
    return path


def read_properties(data_dir: Path, name: TableName | str) -> str | None:
    """The text of the ``properties`` of ``name``'s HiPS (a table, or an image HiPS's
    name), or None when it has none."""
    try:
        if isinstance(name, TableName):
            root = hips_dir(data_dir, name)
        else:
            root = image_hips_dir(data_dir, name)
    except UsageError:
        return None
    try:
        return (root / "properties").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
