"""VOSI handlers: ``/availability``, ``/capabilities``, ``/tables`` and ``/tables/{name}``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from skyvault.adql import language_features
from skyvault.catalog.metadata import TableMeta
from skyvault.catalog.tap_schema import (
    foreign_keys,
    published_table,
    published_tables,
    tap_schema_metadata,
)
from skyvault.errors import CatalogNotFound, UsageError
from skyvault.formats.output import OUTPUT_FORMATS
from skyvault.images.obstap import OBSCORE_DATA_MODEL
from skyvault.service.context import ServiceContext, get_context
from skyvault.service.handlers import GetHeadRouter
from skyvault.service.security import Caller, CallerDep, current_identity
from skyvault.service.services.vosi import (
    availability_document,
    capabilities_document,
    table_document,
    tableset_document,
)
from skyvault.workspace.permissions import permission_headers

__all__ = ["router"]

router = GetHeadRouter()

Context = Annotated[ServiceContext, Depends(get_context)]
_XML = "text/xml"


@router.get("/availability", summary="VOSI availability")
async def availability(context: Context) -> Response:
    """Whether the service can answer queries now (the data root is readable).

    Open to every caller, with or without credentials (and credentials are not looked at):
    it tells only whether the service is up, and monitors probe it without tokens.
    """
    ok = context.settings.data_dir.is_dir()
    note = "service is accepting queries" if ok else "the data root is not readable"
    return Response(availability_document(ok, note), media_type=_XML)


@router.get("/capabilities", summary="VOSI capabilities", dependencies=[Depends(current_identity)])
async def capabilities(request: Request, context: Context) -> Response:
    """The service's capabilities with the TAPRegExt description of its TAP endpoint.

    Needs credentials when anonymous access is off: the 401 and its challenges are how
    pyvo and TOPCAT discover that (and how) they must log in.
    """
    models = [(OBSCORE_DATA_MODEL, "ObsCore-1.1")] if context.has_images() else []
    document = capabilities_document(
        context.base_url(request),
        context.settings,
        OUTPUT_FORMATS,
        language_features(),
        data_models=models,
    )
    return Response(document, media_type=_XML)


def _published(context: ServiceContext, caller: Caller) -> list[TableMeta]:
    tables = context.queryable_tables(caller.tables)
    counts = {m.name: m.nrows for m, _ in context.queries.tap_schema_tables(tables)}
    own = [published_table(m) for m in tap_schema_metadata(counts)]
    return [*published_tables(tables), *own]


def _tableset(context: ServiceContext, caller: Caller, columns: bool) -> tuple[str, int]:
    published = _published(context, caller)
    keys = foreign_keys(context.tap_schema.keys_for(caller.tables))
    return tableset_document(published, columns=columns, keys=keys), len(published)


@router.get("/tables", summary="VOSI tables")
async def tables(
    request: Request,
    context: Context,
    caller: CallerDep,
    detail: Annotated[str | None, Query(alias="detail")] = None,
) -> Response:
    """The tableset of the tables the caller may read; ``detail=min`` leaves columns out."""
    with context.auth.audit.request(caller.identity, request.url.path) as event:
        if detail not in (None, "min", "max"):
            raise UsageError(f"detail={detail!r} is not understood", hint="use detail=min or max")
        columns = detail != "min"
        found = context.tablesets.get(caller.tables, columns)
        if found is None:  # built in a worker thread: tens of ms for a thousand columns
            found = await run_in_threadpool(_tableset, context, caller, columns)
            context.tablesets.put(caller.tables, columns, found)
        document, event.rows = found
    return Response(document, media_type=_XML)


@router.get("/tables/{name}", summary="VOSI table")
async def table(name: str, request: Request, context: Context, caller: CallerDep) -> Response:
    """One table's description, ``name`` being ``schema.table`` as in TAP_SCHEMA.

    A table the caller may not read is "no table", exactly as one that does not exist.
    """
    with context.auth.audit.request(caller.identity, request.url.path):
        published = await run_in_threadpool(_published, context, caller)
        for meta in published:
            if meta.qualified_name == name:
                keys = foreign_keys(context.tap_schema.keys_for(caller.tables))
                # A user table's grants as youcat's x-vosi-* headers (workspace.py).
                grants = await run_in_threadpool(
                    context.workspace.grants_of, meta.schema, meta.name
                )
                headers = permission_headers(grants) if grants is not None else None
                return Response(table_document(meta, keys), media_type=_XML, headers=headers)
        lowered = [m.qualified_name for m in published if m.qualified_name.lower() == name.lower()]
        hint = f"did you mean {lowered[0]}?" if lowered else "see /tables for the published tables"
        raise CatalogNotFound(f"no table {name}", hint=hint)
