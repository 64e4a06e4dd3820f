"""Running slots of sync queries: per account, in this process, with a short wait for one.

A sync query counts against its caller's ``max_running`` together with the caller's async
jobs EXECUTING (see :mod:`skyvault.auth.limits`); the account is the user, or — for an
anonymous caller — their client address, so anonymous callers do not share one pool.

When the caller is at the limit, the request does not fail at once: it waits up to
``Settings.sync_slot_wait`` seconds for one of the caller's own queries to end (woken at
once when a sync query of the account ends here, and re-checking every
:data:`POLL_SECONDS` for async jobs ending anywhere), and only then answers 429 with
``Retry-After``.  At most ``max_queued`` requests of an account wait at a time; more are
refused at once, so waiting cannot be used to pile up requests.  The wait is a coroutine,
not a worker thread: waiting requests hold no thread the other requests need.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

from skyvault.auth.identity import Identity
from skyvault.auth.limits import LimitsPolicy
from skyvault.errors import UserLimitExceeded
from skyvault.service.uws.models import Account

__all__ = ["POLL_SECONDS", "SlotBusy", "SyncSlots"]

#: How often a waiting request re-checks for a free slot without being woken (an async job
#: of the account that ended, here or on another replica), s.
POLL_SECONDS = 0.25


class SlotBusy(Exception):
    """The caller is at ``max_running`` (internal: the handler waits, then refuses).

    ``refusal`` is the 429 to answer when the wait is over; ``max_waiting`` how many
    requests of the account may wait at once.
    """

    def __init__(self, refusal: UserLimitExceeded, max_waiting: int) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal
        self.max_waiting = max_waiting


class SyncSlots:
    """Sync queries in flight in this process, per account, and the requests waiting."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[Account, int] = {}
        self._waiters: dict[Account, list[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}

    def running(self, account: Account | None = None) -> int:
        """Sync queries of ``account`` in flight (None: of everyone)."""
        with self._lock:
            if account is None:
                return sum(self._running.values())
            return self._running.get(account, 0)

    def take(
        self, identity: Identity, limits: LimitsPolicy, executing_jobs: int, *, retry_after: int
    ) -> None:
        """Take a running slot for ``identity`` (whose account has ``executing_jobs`` async
        jobs running) or raise :class:`SlotBusy`."""
        account = Account.of(identity)
        with self._lock:
            running = self._running.get(account, 0)
            try:
                limits.check_sync_slot(identity, running + executing_jobs, retry_after=retry_after)
            except UserLimitExceeded as refusal:
                raise SlotBusy(refusal, limits.limits_for(identity).max_queued) from None
            self._running[account] = running + 1

    def release(self, identity: Identity) -> None:
        """Give back the slot :meth:`take` took, and wake the account's waiting requests."""
        account = Account.of(identity)
        with self._lock:
            left = self._running.get(account, 0) - 1
            if left > 0:
                self._running[account] = left
            else:
                self._running.pop(account, None)
            waiters = list(self._waiters.get(account, ()))
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # its loop has closed
                loop.call_soon_threadsafe(event.set)

    @contextlib.contextmanager
    def waiting(self, identity: Identity, busy: SlotBusy) -> Iterator[asyncio.Event]:
        """Register a request of ``identity`` waiting for a slot; the event is set when a
        slot of the account is given back.  Refuses (``busy.refusal``) when
        ``busy.max_waiting`` requests of the account already wait."""
        account = Account.of(identity)
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            waiters = self._waiters.setdefault(account, [])
            if len(waiters) >= busy.max_waiting:
                if not waiters:
                    del self._waiters[account]
                raise busy.refusal
            waiters.append(entry)
        try:
            yield entry[1]
        finally:
            with self._lock:
                waiters = self._waiters.get(account, [])
                if entry in waiters:
                    waiters.remove(entry)
                if not waiters:
                    self._waiters.pop(account, None)
