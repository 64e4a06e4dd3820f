"""Bulk download: a published table's HATS directory as a static, checksummed file tree.

* :mod:`~skyvault.bulk.manifest` — the per-file manifest of a table version (bytes, sha256,
  md5, rows, HEALPix order/pixel, last-modified), computed once at ingest and stored with the
  version; the per-directory ``_MD5SUM.txt``/``manifest.json``/``manifest.csv`` views of it.
* :mod:`~skyvault.bulk.paths` — resolving a requested path inside a version directory so
  that nothing outside it (``..``, absolute paths, symbolic links, skyvault internals) is
  ever reached, and listing a directory.

No web imports: the router in ``service/handlers/bulk.py`` is a thin edge over this.
"""

from skyvault.bulk.manifest import (
    MANIFEST_FILE,
    VIRTUAL_FILES,
    Manifest,
    ManifestEntry,
    ManifestHasher,
    compute_manifest,
    manifest_for,
    stored_manifest,
    write_manifest,
)
from skyvault.bulk.paths import Entry, Target, list_directory, resolve

__all__ = [
    "MANIFEST_FILE",
    "VIRTUAL_FILES",
    "Entry",
    "Manifest",
    "ManifestEntry",
    "ManifestHasher",
    "Target",
    "compute_manifest",
    "list_directory",
    "manifest_for",
    "resolve",
    "stored_manifest",
    "write_manifest",
]
