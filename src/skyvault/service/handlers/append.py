"""Rapid ingest over HTTP: append a batch of rows to a table, and its snapshot status.

* ``POST {base}/append/{schema}.{table}?batch_id=ID`` — the body is the batch: a Parquet
  file, a VOTable or a CSV file with a header line (told by content, as TAP uploads are),
  sent as the request body (``curl --data-binary @visit.parquet``).  ``batch_id`` (or the
  ``X-Batch-Id`` header) names the batch: re-sending a committed id changes nothing and
  answers ``"status": "already committed"``, so a producer may retry after any failure.
  The rows are committed atomically by :func:`skyvault.catalog.append.append`: visible to
  every query that starts after the response, all of them or none.
* ``GET {base}/append/{schema}.{table}`` — the table's snapshot as JSON: snapshot id, last
  commit time, rows and batches appended since the last compaction.

Who may: appending needs credentials (anonymous callers get 401) and a **write grant** to
one of the caller's groups (``skyvault grant SCHEMA.TABLE --group G --write``).  A table the
caller may not read is absent (404, the same answer as a table that does not exist); one
they may read but not write is 403.  The status needs read access only.

A batch that does not fit the table (columns missing or extra, values that do not convert
to the stored types, positions out of range, not a table at all) is a 400 that says what to
change; a body over ``append_max_bytes`` or with more than ``append_max_rows`` rows is a
413.  Nothing is appended in either case.  Errors are DALI VOTable documents.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from skyvault.auth import Identity
from skyvault.catalog.append import Snapshot, append, status
from skyvault.catalog.metadata import TableMeta
from skyvault.errors import (
    AccessDenied,
    AuthenticationRequired,
    CatalogNotFound,
    LimitExceeded,
    UsageError,
)
from skyvault.service.context import ServiceContext, get_context
from skyvault.service.handlers import GetHeadRouter
from skyvault.service.security import IdentityDep
from skyvault.service.uploads import UploadRef, read_upload

__all__ = ["router"]

router = GetHeadRouter()

Context = Annotated[ServiceContext, Depends(get_context)]

_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class _BatchRef(UploadRef):
    """The request body, named in errors as the batch (not as a TAP upload)."""

    def label(self) -> str:
        return f"the batch {self.name!r}"


def _no_table(target: str) -> CatalogNotFound:
    """The one answer for a table that does not exist or that the caller may not see."""
    return CatalogNotFound(
        f"no table {target}",
        hint="names are SCHEMA.TABLE as stored (case-sensitive); /tap/tables lists the "
        "tables you may read",
    )


def _visible_table(context: ServiceContext, identity: Identity, target: str) -> TableMeta:
    """The stored table ``target`` if ``identity`` may read it, else the 404 of absence."""
    schema, dot, table = target.partition(".")
    if not dot:
        raise _no_table(target)
    for meta in context.archive.tables():
        if (meta.schema, meta.name) == (schema, table):
            if context.auth.access.can_read(identity, schema, table):
                return meta
            break
    raise _no_table(target)


def _status_json(target: str, snap: Snapshot) -> dict[str, Any]:
    return {
        "table": target,
        "snapshot": snap.snapshot,
        "committed": snap.committed,
        "base": snap.base,
        "compacted_snapshot": snap.folded,
        "pending_batches": snap.snapshot - snap.folded,
        "pending_rows": snap.delta_rows,
        "pending_files": len(snap.files),
    }


def _batch_id(request: Request) -> str:
    """The batch id: the ``batch_id`` query parameter or the ``X-Batch-Id`` header."""
    given = [*request.query_params.getlist("batch_id"), *request.headers.getlist("x-batch-id")]
    if not given:
        raise UsageError(
            "the batch has no id",
            hint="name it with ?batch_id=ID (e.g. the visit number) or an X-Batch-Id header; "
            "re-sending an id already committed is a no-op",
        )
    ids = {value.strip() for value in given}
    if len(ids) > 1:
        raise UsageError("give the batch one id (batch_id and X-Batch-Id name different ones)")
    batch_id = ids.pop()
    if not batch_id or len(batch_id) > 256:
        raise UsageError("a batch id must be 1 to 256 characters long")
    return batch_id


async def _spool_body(request: Request, dest: Path, limit: int) -> int:
    """Write the request body to ``dest``, refusing more than ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_big(int(declared), limit)
    size = 0
    with dest.open("wb") as fh:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_big(size, limit)
            fh.write(chunk)
    return size


def _too_big(size: int, limit: int) -> LimitExceeded:
    seen = f"{size} bytes" if size > limit + 1 else f"more than {limit} bytes"
    return LimitExceeded(
        f"the batch has {seen}; the limit is {limit} bytes per batch",
        hint="send the rows in several batches, each with its own id",
    )


@router.post("/append/{target}")
async def append_batch(
    target: str, request: Request, identity: IdentityDep, context: Context
) -> JSONResponse:
    """Append the body's rows to ``target`` as one batch (see the module docstring)."""
    if identity.is_anonymous:
        raise AuthenticationRequired(
            "appending needs credentials",
            hint="send a token of a user whose group may write the table",
        )
    meta = await run_in_threadpool(_visible_table, context, identity, target)
    if not context.auth.access.can_write(identity, meta.schema, meta.name):
        raise AccessDenied(
            f"{identity.user} may read {target} but not append to it",
            hint=f"ask the operator for a write grant: skyvault grant {target} --group GROUP "
            "--write",
        )
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise UsageError(
            "the batch must be the request body, not a form field",
            hint="send the file itself: curl --data-binary @batch.parquet",
        )
    batch_id = _batch_id(request)
    settings = context.settings
    with tempfile.TemporaryDirectory(prefix="skyvault-append-") as tmp:
        body = Path(tmp) / "batch"
        await _spool_body(request, body, settings.append_max_bytes)
        ref = _BatchRef(batch_id, "body")

        def run() -> tuple[Any, Snapshot]:
            try:
                _, rows = read_upload(
                    ref, body, settings.append_max_rows, max_columns=settings.max_upload_columns
                )
            except LimitExceeded as exc:  # said of a batch, not of a query's upload
                raise LimitExceeded(
                    exc.message.replace("per uploaded table", "per batch"),
                    hint="send the rows in several batches, each with its own id",
                ) from None
            result = append(settings.data_dir, target, rows, batch_id)
            return result, status(settings.data_dir, target)

        result, snap = await run_in_threadpool(run)
    compactor = getattr(request.app.state, "compactor", None)
    if result.written and compactor is not None:
        compactor.poke()  # it compacts when the table passes the thresholds
    answer = _status_json(target, snap)
    answer.update(
        batch_id=batch_id,
        status="committed" if result.written else "already committed",
        rows=result.rows,
    )
    return JSONResponse(answer)


@router.get("/append/{target}")
async def append_status(target: str, identity: IdentityDep, context: Context) -> JSONResponse:
    """The snapshot of ``target``: id, last commit time, what awaits compaction."""
    meta = await run_in_threadpool(_visible_table, context, identity, target)
    if meta.kind != "hats":
        raise UsageError(f"{target} has no positions: only HEALPix-partitioned tables take appends")
    snap = await run_in_threadpool(status, context.settings.data_dir, target)
    return JSONResponse(_status_json(target, snap))
