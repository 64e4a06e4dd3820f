"""The service's shared objects, built once per app (gafaelfawr's factory, in small)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa
from fastapi import Request

from skyvault.auth import AuthServices, Identity, build_auth
from skyvault.auth.access import GrantSnapshot
from skyvault.auth.limits import format_days
from skyvault.catalog.metadata import TableMeta
from skyvault.catalog.tap_schema import TapSchemaCache
from skyvault.catalog.views import View, with_views
from skyvault.config import Settings
from skyvault.engine.archive import Archive
from skyvault.engine.executor import CancelToken, Executor
from skyvault.errors import SkyvaultError
from skyvault.images.obstap import collection_tables, obscore_views
from skyvault.service.params import TapQueryParams
from skyvault.service.services.bulkjobs import bulk_job_kind
from skyvault.service.services.query import BatchSink, QueryOutput, QueryService
from skyvault.service.services.sodajobs import soda_job_kind
from skyvault.service.services.table_update import table_update_kind
from skyvault.service.services.vosi import TablesetCache
from skyvault.service.slots import SyncSlots
from skyvault.service.uws import Job, JobService, build_job_service, stored_identity
from skyvault.workspace import WorkspaceStore
from skyvault.workspace.save import ResultTable, open_result_table, save_request

__all__ = ["ServiceContext", "get_context"]

#: Base URLs kept by what they are made of (scheme, server, Host header, root path).
_BASE_URLS_KEPT = 64


@dataclass
class ServiceContext:
    """What handlers need: settings, auth, the archive and the services over it."""

    settings: Settings
    archive: Archive
    tap_schema: TapSchemaCache
    queries: QueryService
    auth: AuthServices
    jobs: JobService = field(init=False)
    #: Bulk jobs (``/bulk/jobs``): a UWS job type sharing the job database, workers, limits.
    bulk_jobs: JobService = field(init=False)
    soda_jobs: JobService = field(init=False)
    table_updates: JobService = field(init=False)
    sync: SyncSlots = field(init=False, default_factory=SyncSlots)
    seen_base_url: str | None = field(init=False, default=None)
    _images_seen: tuple[float, bool] = field(init=False, default=(-1e9, False))
    """The TAP base URL of the latest request (:meth:`public_base_url` without a
    configured one)."""
    workspace: WorkspaceStore = field(init=False)
    tablesets: TablesetCache = field(init=False, default_factory=TablesetCache)
    _base_urls: dict[tuple[object, ...], str] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        # Users' own tables (service/handlers/workspace.py), under the same access rules.
        self.workspace = WorkspaceStore(
            self.settings.data_dir,
            self.auth.storage,
            self.auth.access,
            self.settings.workspace,
            self.auth.audit,
            require_known_groups=self.auth.settings.mode == "builtin",
        )
        # Async jobs run through the same query service, under their own time limit: each
        # job's EXECUTIONDURATION, enforced by the worker, instead of the sync time-out (the
        # engine's limit is only a backstop past the longest EXECUTIONDURATION).
        settings = self.settings
        async_limit = float(settings.job_execution_duration_max) + 60.0

        def run_job(
            params: TapQueryParams,
            cancel: CancelToken,
            uploads: Sequence[tuple[TableMeta, pa.Table]],
            owner: Identity,
            sink: BatchSink | None = None,
            /,
        ) -> QueryOutput:
            # The owner's visibility, decided now: a grant revoked since the job was
            # created applies to it.
            tables = self.visible_tables(owner)
            return self.queries.run(
                params,
                tables=tables,
                cancel=cancel,
                uploads=uploads,
                timeout=async_limit,
                sink=sink,
                views=self.views(tables),
                base_url=self.public_base_url(),
            )

        def open_sink(job: Job, owner: Identity) -> ResultTable | None:
            # DEST=user_x.table: the job's result is saved as a user table too.
            request = save_request(job.parameter_map())
            return None if request is None else open_result_table(self.workspace, owner, request)

        self.jobs = build_job_service(
            settings,
            run_job,
            identify=self.job_identity,
            limits=self.auth.limits,
            audit=self.auth.audit,
            open_sink=open_sink,
        )
        self.bulk_jobs = self.jobs.for_kind(
            bulk_job_kind(
                self.archive, settings, self.visible_tables, self.queries.budget, self.views
            )
        )
        self.soda_jobs = self.jobs.for_kind(
            soda_job_kind(settings.data_dir, settings, self.visible_tables)
        )
        # youcat's table-update jobs (pyvo's create_index): indexes on user tables.
        self.table_updates = self.jobs.for_kind(table_update_kind(self.workspace, self.auth.audit))

    @classmethod
    def build(cls, settings: Settings) -> ServiceContext:
        archive = Archive(
            settings.data_dir,
            memory_limit=settings.memory_limit,
            threads=settings.query_threads,
            timeout=settings.query_timeout,
            executor=_dask_executor(settings.dask_scheduler),
        )
        tap_schema = TapSchemaCache()
        auth = build_auth(
            settings.data_dir,
            settings.auth,
            async_url=f"{settings.path_prefix}/async",
            anonymous_lifetime=format_days(
                min(settings.anonymous_job_destruction_days, settings.job_destruction_max_days)
            ),
        )
        return cls(settings, archive, tap_schema, QueryService(archive, settings, tap_schema), auth)

    def visible_tables(
        self, identity: Identity, grants: GrantSnapshot | None = None
    ) -> list[TableMeta]:
        """The stored tables ``identity`` may read: the one table list of a request."""
        snapshot = grants if grants is not None else self.auth.access.snapshot()
        return self.auth.access.visible_tables(identity, self.archive.tables(), snapshot)

    def has_images(self) -> bool:
        """Whether the archive holds an image collection (then ``ivoa.ObsCore`` exists,
        and the service declares ObsCore in its capabilities); looked up at most once a
        second (every query asks)."""
        now = time.monotonic()
        checked, found = self._images_seen
        if now - checked > 1.0:
            found = bool(collection_tables(self.archive.tables()))
            self._images_seen = (now, found)
        return found

    def views(self, tables: Sequence[TableMeta]) -> list[View]:
        """The views a caller who may read ``tables`` queries besides them:
        ``ivoa.ObsCore`` over the visible collections and the collections' ObsCore tables
        with their DataLink ``access_url`` (:mod:`skyvault.images.obstap`)."""
        members = collection_tables(tables)
        offered = bool(members) or self.has_images()
        return obscore_views(members, self.public_base_url(), offered=offered)

    def queryable_tables(self, tables: Sequence[TableMeta]) -> list[TableMeta]:
        """``tables`` (stored, visible) and the views' own tables, as TAP_SCHEMA and
        ``/tables`` describe them."""
        return with_views(tables, self.views(tables))

    def public_base_url(self) -> str | None:
        """The TAP service's public URL as rows of results name it (DataLink links):
        the configured one, else that of the latest request (None before any)."""
        if self.settings.base_url:
            return self.settings.base_url.rstrip("/")
        return self.seen_base_url

    def job_identity(self, job: Job) -> Identity:
        """Who ``job`` runs as: its owner, with the owner's groups when it starts.

        Built-in mode reads the groups from the auth database (a membership removed since
        the job was created applies); behind a proxy groups come only with a request, so
        the ones stored when the owner created or last ran the job are used.
        """
        if job.owner is None or self.auth.settings.mode == "proxy":
            return stored_identity(job)
        return Identity(job.owner, self.auth.storage.groups_of(job.owner))

    def base_url(self, request: Request) -> str:
        """The TAP service's public URL: configured, or from the request."""
        if self.settings.base_url:
            return self.settings.base_url.rstrip("/")
        # What Starlette's ``request.base_url`` is made of; building that URL is a
        # measurable part of a cone, and requests of one client repeat it.
        scope = request.scope
        host = next((value for key, value in scope["headers"] if key == b"host"), None)
        server = scope.get("server")
        key = (
            scope.get("scheme"),
            None if server is None else tuple(server),  # a list in some servers' scopes
            host,
            scope.get("app_root_path"),
            scope.get("root_path"),
        )
        url = self._base_urls.get(key)
        if url is None:
            if len(self._base_urls) >= _BASE_URLS_KEPT:  # Host headers are the client's
                self._base_urls.clear()
            url = str(request.base_url).rstrip("/") + self.settings.path_prefix
            self._base_urls[key] = url
        self.seen_base_url = url
        return url

    def site_url(self, request: Request) -> str:
        """The public URL of the server's root, where ``/bulk`` and ``/hips`` are (the TAP
        service's URL without its path prefix)."""
        return self.base_url(request).removesuffix(self.settings.path_prefix)


def _dask_executor(address: str | None) -> Executor | None:
    """The Dask executor for ``SKYVAULT_DASK_SCHEDULER``, or None (run queries here)."""
    if not address:
        return None
    from distributed import Client

    from skyvault.engine.distributed import DaskExecutor

    try:
        client = Client(address, timeout="10s")  # type: ignore[no-untyped-call]
    except (OSError, TimeoutError) as exc:
        raise SkyvaultError(
            f"cannot reach the Dask scheduler at {address}: {exc}",
            hint="start it (dask scheduler), or unset SKYVAULT_DASK_SCHEDULER",
        ) from None
    return DaskExecutor(client)


def get_context(request: Request) -> ServiceContext:
    """FastAPI dependency: the app's :class:`ServiceContext`."""
    context: ServiceContext = request.app.state.context
    return context
