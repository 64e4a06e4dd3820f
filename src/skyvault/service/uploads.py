"""TAP_UPLOAD: the ``UPLOAD`` parameter, fetching uploaded tables and reading them into Arrow.

A request names its tables with ``UPLOAD=name,URI`` (DALI 1.1 §3.2.5; TAP 1.1 §2.3.8 also
accepts several pairs in one value, ``name1,URI1;name2,URI2``).  The URI is either

* ``param:PART`` — inline: the table is the multipart/form-data part called ``PART``;
* ``http://...`` or ``https://...`` — fetched by the service, with a time limit, a streamed
  size cap, and (unless ``allow_private_upload_urls``) only from public addresses: loopback,
  link-local, private (RFC 1918, fc00::/7), shared and reserved addresses and the service's
  own host are refused, for the first request and every redirect; the connection goes to
  the address that was checked, so a second DNS answer cannot swap it.  Which addresses
  are allowed is an :class:`AddressPolicy` (by default the settings').

The content decides the format: VOTable (any serialisation), Parquet, or CSV with a header
line.  A VOTable is scanned by expat before astropy reads it: FIELDs without a name, with the
same name or more than ``max_upload_columns`` of them, entity declarations and STREAMs that
point elsewhere (``href``: astropy would open them on the service's host) are refused.

Each table becomes ``TAP_UPLOAD.name`` for the one query: a ``(TableMeta, pa.Table)``
pair that :meth:`skyvault.engine.archive.Archive.stream` takes as ``extra``.  Positions are
recognised by their UCDs (``pos.eq.ra;meta.main``/``pos.eq.dec;meta.main``) or the names
``ra``/``dec``, so a ``DISTANCE(...) < r`` join with a catalogue is a cross-match.

:func:`parse_uploads` is the one entry point; sync requests and async jobs both call it.
Every error names the upload, the parameter and, for limits, the limit and the size seen;
never the temporary copy the service reads it from.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urljoin, urlsplit
from xml.parsers import expat
from xml.parsers.expat import XMLParserType

import httpx
import pyarrow as pa
import pyarrow.compute as pc

from skyvault.adql.reserved import is_regular_identifier, is_reserved
from skyvault.catalog.metadata import ColumnMeta, TableMeta, merge_columns
from skyvault.catalog.readers import CsvInput, InputFile, ParquetInput, VOTableInput
from skyvault.config import Settings
from skyvault.errors import (
    AdqlSemanticError,
    CatalogError,
    IngestError,
    LimitExceeded,
    UsageError,
)

__all__ = [
    "UPLOAD_SCHEMA",
    "AddressPolicy",
    "InlineContent",
    "UploadPart",
    "UploadRef",
    "parse_upload_param",
    "parse_uploads",
    "read_upload",
    "referenced_parts",
    "with_upload_hint",
]

log = logging.getLogger(__name__)

#: The schema every uploaded table lives in (TAP 1.1 §2.3.8).
UPLOAD_SCHEMA = "TAP_UPLOAD"

MAX_REDIRECTS = 5
_CHUNK = 1 << 16
_USER_AGENT = "skyvault-tap-upload"

_SPLIT_PAIRS = re.compile(r";(?=\s*[A-Za-z][A-Za-z0-9_]*\s*,)")
_RA_UCD = "pos.eq.ra;meta.main"
_DEC_UCD = "pos.eq.dec;meta.main"


class UploadPart(Protocol):
    """An inline upload: anything with a binary ``read`` (Starlette's ``UploadFile.file``)."""

    def read(self, size: int = -1, /) -> bytes: ...


#: What an inline ``param:PART`` may resolve to: bytes, a file on disk, or a binary stream.
InlineContent = bytes | str | Path | UploadPart


@dataclass(frozen=True)
class UploadRef:
    """One ``name,URI`` pair of the UPLOAD parameter."""

    name: str
    uri: str

    @property
    def scheme(self) -> str:
        return self.uri.split(":", 1)[0].lower() if ":" in self.uri else ""

    @property
    def part(self) -> str | None:
        """The multipart part an inline (``param:PART``) upload names; None for URLs."""
        return self.uri.split(":", 1)[1].strip() if self.scheme == "param" else None

    def label(self) -> str:
        """How errors name this upload: ``UPLOAD mine (param:mine)``."""
        return f"UPLOAD {self.name} ({_shorten(self.uri)})"


def _shorten(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _size(n: int) -> str:
    """``n`` bytes in words: ``64 MiB (67108864 bytes)``."""
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor:
            value = n / factor
            shown = f"{value:.0f}" if value == int(value) else f"{value:.1f}"
            return f"{shown} {unit} ({n} bytes)"
    return f"{n} bytes"


# --- the UPLOAD parameter -------------------------------------------------------------------


def parse_upload_param(values: Sequence[str]) -> list[UploadRef]:
    """The ``name,URI`` pairs of every UPLOAD value, in order.

    Raises
    ------
    UsageError
        A value that is not ``name,URI[;name,URI...]``, a name that is not an ADQL regular
        identifier (or is a reserved word), or two names equal after case folding.
    """
    refs: list[UploadRef] = []
    for value in values:
        if not value.strip():
            raise UsageError(
                "an UPLOAD parameter is empty",
                hint="send UPLOAD=name,URI (for example UPLOAD=mine,param:mine)",
            )
        for item in _SPLIT_PAIRS.split(value):
            name, comma, uri = item.partition(",")
            name, uri = name.strip(), uri.strip()
            if not comma or not name or not uri:
                raise UsageError(
                    f"UPLOAD={_shorten(item)!r} is not a name,URI pair",
                    hint="send UPLOAD=name,URI, e.g. UPLOAD=mine,param:mine with a multipart "
                    "part called mine, or UPLOAD=mine,https://example.org/mine.xml",
                )
            _check_name(name)
            refs.append(UploadRef(name, uri))
    seen: dict[str, str] = {}
    for ref in refs:
        folded = ref.name.upper()
        if folded in seen:
            same = "twice" if seen[folded] == ref.name else f"twice ({seen[folded]} and {ref.name})"
            raise UsageError(
                f"UPLOAD names the table {ref.name} {same}; upload names are case-insensitive",
                hint="give each uploaded table its own name",
            )
        seen[folded] = ref.name
    return refs


def _check_name(name: str) -> None:
    if not is_regular_identifier(name):
        raise UsageError(
            f"UPLOAD table name {_shorten(name)!r} is not allowed: it must start with a letter "
            "and hold only letters, digits and underscores",
            hint="rename the upload, e.g. UPLOAD=my_table,param:my_table",
        )
    if is_reserved(name):
        raise UsageError(
            f"UPLOAD table name {name!r} is an ADQL reserved word",
            hint="choose another name, e.g. " + f"{name.lower()}_1",
        )


# --- the entry point ------------------------------------------------------------------------


def parse_uploads(
    params: Mapping[str, Sequence[str]],
    files: Mapping[str, InlineContent],
    settings: Settings,
    *,
    addresses: AddressPolicy | None = None,
) -> list[tuple[TableMeta, pa.Table]]:
    """Every table the UPLOAD parameters of a request name, read into Arrow.

    Parameters
    ----------
    params
        Request parameters, names upper-cased (:func:`skyvault.service.params.collect_params`).
    files
        The multipart parts by their exact name (what ``param:NAME`` refers to).
    settings
        Limits (bytes of all uploads together, rows per table, number of tables, URL fetch
        time) and whether URLs may reach private addresses.
    addresses
        The hosts UPLOAD URLs may reach; None: :meth:`AddressPolicy.of` the settings.

    Returns
    -------
    list
        ``(TableMeta, pa.Table)`` per upload, schema ``TAP_UPLOAD``, for ``Archive.stream``.

    Raises
    ------
    UsageError
        A malformed UPLOAD, a missing part, an unsupported or refused URL, an unreadable
        table.
    LimitExceeded
        Too many uploads, too many bytes or rows (413).
    """
    refs = parse_upload_param(params.get("UPLOAD", []))
    if not refs:
        return []
    _check_count(refs, settings)
    budget = _Budget(settings.max_upload_bytes)
    policy = addresses if addresses is not None else AddressPolicy.of(settings)
    out: list[tuple[TableMeta, pa.Table]] = []
    with tempfile.TemporaryDirectory(prefix="skyvault-upload-") as tmp:
        for ref in refs:
            path = Path(tmp) / ref.name  # names are identifiers, unique without case
            if ref.scheme == "param":
                _store_inline(ref, files, path, budget)
            elif ref.scheme in ("http", "https"):
                _fetch_url(ref, path, budget, settings.upload_fetch_timeout, policy)
            else:
                raise UsageError(
                    f"{ref.label()}: the URI scheme {ref.scheme or '(none)'!r} is not supported",
                    hint="give an http(s) URL, or POST the table inline as multipart/form-data "
                    f"with UPLOAD={ref.name},param:PART and a file part called PART",
                )
            out.append(
                read_upload(
                    ref, path, settings.max_upload_rows, max_columns=settings.max_upload_columns
                )
            )
    return out


def _check_count(refs: Sequence[UploadRef], settings: Settings) -> None:
    if len(refs) > settings.max_uploads:
        raise LimitExceeded(
            f"the request uploads {len(refs)} tables; the limit is {settings.max_uploads}",
            hint="upload fewer tables, or join them into one before uploading",
        )


def referenced_parts(
    params: Mapping[str, Sequence[str]],
    files: Mapping[str, InlineContent],
    settings: Settings,
) -> dict[str, InlineContent]:
    """The multipart parts an async job must keep: those its UPLOAD names as ``param:PART``.

    A job reads its uploads when it runs, so creating it stores its parts; any other part
    of the request is dropped here, and more tables than ``max_uploads`` are refused (413)
    before anything is stored.  A malformed UPLOAD keeps no part: the job fails with the
    same error when it runs, as every TAP parameter of a job is checked then.

    Raises
    ------
    LimitExceeded
        UPLOAD names more tables than ``settings.max_uploads``.
    """
    try:
        refs = parse_upload_param(params.get("UPLOAD", []))
    except UsageError:
        return {}
    _check_count(refs, settings)
    wanted = {ref.part for ref in refs}
    return {name: part for name, part in files.items() if name in wanted}


@dataclass
class _Budget:
    """Bytes left for this request's uploads."""

    limit: int
    used: int = 0

    def too_large(self, ref: UploadRef, seen: int, *, complete: bool) -> LimitExceeded:
        size = _size(seen) if complete else f"at least {_size(seen)} (reading stopped there)"
        others = f" ({_size(self.used)} already taken by other uploads)" if self.used else ""
        return LimitExceeded(
            f"{ref.label()} is {size}; the upload limit is {_size(self.limit)} per request{others}",
            hint="upload fewer rows or columns (Parquet is the most compact format), "
            "or run the query against a stored catalogue",
        )


def _copy_capped(ref: UploadRef, source: UploadPart, dest: Path, budget: _Budget) -> None:
    room = budget.limit - budget.used
    written = 0
    with dest.open("wb") as out:
        while True:
            chunk = source.read(_CHUNK)
            if not chunk:
                break
            written += len(chunk)
            if written > room:
                raise budget.too_large(ref, written, complete=False)
            out.write(chunk)
    budget.used += written


def _store_inline(
    ref: UploadRef, files: Mapping[str, InlineContent], dest: Path, budget: _Budget
) -> None:
    part = ref.part
    if not part:
        raise UsageError(
            f"{ref.label()}: param: names no multipart part",
            hint=f"send UPLOAD={ref.name},param:PART and a file part called PART",
        )
    content = files.get(part)
    if content is None:
        near = [k for k in files if k.lower() == part.lower()]
        if near:
            hint = f"the request has a part called {near[0]!r}: part names are case-sensitive"
        elif files:
            hint = "the request's file parts are " + ", ".join(repr(k) for k in sorted(files))
        else:
            hint = (
                "POST the request as multipart/form-data with a file part called "
                f"{part!r} holding the table"
            )
        raise UsageError(
            f"{ref.label()} refers to the multipart part {part!r}, which the request does not have",
            hint=hint,
        )
    if isinstance(content, str):
        content = content.encode("utf-8")
    if isinstance(content, bytes):
        if len(content) > budget.limit - budget.used:
            raise budget.too_large(ref, len(content), complete=True)
        dest.write_bytes(content)
        budget.used += len(content)
    elif isinstance(content, Path):
        size = content.stat().st_size
        if size > budget.limit - budget.used:
            raise budget.too_large(ref, size, complete=True)
        shutil.copyfile(content, dest)
        budget.used += size
    else:
        _copy_capped(ref, content, dest, budget)


# --- URL uploads ----------------------------------------------------------------------------

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses an UPLOAD URL (and each of its redirects) may reach.

    By default only public hosts: loopback, link-local, private (RFC 1918, fc00::/7),
    shared, reserved, multicast and unspecified addresses are refused, and so is the
    service's own host (any address of ``own_hosts``, resolved at each check).

    Attributes
    ----------
    allow_private
        Reach any address (``allow_private_upload_urls``): no check, no pinning.
    own_hosts
        Names (or addresses) of the service's own host: its listen address, its base URL's
        host, its host name.
    public
        Addresses taken as public hosts whatever their kind (a test server on loopback); the
        own-host check still applies to them.
    """

    allow_private: bool = False
    own_hosts: frozenset[str] = frozenset()
    public: frozenset[IPAddress] = frozenset()

    @classmethod
    def of(cls, settings: Settings) -> AddressPolicy:
        """The policy of the service ``settings`` describe."""
        names = {settings.host, socket.gethostname()}
        if settings.base_url:
            base_host = urlsplit(settings.base_url).hostname
            if base_host:
                names.add(base_host)
        return cls(settings.allow_private_upload_urls, frozenset(names))

    def refused_kind(self, address: IPAddress) -> str | None:
        """What makes ``address`` no public host (``"a loopback address"``...), or None."""
        return None if address in self.public else _refused_kind(address)

    def own_addresses(self) -> set[IPAddress]:
        """The addresses :attr:`own_hosts` resolve to now."""
        out: set[IPAddress] = set()
        for name in self.own_hosts:
            try:
                infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
            except (socket.gaierror, UnicodeError):
                continue
            for info in infos:
                out.add(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]))
        return out


def _fetch_url(
    ref: UploadRef, dest: Path, budget: _Budget, timeout: float, policy: AddressPolicy
) -> None:
    """Download ``ref.uri`` to ``dest`` within ``timeout`` seconds: hosts checked by
    ``policy``, each redirect checked, size capped."""
    deadline = time.monotonic() + timeout
    url = ref.uri
    with httpx.Client(
        timeout=httpx.Timeout(timeout), follow_redirects=False, trust_env=False
    ) as client:
        for _ in range(MAX_REDIRECTS + 1):
            request = _checked_request(ref, url, client, policy)
            try:
                response = client.send(request, stream=True)
            except httpx.TimeoutException:
                raise _timed_out(ref, timeout) from None
            except httpx.HTTPError as exc:
                raise UsageError(
                    f"{ref.label()}: the URL could not be fetched ({_shorten(str(exc), 200)})",
                    hint="check that the URL is right and reachable from the service",
                ) from None
            try:
                if response.is_redirect:
                    location = response.headers.get("location", "")
                    url = urljoin(url, location)
                    continue
                if response.status_code != 200:
                    raise UsageError(
                        f"{ref.label()}: the server answered HTTP {response.status_code} "
                        f"{response.reason_phrase}".rstrip(),
                        hint="check that the URL is right and publicly readable",
                    )
                _stream_to(ref, response, dest, budget, deadline, timeout)
                return
            finally:
                response.close()
    raise UsageError(
        f"{ref.label()}: more than {MAX_REDIRECTS} redirects",
        hint="give the table's final URL",
    )


def _timed_out(ref: UploadRef, timeout: float) -> UsageError:
    return UsageError(
        f"{ref.label()}: fetching the URL took longer than the time limit of {timeout:g} s",
        hint="upload the table inline (multipart param:) or from a faster server",
    )


def _stream_to(
    ref: UploadRef,
    response: httpx.Response,
    dest: Path,
    budget: _Budget,
    deadline: float,
    timeout: float,
) -> None:
    room = budget.limit - budget.used
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > room:
        raise budget.too_large(ref, int(declared), complete=True)
    written = 0
    try:
        with dest.open("wb") as out:
            for chunk in response.iter_bytes(_CHUNK):
                written += len(chunk)
                if written > room:
                    raise budget.too_large(ref, written, complete=False)
                if time.monotonic() > deadline:
                    raise _timed_out(ref, timeout)
                out.write(chunk)
    except httpx.TimeoutException:
        raise _timed_out(ref, timeout) from None
    except httpx.HTTPError as exc:
        raise UsageError(
            f"{ref.label()}: the download failed ({_shorten(str(exc), 200)})",
            hint="try again, or upload the table inline",
        ) from None
    budget.used += written


def _checked_request(
    ref: UploadRef, url: str, client: httpx.Client, policy: AddressPolicy
) -> httpx.Request:
    """A GET of ``url`` pinned to an address that ``policy`` allows."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        where = "redirects to" if url != ref.uri else "has"
        raise UsageError(
            f"{ref.label()} {where} the URL {_shorten(url)!r}, whose scheme is not http(s)",
            hint="give an http(s) URL",
        )
    try:
        target = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise UsageError(f"{ref.label()}: not a valid URL ({exc})") from None
    host = target.host
    if not host:
        raise UsageError(f"{ref.label()}: the URL has no host", hint="give an http(s) URL")
    headers = {"User-Agent": _USER_AGENT}
    if policy.allow_private:
        return client.build_request("GET", target, headers=headers)
    port = target.port or (443 if scheme == "https" else 80)
    address = _allowed_address(ref, url, host, port, policy)
    headers["Host"] = parts.netloc.rsplit("@", 1)[-1]
    extensions = {"sni_hostname": host} if scheme == "https" else {}
    return client.build_request(
        "GET", target.copy_with(host=address), headers=headers, extensions=extensions
    )


def _allowed_address(ref: UploadRef, url: str, host: str, port: int, policy: AddressPolicy) -> str:
    """The first address of ``host``, when ``policy`` allows every address of it."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise UsageError(
            f"{ref.label()}: the host {host!r} of {_shorten(url)!r} does not resolve",
            hint="check the URL's host name",
        ) from None
    addresses = [str(info[4][0]) for info in infos]
    own = policy.own_addresses()
    for text in addresses:
        address = ipaddress.ip_address(text.split("%", 1)[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        kind = policy.refused_kind(address)
        if kind is None and address in own:
            kind = "the service's own host"
        if kind is not None:
            shown = host if host == text else f"{host} ({text})"
            which = "the URL" if url == ref.uri else f"it redirects to {_shorten(url)!r}, which"
            raise UsageError(
                f"{ref.label()}: {which} points at {shown}, {kind}; UPLOAD URLs may only "
                "reach public hosts",
                hint="upload the table inline instead (multipart param:); a service operator "
                "can allow such URLs with allow_private_upload_urls",
            )
    return addresses[0]


def _refused_kind(address: IPAddress) -> str | None:
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_private:
        return "a private-network address"
    if not address.is_global:
        return "a non-public address"
    return None


# --- reading a table ------------------------------------------------------------------------


def _sniff(path: Path) -> str | None:
    with path.open("rb") as fh:
        head = fh.read(512)
    if head.startswith(b"PAR1"):
        return "parquet"
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith((b"<?xml", b"<VOTABLE", b"<!--")):
        return "votable"
    if head.startswith(b"SIMPLE  ="):
        return "fits"
    if not head:
        return None
    text = head.decode("utf-8", "ignore")
    if "\x00" in text or not text.strip():
        return None
    return "csv"


#: What an upload can be, in words, for hints.
_FORMATS_HINT = "send a VOTable, a CSV file with a header line, or a Parquet file"
_FORMAT_NAMES = {"votable": "VOTable", "csv": "CSV", "parquet": "Parquet"}
#: What to do about a table of each format that its reader refused.
_READ_HINTS = {
    "votable": "check the document against the VOTable standard (stilts votlint does)",
    "csv": "check that every line has as many values as the header line has names",
    "parquet": "check that the Parquet file is complete (copy or write it again)",
}


def _unreadable(
    ref: UploadRef,
    reason: str,
    *,
    row: int | None = None,
    column: str | None = None,
    hint: str | None = None,
) -> UsageError:
    """The error of an upload that could not be read, from its parts: which upload, where in
    it (row, column) when known, what was wrong, what to do."""
    where = "".join(
        (f", row {row}" if row is not None else "", f", column {column!r}" if column else "")
    )
    return UsageError(f"{ref.label()}{where}: {reason}", hint=hint or _FORMATS_HINT)


def _safe_reason(reason: str, fmt: str, tmp: Path) -> str:
    """``reason`` unless it would show the server's temporary directory (then a generic one).

    The readers name what they read; an upload's copy lives in a temporary directory that is
    nobody's business outside the service, so a reason that mentions it is not shown.
    """
    if str(tmp) in reason:
        log.warning("an upload reader's message names the temporary directory: %s", reason)
        return f"the content is not a readable {_FORMAT_NAMES.get(fmt, fmt)} table"
    return _shorten(reason, 300)


@contextmanager
def _reader_errors(ref: UploadRef, fmt: str, path: Path) -> Iterator[None]:
    """Reader errors said about the upload the user knows, never about its temporary copy."""
    try:
        yield
    except IngestError as exc:
        raise _unreadable(
            ref,
            _safe_reason(exc.reason, fmt, path.parent),
            row=exc.row,
            column=exc.column,
            hint=exc.hint or _READ_HINTS.get(fmt),
        ) from None
    except (pa.ArrowException, OSError, ValueError) as exc:
        reason = _safe_reason(str(exc), fmt, path.parent)
        raise _unreadable(
            ref, f"the table could not be read ({reason})", hint=_READ_HINTS.get(fmt)
        ) from None


# --- the VOTable pre-scan -------------------------------------------------------------------


class _VOTableScan:
    """expat handlers that check a VOTable's FIELDs (names, number) and STREAMs as they pass.

    astropy spends time quadratic in the number of FIELDs sharing a name (3,000 fields
    named ``x``: 45 s of CPU), so names and the number of columns are checked first, by
    expat alone: no tree is built, memory stays flat, and entity declarations (the way to
    an entity expansion bomb or an external entity) are refused outright.
    """

    def __init__(self, ref: UploadRef, parser: XMLParserType, max_columns: int) -> None:
        self.ref = ref
        self.parser = parser
        self.max_columns = max_columns
        self.fields = 0
        #: folded name -> (name, line, position among its TABLE's FIELDs)
        self.names: dict[str, tuple[str, int, int]] = {}

    def start(self, tag: str, attributes: dict[str, str]) -> None:
        local = tag.rsplit(" ", 1)[-1]
        if local == "TABLE":
            self.names = {}
        elif local == "FIELD":
            self.field(attributes.get("name", ""))
        elif local == "STREAM" and any(a.rsplit(" ", 1)[-1] == "href" for a in attributes):
            # astropy would open the href (file://, http://...) on the service's host: a
            # way to read its files and reach its network.  Uploads carry their data inline.
            raise _unreadable(
                self.ref,
                f"the VOTable STREAM on line {self.parser.CurrentLineNumber} refers to data "
                "elsewhere (href); an upload must hold its data itself",
                hint="send the table with its rows inline (TABLEDATA, or BINARY/BINARY2 "
                "with an encoded STREAM)",
            )

    def field(self, name: str) -> None:
        line = self.parser.CurrentLineNumber
        self.fields += 1
        if self.fields > self.max_columns:
            raise LimitExceeded(
                f"{self.ref.label()} has more than {self.max_columns} columns (VOTable FIELD "
                f"elements); the limit is {self.max_columns} columns per uploaded table",
                hint="upload only the columns the query needs",
            )
        if not name.strip():
            raise _unreadable(
                self.ref,
                f"the VOTable FIELD on line {line} has no name",
                hint="give every FIELD a name attribute that is not empty",
            )
        folded = name.lower()
        if folded in self.names:
            first, first_line, first_index = self.names[folded]
            if first == name:
                same = f"two FIELDs are named {name!r}"
            else:
                same = (
                    f"the FIELD names {first!r} and {name!r} are the same to the query engine "
                    "(column names are compared without case)"
                )
            index = len(self.names) + 1
            where = f"lines {first_line} and {line}" if first_line != line else f"line {line}"
            raise _unreadable(
                self.ref,
                f"{same} (FIELDs {first_index} and {index} of the table, {where})",
                hint="give every column of the table its own name",
            )
        self.names[folded] = (name, line, len(self.names) + 1)

    def entity(self, name: str, *_: object) -> None:
        raise _unreadable(
            self.ref,
            f"the VOTable declares the XML entity {name!r}; uploads may not declare entities",
            hint="write the values out in the document instead of through entities",
        )


def _prescan_votable(ref: UploadRef, path: Path, max_columns: int) -> None:
    """Refuse a VOTable that is not well-formed XML, declares entities, has FIELDs without
    a name or with the same name, more FIELDs than ``max_columns``, or a STREAM that points
    elsewhere (``href``) — before astropy reads it."""
    parser = expat.ParserCreate(namespace_separator=" ")
    scan = _VOTableScan(ref, parser, max_columns)
    parser.StartElementHandler = scan.start
    parser.EntityDeclHandler = scan.entity
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                parser.Parse(chunk, False)
            parser.Parse(b"", True)
    except expat.ExpatError as exc:
        raise _unreadable(
            ref,
            f"not a readable VOTable: not well-formed XML at line {exc.lineno}, column "
            f"{exc.offset + 1} ({expat.ErrorString(exc.code)})",
            hint=_READ_HINTS["votable"],
        ) from None
    except LookupError as exc:  # an XML declaration with an encoding Python does not know
        raise _unreadable(
            ref,
            f"not a readable VOTable: {_shorten(str(exc), 100)}",
            hint='declare encoding="UTF-8" (or leave the encoding out) and save it so',
        ) from None


# --- reading a table ------------------------------------------------------------------------


def read_upload(
    ref: UploadRef, path: Path, max_rows: int, *, max_columns: int = 1000
) -> tuple[TableMeta, pa.Table]:
    """The table in ``path`` (VOTable, Parquet or CSV, told by content) as ``TAP_UPLOAD``.

    Errors name the upload (``ref``), never ``path``: it is the service's temporary copy.
    """
    fmt = _sniff(path)
    if fmt is None:
        raise UsageError(f"{ref.label()} is empty or not a table", hint=_FORMATS_HINT)
    if fmt == "fits":
        raise UsageError(
            f"{ref.label()} is a FITS file; uploads are read as VOTable, CSV or Parquet",
            hint="convert it first, e.g. stilts tcopy in=t.fits out=t.vot",
        )
    if fmt == "votable":
        _prescan_votable(ref, path, max_columns)
    with _reader_errors(ref, fmt, path):
        reader: InputFile
        if fmt == "parquet":
            reader = ParquetInput(path)
        elif fmt == "votable":
            reader = VOTableInput(path)
        else:
            reader = CsvInput(path)
        try:
            names = reader.schema.names
        except UnicodeDecodeError:
            raise _unreadable(
                ref,
                "the column names are not UTF-8 text",
                hint="save the table as UTF-8 text: uploads are read as UTF-8",
            ) from None
        if not names:
            raise _unreadable(ref, "the table has no columns")
        if len(names) > max_columns:
            raise LimitExceeded(
                f"{ref.label()} has {len(names)} columns; the limit is {max_columns} "
                "columns per uploaded table",
                hint="upload only the columns the query needs",
            )
        if reader.num_rows is not None and reader.num_rows > max_rows:
            raise _too_many_rows(ref, reader.num_rows, max_rows, complete=True)
        batches = []
        rows = 0
        for batch in reader.batches(None, 65536):
            rows += batch.num_rows
            if rows > max_rows:
                raise _too_many_rows(ref, rows, max_rows, complete=False)
            batches.append(batch)
        table = pa.Table.from_batches(batches, schema=reader.schema)
    table = _queryable(ref, table)
    if fmt == "votable":
        table = _empty_strings_as_null(table)
    try:
        columns = merge_columns(table.schema, reader.column_info)
    except CatalogError as exc:
        raise UsageError(f"{ref.label()}: {exc.message}") from None
    columns = _unicode_columns(columns, table)
    ra, dec = _positions(columns)
    meta = TableMeta(
        schema=UPLOAD_SCHEMA,
        name=ref.name,
        kind="plain",
        columns=columns,
        nrows=table.num_rows,
        description=reader.description or f"uploaded by the request ({fmt})",
        ra_column=ra,
        dec_column=dec,
    )
    return meta, table


def _too_many_rows(ref: UploadRef, rows: int, limit: int, *, complete: bool) -> LimitExceeded:
    size = f"{rows} rows" if complete else f"more than {limit} rows"
    return LimitExceeded(
        f"{ref.label()} has {size}; the limit is {limit} rows per uploaded table",
        hint="upload fewer rows, or split the upload into several queries",
    )


def _queryable(ref: UploadRef, table: pa.Table) -> pa.Table:
    """Column names checked; types the engine cannot hold made plain (null → string...)."""
    folded: dict[str, str] = {}
    for name in table.column_names:
        if not name.strip():
            raise UsageError(
                f"{ref.label()}: a column has no name",
                hint="give every column a name (the CSV header line, the VOTable FIELD name)",
            )
        if name.lower() in folded:
            raise UsageError(
                f"{ref.label()}: the column names {folded[name.lower()]!r} and {name!r} are "
                "the same to the query engine (column names are compared without case)",
                hint="rename one of the columns",
            )
        folded[name.lower()] = name
    fields = []
    changed = False
    for field in table.schema:
        t = field.type
        if pa.types.is_null(t):
            t = pa.string()
        elif pa.types.is_dictionary(t):
            t = t.value_type
        elif pa.types.is_large_string(t):
            t = pa.string()
        elif pa.types.is_binary(t) or pa.types.is_large_binary(t):
            _check_utf8(ref, field.name, table.column(field.name))
            t = pa.string()
        elif _is_array(t) and not _is_number(t.value_type):
            raise _unreadable(
                ref,
                f"column {field.name!r} holds arrays of {t.value_type}; an uploaded array "
                "column may hold only numbers or booleans",
                hint="put the values in columns of their own, or join them into one text",
            )
        changed = changed or t != field.type
        fields.append(field.with_type(t))
    if changed:
        table = table.cast(pa.schema(fields, metadata=table.schema.metadata))
    return table


def _is_array(t: pa.DataType) -> bool:
    return bool(pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t))


def _is_number(t: pa.DataType) -> bool:
    return bool(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t))


def _check_utf8(ref: UploadRef, name: str, data: pa.ChunkedArray) -> None:
    """Refuse a column of bytes that are not all UTF-8 text (CSV readers make such a column
    of a file in another encoding); naming the first row that is not."""
    try:
        data.cast(pa.string())
    except pa.ArrowInvalid:
        pass
    else:
        return
    row = 0
    for chunk in data.chunks:
        for value in chunk.to_pylist():
            row += 1
            if value is None:
                continue
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                raise _unreadable(
                    ref,
                    f"the text {_shorten(repr(value), 60)} is not UTF-8",
                    row=row,
                    column=name,
                    hint="save the table as UTF-8 text: uploads are read as UTF-8",
                ) from None


def _empty_strings_as_null(table: pa.Table) -> pa.Table:
    """VOTable writes a null string as an empty cell: read it back as null."""
    for index, data in enumerate(table.columns):
        if pa.types.is_string(data.type):
            empty = pc.equal(pc.utf8_length(data), 0)
            if pc.any(empty).as_py():
                cleared = pc.if_else(empty, pa.scalar(None, pa.string()), data)
                table = table.set_column(index, table.field(index), cleared)
    return table


def _unicode_columns(columns: Sequence[ColumnMeta], table: pa.Table) -> tuple[ColumnMeta, ...]:
    """String columns holding non-ASCII text become ``unicodeChar`` (VOTable ``char`` is ASCII)."""
    out = []
    for col, data in zip(columns, table.columns, strict=True):
        text = col.datatype == "char" and pa.types.is_string(data.type) and col.xtype is None
        if text and pc.all(pc.string_is_ascii(data)).as_py() is False:
            out.append(col.updated(datatype="unicodeChar"))
        else:
            out.append(col)
    return tuple(out)


def _positions(columns: Sequence[ColumnMeta]) -> tuple[str | None, str | None]:
    """The RA/Dec columns: by main-position UCD, else by the names ra/dec; numeric only."""
    numeric = [c for c in columns if c.datatype in ("float", "double") and not c.arraysize]

    def find(ucd: str, names: tuple[str, ...]) -> str | None:
        for col in numeric:
            if (col.ucd or "").lower().replace(" ", "") == ucd:
                return col.name
        for col in numeric:
            if col.name.lower() in names:
                return col.name
        return None

    ra = find(_RA_UCD, ("ra",))
    dec = find(_DEC_UCD, ("dec",))
    if ra is None or dec is None:
        return None, None
    return ra, dec


def with_upload_hint(
    error: AdqlSemanticError, uploads: Sequence[tuple[TableMeta, pa.Table]]
) -> AdqlSemanticError:
    """``error``, or when it is about a ``TAP_UPLOAD`` table not uploaded (and has no hint)
    the same error (class, detail, position) with a hint on UPLOAD."""
    if error.hint is not None or UPLOAD_SCHEMA.lower() not in error.detail.lower():
        return error
    names = ", ".join(f"{UPLOAD_SCHEMA}.{meta.name}" for meta, _ in uploads)
    if names:
        hint = f"this request uploaded {names}"
    else:
        hint = (
            "this request uploaded no tables: send UPLOAD=name,param:PART with a multipart "
            "file part PART (or UPLOAD=name,https://...) to query TAP_UPLOAD.name"
        )
    return type(error)(error.detail, line=error.line, column=error.column, hint=hint)
