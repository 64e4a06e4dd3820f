"""HTTP handlers: read the request, call a service, serialise the answer (nothing more)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter

__all__ = ["GetHeadRouter"]


class GetHeadRouter(APIRouter):
    """An :class:`~fastapi.APIRouter` whose GET-only routes also answer HEAD, as GET without
    a body (curl -I, wget --spider, link checkers): FastAPI's ``router.get`` adds no HEAD,
    unlike Starlette's routes.  The HEAD twin is kept out of the OpenAPI schema, where an
    operation per method of one route would repeat its operationId."""

    def add_api_route(
        self, path: str, endpoint: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> None:
        super().add_api_route(path, endpoint, *args, **kwargs)
        methods = kwargs.get("methods")
        if methods is not None and {m.upper() for m in methods} == {"GET"}:
            kwargs.update(methods=["HEAD"], include_in_schema=False)
            super().add_api_route(path, endpoint, *args, **kwargs)
