"""Indexes on user tables: what youcat's ``table-update`` job (pyvo's ``create_index``) does here.

A request names a table, a column (or a comma-separated pair) and whether the index is
unique; youcat also takes ``INDEX_TYPE=long-lat`` for a spherical position pair.  Two kinds
of index come out of it, each a new version of the table published atomically through
:func:`skyvault.catalog.layout.building` (a failed or interrupted index leaves the table as
it was; queries see the table before or after, never half of it):

* **A column index** is what TAP_SCHEMA publishes (``columns.indexed = 1``).  DuckDB over
  Parquet has no B-tree to build: it skips row groups by their min/max statistics (zone
  maps).  So a plain table is rewritten sorted by the column (DuckDB sorts out of core),
  which makes those statistics narrow and a ``WHERE col = x`` or a range read few row
  groups; a HATS table keeps its rows in ``_healpix_29`` order (its sky pruning needs it),
  and its files are hard-linked into the new version with the metadata changed.  A unique
  index first checks that no value repeats (an error names one that does) and is recorded
  (:mod:`skyvault.workspace.unique`): later loads that would repeat a value are refused.
* **A sky index** — ``INDEX_TYPE=long-lat`` with the two columns, or an index on the RA
  column of the table's declared position (what pyvo, which cannot send ``INDEX_TYPE``,
  asks) — re-partitions the table as a HATS catalogue with a margin catalogue, by the
  ingest's own partitioner (:func:`skyvault.catalog.ingest.write_hats`).  From then on the
  table prunes by position and cross-matches like an archive table: the cell join, and on a
  Dask cluster the aligned partner partitions with margins.

Every other file of the old version (anything a workspace keeps beside the data) is carried
over unchanged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from skyvault.bulk.manifest import MANIFEST_FILE, ManifestHasher
from skyvault.catalog.ingest import HEALPIX_COLUMN, IngestOptions, write_hats
from skyvault.catalog.layout import TableName, building
from skyvault.catalog.metadata import METADATA_FILE, ColumnMeta, TableMeta
from skyvault.catalog.readers import InputFile
from skyvault.catalog.registry import Registry, StoredTable
from skyvault.engine.executor import CancelToken
from skyvault.errors import CatalogNotFound, IngestError, QueryCancelled, UsageError
from skyvault.sqltext import quote_identifier, string_literal
from skyvault.workspace.unique import unique_columns, write_unique

__all__ = [
    "INDEX_TYPES",
    "IndexRequest",
    "create_index",
    "find_column",
    "index_request",
    "plan_index",
]

#: ``INDEX_TYPE`` values youcat defines; ``x-y`` (a Cartesian pair) is not supported here.
INDEX_TYPES = ("long-lat", "x-y", "unique")

#: Files of a version written by the table's layout; anything else is carried over.
_LAYOUT_ENTRIES = frozenset(
    {
        "dataset",
        "margin",
        "partition_info.csv",
        "properties",
        "hats.properties",
        METADATA_FILE,
        MANIFEST_FILE,
    }
)

_SORT_BATCH_ROWS = 65_536
_ROW_GROUP_ROWS = 32_768


@dataclass(frozen=True)
class IndexRequest:
    """What a ``table-update`` job asks, as sent (names not yet checked against the table)."""

    table: str
    index: str
    unique: bool = False
    index_type: str | None = None


@dataclass(frozen=True)
class IndexPlan:
    """A request checked against the table's metadata: which columns, which kind."""

    name: TableName
    columns: tuple[str, ...]
    unique: bool
    sky: bool

    def describe(self) -> str:
        if self.sky:
            return f"a sky index on ({', '.join(self.columns)}) of {self.name}"
        return f"{'a unique' if self.unique else 'an'} index on {self.columns[0]} of {self.name}"


def _single(params: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = params.get(name.upper(), [])
    if len(values) > 1:
        raise UsageError(
            f"parameter {name} was given {len(values)} times; it takes one value",
            hint=f"send {name} once",
        )
    return values[0] if values else None


def index_request(params: Mapping[str, Sequence[str]]) -> IndexRequest:
    """The request in a ``table-update`` job's parameters (names upper-cased: ``TABLE``,
    ``INDEX``, ``UNIQUE``, ``INDEX_TYPE``); what is missing or malformed is a
    :class:`UsageError` saying what to send."""
    table = (_single(params, "table") or "").strip()
    index = (_single(params, "index") or "").strip()
    if not table:
        raise UsageError(
            "missing parameter 'table'", hint="send table=SCHEMA.TABLE, the table to index"
        )
    if not index:
        raise UsageError(
            "missing parameter 'index'",
            hint="send index=COLUMN (or index=RA,DEC with INDEX_TYPE=long-lat)",
        )
    unique_text = (_single(params, "unique") or "false").strip().lower()
    if unique_text not in ("true", "false"):
        raise UsageError(f"unique={unique_text!r} is not true or false", hint="send unique=true")
    index_type = _single(params, "index_type")
    unique = unique_text == "true"
    if index_type is not None:
        index_type = index_type.strip().lower()
        if index_type not in INDEX_TYPES:
            raise UsageError(
                f"INDEX_TYPE={index_type!r} is not an index type",
                hint="send INDEX_TYPE=long-lat for a sky position, or leave it out",
            )
        if index_type == "unique":
            unique, index_type = True, None
    return IndexRequest(table, index, unique, index_type)


def find_column(meta: TableMeta, name: str) -> ColumnMeta:
    """The column ``name`` of ``meta``: exact, else the one matching case-insensitively."""
    for column in meta.columns:
        if column.name == name:
            return column
    folded = [c for c in meta.columns if c.name.lower() == name.lower()]
    if len(folded) == 1:
        return folded[0]
    raise UsageError(
        f"column not found: {name} in table {meta.qualified_name}",
        hint=f"its columns are: {', '.join(c.name for c in meta.columns[:30])}",
    )


def _ucd_words(column: ColumnMeta) -> set[str]:
    return {w.strip().lower() for w in (column.ucd or "").split(";")}


def _declared_dec(meta: TableMeta, ra: ColumnMeta) -> ColumnMeta | None:
    """The Dec paired with ``ra`` in ``meta``'s declared position: the table's own pair, or
    the one column with UCD ``pos.eq.dec`` when ``ra`` carries ``pos.eq.ra``."""
    if meta.ra_column == ra.name and meta.dec_column is not None:
        return meta.column(meta.dec_column)
    if "pos.eq.ra" not in _ucd_words(ra):
        return None
    decs = [c for c in meta.columns if "pos.eq.dec" in _ucd_words(c)]
    main = [c for c in decs if "meta.main" in _ucd_words(c)]
    for candidates in (main, decs):
        if len(candidates) == 1:
            return candidates[0]
    return None


_NUMERIC = {"double", "float", "int", "long", "short", "unsignedByte"}


def plan_index(meta: TableMeta, request: IndexRequest) -> IndexPlan:
    """Check ``request`` against the table's metadata; which columns and which kind.

    Raises
    ------
    UsageError
        An unknown column, a pair without ``INDEX_TYPE=long-lat``, a sky pair that is not
        two numeric columns, a unique sky index, ``INDEX_TYPE=x-y``, or a column already
        indexed (as youcat says).
    """
    name = TableName(meta.schema, meta.name)
    wanted = [c.strip() for c in request.index.split(",")]
    if any(not c for c in wanted) or len(wanted) > 2:
        raise UsageError(
            f"index={request.index!r} does not name one column or a pair",
            hint="send index=COLUMN, or index=RA,DEC with INDEX_TYPE=long-lat",
        )
    columns = [find_column(meta, c) for c in wanted]
    if request.index_type == "x-y":
        raise UsageError(
            "INDEX_TYPE=x-y (a Cartesian pair) is not supported",
            hint="index each column on its own, or use INDEX_TYPE=long-lat for a sky position",
        )
    sky = request.index_type == "long-lat"
    if len(columns) == 1:
        dec = _declared_dec(meta, columns[0])
        if sky and dec is None:
            raise UsageError(
                f"{columns[0].name} is not the RA of a declared position of {name}",
                hint="name both columns: index=RA,DEC with INDEX_TYPE=long-lat",
            )
        if dec is not None and (sky or not request.unique):
            sky = True
            columns.append(dec)
    elif not sky and not request.unique and _declared_dec(meta, columns[0]) == columns[1]:
        sky = True  # the declared position, named as a pair
    elif not sky:
        raise UsageError(
            f"an index on two columns ({request.index}) must be a sky index",
            hint="add INDEX_TYPE=long-lat, or index one column",
        )
    if sky:
        if request.unique:
            raise UsageError(
                "a sky index cannot be unique", hint="send unique=false for a position"
            )
        for column in columns:
            if column.datatype not in _NUMERIC or column.arraysize:
                raise UsageError(
                    f"{column.name} cannot be a sky coordinate: it holds {column.datatype}",
                    hint="a sky index needs two numeric columns in degrees (RA, Dec)",
                )
        if columns[0].name == columns[1].name:
            raise UsageError("RA and Dec must be two different columns")
        if (
            meta.kind == "hats"
            and meta.ra_column == columns[0].name
            and meta.dec_column == columns[1].name
            and columns[0].indexed
        ):
            raise UsageError(
                f"column is already indexed: {columns[0].name} in table {name}",
                hint="the table is already partitioned on the sky by this position",
            )
    else:
        column = columns[0]
        if column.indexed:
            raise UsageError(f"column is already indexed: {column.name} in table {name}")
        if column.arraysize is not None and column.datatype != "char":
            raise UsageError(
                f"column {column.name} holds arrays, which cannot be indexed",
                hint="index a column of single values",
            )
    return IndexPlan(name, tuple(c.name for c in columns), request.unique, sky)


def create_index(
    data_dir: Path,
    plan: IndexPlan,
    *,
    options: IngestOptions | None = None,
    cancel: CancelToken | None = None,
) -> TableMeta:
    """Make the index ``plan`` describes and publish the table's new version; its metadata.

    ``cancel`` (an ABORT of the job) stops a sky index between two batches of rows: the
    build is removed and the table stays as it was.

    Raises
    ------
    CatalogNotFound
        The table is gone (dropped meanwhile).
    QueryCancelled
        ``cancel`` was cancelled while the sky index was written.
    IngestError
        A unique index over repeated values, bad positions (naming the row and column), or
        another writer of the table at work.
    """
    name = plan.name
    link = data_dir / name.schema / name.table
    with building(data_dir, name) as build, ManifestHasher(build.path) as hasher:
        # Read the table under its lock: loads take the same lock, so none is lost.
        if not link.exists():
            raise CatalogNotFound(f"no table {name}")
        stored = Registry._load(link.resolve(), link)
        if plan.sky:
            meta = _sky_partition(
                stored, build.path, plan, options or IngestOptions(), hasher, cancel
            )
        elif plan.unique or stored.partitions is None:
            meta = _column_index(stored, build.path, plan, hasher)
        else:
            meta = _relink(stored, build.path, plan, hasher)
        _carry_over(stored.root, build.path)
        if plan.unique and not plan.sky:  # kept on later loads (workspace/unique.py)
            write_unique(build.path, [*unique_columns(stored.root), plan.columns[0]])
        # A new version: its creation time is what caches of the table's metadata
        # (TAP_SCHEMA) tell versions apart by, to the microsecond.
        created = datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds")
        meta = dataclasses.replace(meta, created=created)
        meta.write(build.path)
        hasher.finish(build.version)
    return meta


# --- sky index ------------------------------------------------------------------------------


class _StoredInput(InputFile):
    """A Parquet file of a stored table as ingest input: its columns but ``_healpix_29``."""

    format = "parquet"

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        super().__init__(path)
        self.schema = schema
        with pq.ParquetFile(path) as handle:
            self.num_rows = handle.metadata.num_rows

    def batches(self, columns: Sequence[str] | None, batch_rows: int) -> Iterator[pa.RecordBatch]:
        wanted = list(columns) if columns is not None else self.schema.names
        target = pa.schema([self.schema.field(n) for n in wanted])
        with pq.ParquetFile(self.path, pre_buffer=False) as handle:
            # Stored tables have small row groups (32k rows, for cone searches): read runs
            # of them that make a whole batch, or every batch of the ingest's passes would
            # be a row group (a third more CPU for 10M rows).
            for groups in _runs(handle.metadata, batch_rows):
                for batch in handle.iter_batches(
                    batch_size=batch_rows, columns=wanted, row_groups=groups
                ):
                    yield batch if batch.schema == target else batch.cast(target)


def _runs(footer: pq.FileMetaData, rows: int) -> Iterator[list[int]]:
    """Consecutive row groups of ``footer`` in runs of at least ``rows`` rows (the last
    may hold fewer)."""
    run: list[int] = []
    held = 0
    for group in range(footer.num_row_groups):
        run.append(group)
        held += footer.row_group(group).num_rows
        if held >= rows:
            yield run
            run, held = [], 0
    if run:
        yield run


def _data_schema(stored: StoredTable) -> pa.Schema:
    """The table's columns as stored, without ``_healpix_29``."""
    files = stored.all_files
    schema = pq.read_schema(files[0]) if files else pa.schema([])
    names = [c.name for c in stored.meta.columns if c.name != HEALPIX_COLUMN]
    return pa.schema([schema.field(n) for n in names if n in schema.names])


class _Cancellable:
    """Ingest progress that stops the partitioning once ``cancel`` is cancelled."""

    def __init__(self, cancel: CancelToken | None) -> None:
        self.cancel = cancel

    def stage(self, label: str, total: int | None) -> None:
        self.advance(0)

    def advance(self, rows: int) -> None:
        if self.cancel is not None and self.cancel.cancelled:
            raise QueryCancelled("the index was aborted; the table is as it was")


def _sky_partition(
    stored: StoredTable,
    root: Path,
    plan: IndexPlan,
    opts: IngestOptions,
    hasher: ManifestHasher,
    cancel: CancelToken | None = None,
) -> TableMeta:
    ra, dec = plan.columns
    schema = _data_schema(stored)
    inputs: list[InputFile] = [_StoredInput(Path(f), schema) for f in stored.all_files]
    inputs = [f for f in inputs if f.num_rows] or inputs[:1]
    if not inputs:
        raise IngestError(f"{plan.name} has no rows to partition")
    nrows, partitions = write_hats(
        inputs, root, plan.name, ra, dec, opts, _Cancellable(cancel), on_written=hasher.add
    )
    meta = stored.meta
    healpix = ColumnMeta(
        name=HEALPIX_COLUMN,
        datatype="long",
        description="HEALPix index (NESTED scheme, order 29) of the position",
        ucd="pos.healpix",
        indexed=True,
        arrow_type="int64",
        nullable=False,
    )
    others = [c for c in meta.columns if c.name != HEALPIX_COLUMN]
    columns = [healpix, *others]
    marked: list[ColumnMeta] = []
    for index, column in enumerate(columns):
        changes: dict[str, object] = {"column_index": index}
        if column.name in (ra, dec):
            words = _ucd_words(column)
            default = "pos.eq.ra;meta.main" if column.name == ra else "pos.eq.dec;meta.main"
            changes.update(unit=column.unit or "deg", ucd=column.ucd if words - {""} else default)
        if column.name == ra:
            changes["indexed"] = True
        marked.append(dataclasses.replace(column, **changes))  # type: ignore[arg-type]
    return dataclasses.replace(
        meta,
        kind="hats",
        columns=tuple(marked),
        nrows=nrows,
        ra_column=ra,
        dec_column=dec,
        margin_arcsec=opts.margin_arcsec,
        max_rows_per_partition=opts.max_rows_per_partition,
        n_partitions=partitions,
    )


# --- column index ---------------------------------------------------------------------------


def _indexed(meta: TableMeta, column: str) -> TableMeta:
    return dataclasses.replace(
        meta,
        columns=tuple(
            dataclasses.replace(c, indexed=True) if c.name == column else c for c in meta.columns
        ),
    )


def _check_unique(con: duckdb.DuckDBPyConnection, source: str, column: str) -> None:
    row = con.execute(
        f"SELECT {column}, COUNT(*) FROM {source} WHERE {column} IS NOT NULL "
        f"GROUP BY 1 HAVING COUNT(*) > 1 LIMIT 1"
    ).fetchone()
    if row is not None:
        raise IngestError(
            f"cannot make a unique index: the value {row[0]!r} occurs {row[1]} times",
            hint="remove the repeated rows, or ask for an index that is not unique",
        )


@contextlib.contextmanager
def _duckdb(work: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    work.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(config={"threads": 2, "memory_limit": "1GB"})
    try:
        con.execute(f"SET temp_directory = {string_literal(str(work))}")
        con.execute("SET preserve_insertion_order = true")
        yield con
    finally:
        con.close()
        shutil.rmtree(work, ignore_errors=True)


def _column_index(
    stored: StoredTable, root: Path, plan: IndexPlan, hasher: ManifestHasher
) -> TableMeta:
    """Plain table: rewritten sorted by the column (narrow row-group statistics).  HATS
    table with a unique index: its values checked, its files linked unchanged."""
    column = plan.columns[0]
    files = list(stored.all_files)
    quoted = quote_identifier(column)
    source = f"read_parquet([{', '.join(string_literal(f) for f in files)}])"
    with _duckdb(root / ".sort") as con:
        if files and plan.unique:
            _check_unique(con, source, quoted)
        if stored.partitions is not None:
            return _relink(stored, root, plan, hasher)
        schema = pq.read_schema(files[0]) if files else pa.schema([])
        dataset = root / "dataset"
        dataset.mkdir()
        out = dataset / "part-00000.parquet"
        if not files:
            pq.write_table(schema.empty_table(), out)
        else:
            reader: pa.RecordBatchReader = con.sql(
                f"SELECT * FROM {source} ORDER BY {quoted} NULLS LAST"
            ).to_arrow_reader(_SORT_BATCH_ROWS)
            with pq.ParquetWriter(out, schema, write_page_index=True) as writer:
                for batch in reader:
                    writer.write_batch(
                        pa.RecordBatch.from_arrays(
                            [batch.column(i).cast(f.type) for i, f in enumerate(schema)],
                            schema=schema,
                        ),
                        row_group_size=_ROW_GROUP_ROWS,
                    )
        pq.write_metadata(schema, dataset / "_common_metadata")
    return _indexed(stored.meta, column)


def _relink(stored: StoredTable, root: Path, plan: IndexPlan, hasher: ManifestHasher) -> TableMeta:
    """The HATS files of ``stored`` hard-linked into ``root`` (the same bytes: nothing is
    rewritten), appended rows folded in first when there are any."""
    if stored.deltas is not None:
        # Appended rows live beside the version they were appended to: fold them by
        # re-partitioning (the position is the table's own).
        assert stored.meta.ra_column is not None and stored.meta.dec_column is not None
        sky = IndexPlan(plan.name, (stored.meta.ra_column, stored.meta.dec_column), False, True)
        meta = _sky_partition(stored, root, sky, IngestOptions(), hasher)
        return _indexed(meta, plan.columns[0])
    for entry in ("dataset", "margin"):
        source = stored.root / entry
        if source.is_dir():
            shutil.copytree(source, root / entry, copy_function=os.link)
    for entry in ("partition_info.csv", "properties", "hats.properties"):
        if (stored.root / entry).is_file():
            os.link(stored.root / entry, root / entry)
    return _indexed(stored.meta, plan.columns[0])


def _carry_over(old: Path, new: Path) -> None:
    """Link the old version's own files (not the layout's) into the new one."""
    for entry in old.iterdir():
        if entry.name in _LAYOUT_ENTRIES or (new / entry.name).exists():
            continue
        if entry.is_dir():
            shutil.copytree(entry, new / entry.name, copy_function=os.link)
        else:
            os.link(entry, new / entry.name)
