"""The FastAPI application: ``create_app(settings)`` mounts the TAP and VOSI routes."""

from __future__ import annotations

import gc
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from starlette._utils import get_route_path
from starlette.types import Receive, Scope, Send

from skyvault import __version__
from skyvault.catalog.compact import BackgroundCompactor, CompactionPolicy
from skyvault.config import Settings
from skyvault.formats.fits import sweep_spool
from skyvault.service.context import ServiceContext
from skyvault.service.exceptions import install_error_handlers
from skyvault.service.handlers import (
    append,
    bulk,
    images,
    portal,
    sia,
    table_update,
    tap,
    vosi,
    workspace,
)
from skyvault.service.handlers.hips import router as hips_router
from skyvault.service.uws import Reaper
from skyvault.service.uws import handlers as uws

__all__ = ["SkyvaultApp", "create_app", "create_served_app"]

#: Seconds between looks at whether FastAPI's telemetry is on (:func:`_telemetry_on`).
TELEMETRY_RECHECK_S = 1.0


class SkyvaultApp(FastAPI):
    """The FastAPI application, with ``/sync`` served without the router and middleware.

    A cone search is a few milliseconds of work, and FastAPI's middleware stack, routing
    and dependency solving were a measurable part of it; :func:`tap.serve_sync` runs the
    same handler, identity and error handlers directly.  The usual path is taken whenever
    something could hook into it: added middleware, dependency overrides, FastAPI's
    telemetry, a ``root_path`` set on the app.
    """

    sync_path: str | None = None
    #: When FastAPI's telemetry was last looked at, and whether it was on.
    telemetry_seen: tuple[float, bool] = (-1e9, False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] in ("GET", "POST")
            and self.sync_path is not None
            and get_route_path(scope) == self.sync_path
            and not self.root_path
            and not self.user_middleware
            and not self.dependency_overrides
            and not _telemetry_on(self)
        ):
            scope["app"] = self
            await tap.serve_sync(scope, receive, send, self.exception_handlers)
            return
        await super().__call__(scope, receive, send)


def _telemetry_on(app: SkyvaultApp) -> bool:
    """Whether FastAPI's own telemetry is on (then requests take the routed path, which
    traces them); asked at most once a second — asking costs a tenth of the fast path."""
    now = time.monotonic()
    checked, on = app.telemetry_seen
    if now - checked >= TELEMETRY_RECHECK_S:
        telemetry = getattr(app, "_native_telemetry", None)
        on = telemetry is not None and bool(telemetry.enabled())
        app.telemetry_seen = (now, on)
    return on


def create_served_app() -> FastAPI:
    """The application of one ``skyvault serve`` worker process (settings from the
    environment; uvicorn's factory)."""
    return create_app(freeze_gc=True)


def _freeze_startup_objects() -> None:
    """Leave what start-up made (the app, the archive's metadata, imported modules) out of
    every later garbage collection: they live as long as the process, and a full
    collection walking them cost ~0.1 ms per cone on average (``gc.freeze``)."""
    gc.collect()
    gc.freeze()


def _compactor(settings: Settings) -> BackgroundCompactor | None:
    """The background compaction of appended rows, started; None when it is off."""
    if not settings.background_compaction:
        return None
    policy = CompactionPolicy(
        settings.compact_after_batches,
        settings.compact_after_bytes,
        settings.compact_keep_replaced,
    )
    compactor = BackgroundCompactor(settings.data_dir, policy, settings.compact_check_interval)
    compactor.start()
    return compactor


def create_app(settings: Settings | None = None, *, freeze_gc: bool = False) -> FastAPI:
    """The skyvault web application over ``settings.data_dir``.

    The TAP service is at ``settings.path_prefix`` (``/tap``): ``/sync``, ``/availability``,
    ``/capabilities``, ``/tables``, ``/examples``.  The archive is opened here, so a missing
    data root fails at start-up rather than on the first query.  ``freeze_gc``: a server
    process of its own (``skyvault serve``) leaves what start-up made out of later garbage
    collections (not for an app among others, as in tests: what is garbage then would stay).
    """
    settings = settings or Settings()
    context = ServiceContext.build(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Async jobs: rescue jobs a dead service left in EXECUTING, destroy expired ones,
        # then start the workers and the periodic reaper.  FITS spool files that dead
        # processes left go too.
        reaper = Reaper(context.jobs, settings.job_reaper_interval)
        reaper.sweep()
        sweep_spool(settings.spool_dir)
        context.jobs.runner.start()
        reaper.start()
        compactor = _compactor(settings)
        app.state.compactor = compactor
        if freeze_gc:
            _freeze_startup_objects()
        try:
            yield
        finally:
            if compactor is not None:
                compactor.stop(timeout=5)  # a compaction cut short by exit is safe
            await reaper.stop()
            context.jobs.runner.stop()
            context.jobs.store.close()
            context.archive.close()

    # No /docs or /redoc: they load Swagger UI and ReDoc from a CDN, so they are blank
    # offline, and no TAP client uses them (the schema stays at /openapi.json).
    app = SkyvaultApp(
        title="skyvault",
        version=__version__,
        description="TAP 1.1 service over HATS catalogues (ADQL 2.1)",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.context = context
    install_error_handlers(app)
    if settings.path_prefix.strip("/"):

        @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
        async def root() -> RedirectResponse:
            """A browser at the server's root goes to the portal.

            The location is relative, so it stays right behind a proxy that serves the
            application under a path of its own.
            """
            return RedirectResponse("portal/", status_code=302)

    app.include_router(tap.router, prefix=settings.path_prefix, tags=["tap"])
    app.sync_path = f"{settings.path_prefix.rstrip('/')}/sync"
    app.include_router(vosi.router, prefix=settings.path_prefix, tags=["vosi"])
    app.include_router(uws.router, prefix=settings.path_prefix, tags=["uws"])
    app.include_router(table_update.router, prefix=settings.path_prefix, tags=["workspace"])
    app.include_router(images.router, prefix=settings.path_prefix, tags=["images"])
    app.include_router(append.router, prefix=settings.path_prefix, tags=["append"])
    app.include_router(workspace.router, prefix=settings.path_prefix, tags=["workspace"])
    app.include_router(sia.router, prefix=settings.path_prefix, tags=["sia"])
    app.include_router(bulk.router, prefix="/bulk", tags=["bulk"])
    app.include_router(hips_router, tags=["hips"])  # /hips at the root, like /bulk
    app.include_router(portal.router, tags=["portal"])  # /portal/ at the root
    return app
