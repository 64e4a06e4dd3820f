"""``skyvault demo --stream``: replay the demo's DiaSources into the live table, a visit at a time.

A prompt-processing pipeline sends the detections of each CCD visit as it is processed.  This
producer imitates it over the built demo: it takes the demo's DiaSource rows of one CCD visit
(cycling through them in time order), gives them a new ``ccdVisitId`` (after the largest in
the table), new ``diaSourceId`` values built from it as the demo builds them, and the current
time as ``midPointTai``, and appends them with :func:`skyvault.catalog.append.append` under the
batch id ``visit-<ccdVisitId>``, every ``interval`` seconds.  A running ``skyvault serve``
shows each batch to the next query (TAP, the portal); compaction folds them in later.

Positions are the template visit's, so the new rows fall where the demo's variable objects
are and a cone around a DiaObject finds its new detections.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from skyvault.catalog.append import HEALPIX_COLUMN, append
from skyvault.catalog.layout import TableName, table_path
from skyvault.catalog.registry import PartitionIndex
from skyvault.demo.epochs import _ID_SHIFT
from skyvault.demo.schema import SCHEMA_NAME
from skyvault.errors import UsageError

__all__ = ["DIA_SOURCE", "StreamedVisit", "stream_visits"]

DIA_SOURCE = f"{SCHEMA_NAME}.DiaSource"
_MJD_UNIX_EPOCH = 40587.0


@dataclass(frozen=True)
class StreamedVisit:
    """One appended batch: its CCD visit, batch id, rows and the table's snapshot after it."""

    ccd_visit_id: int
    batch_id: str
    rows: int
    snapshot: int
    written: bool


def _base_rows(data_dir: Path, table: str) -> pa.Table:
    """The rows of the table's base version (its HATS partitions), without ``_healpix_29``."""
    version = table_path(data_dir, TableName.parse(table)).resolve()
    if not version.is_dir():
        raise UsageError(
            f"there is no {table} to stream into", hint="build the demo first: skyvault demo"
        )
    files = PartitionIndex.read(version).files
    rows = pa.concat_tables([pq.read_table(f) for f in files])
    return rows.drop_columns([HEALPIX_COLUMN]) if HEALPIX_COLUMN in rows.column_names else rows


def _last_ccd_visit(data_dir: Path, table: str) -> int:
    """The largest ``ccdVisitId`` in the table now (base and appended rows)."""
    import skyvault

    archive = skyvault.open(data_dir)
    try:
        got = archive.query(f"SELECT MAX(ccdVisitId) AS m FROM {table}")
    finally:
        archive.close()
    value = got.column("m")[0].as_py()
    return int(value) if value is not None else 0


def stream_visits(
    data_dir: Path,
    *,
    interval: float = 5.0,
    visits: int = 0,
    table: str = DIA_SOURCE,
    stop: threading.Event | None = None,
    on_visit: Callable[[StreamedVisit], None] | None = None,
) -> list[StreamedVisit]:
    """Append one CCD visit of DiaSources every ``interval`` s: ``visits`` of them (0: until
    ``stop`` is set, or forever).  Returns what was appended; ``on_visit`` hears each."""
    stop = stop or threading.Event()
    base = _base_rows(data_dir, table)
    if not base.num_rows:
        raise UsageError(f"{table} has no rows to replay")
    ccd = base.column("ccdVisitId").to_numpy()
    mjd = base.column("midPointTai").to_numpy()
    order = np.lexsort((ccd, mjd))
    templates = list(dict.fromkeys(ccd[order].tolist()))  # CCD visits in time order
    next_ccd = _last_ccd_visit(data_dir, table) + 1
    done: list[StreamedVisit] = []
    k = 0
    while not stop.is_set() and (visits == 0 or k < visits):
        template = templates[k % len(templates)]
        rows = base.filter(pc.equal(base.column("ccdVisitId"), template))
        new_ccd = next_ccd + k
        n = rows.num_rows
        now_mjd = time.time() / 86400.0 + _MJD_UNIX_EPOCH
        rows = _set(rows, "ccdVisitId", np.full(n, new_ccd, dtype=np.int64))
        rows = _set(rows, "diaSourceId", (new_ccd << _ID_SHIFT) + np.arange(n, dtype=np.int64))
        rows = _set(rows, "midPointTai", np.full(n, now_mjd))
        batch_id = f"visit-{new_ccd}"
        result = append(data_dir, table, rows, batch_id)
        visit = StreamedVisit(new_ccd, batch_id, n, result.snapshot, result.written)
        done.append(visit)
        if on_visit is not None:
            on_visit(visit)
        k += 1
        if visits == 0 or k < visits:
            stop.wait(interval)
    return done


def _set(table: pa.Table, name: str, values: np.ndarray) -> pa.Table:
    index = table.schema.get_field_index(name)
    field = table.schema.field(index)
    return table.set_column(index, field, pa.array(values).cast(field.type))
