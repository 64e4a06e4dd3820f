"""youcat's table-update jobs (pyvo's ``create_index``): what such a job does when it runs.

``POST {tap}/table-update`` (:mod:`skyvault.service.handlers.table_update`) stores a UWS
job of the ``table-update`` kind (:func:`table_update_kind`; its list and jobs are under
``{tap}/table-update``, as youcat's) with the form's parameters; a worker hands it to
:meth:`TableUpdates.run`, which takes the table's turn among its writers
(:meth:`~skyvault.workspace.WorkspaceStore.exclusive`: loads, drops and index jobs of one
table never interleave), checks the request against the table and makes the index
(:mod:`skyvault.workspace.index`).  Every failure is a
:class:`~skyvault.errors.SkyvaultError` whose message becomes the job's ``errorSummary``
(what pyvo's ``raise_if_error`` shows): a table the owner may not see reads exactly like a
missing one; one they may only read is refused as such.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path

from skyvault.auth.audit import AuditLog
from skyvault.auth.identity import Identity
from skyvault.engine.executor import CancelToken
from skyvault.errors import AccessDenied, SkyvaultError
from skyvault.service.uws.models import Job, JobKind, JobResult
from skyvault.service.uws.results import ResultStore
from skyvault.workspace.index import create_index, index_request, plan_index
from skyvault.workspace.store import WorkspaceStore

__all__ = ["INDEX_AUDIT_ENDPOINT", "TABLE_UPDATE", "TableUpdates", "table_update_kind"]

#: The job kind of table updates.
TABLE_UPDATE = "table-update"

#: The audit log's ``endpoint`` of an index, beside the store's ``workspace.load`` etc.
INDEX_AUDIT_ENDPOINT = "workspace.index"


class TableUpdates:
    """Runs table-update jobs over the workspace ``store``; each index made (or refused)
    is a line in ``audit``."""

    def __init__(self, store: WorkspaceStore, audit: AuditLog | None = None) -> None:
        self.store = store
        self.audit = audit

    @property
    def data_dir(self) -> Path:
        return self.store.data_dir

    def run(self, job: Job, owner: Identity, cancel: CancelToken) -> None:
        """Make the index ``job`` asks for, as ``owner``."""
        started = time.perf_counter()
        what: str | None = None
        try:
            request = index_request(job.parameter_map())
            what = f"index {request.table} ({request.index})"
            try:
                self.store.check_access(owner, request.table, "write")
            except AccessDenied as exc:
                if self.store.owner_of(request.table.split(".")[0]) is None:
                    raise  # an archive table: said as such
                # A user table visible to them, read-only: said for an index.
                raise AccessDenied(
                    f"you may read {request.table} but not index it", hint=exc.hint
                ) from None
            with self.store.exclusive(owner, request.table, "write") as table:
                plan = plan_index(table.meta, request)
                what = plan.describe()
                if not cancel.cancelled:
                    create_index(self.data_dir, plan, cancel=cancel)
        except SkyvaultError as exc:
            self._record(owner, what, started, exc.code)
            raise
        self._record(owner, what, started, None)

    def _record(self, owner: Identity, what: str | None, started: float, error: str | None) -> None:
        if self.audit is not None:
            self.audit.record(
                owner,
                INDEX_AUDIT_ENDPOINT,
                query=what,
                duration_s=time.perf_counter() - started,
                outcome="ok" if error is None else "error",
                error=error,
            )


def table_update_kind(store: WorkspaceStore, audit: AuditLog | None = None) -> JobKind:
    """The UWS job type of table updates: created by users only (anonymous callers get a
    401 and no job), its parameters checked when it runs (a bad request is the job's ERROR,
    which is what pyvo shows), no result."""
    updates = TableUpdates(store, audit)

    def check(caller: Identity, params: dict[str, list[str]], uploads: Mapping[str, bytes]) -> None:
        store.require_user(caller)

    def run(
        job: Job,
        cancel: CancelToken,
        owner: Identity,
        results: ResultStore,
        check_size: Callable[[int], None],
    ) -> JobResult | None:
        updates.run(job, owner, cancel)
        return None

    return JobKind(TABLE_UPDATE, check=check, run=run)
