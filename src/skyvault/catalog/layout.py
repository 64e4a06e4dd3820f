"""Where tables live on disk, and how a new version of one appears atomically.

A table ``SCHEMA.TABLE`` in data root ``DIR`` is visible at ``DIR/SCHEMA/TABLE``: a symbolic
link to an immutable version directory (a HATS catalogue, or plain Parquet for tables
without positions)::

    DIR/SCHEMA/TABLE -> .skyvault/versions/TABLE/<version>/
    DIR/SCHEMA/.skyvault/tmp/<build>/         a build in progress (invisible)
    DIR/SCHEMA/.skyvault/locks/TABLE.lock     held by the one ingest of TABLE at a time
    DIR/SCHEMA/.skyvault/images/<batch>/      an image collection's FITS files (image_store)
    DIR/SCHEMA/.TABLE.snapshot                the committed snapshot of appended rows, and
    DIR/SCHEMA/.skyvault/deltas/TABLE/<version>/   those rows until compacted (catalog/append.py)

skyvault's own files live under ``DIR/.skyvault`` (:func:`internal_dir`), each named here
and nowhere else::

    DIR/.skyvault/auth.sqlite3        users, tokens, groups, grants (auth_database_file)
    DIR/.skyvault/audit.jsonl         the audit log (audit_log_file)
    DIR/.skyvault/jobs.sqlite3        UWS jobs (jobs_database_file)
    DIR/.skyvault/results/            UWS job results (results_dir)
    DIR/.skyvault/bulk-signing.key    the key of signed bulk URLs (bulk_signing_key_file)
    DIR/.skyvault/hips/SCHEMA/TABLE   catalogue HiPS, published like tables (hips_root)

A build is written under ``tmp/``, moved into ``versions/`` and published by replacing the
link with ``os.replace`` — one atomic step on POSIX file systems.  Readers therefore see the
old version or the new one, never a mix; an interrupted or killed ingest leaves only a
``tmp/`` directory that the next ingest removes.  The version replaced last is kept (a query
may still be reading it); older ones are deleted at the next publish.

Readers that resolve ``DIR/SCHEMA/TABLE`` see an ordinary HATS catalogue directory, so the
``hats`` and ``lsdb`` libraries open it as is.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import itertools
import os
import re
import shutil
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from skyvault.errors import CatalogError, CatalogNotFound, IngestError, UsageError
from skyvault.interprocess import file_lock

__all__ = [
    "DATA_DIR_VARIABLE",
    "TableBuild",
    "TableName",
    "audit_log_file",
    "auth_database_file",
    "building",
    "bulk_signing_key_file",
    "data_dir_from_environment",
    "hats_pixel_file",
    "hips_root",
    "image_hips_root",
    "image_store",
    "internal_dir",
    "jobs_database_file",
    "list_tables",
    "preview_cache_dir",
    "results_dir",
    "schema_lock_file",
    "table_path",
    "table_versions",
]

INTERNAL_DIR = ".skyvault"
#: The environment variable naming the data root, for the service and the CLI alike.
DATA_DIR_VARIABLE = "SKYVAULT_DATA_DIR"
#: Its former name (the CLI's): still read when ``SKYVAULT_DATA_DIR`` is unset, with a
#: warning; deprecated, to be removed.
DEPRECATED_DATA_VARIABLE = "SKYVAULT_DATA"

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class TableName:
    """A qualified table name ``schema.table``, both parts regular identifiers."""

    schema: str
    table: str

    @classmethod
    def parse(cls, text: str) -> TableName:
        """Parse ``SCHEMA.TABLE``; both parts must be regular identifiers."""
        parts = text.split(".")
        if len(parts) != 2 or not all(_IDENTIFIER.match(p) for p in parts):
            raise UsageError(
                f"table name {text!r} is not of the form SCHEMA.TABLE",
                hint="use letters, digits and underscores, e.g. dp02_dc2_catalogs.Object",
            )
        return cls(parts[0], parts[1])

    def __str__(self) -> str:
        return f"{self.schema}.{self.table}"


def data_dir_from_environment() -> Path:
    """The data root the environment names: ``SKYVAULT_DATA_DIR``; else the deprecated
    ``SKYVAULT_DATA`` (with a :class:`FutureWarning` saying to rename it); else ``./data``."""
    value = os.environ.get(DATA_DIR_VARIABLE)
    if value:
        return Path(value)
    old = os.environ.get(DEPRECATED_DATA_VARIABLE)
    if old:
        warnings.warn(
            f"{DEPRECATED_DATA_VARIABLE} is deprecated: name the data root with "
            f"{DATA_DIR_VARIABLE} instead",
            FutureWarning,
            stacklevel=2,
        )
        return Path(old)
    return Path("data")


def hats_pixel_file(root: Path, order: int, pixel: int) -> Path:
    """The file of HEALPix partition ``(order, pixel)`` in the HATS catalogue at ``root``."""
    return (
        root
        / "dataset"
        / f"Norder={order}"
        / f"Dir={pixel // 10000 * 10000}"
        / f"Npix={pixel}.parquet"
    )


def table_path(data_dir: Path, name: TableName) -> Path:
    """The visible path of a table (the link); raises if the table does not exist."""
    path = data_dir / name.schema / name.table
    if not path.exists():
        raise CatalogNotFound(f"no table {name}")
    return path


def list_tables(data_dir: Path) -> list[tuple[TableName, Path]]:
    """Every published table under ``data_dir``, sorted by name, with its resolved directory."""
    found: list[tuple[TableName, Path]] = []
    if not data_dir.is_dir():
        return found
    for schema_dir in sorted(data_dir.iterdir()):
        if schema_dir.name.startswith(".") or not schema_dir.is_dir():
            continue
        for entry in sorted(schema_dir.iterdir()):
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            if _IDENTIFIER.match(schema_dir.name) and _IDENTIFIER.match(entry.name):
                found.append((TableName(schema_dir.name, entry.name), entry.resolve()))
    return found


@dataclass
class TableBuild:
    """A version of a table being written; ``path`` is where to put its files."""

    name: TableName
    path: Path
    version: str


@contextlib.contextmanager
def building(
    data_dir: Path, name: TableName, *, keep_replaced: float = 0.0
) -> Iterator[TableBuild]:
    """Build a new version of ``name`` and publish it atomically when the block succeeds.

    Holds an exclusive lock on the table for the whole build, so two ingests of one table
    cannot interleave.  On any exception (including ``KeyboardInterrupt``) the build
    directory is removed and the previously published version stays as it was.  Older
    versions are removed on publishing, except the one just replaced and those replaced
    less than ``keep_replaced`` seconds ago (queries planned on them may still read them).
    """
    schema_dir = data_dir / name.schema
    internal = schema_dir / INTERNAL_DIR
    for sub in ("tmp", "locks", f"versions/{name.table}"):
        (internal / sub).mkdir(parents=True, exist_ok=True)
    visible = schema_dir / name.table
    if visible.exists() and not visible.is_symlink():
        raise CatalogError(
            f"{visible} is a directory skyvault did not create",
            hint="move it away, or ingest under another table name",
        )

    with _exclusive_lock(internal / "locks" / f"{name.table}.lock", name):
        _remove_abandoned_builds(internal / "tmp")
        # Names sort chronologically (nanoseconds), which _remove_old_versions relies on.
        now = time.time_ns()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now // 1_000_000_000))
        version = f"{stamp}.{now % 1_000_000_000:09d}-{uuid.uuid4().hex[:6]}"
        tmp = internal / "tmp" / f"{name.table}-{version}"
        tmp.mkdir()
        try:
            # The builder holds this lock while alive; a later ingest that can take it knows
            # the directory was abandoned (killed process) and removes it.
            with file_lock(tmp / ".building", wait=True):
                yield TableBuild(name=name, path=tmp, version=version)
            (tmp / ".building").unlink()
            _sync_tree(tmp)
            final = internal / "versions" / name.table / version
            os.rename(tmp, final)
            os.utime(final)  # a version's modification time: when it was published
            _publish(visible, final)
            _remove_old_versions(internal / "versions" / name.table, final, keep_replaced)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def _publish(visible: Path, final: Path) -> None:
    """Point ``visible`` at ``final`` with one atomic rename of a fresh symlink."""
    link_tmp = visible.with_name(f".{visible.name}.link-{uuid.uuid4().hex[:8]}")
    os.symlink(os.path.relpath(final, visible.parent), link_tmp)
    try:
        os.replace(link_tmp, visible)
    except BaseException:
        link_tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(visible.parent)


def _remove_old_versions(versions_dir: Path, keep: Path, grace: float = 0.0) -> None:
    """Delete all versions but ``keep``, the most recent one before it, and those replaced
    (their successor published: its modification time) less than ``grace`` seconds ago."""
    others = sorted(p for p in versions_dir.iterdir() if p != keep)
    now = time.time()
    for old, successor in itertools.pairwise(others):
        if grace > 0:
            try:
                replaced = successor.stat().st_mtime
            except OSError:
                replaced = now
            if now - replaced < grace:
                continue
        shutil.rmtree(old, ignore_errors=True)


def _remove_abandoned_builds(tmp_root: Path) -> None:
    for build in tmp_root.iterdir():
        try:
            with file_lock(build / ".building", create=False) as taken:
                pass
        except FileNotFoundError:
            taken = True
        if taken:  # not a live build of another table
            shutil.rmtree(build, ignore_errors=True)


@contextlib.contextmanager
def _exclusive_lock(path: Path, name: TableName) -> Iterator[None]:
    with file_lock(path) as taken:
        if not taken:
            raise IngestError(
                f"another ingest of {name} is running",
                hint="wait for it to finish; the table is replaced atomically when it does",
            )
        yield


def _sync_tree(root: Path) -> None:
    """Make every file and directory under ``root`` durable, so a crash after publish loses
    nothing.

    On Linux one ``syncfs(2)`` of the file system holding ``root`` does it: an fsync per
    file cost 1 ms each (5.6 s for a 5,000-tile HiPS, against 0.3 s).  Elsewhere, or if
    the C library has no ``syncfs``, every file and directory is fsynced.
    """
    syncfs = _syncfs()
    if syncfs is not None:
        _syncfs_at(syncfs, root)
        return
    for dirpath, _dirnames, filenames in os.walk(root):
        for fname in filenames:
            fd = os.open(os.path.join(dirpath, fname), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


@functools.cache
def _syncfs() -> Callable[[int], int] | None:
    """The C library's ``syncfs`` (Linux), or None where there is none.

    Python's ``os`` module has no ``syncfs``; ctypes is the standard way to call it.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int
    return cast("Callable[[int], int]", function)


def _syncfs_at(syncfs: Callable[[int], int], path: Path) -> None:
    """``syncfs`` (from :func:`_syncfs`) of the file system holding ``path``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if syncfs(fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), str(path))
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def internal_dir(data_dir: Path) -> Path:
    """``DIR/.skyvault``: skyvault's own files under data root ``data_dir`` (hidden from
    the table listing and from bulk download, as every dot-directory is)."""
    return data_dir / INTERNAL_DIR


def auth_database_file(data_dir: Path) -> Path:
    """The built-in auth database's SQLite file: ``DIR/.skyvault/auth.sqlite3``."""
    return internal_dir(data_dir) / "auth.sqlite3"


def audit_log_file(data_dir: Path) -> Path:
    """The audit log's default file: ``DIR/.skyvault/audit.jsonl``."""
    return internal_dir(data_dir) / "audit.jsonl"


def jobs_database_file(data_dir: Path) -> Path:
    """The UWS job database's default SQLite file: ``DIR/.skyvault/jobs.sqlite3``."""
    return internal_dir(data_dir) / "jobs.sqlite3"


def results_dir(data_dir: Path) -> Path:
    """The default store of UWS job results: ``DIR/.skyvault/results``."""
    return internal_dir(data_dir) / "results"


def bulk_signing_key_file(data_dir: Path) -> Path:
    """The key signed bulk-download URLs are signed with: ``DIR/.skyvault/bulk-signing.key``."""
    return internal_dir(data_dir) / "bulk-signing.key"


def hips_root(data_dir: Path) -> Path:
    """Where HiPS built from the tables live: ``DIR/.skyvault/hips``.

    The HiPS of ``SCHEMA.TABLE`` is ``hips_root(DIR)/SCHEMA/TABLE``, published by
    :func:`building` exactly like a table (a link to an immutable version), so a failed build
    leaves the previous HiPS as it was.
    """
    return internal_dir(data_dir) / "hips"


def preview_cache_dir(data_dir: Path) -> Path:
    """Where image previews (DataLink ``#preview``) are cached: ``DIR/.skyvault/previews``
    (anything in it may be deleted at any time)."""
    return internal_dir(data_dir) / "previews"


def image_hips_root(data_dir: Path) -> Path:
    """Where image HiPS built by name live: ``DIR/.skyvault/image-hips``; ``NAME`` is
    ``image_hips_root(DIR)/NAME``, published by :func:`building` like a table."""
    return internal_dir(data_dir) / "image-hips"


def image_store(data_dir: Path, collection: str) -> Path:
    """Where an image collection (a schema) keeps its FITS files:
    ``DIR/COLLECTION/.skyvault/images`` (hidden, like every ``.skyvault`` directory)."""
    return data_dir / collection / INTERNAL_DIR / "images"


def schema_lock_file(data_dir: Path, schema: str, name: str) -> Path:
    """``DIR/SCHEMA/.skyvault/locks/NAME.lock`` (its directory created): a lock beside the
    tables' own, for work spanning several tables of the schema."""
    locks = data_dir / schema / INTERNAL_DIR / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    return locks / f"{name}.lock"


def table_versions(data_dir: Path, name: TableName) -> list[Path]:
    """The version directories of ``name`` on disk, oldest first: the published one and the
    one before it (which a running query may still read), and any a crash left."""
    versions = data_dir / name.schema / INTERNAL_DIR / "versions" / name.table
    return sorted(versions.iterdir()) if versions.is_dir() else []
