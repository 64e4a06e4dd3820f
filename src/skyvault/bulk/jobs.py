"""Bulk jobs: a table, a sky region, a filter and columns, written as files by HEALPix partition.

A bulk job (``/bulk/jobs``, a UWS job type; the web glue is in ``service/``) is described
by a :class:`BulkRequest`:

``TABLE``
    ``schema.table``, one of the tables the owner may read (looked up in the visible
    tables handed in: a hidden table reads exactly like a missing one): an archive table,
    a user's table, or a view such as ``ivoa.ObsCore`` (:mod:`skyvault.catalog.views`:
    the rows of its members the owner may read, each member written per HEALPix cell of
    its own, in files named after it; not as ``hats``, as the members' cells overlap).
``CIRCLE`` / ``POLYGON`` / ``REGION`` / ``MOC``
    At most one sky region: DALI ``CIRCLE=ra dec r`` or ``POLYGON=ra1 dec1 …`` (degrees),
    ``REGION`` in ADQL form (``CIRCLE('ICRS', ra, dec, r)``, ``POLYGON('ICRS', …)``) or
    as ``CIRCLE ra dec r``, or a MOC: an uploaded MOC FITS file (a multipart part named
    ``MOC``) or an ASCII MOC (``MOC=5/12-15 6/100``).
``FILTER``
    An ADQL condition on the table's columns (what follows WHERE).
``COLUMNS``
    Comma-separated column names (default: every column).
``FORMAT``
    ``parquet`` (default), ``fits``, ``votable``, ``csv`` or ``hats``.
``MAXFILESIZE``
    Bytes per file (at most the service's limit; the default is that limit).

The request is compiled into one ADQL query (:func:`compile_request`), which the ADQL
checker validates against the caller's visible tables exactly as a TAP query: the user's
text never reaches the engine unchecked.  The FILTER is placed on lines of its own inside
parentheses (its parentheses must balance, so it cannot close them), and an ADQL error in
it is reported at its line and column *within the FILTER*.  A CIRCLE or POLYGON becomes an
ADQL ``CONTAINS``; a MOC selects the rows whose ``_healpix_29`` lies in it (exact HEALPix
membership, as mocpy's ``contains``).

:func:`run_request` runs the query once per HEALPix partition of the table (base partitions
and appended cells: disjoint, so each row is written once), each restricted to the
partition's ``_healpix_29`` range, and writes each partition's rows into files of at most
about ``max_file_bytes`` (a file ends at the first batch that takes it past the limit;
batches are sliced to an eighth of it).  Each file's md5/sha256 are computed as it is
written.  Everything goes to a staging directory renamed into place at the end (nothing
half-written is ever visible), with the stored manifest
(:data:`~skyvault.bulk.manifest.MANIFEST_FILE`), from which the static tree's documents
(``_MD5SUM.txt``, ``manifest.json``/``csv``/``sha256``) are rendered.

``hats`` writes a HATS catalogue (``properties``, ``partition_info.csv``,
``dataset/Norder=K/Dir=D/Npix=N.parquet``, ``_metadata``): one file per partition (the
source's partitions bound its size), with ``_healpix_29`` and the table's RA/Dec columns.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from mocpy import MOC
from numpy.typing import NDArray

from skyvault.bulk.manifest import MANIFEST_FILE, Manifest, ManifestEntry
from skyvault.catalog.layout import TableName
from skyvault.catalog.metadata import TableMeta
from skyvault.catalog.registry import StoredTable
from skyvault.catalog.views import View, with_views
from skyvault.engine.archive import Archive
from skyvault.engine.budget import MemoryBudget, estimate_stream_bytes
from skyvault.engine.executor import CancelToken
from skyvault.engine.plan import QueryPlan, Scan
from skyvault.errors import (
    AdqlError,
    AdqlSyntaxError,
    GeometryError,
    QueryCancelled,
    UsageError,
)
from skyvault.formats.output import OutputFormat, WriteOptions, find_output_format
from skyvault.sky.regions import Circle, Polygon, region_from_dali

__all__ = [
    "FORMATS",
    "PARAMETERS",
    "BulkOutput",
    "BulkQuery",
    "BulkRequest",
    "bounded_lifetime",
    "compile_request",
    "parse_moc",
    "parse_region",
    "parse_request",
    "run_request",
]

#: FORMAT values and the RESPONSEFORMAT writer each uses (``hats``: Parquet in a HATS tree).
FORMATS = {"parquet": "parquet", "fits": "fits", "votable": "votable", "csv": "csv", "hats": None}
#: The parameters a bulk job takes (upper case), besides the UWS ones.
PARAMETERS = frozenset(
    {"TABLE", "CIRCLE", "POLYGON", "REGION", "MOC", "FILTER", "COLUMNS", "FORMAT", "MAXFILESIZE"}
)
_HEALPIX = "_healpix_29"
_FULL_SKY = 12 * 4**29
_IDENT = re.compile(r'^(?:[A-Za-z][A-Za-z0-9_]*|"(?:[^"\r\n]|"")+")$')
_NUMBER = r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*"
_ADQL_SHAPE = re.compile(r"^\s*(CIRCLE|POLYGON)\s*\((.*)\)\s*$", re.IGNORECASE | re.DOTALL)
#: Rows of a FILTER line the composed query puts before the filter (see _compose).
_FILTER_FIRST_LINE = 4
#: Compute the files' checksums in a thread of their own (see _Written).
_HASH_BEHIND = True
_SELECT = "SELECT "


@dataclass(frozen=True)
class BulkRequest:
    """What a bulk job asks for (parsed, not yet checked against the tables)."""

    table: str
    region: Circle | Polygon | None = None
    moc: MOC | None = None
    filter: str | None = None
    columns: tuple[str, ...] | None = None
    format: str = "parquet"
    max_file_bytes: int | None = None


def _one(params: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = params.get(name, [])
    if len(values) > 1:
        raise UsageError(f"parameter {name} was given {len(values)} times; it takes one value")
    if not values or not values[0].strip():
        return None
    return values[0]


def _numbers(name: str, text: str) -> list[float]:
    try:
        return [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise UsageError(
            f"{name}={text!r} is not a list of numbers",
            hint="give degrees, e.g. CIRCLE=10.5 -30 0.2 or POLYGON=10 -30 11 -30 11 -29",
        ) from None


def _shape(name: str, kind: str, values: list[float]) -> Circle | Polygon:
    try:
        region = region_from_dali(kind, values)
    except GeometryError as exc:
        raise GeometryError(f"{name}: {exc.message}", hint=exc.hint) from None
    assert isinstance(region, (Circle, Polygon))
    return region


def parse_region(name: str, text: str) -> Circle | Polygon:
    """A CIRCLE/POLYGON parameter (DALI numbers) or REGION (ADQL or ``SHAPE numbers``)."""
    if name in ("CIRCLE", "POLYGON"):
        return _shape(name, name.lower(), _numbers(name, text))
    adql = _ADQL_SHAPE.match(text)
    if adql is not None:
        args = adql.group(2).split(",")
        if args and re.match(r"^\s*'[^']*'\s*$", args[0]):
            args = args[1:]  # the coordinate system ('ICRS', 'J2000', ''): ignored as in ADQL
        if not all(re.fullmatch(_NUMBER, a) for a in args):
            raise UsageError(
                f"REGION={text!r}: the arguments of {adql.group(1).upper()} must be numbers",
                hint="write e.g. REGION=CIRCLE('ICRS', 10.5, -30, 0.2)",
            )
        return _shape(name, adql.group(1).lower(), [float(a) for a in args])
    words = text.split(None, 1)
    if len(words) == 2 and words[0].upper() in ("CIRCLE", "POLYGON"):
        return _shape(name, words[0].lower(), _numbers(name, words[1]))
    raise UsageError(
        f"REGION={text!r} is not a CIRCLE or a POLYGON",
        hint="write REGION=CIRCLE('ICRS', ra, dec, radius) or POLYGON('ICRS', ra1, dec1, ...), "
        "or CIRCLE=ra dec radius, POLYGON=ra1 dec1 ..., or upload a MOC",
    )


def parse_moc(data: bytes | str) -> MOC:
    """A MOC from FITS bytes (an uploaded file) or its ASCII serialisation."""
    try:
        if isinstance(data, bytes):
            moc = MOC.from_fits(io.BytesIO(data))
        else:
            moc = MOC.from_str(data.strip())
    except Exception:  # mocpy raises OSError, ValueError, Rust panics as exceptions...
        raise UsageError(
            "the MOC could not be read",
            hint="upload a MOC FITS file (IVOA MOC 1.x/2.0, as mocpy or Aladin write it) as "
            "the multipart part MOC, or give MOC as ASCII (e.g. MOC=5/12-15 6/100)",
        ) from None
    if moc.empty():
        raise UsageError("the MOC covers no sky", hint="give a MOC with at least one cell")
    return moc


def parse_request(
    params: Mapping[str, Sequence[str]],
    moc_file: bytes | None = None,
    *,
    max_file_bytes: int,
) -> BulkRequest:
    """A :class:`BulkRequest` from a job's parameters (upper-cased names) and its uploaded
    MOC file, if any; ``max_file_bytes`` is the service's limit of MAXFILESIZE.

    Raises
    ------
    UsageError, GeometryError
        A missing TABLE, two regions, a bad region, MOC, column list, FORMAT or MAXFILESIZE.
    """
    table = _one(params, "TABLE")
    if table is None:
        raise UsageError(
            "a bulk job needs a TABLE", hint="send TABLE=schema.table (see /bulk/ for yours)"
        )
    given = [n for n in ("CIRCLE", "POLYGON", "REGION") if _one(params, n) is not None]
    moc_text = _one(params, "MOC")
    if moc_file is not None or moc_text is not None:
        given.append("MOC")
    if len(given) > 1:
        raise UsageError(
            f"a bulk job takes one region, and this one has {' and '.join(given)}",
            hint="send one of CIRCLE, POLYGON, REGION or MOC",
        )
    region = None
    moc = None
    if given and given[0] == "MOC":
        moc = parse_moc(moc_file if moc_file is not None else (moc_text or ""))
    elif given:
        region = parse_region(given[0], _one(params, given[0]) or "")
    columns = None
    text = _one(params, "COLUMNS")
    if text is not None:
        names = tuple(c.strip() for c in text.split(","))
        bad = [c for c in names if not _IDENT.match(c)]
        if bad:
            raise UsageError(
                f"COLUMNS: {bad[0]!r} is not a column name",
                hint='give column names separated by commas (e.g. COLUMNS=ra,dec,"gMag")',
            )
        columns = names
    fmt = (_one(params, "FORMAT") or "parquet").strip().lower()
    if fmt not in FORMATS:
        raise UsageError(
            f"FORMAT={fmt!r} is not a bulk format", hint=f"use one of {', '.join(FORMATS)}"
        )
    size = None
    text = _one(params, "MAXFILESIZE")
    if text is not None:
        try:
            size = int(text.strip())
        except ValueError:
            size = 0
        if not 1 <= size <= max_file_bytes:
            raise UsageError(
                f"MAXFILESIZE={text!r} is not a number of bytes from 1 to {max_file_bytes}",
                hint=f"leave it out for {max_file_bytes} bytes",
            )
    return BulkRequest(
        table=table.strip(),
        region=region,
        moc=moc,
        filter=_one(params, "FILTER"),
        columns=columns,
        format=fmt,
        max_file_bytes=size,
    )


# --- compiling --------------------------------------------------------------------------------


@dataclass(frozen=True)
class BulkQuery:
    """A request checked against the tables: the ADQL query and its plan."""

    request: BulkRequest
    meta: TableMeta
    adql: str
    plan: QueryPlan
    members: tuple[TableName, ...] | None = None
    """For a view (:mod:`skyvault.catalog.views`, e.g. ``ivoa.ObsCore``): the stored
    tables whose rows it has for the owner, each written per HEALPix cell of its own;
    None: ``meta`` is a stored table."""


def _find_table(name: str, tables: Sequence[TableMeta]) -> TableMeta:
    exact = [m for m in tables if m.qualified_name == name]
    if len(exact) == 1:
        return exact[0]
    folded = [m for m in tables if m.qualified_name.lower() == name.lower()]
    if len(folded) == 1:
        return folded[0]
    raise UsageError(
        f"TABLE={name!r}: there is no such table among the tables you may read",
        hint="give it as schema.table; /bulk/ lists your tables",
    )


def _delimited(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _balanced(text: str) -> bool:
    """Whether ``text``'s parentheses (outside strings and delimited names) balance, so that
    it stays inside the parentheses it is put in.  A string left open also counts as not
    balanced: it would swallow what follows."""
    depth = 0
    quote: str | None = None
    i = 0
    while i < len(text):
        ch = text[i]
        if quote is not None:
            if ch == quote:
                if i + 1 < len(text) and text[i + 1] == quote:
                    i += 1
                else:
                    quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "-" and text.startswith("--", i):
            end = text.find("\n", i)
            if end < 0:
                break
            i = end
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                return False
        i += 1
    return depth == 0 and quote is None


def _compose(request: BulkRequest, meta: TableMeta) -> tuple[str, int]:
    """The ADQL query of ``request`` over ``meta``, and how many lines its FILTER has.

    Line 1 is the select list, line 2 FROM, line 3 ``WHERE (``, the FILTER from line 4.
    """
    table = f"{_delimited(meta.schema)}.{_delimited(meta.name)}"
    columns = list(request.columns) if request.columns else ["*"]
    ra, dec = meta.ra_column, meta.dec_column
    if request.format == "hats":
        if not ra or not dec or meta.kind != "hats":
            raise UsageError(
                f"FORMAT=hats needs a table with sky positions, and {meta.qualified_name} has none",
                hint="choose parquet, fits, votable or csv",
            )
        if request.columns:
            named = {c.strip('"').lower() for c in request.columns}
            columns += [_delimited(c) for c in (ra, dec) if c.lower() not in named]
        if columns == ["*"]:
            columns = [f"{table}.*"]  # ADQL: a bare * must be the whole select list
        columns.append(f"ivo_healpix_index(29, {_delimited(ra)}, {_delimited(dec)})")
    lines = [
        _SELECT + ", ".join(columns),
        f"FROM {table}",
    ]
    where: list[str] = []
    filter_lines = 0
    if request.filter is not None:
        if not _balanced(request.filter):
            raise AdqlSyntaxError(
                "FILTER: its parentheses or quotes do not balance",
                hint="give one condition, e.g. FILTER=gMag < 20 AND (flag = 0 OR flag IS NULL)",
            )
        text = request.filter.replace("\r\n", "\n").replace("\r", "\n")
        filter_lines = text.count("\n") + 1
        where.append(f"(\n{text}\n)")
    has_region = request.region is not None or request.moc is not None
    if has_region and (not ra or not dec or meta.kind != "hats"):
        raise UsageError(
            f"{meta.qualified_name} has no sky positions: a region cannot select its rows",
            hint="leave out CIRCLE, POLYGON, REGION and MOC for this table",
        )
    region = request.region
    if region is not None:
        point = f"POINT('ICRS', {_delimited(ra or '')}, {_delimited(dec or '')})"
        if isinstance(region, Circle):
            shape = f"CIRCLE('ICRS', {region.ra!r}, {region.dec!r}, {region.radius!r})"
        else:
            shape = "POLYGON('ICRS', " + ", ".join(repr(v) for v in region.to_dali()) + ")"
        where.append(f"CONTAINS({point}, {shape}) = 1")
    if where:
        lines.append("WHERE " + " AND ".join(where))
    return "\n".join(lines), filter_lines


def _relocated(error: AdqlError, filter_lines: int) -> AdqlError:
    """``error`` with its position made relative to the part of the request it is in."""
    if error.line is None:
        return error
    column = error.column
    if _FILTER_FIRST_LINE <= error.line < _FILTER_FIRST_LINE + filter_lines:
        line = error.line - _FILTER_FIRST_LINE + 1
        where = "FILTER"
    elif error.line == 1 and (error.column or 0) > len(_SELECT):
        line, where = 1, "COLUMNS"
        column = (error.column or 0) - len(_SELECT)
    else:
        return type(error)(f"in the query made from the job: {error.detail}", hint=error.hint)
    return type(error)(f"in {where}: {error.detail}", line=line, column=column, hint=error.hint)


def compile_request(
    request: BulkRequest,
    archive: Archive,
    tables: Sequence[TableMeta],
    views: Sequence[View] = (),
) -> BulkQuery:
    """Check ``request`` against ``tables`` (the owner's visible tables) and ``views`` (the
    views the owner queries besides them, e.g. ``ivoa.ObsCore`` over the collections they
    may read) and plan it.

    Raises
    ------
    UsageError
        An unknown (or hidden) table, a region on a table without positions...
    AdqlError
        The FILTER or COLUMNS are not valid ADQL over the table (position within them).
    """
    meta = _find_table(request.table, with_views(tables, views))
    view = next((v for v in views if v.key == (meta.schema, meta.name)), None)
    members = None
    if view is not None:
        members = view.members
        if request.format == "hats" and members != (TableName(meta.schema, meta.name),):
            raise UsageError(
                f"FORMAT=hats cannot be made of {meta.qualified_name}: it is a view over "
                "several tables, whose partitions overlap",
                hint="choose parquet, fits, votable or csv, or ask for each of its tables",
            )
    adql, filter_lines = _compose(request, meta)
    try:
        plan = archive.plan(adql, [meta]) if view is None else archive.plan(adql, [], views=[view])
    except AdqlError as exc:
        raise _relocated(exc, filter_lines) from None
    if len(plan.scans) != 1:
        raise UsageError(
            "FILTER may only use the columns of the table",
            hint="a subquery of another table is not possible in a bulk job",
        )
    return BulkQuery(request, meta, adql, plan, members)


# --- running ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Cell:
    """A HEALPix cell of the table (a partition, or a cell of appended rows)."""

    order: int | None
    pixel: int | None
    files: tuple[str, ...]
    ranges: NDArray[np.int64] | None
    stem: str
    """The start of its files' names."""


def _intersect(a: NDArray[np.int64], b: NDArray[np.int64]) -> NDArray[np.int64]:
    """The intersection of two sorted lists of disjoint half-open intervals."""
    out: list[tuple[int, int]] = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo < hi:
            out.append((int(lo), int(hi)))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return np.array(out, dtype=np.int64).reshape(-1, 2)


def _cells(stored: StoredTable, scan: Scan, moc: MOC | None, stem: str) -> list[_Cell]:
    """The cells of ``stored`` the query reads, each with its files and the ``_healpix_29``
    ranges of its rows to keep (the query's pruning ranges ∩ the MOC ∩ the cell); their
    files are named from ``stem``."""
    index = stored.partitions
    if index is None:  # a table without positions: its files, split by size only
        every = stored.all_files
        return [_Cell(None, None, every, None, stem)] if every and scan.files else []
    keep = np.array([[0, _FULL_SKY]], dtype=np.int64)
    if scan.ranges is not None:
        keep = np.asarray(scan.ranges, dtype=np.int64).reshape(-1, 2)
    if moc is not None:
        keep = _intersect(keep, np.asarray(moc.to_depth29_ranges, dtype=np.int64).reshape(-1, 2))
    cells: dict[tuple[int, int], tuple[int, int, list[str]]] = {}
    for o, p, lo, hi, f in zip(
        index.orders.tolist(), index.pixels.tolist(), index.starts.tolist(),
        index.stops.tolist(), index.files, strict=True,
    ):  # fmt: skip
        cells[(o, p)] = (lo, hi, [f])
    if stored.deltas is not None:
        d = stored.deltas
        for o, p, f in zip(d.orders.tolist(), d.pixels.tolist(), d.files, strict=True):
            shift = 2 * (29 - o)
            entry = cells.setdefault((o, p), (p << shift, (p + 1) << shift, []))
            if f not in entry[2]:
                entry[2].append(f)
    out = []
    for (order, pixel), (lo, hi, files) in sorted(cells.items(), key=lambda c: c[1][0]):
        ranges = _intersect(keep, np.array([[lo, hi]], dtype=np.int64))
        if len(ranges):
            name = f"{stem}_Norder{order}_Npix{pixel}"
            out.append(_Cell(order, pixel, tuple(files), ranges, name))
    return out


def _query_cells(query: BulkQuery, archive: Archive) -> list[_Cell]:
    """The cells of every stored table ``query`` reads: the table's own, or, for a view,
    each member's in turn (their files named after the member, as two members may have a
    partition of the same HEALPix cell)."""
    meta = query.meta
    scan = query.plan.scans[0]
    itself = TableName(meta.schema, meta.name)
    if query.members is None:
        names: tuple[TableName, ...] = (itself,)
    elif scan.arrow is not None:  # a view of no member (none visible): no rows
        return []
    else:
        names = query.members
    out = []
    for name in names:
        stem = meta.name if name == itself else f"{name.schema}.{name.table}"
        stored = archive.registry.get(name.schema, name.table)
        out += _cells(stored, scan, query.request.moc, stem)
    return out


@dataclass
class _Written:
    """A file being written: its name, and what the manifest needs of it.

    With a ``pool`` (one thread), the checksums are computed there, overlapping the query
    and the writer (hashlib lets go of the GIL); :meth:`entry` waits for them.
    """

    path: str
    order: int | None
    pixel: int | None
    pool: ThreadPoolExecutor | None = field(default=None, repr=False)
    size: int = 0
    rows: int = 0
    arrow_bytes: int = 0

    def __post_init__(self) -> None:
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.sha256 = hashlib.sha256()
        self._pending: Future[None] | None = None

    def _hash(self, chunk: bytes) -> None:
        self.md5.update(chunk)
        self.sha256.update(chunk)

    def add(self, chunk: bytes) -> None:
        if self.pool is None:
            self._hash(chunk)
        else:
            self._pending = self.pool.submit(self._hash, chunk)
        self.size += len(chunk)

    def entry(self, mtime: float) -> ManifestEntry:
        if self._pending is not None:
            self._pending.result()
        return ManifestEntry(
            path=self.path,
            bytes=self.size,
            sha256=self.sha256.hexdigest(),
            md5=self.md5.hexdigest(),
            rows=self.rows,
            healpix_order=self.order,
            healpix_pixel=self.pixel,
            last_modified=datetime.fromtimestamp(int(mtime), UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )


@dataclass(frozen=True)
class BulkOutput:
    """A finished job's file set: its directory and manifest."""

    root: Path
    manifest: Manifest

    @property
    def rows(self) -> int:
        return sum(e.rows or 0 for e in self.manifest.entries)

    @property
    def bytes(self) -> int:
        return sum(e.bytes for e in self.manifest.entries)


class _Peekable:
    def __init__(self, items: Iterator[pa.RecordBatch]) -> None:
        self._items = items
        self._next: list[pa.RecordBatch] = []

    def more(self) -> bool:
        if not self._next:
            try:
                self._next.append(next(self._items))
            except StopIteration:
                return False
        return True

    def pop(self) -> pa.RecordBatch:
        self.more()
        return self._next.pop()


def _sliced(batches: Iterator[pa.RecordBatch], most_bytes: int) -> Iterator[pa.RecordBatch]:
    """``batches`` cut into slices of about ``most_bytes`` (at least one row each)."""
    for batch in batches:
        if batch.num_rows == 0:
            continue
        per_row = max(1, batch.nbytes // batch.num_rows)
        step = max(1, most_bytes // per_row)
        for start in range(0, batch.num_rows, step):
            yield batch.slice(start, step)


def run_request(
    query: BulkQuery,
    archive: Archive,
    out_dir: Path,
    *,
    max_file_bytes: int,
    cancel: CancelToken | None = None,
    timeout: float | None = None,
    spool_dir: Path | None = None,
    job_id: str = "",
    budget: MemoryBudget | None = None,
    check_size: Callable[[int], None] | None = None,
) -> BulkOutput:
    """Run ``query`` and write its files into ``out_dir`` (which must not exist yet: it
    appears, complete, only at the end).

    The cells run one after the other, so the job holds one query's stream at a time: it
    reserves that from ``budget`` (the memory the service's queries share) for its whole
    run, waiting (within ``timeout``) while the memory is taken.  ``check_size(n)`` is
    called with the bytes written so far after each file (it raises to stop the job: the
    owner's result storage is full).

    Raises
    ------
    SkyvaultError
        The query failed (time-out, cancellation...): nothing is left behind.
    """
    request = query.request
    limit = request.max_file_bytes or max_file_bytes
    scan = query.plan.scans[0]
    cells = _query_cells(query, archive)
    reservation = None
    if budget is not None:
        need = estimate_stream_bytes(query.plan.columns, None)
        deadline = None if timeout is None else time.monotonic() + timeout
        reservation = budget.reserve(need, deadline=deadline, cancel=cancel)
    staging = out_dir.parent / f".{out_dir.name}.{uuid.uuid4().hex[:8]}"
    pool = ThreadPoolExecutor(1, thread_name_prefix="bulk-hash") if _HASH_BEHIND else None
    try:
        staging.mkdir(parents=True)
        written: list[_Written] = []

        def check(more: int) -> None:
            """Called as each file is done (``more``: the bytes of files not yet in
            ``written``)."""
            if check_size is not None:
                check_size(sum(w.size for w in written) + more)

        for cell in cells:
            if cancel is not None and cancel.cancelled:
                raise QueryCancelled("the job was aborted")
            plan = dataclasses.replace(
                query.plan,
                scans=(dataclasses.replace(scan, files=cell.files, ranges=cell.ranges),),
            )
            result = archive.executor.execute(plan, timeout=timeout, cancel=cancel)
            try:
                if request.format == "hats":
                    written += _write_hats_cell(staging, query, cell, result.batches, pool)
                else:
                    options = WriteOptions(spool_dir)
                    written += _write_cell(
                        staging, query, cell, result, limit, options, check, pool
                    )
            finally:
                close = getattr(result.batches, "close", None)
                if close is not None:
                    close()
            check(0)
        entries = [w.entry((staging / w.path).stat().st_mtime) for w in written]
        if request.format == "hats":
            entries += _finish_hats(staging, query, written)
        entries.sort(key=lambda e: e.path)
        manifest = Manifest(job_id or out_dir.name, tuple(entries), stored=True)
        text = json.dumps(manifest.to_json(), separators=(",", ":")) + "\n"
        (staging / MANIFEST_FILE).write_text(text)
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if reservation is not None:
            reservation.close()
    return BulkOutput(out_dir, manifest)


def _write_cell(
    staging: Path,
    query: BulkQuery,
    cell: _Cell,
    result: Any,
    limit: int,
    options: WriteOptions,
    check: Callable[[int], None],
    pool: ThreadPoolExecutor | None,
) -> list[_Written]:
    fmt: OutputFormat = find_output_format(FORMATS[query.request.format] or "parquet")
    batches = _Peekable(_sliced(result.batches, max(1, limit // 8)))
    stem = cell.stem
    files: list[_Written] = []
    infos = [("QUERY", query.adql, None)]
    while batches.more():
        one = _Written(f"{stem}_{len(files):03d}.{fmt.extension}", cell.order, cell.pixel, pool)

        def take(one: _Written = one) -> Iterator[pa.RecordBatch]:
            while batches.more() and (
                one.rows == 0 or (one.size < limit and one.arrow_bytes < limit)
            ):
                batch = batches.pop()
                one.rows += batch.num_rows
                one.arrow_bytes += batch.nbytes
                yield batch

        chunks = fmt.write(take(), result.columns, result.schema, lambda: False, infos, options)
        with open(staging / one.path, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
                one.add(chunk)
        files.append(one)
        check(sum(f.size for f in files))
    return files


def _hats_path(order: int, pixel: int) -> str:
    return f"dataset/Norder={order}/Dir={pixel // 10000 * 10000}/Npix={pixel}.parquet"


def _write_hats_cell(
    staging: Path,
    query: BulkQuery,
    cell: _Cell,
    batches: Iterator[pa.RecordBatch],
    pool: ThreadPoolExecutor | None,
) -> list[_Written]:
    assert cell.order is not None and cell.pixel is not None
    one = _Written(_hats_path(cell.order, cell.pixel), cell.order, cell.pixel, pool)
    writer: pq.ParquetWriter | None = None
    path = staging / one.path
    try:
        for batch in batches:
            if batch.num_rows == 0:
                continue
            names = [*batch.schema.names[:-1], _HEALPIX]
            table = pa.Table.from_batches([batch]).rename_columns(names)
            table = table.set_column(
                len(names) - 1, _HEALPIX, table.column(_HEALPIX).cast(pa.int64())
            )
            if writer is None:
                path.parent.mkdir(parents=True, exist_ok=True)
                writer = pq.ParquetWriter(path, table.schema, write_page_index=True)
            writer.write_table(table)
            one.rows += table.num_rows
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        return []
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            one.add(block)
    return [one]


def _write_dataset_metadata(dataset: Path, written: Sequence[_Written]) -> None:
    """``_common_metadata`` (the schema) and ``_metadata`` (every partition's row groups,
    in HEALPix order, each naming its file) with pyarrow, as the catalogue's ingest writes
    them — ``hats`` is a test-time dependency only."""
    ordered = sorted(written, key=lambda w: (w.order or 0, w.pixel or 0))
    metadata = []
    for w in ordered:
        md = pq.read_metadata(dataset.parent / w.path)
        md.set_file_path(Path(w.path).relative_to("dataset").as_posix())
        metadata.append(md)
    pq.write_metadata(
        pq.read_schema(dataset.parent / ordered[0].path), dataset / "_common_metadata"
    )
    combined = metadata[0]
    for md in metadata[1:]:
        combined.append_row_groups(md)
    combined.write_metadata_file(str(dataset / "_metadata"))


def _finish_hats(
    staging: Path, query: BulkQuery, written: Sequence[_Written]
) -> list[ManifestEntry]:
    """The HATS catalogue's own files around the partitions written: their entries."""
    meta = query.meta
    dataset = staging / "dataset"
    dataset.mkdir(exist_ok=True)
    lines = ["Norder,Npix"] + [f"{w.order},{w.pixel}" for w in written]
    (staging / "partition_info.csv").write_text("\n".join(lines) + "\n")
    if written:
        _write_dataset_metadata(dataset, written)
    nrows = sum(w.rows for w in written)
    orders = [w.order or 0 for w in written]
    fraction = sum(1.0 / (12 * 4**o) for o in orders)
    props = {
        "obs_collection": meta.name,
        "dataproduct_type": "object",
        "hats_nrows": nrows,
        "hats_col_ra": meta.ra_column,
        "hats_col_dec": meta.dec_column,
        "hats_col_healpix": _HEALPIX,
        "hats_col_healpix_order": 29,
        "hats_npix_suffix": ".parquet",
        "hats_order": max(orders, default=0),
        "moc_sky_fraction": f"{fraction:.5f}",
        "hats_builder": "skyvault bulk job",
    }
    text = "#HATS catalog\n" + "".join(f"{k}={v}\n" for k, v in props.items())
    (staging / "properties").write_text(text)
    (staging / "hats.properties").write_text(text)
    extra = ["properties", "hats.properties", "partition_info.csv"]
    extra += [p.relative_to(staging).as_posix() for p in sorted(dataset.glob("_*metadata"))]
    entries = []
    for rel in extra:
        one = _Written(rel, None, None)
        one.add((staging / rel).read_bytes())
        entry = one.entry((staging / rel).stat().st_mtime)
        entries.append(dataclasses.replace(entry, rows=None))
    return entries


def bounded_lifetime(requested: int, until: datetime, now: datetime) -> int:
    """A signature lifetime no longer than the time left until ``until``."""
    left = math.floor((until - now).total_seconds())
    return max(1, min(requested, left))
