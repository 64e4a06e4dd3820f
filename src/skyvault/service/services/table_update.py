"""youcat's table-update jobs (pyvo's ``create_index``): what such a job does when it runs.

``POST {tap}/table-update`` (:mod:`skyvault.service.handlers.table_update`) stores a UWS
job with the form's parameters and ``REQUEST=table-update``; the job runner hands it to
:meth:`TableUpdates.run`, which checks the request against the table the owner may write
and makes the index (:mod:`skyvault.workspace.index`).  Every failure is a
:class:`~skyvault.errors.SkyvaultError` whose message becomes the job's ``errorSummary``
(what pyvo's ``raise_if_error`` shows).  A table the owner may not write, and one they may
not even see, both read "table not found: NAME", as in youcat.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from skyvault.auth.audit import AuditLog
from skyvault.auth.identity import Identity
from skyvault.catalog.layout import TableName
from skyvault.catalog.metadata import TableMeta
from skyvault.catalog.registry import Registry
from skyvault.engine.executor import CancelToken
from skyvault.errors import CatalogNotFound, SkyvaultError, UsageError
from skyvault.service.uws.models import Job
from skyvault.workspace.index import create_index, index_request, plan_index

__all__ = ["TABLE_UPDATE", "TableUpdates", "WritableTable", "own_schema_tables"]

log = logging.getLogger(__name__)

#: The task name of table-update jobs (their ``REQUEST``).
TABLE_UPDATE = "table-update"

#: ``writable(identity, name)``: the metadata of table ``name`` if ``identity`` may change
#: it, else None (missing, hidden, or read-only to them alike).
WritableTable = Callable[[Identity, TableName], TableMeta | None]


def own_schema_tables(registry: Registry) -> WritableTable:
    """Tables in the caller's own schema ``user_<name>`` only (no grants consulted)."""

    def writable(identity: Identity, name: TableName) -> TableMeta | None:
        if identity.user is None or name.schema != f"user_{identity.user}":
            return None
        try:
            return registry.get(name.schema, name.table).meta
        except CatalogNotFound:
            return None

    return writable


class TableUpdates:
    """Runs table-update jobs over the data root ``data_dir``.

    Parameters
    ----------
    data_dir
        The data root.
    writable
        Which tables a caller may change (the workspace's ownership and read-write grants).
    audit
        Where each index made (or refused) is recorded, under ``endpoint``.
    """

    def __init__(
        self,
        data_dir: Path,
        writable: WritableTable,
        audit: AuditLog | None = None,
        endpoint: str = "/tap/table-update",
    ) -> None:
        self.data_dir = data_dir
        self.writable = writable
        self.audit = audit
        self.endpoint = endpoint

    def run(self, job: Job, owner: Identity, cancel: CancelToken) -> None:
        """Make the index ``job`` asks for, as ``owner``."""
        started = time.perf_counter()
        what: str | None = None
        try:
            request = index_request(job.parameter_map())
            what = f"index {request.table} ({request.index})"
            try:
                name = TableName.parse(request.table)
            except UsageError:
                raise UsageError(
                    f"table not found: {request.table}",
                    hint="name the table as SCHEMA.TABLE, e.g. user_alice.targets",
                ) from None
            meta = self.writable(owner, name) if owner.user is not None else None
            if meta is None:
                raise CatalogNotFound(
                    f"table not found: {request.table}",
                    hint="index a table of your own schema, or one your group may write",
                )
            plan = plan_index(meta, request)
            what = plan.describe()
            if cancel.cancelled:
                return
            create_index(self.data_dir, plan)
        except SkyvaultError as exc:
            self._record(owner, job, what, started, exc.code)
            raise
        self._record(owner, job, what, started, None)

    def _record(
        self, owner: Identity, job: Job, what: str | None, started: float, error: str | None
    ) -> None:
        if self.audit is not None:
            self.audit.record(
                owner,
                f"{self.endpoint}/{job.job_id}",
                query=what,
                duration_s=time.perf_counter() - started,
                outcome="ok" if error is None else "error",
                error=error,
            )
