"""DALI request parameters: names case-insensitive, values exact, single-valued ones once.

:func:`read_form` reads a request's query string and form body (with uploads, under a
size cap); :func:`collect_params` folds the query-string and form pairs of a request into a mapping
from upper-cased names to every value given; :func:`tap_query_params` validates the TAP
query parameters into a :class:`TapQueryParams` that sync and async share.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote_plus

from fastapi import Request
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message, Receive

from skyvault.errors import LimitExceeded, UsageError
from skyvault.formats.output import OutputFormat, find_output_format
from skyvault.formats.votable import ServiceDescriptor
from skyvault.service.uploads import InlineContent, parse_upload_param

__all__ = [
    "LANGUAGES",
    "Params",
    "TapQueryParams",
    "collect_params",
    "read_form",
    "tap_query_params",
]

#: LANG values accepted for ADQL (TAP 1.1: ``ADQL``; versioned forms as clients send them).
LANGUAGES = ("ADQL", "ADQL-2.0", "ADQL-2.1")

#: Parameters DALI and TAP define as single-valued.
SINGLE_VALUED = ("REQUEST", "LANG", "QUERY", "MAXREC", "RESPONSEFORMAT", "FORMAT", "RUNID")

Params = Mapping[str, list[str]]


def collect_params(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Every value of every parameter, keyed by the upper-cased name, in request order."""
    out: dict[str, list[str]] = {}
    for name, value in pairs:
        out.setdefault(name.upper(), []).append(value)
    return out


def single(params: Params, name: str) -> str | None:
    """The value of single-valued parameter ``name``; an error when given more than once."""
    values = params.get(name, [])
    if len(values) > 1:
        raise UsageError(
            f"parameter {name} was given {len(values)} times; it takes one value",
            hint=f"send {name} once",
        )
    return values[0] if values else None


@dataclass(frozen=True)
class TapQueryParams:
    """A validated TAP query: what sync and async jobs run.

    Attributes
    ----------
    query
        The ADQL text.
    lang
        The LANG value as given.
    maxrec
        Rows to return at most (the service limit applied).
    output
        The result format.
    maxrec_requested
        MAXREC as the client gave it (None when absent).
    """

    query: str
    lang: str
    maxrec: int
    output: OutputFormat
    maxrec_requested: int | None = None
    services: tuple[ServiceDescriptor, ...] = ()
    """Service descriptors the VOTable result carries besides the DataLink ones (SIA's
    self-description)."""
    standard_id: str = "ivo://ivoa.net/std/TAP"
    """The standard the result answers (its ``standardID`` INFO): TAP, or SIA's query."""


def _maxrec(value: str | None, default: int, limit: int) -> tuple[int, int | None]:
    if value is None or not value.strip():
        return min(default, limit), None
    try:
        requested = int(value.strip())
    except ValueError:
        raise UsageError(
            f"MAXREC={value!r} is not a whole number",
            hint="give MAXREC as a non-negative integer (0 returns the metadata only)",
        ) from None
    if requested < 0:
        raise UsageError(
            f"MAXREC={requested} is negative",
            hint="give MAXREC as a non-negative integer (0 returns the metadata only)",
        )
    return min(requested, limit), requested


def tap_query_params(params: Params, *, maxrec_default: int, maxrec_limit: int) -> TapQueryParams:
    """Validate the TAP query parameters of a request.

    Raises
    ------
    UsageError
        A missing or repeated parameter, an unsupported REQUEST or LANG, a bad MAXREC or an
        unknown RESPONSEFORMAT; the message names the parameter and what to send instead.
    """
    for name in SINGLE_VALUED:
        single(params, name)
    request = single(params, "REQUEST")
    if request is not None and request != "doQuery":
        raise UsageError(
            f"REQUEST={request!r} is not supported", hint="use REQUEST=doQuery or leave it out"
        )
    lang = single(params, "LANG")
    if lang is None:
        raise UsageError("the LANG parameter is missing", hint="send LANG=ADQL")
    if lang not in LANGUAGES:
        raise UsageError(
            f"LANG={lang!r} is not a query language of this service",
            hint="send LANG=ADQL; ADQL-2.0 and ADQL-2.1 are accepted too",
        )
    query = single(params, "QUERY")
    if query is None or not query.strip():
        raise UsageError("the QUERY parameter is missing or empty", hint="send an ADQL query")
    maxrec, requested = _maxrec(single(params, "MAXREC"), maxrec_default, maxrec_limit)
    fmt = single(params, "RESPONSEFORMAT")
    if fmt is None:
        fmt = single(params, "FORMAT")
    parse_upload_param(params.get("UPLOAD", []))  # UPLOAD's syntax, checked before any fetch
    return TapQueryParams(query, lang, maxrec, find_output_format(fmt), requested)


#: Starlette's form limits (``Request.form`` defaults): one field, fields and files.
FORM_FIELD_BYTES = 1024 * 1024
FORM_MAX_FIELDS = 1000


async def _form(request: Request) -> FormData:
    """``request``'s form body; a body over the form limits, or not a form, is the
    caller's mistake said in skyvault's words (Starlette says "Part exceeded maximum size
    of 1024KB.")."""
    try:
        return await request.form()
    except StarletteHTTPException as exc:
        if exc.status_code != 400:
            raise
        detail = str(exc.detail).lower()
        if "maximum size" in detail:
            raise UsageError(
                f"a parameter of this request is longer than {FORM_FIELD_BYTES // 1024**2} MB "
                "(the most one form field may hold, a QUERY included)",
                hint="shorten the query: put long lists of values in a table, upload it "
                "(UPLOAD) and join it",
            ) from None
        if "too many" in detail:
            raise UsageError(
                f"the request has more than {FORM_MAX_FIELDS} form fields or files",
                hint="send each parameter once, and at most the uploads the query names",
            ) from None
        raise UsageError(
            "the request body is not a readable form",
            hint="POST the parameters as application/x-www-form-urlencoded or "
            "multipart/form-data (what curl -d / -F, pyvo and TOPCAT send)",
        ) from None


# --- request bodies with uploads (TAP_UPLOAD) ------------------------------------------------

#: Room in a request body beyond the upload limit: the other form fields, multipart framing.
FORM_OVERHEAD = 1 << 20


URLENCODED = "application/x-www-form-urlencoded"


def split_urlencoded(body: bytes) -> list[tuple[str, str]] | None:
    """The fields of an ``application/x-www-form-urlencoded`` body as Starlette's form
    parser reads them (names and values read as Latin-1, then ``unquote_plus``), or None
    when the body is one the parser should judge itself: an empty or ``=``-less field
    (``a&b``, ``&&``), more than :data:`FORM_MAX_FIELDS` fields, or more bytes than one
    field may hold."""
    if not body or len(body) > FORM_FIELD_BYTES:
        return None
    fields = body.split(b"&")
    if len(fields) > FORM_MAX_FIELDS:
        return None
    pairs = []
    for field in fields:
        name, equals, value = field.partition(b"=")
        if not equals:
            return None
        pairs.append((unquote_plus(name.decode("latin-1")), unquote_plus(value.decode("latin-1"))))
    return pairs


def _capped_receive(request: Request, limit: int) -> Receive:
    """``request``'s ASGI receive, failing with a 413 once the body passes ``limit`` bytes."""
    received = 0

    async def receive() -> Message:
        nonlocal received
        message = await request.receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise _body_too_large(f"more than {received} bytes", limit)
        return message

    return receive


def _body_too_large(size: str, limit: int) -> LimitExceeded:
    return LimitExceeded(
        f"the request body is {size}; uploads may hold {limit - FORM_OVERHEAD} bytes "
        f"(max_upload_bytes) plus {FORM_OVERHEAD} bytes for the other parameters",
        hint="upload fewer rows or columns (Parquet is the most compact format)",
    )


async def read_form(
    request: Request, max_upload_bytes: int
) -> tuple[list[tuple[str, str]], dict[str, InlineContent], FormData | None]:
    """Parameter pairs, the multipart file parts by name, and the form (to close after use).

    The body is read with a cap of ``max_upload_bytes`` plus :data:`FORM_OVERHEAD`: a
    declared Content-Length over it is refused at once, a chunked body once it passes it.
    """
    pairs = list(request.query_params.multi_items())
    if request.method != "POST":
        return pairs, {}, None
    limit = max_upload_bytes + FORM_OVERHEAD
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _body_too_large(f"{int(declared)} bytes", limit)
    capped = Request(request.scope, _capped_receive(request, limit))
    if request.headers.get("content-type") == URLENCODED:
        # The common TAP request (pyvo, TOPCAT, curl -d): read it in one piece and split it
        # here; Starlette's form parser (a callback per field piece) is a measurable part of
        # a cone's time.  Bodies it could judge differently go to it, already read.
        fields = split_urlencoded(await capped.body())
        if fields is not None:
            pairs.extend(fields)
            return pairs, {}, None
    form = await _form(capped)
    files: dict[str, InlineContent] = {}
    for name, value in form.multi_items():
        if isinstance(value, str):
            pairs.append((name, value))
        elif isinstance(value, UploadFile):
            files.setdefault(name, value.file)
    return pairs, files, form
