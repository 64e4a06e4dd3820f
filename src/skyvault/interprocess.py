"""How processes sharing a data root or a spool directory coordinate: file locks (``flock``)
and whether a process is still alive."""

from __future__ import annotations

import contextlib
import fcntl
import multiprocessing
import os
import threading
from collections.abc import Iterator
from multiprocessing.context import BaseContext
from pathlib import Path

__all__ = ["file_lock", "process_alive", "worker_context"]


@contextlib.contextmanager
def file_lock(path: Path, *, create: bool = True, wait: bool = False) -> Iterator[bool]:
    """Take an exclusive lock on the file at ``path`` for the block; yields whether it was
    taken (False: another process holds it).

    ``create``: make the file (mode 0644) when it is missing, else a missing file raises
    :class:`FileNotFoundError`.  ``wait``: wait for the lock instead of giving up at once
    (it is then always taken).  The lock goes with the process: one that is killed holds
    nothing, so a lock that can be taken says its last holder is gone.
    """
    fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            taken = True
        except BlockingIOError:
            taken = False
        yield taken
    finally:
        os.close(fd)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host may be alive (False only when it is gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def worker_context() -> tuple[BaseContext, bool]:
    """How to start worker processes, and whether they start cheaply.

    ``fork`` from a single-threaded process: a worker starts at once with the modules
    already imported.  Otherwise ``spawn`` (forking a process that runs other threads — a
    progress bar's refresh, a server's pool — can deadlock the child on a lock one of them
    held): each worker then imports what it needs, a second or two, so callers should keep
    a pool for work large enough to repay that (the second value is False then).
    """
    if threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork"), True
    return multiprocessing.get_context("spawn"), False
