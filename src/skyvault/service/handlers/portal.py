"""The portal's edge: its static files at ``/portal/`` and one JSON document it needs.

``GET /portal/api/session`` says who the caller is (user, groups, anonymous), which tables
they may see with their size and position columns (for the editor's "no TOP, no WHERE on a
big table" warning and the sky view), which HiPS they may browse, and the signed-in user's
workspace schema (``user_<name>``).  Everything else the
page asks the standard endpoints (TAP_SCHEMA, ``/tap/sync``, ``/tap/async``, ``/hips``).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from skyvault.errors import CatalogNotFound
from skyvault.portal import STATIC, content_security_policy
from skyvault.service.context import ServiceContext, get_context
from skyvault.service.exceptions import error_response
from skyvault.service.handlers.hips import visible_hips
from skyvault.service.security import CallerDep

__all__ = ["router"]

router = APIRouter()
Context = Annotated[ServiceContext, Depends(get_context)]


@lru_cache(maxsize=1)
def _policy() -> str:
    return content_security_policy()


def _properties(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            out[key.strip()] = value.strip()
    return out


def _number(value: str | None) -> float | None:
    try:
        return None if value is None else float(value)
    except ValueError:
        return None


@router.get("/portal/api/session", summary="Who the caller is and what the portal may show")
async def session(request: Request, context: Context, caller: CallerDep) -> Response:
    base = context.site_url(request)
    data_dir = context.settings.data_dir

    def document() -> dict[str, Any]:
        tables = [
            {
                "name": meta.qualified_name,
                "nrows": meta.nrows,
                "ra": meta.ra_column,
                "dec": meta.dec_column,
            }
            for meta in sorted(caller.tables, key=lambda m: m.qualified_name)
        ]
        hips = []
        for path, text in visible_hips(data_dir, caller):
            props = _properties(text)
            hips.append(
                {
                    "id": props.get("creator_did", path),
                    "url": f"{base}{path}",
                    "title": props.get("obs_title", path.rsplit("/", 1)[-1]),
                    "dataproduct_type": props.get("dataproduct_type", "image"),
                    "ra": _number(props.get("hips_initial_ra")),
                    "dec": _number(props.get("hips_initial_dec")),
                    "fov": _number(props.get("hips_initial_fov")),
                }
            )
        identity = caller.identity
        # The signed-in user's workspace schema (user tables: workspace.js), claimed on first
        # use as PUT /tables would; anonymous callers have none.
        workspace = (
            None if identity.is_anonymous else context.workspace.schema_of(identity, create=True)
        )
        return {
            "tap": f"{base}{context.settings.path_prefix.rstrip('/')}",
            "user": identity.user,
            "anonymous": identity.is_anonymous,
            "groups": sorted(identity.groups),
            "workspace": workspace,
            "tables": tables,
            "hips": hips,
        }

    return JSONResponse(await run_in_threadpool(document), headers={"Cache-Control": "no-store"})


@router.api_route("/portal", methods=["GET", "HEAD"], include_in_schema=False)
async def portal_root() -> RedirectResponse:
    return RedirectResponse("portal/", status_code=308)


_EMPTY_TILE = re.compile(r"empty-hips/Norder3/Dir0/Npix(\d{1,3})\.png")


@router.api_route("/portal/{path:path}", methods=["GET", "HEAD"], include_in_schema=False)
async def portal_file(path: str) -> Response:
    """A file of the built portal; the directory is ``index.html`` (with its CSP).

    The empty background HiPS (``empty-hips/``: the sky view's survey when the server has no
    image HiPS) has one tile for all its 768 order-3 pixels.
    """
    tile = _EMPTY_TILE.fullmatch(path)
    if tile is not None and int(tile.group(1)) < 768:
        path = "empty-hips/tile.png"
    target = _resolve(path or "index.html")
    if target is None:
        error = CatalogNotFound("no such portal file", hint="the portal is at /portal/")
        return error_response(str(error), error.http_status)
    headers = {"X-Content-Type-Options": "nosniff"}
    if target.name == "index.html":
        headers["Content-Security-Policy"] = _policy()
        headers["Cache-Control"] = "no-cache"
    else:
        headers["Cache-Control"] = "public, max-age=3600"
    return FileResponse(target, headers=headers)


def _resolve(path: str) -> Any:
    """The built file ``path`` names, or None (no dot segments, no hidden names, no links)."""
    parts = path.split("/")
    if any(p in ("", ".", "..") or p.startswith(".") or "\\" in p or "\0" in p for p in parts):
        return None
    target = STATIC.joinpath(*parts)
    try:
        if target.is_symlink() or not target.is_file():
            return None
        target.resolve().relative_to(STATIC.resolve())
    except (OSError, ValueError):
        return None
    return target
