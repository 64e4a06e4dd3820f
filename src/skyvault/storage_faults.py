"""Storage faults (a read-only file system, no permission, a full disk) as skyvault errors.

A write can fail in the OS (an :class:`OSError` with its errno), in pyarrow (an OSError
whose text carries the OS message, often without an errno), in SQLite (an
``sqlite3.OperationalError``, which SQLAlchemy wraps) or in DuckDB.  :func:`storage_fault`
recognises each, so that every edge says what happened and what to do, instead of a
trace on the command line or "failed inside the service" and a 500 on the web:

* the command line names the directory and the remedy (:func:`storage_errors`);
* the web never names a server path (:func:`service_storage_error`); the log does.
"""

from __future__ import annotations

import contextlib
import enum
import errno
from collections.abc import Iterator, Mapping
from pathlib import Path

from skyvault.errors import SkyvaultError, StorageError

__all__ = ["Fault", "service_storage_error", "storage_error", "storage_errors", "storage_fault"]


class Fault(enum.Enum):
    """Why a write failed."""

    READ_ONLY = "is on a read-only file system"
    NO_PERMISSION = "is not writable by this user"
    FULL = "is on a full device (no space left)"


_ERRNOS = {
    errno.EROFS: Fault.READ_ONLY,
    errno.EACCES: Fault.NO_PERMISSION,
    errno.EPERM: Fault.NO_PERMISSION,
    errno.ENOSPC: Fault.FULL,
    errno.EDQUOT: Fault.FULL,
}

#: The same faults as libraries word them when they drop the errno (pyarrow, SQLite, DuckDB).
_TEXTS = (
    ("read-only file system", Fault.READ_ONLY),
    ("readonly database", Fault.READ_ONLY),
    ("no space left on device", Fault.FULL),
    ("disk quota exceeded", Fault.FULL),
    ("database or disk is full", Fault.FULL),
    ("permission denied", Fault.NO_PERMISSION),
)

#: What to do, when the caller has nothing more specific to say.
DEFAULT_REMEDIES = {
    Fault.READ_ONLY: "remount it read-write, or use a writable directory",
    Fault.NO_PERMISSION: "run as a user who may write there, or use another directory",
    Fault.FULL: "free space there (or raise its quota) and try again",
}


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps: ``__cause__``, ``__context__``, SQLAlchemy's ``orig``."""
    todo: list[BaseException] = [exc]
    seen: set[int] = set()
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for inner in (getattr(current, "orig", None), current.__cause__, current.__context__):
            if isinstance(inner, BaseException):
                todo.append(inner)


def storage_fault(exc: BaseException, under: Path | None = None) -> Fault | None:
    """The storage fault ``exc`` reports, or None when it is about something else.

    ``under``: when the failing OS call names a file outside this directory (an input
    that cannot be read, say), the error is not about writing there, and None is returned.
    """
    for current in _causes(exc):
        if isinstance(current, SkyvaultError):
            return None
        if isinstance(current, OSError) and current.errno in _ERRNOS:
            if under is not None and current.filename is not None:
                path = Path(str(current.filename)).resolve()
                if not path.is_relative_to(under.resolve()):
                    return None
            return _ERRNOS[current.errno]
        text = str(current).lower()
        for needle, fault in _TEXTS:
            if needle in text:
                return fault
    return None


def storage_error(
    exc: BaseException,
    action: str,
    place: str,
    *,
    remedy: Mapping[Fault, str] | None = None,
    under: Path | None = None,
) -> StorageError | None:
    """The operator's error for ``exc`` when it is a storage fault (None otherwise).

    Reads "``action``: ``place`` is on a read-only file system (``remedy``)", for
    instance "cannot ingest s.t: the data directory ./data is on a full device ...".
    """
    fault = storage_fault(exc, under)
    if fault is None:
        return None
    hint = (remedy or {}).get(fault) or DEFAULT_REMEDIES[fault]
    return StorageError(f"{action}: {place} {fault.value}", hint=hint)


@contextlib.contextmanager
def storage_errors(
    action: str,
    place: str,
    *,
    remedy: Mapping[Fault, str] | None = None,
    under: Path | None = None,
) -> Iterator[None]:
    """Turn a storage fault raised in the block into :func:`storage_error`'s error."""
    try:
        yield
    except SkyvaultError:
        raise
    except Exception as exc:
        error = storage_error(exc, action, place, remedy=remedy, under=under)
        if error is None:
            raise
        raise error from exc


def service_storage_error(exc: BaseException, what: str = "the request") -> StorageError | None:
    """The web's error for a storage fault: no server path, 503, try later (None otherwise)."""
    fault = storage_fault(exc)
    if fault is None:
        return None
    if fault is Fault.FULL:
        message = f"the service is out of disk space and could not complete {what}"
    else:
        message = f"the service cannot write to its storage and could not complete {what}"
    return StorageError(message, hint="try again later; the operator has been told")
