"""How processes sharing a data root or a spool directory coordinate: file locks (``flock``)
and whether a process is still alive."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["file_lock", "process_alive"]


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
