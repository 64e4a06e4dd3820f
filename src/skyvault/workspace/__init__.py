"""The user workspace: astronomers' own tables next to the archive (issue 12).

Each user has a schema, ``user_<name>`` (:mod:`~skyvault.workspace.names`), created on first
use, where they create tables from a VOSI table document or a VOTable
(:mod:`~skyvault.workspace.columns`), load rows into them from CSV, TSV, FITS, VOTable or
Parquet (:mod:`~skyvault.workspace.readers`), share them with groups for reading or
reading and writing (:mod:`~skyvault.workspace.permissions`) and drop them, within
per-user quotas (:mod:`~skyvault.workspace.quota`).  :class:`WorkspaceStore`
(:mod:`~skyvault.workspace.store`) does all of it, atomically and audited; the tables it
writes are ordinary tables of the data root, so TAP_SCHEMA, ``/tables``, ADQL, cross-matches
and bulk download treat them as archive tables, for those who may see them.

The web edge (``service/handlers/workspace.py``) speaks CADC youcat's REST API, which
pyvo's ``TAPService.create_table/load_table/create_index/remove_table`` use.  This package
imports nothing from the web layer.
"""

from skyvault.workspace.columns import (
    TableDefinition,
    column,
    definition_from_arrow,
    parse_definition,
)
from skyvault.workspace.names import UserTableName, schema_candidates
from skyvault.workspace.permissions import (
    PermissionChange,
    TablePermissions,
    format_permissions,
    parse_permissions,
)
from skyvault.workspace.quota import Quota, Usage, WorkspaceSettings
from skyvault.workspace.readers import conform_batches, open_body
from skyvault.workspace.store import LoadResult, UserTable, WorkspaceInfo, WorkspaceStore

__all__ = [
    "LoadResult",
    "PermissionChange",
    "Quota",
    "TableDefinition",
    "TablePermissions",
    "Usage",
    "UserTable",
    "UserTableName",
    "WorkspaceInfo",
    "WorkspaceSettings",
    "WorkspaceStore",
    "column",
    "conform_batches",
    "definition_from_arrow",
    "format_permissions",
    "open_body",
    "parse_definition",
    "parse_permissions",
    "schema_candidates",
]
