"""The one place errors become responses: a DALI VOTable error document, always.

Skyvault errors keep their message (with line:column and hint) and their ``http_status``;
HTTP errors (404, 405) and request-validation errors get the same document; anything else
is logged with its trace and answered as a 500 that says nothing about the server.

A 401 (:class:`~skyvault.errors.AuthenticationRequired`) also carries the challenges
``WWW-Authenticate: Bearer realm="skyvault"`` and ``Basic realm="skyvault"``, so that pyvo,
TOPCAT and STILTS learn how to log in; when the request sent credentials that were refused,
the Bearer challenge says ``error="invalid_token"`` (RFC 6750).  A 403
(:class:`~skyvault.errors.AccessDenied`) is the plain DALI error: the caller is known.  A
refusal that knows when to come back (:attr:`~skyvault.errors.LimitExceeded.retry_after`, the
429s of the per-client limits) carries ``Retry-After``.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from skyvault.auth.identity import www_authenticate_challenges
from skyvault.errors import (
    AuthenticationRequired,
    LimitExceeded,
    SkyvaultError,
    internal_error,
)
from skyvault.formats.errors import dali_error_document
from skyvault.storage_faults import service_storage_error

__all__ = ["VOTABLE_TYPE", "error_response", "install_error_handlers"]

log = logging.getLogger(__name__)

VOTABLE_TYPE = "application/x-votable+xml"


def error_response(message: str, status: int) -> Response:
    """A DALI error document with ``status``."""
    return Response(dali_error_document(message), status_code=status, media_type=VOTABLE_TYPE)


async def _skyvault_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SkyvaultError)
    if exc.http_status >= 500:
        log.error("%s %s failed: %s", request.method, request.url.path, exc, exc_info=exc)
    response = error_response(str(exc), exc.http_status)
    if isinstance(exc, LimitExceeded) and exc.retry_after is not None:
        response.headers["Retry-After"] = str(max(1, exc.retry_after))
    if isinstance(exc, AuthenticationRequired):
        sent = "authorization" in request.headers
        for challenge in www_authenticate_challenges(invalid_token=sent):
            # A script (the portal) says so with X-Requested-With; a Basic challenge would
            # make the browser open its own password dialog over the page.
            scripted = request.headers.get("x-requested-with", "").lower() == "xmlhttprequest"
            if not (scripted and challenge.startswith("Basic")):
                response.headers.append("WWW-Authenticate", challenge)
    return response


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    messages = {404: f"nothing at {request.url.path}", 405: "method not allowed here"}
    message = messages.get(exc.status_code, str(exc.detail))
    response = error_response(message, exc.status_code)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("query", "body"))
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else error.get("msg"))
    return error_response("invalid request: " + "; ".join(str(p) for p in parts), 400)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    # A full or read-only disk is no fault of the request: a 503 that says so, no path.
    error = service_storage_error(exc, "this request") or internal_error(
        "the service failed to answer this request", logged="the fault"
    )
    return error_response(str(error), error.http_status)


def install_error_handlers(app: FastAPI) -> None:
    """Route every error of ``app`` through the renderer above."""
    app.add_exception_handler(SkyvaultError, _skyvault_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
