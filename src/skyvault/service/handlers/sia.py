"""SIA 2.0 handlers, under the TAP base: ``{base}/sia/query``, ``/sia/capabilities``,
``/sia/availability``.

``GET|POST {base}/sia/query`` checks the SIA parameters (:mod:`skyvault.images.sia`), writes
their ADQL over ``ivoa.ObsCore`` and runs it as a TAP ``/sync`` query would run
(:func:`skyvault.service.handlers.tap.run_sync`): the caller's visible tables only, so a
hidden collection's images are absent exactly as a missing collection's are; its result is
the VOTable (or RESPONSEFORMAT) of TAP, with MAXREC's overflow flagged the same way.

The capabilities document of ``{base}/sia`` declares ``ivo://ivoa.net/std/SIA#query-2.0``
with its ``{query}`` a sibling, as SIA 2.0 §2 asks, so ``pyvo.dal.SIA2Service(f"{base}/sia")``
finds it; the TAP capabilities declare it too (``SIA2Service(base)`` works as well).
"""

from __future__ import annotations

import time

from fastapi import Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from skyvault.errors import CatalogNotFound, SkyvaultError
from skyvault.images import sia
from skyvault.service.context import get_context
from skyvault.service.handlers import GetHeadRouter
from skyvault.service.handlers.tap import run_sync
from skyvault.service.handlers.vosi import availability
from skyvault.service.params import collect_params, read_form
from skyvault.service.security import IdentityDep, current_identity
from skyvault.service.services.sia import sia_capabilities_document, sia_tap_params
from skyvault.service.services.sync import audit_sync

__all__ = ["router"]

router = GetHeadRouter()


@router.api_route("/sia/query", methods=["GET", "POST"], summary="SIA 2.0 query")
async def sia_query(request: Request, identity: IdentityDep) -> Response:
    """Images whose ObsCore records meet every constraint (SIA 2.0 ``{query}``).

    Each parameter may repeat (its values OR-ed; different parameters AND-ed); errors are
    DALI error documents whose message starts ``UsageFault:`` and names the parameter.
    """
    context = get_context(request)
    base = context.base_url(request)  # noted: the DataLink URLs of ObsCore rows are under it
    started = time.perf_counter()
    try:
        pairs, _files, form = await read_form(request, 0)
        try:
            params = collect_params(pairs)
        finally:
            if form is not None:
                await form.close()
        tap = sia_tap_params(params, context.settings, sia.OBSCORE_TABLE, f"{base}/sia/query")
        if not await run_in_threadpool(context.has_images):
            # ivoa.ObsCore exists for everyone once one collection does (empty for those who
            # may read none), so this says nothing of any caller's access.
            raise CatalogNotFound(
                "this service publishes no image collections: SIA has nothing to search",
                hint="query its catalogues with TAP at the service's base URL",
            )
    except SkyvaultError as exc:
        audit_sync(context, identity, request.url.path, None, None, started, exc.code)
        raise
    return await run_sync(request, identity, tap, [], started)


@router.get(
    "/sia/capabilities",
    summary="SIA VOSI capabilities",
    dependencies=[Depends(current_identity)],
)
async def sia_capabilities(request: Request) -> Response:
    """The SIA service's VOSI capabilities (credentials needed when anonymous access is off,
    as for TAP's: the 401 tells clients how to log in)."""
    base = get_context(request).base_url(request)
    return Response(sia_capabilities_document(f"{base}/sia"), media_type="text/xml")


router.add_api_route("/sia/availability", availability, methods=["GET"], summary="SIA availability")
