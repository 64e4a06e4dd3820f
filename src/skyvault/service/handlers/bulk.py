"""Bulk download: ``/bulk/{schema}/{table}/…`` serves each visible table's HATS tree.

A thin edge over :mod:`skyvault.bulk`: the caller's visible tables (``service/security``)
decide what exists; :func:`skyvault.bulk.resolve` turns the rest of the path into a file,
a directory (listed as HTML, or JSON with ``Accept: application/json`` or
``?format=json``) or a manifest document.  Everything that is not served — a hidden or
missing table, a refused path (``..``, hidden names, links), a missing file — is the same
404 with the same body.

Files go out through Starlette's :class:`~starlette.responses.FileResponse`, which does
``Range`` (one range → 206, several → ``multipart/byteranges``, unsatisfiable → 416) and
``If-Range``; this module adds the strong ``ETag`` (the file's sha256 from the manifest
stored at ingest, or version + size + mtime for older tables), ``Repr-Digest`` (RFC 9530)
when the sha256 is known, ``If-None-Match``/``If-Modified-Since`` → 304, and ignores a
``Range`` it cannot parse (RFC 9110: the whole file, 200) instead of refusing it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Sequence
from email.utils import formatdate, parsedate_to_datetime
from html import escape
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse
from starlette.types import Receive, Scope, Send

from skyvault.bulk import Entry, Target, list_directory, manifest_for, resolve, stored_manifest
from skyvault.catalog.metadata import TableMeta
from skyvault.errors import CatalogNotFound, UsageError
from skyvault.service.context import ServiceContext, get_context
from skyvault.service.security import Caller, CallerDep

__all__ = ["router"]

router = APIRouter()

Context = Annotated[ServiceContext, Depends(get_context)]

_MEDIA_TYPES = {
    ".parquet": "application/vnd.apache.parquet",
    ".properties": "text/plain; charset=utf-8",
    ".csv": "text/csv; charset=utf-8",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
    ".sha256": "text/plain; charset=utf-8",
    ".fits": "application/fits",
}
_BARE_NAMES = {"properties": "text/plain; charset=utf-8"}
_RANGE = re.compile(r"^\s*bytes\s*=\s*((\d+-\d*|-\d+)\s*(,\s*(\d+-\d*|-\d+)\s*)*)$")


def _missing() -> CatalogNotFound:
    """The one answer for everything not served (same status, same body)."""
    return CatalogNotFound(
        "no such file or directory",
        hint="see /bulk/ for the tables you may read, and each directory's listing for its files",
    )


def _media_type(name: str) -> str:
    if name in _BARE_NAMES:
        return _BARE_NAMES[name]
    suffix = Path(name).suffix.lower()
    return _MEDIA_TYPES.get(suffix, "application/octet-stream")


def _range_ok(value: str) -> bool:
    """Whether a ``Range`` header is a byte-range set Starlette can serve (else: ignored)."""
    match = _RANGE.match(value)
    if match is None:
        return False
    for spec in match.group(1).split(","):
        first, _, last = spec.strip().partition("-")
        if first and last and int(first) > int(last):
            return False
    return True


class _File(FileResponse):
    """A :class:`FileResponse` that serves the whole file when ``Range`` is malformed.

    Chunks of 1 MiB rather than Starlette's 64 KiB: fewer trips through the event loop
    per byte, for large partition files.
    """

    chunk_size = 1 << 20

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = scope.get("headers", [])
        ranges = [v.decode("latin-1") for k, v in headers if k == b"range"]
        if ranges and (len(ranges) > 1 or not _range_ok(ranges[0])):
            kept = [(k, v) for k, v in headers if k not in (b"range", b"if-range")]
            scope = {**scope, "headers": kept}
        await super().__call__(scope, receive, send)


def _etag_matches(header: str, etag: str) -> bool:
    """``If-None-Match`` comparison (weak: ``W/`` prefixes ignored; ``*`` matches)."""
    for item in header.split(","):
        candidate = item.strip()
        if candidate == "*" or candidate.removeprefix("W/") == etag:
            return True
    return False


def _not_modified(request: Request, etag: str, mtime: float) -> bool:
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        return _etag_matches(if_none_match, etag)
    since = request.headers.get("if-modified-since")
    if since is not None:
        try:
            return int(mtime) <= parsedate_to_datetime(since).timestamp()
        except (TypeError, ValueError):
            return False
    return False


def _digest_header(sha256_hex: str) -> str:
    return f"sha-256=:{base64.b64encode(bytes.fromhex(sha256_hex)).decode()}:"


def _file_response(request: Request, root: Path, target: Target) -> Response:
    assert target.stat is not None
    st = target.stat
    manifest = stored_manifest(root)
    entry = manifest.entry(target.relative) if manifest is not None else None
    headers = {"Last-Modified": formatdate(st.st_mtime, usegmt=True)}
    if entry is not None and entry.bytes == st.st_size:
        etag = f'"{entry.sha256}"'
        headers["Repr-Digest"] = _digest_header(entry.sha256)
    else:
        stamp = f"{root.name}/{target.relative}/{st.st_size}/{st.st_mtime_ns}"
        etag = f'"{hashlib.sha256(stamp.encode()).hexdigest()[:40]}"'
    headers["ETag"] = etag
    if _not_modified(request, etag, st.st_mtime):
        return Response(status_code=304, headers={**headers, "Accept-Ranges": "bytes"})
    return _File(
        target.path,
        headers=headers,
        media_type=_media_type(target.path.name),
        stat_result=st,
    )


def _document_response(request: Request, body: bytes, name: str, mtime: float) -> Response:
    digest = hashlib.sha256(body).hexdigest()
    headers = {
        "ETag": f'"{digest}"',
        "Repr-Digest": _digest_header(digest),
        "Last-Modified": formatdate(mtime, usegmt=True),
        "Accept-Ranges": "none",
    }
    if _not_modified(request, headers["ETag"], mtime):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=_media_type(name), headers=headers)


def _wants_json(request: Request) -> bool:
    fmt = request.query_params.get("format")
    if fmt is not None:
        if fmt.lower() not in ("json", "html"):
            raise UsageError(f"format={fmt!r} is not understood", hint="use format=json or html")
        return fmt.lower() == "json"
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def _listing(
    request: Request, entries: Sequence[Entry], extra: dict[str, object] | None = None
) -> Response:
    path = request.url.path
    base = path if path.endswith("/") else path + "/"
    rows = []
    for e in entries:
        href = quote(base + e.name) + ("/" if e.is_dir else "")
        rows.append(
            {
                "name": e.name + ("/" if e.is_dir else ""),
                "type": "directory" if e.is_dir else "file",
                "size": e.size,
                "last_modified": formatdate(e.mtime, usegmt=True) if e.mtime else None,
                "url": href,
            }
        )
    if _wants_json(request):
        document = {"path": base, **(extra or {}), "entries": rows}
        return Response(json.dumps(document, indent=1) + "\n", media_type="application/json")
    title = escape(f"Index of {base}")
    lines = [
        "<!DOCTYPE html>",
        f'<html><head><meta charset="utf-8"><title>{title}</title></head><body>',
        f"<h1>{title}</h1>",
        "<table><tr><th>Name</th><th>Size</th><th>Last modified</th></tr>",
    ]
    if base.rstrip("/") != "/bulk":
        parent = base.rstrip("/").rsplit("/", 1)[0] + "/"
        link = f'<a href="{escape(quote(parent))}">../</a>'
        lines.append(f"<tr><td>{link}</td><td></td><td></td></tr>")
    for row in rows:
        size = "" if row["size"] is None else str(row["size"])
        modified = row["last_modified"] or ""
        lines.append(
            f'<tr><td><a href="{escape(str(row["url"]))}">{escape(str(row["name"]))}</a></td>'
            f"<td>{size}</td><td>{escape(str(modified))}</td></tr>"
        )
    lines.append("</table></body></html>\n")
    return HTMLResponse("\n".join(lines))


def _tables_by_schema(caller: Caller) -> dict[str, list[TableMeta]]:
    found: dict[str, list[TableMeta]] = {}
    for meta in caller.tables:
        found.setdefault(meta.schema, []).append(meta)
    return found


def _serve_table(request: Request, context: ServiceContext, meta: TableMeta, rest: str) -> Response:
    """Runs in a worker thread: the file system is read here."""
    try:
        root = context.archive.registry.get(meta.schema, meta.name).root
    except CatalogNotFound:
        raise _missing() from None
    target = resolve(root, rest)
    if target is None:
        raise _missing()
    if target.kind == "file":
        return _file_response(request, root, target)
    manifest = manifest_for(root)
    if target.kind == "manifest":
        body = manifest.render(target.name, meta.qualified_name, target.relative)
        return _document_response(
            request, body, target.name, manifest.last_modified(target.relative)
        )
    entries = list_directory(target, manifest, meta.qualified_name)
    extra: dict[str, object] = {"table": meta.qualified_name, "version": manifest.version}
    return _listing(request, entries, extra)


@router.api_route("", methods=["GET", "HEAD"], include_in_schema=False)
async def bulk_root(request: Request) -> Response:
    """``/bulk`` → ``/bulk/``."""
    return RedirectResponse(request.url.path + "/", status_code=308)


@router.api_route(
    "/{rest:path}", methods=["GET", "HEAD"], summary="Bulk download: tables as HATS file trees"
)
async def bulk(rest: str, request: Request, context: Context, caller: CallerDep) -> Response:
    """``/bulk/`` lists the schemas, ``/bulk/{schema}/`` their tables, and
    ``/bulk/{schema}/{table}/…`` the table's HATS files, listings and manifests."""
    with context.auth.audit.request(caller.identity, request.url.path):
        schemas = _tables_by_schema(caller)
        parts = rest.split("/", 2)
        if rest == "":
            entries = [Entry(name, True, None, 0.0) for name in sorted(schemas)]
            return _listing(request, entries)
        if len(parts) == 1 or (len(parts) == 2 and parts[1] == ""):
            tables = schemas.get(parts[0])
            if not tables:
                raise _missing()
            entries = [Entry(m.name, True, None, 0.0) for m in sorted(tables, key=lambda m: m.name)]
            return _listing(request, entries, {"schema": parts[0]})
        schema, table = parts[0], parts[1]
        sub = parts[2] if len(parts) == 3 else ""
        meta = next((m for m in schemas.get(schema, ()) if m.name == table), None)
        if meta is None:
            raise _missing()
        return await run_in_threadpool(_serve_table, request, context, meta, sub)
