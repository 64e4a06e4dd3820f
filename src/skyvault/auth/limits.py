"""Per-user limits: running, queued and pending jobs, result storage; refusals that say why.

Every user gets :class:`UserLimits` defaults, optionally overridden per user in the auth
database (:meth:`AuthStorage.set_limits`).  Anonymous callers get the ``anonymous`` limits
(smaller by default) *per client*: each network address (``Identity.client``, set by the web
edge) is counted on its own, so one anonymous client cannot use up anyone else's share.

The service counts; this module decides.  Each check takes the caller's current use and
raises a :class:`~skyvault.errors.UserLimitExceeded` (429, with ``retry_after`` where
waiting helps) naming the limit, the use, and the way out that is true where it was refused:

* :meth:`LimitsPolicy.check_sync_slot` — a sync query while the caller has ``max_running``
  queries (sync, or async jobs EXECUTING) running;
* :meth:`LimitsPolicy.check_queued` — ``PHASE=RUN`` while ``max_queued`` jobs wait in QUEUED;
* :meth:`LimitsPolicy.check_pending` — a new job while ``max_pending`` jobs sit in PENDING
  (created, never run: they hold no run slot, only a row and their uploads);
* :meth:`LimitsPolicy.check_result_storage` — a job when stored results fill the quota;
* :meth:`LimitsPolicy.check_result_fits` — a job's result that would overfill it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from skyvault.auth.identity import Identity
from skyvault.auth.storage import AuthStorage
from skyvault.errors import UserLimitExceeded

__all__ = ["ANONYMOUS_LIMITS", "LimitsPolicy", "UserLimits", "format_bytes", "format_days"]


@dataclass(frozen=True)
class UserLimits:
    """Limits of one user.

    Attributes
    ----------
    max_running
        Queries (sync, or async jobs EXECUTING) running at the same time.
    max_queued
        Jobs sent ``PHASE=RUN`` and waiting for a worker (QUEUED).
    max_result_bytes
        Bytes of stored results of all the user's jobs together.
    max_pending
        Jobs created and not (yet) sent ``PHASE=RUN`` (PENDING).
    """

    max_running: int = 2
    max_queued: int = 10
    max_result_bytes: int = 10 * 1024**3
    max_pending: int = 100


ANONYMOUS_LIMITS = UserLimits(max_running=2, max_queued=4, max_result_bytes=1024**3, max_pending=10)


_UNITS = ("B", "KB", "MB", "GB", "TB", "PB")


def format_bytes(n: int) -> str:
    """``n`` bytes for a person, three significant digits at most: ``768 MB``, ``1.5 GB``.

    Powers of 1024; never in exponent notation (``1023 MB``, not ``1.02e+03 MB``) and
    rounded down, so a size below a limit never reads as the limit itself.  The one size
    format of the limits' messages.
    """
    value = float(n)
    unit = 0
    while value >= 1024 and unit < len(_UNITS) - 1:
        value /= 1024
        unit += 1
    if unit == 0:
        return f"{n} B"
    decimals = 0 if value >= 100 else 1 if value >= 10 else 2
    scale = 10**decimals
    text = f"{int(value * scale) / scale:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"{text} {_UNITS[unit]}"


def format_days(days: float) -> str:
    """A lifetime for a person: ``1 day``, ``7 days``, ``12 hours``, ``30 minutes``."""
    for unit, size in (("day", 1.0), ("hour", 1 / 24), ("minute", 1 / 1440)):
        if days >= size:
            n = days / size
            return _plural(round(n), unit) if abs(n - round(n)) < 0.05 else f"{n:.1f} {unit}s"
    return _plural(max(1, round(days * 86400)), "second")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class LimitsPolicy:
    """The limits of each identity, and the checks that enforce them.

    Parameters
    ----------
    storage
        The auth database with per-user overrides; None: defaults only.
    defaults
        Limits of authenticated users without overrides (default :class:`UserLimits`).
    anonymous
        Limits of each anonymous client (default :data:`ANONYMOUS_LIMITS`).
    async_url
        Path of the UWS job list, for the hints (``DELETE {async_url}/<id>``).
    anonymous_lifetime
        How long anonymous jobs live, for the hints (``"1 day"``).
    """

    def __init__(
        self,
        storage: AuthStorage | None = None,
        defaults: UserLimits | None = None,
        anonymous: UserLimits | None = None,
        *,
        async_url: str = "/tap/async",
        anonymous_lifetime: str = "1 day",
    ) -> None:
        self._storage = storage
        self.defaults = defaults or UserLimits()
        self.anonymous = anonymous or ANONYMOUS_LIMITS
        self._async_url = async_url.rstrip("/")
        self._anonymous_lifetime = anonymous_lifetime

    def limits_for(self, identity: Identity) -> UserLimits:
        """The limits that apply to ``identity``."""
        if identity.user is None:
            return self.anonymous
        if self._storage is None:
            return self.defaults
        over = self._storage.get_limits(identity.user)
        changes = {k: v for k, v in vars(over).items() if v is not None}
        return replace(self.defaults, **changes) if changes else self.defaults

    def check_sync_slot(self, identity: Identity, running: int, *, retry_after: int) -> None:
        """Refuse a sync query while ``identity`` has ``max_running`` queries running.

        ``running`` counts the caller's sync queries in flight and async jobs executing.
        """
        limits = self.limits_for(identity)
        if running >= limits.max_running:
            raise UserLimitExceeded(
                f"too many of your queries are running ({running}, the limit is "
                f"{limits.max_running})",
                hint=(
                    f"retry in {retry_after} s, or submit the query as an async job "
                    f"(POST {self._async_url}), which waits for its turn instead"
                ),
                retry_after=retry_after,
            )

    def check_queued(
        self, identity: Identity, queued: int, *, retry_after: int, created: bool
    ) -> None:
        """Refuse ``PHASE=RUN`` while ``identity`` has ``max_queued`` jobs QUEUED.

        ``created``: the job exists and stays PENDING (PHASE=RUN on a job); otherwise the
        refused request would have created it, and nothing was created.
        """
        limits = self.limits_for(identity)
        if queued < limits.max_queued:
            return
        stays = (
            "this job stays PENDING: send PHASE=RUN again then"
            if created
            else "no job was created: submit it again then"
        )
        raise UserLimitExceeded(
            f"you have {_plural(queued, 'job')} queued to run, the limit is {limits.max_queued}",
            hint=f"retry in {retry_after} s, once some have started; {stays}",
            retry_after=retry_after,
        )

    def check_pending(self, identity: Identity, pending: int, *, retry_after: int) -> None:
        """Refuse a new job while ``identity`` has ``max_pending`` jobs PENDING."""
        limits = self.limits_for(identity)
        if pending < limits.max_pending:
            return
        if identity.user is None:
            where = (
                f"anonymous jobs are not listed; each is destroyed "
                f"{self._anonymous_lifetime} after it was created"
            )
        else:
            where = f"GET {self._async_url}?PHASE=PENDING lists them"
        raise UserLimitExceeded(
            f"you have {_plural(pending, 'job')} created and never run (PENDING), the limit "
            f"is {limits.max_pending}",
            hint=(
                f"run them (PHASE=RUN) or delete the ones you no longer need "
                f"(DELETE {self._async_url}/<id>; {where}); or create the job with "
                f"PHASE=RUN so that it runs at once"
            ),
            retry_after=retry_after,
        )

    def check_result_storage(
        self, identity: Identity, used_bytes: int, *, retry_after: int | None = None
    ) -> None:
        """Refuse a new job when the caller's stored results already fill their quota.

        ``retry_after``: when waiting frees room (the next result destroyed), if known.
        """
        limits = self.limits_for(identity)
        if used_bytes >= limits.max_result_bytes:
            raise UserLimitExceeded(
                f"your stored results take {format_bytes(used_bytes)}, the limit is "
                f"{format_bytes(limits.max_result_bytes)}",
                hint=self._storage_hint(identity),
                retry_after=retry_after,
            )

    def check_result_fits(self, identity: Identity, stored: int, result: int) -> None:
        """Refuse a job's result of ``result`` bytes (so far) that would take the caller,
        with ``stored`` bytes of results already, past their quota.

        Says what is stored (not counting the refused result), the limit, and the room
        that was left, e.g. "your stored results take 768 MB, the limit is 1 GB, and this
        job's result is larger than the 256 MB left".
        """
        limit = self.limits_for(identity).max_result_bytes
        if stored + result <= limit:
            return
        left = max(0, limit - stored)
        raise UserLimitExceeded(
            f"the result of this job would not fit: your stored results take "
            f"{format_bytes(stored)}, the limit is {format_bytes(limit)}, and this job's "
            f"result is larger than the {format_bytes(left)} left",
            hint=self._storage_hint(identity),
        )

    def _storage_hint(self, identity: Identity) -> str:
        if identity.user is None:
            where = f"anonymous jobs go {self._anonymous_lifetime} after creation"
        else:
            where = f"GET {self._async_url} lists them"
        return (
            f"delete jobs whose results you have downloaded "
            f"(DELETE {self._async_url}/<id>; {where})"
        )

    def result_bytes_left(self, identity: Identity, used_bytes: int) -> int:
        """How many more result bytes ``identity`` may store (a cap for a result writer)."""
        return max(0, self.limits_for(identity).max_result_bytes - used_bytes)
