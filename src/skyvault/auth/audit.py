"""The audit log: one JSON line per request (who, what, how many rows, how long, outcome).

Each line is a JSON object::

    {"time": "2026-05-01T12:00:00.123456Z", "user": "alice", "endpoint": "/tap/sync",
     "query": "SELECT ...", "rows": 12, "duration_s": 0.042, "outcome": "ok",
     "error": null}

``user`` is null for anonymous callers; ``outcome`` is ``ok`` or ``error``, and ``error`` the
skyvault error code (``adql.semantic``, ``auth.required``, ``limit`` ...).  Credentials are
never logged.

Writing appends one complete line with a single ``write`` on a file opened with
``O_APPEND``, under a lock: lines from threads never interleave, nor in practice do lines
from several processes sharing the file.  Writing never raises into the request: a failure
is reported once on the ``skyvault.auth.audit`` logger and the request goes on.  The file is
opened for each line, so log rotation by renaming needs no signal.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from skyvault.auth.identity import Identity
from skyvault.auth.storage import utc_now
from skyvault.errors import SkyvaultError

__all__ = ["AuditEvent", "AuditLog"]

_log = logging.getLogger(__name__)

#: Longest query text kept in a line; longer ones are cut and marked.
MAX_QUERY_CHARS = 20_000

#: One encoder for every line (``json.dumps`` with options makes one per call).
_ENCODER = json.JSONEncoder(ensure_ascii=False)
_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT


@dataclass
class AuditEvent:
    """What the code handling a request fills in while it runs (see :meth:`AuditLog.request`)."""

    rows: int | None = None
    outcome: str | None = None
    error: str | None = None


class AuditLog:
    """Append-only JSON-lines audit log at ``path``.

    Parameters
    ----------
    path
        The log file; created (with its directory) on the first write.
    clock
        Returns the current UTC time; injectable for tests.
    """

    def __init__(self, path: Path, clock: Callable[[], datetime] = utc_now) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        self._failed = False

    def record(
        self,
        identity: Identity | None,
        endpoint: str,
        *,
        query: str | None = None,
        rows: int | None = None,
        duration_s: float | None = None,
        outcome: str = "ok",
        error: str | None = None,
    ) -> None:
        """Append one event.  Never raises."""
        try:
            if query is not None and len(query) > MAX_QUERY_CHARS:
                query = query[:MAX_QUERY_CHARS] + "…[truncated]"
            line = _ENCODER.encode(
                {
                    "time": self._clock().isoformat().replace("+00:00", "Z"),
                    "user": identity.user if identity is not None else None,
                    "endpoint": endpoint,
                    "query": query,
                    "rows": rows,
                    "duration_s": None if duration_s is None else round(duration_s, 6),
                    "outcome": outcome,
                    "error": error,
                }
            )
            data = (line + "\n").encode("utf-8")
            with self._lock:
                try:
                    fd = os.open(self.path, _APPEND, 0o600)
                except FileNotFoundError:  # the directory, the first time
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    fd = os.open(self.path, _APPEND, 0o600)
                try:
                    written = os.write(fd, data)
                finally:
                    os.close(fd)
            if written != len(data):
                raise OSError(f"short write ({written} of {len(data)} bytes)")
        except Exception as exc:  # never into the request
            if not self._failed:
                self._failed = True
                _log.error("cannot write the audit log %s: %s", self.path, exc)

    @contextlib.contextmanager
    def request(
        self, identity: Identity | None, endpoint: str, query: str | None = None
    ) -> Iterator[AuditEvent]:
        """Time a block and record it when it ends, with its outcome.

        Set ``event.rows`` inside the block.  An exception leaving the block is recorded as
        ``outcome="error"`` with its skyvault code (``internal`` for anything else) and
        re-raised.
        """
        event = AuditEvent()
        start = time.perf_counter()
        try:
            yield event
        except BaseException as exc:
            code = exc.code if isinstance(exc, SkyvaultError) else "internal"
            self.record(
                identity,
                endpoint,
                query=query,
                rows=event.rows,
                duration_s=time.perf_counter() - start,
                outcome="error",
                error=code,
            )
            raise
        self.record(
            identity,
            endpoint,
            query=query,
            rows=event.rows,
            duration_s=time.perf_counter() - start,
            outcome=event.outcome or ("ok" if event.error is None else "error"),
            error=event.error,
        )
