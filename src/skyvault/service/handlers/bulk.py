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

import asyncio
import base64
import hashlib
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse
from starlette.types import Message, Receive, Scope, Send

from skyvault.auth import Identity
from skyvault.bulk import Entry, Target, list_directory, manifest_for, resolve, stored_manifest
from skyvault.bulk.scripts import ScriptFile, aria2_input, curl_script, wget_script
from skyvault.bulk.signing import (
    DEFAULT_LIFETIME,
    MAX_LIFETIME,
    SignedPath,
    covers,
    load_key,
    sign,
    verify,
)
from skyvault.catalog.metadata import TableMeta
from skyvault.config import Settings
from skyvault.errors import (
    AccessDenied,
    CatalogNotFound,
    JobNotFound,
    JobResourceMissing,
    UsageError,
    UserLimitExceeded,
)
from skyvault.images.datalink import DATALINK_TYPE, Link, links_document
from skyvault.service.context import ServiceContext, get_context
from skyvault.service.security import Caller, CallerDep, current_caller, current_identity
from skyvault.service.services import pages
from skyvault.service.services.bulkjobs import FILES_DIR, job_files, media_type
from skyvault.service.uploads import InlineContent
from skyvault.service.uws.handlers import job_router
from skyvault.service.uws.models import ExecutionPhase, Job

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
    ".vot": "application/x-votable+xml",
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


class _Transfers:
    """File transfers running now, per caller, in this process (one event loop: no lock)."""

    def __init__(self) -> None:
        self.running: dict[str, int] = {}

    def acquire(self, key: str, limit: int) -> bool:
        count = self.running.get(key, 0)
        if limit and count >= limit:
            return False
        self.running[key] = count + 1
        return True

    def release(self, key: str) -> None:
        count = self.running.get(key, 0) - 1
        if count > 0:
            self.running[key] = count
        else:
            self.running.pop(key, None)


class _TokenBucket:
    """A caller's bandwidth: ``rate`` bytes per second, bursts of a quarter second.

    Every chunk of every transfer of the caller takes its bytes from the bucket; a chunk
    the bucket cannot pay for leaves it in debt and waits until the debt is paid, so the
    caller's transfers together get ``rate`` however many run (one event loop: no lock).
    """

    def __init__(self, rate: int) -> None:
        self.rate = float(rate)
        self.capacity = self.rate / 4
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    async def take(self, n: int) -> None:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= n
        if self.tokens < 0:
            await asyncio.sleep(-self.tokens / self.rate)


@dataclass(frozen=True)
class _Limit:
    transfers: _Transfers
    key: str
    most: int
    retry_after: int
    bucket: _TokenBucket | None = None


def _limit(request: Request, identity: Identity) -> _Limit:
    state = request.app.state
    transfers: _Transfers | None = getattr(state, "bulk_transfers", None)
    if transfers is None:
        transfers = state.bulk_transfers = _Transfers()
    buckets: dict[str, _TokenBucket] | None = getattr(state, "bulk_buckets", None)
    if buckets is None:
        buckets = state.bulk_buckets = {}
    settings = get_context(request).settings
    key = f"user:{identity.user}" if identity.user is not None else f"anon:{identity.client}"
    bucket = None
    if settings.bulk_bandwidth > 0:
        bucket = buckets.get(key)
        if bucket is None or bucket.rate != settings.bulk_bandwidth:
            bucket = buckets[key] = _TokenBucket(settings.bulk_bandwidth)
    return _Limit(transfers, key, settings.bulk_max_downloads, settings.retry_after, bucket)


class _File(FileResponse):
    """A :class:`FileResponse` that serves the whole file when ``Range`` is malformed,
    counts against its caller's running transfers while it sends, and sends no faster than
    the caller's bandwidth (``bulk_bandwidth``).

    Chunks of 1 MiB rather than Starlette's 64 KiB: fewer trips through the event loop
    per byte, for large partition files.
    """

    chunk_size = 1 << 20
    limit: _Limit | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = scope.get("headers", [])
        ranges = [v.decode("latin-1") for k, v in headers if k == b"range"]
        if ranges and (len(ranges) > 1 or not _range_ok(ranges[0])):
            kept = [(k, v) for k, v in headers if k not in (b"range", b"if-range")]
            scope = {**scope, "headers": kept}
        limit = self.limit
        if limit is None or scope.get("method") == "HEAD":  # HEAD sends no body
            await super().__call__(scope, receive, send)
            return
        if not limit.transfers.acquire(limit.key, limit.most):
            raise UserLimitExceeded(
                f"you have {limit.most} /bulk downloads running, the most at once",
                hint="wait for one to finish (or use fewer parallel connections)",
                retry_after=limit.retry_after,
            )
        bucket = limit.bucket
        if bucket is not None:
            inner = send

            async def throttled(message: Message) -> None:
                if message["type"] == "http.response.body":
                    await bucket.take(len(message.get("body", b"")))
                await inner(message)

            send = throttled
        try:
            await super().__call__(scope, receive, send)
        finally:
            limit.transfers.release(limit.key)


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
    request: Request,
    entries: Sequence[Entry],
    extra: dict[str, object] | None = None,
    signed: SignedPath | None = None,
    rest: str = "",
) -> Response:
    """A directory listing; with a signed request, links it covers carry the signature."""
    path = request.url.path
    base = path if path.endswith("/") else path + "/"
    rest_dir = rest if rest.endswith("/") or not rest else rest + "/"
    rows = []
    for e in entries:
        name = e.name + ("/" if e.is_dir else "")
        href = quote(base + name)
        if signed is not None and covers(signed.path, rest_dir + name):
            href += "?" + signed.query()
        modified = formatdate(e.mtime, usegmt=True) if e.mtime else None
        rows.append(pages.ListingRow(name, href, e.size, modified))
    if _wants_json(request):
        entries_json = [
            {
                "name": r.name,
                "type": "directory" if r.name.endswith("/") else "file",
                "size": r.size,
                "last_modified": r.last_modified,
                "url": r.url,
            }
            for r in rows
        ]
        document = {"path": base, **(extra or {}), "entries": entries_json}
        return Response(json.dumps(document, indent=1) + "\n", media_type="application/json")
    parent = None
    if base.rstrip("/") != "/bulk":
        parent = quote(base.rstrip("/").rsplit("/", 1)[0] + "/")
        parent_rest = rest_dir.rstrip("/").rpartition("/")[0] + "/"
        if signed is not None and covers(signed.path, parent_rest):
            parent += "?" + signed.query()
    return HTMLResponse(pages.listing_page(base, rows, parent))


def _tables_by_schema(caller: Caller) -> dict[str, list[TableMeta]]:
    found: dict[str, list[TableMeta]] = {}
    for meta in caller.tables:
        found.setdefault(meta.schema, []).append(meta)
    return found


def _locate(
    context: ServiceContext, caller: Caller, rest: str
) -> tuple[TableMeta, Path, Target] | None:
    """The table, its version directory and what ``rest`` names in it; None when ``rest``
    is not inside a table the caller may see (or is refused, or missing)."""
    parts = rest.split("/", 2)
    if len(parts) < 2 or parts[1] == "":
        return None
    schema, table = parts[0], parts[1]
    meta = next((m for m in caller.tables if m.schema == schema and m.name == table), None)
    if meta is None:
        return None
    try:
        root = context.archive.registry.get(meta.schema, meta.name).root
    except CatalogNotFound:
        return None
    target = resolve(root, parts[2] if len(parts) == 3 else "")
    return None if target is None else (meta, root, target)


def _named(response: Response, name: str) -> Response:
    """``response`` with the file's name (a signed URL ends in a query string)."""
    response.headers["Content-Disposition"] = f"attachment; filename*=utf-8''{quote(name)}"
    return response


def _serve_table(
    request: Request,
    context: ServiceContext,
    caller: Caller,
    rest: str,
    signed: SignedPath | None,
    limit: _Limit | None = None,
) -> Response:
    """Runs in a worker thread: the file system is read here."""
    found = _locate(context, caller, rest)
    if found is None:
        raise _missing()
    meta, root, target = found
    if target.kind == "file":
        response = _file_response(request, root, target)
        if isinstance(response, _File):
            response.limit = limit
        return _named(response, target.path.name) if signed is not None else response
    manifest = manifest_for(root)
    if target.kind == "manifest":
        body = manifest.render(target.name, meta.qualified_name, target.relative)
        mtime = manifest.last_modified(target.relative)
        response = _document_response(request, body, target.name, mtime)
        return _named(response, target.name) if signed is not None else response
    entries = list_directory(target, manifest, meta.qualified_name)
    extra: dict[str, object] = {"table": meta.qualified_name, "version": manifest.version}
    return _listing(request, entries, extra, signed, rest)


# --- signed URLs ------------------------------------------------------------------------------

_SIGNED_PARAMS = ("signed_path", "user", "expires", "signature")


def _signed_caller(context: ServiceContext, signed: SignedPath) -> Caller:
    """The signer as the caller of a signed request (their access now), or 403."""
    hint = "ask for a new signed URL: POST to the /bulk/ URL with your token"
    if not verify(load_key(context.settings.data_dir), signed):
        raise AccessDenied("the signature of this URL is not valid", hint=hint)
    if signed.expires < time.time():
        when = datetime.fromtimestamp(signed.expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        raise AccessDenied(f"this signed URL expired at {when}", hint=hint)
    storage = context.auth.storage
    if not storage.user_exists(signed.user):
        raise AccessDenied("the signer of this URL is no longer a user", hint=hint)
    identity = Identity(signed.user, storage.groups_of(signed.user))
    required = context.settings.required_group_set()
    if required and required.isdisjoint(identity.groups):
        raise AccessDenied(f"{identity.user} may not use this service", hint=hint)
    return Caller(identity, context.visible_tables(identity))


async def bulk_caller(request: Request) -> tuple[Caller, SignedPath | None]:
    """FastAPI dependency: the caller from the headers, or — for a signed URL — the signer."""
    params = request.query_params
    if "signature" not in params:
        identity = await current_identity(request)
        return await current_caller(request, identity), None
    context = get_context(request)
    values = [params.get(name) for name in _SIGNED_PARAMS]
    try:
        path, user, expires, signature = (v if v is not None else "" for v in values)
        signed = SignedPath(user, path, int(expires), signature)
    except ValueError:
        raise AccessDenied(
            "this signed URL is incomplete or malformed",
            hint="use the URL exactly as it was given",
        ) from None
    if context.auth.settings.mode != "builtin":
        raise UsageError("signed URLs need the built-in identity mode")
    caller = await run_in_threadpool(_signed_caller, context, signed)
    request.state.identity = caller.identity
    return caller, signed


BulkCaller = Annotated[tuple[Caller, SignedPath | None], Depends(bulk_caller)]


def _lifetime(text: str | None) -> int:
    if text is None or text == "":
        return DEFAULT_LIFETIME
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_LIFETIME:
        raise UsageError(
            f"lifetime={text!r} is not a number of seconds from 1 to {MAX_LIFETIME}",
            hint=f"leave it out for {DEFAULT_LIFETIME} s",
        )
    return value


# --- bulk jobs --------------------------------------------------------------------------------
# The UWS resources of the job type, then its files and documents: all before the catch-all
# routes of the table trees (so a schema named "jobs" is not reachable under /bulk/).


def _moc_part(
    params: dict[str, list[str]], files: Mapping[str, InlineContent], settings: Settings
) -> Mapping[str, InlineContent]:
    """A bulk job keeps one multipart file part: its MOC."""
    return {"MOC": files["MOC"]} if "MOC" in files else {}


def _jobs_url(context: ServiceContext, request: Request) -> str:
    return f"{context.site_url(request)}/bulk/jobs"


router.include_router(
    job_router("/jobs", lambda c: c.bulk_jobs, _jobs_url, keep_parts=_moc_part, single_result=False)
)


def _completed(context: ServiceContext, job_id: str, owner: str | None) -> Job:
    """The caller's COMPLETED bulk job ``job_id``: anything else is the one 404."""
    try:
        job = context.bulk_jobs.get(job_id, owner)
    except JobNotFound:
        raise _missing() from None
    if job.phase != ExecutionPhase.COMPLETED:
        raise _missing()
    return job


def _serve_job_file(
    request: Request,
    context: ServiceContext,
    caller: Caller,
    job_id: str,
    rest: str,
    signed: SignedPath | None,
    limit: _Limit,
) -> Response:
    """Runs in a worker thread: a bulk job's file, listing or manifest, as the static tree's."""
    _completed(context, job_id, caller.identity.user)
    found = job_files(context.bulk_jobs.results, job_id)
    target = None if found is None else resolve(found[0], rest)
    if found is None or target is None:
        raise _missing()
    root, manifest = found
    if target.kind == "file":
        response = _file_response(request, root, target)
        if isinstance(response, _File):
            response.limit = limit
        return _named(response, target.path.name) if signed is not None else response
    name = f"bulk job {job_id}"
    if target.kind == "manifest":
        body = manifest.render(target.name, name, target.relative)
        response = _document_response(
            request, body, target.name, manifest.last_modified(target.relative)
        )
        return _named(response, target.name) if signed is not None else response
    entries = list_directory(target, manifest, name)
    return _listing(request, entries, {"job": job_id}, signed, f"jobs/{job_id}/{FILES_DIR}/{rest}")


@router.api_route("/jobs/{job_id}/files", methods=["GET", "HEAD"], include_in_schema=False)
async def bulk_job_files_root(request: Request) -> Response:
    """``…/files`` → ``…/files/`` (the query string, a signature, kept)."""
    query = f"?{request.url.query}" if request.url.query else ""
    return RedirectResponse(request.url.path + "/" + query, status_code=308)


@router.api_route(
    "/jobs/{job_id}/files/{rest:path}", methods=["GET", "HEAD"], summary="A bulk job's files"
)
async def bulk_job_file(
    job_id: str, rest: str, request: Request, context: Context, who: BulkCaller
) -> Response:
    """The files of a completed bulk job, their listings and manifests, with the HTTP of
    the static tree (Range, ETag, 304, Repr-Digest); only for the job's owner (or a URL
    they signed): anyone else gets the same 404 as for a missing file."""
    caller, signed = who
    with context.auth.audit.request(caller.identity, request.url.path):
        if signed is not None and not covers(signed.path, f"jobs/{job_id}/{FILES_DIR}/{rest}"):
            raise AccessDenied(
                "this URL's signature is for another path",
                hint="fetch the job's download script again for fresh URLs",
            )
        limit = _limit(request, caller.identity)
        return await run_in_threadpool(
            _serve_job_file, request, context, caller, job_id, rest, signed, limit
        )


def _file_urls(
    context: ServiceContext, request: Request, job: Job, owner: str | None, lifetime: int
) -> list[tuple[ScriptFile, int, str]]:
    """Each file of ``job``: its script entry (a URL signed for ``lifetime`` s when the
    owner is a user of the built-in identity mode), bytes and the plain URL."""
    found = job_files(context.bulk_jobs.results, job.job_id)
    if found is None:
        raise _missing()
    base = f"{_jobs_url(context, request)}/{job.job_id}/{FILES_DIR}"
    signing = owner is not None and context.auth.settings.mode == "builtin"
    key = load_key(context.settings.data_dir) if signing else b""
    left = int(job.destruction.timestamp() - time.time())
    expires = int(time.time()) + max(1, min(lifetime, left))
    out = []
    for entry in found[1].entries:
        plain = f"{base}/{quote(entry.path)}"
        url = plain
        if signing:
            assert owner is not None
            signed = sign(key, owner, f"jobs/{job.job_id}/{FILES_DIR}/{entry.path}", expires)
            url = f"{plain}?{signed.query()}"
        out.append((ScriptFile(entry.path, url, entry.md5, entry.sha256), entry.bytes, plain))
    return out


@router.api_route(
    "/jobs/{job_id}/results/{name}",
    methods=["GET", "HEAD"],
    summary="A bulk job's scripts and links",
)
async def bulk_job_result(
    job_id: str, name: str, request: Request, context: Context, caller: CallerDep
) -> Response:
    """``links`` (DataLink: a ``#this`` row per file), ``wget`` and ``curl`` (shell scripts
    that fetch, resume and verify every file) and ``aria2`` (an ``aria2c -i`` list).  The
    scripts' URLs are signed for ``lifetime`` seconds (default 3600, at most the job's
    DESTRUCTION and 7 days): they carry no token."""
    owner = caller.identity.user
    with context.auth.audit.request(caller.identity, request.url.path):
        job = await run_in_threadpool(context.bulk_jobs.get, job_id, owner)
        if name not in ("links", "wget", "curl", "aria2"):
            raise JobResourceMissing(
                f"job {job_id} has no result {name!r}",
                hint="its results are listed at its /results",
            )
        if job.phase != ExecutionPhase.COMPLETED:
            raise JobResourceMissing(
                f"job {job_id} has no results: its phase is {job.phase.value}",
                hint=f"wait until it is COMPLETED, e.g. GET /bulk/jobs/{job_id}?WAIT=60",
            )
        lifetime = _lifetime(request.query_params.get("lifetime"))
        files = await run_in_threadpool(_file_urls, context, request, job, owner, lifetime)
        title = f"the files of skyvault bulk job {job_id} ({len(files)} files)"
        if name == "wget":
            body = wget_script([f for f, _, _ in files], title)
            return _script_response(body, f"bulk-{job_id}-wget.sh", "text/x-shellscript")
        if name == "curl":
            body = curl_script([f for f, _, _ in files], title)
            return _script_response(body, f"bulk-{job_id}-curl.sh", "text/x-shellscript")
        if name == "aria2":
            body = aria2_input([f for f, _, _ in files])
            return _script_response(body, f"bulk-{job_id}-aria2.txt", "text/plain")
        job_url = f"{_jobs_url(context, request)}/{job_id}"
        links = [
            Link(job_url, "#this", access_url=plain, description=f.path,
                 content_type=media_type(f.path), content_length=size)
            for f, size, plain in files
        ]  # fmt: skip
        return Response(links_document(links, ""), media_type=DATALINK_TYPE)


def _script_response(body: str, filename: str, media: str) -> Response:
    return Response(
        body,
        media_type=f"{media}; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


# --- routes -----------------------------------------------------------------------------------


@router.api_route("", methods=["GET", "HEAD"], include_in_schema=False)
async def bulk_root(request: Request) -> Response:
    """``/bulk`` → ``/bulk/``."""
    return RedirectResponse(request.url.path + "/", status_code=308)


@router.api_route(
    "/{rest:path}", methods=["GET", "HEAD"], summary="Bulk download: tables as HATS file trees"
)
async def bulk(rest: str, request: Request, context: Context, who: BulkCaller) -> Response:
    """``/bulk/`` lists the schemas, ``/bulk/{schema}/`` their tables, and
    ``/bulk/{schema}/{table}/…`` the table's HATS files, listings and manifests.

    With ``signed_path``, ``user``, ``expires`` and ``signature`` (a signed URL, see
    ``POST``) the request runs as the signer, for the signed path only."""
    caller, signed = who
    with context.auth.audit.request(caller.identity, request.url.path):
        if signed is not None and not covers(signed.path, rest):
            raise AccessDenied(
                "this URL's signature is for another path",
                hint="ask for a signed URL of this path, or of a directory above it",
            )
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
        limit = _limit(request, caller.identity)
        return await run_in_threadpool(_serve_table, request, context, caller, rest, signed, limit)


@router.post("/{rest:path}", summary="A short-lived signed URL for a bulk file or directory")
async def bulk_sign(rest: str, request: Request, context: Context, caller: CallerDep) -> Response:
    """A URL of ``/bulk/{rest}`` that works without credentials until it expires
    (``lifetime`` seconds, default 3600, at most 7 days), for the caller's access.

    For ``wget``/``curl`` without an Authorization header.  A directory's URL covers
    everything beneath it (its listings carry the signature on their links).  Only callers
    with credentials may sign; what they may not see reads as missing (404)."""
    with context.auth.audit.request(caller.identity, request.url.path):
        lifetime_text = request.query_params.get("lifetime")
        if lifetime_text is None and request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            form = await request.form()
            value = form.get("lifetime")
            lifetime_text = value if isinstance(value, str) else None
        lifetime = _lifetime(lifetime_text)
        if caller.identity.user is None:
            raise UsageError(
                "only callers with a token can sign URLs",
                hint="anonymous access needs no signature: use the URL as it is",
            )
        if context.auth.settings.mode != "builtin":
            raise UsageError("signed URLs need the built-in identity mode")
        found = await run_in_threadpool(_locate, context, caller, rest)
        if found is None:
            raise _missing()
        target = found[2]
        path = rest if target.kind != "directory" or rest.endswith("/") else rest + "/"
        key = await run_in_threadpool(load_key, context.settings.data_dir)
        signed = sign(key, caller.identity.user, path, int(time.time()) + lifetime)
        url = f"{context.site_url(request)}/bulk/{quote(path)}?{signed.query()}"
        expires = datetime.fromtimestamp(signed.expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        document = {"url": url, "path": path, "expires": expires}
        return Response(json.dumps(document, indent=1) + "\n", media_type="application/json")
