"""Metadata updates of user tables: youcat's ``POST {tap}/tables/{schema.table}``.

The body is a table definition, the same document that creates a table (a VOSI ``table``
or a VOTable of FIELDs); what may change is what youcat lets change: the table's
description and, per column, the description, unit, UCD, utype and the ``principal`` and
``std`` flags.  The columns must be the table's own — the same names (compared as
everywhere in the workspace: exactly, else without case) and the same types (datatype,
arraysize, xtype) — or the request is a :class:`~skyvault.errors.WorkspaceError` listing
every difference; rows are never touched, and ``indexed`` is the table-update job's to set
(a flag in the document is ignored, as youcat ignores it).  ``_healpix_29``, the sky index
column skyvault computes, may be left out of the document or sent back as it is served
(parse the body with ``parse_definition(..., computed=True)``).

:func:`merge_definition` computes the new metadata; :func:`publish_metadata` publishes it
as a new version of the table through :func:`~skyvault.catalog.layout.building` (atomic:
queries see the table before or after): every file of the current version is hard-linked
into the new one, only the metadata file (and the bulk manifest, its hashes reused) is
written anew, and a sky-indexed table's appended rows (its delta store,
:mod:`skyvault.catalog.append`) are carried over to the new version as a compaction
carries them.  The new version's ``created`` is to the microsecond, which is what the
TAP_SCHEMA cache tells versions apart by; the registry, the visible-table lists and the
``/tables`` documents follow the new link, so the next request sees the new metadata.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from skyvault.bulk.manifest import MANIFEST_FILE, stored_manifest, write_manifest
from skyvault.catalog.append import (
    Snapshot,
    append_lock,
    fsync_dir,
    fsync_file,
    read_snapshot,
    write_pointer,
)
from skyvault.catalog.layout import TableName, building
from skyvault.catalog.metadata import METADATA_FILE, ColumnMeta, TableMeta
from skyvault.errors import WorkspaceError
from skyvault.workspace.columns import TableDefinition
from skyvault.workspace.names import HEALPIX_COLUMN
from skyvault.workspace.unique import write_unique

__all__ = ["merge_definition", "publish_metadata", "type_of"]

#: Differences named in one error message (the rest are counted).
_MAX_NAMED = 10


def type_of(col: ColumnMeta) -> str:
    """A column's type as a VOSI document writes it: ``datatype[arraysize]`` and the
    xtype, e.g. ``char[16*]``, ``double``, ``char[*] (xtype timestamp)``."""
    size = _arraysize(col)
    text = col.datatype + (f"[{size}]" if size else "")
    xtype = (col.xtype or "").strip()
    return text + (f" (xtype {xtype})" if xtype else "")


def _arraysize(col: ColumnMeta) -> str:
    size = (col.arraysize or "").strip()
    if size == "1":
        size = ""
    if not size and col.datatype in ("char", "unicodeChar"):
        size = "*"  # a string of any length, however the document leaves it
    return size


def _same_type(a: ColumnMeta, b: ColumnMeta) -> bool:
    return (a.datatype, _arraysize(a), (a.xtype or "").strip().lower()) == (
        b.datatype,
        _arraysize(b),
        (b.xtype or "").strip().lower(),
    )


def _match(columns: Sequence[ColumnMeta], name: str) -> ColumnMeta | None:
    """The column of ``columns`` called ``name``: exactly, else the one without case."""
    for col in columns:
        if col.name == name:
            return col
    folded = [c for c in columns if c.name.lower() == name.lower()]
    return folded[0] if len(folded) == 1 else None


def _listed(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_MAX_NAMED])
    return shown + (f" and {len(items) - _MAX_NAMED} more" if len(items) > _MAX_NAMED else "")


def merge_definition(meta: TableMeta, definition: TableDefinition) -> TableMeta:
    """``meta`` with the descriptions, units, UCDs, utypes and flags of ``definition``.

    Raises
    ------
    WorkspaceError
        The document carries rows, or its columns are not the table's: the message names
        the columns missing from it, those the table does not have, and those whose type
        differs (the table's and the document's), so the client can fix them all at once.
    """
    name = meta.qualified_name
    if definition.rows is not None:
        raise WorkspaceError(
            f"the document carries rows; updating the metadata of {name} does not load rows",
            hint=f"send the definition without rows, and load rows with POST /load/{name}",
        )
    own = [c for c in meta.columns if c.name != HEALPIX_COLUMN]
    given = [c for c in definition.columns if c.name.lower() != HEALPIX_COLUMN]
    extra = [c.name for c in given if _match(own, c.name) is None]
    missing = [c.name for c in own if _match(given, c.name) is None]
    changed = []
    for col in own:
        new = _match(given, col.name)
        if new is not None and not _same_type(col, new):
            changed.append(
                f"{col.name} (the table's {type_of(col)}, the document's {type_of(new)})"
            )
    problems = []
    if missing:
        problems.append(f"missing from the document: {_listed(missing)}")
    if extra:
        problems.append(f"not columns of the table: {_listed(extra)}")
    if changed:
        problems.append(f"types differ: {_listed(changed)}")
    if problems:
        raise WorkspaceError(
            f"the document's columns are not those of {name} ({'; '.join(problems)}); "
            "nothing was changed",
            hint="a metadata update cannot add, remove, rename or retype columns: start "
            f"from the document GET /tables/{name} serves and change only descriptions, "
            "units, UCDs and utypes",
        )
    columns = []
    for col in meta.columns:
        new = _match(given, col.name) if col.name != HEALPIX_COLUMN else None
        if new is None:
            columns.append(col)
            continue
        columns.append(
            dataclasses.replace(
                col,
                description=new.description,
                unit=new.unit,
                ucd=new.ucd,
                utype=new.utype,
                principal=new.principal,
                std=new.std,
            )
        )
    return dataclasses.replace(meta, columns=tuple(columns), description=definition.description)


def publish_metadata(
    data_dir: Path, version_dir: Path, meta: TableMeta, *, unique: Sequence[str] | None = None
) -> TableMeta:
    """Publish ``meta`` (the metadata of version ``version_dir`` as changed: the version's
    own row count, not counting appended rows) as a new version of its table: the same
    files, hard-linked, the appended rows carried over; ``unique`` (when given) replaces the
    version's unique columns (:mod:`skyvault.workspace.unique`).  The caller holds the
    table's turn.  Returns the metadata as written (its new ``created``)."""
    name = TableName(meta.schema, meta.name)
    link = data_dir / name.schema / name.table
    carried = None
    with contextlib.ExitStack() as swap:
        with building(data_dir, name) as build:
            if link.resolve() != version_dir:  # a compaction came first
                raise WorkspaceError(
                    f"{name} changed while its metadata was being updated; nothing was changed",
                    hint="send the update again",
                )
            for entry in version_dir.iterdir():
                if entry.name in (METADATA_FILE, MANIFEST_FILE):
                    continue
                target = build.path / entry.name
                if entry.is_dir():
                    shutil.copytree(entry, target, copy_function=os.link)
                else:
                    os.link(entry, target)
            if unique is not None:
                write_unique(build.path, unique)
            meta = dataclasses.replace(meta, created=_later_than(meta.created))
            meta.write(build.path)
            known = stored_manifest(version_dir)
            if known is not None:
                unchanged = {e.path: e for e in known.entries if e.path != METADATA_FILE}
                write_manifest(build.path, build.version, known=unchanged)
            if meta.kind == "hats":
                # Appends wait from here until the pointer names the new version.
                swap.enter_context(append_lock(data_dir, name))
                carried = _carry_deltas(version_dir, build.version)
        if carried is not None:
            new = link.resolve()
            write_pointer(new, carried.snapshot, carried.committed)
            stores = new.parent.parent.parent / "deltas" / name.table
            alive = {p.name for p in new.parent.iterdir()}
            for store in stores.iterdir():
                if store.name not in alive:
                    shutil.rmtree(store, ignore_errors=True)
    return meta


def _carry_deltas(version_dir: Path, version: str) -> Snapshot | None:
    """Link the delta store of ``version_dir`` as that of the new ``version``, with a
    ``folded.json`` saying its batches are carried; the snapshot carried (None: none)."""
    latest = read_snapshot(version_dir)
    stores = version_dir.parent.parent.parent / "deltas" / version_dir.parent.name
    old = stores / version_dir.name
    if latest.snapshot == 0 or not old.is_dir():
        return None
    store = stores / version
    shutil.copytree(old, store, copy_function=os.link)
    # Until the pointer names it, the new version is read as its base plus the batches
    # folded.json says it carries: the same rows as the old one.
    path = store / "folded.json"
    folded = json.loads(path.read_text()) if path.exists() else {}
    folded.setdefault("snapshot", latest.folded)
    folded.setdefault("batch_ids", [])
    folded["carried"] = latest.snapshot
    tmp = store / "folded.json.tmp"
    tmp.write_text(json.dumps(folded) + "\n")
    fsync_file(tmp)
    os.replace(tmp, path)
    fsync_dir(store)
    return latest


def _later_than(created: str) -> str:
    """Now, to the microsecond, and never equal to ``created`` (the caches' version key)."""
    now = datetime.datetime.now(datetime.UTC)
    text = now.isoformat(timespec="microseconds")
    if text == created:
        text = (now + datetime.timedelta(microseconds=1)).isoformat(timespec="microseconds")
    return text
