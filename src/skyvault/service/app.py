"""The FastAPI application: ``create_app(settings)`` mounts the TAP and VOSI routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from skyvault import __version__
from skyvault.config import Settings
from skyvault.service.context import ServiceContext
from skyvault.service.exceptions import install_error_handlers
from skyvault.service.handlers import tap, uws, vosi
from skyvault.service.uws import Reaper

__all__ = ["create_app"]


def create_app(settings: Settings | None = None) -> FastAPI:
    """The skyvault web application over ``settings.data_dir``.

    The TAP service is at ``settings.path_prefix`` (``/tap``): ``/sync``, ``/availability``,
    ``/capabilities``, ``/tables``, ``/examples``.  The archive is opened here, so a missing
    data root fails at start-up rather than on the first query.
    """
    settings = settings or Settings()
    context = ServiceContext.build(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Async jobs: rescue jobs a dead service left in EXECUTING, destroy expired ones,
        # then start the workers and the periodic reaper.
        reaper = Reaper(context.jobs, settings.job_reaper_interval)
        reaper.sweep()
        context.jobs.runner.start()
        reaper.start()
        try:
            yield
        finally:
            await reaper.stop()
            context.jobs.runner.stop()
            context.jobs.store.close()
            context.archive.close()

    app = FastAPI(
        title="skyvault",
        version=__version__,
        description="TAP 1.1 service over HATS catalogues (ADQL 2.1)",
        lifespan=lifespan,
    )
    app.state.context = context
    install_error_handlers(app)
    app.include_router(tap.router, prefix=settings.path_prefix, tags=["tap"])
    app.include_router(vosi.router, prefix=settings.path_prefix, tags=["vosi"])
    app.include_router(uws.router, prefix=settings.path_prefix, tags=["uws"])
    return app
