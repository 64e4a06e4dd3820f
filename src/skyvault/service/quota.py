"""The refusal of a per-user limit as the web edge answers it (429), shared by sync and UWS."""

from __future__ import annotations

from skyvault.errors import LimitExceeded

__all__ = ["UserLimitExceeded"]


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
