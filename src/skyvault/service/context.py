"""The service's shared objects, built once per app (gafaelfawr's factory, in small)."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request

from skyvault.config import Settings
from skyvault.engine.archive import Archive
from skyvault.service.services.query import QueryService
from skyvault.service.tap_schema import TapSchemaCache
from skyvault.service.uws import JobService, build_job_service

__all__ = ["ServiceContext", "get_context"]


@dataclass
class ServiceContext:
    """What handlers need: settings, the archive and the services over it."""

    settings: Settings
    archive: Archive
    tap_schema: TapSchemaCache
    queries: QueryService
    jobs: JobService = field(init=False)

    def __post_init__(self) -> None:
        # Async jobs run through the same query service, under their own time limit: each
        # job's EXECUTIONDURATION (enforced by the worker) instead of the sync time-out.
        settings = self.settings
        async_limit = float(settings.job_execution_duration_max) + 60.0
        async_queries = QueryService(
            self.archive,
            settings.model_copy(update={"query_timeout": async_limit}),
            self.tap_schema,
        )
        self.jobs = build_job_service(
            settings,
            lambda params, cancel, uploads: async_queries.run(
                params, cancel=cancel, uploads=uploads
            ),
        )

    @classmethod
    def build(cls, settings: Settings) -> ServiceContext:
        archive = Archive(
            settings.data_dir,
            memory_limit=settings.memory_limit,
            threads=settings.query_threads,
            timeout=settings.query_timeout,
        )
        tap_schema = TapSchemaCache()
        return cls(settings, archive, tap_schema, QueryService(archive, settings, tap_schema))

    def base_url(self, request: Request) -> str:
        """The TAP service's public URL: configured, or from the request."""
        if self.settings.base_url:
            return self.settings.base_url.rstrip("/")
        return str(request.base_url).rstrip("/") + self.settings.path_prefix


def get_context(request: Request) -> ServiceContext:
    """FastAPI dependency: the app's :class:`ServiceContext`."""
    context: ServiceContext = request.app.state.context
    return context
