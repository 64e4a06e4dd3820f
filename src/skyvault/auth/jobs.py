"""Who may see a UWS job: unguessable ids, owner-only access, no listing of anonymous jobs.

* A job created by an authenticated user belongs to that user alone: nobody else can read,
  change, list or delete it, whatever they know of its id.
* A job created anonymously (owner None) has no one to belong to.  It can be reached by
  whoever holds its id — 128 random bits, as unguessable as a token — and is never listed,
  to anyone.  Its results are public data only (anonymous queries see nothing else), so the
  id grants nothing the holder could not query directly.
* A job the caller may not access must be reported exactly like a job that does not exist
  (same status, same message), so ids cannot be probed.
"""

from __future__ import annotations

import re
import secrets

from skyvault.auth.identity import Identity

__all__ = ["can_access_job", "can_list_job", "is_valid_job_id", "new_job_id"]

_JOB_ID_BYTES = 16
_JOB_ID = re.compile(r"[A-Za-z0-9_-]{22}")


def new_job_id() -> str:
    """A fresh job id: 128 random bits, 22 URL-safe characters."""
    return secrets.token_urlsafe(_JOB_ID_BYTES)


def is_valid_job_id(job_id: str) -> bool:
    """Whether ``job_id`` has the form of an id :func:`new_job_id` makes (cheap pre-check)."""
    return isinstance(job_id, str) and _JOB_ID.fullmatch(job_id) is not None


def can_access_job(identity: Identity, owner: str | None) -> bool:
    """Whether ``identity``, holding the id of a job owned by ``owner``, may use it.

    Owned jobs: the owner only.  Anonymous jobs: anyone holding the id.
    """
    if owner is None:
        return True
    return identity.user == owner


def can_list_job(identity: Identity, owner: str | None) -> bool:
    """Whether a job owned by ``owner`` appears in ``identity``'s job list.

    Only one's own jobs are listed; anonymous jobs are never listed (not even to anonymous
    callers: they would all share one list).
    """
    return owner is not None and identity.user == owner
