"""The FastAPI application: ``create_app(settings)`` mounts the TAP and VOSI routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from skyvault import __version__
from skyvault.config import Settings
from skyvault.service.context import ServiceContext
from skyvault.service.exceptions import install_error_handlers
from skyvault.service.handlers import tap, vosi

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
        yield
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
    return app
