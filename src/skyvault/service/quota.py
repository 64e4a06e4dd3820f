"""The refusal of a per-user limit as the web edge answers it (429), shared by sync and UWS."""

from __future__ import annotations

from skyvault.auth.limits import format_bytes
from skyvault.errors import LimitExceeded

__all__ = ["UserLimitExceeded", "result_does_not_fit"]


class UserLimitExceeded(LimitExceeded):
    """A per-user limit (running jobs, queued jobs, stored results) refused the request.

    429 Too Many Requests: the refusal is about this caller's use, not the service's load
    (:class:`QueueFull`, 503) nor a request that is too large (413).  The message names the
    limit and the caller's use, the hint how to make room.
    """

    http_status = 429

    @classmethod
    def of(cls, error: LimitExceeded) -> UserLimitExceeded:
        """The same refusal (message and hint) as a 429."""
        return cls(error.message, hint=error.hint)


def result_does_not_fit(stored: int, limit: int, hint: str | None) -> UserLimitExceeded:
    """The refusal of a job's result that would take its owner past ``limit`` bytes.

    Says what is stored (not counting the refused result), the limit, and the room that
    was left, e.g. "your stored results take 768 MB, the limit is 1 GB, and this job's
    result is larger than the 256 MB left".
    """
    left = max(0, limit - stored)
    return UserLimitExceeded(
        f"the result of this job would not fit: your stored results take "
        f"{format_bytes(stored)}, the limit is {format_bytes(limit)}, and this job's result "
        f"is larger than the {format_bytes(left)} left",
        hint=hint,
    )
