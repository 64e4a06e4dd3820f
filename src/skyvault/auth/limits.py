"""Per-user limits: running jobs, queued jobs and result storage, with refusals that say why.

Every user gets :class:`UserLimits` defaults, optionally overridden per user in the auth
database (:meth:`AuthStorage.set_limits`).  All anonymous callers share one owner (jobs with
owner None) and one set of limits, ``anonymous`` — smaller by default.

The service counts; this module decides.  It calls :meth:`LimitsPolicy.check_job_limits`
before creating or starting a job (a synchronous query counts as a running job) and
:meth:`LimitsPolicy.check_result_storage` before running one whose result will be kept.
A refusal is a :class:`~skyvault.errors.LimitExceeded` naming the limit, the caller's
current use, and how to free room.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from skyvault.auth.identity import Identity
from skyvault.auth.storage import AuthStorage
from skyvault.errors import LimitExceeded

__all__ = ["ANONYMOUS_LIMITS", "LimitsPolicy", "UserLimits", "format_bytes"]


@dataclass(frozen=True)
class UserLimits:
    """Limits of one user.

    Attributes
    ----------
    max_running
        Jobs (async or sync) executing at the same time.
    max_queued
        Jobs waiting to run (PENDING or QUEUED).
    max_result_bytes
        Bytes of stored results of all the user's jobs together.
    """

    max_running: int = 2
    max_queued: int = 10
    max_result_bytes: int = 10 * 1024**3


ANONYMOUS_LIMITS = UserLimits(max_running=2, max_queued=4, max_result_bytes=1024**3)


def format_bytes(n: int) -> str:
    """``n`` bytes for a person: ``512 B``, ``3.2 MB``, ``10 GB`` (powers of 1024)."""
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{n} B" if unit == "B" else f"{value:.3g} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


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
        Limits shared by all anonymous callers (default :data:`ANONYMOUS_LIMITS`).
    async_url
        Path of the UWS job list, for the hints (``DELETE {async_url}/<id>``).
    """

    def __init__(
        self,
        storage: AuthStorage | None = None,
        defaults: UserLimits | None = None,
        anonymous: UserLimits | None = None,
        *,
        async_url: str = "/tap/async",
    ) -> None:
        self._storage = storage
        self.defaults = defaults or UserLimits()
        self.anonymous = anonymous or ANONYMOUS_LIMITS
        self._async_url = async_url.rstrip("/")

    def limits_for(self, identity: Identity) -> UserLimits:
        """The limits that apply to ``identity``."""
        if identity.user is None:
            return self.anonymous
        if self._storage is None:
            return self.defaults
        over = self._storage.get_limits(identity.user)
        changes = {k: v for k, v in vars(over).items() if v is not None}
        return replace(self.defaults, **changes) if changes else self.defaults

    def check_job_limits(self, identity: Identity, running: int, queued: int) -> None:
        """Refuse another job when the caller is at either job limit.

        ``running`` and ``queued`` are the caller's jobs executing and waiting now, not
        counting the one asked for.
        """
        limits = self.limits_for(identity)
        if running >= limits.max_running:
            raise LimitExceeded(
                f"you have {_plural(running, 'running job')}, the limit is {limits.max_running}",
                hint=f"wait for one to finish or abort it (DELETE {self._async_url}/<id>)",
            )
        if queued >= limits.max_queued:
            raise LimitExceeded(
                f"you have {_plural(queued, 'queued job')}, the limit is {limits.max_queued}",
                hint=(
                    f"wait for some to run, or delete ones you no longer need "
                    f"(DELETE {self._async_url}/<id>; GET {self._async_url} lists them)"
                ),
            )

    def check_result_storage(self, identity: Identity, used_bytes: int) -> None:
        """Refuse a new job when the caller's stored results already fill their quota."""
        limits = self.limits_for(identity)
        if used_bytes >= limits.max_result_bytes:
            raise LimitExceeded(
                f"your stored results take {format_bytes(used_bytes)}, the limit is "
                f"{format_bytes(limits.max_result_bytes)}",
                hint=(
                    f"delete jobs whose results you have downloaded "
                    f"(DELETE {self._async_url}/<id>; GET {self._async_url} lists them)"
                ),
            )

    def result_bytes_left(self, identity: Identity, used_bytes: int) -> int:
        """How many more result bytes ``identity`` may store (a cap for a result writer)."""
        return max(0, self.limits_for(identity).max_result_bytes - used_bytes)
