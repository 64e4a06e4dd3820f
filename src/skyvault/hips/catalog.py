"""Catalogue HiPS (IVOA HiPS 1.0, section 4.4.3) built from a HATS table.

Layout of the output directory (see :func:`skyvault.hips.store.hips_dir`)::

    properties                     HiPS properties, dataproduct_type=catalog
    metadata.xml                   a VOTable with the tiles' FIELDs and no rows
    Moc.fits                       IVOA MOC of the cells holding sources (mocpy)
    index.html                     the HiPS in Aladin Lite (the server's own copy)
    Norder1/Allsky.tsv             every order-1 tile in one file (one header line)
    Norder2/Allsky.tsv             the same for order 2
    NorderK/DirD/NpixN.tsv         one tile, D = N // 10000 * 10000 (orders 1, 2 and deeper)

**Which source goes where.**  Sources are ranked by the ``order_by`` column (brightest
first: ascending for magnitudes, ``ascending=False`` for fluxes; NULL and NaN last; ties
broken by ``_healpix_29`` then storage position, so the ranking is a total order).  Each
HEALPix cell of order 1 takes its ``limits.allsky[0]`` first sources, each cell of order 2 the
first ``limits.allsky[1]`` of those left, each deeper cell the first ``limits.tile`` left, and
so on until every source is placed: each source is in exactly one tile, and a tile's
sources are in its cell, brightest first.  At :data:`MAX_ORDER` (cells of 0.2″) whatever is
left goes in, however many (only sources at the same position can get there).

**Bounded memory.**  The HATS table is read one partition at a time.  A partition of order
P holds one HEALPix cell, so the orders ≥ max(1, P) of its sources depend on it alone; the
orders < P depend on its neighbours too, but the sources a partition gives to those orders
are among its first ``sum(limit(k) for k < P)`` (the choice in any cell is a prefix of the
ranking of the sources in it), so a first pass keeps only those candidates and decides the
coarse orders on them, and a second pass writes each partition's tiles.

Memory: one partition (the columns needed) in the second pass; in the first, the
candidates, Σ limits(k < P) per partition of order P, about 40 bytes each (with the
default limits a partition of order 7 keeps 2,090; 10,000 of them need about 1 GB), so
very large tables want a coarser partitioning or a spilled first pass (not done yet).

The build is written beside the published HiPS and replaces it atomically
(:func:`skyvault.catalog.layout.building`).
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from skyvault import __version__
from skyvault.catalog.layout import (
    TableName,
    building,
    hats_pixel_file,
    hips_root,
    table_path,
)
from skyvault.catalog.metadata import ColumnMeta, TableMeta
from skyvault.errors import CatalogError, UsageError

__all__ = [
    "MAX_ORDER",
    "CatalogHipsResult",
    "TileLimits",
    "assign_orders",
    "build_catalog_hips",
    "tile_path",
]

#: Deepest order a catalogue HiPS goes to; what is left there is written as is.
MAX_ORDER = 20
#: Order of the HEALPix index HATS stores (``_healpix_29``).
_HPX_ORDER = 29
_HPX_COLUMN = "_healpix_29"

Int64Array = npt.NDArray[np.int64]


@dataclass(frozen=True)
class TileLimits:
    """How many sources a cell takes: ``allsky`` at orders 1 and 2, ``tile`` deeper."""

    allsky: tuple[int, int] = (30, 60)
    tile: int = 500

    def __post_init__(self) -> None:
        if min(*self.allsky, self.tile) < 1:
            raise UsageError("tile limits must be at least 1 source")

    def at(self, order: int) -> int:
        """The number of sources a cell of ``order`` (≥ 1) takes."""
        return self.allsky[order - 1] if order <= 2 else self.tile

    def before(self, order: int) -> int:
        """Sources a cell can give to all orders from 1 to ``order - 1``."""
        return sum(self.at(k) for k in range(1, order))


@dataclass
class CatalogHipsResult:
    """What :func:`build_catalog_hips` wrote."""

    path: Path
    nrows: int
    order: int
    tiles: int
    seconds: float
    sky_fraction: float
    #: Of ``seconds``, the time the atomic publish took (fsync of every file, removal of
    #: the version before last): on slow file systems most of a build.
    publish_seconds: float = 0.0
    rows_per_order: dict[int, int] = field(default_factory=dict)


def tile_path(order: int, pixel: int, ext: str = "tsv") -> str:
    """The path of a tile inside a HiPS: ``NorderK/DirD/NpixN.ext``."""
    return f"Norder{order}/Dir{pixel // 10000 * 10000}/Npix{pixel}.{ext}"


def assign_orders(
    hpx29: Int64Array,
    ranked: Int64Array,
    first: int,
    limits: TileLimits,
    stop: npt.NDArray[np.int8] | None = None,
) -> npt.NDArray[np.int8]:
    """The HiPS order of each source: the core of the selection (pure numpy).

    ``hpx29`` are the sources' ``_healpix_29``; ``ranked`` the indices of the sources to
    place, best first.  Orders ``first``, ``first + 1``… are filled in turn, each cell
    taking its best ``limits.at(order)`` sources not placed yet.  With ``stop``, a source
    is considered only at orders below its ``stop`` (it is left at -1 beyond: another pass
    places it); without, every source is placed (at :data:`MAX_ORDER` at the latest).
    """
    out = np.full(hpx29.shape[0], -1, dtype=np.int8)
    remaining = np.asarray(ranked, dtype=np.int64)
    for order in range(first, MAX_ORDER + 1):
        if stop is not None:
            remaining = remaining[stop[remaining] > order]
        if remaining.size == 0:
            break
        if order == MAX_ORDER:
            out[remaining] = order
            break
        cells = hpx29[remaining] >> (2 * (_HPX_ORDER - order))
        grouped = np.argsort(cells, kind="stable")  # by cell, best first within each
        sorted_cells = cells[grouped]
        starts = np.flatnonzero(np.r_[True, sorted_cells[1:] != sorted_cells[:-1]])
        sizes = np.diff(np.r_[starts, sorted_cells.size])
        position = np.arange(sorted_cells.size) - np.repeat(starts, sizes)
        take = position < limits.at(order)
        out[remaining[grouped[take]]] = order
        remaining = remaining[np.sort(grouped[~take])]
    return out


def _rank_keys(
    values: pa.ChunkedArray | pa.Array, ascending: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(missing flag, sort value) of the ``order_by`` column: lexsort keys, best first."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    missing = np.asarray(values.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    if pa.types.is_floating(values.type):
        data = np.asarray(values.fill_null(0).to_numpy(zero_copy_only=False), dtype=np.float64)
        missing |= np.isnan(data)
        data = np.where(missing, 0.0, data)
        key: np.ndarray = data if ascending else -data
    else:
        data_i = np.asarray(values.fill_null(0).to_numpy(zero_copy_only=False))
        key = data_i if ascending else ~data_i  # ~x is decreasing and never overflows
    return missing, key


def _ranked(table: pa.Table, order_by: str, ascending: bool) -> Int64Array:
    """Indices of one partition's rows best first (ties: ``_healpix_29``, then position;
    across partitions the partition's index comes before the position)."""
    missing, key = _rank_keys(table.column(order_by), ascending)
    hpx = table.column(_HPX_COLUMN).to_numpy()
    return np.lexsort((np.arange(len(missing)), hpx, key, missing)).astype(np.int64)


def _partitions(root: Path) -> list[tuple[int, int]]:
    with open(root / "partition_info.csv", newline="") as fh:
        return [(int(r["Norder"]), int(r["Npix"])) for r in csv.DictReader(fh)]


_NUMERIC = ("int", "uint", "float", "double", "halffloat")


_NOT_TSV = ("list", "large_list", "fixed_size", "struct", "map", "binary", "large_binary")


def _tsv_able(column: ColumnMeta) -> bool:
    """Whether a column's values can be written as one TSV field each."""
    return not column.arrow_type.startswith(_NOT_TSV)


def _check_columns(meta: TableMeta, order_by: str, columns: Sequence[str] | None) -> list[str]:
    """The tile columns (RA, Dec first) after checking every name against the table."""
    if meta.kind != "hats" or not meta.ra_column or not meta.dec_column:
        raise UsageError(
            f"{meta.qualified_name} has no sky positions",
            hint="a catalogue HiPS needs a table ingested with --ra and --dec",
        )
    names = {c.name for c in meta.columns}

    def known(name: str) -> str:
        if name not in names or name == _HPX_COLUMN:
            raise UsageError(
                f"{meta.qualified_name} has no column {name!r}",
                hint="`skyvault tables` lists the tables; columns: "
                + ", ".join(sorted(n for n in names if n != _HPX_COLUMN)),
            )
        return name

    order_col = meta.column(known(order_by))
    if not order_col.arrow_type.startswith(_NUMERIC):
        raise UsageError(
            f"--order-by {order_by} is not a numeric column ({order_col.datatype})",
            hint="order the sources by a magnitude or a flux",
        )
    if columns is None:
        chosen = [c.name for c in meta.columns if c.principal and _tsv_able(c)]
        chosen.append(order_by)
    else:
        chosen = [known(c) for c in columns]
        for name in chosen:
            if not _tsv_able(meta.column(name)):
                raise UsageError(
                    f"column {name} ({meta.column(name).arrow_type}) cannot go in a TSV tile",
                    hint="choose columns of numbers, strings or times",
                )
    out = [meta.ra_column, meta.dec_column]
    for name in chosen:
        if name not in out and name != _HPX_COLUMN:
            out.append(name)
    return out


def _tsv_lines(table: pa.Table) -> list[bytes]:
    """Each row of ``table`` as one TSV line (no end of line); tabs and line breaks inside
    strings become spaces, NULL is empty."""
    arrays = []
    for column in table.columns:
        kind = column.type
        if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
            arrays.append(column)
            continue
        text = column if pa.types.is_string(kind) or pa.types.is_large_string(kind) else None
        text = text if text is not None else pc.cast(column, pa.string())
        arrays.append(pc.replace_substring_regex(text, r"[\t\r\n]", " "))
    clean = pa.table(arrays, names=table.column_names)
    buf = io.BytesIO()
    pacsv.write_csv(
        clean,
        buf,
        pacsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none"),
    )
    data = buf.getvalue()
    if not data:
        return []
    return data.rstrip(b"\n").split(b"\n")


def _metadata_xml(path: Path, meta: TableMeta, columns: Sequence[str]) -> None:
    """``metadata.xml``: a VOTable with one FIELD per tile column and no rows."""
    from astropy.io.votable.tree import Field, Resource, TableElement, VOTableFile

    votable = VOTableFile()
    resource = Resource()
    votable.resources.append(resource)
    table = TableElement(votable, name=meta.name)
    resource.tables.append(table)
    for name in columns:
        col: ColumnMeta = meta.column(name)
        ucd = col.ucd
        if name == meta.ra_column:
            ucd = "pos.eq.ra;meta.main"
        elif name == meta.dec_column:
            ucd = "pos.eq.dec;meta.main"
        arraysize = col.arraysize
        datatype = col.datatype
        if datatype == "char" and arraysize is None:
            arraysize = "*"
        f = Field(
            votable,
            name=name,
            datatype=datatype,
            arraysize=arraysize,
            unit=col.unit,
            ucd=ucd,
        )
        if col.description:
            f.description = col.description
        table.fields.append(f)
    table.create_arrays(0)
    votable.to_xml(str(path))


def _initial_view(
    cells: Int64Array, moc_order: int, sky_fraction: float
) -> tuple[float, float, float]:
    """(ra, dec, fov) that frames the sources' cells: the whole sky when they cover much."""
    import cdshealpix
    from astropy import units as u

    if cells.size == 0 or sky_fraction > 0.25:
        return 0.0, 0.0, 180.0
    lon, lat = cdshealpix.nested.healpix_to_lonlat(cells, moc_order)
    ra, dec = lon.to_value(u.rad), lat.to_value(u.rad)
    xyz = np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])
    mean = xyz.mean(axis=1)
    norm = float(np.linalg.norm(mean))
    if norm < 1e-6:
        return 0.0, 0.0, 180.0
    centre = mean / norm
    radius = float(np.degrees(np.arccos(np.clip(centre @ xyz, -1.0, 1.0)).max()))
    cell = math.degrees(math.sqrt(4 * math.pi / (12 * 4**moc_order)))
    fov = min(180.0, 2 * (radius + cell))
    c_ra = math.degrees(math.atan2(centre[1], centre[0])) % 360.0
    c_dec = math.degrees(math.asin(float(np.clip(centre[2], -1.0, 1.0))))
    return c_ra, c_dec, fov


#: Aladin Lite as the skyvault server ships it (no CDN), and the portal's empty background
#: survey, relative to a HiPS served at ``/hips/SCHEMA.TABLE/``.
_SERVER_ROOT = "../../"
_INDEX_HTML = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>{title}</title>
<script type="importmap">
{{"imports": {{"aladin-lite": "{root}portal/vendor/aladin-lite/aladin.js"}}}}
</script>
</head>
<body>
<h1>{title}</h1>
<p>Catalogue HiPS of {table}: {nrows} sources, brightest first by {order_by}.</p>
<div id="aladin" style="width: 100%; height: 640px"></div>
<script type="module">
import A from "aladin-lite";
await A.init;
const here = window.location.href.replace(/[^/]*$/, "");
const empty = new URL("{root}portal/empty-hips", here).href;
const aladin = A.aladin("#aladin", {{survey: empty, fov: {fov}, target: "{ra} {dec}"}});
aladin.addCatalog(A.catalogHiPS(here, {{name: {name}}}));
</script>
</body>
</html>
"""


def _index_html(path: Path, props: dict[str, str], name: TableName) -> None:
    """``index.html``: the HiPS in Aladin Lite, both from the skyvault server (no CDN).

    A template (its scripts cannot be written from text by formats/_xml), but every value
    in its text goes through the one XML escaping."""
    import json

    from skyvault.formats._xml import escape_text

    title = escape_text(props["obs_title"])
    path.write_text(
        _INDEX_HTML.format(
            title=title,
            root=_SERVER_ROOT,
            table=escape_text(str(name)),
            nrows=props["hips_cat_nrows"],
            order_by=escape_text(props["skyvault_order_by"]),
            fov=props["hips_initial_fov"],
            ra=props["hips_initial_ra"],
            dec=props["hips_initial_dec"],
            # JSON in a script: "</" can close the element, so it is escaped.
            name=json.dumps(str(name)).replace("</", "<\\/"),
        ),
        encoding="utf-8",
    )


def build_catalog_hips(
    data_dir: Path,
    table: str,
    order_by: str,
    *,
    ascending: bool = True,
    columns: Sequence[str] | None = None,
    limits: TileLimits | None = None,
    moc_order: int = 8,
    creator_did: str | None = None,
    title: str | None = None,
    status: str = "public master clonableOnce",
    progress: Callable[[int, int], None] | None = None,
) -> CatalogHipsResult:
    """Build (or rebuild) the catalogue HiPS of ``table`` (``SCHEMA.TABLE``) under
    :func:`~skyvault.catalog.layout.hips_root` and publish it atomically.

    ``progress(done, total)`` is called after each partition.  Raises
    :class:`~skyvault.errors.UsageError` for an unknown table or column or a table
    without positions.
    """
    start = time.perf_counter()
    limits = limits or TileLimits()
    if not 0 <= moc_order <= MAX_ORDER:
        raise UsageError(f"the MOC order must be between 0 and {MAX_ORDER}, not {moc_order}")
    name = TableName.parse(table)
    source = table_path(data_dir, name).resolve()
    meta = TableMeta.read(source)
    out_columns = _check_columns(meta, order_by, columns)
    if meta.nrows == 0:
        raise UsageError(f"{name} has no rows: there is nothing to put in a HiPS")
    partitions = _partitions(source)
    files = [hats_pixel_file(source, order, pixel) for order, pixel in partitions]
    firsts = [max(1, order) for order, _ in partitions]

    # Pass 1: each partition's candidates for the orders coarser than itself.
    cand_hpx: list[Int64Array] = []
    cand_part: list[Int64Array] = []
    cand_row: list[Int64Array] = []
    cand_missing: list[np.ndarray] = []
    cand_key: list[np.ndarray] = []
    for index, (path, first) in enumerate(zip(files, firsts, strict=True)):
        keep = limits.before(first)
        if keep == 0:
            continue
        part = pq.read_table(path, columns=[_HPX_COLUMN, order_by])
        ranked = _ranked(part, order_by, ascending)[:keep]
        missing, key = _rank_keys(part.column(order_by), ascending)
        cand_hpx.append(part.column(_HPX_COLUMN).to_numpy()[ranked])
        cand_part.append(np.full(ranked.size, index, dtype=np.int64))
        cand_row.append(ranked)
        cand_missing.append(missing[ranked])
        cand_key.append(key[ranked])
    # Sources placed by pass 1, sorted by partition: partition, row, order.
    taken_part = np.zeros(0, dtype=np.int64)
    taken_row = np.zeros(0, dtype=np.int64)
    taken_order = np.zeros(0, dtype=np.int8)
    if cand_hpx:
        hpx = np.concatenate(cand_hpx)
        part_of = np.concatenate(cand_part)
        row_of = np.concatenate(cand_row)
        key_all = np.concatenate(cand_key)
        ranked_all = np.lexsort(
            (row_of, part_of, hpx, key_all, np.concatenate(cand_missing))
        ).astype(np.int64)
        stop = np.asarray(firsts, dtype=np.int8)[part_of]
        placed = assign_orders(hpx, ranked_all, 1, limits, stop=stop)
        chosen = np.flatnonzero(placed >= 0)
        chosen = chosen[np.argsort(part_of[chosen], kind="stable")]
        taken_part, taken_row, taken_order = part_of[chosen], row_of[chosen], placed[chosen]
        del hpx, part_of, row_of, key_all, ranked_all, stop, placed
        cand_hpx, cand_part, cand_row, cand_missing, cand_key = [], [], [], [], []

    header = "\t".join(out_columns).encode() + b"\n"
    read_columns = list(dict.fromkeys([_HPX_COLUMN, order_by, *out_columns]))
    allsky: dict[int, list[tuple[int, list[bytes]]]] = {1: [], 2: []}
    rows_per_order: dict[int, int] = {}
    moc_cells: list[Int64Array] = []
    ntiles = 0
    nrows = 0
    deepest = 1

    coarse: list[tuple[np.ndarray, ...]] = []  # the rows of the shared tiles, and
    coarse_lines: list[bytes] = []  # their TSV lines, in the same order

    with building(hips_root(data_dir), name) as build:
        root = build.path

        def write_tiles(orders: np.ndarray, cells: np.ndarray, lines: list[bytes]) -> int:
            """Write the tiles of rows sorted by (order, cell, rank); how many."""
            nonlocal deepest
            if not lines:
                return 0
            bounds = np.flatnonzero(
                np.r_[True, (orders[1:] != orders[:-1]) | (cells[1:] != cells[:-1])]
            )
            ends = np.r_[bounds[1:], len(lines)]
            for lo, hi in zip(bounds.tolist(), ends.tolist(), strict=True):
                order = int(orders[lo])
                pixel = int(cells[lo])
                chunk = lines[lo:hi]
                target = root / tile_path(order, pixel)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(header + b"\n".join(chunk) + b"\n")
                rows_per_order[order] = rows_per_order.get(order, 0) + hi - lo
                deepest = max(deepest, order)
                if order <= 2:
                    allsky[order].append((pixel, chunk))
            return len(bounds)

        # Pass 2: each partition's tiles.
        for index, (path, first) in enumerate(zip(files, firsts, strict=True)):
            part = pq.read_table(path, columns=read_columns)
            n = part.num_rows
            nrows += n
            hpx = part.column(_HPX_COLUMN).to_numpy().astype(np.int64)
            orders = np.full(n, -1, dtype=np.int8)
            lo, hi = np.searchsorted(taken_part, [index, index + 1])
            orders[taken_row[lo:hi]] = taken_order[lo:hi]
            ranked = _ranked(part, order_by, ascending)
            fine = assign_orders(hpx, ranked[orders[ranked] < 0], first, limits)
            orders = np.where(orders >= 0, orders, fine)
            if (orders < 0).any():  # pragma: no cover - assign_orders places every source
                raise CatalogError(f"internal error: sources of {path.name} left unplaced")
            rank = np.empty(n, dtype=np.int64)
            rank[ranked] = np.arange(n)
            cells = hpx >> (2 * (_HPX_ORDER - orders.astype(np.int64)))
            # Tiles of orders below `first` mix several partitions: written at the end.
            shared = orders < first
            if shared.any():
                rows = np.flatnonzero(shared)
                missing, key = _rank_keys(part.column(order_by), ascending)
                coarse.append(
                    (
                        orders[rows],
                        cells[rows],
                        missing[rows],
                        key[rows],
                        hpx[rows],
                        np.full(rows.size, index, dtype=np.int64),
                        rows,
                    )
                )
                coarse_lines.extend(_tsv_lines(part.select(out_columns).take(pa.array(rows))))
            own = np.flatnonzero(~shared)
            layout = own[np.lexsort((rank[own], cells[own], orders[own]))]
            lines = _tsv_lines(part.select(out_columns).take(pa.array(layout)))
            ntiles += write_tiles(orders[layout], cells[layout], lines)
            moc_cells.append(np.unique(hpx >> (2 * (_HPX_ORDER - moc_order))))
            if progress is not None:
                progress(index + 1, len(files))

        if coarse:
            c_orders, c_cells, c_missing, c_key, c_hpx, c_part, c_row = (
                np.concatenate([c[i] for c in coarse]) for i in range(7)
            )
            layout = np.lexsort((c_row, c_part, c_hpx, c_key, c_missing, c_cells, c_orders))
            ntiles += write_tiles(
                c_orders[layout], c_cells[layout], [coarse_lines[i] for i in layout.tolist()]
            )

        for order, tiles in allsky.items():
            target = root / f"Norder{order}" / "Allsky.tsv"
            target.parent.mkdir(parents=True, exist_ok=True)
            body = [line for _, chunk in sorted(tiles, key=lambda t: t[0]) for line in chunk]
            target.write_bytes(header + b"".join(line + b"\n" for line in body))

        from mocpy import MOC

        cells_all = np.unique(np.concatenate(moc_cells)) if moc_cells else np.zeros(0, np.int64)
        moc = MOC.from_healpix_cells(
            cells_all.astype(np.uint64),
            np.full(cells_all.size, moc_order, dtype=np.uint8),
            max_depth=moc_order,
        )
        moc.save(str(root / "Moc.fits"), format="fits", overwrite=True)
        sky_fraction = float(moc.sky_fraction)
        ra0, dec0, fov0 = _initial_view(cells_all, moc_order, sky_fraction)
        _metadata_xml(root / "metadata.xml", meta, out_columns)

        now = time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime())
        props = {
            "creator_did": creator_did or f"ivo://skyvault/{name.schema}/{name.table}",
            "obs_title": title or meta.description or str(name),
            "obs_description": meta.description or f"catalogue HiPS of {name}",
            "dataproduct_type": "catalog",
            "hips_version": "1.4",
            "hips_release_date": now,
            "hips_creation_date": now,
            "hips_status": status,
            "hips_tile_format": "tsv",
            "hips_order": str(deepest),
            "hips_order_min": "1",
            "hips_frame": "equatorial",
            "hips_builder": f"skyvault {__version__}",
            "hips_cat_nrows": str(nrows),
            "hips_initial_ra": f"{ra0:.6f}",
            "hips_initial_dec": f"{dec0:.6f}",
            "hips_initial_fov": f"{fov0:.6f}",
            "moc_sky_fraction": f"{sky_fraction:.6f}",
            "moc_order": str(moc_order),
            "skyvault_order_by": f"{order_by} {'ascending' if ascending else 'descending'}",
            "skyvault_source_version": source.name,
        }
        text = "".join(f"{k:<24}= {' '.join(v.split())}\n" for k, v in props.items())
        (root / "properties").write_text(text, encoding="utf-8")
        _index_html(root / "index.html", props, name)
        publish_start = time.perf_counter()

    return CatalogHipsResult(
        path=hips_root(data_dir) / name.schema / name.table,
        nrows=nrows,
        order=deepest,
        tiles=ntiles,
        seconds=time.perf_counter() - start,
        sky_fraction=sky_fraction,
        publish_seconds=time.perf_counter() - publish_start,
        rows_per_order=dict(sorted(rows_per_order.items())),
    )
