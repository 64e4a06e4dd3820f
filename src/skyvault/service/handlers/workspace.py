"""User tables over HTTP: CADC youcat's REST API, which pyvo's table methods speak.

=========================================== ==============================================
``PUT {tap}/tables/{schema.table}``         create (body: VOSI ``table``, ``text/xml``; or
                                            a VOTable of FIELDs, ``application/x-votable+xml``;
                                            ``x-vosi-*`` headers: initial grants) → 200
``POST {tap}/tables/{schema.table}``        update the metadata (same body as the PUT, the
                                            table's columns; owner and read-write groups;
                                            ``x-vosi-*`` headers: grants, owner) → 204
``DELETE {tap}/tables/{schema.table}``      drop (owner) → 200
``POST {tap}/load/{schema.table}``          append rows (CSV, TSV, FITS, VOTable, Parquet)
                                            → 200, ``Inserted N rows to table NAME``
``GET {tap}/permissions/{schema.table}``    the grants, youcat's ``text/plain`` lines, and
                                            the ``x-vosi-*`` headers
``POST {tap}/permissions/{schema.table}``   change them (owner; ``text/plain`` body) → 200
=========================================== ==============================================

``GET {tap}/tables/{schema.table}`` (VOSI) is the VOSI handler's: a user table is a table.
Every request needs an identity (anonymous: 401).  Bodies are read a chunk at a time, up to
the workspace limits (``SKYVAULT_WORKSPACE_MAX_BODY_BYTES``, ``..._MAX_DEFINITION_BYTES``;
more is a 400 saying the limit); a load's body is spooled to a temporary file (in
``spool_dir``) that is removed when the request ends.  The work runs in a thread; the store
(:mod:`skyvault.workspace.store`) decides, audits and stores atomically.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from skyvault.auth import Identity
from skyvault.errors import SkyvaultError, WorkspaceError
from skyvault.service.context import ServiceContext, get_context
from skyvault.service.handlers import GetHeadRouter
from skyvault.service.security import IdentityDep
from skyvault.workspace import format_permissions, parse_definition, parse_permissions
from skyvault.workspace.permissions import (
    PERMISSIONS_TYPE,
    PermissionChange,
    parse_permission_headers,
    permission_headers,
)
from skyvault.workspace.quota import format_bytes
from skyvault.workspace.readers import check_content_type

__all__ = ["router"]

router = GetHeadRouter()

Context = Annotated[ServiceContext, Depends(get_context)]
_TEXT = "text/plain; charset=utf-8"


def _too_large(limit: int, what: str) -> WorkspaceError:
    return WorkspaceError(
        f"the {what} is larger than the limit of {format_bytes(limit)}; nothing was stored",
        hint="send less at a time: a table can be loaded in several requests",
    )


async def _read_capped(request: Request, limit: int, what: str) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit, what)
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit, what)
        parts.append(chunk)
    return b"".join(parts)


@contextlib.contextmanager
def _audit_refusal(
    context: ServiceContext, identity: Identity, action: str, name: str
) -> Iterator[None]:
    """Record a refusal made here, before the store (which audits its own work), so every
    create and load request leaves its line in the audit log."""
    try:
        yield
    except SkyvaultError as exc:
        context.auth.audit.record(
            identity, f"workspace.{action}", query=name[:300], outcome="error", error=exc.code
        )
        raise


@contextlib.contextmanager
def _spool_file(directory: Path | None) -> Iterator[tuple[int, Path]]:
    fd, name = tempfile.mkstemp(prefix="skyvault-load-", dir=directory)
    path = Path(name)
    try:
        yield fd, path
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
        path.unlink(missing_ok=True)


@router.put("/tables/{name:path}", summary="Create a user table (youcat)")
async def create_table(
    name: str, request: Request, context: Context, identity: IdentityDep
) -> Response:
    """Create ``name`` (``user_<you>.TABLE``) from a VOSI table document or a VOTable."""
    store = context.workspace
    content_type = request.headers.get("content-type", "")
    with _audit_refusal(context, identity, "create", name):
        store.require_user(identity)  # anonymous: 401 before the body is read
        limit = store.settings.max_definition_bytes
        body = await _read_capped(request, limit, "table definition")
        change = parse_permission_headers(request.headers)

    def work() -> str:
        with _audit_refusal(context, identity, "create", name):
            definition = parse_definition(content_type, body)
        meta = store.create_table(identity, name, definition, permissions=change)
        loaded = f" with {meta.nrows} rows" if meta.nrows else ""
        return f"Created table {meta.qualified_name}{loaded}\n"

    message = await run_in_threadpool(work)
    return Response(message, status_code=200, media_type=_TEXT)


@router.post("/tables/{name:path}", summary="Update a user table's metadata (youcat)")
async def update_table(
    name: str, request: Request, context: Context, identity: IdentityDep
) -> Response:
    """Update the descriptions, units, UCDs and utypes of ``name`` from a VOSI table document
    or a VOTable of FIELDs with the table's own columns (and its grants from the
    ``x-vosi-*`` headers) → 204, as youcat answers."""
    store = context.workspace
    content_type = request.headers.get("content-type", "")
    with _audit_refusal(context, identity, "update", name):
        store.require_user(identity)
        # Access first: a table the caller cannot see is "no table" before a byte is read.
        await run_in_threadpool(store.check_access, identity, name, "read")
        limit = store.settings.max_definition_bytes
        body = await _read_capped(request, limit, "table definition")
        change = parse_permission_headers(request.headers)

    def work() -> None:
        definition = None
        if body.strip():
            with _audit_refusal(context, identity, "update", name):
                definition = parse_definition(content_type, body, computed=True)
        store.update_table(identity, name, definition, permissions=change)

    await run_in_threadpool(work)
    return Response(status_code=204)


@router.delete("/tables/{name:path}", summary="Drop a user table (youcat)")
async def drop_table(name: str, context: Context, identity: IdentityDep) -> Response:
    """Drop ``name`` (its owner only)."""
    await run_in_threadpool(context.workspace.drop, identity, name)
    return Response(f"Dropped table {name}\n", status_code=200, media_type=_TEXT)


@router.post("/load/{name:path}", summary="Load rows into a user table (youcat)")
async def load_table(
    name: str, request: Request, context: Context, identity: IdentityDep
) -> Response:
    """Append the body's rows (CSV/TSV with a header line, FITS, VOTable, Parquet)."""
    store = context.workspace
    content_type = request.headers.get("content-type", "")
    with _spool_file(context.settings.spool_dir) as (fd, path):
        with _audit_refusal(context, identity, "load", name):
            store.require_user(identity)
            check_content_type(content_type)
            # Access first: a table the caller cannot see is "no table" before a byte is read.
            await run_in_threadpool(store.check_access, identity, name, "write")
            limit = store.settings.max_body_bytes
            declared = request.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                raise _too_large(limit, "body")
            size = 0
            with os.fdopen(fd, "wb", closefd=False) as out:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise _too_large(limit, "body")
                    out.write(chunk)
        result = await run_in_threadpool(store.load_file, identity, name, path, content_type)
    return Response(result.message() + "\n", status_code=200, media_type=_TEXT)


@router.get("/permissions/{name:path}", summary="The grants on a user table (youcat)")
async def get_permissions(name: str, context: Context, identity: IdentityDep) -> Response:
    """``owner=``, ``public=``, ``r-group=``, ``rw-group=`` lines, and the ``x-vosi-*``
    headers."""
    perms = await run_in_threadpool(context.workspace.permissions, identity, name)
    return Response(format_permissions(perms), media_type=_TEXT, headers=permission_headers(perms))


@router.post("/permissions/{name:path}", summary="Change the grants on a user table (youcat)")
async def set_permissions(
    name: str, request: Request, context: Context, identity: IdentityDep
) -> Response:
    """Change the grants (owner only): a ``text/plain`` body of the keys to change, or the
    ``x-vosi-*`` headers."""
    store = context.workspace
    with _audit_refusal(context, identity, "permissions", name):
        store.require_user(identity)
        body = await _read_capped(request, 64 * 1024, "permissions document")
    mime = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    def work() -> str:
        with _audit_refusal(context, identity, "permissions", name):
            change = _permission_change(store.describe(identity, name).permissions.owner)
        return format_permissions(store.set_permissions(identity, name, change))

    def _permission_change(owner: str) -> PermissionChange:
        if body.strip():
            if mime != PERMISSIONS_TYPE:
                raise WorkspaceError(
                    f"permissions are sent as {PERMISSIONS_TYPE}, not {mime or '(none)'}",
                    hint="send lines like public=true, r-group=GROUP with Content-Type text/plain",
                )
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                raise WorkspaceError("the permissions are not UTF-8 text") from None
            change = parse_permissions(text, owner)
        else:
            change = parse_permission_headers(request.headers)
        if change.empty:
            raise WorkspaceError(
                "nothing to change",
                hint="send lines like public=false, r-group=GROUP, rw-group=GROUP",
            )
        return change

    text = await run_in_threadpool(work)
    return Response(text, media_type=_TEXT)
