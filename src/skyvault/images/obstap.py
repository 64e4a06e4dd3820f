"""ObsTAP: ``ivoa.ObsCore``, the union of the image collections a caller may read.

``ivoa.ObsCore`` is a :class:`~skyvault.catalog.views.View`: its rows are those of every
collection's ``C.obscore`` table (:func:`~skyvault.images.obscore.is_obscore_table`) that
the caller may read, decided per request, so a hidden collection contributes no row and
the counts are the sums over the visible ones.  Its columns are :data:`obscore.COLUMNS`
(the 30 mandatory ObsCore 1.1 columns and the optional ones skyvault fills) with the
standard's units, UCDs and ``obscore:`` utypes; skyvault's own columns (``band``,
``image_file``, ``image_hdu``) stay in the collections' tables.  Each member is pruned by
its own HEALPix partitions on ``s_ra``/``s_dec``.

``access_url`` is computed when read (in ``ivoa.ObsCore`` and in each ``C.obscore``): the
DataLink ``{links}`` URL of the row's ``obs_publisher_did`` under the service's public
base URL, with ``access_format`` ``application/x-votable+xml;content=datalink`` (the
stored rows hold no URL: the data root does not know where it is served, and that can
change).  Without a base URL (the Python API) the stored values are read as they are.

``ivoa.ObsCore`` exists when the archive holds at least one collection (empty for a caller
who may read none of them), so that an image service is an ObsTAP service for everyone.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence

import pyarrow as pa

from skyvault.catalog.layout import TableName
from skyvault.catalog.metadata import ColumnMeta, TableMeta, votable_type
from skyvault.catalog.views import DerivedColumn, View
from skyvault.formats.votable import ServiceDescriptor
from skyvault.images.obscore import COLUMNS, EXTENSION_COLUMNS, ObsCoreColumn, is_obscore_table
from skyvault.sky.stcs import REGION_XTYPE

__all__ = [
    "DATALINK_FORMAT",
    "DATALINK_STANDARD_ID",
    "OBSCORE_DATA_MODEL",
    "OBSCORE_SCHEMA",
    "OBSCORE_TABLE",
    "PUBLISHER_DID_UTYPE",
    "collection_tables",
    "datalink_services",
    "links_prefix",
    "obscore_meta",
    "obscore_views",
]

OBSCORE_SCHEMA = "ivoa"
OBSCORE_TABLE = "ObsCore"
OBSCORE_DATA_MODEL = "ivo://ivoa.net/std/ObsCore#core-1.1"
DATALINK_FORMAT = "application/x-votable+xml;content=datalink"
DATALINK_STANDARD_ID = "ivo://ivoa.net/std/DataLink#links-1.1"
PUBLISHER_DID_UTYPE = "obscore:Curation.PublisherDID"

_DESCRIPTION = (
    "ObsCore 1.1 records of the images of every collection you may read (the union of "
    "their COLLECTION.obscore tables); access_url is each image's DataLink document"
)


def _view_columns(members: Sequence[TableMeta]) -> tuple[ObsCoreColumn, ...]:
    """The columns of ``ivoa.ObsCore`` over ``members``: the ObsCore ones, then the
    extension columns (Rubin's ``lsst_*``) every member has (all of them without members)."""
    shared = [c for c in EXTENSION_COLUMNS
              if all(c.name in {m.name for m in t.columns} for t in members)]  # fmt: skip
    return (*COLUMNS, *shared)


def _columns(columns: Sequence[ObsCoreColumn]) -> tuple[ColumnMeta, ...]:
    out = []
    for index, c in enumerate(columns):
        datatype, arraysize, xtype = votable_type(c.type)
        out.append(
            ColumnMeta(
                name=c.name,
                datatype=datatype,
                arraysize=arraysize,
                xtype=REGION_XTYPE if c.name == "s_region" else xtype,
                unit=c.unit,
                ucd=c.ucd,
                utype=c.utype,
                description=c.description,
                principal=c.principal,
                indexed=c.name in ("s_ra", "s_dec"),
                std=c.utype is not None,
                column_index=index,
                arrow_type=str(c.type),
            )
        )
    return tuple(out)


_EMPTY = pa.schema([])


def view_schema(meta: TableMeta) -> pa.Schema:
    """The Arrow schema of ``ivoa.ObsCore`` as ``meta`` describes it (an empty view's)."""
    types = {c.name: c.type for c in (*COLUMNS, *EXTENSION_COLUMNS)}
    return pa.schema([pa.field(c.name, types[c.name]) for c in meta.columns])


def obscore_meta(members: Sequence[TableMeta]) -> TableMeta:
    """The metadata of ``ivoa.ObsCore`` over ``members`` (its row count is theirs)."""
    return TableMeta(
        schema=OBSCORE_SCHEMA,
        name=OBSCORE_TABLE,
        kind="hats",
        columns=_columns(_view_columns(members)),
        nrows=sum(m.nrows for m in members),
        description=_DESCRIPTION,
        ra_column="s_ra",
        dec_column="s_dec",
        primary_key="obs_publisher_did",
        region_radius=_widest(members),
    )


def _widest(members: Sequence[TableMeta]) -> float | None:
    """The largest ``region_radius`` of ``members`` (None if one has none: no pruning on
    ``s_region``)."""
    radii = [m.region_radius for m in members]
    if any(r is None for r in radii):
        return None
    return max((r for r in radii if r is not None), default=0.0)


def links_prefix(base_url: str) -> str:
    """The start of an image's DataLink URL under the TAP base URL ``base_url`` (the
    ``obs_publisher_did``, percent-encoded, follows)."""
    return f"{base_url.rstrip('/')}/datalink/links?ID="


def with_region_xtype(meta: TableMeta) -> TableMeta:
    """A collection's ObsCore table with ``s_region`` declared a region column
    (``adql:REGION``: CONTAINS/INTERSECTS read it), as tables ingested before it was are not."""
    columns = tuple(
        dataclasses.replace(c, xtype=REGION_XTYPE) if c.name == "s_region" else c
        for c in meta.columns
    )
    return dataclasses.replace(meta, columns=columns)


class _MetaCache:
    """One metadata object per set of tables it is made from (``ivoa.ObsCore`` of its
    members, a collection's table with its region column): the plan cache finds a query's
    translation again by the identity of the metadata it was checked against."""

    def __init__(self, make: Callable[[Sequence[TableMeta]], TableMeta], size: int = 64) -> None:
        self.make = make
        self.size = size
        self._lock = threading.Lock()
        self._entries: dict[tuple[int, ...], tuple[tuple[TableMeta, ...], TableMeta]] = {}

    def get(self, members: Sequence[TableMeta]) -> TableMeta:
        key = tuple(map(id, members))
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                return entry[1]
        meta = self.make(members)
        with self._lock:
            if len(self._entries) >= self.size:
                self._entries.pop(next(iter(self._entries)))
            # The members are held, so that their ids are not reused while the key lives.
            self._entries[key] = (tuple(members), meta)
        return meta


_META = _MetaCache(obscore_meta)
_COLLECTION_META = _MetaCache(lambda one: with_region_xtype(one[0]), size=256)


class _Collections:
    """Which tables are collections' ObsCore tables, remembered per metadata object (every
    query asks, of every visible table)."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._known: dict[int, tuple[TableMeta, bool]] = {}

    def of(self, tables: Sequence[TableMeta]) -> list[TableMeta]:
        out = []
        for meta in tables:
            with self._lock:
                known = self._known.get(id(meta))
            if known is None or known[0] is not meta:
                known = (meta, is_obscore_table(meta))
                with self._lock:
                    if len(self._known) >= self.size:
                        self._known.clear()
                    self._known[id(meta)] = known  # the meta is held: its id stays its own
            if known[1]:
                out.append(meta)
        return out


_COLLECTIONS = _Collections()


def collection_tables(tables: Sequence[TableMeta]) -> list[TableMeta]:
    """The collections' ObsCore tables among ``tables`` (by schema)."""
    return sorted(_COLLECTIONS.of(tables), key=lambda m: (m.schema, m.name))


def obscore_views(
    visible: Sequence[TableMeta], base_url: str | None, *, offered: bool = True
) -> list[View]:
    """The views a caller who may read ``visible`` queries the images through:
    ``ivoa.ObsCore`` over the visible collections (when ``offered``: the archive holds
    any), and each visible ``C.obscore`` with its ``access_url`` computed under
    ``base_url`` (the TAP service's public URL; None: stored values)."""
    members = collection_tables(visible)
    derived: tuple[DerivedColumn, ...] = ()
    if base_url is not None:
        derived = (
            DerivedColumn("access_url", "obs_publisher_did", links_prefix(base_url)),
            DerivedColumn("access_format", None, DATALINK_FORMAT),
        )
    views = []
    if offered or members:
        meta = _META.get(members)
        views.append(
            View(
                meta=meta,
                members=tuple(TableName(m.schema, m.name) for m in members),
                schema=view_schema(meta),
                derived=derived,
            )
        )
    if derived:
        views.extend(
            View(
                meta=_COLLECTION_META.get([m]),
                members=(TableName(m.schema, m.name),),
                schema=_EMPTY,  # never read: the view has its member
                derived=derived,
            )
            for m in members
        )
    return views


def datalink_services(
    columns: Sequence[ColumnMeta], base_url: str | None
) -> tuple[ServiceDescriptor, ...]:
    """The DataLink service descriptors of a result with ``columns``: one per column that
    is an ``obs_publisher_did`` (by its ObsCore utype, which a column keeps under any
    alias), whose ``ID`` parameter takes that column's values, so that pyvo's
    ``iter_datalinks`` finds each row's links.  None without a base URL."""
    if base_url is None:
        return ()
    url = f"{base_url.rstrip('/')}/datalink/links"
    found = [
        i for i, c in enumerate(columns) if (c.utype or "").lower() == PUBLISHER_DID_UTYPE.lower()
    ]
    return tuple(
        ServiceDescriptor(
            standard_id=DATALINK_STANDARD_ID,
            access_url=url,
            params=(("ID", index),),
            description=f"DataLink links of the images named by {columns[index].name}",
            resource_id=f"_sv_datalink{n}" if n else "_sv_datalink",
        )
        for n, index in enumerate(found)
    )
